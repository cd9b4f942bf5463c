"""Replay a user's own capture (``cryptolink record``) in the simulator.

:func:`load_capture` reads a capture file (the line format of ``docs/recording.md``: gzip-compressed JSON lines,
a ``cryptolink-capture`` header, then one record per received WebSocket frame or parsed REST body) and builds one
*tape* per (exchange, exchange symbol): a start book and the events after it, the same
``(delay_s, kind, payload)`` events the shipped recordings give :class:`~cryptolink.simulator.market.ReplaySource`.
:meth:`Capture.sources` hands out :class:`CaptureSource` factories the simulator serves instead of its shipped
recordings, re-sequenced and looped as those are (a loop seam delta turns the end book back into the start book;
ids keep growing).

What is read, per exchange (ccxt ids):

- ``binance``, ``binanceusdm``, ``binancecoinm``: ``depthUpdate`` diffs (``U``/``u``, and ``pu`` on futures)
  stitched to a recorded REST depth snapshot (``lastUpdateId``) as Binance's "How to manage a local order book
  correctly" describes (https://developers.binance.com/docs/binance-spot-api-docs/web-socket-streams,
  https://developers.binance.com/docs/derivatives/usds-margined-futures/websocket-market-streams/How-to-manage-a-local-order-book-correctly,
  https://developers.binance.com/docs/derivatives/coin-margined-futures/websocket-market-streams/How-to-manage-a-local-order-book-correctly);
  ``trade`` (id ``t``) or ``aggTrade`` (id ``a``) trades, whichever the symbol's first trade was; ``bookTicker``.
  Frames may be combined-stream (``{"stream":..,"data":..}``) or raw.
- ``okx``: ``books`` (and ``books-l2-tbt``, ``books50-l2-tbt``) ``snapshot``/``update`` pushes chained by
  ``prevSeqId == previous seqId`` (https://www.okx.com/docs-v5/en/#order-book-trading-market-data-ws-order-book-channel),
  ``trades`` (https://www.okx.com/docs-v5/en/#order-book-trading-market-data-ws-trades-channel), ``tickers``
  (https://www.okx.com/docs-v5/en/#order-book-trading-market-data-ws-tickers-channel) and ``bbo-tbt`` (its best
  levels become BBO events; the book itself comes from ``books``).

Building a tape: records are taken in receipt-time order (ties in file order). The tape starts at the first full
snapshot of the symbol (Binance REST body, OKX ``books`` snapshot); updates received before it are buffered and
those it does not cover are applied after it, trades and tickers received before it are dropped. Duplicates (the
same stream on two connections, e.g. during a rotation) are dropped by sequence (book), trade id (trades) or
equality with the previous one (BBO, tickers). When the recorded chain breaks (a gap: the client resynced), the
next snapshot received after the break becomes one synthetic delta from the book as it was to that snapshot, and
the chain continues from it; a gap no later snapshot repairs ends the book's part of the tape there (counted in
:attr:`Tape.unrepaired_gaps`, logged). On the first pass the replayed ids equal the recorded ones (each delta
covers the ids from the previous recorded sequence to its own; the start id is the snapshot's), then keep growing.

A symbol with book updates but no snapshot is refused with a :class:`CaptureError` naming it when its sources are
asked for (never an error at serve time). A symbol without any book data (trades only) replays with an empty book.
A line that is not JSON or not a record is counted and skipped, its line number logged; a frame that is JSON but
not a shape this module knows is counted (:attr:`CaptureStats.ignored_frames`).

This module imports nothing of the client (only :mod:`cryptolink.simulator`, the standard library and msgspec).
"""

from __future__ import annotations

import base64
import functools
import logging
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from cryptolink.simulator.market import (
    Bbo,
    Depth,
    Event,
    Level,
    MarketSource,
    SimBook,
    Ticker,
    Trade,
    _LoopingReplay,
)

__all__ = [
    "CAPTURE_FORMAT",
    "REPLAYABLE_EXCHANGES",
    "Capture",
    "CaptureError",
    "CaptureSource",
    "CaptureStats",
    "Tape",
    "load_capture",
]

