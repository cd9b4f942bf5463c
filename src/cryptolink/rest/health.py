"""Health of one REST member: state machine, smoothed latency, error rate and the effective weight.

Pure and sans-I/O: no asyncio, no ccxt, no clock of its own. The manager feeds every outcome in, from live
calls (passive detection: under load a failure is seen at once) and from its periodic health checks (every
``rest.health.interval_s``, 30 s by default: ccxt ``fetch_time`` or the exchange's status call), passing the
monotonic time ``now`` in seconds; the strategies (``cryptolink.rest.strategy``) read
:meth:`MemberHealth.effective_weight`.

States (:class:`MemberState`) and rules (docs/rest-balancing.md has the same with examples):

- ``healthy``: full effective weight.
- ``degraded``: the smoothed latency (EWMA, ``ewma_alpha``) is above ``degraded_latency_ms``, or the error rate
  over the last ``window`` outcomes is above ``degraded_error_rate`` with at least ``min(5, window)`` outcomes.
  Effective weight ``weight * DEGRADED_FACTOR`` (0.25): a quarter of its traffic. Back to ``healthy`` only when
  both are at or below ``hysteresis`` (0.8) times their thresholds (the error rate also when fewer than
  ``min(5, window)`` outcomes are known): with the defaults, EWMA <= 800 ms and error rate <= 0.16, so a member
  hovering at the threshold does not flap.
- ``offline``: ``offline_after_failures`` (3) consecutive health failures, from live calls or checks, from
  ``healthy`` or ``degraded``. Effective weight 0: no live traffic. Only a successful health check
  (:meth:`MemberHealth.check_result` with ``ok=True``) brings it back; a late success of a call sent before it
  went offline is recorded but does not.
- ``maintenance``: the health check says so (the exchange's status call reports maintenance, ccxt
  ``fetch_status()["status"] == "maintenance"``, or ccxt raises ``OnMaintenance``:
  https://docs.ccxt.com/#/README?id=exchange-status and https://docs.ccxt.com/#/README?id=error-hierarchy).
  Effective weight 0. Left only on a successful check that does not report maintenance.

Coming back from ``offline`` or ``maintenance``: the outcome window and the consecutive failures are cleared
(they describe the outage), the EWMA restarts at the check's latency, and the state is ``healthy`` (or
``degraded`` if that latency is above ``degraded_latency_ms``). The effective weight then climbs linearly from
``weight / 10`` to ``weight`` over ``recovery_s`` (times ``DEGRADED_FACTOR`` while degraded), so traffic comes
back gradually. ``degraded`` -> ``healthy`` has no ramp (the member kept a quarter of its traffic throughout).

A rate-limit answer (HTTP 429, RFC 6585 section 4: https://www.rfc-editor.org/rfc/rfc6585#section-4, or an
exchange's IP ban such as Binance's 418:
https://developers.binance.com/docs/binance-spot-api-docs/rest-api/limits) is *not* a health failure: the
member is fine and the rate budgets handle it. :meth:`MemberHealth.record_failure` with a kind in
:data:`RATE_LIMIT_KINDS` only counts it (``rate_limited`` in the snapshot).

Detection and recovery targets (issue 9: failure detected < 30 s, recovered < 60 s, checks every 30 s): under
load, the 3rd failed live call in a row takes the member offline at once (passive detection); idle, the first
failed check comes within ``interval_s`` and the manager re-checks a failing member sooner, so the remaining
failures follow within seconds; recovery is the next successful check and full weight ``recovery_s`` later.

Memory is bounded: the window is a deque of at most ``window`` booleans; everything else is a fixed set of
numbers.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "DEGRADED_FACTOR",
    "MIN_OUTCOMES",
    "RAMP_START",
    "RATE_LIMIT_KINDS",
    "HealthSnapshot",
    "HealthThresholds",
    "MemberHealth",
    "MemberState",
]

DEGRADED_FACTOR = 0.25
"""Effective weight of a degraded member, as a fraction of its weight."""

RAMP_START = 0.1
"""Fraction of the weight a member gets back at the start of its recovery ramp."""

RATE_LIMIT_KINDS: frozenset[str] = frozenset({"rate_limit", "ban"})
"""Failure kinds that are rate limiting (429-like, 418-like), not health failures: counted, nothing else."""

MIN_OUTCOMES = 5
"""Outcomes needed in the window before the error rate can make a member degraded (capped at ``window``)."""


class MemberState(StrEnum):
    """Health state of one member."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    OFFLINE = "offline"
    MAINTENANCE = "maintenance"


