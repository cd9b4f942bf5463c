"""The limiter shared by many processes through Redis, with a local fallback.

:class:`SharedLimiter` asks the :class:`~cryptolink.ratelimit.redis_store.RedisWindowStore` for every grant
(one script per try, the Redis clock for every process). When a Redis call fails (connection refused or lost,
no answer within ``call_timeout_s``), the limiter falls back to a local window holding ``fallback_share`` of
every limit (0.25 for four processes): logged once at WARNING, counted (``fallbacks``, ``redis_errors``).
Every ``retry_s`` it tries Redis again; when Redis answers it rejoins (logged at INFO, counted ``rejoins``),
first adding to the shared windows the weight it granted alone during the fallback and pushing the pauses and
bans still in force locally (a 429 or 418 met while Redis was unreachable reaches the other processes then).
A pause or ban kept locally refuses before any Redis try, so it holds in both modes.

**What holds during a fallback**: only that this process stays within its share in any window (grants made
through Redis just before the fallback count in the local window too), except that a request heavier than the
share goes alone (it waits for an empty local window). A pool whose share is below one unit
(``limit * fallback_share < 1``) has no safe share: requests touching it wait for Redis. The limit as a whole
holds only while every process sharing it is on its share (shares adding up to at most 1): while one process
has fallen back and the others still reach Redis, they do not see its grants, and the total can reach
``(1 + fallback_share) * limit``.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import replace
from types import TracebackType
from typing import TypeVar

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from cryptolink.clock import Clock, SystemClock
from cryptolink.ratelimit.line import WaitLine
from cryptolink.ratelimit.local import LocalWindows
from cryptolink.ratelimit.pool import Attempt, Costs, Grant, Pool, check_costs, pool_table, seconds_to_us
from cryptolink.ratelimit.redis_store import RedisWindowStore
from cryptolink.ratelimit.stats import Counters, LimiterStats, Mode

__all__ = ["DEFAULT_PREFIX", "MAX_CONNECTIONS", "SharedLimiter"]

log = logging.getLogger("cryptolink.ratelimit")

DEFAULT_PREFIX = "cryptolink:rl"
"""Key prefix of the shared windows unless one is given."""

MAX_CONNECTIONS = 4
"""Connections of the pool a limiter built from a URL owns (only the head of the line and the
``pause``/``ban``/``observe_used`` calls use them)."""

_T = TypeVar("_T")
_REDIS_ERRORS = (RedisError, OSError, TimeoutError)


class _Unsynced:
    """Weight granted locally during a fallback, per pool, still inside its window: carried to Redis on rejoin."""

    def __init__(self, pools: Iterable[Pool]) -> None:
        self._window_us = {pool.name: pool.window_us for pool in pools}
        self._log: dict[str, deque[tuple[int, int]]] = {name: deque() for name in self._window_us}

    def add(self, now_us: int, weights: dict[str, int]) -> None:
        """Record a local grant; entries out of their window are dropped (the log stays within the share)."""
        for name, weight in weights.items():
            entries = self._log[name]
            horizon = now_us - self._window_us[name]
            while entries and entries[0][0] <= horizon:
                entries.popleft()
            entries.append((now_us, weight))

    def weight(self, name: str, now_us: int) -> int:
        """Weight of ``name`` still in its window at ``now_us``."""
        horizon = now_us - self._window_us[name]
        return sum(w for at, w in self._log[name] if at > horizon)

    def forget(self, name: str) -> None:
        """Drop ``name``'s log (once it has been carried to Redis)."""
        self._log[name].clear()

    def pending(self) -> list[str]:
        return [name for name, entries in self._log.items() if entries]


