"""Sans-I/O sync of one symbol's L2 order book, driven by the adapter's :class:`BookSyncSpec`.

Feed it, in arrival order, the raw :class:`~cryptolink.exchanges.base.BookMessage`\\ s decoded from the
stream (:meth:`BookSync.on_message`), the REST snapshots the caller fetched (:meth:`BookSync.on_snapshot`) and
the loss of the stream (:meth:`BookSync.on_connection_lost`). Each call returns a list of actions:

- :class:`~cryptolink.models.BookUpdate`: a snapshot or delta that passed every check (Decimal levels);
- :class:`NeedSnapshot`: fetch a REST snapshot for this symbol and pass it to :meth:`BookSync.on_snapshot`
  (Binance, docs/protocols/binance.md "Book sync");
- :class:`NeedResubscribe`: unsubscribe and subscribe this symbol's book stream to get a new WebSocket
  snapshot (OKX, docs/protocols/okx.md "Book sync");
- :class:`BookFailed`: sync gave up after ``max_failed_syncs`` consecutive failures; the book is ``failed``;
- :class:`Dropped`: a stale or duplicate message was dropped (also counted in :attr:`BookSync.stats`).

Rules (REST source, snapshot id ``L``, ``off`` = ``spec.bridge_offset``): deltas are buffered (at most
``spec.max_buffered_deltas``; overflow restarts the sync) until the snapshot arrives; a snapshot with
``L + off < first buffered first_seq``, or with ``L`` below the last update already applied (a lagging replica
after a resync: it would take the book back), is too old and another is requested; deltas with
``last_seq < L + off`` are dropped; the first applied delta must satisfy ``first_seq <= L + off <= last_seq``;
after it, CONTIGUOUS needs ``first_seq == previous last_seq + 1`` (a delta overlapping the applied range is
applied: sizes are absolute) and LINKED needs ``prev_seq == previous last_seq``.

WebSocket source: a snapshot replaces the book; an update needs ``prev_seq == last applied seq`` (this also
accepts the empty heartbeat update with ``seqId == prevSeqId`` and the post-maintenance update with
``seqId < prevSeqId``, after which the chain continues from ``seqId``). Messages without sequence information
(``prev_seq is None``: OKX frames recorded before ``seqId`` existed) are applied unchecked and rely on the
checksum. A non-zero checksum is verified after applying.

Everywhere: a message whose ``last_seq`` is not newer than the last applied one (a replay, or the same message
from a second connection during make-before-break rotation) is a duplicate: dropped and counted, never a gap,
never emitted twice. A gap or checksum failure resyncs THIS symbol only.

Every resync is counted by its cause (:class:`ResyncCause`: sequence gap, checksum mismatch, reconnect, stale
stream, snapshot failure, malformed message, buffer overflow, operator restart). A ``failed`` book is not the
end: :meth:`BookSync.restart` (called by the feed on a slower schedule, after a reconnect, or by an operator)
starts over.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

import msgspec

from cryptolink.book.checksum import verify_checksum
from cryptolink.book.orderbook import BookState, OrderBook
from cryptolink.exchanges.base import BookMessage, BookSyncSpec, SequenceModel, SnapshotSource
from cryptolink.models import AmountUnit, BookLevel, BookUpdate, Channel

__all__ = [
    "MAX_BEHIND_IN_ROW",
    "OLDER_SNAPSHOT_REFUSALS",
    "BookFailed",
    "BookSync",
    "BookSyncStats",
    "Dropped",
    "NeedResubscribe",
    "NeedSnapshot",
    "ResyncCause",
    "SyncAction",
]


_OLDER_SNAPSHOT = "snapshot older than the last applied update"
OLDER_SNAPSHOT_REFUSALS = 4
"""Snapshots older than the book refused in a row (each a failed sync, retried after 0.5, 1, 2, 4 s) before the next
one is taken as the exchange's ids having gone back: a lagging replica catches up within that time."""

MAX_BEHIND_IN_ROW = 100
"""Updates at or below a live book's sequence accepted in a row (as copies) before the book re-syncs: the
exchange's update ids went back, and every later update would be dropped as a copy."""


