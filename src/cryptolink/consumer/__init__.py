"""Reading what the NATS sink publishes: decoding, a durable reader, book rebuilding, and ``cryptolink tail``.

The NATS sink publishes every normalized event into the JetStream stream ``CRYPTOLINK`` (subjects
``<root>.>``, root ``cryptolink`` by default) on ``<root>.<channel>.<exchange>.<symbol token>``, channels
``trades``, ``ticker``, ``book`` and ``gaps`` (:mod:`cryptolink.sinks.nats_subjects`), as
``msgspec.json.encode(event)`` with a deterministic ``Nats-Msg-Id``: when several publishers publish the same
events, the stream keeps one copy of each.

Pieces:

- :func:`~cryptolink.consumer.decode.decode` — subject + payload -> :class:`~cryptolink.models.Trade`,
  :class:`~cryptolink.models.Ticker`, :class:`~cryptolink.models.BookUpdate` or :class:`~cryptolink.models.Gap`
  with exact decimals; :class:`~cryptolink.consumer.decode.MalformedMessage` otherwise.
- :class:`~cryptolink.consumer.reader.JetStreamReader` — a durable pull consumer on the stream: ``async for
  subject, event, position in reader`` (stream order, each message acknowledged once the caller got it, resumes
  where it stopped when reopened under the same ``durable`` name; malformed messages counted and skipped).
- :class:`~cryptolink.consumer.books.BookRebuilder` — sans-I/O: feed it every event in stream order; it keeps
  one L2 book per (exchange, symbol) with the ``prev_sequence`` rule (a missed update makes the book not live
  until the next snapshot; stale snapshots from a lagging publisher are ignored), checks trades for duplicates and
  missing ids (:class:`~cryptolink.consumer.books.TradeChecker`), drops duplicate tickers and gaps, and counts
  everything in :class:`~cryptolink.consumer.books.ConsumerStats`.
- :func:`~cryptolink.consumer.tail.tail` — behind ``cryptolink tail SUBJECT``: one line per message, live or from
  the stream's start.

Rebuilding books from the stream:

.. code-block:: python

    import asyncio

    from cryptolink.consumer import BookRebuilder, JetStreamReader, Verdict

    async def main() -> None:
        rebuilder = BookRebuilder()
        async with JetStreamReader(
            "my-books",                            # durable name: rerun to resume where it stopped
            servers=["nats://127.0.0.1:4222"],
            filter_subject="cryptolink.book.>",    # books only (trades: cryptolink.trades.>)
            on_malformed=rebuilder.note_malformed,
        ) as reader:
            async for subject, event, pos in reader:
                verdict = rebuilder.feed(event)
                if verdict is Verdict.GAP:
                    print(f"{subject}: missed an update at stream seq {pos.stream_seq}; waiting for a snapshot")
                book = rebuilder.book(event.exchange, event.symbol)
                if book is not None and book.live:
                    print(subject, book.sequence, book.best_bid(), book.best_ask())

    asyncio.run(main())

A book is usable while ``book.live``; ``rebuilder.stats()`` says how many duplicates were skipped, gaps found,
stale snapshots ignored and deltas skipped while a book waited for its snapshot. Read from the stream's start
(``deliver="all"``, the default for a new durable) so each book begins with its publisher's snapshot.

:mod:`cryptolink.consumer.books` and :mod:`cryptolink.consumer.decode` do no I/O and do not import ``nats``;
the reader and tail names are imported on first use (the ``tail`` coroutine itself lives in
:mod:`cryptolink.consumer.tail`; the package attribute ``tail`` is that module).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from cryptolink.consumer.books import (
    DEFAULT_CONTIGUOUS,
    BookRebuilder,
    ConsumerStats,
    RebuiltBook,
    TradeChecker,
    TradeStats,
    Verdict,
)
from cryptolink.consumer.decode import MalformedMessage, decode

if TYPE_CHECKING:
    from cryptolink.consumer.reader import (
        JetStreamReader,
        NatsCredentials,
        NatsUnavailable,
        ReaderError,
        ReaderStats,
        StreamPosition,
        connect_nats,
    )
    from cryptolink.consumer.tail import TailError, TailStats, format_line

__all__ = [
    "DEFAULT_CONTIGUOUS",
    "BookRebuilder",
    "ConsumerStats",
    "JetStreamReader",
    "MalformedMessage",
    "NatsCredentials",
    "NatsUnavailable",
    "ReaderError",
    "ReaderStats",
    "RebuiltBook",
    "StreamPosition",
    "TailError",
    "TailStats",
    "TradeChecker",
    "TradeStats",
    "Verdict",
    "connect_nats",
    "decode",
    "format_line",
]

_LAZY = {
    "JetStreamReader": "reader",
    "NatsCredentials": "reader",
    "NatsUnavailable": "reader",
    "ReaderError": "reader",
    "ReaderStats": "reader",
    "StreamPosition": "reader",
    "connect_nats": "reader",
    "TailError": "tail",
    "TailStats": "tail",
    "format_line": "tail",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value
