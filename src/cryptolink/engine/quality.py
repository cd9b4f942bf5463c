"""Connection quality: a frozen snapshot (:class:`ConnectionQuality`) and the bounded tracker that computes
it. The score must tell the truth in the bad cases: a connection that never connected scores 0, downtime,
failed connects, silent subscriptions and books that are not live all pull it down.

Inputs, all recorded by the connection:

- ``record_state(now, active)``: every change between connected (``connected``/``unstable``) and not;
- ``record_rtt(ms)``: keepalive round trips (protocol ping -> pong, or app ``ping`` -> ``pong``), ms;
- ``record_lag(ms)``: exchange event time (``timestamp_ms``) to local receipt (``receipt_ns``), sampled, ms;
- ``record_gap(n)``: sequence gaps found downstream (books, trade ids), counted as lost-data events;
- ``record_disconnect(now)``: every session end the connection did not ask for;
- ``record_failed_connect(now)``: every attempt to open a socket that failed;
- ``tick(now, messages_total, errors_total, streams)``: cumulative counters and the stream health, sampled at
  each engine tick.

Definitions (``window_s`` default 60 s, ``stability_window_s`` default 600 s; "recent" = the last
``stability_window_s``, or since the first start if that is shorter)::

    availability  = 100 * time connected recently / time observed recently        (never connected => 0)
    reliability   = max(0, 100 - 10 * unasked disconnects - 5 * failed connects, both recent)
    data          = 100 * streams delivering / streams wanted; a stream delivers when it is not silent
                    past its watchdog threshold, not rejected, and (a book) live; 0 while not connected
    latency       = 100 if rtt p99 <= good_latency_ms (250) else linear to 0 at bad_latency_ms (2500);
                    not scored until a round trip was measured
    loss          = 100 * (1 - min(1, 100 * loss_rate)),  loss_rate = gaps / messages in the last window_s
    errors        = max(0, 100 - 10 * errors per minute over the last window_s)
    service       = weighted mean of data 0.35, reliability 0.25, latency 0.15, loss 0.15, errors 0.10
                    (without a latency measurement its weight is spread over the others)
    score         = service * availability / 100

Errors are decode errors (malformed or corrupt frames), exchange errors, callback errors, transport errors and
book errors (checksum mismatches) reported by the feed. Exchange-time lag is reported but not scored (it mixes
in clock skew). ``stability`` (reported, not scored) is the old single figure ``100 - 25 * recent unasked
disconnects``.

Hysteresis: the tracker reports ``degraded`` when the score falls below ``poor_below`` (50) and ``improved``
only when it climbs back to ``good_at`` (80) or more, so a score hovering around one threshold does not flap.
Nothing is reported before the connection was first connected (its score is 0 until then, truthfully, but a
connection that is still starting is not "degraded").

**Histograms.** Besides the bounded sample windows above, every round trip and every lag sample is counted
since start in fixed buckets (:data:`LATENCY_BUCKETS_MS`, upper bounds in ms: 1, 2.5, 5, 10, 25, 50, 100,
250, 500, 1000, 2500, 5000, 10000; larger values fall in the implicit ``+Inf`` bucket) with their sum and
count, so a Prometheus histogram (``cryptolink_ping_rtt_seconds``, ``cryptolink_exchange_lag_seconds``) can be
built from a snapshot. Recording is a binary search and three additions (no allocation). A negative lag (the
exchange's clock ahead of ours) is counted as 0 ms in the histogram, so its sum never decreases; the sample
windows keep the signed value.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from dataclasses import dataclass
from enum import StrEnum
from math import isnan

__all__ = [
    "LATENCY_BUCKETS_MS",
    "ConnectionQuality",
    "LatencyHistogram",
    "QualityChange",
    "QualityConfig",
    "QualityTracker",
    "StreamHealth",
]

LATENCY_BUCKETS_MS: tuple[float, ...] = (
    1.0,
    2.5,
    5.0,
    10.0,
    25.0,
    50.0,
    100.0,
    250.0,
    500.0,
    1000.0,
    2500.0,
    5000.0,
    10000.0,
)
"""Upper bounds (inclusive, ms) of the round-trip and lag histogram buckets; ``+Inf`` is implicit."""


@dataclass(frozen=True, slots=True)
class QualityConfig:
    """Windows (s), thresholds (score 0-100) and latency bounds (ms) of the quality score."""

    window_s: float = 60.0
    stability_window_s: float = 600.0
    good_at: float = 80.0
    poor_below: float = 50.0
    good_latency_ms: float = 250.0
    bad_latency_ms: float = 2500.0
    samples: int = 256
    """Round-trip and lag samples kept."""


class QualityChange(StrEnum):
    """Threshold crossings reported by :meth:`QualityTracker.tick`."""

    DEGRADED = "degraded"
    IMPROVED = "improved"


@dataclass(frozen=True, slots=True)
class StreamHealth:
    """How many of a connection's streams deliver: ``wanted`` (desired plus rejected) and ``delivering``."""

    wanted: int = 0
    delivering: int = 0


