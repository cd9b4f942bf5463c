"""Simulated Bitget API v2 public market data: WebSocket ``/v2/ws/public`` and the public REST endpoints, for spot
(``instType`` ``SPOT``) and USDT perpetuals (``USDT-FUTURES``). Facts and sources: ``docs/protocols/bitget.md``.

``ws_url`` is ``ws://127.0.0.1:PORT``; clients connect to ``ws_url + "/v2/ws/public"``; REST paths are the real
ones under ``rest_url``. :attr:`BitgetServer.hosts` lists the real base URLs it stands for (ccxt's
``https://api.bitget.com`` and ``wss://ws.bitget.com``, and the demo ``wss://wspap.bitget.com``).

Served symbols (``SimConfig.symbols["bitget"]``, default :data:`DEFAULT_SYMBOLS`) are written ``BTCUSDT`` for spot
and ``USDT-FUTURES:BTCUSDT`` for a perpetual (:func:`split_native`), since Bitget names both ``BTCUSDT`` and tells
them apart by ``instType``.

- Replay (mode ``"replay"``): spot ``AVAXUSDT``, ``EOSUSDT`` and perpetuals ``DASHUSDT``, ``UNIUSDT`` loop the
  shipped real recordings (bmoscon/cryptofeed sample data, Bitget API v1, 2022-04-07, about 30 s each): the
  ``books`` snapshot and updates (the v1 level strings as recorded; v1 had no ``seq``: the simulator assigns
  one) and the trades (v1 had no ``tradeId``: the simulator numbers them). v1 tickers carry no sizes: tickers are
  built from the book and the trades like the synthetic ones. At each loop seam one update turns the book back
  into the recorded snapshot.
- Synthetic: every other symbol (and every symbol in mode ``"synthetic"``): a seeded random walk.

WebSocket: ``{"op":"subscribe"|"unsubscribe","args":[{"instType","channel","instId"}]}`` => one
``{"event":"subscribe","arg":{...}}`` per arg. Errors ``{"event":"error","code":..,"msg":..}`` (no ``arg``; the
message names ``instType``, ``channel`` and ``instId``): unknown channel or instrument ``30001`` "...doesn't
exist"; a frame that is not a request ``30002`` "illegal request"; an op other than subscribe/unsubscribe
``30003``; more than ``max_subs_per_hour`` (240) requests in an hour ``30006`` "request too many" (codes
``30002``/``30003`` are our choice: unconfirmed). Text ``ping`` => text ``pong``. The server closes a connection
(code 4000, our choice) that sent no ``ping`` for ``rules.pong_timeout_s`` (120 s: Bitget reads the client's
pings, it sends none), closes with 1008 a connection that sends more than 10 messages in a second (``ping``
included), and closes every connection after ``lifetime_s`` (24 h). Channels:

- ``books``: a snapshot of the whole book on subscription, then one ``update`` per push period
  (:data:`BOOK_PUSH_S`: 200 ms spot, 150 ms futures) carrying every level changed since the previous push;
  ``seq`` is the source's update id (it increases, by more than 1 when several changes are aggregated);
  ``checksum`` is the signed CRC32 of the top 25 levels interleaved, computed on the book exactly as a client
  rebuilds it from the strings sent.
- ``trade``: on subscription one ``action`` ``snapshot`` push of the last :data:`TRADE_SNAPSHOT` (50) trades,
  newest first (none while the source has no trade yet), then one ``update`` push per trade as it happens;
  ``tradeId`` the source's id, ``side`` the taker side. Stats record each trade of a snapshot as one sent trade
  (ids a connection was already sent are not recorded again).
- ``ticker``: the current ticker on subscription, then at most one push per 200 ms when it changed.

Faults: ``gap`` withholds the next ``books`` update of the symbol that changes its top 25 levels (Bitget's only
guard is the checksum, which cannot see a lost change below the top 25; such a change is withheld nowhere);
``badchecksum`` sends the next update with a wrong checksum; ``noping`` stops answering ``ping``; ``seqreset``
restarts ``seq`` lower (symbol maintenance); ``notice``: Bitget documents no shutdown notice, nothing is sent;
the others come from the base class.

REST (per-endpoint request counts per second per IP, :data:`REST_LIMITS`; over => HTTP 429
``{"code":"429","msg":"Too Many Requests",...}``; ``rest_limit_override`` applies ``(requests, seconds)`` to every
endpoint): ``/api/v2/public/time``, ``/api/v2/spot/public/symbols``, ``/api/v2/spot/public/coins`` (the served
symbols' coins, no chains), ``/api/v2/margin/currencies`` (empty: no margin simulated),
``/api/v2/mix/market/contracts``, ``/api/v2/spot/market/orderbook``,
``/api/v2/spot/market/merge-depth``, ``/api/v2/mix/market/merge-depth``, ``/api/v2/spot/market/tickers``,
``/api/v2/mix/market/ticker``, ``/api/v2/mix/market/tickers``, ``/api/v2/{spot,mix}/market/fills`` (newest
first) and ``.../fills-history`` (``idLessThan`` paging, ``startTime``/``endTime``, newest first). Errors are
``{"code","msg","requestTime","data":null}`` with HTTP 400; an unknown path answers 404 code ``40404``.
"""

from __future__ import annotations

import asyncio
import functools
import zlib
from collections.abc import Awaitable, Callable
from functools import lru_cache
from typing import Any, ClassVar

import msgspec
from aiohttp import web

