"""Market sources: one ordered stream of L2 book deltas, trades and tickers per symbol, with the simulator's own
ids.

A :class:`MarketSource` owns the authoritative :class:`SimBook` of its symbol. :meth:`MarketSource.run` paces
events on an injected clock and applies each delta to the book *before* handing the event to listeners, so a REST
snapshot taken at any moment (``book`` + ``last_update_id``) bridges exactly the deltas that follow it (the Binance
sync rule: https://developers.binance.com/docs/binance-spot-api-docs/web-socket-streams, "How to manage a local
order book correctly"). Update ids (Binance ``U``/``u``/``pu``, OKX ``seqId``/``prevSeqId``) come from one
strictly increasing counter per source; trade ids from another (consecutive integers, continuing across loops).
Every source keeps its last :data:`TRADE_HISTORY` trades in :attr:`MarketSource.trades` for the REST trade
endpoints (backfill after an outage).

- :class:`ReplaySource`: an hftbacktest-format Binance recording (REST depth snapshot + ``@depth`` diffs + trades +
  ``@bookTicker``), by default the shipped 2024-08-08 files of :data:`REPLAY_FILES` (about 6 min each), looped
  forever. At the loop seam one synthetic delta turns the end book back into the recorded snapshot book, then the
  recorded diffs play again with fresh, still increasing ids. A recording without a snapshot line starts from an
  empty book whose id is the first diff's ``U - 1``.
- :class:`OkxReplaySource`: the shipped real OKX v5 recording :data:`OKX_RECORDING` (``books`` snapshot + updates,
  ``trades``, ``tickers`` of :data:`OKX_REPLAY_INSTRUMENTS`, 2022-05-13, about 10.8 s), looped the same way.
- :class:`SyntheticSource`: seeded random walk for any symbol: integer-tick prices, bids strictly below and asks
  strictly above a moving mid, so the book never crosses.
"""

from __future__ import annotations

import asyncio
import bisect
import gzip
import random
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import msgspec
from sortedcontainers import SortedDict

from cryptolink import recordings
from cryptolink.clock import Clock

__all__ = [
    "OKX_RECORDING",
    "OKX_REPLAY_INSTRUMENTS",
    "REPLAY_FILES",
    "TRADE_HISTORY",
    "Bbo",
    "Depth",
    "Event",
    "MarketSource",
    "OkxReplaySource",
    "ReplaySource",
    "SimBook",
    "SyntheticSource",
    "Ticker",
    "Trade",
    "TradeHistory",
    "make_source",
    "preload_okx_replay",
    "preload_replay",
]

Level = tuple[str, str]

#: (market kind, exchange-neutral symbol) -> shipped hftbacktest recording. "spot" feeds Binance spot, "usdm"
#: feeds Binance USDⓈ-M, "coinm" Binance COIN-M (quantities in contracts). ``SimConfig.replay_files`` overrides
#: or extends this with the user's own captures.
REPLAY_FILES: dict[tuple[str, str], str] = {
    ("spot", "BTCUSDT"): "hftbacktest_binance_spot_btcusdt_20240808.gz",
    ("spot", "ETHUSDT"): "hftbacktest_binance_spot_ethusdt_20240808.gz",
    ("usdm", "BTCUSDT"): "hftbacktest_binance_usdm_btcusdt_20240808.gz",
    ("usdm", "ETHUSDT"): "hftbacktest_binance_usdm_ethusdt_20240808.gz",
    ("coinm", "BTCUSD_PERP"): "hftbacktest_binance_coinm_btcusd_perp_20240808.gz",
}

#: The shipped OKX v5 public recording (bmoscon/cryptofeed sample data, 2022-05-13, ~10.8 s, one connection).
OKX_RECORDING = "cryptofeed_okx_OKX.ws.1.0.gz"
#: The instruments :data:`OKX_RECORDING` holds a ``books`` snapshot, updates, trades and tickers of.
OKX_REPLAY_INSTRUMENTS = ("BTC-USDT", "UNI-USD-SWAP", "BTC-USD-220527")

#: Trades kept per source for the REST trade-history endpoints.
TRADE_HISTORY = 50_000


