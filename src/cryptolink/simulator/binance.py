"""Simulated Binance spot, USDⓈ-M and COIN-M futures: WebSocket market streams plus the REST endpoints that clients
(and ccxt ``load_markets``/``fetch_time``/``fetch_ticker``/``fetch_order_book``/``fetch_trades``, ccxt.pro
``watch_trades``/``watch_order_book``/``watch_ticker``/``watch_bids_asks``) call.

Official sources: spot https://developers.binance.com/docs/binance-spot-api-docs/web-socket-streams (WS) and
https://developers.binance.com/docs/binance-spot-api-docs/rest-api/market-data-endpoints (REST); USDⓈ-M
https://developers.binance.com/docs/derivatives/usds-margined-futures/websocket-market-streams and
https://developers.binance.com/docs/derivatives/usds-margined-futures/market-data/rest-api ; COIN-M
https://developers.binance.com/docs/derivatives/coin-margined-futures/websocket-market-streams/Connect and
https://developers.binance.com/docs/derivatives/coin-margined-futures/market-data/rest-api .

Each server class lists the real base URLs it stands for in ``hosts`` (``cryptolink simulate`` prints them mapped
to the local bases): spot ``https://api.binance.com`` (+ ``api1``-``api4``, ``api-gcp``,
``data-api.binance.vision``), ``wss://stream.binance.com:9443`` / ``:443`` (mapped to ``ws://127.0.0.1:PORT/stream``:
ccxt.pro recognises spot connections by ``/stream`` in the URL), ``wss://data-stream.binance.vision``;
USDⓈ-M ``https://fapi.binance.com``, ``wss://fstream.binance.com``; COIN-M ``https://dapi.binance.com``,
``wss://dstream.binance.com``. Paths are the real ones.

WebSocket paths (``ws_url`` is ``ws://127.0.0.1:PORT``; append the path):

- spot and COIN-M: ``/ws``, ``/ws/<s1>/<s2>`` (raw payloads), ``/stream?streams=<s1>/<s2>``
  (``{"stream":..,"data":..}``); spot also under the prefix ``/stream`` (``/stream/ws/...``).
- USDⓈ-M: the same under ``/public`` (``@depth*``, ``@bookTicker``, ``@trade``) and ``/market`` (``@aggTrade``,
  ``@ticker``, ``@miniTicker``, ``@markPrice``...); legacy ``/ws``/``/stream`` carry public streams only. A stream on
  the wrong route is acknowledged and delivers nothing (Binance's 2026-03 routed-URL change notice for USDⓈ-M).

Live control: ``SUBSCRIBE``/``UNSUBSCRIBE``/``LIST_SUBSCRIPTIONS``/``SET_PROPERTY``/``GET_PROPERTY`` with
``{"result":..,"id":..}`` answers, errors ``{"code":2|3|0,"msg":..,"id":..}`` carrying the request's ``id`` ("Live
Subscribing/Unsubscribing to streams" and "Error Messages" of the spot WS page), so a client can tell which of its
pending requests failed. Unknown but well-formed streams are accepted and deliver nothing (observed behaviour, not
documented).

Streams per symbol and their pacing ("Update Speed" of each stream's doc section; periodic streams are pushed on
ticks at multiples of the interval on the simulator clock, see :meth:`ExchangeServer.on_tick`):

========================  ===================  ====================  =====================  =====================
stream                    spot                 USDⓈ-M                COIN-M                 payload
========================  ===================  ====================  =====================  =====================
``@trade``                real time            real time             real time              one trade
``@aggTrade``             real time            real time             real time              ``a == f == l``
``@bookTicker``           real time            real time             real time              best bid/ask, ``u``
``@depth``                1000 ms              250 ms                250 ms                 diff, ``U``/``u``
``@depth@100ms``          100 ms               100 ms                100 ms                 (futures: ``pu``)
``@depth@250ms/@500ms``   -                    250 / 500 ms          250 / 500 ms
``@depth@0ms``            -                    real time             real time              one diff per event
``@depth<N>`` (5/10/20)   1000 ms (@100ms)     250 ms (@100/500ms)   250 ms (@100/500ms)    top N; see below
``@ticker``               1000 ms              2000 ms               500 ms                 ``24hrTicker``
``@miniTicker``           1000 ms              2000 ms               500 ms                 ``24hrMiniTicker``
``@markPrice``            -                    3000 ms (@1s: 1 s)    3000 ms (@1s: 1 s)     ``markPriceUpdate``
========================  ===================  ====================  =====================  =====================

Push intervals run on the simulator clock and do not scale with ``speed`` (which paces the market events). A
periodic diff stream batches every book change since its previous push into one event whose ``U..u`` covers them
(later levels override earlier ones at the same price), as the real exchange does; nothing is sent in an interval
without changes. Futures diffs chain ``pu`` = previous ``u``. Spot partial depth is ``{"lastUpdateId","bids",
"asks"}``; futures partial depth is ``e: depthUpdate`` with ``U``/``u``/``pu`` and the top N levels in ``b``/``a``;
both are pushed only when the book changed. Mark and index prices are the book's mid price (the simulator has no
index); the funding rate is ``0.00010000`` with the next 8-hour boundary as next funding time.

COIN-M (``binancecoinm``): ``BTCUSD_PERP`` replays the hftbacktest 2024-08-08 recording (``pu``-linked
``@depth@0ms`` diffs, trades, book tickers; quantities in contracts), ``ETHUSD_PERP`` is synthetic. Contracts are
100 USD for BTC and 10 USD for the others (``contractSize`` in exchangeInfo, as Binance lists it); ``ps`` (pair) is
carried on depth, book ticker and ticker events.

REST (every answer carries ``X-MBX-USED-WEIGHT-<n><unit>`` for the weight window, ``1M`` by default; weights are
counted in :class:`WeightLimiter`, 429 then 418 with ``Retry-After``; ``SimConfig.rest_limits`` scales the window):

=====================================  ==========  ============  ============  ===================================
endpoint                               spot weight USD-M weight  COIN-M        notes
=====================================  ==========  ============  ============  ===================================
``ping``, ``time``                     1           1             1
``exchangeInfo``                       20          1             1             spot/USD-M recorded (cryptofeed
                                                                               sample data) trimmed to the served
                                                                               symbols; COIN-M built from the
                                                                               documented fields
``depth?symbol=&limit=``               5-250       2-20          2-20          by limit, as documented
``ticker/24hr``                        2 / 80      1 / 40        1 / 40        one symbol / all (COIN-M: a list)
``ticker/bookTicker``                  2 / 4       2 / 5         2 / 5
``ticker/price``                       2 / 4       1 / 2         1 / 2
``premiumIndex``                       -           1             10            mark/index price, funding
``aggTrades?symbol=&fromId=&startTime  4           20            20            ``[{"a","p","q","f","l","T","m"
&endTime=&limit=``                                                             (,"M")}]``
``trades?symbol=&limit=``              25          5             5             most recent, ``[{"id","price",
                                                                               "qty","quoteQty"|"baseQty","time",
                                                                               "isBuyerMaker"(,"isBestMatch")}]``
``historicalTrades?symbol=&fromId=``   25          20            20            spot: no API key needed; futures:
                                                                               ``X-MBX-APIKEY`` header required
                                                                               (MARKET_DATA), else 401 -2014
=====================================  ==========  ============  ============  ===================================

Unknown paths answer HTTP 404 ``{"code": -1000, "msg": "Path /x, Method GET is invalid"}`` (Binance documents the
``{"code","msg"}`` error payload, "Error Codes" of each API; the code for an unknown path is our choice) as JSON,
never ``text/plain``.

Trade queries (``limit`` default 500, max 1000; larger values are served as 1000): results are in id order,
oldest first. Without ``fromId``/``startTime``/``endTime`` the newest ``limit`` trades; with ``fromId`` and/or
``startTime`` the oldest matching ones from there (``fromId``, ``startTime``, ``endTime`` all inclusive); with
only ``endTime`` the newest ones up to it. Futures reject ``endTime - startTime >= 1 h`` with -1127 (their docs:
"must be less than 1 hour"). Each symbol keeps its last :data:`~cryptolink.simulator.market.TRADE_HISTORY`
trades: asking for older ids or times returns what is kept, starting at the oldest kept trade.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from typing import Any, ClassVar

import msgspec
from aiohttp import web

from cryptolink import recordings
from cryptolink.simulator.config import BINANCE_COINM_RULES, BINANCE_SPOT_RULES, BINANCE_USDM_RULES
from cryptolink.simulator.market import Bbo, Depth, Event, Level, MarketSource, Trade
from cryptolink.simulator.ratelimit import Verdict, WeightLimiter
from cryptolink.simulator.registry import ServerSpec, register
from cryptolink.simulator.server import ExchangeServer, SimConnection

__all__ = ["BinanceCoinmServer", "BinanceServer", "BinanceUsdmServer", "contract_size"]

_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder()

_PARTIAL = re.compile(r"^depth(5|10|20)(?:@(\d+)ms)?$")
_FUNDING_PERIOD_MS = 8 * 3_600_000
_FUNDING_RATE = "0.00010000"


def _dumps(obj: Any) -> str:
    return _enc.encode(obj).decode()


_STREAM_NAME = re.compile(
    r"^(?:[a-z0-9_]+@(?:trade|aggTrade|bookTicker|ticker|miniTicker|avgPrice|forceOrder|markPrice(?:@1s)?"
    r"|indexPrice(?:@1s)?|depth(?:5|10|20)?(?:@(?:0|100|250|500|1000)ms)?|kline_\w+|continuousKline_\w+"
    r"|ticker_\w+)|![A-Za-z@_]+)$"
)
"""Stream names the servers know (lower-case symbols, "All symbols for streams are lowercase"; ``!`` all-market
streams). A SUBSCRIBE with any other name is refused as a whole with code 2 "Invalid request: invalid stream", as
the live servers answer a malformed name; an unknown but well-formed symbol is accepted and sends nothing, as
they do. (The answer to an upper-case symbol is not documented: refusing it is our choice.)"""


def _ws_error(code: int, msg: str, request_id: Any) -> str:
    """A WebSocket error frame as the live servers send it: ``{"error":{"code":2,"msg":"..."},"id":N}`` (the
    "Error Messages" table of Binance's WebSocket Streams docs lists the codes and messages flat,
    ``{"code":..,"msg":..,"id":..}``; the servers nest them under ``error``, which is what ccxt.pro parses)."""
    return _dumps({"error": {"code": code, "msg": msg}, "id": request_id})


@lru_cache(maxsize=4)
def _recorded_exchange_info(name: str) -> dict[str, Any]:
    rec = next(recordings.iter_cryptofeed_http(name))
    info: dict[str, Any] = _dec.decode(rec.body)
    return info


def contract_size(symbol: str) -> int:
    """USD per COIN-M contract: 100 for BTC (``BTCUSD_PERP``), 10 for every other base (Binance's COIN-M
    ``contractSize``, https://developers.binance.com/docs/derivatives/coin-margined-futures/market-data/rest-api/Exchange-Information)."""
    return 100 if symbol.startswith("BTC") else 10


class _BadRequest(Exception):
    """A REST parameter error answered with HTTP 400 ``{"code": code, "msg": msg}``."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


def _int_arg(request: web.Request, name: str) -> int | None:
    """Integer query parameter ``name`` or ``None`` when absent/empty.

    Raises:
        _BadRequest: -1100 when it is not a non-negative integer.
    """
    raw = request.query.get(name, "")
    if not raw:
        return None
    if not raw.isdigit():
        raise _BadRequest(
            -1100, f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'."
        )
    return int(raw)


def _quote_qty(price: str, qty: str) -> str:
    return format((Decimal(price) * Decimal(qty)).normalize(), "f")


def _window_label(window_s: float) -> tuple[str, int, str]:
    """``(header suffix, intervalNum, interval)`` of a weight window: 60 s -> ``("1M", 1, "MINUTE")``."""
    if window_s >= 60 and window_s % 60 == 0:
        n = int(window_s // 60)
        return f"{n}M", n, "MINUTE"
    n = max(1, round(window_s))
    return f"{n}S", n, "SECOND"


@dataclass(slots=True)
class _Batch:
    """Book changes of one periodic diff stream since its last push (levels keyed by ``float(price)``)."""

    first_id: int
    last_id: int
    prev_id: int
    ts_ms: int
    bids: dict[float, Level] = field(default_factory=dict)
    asks: dict[float, Level] = field(default_factory=dict)

    def add(self, ev: Depth) -> None:
        self.last_id = ev.last_id
        self.ts_ms = ev.ts_ms
        for p, q in ev.bids:
            self.bids[float(p)] = (p, q)
        for p, q in ev.asks:
            self.asks[float(p)] = (p, q)


class BinanceServer(ExchangeServer):
    """Binance spot; see the module doc for what is served and the sources."""

    name = "binance"
    hosts: ClassVar[tuple[str, ...]] = (
        # REST: "General API Information" of https://developers.binance.com/docs/binance-spot-api-docs/rest-api
        "https://api.binance.com",
        "https://api-gcp.binance.com",
        "https://api1.binance.com",
        "https://api2.binance.com",
        "https://api3.binance.com",
        "https://api4.binance.com",
        "https://data-api.binance.vision",
        # WS: "General WSS information" of the spot web-socket-streams page
        "wss://stream.binance.com:9443",
        "wss://stream.binance.com:443",
        "wss://stream.binance.com",
        "wss://data-stream.binance.vision",
    )
    #: ``wss://stream.binance.com`` maps to ``ws://127.0.0.1:PORT/stream`` (routes ``/stream/ws...`` and
    #: ``/stream/stream`` serve the same streams): ccxt.pro tells a spot connection from a futures one by
    #: ``"/stream"`` in its URL (``is_spot_url``), which the real hostname provides and ``127.0.0.1:PORT`` would not
    host_paths: ClassVar[dict[str, str]] = {
        "wss://stream.binance.com:9443": "/stream",
        "wss://stream.binance.com:443": "/stream",
        "wss://stream.binance.com": "/stream",
    }
    market_kind = "spot"
    rest_prefix = "/api/v3"
    info_recording = "cryptofeed_binance_BINANCE.0.gz"
    #: trade stream name (spot ``trade``; futures ``aggTrade``, see the subclasses' use in the harness)
    trade_stream = "trade"
    usdm = False  # futures (USDⓈ-M and COIN-M) payload shapes
    coinm = False
    #: diff-depth stream kind -> push interval in seconds (0 = every event)
    depth_intervals: ClassVar[dict[str, float]] = {"depth": 1.0, "depth@100ms": 0.1}
    #: partial depth: default interval and the ``@<n>ms`` suffixes accepted
    partial_default_s = 1.0
    partial_speeds_ms: ClassVar[tuple[int, ...]] = (100, 1000)
    #: ``@ticker`` / ``@miniTicker`` interval, ``@markPrice`` kinds (futures only)
    ticker_interval_s = 1.0
    mark_intervals: ClassVar[dict[str, float]] = {}
    #: request weights ("Market Data endpoints" of the spot REST docs)
    exchange_info_weight = 20
    agg_trades_weight = 4
    trades_weight = 25
    historical_trades_weight = 25
    ticker_weights = (2, 80)
    book_ticker_weights = (2, 4)
    price_weights = (2, 4)
    premium_weights = (0, 0)
    trades_max_limit = 1000

    @classmethod
    def trade_stream_key(cls, native: str) -> str:
        return f"{native.lower()}@{cls.trade_stream}"

    @classmethod
    def book_stream_prefix(cls, native: str) -> str:
        return f"{native.lower()}@depth"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.subs: dict[str, set[SimConnection]] = {}
        limit, window = self.rest_limit_override or (self.rules.rest_weight_limit, self.rules.rest_window_s)
        self.weights = WeightLimiter(limit, window, self.rules.ban_s, self.clock)
        self._weight_header = "X-MBX-USED-WEIGHT-" + _window_label(window)[0]
        self.rest_requests = 0
        self._batches: dict[str, _Batch] = {}
        self._partial_last: dict[str, int] = {}
        self._ticking: set[float] = set()

    # ---- routes ----
    def ws_prefixes(self) -> tuple[str, ...]:
        return ("", "/stream")

    def setup_routes(self, app: web.Application) -> None:
        for prefix in self.ws_prefixes():
            app.router.add_get(prefix + "/ws", self._ws_handler)
            app.router.add_get(prefix + "/ws/{tail:.*}", self._ws_handler)
            app.router.add_get(prefix + "/stream", self._ws_handler)
        p = self.rest_prefix
        app.router.add_get(p + "/ping", self._rest_ping)
        app.router.add_get(p + "/time", self._rest_time)
        app.router.add_get(p + "/exchangeInfo", self._rest_exchange_info)
        app.router.add_get(p + "/depth", self._rest_depth)
        app.router.add_get(p + "/ticker/24hr", self._rest_ticker_24hr)
        app.router.add_get(p + "/ticker/bookTicker", self._rest_book_ticker)
        app.router.add_get(p + "/ticker/price", self._rest_ticker_price)
        app.router.add_get(p + "/aggTrades", self._rest_agg_trades)
        app.router.add_get(p + "/trades", self._rest_trades)
        app.router.add_get(p + "/historicalTrades", self._rest_historical_trades)
        if self.usdm:
            app.router.add_get(p + "/premiumIndex", self._rest_premium_index)

    def unknown_path(self, request: web.Request, status: int) -> web.Response:
        """Binance's ``{"code","msg"}`` error payload as JSON (404 unknown path, 405 wrong method)."""
        body = {"code": -1000, "msg": f"Path {request.path}, Method {request.method} is invalid"}
        return web.Response(text=_dumps(body), status=status, content_type="application/json")

    # ---- routing of streams (USD-M overrides)
    # -------------------------------------------------------------------
    def route_carries(self, route: str, stream: str) -> bool:
        """Whether a connection on ``route`` (``/ws``, ``/public/stream``...) receives ``stream``."""
        return True

    # ---- stream kinds and pacing ----
    def stream_interval(self, kind: str) -> float | None:
        """Push interval in seconds of stream kind ``kind`` (``depth@100ms``, ``ticker``...): ``0.0`` for
        real-time streams, ``None`` for a kind this exchange does not serve."""
        if kind in ("trade", "aggTrade", "bookTicker"):
            return 0.0
        if kind in self.depth_intervals:
            return self.depth_intervals[kind]
        m = _PARTIAL.match(kind)
        if m:
            if m.group(2) is None:
                return self.partial_default_s
            ms = int(m.group(2))
            return ms / 1000.0 if ms in self.partial_speeds_ms else None
        if kind in ("ticker", "miniTicker"):
            return self.ticker_interval_s
        return self.mark_intervals.get(kind)

    def _ensure_ticking(self, interval_s: float) -> None:
        if interval_s > 0 and interval_s not in self._ticking:
            self._ticking.add(interval_s)
            self.on_tick(interval_s, lambda ts_ms: self._tick(interval_s, ts_ms))

    # ---- WebSocket ----
    async def _ws_handler(self, request: web.Request) -> web.StreamResponse:
        ws, conn = await self.accept(request)
        conn.combined = request.path.endswith("/stream")
        initial: list[str] = []
        tail = request.match_info.get("tail", "")
        if tail:
            initial += [s for s in tail.split("/") if s]
        if request.query.get("streams"):
            initial += [s for s in request.query["streams"].split("/") if s]
        for stream in initial[: self.rules.max_streams]:
            self._subscribe(conn, stream)
        if initial:
            self.notify()
        await conn.serve()
        for stream in list(conn.subscriptions):
            self._unsubscribe(conn, stream)
        return ws

    def _subscribe(self, conn: SimConnection, stream: str) -> None:
        conn.subscriptions[stream] = True
        if self.route_carries(conn.route, stream):
            self.subs.setdefault(stream, set()).add(conn)
        symbol, _, kind = stream.partition("@")
        interval = self.stream_interval(kind)
        if interval is not None:
            self._ensure_ticking(interval)
        self.source(symbol.upper())
        conn.last_activity = self.clock.monotonic()

    def _unsubscribe(self, conn: SimConnection, stream: str) -> None:
        conn.subscriptions.pop(stream, None)
        subs = self.subs.get(stream)
        if subs is not None:
            subs.discard(conn)
            if not subs:
                del self.subs[stream]
                self._batches.pop(stream, None)
                self._partial_last.pop(stream, None)

    async def on_text(self, conn: SimConnection, text: str) -> None:
        try:
            msg = _dec.decode(text)
        except msgspec.DecodeError as exc:
            conn.send_ctrl(_ws_error(3, f"Invalid JSON: {exc}", None))
            return
        if not isinstance(msg, dict):
            conn.send_ctrl(_ws_error(3, "Invalid JSON: expected an object", None))
            return
        req_id = msg.get("id")
        if req_id is not None and not isinstance(req_id, int | str):
            conn.send_ctrl(_ws_error(2, "Invalid request: invalid id", None))
            return
        method = msg.get("method")
        params = msg.get("params", [])
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not isinstance(params, list) or not all(isinstance(p, str) and p for p in params):
                conn.send_ctrl(_ws_error(2, "Invalid request: params must be stream names", req_id))
                return
            if conn.reject_next:
                conn.reject_next = False
                conn.send_ctrl(_ws_error(2, "Invalid request: rejected (simulated fault)", req_id))
                return
            if method == "SUBSCRIBE":
                if not all(_STREAM_NAME.match(p) for p in params):
                    conn.send_ctrl(_ws_error(2, "Invalid request: invalid stream", req_id))
                    return
                if len(set(conn.subscriptions) | set(params)) > self.rules.max_streams:
                    conn.send_ctrl(_ws_error(2, "Invalid request: too many streams", req_id))
                    return
                for stream in params:
                    self._subscribe(conn, stream)
            else:
                for stream in params:
                    self._unsubscribe(conn, stream)
            conn.send_ctrl(_dumps({"result": None, "id": req_id}))
            self.notify()
        elif method == "LIST_SUBSCRIPTIONS":
            conn.send_ctrl(_dumps({"result": list(conn.subscriptions), "id": req_id}))
        elif method == "SET_PROPERTY":
            if (
                isinstance(params, list)
                and len(params) == 2
                and params[0] == "combined"
                and isinstance(params[1], bool)
            ):
                conn.combined = params[1]
                conn.send_ctrl(_dumps({"result": None, "id": req_id}))
            else:
                conn.send_ctrl(_ws_error(0, "Unknown property", req_id))
        elif method == "GET_PROPERTY":
            if isinstance(params, list) and params == ["combined"]:
                conn.send_ctrl(_dumps({"result": conn.combined, "id": req_id}))
            else:
                conn.send_ctrl(_ws_error(0, "Unknown property", req_id))
        else:
            conn.send_ctrl(_ws_error(2, f"Invalid request: unknown variant `{method}`", req_id))

    def send_notice(self, conn: SimConnection) -> None:
        event = {"e": "serverShutdown", "E": self.clock.time_ns() // 1_000_000}
        if conn.combined:
            conn.send_ctrl(_dumps({"stream": "!serverShutdown", "data": event}))
        else:
            conn.send_ctrl(_dumps(event))

    # ---- fan-out of real-time events ----
    def _pair(self, symbol: str) -> str:
        return symbol.split("_", 1)[0]

    def attach_source(self, symbol: str, src: MarketSource) -> None:
        lower = symbol.lower()
        depth_keys = [(f"{lower}@{kind}", iv) for kind, iv in self.depth_intervals.items()]
        trade_key, agg_key, bbo_key = f"{lower}@trade", f"{lower}@aggTrade", f"{lower}@bookTicker"
        subs, batches = self.subs, self._batches
        usdm, coinm = self.usdm, self.coinm
        pair = self._pair(symbol)

        def fan_out(ev: Event) -> None:
            if isinstance(ev, Depth):
                for key, interval in depth_keys:
                    conns = subs.get(key)
                    if not conns:
                        continue
                    if interval > 0:
                        batch = batches.get(key)
                        if batch is None:
                            batches[key] = batch = _Batch(ev.first_id, ev.last_id, ev.prev_id, ev.ts_ms)
                        batch.add(ev)
                        continue
                    self._send(conns, key, self._depth_event(symbol, ev.first_id, ev.last_id, ev.prev_id,
                                                             ev.bids, ev.asks, ev.ts_ms, ev.ts_ms),
                               ev.last_id, ev.ts_ms, gap_symbol=symbol)  # fmt: skip
            elif isinstance(ev, Trade):
                conns = subs.get(trade_key)
                if conns:
                    t: dict[str, Any] = {"e": "trade", "E": ev.ts_ms, "s": symbol, "t": ev.trade_id}
                    t.update(p=ev.price, q=ev.qty, T=ev.ts_ms, m=ev.buyer_maker)
                    if usdm:
                        t["X"] = "MARKET"
                    else:
                        t["M"] = True
                    self._send(conns, trade_key, t, ev.trade_id, ev.ts_ms)
                conns = subs.get(agg_key)
                if conns:
                    a: dict[str, Any] = {"e": "aggTrade", "E": ev.ts_ms, "s": symbol, "a": ev.trade_id}
                    a.update(p=ev.price, q=ev.qty, f=ev.trade_id, l=ev.trade_id, T=ev.ts_ms, m=ev.buyer_maker)
                    if not usdm:
                        a["M"] = True
                    self._send(conns, agg_key, a, ev.trade_id, ev.ts_ms)
            elif isinstance(ev, Bbo):
                conns = subs.get(bbo_key)
                if conns:
                    b: dict[str, Any] = {"u": ev.update_id, "s": symbol}
                    if coinm:
                        b["ps"] = pair
                    b.update(b=ev.bid, B=ev.bid_qty, a=ev.ask, A=ev.ask_qty)
                    if usdm:
                        b = {"e": "bookTicker", **b, "T": ev.ts_ms, "E": ev.ts_ms}
                    self._send(conns, bbo_key, b, None, ev.ts_ms)

        src.listeners.append(fan_out)

    def _depth_event(
        self,
        symbol: str,
        first: int,
        last: int,
        prev: int,
        bids: list[Level],
        asks: list[Level],
        event_ms: int,
        trans_ms: int,
    ) -> dict[str, Any]:
        """A ``depthUpdate`` payload (futures: with ``T``, ``pu``; COIN-M also ``ps``)."""
        data: dict[str, Any] = {"e": "depthUpdate", "E": event_ms}
        if self.usdm:
            data["T"] = trans_ms
        data["s"] = symbol
        if self.coinm:
            data["ps"] = self._pair(symbol)
        data.update(U=first, u=last)
        if self.usdm:
            data["pu"] = prev
        data["b"] = bids
        data["a"] = asks
        return data

    # ---- periodic streams ----
    def _tick(self, interval_s: float, ts_ms: int) -> None:
        """Push every subscribed stream whose interval is ``interval_s`` (called on the clock's ticks)."""
        for stream, conns in list(self.subs.items()):
            if not conns:
                continue
            lower, _, kind = stream.partition("@")
            if self.stream_interval(kind) != interval_s:
                continue
            symbol = lower.upper()
            src = self.sources.get(symbol)
            if src is None:
                continue
            if kind in self.depth_intervals:
                batch = self._batches.pop(stream, None)
                if batch is not None:
                    data = self._depth_event(
                        symbol, batch.first_id, batch.last_id, batch.prev_id,
                        list(batch.bids.values()), list(batch.asks.values()), ts_ms, batch.ts_ms,
                    )  # fmt: skip
                    self._send(conns, stream, data, batch.last_id, ts_ms, gap_symbol=symbol)
            elif kind.startswith("depth"):
                self._push_partial(conns, stream, kind, symbol, src, ts_ms)
            elif kind == "ticker":
                self._send(conns, stream, self._ws_ticker(symbol, src, ts_ms), None, ts_ms)
            elif kind == "miniTicker":
                self._send(conns, stream, self._ws_mini_ticker(symbol, src, ts_ms), None, ts_ms)
            elif kind.startswith("markPrice"):
                self._send(conns, stream, self._ws_mark_price(symbol, src, ts_ms), None, ts_ms)

    def _push_partial(
        self, conns: set[SimConnection], stream: str, kind: str, symbol: str, src: MarketSource, ts_ms: int
    ) -> None:
        last = src.last_update_id
        prev = self._partial_last.get(stream)
        if prev == last:
            return  # the book did not change since the last push
        self._partial_last[stream] = last
        m = _PARTIAL.match(kind)
        assert m is not None
        bids, asks = src.book.top(int(m.group(1)))
        if not self.usdm:
            self._send(conns, stream, {"lastUpdateId": last, "bids": bids, "asks": asks}, last, ts_ms)
            return
        first = prev + 1 if prev is not None else last
        pu = prev if prev is not None else last - 1
        data = self._depth_event(symbol, first, last, pu, bids, asks, ts_ms, ts_ms)
        self._send(conns, stream, data, last, ts_ms)

    def _stats(self, src: MarketSource) -> dict[str, Any]:
        """Rolling statistics of ``src`` shared by the REST and WS tickers (strings as Binance sends them)."""
        bids, asks = src.book.top(1)
        last = src.last_price
        open_ = src.open_price if src.open_price != "0" else last
        change = float(last) - float(open_)
        volume = src.volume
        last_trade = src.trades.newest_id
        return {
            "last": last, "open": open_, "change": f"{change:.8f}",
            "pct": f"{(change / float(open_) * 100) if float(open_) else 0.0:.3f}",
            "high": max(last, open_, key=float), "low": min(last, open_, key=float),
            "volume": f"{volume:.8f}", "quote_volume": f"{volume * float(last):.8f}",
            "base_volume": "0",
            "bid": bids[0] if bids else ("0", "0"), "ask": asks[0] if asks else ("0", "0"),
            "first_id": src.trades.oldest_id or 0, "last_id": last_trade or 0, "count": len(src.trades),
            "last_qty": "0" if last_trade is None else src.trades.select(1, newest=True)[0].qty,
        }  # fmt: skip

    def _ws_ticker(self, symbol: str, src: MarketSource, ts_ms: int) -> dict[str, Any]:
        """``24hrTicker`` ("Individual Symbol Ticker Streams")."""
        st = self._stats(src)
        data: dict[str, Any] = {"e": "24hrTicker", "E": ts_ms, "s": symbol}
        if self.coinm:
            data["ps"] = self._pair(symbol)
        data.update(p=st["change"], P=st["pct"], w=st["last"])
        if not self.usdm:
            data["x"] = st["open"]
        data.update(c=st["last"], Q=st["last_qty"])
        if not self.usdm:
            data.update(b=st["bid"][0], B=st["bid"][1], a=st["ask"][0], A=st["ask"][1])
        data.update(o=st["open"], h=st["high"], l=st["low"], v=st["volume"])
        data["q"] = st["base_volume"] if self.coinm else st["quote_volume"]
        data.update(O=ts_ms - 86_400_000, C=ts_ms, F=st["first_id"], L=st["last_id"], n=st["count"])
        return data

    def _ws_mini_ticker(self, symbol: str, src: MarketSource, ts_ms: int) -> dict[str, Any]:
        """``24hrMiniTicker`` ("Individual Symbol Mini Ticker Stream")."""
        st = self._stats(src)
        data: dict[str, Any] = {"e": "24hrMiniTicker", "E": ts_ms, "s": symbol}
        if self.coinm:
            data["ps"] = self._pair(symbol)
        data.update(c=st["last"], o=st["open"], h=st["high"], l=st["low"], v=st["volume"])
        data["q"] = st["base_volume"] if self.coinm else st["quote_volume"]
        return data

    def _mark(self, src: MarketSource) -> str:
        bids, asks = src.book.top(1)
        if bids and asks:
            return f"{(float(bids[0][0]) + float(asks[0][0])) / 2:.8f}"
        return f"{float(src.last_price):.8f}"

    def _ws_mark_price(self, symbol: str, src: MarketSource, ts_ms: int) -> dict[str, Any]:
        """``markPriceUpdate`` ("Mark Price Stream"); mark = index = the book's mid price."""
        mark = self._mark(src)
        next_funding = (ts_ms // _FUNDING_PERIOD_MS + 1) * _FUNDING_PERIOD_MS
        return {"e": "markPriceUpdate", "E": ts_ms, "s": symbol, "p": mark, "i": mark, "P": mark,
                "r": _FUNDING_RATE, "T": next_funding}  # fmt: skip

    def _send(
        self,
        conns: set[SimConnection],
        stream: str,
        data: dict[str, Any],
        ident: int | None,
        ts_ms: int,
        gap_symbol: str | None = None,
    ) -> None:
        raw = _dumps(data)
        wrapped: str | None = None
        for conn in tuple(conns):
            if gap_symbol is not None and conn.take_gap(gap_symbol):
                conn.note_skipped(stream)
                continue
            if conn.combined:
                if wrapped is None:
                    wrapped = f'{{"stream":"{stream}","data":{raw}}}'
                conn.send_data(wrapped, stream, ident, ts_ms)
            else:
                conn.send_data(raw, stream, ident, ts_ms)

    # ---- REST ----
    def _json(self, body: Any, verdict: Verdict, status: int = 200) -> web.Response:
        headers = {self._weight_header: str(verdict.used)}
        return web.Response(
            text=_dumps(body), status=status, content_type="application/json", headers=headers
        )

    def _charge(self, weight: int, path: str = "") -> tuple[Verdict, web.Response | None]:
        self.rest_requests += 1
        self.count_rest(path, weight)
        v = self.weights.charge(weight)
        if v.status == 200:
            return v, None
        self.count_limited(v.status)
        headers = {self._weight_header: str(v.used), "Retry-After": str(v.retry_after_s)}
        _, num, unit = _window_label(self.weights.window_s)
        if v.status == 429:
            msg = (
                f"Too much request weight used; current limit is {self.weights.limit} request weight per "
                f"{num} {unit}. Please use WebSocket Streams for live updates to avoid polling the API."
            )
        else:
            msg = "Way too much request weight used; IP banned (simulated). Please use WebSocket Streams."
        body = _dumps({"code": -1003, "msg": msg})
        return v, web.Response(text=body, status=v.status, content_type="application/json", headers=headers)

    def _bad(self, code: int, msg: str, verdict: Verdict) -> web.Response:
        return self._json({"code": code, "msg": msg}, verdict, status=400)

    async def _rest_ping(self, request: web.Request) -> web.Response:
        v, err = self._charge(1, request.path)
        return err or self._json({}, v)

    async def _rest_time(self, request: web.Request) -> web.Response:
        v, err = self._charge(1, request.path)
        return err or self._json({"serverTime": self.clock.time_ns() // 1_000_000}, v)

    def _rate_limits(self, info: dict[str, Any]) -> None:
        _, num, unit = _window_label(self.weights.window_s)
        for rl in info["rateLimits"]:
            if rl["rateLimitType"] == "REQUEST_WEIGHT":
                rl.update(limit=self.weights.limit, interval=unit, intervalNum=num)

    def exchange_info(self) -> dict[str, Any]:
        """The recorded exchangeInfo trimmed to the served symbols, with this server's REQUEST_WEIGHT
        limit."""
        info = copy.deepcopy(_recorded_exchange_info(self.info_recording))
        by_symbol = {s["symbol"]: s for s in info["symbols"]}
        template = by_symbol["BTCUSDT"]
        out = []
        for sym in self.symbols:
            entry = by_symbol.get(sym)
            if entry is None:
                entry = copy.deepcopy(template)
                base = sym[:-4] if sym.endswith("USDT") else sym[:3]
                entry.update(symbol=sym, baseAsset=base, pair=sym)
            entry["status"] = "TRADING"
            out.append(entry)
        info["symbols"] = out
        info["serverTime"] = self.clock.time_ns() // 1_000_000
        self._rate_limits(info)
        return info

    async def _rest_exchange_info(self, request: web.Request) -> web.Response:
        v, err = self._charge(self.exchange_info_weight, request.path)
        return err or self._json(self.exchange_info(), v)

    def depth_weight(self, limit: int) -> int:
        return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250

    def valid_depth_limit(self, limit: int) -> bool:
        return 1 <= limit <= 5000

    async def _rest_depth(self, request: web.Request) -> web.Response:
        try:
            limit = int(request.query.get("limit", "100" if not self.usdm else "500"))
        except ValueError:
            limit = -1
        v, err = self._charge(self.depth_weight(max(limit, 1)), request.path)
        if err is not None:
            return err
        symbol = request.query.get("symbol", "")
        if not symbol:
            return self._bad(
                -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.", v
            )
        if not self.valid_depth_limit(limit):
            return self._bad(-1100, "Illegal characters found in parameter 'limit'.", v)
        src = self.source(symbol)
        if src is None:
            return self._bad(-1121, "Invalid symbol.", v)
        bids, asks = src.book.top(limit)
        body: dict[str, Any] = {"lastUpdateId": src.last_update_id}
        if self.usdm:
            now_ms = self.clock.time_ns() // 1_000_000
            body.update(E=now_ms, T=now_ms)
        if self.coinm:
            body.update(symbol=symbol, pair=self._pair(symbol))
        body.update(bids=bids, asks=asks)
        return self._json(body, v)

    def _ticker(self, symbol: str, src: MarketSource) -> dict[str, Any]:
        st, now_ms = self._stats(src), self.clock.time_ns() // 1_000_000
        out: dict[str, Any] = {"symbol": symbol}
        if self.coinm:
            out["pair"] = self._pair(symbol)
        out.update(priceChange=st["change"], priceChangePercent=st["pct"], weightedAvgPrice=st["last"])
        if not self.usdm:
            out["prevClosePrice"] = st["open"]
        out.update(lastPrice=st["last"], lastQty=st["last_qty"])
        if not self.usdm:
            out.update(bidPrice=st["bid"][0], bidQty=st["bid"][1], askPrice=st["ask"][0], askQty=st["ask"][1])
        out.update(openPrice=st["open"], highPrice=st["high"], lowPrice=st["low"], volume=st["volume"])
        if self.coinm:
            out["baseVolume"] = st["base_volume"]
        else:
            out["quoteVolume"] = st["quote_volume"]
        out.update(
            openTime=now_ms - 86_400_000, closeTime=now_ms, firstId=st["first_id"], lastId=st["last_id"]
        )
        out["count"] = st["count"]
        return out

    async def _rest_ticker_24hr(self, request: web.Request) -> web.Response:
        return self._per_symbol(request, *self.ticker_weights, self._ticker)

    def _per_symbol(
        self,
        request: web.Request,
        weight_one: int,
        weight_all: int,
        render: Callable[[str, MarketSource], dict[str, Any]],
    ) -> web.Response:
        """A ticker-style endpoint: one symbol (``?symbol=``) or all of them, charged the matching weight. COIN-M
        answers a list even for one symbol (its docs' response examples)."""
        symbol = request.query.get("symbol")
        v, err = self._charge(weight_one if symbol else weight_all, request.path)
        if err is not None:
            return err
        if symbol:
            src = self.source(symbol)
            if src is None:
                return self._bad(-1121, "Invalid symbol.", v)
            one = render(symbol, src)
            return self._json([one] if self.coinm else one, v)
        rows = []
        for s in self.symbols:
            src = self.source(s)
            if src is not None:
                rows.append(render(s, src))
        return self._json(rows, v)

    def _book_ticker(self, symbol: str, src: MarketSource) -> dict[str, Any]:
        bids, asks = src.book.top(1)
        bid, bq = bids[0] if bids else ("0", "0")
        ask, aq = asks[0] if asks else ("0", "0")
        out: dict[str, Any] = {"symbol": symbol}
        if self.coinm:
            out["pair"] = self._pair(symbol)
        out.update(bidPrice=bid, bidQty=bq, askPrice=ask, askQty=aq)
        if self.usdm:
            out.update(time=self.clock.time_ns() // 1_000_000, lastUpdateId=src.last_update_id)
        return out

    async def _rest_book_ticker(self, request: web.Request) -> web.Response:
        return self._per_symbol(request, *self.book_ticker_weights, self._book_ticker)

    def _price(self, symbol: str, src: MarketSource) -> dict[str, Any]:
        out: dict[str, Any] = {"symbol": symbol}
        if self.coinm:
            out["ps"] = self._pair(symbol)
        out["price"] = src.last_price
        if self.usdm:
            out["time"] = self.clock.time_ns() // 1_000_000
        return out

    async def _rest_ticker_price(self, request: web.Request) -> web.Response:
        return self._per_symbol(request, *self.price_weights, self._price)

    def _premium(self, symbol: str, src: MarketSource) -> dict[str, Any]:
        now_ms = self.clock.time_ns() // 1_000_000
        mark = self._mark(src)
        out: dict[str, Any] = {"symbol": symbol}
        if self.coinm:
            out["pair"] = self._pair(symbol)
        out.update(markPrice=mark, indexPrice=mark, estimatedSettlePrice=mark, lastFundingRate=_FUNDING_RATE)
        out.update(
            interestRate="0.00010000", nextFundingTime=(now_ms // _FUNDING_PERIOD_MS + 1) * _FUNDING_PERIOD_MS
        )
        out["time"] = now_ms
        return out

    async def _rest_premium_index(self, request: web.Request) -> web.Response:
        return self._per_symbol(request, *self.premium_weights, self._premium)

    # ---- trade history ----
    def _trade_query(self, request: web.Request) -> tuple[MarketSource, int]:
        """``(source, limit)`` of a trade endpoint.

        Raises:
            _BadRequest: missing/unknown symbol, bad limit.
        """
        symbol = request.query.get("symbol", "")
        if not symbol:
            raise _BadRequest(
                -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed."
            )
        limit = _int_arg(request, "limit")
        if limit is None:
            limit = 500
        if limit < 1:
            raise _BadRequest(
                -1100,
                f"Illegal characters found in parameter 'limit'; legal range is '1 - {self.trades_max_limit}'.",
            )
        src = self.source(symbol)
        if src is None:
            raise _BadRequest(-1121, "Invalid symbol.")
        return src, min(limit, self.trades_max_limit)

    def _agg_row(self, t: Trade) -> dict[str, Any]:
        row: dict[str, Any] = {"a": t.trade_id, "p": t.price, "q": t.qty, "f": t.trade_id, "l": t.trade_id}
        row.update(T=t.ts_ms, m=t.buyer_maker)
        if not self.usdm:
            row["M"] = True
        return row

    def _trade_row(self, t: Trade, symbol: str) -> dict[str, Any]:
        row: dict[str, Any] = {"id": t.trade_id, "price": t.price, "qty": t.qty}
        if self.coinm:
            base = Decimal(t.qty) * contract_size(symbol) / Decimal(t.price)
            row["baseQty"] = format(base.quantize(Decimal("1e-8")).normalize(), "f")
        else:
            row["quoteQty"] = _quote_qty(t.price, t.qty)
        row.update(time=t.ts_ms, isBuyerMaker=t.buyer_maker)
        if not self.usdm:
            row["isBestMatch"] = True
        return row

    async def _rest_agg_trades(self, request: web.Request) -> web.Response:
        v, err = self._charge(self.agg_trades_weight, request.path)
        if err is not None:
            return err
        try:
            src, limit = self._trade_query(request)
            from_id = _int_arg(request, "fromId")
            start, end = _int_arg(request, "startTime"), _int_arg(request, "endTime")
        except _BadRequest as exc:
            return self._bad(exc.code, exc.msg, v)
        if self.usdm and start is not None and end is not None and end - start >= 3_600_000:
            return self._bad(-1127, "More than 1 hours between startTime and endTime.", v)
        newest = from_id is None and start is None
        trades = src.trades.select(limit, min_id=from_id, start_ms=start, end_ms=end, newest=newest)
        return self._json([self._agg_row(t) for t in trades], v)

    async def _rest_trades(self, request: web.Request) -> web.Response:
        v, err = self._charge(self.trades_weight, request.path)
        if err is not None:
            return err
        try:
            src, limit = self._trade_query(request)
        except _BadRequest as exc:
            return self._bad(exc.code, exc.msg, v)
        rows = [self._trade_row(t, src.symbol) for t in src.trades.select(limit, newest=True)]
        return self._json(rows, v)

    async def _rest_historical_trades(self, request: web.Request) -> web.Response:
        """Old trades. Futures document it as ``MARKET_DATA`` (an ``X-MBX-APIKEY`` header is required; the
        simulator checks it is present and non-empty, not its value): without it HTTP 401 ``-2014``."""
        v, err = self._charge(self.historical_trades_weight, request.path)
        if err is not None:
            return err
        if self.usdm and not request.headers.get("X-MBX-APIKEY"):
            return self._json({"code": -2014, "msg": "API-key format invalid."}, v, status=401)
        try:
            src, limit = self._trade_query(request)
            from_id = _int_arg(request, "fromId")
        except _BadRequest as exc:
            return self._bad(exc.code, exc.msg, v)
        trades = src.trades.select(limit, min_id=from_id, newest=from_id is None)
        return self._json([self._trade_row(t, src.symbol) for t in trades], v)


_USDM_MARKET_STREAMS = (
    "aggTrade",
    "markPrice",
    "ticker",
    "kline",
    "miniTicker",
    "forceOrder",
    "compositeIndex",
)


class BinanceUsdmServer(BinanceServer):
    """Binance USDⓈ-M futures: routed ``/public`` and ``/market`` WS paths, ``pu`` chain (module doc)."""

    name = "binanceusdm"
    trade_stream = "aggTrade"
    hosts: ClassVar[tuple[str, ...]] = (
        # "General Info" and "Websocket Market Streams" of the USDⓈ-M docs
        "https://fapi.binance.com",
        "wss://fstream.binance.com",
    )
    market_kind = "usdm"
    rest_prefix = "/fapi/v1"
    info_recording = "cryptofeed_binance_BINANCE_FUTURES.0.gz"
    usdm = True
    depth_intervals: ClassVar[dict[str, float]] = {
        "depth": 0.25,
        "depth@0ms": 0.0,
        "depth@100ms": 0.1,
        "depth@250ms": 0.25,
        "depth@500ms": 0.5,
    }
    partial_default_s = 0.25
    partial_speeds_ms: ClassVar[tuple[int, ...]] = (100, 250, 500)
    #: "Individual Symbol Ticker Streams" / "... Mini Ticker Stream" of the USDⓈ-M WS docs: 2000 ms
    ticker_interval_s = 2.0
    #: "Mark Price Stream": 3000 ms, or 1000 ms with ``@1s``
    mark_intervals: ClassVar[dict[str, float]] = {"markPrice": 3.0, "markPrice@1s": 1.0}
    #: "Compressed/Aggregate Trades List" and "Recent Trades List" of the USDⓈ-M market-data REST docs
    exchange_info_weight = 1
    agg_trades_weight = 20
    trades_weight = 5
    historical_trades_weight = 20
    ticker_weights = (1, 40)
    book_ticker_weights = (2, 5)
    price_weights = (1, 2)
    premium_weights = (1, 1)

    def ws_prefixes(self) -> tuple[str, ...]:
        return ("", "/public", "/market")

    def route_carries(self, route: str, stream: str) -> bool:
        kind = stream.split("@", 2)[1] if "@" in stream else ""
        is_market = kind.split("_", 1)[0] in _USDM_MARKET_STREAMS
        if route.startswith("/market/"):
            return is_market
        return not is_market  # /public and the legacy un-routed paths carry public streams only

    def depth_weight(self, limit: int) -> int:
        return 2 if limit <= 50 else 5 if limit <= 100 else 10 if limit <= 500 else 20

    def valid_depth_limit(self, limit: int) -> bool:
        return limit in (5, 10, 20, 50, 100, 500, 1000)


class BinanceCoinmServer(BinanceUsdmServer):
    """Binance COIN-M futures (``dapi``/``dstream``): inverse perpetuals quoted in USD, sized in contracts, settled
    in the base coin; ``pu``-linked depth diffs; one WS route (no ``/public``/``/market`` split). See the module
    doc."""

    name = "binancecoinm"
    hosts: ClassVar[tuple[str, ...]] = (
        # "General Info" and "Websocket Market Streams" (Connect) of the COIN-M docs
        "https://dapi.binance.com",
        "wss://dstream.binance.com",
    )
    market_kind = "coinm"
    rest_prefix = "/dapi/v1"
    coinm = True
    #: "Individual Symbol Ticker Streams" of the COIN-M WS docs: 500 ms
    ticker_interval_s = 0.5
    #: COIN-M "Exchange Information" weight 1, "Order Book" 2-20, "Compressed/Aggregate Trades List" 20, "Recent
    #: Trades List" 5, "24hr Ticker" 1/40, "Symbol Order Book Ticker" 2/5, "Symbol Price Ticker" 1/2,
    #: "Index Price and Mark Price" 10
    premium_weights = (10, 10)

    def ws_prefixes(self) -> tuple[str, ...]:
        return ("",)

    def route_carries(self, route: str, stream: str) -> bool:
        return True

    def _stats(self, src: MarketSource) -> dict[str, Any]:
        """Adds the base-coin volume: contracts x contract size (USD) / last price."""
        st = super()._stats(src)
        px = float(st["last"])
        size = contract_size(src.symbol)
        st["base_volume"] = f"{(src.volume * size / px) if px > 0 else 0.0:.8f}"
        return st

    def exchange_info(self) -> dict[str, Any]:
        """COIN-M exchangeInfo of the served symbols, built from the documented fields ("Exchange Information" of
        https://developers.binance.com/docs/derivatives/coin-margined-futures/market-data/rest-api): perpetuals
        (``contractType: PERPETUAL``, ``deliveryDate`` 4133404800000) with ``contractSize`` 100 (BTC) or 10 USD,
        ``marginAsset`` = base coin, quantities in whole contracts."""
        now_ms = self.clock.time_ns() // 1_000_000
        symbols = []
        for sym in self.symbols:
            pair = self._pair(sym)
            base = pair[:-3] if pair.endswith("USD") else pair
            tick = "0.1" if base == "BTC" else "0.01"
            symbols.append({
                "symbol": sym, "pair": pair, "contractType": "PERPETUAL", "deliveryDate": 4133404800000,
                "onboardDate": 1597042800000, "contractStatus": "TRADING", "contractSize": contract_size(sym),
                "marginAsset": base, "maintMarginPercent": "2.5000", "requiredMarginPercent": "5.0000",
                "baseAsset": base, "quoteAsset": "USD", "pricePrecision": 1 if base == "BTC" else 2,
                "quantityPrecision": 0, "baseAssetPrecision": 8, "quotePrecision": 8, "equalQtyPrecision": 4,
                "maxMoveOrderLimit": 10000, "triggerProtect": "0.0500", "underlyingType": "COIN",
                "underlyingSubType": [], "liquidationFee": "0.015000", "marketTakeBound": "0.05",
                "filters": [
                    {"filterType": "PRICE_FILTER", "minPrice": tick, "maxPrice": "4529764", "tickSize": tick},
                    {"filterType": "LOT_SIZE", "stepSize": "1", "maxQty": "1000000", "minQty": "1"},
                    {"filterType": "MARKET_LOT_SIZE", "stepSize": "1", "maxQty": "60000", "minQty": "1"},
                    {"filterType": "MAX_NUM_ORDERS", "limit": 200},
                    {"filterType": "PERCENT_PRICE", "multiplierUp": "1.0500", "multiplierDown": "0.9500",
                     "multiplierDecimal": 4},
                ],
                "orderTypes": ["LIMIT", "MARKET", "STOP", "STOP_MARKET", "TAKE_PROFIT", "TAKE_PROFIT_MARKET",
                               "TRAILING_STOP_MARKET"],
                "timeInForce": ["GTC", "IOC", "FOK", "GTX"],
            })  # fmt: skip
        info: dict[str, Any] = {
            "exchangeFilters": [],
            "rateLimits": [
                {"interval": "MINUTE", "intervalNum": 1, "limit": 2400, "rateLimitType": "REQUEST_WEIGHT"},
                {"interval": "MINUTE", "intervalNum": 1, "limit": 1200, "rateLimitType": "ORDERS"},
            ],
            "serverTime": now_ms,
            "symbols": symbols,
            "timezone": "UTC",
        }
        self._rate_limits(info)
        return info


register(
    ServerSpec(
        "binance",
        BinanceServer,
        port_offset=0,
        rules=BINANCE_SPOT_RULES,
        symbols=("BTCUSDT", "ETHUSDT"),
        replay_kinds=("spot",),
    )
)
register(
    ServerSpec(
        "binanceusdm",
        BinanceUsdmServer,
        port_offset=1,
        rules=BINANCE_USDM_RULES,
        symbols=("BTCUSDT", "ETHUSDT"),
        replay_kinds=("usdm",),
    )
)
register(
    ServerSpec(
        "binancecoinm",
        BinanceCoinmServer,
        port_offset=3,
        rules=BINANCE_COINM_RULES,
        symbols=("BTCUSD_PERP", "ETHUSD_PERP"),
        replay_kinds=("coinm",),
    )
)
