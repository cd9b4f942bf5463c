"""BookSync: REST stitching (Binance spot/USD-M), WebSocket chain (OKX), duplicates, bounded retries."""

from __future__ import annotations

from decimal import Decimal

from cryptolink.book.checksum import crc32_levels
from cryptolink.book.orderbook import BookState
from cryptolink.book.sync import (
    MAX_BEHIND_IN_ROW,
    OLDER_SNAPSHOT_REFUSALS,
    BookFailed,
    BookSync,
    Dropped,
    NeedResubscribe,
    NeedSnapshot,
    SyncAction,
)
from cryptolink.exchanges.base import BookMessage, BookSyncSpec, ChecksumSpec, SequenceModel, SnapshotSource
from cryptolink.models import BookUpdate

SPOT = BookSyncSpec(SnapshotSource.REST, SequenceModel.CONTIGUOUS, bridge_offset=1, max_buffered_deltas=5)
USDM = BookSyncSpec(SnapshotSource.REST, SequenceModel.LINKED, bridge_offset=0)
OKX = BookSyncSpec(SnapshotSource.WEBSOCKET, SequenceModel.LINKED, bridge_offset=0, checksum=ChecksumSpec())


def delta(
    first: int,
    last: int,
    bids: list[list[str]] | None = None,
    asks: list[list[str]] | None = None,
    prev: int | None = None,
    checksum: int | None = None,
    symbol: str = "BTC/USDT",
) -> BookMessage:
    return BookMessage(symbol, "X", False, bids or [], asks or [], first, last, prev, checksum, None, 0)


def snap(
    seq: int,
    bids: list[list[str]] | None = None,
    asks: list[list[str]] | None = None,
    prev: int | None = None,
    checksum: int | None = None,
) -> BookMessage:
    return BookMessage(
        "BTC/USDT",
        "X",
        True,
        bids or [["100", "1"]],
        asks or [["101", "1"]],
        seq,
        seq,
        prev,
        checksum,
        None,
        0,
    )


def kinds(actions: list[SyncAction]) -> list[str]:
    return [type(a).__name__ for a in actions]


def updates(actions: list[SyncAction]) -> list[BookUpdate]:
    return [a for a in actions if isinstance(a, BookUpdate)]


def state_of(s: BookSync) -> BookState:
    """``s.state`` read afresh: mypy keeps a property narrowed by an earlier assert across the calls that change
    it (it would call the comparison after such a call non-overlapping)."""
    return s.state


def spot_live(max_failed: int = 5) -> BookSync:
    s = BookSync(SPOT, "binance", "BTC/USDT", "BTCUSDT", max_failed_syncs=max_failed)
    assert s.start() == []
    assert kinds(s.on_message(delta(8, 10))) == ["NeedSnapshot"]
    out = s.on_snapshot(snap(10))
    assert s.state is BookState.LIVE
    assert kinds(out) == ["BookUpdate"]
    return s


# ------------------------------------------------------------------------------------------------ REST source
def test_spot_bridge_drops_stale_and_applies_contiguous_chain() -> None:
    s = BookSync(SPOT, "binance", "BTC/USDT", "BTCUSDT")
    s.start()
    assert s.state is BookState.SYNCING
    assert kinds(s.on_message(delta(5, 9))) == ["NeedSnapshot"]
    assert s.on_message(delta(10, 12, bids=[["99", "2"]])) == []  # buffered; only one NeedSnapshot
    assert s.on_message(delta(13, 14, asks=[["101", "0"]])) == []
    out = s.on_snapshot(snap(10))  # L=10 -> need U <= 11 <= u ; (5,9) stale
    assert kinds(out) == ["BookUpdate", "BookUpdate", "BookUpdate"]
    ups = updates(out)
    assert ups[0].is_snapshot and ups[0].sequence == 10
    assert ups[1].sequence == 12 and ups[2].sequence == 14
    assert s.book.best_ask() is None and s.book.best_bid() == (Decimal("100"), Decimal("1"))
    assert s.stats().dropped == 1
    assert kinds(s.on_message(delta(15, 15, bids=[["100", "3"]]))) == ["BookUpdate"]
    assert s.stats().gaps == 0


