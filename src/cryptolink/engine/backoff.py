"""Reconnect delays: capped exponential backoff with full jitter, and the rule that resets it.

Rule (:class:`BackoffPolicy` defaults)::

    attempt 1            delay 0 s (immediate)
    attempt n >= 2       delay = uniform(0, min(cap_s, base_s * factor ** (n - 2)))
                         i.e. bounds 1, 2, 4, 8, 16, 30, 30 ... s

"Full jitter" spreads many clients' retries uniformly over the whole window so they do not reconnect in waves.
Attempts are unlimited unless ``max_attempts`` is set; after ``max_attempts`` consecutive attempts failed the
connection goes to ``failed`` (only an explicit ``reconnect()`` restarts it).

What counts as a success. Opening a socket is not enough: the attempt counter resets only once a session has
**delivered market data** and stayed open ``reset_after_s`` (default 2 s) after its first data. So

- a server that accepts and closes at once, or accepts and never sends data, sees the delays grow exactly as if
  the connection had failed (never a tight loop);
- a server that flaps (a fault every few seconds) but serves data in between gets an immediate reconnect every
  time, so the connection delivers almost all the time instead of backing off until it looks dead.

Why the cap is 30 s. The wait after the exchange comes back is at most the delay in progress, so the cap bounds
the time from "reachable again" to "data flowing": <= 30 s plus one connect, whatever the outage length (with the
old 300 s cap a 2-minute outage took 62-125 s). During an outage the per-exchange
:class:`~cryptolink.engine.gate.ConnectGate` lets one probe through at a time, so many connections retrying
every <= 30 s still make one attempt per probe interval, and it wakes every waiting connection as soon as a
probe succeeds.

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
        cap_s: largest bound, s (it bounds the wait between "reachable again" and the next attempt).
        max_attempts: consecutive attempts before giving up (state ``failed``); ``None``: never give up.
        reset_after_s: time a session must stay open after its first market data for the counter to reset, s.

    Raises:
        ValueError: on construction with a negative or inconsistent value.
    """

    base_s: float = 1.0
    factor: float = 2.0
    cap_s: float = 30.0
    max_attempts: int | None = None
    reset_after_s: float = 2.0

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
        """Whether a session that has delivered market data for ``healthy_for_s`` seconds (time since its first
        data) has earned a reset."""
        return self.attempt > 0 and healthy_for_s >= self.policy.reset_after_s
