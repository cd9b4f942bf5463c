"""Per-symbol stream state (sans-I/O): true duplicates only, id regressions, late trades, interruptions and
the holding of live trades while a backfill runs."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

from cryptolink.models import Channel, Gap, GapCause, Side, Ticker, Trade
from cryptolink.streams import IdRegression, IntervalTracker, StartBackfill, TickerFilter, TradeStream


def trade(seq: int, ts: int | None = None, price: str = "100", backfilled: bool = False) -> Trade:
    return Trade(
        "binance",
        "BTC/USDT",
        "BTCUSDT",
        Decimal(price),
        Decimal("1"),
        Side.BUY,
        str(seq),
        1_000 + seq if ts is None else ts,
        5,
        seq,
        feed="binance-main",
        backfilled=backfilled,
    )


def ids(actions: Sequence[object]) -> list[object]:
    out: list[object] = []
    for a in actions:
        if isinstance(a, Trade):
            out.append(a.sequence)
        elif isinstance(a, Gap):
            out.append("gap")
        elif isinstance(a, StartBackfill):
            out.append(("backfill", a.cursor.after_id, a.cursor.before_id))
        elif isinstance(a, IdRegression):
            out.append(("regression", a.before, a.after))
    return out


def stream(contiguous: bool = True, can_backfill: bool = False, max_held: int = 50_000) -> TradeStream:
    return TradeStream("BTC/USDT", contiguous=contiguous, can_backfill=can_backfill, max_held=max_held)


def test_only_identical_recent_trades_are_duplicates() -> None:
    s = stream()
    out = [a for t in (1, 2, 3, 2, 3, 4) for a in s.on_trade(trade(t))]
    assert ids(out) == [1, 2, 3, 4]
    assert s.duplicates == 2 and s.regressions == 0


def test_ids_restarted_by_the_exchange_are_delivered_not_dropped() -> None:
    """After an exchange restart ids start lower (and may reuse old numbers with other content): the old rule
    dropped every trade until the ids passed the old maximum."""
    s = stream(contiguous=False)
    for t in range(1000, 1300):
        s.on_trade(trade(t))
    out = s.on_trade(trade(1, ts=999_999))
    assert ids(out) == [("regression", 1299, 1), 1]
    out = s.on_trade(trade(2, ts=999_999))
    assert ids(out) == [2] and s.regressions == 1 and s.duplicates == 0
    reused = stream(contiguous=False)
    for t in range(1, 6):
        reused.on_trade(trade(t))
    out = reused.on_trade(trade(3, ts=5_000, price="101"))  # id 3 again, different trade: a restart
    assert ids(out) == [("regression", 5, 3), 3] and reused.regressions == 1


def test_rotation_overlap_drops_every_copy_and_delivers_late_trades() -> None:
    """Two sockets deliver the same stream during a make-before-break rotation: however far one lags, a copy
    is dropped; a lower id the other socket has not delivered yet is late, not a regression."""
    s = stream(contiguous=False, max_held=10)
    for t in range(1, 300):
        s.on_trade(trade(t))
    for t in range(300, 600):  # the new socket runs ahead
        assert ids(s.on_trade(trade(t), overlap=True)) == [t]
    for t in range(300, 600):  # the old one repeats all of them, far beyond the recent window
        assert s.on_trade(trade(t), overlap=True) == []
    assert s.duplicates == 300
    s.on_trade(trade(601), overlap=True)
    assert ids(s.on_trade(trade(600), overlap=True)) == [600]  # the old socket had it first: late
    assert s.out_of_order == 1 and s.regressions == 0 and s.last_id == 601
    assert ids(s.on_trade(trade(602))) == [602]  # overlap over


def test_skipped_contiguous_ids_without_backfill_publish_a_gap_then_the_trade() -> None:
    s = stream(contiguous=True, can_backfill=False)
    s.on_trade(trade(10))
    out = s.on_trade(trade(14))
    assert ids(out) == ["gap", 14]
    gap = out[0]
    assert isinstance(gap, Gap)
    assert (gap.cause, gap.first_missing_id, gap.last_missing_id, gap.recovered) == (
        GapCause.MISSING_IDS,
        11,
        13,
        False,
    )
    assert (gap.from_ms, gap.to_ms, gap.feed, gap.stream) == (1010, 1014, "binance-main", Channel.TRADES)


def test_interruption_then_backfill_delivers_missing_trades_in_order_before_held_live_ones() -> None:
    s = stream(contiguous=True, can_backfill=True)
    for t in (1, 2, 3):
        s.on_trade(trade(t))
    s.interrupted(GapCause.DISCONNECT, "session ended: code 1006")
    start = s.on_trade(trade(8))
    assert ids(start) == [("backfill", 3, 8)] and s.backfilling
    assert s.on_trade(trade(9)) == [] and s.on_trade(trade(8)) == [] and s.held == 2  # held, order kept
    out = s.backfill_done([trade(7, backfilled=True), trade(5, backfilled=True), trade(6, backfilled=True),
                           trade(4, backfilled=True), trade(2, backfilled=True)], complete=True)  # fmt: skip
    assert ids(out) == ["gap", 4, 5, 6, 7, 8, 9]  # the duplicate 8 held during the backfill is dropped
    gap = out[0]
    assert isinstance(gap, Gap) and gap.recovered and gap.backfilled == 4
    assert (gap.cause, gap.first_missing_id, gap.last_missing_id) == (GapCause.DISCONNECT, 4, 7)
    assert gap.detail == "session ended: code 1006"
    assert all(t.backfilled for t in out[1:5] if isinstance(t, Trade))
    assert s.backfilled == 4 and s.duplicates == 1 and not s.backfilling


def test_incomplete_backfill_is_reported_not_recovered() -> None:
    s = stream(contiguous=True, can_backfill=True)
    s.on_trade(trade(1))
    s.on_trade(trade(5))
    out = s.backfill_done([trade(3, backfilled=True)], complete=True, detail="")
    gap = out[0]
    assert isinstance(gap, Gap) and not gap.recovered and gap.backfilled == 1
    assert ids(out) == ["gap", 3, 5] and s.backfills_incomplete == 1


def test_held_overflow_abandons_the_backfill_and_loses_nothing() -> None:
    s = stream(contiguous=True, can_backfill=True, max_held=2)
    s.on_trade(trade(1))
    s.on_trade(trade(4))
    s.on_trade(trade(5))
    s.on_trade(trade(6))
    out = s.on_trade(trade(7))  # the hold is full: give up the backfill
    gap = out[0]
    assert isinstance(gap, Gap) and not gap.recovered
    assert "faster than the backfill" in gap.detail
    assert ids(out) == ["gap", 4, 5, 6, 7] and not s.backfilling


def test_interruption_on_non_contiguous_ids_is_closed_by_the_next_trade() -> None:
    s = stream(contiguous=False, can_backfill=False)
    s.interrupted(GapCause.DISCONNECT, "x")  # nothing flowed yet: no interval
    assert ids(s.on_trade(trade(1))) == [1]
    s.interrupted(GapCause.STALL, "silent for 3 s")
    s.interrupted(GapCause.DISCONNECT, "later cause")  # the first cause stays
    out = s.on_trade(trade(9))
    gap = out[0]
    assert isinstance(gap, Gap) and gap.cause is GapCause.STALL and gap.first_missing_id is None
    assert ids(out) == ["gap", 9]


def test_stop_publishes_the_open_interval_with_no_end() -> None:
    s = stream()
    assert s.stop(5_000, "feed stopped") is None
    s.on_trade(trade(1))
    s.interrupted(GapCause.DISCONNECT, "code 1006")
    gap = s.stop(5_000, "feed stopped")
    assert gap is not None and gap.to_ms is None and gap.from_ms == 1001
    assert gap.detail == "code 1006; feed stopped" and gap.receipt_ns == 5_000_000_000


def tk(seq: int | None, bid: str, ts: int | None = None) -> Ticker:
    return Ticker(
        "binance", "BTC/USDT", "BTCUSDT", Decimal(bid), Decimal(1), Decimal(9), Decimal(1), None, ts, 1, seq
    )


def test_ticker_filter_resends_stale_and_regressions() -> None:
    f = TickerFilter(recent=4)
    assert [f.accept(t) for t in (tk(5, "1"), tk(5, "1"), tk(5, "2"), tk(6, "3"))] == [
        True,
        False,  # identical resend
        True,  # same sequence, new sizes: a real update
        True,
    ]
    assert not f.accept(tk(4, "0"), overlap=True)  # the slower rotation socket: stale, the newer BBO is out
    assert not f.accept(tk(6, "3"), overlap=True)  # its copy of the last one: duplicate
    assert (f.duplicates, f.stale, f.regressions) == (2, 1, 0)
    assert f.accept(tk(2, "3"))  # lower outside an overlap: the exchange restarted its ids
    assert f.regressions == 1 and f.accept(tk(3, "3"))


def test_ticker_without_sequence_uses_exchange_time() -> None:
    f = TickerFilter()
    assert [
        f.accept(tk(None, b, ts), overlap=True) for b, ts in (("1", 10), ("2", 9), ("2", 11), ("2", 11))
    ] == [
        True,
        False,
        True,
        False,
    ]


def test_interval_tracker_closes_on_data() -> None:
    iv = IntervalTracker()
    iv.interrupted(GapCause.DISCONNECT, "x")
    assert iv.open is None  # nothing flowed yet
    assert iv.on_data(100) is None
    iv.interrupted(GapCause.RESYNC, "gap")
    opened = iv.on_data(250)
    assert opened is not None and (opened.cause, opened.from_ms) == (GapCause.RESYNC, 100)
    assert iv.gaps == 1 and iv.take_open() is None
