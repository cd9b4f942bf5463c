"""Reconnect delays: capped exponential backoff with full jitter, and the rule that resets it.

Rule (:class:`BackoffPolicy` defaults)::

    attempt 1            delay 0 s (immediate)
    attempt n >= 2       delay = uniform(0, min(cap_s, base_s * factor ** (n - 2)))
                         i.e. bounds 1, 2, 4, 8, ... 256, 300, 300 ... s

"Full jitter" spreads many clients' retries uniformly over the whole window so they do not reconnect in waves.
Attempts are unlimited unless ``max_attempts`` is set; after ``max_attempts`` consecutive attempts failed the
connection goes to ``failed`` (only an explicit ``reconnect()`` restarts it).

Reset rule: the attempt counter is *not* reset when a socket opens. It resets only after the connection has
stayed healthy (connected and receiving market data) for ``reset_after_s`` (default 30 s). A server that
accepts and then closes at once therefore sees delays grow exactly as if the connection had failed, never a
tight loop.

The policy is a plain dataclass and :class:`Backoff` is its small state; swap the policy (or subclass
:class:`Backoff` and override :meth:`Backoff.bound`) to change the schedule.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["Backoff", "BackoffPolicy"]


@dataclass(frozen=True, slots=True)
class BackoffPolicy:
    """Parameters of the reconnect schedule.

    Attributes:
        base_s: upper bound of the delay before attempt 2, s.
        factor: growth of the bound per attempt.
        cap_s: largest bound, s.
        max_attempts: consecutive attempts before giving up (state ``failed``); ``None``: never give up.
        reset_after_s: healthy time (connected and receiving data) after which the counter resets, s.

    Raises:
        ValueError: on construction with a negative or inconsistent value.
    """

    base_s: float = 1.0
    factor: float = 2.0
    cap_s: float = 300.0
    max_attempts: int | None = None
    reset_after_s: float = 30.0

    def __post_init__(self) -> None:
        if self.base_s < 0 or self.cap_s < 0 or self.factor < 1 or self.reset_after_s < 0:
            raise ValueError(f"invalid backoff policy {self!r}")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1 or None")


class Backoff:
    """Attempt counter and delay generator for one connection.

    Args:
        policy: the schedule.
        rng: random source (inject ``random.Random(seed)`` for reproducible tests).
    """

    __slots__ = ("_rng", "attempt", "policy")

    def __init__(self, policy: BackoffPolicy | None = None, rng: random.Random | None = None) -> None:
        self.policy = policy or BackoffPolicy()
        self._rng = rng or random.Random()
        self.attempt = 0
        """Number of the last attempt handed out by :meth:`next_delay` (0: none since the last reset)."""

    def bound(self, attempt: int) -> float:
        """Upper bound of the delay before ``attempt`` (1-based), s: 0 for attempt 1."""
        if attempt <= 1:
            return 0.0
        p = self.policy
        exponent = attempt - 2
        # avoid float overflow for very long outages: once past the cap, stay there
        if exponent > 64:
            return p.cap_s
        return float(min(p.cap_s, p.base_s * p.factor**exponent))

    @property
    def exhausted(self) -> bool:
        """True when ``max_attempts`` attempts were handed out and none has been reset since."""
        m = self.policy.max_attempts
        return m is not None and self.attempt >= m

    def next_delay(self) -> float:
        """Count one more attempt and return its delay in seconds (full jitter: ``uniform(0, bound)``)."""
        self.attempt += 1
        b = self.bound(self.attempt)
        return 0.0 if b <= 0 else self._rng.uniform(0.0, b)

    def reset(self) -> None:
        """Start over: the next attempt is immediate."""
        self.attempt = 0

    def should_reset(self, healthy_for_s: float) -> bool:
        """Whether a connection healthy for ``healthy_for_s`` seconds has earned a reset."""
        return self.attempt > 0 and healthy_for_s >= self.policy.reset_after_s
