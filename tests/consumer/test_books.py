"""Rebuilding books and checking trades from the stream (sans-I/O).

Properties: a dedup'd random interleaving of several publishers' streams (different snapshot points, periodic
snapshots, resyncs) rebuilds the reference book with no false gap; a delta missing from the stream is reported at
the first later delta (and healed silently when a snapshot past it comes first); trades of two lossy publishers
merged out of order end with no id reported missing. Plus the rule's edge cases, the counters and the
rate-limited warnings."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal
from typing import TypeVar

import msgspec
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cryptolink.clock import FakeClock
from cryptolink.consumer.books import BookRebuilder, TradeChecker, Verdict
from cryptolink.models import BookUpdate, Gap, GapCause, Trade
from cryptolink.sinks.nats_subjects import message_id
from tests.consumer.test_decode import book, gap, ticker, trade

Side = dict[int, int]

# ------------------------------------------------------------------------------------------ the model


@dataclass
class Scenario:
    """An exchange book over ``n`` updates and what each publisher emitted of it."""

    seqs: list[int]  # seqs[i]: sequence after update i (seqs[0]: the initial book)
    refs: list[tuple[Side, Side]]  # refs[i]: the book after update i
    streams: list[list[BookUpdate | Gap]]  # one per publisher, in its publishing order


def _apply(side: Side, changes: list[tuple[int, int]]) -> Side:
    out = dict(side)
    for price, size in changes:
        if size:
            out[price] = size
        else:
            out.pop(price, None)
    return out


def _snapshot(sc_refs: list[tuple[Side, Side]], seqs: list[int], i: int) -> BookUpdate:
    bids, asks = sc_refs[i]
    return book(seqs[i], bids, asks, snapshot=True)


@st.composite
def scenarios(draw: st.DrawFn, min_publishers: int = 2, max_publishers: int = 3) -> Scenario:
    levels = st.lists(st.tuples(st.integers(1, 12), st.integers(1, 5)), max_size=8)
    bids0 = dict(draw(levels))
    asks0 = {p + 12: z for p, z in draw(levels)}
    n = draw(st.integers(1, 25))
    change = st.tuples(st.booleans(), st.integers(1, 12), st.integers(0, 5))
    seqs = [draw(st.integers(1, 10_000))]
    refs = [(bids0, asks0)]
    deltas: list[tuple[list[tuple[int, int]], list[tuple[int, int]]]] = [([], [])]
    for _ in range(n):
        seqs.append(seqs[-1] + draw(st.integers(1, 3)))
        changes = draw(st.one_of(st.just([]), st.lists(change, min_size=1, max_size=4)))  # []: a heartbeat
        b = [(p, z) for is_bid, p, z in changes if is_bid]
        a = [(p + 12, z) for is_bid, p, z in changes if not is_bid]
        deltas.append((b, a))
        refs.append((_apply(refs[-1][0], b), _apply(refs[-1][1], a)))
    streams: list[list[BookUpdate | Gap]] = []
    for _ in range(draw(st.integers(min_publishers, max_publishers))):
        start = draw(st.integers(0, n))
        periodic = set(draw(st.lists(st.integers(start + 1, n + 1), max_size=3)))
        resync: tuple[int, int] | None = None
        if start + 1 <= n and draw(st.booleans()):
            a0 = draw(st.integers(start + 1, n))
            resync = (a0, draw(st.integers(a0, n)))
        out: list[BookUpdate | Gap] = [_snapshot(refs, seqs, start)]
        prev = seqs[start]
        for i in range(start + 1, n + 1):
            if resync is not None and resync[0] <= i <= resync[1]:
                if i == resync[1]:  # missed updates resync[0]..i: the engine resyncs with a snapshot at i
                    out.append(
                        gap(GapCause.RESYNC, stream="book", from_ms=seqs[resync[0]], symbol="BTC/USDT:USDT")
                    )
                    out.append(_snapshot(refs, seqs, i))
                    prev = seqs[i]
                continue
            b, a = deltas[i]
            if b or a:
                out.append(
                    BookUpdate(
                        exchange="okx",
                        symbol="BTC/USDT:USDT",
                        exchange_symbol="BTC-USDT-SWAP",
                        is_snapshot=False,
                        bids=tuple((Decimal(p), Decimal(z)) for p, z in b),
                        asks=tuple((Decimal(p), Decimal(z)) for p, z in a),
                        sequence=seqs[i],
                        timestamp_ms=None,
                        receipt_ns=seqs[i],
                        prev_sequence=prev,
                    )
                )
                prev = seqs[i]
            if i in periodic:
                out.append(_snapshot(refs, seqs, i))
                prev = seqs[i]
        streams.append(out)
    return Scenario(seqs, refs, streams)


T = TypeVar("T", Trade, BookUpdate | Gap)


def merge(data: st.DataObject, streams: list[list[T]]) -> list[T]:
    """A random interleaving keeping each publisher's order, dedup'd by Nats-Msg-Id (first copy wins), as
    JetStream stores it."""
    cursors = [0] * len(streams)
    seen: set[str | None] = set()
    merged: list[T] = []
    while True:
        open_ = [k for k, s in enumerate(streams) if cursors[k] < len(s)]
        if not open_:
            return merged
        k = data.draw(st.sampled_from(open_))
        event = streams[k][cursors[k]]
        cursors[k] += 1
        mid = message_id(event)
        if mid not in seen:
            seen.add(mid)
            merged.append(event)


def levels(side: Side) -> dict[Decimal, Decimal]:
    return {Decimal(p): Decimal(z) for p, z in side.items()}


# ---------------------------------------------------------------------------------------- properties


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_interleaved_publishers_rebuild_the_reference_book(data: st.DataObject) -> None:
    sc = data.draw(scenarios())
    merged = merge(data, sc.streams)
    rb = BookRebuilder()
    verdicts = [rb.feed(e) for e in merged]
    assert Verdict.GAP not in verdicts
    assert Verdict.WAITING not in verdicts
    b = rb.book("okx", "BTC/USDT:USDT")
    assert b is not None and b.live
    # trailing heartbeats (empty updates) are never emitted: the book stands at the last emitted sequence
    assert b.sequence == max(e.sequence for e in merged if isinstance(e, BookUpdate))
    assert b.bids == levels(sc.refs[-1][0])
    assert b.asks == levels(sc.refs[-1][1])
    stats = rb.stats()
    assert stats.book_gaps == 0 and stats.deltas_skipped == 0
    assert stats.books == stats.books_live == 1
    assert stats.events == len(merged)
    assert stats.gap_events == sum(isinstance(e, Gap) for e in merged)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_a_delta_missing_from_the_stream_is_reported_unless_a_snapshot_heals_it(data: st.DataObject) -> None:
    sc = data.draw(scenarios(min_publishers=1))
    merged = merge(data, sc.streams)
    deltas = [i for i, e in enumerate(merged) if isinstance(e, BookUpdate) and not e.is_snapshot]
    assume(deltas)
    drop = data.draw(st.sampled_from(deltas))
    dropped = merged[drop]
    assert isinstance(dropped, BookUpdate)
    rest = merged[:drop] + merged[drop + 1 :]
    after = [
        (i, e)
        for i, e in enumerate(rest)
        if i >= drop and isinstance(e, BookUpdate) and e.sequence >= dropped.sequence
    ]
    assume(after)
    first_i, first = after[0]
    whole = BookRebuilder()
    reference = [whole.feed(e) for e in merged]
    rb = BookRebuilder()
    verdicts = [rb.feed(e) for e in rest]
    if reference[drop] is not Verdict.APPLIED:  # the book was already past it: losing it changes nothing
        assert verdicts == reference[:drop] + reference[drop + 1 :]
        return
    assert Verdict.GAP not in verdicts[:first_i]
    if first.is_snapshot:  # the book jumps past the missing delta: nothing was wrong at any time
        assert verdicts[first_i] is Verdict.SNAPSHOT
        assert rb.stats().book_gaps == 0
    else:
        assert verdicts[first_i] is Verdict.GAP
        assert rb.stats().book_gaps >= 1


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_one_publisher_without_later_snapshots_always_reports_a_dropped_delta(data: st.DataObject) -> None:
    """The plain case: a single publisher's chain with one delta lost before the last one -> GAP, the book is
    cleared and not live; the deltas after it are skipped."""
    n = data.draw(st.integers(3, 20))
    seqs = [100 + 2 * i for i in range(n + 1)]
    stream = [book(seqs[0], {1: 1}, {20: 1}, snapshot=True)]
    stream += [book(seqs[i], {i: i}, {}, prev=seqs[i - 1]) for i in range(1, n + 1)]
    drop = data.draw(st.integers(1, n - 1))
    rb = BookRebuilder()
    verdicts = [rb.feed(e) for i, e in enumerate(stream) if i != drop]
    assert verdicts[drop] is Verdict.GAP  # the delta right after the dropped one
    assert verdicts[drop + 1 :] == [Verdict.WAITING] * (n - drop - 1)
    b = rb.book("okx", "BTC/USDT:USDT")
    assert b is not None and not b.live and b.bids == {} and b.asks == {}
    stats = rb.stats()
    assert (stats.book_gaps, stats.deltas_skipped, stats.books_live) == (1, n - drop - 1, 0)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_trades_of_two_lossy_publishers_end_complete(data: st.DataObject) -> None:
    """Each publisher loses some trades (publish failures), together they have all; interleaved out of order
    and dedup'd, every id is accepted once and none stays missing."""
    n = data.draw(st.integers(1, 60))
    ids = list(range(1000, 1000 + n))
    lost_a = set(data.draw(st.lists(st.sampled_from(ids), max_size=n // 2)))
    lost_b = set(
        data.draw(st.lists(st.sampled_from([i for i in ids if i not in lost_a] or ids), max_size=n // 2))
    )
    lost_b -= lost_a
    streams = [[trade(i) for i in ids if i not in lost] for lost in (lost_a, lost_b)]
    merged = merge(data, streams)
    checker = TradeChecker()
    verdicts = [checker.feed(t) for t in merged]
    assert Verdict.DUPLICATE not in verdicts
    assert sorted(int(t.trade_id) for t in merged) == ids
    s = checker.stats()
    assert s.ids_missing == 0 and s.old == 0
    assert s.late == verdicts.count(Verdict.LATE)
    assert checker.missing_ranges("binance", "BTC/USDT") == []


# ------------------------------------------------------------------------------------------ the rule


def rebuilt(*events: BookUpdate) -> tuple[BookRebuilder, list[Verdict]]:
    rb = BookRebuilder()
    return rb, [rb.feed(e) for e in events]


def test_overlapping_delta_applies_and_old_ones_are_duplicates() -> None:
    rb, verdicts = rebuilt(
        book(10, {100: 1}, {110: 1}, snapshot=True),
        book(12, {100: 2}, {}, prev=8),  # publisher B's delta: prev 8 <= 10 < 12 -> applies
        book(11, {100: 9}, {}, prev=10),  # q=12 >= 11: old
        book(12, {100: 9}, {}, prev=11),  # q=12 >= 12: duplicate
        book(13, {}, {110: 0, 111: 4}, prev=12),
    )
    assert verdicts == [
        Verdict.SNAPSHOT,
        Verdict.APPLIED,
        Verdict.DUPLICATE,
        Verdict.DUPLICATE,
        Verdict.APPLIED,
    ]
    b = rb.book("okx", "BTC/USDT:USDT")
    assert b is not None
    assert (b.bids, b.asks, b.sequence) == ({Decimal(100): Decimal(2)}, {Decimal(111): Decimal(4)}, 13)
    assert rb.stats().duplicates == {"trades": 0, "ticker": 0, "book": 2, "gaps": 0}


def test_stale_snapshot_is_ignored_while_live_and_newer_one_replaces() -> None:
    rb, verdicts = rebuilt(
        book(10, {100: 1}, {}, snapshot=True),
        book(11, {101: 1}, {}, prev=10),
        book(9, {50: 5}, {}, snapshot=True),  # a lagging publisher: stale
        book(11, {50: 5}, {}, snapshot=True),  # at the held sequence: stale too
        book(20, {99: 3}, {120: 1}, snapshot=True),  # newer: replaces
    )
    assert verdicts == [Verdict.SNAPSHOT, Verdict.APPLIED, Verdict.STALE, Verdict.STALE, Verdict.SNAPSHOT]
    b = rb.book("okx", "BTC/USDT:USDT")
    assert b is not None and b.live
    assert (b.bids, b.asks, b.sequence) == ({Decimal(99): Decimal(3)}, {Decimal(120): Decimal(1)}, 20)
    st_ = rb.stats()
    assert (st_.stale_snapshots, st_.snapshots_applied, st_.deltas_applied) == (2, 2, 1)


def test_waiting_before_the_first_snapshot_and_after_a_gap() -> None:
    rb, verdicts = rebuilt(
        book(5, {1: 1}, {}, prev=4),  # no snapshot yet
        book(10, {100: 1}, {}, snapshot=True),
        book(12, {100: 2}, {}, prev=11),  # 10 < 11: missed 11
        book(13, {100: 3}, {}, prev=12),  # not live: skipped
        book(8, {7: 7}, {}, snapshot=True),  # not live: any snapshot applies, even an older one
        book(9, {7: 0, 8: 8}, {}, prev=8),
    )
    assert verdicts == [
        Verdict.WAITING,
        Verdict.SNAPSHOT,
        Verdict.GAP,
        Verdict.WAITING,
        Verdict.SNAPSHOT,
        Verdict.APPLIED,
    ]
    b = rb.book("okx", "BTC/USDT:USDT")
    assert b is not None and b.live and b.bids == {Decimal(8): Decimal(8)} and b.sequence == 9
    s = rb.stats()
    assert (s.book_gaps, s.deltas_skipped, s.snapshots_applied) == (1, 2, 2)


def test_without_sequence_information_deltas_apply_unchecked() -> None:
    rb, verdicts = rebuilt(
        book(0, {100: 1}, {}, snapshot=True),  # sequence 0: no information
        book(50, {101: 1}, {}, prev=40),  # held at 0: cannot check -> applies
        book(0, {102: 1}, {}, prev=None),  # recordings without sequences
        book(7, {103: 1}, {}, prev=None),  # prev None: unchecked even though 7 < 50
    )
    assert verdicts == [Verdict.SNAPSHOT, Verdict.APPLIED, Verdict.APPLIED, Verdict.APPLIED]
    b = rb.book("okx", "BTC/USDT:USDT")
    assert b is not None and len(b.bids) == 4 and b.sequence == 7
    assert rb.stats().book_gaps == 0


def test_books_are_kept_per_exchange_and_symbol_and_views() -> None:
    rb, _ = rebuilt(
        book(10, {100: 1, 99: 2, 98: 3}, {101: 1, 102: 2}, snapshot=True),
        book(10, {5: 1}, {6: 1}, snapshot=True, symbol="ETH/USDT:USDT"),
        book(11, {5: 2}, {}, prev=10, symbol="ETH/USDT:USDT"),
    )
    btc = rb.book("okx", "BTC/USDT:USDT")
    eth = rb.book("okx", "ETH/USDT:USDT")
    assert btc is not None and eth is not None
    assert btc.best_bid() == (Decimal(100), Decimal(1)) and btc.best_ask() == (Decimal(101), Decimal(1))
    assert btc.top(2) == (
        ((Decimal(100), Decimal(1)), (Decimal(99), Decimal(2))),
        ((Decimal(101), Decimal(1)), (Decimal(102), Decimal(2))),
    )
    assert eth.bids == {Decimal(5): Decimal(2)} and btc.sequence == 10 and eth.sequence == 11
    assert rb.book("binance", "BTC/USDT") is None
    assert set(rb.books()) == {("okx", "BTC/USDT:USDT"), ("okx", "ETH/USDT:USDT")}
    assert rb.stats().books_live == 2


def test_decimal_prices_with_different_texts_are_one_level() -> None:
    rb = BookRebuilder()
    snap = book(1, {}, {}, snapshot=True)
    rb.feed(
        BookUpdate(**{**_fields(snap), "bids": ((Decimal("1.0"), Decimal("2")),)})  # type: ignore[arg-type]
    )
    rb.feed(
        BookUpdate(
            **{**_fields(book(2, prev=1)), "bids": ((Decimal("1.00"), Decimal("0")),)}  # type: ignore[arg-type]
        )
    )
    b = rb.book("okx", "BTC/USDT:USDT")
    assert b is not None and b.bids == {}


def _fields(u: BookUpdate) -> dict[str, object]:
    return {f: getattr(u, f) for f in u.__struct_fields__}


# -------------------------------------------------------------------------------------- other channels


def test_trades_duplicates_and_missing_ids_on_contiguous_exchanges() -> None:
    rb = BookRebuilder()
    got = [rb.feed(trade(i)) for i in (1, 2, 2, 5, 4, 3, 6)]
    assert got == [
        Verdict.APPLIED,
        Verdict.APPLIED,
        Verdict.DUPLICATE,
        Verdict.GAP,  # 3 and 4 missing
        Verdict.LATE,
        Verdict.LATE,
        Verdict.APPLIED,
    ]
    s = rb.stats()
    assert (s.trade_gaps, s.trade_ids_missing, s.trades_late) == (1, 0, 2)
    assert s.duplicates["trades"] == 1


def test_missing_ids_stay_counted_until_filled() -> None:
    checker = TradeChecker()
    for i in (10, 11, 15, 20):
        checker.feed(trade(i))
    assert checker.missing_ranges("binance", "BTC/USDT") == [(12, 14), (16, 19)]
    assert checker.feed(trade(13)) is Verdict.LATE
    assert checker.missing_ranges("binance", "BTC/USDT") == [(12, 12), (14, 14), (16, 19)]
    s = checker.stats()
    assert (s.gaps, s.ids_missing, s.late) == (2, 6, 1)


def test_no_gap_detection_where_ids_are_not_contiguous() -> None:
    checker = TradeChecker()
    verdicts = [checker.feed(trade(i, exchange="okx")) for i in (100, 150, 150, 120)]
    assert verdicts == [Verdict.APPLIED, Verdict.APPLIED, Verdict.DUPLICATE, Verdict.LATE]
    assert checker.stats().gaps == 0
    custom = TradeChecker(contiguous=lambda t: t.exchange == "okx")
    assert [custom.feed(trade(i, exchange="okx")) for i in (1, 3)] == [Verdict.APPLIED, Verdict.GAP]


def test_duplicate_memory_is_bounded_and_older_trades_are_old() -> None:
    checker = TradeChecker(recent=3, max_open_ranges=1)
    for i in (1, 2, 3, 4):
        checker.feed(trade(i))  # id 1 is forgotten
    assert checker.feed(trade(1)) is Verdict.OLD  # could be a duplicate: cannot tell
    assert checker.feed(trade(4)) is Verdict.DUPLICATE
    checker.feed(trade(10))  # 5..9 missing
    checker.feed(trade(20))  # 11..19 missing; only one range is kept open
    assert checker.missing_ranges("binance", "BTC/USDT") == [(11, 19)]
    assert checker.stats().ids_missing == 14  # the forgotten range stays counted
    with pytest.raises(ValueError, match="recent"):
        TradeChecker(recent=0)


def test_tickers_and_gaps_are_deduplicated_by_message_id() -> None:
    rb = BookRebuilder()
    assert rb.feed(ticker(7)) is Verdict.APPLIED
    assert rb.feed(ticker(7)) is Verdict.DUPLICATE
    assert rb.feed(ticker(8)) is Verdict.APPLIED
    no_id = ticker(None, timestamp_ms=None)
    assert rb.feed(no_id) is Verdict.APPLIED and rb.feed(no_id) is Verdict.APPLIED  # no id: cannot tell
    assert rb.feed(gap()) is Verdict.APPLIED
    assert rb.feed(gap()) is Verdict.DUPLICATE
    assert rb.feed(gap(GapCause.DISCONNECT)) is Verdict.APPLIED
    s = rb.stats()
    assert s.duplicates == {"trades": 0, "ticker": 1, "book": 0, "gaps": 1}
    assert (s.gap_events, s.publish_gaps, s.events) == (2, 1, 8)


def test_malformed_messages_are_counted() -> None:
    rb = BookRebuilder()
    rb.note_malformed("cryptolink.x.y.z", "unknown channel")
    rb.note_malformed()
    assert rb.stats().malformed == 2


def test_warnings_are_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    rb = BookRebuilder(clock=clock, log_interval_s=10.0)
    caplog.set_level(logging.WARNING, logger="cryptolink.consumer.books")
    for base in (100, 200):
        rb.feed(book(base, {1: 1}, {}, snapshot=True))
        rb.feed(book(base + 5, {1: 2}, {}, prev=base + 3))  # missed an update
    gaps = [r for r in caplog.records if "missed updates" in r.getMessage()]
    assert len(gaps) == 1
    clock._now += 10.0  # no sleeper waits on this clock: moving time is enough
    rb.feed(book(300, {1: 1}, {}, snapshot=True))
    rb.feed(book(305, {1: 2}, {}, prev=303))
    gaps = [r for r in caplog.records if "missed updates" in r.getMessage()]
    assert len(gaps) == 2
    assert "(3 missed in all)" in gaps[-1].getMessage()
    assert rb.stats().book_gaps == 3


def test_trade_gap_warning_names_the_range(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="cryptolink.consumer.books")
    checker = TradeChecker()
    checker.feed(trade(1))
    checker.feed(trade(4))
    assert any("ids 2..3 missing (2)" in r.getMessage() for r in caplog.records)


def test_feed_accepts_every_event_type() -> None:
    rb = BookRebuilder()
    events: list[Trade | BookUpdate | Gap] = [trade(1), book(1, {1: 1}, {}, snapshot=True), gap()]
    assert [rb.feed(e) for e in events] == [Verdict.APPLIED, Verdict.SNAPSHOT, Verdict.APPLIED]


def test_update_ids_going_back_are_followed_not_frozen() -> None:
    """OKX after a maintenance sends ``seqId < prevSeqId`` (the engine emits it with ``prev_sequence`` the last
    emitted id); after a Binance-style id restart the engine re-syncs and marks its lower snapshot
    ``sequence_reset``. Both continue the book; a lower snapshot without the mark (a lagging publisher) is stale."""
    reset = msgspec.structs.replace(book(1, {60: 6}, {}, snapshot=True), sequence_reset=True)
    rb, verdicts = rebuilt(
        book(10, {100: 1}, {}, snapshot=True),
        book(12, {101: 1}, {}, prev=10),
        book(3, {102: 1}, {}, prev=12),  # ids went back: the chain goes on from 3
        book(4, {103: 1}, {}, prev=3),
        book(2, {50: 5}, {}, snapshot=True),  # lower, no mark: a lagging publisher's, stale
        reset,  # the restart's snapshot: taken
        book(2, {61: 1}, {}, prev=1),
    )
    assert verdicts == [
        Verdict.SNAPSHOT,
        Verdict.APPLIED,
        Verdict.APPLIED,
        Verdict.APPLIED,
        Verdict.STALE,
        Verdict.SNAPSHOT,
        Verdict.APPLIED,
    ]
    b = rb.book("okx", "BTC/USDT:USDT")
    assert b is not None and b.live and b.sequence == 2
    assert b.bids == {Decimal(60): Decimal(6), Decimal(61): Decimal(1)}
    # a reset seen by a reader that missed the update before it is a gap
    _, missed = rebuilt(book(10, {100: 1}, {}, snapshot=True), book(3, {102: 1}, {}, prev=12))
    assert missed == [Verdict.SNAPSHOT, Verdict.GAP]


def test_a_lagging_publishers_snapshot_stamped_later_is_still_stale() -> None:
    """Binance futures REST snapshots carry the response's time: a lagging collector's resync snapshot at a lower
    sequence can be stamped later than the reader's last delta. It must not take the book back (review finding:
    the timestamp rule did, then reported a false gap)."""
    later = 1_723_118_400_000 + 1_000
    rb, verdicts = rebuilt(
        book(100, {100: 1}, {}, snapshot=True),
        book(105, {101: 1}, {}, prev=100),
        msgspec.structs.replace(book(102, {50: 5}, {}, snapshot=True), timestamp_ms=later),
        book(106, {102: 1}, {}, prev=105),
    )
    assert verdicts == [Verdict.SNAPSHOT, Verdict.APPLIED, Verdict.STALE, Verdict.APPLIED]
    assert rb.stats().book_gaps == 0
