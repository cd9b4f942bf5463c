"""Bybit v5 public protocol adapter (sans-I/O): spot, linear (USDT/USDC) and inverse perpetuals.

Protocol facts and their official sources are in ``docs/protocols/bybit.md`` (pages under
https://bybit-exchange.github.io/docs/v5/: ``ws/connect``, ``websocket/public/{orderbook,trade,ticker}``,
``rate-limit``, ``market/{time,instrument,orderbook,recent-trade,tickers}``):

- URLs: ``wss://stream.bybit.com/v5/public/spot``, ``.../linear`` (USDT and USDC perpetuals) and ``.../inverse``;
  the perpetual adapter routes each subscription to the URL of its kind (:meth:`BybitAdapter.route`).
- Subscribe ``{"req_id":"N","op":"subscribe","args":["publicTrade.BTCUSDT",...]}``; the answer
  ``{"success":true|false,"ret_msg":..,"conn_id":..,"req_id":"N","op":"subscribe"}`` carries our ``req_id``
  (the engine resolves the subscriptions from it); a failure's ``ret_msg`` names the refused topic
  (``error:handler not found,topic:orderbook.50.NOPEUSDT``), which :class:`~cryptolink.exchanges.base.Rejected`
  then names too. Spot takes at most 10 args per request; the ``args`` of one connection must stay within 21 000
  characters (we keep at most 500 topics per connection: 500 x 35 characters is 17 500).
- Keepalive: the client sends ``{"op":"ping"}`` (recommended every 20 s); the server answers
  ``{"success":true,"ret_msg":"pong",..,"op":"ping"}`` (public streams) or ``{"op":"pong","args":[..]}`` (other
  streams); both decode to :class:`~cryptolink.exchanges.base.Pong`. Without ping-pong or data the server cuts a
  connection after 10 minutes. No lifetime limit is documented. 500 new connections per 5 minutes per IP.
- Channels: trades -> ``publicTrade.{sym}`` (``S`` is the taker side; ``i`` is numeric on spot and a UUID on
  derivatives: it becomes the integer ``sequence`` only when it is an integer), book -> ``orderbook.{50|200|1000}.
  {sym}`` (default 50), ticker -> spot ``orderbook.1.{sym}`` (the best bid/offer: spot ``tickers`` carry no
  bid/ask; shared with a depth-1 book, so topics are reference counted: see :meth:`BybitAdapter.requests`) and
  derivatives ``tickers.{sym}`` (snapshot then partial deltas holding only the changed fields,
  merged here per symbol, bounded).
- Books: a ``snapshot`` (after subscribing, after a problem on Bybit's side) and any push with ``u == 1``
  (snapshot data after a service restart, whatever its ``type``) replace the book; each ``delta`` must follow
  the previous message of its topic with ``u == previous u + 1`` (older pages: "Update id, is always in
  sequence" / "normally continuous"; the v5 SBE level-50 page: ``u`` "monotonic per symbol, useful to check
  continuity"; the current v5 orderbook page states no rule), so ``prev_seq = u - 1``: a skipped ``u``
  re-subscribes that symbol. A push with ``u == 1`` has ``prev_seq=None`` (always applied); other snapshots
  ``u - 1`` (so a level-1 re-push of an unchanged book, same ``u``, is dropped as a duplicate). No checksum.
- Symbols: spot ``BTC/USDT`` <-> ``BTCUSDT``; linear ``BTC/USDT:USDT`` <-> ``BTCUSDT``, ``BTC/USDC:USDC`` <->
  ``BTCPERP``; inverse ``BTC/USD:BTC`` <-> ``BTCUSD``.
- Sizes: spot and linear in base currency; inverse in contracts of 1 USD (``AmountUnit.CONTRACTS``, contract
  size 1 USD; our reading of the instrument list, where inverse quantities step by 1).
- REST: ``GET /v5/market/instruments-info?category=..&limit=1000`` (one page; a ``nextPageCursor`` is counted in
  ``instrument_pages_truncated``, see :meth:`BybitAdapter.parse_instruments`), ``/v5/market/recent-trade`` (the latest 60 spot / 1000 derivative
  trades, no cursor: the backfill fetches that one page and the feed reports the interval complete only if the
  page reaches back to it). 600 requests per 5 s per IP (HTTP 403 beyond, then a ban of about 10 minutes).
"""

from __future__ import annotations

from collections.abc import Sequence
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
    ConnectRateLimit,
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
)
from cryptolink.exchanges.registry import for_market, register
from cryptolink.models import AmountUnit, Channel, Market, Side, Subscription, Ticker, Trade
from cryptolink.symbols import SymbolShape, parse_unified, split_concatenated

__all__ = ["BOOK_DEPTHS", "BybitAdapter"]