def test_spot_gap_requests_snapshot_for_this_symbol_only() -> None:
    a = spot_live()
    b = BookSync(SPOT, "binance", "ETH/USDT", "ETHUSDT")
    b.start()
    b.on_message(delta(1, 2, symbol="ETH/USDT"))
    b.on_snapshot(snap(1))
    assert b.state is BookState.LIVE
    a.on_message(delta(11, 12))
    out = a.on_message(delta(14, 15))  # 13 missing
    assert kinds(out) == ["NeedSnapshot"]
    assert isinstance(out[0], NeedSnapshot) and out[0].symbol == "BTC/USDT"
    assert a.state is BookState.RESYNCING and a.stats().gaps == 1
    assert b.state is BookState.LIVE and b.stats().gaps == 0
    # the delta that showed the gap is kept for the next sync: a snapshot at 14 bridges with it
    out = a.on_snapshot(snap(14))
    assert kinds(out) == ["BookUpdate", "BookUpdate"]
    assert state_of(a) is BookState.LIVE and a.book.last_sequence == 15


def test_duplicates_are_dropped_not_gaps_and_never_emitted_twice() -> None:
    s = spot_live()
    first = s.on_message(delta(11, 12, bids=[["99", "1"]]))
    assert kinds(first) == ["BookUpdate"]
    for replay in (delta(11, 12, bids=[["99", "1"]]), delta(9, 10), delta(11, 11)):
        out = s.on_message(replay)
        assert out == [Dropped("BTC/USDT", "duplicate")]
    assert s.stats().dropped == 1 + 3 and s.stats().gaps == 0 and s.state is BookState.LIVE  # 1 stale
    assert kinds(s.on_message(delta(13, 13))) == ["BookUpdate"]


def test_stale_snapshot_is_refetched() -> None:
    s = BookSync(SPOT, "binance", "BTC/USDT", "BTCUSDT")
    s.start()
    s.on_message(delta(20, 25))
    out = s.on_snapshot(snap(10))  # 11 < first U (20): too old
    assert kinds(out) == ["NeedSnapshot"] and s.state is not BookState.LIVE
    out = s.on_snapshot(snap(22))
    assert kinds(out) == ["BookUpdate", "BookUpdate"] and state_of(s) is BookState.LIVE


def test_bounded_retries_then_failed_then_recovery() -> None:
    s = BookSync(SPOT, "binance", "BTC/USDT", "BTCUSDT", max_failed_syncs=3)
    s.start()
    s.on_message(delta(100, 101))
    assert kinds(s.on_snapshot(snap(1))) == ["NeedSnapshot"]
    assert kinds(s.on_snapshot(snap(2))) == ["NeedSnapshot"]
    out = s.on_snapshot(snap(3))
    assert kinds(out) == ["BookFailed"]
    assert isinstance(out[0], BookFailed) and out[0].failures == 3
    assert s.state is BookState.FAILED
    # failed: deltas are buffered quietly, no more snapshot requests
    assert s.on_message(delta(102, 102)) == []
    assert s.state is BookState.FAILED
    # a later good snapshot recovers
    out = s.on_snapshot(snap(101))
    assert kinds(out) == ["BookUpdate", "BookUpdate"]
    assert state_of(s) is BookState.LIVE and s.stats().consecutive_failures == 0


def test_snapshot_error_counts_and_asks_again() -> None:
    s = BookSync(SPOT, "binance", "BTC/USDT", "BTCUSDT", max_failed_syncs=2)
    s.start()
    s.on_message(delta(1, 2))
    assert kinds(s.on_snapshot_error()) == ["NeedSnapshot"]
    assert kinds(s.on_snapshot_error()) == ["BookFailed"]
    assert s.on_snapshot_error() == []  # not awaiting any more
    assert s.restart() == [] and s.state is BookState.RESYNCING
    assert kinds(s.on_message(delta(3, 4))) == ["NeedSnapshot"]


def test_buffer_overflow_restarts_sync_and_stays_bounded() -> None:
    s = BookSync(SPOT, "binance", "BTC/USDT", "BTCUSDT")  # max_buffered_deltas=5
    s.start()
    out: list[SyncAction] = []
    for i in range(1, 13):
        out.extend(s.on_message(delta(i, i)))
        assert s.stats().buffered <= 5
    assert kinds(out).count("NeedSnapshot") == 3  # the first request + one per overflow
    assert s.stats().resyncs == 2
    # the pending snapshot older than the (restarted) buffer is refused; a fresh one works
    assert kinds(s.on_snapshot(snap(3))) == ["NeedSnapshot"]
    assert updates(s.on_snapshot(snap(11)))[-1].sequence == 12


