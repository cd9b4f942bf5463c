"""Rebuilding L2 books and checking trades from the events of the cryptolink stream (sans-I/O).

Feed every event in stream order to :meth:`BookRebuilder.feed`; it answers with a :class:`Verdict` and keeps:

- one :class:`RebuiltBook` per ``(exchange, symbol)``, maintained by the sequence rule below;
- a :class:`TradeChecker` for trades (duplicates by trade id, missing ids where ids are contiguous);
- duplicate checks for tickers and gaps (by their ``Nats-Msg-Id``, :func:`cryptolink.sinks.nats_subjects.message_id`);
- the counters of :class:`ConsumerStats`.

**The book rule** (:class:`cryptolink.models.BookUpdate`). Several publishers may publish the same book; JetStream
keeps the first copy of each message id, so the stream holds one copy of each delta (id: its sequence) and each
snapshot (id: ``s`` and its sequence), but snapshots and deltas of different publishers interleave, and a delta's
``prev_sequence`` is the sequence of *its publisher's* previous emitted update. Holding a book at sequence ``q``:

- snapshot: replaces the book, which becomes live at its sequence; except while live with ``sequence <= q``: a
  stale snapshot (another publisher lagging), ignored (:attr:`Verdict.STALE`). A snapshot marked
  ``sequence_reset`` (its publisher's book went back: the exchange restarted its update ids) replaces the book
  whatever its sequence. (If two publishers both cross such a restart and one lags, its late reset snapshot takes
  the reader back and the next delta then shows a gap, healed at the next snapshot: restarts are rare;)
- delta ``(prev p, sequence s)`` on a live book: applied when ``p <= q < s`` (sizes are absolute, so an overlap
  is safe); ``q >= s``: old or duplicate, skipped; ``q < p``: an update was missed — the book is cleared and not
  live (:attr:`Verdict.GAP`) until the next snapshot; deltas meanwhile are skipped (:attr:`Verdict.WAITING`);
  ``s < p`` (OKX's ids going back after a maintenance, ``seqId < prevSeqId``,
  https://www.okx.com/docs-v5/en/#order-book-trading-market-data-ws-order-book-channel): applied when
  ``p <= q``, and the chain continues from ``s``;
- a delta without ``prev_sequence`` (recordings without sequence information), with sequence 0, or on a book held
  at sequence 0 is applied unchecked (sequence 0 means "no sequence information").

If every publisher starts its books with a snapshot (the sink publishes one after every (re)sync) and the stream
is read from its start, this rule never reports a gap that is not one, and a delta missing from the stream is
reported at the first later delta (unless a snapshot past it arrives first, which heals the book).

**Trades.** Duplicates are found by trade id among the last ``recent`` ids of each symbol. Missing ids are found
only where ids are contiguous: by default the Binance exchanges (``binance`` spot ids ``t``; ``binanceusdm`` and
``binancecoinm`` aggregate ids ``a``), the same set whose adapters declare ``trade_ids_contiguous``. Binance does
not state contiguity on its pages
(https://developers.binance.com/docs/binance-spot-api-docs/web-socket-streams#trade-streams,
https://developers.binance.com/docs/derivatives/usds-margined-futures/websocket-market-streams/Aggregate-Trade-Streams;
see docs/protocols/binance.md sections 1.5 and 2.5): it is the project's rule, so a jump is a *possible* loss.
OKX ids are not contiguous (a message aggregates ``count`` fills,
https://www.okx.com/docs-v5/en/#order-book-trading-market-data-ws-trades-channel); Bybit, Bitget, Gate and HTX
do not document contiguity (docs/protocols/): no gap detection for them. A trade older than the newest one that
was reported missing fills the gap (:attr:`Verdict.LATE`), so two publishers delivering out of order do
not leave a false gap in ``trade_ids_missing``.

Memory is bounded per key (``recent`` ids per symbol, ``max_open_ranges`` missing ranges per symbol,
``recent_ids`` ticker/gap ids per symbol); the number of keys is the number of (exchange, symbol) pairs the stream
carries. A book holds the levels its publisher sends (the publisher bounds its depth).

Nothing is dropped silently: every skipped event is counted in :class:`ConsumerStats` and missed updates, missing
trade ids and skipped deltas are logged at WARNING, at most once per ``log_interval_s`` per kind (with the totals).
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from cryptolink.clock import Clock, SystemClock
from cryptolink.models import GAPS_CHANNEL, BookLevel, BookUpdate, Channel, Gap, GapCause, Ticker, Trade
from cryptolink.sinks.nats_subjects import message_id

__all__ = [
    "DEFAULT_CONTIGUOUS",
    "BookRebuilder",
    "ConsumerStats",
    "RebuiltBook",
    "TradeChecker",
    "TradeStats",
    "Verdict",
]

log = logging.getLogger(__name__)

Event = Trade | Ticker | BookUpdate | Gap

DEFAULT_CONTIGUOUS: frozenset[str] = frozenset({"binance", "binanceusdm", "binancecoinm"})
"""Exchanges whose trade ids (``Trade.sequence``) are taken as contiguous per symbol (see the module docstring)."""

_CHANNELS = (Channel.TRADES.value, Channel.TICKER.value, Channel.BOOK.value, GAPS_CHANNEL)


class Verdict(StrEnum):
    """What :meth:`BookRebuilder.feed` (and :meth:`TradeChecker.feed`) made of one event."""

    APPLIED = "applied"
    """A delta applied to a live book; a new trade, ticker or gap."""
    SNAPSHOT = "snapshot"
    """A snapshot replaced the book, which is live now."""
    DUPLICATE = "duplicate"
    """Seen before (same trade id, message id, or a delta at or below the book's sequence): skipped."""
    STALE = "stale"
    """A snapshot at or below the sequence of a live book: ignored."""
    GAP = "gap"
    """Book: the delta shows a missed update; the book is cleared and not live until the next snapshot (the delta
    is not applied). Trades: a new trade after missing ids (the trade is accepted)."""
    WAITING = "waiting"
    """A delta for a book that is not live (before its first snapshot or after a gap): skipped."""
    LATE = "late"
    """A new trade older than the newest one seen (it may fill reported missing ids): accepted."""
    OLD = "old"
    """A trade older than the duplicate memory: cannot tell whether it is a duplicate; accepted, counted."""


# ------------------------------------------------------------------------------------------------ books


class RebuiltBook:
    """One rebuilt L2 book.

    Attributes:
        exchange / symbol: the book's exchange id and unified symbol.
        bids / asks: ``{price: size}`` (exact Decimals, unsorted; empty while not live).
        sequence: sequence of the last applied snapshot or delta (``0``: none or no sequence information).
        live: a snapshot was applied and no update was missed since.
        timestamp_ms: exchange time of the last applied update (``None`` where the exchange sends none).
        receipt_ns: the publisher's receipt time of the last applied update (epoch ns).
    """

    __slots__ = (
        "asks",
        "bids",
        "exchange",
        "live",
        "receipt_ns",
        "sequence",
        "symbol",
        "timestamp_ms",
    )

    def __init__(self, exchange: str, symbol: str) -> None:
        self.exchange = exchange
        self.symbol = symbol
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}
        self.sequence = 0
        self.live = False
        self.timestamp_ms: int | None = None
        self.receipt_ns = 0

    def best_bid(self) -> BookLevel | None:
        """Highest bid ``(price, size)``, or ``None`` (O(levels))."""
        if not self.bids:
            return None
        price = max(self.bids)
        return (price, self.bids[price])

    def best_ask(self) -> BookLevel | None:
        """Lowest ask ``(price, size)``, or ``None`` (O(levels))."""
        if not self.asks:
            return None
        price = min(self.asks)
        return (price, self.asks[price])

    def top(self, n: int) -> tuple[tuple[BookLevel, ...], tuple[BookLevel, ...]]:
        """The best ``n`` levels per side, best first: ``(bids, asks)`` (O(levels log n))."""
        bids = heapq.nlargest(n, self.bids)
        asks = heapq.nsmallest(n, self.asks)
        return tuple((p, self.bids[p]) for p in bids), tuple((p, self.asks[p]) for p in asks)

    def __repr__(self) -> str:
        return (
            f"RebuiltBook({self.exchange!r}, {self.symbol!r}, live={self.live}, seq={self.sequence}, "
            f"bid={self.best_bid()}, ask={self.best_ask()}, depth=({len(self.bids)}, {len(self.asks)}))"
        )


