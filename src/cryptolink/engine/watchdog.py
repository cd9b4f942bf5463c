"""Data-idle watchdogs, per subscription key ``(channel, symbol)`` and per connection; sans-I/O.

Only market data resets a watchdog (trades, tickers, book messages). Pings, pongs, heartbeats, acks and
notices never do: a socket that answers pings but stopped sending one symbol's book is stale for that symbol.

Rule for one stream (all times in seconds)::

    before any data:   stale when silence > first_data_timeout_s                (default 10)
    after data:        gap_ewma  <- EWMA of inter-arrival gaps (weight alpha = 0.1)
                       gap_peak  <- max(gap, gap_peak * peak_decay)             (peak_decay 0.99 per gap)
                       threshold = min(max_idle_s, max(min_idle_s, k * gap_ewma, peak_factor * gap_peak))
                       stale when silence > threshold
                       (k = 10, peak_factor = 2, min_idle_s = 2.5, max_idle_s = 900)

So a busy stream (depth@100ms, ~10 msg/s: gap 0.1 s) is caught after ~2.5 s of silence, while a thin symbol's
trades (one a minute) get ``10 * 60 = 600`` s: each stream is judged by its own rhythm. While fewer than
``min_samples`` gaps were seen, the threshold is at least ``first_data_timeout_s`` (rhythm unknown yet).

After a report, the stream is reported again only ``threshold * 2 ** n`` after the previous report (``n``
reports since its last data, capped at ``max_idle_s``), so a stream that stays quiet after a cheap fix
(resubscribe) is not re-fixed in a loop. Data clears the reported state.

:meth:`Watchdog.on_data` is on the per-frame path: it does a dict lookup and a few float operations, no
allocation.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass

__all__ = ["CONNECTION_KEY", "StaleReport", "Watchdog", "WatchdogConfig"]

CONNECTION_KEY: tuple[str, str] = ("*", "*")
"""Key of the connection-level stream (any market data on the connection)."""


@dataclass(frozen=True, slots=True)
class WatchdogConfig:
    """Thresholds of the data-idle rule (see the module docstring), seconds unless noted.

    Attributes:
        first_data_timeout_s: silence allowed before a stream's first message.
        min_idle_s: smallest threshold once data flows.
        max_idle_s: largest threshold (also caps re-report backoff).
        k: multiple of the EWMA gap.
        alpha: EWMA weight of the newest gap (0 < alpha <= 1).
        peak_factor: multiple of the decaying peak gap.
        peak_decay: per-gap decay factor of the peak gap (0 < d <= 1).
        min_samples: gaps needed before the learned threshold alone is trusted.
    """

    first_data_timeout_s: float = 10.0
    min_idle_s: float = 2.5
    max_idle_s: float = 900.0
    k: float = 10.0
    alpha: float = 0.1
    peak_factor: float = 2.0
    peak_decay: float = 0.99
    min_samples: int = 3

    def __post_init__(self) -> None:
        if not (0 < self.alpha <= 1 and 0 < self.peak_decay <= 1):
            raise ValueError("alpha and peak_decay must be in (0, 1]")
        if self.min_idle_s <= 0 or self.max_idle_s < self.min_idle_s or self.first_data_timeout_s <= 0:
            raise ValueError("need 0 < min_idle_s <= max_idle_s and first_data_timeout_s > 0")


@dataclass(frozen=True, slots=True)
class StaleReport:
    """One stream found silent.

    Attributes:
        key: the stream's key (``(channel, symbol)`` or :data:`CONNECTION_KEY`).
        silence_s: time since its last data (or since it was armed, if it never had data), s.
        threshold_s: the threshold that was exceeded, s.
        first_data: ``True`` when the stream never delivered data since it was armed.
        count: reports for this stream since its last data (1 = first).
    """

    key: Hashable
    silence_s: float
    threshold_s: float
    first_data: bool
    count: int


class _Stream:
    __slots__ = ("armed_at", "ewma", "last", "peak", "reported_at", "reports", "samples")

    def __init__(self, now: float) -> None:
        self.armed_at = now
        self.last: float | None = None
        self.ewma = 0.0
        self.peak = 0.0
        self.samples = 0
        self.reports = 0
        self.reported_at = 0.0


class Watchdog:
    """Tracks silence per stream key and reports the streams whose silence passed their threshold.

    Args:
        config: thresholds.
    """

    __slots__ = ("_streams", "config")

    def __init__(self, config: WatchdogConfig | None = None) -> None:
        self.config = config or WatchdogConfig()
        self._streams: dict[Hashable, _Stream] = {}

    # set-up -------------------------------------------------------------------------------------------------
    def arm(self, key: Hashable, now: float) -> None:
        """(Re)start watching ``key`` at ``now``: first-data timeout runs again, learned gaps stay."""
        s = self._streams.get(key)
        if s is None:
            self._streams[key] = _Stream(now)
        else:
            s.armed_at = now
            s.last = None
            s.reports = 0

    def arm_all(self, now: float) -> None:
        """:meth:`arm` every known key (after a reconnect: data must flow again on the new socket)."""
        for key in self._streams:
            self.arm(key, now)

    def remove(self, key: Hashable) -> None:
        """Stop watching ``key`` (unknown keys ignored)."""
        self._streams.pop(key, None)

    def keys(self) -> Iterable[Hashable]:
        """Watched keys."""
        return self._streams.keys()

    # per-frame path -----------------------------------------------------------------------------------------
    def on_data(self, key: Hashable, now: float) -> None:
        """Market data arrived on ``key`` at ``now`` (s). Unknown keys are ignored."""
        s = self._streams.get(key)
        if s is None:
            return
        last = s.last
        if last is not None:
            gap = now - last
            if s.samples == 0:
                s.ewma = gap
            else:
                s.ewma += self.config.alpha * (gap - s.ewma)
            decayed = s.peak * self.config.peak_decay
            s.peak = gap if gap > decayed else decayed
            s.samples += 1
        s.last = now
        s.reports = 0

    # checks -------------------------------------------------------------------------------------------------
    def threshold(self, key: Hashable) -> float:
        """Current silence threshold of ``key``, s (without the re-report backoff).

        Raises:
            KeyError: ``key`` is not watched.
        """
        return self._threshold(self._streams[key])

    def _threshold(self, s: _Stream) -> float:
        c = self.config
        if s.last is None:
            return c.first_data_timeout_s
        t = max(c.min_idle_s, c.k * s.ewma, c.peak_factor * s.peak)
        if s.samples < c.min_samples:
            t = max(t, c.first_data_timeout_s)
        return min(c.max_idle_s, t)

    def _deadline(self, s: _Stream) -> float:
        t = self._threshold(s)
        if s.reports:
            return s.reported_at + min(self.config.max_idle_s, t * 2.0**s.reports)
        start = s.armed_at if s.last is None else s.last
        return start + t

    def silence(self, key: Hashable, now: float) -> tuple[float | None, float]:
        """``(seconds since the last data of key, its threshold)`` at ``now``; the age is ``None`` while the
        stream has had no data since it was (re)armed (its threshold is then the first-data timeout).

        Raises:
            KeyError: ``key`` is not watched.
        """
        s = self._streams[key]
        return (None if s.last is None else now - s.last), self._threshold(s)

    def is_stale(self, key: Hashable) -> bool:
        """Whether ``key`` was reported and has had no data since."""
        s = self._streams.get(key)
        return s is not None and s.reports > 0

    def check(self, now: float) -> list[StaleReport]:
        """Streams whose silence passed their (backed-off) threshold at ``now``; each counts as reported."""
        out: list[StaleReport] = []
        for key, s in self._streams.items():
            if now > self._deadline(s):
                s.reports += 1
                s.reported_at = now
                start = s.armed_at if s.last is None else s.last
                out.append(StaleReport(key, now - start, self._threshold(s), s.last is None, s.reports))
        return out

    def next_deadline(self) -> float | None:
        """Earliest monotonic time (s) :meth:`check` could report at; ``None`` if nothing is watched."""
        if not self._streams:
            return None
        return min(self._deadline(s) for s in self._streams.values())