def test_late_snapshot_when_live_is_dropped() -> None:
    s = spot_live()
    assert s.on_snapshot(snap(50)) == [Dropped("BTC/USDT", "late_snapshot")]
    assert s.book.last_sequence == 10


def test_connection_lost_resyncs_counted_by_cause_not_as_failure() -> None:
    s = spot_live()
    assert s.on_connection_lost() == []
    assert s.state is BookState.RESYNCING
    assert kinds(s.on_message(delta(30, 31))) == ["NeedSnapshot"]
    assert kinds(s.on_snapshot(snap(30))) == ["BookUpdate", "BookUpdate"]
    st = s.stats()
    assert st.resyncs == 1 and st.resyncs_by_cause == {"reconnect": 1} and st.consecutive_failures == 0
    assert st.last_resync_cause == "reconnect"


def test_a_failed_book_starts_over_after_a_reconnect() -> None:
    s = BookSync(SPOT, "binance", "BTC/USDT", "BTCUSDT", max_failed_syncs=1)
    s.start()
    s.on_message(delta(100, 101))
    assert kinds(s.on_snapshot_error("HTTP 503")) == ["BookFailed"] and s.state is BookState.FAILED
    s.on_connection_lost()
    assert state_of(s) is BookState.RESYNCING and s.stats().consecutive_failures == 0
    assert kinds(s.on_message(delta(102, 102))) == ["NeedSnapshot"]
    assert kinds(s.on_snapshot(snap(101))) == ["BookUpdate", "BookUpdate"] and state_of(s) is BookState.LIVE
    assert s.stats().resyncs_by_cause == {"snapshot": 1, "reconnect": 1}


def test_resync_causes_counted_separately() -> None:
    s = spot_live()
    s.on_message(delta(13, 13))  # 11..12 missing: gap
    s.on_snapshot_error("timeout")
    s.on_stale()  # not live any more: nothing to count
    s.restart()
    assert s.stats().resyncs_by_cause == {"gap": 1, "snapshot": 1, "restart": 1}
    live = spot_live()
    live.on_stale()
    assert live.state is BookState.RESYNCING and live.stats().resyncs_by_cause == {"stale": 1}


def test_usdm_linked_chain_bridge_and_gap() -> None:
    s = BookSync(USDM, "binance", "BTC/USDT:USDT", "BTCUSDT")
    s.start()
    s.on_message(delta(90, 95, prev=89))
    s.on_message(delta(96, 104, prev=95))
    s.on_message(delta(105, 110, prev=104))
    out = s.on_snapshot(snap(100))  # drop u < 100; first must have U <= 100 <= u
    assert [u.sequence for u in updates(out)] == [100, 104, 110]
    assert kinds(s.on_message(delta(111, 115, prev=110))) == ["BookUpdate"]
    # pu chain broken (U is irrelevant for LINKED)
    assert kinds(s.on_message(delta(116, 120, prev=113))) == ["NeedSnapshot"]
    assert s.stats().gaps == 1


def test_usdm_delta_ending_at_the_snapshot_id_is_covered_not_emitted() -> None:
    s = BookSync(USDM, "binance", "BTC/USDT:USDT", "BTCUSDT")
    s.start()
    s.on_message(
        delta(96, 100, prev=95)
    )  # ends at the snapshot id: U <= 100 <= u, but already in the snapshot
    s.on_message(delta(101, 104, prev=100))
    out = s.on_snapshot(snap(100))
    assert [u.sequence for u in updates(out)] == [100, 104]  # strictly increasing, the chain goes on from 100
    assert s.stats().gaps == 0 and s.state is BookState.LIVE


def test_usdm_first_delta_not_bridging_is_a_gap() -> None:
    s = BookSync(USDM, "binance", "BTC/USDT:USDT", "BTCUSDT")
    s.start()
    assert kinds(s.on_snapshot(snap(100))) == ["BookUpdate"]  # nothing buffered yet
    assert kinds(s.on_message(delta(105, 110, prev=104))) == ["NeedSnapshot"]