from cryptolink import recordings
from cryptolink.simulator.config import ExchangeRules
from cryptolink.simulator.market import (
    Depth,
    Event,
    Level,
    MarketSource,
    SyntheticSource,
    Trade,
    _LoopingReplay,
)
from cryptolink.simulator.ratelimit import WindowCounter
from cryptolink.simulator.registry import ServerSpec, register
from cryptolink.simulator.server import ExchangeServer, SimConnection

__all__ = [
    "BITGET_RULES",
    "BOOK_PUSH_S",
    "DEFAULT_SYMBOLS",
    "HOSTS",
    "REPLAY_INSTRUMENTS",
    "REST_LIMITS",
    "TRADE_SNAPSHOT",
    "BitgetReplaySource",
    "BitgetServer",
    "bitget_checksum",
    "split_native",
]

_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder()

#: Client pings: the server closes after 2 min without a text ``ping``; 24 h forced close; 10 messages per
#: second per connection; 240 subscribe requests per hour per connection; 1000 channels per connection
#: (https://www.bitget.com/api-doc/common/websocket-intro). ``pong_timeout_s`` is, for Bitget, the time without a
#: client ``ping`` before the close. REST limits are per endpoint per second (:data:`REST_LIMITS`).
BITGET_RULES = ExchangeRules(
    pong_timeout_s=120.0,
    lifetime_s=24 * 3600.0,
    max_in_msgs_per_s=10,
    max_subs_per_hour=240,
    max_streams=1000,
    rest_weight_limit=0,
    rest_window_s=1.0,
)
#: Requests per second per IP, from each endpoint's "Frequency limit" in https://www.bitget.com/api-doc/
#: ("Get Server Time", "Get Symbol Info", "Get Contract Config", "Get OrderBook Depth", "Get Merge Depth",
#: "Get Ticker Information", "Get Recent Trades", "Get Market Trades", "Get History Transactions").
REST_LIMITS = {
    "time": 20,
    "symbols": 20,
    "currencies": 10,
    "coins": 3,
    "contracts": 20,
    "orderbook": 20,
    "merge-depth": 20,
    "tickers": 20,
    "spot-fills": 10,
    "mix-fills": 20,
    "fills-history": 10,
}
#: Real Bitget base URLs this server stands for (ccxt ``bitget`` ``urls.api`` and ``ccxt.pro.bitget``).
HOSTS = ("https://api.bitget.com", "wss://ws.bitget.com", "wss://wspap.bitget.com")
#: Recorded instrument -> (recording, served native symbol).
REPLAY_INSTRUMENTS: dict[str, tuple[str, str]] = {
    "AVAXUSDT": ("cryptofeed_bitget_BITGET.ws.1.0.gz", "AVAXUSDT"),
    "EOSUSDT": ("cryptofeed_bitget_BITGET.ws.1.0.gz", "EOSUSDT"),
    "USDT-FUTURES:DASHUSDT": ("cryptofeed_bitget_BITGET.ws.2.0.gz", "DASHUSDT"),
    "USDT-FUTURES:UNIUSDT": ("cryptofeed_bitget_BITGET.ws.2.0.gz", "UNIUSDT"),
}
DEFAULT_SYMBOLS = (
    "AVAXUSDT",
    "EOSUSDT",
    "USDT-FUTURES:DASHUSDT",
    "USDT-FUTURES:UNIUSDT",
    "BTCUSDT",
    "ETHUSDT",
    "USDT-FUTURES:BTCUSDT",
    "USDT-FUTURES:ETHUSDT",
)
#: ``books`` push period per ``instType``: 200 ms spot (``spot/websocket/public/Depth-Channel``), 150 ms futures
#: (``contract/websocket/public/Order-Book-Channel``), the "Default data push frequency" of each page.
BOOK_PUSH_S = {"SPOT": 0.2, "USDT-FUTURES": 0.15}
_TICKER_PUSH_S = 0.2  # ticker: at most one push per 200 ms when it changed (our pacing, both markets)
#: Trades in the ``trade`` snapshot pushed on subscription: the page does not say how many; the shipped 2022
#: recordings' subscription snapshots carry 50 (newest first).
TRADE_SNAPSHOT = 50
_QUOTES = ("USDT", "USDC", "USD", "BTC", "ETH", "EUR")
_INST_TYPES = ("SPOT", "USDT-FUTURES")


def _dumps(obj: Any) -> str:
    return _enc.encode(obj).decode()


def split_native(native: str) -> tuple[str, str]:
    """``(instType, instId)`` of a served symbol: ``BTCUSDT`` -> ``("SPOT", "BTCUSDT")``,
    ``USDT-FUTURES:BTCUSDT`` -> ``("USDT-FUTURES", "BTCUSDT")``."""
    kind, sep, inst = native.partition(":")
    return (kind, inst) if sep else ("SPOT", native)


def _native(inst_type: str, inst_id: str) -> str:
    return inst_id if inst_type == "SPOT" else f"{inst_type}:{inst_id}"


def _base_quote(inst_id: str) -> tuple[str, str]:
    for q in _QUOTES:
        if inst_id.endswith(q) and len(inst_id) > len(q):
            return inst_id[: -len(q)], q
    return inst_id, ""


