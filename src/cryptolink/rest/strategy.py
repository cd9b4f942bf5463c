"""Load-balancing strategies of a REST group: which member serves a call, and the failover order within it.

Pure and sans-I/O: no asyncio, no ccxt, no clock of its own. The manager builds one :class:`Candidate` per
member of a group from the member's configuration and its health (``cryptolink.rest.health``), then asks the
group's strategy for an order::

    strategy = make_strategy("weighted")
    names = strategy.order(candidates, now)   # ["binance-b", "binance-a"]: try b first, then a

The first name is the pick; the others are the members to try next *within the same call* when the pick
fails with an error another member can absorb, in the strategy's own preference. A member whose effective
weight is 0 (offline, maintenance) is never in the answer; when every member has weight 0 the answer is ``[]``.

Strategies (see docs/rest-balancing.md):

- ``round_robin`` (:class:`RoundRobin`): a cursor rotates over the members in the order given. Each member
  holds a *credit*: every time the cursor visits it, the credit grows by its *health share*
  ``(effective_weight / weight) / max over members of (effective_weight / weight)``, and the member is picked
  when its credit reaches 1 (then 1 is taken off); otherwise the cursor moves on. A member at full health
  (share 1) is picked on every visit, so with all members healthy this is plain rotation; a degraded member at
  share 0.25 is picked on one visit in four. The configured weight itself does not skew round robin: only the
  health share does. Over any run each member's picks are within ``len(members) + 1`` of
  ``calls * share / sum(shares)``.
- ``least_latency`` (:class:`LeastLatency`): stateless; members whose latency is unknown come first (so each
  gets measured), then by *score* = smoothed latency / (effective_weight / weight), so a degraded or
  recovering member looks slower than it measures; ties by priority, then name.
- ``weighted`` (:class:`Weighted`): smooth weighted round robin over the *effective* weights: each call adds
  every available member's effective weight to its ``current`` value, picks the largest ``current`` (ties: the
  order given) and subtracts the total effective weight from the pick. From a fresh state with a fixed set of
  integer effective weights, every ``total`` calls pick each member exactly ``effective_weight`` times, spread
  out rather than in runs; degraded and recovering members get less traffic in proportion.
- ``failover`` (:class:`Failover`): stateless; priority order (lower first), ties by name; the pick is the first
  available member.

State is bounded: a stateful strategy keeps a value only for the members of the latest call (and
``weighted`` only for the available ones); a member removed from the group is forgotten on the next call.
Not thread-safe: one strategy object belongs to one group on one event loop.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "STRATEGIES",
    "Candidate",
    "Failover",
    "LeastLatency",
    "RoundRobin",
    "Strategy",
    "Weighted",
    "make_strategy",
]

_CREDIT_EPS = 1e-9
"""Tolerance of the round-robin credit test (``credit >= 1 - eps``): float sums of shares such as 0.1."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """One member of a group as a strategy sees it for one call.

    Attributes:
        name: the member's name (unique within the call).
        weight: configured weight (>= 1).
        priority: failover order (lower first).
        effective_weight: from health, ``0 <= effective_weight <= weight``: 0 offline or in maintenance
            (never picked), ``weight`` healthy, less while degraded or recovering.
        latency_ms: smoothed (EWMA) latency, ms, ``>= 0``; ``None`` while unknown.

    Raises:
        ValueError: an empty name, ``weight < 1``, an effective weight outside ``[0, weight]`` or not finite,
            or a negative or non-finite latency.
    """

    name: str
    weight: int
    priority: int
    effective_weight: float
    latency_ms: float | None

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError(f"candidate needs a name: {self!r}")
        if self.weight < 1:
            raise ValueError(f"candidate {self.name!r}: weight must be >= 1, got {self.weight}")
        if not (math.isfinite(self.effective_weight) and 0.0 <= self.effective_weight <= self.weight):
            raise ValueError(
                f"candidate {self.name!r}: effective_weight must be in [0, {self.weight}], "
                f"got {self.effective_weight}"
            )
        if self.latency_ms is not None and not (math.isfinite(self.latency_ms) and self.latency_ms >= 0.0):
            raise ValueError(
                f"candidate {self.name!r}: latency_ms must be >= 0 or None, got {self.latency_ms}"
            )

    @property
    def available(self) -> bool:
        """True when the member may take traffic (effective weight > 0)."""
        return self.effective_weight > 0.0

    @property
    def share(self) -> float:
        """Health share ``effective_weight / weight`` in ``[0, 1]``: 1 at full health."""
        return self.effective_weight / self.weight


class Strategy(Protocol):
    """A load-balancing strategy of one group (see the module docstring)."""

    name: str

    def order(self, members: Sequence[Candidate], now: float) -> list[str]:
        """Member names in the order to try for one call.

        Args:
            members: every member of the group (available or not), names unique. Stateful strategies rotate
                over them in the order given, so keep that order stable between calls.
            now: monotonic time, s (unused by the strategies here; part of the interface for time-aware ones).

        Returns:
            The pick first, then the failover order within that call. Members with effective weight 0 are
            excluded; ``[]`` when every member is excluded (or ``members`` is empty).

        Raises:
            ValueError: two members with the same name.
        """
        ...


def _check_unique(members: Sequence[Candidate]) -> None:
    counts = Counter(m.name for m in members)
    if len(counts) != len(members):
        dupes = sorted(name for name, count in counts.items() if count > 1)
        raise ValueError(f"duplicate member names in one call: {dupes}")


def _by_priority(members: Sequence[Candidate]) -> list[Candidate]:
    return sorted(members, key=lambda m: (m.priority, m.name))


class RoundRobin:
    """Rotation over the members, a degraded member picked on a share of its visits (module docstring)."""

    name: str = "round_robin"

    def __init__(self) -> None:
        self._cursor = 0
        self._credit: dict[str, float] = {}

    @property
    def tracked(self) -> frozenset[str]:
        """Names of the members this strategy holds state for (bounded by the latest call's members)."""
        return frozenset(self._credit)

    def order(self, members: Sequence[Candidate], now: float) -> list[str]:
        """See :meth:`Strategy.order`: the pick, then the others in rotation order (full health first)."""
        _check_unique(members)
        names = {m.name for m in members}
        for gone in [n for n in self._credit if n not in names]:
            del self._credit[gone]
        available = [m for m in members if m.available]
        if not available:
            return []
        top = max(m.share for m in available)
        n = len(members)
        start = self._cursor % n
        pick_index = -1
        # the member(s) at the top share reach credit 1 on their first visit, so one pass always picks
        for step in range(n):
            i = (start + step) % n
            member = members[i]
            if not member.available:
                continue
            credit = self._credit.get(member.name, 0.0) + member.share / top
            if credit >= 1.0 - _CREDIT_EPS:
                self._credit[member.name] = max(0.0, credit - 1.0)
                pick_index = i
                break
            self._credit[member.name] = credit
        if pick_index < 0:  # unreachable: the top share adds 1 to a credit >= 0
            raise RuntimeError("round robin found no member at the top share")
        self._cursor = pick_index + 1
        rest = [members[(pick_index + k) % n] for k in range(1, n)]
        rest = [m for m in rest if m.available]
        # retries: members at full health first, each group in rotation order (sort is stable)
        rest.sort(key=lambda m: m.share < 1.0)
        return [members[pick_index].name, *(m.name for m in rest)]


class LeastLatency:
    """Lowest penalised smoothed latency first; unknown latency before any known one (module docstring)."""

    name: str = "least_latency"

    @staticmethod
    def score(member: Candidate) -> float:
        """``latency_ms / (effective_weight / weight)``, ms; ``-inf`` when unknown, ``inf`` when unavailable."""
        if not member.available:
            return math.inf
        if member.latency_ms is None:
            return -math.inf
        return member.latency_ms / member.share

    def order(self, members: Sequence[Candidate], now: float) -> list[str]:
        """See :meth:`Strategy.order`: every available member by (score, priority, name)."""
        _check_unique(members)
        ranked = sorted(
            (m for m in members if m.available), key=lambda m: (self.score(m), m.priority, m.name)
        )
        return [m.name for m in ranked]


class Weighted:
    """Smooth weighted round robin over the effective weights (module docstring)."""

    name: str = "weighted"

    def __init__(self) -> None:
        self._current: dict[str, float] = {}

    @property
    def tracked(self) -> frozenset[str]:
        """Names of the members this strategy holds state for (the latest call's available members)."""
        return frozenset(self._current)

    def order(self, members: Sequence[Candidate], now: float) -> list[str]:
        """See :meth:`Strategy.order`: the pick, then the others by ``current`` after the update (highest first:
        the members the rotation owes the most), ties by the order given."""
        _check_unique(members)
        available = [m for m in members if m.available]
        keep = {m.name for m in available}
        for gone in [n for n in self._current if n not in keep]:
            del self._current[gone]
        if not available:
            return []
        total = 0.0
        for m in available:
            self._current[m.name] = self._current.get(m.name, 0.0) + m.effective_weight
            total += m.effective_weight
        pick = available[0]
        for m in available[1:]:
            if self._current[m.name] > self._current[pick.name]:
                pick = m
        self._current[pick.name] -= total
        position = {m.name: i for i, m in enumerate(available)}
        rest = sorted(
            (m.name for m in available if m is not pick), key=lambda n: (-self._current[n], position[n])
        )
        return [pick.name, *rest]


class Failover:
    """Priority order, lower first, ties by name; the pick is the first available member."""

    name: str = "failover"

    def order(self, members: Sequence[Candidate], now: float) -> list[str]:
        """See :meth:`Strategy.order`: every available member by (priority, name)."""
        _check_unique(members)
        return [m.name for m in _by_priority(members) if m.available]


STRATEGIES: tuple[str, ...] = (RoundRobin.name, LeastLatency.name, Weighted.name, Failover.name)
"""The strategy names :func:`make_strategy` accepts (the ``strategy:`` of a group in the ``rest:`` config)."""


def make_strategy(name: str) -> Strategy:
    """A new strategy object (fresh state) for one group.

    Args:
        name: one of :data:`STRATEGIES`: ``"round_robin"``, ``"least_latency"``, ``"weighted"``, ``"failover"``.

    Raises:
        ValueError: an unknown name (the message lists the known ones).
    """
    if name == RoundRobin.name:
        return RoundRobin()
    if name == LeastLatency.name:
        return LeastLatency()
    if name == Weighted.name:
        return Weighted()
    if name == Failover.name:
        return Failover()
    raise ValueError(f"unknown strategy {name!r}; known: {', '.join(STRATEGIES)}")
