"""End to end: Gate spot and USDT perpetual through ExchangeManager against the simulator (synthetic markets).

Every fault kind recovers with nothing lost outside the outage (what the simulator says it sent) and nothing
delivered twice; books equal the simulator's; a rejection is reported once and never retried. ``notice`` and
``badchecksum`` mean nothing on Gate (no shutdown notice, no book checksum): the connection just keeps
delivering. Timings are the harness's short ones.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from cryptolink.engine import ConnectionEventType as E
from cryptolink.exchanges.base import ExchangeAdapter
from cryptolink.models import Channel, Subscription
from cryptolink.simulator import Fault
from tests.integration import harness
from tests.integration.harness import Rig, patch_policy, rig

pytestmark = pytest.mark.integration

G = ("gate",)


async def ready(r: Rig) -> None:
    await r.healthy("gate")
    await r.flowing("gate")


def total(r: Rig, attr: str) -> int:
    return sum(int(getattr(c, attr)) for c in r.conns("gate"))


async def recovered(r: Rig) -> None:
    await ready(r)
    await r.caught_up("gate", 0)
    await r.caught_up("gate", 1)


def snapshots(r: Rig, i: int) -> int:
    return sum(1 for _, snap in r.delivered_books("gate", i) if snap)


def exact(r: Rig) -> None:
    for i in range(2):
        r.assert_trades_exact("gate", i)
    r.assert_books_increasing("gate")


async def matches(r: Rig) -> None:
    n = r.book_matches("gate")[0]
    await r.until(lambda: r.book_matches("gate")[0] > n, 5, "book equals the simulator's")
    assert r.book_matches("gate")[1] == 0


@pytest.mark.parametrize("kind", ["drop", "close", "lifetime"])
@pytest.mark.timeout(30)
async def test_connection_loss_recovers_without_loss(kind: str) -> None:
    async with rig(G) as r:
        r.watch_book_matches(G)
        await ready(r)
        r.sim.inject(Fault(kind, code=1011), exchange="gate")
        await r.until(lambda: all(c.successful_reconnects >= 1 for c in r.conns("gate")), 10, "reconnected")
        await recovered(r)
        for c in r.conns("gate"):
            assert (c.disconnections, c.successful_reconnects) == (1, 1)
        exact(r)
        for i in range(2):
            assert snapshots(r, i) == 2, "one full snapshot at start, one after the reconnect"
        await matches(r)


@pytest.mark.timeout(30)
async def test_stall_is_caught_by_the_data_watchdog() -> None:
    async with rig(G) as r:
        await ready(r)
        r.sim.inject(Fault("stall", duration_s=30.0), exchange="gate")
        await r.until(
            lambda: all(c.successful_reconnects >= 1 for c in r.conns("gate")), 20, "reset on stall"
        )
        await recovered(r)
        assert r.rec.count(E.STALE_SUBSCRIPTION, "gate") >= 1
        assert r.rec.count(E.HEARTBEAT_TIMEOUT, "gate") == 0
        assert [c for c in r.sim_conns("gate") if c.stalled > 0]
        exact(r)


def _fast_pings(adapter: ExchangeAdapter) -> None:
    ka = replace(adapter.policy.keepalive, protocol_ping_interval_s=0.3, pong_timeout_s=0.6)
    adapter.policy = replace(adapter.policy, keepalive=ka)


@pytest.mark.timeout(30)
async def test_noping_protocol_ping_unanswered(monkeypatch: pytest.MonkeyPatch) -> None:
    patch_policy(monkeypatch, _fast_pings)
    async with rig(G) as r:
        await ready(r)
        r.sim.inject(Fault("noping", duration_s=3.0), exchange="gate")
        await r.until(lambda: r.rec.count(E.HEARTBEAT_TIMEOUT, "gate") >= 1, 10, "heartbeat timeout")
        await r.until(lambda: all(c.successful_reconnects >= 1 for c in r.conns("gate")), 10, "reconnected")
        await recovered(r)
        exact(r)


@pytest.mark.timeout(30)
async def test_delay_corrupt_notice_and_badchecksum_keep_the_connection() -> None:
    async with rig(G) as r:
        await ready(r)
        r.sim.inject(Fault("delay", amount_ms=200.0, duration_s=1.0), exchange="gate")
        r.sim.inject(Fault("notice"), exchange="gate")
        r.sim.inject(Fault("badchecksum"), exchange="gate")
        r.sim.inject(Fault("corrupt"), exchange="gate")
        await r.until(lambda: total(r, "decode_errors") == len(r.conns("gate")), 5, "decode error counted")
        await recovered(r)
        assert total(r, "disconnections") == 0
        for i in range(2):
            got = r.delivered_trades("gate", i)
            assert got == sorted(set(got))
            first = min(a for a, _, _, _ in r.sent_trade_ranges("gate", i))
            assert len(set(range(first, got[-1] + 1)) - set(got)) <= 1  # at most the corrupted frame
        r.assert_books_increasing("gate")


@pytest.mark.timeout(30)
async def test_gap_resubscribes_only_that_symbol() -> None:
    """gap: one ``spot.obu`` push withheld; that book resubscribes for a new ``full`` push (docs/protocols/gate.md
    "Book sync"), the other stays untouched, no reconnect. (``seqreset`` is not tested: Gate documents no update
    id reset.)"""
    async with rig(G) as r:
        r.watch_book_matches(G)
        await ready(r)
        before = (snapshots(r, 0), snapshots(r, 1))
        r.sim.inject(Fault("gap", symbol=r.native("gate", 0)), exchange="gate")

        def resynced() -> bool:
            h = {b.symbol: b for b in r.manager.feeds["gate"].book_health()}[r.unified("gate", 0)]
            return h.gaps >= 1 and snapshots(r, 0) > before[0]

        await r.until(resynced, 8, "resubscribed")
        await recovered(r)
        health = {b.symbol: b for b in r.manager.feeds["gate"].book_health()}
        hit, other = health[r.unified("gate", 0)], health[r.unified("gate", 1)]
        assert hit.state == other.state == "live" and hit.resyncs_by_cause == {"gap": 1}
        assert other.resyncs == 0 and snapshots(r, 1) == before[1]
        assert total(r, "disconnections") == 0
        for i in range(2):
            r.assert_trades_exact("gate", i)
        await matches(r)


@pytest.mark.timeout(30)
async def test_reject_is_reported_once_and_not_retried() -> None:
    async with rig(G) as r:
        await ready(r)
        requests: list[str] = []
        server = r.server("gate")
        original = server.on_text

        async def counting(conn: Any, text: str) -> None:
            if '"subscribe"' in text:
                requests.append(text)
            await original(conn, text)

        server.on_text = counting  # type: ignore[method-assign]
        r.sim.inject(Fault("reject"), exchange="gate")
        await r.manager.subscribe("gate", [Subscription(Channel.TICKER, r.unified("gate", 0))])
        await r.until(lambda: r.rec.count(E.SUBSCRIPTION_REJECTED, "gate") >= 1, 5, "rejected")
        for _ in range(3):
            await r.flowing("gate")
        assert len([t for t in requests if "book_ticker" in t]) == 1
        assert r.rec.count(E.SUBSCRIPTION_REJECTED, "gate") == 1
        assert total(r, "disconnections") == 0


@pytest.mark.timeout(40)
async def test_outage_recovers_and_backfills_every_missed_trade() -> None:
    async with rig(G) as r:
        await ready(r)
        r.sim.inject(Fault("outage", duration_s=2.0), exchange="gate")
        await r.until(lambda: all(c.successful_reconnects >= 1 for c in r.conns("gate")), 30, "reconnected")
        await r.healthy("gate", within_s=20)
        for i in range(2):
            await r.caught_up("gate", i, within_s=20)
            got = r.delivered_trades("gate", i)
            assert got == list(range(got[0], got[-1] + 1)), "nothing twice, nothing missing (backfilled)"
        assert r.rec.backfilled >= 1
        assert r.manager.feeds["gate"].stats().backfilled_trades == r.rec.backfilled


@pytest.mark.timeout(30)
async def test_perpetual_subscribes_and_delivers(monkeypatch: pytest.MonkeyPatch) -> None:
    """USDT perpetuals: trades (contracts, with the contract size from the instrument list) and books stitched
    to the REST snapshot, equal to the simulator's."""
    monkeypatch.setitem(
        harness.TARGETS,
        "gate",
        ("gate", "perpetual", ("BTC/USDT:USDT", "ETH/USDT:USDT"), ("futures:BTC_USDT", "futures:ETH_USDT")),
    )
    async with rig(G) as r:
        r.watch_book_matches(G)
        await ready(r)
        await r.caught_up("gate", 0)
        exact(r)
        await matches(r)
        r.sim.inject(Fault("gap", symbol="BTC_USDT"), exchange="gate")
        await r.until(
            lambda: r.manager.feeds["gate"].stats().snapshots_fetched >= 3, 8, "REST snapshot after the gap"
        )
        h = {b.symbol: b for b in r.manager.feeds["gate"].book_health()}["BTC/USDT:USDT"]
        assert h.resyncs_by_cause == {"gap": 1}
        await recovered(r)
        exact(r)
