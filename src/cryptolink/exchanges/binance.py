"""Binance spot, USDⓈ-M and COIN-M perpetual protocol adapters (sans-I/O).

Protocol facts and their official sources are in ``docs/protocols/binance.md`` (spot: the
binance-spot-api-docs pages "WebSocket Streams", "Market data endpoints", "General endpoints", "Limits";
USDⓈ-M: "WebSocket Market Streams", "Important WebSocket Change Notice" [routed URLs, 2026], "How to manage a
local order book correctly", "Compressed/Aggregate Trades List"; COIN-M: the same pages under
https://developers.binance.com/docs/derivatives/coin-margined-futures/).

- Connections use the combined-stream path (``<base>/stream``; USDⓈ-M routed ``/public/stream`` for
  ``@depth*`` and ``@bookTicker``, ``/market/stream`` for ``@aggTrade``/``@trade``/``@ticker``; COIN-M has no
  routes); streams are added with live ``SUBSCRIBE`` requests (at most 200 per request) whose acks
  (``{"result":null,"id":N}``) are resolved by the engine from the request id.
- Frames are ``{"stream":"<name>","data":{...}}``; raw (non-combined) payloads are decoded too, including the
  raw ``bookTicker`` payload, which has no ``"e"`` field.
- Channels: trades -> spot ``<s>@trade`` (id ``t``), futures ``<s>@aggTrade`` (id ``a``; ``@trade`` decoded
  too); ticker -> ``<s>@bookTicker`` (BBO, ``u`` as sequence, no last price); book -> ``<s>@depth@100ms``
  (``@depth``, ``@depth@0ms``, ``@depth@250ms``, ``@depth@500ms`` decoded too).
- Trade ids of a symbol are contiguous (aggregate ids ``a``; spot trade ids ``t`` as observed, the docs do
  not say), so a skipped id is a missing trade; backfill: spot ``GET /api/v3/historicalTrades?fromId=``
  (no key, weight 25, <= 1000 per page), USDⓈ-M ``GET /fapi/v1/aggTrades?fromId=`` and COIN-M
  ``GET /dapi/v1/aggTrades?fromId=`` (weight 20, <= 1000, no key).
- Taker side: ``m`` true means the buyer is the maker, so the taker SOLD.
- Sizes: spot and USDⓈ-M quantities are in the base asset; COIN-M quantities are in contracts of
  ``contractSize`` USD each (exchangeInfo; BTC 100 USD, others 10 USD as listed).
- Instruments: ``GET /api/v3/exchangeInfo`` (weight 20) / ``GET /fapi/v1/exchangeInfo`` /
  ``GET /dapi/v1/exchangeInfo`` (weight 1); only ``PERPETUAL`` contracts on the futures markets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import Any, ClassVar, Literal

import msgspec

from cryptolink.exchanges.base import (
    MSGSPEC_ERRORS,
    Ack,
    BackfillCursor,
    BookMessage,
    BookSyncSpec,
    ConnectionPolicy,
    ConnectRateLimit,
    Decoded,
    DecodeError,
    ExchangeAdapter,
    ExchangeError,
    Instrument,
    KeepalivePolicy,
    OutboundRequest,
    Rejected,
    RestRateLimit,
    RestRequest,
    SequenceModel,
    ServerNotice,
    SnapshotSource,
    SymbolCache,
    decode_json,
)
from cryptolink.exchanges.registry import register
from cryptolink.models import AmountUnit, Channel, Market, Side, Subscription, Ticker, Trade
from cryptolink.symbols import SymbolShape, parse_unified, split_concatenated

__all__ = [
    "BinanceAdapterBase",
    "BinanceCoinmAdapter",
    "BinanceFuturesAdapter",
    "BinanceSpotAdapter",
    "BinanceUsdmAdapter",
]

_MAX_PARAMS_PER_REQUEST = 200
"""Streams per SUBSCRIBE request (docs/protocols/binance.md "Live subscribe")."""
_BACKFILL_PAGE = 1000
_TRADES = Channel.TRADES
_TICKER = Channel.TICKER


# ------------------------------------------------------------------------------------------- wire structs
class _Err(msgspec.Struct):
    code: int | str | None = None
    msg: str | None = None


class _Envelope(msgspec.Struct):
    """Combined-stream wrapper, ack, error, or a raw event: all fields optional (``u`` without ``e`` is a raw
    ``bookTicker`` payload). Errors come flat as the docs' "Error Messages" table writes them
    (``{"code":2,"msg":..,"id":..}``) or nested as the live servers send them (``{"error":{"code":2,"msg":..},
    "id":..}``, the shape ccxt.pro parses): both are read."""

    stream: str | None = None
    error: _Err | None = None
    data: msgspec.Raw = msgspec.Raw()
    result: Any = None
    id: int | str | None = None
    code: int | str | None = None
    msg: str | None = None
    e: str | None = None
    u: int | None = None


class _TradeMsg(msgspec.Struct):
    p: Decimal
    q: Decimal
    m: bool
    s: str = ""
    t: int | None = None
    a: int | None = None
    T: int | None = None
    E: int | None = None


class _BookTickerMsg(msgspec.Struct):
    b: Decimal
    B: Decimal
    a: Decimal
    A: Decimal
    s: str = ""
    u: int | None = None
    E: int | None = None


class _DepthMsg(msgspec.Struct):
    U: int
    u: int
    b: list[list[str]]
    a: list[list[str]]
    s: str = ""
    pu: int | None = None
    E: int | None = None


class _SnapshotMsg(msgspec.Struct):
    lastUpdateId: int
    bids: list[list[str]]
    asks: list[list[str]]
    E: int | None = None


class _HistTrade(msgspec.Struct):
    """``/api/v3/historicalTrades`` item."""

    id: int
    price: Decimal
    qty: Decimal
    time: int
    isBuyerMaker: bool


class _AggTrade(msgspec.Struct):
    """``/api/v3/aggTrades``, ``/fapi/v1/aggTrades`` and ``/dapi/v1/aggTrades`` item."""

    a: int
    p: Decimal
    q: Decimal
    T: int
    m: bool


class _SymbolInfo(msgspec.Struct):
    """An exchangeInfo symbol: spot and USDⓈ-M say ``status``, COIN-M ``contractStatus`` (and
    ``contractSize``, USD per contract)."""

    symbol: str
    baseAsset: str
    quoteAsset: str
    status: str | None = None
    contractStatus: str | None = None
    contractType: str | None = None
    marginAsset: str | None = None
    contractSize: Decimal | None = None


class _ExchangeInfo(msgspec.Struct):
    symbols: list[_SymbolInfo]


_env_decoder = msgspec.json.Decoder(_Envelope)
_trade_decoder = msgspec.json.Decoder(_TradeMsg)
_ticker_decoder = msgspec.json.Decoder(_BookTickerMsg)
_depth_decoder = msgspec.json.Decoder(_DepthMsg)
_snapshot_decoder = msgspec.json.Decoder(_SnapshotMsg)
_hist_decoder = msgspec.json.Decoder(list[_HistTrade])
_agg_decoder = msgspec.json.Decoder(list[_AggTrade])
_info_decoder = msgspec.json.Decoder(_ExchangeInfo)
_json_encoder = msgspec.json.Encoder()

_DEPTH_KINDS = ("depth", "depth@100ms", "depth@0ms", "depth@250ms", "depth@500ms", "depth@1000ms")


class BinanceAdapterBase(ExchangeAdapter):
    """Shared Binance logic; use :class:`BinanceSpotAdapter`, :class:`BinanceUsdmAdapter` or
    :class:`BinanceCoinmAdapter`.

    Attributes:
        ccxt_id: equal to ``exchange`` (kept for compatibility; ``exchange`` is ccxt's id now).
    """

    exchange = "binance"
    ccxt_id: ClassVar[str] = "binance"
    trade_ids_contiguous = True
    trade_backfill = True
    amount_unit_: ClassVar[AmountUnit] = AmountUnit.BASE
    trade_stream: ClassVar[str] = "trade"
    book_stream: ClassVar[str] = "depth@100ms"
    depth_path: ClassVar[str] = "/api/v3/depth"
    depth_weight: ClassVar[int] = 50
    snapshot_limit: ClassVar[int] = 1000
    info_path: ClassVar[str] = "/api/v3/exchangeInfo"
    info_weight: ClassVar[int] = 20
    backfill_path: ClassVar[str] = "/api/v3/historicalTrades"
    backfill_weight: ClassVar[int] = 25

    def __init__(
        self, *, ws_base_url: str | None = None, rest_base_url: str | None = None, feed: str | None = None
    ) -> None:
        super().__init__(ws_base_url=ws_base_url, rest_base_url=rest_base_url, feed=feed)
        # unified <-> exchange symbol (``BTCUSDT``); the stream symbol is its lower case
        self._symbols = SymbolCache()
        self._pinned = self._symbols.pinned
        self._handlers: dict[str, Callable[[bytes, str, int], list[Decoded]]] = {
            "trade": self._decode_trade,
            "aggTrade": self._decode_trade,
            "bookTicker": self._decode_ticker,
        }
        for kind in _DEPTH_KINDS:
            self._handlers[kind] = self._decode_depth

    # symbols ---------------------------------------------------------------------------------------------
    def exchange_symbol(self, symbol: str) -> str:
        """``BTC/USDT`` -> ``BTCUSDT`` (spot); ``BTC/USDT:USDT`` -> ``BTCUSDT`` (USDⓈ-M); ``BTC/USD:BTC`` ->
        ``BTCUSD_PERP`` (COIN-M).

        Raises:
            ValueError: not a unified symbol, or not of this adapter's market (spot symbols have no settle
                currency; USDⓈ-M symbols settle in their quote currency, COIN-M ones in their base currency;
                neither has an expiry).
        """
        cached = self._symbols.exchange_symbol(symbol)
        if cached is not None:
            return cached
        base, quote, settle, expiry = parse_unified(symbol)
        self._check_market(symbol, base, quote, settle, expiry)
        ex = self._exchange_id(base, quote)
        self._symbols.pin(symbol, ex)
        return ex

    def _exchange_id(self, base: str, quote: str) -> str:
        return f"{base}{quote}".upper()

    def _check_market(
        self, symbol: str, base: str, quote: str, settle: str | None, expiry: str | None
    ) -> None:
        raise NotImplementedError

    def _unify(self, exchange_symbol: str) -> str:
        raise NotImplementedError

    def _lookup(self, stream_symbol: str, exchange_symbol: str) -> tuple[str, str]:
        """(unified, exchange symbol) of a frame, from its stream symbol (``btcusdt``) or payload ``s``."""
        ex = exchange_symbol or stream_symbol.upper()
        hit = self._pinned.get(ex)  # the subscribed symbols: one dict read per frame
        return (hit if hit is not None else self._symbols.unified(ex, self._unify)), ex

    def counters(self) -> dict[str, int]:
        """``symbol_cache_evicted``: best-effort unified symbols of unsubscribed ids dropped from the bounded
        cache."""
        return {"symbol_cache_evicted": self._symbols.evicted}

    def amount_unit(self, symbol: str) -> AmountUnit:
        """Base currency on spot and USDⓈ-M; contracts on COIN-M."""
        return self.amount_unit_

    def stream_name(self, subscription: Subscription) -> str:
        """The Binance stream name for ``subscription`` (``btcusdt@depth@100ms``)."""
        sym = self.exchange_symbol(subscription.symbol).lower()
        channel = subscription.channel
        if channel is Channel.TRADES:
            return f"{sym}@{self.trade_stream}"
        if channel is Channel.TICKER:
            return f"{sym}@bookTicker"
        return f"{sym}@{self.book_stream}"

    # connections -----------------------------------------------------------------------------------------
    def connection_url(self, route: str) -> str:
        """``<base>/<route>/stream`` (USDⓈ-M) or ``<base>/stream``."""
        return f"{self.ws_base_url}/{route}/stream" if route else f"{self.ws_base_url}/stream"

    def requests(
        self,
        op: Literal["subscribe", "unsubscribe"],
        subscriptions: Sequence[Subscription],
        next_id: int,
        now_ms: int | None = None,
    ) -> list[OutboundRequest]:
        """``{"method":"SUBSCRIBE"|"UNSUBSCRIBE","params":[...],"id":N}`` frames, at most 200 streams each
        (``policy.max_subscriptions_per_request``; docs/protocols/binance.md "Live subscribe")."""
        method = "SUBSCRIBE" if op == "subscribe" else "UNSUBSCRIBE"
        out: list[OutboundRequest] = []
        for chunk in self.request_batches(subscriptions, lambda s: len(self.stream_name(s)) + 3):
            rid = next_id + len(out)
            frame = _json_encoder.encode(
                {"method": method, "params": [self.stream_name(s) for s in chunk], "id": rid}
            ).decode()
            out.append(OutboundRequest(frame=frame, request_id=rid, op=op, subscriptions=chunk))
        return out

    # decoding --------------------------------------------------------------------------------------------
    def decode(self, frame: str | bytes, receipt_ns: int) -> list[Decoded]:
        """Decode one frame.

        Returns ``[Trade]``, ``[Ticker]``, ``[BookMessage]``, ``[Ack]`` (op ``None``: the engine resolves it
        from the id), ``[Rejected]``, ``[ServerNotice]`` (``serverShutdown``: rotate), ``[ExchangeError]`` (an
        error with no id), or ``[]`` for a well-formed frame of a stream or event we do not handle (e.g.
        ``kline_1m``; the engine counts those).

        Raises:
            DecodeError: not JSON, not an object, or a known stream whose payload lacks/mistypes fields.
        """
        try:
            env = _env_decoder.decode(frame)
            stream = env.stream
            if stream is not None:
                data = env.data
                if not data:
                    raise DecodeError(f"{self.exchange}: combined-stream frame without data")
                at = stream.find("@")
                if at < 0:
                    if stream == "!serverShutdown":
                        return [ServerNotice("serverShutdown", "server shutdown announced", rotate=True)]
                    return []
                handler = self._handlers.get(stream[at + 1 :])
                if handler is None:
                    if _is_shutdown(data):
                        return [ServerNotice("serverShutdown", "server shutdown announced", rotate=True)]
                    return []
                return handler(data, stream[:at], receipt_ns)
            if env.e is not None:
                return self._decode_raw_event(env.e, frame, receipt_ns)
            err = env.error
            if err is not None or env.code is not None:
                code, msg = (err.code, err.msg) if err is not None else (env.code, env.msg)
                if env.id is None:
                    return [ExchangeError(str(code), msg or "")]
                return [Rejected(env.id, str(code), msg or "")]
            if env.id is not None:
                if env.result is not None:
                    return []  # answers to LIST_SUBSCRIPTIONS / GET_PROPERTY: not ours
                return [Ack(None, env.id)]
            if env.u is not None:  # a raw bookTicker payload: {"u":..,"s":..,"b":..,"B":..,"a":..,"A":..}
                raw = frame.encode() if isinstance(frame, str) else frame
                return self._decode_ticker(raw, "", receipt_ns)
            return []
        except MSGSPEC_ERRORS as exc:  # one conversion for the envelope and every payload decoded below
            raise DecodeError(f"{self.exchange}: malformed frame: {exc}") from exc

    def _decode_raw_event(self, event: str, frame: str | bytes, receipt_ns: int) -> list[Decoded]:
        if event == "serverShutdown":
            return [ServerNotice("serverShutdown", "server shutdown announced", rotate=True)]
        raw = frame.encode() if isinstance(frame, str) else frame
        if event == "depthUpdate":
            return self._decode_depth(raw, "", receipt_ns)
        if event in ("trade", "aggTrade"):
            return self._decode_trade(raw, "", receipt_ns)
        if event == "bookTicker":
            return self._decode_ticker(raw, "", receipt_ns)
        return []

    def _decode_trade(self, data: bytes, stream_sym: str, receipt_ns: int) -> list[Decoded]:
        m = _trade_decoder.decode(data)  # inside decode(): msgspec errors become DecodeError there
        tid = m.t if m.t is not None else m.a
        if tid is None:
            raise DecodeError(f"{self.exchange}: trade without id (t/a)")
        symbol, ex = self._lookup(stream_sym, m.s)
        return [
            Trade(
                exchange=self.exchange,
                symbol=symbol,
                exchange_symbol=ex,
                price=m.p,
                amount=m.q,
                side=Side.SELL if m.m else Side.BUY,
                trade_id=str(tid),
                timestamp_ms=m.T if m.T is not None else m.E,
                receipt_ns=receipt_ns,
                sequence=tid,
                channel=_TRADES,
                feed=self.feed,
                amount_unit=self.amount_unit_,
                contract_size=self.contract_sizes.get(symbol),
            )
        ]

    def _decode_ticker(self, data: bytes, stream_sym: str, receipt_ns: int) -> list[Decoded]:
        m = _ticker_decoder.decode(data)  # inside decode(): msgspec errors become DecodeError there
        symbol, ex = self._lookup(stream_sym, m.s)
        return [
            Ticker(
                exchange=self.exchange,
                symbol=symbol,
                exchange_symbol=ex,
                bid_price=m.b,
                bid_size=m.B,
                ask_price=m.a,
                ask_size=m.A,
                last_price=None,
                timestamp_ms=m.E,
                receipt_ns=receipt_ns,
                sequence=m.u,
                channel=_TICKER,
                feed=self.feed,
                amount_unit=self.amount_unit_,
                contract_size=self.contract_sizes.get(symbol),
            )
        ]

    def _decode_depth(self, data: bytes, stream_sym: str, receipt_ns: int) -> list[Decoded]:
        m = _depth_decoder.decode(data)  # inside decode(): msgspec errors become DecodeError there
        symbol, ex = self._lookup(stream_sym, m.s)
        return [
            BookMessage(
                symbol=symbol,
                exchange_symbol=ex,
                is_snapshot=False,
                bids=m.b,
                asks=m.a,
                first_seq=m.U,
                last_seq=m.u,
                prev_seq=m.pu,
                checksum=None,
                timestamp_ms=m.E,
                receipt_ns=receipt_ns,
            )
        ]

    # books -----------------------------------------------------------------------------------------------
    def snapshot_request(self, subscription: Subscription) -> RestRequest:
        """``GET <depth_path>?symbol=BTCUSDT&limit=1000`` with its request weight (docs/protocols/binance.md
        "REST")."""
        return RestRequest(
            path=self.depth_path,
            params={"symbol": self.exchange_symbol(subscription.symbol), "limit": str(self.snapshot_limit)},
            weight=self.depth_weight,
        )

    def parse_snapshot(self, body: bytes | str, subscription: Subscription, receipt_ns: int) -> BookMessage:
        """Parse ``{"lastUpdateId":..,"bids":[[p,q]..],"asks":..}`` into a snapshot :class:`BookMessage`
        (``first_seq == last_seq == lastUpdateId``, ``prev_seq`` ``None``).

        Raises:
            DecodeError: the body is not a depth snapshot (e.g. an error body ``{"code":-1121,...}``).
        """
        m = decode_json(_snapshot_decoder, body, self.exchange, "malformed depth snapshot")
        ex = self.exchange_symbol(subscription.symbol)
        return BookMessage(
            symbol=subscription.symbol,
            exchange_symbol=ex,
            is_snapshot=True,
            bids=m.bids,
            asks=m.asks,
            first_seq=m.lastUpdateId,
            last_seq=m.lastUpdateId,
            prev_seq=None,
            checksum=None,
            timestamp_ms=m.E,
            receipt_ns=receipt_ns,
        )

    # instruments -----------------------------------------------------------------------------------------
    def instruments_request(self) -> RestRequest:
        """``GET <exchangeInfo>`` (spot weight 20, futures weight 1)."""
        return RestRequest(path=self.info_path, params={}, weight=self.info_weight)

    def parse_instruments(self, body: bytes) -> list[Instrument]:
        """The symbols of ``exchangeInfo`` that belong to this market; ``active`` when the status
        (``status``, COIN-M ``contractStatus``) is ``TRADING``.

        Raises:
            DecodeError: not an exchangeInfo body.
        """
        info = decode_json(_info_decoder, body, self.exchange, "malformed exchangeInfo")
        out: list[Instrument] = []
        for s in info.symbols:
            inst = self._instrument(s)
            if inst is not None:
                out.append(inst)
        return out

    def _instrument(self, s: _SymbolInfo) -> Instrument | None:
        raise NotImplementedError

    @staticmethod
    def _status(s: _SymbolInfo) -> str:
        return s.status or s.contractStatus or ""

    # trade backfill ---------------------------------------------------------------------------------------
    def backfill_request(self, subscription: Subscription, cursor: BackfillCursor) -> RestRequest | None:
        """``GET <path>?symbol=..&fromId=..&limit=..`` for the ids after the newest fetched so far (ids are
        contiguous, so the backfill is done when ``before_id - 1`` was fetched or a page came back short)."""
        start = (cursor.newest if cursor.newest is not None else cursor.after_id) + 1
        last = cursor.before_id - 1
        if start > last or (cursor.last_page_size is not None and cursor.last_page_size == 0):
            return None
        return RestRequest(
            path=self.backfill_path,
            params={
                "symbol": self.exchange_symbol(subscription.symbol),
                "fromId": str(start),
                "limit": str(min(_BACKFILL_PAGE, last - start + 1)),
            },
            weight=self.backfill_weight,
        )

    def parse_trades(self, body: bytes, subscription: Subscription, receipt_ns: int) -> list[Trade]:
        """Parse a ``historicalTrades`` page (spot) into backfilled trades.

        Raises:
            DecodeError: not a trade list (e.g. an error body).
        """
        items = decode_json(_hist_decoder, body, self.exchange, "malformed historicalTrades")
        rows = ((t.price, t.qty, t.isBuyerMaker, t.id, t.time) for t in items)
        return self._backfilled(subscription, receipt_ns, rows)

    def _backfilled(
        self,
        subscription: Subscription,
        receipt_ns: int,
        rows: Iterable[tuple[Decimal, Decimal, bool, int, int]],
    ) -> list[Trade]:
        """Backfilled trades from ``(price, qty, buyer is maker, id, time ms)`` rows of a REST trade page."""
        sym = subscription.symbol
        ex = self.exchange_symbol(sym)
        unit = self.amount_unit_
        size = self.contract_sizes.get(sym)
        return [
            Trade(
                exchange=self.exchange,
                symbol=sym,
                exchange_symbol=ex,
                price=price,
                amount=qty,
                side=Side.SELL if buyer_maker else Side.BUY,
                trade_id=str(tid),
                timestamp_ms=ts,
                receipt_ns=receipt_ns,
                sequence=tid,
                channel=_TRADES,
                feed=self.feed,
                amount_unit=unit,
                contract_size=size,
                backfilled=True,
            )
            for price, qty, buyer_maker, tid, ts in rows
        ]


def _is_shutdown(data: bytes) -> bool:
    return b'"serverShutdown"' in bytes(data)


class BinanceSpotAdapter(BinanceAdapterBase):
    """Binance spot (docs/protocols/binance.md, part 1); ``exchange`` ``binance``.

    Policy: server pings every 20 s (the transport answers; pong within 60 s), a protocol ping every 30 s for
    round-trip time, 24 h connection lifetime, 1024 streams and 5 inbound messages/s per connection, 200
    streams per SUBSCRIBE, 300 connection attempts per 5 min per IP. Book sync: REST ``/api/v3/depth`` limit
    1000 (weight 50) stitched with ``U``/``u`` (CONTIGUOUS, bridge offset 1). Backfill:
    ``/api/v3/historicalTrades`` (no key).
    """

    exchange = "binance"
    ccxt_id = "binance"
    market = Market.SPOT
    ws_base_url = "wss://stream.binance.com:9443"
    rest_base_url = "https://api.binance.com"
    trade_stream = "trade"
    depth_path = "/api/v3/depth"
    depth_weight = 50
    rest_limit = RestRateLimit(weight=6000, window_s=60.0)
    policy = ConnectionPolicy(
        keepalive=KeepalivePolicy(protocol_ping_interval_s=30.0, pong_timeout_s=10.0, server_pings=True),
        max_lifetime_s=24 * 3600.0,
        max_streams_per_connection=1024,
        max_outbound_per_s=5.0,
        connect_limit=ConnectRateLimit(max_connects=300, window_s=300.0),
        max_subscriptions_per_request=_MAX_PARAMS_PER_REQUEST,
    )
    book_sync = BookSyncSpec(
        source=SnapshotSource.REST, sequence=SequenceModel.CONTIGUOUS, bridge_offset=1, checksum=None
    )

    def _instrument(self, s: _SymbolInfo) -> Instrument | None:
        status = self._status(s)
        return Instrument(f"{s.baseAsset}/{s.quoteAsset}", s.symbol, status == "TRADING", status)

    def _check_market(
        self, symbol: str, base: str, quote: str, settle: str | None, expiry: str | None
    ) -> None:
        if settle is not None:
            raise ValueError(f"binance spot: {symbol!r} is not a spot symbol (expected BASE/QUOTE)")

    def _unify(self, exchange_symbol: str) -> str:
        base, quote = split_concatenated(exchange_symbol)
        return f"{base}/{quote}" if quote else base


class BinanceFuturesAdapter(BinanceAdapterBase):
    """What Binance's USDⓈ-M and COIN-M perpetual markets share: ``@aggTrade`` trades (ids ``a``, backfilled
    with ``aggTrades?fromId=``), the ``pu``-linked depth stream stitched to a REST snapshot with bridge offset
    0, server pings every 3 min (pong within 10 min), 24 h lifetime, 1024 streams and 10 inbound messages/s per
    connection, only ``PERPETUAL`` contracts; use :class:`BinanceUsdmAdapter` or :class:`BinanceCoinmAdapter`.
    """

    market = Market.PERPETUAL
    trade_stream = "aggTrade"
    depth_weight = 20
    info_weight = 1
    backfill_weight = 20
    rest_limit = RestRateLimit(weight=2400, window_s=60.0)
    policy = ConnectionPolicy(
        keepalive=KeepalivePolicy(protocol_ping_interval_s=30.0, pong_timeout_s=10.0, server_pings=True),
        max_lifetime_s=24 * 3600.0,
        max_streams_per_connection=1024,
        max_outbound_per_s=10.0,
        # not documented for futures market streams: the spot figure (300 per 5 min per IP), the tolerant choice
        connect_limit=ConnectRateLimit(max_connects=300, window_s=300.0),
        max_subscriptions_per_request=_MAX_PARAMS_PER_REQUEST,
    )
    book_sync = BookSyncSpec(
        source=SnapshotSource.REST, sequence=SequenceModel.LINKED, bridge_offset=0, checksum=None
    )

    def parse_trades(self, body: bytes, subscription: Subscription, receipt_ns: int) -> list[Trade]:
        """Parse an ``aggTrades`` page into backfilled trades (ids are aggregate ids ``a``, as on the
        ``@aggTrade`` stream).

        Raises:
            DecodeError: not an aggTrades list.
        """
        items = decode_json(_agg_decoder, body, self.exchange, "malformed aggTrades")
        return self._backfilled(subscription, receipt_ns, ((t.p, t.q, t.m, t.a, t.T) for t in items))


class BinanceUsdmAdapter(BinanceFuturesAdapter):
    """Binance USDⓈ-M perpetuals (docs/protocols/binance.md, part 2); ``exchange`` ``binanceusdm``.

    Routed URLs [changed 2026]: ``<base>/public/stream`` for book and ticker streams, ``<base>/market/stream``
    for trades. Book sync: REST ``/fapi/v1/depth`` limit 1000 (weight 20). Backfill ``/fapi/v1/aggTrades``.
    Quantities in the base asset.
    """

    exchange = "binanceusdm"
    ccxt_id = "binanceusdm"
    ws_base_url = "wss://fstream.binance.com"
    rest_base_url = "https://fapi.binance.com"
    depth_path = "/fapi/v1/depth"
    info_path = "/fapi/v1/exchangeInfo"
    backfill_path = "/fapi/v1/aggTrades"

    def _instrument(self, s: _SymbolInfo) -> Instrument | None:
        if s.contractType != "PERPETUAL":
            return None
        status = self._status(s)
        unified = f"{s.baseAsset}/{s.quoteAsset}:{s.marginAsset or s.quoteAsset}"
        return Instrument(unified, s.symbol, status == "TRADING", status)

    def route(self, subscription: Subscription) -> str:
        """``public`` for book and ticker (``@depth*``, ``@bookTicker``), ``market`` for trades."""
        return "market" if subscription.channel is Channel.TRADES else "public"

    def _check_market(
        self, symbol: str, base: str, quote: str, settle: str | None, expiry: str | None
    ) -> None:
        if settle is None or settle != quote or expiry is not None:
            raise ValueError(
                f"binance USDⓈ-M: {symbol!r} is not a linear perpetual (expected BASE/QUOTE:QUOTE)"
            )

    def _unify(self, exchange_symbol: str) -> str:
        base, quote = split_concatenated(exchange_symbol)
        return f"{base}/{quote}:{quote}" if quote else base


class BinanceCoinmAdapter(BinanceFuturesAdapter):
    """Binance COIN-M (coin-margined, inverse) perpetuals (docs/protocols/binance.md, part 3); ``exchange``
    ``binancecoinm``.

    WebSocket ``wss://dstream.binance.com/stream`` (no routes), REST ``https://dapi.binance.com``. Symbols
    ``BTC/USD:BTC`` <-> ``BTCUSD_PERP`` (stream ``btcusd_perp``); dated contracts that arrive anyway
    (``BTCUSD_211231``) decode as ``BTC/USD:BTC-211231``. Amounts are in contracts
    (:attr:`~cryptolink.models.AmountUnit.CONTRACTS`) of ``contractSize`` USD each, taken from
    ``GET /dapi/v1/exchangeInfo`` (BTC 100 USD, others 10 USD). Book sync: REST ``/dapi/v1/depth`` limit 1000
    (weight 20) with the ``pu`` chain. Backfill: ``/dapi/v1/aggTrades`` (weight 20, no key). REST budget:
    REQUEST_WEIGHT 2400 per minute per IP.
    Sources: https://developers.binance.com/docs/derivatives/coin-margined-futures/websocket-market-streams,
    ``.../websocket-market-streams/How-to-manage-a-local-order-book-correctly``,
    ``.../market-data/Order-Book``, ``.../market-data/Compressed-Aggregate-Trades-List``.
    """

    exchange = "binancecoinm"
    ccxt_id = "binancecoinm"
    amount_unit_ = AmountUnit.CONTRACTS
    ws_base_url = "wss://dstream.binance.com"
    rest_base_url = "https://dapi.binance.com"
    depth_path = "/dapi/v1/depth"
    info_path = "/dapi/v1/exchangeInfo"
    backfill_path = "/dapi/v1/aggTrades"

    def _exchange_id(self, base: str, quote: str) -> str:
        return f"{base}{quote}_PERP".upper()

    def _instrument(self, s: _SymbolInfo) -> Instrument | None:
        if s.contractType != "PERPETUAL":
            return None
        status = self._status(s)
        return Instrument(
            f"{s.baseAsset}/{s.quoteAsset}:{s.marginAsset or s.baseAsset}",
            s.symbol,
            status == "TRADING",
            status,
            AmountUnit.CONTRACTS,
            s.contractSize,
            s.quoteAsset if s.contractSize is not None else None,
        )

    def _check_market(
        self, symbol: str, base: str, quote: str, settle: str | None, expiry: str | None
    ) -> None:
        if settle is None or settle != base or expiry is not None:
            raise ValueError(
                f"binance COIN-M: {symbol!r} is not an inverse perpetual (expected BASE/USD:BASE)"
            )

    def _unify(self, exchange_symbol: str) -> str:
        pair, _, kind = exchange_symbol.upper().partition("_")
        base, quote = split_concatenated(pair)
        if not quote:
            return exchange_symbol
        if kind in ("", "PERP"):
            return f"{base}/{quote}:{base}"
        return f"{base}/{quote}:{base}-{kind}"


# ------------------------------------------------------------------------------------------- registrations
# Testnets (docs/protocols/binance.md 1.1, 2.1, 3.1): spot ``stream.testnet.binance.vision`` /
# ``testnet.binance.vision`` (S-TN); USDⓈ-M ``fstream.binancefuture.com`` / ``demo-fapi.binance.com`` (F-GI
# "testnet-api-information"); COIN-M ``dstream.binancefuture.com`` / ``testnet.binancefuture.com`` (/dapi;
# unconfirmed against the current COIN-M page).
register(
    "binance",
    Market.SPOT,
    BinanceSpotAdapter,
    shapes=(SymbolShape.SPOT,),
    testnet=("wss://stream.testnet.binance.vision", "https://testnet.binance.vision"),
)
register(
    "binanceusdm",
    Market.PERPETUAL,
    BinanceUsdmAdapter,
    shapes=(SymbolShape.LINEAR,),
    testnet=("wss://fstream.binancefuture.com", "https://demo-fapi.binance.com"),
    aliases=("binance",),
)
register(
    "binancecoinm",
    Market.PERPETUAL,
    BinanceCoinmAdapter,
    shapes=(SymbolShape.INVERSE,),
    testnet=("wss://dstream.binancefuture.com", "https://testnet.binancefuture.com"),
)