# ------------------------------------------------------------------------------------------------ WS source
def okx_live() -> BookSync:
    s = BookSync(OKX, "okx", "BTC/USDT", "BTC-USDT")
    s.start()
    assert s.on_message(delta(1, 1)) == [Dropped("BTC/USDT", "unsynced")]  # update before snapshot
    assert kinds(s.on_message(snap(10, prev=-1))) == ["BookUpdate"]
    assert s.state is BookState.LIVE
    return s


def test_okx_chain_heartbeat_and_seq_reset() -> None:
    s = okx_live()
    assert kinds(s.on_message(delta(12, 12, bids=[["99", "1"]], prev=10))) == ["BookUpdate"]
    assert s.on_message(delta(12, 12, prev=12)) == []  # heartbeat: empty, seqId == prevSeqId
    assert s.state is BookState.LIVE
    out = s.on_message(delta(3, 3, asks=[["102", "1"]], prev=12))  # maintenance: seqId < prevSeqId
    assert kinds(out) == ["BookUpdate"] and s.book.last_sequence == 3
    assert kinds(s.on_message(delta(4, 4, bids=[["98", "1"]], prev=3))) == ["BookUpdate"]
    assert s.stats().gaps == 0


def test_okx_gap_needs_resubscribe_and_snapshot_recovers() -> None:
    s = okx_live()
    out = s.on_message(delta(15, 15, bids=[["99", "1"]], prev=13))
    assert kinds(out) == ["NeedResubscribe"]
    assert isinstance(out[0], NeedResubscribe) and out[0].symbol == "BTC/USDT"
    assert s.state is BookState.RESYNCING
    assert kinds(s.on_message(delta(16, 16, prev=15))) == ["Dropped"]
    assert kinds(s.on_message(snap(20, prev=-1))) == ["BookUpdate"]
    assert state_of(s) is BookState.LIVE


def test_okx_duplicates_from_second_connection_dropped() -> None:
    s = okx_live()
    s.on_message(delta(11, 11, bids=[["99", "1"]], prev=10))
    assert kinds(s.on_message(delta(11, 11, bids=[["99", "1"]], prev=10))) == ["Dropped"]
    assert kinds(s.on_message(snap(11, prev=-1))) == ["Dropped"]  # rotation snapshot, not newer
    assert kinds(s.on_message(delta(12, 12, bids=[["98", "1"]], prev=11))) == ["BookUpdate"]
    assert s.stats().gaps == 0 and s.stats().dropped == 3  # incl. the pre-snapshot one


def test_okx_checksum_checked_when_nonzero() -> None:
    s = BookSync(OKX, "okx", "BTC/USDT", "BTC-USDT", max_failed_syncs=2)
    s.start()
    good = crc32_levels([("100", "1")], [("101", "1")])
    assert kinds(s.on_message(snap(1, prev=-1, checksum=good))) == ["BookUpdate"]
    new_good = crc32_levels([("100", "1"), ("99", "2")], [("101", "1")])
    assert kinds(s.on_message(delta(2, 2, bids=[["99", "2"]], prev=1, checksum=new_good))) == ["BookUpdate"]
    assert kinds(s.on_message(delta(3, 3, bids=[["98", "1"]], prev=2, checksum=0))) == ["BookUpdate"]
    assert kinds(s.on_message(delta(4, 4, bids=[["97", "1"]], prev=3, checksum=12345))) == ["NeedResubscribe"]
    assert s.stats().checksum_failures == 1
    assert kinds(s.on_message(snap(9, prev=-1, checksum=777))) == ["BookFailed"]
    assert s.state is BookState.FAILED
    assert kinds(s.on_message(snap(10, prev=-1, checksum=good))) == ["BookUpdate"]
    assert state_of(s) is BookState.LIVE


def test_okx_legacy_messages_without_seq_apply_unchecked() -> None:
    s = BookSync(OKX, "okx", "BTC/USDT", "BTC-USDT")
    s.start()
    assert kinds(s.on_message(snap(0))) == ["BookUpdate"]
    assert kinds(s.on_message(delta(0, 0, bids=[["99", "1"]]))) == ["BookUpdate"]
    assert kinds(s.on_message(delta(0, 0, bids=[["98", "1"]]))) == ["BookUpdate"]


