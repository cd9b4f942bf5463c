"""End to end through ExchangeManager against the simulated Bitget (spot, two symbols; plus the USDT perpetual):
every fault kind recovers with nothing lost outside the outage and nothing delivered twice, books equal to the
simulator's, a rejection reported once and never retried."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from cryptolink.config import ExchangeConfig
from cryptolink.engine import ConnectionEventType as E
from cryptolink.exchanges.base import ExchangeAdapter
from cryptolink.models import BookUpdate, Channel, Subscription
from cryptolink.simulator import Fault
from tests.integration.harness import (
    FAST_RECONNECT,
    FAST_WATCHDOG,
    Rig,
    patch_policy,
    rig,
    sim_config,
    trade_stream,
)

pytestmark = pytest.mark.integration

N = "bitget"


async def recovered(r: Rig) -> None:
    await r.healthy(N)
    await r.flowing(N)
    await r.caught_up(N, 0)
    await r.caught_up(N, 1)


def snapshots(r: Rig, i: int) -> int:
    return sum(1 for _, snap in r.delivered_books(N, i) if snap)


def total(r: Rig, attr: str) -> int:
    return sum(int(getattr(c, attr)) for c in r.conns(N))


def _fast_app_pings(adapter: ExchangeAdapter) -> None:
    ka = replace(adapter.policy.keepalive, app_ping_idle_s=0.2, pong_timeout_s=0.4)
    adapter.policy = replace(adapter.policy, keepalive=ka)


@pytest.mark.timeout(40)
async def test_connection_faults_recover_without_loss_or_double() -> None:
    """drop, close, lifetime, outage in turn on one rig: each reconnects, resubscribes, resyncs the books (equal
    to the simulator's), and every trade id sent while connected is delivered exactly once (the outage's are
    backfilled over REST fills-history)."""
    async with rig((N,)) as r:
        r.watch_book_matches((N,))
        await r.healthy(N)
        await r.flowing(N)
        for k, fault in enumerate(
            (Fault("drop"), Fault("close", code=1011), Fault("lifetime"), Fault("outage", duration_s=0.5)), 1
        ):
            r.sim.inject(fault, exchange=N)

            def reconnected(k: int = k) -> bool:
                return total(r, "successful_reconnects") >= k

            await r.until(reconnected, 10, f"reconnect {k}")
            await recovered(r)
        for i in range(2):
            r.assert_trades_exact(N, i)
            assert snapshots(r, i) == 5, "one snapshot at start, one per reconnect"
        r.assert_books_increasing(N)
        eq, ne = r.book_matches(N)
        assert ne == 0 and eq >= 1
        got = r.delivered_trades(N, 0)
        assert got == sorted(set(got)) and got[-1] - got[0] + 1 == len(got), (
            "every id, once, backfill included"
        )


@pytest.mark.timeout(30)
async def test_reconnect_trade_snapshot_delivers_nothing_twice() -> None:
    """After a reconnect Bitget (and the simulator) first pushes the last 50 trades as a snapshot, most of them
    delivered already on the old socket: none is delivered again, none is taken for an id restart, and every
    trade id the simulator sent on either socket is delivered once (the snapshot also refills a lost tail)."""
    async with rig((N,)) as r:
        await r.healthy(N)
        await r.flowing(N)
        await r.until(
            lambda: all(len(r.delivered_trades(N, i)) >= 5 for i in range(2)), 10, "a few trades per symbol"
        )
        for i in range(2):
            await r.caught_up(N, i)
        r.sim.inject(Fault("drop"), exchange=N)
        await r.until(lambda: total(r, "successful_reconnects") >= 1, 10, "reconnect")
        await recovered(r)
        for i in range(2):
            key = trade_stream(N, r.native(N, i))
            old, new = (c.streams[key] for c in r.sim_conns(N) if key in c.streams)
            assert old.last_id is not None and new.first_id is not None
            assert new.first_id <= old.last_id, "the snapshot repeated trades the old socket had sent"
            r.assert_trades_exact(N, i)
        stats = r.manager.feeds[N].stats()
        assert stats.id_regressions == 0 and stats.out_of_order == 0
        assert stats.adapter_counters.get("trade_snapshot_dropped", 0) >= 2


@pytest.mark.timeout(30)
async def test_stall_and_corrupt_and_delay() -> None:
    async with rig((N,)) as r:
        await r.healthy(N)
        await r.flowing(N)
        r.sim.inject(Fault("corrupt"), exchange=N)
        await r.until(lambda: total(r, "decode_errors") == 1, 5, "decode error counted")
        r.sim.inject(Fault("delay", amount_ms=100.0, duration_s=1.0), exchange=N)
        await recovered(r)
        assert total(r, "disconnections") == 0
        r.sim.inject(Fault("stall", duration_s=30.0), exchange=N)
        await r.until(lambda: total(r, "successful_reconnects") >= 1, 15, "reset on stall")
        await recovered(r)
        assert r.rec.count(E.STALE_SUBSCRIPTION, N) >= 1 and r.rec.count(E.HEARTBEAT_TIMEOUT, N) == 0
        for i in range(2):
            got = r.delivered_trades(N, i)
            assert got == sorted(set(got))
        r.assert_books_increasing(N)


@pytest.mark.parametrize("kind", ["gap", "badchecksum"])
@pytest.mark.timeout(30)
async def test_book_fault_resyncs_only_that_symbol_by_checksum(kind: str) -> None:
    """A withheld update (gap) or a wrong checksum: Bitget's guard is the checksum, so both resync by cause
    ``checksum`` (resubscribe), only that symbol, no reconnect; the book equals the simulator's again."""
    async with rig((N,)) as r:
        r.watch_book_matches((N,))
        await r.healthy(N)
        await r.flowing(N)
        before = (snapshots(r, 0), snapshots(r, 1))
        r.sim.inject(Fault(kind, symbol=r.native(N, 0)), exchange=N)

        def resynced() -> bool:
            h = {b.symbol: b for b in r.manager.feeds[N].book_health()}[r.unified(N, 0)]
            return h.checksum_failures >= 1 and snapshots(r, 0) > before[0]

        await r.until(resynced, 8, f"{kind} resync")
        await recovered(r)
        health = {b.symbol: b for b in r.manager.feeds[N].book_health()}
        hit, other = health[r.unified(N, 0)], health[r.unified(N, 1)]
        assert hit.state == other.state == "live"
        assert hit.checksum_failures == 1 and hit.resyncs_by_cause == {"checksum": 1}
        assert other.resyncs == 0 and snapshots(r, 1) == before[1]
        assert total(r, "disconnections") == 0
        for i in range(2):
            r.assert_trades_exact(N, i)
        r.assert_books_increasing(N)
        n = r.book_matches(N)[0]
        await r.until(lambda: r.book_matches(N)[0] > n, 5, "book equals the simulator's")
        assert r.book_matches(N)[1] == 0


