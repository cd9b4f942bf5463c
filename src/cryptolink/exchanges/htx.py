"""HTX (ex-Huobi) public market data adapters (sans-I/O): spot and linear (USDT-margined) perpetual swaps.

Protocol facts and their official sources are in ``docs/protocols/htx.md`` (spot: https://huobiapi.github.io/docs/spot/v1/en/
sections "Websocket Market Data", "Market By Price (incremental update)", "Trade Detail", "Best Bid/Offer",
"Get all Supported Trading Symbol", "Get the Most Recent Trades"; USDT-margined swaps:
https://huobiapi.github.io/docs/usdt_swap/v1/en/ sections "Subscribe Incremental Market Depth Data", "Subscribe Trade
Detail Data", "Subscribe Market BBO Data", "Query Swap Info", "Query a Batch of Trade Records"):

- Every server frame is a gzip-compressed binary frame (the policy declares :attr:`FrameCompression.GZIP`; the
  engine inflates it, bounded by ``max_inflated_bytes``, before :meth:`HtxAdapterBase.decode`). Clients send plain
  JSON text.
- Keepalive: the server sends ``{"ping": <ms>}`` (spot: every 5 s) and closes the socket after two unanswered pings;
  each one decodes to ``ReplyRequired('{"pong": <ms>}')``, which the engine sends at once. The engine cannot judge
  a socket dead from missing server pings, so the policy also sends RFC 6455 protocol pings (30 s) with a 10 s
  pong timeout; the data watchdogs catch a socket that answers pings but stopped data.
- Spot URLs: ``wss://api.huobi.pro/ws`` (trades, bbo, ticker) and ``wss://api.huobi.pro/feed`` (the MBP
  incremental book and its ``req`` snapshot); routes ``"ws"`` and ``"feed"``. Swaps: ``wss://api.hbdm.com/linear-swap-ws``.
- Subscribe ``{"sub": topic, "id": "N"}`` (one topic per request), unsubscribe ``{"unsub": topic, "id": "N"}``;
  acks ``{"id","status":"ok","subbed"|"unsubbed": topic,"ts"}``; errors ``{"id"?,"status":"error","err-code",
  "err-msg","ts"}``: a :class:`Rejected` carrying the request id (and the subscription when the topic is named in
  ``err-msg``), or an :class:`ExchangeError` when it answers a snapshot ``req`` or carries no id.
- Channels: trades ``market.$symbol.trade.detail`` (JSON numbers, decoded through ``Decimal``, never float; spot
  ``tradeId`` / swap ``id`` -> ``sequence``; ``direction`` is the taker side); ticker ``market.$symbol.bbo`` (spot
  ``seqId`` / swap ``version`` -> ``sequence``; ``market.$symbol.ticker`` frames decode too); book: spot
  ``market.$symbol.mbp.150`` (100 ms diffs chained by ``prevSeqNum`` = previous ``seqNum``, possibly empty; snapshot by
  ``{"req": topic, "id": "N"}`` on the same ``/feed`` socket, answered by ``rep``), swaps
  ``market.$contract_code.depth.size_150.high_freq`` with ``"data_type":"incremental"`` (first push
  ``event:"snapshot"``, then ``event:"update"`` with ``version`` increasing by exactly 1).
- Symbols: spot ``BTC/USDT`` <-> ``btcusdt``; linear swap ``BTC/USDT:USDT`` <-> ``BTC-USDT`` (sizes in contracts of
  ``contract_size`` base units, from ``/linear-swap-api/v1/swap_contract_info``).
- Trade backfill: ``/market/history/trade`` (spot) and ``/linear-swap-ex/market/history/trade`` (swaps) serve the
  newest trades only (``size`` <= 2000, no paging by id): one page; the gap is complete when it reaches back to the
  last trade delivered before the interruption.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from decimal import Decimal
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
    FrameCompression,
    Instrument,
    KeepalivePolicy,
    OutboundRequest,
    Rejected,
    ReplyRequired,
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
from cryptolink.symbols import SymbolShape, parse_unified, split_concatenated

__all__ = ["HtxAdapterBase", "HtxLinearSwapAdapter", "HtxSpotAdapter"]

BOOK_LEVELS = 150
"""Depth of the incremental book topics (spot ``mbp.150``: 100 ms diffs, ``req`` supported for 5/20/150 levels,
not 400; swaps ``depth.size_150.high_freq``)."""
_MAX_PENDING = 100_000
"""Bound on topic -> subscription entries (evictions are counted)."""
_MAX_SNAPSHOT_REQS = 1000
"""Bound on pending ``req`` id -> subscription entries (evictions are counted): an id leaves the map when its
answer or error arrives, or when a newer ``req`` of the same book replaces it (the engine awaits only the newest
one per book), so only more than 1000 books awaiting a snapshot at once can evict."""
_TOPIC_IN_TEXT = re.compile(r"market\.[^\s,;()\[\]\"'=]+")
"""A topic named in an error's ``err-msg`` (every topic we subscribe starts with ``market.``)."""
_BACKFILL_SIZE = 2000
"""``size`` of a trade-history request: the documented maximum (1..2000)."""
_TRADES = Channel.TRADES
_TICKER = Channel.TICKER
_BOOK = Channel.BOOK


