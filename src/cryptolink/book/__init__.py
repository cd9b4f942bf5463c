"""L2 order books: the exact book (:mod:`.orderbook`), CRC32 checksums (:mod:`.checksum`) and the sans-I/O
per-symbol sync (:mod:`.sync`)."""

from cryptolink.book.checksum import book_checksum, checksum_payload, crc32_levels, verify_checksum
from cryptolink.book.orderbook import BookState, OrderBook
from cryptolink.book.sync import (
    BookFailed,
    BookSync,
    BookSyncStats,
    Dropped,
    NeedResubscribe,
    NeedSnapshot,
    SyncAction,
)

__all__ = [
    "BookFailed",
    "BookState",
    "BookSync",
    "BookSyncStats",
    "Dropped",
    "NeedResubscribe",
    "NeedSnapshot",
    "OrderBook",
    "SyncAction",
    "book_checksum",
    "checksum_payload",
    "crc32_levels",
    "verify_checksum",
]
