from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from cryptolink.clock import FakeClock
from cryptolink.engine.backoff import BackoffPolicy
from cryptolink.engine.connection import EngineConfig, ManagedConnection, MarketData
from cryptolink.engine.errors import ConfigError, IllegalTransition
from cryptolink.engine.events import ConnectionEvent, ConnectionEventType
from cryptolink.engine.state import ConnectionState
from cryptolink.engine.watchdog import WatchdogConfig
from cryptolink.exchanges.base import ConnectionPolicy, ConnectionSpec, KeepalivePolicy
from cryptolink.models import Subscription

from .fakes import (
    BTC_TRADES,
    ETH_TRADES,
    REFUSED,
    FakeAdapter,
    FakeTransport,
    settle,
    state_of,
    trade,
    until,
    wait_connected,
)

S = ConnectionState
E = ConnectionEventType


class Harness:
    def __init__(
        self,
        policy: ConnectionPolicy | None = None,
        config: EngineConfig | None = None,
        subs: tuple[Subscription, ...] = (BTC_TRADES,),
        transport: FakeTransport | None = None,
        raise_in_callback: bool = False,
    ) -> None:
        self.clock = FakeClock()
        self.transport = transport or FakeTransport()
        self.data: list[MarketData] = []
        self.events: list[ConnectionEvent] = []
        self.raise_in_callback = raise_in_callback
        self.conn = ManagedConnection(
            FakeAdapter(policy),
            ConnectionSpec("ws://fake/ws", subs),
            conn_id="c1",
            config=config or EngineConfig(seed=1, tick_s=0.5),
            clock=self.clock,
            transport=self.transport,
            on_data=self.on_data,
            on_event=self.events.append,
        )

    def on_data(self, conn: ManagedConnection, items: list[MarketData]) -> None:
        self.data.extend(items)
        if self.raise_in_callback:
            raise RuntimeError("consumer bug")

    def of(self, t: ConnectionEventType) -> list[ConnectionEvent]:
        return [e for e in self.events if e.type is t]

    @property
    def sess(self) -> Any:
        return self.transport.sessions[-1]

    async def connected(self, n: int = 1) -> None:
        """Wait for the n-th session, advancing fake time in small steps to let backoff delays pass."""
        await wait_connected(self.conn, self.transport, self.clock, n)

    async def ack_all(self) -> None:
        for m in self.sess.sent_ops("subscribe"):
            self.sess.feed(f'{{"ack":{m["id"]}}}')
        await settle()


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    harness = Harness()
    yield harness
    await harness.conn.stop()


async def test_start_subscribe_ack_data(h: Harness) -> None:
    await h.conn.start()
    await h.connected()
    (req,) = h.sess.sent_ops("subscribe")
    assert req["args"] == ["trades:BTC/USDT"]
    assert h.conn.stats().subscriptions_pending == 1
    await h.ack_all()
    h.sess.feed(trade(tid=1, ts=1_700_000_000_000))
    await settle()
    st = h.conn.stats()
    assert st.subscriptions_confirmed == 1 and st.messages == 2 and st.market_events == 1
    assert [t.sequence for t in h.data] == [1]  # type: ignore[union-attr]
    assert h.of(E.CONNECTED) and h.of(E.STATE_CHANGED)[0].description.startswith("disconnected -> connecting")
    with pytest.raises(dataclasses.FrozenInstanceError):
        st.messages = 0  # type: ignore[misc]


async def test_decode_errors_counted_and_skipped(h: Harness) -> None:
    await h.conn.start()
    await h.connected()
    for bad in ("{not json", "[1,2]", '{"what":1}'):
        h.sess.feed(bad)
    h.sess.feed(trade(tid=5))
    await settle()
    assert h.conn.stats().decode_errors == 3
    assert h.conn.state is S.CONNECTED and len(h.transport.sessions) == 1
    assert len(h.data) == 1


async def test_callback_exception_isolated() -> None:
    h = Harness(raise_in_callback=True)
    await h.conn.start()
    await h.connected()
    for i in range(3):
        h.sess.feed(trade(tid=i))
    await settle()
    assert h.conn.stats().callback_errors == 3 and len(h.data) == 3
    assert h.conn.state is S.CONNECTED and len(h.transport.sessions) == 1
    await h.conn.stop()


