"""Snapshot-storm control, end to end against the in-process simulator: 200 Binance books (plus the trades of 20
of them, whose backfills draw on the same budget) on one :class:`ExchangeManager`, the simulator's REST weight
limit scaled down so that the resync of every book needs several windows; the books sync at start and again after
a full outage, and the simulator (``GET /_sim/stats``, server side) counts not a single 429 or 418.

200 books: the simulator serves any number of synthetic symbols (``SimConfig.symbols``), but each one is a running
market source; 200 at a few events per second each keeps the test within a couple of seconds of CPU per phase on
the shared machine while still needing four limiter windows per resync (200 x weight 50 = 10 000 against 2 500
per 1 s).
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import aiohttp
import pytest

from cryptolink.clock import SystemClock
from cryptolink.manager import ExchangeManager
from cryptolink.models import BookUpdate
from cryptolink.rest.budget import RateBudgets
from cryptolink.simulator import Fault, Simulator
from tests.integration.harness import FAST_RECONNECT, sim_config

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

BOOKS = 200
TRADES = 20
LIMIT = (2500, 1.0)  # simulator REST weight per window, s (documented: 6000 per 60 s)
DEPTH_WEIGHT = 50  # GET /api/v3/depth?limit=1000 (the adapter's snapshot)
NATIVE = tuple(f"C{i:03d}USDT" for i in range(BOOKS))
UNIFIED = tuple(f"C{i:03d}/USDT" for i in range(BOOKS))


class LiveWatch:
    """Set :attr:`done` once every book of entry ``books`` has delivered a snapshot since :meth:`reset` and
    every one is live (checked on each snapshot, the event a book going live emits)."""

    def __init__(self, manager: ExchangeManager) -> None:
        self.manager = manager
        self.fresh: set[str] = set()
        self.done = asyncio.Event()

    def reset(self) -> None:
        self.fresh.clear()
        self.done.clear()

    def on_book(self, update: BookUpdate) -> None:
        if not update.is_snapshot or update.feed != "books":
            return
        self.fresh.add(update.symbol)
        if len(self.fresh) == BOOKS and self.live() == BOOKS:
            self.done.set()

    def live(self) -> int:
        return sum(1 for b in self.manager.feeds["books"].book_health() if b.state == "live")

    async def wait(self, what: str, within_s: float) -> None:
        try:
            await asyncio.wait_for(self.done.wait(), within_s)
        except TimeoutError:
            pytest.fail(
                f"{what}: {len(self.fresh)} of {BOOKS} books resynced, {self.live()} live after {within_s} s"
            )


async def sim_stats(http: aiohttp.ClientSession, rest_url: str) -> dict[str, Any]:
    async with http.get(rest_url + "/_sim/stats") as resp:
        body: dict[str, Any] = await resp.json()
        return body


async def test_200_books_resync_after_a_full_outage_without_a_single_429_or_418() -> None:
    config = dataclasses.replace(
        sim_config(), symbols={"binance": NATIVE}, synthetic_rate_hz=5.0, rest_limits={"binance": LIMIT}
    )
    budgets = RateBudgets(SystemClock(), overrides={"binance": {"weight": LIMIT}})
    async with (
        Simulator(exchanges=["binance"], mode="synthetic", seed=3, config=config) as sim,
        aiohttp.ClientSession() as http,
    ):
        ep = sim.endpoints()["binance"]
        common = {"ws_url": ep["ws_url"], "rest_url": ep["rest_url"], "reconnect": FAST_RECONNECT}
        manager = (
            ExchangeManager.builder()
            .runtime(seed=3, rest_budgets=budgets)
            .exchange("books", exchange="binance", symbols=list(UNIFIED), channels=["book"], **common)
            .exchange(
                "trades", exchange="binance", symbols=list(UNIFIED[:TRADES]), channels=["trades"], **common
            )
            .build()
        )
        watch = LiveWatch(manager)
        manager.on("book", watch.on_book)
        await manager.start()
        try:
            await watch.wait("initial sync", 60)
            before = await sim_stats(http, ep["rest_url"])
            assert (before["rest"]["429"], before["rest"]["418"]) == (0, 0)
            assert before["rest"]["by_path"]["/api/v3/depth"] >= BOOKS
            refused_before = budgets.get("binance").stats().limiter.refused_full

            watch.reset()
            sim.inject(Fault("outage", duration_s=1.0), exchange="binance")
            await watch.wait("resync after the outage", 60)
            after = await sim_stats(http, ep["rest_url"])
            budget = budgets.get("binance").stats()
        finally:
            await asyncio.wait_for(manager.stop(), 10)
    assert after["outages"] == 1
    depth = after["rest"]["by_path"]["/api/v3/depth"] - before["rest"]["by_path"]["/api/v3/depth"]
    weight = after["rest"]["weight"] - before["rest"]["weight"]
    # the resync could not fit in one window: the budget held requests back, and none was refused by the server
    assert depth >= BOOKS and weight >= BOOKS * DEPTH_WEIGHT > LIMIT[0]
    assert budget.limiter.refused_full > refused_before
    assert (after["rest"]["429"], after["rest"]["418"]) == (0, 0)
    assert (budget.answers_429, budget.answers_418, budget.pauses, budget.bans) == (0, 0, 0, 0)
