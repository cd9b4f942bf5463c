"""Gate API v4 public protocol adapters (sans-I/O): spot and USDT-settled perpetual futures.

Protocol facts and their official sources are in ``docs/protocols/gate.md`` (Gate "Spot WebSocket v4"
https://www.gate.com/docs/developers/apiv4/ws/en/, "Futures WebSocket v4"
https://www.gate.com/docs/developers/futures/ws/en/, "API v4" https://www.gate.com/docs/developers/apiv4/en/, and
the announcements cited there):

- URLs: spot ``wss://api.gateio.ws/ws/v4/``, USDT perpetuals ``wss://fx-ws.gateio.ws/v4/ws/usdt``; REST
  ``https://api.gateio.ws/api/v4``.
- Requests ``{"time":<unix s>,"id":N,"channel":..,"event":"subscribe"|"unsubscribe","payload":[..]}``; ``time``
  must be within 60 s of the server's clock, so :meth:`GateAdapterBase.requests` needs the engine's wall time
  (``now_ms``). We send one subscription per request (``spot.obu`` allows only one stream per request; the others
  follow for uniform acks and rejections that name exactly one subscription).
- Answers echo ``id``, ``channel``, ``event`` and (current API) ``payload``: ``result.status == "success"`` is an
  :class:`Ack` (so is ``"result": null`` without an ``error``); an ``error`` object ``{code, message}``
  (``result.status == "fail"``) is a :class:`Rejected`, except ``"Alert sub <stream>"`` for a stream we asked
  for (a resent subscribe whose first copy arrived: the stream is live), which is an :class:`Ack`.
  Answers recorded in 2023 carry neither ``id`` nor ``payload``: they decode to an :class:`Ack` the engine resolves
  by id or ignores.
- Keepalive: protocol-level ping/pong both ways (the servers ping the client; the official demo client pings
  every 10 s, as we do); we send no app ping, but a ``*.pong`` answer is decoded as :class:`Pong`.
- Spot channels: ``spot.trades`` (integer ``id`` -> sequence, ``side`` = taker side), ``spot.book_ticker`` (best
  bid/ask with update id ``u``), ``spot.obu`` (``ob.<pair>.400`` every 100 ms or ``ob.<pair>.50`` every 20 ms:
  a ``full`` push replaces the book with id ``u``; an incremental one applies iff ``U == id + 1``, expressed as
  ``prev_seq = U - 1``; a gap resubscribes). The legacy ``spot.order_book_update`` (``U``/``u`` stitched to the
  REST ``with_id`` snapshot) and the 1 s ``spot.tickers`` channel are decoded too.
- Futures channels: ``futures.trades`` (a list per push; ``size`` in contracts, negative when the taker sold),
  ``futures.book_ticker``, ``futures.order_book_update`` (``U``/``u``, levels ``{"p":..,"s":<contracts>}``)
  stitched to ``GET /futures/usdt/order_book?with_id=true``: the first applied update satisfies
  ``U <= id + 1 <= u`` (bridge offset 1), then ``U == previous u + 1``.
- Sizes: spot in base currency; futures in contracts of ``quanto_multiplier`` base units
  (``GET /futures/usdt/contracts``).
- Trade ids: spot ids are unique per market since Gate's 2025 change (before: global across pairs), not
  documented as contiguous; backfill pages
  ``GET /spot/trades?currency_pair=..&last_id=<id>&reverse=true`` (older than ``id``, newest first, <= 1000).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal, InvalidOperation
from typing import ClassVar, Literal

import msgspec

from cryptolink.exchanges.base import (
    MSGSPEC_ERRORS,
    Ack,
    BackfillCursor,
    BookMessage,
    BookSyncSpec,
    BoundedMap,
    ConnectionPolicy,
    Decoded,
    DecodeError,
    ExchangeAdapter,
    ExchangeError,
    Instrument,
    KeepalivePolicy,
    OutboundRequest,
    Pong,
    Rejected,
    RestRateLimit,
    RestRequest,
    SequenceModel,
    SnapshotSource,
    SymbolCache,
    decode_json,
    uint,
)
from cryptolink.exchanges.registry import register
from cryptolink.models import AmountUnit, Channel, Market, Side, Subscription, Ticker, Trade
from cryptolink.symbols import SymbolShape, parse_unified

__all__ = ["GateAdapterBase", "GateFuturesAdapter", "GateSpotAdapter"]

_MAX_ACK_KEYS = 100_000
"""Bound on (channel, payload) -> subscription entries kept to map answers back (evictions are counted)."""
_BACKFILL_PAGE = 1000
"""``GET /spot/trades`` ``limit`` maximum (docs/protocols/gate.md "REST")."""
_ALERT_SUB = "Alert sub "
"""Start of Gate's error message for a depth stream already subscribed on the connection (``spot.obu`` /
``futures.obu``: ``{"code": 2, "message": "Alert sub ob.BTC_USDT.50"}``, docs/protocols/gate.md)."""
_TRADES = Channel.TRADES
_TICKER = Channel.TICKER

_REST_LIMIT = RestRateLimit(weight=200, window_s=10.0)
"""Public REST endpoints: 200 requests per 10 s per endpoint per IP (docs/protocols/gate.md "Limits"); one budget
of that size for every endpoint an adapter calls, the conservative reading."""


# ------------------------------------------------------------------------------------------- wire structs
class _Err(msgspec.Struct):
    code: int | str | None = None
    message: str = ""


class _Status(msgspec.Struct):
    status: str = ""


class _Envelope(msgspec.Struct):
    channel: str = ""
    event: str = ""
    id: int | str | None = None
    payload: list[str] | None = None
    error: _Err | None = None
    result: msgspec.Raw = msgspec.Raw()


class _SpotTrade(msgspec.Struct):
    id: int
    side: str
    currency_pair: str
    amount: Decimal
    price: Decimal
    create_time_ms: str | float | int | None = None
    create_time: int | float | None = None


class _FuturesTrade(msgspec.Struct):
    id: int
    size: int | float | str
    price: Decimal
    contract: str
    create_time_ms: int | float | str | None = None
    create_time: int | float | None = None


class _BookTicker(msgspec.Struct):
    s: str
    b: Decimal | None = None
    B: Decimal | None = None
    a: Decimal | None = None
    A: Decimal | None = None
    u: int | None = None
    t: int | None = None


class _SpotTicker(msgspec.Struct):
    currency_pair: str
    last: str = ""
    lowest_ask: str = ""
    highest_bid: str = ""


class _Obu(msgspec.Struct):
    s: str
    u: int
    b: list[list[str]] = []
    a: list[list[str]] = []
    U: int | None = None
    full: bool = False
    t: int | None = None


class _SpotBookUpdate(msgspec.Struct):
    s: str
    U: int
    u: int
    b: list[list[str]] = []
    a: list[list[str]] = []
    t: int | None = None
    full: bool = False


class _Level(msgspec.Struct):
    p: str
    s: int | float | str


class _FuturesBookUpdate(msgspec.Struct):
    s: str
    U: int
    u: int
    b: list[_Level] = []
    a: list[_Level] = []
    t: int | None = None


class _SpotSnapshot(msgspec.Struct):
    id: int
    bids: list[list[str]]
    asks: list[list[str]]
    current: int | float | None = None


class _FuturesSnapshot(msgspec.Struct):
    id: int
    bids: list[_Level]
    asks: list[_Level]
    current: int | float | None = None


class _CurrencyPair(msgspec.Struct):
    id: str
    base: str = ""
    quote: str = ""
    trade_status: str = ""


class _Contract(msgspec.Struct):
    name: str
    quanto_multiplier: str = ""
    in_delisting: bool = False
    status: str = ""
    type: str = ""


class _RestSpotTrade(msgspec.Struct):
    id: str | int
    side: str
    amount: Decimal
    price: Decimal
    create_time_ms: str | float | int | None = None


_env_decoder = msgspec.json.Decoder(_Envelope)
_status_decoder = msgspec.json.Decoder(_Status | None)
_spot_trade_decoder = msgspec.json.Decoder(_SpotTrade)
_futures_trades_decoder = msgspec.json.Decoder(list[_FuturesTrade])
_book_ticker_decoder = msgspec.json.Decoder(_BookTicker)
_spot_ticker_decoder = msgspec.json.Decoder(_SpotTicker)
_obu_decoder = msgspec.json.Decoder(_Obu)
_spot_update_decoder = msgspec.json.Decoder(_SpotBookUpdate)
_futures_update_decoder = msgspec.json.Decoder(_FuturesBookUpdate)
_spot_snapshot_decoder = msgspec.json.Decoder(_SpotSnapshot)
_futures_snapshot_decoder = msgspec.json.Decoder(_FuturesSnapshot)
_pairs_decoder = msgspec.json.Decoder(list[_CurrencyPair])
_contracts_decoder = msgspec.json.Decoder(list[_Contract])
_rest_trades_decoder = msgspec.json.Decoder(list[_RestSpotTrade])
_json_encoder = msgspec.json.Encoder()


def _ms(value: str | float | int | None) -> int | None:
    """``create_time_ms`` (``"1606292218213.4578"``, a number, or ``None``) as whole epoch milliseconds."""
    if value is None:
        return None
    if isinstance(value, str):
        ms = uint(value.partition(".")[0])
        if ms is None:
            raise DecodeError(f"gate: not a millisecond time: {value!r}")
        return ms
    if value != value or value in (float("inf"), float("-inf")):
        raise DecodeError(f"gate: not a millisecond time: {value!r}")
    return int(value)


def _dec(text: str) -> Decimal | None:
    if not text:
        return None
    try:
        return Decimal(text)
    except InvalidOperation as exc:
        raise DecodeError(f"gate: not a decimal number: {text!r}") from exc


def _size_text(size: int | float | str) -> str:
    """A futures level size (contracts, sent as a JSON number) as the text of a ``[price, size]`` level."""
    if isinstance(size, str):
        return size
    if isinstance(size, float):
        if size != size or size in (float("inf"), float("-inf")):
            raise DecodeError(f"gate: bad level size {size!r}")
        return repr(size)
    return str(size)


def _levels(levels: list[_Level]) -> list[list[str]]:
    return [[lv.p, _size_text(lv.s)] for lv in levels]


class GateAdapterBase(ExchangeAdapter):
    """What Gate spot and USDT perpetual futures share; use :class:`GateSpotAdapter` or :class:`GateFuturesAdapter`.

    Attributes:
        ws_path: path of the WebSocket endpoint under :attr:`ws_base_url`.
        prefix: channel prefix (``spot`` or ``futures``).
    """

    exchange = "gate"
    ccxt_id: ClassVar[str] = "gate"
    rest_base_url = "https://api.gateio.ws"
    rest_limit = _REST_LIMIT
    ws_path: ClassVar[str] = ""
    prefix: ClassVar[str] = ""
    unit: ClassVar[AmountUnit] = AmountUnit.BASE
    policy = ConnectionPolicy(
        # Protocol-level ping/pong, documented for both markets: the spot server checks the client with protocol
        # pings ("Application ping pong"), the futures server sends them and drops a client that does not answer
        # ("Ping and Pong"); the transport answers them. The official demo client sends a protocol ping every
        # 10 s, which we do too, for liveness and the round-trip time. No application ping: ``*.ping`` frames
        # carry a ``time`` (not a static frame) and add nothing the protocol pings do not measure.
        keepalive=KeepalivePolicy(protocol_ping_interval_s=10.0, pong_timeout_s=10.0, server_pings=True),
        max_lifetime_s=None,
        # not documented: our choice, far below what one socket carries comfortably
        max_streams_per_connection=200,
        max_outbound_per_s=None,
        # 300 connections per IP is a cap on open connections, not a connection rate: no connect_limit
        connect_limit=None,
        max_subscriptions_per_request=1,
    )

    def __init__(
        self, *, ws_base_url: str | None = None, rest_base_url: str | None = None, feed: str | None = None
    ) -> None:
        super().__init__(ws_base_url=ws_base_url, rest_base_url=rest_base_url, feed=feed)
        if self.ws_base_url.endswith(self.ws_path.rstrip("/")):  # a full URL given as override
            self.ws_base_url = self.ws_base_url[: -len(self.ws_path.rstrip("/"))]
        for suffix in ("/api/v4", "/api/v4/"):
            if self.rest_base_url.endswith(suffix):
                self.rest_base_url = self.rest_base_url[: -len(suffix)]
        self._symbols = SymbolCache()
        self._pinned = self._symbols.pinned
        # (channel, first payload item) -> the Subscription asked for (answers map back to it)
        self._subs: BoundedMap[tuple[str, str], Subscription] = BoundedMap(_MAX_ACK_KEYS)
        self._handlers: dict[str, Callable[[msgspec.Raw, int], list[Decoded]]] = {}

    # symbols ---------------------------------------------------------------------------------------------
    def exchange_symbol(self, symbol: str) -> str:
        """``BTC/USDT`` -> ``BTC_USDT`` (spot); ``BTC/USDT:USDT`` -> ``BTC_USDT`` (USDT perpetual).

        Raises:
            ValueError: not a unified symbol, or not of this adapter's market.
        """
        cached = self._symbols.exchange_symbol(symbol)
        if cached is not None:
            return cached
        base, quote, settle, expiry = parse_unified(symbol)
        self._check_market(symbol, quote, settle, expiry)
        native = f"{base}_{quote}"
        self._symbols.pin(symbol, native)
        return native

    def _check_market(self, symbol: str, quote: str, settle: str | None, expiry: str | None) -> None:
        raise NotImplementedError

    def _unify(self, native: str) -> str:
        raise NotImplementedError

    def unified_symbol(self, native: str) -> str:
        """The unified symbol of ``native`` (subscribed ones map back exactly, others are guessed)."""
        hit = self._pinned.get(native)
        return hit if hit is not None else self._symbols.unified(native, self._unify)

    def counters(self) -> dict[str, int]:
        """``symbol_cache_evicted`` (guessed unified symbols dropped) and ``ack_keys_evicted`` ((channel,
        payload) entries dropped from the bounded answer map)."""
        return {"symbol_cache_evicted": self._symbols.evicted, "ack_keys_evicted": self._subs.evicted}

    def amount_unit(self, symbol: str) -> AmountUnit:
        """Base currency on spot, contracts on futures."""
        return self.unit

    # connections -----------------------------------------------------------------------------------------
    def connection_url(self, route: str) -> str:
        """``<ws_base_url><ws_path>`` (spot ``/ws/v4/``, USDT futures ``/v4/ws/usdt``)."""
        return self.ws_base_url + self.ws_path

    def channel_payload(self, sub: Subscription) -> tuple[str, list[str]]:
        """The channel name and payload that subscribe ``sub``."""
        raise NotImplementedError

    def requests(
        self,
        op: Literal["subscribe", "unsubscribe"],
        subscriptions: Sequence[Subscription],
        next_id: int,
        now_ms: int | None = None,
    ) -> list[OutboundRequest]:
        """One ``{"time":<unix s>,"id":N,"channel":..,"event":op,"payload":[..]}`` frame per subscription.

        Raises:
            ValueError: ``now_ms`` is ``None`` (Gate refuses requests whose ``time`` is more than 60 s away from
                its clock, so the frame must carry the engine's wall time), or a symbol of another market.
        """
        if now_ms is None:
            raise ValueError("gate requests carry the wall-clock time: pass now_ms (epoch ms)")
        now_s = now_ms // 1000
        out: list[OutboundRequest] = []
        for chunk in self.request_batches(subscriptions, lambda s: 0):
            rid = next_id + len(out)
            channel, payload = self.channel_payload(chunk[0])
            self._subs.put((channel, payload[0]), chunk[0])
            frame = _json_encoder.encode(
                {"time": now_s, "id": rid, "channel": channel, "event": op, "payload": payload}
            ).decode()
            out.append(OutboundRequest(frame=frame, request_id=rid, op=op, subscriptions=chunk))
        return out

    # decoding --------------------------------------------------------------------------------------------
    def _answer_subs(self, channel: str, payload: list[str] | None) -> tuple[Subscription, ...]:
        if not payload:
            return ()
        hit = self._subs.get((channel, payload[0]))
        return (hit,) if hit is not None else ()

    def decode(self, frame: str | bytes, receipt_ns: int) -> list[Decoded]:
        """Decode one frame.

        Returns market data (``Trade``\\ s, a ``Ticker``, a ``BookMessage``), ``[Ack]`` / ``[Rejected]`` for a
        subscribe or unsubscribe answer, ``[Pong]`` for ``*.pong``, ``[ExchangeError]`` for an error answer to
        anything else, or ``[]`` for a well-formed frame of a channel we do not handle (candlesticks...).
        Tolerant answers: ``"result": null`` without an ``error`` is an :class:`Ack` (the docs say only the
        ``error`` field tells success from failure); an ``"Alert sub <stream>"`` error for a stream we asked for
        (the engine resent a subscribe whose first copy did arrive) is an :class:`Ack` too, the stream being live
        (the wording is Gate's announced example, not a documented contract).

        Raises:
            DecodeError: not JSON, not an object, or a known channel whose payload lacks or mistypes fields.
        """
        try:
            env = _env_decoder.decode(frame)
            event = env.event
            err = env.error
            if event == "subscribe" or event == "unsubscribe":
                op: Literal["subscribe", "unsubscribe"] = (
                    "subscribe" if event == "subscribe" else "unsubscribe"
                )
                subs = self._answer_subs(env.channel, env.payload)
                status = _status_decoder.decode(env.result) if env.result else None
                failed = err is not None or (status is not None and status.status == "fail")
                rid = env.id if not isinstance(env.id, str) else _request_id(env.id)
                if failed:
                    message = "" if err is None else err.message
                    if op == "subscribe" and message.startswith(_ALERT_SUB):
                        # the stream is already subscribed on this socket (a resent request whose first copy
                        # did arrive): it is live, so this is a confirmation, not a refusal
                        already = subs or self._answer_subs(env.channel, [message[len(_ALERT_SUB) :].strip()])
                        if already:
                            return [Ack(op, rid, already)]
                    code = "" if err is None or err.code is None else str(err.code)
                    return [Rejected(rid, code, message, subs)]
                return [Ack(op, rid, subs)]
            channel = env.channel
            if channel.endswith(".pong"):
                return [Pong()]
            if err is not None:
                return [ExchangeError("" if err.code is None else str(err.code), err.message)]
            result = env.result
            if not result:
                return []
            handler = self._handlers.get(channel)
            if handler is None:
                return []
            return handler(result, receipt_ns)
        except MSGSPEC_ERRORS as exc:  # one conversion for the envelope and every payload decoded below
            raise DecodeError(f"gate: malformed frame: {exc}") from exc

    def _book_ticker(self, data: msgspec.Raw, receipt_ns: int) -> list[Decoded]:
        m = _book_ticker_decoder.decode(data)  # inside decode(): msgspec errors become DecodeError there
        symbol = self.unified_symbol(m.s)
        return [
            Ticker(
                exchange=self.exchange,
                symbol=symbol,
                exchange_symbol=m.s,
                bid_price=m.b,
                bid_size=m.B,
                ask_price=m.a,
                ask_size=m.A,
                last_price=None,
                timestamp_ms=m.t,
                receipt_ns=receipt_ns,
                sequence=m.u,
                channel=_TICKER,
                feed=self.feed,
                amount_unit=self.unit,
                contract_size=self.contract_sizes.get(symbol),
            )
        ]

    # books -----------------------------------------------------------------------------------------------
    def _snapshot_message(
        self,
        subscription: Subscription,
        snap_id: int,
        bids: list[list[str]],
        asks: list[list[str]],
        ts_ms: int | None,
        receipt_ns: int,
    ) -> BookMessage:
        return BookMessage(
            symbol=subscription.symbol,
            exchange_symbol=self.exchange_symbol(subscription.symbol),
            is_snapshot=True,
            bids=bids,
            asks=asks,
            first_seq=snap_id,
            last_seq=snap_id,
            prev_seq=None,
            checksum=None,
            timestamp_ms=ts_ms,
            receipt_ns=receipt_ns,
        )

    # trades ----------------------------------------------------------------------------------------------
    def _trade(
        self,
        native: str,
        symbol: str,
        price: Decimal,
        amount: Decimal,
        sold: bool,
        tid: int,
        ts_ms: int | None,
        receipt_ns: int,
        *,
        backfilled: bool,
    ) -> Trade:
        return Trade(
            exchange=self.exchange,
            symbol=symbol,
            exchange_symbol=native,
            price=price,
            amount=amount,
            side=Side.SELL if sold else Side.BUY,
            trade_id=str(tid),
            timestamp_ms=ts_ms,
            receipt_ns=receipt_ns,
            sequence=tid,
            channel=_TRADES,
            feed=self.feed,
            amount_unit=self.unit,
            contract_size=self.contract_sizes.get(symbol),
            backfilled=backfilled,
        )


def _request_id(raw: str) -> int | str:
    value = uint(raw)
    return raw if value is None else value


class GateSpotAdapter(GateAdapterBase):
    """Gate spot (docs/protocols/gate.md, "Spot"); ``exchange`` ``gate``.

    Channels: trades -> ``spot.trades``; ticker -> ``spot.book_ticker`` (best bid/ask, update id ``u`` as
    sequence, no last price); book -> ``spot.obu`` ``ob.<pair>.400`` (100 ms), or ``ob.<pair>.50`` (20 ms) when the
    subscription asks for 50 levels or fewer. Book sync: WebSocket snapshot (``full``), CONTIGUOUS ``U``/``u``
    expressed as ``prev_seq = U - 1``; a gap resubscribes. Trade backfill: ``GET /api/v4/spot/trades`` (no key).
    """

    market = Market.SPOT
    ws_base_url = "wss://api.gateio.ws"
    ws_path = "/ws/v4/"
    prefix = "spot"
    trade_backfill = True
    book_sync = BookSyncSpec(
        source=SnapshotSource.WEBSOCKET, sequence=SequenceModel.LINKED, bridge_offset=0, checksum=None
    )

    def __init__(
        self, *, ws_base_url: str | None = None, rest_base_url: str | None = None, feed: str | None = None
    ) -> None:
        super().__init__(ws_base_url=ws_base_url, rest_base_url=rest_base_url, feed=feed)
        self._handlers = {
            "spot.trades": self._decode_trade,
            "spot.book_ticker": self._book_ticker,
            "spot.obu": self._decode_obu,
            "spot.order_book_update": self._decode_book_update,
            "spot.tickers": self._decode_ticker,
        }

    def _check_market(self, symbol: str, quote: str, settle: str | None, expiry: str | None) -> None:
        if settle is not None:
            raise ValueError(f"gate spot: {symbol!r} is not a spot symbol (expected BASE/QUOTE)")

    def _unify(self, native: str) -> str:
        base, sep, quote = native.partition("_")
        return f"{base}/{quote}" if sep else native

    def channel_payload(self, sub: Subscription) -> tuple[str, list[str]]:
        """``spot.trades [pair]``, ``spot.book_ticker [pair]``, ``spot.obu ["ob.<pair>.400"|"ob.<pair>.50"]``."""
        native = self.exchange_symbol(sub.symbol)
        if sub.channel is Channel.TRADES:
            return "spot.trades", [native]
        if sub.channel is Channel.TICKER:
            return "spot.book_ticker", [native]
        level = 50 if sub.depth is not None and sub.depth <= 50 else 400
        return "spot.obu", [f"ob.{native}.{level}"]

    def _decode_trade(self, data: msgspec.Raw, receipt_ns: int) -> list[Decoded]:
        t = _spot_trade_decoder.decode(data)  # inside decode(): msgspec errors become DecodeError there
        if t.side not in ("buy", "sell"):
            raise DecodeError(f"gate: bad trade side {t.side!r}")
        ts = _ms(t.create_time_ms)
        if ts is None and t.create_time is not None:
            ts = _ms(t.create_time * 1000)
        symbol = self.unified_symbol(t.currency_pair)
        return [
            self._trade(
                t.currency_pair, symbol, t.price, t.amount, t.side == "sell", t.id, ts, receipt_ns,
                backfilled=False,
            )
        ]  # fmt: skip

    def _decode_ticker(self, data: msgspec.Raw, receipt_ns: int) -> list[Decoded]:
        m = _spot_ticker_decoder.decode(data)
        symbol = self.unified_symbol(m.currency_pair)
        return [
            Ticker(
                exchange=self.exchange,
                symbol=symbol,
                exchange_symbol=m.currency_pair,
                bid_price=_dec(m.highest_bid),
                bid_size=None,
                ask_price=_dec(m.lowest_ask),
                ask_size=None,
                last_price=_dec(m.last),
                timestamp_ms=None,
                receipt_ns=receipt_ns,
                sequence=None,
                channel=_TICKER,
                feed=self.feed,
                amount_unit=self.unit,
                contract_size=None,
            )
        ]

    def _decode_obu(self, data: msgspec.Raw, receipt_ns: int) -> list[Decoded]:
        m = _obu_decoder.decode(data)
        # "ob.BTC_USDT.400" -> BTC_USDT
        parts = m.s.split(".")
        if len(parts) != 3 or parts[0] != "ob":
            raise DecodeError(f"gate: bad spot.obu stream {m.s!r}")
        native = parts[1]
        if m.full:
            first, prev = m.u, -1
        else:
            if m.U is None:
                raise DecodeError("gate: incremental spot.obu push without U")
            first, prev = m.U, m.U - 1
        return [
            BookMessage(
                symbol=self.unified_symbol(native),
                exchange_symbol=native,
                is_snapshot=m.full,
                bids=m.b,
                asks=m.a,
                first_seq=first,
                last_seq=m.u,
                prev_seq=prev,
                checksum=None,
                timestamp_ms=m.t,
                receipt_ns=receipt_ns,
            )
        ]

    def _decode_book_update(self, data: msgspec.Raw, receipt_ns: int) -> list[Decoded]:
        """Legacy ``spot.order_book_update`` (``U``/``u`` to stitch onto a REST ``with_id`` snapshot)."""
        m = _spot_update_decoder.decode(data)
        return [
            BookMessage(
                symbol=self.unified_symbol(m.s),
                exchange_symbol=m.s,
                is_snapshot=m.full,
                bids=m.b,
                asks=m.a,
                first_seq=m.u if m.full else m.U,
                last_seq=m.u,
                prev_seq=None,
                checksum=None,
                timestamp_ms=m.t,
                receipt_ns=receipt_ns,
            )
        ]

    # books -----------------------------------------------------------------------------------------------
    def snapshot_request(self, subscription: Subscription) -> RestRequest | None:
        """``None``: ``spot.obu`` books are snapshotted over the WebSocket (resync = resubscribe)."""
        return None

    def rest_book_request(self, subscription: Subscription, limit: int = 100) -> RestRequest:
        """``GET /api/v4/spot/order_book?currency_pair=..&limit=..&with_id=true`` (the legacy stitching's
        snapshot; :meth:`parse_snapshot` reads it)."""
        return RestRequest(
            path="/api/v4/spot/order_book",
            params={
                "currency_pair": self.exchange_symbol(subscription.symbol),
                "limit": str(limit),
                "with_id": "true",
            },
        )

    def parse_snapshot(self, body: bytes | str, subscription: Subscription, receipt_ns: int) -> BookMessage:
        """Parse ``{"id":..,"current":<ms>,"update":<ms>,"asks":[[p,s]..],"bids":..}`` into a snapshot.

        Raises:
            DecodeError: not an order-book body (e.g. ``{"label":..,"message":..}``).
        """
        m = decode_json(_spot_snapshot_decoder, body, "gate", "malformed spot order book")
        ts = None if m.current is None else _ms(m.current)
        return self._snapshot_message(subscription, m.id, m.bids, m.asks, ts, receipt_ns)

    # instruments -----------------------------------------------------------------------------------------
    def instruments_request(self) -> RestRequest:
        """``GET /api/v4/spot/currency_pairs``."""
        return RestRequest(path="/api/v4/spot/currency_pairs", params={})

    def parse_instruments(self, body: bytes) -> list[Instrument]:
        """Every currency pair; ``active`` when ``trade_status == "tradable"``.

        Raises:
            DecodeError: not a currency-pair list.
        """
        pairs = decode_json(_pairs_decoder, body, "gate", "malformed currency_pairs")
        out: list[Instrument] = []
        for p in pairs:
            base, quote = p.base, p.quote
            if not (base and quote):
                base, sep, quote = p.id.partition("_")
                if not sep:
                    continue
            out.append(Instrument(f"{base}/{quote}", p.id, p.trade_status == "tradable", p.trade_status))
        return out

    # trade backfill --------------------------------------------------------------------------------------
    def backfill_request(self, subscription: Subscription, cursor: BackfillCursor) -> RestRequest | None:
        """``GET /api/v4/spot/trades?currency_pair=..&last_id=<id>&reverse=true&limit=1000``: trades older than
        ``id`` (first the first trade after the interruption, then the oldest fetched so far), newest first.
        Done once a page reaches ``after_id`` or comes back short."""
        if cursor.oldest is not None and cursor.oldest <= cursor.after_id:
            return None
        if cursor.last_page_size is not None and cursor.last_page_size < _BACKFILL_PAGE:
            return None
        start = cursor.oldest if cursor.oldest is not None else cursor.before_id
        return RestRequest(
            path="/api/v4/spot/trades",
            params={
                "currency_pair": self.exchange_symbol(subscription.symbol),
                "last_id": str(start),
                "reverse": "true",
                "limit": str(_BACKFILL_PAGE),
            },
        )

    def parse_trades(self, body: bytes, subscription: Subscription, receipt_ns: int) -> list[Trade]:
        """Parse a ``/spot/trades`` page into backfilled trades.

        Raises:
            DecodeError: not a trade list, or a trade with a non-integer id or an unknown side.
        """
        items = decode_json(_rest_trades_decoder, body, "gate", "malformed spot trades")
        sym = subscription.symbol
        native = self.exchange_symbol(sym)
        out: list[Trade] = []
        for t in items:
            tid = t.id if isinstance(t.id, int) else uint(t.id)
            if tid is None or t.side not in ("buy", "sell"):
                raise DecodeError(f"gate: bad spot trade {t!r}")
            out.append(
                self._trade(
                    native, sym, t.price, t.amount, t.side == "sell", tid, _ms(t.create_time_ms), receipt_ns,
                    backfilled=True,
                )
            )  # fmt: skip
        return out


class GateFuturesAdapter(GateAdapterBase):
    """Gate USDT-settled perpetual futures (docs/protocols/gate.md, "USDT perpetual futures"); ``exchange``
    ``gate``, unified ``BTC/USDT:USDT`` <-> ``BTC_USDT``.

    Channels: trades -> ``futures.trades`` (``size`` in contracts, negative when the taker sold); ticker ->
    ``futures.book_ticker``; book -> ``futures.order_book_update`` ``[contract, "100ms", "100"]`` stitched to the
    REST snapshot ``GET /api/v4/futures/usdt/order_book?contract=..&limit=100&with_id=true`` (CONTIGUOUS, bridge
    offset 1). Amounts in contracts of ``quanto_multiplier`` base units (``GET /api/v4/futures/usdt/contracts``).
    No trade backfill (futures trade history pages by time, not by id).
    """

    market = Market.PERPETUAL
    ws_base_url = "wss://fx-ws.gateio.ws"
    ws_path = "/v4/ws/usdt"
    prefix = "futures"
    unit = AmountUnit.CONTRACTS
    trade_backfill = False
    snapshot_limit: ClassVar[int] = 100
    book_sync = BookSyncSpec(
        source=SnapshotSource.REST, sequence=SequenceModel.CONTIGUOUS, bridge_offset=1, checksum=None
    )

    def __init__(
        self, *, ws_base_url: str | None = None, rest_base_url: str | None = None, feed: str | None = None
    ) -> None:
        super().__init__(ws_base_url=ws_base_url, rest_base_url=rest_base_url, feed=feed)
        self._handlers = {
            "futures.trades": self._decode_trades,
            "futures.book_ticker": self._book_ticker,
            "futures.order_book_update": self._decode_book_update,
        }

    def _check_market(self, symbol: str, quote: str, settle: str | None, expiry: str | None) -> None:
        if settle != "USDT" or quote != "USDT" or expiry is not None:
            raise ValueError(f"gate perpetual: {symbol!r} is not a USDT perpetual (expected BASE/USDT:USDT)")

    def _unify(self, native: str) -> str:
        base, sep, quote = native.partition("_")
        return f"{base}/{quote}:{quote}" if sep else native

    def channel_payload(self, sub: Subscription) -> tuple[str, list[str]]:
        """``futures.trades [contract]``, ``futures.book_ticker [contract]``,
        ``futures.order_book_update [contract, "100ms", "100"]``."""
        native = self.exchange_symbol(sub.symbol)
        if sub.channel is Channel.TRADES:
            return "futures.trades", [native]
        if sub.channel is Channel.TICKER:
            return "futures.book_ticker", [native]
        return "futures.order_book_update", [native, "100ms", str(self.snapshot_limit)]

    def _decode_trades(self, data: msgspec.Raw, receipt_ns: int) -> list[Decoded]:
        items = _futures_trades_decoder.decode(data)
        out: list[Decoded] = []
        for t in items:
            size = _dec(t.size) if isinstance(t.size, str) else Decimal(_size_text(t.size))
            if size is None or not size.is_finite() or size == 0:
                raise DecodeError(f"gate: bad futures trade size {t.size!r}")
            ts = _ms(t.create_time_ms)
            if ts is None and t.create_time is not None:
                ts = _ms(t.create_time * 1000)
            symbol = self.unified_symbol(t.contract)
            out.append(
                self._trade(
                    t.contract, symbol, t.price, abs(size), size < 0, t.id, ts, receipt_ns, backfilled=False
                )
            )
        return out

    def _decode_book_update(self, data: msgspec.Raw, receipt_ns: int) -> list[Decoded]:
        m = _futures_update_decoder.decode(data)
        return [
            BookMessage(
                symbol=self.unified_symbol(m.s),
                exchange_symbol=m.s,
                is_snapshot=False,
                bids=_levels(m.b),
                asks=_levels(m.a),
                first_seq=m.U,
                last_seq=m.u,
                prev_seq=None,
                checksum=None,
                timestamp_ms=m.t,
                receipt_ns=receipt_ns,
            )
        ]

    # books -----------------------------------------------------------------------------------------------
    def snapshot_request(self, subscription: Subscription) -> RestRequest:
        """``GET /api/v4/futures/usdt/order_book?contract=..&limit=100&with_id=true``."""
        return RestRequest(
            path="/api/v4/futures/usdt/order_book",
            params={
                "contract": self.exchange_symbol(subscription.symbol),
                "limit": str(self.snapshot_limit),
                "with_id": "true",
            },
        )

    def parse_snapshot(self, body: bytes | str, subscription: Subscription, receipt_ns: int) -> BookMessage:
        """Parse ``{"id":..,"current":<s>,"update":<s>,"asks":[{"p":..,"s":<contracts>}..],"bids":..}``.

        Raises:
            DecodeError: not an order-book body.
        """
        m = decode_json(_futures_snapshot_decoder, body, "gate", "malformed futures order book")
        ts: int | None = None
        if m.current is not None:
            cur = float(m.current)
            if cur != cur or cur in (float("inf"), float("-inf")) or abs(cur) > 1e15:
                raise DecodeError(f"gate: bad order book time {m.current!r}")
            ts = int(cur * 1000)
        return self._snapshot_message(subscription, m.id, _levels(m.bids), _levels(m.asks), ts, receipt_ns)

    # instruments -----------------------------------------------------------------------------------------
    def instruments_request(self) -> RestRequest:
        """``GET /api/v4/futures/usdt/contracts``."""
        return RestRequest(path="/api/v4/futures/usdt/contracts", params={})

    def parse_instruments(self, body: bytes) -> list[Instrument]:
        """Every USDT contract as ``BASE/USDT:USDT``; ``active`` unless ``in_delisting`` (or a ``status`` other
        than ``trading`` where the answer has one); contract size ``quanto_multiplier`` in the base currency.

        Raises:
            DecodeError: not a contract list.
        """
        contracts = decode_json(_contracts_decoder, body, "gate", "malformed futures contracts")
        out: list[Instrument] = []
        for c in contracts:
            base, sep, quote = c.name.partition("_")
            if not sep or not base or not quote:
                continue
            size: Decimal | None = None
            try:
                size = Decimal(c.quanto_multiplier) if c.quanto_multiplier else None
            except InvalidOperation:
                size = None
            if size is not None and (not size.is_finite() or size <= 0):
                size = None
            status = c.status or ("delisting" if c.in_delisting else "trading")
            active = not c.in_delisting and status == "trading"
            out.append(
                Instrument(
                    f"{base}/{quote}:{quote}",
                    c.name,
                    active,
                    status,
                    AmountUnit.CONTRACTS,
                    size,
                    base if size is not None else None,
                )
            )
        return out


# ------------------------------------------------------------------------------------------- registrations
# No testnet registration: Gate's USDT futures testnet WebSocket (``wss://ws-testnet.gate.com/v4/ws/futures/usdt``,
# docs/protocols/gate.md "URLs") has another path than production, which a base-URL swap cannot express.
register("gate", Market.SPOT, GateSpotAdapter, shapes=(SymbolShape.SPOT,), aliases=("gateio",))
register(
    "gate",
    Market.PERPETUAL,
    GateFuturesAdapter,
    shapes=(SymbolShape.LINEAR,),
    aliases=("gateio",),
)
