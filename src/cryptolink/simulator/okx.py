"""Simulated OKX v5 public market data: WebSocket ``/ws/v5/public`` and the public REST endpoints.

``ws_url`` is ``ws://127.0.0.1:PORT``; clients connect to ``ws_url + "/ws/v5/public"``. Official source:
https://www.okx.com/docs-v5/en/ (sections cited below by anchor).

What is served (``SimConfig.symbols["okx"]``, default):

- ``BTC-USDT`` (SPOT), ``UNI-USD-SWAP`` (inverse SWAP) and ``BTC-USD-220527`` (inverse FUTURES) replay the real OKX
  v5 recording ``cryptofeed_okx_OKX.ws.1.0.gz`` (bmoscon/cryptofeed sample data, recorded 2022-05-13, ~10.8 s:
  one ``books`` snapshot and ~95 updates per instrument, their trades and tickers), looped forever (mode
  ``"replay"``). Prices and sizes are the recorded strings; ``seqId``/``prevSeqId``, trade ids (continuing across
  loops) and every ``ts`` are the simulator's own (the recording predates seqId); checksums are computed on the
  book exactly as a client rebuilds it from what was sent; tickers carry the recorded values with a fresh ``ts``.
  At each loop seam one update turns the book back into the recorded snapshot book.
- ``ETH-USDT`` (SPOT) and ``BTC-USDT-SWAP`` (linear SWAP), and any other configured instId, are synthetic seeded
  random-walk markets (also all instruments in mode ``"synthetic"``).

A ``books`` subscriber's snapshot is the source's whole book, so every later update and checksum is consistent
with it: replayed books never exceed the recording's depth (400 levels per side, the ``books`` channel depth);
synthetic books hold 50 levels per side plus the range their mid has walked (more than 400 only after a walk of
hundreds of ticks).

WebSocket (https://www.okx.com/docs-v5/en/#overview-websocket-subscribe and the channel sections):
``{"op":"subscribe"|"unsubscribe","args":[{"channel":..,"instId":..}],"id"?}`` => one ack per arg
``{"id"?,"event":"subscribe","arg":{..},"connId":".."}``; errors ``{"id"?,"event":"error","code":"60012",
"msg":"Invalid request: ..","connId":".."}``; unknown channel or instId => code ``60018`` "... doesn't exist";
more than ``max_subs_per_hour`` (480) requests => ``60014`` "Requests too frequent". Text ``ping`` => text
``pong`` (https://www.okx.com/docs-v5/en/#overview-websocket-connect). The server closes (code 4004, per client
reports; the docs give no code) after ``idle_close_s`` (30 s) without a subscription or pushed data. Channels:

- ``trades`` (#order-book-trading-market-data-ws-trades-channel): ``{"instId","tradeId","px","sz","side","ts",
  "count":"1","source":"0","seqId"}`` per trade, ``side`` = taker side.
- ``tickers`` (#order-book-trading-market-data-ws-tickers-channel): pushed on a trade or a best bid/ask change;
  replayed instruments push each recorded ticker, synthetic ones when their top of book or last price changes.
- ``books`` (#order-book-trading-market-data-ws-order-book-channel): snapshot with ``prevSeqId = -1`` then updates
  chained by ``prevSeqId == previous seqId``; levels ``[px, sz, "0", numOrders]``; an empty update
  (``seqId == prevSeqId``) after ``book_heartbeat_s`` without changes; a ``seqreset`` fault makes ``seqId <
  prevSeqId`` once. ``checksum`` is the CRC32 of the top 25 levels interleaved ``bid:ask`` as a signed int32
  ("Checksum" there) when ``SimConfig.okx_checksum == "real"``, else ``0``.

REST (per-endpoint request counts per 2 s, https://www.okx.com/docs-v5/en/#overview-rate-limits; over =>
HTTP 429 ``{"code":"50011","msg":"Too Many Requests","data":[]}``); limits per 2 s in :data:`REST_LIMITS`:

- ``/api/v5/public/time``; ``/api/v5/public/instruments?instType=SPOT|SWAP|FUTURES|MARGIN|OPTION``: the served
  instruments as recorded in ``cryptofeed_okx_OKX.0.gz`` (2022-05, real ``ctVal``/``ctMult``/``ctValCcy``/
  ``ctType``), ``state`` set to ``live``; a served instId missing there is cloned from a recorded one of its type.
- ``/api/v5/market/books?instId=&sz=`` (max 400 per side), ``/api/v5/market/ticker?instId=``,
  ``/api/v5/market/tickers?instType=``.
- ``/api/v5/market/trades?instId=&limit=`` (#order-book-trading-market-data-get-trades): the newest trades,
  newest first, ``limit`` default 100, max 500.
- ``/api/v5/market/history-trades?instId=&type=&after=&before=&limit=``
  (#order-book-trading-market-data-get-trades-history): newest first, ``limit`` default and max 100. ``type=1``
  (default) paginates by tradeId: ``after`` = only trades older than that id, ``before`` = only trades newer than
  that id (alone it returns the newest ones, as documented); both = the newest trades strictly between. ``type=2``:
  ``after`` is a ms timestamp (trades before it); ``before`` is ignored (not supported by timestamp, per the docs).
- Trade items: ``{"instId","side","sz","px","source":"0","tradeId","ts"}``. Each instrument keeps its last
  :data:`~cryptolink.simulator.market.TRADE_HISTORY` trades: asking for older ids returns what is kept.
"""

