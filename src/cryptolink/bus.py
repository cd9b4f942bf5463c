"""Fan-out of normalized events to consumers, with bounded per-consumer queues.

Producers (feeds) call :meth:`Bus.publish` for every :class:`~cryptolink.models.Trade`,
:class:`~cryptolink.models.Ticker` and :class:`~cryptolink.models.BookUpdate`, and for engine events
(any other object, routed on channel :data:`EVENTS_CHANNEL`). Consumers are

- async iterators: ``sub = bus.subscribe(channel="trades", feed="binance")`` then ``async for ev in sub``;
  ``sub.close()`` ends the iteration;
- callbacks: ``bus.add_callback(fn, channel="book")``; ``fn`` may be sync (called inline by the publisher,
  so it must be quick) or async (run by its own task behind a bounded queue).

Routing is by ``(channel, feed, symbol)`` (``feed``: the configuration entry name every event carries, so two
entries of one exchange never mix); a filter left ``None`` matches anything (``channel=None``
includes engine events). Each event's consumer list is found with three dict lookups in a cache rebuilt
whenever consumers change; publishing allocates nothing beyond the queue append.

Blocking and overflow. Every queue is bounded (``maxsize`` events) and has an :class:`OverflowPolicy`:

============ ================================================== =====================================
policy       :meth:`Bus.publish` (sync, hot path, never waits)   :meth:`Bus.publish_wait` (async)
============ ================================================== =====================================
DROP_OLDEST  evict the oldest queued event, queue the new one    same
DROP_NEWEST  discard the new event                               same
BLOCK        discard the new event (a socket must never stall)   wait until the consumer has room
============ ================================================== =====================================

Every discarded event is counted per consumer (``dropped`` in :meth:`Bus.stats`). A callback that raises is
caught, counted (``errors``) and logged at most once per ``error_log_interval_s`` per consumer; the exception
never reaches the publisher. The bus is not thread-safe: use it from the event loop's thread.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

from cryptolink.clock import Clock, SystemClock
from cryptolink.errors import CryptolinkError
from cryptolink.models import Channel

__all__ = [
    "EVENTS_CHANNEL",
    "Bus",
    "BusStats",
    "CallbackHandle",
    "ConsumerStats",
    "OverflowPolicy",
    "Subscriber",
    "SubscriberClosed",
]

log = logging.getLogger(__name__)

EVENTS_CHANNEL = "events"
"""Channel of objects that are not market data (engine ``ConnectionEvent`` and the like)."""

_MAX_QUEUE = 10_000_000
_MAX_ROUTES = 100_000


class OverflowPolicy(StrEnum):
    """What a full consumer queue does with a new event (see the module docstring's table)."""

    DROP_OLDEST = "drop_oldest"
    """Evict the oldest queued event to make room for the new one (default)."""
    DROP_NEWEST = "drop_newest"
    """Discard the new event; what is queued stays."""
    BLOCK = "block"
    """:meth:`Bus.publish_wait` waits for room; :meth:`Bus.publish` discards the new event."""


class SubscriberClosed(CryptolinkError):
    """:meth:`Subscriber.get` was called on a closed subscriber with nothing left to deliver."""


@dataclass(frozen=True, slots=True)
class ConsumerStats:
    """Counters of one consumer at one instant.

    Attributes:
        consumer_id: unique within its bus.
        name: the name given at registration (default ``"<kind>-<id>"``).
        kind: ``"iterator"`` or ``"callback"``.
        channel, feed, symbol: the filter (``None`` = any).
        overflow: the queue's overflow policy.
        maxsize: queue bound, events (0 for sync callbacks, which have no queue).
        queued: events waiting now.
        delivered: events handed to the consumer (for callbacks: calls that returned normally).
        dropped: events discarded by the overflow policy.
        errors: callback calls that raised.
        closed: no more events will be accepted.
    """

    consumer_id: int
    name: str
    kind: Literal["iterator", "callback"]
    channel: str | None
    feed: str | None
    symbol: str | None
    overflow: OverflowPolicy
    maxsize: int
    queued: int
    delivered: int
    dropped: int
    errors: int
    closed: bool


@dataclass(frozen=True, slots=True)
class BusStats:
    """Immutable snapshot of a bus: ``published`` events in total, ``unrouted`` ones that matched no
    consumer, and every consumer's counters."""

    published: int
    unrouted: int
    consumers: tuple[ConsumerStats, ...]

    @property
    def dropped(self) -> int:
        """Events discarded by all consumers together."""
        return sum(c.dropped for c in self.consumers)

    @property
    def errors(self) -> int:
        """Callback exceptions by all consumers together."""
        return sum(c.errors for c in self.consumers)


def _norm(value: str | None, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} filter must be a non-empty string or None, got {value!r}")
    return str(value.value) if isinstance(value, Channel) else value


class _Consumer:
    """Base of every consumer: filter, counters, and the sync ``offer`` the publisher calls."""

    kind: Literal["iterator", "callback"] = "iterator"
    overflow: OverflowPolicy = OverflowPolicy.DROP_NEWEST
    maxsize: int = 0

    def __init__(
        self,
        bus: Bus,
        consumer_id: int,
        name: str | None,
        channel: str | None,
        feed: str | None,
        symbol: str | None,
    ) -> None:
        self._bus = bus
        self.consumer_id = consumer_id
        self.name = name or f"{self.kind}-{consumer_id}"
        self.channel = channel
        self.feed = feed
        self.symbol = symbol
        self.delivered = 0
        self.dropped = 0
        self.errors = 0
        self._closed = False

    @property
    def closed(self) -> bool:
        """No more events will be accepted."""
        return self._closed

    def matches(self, channel: str, feed: str, symbol: str) -> bool:
        return (
            (self.channel is None or self.channel == channel)
            and (self.feed is None or self.feed == feed)
            and (self.symbol is None or self.symbol == symbol)
        )

    def offer(self, event: object) -> None:
        raise NotImplementedError

    def is_full(self) -> bool:
        return False

    async def wait_for_room(self) -> None:
        return None

    def queued(self) -> int:
        return 0

    def end_input(self) -> None:
        self._closed = True

    def snapshot(self) -> ConsumerStats:
        return ConsumerStats(
            consumer_id=self.consumer_id,
            name=self.name,
            kind=self.kind,
            channel=self.channel,
            feed=self.feed,
            symbol=self.symbol,
            overflow=self.overflow,
            maxsize=self.maxsize,
            queued=self.queued(),
            delivered=self.delivered,
            dropped=self.dropped,
            errors=self.errors,
            closed=self._closed,
        )


class Subscriber(_Consumer):
    """An async iterator over the events matching a filter, fed through a bounded queue.

    Use ``async for event in sub`` or ``await sub.get()`` from one task at a time (one reader per
    subscriber; subscribe twice for two readers); also an async context manager that closes on exit.
    :meth:`close` ends the iteration at once (queued events are discarded); when the bus itself closes, queued
    events are still delivered, then the iteration ends.
    """

    def __init__(
        self,
        bus: Bus,
        consumer_id: int,
        name: str | None,
        channel: str | None,
        feed: str | None,
        symbol: str | None,
        maxsize: int,
        overflow: OverflowPolicy,
    ) -> None:
        super().__init__(bus, consumer_id, name, channel, feed, symbol)
        self.maxsize = maxsize
        self.overflow = overflow
        self._queue: deque[Any] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._room_waiters: deque[asyncio.Future[None]] = deque()

    # ---------------------------------------------------------------------------------------- producer side

    def offer(self, event: object) -> None:
        if self._closed:
            return
        queue = self._queue
        if len(queue) >= self.maxsize:
            self.dropped += 1
            if self.overflow is not OverflowPolicy.DROP_OLDEST:
                return
            queue.popleft()
        queue.append(event)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def is_full(self) -> bool:
        return len(self._queue) >= self.maxsize and not self._closed

    async def wait_for_room(self) -> None:
        while self.is_full():
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._room_waiters.append(fut)
            await fut

    def queued(self) -> int:
        return len(self._queue)

    # ---------------------------------------------------------------------------------------- consumer side

    def __aiter__(self) -> Subscriber:
        return self

    async def __anext__(self) -> Any:
        queue = self._queue
        while not queue:
            if self._closed:
                raise StopAsyncIteration
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiter = fut
            try:
                await fut
            finally:
                if self._waiter is fut:
                    self._waiter = None
        event = queue.popleft()
        self.delivered += 1
        if self._room_waiters:
            self._wake_room()
        return event

    async def get(self) -> Any:
        """The next event, waiting for one.

        Raises:
            SubscriberClosed: the subscriber is closed and nothing is left to deliver.
        """
        try:
            return await self.__anext__()
        except StopAsyncIteration:
            raise SubscriberClosed(self.name) from None

    def get_nowait(self) -> Any | None:
        """The next queued event, or ``None`` if the queue is empty."""
        if not self._queue:
            return None
        event = self._queue.popleft()
        self.delivered += 1
        if self._room_waiters:
            self._wake_room()
        return event

    def close(self) -> None:
        """Stop receiving: discard queued events, end any pending iteration, unregister. Idempotent."""
        self._queue.clear()
        self.end_input()
        self._bus._remove(self)

    def end_input(self) -> None:
        self._closed = True
        waiter = self._waiter
        self._waiter = None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        self._wake_room(all_waiters=True)

    def _wake_room(self, all_waiters: bool = False) -> None:
        while self._room_waiters:
            fut = self._room_waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                if not all_waiters:
                    return

    async def __aenter__(self) -> Subscriber:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class CallbackHandle:
    """Returned by :meth:`Bus.add_callback`; :meth:`close` unregisters the callback."""

    def __init__(self, consumer: _Consumer) -> None:
        self._consumer = consumer

    @property
    def consumer_id(self) -> int:
        return self._consumer.consumer_id

    def stats(self) -> ConsumerStats:
        """This callback's counters."""
        return self._consumer.snapshot()

    def close(self) -> None:
        """Unregister (an async callback's queued events are discarded and its task ends). Idempotent."""
        consumer = self._consumer
        if isinstance(consumer, _AsyncCallback):
            consumer.close()
        else:
            consumer.end_input()
            consumer._bus._remove(consumer)


class _SyncCallback(_Consumer):
    kind: Literal["iterator", "callback"] = "callback"

    def __init__(
        self,
        bus: Bus,
        consumer_id: int,
        name: str | None,
        channel: str | None,
        feed: str | None,
        symbol: str | None,
        fn: Callable[[Any], object],
    ) -> None:
        super().__init__(bus, consumer_id, name, channel, feed, symbol)
        self._fn = fn

    def offer(self, event: object) -> None:
        if self._closed:
            return
        try:
            self._fn(event)
        except Exception as exc:
            self.errors += 1
            self._bus._callback_failed(self, exc)
        else:
            self.delivered += 1


class _AsyncCallback(Subscriber):
    """An async callback: a :class:`Subscriber` drained by a task that awaits ``fn(event)`` for each event."""

    kind: Literal["iterator", "callback"] = "callback"

    def __init__(self, *args: Any, fn: Callable[[Any], Awaitable[object]]) -> None:
        super().__init__(*args)
        self._fn = fn
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.task is None and not self._closed:
            self.task = asyncio.get_running_loop().create_task(self._run(), name=f"bus-{self.name}")

    async def _run(self) -> None:
        fn = self._fn
        async for event in self:
            try:
                await fn(event)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.errors += 1
                self.delivered -= 1
                self._bus._callback_failed(self, exc)

    def close(self) -> None:
        super().close()
        if self.task is not None and not self.task.done():
            self.task.cancel()


_Routes = dict[str, dict[str, dict[str, tuple[_Consumer, ...]]]]


class Bus:
    """Routes events to consumers. See the module docstring for policies and guarantees.

    Args:
        default_maxsize: queue bound (events) for consumers that do not give one; 1..10_000_000.
        default_overflow: overflow policy for consumers that do not give one.
        clock: used only to rate-limit error logs; default :class:`~cryptolink.clock.SystemClock`.
        error_log_interval_s: at most one log line per consumer per this many seconds for failing callbacks.

    Raises:
        ValueError: a bound is out of range.
    """

    def __init__(
        self,
        *,
        default_maxsize: int = 10_000,
        default_overflow: OverflowPolicy | str = OverflowPolicy.DROP_OLDEST,
        clock: Clock | None = None,
        error_log_interval_s: float = 10.0,
    ) -> None:
        self._default_maxsize = _check_maxsize(default_maxsize)
        self._default_overflow = OverflowPolicy(default_overflow)
        self._clock: Clock = clock or SystemClock()
        self._error_log_interval_s = error_log_interval_s
        self._consumers: dict[int, _Consumer] = {}
        self._ids = itertools.count(1)
        self._routes: _Routes = {}
        self._route_count = 0
        self._published = 0
        self._unrouted = 0
        self._closed = False
        self._pending_starts: list[_AsyncCallback] = []
        self._last_error_log: dict[int, float] = {}
        self._suppressed: dict[int, int] = {}

    # ---------------------------------------------------------------------------------------- registration

    def subscribe(
        self,
        *,
        channel: Channel | str | None = None,
        feed: str | None = None,
        symbol: str | None = None,
        maxsize: int | None = None,
        overflow: OverflowPolicy | str | None = None,
        name: str | None = None,
    ) -> Subscriber:
        """Register an async iterator for events matching ``(channel, feed, symbol)``.

        Args:
            channel: ``"trades"``, ``"ticker"``, ``"book"``, :data:`EVENTS_CHANNEL` or ``None`` for all.
            feed: configuration entry name (``"binance-perp"``) or ``None`` for all.
            symbol: unified symbol (``"BTC/USDT"``) or ``None`` for all.
            maxsize: queue bound in events (default: the bus's).
            overflow: overflow policy (default: the bus's).
            name: shown in :meth:`stats`.

        Raises:
            RuntimeError: the bus is closed.
            ValueError: a bad filter or bound.
        """
        self._check_open()
        sub = Subscriber(
            self,
            next(self._ids),
            name,
            _norm(channel, "channel"),
            _norm(feed, "feed"),
            _norm(symbol, "symbol"),
            self._default_maxsize if maxsize is None else _check_maxsize(maxsize),
            self._default_overflow if overflow is None else OverflowPolicy(overflow),
        )
        self._add(sub)
        return sub

    def add_callback(
        self,
        fn: Callable[[Any], object] | Callable[[Any], Awaitable[object]],
        *,
        channel: Channel | str | None = None,
        feed: str | None = None,
        symbol: str | None = None,
        maxsize: int | None = None,
        overflow: OverflowPolicy | str | None = None,
        name: str | None = None,
    ) -> CallbackHandle:
        """Register ``fn(event)`` for events matching the filter (arguments as in :meth:`subscribe`).

        A sync ``fn`` runs inline in :meth:`publish` (no queue; ``maxsize``/``overflow`` are ignored)
        and must be quick. An ``async def`` ``fn`` gets a bounded queue and a task that awaits it for each
        event in order; the task starts now if an event loop is running, else at the first :meth:`publish`
        inside one.

        Raises:
            RuntimeError: the bus is closed.
            ValueError: a bad filter or bound.
            TypeError: ``fn`` is not callable.
        """
        self._check_open()
        if not callable(fn):
            raise TypeError(f"callback must be callable, got {type(fn).__name__}")
        ch, ex, sym = _norm(channel, "channel"), _norm(feed, "feed"), _norm(symbol, "symbol")
        cid = next(self._ids)
        consumer: _Consumer
        if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None)):  # noqa: B004
            acb = _AsyncCallback(
                self,
                cid,
                name,
                ch,
                ex,
                sym,
                self._default_maxsize if maxsize is None else _check_maxsize(maxsize),
                self._default_overflow if overflow is None else OverflowPolicy(overflow),
                fn=fn,  # type: ignore[arg-type]
            )
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                self._pending_starts.append(acb)
            else:
                acb.start()
            consumer = acb
        else:
            consumer = _SyncCallback(self, cid, name, ch, ex, sym, fn)
        self._add(consumer)
        return CallbackHandle(consumer)

    # ---------------------------------------------------------------------------------------- publishing

    def publish(self, event: object) -> None:
        """Hand ``event`` to every matching consumer without ever waiting. O(matching consumers).

        A full queue applies its overflow policy (``BLOCK`` queues discard the new event here). Call from the
        event loop's thread. After :meth:`close`, events are counted as unrouted and discarded.
        """
        for consumer in self._targets(event):
            consumer.offer(event)

    publish_nowait = publish
    """Alias of :meth:`publish`, for symmetry with :meth:`publish_wait`."""

    async def publish_wait(self, event: object) -> None:
        """Like :meth:`publish`, but first waits for room in every matching ``BLOCK`` consumer's queue.

        Consumers with a drop policy get the event immediately. Waiting ends early if that consumer closes.
        """
        for consumer in self._targets(event):
            if consumer.overflow is OverflowPolicy.BLOCK and consumer.is_full():
                await consumer.wait_for_room()
            consumer.offer(event)

    def _targets(self, event: object) -> tuple[_Consumer, ...]:
        """Count ``event`` as published and return its consumers (counted as unrouted when none)."""
        self._published += 1
        if self._pending_starts:
            self._start_pending()
        try:
            targets = self._routes[event.channel][event.feed][event.symbol]  # type: ignore[attr-defined]
        except (KeyError, AttributeError):
            targets = self._resolve(event)
        if not targets:
            self._unrouted += 1
        return targets

    # ---------------------------------------------------------------------------------------- lifecycle

    def stats(self) -> BusStats:
        """An immutable snapshot of the bus's and every consumer's counters."""
        return BusStats(
            published=self._published,
            unrouted=self._unrouted,
            consumers=tuple(c.snapshot() for c in self._consumers.values()),
        )

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Stop accepting events and consumers. Iterators deliver what is queued, then end; async callbacks
        drain their queues, then their tasks end (await :meth:`aclose` to wait for that). Idempotent."""
        if self._closed:
            return
        self._closed = True
        for consumer in list(self._consumers.values()):
            consumer.end_input()
        self._routes = {}
        self._route_count = 0

    async def aclose(self, timeout_s: float | None = 10.0) -> None:
        """:meth:`close`, then wait up to ``timeout_s`` seconds (``None``: no limit) for async callbacks to
        drain; tasks still running after that are cancelled."""
        self.close()
        tasks = [
            c.task for c in self._consumers.values() if isinstance(c, _AsyncCallback) and c.task is not None
        ]
        if not tasks:
            return
        _done, pending = await asyncio.wait(tasks, timeout=timeout_s)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)

    # ---------------------------------------------------------------------------------------- internals

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("bus is closed")

    def _add(self, consumer: _Consumer) -> None:
        self._consumers[consumer.consumer_id] = consumer
        self._routes = {}
        self._route_count = 0

    def _remove(self, consumer: _Consumer) -> None:
        if self._consumers.pop(consumer.consumer_id, None) is not None:
            self._routes = {}
            self._route_count = 0
            self._last_error_log.pop(consumer.consumer_id, None)
            self._suppressed.pop(consumer.consumer_id, None)
        if consumer in self._pending_starts:
            self._pending_starts.remove(consumer)

    def _resolve(self, event: object) -> tuple[_Consumer, ...]:
        channel = getattr(event, "channel", None)
        if not isinstance(channel, str):
            channel = EVENTS_CHANNEL
        feed = getattr(event, "feed", "")
        symbol = getattr(event, "symbol", "")
        feed = feed if isinstance(feed, str) else ""
        symbol = symbol if isinstance(symbol, str) else ""
        targets = tuple(
            c for c in self._consumers.values() if not c.closed and c.matches(channel, feed, symbol)
        )
        if self._closed:
            return targets
        if self._route_count >= _MAX_ROUTES:
            self._routes = {}
            self._route_count = 0
        self._routes.setdefault(channel, {}).setdefault(feed, {})[symbol] = targets
        self._route_count += 1
        return targets

    def _start_pending(self) -> None:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        pending, self._pending_starts = self._pending_starts, []
        for acb in pending:
            acb.start()

    def _callback_failed(self, consumer: _Consumer, exc: Exception) -> None:
        now = self._clock.monotonic()
        cid = consumer.consumer_id
        last = self._last_error_log.get(cid)
        if last is not None and now - last < self._error_log_interval_s:
            self._suppressed[cid] = self._suppressed.get(cid, 0) + 1
            return
        self._last_error_log[cid] = now
        suppressed = self._suppressed.pop(cid, 0)
        log.error(
            "bus consumer %s raised %s: %s (%d errors in total, %d not logged since the last report)",
            consumer.name,
            type(exc).__name__,
            exc,
            consumer.errors,
            suppressed,
            exc_info=(type(exc), exc, exc.__traceback__),
        )


def _check_maxsize(maxsize: int) -> int:
    if isinstance(maxsize, bool) or not isinstance(maxsize, int) or not 1 <= maxsize <= _MAX_QUEUE:
        raise ValueError(f"maxsize must be an int in 1..{_MAX_QUEUE}, got {maxsize!r}")
    return maxsize
