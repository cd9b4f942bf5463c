"""Binance spot and USDⓈ-M perpetual protocol adapters (sans-I/O).

Protocol facts and their official sources are in ``docs/protocols/binance.md`` (spot: the
binance-spot-api-docs pages "WebSocket Streams", "Market data endpoints", "General endpoints", "Limits";
USDⓈ-M: "WebSocket Market Streams", "Important WebSocket Change Notice" [routed URLs, 2026], "How to manage a
local order book correctly", "Compressed/Aggregate Trades List").

- Connections use the combined-stream path (``<base>/stream``; USDⓈ-M routed ``/public/stream`` for
  ``@depth*`` and ``@bookTicker``, ``/market/stream`` for ``@aggTrade``/``@trade``/``@ticker``); streams are
  added with live ``SUBSCRIBE`` requests whose acks (``{"result":null,"id":N}``) are resolved by the engine
  from the request id.
- Frames are ``{"stream":"<name>","data":{...}}``; raw (non-combined) payloads are decoded too, including the
  raw ``bookTicker`` payload, which has no ``"e"`` field.
- Channels: trades -> spot ``<s>@trade`` (id ``t``), USDⓈ-M ``<s>@aggTrade`` (id ``a``; ``@trade`` decoded
  too); ticker -> ``<s>@bookTicker`` (BBO, ``u`` as sequence, no last price); book -> ``<s>@depth@100ms``
  (``@depth``, ``@depth@0ms``, ``@depth@250ms``, ``@depth@500ms`` decoded too).
- Trade ids of a symbol are contiguous (aggregate ids ``a``; spot trade ids ``t`` as observed, the docs do
  not say), so a skipped id is a missing trade; backfill: spot ``GET /api/v3/historicalTrades?fromId=``
  (no key, weight 25, <= 1000 per page), USDⓈ-M ``GET /fapi/v1/aggTrades?fromId=`` (weight 20, <= 1000).
- Taker side: ``m`` true means the buyer is the maker, so the taker SOLD.
- Sizes are in base currency (spot and USDⓈ-M quantities are in the base asset).
- Instruments: ``GET /api/v3/exchangeInfo`` (weight 20) / ``GET /fapi/v1/exchangeInfo`` (weight 1).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from typing import Any, ClassVar, Literal

import msgspec

from cryptolink.exchanges.base import (
    Ack,
    BackfillCursor,
    BookMessage,
    BookSyncSpec,
    ConnectionPolicy,
    ConnectionSpec,
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
)
from cryptolink.models import AmountUnit, Channel, Market, Side, Subscription, Ticker, Trade
from cryptolink.symbols import parse_unified, split_concatenated

__all__ = ["BinanceAdapterBase", "BinanceSpotAdapter", "BinanceUsdmAdapter"]

_MAX_PARAMS_PER_REQUEST = 200
_BACKFILL_PAGE = 1000
_BASE = AmountUnit.BASE
_TRADES = Channel.TRADES
_TICKER = Channel.TICKER


# ------------------------------------------------------------------------------------------- wire structs
class _Envelope(msgspec.Struct):
    """Combined-stream wrapper, ack, error, or a raw event: all fields optional (``u`` without ``e`` is a raw
    ``bookTicker`` payload)."""

    stream: str | None = None
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
    """``/api/v3/aggTrades`` and ``/fapi/v1/aggTrades`` item."""

    a: int
    p: Decimal
    q: Decimal
    T: int
    m: bool


class _SymbolInfo(msgspec.Struct):
    symbol: str
    status: str
    baseAsset: str
    quoteAsset: str
    contractType: str | None = None
    marginAsset: str | None = None


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
    """Shared Binance logic; use :class:`BinanceSpotAdapter` or :class:`BinanceUsdmAdapter`.

    Attributes:
        ccxt_id: ccxt's id for this market (``binance`` spot, ``binanceusdm`` USDⓈ-M).
    """

    exchange = "binance"
    ccxt_id: ClassVar[str] = "binance"
    trade_ids_contiguous = True
    trade_backfill = True
    trade_stream: ClassVar[str] = "trade"
    book_stream: ClassVar[str] = "depth@100ms"
    depth_path: ClassVar[str] = "/api/v3/depth"
    depth_weight: ClassVar[int] = 50
    snapshot_limit: ClassVar[int] = 1000
    info_path: ClassVar[str] = "/api/v3/exchangeInfo"
    info_weight: ClassVar[int] = 20

    def __init__(
        self, *, ws_base_url: str | None = None, rest_base_url: str | None = None, feed: str | None = None
    ) -> None:
        super().__init__(ws_base_url=ws_base_url, rest_base_url=rest_base_url, feed=feed)
        # lowercase stream symbol (``btcusdt``) -> (unified, exchange symbol)
        self._symbols: dict[str, tuple[str, str]] = {}
        self._exchange_ids: dict[str, str] = {}
        self._handlers: dict[str, Callable[[bytes, str, int], list[Decoded]]] = {
            "trade": self._decode_trade,
            "aggTrade": self._decode_trade,
            "bookTicker": self._decode_ticker,
        }
        for kind in _DEPTH_KINDS:
            self._handlers[kind] = self._decode_depth

    # symbols ---------------------------------------------------------------------------------------------
    def exchange_symbol(self, symbol: str) -> str:
        """``BTC/USDT`` -> ``BTCUSDT`` (spot); ``BTC/USDT:USDT`` -> ``BTCUSDT`` (USDⓈ-M).

        Raises:
            ValueError: not a unified symbol, or not of this adapter's market (spot symbols have no settle
                currency; USDⓈ-M symbols settle in their quote currency and have no expiry).
        """
        cached = self._exchange_ids.get(symbol)
        if cached is not None:
            return cached
        base, quote, settle, expiry = parse_unified(symbol)
        self._check_market(symbol, quote, settle, expiry)
        ex = f"{base}{quote}".upper()
        self._exchange_ids[symbol] = ex
        self._symbols[ex.lower()] = (symbol, ex)
        return ex

    def _check_market(self, symbol: str, quote: str, settle: str | None, expiry: str | None) -> None:
        raise NotImplementedError

    def _unify(self, exchange_symbol: str) -> str:
        raise NotImplementedError

    def _lookup(self, stream_symbol: str, exchange_symbol: str) -> tuple[str, str]:
        hit = self._symbols.get(stream_symbol)
        if hit is not None:
            return hit
        ex = exchange_symbol or stream_symbol.upper()
        hit = (self._unify(ex), ex)
        if len(self._symbols) < 100_000:
            self._symbols[stream_symbol] = hit
        return hit

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
    def route(self, subscription: Subscription) -> str:
        """URL family of ``subscription``'s stream (``""`` on spot)."""
        return ""

    def plan_connections(self, subscriptions: Sequence[Subscription]) -> list[ConnectionSpec]:
        """Group by route, keep input order, drop duplicates, split at
        ``policy.max_streams_per_connection``."""
        groups: dict[str, list[Subscription]] = {}
        seen: set[Subscription] = set()
        for sub in subscriptions:
            if sub in seen:
                continue
            seen.add(sub)
            self.exchange_symbol(sub.symbol)  # validates and fills the symbol map
            groups.setdefault(self.route(sub), []).append(sub)
        limit = self.policy.max_streams_per_connection
        out: list[ConnectionSpec] = []
        for route, subs in groups.items():
            url = self._url(route)
            for i in range(0, len(subs), limit):
                out.append(ConnectionSpec(url=url, subscriptions=tuple(subs[i : i + limit]), route=route))
        return out

    def _url(self, route: str) -> str:
        return f"{self.ws_base_url}/{route}/stream" if route else f"{self.ws_base_url}/stream"

    def requests(
        self, op: Literal["subscribe", "unsubscribe"], subscriptions: Sequence[Subscription], next_id: int
    ) -> list[OutboundRequest]:
        """``{"method":"SUBSCRIBE"|"UNSUBSCRIBE","params":[...],"id":N}`` frames, at most 200 streams each
        (docs/protocols/binance.md "Subscribe")."""
        subs = list(dict.fromkeys(subscriptions))
        method = "SUBSCRIBE" if op == "subscribe" else "UNSUBSCRIBE"
        out: list[OutboundRequest] = []
        for i in range(0, len(subs), _MAX_PARAMS_PER_REQUEST):
            chunk = tuple(subs[i : i + _MAX_PARAMS_PER_REQUEST])
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
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise DecodeError(f"binance: malformed frame: {exc}") from exc
        stream = env.stream
        if stream is not None:
            data = env.data
            if not data:
                raise DecodeError("binance: combined-stream frame without data")
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
        if env.code is not None:
            msg = env.msg or ""
            if env.id is None:
                return [ExchangeError(str(env.code), msg)]
            return [Rejected(env.id, str(env.code), msg)]
        if env.id is not None:
            if env.result is not None:
                return []  # answers to LIST_SUBSCRIPTIONS / GET_PROPERTY: not ours
            return [Ack(None, env.id)]
        if env.u is not None:  # a raw bookTicker payload: {"u":..,"s":..,"b":..,"B":..,"a":..,"A":..}
            raw = frame.encode() if isinstance(frame, str) else frame
            return self._decode_ticker(raw, "", receipt_ns)
        return []

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
        try:
            m = _trade_decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise DecodeError(f"binance: malformed trade: {exc}") from exc
        tid = m.t if m.t is not None else m.a
        if tid is None:
            raise DecodeError("binance: trade without id (t/a)")
        symbol, ex = self._lookup(stream_sym or m.s.lower(), m.s)
        return [
            Trade(
                self.exchange,
                symbol,
                ex,
                m.p,
                m.q,
                Side.SELL if m.m else Side.BUY,
                str(tid),
                m.T if m.T is not None else m.E,
                receipt_ns,
                tid,
                _TRADES,
                self.feed,
            )
        ]

    def _decode_ticker(self, data: bytes, stream_sym: str, receipt_ns: int) -> list[Decoded]:
        try:
            m = _ticker_decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise DecodeError(f"binance: malformed bookTicker: {exc}") from exc
        symbol, ex = self._lookup(stream_sym or m.s.lower(), m.s)
        return [
            Ticker(
                self.exchange, symbol, ex, m.b, m.B, m.a, m.A, None, m.E, receipt_ns, m.u, _TICKER, self.feed
            )
        ]

    def _decode_depth(self, data: bytes, stream_sym: str, receipt_ns: int) -> list[Decoded]:
        try:
            m = _depth_decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise DecodeError(f"binance: malformed depthUpdate: {exc}") from exc
        symbol, ex = self._lookup(stream_sym or m.s.lower(), m.s)
        return [BookMessage(symbol, ex, False, m.b, m.a, m.U, m.u, m.pu, None, m.E, receipt_ns)]

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
        try:
            m = _snapshot_decoder.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise DecodeError(f"binance: malformed depth snapshot: {exc}") from exc
        ex = self.exchange_symbol(subscription.symbol)
        return BookMessage(
            subscription.symbol,
            ex,
            True,
            m.bids,
            m.asks,
            m.lastUpdateId,
            m.lastUpdateId,
            None,
            None,
            m.E,
            receipt_ns,
        )

    # instruments -----------------------------------------------------------------------------------------
    def instruments_request(self) -> RestRequest:
        """``GET <exchangeInfo>`` (spot weight 20, USDⓈ-M weight 1)."""
        return RestRequest(path=self.info_path, params={}, weight=self.info_weight)

    def parse_instruments(self, body: bytes) -> list[Instrument]:
        """The symbols of ``exchangeInfo`` that belong to this market; ``active`` when ``status`` is
        ``TRADING``.

        Raises:
            DecodeError: not an exchangeInfo body.
        """
        try:
            info = _info_decoder.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise DecodeError(f"binance: malformed exchangeInfo: {exc}") from exc
        out: list[Instrument] = []
        for s in info.symbols:
            unified = self._instrument_symbol(s)
            if unified is None:
                continue
            out.append(Instrument(unified, s.symbol, s.status == "TRADING", s.status))
        return out

    def _instrument_symbol(self, s: _SymbolInfo) -> str | None:
        raise NotImplementedError

    # trade backfill ---------------------------------------------------------------------------------------
    backfill_path: ClassVar[str] = "/api/v3/historicalTrades"
    backfill_weight: ClassVar[int] = 25

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
        try:
            items = _hist_decoder.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise DecodeError(f"binance: malformed historicalTrades: {exc}") from exc
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
        return [
            Trade(
                self.exchange,
                sym,
                ex,
                price,
                qty,
                Side.SELL if buyer_maker else Side.BUY,
                str(tid),
                ts,
                receipt_ns,
                tid,
                _TRADES,
                self.feed,
                backfilled=True,
            )
            for price, qty, buyer_maker, tid, ts in rows
        ]