BOOK_DEPTHS = (50, 200, 1000)
"""Book topics we subscribe (``orderbook.{depth}``; spot and linear/inverse all serve 1, 50, 200 and 1000 levels:
https://bybit-exchange.github.io/docs/v5/websocket/public/orderbook). Level 1 is the ticker (best bid/offer)."""
_DEFAULT_DEPTH = 50
"""50 levels pushed every 20 ms: the deepest of the fast topics (200 and 1000 levels come every 100-200 ms)."""
_SPOT_ARGS_PER_REQUEST = 10
_MAX_TOPICS_PER_CONNECTION = 500
_MAX_TICKER_STATES = 10_000
_MAX_PENDING = 100_000
_SPOT_TRADES_PAGE = 60
_DERIV_TRADES_PAGE = 1000
_TRADES = Channel.TRADES
_TICKER = Channel.TICKER
_BOOK = Channel.BOOK
_PING = '{"op":"ping"}'
_SentTopics = tuple[tuple[str, tuple[Subscription, ...]], ...]


# ------------------------------------------------------------------------------------------- wire structs
class _Envelope(msgspec.Struct):
    topic: str | None = None
    type: str | None = None
    ts: int | None = None
    data: msgspec.Raw = msgspec.Raw()
    cs: int | None = None
    success: bool | None = None
    ret_msg: str | None = None
    req_id: str | None = None
    op: str | None = None


class _BookData(msgspec.Struct):
    s: str
    b: list[list[str]]
    a: list[list[str]]
    u: int
    seq: int | None = None


class _TradeItem(msgspec.Struct):
    T: int
    s: str
    S: str
    v: str
    p: str
    i: str


class _TickerData(msgspec.Struct):
    symbol: str
    lastPrice: str | None = None
    bid1Price: str | None = None
    bid1Size: str | None = None
    ask1Price: str | None = None
    ask1Size: str | None = None


class _Lot(msgspec.Struct):
    qtyStep: str = ""
    minOrderQty: str = ""
    basePrecision: str = ""


class _Inst(msgspec.Struct):
    symbol: str
    status: str = ""
    baseCoin: str = ""
    quoteCoin: str = ""
    settleCoin: str = ""
    contractType: str = ""
    lotSizeFilter: _Lot | None = None


class _InstResult(msgspec.Struct):
    items: list[_Inst] = msgspec.field(name="list")
    category: str = ""
    nextPageCursor: str = ""


class _RestInsts(msgspec.Struct):
    retCode: int
    result: _InstResult | None = None
    retMsg: str = ""


class _RestTrade(msgspec.Struct):
    execId: str
    symbol: str
    price: str
    size: str
    side: str
    time: str


class _TradesResult(msgspec.Struct):
    items: list[_RestTrade] = msgspec.field(name="list")


class _RestTrades(msgspec.Struct):
    retCode: int
    result: _TradesResult | None = None
    retMsg: str = ""


class _RestBookResult(msgspec.Struct):
    s: str
    b: list[list[str]]
    a: list[list[str]]
    u: int
    ts: int | None = None
    seq: int | None = None


class _RestBook(msgspec.Struct):
    retCode: int
    result: _RestBookResult | None = None
    retMsg: str = ""


_env_decoder = msgspec.json.Decoder(_Envelope)
_book_decoder = msgspec.json.Decoder(_BookData)
_trades_decoder = msgspec.json.Decoder(list[_TradeItem])
_ticker_decoder = msgspec.json.Decoder(_TickerData)
_rest_insts_decoder = msgspec.json.Decoder(_RestInsts)
_rest_trades_decoder = msgspec.json.Decoder(_RestTrades)
_rest_book_decoder = msgspec.json.Decoder(_RestBook)
_json_encoder = msgspec.json.Encoder()


def _dec(text: str | None) -> Decimal | None:
    if not text:
        return None
    try:
        return Decimal(text)
    except InvalidOperation as exc:
        raise DecodeError(f"bybit: not a decimal number: {text!r}") from exc


def _guess_spot(native: str) -> str:
    base, quote = split_concatenated(native)
    return f"{base}/{quote}" if quote else native


def _guess_perp(native: str) -> str:
    if native.endswith("PERP") and len(native) > 4:
        return f"{native[:-4]}/USDC:USDC"
    base, quote = split_concatenated(native)
    if not quote:
        return native
    if quote == "USD":
        return f"{base}/USD:{base}"
    return f"{base}/{quote}:{quote}"


def _is_uint(text: str) -> bool:
    """``text`` is a plain ASCII decimal integer (``str.isdigit`` alone also accepts ``"²"``, which ``int``
    refuses)."""
    return text.isascii() and text.isdigit()