@pytest.mark.timeout(30)
async def test_seqreset_is_followed_and_noping_ends_the_session(monkeypatch: pytest.MonkeyPatch) -> None:
    patch_policy(monkeypatch, _fast_app_pings)
    slow = {"watchdog": {"first_data_timeout_s": 5.0, "min_idle_s": 4.0, "max_idle_s": 8.0}}
    async with rig((N,), entry=slow) as r:
        r.watch_book_matches((N,))
        await r.healthy(N)
        await r.flowing(N)
        top = r.delivered_books(N, 0)[-1][0]
        r.sim.inject(Fault("seqreset", symbol=r.native(N, 0)), exchange=N)
        await r.until(lambda: r.delivered_books(N, 0)[-1][0] < top, 5, "lower seq delivered")
        assert total(r, "disconnections") == 0
        health = {b.symbol: b for b in r.manager.feeds[N].book_health()}[r.unified(N, 0)]
        assert health.resyncs == 0, "the chain follows the restart"
        r.sim.inject(Fault("noping"), exchange=N)
        r.sim.inject(Fault("stall", duration_s=30.0), exchange=N)
        await r.until(lambda: r.rec.count(E.HEARTBEAT_TIMEOUT, N) >= 1, 5, "heartbeat timeout")
        await recovered(r)
        assert r.rec.count(E.STALE_SUBSCRIPTION, N) == 0
        for i in range(2):
            r.assert_trades_exact(N, i)


