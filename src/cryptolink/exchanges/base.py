"""The contract between the connection engine and an exchange's protocol adapter.

Adapters are sans-I/O (see ``docs/architecture.md``): they never open sockets, sleep or read a clock. One adapter
instance serves one (exchange, market). It

- declares its connection policy as data (:class:`ConnectionPolicy`, :class:`KeepalivePolicy`),
- splits subscriptions over connections (:meth:`ExchangeAdapter.plan_connections`),
- turns subscriptions into frames (:meth:`ExchangeAdapter.requests`),
- turns each received frame into normalized events and control signals (:meth:`ExchangeAdapter.decode`),
- says how its L2 books are synced (:class:`BookSyncSpec`) and builds/parses REST snapshot requests.

``decode`` returns a list whose items are :class:`~cryptolink.models.Trade`, :class:`~cryptolink.models.Ticker`,
:class:`BookMessage` (raw, not yet sequence-checked) or one of the control signals :class:`Ack`,
:class:`Rejected`, :class:`Pong`, :class:`ReplyRequired`, :class:`ServerNotice`, :class:`ExchangeError`,
:class:`Heartbeat`. It raises :class:`DecodeError` for a frame it cannot parse; the engine counts and skips it.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

import msgspec

from cryptolink.models import Market, Subscription, Ticker, Trade

__all__ = [
    "Ack",
    "BookMessage",
    "BookSyncSpec",
    "ChecksumSpec",
    "ConnectionPolicy",
    "ConnectionSpec",
    "ControlSignal",
    "DecodeError",
    "Decoded",
    "ExchangeAdapter",
    "ExchangeError",
    "Heartbeat",
    "KeepalivePolicy",
    "OutboundRequest",
    "Pong",
    "Rejected",
    "ReplyRequired",
    "RestRequest",
    "SequenceModel",
    "ServerNotice",
    "SnapshotSource",
]


class DecodeError(ValueError):
    """A received frame could not be parsed (malformed JSON, missing field, wrong type).

    The engine counts it per connection and skips the frame; it never closes a connection by itself.
    """


# --------------------------------------------------------------------------------------------------- decode output


class BookMessage(msgspec.Struct, gc=False):
    """A raw L2 book message as the exchange sent it, before sequence and checksum checks.

    Levels are ``[price, size]`` strings exactly as received (checksums are computed on the original text).

    Attributes:
        symbol: unified symbol.
        exchange_symbol: the exchange's id for it.
        is_snapshot: replaces the book (OKX ``action:"snapshot"``, a parsed REST snapshot).
        first_seq: first update id covered (Binance ``U``; for snapshots and OKX equal to ``last_seq``).
        last_seq: last update id covered (Binance ``u`` / snapshot ``lastUpdateId``, OKX ``seqId``).
        prev_seq: id of the previous message in a linked chain (Binance USDⓈ-M ``pu``, OKX ``prevSeqId``;
            ``None`` where the exchange has no link field, e.g. Binance spot; ``-1`` on OKX snapshots).
        checksum: the exchange's checksum when it sent a non-zero one (OKX legacy CRC32), else ``None``.
        timestamp_ms: exchange event time, epoch ms.
        receipt_ns: local receipt wall-clock time, epoch ns.
    """

    symbol: str
    exchange_symbol: str
    is_snapshot: bool
    bids: list[list[str]]
    asks: list[list[str]]
    first_seq: int
    last_seq: int
    prev_seq: int | None
    checksum: int | None
    timestamp_ms: int | None
    receipt_ns: int


class Ack(msgspec.Struct, frozen=True):
    """The exchange confirmed a subscribe or unsubscribe request.

    ``subscriptions`` is filled when the ack names them (OKX echoes each ``arg``); when empty, the engine resolves
    them from ``request_id`` (Binance acks only echo the id).
    """

    op: Literal["subscribe", "unsubscribe"]
    request_id: int | str | None
    subscriptions: tuple[Subscription, ...] = ()


class Rejected(msgspec.Struct, frozen=True):
    """The exchange refused a request (Binance ``{"code":..,"msg":..,"id":..}``, OKX ``event:"error"``).

    A rejection is reported as an error and is never retried in a loop.
    """

    request_id: int | str | None
    code: str
    message: str
    subscriptions: tuple[Subscription, ...] = ()


class Pong(msgspec.Struct, frozen=True):
    """An application-level pong (OKX text ``pong``) answering our keepalive ping."""


class ReplyRequired(msgspec.Struct, frozen=True):
    """The server sent an application-level ping that must be answered with ``frame`` (HTX ``{"ping":ts}``)."""

    frame: str


class ServerNotice(msgspec.Struct, frozen=True):
    """The server announced that this connection will end (Binance ``serverShutdown``, OKX notice ``64008``).

    ``rotate`` asks the engine to replace the connection (make before break) before it is closed.
    """

    code: str
    message: str
    rotate: bool = True


class ExchangeError(msgspec.Struct, frozen=True):
    """An error frame that is not tied to one of our requests."""

    code: str
    message: str


class Heartbeat(msgspec.Struct, frozen=True):
    """A server heartbeat that carries no market data. It never resets a data watchdog."""


ControlSignal = Ack | Rejected | Pong | ReplyRequired | ServerNotice | ExchangeError | Heartbeat
Decoded = Trade | Ticker | BookMessage | ControlSignal


# --------------------------------------------------------------------------------------------------- requests


@dataclass(frozen=True, slots=True)
class OutboundRequest:
    """A frame to send, with the request id it carries and the subscriptions it concerns."""

    frame: str
    request_id: int | str | None
    op: Literal["subscribe", "unsubscribe"]
    subscriptions: tuple[Subscription, ...]


@dataclass(frozen=True, slots=True)
class RestRequest:
    """A REST GET to make (e.g. a book snapshot).

    ``path`` is appended to the adapter's REST base URL; ``weight`` is the exchange's request weight for it
    (Binance ``/api/v3/depth`` limit 1000: 50).
    """

    path: str
    params: dict[str, str]
    weight: int = 1


@dataclass(frozen=True, slots=True)
class ConnectionSpec:
    """One WebSocket connection the adapter wants: its URL and the subscriptions that belong on it.

    ``route`` names the URL family (Binance USDⓈ-M ``public``/``market``) so that replacement connections keep
    the same routing.
    """

    url: str
    subscriptions: tuple[Subscription, ...]
    route: str = ""


# --------------------------------------------------------------------------------------------------- policies


@dataclass(frozen=True, slots=True)
class KeepalivePolicy:
    """Who pings, how, and when a connection is judged dead.

    Attributes:
        app_ping_frame: text frame we send as an application ping (OKX ``"ping"``); ``None``: no app pings.
        app_ping_idle_s: send ``app_ping_frame`` after this many seconds without receiving anything
            (OKX: "if no message is received within N < 30 s").
        protocol_ping_interval_s: send a WebSocket protocol ping frame this often (s) to measure round-trip
            latency; ``None`` disables. Servers must answer (RFC 6455 5.5.2).
        pong_timeout_s: a ping (app or protocol) unanswered for this long (s) means the connection is dead.
        server_pings: the server sends protocol ping frames that must be answered with a pong echoing the
            payload (Binance: every 20 s spot / 3 min USDⓈ-M). The transport answers them.
    """

    app_ping_frame: str | None = None
    app_ping_idle_s: float | None = None
    protocol_ping_interval_s: float | None = 30.0
    pong_timeout_s: float = 10.0
    server_pings: bool = False


@dataclass(frozen=True, slots=True)
class ConnectionPolicy:
    """Limits and rules of one exchange's WebSocket, as its documentation states them.

    Attributes:
        keepalive: the ping rule.
        max_lifetime_s: the server closes connections after this long (Binance 24 h); the engine rotates before.
        max_streams_per_connection: subscriptions per connection (Binance 1024).
        max_outbound_per_s: messages per second we may send on one connection, control frames included
            (Binance spot 5, USDⓈ-M 10).
        max_subscribe_requests_per_hour: subscribe/unsubscribe requests per hour per connection (OKX 480).
        server_idle_close_s: the server closes a connection that received no subscription or data this long
            (OKX 30 s).
        max_frame_bytes: largest frame accepted; larger frames are counted and the connection is reset.
    """

    keepalive: KeepalivePolicy
    max_lifetime_s: float | None = None
    max_streams_per_connection: int = 1024
    max_outbound_per_s: float | None = None
    max_subscribe_requests_per_hour: int | None = None
    server_idle_close_s: float | None = None
    max_frame_bytes: int = 4 * 1024 * 1024


class SnapshotSource(StrEnum):
    """Where a book's snapshot comes from."""

    REST = "rest"
    """Fetch it over REST and stitch buffered deltas to it (Binance)."""
    WEBSOCKET = "websocket"
    """The stream itself sends a snapshot after subscribing; resync by re-subscribing (OKX)."""


