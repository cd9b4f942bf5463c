"""End to end: every simulator fault kind against Binance spot, Binance USD-M and OKX, through ExchangeManager.

Each test starts the simulator (synthetic markets) and a manager subscribed to trades and L2 books of two
symbols per exchange, waits until everything is confirmed and flowing, injects a fault, then proves recovery
by comparing what the manager delivered with what the simulator says it sent.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from cryptolink.engine import ConnectionEventType as E
from cryptolink.exchanges.base import ExchangeAdapter
from cryptolink.models import Channel, Subscription
from cryptolink.simulator import Fault
from tests.integration.harness import Rig, patch_policy, rig, sim_config

pytestmark = pytest.mark.integration

ALL = ("binance", "binanceusdm", "okx")
BINANCE = ("binance", "binanceusdm")


async def ready(r: Rig, names: tuple[str, ...] = ALL) -> None:
    for n in names:
        await r.healthy(n)
        await r.flowing(n)


def total(r: Rig, name: str, attr: str) -> int:
    return sum(int(getattr(c, attr)) for c in r.conns(name))


async def recovered(r: Rig, name: str) -> None:
    """Healthy again, data flowing on every stream, caught up with the simulator on both symbols."""
    await r.healthy(name)
    await r.flowing(name)
    await r.caught_up(name, 0)
    await r.caught_up(name, 1)


def snapshots(r: Rig, name: str, i: int) -> int:
    return sum(1 for _, snap in r.delivered_books(name, i) if snap)


# ------------------------------------------------------------------------------------------ reconnect faults


@pytest.mark.parametrize("kind", ["drop", "close", "lifetime"])
@pytest.mark.timeout(30)
async def test_connection_loss_recovers_without_loss(kind: str) -> None:
    """drop (TCP abort), close 1011 and an unannounced lifetime close (1001): reconnect, subscriptions restored,
    books resynced and equal to the simulator's, nothing delivered twice, nothing lost while connected."""
    async with rig(ALL) as r:
        r.watch_book_matches(ALL)
        await ready(r)
        for n in ALL:
            r.sim.inject(Fault(kind, code=1011), exchange=n)
        for n in ALL:

            def reconnected(n: str = n) -> bool:
                return all(c.successful_reconnects >= 1 for c in r.conns(n))

            await r.until(reconnected, 10, f"{n} reconnected")
            await recovered(r, n)
        for n in ALL:
            for c in r.conns(n):
                assert c.disconnections == 1, c.conn_id
                assert c.successful_reconnects == 1, c.conn_id
                assert c.stats().subscriptions_confirmed == len(c.subscriptions.desired)
            assert r.rec.count(E.RECONNECT_SUCCESS, n) == len(r.conns(n))
            for i in range(2):
                r.assert_trades_exact(n, i)
                assert snapshots(r, n, i) == 2, "one snapshot at start, one resync after the reconnect"
            r.assert_books_increasing(n)
            eq, ne = r.book_matches(n)
            assert ne == 0 and eq >= 1, (n, eq, ne)


@pytest.mark.timeout(30)
async def test_stall_is_caught_by_the_data_watchdog_while_pings_are_answered() -> None:
    """stall: the socket answers pings but sends no data. The data watchdog reports stale subscriptions and
    resets the session within a few seconds, long before the stall would end; nothing is lost or doubled."""
    async with rig(ALL) as r:
        await ready(r)
        stall_ends = r.sim.clock.monotonic() + 30.0
        for n in ALL:
            r.sim.inject(Fault("stall", duration_s=30.0), exchange=n)
        for n in ALL:

            def reset(n: str = n) -> bool:
                return all(c.successful_reconnects >= 1 for c in r.conns(n))

            await r.until(reset, 20, f"{n} reset on stall")
        for n in ALL:
            await recovered(r, n)
            assert r.rec.count(E.STALE_SUBSCRIPTION, n) >= 1
            assert r.rec.count(E.HEARTBEAT_TIMEOUT, n) == 0, "pings were answered: not a keepalive failure"
            stalled = [c for c in r.sim_conns(n) if c.stalled > 0]
            assert stalled, "the simulator withheld data frames"
            # the client gave up on the stalled sockets, long before the stall would have ended by itself
            assert all(c.closed_at_s is not None and c.closed_at_s < stall_ends for c in stalled)
            assert all(c.close_code == 1000 for c in stalled), "closed by us"
            stall_gaps = [g for g in r.rec.gaps if g.feed == n and g.stream.value == "trades"]
            assert stall_gaps and all(g.to_ms is not None for g in stall_gaps)
            for i in range(2):
                r.assert_trades_exact(n, i)
            r.assert_books_increasing(n)


