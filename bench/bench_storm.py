"""Benchmark: snapshot storm. 200 Binance books (and the trades of some of them, whose backfills share the
budget) on one :class:`~cryptolink.manager.ExchangeManager` against the simulator (in this process, so the
outage can be injected when the books are live), at the simulator's real REST limit (REQUEST_WEIGHT 6000 per
minute) or one scaled with ``--rest-limit``. After the initial sync and one quiet window, the simulator goes
down (``outage``) for ``--outage-s``; every book then needs a fresh REST snapshot (weight 50 each: 200 books
= 10 000 weight, more than one window holds).

Printed: the time from the outage until every book is live again (and the initial sync's), and the simulator's
own counts (``GET /_sim/stats``, server side) of requests, weight, 429 and 418 answers in each phase; the
budget's waits. Target of the issue: 0 x 429, 0 x 418. ``--unlimited`` runs the same storm with REST clients
that have no budget (the counterfactual: what the budget prevents).

``python -m bench.bench_storm [--books 200] [--rest-limit 6000/60] [--quick] [--unlimited]``
(``--quick``: 20 books at 500 weight per 1 s, a smoke test; it does not write bench/RESULTS.md.)
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import time
from typing import Any

import aiohttp

from bench.common import write_section
from cryptolink.clock import SystemClock
from cryptolink.exchanges.base import ExchangeAdapter
from cryptolink.gateway import RestGateway
from cryptolink.manager import ExchangeManager
from cryptolink.models import BookUpdate
from cryptolink.rest import RestClient
from cryptolink.rest.budget import RateBudgets
from cryptolink.simulator import BINANCE_SPOT_RULES, Fault, SimConfig, Simulator
from cryptolink.simulator.runner import parse_rest_limit

__all__ = ["main", "run"]

FAST_RECONNECT = {"initial_delay_s": 0.05, "multiplier": 2.0, "max_delay_s": 1.0, "reset_after_s": 5.0}
"""Reconnect quickly once the simulator listens again (the storm, not the backoff, is measured)."""


class _Live:
    """Set once every book of entry ``books`` delivered a snapshot since :meth:`reset` and all are live."""

    def __init__(self, manager: ExchangeManager, books: int) -> None:
        self.manager = manager
        self.books = books
        self.fresh: set[str] = set()
        self.done = asyncio.Event()
        self.at = 0.0

    def reset(self) -> None:
        self.fresh.clear()
        self.done.clear()

    def live(self) -> int:
        return sum(1 for b in self.manager.feeds["books"].book_health() if b.state == "live")

    def on_book(self, update: BookUpdate) -> None:
        if update.is_snapshot and update.feed == "books":
            self.fresh.add(update.symbol)
            if len(self.fresh) == self.books and not self.done.is_set() and self.live() == self.books:
                self.at = time.monotonic()
                self.done.set()

    async def wait(self, within_s: float) -> float | None:
        """Seconds from now until every book was live (``None``: not within ``within_s``)."""
        start = time.monotonic()
        try:
            await asyncio.wait_for(self.done.wait(), within_s)
        except TimeoutError:
            return None
        return self.at - start


async def _sim_rest(http: aiohttp.ClientSession, rest_url: str) -> dict[str, Any]:
    async with http.get(rest_url + "/_sim/stats") as resp:
        body: dict[str, Any] = await resp.json()
        rest: dict[str, Any] = body["rest"]
        return rest


def _delta(after: dict[str, Any], before: dict[str, Any]) -> dict[str, int]:
    keys = ("requests", "weight", "429", "418")
    return {k: int(after[k]) - int(before.get(k, 0)) for k in keys} | {
        "depth": int(after["by_path"].get("/api/v3/depth", 0))
        - int(before.get("by_path", {}).get("/api/v3/depth", 0))
    }


async def storm(
    books: int,
    limit: tuple[int, float],
    *,
    trades: int,
    outage_s: float,
    rate_hz: float,
    margin_s: float,
    settle_s: float | None,
    unlimited: bool,
    timeout_s: float,
) -> dict[str, Any]:
    """One run; returns the figures (see the module docstring)."""
    native = tuple(f"C{i:03d}USDT" for i in range(books))
    unified = [f"C{i:03d}/USDT" for i in range(books)]
    config = SimConfig(
        rules={"binance": dataclasses.replace(BINANCE_SPOT_RULES, max_in_msgs_per_s=50)},
        symbols={"binance": native},
        synthetic_rate_hz=rate_hz,
        rest_limits={"binance": limit},
    )
    budgets = RateBudgets(SystemClock(), overrides={"binance": {"weight": limit}}, window_margin_s=margin_s)
    async with (
        Simulator(exchanges=["binance"], mode="synthetic", seed=1, config=config) as sim,
        aiohttp.ClientSession() as http,
    ):
        ep = sim.endpoints()["binance"]
        common = {"ws_url": ep["ws_url"], "rest_url": ep["rest_url"], "reconnect": FAST_RECONNECT}
        builder = ExchangeManager.builder().runtime(seed=1, rest_budgets=budgets)
        if unlimited:

            def gateway(adapter: ExchangeAdapter) -> RestGateway:
                return RestClient(
                    f"{adapter.exchange} (no budget)", adapter.rest_base_url, http, SystemClock(), None
                )

            builder.runtime(rest_gateway=gateway)
        builder.exchange("books", exchange="binance", symbols=unified, channels=["book"], **common)
        if trades:
            builder.exchange(
                "trades", exchange="binance", symbols=unified[:trades], channels=["trades"], **common
            )
        manager = builder.build()
        live = _Live(manager, books)
        manager.on("book", live.on_book)
        t0 = time.monotonic()
        await manager.start()
        try:
            if await live.wait(timeout_s) is None:
                raise RuntimeError(
                    f"initial sync: {len(live.fresh)} of {books} books live after {timeout_s:.0f} s"
                )
            initial_s = live.at - t0
            first = await _sim_rest(http, ep["rest_url"])
            await asyncio.sleep(limit[1] + margin_s if settle_s is None else settle_s)  # a quiet window
            before = await _sim_rest(http, ep["rest_url"])
            live.reset()
            sim.inject(Fault("outage", duration_s=outage_s), exchange="binance")
            resync_s = await live.wait(timeout_s)
            resynced = len(live.fresh)
            after = await _sim_rest(http, ep["rest_url"])
            budget = None if unlimited else budgets.get("binance").stats()
            feeds = {f.name: f for f in manager.stats().feeds}
        finally:
            await manager.stop()
    return {
        "books": books,
        "limit": limit,
        "unlimited": unlimited,
        "initial_s": initial_s,
        "resync_s": resync_s,
        "resynced": resynced,
        "timeout_s": timeout_s,
        "outage_s": outage_s,
        "initial": _delta(first, {}),
        "storm": _delta(after, before),
        "budget_waits": None if budget is None else budget.limiter.refused_full,
        "budget_grants": None if budget is None else budget.limiter.grants,
        "backfill_requests": feeds["trades"].backfill_requests if "trades" in feeds else 0,
        "snapshot_errors": feeds["books"].snapshot_errors,
    }


def run(
    books: int = 200,
    limit: tuple[int, float] = (6000, 60.0),
    *,
    trades: int = 20,
    outage_s: float = 1.0,
    rate_hz: float = 2.0,
    margin_s: float = 0.25,
    settle_s: float | None = None,
    unlimited: bool = False,
    write: bool = True,
    command: str = "python -m bench.bench_storm",
) -> dict[str, Any]:
    """One storm; prints the figures and (``write``) replaces the section of bench/RESULTS.md."""
    logging.basicConfig(level=logging.ERROR)
    windows = books * 50 / limit[0]
    timeout_s = max(60.0, 3 * (windows + 1) * (limit[1] + margin_s) + 30)
    r = asyncio.run(
        storm(
            books,
            limit,
            trades=trades,
            outage_s=outage_s,
            rate_hz=rate_hz,
            margin_s=margin_s,
            settle_s=settle_s,
            unlimited=unlimited,
            timeout_s=timeout_s,
        )
    )
    s, i = r["storm"], r["initial"]
    took = (
        f"{r['resync_s']:.1f} s"
        if r["resync_s"] is not None
        else f"NOT within {r['timeout_s']:.0f} s ({r['resynced']} of {books} resynced)"
    )
    lines = [
        f"{books} Binance books (+ trades of {trades}) against the simulator's REST limit {limit[0]} weight per "
        f"{limit[1]:g} s (a full resync is {books * 50:,} weight, {windows:.1f} windows); budget: "
        + ("NONE (`--unlimited`)" if unlimited else f"window + {margin_s:g} s margin")
        + ".",
        "",
        "| phase | time until every book is live | requests | weight | depth snapshots | 429 | 418 |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| initial sync | {r['initial_s']:.1f} s | {i['requests']:,} | {i['weight']:,} | {i['depth']:,} | "
        f"{i['429']} | {i['418']} |",
        f"| after a {outage_s:g} s outage | {took} | {s['requests']:,} | {s['weight']:,} | "
        f"{s['depth']:,} | {s['429']} | {s['418']} |",
        "",
        "429/418 and weight are the simulator's own counts (`GET /_sim/stats`). "
        + (
            f"The budget granted {r['budget_grants']:,} requests and made heads wait {r['budget_waits']:,} times; "
            if r["budget_waits"] is not None
            else ""
        )
        + f"trade backfill requests {r['backfill_requests']}, failed snapshots {r['snapshot_errors']}.",
    ]
    body = "\n".join(lines)
    print(body)
    if write:
        write_section("storm", "Snapshot storm: books resynced after a full outage", command, body)
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description="snapshot storm after a full outage")
    ap.add_argument("--books", type=int, default=200)
    ap.add_argument("--trades", type=int, default=20, help="books whose trades are also streamed (backfills)")
    ap.add_argument(
        "--rest-limit", default="6000/60", help="simulator REST weight per window: WEIGHT/SECONDS"
    )
    ap.add_argument("--outage-s", type=float, default=1.0)
    ap.add_argument("--rate-hz", type=float, default=2.0, help="events per second of each synthetic market")
    ap.add_argument("--margin-s", type=float, default=0.25, help="the budget's window margin, s")
    ap.add_argument(
        "--settle-s", type=float, default=None, help="quiet time before the outage (default a window)"
    )
    ap.add_argument("--unlimited", action="store_true", help="REST clients without a budget (counterfactual)")
    ap.add_argument("--quick", action="store_true", help="20 books at 500/1s; does not write RESULTS.md")
    args = ap.parse_args()
    _, limit = parse_rest_limit("binance=" + ("500/1" if args.quick else args.rest_limit))
    books = 20 if args.quick else args.books
    trades = min(args.trades, 5) if args.quick else args.trades
    command = "python -m bench.bench_storm " + " ".join(
        a
        for a in (f"--books {books}", f"--rest-limit {args.rest_limit}", "--unlimited" * args.unlimited)
        if a
    )
    run(
        books,
        limit,
        trades=min(trades, books),
        outage_s=args.outage_s,
        rate_hz=args.rate_hz,
        margin_s=args.margin_s,
        settle_s=args.settle_s,
        unlimited=args.unlimited,
        write=not args.quick,
        command=command,
    )


if __name__ == "__main__":
    main()