log = logging.getLogger(__name__)

CAPTURE_FORMAT = "cryptolink-capture"
"""The header's ``format`` value."""
SUPPORTED_VERSIONS = (1,)
"""Header ``version`` values this module reads."""

REPLAYABLE_EXCHANGES = ("binance", "binanceusdm", "binancecoinm", "okx")
"""Exchange ids whose frames this module turns into tapes (the simulator server of the same name serves them)."""

_OKX_BOOK_CHANNELS = frozenset({"books", "books-l2-tbt", "books50-l2-tbt"})
_LOGGED_CORRUPT = 20


class CaptureError(ValueError):
    """A capture cannot be replayed: not a capture file, an unsupported version, or (naming it) a symbol with
    book updates but no snapshot to start from."""


# ------------------------------------------------------------------------------------------------ reading


class _Record(msgspec.Struct, frozen=True):
    """One record line (see docs/recording.md); fields a kind does not use keep their defaults."""

    t: int
    k: str
    ex: str
    m: str = ""
    feed: str = ""
    c: int = 0
    f: str | None = None
    b: bool = False
    what: str = ""
    symbol: str | None = None
    xs: str | None = None
    body: str | None = None
    url: str | None = None


@dataclass(slots=True)
class CaptureStats:
    """What :func:`load_capture` read.

    Attributes:
        lines: lines read, the header included.
        corrupt_lines: lines that are not JSON or not a record (skipped; each line number is logged).
        truncated: the compressed stream ended early (a recording cut by a crash; every complete line was read).
        frames: WebSocket frame records.
        rest_bodies: REST body records.
        ignored_frames: frames or bodies that are JSON but no shape this module replays (acks, pongs,
            instrument lists, other channels), or of an exchange it does not replay.
        bad_frames: frames of a replayed shape with a missing or mistyped field (skipped, logged).
    """

    lines: int = 0
    corrupt_lines: int = 0
    truncated: bool = False
    frames: int = 0
    rest_bodies: int = 0
    ignored_frames: int = 0
    bad_frames: int = 0


def _iter_lines(path: Path, stats: CaptureStats) -> Iterator[bytes]:
    """Lines of a gzip (or plain) file; a truncated gzip stream yields every complete line, then sets
    ``stats.truncated``."""
    with path.open("rb") as fh:
        head = fh.read(2)
        fh.seek(0)
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS) if head == b"\x1f\x8b" else None
        rest = b""
        while True:
            chunk = fh.read(1 << 20)
            if not chunk:
                break
            if inflater is not None:
                try:
                    data = inflater.decompress(chunk)
                except zlib.error:
                    stats.truncated = True
                    break
                if inflater.eof and inflater.unused_data:  # concatenated gzip members
                    unused = inflater.unused_data
                    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
                    data += inflater.decompress(unused)
            else:
                data = chunk
            rest += data
            *lines, rest = rest.split(b"\n")
            yield from lines
        if inflater is not None and not inflater.eof:
            stats.truncated = True
        if rest.strip():
            if stats.truncated:
                return  # an incomplete last line of a cut recording
            yield rest


# ------------------------------------------------------------------------------------------------ items


@dataclass(slots=True)
class _Diff:
    first: int | None  # Binance U (None: OKX)
    last: int  # Binance u / OKX seqId
    prev: int | None  # Binance futures pu / OKX prevSeqId (None: Binance spot)
    bids: list[Level]
    asks: list[Level]


@dataclass(slots=True)
class _Snap:
    seq: int
    bids: list[Level]
    asks: list[Level]


@dataclass(slots=True)
class _Item:
    t: int
    order: int
    kind: str  # snapshot, depth, trade, bbo, ticker
    payload: Any


def _levels(raw: Any) -> list[Level]:
    return [(str(lv[0]), str(lv[1])) for lv in raw]


