"""Simulated Bybit v5 public market data: WebSocket ``/v5/public/{spot,linear,inverse}`` and the public REST
market endpoints, on one port. Facts and official sources: ``docs/protocols/bybit.md`` (pages under
https://bybit-exchange.github.io/docs/v5/).

Served symbols (``SimConfig.symbols["bybit"]``, default :data:`DEFAULT_SYMBOLS`) are written ``BTCUSDT`` (spot),
``linear/BTCUSDT`` (USDT perpetual) and ``inverse/BTCUSD`` (inverse perpetual): one market source each. The spot and
linear symbols of :data:`REPLAYED` replay the real level-1 pushes of the shipped v5 recordings
(``cryptofeed_bybit_BYBIT.ws.{1,2}.0.gz``, bmoscon/cryptofeed sample data, 2025-06, linear and spot
``orderbook.1``), looped, with the simulator's own update ids (one per change) and times; they have no trades.
Every other symbol is a seeded synthetic market (:class:`~cryptolink.simulator.market.SyntheticSource`, about 50
levels per side, trades); inverse sizes are whole contracts of 1 USD.

WebSocket (https://bybit-exchange.github.io/docs/v5/ws/connect): requests
``{"req_id"?,"op":"subscribe"|"unsubscribe"|"ping","args":[topics]}``; one answer per request:
spot ``{"success":true,"ret_msg":"subscribe","conn_id":..,"req_id"?,"op":"subscribe"}``, linear/inverse
``{"success":true,"ret_msg":"","conn_id":..,"req_id":"","op":"subscribe"}`` (``req_id`` echoed, ``""`` when
absent); pong ``{"success":true,"ret_msg":"pong","conn_id":..,"req_id"?,"op":"ping"}``. A refused request answers
``success:false`` with ``ret_msg`` ``Invalid symbol :[<topic>,..]`` (a known topic for a symbol not served; the
shape client libraries observe, not in the docs), ``error:handler not found,topic:<topic>`` (unknown topic),
``args size >10`` (more than 10 args in one spot request), ``args length >21000`` (the args of one connection
beyond 21 000 characters) or ``error:already subscribed,topic:<topic>``; other topics of the request are still served. A connection with neither ping-pong nor pushed data for
``idle_close_s`` (600 s: "the connection will be cut off after 10 minutes") is closed.

Topics: ``publicTrade.{sym}`` (one push per trade, ``type:"snapshot"``, ``i`` numeric on spot and a UUID on
derivatives, ``S`` taker side); ``orderbook.{1|50|200|1000}.{sym}``: depth 50/200/1000 keep a top-``depth`` view
per symbol and depth: a snapshot of the top ``depth`` levels, then one ``delta`` per book change holding the
difference between the view last pushed and the new one (a level leaving the top N is deleted, a deeper level
entering it is inserted, changes below it are not sent); ``u`` = the source's update id (+1 per change, shared by
the depths, so a change below the top N is a delta without levels and ``u`` stays +1 between deltas); after a
``seqreset`` fault (Bybit's service restart) the next change goes out as a snapshot with ``u = 1``. Depth 1
(snapshots only, as documented) pushes the best level whenever that top-1 view changes (its own ``u``, +1 per
change) and again every 3 s unchanged with the same ``u``. ``tickers.{sym}``: linear/inverse send a snapshot then
every 100 ms a ``delta`` with the changed fields only (``cs`` cross sequence); spot sends snapshots (at most every
50 ms when changed). A ``gap`` fault withholds the next book delta. Bybit documents no server notice: the
``notice`` fault sends nothing.

REST (https://bybit-exchange.github.io/docs/v5/market/...): ``/v5/market/time``, ``/v5/market/instruments-info``
(``category`` spot/linear/inverse/option, ``symbol``, ``status``, ``limit`` (default 500, max 1000) and ``cursor``
paging with ``nextPageCursor``), ``/v5/market/orderbook`` (``limit`` default 1 spot / 25 derivatives, max 1000),
``/v5/market/recent-trade`` (newest first; spot default and max 60, derivatives default 500 max 1000),
``/v5/market/tickers``. Every answer is ``{"retCode","retMsg","result","retExtInfo":{},"time"}`` with HTTP 200
(bad parameters: ``retCode`` 10001) and the headers ``X-Bapi-Limit``, ``X-Bapi-Limit-Status`` (remaining) and
``X-Bapi-Limit-Reset-Timestamp``. The IP limit is 600 requests per 5 s window (``rest_weight_limit`` /
``rest_window_s``, or ``--rest-limit``); beyond it HTTP 403 "access too frequent" and every request is refused for
``ban_s`` (600 s: "wait for at least 10 minutes").
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from functools import lru_cache
from typing import Any, ClassVar

import msgspec
from aiohttp import web

from cryptolink import recordings
from cryptolink.simulator.config import ExchangeRules
from cryptolink.simulator.market import Depth, Event, Level, MarketSource, SimBook, SyntheticSource, Trade
from cryptolink.simulator.registry import ServerSpec, register
from cryptolink.simulator.server import ExchangeServer, SimConnection

__all__ = [
    "BYBIT_RULES",
    "CATEGORIES",
    "DEFAULT_SYMBOLS",
    "HOSTS",
    "RECORDINGS",
    "REPLAYED",
    "BybitL1ReplaySource",
    "BybitServer",
    "BybitSyntheticSource",
    "split_served",
]

_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder()

#: No ping-pong and no data for 10 minutes closes a connection (https://bybit-exchange.github.io/docs/v5/ws/connect);
#: 600 requests per 5 s per IP, then HTTP 403 and a ban of at least 10 minutes
#: (https://bybit-exchange.github.io/docs/v5/rate-limit). No inbound message rate is documented.
BYBIT_RULES = ExchangeRules(
    idle_close_s=600.0,
    max_streams=500,
    rest_weight_limit=600,
    rest_window_s=5.0,
    ban_s=600.0,
)
CATEGORIES = ("spot", "linear", "inverse")
#: Real base URLs ccxt and the docs use (https://bybit-exchange.github.io/docs/v5/guide: api.bybit.com,
#: api.bytick.com; ccxt ``bybit`` ``urls.api``; streams: https://bybit-exchange.github.io/docs/v5/ws/connect).
HOSTS = (
    "https://api.bybit.com",
    "https://api.bytick.com",
    "wss://stream.bybit.com",
)
#: The shipped v5 recordings: linear (ws.1) and spot (ws.2) ``orderbook.1`` pushes.
RECORDINGS = {"linear": "cryptofeed_bybit_BYBIT.ws.1.0.gz", "spot": "cryptofeed_bybit_BYBIT.ws.2.0.gz"}
#: Served symbols replaying their recorded level-1 book (see the module doc).
REPLAYED = ("KCSUSDT", "linear/RADUSDT")
DEFAULT_SYMBOLS = (
    "BTCUSDT",
    "ETHUSDT",
    "KCSUSDT",
    "linear/BTCUSDT",
    "linear/ETHUSDT",
    "linear/RADUSDT",
    "inverse/BTCUSD",
    "inverse/ETHUSD",
)
_SPOT_MAX_ARGS = 10
_MAX_ARGS_CHARS = 21_000
_L1_RESEND_S = 3.0
_BOOK_DEPTHS = ("1", "50", "200", "1000")
_TICKER_S = {"spot": 0.05, "linear": 0.1, "inverse": 0.1}


def _dumps(obj: Any) -> str:
    return _enc.encode(obj).decode()


def split_served(served: str) -> tuple[str, str]:
    """``(category, native)`` of a served symbol: ``BTCUSDT`` -> ``("spot", "BTCUSDT")``, ``linear/BTCUSDT`` ->
    ``("linear", "BTCUSDT")``."""
    cat, sep, native = served.partition("/")
    return (cat, native) if sep else ("spot", served)


def _served(category: str, native: str) -> str:
    return native if category == "spot" else f"{category}/{native}"


def _stream_key(category: str, name: str) -> str:
    return name if category == "spot" else f"{category}/{name}"


class BybitSyntheticSource(SyntheticSource):
    """A synthetic market whose update id grows by exactly 1 per book change (Bybit's ``u``); a sequence reset
    restarts it so that the next change has id 1 (a service restart). ``contracts``: whole-contract sizes."""

    def __init__(self, symbol: str, seed: int = 0, rate_hz: float = 50.0, *, contracts: bool = False) -> None:
        self._contracts = contracts
        super().__init__(symbol, seed=seed, rate_hz=rate_hz)

    def _qty(self) -> str:
        return str(self._rng.randint(1, 20_000)) if self._contracts else super()._qty()

    def _pop(self, ts_ms: int) -> Event:
        ev = super()._pop(ts_ms)
        if self._contracts and isinstance(ev, Trade):
            ev.qty = str(max(1, round(float(ev.qty) * 100_000)))
        return ev

    def _next_ids(self, span: int) -> tuple[int, int, int]:
        return super()._next_ids(1)

    def reset_sequence(self, new_last_id: int = 0) -> None:
        self._reset_prev = self.last_update_id
        self.last_update_id = 0


@lru_cache(maxsize=4)
def _recorded_l1(category: str) -> dict[str, list[tuple[float, list[Level], list[Level]]]]:
    """Per symbol: ``(delay_s, bids, asks)`` of every recorded ``orderbook.1`` push of ``category``."""
    out: dict[str, list[tuple[float, list[Level], list[Level]]]] = {}
    last: dict[str, float] = {}
    for rec in recordings.iter_cryptofeed_ws(RECORDINGS[category]):
        if rec.kind != "received" or '"topic"' not in rec.payload:
            continue
        msg = _dec.decode(rec.payload)
        data = msg.get("data") or {}
        sym = data.get("s")
        if not isinstance(sym, str) or not str(msg.get("topic", "")).startswith("orderbook.1."):
            continue
        delay = max(0.0, rec.ts_s - last[sym]) if sym in last else 0.0
        last[sym] = rec.ts_s
        bids = [(b[0], b[1]) for b in data.get("b", [])]
        asks = [(a[0], a[1]) for a in data.get("a", [])]
        out.setdefault(sym, []).append((delay, bids, asks))
    return out


class BybitL1ReplaySource(MarketSource):
    """Loops the recorded level-1 book of one symbol: each recorded push becomes one change (the levels that turn
    the book into the pushed one), with update ids +1 per change. No trades.

    Raises:
        KeyError: the symbol is not in the recording of ``category``.
    """

    def __init__(self, category: str, native: str) -> None:
        super().__init__(native)
        self._tape = _recorded_l1(category)[native]
        self._i = 0
        self.loops = 0
        self.last_update_id = 1_000
        _, bids, asks = self._tape[0]
        self.book.apply(bids, asks)
        self.last_price = bids[0][0] if bids else "0"
        self._i = 1

    def _peek_delay(self) -> float:
        return max(0.05, self._tape[self._i % len(self._tape)][0])

    def _pop(self, ts_ms: int) -> Event:
        _, bids, asks = self._tape[self._i % len(self._tape)]
        self._i += 1
        if self._i % len(self._tape) == 0:
            self.loops += 1
        target = type(self.book)()
        target.apply(bids, asks)
        db, da = self.book.diff_to(target)
        self.book = target
        first, last, prev = self._next_ids(1)
        return Depth(first, last, prev, db, da, ts_ms)

    def reset_sequence(self, new_last_id: int = 0) -> None:
        self._reset_prev = self.last_update_id
        self.last_update_id = 0


_View = tuple[dict[float, Level], dict[float, Level]]
"""A pushed top-N book: bids keyed by ``-price``, asks by ``price`` (as :class:`SimBook`), values ``(px, size)``."""


def _view(book: SimBook, depth: int) -> _View:
    return dict(book.bids.items()[:depth]), dict(book.asks.items()[:depth])


def _view_diff(old: dict[float, Level], new: dict[float, Level]) -> list[list[str]]:
    """Levels turning ``old`` into ``new``: deletes (size ``"0"``) of levels that left, then new and changed ones."""
    out = [[pq[0], "0"] for k, pq in old.items() if k not in new]
    out += [list(pq) for k, pq in new.items() if old.get(k) != pq]
    return out


class _Feed:
    """Push state of one served symbol: the last pushed top-N view of each subscribed depth, level-1 ``u`` and
    last pushed best levels, last ticker fields pushed."""

    def __init__(self, server: BybitServer, served: str, src: MarketSource) -> None:
        self.server = server
        self.served = served
        self.category, self.native = split_served(served)
        self.src = src
        self.l1_u = 0
        self.l1_top: tuple[Level | None, Level | None] | None = None
        self.l1_last: dict[SimConnection, float] = {}  # level-1 subscriber -> when it was last pushed
        self.views: dict[int, _View] = {}  # depth (50, 200, 1000) -> the top-N book last pushed on its topic
        self.ticker_pushed: dict[str, str] | None = None
        self.cs = 0
        self.dirty = True

    def key(self, name: str) -> str:
        return _stream_key(self.category, name)

    def conns(self, topic: str) -> set[SimConnection]:
        return self.server.subs.get((self.category, topic), set())

    def on_event(self, ev: Event) -> None:
        if isinstance(ev, Depth):
            self.dirty = True
            self._book_change(ev)
            self._l1_check(ev.ts_ms)
        elif isinstance(ev, Trade):
            self.dirty = True
            conns = self.conns(f"publicTrade.{self.native}")
            if conns:
                self._send_trade(conns, ev)

    # ---- trades ----
    def trade_id_text(self, trade_id: int) -> str:
        """``i``: the id itself on spot, a UUID derived from it on derivatives (as Bybit sends)."""
        return str(trade_id) if self.category == "spot" else str(uuid.UUID(int=trade_id))

    def _send_trade(self, conns: set[SimConnection], t: Trade) -> None:
        item = {
            "T": t.ts_ms, "s": self.native, "S": "Sell" if t.buyer_maker else "Buy", "v": t.qty, "p": t.price,
            "L": "PlusTick", "i": self.trade_id_text(t.trade_id), "BT": False, "seq": self.src.last_update_id,
        }  # fmt: skip
        if self.category == "spot":
            item.pop("seq")
        text = _dumps(
            {"topic": f"publicTrade.{self.native}", "type": "snapshot", "ts": t.ts_ms, "data": [item]}
        )
        key = self.key(f"publicTrade.{self.native}")
        for conn in tuple(conns):
            conn.send_data(text, key, t.trade_id, t.ts_ms)

    # ---- books ----
    def _book_change(self, ev: Depth) -> None:
        """Push the change of each subscribed depth's top-N view (``orderbook.N`` keeps a top-N book: a level that
        leaves the top N is deleted, a deeper one that enters it is inserted, changes below it are not sent)."""
        for depth in _BOOK_DEPTHS[1:]:
            n = int(depth)
            topic = f"orderbook.{depth}.{self.native}"
            conns = self.conns(topic)
            if not conns:
                self.views.pop(n, None)
                continue
            if ev.last_id == 1:  # the first change after a sequence reset: a snapshot with u = 1
                for conn in tuple(conns):
                    self.send_book_snapshot(conn, n)
                continue
            new = _view(self.src.book, n)
            old = self.views.get(n)
            if old is None:  # not reachable while subscribed (the first snapshot sets it); be safe
                old = new
            self.views[n] = new
            data = {"s": self.native, "b": _view_diff(old[0], new[0]), "a": _view_diff(old[1], new[1]),
                    "u": ev.last_id, "seq": ev.last_id}  # fmt: skip
            text = _dumps({"topic": topic, "type": "delta", "ts": ev.ts_ms, "data": data, "cts": ev.ts_ms})
            key = self.key(f"book:{self.native}:{depth}")
            for conn in tuple(conns):
                if conn.take_gap(self.native):
                    conn.note_skipped(key)
                    continue
                conn.send_data(text, key, ev.last_id, ev.ts_ms)

    def send_book_snapshot(self, conn: SimConnection, depth: int) -> None:
        """The top ``depth`` levels of the source's book now (also the topic's pushed view from now on)."""
        bids, asks = self.src.book.top(depth)
        self.views[depth] = _view(self.src.book, depth)
        u = self.src.last_update_id
        ts = self.server.clock.time_ns() // 1_000_000
        data = {
            "s": self.native,
            "b": [list(b) for b in bids],
            "a": [list(a) for a in asks],
            "u": u,
            "seq": u,
        }
        text = _dumps(
            {
                "topic": f"orderbook.{depth}.{self.native}",
                "type": "snapshot",
                "ts": ts,
                "data": data,
                "cts": ts,
            }
        )
        conn.send_data(text, self.key(f"book:{self.native}:{depth}"), u, ts)

    def _top(self) -> tuple[Level | None, Level | None]:
        bids, asks = self.src.book.top(1)
        return (bids[0] if bids else None, asks[0] if asks else None)

    def _l1_check(self, ts_ms: int) -> None:
        top = self._top()
        if top == self.l1_top:
            return
        self.l1_top = top
        self.l1_u += 1
        self.push_l1(None, ts_ms)

    def push_l1(self, only: SimConnection | None, ts_ms: int, conns: tuple[SimConnection, ...] = ()) -> None:
        """The level-1 snapshot to ``only``, to ``conns``, or (both empty) to every subscriber."""
        if self.l1_top is None:
            self.l1_top = self._top()
            self.l1_u += 1
        if only is not None:
            conns = (only,)
        elif not conns:
            conns = tuple(self.conns(f"orderbook.1.{self.native}"))
        if not conns:
            return
        now = self.server.clock.monotonic()
        b, a = self.l1_top
        data = {"s": self.native, "b": [list(b)] if b else [], "a": [list(a)] if a else [], "u": self.l1_u,
                "seq": self.src.last_update_id}  # fmt: skip
        text = _dumps(
            {
                "topic": f"orderbook.1.{self.native}",
                "type": "snapshot",
                "ts": ts_ms,
                "data": data,
                "cts": ts_ms,
            }
        )
        key = self.key(f"book:{self.native}:1")
        for conn in conns:
            self.l1_last[conn] = now
            conn.send_data(text, key, self.l1_u, ts_ms)

    def l1_resend(self, now: float, ts_ms: int) -> None:
        """Push the level-1 book again, same ``u``, to subscribers not pushed for 3 s."""
        subs = self.conns(f"orderbook.1.{self.native}")
        for conn in list(self.l1_last):
            if conn not in subs:
                del self.l1_last[conn]
        due = tuple(c for c in subs if now - self.l1_last.get(c, now) >= _L1_RESEND_S)
        if due:
            self.push_l1(None, ts_ms, due)

    # ---- tickers ----
    def ticker_fields(self) -> dict[str, str]:
        """The ticker now (``/v5/market/tickers`` item and ``tickers`` push)."""
        src = self.src
        b, a = self._top()
        last = src.last_price
        open_ = src.open_price if src.open_price != "0" else last
        hi, lo = max(last, open_, key=float), min(last, open_, key=float)
        pcnt = f"{(float(last) / float(open_) - 1):.4f}" if float(open_) else "0"
        out = {
            "symbol": self.native, "bid1Price": b[0] if b else "", "bid1Size": b[1] if b else "",
            "ask1Price": a[0] if a else "", "ask1Size": a[1] if a else "", "lastPrice": last,
            "prevPrice24h": open_, "price24hPcnt": pcnt, "highPrice24h": hi, "lowPrice24h": lo,
            "turnover24h": f"{src.volume * float(last):.4f}", "volume24h": f"{src.volume:.5f}",
        }  # fmt: skip
        if self.category != "spot":
            out.update(markPrice=last, indexPrice=last, fundingRate="0.0001", openInterest="0", openInterestValue="0",
                       nextFundingTime="0", tickDirection="PlusTick")  # fmt: skip
        else:
            out["usdIndexPrice"] = last
        return out

    def flush_ticker(self, ts_ms: int) -> None:
        topic = f"tickers.{self.native}"
        conns = self.conns(topic)
        if not conns or not self.dirty:
            return
        self.dirty = False
        fields = self.ticker_fields()
        prev = self.ticker_pushed
        self.ticker_pushed = fields
        if self.category == "spot":
            if fields == prev:
                return
            payload: dict[str, Any] = {"topic": topic, "ts": ts_ms, "type": "snapshot", "cs": self.cs,
                                       "data": fields}  # fmt: skip
        else:
            changed = {k: v for k, v in fields.items() if prev is None or prev.get(k) != v}
            if len(changed) <= 0:
                return
            changed["symbol"] = self.native
            self.cs += 1
            payload = {"topic": topic, "type": "delta", "data": changed, "cs": self.cs, "ts": ts_ms}
        text = _dumps(payload)
        for conn in tuple(conns):
            conn.send_data(text, self.key(topic), None, ts_ms)

    def send_ticker_snapshot(self, conn: SimConnection) -> None:
        ts = self.server.clock.time_ns() // 1_000_000
        fields = self.ticker_fields()
        if self.ticker_pushed is None:
            self.ticker_pushed = fields
        self.cs += 1
        topic = f"tickers.{self.native}"
        text = _dumps({"topic": topic, "type": "snapshot", "data": fields, "cs": self.cs, "ts": ts})
        conn.send_data(text, self.key(topic), None, ts)


class BybitServer(ExchangeServer):
    """Bybit v5 public market data (spot, linear, inverse); see the module doc."""

    inert_faults: ClassVar[frozenset[str]] = frozenset({"notice", "badchecksum"})

    name = "bybit"
    uses_replay_files = False
    hosts: ClassVar[tuple[str, ...]] = HOSTS

    @classmethod
    def trade_stream_key(cls, native: str) -> str:
        """Spot ``publicTrade.BTCUSDT``; a derivative is given as ``linear/BTCUSDT``: ``linear/publicTrade.BTCUSDT``."""
        cat, sym = split_served(native)
        return _stream_key(cat, f"publicTrade.{sym}")

    @classmethod
    def book_stream_prefix(cls, native: str) -> str:
        """``book:BTCUSDT:`` (then the depth); derivatives ``linear/book:BTCUSDT:``."""
        cat, sym = split_served(native)
        return _stream_key(cat, f"book:{sym}:")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # (category, topic) -> subscribed connections
        self.subs: dict[tuple[str, str], set[SimConnection]] = {}
        self._feeds: dict[str, _Feed] = {}
        override = self.rest_limit_override
        self.rest_limit, self.rest_window_s = override or (
            self.rules.rest_weight_limit,
            self.rules.rest_window_s,
        )
        self._rest_window_start = -math.inf
        self._rest_used = 0
        self._banned_until = -math.inf
        for cat, interval in _TICKER_S.items():
            self.on_tick(interval, self._ticker_tick(cat))
        self._spawn(self._l1_resends())

    def _ticker_tick(self, category: str) -> Callable[[int], None]:
        def tick(ts_ms: int) -> None:
            for feed in list(self._feeds.values()):
                if feed.category == category:
                    feed.flush_ticker(ts_ms)

        return tick

    async def _l1_resends(self) -> None:
        """Level-1 books unchanged for 3 s are pushed again with the same ``u``."""
        while True:
            await self.clock.sleep(_L1_RESEND_S / 30)
            now = self.clock.monotonic()
            ts_ms = self.clock.time_ns() // 1_000_000
            for feed in list(self._feeds.values()):
                feed.l1_resend(now, ts_ms)

    def make_market_source(self, symbol: str) -> MarketSource:
        cat, native = split_served(symbol)
        if self.mode == "replay" and symbol in REPLAYED:
            return BybitL1ReplaySource(cat, native)
        return BybitSyntheticSource(
            native, seed=self.seed, rate_hz=self.config.synthetic_rate_hz, contracts=cat == "inverse"
        )

    def attach_source(self, symbol: str, src: MarketSource) -> None:
        feed = _Feed(self, symbol, src)
        self._feeds[symbol] = feed
        src.listeners.append(feed.on_event)

    def feed(self, category: str, native: str) -> _Feed | None:
        """The push state of a served symbol (its source started), or ``None`` if not served."""
        served = _served(category, native)
        if self.source(served) is None:
            return None
        return self._feeds[served]

    def setup_routes(self, app: web.Application) -> None:
        for cat in CATEGORIES:
            app.router.add_get(f"/v5/public/{cat}", self._ws_handler)
        app.router.add_get("/v5/market/time", self._rest_time)
        app.router.add_get("/v5/market/instruments-info", self._rest_instruments)
        app.router.add_get("/v5/market/orderbook", self._rest_orderbook)
        app.router.add_get("/v5/market/recent-trade", self._rest_recent_trade)
        app.router.add_get("/v5/market/tickers", self._rest_tickers)

    def send_notice(self, conn: SimConnection) -> None:
        """Bybit documents no server notice before a close: nothing is sent."""

    # ---- WebSocket ----
    async def _ws_handler(self, request: web.Request) -> web.StreamResponse:
        ws, conn = await self.accept(request)
        conn.subscriptions = {}
        await conn.serve()
        for key in list(conn.subscriptions):
            self._drop(conn, key)
        return ws

    @staticmethod
    def category_of(conn: SimConnection) -> str:
        return conn.route.rsplit("/", 1)[-1]

    def _drop(self, conn: SimConnection, key: str) -> None:
        conn.subscriptions.pop(key, None)
        cat = self.category_of(conn)
        subs = self.subs.get((cat, key))
        if subs is not None:
            subs.discard(conn)
            if not subs:
                del self.subs[(cat, key)]

    def _answer(self, conn: SimConnection, op: str, req_id: Any, success: bool, ret_msg: str) -> None:
        cat = self.category_of(conn)
        out: dict[str, Any] = {"success": success, "ret_msg": ret_msg, "conn_id": conn.tag}
        if cat != "spot":
            out["req_id"] = req_id if isinstance(req_id, str) else ""
        elif req_id is not None:
            out["req_id"] = req_id
        out["op"] = op
        conn.send_ctrl(_dumps(out))

    async def on_text(self, conn: SimConnection, text: str) -> None:
        try:
            msg = _dec.decode(text)
        except msgspec.DecodeError:
            msg = None
        cat = self.category_of(conn)
        if not isinstance(msg, dict):
            conn.send_ctrl(_dumps({"success": False, "ret_msg": f"error:invalid request,body:{text[:200]}",
                                   "conn_id": conn.tag, "op": ""}))  # fmt: skip
            return
        op, req_id, args = msg.get("op"), msg.get("req_id"), msg.get("args")
        if op == "ping":
            if self.clock.monotonic() >= conn.noping_until:
                conn.last_activity = self.clock.monotonic()
                self._answer(conn, "ping", req_id, True, "pong")
            return
        if op not in ("subscribe", "unsubscribe") or not isinstance(args, list):
            self._answer(conn, str(op), req_id, False, f"error:unknown op or args,op:{op}")
            return
        if cat == "spot" and len(args) > _SPOT_MAX_ARGS:
            self._answer(conn, op, req_id, False, f"args size >{_SPOT_MAX_ARGS}")
            return
        if conn.reject_next:
            conn.reject_next = False
            names = ",".join(f"topic:{a}" for a in args)
            self._answer(conn, op, req_id, False, f"error:rejected (simulated fault),{names}")
            return
        refused: list[str] = []
        invalid: list[str] = []  # known topic kind, symbol not served here
        accepted: list[tuple[str, _Feed]] = []
        for topic in args:
            feed = self._topic_feed(cat, topic) if isinstance(topic, str) else None
            if feed is None:
                if isinstance(topic, str) and self._topic_kind_known(topic):
                    invalid.append(topic)
                else:
                    refused.append(f"error:handler not found,topic:{topic}")
                continue
            if op == "subscribe" and topic in conn.subscriptions:
                refused.append(f"error:already subscribed,topic:{topic}")
                continue
            accepted.append((topic, feed))
        if invalid:
            refused.insert(0, f"Invalid symbol :[{','.join(invalid)}]")
        if op == "subscribe":
            used = sum(len(t) for t in conn.subscriptions) + sum(len(t) for t, _ in accepted)
            if used > _MAX_ARGS_CHARS:
                self._answer(conn, op, req_id, False, f"args length >{_MAX_ARGS_CHARS}")
                return
        self._answer(conn, op, req_id, not refused, ",".join(refused) if refused else self._ok_msg(cat, op))
        conn.last_activity = self.clock.monotonic()
        for topic, feed in accepted:
            if op == "unsubscribe":
                self._drop(conn, topic)
                continue
            conn.subscriptions[topic] = True
            self.subs.setdefault((cat, topic), set()).add(conn)
            self._first_push(conn, topic, feed)
        self.notify()

    @staticmethod
    def _ok_msg(category: str, op: str) -> str:
        return op if category == "spot" else ""

    @staticmethod
    def _topic_kind_known(topic: str) -> bool:
        parts = topic.split(".")
        if parts[0] in ("publicTrade", "tickers"):
            return len(parts) == 2
        return parts[0] == "orderbook" and len(parts) == 3 and parts[1] in _BOOK_DEPTHS

    def _topic_feed(self, category: str, topic: str) -> _Feed | None:
        parts = topic.split(".")
        if parts[0] in ("publicTrade", "tickers") and len(parts) == 2:
            return self.feed(category, parts[1])
        if parts[0] == "orderbook" and len(parts) == 3 and parts[1] in _BOOK_DEPTHS:
            return self.feed(category, parts[2])
        return None

    def _first_push(self, conn: SimConnection, topic: str, feed: _Feed) -> None:
        kind = topic.split(".")
        ts = self.clock.time_ns() // 1_000_000
        if kind[0] == "orderbook":
            if kind[1] == "1":
                feed.push_l1(conn, ts)
            else:
                feed.send_book_snapshot(conn, int(kind[1]))
        elif kind[0] == "tickers":
            feed.send_ticker_snapshot(conn)

    async def idle_close(self, conn: SimConnection) -> None:
        await conn.close(1000, "no ping-pong and no data for 10 minutes")

    # ---- REST ----
    def _headers(self, remaining: int, reset_ms: int) -> dict[str, str]:
        return {
            "X-Bapi-Limit": str(self.rest_limit),
            "X-Bapi-Limit-Status": str(max(0, remaining)),
            "X-Bapi-Limit-Reset-Timestamp": str(reset_ms),
        }

    def _limited(self, request: web.Request) -> tuple[web.Response | None, dict[str, str]]:
        """Charge one request to the IP window; the 403 answer when over the limit or banned."""
        self.count_rest(request.path, 1)
        now = self.clock.monotonic()
        now_ms = self.clock.time_ns() // 1_000_000
        start = math.floor(now / self.rest_window_s) * self.rest_window_s
        if start != self._rest_window_start:
            self._rest_window_start, self._rest_used = start, 0
        if now < self._banned_until or self._rest_used >= self.rest_limit:
            if now >= self._banned_until:
                self._banned_until = now + self.rules.ban_s
            self.count_limited(403)
            reset_ms = now_ms + int((self._banned_until - now) * 1000)
            return web.Response(
                text="access too frequent", status=403, headers=self._headers(0, reset_ms)
            ), {}
        self._rest_used += 1
        return None, self._headers(self.rest_limit - self._rest_used, now_ms)

    def _ok(self, result: Any, headers: dict[str, str], code: int = 0, msg: str = "OK") -> web.Response:
        body = {"retCode": code, "retMsg": msg, "result": result, "retExtInfo": {},
                "time": self.clock.time_ns() // 1_000_000}  # fmt: skip
        return web.Response(text=_dumps(body), content_type="application/json", headers=headers)

    def _bad(self, msg: str, headers: dict[str, str]) -> web.Response:
        return self._ok({}, headers, 10001, msg)

    def unknown_path(self, request: web.Request, status: int) -> web.Response:
        """Bybit-shaped JSON for a path (404) or method (405) the simulator does not serve (our choice)."""
        body: dict[str, Any] = {"retCode": status, "retMsg": "Not Found" if status == 404 else "Method Not Allowed",
                "result": {}, "retExtInfo": {}, "time": self.clock.time_ns() // 1_000_000}  # fmt: skip
        return web.Response(text=_dumps(body), status=status, content_type="application/json")

    def _category(self, request: web.Request, headers: dict[str, str]) -> tuple[str, web.Response | None]:
        cat = request.query.get("category", "")
        if cat not in (*CATEGORIES, "option"):
            return cat, self._bad("params error: category invalid", headers)
        return cat, None

    def _symbol_feed(
        self, request: web.Request, cat: str, headers: dict[str, str]
    ) -> tuple[_Feed | None, Any]:
        native = request.query.get("symbol", "")
        feed = self.feed(cat, native) if cat in CATEGORIES else None
        if feed is None:
            return None, self._bad("params error: symbol invalid", headers)
        return feed, None

    @staticmethod
    def _limit(request: web.Request, default: int, top: int) -> int | None:
        raw = request.query.get("limit", "")
        if not raw:
            return default
        if not raw.isdigit() or not 1 <= int(raw) <= top:
            return None
        return int(raw)

    async def _rest_time(self, request: web.Request) -> web.Response:
        limited, headers = self._limited(request)
        if limited:
            return limited
        ns = self.clock.time_ns()
        return self._ok({"timeSecond": str(ns // 1_000_000_000), "timeNano": str(ns)}, headers)

    def instrument(self, category: str, native: str) -> dict[str, Any]:
        """The ``instruments-info`` entry of a served symbol."""
        base = native[:-4] if native.endswith(("USDT", "USDC")) else native[:-3]
        quote = native[len(base) :]
        if category == "spot":
            return {
                "symbol": native, "baseCoin": base, "quoteCoin": quote, "innovation": "0", "status": "Trading",
                "marginTrading": "both", "stTag": "0",
                "lotSizeFilter": {"basePrecision": "0.00001", "quotePrecision": "0.00000001",
                                  "minOrderQty": "0.00001", "maxOrderQty": "100", "minOrderAmt": "1",
                                  "maxOrderAmt": "2000000"},
                "priceFilter": {"tickSize": "0.01"},
                "riskParameters": {"priceLimitRatioX": "0.01", "priceLimitRatioY": "0.02"},
            }  # fmt: skip
        inverse = category == "inverse"
        return {
            "symbol": native, "contractType": "InversePerpetual" if inverse else "LinearPerpetual",
            "status": "Trading", "baseCoin": base, "quoteCoin": quote, "launchTime": "1585526400000",
            "deliveryTime": "0", "deliveryFeeRate": "", "priceScale": "2",
            "leverageFilter": {"minLeverage": "1", "maxLeverage": "100.00", "leverageStep": "0.01"},
            "priceFilter": {"minPrice": "0.01", "maxPrice": "1999999.98", "tickSize": "0.01"},
            "lotSizeFilter": (
                {"maxOrderQty": "100000000", "minOrderQty": "1", "qtyStep": "1", "postOnlyMaxOrderQty": "100000000",
                 "maxMktOrderQty": "100000000", "minNotionalValue": ""}
                if inverse else
                {"maxOrderQty": "1190.000", "minOrderQty": "0.001", "qtyStep": "0.001",
                 "postOnlyMaxOrderQty": "1190.000", "maxMktOrderQty": "500.000", "minNotionalValue": "5"}
            ),
            "unifiedMarginTrade": True, "fundingInterval": 480, "settleCoin": base if inverse else quote,
            "copyTrading": "none", "upperFundingRate": "0.00375", "lowerFundingRate": "-0.00375",
            "isPreListing": False, "preListingInfo": None,
        }  # fmt: skip

    async def _rest_instruments(self, request: web.Request) -> web.Response:
        limited, headers = self._limited(request)
        if limited:
            return limited
        cat, bad = self._category(request, headers)
        if bad:
            return bad
        q = request.query
        items = [self.instrument(c, n) for c, n in map(split_served, self.symbols) if c == cat]
        if q.get("symbol"):
            items = [i for i in items if i["symbol"] == q["symbol"]]
        if q.get("status") and q["status"] != "Trading":
            items = []
        limit = self._limit(request, 500, 1000)
        if limit is None:
            return self._bad("params error: limit invalid", headers)
        cursor = q.get("cursor", "")
        start = int(cursor) if cursor.isdigit() else 0
        page = items[start : start + limit]
        nxt = str(start + limit) if start + limit < len(items) else ""
        return self._ok({"category": cat, "list": page, "nextPageCursor": nxt}, headers)

    async def _rest_orderbook(self, request: web.Request) -> web.Response:
        limited, headers = self._limited(request)
        if limited:
            return limited
        cat, bad = self._category(request, headers)
        if bad:
            return bad
        feed, bad = self._symbol_feed(request, cat, headers)
        if feed is None:
            return bad  # type: ignore[no-any-return]
        limit = self._limit(request, 1 if cat == "spot" else 25, 1000)
        if limit is None:
            return self._bad("params error: limit invalid", headers)
        bids, asks = feed.src.book.top(limit)
        ts = self.clock.time_ns() // 1_000_000
        u = feed.src.last_update_id
        result = {"s": feed.native, "b": [list(b) for b in bids], "a": [list(a) for a in asks], "ts": ts, "u": u,
                  "seq": u, "cts": ts}  # fmt: skip
        return self._ok(result, headers)

    async def _rest_recent_trade(self, request: web.Request) -> web.Response:
        limited, headers = self._limited(request)
        if limited:
            return limited
        cat, bad = self._category(request, headers)
        if bad:
            return bad
        feed, bad = self._symbol_feed(request, cat, headers)
        if feed is None:
            return bad  # type: ignore[no-any-return]
        spot = cat == "spot"
        limit = self._limit(request, 60 if spot else 500, 60 if spot else 1000)
        if limit is None:
            return self._bad("params error: limit invalid", headers)
        items = [
            {"execId": feed.trade_id_text(t.trade_id), "symbol": feed.native, "price": t.price, "size": t.qty,
             "side": "Sell" if t.buyer_maker else "Buy", "time": str(t.ts_ms), "isBlockTrade": False,
             "isRPITrade": False}
            for t in reversed(feed.src.trades.select(limit, newest=True))
        ]  # fmt: skip
        return self._ok({"category": cat, "list": items}, headers)

    async def _rest_tickers(self, request: web.Request) -> web.Response:
        limited, headers = self._limited(request)
        if limited:
            return limited
        cat, bad = self._category(request, headers)
        if bad:
            return bad
        want = request.query.get("symbol")
        out = []
        for c, native in map(split_served, self.symbols):
            if c != cat or (want and native != want):
                continue
            feed = self.feed(c, native)
            assert feed is not None
            out.append(feed.ticker_fields())
        if want and not out:
            return self._bad("params error: symbol invalid", headers)
        return self._ok({"category": cat, "list": out}, headers)


register(ServerSpec("bybit", BybitServer, port_offset=4, rules=BYBIT_RULES, symbols=DEFAULT_SYMBOLS))
