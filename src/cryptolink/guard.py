"""Trading guards: whether a bot trading on one symbol of one configuration entry may trade now.

>>> guard = manager.guard("okx", "BTC/USDT")
>>> guard.on_halt(cancel_open_orders)        # sync or async, called once per halt
>>> await guard.wait_safe(timeout=30.0)
>>> if guard.safe: place_order(...)

**The rule.** A guard is *safe* when, for every stream of the symbol it covers (every channel the entry
streams for it, or the ``channels`` asked for):

1. the entry is running and the stream is subscribed (not refused by the exchange);
2. the connection carrying it is ``connected`` (``connecting``, ``unstable``, ``reconnecting``, ``failed``
   and ``stopped`` are not safe);
3. a book stream's book is ``live`` (``empty``, ``syncing``, ``resyncing`` and ``failed`` are not);
4. the stream delivered market data on the current socket, and its data age is within its bound: the
   silence its data watchdog learned from the stream's own rhythm (:mod:`cryptolink.engine.watchdog`), or
   ``max_data_age_s`` when the guard was given one (a user bound replaces the learned one). A stream that has
   had no data since its socket opened (or since it was re-subscribed) is not fresh.

Freshness is judged only while the connection is ``connected``; otherwise the connection is the reason.

**When it is judged.** On connection events of the entry: the manager's event listener
(:meth:`GuardRegistry.on_event`) only marks the guards an event concerns (O(1) per event: a stream event marks
that symbol's guards, another event the guards on its connection, an event of a connection no guard sits on
every guard of the entry) and asks the event loop for one judgment of every marked guard (``call_soon``,
coalesced: however many events come in one loop step, each marked guard is judged once, in the next step,
never inside the connection's own event path). Also when :attr:`TradingGuard.safe`,
:meth:`TradingGuard.status` or :meth:`TradingGuard.wait_safe` is called, and by one task per manager
(:class:`GuardRegistry`) that wakes at the earliest moment a safe guard's freshest-to-expire stream passes its
bound, and at least every ``check_interval_s`` (book state changes and the first data after a reconnect are not
events). The task exists only while the manager runs and at least one guard is open.

**Transitions.** A guard starts halted (reason ``not checked yet``); each change of its verdict is one
:class:`GuardEvent`: ``halt`` (safe -> not safe) or ``resume`` (not safe -> safe, the first safe verdict
included). Each is logged once (halt WARNING, resume INFO; beyond :data:`LOUD_TRANSITIONS` a minute, at DEBUG;
when one judgment halts or resumes more than :data:`SUMMARY_OVER` guards, each at DEBUG and one summary line
per entry), counted, kept in a bounded history and handed to the callbacks registered with
:meth:`TradingGuard.on_halt` / :meth:`TradingGuard.on_resume`, in order, from the event loop (never from inside
a connection's own event path). A callback that raises is logged and counted (``callback_errors``) and the
others still run; an async callback runs as a task (at most ``MAX_RUNNING_CALLBACKS`` per guard at once; more
are dropped, logged and counted in ``callbacks_dropped``).

**Stopping.** :meth:`cryptolink.manager.ExchangeManager.stop` stops the guards first, while the connections are
still up: every safe guard halts with ``manager stopping``, waiting :meth:`TradingGuard.wait_safe` calls raise
:class:`GuardClosed`, and the async callbacks get :data:`STOP_GRACE_S` to finish (a callback may itself call
``manager.stop()``: it is never waited for nor cancelled by it). Afterwards the reason is ``manager stopped``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections import Counter, deque
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from cryptolink.clock import Clock
from cryptolink.engine import ConnectionEvent, ConnectionEventType, ConnectionState
from cryptolink.errors import CryptolinkError
from cryptolink.models import Channel, Subscription

if TYPE_CHECKING:
    from cryptolink.config import ExchangeConfig
    from cryptolink.feed import Feed

__all__ = [
    "CHECK_INTERVAL_S",
    "GuardCallback",
    "GuardClosed",
    "GuardEvent",
    "GuardKey",
    "GuardProbe",
    "GuardRegistry",
    "GuardStats",
    "GuardStatus",
    "StreamView",
    "TradingGuard",
    "Verdict",
    "check_selection",
    "decide",
    "feeds_probe",
    "stream_views",
]

log = logging.getLogger(__name__)

CHECK_INTERVAL_S = 0.25
"""Longest time between two checks of every guard while guards exist (s)."""
HISTORY_SIZE = 64
"""Halt/resume events kept per guard (the counters keep the full count)."""
MAX_GUARDS = 4096
"""Open guards per manager."""
MAX_RUNNING_CALLBACKS = 64
"""Async callbacks of one guard running at once; more are dropped and counted."""
MAX_OUTBOX = 64
"""Transitions of one guard waiting for their callbacks; more are dropped (oldest first) and counted."""
STOP_GRACE_S = 1.0
"""How long the manager's stop waits for running async callbacks (the halt of the stop included) (s)."""
LOUD_TRANSITIONS = 10
"""Transitions of one guard logged at WARNING (halt) / INFO (resume) per minute; more go to DEBUG (a flapping
guard does not flood the log; its events, counters and callbacks still see every transition)."""
SUMMARY_OVER = 10
"""Beyond this many halts (resumes) in one judgment of many guards, each is logged at DEBUG and one summary line
per entry says how many and why (``guard: 600 guards of okx halted: connection okx-ws-1 reconnecting``)."""
_WAKE_EPS_S = 0.001
"""The check task wakes this long after a freshness deadline (fresh means ``age <= bound``) (s)."""