def _binance_frame(msg: Any) -> list[tuple[str, str, Any]]:
    """``(exchange symbol, kind, payload)`` items of one Binance frame (combined-stream or raw)."""
    data = msg.get("data") if isinstance(msg, dict) and "stream" in msg else msg
    if not isinstance(data, dict):
        return []
    e = data.get("e")
    if e == "depthUpdate":
        pu = data.get("pu")
        diff = _Diff(
            int(data["U"]),
            int(data["u"]),
            None if pu is None else int(pu),
            _levels(data["b"]),
            _levels(data["a"]),
        )
        return [(str(data["s"]), "depth", diff)]
    if e in ("trade", "aggTrade"):
        tid = int(data["t"] if e == "trade" else data["a"])
        return [(str(data["s"]), "trade", (e, tid, str(data["p"]), str(data["q"]), bool(data["m"])))]
    if e == "bookTicker" or (e is None and {"u", "s", "b", "B", "a", "A"} <= data.keys()):
        bbo = (str(data["b"]), str(data["B"]), str(data["a"]), str(data["A"]), int(data["u"]))
        return [(str(data["s"]), "bbo", bbo)]
    return []


def _binance_snapshot(body: Any) -> _Snap | None:
    if not isinstance(body, dict) or "lastUpdateId" not in body:
        return None
    return _Snap(int(body["lastUpdateId"]), _levels(body["bids"]), _levels(body["asks"]))


def _okx_frame(msg: Any) -> list[tuple[str, str, Any]]:
    """``(instId, kind, payload)`` items of one OKX push."""
    if not isinstance(msg, dict) or "event" in msg:
        return []
    arg, data = msg.get("arg"), msg.get("data")
    if not isinstance(arg, dict) or not isinstance(data, list):
        return []
    channel, inst = arg.get("channel"), arg.get("instId")
    if not isinstance(inst, str):
        return []
    out: list[tuple[str, str, Any]] = []
    if channel in _OKX_BOOK_CHANNELS:
        snapshot = msg.get("action") == "snapshot"
        for d in data:
            bids, asks = _levels(d["bids"]), _levels(d["asks"])
            if snapshot:
                out.append((inst, "snapshot", _Snap(int(d["seqId"]), bids, asks)))
            else:
                out.append((inst, "depth", _Diff(None, int(d["seqId"]), int(d["prevSeqId"]), bids, asks)))
    elif channel == "trades":
        for d in data:
            out.append(
                (
                    inst,
                    "trade",
                    ("trades", int(d["tradeId"]), str(d["px"]), str(d["sz"]), d["side"] == "sell"),
                )
            )
    elif channel == "tickers":
        for d in data:
            out.append(
                (inst, "ticker", {k: v for k, v in d.items() if k not in ("ts", "instType", "instId")})
            )
    elif channel == "bbo-tbt":
        for d in data:
            bid = d["bids"][0] if d["bids"] else ("0", "0")
            ask = d["asks"][0] if d["asks"] else ("0", "0")
            out.append((inst, "bbo", (str(bid[0]), str(bid[1]), str(ask[0]), str(ask[1]), None)))
    return out


# ------------------------------------------------------------------------------------------------ tapes


@dataclass(frozen=True, slots=True)
class Tape:
    """One symbol's replayable recording.

    Attributes:
        exchange: exchange id (ccxt's).
        symbol: the exchange's symbol (``BTCUSDT``, ``BTC-USDT``).
        bids, asks: the start book (the first snapshot), ``(price, size)`` strings as recorded.
        start_seq: the start book's sequence (Binance ``lastUpdateId``, OKX ``seqId``).
        first_trade_id: the first replayed trade's recorded id.
        events: ``(delay_s, kind, payload)``: ``depth`` ``(span, bids, asks)`` (``span``: update ids the delta
            covers), ``trade`` ``(price, qty, taker_sold)``, ``bbo`` ``(bid, bid_qty, ask, ask_qty, id_offset)`` (Binance:
            recorded ``u`` minus the book sequence at that point; OKX: 0),
            ``ticker`` (OKX ticker fields without ``ts``, ``instType``, ``instId``).
        duration_s: recorded time from the start snapshot to the last event.
        jumps: gaps in the recording bridged by a later snapshot (one synthetic delta each).
        unrepaired_gaps: 1 when the book's chain broke and no later snapshot repaired it (book updates after
            the break are not replayed).
        has_book: the symbol had book data (else it replays trades and BBOs over an empty book).
    """

    exchange: str
    symbol: str
    bids: list[Level]
    asks: list[Level]
    start_seq: int
    first_trade_id: int
    events: list[tuple[float, str, Any]]
    duration_s: float
    jumps: int = 0
    unrepaired_gaps: int = 0
    has_book: bool = True

    @property
    def depth_events(self) -> int:
        return sum(1 for e in self.events if e[1] == "depth")


