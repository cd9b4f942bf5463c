"""Immutable statistics snapshots: one per connection (:class:`ConnectionStats`) and totals
(:class:`TotalStats`).

Every view (status API, metrics, reports, caches) reads these same snapshots; nothing holds a live reference
into a connection.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from cryptolink.engine.quality import ConnectionQuality
from cryptolink.engine.state import ACTIVE_STATES, ConnectionState

__all__ = ["ConnectionStats", "StreamStatus", "TotalStats", "combine"]


@dataclass(frozen=True, slots=True)
class StreamStatus:
    """One subscription of a connection at one instant.

    Attributes:
        channel / symbol: the subscription (``trades``/``ticker``/``book``, unified symbol).
        state: ``confirmed`` (acknowledged), ``pending`` (asked, no answer yet), ``unsent`` (waiting for a
            socket) or ``rejected`` (refused by the exchange).
        data_age_s: seconds since its last market data on the current socket (``None``: none since the socket
            opened, or not watched).
        threshold_s: the silence its data watchdog allows now, learned from the stream's own rhythm
            (:mod:`cryptolink.engine.watchdog`), s (``None``: not watched).
        stale: the watchdog fired and no data came since.
    """

    channel: str
    symbol: str
    state: str
    data_age_s: float | None
    threshold_s: float | None
    stale: bool


@dataclass(frozen=True, slots=True)
class ConnectionStats:
    """Counters and state of one logical connection at one instant.

    Attributes:
        connection_id / exchange / url / route: identity (``route`` as in ``ConnectionSpec.route``).
        state: current :class:`~cryptolink.engine.state.ConnectionState`.
        messages: frames received (all sessions, all kinds); bytes: their size (UTF-8 bytes for text frames).
        market_events: trades, tickers and book messages delivered to the callback.
        errors: decode errors + adapter errors + refused binary frames + exchange errors + callback errors +
            transport errors + book errors.
        decode_errors: malformed frames (the adapter raised ``DecodeError``) counted and skipped.
        adapter_errors: frames on which the adapter raised anything else (a bug in the adapter; logged with
            its traceback), counted and skipped; never counted in ``decode_errors``.
        inflate_refused: binary frames the engine could not inflate (corrupt, or beyond
            ``ConnectionPolicy.max_inflated_bytes``: a compression bomb), counted and skipped.
        oversized_frames: frames over ``max_frame_bytes`` (each reset the session).
        callback_errors: exceptions raised by the data callback (isolated).
        exchange_errors: error frames and rejections from the exchange.
        transport_errors: failed connects, failed sends, oversized frames.
        book_errors: book checksum mismatches reported by the feed.
        ignored_frames: well-formed frames that carried nothing we handle (e.g. a stream we did not ask for).
        reconnect_attempts: attempts after the first connect; successful_reconnects: those that opened a
            socket; failed_connects: attempts (the first included) that could not open a socket.
        disconnections: sessions that ended (asked for or not; a rotation's old socket is not counted), so
            sessions opened = 1 + successful_reconnects = disconnections (+ 1 while connected).
        unexpected_disconnections: those that ended without being asked to.
        downtime_s / uptime_s: time spent not connected / connected (incl. unstable) since start, s.
        connected_since_ns: wall time (epoch ns) the current session opened; ``None`` when not connected.
        last_message_age_s: seconds since the last received frame; ``None`` before any.
        subscriptions_confirmed / _pending / _rejected: registry sizes; subscriptions_stale: desired
            subscriptions whose data watchdog fired and that had no data since.
        rotations: completed make-before-break rotations.
        last_disconnect_reason: why the last session ended (``""``: none ended yet).
        quality: the quality snapshot.
        adapter_errors / inflate_refused: see above.
        last_connected_ns / last_disconnected_ns: wall time (epoch ns) a session last opened / ended (``None``:
            never).
        last_error / last_error_ns: the latest event of severity error or critical (its error text, else its
            description) and its wall time (epoch ns); ``None``: none yet.
        streams: every desired or rejected subscription (:class:`StreamStatus`).
        stall_detections: data watchdog reports since start: a subscription found silent past its threshold
            (each report counts; a still-silent one is re-reported with exponential backoff) plus the whole
            connection found silent (which resets the session).
    """

    connection_id: str
    exchange: str
    url: str
    route: str
    state: ConnectionState
    messages: int
    bytes: int
    market_events: int
    errors: int
    decode_errors: int
    oversized_frames: int
    callback_errors: int
    exchange_errors: int
    transport_errors: int
    book_errors: int
    ignored_frames: int
    reconnect_attempts: int
    successful_reconnects: int
    failed_connects: int
    disconnections: int
    unexpected_disconnections: int
    downtime_s: float
    uptime_s: float
    connected_since_ns: int | None
    last_message_age_s: float | None
    subscriptions_confirmed: int
    subscriptions_pending: int
    subscriptions_rejected: int
    subscriptions_stale: int
    rotations: int
    last_disconnect_reason: str
    quality: ConnectionQuality
    adapter_errors: int = 0
    inflate_refused: int = 0
    last_connected_ns: int | None = None
    last_disconnected_ns: int | None = None
    last_error: str | None = None
    last_error_ns: int | None = None
    streams: tuple[StreamStatus, ...] = ()
    stall_detections: int = 0


@dataclass(frozen=True, slots=True)
class TotalStats:
    """Sums over many connections (``active``: connected or unstable)."""

    connections: int = 0
    active_connections: int = 0
    messages: int = 0
    errors: int = 0
    reconnect_attempts: int = 0
    successful_reconnects: int = 0
    downtime_s: float = 0.0


def combine(stats: Iterable[ConnectionStats]) -> TotalStats:
    """Sum ``stats`` into one :class:`TotalStats`."""
    n = active = messages = errors = attempts = ok = 0
    down = 0.0
    for s in stats:
        n += 1
        active += s.state in ACTIVE_STATES
        messages += s.messages
        errors += s.errors
        attempts += s.reconnect_attempts
        ok += s.successful_reconnects
        down += s.downtime_s
    return TotalStats(n, active, messages, errors, attempts, ok, down)
