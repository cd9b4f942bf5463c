"""The in-process limiter: the same weighted sliding-window log as the Redis store, on an injected clock.

:class:`LocalWindows` is the store (no waiting): per pool a time-ordered log of grants (µs of
``clock.monotonic()``, weight) and its running total. A grant at ``t`` counts in every window that contains
``t``, i.e. until ``t + window``: a try first drops the grants with ``t <= now - window``, then grants only when
``total + weight <= limit`` in every pool touched. Hence in ANY interval of ``window_s`` the granted weight is
at most ``limit``. Grants made in the same microsecond share one log entry and every entry weighs at least 1,
so a log holds at most ``limit`` entries (plus one per exchange-reported correction). A grant is O(1)
amortized; a refusal scans the oldest entries until enough weight would be freed.

:class:`LocalLimiter` puts a :class:`~cryptolink.ratelimit.line.WaitLine` in front: the limiter of a single
process, of tests in fake time, and the fallback of :class:`~cryptolink.ratelimit.shared.SharedLimiter`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence

from cryptolink.clock import Clock
from cryptolink.ratelimit.line import WaitLine
from cryptolink.ratelimit.pool import (
    Attempt,
    Costs,
    Grant,
    Pool,
    WaitReason,
    check_costs,
    pool_table,
    seconds_to_us,
)
from cryptolink.ratelimit.stats import Counters, LimiterStats

__all__ = ["LocalLimiter", "LocalWindows"]


class _Window:
    """One pool's log: ``times`` ascending (µs) with ``weights`` alongside, and their sum."""

    __slots__ = ("pool", "times", "total", "weights", "window_us")

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.window_us = pool.window_us
        self.times: deque[int] = deque()
        self.weights: deque[int] = deque()
        self.total = 0

    def prune(self, now_us: int) -> None:
        horizon = now_us - self.window_us
        times, weights = self.times, self.weights
        while times and times[0] <= horizon:
            times.popleft()
            self.total -= weights.popleft()

    def add(self, at_us: int, weight: int) -> None:
        times, weights = self.times, self.weights
        if not times or times[-1] < at_us:
            times.append(at_us)
            weights.append(weight)
        elif times[-1] == at_us:
            weights[-1] += weight
        else:  # a correction stamped in the past: keep the log ordered (scan from the newest end)
            index = len(times)
            while index > 0 and times[index - 1] > at_us:
                index -= 1
            if index > 0 and times[index - 1] == at_us:
                weights[index - 1] += weight
            else:
                times.insert(index, at_us)
                weights.insert(index, weight)
        self.total += weight

    def wait_us(self, weight: int, now_us: int) -> int:
        """µs until ``weight`` more fits (0: it fits now). Assumes :meth:`prune` ran at ``now_us``."""
        need = self.total + weight - self.pool.limit
        if need <= 0:
            return 0
        freed = 0
        for at_us, w in zip(self.times, self.weights, strict=True):
            freed += w
            if freed >= need:
                return max(1, at_us + self.window_us - now_us)
        return self.window_us  # only when weight > limit, which check_costs refuses

    def weight_after(self, at_us: int) -> int:
        """Weight of the entries stamped strictly after ``at_us``."""
        later = 0
        for t, w in zip(reversed(self.times), reversed(self.weights), strict=True):
            if t <= at_us:
                break
            later += w
        return later