class _TapeBuilder:
    """The state machine of one symbol (see the module doc)."""

    def __init__(self, exchange: str, symbol: str) -> None:
        self.exchange, self.symbol = exchange, symbol
        self.okx = exchange == "okx"
        self.book: SimBook | None = None
        self.start: _Snap | None = None
        self.t0 = 0
        self.last = 0
        self.fresh = False  # the last book change was a snapshot (Binance futures bridge rule)
        self.gap = False
        self.buffer: list[tuple[int, _Diff]] = []
        self.events: list[tuple[int, str, Any]] = []
        self.jumps = 0
        self.saw_book = False
        self.trade_kind: str | None = None
        self.last_trade_id: int | None = None
        self.first_trade_id: int | None = None
        self.last_bbo: Any = None
        self.last_ticker: Any = None

    # ---- book ----
    def _connects(self, d: _Diff) -> bool:
        if self.okx:
            return d.prev == self.last
        if d.prev is not None:  # futures: pu links to the previous u; after a snapshot U <= lastUpdateId <= u
            return d.prev == self.last or (self.fresh and d.first is not None and d.first <= self.last)
        return d.first is not None and d.first <= self.last + 1  # spot: U <= previous u + 1

    def _stale(self, d: _Diff) -> bool:
        if self.okx:
            return d.last <= self.last and d.prev != self.last  # a duplicate; seqId == prevSeqId: heartbeat
        return d.last <= self.last

    def _apply(self, t: int, d: _Diff) -> None:
        assert self.book is not None
        span = d.last - self.last if d.last > self.last else 1  # OKX seq reset: seqId < prevSeqId
        self.book.apply(d.bids, d.asks)
        self.events.append((t, "depth", (span, d.bids, d.asks)))
        self.last = d.last
        self.fresh = False

    def _offer(self, t: int, d: _Diff) -> bool:
        """Apply ``d`` if it continues the chain (True), drop it if stale (True), else False (a gap)."""
        if self.okx and d.prev == self.last and d.last == self.last:
            return True  # OKX heartbeat: no change
        if self._connects(d) and not (not self.okx and d.last <= self.last):
            self._apply(t, d)
            return True
        return self._stale(d)

    def _drain(self, t: int) -> None:
        """Apply buffered diffs that now continue the chain; stop at the first that leaves a gap."""
        pending = sorted(self.buffer, key=lambda td: td[1].last)  # copies from several connections interleave
        self.buffer = []
        for i, (_, d) in enumerate(pending):
            if not self._offer(t, d):
                self.gap = True
                self.buffer = pending[i:]
                return
        self.gap = False

    def snapshot(self, t: int, s: _Snap) -> None:
        self.saw_book = True
        if self.book is None:
            self.book = SimBook()
            self.book.apply(s.bids, s.asks)
            self.start, self.t0, self.last, self.fresh = s, t, s.seq, True
            # trades, BBOs and tickers received before the tape's start are not replayed
            self.events.clear()
            self.first_trade_id = None
            self.last_bbo = None
            self._drain(t)
            return
        if s.seq < self.last or (s.seq == self.last and not self.gap):
            return  # older than the chain, or at its position with nothing to repair
        # a newer snapshot moves the tape to it, gap or not: after a reconnect (the recorder's socket was reset)
        # the new socket's snapshot covers updates the old socket never delivered (OKX snapshots carry no link)
        target = SimBook()
        target.apply(s.bids, s.asks)
        bids, asks = self.book.diff_to(target)
        if bids or asks or s.seq > self.last:  # (a snapshot at our own sequence and book changes nothing)
            self.events.append((t, "depth", (max(1, s.seq - self.last), bids, asks)))
            self.jumps += 1
        self.book, self.last, self.fresh = target, s.seq, True
        self._drain(t)

    def diff(self, t: int, d: _Diff) -> None:
        self.saw_book = True
        if self.book is None:
            self.buffer.append((t, d))
            return
        if self.gap:
            self.buffer.append((t, d))
            if self._connects(d):
                self._drain(t)  # the missing update arrived on another connection
            return
        if not self._offer(t, d):
            self.gap = True
            self.buffer = [(t, d)]

    # ---- other streams ----
    def _started(self) -> bool:
        return self.book is not None or not self.saw_book

    def trade(self, t: int, payload: tuple[str, int, str, str, bool]) -> None:
        kind, tid, price, qty, taker_sold = payload
        if not self._started():
            return
        if self.trade_kind is None:
            self.trade_kind = kind
        elif kind != self.trade_kind:
            return  # a symbol recorded with both @trade and @aggTrade: their ids differ, keep the first kind
        if self.last_trade_id is not None and tid <= self.last_trade_id:
            return
        if self.first_trade_id is None:
            self.first_trade_id = tid
        self.last_trade_id = tid
        self.events.append((t, "trade", (price, qty, taker_sold)))

    def bbo(self, t: int, payload: tuple[str, str, str, str, int | None]) -> None:
        """A best bid/offer; Binance's ``u`` is kept as its offset from the book's sequence at that point."""
        if self._started() and payload != self.last_bbo:
            self.last_bbo = payload
            b, bq, a, aq, u = payload
            self.events.append((t, "bbo", (b, bq, a, aq, 0 if u is None else u - self.last)))

    def ticker(self, t: int, fields: dict[str, str]) -> None:
        if self._started() and fields != self.last_ticker:
            self.last_ticker = fields
            self.events.append((t, "ticker", fields))

    def build(self) -> Tape | str:
        """The tape, or why there is none."""
        if self.saw_book and self.start is None:
            return (
                f"{self.exchange} {self.symbol}: the capture has book updates but no book snapshot to start from "
                "(no REST depth snapshot / OKX books snapshot was recorded)"
            )
        unrepaired = 1 if self.gap else 0
        if unrepaired:
            log.warning(
                "%s %s: the recorded book chain breaks at sequence %d and no later snapshot repairs it: "
                "%d book updates after it are not replayed",
                self.exchange,
                self.symbol,
                self.last,
                len(self.buffer),
            )
        if not self.events and self.start is None:
            return f"{self.exchange} {self.symbol}: nothing to replay"
        t0 = self.t0 if self.start is not None else self.events[0][0]
        out: list[tuple[float, str, Any]] = []
        prev = t0
        for t, kind, payload in self.events:
            t = max(t, prev)
            out.append(((t - prev) / 1e9, kind, payload))
            prev = t
        start = self.start or _Snap(1_000_000, [], [])
        return Tape(
            exchange=self.exchange,
            symbol=self.symbol,
            bids=start.bids,
            asks=start.asks,
            start_seq=start.seq,
            first_trade_id=self.first_trade_id if self.first_trade_id is not None else 1,
            events=out,
            duration_s=(prev - t0) / 1e9,
            jumps=self.jumps,
            unrepaired_gaps=unrepaired,
            has_book=self.start is not None,
        )


