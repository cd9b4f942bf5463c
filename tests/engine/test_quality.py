"""The quality score tells the truth in the bad cases (never connected, downtime, failed connects, stale
subscriptions, books not live, errors), with hysteresis on the degraded/improved events."""

from __future__ import annotations

import pytest

from cryptolink.engine.quality import QualityChange, QualityConfig, QualityTracker, StreamHealth


def healthy(q: QualityTracker, until: float, streams: int = 4, rate: int = 10) -> None:
    """Connected from t=0, ``rate`` messages/s, every stream delivering, one tick per second."""
    q.record_state(0.0, True)
    for t in range(int(until) + 1):
        q.tick(float(t), rate * t, 0, streams=StreamHealth(streams, streams))


def test_all_good_scores_100_and_reports_its_parts() -> None:
    q = QualityTracker()
    healthy(q, 60)
    q.record_rtt(20.0)
    snap = q.snapshot(60.0)
    assert snap.score == 100.0
    assert (snap.availability, snap.reliability, snap.data) == (100.0, 100.0, 100.0)
    assert snap.throughput_msgs_s == pytest.approx(10.0)


def test_never_connected_scores_zero_whatever_else() -> None:
    q = QualityTracker()
    q.record_state(0.0, False)  # connecting
    for t in range(40):
        q.record_failed_connect(float(t))
    snap = q.snapshot(40.0)
    assert snap.score == 0.0 and snap.availability == 0.0 and snap.reliability == 0.0 and snap.data == 0.0


def test_a_failed_book_of_four_streams_costs_the_data_part() -> None:
    q = QualityTracker()
    healthy(q, 30)
    q.tick(31.0, 310, 0, streams=StreamHealth(4, 3))
    snap = q.snapshot(31.0)
    assert snap.data == 75.0
    # 0.35 * 75 + 0.25 + 0.15 + 0.10 (x 100) over 0.85: no latency measured yet
    assert snap.score == pytest.approx((0.35 * 75 + 50) / 0.85, abs=0.01)
    assert snap.score < 91


def test_low_uptime_and_no_live_book_scores_low() -> None:
    """Connected 20 % of the last 10 minutes, flapping: what the operators saw as 58-82 now reads < 20."""
    q = QualityTracker()
    t = 0.0
    while t < 600:
        q.record_state(t, True)
        q.tick(t, int(t) * 10, 0, streams=StreamHealth(4, 2))  # trades flow, books never live
        q.record_state(t + 6.0, False)
        q.record_disconnect(t + 6.0)
        q.record_failed_connect(t + 10.0)
        t += 30.0
    snap = q.snapshot(600.0)
    assert snap.availability == pytest.approx(20.0, abs=1.0)
    assert snap.reliability == 0.0
    assert snap.score < 20.0


def test_downtime_pulls_the_score_down_and_recovers_in_the_window() -> None:
    cfg = QualityConfig(stability_window_s=100.0)
    q = QualityTracker(cfg)
    q.record_state(0.0, True)
    q.tick(50.0, 500, 0, streams=StreamHealth(1, 1))
    q.record_state(50.0, False)
    q.record_state(90.0, True)  # 40 s down (not a disconnect we count: e.g. a requested reconnect)
    assert q.snapshot(90.0).availability == pytest.approx(100.0 * 50 / 90, abs=0.01)
    assert q.snapshot(100.0).availability == pytest.approx(60.0)
    assert q.snapshot(200.0).availability == 100.0  # the outage left the window


def test_not_connected_now_means_no_data_delivered() -> None:
    q = QualityTracker()
    healthy(q, 60)
    q.record_state(60.0, False)
    snap = q.snapshot(61.0)
    assert snap.data == 0.0 and snap.score < 60.0


