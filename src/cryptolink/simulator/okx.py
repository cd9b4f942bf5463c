"""Simulated OKX v5 public market data: WebSocket ``/ws/v5/public`` and the public REST endpoints, for spot,
linear swaps (``BTC-USDT-SWAP``, unified ``BTC/USDT:USDT``) and inverse swaps (``BTC-USD-SWAP``, unified
``BTC/USD:BTC``).

``ws_url`` is ``ws://127.0.0.1:PORT``; clients connect to ``ws_url + "/ws/v5/public"``; REST paths are the real
ones under ``rest_url``. :attr:`OkxServer.hosts` lists the real base URLs this server stands for, so a client is
pointed at it by replacing those prefixes only. Official source: https://www.okx.com/docs-v5/en/ (sections cited
below by anchor).

What is served (``SimConfig.symbols["okx"]``, default :data:`DEFAULT_SYMBOLS`):

- ``BTC-USDT`` (SPOT), ``UNI-USD-SWAP`` (inverse SWAP) and ``BTC-USD-220527`` (inverse FUTURES) replay the real OKX
  v5 recording ``cryptofeed_okx_OKX.ws.1.0.gz`` (bmoscon/cryptofeed sample data, recorded 2022-05-13, ~10.8 s:
  one ``books`` snapshot and ~95 updates per instrument, their trades and tickers), looped forever (mode
  ``"replay"``). Prices and sizes are the recorded strings; ``seqId``/``prevSeqId``, trade ids (continuing across
  loops) and every ``ts`` are the simulator's own (the recording predates seqId); checksums are computed on the
  book exactly as a client rebuilds it from what was sent; tickers carry the recorded values with a fresh ``ts``.
  At each loop seam one update turns the book back into the recorded snapshot book.
- ``ETH-USDT`` (SPOT), ``BTC-USDT-SWAP`` (linear SWAP), ``BTC-USD-SWAP`` and ``ETH-USD-SWAP`` (inverse SWAP, 100 and
  10 USD per contract), and any other configured instId, are synthetic seeded random-walk markets (also every
  instrument in mode ``"synthetic"``). Derivatives' sizes are whole contracts (``lotSz`` 1).

A ``books`` subscriber's snapshot is the source's whole book, so every later update and checksum is consistent
with it: replayed books never exceed the recording's depth (400 levels per side, the ``books`` channel depth);
synthetic books hold 50 levels per side plus the range their mid has walked (more than 400 only after a walk of
hundreds of ticks).

WebSocket (https://www.okx.com/docs-v5/en/#overview-websocket-subscribe and the channel sections):
``{"op":"subscribe"|"unsubscribe","args":[{"channel":..,"instId":..}],"id"?}`` => one ack per arg
``{"id"?,"event":"subscribe","arg":{..},"connId":".."}``. Errors ``{"id"?,"event":"error","code":..,"msg":..,
"connId":".."}`` carry the request's ``id`` when it had one (so a client can fail only that request; OKX's error
frames carry no ``arg``, the failing channel and instId are named in ``msg``): a frame that is not a valid request
=> ``60012`` "Illegal request: <the request>"; unknown channel or instId => ``60018`` "Wrong URL or channel:..,instId:..
doesn't exist. ..."; ``books-l2-tbt`` and ``books50-l2-tbt`` (login and VIP4/VIP5 only:
https://www.okx.com/help/5399923178253) => ``60011`` "Please log in"; more than ``max_subs_per_hour`` (480)
requests => ``60014`` "Requests too frequent". Text ``ping`` => text ``pong``
(https://www.okx.com/docs-v5/en/#overview-websocket-connect). The server closes (code 4004 "No data received in
30s.") after ``idle_close_s`` (30 s) without a subscription or pushed data. Pushes are paced on the simulator's
clock as documented (intervals in :data:`PUSH_INTERVALS_S`); a push waits at most one interval and is never closer
than one interval to the previous push of the same channel and instrument. Channels:

- ``trades`` (#order-book-trading-market-data-ws-trades-channel): ``{"instId","tradeId","px","sz","side","ts",
  "count":"1","source":"0","seqId"}`` per trade as it happens, ``side`` = taker side, ``sz`` in contracts for
  derivatives.
- ``tickers`` (#order-book-trading-market-data-ws-tickers-channel): the current ticker on subscription, then at
  most one push per 100 ms when a trade or a best bid/ask change happened (replayed instruments: when a recorded
  ticker arrived). ``vol24h`` is in contracts for derivatives, ``volCcy24h`` in base currency for derivatives and
  in quote currency for spot.
- ``books`` (#order-book-trading-market-data-ws-order-book-channel): snapshot with ``prevSeqId = -1`` then
  updates chained by ``prevSeqId == previous seqId``, one per 100 ms at most carrying every level changed since
  the previous push (so ``seqId`` may advance by more than one); levels ``[px, sz, "0", numOrders]``; an empty
  update (``seqId == prevSeqId``) after ``book_heartbeat_s`` without changes; a ``seqreset`` fault makes ``seqId <
  prevSeqId`` once. A subscriber that arrives while changes wait for their push gets its snapshot with that push.
  ``checksum`` is the CRC32 of the top 25 levels interleaved ``bid:ask`` as a signed int32 ("Checksum" there) when
  ``SimConfig.okx_checksum == "real"``, else ``0``.
- ``books5`` (same section): ``{"asks","bids","instId","ts","seqId"}`` with the top 5 levels per side, on
  subscription and then every 100 ms when they changed (no ``action``, no checksum).
- ``bbo-tbt`` (same section): ``{"asks","bids","ts","seqId"}`` with the best level per side, on subscription and
  then at most every 10 ms when it changed.

REST (per-endpoint request counts per 2 s, https://www.okx.com/docs-v5/en/#overview-rate-limits; over =>
HTTP 429 ``{"code":"50011","msg":"Too Many Requests","data":[]}``); limits per 2 s in :data:`REST_LIMITS`, or the
simulator's ``rest_limit_override`` ``(requests, seconds)`` for every endpoint. Every request is counted in the
server's REST statistics (weight 1: OKX counts requests, not weight). Errors are OKX's JSON
``{"code","msg","data":[]}`` with HTTP 400; a path the simulator does not serve answers HTTP 404
``{"code":"404","msg":"Not Found","data":[]}`` (a wrong method: 405; our choice, the docs do not specify it).

- ``/api/v5/public/time``; ``/api/v5/public/instruments?instType=SPOT|MARGIN|SWAP|FUTURES|OPTION[&instId=]``: the
  served instruments as recorded in ``cryptofeed_okx_OKX.0.gz`` (2022-05, real ``ctVal``/``ctMult``/
  ``ctValCcy``/``ctType``/``settleCcy``/``uly``), ``state`` set to ``live`` and ``instFamily`` (added to the API
  after the recording) equal to ``uly``; a served instId missing there is cloned from a recorded one of its type.
  A type with nothing served (``OPTION``, ``MARGIN``) answers an empty list, as OKX does for no data.
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
import math
import zlib
from collections.abc import Callable
from functools import lru_cache
from typing import Any, ClassVar

import msgspec
from aiohttp import web

from cryptolink import recordings
from cryptolink.simulator.config import OKX_RULES
from cryptolink.simulator.market import (
    OKX_REPLAY_INSTRUMENTS,
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
from cryptolink.simulator.registry import ServerSpec, register
from cryptolink.simulator.server import ExchangeServer, SimConnection

__all__ = [
    "CHANNELS",
    "DEFAULT_SYMBOLS",
    "HOSTS",
    "LOGIN_CHANNELS",
    "PUSH_INTERVALS_S",
    "REST_LIMITS",
    "ContractSyntheticSource",
    "OkxServer",
    "inst_type",
    "okx_checksum",
    "okx_str",
]

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
#: Public channels served without login.
CHANNELS = ("trades", "tickers", "books", "books5", "bbo-tbt")
#: Depth channels OKX serves only to logged-in VIP4 (``books50-l2-tbt``) / VIP5 (``books-l2-tbt``) users: the
#: public endpoint answers them with error 60011 "Please log in" (https://www.okx.com/help/5399923178253).
LOGIN_CHANNELS = ("books-l2-tbt", "books50-l2-tbt")
#: Shortest gap in seconds between two pushes of one channel and instrument (the channel sections of
#: https://www.okx.com/docs-v5/en/#order-book-trading-market-data-ws-order-book-channel and
#: #order-book-trading-market-data-ws-tickers-channel): ``books`` changes aggregated every 100 ms, ``books5``
#: every 100 ms (https://www.okx.com/help/5399923178253: "every 100ms instead of 200ms"), ``bbo-tbt`` every 10 ms,
#: ``tickers`` at most every 100 ms. ``trades`` are pushed as they happen.
PUSH_INTERVALS_S = {"books": 0.1, "books5": 0.1, "bbo-tbt": 0.01, "tickers": 0.1}
#: Real OKX base URLs (REST and public WebSocket) this server stands for: "Production Trading Services" and the
#: AWS endpoints of https://www.okx.com/docs-v5/en/#overview-production-trading-services, and ccxt's
#: ``wss://ws.okx.com:443`` (``ccxt.pro.okx`` ``urls.api.ws``). OKX's EEA (``eea.okx.com``) and US
#: (``us.okx.com``) hosts are other ccxt exchanges (``myokx``, ``okxus``) and are not listed.
HOSTS = (
    "https://www.okx.com",
    "https://aws.okx.com",
    "wss://ws.okx.com:8443",
    "wss://ws.okx.com:443",
    "wss://wsaws.okx.com:8443",
)
#: Instruments served by default: the replayed ones (:data:`~cryptolink.simulator.market.OKX_REPLAY_INSTRUMENTS`)
#: then synthetic spot, linear swap and inverse swaps.
DEFAULT_SYMBOLS = (
    "BTC-USDT",
    "UNI-USD-SWAP",
    "BTC-USD-220527",
    "ETH-USDT",
    "BTC-USDT-SWAP",
    "BTC-USD-SWAP",
    "ETH-USD-SWAP",
)
#: recorded instrument used as the template of a served instId missing from the instruments recording, by
#: (instType, quote is USD): USD-quoted derivatives are inverse, the others linear
_TEMPLATES = {
    ("SPOT", False): "BTC-USDT",
    ("SPOT", True): "BTC-USDT",
    ("SWAP", False): "BTC-USDT-SWAP",
    ("SWAP", True): "UNI-USD-SWAP",
    ("FUTURES", True): "BTC-USD-220527",
}
_INST_TYPES = ("SPOT", "MARGIN", "SWAP", "FUTURES", "OPTION")


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


class ContractSyntheticSource(SyntheticSource):
    """A :class:`~cryptolink.simulator.market.SyntheticSource` for derivatives: book and trade sizes are whole
    contracts (OKX swaps and futures have ``lotSz`` 1): levels of 1..2000 contracts, trades of 1..1000."""

    def _qty(self) -> str:
        return str(self._rng.randint(1, 2_000))

    def _pop(self, ts_ms: int) -> Event:
        ev = super()._pop(ts_ms)
        if isinstance(ev, Trade):  # the base draws 0.00001..0.1 base units
            ev.qty = str(max(1, round(float(ev.qty) * 10_000)))
        return ev


class _Throttle:
    """Runs ``flush`` on :meth:`poke` at most once per ``interval_s`` of the server's clock: at once when the
    previous run is at least ``interval_s`` old, else when it will be (pokes in between are folded into that run).
    """

    __slots__ = ("_flush", "_last", "_scheduled", "_server", "interval_s")

    def __init__(self, server: ExchangeServer, interval_s: float, flush: Callable[[], None]) -> None:
        self._server = server
        self.interval_s = interval_s
        self._flush = flush
        self._last = -math.inf
        self._scheduled = False

    def poke(self) -> None:
        if self._scheduled:
            return
        # 1 us more than the interval, so that the pushes' millisecond ``ts`` (truncated) are never closer
        wait = self._last + self.interval_s + 1e-6 - self._server.clock.monotonic()
        if wait <= 0:
            self._run()
        else:
            self._scheduled = True
            self._server._spawn(self._later(wait))

    async def _later(self, wait: float) -> None:
        try:
            await self._server.clock.sleep(wait)
        finally:
            self._scheduled = False
        self._run()

    def _run(self) -> None:
        self._last = self._server.clock.monotonic()
        self._flush()


class _Feed:
    """Push state of one instrument: the ``books`` changes not yet pushed, the last ``books5``/``bbo-tbt``/
    ``tickers`` content pushed, the connections waiting for their first push, one throttle per paced channel."""

    def __init__(self, server: OkxServer, inst: str, src: MarketSource) -> None:
        self.server = server
        self.inst = inst
        self.src = src
        recorded = isinstance(src, OkxReplaySource) or getattr(src, "recorded_strings", False)
        self.fmt: Callable[[str], str] = _same if recorded else okx_str  # recorded strings go out as received
        # books: levels changed since the last push (float price -> (px, sz)), prevSeqId of the first of them
        self.bids: dict[float, Level] = {}
        self.asks: dict[float, Level] = {}
        self.prev_id: int | None = None
        self.last_id = 0
        self.waiting: dict[str, set[SimConnection]] = {c: set() for c in PUSH_INTERVALS_S}
        self.pushed: dict[str, Any] = {}  # channel -> what its last push carried (books5, bbo-tbt, tickers)
        self.throttles = {
            "books": _Throttle(server, PUSH_INTERVALS_S["books"], self.flush_books),
            "books5": _Throttle(server, PUSH_INTERVALS_S["books5"], lambda: self.flush_top("books5", 5)),
            "bbo-tbt": _Throttle(server, PUSH_INTERVALS_S["bbo-tbt"], lambda: self.flush_top("bbo-tbt", 1)),
            "tickers": _Throttle(server, PUSH_INTERVALS_S["tickers"], self.flush_ticker),
        }

    def conns(self, channel: str) -> set[SimConnection] | None:
        return self.server.subs.get(f"{channel}:{self.inst}")

    # ---- events ----
    def on_event(self, ev: Event) -> None:
        """Route one source event: trades are pushed now, the paced channels are poked."""
        if isinstance(ev, Depth):
            self.server._last_book_change[self.inst] = self.server.clock.monotonic()
            if self.conns("books"):
                self.add_depth(ev)
            for channel in ("books5", "bbo-tbt"):
                if self.conns(channel):
                    self.throttles[channel].poke()
        elif isinstance(ev, Trade):
            conns = self.conns("trades")
            if conns:
                self.server._send_trade(conns, self.inst, self.src, ev, self.fmt)
        # replayed tickers change only with a recorded ticker; synthetic ones with a trade or the top of book
        if (isinstance(ev, Ticker) or self.src.ticker is None) and self.conns("tickers"):
            self.throttles["tickers"].poke()

    def subscribed(self, conn: SimConnection, channel: str) -> None:
        """First push for a new subscriber: the ``books`` snapshot now (or with the pending push), the current
        ``books5``/``bbo-tbt``/``tickers`` content with the next push of that channel."""
        if channel == "books":
            if self.prev_id is None:
                self.server._send_snapshot(conn, self.inst, self.src, self.fmt)
            else:
                self.waiting["books"].add(conn)
        elif channel in self.waiting:
            self.waiting[channel].add(conn)
            self.throttles[channel].poke()

    # ---- books ----
    def add_depth(self, ev: Depth) -> None:
        if self.prev_id is None:
            self.prev_id = ev.prev_id
        self.last_id = ev.last_id
        for p, q in ev.bids:
            self.bids[float(p)] = (p, q)
        for p, q in ev.asks:
            self.asks[float(p)] = (p, q)
        self.throttles["books"].poke()

    def flush_books(self) -> None:
        waiting = self.waiting["books"]
        conns = self.conns("books")
        if self.prev_id is None or not conns:
            self.prev_id = None
            self.bids.clear()
            self.asks.clear()
            waiting.clear()
            return
        bids = [self.bids[k] for k in sorted(self.bids, reverse=True)]
        asks = [self.asks[k] for k in sorted(self.asks)]
        prev_id, last_id = self.prev_id, self.last_id
        self.prev_id = None
        self.bids.clear()
        self.asks.clear()
        targets = [c for c in conns if c not in waiting]
        if targets:
            self.server._send_book_update(
                targets, self.inst, self.src, bids, asks, prev_id, last_id, self.fmt
            )
        for conn in waiting & conns:
            self.server._send_snapshot(conn, self.inst, self.src, self.fmt)
        waiting.clear()

    # ---- books5 / bbo-tbt ----
    def flush_top(self, channel: str, depth: int) -> None:
        waiting = self.waiting[channel]
        conns = self.conns(channel)
        if not conns:
            waiting.clear()
            return
        bids, asks = self.src.book.top(depth)
        top = (bids, asks)
        changed = top != self.pushed.get(channel)
        targets = list(conns) if changed else [c for c in conns if c in waiting]
        waiting.clear()
        if not targets:
            return
        self.pushed[channel] = top
        ts = self.server.clock.time_ns() // 1_000_000
        seq = self.src.last_update_id
        data: dict[str, Any] = {"asks": _levels(asks, self.fmt), "bids": _levels(bids, self.fmt)}
        if channel == "books5":
            data["instId"] = self.inst
        data.update(ts=str(ts), seqId=seq)
        text = _dumps({"arg": {"channel": channel, "instId": self.inst}, "data": [data]})
        key = f"{channel}:{self.inst}"
        for conn in targets:
            conn.send_data(text, key, seq, ts)

    # ---- tickers ----
    def flush_ticker(self) -> None:
        waiting = self.waiting["tickers"]
        conns = self.conns("tickers")
        if not conns:
            waiting.clear()
            return
        ts = self.server.clock.time_ns() // 1_000_000
        data = self.server._ticker(self.inst, self.src, ts)
        if self.src.ticker is not None:  # replayed: a new recorded ticker
            state: tuple[str, ...] = tuple(v for k, v in data.items() if k != "ts")
        else:  # synthetic: a trade or a best bid/ask change (volume moves with every trade)
            state = tuple(data[k] for k in ("bidPx", "bidSz", "askPx", "askSz", "last", "vol24h"))
        changed = state != self.pushed.get("tickers")
        targets = list(conns) if changed else [c for c in conns if c in waiting]
        waiting.clear()
        if not targets:
            return
        self.pushed["tickers"] = state
        text = _dumps({"arg": {"channel": "tickers", "instId": self.inst}, "data": [data]})
        key = f"tickers:{self.inst}"
        for conn in targets:
            conn.send_data(text, key, None, ts)


class OkxServer(ExchangeServer):
    """OKX v5 public market data; see the module doc for what is served and the sources."""

    name = "okx"
    uses_replay_files = False
    hosts: ClassVar[tuple[str, ...]] = HOSTS
    book_checksums: ClassVar[bool] = True

    @classmethod
    def trade_stream_key(cls, native: str) -> str:
        return f"trades:{native}"

    @classmethod
    def book_stream_prefix(cls, native: str) -> str:
        return f"books:{native}"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.subs: dict[str, set[SimConnection]] = {}
        override = self.rest_limit_override
        if override is None:
            self.limiter = WindowCounter(REST_LIMITS, self.rules.rest_window_s, self.clock)
        else:
            count, seconds = override
            self.limiter = WindowCounter({k: count for k in REST_LIMITS}, seconds, self.clock)
        self.real_checksum = self.config.okx_checksum == "real"
        self._last_book_change: dict[str, float] = {}
        self._feeds: dict[str, _Feed] = {}
        self._meta: dict[str, dict[str, Any] | None] = {}
        if self.rules.book_heartbeat_s is not None:
            self._spawn(self._book_heartbeats(self.rules.book_heartbeat_s))

    async def start(self, host: str, port: int) -> None:
        """Parse the OKX recording in a worker thread (replay mode), then bind and serve (see the base)."""
        shipped = [s for s in self.symbols if s in OKX_REPLAY_INSTRUMENTS and s not in self._captured]
        if self.mode == "replay" and shipped:
            await asyncio.to_thread(preload_okx_replay)
        await super().start(host, port)

    def make_market_source(self, symbol: str) -> MarketSource:
        """The recording for :data:`OKX_REPLAY_INSTRUMENTS` in replay mode, else a synthetic market (sizes in
        whole contracts for swaps and futures)."""
        if self.mode == "replay" and symbol in OKX_REPLAY_INSTRUMENTS:
            return OkxReplaySource(symbol)
        cls = SyntheticSource if inst_type(symbol) == "SPOT" else ContractSyntheticSource
        return cls(symbol, seed=self.seed, rate_hz=self.config.synthetic_rate_hz)

    def fmt(self, inst: str) -> Callable[[str], str]:
        """How ``inst``'s price/size strings are sent: recorded OKX strings as they are, synthetic ones without
        trailing zeros."""
        feed = self._feeds.get(inst)
        return feed.fmt if feed is not None else okx_str

    def setup_routes(self, app: web.Application) -> None:
        app.router.add_get("/ws/v5/public", self._ws_handler)
        app.router.add_get("/api/v5/public/time", self._rest_time)
        app.router.add_get("/api/v5/public/instruments", self._rest_instruments)
        app.router.add_get("/api/v5/market/books", self._rest_books)
        app.router.add_get("/api/v5/market/ticker", self._rest_ticker)
        app.router.add_get("/api/v5/market/tickers", self._rest_tickers)
        app.router.add_get("/api/v5/market/trades", self._rest_trades)
        app.router.add_get("/api/v5/market/history-trades", self._rest_history_trades)

    def unknown_path(self, request: web.Request, status: int) -> web.Response:
        """OKX-shaped answer to a path (404) or method (405) the simulator does not serve:
        ``{"code":"404","msg":"Not Found","data":[]}`` (JSON like every OKX error, code = HTTP status: the docs do
        not specify this answer)."""
        return self._fail(str(status), "Not Found" if status == 404 else "Method Not Allowed", status)

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
        illegal = f"Illegal request: {text[:4000]}"
        try:
            msg = _dec.decode(text)
        except msgspec.DecodeError:
            self._error(conn, "60012", illegal, None)
            return
        if not isinstance(msg, dict):
            self._error(conn, "60012", illegal, None)
            return
        req_id = msg.get("id")
        op, args = msg.get("op"), msg.get("args")
        if op not in ("subscribe", "unsubscribe") or not isinstance(args, list) or not args:
            self._error(conn, "60012", illegal, req_id)
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
            self._error(conn, "60012", "Illegal request: rejected (simulated fault)", req_id)
            return
        for arg in args:
            if not isinstance(arg, dict) or not isinstance(arg.get("channel"), str):
                self._error(conn, "60012", illegal, req_id)
                continue
            channel, inst = arg["channel"], arg.get("instId")
            if channel in LOGIN_CHANNELS and op == "subscribe":
                self._error(conn, "60011", "Please log in", req_id)
                continue
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
                if channel != "trades":
                    self._feeds[inst].subscribed(conn, channel)
        self.notify()

    def _send_snapshot(
        self, conn: SimConnection, inst: str, src: MarketSource, fmt: Callable[[str], str]
    ) -> None:
        """The whole book (see the module doc) with ``prevSeqId = -1`` and the current seqId."""
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
        feed = _Feed(self, symbol, src)
        self._feeds[symbol] = feed
        self._last_book_change[symbol] = self.clock.monotonic()
        src.listeners.append(feed.on_event)

    def _send_trade(
        self, conns: set[SimConnection], inst: str, src: MarketSource, t: Trade, fmt: Callable[[str], str]
    ) -> None:
        item = self._trade_item(inst, t, fmt)
        item.update(count="1", source="0", seqId=src.last_update_id)
        text = _dumps({"arg": {"channel": "trades", "instId": inst}, "data": [item]})
        key = f"trades:{inst}"
        for conn in tuple(conns):
            conn.send_data(text, key, t.trade_id, t.ts_ms)

    @staticmethod
    def _trade_item(inst: str, t: Trade, fmt: Callable[[str], str]) -> dict[str, Any]:
        return {
            "instId": inst, "tradeId": str(t.trade_id), "px": fmt(t.price), "sz": fmt(t.qty),
            "side": "sell" if t.buyer_maker else "buy", "ts": str(t.ts_ms),
        }  # fmt: skip

    def instrument(self, inst: str) -> dict[str, Any] | None:
        """The ``/api/v5/public/instruments`` entry of served ``inst`` (cached), ``None`` if there is none."""
        if inst not in self._meta:
            found = [i for i in self.instruments(inst_type(inst)) if i["instId"] == inst]
            self._meta[inst] = found[0] if found else None
        return self._meta[inst]

    def _ticker(self, inst: str, src: MarketSource, ts_ms: int) -> dict[str, str]:
        """The ticker of ``inst`` now: the last recorded one (replay) or one derived from the book and trades
        (``vol24h`` in contracts for derivatives; ``volCcy24h`` in base currency for derivatives, quote currency
        for spot: "Get ticker" in https://www.okx.com/docs-v5/en/#order-book-trading-market-data-get-ticker)."""
        kind = inst_type(inst)
        if src.ticker is not None:
            return {"instType": kind, "instId": inst, **src.ticker, "ts": str(ts_ms)}
        bids, asks = src.book.top(1)
        bid, bq = bids[0] if bids else ("0", "0")
        ask, aq = asks[0] if asks else ("0", "0")
        last = okx_str(src.last_price)
        last_f = float(last)
        newest = src.trades.select(1, newest=True)
        last_sz = okx_str(newest[0].qty) if newest else "0"
        open_ = okx_str(src.open_price if src.open_price != "0" else src.last_price)
        vol = src.volume
        if kind == "SPOT":
            vol_ccy = vol * last_f
        else:
            meta = self.instrument(inst) or {}
            ct_val = float(meta.get("ctVal") or 1)
            inverse = meta.get("ctType") == "inverse"
            vol_ccy = vol * ct_val / last_f if inverse and last_f else vol * ct_val
        hi, lo = max(last, open_, key=float), min(last, open_, key=float)
        return {
            "instType": kind, "instId": inst, "last": last, "lastSz": last_sz, "askPx": okx_str(ask),
            "askSz": okx_str(aq), "bidPx": okx_str(bid), "bidSz": okx_str(bq), "open24h": open_,
            "high24h": hi, "low24h": lo, "volCcy24h": okx_str(f"{vol_ccy:.8f}"), "vol24h": okx_str(f"{vol:.8f}"),
            "sodUtc0": open_, "sodUtc8": open_, "ts": str(ts_ms),
        }  # fmt: skip

    def _send_book_update(
        self,
        conns: list[SimConnection],
        inst: str,
        src: MarketSource,
        bids: list[Level],
        asks: list[Level],
        prev_id: int,
        last_id: int,
        fmt: Callable[[str], str],
    ) -> None:
        """One ``books`` update carrying ``bids``/``asks`` (every level changed since the previous push) with
        ``prevSeqId = prev_id``, ``seqId = last_id``; the checksum is the book's now (after those changes)."""
        key = f"books:{inst}"
        if self.real_checksum:
            top_b, top_a = src.book.top(25)
            checksum = okx_checksum(
                [(fmt(p), fmt(q)) for p, q in top_b], [(fmt(p), fmt(q)) for p, q in top_a]
            )
        else:
            checksum = 0
        ts = self.clock.time_ns() // 1_000_000
        data = {
            "asks": _levels(asks, fmt), "bids": _levels(bids, fmt), "ts": str(ts),
            "checksum": checksum, "prevSeqId": prev_id, "seqId": last_id,
        }  # fmt: skip
        frame = {"arg": {"channel": "books", "instId": inst}, "action": "update", "data": [data]}
        text = _dumps(frame)
        for conn in conns:
            if conn.take_gap(inst):
                conn.note_skipped(key)
                continue
            out = text
            if conn.badchecksum_symbols and (
                inst in conn.badchecksum_symbols or None in conn.badchecksum_symbols
            ):
                conn.badchecksum_symbols.discard(inst)
                conn.badchecksum_symbols.discard(None)
                bad = dict(data, checksum=(checksum + 1) if checksum != 2**31 - 1 else 0)
                out = _dumps({"arg": frame["arg"], "action": "update", "data": [bad]})
            conn.send_data(out, key, last_id, ts)

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
    def _limited(self, request: web.Request, endpoint: str) -> web.Response | None:
        """Count the request (weight 1) and answer 429 when ``endpoint``'s window is full."""
        self.count_rest(request.path, 1)
        v = self.limiter.hit(endpoint)
        if v.status == 200:
            return None
        self.count_limited(429)
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

    def _bad_inst_type(self, kind: str) -> web.Response | None:
        """OKX's answer to a missing (50014) or unknown (51000) ``instType``, ``None`` when it is valid."""
        if not kind:
            return self._fail("50014", "Parameter instType can not be empty.")
        if kind not in _INST_TYPES:
            return self._fail("51000", "Parameter instType error")
        return None

    async def _rest_time(self, request: web.Request) -> web.Response:
        return self._limited(request, "time") or self._ok([{"ts": str(self.clock.time_ns() // 1_000_000)}])

    def instruments(self, kind: str) -> list[dict[str, Any]]:
        """Served instruments of type ``kind`` as recorded (``state`` set to ``live``, ``instFamily`` = ``uly``);
        a served instId missing from the recording is cloned from the recorded template of its type with its
        ids filled in."""
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
            out.append(dict(entry, state="live", instFamily=entry.get("uly", "")))
        return out

    async def _rest_instruments(self, request: web.Request) -> web.Response:
        limited = self._limited(request, "instruments")
        if limited:
            return limited
        kind = request.query.get("instType", "")
        bad = self._bad_inst_type(kind)
        if bad:
            return bad
        found = self.instruments(kind)
        inst = request.query.get("instId")
        if inst:
            found = [i for i in found if i["instId"] == inst]
        return self._ok(found)

    async def _rest_books(self, request: web.Request) -> web.Response:
        limited = self._limited(request, "books")
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
        limited = self._limited(request, "ticker")
        if limited:
            return limited
        inst = request.query.get("instId", "")
        src = self.source(inst)
        if src is None:
            return self._fail("51001", "Instrument ID does not exist")
        return self._ok([self._ticker(inst, src, self.clock.time_ns() // 1_000_000)])

    async def _rest_tickers(self, request: web.Request) -> web.Response:
        limited = self._limited(request, "tickers")
        if limited:
            return limited
        kind = request.query.get("instType", "")
        bad = self._bad_inst_type(kind)
        if bad:
            return bad
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
        limited = self._limited(request, "trades")
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
        limited = self._limited(request, "history-trades")
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


register(ServerSpec("okx", OkxServer, port_offset=2, rules=OKX_RULES, symbols=DEFAULT_SYMBOLS))