async def test_server_close_reconnects_and_replays(h: Harness) -> None:
    await h.conn.start()
    await h.connected()
    await h.conn.subscribe([ETH_TRADES])
    await h.ack_all()
    h.sess.server_close()
    await h.connected(2)
    assert [m["args"] for m in h.sess.sent_ops("subscribe")] == [["trades:BTC/USDT", "trades:ETH/USDT"]]
    st = h.conn.stats()
    assert st.disconnections == 1 and st.successful_reconnects == 1 and st.subscriptions_pending == 2
    assert h.of(E.DISCONNECTED) and h.of(E.RECONNECT_SUCCESS)[0].attempt == 2
    first_id = h.transport.sessions[0].sent_ops("subscribe")[0]["id"]
    h.sess.feed(f'{{"ack":{first_id}}}')  # late ack from the old socket: ignored
    await settle()
    assert h.conn.stats().subscriptions_confirmed == 0


async def test_accept_then_close_never_tight_loops() -> None:
    h = Harness()
    h.transport.on_connect = lambda s: s.server_close()
    await h.conn.start()
    bounds = []
    for _ in range(8):
        await until(lambda: h.clock.pending_sleepers >= 2)  # ticker + backoff sleep
        bounds.append(h.conn.backoff.bound(h.conn.backoff.attempt))
        await h.clock.advance(h.conn.backoff.bound(h.conn.backoff.attempt) + 0.01)
    # growing to the cap, never reset by sockets that deliver no data
    assert bounds == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]
    attempts = [e.attempt for e in h.of(E.RECONNECT_ATTEMPT)]
    assert attempts == list(range(2, len(attempts) + 2))
    await h.conn.stop()


async def test_backoff_resets_only_once_the_session_delivered_data_for_reset_after_s() -> None:
    h = Harness()
    h.transport.script = [REFUSED, REFUSED]
    await h.conn.start()
    for _ in range(2):
        await until(lambda: h.clock.pending_sleepers >= 2)
        await h.clock.advance(h.conn.backoff.bound(h.conn.backoff.attempt) + 0.01)
    await h.connected()
    assert h.conn.backoff.attempt == 3
    await h.ack_all()
    await h.clock.advance(8.0)  # open but silent: the exchange did not prove it serves us
    assert h.conn.backoff.attempt == 3
    h.sess.feed(trade())
    await settle()
    await h.clock.advance(1.5)
    assert h.conn.backoff.attempt == 3  # data for 1.5 s: not yet (reset_after_s = 2)
    h.sess.feed(trade(tid=2))
    await h.clock.advance(1.0)
    assert h.conn.backoff.attempt == 0
    await h.conn.stop()


async def test_flapping_server_that_serves_data_gets_immediate_reconnects() -> None:
    """A fault every few seconds: each session delivers data and lives > 2 s, so every reconnect is attempt 1
    (immediate) instead of growing towards the cap until the server looks dead."""
    h = Harness()
    await h.conn.start()
    await h.connected()
    tid = 0
    for n in range(2, 12):
        await h.ack_all()
        for _ in range(6):  # 3 s of data
            tid += 1
            h.sess.feed(trade(tid=tid))
            await h.clock.advance(0.5)
        h.sess.server_close(1006)
        await h.connected(n)
    attempts = [e.attempt for e in h.of(E.RECONNECT_SUCCESS)]
    assert attempts == [1] * 10
    assert all(e.description.startswith("retry in 0.0 s") for e in h.of(E.RECONNECT_ATTEMPT))
    st = h.conn.stats()
    assert st.disconnections == st.unexpected_disconnections == 10 and st.successful_reconnects == 10
    await h.conn.stop()


async def test_max_attempts_then_failed_then_explicit_reconnect() -> None:
    h = Harness(
        config=EngineConfig(seed=1, backoff=BackoffPolicy(max_attempts=3)), transport=FakeTransport(REFUSED)
    )
    await h.conn.start()
    for _ in range(4):
        if h.conn.state is S.FAILED:
            break
        await until(lambda: h.clock.pending_sleepers >= 2 or h.conn.state is S.FAILED)
        await h.clock.advance(5.0)
    await until(lambda: h.conn.state is S.FAILED)
    assert h.transport.attempts == 3
    h.transport.default = None
    h.conn.reconnect()
    await h.connected()
    assert h.transport.attempts == 4
    await h.conn.stop()
    assert h.conn.state is S.STOPPED
    with pytest.raises(IllegalTransition):
        h.conn.reconnect()