def test_errors_count_per_minute_and_lower_the_score() -> None:
    q = QualityTracker()
    q.record_state(0.0, True)
    for t in range(61):
        q.tick(float(t), 10 * t, t // 10, streams=StreamHealth(2, 2))  # 6 errors in 60 s
    snap = q.snapshot(60.0)
    assert snap.error_rate_per_min == pytest.approx(6.0)
    assert snap.score == pytest.approx(100 - 0.10 / 0.85 * 60, abs=0.01)


def test_latency_scored_only_once_measured() -> None:
    q = QualityTracker()
    healthy(q, 10)
    assert q.snapshot(10.0).latency_p99_ms is None and q.snapshot(10.0).score == 100.0
    q.record_rtt(2500.0)
    snap = q.snapshot(10.0)
    assert snap.latency_p99_ms == 2500.0 and snap.score == pytest.approx(85.0)


def test_hysteresis_degraded_once_improved_only_at_good() -> None:
    q = QualityTracker(QualityConfig(window_s=10, stability_window_s=10))
    q.record_state(0.0, True)
    assert q.tick(0.0, 0, 0, streams=StreamHealth(1, 1)) is None
    q.tick(1.0, 10, 0, streams=StreamHealth(1, 0))
    for t in range(4):
        q.record_disconnect(1.0 + t * 0.1)
    assert q.tick(2.0, 20, 100, streams=StreamHealth(1, 0)) is QualityChange.DEGRADED and q.poor
    assert q.tick(3.0, 30, 200, streams=StreamHealth(1, 0)) is None  # still poor: no repeat
    changes = [q.tick(float(t), 10 * t, 200, streams=StreamHealth(1, 1)) for t in range(4, 40)]
    assert changes.count(QualityChange.IMPROVED) == 1 and not q.poor
    first_good = changes.index(QualityChange.IMPROVED)
    assert q.snapshot(float(4 + first_good)).score >= 80.0


# --------------------------------------------------------------------------------------------- histograms


def test_round_trips_fill_cumulative_buckets_with_inclusive_upper_bounds() -> None:
    """Each bound is inclusive (``le``); larger values only reach the implicit +Inf bucket (the count)."""
    from cryptolink.engine.quality import LATENCY_BUCKETS_MS

    q = QualityTracker()
    for ms in (0.5, 1.0, 1.5, 100.0, 100.1, 20_000.0):
        q.record_rtt(ms)
    snap = q.snapshot(0.0)
    counts = dict(zip(LATENCY_BUCKETS_MS, snap.rtt_buckets, strict=True))
    assert counts[1.0] == 2  # 0.5 and exactly 1.0
    assert counts[2.5] == 3
    assert counts[50.0] == 3
    assert counts[100.0] == 4  # exactly 100.0 is in the 100 ms bucket
    assert counts[250.0] == 5
    assert counts[10_000.0] == 5  # 20 s is beyond every bound
    assert snap.rtt_count == 6
    assert snap.rtt_sum_ms == pytest.approx(0.5 + 1.0 + 1.5 + 100.0 + 100.1 + 20_000.0)
    assert list(snap.rtt_buckets) == sorted(snap.rtt_buckets)  # cumulative: never decreasing
    assert (snap.lag_count, snap.lag_sum_ms, set(snap.lag_buckets)) == (0, 0.0, {0})  # lag is its own


def test_histograms_count_since_start_beyond_the_sample_window() -> None:
    """The p99 window keeps ``samples`` values; the histogram keeps counting every one."""
    q = QualityTracker(QualityConfig(samples=4))
    for _ in range(10):
        q.record_rtt(30.0)
    snap = q.snapshot(0.0)
    assert snap.rtt_count == 10 and snap.rtt_sum_ms == pytest.approx(300.0)
    assert snap.rtt_buckets[:4] == (0, 0, 0, 0) and snap.rtt_buckets[4] == 0 and snap.rtt_buckets[5] == 10


def test_negative_lag_counts_as_zero_in_the_histogram_only() -> None:
    """Exchange clock ahead of ours: the histogram never sees a negative value (its sum must not decrease)."""
    q = QualityTracker()
    q.record_lag(-40.0)
    q.record_lag(7.0)
    snap = q.snapshot(0.0)
    assert snap.lag_count == 2 and snap.lag_sum_ms == pytest.approx(7.0)
    assert snap.lag_buckets[0] == 1 and snap.lag_buckets[3] == 2  # le=1 ms: the clamped one; le=10 ms: both
    assert snap.lag_mean_ms == pytest.approx(-16.5)  # the window keeps the signed values
