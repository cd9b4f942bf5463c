"""Simulated HTX (ex-Huobi) public market data: spot (``/ws``, ``/feed``) and USDT-margined perpetual swaps
(``/linear-swap-ws``) on one port, with their public REST endpoints. Facts and official sources:
``docs/protocols/htx.md`` (https://huobiapi.github.io/docs/spot/v1/en/ and https://huobiapi.github.io/docs/usdt_swap/v1/en/).

``hosts`` lists the real spot and contract base URLs (``api.huobi.pro``, ``api-aws.huobi.pro``, ``api.hbdm.com``
and ccxt's ``api.hbdm.vn``): a client is pointed here by replacing those prefixes only. Served symbols (default
:data:`DEFAULT_SYMBOLS`): spot ids are lower case (``btcusdt``), swap contract codes upper case with a dash
(``BTC-USDT``). Every market is synthetic (seeded random walk; swaps in whole contracts): the shipped 2021/2022
recordings hold no incremental book, so they are used for the instrument lists only.

WebSocket (every frame the server sends is gzip-compressed binary, :attr:`HtxServer.binary_frames`):

- ``{"sub": topic, "id": ..}`` => ``{"id","status":"ok","subbed": topic,"ts"}``; ``{"unsub": ..}`` =>
  ``{"id","status":"ok","unsubbed": topic,"ts"}``; a topic that path does not serve, an unknown symbol, or a frame
  that is not a request => ``{"id"?,"status":"error","err-code":"bad-request","err-msg":"invalid topic <topic>"
  | "invalid symbol <symbol>" | "not json string","ts"}``.
- Keepalive: ``{"ping": ms}`` every ``rules.ping_interval_s`` (5 s); ``{"pong": ms}`` answers it; the socket is
  closed (1008) when a ping stays unanswered ``rules.pong_timeout_s`` (10 s: two ping periods). Protocol pings from
  the client are answered. ``noping`` stops both.
- Inbound frames above ``rules.max_in_msgs_per_s`` per second close the socket (1008; HTX documents no number:
  our choice 50).
- ``/ws`` (spot): ``market.$symbol.trade.detail`` (a push carries one trade or, as real pushes often do, several:
  a seeded 40 % of trades wait for the next one or the next 100 ms tick; spot lists a push newest first, swaps
  oldest first; ``tradeId`` increasing; stream stats count trades),
  ``market.$symbol.bbo`` (on every best bid/offer change, ``seqId``), ``market.$symbol.ticker`` and
  ``market.$symbol.detail`` (24 h statistics, at most every 100 ms when they changed). ``mbp`` topics are refused
  there (they live on ``/feed``).
- ``/feed`` (spot): ``market.$symbol.mbp.$levels`` only, levels 5, 20, 150, 400, each topic with its own view:
  150 and 400 every 100 ms, when the book moved, the difference between the previous and the current view (levels
  leaving the view are sent with size 0; both sides may be empty when the changes cancelled out); 5 and 20 tick by
  tick (a push on every change of that view, a side that did not change left out); ``seqNum`` = the book's update
  id, ``prevSeqNum`` = the previous push's of that topic. ``{"req":"market.$symbol.mbp.$levels","id":..}`` (5, 20,
  150; ``mbp.400`` => ``invalid topic``) => ``{"id","rep": topic,"status":"ok","ts","data":{"seqNum","bids",
  "asks"}}``: the view as of the last push, so the next push's ``prevSeqNum`` is its ``seqNum``. At most one
  ``req`` per 100 ms per connection (whatever its topic, as documented): a faster one => error
  ``429 too many request``.
- ``/linear-swap-ws``: ``market.$contract_code.trade.detail``, ``.bbo`` (``bid``/``ask`` as ``[price, size]``,
  ``version``), ``.detail``, ``.depth.size_20.high_freq`` and ``.depth.size_150.high_freq`` with ``data_type``
  ``incremental`` (an ``event:"snapshot"`` of the view on subscription, then ``event:"update"`` diffs every
  100 ms with ``version`` + 1, one counter per topic and contract) or ``snapshot`` (a full ``event:"snapshot"``
  every 100 ms).
- Faults: every kind of :mod:`cryptolink.simulator.faults`; ``gap`` withholds one book push (mbp or depth) of a
  connection, ``reject`` answers the next ``sub`` with an error, ``notice`` has no HTX equivalent (nothing is
  sent), ``badchecksum`` and ``seqreset`` have no HTX meaning (no checksum; no documented id restart): counted,
  nothing changes.

REST (``{"status":"ok",...}``; errors ``{"status":"error","err-code","err-msg","data":null}`` with HTTP 200 as
HTX answers them; requests beyond ``rules.rest_weight_limit`` per ``rules.rest_window_s`` per IP => HTTP 429 with
``err-code`` ``rate-too-many-requests``; every answer carries ``X-HB-RateLimit-Requests-Remain`` and
``X-HB-RateLimit-Requests-Expire`` (epoch ms of the window end)):

- spot: ``/v1/common/timestamp``, ``/v1/common/symbols`` (the served symbols as recorded in
  ``cryptofeed_htx_HUOBI.0.gz``), ``/v2/reference/currencies`` (their assets, one chain each: ccxt's
  ``load_markets`` reads it), ``/market/depth?symbol=&type=step0[&depth=5|10|20]`` (150 levels by default),
  ``/market/history/trade?symbol=&size=`` (newest first, 1..2000), ``/market/detail/merged?symbol=``,
  ``/market/tickers``;
- contracts: ``/api/v1/timestamp``, ``/linear-swap-api/v1/swap_contract_info`` (served swaps as recorded in
  ``cryptofeed_htx_HUOBI_SWAP.0.gz``), ``/swap-api/v1/swap_contract_info`` (recorded inverse swaps) and
  ``/api/v1/contract_contract_info`` (one dated future): listings only, served because ccxt's ``load_markets``
  refuses an empty list; ``/linear-swap-ex/market/depth``, ``/linear-swap-ex/market/history/trade``,
  ``/linear-swap-ex/market/detail/merged``.
"""