_NO_TRAFFIC = (MemberState.OFFLINE, MemberState.MAINTENANCE)


@dataclass(frozen=True, slots=True)
class HealthThresholds:
    """Thresholds of the health state machine (module docstring; the ``rest.health`` config section).

    Attributes:
        degraded_latency_ms: EWMA latency above this, ms => degraded (> 0).
        degraded_error_rate: error rate over the window above this => degraded (0..1).
        window: outcomes kept for the error rate (>= 1).
        offline_after_failures: consecutive health failures => offline (>= 1).
        recovery_s: the effective weight climbs linearly from ``weight / 10`` to ``weight`` over this, s (>= 0;
            0: no ramp).
        ewma_alpha: weight of the newest latency sample in the EWMA (0 < alpha <= 1; 1: the last sample).
        hysteresis: leave degraded only when latency and error rate are at or below this fraction of their
            thresholds (0 < hysteresis <= 1; 1: no hysteresis).

    Raises:
        ValueError: every value out of range, in one message.
    """

    degraded_latency_ms: float = 1000.0
    degraded_error_rate: float = 0.2
    window: int = 20
    offline_after_failures: int = 3
    recovery_s: float = 30.0
    ewma_alpha: float = 0.2
    hysteresis: float = 0.8

    def __post_init__(self) -> None:
        errors = []
        if not (math.isfinite(self.degraded_latency_ms) and self.degraded_latency_ms > 0):
            errors.append(f"degraded_latency_ms must be > 0, got {self.degraded_latency_ms}")
        if not 0.0 <= self.degraded_error_rate <= 1.0:
            errors.append(f"degraded_error_rate must be in [0, 1], got {self.degraded_error_rate}")
        if self.window < 1:
            errors.append(f"window must be >= 1, got {self.window}")
        if self.offline_after_failures < 1:
            errors.append(f"offline_after_failures must be >= 1, got {self.offline_after_failures}")
        if not (math.isfinite(self.recovery_s) and self.recovery_s >= 0):
            errors.append(f"recovery_s must be >= 0, got {self.recovery_s}")
        if not 0.0 < self.ewma_alpha <= 1.0:
            errors.append(f"ewma_alpha must be in (0, 1], got {self.ewma_alpha}")
        if not 0.0 < self.hysteresis <= 1.0:
            errors.append(f"hysteresis must be in (0, 1], got {self.hysteresis}")
        if errors:
            raise ValueError("invalid health thresholds: " + "; ".join(errors))

    @property
    def min_outcomes(self) -> int:
        """Outcomes needed before the error rate counts: ``min(5, window)``."""
        return min(MIN_OUTCOMES, self.window)


@dataclass(frozen=True, slots=True)
class HealthSnapshot:
    """The health of one member at one time.

    Attributes:
        state: current state.
        weight: configured weight.
        effective_weight: weight given to the strategies now (0 .. weight).
        latency_ms: smoothed (EWMA) latency, ms; ``None`` before the first success.
        error_rate: failures / outcomes in the window (0 when empty).
        outcomes: outcomes in the window (<= ``window``).
        consecutive_failures: health failures since the last success.
        since: ``now`` of the last state change, monotonic s; ``None`` if the state never changed.
        transitions: state changes so far.
        successes: successes recorded (live calls and checks).
        failures: health failures recorded (live calls and checks).
        rate_limited: rate-limit answers recorded (not health failures).
    """

    state: MemberState
    weight: int
    effective_weight: float
    latency_ms: float | None
    error_rate: float
    outcomes: int
    consecutive_failures: int
    since: float | None
    transitions: int
    successes: int
    failures: int
    rate_limited: int