def _is_shutdown(data: bytes) -> bool:
    return b'"serverShutdown"' in bytes(data)


class BinanceSpotAdapter(BinanceAdapterBase):
    """Binance spot (docs/protocols/binance.md, part 1).

    Policy: server pings every 20 s (the transport answers; pong within 60 s), a protocol ping every 30 s for
    round-trip time, 24 h connection lifetime, 1024 streams and 5 inbound messages/s per connection, 300
    connection attempts per 5 min per IP. Book sync: REST ``/api/v3/depth`` limit 1000 (weight 50) stitched
    with ``U``/``u`` (CONTIGUOUS, bridge offset 1). Backfill: ``/api/v3/historicalTrades`` (no key).
    """

    market = Market.SPOT
    ccxt_id = "binance"
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
    )
    book_sync = BookSyncSpec(
        source=SnapshotSource.REST, sequence=SequenceModel.CONTIGUOUS, bridge_offset=1, checksum=None
    )

    def _instrument_symbol(self, s: _SymbolInfo) -> str | None:
        return f"{s.baseAsset}/{s.quoteAsset}"

    def _check_market(self, symbol: str, quote: str, settle: str | None, expiry: str | None) -> None:
        if settle is not None:
            raise ValueError(f"binance spot: {symbol!r} is not a spot symbol (expected BASE/QUOTE)")

    def _unify(self, exchange_symbol: str) -> str:
        base, quote = split_concatenated(exchange_symbol)
        return f"{base}/{quote}" if quote else base