# ------------------------------------------------------------------------------------------------ sources


class CaptureSource(_LoopingReplay):
    """Loops one :class:`Tape` (see the module doc). ``loops`` counts completed passes.

    Book ids start at the tape's start sequence and each delta advances them by its recorded span; a Binance
    bookTicker keeps its recorded id's offset from the book sequence (its ``u`` lies inside the next delta's
    ``[U, u]``, and that delta is stretched to cover it if needed); trade ids start at the first recorded one;
    both keep growing across loops.
    """

    recorded_strings = True
    """Prices and sizes are the recorded strings (a server may send them as they are)."""

    def __init__(self, tape: Tape) -> None:
        super().__init__(tape.symbol, tape.events)
        self.tape = tape
        self._start_from(tape.bids, tape.asks)
        self.last_update_id = tape.start_seq
        self.last_trade_id = tape.first_trade_id - 1
        self._bbo_ids = 0
        self.ticker = next((dict(p) for _, k, p in tape.events if k == "ticker"), None)
        trade = next((p for _, k, p in tape.events if k == "trade"), None)
        best = self.book.top(1)[0]
        self.last_price = trade[0] if trade else (best[0][0] if best else "0")

    def _pop(self, ts_ms: int) -> Event:
        event = self._next_event()
        if event is None:  # the seam delta also covers the BBO ids handed out since the last delta
            seam = self._seam(ts_ms, max(1, self._bbo_ids))
            self._bbo_ids = 0
            return seam
        kind, payload = event
        if kind == "depth":
            span, bids, asks = payload
            self.book.apply(bids, asks)
            first, last, prev = self._next_ids(max(span, self._bbo_ids))
            self._bbo_ids = 0
            return Depth(first, last, prev, bids, asks, ts_ms)
        if kind == "trade":
            price, qty, taker_sold = payload
            self.last_trade_id += 1
            return Trade(self.last_trade_id, price, qty, taker_sold, ts_ms)
        if kind == "bbo":
            b, bq, a, aq, offset = payload
            self._bbo_ids = max(self._bbo_ids, offset)  # the next delta ends at or past this BBO's id
            return Bbo(self.last_update_id + offset, b, bq, a, aq, ts_ms)
        return Ticker(dict(payload), ts_ms)