from __future__ import annotations

import asyncio
import copy
import zlib
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import msgspec
from aiohttp import web

from cryptolink import recordings
from cryptolink.simulator.market import (
    OKX_REPLAY_INSTRUMENTS,
    Bbo,
    Depth,
    Event,
    Level,
    MarketSource,
    OkxReplaySource,
    SyntheticSource,
    Ticker,
    Trade,
    preload_okx_replay,
)
from cryptolink.simulator.ratelimit import WindowCounter
from cryptolink.simulator.server import ExchangeServer, SimConnection

__all__ = ["REST_LIMITS", "OkxServer", "inst_type", "okx_checksum", "okx_str"]

_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder()

#: Requests per 2 s per endpoint, from each endpoint's "Rate Limit" line in https://www.okx.com/docs-v5/en/
#: ("Get system time", "Get instruments", "Get order book", "Get ticker", "Get tickers", "Get trades",
#: "Get trades history").
REST_LIMITS = {
    "time": 10,
    "instruments": 20,
    "books": 40,
    "ticker": 20,
    "tickers": 20,
    "trades": 100,
    "history-trades": 20,
}
CHANNELS = ("trades", "tickers", "books")
#: recorded instrument used as the template of a served instId missing from the instruments recording, by
#: (instType, quote is USD): USD-quoted derivatives are inverse, the others linear
_TEMPLATES = {
    ("SPOT", False): "BTC-USDT",
    ("SPOT", True): "BTC-USDT",
    ("SWAP", False): "BTC-USDT-SWAP",
    ("SWAP", True): "UNI-USD-SWAP",
    ("FUTURES", True): "BTC-USD-220527",
}


def _dumps(obj: Any) -> str:
    return _enc.encode(obj).decode()


def okx_str(s: str) -> str:
    """Decimal string without trailing zeros: ``"61837.63000000"`` -> ``"61837.63"``, ``"3.000"`` ->
    ``"3"``."""
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return s


def _same(s: str) -> str:
    return s


def inst_type(inst_id: str) -> str:
    """OKX ``instType`` of an instId: ``BTC-USDT`` SPOT, ``BTC-USDT-SWAP`` SWAP, ``BTC-USD-220527`` FUTURES,
    ``BTC-USD-220527-30000-C`` OPTION ("Get instruments", https://www.okx.com/docs-v5/en/#public-data-rest-api-get-instruments)."""
    parts = inst_id.split("-")
    if len(parts) == 3:
        return "SWAP" if parts[2] == "SWAP" else "FUTURES"
    return "OPTION" if len(parts) > 3 else "SPOT"