class BinanceUsdmAdapter(BinanceAdapterBase):
    """Binance USDⓈ-M perpetuals (docs/protocols/binance.md, part 2); ``exchange`` is ``binance``,
    ``ccxt_id`` ``binanceusdm``.

    Routed URLs [changed 2026]: ``<base>/public/stream`` for book and ticker streams, ``<base>/market/stream``
    for trades. Policy: server pings every 3 min (pong within 10 min), protocol ping every 30 s, 24 h
    lifetime, 1024 streams and 10 inbound messages/s per connection. Book sync: REST ``/fapi/v1/depth`` limit
    1000 (weight 20) with the ``pu`` chain (LINKED, bridge offset 0).
    """

    market = Market.PERPETUAL
    ccxt_id = "binanceusdm"
    ws_base_url = "wss://fstream.binance.com"
    rest_base_url = "https://fapi.binance.com"
    trade_stream = "aggTrade"
    depth_path = "/fapi/v1/depth"
    depth_weight = 20
    info_path = "/fapi/v1/exchangeInfo"
    info_weight = 1
    rest_limit = RestRateLimit(weight=2400, window_s=60.0)
    backfill_path = "/fapi/v1/aggTrades"
    backfill_weight = 20
    policy = ConnectionPolicy(
        keepalive=KeepalivePolicy(protocol_ping_interval_s=30.0, pong_timeout_s=10.0, server_pings=True),
        max_lifetime_s=24 * 3600.0,
        max_streams_per_connection=1024,
        max_outbound_per_s=10.0,
        # not documented for USDⓈ-M: the spot figure (300 per 5 min per IP) is applied, the tolerant choice
        connect_limit=ConnectRateLimit(max_connects=300, window_s=300.0),
    )
    book_sync = BookSyncSpec(
        source=SnapshotSource.REST, sequence=SequenceModel.LINKED, bridge_offset=0, checksum=None
    )

    def _instrument_symbol(self, s: _SymbolInfo) -> str | None:
        if s.contractType != "PERPETUAL":
            return None
        return f"{s.baseAsset}/{s.quoteAsset}:{s.marginAsset or s.quoteAsset}"

    def parse_trades(self, body: bytes, subscription: Subscription, receipt_ns: int) -> list[Trade]:
        """Parse an ``aggTrades`` page into backfilled trades (ids are aggregate ids ``a``, as on the
        ``@aggTrade`` stream).

        Raises:
            DecodeError: not an aggTrades list.
        """
        try:
            items = _agg_decoder.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise DecodeError(f"binance: malformed aggTrades: {exc}") from exc
        return self._backfilled(subscription, receipt_ns, ((t.p, t.q, t.m, t.a, t.T) for t in items))

    def route(self, subscription: Subscription) -> str:
        """``public`` for book and ticker (``@depth*``, ``@bookTicker``), ``market`` for trades."""
        return "market" if subscription.channel is Channel.TRADES else "public"

    def _check_market(self, symbol: str, quote: str, settle: str | None, expiry: str | None) -> None:
        if settle is None or settle != quote or expiry is not None:
            raise ValueError(
                f"binance USDⓈ-M: {symbol!r} is not a linear perpetual (expected BASE/QUOTE:QUOTE)"
            )

    def _unify(self, exchange_symbol: str) -> str:
        base, quote = split_concatenated(exchange_symbol)
        return f"{base}/{quote}:{quote}" if quote else base