async def test_app_ping_keepalive_death_reconnects() -> None:
    policy = ConnectionPolicy(
        KeepalivePolicy(app_ping_frame="ping", app_ping_idle_s=25, protocol_ping_interval_s=None)
    )
    h = Harness(policy, subs=())  # no subscriptions: no data watchdog in play
    await h.conn.start()
    await h.connected()
    await h.clock.advance(24.0)
    assert "ping" not in h.sess.sent
    await h.clock.advance(1.5)
    assert h.sess.sent.count("ping") == 1
    h.sess.feed("pong")  # answered: alive, RTT recorded
    await settle()
    assert h.conn.quality().latency_mean_ms is not None
    await h.clock.advance(26.0)
    assert h.sess.sent.count("ping") == 2
    await h.clock.advance(11.0)  # no pong within pong_timeout_s = 10
    await h.connected(2)
    assert h.of(E.HEARTBEAT_TIMEOUT) and h.transport.sessions[0].closed_with is not None
    await h.conn.stop()


async def test_protocol_ping_unanswered_reconnects() -> None:
    h = Harness(
        ConnectionPolicy(KeepalivePolicy(protocol_ping_interval_s=30)),
        subs=(),
        transport=FakeTransport(auto_pong=False),
    )
    await h.conn.start()
    await h.connected()
    await h.clock.advance(31.0)
    assert h.sess.pings == 1
    await h.clock.advance(11.0)
    await h.connected(2)
    assert "protocol ping" in h.of(E.HEARTBEAT_TIMEOUT)[0].description
    await h.conn.stop()


async def test_heartbeats_and_pongs_do_not_reset_watchdog() -> None:
    h = Harness()
    await h.conn.start()
    await h.connected()
    await h.ack_all()
    h.sess.feed(trade())
    for _ in range(12):
        h.sess.feed('{"hb":1}')
        h.sess.feed("pong")
        await h.clock.advance(1.0)
    assert h.of(E.STALE_SUBSCRIPTION)  # first-rhythm timeout of 10 s passed despite heartbeats
    assert h.conn.stats().messages > 20


async def test_one_silent_subscription_is_judged_on_its_own() -> None:
    """ETH goes silent while BTC flows: ETH is reported stale and re-subscribed once on the same socket; the
    connection stays ``connected`` (BTC is fine) but its score's data part says 1 of 2 streams delivers."""
    h = Harness(subs=(BTC_TRADES, ETH_TRADES))
    await h.conn.start()
    await h.connected()
    await h.ack_all()
    for i in range(30):  # both busy, 10 msg/s
        h.sess.feed(trade("BTC/USDT", i))
        h.sess.feed(trade("ETH/USDT", i))
        await h.clock.advance(0.1)
    for i in range(60):  # ETH goes silent
        h.sess.feed(trade("BTC/USDT", 100 + i))
        await h.clock.advance(0.1)
    assert h.conn.state is S.CONNECTED
    stale = h.of(E.STALE_SUBSCRIPTION)
    assert stale and "ETH/USDT" in stale[0].description
    assert h.conn.stale_subscriptions() == [ETH_TRADES] and h.conn.stats().subscriptions_stale == 1
    assert h.conn.quality().data == 50.0
    await settle()
    assert h.sess.sent_ops("unsubscribe")[-1]["args"] == ["trades:ETH/USDT"]
    assert h.sess.sent_ops("subscribe")[-1]["args"] == ["trades:ETH/USDT"]
    assert len(h.transport.sessions) == 1  # cheap fix on the same socket
    h.sess.feed(trade("ETH/USDT", 999))
    await h.clock.advance(0.6)
    assert h.conn.stale_subscriptions() == [] and h.conn.quality().data == 100.0


async def test_every_subscription_silent_makes_the_connection_unstable_with_the_true_reason() -> None:
    wd = WatchdogConfig(first_data_timeout_s=10.0, min_idle_s=2.5, max_idle_s=60.0)
    h = Harness(config=EngineConfig(seed=1, tick_s=0.5, watchdog=wd))
    await h.conn.start()
    await h.connected()
    await h.ack_all()
    await h.clock.advance(11.0)
    assert h.conn.state is S.UNSTABLE
    changed = h.of(E.STATE_CHANGED)[-1].description
    assert changed == "connected -> unstable: no subscription delivering (1 silent)"
    h.sess.feed(trade())
    await h.clock.advance(0.6)
    assert state_of(h.conn) is S.CONNECTED
    assert h.of(E.STATE_CHANGED)[-1].description.startswith("unstable -> connected: healthy again")
    await h.conn.stop()