def _fast_protocol_pings(adapter: ExchangeAdapter) -> None:
    ka = replace(adapter.policy.keepalive, protocol_ping_interval_s=0.3, pong_timeout_s=0.6)
    adapter.policy = replace(adapter.policy, keepalive=ka)


def _fast_app_pings(adapter: ExchangeAdapter) -> None:
    ka = replace(adapter.policy.keepalive, app_ping_idle_s=0.2, pong_timeout_s=0.4)
    adapter.policy = replace(adapter.policy, keepalive=ka)


@pytest.mark.timeout(30)
async def test_noping_binance_protocol_ping_unanswered(monkeypatch: pytest.MonkeyPatch) -> None:
    """noping on Binance: our protocol pings get no pong although data flows; keepalive declares the socket
    dead (heartbeat_timeout) and reconnects; the data watchdog plays no part."""
    patch_policy(monkeypatch, _fast_protocol_pings)
    async with rig(BINANCE) as r:
        await ready(r, BINANCE)
        for n in BINANCE:
            r.sim.inject(Fault("noping"), exchange=n)
        for n in BINANCE:

            def timed_out(n: str = n) -> bool:
                return r.rec.count(E.HEARTBEAT_TIMEOUT, n) >= len(r.conns(n))

            await r.until(timed_out, 8, n)
            await recovered(r, n)
            assert r.rec.count(E.STALE_SUBSCRIPTION, n) == 0
            assert total(r, n, "successful_reconnects") >= len(r.conns(n))
            for i in range(2):
                r.assert_trades_exact(n, i)


@pytest.mark.timeout(30)
async def test_noping_okx_text_ping_unanswered(monkeypatch: pytest.MonkeyPatch) -> None:
    """noping on OKX: once the socket goes quiet we send the text ``ping`` (docs/protocols/okx.md keepalive);
    no ``pong`` comes back, so keepalive (not the slower data watchdog) ends the session."""
    patch_policy(monkeypatch, _fast_app_pings)
    slow_watchdog = {"watchdog": {"first_data_timeout_s": 5.0, "min_idle_s": 4.0, "max_idle_s": 8.0}}
    async with rig(("okx",), entry=slow_watchdog) as r:
        await ready(r, ("okx",))
        r.sim.inject(Fault("noping"), exchange="okx")
        r.sim.inject(Fault("stall", duration_s=30.0), exchange="okx")
        await r.until(lambda: r.rec.count(E.HEARTBEAT_TIMEOUT, "okx") >= 1, 5, "okx heartbeat timeout")
        await recovered(r, "okx")
        assert r.rec.count(E.STALE_SUBSCRIPTION, "okx") == 0
        assert r.conn("okx").successful_reconnects == 1
        for i in range(2):
            r.assert_trades_exact("okx", i)


@pytest.mark.timeout(30)
async def test_stall_alone_okx_text_ping_is_answered(monkeypatch: pytest.MonkeyPatch) -> None:
    """Control for the test above: with pongs answered, a quiet OKX socket is NOT a keepalive failure."""
    patch_policy(monkeypatch, _fast_app_pings)
    slow_watchdog = {"watchdog": {"first_data_timeout_s": 5.0, "min_idle_s": 1.5, "max_idle_s": 8.0}}
    async with rig(("okx",), entry=slow_watchdog) as r:
        await ready(r, ("okx",))
        r.sim.inject(Fault("stall", duration_s=30.0), exchange="okx")
        await r.until(lambda: r.rec.count(E.STALE_SUBSCRIPTION, "okx") >= 1, 8, "okx stale")
        await recovered(r, "okx")
        assert r.rec.count(E.HEARTBEAT_TIMEOUT, "okx") == 0


@pytest.mark.timeout(30)
async def test_delay_is_latency_not_failure() -> None:
    """delay: every frame held 150 ms for 2 s. No reconnect, no loss, books stay in sequence."""
    async with rig(ALL) as r:
        await ready(r)
        for n in ALL:
            r.sim.inject(Fault("delay", amount_ms=150.0, duration_s=2.0), exchange=n)
        for n in ALL:
            await r.flowing(n)
        await r.until(
            lambda: all(c.delay_s > 0 for s in r.sim.servers.values() for c in s.connections.values())
        )
        await r.flowing("okx", within_s=10)
        for n in ALL:
            await recovered(r, n)
            assert total(r, n, "disconnections") == 0
            for i in range(2):
                r.assert_trades_exact(n, i)
            r.assert_books_increasing(n)


# ------------------------------------------------------------------------------------------ in-band faults


