"""Statistics of a limiter: mutable counters inside, frozen snapshots outside."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from cryptolink.ratelimit.pool import Attempt, Grant, Pool

if TYPE_CHECKING:
    from cryptolink.ratelimit.line import WaitLine
    from cryptolink.ratelimit.local import LocalWindows

__all__ = ["Counters", "LimiterStats", "Mode", "PoolStats"]

Mode = Literal["local", "redis", "fallback"]
"""``local``: a :class:`~cryptolink.ratelimit.local.LocalLimiter`; ``redis``: a shared limiter using Redis;
``fallback``: a shared limiter on its local share while Redis is unreachable."""


@dataclass(frozen=True, slots=True)
class PoolStats:
    """One pool as this limiter instance sees it.

    Attributes:
        name, limit, window_s, scope: the pool.
        requests: requests granted by this instance touching the pool; weight: their summed weight.
        observed: weight added from the exchange's own counts (``observe_used``).
        local_in_window: weight in the local window now (the fallback share's log of a shared limiter).
        local_limit: the local window's limit (the fallback share of a shared limiter; 0 for a pool whose
            share is below one unit, whose requests wait for Redis during a fallback).
    """

    name: str
    limit: int
    window_s: float
    scope: str
    requests: int
    weight: int
    observed: int
    local_in_window: int
    local_limit: int


@dataclass(frozen=True, slots=True)
class LimiterStats:
    """A limiter's counters at one moment.

    Attributes:
        mode: see :data:`Mode`.
        grants: requests granted; waiting: requests in the line now.
        attempts: tries at the store (Redis or local) by heads of the line.
        refused_full, refused_paused, refused_banned: tries refused, by reason.
        timeouts: requests that gave up at their deadline; rejected: refused because the line was full.
        pauses, bans: ``pause``/``ban`` calls.
        fallbacks: switches from Redis to the local share; rejoins: switches back; redis_errors: failed Redis
            calls (each counted, also those made during a fallback).
        last_error: the latest Redis failure (``"<Type>: <message>"``), ``None`` when none yet.
        pools: per pool, in the order given to the limiter.
    """

    mode: Mode
    grants: int
    waiting: int
    attempts: int
    refused_full: int
    refused_paused: int
    refused_banned: int
    timeouts: int
    rejected: int
    pauses: int
    bans: int
    fallbacks: int
    redis_errors: int
    rejoins: int
    last_error: str | None
    pools: tuple[PoolStats, ...]


class Counters:
    """The mutable counters behind :class:`LimiterStats` (one event loop, no locking)."""

    def __init__(self, pools: Mapping[str, Pool]) -> None:
        self._pools = dict(pools)
        self.grants = 0
        self.refused = {"full": 0, "paused": 0, "banned": 0}
        self.pauses = 0
        self.bans = 0
        self.fallbacks = 0
        self.redis_errors = 0
        self.rejoins = 0
        self.last_error: str | None = None
        self._requests = dict.fromkeys(self._pools, 0)
        self._weight = dict.fromkeys(self._pools, 0)
        self._observed = dict.fromkeys(self._pools, 0)

    def granted(self, grant: Grant) -> None:
        self.grants += 1
        for name, weight in grant.weights.items():
            self._requests[name] += 1
            self._weight[name] += weight

    def attempted(self, attempt: Attempt) -> None:
        if attempt.reason is not None:
            self.refused[attempt.reason] += 1

    def observed(self, pool: str, added: int) -> None:
        self._observed[pool] += added

    def snapshot(
        self, mode: Mode, line: WaitLine, local: LocalWindows, no_share: Collection[str] = ()
    ) -> LimiterStats:
        """The counters now; ``no_share``: pools without a local share (reported with ``local_limit`` 0)."""
        return LimiterStats(
            mode=mode,
            grants=self.grants,
            waiting=line.waiting,
            attempts=line.attempts,
            refused_full=self.refused["full"],
            refused_paused=self.refused["paused"],
            refused_banned=self.refused["banned"],
            timeouts=line.timeouts,
            rejected=line.rejected,
            pauses=self.pauses,
            bans=self.bans,
            fallbacks=self.fallbacks,
            redis_errors=self.redis_errors,
            rejoins=self.rejoins,
            last_error=self.last_error,
            pools=tuple(
                PoolStats(
                    name=name,
                    limit=pool.limit,
                    window_s=pool.window_s,
                    scope=pool.scope,
                    requests=self._requests[name],
                    weight=self._weight[name],
                    observed=self._observed[name],
                    local_in_window=local.in_window(name),
                    local_limit=0 if name in no_share else local.pools[name].limit,
                )
                for name, pool in self._pools.items()
            ),
        )