def _request_id(raw: str | None) -> int | str | None:
    """Our req_ids are decimal integers sent as strings; give them back as ``int`` (``""`` -> ``None``)."""
    if not raw:
        return None
    return int(raw) if _is_uint(raw) else raw


def _refused_topics(ret_msg: str) -> list[str]:
    """Topics named in a failed answer's ``ret_msg``: ``Invalid symbol :[orderbook.50.X]`` (the form client
    libraries report for v5 public streams; a list in the brackets is split on commas) or
    ``error:handler not found,topic:orderbook.50.X`` (several may follow each other)."""
    out: list[str] = []
    if "[" in ret_msg:
        inside = ret_msg[ret_msg.index("[") + 1 :].split("]", 1)[0]
        out.extend(t for t in (x.strip().strip("\"' ") for x in inside.split(",")) if t)
    for part in ret_msg.split("topic:")[1:]:
        topic = part.split(",", 1)[0].strip().strip("[]\"' ")
        if topic and topic not in out:
            out.append(topic)
    return out


class BybitAdapter(ExchangeAdapter):
    """Bybit v5 public market data for one market (``Market.SPOT`` or ``Market.PERPETUAL``: linear and inverse).

    Args:
        market: spot (``BTC/USDT``) or perpetuals (``BTC/USDT:USDT``, ``BTC/USDC:USDC``, ``BTC/USD:BTC``).
        ws_base_url: scheme and host (default ``wss://stream.bybit.com``); connections use
            ``<ws_base_url>/v5/public/{spot|linear|inverse}``.
        rest_base_url: REST base (default ``https://api.bybit.com``).

    Book sync: WebSocket snapshot, LINKED with ``prev_seq = u - 1`` (see the module doc), no checksum.
    """

    exchange = "bybit"
    ws_base_url = "wss://stream.bybit.com"
    rest_base_url = "https://api.bybit.com"
    ws_path = "/v5/public/"
    trade_backfill: ClassVar[bool] = True
    # 600 requests per 5 s per IP, every endpoint counted alike; beyond it HTTP 403 "access too frequent" and a ban
    # of at least 10 minutes, with no Retry-After (https://bybit-exchange.github.io/docs/v5/rate-limit)
    rest_limit = RestRateLimit(weight=600, window_s=5.0, ban_statuses=(403,), ban_pause_s=600.0)
    book_sync = BookSyncSpec(source=SnapshotSource.WEBSOCKET, sequence=SequenceModel.LINKED, bridge_offset=0)

    def __init__(
        self,
        market: Market = Market.SPOT,
        *,
        ws_base_url: str | None = None,
        rest_base_url: str | None = None,
        feed: str | None = None,
    ) -> None:
        super().__init__(ws_base_url=ws_base_url, rest_base_url=rest_base_url, feed=feed)
        cut = self.ws_base_url.find(self.ws_path)
        if cut >= 0:  # a full URL given as override
            self.ws_base_url = self.ws_base_url[:cut]
        self.market = Market(market)
        spot = self.market is Market.SPOT
        self.policy = ConnectionPolicy(
            keepalive=KeepalivePolicy(
                app_ping_frame=_PING,
                app_ping_idle_s=20.0,
                app_ping_interval_s=20.0,
                protocol_ping_interval_s=None,
                pong_timeout_s=10.0,
                server_pings=False,
            ),
            max_lifetime_s=None,
            max_streams_per_connection=_MAX_TOPICS_PER_CONNECTION,
            server_idle_close_s=600.0,
            connect_limit=ConnectRateLimit(max_connects=500, window_s=300.0),
            max_subscriptions_per_request=_SPOT_ARGS_PER_REQUEST if spot else None,
        )
        self._symbols = SymbolCache()
        self._pinned = self._symbols.pinned
        self._guess = _guess_spot if spot else _guess_perp
        # topic -> its owners: every subscribed Subscription it serves (the spot ticker and a depth-1 book share
        # ``orderbook.1.X``): unsubscribed only when the last owner leaves; a refusal naming it names them all
        self._topic_subs: BoundedMap[str, dict[Subscription, None]] = BoundedMap(_MAX_PENDING)
        # subscribe req_id -> (topic, its subscriptions in that request): a refusal releases those owners
        self._sent: BoundedMap[int, _SentTopics] = BoundedMap(_MAX_PENDING)
        # derivatives tickers: native -> merged fields [lastPrice, bid1Price, bid1Size, ask1Price, ask1Size]
        self._tickers: BoundedMap[str, list[str | None]] = BoundedMap(_MAX_TICKER_STATES)
        self._ticker_without_snapshot = 0
        self._instrument_pages_truncated = 0
        # unified symbol -> amount unit (perpetuals: parsed once per symbol, not per event)
        self._units: BoundedMap[str, AmountUnit] = BoundedMap(_MAX_TICKER_STATES)
        # natives whose level-1 topic has a Book owner (depth 1 asked for) / a Ticker owner (spot); from the owners
        self._l1_books: set[str] = set()
        self._l1_tickers: set[str] = set()
        self._inverse: set[str] = set()

    # symbols ---------------------------------------------------------------------------------------------
    def exchange_symbol(self, symbol: str) -> str:
        """``BTC/USDT`` -> ``BTCUSDT`` (spot); ``BTC/USDT:USDT`` -> ``BTCUSDT``, ``BTC/USDC:USDC`` -> ``BTCPERP``,
        ``BTC/USD:BTC`` -> ``BTCUSD`` (perpetual).

        Raises:
            ValueError: not a unified symbol, or not of this adapter's market (dated futures are not supported).
        """
        cached = self._symbols.exchange_symbol(symbol)
        if cached is not None:
            return cached
        base, quote, settle, expiry = parse_unified(symbol)
        if self.market is Market.SPOT:
            if settle is not None:
                raise ValueError(f"bybit spot: {symbol!r} is not a spot symbol (expected BASE/QUOTE)")
            native = f"{base}{quote}"
        else:
            if settle is None or expiry is not None or settle not in (base, quote):
                raise ValueError(
                    f"bybit perpetual: {symbol!r} is not a perpetual (BASE/QUOTE:QUOTE or BASE/USD:BASE)"
                )
            if settle == base:
                native = f"{base}{quote}"
                self._inverse.add(native)
            elif quote == "USDC":
                native = f"{base}PERP"
            else:
                native = f"{base}{quote}"
        self._symbols.pin(symbol, native)
        return native

    def unified_symbol(self, native: str) -> str:
        """Best-effort unified symbol of a Bybit symbol (subscribed ones map back exactly)."""
        hit = self._pinned.get(native)
        return hit if hit is not None else self._symbols.unified(native, self._guess)

    def counters(self) -> dict[str, int]:
        """``symbol_cache_evicted``, ``topic_keys_evicted``, ``request_keys_evicted``, ``ticker_states_evicted``,
        ``amount_units_evicted`` (bounded maps), ``ticker_delta_without_snapshot`` (partial tickers decoded
        without a prior snapshot) and ``instrument_pages_truncated`` (instrument lists answered with a
        ``nextPageCursor``: later pages are not fetched, see :meth:`parse_instruments`)."""
        return {
            "symbol_cache_evicted": self._symbols.evicted,
            "topic_keys_evicted": self._topic_subs.evicted,
            "request_keys_evicted": self._sent.evicted,
            "ticker_states_evicted": self._tickers.evicted,
            "amount_units_evicted": self._units.evicted,
            "ticker_delta_without_snapshot": self._ticker_without_snapshot,
            "instrument_pages_truncated": self._instrument_pages_truncated,
        }

    # connections -----------------------------------------------------------------------------------------
    def route(self, subscription: Subscription) -> str:
        """``spot`` on the spot adapter; ``inverse`` for ``BASE/USD:BASE``, else ``linear`` on the perpetual one."""
        if self.market is Market.SPOT:
            return "spot"
        native = self.exchange_symbol(subscription.symbol)
        return "inverse" if native in self._inverse else "linear"

    def connection_url(self, route: str) -> str:
        """``<ws_base_url>/v5/public/<route>``."""
        return (
            self.ws_base_url + self.ws_path + (route or ("spot" if self.market is Market.SPOT else "linear"))
        )

    @staticmethod
    def book_depth(subscription: Subscription) -> int:
        """The ``orderbook.{depth}`` topic depth of a book subscription: 1 when 1 level is asked for, else the
        smallest of :data:`BOOK_DEPTHS` holding the levels asked for (50 by default)."""
        want = subscription.depth
        if want is None:
            return _DEFAULT_DEPTH
        if want <= 1:
            return 1
        return next((d for d in BOOK_DEPTHS if d >= want), BOOK_DEPTHS[-1])

    def topic(self, subscription: Subscription) -> str:
        """The topic of ``subscription`` (``publicTrade.BTCUSDT``, ``orderbook.50.BTCUSDT``, ``tickers.BTCUSDT`` or
        on spot ``orderbook.1.BTCUSDT`` for the ticker)."""
        native = self.exchange_symbol(subscription.symbol)
        ch = subscription.channel
        if ch is _TRADES:
            return f"publicTrade.{native}"
        if ch is _BOOK:
            return f"orderbook.{self.book_depth(subscription)}.{native}"
        if self.market is Market.SPOT:
            return f"orderbook.1.{native}"
        return f"tickers.{native}"

    def requests(
        self,
        op: Literal["subscribe", "unsubscribe"],
        subscriptions: Sequence[Subscription],
        next_id: int,
        now_ms: int | None = None,
    ) -> list[OutboundRequest]:
        """``{"req_id":"N","op":"subscribe"|"unsubscribe","args":[topics]}`` frames, at most 10 args each on
        spot (a topic two subscriptions share is sent once).

        Topics are reference counted: the spot ticker and a depth-1 book share ``orderbook.1.X``. Subscribe
        always sends the topic (a new or reconnected socket needs it; a socket that has it answers
        ``already subscribed``, taken as an ack) and adds the subscription to the topic's owners. Unsubscribe
        removes it and sends the topic only when no owner is left; a batch whose topics all keep an owner
        sends no frame (nothing to wait for). The owners are the adapter's, not a socket's (a known gap when a
        symbol's ticker and depth-1 book land on two connections: docs/protocols/bybit.md section 5.3).
        """
        out: list[OutboundRequest] = []
        for chunk in self.request_batches(subscriptions, self._arg_bytes):
            rid = next_id + len(out)
            topics: dict[str, list[Subscription]] = {}
            for sub in chunk:
                topic = self.topic(sub)
                owners = self._topic_subs.get(topic)
                if op == "subscribe":
                    if owners is None:
                        owners = {}
                        self._topic_subs.put(topic, owners)
                    owners[sub] = None
                    topics.setdefault(topic, []).append(sub)
                else:
                    if owners is not None:
                        owners.pop(sub, None)
                    if not owners:  # the last owner left (or none was known): the topic goes
                        self._topic_subs.pop(topic)
                        topics.setdefault(topic, []).append(sub)
                self._owners_changed(topic, sub)
            if not topics:
                continue
            if op == "subscribe":
                self._sent.put(rid, tuple((t, tuple(s)) for t, s in topics.items()))
            frame = _json_encoder.encode({"req_id": str(rid), "op": op, "args": list(topics)}).decode()
            out.append(OutboundRequest(frame=frame, request_id=rid, op=op, subscriptions=chunk))
        return out

    def _owners_changed(self, topic: str, sub: Subscription) -> None:
        """Keep :attr:`_l1_books` / :attr:`_l1_tickers` equal to the owner kinds of a level-1 topic."""
        if sub.channel is _TRADES or not topic.startswith("orderbook.1."):
            return
        native = topic[len("orderbook.1.") :]
        owners = self._topic_subs.get(topic) or {}
        for target, channel in ((self._l1_books, _BOOK), (self._l1_tickers, _TICKER)):
            if any(s.channel is channel for s in owners):
                target.add(native)
            else:
                target.discard(native)

    def _release(self, rid: int | str | None, named: list[str]) -> tuple[Subscription, ...]:
        """A refused subscribe request: every owner of the topics it names (the engine keeps those pending on
        ``rid``); the owners that request added (of the named topics, or of all its topics when none is named)
        are released."""
        subs: list[Subscription] = []
        for t in named:
            subs.extend(self._topic_subs.get(t) or ())
        sent = self._sent.pop(rid) if isinstance(rid, int) else None
        for topic, added in sent or ():
            if named and topic not in named:
                continue
            owners = self._topic_subs.get(topic)
            for sub in added:
                if owners is not None:
                    owners.pop(sub, None)
                if not owners:
                    self._topic_subs.pop(topic)
                self._owners_changed(topic, sub)
        return tuple(subs)

    def _arg_bytes(self, sub: Subscription) -> int:
        return len(self.topic(sub)) + 3

    # decoding --------------------------------------------------------------------------------------------
    def decode(self, frame: str | bytes, receipt_ns: int) -> list[Decoded]:
        """Decode one frame.

        Returns trades, tickers or one ``BookMessage`` for a topic push; ``[Pong]`` for a ping answer;
        ``[Ack]`` for a successful subscribe/unsubscribe answer; ``[Rejected]`` for a failed one (naming the
        subscriptions of the topics its ``ret_msg`` names, else resolved by the engine from ``req_id``);
        ``[ExchangeError]`` for a failure of another op; ``[]`` for a well-formed frame we do not handle (other
        topics).

        Raises:
            DecodeError: not JSON / not an object, or a known topic whose payload lacks/mistypes fields.
        """
        try:
            env = _env_decoder.decode(frame)
            topic = env.topic
            if topic is not None:
                if not env.data:
                    raise DecodeError(f"bybit: {topic!r} push without data")
                kind, _, rest = topic.partition(".")
                if kind == "orderbook":
                    depth, _, native = rest.partition(".")
                    return self._decode_book(env, depth, native, receipt_ns)
                if kind == "publicTrade":
                    return self._decode_trades(env.data, receipt_ns)
                if kind == "tickers":
                    return self._decode_ticker(env, receipt_ns)
                return []
            op = env.op
            if op is None:
                return []
            if op == "pong" or (op == "ping" and env.ret_msg == "pong"):
                return [Pong()]
            if env.success is None:
                return []
            rid = _request_id(env.req_id)
            if op == "subscribe" or op == "unsubscribe":
                sub_op: Literal["subscribe", "unsubscribe"] = (
                    "subscribe" if op == "subscribe" else "unsubscribe"
                )
                msg = env.ret_msg or ""
                if env.success or "already subscribed" in msg:
                    if isinstance(rid, int):
                        self._sent.pop(rid)
                    return [Ack(sub_op, rid)]
                return [Rejected(rid, "", msg, self._release(rid, _refused_topics(msg)))]
            if not env.success:
                return [ExchangeError(op, env.ret_msg or "")]
            return []
        except MSGSPEC_ERRORS as exc:  # one conversion for the envelope and every payload decoded below
            raise DecodeError(f"bybit: malformed frame: {exc}") from exc

    def _decode_book(self, env: _Envelope, depth: str, native: str, receipt_ns: int) -> list[Decoded]:
        d = _book_decoder.decode(env.data)  # inside decode(): msgspec errors become DecodeError there
        kind = env.type
        if kind != "snapshot" and kind != "delta":
            raise DecodeError(f"bybit: orderbook push of type {kind!r}")
        native = d.s or native
        symbol = self.unified_symbol(native)
        out: list[Decoded] = []
        if depth == "1" and (native in self._l1_tickers or native not in self._l1_books):
            b = d.b[0] if d.b else None
            a = d.a[0] if d.a else None
            if (b is not None and len(b) < 2) or (a is not None and len(a) < 2):
                raise DecodeError(f"bybit: bad level in {env.topic!r}")
            out.append(
                Ticker(
                    exchange=self.exchange,
                    symbol=symbol,
                    exchange_symbol=native,
                    bid_price=_dec(b[0]) if b else None,
                    bid_size=_dec(b[1]) if b else None,
                    ask_price=_dec(a[0]) if a else None,
                    ask_size=_dec(a[1]) if a else None,
                    last_price=None,
                    timestamp_ms=env.ts,
                    receipt_ns=receipt_ns,
                    sequence=d.u,
                    channel=_TICKER,
                    feed=self.feed,
                    amount_unit=self.amount_unit(symbol),
                    contract_size=self.contract_sizes.get(symbol),
                )
            )
            if native not in self._l1_books:
                return out
        u = d.u
        # "u" = 1 is snapshot data after a service restart, "please overwrite your local orderbook" (orderbook
        # page): a push with u = 1 replaces the book whatever its ``type`` says.
        snapshot = kind == "snapshot" or u == 1
        out.append(
            BookMessage(
                symbol=symbol,
                exchange_symbol=native,
                is_snapshot=snapshot,
                bids=d.b,
                asks=d.a,
                first_seq=u,
                last_seq=u,
                prev_seq=None if u == 1 else u - 1,
                checksum=None,
                timestamp_ms=env.ts,
                receipt_ns=receipt_ns,
            )
        )
        return out

    def _decode_trades(self, data: msgspec.Raw, receipt_ns: int) -> list[Decoded]:
        items = _trades_decoder.decode(data)  # inside decode(): msgspec errors become DecodeError there
        out: list[Decoded] = []
        for t in items:
            symbol = self.unified_symbol(t.s)
            out.append(self._trade(t.s, symbol, t.p, t.v, t.S, t.i, t.T, receipt_ns, backfilled=False))
        return out

    def _trade(
        self,
        native: str,
        symbol: str,
        price: str,
        size: str,
        side: str,
        trade_id: str,
        ts_ms: int | None,
        receipt_ns: int,
        *,
        backfilled: bool,
    ) -> Trade:
        if side == "Buy":
            taker = Side.BUY
        elif side == "Sell":
            taker = Side.SELL
        else:
            raise DecodeError(f"bybit: bad trade side {side!r}")
        px, sz = _dec(price), _dec(size)
        if px is None or sz is None:
            raise DecodeError(f"bybit: trade without price or size: {trade_id!r}")
        return Trade(
            exchange=self.exchange,
            symbol=symbol,
            exchange_symbol=native,
            price=px,
            amount=sz,
            side=taker,
            trade_id=trade_id,
            timestamp_ms=ts_ms,
            receipt_ns=receipt_ns,
            sequence=int(trade_id) if _is_uint(trade_id) else None,
            channel=_TRADES,
            feed=self.feed,
            amount_unit=self.amount_unit(symbol),
            contract_size=self.contract_sizes.get(symbol),
            backfilled=backfilled,
        )

    def _decode_ticker(self, env: _Envelope, receipt_ns: int) -> list[Decoded]:
        t = _ticker_decoder.decode(env.data)  # inside decode(): msgspec errors become DecodeError there
        native = t.symbol
        state = self._tickers.get(native) if env.type == "delta" else None
        # a snapshot replaces the fields; a delta merges into them (kept per symbol, bounded)
        if state is None:
            if env.type == "delta":
                self._ticker_without_snapshot += 1
            state = [t.lastPrice, t.bid1Price, t.bid1Size, t.ask1Price, t.ask1Size]
            self._tickers.put(native, state)
        else:
            if t.lastPrice is not None:
                state[0] = t.lastPrice
            if t.bid1Price is not None:
                state[1] = t.bid1Price
            if t.bid1Size is not None:
                state[2] = t.bid1Size
            if t.ask1Price is not None:
                state[3] = t.ask1Price
            if t.ask1Size is not None:
                state[4] = t.ask1Size
        last, bid, bid_size, ask, ask_size = state
        symbol = self.unified_symbol(native)
        return [
            Ticker(
                exchange=self.exchange,
                symbol=symbol,
                exchange_symbol=native,
                bid_price=_dec(bid),
                bid_size=_dec(bid_size),
                ask_price=_dec(ask),
                ask_size=_dec(ask_size),
                last_price=_dec(last),
                timestamp_ms=env.ts,
                receipt_ns=receipt_ns,
                sequence=env.cs,
                channel=_TICKER,
                feed=self.feed,
                amount_unit=self.amount_unit(symbol),
                contract_size=self.contract_sizes.get(symbol),
            )
        ]

    def amount_unit(self, symbol: str) -> AmountUnit:
        """Contracts (1 USD each) for inverse perpetuals (``BASE/USD:BASE``), base currency otherwise (worked out
        once per symbol: a bounded cache, evictions in ``amount_units_evicted``)."""
        if self.market is Market.SPOT:
            return AmountUnit.BASE
        unit = self._units.get(symbol)
        if unit is None:
            base, _, settle = symbol.partition("/")
            unit = AmountUnit.CONTRACTS if settle.endswith(":" + base) else AmountUnit.BASE
            self._units.put(symbol, unit)
        return unit

    # instruments -----------------------------------------------------------------------------------------
    def _category(self, symbol: str | None = None) -> str:
        if self.market is Market.SPOT:
            return "spot"
        if symbol is not None and self.amount_unit(symbol) is AmountUnit.CONTRACTS:
            return "inverse"
        return "linear"

    def instruments_request(self) -> RestRequest:
        """``GET /v5/market/instruments-info?category=spot|linear&limit=1000`` (the perpetual adapter's inverse
        list: :meth:`instruments_requests`)."""
        return RestRequest(
            path="/v5/market/instruments-info", params={"category": self._category(), "limit": "1000"}
        )

    def instruments_requests(self) -> list[RestRequest]:
        """Spot: the spot list. Perpetual: the ``linear`` list and the ``inverse`` list (one market, two Bybit
        categories)."""
        if self.market is Market.SPOT:
            return [self.instruments_request()]
        inverse = RestRequest(
            path="/v5/market/instruments-info", params={"category": "inverse", "limit": "1000"}
        )
        return [self.instruments_request(), inverse]

    def parse_instruments(self, body: bytes) -> list[Instrument]:
        """This market's instruments from one ``instruments-info`` page: spot pairs, or linear and inverse
        perpetuals (``contractType`` ``LinearPerpetual``/``InversePerpetual``; dated futures skipped), active
        when ``status == "Trading"``. Inverse ones count contracts of 1 USD (contract size 1, currency USD).

        Only the first page is read (1000 per category covers today's lists): the feed asks the fixed
        requests of :meth:`instruments_requests` and has no way to follow a cursor. A page with a non-empty
        ``nextPageCursor`` is counted in ``instrument_pages_truncated`` (``counters()``); symbols on later pages
        would then be refused as unknown (``BadSymbol``).

        Raises:
            DecodeError: malformed body or ``retCode`` not 0.
        """
        m = decode_json(_rest_insts_decoder, body, "bybit", "malformed instruments-info answer")
        if m.retCode != 0 or m.result is None:
            raise DecodeError(f"bybit: instruments-info answer retCode={m.retCode} retMsg={m.retMsg!r}")
        if m.result.nextPageCursor:
            self._instrument_pages_truncated += 1
        out: list[Instrument] = []
        for i in m.result.items:
            base, quote = i.baseCoin, i.quoteCoin
            if not base or not quote:
                continue
            active = i.status == "Trading"
            if self.market is Market.SPOT:
                if m.result.category not in ("", "spot") or i.contractType:
                    continue
                out.append(Instrument(f"{base}/{quote}", i.symbol, active, i.status))
                continue
            if i.contractType == "LinearPerpetual":
                settle = i.settleCoin or quote
                out.append(Instrument(f"{base}/{quote}:{settle}", i.symbol, active, i.status))
            elif i.contractType == "InversePerpetual":
                out.append(
                    Instrument(
                        f"{base}/{quote}:{i.settleCoin or base}",
                        i.symbol,
                        active,
                        i.status,
                        AmountUnit.CONTRACTS,
                        Decimal(1),
                        quote,
                    )
                )
        return out

    # books -----------------------------------------------------------------------------------------------
    def rest_book_request(self, subscription: Subscription, limit: int = 200) -> RestRequest:
        """``GET /v5/market/orderbook?category=..&symbol=..&limit=..`` (not used for sync: books come over the
        WebSocket)."""
        return RestRequest(
            path="/v5/market/orderbook",
            params={
                "category": self._category(subscription.symbol),
                "symbol": self.exchange_symbol(subscription.symbol),
                "limit": str(limit),
            },
        )

    def parse_snapshot(self, body: bytes | str, subscription: Subscription, receipt_ns: int) -> BookMessage:
        """Parse a REST ``/v5/market/orderbook`` answer into a snapshot (``u`` as its sequence, no link).

        Raises:
            DecodeError: malformed body or ``retCode`` not 0.
        """
        m = decode_json(_rest_book_decoder, body, "bybit", "malformed orderbook answer")
        if m.retCode != 0 or m.result is None:
            raise DecodeError(f"bybit: orderbook answer retCode={m.retCode} retMsg={m.retMsg!r}")
        r = m.result
        return BookMessage(
            symbol=subscription.symbol,
            exchange_symbol=r.s,
            is_snapshot=True,
            bids=r.b,
            asks=r.a,
            first_seq=r.u,
            last_seq=r.u,
            prev_seq=None,
            checksum=None,
            timestamp_ms=r.ts,
            receipt_ns=receipt_ns,
        )

    # trade backfill --------------------------------------------------------------------------------------
    def backfill_request(self, subscription: Subscription, cursor: BackfillCursor) -> RestRequest | None:
        """``GET /v5/market/recent-trade?category=..&symbol=..&limit=60|1000``: the latest trades only (no
        cursor exists), so one page; the feed calls the interval complete only if that page reaches back to
        ``cursor.after_id``."""
        if cursor.pages > 0:
            return None
        spot = self.market is Market.SPOT
        return RestRequest(
            path="/v5/market/recent-trade",
            params={
                "category": self._category(subscription.symbol),
                "symbol": self.exchange_symbol(subscription.symbol),
                "limit": str(_SPOT_TRADES_PAGE if spot else _DERIV_TRADES_PAGE),
            },
        )

    def parse_trades(self, body: bytes, subscription: Subscription, receipt_ns: int) -> list[Trade]:
        """Parse a ``recent-trade`` page into backfilled trades (``execId`` is the trade id).

        Raises:
            DecodeError: malformed body, ``retCode`` not 0, bad side or numbers.
        """
        m = decode_json(_rest_trades_decoder, body, "bybit", "malformed recent-trade answer")
        if m.retCode != 0 or m.result is None:
            raise DecodeError(f"bybit: recent-trade answer retCode={m.retCode} retMsg={m.retMsg!r}")
        out: list[Trade] = []
        for t in m.result.items:
            ts = int(t.time) if _is_uint(t.time) else None
            out.append(
                self._trade(
                    t.symbol,
                    subscription.symbol,
                    t.price,
                    t.size,
                    t.side,
                    t.execId,
                    ts,
                    receipt_ns,
                    backfilled=True,
                )
            )
        return out


# ------------------------------------------------------------------------------------------- registrations
# Testnet (https://bybit-exchange.github.io/docs/v5/ws/connect and https://bybit-exchange.github.io/docs/v5/guide)
_BYBIT_TESTNET = ("wss://stream-testnet.bybit.com", "https://api-testnet.bybit.com")
register(
    "bybit",
    Market.SPOT,
    for_market(BybitAdapter, Market.SPOT),
    shapes=(SymbolShape.SPOT,),
    testnet=_BYBIT_TESTNET,
)
register(
    "bybit",
    Market.PERPETUAL,
    for_market(BybitAdapter, Market.PERPETUAL),
    shapes=(SymbolShape.LINEAR, SymbolShape.INVERSE),
    testnet=_BYBIT_TESTNET,
)
