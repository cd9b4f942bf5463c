"""The sans-I/O timer core, driven with plain numbers for time (no sockets, no clock, no event loop)."""

from __future__ import annotations

import math

from cryptolink.engine.subscriptions import SubscriptionRegistry
from cryptolink.engine.timer_core import (
    AckTimedOut,
    Action,
    CloseDead,
    ConnectionSilent,
    ReportDataRate,
    ResubscribeStale,
    RotateNow,
    ScoreQuality,
    SendAppPing,
    SendPing,
    StreamStale,
    TimerCore,
)
from cryptolink.engine.watchdog import WatchdogConfig
from cryptolink.exchanges.base import KeepalivePolicy, OutboundRequest
from cryptolink.models import Channel, Subscription

BTC = Subscription(Channel.TRADES, "BTC/USDT")
ETH = Subscription(Channel.TRADES, "ETH/USDT")
NO_PINGS = KeepalivePolicy(protocol_ping_interval_s=None)
WD = WatchdogConfig(first_data_timeout_s=10.0, min_idle_s=2.5, max_idle_s=60.0)


def core(keepalive: KeepalivePolicy = NO_PINGS, *, now: float = 0.0) -> TimerCore:
    return TimerCore(
        keepalive=keepalive,
        watchdog=WD,
        ack_timeout_s=10.0,
        quality_interval_s=1.0,
        data_event_interval_s=60.0,
        now=now,
    )


def registry(*subs: Subscription, sent_at: float | None = None) -> SubscriptionRegistry:
    reg = SubscriptionRegistry()
    reg.want(subs)
    if sent_at is not None:
        reg.sent(OutboundRequest("{}", 1, "subscribe", subs), sent_at)
    return reg


def only(actions: list[Action], *types: type) -> list[Action]:
    """The actions of the given types (housekeeping filtered out)."""
    return [a for a in actions if isinstance(a, types)]


def test_app_ping_when_idle_then_dead_without_pong() -> None:
    ka = KeepalivePolicy(app_ping_frame="ping", app_ping_idle_s=25, protocol_ping_interval_s=None)
    c = core(ka)
    timer = c.open_session(1, 0.0)
    assert c.next_deadline() == 0.0  # the first quality score is due at once
    c.tick(0.0)
    assert c.next_deadline() == 1.0  # the next score; keepalive is due at 25
    timer.received(10.0)
    assert timer.next_deadline() == 35.0
    assert only(c.tick(34.9), SendAppPing, CloseDead) == []
    assert only(c.tick(35.0), SendAppPing) == [SendAppPing(1, "ping")]
    assert only(c.tick(36.0), SendAppPing) == []  # one ping out at a time
    assert timer.app_pong(35.5) == 0.5 and timer.app_pong(35.6) is None  # a stray pong has no RTT
    timer.received(35.5)
    assert only(c.tick(60.5), SendAppPing) == [SendAppPing(1, "ping")]
    assert timer.next_deadline() == 70.5  # pong_timeout_s = 10
    assert only(c.tick(70.25), CloseDead) == []
    assert only(c.tick(70.5), CloseDead) == [CloseDead(1, "no pong within 10.0 s of app ping")]


def test_app_ping_interval_while_data_flows() -> None:
    ka = KeepalivePolicy(
        app_ping_frame="ping", app_ping_idle_s=20, app_ping_interval_s=20, protocol_ping_interval_s=None
    )
    c = core(ka)
    timer = c.open_session(7, 0.0)
    pings = []
    for step in range(1, 200):  # data every 0.25 s: never idle
        now = step * 0.25
        timer.received(now)
        for a in c.tick(now):
            if isinstance(a, SendAppPing):
                pings.append(now)
                assert timer.app_pong(now + 0.05) is not None
    assert pings == [20.0, 40.0]


def test_protocol_ping_schedule_and_timeout() -> None:
    c = core(KeepalivePolicy(protocol_ping_interval_s=30, pong_timeout_s=10))
    timer = c.open_session(3, 100.0)
    assert timer.next_deadline() == 130.0
    assert only(c.tick(129.0), SendPing) == []
    assert only(c.tick(130.0), SendPing) == [SendPing(3)]
    assert only(c.tick(131.0), SendPing) == []  # waiting for the pong
    timer.protocol_pong(130.5)
    assert timer.next_deadline() == 160.5
    assert only(c.tick(160.5), SendPing) == [SendPing(3)]
    assert only(c.tick(170.5), CloseDead) == [CloseDead(3, "protocol ping unanswered for 10 s")]
    c.close_session(3)
    assert only(c.tick(200.0), SendPing, CloseDead) == []  # a closed socket has no keepalive


def test_no_primary_only_keepalive_and_quality() -> None:
    c = core()
    c.set_rotation_deadline(5.0)
    out = c.tick(100.0)
    assert out == [ScoreQuality()]  # no watchdog, ack or rotation without a primary socket
    assert c.next_deadline() == 101.0


