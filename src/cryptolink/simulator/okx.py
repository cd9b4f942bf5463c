"""Simulated OKX v5 public market data (EXCHANGES.md §3): WebSocket ``/ws/v5/public`` and the public REST
endpoints.

``ws_url`` is ``ws://127.0.0.1:PORT``; clients connect to ``ws_url + "/ws/v5/public"``.

WebSocket: ``{"op":"subscribe"|"unsubscribe","args":[{"channel":..,"instId":..}],"id"?}`` => one ack per arg
``{"id"?,"event":"subscribe","arg":{..},"connId":".."}``; errors ``{"id"?,"event":"error","code":"60012",
"msg":"Invalid request: ..","connId":".."}``; unknown channel or instId => code ``60018`` "... doesn't exist";
more than ``max_subs_per_hour`` (480) requests => ``60014`` "Requests too frequent". Text ``ping`` => text
``pong``.
The server closes (code 4004, per client reports; unconfirmed) after ``idle_close_s`` (30 s) without a
subscription
or pushed data. Channels: ``trades`` (side = taker side), ``tickers`` (pushed on every BBO change), ``books``
(snapshot with ``prevSeqId = -1`` then updates chained by ``prevSeqId == previous seqId``; empty heartbeat
update
``seqId == prevSeqId`` after ``book_heartbeat_s`` without changes; a ``seqreset`` fault makes ``seqId <
prevSeqId`` once). ``checksum`` is the legacy CRC32 over the top 25 levels interleaved ``bid:ask`` as signed
int32
(EXCHANGES.md §3) when ``SimConfig.okx_checksum == "real"``, else ``0``.

Market data: ``BTC-USDT``/``ETH-USDT`` replay the hftbacktest Binance spot recordings, ``*-SWAP`` the USD-M
ones,
re-encoded into OKX frames (prices and sizes with trailing zeros stripped), with the simulator's own seqIds;
other
served symbols are synthetic.

REST (per-endpoint counts per 2 s, over => HTTP 429 ``{"code":"50011","msg":"Too Many Requests"}``):
``/api/v5/public/time``, ``/api/v5/public/instruments?instType=SPOT|SWAP|FUTURES|OPTION`` (recorded list
trimmed to
the served symbols), ``/api/v5/market/books?instId=&sz=`` (max 400 per side),
``/api/v5/market/ticker?instId=``,
``/api/v5/market/tickers?instType=``.
"""

from __future__ import annotations

import copy
import zlib
from functools import lru_cache
from typing import Any

import msgspec
from aiohttp import web

from cryptolink import recordings
from cryptolink.simulator.market import Bbo, Depth, Event, Level, MarketSource, Trade
from cryptolink.simulator.ratelimit import WindowCounter
from cryptolink.simulator.server import ExchangeServer, SimConnection

__all__ = ["REST_LIMITS", "OkxServer", "okx_checksum", "okx_str"]

_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder()

#: requests per 2 s per endpoint (EXCHANGES.md §3; instruments/ticker from the OKX rate-limit table,
#: unconfirmed).
REST_LIMITS = {"time": 10, "instruments": 20, "books": 40, "ticker": 20, "tickers": 20}
CHANNELS = ("trades", "tickers", "books")


def _dumps(obj: Any) -> str:
    return _enc.encode(obj).decode()


def okx_str(s: str) -> str:
    """Decimal string without trailing zeros: ``"61837.63000000"`` -> ``"61837.63"``, ``"3.000"`` ->
    ``"3"``."""
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return s


def okx_checksum(bids: list[Level], asks: list[Level]) -> int:
    """Legacy OKX book checksum (EXCHANGES.md §3): CRC32 of ``bid1px:bid1sz:ask1px:ask1sz:...`` over the top
    25
    levels (one side continues alone when the other runs out), as a signed int32. Strings are used as sent."""
    parts: list[str] = []
    for i in range(25):
        if i < len(bids):
            parts.append(f"{bids[i][0]}:{bids[i][1]}")
        if i < len(asks):
            parts.append(f"{asks[i][0]}:{asks[i][1]}")
    crc = zlib.crc32(":".join(parts).encode())
    return crc - (1 << 32) if crc >= 1 << 31 else crc


def _levels(levels: list[Level]) -> list[list[str]]:
    return [[okx_str(p), okx_str(q), "0", "1"] for p, q in levels]


