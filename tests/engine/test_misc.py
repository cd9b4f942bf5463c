import dataclasses

import pytest

from cryptolink.clock import FakeClock
from cryptolink.engine.events import ConnectionEvent, ConnectionEventType, EventLog, Severity
from cryptolink.engine.quality import QualityTracker
from cryptolink.engine.state import ConnectionState
from cryptolink.engine.stats import ConnectionStats, TotalStats, combine
from cryptolink.engine.throttle import HourlyQuota, TokenBucket
from tests.status.factories import conn


def ev(i: int) -> ConnectionEvent:
    return ConnectionEvent(ConnectionEventType.ERROR, Severity.ERROR, i, float(i), "c", "x", str(i))


def test_event_log_bounded_and_listener_isolated() -> None:
    log = EventLog()
    got: list[ConnectionEvent] = []

    def failing_listener(e: ConnectionEvent) -> None:
        raise ZeroDivisionError("division by zero")

    log.add_listener(failing_listener)
    log.add_listener(got.append)
    for i in range(250):
        log.append(ev(i))
    assert len(log) == 100 == log.maxlen
    assert [e.time_ns for e in log.events()] == list(range(150, 250))
    assert log.dropped == 150 and log.total == 250 and log.listener_errors == 250 and len(got) == 250
    with pytest.raises(dataclasses.FrozenInstanceError):
        log.events()[0].description = "x"  # type: ignore[misc]
    with pytest.raises(ValueError):
        EventLog(0)


def test_severity_values() -> None:
    assert [int(s) for s in Severity] == [1, 2, 3, 4]


def stats(state: ConnectionState, messages: int) -> ConnectionStats:
    return conn(
        "c",
        state,
        exchange="x",
        url="ws://",
        route="",
        messages=messages,
        bytes=0,
        market_events=0,
        errors=1,
        transport_errors=1,
        reconnect_attempts=2,
        successful_reconnects=1,
        failed_connects=1,
        disconnections=1,
        unexpected_disconnections=1,
        downtime_s=5.0,
        uptime_s=1.0,
        connected_since_ns=None,
        last_message_age_s=None,
        subscriptions_confirmed=0,
        quality=QualityTracker().snapshot(0.0),
    )


def test_stats_immutable_and_combined() -> None:
    a, b = stats(ConnectionState.CONNECTED, 10), stats(ConnectionState.RECONNECTING, 5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.messages = 3  # type: ignore[misc]
    assert combine([a, b]) == TotalStats(2, 1, 15, 2, 4, 2, 10.0)
    assert combine([]) == TotalStats()


async def test_token_bucket_in_fake_time() -> None:
    clock = FakeClock()
    bucket = TokenBucket(5, clock)
    for _ in range(5):
        assert bucket.try_acquire()
    assert not bucket.try_acquire()
    await clock.advance(0.2)
    assert bucket.try_acquire()
    quota = HourlyQuota(2, clock)
    await quota.acquire()
    await quota.acquire()
    assert quota.wait_s() == pytest.approx(3600.0)
    await clock.advance(3600.0)
    assert quota.wait_s() == 0.0
