"""Bitget API v2 ("classic") public protocol adapter (sans-I/O): spot and USDT-margined perpetuals.

Protocol facts and their official sources (https://www.bitget.com/api-doc/ pages ``common/websocket-intro``,
``spot/websocket/public/Depth-Channel``, ``spot/websocket/public/Trades-Channel``,
``spot/websocket/public/Tickers-Channel``, ``spot/market/Get-Market-Trades``,
``contract/market/Get-Fills-History``, ``contract/market/Get-All-Symbols-Contracts``) are in
``docs/protocols/bitget.md``:

- One URL for spot and futures: ``wss://ws.bitget.com/v2/ws/public`` (demo ``wss://wspap.bitget.com``).
  Subscribe ``{"op":"subscribe","args":[{"instType":"SPOT","channel":"books","instId":"BTCUSDT"}]}`` (no request
  id in the protocol); ``instType`` ``SPOT`` or ``USDT-FUTURES``.
- Acks ``{"event":"subscribe","arg":{...}}`` (one per arg); errors ``{"event":"error","code":30001,"msg":...}``
  (the frame names the subscription in ``arg`` when it carries one, else in ``msg`` as
  ``instType:..,channel:..,instId:..``); text ``pong`` answers text ``ping``.
- Keepalive: the client sends text ``ping`` every 30 s; the server closes after 2 minutes without one. We call
  the socket dead when a ``ping`` gets no ``pong`` within 10 s (``pong_timeout_s``, our choice: the older page
  says to reconnect after 30 s without one, the newer names no bound; the server answers at once, so 10 s
  finds a dead socket 20 s sooner and still allows a slow network). Every connection is closed by the server
  after 24 h (we rotate before). At most 10 messages per second per connection (``ping`` included), 240
  subscribe requests per hour per connection, 300 connection requests per 5 minutes per IP; 1000 channels per
  connection at most, fewer than 50 recommended (we use 50).
- Channels: ``trade`` (``tradeId``, taker ``side``; several trades per push, newest first: delivered in id
  order; a subscription first brings an ``action`` ``snapshot`` of recent trades: only those above the highest
  trade id already decoded for the symbol are kept, the others are counted and dropped), ``ticker`` (``lastPr``, ``bidPr``/``bidSz``,
  ``askPr``/``askSz``), ``books`` (snapshot then ``update``, ``seq``, signed CRC32 ``checksum`` over the top 25
  levels interleaved, strings as received).
- ``seq``: the docs say it "is incrementing except during symbol maintenance", not by how much. We do not assume
  ``+1``: each update is linked to the previous ``books`` message of the same symbol on the same socket
  (:meth:`BitgetAdapter.session_decoder` keeps that per socket), which drops copies (rotation overlap) and
  follows a maintenance restart; a lost update is caught by the checksum (resubscribe that symbol).
- Symbols: spot ``BTC/USDT`` <-> ``BTCUSDT``; linear perpetual ``BTC/USDT:USDT`` <-> ``BTCUSDT`` on
  ``USDT-FUTURES``. Sizes are in base currency on both (the futures docs give ``size`` in base coin); the
  instrument list's ``sizeMultiplier`` is the order size step, not a contract size.
- Trade backfill: ``GET /api/v2/{spot|mix}/market/fills-history?symbol=..&idLessThan=..&limit=1000`` (keyless,
  newest first, 10 requests per second per IP).
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
    ExchangeError,
    FrameDecoder,
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
)
from cryptolink.exchanges.registry import for_market, register
from cryptolink.models import AmountUnit, Channel, Market, Side, Subscription, Ticker, Trade
from cryptolink.symbols import SymbolShape, parse_unified, split_concatenated

__all__ = ["BitgetAdapter"]

_MAX_STREAMS = 50
"""Bitget allows 1000 channels per connection but strongly recommends fewer than 50 (docs/protocols/bitget.md
"Limits", https://www.bitget.com/zh-CN/api-doc/common/websocket-intro)."""
_MAX_KEYS = 100_000
"""Bound on the ack map and on the per-socket ``seq`` chain map (evictions are counted)."""
_BACKFILL_PAGE = 1000
"""``fills-history`` ``limit`` maximum (docs/protocols/bitget.md "REST")."""
_MAX_ID_DIGITS = 40
"""Longest trade id read as an integer (Bitget's are 19 digits); longer ids carry no sequence."""
_NO_LINK = -2
"""``prev_seq`` of an update whose socket delivered no earlier ``books`` message of that symbol, or whose
previous one was malformed: links to nothing, so a live book treats it as a gap (or a copy), never applies it
unchecked."""
_TRADES = Channel.TRADES
_TICKER = Channel.TICKER
_BOOK = Channel.BOOK

_CHANNEL_NAMES: dict[Channel, str] = {
    Channel.TRADES: "trade",
    Channel.TICKER: "ticker",
    Channel.BOOK: "books",
}
_CHANNELS_BY_NAME: dict[str, Channel] = {v: k for k, v in _CHANNEL_NAMES.items()}
_INST_TYPES: dict[Market, str] = {Market.SPOT: "SPOT", Market.PERPETUAL: "USDT-FUTURES"}


# ------------------------------------------------------------------------------------------- wire structs
class _Arg(msgspec.Struct):
    channel: str = ""
    instId: str = ""
    instType: str = ""


class _Envelope(msgspec.Struct):
    arg: _Arg | None = None
    action: str | None = None
    data: msgspec.Raw = msgspec.Raw()
    event: str | None = None
    code: int | str | None = None
    msg: str | None = None


class _TradeMsg(msgspec.Struct):
    tradeId: str
    price: Decimal
    size: Decimal
    side: str
    ts: str


class _RestTrade(msgspec.Struct):
    tradeId: str
    price: Decimal
    size: Decimal
    side: str
    ts: str
    symbol: str = ""


class _TickerMsg(msgspec.Struct):
    instId: str
    lastPr: str
    ts: str | int = ""
    bidPr: str = ""
    bidSz: str = ""
    askPr: str = ""
    askSz: str = ""


class _BookMsg(msgspec.Struct):
    asks: list[list[str]]
    bids: list[list[str]]
    ts: str | int = ""
    checksum: int | None = None
    seq: int | str | None = None


class _RestTrades(msgspec.Struct):
    code: str
    data: list[_RestTrade] | None = None
    msg: str = ""


class _Inst(msgspec.Struct):
    symbol: str
    baseCoin: str
    quoteCoin: str
    status: str = ""  # spot
    symbolStatus: str = ""  # futures
    symbolType: str = ""  # futures: perpetual / delivery


class _RestInsts(msgspec.Struct):
    code: str
    data: list[_Inst] | None = None
    msg: str = ""


_env_decoder = msgspec.json.Decoder(_Envelope)
_trades_decoder = msgspec.json.Decoder(list[_TradeMsg])
_tickers_decoder = msgspec.json.Decoder(list[_TickerMsg])
_books_decoder = msgspec.json.Decoder(list[_BookMsg])
_rest_trades_decoder = msgspec.json.Decoder(_RestTrades)
_rest_insts_decoder = msgspec.json.Decoder(_RestInsts)
_json_encoder = msgspec.json.Encoder()


def _dec(text: str) -> Decimal | None:
    if not text:
        return None
    try:
        return Decimal(text)
    except InvalidOperation as exc:
        raise DecodeError(f"bitget: not a decimal number: {text!r}") from exc


def _int(text: str | int) -> int | None:
    if isinstance(text, int):
        return text
    if not text:
        return None
    try:
        return int(text)
    except ValueError as exc:
        raise DecodeError(f"bitget: not an integer: {text!r}") from exc


def _trade_seq(text: str) -> int | None:
    """The integer value of a trade id written in ASCII digits (Bitget's are 19-digit integers), else ``None``.

    ``str.isdigit`` alone also accepts characters such as ``"²"`` that ``int`` refuses, and ``int`` refuses
    texts longer than 4300 digits: both would escape as a plain ``ValueError``."""
    if len(text) <= _MAX_ID_DIGITS and text.isascii() and text.isdigit():
        return int(text)
    return None


_SIDES: dict[str, Side] = {
    "buy": Side.BUY,
    "Buy": Side.BUY,
    "BUY": Side.BUY,
    "sell": Side.SELL,
    "Sell": Side.SELL,
    "SELL": Side.SELL,
}
"""Taker side spellings: the WebSocket and ``fills`` write ``buy``/``sell``, some ``fills-history`` examples
``Buy``/``Sell``; upper case is accepted too (one dict lookup per trade, no lower-cased copy)."""


def _side(text: str) -> Side:
    """Taker side of ``buy``/``sell``, ``Buy``/``Sell`` or ``BUY``/``SELL``.

    Raises:
        DecodeError: any other text (mixed case such as ``bUy`` included)."""
    side = _SIDES.get(text)
    if side is None:
        raise DecodeError(f"bitget: bad trade side {text!r}")
    return side


def _parse_error_subject(msg: str) -> tuple[str, str, str] | None:
    """``(instType, channel, instId)`` named by an error message such as ``"instType:SPOT,channel:ticker,
    instId:BTCUSDTX doesn't exist"``, or ``None``."""
    found: dict[str, str] = {}
    for part in msg.split(","):
        key, sep, value = part.strip().partition(":")
        if sep:
            found[key] = value.split(" ", 1)[0]
    if "channel" in found and "instId" in found:
        return found.get("instType", ""), found["channel"], found["instId"]
    return None


class _Session:
    """One socket's decoder: the ``seq`` of the last ``books`` message per (instType, instId) on that socket."""

    __slots__ = ("adapter", "chain")

    def __init__(self, adapter: BitgetAdapter) -> None:
        self.adapter = adapter
        self.chain: BoundedMap[tuple[str, str], int] = BoundedMap(_MAX_KEYS)

    def decode(self, frame: str | bytes, receipt_ns: int) -> list[Decoded]:
        return self.adapter._decode(frame, receipt_ns, self)


class BitgetAdapter(ExchangeAdapter):
    """Bitget v2 public market data for one market (``Market.SPOT`` or ``Market.PERPETUAL``: USDT-FUTURES).

    Args:
        market: spot (``BTC/USDT``) or linear USDT perpetuals (``BTC/USDT:USDT``).
        ws_base_url: WebSocket scheme and host (default ``wss://ws.bitget.com``); connections use
            ``<ws_base_url>/v2/ws/public``.
        rest_base_url: REST base (default ``https://api.bitget.com``).

    Book sync: WebSocket snapshot, LINKED chain of the ``seq`` values received on one socket (see the module
    doc), signed CRC32 checksum of the top 25 levels verified on every message that carries one.
    """

    exchange = "bitget"
    trade_backfill = True
    ws_base_url = "wss://ws.bitget.com"
    ws_public_path = "/v2/ws/public"
    rest_base_url = "https://api.bitget.com"
    # per endpoint and IP: fills-history 10/s, contracts and orderbook 20/s; one budget of the smallest
    rest_limit = RestRateLimit(weight=10, window_s=1.0)
    policy = ConnectionPolicy(
        keepalive=KeepalivePolicy(
            app_ping_frame="ping",
            app_ping_idle_s=30.0,
            app_ping_interval_s=30.0,
            protocol_ping_interval_s=None,
            # our choice: 10 s, not the older docs' 30 s (module doc, docs/protocols/bitget.md "Keepalive")
            pong_timeout_s=10.0,
            server_pings=False,
        ),
        max_lifetime_s=24 * 3600.0,
        max_streams_per_connection=_MAX_STREAMS,
        max_outbound_per_s=10.0,
        max_subscribe_requests_per_hour=240,
        connect_limit=ConnectRateLimit(max_connects=300, window_s=300.0),
        max_subscriptions_per_request=_MAX_STREAMS,
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
        if self.market not in _INST_TYPES:
            raise ValueError(f"bitget: unsupported market {self.market.value!r}")
        self.inst_type = _INST_TYPES[self.market]
        self._symbols = SymbolCache()  # unified <-> instId
        self._pinned = self._symbols.pinned
        # (INSTTYPE, channel, instId) -> the Subscription we were asked for (acks and errors map back to it)
        self._subs: BoundedMap[tuple[str, str, str], Subscription] = BoundedMap(_MAX_KEYS)
        self._unit = AmountUnit.BASE
        self._default_session = _Session(self)
        # instId -> highest integer trade id decoded (any socket): filters the subscription snapshots
        self._top_trade: BoundedMap[str, int] = BoundedMap(_MAX_KEYS)
        self._snapshot_dropped = 0

    # symbols ---------------------------------------------------------------------------------------------
    def exchange_symbol(self, symbol: str) -> str:
        """``BTC/USDT`` -> ``BTCUSDT`` (spot); ``BTC/USDT:USDT`` -> ``BTCUSDT`` (USDT-FUTURES).

        Raises:
            ValueError: not a unified symbol or not of this adapter's market (inverse and dated futures are not
            supported).
        """
        cached = self._symbols.exchange_symbol(symbol)
        if cached is not None:
            return cached
        base, quote, settle, expiry = parse_unified(symbol)
        if self.market is Market.SPOT:
            if settle is not None:
                raise ValueError(f"bitget spot: {symbol!r} is not a spot symbol (expected BASE/QUOTE)")
        elif settle != "USDT" or quote != "USDT" or expiry is not None:
            raise ValueError(f"bitget perpetual: {symbol!r} is not a USDT perpetual (BASE/USDT:USDT)")
        inst = f"{base}{quote}"
        self._symbols.pin(symbol, inst)
        return inst

    def _guess(self, inst_id: str) -> str:
        base, quote = split_concatenated(inst_id)
        if not quote:
            return inst_id
        return f"{base}/{quote}" if self.market is Market.SPOT else f"{base}/{quote}:{quote}"

    def unified_symbol(self, inst_id: str) -> str:
        """Unified symbol of a Bitget ``instId`` of this market (subscribed ids map back exactly; others are split
        at a known quote currency: ``ETHUSDT`` -> ``ETH/USDT`` or ``ETH/USDT:USDT``)."""
        hit = self._pinned.get(inst_id)
        return hit if hit is not None else self._symbols.unified(inst_id, self._guess)

    def counters(self) -> dict[str, int]:
        """``symbol_cache_evicted`` (guessed unified symbols dropped), ``ack_keys_evicted`` (entries dropped from
        the bounded ack map), ``seq_chain_evicted`` (symbols dropped from the default decoder's bounded
        ``seq`` chain map), ``trade_snapshot_dropped`` (trades of subscription snapshots at or below the highest
        id already decoded) and ``trade_ids_evicted`` (symbols dropped from that highest-id map)."""
        return {
            "symbol_cache_evicted": self._symbols.evicted,
            "ack_keys_evicted": self._subs.evicted,
            "seq_chain_evicted": self._default_session.chain.evicted,
            "trade_snapshot_dropped": self._snapshot_dropped,
            "trade_ids_evicted": self._top_trade.evicted,
        }

    # connections -----------------------------------------------------------------------------------------
    def connection_url(self, route: str) -> str:
        """``<ws_base_url>/v2/ws/public`` (every public channel of every product type)."""
        return self.ws_base_url + self.ws_public_path

    def _arg(self, sub: Subscription) -> dict[str, str]:
        arg = {
            "instType": self.inst_type,
            "channel": _CHANNEL_NAMES[sub.channel],
            "instId": self.exchange_symbol(sub.symbol),
        }
        self._subs.put((self.inst_type, arg["channel"], arg["instId"]), sub)
        return arg

    def requests(
        self,
        op: Literal["subscribe", "unsubscribe"],
        subscriptions: Sequence[Subscription],
        next_id: int,
        now_ms: int | None = None,
    ) -> list[OutboundRequest]:
        """``{"op":"subscribe"|"unsubscribe","args":[{instType, channel, instId}, ...]}`` frames, at most
        ``policy.max_streams_per_connection`` args each (docs/protocols/bitget.md "Subscribe"). The protocol has no
        request id: ``request_id`` is the engine's own, answers are matched by their ``arg``."""
        out: list[OutboundRequest] = []
        for chunk in self.request_batches(subscriptions, _no_bytes):
            rid = next_id + len(out)
            frame = _json_encoder.encode({"op": op, "args": [self._arg(s) for s in chunk]}).decode()
            out.append(OutboundRequest(frame=frame, request_id=rid, op=op, subscriptions=chunk))
        return out

    # decoding --------------------------------------------------------------------------------------------
    def session_decoder(self) -> FrameDecoder:
        """A decoder holding the ``seq`` chain of one socket (see the module doc)."""
        return _Session(self).decode

    def decode(self, frame: str | bytes, receipt_ns: int) -> list[Decoded]:
        """Decode one frame with the adapter's default session (one ``seq`` chain shared by every caller: use
        :meth:`session_decoder` per socket).

        Returns market data (``Trade`` per trade in id order, ``Ticker`` per item, one ``BookMessage`` per book
        item), ``[Pong]`` for text ``pong``, ``[Ack]`` per acked arg, ``[Rejected]`` for ``event:"error"``
        (naming the subscription from ``arg`` or from ``msg`` when it can; otherwise an ``ExchangeError``), or
        ``[]`` for a well-formed frame we do not handle (other channels, other events).

        Raises:
            DecodeError: not JSON / not an object, or a known channel whose payload lacks/mistypes fields (the
                API v1 shapes of ``trade`` and ``ticker`` included).
        """
        return self._decode(frame, receipt_ns, self._default_session)

    def _decode(self, frame: str | bytes, receipt_ns: int, session: _Session) -> list[Decoded]:
        if frame == "pong" or frame == b"pong":
            return [Pong()]
        try:
            env = _env_decoder.decode(frame)
            arg = env.arg
            data = env.data
            if data:
                if arg is None:
                    raise DecodeError("bitget: data frame without arg")
                ch = arg.channel
                if ch == "books":
                    return self._decode_books(data, arg, env.action, receipt_ns, session)
                if ch == "trade":
                    return self._decode_trades(data, arg.instId, env.action == "snapshot", receipt_ns)
                if ch == "ticker":
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
                    return [Ack(op, None)]
                sub = self._subscription(arg.instType, arg.channel, arg.instId)
                return [] if sub is None else [Ack(op, None, (sub,))]
            if event == "error":
                code = "" if env.code is None else str(env.code)
                msg = env.msg or ""
                if arg is not None and arg.channel:
                    subject: tuple[str, str, str] | None = (arg.instType, arg.channel, arg.instId)
                else:
                    subject = _parse_error_subject(msg)
                sub = None if subject is None else self._subscription(*subject)
                if sub is None:
                    return [ExchangeError(code, msg)]
                return [Rejected(None, code, msg, (sub,))]
            return []
        except MSGSPEC_ERRORS as exc:  # one conversion for the envelope and every payload decoded below
            raise DecodeError(f"bitget: malformed frame: {exc}") from exc

    def _subscription(self, inst_type: str, channel: str, inst_id: str) -> Subscription | None:
        hit = self._subs.get((inst_type.upper(), channel, inst_id))
        if hit is not None:
            return hit
        ch = _CHANNELS_BY_NAME.get(channel)
        if ch is None:
            return None
        return Subscription(ch, self.unified_symbol(inst_id))

    def _decode_trades(
        self, data: msgspec.Raw, inst_id: str, snapshot: bool, receipt_ns: int
    ) -> list[Decoded]:
        """Trades of one push in id order. A ``snapshot`` push (recent trades, sent after each subscription)
        keeps only the trades above the highest id this adapter decoded for ``inst_id`` on any socket: the
        others were delivered already, or were lost earlier (a malformed frame) and would now arrive out of
        order; they are counted in ``trade_snapshot_dropped``. Live ``update`` pushes are never filtered (a lower
        id there is the feed's to judge: an exchange restart)."""
        items = _trades_decoder.decode(data)  # inside _decode(): msgspec errors become DecodeError there
        symbol = self.unified_symbol(inst_id)
        seen = self._top_trade.get(inst_id)
        top = seen
        out: list[Decoded] = []
        for t in items:
            seq = _trade_seq(t.tradeId)
            if seq is not None:
                if snapshot and seen is not None and seq <= seen:
                    self._snapshot_dropped += 1
                    continue
                if top is None or seq > top:
                    top = seq
            out.append(self._trade(t, inst_id, symbol, seq, receipt_ns, backfilled=False))
        if top is not None and top != seen:
            self._top_trade.put(inst_id, top)
        if len(out) > 1:  # newest first on the wire: deliver in id order
            out.sort(key=_trade_order)
        return out

    def _trade(
        self,
        t: _TradeMsg | _RestTrade,
        inst_id: str,
        symbol: str,
        seq: int | None,
        receipt_ns: int,
        *,
        backfilled: bool,
    ) -> Trade:
        return Trade(
            exchange=self.exchange,
            symbol=symbol,
            exchange_symbol=inst_id,
            price=t.price,
            amount=t.size,
            side=_side(t.side),
            trade_id=t.tradeId,
            timestamp_ms=_int(t.ts),
            receipt_ns=receipt_ns,
            sequence=seq,
            channel=_TRADES,
            feed=self.feed,
            amount_unit=self._unit,
            contract_size=None,
            backfilled=backfilled,
        )

    def _decode_tickers(self, data: msgspec.Raw, receipt_ns: int) -> list[Decoded]:
        items = _tickers_decoder.decode(data)
        out: list[Decoded] = []
        for t in items:
            out.append(
                Ticker(
                    exchange=self.exchange,
                    symbol=self.unified_symbol(t.instId),
                    exchange_symbol=t.instId,
                    bid_price=_dec(t.bidPr),
                    bid_size=_dec(t.bidSz),
                    ask_price=_dec(t.askPr),
                    ask_size=_dec(t.askSz),
                    last_price=_dec(t.lastPr),
                    timestamp_ms=_int(t.ts),
                    receipt_ns=receipt_ns,
                    sequence=None,
                    channel=_TICKER,
                    feed=self.feed,
                    amount_unit=self._unit,
                    contract_size=None,
                )
            )
        return out

    def _decode_books(
        self, data: msgspec.Raw, arg: _Arg, action: str | None, receipt_ns: int, session: _Session
    ) -> list[Decoded]:
        inst_id = arg.instId
        key = (arg.instType.upper(), inst_id)
        chain = session.chain
        # Unlinked until this frame decodes whole: a books frame of this symbol that raises DecodeError (its
        # changes lost, possibly below the top 25 levels the checksum covers) makes the next update link to
        # nothing, so a live book resyncs instead of silently missing them.
        linked = chain.pop(key)
        items = _books_decoder.decode(data)
        if action != "snapshot" and action != "update":
            raise DecodeError(f"bitget: books frame with action {action!r}")
        is_snapshot = action == "snapshot"
        symbol = self.unified_symbol(inst_id)
        out: list[Decoded] = []
        for b in items:
            raw = b.seq
            seq = raw if isinstance(raw, int) or raw is None else _int(raw)
            if seq is None:
                # API v1 shape (no seq): no continuity information, the checksum alone guards the book
                last, prev = 0, None
            else:
                last = seq
                prev = -1 if is_snapshot else (_NO_LINK if linked is None else linked)
                linked = seq
            out.append(
                BookMessage(
                    symbol=symbol,
                    exchange_symbol=inst_id,
                    is_snapshot=is_snapshot,
                    bids=b.bids,
                    asks=b.asks,
                    first_seq=last,
                    last_seq=last,
                    prev_seq=prev,
                    checksum=b.checksum,
                    timestamp_ms=_int(b.ts),
                    receipt_ns=receipt_ns,
                )
            )
        if linked is not None:
            chain.put(key, linked)
        return out

    def amount_unit(self, symbol: str) -> AmountUnit:
        """Base currency on both markets (docs/protocols/bitget.md "Sizes")."""
        return self._unit

    # instruments -----------------------------------------------------------------------------------------
    def instruments_request(self) -> RestRequest:
        """``GET /api/v2/spot/public/symbols`` or ``GET /api/v2/mix/market/contracts?productType=USDT-FUTURES``
        (20 requests per second per IP)."""
        if self.market is Market.SPOT:
            return RestRequest(path="/api/v2/spot/public/symbols", params={})
        return RestRequest(path="/api/v2/mix/market/contracts", params={"productType": "USDT-FUTURES"})

    def parse_instruments(self, body: bytes) -> list[Instrument]:
        """This market's instruments: spot ``status == "online"`` or futures ``symbolStatus == "normal"`` as
        active; futures other than perpetual (``symbolType`` ``delivery``) are skipped.

        Raises:
            DecodeError: malformed body or ``code`` not ``"00000"``.
        """
        m = decode_json(_rest_insts_decoder, body, "bitget", "malformed instruments answer")
        if m.code != "00000" or m.data is None:
            raise DecodeError(f"bitget: instruments answer code={m.code!r} msg={m.msg!r}")
        out: list[Instrument] = []
        for i in m.data:
            if self.market is Market.SPOT:
                out.append(
                    Instrument(f"{i.baseCoin}/{i.quoteCoin}", i.symbol, i.status == "online", i.status)
                )
                continue
            if i.symbolType and i.symbolType != "perpetual":
                continue
            out.append(
                Instrument(
                    f"{i.baseCoin}/{i.quoteCoin}:{i.quoteCoin}",
                    i.symbol,
                    i.symbolStatus == "normal",
                    i.symbolStatus,
                )
            )
        return out

    # trade backfill --------------------------------------------------------------------------------------
    def backfill_request(self, subscription: Subscription, cursor: BackfillCursor) -> RestRequest | None:
        """``GET /api/v2/spot/market/fills-history?symbol=..&idLessThan=<id>&limit=1000`` (futures:
        ``/api/v2/mix/market/fills-history`` with ``productType=USDT-FUTURES``): trades older than ``id`` (the
        oldest fetched so far, first the first trade after the interruption), newest first. Done once a page
        reaches ``after_id`` or comes back short."""
        if cursor.oldest is not None and cursor.oldest <= cursor.after_id + 1:
            return None
        if cursor.last_page_size is not None and cursor.last_page_size < _BACKFILL_PAGE:
            return None
        start = cursor.oldest if cursor.oldest is not None else cursor.before_id
        params = {
            "symbol": self.exchange_symbol(subscription.symbol),
            "idLessThan": str(start),
            "limit": str(_BACKFILL_PAGE),
        }
        if self.market is Market.SPOT:
            return RestRequest(path="/api/v2/spot/market/fills-history", params=params)
        params["productType"] = "USDT-FUTURES"
        return RestRequest(path="/api/v2/mix/market/fills-history", params=params)

    def parse_trades(self, body: bytes, subscription: Subscription, receipt_ns: int) -> list[Trade]:
        """Parse a ``fills-history`` page into backfilled trades.

        Raises:
            DecodeError: malformed body, ``code`` not ``"00000"`` or a trade without an integer id.
        """
        m = decode_json(_rest_trades_decoder, body, "bitget", "malformed fills-history answer")
        if m.code != "00000" or m.data is None:
            raise DecodeError(f"bitget: fills-history answer code={m.code!r} msg={m.msg!r}")
        inst = self.exchange_symbol(subscription.symbol)
        out: list[Trade] = []
        for t in m.data:
            seq = _trade_seq(t.tradeId)
            if seq is None:
                raise DecodeError(f"bitget: bad history trade id {t.tradeId!r}")
            out.append(self._trade(t, inst, subscription.symbol, seq, receipt_ns, backfilled=True))
        return out

    # books -----------------------------------------------------------------------------------------------
    def snapshot_request(self, subscription: Subscription) -> RestRequest | None:
        """``None``: Bitget books are snapshotted over the WebSocket (resync = resubscribe)."""
        return None


def _trade_order(t: Decoded) -> int:
    seq = t.sequence if isinstance(t, Trade) else None
    return seq if seq is not None else -1


def _no_bytes(sub: Subscription) -> int:
    return 0


# ------------------------------------------------------------------------------------------- registrations
# Demo trading: ``wss://wspap.bitget.com/v2/ws/public`` (docs/protocols/bitget.md "URLs"); public REST market
# data has no separate demo host.
_BITGET_DEMO = ("wss://wspap.bitget.com", "https://api.bitget.com")
register(
    "bitget",
    Market.SPOT,
    for_market(BitgetAdapter, Market.SPOT),
    shapes=(SymbolShape.SPOT,),
    testnet=_BITGET_DEMO,
)
register(
    "bitget",
    Market.PERPETUAL,
    for_market(BitgetAdapter, Market.PERPETUAL),
    shapes=(SymbolShape.LINEAR,),
    testnet=_BITGET_DEMO,
)
