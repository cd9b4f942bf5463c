"""The vocabulary of the rate limiter: pools, costs, grants and the answer of one attempt.

A :class:`Pool` is one documented limit of an exchange: at most ``limit`` weight units granted in any
``window_s`` seconds. A request's *costs* map pool names to the weight it takes from each pool
(``{"binance:ip:weight": 20, "binance:ip:raw": 1}``); it is granted in every pool at once or in none.

Times inside the limiter are integer microseconds (exact in Lua's doubles and in Redis sorted-set scores,
so the window arithmetic has no rounding): epoch µs of the Redis server's ``TIME`` for shared grants, µs of
the injected clock's ``monotonic()`` for local ones. :class:`Grant` says which clock stamped it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "Attempt",
    "Costs",
    "Grant",
    "Pool",
    "Source",
    "WaitReason",
    "check_costs",
    "pool_table",
    "seconds_to_us",
]

Costs = Mapping[str, int]
"""Pool name -> weight units a request takes from that pool (each >= 1)."""

Source = Literal["redis", "local"]
"""Which store granted: the shared Redis window (server clock) or a process-local window (its clock)."""

WaitReason = Literal["full", "paused", "banned"]
"""Why an attempt was refused: a pool lacks room, a pool is paused (429), or its scope is banned (418)."""


def seconds_to_us(seconds: float) -> int:
    """``seconds`` as whole microseconds, rounded up (a wait is never shortened by rounding)."""
    return max(0, math.ceil(seconds * 1_000_000 - 1e-6))


@dataclass(frozen=True, slots=True)
class Pool:
    """One limit: at most ``limit`` weight units in any sliding window of ``window_s`` seconds.

    Attributes:
        name: unique key of the pool (``"binance:ip:weight"``); it names the pool's Redis keys, so every
            process sharing the limit must use the same name (and the same limit and window).
        limit: weight units per window (>= 1).
        window_s: window length, s (> 0; resolved to whole microseconds).
        scope: what a ban covers (``"binance:ip"``: every pool of one IP); a ban of a scope refuses every pool
            that carries it. Defaults to ``name`` (the pool alone).

    Raises:
        ValueError: an empty name, ``limit < 1`` or ``window_s <= 0``.
    """

    name: str
    limit: int
    window_s: float
    scope: str = field(default="")

    def __post_init__(self) -> None:
        if not self.name or self.limit < 1 or not self.window_s > 0:
            raise ValueError(f"invalid pool {self!r}: need a name, limit >= 1 and window_s > 0")
        if not self.scope:
            object.__setattr__(self, "scope", self.name)

    @property
    def window_us(self) -> int:
        """The window in whole microseconds (at least 1)."""
        return max(1, seconds_to_us(self.window_s))

    def scaled(self, share: float) -> Pool:
        """This pool with ``floor(limit * share)`` (at least 1) units: a process's share of the limit. Where
        ``limit * share < 1`` the 1 unit is not a safe share (several processes would each take it);
        :class:`~cryptolink.ratelimit.shared.SharedLimiter` grants nothing locally in such a pool.

        Raises:
            ValueError: ``share`` not in (0, 1].
        """
        if not 0 < share <= 1:
            raise ValueError(f"share must be in (0, 1], got {share}")
        return Pool(self.name, max(1, math.floor(self.limit * share)), self.window_s, self.scope)


@dataclass(frozen=True, slots=True)
class Grant:
    """A granted request.

    Attributes:
        at_us: grant time, µs: the Redis server's epoch time (``source == "redis"``) or the local clock's
            monotonic time (``source == "local"``).
        weights: the weight taken from each pool.
        source: which store granted it.
    """

    at_us: int
    weights: Mapping[str, int]
    source: Source

    @property
    def at_ms(self) -> float:
        """``at_us`` in milliseconds."""
        return self.at_us / 1000.0


@dataclass(frozen=True, slots=True)
class Attempt:
    """The answer of one try: a grant, or how long to wait before trying again.

    Attributes:
        grant: the grant; ``None`` when refused (nothing was taken from any pool).
        wait_us: when refused, µs until the earliest moment every pool could have room (the oldest grants that
            must expire have expired, and any pause or ban has ended); 0 when granted.
        reason: why it was refused (``None`` when granted).
        pool: the pool that set ``wait_us`` (``None`` when granted).
        now_us: the store's time of the answer, µs (same clock as :attr:`Grant.at_us`).
    """

    grant: Grant | None
    wait_us: int = 0
    reason: WaitReason | None = None
    pool: str | None = None
    now_us: int = 0


def pool_table(pools: Iterable[Pool]) -> dict[str, Pool]:
    """Pools by name.

    Raises:
        ValueError: two pools share a name, or there is none.
    """
    table: dict[str, Pool] = {}
    for pool in pools:
        if pool.name in table:
            raise ValueError(f"duplicate pool name {pool.name!r}")
        table[pool.name] = pool
    if not table:
        raise ValueError("a limiter needs at least one pool")
    return table


def check_costs(costs: Costs, pools: Mapping[str, Pool]) -> dict[str, int]:
    """Validate a request's costs against ``pools`` and return a plain copy.

    Raises:
        ValueError: no pool named, an unknown pool, a weight < 1, or a weight above the pool's limit (such a
            request could never be granted).
    """
    if not costs:
        raise ValueError("a request must cost weight in at least one pool")
    checked: dict[str, int] = {}
    for name, weight in costs.items():
        pool = pools.get(name)
        if pool is None:
            raise ValueError(f"unknown pool {name!r}")
        if weight < 1:
            raise ValueError(f"weight in pool {name!r} must be >= 1, got {weight}")
        if weight > pool.limit:
            raise ValueError(f"weight {weight} exceeds the limit {pool.limit} of pool {name!r}")
        checked[name] = int(weight)
    return checked
