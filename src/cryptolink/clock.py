"""Injected clocks: every piece of timing logic takes a :class:`Clock` so it can run in fake time.

``monotonic()`` (seconds, float) measures intervals; ``time_ns()`` is the wall clock (epoch ns) used only to stamp
receipts and reports. :class:`FakeClock` is a manually advanced clock for tests; ``sleep`` on it returns once
the clock has been advanced past the deadline.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "FakeClock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """What timing code needs from a clock."""

    def monotonic(self) -> float:
        """Monotonic time in seconds (arbitrary origin)."""
        ...

    def time_ns(self) -> int:
        """Wall-clock time in nanoseconds since the Unix epoch."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Suspend for ``seconds`` of this clock's time (<= 0 yields once)."""
        ...


class SystemClock:
    """The real clocks: :func:`time.monotonic`, :func:`time.time_ns`, :func:`asyncio.sleep`."""

    def monotonic(self) -> float:
        return time.monotonic()

    def time_ns(self) -> int:
        return time.time_ns()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class FakeClock:
    """A clock that moves only when told to.

    Args:
        start: initial monotonic time in seconds.
        wall_start_ns: wall-clock time (epoch ns) at ``start``.

    ``await clock.sleep(s)`` parks the caller until :meth:`advance` moves time to or past its deadline.
    :meth:`advance` wakes sleepers in deadline order and yields to the event loop after each wake so that woken
    tasks run at the time they asked for.
    """

    def __init__(self, start: float = 0.0, wall_start_ns: int = 1_700_000_000_000_000_000) -> None:
        self._now = start
        self._wall_offset_ns = wall_start_ns - int(start * 1e9)
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._counter = itertools.count()

    def monotonic(self) -> float:
        return self._now

    def time_ns(self) -> int:
        return self._wall_offset_ns + int(self._now * 1e9)

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._counter), fut))
        await fut

    @property
    def pending_sleepers(self) -> int:
        """Number of tasks parked in :meth:`sleep` (cancelled ones excluded)."""
        return sum(1 for _, _, f in self._sleepers if not f.done())

    async def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds``, waking every sleeper whose deadline is reached, in order."""
        target = self._now + seconds
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, fut = heapq.heappop(self._sleepers)
            self._now = max(self._now, deadline)
            if not fut.done():
                fut.set_result(None)
            for _ in range(5):
                await asyncio.sleep(0)
        self._now = target
        for _ in range(5):
            await asyncio.sleep(0)