def test_stale_stream_reported_and_resubscribed_once() -> None:
    c = core()
    reg = registry(BTC, ETH)
    c.open_session(1, 0.0)
    c.set_primary(1, reg, 0.0, rearm=True)
    for step in range(1, 31):  # both busy, 10 msg/s
        c.market_data([BTC.key, ETH.key], step * 0.1)
    for step in range(31, 56):  # ETH silent for 2.5 s: its learned threshold (min_idle_s) not passed yet
        c.market_data([BTC.key], step * 0.1)
        assert only(c.tick(step * 0.1), StreamStale, ConnectionSilent) == []
    c.market_data([BTC.key], 5.6)
    out = only(c.tick(5.6), StreamStale, ResubscribeStale)
    assert [type(a) for a in out] == [StreamStale, ResubscribeStale]
    stale = out[0]
    assert isinstance(stale, StreamStale) and stale.key == ETH.key and stale.report.count == 1
    assert out[1] == ResubscribeStale((ETH.key,)) and c.is_stale(ETH.key)
    later: list[Action] = []
    for step in range(57, 200):
        c.market_data([BTC.key], step * 0.1)
        later += only(c.tick(step * 0.1), StreamStale, ResubscribeStale)
    assert later and all(isinstance(a, StreamStale) and a.report.count > 1 for a in later)  # never again
    c.market_data([ETH.key], 20.0)
    c.tick(20.0)
    assert not c.is_stale(ETH.key)


def test_connection_silent_only_after_its_own_threshold() -> None:
    c = core()
    reg = registry(BTC)
    c.open_session(1, 0.0)
    c.set_primary(1, reg, 0.0, rearm=True)
    # quiet from the start: the stream is stale at 10 s, but the socket is reset only after max_idle_s (60)
    silent = [t for t in range(1, 70) if only(c.tick(float(t)), ConnectionSilent)]
    assert silent == [61]
    c2 = core()
    c2.open_session(1, 0.0)
    c2.set_primary(1, registry(BTC), 0.0, rearm=True)
    for step in range(1, 31):
        c2.market_data([BTC.key], step * 0.1)
    assert only(c2.tick(5.0), ConnectionSilent) == []
    (a,) = only(c2.tick(5.6), ConnectionSilent)
    assert isinstance(a, ConnectionSilent) and a.sid == 1 and not a.report.first_data


def test_ack_timeout_retry_then_give_up() -> None:
    c = core()
    reg = registry(BTC, sent_at=0.0)
    c.open_session(1, 0.0)
    c.set_primary(1, reg, 0.0, rearm=True)
    assert only(c.tick(9.9), AckTimedOut) == []
    assert only(c.tick(10.0), AckTimedOut) == [AckTimedOut(BTC, retry=True)]
    reg.mark_unsent(BTC)  # what the executor does before re-sending
    reg.sent(OutboundRequest("{}", 2, "subscribe", (BTC,)), 10.5)
    assert only(c.tick(20.4), AckTimedOut) == []
    assert only(c.tick(20.5), AckTimedOut) == [AckTimedOut(BTC, retry=False)]


def test_dead_primary_skips_primary_checks() -> None:
    c = core(KeepalivePolicy(protocol_ping_interval_s=1, pong_timeout_s=1))
    reg = registry(BTC, sent_at=0.0)
    c.open_session(1, 0.0)
    c.set_primary(1, reg, 0.0, rearm=True)
    c.set_rotation_deadline(1.0)
    c.tick(1.0)  # ping sent
    out = c.tick(30.0)
    assert only(out, CloseDead) == [CloseDead(1, "protocol ping unanswered for 1 s")]
    assert only(out, AckTimedOut, StreamStale, RotateNow, ConnectionSilent) == []


def test_rotation_deadline_fires_once() -> None:
    c = core()
    c.open_session(1, 0.0)
    c.set_primary(1, registry(), 0.0, rearm=True)
    c.set_rotation_deadline(50.0)
    assert c.next_deadline() <= 1.0 and c.rotation_deadline == 50.0
    assert only(c.tick(49.0), RotateNow) == []
    assert only(c.tick(50.0), RotateNow) == [RotateNow("connection lifetime")]
    assert only(c.tick(51.0), RotateNow) == [] and c.rotation_deadline is None


def test_housekeeping_cadence_and_next_deadline() -> None:
    c = core(now=0.0)
    c.open_session(1, 0.0)
    c.set_primary(1, registry(), 0.0, rearm=True)
    scores = [t for t in range(0, 10) if ScoreQuality() in c.tick(t * 0.5)]
    assert scores == [0, 2, 4, 6, 8]  # every quality_interval_s = 1 s
    assert only(c.tick(59.0), ReportDataRate) == []
    assert only(c.tick(60.0), ReportDataRate) == [ReportDataRate(60.0)]
    assert only(c.tick(61.0), ReportDataRate) == []
    c.close_session(1)
    assert c.primary is None
    c.tick(200.0)
    assert c.next_deadline() == 201.0 and math.isfinite(c.next_deadline())
