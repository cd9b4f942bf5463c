"""The waiting line of one limiter instance: priority, then arrival; only the head asks the store.

Every :meth:`WaitLine.run` call joins a heap ordered by ``(priority, arrival)``: a lower priority number is
served first (book snapshots before trade backfills), equal priorities in arrival order. Only the head of the
line tries the store (one try in flight per line), so a hundred waiters cost one Redis call per try, not a
hundred. A refused head sleeps the time the store answered (capped at ``max_sleep_s``) on the injected clock,
or less when its own deadline comes; a waiter of better priority that arrives meanwhile becomes the head and
tries at once; the others sleep until they become the head. Everything is woken by events: nothing polls.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from cryptolink.clock import Clock
from cryptolink.errors import CryptolinkError
from cryptolink.ratelimit.pool import Attempt, Grant

__all__ = ["AttemptFn", "LineFull", "WaitLine"]

AttemptFn = Callable[[dict[str, int]], Awaitable[Attempt]]
"""One try at the store: takes validated costs, answers an :class:`~cryptolink.ratelimit.pool.Attempt`."""


class LineFull(CryptolinkError):
    """The line already holds ``max_waiters`` waiters: the request was refused at once (nothing taken)."""


@dataclass(order=True, slots=True)
class _Entry:
    priority: int
    seq: int
    wake: asyncio.Event = field(compare=False, default_factory=asyncio.Event)


class WaitLine:
    """See the module docstring.

    Args:
        clock: the clock waits are slept on.
        max_waiters: bound of the line (>= 1); one more raises :class:`LineFull`.
        max_sleep_s: longest single sleep of the head before it tries again, s (> 0).

    Raises:
        ValueError: a bound out of range.
    """

    def __init__(self, clock: Clock, *, max_waiters: int = 10_000, max_sleep_s: float = 5.0) -> None:
        if max_waiters < 1 or not max_sleep_s > 0:
            raise ValueError("need max_waiters >= 1 and max_sleep_s > 0")
        self._clock = clock
        self._max_waiters = max_waiters
        self._max_sleep_s = max_sleep_s
        self._heap: list[_Entry] = []
        self._seq = itertools.count()
        self._busy = False
        self.attempts = 0
        """Tries made by heads of this line."""
        self.timeouts = 0
        """Waiters that gave up at their deadline (nothing taken)."""
        self.rejected = 0
        """Waiters refused because the line was full."""

    @property
    def waiting(self) -> int:
        """Waiters in the line now (the head included)."""
        return len(self._heap)

    async def run(
        self, costs: dict[str, int], attempt: AttemptFn, *, priority: int = 0, timeout_s: float | None = None
    ) -> Grant:
        """Wait in line, then try ``attempt`` as the head until it grants.

        Args:
            costs: validated costs, passed to ``attempt`` unchanged.
            attempt: the store's try.
            priority: lower is served first.
            timeout_s: give up after this long on the line's clock, s (``None``: wait for ever). The head makes
                at least one try, even with ``timeout_s <= 0``.

        Raises:
            TimeoutError: the deadline passed first; nothing was taken.
            LineFull: the line holds ``max_waiters`` already.
            Exception: whatever ``attempt`` raises (the waiter leaves the line).
        """
        if len(self._heap) >= self._max_waiters:
            self.rejected += 1
            raise LineFull(f"{len(self._heap)} requests are already waiting for the rate limiter")
        entry = _Entry(priority, next(self._seq))
        heapq.heappush(self._heap, entry)  # a new head tries at once; an old head need not be woken
        deadline = None if timeout_s is None else self._clock.monotonic() + timeout_s
        tried = False
        try:
            while True:
                entry.wake.clear()
                delay: float | None = None
                if self._heap[0] is entry and not self._busy:
                    result = await self._try(costs, attempt)
                    tried = True
                    if result.grant is not None:
                        return result.grant
                    if self._heap[0] is entry:
                        delay = min(result.wait_us / 1_000_000, self._max_sleep_s)
                    else:
                        self._wake_head()  # someone better arrived while we were trying
                if deadline is not None and (tried or self._heap[0] is not entry):
                    remaining = deadline - self._clock.monotonic()
                    if remaining <= 0:
                        self.timeouts += 1
                        raise TimeoutError(f"no room in the rate limit within {timeout_s:g} s")
                    delay = remaining if delay is None else min(delay, remaining)
                await self._park(entry, delay)
        finally:
            self._remove(entry)

    async def _try(self, costs: dict[str, int], attempt: AttemptFn) -> Attempt:
        self._busy = True
        self.attempts += 1
        try:
            return await attempt(costs)
        finally:
            self._busy = False

    def _wake_head(self) -> None:
        if self._heap:
            self._heap[0].wake.set()

    def _remove(self, entry: _Entry) -> None:
        for index, other in enumerate(self._heap):
            if other is entry:
                last = self._heap.pop()
                if index < len(self._heap):
                    self._heap[index] = last
                    heapq.heapify(self._heap)
                break
        self._wake_head()

    async def _park(self, entry: _Entry, delay: float | None) -> None:
        """Sleep until woken, or for ``delay`` s of the clock (``None``: only until woken)."""
        if delay is None:
            await entry.wake.wait()
            return
        if delay <= 0:
            await asyncio.sleep(0)
            return
        waker = asyncio.ensure_future(entry.wake.wait())
        sleeper = asyncio.ensure_future(self._clock.sleep(delay))
        try:
            await asyncio.wait((waker, sleeper), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (waker, sleeper):
                task.cancel()
            await asyncio.gather(waker, sleeper, return_exceptions=True)
