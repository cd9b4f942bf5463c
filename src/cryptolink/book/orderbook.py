"""An exact L2 order book for one symbol.

Prices and sizes are kept as :class:`~decimal.Decimal` for ordering and arithmetic AND as the exchange's
original strings, because exchange checksums are computed on the original text (``"0.10"`` != ``"0.1"``).
Bids are kept best (highest) first and asks best (lowest) first in :class:`sortedcontainers.SortedDict`\\ s.

Units: prices in quote currency; sizes in base currency (spot) or contracts (e.g. OKX SWAP), as the exchange
sent them. The book itself does no sequence checking; :class:`cryptolink.book.sync.BookSync` does, and drives
:attr:`OrderBook.state`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal, InvalidOperation
from enum import StrEnum

from sortedcontainers import SortedDict

from cryptolink.models import BookLevel

__all__ = ["BookState", "OrderBook"]

_dict_set = dict.__setitem__

_Level = tuple[Decimal, Decimal, str, str]
"""Stored value of one level: ``(price, size, original price text, original size text)``."""


class BookState(StrEnum):
    """Where a book is in its sync life cycle (see :class:`cryptolink.book.sync.BookSync`)."""

    EMPTY = "empty"
    """Never synced."""
    SYNCING = "syncing"
    """First sync in progress (waiting for a snapshot / for deltas to bridge it)."""
    LIVE = "live"
    """Snapshot applied and every later delta passed the sequence (and checksum) checks."""
    RESYNCING = "resyncing"
    """A gap, checksum failure or connection loss happened; do not use the book until it is live again."""
    FAILED = "failed"
    """Sync gave up after bounded retries; visible, never silently stale."""


class OrderBook:
    """L2 book: ``price -> size`` per side, with the original strings kept.

    Args:
        symbol: unified symbol (``BTC/USDT``), informational.
        max_levels: keep at most this many levels per side (the worst are trimmed after each change);
            ``None``: unbounded. Levels beyond the bound may be inexact; the top levels stay exact.

    Levels are given as sequences whose first two items are the price and size strings (extra items, such as
    OKX's order count, are ignored). A size of zero deletes the level; deleting an unknown level is normal.

    Raises:
        ValueError: from :meth:`apply_snapshot`/:meth:`apply_delta` when a price or size is not a decimal
            number or a level has fewer than two items (the book is left unchanged for snapshots; for deltas
            the levels before the bad one stay applied, so callers should resync).
    """

    __slots__ = ("_asks", "_bids", "last_sequence", "max_levels", "state", "symbol")

    def __init__(self, symbol: str = "", *, max_levels: int | None = None) -> None:
        if max_levels is not None and max_levels < 1:
            raise ValueError(f"max_levels must be >= 1 or None, got {max_levels}")
        self.symbol = symbol
        self.max_levels = max_levels
        # bids are keyed by the NEGATED price so that index 0 is the best (highest) bid.
        self._bids: SortedDict = SortedDict()
        self._asks: SortedDict = SortedDict()
        self.state: BookState = BookState.EMPTY
        self.last_sequence: int | None = None
        """Exchange update id of the last applied snapshot or delta (``None`` before the first)."""

    # ---------------------------------------------------------------------------------------------- changes
    def clear(self) -> None:
        """Remove every level and forget the last sequence (the state is left to the caller)."""
        self._bids.clear()
        self._asks.clear()
        self.last_sequence = None

    def apply_snapshot(
        self,
        bids: Iterable[Sequence[str]],
        asks: Iterable[Sequence[str]],
        sequence: int | None = None,
    ) -> tuple[tuple[BookLevel, ...], tuple[BookLevel, ...]]:
        """Replace the whole book.

        Returns:
            ``(bids, asks)`` as ``(price, size)`` Decimal tuples, best first, zero sizes left out.
        """
        new_bids: dict[Decimal, _Level] = {}
        new_asks: dict[Decimal, _Level] = {}
        try:
            for lvl in bids:
                px_s = lvl[0]
                sz_s = lvl[1]
                sz = Decimal(sz_s)
                if sz:
                    px = Decimal(px_s)
                    new_bids[-px] = (px, sz, px_s, sz_s)
            for lvl in asks:
                px_s = lvl[0]
                sz_s = lvl[1]
                sz = Decimal(sz_s)
                if sz:
                    px = Decimal(px_s)
                    new_asks[px] = (px, sz, px_s, sz_s)
        except (InvalidOperation, TypeError, IndexError) as exc:
            raise ValueError(f"bad level in snapshot: {exc!r}") from exc
        self._bids = SortedDict(new_bids)
        self._asks = SortedDict(new_asks)
        if self.max_levels is not None:
            self._trim()
        if sequence is not None:
            self.last_sequence = sequence
        return (
            tuple((v[0], v[1]) for v in self._bids.values()),
            tuple((v[0], v[1]) for v in self._asks.values()),
        )

    def apply_delta(
        self,
        bids: Iterable[Sequence[str]],
        asks: Iterable[Sequence[str]],
        sequence: int | None = None,
    ) -> tuple[tuple[BookLevel, ...], tuple[BookLevel, ...]]:
        """Apply changed levels (absolute sizes; size 0 deletes).

        Returns:
            ``(bids, asks)``: the changed levels as ``(price, size)`` Decimals in the order given
            (size 0 = deleted).
        """
        out_b: list[BookLevel] = []
        out_a: list[BookLevel] = []
        book_b = self._bids
        book_a = self._asks
        try:
            for lvl in bids:
                px_s = lvl[0]
                sz_s = lvl[1]
                px = Decimal(px_s)
                sz = Decimal(sz_s)
                key = -px
                if sz:
                    if key in book_b:  # existing level: plain dict store, the sort order is unchanged
                        _dict_set(book_b, key, (px, sz, px_s, sz_s))
                    else:
                        book_b[key] = (px, sz, px_s, sz_s)
                elif key in book_b:
                    del book_b[key]
                out_b.append((px, sz))
            for lvl in asks:
                px_s = lvl[0]
                sz_s = lvl[1]
                px = Decimal(px_s)
                sz = Decimal(sz_s)
                if sz:
                    if px in book_a:
                        _dict_set(book_a, px, (px, sz, px_s, sz_s))
                    else:
                        book_a[px] = (px, sz, px_s, sz_s)
                elif px in book_a:
                    del book_a[px]
                out_a.append((px, sz))
        except (InvalidOperation, TypeError, IndexError) as exc:
            raise ValueError(f"bad level in delta: {exc!r}") from exc
        if self.max_levels is not None:
            self._trim()
        if sequence is not None:
            self.last_sequence = sequence
        return tuple(out_b), tuple(out_a)

    def _trim(self) -> None:
        limit = self.max_levels
        assert limit is not None
        for side in (self._bids, self._asks):
            while len(side) > limit:
                side.popitem(-1)

    # ---------------------------------------------------------------------------------------------- views
    def best_bid(self) -> BookLevel | None:
        """Highest bid as ``(price, size)``, or ``None`` when there are no bids."""
        if not self._bids:
            return None
        v = self._bids.peekitem(0)[1]
        return (v[0], v[1])

    def best_ask(self) -> BookLevel | None:
        """Lowest ask as ``(price, size)``, or ``None`` when there are no asks."""
        if not self._asks:
            return None
        v = self._asks.peekitem(0)[1]
        return (v[0], v[1])

    def top(self, n: int) -> tuple[tuple[BookLevel, ...], tuple[BookLevel, ...]]:
        """The best ``n`` levels per side: ``(bids best first, asks best first)`` as ``(price, size)``."""
        bids = self._bids
        asks = self._asks
        return (
            tuple((v[0], v[1]) for v in (bids[k] for k in bids.islice(0, n))),
            tuple((v[0], v[1]) for v in (asks[k] for k in asks.islice(0, n))),
        )

    def top_strings(self, n: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """The best ``n`` levels per side as the ORIGINAL ``(price, size)`` strings (for checksums)."""
        bids = self._bids
        asks = self._asks
        return (
            [(v[2], v[3]) for v in (bids[k] for k in bids.islice(0, n))],
            [(v[2], v[3]) for v in (asks[k] for k in asks.islice(0, n))],
        )

    def bids(self) -> dict[Decimal, Decimal]:
        """All bids as a new ``{price: size}`` dict (O(levels); not for the per-frame path)."""
        return {v[0]: v[1] for v in self._bids.values()}

    def asks(self) -> dict[Decimal, Decimal]:
        """All asks as a new ``{price: size}`` dict (O(levels); not for the per-frame path)."""
        return {v[0]: v[1] for v in self._asks.values()}

    @property
    def depth(self) -> tuple[int, int]:
        """``(number of bid levels, number of ask levels)``."""
        return len(self._bids), len(self._asks)

    def __len__(self) -> int:
        return len(self._bids) + len(self._asks)

    def __repr__(self) -> str:
        return (
            f"OrderBook({self.symbol!r}, state={self.state.value}, seq={self.last_sequence}, "
            f"bid={self.best_bid()}, ask={self.best_ask()}, depth={self.depth})"
        )