# ------------------------------------------------------------------------------------------- wire structs
class _Envelope(msgspec.Struct):
    """Every server frame: a push (``ch`` + ``tick``), a ping, an ack, an error or a ``rep``."""

    ch: str | None = None
    ts: int | None = None
    tick: msgspec.Raw = msgspec.Raw()
    ping: int | None = None
    id: str | int | None = None
    status: str | None = None
    subbed: str | None = None
    unsubbed: str | None = None
    rep: str | None = None
    data: msgspec.Raw = msgspec.Raw()
    err_code: str | int | None = msgspec.field(default=None, name="err-code")
    err_msg: str | None = msgspec.field(default=None, name="err-msg")


Level = tuple[Decimal, Decimal]


class _TradeItem(msgspec.Struct):
    price: Decimal
    amount: Decimal
    direction: str
    ts: int | None = None
    tradeId: int | None = None
    id: msgspec.Raw = msgspec.Raw()  # spot: a 27-digit number, swaps: the trade id


class _TradeTick(msgspec.Struct):
    data: list[_TradeItem]


class _RestTradeItem(msgspec.Struct):
    price: Decimal
    amount: Decimal
    direction: str
    ts: int | None = None
    trade_id: int | None = msgspec.field(default=None, name="trade-id")
    id: msgspec.Raw = msgspec.Raw()


class _RestTradeGroup(msgspec.Struct):
    data: list[_RestTradeItem]


class _RestTrades(msgspec.Struct):
    status: str
    data: list[_RestTradeGroup] = []
    err_code: str | int | None = msgspec.field(default=None, name="err-code")
    err_msg: str | None = msgspec.field(default=None, name="err-msg")


class _BookTick(msgspec.Struct):
    bids: list[Level] | None = None
    asks: list[Level] | None = None
    seqNum: int | None = None
    prevSeqNum: int | None = None
    version: int | None = None
    event: str | None = None
    ts: int | None = None


class _BboTick(msgspec.Struct):
    """Spot ``bbo`` (``bid``/``bidSize``/``ask``/``askSize`` numbers, ``seqId``), spot ``ticker`` (the same plus
    ``lastPrice``) and swap ``bbo`` (``bid``/``ask`` as ``[price, size]``, ``version``)."""

    bid: Decimal | list[Decimal] | None = None
    ask: Decimal | list[Decimal] | None = None
    bidSize: Decimal | None = None
    askSize: Decimal | None = None
    lastPrice: Decimal | None = None
    seqId: int | None = None
    version: int | None = None
    quoteTime: int | None = None
    ts: int | None = None


class _SpotSymbol(msgspec.Struct):
    symbol: str
    state: str = ""
    base_currency: str = msgspec.field(default="", name="base-currency")
    quote_currency: str = msgspec.field(default="", name="quote-currency")


class _SpotSymbols(msgspec.Struct):
    status: str
    data: list[_SpotSymbol] = []
    err_msg: str | None = msgspec.field(default=None, name="err-msg")


class _Contract(msgspec.Struct):
    contract_code: str
    symbol: str = ""
    contract_size: Decimal | None = None
    contract_status: int | None = None
    business_type: str = ""
    contract_type: str = ""
    trade_partition: str = ""


class _Contracts(msgspec.Struct):
    status: str
    data: list[_Contract] = []
    err_msg: str | None = msgspec.field(default=None, name="err-msg")


_env_decoder = msgspec.json.Decoder(_Envelope)
_trade_tick_decoder = msgspec.json.Decoder(_TradeTick)
_book_tick_decoder = msgspec.json.Decoder(_BookTick)
_bbo_tick_decoder = msgspec.json.Decoder(_BboTick)
_rest_trades_decoder = msgspec.json.Decoder(_RestTrades)
_spot_symbols_decoder = msgspec.json.Decoder(_SpotSymbols)
_contracts_decoder = msgspec.json.Decoder(_Contracts)
_json_encoder = msgspec.json.Encoder()


