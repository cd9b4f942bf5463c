import dataclasses

import pytest

from cryptolink.clock import FakeClock
from cryptolink.engine.events import ConnectionEvent, ConnectionEventType, EventLog, Severity
from cryptolink.engine.quality import QualityChange, QualityConfig, QualityTracker
from cryptolink.engine.state import ConnectionState
from cryptolink.engine.stats import ConnectionStats, TotalStats, combine
from cryptolink.engine.throttle import HourlyQuota, TokenBucket


def ev(i: int) -> ConnectionEvent:
    return ConnectionEvent(ConnectionEventType.ERROR, Severity.ERROR, i, float(i), "c", "x", str(i))


def test_event_log_bounded_and_listener_isolated() -> None:
    log = EventLog()
    got: list[ConnectionEvent] = []
    log.add_listener(lambda e: 1 / 0)  # type: ignore[func-returns-value]
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


def test_quality_score_hysteresis() -> None:
    q = QualityTracker(QualityConfig(window_s=60))
    assert q.tick(0.0, 0, 0) is None
    assert q.tick(1.0, 100, 0) is None
    for t in range(3):
        q.record_disconnect(float(t))  # stability 25
    q.record_rtt(3000.0)  # latency score 0
    change = q.tick(2.0, 200, 50)  # heavy errors
    assert change is QualityChange.DEGRADED and q.poor
    snap = q.snapshot(2.0)
    assert snap.score < 50 and snap.latency_p99_ms == 3000.0 and snap.stability == 25.0
    assert q.tick(3.0, 300, 50) is None  # still poor, no repeat
    q2 = QualityTracker()
    q2.tick(0.0, 0, 0)
    q2.tick(1.0, 10, 0)
    assert q2.snapshot(1.0).score == 100.0 and q2.snapshot(1.0).throughput_msgs_s == 10.0


def test_quality_improves_only_past_good_threshold() -> None:
    q = QualityTracker(QualityConfig(window_s=10, stability_window_s=10))
    for t in range(4):
        q.record_disconnect(float(t))  # stability 0
    q.tick(0.0, 0, 0)
    assert q.tick(1.0, 10, 100) is QualityChange.DEGRADED
    changes = [q.tick(float(t), 10 * t, 100) for t in range(2, 40)]
    assert QualityChange.IMPROVED in changes and not q.poor


def stats(state: ConnectionState, messages: int) -> ConnectionStats:
    q = QualityTracker().snapshot(0.0)
    return ConnectionStats(
        "c", "x", "ws://", "", state, messages, 0, 0, 1, 0, 0, 0, 2, 1, 0, 5.0, 1.0, None, None, 0, 0, 0, 0, q
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