async def test_quiet_connection_not_reset_before_its_first_message() -> None:
    """Every stream is quiet (e.g. a thin symbol's trades): the first-data timeout makes the stream stale and
    resubscribes it ONCE, but the session is reset only after ``max_idle_s`` without any market data."""
    wd = WatchdogConfig(first_data_timeout_s=10.0, min_idle_s=2.5, max_idle_s=60.0)
    h = Harness(config=EngineConfig(seed=1, tick_s=0.5, watchdog=wd))
    await h.conn.start()
    await h.connected()
    await h.ack_all()
    for _ in range(10):  # 50 s: stale reported, no reset, no resubscribe loop
        await h.clock.advance(5.0)
        await h.ack_all()
    assert len(h.transport.sessions) == 1
    assert h.of(E.STALE_SUBSCRIPTION)
    assert len(h.sess.sent_ops("unsubscribe")) == 1  # the cheap fix happened once, not every 10 s
    assert h.conn.state is S.UNSTABLE
    await h.clock.advance(11.0)  # past max_idle_s = 60 s with no market data at all
    await h.connected(2)
    assert any("connection silent" in e.description for e in h.of(E.STALE_SUBSCRIPTION))


async def test_busy_connection_that_goes_silent_resets_at_its_learned_threshold() -> None:
    wd = WatchdogConfig(first_data_timeout_s=10.0, min_idle_s=2.5, max_idle_s=60.0)
    h = Harness(subs=(BTC_TRADES, ETH_TRADES), config=EngineConfig(seed=1, tick_s=0.5, watchdog=wd))
    await h.conn.start()
    await h.connected()
    await h.ack_all()
    for i in range(30):  # 10 msg/s on the connection
        h.sess.feed(trade("BTC/USDT", i))
        await h.clock.advance(0.1)
    for _ in range(8):  # silent (pings would still be answered): reset within a few seconds
        await h.clock.advance(0.5)
    await h.connected(2)
    assert any("connection silent" in e.description for e in h.of(E.STALE_SUBSCRIPTION))


async def test_rejection_reported_not_retried(h: Harness) -> None:
    await h.conn.start()
    await h.connected()
    rid = h.sess.sent_ops("subscribe")[0]["id"]
    h.sess.feed(f'{{"rej":{rid}}}')
    await settle()
    assert h.of(E.SUBSCRIPTION_REJECTED) and h.conn.stats().subscriptions_rejected == 1
    await h.clock.advance(30.0)
    assert len(h.sess.sent_ops("subscribe")) == 1
    assert h.conn.state is S.CONNECTED


async def test_ack_timeout_retried_once_then_rejected(h: Harness) -> None:
    await h.conn.start()
    await h.connected()
    for i in range(21):  # data flows, but the ack never comes
        h.sess.feed(trade(tid=i))
        await h.clock.advance(1.0)
        if i == 10:
            assert len(h.sess.sent_ops("subscribe")) == 2  # retried once
    assert len(h.transport.sessions) == 1 and len(h.sess.sent_ops("subscribe")) == 2
    rejected = h.of(E.SUBSCRIPTION_REJECTED)
    assert rejected and rejected[0].error == "ack_timeout"


async def test_reply_required_answered_and_notices(h: Harness) -> None:
    await h.conn.start()
    await h.connected()
    h.sess.feed('{"ping":42}')
    h.sess.feed('{"err":"boom"}')
    await settle()
    assert '{"pong":42}' in h.sess.sent
    assert h.of(E.ERROR)[-1].error == "1: boom"


async def test_rotation_on_server_notice_is_make_before_break(h: Harness) -> None:
    await h.conn.start()
    await h.connected()
    await h.ack_all()
    old = h.sess
    old.feed('{"notice":"upgrade"}')
    await until(lambda: len(h.transport.sessions) == 2)
    await settle()
    new = h.sess
    assert h.of(E.SERVER_NOTICE) and h.of(E.ROTATION_STARTED)
    assert new.sent_ops("subscribe")[0]["args"] == ["trades:BTC/USDT"]
    assert old.closed_with is None  # old still open while the new one is not flowing
    old.feed(trade(tid=1))
    new.feed(f'{{"ack":{new.sent_ops("subscribe")[0]["id"]}}}')
    new.feed(trade(tid=1))  # overlap: both deliver, the consumer dedupes
    await until(lambda: old.closed_with is not None)
    assert old.closed_with == 1000
    assert h.of(E.ROTATION_COMPLETED) and h.conn.stats().rotations == 1
    assert h.conn.state is S.CONNECTED and h.conn.stats().disconnections == 0
    assert [t.trade_id for t in h.data] == ["1", "1"]  # type: ignore[union-attr]
    new.feed(trade(tid=2))
    await settle()
    assert h.conn.stats().subscriptions_confirmed == 1


