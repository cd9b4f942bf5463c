"""Per-symbol stream state of a feed, sans-I/O: duplicates, id order, interruptions (gaps) and the holding of
live trades while a backfill runs.

:class:`TradeStream` (one symbol's trades). Rules, in order, for each live trade with integer id ``seq``:

1. While a backfill runs, live trades are held (bounded by ``max_held``) and delivered after the backfilled
   ones, so consumers see ids in order. If the hold overflows, the backfill is abandoned: the gap is published
   as not recovered and the held trades follow at once (nothing is dropped).
2. ``seq <= last`` (the highest id delivered): a **duplicate** only when it is identical (id, price, amount,
   side, exchange time) to one of the last ``recent`` trades delivered, or (during a make-before-break
   overlap, when two sockets deliver the same stream) to any id delivered since the overlap began: dropped and
   counted. Otherwise, during an overlap it is a late trade (the other socket was behind): delivered and
   counted ``out_of_order``; outside an overlap the exchange restarted its ids (an **id regression**, e.g.
   after a server restart): counted, reported, and the stream continues from the new ids.
3. After an interruption (:meth:`TradeStream.interrupted`: disconnect, stall) or, with contiguous ids, a
   skipped id, the first new trade closes the interval: with a backfill available, the missing trades (ids
   strictly between the last delivered and this one) are fetched first (``StartBackfill``); otherwise a
   :class:`~cryptolink.models.Gap` is published, then the trade.

:class:`TickerFilter` (one symbol's BBO): an identical resend of a recent ticker is a duplicate; a ticker
with an older sequence (exchange time when it has none) is, during an overlap, stale and dropped (the newer
BBO is already out), and outside one an id regression: delivered, counted, and the stream continues.

:class:`IntervalTracker` (ticker and book streams): remembers the last event time and an open interruption,
and turns them into a :class:`~cryptolink.models.Gap` when data resumes.

Every drop is counted: nothing is lost silently.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from cryptolink.exchanges.base import BackfillCursor
from cryptolink.models import Channel, Gap, GapCause, Ticker, Trade

__all__ = [
    "Interruption",
    "IntervalTracker",
    "StartBackfill",
    "TickerFilter",
    "TradeStream",
]


@dataclass(frozen=True, slots=True)
class Interruption:
    """An open interval: data stopped at ``from_ms`` (exchange time of the last event) because of ``cause``."""

    cause: GapCause
    detail: str
    from_ms: int | None


@dataclass(frozen=True, slots=True)
class StartBackfill:
    """Fetch the trades strictly between ``cursor.after_id`` and ``cursor.before_id``, then call
    :meth:`TradeStream.backfill_done`."""

    symbol: str
    cursor: BackfillCursor


@dataclass(frozen=True, slots=True)
class IdRegression:
    """The exchange restarted the symbol's trade ids: ``after`` arrived after ``before`` was delivered."""

    symbol: str
    before: int
    after: int


TradeAction = Trade | Gap | StartBackfill | IdRegression


def _same(a: Trade, b: Trade) -> bool:
    return (
        a.sequence == b.sequence
        and a.price == b.price
        and a.amount == b.amount
        and a.side == b.side
        and a.timestamp_ms == b.timestamp_ms
    )


def _ms(t: Trade | Ticker) -> int:
    return t.timestamp_ms if t.timestamp_ms is not None else t.receipt_ns // 1_000_000


