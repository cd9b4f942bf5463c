"""The contract between the connection engine and an exchange's protocol adapter.

Adapters are sans-I/O (see ``docs/architecture.md``): they never open sockets, sleep or read a clock. One adapter
instance serves one (exchange, market). It

- declares its connection policy as data (:class:`ConnectionPolicy`, :class:`KeepalivePolicy`),
- splits subscriptions over connections (:meth:`ExchangeAdapter.plan_connections`, implemented once here from
  the limits in :class:`ConnectionPolicy` and the adapter's :meth:`~ExchangeAdapter.route` hook),
- turns subscriptions into frames (:meth:`ExchangeAdapter.requests`),
- turns each received frame into normalized events and control signals (:meth:`ExchangeAdapter.decode`),
- says how its L2 books are synced (:class:`BookSyncSpec`) and builds/parses REST snapshot requests,
- builds and parses the REST requests for its instrument list (:class:`Instrument`: which symbols exist, their
  contract size) and, where the exchange allows it without a key, for trade backfill after an interruption
  (:class:`BackfillCursor`).

Every event an adapter builds carries the feed name it was created with (``feed``: the configuration entry),
the unit of its amounts (:class:`~cryptolink.models.AmountUnit`) and, for contracts, the contract size taken
from the instrument list (:meth:`ExchangeAdapter.set_instruments`).

``decode`` returns a list whose items are :class:`~cryptolink.models.Trade`, :class:`~cryptolink.models.Ticker`,
:class:`BookMessage` (raw, not yet sequence-checked) or one of the control signals :class:`Ack`,
:class:`Rejected`, :class:`Pong`, :class:`ReplyRequired`, :class:`ServerNotice`, :class:`ExchangeError`,
:class:`Heartbeat`. It raises :class:`DecodeError` for a frame it cannot parse; the engine counts and skips it.
"""

from __future__ import annotations

import abc
import zlib
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import ClassVar, Generic, Literal, TypeVar

import msgspec

from cryptolink.errors import CryptolinkError
from cryptolink.models import AmountUnit, Channel, Market, Subscription, Ticker, Trade

__all__ = [
    "MAX_ID_DIGITS",
    "MSGSPEC_ERRORS",
    "Ack",
    "BackfillCursor",
    "BookMessage",
    "BookSyncSpec",
    "BoundedMap",
    "ChecksumSpec",
    "ConnectRateLimit",
    "ConnectionPolicy",
    "ConnectionSpec",
    "ControlSignal",
    "DecodeError",
    "Decoded",
    "ExchangeAdapter",
    "ExchangeError",
    "FrameCompression",
    "FrameDecoder",
    "Heartbeat",
    "InflateRefused",
    "Instrument",
    "JsonInput",
    "KeepalivePolicy",
    "OutboundRequest",
    "Pong",
    "Rejected",
    "ReplyRequired",
    "RestRateLimit",
    "RestRequest",
    "SequenceModel",
    "ServerNotice",
    "SnapshotSource",
    "SymbolCache",
    "decode_json",
    "inflate",
    "uint",
]


class DecodeError(CryptolinkError, ValueError):
    """A received frame could not be parsed (malformed JSON, missing field, wrong type).

    The engine counts it per connection and skips the frame; it never closes a connection by itself.
    """


class InflateRefused(DecodeError):
    """A compressed frame was corrupt or would inflate beyond the bound (a compression bomb).

    Attributes:
        limit_bytes: the bound on the inflated size.
        bomb: the frame exceeded the bound (``False``: the compressed data was corrupt).
    """

    def __init__(self, message: str, *, limit_bytes: int, bomb: bool) -> None:
        super().__init__(message)
        self.limit_bytes = limit_bytes
        self.bomb = bomb


class FrameCompression(StrEnum):
    """How an exchange compresses its binary WebSocket frames."""

    GZIP = "gzip"
    """RFC 1952 gzip members (HTX: every market-data frame)."""
    DEFLATE = "deflate"
    """Raw RFC 1951 deflate without header (OKX's optional compressed frames, Bitget's historical ones)."""