_CHANNELS = (Channel.TRADES, Channel.TICKER, Channel.BOOK)
_CONNECTED = ConnectionState.CONNECTED

GuardCallback = Callable[["GuardEvent"], object]
"""``callback(event)``; may return an awaitable (an ``async def``), which then runs as a task."""


# ------------------------------------------------------------------------------------------------- records


class GuardClosed(CryptolinkError, RuntimeError):
    """:meth:`TradingGuard.wait_safe` on a guard that cannot become safe any more: it was closed, or its
    manager is stopping or stopped (raised at once, also to a call that was already waiting)."""


@dataclass(frozen=True, slots=True)
class GuardKey:
    """What a guard watches: entry ``name``, unified ``symbol``, the ``channels`` it covers (``None``: every
    channel the entry streams for the symbol) and the user bound on data age ``max_data_age_s`` (s; ``None``:
    each stream's learned bound)."""

    name: str
    symbol: str
    channels: frozenset[Channel] | None = None
    max_data_age_s: float | None = None


@dataclass(frozen=True, slots=True)
class StreamView:
    """What a guard reads about one stream at one instant (the input of :func:`decide`).

    Attributes:
        channel / symbol: the stream.
        connection_id / connection_state: the connection carrying it (``None``: none does).
        subscription: ``confirmed``, ``pending`` (asked, no answer yet), ``unsent`` (waiting for a socket),
            ``rejected`` or ``missing`` (not subscribed).
        data_age_s: seconds since its last market data on the current socket (``None``: none yet).
        threshold_s: the silence its watchdog allows now, learned from its rhythm (s; ``None``: not watched).
        book_state: the book's :class:`~cryptolink.book.orderbook.BookState` value for a book stream
            (``None``: no book).
    """

    channel: Channel
    symbol: str
    connection_id: str | None = None
    connection_state: ConnectionState | None = None
    subscription: str = "missing"
    data_age_s: float | None = None
    threshold_s: float | None = None
    book_state: str | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    """The result of :func:`decide`: ``safe``, the ``reasons`` it is not (empty when safe), and while safe
    ``fresh_for_s``: seconds until the first stream passes its bound if no data comes (``None``: not safe)."""

    safe: bool
    reasons: tuple[str, ...]
    fresh_for_s: float | None = None


@dataclass(frozen=True, slots=True)
class GuardEvent:
    """One transition of a guard.

    Attributes:
        kind: ``halt`` (safe -> not safe) or ``resume`` (not safe -> safe).
        name / symbol: the guard's entry and symbol.
        time_ns: wall time of the transition (epoch ns).
        reasons: why it halted (empty for a resume).
        previous_s: how long the previous state lasted (s).
    """

    kind: Literal["halt", "resume"]
    name: str
    symbol: str
    time_ns: int
    reasons: tuple[str, ...]
    previous_s: float


@dataclass(frozen=True, slots=True)
class GuardStatus:
    """One guard at one instant.

    Attributes:
        name / symbol: the guard's entry and symbol.
        safe: trading is safe now.
        reasons: why not (empty when safe), e.g. ``connection okx-ws-1 reconnecting``,
            ``book BTC/USDT resyncing``, ``trades BTC/USDT silent 12.3 s > 4.1 s learned bound``.
        since_ns: wall time (epoch ns) of the last transition (the guard's creation before any).
        halts / resumes: transitions so far.
        callback_errors: callbacks that raised; callbacks_dropped: callbacks not run (see the module docstring).
    """

    name: str
    symbol: str
    safe: bool
    reasons: tuple[str, ...]
    since_ns: int
    halts: int
    resumes: int
    callback_errors: int = 0
    callbacks_dropped: int = 0


@dataclass(frozen=True, slots=True)
class GuardStats:
    """Counters of a manager's guards: ``guards`` open, ``checks`` made, ``check_errors`` (a check that raised:
    a bug, logged with its traceback), ``halts``, ``resumes``, ``callback_errors``, ``callbacks_dropped`` over
    every guard ever opened; ``safe``: open guards whose last check said safe."""

    guards: int
    checks: int
    check_errors: int
    halts: int
    resumes: int
    callback_errors: int
    callbacks_dropped: int
    safe: int = 0


# ---------------------------------------------------------------------------------------------- the decision


def decide(
    streams: Sequence[StreamView], *, max_data_age_s: float | None = None, problem: str | None = None
) -> Verdict:
    """Judge ``streams`` by the rule of the module docstring.

    Args:
        streams: the streams the guard covers (an empty sequence is not safe).
        max_data_age_s: the user bound on data age (s), replacing each stream's learned ``threshold_s``.
        problem: a reason that holds before any stream is looked at (entry not running...).

    Returns:
        The verdict; reasons name each connection once.
    """
    reasons: list[str] = []
    if problem is not None:
        reasons.append(problem)
    elif not streams:
        reasons.append("no stream to judge")
    named: set[str] = set()
    fresh_for: float | None = None
    for s in streams:
        label = f"{s.channel.value} {s.symbol}"
        if s.connection_id is None or s.subscription == "missing":
            reasons.append(f"{label} not subscribed")
            continue
        if s.subscription == "rejected":
            reasons.append(f"{label} rejected by the exchange")
            continue
        connected = s.connection_state is _CONNECTED
        if not connected and s.connection_id not in named:
            named.add(s.connection_id)
            state = "unknown" if s.connection_state is None else s.connection_state.value
            reasons.append(f"connection {s.connection_id} {state}")
        if s.channel is Channel.BOOK and s.book_state != "live":
            reasons.append(f"book {s.symbol} {s.book_state or 'missing'}")
        if not connected:
            continue
        if s.data_age_s is None:
            reasons.append(f"{label} no data since the socket opened")
            continue
        bound = max_data_age_s if max_data_age_s is not None else s.threshold_s
        if bound is None:
            reasons.append(f"{label} not watched")
            continue
        if s.data_age_s > bound:
            kind = "bound" if max_data_age_s is not None else "learned bound"
            reasons.append(f"{label} silent {_seconds(s.data_age_s, bound)} {kind}")
            continue
        left = bound - s.data_age_s
        fresh_for = left if fresh_for is None else min(fresh_for, left)
    if reasons:
        return Verdict(False, tuple(reasons))
    return Verdict(True, (), fresh_for)