class SequenceModel(StrEnum):
    """How consecutive book messages prove continuity."""

    CONTIGUOUS = "contiguous"
    """``first_seq == previous last_seq + 1`` (Binance spot ``U``/``u``)."""
    LINKED = "linked"
    """``prev_seq == previous last_seq`` (Binance USDⓈ-M ``pu``, OKX ``prevSeqId``)."""


@dataclass(frozen=True, slots=True)
class ChecksumSpec:
    """A CRC32 book checksum: over the top ``depth`` levels, bids and asks interleaved
    (``bid1px:bid1sz:ask1px:ask1sz:...``), on the original strings, compared as a signed int32 when ``signed``.
    """

    depth: int = 25
    signed: bool = True


@dataclass(frozen=True, slots=True)
class BookSyncSpec:
    """How an adapter's L2 books are synced.

    Attributes:
        source: REST snapshot + stitching, or WebSocket snapshot.
        sequence: continuity rule between consecutive messages.
        bridge_offset: with a REST snapshot whose id is ``L``: deltas with ``last_seq < L + bridge_offset`` are
            stale and dropped, and the first applied delta must satisfy
            ``first_seq <= L + bridge_offset <= last_seq`` (Binance spot: 1; USDⓈ-M: 0).
        checksum: checksum rule, or ``None``.
        max_buffered_deltas: bound on deltas buffered while a snapshot is fetched.
    """

    source: SnapshotSource
    sequence: SequenceModel
    bridge_offset: int = 1
    checksum: ChecksumSpec | None = None
    max_buffered_deltas: int = 10_000