def _apply(side: dict[Decimal, Decimal], levels: tuple[BookLevel, ...]) -> None:
    for price, size in levels:
        if size:
            side[price] = size
        else:
            side.pop(price, None)


# ----------------------------------------------------------------------------------------------- trades


@dataclass(frozen=True, slots=True)
class TradeStats:
    """Counters of a :class:`TradeChecker`.

    Attributes:
        trades: trades fed.
        duplicates: trades whose id was among the remembered ones (skipped).
        gaps: jumps in contiguous ids (each a range of missing ids).
        ids_missing: ids reported missing and not (yet) delivered late.
        late: new trades older than the newest one (each may fill a missing id).
        old: trades older than the duplicate memory (accepted, undecidable).
    """

    trades: int
    duplicates: int
    gaps: int
    ids_missing: int
    late: int
    old: int


class _TradeState:
    __slots__ = ("evicted_max", "ids", "last", "missing")

    def __init__(self) -> None:
        self.ids: dict[str, int | None] = {}  # trade id -> sequence, in arrival order
        self.last: int | None = None  # highest sequence seen
        self.evicted_max: int | None = None  # highest sequence no longer remembered
        self.missing: list[list[int]] = []  # open [first, last] ranges of missing ids, ascending


class TradeChecker:
    """Finds duplicate and missing trades per ``(exchange, symbol)``.

    Args:
        recent: trade ids remembered per symbol for duplicate detection (>= 1; default 10 000).
        max_open_ranges: missing-id ranges kept per symbol for late arrivals to fill (>= 1; default 64); when
            more open, the oldest range is forgotten (its ids stay counted as missing).
        contiguous: exchanges whose ids are contiguous (default :data:`DEFAULT_CONTIGUOUS`), or a predicate on
            the trade. Only trades with an integer ``sequence`` are checked for missing ids.
        clock / log_interval_s: rate limit of the WARNING logged on missing ids (seconds, >= 0).

    Raises:
        ValueError: ``recent``, ``max_open_ranges`` or ``log_interval_s`` out of range.
    """

    def __init__(
        self,
        *,
        recent: int = 10_000,
        max_open_ranges: int = 64,
        contiguous: Collection[str] | Callable[[Trade], bool] = DEFAULT_CONTIGUOUS,
        clock: Clock | None = None,
        log_interval_s: float = 10.0,
    ) -> None:
        if recent < 1:
            raise ValueError(f"recent must be >= 1, got {recent}")
        if max_open_ranges < 1:
            raise ValueError(f"max_open_ranges must be >= 1, got {max_open_ranges}")
        if log_interval_s < 0:
            raise ValueError(f"log_interval_s must be >= 0, got {log_interval_s}")
        self.recent = recent
        self.max_open_ranges = max_open_ranges
        if callable(contiguous):
            self._contiguous: Callable[[Trade], bool] = contiguous
        else:
            names = frozenset(contiguous)
            self._contiguous = lambda t: t.exchange in names
        self._limiter = _Limiter(clock or SystemClock(), log_interval_s)
        self._states: dict[tuple[str, str], _TradeState] = {}
        self._trades = 0
        self._duplicates = 0
        self._gaps = 0
        self._missing = 0
        self._late = 0
        self._old = 0

    def feed(self, trade: Trade) -> Verdict:
        """Check one trade: :attr:`Verdict.DUPLICATE` (skip it), :attr:`Verdict.APPLIED` (new, in order),
        :attr:`Verdict.GAP` (new, ids missing before it), :attr:`Verdict.LATE` or :attr:`Verdict.OLD`."""
        self._trades += 1
        key = (trade.exchange, trade.symbol)
        st = self._states.get(key)
        if st is None:
            st = self._states[key] = _TradeState()
        ids = st.ids
        if trade.trade_id in ids:
            self._duplicates += 1
            return Verdict.DUPLICATE
        seq = trade.sequence
        ids[trade.trade_id] = seq
        if len(ids) > self.recent:
            evicted = ids.pop(next(iter(ids)))
            if evicted is not None and (st.evicted_max is None or evicted > st.evicted_max):
                st.evicted_max = evicted
        if seq is None:
            return Verdict.APPLIED
        last = st.last
        if last is None or seq > last:
            st.last = seq
            if last is not None and seq > last + 1 and self._contiguous(trade):
                self._report_missing(trade, st, last + 1, seq - 1)
                return Verdict.GAP
            return Verdict.APPLIED
        # seq <= last, and this trade id is not remembered: late (maybe filling missing ids), or older than the
        # memory (it may be a forgotten duplicate)
        if not self._fill(st, seq) and st.evicted_max is not None and seq <= st.evicted_max:
            self._old += 1
            return Verdict.OLD
        self._late += 1
        return Verdict.LATE

    def _report_missing(self, trade: Trade, st: _TradeState, first: int, last: int) -> None:
        count = last - first + 1
        self._gaps += 1
        self._missing += count
        st.missing.append([first, last])
        if len(st.missing) > self.max_open_ranges:
            del st.missing[0]
        if self._limiter.ready("trades"):
            log.warning(
                "trades %s %s: ids %d..%d missing (%d); %d gaps, %d ids missing in all",
                trade.exchange,
                trade.symbol,
                first,
                last,
                count,
                self._gaps,
                self._missing,
            )

    def _fill(self, st: _TradeState, seq: int) -> bool:
        """Remove ``seq`` from the open missing ranges; ``True`` if it was there."""
        for i, rng in enumerate(st.missing):
            first, last = rng
            if first <= seq <= last:
                if first == last:
                    del st.missing[i]
                elif seq == first:
                    rng[0] = seq + 1
                elif seq == last:
                    rng[1] = seq - 1
                else:
                    rng[1] = seq - 1
                    st.missing.insert(i + 1, [seq + 1, last])
                    if len(st.missing) > self.max_open_ranges:
                        del st.missing[0]
                self._missing -= 1
                return True
        return False

    def missing_ranges(self, exchange: str, symbol: str) -> list[tuple[int, int]]:
        """The open ``(first, last)`` missing-id ranges of one symbol (inclusive, ascending)."""
        st = self._states.get((exchange, symbol))
        return [] if st is None else [(a, b) for a, b in st.missing]

    def stats(self) -> TradeStats:
        """The counters now."""
        return TradeStats(self._trades, self._duplicates, self._gaps, self._missing, self._late, self._old)


