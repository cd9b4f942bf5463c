"""End to end on HTX: every simulator fault kind through ExchangeManager against the HTX simulator (spot, two
symbols, synthetic markets, gzip frames, JSON pings, mbp books synced by ``req`` on the /feed socket), proven by
comparing what the manager delivered with what the simulator says it sent; plus the linear perpetual subscribing
and delivering."""

from __future__ import annotations

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

N = "htx"
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
    await r.until(lambda: r.book_matches(N)[0] > n, 8, "book equals the simulator's")
    assert r.book_matches(N)[1] == 0


@pytest.mark.parametrize("kind", ["drop", "close", "lifetime", "corrupt", "delay"])
@pytest.mark.timeout(30)
async def test_connection_faults_recover_without_loss_or_double(kind: str) -> None:
    async with rig(NAMES) as r:
        r.watch_book_matches(NAMES)
        await ready(r)
        r.sim.inject(Fault(kind, code=1011, amount_ms=50.0, duration_s=0.5), exchange=N)
        if kind == "corrupt":
            await r.until(lambda: total(r, "decode_errors") >= 1, 8, "corrupt frame counted")
        elif kind != "delay":
            await r.until(lambda: total(r, "successful_reconnects") >= 1, 10, "reconnected")
        await recovered(r)
        if (
            kind == "corrupt"
        ):  # at most that one frame's content is missing; no reconnect (a lost diff resyncs)
            assert total(r, "disconnections") == 0
        else:
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


@pytest.mark.timeout(30)
async def test_server_json_pings_are_answered() -> None:
    """The simulator pings every 0.1 s and closes after 1 s unanswered: the engine's ``{"pong"}`` replies keep
    every socket open (8 pongs counted by the simulator prove they are sent)."""
    async with rig(NAMES, config=sim_config(htx={"ping_interval_s": 0.1, "pong_timeout_s": 1.0})) as r:
        await ready(r)
        server = r.server(N)
        conns = list(server.connections.values())
        assert len(conns) == 2
        await server.wait_until(lambda: all(c.pongs_received >= 8 for c in conns), 10)
        await r.flowing(N)
        assert total(r, "disconnections") == 0 and all(c.is_open for c in conns)


def _fast_protocol_pings(adapter: ExchangeAdapter) -> None:
    ka = replace(adapter.policy.keepalive, protocol_ping_interval_s=0.2, pong_timeout_s=0.4)
    adapter.policy = replace(adapter.policy, keepalive=ka)


@pytest.mark.timeout(30)
async def test_noping_protocol_ping_unanswered(monkeypatch: pytest.MonkeyPatch) -> None:
    """noping: the server stops its pings and stops answering ours; keepalive declares the socket dead."""
    patch_policy(monkeypatch, _fast_protocol_pings)
    async with rig(NAMES) as r:
        await ready(r)
        r.sim.inject(Fault("noping"), exchange=N)
        await r.until(lambda: r.rec.count(E.HEARTBEAT_TIMEOUT, N) >= 1, 10, "heartbeat timeout")
        await recovered(r)
        for i in range(2):
            r.assert_trades_exact(N, i)


@pytest.mark.timeout(30)
async def test_gap_resyncs_only_that_book_with_a_req_snapshot() -> None:
    """gap: a withheld mbp diff breaks the prevSeqNum chain: that symbol alone asks ``req`` again on its /feed
    socket; the other book and the connection are untouched; books stay equal to the simulator's."""
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
        r.sim.inject(Fault("seqreset"), exchange=N)  # no HTX meaning (ids never restart): harmless
        r.sim.inject(Fault("badchecksum"), exchange=N)  # no HTX checksum: harmless
        await recovered(r)
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
            if '"sub"' in text:
                requests.append(text)
            await original(conn, text)

        server.on_text = counting  # type: ignore[method-assign]
        r.sim.inject(Fault("reject"), exchange=N)
        await r.manager.subscribe(N, [Subscription(Channel.TICKER, r.unified(N, 0))])
        await r.until(lambda: r.rec.count(E.SUBSCRIPTION_REJECTED, N) >= 1, 5, "rejected")
        r.sim.inject(Fault("notice"), exchange=N)  # HTX has no notice: nothing happens
        for _ in range(3):
            await r.flowing(N)
        assert len([t for t in requests if ".bbo" in t]) == 1
        assert r.rec.count(E.SUBSCRIPTION_REJECTED, N) == 1
        assert total(r, "disconnections") == 0


@pytest.mark.timeout(30)
async def test_linear_perpetual_subscribes_and_delivers() -> None:
    trades: list[Trade] = []
    async with Simulator([N], mode="synthetic", config=sim_config()) as sim:
        ep = sim.endpoints()[N]
        m = (
            ExchangeManager.builder()
            .exchange(
                "htx-perp", exchange=N, market="perpetual", symbols=["BTC/USDT:USDT", "ETH/USDT:USDT"],
                channels=["trades", "book", "ticker"], ws_url=ep["ws_url"], rest_url=ep["rest_url"],
                reconnect=FAST_RECONNECT, watchdog=FAST_WATCHDOG,
            )
            .build()
        )  # fmt: skip
        m.on("trades", trades.append)
        await m.start()
        try:
            feed = m.feeds["htx-perp"]
            assert {c.spec.url.rsplit("/", 1)[-1] for c in feed.connections.values()} == {"linear-swap-ws"}
            server = sim.servers[N]
            await server.wait_until(
                lambda: (
                    {s.symbol for s in trades} == {"BTC/USDT:USDT", "ETH/USDT:USDT"}
                    and len(feed.book_health()) == 2
                    and all(b.state == "live" for b in feed.book_health())
                ),
                10,
            )
        finally:
            await m.stop()
    btc = [t for t in trades if t.symbol == "BTC/USDT:USDT"]
    assert btc[0].amount_unit.value == "contracts" and str(btc[0].contract_size) == "0.001"
    assert all(t.sequence is not None for t in trades)
