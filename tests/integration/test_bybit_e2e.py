"""End to end on Bybit: every simulator fault kind through ExchangeManager against the Bybit simulator (spot,
two symbols, synthetic markets), proven by comparing what the manager delivered with what the simulator says it
sent; plus the linear perpetual subscribing and delivering."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest

from cryptolink.engine import ConnectionEventType as E
from cryptolink.exchanges.base import ExchangeAdapter
from cryptolink.manager import ExchangeManager
from cryptolink.models import Channel, Subscription, Trade
from cryptolink.simulator import Fault, Simulator
from tests.integration.harness import FAST_RECONNECT, FAST_WATCHDOG, Rig, patch_policy, rig, sim_config

pytestmark = pytest.mark.integration

N = "bybit"
NAMES = (N,)


async def ready(r: Rig) -> None:
    await r.healthy(N)
    await r.flowing(N)


async def recovered(r: Rig) -> None:
    await r.healthy(N)
    await r.flowing(N)
    await r.caught_up(N, 0)
    await r.caught_up(N, 1)


def total(r: Rig, attr: str) -> int:
    return sum(int(getattr(c, attr)) for c in r.conns(N))


def snapshots(r: Rig, i: int) -> int:
    return sum(1 for _, snap in r.delivered_books(N, i) if snap)


async def books_match(r: Rig) -> None:
    n = r.book_matches(N)[0]
    await r.until(lambda: r.book_matches(N)[0] > n, 5, "book equals the simulator's")
    assert r.book_matches(N)[1] == 0


@pytest.mark.parametrize("kind", ["drop", "close", "lifetime", "corrupt", "delay"])
@pytest.mark.timeout(30)
async def test_connection_faults_recover_without_loss_or_double(kind: str) -> None:
    """Each fault recovers with nothing lost outside the outage and nothing twice; ``delay`` (every frame held
    150 ms for 1 s) is latency only: no reconnect, no decode error."""
    async with rig(NAMES) as r:
        r.watch_book_matches(NAMES)
        await ready(r)
        r.sim.inject(Fault(kind, code=1011, amount_ms=150.0, duration_s=1.0), exchange=N)
        if kind == "corrupt":
            await r.until(lambda: total(r, "decode_errors") >= 1, 8, "corrupt frame counted")
        elif kind == "delay":
            conns = list(r.server(N).connections.values())
            assert conns and all(c.delay_s == 0.15 for c in conns)
            await r.flowing(N)  # delivering while every frame is held
        else:
            await r.until(lambda: total(r, "successful_reconnects") >= 1, 10, "reconnected")
        await recovered(r)
        if kind == "delay":
            assert total(r, "disconnections") == 0 and total(r, "decode_errors") == 0
        for i in range(2):
            r.assert_trades_exact(N, i)
        r.assert_books_increasing(N)
        await books_match(r)


@pytest.mark.timeout(30)
async def test_stall_and_outage_recover() -> None:
    async with rig(NAMES) as r:
        r.watch_book_matches(NAMES)
        await ready(r)
        r.sim.inject(Fault("stall", duration_s=30.0), exchange=N)
        await r.until(lambda: total(r, "successful_reconnects") >= 1, 15, "reset on stall")
        await recovered(r)
        assert r.rec.count(E.STALE_SUBSCRIPTION, N) >= 1
        r.sim.inject(Fault("outage", duration_s=1.0), exchange=N)
        await r.until(lambda: total(r, "successful_reconnects") >= 2, 15, "reconnected after the outage")
        await recovered(r)
        for i in range(2):
            r.assert_trades_exact(N, i)
        r.assert_books_increasing(N)
        await books_match(r)
        gaps = [g for g in r.rec.gaps if g.feed == N and g.stream is Channel.TRADES]
        assert gaps and all(g.to_ms is not None for g in gaps)


def _fast_app_pings(adapter: ExchangeAdapter) -> None:
    ka = replace(adapter.policy.keepalive, app_ping_idle_s=0.2, app_ping_interval_s=0.3, pong_timeout_s=0.4)
    adapter.policy = replace(adapter.policy, keepalive=ka)


@pytest.mark.timeout(30)
async def test_noping_json_ping_unanswered(monkeypatch: pytest.MonkeyPatch) -> None:
    """noping: our ``{"op":"ping"}`` gets no answer; keepalive declares the socket dead and reconnects."""
    patch_policy(monkeypatch, _fast_app_pings)
    async with rig(NAMES) as r:
        await ready(r)
        r.sim.inject(Fault("noping"), exchange=N)
        await r.until(lambda: r.rec.count(E.HEARTBEAT_TIMEOUT, N) >= 1, 10, "heartbeat timeout")
        await recovered(r)
        for i in range(2):
            r.assert_trades_exact(N, i)


@pytest.mark.timeout(30)
async def test_gap_and_restart_resync_only_that_book() -> None:
    """gap: a withheld delta skips a ``u``: that symbol alone re-subscribes; seqreset (a service restart) sends
    a snapshot with u = 1 that replaces the book; books stay equal to the simulator's."""
    async with rig(NAMES) as r:
        r.watch_book_matches(NAMES)
        await ready(r)
        before = (snapshots(r, 0), snapshots(r, 1))
        r.sim.inject(Fault("gap", symbol=r.native(N, 0)), exchange=N)
        feed = r.manager.feeds[N]

        def resynced() -> bool:
            h = {b.symbol: b for b in feed.book_health()}[r.unified(N, 0)]
            return h.gaps >= 1 and snapshots(r, 0) > before[0]

        await r.until(resynced, 8, "gap resync")
        await recovered(r)
        health = {b.symbol: b for b in feed.book_health()}
        assert health[r.unified(N, 0)].resyncs_by_cause == {"gap": 1}
        assert health[r.unified(N, 1)].resyncs == 0 and snapshots(r, 1) == before[1]
        assert total(r, "disconnections") == 0
        await books_match(r)
        r.sim.inject(Fault("seqreset", symbol=r.native(N, 1)), exchange=N)
        await r.until(
            lambda: any(s == 1 and snap for s, snap in r.delivered_books(N, 1)), 8, "u = 1 snapshot"
        )
        await recovered(r)
        await books_match(r)
        for i in range(2):
            r.assert_trades_exact(N, i)


