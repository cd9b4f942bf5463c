"""One open socket (*session*) of a :class:`~cryptolink.engine.connection.ManagedConnection`.

A :class:`Session` owns its socket (:class:`~cryptolink.engine.transport.TransportSession`), its tasks (the
reader, sends, pings: one :class:`~cryptolink.engine.tasks.TaskOwner`), its outbound limits (token bucket
``ConnectionPolicy.max_outbound_per_s``: Binance spot 5/s, USDⓈ-M 10/s; hourly subscribe quota
``max_subscribe_requests_per_hour``: OKX 480), its subscription registry and its decoder
(``adapter.session_decoder()``, called once per session). It reports to its connection only through the
:class:`SessionHost` methods and the shared :class:`SessionCounters`; it never touches the connection's fields.

The reader, per received batch (``TransportSession.recv_batch``: every frame already received): one monotonic
and one wall clock read, the counters updated once, then per frame

1. a binary frame of an adapter whose policy declares a compression is inflated with
   :func:`~cryptolink.exchanges.base.inflate`, bounded by ``policy.max_inflated_bytes``; a corrupt frame or a
   compression bomb is counted (``inflate_refused``), logged and skipped (a bomb never allocates more than the
   bound);
2. the session's decoder; :class:`~cryptolink.exchanges.base.DecodeError` is counted (``decode_errors``) and
   the frame skipped; any other exception is a bug in the adapter: counted apart (``adapter_errors``), logged
   with its traceback (the first, then every 1000th), the frame skipped, the session kept;
3. one dispatch (``type() is`` on each item's class; control signals then by a ``match``): market data (trades, tickers, book messages) is collected
   for ``on_data`` and its stream keys for the watchdogs; control signals are handled at once (acks and
   rejections -> the registry, then the host; pongs -> round-trip time; ``ReplyRequired`` -> its frame sent
   right away; notices and error frames -> the host; heartbeats -> counted). Control signals, server pings
   included, are never market data: they do not feed any data watchdog;
4. ``on_data`` with the frame's market data (an exception there is counted as ``callback_errors``).

After the batch, the host hears once which streams delivered (:meth:`SessionHost.session_data`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from cryptolink.clock import Clock
from cryptolink.engine.errors import FrameTooLarge, TransportError
from cryptolink.engine.subscriptions import SubscriptionRegistry, peek_request_id, take_request_ids
from cryptolink.engine.tasks import TaskOwner
from cryptolink.engine.throttle import HourlyQuota, TokenBucket
from cryptolink.engine.timer_core import KeepaliveTimer
from cryptolink.engine.transport import TransportSession
from cryptolink.exchanges.base import (
    Ack,
    BookMessage,
    ConnectionPolicy,
    ControlSignal,
    DecodeError,
    ExchangeError,
    FrameDecoder,
    Heartbeat,
    InflateRefused,
    OutboundRequest,
    Pong,
    Rejected,
    ReplyRequired,
    ServerNotice,
    inflate,
)
from cryptolink.models import Channel, Subscription, Ticker, Trade

if TYPE_CHECKING:
    from cryptolink.exchanges.base import ExchangeAdapter

__all__ = [
    "LOG_EVERY",
    "ROTATED",
    "STOPPED",
    "MarketData",
    "Session",
    "SessionCounters",
    "SessionHost",
]

_log = logging.getLogger("cryptolink.engine.connection")  # one logger for the connection and its sessions

MarketData = Trade | Ticker | BookMessage
StreamKey = tuple[Channel, str]
RequestBuilder = Callable[[Sequence[Subscription], int, int | None], list[OutboundRequest]]

ROTATED = "rotated"
"""End reason of a primary session replaced by a rotation."""
STOPPED = "stopped"
"""End reason of a session closed on purpose (stop, rotation cleanup)."""
LOG_EVERY = 1000
"""Repeated per-frame problems (decode errors, adapter errors, refused frames) are logged the first time and
then every ``LOG_EVERY``-th time."""


class SessionCounters:
    """Per-frame counters of one connection. Owned by the connection (read by its ``stats()``); its sessions
    are the only writers. ``oversized_frames`` and ``send_errors`` are part of ``transport_errors``."""

    __slots__ = (
        "adapter_errors",
        "bytes",
        "callback_errors",
        "decode_errors",
        "heartbeats",
        "ignored_frames",
        "inflate_refused",
        "last_recv",
        "market_events",
        "messages",
        "oversized_frames",
        "send_errors",
    )

    def __init__(self) -> None:
        self.messages = 0
        self.bytes = 0
        self.market_events = 0
        self.decode_errors = 0
        self.adapter_errors = 0
        self.inflate_refused = 0
        self.ignored_frames = 0
        self.callback_errors = 0
        self.heartbeats = 0
        self.oversized_frames = 0
        self.send_errors = 0
        self.last_recv: float | None = None
        """When the last frame of any kind arrived (monotonic s); ``None`` before any."""


class SessionHost(Protocol):
    """What a :class:`Session` tells its connection (implemented by ``ManagedConnection``)."""

    def session_data(
        self, sess: Session, keys: set[StreamKey], market: list[MarketData], receipt_ns: int, now: float
    ) -> None:
        """A batch delivered market data on the streams ``keys`` (``market``: the batch's last frame's items);
        ``keys`` is reused by the session after the call."""

    def session_unsubscribed(self, sess: Session, subs: list[Subscription]) -> None:
        """The exchange confirmed unsubscribing ``subs``."""

    def session_rejected(self, sess: Session, rejection: Rejected, refused: list[Subscription]) -> None:
        """The exchange refused a request (``refused``: the subscriptions it concerned, maybe none)."""

    def session_rtt(self, sess: Session, rtt_s: float) -> None:
        """A ping was answered after ``rtt_s`` seconds."""

    def session_notice(self, sess: Session, notice: ServerNotice) -> None:
        """The server announced the end of this socket."""

    def session_exchange_error(self, sess: Session, error: ExchangeError) -> None:
        """An error frame not tied to a request."""

    def session_oversized(self, sess: Session, error: FrameTooLarge) -> None:
        """A frame over ``max_frame_bytes`` arrived (the session ends right after)."""

    def session_ended(self, sess: Session, reason: str) -> None:
        """The session ended (called once, synchronously, when :meth:`Session.end` is first called)."""


class Session:
    """One open socket and everything that belongs to it (times in s of the connection's monotonic clock).

    Args:
        sid: session number within the connection (1, 2, ...).
        ws: the open socket.
        adapter: builds the subscribe/unsubscribe frames.
        decoder: the session's decoder (``adapter.session_decoder()``).
        registry: subscription state of this socket.
        keepalive: this socket's keepalive timer (from the connection's timer core).
        clock: time source.
        counters: the connection's per-frame counters.
        host: the owning connection.
        on_data: ``(items) -> None``, called with each frame's market data.
        name: log and task name prefix (the connection id).
    """

    __slots__ = (
        "_adapter",
        "_clock",
        "_counters",
        "_decoder",
        "_host",
        "_name",
        "_on_data",
        "_policy",
        "_send_lock",
        "_tasks",
        "bucket",
        "ended",
        "expected",
        "flow_event",
        "keepalive",
        "opened_at",
        "quota",
        "registry",
        "sid",
        "ws",
    )

    def __init__(
        self,
        *,
        sid: int,
        ws: TransportSession,
        adapter: ExchangeAdapter,
        decoder: FrameDecoder,
        registry: SubscriptionRegistry,
        keepalive: KeepaliveTimer,
        clock: Clock,
        counters: SessionCounters,
        host: SessionHost,
        on_data: Callable[[list[MarketData]], None],
        name: str,
    ) -> None:
        self.sid = sid
        self.ws = ws
        self.registry = registry
        self.keepalive = keepalive
        self.opened_at = clock.monotonic()
        self._adapter = adapter
        self._policy: ConnectionPolicy = adapter.policy
        self._decoder = decoder
        self._clock = clock
        self._counters = counters
        self._host = host
        self._on_data = on_data
        self._name = name
        self._tasks = TaskOwner(f"{name}-s{sid}", _log)
        self.bucket = TokenBucket(self._policy.max_outbound_per_s, clock)
        self.quota = HourlyQuota(self._policy.max_subscribe_requests_per_hour, clock)
        self.ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.expected: set[StreamKey] = set()
        """Streams that must deliver before a rotation switches to this socket."""
        self.flow_event = asyncio.Event()
        """Set once every stream of :attr:`expected` delivered."""
        self._send_lock = asyncio.Lock()

    # life ------------------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the reader."""
        self._tasks.spawn(self._reader(), "reader")

    def end(self, reason: str) -> None:
        """Mark the session ended (first reason wins) and tell the host; the socket is closed by
        :meth:`close`."""
        if not self.ended.done():
            self.ended.set_result(reason)
            self._host.session_ended(self, reason)

    @property
    def alive(self) -> bool:
        """The session has not ended."""
        return not self.ended.done()

    async def close(self, code: int = 1000) -> None:
        """End the session (reason ``stopped`` unless it already ended), stop its tasks, close the socket."""
        self.end(STOPPED)
        await self._tasks.close()
        try:
            await self.ws.close(code)
        except Exception:
            self.ws.abort()

    def expect_flow(self, keys: set[StreamKey]) -> None:
        """A rotation waits for ``keys`` to deliver on this socket: :attr:`flow_event` is set once they all did
        (at once when ``keys`` is empty)."""
        self.expected = keys
        if not keys:
            self.flow_event.set()

    def spawn_pending(self) -> None:
        """Send the subscribe requests of the registry's unsent subscriptions in the background."""
        self._tasks.spawn(self.send_pending(), "subscribe")

    def spawn_resubscribe(self, subs: Sequence[Subscription]) -> None:
        """Unsubscribe then subscribe ``subs`` in the background (they are already marked in the registry)."""
        self._tasks.spawn(self.resend(subs), "resubscribe")

    # sending ---------------------------------------------------------------------------------------------------
    async def send(self, frame: str) -> bool:
        """Send one frame within the rate limit; ``False`` if the session ended (a failed send ends it)."""
        await self.bucket.acquire()
        if not self.alive:
            return False
        try:
            await self.ws.send(frame)
        except TransportError as exc:
            self._counters.send_errors += 1
            self.end(f"send failed: {exc}")
            return False
        return True

    def send_soon(self, frame: str, what: str = "send") -> None:
        """:meth:`send` in the background (replies to server pings, app pings)."""
        self._tasks.spawn(self.send(frame), what)

    async def send_requests(self, build: RequestBuilder, subs: Sequence[Subscription]) -> None:
        """Build requests for ``subs`` with ``build`` (fresh request ids, unique in the process, so an ack can
        never be taken for another socket's request); send them within the hourly quota."""
        async with self._send_lock:
            reqs = build(subs, peek_request_id(), self._clock.time_ns() // 1_000_000)
            take_request_ids(len(reqs))
            for req in reqs:
                await self.quota.acquire()
                if not self.alive:
                    return
                self.registry.sent(req, self._clock.monotonic())
                if not await self.send(req.frame):
                    return

    async def send_pending(self) -> None:
        """Send subscribe requests for the registry's unsent subscriptions."""
        unsent = self.registry.unsent()
        if unsent and self.alive:
            await self.send_requests(self._adapter.subscribe_requests, unsent)

    async def unsubscribe(self, subs: Sequence[Subscription]) -> None:
        """Send unsubscribe requests for ``subs``."""
        if self.alive:
            await self.send_requests(self._adapter.unsubscribe_requests, subs)

    async def resend(self, subs: Sequence[Subscription]) -> None:
        """Unsubscribe ``subs`` then send every pending subscribe (a resubscribe cycle)."""
        if self.alive:
            await self.send_requests(self._adapter.unsubscribe_requests, subs)
            await self.send_pending()

    async def unsubscribe_now(self) -> None:
        """On stop: unsubscribe the confirmed subscriptions with the frames the rate limit allows right now."""
        confirmed = list(self.registry.confirmed)
        if not confirmed or not self.alive:
            return
        reqs = self._adapter.unsubscribe_requests(
            confirmed, peek_request_id(), self._clock.time_ns() // 1_000_000
        )
        take_request_ids(len(reqs))
        for req in reqs:
            if not self.bucket.try_acquire():
                break
            try:
                await self.ws.send(req.frame)
            except TransportError:
                break

    def spawn_protocol_ping(self) -> None:
        """Send a protocol ping in the background; its round-trip time goes to the host."""
        self._tasks.spawn(self._protocol_ping(), "ping")

    async def _protocol_ping(self) -> None:
        await self.bucket.acquire()
        if not self.alive:
            return
        ping: asyncio.Future[Any] = asyncio.ensure_future(self.ws.ping())
        ended: asyncio.Future[Any] = self.ended
        try:
            await asyncio.wait({ping, ended}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            ping.cancel()  # closing mid-ping: no orphaned future left to complain
            raise
        if not ping.done():
            ping.cancel()
            return
        exc = ping.exception()
        if exc is not None:
            if isinstance(exc, TransportError):
                self.end(f"ping failed: {exc}")
                return
            raise exc
        self.keepalive.protocol_pong(self._clock.monotonic())
        self._host.session_rtt(self, ping.result())

    # reading ---------------------------------------------------------------------------------------------------
    async def _reader(self) -> None:
        """:meth:`_read_loop`, and if it fails unexpectedly (a bug: every expected failure is handled inside),
        end the session so that it is replaced, instead of staying primary with nobody reading."""
        try:
            await self._read_loop()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self.end(f"reader failed: {type(exc).__name__}: {exc}")
            raise  # logged with its traceback by the task owner

    async def _read_loop(self) -> None:
        """Receive, decode and dispatch frames until the socket fails (ends the session; never raises)."""
        ws = self.ws
        clock = self._clock
        monotonic = clock.monotonic
        time_ns = clock.time_ns
        recv_batch = ws.recv_batch
        decode = self._decoder
        counters = self._counters
        on_data = self._on_data
        host = self._host
        keepalive = self.keepalive
        control = self._control
        compression = self._policy.compression
        inflate_limit = self._policy.max_inflated_bytes
        book = Channel.BOOK
        seen: set[StreamKey] = set()
        while True:
            try:
                batch = await recv_batch()
            except FrameTooLarge as exc:
                counters.oversized_frames += 1
                host.session_oversized(self, exc)
                self.end("oversized frame")
                return
            except TransportError as exc:
                self.end(str(exc))
                return
            now = monotonic()
            receipt_ns = time_ns()
            keepalive.received(now)
            counters.last_recv = now
            counters.messages += len(batch)
            counters.bytes += sum(map(len, batch))
            delivered = 0
            last_market: list[MarketData] | None = None
            last_ch: Channel | None = None
            last_sym: str | None = None
            for frame in batch:
                if compression is not None and type(frame) is bytes:
                    try:
                        frame = inflate(frame, compression, inflate_limit)
                    except InflateRefused as exc:
                        self._refused(exc)
                        continue
                try:
                    # list[Decoded]; typed Any so that a frame of market data only goes to on_data as it is
                    items: list[Any] = decode(frame, receipt_ns)
                except DecodeError:
                    counters.decode_errors += 1
                    if counters.decode_errors == 1 or counters.decode_errors % LOG_EVERY == 0:
                        _log.warning(
                            "%s: malformed frame skipped (%d so far)", self._name, counters.decode_errors
                        )
                    continue
                except Exception:
                    counters.adapter_errors += 1
                    if counters.adapter_errors == 1 or counters.adapter_errors % LOG_EVERY == 0:
                        _log.exception(
                            "%s: adapter %s raised on a frame; frame skipped (%d so far)",
                            self._name,
                            self._adapter.exchange,
                            counters.adapter_errors,
                        )
                    continue
                if not items:
                    counters.ignored_frames += 1
                    continue
                mixed = False
                for item in items:
                    # one dispatch per item; ``type() is`` (not ``match``: class patterns cost ~3x on this path)
                    cls = type(item)
                    if cls is BookMessage:
                        ch = book
                        sym = item.symbol
                    elif cls is Trade or cls is Ticker:
                        ch = item.channel
                        sym = item.symbol
                    else:
                        mixed = True
                        control(item, now)
                        continue
                    if sym is not last_sym or ch is not last_ch:  # identity: a cheap "same stream as before"
                        seen.add((ch, sym))
                        last_ch = ch
                        last_sym = sym
                if mixed:
                    market = [i for i in items if isinstance(i, (BookMessage, Trade, Ticker))]
                    if not market:
                        continue
                else:
                    market = items  # every item matched a market-data case above (no copy, no cast call)
                delivered += len(market)
                last_market = market
                try:
                    on_data(market)
                except Exception:
                    counters.callback_errors += 1
                    if counters.callback_errors == 1 or counters.callback_errors % LOG_EVERY == 0:
                        _log.exception(
                            "%s: on_data callback failed (%d so far)", self._name, counters.callback_errors
                        )
            if last_market is None:
                continue
            counters.market_events += delivered
            host.session_data(self, seen, last_market, receipt_ns, now)
            expected = self.expected
            if expected:
                expected.difference_update(seen)
                if not expected:
                    self.flow_event.set()
            seen.clear()

    def _refused(self, exc: InflateRefused) -> None:
        counters = self._counters
        counters.inflate_refused += 1
        if counters.inflate_refused == 1 or counters.inflate_refused % LOG_EVERY == 0:
            _log.warning(
                "%s: binary frame refused: %s (%d so far)", self._name, exc, counters.inflate_refused
            )

    def _control(self, item: ControlSignal, now: float) -> None:
        """Handle one control signal received at ``now`` (monotonic s)."""
        host = self._host
        match item:
            case Ack():
                op, done = self.registry.on_ack(item)
                if op == "unsubscribe" and done:
                    host.session_unsubscribed(self, done)
            case Rejected():
                refused = self.registry.on_rejected(item)
                if self.expected:
                    for sub in refused:
                        self.expected.discard(sub.key)
                    if not self.expected:  # a rotation waits for the rest to flow, not for a refused stream
                        self.flow_event.set()
                host.session_rejected(self, item, refused)
            case Pong():
                rtt = self.keepalive.app_pong(now)
                if rtt is not None:
                    host.session_rtt(self, rtt)
            case ReplyRequired(frame=frame):
                self.send_soon(frame, "reply")
            case ServerNotice():
                host.session_notice(self, item)
            case ExchangeError():
                host.session_exchange_error(self, item)
            case Heartbeat():
                self._counters.heartbeats += 1
            case _:  # an adapter returned something that is no event and no signal: a bug, counted, logged
                self._counters.adapter_errors += 1
                _log.error(
                    "%s: adapter returned an unknown item %r; skipped", self._name, type(item).__name__
                )