from __future__ import annotations

import gzip
import json
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, ClassVar

import msgspec
from aiohttp import web

from cryptolink import recordings
from cryptolink.simulator.config import ExchangeRules
from cryptolink.simulator.faults import Fault
from cryptolink.simulator.market import Bbo, Depth, Event, MarketSource, SyntheticSource, Trade
from cryptolink.simulator.okx import ContractSyntheticSource
from cryptolink.simulator.ratelimit import WindowCounter
from cryptolink.simulator.registry import ServerSpec, register
from cryptolink.simulator.server import ExchangeServer, SimConnection

__all__ = ["DEFAULT_SYMBOLS", "HOSTS", "HTX_RULES", "LEVELS", "HtxServer"]

_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder()

#: Real base URLs: spot REST and WebSocket (``api.huobi.pro``, AWS ``api-aws.huobi.pro``), contracts
#: (``api.hbdm.com``, and ``api.hbdm.vn`` which ccxt uses by default).
HOSTS = (
    "https://api.huobi.pro",
    "https://api-aws.huobi.pro",
    "https://api.hbdm.com",
    "https://api.hbdm.vn",
    "wss://api.huobi.pro",
    "wss://api-aws.huobi.pro",
    "wss://api.hbdm.com",
    "wss://api.hbdm.vn",
)
#: spot ``btcusdt``/``ethusdt``, linear swaps ``BTC-USDT``/``ETH-USDT``
DEFAULT_SYMBOLS = ("btcusdt", "ethusdt", "BTC-USDT", "ETH-USDT")
#: book depth of ``mbp.150`` and ``depth.size_150.high_freq``
LEVELS = 150
#: ``{"ping"}`` every 5 s, closed after two unanswered (10 s) ("Heartbeat and Connection" of the spot WebSocket
#: docs); 50 inbound msgs/s (undocumented: our choice); REST 120 requests per 3 s per IP (our conservative reading,
#: docs/protocols/htx.md "REST").
HTX_RULES = ExchangeRules(
    ping_interval_s=5.0,
    pong_timeout_s=10.0,
    max_in_msgs_per_s=50,
    rest_weight_limit=120,
    rest_window_s=3.0,
)
_PUSH_S = 0.1
_REQ_MIN_GAP_S = 0.1
_SPOT_WS_KINDS = ("trade.detail", "bbo", "ticker", "detail")
#: ``/feed`` book topics: 5 and 20 levels tick by tick, 150 and 400 every 100 ms; ``req`` serves all but 400
_MBP_KINDS = ("mbp.5", "mbp.20", "mbp.150", "mbp.400")
_MBP_TICK_BY_TICK = ("mbp.5", "mbp.20")
_MBP_PERIODIC = ("mbp.150", "mbp.400")
_MBP_REQ = ("mbp.5", "mbp.20", f"mbp.{LEVELS}")
#: swap incremental depth topics (sizes 20 and 150), each with its own ``version`` counter
_SWAP_BOOK_KINDS = ("depth.size_20.high_freq", f"depth.size_{LEVELS}.high_freq")
_SWAP_KINDS = ("trade.detail", "bbo", "detail", *_SWAP_BOOK_KINDS)
#: share of trades held back to go out with the next trade of the symbol (or at the next 100 ms tick): real
#: ``trade.detail`` pushes often carry several trades (spot lists them newest first)
_HOLD_TRADE_P = 0.4
#: gzip frames kept for reuse: a frame queued to many connections is compressed once
_GZIP_CACHE = 256
_FUTURE = {
    "symbol": "BTC", "contract_code": "BTC251226", "contract_type": "quarter", "contract_size": 100,
    "price_tick": 0.01, "delivery_date": "20251226", "delivery_time": "1766736000000", "create_date": "20250613",
    "contract_status": 1, "settlement_time": "1766736000000",
}  # fmt: skip


def _dumps(obj: Any) -> str:
    return _enc.encode(obj).decode()


def _num(text: str) -> msgspec.Raw:
    """A price or size string sent as a JSON number (HTX sends numbers), digits as they are."""
    return msgspec.Raw(text.encode())


def _is_swap(symbol: str) -> bool:
    return "-" in symbol


@lru_cache(maxsize=4)
def _recorded(name: str, url_part: str) -> list[dict[str, Any]]:
    for rec in recordings.iter_cryptofeed_http(name):
        if url_part in rec.url:
            data: list[dict[str, Any]] = json.loads(rec.body)["data"]
            return data
    return []


@dataclass
class _View:
    """One book topic's view as last pushed: its top levels per side (price -> size strings) and its id."""

    seq: int
    bids: dict[str, str] = field(default_factory=dict)
    asks: dict[str, str] = field(default_factory=dict)