@dataclass(frozen=True, slots=True)
class ConnectionQuality:
    """Quality snapshot of one connection (see the module docstring for every formula).

    Attributes:
        latency_mean_ms / latency_p99_ms: keepalive round trip, ms (``None``: not measured yet).
        lag_mean_ms / lag_p99_ms: exchange event time to receipt, ms (``None``: no timestamps seen).
        gaps: sequence gaps reported since start; loss_rate: gaps per message in the recent window.
        stability: 0-100 from recent unasked disconnects (reported, not scored).
        availability: 0-100, connected share of the recent window.
        reliability: 0-100 from recent disconnects and failed connects.
        data: 0-100, share of the streams delivering.
        throughput_msgs_s: messages per second over the recent window.
        error_rate_per_min: errors per minute over the recent window.
        uptime_pct: connected time / time since first start, percent.
        score: overall 0-100; poor: the tracker is in the degraded band.
        rtt_buckets: keepalive round trips since start at or below each bound of :data:`LATENCY_BUCKETS_MS`,
            cumulative (one count per bound, non-decreasing; the ``+Inf`` bucket is ``rtt_count``); ``()`` when
            not filled in.
        rtt_sum_ms / rtt_count: sum (ms) and number of those round trips.
        lag_buckets / lag_sum_ms / lag_count: the same for exchange-time lag samples (negative lags counted as
            0 ms).
    """

    latency_mean_ms: float | None
    latency_p99_ms: float | None
    lag_mean_ms: float | None
    lag_p99_ms: float | None
    gaps: int
    loss_rate: float
    stability: float
    availability: float
    reliability: float
    data: float
    throughput_msgs_s: float
    error_rate_per_min: float
    uptime_pct: float
    score: float
    poor: bool
    rtt_buckets: tuple[int, ...] = ()
    rtt_sum_ms: float = 0.0
    rtt_count: int = 0
    lag_buckets: tuple[int, ...] = ()
    lag_sum_ms: float = 0.0
    lag_count: int = 0


class LatencyHistogram:
    """Counts of ms values since creation in the fixed buckets of :data:`LATENCY_BUCKETS_MS` (plus ``+Inf``),
    with their sum and count. :meth:`observe` is O(log buckets) and allocates nothing. A NaN is not counted
    in any bucket, the sum or the count (it would poison the sum forever); it is counted in :attr:`nan`."""

    __slots__ = ("_counts", "count", "nan", "sum_ms")

    def __init__(self) -> None:
        self._counts = [0] * (len(LATENCY_BUCKETS_MS) + 1)  # per bucket, not cumulative; last is +Inf
        self.sum_ms = 0.0
        self.count = 0
        self.nan = 0
        """NaN values ignored."""

    def observe(self, ms: float) -> None:
        """Count one value, ms (negative values count as 0; NaN is ignored and counted in :attr:`nan`)."""
        if isnan(ms):
            self.nan += 1
            return
        if ms < 0.0:
            ms = 0.0
        self._counts[bisect_left(LATENCY_BUCKETS_MS, ms)] += 1
        self.sum_ms += ms
        self.count += 1

    def cumulative(self) -> tuple[int, ...]:
        """Values at or below each bound of :data:`LATENCY_BUCKETS_MS` (``len(LATENCY_BUCKETS_MS)`` counts,
        non-decreasing; the ``+Inf`` bucket is :attr:`count`)."""
        out: list[int] = []
        running = 0
        for n in self._counts[:-1]:
            running += n
            out.append(running)
        return tuple(out)


