"""Simulated Gate API v4 public market data: spot WebSocket ``/ws/v4/``, USDT perpetual futures WebSocket
``/v4/ws/usdt`` and the public REST endpoints under ``/api/v4``, on one port.

:attr:`GateServer.hosts` lists the real base URLs this server stands for (``https://api.gateio.ws``,
``https://fx-api.gateio.ws``, ``wss://api.gateio.ws``, ``wss://fx-ws.gateio.ws``): a client is pointed at it by
replacing those prefixes only (paths are the real ones). Facts and sources: ``docs/protocols/gate.md``.

Served symbols (``SimConfig.symbols["gate"]``, default :data:`DEFAULT_SYMBOLS`): a plain id (``BTC_USDT``) is a
spot pair, ``futures:<contract>`` (``futures:BTC_USDT``) a USDT perpetual contract. Every market is a seeded
synthetic random walk (spot sizes in base units, futures sizes in whole contracts of ``quanto_multiplier``
base units); the shipped Gate recordings are too short and too thin to loop (they serve the client tests).

WebSocket: requests ``{"time":<unix s>,"id"?,"channel":..,"event":"subscribe"|"unsubscribe","payload":[..]}``.
Answers echo ``time``/``time_ms``/``id``/``conn_id``/``channel``/``event``/``payload`` with
``"result":{"status":"success"}``, or ``"error":{"code":..,"message":..}`` and ``"result":{"status":"fail"}``:

- code 1: not JSON / not an object / no channel; code 2: a ``time`` more than 60 s away from the server clock
  (the message says so; its text is ours), an unknown channel or symbol, more than one ``spot.obu`` stream in
  one request, the same ``spot.obu`` stream subscribed twice on one connection (``Alert sub ob.BTC_USDT.400``),
  a ``futures.order_book_update`` frequency other than ``20ms``/``100ms``, a level other than
  ``100``/``50``/``20``, or ``20ms`` with a level other than ``20``.
- ``<prefix>.ping`` => ``{"time","time_ms","channel":"<prefix>.pong","event":"","error":null,"result":null}``.
- Protocol pings are answered. The server sends none: Gate documents that its servers ping but not how often.

Channels: ``spot.trades`` / ``futures.trades`` per trade as it happens (futures: a list, ``size`` negative when
the taker sold); ``spot.book_ticker`` / ``futures.book_ticker`` when the best bid/ask (price or size) changes,
with ``u`` = the book's update id; ``spot.tickers`` /
``futures.tickers`` every 1 s; ``spot.obu`` (``ob.<pair>.400`` every 100 ms, ``ob.<pair>.50`` every 20 ms): a
``full`` snapshot (the whole book, both levels: a documented simplification) then incremental pushes with
``U`` = previous ``u`` + 1 carrying every level changed since the previous push; ``futures.order_book_update``
``[contract, "20ms"|"100ms", "100"|"50"|"20"]``: one stream per (contract, frequency, level), ``U``/``u`` pushes
at its own interval carrying only the top ``level`` levels per side (changes inside it, levels entering it with
their size, levels leaving it as ``0``: a book cut to ``level`` stays exact; a push whose changes all lie deeper
is sent empty so the ``U``/``u`` chain stays whole), levels ``{"p","s"}``, to be stitched onto
``GET /futures/usdt/order_book?with_id=true&limit=<level>``. A subscriber arriving while changes wait for their
push gets its ``full`` snapshot right after that push.

REST (per endpoint: 200 requests per 10 s, or ``rest_limit_override``; every answer carries
``X-Gate-RateLimit-Requests-Remain``, ``X-Gate-RateLimit-Limit`` and ``X-Gate-RateLimit-Reset-Timestamp`` (ms);
over the limit: HTTP 429 ``{"label":"TOO_MANY_REQUESTS","message":..}``); errors ``{"label","message"}`` with HTTP
400, unknown paths 404 ``{"label":"NOT_FOUND",..}``: ``/spot/time``, ``/spot/currency_pairs``,
``/spot/currencies``, ``/margin/currency_pairs`` (empty), ``/futures/{settle}/contracts`` (``usdt``; other
settles empty), ``/delivery/{settle}/contracts`` and ``/options/underlyings`` (empty), ``/spot/order_book``,
``/futures/usdt/order_book``, ``/spot/trades`` (``last_id`` + ``reverse`` paging), ``/futures/usdt/trades``,
``/spot/tickers``, ``/futures/usdt/tickers``.

Faults: the base kinds; ``gap`` withholds the next incremental book push; ``notice`` and ``badchecksum`` do
nothing (Gate has neither a shutdown notice nor a book checksum); ``seqreset`` is counted and ignored (Gate
documents no update-id restart); ``lifetime`` closes with 1001 (Gate documents no lifetime).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import msgspec
from aiohttp import web

from cryptolink.simulator.config import ExchangeRules
from cryptolink.simulator.faults import Fault
from cryptolink.simulator.market import Bbo, Depth, Event, Level, MarketSource, SyntheticSource, Trade
from cryptolink.simulator.ratelimit import WindowCounter
from cryptolink.simulator.registry import ServerSpec, register
from cryptolink.simulator.server import ExchangeServer, SimConnection

__all__ = ["DEFAULT_SYMBOLS", "FUTURES", "GATE_RULES", "HOSTS", "ContractSource", "GateServer"]

_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder()

#: Real base URLs (ccxt ``gate`` ``urls.api`` and the WebSocket docs' server URLs).
HOSTS = ("https://api.gateio.ws", "https://fx-api.gateio.ws", "wss://api.gateio.ws", "wss://fx-ws.gateio.ws")
#: Prefix of a served futures contract in ``SimConfig.symbols["gate"]``.
FUTURES = "futures:"
DEFAULT_SYMBOLS = ("BTC_USDT", "ETH_USDT", "futures:BTC_USDT", "futures:ETH_USDT")
#: Public REST: 200 requests per 10 s per endpoint per IP (Gate API v4 rate-limit rules, 2024-01 announcement);
#: no WebSocket keepalive timer, lifetime or inbound rate is documented for public channels.
GATE_RULES = ExchangeRules(rest_weight_limit=200, rest_window_s=10.0)
#: ``quanto_multiplier`` of served contracts (base units per contract); others 1.
MULTIPLIERS = {"BTC": "0.0001", "ETH": "0.01", "SOL": "1"}
TIME_SKEW_S = 60
#: ``futures.order_book_update`` frequencies and levels (Futures WebSocket v4, "Order book update subscription").
FUTURES_FREQUENCIES = ("20ms", "100ms")
FUTURES_LEVELS = ("100", "50", "20")
_ENDPOINTS = (
    "time", "currency_pairs", "currencies", "margin_pairs", "contracts", "delivery", "options", "spot_book",
    "futures_book", "spot_trades", "futures_trades", "spot_tickers", "futures_tickers",
)  # fmt: skip


def _dumps(obj: Any) -> str:
    return _enc.encode(obj).decode()


def _trim(s: str) -> str:
    return s.rstrip("0").rstrip(".") if "." in s else s


class ContractSource(SyntheticSource):
    """A synthetic market in whole contracts (book levels of 1..2000, trades of 1..1000 contracts)."""

    def _qty(self) -> str:
        return str(self._rng.randint(1, 2_000))

    def _pop(self, ts_ms: int) -> Event:
        ev = super()._pop(ts_ms)
        if isinstance(ev, Trade):
            ev.qty = str(max(1, round(float(ev.qty) * 10_000)))
        return ev


@dataclass
class _Stream:
    """One paced book stream of one source: changes since the last push, subscribers, new ones waiting.

    ``level`` (``futures.order_book_update`` only): the stream carries the top ``level`` levels per side; ``view_*``
    are the prices (key -> price text) of that top as of the last source event, kept so that levels entering it
    are sent with their size and levels leaving it are sent as ``0``.
    """

    key: str
    interval_s: float
    symbol: str = ""
    level: int | None = None
    view_bids: dict[float, str] = field(default_factory=dict)
    view_asks: dict[float, str] = field(default_factory=dict)
    bids: dict[float, Level] = field(default_factory=dict)
    asks: dict[float, Level] = field(default_factory=dict)
    first_id: int | None = None
    last_id: int = 0
    conns: set[SimConnection] = field(default_factory=set)
    waiting: set[SimConnection] = field(default_factory=set)


class GateServer(ExchangeServer):
    """Gate spot and USDT perpetual public market data; see the module doc."""

    inert_faults: ClassVar[frozenset[str]] = frozenset({"notice", "badchecksum", "seqreset"})

    name = "gate"
    uses_replay_files = False
    hosts: ClassVar[tuple[str, ...]] = HOSTS

    @classmethod
    def trade_stream_key(cls, native: str) -> str:
        if native.startswith(FUTURES):
            return f"futures.trades:{native[len(FUTURES) :]}"
        return f"spot.trades:{native}"

    @classmethod
    def book_stream_prefix(cls, native: str) -> str:
        if native.startswith(FUTURES):
            return f"futures.order_book_update:{native[len(FUTURES) :]}"
        return f"spot.obu:{native}"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        override = self.rest_limit_override
        count, seconds = (
            override if override is not None else (self.rules.rest_weight_limit, self.rules.rest_window_s)
        )
        self.limiter = WindowCounter(dict.fromkeys(_ENDPOINTS, count), seconds, self.clock)
        self.rest_window_s = seconds
        self.subs: dict[str, set[SimConnection]] = {}  # "channel:symbol" -> subscribers (trades, tickers)
        self.books: dict[str, _Stream] = {}  # stream key -> paced book stream
        self._symbol_books: dict[str, list[_Stream]] = {}  # source symbol -> its book streams
        self._bbo: dict[str, tuple[str, str, str, str]] = {}  # book_ticker key -> last pushed (b, B, a, A)
        self._ticks: set[float] = set()

    # ---- symbols ----
    def _served(self, futures: bool, native: str) -> str | None:
        key = FUTURES + native if futures else native
        return key if key in self.symbols else None

    def make_market_source(self, symbol: str) -> MarketSource:
        cls = ContractSource if symbol.startswith(FUTURES) else SyntheticSource
        return cls(symbol, seed=self.seed, rate_hz=self.config.synthetic_rate_hz)

    def attach_source(self, symbol: str, src: MarketSource) -> None:
        src.listeners.append(lambda ev: self._on_event(symbol, src, ev))

    # ---- routes ----
    def setup_routes(self, app: web.Application) -> None:
        app.router.add_get("/ws/v4/", self._ws_spot)
        app.router.add_get("/ws/v4", self._ws_spot)
        app.router.add_get("/v4/ws/usdt", self._ws_futures)
        r = app.router
        r.add_get("/api/v4/spot/time", self._rest_time)
        r.add_get("/api/v4/spot/currency_pairs", self._rest_pairs)
        r.add_get("/api/v4/spot/currencies", self._rest_currencies)
        r.add_get("/api/v4/margin/currency_pairs", self._empty("margin_pairs"))
        r.add_get("/api/v4/futures/{settle}/contracts", self._rest_contracts)
        r.add_get("/api/v4/delivery/{settle}/contracts", self._empty("delivery"))
        r.add_get("/api/v4/options/underlyings", self._empty("options"))
        r.add_get("/api/v4/spot/order_book", self._rest_spot_book)
        r.add_get("/api/v4/futures/usdt/order_book", self._rest_futures_book)
        r.add_get("/api/v4/spot/trades", self._rest_spot_trades)
        r.add_get("/api/v4/futures/usdt/trades", self._rest_futures_trades)
        r.add_get("/api/v4/spot/tickers", self._rest_spot_tickers)
        r.add_get("/api/v4/futures/usdt/tickers", self._rest_futures_tickers)

    def unknown_path(self, request: web.Request, status: int) -> web.Response:
        """``{"label":"NOT_FOUND"|"METHOD_NOT_ALLOWED","message":..}`` (Gate's error shape; labels ours)."""
        label = "NOT_FOUND" if status == 404 else "METHOD_NOT_ALLOWED"
        return self._error(label, f"{request.method} {request.path} is not served", status)

    def send_notice(self, conn: SimConnection) -> None:
        """Nothing: Gate documents no shutdown notice."""

    def inject(self, fault: Fault, connection: int | None = None) -> None:
        """As the base, except ``seqreset``: Gate documents no update-id restart, so it is counted and ignored
        (applied, it would take the futures ids below every REST snapshot the client already stitched)."""
        if fault.kind == "seqreset":
            self.faults_injected["seqreset"] = self.faults_injected.get("seqreset", 0) + 1
            return
        super().inject(fault, connection)

    # ---- WebSocket ----
    async def _ws_spot(self, request: web.Request) -> web.StreamResponse:
        return await self._ws(request)

    async def _ws_futures(self, request: web.Request) -> web.StreamResponse:
        return await self._ws(request)

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        ws, conn = await self.accept(request)
        try:
            await conn.serve()
        finally:
            for key in list(conn.subscriptions):
                self._drop(conn, key)
        return ws

    def _drop(self, conn: SimConnection, key: str) -> None:
        conn.subscriptions.pop(key, None)
        subs = self.subs.get(key)
        if subs is not None:
            subs.discard(conn)
        stream = self.books.get(key)
        if stream is not None:
            stream.conns.discard(conn)
            stream.waiting.discard(conn)

    def _answer(self, conn: SimConnection, msg: dict[str, Any], error: tuple[int, str] | None = None) -> None:
        now_ns = self.clock.time_ns()
        out: dict[str, Any] = {"time": now_ns // 1_000_000_000, "time_ms": now_ns // 1_000_000}
        if msg.get("id") is not None:
            out["id"] = msg["id"]
        out.update(conn_id=conn.tag, trace_id=f"{conn.tag}{conn.frames_received:08x}")
        out.update(channel=msg.get("channel", ""), event=msg.get("event", ""))
        if isinstance(msg.get("payload"), list):
            out["payload"] = msg["payload"]
        if error is None:
            out["result"] = {"status": "success"}
        else:
            out["error"] = {"code": error[0], "message": error[1]}
            out["result"] = {"status": "fail"}
        conn.send_ctrl(_dumps(out))

    async def on_text(self, conn: SimConnection, text: str) -> None:
        futures = conn.route.startswith("/v4/ws/usdt")
        prefix = "futures" if futures else "spot"
        try:
            msg = _dec.decode(text)
        except msgspec.DecodeError:
            self._answer(conn, {}, (1, "invalid request body"))
            return
        if not isinstance(msg, dict) or not isinstance(msg.get("channel"), str):
            self._answer(conn, msg if isinstance(msg, dict) else {}, (1, "invalid request body"))
            return
        channel = msg["channel"]
        if channel == f"{prefix}.ping":
            if self.clock.monotonic() >= conn.noping_until:
                now_ns = self.clock.time_ns()
                conn.send_ctrl(
                    _dumps({"time": now_ns // 10**9, "time_ms": now_ns // 10**6, "channel": f"{prefix}.pong",
                            "event": "", "error": None, "result": None})
                )  # fmt: skip
            return
        event, payload, sent = msg.get("event"), msg.get("payload"), msg.get("time")
        if event not in ("subscribe", "unsubscribe") or not isinstance(payload, list) or not payload:
            self._answer(conn, msg, (2, "invalid argument: event and payload"))
            return
        now_s = self.clock.time_ns() // 10**9
        if not isinstance(sent, int) or isinstance(sent, bool) or abs(sent - now_s) > TIME_SKEW_S:
            self._answer(conn, msg, (2, f"invalid time {sent!r}: more than {TIME_SKEW_S} s from the server"))
            return
        if conn.reject_next:
            conn.reject_next = False
            self._answer(conn, msg, (2, "rejected (simulated fault)"))
            return
        keys = self._keys(futures, channel, payload)
        if isinstance(keys, str):
            self._answer(conn, msg, (2, keys))
            return
        if event == "unsubscribe":
            for key, _ in keys:
                self._drop(conn, key)
            self._answer(conn, msg)
            self.notify()
            return
        if channel == "spot.obu" and any(key in conn.subscriptions for key, _ in keys):
            self._answer(conn, msg, (2, f"Alert sub {payload[0]}"))
            return
        self._answer(conn, msg)
        conn.last_activity = self.clock.monotonic()
        for key, (symbol, interval, level) in keys:
            if key in conn.subscriptions:
                continue
            conn.subscriptions[key] = True
            src = self.source(symbol)
            assert src is not None
            if interval is None:
                self.subs.setdefault(key, set()).add(conn)
                if channel.endswith(".tickers"):
                    self._pace(1.0)
                continue
            stream = self.books.get(key)
            if stream is None:
                stream = self.books[key] = _Stream(key, interval, symbol, level)
                self._symbol_books.setdefault(symbol, []).append(stream)
                self._pace(interval)
            if not stream.conns and stream.level is not None:
                self._reset_view(stream, src)
            stream.conns.add(conn)
            if channel == "spot.obu":
                if stream.first_id is None:
                    self._send_full(conn, stream, symbol, src)
                else:
                    stream.waiting.add(conn)
        self.notify()

    def _keys(
        self, futures: bool, channel: str, payload: list[Any]
    ) -> list[tuple[str, tuple[str, float | None, int | None]]] | str:
        """``[(subscription key, (source symbol, push interval or None, level or None))]`` of a request, or an
        error message."""
        if not all(isinstance(p, str) for p in payload):
            return "invalid argument: payload items must be strings"
        prefix = "futures" if futures else "spot"
        kind = channel.removeprefix(prefix + ".")
        if not channel.startswith(prefix + ".") or kind not in (
            "trades", "book_ticker", "tickers", "obu" if not futures else "order_book_update",
        ):  # fmt: skip
            return f"unknown channel {channel}"
        if kind == "obu":
            if len(payload) != 1:
                return "only one spot.obu stream per request"
            parts = payload[0].split(".")
            if len(parts) != 3 or parts[0] != "ob" or parts[2] not in ("400", "50"):
                return f"invalid argument: {payload[0]}"
            symbol = self._served(False, parts[1])
            if symbol is None:
                return f"unknown currency pair {parts[1]}"
            return [(f"spot.obu:{parts[1]}.{parts[2]}", (symbol, 0.1 if parts[2] == "400" else 0.02, None))]
        if kind == "order_book_update":
            # [contract, frequency, level?]: frequency 20ms or 100ms, level "100" | "50" | "20" (20ms only with
            # "20"); 1000ms and level 10 were removed on 2024-11-18. An omitted level is taken as 100 (ours).
            if len(payload) < 2 or len(payload) > 3:
                return "invalid argument: payload is [contract, frequency, level]"
            freq, level = payload[1], payload[2] if len(payload) == 3 else "100"
            if (
                freq not in FUTURES_FREQUENCIES
                or level not in FUTURES_LEVELS
                or (freq == "20ms") != (level == "20")
            ):
                return f"invalid argument: frequency {freq} with level {level}"
            symbol = self._served(True, payload[0])
            if symbol is None:
                return f"unknown contract {payload[0]}"
            key = f"futures.order_book_update:{payload[0]}.{freq}.{level}"
            return [(key, (symbol, int(freq[:-2]) / 1000, int(level)))]
        out: list[tuple[str, tuple[str, float | None, int | None]]] = []
        for native in payload:
            symbol = self._served(futures, native)
            if symbol is None:
                return f"unknown {'contract' if futures else 'currency pair'} {native}"
            out.append((f"{channel}:{native}", (symbol, None, None)))
        return out

    def _pace(self, interval: float) -> None:
        if interval not in self._ticks:
            self._ticks.add(interval)
            self.on_tick(interval, lambda ts: self._flush(interval, ts))

    # ---- fan-out ----
    def _native(self, symbol: str) -> tuple[bool, str]:
        return (True, symbol[len(FUTURES) :]) if symbol.startswith(FUTURES) else (False, symbol)

    def _on_event(self, symbol: str, src: MarketSource, ev: Event) -> None:
        futures, native = self._native(symbol)
        prefix = "futures" if futures else "spot"
        if isinstance(ev, Depth):
            for stream in self._symbol_books.get(symbol, ()):
                if not stream.conns:
                    continue
                if stream.first_id is None:
                    stream.first_id = ev.first_id
                stream.last_id = ev.last_id
                if stream.level is not None:
                    self._track_view(stream, src, ev)
                    continue
                for p, q in ev.bids:
                    stream.bids[float(p)] = (p, q)
                for p, q in ev.asks:
                    stream.asks[float(p)] = (p, q)
            self._push_bbo(futures, native, src, ev.last_id, ev.ts_ms)
        elif isinstance(ev, Trade):
            key = f"{prefix}.trades:{native}"
            conns = self.subs.get(key)
            if conns:
                text = _dumps(self._trade_push(futures, native, ev))
                for conn in tuple(conns):
                    conn.send_data(text, key, ev.trade_id, ev.ts_ms)
        elif isinstance(ev, Bbo):
            self._push_bbo(futures, native, src, ev.update_id, ev.ts_ms)

    def _push_bbo(self, futures: bool, native: str, src: MarketSource, update_id: int, ts_ms: int) -> None:
        """``*.book_ticker``: pushed when the best bid/ask (price or size) changed since the last push, as Gate
        pushes on a best bid/ask change, never a copy of the previous one."""
        prefix = "futures" if futures else "spot"
        key = f"{prefix}.book_ticker:{native}"
        conns = self.subs.get(key)
        if not conns:
            return
        bids, asks = src.book.top(1)
        bid, bq = bids[0] if bids else ("", "0")
        ask, aq = asks[0] if asks else ("", "0")
        top = (bid, bq, ask, aq)
        if self._bbo.get(key) == top:
            return
        self._bbo[key] = top
        size = _trim if not futures else (lambda s: int(float(s)))
        result = {"t": ts_ms, "u": update_id, "s": native, "b": _trim(bid), "B": size(bq), "a": _trim(ask),
                  "A": size(aq)}  # fmt: skip
        text = _dumps({"time": ts_ms // 1000, "time_ms": ts_ms, "channel": f"{prefix}.book_ticker",
                       "event": "update", "result": result})  # fmt: skip
        for conn in tuple(conns):
            conn.send_data(text, key, update_id, ts_ms)

    @staticmethod
    def _view(side: Any, level: int) -> dict[float, str]:
        """Key -> price text of the best ``level`` levels of one side of a :class:`SimBook`."""
        return {k: pq[0] for k, pq in side.items()[:level]}

    def _reset_view(self, stream: _Stream, src: MarketSource) -> None:
        """A level-limited stream (re)starts: its top is the source's now, with no change pending."""
        assert stream.level is not None
        stream.view_bids = self._view(src.book.bids, stream.level)
        stream.view_asks = self._view(src.book.asks, stream.level)
        stream.bids.clear()
        stream.asks.clear()
        stream.first_id = None

    def _track_view(self, stream: _Stream, src: MarketSource, ev: Depth) -> None:
        """Queue what one source delta changes in the top ``stream.level`` levels: changed levels inside it,
        levels entering it (with their size) and levels leaving it (``0``). Changes deeper down are not sent
        ("only updates within the level are notified"), so a client book cut to ``level`` stays exact."""
        assert stream.level is not None
        for side, changes, old, pending, sign in (
            (src.book.bids, ev.bids, stream.view_bids, stream.bids, -1.0),
            (src.book.asks, ev.asks, stream.view_asks, stream.asks, 1.0),
        ):
            new = self._view(side, stream.level)
            for p, q in changes:
                if sign * float(p) in new:
                    pending[float(p)] = (p, q)
            for k, p in new.items():
                if k not in old:
                    pending[float(p)] = side[k]
            for k, p in old.items():
                if k not in new:
                    pending[float(p)] = (p, "0")
            if sign < 0:
                stream.view_bids = new
            else:
                stream.view_asks = new

    def _trade_push(self, futures: bool, native: str, t: Trade) -> dict[str, Any]:
        now_s = t.ts_ms // 1000
        if futures:
            size = int(float(t.qty))
            result: Any = [{"size": -size if t.buyer_maker else size, "id": t.trade_id, "create_time": now_s,
                            "create_time_ms": t.ts_ms, "price": _trim(t.price), "contract": native}]  # fmt: skip
        else:
            result = {"id": t.trade_id, "create_time": now_s, "create_time_ms": f"{t.ts_ms}.000",
                      "side": "sell" if t.buyer_maker else "buy", "currency_pair": native,
                      "amount": _trim(t.qty), "price": _trim(t.price), "range": f"{t.trade_id}-{t.trade_id}"}  # fmt: skip
        channel = "futures.trades" if futures else "spot.trades"
        return {"time": now_s, "time_ms": t.ts_ms, "channel": channel, "event": "update", "result": result}

    def _flush(self, interval: float, ts_ms: int) -> None:
        for stream in list(self.books.values()):
            if stream.interval_s == interval:
                self._flush_book(stream, ts_ms)
        if interval == 1.0:
            self._flush_tickers(ts_ms)

    def _levels(self, futures: bool, levels: list[Level]) -> list[Any]:
        if futures:
            return [{"p": _trim(p), "s": int(float(q))} for p, q in levels]
        return [[_trim(p), _trim(q)] for p, q in levels]

    def _flush_book(self, stream: _Stream, ts_ms: int) -> None:
        channel, _, rest = stream.key.partition(":")
        futures = channel.startswith("futures")
        native = rest.split(".")[0]
        symbol = FUTURES + native if futures else native
        src = self.sources.get(symbol)
        if stream.first_id is None or src is None:
            return
        first, last = stream.first_id, stream.last_id
        bids = [stream.bids[k] for k in sorted(stream.bids, reverse=True)]
        asks = [stream.asks[k] for k in sorted(stream.asks)]
        stream.first_id = None
        stream.bids.clear()
        stream.asks.clear()
        result: dict[str, Any] = {"t": ts_ms, "s": f"ob.{rest}" if not futures else native, "U": first, "u": last,
                                  "b": self._levels(futures, bids), "a": self._levels(futures, asks)}  # fmt: skip
        text = _dumps({"channel": channel, "event": "update", "time": ts_ms // 1000, "time_ms": ts_ms,
                       "result": result})  # fmt: skip
        waiting = stream.waiting
        for conn in tuple(stream.conns):
            if conn in waiting:
                continue
            if conn.take_gap(native):
                conn.note_skipped(stream.key)
                continue
            conn.send_data(text, stream.key, last, ts_ms)
        for conn in tuple(waiting & stream.conns):
            self._send_full(conn, stream, symbol, src)
        waiting.clear()

    def _send_full(self, conn: SimConnection, stream: _Stream, symbol: str, src: MarketSource) -> None:
        """A ``spot.obu`` ``full`` push: the whole book with ``u`` = the source's last update id."""
        _, _, rest = stream.key.partition(":")
        bids, asks = src.book.top(src.book.depth())
        ts = self.clock.time_ns() // 1_000_000
        result = {"t": ts, "full": True, "s": f"ob.{rest}", "u": src.last_update_id,
                  "b": self._levels(False, bids), "a": self._levels(False, asks)}  # fmt: skip
        text = _dumps(
            {"channel": "spot.obu", "event": "update", "time": ts // 1000, "time_ms": ts, "result": result}
        )
        conn.send_data(text, stream.key, src.last_update_id, ts)

    def _flush_tickers(self, ts_ms: int) -> None:
        for key, conns in list(self.subs.items()):
            channel, _, native = key.partition(":")
            if not conns or not channel.endswith(".tickers"):
                continue
            futures = channel.startswith("futures")
            src = self.sources.get(FUTURES + native if futures else native)
            if src is None:
                continue
            text = _dumps({"time": ts_ms // 1000, "time_ms": ts_ms, "channel": channel, "event": "update",
                           "result": [self._ticker(futures, native, src)] if futures
                           else self._ticker(futures, native, src)})  # fmt: skip
            for conn in tuple(conns):
                conn.send_data(text, key, None, ts_ms)

    def _ticker(self, futures: bool, native: str, src: MarketSource) -> dict[str, str]:
        bids, asks = src.book.top(1)
        bid, bq = bids[0] if bids else ("0", "0")
        ask, aq = asks[0] if asks else ("0", "0")
        last = _trim(src.last_price)
        open_ = _trim(src.open_price if src.open_price != "0" else src.last_price)
        hi, lo = max(last, open_, key=float), min(last, open_, key=float)
        change = f"{(float(last) / float(open_) - 1) * 100:.2f}" if float(open_) else "0"
        vol = src.volume
        if futures:
            mult = float(MULTIPLIERS.get(native.split("_")[0], "1"))
            return {"contract": native, "last": last, "change_percentage": change, "total_size": "0",
                    "low_24h": lo, "high_24h": hi, "volume_24h": str(int(vol)),
                    "volume_24h_base": _trim(f"{vol * mult:.8f}"),
                    "volume_24h_quote": _trim(f"{vol * mult * float(last):.8f}"),
                    "volume_24h_settle": _trim(f"{vol * mult * float(last):.8f}"), "mark_price": last,
                    "funding_rate": "0.0001", "funding_rate_indicative": "0.0001", "index_price": last,
                    "lowest_ask": _trim(ask), "lowest_size": str(int(float(aq))), "highest_bid": _trim(bid),
                    "highest_size": str(int(float(bq)))}  # fmt: skip
        return {"currency_pair": native, "last": last, "lowest_ask": _trim(ask), "lowest_size": _trim(aq),
                "highest_bid": _trim(bid), "highest_size": _trim(bq), "change_percentage": change,
                "base_volume": _trim(f"{vol:.8f}"), "quote_volume": _trim(f"{vol * float(last):.8f}"),
                "high_24h": hi, "low_24h": lo}  # fmt: skip

    # ---- REST ----
    def _error(self, label: str, message: str, status: int = 400) -> web.Response:
        return web.Response(
            text=_dumps({"label": label, "message": message}), status=status, content_type="application/json"
        )

    def _ok(self, data: Any, headers: dict[str, str]) -> web.Response:
        return web.Response(text=_dumps(data), content_type="application/json", headers=headers)

    def _limit(self, request: web.Request, endpoint: str) -> tuple[web.Response | None, dict[str, str]]:
        """Count the request; the rate-limit headers, and a 429 answer when the endpoint's window is full."""
        self.count_rest(request.path, 1)
        verdict = self.limiter.hit(endpoint)
        limit = self.limiter.limits[endpoint]
        now = self.clock.monotonic()
        window_end = (math.floor(now / self.rest_window_s) + 1) * self.rest_window_s
        reset_ms = self.clock.time_ns() // 1_000_000 + int((window_end - now) * 1000)
        headers = {
            "X-Gate-RateLimit-Requests-Remain": str(max(0, limit - verdict.used)),
            "X-Gate-RateLimit-Limit": str(limit),
            "X-Gate-RateLimit-Reset-Timestamp": str(reset_ms),
        }
        if verdict.status == 200:
            return None, headers
        self.count_limited(429)
        headers["X-Gate-RateLimit-Requests-Remain"] = "0"
        body = _dumps({"label": "TOO_MANY_REQUESTS", "message": "Request Rate limit Exceeded"})
        return web.Response(text=body, status=429, content_type="application/json", headers=headers), headers

    def _empty(self, endpoint: str) -> Callable[[web.Request], Any]:
        async def handler(request: web.Request) -> web.Response:
            refused, headers = self._limit(request, endpoint)
            return refused or self._ok([], headers)

        return handler

    async def _rest_time(self, request: web.Request) -> web.Response:
        refused, headers = self._limit(request, "time")
        return refused or self._ok({"server_time": self.clock.time_ns() // 1_000_000}, headers)

    def _spot_symbols(self) -> list[str]:
        return [s for s in self.symbols if not s.startswith(FUTURES)]

    def _futures_symbols(self) -> list[str]:
        return [s[len(FUTURES) :] for s in self.symbols if s.startswith(FUTURES)]

    async def _rest_pairs(self, request: web.Request) -> web.Response:
        refused, headers = self._limit(request, "currency_pairs")
        if refused:
            return refused
        out = []
        for native in self._spot_symbols():
            base, _, quote = native.partition("_")
            out.append({"id": native, "base": base, "base_name": base, "quote": quote, "quote_name": quote,
                        "fee": "0.2", "min_base_amount": "0.00001", "min_quote_amount": "1",
                        "max_quote_amount": "5000000", "amount_precision": 5, "precision": 2,
                        "trade_status": "tradable", "sell_start": 0, "buy_start": 0, "delisting_time": 0,
                        "type": "normal", "trade_url": f"https://www.gate.com/trade/{native}"})  # fmt: skip
        return self._ok(out, headers)

    async def _rest_currencies(self, request: web.Request) -> web.Response:
        refused, headers = self._limit(request, "currencies")
        if refused:
            return refused
        names = sorted({part for s in self._spot_symbols() for part in s.split("_")})
        out = [{"currency": c, "name": c, "delisted": False, "withdraw_disabled": False,
                "withdraw_delayed": False, "deposit_disabled": False, "trade_disabled": False,
                "chain": c, "chains": [{"name": c, "addr": "", "withdraw_disabled": False,
                                        "withdraw_delayed": False, "deposit_disabled": False}]}
               for c in names]  # fmt: skip
        return self._ok(out, headers)

    async def _rest_contracts(self, request: web.Request) -> web.Response:
        refused, headers = self._limit(request, "contracts")
        if refused:
            return refused
        if request.match_info["settle"] != "usdt":
            return self._ok([], headers)
        out = []
        for native in self._futures_symbols():
            src = self.source(FUTURES + native)
            assert src is not None
            base = native.split("_")[0]
            last = _trim(src.last_price)
            out.append({"name": native, "type": "direct", "quanto_multiplier": MULTIPLIERS.get(base, "1"),
                        "leverage_min": "1", "leverage_max": "100", "maintenance_rate": "0.005",
                        "mark_type": "index", "mark_price": last, "index_price": last, "last_price": last,
                        "maker_fee_rate": "-0.0001", "taker_fee_rate": "0.00075", "order_price_round": "0.01",
                        "mark_price_round": "0.01", "funding_rate": "0.0001", "funding_interval": 28800,
                        "funding_next_apply": 0, "risk_limit_base": "1000000", "risk_limit_step": "1000000",
                        "risk_limit_max": "10000000", "order_size_min": 1, "order_size_max": 1000000,
                        "order_price_deviate": "0.5", "orderbook_id": src.last_update_id,
                        "trade_id": src.last_trade_id, "trade_size": 0, "position_size": 0,
                        "in_delisting": False, "orders_limit": 50, "enable_bonus": False,
                        "enable_credit": False, "create_time": 1600000000, "status": "trading",
                        "launch_time": 1600000000})  # fmt: skip
        return self._ok(out, headers)

    def _int(self, request: web.Request, name: str, default: int, lo: int, hi: int) -> int:
        raw = request.query.get(name, "")
        if not raw:
            return default
        if not raw.isdigit():
            raise ValueError(name)
        return min(max(int(raw), lo), hi)

    async def _book(self, request: web.Request, futures: bool) -> web.Response:
        refused, headers = self._limit(request, "futures_book" if futures else "spot_book")
        if refused:
            return refused
        param = "contract" if futures else "currency_pair"
        native = request.query.get(param, "")
        symbol = self._served(futures, native)
        if symbol is None:
            label = "CONTRACT_NOT_FOUND" if futures else "INVALID_CURRENCY_PAIR"
            return self._error(label, f"{param} {native!r} not found")
        try:
            limit = self._int(request, "limit", 10, 1, 300 if futures else 1000)
        except ValueError:
            return self._error("INVALID_PARAM_VALUE", "limit must be an integer")
        src = self.source(symbol)
        assert src is not None
        bids, asks = src.book.top(limit)
        now_ms = self.clock.time_ns() // 1_000_000
        body: dict[str, Any] = {}
        if request.query.get("with_id") == "true":
            body["id"] = src.last_update_id
        if futures:
            body.update(current=now_ms / 1000, update=now_ms / 1000)
        else:
            body.update(current=now_ms, update=now_ms)
        body.update(asks=self._levels(futures, asks), bids=self._levels(futures, bids))
        return self._ok(body, headers)

    async def _rest_spot_book(self, request: web.Request) -> web.Response:
        return await self._book(request, False)

    async def _rest_futures_book(self, request: web.Request) -> web.Response:
        return await self._book(request, True)

    async def _trades(self, request: web.Request, futures: bool) -> web.Response:
        refused, headers = self._limit(request, "futures_trades" if futures else "spot_trades")
        if refused:
            return refused
        param = "contract" if futures else "currency_pair"
        native = request.query.get(param, "")
        symbol = self._served(futures, native)
        if symbol is None:
            label = "CONTRACT_NOT_FOUND" if futures else "INVALID_CURRENCY_PAIR"
            return self._error(label, f"{param} {native!r} not found")
        try:
            limit = self._int(request, "limit", 100, 1, 1000)
            last_id = self._int(request, "last_id", -1, 0, 2**62)
        except ValueError as exc:
            return self._error("INVALID_PARAM_VALUE", f"{exc} must be an integer")
        src = self.source(symbol)
        assert src is not None
        if last_id < 0:
            trades = src.trades.select(limit, newest=True)
        elif request.query.get("reverse") == "true":
            trades = src.trades.select(limit, max_id=last_id - 1, newest=True)
        else:
            trades = src.trades.select(limit, min_id=last_id + 1)
        out = []
        for t in reversed(trades):  # newest first
            if futures:
                size = int(float(t.qty))
                out.append({"id": t.trade_id, "create_time": t.ts_ms / 1000, "create_time_ms": t.ts_ms / 1,
                            "contract": native, "size": -size if t.buyer_maker else size,
                            "price": _trim(t.price)})  # fmt: skip
            else:
                out.append({"id": str(t.trade_id), "create_time": str(t.ts_ms // 1000),
                            "create_time_ms": f"{t.ts_ms}.000", "currency_pair": native,
                            "side": "sell" if t.buyer_maker else "buy", "amount": _trim(t.qty),
                            "price": _trim(t.price)})  # fmt: skip
        return self._ok(out, headers)

    async def _rest_spot_trades(self, request: web.Request) -> web.Response:
        return await self._trades(request, False)

    async def _rest_futures_trades(self, request: web.Request) -> web.Response:
        return await self._trades(request, True)

    async def _tickers(self, request: web.Request, futures: bool) -> web.Response:
        refused, headers = self._limit(request, "futures_tickers" if futures else "spot_tickers")
        if refused:
            return refused
        param = "contract" if futures else "currency_pair"
        wanted = request.query.get(param)
        natives = self._futures_symbols() if futures else self._spot_symbols()
        if wanted is not None:
            if wanted not in natives:
                label = "CONTRACT_NOT_FOUND" if futures else "INVALID_CURRENCY_PAIR"
                return self._error(label, f"{param} {wanted!r} not found")
            natives = [wanted]
        out = []
        for native in natives:
            src = self.source(FUTURES + native if futures else native)
            assert src is not None
            out.append(self._ticker(futures, native, src))
        return self._ok(out, headers)

    async def _rest_spot_tickers(self, request: web.Request) -> web.Response:
        return await self._tickers(request, False)

    async def _rest_futures_tickers(self, request: web.Request) -> web.Response:
        return await self._tickers(request, True)


register(ServerSpec("gate", GateServer, port_offset=6, rules=GATE_RULES, symbols=DEFAULT_SYMBOLS))