def bitget_checksum(bids: list[Level], asks: list[Level]) -> int:
    """Signed CRC32 of ``bid1px:bid1sz:ask1px:ask1sz:...`` over the top 25 levels, a side continuing alone when
    the other runs out, on the strings as sent ("Checksum" in
    https://www.bitget.com/api-doc/spot/websocket/public/Depth-Channel)."""
    parts: list[str] = []
    for i in range(25):
        if i < len(bids):
            parts.append(f"{bids[i][0]}:{bids[i][1]}")
        if i < len(asks):
            parts.append(f"{asks[i][0]}:{asks[i][1]}")
    crc = zlib.crc32(":".join(parts).encode())
    return crc - (1 << 32) if crc >= 1 << 31 else crc


@lru_cache(maxsize=4)
def _load_tapes(name: str) -> dict[str, tuple[list[Level], list[Level], list[tuple[float, str, Any]]]]:
    """Parse a shipped Bitget v1 recording once: instId -> (snapshot bids, asks, events after it). Events are
    ``(delay_s, "depth", (bids, asks))`` and ``(delay_s, "trade", (px, sz, taker_sold))`` (``trade`` pushes with
    ``action`` ``update`` only: the subscription snapshot repeats older trades)."""
    snaps: dict[str, tuple[list[Level], list[Level]]] = {}
    events: dict[str, list[tuple[float, str, Any]]] = {}
    last_ts: dict[str, float] = {}
    for rec in recordings.iter_cryptofeed_ws(name):
        if rec.kind != "received" or not rec.payload.startswith("{"):
            continue
        msg = _dec.decode(rec.payload)
        arg, data, action = msg.get("arg"), msg.get("data"), msg.get("action")
        if not isinstance(arg, dict) or not isinstance(data, list) or not data:
            continue
        inst, channel = arg["instId"], arg["channel"]
        items: list[tuple[str, Any]] = []
        if channel == "books":
            d = data[0]
            bids: list[Level] = [(lv[0], lv[1]) for lv in d["bids"]]
            asks: list[Level] = [(lv[0], lv[1]) for lv in d["asks"]]
            if action == "snapshot":
                snaps.setdefault(inst, (bids, asks))
            elif inst in snaps:
                items.append(("depth", (bids, asks)))
        elif channel == "trade" and action == "update" and inst in snaps:
            for t in data:  # v1: [ts, price, size, side]
                items.append(("trade", (t[1], t[2], t[3] == "sell")))
        if not items:
            continue
        delay = max(0.0, rec.ts_s - last_ts[inst]) if inst in last_ts else 0.0
        last_ts[inst] = rec.ts_s
        for kind, payload in items:
            events.setdefault(inst, []).append((delay, kind, payload))
            delay = 0.0
    return {inst: (b, a, events.get(inst, [])) for inst, (b, a) in snaps.items()}


class BitgetReplaySource(_LoopingReplay):
    """Loops one instrument of a shipped Bitget recording (see the module doc): recorded level strings, the
    simulator's own update ids and trade ids.

    Raises:
        KeyError: ``native`` is not one of :data:`REPLAY_INSTRUMENTS`.
    """

    recorded_strings = True

    def __init__(self, native: str) -> None:
        name, inst = REPLAY_INSTRUMENTS[native]
        bids, asks, events = _load_tapes(name)[inst]
        super().__init__(native, events)
        self._start_from(bids, asks)
        self.last_update_id = 1_000_000
        self.last_trade_id = 5_000_000
        trade = next((p for _, k, p in events if k == "trade"), None)
        self.last_price = trade[0] if trade else (self.book.top(1)[0] or [("0", "0")])[0][0]

    def _pop(self, ts_ms: int) -> Event:
        event = self._next_event()
        if event is None:
            return self._seam(ts_ms, 1)
        kind, payload = event
        if kind == "depth":
            bids, asks = payload
            self.book.apply(bids, asks)
            first, last, prev = self._next_ids(len(bids) + len(asks))
            return Depth(first, last, prev, bids, asks, ts_ms)
        px, sz, taker_sold = payload
        self.last_trade_id += 1
        return Trade(self.last_trade_id, px, sz, taker_sold, ts_ms)


def _fmt(s: str) -> str:
    """Synthetic strings without trailing zeros (``"0.01000"`` -> ``"0.01"``)."""
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return s


def _same(s: str) -> str:
    return s


def _send_trades(conn: SimConnection, text: str, stream: str, ids: list[int], ts_ms: int) -> None:
    """Queue one frame carrying several trades (``ids`` ascending) and record each trade in ``conn``'s stream
    stats as one sent trade, as if pushed alone (``frames``, ``first_id``/``last_id``), so the stats keep
    "one entry per trade id, ids increasing" per connection. Ids this connection was already sent (a snapshot
    after a re-subscription on the same socket repeats them) are not recorded twice. Faults apply to the frame
    as to any data frame (``stall`` withholds it and records nothing, ``corrupt`` garbles it)."""
    stalled = conn.stalled
    conn.send_data(text, stream, None, ts_ms)
    st = conn.streams.get(stream)
    if st is None or conn.stalled != stalled:
        return
    st.frames -= 1  # the frame recorded without an id above: recorded per trade below instead
    for ident in ids:
        if st.last_id is not None and ident <= st.last_id:
            continue
        if st.first_id is None:
            st.first_id = ident
        st.last_id = ident
        st.frames += 1


