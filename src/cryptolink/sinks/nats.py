"""The NATS JetStream sink: every normalized event published to a JetStream stream, nothing lost silently.

Wire format (:mod:`cryptolink.sinks.nats_subjects`): subject ``<subject_root>.<channel>.<exchange>.<symbol
token>``; payload ``msgspec.json.encode(event)``, exactly a JSONL line of :class:`~cryptolink.sinks.jsonl.JsonlSink`
without its newline (``Decimal`` values as JSON strings); header ``Nats-Msg-Id`` with the event's deterministic id
(when it has one), so JetStream keeps one copy of an event however many collectors publish it within the stream's
duplicate window (https://docs.nats.io/using-nats/developer/develop_jetstream/model_deep_dive#message-deduplication).
Only the channels of ``nats.channels`` are published (``trades``, ``ticker``, ``book``, ``gaps``).

**Never blocking the engine.** :meth:`NatsSink.write` is a synchronous bus callback: it encodes the event and
appends it to a bounded buffer (``buffer_max_events``); it never awaits and never raises into the bus. A full
buffer loses the NEW event (cause ``overflow``): counted, logged at ERROR (at most once per 10 s, with running
totals) and remembered per stream ``(feed, exchange, symbol, channel)`` for a gap event.

**Publishing** (:meth:`NatsSink.run`). Each message is sent with ``nc.publish`` and a reply subject of our own
(``<inbox>.<token>``) on which JetStream answers with its publish acknowledgement
(https://docs.nats.io/reference/jetstream/api/stream/pub-ack: ``{"stream", "seq", "duplicate"}`` or
``{"error": {"code", "err_code", "description"}}``; a ``503`` status header means no stream captured the subject,
https://docs.nats.io/nats-concepts/core-nats/reqreply#no-responders). At most ``max_pending_acks`` messages await
their acknowledgement at once; nothing waits for one acknowledgement before sending the next message. (nats-py's
``publish_async`` is not used: in nats-py 2.16 its future never completes when JetStream answers with an error,
so a message too large would only ever time out.) Each acknowledgement is checked:

- ok: delivered (``acked``); ``duplicate: true`` is counted in ``duplicates``: the stream already held that id
  (another publisher stored it, or an earlier send of ours whose acknowledgement was lost);
- JetStream error ``10054`` "message size exceeds maximum allowed" (https://docs.nats.io/reference/jetstream/errors):
  lost for good (cause ``rejected``), logged; a message larger than the server's ``max_payload`` or than
  ``stream.max_msg_size`` is refused before it is sent, with the same cause;
- any other error, no responders, no acknowledgement within ``ack_timeout_s``, or the link dropping while it was
  in flight: sent again with the same id (a copy the server did store is then dropped as a duplicate). Messages to
  send again go before every newer message, in their original order (after a refusal they back off first:
  :data:`RETRY_BASE_S` doubling per send, at most ``ack_timeout_s``). After ``max_attempts`` sends a message is
  lost (cause ``attempts``). When NATS answered nothing at all since a timed-out message was sent (a frozen or
overloaded server, a leader election, while the link still looks up), the timeouts spend no attempt: the messages
wait ``ack_timeout_s`` and go first once it answers, as after a lost link.

Order is kept except in two cases the sink cannot see into: a message whose acknowledgement timed out while newer
ones were stored, and, when the link drops, the few messages nats-py had queued but not yet written (it writes
them first when the link returns, before the sink's re-sends). In both cases a book that had such a delta gets a
fresh snapshot before its next delta (origin ``after_loss``), so a consumer resumes there.

**NATS outages.** nats-py reconnects on its own (``max_reconnect_attempts=-1``). While the link is down nothing is
handed to nats-py (its own pending buffer stays empty); events wait in ours up to its bound, later ones are lost
(cause ``overflow``). For every stream that lost events, the sink publishes a :class:`~cryptolink.models.Gap`
(cause ``publish``; ``from_ms``: exchange time of the stream's last event accepted before the loss, or the lost
event's own time for a loss after sending; ``to_ms``: exchange time of the first event accepted after it; receipt
times where the exchange sends none; ``detail``: how many and why) just before that first event, so the gap sits
exactly where the loss is in the stream. A loss still open at :meth:`NatsSink.aclose` gets its gap then (``to_ms``
``None``). A book stream that lost events also gets a fresh snapshot of the live book before its next delta (see
below), so a consumer can resume.

**Books from the stream alone.** Engine snapshots (first sync, every resync) and deltas are published as they
come. With ``snapshot_interval_s`` > 0 and a ``book_source``, the sink also publishes a snapshot of each live book
after the first delta that arrives once the interval has passed: the full book (every level, best first, exact
``Decimal`` s) taken from ``book_source(feed, symbol)``, only when the book is LIVE and stands exactly at that
delta's sequence (otherwise it tries again at the next delta). Snapshots are counted by origin (``engine``,
``periodic``, ``after_loss``: after a loss or a possibly out-of-order re-send).

**Bounds.** The buffer holds at most ``buffer_max_events`` messages waiting (plus at most 2 made by the sink: a gap
and a snapshot written with the event that ends a loss); at most ``max_pending_acks`` more are in flight.

Closing (:meth:`NatsSink.aclose`): later events are lost (cause ``closed``); what is held gets
``max(ack_timeout_s, 2)`` seconds to be acknowledged, the rest is counted lost (``closed``); then the connection is
closed. Error texts, logs and the report never hold a password, token or credentials.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from cryptolink.book.orderbook import BookState, OrderBook
from cryptolink.bus import Bus, CallbackHandle
from cryptolink.clock import Clock, SystemClock
from cryptolink.config import NatsConfig
from cryptolink.errors import NatsError
from cryptolink.models import GAPS_CHANNEL, BookUpdate, Channel, Gap, GapCause, Ticker, Trade
from cryptolink.redact import redact_url, scrub
from cryptolink.report import Section
from cryptolink.sinks.base import SinkHealth
from cryptolink.sinks.nats_credentials import NatsCredentials
from cryptolink.sinks.nats_streams import EnsureResult, ensure_stream
from cryptolink.sinks.nats_subjects import message_id, subject

__all__ = [
    "LOSS_CAUSES",
    "MSG_ID_HEADER",
    "RETRY_BASE_S",
    "SNAPSHOT_ORIGINS",
    "BookSource",
    "NatsError",
    "NatsEvent",
    "NatsSink",
    "NatsSinkStats",
    "nats_section",
]

log = logging.getLogger(__name__)

NatsEvent = Trade | Ticker | BookUpdate | Gap
"""What the sink publishes."""

BookSource = Callable[[str, str], OrderBook | None]
"""``(feed, symbol) -> the engine's live book`` (``None`` or ``KeyError``: none)."""