class TradeStream:
    """One symbol's trade stream (see the module docstring).

    Args:
        symbol: unified symbol.
        contiguous: ids increase by exactly 1 (a skipped id is a missing trade).
        can_backfill: the adapter can fetch missing trades over REST.
        recent: trades remembered for duplicate detection.
        max_held: live trades held at most while a backfill runs.
    """

    def __init__(
        self, symbol: str, *, contiguous: bool, can_backfill: bool, recent: int = 128, max_held: int = 50_000
    ) -> None:
        self.symbol = symbol
        self.contiguous = contiguous
        self.can_backfill = can_backfill
        self.max_held = max_held
        self._recent: deque[Trade] = deque(maxlen=recent)
        self.last_id: int | None = None
        self.last_ms: int | None = None
        self._last: Trade | None = None
        self._overlap_ids: set[int] = set()
        self._open: Interruption | None = None
        self._backfill: tuple[BackfillCursor, Interruption | None, Trade] | None = None
        self._held: list[Trade] = []
        self.duplicates = 0
        self.out_of_order = 0
        self.regressions = 0
        self.gaps = 0
        self.backfilled = 0
        self.backfills = 0
        self.backfills_incomplete = 0

    @property
    def backfilling(self) -> bool:
        """A backfill is running (live trades are being held)."""
        return self._backfill is not None

    @property
    def held(self) -> int:
        """Live trades held now."""
        return len(self._held)

    def interrupted(self, cause: GapCause, detail: str) -> None:
        """Data stopped (disconnect, stall). Opens an interval unless one is open or nothing flowed yet."""
        if self._open is None and self.last_ms is not None:
            self._open = Interruption(cause, detail, self.last_ms)

    def on_trade(self, t: Trade, overlap: bool = False) -> list[TradeAction]:
        """Process one live trade (``overlap``: two sockets of its connection deliver the stream now, a
        make-before-break rotation); return what to publish (trades, gaps) or to start, in order."""
        if overlap:
            seq = t.sequence
            if seq is not None and len(self._overlap_ids) < 1_000_000:
                if seq in self._overlap_ids:
                    self.duplicates += 1
                    return []
                self._overlap_ids.add(seq)
        elif self._overlap_ids:
            self._overlap_ids.clear()
        if self._backfill is not None:
            if len(self._held) >= self.max_held:
                return self._abandon("live trades arrived faster than the backfill could fetch", t)
            self._held.append(t)
            return []
        return self._live(t, overlap)

    def backfill_done(self, fetched: list[Trade], complete: bool, detail: str = "") -> list[TradeAction]:
        """The backfill finished: ``fetched`` are the trades it got (any order), ``complete`` whether it reached
        the start of the interval. Returns the gap, the backfilled trades in id order, then the held live
        trades."""
        if self._backfill is None:
            return []
        cursor, opened, first = self._backfill
        self._backfill = None
        lo, hi = cursor.after_id, cursor.before_id
        seen: set[int] = set()
        keep: list[Trade] = []
        for t in sorted(fetched, key=lambda x: x.sequence or 0):
            seq = t.sequence
            if seq is None or not lo < seq < hi or seq in seen:
                continue
            seen.add(seq)
            keep.append(t)
        if self.contiguous:
            complete = complete and len(keep) == hi - lo - 1
        out: list[TradeAction] = [self._gap(opened, first, cursor, complete, len(keep), detail)]
        self.backfills += 1
        if not complete:
            self.backfills_incomplete += 1
        for t in keep:
            self.backfilled += 1
            self._deliver(t)
            out.append(t)
        self._deliver(first)
        out.append(first)
        held, self._held = self._held, []
        for t in held:
            out.extend(self.on_trade(t))  # a new gap among them starts the next backfill and holds the rest
        return out

    def cancel_backfill(self, detail: str) -> list[TradeAction]:
        """Give up a running backfill (feed stopping, subscription removed): gap not recovered, held trades
        delivered."""
        if self._backfill is None:
            return []
        return self.backfill_done([], False, detail)

    def stop(self, now_ms: int, detail: str) -> Gap | None:
        """The stream ends with an interval still open: its gap, with ``to_ms`` ``None``."""
        opened = self._open
        self._open = None
        last = self._last
        if opened is None or last is None:
            return None
        self.gaps += 1
        return Gap(
            exchange=last.exchange,
            symbol=self.symbol,
            exchange_symbol=last.exchange_symbol,
            stream=Channel.TRADES,
            cause=opened.cause,
            from_ms=opened.from_ms,
            to_ms=None,
            receipt_ns=now_ms * 1_000_000,
            feed=last.feed,
            detail=f"{opened.detail}; {detail}" if opened.detail else detail,
        )

    # internals --------------------------------------------------------------------------------------------
    def _abandon(self, detail: str, t: Trade) -> list[TradeAction]:
        out = self.backfill_done([], False, detail)
        out.extend(self._live(t, False))
        return out

    def _deliver(self, t: Trade) -> None:
        seq = t.sequence
        if seq is not None and (self.last_id is None or seq > self.last_id):
            self.last_id = seq
        self.last_ms = _ms(t)
        self._last = t
        self._recent.append(t)

    def _live(self, t: Trade, overlap: bool) -> list[TradeAction]:
        seq = t.sequence
        last = self.last_id
        if seq is None:
            out: list[TradeAction] = []
            if self._open is not None:
                out.append(self._gap(self._open, t, None, False, 0, ""))
                self._open = None
            self._deliver(t)
            out.append(t)
            return out
        if last is not None and seq <= last:
            for r in self._recent:
                if r.sequence == seq and _same(r, t):
                    self.duplicates += 1
                    return []
            if overlap:
                self.out_of_order += 1
                self._deliver(t)
                return [t]
            # the exchange restarted its ids (or reused one with other content): continue from the new ids
            self.regressions += 1
            self.last_id = None
            self._recent.clear()
            was = self._open
            if was is not None:
                self._open = Interruption(
                    was.cause, f"{was.detail}; trade ids restarted ({seq} after {last})", was.from_ms
                )
            return [IdRegression(self.symbol, last, seq), *self._live(t, overlap)]
        opened = self._open
        missing = self.contiguous and last is not None and seq > last + 1
        if opened is None and not missing:
            self._deliver(t)
            return [t]
        self._open = None
        if self.can_backfill and last is not None:
            cursor = BackfillCursor(after_id=last, before_id=seq)
            self._backfill = (cursor, opened, t)
            return [StartBackfill(self.symbol, cursor)]
        out = [self._gap(opened, t, BackfillCursor(last, seq) if last is not None else None, False, 0, "")]
        self._deliver(t)
        out.append(t)
        return out

    def _gap(
        self,
        opened: Interruption | None,
        first: Trade,
        cursor: BackfillCursor | None,
        recovered: bool,
        backfilled: int,
        detail: str,
    ) -> Gap:
        self.gaps += 1
        cause = opened.cause if opened is not None else GapCause.MISSING_IDS
        from_ms = opened.from_ms if opened is not None else self.last_ms
        first_missing = last_missing = None
        if self.contiguous and cursor is not None and cursor.before_id > cursor.after_id + 1:
            first_missing, last_missing = cursor.after_id + 1, cursor.before_id - 1
        parts = [p for p in ((opened.detail if opened else ""), detail) if p]
        return Gap(
            exchange=first.exchange,
            symbol=self.symbol,
            exchange_symbol=first.exchange_symbol,
            stream=Channel.TRADES,
            cause=cause,
            from_ms=from_ms,
            to_ms=_ms(first),
            receipt_ns=first.receipt_ns,
            feed=first.feed,
            first_missing_id=first_missing,
            last_missing_id=last_missing,
            recovered=recovered,
            backfilled=backfilled,
            detail="; ".join(parts),
        )