def _levels(levels: list[Level] | None) -> list[list[str]]:
    return [[str(p), str(q)] for p, q in levels] if levels else []


def _request_id(raw: str | int | None) -> int | str | None:
    """Our request ids are decimal integers sent as strings; give them back as ``int``."""
    if isinstance(raw, str):
        value = uint(raw)
        return raw if value is None else value
    return raw


def _raw_int(raw: msgspec.Raw) -> int | None:
    """An integer JSON number held in ``raw`` (the swap trade ``id``), else ``None`` (spot's 1e26-style ids)."""
    return uint(bytes(raw).decode("ascii", "replace"))


_POLICY = ConnectionPolicy(
    keepalive=KeepalivePolicy(
        app_ping_frame=None,
        protocol_ping_interval_s=30.0,
        pong_timeout_s=10.0,
        server_pings=False,
    ),
    max_lifetime_s=None,
    max_streams_per_connection=100,
    max_outbound_per_s=10.0,
    compression=FrameCompression.GZIP,
    max_inflated_bytes=4 * 1024 * 1024,
    max_subscriptions_per_request=1,
    snapshot_request_interval_s=0.15,
)
"""HTX documents no stream cap, lifetime or connection rate (docs/protocols/htx.md "Limits"): 100 topics per
connection, 10 outbound messages per second and one topic per request are our tolerant choices; ``req`` snapshot
requests are spaced 150 ms apart on one connection (the documented pull limit is one per 100 ms per connection,
measured where the server reads them: 50 ms of margin for send and receive jitter);
4 MiB bounds one inflated frame (a 150-level snapshot is about 10 KB)."""
_SWAP_POLICY = dataclasses.replace(_POLICY, max_books_per_connection=1)
"""Swaps: one depth topic per connection. The usdt_swap docs say ``version`` counts per WebSocket connection;
whether it still grows by exactly 1 per push of one topic when a connection carries several depth topics is
unconfirmed, so each book gets a connection of its own (the safe reading; trades and BBO share them)."""