async def test_rotation_before_lifetime_and_retry_on_failure() -> None:
    policy = ConnectionPolicy(KeepalivePolicy(protocol_ping_interval_s=None), max_lifetime_s=200)
    config = EngineConfig(seed=3, tick_s=1.0, rotation_lead_s=50, rotation_jitter=0.0, rotation_retry_s=10)
    h = Harness(policy, config)
    await h.conn.start()
    await h.connected()
    await h.ack_all()
    h.transport.script = [REFUSED]
    for i in range(151):
        h.sess.feed(trade(tid=i))
        await h.clock.advance(1.0)
    assert h.transport.attempts == 2 and len(h.transport.sessions) == 1  # replacement refused, old kept
    assert h.conn.state is S.CONNECTED
    for i in range(11):
        h.transport.sessions[0].feed(trade(tid=200 + i))
        await h.clock.advance(1.0)
    await until(lambda: len(h.transport.sessions) == 2)
    await settle()
    h.sess.feed(trade(tid=300))
    await until(lambda: h.transport.sessions[0].closed_with == 1000)
    assert h.conn.stats().rotations == 1
    await h.conn.stop()


async def test_rotation_old_dies_first_is_normal_reconnect(h: Harness) -> None:
    await h.conn.start()
    await h.connected()
    h.sess.feed('{"notice":"upgrade"}')
    await until(lambda: len(h.transport.sessions) == 2)
    h.transport.sessions[0].server_close()
    await h.connected(3)
    assert h.transport.sessions[1].closed_with is not None  # the half-done candidate was dropped
    assert h.conn.stats().rotations == 0 and h.conn.stats().disconnections == 1


async def test_outbound_rate_limit() -> None:
    policy = ConnectionPolicy(KeepalivePolicy(protocol_ping_interval_s=None), max_outbound_per_s=2)
    h = Harness(policy)
    await h.conn.start()
    await h.connected()
    tasks = [
        asyncio.create_task(h.conn.subscribe([Subscription(BTC_TRADES.channel, sym)]))
        for sym in ("A/B", "C/D", "E/F", "G/H")
    ]
    await settle()
    assert len(h.sess.sent) == 2  # 1 initial + 1 more: bucket of 2 empty
    await h.clock.advance(1.0)
    assert len(h.sess.sent) == 4
    await h.clock.advance(1.0)
    assert len(h.sess.sent) == 5
    assert all(t.done() for t in tasks)
    await h.conn.stop()


async def test_stop_is_graceful_and_final(h: Harness) -> None:
    await h.conn.start()
    await h.connected()
    await h.ack_all()
    sess = h.sess
    await h.conn.stop()
    assert sess.sent_ops("unsubscribe")[0]["args"] == ["trades:BTC/USDT"]
    assert sess.closed_with == 1000 and h.conn.state is S.STOPPED
    await h.clock.advance(100.0)
    assert len(h.transport.sessions) == 1


async def test_bad_subscriptions_rejected_up_front() -> None:
    h = Harness(ConnectionPolicy(KeepalivePolicy(), max_streams_per_connection=2))
    with pytest.raises(ValueError):
        await h.conn.subscribe([Subscription(BTC_TRADES.channel, "NOSLASH")])
    await h.conn.subscribe([ETH_TRADES])
    with pytest.raises(ConfigError):
        await h.conn.subscribe([Subscription(BTC_TRADES.channel, "X/Y")])


async def test_event_log_bounded_and_quality_stats(h: Harness) -> None:
    await h.conn.start()
    await h.connected()
    await h.clock.advance(1.0)
    for _ in range(150):
        h.sess.feed('{"err":"x"}')
    await settle(200)
    assert len(h.conn.events()) == 100
    h.conn.report_sequence_gap(3)
    h.conn.report_book_error(2)
    h.conn.set_stream_health(BTC_TRADES.key, False)
    assert h.conn.quality().data == 0.0 and h.conn.state is S.CONNECTED
    h.conn.set_stream_health(BTC_TRADES.key, True)
    assert h.conn.quality().data == 100.0
    await h.clock.advance(2.0)
    q = h.conn.quality()
    assert q.gaps == 3 and q.error_rate_per_min > 0
    st = h.conn.stats()
    assert st.errors == 152 and st.book_errors == 2 and st.exchange_errors == 150
    assert st.uptime_s == pytest.approx(3.0) and st.connected_since_ns is not None