@dataclass
class Capture:
    """A loaded capture file.

    Attributes:
        path: the file.
        header: its header line.
        stats: what was read.
        tapes: usable tapes by ``(exchange, exchange symbol)``.
        problems: ``(exchange, exchange symbol)`` -> why that symbol cannot be replayed.
    """

    path: Path
    header: dict[str, Any]
    stats: CaptureStats
    tapes: dict[tuple[str, str], Tape] = field(default_factory=dict)
    problems: dict[tuple[str, str], str] = field(default_factory=dict)

    @property
    def exchanges(self) -> tuple[str, ...]:
        """Exchange ids with at least one recorded symbol (usable or not), sorted."""
        return tuple(sorted({ex for ex, _ in (*self.tapes, *self.problems)}))

    def symbols(self, exchange: str) -> tuple[str, ...]:
        """Exchange symbols recorded for ``exchange`` (usable or not), sorted."""
        return tuple(sorted({s for ex, s in (*self.tapes, *self.problems) if ex == exchange}))

    def sources(self, exchange: str, *, strict: bool = True) -> dict[str, Callable[[], MarketSource]]:
        """``exchange symbol -> factory`` of a fresh :class:`CaptureSource` for every replayable symbol of
        ``exchange``. Factories never fail (tapes are built and checked by :func:`load_capture`).

        Args:
            strict: raise when a recorded symbol of ``exchange`` cannot be replayed (else leave it out).

        Raises:
            CaptureError: ``strict`` and a symbol cannot be replayed (the message names each one and why), or
                the capture holds nothing of ``exchange`` (the message lists what it holds).
        """
        if exchange not in self.exchanges:
            raise CaptureError(
                f"{self.path}: the capture holds nothing of {exchange!r}; it holds: {', '.join(self.exchanges) or 'nothing'}"
            )
        bad = [why for (ex, _), why in sorted(self.problems.items()) if ex == exchange]
        if strict and bad:
            raise CaptureError(f"{self.path}: cannot replay: " + "; ".join(bad))
        return {
            sym: functools.partial(CaptureSource, tape)
            for (ex, sym), tape in sorted(self.tapes.items())
            if ex == exchange
        }