class SimBook:
    """An L2 book of exact price/size strings. Bids and asks map ``float(price)`` -> ``(price, size)``."""

    __slots__ = ("asks", "bids")

    def __init__(self) -> None:
        self.bids: SortedDict = SortedDict()  # key -price so index 0 is the best bid
        self.asks: SortedDict = SortedDict()

    def apply(self, bids: list[Level], asks: list[Level]) -> None:
        """Set absolute sizes; a size that parses to zero deletes the level."""
        for p, q in bids:
            k = -float(p)
            if float(q) == 0.0:
                self.bids.pop(k, None)
            else:
                self.bids[k] = (p, q)
        for p, q in asks:
            k = float(p)
            if float(q) == 0.0:
                self.asks.pop(k, None)
            else:
                self.asks[k] = (p, q)

    def top(self, depth: int) -> tuple[list[Level], list[Level]]:
        """Best ``depth`` levels per side, best first: ``(bids, asks)``."""
        return list(self.bids.values()[:depth]), list(self.asks.values()[:depth])

    def depth(self) -> int:
        """Levels on the deeper side."""
        return max(len(self.bids), len(self.asks))

    def copy(self) -> SimBook:
        b = SimBook()
        b.bids = SortedDict(self.bids)
        b.asks = SortedDict(self.asks)
        return b

    def diff_to(self, target: SimBook) -> tuple[list[Level], list[Level]]:
        """Levels that turn this book into ``target`` (``"0"`` deletes), as ``(bids, asks)``."""
        out: list[list[Level]] = []
        for mine, theirs in ((self.bids, target.bids), (self.asks, target.asks)):
            side: list[Level] = [(pq[0], "0") for k, pq in mine.items() if k not in theirs]
            side += [pq for k, pq in theirs.items() if mine.get(k) != pq]
            out.append(side)
        return out[0], out[1]


@dataclass(slots=True)
class Depth:
    """A book delta: ids ``first_id..last_id`` (Binance ``U``/``u``), ``prev_id`` (``pu``), event time ms."""

    first_id: int
    last_id: int
    prev_id: int
    bids: list[Level]
    asks: list[Level]
    ts_ms: int
    checksum: int | None = None  # OKX CRC32, filled lazily by the OKX encoder and shared by all connections


@dataclass(slots=True)
class Trade:
    """One trade; ``buyer_maker`` True means the taker sold (Binance ``m``, OKX ``side == "sell"``)."""

    trade_id: int
    price: str
    qty: str
    buyer_maker: bool
    ts_ms: int


@dataclass(slots=True)
class Bbo:
    """Best bid/offer after update id ``update_id``."""

    update_id: int
    bid: str
    bid_qty: str
    ask: str
    ask_qty: str
    ts_ms: int


@dataclass(slots=True)
class Ticker:
    """A recorded exchange ticker push, re-stamped: ``fields`` are the recorded OKX ``tickers`` data fields
    (``last``, ``lastSz``, ``askPx``, ``askSz``, ``bidPx``, ``bidSz``, ``open24h``... as strings) without ``ts``,
    ``instType`` and ``instId``; ``ts_ms`` is the simulator clock's wall time of the push."""

    fields: dict[str, str]
    ts_ms: int


Event = Depth | Trade | Bbo | Ticker
Listener = Callable[[Event], None]


class TradeHistory:
    """The last ``maxlen`` trades of one source in id order (ids strictly increase, times never decrease).

    Queries answer what is kept: asking for ids or times older than the oldest kept trade starts at the oldest
    kept one. Appending is amortised O(1); lookups are binary searches.
    """

    __slots__ = ("_items", "_start", "maxlen")

    def __init__(self, maxlen: int = TRADE_HISTORY) -> None:
        if maxlen < 1:
            raise ValueError("maxlen must be >= 1")
        self.maxlen = maxlen
        self._items: list[Trade] = []
        self._start = 0  # items before this index have been dropped (compacted in batches)

    def __len__(self) -> int:
        return len(self._items) - self._start

    def append(self, trade: Trade) -> None:
        self._items.append(trade)
        if len(self._items) - self._start > self.maxlen:
            self._start += 1
            if self._start >= self.maxlen:
                del self._items[: self._start]
                self._start = 0

    @property
    def oldest_id(self) -> int | None:
        return self._items[self._start].trade_id if len(self) else None

    @property
    def newest_id(self) -> int | None:
        return self._items[-1].trade_id if len(self) else None

    def select(
        self,
        limit: int,
        *,
        min_id: int | None = None,
        max_id: int | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
        newest: bool = False,
    ) -> list[Trade]:
        """Kept trades with ``min_id <= id <= max_id`` and ``start_ms <= ts <= end_ms`` (``None``: unbounded),
        oldest first; at most ``limit`` of them: the oldest matching ones, or the newest when ``newest``."""
        items, lo, hi = self._items, self._start, len(self._items)
        if min_id is not None:
            lo = max(lo, bisect.bisect_left(items, min_id, lo, hi, key=_trade_id))
        if max_id is not None and lo < hi:
            hi = min(hi, bisect.bisect_right(items, max_id, lo, hi, key=_trade_id))
        if start_ms is not None and lo < hi:
            lo = max(lo, bisect.bisect_left(items, start_ms, lo, hi, key=_trade_ts))
        if end_ms is not None and lo < hi:
            hi = min(hi, bisect.bisect_right(items, end_ms, lo, hi, key=_trade_ts))
        if limit <= 0 or lo >= hi:
            return []
        return items[max(lo, hi - limit) : hi] if newest else items[lo : min(hi, lo + limit)]


