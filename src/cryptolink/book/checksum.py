"""CRC32 book checksums over the top N levels, bids and asks interleaved.

Algorithm (OKX legacy ``checksum``; docs/protocols/okx.md "Checksum", from the OKX order book channel docs): for
``i`` in ``0..depth-1`` append ``bid[i].price``, ``bid[i].size`` if bid ``i`` exists, then ``ask[i].price``,
``ask[i].size`` if ask ``i`` exists (so when one side runs out the other continues alone); join with ``:``;
CRC32 of the UTF-8 bytes; compared as a signed int32 when :attr:`ChecksumSpec.signed`. The ORIGINAL price/size
strings are used: trailing zeros matter. An exchange with another rule sets :attr:`ChecksumSpec.compute`, which
:func:`book_checksum` (and so the book sync) uses instead.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

from cryptolink.book.orderbook import OrderBook
from cryptolink.exchanges.base import ChecksumSpec

__all__ = ["DEFAULT_SPEC", "book_checksum", "checksum_payload", "crc32_levels", "verify_checksum"]

DEFAULT_SPEC = ChecksumSpec()
"""Top 25 levels, signed int32 (OKX legacy)."""


def checksum_payload(bids: Sequence[Sequence[str]], asks: Sequence[Sequence[str]], depth: int = 25) -> str:
    """The ``bid1px:bid1sz:ask1px:ask1sz:...`` text over the first ``depth`` levels per side (best first)."""
    parts: list[str] = []
    nb = min(len(bids), depth)
    na = min(len(asks), depth)
    for i in range(max(nb, na)):
        if i < nb:
            b = bids[i]
            parts.append(b[0])
            parts.append(b[1])
        if i < na:
            a = asks[i]
            parts.append(a[0])
            parts.append(a[1])
    return ":".join(parts)


def crc32_levels(
    bids: Sequence[Sequence[str]], asks: Sequence[Sequence[str]], spec: ChecksumSpec = DEFAULT_SPEC
) -> int:
    """CRC32 of :func:`checksum_payload`; a signed int32 (``-2**31 .. 2**31-1``) when ``spec.signed``."""
    value = zlib.crc32(checksum_payload(bids, asks, spec.depth).encode())
    if spec.signed and value >= 0x80000000:
        value -= 0x100000000
    return value


def book_checksum(book: OrderBook, spec: ChecksumSpec = DEFAULT_SPEC) -> int:
    """Checksum of ``book``'s top ``spec.depth`` levels, computed on the original strings.

    The exchange's own function (:attr:`ChecksumSpec.compute`, given the top bids and asks as ``[price, size]``
    strings, best first) when the spec sets one, else the interleaved CRC32 of :func:`crc32_levels`.
    """
    bids, asks = book.top_strings(spec.depth)
    if spec.compute is not None:
        return spec.compute(bids, asks)
    return crc32_levels(bids, asks, spec)


def verify_checksum(book: OrderBook, expected: int, spec: ChecksumSpec = DEFAULT_SPEC) -> bool:
    """Whether ``book`` matches the exchange's ``expected`` checksum.

    An unsigned ``expected`` is accepted too when ``spec.signed`` (compared modulo 2**32).
    """
    actual = book_checksum(book, spec)
    return (actual - expected) % 0x100000000 == 0