def load_capture(path: Path | str) -> Capture:
    """Read and check a capture file, building every symbol's tape now (see the module doc).

    Raises:
        CaptureError: the file is not a ``cryptolink-capture`` file (no or wrong header) or has an unsupported
            version.
        OSError: the file cannot be read.
    """
    path = Path(path)
    stats = CaptureStats()
    records: list[_Record] = []
    header: dict[str, Any] | None = None
    decoder = msgspec.json.Decoder(_Record)
    for n, raw in enumerate(_iter_lines(path, stats), start=1):
        stats.lines += 1
        if header is None:
            try:
                head = msgspec.json.decode(raw)
            except msgspec.DecodeError:
                head = None
            if not isinstance(head, dict) or head.get("format") != CAPTURE_FORMAT:
                raise CaptureError(
                    f"{path}: not a cryptolink capture (line 1 is not a {CAPTURE_FORMAT!r} header)"
                )
            if head.get("version") not in SUPPORTED_VERSIONS:
                raise CaptureError(
                    f"{path}: capture version {head.get('version')!r} is not supported (supported: {SUPPORTED_VERSIONS})"
                )
            header = head
            continue
        if not raw.strip():
            continue
        try:
            rec = decoder.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            stats.corrupt_lines += 1
            if stats.corrupt_lines <= _LOGGED_CORRUPT or stats.corrupt_lines % 1000 == 0:
                log.warning("%s line %d: corrupt, skipped (%d so far): %s", path, n, stats.corrupt_lines, exc)
            continue
        records.append(rec)
    if header is None:
        raise CaptureError(f"{path}: empty file, not a cryptolink capture")
    if stats.truncated:
        log.warning(
            "%s: the compressed stream ends early (a cut recording); %d lines read", path, stats.lines
        )
    capture = Capture(path, header, stats)
    _build_tapes(capture, records)
    return capture


def _payload(text: str, binary: bool) -> str | bytes:
    return base64.b64decode(text) if binary else text


def _build_tapes(capture: Capture, records: list[_Record]) -> None:
    stats = capture.stats
    order = sorted(range(len(records)), key=lambda i: records[i].t)
    builders: dict[tuple[str, str], _TapeBuilder] = {}
    dec = msgspec.json.Decoder()

    def builder(ex: str, sym: str) -> _TapeBuilder:
        b = builders.get((ex, sym))
        if b is None:
            b = builders[(ex, sym)] = _TapeBuilder(ex, sym)
        return b

    for i in order:
        rec = records[i]
        items: list[tuple[str, str, Any]] = []
        try:
            if rec.k == "ws":
                stats.frames += 1
                if rec.f is None or rec.ex not in REPLAYABLE_EXCHANGES:
                    stats.ignored_frames += 1
                    continue
                text = _payload(rec.f, rec.b)
                if text in ("pong", b"pong"):
                    stats.ignored_frames += 1
                    continue
                msg = dec.decode(text)
                items = _okx_frame(msg) if rec.ex == "okx" else _binance_frame(msg)
            elif rec.k == "rest":
                stats.rest_bodies += 1
                snap = None
                if (
                    rec.what == "snapshot"
                    and rec.body is not None
                    and rec.xs
                    and rec.ex.startswith("binance")
                ):
                    snap = _binance_snapshot(dec.decode(_payload(rec.body, rec.b)))
                if snap is None or rec.xs is None:
                    stats.ignored_frames += 1
                    continue
                items = [(rec.xs, "snapshot", snap)]
            else:
                continue
        except (msgspec.DecodeError, KeyError, TypeError, ValueError, IndexError) as exc:
            stats.bad_frames += 1
            if stats.bad_frames <= _LOGGED_CORRUPT:
                log.warning("%s: record at t=%d (%s %s) skipped: %r", capture.path, rec.t, rec.ex, rec.k, exc)
            continue
        if not items:
            stats.ignored_frames += 1
            continue
        for sym, kind, payload in items:
            b = builder(rec.ex, sym)
            if kind == "snapshot":
                b.snapshot(rec.t, payload)
            elif kind == "depth":
                b.diff(rec.t, payload)
            elif kind == "trade":
                b.trade(rec.t, payload)
            elif kind == "bbo":
                b.bbo(rec.t, payload)
            else:
                b.ticker(rec.t, payload)
    for key, b in builders.items():
        tape = b.build()
        if isinstance(tape, Tape):
            capture.tapes[key] = tape
        else:
            capture.problems[key] = tape