def _depth_of(kind: str) -> int:
    """The depth of book topic kind ``mbp.20`` / ``depth.size_20.high_freq``."""
    return int(kind[4:]) if kind.startswith("mbp.") else int(kind.split(".")[1][5:])


def _diff(
    old: dict[str, str], new: dict[str, str], best_first: Callable[[str], float]
) -> list[list[msgspec.Raw]]:
    out = [[_num(p), _num("0")] for p in old if p not in new]
    out += [[_num(p), _num(q)] for p, q in new.items() if old.get(p) != q]
    out.sort(key=lambda lv: best_first(bytes(lv[0]).decode()))
    return out


def _bid_key(p: str) -> float:
    return -float(p)


def _levels(side: dict[str, str]) -> list[list[msgspec.Raw]]:
    return [[_num(p), _num(q)] for p, q in side.items()]


class _Feed:
    """Push state of one symbol: one view per book topic, the last BBO/statistics pushed, trades held for a
    batched push."""

    def __init__(self, server: HtxServer, symbol: str, src: MarketSource) -> None:
        self.server = server
        self.symbol = symbol
        self.src = src
        self.swap = _is_swap(symbol)
        self.book_kinds = _SWAP_BOOK_KINDS if self.swap else _MBP_KINDS
        self.views = {kind: self._view_now(kind) for kind in self.book_kinds}
        self.versions = dict.fromkeys(self.book_kinds, 1)  # swap depth: +1 per push of that topic
        self.top: tuple[str, str, str, str] | None = None
        self.stats_dirty = True
        self.held: list[Trade] = []  # trades of the next batched trade.detail push

    @property
    def view(self) -> _View:
        """The view of the 150-level topic (``mbp.150`` / ``depth.size_150.high_freq``)."""
        return self.views[f"depth.size_{LEVELS}.high_freq" if self.swap else f"mbp.{LEVELS}"]

    @property
    def version(self) -> int:
        """The swap 150-level topic's current ``version``."""
        return self.versions[f"depth.size_{LEVELS}.high_freq"]

    def _view_now(self, kind: str) -> _View:
        bids, asks = self.src.book.top(_depth_of(kind))
        return _View(self.src.last_update_id, dict(bids), dict(asks))

    def topic(self, kind: str) -> str:
        return f"market.{self.symbol}.{kind}"

    def conns(self, kind: str) -> set[SimConnection]:
        return self.server.subs.get(self.topic(kind), set())

    def on_event(self, ev: Event) -> None:
        if isinstance(ev, Trade):
            self.stats_dirty = True
            if self.conns("trade.detail"):
                self.held.append(ev)
                if self.server.batch_rng.random() >= _HOLD_TRADE_P:  # else: goes out with the next trade
                    self.flush_trades()
            else:
                self.held.clear()
        elif isinstance(ev, (Depth, Bbo)):
            if isinstance(ev, Depth) and not self.swap:
                for kind in _MBP_TICK_BY_TICK:  # 5/20 levels: every change of the view, at once
                    conns = self.conns(kind)
                    if conns:
                        self.push_book(conns, kind, ev.ts_ms, tick_by_tick=True)
            bids, asks = self.src.book.top(1)
            if bids and asks:
                top = (bids[0][0], bids[0][1], asks[0][0], asks[0][1])
                if top != self.top:
                    self.top = top
                    self.stats_dirty = True
                    conns = self.conns("bbo")
                    if conns:
                        self.server.send_bbo(conns, self, top, ev.ts_ms)

    def flush_trades(self) -> None:
        held, self.held = self.held, []
        conns = self.conns("trade.detail")
        if held and conns:
            self.server.send_trades(conns, self, held)

    def tick(self, ts_ms: int) -> None:
        """Every 100 ms: held trades, the 100 ms book diffs (spot mbp.150/400, swap depth) and 24 h statistics."""
        if self.held:
            self.flush_trades()
        for kind in _SWAP_BOOK_KINDS if self.swap else _MBP_PERIODIC:
            conns = self.conns(kind)
            if conns and self.src.last_update_id != self.views[kind].seq:
                self.push_book(conns, kind, ts_ms)
        if self.stats_dirty:
            stats = self.conns("detail") | self.conns("ticker")
            if stats:
                self.stats_dirty = False
                self.server.send_stats(stats, self, ts_ms)

    def advance(self, kind: str) -> tuple[list[list[msgspec.Raw]], list[list[msgspec.Raw]], int]:
        """Move ``kind``'s view to the book now: ``(bid diff, ask diff, previous seq)``."""
        view = self.views[kind]
        now = self._view_now(kind)
        db = _diff(view.bids, now.bids, _bid_key)
        da = _diff(view.asks, now.asks, float)
        self.views[kind] = now
        return db, da, view.seq

    def push_book(
        self, conns: set[SimConnection], kind: str, ts_ms: int, *, tick_by_tick: bool = False
    ) -> None:
        """Push ``kind``'s diff since its last push. Tick by tick (mbp.5/20): only when the view changed, and a
        side that did not change is left out (the 5-level announcement)."""
        db, da, prev = self.advance(kind)
        if tick_by_tick and not db and not da:
            self.views[kind].seq = prev  # nothing to push: the chain stays at the last push
            return
        ch = self.topic(kind)
        view = self.views[kind]
        if self.swap:
            self.versions[kind] += 1
            ident = self.versions[kind]
            tick: dict[str, Any] = {"mrid": view.seq, "id": ts_ms // 1000, "bids": db, "asks": da, "ts": ts_ms,
                                    "version": ident, "ch": ch, "event": "update"}  # fmt: skip
        else:
            ident = view.seq
            tick = {"seqNum": ident, "prevSeqNum": prev}
            if db or not tick_by_tick:
                tick["bids"] = db
            if da or not tick_by_tick:
                tick["asks"] = da
        text = _dumps({"ch": ch, "ts": ts_ms, "tick": tick})
        snap_text: str | None = None
        for conn in tuple(conns):
            if self.swap and conn.subscriptions.get(ch) == "snapshot":
                if snap_text is None:
                    snap_text = self.swap_snapshot(kind, ts_ms)
                conn.send_data(snap_text, ch, ident, ts_ms)
                continue
            if conn.take_gap(self.symbol):
                conn.note_skipped(ch)
                continue
            conn.send_data(text, ch, ident, ts_ms)

    def swap_snapshot(self, kind: str, ts_ms: int) -> str:
        ch = self.topic(kind)
        view = self.views[kind]
        tick = {"mrid": view.seq, "id": ts_ms // 1000, "bids": _levels(view.bids), "asks": _levels(view.asks),
                "ts": ts_ms, "version": self.versions[kind], "ch": ch, "event": "snapshot"}  # fmt: skip
        return _dumps({"ch": ch, "ts": ts_ms, "tick": tick})