def _mean_p99(values: deque[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    ordered = sorted(values)
    idx = min(len(ordered) - 1, int(0.99 * len(ordered)))
    return sum(ordered) / len(ordered), ordered[idx]


class QualityTracker:
    """Bounded windows of quality inputs; :meth:`snapshot` computes a :class:`ConnectionQuality`.

    Args:
        config: windows and thresholds.
    """

    def __init__(self, config: QualityConfig | None = None) -> None:
        self.config = c = config or QualityConfig()
        self._rtt: deque[float] = deque(maxlen=c.samples)
        self._lag: deque[float] = deque(maxlen=c.samples)
        self.rtt_histogram = LatencyHistogram()
        self.lag_histogram = LatencyHistogram()
        self._disconnects: deque[float] = deque(maxlen=256)
        self._failed: deque[float] = deque(maxlen=256)
        # (time, active) at every change; the oldest entries beyond the window are folded into _state0
        self._states: deque[tuple[float, bool]] = deque()
        self._observed_from: float | None = None
        # (time, messages_total, errors_total, gaps_total) samples taken at ticks; bounded
        self._samples: deque[tuple[float, int, int, int]] = deque(maxlen=512)
        self._streams = StreamHealth()
        self._ever_active = False
        self.gaps = 0
        self.poor = False
        self._last_score = 0.0

    # inputs -------------------------------------------------------------------------------------------------
    def record_state(self, now: float, active: bool) -> None:
        """The connection became connected (``active``) or stopped being connected at monotonic ``now``."""
        if self._observed_from is None:
            self._observed_from = now
            if not self._samples:  # counters start at zero: errors before the first tick still count
                self._samples.append((now, 0, 0, self.gaps))
        if active:
            self._ever_active = True
        states = self._states
        if states and states[-1][1] == active:
            return
        states.append((now, active))
        horizon = now - self.config.stability_window_s
        while len(states) > 1 and states[1][0] <= horizon:
            states.popleft()
        while len(states) > 4096:  # pathological flapping: keep memory bounded (oldest state folded)
            states.popleft()

    def record_rtt(self, ms: float) -> None:
        """A keepalive round trip, ms."""
        self._rtt.append(ms)
        self.rtt_histogram.observe(ms)

    def record_lag(self, ms: float) -> None:
        """An exchange-time-to-receipt lag sample, ms."""
        self._lag.append(ms)
        self.lag_histogram.observe(ms)

    def record_gap(self, n: int = 1) -> None:
        """``n`` sequence gaps were detected downstream."""
        self.gaps += n

    def record_disconnect(self, now: float) -> None:
        """An unasked session end at monotonic ``now`` (s)."""
        self._disconnects.append(now)

    def record_failed_connect(self, now: float) -> None:
        """A failed attempt to open a socket at monotonic ``now`` (s)."""
        self._failed.append(now)

    def set_streams(self, streams: StreamHealth) -> None:
        """The current stream health (also passed to :meth:`tick`)."""
        self._streams = streams

    # computation --------------------------------------------------------------------------------------------
    def _window_deltas(self, now: float) -> tuple[float, int, int, int]:
        s = self._samples
        if len(s) < 2:
            return 0.0, 0, 0, 0
        newest = s[-1]
        oldest = s[0]
        horizon = now - self.config.window_s
        for item in s:
            if item[0] >= horizon:
                oldest = item
                break
        if oldest is newest:
            oldest = s[-2]
        return (newest[0] - oldest[0], newest[1] - oldest[1], newest[2] - oldest[2], newest[3] - oldest[3])

    def availability(self, now: float) -> float:
        """Connected share of the recent window at ``now``, percent (0 before the first start)."""
        start = self._observed_from
        if start is None:
            return 0.0
        begin = max(start, now - self.config.stability_window_s)
        span = now - begin
        states = self._states
        if span <= 0:
            return 100.0 if states and states[-1][1] else 0.0
        up = 0.0
        for i, (t, active) in enumerate(states):
            end = states[i + 1][0] if i + 1 < len(states) else now
            if not active or end <= begin:
                continue
            up += min(end, now) - max(t, begin)
        return max(0.0, min(100.0, 100.0 * up / span))

    def active(self) -> bool:
        """Whether the connection is connected now (last recorded state)."""
        return bool(self._states) and self._states[-1][1]

    def snapshot(self, now: float, uptime_pct: float = 0.0) -> ConnectionQuality:
        """The quality at monotonic ``now`` (s) from the samples taken so far."""
        c = self.config
        lat_mean, lat_p99 = _mean_p99(self._rtt)
        lag_mean, lag_p99 = _mean_p99(self._lag)
        dt, dmsg, derr, dgap = self._window_deltas(now)
        throughput = dmsg / dt if dt > 0 else 0.0
        err_per_min = derr * 60.0 / dt if dt > 0 else 0.0
        loss_rate = dgap / dmsg if dmsg > 0 else (1.0 if dgap else 0.0)
        horizon = now - c.stability_window_s
        disconnects = sum(1 for t in self._disconnects if t >= horizon)
        failed = sum(1 for t in self._failed if t >= horizon)
        stability = max(0.0, 100.0 - 25.0 * disconnects)
        reliability = max(0.0, 100.0 - 10.0 * disconnects - 5.0 * failed)
        availability = self.availability(now)
        streams = self._streams
        if not self.active():
            data = 0.0
        elif streams.wanted == 0:
            data = 100.0
        else:
            data = 100.0 * streams.delivering / streams.wanted
        loss_score = 100.0 * (1.0 - min(1.0, 100.0 * loss_rate))
        error_score = max(0.0, 100.0 - 10.0 * err_per_min)
        parts = [(0.35, data), (0.25, reliability), (0.15, loss_score), (0.10, error_score)]
        if lat_p99 is not None:
            if lat_p99 <= c.good_latency_ms:
                latency_score = 100.0
            else:
                span = max(1e-9, c.bad_latency_ms - c.good_latency_ms)
                latency_score = max(0.0, 100.0 * (1.0 - (lat_p99 - c.good_latency_ms) / span))
            parts.append((0.15, latency_score))
        service = sum(w * v for w, v in parts) / sum(w for w, _ in parts)
        score = service * availability / 100.0
        rtt, lag = self.rtt_histogram, self.lag_histogram
        return ConnectionQuality(
            latency_mean_ms=lat_mean,
            latency_p99_ms=lat_p99,
            lag_mean_ms=lag_mean,
            lag_p99_ms=lag_p99,
            gaps=self.gaps,
            loss_rate=loss_rate,
            stability=stability,
            availability=round(availability, 2),
            reliability=reliability,
            data=round(data, 2),
            throughput_msgs_s=throughput,
            error_rate_per_min=err_per_min,
            uptime_pct=uptime_pct,
            score=round(score, 2),
            poor=self.poor,
            rtt_buckets=rtt.cumulative(),
            rtt_sum_ms=rtt.sum_ms,
            rtt_count=rtt.count,
            lag_buckets=lag.cumulative(),
            lag_sum_ms=lag.sum_ms,
            lag_count=lag.count,
        )

    def tick(
        self,
        now: float,
        messages_total: int,
        errors_total: int,
        uptime_pct: float = 0.0,
        streams: StreamHealth | None = None,
    ) -> QualityChange | None:
        """Sample cumulative counters at ``now``; return a threshold crossing (with hysteresis)."""
        if streams is not None:
            self._streams = streams
        self._samples.append((now, messages_total, errors_total, self.gaps))
        horizon = now - max(self.config.window_s, 1.0) * 2
        while len(self._samples) > 2 and self._samples[0][0] < horizon:
            self._samples.popleft()
        score = self.snapshot(now, uptime_pct).score
        self._last_score = score
        if not self._ever_active:
            return None
        if not self.poor and score < self.config.poor_below:
            self.poor = True
            return QualityChange.DEGRADED
        if self.poor and score >= self.config.good_at:
            self.poor = False
            return QualityChange.IMPROVED
        return None

    @property
    def last_score(self) -> float:
        """Score computed at the last :meth:`tick`."""
        return self._last_score