def test_okx_restart_resubscribes() -> None:
    s = okx_live()
    assert kinds(s.restart()) == ["NeedResubscribe"]


def test_update_ids_that_went_back_resync_the_book_instead_of_freezing_it() -> None:
    """A live book whose exchange restarts its update ids lower (no documented reset): the first copies are
    dropped as copies, but MAX_BEHIND_IN_ROW of them in a row with nothing applied re-sync it (cause gap); a
    copy between applied updates (a rotation overlap) never does."""
    ws = BookSync(OKX, "okx", "BTC/USDT", "BTC-USDT")
    ws.start()
    ws.on_message(snap(1000, prev=-1))
    for i in range(5 * MAX_BEHIND_IN_ROW):  # overlap: every update arrives twice, the copy is dropped
        assert kinds(ws.on_message(delta(1001 + i, 1001 + i, [["100", "2"]], prev=1000 + i))) == [
            "BookUpdate"
        ]
        assert kinds(ws.on_message(delta(1001 + i, 1001 + i, [["100", "2"]], prev=1000 + i))) == ["Dropped"]
    last = 1000 + 5 * MAX_BEHIND_IN_ROW
    assert kinds(ws.on_message(delta(last + 1, last + 1, [["100", "3"]], prev=last))) == ["BookUpdate"]
    assert ws.state is BookState.LIVE
    out: list[SyncAction] = []
    for seq in range(1, MAX_BEHIND_IN_ROW + 1):  # ids restarted at 1, linked among themselves
        out = ws.on_message(delta(seq, seq, [["99", "1"]], prev=seq - 1))
        if seq < MAX_BEHIND_IN_ROW:
            assert kinds(out) == ["Dropped"]
    assert kinds(out) == ["NeedResubscribe"] and state_of(ws) is BookState.RESYNCING
    assert ws.stats().resyncs_by_cause == {"gap": 1} and ws.gaps == 1
    rest = spot_live()
    assert kinds(rest.on_message(delta(11, 5000))) == ["BookUpdate"]
    for seq in range(1, MAX_BEHIND_IN_ROW + 1):
        out = rest.on_message(delta(seq, seq))
    assert kinds(out) == ["NeedSnapshot"] and state_of(rest) is not BookState.LIVE
    # the snapshot of the new, lower chain is accepted (not refused as older than the book) and the chain runs on
    assert kinds(rest.on_snapshot(snap(100))) == ["BookUpdate"] and state_of(rest) is BookState.LIVE
    assert kinds(rest.on_message(delta(101, 101))) == ["BookUpdate"] and rest.book.last_sequence == 101


def test_a_snapshot_still_older_than_the_book_after_every_retry_starts_the_new_chain() -> None:
    """After a reconnect the exchange's ids restarted lower: the first OLDER_SNAPSHOT_REFUSALS snapshots are refused
    as a lagging replica would be (each retried with backoff), the next one is taken as the new chain, before the
    book fails (default bound 5), and counted."""
    s = spot_live()
    assert kinds(s.on_message(delta(11, 5000))) == ["BookUpdate"]
    s.on_connection_lost()
    s.on_message(delta(20, 21))  # the new session's ids restarted lower
    for _ in range(OLDER_SNAPSHOT_REFUSALS):
        assert kinds(s.on_snapshot(snap(20))) == ["NeedSnapshot"]
    assert kinds(s.on_snapshot(snap(20))) == ["BookUpdate", "BookUpdate"] and state_of(s) is BookState.LIVE
    assert s.stats().id_restarts == 1 and s.book.last_sequence == 21