class ResyncCause(StrEnum):
    """Why a book had to be re-synced."""

    GAP = "gap"
    """A sequence gap (an update does not follow the last applied one)."""
    CHECKSUM = "checksum"
    """The book's checksum did not match the exchange's."""
    RECONNECT = "reconnect"
    """The connection carrying the stream ended."""
    STALE = "stale"
    """The stream went silent past its data watchdog."""
    SNAPSHOT = "snapshot"
    """The snapshot failed (request error, unparsable, or older than the buffered deltas)."""
    MALFORMED = "malformed"
    """A message could not be applied (bad price or size text)."""
    OVERFLOW = "overflow"
    """Too many deltas were buffered while waiting for the snapshot."""
    RESTART = "restart"
    """An operator, or the feed's retry of a failed book, started over."""


class NeedSnapshot(msgspec.Struct, frozen=True):
    """Fetch a REST book snapshot for ``symbol`` (``attempt`` counts consecutive failed syncs, from 0)."""

    symbol: str
    reason: str
    attempt: int = 0
    cause: ResyncCause | None = None


class NeedResubscribe(msgspec.Struct, frozen=True):
    """Unsubscribe and re-subscribe ``symbol``'s book stream to get a fresh WebSocket snapshot."""

    symbol: str
    reason: str
    attempt: int = 0
    cause: ResyncCause | None = None


class BookFailed(msgspec.Struct, frozen=True):
    """``symbol``'s book could not be synced after ``failures`` consecutive attempts; state is ``failed``."""

    symbol: str
    reason: str
    failures: int
    cause: ResyncCause | None = None


class Dropped(msgspec.Struct, frozen=True):
    """A book message was dropped: ``reason`` is ``duplicate`` (not newer than the last applied),
    ``stale`` (older than the snapshot), ``unsynced`` (arrived while waiting for a WebSocket snapshot) or
    ``late_snapshot`` (a REST snapshot nobody asked for)."""

    symbol: str
    reason: str


SyncAction = BookUpdate | NeedSnapshot | NeedResubscribe | BookFailed | Dropped
_BOOK = Channel.BOOK


@dataclass(frozen=True, slots=True)
class BookSyncStats:
    """Counters of one :class:`BookSync` (a snapshot; cheap to create)."""

    state: BookState
    last_sequence: int | None
    gaps: int
    checksum_failures: int
    resyncs: int
    dropped: int
    consecutive_failures: int
    buffered: int
    applied: int
    resyncs_by_cause: dict[str, int] = field(default_factory=dict)
    last_resync_cause: str | None = None
    last_timestamp_ms: int | None = None
    id_restarts: int = 0
    """Times the exchange's update ids were taken to have gone back (a new chain started below the book)."""