# ----------------------------------------------------------------------------------------------- stats


@dataclass(frozen=True, slots=True)
class ConsumerStats:
    """Counters of a :class:`BookRebuilder` at one instant.

    Attributes:
        events: events fed (every channel).
        duplicates: skipped as seen before, by channel (``trades``, ``ticker``, ``book``, ``gaps``).
        book_gaps: deltas that showed a missed update (the book went not live).
        trade_gaps / trade_ids_missing / trades_late / trades_old: see :class:`TradeStats`.
        stale_snapshots: snapshots ignored because a live book was already at or past them.
        snapshots_applied / deltas_applied: updates applied to books.
        deltas_skipped: deltas skipped because their book was not live (before its first snapshot or after a
            gap).
        books / books_live: books known, and live now.
        gap_events / publish_gaps: :class:`~cryptolink.models.Gap` events received (not duplicates), and those
            with cause ``publish`` (a publisher lost events).
        malformed: messages that did not decode (reported with :meth:`BookRebuilder.note_malformed`).
    """

    events: int
    duplicates: Mapping[str, int]
    book_gaps: int
    trade_gaps: int
    trade_ids_missing: int
    trades_late: int
    trades_old: int
    stale_snapshots: int
    snapshots_applied: int
    deltas_applied: int
    deltas_skipped: int
    books: int
    books_live: int
    gap_events: int
    publish_gaps: int
    malformed: int


