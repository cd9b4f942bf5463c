"""Simulated Binance spot and USDⓈ-M futures: WebSocket streams plus the REST endpoints that clients (and ccxt
``load_markets``/``fetch_time``/``fetch_order_book``/``fetch_trades``) call.

Official sources: spot https://developers.binance.com/docs/binance-spot-api-docs/web-socket-streams (WS) and
https://developers.binance.com/docs/binance-spot-api-docs/rest-api/market-data-endpoints (REST); USDⓈ-M
https://developers.binance.com/docs/derivatives/usds-margined-futures/websocket-market-streams and
https://developers.binance.com/docs/derivatives/usds-margined-futures/market-data/rest-api .

WebSocket paths (the ``ws_url`` of :meth:`ExchangeServer.ws_url` is ``ws://127.0.0.1:PORT``; append the path):

- spot: ``/ws``, ``/ws/<s1>/<s2>`` (raw payloads), ``/stream?streams=<s1>/<s2>``
  (``{"stream":..,"data":..}``).
- USD-M: the same under ``/public`` (``@depth*``, ``@bookTicker``, ``@trade``) and ``/market`` (``@aggTrade``,
  ``@ticker``, ``@markPrice``...); legacy ``/ws``/``/stream`` carry public streams only. A stream on the wrong
  route is acknowledged and delivers nothing (Binance's 2026-03 routed-URL change notice for USDⓈ-M).

Live control: ``SUBSCRIBE``/``UNSUBSCRIBE``/``LIST_SUBSCRIPTIONS``/``SET_PROPERTY``/``GET_PROPERTY`` with
``{"result":..,"id":..}`` answers, errors ``{"code":2|3|0,"msg":..,"id":..}`` ("Live Subscribing/Unsubscribing to
streams" and "Error Messages" of the spot WS page). Streams served per symbol: ``@trade``, ``@aggTrade`` (one
trade per aggregate, ``a == f == l``; the trade ids of both come from one counter per symbol), ``@depth``,
``@depth@100ms`` (USD-M also ``@depth@0ms``/``@250ms``/``@500ms``; every delta is sent without time aggregation),
``@bookTicker``. Unknown but well-formed streams are accepted and deliver nothing (observed behaviour, not
documented).

REST (every answer carries ``X-MBX-USED-WEIGHT-1M``; weights counted in :class:`WeightLimiter`, 429 then 418):

=====================================  ==========  ============  ================================================
endpoint                               spot weight USD-M weight  notes
=====================================  ==========  ============  ================================================
``ping``, ``time``                     1           1
``exchangeInfo``                       20          1             recorded (cryptofeed sample data), trimmed to the
                                                                 served symbols; a missing one is cloned from
                                                                 BTCUSDT
``depth?symbol=&limit=``               5-250       2-20          by limit, as documented
``ticker/24hr``, ``ticker/bookTicker`` 2 / 80, 4   1 / 40, 2     one symbol / all
``aggTrades?symbol=&fromId=&startTime  4           20            ``[{"a","p","q","f","l","T","m"(,"M")}]``
&endTime=&limit=``
``trades?symbol=&limit=``              25          5             most recent, ``[{"id","price","qty","quoteQty",
                                                                 "time","isBuyerMaker"(,"isBestMatch")}]``
``historicalTrades?symbol=&fromId=``   25          (not served)  spot: no API key needed (the current docs list
                                                                 no security type for it)
=====================================  ==========  ============  ================================================

Trade queries (``limit`` default 500, max 1000; larger values are served as 1000): results are in id order,
oldest first. Without ``fromId``/``startTime``/``endTime`` the newest ``limit`` trades; with ``fromId`` and/or
``startTime`` the oldest matching ones from there (``fromId``, ``startTime``, ``endTime`` all inclusive); with
only ``endTime`` the newest ones up to it. USD-M rejects ``endTime - startTime >= 1 h`` with -1127 (its docs:
"must be less than 1 hour"). Each symbol keeps its last :data:`~cryptolink.simulator.market.TRADE_HISTORY`
trades: asking for older ids or times returns what is kept, starting at the oldest kept trade.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from decimal import Decimal
from functools import lru_cache
from typing import Any

import msgspec
from aiohttp import web

from cryptolink import recordings
from cryptolink.simulator.market import Bbo, Depth, Event, MarketSource, Trade
from cryptolink.simulator.ratelimit import Verdict, WeightLimiter
from cryptolink.simulator.server import ExchangeServer, SimConnection

__all__ = ["BinanceServer", "BinanceUsdmServer"]

_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder()


def _dumps(obj: Any) -> str:
    return _enc.encode(obj).decode()


@lru_cache(maxsize=4)
def _recorded_exchange_info(name: str) -> dict[str, Any]:
    rec = next(recordings.iter_cryptofeed_http(name))
    info: dict[str, Any] = _dec.decode(rec.body)
    return info


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


class BinanceServer(ExchangeServer):
    """Binance spot; see the module doc for what is served and the sources."""

    name = "binance"
    market_kind = "spot"
    rest_prefix = "/api/v3"
    info_recording = "cryptofeed_binance_BINANCE.0.gz"
    depth_streams: tuple[str, ...] = ("depth", "depth@100ms")
    usdm = False
    #: request weights of the trade endpoints ("Market Data endpoints" of the spot REST docs)
    agg_trades_weight = 4
    trades_weight = 25
    historical_trades_weight = 25
    trades_max_limit = 1000

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.subs: dict[str, set[SimConnection]] = {}
        self.weights = WeightLimiter(
            self.rules.rest_weight_limit, self.rules.rest_window_s, self.rules.ban_s, self.clock
        )
        self.rest_requests = 0

    # ---- routes ----
    def ws_prefixes(self) -> tuple[str, ...]:
        return ("",)

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
        app.router.add_get(p + "/aggTrades", self._rest_agg_trades)
        app.router.add_get(p + "/trades", self._rest_trades)
        if not self.usdm:
            app.router.add_get(p + "/historicalTrades", self._rest_historical_trades)

    # ---- routing of streams (USD-M overrides)
    # -------------------------------------------------------------------
    def route_carries(self, route: str, stream: str) -> bool:
        """Whether a connection on ``route`` (``/ws``, ``/public/stream``...) receives ``stream``."""
        return True

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
        symbol = stream.split("@", 1)[0].upper()
        self.source(symbol)
        conn.last_activity = self.clock.monotonic()

    def _unsubscribe(self, conn: SimConnection, stream: str) -> None:
        conn.subscriptions.pop(stream, None)
        subs = self.subs.get(stream)
        if subs is not None:
            subs.discard(conn)
            if not subs:
                del self.subs[stream]

    async def on_text(self, conn: SimConnection, text: str) -> None:
        try:
            msg = _dec.decode(text)
        except msgspec.DecodeError as exc:
            conn.send_ctrl(_dumps({"code": 3, "msg": f"Invalid JSON: {exc}", "id": None}))
            return
        if not isinstance(msg, dict):
            conn.send_ctrl(_dumps({"code": 3, "msg": "Invalid JSON: expected an object", "id": None}))
            return
        req_id = msg.get("id")
        if req_id is not None and not isinstance(req_id, int | str):
            conn.send_ctrl(_dumps({"code": 2, "msg": "Invalid request: invalid id", "id": None}))
            return
        method = msg.get("method")
        params = msg.get("params", [])
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not isinstance(params, list) or not all(isinstance(p, str) and p for p in params):
                conn.send_ctrl(
                    _dumps({"code": 2, "msg": "Invalid request: params must be stream names", "id": req_id})
                )
                return
            if conn.reject_next:
                conn.reject_next = False
                conn.send_ctrl(
                    _dumps({"code": 2, "msg": "Invalid request: rejected (simulated fault)", "id": req_id})
                )
                return
            if method == "SUBSCRIBE":
                if len(set(conn.subscriptions) | set(params)) > self.rules.max_streams:
                    conn.send_ctrl(
                        _dumps({"code": 2, "msg": "Invalid request: too many streams", "id": req_id})
                    )
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
                conn.send_ctrl(_dumps({"code": 0, "msg": "Unknown property", "id": req_id}))
        elif method == "GET_PROPERTY":
            if isinstance(params, list) and params == ["combined"]:
                conn.send_ctrl(_dumps({"result": conn.combined, "id": req_id}))
            else:
                conn.send_ctrl(_dumps({"code": 0, "msg": "Unknown property", "id": req_id}))
        else:
            conn.send_ctrl(
                _dumps({"code": 2, "msg": f"Invalid request: unknown variant `{method}`", "id": req_id})
            )

    def send_notice(self, conn: SimConnection) -> None:
        event = {"e": "serverShutdown", "E": self.clock.time_ns() // 1_000_000}
        if conn.combined:
            conn.send_ctrl(_dumps({"stream": "!serverShutdown", "data": event}))
        else:
            conn.send_ctrl(_dumps(event))

    # ---- fan-out ----
    def attach_source(self, symbol: str, src: MarketSource) -> None:
        lower = symbol.lower()
        depth_keys = [f"{lower}@{d}" for d in self.depth_streams]
        trade_key, agg_key, bbo_key = f"{lower}@trade", f"{lower}@aggTrade", f"{lower}@bookTicker"
        subs = self.subs
        usdm = self.usdm

        def fan_out(ev: Event) -> None:
            if isinstance(ev, Depth):
                for key in depth_keys:
                    conns = subs.get(key)
                    if not conns:
                        continue
                    data: dict[str, Any] = {"e": "depthUpdate", "E": ev.ts_ms}
                    if usdm:
                        data["T"] = ev.ts_ms
                    data.update(s=symbol, U=ev.first_id, u=ev.last_id)
                    if usdm:
                        data["pu"] = ev.prev_id
                    data["b"] = ev.bids
                    data["a"] = ev.asks
                    self._send(conns, key, data, ev.last_id, ev.ts_ms, gap_symbol=symbol)
            elif isinstance(ev, Trade):
                conns = subs.get(trade_key)
                if conns:
                    t: dict[str, Any] = {"e": "trade", "E": ev.ts_ms, "s": symbol, "t": ev.trade_id}
                    t.update(p=ev.price, q=ev.qty, T=ev.ts_ms, m=ev.buyer_maker)
                    if not usdm:
                        t["M"] = True
                    self._send(conns, trade_key, t, ev.trade_id, ev.ts_ms)
                conns = subs.get(agg_key)
                if conns:
                    a: dict[str, Any] = {"e": "aggTrade", "E": ev.ts_ms, "s": symbol, "a": ev.trade_id}
                    a.update(p=ev.price, q=ev.qty, f=ev.trade_id, l=ev.trade_id, T=ev.ts_ms, m=ev.buyer_maker)
                    self._send(conns, agg_key, a, ev.trade_id, ev.ts_ms)
            elif isinstance(ev, Bbo):
                conns = subs.get(bbo_key)
                if conns:
                    b: dict[str, Any] = {"u": ev.update_id, "s": symbol, "b": ev.bid, "B": ev.bid_qty}
                    b.update(a=ev.ask, A=ev.ask_qty)
                    if usdm:
                        b = {"e": "bookTicker", **b, "T": ev.ts_ms, "E": ev.ts_ms}
                    self._send(conns, bbo_key, b, None, ev.ts_ms)

        src.listeners.append(fan_out)

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
        headers = {"X-MBX-USED-WEIGHT-1M": str(verdict.used)}
        return web.Response(
            text=_dumps(body), status=status, content_type="application/json", headers=headers
        )

    def _charge(self, weight: int) -> tuple[Verdict, web.Response | None]:
        self.rest_requests += 1
        v = self.weights.charge(weight)
        if v.status == 200:
            return v, None
        headers = {"X-MBX-USED-WEIGHT-1M": str(v.used), "Retry-After": str(v.retry_after_s)}
        if v.status == 429:
            msg = (
                "Too many requests; current limit of IP(127.0.0.1) request weight is "
                f"{self.weights.limit} per minute."
            )
        else:
            msg = "Way too many requests; IP(127.0.0.1) banned (simulated)."
        body = _dumps({"code": -1003, "msg": msg})
        return v, web.Response(text=body, status=v.status, content_type="application/json", headers=headers)

    def _bad(self, code: int, msg: str, verdict: Verdict) -> web.Response:
        return self._json({"code": code, "msg": msg}, verdict, status=400)

    async def _rest_ping(self, request: web.Request) -> web.Response:
        v, err = self._charge(1)
        return err or self._json({}, v)

    async def _rest_time(self, request: web.Request) -> web.Response:
        v, err = self._charge(1)
        return err or self._json({"serverTime": self.clock.time_ns() // 1_000_000}, v)

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
        for rl in info["rateLimits"]:
            if rl["rateLimitType"] == "REQUEST_WEIGHT":
                rl["limit"] = self.weights.limit
        return info

    async def _rest_exchange_info(self, request: web.Request) -> web.Response:
        v, err = self._charge(20 if not self.usdm else 1)
        return err or self._json(self.exchange_info(), v)

    def depth_weight(self, limit: int) -> int:
        return 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250

    def valid_depth_limit(self, limit: int) -> bool:
        return 1 <= limit <= 5000

    async def _rest_depth(self, request: web.Request) -> web.Response:
        try:
            limit = int(request.query.get("limit", "100"))
        except ValueError:
            limit = -1
        v, err = self._charge(self.depth_weight(max(limit, 1)))
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
        body.update(bids=bids, asks=asks)
        return self._json(body, v)

    def _ticker(self, symbol: str, src: MarketSource) -> dict[str, Any]:
        (bids, asks), now_ms = src.book.top(1), self.clock.time_ns() // 1_000_000
        bid, bq = bids[0] if bids else ("0", "0")
        ask, aq = asks[0] if asks else ("0", "0")
        last, open_ = src.last_price, src.open_price if src.open_price != "0" else src.last_price
        change = float(last) - float(open_)
        return {
            "symbol": symbol, "priceChange": f"{change:.8f}",
            "priceChangePercent": f"{(change / float(open_) * 100) if float(open_) else 0.0:.3f}",
            "weightedAvgPrice": last, "prevClosePrice": open_, "lastPrice": last, "lastQty": "0",
            "bidPrice": bid, "bidQty": bq, "askPrice": ask, "askQty": aq, "openPrice": open_,
            "highPrice": max(last, open_, key=float), "lowPrice": min(last, open_, key=float),
            "volume": f"{src.volume:.8f}", "quoteVolume": f"{src.volume * float(last):.8f}",
            "openTime": now_ms - 86_400_000, "closeTime": now_ms, "firstId": 1, "lastId": src.last_trade_id,
            "count": src.last_trade_id,
        }  # fmt: skip

    async def _rest_ticker_24hr(self, request: web.Request) -> web.Response:
        return self._per_symbol(request, 2, 80, self._ticker)

    def _per_symbol(
        self,
        request: web.Request,
        weight_one: int,
        weight_all: int,
        render: Callable[[str, MarketSource], dict[str, Any]],
    ) -> web.Response:
        """A ticker-style endpoint: one symbol (``?symbol=``) or all of them, charged the matching weight."""
        symbol = request.query.get("symbol")
        v, err = self._charge(weight_one if symbol else weight_all)
        if err is not None:
            return err
        if symbol:
            src = self.source(symbol)
            if src is None:
                return self._bad(-1121, "Invalid symbol.", v)
            return self._json(render(symbol, src), v)
        return self._json([render(s, self.source(s)) for s in self.symbols], v)  # type: ignore[arg-type]

    def _book_ticker(self, symbol: str, src: MarketSource) -> dict[str, Any]:
        bids, asks = src.book.top(1)
        bid, bq = bids[0] if bids else ("0", "0")
        ask, aq = asks[0] if asks else ("0", "0")
        out: dict[str, Any] = {"symbol": symbol, "bidPrice": bid, "bidQty": bq, "askPrice": ask, "askQty": aq}
        if self.usdm:
            out.update(time=self.clock.time_ns() // 1_000_000, lastUpdateId=src.last_update_id)
        return out

    async def _rest_book_ticker(self, request: web.Request) -> web.Response:
        return self._per_symbol(request, 2, 4, self._book_ticker)

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

    def _trade_row(self, t: Trade) -> dict[str, Any]:
        row: dict[str, Any] = {"id": t.trade_id, "price": t.price, "qty": t.qty}
        row.update(quoteQty=_quote_qty(t.price, t.qty), time=t.ts_ms, isBuyerMaker=t.buyer_maker)
        if not self.usdm:
            row["isBestMatch"] = True
        return row

    async def _rest_agg_trades(self, request: web.Request) -> web.Response:
        v, err = self._charge(self.agg_trades_weight)
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
        v, err = self._charge(self.trades_weight)
        if err is not None:
            return err
        try:
            src, limit = self._trade_query(request)
        except _BadRequest as exc:
            return self._bad(exc.code, exc.msg, v)
        return self._json([self._trade_row(t) for t in src.trades.select(limit, newest=True)], v)

    async def _rest_historical_trades(self, request: web.Request) -> web.Response:
        v, err = self._charge(self.historical_trades_weight)
        if err is not None:
            return err
        try:
            src, limit = self._trade_query(request)
            from_id = _int_arg(request, "fromId")
        except _BadRequest as exc:
            return self._bad(exc.code, exc.msg, v)
        trades = src.trades.select(limit, min_id=from_id, newest=from_id is None)
        return self._json([self._trade_row(t) for t in trades], v)


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
    market_kind = "usdm"
    rest_prefix = "/fapi/v1"
    info_recording = "cryptofeed_binance_BINANCE_FUTURES.0.gz"
    depth_streams = ("depth", "depth@0ms", "depth@100ms", "depth@250ms", "depth@500ms")
    usdm = True
    #: "Compressed/Aggregate Trades List" and "Recent Trades List" of the USDⓈ-M market-data REST docs
    agg_trades_weight = 20
    trades_weight = 5

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