LOSS_CAUSES = ("overflow", "attempts", "rejected", "closed")
"""Why an event was lost: buffer full; not acknowledged after ``max_attempts`` sends; refused for good (too
large, or not encodable); the sink was closing."""

SNAPSHOT_ORIGINS = ("engine", "periodic", "after_loss")
"""Book snapshots published: the engine's (sync, resync), the sink's periodic ones, the sink's after a loss."""

MSG_ID_HEADER = "Nats-Msg-Id"
RETRY_BASE_S = 0.05
"""First back-off of a re-send after a refusal, seconds (doubling per send, at most ``ack_timeout_s``)."""
_STATUS_HEADER = "Status"
_NO_RESPONDERS = "503"
# JetStream errors that a re-send cannot cure (https://docs.nats.io/reference/jetstream/errors):
# 10054 JSStreamMessageExceedsMaximumErr "message size exceeds maximum allowed"
_REFUSED_FOR_GOOD = frozenset({10054})
_HEADER_OVERHEAD = 32  # "NATS/1.0\r\n" + "Nats-Msg-Id: " + "\r\n\r\n", bytes: counted against max_msg_size
_LOG_INTERVAL_S = 10.0
_MAX_SUBJECTS = 100_000
_DERIVED = frozenset({"gap", "periodic", "after_loss"})

_StreamKey = tuple[str, str, str, str]
"""``(feed, exchange, symbol, channel)`` of a stream; ``channel`` is the market-data channel (a Gap event counts
for the stream it describes)."""


@dataclass(frozen=True, slots=True)
class NatsSinkStats:
    """Counters of a :class:`NatsSink` at one instant (events = messages).

    Attributes:
        accepted: bus events taken into the buffer.
        published: sends handed to NATS (first sends and re-sends, gaps and snapshots of the sink included).
        acked: messages acknowledged by JetStream (stored, or already stored: ``duplicates``).
        duplicates: acknowledgements marked duplicate: the stream already held that ``Nats-Msg-Id``.
        retries: re-sends (a failed or unacknowledged send sent again with the same id).
        lost: messages that will never be published, all causes (``sum(lost_by_cause.values())``).
        lost_by_cause: ``overflow``, ``attempts``, ``rejected``, ``closed`` (see :data:`LOSS_CAUSES`).
        buffered: messages waiting to be sent (including those waiting to be sent again).
        in_flight: messages sent and awaiting their acknowledgement.
        max_buffered / max_in_flight: the most seen at once.
        connected: the connection to NATS is up now.
        disconnects / reconnects: link losses and recoveries since start.
        gaps_published: gap events (cause ``publish``) made by the sink and acknowledged.
        snapshots_published: acknowledged book snapshots by origin (:data:`SNAPSHOT_ORIGINS`).
        open_losses: streams that lost events whose gap event is not made yet.
        ignored: events of channels not in ``nats.channels`` (not published by configuration, not a loss).
        last_error: the last failure (no secret in it), ``None``: none yet.
        server: the server connected to now or last, ``scheme://host:port`` without credentials (``None``: never
            connected); ``connected`` says whether the link is up.
        stream: what the start-time stream check found: ``created``, ``matches``, ``unchecked``, or ``None`` (not
            checked yet, or it failed: see ``last_error``).
        closed: :meth:`NatsSink.aclose` ran (the link is closed on purpose).
        late_sends: events sent more than ``stream.duplicate_window_s`` after they were accepted, each counted
            once however many times it is sent (it waited out a long outage): if a copy was stored before (an earlier send of ours whose acknowledgement was
            lost, or another collector's), JetStream no longer recognizes this one, and the stream may hold the
            event twice (readers drop repeated trade ids and book sequences).
    """

    accepted: int
    published: int
    acked: int
    duplicates: int
    retries: int
    lost: int
    lost_by_cause: dict[str, int]
    buffered: int
    in_flight: int
    max_buffered: int
    max_in_flight: int
    connected: bool
    disconnects: int
    reconnects: int
    gaps_published: int
    snapshots_published: dict[str, int]
    open_losses: int
    ignored: int
    last_error: str | None
    server: str | None
    stream: str | None = None
    closed: bool = False
    late_sends: int = 0


class _Out:
    """One message to publish (and, until it is acknowledged or lost, everything needed to send it again)."""

    __slots__ = (
        "accepted_at",
        "attempts",
        "deadline",
        "event_ms",
        "headers",
        "key",
        "late",
        "loss",
        "not_before",
        "origin",
        "payload",
        "seq",
        "subject",
        "xsym",
    )

    def __init__(
        self,
        seq: int,
        subject: str,
        payload: bytes,
        headers: dict[str, str] | None,
        key: _StreamKey,
        xsym: str,
        event_ms: int | None,
        origin: str,
        loss: _Loss | None,
    ) -> None:
        self.seq = seq
        self.subject = subject
        self.payload = payload
        self.headers = headers
        self.key = key
        self.xsym = xsym
        self.event_ms = event_ms
        self.origin = origin  # "event", "engine" (bus snapshot), "gap", "periodic", "after_loss" (made here)
        self.loss = loss  # the loss a "gap" message reports (restored if the gap itself is lost)
        self.attempts = 0
        self.deadline = 0.0
        self.not_before = 0.0  # monotonic time before which a re-send waits (back-off after a refusal)
        self.accepted_at = (
            0.0  # when the sink took it (monotonic): the duplicate window counts from about then
        )
        self.late = False  # counted in late_sends already

    def __lt__(self, other: _Out) -> bool:
        return self.seq < other.seq