def _seconds(age: float, bound: float) -> str:
    """``"12.3 s > 4.1 s"``; with milliseconds when both round to the same tenth (``"2.501 s > 2.500 s"``)."""
    digits = 1 if f"{age:.1f}" != f"{bound:.1f}" else 3
    return f"{age:.{digits}f} s > {bound:.{digits}f} s"


# ---------------------------------------------------------------------------------------- reading the feeds


def stream_views(
    feed: Feed, symbol: str, channels: frozenset[Channel] | None, now: float
) -> tuple[StreamView, ...]:
    """The :class:`StreamView` of each stream of ``symbol`` in ``feed`` at ``now`` (monotonic s): every
    channel the feed streams for it, or exactly ``channels`` (one not streamed is ``missing``)."""
    out: list[StreamView] = []
    for channel in _CHANNELS:
        if channels is not None and channel not in channels:
            continue
        conn = feed.connection_of(channel, symbol)
        if conn is None:
            if channels is not None:
                out.append(StreamView(channel, symbol))
            continue
        status = conn.stream_status((channel, symbol), now)
        book_state: str | None = None
        if channel is Channel.BOOK:
            book = feed.book(symbol)
            book_state = None if book is None else book.state.value
        out.append(
            StreamView(
                channel,
                symbol,
                conn.conn_id,
                conn.state,
                "missing" if status is None else status.state,
                None if status is None else status.data_age_s,
                None if status is None else status.threshold_s,
                book_state,
            )
        )
    return tuple(out)


GuardProbe = Callable[[GuardKey, float], tuple[str | None, tuple[StreamView, ...]]]
"""``probe(key, now) -> (problem, streams)``: what a guard reads at ``now`` (monotonic s)."""


def feeds_probe(feeds: Mapping[str, Feed]) -> GuardProbe:
    """The probe reading the manager's running feeds by entry name (``feeds`` is read live, never copied)."""

    def probe(key: GuardKey, now: float) -> tuple[str | None, tuple[StreamView, ...]]:
        feed = feeds.get(key.name)
        if feed is None:
            return f"entry {key.name} not running", ()
        streams = stream_views(feed, key.symbol, key.channels, now)
        if not streams:
            return f"{key.symbol} not subscribed in {key.name}", ()
        return None, streams

    return probe


def check_selection(key: GuardKey, feed: Feed | None, entry: ExchangeConfig | None) -> None:
    """Refuse a guard for something the entry does not stream (its running subscriptions, else its config).

    Raises:
        KeyError: no running feed nor configured entry; the entry does not stream ``key.symbol``; or not every
            channel of ``key.channels``.
    """
    if feed is not None:
        subs: Iterable[Subscription] = feed.subscriptions
    elif entry is not None:
        subs = entry.subscriptions()
    else:
        raise KeyError(f"exchange entry {key.name!r} is neither running nor configured")
    symbols: set[str] = set()
    streamed: set[Channel] = set()
    for sub in subs:
        symbols.add(sub.symbol)
        if sub.symbol == key.symbol:
            streamed.add(sub.channel)
    if not streamed:
        listed = sorted(symbols)
        more = f" and {len(listed) - 20} more" if len(listed) > 20 else ""
        raise KeyError(f"entry {key.name!r} does not stream {key.symbol!r}; its symbols: {listed[:20]}{more}")
    missing = sorted(c.value for c in (key.channels or frozenset()) - streamed)
    if missing:
        raise KeyError(
            f"entry {key.name!r} does not stream {', '.join(missing)} for {key.symbol!r}; "
            f"it streams {sorted(c.value for c in streamed)}"
        )


# ----------------------------------------------------------------------------------------------- plumbing