class _Feed:
    """Push state of one served symbol: book changes not yet pushed, connections waiting for their first push."""

    def __init__(self, server: BitgetServer, native: str, src: MarketSource) -> None:
        self.server = server
        self.native = native
        self.inst_type, self.inst_id = split_native(native)
        self.src = src
        self.fmt: Callable[[str], str] = _same if getattr(src, "recorded_strings", False) else _fmt
        self.bids: dict[float, Level] = {}
        self.asks: dict[float, Level] = {}
        self.waiting_books: set[SimConnection] = set()
        self.waiting_ticker: set[SimConnection] = set()
        self.last_ticker: tuple[str, ...] | None = None
        self.arg = {"instType": self.inst_type, "channel": "", "instId": self.inst_id}
        self.book_period = BOOK_PUSH_S[self.inst_type]

    def key(self, channel: str) -> str:
        return f"{channel}:{self.inst_type}:{self.inst_id}"

    def conns(self, channel: str) -> set[SimConnection]:
        return self.server.subs.get(self.key(channel), set())

    def on_event(self, ev: Event) -> None:
        if isinstance(ev, Depth):
            if self.conns("books"):
                for p, q in ev.bids:
                    self.bids[float(p)] = (p, q)
                for p, q in ev.asks:
                    self.asks[float(p)] = (p, q)
        elif isinstance(ev, Trade):
            conns = self.conns("trade")
            if conns:
                self._send_trade(conns, ev)

    def subscribed(self, conn: SimConnection, channel: str) -> None:
        if channel == "trade":
            self.send_trade_snapshot(conn)
        elif channel == "books":
            if self.bids or self.asks:
                self.waiting_books.add(conn)  # its snapshot goes with the pending push
            else:
                self.send_snapshot(conn)
        elif channel == "ticker":
            self.waiting_ticker.add(conn)
            self.flush_ticker(self.server.clock.time_ns() // 1_000_000)

    # ---- frames ----
    def _frame(self, channel: str, action: str, data: list[Any], ts: int) -> str:
        arg = dict(self.arg, channel=channel)
        return _dumps({"action": action, "arg": arg, "data": data, "ts": ts})

    def _trade_item(self, t: Trade) -> dict[str, str]:
        return {
            "ts": str(t.ts_ms), "price": self.fmt(t.price), "size": self.fmt(t.qty),
            "side": "sell" if t.buyer_maker else "buy", "tradeId": str(t.trade_id),
        }  # fmt: skip

    def _send_trade(self, conns: set[SimConnection], t: Trade) -> None:
        text = self._frame("trade", "update", [self._trade_item(t)], t.ts_ms)
        key = self.key("trade")
        for conn in tuple(conns):
            conn.send_data(text, key, t.trade_id, t.ts_ms)

    def send_trade_snapshot(self, conn: SimConnection) -> None:
        """The ``trade`` push that follows a subscription: ``action`` ``snapshot`` with the last
        :data:`TRADE_SNAPSHOT` trades, newest first, each exactly as it was pushed live (same id, time, price,
        size, side). Nothing is sent while the source has no trade yet."""
        trades = self.src.trades.select(TRADE_SNAPSHOT, newest=True)  # oldest first
        if not trades:
            return
        ts = self.server.clock.time_ns() // 1_000_000
        text = self._frame("trade", "snapshot", [self._trade_item(t) for t in reversed(trades)], ts)
        _send_trades(conn, text, self.key("trade"), [t.trade_id for t in trades], ts)

    def _levels(self, levels: list[Level]) -> list[list[str]]:
        f = self.fmt
        return [[f(p), f(q)] for p, q in levels]

    def checksum(self) -> int:
        bids, asks = self.src.book.top(25)
        return bitget_checksum(
            [(self.fmt(p), self.fmt(q)) for p, q in bids], [(self.fmt(p), self.fmt(q)) for p, q in asks]
        )

    def send_snapshot(self, conn: SimConnection) -> None:
        bids, asks = self.src.book.top(self.src.book.depth())
        ob, oa = self._levels(bids), self._levels(asks)
        ts = self.server.clock.time_ns() // 1_000_000
        seq = self.src.last_update_id
        data = {"asks": oa, "bids": ob, "checksum": self.checksum(), "seq": seq, "ts": str(ts)}
        conn.send_data(self._frame("books", "snapshot", [data], ts), self.key("books"), seq, ts)

    def flush_books(self, ts: int) -> None:
        conns = self.conns("books")
        waiting = self.waiting_books
        if not conns:
            self.bids.clear()
            self.asks.clear()
            waiting.clear()
            return
        if not self.bids and not self.asks:
            for conn in waiting & conns:
                self.send_snapshot(conn)
            waiting.clear()
            return
        bids = [self.bids[k] for k in sorted(self.bids, reverse=True)]
        asks = [self.asks[k] for k in sorted(self.asks)]
        self.bids.clear()
        self.asks.clear()
        targets = [c for c in conns if c not in waiting]
        if targets:
            self._send_update(targets, bids, asks, ts)
        for conn in waiting & conns:
            self.send_snapshot(conn)
        waiting.clear()

    def _send_update(self, conns: list[SimConnection], bids: list[Level], asks: list[Level], ts: int) -> None:
        seq = self.src.last_update_id
        checksum = self.checksum()
        data = {
            "asks": self._levels(asks),
            "bids": self._levels(bids),
            "checksum": checksum,
            "seq": seq,
            "ts": str(ts),
        }
        text = self._frame("books", "update", [data], ts)
        key = self.key("books")
        inst = self.native
        top_b, top_a = self.src.book.top(25)
        visible = {p for p, _ in top_b} | {p for p, _ in top_a}
        touches_top = any(p in visible for p, _ in bids) or any(p in visible for p, _ in asks)
        for conn in conns:
            if touches_top and conn.take_gap(inst):
                conn.note_skipped(key)
                continue
            out = text
            if conn.badchecksum_symbols and (
                inst in conn.badchecksum_symbols or None in conn.badchecksum_symbols
            ):
                conn.badchecksum_symbols.discard(inst)
                conn.badchecksum_symbols.discard(None)
                bad = dict(data, checksum=checksum + 1 if checksum != 2**31 - 1 else 0)
                out = self._frame("books", "update", [bad], ts)
            conn.send_data(out, key, seq, ts)

    def ticker(self, ts: int) -> dict[str, str]:
        src, f = self.src, self.fmt
        bids, asks = src.book.top(1)
        bid, bq = bids[0] if bids else ("0", "0")
        ask, aq = asks[0] if asks else ("0", "0")
        last = f(src.last_price)
        open_ = f(src.open_price if src.open_price != "0" else src.last_price)
        hi, lo = max(last, open_, key=float), min(last, open_, key=float)
        change = (float(last) - float(open_)) / float(open_) if float(open_) else 0.0
        vol = src.volume
        out = {
            "instId": self.inst_id, "lastPr": last, "open24h": open_, "high24h": hi, "low24h": lo,
            "change24h": f"{change:.4f}", "bidPr": f(bid), "askPr": f(ask), "bidSz": f(bq), "askSz": f(aq),
            "baseVolume": _fmt(f"{vol:.8f}"), "quoteVolume": _fmt(f"{vol * float(last):.8f}"), "openUtc": open_,
            "changeUtc24h": f"{change:.4f}", "ts": str(ts),
        }  # fmt: skip
        if self.inst_type != "SPOT":
            out.update(fundingRate="0.0001", markPrice=last, indexPrice=last, holdingAmount="0")
        return out

    def flush_ticker(self, ts: int) -> None:
        conns = self.conns("ticker")
        waiting = self.waiting_ticker
        if not conns:
            waiting.clear()
            return
        data = self.ticker(ts)
        state = tuple(data[k] for k in ("lastPr", "bidPr", "bidSz", "askPr", "askSz", "baseVolume"))
        targets = list(conns) if state != self.last_ticker else [c for c in conns if c in waiting]
        waiting.clear()
        if not targets:
            return
        self.last_ticker = state
        text = self._frame("ticker", "snapshot", [data], ts)
        key = self.key("ticker")
        for conn in targets:
            conn.send_data(text, key, None, ts)


class BitgetServer(ExchangeServer):
    """Bitget v2 public market data; see the module doc for what is served and the sources."""

    inert_faults: ClassVar[frozenset[str]] = frozenset({"notice"})

    name = "bitget"
    uses_replay_files = False
    hosts: ClassVar[tuple[str, ...]] = HOSTS
    book_checksums: ClassVar[bool] = True

    @classmethod
    def trade_stream_key(cls, native: str) -> str:
        kind, inst = split_native(native)
        return f"trade:{kind}:{inst}"

    @classmethod
    def book_stream_prefix(cls, native: str) -> str:
        kind, inst = split_native(native)
        return f"books:{kind}:{inst}"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.subs: dict[str, set[SimConnection]] = {}
        self._feeds: dict[str, _Feed] = {}
        self._last_ping: dict[int, float] = {}
        override = self.rest_limit_override
        if override is None:
            self.limiter = WindowCounter(REST_LIMITS, self.rules.rest_window_s, self.clock)
        else:
            count, seconds = override
            self.limiter = WindowCounter({k: count for k in REST_LIMITS}, seconds, self.clock)
        for period in sorted(set(BOOK_PUSH_S.values())):
            self.on_tick(period, functools.partial(self._tick_books, period))
        self.on_tick(_TICKER_PUSH_S, self._tick_tickers)

    async def start(self, host: str, port: int) -> None:
        """Parse the replayed recordings in a worker thread (replay mode), then bind and serve."""
        if self.mode == "replay":
            names = {REPLAY_INSTRUMENTS[s][0] for s in self.symbols if s in REPLAY_INSTRUMENTS}
            for name in sorted(names):
                await asyncio.to_thread(_load_tapes, name)
        await super().start(host, port)

    def make_market_source(self, symbol: str) -> MarketSource:
        if self.mode == "replay" and symbol in REPLAY_INSTRUMENTS:
            return BitgetReplaySource(symbol)
        return SyntheticSource(symbol, seed=self.seed, rate_hz=self.config.synthetic_rate_hz)

    def attach_source(self, symbol: str, src: MarketSource) -> None:
        feed = _Feed(self, symbol, src)
        self._feeds[symbol] = feed
        src.listeners.append(feed.on_event)

    def _tick_books(self, period: float, ts: int) -> None:
        for feed in list(self._feeds.values()):
            if feed.book_period == period:
                feed.flush_books(ts)

    def _tick_tickers(self, ts: int) -> None:
        for feed in list(self._feeds.values()):
            feed.flush_ticker(ts)

    def setup_routes(self, app: web.Application) -> None:
        app.router.add_get("/v2/ws/public", self._ws_handler)
        r = app.router.add_get
        r("/api/v2/public/time", self._rest_time)
        r("/api/v2/spot/public/symbols", self._rest_spot_symbols)
        r("/api/v2/margin/currencies", self._rest_margin_currencies)
        r("/api/v2/spot/public/coins", self._rest_coins)
        r("/api/v2/mix/market/contracts", self._rest_contracts)
        r("/api/v2/spot/market/orderbook", self._rest_spot_orderbook)
        r("/api/v2/spot/market/merge-depth", self._rest_spot_merge_depth)
        r("/api/v2/mix/market/merge-depth", self._rest_mix_merge_depth)
        r("/api/v2/spot/market/tickers", self._rest_spot_tickers)
        r("/api/v2/mix/market/ticker", self._rest_mix_ticker)
        r("/api/v2/mix/market/tickers", self._rest_mix_tickers)
        r("/api/v2/spot/market/fills", self._fills("spot-fills", False, 100, 500, history=False, title=False))
        r("/api/v2/mix/market/fills", self._fills("mix-fills", True, 100, 100, history=False, title=False))
        r(
            "/api/v2/spot/market/fills-history",
            self._fills("fills-history", False, 500, 1000, history=True, title=False),
        )
        r(
            "/api/v2/mix/market/fills-history",
            self._fills("fills-history", True, 500, 1000, history=True, title=True),
        )

    def unknown_path(self, request: web.Request, status: int) -> web.Response:
        """``{"code":"40404","msg":"Request URL NOT FOUND",...}`` (our choice for 405 too: code ``40405``)."""
        msg = "Request URL NOT FOUND" if status == 404 else "Method Not Allowed"
        return self._fail(f"40{status}", msg, status)

    def send_notice(self, conn: SimConnection) -> None:
        """Bitget documents no shutdown notice: nothing is sent (the fault is only counted)."""

    async def lifetime_close(self, conn: SimConnection) -> None:
        await conn.close(1001, "connection lifetime reached")

    # ---- WebSocket ----
    async def _ws_handler(self, request: web.Request) -> web.StreamResponse:
        ws, conn = await self.accept(request)
        self._last_ping[conn.conn_id] = self.clock.monotonic()
        watch = self._spawn(self._ping_watch(conn))
        try:
            await conn.serve()
        finally:
            watch.cancel()
            self._last_ping.pop(conn.conn_id, None)
            for key in list(conn.subscriptions):
                self._drop(conn, key)
        return ws

    async def _ping_watch(self, conn: SimConnection) -> None:
        """Close ``conn`` (4000, our choice) once it sent no ``ping`` for ``rules.pong_timeout_s``."""
        limit = self.rules.pong_timeout_s
        if limit is None:
            return
        while conn.is_open:
            wait = self._last_ping.get(conn.conn_id, 0.0) + limit - self.clock.monotonic()
            if wait <= 0:
                await conn.close(4000, "no ping received")
                return
            sleeper = asyncio.ensure_future(self.clock.sleep(wait))
            try:
                await asyncio.wait({sleeper, conn.closed}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleeper.cancel()

    def _drop(self, conn: SimConnection, key: str) -> None:
        conn.subscriptions.pop(key, None)
        subs = self.subs.get(key)
        if subs is not None:
            subs.discard(conn)
            if not subs:
                del self.subs[key]

    @staticmethod
    def _error(conn: SimConnection, code: int, msg: str) -> None:
        conn.send_ctrl(_dumps({"event": "error", "code": code, "msg": msg}))

    async def on_text(self, conn: SimConnection, text: str) -> None:
        if text == "ping":
            self._last_ping[conn.conn_id] = self.clock.monotonic()
            if self.clock.monotonic() >= conn.noping_until:
                conn.send_ctrl("pong")
            return
        try:
            msg = _dec.decode(text)
        except msgspec.DecodeError:
            self._error(conn, 30002, "illegal request")
            return
        if not isinstance(msg, dict) or not isinstance(msg.get("args"), list) or not msg["args"]:
            self._error(conn, 30002, "illegal request")
            return
        op, args = msg.get("op"), msg["args"]
        if op not in ("subscribe", "unsubscribe"):
            self._error(conn, 30003, f"invalid op: {op}")
            return
        limit = self.rules.max_subs_per_hour
        if limit is not None:
            now = self.clock.monotonic()
            while conn.sub_times and now - conn.sub_times[0] >= 3600.0:
                conn.sub_times.popleft()
            if len(conn.sub_times) >= limit:
                self._error(conn, 30006, "request too many")
                return
            conn.sub_times.append(now)
        reject = conn.reject_next
        conn.reject_next = False
        for arg in args:
            if not isinstance(arg, dict):
                self._error(conn, 30002, "illegal request")
                continue
            kind, channel, inst = arg.get("instType"), arg.get("channel"), arg.get("instId")
            subject = f"instType:{kind},channel:{channel},instId:{inst}"
            if reject:
                self._error(conn, 30002, f"{subject} rejected (simulated fault)")
                continue
            native = _native(str(kind), str(inst))
            if (
                channel not in ("books", "trade", "ticker")
                or kind not in _INST_TYPES
                or native not in self.symbols
            ):
                self._error(conn, 30001, f"{subject} doesn't exist")
                continue
            if op == "subscribe" and len(conn.subscriptions) >= self.rules.max_streams:
                self._error(conn, 30006, f"{subject} exceeds the channel limit of the connection")
                continue
            conn.send_ctrl(
                _dumps({"event": op, "arg": {"instType": kind, "channel": channel, "instId": inst}})
            )
            key = f"{channel}:{kind}:{inst}"
            if op == "unsubscribe":
                self._drop(conn, key)
                continue
            if key in conn.subscriptions:
                continue
            src = self.source(native)
            assert src is not None
            conn.subscriptions[key] = True
            self.subs.setdefault(key, set()).add(conn)
            self._feeds[native].subscribed(conn, channel)
        self.notify()

    # ---- REST ----
    def _now_ms(self) -> int:
        return self.clock.time_ns() // 1_000_000

    def _limited(self, request: web.Request, endpoint: str) -> web.Response | None:
        self.count_rest(request.path, 1)
        if self.limiter.hit(endpoint).status == 200:
            return None
        self.count_limited(429)
        return self._fail("429", "Too Many Requests", 429)

    def _ok(self, data: Any) -> web.Response:
        body = {"code": "00000", "msg": "success", "requestTime": self._now_ms(), "data": data}
        return web.Response(text=_dumps(body), content_type="application/json")

    def _fail(self, code: str, msg: str, status: int = 400) -> web.Response:
        body = {"code": code, "msg": msg, "requestTime": self._now_ms(), "data": None}
        return web.Response(text=_dumps(body), status=status, content_type="application/json")

    def _feed(self, request: web.Request, inst_type: str) -> _Feed | web.Response:
        """The feed of ``symbol`` (query) of ``inst_type``, or the error answer."""
        inst = request.query.get("symbol", "")
        if not inst:
            return self._fail("40019", "Parameter symbol cannot be empty")
        native = _native(inst_type, inst.upper())
        if self.source(native) is None:
            return self._fail("40034", f"Parameter {inst} does not exist")
        return self._feeds[native]

    def _product(self, request: web.Request) -> str | web.Response:
        kind = request.query.get("productType", "").upper()
        if not kind:
            return self._fail("40019", "Parameter productType cannot be empty")
        if not kind.endswith("-FUTURES"):
            return self._fail("40034", f"Parameter {kind} does not exist")
        return kind

    async def _rest_time(self, request: web.Request) -> web.Response:
        return self._limited(request, "time") or self._ok({"serverTime": str(self._now_ms())})

    def _precision(self, native: str) -> tuple[int, int]:
        src = self.source(native)
        assert src is not None
        bids, _ = src.book.top(1)
        px, sz = bids[0] if bids else ("0", "0")
        fmt = self._feeds[native].fmt

        def places(s: str) -> int:
            s = fmt(s)
            return len(s.split(".", 1)[1]) if "." in s else 0

        return max(2, places(px)), max(4, places(sz))

    def spot_symbols(self) -> list[dict[str, Any]]:
        out = []
        for native in self.symbols:
            kind, inst = split_native(native)
            if kind != "SPOT":
                continue
            base, quote = _base_quote(inst)
            pp, qp = self._precision(native)
            out.append(
                {
                    "symbol": inst, "baseCoin": base, "quoteCoin": quote, "minTradeAmount": "0",
                    "maxTradeAmount": "900000000000000000000", "takerFeeRate": "0.001", "makerFeeRate": "0.001",
                    "pricePrecision": str(pp), "quantityPrecision": str(qp), "quotePrecision": str(pp + qp),
                    "status": "online", "minTradeUSDT": "1", "buyLimitPriceRatio": "0.05",
                    "sellLimitPriceRatio": "0.05", "areaSymbol": "no", "orderQuantity": "200",
                    "openTime": "1532454360000", "offTime": "",
                }
            )  # fmt: skip
        return out

    def contracts(self, product: str) -> list[dict[str, Any]]:
        out = []
        for native in self.symbols:
            kind, inst = split_native(native)
            if kind != product:
                continue
            base, quote = _base_quote(inst)
            pp, qp = self._precision(native)
            out.append(
                {
                    "symbol": inst, "baseCoin": base, "quoteCoin": quote, "buyLimitPriceRatio": "0.05",
                    "sellLimitPriceRatio": "0.05", "feeRateUpRatio": "0.005", "makerFeeRate": "0.0002",
                    "takerFeeRate": "0.0006", "openCostUpRatio": "0.01", "supportMarginCoins": [quote],
                    "minTradeNum": "0.001", "priceEndStep": "1", "volumePlace": str(qp), "pricePlace": str(pp),
                    "sizeMultiplier": "0." + "0" * (qp - 1) + "1", "symbolType": "perpetual",
                    "minTradeUSDT": "5", "maxSymbolOrderNum": "200", "maxProductOrderNum": "400",
                    "maxPositionNum": "150", "symbolStatus": "normal", "offTime": "-1", "limitOpenTime": "-1",
                    "deliveryTime": "", "deliveryStartTime": "", "launchTime": "", "fundInterval": "8",
                    "minLever": "1", "maxLever": "125", "posLimit": "0.05", "maintainTime": "",
                }
            )  # fmt: skip
        return out

    async def _rest_spot_symbols(self, request: web.Request) -> web.Response:
        limited = self._limited(request, "symbols")
        if limited:
            return limited
        found = self.spot_symbols()
        inst = request.query.get("symbol")
        if inst:
            found = [s for s in found if s["symbol"] == inst]
        return self._ok(found)

    async def _rest_margin_currencies(self, request: web.Request) -> web.Response:
        return self._limited(request, "currencies") or self._ok([])

    async def _rest_coins(self, request: web.Request) -> web.Response:
        """The coins of the served symbols (no deposit/withdrawal chains are simulated: ``chains`` is empty)."""
        limited = self._limited(request, "coins")
        if limited:
            return limited
        coins: dict[str, None] = {}
        for native in self.symbols:
            base, quote = _base_quote(split_native(native)[1])
            coins.update({base: None, quote: None})
        data = [
            {"coinId": str(i + 1), "coin": c, "transfer": "true", "chains": [], "areaCoin": "no"}
            for i, c in enumerate(coins)
        ]
        return self._ok(data)

    async def _rest_contracts(self, request: web.Request) -> web.Response:
        limited = self._limited(request, "contracts")
        if limited:
            return limited
        product = self._product(request)
        if isinstance(product, web.Response):
            return product
        found = self.contracts(product)
        inst = request.query.get("symbol")
        if inst:
            found = [s for s in found if s["symbol"] == inst]
        return self._ok(found)

    def _depth(self, request: web.Request, feed: _Feed, default: int, most: int) -> web.Response:
        raw = request.query.get("limit", "")
        if raw and not raw.isdigit():
            return self._fail("40020", "Parameter limit error")
        limit = min(most, max(1, int(raw))) if raw else default
        bids, asks = feed.src.book.top(limit)
        return self._ok({"asks": feed._levels(asks), "bids": feed._levels(bids), "ts": str(self._now_ms())})

    async def _rest_spot_orderbook(self, request: web.Request) -> web.Response:
        limited = self._limited(request, "orderbook")
        if limited:
            return limited
        feed = self._feed(request, "SPOT")
        return feed if isinstance(feed, web.Response) else self._depth(request, feed, 150, 150)

    async def _rest_spot_merge_depth(self, request: web.Request) -> web.Response:
        limited = self._limited(request, "merge-depth")
        if limited:
            return limited
        feed = self._feed(request, "SPOT")
        return feed if isinstance(feed, web.Response) else self._depth(request, feed, 100, 200)

    async def _rest_mix_merge_depth(self, request: web.Request) -> web.Response:
        limited = self._limited(request, "merge-depth")
        if limited:
            return limited
        product = self._product(request)
        if isinstance(product, web.Response):
            return product
        feed = self._feed(request, product)
        return feed if isinstance(feed, web.Response) else self._depth(request, feed, 100, 1000)

    def _rest_ticker(self, feed: _Feed) -> dict[str, str]:
        t = feed.ticker(self._now_ms())
        t["symbol"] = t.pop("instId")
        t.update(open=t["open24h"], usdtVolume=t["quoteVolume"])
        return t

    async def _rest_spot_tickers(self, request: web.Request) -> web.Response:
        limited = self._limited(request, "tickers")
        if limited:
            return limited
        if request.query.get("symbol"):
            feed = self._feed(request, "SPOT")
            return feed if isinstance(feed, web.Response) else self._ok([self._rest_ticker(feed)])
        out = []
        for native in self.symbols:
            if split_native(native)[0] == "SPOT":
                self.source(native)
                out.append(self._rest_ticker(self._feeds[native]))
        return self._ok(out)

    async def _rest_mix_ticker(self, request: web.Request) -> web.Response:
        limited = self._limited(request, "tickers")
        if limited:
            return limited
        product = self._product(request)
        if isinstance(product, web.Response):
            return product
        feed = self._feed(request, product)
        return feed if isinstance(feed, web.Response) else self._ok([self._rest_ticker(feed)])

    async def _rest_mix_tickers(self, request: web.Request) -> web.Response:
        limited = self._limited(request, "tickers")
        if limited:
            return limited
        product = self._product(request)
        if isinstance(product, web.Response):
            return product
        out = []
        for native in self.symbols:
            if split_native(native)[0] == product:
                self.source(native)
                out.append(self._rest_ticker(self._feeds[native]))
        return self._ok(out)

    @staticmethod
    def _int_param(request: web.Request, name: str) -> int | None:
        raw = request.query.get(name, "")
        if not raw:
            return None
        if not raw.isdigit():
            raise ValueError(name)
        return int(raw)

    def _trades(
        self, request: web.Request, feed: _Feed, default: int, most: int, *, history: bool, title: bool
    ) -> web.Response:
        try:
            limit = self._int_param(request, "limit")
            before = self._int_param(request, "idLessThan") if history else None
            start = self._int_param(request, "startTime") if history else None
            end = self._int_param(request, "endTime") if history else None
        except ValueError as exc:
            return self._fail("40020", f"Parameter {exc} error")
        n = default if limit is None else min(max(limit, 1), most)
        trades = feed.src.trades.select(
            n, max_id=None if before is None else before - 1, start_ms=start, end_ms=end, newest=True
        )
        f = feed.fmt
        data = []
        for t in reversed(trades):  # newest first
            side = "sell" if t.buyer_maker else "buy"
            data.append(
                {
                    "symbol": feed.inst_id, "tradeId": str(t.trade_id), "side": side.title() if title else side,
                    "price": f(t.price), "size": f(t.qty), "ts": str(t.ts_ms),
                }
            )  # fmt: skip
        return self._ok(data)

    def _fills(
        self, endpoint: str, mix: bool, default: int, most: int, *, history: bool, title: bool
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        """The handler of one recent-trades endpoint: its rate-limit key, spot (``SPOT``) or mix (``productType``),
        default and largest ``limit``, ``idLessThan`` paging (history) and capitalised sides (mix history)."""

        async def handle(request: web.Request) -> web.Response:
            limited = self._limited(request, endpoint)
            if limited:
                return limited
            product = self._product(request) if mix else "SPOT"
            if isinstance(product, web.Response):
                return product
            feed = self._feed(request, product)
            if isinstance(feed, web.Response):
                return feed
            return self._trades(request, feed, default, most, history=history, title=title)

        return handle


register(ServerSpec("bitget", BitgetServer, port_offset=5, rules=BITGET_RULES, symbols=DEFAULT_SYMBOLS))