@pytest.mark.timeout(30)
async def test_reject_is_reported_once_and_notice_changes_nothing() -> None:
    async with rig((N,)) as r:
        await r.healthy(N)
        await r.flowing(N)
        requests: list[str] = []
        server = r.server(N)
        original = server.on_text

        async def counting(conn: Any, text: str) -> None:
            if "ticker" in text:
                requests.append(text)
            await original(conn, text)

        server.on_text = counting  # type: ignore[method-assign]
        r.sim.inject(Fault("reject"), exchange=N)
        r.sim.inject(Fault("notice"), exchange=N)
        await r.manager.subscribe(N, [Subscription(Channel.TICKER, r.unified(N, 0))])
        await r.until(lambda: r.rec.count(E.SUBSCRIPTION_REJECTED, N) >= 1, 5, "rejected")
        for _ in range(3):
            await r.flowing(N)
        assert len(requests) == 1
        assert r.rec.count(E.SUBSCRIPTION_REJECTED, N) == 1
        assert sum(c.stats().subscriptions_rejected for c in r.conns(N)) == 1
        assert total(r, "disconnections") == 0 and total(r, "rotations") == 0


@pytest.mark.timeout(30)
async def test_lifetime_rotation_make_before_break(monkeypatch: pytest.MonkeyPatch) -> None:
    """The 24 h forced close, shortened to 3 s on both sides: the engine rotates first; no gap, no double, no
    book resync."""

    def short_life(adapter: ExchangeAdapter) -> None:
        adapter.policy = replace(adapter.policy, max_lifetime_s=3.0)

    patch_policy(monkeypatch, short_life)
    async with rig((N,), config=sim_config(bitget={"lifetime_s": 3.0}), entry={"rotation_lead_s": 1.0}) as r:
        await r.healthy(N)
        await r.flowing(N)
        before = (snapshots(r, 0), snapshots(r, 1))
        await r.until(lambda: all(c.rotations >= 1 for c in r.conns(N)), 8, "rotated")
        await recovered(r)
        assert total(r, "disconnections") == 0
        for i in range(2):
            r.assert_trades_exact(N, i, rotation=True)
            assert snapshots(r, i) == before[i]
        r.assert_books_increasing(N)


@pytest.mark.timeout(30)
async def test_linear_perpetual_subscribes_and_delivers() -> None:
    """``BTC/USDT:USDT`` and ``ETH/USDT:USDT`` (USDT-FUTURES): confirmed, books live and equal to the simulator's
    (every level, compared whenever the client's book is at the simulator's current ``seq``), trades in id
    order."""
    async with rig((N,)) as r:
        m = r.manager
        ep = r.sim.endpoints()[N]
        checks: list[tuple[str, bool]] = []

        def compare(u: BookUpdate) -> None:
            if u.feed != "bitget-perp":
                return
            src = r.server(N).sources.get("USDT-FUTURES:" + u.exchange_symbol)
            book = m.feeds["bitget-perp"].book(u.symbol)
            if src is None or book is None or book.last_sequence != src.last_update_id:
                return
            bids, asks = src.book.top(src.book.depth())
            theirs = (
                {Decimal(p): Decimal(q) for p, q in bids},
                {Decimal(p): Decimal(q) for p, q in asks},
            )
            checks.append((u.symbol, (book.bids(), book.asks()) == theirs))

        r.rec.on_book = compare
        entry = ExchangeConfig.model_validate(
            {
                "exchange": N,
                "market": "perpetual",
                "symbols": ["BTC/USDT:USDT", "ETH/USDT:USDT"],
                "channels": ["trades", "book", "ticker"],
                "ws_url": ep["ws_url"],
                "rest_url": ep["rest_url"],
                "reconnect": FAST_RECONNECT,
                "watchdog": FAST_WATCHDOG,
            }
        )
        await m.add_exchange("bitget-perp", entry)
        await r.until(
            lambda: (
                len(r.rec.trades.get((N, "BTC/USDT:USDT"), [])) >= 3
                and len(r.rec.books.get((N, "ETH/USDT:USDT"), [])) >= 3
            ),
            15,
            "perpetual data",
        )
        feed = m.feeds["bitget-perp"]
        assert {b.symbol: b.state for b in feed.book_health()} == {
            "BTC/USDT:USDT": "live",
            "ETH/USDT:USDT": "live",
        }
        await r.until(
            lambda: {s for s, ok in checks if ok} == {"BTC/USDT:USDT", "ETH/USDT:USDT"},
            10,
            "both perpetual books compared equal to the simulator's",
        )
        assert all(ok for _, ok in checks), [c for c in checks if not c[1]][:3]
        src = r.server(N).sources["USDT-FUTURES:BTCUSDT"]
        got = r.rec.trades[(N, "BTC/USDT:USDT")]
        assert got == sorted(set(got)) and got[-1] <= src.last_trade_id