class SharedLimiter:
    """A rate limiter shared through Redis (see the module docstring). Use it as an async context manager
    or call :meth:`aclose`.

    Args:
        pools: the pools; every process sharing them must use the same names, limits and windows.
        redis_url: a Redis URL; the limiter builds and owns a client with ``call_timeout_s`` timeouts, no
            retries and a bounded pool (:data:`MAX_CONNECTIONS`). Exactly one of ``redis_url`` and ``client``.
        client: a ``redis.asyncio`` client owned by the caller (give it short timeouts and no retries).
        prefix: key prefix in Redis.
        fallback_share: fraction of each limit this process uses while Redis is unreachable (0 < x <= 1); a
            pool with ``limit * fallback_share < 1`` gets no share (its requests wait for Redis).
        retry_s: while in fallback, Redis is tried again at most this often, s (> 0).
        call_timeout_s: longest wait for one Redis call, s (> 0; the brief's bound is 0.5 s).
        clock: time source of waits, timeouts and the fallback window.
        max_waiters: bound of the waiting line; max_sleep_s: longest single sleep before trying again, s.

    Raises:
        ValueError: no pool, duplicate names, both or neither of ``redis_url``/``client``, or a bound out of
            range.
    """

    def __init__(
        self,
        pools: Iterable[Pool],
        *,
        redis_url: str | None = None,
        client: aioredis.Redis | None = None,
        prefix: str = DEFAULT_PREFIX,
        fallback_share: float = 0.25,
        retry_s: float = 1.0,
        call_timeout_s: float = 0.5,
        clock: Clock | None = None,
        max_waiters: int = 10_000,
        max_sleep_s: float = 5.0,
    ) -> None:
        if (redis_url is None) == (client is None):
            raise ValueError("give exactly one of redis_url and client")
        if not retry_s > 0 or not call_timeout_s > 0:
            raise ValueError("need retry_s > 0 and call_timeout_s > 0")
        self.pools = pool_table(pools)
        self._clock = clock if clock is not None else SystemClock()
        self._local = LocalWindows((p.scaled(fallback_share) for p in self.pools.values()), self._clock)
        self._no_share = frozenset(
            name for name, pool in self.pools.items() if math.floor(pool.limit * fallback_share) < 1
        )
        self._owns_client = client is None
        if client is None:
            assert redis_url is not None
            client = aioredis.Redis.from_pool(
                aioredis.BlockingConnectionPool.from_url(
                    redis_url,
                    max_connections=MAX_CONNECTIONS,
                    timeout=call_timeout_s,
                    socket_timeout=call_timeout_s,
                    socket_connect_timeout=call_timeout_s,
                    retry=Retry(NoBackoff(), 0),
                )
            )
        self._client = client
        self._store = RedisWindowStore(client, self.pools.values(), prefix)
        self._line = WaitLine(self._clock, max_waiters=max_waiters, max_sleep_s=max_sleep_s)
        self._counters = Counters(self.pools)
        self._unsynced = _Unsynced(self.pools.values())
        self.fallback_share = fallback_share
        self._retry_s = retry_s
        self._call_timeout_s = call_timeout_s
        self._fallback = False
        self._retry_at = 0.0

    async def __aenter__(self) -> SharedLimiter:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the Redis client if this limiter built it."""
        if self._owns_client:
            await self._client.aclose()

    @property
    def in_fallback(self) -> bool:
        """Whether the limiter is on its local share now."""
        return self._fallback

    async def acquire(self, costs: Costs, *, priority: int = 0, timeout_s: float | None = None) -> Grant:
        """Wait until every pool of ``costs`` has room, then take the weights from all of them at once.

        Args:
            costs: pool name -> weight.
            priority: lower is served first within this process.
            timeout_s: longest wait, s (``None``: no limit).

        Returns:
            The grant: ``source == "redis"`` with the server's epoch µs, or ``"local"`` (fallback) with the
            clock's monotonic µs. In a fallback a weight above the local share's limit is taken as that limit
            (it waits for an empty local window, then goes alone), and a request touching a pool without a
            share (``limit * fallback_share < 1``) waits for Redis. A pause or ban kept locally refuses in
            both modes.

        Raises:
            ValueError: an unknown pool, a weight < 1 or above its pool's limit (raised at once).
            TimeoutError: no room within ``timeout_s``; nothing was taken.
            cryptolink.ratelimit.line.LineFull: too many waiters.
        """
        checked = check_costs(costs, self.pools)
        grant = await self._line.run(checked, self._attempt, priority=priority, timeout_s=timeout_s)
        self._counters.granted(grant)
        return grant

    async def _attempt(self, costs: dict[str, int]) -> Attempt:
        if self._redis_due():
            errors = self._counters.redis_errors
            carried = 0
            try:
                if self._fallback:
                    carried = await self._carry()
                # a pause or ban kept here refuses first: Redis may not have it (set while it was unreachable)
                result = self._local.blocked(costs)
                if result is None:
                    result = await self._call(self._store.try_acquire(costs))
            except _REDIS_ERRORS as exc:
                self._failed(exc)
            else:
                # rejoin only if no other Redis call failed meanwhile (its pause or ban would not be carried)
                if self._fallback and self._counters.redis_errors == errors:
                    self._rejoined(carried)
                if result.grant is not None:
                    for name, weight in costs.items():  # this process's recent use, should it fall back
                        self._local.add(name, weight)
                self._counters.attempted(result)
                return result
        until_retry = max(1, seconds_to_us(self._retry_at - self._clock.monotonic()))
        no_share = next((name for name in costs if name in self._no_share), None)
        if no_share is not None:  # a share of 1 unit per process could exceed the limit: wait for Redis
            result = self._local.blocked(costs) or Attempt(
                None, until_retry, "full", no_share, self._local.now_us()
            )
        else:
            result = self._local.try_acquire(
                {n: min(w, self._local.pools[n].limit) for n, w in costs.items()}
            )
        if result.grant is None:
            result = replace(result, wait_us=min(result.wait_us, until_retry))
        else:
            self._unsynced.add(result.grant.at_us, costs)
            result = replace(result, grant=replace(result.grant, weights=dict(costs)))
        self._counters.attempted(result)
        return result

    async def observe_used(self, pool: str, used: int, at: Grant | None = None) -> int:
        """Feed the exchange's own count of ``pool``'s window (Binance ``X-MBX-USED-WEIGHT-1M``).

        Our count is raised to ``used`` if below (a synthetic grant of the difference, expiring with the
        window), never lowered. ``at``: the grant of the request whose answer carried the count (it places the
        correction at that request's time); ``None``: now. The local share is corrected too, so that it
        leaves no more room than the exchange does.

        Returns:
            The weight added to the shared count (to the local one during a fallback).

        Raises:
            KeyError: unknown pool.
        """
        spec = self.pools[pool]
        local_used = used - (spec.limit - self._local.pools[pool].limit)
        local_added = 0
        if local_used > 0:
            local_added = self._local.observe_used(
                pool, local_used, at.at_us if at is not None and at.source == "local" else None
            )
        added = local_added
        if self._redis_due():
            try:
                at_us = at.at_us if at is not None and at.source == "redis" else None
                added = await self._call(self._store.observe_used(pool, used, at_us))
            except _REDIS_ERRORS as exc:
                self._failed(exc)
        self._counters.observed(pool, added)
        return added

    async def pause(self, pools: Sequence[str], duration_s: float) -> None:
        """No grant in ``pools`` for ``duration_s`` s, for every process (a 429's ``Retry-After``); kept
        locally too, for a fallback.

        Raises:
            KeyError: an unknown pool.
        """
        self._local.pause(pools, duration_s)
        self._counters.pauses += 1
        if self._redis_due():
            try:
                await self._call(self._store.pause(pools, duration_s))
            except _REDIS_ERRORS as exc:
                self._failed(exc)

    async def ban(self, scope: str, duration_s: float) -> None:
        """No grant in any pool of ``scope`` for ``duration_s`` s, for every process (a 418); kept locally
        too.

        Raises:
            KeyError: no pool has this scope.
        """
        self._local.ban(scope, duration_s)
        self._counters.bans += 1
        if self._redis_due():
            try:
                await self._call(self._store.ban(scope, duration_s))
            except _REDIS_ERRORS as exc:
                self._failed(exc)

    def stats(self) -> LimiterStats:
        """An immutable snapshot of the counters (``mode`` ``redis`` or ``fallback``)."""
        mode: Mode = "fallback" if self._fallback else "redis"
        return self._counters.snapshot(mode, self._line, self._local, self._no_share)

    # -- Redis health ------------------------------------------------------------------------------------

    def _redis_due(self) -> bool:
        return not self._fallback or self._clock.monotonic() >= self._retry_at

    async def _call(self, call: Awaitable[_T]) -> _T:
        return await asyncio.wait_for(call, self._call_timeout_s)

    async def _carry(self) -> int:
        """Add the weight granted alone to the shared windows, then push the pauses and bans in force here
        (seconds left; Redis keeps a longer one it has). Returns the number of pauses and bans pushed."""
        now = self._local.now_us()
        for name in self._unsynced.pending():
            await self._call(self._store.add(name, self._unsynced.weight(name, now)))
            self._unsynced.forget(name)  # only once Redis has it: a failed carry is tried again
        pauses, bans = self._local.blocks()
        if pauses or bans:
            await self._call(self._store.block(pauses, bans))
        return len(pauses) + len(bans)

    def _failed(self, exc: BaseException) -> None:
        self._counters.redis_errors += 1
        self._counters.last_error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        self._retry_at = self._clock.monotonic() + self._retry_s
        if not self._fallback:
            self._fallback = True
            self._counters.fallbacks += 1
            log.warning(
                "rate limiter: Redis unreachable (%s); using the local share %.2f of each limit, retrying every %g s",
                self._counters.last_error,
                self.fallback_share,
                self._retry_s,
            )

    def _rejoined(self, blocks: int) -> None:
        self._fallback = False
        self._counters.rejoins += 1
        log.info("rate limiter: Redis reachable again; shared limits in use (%d pauses/bans pushed)", blocks)