def _trade_id(t: Trade) -> int:
    return t.trade_id


def _trade_ts(t: Trade) -> int:
    return t.ts_ms


class MarketSource:
    """Base class: the book, the id counters, the trade history, listeners and the pacing loop.

    Attributes:
        symbol: exchange-neutral id, e.g. ``BTCUSDT`` (OKX sources: the instId, e.g. ``BTC-USDT``).
        book: the authoritative book; read it only between events (single event loop, no await inside apply).
        last_update_id: id of the last applied delta (Binance ``lastUpdateId`` of a REST snapshot now).
        last_trade_id: id of the last emitted trade.
        last_price: price string of the last trade (or mid-ish seed before any trade).
        ticker: the last recorded exchange ticker fields (replayed OKX tickers), else ``None``.
        trades: the last :data:`TRADE_HISTORY` trades.
        events_emitted: count of events handed to listeners.
    """

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.book = SimBook()
        self.last_update_id = 0
        self.last_trade_id = 0
        self.last_price = "0"
        self.open_price = "0"
        self.volume = 0.0
        self.ticker: dict[str, str] | None = None
        self.trades = TradeHistory(TRADE_HISTORY)
        self.events_emitted = 0
        self.listeners: list[Listener] = []
        self._reset_prev: int | None = None

    # subclasses implement these two
    def _peek_delay(self) -> float:
        """Seconds (at speed 1) until the next event."""
        raise NotImplementedError

    def _pop(self, ts_ms: int) -> Event:
        """Produce the next event, applied to the book and with ids assigned."""
        raise NotImplementedError

    def reset_sequence(self, new_last_id: int = 1000) -> None:
        """Restart update ids at ``new_last_id`` (an OKX maintenance seq reset: "Sequence ID" in
        https://www.okx.com/docs-v5/en/#order-book-trading-market-data-ws-order-book-channel)."""
        self._reset_prev = self.last_update_id
        self.last_update_id = new_last_id

    def _next_ids(self, span: int) -> tuple[int, int, int]:
        prev = self.last_update_id
        first = prev + 1
        last = prev + max(1, span)
        self.last_update_id = last
        if self._reset_prev is not None:
            prev, self._reset_prev = self._reset_prev, None
        return first, last, prev

    def emit_next(self, ts_ms: int) -> Event:
        """Pop the next event, apply it and notify listeners; returns it."""
        ev = self._pop(ts_ms)
        if isinstance(ev, Trade):
            self.last_price = ev.price
            if self.open_price == "0":
                self.open_price = ev.price
            self.volume += float(ev.qty)
            self.trades.append(ev)
        elif isinstance(ev, Ticker):
            self.ticker = ev.fields
        self.events_emitted += 1
        for listener in self.listeners:
            listener(ev)
        return ev

    async def run(self, clock: Clock, speed: float = 1.0) -> None:
        """Emit events forever, paced on ``clock`` at ``speed`` x recorded/synthetic time."""
        owed = 0.0
        while True:
            owed += self._peek_delay() / speed
            if owed >= 0.001:
                await clock.sleep(owed)
                owed = 0.0
            elif self.events_emitted % 256 == 0:
                await asyncio.sleep(0)
            self.emit_next(clock.time_ns() // 1_000_000)


# ---------------------------------------------------------------------------------------- Binance replay


def _read_hftbacktest(source: str | Path) -> Iterator[tuple[int, str]]:
    """Frames of a shipped recording (``str``: its name) or of a user file (``Path``: gzip or plain text)."""
    if isinstance(source, str):
        return recordings.iter_hftbacktest(source)
    data = source.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return recordings.parse_hftbacktest(data.decode("utf-8"), str(source))


@lru_cache(maxsize=8)
def _load_replay(
    source: str | Path,
) -> tuple[int, list[Level], list[Level], list[tuple[float, str, Any]]]:
    """Parse a recording once: ``(snapshot_id, bids, asks, [(delay_s, kind, payload), ...])``.

    The snapshot is the first bare REST depth answer (``{"lastUpdateId":..,"bids":..,"asks":..}``); without one
    the book starts empty with id ``U - 1`` of the first ``@depth`` diff (those diffs then rebuild only the levels
    they touch, so REST snapshots and diffs stay consistent with each other). Diffs the snapshot already covers
    (``u <= lastUpdateId``) and trades/bookTickers before it are dropped.

    Raises:
        ValueError: a malformed line or frame, or no depth, trade or bookTicker frame to replay (message names
            the recording).
    """
    dec = msgspec.json.Decoder()
    frames = list(_read_hftbacktest(source))

    def decode(i: int) -> Any:
        try:
            return dec.decode(frames[i][1])
        except msgspec.DecodeError as exc:
            raise ValueError(f"{source}: frame {i + 1} is not JSON: {exc}") from exc

    snap: dict[str, Any] | None = None
    snap_at = -1
    for i, (_, raw) in enumerate(frames):
        if not raw.startswith('{"stream"'):
            msg = decode(i)
            if isinstance(msg, dict) and "stream" not in msg and "lastUpdateId" in msg:
                snap, snap_at = msg, i
                break
    bids: list[Level] = []
    asks: list[Level] = []
    snap_id: int | None = None
    if snap is not None:
        snap_id = int(snap["lastUpdateId"])
        bids = [(str(p), str(q)) for p, q in snap["bids"]]
        asks = [(str(p), str(q)) for p, q in snap["asks"]]
    out: list[tuple[float, str, Any]] = []
    prev_ts: int | None = None
    for i, (ts, _) in enumerate(frames):
        if i == snap_at:
            continue
        msg = decode(i)
        if not isinstance(msg, dict) or "stream" not in msg:
            continue
        stream: str = msg["stream"]
        d = msg["data"]
        if "@depth" in stream:
            if snap_id is None:  # no snapshot: start empty, just before the first diff
                snap_id = int(d["U"]) - 1
            if int(d["u"]) <= snap_id:
                continue
            span = int(d["u"]) - int(d["U"]) + 1
            item: tuple[str, Any] = (
                "depth",
                (span, [(p, q) for p, q in d["b"]], [(p, q) for p, q in d["a"]]),
            )
        elif i < snap_at:
            continue
        elif stream.endswith("@trade") or stream.endswith("@aggTrade"):
            item = ("trade", (d["p"], d["q"], bool(d["m"])))
        elif stream.endswith("@bookTicker"):
            item = ("bbo", (d["b"], d["B"], d["a"], d["A"]))
        else:
            continue
        delay = 0.0 if prev_ts is None else max(0.0, (ts - prev_ts) / 1e9)
        prev_ts = ts
        out.append((delay, item[0], item[1]))
    if snap_id is None:
        raise ValueError(f"{source}: no REST depth snapshot and no @depth frame: nothing to replay")
    if not out:
        raise ValueError(f"{source}: no usable @depth, trade or @bookTicker frame to replay")
    return snap_id, bids, asks, out


class _LoopingReplay(MarketSource):
    """A recorded tape played in a loop: ``(delay_s, kind, payload)`` events over a start book. At the seam one
    delta turns the book back into the start book, then the tape plays again (ids keep growing). ``loops``
    counts completed passes."""

    SEAM_DELAY_S = 0.1

    def __init__(self, symbol: str, events: list[tuple[float, str, Any]]) -> None:
        super().__init__(symbol)
        self._events = events
        self._start_book = self.book.copy()
        self._i = 0
        self.loops = 0

    def _start_from(self, bids: list[Level], asks: list[Level]) -> None:
        """Set the recorded start book (before the first event)."""
        self.book.apply(bids, asks)
        self._start_book = self.book.copy()

    def _peek_delay(self) -> float:
        if self._i >= len(self._events):
            return self.SEAM_DELAY_S
        return self._events[self._i][0]

    def _next_event(self) -> tuple[str, Any] | None:
        """The next ``(kind, payload)`` of the tape, or ``None`` at the seam."""
        if self._i >= len(self._events):
            return None
        _, kind, payload = self._events[self._i]
        self._i += 1
        return kind, payload

    def _seam(self, ts_ms: int, span: int) -> Depth:
        """The delta back to the start book, its ids covering ``span`` update ids; starts the next pass."""
        bids, asks = self.book.diff_to(self._start_book)
        self.book = self._start_book.copy()
        self._i = 0
        self.loops += 1
        first, last, prev = self._next_ids(span)
        return Depth(first, last, prev, bids, asks, ts_ms)


class ReplaySource(_LoopingReplay):
    """Loops an hftbacktest-format recording (see module doc). ``loops`` counts completed passes.

    Args:
        symbol: exchange-neutral symbol (``BTCUSDT``).
        recording: a shipped recording name (``str``) or a user file (``Path``, gzip or plain text).

    Raises:
        ValueError: the recording has nothing to replay (see :func:`_load_replay`).
        OSError: a user file cannot be read.
    """

    def __init__(self, symbol: str, recording: str | Path) -> None:
        snap_id, bids, asks, events = _load_replay(recording)
        super().__init__(symbol, events)
        self._start_from(bids, asks)
        self.last_update_id = snap_id
        self.last_trade_id = 1_000_000
        self._bbo_ids = 0  # BBO ids handed out since the last depth delta (they lie inside the next one)
        bb = self.book.top(1)[0]
        self.last_price = bb[0][0] if bb else "0"

    def _pop(self, ts_ms: int) -> Event:
        event = self._next_event()
        if event is None:  # the seam's delta also covers the BBO ids handed out since the last delta
            seam = self._seam(ts_ms, self._bbo_ids + 1)
            self._bbo_ids = 0
            return seam
        kind, payload = event
        if kind == "depth":
            span, bids, asks = payload
            self.book.apply(bids, asks)
            # the delta must cover every BBO id handed out since the previous one, and end past them
            first, last, prev = self._next_ids(max(span, self._bbo_ids + 1))
            self._bbo_ids = 0
            return Depth(first, last, prev, bids, asks, ts_ms)
        if kind == "trade":
            p, q, m = payload
            self.last_trade_id += 1
            return Trade(self.last_trade_id, p, q, m, ts_ms)
        # Binance bookTicker ``u`` is the order book updateId of that BBO ("Individual Symbol Book Ticker
        # Streams", https://developers.binance.com/docs/binance-spot-api-docs/web-socket-streams): the real
        # stream sends several BBOs between two 100 ms depth deltas, each with its own increasing id inside the
        # next delta's [U, u] range, so one id never carries two different BBOs.
        b, bq, a, aq = payload
        self._bbo_ids += 1
        return Bbo(self.last_update_id + self._bbo_ids, b, bq, a, aq, ts_ms)


# --------------------------------------------------------------------------------------------- OKX replay


@dataclass(frozen=True, slots=True)
class _OkxTape:
    """One instrument of :data:`OKX_RECORDING`: the ``books`` snapshot, the events after it, the first trade id."""

    bids: list[Level]
    asks: list[Level]
    events: list[tuple[float, str, Any]]
    first_trade_id: int


@lru_cache(maxsize=1)
def _load_okx_replay() -> dict[str, _OkxTape]:
    """Parse :data:`OKX_RECORDING` once into one :class:`_OkxTape` per instrument with a ``books`` snapshot.

    Events (``(delay_s, kind, payload)``, delays from the recorded receive times): ``depth`` ``(bids, asks)``,
    ``trade`` ``(px, sz, taker_sold, recorded tradeId)`` per trade, ``ticker`` (the data fields without ``ts``,
    ``instType``, ``instId``). Trades and tickers OKX pushed on subscription, before the snapshot, are kept.
    """
    dec = msgspec.json.Decoder()
    snaps: dict[str, tuple[list[Level], list[Level]]] = {}
    events: dict[str, list[tuple[float, str, Any]]] = {}
    last_ts: dict[str, float] = {}
    first_trade: dict[str, int] = {}
    for rec in recordings.iter_cryptofeed_ws(OKX_RECORDING):
        if rec.kind != "received" or not rec.payload.startswith("{"):
            continue
        msg = dec.decode(rec.payload)
        arg, data = msg.get("arg"), msg.get("data")
        if not isinstance(arg, dict) or not isinstance(data, list) or "event" in msg:
            continue
        inst, channel = arg["instId"], arg["channel"]
        delay = max(0.0, rec.ts_s - last_ts[inst]) if inst in last_ts else 0.0
        items: list[tuple[str, Any]] = []
        if channel == "books":
            d = data[0]
            bids: list[Level] = [(lv[0], lv[1]) for lv in d["bids"]]
            asks: list[Level] = [(lv[0], lv[1]) for lv in d["asks"]]
            if msg.get("action") == "snapshot":
                if inst not in snaps:
                    snaps[inst] = (bids, asks)
            elif inst in snaps:
                items.append(("depth", (bids, asks)))
        elif channel == "trades":
            for t in data:
                first_trade.setdefault(inst, int(t["tradeId"]))
                items.append(("trade", (t["px"], t["sz"], t["side"] == "sell", int(t["tradeId"]))))
        elif channel == "tickers":
            for t in data:
                items.append(
                    ("ticker", {k: v for k, v in t.items() if k not in ("ts", "instType", "instId")})
                )
        if not items:
            continue
        last_ts[inst] = rec.ts_s
        for kind, payload in items:
            events.setdefault(inst, []).append((delay, kind, payload))
            delay = 0.0
    return {
        inst: _OkxTape(bids, asks, events.get(inst, []), first_trade.get(inst, 1))
        for inst, (bids, asks) in snaps.items()
    }


class OkxReplaySource(_LoopingReplay):
    """Loops one instrument of the shipped OKX v5 recording :data:`OKX_RECORDING` (see the module doc).

    Prices and sizes are the recorded strings; ``seqId``/``prevSeqId`` come from the simulator's own counter
    (the recording predates seqId), one per update; trade ids start at the first recorded tradeId and keep
    counting across loops; tickers carry the recorded values. At the loop seam one update turns the book back
    into the recorded snapshot book. The book never holds more levels than the recording (400 per side at most,
    the ``books`` channel depth), so a subscriber's snapshot can always be the whole book.

    Args:
        inst_id: one of :data:`OKX_REPLAY_INSTRUMENTS`.

    Raises:
        KeyError: ``inst_id`` is not in the recording.
    """

    def __init__(self, inst_id: str) -> None:
        tape = _load_okx_replay()[inst_id]
        super().__init__(inst_id, tape.events)
        self._start_from(tape.bids, tape.asks)
        self.last_update_id = 1_000_000
        self.last_trade_id = tape.first_trade_id - 1
        self.ticker = next((dict(p) for _, k, p in self._events if k == "ticker"), None)
        trade = next((p for _, k, p in self._events if k == "trade"), None)
        self.last_price = trade[0] if trade else (self.book.top(1)[0] or [("0", "0")])[0][0]

    def _pop(self, ts_ms: int) -> Event:
        event = self._next_event()
        if event is None:
            return self._seam(ts_ms, 1)
        kind, payload = event
        if kind == "depth":
            bids, asks = payload
            self.book.apply(bids, asks)
            first, last, prev = self._next_ids(1)
            return Depth(first, last, prev, bids, asks, ts_ms)
        if kind == "trade":
            px, sz, taker_sold, _recorded_id = payload
            self.last_trade_id += 1
            return Trade(self.last_trade_id, px, sz, taker_sold, ts_ms)
        return Ticker(payload, ts_ms)


# ---------------------------------------------------------------------------------------------- synthetic

_SEED_PRICES = {"BTC": 60_000.0, "ETH": 3_000.0, "SOL": 150.0, "BNB": 500.0}


class SyntheticSource(MarketSource):
    """Seeded random-walk market: 50 levels per side around a mid moving by one tick (0.01 quote).

    Levels left behind by the moving mid stay in the book, so it holds 50 levels per side plus the range the mid
    has walked.

    Args:
        symbol: any id; a known base (BTC, ETH, SOL, BNB) picks a realistic start price, else 100.
        seed: RNG seed; same seed and symbol give the same event sequence.
        rate_hz: mean events per second (exponential gaps).
    """

    LEVELS = 50

    def __init__(self, symbol: str, seed: int = 0, rate_hz: float = 50.0) -> None:
        super().__init__(symbol)
        self._rng = random.Random(f"{seed}:{symbol}")
        self._rate = rate_hz
        base = next((v for k, v in _SEED_PRICES.items() if symbol.upper().startswith(k)), 100.0)
        self._mid = int(base * 100)
        self.last_update_id = 1_000_000
        self.last_trade_id = 1_000
        bids = [(self._px(self._mid - i), self._qty()) for i in range(1, self.LEVELS + 1)]
        asks = [(self._px(self._mid + i), self._qty()) for i in range(1, self.LEVELS + 1)]
        self.book.apply(bids, asks)
        self.last_price = self._px(self._mid)
        self._next_delay = self._rng.expovariate(self._rate)

    @staticmethod
    def _px(ticks: int) -> str:
        return f"{ticks // 100}.{ticks % 100:02d}"

    def _qty(self) -> str:
        return f"{self._rng.randint(1, 500_000) / 100_000:.5f}"

    def _peek_delay(self) -> float:
        return self._next_delay

    def _pop(self, ts_ms: int) -> Event:
        rng = self._rng
        self._next_delay = rng.expovariate(self._rate)
        r = rng.random()
        if r < 0.15:
            self.last_trade_id += 1
            sell = rng.random() < 0.5
            side = self.book.bids if sell else self.book.asks
            price = side.values()[0][0] if side else self._px(self._mid)
            return Trade(self.last_trade_id, price, f"{rng.randint(1, 10_000) / 100_000:.5f}", sell, ts_ms)
        if r < 0.35:
            (bb, bq), (ba, aq) = self.book.bids.values()[0], self.book.asks.values()[0]
            return Bbo(self.last_update_id, bb, bq, ba, aq, ts_ms)
        bids: list[Level] = []
        asks: list[Level] = []
        if r < 0.45:  # mid moves one tick; drop the level it crosses, refill the far end
            step = 1 if rng.random() < 0.5 else -1
            self._mid += step
            if step > 0:
                asks.append((self._px(self._mid), "0"))
                bids.append((self._px(self._mid - 1), self._qty()))
                asks.append((self._px(self._mid + self.LEVELS), self._qty()))
            else:
                bids.append((self._px(self._mid), "0"))
                asks.append((self._px(self._mid + 1), self._qty()))
                bids.append((self._px(self._mid - self.LEVELS), self._qty()))
        else:
            for _ in range(rng.randint(1, 3)):
                off = rng.randint(1, self.LEVELS)
                q = "0" if rng.random() < 0.2 and off > 1 else self._qty()
                if rng.random() < 0.5:
                    bids.append((self._px(self._mid - off), q))
                else:
                    asks.append((self._px(self._mid + off), q))
        self.book.apply(bids, asks)
        first, last, prev = self._next_ids(len(bids) + len(asks))
        return Depth(first, last, prev, bids, asks, ts_ms)


def preload_okx_replay() -> None:
    """Parse the shipped OKX recording now (cached for the OKX replay sources)."""
    _load_okx_replay()


def preload_replay(recording: str | Path) -> None:
    """Parse ``recording`` now (the result is cached for the sources), so a bad file fails early.

    Raises:
        ValueError: nothing to replay or a malformed line (see :func:`_load_replay`).
        OSError: the file cannot be read.
    """
    _load_replay(recording)


def make_source(
    kind: str,
    symbol: str,
    mode: str,
    seed: int = 0,
    rate_hz: float = 50.0,
    replay_files: Mapping[tuple[str, str], str | Path] | None = None,
) -> MarketSource:
    """A :class:`ReplaySource` when ``mode == "replay"`` and a recording exists for ``(kind, symbol)`` (first in
    ``replay_files``, then in :data:`REPLAY_FILES`), else a :class:`SyntheticSource`.

    Args:
        kind: ``"spot"``, ``"usdm"`` or ``"coinm"`` (which recording family to use).
        symbol: exchange-neutral id such as ``BTCUSDT``.
        mode: ``"replay"`` or ``"synthetic"``.
        replay_files: user recordings (``Path``) or shipped names (``str``) overriding :data:`REPLAY_FILES`.

    Raises:
        ValueError: unknown ``mode``, or a recording with nothing to replay.
    """
    if mode not in ("replay", "synthetic"):
        raise ValueError(f"mode must be 'replay' or 'synthetic', not {mode!r}")
    rec = (replay_files or {}).get((kind, symbol)) or REPLAY_FILES.get((kind, symbol))
    if mode == "replay" and rec is not None:
        return ReplaySource(symbol, rec)
    return SyntheticSource(symbol, seed=seed, rate_hz=rate_hz)
