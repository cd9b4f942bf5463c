"""CRC32 interleaved checksum: OKX legacy recording vectors and hand-made edge cases."""

from __future__ import annotations

import zlib
from collections.abc import Sequence

from cryptolink import recordings
from cryptolink.book.checksum import book_checksum, checksum_payload, crc32_levels, verify_checksum
from cryptolink.book.orderbook import OrderBook
from cryptolink.exchanges.base import BookMessage, ChecksumSpec
from cryptolink.exchanges.okx import OkxAdapter


def test_payload_interleaves_and_continues_with_longer_side() -> None:
    bids = [("3", "1"), ("2", "1.0"), ("1", "5")]
    asks = [("4", "2")]
    assert checksum_payload(bids, asks, 25) == "3:1:4:2:2:1.0:1:5"
    assert checksum_payload(asks, bids, 2) == "4:2:3:1:2:1.0"


def test_depth_limits_levels() -> None:
    bids = [(str(100 - i), "1") for i in range(30)]
    asks = [(str(101 + i), "1") for i in range(30)]
    assert checksum_payload(bids, asks, 25).count(":") == 25 * 4 - 1


def test_signed_and_unsigned() -> None:
    # find levels whose crc32 has the top bit set, so signed and unsigned differ
    for i in range(100):
        bids, asks = [(str(i), "1")], [(str(i + 1), "2")]
        raw = zlib.crc32(f"{i}:1:{i + 1}:2".encode())
        if raw >= 2**31:
            break
    assert crc32_levels(bids, asks, ChecksumSpec(signed=False)) == raw
    assert crc32_levels(bids, asks, ChecksumSpec(signed=True)) == raw - 2**32


def test_original_strings_matter() -> None:
    a = OrderBook()
    a.apply_snapshot([["1.0", "2"]], [["1.5", "3"]])
    b = OrderBook()
    b.apply_snapshot([["1.00", "2"]], [["1.5", "3"]])
    assert a.best_bid() == b.best_bid()
    assert book_checksum(a) != book_checksum(b)


def _okx_book_messages() -> list[BookMessage]:
    ad = OkxAdapter()
    out: list[BookMessage] = []
    for rec in recordings.iter_cryptofeed_ws("cryptofeed_okx_OKX.ws.1.0.gz"):
        if rec.kind != "received":
            continue
        out.extend(m for m in ad.decode(rec.payload, 0) if isinstance(m, BookMessage))
    return out


def test_every_okx_recorded_checksum_verifies_and_corruption_fails() -> None:
    books: dict[str, OrderBook] = {}
    verified = 0
    corrupted_detected = 0
    for msg in _okx_book_messages():
        book = books.setdefault(msg.exchange_symbol, OrderBook(msg.symbol))
        if msg.is_snapshot:
            book.apply_snapshot(msg.bids, msg.asks)
        else:
            book.apply_delta(msg.bids, msg.asks)
        assert msg.checksum is not None
        assert verify_checksum(book, msg.checksum), msg.exchange_symbol
        verified += 1
        # corrupt the best bid's size text (same value, different text) and the check must fail
        bids, asks = book.top_strings(25)
        bad = [(bids[0][0], bids[0][1] + "0"), *bids[1:]]
        if crc32_levels(bad, asks) != msg.checksum:
            corrupted_detected += 1
    assert verified == 290
    assert corrupted_detected == 290


def test_an_exchange_checksum_function_replaces_the_default_crc32() -> None:
    """``ChecksumSpec.compute`` gets the top ``depth`` levels, original strings, best first; its value is what
    ``book_checksum`` and ``verify_checksum`` use (compared modulo 2**32)."""
    seen: list[tuple[list[tuple[str, str]], list[tuple[str, str]]]] = []

    def compute(bids: Sequence[Sequence[str]], asks: Sequence[Sequence[str]]) -> int:
        seen.append(([(b[0], b[1]) for b in bids], [(a[0], a[1]) for a in asks]))
        return 0xFFFFFFFF  # an unsigned value: equals -1 modulo 2**32

    book = OrderBook("X/Y")
    book.apply_snapshot([["1.0", "2"], ["0.90", "1"], ["0.8", "5"]], [["1.10", "3"]], 1)
    spec = ChecksumSpec(depth=2, signed=True, compute=compute)
    assert book_checksum(book, spec) == 0xFFFFFFFF
    assert seen == [([("1.0", "2"), ("0.90", "1")], [("1.10", "3")])]
    assert verify_checksum(book, -1, spec) and not verify_checksum(book, 5, spec)
    assert book_checksum(book, ChecksumSpec(depth=2)) != 0xFFFFFFFF  # without compute: the default CRC32