class _Limiter:
    """At most one log line per ``interval_s`` per kind."""

    __slots__ = ("_clock", "_interval", "_last")

    def __init__(self, clock: Clock, interval_s: float) -> None:
        self._clock = clock
        self._interval = interval_s
        self._last: dict[str, float] = {}

    def ready(self, kind: str) -> bool:
        now = self._clock.monotonic()
        last = self._last.get(kind)
        if last is not None and now - last < self._interval:
            return False
        self._last[kind] = now
        return True


class _IdMemory:
    """The last ``size`` message ids of each key, for duplicate detection."""

    __slots__ = ("_ids", "_size")

    def __init__(self, size: int) -> None:
        self._size = size
        self._ids: dict[tuple[str, str], dict[str, None]] = {}

    def seen(self, key: tuple[str, str], ident: str) -> bool:
        """``True`` if ``ident`` was seen for ``key`` (within memory); else remember it."""
        ids = self._ids.get(key)
        if ids is None:
            ids = self._ids[key] = {}
        if ident in ids:
            return True
        ids[ident] = None
        if len(ids) > self._size:
            del ids[next(iter(ids))]
        return False


# ------------------------------------------------------------------------------------------- rebuilder


class BookRebuilder:
    """Keeps rebuilt books and checks every event of the stream (see the module docstring).

    Args:
        trades: the trade checker (default: ``TradeChecker()`` with the same clock).
        recent_ids: ticker and gap message ids remembered per symbol for duplicate detection (>= 1).
        clock: rate limit of the warnings (default: the system clock).
        log_interval_s: at most one WARNING per this many seconds per kind (missed book update, skipped
            deltas, missing trade ids), >= 0.

    Not thread-safe; feed it from one task. :meth:`feed` never raises for a well-typed event.

    Raises:
        ValueError: ``recent_ids`` or ``log_interval_s`` out of range.
    """

    def __init__(
        self,
        *,
        trades: TradeChecker | None = None,
        recent_ids: int = 1024,
        clock: Clock | None = None,
        log_interval_s: float = 10.0,
    ) -> None:
        if recent_ids < 1:
            raise ValueError(f"recent_ids must be >= 1, got {recent_ids}")
        if log_interval_s < 0:
            raise ValueError(f"log_interval_s must be >= 0, got {log_interval_s}")
        clock = clock or SystemClock()
        self.trades = trades or TradeChecker(clock=clock, log_interval_s=log_interval_s)
        self._limiter = _Limiter(clock, log_interval_s)
        self._books: dict[tuple[str, str], RebuiltBook] = {}
        self._ids = _IdMemory(recent_ids)
        self._events = 0
        self._dups = dict.fromkeys(_CHANNELS, 0)
        self._book_gaps = 0
        self._stale = 0
        self._snapshots = 0
        self._deltas = 0
        self._skipped = 0
        self._gap_events = 0
        self._publish_gaps = 0
        self._malformed = 0

    # ------------------------------------------------------------------------------------------ feeding
    def feed(self, event: Event) -> Verdict:
        """Take one event (in stream order) and say what was made of it (:class:`Verdict`)."""
        self._events += 1
        if isinstance(event, BookUpdate):
            return self._feed_book(event)
        if isinstance(event, Trade):
            verdict = self.trades.feed(event)
            if verdict is Verdict.DUPLICATE:
                self._dups[Channel.TRADES.value] += 1
            return verdict
        ident = message_id(event)
        channel = Channel.TICKER.value if isinstance(event, Ticker) else GAPS_CHANNEL
        if ident is not None and self._ids.seen((event.exchange, event.symbol), f"{channel}:{ident}"):
            self._dups[channel] += 1
            return Verdict.DUPLICATE
        if isinstance(event, Gap):
            self._gap_events += 1
            if event.cause == GapCause.PUBLISH:
                self._publish_gaps += 1
        return Verdict.APPLIED

    def _feed_book(self, u: BookUpdate) -> Verdict:
        key = (u.exchange, u.symbol)
        book = self._books.get(key)
        if book is None:
            book = self._books[key] = RebuiltBook(u.exchange, u.symbol)
        s = u.sequence
        if u.is_snapshot:
            if book.live and s and book.sequence and s <= book.sequence and not u.sequence_reset:
                self._stale += 1
                return Verdict.STALE
            self._adopt(book, u)
            return Verdict.SNAPSHOT
        if not book.live:
            self._skipped += 1
            if self._limiter.ready("skipped"):
                log.warning(
                    "book %s %s is not live: delta %d skipped until the next snapshot (%d skipped in all)",
                    u.exchange,
                    u.symbol,
                    s,
                    self._skipped,
                )
            return Verdict.WAITING
        p = u.prev_sequence
        q = book.sequence
        if p is not None and s and q:
            if s < p:  # the exchange's update ids went back (OKX after maintenance): the chain restarts at s
                if q < p:
                    return self._missed(book, u, q, p)
            elif q >= s:
                self._dups[Channel.BOOK.value] += 1
                return Verdict.DUPLICATE
            elif q < p:
                return self._missed(book, u, q, p)
        _apply(book.bids, u.bids)
        _apply(book.asks, u.asks)
        self._set(book, u)
        self._deltas += 1
        return Verdict.APPLIED

    def _adopt(self, book: RebuiltBook, snapshot: BookUpdate) -> None:
        book.bids = {p: z for p, z in snapshot.bids if z}
        book.asks = {p: z for p, z in snapshot.asks if z}
        self._set(book, snapshot)
        book.live = True
        self._snapshots += 1

    def _missed(self, book: RebuiltBook, u: BookUpdate, q: int, p: int) -> Verdict:
        book.live = False
        book.bids = {}
        book.asks = {}
        self._book_gaps += 1
        if self._limiter.ready("book-gap"):
            log.warning(
                "book %s %s missed updates: held at %d, next delta follows %d (sequence %d); "
                "not live until the next snapshot (%d missed in all)",
                u.exchange,
                u.symbol,
                q,
                p,
                u.sequence,
                self._book_gaps,
            )
        return Verdict.GAP

    @staticmethod
    def _set(book: RebuiltBook, u: BookUpdate) -> None:
        book.sequence = u.sequence
        book.timestamp_ms = u.timestamp_ms
        book.receipt_ns = u.receipt_ns

    def note_malformed(self, subject: str = "", reason: str = "") -> None:
        """Count one message that did not decode (wire it as a reader's ``on_malformed``); the reader logs
        it."""
        self._malformed += 1

    # ---------------------------------------------------------------------------------------------- views
    def book(self, exchange: str, symbol: str) -> RebuiltBook | None:
        """The book of ``(exchange, symbol)`` (live or not), or ``None`` if no update was seen for it."""
        return self._books.get((exchange, symbol))

    def books(self) -> dict[tuple[str, str], RebuiltBook]:
        """Every book by ``(exchange, symbol)`` (a new dict; the books themselves are live objects)."""
        return dict(self._books)

    def stats(self) -> ConsumerStats:
        """The counters now (O(books))."""
        ts = self.trades.stats()
        return ConsumerStats(
            events=self._events,
            duplicates=dict(self._dups),
            book_gaps=self._book_gaps,
            trade_gaps=ts.gaps,
            trade_ids_missing=ts.ids_missing,
            trades_late=ts.late,
            trades_old=ts.old,
            stale_snapshots=self._stale,
            snapshots_applied=self._snapshots,
            deltas_applied=self._deltas,
            deltas_skipped=self._skipped,
            books=len(self._books),
            books_live=sum(1 for b in self._books.values() if b.live),
            gap_events=self._gap_events,
            publish_gaps=self._publish_gaps,
            malformed=self._malformed,
        )