@lru_cache(maxsize=8)
def _recorded_instruments(inst_type: str) -> list[dict[str, Any]]:
    for rec in recordings.iter_cryptofeed_http("cryptofeed_okx_OKX.0.gz"):
        if rec.url.endswith(f"instType={inst_type}"):
            data: list[dict[str, Any]] = _dec.decode(rec.body)["data"]
            return data
    return []


class OkxServer(ExchangeServer):
    """OKX v5 public (EXCHANGES.md §3). See the module doc for the protocol served."""

    name = "okx"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.subs: dict[str, set[SimConnection]] = {}
        self.limiter = WindowCounter(REST_LIMITS, self.rules.rest_window_s, self.clock)
        self.real_checksum = self.config.okx_checksum == "real"
        self._last_book_change: dict[str, float] = {}
        if self.rules.book_heartbeat_s is not None:
            self._spawn(self._book_heartbeats(self.rules.book_heartbeat_s))

    def neutral_symbol(self, symbol: str) -> tuple[str, str]:
        parts = symbol.split("-")
        return ("usdm" if symbol.endswith("-SWAP") else "spot"), "".join(parts[:2])

    def setup_routes(self, app: web.Application) -> None:
        app.router.add_get("/ws/v5/public", self._ws_handler)
        app.router.add_get("/api/v5/public/time", self._rest_time)
        app.router.add_get("/api/v5/public/instruments", self._rest_instruments)
        app.router.add_get("/api/v5/market/books", self._rest_books)
        app.router.add_get("/api/v5/market/ticker", self._rest_ticker)
        app.router.add_get("/api/v5/market/tickers", self._rest_tickers)

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
        bids, asks = src.book.top(400)
        ob, oa = _levels(bids), _levels(asks)
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
        inst_type = "SWAP" if symbol.endswith("-SWAP") else "SPOT"
        subs = self.subs
        self._last_book_change[symbol] = self.clock.monotonic()
        last_ticker: list[tuple[str, ...]] = [()]  # top of book + last price of the previous push

        def fan_out(ev: Event) -> None:
            if isinstance(ev, Depth):
                self._last_book_change[symbol] = self.clock.monotonic()
                conns = subs.get(books_key)
                if conns:
                    self._send_book_update(conns, symbol, src, ev)
            elif isinstance(ev, Trade):
                conns = subs.get(trades_key)
                if conns:
                    frame = {
                        "arg": {"channel": "trades", "instId": symbol},
                        "data": [
                            {
                                "instId": symbol, "tradeId": str(ev.trade_id), "px": okx_str(ev.price),
                                "sz": okx_str(ev.qty), "side": "sell" if ev.buyer_maker else "buy",
                                "ts": str(ev.ts_ms), "count": "1", "source": "0", "seqId": src.last_update_id,
                            }
                        ],
                    }  # fmt: skip
                    text = _dumps(frame)
                    for conn in tuple(conns):
                        conn.send_data(text, trades_key, ev.trade_id, ev.ts_ms)
            elif isinstance(ev, Bbo):
                conns = subs.get(tickers_key)
                bids, asks = src.book.top(1)
                state = (*(bids[0] if bids else ()), *(asks[0] if asks else ()), src.last_price)
                if conns and state != last_ticker[0]:
                    # OKX pushes ``tickers`` when they change (EXCHANGES.md section 3); the BBO here is the
                    # simulator's book top, which moves only with depth deltas, so unchanged pushes are skipped.
                    last_ticker[0] = state
                    last = okx_str(src.last_price)
                    open_ = okx_str(src.open_price if src.open_price != "0" else src.last_price)
                    vol = f"{src.volume:.8f}"
                    frame = {
                        "arg": {"channel": "tickers", "instId": symbol},
                        "data": [self._ticker(symbol, inst_type, src, ev.ts_ms, last, open_, vol)],
                    }
                    text = _dumps(frame)
                    for conn in tuple(conns):
                        conn.send_data(text, tickers_key, None, ev.ts_ms)

        src.listeners.append(fan_out)

    def _ticker(
        self, inst: str, inst_type: str, src: MarketSource, ts_ms: int, last: str, open_: str, vol: str
    ) -> dict[str, str]:
        bids, asks = src.book.top(1)
        bid, bq = bids[0] if bids else ("0", "0")
        ask, aq = asks[0] if asks else ("0", "0")
        hi, lo = max(last, open_, key=float), min(last, open_, key=float)
        return {
            "instType": inst_type, "instId": inst, "last": last, "lastSz": "0", "askPx": okx_str(ask),
            "askSz": okx_str(aq), "bidPx": okx_str(bid), "bidSz": okx_str(bq), "open24h": open_,
            "high24h": hi, "low24h": lo, "volCcy24h": f"{float(vol) * float(last):.8f}", "vol24h": vol,
            "sodUtc0": open_, "sodUtc8": open_, "ts": str(ts_ms),
        }  # fmt: skip

    def _send_book_update(self, conns: set[SimConnection], inst: str, src: MarketSource, ev: Depth) -> None:
        key = f"books:{inst}"
        if ev.checksum is None:
            if self.real_checksum:
                bids, asks = src.book.top(25)
                ev.checksum = okx_checksum(
                    [(okx_str(p), okx_str(q)) for p, q in bids], [(okx_str(p), okx_str(q)) for p, q in asks]
                )
            else:
                ev.checksum = 0
        data = {
            "asks": _levels(ev.asks), "bids": _levels(ev.bids), "ts": str(ev.ts_ms), "checksum": ev.checksum,
            "prevSeqId": ev.prev_id, "seqId": ev.last_id,
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
        """Empty ``books`` updates (``seqId == prevSeqId``) for books unchanged for ``every_s`` (§3)."""
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

    def instruments(self, inst_type: str) -> list[dict[str, Any]]:
        """Recorded instruments of ``inst_type`` trimmed to served symbols (missing ones cloned from
        BTC-USDT*)."""
        recorded = {i["instId"]: i for i in _recorded_instruments(inst_type)}
        out = []
        for sym in self.symbols:
            is_swap = sym.endswith("-SWAP")
            if (inst_type == "SWAP") != is_swap or inst_type not in ("SPOT", "SWAP"):
                continue
            entry = recorded.get(sym)
            if entry is None:
                template = recorded.get("BTC-USDT-SWAP" if is_swap else "BTC-USDT")
                if template is None:
                    continue
                entry = copy.deepcopy(template)
                base, quote = sym.split("-")[:2]
                entry.update(instId=sym, uly=f"{base}-{quote}", instFamily=f"{base}-{quote}")
                if is_swap:
                    entry.update(ctValCcy=base, settleCcy=quote)
                else:
                    entry.update(baseCcy=base, quoteCcy=quote)
            entry = dict(entry, state="live")
            out.append(entry)
        return out

    async def _rest_instruments(self, request: web.Request) -> web.Response:
        limited = self._limited("instruments")
        if limited:
            return limited
        inst_type = request.query.get("instType", "")
        if inst_type not in ("SPOT", "MARGIN", "SWAP", "FUTURES", "OPTION"):
            return self._fail("51000", "Parameter instType error")
        return self._ok(self.instruments(inst_type))

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
        bids, asks = src.book.top(sz)
        ts = str(self.clock.time_ns() // 1_000_000)
        return self._ok([{"asks": _levels(asks), "bids": _levels(bids), "ts": ts}])

    def _rest_ticker_of(self, inst: str, src: MarketSource) -> dict[str, str]:
        last = okx_str(src.last_price)
        open_ = okx_str(src.open_price if src.open_price != "0" else src.last_price)
        inst_type = "SWAP" if inst.endswith("-SWAP") else "SPOT"
        return self._ticker(
            inst, inst_type, src, self.clock.time_ns() // 1_000_000, last, open_, f"{src.volume:.8f}"
        )

    async def _rest_ticker(self, request: web.Request) -> web.Response:
        limited = self._limited("ticker")
        if limited:
            return limited
        inst = request.query.get("instId", "")
        src = self.source(inst)
        if src is None:
            return self._fail("51001", "Instrument ID does not exist")
        return self._ok([self._rest_ticker_of(inst, src)])

    async def _rest_tickers(self, request: web.Request) -> web.Response:
        limited = self._limited("tickers")
        if limited:
            return limited
        inst_type = request.query.get("instType", "SPOT")
        out = []
        for inst in self.symbols:
            if (inst_type == "SWAP") == inst.endswith("-SWAP"):
                src = self.source(inst)
                assert src is not None
                out.append(self._rest_ticker_of(inst, src))
        return self._ok(out)