def inflate(data: bytes, compression: FrameCompression, limit_bytes: int) -> bytes:
    """Decompress one binary frame, refusing to produce more than ``limit_bytes`` bytes.

    Inflation stops as soon as the bound is passed, so a compression bomb costs at most ``limit_bytes`` of
    memory.

    Raises:
        InflateRefused: the data is corrupt or truncated (``bomb=False``) or inflates beyond ``limit_bytes``
            (``bomb=True``).
    """
    wbits = 16 + zlib.MAX_WBITS if compression is FrameCompression.GZIP else -zlib.MAX_WBITS
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(data, limit_bytes + 1)
    except zlib.error as exc:
        raise InflateRefused(
            f"corrupt {compression.value} frame: {exc}", limit_bytes=limit_bytes, bomb=False
        ) from None
    if len(out) > limit_bytes:
        raise InflateRefused(
            f"{compression.value} frame inflates beyond {limit_bytes} bytes; refused",
            limit_bytes=limit_bytes,
            bomb=True,
        )
    if not inflater.eof:
        raise InflateRefused(f"truncated {compression.value} frame", limit_bytes=limit_bytes, bomb=False)
    return out


# --------------------------------------------------------------------------------------------------- helpers

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

MSGSPEC_ERRORS = (msgspec.DecodeError, msgspec.ValidationError)
"""What msgspec raises for bad input: an adapter's ``decode`` turns these into one :class:`DecodeError`."""

MAX_ID_DIGITS = 40
"""Longest decimal id :func:`uint` accepts (ids far beyond any exchange's, far below ``int()``'s 4300-digit
limit)."""


def uint(text: str) -> int | None:
    """``text`` as a non-negative integer when it is 1 to :data:`MAX_ID_DIGITS` ASCII digits, else ``None``.

    For ids sent as strings (trade ids, our request ids echoed back): ``str.isdigit`` also accepts digits such
    as ``"²"`` that ``int()`` refuses, and ``int()`` refuses more than 4300 digits, each a ``ValueError`` that
    would escape a decoder instead of a counted :class:`DecodeError`."""
    if 0 < len(text) <= MAX_ID_DIGITS and text.isascii() and text.isdigit():
        return int(text)
    return None


JsonInput = str | bytes | bytearray | memoryview | msgspec.Raw
"""What :func:`decode_json` accepts: a whole frame or a ``msgspec.Raw`` slice of one."""


def decode_json(decoder: msgspec.json.Decoder[T], data: JsonInput, exchange: str, what: str) -> T:
    """Decode ``data`` with a typed msgspec ``decoder``; any msgspec error becomes a :class:`DecodeError`.

    For REST bodies and rare frames. An adapter's per-frame ``decode`` instead wraps its whole body in one
    ``except MSGSPEC_ERRORS`` (a ``try`` costs nothing in CPython 3.11 while a call per payload does).

    The message is ``"<exchange>: <what>: <msgspec's message>"`` (``"binance: malformed trade: Object missing
    required field `p`"``); it is only built when decoding fails (this sits on the per-frame path).

    Raises:
        DecodeError: not JSON, or JSON that does not match the decoder's type.
    """
    try:
        return decoder.decode(data)
    except MSGSPEC_ERRORS as exc:
        raise DecodeError(f"{exchange}: {what}: {exc}") from exc