@dataclass(slots=True)
class _Loss:
    """Events one stream lost since its last accepted event."""

    xsym: str
    from_ms: int | None
    unreachable: bool
    count: int = 0
    causes: Counter[str] = field(default_factory=Counter)

    def detail(self, max_attempts: int) -> str:
        reasons = {
            "overflow": "buffer full" + (" while NATS was unreachable" if self.unreachable else ""),
            "attempts": f"not acknowledged after {max_attempts} sends",
            "rejected": "refused (too large or not encodable)",
        }
        parts = [(reasons.get(c, c), n) for c, n in self.causes.most_common()]
        if len(parts) == 1:
            return f"{self.count} events not published: {parts[0][0]}"
        return f"{self.count} events not published: " + ", ".join(f"{n} {r}" for r, n in parts)


def _event_ms(event: NatsEvent) -> int | None:
    if isinstance(event, Gap):
        return event.from_ms
    if event.timestamp_ms is not None:
        return event.timestamp_ms
    return event.receipt_ns // 1_000_000


class NatsSink:
    """Publishes normalized events to NATS JetStream (see the module docstring for the guarantees).

    Args:
        config: the ``nats:`` section (servers, credentials, stream, window, buffer, timeouts, snapshots).
        clock: ack timeouts, snapshot intervals, log rate limits and gap receipt times (default: system clock).
        book_source: ``(feed, symbol) -> OrderBook | None``, the engine's live books (the service passes
            ``manager.book``; ``KeyError`` counts as ``None``). Without it the sink publishes no snapshot of its own.
        instance: this process's name in the NATS connection name (``cryptolink-<instance>``) and in logs.

    Use: ``await sink.start()``; ``sink.attach(bus)``; run :meth:`run` as a task; end with :meth:`aclose`.
    Everything runs on the event loop's thread.
    """

    def __init__(
        self,
        config: NatsConfig,
        *,
        clock: Clock | None = None,
        book_source: BookSource | None = None,
        instance: str = "",
    ) -> None:
        self._config = config
        self._clock: Clock = clock or SystemClock()
        self._book_source = book_source
        self._name = f"cryptolink-{instance}" if instance else "cryptolink"
        self._channels = frozenset(config.channels)
        self._window = config.max_pending_acks
        self._max_buffer = config.buffer_max_events
        self._ack_timeout_s = config.ack_timeout_s
        self._max_attempts = config.max_attempts
        self._snapshot_interval_s = config.snapshot_interval_s
        self._dup_window_s = config.stream.duplicate_window_s
        self._late_sends = 0
        self._max_msg_size = config.stream.max_msg_size if config.streams != "off" else 64 * 1024 * 1024
        self._credentials = NatsCredentials.from_config(config)
        self._secrets = self._credentials.secrets(config.servers)
        self._encode = msgspec.json.Encoder().encode
        self._decode_ack = msgspec.json.Decoder(dict[str, Any]).decode
        # buffers
        self._buffer: deque[_Out] = deque()
        self._retry: list[_Out] = []  # heap by seq: sent before anything in _buffer
        self._inflight: dict[int, _Out] = {}  # token -> message, in send order (so oldest deadline first)
        self._seq = itertools.count()
        self._tokens = itertools.count(1)
        # per stream / per book state
        self._subjects: dict[tuple[str, str, str], str] = {}
        self._last_ms: dict[_StreamKey, int | None] = {}
        self._losses: dict[_StreamKey, _Loss] = {}
        self._needs_snapshot: set[tuple[str, str]] = set()
        self._snapshot_due: dict[tuple[str, str], float] = {}
        # counters
        self._accepted = 0
        self._published = 0
        self._acked = 0
        self._duplicates = 0
        self._retries = 0
        self._lost: Counter[str] = Counter({c: 0 for c in LOSS_CAUSES})
        self._max_buffered = 0
        self._max_in_flight = 0
        self._disconnects = 0
        self._reconnects = 0
        self._gaps_published = 0
        self._snapshots: Counter[str] = Counter({o: 0 for o in SNAPSHOT_ORIGINS})
        self._ignored = 0
        self._last_error: str | None = None
        self._stream_state: EnsureResult | None = None
        self._last_loss_log: float | None = None
        self._last_error_log: float | None = None
        # connection and tasks
        self._nc: Client | None = None
        self._inbox = ""
        self._last_server: str | None = None
        self._connected = False
        self._link_up = asyncio.Event()
        self._link_down = asyncio.Event()
        self._link_down.set()
        self._wake_timer: asyncio.Task[None] | None = None
        self._wake_at = 0.0
        self._started = False
        self._running = False
        self._closed = False
        self._closing_link = False
        self._connect_task: asyncio.Task[None] | None = None
        self._later_task: asyncio.Task[None] | None = None
        self._connect_errors = 0
        self._first_round_failed = asyncio.Event()
        self._wake = asyncio.Event()
        self._inflight_added = asyncio.Event()
        self._last_answer: float | None = None  # monotonic time of the last answer JetStream gave (any)
        self._unanswered = 0
        self._idle = asyncio.Event()
        self._idle.set()

    # ---------------------------------------------------------------------------------------- life cycle

    async def start(self) -> None:
        """Connect to NATS and check (or create) the stream. Call once before :meth:`run`; later calls do
        nothing.

        With ``require_at_start`` (default) no server answering (every server of ``servers`` tried once) raises;
        without it that is logged, the sink keeps connecting in the background and buffers events meanwhile (a
        stream problem found when it finally connects is logged, and it publishes anyway). A stream problem
        found at start always raises.

        Raises:
            NatsError: no server accepted the connection (``require_at_start`` only; the message names the
                servers without credentials and the last error), or :func:`ensure_stream` refused the stream.
        """
        if self._started:
            return
        self._started = True
        nc = self._nc = Client()
        task = self._connect_task = asyncio.create_task(
            nc.connect(**self._connect_options()), name="nats-connect"
        )
        failed = asyncio.create_task(self._first_round_failed.wait())
        try:
            await asyncio.wait({task, failed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            failed.cancel()
        where = ", ".join(redact_url(s) for s in self._config.servers)
        if task.done() and not task.cancelled() and task.exception() is None:
            await self._on_first_connect(strict=True)
            return
        reason = self._last_error or "no answer"
        if task.done() and not task.cancelled() and (exc := task.exception()) is not None:
            reason = self._scrub(f"{type(exc).__name__}: {exc}")
        if self._config.require_at_start:
            await self._close_link()
            raise NatsError(f"cannot connect to NATS at {where}: {reason}")
        log.error(
            "NATS at %s does not answer (%s); the sink keeps trying and buffers up to %d events meanwhile",
            where,
            reason,
            self._max_buffer,
        )
        self._later_task = asyncio.create_task(self._connect_later(), name="nats-connect-later")

    async def run(self) -> None:
        """The publisher: sends buffered messages within the window and re-sends what failed, until cancelled.

        Raises:
            RuntimeError: :meth:`start` was not awaited first, or :meth:`run` is already running.
        """
        if not self._started:
            raise RuntimeError("NatsSink.start() must be awaited before run()")
        if self._running:
            raise RuntimeError("NatsSink.run() is already running")
        self._running = True
        try:
            # one failing cancels the other (never a half-running sink); its own exception is raised, not a group
            try:
                async with asyncio.TaskGroup() as tasks:
                    tasks.create_task(self._publisher(), name="nats-publisher")
                    tasks.create_task(self._expirer(), name="nats-expirer")
            except* Exception as group:
                raise group.exceptions[0] from None
        finally:
            self._running = False

    async def aclose(self) -> None:
        """Stop accepting (later events are lost, cause ``closed``), publish the gaps of losses still open,
        wait at most ``max(ack_timeout_s, 2)`` seconds for everything held to be acknowledged, count the rest
        lost (``closed``) and close the connection. Idempotent; never raises for NATS trouble (logged)."""
        if self._closed:
            return
        self._closed = True
        for key, loss in list(self._losses.items()):
            del self._losses[key]
            self._emit_gap(key, loss, None)
        helpers: list[asyncio.Task[None]] = []
        if not self._running and self._nc is not None:
            helpers = [asyncio.create_task(self._publisher()), asyncio.create_task(self._expirer())]
        self._wake.set()
        try:
            await self.flush(max(self._ack_timeout_s, 2.0))
        finally:
            for t in helpers:
                t.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
        rest = [*self._inflight.values(), *self._retry, *self._buffer]
        self._inflight.clear()
        self._retry.clear()
        self._buffer.clear()
        if rest:
            self._lost["closed"] += len(rest)
            self._last_error = f"{len(rest)} messages not acknowledged at close"
        self._check_idle()
        if self._wake_timer is not None:
            self._wake_timer.cancel()
            await asyncio.gather(self._wake_timer, return_exceptions=True)
        await self._close_link()
        st = self.stats()
        if st.lost:
            log.error(
                "NATS sink closed: %d acknowledged, %d LOST (%s); last error: %s",
                st.acked,
                st.lost,
                _causes(st.lost_by_cause),
                st.last_error,
            )
        else:
            log.info("NATS sink closed: %d acknowledged (%d duplicates), none lost", st.acked, st.duplicates)

    async def flush(self, timeout_s: float | None = None) -> bool:
        """Wait until every message accepted so far is acknowledged or counted lost (needs :meth:`run`
        running). Returns ``False`` if ``timeout_s`` seconds (of the sink's clock) passed first."""
        if self._idle.is_set():
            return True
        waiter = asyncio.create_task(self._idle.wait())
        tasks: set[asyncio.Task[Any]] = {waiter}
        if timeout_s is not None:
            tasks.add(asyncio.create_task(self._clock.sleep(timeout_s)))
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return self._idle.is_set()

    async def wait_link(self, up: bool = True) -> None:
        """Wait until the link to NATS is up (``up=True``) or down (``False``, also before the first connect)."""
        await (self._link_up if up else self._link_down).wait()

    # ---------------------------------------------------------------------------------------- bus side

    def attach(self, bus: Bus, *, feed: str | None = None, symbol: str | None = None) -> list[CallbackHandle]:
        """Register :meth:`write` as a sync callback for every channel of ``nats.channels`` on ``bus``
        (optionally one feed / symbol only). Returns the handles; close them to detach."""
        return [
            bus.add_callback(self.write, channel=ch, feed=feed, symbol=symbol, name=f"nats-{ch}")
            for ch in self._config.channels
        ]

    def write(self, event: NatsEvent) -> None:
        """Take one event: encode it and append it to the buffer (no I/O, never waits, never raises).

        An event of a channel not in ``nats.channels`` is ignored (counted in ``ignored``); a full buffer, a
        closed sink or an event that cannot be encoded or is too large loses the event (counted by cause)."""
        try:
            self._write(event)
        except Exception as exc:  # the bus must never see an exception from us
            self._lost["rejected"] += 1
            self._log_loss(f"{type(event).__name__} not publishable: {type(exc).__name__}: {exc}")

    __call__ = write

    def _write(self, event: NatsEvent) -> None:
        channel = event.channel
        if channel not in self._channels:
            self._ignored += 1
            return
        if isinstance(event, Gap):
            key: _StreamKey = (event.feed, event.exchange, event.symbol, str(event.stream))
        else:
            key = (event.feed, event.exchange, event.symbol, str(channel))
        ms = _event_ms(event)
        origin = "engine" if isinstance(event, BookUpdate) and event.is_snapshot else "event"
        if self._closed:
            self._lose(key, event.exchange_symbol, self._last_ms.get(key, ms), "closed", origin, None)
            return
        if len(self._buffer) + len(self._retry) >= self._max_buffer:
            self._lose(key, event.exchange_symbol, self._last_ms.get(key, ms), "overflow", origin, None)
            return
        out = self._message(event, key, ms, origin, None)
        if out is None:
            return
        self._accepted += 1
        if isinstance(event, Gap):  # a gap event does not end a loss of the stream it describes
            self._push(out)
            return
        loss = self._losses.pop(key, None)
        if loss is not None:
            self._emit_gap(key, loss, ms)
        if isinstance(event, BookUpdate):
            self._write_book(event, out)
        else:
            self._push(out)
        self._last_ms[key] = ms

    def _write_book(self, event: BookUpdate, out: _Out) -> None:
        book = (event.feed or event.exchange, event.symbol)
        interval = self._snapshot_interval_s
        now = self._clock.monotonic()
        if event.is_snapshot:
            self._needs_snapshot.discard(book)
            self._push(out)
            if interval:
                self._snapshot_due[book] = now + interval
            return
        if book in self._needs_snapshot:
            snap = self._snapshot_of(event)
            if snap is not None:
                self._needs_snapshot.discard(book)
                self._push_made(snap, out.key, "after_loss")
                if interval:
                    self._snapshot_due[book] = now + interval
        self._push(out)
        if not interval:
            return
        due = self._snapshot_due.get(book)
        if due is None:
            self._snapshot_due[book] = now + interval
        elif now >= due:
            snap = self._snapshot_of(event)
            if snap is not None:
                self._push_made(snap, out.key, "periodic")
                self._snapshot_due[book] = now + interval

    def _snapshot_of(self, delta: BookUpdate) -> BookUpdate | None:
        """A snapshot of the live book standing exactly at ``delta`` (``None``: no book, not live, elsewhere)."""
        source = self._book_source
        if source is None:
            return None
        try:
            book = source(delta.feed or delta.exchange, delta.symbol)
        except KeyError:
            return None
        except Exception as exc:
            self._note_error(
                f"book_source({delta.feed or delta.exchange!r}, {delta.symbol!r}) failed: {exc!r}"
            )
            return None
        if book is None or book.state is not BookState.LIVE or book.last_sequence != delta.sequence:
            return None
        bids, asks = book.top(max(book.depth))
        return BookUpdate(
            exchange=delta.exchange,
            symbol=delta.symbol,
            exchange_symbol=delta.exchange_symbol,
            is_snapshot=True,
            bids=bids,
            asks=asks,
            sequence=delta.sequence,
            timestamp_ms=delta.timestamp_ms,
            receipt_ns=delta.receipt_ns,
            feed=delta.feed,
            amount_unit=delta.amount_unit,
            contract_size=delta.contract_size,
            prev_sequence=None,
        )

    def _emit_gap(self, key: _StreamKey, loss: _Loss, to_ms: int | None) -> None:
        """Queue the gap event of ``loss`` (when the ``gaps`` channel is published)."""
        if GAPS_CHANNEL not in self._channels:
            return
        feed, exchange, symbol, channel = key
        gap = Gap(
            exchange=exchange,
            symbol=symbol,
            exchange_symbol=loss.xsym,
            stream=Channel(channel),
            cause=GapCause.PUBLISH,
            from_ms=loss.from_ms,
            to_ms=to_ms,
            receipt_ns=self._clock.time_ns(),
            feed=feed,
            detail=loss.detail(self._max_attempts),
        )
        self._push_made(gap, key, "gap", loss)

    def _push_made(
        self, event: Gap | BookUpdate, key: _StreamKey, origin: str, loss: _Loss | None = None
    ) -> None:
        """Queue a message the sink made itself (outside the buffer bound: at most 2 per accepted event)."""
        out = self._message(event, key, _event_ms(event), origin, loss)
        if out is not None:
            self._push(out)

    def _message(
        self, event: NatsEvent, key: _StreamKey, ms: int | None, origin: str, loss: _Loss | None
    ) -> _Out | None:
        """Encode ``event`` (``None``: it cannot be published; counted lost, cause ``rejected``)."""
        try:
            payload = self._encode(event)
            subj = self._subject_of(event)
            msg_id = message_id(event)
        except Exception as exc:
            self._lose(key, event.exchange_symbol, ms, "rejected", origin, loss, f"does not encode: {exc}")
            return None
        size = len(payload) + (len(msg_id) + _HEADER_OVERHEAD if msg_id is not None else 0)
        limit = self._max_msg_size
        if self._nc is not None and self._nc.max_payload:
            limit = min(limit, self._nc.max_payload)
        if size > limit:
            self._lose(
                key,
                event.exchange_symbol,
                ms,
                "rejected",
                origin,
                loss,
                f"{type(event).__name__} on {subj} is {size} bytes, above the limit of {limit} bytes",
            )
            return None
        headers = {MSG_ID_HEADER: msg_id} if msg_id is not None else None
        out = _Out(next(self._seq), subj, payload, headers, key, event.exchange_symbol, ms, origin, loss)
        out.accepted_at = self._clock.monotonic()
        return out

    def _subject_of(self, event: NatsEvent) -> str:
        k = (str(event.channel), event.exchange, event.symbol)
        s = self._subjects.get(k)
        if s is None:
            if len(self._subjects) >= _MAX_SUBJECTS:
                self._subjects.clear()
            s = self._subjects[k] = subject(event, root=self._config.subject_root)
        return s

    def _push(self, out: _Out) -> None:
        self._buffer.append(out)
        n = len(self._buffer) + len(self._retry)
        if n > self._max_buffered:
            self._max_buffered = n
        self._idle.clear()
        self._wake.set()

    # ---------------------------------------------------------------------------------------- losses

    def _lose(
        self,
        key: _StreamKey,
        xsym: str,
        from_ms: int | None,
        cause: str,
        origin: str,
        loss: _Loss | None,
        reason: str | None = None,
    ) -> None:
        """Count one lost message and remember it for the stream's gap event (not at close)."""
        self._lost[cause] += 1
        if reason is not None:
            self._last_error = self._scrub(reason)
        if cause != "closed":
            if origin == "gap" and loss is not None:
                self._restore_loss(key, loss)  # the gap itself is lost: report it with the next one
            elif origin in _DERIVED:
                if cause != "rejected":  # a snapshot too large would be too large again
                    self._needs_snapshot.add((key[0] or key[1], key[2]))
            else:
                self._mark_loss(key, xsym, from_ms, cause)
        self._log_loss(reason)
        self._check_idle()

    def _mark_loss(self, key: _StreamKey, xsym: str, from_ms: int | None, cause: str) -> None:
        rec = self._losses.get(key)
        if rec is None:
            rec = self._losses[key] = _Loss(xsym, from_ms, unreachable=not self._connected)
        elif from_ms is not None and (rec.from_ms is None or from_ms < rec.from_ms):
            rec.from_ms = from_ms
        rec.count += 1
        rec.causes[cause] += 1
        if key[3] == Channel.BOOK.value:
            self._needs_snapshot.add((key[0] or key[1], key[2]))

    def _restore_loss(self, key: _StreamKey, loss: _Loss) -> None:
        rec = self._losses.get(key)
        if rec is None:
            self._losses[key] = loss
            return
        rec.count += loss.count
        rec.causes.update(loss.causes)
        if loss.from_ms is not None and (rec.from_ms is None or loss.from_ms < rec.from_ms):
            rec.from_ms = loss.from_ms

    def _log_loss(self, reason: str | None) -> None:
        now = self._clock.monotonic()
        if self._last_loss_log is not None and now - self._last_loss_log < _LOG_INTERVAL_S:
            return
        self._last_loss_log = now
        log.error(
            "NATS sink: %d events lost so far (%s)%s; %d buffered (bound %d), NATS %s",
            sum(self._lost.values()),
            _causes(self._lost),
            f"; last: {self._scrub(reason)}" if reason else "",
            len(self._buffer) + len(self._retry),
            self._max_buffer,
            "connected" if self._connected else "NOT connected",
        )

    # ---------------------------------------------------------------------------------------- publishing

    async def _publisher(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._pump()

    async def _pump(self) -> None:
        """Send from the buffer while the link is up and the window has room (re-sends first, by age)."""
        nc = self._nc
        while (
            nc is not None
            and self._connected
            and nc.is_connected
            and len(self._inflight) < self._window
            and (self._retry or self._buffer)
        ):
            if self._retry:
                wait = self._retry[0].not_before - self._clock.monotonic()
                if wait > 0:  # the oldest re-send is backing off: everything newer waits behind it (order)
                    self._wake_later(wait)
                    return
                out = heapq.heappop(self._retry)
            else:
                out = self._buffer.popleft()
            await self._send(nc, out)

    def _wake_later(self, delay: float) -> None:
        """Wake the publisher in ``delay`` seconds (one timer: the earliest asked for wins)."""
        at = self._clock.monotonic() + delay
        timer = self._wake_timer
        if timer is not None and not timer.done():
            if self._wake_at <= at:
                return
            timer.cancel()
        self._wake_at = at
        self._wake_timer = asyncio.create_task(self._wake_after(delay))

    async def _wake_after(self, delay: float) -> None:
        await self._clock.sleep(delay)
        self._wake.set()

    async def _send(self, nc: Client, out: _Out) -> None:
        token = next(self._tokens)
        out.attempts += 1
        now = self._clock.monotonic()
        out.deadline = now + self._ack_timeout_s
        if not out.late and now - out.accepted_at > self._dup_window_s:
            out.late = True  # a copy stored earlier (ours, another collector's) is no longer recognized
            self._late_sends += 1
        self._inflight[token] = out  # before the await: an ack can only be matched to a message in flight
        n = len(self._inflight)
        if n > self._max_in_flight:
            self._max_in_flight = n
        if n == 1:
            self._inflight_added.set()
        try:
            await nc.publish(out.subject, out.payload, reply=f"{self._inbox}.{token}", headers=out.headers)
        except nats.errors.MaxPayloadError:
            if self._inflight.pop(token, None) is not None:
                self._lose_out(out, "rejected", f"{out.subject}: larger than the server's max_payload")
        except (
            nats.errors.OutboundBufferLimitError,
            nats.errors.ConnectionClosedError,
            nats.errors.ConnectionReconnectingError,
            nats.errors.ConnectionDrainingError,
        ) as exc:
            if self._inflight.pop(token, None) is not None:  # not sent at all: no attempt used
                out.attempts -= 1
                heapq.heappush(self._retry, out)
            self._note_error(f"publish not possible now: {type(exc).__name__}")
        except Exception as exc:
            if self._inflight.pop(token, None) is not None:
                self._fail(out, f"publish failed: {type(exc).__name__}: {exc}", back_off=True)
        else:
            self._published += 1
            if out.attempts > 1:
                self._retries += 1

    async def _on_ack(self, msg: Msg) -> None:
        """JetStream's answer to one send (see the module docstring)."""
        try:
            token = int(msg.subject.rpartition(".")[2])
        except ValueError:
            return
        self._last_answer = self._clock.monotonic()  # any answer, late ones included: the server responds
        out = self._inflight.pop(token, None)
        if out is None:
            return  # a late answer to a send that already timed out (its re-send will be acknowledged)
        headers = msg.headers
        if headers and headers.get(_STATUS_HEADER) == _NO_RESPONDERS:
            self._fail(out, f"no responders on {out.subject}: no stream captures it", back_off=True)
        else:
            try:
                resp = self._decode_ack(msg.data)
            except (msgspec.DecodeError, msgspec.ValidationError):
                resp = {"error": {"description": f"unreadable acknowledgement {msg.data[:80]!r}"}}
            error = resp.get("error")
            if error is not None:
                if not isinstance(error, dict):
                    error = {"description": str(error)}
                err_code = error.get("err_code")
                text = f"JetStream refused {out.subject}: {error.get('description')}"
                if err_code is not None:
                    text += f" (error {err_code})"
                if err_code in _REFUSED_FOR_GOOD:
                    self._lose_out(out, "rejected", text)
                else:
                    self._fail(out, text, back_off=True)
            else:
                self._acked += 1
                if resp.get("duplicate"):
                    self._duplicates += 1
                if out.origin == "gap":
                    self._gaps_published += 1
                elif out.origin in self._snapshots:
                    self._snapshots[out.origin] += 1
        self._check_idle()
        self._wake.set()

    def _fail(self, out: _Out, reason: str, *, back_off: bool = False) -> None:
        """One send of ``out`` failed: send it again, or lose it after ``max_attempts`` sends.

        ``back_off`` (the server answered with a refusal, or the send raised): the re-send waits
        ``RETRY_BASE_S * 2**(sends - 1)`` seconds, at most ``ack_timeout_s``, so that a stream briefly unavailable
        (no responders right after a server restart, a leader election) does not use up every attempt at once.
        A timeout or a lost link re-sends at once (the time has passed already, or the link is new).

        Whatever the failure, newer messages may be stored before this one's re-send lands (messages sent after it
        and acknowledged meanwhile, or the ones nats-py still held and writes first when the link returns): for a
        book message the book gets a fresh snapshot before its next delta, so a consumer that saw the deltas out
        of order resumes there."""
        self._note_error(reason)
        if out.key[3] == Channel.BOOK.value and out.origin not in _DERIVED:
            self._needs_snapshot.add((out.key[0] or out.key[1], out.key[2]))
        if out.attempts >= self._max_attempts:
            self._lose_out(out, "attempts", f"{reason} ({out.attempts} sends)")
            return
        if back_off:
            delay = min(RETRY_BASE_S * 2 ** (out.attempts - 1), self._ack_timeout_s)
            out.not_before = self._clock.monotonic() + delay
        heapq.heappush(self._retry, out)
        self._wake.set()

    def _lose_out(self, out: _Out, cause: str, reason: str) -> None:
        self._lose(out.key, out.xsym, out.event_ms, cause, out.origin, out.loss, reason)

    async def _expirer(self) -> None:
        """Fails every send not acknowledged within ``ack_timeout_s``."""
        while True:
            if not self._inflight:
                self._inflight_added.clear()
                await self._inflight_added.wait()
                continue
            head = next(iter(self._inflight.values()))
            delay = head.deadline - self._clock.monotonic()
            if delay > 0:
                await self._clock.sleep(delay)
                continue
            now = self._clock.monotonic()
            expired: list[_Out] = []
            for token, out in list(self._inflight.items()):
                if out.deadline > now:
                    break
                del self._inflight[token]
                expired.append(out)
            sent_at = expired[0].deadline - self._ack_timeout_s if expired else now
            if self._last_answer is None or self._last_answer < sent_at:
                # Nothing at all was answered since the oldest of them was sent: the server (or the path to
                # it) is not responding — frozen, overloaded, electing a leader — though the link looks up.
                # Like a lost link, this spends no attempt: they wait, back off, and go first when it answers.
                self._unanswered += len(expired)
                self._note_error(
                    f"NATS answered nothing for {now - sent_at:.1f} s: {len(expired)} messages held to send "
                    f"again ({len(self._buffer) + len(self._retry)} buffered, bound {self._max_buffer})"
                )
                for out in expired:
                    out.attempts -= 1
                    out.not_before = now + self._ack_timeout_s
                    if out.key[3] == Channel.BOOK.value and out.origin not in _DERIVED:
                        self._needs_snapshot.add((out.key[0] or out.key[1], out.key[2]))
                    heapq.heappush(self._retry, out)
                self._wake.set()
            else:
                for out in expired:
                    self._fail(out, f"no acknowledgement within {self._ack_timeout_s:g} s")
            self._check_idle()

    def _check_idle(self) -> None:
        if not self._buffer and not self._retry and not self._inflight:
            self._idle.set()

    # ---------------------------------------------------------------------------------------- connection

    def _connect_options(self) -> dict[str, Any]:
        cfg = self._config
        opts: dict[str, Any] = {
            "servers": list(cfg.servers),
            "name": self._name,
            "connect_timeout": cfg.connect_timeout_s,
            "reconnect_time_wait": cfg.reconnect_wait_s,
            "max_reconnect_attempts": -1,
            "allow_reconnect": True,
            "disconnected_cb": self._on_disconnected,
            "reconnected_cb": self._on_reconnected,
            "error_cb": self._on_error,
            "closed_cb": self._on_closed,
        }
        opts.update(self._credentials.connect_kwargs())
        return opts

    async def _on_first_connect(self, *, strict: bool) -> None:
        nc = self._nc
        assert nc is not None
        self._inbox = nc.new_inbox()
        await nc.subscribe(
            f"{self._inbox}.*",
            cb=self._on_ack,
            pending_msgs_limit=max(65_536, 4 * self._window),
            pending_bytes_limit=256 * 1024 * 1024,
        )
        try:
            self._stream_state = await ensure_stream(nc.jetstream(), self._config)
        except NatsError as exc:
            if strict:
                await self._close_link()
                raise
            self._last_error = self._scrub(str(exc))
            log.error("NATS: %s; publishing anyway", self._last_error)
        self._set_link(nc.is_connected)
        log.info(
            "NATS sink connected to %s; stream %s %s",
            self._server(),
            self._config.stream.name,
            self._stream_state or "not checked",
        )
        self._wake.set()

    async def _connect_later(self) -> None:
        task = self._connect_task
        assert task is not None
        try:
            await task
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._note_error(f"NATS connection failed for good: {type(exc).__name__}: {exc}")
            return
        try:
            await self._on_first_connect(strict=False)
        except Exception as exc:
            self._note_error(f"NATS setup after connecting failed: {type(exc).__name__}: {exc}")

    async def _close_link(self) -> None:
        self._closing_link = True
        for task in (self._later_task, self._connect_task):
            if task is not None and not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        nc = self._nc
        if nc is not None and not nc.is_closed:
            try:
                await asyncio.wait_for(nc.close(), timeout=max(self._config.connect_timeout_s, 2.0))
            except Exception as exc:
                self._note_error(f"closing the NATS connection: {type(exc).__name__}: {exc}")
        self._set_link(False)

    async def _on_disconnected(self) -> None:
        was = self._connected
        self._set_link(False)
        if self._closing_link:
            return
        if was:
            self._disconnects += 1
            log.warning(
                "NATS link lost; %d in flight will be sent again, %d buffered (bound %d)",
                len(self._inflight),
                len(self._buffer) + len(self._retry),
                self._max_buffer,
            )
        pending = list(self._inflight.values())
        self._inflight.clear()
        for out in pending:
            self._fail(out, "NATS link lost with the message in flight")
        self._check_idle()

    async def _on_reconnected(self) -> None:
        if self._nc is None or self._closing_link:
            return
        self._set_link(True)
        self._reconnects += 1
        log.info(
            "NATS link back (%s); %d buffered to send, %d streams with losses to report",
            self._server(),
            len(self._buffer) + len(self._retry),
            len(self._losses),
        )
        self._wake.set()

    async def _on_error(self, exc: Exception) -> None:
        self._note_error(f"{type(exc).__name__}: {exc}".rstrip(": "))
        nc = self._nc
        if (
            nc is not None
            and not self._connected
            and (self._connect_task is None or not self._connect_task.done())
        ):
            self._connect_errors += 1
            if self._connect_errors >= len(self._config.servers):
                self._first_round_failed.set()

    async def _on_closed(self) -> None:
        self._set_link(False)

    def _set_link(self, up: bool) -> None:
        self._connected = up
        (self._link_up if up else self._link_down).set()
        (self._link_down if up else self._link_up).clear()

    def _note_error(self, text: str) -> None:
        text = self._scrub(text)
        self._last_error = text
        now = self._clock.monotonic()
        if self._last_error_log is None or now - self._last_error_log >= _LOG_INTERVAL_S:
            self._last_error_log = now
            log.warning("NATS sink: %s", text)

    def _server(self) -> str | None:
        """The server connected to now, or last (``scheme://host:port``, never credentials)."""
        nc = self._nc
        url = nc.connected_url if nc is not None else None
        if url is not None:
            self._last_server = f"{url.scheme}://{url.hostname}:{url.port}"
        return self._last_server

    def _scrub(self, text: str) -> str:
        return scrub(text, self._secrets)

    # ---------------------------------------------------------------------------------------- reporting

    def stats(self) -> NatsSinkStats:
        """An immutable snapshot of the counters."""
        nc = self._nc
        return NatsSinkStats(
            accepted=self._accepted,
            published=self._published,
            acked=self._acked,
            duplicates=self._duplicates,
            retries=self._retries,
            lost=sum(self._lost.values()),
            lost_by_cause=dict(self._lost),
            buffered=len(self._buffer) + len(self._retry),
            in_flight=len(self._inflight),
            max_buffered=self._max_buffered,
            max_in_flight=self._max_in_flight,
            connected=self._connected and nc is not None and nc.is_connected,
            disconnects=self._disconnects,
            reconnects=self._reconnects,
            gaps_published=self._gaps_published,
            snapshots_published=dict(self._snapshots),
            open_losses=len(self._losses),
            ignored=self._ignored,
            last_error=self._last_error,
            server=self._server(),
            stream=self._stream_state,
            closed=self._closed,
            late_sends=self._late_sends,
        )

    def health(self) -> SinkHealth:
        """:class:`~cryptolink.sinks.base.Sink` counters: acknowledged, lost; healthy = connected now (after
        :meth:`aclose`: the link is closed on purpose, so only a loss, counted in ``lost``, makes it unhealthy)."""
        st = self.stats()
        healthy = st.connected or self._closed
        return SinkHealth(
            name="nats", delivered=st.acked, lost=st.lost, healthy=healthy, last_error=st.last_error
        )

    def report_section(self) -> Section:
        """The report section of this sink (see :func:`nats_section`)."""
        return nats_section(self.stats())


def _causes(lost: dict[str, int] | Counter[str]) -> str:
    return ", ".join(f"{c} {lost.get(c, 0):,}" for c in LOSS_CAUSES)


def nats_section(stats: NatsSinkStats) -> Section:
    """The report section of a NATS sink's ``stats``: what was acknowledged, what was lost and why, the link."""
    snaps = stats.snapshots_published
    lines = [
        f"  {stats.acked:,} acknowledged by JetStream ({stats.duplicates:,} already stored) of {stats.accepted:,} "
        f"events accepted; {stats.published:,} sends, {stats.retries:,} re-sends",
        f"  server {stats.server or '-'} "
        f"({'connected' if stats.connected else 'closed' if stats.closed else 'NOT connected'}), "
        f"{stats.disconnects} disconnects, {stats.reconnects} reconnects; stream {stats.stream or 'not checked'}",
        f"  peak {stats.max_in_flight:,} in flight, {stats.max_buffered:,} buffered; "
        f"{stats.gaps_published:,} gap events; snapshots "
        + ", ".join(f"{o} {snaps.get(o, 0):,}" for o in SNAPSHOT_ORIGINS),
    ]
    if stats.lost:
        lines.append(
            f"  DATA LOST: {stats.lost:,} messages not published ({_causes(stats.lost_by_cause)}); "
            f"last error: {stats.last_error or '-'}"
        )
    if stats.buffered or stats.in_flight:
        lines.append(f"  {stats.buffered:,} buffered, {stats.in_flight:,} awaiting acknowledgement")
    if stats.late_sends:
        lines.append(
            f"  {stats.late_sends:,} events sent later than the stream's duplicate window (after a long outage): "
            "the stream may hold those events twice"
        )
    if stats.open_losses:
        lines.append(f"  {stats.open_losses} streams lost events not yet reported by a gap event")
    if stats.last_error and not stats.lost:
        lines.append(f"  last error: {stats.last_error}")
    return Section("NATS sink", lines)