class HtxServer(ExchangeServer):
    """HTX spot and USDT-margined swaps; see the module doc."""

    inert_faults: ClassVar[frozenset[str]] = frozenset({"notice", "badchecksum", "seqreset"})

    name = "htx"
    uses_replay_files = False
    hosts: ClassVar[tuple[str, ...]] = HOSTS
    binary_frames: ClassVar[bool] = True

    @classmethod
    def trade_stream_key(cls, native: str) -> str:
        return f"market.{native}.trade.detail"

    @classmethod
    def book_stream_prefix(cls, native: str) -> str:
        return f"market.{native}.depth." if _is_swap(native) else f"market.{native}.mbp."

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.subs: dict[str, set[SimConnection]] = {}
        self._feeds: dict[str, _Feed] = {}
        self._last_req: dict[int, float] = {}  # connection id -> time of its last accepted ``req``
        self.batch_rng = random.Random(f"{self.seed}:htx-trade-batches")
        self._gzipped: dict[int, tuple[str, bytes]] = {}  # id(text) -> (text, its gzip frame)
        limit, window = self.rest_limit_override or (self.rules.rest_weight_limit, self.rules.rest_window_s)
        self.limiter = WindowCounter({"ip": limit}, window, self.clock)
        self.on_tick(_PUSH_S, self._tick)

    def encode_frame(self, text: str) -> bytes:
        """Every server frame is gzip-compressed (level 1: fast, as the stream needs). A frame queued to many
        connections is the same ``str`` object on each: the last :data:`_GZIP_CACHE` frames are kept by
        identity (the text is held too, so its id cannot be reused meanwhile) and compressed once."""
        cache = self._gzipped
        hit = cache.get(id(text))
        if hit is not None and hit[0] is text:
            return hit[1]
        data = gzip.compress(text.encode(), 1)
        if len(cache) >= _GZIP_CACHE:
            del cache[next(iter(cache))]
        cache[id(text)] = (text, data)
        return data

    def make_market_source(self, symbol: str) -> MarketSource:
        cls = ContractSyntheticSource if _is_swap(symbol) else SyntheticSource
        return cls(symbol.replace("-", "").upper(), seed=self.seed, rate_hz=self.config.synthetic_rate_hz)

    def attach_source(self, symbol: str, src: MarketSource) -> None:
        feed = _Feed(self, symbol, src)
        self._feeds[symbol] = feed
        src.listeners.append(feed.on_event)

    def _tick(self, ts_ms: int) -> None:
        for feed in list(self._feeds.values()):
            feed.tick(ts_ms)

    def contract_size(self, code: str) -> float:
        for c in self.linear_contracts():
            if c["contract_code"] == code:
                return float(c["contract_size"])
        return 1.0

    # ---- sending ----
    def send_trades(self, conns: set[SimConnection], feed: _Feed, trades: list[Trade]) -> None:
        """One ``trade.detail`` push of ``trades`` (oldest first as given): spot lists them newest first, swaps
        oldest first. Stream stats count trades: the push is recorded once per trade id, in id order."""
        cs = self.contract_size(feed.symbol) if feed.swap else 1.0
        items: list[dict[str, Any]] = []
        for t in trades:
            item: dict[str, Any] = {"ts": t.ts_ms, "amount": _num(t.qty), "price": _num(t.price),
                                    "direction": "sell" if t.buyer_maker else "buy"}  # fmt: skip
            if feed.swap:  # swaps: ``id`` is the trade id, ``quantity`` the base amount
                qty = float(t.qty) * cs
                item.update(id=t.trade_id, quantity=qty, trade_turnover=qty * float(t.price))
            else:  # spot: ``tradeId``, and a long unique ``id``
                item.update(id=_num(f"{t.trade_id}{t.ts_ms % 10**15:015d}"), tradeId=t.trade_id)
            items.append(item)
        if not feed.swap:
            items.reverse()
        newest = trades[-1]
        ch = feed.topic("trade.detail")
        text = _dumps({"ch": ch, "ts": newest.ts_ms, "tick": {"id": newest.trade_id, "ts": newest.ts_ms,
                                                              "data": items}})  # fmt: skip
        for conn in tuple(conns):
            conn.send_data(text, ch, trades[0].trade_id, newest.ts_ms)
            st = conn.streams.get(ch)
            if len(trades) > 1 and st is not None and st.last_id == trades[0].trade_id:  # queued, not stalled
                for t in trades[1:]:  # the rest of the push, as if each trade had its own frame
                    st.frames += 1
                    st.last_id = t.trade_id
                    self.count_frame(ch)
                    conn.recent.append((t.ts_ms, ch, t.trade_id))

    def send_bbo(
        self, conns: set[SimConnection], feed: _Feed, top: tuple[str, str, str, str], ts_ms: int
    ) -> None:
        bid, bq, ask, aq = top
        ch = feed.topic("bbo")
        seq = feed.src.last_update_id
        if feed.swap:
            tick: dict[str, Any] = {"mrid": seq, "id": ts_ms // 1000, "bid": [_num(bid), _num(bq)],
                                    "ask": [_num(ask), _num(aq)], "ts": ts_ms, "version": seq, "ch": ch}  # fmt: skip
        else:
            tick = {"seqId": seq, "ask": _num(ask), "askSize": _num(aq), "bid": _num(bid), "bidSize": _num(bq),
                    "quoteTime": ts_ms, "symbol": feed.symbol}  # fmt: skip
        text = _dumps({"ch": ch, "ts": ts_ms, "tick": tick})
        for conn in tuple(conns):
            conn.send_data(text, ch, seq, ts_ms)

    def stats_of(self, feed: _Feed, ts_ms: int) -> dict[str, Any]:
        """24 h statistics of ``feed``'s market (``detail``/``ticker``/``detail/merged`` fields)."""
        src = feed.src
        last, open_ = src.last_price, src.open_price if src.open_price != "0" else src.last_price
        hi, lo = max(last, open_, key=float), min(last, open_, key=float)
        trades = len(src.trades)
        amount = f"{src.volume:.8f}"
        return {
            "id": ts_ms // 1000, "open": _num(open_), "close": _num(last), "high": _num(hi), "low": _num(lo),
            "amount": _num(amount), "vol": _num(f"{src.volume * float(last):.8f}"), "count": trades,
            "version": src.last_update_id,
        }  # fmt: skip

    def send_stats(self, conns: set[SimConnection], feed: _Feed, ts_ms: int) -> None:
        base = self.stats_of(feed, ts_ms)
        bids, asks = feed.src.book.top(1)
        newest = feed.src.trades.select(1, newest=True)
        for kind in ("detail", "ticker"):
            targets = feed.conns(kind)
            if not targets:
                continue
            tick = dict(base)
            if kind == "ticker" and bids and asks:
                tick.update(bid=_num(bids[0][0]), bidSize=_num(bids[0][1]), ask=_num(asks[0][0]),
                            askSize=_num(asks[0][1]), lastPrice=_num(feed.src.last_price),
                            lastSize=_num(newest[0].qty if newest else "0"))  # fmt: skip
            ch = feed.topic(kind)
            text = _dumps({"ch": ch, "ts": ts_ms, "tick": tick})
            for conn in tuple(targets):
                conn.send_data(text, ch, None, ts_ms)

    def inject(self, fault: Fault, connection: int | None = None) -> None:
        """As the base, except ``seqreset``: HTX documents no sequence restart, so it is counted and ignored."""
        if fault.kind == "seqreset":
            self.faults_injected["seqreset"] = self.faults_injected.get("seqreset", 0) + 1
            return
        super().inject(fault, connection)

    def send_notice(self, conn: SimConnection) -> None:
        """HTX has no close announcement: nothing is sent."""

    async def send_ping(self, conn: SimConnection, ts_ms: int) -> None:
        conn.send_ctrl(_dumps({"ping": ts_ms}))

    # ---- WebSocket ----
    def setup_routes(self, app: web.Application) -> None:
        for path in ("/ws", "/feed", "/linear-swap-ws"):
            app.router.add_get(path, self._ws_handler)
        for path, handler in (
            ("/v1/common/timestamp", self._rest_spot_time),
            ("/v1/common/symbols", self._rest_symbols),
            ("/v2/reference/currencies", self._rest_currencies),
            ("/market/depth", self._rest_depth),
            ("/market/history/trade", self._rest_history),
            ("/market/detail/merged", self._rest_merged),
            ("/market/tickers", self._rest_tickers),
            ("/api/v1/timestamp", self._rest_contract_time),
            ("/linear-swap-api/v1/swap_contract_info", self._rest_linear_info),
            ("/swap-api/v1/swap_contract_info", self._rest_inverse_info),
            ("/api/v1/contract_contract_info", self._rest_future_info),
            ("/linear-swap-ex/market/depth", self._rest_depth),
            ("/linear-swap-ex/market/history/trade", self._rest_history),
            ("/linear-swap-ex/market/detail/merged", self._rest_merged),
        ):
            app.router.add_get(path, handler)

    async def _ws_handler(self, request: web.Request) -> web.StreamResponse:
        ws, conn = await self.accept(request)
        await conn.serve()
        for key in list(conn.subscriptions):
            self._drop(conn, key)
        self._last_req.pop(conn.conn_id, None)
        return ws

    def _drop(self, conn: SimConnection, key: str) -> None:
        conn.subscriptions.pop(key, None)
        subs = self.subs.get(key)
        if subs is not None:
            subs.discard(conn)
            if not subs:
                del self.subs[key]

    def _error(self, conn: SimConnection, msg: str, req_id: Any, code: str = "bad-request") -> None:
        out: dict[str, Any] = {"id": req_id} if req_id is not None else {}
        out.update(status="error", ts=self.clock.time_ns() // 1_000_000)
        out["err-code"] = code
        out["err-msg"] = msg
        conn.send_ctrl(_dumps(out))

    def _valid(self, route: str, topic: str) -> tuple[str, str] | str:
        """``(symbol, kind)`` of a topic served on ``route``, or the error message."""
        parts = topic.split(".", 2)
        if len(parts) < 3 or parts[0] != "market":
            return f"invalid topic {topic}"
        symbol, kind = parts[1], parts[2]
        if route == "/linear-swap-ws":
            ok = kind in _SWAP_KINDS
        elif route == "/feed":
            ok = kind in _MBP_KINDS
        else:
            ok = kind in _SPOT_WS_KINDS
        if not ok:
            return f"invalid topic {topic}"
        if symbol not in self.symbols or _is_swap(symbol) != (route == "/linear-swap-ws"):
            return f"invalid symbol {symbol}"
        return symbol, kind

    async def on_text(self, conn: SimConnection, text: str) -> None:
        try:
            msg = _dec.decode(text)
        except msgspec.DecodeError:
            self._error(conn, "not json string", None)
            return
        if not isinstance(msg, dict):
            self._error(conn, "not json string", None)
            return
        if "pong" in msg:
            conn.pongs_received += 1
            if self.clock.monotonic() >= conn.noping_until:
                conn.ping_outstanding_since = None
                conn.wake.set()
            self.notify()
            return
        req_id = msg.get("id")
        if isinstance(msg.get("req"), str):
            self._req(conn, msg["req"], req_id)
            return
        op = (
            "sub"
            if isinstance(msg.get("sub"), str)
            else "unsub"
            if isinstance(msg.get("unsub"), str)
            else None
        )
        if op is None:
            self._error(conn, f"invalid request {text[:200]}", req_id)
            return
        topic: str = msg[op]
        if op == "sub" and conn.reject_next:
            conn.reject_next = False
            self._error(conn, f"invalid topic {topic} (simulated fault)", req_id)
            return
        valid = self._valid(conn.route, topic)
        if isinstance(valid, str):
            self._error(conn, valid, req_id)
            return
        symbol, kind = valid
        now_ms = self.clock.time_ns() // 1_000_000
        conn.last_activity = self.clock.monotonic()
        if op == "unsub":
            if topic not in conn.subscriptions:
                self._error(conn, f"unsub with not subbed topic {topic}", req_id)
                return
            conn.send_ctrl(_dumps({"id": req_id, "status": "ok", "unsubbed": topic, "ts": now_ms}))
            self._drop(conn, topic)
            self.notify()
            return
        conn.send_ctrl(_dumps({"id": req_id, "status": "ok", "subbed": topic, "ts": now_ms}))
        src = self.source(symbol)
        assert src is not None
        feed = self._feeds[symbol]
        if topic not in conn.subscriptions:
            if kind.startswith(("mbp.", "depth.")) and not self.subs.get(topic):
                feed.advance(kind)  # the first book subscriber: the view follows the book from now on
            data_type = msg.get("data_type") if kind.startswith("depth.") else None
            conn.subscriptions[topic] = data_type if data_type in ("incremental", "snapshot") else True
            self.subs.setdefault(topic, set()).add(conn)
            if kind.startswith("depth."):  # swaps: the first push is a snapshot of the view
                conn.send_data(feed.swap_snapshot(kind, now_ms), topic, feed.versions[kind], now_ms)
            elif kind == "bbo" and feed.top is not None:
                self.send_bbo({conn}, feed, feed.top, now_ms)
        self.notify()

    def _req(self, conn: SimConnection, topic: str, req_id: Any) -> None:
        """``req`` of an mbp topic on ``/feed``: at most one per 100 ms per connection (whatever the topics; a
        faster one is answered ``429 too many request``); ``mbp.400`` has no ``req`` (``invalid topic``)."""
        now = self.clock.monotonic()
        if now - self._last_req.get(conn.conn_id, -math.inf) < _REQ_MIN_GAP_S:
            self._error(conn, "429 too many request", req_id)
            return
        self._last_req[conn.conn_id] = now
        valid = self._valid(conn.route, topic) if conn.route == "/feed" else f"invalid topic {topic}"
        if not isinstance(valid, str) and valid[1] not in _MBP_REQ:
            valid = f"invalid topic {topic}"
        if isinstance(valid, str):
            self._error(conn, valid, req_id)
            return
        symbol, kind = valid
        self.source(symbol)
        feed = self._feeds[symbol]
        if not self.subs.get(topic):  # nobody holds the pushed view: it follows the book now
            feed.advance(kind)
        view = feed.views[kind]
        data = {"seqNum": view.seq, "bids": _levels(view.bids), "asks": _levels(view.asks)}
        rep = {
            "id": req_id,
            "rep": topic,
            "status": "ok",
            "ts": self.clock.time_ns() // 1_000_000,
            "data": data,
        }
        conn.send_ctrl(_dumps(rep))

    # ---- REST ----
    def _answer(self, body: Any, status: int = 200) -> web.Response:
        resp = web.Response(text=_dumps(body), status=status, content_type="application/json")
        limiter = self.limiter
        now = self.clock.monotonic()
        start, used = limiter._counts.get("ip", (now, 0))
        if start != math.floor(now / limiter.window_s) * limiter.window_s:
            used = 0
        left_ms = int((math.floor(now / limiter.window_s) + 1) * limiter.window_s * 1000 - now * 1000)
        resp.headers["X-HB-RateLimit-Requests-Remain"] = str(max(0, limiter.limits["ip"] - used))
        resp.headers["X-HB-RateLimit-Requests-Expire"] = str(self.clock.time_ns() // 1_000_000 + left_ms)
        return resp

    def _limited(self, request: web.Request) -> web.Response | None:
        self.count_rest(request.path, 1)
        verdict = self.limiter.hit("ip")
        if verdict.status == 200:
            return None
        self.count_limited(429)
        body = {
            "status": "error",
            "err-code": "rate-too-many-requests",
            "err-msg": "exceeded rate limit",
            "data": None,
        }
        resp = self._answer(body, 429)
        resp.headers["Retry-After"] = str(verdict.retry_after_s)
        return resp

    def _fail(self, msg: str, code: str = "invalid-parameter") -> web.Response:
        return self._answer({"status": "error", "err-code": code, "err-msg": msg, "data": None})

    def unknown_path(self, request: web.Request, status: int) -> web.Response:
        """HTX-shaped JSON for a path (404) or method (405) not served (our choice: the docs do not show it)."""
        body = {
            "status": "error",
            "err-code": "invalid-request",
            "err-msg": f"{request.method} {request.path}",
            "data": None,
        }
        return web.Response(text=_dumps(body), status=status, content_type="application/json")

    def _ok(self, **kw: Any) -> web.Response:
        return self._answer({"status": "ok", **kw})

    def _symbol(self, request: web.Request) -> tuple[str, _Feed] | None:
        contract = request.path.startswith("/linear-swap-ex/")
        symbol = request.query.get("contract_code" if contract else "symbol", "")
        if symbol not in self.symbols or _is_swap(symbol) != contract:
            return None
        self.source(symbol)
        return symbol, self._feeds[symbol]

    async def _rest_spot_time(self, request: web.Request) -> web.Response:
        return self._limited(request) or self._ok(data=self.clock.time_ns() // 1_000_000)

    async def _rest_contract_time(self, request: web.Request) -> web.Response:
        return self._limited(request) or self._ok(ts=self.clock.time_ns() // 1_000_000)

    async def _rest_symbols(self, request: web.Request) -> web.Response:
        limited = self._limited(request)
        if limited:
            return limited
        recorded = {s["symbol"]: s for s in _recorded("cryptofeed_htx_HUOBI.0.gz", "/v1/common/symbols")}
        template = recorded["btcusdt"]
        out = []
        for sym in self.symbols:
            if _is_swap(sym):
                continue
            entry = recorded.get(sym)
            if entry is None:
                base = sym[:-4] if sym.endswith("usdt") else sym[:-3]
                entry = dict(
                    template, symbol=sym, **{"base-currency": base, "quote-currency": sym[len(base) :]}
                )
            out.append(dict(entry, state="online"))
        return self._ok(data=out)

    async def _rest_currencies(self, request: web.Request) -> web.Response:
        """``/v2/reference/currencies`` (ccxt's ``load_markets`` reads it): the served spot assets, one chain each,
        in the v2 shape ``{"code":200,"data":[{"currency","assetType","chains":[..],"instStatus"}]}``."""
        limited = self._limited(request)
        if limited:
            return limited
        assets: dict[str, None] = {}
        for sym in self.symbols:
            if not _is_swap(sym):
                quote = "usdt" if sym.endswith("usdt") else sym[-3:]
                assets.update({sym[: -len(quote)]: None, quote: None})
        data = [
            {"currency": a, "assetType": 1, "instStatus": "normal", "chains": [
                {"chain": a, "displayName": a.upper(), "baseChain": a.upper(), "depositStatus": "allowed",
                 "withdrawStatus": "allowed", "minDepositAmt": "0.0001", "minWithdrawAmt": "0.001",
                 "maxWithdrawAmt": "1000", "transactFeeWithdraw": "0.0005", "withdrawPrecision": 8}]}
            for a in assets
        ]  # fmt: skip
        return self._answer({"code": 200, "data": data})

    def linear_contracts(self) -> list[dict[str, Any]]:
        """The served swaps as recorded (a missing one cloned from BTC-USDT)."""
        recorded = {
            c["contract_code"]: c for c in _recorded("cryptofeed_htx_HUOBI_SWAP.0.gz", "/linear-swap-api/")
        }
        out = []
        for sym in self.symbols:
            if not _is_swap(sym):
                continue
            entry = recorded.get(sym)
            if entry is None:
                base = sym.split("-")[0]
                entry = dict(recorded["BTC-USDT"], symbol=base, contract_code=sym, pair=sym)
            out.append(dict(entry, contract_status=1))
        return out

    async def _rest_linear_info(self, request: web.Request) -> web.Response:
        limited = self._limited(request)
        if limited:
            return limited
        kind = request.query.get("business_type", "swap")
        data = [c for c in self.linear_contracts() if kind in ("all", c.get("business_type", "swap"))]
        return self._ok(data=data, ts=self.clock.time_ns() // 1_000_000)

    async def _rest_inverse_info(self, request: web.Request) -> web.Response:
        limited = self._limited(request)
        if limited:
            return limited
        data = [
            c
            for c in _recorded("cryptofeed_htx_HUOBI_SWAP.0.gz", "/swap-api/")
            if c["contract_code"] in ("BTC-USD", "ETH-USD")
        ]
        return self._ok(data=data, ts=self.clock.time_ns() // 1_000_000)

    async def _rest_future_info(self, request: web.Request) -> web.Response:
        return self._limited(request) or self._ok(data=[_FUTURE], ts=self.clock.time_ns() // 1_000_000)

    async def _rest_depth(self, request: web.Request) -> web.Response:
        limited = self._limited(request)
        if limited:
            return limited
        found = self._symbol(request)
        if found is None:
            return self._fail("invalid symbol")
        symbol, feed = found
        kind = request.query.get("type", "")
        steps = [f"step{i}" for i in range(16 if feed.swap else 6)]
        if kind not in steps:
            return self._fail("invalid type")
        depth_raw = request.query.get("depth", "")
        if depth_raw and depth_raw not in ("5", "10", "20"):
            return self._fail("invalid depth")
        # swaps: step6..step13 are the 20-level book (aggregation steps are not simulated: prices as they are)
        depth = int(depth_raw) if depth_raw else 20 if kind in steps[6:14] else LEVELS
        bids, asks = feed.src.book.top(depth)
        ts = self.clock.time_ns() // 1_000_000
        ch = f"market.{symbol}.depth.step0"
        tick: dict[str, Any] = {"ts": ts, "version": feed.src.last_update_id,
                                "bids": [[_num(p), _num(q)] for p, q in bids],
                                "asks": [[_num(p), _num(q)] for p, q in asks]}  # fmt: skip
        if feed.swap:
            tick.update(ch=ch, id=ts // 1000, mrid=feed.src.last_update_id)
        return self._ok(ch=ch, ts=ts, tick=tick)

    async def _rest_history(self, request: web.Request) -> web.Response:
        limited = self._limited(request)
        if limited:
            return limited
        found = self._symbol(request)
        if found is None:
            return self._fail("invalid symbol")
        symbol, feed = found
        raw = request.query.get("size", "1")
        if not raw.isdigit() or not 1 <= int(raw) <= 2000:
            return self._fail("invalid size, valid range: [1, 2000]")
        groups = []
        cs = self.contract_size(symbol) if feed.swap else 1.0
        for t in reversed(feed.src.trades.select(int(raw), newest=True)):
            item: dict[str, Any] = {"id": t.trade_id, "ts": t.ts_ms, "amount": _num(t.qty), "price": _num(t.price),
                                    "direction": "sell" if t.buyer_maker else "buy"}  # fmt: skip
            if feed.swap:
                item.update(quantity=float(t.qty) * cs, trade_turnover=float(t.qty) * cs * float(t.price))
            else:
                item["trade-id"] = t.trade_id
                item["id"] = _num(f"{t.trade_id}{t.ts_ms % 10**15:015d}")
            groups.append({"id": t.trade_id, "ts": t.ts_ms, "data": [item]})
        ts = self.clock.time_ns() // 1_000_000
        return self._ok(ch=f"market.{symbol}.trade.detail", ts=ts, data=groups)

    async def _rest_merged(self, request: web.Request) -> web.Response:
        limited = self._limited(request)
        if limited:
            return limited
        found = self._symbol(request)
        if found is None:
            return self._fail("invalid symbol")
        symbol, feed = found
        ts = self.clock.time_ns() // 1_000_000
        tick = self.stats_of(feed, ts)
        bids, asks = feed.src.book.top(1)
        if bids:
            tick["bid"] = [_num(bids[0][0]), _num(bids[0][1])]
        if asks:
            tick["ask"] = [_num(asks[0][0]), _num(asks[0][1])]
        tick["ts"] = ts
        return self._ok(ch=f"market.{symbol}.detail.merged", ts=ts, tick=tick)

    async def _rest_tickers(self, request: web.Request) -> web.Response:
        limited = self._limited(request)
        if limited:
            return limited
        ts = self.clock.time_ns() // 1_000_000
        out = []
        for sym in self.symbols:
            if _is_swap(sym):
                continue
            self.source(sym)
            feed = self._feeds[sym]
            item = self.stats_of(feed, ts)
            bids, asks = feed.src.book.top(1)
            item.pop("id")
            item.pop("version")
            item.update(symbol=sym)
            if bids and asks:
                item.update(bid=_num(bids[0][0]), bidSize=_num(bids[0][1]), ask=_num(asks[0][0]),
                            askSize=_num(asks[0][1]))  # fmt: skip
            out.append(item)
        return self._ok(ts=ts, data=out)


register(ServerSpec("htx", HtxServer, port_offset=7, rules=HTX_RULES, symbols=DEFAULT_SYMBOLS))