class BoundedMap(Generic[K, V]):
    """An insertion-ordered map holding at most ``max_size`` entries; adding one more evicts the oldest.

    Every eviction is counted in :attr:`evicted` (nothing is lost silently): use it for state that a
    misbehaving peer could grow without limit, e.g. request id -> subscriptions awaiting an answer, or
    server-assigned channel ids.

    Raises:
        ValueError: ``max_size < 1``.
    """

    __slots__ = ("_data", "evicted", "max_size")

    def __init__(self, max_size: int) -> None:
        if max_size < 1:
            raise ValueError(f"BoundedMap max_size must be >= 1, got {max_size}")
        self.max_size = max_size
        self.evicted = 0
        """Entries dropped because the map was full."""
        self._data: dict[K, V] = {}

    def put(self, key: K, value: V) -> None:
        """Insert or replace ``key`` (a replaced key moves to the newest position)."""
        data = self._data
        if key in data:
            del data[key]
        elif len(data) >= self.max_size:
            del data[next(iter(data))]
            self.evicted += 1
        data[key] = value

    def get(self, key: K) -> V | None:
        """The value of ``key``, or ``None``."""
        return self._data.get(key)

    def pop(self, key: K) -> V | None:
        """Remove ``key`` and return its value, or ``None`` when absent."""
        return self._data.pop(key, None)

    def clear(self) -> None:
        """Remove every entry (the eviction count stays)."""
        self._data.clear()

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def items(self) -> list[tuple[K, V]]:
        """The entries, oldest first (a copy)."""
        return list(self._data.items())


class SymbolCache:
    """Unified symbol <-> exchange symbol, in both directions.

    Two kinds of entries:

    - :meth:`pin`: a pair learnt from a subscription (``exchange_symbol(unified)``); kept for the adapter's
      life (their number is bounded by the configuration) and always wins over a guess.
    - :meth:`unified`: a best-effort unified form computed for an exchange symbol nobody subscribed to (a
      frame for an unknown instrument); at most ``max_guesses`` are kept, the oldest evicted first and counted
      in :attr:`evicted`.

    Raises:
        ValueError: ``max_guesses < 1``.
    """

    __slots__ = ("_guesses", "_to_exchange", "_to_unified")

    def __init__(self, max_guesses: int = 10_000) -> None:
        self._to_exchange: dict[str, str] = {}
        self._to_unified: dict[str, str] = {}
        self._guesses: BoundedMap[str, str] = BoundedMap(max_guesses)

    @property
    def evicted(self) -> int:
        """Guessed entries dropped because the cache was full."""
        return self._guesses.evicted

    def pin(self, unified: str, exchange_symbol: str) -> None:
        """Remember that ``unified`` is ``exchange_symbol`` on the exchange (kept for good)."""
        self._to_exchange[unified] = exchange_symbol
        self._to_unified[exchange_symbol] = unified

    def exchange_symbol(self, unified: str) -> str | None:
        """The pinned exchange symbol of ``unified``, or ``None``."""
        return self._to_exchange.get(unified)

    @property
    def pinned(self) -> dict[str, str]:
        """Exchange symbol -> unified symbol of the pinned pairs (the live dict: read it, never write it). A
        per-frame lookup reads it first and calls :meth:`unified` only on a miss."""
        return self._to_unified

    def unified(self, exchange_symbol: str, guess: Callable[[str], str]) -> str:
        """The unified symbol of ``exchange_symbol``: the pinned one, else ``guess(exchange_symbol)`` (cached)."""
        hit = self._to_unified.get(exchange_symbol)
        if hit is not None:
            return hit
        hit = self._guesses.get(exchange_symbol)
        if hit is None:
            hit = guess(exchange_symbol)
            self._guesses.put(exchange_symbol, hit)
        return hit

    def __len__(self) -> int:
        return len(self._to_exchange) + len(self._guesses)


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

    ``op`` is ``None`` when the frame does not say which (Binance ``{"result":null,"id":N}``): the engine
    resolves it from ``request_id`` in the registry of the socket the ack came on. ``subscriptions`` is filled
    when the ack names them (OKX echoes each ``arg``); when empty, the engine resolves them from
    ``request_id``.
    """

    op: Literal["subscribe", "unsubscribe"] | None
    request_id: int | str | None
    subscriptions: tuple[Subscription, ...] = ()


class Rejected(msgspec.Struct, frozen=True):
    """The exchange refused a request (Binance ``{"code":..,"msg":..,"id":..}``, OKX ``event:"error"``).

    ``subscriptions`` is filled when the frame names them; otherwise the engine resolves them from
    ``request_id`` in the registry of the socket it came on. A rejection is reported as an error and is never
    retried in a loop.
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
    """An error frame that is not tied to one of our subscribe requests.

    ``subscription`` is the subscription the error concerns when the frame says which (HTX: an error answering the
    snapshot ``req`` of a book): the feed then fails that book's snapshot request at once instead of waiting for
    its timeout.
    """

    code: str
    message: str
    subscription: Subscription | None = None