# --------------------------------------------------------------------------------------------------- the adapter


class ExchangeAdapter(abc.ABC):
    """Sans-I/O protocol adapter of one exchange and market.

    Subclasses set the class attributes and implement the abstract methods. An instance may keep protocol
    state (the symbol map built from subscriptions, channel ids), never I/O state.
    """

    exchange: str
    """Exchange id as ccxt names it (``binance``, ``okx``)."""
    market: Market
    policy: ConnectionPolicy
    book_sync: BookSyncSpec
    ws_base_url: str
    """Default WebSocket base URL (overridable: ``ws_base_url`` constructor argument)."""
    rest_base_url: str
    """Default REST base URL (overridable: ``rest_base_url`` constructor argument)."""

    def __init__(self, *, ws_base_url: str | None = None, rest_base_url: str | None = None) -> None:
        if ws_base_url is not None:
            self.ws_base_url = ws_base_url.rstrip("/")
        if rest_base_url is not None:
            self.rest_base_url = rest_base_url.rstrip("/")

    # symbols -------------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def exchange_symbol(self, symbol: str) -> str:
        """The exchange's id for unified ``symbol`` (``BTC/USDT`` -> ``BTCUSDT``).

        Raises:
            ValueError: ``symbol`` does not belong to this adapter's market (e.g. a spot symbol on a perpetual
                adapter).
        """

    # connections ---------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def plan_connections(self, subscriptions: Sequence[Subscription]) -> list[ConnectionSpec]:
        """Split ``subscriptions`` over connections respecting routing and per-connection limits."""

    @abc.abstractmethod
    def requests(
        self, op: Literal["subscribe", "unsubscribe"], subscriptions: Sequence[Subscription], next_id: int
    ) -> list[OutboundRequest]:
        """Frames that ``op`` (subscribe or unsubscribe) ``subscriptions``, batched as the exchange allows;
        request ids start at ``next_id`` and increase by 1."""

    def subscribe_requests(
        self, subscriptions: Sequence[Subscription], next_id: int
    ) -> list[OutboundRequest]:
        """Frames that subscribe ``subscriptions`` (see :meth:`requests`)."""
        return self.requests("subscribe", subscriptions, next_id)

    def unsubscribe_requests(
        self, subscriptions: Sequence[Subscription], next_id: int
    ) -> list[OutboundRequest]:
        """Frames that unsubscribe ``subscriptions`` (see :meth:`requests`)."""
        return self.requests("unsubscribe", subscriptions, next_id)

    @abc.abstractmethod
    def decode(self, frame: str | bytes, receipt_ns: int) -> list[Decoded]:
        """Turn one received frame into events and control signals (possibly none).

        Raises:
            DecodeError: the frame is malformed.
        """

    # books ---------------------------------------------------------------------------------------------------
    def snapshot_request(self, subscription: Subscription) -> RestRequest | None:
        """The REST request for a book snapshot, or ``None`` when snapshots come over the WebSocket."""
        return None

    def parse_snapshot(self, body: bytes, subscription: Subscription, receipt_ns: int) -> BookMessage:
        """Parse a REST snapshot response into a :class:`BookMessage` with ``is_snapshot=True``.

        Raises:
            DecodeError: the body is not a valid snapshot.
        """
        raise NotImplementedError(f"{self.exchange} books are snapshotted over the WebSocket")
