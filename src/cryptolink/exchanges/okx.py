"""OKX v5 public protocol adapter (sans-I/O), spot and perpetual swaps.

Protocol facts and their official sources (https://www.okx.com/docs-v5/en/ sections
``#overview-websocket-connect``, ``#overview-websocket-subscribe``,
``#order-book-trading-market-data-ws-order-book-channel``, ``…-ws-trades-channel``,
``…-get-trades-history``, ``#public-data-rest-api-get-instruments``) are in ``docs/protocols/okx.md``:

- URL ``wss://ws.okx.com:8443/ws/v5/public``; subscribe
  ``{"id":"N","op":"subscribe","args":[{channel,instId}]}`` (args batched, at most 64 KB per request; 480
  subscribe/unsubscribe requests per hour per connection; 3 connection requests per second per IP).
- Acks come one per arg: ``{"id":"N","event":"subscribe","arg":{...}}``; errors
  ``{"id":"N","event":"error","code":..}`` (resolved by the engine from the id);
  ``{"event":"notice","code":"64008"}`` announces a close for a service upgrade; text ``pong`` answers
  ``ping``.
- Keepalive: the client sends text ``ping`` when nothing was received for N < 30 s; the server closes a
  connection without subscription or data for 30 s. No server pings. We also send ``ping`` every 20 s while
  data flows, to measure the round-trip time (the docs describe the idle rule only; the server answers any
  ``ping``).
- Channels: ``trades`` (``tradeId`` -> sequence; ``side`` is the taker side), ``tickers`` (BBO + last),
  ``books`` (WebSocket snapshot then updates chained by ``seqId``/``prevSeqId``; legacy CRC32 checksum, top
  25, signed, verified when non-zero).
- Symbols: spot ``BTC/USDT`` <-> ``BTC-USDT``; linear perp ``BTC/USDT:USDT`` <-> ``BTC-USDT-SWAP``; inverse
  perp ``BTC/USD:BTC`` <-> ``BTC-USD-SWAP``; dated futures ``BTC-USD-220527`` decode as
  ``BTC/USD:BTC-220527``.
- Sizes: spot in base currency; SWAP/FUTURES in contracts (``sz`` as sent), with the contract size
  (``ctVal`` x ``ctMult`` in ``ctValCcy``) from ``GET /api/v5/public/instruments`` on every event.
- Trade ids increase per instrument but are not contiguous (a trade message aggregates ``count`` fills), so
  after an interruption the feed asks ``GET /api/v5/market/history-trades?type=1&after=<id>`` (older than
  ``id``, newest first, <= 100 per page, 20 requests per 2 s) for everything between the last trade before it
  and the first after it.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from typing import Literal

import msgspec

from cryptolink.exchanges.base import (
    MSGSPEC_ERRORS,
    Ack,
    BackfillCursor,
    BookMessage,
    BookSyncSpec,
    BoundedMap,
    ChecksumSpec,
    ConnectionPolicy,
    ConnectRateLimit,
    Decoded,
    DecodeError,
    ExchangeAdapter,
    Instrument,
    KeepalivePolicy,
    OutboundRequest,
    Pong,
    Rejected,
    RestRateLimit,
    RestRequest,
    SequenceModel,
    ServerNotice,
    SnapshotSource,
    SymbolCache,
    decode_json,
    uint,
)
from cryptolink.exchanges.registry import for_market, register
from cryptolink.models import AmountUnit, Channel, Market, Side, Subscription, Ticker, Trade
from cryptolink.symbols import SymbolShape, parse_unified

__all__ = ["OkxAdapter"]

_MAX_REQUEST_BYTES = 64 * 1024
"""OKX: the total length of ``args`` in one request must stay within 64 KB (docs/protocols/okx.md "Limits",
https://www.okx.com/docs-v5/en/#overview-websocket-subscribe)."""
_MAX_BOOKS_PER_CONNECTION = 29
"""OKX recommends FEWER than 30 book channels per connection (docs/protocols/okx.md "Limits",
https://www.okx.com/docs-v5/en/#order-book-trading-market-data-ws-order-book-channel)."""
_MAX_PENDING_ACK_KEYS = 100_000
"""Bound on (channel, instId) -> subscription entries kept to map acks back (evictions are counted)."""
_BACKFILL_PAGE = 100
_TRADES = Channel.TRADES
_TICKER = Channel.TICKER
_BOOK = Channel.BOOK

_CHANNEL_NAMES: dict[Channel, str] = {
    Channel.TRADES: "trades",
    Channel.TICKER: "tickers",
    Channel.BOOK: "books",
}
_CHANNELS_BY_NAME: dict[str, Channel] = {v: k for k, v in _CHANNEL_NAMES.items()}


# ------------------------------------------------------------------------------------------- wire structs
class _Arg(msgspec.Struct):
    channel: str
    instId: str = ""


class _Envelope(msgspec.Struct):
    arg: _Arg | None = None
    action: str | None = None
    data: msgspec.Raw = msgspec.Raw()
    event: str | None = None
    id: str | None = None
    code: str | None = None
    msg: str | None = None


class _TradeMsg(msgspec.Struct):
    instId: str
    tradeId: str
    px: Decimal
    sz: Decimal
    side: str
    ts: str


class _TickerMsg(msgspec.Struct):
    instId: str
    ts: str
    last: str = ""
    askPx: str = ""
    askSz: str = ""
    bidPx: str = ""
    bidSz: str = ""


class _BookMsg(msgspec.Struct):
    asks: list[list[str]]
    bids: list[list[str]]
    ts: str = ""
    checksum: int | None = None
    prevSeqId: int | None = None
    seqId: int | None = None


class _RestBooks(msgspec.Struct):
    code: str
    data: list[_BookMsg]
    msg: str = ""


class _RestTrades(msgspec.Struct):
    code: str
    data: list[_TradeMsg]  # the REST items have the WebSocket trade's fields
    msg: str = ""


class _Inst(msgspec.Struct):
    instId: str
    instType: str
    state: str = ""
    ctVal: str = ""
    ctMult: str = ""
    ctValCcy: str = ""
    settleCcy: str = ""
    baseCcy: str = ""
    quoteCcy: str = ""


class _RestInsts(msgspec.Struct):
    code: str
    data: list[_Inst]
    msg: str = ""


_env_decoder = msgspec.json.Decoder(_Envelope)
_trades_decoder = msgspec.json.Decoder(list[_TradeMsg])
_tickers_decoder = msgspec.json.Decoder(list[_TickerMsg])
_books_decoder = msgspec.json.Decoder(list[_BookMsg])
_rest_books_decoder = msgspec.json.Decoder(_RestBooks)
_rest_trades_decoder = msgspec.json.Decoder(_RestTrades)
_rest_insts_decoder = msgspec.json.Decoder(_RestInsts)
_json_encoder = msgspec.json.Encoder()


def _dec(text: str) -> Decimal | None:
    if not text:
        return None
    try:
        return Decimal(text)
    except InvalidOperation as exc:
        raise DecodeError(f"okx: not a decimal number: {text!r}") from exc


def _int(text: str) -> int | None:
    if not text:
        return None
    try:
        return int(text)
    except ValueError as exc:
        raise DecodeError(f"okx: not an integer: {text!r}") from exc


def _guess_unified(inst_id: str) -> str:
    parts = inst_id.split("-")
    if len(parts) == 2:
        return f"{parts[0]}/{parts[1]}"
    if len(parts) == 3:
        base, quote, kind = parts
        settle = quote if quote in ("USDT", "USDC") else base
        return f"{base}/{quote}:{settle}" if kind == "SWAP" else f"{base}/{quote}:{settle}-{kind}"
    return inst_id


def _request_id(raw: str | None) -> int | str | None:
    """Our request ids are decimal integers sent as strings; give them back as ``int``."""
    if raw is None:
        return None
    value = uint(raw)
    return raw if value is None else value


class OkxAdapter(ExchangeAdapter):
    """OKX v5 public market data for one market (``Market.SPOT`` or ``Market.PERPETUAL``).

    Args:
        market: spot (``BTC/USDT``) or perpetual swaps (``BTC/USDT:USDT`` linear, ``BTC/USD:BTC`` inverse).
        ws_base_url: WebSocket scheme, host and port (default ``wss://ws.okx.com:8443``); connections use
            ``<ws_base_url>/ws/v5/public`` (docs/protocols/okx.md "URLs").
        rest_base_url: REST base (default ``https://www.okx.com``).

    Book sync: WebSocket snapshot, LINKED ``prevSeqId`` chain, legacy CRC32 checksum top 25 signed (verified
    only when the exchange sends a non-zero value; current OKX sends 0 [changed 2026]).
    """

    exchange = "okx"
    ccxt_id = "okx"
    trade_backfill = True
    ws_base_url = "wss://ws.okx.com:8443"
    ws_public_path = "/ws/v5/public"
    rest_base_url = "https://www.okx.com"
    # per endpoint and IP: instruments and history-trades 20 per 2 s, books 40 per 2 s; one budget of the
    # smallest for all of them
    rest_limit = RestRateLimit(weight=20, window_s=2.0)
    policy = ConnectionPolicy(
        keepalive=KeepalivePolicy(
            app_ping_frame="ping",
            app_ping_idle_s=20.0,
            app_ping_interval_s=20.0,
            protocol_ping_interval_s=None,
            pong_timeout_s=10.0,
            server_pings=False,
        ),
        max_lifetime_s=None,
        max_streams_per_connection=240,
        max_outbound_per_s=None,
        max_subscribe_requests_per_hour=480,
        server_idle_close_s=30.0,
        connect_limit=ConnectRateLimit(max_connects=3, window_s=1.0),
        max_request_bytes=_MAX_REQUEST_BYTES,
        max_books_per_connection=_MAX_BOOKS_PER_CONNECTION,
    )
    book_sync = BookSyncSpec(
        source=SnapshotSource.WEBSOCKET,
        sequence=SequenceModel.LINKED,
        bridge_offset=0,
        checksum=ChecksumSpec(depth=25, signed=True),
    )

    def __init__(
        self,
        market: Market = Market.SPOT,
        *,
        ws_base_url: str | None = None,
        rest_base_url: str | None = None,
        feed: str | None = None,
    ) -> None:
        super().__init__(ws_base_url=ws_base_url, rest_base_url=rest_base_url, feed=feed)
        if self.ws_base_url.endswith(self.ws_public_path):  # a full URL given as override
            self.ws_base_url = self.ws_base_url[: -len(self.ws_public_path)]
        self.market = Market(market)
        self._symbols = SymbolCache()  # unified <-> instId
        self._pinned = self._symbols.pinned
        # (channel name, instId) -> the Subscription we were asked for (acks map back to it)
        self._subs: BoundedMap[tuple[str, str], Subscription] = BoundedMap(_MAX_PENDING_ACK_KEYS)
        self._unit = AmountUnit.BASE if self.market is Market.SPOT else AmountUnit.CONTRACTS

    # symbols ---------------------------------------------------------------------------------------------
    def exchange_symbol(self, symbol: str) -> str:
        """``BTC/USDT`` -> ``BTC-USDT`` (spot); ``BTC/USDT:USDT`` -> ``BTC-USDT-SWAP``; ``BTC/USD:BTC`` ->
        ``BTC-USD-SWAP`` (perpetual).

        Raises:
            ValueError: not a unified symbol or not of this adapter's market (dated futures are not
            supported).
        """
        cached = self._symbols.exchange_symbol(symbol)
        if cached is not None:
            return cached
        base, quote, settle, expiry = parse_unified(symbol)
        if self.market is Market.SPOT:
            if settle is not None:
                raise ValueError(f"okx spot: {symbol!r} is not a spot symbol (expected BASE/QUOTE)")
            inst = f"{base}-{quote}"
        else:
            if settle is None or expiry is not None or settle not in (base, quote):
                raise ValueError(
                    f"okx perpetual: {symbol!r} is not a perpetual swap (BASE/QUOTE:QUOTE or BASE/USD:BASE)"
                )
            inst = f"{base}-{quote}-SWAP"
        self._symbols.pin(symbol, inst)
        return inst

    def unified_symbol(self, inst_id: str) -> str:
        """Best-effort unified symbol of an OKX ``instId`` (subscribed ids map back exactly): ``BTC-USDT`` ->
        ``BTC/USDT``, ``BTC-USDT-SWAP`` -> ``BTC/USDT:USDT``, ``BTC-USD-SWAP`` -> ``BTC/USD:BTC`` (USDT- and
        USDC-quoted swaps are linear, others inverse), ``BTC-USD-220527`` -> ``BTC/USD:BTC-220527``."""
        hit = self._pinned.get(inst_id)  # the subscribed symbols: one dict read per item
        return hit if hit is not None else self._symbols.unified(inst_id, _guess_unified)

    def counters(self) -> dict[str, int]:
        """``symbol_cache_evicted`` (guessed unified symbols dropped) and ``ack_keys_evicted`` ((channel,
        instId) entries dropped from the bounded ack map)."""
        return {"symbol_cache_evicted": self._symbols.evicted, "ack_keys_evicted": self._subs.evicted}

    # connections -----------------------------------------------------------------------------------------
    def connection_url(self, route: str) -> str:
        """``<ws_base_url>/ws/v5/public`` (books, trades, tickers)."""
        return self.ws_base_url + self.ws_public_path

    def _arg(self, sub: Subscription) -> dict[str, str]:
        arg = {"channel": _CHANNEL_NAMES[sub.channel], "instId": self.exchange_symbol(sub.symbol)}
        self._subs.put((arg["channel"], arg["instId"]), sub)
        return arg

    def requests(
        self,
        op: Literal["subscribe", "unsubscribe"],
        subscriptions: Sequence[Subscription],
        next_id: int,
        now_ms: int | None = None,
    ) -> list[OutboundRequest]:
        """Batched ``{"id":"N","op":"subscribe"|"unsubscribe","args":[...]}`` frames, each within 64 KB
        (``policy.max_request_bytes``; docs/protocols/okx.md "Subscribe")."""
        out: list[OutboundRequest] = []
        for chunk in self.request_batches(subscriptions, self._arg_bytes):
            rid = next_id + len(out)
            args = [self._arg(sub) for sub in chunk]
            frame = _json_encoder.encode({"id": str(rid), "op": op, "args": args}).decode()
            out.append(OutboundRequest(frame=frame, request_id=rid, op=op, subscriptions=chunk))
        return out

    def _arg_bytes(self, sub: Subscription) -> int:
        """Encoded length of ``sub``'s arg plus its separator."""
        arg = {"channel": _CHANNEL_NAMES[sub.channel], "instId": self.exchange_symbol(sub.symbol)}
        return len(_json_encoder.encode(arg)) + 1  # no side effect: _arg() records the ack key when sent

    # decoding --------------------------------------------------------------------------------------------
    def _subscription(self, arg: _Arg) -> Subscription:
        hit = self._subs.get((arg.channel, arg.instId))
        if hit is not None:
            return hit
        channel = _CHANNELS_BY_NAME.get(arg.channel)
        if channel is None:
            raise KeyError(arg.channel)
        return Subscription(channel, self.unified_symbol(arg.instId))

    def decode(self, frame: str | bytes, receipt_ns: int) -> list[Decoded]:
        """Decode one frame.

        Returns market data (``Trade``/``Ticker`` per item of ``data``, one ``BookMessage``), ``[Pong]`` for
        text ``pong``, ``[Ack]`` per acked arg, ``[Rejected]`` for ``event:"error"``, ``[ServerNotice]`` for
        ``event:"notice"`` (``rotate`` for code 64008), or ``[]`` for a well-formed frame we do not handle.

        Raises:
            DecodeError: not JSON / not an object, or a known channel whose payload lacks/mistypes fields.
        """
        if frame == "pong" or frame == b"pong":
            return [Pong()]
        try:
            env = _env_decoder.decode(frame)
            arg = env.arg
            data = env.data
            if data:
                if arg is None:
                    raise DecodeError("okx: data frame without arg")
                ch = arg.channel
                if ch == "books":
                    return self._decode_books(data, arg.instId, env.action, receipt_ns)
                if ch == "trades":
                    return self._decode_trades(data, receipt_ns)
                if ch == "tickers":
                    return self._decode_tickers(data, receipt_ns)
                return []
            event = env.event
            if event is None:
                return []
            if event == "subscribe" or event == "unsubscribe":
                op: Literal["subscribe", "unsubscribe"] = (
                    "subscribe" if event == "subscribe" else "unsubscribe"
                )
                if arg is None:
                    return [Ack(op, _request_id(env.id))]
                try:
                    sub = self._subscription(arg)
                except KeyError:
                    return []
                return [Ack(op, _request_id(env.id), (sub,))]
            if event == "error":
                return [Rejected(_request_id(env.id), env.code or "", env.msg or "")]
            if event == "notice":
                code = env.code or ""
                return [ServerNotice(code, env.msg or "", rotate=code == "64008")]
            return []
        except MSGSPEC_ERRORS as exc:  # one conversion for the envelope and every payload decoded below
            raise DecodeError(f"okx: malformed frame: {exc}") from exc

    def _decode_trades(self, data: msgspec.Raw, receipt_ns: int) -> list[Decoded]:
        items = _trades_decoder.decode(data)  # inside decode(): msgspec errors become DecodeError there
        out: list[Decoded] = []
        for t in items:
            if t.side not in ("buy", "sell"):
                raise DecodeError(f"okx: bad trade side {t.side!r}")
            seq = uint(t.tradeId)
            out.append(self._trade(t, self.unified_symbol(t.instId), seq, receipt_ns, backfilled=False))
        return out

    def _trade(
        self, t: _TradeMsg, symbol: str, seq: int | None, receipt_ns: int, *, backfilled: bool
    ) -> Trade:
        """One :class:`Trade` of a checked ``trades`` item (WebSocket push or ``history-trades`` page)."""
        return Trade(
            exchange=self.exchange,
            symbol=symbol,
            exchange_symbol=t.instId,
            price=t.px,
            amount=t.sz,
            side=Side.BUY if t.side == "buy" else Side.SELL,
            trade_id=t.tradeId,
            timestamp_ms=_int(t.ts),
            receipt_ns=receipt_ns,
            sequence=seq,
            channel=_TRADES,
            feed=self.feed,
            amount_unit=self._unit,
            contract_size=self.contract_sizes.get(symbol),
            backfilled=backfilled,
        )

    def _decode_tickers(self, data: msgspec.Raw, receipt_ns: int) -> list[Decoded]:
        items = _tickers_decoder.decode(data)  # inside decode(): msgspec errors become DecodeError there
        out: list[Decoded] = []
        for t in items:
            symbol = self.unified_symbol(t.instId)
            out.append(
                Ticker(
                    exchange=self.exchange,
                    symbol=symbol,
                    exchange_symbol=t.instId,
                    bid_price=_dec(t.bidPx),
                    bid_size=_dec(t.bidSz),
                    ask_price=_dec(t.askPx),
                    ask_size=_dec(t.askSz),
                    last_price=_dec(t.last),
                    timestamp_ms=_int(t.ts),
                    receipt_ns=receipt_ns,
                    sequence=None,
                    channel=_TICKER,
                    feed=self.feed,
                    amount_unit=self._unit,
                    contract_size=self.contract_sizes.get(symbol),
                )
            )
        return out

    def _decode_books(
        self, data: msgspec.Raw, inst_id: str, action: str | None, receipt_ns: int
    ) -> list[Decoded]:
        items = _books_decoder.decode(data)  # inside decode(): msgspec errors become DecodeError there
        if action is None:
            raise DecodeError("okx: books frame without action")
        is_snapshot = action == "snapshot"
        symbol = self.unified_symbol(inst_id)
        return [self._book_message(b, symbol, inst_id, is_snapshot, receipt_ns) for b in items]

    @staticmethod
    def _book_message(
        b: _BookMsg, symbol: str, inst_id: str, is_snapshot: bool, receipt_ns: int
    ) -> BookMessage:
        seq = b.seqId
        if seq is None:
            # Recorded before OKX added seqId: no continuity information; checksum only.
            last, prev = 0, None
        else:
            last, prev = seq, b.prevSeqId
        return BookMessage(
            symbol=symbol,
            exchange_symbol=inst_id,
            is_snapshot=is_snapshot,
            bids=b.bids,
            asks=b.asks,
            first_seq=last,
            last_seq=last,
            prev_seq=prev,
            checksum=b.checksum or None,
            timestamp_ms=_int(b.ts),
            receipt_ns=receipt_ns,
        )

    def amount_unit(self, symbol: str) -> AmountUnit:
        """Contracts on the perpetual market, base currency on spot."""
        return self._unit

    # instruments -----------------------------------------------------------------------------------------
    def instruments_request(self) -> RestRequest:
        """``GET /api/v5/public/instruments?instType=SPOT|SWAP`` (20 requests per 2 s)."""
        inst_type = "SPOT" if self.market is Market.SPOT else "SWAP"
        return RestRequest(path="/api/v5/public/instruments", params={"instType": inst_type})

    def parse_instruments(self, body: bytes) -> list[Instrument]:
        """This market's instruments: unified symbols, ``state == "live"`` as active, contract size
        ``ctVal * ctMult`` in ``ctValCcy`` for swaps.

        Raises:
            DecodeError: malformed body or ``code`` not ``"0"``.
        """
        m = decode_json(_rest_insts_decoder, body, "okx", "malformed instruments answer")
        if m.code != "0":
            raise DecodeError(f"okx: instruments answer code={m.code!r} msg={m.msg!r}")
        out: list[Instrument] = []
        for i in m.data:
            parts = i.instId.split("-")
            if self.market is Market.SPOT:
                if i.instType != "SPOT" or len(parts) != 2:
                    continue
                out.append(Instrument(f"{parts[0]}/{parts[1]}", i.instId, i.state == "live", i.state))
                continue
            if i.instType != "SWAP" or len(parts) != 3:
                continue
            settle = i.settleCcy or (parts[1] if parts[1] in ("USDT", "USDC") else parts[0])
            size: Decimal | None = None
            try:
                size = Decimal(i.ctVal) * (Decimal(i.ctMult) if i.ctMult else Decimal(1))
            except InvalidOperation:
                size = None
            out.append(
                Instrument(
                    f"{parts[0]}/{parts[1]}:{settle}",
                    i.instId,
                    i.state == "live",
                    i.state,
                    AmountUnit.CONTRACTS,
                    size,
                    i.ctValCcy or None,
                )
            )
        return out

    # trade backfill --------------------------------------------------------------------------------------
    def backfill_request(self, subscription: Subscription, cursor: BackfillCursor) -> RestRequest | None:
        """``GET /api/v5/market/history-trades?instId=..&type=1&after=<id>&limit=100``: trades older than
        ``id`` (the oldest fetched so far, first the first trade after the interruption), newest first. Done
        once a page reaches ``after_id`` or comes back short (no more history)."""
        if cursor.oldest is not None and cursor.oldest <= cursor.after_id + 1:
            return None
        if cursor.last_page_size is not None and cursor.last_page_size < _BACKFILL_PAGE:
            return None
        start = cursor.oldest if cursor.oldest is not None else cursor.before_id
        return RestRequest(
            path="/api/v5/market/history-trades",
            params={
                "instId": self.exchange_symbol(subscription.symbol),
                "type": "1",
                "after": str(start),
                "limit": str(_BACKFILL_PAGE),
            },
        )

    def parse_trades(self, body: bytes, subscription: Subscription, receipt_ns: int) -> list[Trade]:
        """Parse a ``history-trades`` page into backfilled trades.

        Raises:
            DecodeError: malformed body or ``code`` not ``"0"``.
        """
        m = decode_json(_rest_trades_decoder, body, "okx", "malformed history-trades answer")
        if m.code != "0":
            raise DecodeError(f"okx: history-trades answer code={m.code!r} msg={m.msg!r}")
        out: list[Trade] = []
        for t in m.data:
            tid = uint(t.tradeId)
            if tid is None or t.side not in ("buy", "sell"):
                raise DecodeError(f"okx: bad history trade {t!r}")
            out.append(self._trade(t, subscription.symbol, tid, receipt_ns, backfilled=True))
        return out

    # books -----------------------------------------------------------------------------------------------
    def snapshot_request(self, subscription: Subscription) -> RestRequest | None:
        """``None``: OKX books are snapshotted over the WebSocket (resync = resubscribe)."""
        return None

    def rest_books_request(self, subscription: Subscription, depth: int = 400) -> RestRequest:
        """``GET /api/v5/market/books?instId=..&sz=..`` (max 400 per side; no seqId in the answer)."""
        return RestRequest(
            path="/api/v5/market/books",
            params={"instId": self.exchange_symbol(subscription.symbol), "sz": str(min(depth, 400))},
        )

    def parse_snapshot(self, body: bytes | str, subscription: Subscription, receipt_ns: int) -> BookMessage:
        """Parse a REST ``/api/v5/market/books`` answer into a snapshot :class:`BookMessage`.

        ``first_seq``/``last_seq`` are ``seqId`` when present, else 0; ``prev_seq`` is ``None``.

        Raises:
            DecodeError: malformed body, ``code`` not ``"0"`` or empty ``data``.
        """
        m = decode_json(_rest_books_decoder, body, "okx", "malformed books answer")
        if m.code != "0" or not m.data:
            raise DecodeError(f"okx: books answer code={m.code!r} msg={m.msg!r}")
        inst = self.exchange_symbol(subscription.symbol)
        b = m.data[0]
        seq = b.seqId or 0
        return BookMessage(
            symbol=subscription.symbol,
            exchange_symbol=inst,
            is_snapshot=True,
            bids=b.bids,
            asks=b.asks,
            first_seq=seq,
            last_seq=seq,
            prev_seq=None,
            checksum=b.checksum or None,
            timestamp_ms=_int(b.ts),
            receipt_ns=receipt_ns,
        )


# ------------------------------------------------------------------------------------------- registrations
# Demo trading (https://www.okx.com/docs-v5/en/#overview-demo-trading-services): ``wss://wspap.okx.com:8443``;
# demo REST needs the header ``x-simulated-trading: 1``, not needed for public market data.
_OKX_DEMO = ("wss://wspap.okx.com:8443", "https://www.okx.com")
register(
    "okx", Market.SPOT, for_market(OkxAdapter, Market.SPOT), shapes=(SymbolShape.SPOT,), testnet=_OKX_DEMO
)
register(
    "okx",
    Market.PERPETUAL,
    for_market(OkxAdapter, Market.PERPETUAL),
    shapes=(SymbolShape.LINEAR, SymbolShape.INVERSE),
    testnet=_OKX_DEMO,
)