class MemberHealth:
    """Health state machine of one member (module docstring). Starts ``healthy`` at full weight, latency unknown.

    Args:
        weight: configured weight (>= 1).
        thresholds: the thresholds.

    Raises:
        ValueError: ``weight < 1``.
    """

    def __init__(self, weight: int, thresholds: HealthThresholds) -> None:
        _check_weight(weight)
        self._weight = weight
        self._t = thresholds
        self._state = MemberState.HEALTHY
        self._since: float | None = None
        self._transitions = 0
        self._latency_ms: float | None = None
        self._outcomes: deque[bool] = deque(maxlen=thresholds.window)  # True = failure
        self._failures_in_window = 0
        self._consecutive_failures = 0
        self._recovered_at: float | None = None
        self._successes = 0
        self._failures = 0
        self._rate_limited = 0

    # ---- read side -------------------------------------------------------------------------------------------

    @property
    def state(self) -> MemberState:
        """Current state."""
        return self._state

    @property
    def weight(self) -> int:
        """Configured weight."""
        return self._weight

    @property
    def thresholds(self) -> HealthThresholds:
        """The thresholds in force."""
        return self._t

    @property
    def latency_ms(self) -> float | None:
        """Smoothed (EWMA) latency, ms; ``None`` before the first success."""
        return self._latency_ms

    @property
    def consecutive_failures(self) -> int:
        """Health failures since the last success."""
        return self._consecutive_failures

    @property
    def error_rate(self) -> float:
        """Failures / outcomes over the last ``window`` outcomes (0 when there are none)."""
        n = len(self._outcomes)
        return self._failures_in_window / n if n else 0.0

    @property
    def available(self) -> bool:
        """True unless offline or in maintenance (live calls may be sent)."""
        return self._state not in _NO_TRAFFIC

    def effective_weight(self, now: float) -> float:
        """The weight strategies use now: 0 offline or in maintenance; ``weight`` healthy;
        ``weight * DEGRADED_FACTOR`` degraded; times the recovery ramp
        ``RAMP_START + (1 - RAMP_START) * elapsed / recovery_s`` during the ``recovery_s`` after a comeback.

        Args:
            now: monotonic time, s (a time before the comeback counts as the comeback itself).
        """
        if self._state in _NO_TRAFFIC:
            return 0.0
        base = float(self._weight)
        if self._state is MemberState.DEGRADED:
            base *= DEGRADED_FACTOR
        return base * self._ramp(now)

    def snapshot(self, now: float) -> HealthSnapshot:
        """A frozen copy of the member's health at ``now`` (monotonic s)."""
        return HealthSnapshot(
            state=self._state,
            weight=self._weight,
            effective_weight=self.effective_weight(now),
            latency_ms=self._latency_ms,
            error_rate=self.error_rate,
            outcomes=len(self._outcomes),
            consecutive_failures=self._consecutive_failures,
            since=self._since,
            transitions=self._transitions,
            successes=self._successes,
            failures=self._failures,
            rate_limited=self._rate_limited,
        )

    # ---- write side: each returns the new state when it changed, else None ----------------------------------

    def record_success(self, latency_ms: float, now: float) -> MemberState | None:
        """A successful live call (or check) that took ``latency_ms`` (ms, >= 0).

        Updates the EWMA and the window; may move healthy <-> degraded. Never brings a member back from
        offline or maintenance (only :meth:`check_result` does).

        Raises:
            ValueError: a negative or non-finite latency.
        """
        _check_latency(latency_ms)
        return self._success(latency_ms, now)

    def record_failure(self, now: float, *, kind: str) -> MemberState | None:
        """A failed live call (or check).

        Args:
            now: monotonic time, s.
            kind: what failed, for example ``"network"``, ``"timeout"``, ``"unavailable"``, ``"check"``; a kind
                in :data:`RATE_LIMIT_KINDS` (``"rate_limit"``, ``"ban"``) is only counted.

        Returns:
            ``offline`` when this failure reaches ``offline_after_failures`` in a row, ``degraded`` when it
            pushes the error rate over its threshold, else None.

        Raises:
            ValueError: an empty kind.
        """
        if not kind:
            raise ValueError("record_failure needs a kind (e.g. 'network', 'rate_limit')")
        if kind in RATE_LIMIT_KINDS:
            self._rate_limited += 1
            return None
        self._failures += 1
        self._consecutive_failures += 1
        self._push(True)
        if self._state in _NO_TRAFFIC:
            return None
        if self._consecutive_failures >= self._t.offline_after_failures:
            return self._move(MemberState.OFFLINE, now)
        return self._evaluate(now)

    def record_maintenance(self, now: float) -> MemberState | None:
        """The exchange reports maintenance (status call, or ccxt ``OnMaintenance``): no traffic until a
        successful check that does not report it."""
        return self._move(MemberState.MAINTENANCE, now)

    def check_result(
        self, ok: bool, latency_ms: float | None, now: float, maintenance: bool = False
    ) -> MemberState | None:
        """The outcome of one health check.

        Args:
            ok: the check succeeded.
            latency_ms: its latency, ms; ``None`` when unmeasured (a success then counts in the window and ends
                a run of failures, but leaves the EWMA as it is; after a comeback the EWMA is unknown).
            now: monotonic time, s.
            maintenance: the exchange reports maintenance (wins over ``ok``).

        Returns:
            The new state when it changed, else None. A successful check of an offline or maintenance member
            brings it back (see the module docstring); a failed one is a health failure of kind ``"check"``.

        Raises:
            ValueError: a negative or non-finite latency.
        """
        if maintenance:
            return self.record_maintenance(now)
        if not ok:
            return self.record_failure(now, kind="check")
        if latency_ms is not None:
            _check_latency(latency_ms)
        if self._state not in _NO_TRAFFIC:
            return self._success(latency_ms, now)
        # comeback: the window and the EWMA described the outage; start afresh from this check
        self._outcomes.clear()
        self._failures_in_window = 0
        self._consecutive_failures = 0
        self._latency_ms = None
        self._recovered_at = now
        self._success(latency_ms, now)
        degraded = self._latency_ms is not None and self._latency_ms > self._t.degraded_latency_ms
        return self._move(MemberState.DEGRADED if degraded else MemberState.HEALTHY, now)

    def set_weight(self, weight: int) -> None:
        """Hot reload of the configured weight (>= 1); the state, window and any ramp in progress are kept.

        Raises:
            ValueError: ``weight < 1``.
        """
        _check_weight(weight)
        self._weight = weight

    def set_thresholds(self, thresholds: HealthThresholds, now: float | None = None) -> MemberState | None:
        """Hot reload of the thresholds: the newest ``window`` outcomes are kept; offline and maintenance are
        kept; healthy/degraded is re-evaluated under the new thresholds at ``now`` (monotonic s), or at the
        next recorded outcome when ``now`` is None. A ramp in progress keeps its start and takes the new
        ``recovery_s``.

        Returns:
            The new state when it changed (only with ``now``), else None.
        """
        self._t = thresholds
        self._outcomes = deque(self._outcomes, maxlen=thresholds.window)
        self._failures_in_window = sum(self._outcomes)
        return None if now is None else self._evaluate(now)

    # ---- internals -------------------------------------------------------------------------------------------

    def _ramp(self, now: float) -> float:
        start = self._recovered_at
        span = self._t.recovery_s
        if start is None or span <= 0.0:
            return 1.0
        elapsed = max(0.0, now - start)
        if elapsed >= span:
            return 1.0
        return min(1.0, RAMP_START + (1.0 - RAMP_START) * elapsed / span)

    def _success(self, latency_ms: float | None, now: float) -> MemberState | None:
        self._successes += 1
        self._consecutive_failures = 0
        self._push(False)
        if latency_ms is not None:
            alpha = self._t.ewma_alpha
            prev = self._latency_ms
            self._latency_ms = latency_ms if prev is None else alpha * latency_ms + (1.0 - alpha) * prev
        return self._evaluate(now)

    def _push(self, failed: bool) -> None:
        if len(self._outcomes) == self._outcomes.maxlen and self._outcomes[0]:
            self._failures_in_window -= 1
        self._outcomes.append(failed)
        if failed:
            self._failures_in_window += 1

    def _evaluate(self, now: float) -> MemberState | None:
        """healthy <-> degraded from the EWMA and the error rate (offline/maintenance untouched)."""
        if self._state in _NO_TRAFFIC:
            return None
        t = self._t
        latency = self._latency_ms
        counted = len(self._outcomes) >= t.min_outcomes
        rate = self.error_rate
        if self._state is MemberState.HEALTHY:
            slow = latency is not None and latency > t.degraded_latency_ms
            failing = counted and rate > t.degraded_error_rate
            if slow or failing:
                return self._move(MemberState.DEGRADED, now)
            return None
        fast = latency is None or latency <= t.hysteresis * t.degraded_latency_ms
        reliable = not counted or rate <= t.hysteresis * t.degraded_error_rate
        if fast and reliable:
            return self._move(MemberState.HEALTHY, now)
        return None

    def _move(self, state: MemberState, now: float) -> MemberState | None:
        if state is self._state:
            return None
        self._state = state
        self._since = now
        self._transitions += 1
        return state


def _check_weight(weight: int) -> None:
    if weight < 1:
        raise ValueError(f"weight must be >= 1, got {weight}")


def _check_latency(latency_ms: float) -> None:
    if not (math.isfinite(latency_ms) and latency_ms >= 0.0):
        raise ValueError(f"latency_ms must be a finite number >= 0, got {latency_ms}")