class HtxAdapterBase(ExchangeAdapter):
    """What HTX spot and swaps share: gzip frames, ``{"ping"}`` replies, ``sub``/``unsub`` requests, acks and
    errors, trade and BBO payloads. Subclasses set the market, URLs, symbol rules and book topic."""

    exchange = "htx"
    trade_backfill = True
    rest_limit = RestRateLimit(weight=120, window_s=3.0)
    policy = _POLICY
    market: Market
    _unit: ClassVar[AmountUnit] = AmountUnit.BASE
    _ws_path: ClassVar[str] = ""

    def __init__(
        self, *, ws_base_url: str | None = None, rest_base_url: str | None = None, feed: str | None = None
    ) -> None:
        super().__init__(ws_base_url=ws_base_url, rest_base_url=rest_base_url, feed=feed)
        self._symbols = SymbolCache()
        self._pinned = self._symbols.pinned
        self._topics: BoundedMap[str, Subscription] = BoundedMap(_MAX_PENDING)
        self._snapshot_ids: BoundedMap[str, Subscription] = BoundedMap(_MAX_SNAPSHOT_REQS)
        self._snapshot_id_of: dict[Subscription, str] = {}  # book -> its newest pending ``req`` id

    # symbols -------------------------------------------------------------------------------------------------
    def _guess(self, native: str) -> str:
        raise NotImplementedError

    def unified_symbol(self, native: str) -> str:
        """The unified symbol of exchange id ``native`` (subscribed ids map back exactly, others are guessed)."""
        hit = self._pinned.get(native)
        return hit if hit is not None else self._symbols.unified(native, self._guess)

    def counters(self) -> dict[str, int]:
        """``symbol_cache_evicted``, ``topic_map_evicted`` (topic -> subscription entries) and
        ``snapshot_ids_evicted`` (pending ``req`` ids, more than :data:`_MAX_SNAPSHOT_REQS` books awaiting a
        snapshot at once) dropped from their bounded maps."""
        return {
            "symbol_cache_evicted": self._symbols.evicted,
            "topic_map_evicted": self._topics.evicted,
            "snapshot_ids_evicted": self._snapshot_ids.evicted,
        }

    def amount_unit(self, symbol: str) -> AmountUnit:
        return self._unit

    # requests ------------------------------------------------------------------------------------------------
    def topic(self, sub: Subscription) -> str:
        """The HTX topic of ``sub`` (``market.btcusdt.trade.detail``...)."""
        native = self.exchange_symbol(sub.symbol)
        if sub.channel is _TRADES:
            return f"market.{native}.trade.detail"
        if sub.channel is _TICKER:
            return f"market.{native}.bbo"
        return self._book_topic(native)

    def _book_topic(self, native: str) -> str:
        raise NotImplementedError

    def _sub_extra(self, sub: Subscription) -> dict[str, str]:
        return {}

    def requests(
        self,
        op: Literal["subscribe", "unsubscribe"],
        subscriptions: Sequence[Subscription],
        next_id: int,
        now_ms: int | None = None,
    ) -> list[OutboundRequest]:
        """One ``{"sub"|"unsub": topic, "id": "N"}`` frame per subscription (swap books add
        ``"data_type":"incremental"``)."""
        key = "sub" if op == "subscribe" else "unsub"
        out: list[OutboundRequest] = []
        for chunk in self.request_batches(subscriptions, lambda s: 0):
            rid = next_id + len(out)
            sub = chunk[0]
            topic = self.topic(sub)
            self._topics.put(topic, sub)
            body: dict[str, str] = {key: topic, **self._sub_extra(sub), "id": str(rid)}
            frame = _json_encoder.encode(body).decode()
            out.append(OutboundRequest(frame=frame, request_id=rid, op=op, subscriptions=chunk))
        return out

    # decoding ------------------------------------------------------------------------------------------------
    def decode(self, frame: str | bytes, receipt_ns: int) -> list[Decoded]:
        """Decode one (inflated) frame.

        Returns trades (one per item of ``tick.data``), one ``Ticker`` per ``bbo``/``ticker`` push, one
        ``BookMessage`` per book push or ``rep``, ``[ReplyRequired]`` for ``{"ping"}``, ``[Ack]`` for
        ``subbed``/``unsubbed``, ``[Rejected]`` / ``[ExchangeError]`` for ``status:"error"``, or ``[]`` for a
        well-formed frame of a topic we do not handle (``depth.step0``, ``detail``, kline...).

        Raises:
            DecodeError: not JSON / not an object, or a known topic whose payload lacks or mistypes fields.
        """
        try:
            env = _env_decoder.decode(frame)
            ch = env.ch
            if ch is not None and env.tick:
                parts = ch.split(".", 2)
                if len(parts) < 3 or parts[0] != "market":
                    return []
                native, kind = parts[1], parts[2]
                if kind == "trade.detail":
                    return self._decode_trades(env.tick, native, receipt_ns)
                if kind == "bbo" or kind == "ticker":
                    return self._decode_bbo(env.tick, native, env.ts, receipt_ns)
                if kind.startswith("mbp.") or kind.endswith(".high_freq"):
                    tick = _book_tick_decoder.decode(env.tick)
                    return self._book(tick, native, False, env.ts, receipt_ns)
                return []
            if env.ping is not None:
                return [ReplyRequired(f'{{"pong":{env.ping}}}')]
            status = env.status
            if status == "ok":
                if env.subbed is not None:
                    return [self._ack("subscribe", env.subbed, env.id)]
                if env.unsubbed is not None:
                    return [self._ack("unsubscribe", env.unsubbed, env.id)]
                if env.rep is not None and env.data:
                    return self._decode_rep(env, receipt_ns)
                return []
            if status == "error":
                return [self._error(env)]
            return []
        except MSGSPEC_ERRORS as exc:  # one conversion for the envelope and every payload decoded below
            raise DecodeError(f"htx: malformed frame: {exc}") from exc

    def _ack(self, op: Literal["subscribe", "unsubscribe"], topic: str, rid: str | int | None) -> Ack:
        sub = self._topics.get(topic)
        return Ack(op, _request_id(rid), (sub,) if sub is not None else ())

    def _error(self, env: _Envelope) -> Rejected | ExchangeError:
        code = "" if env.err_code is None else str(env.err_code)
        msg = env.err_msg or ""
        rid = env.id
        if rid is not None:
            snap = self._snapshot_answered(str(rid))
            if snap is not None:
                topic = self.topic(snap)
                return ExchangeError(code, f"snapshot req {topic} failed: {msg}", snap)
            return Rejected(_request_id(rid), code, msg, self._named(msg))
        named = self._named(msg)
        if named:
            return Rejected(None, code, msg, named)
        return ExchangeError(code, msg)

    def _named(self, msg: str) -> tuple[Subscription, ...]:
        """The subscription whose topic ``msg`` names (HTX: ``invalid topic market.btcusdt.mbp.150``), found by
        looking each ``market.``-token of the text up in the topic index (never a scan of every topic)."""
        topics = self._topics
        for token in _TOPIC_IN_TEXT.findall(msg):
            for candidate in (token, token.rstrip(".:")):
                sub = topics.get(candidate)
                if sub is not None:
                    return (sub,)
        return ()

    def _snapshot_answered(self, rid: str) -> Subscription | None:
        """Forget pending ``req`` id ``rid`` (its answer or error arrived); its book, or ``None`` if unknown."""
        sub = self._snapshot_ids.pop(rid)
        if sub is not None and self._snapshot_id_of.get(sub) == rid:
            del self._snapshot_id_of[sub]
        return sub

    def _decode_rep(self, env: _Envelope, receipt_ns: int) -> list[Decoded]:
        rep = env.rep or ""
        if env.id is not None:
            self._snapshot_answered(str(env.id))
        parts = rep.split(".", 2)
        if len(parts) < 3 or not parts[2].startswith("mbp."):
            return []
        tick = _book_tick_decoder.decode(env.data)
        return self._book(tick, parts[1], True, env.ts, receipt_ns)

    def _book(
        self, tick: _BookTick, native: str, is_snapshot: bool, ts: int | None, receipt_ns: int
    ) -> list[Decoded]:
        raise NotImplementedError

    def _decode_trades(self, raw: msgspec.Raw, native: str, receipt_ns: int) -> list[Decoded]:
        """The trades of one ``trade.detail`` push, oldest first: spot lists a push's trades newest first (the
        shipped 2021 recording: ``tradeId`` 5957217, 5957216, ...), swaps oldest first; delivered in frame order,
        every spot push of several trades would read as an id regression."""
        tick = _trade_tick_decoder.decode(raw)
        symbol = self.unified_symbol(native)
        size = self.contract_sizes.get(symbol)
        out: list[Decoded] = []
        first = last = 0
        for t in tick.data:
            seq = t.tradeId if t.tradeId is not None else _raw_int(t.id)
            trade = self._trade(t, symbol, native, seq, size, receipt_ns, backfilled=False)
            out.append(trade)
            last = trade.sequence or 0
            if len(out) == 1:
                first = last
        if first > last:
            out.reverse()
        return out

    def _trade(
        self,
        t: _TradeItem | _RestTradeItem,
        symbol: str,
        native: str,
        seq: int | None,
        size: Decimal | None,
        receipt_ns: int,
        *,
        backfilled: bool,
    ) -> Trade:
        direction = t.direction
        if direction != "buy" and direction != "sell":
            raise DecodeError(f"htx: bad trade direction {direction!r}")
        if seq is None:
            raise DecodeError(f"htx: trade without an integer id: {t!r}")
        return Trade(
            exchange=self.exchange,
            symbol=symbol,
            exchange_symbol=native,
            price=t.price,
            amount=t.amount,
            side=Side.BUY if direction == "buy" else Side.SELL,
            trade_id=str(seq),
            timestamp_ms=t.ts,
            receipt_ns=receipt_ns,
            sequence=seq,
            channel=_TRADES,
            feed=self.feed,
            amount_unit=self._unit,
            contract_size=size,
            backfilled=backfilled,
        )

    def _decode_bbo(self, raw: msgspec.Raw, native: str, ts: int | None, receipt_ns: int) -> list[Decoded]:
        t = _bbo_tick_decoder.decode(raw)
        bid, bid_size = _side(t.bid, t.bidSize)
        ask, ask_size = _side(t.ask, t.askSize)
        symbol = self.unified_symbol(native)
        return [
            Ticker(
                exchange=self.exchange,
                symbol=symbol,
                exchange_symbol=native,
                bid_price=bid,
                bid_size=bid_size,
                ask_price=ask,
                ask_size=ask_size,
                last_price=t.lastPrice,
                timestamp_ms=t.quoteTime or t.ts or ts,
                receipt_ns=receipt_ns,
                sequence=t.seqId if t.seqId is not None else t.version,
                channel=_TICKER,
                feed=self.feed,
                amount_unit=self._unit,
                contract_size=self.contract_sizes.get(symbol),
            )
        ]

    # trade backfill ----------------------------------------------------------------------------------------
    def _history_request(self, native: str) -> RestRequest:
        raise NotImplementedError

    def backfill_request(self, subscription: Subscription, cursor: BackfillCursor) -> RestRequest | None:
        """The newest :data:`_BACKFILL_SIZE` trades, once (HTX pages its public trade history by nothing): the
        gap is complete when that page reaches back to ``cursor.after_id``."""
        if cursor.pages >= 1:
            return None
        return self._history_request(self.exchange_symbol(subscription.symbol))

    def parse_trades(self, body: bytes, subscription: Subscription, receipt_ns: int) -> list[Trade]:
        """Parse a ``history/trade`` answer (``data`` = groups of trades, newest first) into backfilled trades.

        Raises:
            DecodeError: malformed body, ``status`` not ``"ok"``, a trade without an integer id or direction.
        """
        m = decode_json(_rest_trades_decoder, body, "htx", "malformed history/trade answer")
        if m.status != "ok":
            raise DecodeError(f"htx: history/trade answer {m.err_code!r}: {m.err_msg!r}")
        native = self.exchange_symbol(subscription.symbol)
        size = self.contract_sizes.get(subscription.symbol)
        out: list[Trade] = []
        for group in m.data:
            for t in group.data:
                seq = t.trade_id if t.trade_id is not None else _raw_int(t.id)
                out.append(
                    self._trade(t, subscription.symbol, native, seq, size, receipt_ns, backfilled=True)
                )
        return out