def okx_checksum(bids: list[Level], asks: list[Level]) -> int:
    """OKX book checksum ("Checksum" in
    https://www.okx.com/docs-v5/en/#order-book-trading-market-data-ws-order-book-channel): CRC32 of
    ``bid1px:bid1sz:ask1px:ask1sz:...`` over the top 25 levels (one side continues alone when the other runs
    out), as a signed int32. Strings are used exactly as sent."""
    parts: list[str] = []
    for i in range(25):
        if i < len(bids):
            parts.append(f"{bids[i][0]}:{bids[i][1]}")
        if i < len(asks):
            parts.append(f"{asks[i][0]}:{asks[i][1]}")
    crc = zlib.crc32(":".join(parts).encode())
    return crc - (1 << 32) if crc >= 1 << 31 else crc


def _levels(levels: list[Level], fmt: Callable[[str], str]) -> list[list[str]]:
    """``[px, sz, "0", numOrders]`` rows; numOrders is ``"0"`` for a deleted level, else ``"1"``."""
    return [[fmt(p), fmt(q), "0", "0" if float(q) == 0.0 else "1"] for p, q in levels]


@lru_cache(maxsize=8)
def _recorded_instruments(kind: str) -> dict[str, dict[str, Any]]:
    """The first recorded ``instType=kind`` answer of ``cryptofeed_okx_OKX.0.gz`` by instId."""
    for rec in recordings.iter_cryptofeed_http("cryptofeed_okx_OKX.0.gz"):
        if rec.url.endswith(f"instType={kind}"):
            data: list[dict[str, Any]] = _dec.decode(rec.body)["data"]
            return {i["instId"]: i for i in data}
    return {}


