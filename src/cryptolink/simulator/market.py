"""Market sources: one ordered stream of L2 book deltas, trades and BBO per symbol, with the simulator's own
ids.

A :class:`MarketSource` owns the authoritative :class:`SimBook` of its symbol. :meth:`MarketSource.run`
paces events on
an injected clock, applies each delta to the book *before* handing the event to listeners, so a REST
snapshot taken at
any moment (``book`` + ``last_update_id``) bridges exactly the deltas that follow it (Binance sync rule,
EXCHANGES.md
§1/§2). Update ids, trade ids and OKX seqIds derive from the same strictly increasing counters.

- :class:`ReplaySource`: the hftbacktest Binance recordings (REST snapshot + diffs + trades + bookTicker, ~6
  min),
  looped forever. At the loop seam one synthetic delta turns the end book back into the recorded snapshot
  book, then
  the recorded diffs play again with fresh, still increasing ids; trade ids keep counting up.
- :class:`SyntheticSource`: seeded random walk for any symbol: integer-tick prices, bids strictly below and
  asks
  strictly above a moving mid, so the book never crosses.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import msgspec
from sortedcontainers import SortedDict

from cryptolink import recordings
from cryptolink.clock import Clock

__all__ = [
    "REPLAY_FILES",
    "Bbo",
    "Depth",
    "Event",
    "MarketSource",
    "ReplaySource",
    "SimBook",
    "SyntheticSource",
    "Trade",
    "make_source",
]

Level = tuple[str, str]

#: (market kind, exchange-neutral symbol) -> recording. "spot" feeds Binance spot and OKX spot; "usdm" feeds
#: USD-M.
REPLAY_FILES: dict[tuple[str, str], str] = {
    ("spot", "BTCUSDT"): "hftbacktest_binance_spot_btcusdt_20240808.gz",
    ("spot", "ETHUSDT"): "hftbacktest_binance_spot_ethusdt_20240808.gz",
    ("usdm", "BTCUSDT"): "hftbacktest_binance_usdm_btcusdt_20240808.gz",
    ("usdm", "ETHUSDT"): "hftbacktest_binance_usdm_ethusdt_20240808.gz",
}


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
    """One trade; ``buyer_maker`` True means the taker sold (Binance ``m``)."""

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


Event = Depth | Trade | Bbo
Listener = Callable[[Event], None]


class MarketSource:
    """Base class: the book, the id counters, listeners and the pacing loop.

    Attributes:
        symbol: exchange-neutral id, e.g. ``BTCUSDT``.
        book: the authoritative book; read it only between events (single event loop, no await inside apply).
        last_update_id: id of the last applied delta (Binance ``lastUpdateId`` of a REST snapshot now).
        last_trade_id: id of the last emitted trade.
        last_price: price string of the last trade (or mid-ish seed before any trade).
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
        """Restart update ids at ``new_last_id`` (an OKX maintenance seq reset, EXCHANGES.md §3)."""
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


@lru_cache(maxsize=8)
def _load_replay(
    name: str,
) -> tuple[int, list[Level], list[Level], list[tuple[float, str, Any]]]:
    """Parse a recording once: ``(snapshot_id, bids, asks, [(delay_s, kind, payload), ...])``."""
    dec = msgspec.json.Decoder()
    frames = list(recordings.iter_hftbacktest(name))
    snap_idx = next(i for i, (_, f) in enumerate(frames) if not f.startswith('{"stream"'))
    snap = dec.decode(frames[snap_idx][1])
    snap_id = int(snap["lastUpdateId"])
    out: list[tuple[float, str, Any]] = []
    prev_ts: int | None = None
    for i, (ts, raw) in enumerate(frames):
        if i == snap_idx:
            continue
        msg = dec.decode(raw)
        stream: str = msg["stream"]
        d = msg["data"]
        if "@depth" in stream:
            if int(d["u"]) <= snap_id:
                continue
            span = int(d["u"]) - int(d["U"]) + 1
            item: tuple[str, Any] = (
                "depth",
                (span, [tuple(x) for x in d["b"]], [tuple(x) for x in d["a"]]),
            )
        elif i < snap_idx:
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
    bids: list[Level] = [(str(p), str(q)) for p, q in snap["bids"]]
    asks: list[Level] = [(str(p), str(q)) for p, q in snap["asks"]]
    return snap_id, bids, asks, out


class ReplaySource(MarketSource):
    """Loops a hftbacktest recording (see module doc). ``loops`` counts completed passes."""

    SEAM_DELAY_S = 0.1

    def __init__(self, symbol: str, recording: str) -> None:
        super().__init__(symbol)
        snap_id, bids, asks, self._events = _load_replay(recording)
        self.book.apply(bids, asks)
        self._start_book = self.book.copy()
        self.last_update_id = snap_id
        self.last_trade_id = 1_000_000
        self._bbo_ids = 0  # BBO ids handed out since the last depth delta (they lie inside the next one)
        self._i = 0
        self.loops = 0
        self._pending_seam = False
        bb = self.book.top(1)[0]
        self.last_price = bb[0][0] if bb else "0"

    def _peek_delay(self) -> float:
        if self._i >= len(self._events):
            return self.SEAM_DELAY_S
        return self._events[self._i][0]

    def _pop(self, ts_ms: int) -> Event:
        if self._i >= len(self._events):
            # loop seam: one delta back to the recorded snapshot book, then replay again with higher ids
            bids, asks = self.book.diff_to(self._start_book)
            self.book = self._start_book.copy()
            self._i = 0
            self.loops += 1
            first, last, prev = self._next_ids(self._bbo_ids + 1)
            self._bbo_ids = 0
            return Depth(first, last, prev, bids, asks, ts_ms)
        _, kind, payload = self._events[self._i]
        self._i += 1
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
        # Binance bookTicker ``u`` is the book update id of that BBO (EXCHANGES.md section 1 "Payloads"): the
        # real stream sends several BBOs between two 100 ms depth deltas, each with its own increasing id inside
        # the next delta's [U, u] range, so one id never carries two different BBOs.
        b, bq, a, aq = payload
        self._bbo_ids += 1
        return Bbo(self.last_update_id + self._bbo_ids, b, bq, a, aq, ts_ms)


_SEED_PRICES = {"BTC": 60_000.0, "ETH": 3_000.0, "SOL": 150.0, "BNB": 500.0}


class SyntheticSource(MarketSource):
    """Seeded random-walk market: 50 levels per side around a mid moving by one tick (0.01 quote).

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


def make_source(kind: str, symbol: str, mode: str, seed: int = 0, rate_hz: float = 50.0) -> MarketSource:
    """A replay source when ``mode == "replay"`` and a recording exists for ``(kind, symbol)``, else
    synthetic.

    Args:
        kind: ``"spot"`` or ``"usdm"`` (which recording family to use).
        symbol: exchange-neutral id such as ``BTCUSDT``.
        mode: ``"replay"`` or ``"synthetic"``.

    Raises:
        ValueError: unknown ``mode``.
    """
    if mode not in ("replay", "synthetic"):
        raise ValueError(f"mode must be 'replay' or 'synthetic', not {mode!r}")
    rec = REPLAY_FILES.get((kind, symbol))
    if mode == "replay" and rec is not None:
        return ReplaySource(symbol, rec)
    return SyntheticSource(symbol, seed=seed, rate_hz=rate_hz)