class Heartbeat(msgspec.Struct, frozen=True):
    """A server heartbeat that carries no market data. It never resets a data watchdog."""


ControlSignal = Ack | Rejected | Pong | ReplyRequired | ServerNotice | ExchangeError | Heartbeat
Decoded = Trade | Ticker | BookMessage | ControlSignal

FrameDecoder = Callable[[str | bytes, int], list[Decoded]]
"""``(frame, receipt_ns) -> events``: what :meth:`ExchangeAdapter.session_decoder` returns. Binary frames of an
adapter whose policy declares a :class:`FrameCompression` arrive already inflated (``bytes``)."""


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
class RestRateLimit:
    """An exchange's documented REST limit for the endpoints an adapter uses: ``weight`` per ``window_s``
    seconds per IP (Binance spot REQUEST_WEIGHT 6000 per minute).

    ``ban_statuses`` are HTTP statuses other than 429/418 by which the exchange says the IP is over its limit and
    banned for a while (Bybit: 403 "access too frequent", stop for at least 10 minutes). The REST budgets read the
    exchange's answers from their own rules (:mod:`cryptolink.rest.costs`); this record documents the adapter's
    view of the limit.

    Raises:
        ValueError: ``weight < 1``, ``window_s <= 0`` or ``ban_pause_s <= 0``.
    """

    weight: int
    window_s: float
    ban_statuses: tuple[int, ...] = ()
    ban_pause_s: float = 600.0

    def __post_init__(self) -> None:
        if self.weight < 1 or not self.window_s > 0 or not self.ban_pause_s > 0:
            raise ValueError(f"invalid REST rate limit {self!r}")


@dataclass(frozen=True, slots=True)
class Instrument:
    """One tradable instrument as the exchange lists it.

    Attributes:
        symbol: unified symbol (``BTC/USDT``, ``BTC/USDT:USDT``, ``BTC/USD:BTC``).
        exchange_symbol: the exchange's id (``BTCUSDT``, ``BTC-USDT-SWAP``).
        active: the exchange lists it as trading (Binance ``status: TRADING``, OKX ``state: live``).
        status: the exchange's status text, as sent.
        amount_unit: unit of amounts in its market data.
        contract_size: size of one contract (OKX ``ctVal`` x ``ctMult``), in ``contract_currency``; ``None`` for
            base units.
        contract_currency: currency of ``contract_size`` (OKX ``ctValCcy``: the base for linear swaps, ``USD``
            for inverse ones); ``None`` for base units.
    """

    symbol: str
    exchange_symbol: str
    active: bool
    status: str
    amount_unit: AmountUnit = AmountUnit.BASE
    contract_size: Decimal | None = None
    contract_currency: str | None = None