class LocalWindows:
    """The in-process store (see the module docstring). Not thread-safe; one event loop.

    Args:
        pools: the pools (unique names).
        clock: the time source (its ``monotonic()``, in whole µs).

    Raises:
        ValueError: no pool, or duplicate names.
    """

    def __init__(self, pools: Iterable[Pool], clock: Clock) -> None:
        self.pools = pool_table(pools)
        self._clock = clock
        self._windows = {name: _Window(pool) for name, pool in self.pools.items()}
        self._scopes = {pool.scope for pool in self.pools.values()}
        self._paused_until: dict[str, int] = {}
        self._banned_until: dict[str, int] = {}

    def now_us(self) -> int:
        """The clock's monotonic time in whole µs."""
        return round(self._clock.monotonic() * 1_000_000)

    def try_acquire(self, costs: dict[str, int]) -> Attempt:
        """Grant ``costs`` in every pool, or in none and say how long to wait.

        ``costs`` must have passed :func:`~cryptolink.ratelimit.pool.check_costs` against these pools.
        """
        now = self.now_us()
        wait, reason, culprit = self._block_wait(costs, now)
        for name, weight in costs.items():
            window = self._windows[name]
            window.prune(now)
            room = window.wait_us(weight, now)
            if room > wait:
                wait, reason, culprit = room, "full", name
        if wait > 0:
            return Attempt(None, wait, _reason(reason), culprit, now)
        for name, weight in costs.items():
            self._windows[name].add(now, weight)
        return Attempt(Grant(now, dict(costs), "local"), now_us=now)

    def blocked(self, pools: Iterable[str]) -> Attempt | None:
        """The refusal a pause or ban in force on any of ``pools`` gives now, whatever the room: the longest
        of them (``reason`` ``paused`` or ``banned``, ``wait_us`` until it ends); ``None`` when none is in force.

        Raises:
            KeyError: an unknown pool.
        """
        now = self.now_us()
        wait, reason, culprit = self._block_wait(pools, now)
        if wait <= 0:
            return None
        return Attempt(None, wait, _reason(reason), culprit, now)

    def blocks(self) -> tuple[dict[str, float], dict[str, float]]:
        """The pauses and bans in force now, with the time each has left, s: ``(pool -> s, scope -> s)``
        (ended ones are forgotten here). A shared limiter pushes them to Redis when it rejoins."""
        now = self.now_us()
        found: list[dict[str, float]] = []
        for table in (self._paused_until, self._banned_until):
            for key in [k for k, until in table.items() if until <= now]:
                del table[key]
            found.append({key: (until - now) / 1_000_000 for key, until in table.items()})
        return found[0], found[1]

    def _block_wait(self, pools: Iterable[str], now: int) -> tuple[int, str | None, str | None]:
        wait, reason, culprit = 0, None, None
        for name in pools:
            scope = self._windows[name].pool.scope
            for why, until in (
                ("paused", self._paused_until.get(name, 0)),
                ("banned", self._banned_until.get(scope, 0)),
            ):
                if until - now > wait:
                    wait, reason, culprit = until - now, why, name
        return wait, reason, culprit

    def in_window(self, pool: str) -> int:
        """Weight counted in ``pool``'s window now (grants and corrections).

        Raises:
            KeyError: unknown pool.
        """
        window = self._windows[pool]
        window.prune(self.now_us())
        return window.total

    def observe_used(self, pool: str, used: int, at_us: int | None = None) -> int:
        """Raise ``pool``'s count to ``used`` (the exchange's own count) if it is below; never lower it.

        Args:
            pool: the pool name.
            used: weight the exchange reports used in its current window; a count above the pool's limit is
                taken as the limit (it means "full" all the same, and keeps every count within the limit).
            at_us: when the exchange counted it (this store's µs, normally the grant time of the request whose
                answer carried the count); ``None``: now. Weight granted after ``at_us`` is not compared (the
                exchange had not seen it), and the correction is stamped at ``at_us``, so it expires with that
                instant's window. A count older than one window is ignored.

        Returns:
            The weight added (0 when our count was not below).

        Raises:
            KeyError: unknown pool.
        """
        window = self._windows[pool]
        now = self.now_us()
        window.prune(now)
        at = now if at_us is None else min(at_us, now)
        if at <= now - window.window_us:
            return 0
        deficit = min(used, window.pool.limit) - (window.total - window.weight_after(at))
        if deficit <= 0:
            return 0
        window.add(at, deficit)
        return deficit

    def add(self, pool: str, weight: int) -> None:
        """Count ``weight`` in ``pool`` now, whatever the room (weight taken elsewhere).

        Raises:
            KeyError: unknown pool.
        """
        if weight > 0:
            window = self._windows[pool]
            now = self.now_us()
            window.prune(now)
            window.add(now, weight)

    def pause(self, pools: Sequence[str], duration_s: float) -> None:
        """Refuse every grant in ``pools`` for ``duration_s`` seconds from now (an earlier end is extended,
        a later one kept).

        Raises:
            KeyError: an unknown pool.
        """
        until = self.now_us() + seconds_to_us(duration_s)
        for name in pools:
            if name not in self._windows:
                raise KeyError(name)
            self._paused_until[name] = max(self._paused_until.get(name, 0), until)

    def ban(self, scope: str, duration_s: float) -> None:
        """Refuse every grant in every pool of ``scope`` for ``duration_s`` seconds from now.

        Raises:
            KeyError: no pool has this scope.
        """
        if scope not in self._scopes:
            raise KeyError(scope)
        until = self.now_us() + seconds_to_us(duration_s)
        self._banned_until[scope] = max(self._banned_until.get(scope, 0), until)

    def entries(self, pool: str) -> int:
        """Log entries held for ``pool`` (memory check).

        Raises:
            KeyError: unknown pool.
        """
        return len(self._windows[pool].times)