@pytest.mark.timeout(30)
async def test_reject_reported_once_not_retried_and_notice_is_harmless() -> None:
    async with rig(NAMES) as r:
        await ready(r)
        requests: list[str] = []
        server = r.server(N)
        original = server.on_text

        async def counting(conn: Any, text: str) -> None:
            if "subscribe" in text:
                requests.append(text)
            await original(conn, text)

        server.on_text = counting  # type: ignore[method-assign]
        r.sim.inject(Fault("reject"), exchange=N)
        await r.manager.subscribe(N, [Subscription(Channel.TICKER, r.unified(N, 0))])
        await r.until(lambda: r.rec.count(E.SUBSCRIPTION_REJECTED, N) >= 1, 5, "rejected")
        r.sim.inject(Fault("notice"), exchange=N)  # Bybit has no notice: nothing happens
        for _ in range(3):
            await r.flowing(N)
        assert len([t for t in requests if "orderbook.1." in t]) == 1
        assert r.rec.count(E.SUBSCRIPTION_REJECTED, N) == 1
        assert total(r, "disconnections") == 0


@pytest.mark.timeout(30)
async def test_linear_and_inverse_perpetuals_subscribe_and_deliver() -> None:
    trades: list[Trade] = []
    async with Simulator([N], mode="synthetic", config=sim_config()) as sim:
        ep = sim.endpoints()[N]
        m = (
            ExchangeManager.builder()
            .exchange(
                "bybit-perp", exchange=N, market="perpetual", symbols=["BTC/USDT:USDT", "BTC/USD:BTC"],
                channels=["trades", "book", "ticker"], ws_url=ep["ws_url"], rest_url=ep["rest_url"],
                reconnect=FAST_RECONNECT, watchdog=FAST_WATCHDOG,
            )
            .build()
        )  # fmt: skip
        changed = asyncio.Event()

        def on_trade(t: Trade) -> None:
            trades.append(t)
            changed.set()

        m.on("trades", on_trade)
        await m.start()
        try:
            feed = m.feeds["bybit-perp"]
            server = sim.servers[N]

            async def delivering() -> None:  # re-checked on every delivered trade
                while not (
                    {s.symbol for s in trades} == {"BTC/USDT:USDT", "BTC/USD:BTC"}
                    and len(feed.book_health()) == 2
                    and all(b.state == "live" for b in feed.book_health())
                ):
                    changed.clear()
                    await changed.wait()

            await asyncio.wait_for(delivering(), 10)
            routes = sorted(c.route for c in server.connections.values())
            assert routes == ["/v5/public/inverse", "/v5/public/linear"]
        finally:
            await m.stop()
    inverse = [t for t in trades if t.symbol == "BTC/USD:BTC"]
    assert inverse[0].amount_unit.value == "contracts" and str(inverse[0].contract_size) == "1"
    assert all(t.sequence is None and len(t.trade_id) == 36 for t in trades)  # derivative ids are UUIDs