@dataclass(slots=True)
class BackfillCursor:
    """Progress of one trade backfill: the trades with ids strictly between ``after_id`` (the last delivered
    before the interruption) and ``before_id`` (the first delivered after it).

    The feed updates ``pages``, ``newest``/``oldest`` (ids fetched so far) and ``last_page_size`` after each
    page; the adapter's :meth:`ExchangeAdapter.backfill_request` says what to fetch next, or ``None`` when done.
    """

    after_id: int
    before_id: int
    pages: int = 0
    newest: int | None = None
    oldest: int | None = None
    last_page_size: int | None = None


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
        app_ping_interval_s: also send ``app_ping_frame`` this often while data flows, to measure the
            round-trip time (OKX has no protocol pings); ``None``: only when idle.
        protocol_ping_interval_s: send a WebSocket protocol ping frame this often (s) to measure round-trip
            latency; ``None`` disables. Servers must answer (RFC 6455 5.5.2).
        pong_timeout_s: a ping (app or protocol) unanswered for this long (s) means the connection is dead.
        server_pings: the server sends protocol ping frames that must be answered with a pong echoing the
            payload (Binance: every 20 s spot / 3 min USDⓈ-M). The transport answers them.
    """

    app_ping_frame: str | None = None
    app_ping_idle_s: float | None = None
    app_ping_interval_s: float | None = None
    protocol_ping_interval_s: float | None = 30.0
    pong_timeout_s: float = 10.0
    server_pings: bool = False


@dataclass(frozen=True, slots=True)
class ConnectRateLimit:
    """An exchange's documented limit on new WebSocket connections: ``max_connects`` per ``window_s`` seconds
    per IP (Binance spot: 300 per 5 min; OKX: 3 per s). The engine's connect gate stays under it.

    Raises:
        ValueError: ``max_connects < 1`` or ``window_s <= 0``.
    """

    max_connects: int
    window_s: float

    def __post_init__(self) -> None:
        if self.max_connects < 1 or not self.window_s > 0:
            raise ValueError(f"invalid connect rate limit {self!r}")


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
        connect_limit: new connections allowed per time window per IP (``None``: not documented).
        compression: binary frames are compressed this way and inflated by the engine before ``decode``
            (``None``: binary frames are passed as received).
        max_inflated_bytes: bound on one frame's inflated size; a frame beyond it is refused and counted
            (:func:`inflate`), never decoded.
        max_subscriptions_per_request: subscriptions one subscribe/unsubscribe request may carry (Binance 200
            ``params``); ``None``: no documented bound. :meth:`ExchangeAdapter.request_batches` obeys it.
        max_request_bytes: bound on the encoded length (bytes) of one subscribe/unsubscribe request (OKX: the
            ``args`` of one request must stay within 64 KB); ``None``: no documented bound.
        max_books_per_connection: book subscriptions one connection may carry (OKX recommends fewer than 30
            400-level book channels per connection); ``None``: only ``max_streams_per_connection`` applies.
            :meth:`ExchangeAdapter.plan_connections` obeys it.
        snapshot_request_interval_s: snapshot requests sent on one connection
            (:attr:`SnapshotSource.WS_REQUEST`) are spaced at least this far apart (HTX: one ``req`` per 100 ms
            per connection); ``None``: no spacing.
    """

    keepalive: KeepalivePolicy
    max_lifetime_s: float | None = None
    max_streams_per_connection: int = 1024
    max_outbound_per_s: float | None = None
    max_subscribe_requests_per_hour: int | None = None
    server_idle_close_s: float | None = None
    max_frame_bytes: int = 4 * 1024 * 1024
    connect_limit: ConnectRateLimit | None = None
    compression: FrameCompression | None = None
    max_inflated_bytes: int = 16 * 1024 * 1024
    max_subscriptions_per_request: int | None = None
    max_request_bytes: int | None = None
    max_books_per_connection: int | None = None
    snapshot_request_interval_s: float | None = None

    def __post_init__(self) -> None:
        for name in (
            "max_streams_per_connection",
            "max_subscriptions_per_request",
            "max_request_bytes",
            "max_books_per_connection",
        ):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"ConnectionPolicy.{name} must be >= 1, got {value!r}")


class SnapshotSource(StrEnum):
    """Where a book's snapshot comes from."""

    REST = "rest"
    """Fetch it over REST and stitch buffered deltas to it (Binance)."""
    WEBSOCKET = "websocket"
    """The stream itself sends a snapshot after subscribing; resync by re-subscribing (OKX)."""
    WS_REQUEST = "ws_request"
    """Ask for it on the book's own connection with a frame (:meth:`ExchangeAdapter.snapshot_frame`, HTX
    ``req``); it comes back on that connection, decoded as a :class:`BookMessage` with ``is_snapshot=True``, and
    is stitched to the buffered deltas exactly as a REST snapshot is (``bridge_offset``, ``sequence``)."""