@pytest.mark.timeout(30)
async def test_corrupt_frame_is_counted_and_skipped() -> None:
    """corrupt: one data frame becomes invalid JSON. It is counted (decode_errors +1) and skipped; no reconnect;
    at most that one frame's content is missing; a book that lost a delta resyncs on its own."""
    async with rig(ALL) as r:
        await ready(r)
        for n in ALL:
            r.sim.inject(Fault("corrupt"), exchange=n)
        for n in ALL:

            def decode_error_counted(n: str = n) -> bool:
                return total(r, n, "decode_errors") == len(r.conns(n))

            await r.until(decode_error_counted, 5, f"{n} decode error")
            await recovered(r, n)
            assert total(r, n, "disconnections") == 0
            assert total(r, n, "decode_errors") == len(r.conns(n))

            # the error shows in the score's error rate (it used to read 0.00 err/min)
            def in_error_rate(n: str = n) -> bool:
                return all(c.quality().error_rate_per_min > 0 for c in r.conns(n))

            await r.until(in_error_rate, 5, f"{n} err/min")
            for i in range(2):
                got = r.delivered_trades(n, i)
                assert got == sorted(set(got))
                first = min(a for a, _, _, _ in r.sent_trade_ranges(n, i))
                missing = set(range(first, got[-1] + 1)) - set(got)
                assert len(missing) <= 1, (n, i, sorted(missing)[:5])
            r.assert_books_increasing(n)


@pytest.mark.parametrize("kind", ["gap", "badchecksum"])
@pytest.mark.timeout(30)
async def test_book_fault_resyncs_only_that_symbol(kind: str) -> None:
    """gap (all three) / badchecksum (OKX): the affected book resyncs (REST snapshot on Binance, resubscribe on
    OKX) and matches the simulator again; the other symbol's book stays live untouched; no reconnect."""
    names = ALL if kind == "gap" else ("okx",)
    async with rig(names) as r:
        r.watch_book_matches(names)
        await ready(r, names)
        before = {n: (snapshots(r, n, 0), snapshots(r, n, 1)) for n in names}
        for n in names:
            r.sim.inject(Fault(kind, symbol=r.native(n, 0)), exchange=n)
        for n in names:
            feed = r.manager.feeds[n]

            def resynced(n: str = n) -> bool:
                h = {b.symbol: b for b in r.manager.feeds[n].book_health()}[r.unified(n, 0)]
                return h.gaps + h.checksum_failures >= 1 and snapshots(r, n, 0) > before[n][0]

            await r.until(resynced, 8, f"{n} {kind} resync")
            await recovered(r, n)
            health = {b.symbol: b for b in feed.book_health()}
            hit, other = health[r.unified(n, 0)], health[r.unified(n, 1)]
            assert hit.state == "live" and other.state == "live"
            assert other.gaps == 0 and other.checksum_failures == 0 and other.resyncs == 0
            assert snapshots(r, n, 1) == before[n][1], "the other symbol's book was not resynced"
            if kind == "badchecksum":
                assert hit.checksum_failures == 1 and hit.resyncs_by_cause == {"checksum": 1}
                assert total(r, n, "book_errors") == 1

                def checksum_in_error_rate(n: str = n) -> bool:
                    return r.conn(n).quality().error_rate_per_min > 0

                await r.until(checksum_in_error_rate, 5, "checksum in err/min")
            else:
                assert hit.resyncs_by_cause == {"gap": 1}
            assert total(r, n, "disconnections") == 0
            assert total(r, n, "successful_reconnects") == 0
            for i in range(2):
                r.assert_trades_exact(n, i)
            r.assert_books_increasing(n)
        for n in names:

            def book_matches(n: str = n) -> bool:
                return r.book_matches(n)[0] >= 1

            await r.until(book_matches, 5, f"{n} book equals the simulator's")
            assert r.book_matches(n)[1] == 0


@pytest.mark.timeout(30)
async def test_seqreset_okx_book_follows_the_lower_chain() -> None:
    """seqreset (OKX maintenance): seqIds restart lower; the book follows (docs/protocols/okx.md), stays
    equal to the simulator's, no reconnect; trades unaffected."""
    async with rig(("okx",)) as r:
        r.watch_book_matches(("okx",))
        await ready(r, ("okx",))
        top = r.delivered_books("okx", 0)[-1][0]
        r.sim.inject(Fault("seqreset", symbol=r.native("okx", 0)), exchange="okx")
        await r.until(lambda: r.delivered_books("okx", 0)[-1][0] < top, 5, "lower seqIds delivered")
        n_checks = r.book_matches("okx")[0]
        await recovered(r, "okx")
        await r.until(
            lambda: r.book_matches("okx")[0] > n_checks, 5, "book equals the simulator's after reset"
        )
        assert r.book_matches("okx")[1] == 0
        assert r.conn("okx").disconnections == 0
        seqs = [s for s, _ in r.delivered_books("okx", 0)]
        drop = next(k for k in range(1, len(seqs)) if seqs[k] < seqs[k - 1])
        after = seqs[drop:]
        assert len(after) > 1
        assert after == sorted(set(after)), "strictly increasing after the reset"
        for i in range(2):
            r.assert_trades_exact("okx", i)