async def test_batch_one_wakeup_frames_before_close_delivered(h: Harness) -> None:
    await h.conn.start()
    await h.connected()
    await h.ack_all()
    sess = h.sess
    before = sess.batches
    for i in range(1, 6):
        sess.feed(trade(tid=i))
    sess.feed("{broken")
    sess.feed(trade("ETH/USDT", tid=9))  # not subscribed: delivered, no watchdog stream
    sess.server_close(1001)
    await until(lambda: h.conn.state is S.RECONNECTING)
    assert sess.batches == before + 1  # every queued frame in one reader wakeup
    assert [t.sequence for t in h.data] == [1, 2, 3, 4, 5, 9]  # type: ignore[union-attr]
    st = h.conn.stats()
    assert st.market_events == 6 and st.decode_errors == 1 and st.messages == 1 + 7
    assert h.conn.watchdog.keys() == {BTC_TRADES.key}


async def test_app_ping_interval_measures_round_trip_while_data_flows() -> None:
    """OKX has no protocol pings and data never leaves the socket idle: the periodic text ping still measures
    the round-trip time (it used to show '-' forever)."""
    policy = ConnectionPolicy(
        KeepalivePolicy(
            app_ping_frame="ping", app_ping_idle_s=20, app_ping_interval_s=20, protocol_ping_interval_s=None
        )
    )
    h = Harness(policy)
    await h.conn.start()
    await h.connected()
    await h.ack_all()
    for i in range(40):  # 10 s of data at 4 msg/s: never idle
        h.sess.feed(trade(tid=i))
        await h.clock.advance(0.25)
    assert "ping" not in h.sess.sent
    for i in range(44):
        h.sess.feed(trade(tid=100 + i))
        await h.clock.advance(0.25)
        if "ping" in h.sess.sent:
            break
    assert h.sess.sent.count("ping") == 1
    await h.clock.advance(0.25)
    h.sess.feed("pong")
    await settle()
    q = h.conn.quality()
    assert q.latency_mean_ms is not None and 0 < q.latency_p99_ms <= 500  # type: ignore[operator]
    await h.conn.stop()


async def test_log_tells_each_connection_story(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="cryptolink")
    h = Harness()
    h.transport.script = [None, REFUSED]
    await h.conn.start()
    await h.connected()
    await h.ack_all()
    h.sess.feed(trade())
    await settle()
    h.sess.server_close(1006)
    await h.connected(2)
    text = caplog.text
    for line in (
        "c1: connected to ws://fake/ws (attempt 1)",
        "c1: disconnected after 0.0 s: connection lost without a close frame (code 1006)",
        "c1: reconnecting in",  # the session delivered data for less than reset_after_s: attempt 2, delayed
        "(attempt 2)",
        "c1: cannot connect to ws://fake/ws: refused (attempt 2)",
        "c1: reconnected to ws://fake/ws (attempt 3, ",
    ):
        assert line in text, (line, text)
    assert text.count("cannot connect to ws://fake/ws") == 1  # said once, not repeated inside its own error
    await h.conn.stop()


async def test_a_long_outage_is_logged_every_10th_attempt_or_once_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="cryptolink")
    h = Harness()
    h.transport.script = [REFUSED] * 30
    await h.conn.start()
    for _ in range(8000):  # fake time: up to 2000 s, enough for 30 failures at the 30 s cap
        await settle()
        if h.conn.state is S.CONNECTED:
            break
        await h.clock.advance(0.25)
    assert h.conn.state is S.CONNECTED

    def attempt_of(message: str) -> int:
        return int(message.rsplit("(attempt ", 1)[1].split(")")[0].split(";")[0])

    failures = [r for r in caplog.records if "cannot connect" in r.getMessage()]
    assert [attempt_of(r.getMessage()) for r in failures] == list(range(1, 31))  # every one, some at DEBUG
    loud = [attempt_of(r.getMessage()) for r in failures if r.levelno == logging.WARNING]
    assert loud[:5] == [1, 2, 3, 4, 5] and {10, 20, 30} <= set(loud) and len(loud) < 30
    assert "from now on logged every 10th attempt or once a minute" in failures[4].getMessage()
    # each loud failure is followed by its "reconnecting in" line at INFO; the quiet ones by a DEBUG one
    retries = [r for r in caplog.records if "reconnecting in" in r.getMessage()]
    assert sorted(attempt_of(r.getMessage()) - 1 for r in retries if r.levelno == logging.INFO) == loud