def _side(
    value: Decimal | list[Decimal] | None, size: Decimal | None
) -> tuple[Decimal | None, Decimal | None]:
    """Spot sends ``bid`` and ``bidSize``; swaps send ``bid: [price, size]``."""
    if isinstance(value, list):
        if len(value) < 2:
            raise DecodeError(f"htx: bad bbo side {value!r}")
        return value[0], value[1]
    return value, size


# --------------------------------------------------------------------------------------------------- spot
class HtxSpotAdapter(HtxAdapterBase):
    """HTX spot (``BTC/USDT`` <-> ``btcusdt``).

    Args:
        ws_base_url: WebSocket scheme and host (default ``wss://api.huobi.pro``; ``wss://api-aws.huobi.pro`` also
            serves); connections use ``<ws_base_url>/ws`` (trades, bbo) and ``<ws_base_url>/feed`` (books).
        rest_base_url: REST base (default ``https://api.huobi.pro``).

    Book sync: ``market.$symbol.mbp.150`` 100 ms diffs (``first_seq = prevSeqNum + 1``, ``last_seq = seqNum``,
    ``prev_seq = prevSeqNum``; empty diffs still move the chain) stitched to a ``req`` snapshot on the same
    ``/feed`` socket (``first_seq = last_seq = seqNum``): :attr:`SnapshotSource.WS_REQUEST`, LINKED, bridge 1.
    """

    market = Market.SPOT
    ws_base_url = "wss://api.huobi.pro"
    rest_base_url = "https://api.huobi.pro"
    book_sync = BookSyncSpec(source=SnapshotSource.WS_REQUEST, sequence=SequenceModel.LINKED, bridge_offset=1)

    def __init__(
        self, *, ws_base_url: str | None = None, rest_base_url: str | None = None, feed: str | None = None
    ) -> None:
        super().__init__(ws_base_url=ws_base_url, rest_base_url=rest_base_url, feed=feed)
        for suffix in ("/ws", "/feed"):
            if self.ws_base_url.endswith(suffix):  # a full URL given as override
                self.ws_base_url = self.ws_base_url[: -len(suffix)]

    def exchange_symbol(self, symbol: str) -> str:
        """``BTC/USDT`` -> ``btcusdt``.

        Raises:
            ValueError: not a unified spot symbol.
        """
        cached = self._symbols.exchange_symbol(symbol)
        if cached is not None:
            return cached
        base, quote, settle, _ = parse_unified(symbol)
        if settle is not None:
            raise ValueError(f"htx spot: {symbol!r} is not a spot symbol (expected BASE/QUOTE)")
        native = f"{base}{quote}".lower()
        self._symbols.pin(symbol, native)
        return native

    def _guess(self, native: str) -> str:
        base, quote = split_concatenated(native)
        return f"{base}/{quote}" if quote else native.upper()

    def route(self, subscription: Subscription) -> str:
        """``"feed"`` for books (MBP incremental lives on ``/feed`` only), ``"ws"`` for the rest."""
        return "feed" if subscription.channel is _BOOK else "ws"

    def connection_url(self, route: str) -> str:
        return f"{self.ws_base_url}/{route or 'ws'}"

    def _book_topic(self, native: str) -> str:
        return f"market.{native}.mbp.{BOOK_LEVELS}"

    def snapshot_frame(self, subscription: Subscription, request_id: int) -> str | None:
        """``{"req":"market.btcusdt.mbp.150","id":"N"}``: the full 150-level book on the ``/feed`` socket.

        The id is remembered (so an error answer maps to an :class:`ExchangeError` naming the book) until its
        answer or error arrives; a newer ``req`` of the same book replaces it (the engine waits for the newest
        only: an older one timed out or was never sent). A late error of a replaced id decodes as a
        :class:`Rejected` naming nothing, which the engine counts as a stale answer."""
        if subscription.channel is not _BOOK:
            return None
        topic = self.topic(subscription)
        rid = str(request_id)
        old = self._snapshot_id_of.get(subscription)
        if old is not None:
            self._snapshot_ids.pop(old)
        self._snapshot_id_of[subscription] = rid
        self._snapshot_ids.put(rid, subscription)
        return _json_encoder.encode({"req": topic, "id": rid}).decode()

    def _book(
        self, tick: _BookTick, native: str, is_snapshot: bool, ts: int | None, receipt_ns: int
    ) -> list[Decoded]:
        seq = tick.seqNum
        if seq is None:
            raise DecodeError("htx: mbp message without seqNum")
        if is_snapshot:
            first, prev = seq, None
        else:
            if tick.prevSeqNum is None:
                raise DecodeError("htx: mbp update without prevSeqNum")
            prev = tick.prevSeqNum
            first = prev + 1
        return [
            BookMessage(
                symbol=self.unified_symbol(native),
                exchange_symbol=native,
                is_snapshot=is_snapshot,
                bids=_levels(tick.bids),
                asks=_levels(tick.asks),
                first_seq=first,
                last_seq=seq,
                prev_seq=prev,
                checksum=None,
                timestamp_ms=ts,
                receipt_ns=receipt_ns,
            )
        ]

    # instruments ---------------------------------------------------------------------------------------------
    def instruments_request(self) -> RestRequest:
        """``GET /v1/common/symbols`` (what ccxt's ``load_markets`` reads too)."""
        return RestRequest(path="/v1/common/symbols", params={})

    def parse_instruments(self, body: bytes) -> list[Instrument]:
        """Spot symbols: ``BASE/QUOTE`` from ``base-currency``/``quote-currency``, ``state == "online"`` active.

        Raises:
            DecodeError: malformed body or ``status`` not ``"ok"``.
        """
        m = decode_json(_spot_symbols_decoder, body, "htx", "malformed symbols answer")
        if m.status != "ok":
            raise DecodeError(f"htx: symbols answer status={m.status!r} {m.err_msg!r}")
        out: list[Instrument] = []
        for s in m.data:
            if s.base_currency and s.quote_currency:
                unified = f"{s.base_currency.upper()}/{s.quote_currency.upper()}"
            else:
                unified = self._guess(s.symbol)
            out.append(Instrument(unified, s.symbol, s.state == "online", s.state))
        return out

    def _history_request(self, native: str) -> RestRequest:
        return RestRequest(
            path="/market/history/trade", params={"symbol": native, "size": str(_BACKFILL_SIZE)}
        )