class SequenceModel(StrEnum):
    """How consecutive book messages prove continuity."""

    CONTIGUOUS = "contiguous"
    """``first_seq == previous last_seq + 1`` (Binance spot ``U``/``u``)."""
    LINKED = "linked"
    """``prev_seq == previous last_seq`` (Binance USDⓈ-M ``pu``, OKX ``prevSeqId``)."""


@dataclass(frozen=True, slots=True)
class ChecksumSpec:
    """A book checksum over the top ``depth`` levels.

    By default a CRC32 with bids and asks interleaved (``bid1px:bid1sz:ask1px:ask1sz:...``), on the original
    strings, compared as a signed int32 when ``signed`` (OKX, Bitget). An exchange with another rule sets
    ``compute``: ``(top bids, top asks) -> checksum`` over the top ``depth`` levels as ``[price, size]``
    strings, best first (Kraken, for one, strips the decimal point and leading zeros before its CRC32).
    """

    depth: int = 25
    signed: bool = True
    compute: Callable[[Sequence[Sequence[str]], Sequence[Sequence[str]]], int] | None = None


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

_REQUEST_ENVELOPE_BYTES = 256


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
    trade_ids_contiguous: ClassVar[bool] = False
    """Trade ids of one symbol increase by exactly 1 (Binance ``a``/``t``): a skipped id is a missing trade."""
    trade_backfill: ClassVar[bool] = False
    """The exchange serves its recent trades over REST without a key (:meth:`backfill_request`)."""
    rest_limit: ClassVar[RestRateLimit | None] = None
    """The REST budget of the endpoints this adapter calls (snapshots, instruments, backfill)."""
    ws_base_url: str
    """Default WebSocket base URL (overridable: ``ws_base_url`` constructor argument)."""
    rest_base_url: str
    """Default REST base URL (overridable: ``rest_base_url`` constructor argument)."""

    def __init__(
        self, *, ws_base_url: str | None = None, rest_base_url: str | None = None, feed: str | None = None
    ) -> None:
        if ws_base_url is not None:
            self.ws_base_url = ws_base_url.rstrip("/")
        if rest_base_url is not None:
            self.rest_base_url = rest_base_url.rstrip("/")
        self.feed: str = feed or self.exchange
        """Name put on every event (``Trade.feed`` ...): the configuration entry."""
        self.contract_sizes: dict[str, Decimal] = {}
        """Unified symbol -> contract size, filled by :meth:`set_instruments`."""

    # symbols -------------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def exchange_symbol(self, symbol: str) -> str:
        """The exchange's id for unified ``symbol`` (``BTC/USDT`` -> ``BTCUSDT``).

        Raises:
            ValueError: ``symbol`` does not belong to this adapter's market (e.g. a spot symbol on a perpetual
                adapter).
        """

    # connections ---------------------------------------------------------------------------------------------
    def route(self, subscription: Subscription) -> str:
        """The URL family ``subscription`` must use (Binance USDⓈ-M ``public``/``market``); ``""`` (the
        default) when the exchange has one URL for everything."""
        return ""

    def connection_url(self, route: str) -> str:
        """The WebSocket URL of connections of ``route`` (default: :attr:`ws_base_url`)."""
        return self.ws_base_url

    def plan_connections(self, subscriptions: Sequence[Subscription]) -> list[ConnectionSpec]:
        """Split ``subscriptions`` over connections, driven by :attr:`policy`.

        Duplicates are dropped (first occurrence kept), every symbol is validated with
        :meth:`exchange_symbol`, subscriptions are grouped by :meth:`route` (groups in order of first
        appearance, input order within a group), and each group is cut into connections of at most
        ``policy.max_streams_per_connection`` subscriptions of which at most ``policy.max_books_per_connection``
        are books.

        Raises:
            ValueError: a symbol does not belong to this adapter's market (from :meth:`exchange_symbol`).
        """
        limit = self.policy.max_streams_per_connection
        book_limit = self.policy.max_books_per_connection
        # route -> finished connections, current connection, books in the current connection
        groups: dict[str, tuple[list[list[Subscription]], list[Subscription], list[int]]] = {}
        for sub in dict.fromkeys(subscriptions):
            self.exchange_symbol(sub.symbol)
            route = self.route(sub)
            group = groups.get(route)
            if group is None:
                group = groups[route] = ([], [], [0])
            done, cur, books = group
            is_book = sub.channel is Channel.BOOK
            if len(cur) >= limit or (is_book and book_limit is not None and books[0] >= book_limit):
                done.append(cur[:])
                cur.clear()
                books[0] = 0
            cur.append(sub)
            books[0] += is_book
        out: list[ConnectionSpec] = []
        for route, (done, cur, _) in groups.items():
            url = self.connection_url(route)
            for chunk in [*done, cur]:
                if chunk:
                    out.append(ConnectionSpec(url=url, subscriptions=tuple(chunk), route=route))
        return out

    def request_batches(
        self, subscriptions: Sequence[Subscription], item_bytes: Callable[[Subscription], int]
    ) -> list[tuple[Subscription, ...]]:
        """Cut ``subscriptions`` (duplicates dropped, order kept) into the batches of one subscribe or
        unsubscribe request each, under ``policy.max_subscriptions_per_request`` and
        ``policy.max_request_bytes``.

        ``item_bytes(sub)`` is the encoded length of ``sub``'s part of a request, separator included; 256
        bytes of each request are reserved for its envelope (method, id, brackets). A single subscription
        larger than the byte bound still gets a request of its own (the exchange will reject it; it is not
        dropped silently).
        """
        per_request = self.policy.max_subscriptions_per_request
        max_bytes = self.policy.max_request_bytes
        budget = None if max_bytes is None else max_bytes - _REQUEST_ENVELOPE_BYTES
        out: list[tuple[Subscription, ...]] = []
        cur: list[Subscription] = []
        size = 0
        for sub in dict.fromkeys(subscriptions):
            n = item_bytes(sub) if budget is not None else 0
            full = per_request is not None and len(cur) >= per_request
            if cur and (full or (budget is not None and size + n > budget)):
                out.append(tuple(cur))
                cur, size = [], 0
            cur.append(sub)
            size += n
        if cur:
            out.append(tuple(cur))
        return out

    def counters(self) -> dict[str, int]:
        """Protocol-state counters of this adapter, for stats (``{name: count}``; e.g. entries evicted from a
        bounded cache). The default has none."""
        return {}

    @abc.abstractmethod
    def requests(
        self,
        op: Literal["subscribe", "unsubscribe"],
        subscriptions: Sequence[Subscription],
        next_id: int,
        now_ms: int | None = None,
    ) -> list[OutboundRequest]:
        """Frames that ``op`` (subscribe or unsubscribe) ``subscriptions``, batched as the exchange allows;
        request ids start at ``next_id`` and increase by 1. ``now_ms`` is the engine's wall-clock time (epoch
        ms) when the frames are built, for protocols that stamp requests (Gate's ``time``, which must be within
        60 s of the server's); adapters whose frames carry no time ignore it."""

    def subscribe_requests(
        self, subscriptions: Sequence[Subscription], next_id: int, now_ms: int | None = None
    ) -> list[OutboundRequest]:
        """Frames that subscribe ``subscriptions`` (see :meth:`requests`)."""
        return self.requests("subscribe", subscriptions, next_id, now_ms)

    def unsubscribe_requests(
        self, subscriptions: Sequence[Subscription], next_id: int, now_ms: int | None = None
    ) -> list[OutboundRequest]:
        """Frames that unsubscribe ``subscriptions`` (see :meth:`requests`)."""
        return self.requests("unsubscribe", subscriptions, next_id, now_ms)

    @abc.abstractmethod
    def decode(self, frame: str | bytes, receipt_ns: int) -> list[Decoded]:
        """Turn one received frame into events and control signals (possibly none).

        Raises:
            DecodeError: the frame is malformed.
        """

    def session_decoder(self) -> FrameDecoder:
        """The decoder of one new WebSocket session (called once per connection, before its first frame).

        Stateless protocols return :meth:`decode` (the default). A protocol whose frames only make sense with
        per-connection state returns a fresh decoder holding it, so that state lives and dies with the session:
        Bitfinex's numeric channel ids (``chanId``), assigned by the server in each subscribe answer, are valid
        on that socket only.
        """
        return self.decode

    def connect_request(self, spec: ConnectionSpec) -> RestRequest | None:
        """A REST request to make before opening ``spec``'s socket (a token or a URL to fetch first, e.g.
        KuCoin's ``bullet-public``), or ``None`` (the default) to connect to ``spec.url`` directly."""
        return None

    def connect_url(self, spec: ConnectionSpec, body: bytes) -> str:
        """The URL to open, given the body answering :meth:`connect_request`.

        Raises:
            DecodeError: the body does not carry what the connection needs.
        """
        return spec.url

    # books ---------------------------------------------------------------------------------------------------
    def snapshot_request(self, subscription: Subscription) -> RestRequest | None:
        """The REST request for a book snapshot, or ``None`` when snapshots come over the WebSocket."""
        return None

    def snapshot_frame(self, subscription: Subscription, request_id: int) -> str | None:
        """The frame that asks for a book snapshot on the book's own WebSocket connection (sources
        :attr:`SnapshotSource.WS_REQUEST`: HTX ``{"req":"market.btcusdt.mbp.150","id":"N"}``), or ``None``.
        The answer is decoded by :meth:`decode` as a :class:`BookMessage` with ``is_snapshot=True``; an error
        answer as an :class:`ExchangeError` (the engine retries after its snapshot timeout)."""
        return None

    def parse_snapshot(self, body: bytes, subscription: Subscription, receipt_ns: int) -> BookMessage:
        """Parse a REST snapshot response into a :class:`BookMessage` with ``is_snapshot=True``.

        Raises:
            DecodeError: the body is not a valid snapshot.
        """
        raise NotImplementedError(f"{self.exchange} books are snapshotted over the WebSocket")

    # instruments ---------------------------------------------------------------------------------------------
    def amount_unit(self, symbol: str) -> AmountUnit:
        """Unit of amounts in the market data of unified ``symbol`` (base currency unless overridden)."""
        return AmountUnit.BASE

    @abc.abstractmethod
    def instruments_request(self) -> RestRequest:
        """The REST request that lists this market's instruments (Binance ``exchangeInfo``, OKX
        ``/api/v5/public/instruments``)."""

    def instruments_requests(self) -> list[RestRequest]:
        """Every REST request that lists this market's instruments, each answer parsed by
        :meth:`parse_instruments` and the results joined (default: ``[instruments_request()]``). An exchange that
        lists one market under several categories overrides it (Bybit perpetuals: ``category=linear`` and
        ``category=inverse``)."""
        return [self.instruments_request()]

    @abc.abstractmethod
    def parse_instruments(self, body: bytes) -> list[Instrument]:
        """Parse the instrument list (only this adapter's market; unknown kinds skipped).

        Raises:
            DecodeError: the body is not an instrument list.
        """

    def set_instruments(self, instruments: Iterable[Instrument]) -> None:
        """Remember the contract sizes of ``instruments`` (put on every event of those symbols)."""
        for inst in instruments:
            if inst.contract_size is not None:
                self.contract_sizes[inst.symbol] = inst.contract_size

    # trade backfill -------------------------------------------------------------------------------------------
    def backfill_request(self, subscription: Subscription, cursor: BackfillCursor) -> RestRequest | None:
        """The next REST page of trades between ``cursor.after_id`` and ``cursor.before_id`` (exclusive), or
        ``None`` when the backfill is complete or the exchange offers no keyless trade history."""
        return None

    def parse_trades(self, body: bytes, subscription: Subscription, receipt_ns: int) -> list[Trade]:
        """Parse a trade-history page into trades (:class:`~cryptolink.models.Trade`, ``backfilled=True``),
        in any order.

        Raises:
            DecodeError: the body is not a trade list.
        """
        raise NotImplementedError(f"{self.exchange} offers no trade backfill")
