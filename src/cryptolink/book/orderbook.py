"""An exact L2 order book for one symbol.

Prices and sizes are kept as :class:`~decimal.Decimal` for ordering and arithmetic AND as the exchange's
original strings, because exchange checksums are computed on the original text (``"0.10"`` != ``"0.1"``).
Each side is a dict of levels plus a sorted key list (best level last).

Per-level cost. ``Decimal(text)`` (~0.2 us) and above all the first ``hash()`` of a new non-integer Decimal
(~0.4 us: a modular power, cached on the object only afterwards) and Decimal comparisons in the sorted key
list dominated the application of a level. So:

- the module keeps bounded, process-wide ``text -> Decimal`` caches (the same text always gives the same
  immutable Decimal, so a hit is exact by construction);
- the dict/list KEY of a level is a float when every price text of the book is a plain decimal numeral
  (ASCII digits with at most one ``.``) of at most 15 digits. Such a numeral converts to the nearest double,
  and doubles keep 15 significant decimal digits (DBL_DIG), so distinct values give distinct floats in the
  same order and equal values (``"1.0"``, ``"1.00"``) the same float: the key is exact for these texts.
  The first price text that is not such a numeral switches the book to Decimal keys (for good, until a
  snapshot whose prices all qualify). Emitted and stored prices/sizes are always the Decimals of the
  exchange's text.

Units: prices in quote currency; sizes in base currency (spot) or contracts (e.g. OKX SWAP), as the exchange
sent them. The book itself does no sequence checking; :class:`cryptolink.book.sync.BookSync` does, and drives
:attr:`OrderBook.state`.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable, Iterator, Sequence
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from itertools import chain, islice
from typing import TypeVar

from cryptolink.models import BookLevel

__all__ = ["DECIMAL_CACHE_SIZE", "BookState", "OrderBook"]

DECIMAL_CACHE_SIZE = 16384
"""Most texts kept in each of the process-wide caches (size ``text -> Decimal``, price ``text -> (Decimal,
float key, negated float key)``, price ``text -> negated Decimal`` for Decimal-keyed books); when one is full its
older half is dropped (insertion order). ~0.2-0.3 KiB per entry, so at most ~12 MiB in all. A Binance spot
BTCUSDT depth stream (36 levels per delta) hits ~75%."""

_Key = float | Decimal
_T = TypeVar("_T")
_PxEntry = tuple[Decimal, float | None, float | None]
_DEC: dict[str, Decimal] = {}
_PX: dict[str, _PxEntry] = {}
_NEG: dict[str, Decimal] = {}

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

    Storage (per side): a plain dict ``key -> level`` and a sorted list of the keys, ascending, with the BEST
    level LAST (bids keyed by price, asks by the negated price; the key is a float or a Decimal, see the module
    docstring). Most changes happen near the top of the book, i.e. near the end of the list, so
    ``bisect.insort``/``del`` move few pointers; updates of existing levels touch only the dict.

    Raises:
        ValueError: from :meth:`apply_snapshot`/:meth:`apply_delta` when a price or size is not a decimal
            number or a level has fewer than two items (the book is left unchanged for snapshots; for deltas
            the levels before the bad one stay applied, so callers should resync).
    """

    __slots__ = (
        "_ask_keys",
        "_asks",
        "_bid_keys",
        "_bids",
        "_float_keys",
        "last_sequence",
        "max_levels",
        "state",
        "symbol",
    )

    def __init__(self, symbol: str = "", *, max_levels: int | None = None) -> None:
        if max_levels is not None and max_levels < 1:
            raise ValueError(f"max_levels must be >= 1 or None, got {max_levels}")
        self.symbol = symbol
        self.max_levels = max_levels
        # bids keyed by price, asks by -price; key lists ascending, so the best level is the LAST key.
        self._bids: dict[_Key, _Level] = {}
        self._asks: dict[_Key, _Level] = {}
        self._bid_keys: list[_Key] = []
        self._ask_keys: list[_Key] = []
        self._float_keys = True
        self.state: BookState = BookState.EMPTY
        self.last_sequence: int | None = None
        """Exchange update id of the last applied snapshot or delta (``None`` before the first)."""

    # ---------------------------------------------------------------------------------------------- changes
    def clear(self) -> None:
        """Remove every level and forget the last sequence (the state is left to the caller)."""
        self._bids.clear()
        self._asks.clear()
        self._bid_keys.clear()
        self._ask_keys.clear()
        self._float_keys = True
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
        try:
            levels_b = _parse(bids)
            levels_a = _parse(asks)
        except (InvalidOperation, TypeError, IndexError) as exc:
            raise ValueError(f"bad level in snapshot: {exc!r}") from exc
        float_keys = all(e[1] is not None for e, _ in levels_b) and all(e[1] is not None for e, _ in levels_a)
        new_bids: dict[_Key, _Level] = {}
        new_asks: dict[_Key, _Level] = {}
        if float_keys:
            for e, lvl in levels_b:
                new_bids[e[1]] = lvl  # type: ignore[index]
            for e, lvl in levels_a:
                new_asks[e[2]] = lvl  # type: ignore[index]
        else:
            for e, lvl in levels_b:
                new_bids[e[0]] = lvl
            for e, lvl in levels_a:
                new_asks[_ask_key(lvl[2], e[0])] = lvl
        self._float_keys = float_keys
        self._bids = new_bids
        self._asks = new_asks
        self._bid_keys = sorted(new_bids)
        self._ask_keys = sorted(new_asks)
        if self.max_levels is not None:
            self._trim()
        if sequence is not None:
            self.last_sequence = sequence
        b = self._bids
        a = self._asks
        return (
            tuple((v[0], v[1]) for v in (b[k] for k in reversed(self._bid_keys))),
            tuple((v[0], v[1]) for v in (a[k] for k in reversed(self._ask_keys))),
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
        try:
            self._apply_side(iter(bids), False, out_b)
            self._apply_side(iter(asks), True, out_a)
        except (InvalidOperation, TypeError, IndexError) as exc:
            raise ValueError(f"bad level in delta: {exc!r}") from exc
        if self.max_levels is not None:
            self._trim()
        if sequence is not None:
            self.last_sequence = sequence
        return tuple(out_b), tuple(out_a)

    def _apply_side(self, levels: Iterator[Sequence[str]], ask: bool, out: list[BookLevel]) -> None:
        """Apply one side's changed levels, appending ``(price, size)`` to ``out`` in order."""
        if ask:
            book = self._asks
            keys = self._ask_keys
        else:
            book = self._bids
            keys = self._bid_keys
        dec = _DEC.get
        append = out.append
        if self._float_keys:
            px_get = _PX.get
            ki = 2 if ask else 1
            for lvl in levels:
                px_s = lvl[0]
                sz_s = lvl[1]
                ent = px_get(px_s)
                if ent is None:
                    ent = _px_miss(px_s)
                key = ent[ki]
                if key is None:
                    # Not a short plain numeral: switch this book to Decimal keys and go on with them.
                    self._to_decimal_keys()
                    levels = chain((lvl,), levels)
                    break
                px = ent[0]
                sz = dec(sz_s)
                if sz is None:
                    sz = _miss(sz_s)
                if sz:
                    if key not in book:
                        insort(keys, key)
                    book[key] = (px, sz, px_s, sz_s)
                elif book.pop(key, None) is not None:
                    del keys[bisect_left(keys, key)]
                append((px, sz))
            else:
                return
        px_get = _PX.get
        for lvl in levels:
            px_s = lvl[0]
            sz_s = lvl[1]
            ent = px_get(px_s)
            if ent is None:
                ent = _px_miss(px_s)
            px = ent[0]
            dkey: Decimal = _ask_key(px_s, px) if ask else px
            sz = dec(sz_s)
            if sz is None:
                sz = _miss(sz_s)
            if sz:
                if dkey not in book:
                    insort(keys, dkey)
                book[dkey] = (px, sz, px_s, sz_s)
            elif book.pop(dkey, None) is not None:
                del keys[bisect_left(keys, dkey)]
            append((px, sz))

    def _to_decimal_keys(self) -> None:
        """Re-key both sides by Decimal (in place, so the callers' references stay valid)."""
        self._float_keys = False
        for book, keys, ask in ((self._bids, self._bid_keys, False), (self._asks, self._ask_keys, True)):
            levels = list(book.values())
            book.clear()
            for lvl in levels:
                book[_ask_key(lvl[2], lvl[0]) if ask else lvl[0]] = lvl
            keys[:] = sorted(book)

    def _trim(self) -> None:
        limit = self.max_levels
        assert limit is not None
        for book, keys in ((self._bids, self._bid_keys), (self._asks, self._ask_keys)):
            excess = len(keys) - limit
            if excess > 0:
                for k in keys[:excess]:  # the worst levels are first
                    del book[k]
                del keys[:excess]

    # ---------------------------------------------------------------------------------------------- views
    def best_bid(self) -> BookLevel | None:
        """Highest bid as ``(price, size)``, or ``None`` when there are no bids."""
        if not self._bid_keys:
            return None
        v = self._bids[self._bid_keys[-1]]
        return (v[0], v[1])

    def best_ask(self) -> BookLevel | None:
        """Lowest ask as ``(price, size)``, or ``None`` when there are no asks."""
        if not self._ask_keys:
            return None
        v = self._asks[self._ask_keys[-1]]
        return (v[0], v[1])

    @staticmethod
    def _best(keys: list[_Key], n: int) -> list[_Key]:
        """The best ``n`` keys, best first."""
        if n <= 0:
            return []
        return keys[: -n - 1 : -1] if n < len(keys) else keys[::-1]

    def top(self, n: int) -> tuple[tuple[BookLevel, ...], tuple[BookLevel, ...]]:
        """The best ``n`` levels per side: ``(bids best first, asks best first)`` as ``(price, size)``."""
        bids = self._bids
        asks = self._asks
        return (
            tuple((v[0], v[1]) for v in (bids[k] for k in self._best(self._bid_keys, n))),
            tuple((v[0], v[1]) for v in (asks[k] for k in self._best(self._ask_keys, n))),
        )

    def top_strings(self, n: int) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """The best ``n`` levels per side as the ORIGINAL ``(price, size)`` strings (for checksums)."""
        bids = self._bids
        asks = self._asks
        return (
            [(v[2], v[3]) for v in (bids[k] for k in self._best(self._bid_keys, n))],
            [(v[2], v[3]) for v in (asks[k] for k in self._best(self._ask_keys, n))],
        )

    def bids(self) -> dict[Decimal, Decimal]:
        """All bids as a new ``{price: size}`` dict, best first (O(levels); not for the per-frame path)."""
        b = self._bids
        return {v[0]: v[1] for v in (b[k] for k in reversed(self._bid_keys))}

    def asks(self) -> dict[Decimal, Decimal]:
        """All asks as a new ``{price: size}`` dict, best first (O(levels); not for the per-frame path)."""
        a = self._asks
        return {v[0]: v[1] for v in (a[k] for k in reversed(self._ask_keys))}

    @property
    def depth(self) -> tuple[int, int]:
        """``(number of bid levels, number of ask levels)``."""
        return len(self._bid_keys), len(self._ask_keys)

    def __len__(self) -> int:
        return len(self._bid_keys) + len(self._ask_keys)

    def __repr__(self) -> str:
        return (
            f"OrderBook({self.symbol!r}, state={self.state.value}, seq={self.last_sequence}, "
            f"bid={self.best_bid()}, ask={self.best_ask()}, depth={self.depth})"
        )


def _parse(levels: Iterable[Sequence[str]]) -> list[tuple[_PxEntry, _Level]]:
    """Non-zero levels as ``(price cache entry, stored level)``."""
    out: list[tuple[_PxEntry, _Level]] = []
    dec = _DEC.get
    px_get = _PX.get
    for lvl in levels:
        px_s = lvl[0]
        sz_s = lvl[1]
        sz = dec(sz_s)
        if sz is None:
            sz = _miss(sz_s)
        if sz:
            ent = px_get(px_s)
            if ent is None:
                ent = _px_miss(px_s)
            out.append((ent, (ent[0], sz, px_s, sz_s)))
    return out


def _miss(text: str) -> Decimal:
    """``Decimal(text)``, remembered (raises ``InvalidOperation``/``TypeError`` for a bad text)."""
    value = Decimal(text)
    if len(_DEC) >= DECIMAL_CACHE_SIZE:
        _drop_older_half(_DEC)
    _DEC[text] = value
    return value


def _px_miss(text: str) -> _PxEntry:
    """``(Decimal(text), float key, negated float key)``, remembered; the keys are ``None`` unless ``text`` is
    a plain ASCII decimal numeral of at most 15 digits (see the module docstring)."""
    value = Decimal(text)
    entry: _PxEntry
    if (
        type(text) is str
        and len(text) <= 16
        and text.isascii()
        and (len(text) <= 15 or "." in text)
        and text.replace(".", "", 1).isdigit()
    ):
        key = float(text)
        entry = (value, key, -key)
    else:
        entry = (value, None, None)
    if len(_PX) >= DECIMAL_CACHE_SIZE:
        _drop_older_half(_PX)
    _PX[text] = entry
    return entry


def _ask_key(text: str, price: Decimal) -> Decimal:
    """The Decimal ask key ``-price`` (exact) for the price text ``text``, remembered."""
    key = _NEG.get(text)
    if key is None:
        key = price.copy_negate()
        if len(_NEG) >= DECIMAL_CACHE_SIZE:
            _drop_older_half(_NEG)
        _NEG[text] = key
    return key


def _drop_older_half(cache: dict[str, _T]) -> None:
    """Remove the older half of ``cache`` (dicts keep insertion order)."""
    for text in list(islice(cache, len(cache) // 2)):
        cache.pop(text, None)