# ------------------------------------------------------------------------------------------- linear swaps
class HtxLinearSwapAdapter(HtxAdapterBase):
    """HTX USDT-margined perpetual swaps (``BTC/USDT:USDT`` <-> ``BTC-USDT``), sizes in contracts.

    Args:
        ws_base_url: WebSocket scheme and host (default ``wss://api.hbdm.com``); connections use
            ``<ws_base_url>/linear-swap-ws``.
        rest_base_url: REST base (default ``https://api.hbdm.com``).

    Book sync: ``market.$contract_code.depth.size_150.high_freq`` with ``data_type: incremental``: a WebSocket
    snapshot (``event: snapshot``) then updates whose ``version`` grows by 1 (``prev_seq = version - 1``); a gap
    re-subscribes (which brings a new snapshot). ``version`` counts per WebSocket connection (usdt_swap docs), so
    the policy puts at most one book on a connection (``max_books_per_connection=1``).
    """

    market = Market.PERPETUAL
    ws_base_url = "wss://api.hbdm.com"
    rest_base_url = "https://api.hbdm.com"
    _unit = AmountUnit.CONTRACTS
    _ws_path = "/linear-swap-ws"
    policy = _SWAP_POLICY
    book_sync = BookSyncSpec(source=SnapshotSource.WEBSOCKET, sequence=SequenceModel.LINKED, bridge_offset=0)

    def __init__(
        self, *, ws_base_url: str | None = None, rest_base_url: str | None = None, feed: str | None = None
    ) -> None:
        super().__init__(ws_base_url=ws_base_url, rest_base_url=rest_base_url, feed=feed)
        if self.ws_base_url.endswith(self._ws_path):
            self.ws_base_url = self.ws_base_url[: -len(self._ws_path)]

    def exchange_symbol(self, symbol: str) -> str:
        """``BTC/USDT:USDT`` -> ``BTC-USDT``.

        Raises:
            ValueError: not a linear perpetual symbol (inverse swaps and dated futures are not served here).
        """
        cached = self._symbols.exchange_symbol(symbol)
        if cached is not None:
            return cached
        base, quote, settle, expiry = parse_unified(symbol)
        if settle is None or expiry is not None or settle != quote:
            raise ValueError(f"htx perpetual: {symbol!r} is not a linear perpetual (BASE/QUOTE:QUOTE)")
        native = f"{base}-{quote}"
        self._symbols.pin(symbol, native)
        return native

    def _guess(self, native: str) -> str:
        parts = native.upper().split("-")
        return f"{parts[0]}/{parts[1]}:{parts[1]}" if len(parts) == 2 else native

    def connection_url(self, route: str) -> str:
        return self.ws_base_url + self._ws_path

    def _book_topic(self, native: str) -> str:
        return f"market.{native}.depth.size_{BOOK_LEVELS}.high_freq"

    def _sub_extra(self, sub: Subscription) -> dict[str, str]:
        return {"data_type": "incremental"} if sub.channel is _BOOK else {}

    def _book(
        self, tick: _BookTick, native: str, is_snapshot: bool, ts: int | None, receipt_ns: int
    ) -> list[Decoded]:
        version = tick.version
        if version is None:
            raise DecodeError("htx: depth message without version")
        snap = tick.event == "snapshot"
        return [
            BookMessage(
                symbol=self.unified_symbol(native),
                exchange_symbol=native,
                is_snapshot=snap,
                bids=_levels(tick.bids),
                asks=_levels(tick.asks),
                first_seq=version,
                last_seq=version,
                prev_seq=-1 if snap else version - 1,
                checksum=None,
                timestamp_ms=tick.ts or ts,
                receipt_ns=receipt_ns,
            )
        ]

    def instruments_request(self) -> RestRequest:
        """``GET /linear-swap-api/v1/swap_contract_info?business_type=swap``."""
        return RestRequest(path="/linear-swap-api/v1/swap_contract_info", params={"business_type": "swap"})

    def parse_instruments(self, body: bytes) -> list[Instrument]:
        """Perpetual swaps only (``contract_type``/``business_type`` ``swap``, or a ``BASE-QUOTE`` code):
        ``contract_status == 1`` active, ``contract_size`` in the base currency.

        Raises:
            DecodeError: malformed body or ``status`` not ``"ok"``.
        """
        m = decode_json(_contracts_decoder, body, "htx", "malformed swap_contract_info answer")
        if m.status != "ok":
            raise DecodeError(f"htx: swap_contract_info status={m.status!r} {m.err_msg!r}")
        out: list[Instrument] = []
        for c in m.data:
            parts = c.contract_code.split("-")
            kind = c.contract_type or c.business_type
            if len(parts) != 2 or (kind and kind != "swap") or parts[1] == "USD":  # USD-quoted: inverse
                continue
            base, quote = parts
            out.append(
                Instrument(
                    f"{base}/{quote}:{quote}",
                    c.contract_code,
                    c.contract_status == 1,
                    str(c.contract_status),
                    AmountUnit.CONTRACTS,
                    c.contract_size,
                    base if c.contract_size is not None else None,
                )
            )
        return out

    def _history_request(self, native: str) -> RestRequest:
        return RestRequest(
            path="/linear-swap-ex/market/history/trade",
            params={"contract_code": native, "size": str(_BACKFILL_SIZE)},
        )


# ------------------------------------------------------------------------------------------- registrations
register("htx", Market.SPOT, HtxSpotAdapter, shapes=(SymbolShape.SPOT,), aliases=("huobi",))
register("htx", Market.PERPETUAL, HtxLinearSwapAdapter, shapes=(SymbolShape.LINEAR,), aliases=("huobi",))