def _reason(reason: str | None) -> WaitReason:
    if reason == "paused":
        return "paused"
    if reason == "banned":
        return "banned"
    return "full"


class LocalLimiter:
    """A rate limiter of one process: :class:`LocalWindows` behind a priority :class:`WaitLine`.

    Args:
        pools: the pools.
        clock: time source of the windows and of the waits.
        max_waiters: bound of the waiting line.
        max_sleep_s: longest single sleep before trying again, s.

    Raises:
        ValueError: no pool, duplicate names, or a bound out of range.
    """

    def __init__(
        self, pools: Iterable[Pool], clock: Clock, *, max_waiters: int = 10_000, max_sleep_s: float = 5.0
    ) -> None:
        self.windows = LocalWindows(pools, clock)
        self.pools = self.windows.pools
        self._line = WaitLine(clock, max_waiters=max_waiters, max_sleep_s=max_sleep_s)
        self._counters = Counters(self.pools)

    async def acquire(self, costs: Costs, *, priority: int = 0, timeout_s: float | None = None) -> Grant:
        """Wait until every pool of ``costs`` has room, then take the weights from all of them at once.

        Args:
            costs: pool name -> weight.
            priority: lower is served first (snapshots 0, backfills higher).
            timeout_s: longest wait, s (``None``: no limit).

        Returns:
            The grant (``source == "local"``, ``at_us`` on the clock's monotonic µs).

        Raises:
            ValueError: an unknown pool, a weight < 1 or above its pool's limit (raised at once).
            TimeoutError: no room within ``timeout_s``; nothing was taken.
            LineFull: too many waiters.
        """
        checked = check_costs(costs, self.pools)
        grant = await self._line.run(checked, self._attempt, priority=priority, timeout_s=timeout_s)
        self._counters.granted(grant)
        return grant

    async def _attempt(self, costs: dict[str, int]) -> Attempt:
        result = self.windows.try_acquire(costs)
        self._counters.attempted(result)
        return result

    async def observe_used(self, pool: str, used: int, at: Grant | None = None) -> int:
        """The exchange's own count for ``pool`` (see :meth:`LocalWindows.observe_used`); ``at``: the grant of
        the request whose answer carried it. Returns the weight added.

        Raises:
            KeyError: unknown pool.
        """
        added = self.windows.observe_used(pool, used, at.at_us if at is not None else None)
        self._counters.observed(pool, added)
        return added

    async def pause(self, pools: Sequence[str], duration_s: float) -> None:
        """No grant in ``pools`` for ``duration_s`` s (a 429's ``Retry-After``).

        Raises:
            KeyError: an unknown pool.
        """
        self.windows.pause(pools, duration_s)
        self._counters.pauses += 1

    async def ban(self, scope: str, duration_s: float) -> None:
        """No grant in any pool of ``scope`` for ``duration_s`` s (a 418's ``Retry-After``).

        Raises:
            KeyError: no pool has this scope.
        """
        self.windows.ban(scope, duration_s)
        self._counters.bans += 1

    def stats(self) -> LimiterStats:
        """An immutable snapshot of the counters."""
        return self._counters.snapshot("local", self._line, self.windows)