def test_a_book_failed_by_older_snapshots_accepts_the_new_chain_on_its_retry() -> None:
    """A lagging REST replica (snapshot below the book) is refused, even after an operator's restart; but when
    every snapshot until the book failed was older than it (the exchange's ids went back across a reconnect, with
    no live updates to count), the feed's retry starts the new chain: the book never stays failed for good."""
    s = spot_live(max_failed=3)
    assert kinds(s.on_message(delta(11, 500))) == ["BookUpdate"]
    assert kinds(s.on_message(delta(600, 600))) == ["NeedSnapshot"]  # a gap
    assert kinds(s.on_snapshot(snap(20))) == ["NeedSnapshot"]  # refused: a replica behind the book
    s.restart()
    s.on_message(delta(601, 602))
    assert kinds(s.on_snapshot(snap(30))) == ["NeedSnapshot"] and state_of(s) is not BookState.LIVE
    s.on_connection_lost()
    s.on_message(delta(20, 21))  # the new session's ids restarted lower
    out: list[SyncAction] = []
    for _ in range(3):
        out = s.on_snapshot(snap(20))
    assert kinds(out) == ["BookFailed"] and state_of(s) is BookState.FAILED
    s.restart()  # the feed's retry of the failed book
    s.on_message(delta(20, 21))
    assert kinds(s.on_snapshot(snap(20))) == ["BookUpdate", "BookUpdate"] and state_of(s) is BookState.LIVE


def test_an_empty_diff_of_a_socket_requested_book_moves_the_chain_and_emits_nothing() -> None:
    """HTX's 100 ms diffs may carry no level at all: the chain stitched to the socket-requested snapshot moves on,
    and consumers get no empty update."""
    spec = BookSyncSpec(SnapshotSource.WS_REQUEST, SequenceModel.LINKED, bridge_offset=1)
    s = BookSync(spec, "htx", "BTC/USDT", "btcusdt")
    s.start()
    assert kinds(s.on_message(delta(11, 12, [["100", "1"]], prev=10))) == ["NeedSnapshot"]
    assert kinds(s.on_snapshot(snap(10))) == ["BookUpdate", "BookUpdate"]
    assert s.on_message(delta(13, 14, prev=12)) == [] and s.book.last_sequence == 14
    assert kinds(s.on_message(delta(15, 15, [["100", "5"]], prev=14))) == ["BookUpdate"]


def test_each_emitted_delta_names_the_update_emitted_before_it() -> None:
    """``prev_sequence`` links every emitted delta to the last emitted update of the book (a snapshot has none);
    a heartbeat moves the chain without being emitted, so the next delta still points at what a reader holds."""
    s = okx_live()  # snapshot at 10
    a = updates(s.on_message(delta(12, 12, bids=[["99", "1"]], prev=10)))[0]
    assert (a.prev_sequence, a.sequence) == (10, 12)
    assert s.on_message(delta(13, 13, prev=12)) == []  # empty update: nothing emitted
    b = updates(s.on_message(delta(14, 14, asks=[["102", "1"]], prev=13)))[0]
    assert (b.prev_sequence, b.sequence) == (12, 14)  # the last EMITTED, not the heartbeat's 13
    s.on_message(delta(16, 16, bids=[["98", "1"]], prev=15))  # gap: resubscribe
    fresh = updates(s.on_message(snap(20, prev=-1)))[0]
    assert fresh.is_snapshot and fresh.prev_sequence is None
    c = updates(s.on_message(delta(21, 21, bids=[["97", "1"]], prev=20)))[0]
    assert (c.prev_sequence, c.sequence) == (20, 21)


def test_rest_bridged_chain_links_to_the_snapshot() -> None:
    s = BookSync(SPOT, "binance", "BTC/USDT", "BTCUSDT")
    s.start()
    s.on_message(delta(10, 12, bids=[["99", "2"]]))
    ups = updates(s.on_snapshot(snap(10)))
    assert [(u.prev_sequence, u.sequence) for u in ups] == [(None, 10), (10, 12)]


def test_a_snapshot_below_what_the_book_emitted_is_marked_as_a_sequence_reset() -> None:
    """Readers of a stream told apart a lagging publisher's snapshot (dropped) from the one after the exchange's
    ids went back (taken) by this mark."""
    s = okx_live()  # snapshot at 10: the first one, no reset
    first = updates(s.on_message(delta(12, 12, bids=[["99", "1"]], prev=10)))[0]
    assert not first.sequence_reset
    s.on_message(delta(16, 16, bids=[["98", "1"]], prev=15))  # gap: resubscribe
    higher = updates(s.on_message(snap(20, prev=-1)))[0]
    assert higher.is_snapshot and not higher.sequence_reset
    s.on_message(delta(23, 23, bids=[["97", "1"]], prev=21))  # gap again
    lower = updates(s.on_message(snap(5, prev=-1)))[0]  # the exchange's ids went back
    assert lower.is_snapshot and lower.sequence_reset