class _Soon:
    """Calls ``fn()`` once from the running event loop soon after :meth:`request`; the requests made before it
    ran are one call. A pending call belongs to the loop it was asked on: a request on another loop (a manager
    reused under a second ``asyncio.run``) schedules anew there."""

    __slots__ = ("_fn", "_handle", "_loop")

    def __init__(self, fn: Callable[[], None]) -> None:
        self._fn = fn
        self._handle: asyncio.Handle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def request(self) -> bool:
        """Schedule the call unless it is pending; ``False``: no running event loop (nothing scheduled)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return False
        if self._handle is not None and self._loop is loop:
            return True
        self._loop = loop
        self._handle = loop.call_soon(self._run)
        return True

    def cancel(self) -> None:
        """Forget a pending call."""
        if self._handle is not None:
            self._handle.cancel()
        self._handle = self._loop = None

    def _run(self) -> None:
        self._handle = self._loop = None
        self._fn()


class _LogBudget:
    """The first :data:`LOUD_TRANSITIONS` lines of each minute are loud (WARNING/INFO); the rest go to DEBUG."""

    __slots__ = ("_count", "_window")

    def __init__(self, now: float) -> None:
        self._window = now  # start of the current minute (monotonic s)
        self._count = 0

    def take(self, now: float) -> tuple[bool, bool]:
        """``(loud, exhausted_now)``: whether this line is loud, and whether it is the first quiet one of its
        minute (the moment to say so once)."""
        if now - self._window >= 60.0:
            self._window = now
            self._count = 0
        self._count += 1
        return self._count <= LOUD_TRANSITIONS, self._count == LOUD_TRANSITIONS + 1


# -------------------------------------------------------------------------------------------------- a guard


class TradingGuard:
    """Whether trading ``key.symbol`` on entry ``key.name`` is safe now, with halt and resume events; see the
    module docstring. Made by :meth:`cryptolink.manager.ExchangeManager.guard` (one per key, cached).

    Args:
        key: what it watches.
        registry: the manager's registry (checks, the clock, the check task).
        history: halt/resume events kept.
    """

    def __init__(self, key: GuardKey, registry: GuardRegistry, *, history: int = HISTORY_SIZE) -> None:
        self.key = key
        self.name = key.name
        self.symbol = key.symbol
        self._registry = registry
        self._clock = registry.clock
        self._safe = False
        self._reasons: tuple[str, ...] = ("not checked yet",)
        self._since_ns = self._clock.time_ns()
        self._since = self._clock.monotonic()
        self._fresh_until: float | None = None
        self._conns: frozenset[str] = frozenset()  # connection ids its streams sat on at the last check
        self._history: deque[GuardEvent] = deque(maxlen=history)
        self._halt_cbs: list[GuardCallback] = []
        self._resume_cbs: list[GuardCallback] = []
        self._outbox: deque[GuardEvent] = deque()
        self._drain_soon = _Soon(self._drain)
        self._budget = _LogBudget(self._since)
        self._tasks: set[asyncio.Future[Any]] = set()
        self._waiters: set[asyncio.Future[None]] = set()  # wait_safe calls, each on its own loop
        self.closed = False
        self.halts = 0
        """Safe -> not safe transitions."""
        self.resumes = 0
        """Not safe -> safe transitions (the first safe verdict included)."""
        self.callback_errors = 0
        """Callbacks (sync, or async tasks) that raised."""
        self.callbacks_dropped = 0
        """Callbacks not run: too many async ones running, no event loop for an async one, or a backlog of
        transitions beyond :data:`MAX_OUTBOX`."""

    # ------------------------------------------------------------------------------------------------ reading

    @property
    def safe(self) -> bool:
        """Whether trading is safe now (judged now; a change is reported as a transition)."""
        return self.check().safe

    def status(self) -> GuardStatus:
        """The guard now (judged now, like :attr:`safe`)."""
        self.check()
        return self.last_status()

    def last_status(self) -> GuardStatus:
        """The guard as of its last check (no new check)."""
        return GuardStatus(
            name=self.name,
            symbol=self.symbol,
            safe=self._safe,
            reasons=self._reasons,
            since_ns=self._since_ns,
            halts=self.halts,
            resumes=self.resumes,
            callback_errors=self.callback_errors,
            callbacks_dropped=self.callbacks_dropped,
        )

    def events(self) -> list[GuardEvent]:
        """The last :data:`HISTORY_SIZE` halt/resume events, oldest first."""
        return list(self._history)

    def check(self) -> Verdict:
        """Judge now and record a transition if the verdict changed (its callbacks run soon after, from the
        event loop)."""
        return self._registry.check(self, self._clock.monotonic())

    async def wait_safe(self, timeout: float | None = None) -> None:  # noqa: ASYNC109 (the asked-for API)
        """Return once the guard is safe (at once if it is now). A guard made before the manager starts waits
        for the start.

        Raises:
            TimeoutError: not safe within ``timeout`` seconds (``None``: wait as long as it takes).
            GuardClosed: the guard is closed or its manager is stopping or stopped: it cannot become safe. A
                call already waiting when that happens raises at once.
        """
        if self.check().safe:
            return
        ended = self._ended()
        if ended is not None:
            raise GuardClosed(ended)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        try:
            await asyncio.wait_for(waiter, timeout)
        finally:
            self._waiters.discard(waiter)

    def _ended(self) -> str | None:
        """Why the guard cannot become safe any more (``None``: it can)."""
        if self.closed:
            return f"guard {self.name} {self.symbol} is closed"
        if self._registry.stopping:
            return f"guard {self.name} {self.symbol}: the manager is stopping or stopped"
        return None

    def _wake_waiters(self, error: str | None = None) -> None:
        """Return from every :meth:`wait_safe` waiting now, or make them raise :class:`GuardClosed` (``error``)."""
        waiters = tuple(self._waiters)
        self._waiters.clear()
        for waiter in waiters:
            if waiter.done():
                continue
            try:
                if error is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(GuardClosed(error))
            except RuntimeError:  # its event loop is closed: nobody waits there any more
                continue

    # -------------------------------------------------------------------------------------------- callbacks

    def on_halt(self, callback: GuardCallback) -> GuardCallback:
        """Call ``callback(event)`` on every halt (usable as a decorator; returns ``callback``)."""
        self._halt_cbs.append(callback)
        return callback

    def on_resume(self, callback: GuardCallback) -> GuardCallback:
        """Call ``callback(event)`` on every resume (usable as a decorator; returns ``callback``)."""
        self._resume_cbs.append(callback)
        return callback

    def remove_callback(self, callback: GuardCallback) -> None:
        """Stop calling ``callback`` for halts and resumes (unknown ones are ignored)."""
        for cbs in (self._halt_cbs, self._resume_cbs):
            while callback in cbs:
                cbs.remove(callback)

    def close(self) -> None:
        """Stop watching: the guard is not safe from now on (a safe guard halts with ``guard closed``), a
        :meth:`wait_safe` waiting now raises :class:`GuardClosed`, and
        :meth:`~cryptolink.manager.ExchangeManager.guard` makes a new one for its key."""
        if self.closed:
            return
        self.closed = True
        self._record(Verdict(False, ("guard closed",)), self._clock.monotonic(), inline=False)
        self._wake_waiters(self._ended())
        self._registry.discard(self)

    # ------------------------------------------------------------------------------------------ transitions

    def _record(self, verdict: Verdict, now: float, *, inline: bool) -> None:
        """Keep ``verdict`` (judged at ``now``); a change of safety becomes a :class:`GuardEvent`, handed to the
        registry (logged, then to the callbacks). ``inline``: run the callbacks in this step (the check task, a
        judgment of marked guards, stop) instead of from the event loop soon after."""
        self._reasons = verdict.reasons
        self._fresh_until = None if verdict.fresh_for_s is None else now + verdict.fresh_for_s
        if verdict.safe == self._safe:
            return
        self._safe = verdict.safe
        previous_s = now - self._since
        self._since = now
        self._since_ns = self._clock.time_ns()
        kind: Literal["halt", "resume"] = "resume" if verdict.safe else "halt"
        event = GuardEvent(kind, self.name, self.symbol, self._since_ns, verdict.reasons, previous_s)
        self._history.append(event)
        if verdict.safe:
            self.resumes += 1
            self._registry.resumes += 1
            self._wake_waiters()
        else:
            self.halts += 1
            self._registry.halts += 1
        if len(self._outbox) >= MAX_OUTBOX:
            self._outbox.popleft()
            self._dropped()
            log.warning(
                "guard %s %s: callback backlog full; oldest transition dropped", self.name, self.symbol
            )
        self._outbox.append(event)
        self._registry._transition(self, event, now, inline=inline)

    def _log(self, event: GuardEvent, now: float, *, quiet: bool = False) -> None:
        """Log ``event``: loud within this guard's budget (see :data:`LOUD_TRANSITIONS`), DEBUG beyond it or
        when ``quiet`` (a registry summary line speaks for it)."""
        loud = False
        if not quiet:
            loud, exhausted = self._budget.take(now)
            if exhausted:
                log.warning(
                    "guard %s %s: flapping: more than %d transitions within a minute; the next ones this "
                    "minute are logged at DEBUG (counted in halts/resumes)",
                    self.name,
                    self.symbol,
                    LOUD_TRANSITIONS,
                )
        if event.kind == "resume":
            log.log(
                logging.INFO if loud else logging.DEBUG,
                "guard %s %s: RESUME (not safe for %.1f s)",
                self.name,
                self.symbol,
                event.previous_s,
            )
        else:
            log.log(
                logging.WARNING if loud else logging.DEBUG,
                "guard %s %s: HALT: %s",
                self.name,
                self.symbol,
                "; ".join(event.reasons),
            )

    def _deliver(self, *, inline: bool) -> None:
        """Hand the waiting transitions to the callbacks: now (``inline``) or from the event loop soon after."""
        if inline or not self._drain_soon.request():  # no event loop: the sync callbacks run now
            self._drain()

    def _failed(self) -> None:
        self.callback_errors += 1
        self._registry.callback_errors += 1

    def _dropped(self) -> None:
        self.callbacks_dropped += 1
        self._registry.callbacks_dropped += 1

    def _drain(self) -> None:
        self._drain_soon.cancel()
        while self._outbox:
            event = self._outbox.popleft()
            for cb in tuple(self._resume_cbs if event.kind == "resume" else self._halt_cbs):
                try:
                    result = cb(event)
                except Exception:
                    self._failed()
                    log.exception("guard %s %s: %s callback failed", self.name, self.symbol, event.kind)
                    continue
                if inspect.isawaitable(result):
                    self._spawn(result, event)

    def _spawn(self, result: Any, event: GuardEvent) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is None or len(self._tasks) >= MAX_RUNNING_CALLBACKS:
            if inspect.iscoroutine(result):
                result.close()
            self._dropped()
            log.warning(
                "guard %s %s: %s callback dropped (%s)",
                self.name,
                self.symbol,
                event.kind,
                "no event loop" if loop is None else f"{MAX_RUNNING_CALLBACKS} still running",
            )
            return
        task = asyncio.ensure_future(result)
        self._tasks.add(task)
        task.add_done_callback(self._callback_done)

    def _callback_done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            self._failed()
            log.error("guard %s %s: async callback failed", self.name, self.symbol, exc_info=exc)


# ------------------------------------------------------------------------------------------ the registry


_Phase = Literal["not started", "running", "stopping", "stopped"]
_ConnKey = tuple[str, str]
"""(entry name, connection id)."""


class GuardRegistry:
    """A manager's guards, the marking of the ones a connection event concerns, and the one task that checks
    them all (see the module docstring).

    Args:
        clock: the manager's clock (monotonic s for data ages and deadlines, wall ns for event times).
        probe: reads a guard's streams (:func:`feeds_probe` over the manager's feeds).
        check_interval_s: longest time between two checks while guards exist (s, > 0).
        max_guards: open guards allowed.

    Raises:
        ValueError: ``check_interval_s`` is not positive.
    """

    def __init__(
        self,
        clock: Clock,
        probe: GuardProbe,
        *,
        check_interval_s: float = CHECK_INTERVAL_S,
        max_guards: int = MAX_GUARDS,
    ) -> None:
        if not check_interval_s > 0:
            raise ValueError(f"check_interval_s must be > 0, got {check_interval_s}")
        self.clock = clock
        self._probe = probe
        self.check_interval_s = check_interval_s
        self._max_guards = max_guards
        self._guards: dict[GuardKey, TradingGuard] = {}
        self._by_name: dict[str, dict[TradingGuard, None]] = {}
        self._by_symbol: dict[tuple[str, str], dict[TradingGuard, None]] = {}
        self._by_conn: dict[_ConnKey, dict[TradingGuard, None]] = {}
        # what connection events marked since the last judgment of marked guards (see on_event)
        self._dirty_names: set[str] = set()
        self._dirty_conns: set[_ConnKey] = set()
        self._dirty_symbols: set[tuple[str, str]] = set()
        self._ended: set[_ConnKey] = set()
        self._judge_soon = _Soon(self._judge_marked)
        self._batch: list[tuple[TradingGuard, GuardEvent]] | None = None
        self._budgets: dict[tuple[str, str], _LogBudget] = {}  # (entry, kind) -> its summary lines' budget
        self._task: asyncio.Task[None] | None = None
        self._stoppers: set[asyncio.Task[Any]] = set()  # tasks inside stop() now (callbacks among them)
        self._wake: asyncio.Event | None = None  # made with the check task, on its event loop
        self._planned: float | None = None  # when the check task wakes next (monotonic s)
        self._phase: _Phase = "not started"
        self.checks = 0
        """Guard judgments made (one guard judged once is one)."""
        self.check_errors = 0
        self.halts = self.resumes = self.callback_errors = self.callbacks_dropped = 0
        """Totals over every guard ever opened (each guard counts into these as it counts its own)."""

    # ------------------------------------------------------------------------------------------------ guards

    def get(self, key: GuardKey) -> TradingGuard:
        """The open guard of ``key``, made (and checked once) if there is none.

        Raises:
            RuntimeError: :data:`MAX_GUARDS` guards are open already.
        """
        guard = self._guards.get(key)
        if guard is not None:
            return guard
        if len(self._guards) >= self._max_guards:
            raise RuntimeError(f"{self._max_guards} trading guards are open already; close some first")
        guard = TradingGuard(key, self)
        self._guards[key] = guard
        self._by_name.setdefault(key.name, {})[guard] = None
        self._by_symbol.setdefault((key.name, key.symbol), {})[guard] = None
        self.check(guard, self.clock.monotonic())
        self._ensure_task()
        return guard

    def discard(self, guard: TradingGuard) -> None:
        """Forget ``guard`` (its ``close``); the check task ends with the last open guard."""
        if self._guards.get(guard.key) is not guard:
            return
        del self._guards[guard.key]
        _unindex(self._by_name, guard.name, guard)
        _unindex(self._by_symbol, (guard.name, guard.symbol), guard)
        for conn in guard._conns:
            _unindex(self._by_conn, (guard.name, conn), guard)
        guard._conns = frozenset()
        if self._wake is not None:
            self._wake.set()

    @property
    def guards(self) -> list[TradingGuard]:
        """The open guards."""
        return list(self._guards.values())

    @property
    def task_running(self) -> bool:
        """Whether the check task exists (only while started with at least one open guard)."""
        return self._task is not None and not self._task.done()

    @property
    def stopping(self) -> bool:
        """Whether the manager is stopping or stopped (no guard can become safe until it starts again)."""
        return self._phase in ("stopping", "stopped")

    def stats(self) -> GuardStats:
        """Counters of every guard (closed ones included)."""
        return GuardStats(
            guards=len(self._guards),
            checks=self.checks,
            check_errors=self.check_errors,
            halts=self.halts,
            resumes=self.resumes,
            callback_errors=self.callback_errors,
            callbacks_dropped=self.callbacks_dropped,
            safe=sum(1 for g in self._guards.values() if g.last_status().safe),
        )

    # --------------------------------------------------------------------------------------------- checking

    def check(
        self,
        guard: TradingGuard,
        now: float,
        *,
        inline: bool = False,
        ended: Collection[_ConnKey] = (),
    ) -> Verdict:
        """Judge ``guard`` at ``now`` (monotonic s) and record the verdict. ``ended``: ``(entry, connection id)``
        of connections whose session just ended (a ``disconnected`` event comes before the connection's move
        to ``reconnecting``): they count as ``disconnected``."""
        if guard.closed:
            return Verdict(False, guard.last_status().reasons)
        self.checks += 1
        if self._phase != "running":
            problem: str | None = f"manager {self._phase}"
            streams: tuple[StreamView, ...] = ()
        else:
            problem, streams = self._probe(guard.key, now)
            if ended:
                streams = tuple(
                    replace(s, connection_state=ConnectionState.DISCONNECTED)
                    if s.connection_state is _CONNECTED and (guard.name, s.connection_id) in ended
                    else s
                    for s in streams
                )
        self._index(guard, streams)
        verdict = decide(streams, max_data_age_s=guard.key.max_data_age_s, problem=problem)
        guard._record(verdict, now, inline=inline)
        planned = self._planned
        if (
            verdict.fresh_for_s is not None
            and planned is not None
            and now + verdict.fresh_for_s + _WAKE_EPS_S < planned
            and self._wake is not None
        ):
            self._wake.set()  # this guard may flip before the check task would look again
        return verdict

    def check_all(self, now: float, *, inline: bool = True) -> float | None:
        """Judge every open guard at ``now``; return the earliest moment a safe one may flip (monotonic s).
        A check that raises is logged and counted (``check_errors``), the others still run."""
        return self._judge(list(self._guards.values()), now, inline=inline)

    def on_event(self, event: ConnectionEvent) -> None:
        """The manager's connection event listener. Costs O(1) whatever the number of guards: it marks the
        guards the event may concern and asks for one judgment of every marked guard from the event loop
        (:meth:`_judge_marked`, once per loop step however many events came).

        Marked: a stream event (one naming a symbol: stale or rejected subscription) marks that symbol's guards
        of the entry; another event marks the guards whose streams sat on its connection at their last check,
        or every guard of the entry when none did (a new connection). Sampled ``data_received`` and quality
        events change no verdict and mark nothing."""
        if self._phase != "running" or event.type in _NO_VERDICT_EVENTS:
            return
        name = event.feed
        if name not in self._by_name:
            return
        conn: _ConnKey = (name, event.connection_id)
        if event.type is ConnectionEventType.DISCONNECTED:
            self._ended.add(conn)
        elif event.type is ConnectionEventType.STATE_CHANGED:
            self._ended.discard(conn)  # its state says it from now on
        if event.symbol is not None:
            self._dirty_symbols.add((name, event.symbol))
        elif conn in self._by_conn:
            self._dirty_conns.add(conn)
        else:
            self._dirty_names.add(name)
        if not self._judge_soon.request():
            self._judge_marked()  # no event loop: judge now

    def _judge_marked(self) -> None:
        """Judge each guard marked by :meth:`on_event` since the last call once, running their callbacks."""
        names, conns, symbols, ended = self._dirty_names, self._dirty_conns, self._dirty_symbols, self._ended
        self._dirty_names, self._dirty_conns, self._dirty_symbols, self._ended = set(), set(), set(), set()
        if self._phase != "running":
            return
        marked: dict[TradingGuard, None] = {}
        for name in names:
            marked.update(self._by_name.get(name, {}))
        for index, keys in ((self._by_conn, conns), (self._by_symbol, symbols)):
            for key in keys:
                if key[0] not in names:
                    marked.update(index.get(key, {}))
        if marked:
            self._judge(list(marked), self.clock.monotonic(), inline=True, ended=ended)

    def _judge(
        self,
        guards: Sequence[TradingGuard],
        now: float,
        *,
        inline: bool,
        ended: Collection[_ConnKey] = (),
    ) -> float | None:
        """Judge ``guards`` as one batch: their transitions are logged together (one summary line per entry
        beyond :data:`SUMMARY_OVER`), then handed to their callbacks. Returns the earliest moment a safe one
        may flip (monotonic s)."""
        outer, self._batch = self._batch, []
        earliest: float | None = None
        try:
            for guard in guards:
                try:
                    self.check(guard, now, ended=ended)
                except Exception:
                    self.check_errors += 1
                    log.exception("trading guard %s %s: check failed", guard.name, guard.symbol)
                    continue
                until = guard._fresh_until
                if until is not None and (earliest is None or until < earliest):
                    earliest = until
        finally:
            batch, self._batch = self._batch, outer
            self._log_batch(batch, now)
            for guard in dict.fromkeys(g for g, _ in batch):
                guard._deliver(inline=inline)
        return earliest

    def _transition(self, guard: TradingGuard, event: GuardEvent, now: float, *, inline: bool) -> None:
        """A guard changed: log it and hand it to its callbacks, or keep it for the end of the batch."""
        if self._batch is not None:
            self._batch.append((guard, event))
            return
        guard._log(event, now)
        guard._deliver(inline=inline)

    def _log_batch(self, batch: list[tuple[TradingGuard, GuardEvent]], now: float) -> None:
        """Each transition on its own line, or, beyond :data:`SUMMARY_OVER` halts (resumes) in the batch, each
        at DEBUG and one summary line per entry (within a per-entry budget, like a guard's)."""
        for kind in ("halt", "resume"):
            of_kind = [(g, e) for g, e in batch if e.kind == kind]
            if len(of_kind) <= SUMMARY_OVER:
                for guard, event in of_kind:
                    guard._log(event, now)
                continue
            by_name: dict[str, list[GuardEvent]] = {}
            for guard, event in of_kind:
                guard._log(event, now, quiet=True)
                by_name.setdefault(guard.name, []).append(event)
            for name, events in by_name.items():
                budget = self._budgets.setdefault((name, kind), _LogBudget(now))
                loud, _ = budget.take(now)
                if kind == "resume":
                    log.log(
                        logging.INFO if loud else logging.DEBUG,
                        "guard: %d guards of %s resumed",
                        len(events),
                        name,
                    )
                else:
                    log.log(
                        logging.WARNING if loud else logging.DEBUG,
                        "guard: %d guards of %s halted: %s",
                        len(events),
                        name,
                        _common_reasons(events),
                    )

    def _index(self, guard: TradingGuard, streams: Sequence[StreamView]) -> None:
        """Keep ``guard`` listed under the connections its streams sit on now."""
        conns = frozenset(s.connection_id for s in streams if s.connection_id is not None)
        if conns == guard._conns or guard.closed:
            return
        for conn in guard._conns - conns:
            _unindex(self._by_conn, (guard.name, conn), guard)
        for conn in conns - guard._conns:
            self._by_conn.setdefault((guard.name, conn), {})[guard] = None
        guard._conns = conns

    # -------------------------------------------------------------------------------------------- lifecycle

    def start(self) -> None:
        """The manager started: judge the feeds from now on; the check task runs while guards exist."""
        self._phase = "running"
        self._ensure_task()

    async def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """The manager stops (before it stops its feeds): end the check task, halt every safe guard
        (``manager stopping``), make every :meth:`TradingGuard.wait_safe` raise :class:`GuardClosed`, run the
        callbacks and wait up to ``grace_s`` (clock s) for the async ones; those still running are cancelled
        (logged). Safe to call from a callback (it never waits for nor cancels the task calling it). Then the
        guards' reason is ``manager stopped``."""
        self._phase = "stopping"
        self._judge_soon.cancel()
        self._dirty_names.clear()
        self._dirty_conns.clear()
        self._dirty_symbols.clear()
        self._ended.clear()
        current = asyncio.current_task()
        if current is not None:
            self._stoppers.add(current)
        try:
            task, self._task = self._task, None
            if task is not None and task is not current:
                task.cancel()
                await asyncio.wait({task})  # our own cancellation still propagates
            self._planned = None
            self.check_all(self.clock.monotonic(), inline=True)
            for guard in self._guards.values():
                guard._wake_waiters(guard._ended())
            pending = {t for g in self._guards.values() for t in g._tasks}
            await self._wait_callbacks(pending, grace_s)
        finally:
            if current is not None:
                self._stoppers.discard(current)
        self._phase = "stopped"

    async def _wait_callbacks(self, pending: set[asyncio.Future[Any]], grace_s: float) -> None:
        """Wait up to ``grace_s`` for ``pending`` callback tasks, never for one that is itself stopping (this
        call's own task, or another callback's that called stop too: each would wait for the other), then
        cancel those left."""
        pending = {t for t in pending if not t.done() and t not in self._stoppers}
        if not pending:
            return
        sleeper = asyncio.ensure_future(self.clock.sleep(grace_s))
        try:
            while pending and not sleeper.done():
                await asyncio.wait({*pending, sleeper}, return_when=asyncio.FIRST_COMPLETED)
                pending = {t for t in pending if not t.done() and t not in self._stoppers}
        finally:
            sleeper.cancel()
        if pending:
            log.warning(
                "%d trading guard callbacks still running after %.1f s; cancelled", len(pending), grace_s
            )
            for t in pending:
                t.cancel()

    def _ensure_task(self) -> None:
        if self._phase != "running" or not self._guards:
            return
        if self._task is not None and not self._task.done():
            return
        self._wake = asyncio.Event()  # on the loop of the task (a manager may run under several loops)
        self._task = asyncio.get_running_loop().create_task(self._run(self._wake), name="trading-guards")

    async def _run(self, wake: asyncio.Event) -> None:
        """Check every guard, then sleep until the earliest freshness deadline (at most ``check_interval_s``)
        or until woken; ends when the last guard is closed."""
        clock = self.clock
        try:
            while self._phase == "running" and self._guards:
                now = clock.monotonic()
                earliest = self.check_all(now)
                delay = self.check_interval_s
                if earliest is not None:
                    delay = min(delay, max(earliest - now, 0.0) + _WAKE_EPS_S)
                self._planned = now + delay
                await self._sleep_or_wake(wake, delay)
        finally:
            self._planned = None
            if self._task is asyncio.current_task():
                self._task = None

    async def _sleep_or_wake(self, wake: asyncio.Event, delay: float) -> None:
        wake.clear()
        sleeper = asyncio.ensure_future(self.clock.sleep(delay))
        waker = asyncio.ensure_future(wake.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waker.cancel()


_NO_VERDICT_EVENTS = frozenset(
    {
        ConnectionEventType.DATA_RECEIVED,
        ConnectionEventType.QUALITY_DEGRADED,
        ConnectionEventType.QUALITY_IMPROVED,
    }
)
"""Connection events that change no guard's verdict (a state change caused by them has its own event)."""


def _unindex(index: dict[Any, dict[TradingGuard, None]], key: Any, guard: TradingGuard) -> None:
    same = index.get(key)
    if same is None:
        return
    same.pop(guard, None)
    if not same:
        del index[key]


def _common_reasons(events: Sequence[GuardEvent], shown: int = 3) -> str:
    """The most frequent reasons of ``events``, each with its count unless every event has it:
    ``"connection okx-ws-1 reconnecting"``, ``"connection okx-ws-1 reconnecting (300); ... (2 more reasons)"``."""
    counts = Counter(r for e in events for r in dict.fromkeys(e.reasons))
    top = counts.most_common(shown)
    parts = [r if n == len(events) else f"{r} ({n})" for r, n in top]
    if len(counts) > shown:
        parts.append(f"{len(counts) - shown} more reasons")
    return "; ".join(parts) or "no reason given"