class OkxServer(ExchangeServer):
    """OKX v5 public market data; see the module doc for what is served and the sources."""

    name = "okx"
    uses_replay_files = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.subs: dict[str, set[SimConnection]] = {}
        self.limiter = WindowCounter(REST_LIMITS, self.rules.rest_window_s, self.clock)
        self.real_checksum = self.config.okx_checksum == "real"
        self._last_book_change: dict[str, float] = {}
        self._fmt: dict[str, Callable[[str], str]] = {}
        if self.rules.book_heartbeat_s is not None:
            self._spawn(self._book_heartbeats(self.rules.book_heartbeat_s))

    async def start(self, host: str, port: int) -> None:
        """Parse the OKX recording in a worker thread (replay mode), then bind and serve (see the base)."""
        if self.mode == "replay" and any(s in OKX_REPLAY_INSTRUMENTS for s in self.symbols):
            await asyncio.to_thread(preload_okx_replay)
        await super().start(host, port)

    def make_market_source(self, symbol: str) -> MarketSource:
        """The recording for :data:`OKX_REPLAY_INSTRUMENTS` in replay mode, else a synthetic market."""
        if self.mode == "replay" and symbol in OKX_REPLAY_INSTRUMENTS:
            return OkxReplaySource(symbol)
        return SyntheticSource(symbol, seed=self.seed, rate_hz=self.config.synthetic_rate_hz)

    def fmt(self, inst: str) -> Callable[[str], str]:
        """How ``inst``'s price/size strings are sent: recorded OKX strings as they are, synthetic ones without
        trailing zeros."""
        return self._fmt.get(inst, okx_str)

    def setup_routes(self, app: web.Application) -> None:
        app.router.add_get("/ws/v5/public", self._ws_handler)
        app.router.add_get("/api/v5/public/time", self._rest_time)
        app.router.add_get("/api/v5/public/instruments", self._rest_instruments)
        app.router.add_get("/api/v5/market/books", self._rest_books)
        app.router.add_get("/api/v5/market/ticker", self._rest_ticker)
        app.router.add_get("/api/v5/market/tickers", self._rest_tickers)
        app.router.add_get("/api/v5/market/trades", self._rest_trades)
        app.router.add_get("/api/v5/market/history-trades", self._rest_history_trades)

    async def idle_close(self, conn: SimConnection) -> None:
        await conn.close(4004, "No data received in 30s.")

    # ---- WebSocket ----
    async def _ws_handler(self, request: web.Request) -> web.StreamResponse:
        ws, conn = await self.accept(request)
        await conn.serve()
        for key in list(conn.subscriptions):
            self._drop(conn, key)
        return ws

    def _drop(self, conn: SimConnection, key: str) -> None:
        conn.subscriptions.pop(key, None)
        subs = self.subs.get(key)
        if subs is not None:
            subs.discard(conn)
            if not subs:
                del self.subs[key]

    def _error(self, conn: SimConnection, code: str, msg: str, req_id: Any) -> None:
        out: dict[str, Any] = {"id": req_id} if req_id is not None else {}
        out.update(event="error", code=code, msg=msg, connId=conn.tag)
        conn.send_ctrl(_dumps(out))

    async def on_text(self, conn: SimConnection, text: str) -> None:
        if text == "ping":
            if self.clock.monotonic() >= conn.noping_until:
                conn.send_ctrl("pong")
            return
        try:
            msg = _dec.decode(text)
        except msgspec.DecodeError:
            self._error(conn, "60012", f"Invalid request: {text[:200]}", None)
            return
        if not isinstance(msg, dict):
            self._error(conn, "60012", f"Invalid request: {text[:200]}", None)
            return
        req_id = msg.get("id")
        op, args = msg.get("op"), msg.get("args")
        if op not in ("subscribe", "unsubscribe") or not isinstance(args, list) or not args:
            self._error(conn, "60012", f"Invalid request: {text[:200]}", req_id)
            return
        limit = self.rules.max_subs_per_hour
        if limit is not None:
            now = self.clock.monotonic()
            while conn.sub_times and now - conn.sub_times[0] >= 3600.0:
                conn.sub_times.popleft()
            if len(conn.sub_times) >= limit:
                self._error(conn, "60014", "Requests too frequent.", req_id)
                return
            conn.sub_times.append(now)
        if conn.reject_next:
            conn.reject_next = False
            self._error(conn, "60012", "Invalid request: rejected (simulated fault)", req_id)
            return
        for arg in args:
            if not isinstance(arg, dict) or not isinstance(arg.get("channel"), str):
                self._error(conn, "60012", f"Invalid request: {text[:200]}", req_id)
                continue
            channel, inst = arg["channel"], arg.get("instId")
            if channel not in CHANNELS or not isinstance(inst, str) or inst not in self.symbols:
                self._error(
                    conn,
                    "60018",
                    f"Wrong URL or channel:{channel},instId:{inst} doesn't exist. "
                    "Please use the correct URL, channel and parameters referring to API document.",
                    req_id,
                )
                continue
            key = f"{channel}:{inst}"
            ack: dict[str, Any] = {"id": req_id} if req_id is not None else {}
            ack.update(event=op, arg={"channel": channel, "instId": inst}, connId=conn.tag)
            conn.send_ctrl(_dumps(ack))
            conn.last_activity = self.clock.monotonic()
            if op == "unsubscribe":
                self._drop(conn, key)
                continue
            src = self.source(inst)
            assert src is not None
            if key not in conn.subscriptions:
                conn.subscriptions[key] = True
                self.subs.setdefault(key, set()).add(conn)
                if channel == "books":
                    self._send_snapshot(conn, inst, src)
        self.notify()

    def _send_snapshot(self, conn: SimConnection, inst: str, src: MarketSource) -> None:
        """The whole book (see the module doc) with ``prevSeqId = -1`` and the current seqId."""
        fmt = self.fmt(inst)
        bids, asks = src.book.top(src.book.depth())
        ob, oa = _levels(bids, fmt), _levels(asks, fmt)
        checksum = okx_checksum([(b[0], b[1]) for b in ob[:25]], [(a[0], a[1]) for a in oa[:25]])
        ts = self.clock.time_ns() // 1_000_000
        frame = {
            "arg": {"channel": "books", "instId": inst},
            "action": "snapshot",
            "data": [
                {
                    "asks": oa, "bids": ob, "ts": str(ts), "checksum": checksum if self.real_checksum else 0,
                    "prevSeqId": -1, "seqId": src.last_update_id,
                }
            ],
        }  # fmt: skip
        conn.send_data(_dumps(frame), f"books:{inst}", src.last_update_id, ts)

    def send_notice(self, conn: SimConnection) -> None:
        conn.send_ctrl(
            _dumps(
                {
                    "event": "notice",
                    "code": "64008",
                    "msg": "The connection will soon be closed for a service upgrade. Please reconnect.",
                    "connId": conn.tag,
                }
            )
        )

    # ---- fan-out ----
    def attach_source(self, symbol: str, src: MarketSource) -> None:
        books_key, trades_key, tickers_key = f"books:{symbol}", f"trades:{symbol}", f"tickers:{symbol}"
        kind = inst_type(symbol)
        fmt = _same if isinstance(src, OkxReplaySource) else okx_str
        self._fmt[symbol] = fmt
        subs = self.subs
        self._last_book_change[symbol] = self.clock.monotonic()
        last_ticker: list[tuple[str, ...]] = [()]  # top of book + last price of the previous synthetic push

        def fan_out(ev: Event) -> None:
            if isinstance(ev, Depth):
                self._last_book_change[symbol] = self.clock.monotonic()
                conns = subs.get(books_key)
                if conns:
                    self._send_book_update(conns, symbol, src, ev)
            elif isinstance(ev, Trade):
                conns = subs.get(trades_key)
                if conns:
                    item = self._trade_item(symbol, ev, fmt)
                    item.update(count="1", source="0", seqId=src.last_update_id)
                    text = _dumps({"arg": {"channel": "trades", "instId": symbol}, "data": [item]})
                    for conn in tuple(conns):
                        conn.send_data(text, trades_key, ev.trade_id, ev.ts_ms)
            elif isinstance(ev, Ticker):
                conns = subs.get(tickers_key)
                if conns:
                    data = {"instType": kind, "instId": symbol, **ev.fields, "ts": str(ev.ts_ms)}
                    text = _dumps({"arg": {"channel": "tickers", "instId": symbol}, "data": [data]})
                    for conn in tuple(conns):
                        conn.send_data(text, tickers_key, None, ev.ts_ms)
            elif isinstance(ev, Bbo):
                conns = subs.get(tickers_key)
                bids, asks = src.book.top(1)
                state = (*(bids[0] if bids else ()), *(asks[0] if asks else ()), src.last_price)
                if conns and state != last_ticker[0]:
                    # ``tickers`` pushes are triggered by a trade or a best bid/ask change (tickers channel
                    # section); a synthetic BBO is the book top, which moves only with depth deltas, so unchanged
                    # pushes are skipped.
                    last_ticker[0] = state
                    text = _dumps(
                        {
                            "arg": {"channel": "tickers", "instId": symbol},
                            "data": [self._ticker(symbol, src, ev.ts_ms)],
                        }
                    )
                    for conn in tuple(conns):
                        conn.send_data(text, tickers_key, None, ev.ts_ms)

        src.listeners.append(fan_out)

    @staticmethod
    def _trade_item(inst: str, t: Trade, fmt: Callable[[str], str]) -> dict[str, Any]:
        return {
            "instId": inst, "tradeId": str(t.trade_id), "px": fmt(t.price), "sz": fmt(t.qty),
            "side": "sell" if t.buyer_maker else "buy", "ts": str(t.ts_ms),
        }  # fmt: skip

    def _ticker(self, inst: str, src: MarketSource, ts_ms: int) -> dict[str, str]:
        """The ticker of ``inst`` now: the last recorded one (replay) or one derived from the book and trades."""
        if src.ticker is not None:
            return {"instType": inst_type(inst), "instId": inst, **src.ticker, "ts": str(ts_ms)}
        bids, asks = src.book.top(1)
        bid, bq = bids[0] if bids else ("0", "0")
        ask, aq = asks[0] if asks else ("0", "0")
        last = okx_str(src.last_price)
        open_ = okx_str(src.open_price if src.open_price != "0" else src.last_price)
        vol = f"{src.volume:.8f}"
        hi, lo = max(last, open_, key=float), min(last, open_, key=float)
        return {
            "instType": inst_type(inst), "instId": inst, "last": last, "lastSz": "0", "askPx": okx_str(ask),
            "askSz": okx_str(aq), "bidPx": okx_str(bid), "bidSz": okx_str(bq), "open24h": open_,
            "high24h": hi, "low24h": lo, "volCcy24h": f"{float(vol) * float(last):.8f}", "vol24h": vol,
            "sodUtc0": open_, "sodUtc8": open_, "ts": str(ts_ms),
        }  # fmt: skip

    def _send_book_update(self, conns: set[SimConnection], inst: str, src: MarketSource, ev: Depth) -> None:
        key = f"books:{inst}"
        fmt = self.fmt(inst)
        if ev.checksum is None:
            if self.real_checksum:
                bids, asks = src.book.top(25)
                ev.checksum = okx_checksum(
                    [(fmt(p), fmt(q)) for p, q in bids], [(fmt(p), fmt(q)) for p, q in asks]
                )
            else:
                ev.checksum = 0
        data = {
            "asks": _levels(ev.asks, fmt), "bids": _levels(ev.bids, fmt), "ts": str(ev.ts_ms),
            "checksum": ev.checksum, "prevSeqId": ev.prev_id, "seqId": ev.last_id,
        }  # fmt: skip
        frame = {"arg": {"channel": "books", "instId": inst}, "action": "update", "data": [data]}
        text = _dumps(frame)
        for conn in tuple(conns):
            if conn.take_gap(inst):
                conn.note_skipped(key)
                continue
            out = text
            if conn.badchecksum_symbols and (
                inst in conn.badchecksum_symbols or None in conn.badchecksum_symbols
            ):
                conn.badchecksum_symbols.discard(inst)
                conn.badchecksum_symbols.discard(None)
                bad = dict(data, checksum=(ev.checksum + 1) if ev.checksum != 2**31 - 1 else 0)
                out = _dumps({"arg": frame["arg"], "action": "update", "data": [bad]})
            conn.send_data(out, key, ev.last_id, ev.ts_ms)

    async def _book_heartbeats(self, every_s: float) -> None:
        """Empty ``books`` updates (``seqId == prevSeqId``) for books unchanged for ``every_s`` ("Sequence ID",
        exception 1, in the order book channel section)."""
        while True:
            await self.clock.sleep(every_s / 4)
            now = self.clock.monotonic()
            for inst, changed in list(self._last_book_change.items()):
                if now - changed < every_s:
                    continue
                self._last_book_change[inst] = now
                conns = self.subs.get(f"books:{inst}")
                src = self.sources.get(inst)
                if not conns or src is None:
                    continue
                ts = self.clock.time_ns() // 1_000_000
                seq = src.last_update_id
                frame = {
                    "arg": {"channel": "books", "instId": inst},
                    "action": "update",
                    "data": [
                        {"asks": [], "bids": [], "ts": str(ts), "checksum": 0, "prevSeqId": seq, "seqId": seq}
                    ],
                }
                text = _dumps(frame)
                for conn in tuple(conns):
                    conn.send_data(text, f"books-heartbeat:{inst}", None, ts)

    # ---- REST ----
    def _limited(self, endpoint: str) -> web.Response | None:
        v = self.limiter.hit(endpoint)
        if v.status == 200:
            return None
        body = _dumps({"code": "50011", "msg": "Too Many Requests", "data": []})
        return web.Response(text=body, status=429, content_type="application/json")

    @staticmethod
    def _ok(data: list[Any]) -> web.Response:
        return web.Response(
            text=_dumps({"code": "0", "msg": "", "data": data}), content_type="application/json"
        )

    @staticmethod
    def _fail(code: str, msg: str, status: int = 400) -> web.Response:
        body = _dumps({"code": code, "msg": msg, "data": []})
        return web.Response(text=body, status=status, content_type="application/json")

    async def _rest_time(self, request: web.Request) -> web.Response:
        return self._limited("time") or self._ok([{"ts": str(self.clock.time_ns() // 1_000_000)}])

    def instruments(self, kind: str) -> list[dict[str, Any]]:
        """Served instruments of type ``kind`` as recorded (``state`` set to ``live``); a served instId missing
        from the recording is cloned from the recorded template of its type with its ids filled in."""
        recorded = _recorded_instruments(kind)
        out = []
        for sym in self.symbols:
            if inst_type(sym) != kind:
                continue
            entry = recorded.get(sym)
            if entry is None:
                base, quote = sym.split("-")[:2]
                template = recorded.get(_TEMPLATES.get((kind, quote == "USD"), ""))
                if template is None:
                    continue
                entry = copy.deepcopy(template)
                entry.update(instId=sym, uly="" if kind == "SPOT" else f"{base}-{quote}")
                if kind == "SPOT":
                    entry.update(baseCcy=base, quoteCcy=quote)
                elif entry.get("ctType") == "linear":
                    entry.update(ctValCcy=base, settleCcy=quote)
                else:
                    entry.update(ctValCcy=quote, settleCcy=base)
            out.append(dict(entry, state="live"))
        return out

    async def _rest_instruments(self, request: web.Request) -> web.Response:
        limited = self._limited("instruments")
        if limited:
            return limited
        kind = request.query.get("instType", "")
        if kind not in ("SPOT", "MARGIN", "SWAP", "FUTURES", "OPTION"):
            return self._fail("51000", "Parameter instType error")
        return self._ok(self.instruments(kind))

    async def _rest_books(self, request: web.Request) -> web.Response:
        limited = self._limited("books")
        if limited:
            return limited
        inst = request.query.get("instId", "")
        try:
            sz = min(400, max(1, int(request.query.get("sz", "1"))))
        except ValueError:
            return self._fail("51000", "Parameter sz error")
        src = self.source(inst)
        if src is None:
            return self._fail("51001", "Instrument ID does not exist")
        fmt = self.fmt(inst)
        bids, asks = src.book.top(sz)
        ts = str(self.clock.time_ns() // 1_000_000)
        return self._ok([{"asks": _levels(asks, fmt), "bids": _levels(bids, fmt), "ts": ts}])

    async def _rest_ticker(self, request: web.Request) -> web.Response:
        limited = self._limited("ticker")
        if limited:
            return limited
        inst = request.query.get("instId", "")
        src = self.source(inst)
        if src is None:
            return self._fail("51001", "Instrument ID does not exist")
        return self._ok([self._ticker(inst, src, self.clock.time_ns() // 1_000_000)])

    async def _rest_tickers(self, request: web.Request) -> web.Response:
        limited = self._limited("tickers")
        if limited:
            return limited
        kind = request.query.get("instType", "SPOT")
        now_ms = self.clock.time_ns() // 1_000_000
        out = []
        for inst in self.symbols:
            if inst_type(inst) == kind:
                src = self.source(inst)
                assert src is not None
                out.append(self._ticker(inst, src, now_ms))
        return self._ok(out)

    @staticmethod
    def _int_param(request: web.Request, name: str) -> int | None:
        """Non-negative integer query parameter, ``None`` when absent or empty.

        Raises:
            ValueError: present but not a non-negative integer.
        """
        raw = request.query.get(name, "")
        if not raw:
            return None
        if not raw.isdigit():
            raise ValueError(name)
        return int(raw)

    def _trades_answer(self, inst: str, trades: list[Trade]) -> web.Response:
        fmt = self.fmt(inst)
        data = []
        for t in reversed(trades):  # newest first
            item = self._trade_item(inst, t, fmt)
            item["source"] = "0"
            data.append(item)
        return self._ok(data)

    async def _rest_trades(self, request: web.Request) -> web.Response:
        limited = self._limited("trades")
        if limited:
            return limited
        inst = request.query.get("instId", "")
        try:
            limit = self._int_param(request, "limit")
        except ValueError:
            return self._fail("51000", "Parameter limit error")
        src = self.source(inst)
        if src is None:
            return self._fail("51001", "Instrument ID does not exist")
        limit = 100 if limit is None else min(max(limit, 1), 500)
        return self._trades_answer(inst, src.trades.select(limit, newest=True))

    async def _rest_history_trades(self, request: web.Request) -> web.Response:
        limited = self._limited("history-trades")
        if limited:
            return limited
        inst = request.query.get("instId", "")
        kind = request.query.get("type", "") or "1"
        if kind not in ("1", "2"):
            return self._fail("51000", "Parameter type error")
        try:
            after = self._int_param(request, "after")
            before = self._int_param(request, "before")
            limit = self._int_param(request, "limit")
        except ValueError as exc:
            return self._fail("51000", f"Parameter {exc} error")
        src = self.source(inst)
        if src is None:
            return self._fail("51001", "Instrument ID does not exist")
        limit = 100 if limit is None else min(max(limit, 1), 100)
        if kind == "1":
            trades = src.trades.select(
                limit,
                min_id=None if before is None else before + 1,
                max_id=None if after is None else after - 1,
                newest=True,
            )
        else:
            trades = src.trades.select(limit, end_ms=None if after is None else after - 1, newest=True)
        return self._trades_answer(inst, trades)