class BookSync:
    """Keeps one symbol's :class:`OrderBook` exact.

    Args:
        spec: the adapter's :class:`BookSyncSpec`.
        exchange: exchange id put on emitted :class:`BookUpdate`\\ s.
        symbol: unified symbol.
        exchange_symbol: the exchange's id for it.
        max_failed_syncs: consecutive failed syncs (gap before the book went live again, stale snapshot,
            buffer overflow, checksum failure) after which the book becomes ``failed`` and no more
            snapshots or resubscriptions are requested. A later good snapshot (or :meth:`restart`) recovers.
        max_levels: passed to :class:`OrderBook`.
        feed / amount_unit / contract_size: put on every emitted :class:`BookUpdate` (``contract_size`` may be
            set later, once the instrument list is loaded).
    """

    def __init__(
        self,
        spec: BookSyncSpec,
        exchange: str,
        symbol: str,
        exchange_symbol: str,
        *,
        max_failed_syncs: int = 5,
        max_levels: int | None = None,
        feed: str = "",
        amount_unit: AmountUnit = AmountUnit.BASE,
        contract_size: Decimal | None = None,
    ) -> None:
        if max_failed_syncs < 1:
            raise ValueError("max_failed_syncs must be >= 1")
        self.spec = spec
        self.exchange = exchange
        self.symbol = symbol
        self.exchange_symbol = exchange_symbol
        self.max_failed_syncs = max_failed_syncs
        self.book = OrderBook(symbol, max_levels=max_levels)
        # a snapshot asked for on the WebSocket (HTX req/rep) is stitched exactly as a REST one
        self._rest = spec.source is not SnapshotSource.WEBSOCKET
        # socket-requested snapshots (HTX): the stream's empty diffs move the chain and emit nothing, as the
        # WebSocket source's heartbeats do
        self._skip_empty = spec.source is SnapshotSource.WS_REQUEST
        self._linked = spec.sequence is SequenceModel.LINKED
        self._buffer: list[BookMessage] = []
        self._awaiting_snapshot = False
        self._bridged = False
        self._target = 0
        self._behind_in_row = 0
        self._older_refusals = 0
        # the sequence of the last BookUpdate emitted: the prev_sequence of the next one
        self._emitted_seq: int | None = None
        self.id_restarts = 0
        self.gaps = 0
        self.checksum_failures = 0
        self.resyncs = 0
        self.dropped = 0
        self.applied = 0
        self.consecutive_failures = 0
        self.feed = feed
        self.amount_unit = amount_unit
        self.contract_size = contract_size
        self.resyncs_by_cause: dict[str, int] = {}
        self.last_resync_cause: ResyncCause | None = None
        self.last_timestamp_ms: int | None = None
        self._drop_dup = Dropped(symbol, "duplicate")
        self._drop_stale = Dropped(symbol, "stale")
        self._drop_unsynced = Dropped(symbol, "unsynced")

    # ---------------------------------------------------------------------------------------- inspection
    @property
    def state(self) -> BookState:
        return self.book.state

    def stats(self) -> BookSyncStats:
        """An immutable snapshot of the counters."""
        return BookSyncStats(
            state=self.book.state,
            last_sequence=self.book.last_sequence,
            gaps=self.gaps,
            checksum_failures=self.checksum_failures,
            resyncs=self.resyncs,
            dropped=self.dropped,
            consecutive_failures=self.consecutive_failures,
            buffered=len(self._buffer),
            applied=self.applied,
            resyncs_by_cause=dict(self.resyncs_by_cause),
            last_resync_cause=None if self.last_resync_cause is None else self.last_resync_cause.value,
            last_timestamp_ms=self.last_timestamp_ms,
            id_restarts=self.id_restarts,
        )

    # -------------------------------------------------------------------------------------------- inputs
    def start(self) -> list[SyncAction]:
        """Begin syncing (call when the book stream is subscribed). Returns no actions: a REST snapshot is
        asked for when the first delta has been buffered, so that the snapshot is newer than it."""
        self._reset_pending()
        if self.book.state is not BookState.FAILED:
            self.book.state = BookState.SYNCING if self.book.state is BookState.EMPTY else BookState.RESYNCING
        return []

    def restart(self, reason: str = "restart") -> list[SyncAction]:
        """Forget failures and sync again from scratch (an operator's resync, the feed's retry of a ``failed``
        book). REST source: the next delta asks for a snapshot; WebSocket source: re-subscribe now."""
        if self.book.state is BookState.FAILED and self._older_refusals >= self.max_failed_syncs:
            # the book failed (a bound below OLDER_SNAPSHOT_REFUSALS) with every snapshot older than it: not a
            # lagging replica but ids that went back; the retry starts the new chain instead of failing forever
            self.book.last_sequence = None
            self.id_restarts += 1
        self._older_refusals = 0
        self.consecutive_failures = 0
        self._count(ResyncCause.RESTART)
        self.book.state = BookState.RESYNCING
        self._reset_pending()
        if self._rest:
            return []
        return [NeedResubscribe(self.symbol, reason, 0, ResyncCause.RESTART)]

    def on_connection_lost(self) -> list[SyncAction]:
        """The book stream is gone (call only when no other connection carries it).

        The book becomes ``resyncing`` (a ``failed`` one too: a new connection is a fresh start, its failure
        count cleared); a new sync begins with the next messages. Counted as a resync (cause ``reconnect``),
        not as a failure."""
        self._reset_pending()
        if self.book.state is not BookState.EMPTY:
            self._count(ResyncCause.RECONNECT)
            self.consecutive_failures = 0
            self.book.state = BookState.RESYNCING
        return []

    def on_stale(self) -> list[SyncAction]:
        """The book stream went silent past its watchdog: the book is no longer live (deltas may have been
        missed). REST source: the next delta starts a new sync; WebSocket source: wait for the snapshot the
        engine's re-subscription brings. Counted as a resync (cause ``stale``)."""
        if self.book.state is not BookState.LIVE:
            return []
        self._count(ResyncCause.STALE)
        self._reset_pending()
        self.book.state = BookState.RESYNCING
        return []

    def _count(self, cause: ResyncCause) -> None:
        self.resyncs += 1
        self.resyncs_by_cause[cause.value] = self.resyncs_by_cause.get(cause.value, 0) + 1
        self.last_resync_cause = cause

    def on_snapshot_error(self, reason: str = "snapshot request failed") -> list[SyncAction]:
        """The REST snapshot request failed; counts as a failed sync and asks again (or fails the book)."""
        if not self._rest or not self._awaiting_snapshot:
            return []
        self._awaiting_snapshot = False
        return self._fail(reason, ResyncCause.SNAPSHOT)

    def on_message(self, msg: BookMessage) -> list[SyncAction]:
        """Process one decoded book message (delta or WebSocket snapshot), in arrival order."""
        if self._rest:
            if msg.is_snapshot:
                return self.on_snapshot(msg)
            return self._on_rest_delta(msg)
        if msg.is_snapshot:
            return self._on_ws_snapshot(msg)
        return self._on_ws_update(msg)

    def on_snapshot(self, snap: BookMessage) -> list[SyncAction]:
        """Process a REST snapshot (``snap.last_seq`` = ``lastUpdateId``), then replay the buffered deltas."""
        if not self._rest:
            return self._on_ws_snapshot(snap)
        book = self.book
        if not self._awaiting_snapshot and book.state is BookState.LIVE:
            self.dropped += 1
            return [Dropped(self.symbol, "late_snapshot")]
        self._awaiting_snapshot = False
        if book.last_sequence is not None and snap.last_seq < book.last_sequence:
            if self._older_refusals < OLDER_SNAPSHOT_REFUSALS:
                # Older than what the book already emitted (a lagging REST replica after a resync): applying it
                # would take the book and its consumers back in time, so ask again, with backoff.
                refusals = self._older_refusals + 1
                refused = self._fail(_OLDER_SNAPSHOT, ResyncCause.SNAPSHOT)
                self._older_refusals = refusals  # _fail reset it
                return refused
            # Still older after every retry (seconds of backoff): no replica lags that long; the exchange's ids
            # went back (a restart seen across a reconnect). Start the new chain.
            self.id_restarts += 1
        self._older_refusals = 0
        target = snap.last_seq + self.spec.bridge_offset
        buf = [m for m in self._buffer if m.last_seq >= target]
        stale = len(self._buffer) - len(buf)
        self._buffer = buf
        out: list[SyncAction] = []
        if stale:
            self.dropped += stale
        if buf and buf[0].first_seq > target:
            # The snapshot is older than the first delta we hold: ask for a newer one.
            out.extend(self._fail("snapshot older than buffered deltas", ResyncCause.SNAPSHOT))
            return out
        try:
            bids, asks = book.apply_snapshot(snap.bids, snap.asks, snap.last_seq)
        except ValueError:
            out.extend(self._fail("malformed snapshot", ResyncCause.SNAPSHOT))
            return out
        book.state = BookState.LIVE
        self._bridged = False
        self._target = target
        self.applied += 1
        out.append(self._update(True, bids, asks, snap))
        self._buffer = []
        for m in buf:
            out.extend(self._on_rest_delta(m))
            if book.state is not BookState.LIVE:
                break
        return out

    # --------------------------------------------------------------------------------------- REST source
    def _on_rest_delta(self, msg: BookMessage) -> list[SyncAction]:
        book = self.book
        state = book.state
        if state is not BookState.LIVE:
            return self._buffer_delta(msg)
        last = book.last_sequence
        assert last is not None
        if not self._bridged:
            # With bridge offset 0 (USDⓈ-M) the first applied delta may END at the snapshot id itself.
            target = self._target
            if msg.last_seq < target:
                self.dropped += 1
                return [self._drop_stale]
            if msg.first_seq > target:
                return self._gap(msg, "first delta does not bridge the snapshot")
            self._bridged = True
            if msg.last_seq <= last:
                # It ends at the snapshot id: the snapshot already holds its changes. Dropping it keeps the
                # emitted sequences strictly increasing; the chain continues from the snapshot id.
                self.dropped += 1
                return [self._drop_stale]
            return self._apply_delta(msg)
        if msg.last_seq <= last:
            return self._behind(msg)
        if self._linked:
            if msg.prev_seq != last:
                return self._gap(msg, "prev_seq does not link to the last update")
        elif msg.first_seq > last + 1:
            return self._gap(msg, "first_seq skips past last update + 1")
        return self._apply_delta(msg)

    def _buffer_delta(self, msg: BookMessage) -> list[SyncAction]:
        buf = self._buffer
        if buf and msg.last_seq <= buf[-1].last_seq:
            self.dropped += 1
            return [self._drop_dup]
        if self.book.state is BookState.EMPTY:
            self.book.state = BookState.SYNCING
        out: list[SyncAction] = []
        if len(buf) >= self.spec.max_buffered_deltas:
            buf.clear()
            if self.book.state is BookState.FAILED:
                buf.append(msg)
                return out
            self._awaiting_snapshot = False
            out.extend(
                self._fail("delta buffer overflow while waiting for the snapshot", ResyncCause.OVERFLOW)
            )
            buf.append(msg)
            return out
        buf.append(msg)
        if not self._awaiting_snapshot and self.book.state is not BookState.FAILED:
            self._awaiting_snapshot = True
            out.append(NeedSnapshot(self.symbol, "sync", self.consecutive_failures))
        return out

    # ----------------------------------------------------------------------------------------- WS source
    def _on_ws_snapshot(self, msg: BookMessage) -> list[SyncAction]:
        book = self.book
        if (
            book.state is BookState.LIVE
            and msg.prev_seq is not None
            and book.last_sequence is not None
            and msg.last_seq <= book.last_sequence
        ):
            # e.g. the snapshot a replacement connection receives during rotation: not newer than our book.
            self.dropped += 1
            return [self._drop_dup]
        try:
            bids, asks = book.apply_snapshot(msg.bids, msg.asks, msg.last_seq)
        except ValueError:
            return self._fail_ws("malformed snapshot", ResyncCause.MALFORMED)
        spec = self.spec.checksum
        if spec is not None and msg.checksum and not verify_checksum(book, msg.checksum, spec):
            self.checksum_failures += 1
            return self._fail_ws("checksum mismatch on snapshot", ResyncCause.CHECKSUM)
        book.state = BookState.LIVE
        self.consecutive_failures = 0
        self.applied += 1
        return [self._update(True, bids, asks, msg)]

    def _on_ws_update(self, msg: BookMessage) -> list[SyncAction]:
        book = self.book
        if book.state is not BookState.LIVE:
            self.dropped += 1
            return [self._drop_unsynced]
        prev = msg.prev_seq
        if prev is not None:
            last = book.last_sequence
            if prev != last:
                if last is not None and msg.last_seq <= last:
                    return self._behind(msg)
                self.gaps += 1
                return self._fail_ws("prev_seq does not link to the last update", ResyncCause.GAP)
            if not msg.bids and not msg.asks:
                # Heartbeat (seqId == prevSeqId) or an empty update: the chain moves on, nothing to emit.
                book.last_sequence = msg.last_seq
                return []
        try:
            bids, asks = book.apply_delta(msg.bids, msg.asks, msg.last_seq if prev is not None else None)
        except ValueError:
            return self._fail_ws("malformed update", ResyncCause.MALFORMED)
        spec = self.spec.checksum
        if spec is not None and msg.checksum and not verify_checksum(book, msg.checksum, spec):
            self.checksum_failures += 1
            return self._fail_ws("checksum mismatch", ResyncCause.CHECKSUM)
        self.applied += 1
        self._behind_in_row = 0
        return [self._update(False, bids, asks, msg)]

    def _fail_ws(self, reason: str, cause: ResyncCause) -> list[SyncAction]:
        self.book.state = BookState.RESYNCING
        return self._fail(reason, cause)

    # -------------------------------------------------------------------------------------------- common
    def _apply_delta(self, msg: BookMessage) -> list[SyncAction]:
        self._behind_in_row = 0
        if self._skip_empty and not msg.bids and not msg.asks:
            # an empty diff (HTX's 100 ms diffs may be): the chain moves on, nothing to emit
            self.book.last_sequence = msg.last_seq
            self.consecutive_failures = 0
            return []
        try:
            bids, asks = self.book.apply_delta(msg.bids, msg.asks, msg.last_seq)
        except ValueError:
            self.book.state = BookState.RESYNCING
            self._reset_pending()
            return self._fail("malformed delta", ResyncCause.MALFORMED)
        self.consecutive_failures = 0
        self.applied += 1
        return [self._update(False, bids, asks, msg)]

    def _gap(self, msg: BookMessage, reason: str) -> list[SyncAction]:
        self.gaps += 1
        self.book.state = BookState.RESYNCING
        self._reset_pending()
        out = self._fail(reason, ResyncCause.GAP)
        if self.book.state is not BookState.FAILED:
            # The delta that revealed the gap is the first of the next sync.
            self._buffer.append(msg)
        return out

    def _fail(self, reason: str, cause: ResyncCause) -> list[SyncAction]:
        """Count a failed sync; ask for a new snapshot / resubscription, or give up."""
        self._older_refusals = 0  # counts consecutive failures that were ALL older snapshots (see restart())
        self.consecutive_failures += 1
        self._count(cause)
        book = self.book
        if self.consecutive_failures >= self.max_failed_syncs:
            book.state = BookState.FAILED
            self._awaiting_snapshot = False
            return [BookFailed(self.symbol, reason, self.consecutive_failures, cause)]
        if book.state is BookState.LIVE or book.state is BookState.EMPTY:
            book.state = BookState.RESYNCING
        if self._rest:
            self._awaiting_snapshot = True
            return [NeedSnapshot(self.symbol, reason, self.consecutive_failures, cause)]
        return [NeedResubscribe(self.symbol, reason, self.consecutive_failures, cause)]

    def _behind(self, msg: BookMessage) -> list[SyncAction]:
        """An update at or below the book's sequence: a copy (a rotation overlap, a resend) is dropped; but
        :data:`MAX_BEHIND_IN_ROW` of them in a row with nothing applied between means the exchange's update ids
        went back (a restart of its sequence) and the book would never move again: re-sync (cause ``gap``)."""
        self.dropped += 1
        self._behind_in_row += 1
        if self._behind_in_row < MAX_BEHIND_IN_ROW:
            return [self._drop_dup]
        self._behind_in_row = 0
        reason = (
            f"{MAX_BEHIND_IN_ROW} updates in a row at or below the book's sequence (update ids went back)"
        )
        # the next snapshot carries the new, lower ids: it must not be refused as older than this book
        self.book.last_sequence = None
        self.id_restarts += 1
        if self._rest:
            return self._gap(msg, reason)
        self.gaps += 1
        return self._fail_ws(reason, ResyncCause.GAP)

    def _reset_pending(self) -> None:
        self._behind_in_row = 0
        self._buffer = []
        self._awaiting_snapshot = False
        self._bridged = False

    def _update(
        self,
        is_snapshot: bool,
        bids: tuple[BookLevel, ...],
        asks: tuple[BookLevel, ...],
        msg: BookMessage,
    ) -> BookUpdate:
        ts = msg.timestamp_ms
        self.last_timestamp_ms = ts if ts is not None else msg.receipt_ns // 1_000_000
        prev = None if is_snapshot else self._emitted_seq
        # a snapshot not above what this book emitted before: the exchange's ids went back (or it re-synced at
        # the same point); readers holding a higher sequence must take it, not drop it as a late copy
        reset = is_snapshot and self._emitted_seq is not None and msg.last_seq <= self._emitted_seq
        self._emitted_seq = msg.last_seq
        return BookUpdate(
            self.exchange,
            self.symbol,
            self.exchange_symbol,
            is_snapshot,
            bids,
            asks,
            msg.last_seq,
            ts,
            msg.receipt_ns,
            _BOOK,
            self.feed,
            self.amount_unit,
            self.contract_size,
            prev,
            reset,
        )