class TickerFilter:
    """Duplicate and stale tickers of one symbol (see the module docstring).

    Args:
        recent: tickers remembered.
    """

    __slots__ = ("_recent", "duplicates", "regressions", "stale")

    def __init__(self, recent: int = 16) -> None:
        self._recent: deque[Ticker] = deque(maxlen=recent)
        self.duplicates = 0
        self.stale = 0
        self.regressions = 0

    @staticmethod
    def _key(t: Ticker) -> int | None:
        return t.sequence if t.sequence is not None else t.timestamp_ms

    def accept(self, t: Ticker, overlap: bool = False) -> bool:
        """Whether to deliver ``t`` (and remember it); ``overlap``: two sockets deliver the stream now."""
        recent = self._recent
        if not recent:
            recent.append(t)
            return True
        last = recent[-1]
        key, last_key = self._key(t), self._key(last)
        if key is None or last_key is None or key > last_key:
            recent.append(t)
            return True
        for r in recent:
            if (
                self._key(r) == key
                and r.bid_price == t.bid_price
                and r.bid_size == t.bid_size
                and r.ask_price == t.ask_price
                and r.ask_size == t.ask_size
                and r.last_price == t.last_price
            ):
                self.duplicates += 1
                return False
        if key == last_key:  # same sequence, new sizes: a real update
            recent.append(t)
            return True
        if overlap:
            self.stale += 1
            return False
        self.regressions += 1
        recent.clear()
        recent.append(t)
        return True


class IntervalTracker:
    """Last event time and open interruption of one ticker or book stream."""

    __slots__ = ("_open", "gaps", "last_ms")

    def __init__(self) -> None:
        self.last_ms: int | None = None
        self._open: Interruption | None = None
        self.gaps = 0

    @property
    def open(self) -> Interruption | None:
        return self._open

    def interrupted(self, cause: GapCause, detail: str) -> None:
        """Data stopped; opens an interval unless one is open or nothing flowed yet."""
        if self._open is None and self.last_ms is not None:
            self._open = Interruption(cause, detail, self.last_ms)

    def on_data(self, ts_ms: int) -> Interruption | None:
        """Data at exchange time ``ts_ms``: returns the interval this closes, if one was open."""
        self.last_ms = ts_ms
        opened = self._open
        if opened is not None:
            self._open = None
            self.gaps += 1
        return opened

    def take_open(self) -> Interruption | None:
        """Close and return the open interval (the stream stops)."""
        opened, self._open = self._open, None
        if opened is not None:
            self.gaps += 1
        return opened
