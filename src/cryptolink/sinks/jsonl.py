"""JSON Lines output of normalized market events, one file per (exchange, channel).

Layout: ``<out_dir>/<exchange>/<channel>.jsonl``, e.g. ``data/binance/trades.jsonl``, ``data/okx/book.jsonl``.
Files are opened in append mode, so restarts add to them. Each line is one
:class:`~cryptolink.models.Trade`, :class:`~cryptolink.models.Ticker` or
:class:`~cryptolink.models.BookUpdate` encoded by :mod:`msgspec` with every field (``Decimal`` prices and
sizes as JSON strings, exactly as received; book levels as ``[["price","size"], ...]``). :func:`read_jsonl`
decodes them back with exact decimals.

Writes are buffered in memory per file and flushed every ``flush_interval_s`` (by :meth:`JsonlSink.run`), when
the total buffer passes ``max_buffer_bytes``, and on :meth:`JsonlSink.close`. A write error (disk full,
permissions) drops that file's buffered lines, counts them (``lines_dropped``) and is logged at most once per
``error_log_interval_s``; the sink keeps going.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

import msgspec

from cryptolink.bus import Bus, CallbackHandle
from cryptolink.clock import Clock, SystemClock
from cryptolink.models import BookUpdate, Channel, Ticker, Trade

__all__ = ["JsonlSink", "JsonlSinkStats", "MarketEvent", "read_jsonl"]

log = logging.getLogger(__name__)

MarketEvent = Trade | Ticker | BookUpdate
"""What the sink writes."""

_MARKET_TYPES = (Trade, Ticker, BookUpdate)
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_DECODERS: dict[
    str, msgspec.json.Decoder[Trade] | msgspec.json.Decoder[Ticker] | msgspec.json.Decoder[BookUpdate]
]
_DECODERS = {
    Channel.TRADES.value: msgspec.json.Decoder(Trade),
    Channel.TICKER.value: msgspec.json.Decoder(Ticker),
    Channel.BOOK.value: msgspec.json.Decoder(BookUpdate),
}


@dataclass(frozen=True, slots=True)
class JsonlSinkStats:
    """Counters of a :class:`JsonlSink` at one instant.

    Attributes:
        lines_written: lines handed to the OS.
        bytes_written: their size, bytes.
        lines_buffered: lines waiting in memory.
        bytes_buffered: their size, bytes.
        lines_dropped: lines lost to write errors.
        write_errors: failed writes (each drops one file's buffer).
        rejected: events that were not market events or had an unsafe exchange id (skipped, not written).
        files: files open now.
    """

    lines_written: int
    bytes_written: int
    lines_buffered: int
    bytes_buffered: int
    lines_dropped: int
    write_errors: int
    rejected: int
    files: int


class _File:
    __slots__ = ("buf", "fh", "lines", "path")

    def __init__(self, path: Path) -> None:
        self.path = path
        self.buf = bytearray()
        self.lines = 0
        self.fh: IO[bytes] | None = None


class JsonlSink:
    """Writes market events to ``<out_dir>/<exchange>/<channel>.jsonl``.

    Args:
        out_dir: output directory (created on first write).
        flush_interval_s: :meth:`run` flushes this often, seconds (> 0).
        max_buffer_bytes: flush everything when buffered bytes exceed this (>= 1).
        clock: timing for :meth:`run` and error-log rate limiting (default: system clock).
        error_log_interval_s: at most one write-error log line per this many seconds.

    Use :meth:`write` (also the instance itself as a sync bus callback) for each event, or :meth:`attach` to a
    :class:`~cryptolink.bus.Bus`; run :meth:`run` as a task for periodic flushes; :meth:`close` flushes and
    closes files. Not thread-safe.

    Raises:
        ValueError: a bound is out of range.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike[str],
        *,
        flush_interval_s: float = 1.0,
        max_buffer_bytes: int = 4 * 1024 * 1024,
        clock: Clock | None = None,
        error_log_interval_s: float = 10.0,
    ) -> None:
        if not flush_interval_s > 0:
            raise ValueError(f"flush_interval_s must be > 0, got {flush_interval_s!r}")
        if max_buffer_bytes < 1:
            raise ValueError(f"max_buffer_bytes must be >= 1, got {max_buffer_bytes!r}")
        self.out_dir = Path(out_dir)
        self.flush_interval_s = flush_interval_s
        self.max_buffer_bytes = max_buffer_bytes
        self._clock: Clock = clock or SystemClock()
        self._error_log_interval_s = error_log_interval_s
        self._last_error_log: float | None = None
        self._encoder = msgspec.json.Encoder()
        self._files: dict[str, dict[str, _File]] = {}
        self._buffered_bytes = 0
        self._lines_written = 0
        self._bytes_written = 0
        self._lines_dropped = 0
        self._write_errors = 0
        self._rejected = 0
        self._closed = False

    # ---------------------------------------------------------------------------------------- writing

    def write(self, event: MarketEvent) -> None:
        """Buffer one event as a line; non-market objects and events from unsafe exchange ids are counted in
        ``rejected`` and skipped. After :meth:`close`, events are rejected too."""
        f: _File | None
        try:
            f = self._files[event.channel][event.exchange]
        except (KeyError, AttributeError):
            f = self._file_for(event)
            if f is None:
                self._rejected += 1
                return
        buf = f.buf
        before = len(buf)
        self._encoder.encode_into(event, buf, -1)
        buf.append(10)
        f.lines += 1
        self._buffered_bytes += len(buf) - before
        if self._buffered_bytes > self.max_buffer_bytes:
            self.flush()

    __call__ = write

    def flush(self) -> None:
        """Write every buffered line to its file and flush the file objects."""
        for by_exchange in self._files.values():
            for f in by_exchange.values():
                if f.buf:
                    self._flush_file(f)

    def attach(
        self, bus: Bus, *, exchange: str | None = None, symbol: str | None = None
    ) -> list[CallbackHandle]:
        """Register this sink as a sync callback for trades, tickers and book updates on ``bus`` (optionally
        only one exchange / symbol). Returns the handles; close them to detach."""
        return [
            bus.add_callback(
                self.write, channel=ch, exchange=exchange, symbol=symbol, name=f"jsonl-{ch.value}"
            )
            for ch in Channel
        ]

    async def run(self) -> None:
        """Flush every ``flush_interval_s`` until :meth:`close` (or cancellation, which flushes once more)."""
        try:
            while not self._closed:
                await self._clock.sleep(self.flush_interval_s)
                self.flush()
        finally:
            if not self._closed:
                self.flush()

    def close(self) -> None:
        """Flush and close every file. Idempotent."""
        if self._closed:
            return
        self.flush()
        self._closed = True
        for by_exchange in self._files.values():
            for f in by_exchange.values():
                if f.fh is not None:
                    try:
                        f.fh.close()
                    except OSError as exc:
                        self._write_failed(f, exc)
                    f.fh = None
        self._files = {}

    def stats(self) -> JsonlSinkStats:
        """An immutable snapshot of the counters."""
        files = [f for by_ex in self._files.values() for f in by_ex.values()]
        return JsonlSinkStats(
            lines_written=self._lines_written,
            bytes_written=self._bytes_written,
            lines_buffered=sum(f.lines for f in files),
            bytes_buffered=self._buffered_bytes,
            lines_dropped=self._lines_dropped,
            write_errors=self._write_errors,
            rejected=self._rejected,
            files=sum(1 for f in files if f.fh is not None),
        )

    def path_for(self, exchange: str, channel: Channel | str) -> Path:
        """The file events of ``(exchange, channel)`` go to."""
        return self.out_dir / exchange / f"{Channel(channel).value}.jsonl"

    # ---------------------------------------------------------------------------------------- internals

    def _file_for(self, event: object) -> _File | None:
        if self._closed or not isinstance(event, _MARKET_TYPES):
            return None
        if not _SAFE_NAME.match(event.exchange):
            return None
        by_exchange = self._files.setdefault(event.channel, {})
        f = by_exchange.get(event.exchange)
        if f is None:
            f = by_exchange[event.exchange] = _File(self.path_for(event.exchange, event.channel))
        return f

    def _flush_file(self, f: _File) -> None:
        size = len(f.buf)
        try:
            if f.fh is None:
                f.path.parent.mkdir(parents=True, exist_ok=True)
                f.fh = f.path.open("ab")
            f.fh.write(f.buf)
            f.fh.flush()
        except OSError as exc:
            self._lines_dropped += f.lines
            self._write_failed(f, exc)
            if f.fh is not None:
                with contextlib.suppress(OSError):
                    f.fh.close()
                f.fh = None
        else:
            self._lines_written += f.lines
            self._bytes_written += size
        self._buffered_bytes -= size
        f.buf.clear()
        f.lines = 0

    def _write_failed(self, f: _File, exc: OSError) -> None:
        self._write_errors += 1
        now = self._clock.monotonic()
        if self._last_error_log is None or now - self._last_error_log >= self._error_log_interval_s:
            self._last_error_log = now
            log.error(
                "JSONL write to %s failed: %s (%d lines dropped in total)", f.path, exc, self._lines_dropped
            )


def read_jsonl(
    path: str | os.PathLike[str],
    channel: Channel | str | None = None,
    *,
    on_error: Literal["raise", "skip"] = "raise",
) -> Iterator[MarketEvent]:
    """Decode a file written by :class:`JsonlSink` back into events, with exact ``Decimal`` values.

    Args:
        path: the ``.jsonl`` file.
        channel: event type of its lines; ``None`` infers it from the file name (``trades.jsonl``).
        on_error: ``"raise"`` stops at the first bad line; ``"skip"`` skips bad lines (e.g. a line cut short
            by a crash).

    Raises:
        ValueError: the channel cannot be inferred, or (with ``on_error="raise"``) a line does not decode; the
            message names the file and line number.
    """
    p = Path(path)
    name = p.name.removesuffix(".jsonl") if channel is None else Channel(channel).value
    decoder = _DECODERS.get(name)
    if decoder is None:
        raise ValueError(f"{p}: cannot tell the channel from the file name; pass channel=")
    with p.open("rb") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield decoder.decode(line)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                if on_error == "raise":
                    raise ValueError(f"{p}:{lineno}: {exc}") from None