@pytest.mark.timeout(30)
async def test_reject_is_reported_and_not_retried() -> None:
    """reject: the next subscribe request is refused. The manager reports subscription_rejected and does not
    retry it in a loop (the simulator receives exactly one request for it); the rest keeps flowing."""
    async with rig(ALL) as r:
        await ready(r)
        requests: dict[str, list[str]] = {n: [] for n in ALL}
        for n in ALL:
            server = r.server(n)
            original = server.on_text

            async def counting(conn: Any, text: str, n: str = n, original: Any = original) -> None:
                if "subscribe" in text.lower():
                    requests[n].append(text)
                await original(conn, text)

            server.on_text = counting  # type: ignore[method-assign]
        for n in ALL:
            r.sim.inject(Fault("reject"), exchange=n)
            await r.manager.subscribe(n, [Subscription(Channel.TICKER, r.unified(n, 0))])
        for n in ALL:

            def rejected(n: str = n) -> bool:
                return r.rec.count(E.SUBSCRIPTION_REJECTED, n) >= 1

            await r.until(rejected, 5, f"{n} rejected")
        for _ in range(3):  # a while of normal traffic: any retry loop would show up
            for n in ALL:
                await r.flowing(n)
        for n in ALL:
            subs = [t for t in requests[n] if "icker" in t]
            assert len(subs) == 1, (n, subs)
            assert total(r, n, "disconnections") == 0
            assert sum(c.stats().subscriptions_rejected for c in r.conns(n)) == 1
            assert r.rec.count(E.SUBSCRIPTION_REJECTED, n) == 1


# ---------------------------------------------------------------------------------------------- rotation


@pytest.mark.timeout(30)
async def test_notice_rotates_make_before_break_without_gap_or_double() -> None:
    """notice (Binance serverShutdown, OKX 64008): a replacement socket is subscribed and flowing before the old
    one closes. Consumers see every trade id exactly once and book sequences with no gap and no resync."""
    async with rig(ALL) as r:
        await ready(r)
        before = {n: (snapshots(r, n, 0), snapshots(r, n, 1)) for n in ALL}
        for n in ALL:
            r.sim.inject(Fault("notice"), exchange=n)
        for n in ALL:

            def rotated(n: str = n) -> bool:
                return all(c.rotations >= 1 for c in r.conns(n))

            await r.until(rotated, 10, f"{n} rotated")
            await recovered(r, n)
        for n in ALL:
            assert total(r, n, "disconnections") == 0
            assert r.rec.count(E.SERVER_NOTICE, n) >= 1
            assert r.rec.count(E.ROTATION_COMPLETED, n) == len(r.conns(n))
            for i in range(2):
                r.assert_trades_exact(n, i, rotation=True)
                assert snapshots(r, n, i) == before[n][i], "no book resync across the rotation"
            for b in r.manager.feeds[n].book_health():
                assert b.gaps == 0 and b.checksum_failures == 0
            r.assert_books_increasing(n)
            closed = [c for c in r.sim_conns(n) if not c.open]
            assert closed and all(c.close_code == 1000 for c in closed), "old sockets closed by us, normally"


@pytest.mark.timeout(30)
async def test_lifetime_rotation_before_the_server_cuts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Binance 24 h lifetime (docs/protocols/binance.md), shortened to 4 s on both sides: the engine rotates
    ahead of it, so the server never has to cut, and nothing is lost or doubled."""

    def short_life(adapter: ExchangeAdapter) -> None:
        adapter.policy = replace(adapter.policy, max_lifetime_s=4.0)

    patch_policy(monkeypatch, short_life)
    cfg = sim_config(binance={"lifetime_s": 4.0}, binanceusdm={"lifetime_s": 4.0})
    async with rig(BINANCE, config=cfg, entry={"rotation_lead_s": 1.0}) as r:
        await ready(r, BINANCE)
        before = {n: (snapshots(r, n, 0), snapshots(r, n, 1)) for n in BINANCE}
        for n in BINANCE:

            def rotated(n: str = n) -> bool:
                return all(c.rotations >= 1 for c in r.conns(n))

            await r.until(rotated, 8, f"{n} rotated")
            await recovered(r, n)
        for n in BINANCE:
            assert total(r, n, "disconnections") == 0
            for i in range(2):
                r.assert_trades_exact(n, i, rotation=True)
                assert snapshots(r, n, i) == before[n][i]
            r.assert_books_increasing(n)
            cut = [c for c in r.sim_conns(n) if c.close_code == 1001]
            assert not cut, "the server never had to enforce the lifetime"
