"""One open socket (*session*) of a :class:`~cryptolink.engine.connection.ManagedConnection`: its state, how
it is opened, closed and written to, and its reader loop.

The reader passes each frame to ``adapter.decode``. Market data goes to the data-idle
:mod:`~cryptolink.engine.watchdog` and to ``on_data``; control signals are handled here (acks and rejections
-> :mod:`~cryptolink.engine.subscriptions`, pongs -> round-trip time, ``ReplyRequired`` -> answered,
``ServerNotice(rotate)`` -> rotation, errors and heartbeats -> counters). A malformed frame
(:class:`~cryptolink.exchanges.base.DecodeError`) is counted and skipped, never closes the socket; an
oversized frame is counted and resets the session; an exception in ``on_data`` is caught and counted
(``callback_errors``).

Outbound frames go through the session's token bucket (``ConnectionPolicy.max_outbound_per_s``: Binance spot
5/s, USDⓈ-M 10/s) and subscribe/unsubscribe requests through its hourly quota
(``max_subscribe_requests_per_hour``: OKX 480).

The functions take the owning connection and read and update its counters and helpers directly: they are the
connection's own code, kept in a module of their own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from cryptolink.engine.errors import FrameTooLarge, TransportError
from cryptolink.engine.events import ConnectionEventType, Severity
from cryptolink.engine.subscriptions import SubscriptionRegistry, peek_request_id, take_request_ids
from cryptolink.engine.throttle import HourlyQuota, TokenBucket
from cryptolink.engine.transport import TransportSession
from cryptolink.engine.watchdog import CONNECTION_KEY
from cryptolink.exchanges.base import (
    Ack,
    BookMessage,
    DecodeError,
    ExchangeError,
    Heartbeat,
    OutboundRequest,
    Pong,
    Rejected,
    ReplyRequired,
    ServerNotice,
)
from cryptolink.models import Channel, Subscription, Ticker, Trade

if TYPE_CHECKING:
    from cryptolink.engine.connection import ManagedConnection

__all__ = [
    "ROTATED",
    "STOPPED",
    "MarketData",
    "Session",
    "close_session",
    "handle_control",
    "open_session",
    "read_loop",
    "send",
    "send_everywhere",
    "send_pending",
    "send_requests",
]

_log = logging.getLogger("cryptolink.engine.connection")  # the connection's logger, as before the split

MarketData = Trade | Ticker | BookMessage

_E = ConnectionEventType
ROTATED = "rotated"
"""End reason of a primary session replaced by a rotation."""
STOPPED = "stopped"
"""End reason of a session closed on purpose (stop, rotation cleanup)."""


class Session:
    """One open socket and its per-socket state (times in s of the connection's monotonic clock)."""

    __slots__ = (
        "app_ping_at",
        "app_ping_sent",
        "bucket",
        "ended",
        "expected",
        "flow_event",
        "last_recv",
        "next_proto_ping",
        "opened_at",
        "proto_ping_at",
        "quota",
        "reader",
        "registry",
        "send_lock",
        "sid",
        "ws",
    )

    def __init__(
        self,
        sid: int,
        ws: TransportSession,
        registry: SubscriptionRegistry,
        now: float,
        bucket: TokenBucket,
        quota: HourlyQuota,
    ) -> None:
        self.sid = sid
        self.ws = ws
        self.registry = registry
        self.opened_at = now
        self.last_recv = now
        self.app_ping_at: float | None = None
        self.app_ping_sent = now
        self.proto_ping_at: float | None = None
        self.next_proto_ping = now
        self.bucket = bucket
        self.quota = quota
        self.reader: asyncio.Task[None] | None = None
        self.ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.expected: set[tuple[Channel, str]] = set()
        self.flow_event = asyncio.Event()
        self.send_lock = asyncio.Lock()

    def end(self, reason: str) -> None:
        if not self.ended.done():
            self.ended.set_result(reason)

    @property
    def alive(self) -> bool:
        return not self.ended.done()


# opening and closing ------------------------------------------------------------


async def open_session(conn: ManagedConnection, registry: SubscriptionRegistry) -> Session:
    """Open a socket to ``conn.spec.url`` and start its reader; raises what ``Transport.connect`` raises."""
    ws = await conn._transport.connect(conn.spec.url, max_frame_bytes=conn._policy.max_frame_bytes)
    conn._sid += 1
    now = conn._clock.monotonic()
    sess = Session(
        conn._sid,
        ws,
        registry,
        now,
        TokenBucket(conn._policy.max_outbound_per_s, conn._clock),
        HourlyQuota(conn._policy.max_subscribe_requests_per_hour, conn._clock),
    )
    interval = conn._policy.keepalive.protocol_ping_interval_s
    sess.next_proto_ping = now + (interval if interval is not None else 0.0)
    sess.reader = asyncio.create_task(read_loop(conn, sess), name=f"{conn.conn_id}-reader-{sess.sid}")
    return sess


async def close_session(sess: Session, code: int = 1000) -> None:
    """End ``sess`` (reason ``stopped`` unless it already ended), stop its reader and close the socket."""
    sess.end(STOPPED)
    reader = sess.reader
    if reader is not None and reader is not asyncio.current_task() and not reader.done():
        reader.cancel()
    try:
        await sess.ws.close(code)
    except Exception:
        sess.ws.abort()


# sending ------------------------------------------------------------


async def send(conn: ManagedConnection, sess: Session, frame: str) -> bool:
    """Send one frame within the rate limit; ``False`` if the session ended (a failed send ends it)."""
    await sess.bucket.acquire()
    if not sess.alive:
        return False
    try:
        await sess.ws.send(frame)
    except TransportError as exc:
        conn.transport_errors += 1
        sess.end(f"send failed: {exc}")
        return False
    return True


async def send_requests(
    conn: ManagedConnection,
    sess: Session,
    build: Callable[[Sequence[Subscription], int], list[OutboundRequest]],
    subs: Sequence[Subscription],
) -> None:
    """Build requests for ``subs`` with ``build`` (fresh request ids, unique in the process, so an ack can
    never be taken for another socket's request); send them within the hourly quota."""
    async with sess.send_lock:
        reqs = build(subs, peek_request_id())
        take_request_ids(len(reqs))
        for req in reqs:
            await sess.quota.acquire()
            if not sess.alive:
                return
            sess.registry.sent(req, conn._clock.monotonic())
            if not await send(conn, sess, req.frame):
                return


async def send_pending(conn: ManagedConnection, sess: Session) -> None:
    """Send subscribe requests for the session registry's unsent subscriptions."""
    unsent = sess.registry.unsent()
    if unsent and sess.alive:
        await send_requests(conn, sess, conn.adapter.subscribe_requests, unsent)


async def send_everywhere(conn: ManagedConnection) -> None:
    """:func:`send_pending` on every live session (the primary and a rotation candidate)."""
    for sess in conn._live_sessions():
        await send_pending(conn, sess)


# reading ------------------------------------------------------------


async def read_loop(conn: ManagedConnection, sess: Session) -> None:
    """Receive, decode and dispatch frames until the socket fails (ends ``sess``; never raises).

    Frames come in batches (``TransportSession.recv_batch``: every frame already received). Per batch: one
    monotonic and one wall clock read (every frame of the batch gets the same ``receipt_ns``), the counters
    updated once, one watchdog update per stream key seen and one for the connection. Per frame:
    ``adapter.decode``, control signals handled in order, ``on_data`` with the frame's market data (so an
    exception in the callback loses nothing but that frame's items).
    """
    ws = sess.ws
    clock = conn._clock
    monotonic = clock.monotonic
    time_ns = clock.time_ns
    recv_batch = ws.recv_batch
    decode = conn.adapter.decode
    watchdog_on_data = conn._watchdog.on_data
    conn_on_data = conn._conn_watchdog.on_data
    on_data = conn._on_data
    book = Channel.BOOK
    seen: set[tuple[Channel, str]] = set()
    while True:
        try:
            batch = await recv_batch()
        except FrameTooLarge as exc:
            conn.oversized_frames += 1
            conn.transport_errors += 1
            conn._emit(_E.ERROR, Severity.ERROR, "oversized frame, resetting session", error=str(exc))
            sess.end("oversized frame")
            return
        except TransportError as exc:
            sess.end(str(exc))
            return
        now = monotonic()
        receipt_ns = time_ns()
        sess.last_recv = now
        conn._last_recv = now
        conn.messages += len(batch)
        conn.bytes += sum(map(len, batch))
        delivered = 0
        last_market: list[MarketData] | None = None
        last_ch: Channel | None = None
        last_sym: str | None = None
        for frame in batch:
            try:
                items = decode(frame, receipt_ns)
            except DecodeError:
                conn.decode_errors += 1
                if conn.decode_errors == 1 or conn.decode_errors % 1000 == 0:
                    _log.warning("%s: malformed frame skipped (%d so far)", conn.conn_id, conn.decode_errors)
                continue
            except Exception:
                conn.decode_errors += 1
                if conn.decode_errors == 1 or conn.decode_errors % 1000 == 0:
                    _log.exception(
                        "%s: adapter failed on a frame (%d so far)", conn.conn_id, conn.decode_errors
                    )
                continue
            if not items:
                conn.ignored_frames += 1
                continue
            control = 0
            for item in items:
                cls = type(item)
                if cls is Trade or cls is Ticker:
                    ch = item.channel  # type: ignore[union-attr]
                elif cls is BookMessage:
                    ch = book
                else:
                    control += 1
                    continue
                sym = item.symbol  # type: ignore[union-attr]
                if sym is not last_sym or ch is not last_ch:  # identity: a cheap "same stream as before"
                    seen.add((ch, sym))
                    last_ch = ch
                    last_sym = sym
            if control:
                for item in items:
                    cls = type(item)
                    if cls is not Trade and cls is not Ticker and cls is not BookMessage:
                        handle_control(conn, sess, item, now)  # type: ignore[arg-type]
                if control == len(items):
                    continue
                market: list[MarketData] = [
                    i for i in items if type(i) is Trade or type(i) is Ticker or type(i) is BookMessage
                ]
            else:
                market = items  # type: ignore[assignment]
            delivered += len(market)
            last_market = market
            try:
                on_data(conn, market)
            except Exception:
                conn.callback_errors += 1
                if conn.callback_errors == 1 or conn.callback_errors % 1000 == 0:
                    _log.exception(
                        "%s: on_data callback failed (%d so far)", conn.conn_id, conn.callback_errors
                    )
        if not seen:
            continue
        for key in seen:
            watchdog_on_data(key, now)
        if sess.expected:
            sess.expected.difference_update(seen)
            if not sess.expected:
                sess.flow_event.set()
        seen.clear()
        conn_on_data(CONNECTION_KEY, now)
        conn.market_events += delivered
        if conn._healthy_since is None and sess is conn._primary:
            conn._healthy_since = now
        if last_market is not None and now >= conn._next_lag_sample:
            _sample_lag(conn, last_market, receipt_ns, now)


def _sample_lag(conn: ManagedConnection, market: list[MarketData], receipt_ns: int, now: float) -> None:
    conn._next_lag_sample = now + conn.config.lag_sample_interval_s
    for item in market:
        ts = item.timestamp_ms
        if ts is not None:
            conn._quality.record_lag(receipt_ns / 1e6 - ts)
            return


def handle_control(
    conn: ManagedConnection,
    sess: Session,
    item: Ack | Rejected | Pong | ReplyRequired | ServerNotice | ExchangeError | Heartbeat,
    now: float,
) -> None:
    """Handle one control signal received on ``sess`` at ``now`` (monotonic s)."""
    if isinstance(item, Ack):
        op, done = sess.registry.on_ack(item)
        if op == "unsubscribe":
            for sub in done:
                if not sess.registry.is_desired(sub.key) and sess is conn._primary:
                    conn._watchdog.remove(sub.key)
    elif isinstance(item, Rejected):
        refused = sess.registry.on_rejected(item)
        conn.exchange_errors += 1
        for sub in refused:
            if sess is conn._primary:
                conn._watchdog.remove(sub.key)
                conn._stale.discard(sub.key)
            sess.expected.discard(sub.key)
        if refused:
            names = ", ".join(f"{s.channel} {s.symbol}" for s in refused)
            for sub in refused:
                conn._emit(
                    _E.SUBSCRIPTION_REJECTED,
                    Severity.ERROR,
                    f"{sub.channel} {sub.symbol} rejected by the exchange (not retried)",
                    error=f"{item.code}: {item.message}",
                    key=sub.key,
                )
            _log.error(
                "%s: subscription rejected (not retried): %s: %s %s",
                conn.conn_id,
                names,
                item.code,
                item.message,
            )
        else:
            conn._emit(_E.ERROR, Severity.ERROR, "request rejected", error=f"{item.code}: {item.message}")
            _log.error("%s: request rejected: %s %s", conn.conn_id, item.code, item.message)
    elif isinstance(item, Pong):
        if sess.app_ping_at is not None:
            conn._quality.record_rtt((now - sess.app_ping_at) * 1000.0)
            sess.app_ping_at = None
    elif isinstance(item, ReplyRequired):
        conn._spawn(send(conn, sess, item.frame))
    elif isinstance(item, ServerNotice):
        conn._emit(_E.SERVER_NOTICE, Severity.WARNING, f"server notice {item.code}: {item.message}")
        _log.info("%s: server notice %s: %s", conn.conn_id, item.code, item.message)
        if item.rotate and sess is conn._primary:
            conn._request_rotation(f"server notice {item.code}")
    elif isinstance(item, ExchangeError):
        conn.exchange_errors += 1
        conn._emit(_E.ERROR, Severity.ERROR, "exchange error", error=f"{item.code}: {item.message}")
        _log.warning("%s: exchange error %s: %s", conn.conn_id, item.code, item.message)
    elif isinstance(item, Heartbeat):
        conn.heartbeats += 1
