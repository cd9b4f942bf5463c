"""JSON Lines output of normalized market events and gaps, one stream of files per (feed, channel).

Layout (:mod:`cryptolink.sinks.layout`): ``<out_dir>/<feed>/<channel>.jsonl`` is the active file of a stream,
``<out_dir>/<feed>/<channel>.<UTC YYYYmmddTHHMMSS.ffffffZ>.jsonl`` its rotated files, e.g.
``data/binance-perp/trades.jsonl``. ``<feed>`` is the event's ``feed`` (the configuration entry name) or, when
that is empty, its ``exchange``; channels are ``trades``, ``ticker``, ``book`` and ``gaps``. Each line is one
:class:`~cryptolink.models.Trade`, :class:`~cryptolink.models.Ticker`, :class:`~cryptolink.models.BookUpdate`
or :class:`~cryptolink.models.Gap` encoded by :mod:`msgspec` with every field (``Decimal`` values as JSON
strings, exactly as received; book levels as ``[["price","size"], ...]``). :func:`read_jsonl` decodes one file
back with exact decimals, :func:`read_stream` a whole stream across rotations.

Threads. On the event loop, :meth:`JsonlSink.write` only encodes the event into its stream's memory buffer.
:meth:`JsonlSink.flush` (every ``flush_interval_s`` from :meth:`JsonlSink.run`, when buffers pass
``max_buffer_bytes``, and at close) hands the buffers to the sink's one writer thread
(:mod:`cryptolink.sinks.writer`), which appends, rotates, applies retention and closes files.

Nothing is lost silently: every line not written is counted in :class:`JsonlSinkStats` (``lines_dropped``,
split by cause) and logged at ERROR (rate-limited, with the running totals). The output directory is checked
at construction (:func:`check_output_dir`), so a sink never exists for a directory it cannot write to.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import msgspec

from cryptolink.bus import Bus, CallbackHandle
from cryptolink.clock import Clock, SystemClock
from cryptolink.models import GAPS_CHANNEL, BookUpdate, Channel, Gap, Ticker, Trade
from cryptolink.report import Section
from cryptolink.sinks.base import SinkHealth
from cryptolink.sinks.layout import SAFE_NAME, active_name, check_name, iter_stream_files
from cryptolink.sinks.outdir import OutputDirError, check_output_dir
from cryptolink.sinks.rotating import RotationPolicy
from cryptolink.sinks.writer import Chunk, StreamKey, Writer

__all__ = [
    "EVENT_DECODERS",
    "JsonlEvent",
    "JsonlSink",
    "JsonlSinkStats",
    "MarketEvent",
    "OutputDirError",
    "check_output_dir",
    "iter_stream_files",
    "jsonl_section",
    "read_jsonl",
    "read_stream",
]

log = logging.getLogger(__name__)

MarketEvent = Trade | Ticker | BookUpdate
"""The market-data events the sink writes."""

JsonlEvent = Trade | Ticker | BookUpdate | Gap
"""Everything the sink writes (and :func:`read_jsonl` returns)."""

MIB = 1024 * 1024

_CHANNEL_OF: tuple[tuple[type, str], ...] = (
    (Trade, Channel.TRADES.value),
    (Ticker, Channel.TICKER.value),
    (BookUpdate, Channel.BOOK.value),
    (Gap, GAPS_CHANNEL),
)
EVENT_DECODERS: dict[str, msgspec.json.Decoder[JsonlEvent]] = {
    Channel.TRADES.value: msgspec.json.Decoder(Trade),
    Channel.TICKER.value: msgspec.json.Decoder(Ticker),
    Channel.BOOK.value: msgspec.json.Decoder(BookUpdate),
    GAPS_CHANNEL: msgspec.json.Decoder(Gap),
}
"""A decoder per channel (``trades``, ``ticker``, ``book``, ``gaps``) of the events as they are encoded in a JSONL
line or a NATS message: exact ``Decimal`` values."""


@dataclass(frozen=True, slots=True)
class JsonlSinkStats:
    """Counters of a :class:`JsonlSink` at one instant. Sizes in bytes.

    Attributes:
        lines_written / bytes_written: lines (their bytes) handed to the OS by the writer thread.
        lines_buffered / bytes_buffered: encoded on the loop, not yet handed to the writer thread.
        lines_pending / bytes_pending: handed to the writer thread, not yet written.
        lines_dropped: lines lost, all causes: ``dropped_writer_behind + dropped_write_errors +
            dropped_at_close``.
        dropped_writer_behind: lines dropped at hand-over because the writer thread was behind (more than
            ``max_pending_bytes`` pending).
        dropped_write_errors: lines dropped because their write failed (disk full, I/O error, ...).
        dropped_at_close: lines still pending when :meth:`JsonlSink.close` stopped waiting for the writer.
        write_errors: failed writes (each drops the rest of one stream's chunk).
        file_errors: failed rotations, retention deletions and file closes (no line dropped by these, except
            that a failed close may hide an earlier write error of the file system).
        rejected: events not written because they are not Trade/Ticker/BookUpdate/Gap, their channel does not
            match their type, their feed/exchange name is unsafe as a directory name, they do not encode, or
            they arrived after :meth:`JsonlSink.close`.
        files_open: stream files the writer thread has open.
        files_rotated / bytes_rotated: files (their bytes) rotated since start.
        files_deleted / bytes_deleted: rotated files (their bytes) deleted by retention since start.
        last_error: text of the last write or file error (``None``: none yet).
        last_error_ns: when it happened, wall clock epoch ns (``None``: none yet).
        healthy: no stream's last write failed (each stream that had a write error has written successfully
            since).
        writer_alive: the writer thread is running.
    """

    lines_written: int
    bytes_written: int
    lines_buffered: int
    bytes_buffered: int
    lines_pending: int
    bytes_pending: int
    lines_dropped: int
    dropped_writer_behind: int
    dropped_write_errors: int
    dropped_at_close: int
    write_errors: int
    file_errors: int
    rejected: int
    files_open: int
    files_rotated: int
    bytes_rotated: int
    files_deleted: int
    bytes_deleted: int
    last_error: str | None
    last_error_ns: int | None
    healthy: bool
    writer_alive: bool


class _Buffer:
    __slots__ = ("buf", "key", "lines")

    def __init__(self, key: StreamKey) -> None:
        self.key = key
        self.buf = bytearray()
        self.lines = 0


def _positive(name: str, value: float | None, *, none_ok: bool = False, zero_ok: bool = False) -> None:
    if value is None and none_ok:
        return
    if value is None or not (value >= 0 if zero_ok else value > 0):
        raise ValueError(f"{name} must be {'>= 0' if zero_ok else '> 0'}, got {value!r}")


class JsonlSink:
    """Writes market events and gaps to ``<out_dir>/<feed>/<channel>.jsonl``, rotating and pruning the files.

    Args:
        out_dir: output directory; created and checked by :func:`check_output_dir` here (blocking, once).
        flush_interval_s: :meth:`run` hands buffered lines to the writer thread this often, seconds (> 0).
            Default 1.0.
        max_buffer_bytes: also flush when the loop-side buffers pass this many bytes (> 0). Default 4 MiB.
        max_file_bytes: rotate a stream's active file before it would pass this many bytes (> 0; a single
            longer line gets a file of its own). Default 256 MiB.
        rotate_interval_s: also rotate a non-empty active file this many seconds after this sink started it
            (> 0, e.g. 3600 for hourly files); ``None`` (default): by size only.
        max_files: keep at most this many rotated files per stream, deleting the oldest (>= 0; ``None``: no
            limit). Default 20.
        max_total_bytes: keep each stream's rotated files within this many bytes, deleting the oldest (>= 0;
            ``None``, the default: no limit). A stream then takes at most ``max_total_bytes +
            max_file_bytes``.
        max_pending_bytes: when more than this many bytes are handed to the writer thread and not yet written,
            further flushed lines are dropped and counted (``dropped_writer_behind``) instead of queued (> 0).
            Default 64 MiB.
        close_timeout_s: :meth:`close` waits at most this long for the writer thread, seconds (>= 0); what is
            still pending then is counted in ``dropped_at_close``. Default 30.
        clock: flush timing, file ages and stamps, error-log rate limiting (default: the system clock).
        error_log_interval_s: at most one ERROR log line per this many seconds for each kind of loss (>= 0).
            Default 10.

    Use :meth:`write` (also the instance itself, as a sync bus callback) for each event, or :meth:`attach`
    to a :class:`~cryptolink.bus.Bus`; run :meth:`run` as a task; end with :meth:`aclose` (or :meth:`close`).
    :meth:`write`, :meth:`flush`, :meth:`run` and :meth:`close` belong to the event loop's thread;
    :meth:`stats` may be called from anywhere. The writer thread is a daemon thread: close the sink before
    the process exits, or lines still pending then are lost without being counted.

    Raises:
        ValueError: an argument is out of range.
        OutputDirError: ``out_dir`` cannot be created or written to (the message names the path and reason).
    """

    def __init__(
        self,
        out_dir: str | os.PathLike[str],
        *,
        flush_interval_s: float = 1.0,
        max_buffer_bytes: int = 4 * MIB,
        max_file_bytes: int = 256 * MIB,
        rotate_interval_s: float | None = None,
        max_files: int | None = 20,
        max_total_bytes: int | None = None,
        max_pending_bytes: int = 64 * MIB,
        close_timeout_s: float = 30.0,
        clock: Clock | None = None,
        error_log_interval_s: float = 10.0,
    ) -> None:
        _positive("flush_interval_s", flush_interval_s)
        _positive("max_buffer_bytes", max_buffer_bytes)
        _positive("max_file_bytes", max_file_bytes)
        _positive("rotate_interval_s", rotate_interval_s, none_ok=True)
        _positive("max_files", max_files, none_ok=True, zero_ok=True)
        _positive("max_total_bytes", max_total_bytes, none_ok=True, zero_ok=True)
        _positive("max_pending_bytes", max_pending_bytes)
        _positive("close_timeout_s", close_timeout_s, zero_ok=True)
        _positive("error_log_interval_s", error_log_interval_s, zero_ok=True)
        self.out_dir = check_output_dir(out_dir)
        self.flush_interval_s = flush_interval_s
        self.max_buffer_bytes = max_buffer_bytes
        self.close_timeout_s = close_timeout_s
        self.policy = RotationPolicy(max_file_bytes, rotate_interval_s, max_files, max_total_bytes)
        self._clock: Clock = clock or SystemClock()
        self._error_log_interval_s = error_log_interval_s
        self._last_reject_log: float | None = None
        self._encode_into = msgspec.json.Encoder().encode_into
        self._routes: dict[object, dict[str, _Buffer]] = {}
        self._buffers: dict[StreamKey, _Buffer] = {}
        self._buffered_bytes = 0
        self._rejected = 0
        self._closed = False
        self._writer = Writer(
            self.out_dir,
            self.policy,
            self._clock,
            max_pending_bytes=max_pending_bytes,
            error_log_interval_s=error_log_interval_s,
            name=f"jsonl-writer-{self.out_dir.name}",
        )
        self._writer.start()
        log.info(
            "JSONL output to %s: rotate at %d bytes%s, keep %s rotated files%s per stream",
            self.out_dir,
            max_file_bytes,
            "" if rotate_interval_s is None else f" or every {rotate_interval_s:g} s",
            "all" if max_files is None else max_files,
            "" if max_total_bytes is None else f" up to {max_total_bytes} bytes",
        )

    # ---------------------------------------------------------------------------------------- writing

    def write(self, event: JsonlEvent) -> None:
        """Encode one event into its stream's buffer (no I/O). Anything that cannot be written (see
        ``rejected`` in :class:`JsonlSinkStats`) is counted, logged (rate-limited) and skipped; never
        raises."""
        b: _Buffer | None
        try:
            b = self._routes[event.channel][event.feed or event.exchange]
        except (KeyError, AttributeError, TypeError):
            b = self._buffer_for(event)
            if b is None:
                return
        buf = b.buf
        before = len(buf)
        try:
            self._encode_into(event, buf, -1)
        except Exception as exc:
            del buf[before:]
            self._reject(f"{type(event).__name__} does not encode: {exc}")
            return
        buf.append(10)
        b.lines += 1
        self._buffered_bytes += len(buf) - before
        if self._buffered_bytes > self.max_buffer_bytes:
            self.flush()

    __call__ = write

    def flush(self) -> None:
        """Hand every buffered line to the writer thread (never blocks; see ``max_pending_bytes``)."""
        if self._closed:
            return
        chunks: list[Chunk] = []
        for b in self._buffers.values():
            if b.lines:
                chunks.append((b.key, b.buf, b.lines))
                b.buf = bytearray()
                b.lines = 0
        self._buffered_bytes = 0
        tick = self.policy.rotate_interval_s is not None  # let the writer rotate idle files that are due
        if chunks or tick:
            self._writer.submit(chunks, tick=tick)

    def attach(self, bus: Bus, *, feed: str | None = None, symbol: str | None = None) -> list[CallbackHandle]:
        """Register this sink as a sync callback for trades, tickers, book updates and gaps on ``bus``
        (optionally only one feed / symbol). Returns the handles; close them to detach."""
        return [
            bus.add_callback(self.write, channel=ch, feed=feed, symbol=symbol, name=f"jsonl-{ch}")
            for ch in (*(c.value for c in Channel), GAPS_CHANNEL)
        ]

    async def run(self) -> None:
        """Flush every ``flush_interval_s`` until closed (or cancelled, which flushes once more)."""
        try:
            while not self._closed:
                await self._clock.sleep(self.flush_interval_s)
                self.flush()
        finally:
            self.flush()

    def sync(self, timeout_s: float | None = None) -> bool:
        """Flush, then block until the writer thread has processed everything handed to it (written or
        counted as dropped). Returns ``False`` if ``timeout_s`` seconds passed first. Blocks the calling
        thread: meant for tests and tools, not for a busy event loop."""
        self.flush()
        return self._writer.barrier().wait(timeout_s)

    def close(self) -> None:
        """Flush, stop the writer thread and wait for it (at most ``close_timeout_s``; lines still pending
        then are counted in ``dropped_at_close``). Blocks the calling thread; from async code use
        :meth:`aclose`. Idempotent; later events are rejected."""
        if self._begin_close():
            self._writer.join(self.close_timeout_s)
            self._end_close()

    async def aclose(self) -> None:
        """:meth:`close`, waiting for the writer thread in a worker thread (the loop keeps running)."""
        if self._begin_close():
            await asyncio.to_thread(self._writer.join, self.close_timeout_s)
            self._end_close()

    def stats(self) -> JsonlSinkStats:
        """An immutable snapshot of the counters."""
        w = self._writer.counters()
        buffers = list(self._buffers.values())
        return JsonlSinkStats(
            lines_written=w.lines_written,
            bytes_written=w.bytes_written,
            lines_buffered=sum(b.lines for b in buffers),
            bytes_buffered=self._buffered_bytes,
            lines_pending=w.lines_pending,
            bytes_pending=w.bytes_pending,
            lines_dropped=w.dropped_writer_behind + w.dropped_write_errors + w.dropped_at_close,
            dropped_writer_behind=w.dropped_writer_behind,
            dropped_write_errors=w.dropped_write_errors,
            dropped_at_close=w.dropped_at_close,
            write_errors=w.write_errors,
            file_errors=w.file_errors,
            rejected=self._rejected,
            files_open=w.files_open,
            files_rotated=w.files_rotated,
            bytes_rotated=w.bytes_rotated,
            files_deleted=w.files_deleted,
            bytes_deleted=w.bytes_deleted,
            last_error=w.last_error,
            last_error_ns=w.last_error_ns,
            healthy=w.healthy,
            writer_alive=w.alive,
        )

    def health(self) -> SinkHealth:
        """The :class:`~cryptolink.sinks.base.Sink` counters: lines written, lines lost (all causes)."""
        st = self.stats()
        return SinkHealth(
            name="jsonl",
            delivered=st.lines_written,
            lost=st.lines_dropped,
            healthy=st.healthy,  # a failed write always drops at least the line it failed on: counted in lost
            last_error=st.last_error,
        )

    def report_section(self) -> Section:
        """The report section of the JSONL output: what was written, what was lost and why."""
        return jsonl_section(self.stats(), self.out_dir)

    def path_for(self, feed: str, channel: Channel | str) -> Path:
        """The active file of stream ``(feed, channel)``.

        Raises:
            ValueError: ``feed`` or ``channel`` is not a safe name.
        """
        return self.out_dir / check_name(feed, "feed") / active_name(check_name(str(channel), "channel"))

    # ---------------------------------------------------------------------------------------- internals

    def _buffer_for(self, event: object) -> _Buffer | None:
        """Slow path of :meth:`write`: check a new (channel, name) route and create its buffer."""
        if self._closed:
            self._reject("the sink is closed")
            return None
        expected = next((ch for t, ch in _CHANNEL_OF if isinstance(event, t)), None)
        if expected is None:
            self._reject(f"not a Trade, Ticker, BookUpdate or Gap: {type(event).__name__}")
            return None
        assert isinstance(event, Trade | Ticker | BookUpdate | Gap)
        channel: object = event.channel
        if str(channel) != expected:
            self._reject(f"{type(event).__name__} on channel {channel!r}")
            return None
        name = event.feed or event.exchange
        if not isinstance(name, str) or not SAFE_NAME.match(name):
            self._reject(f"feed/exchange name {name!r} is not usable as a directory name")
            return None
        key = (name, expected)
        b = self._buffers.get(key)
        if b is None:
            b = self._buffers[key] = _Buffer(key)
        self._routes.setdefault(channel, {})[name] = b
        return b

    def _reject(self, reason: str) -> None:
        self._rejected += 1
        now = self._clock.monotonic()
        if self._last_reject_log is None or now - self._last_reject_log >= self._error_log_interval_s:
            self._last_reject_log = now
            log.warning("JSONL sink skipped an event: %s (%d skipped in total)", reason, self._rejected)

    def _begin_close(self) -> bool:
        if self._closed:
            return False
        self.flush()
        self._closed = True
        self._routes = {}
        self._writer.stop()
        return True

    def _end_close(self) -> None:
        finished = self._writer.join(0)
        lost = self._writer.abandon()  # 0 unless the thread is stuck (or died with lines pending)
        if not finished or lost:
            log.error(
                "JSONL writer thread %s; %d pending lines counted as dropped",
                "ended early" if finished else f"did not finish within {self.close_timeout_s:g} s",
                lost,
            )
        st = self.stats()
        if st.lines_dropped:
            log.error(
                "JSONL sink closed: %d lines written to %s, %d lines DROPPED (writer behind %d, "
                "write errors %d, at close %d), last error: %s",
                st.lines_written,
                self.out_dir,
                st.lines_dropped,
                st.dropped_writer_behind,
                st.dropped_write_errors,
                st.dropped_at_close,
                st.last_error,
            )
        else:
            log.info(
                "JSONL sink closed: %d lines written to %s, none dropped", st.lines_written, self.out_dir
            )


def jsonl_section(stats: JsonlSinkStats, out_dir: object) -> Section:
    """The report section of a JSONL sink's ``stats`` (files under ``out_dir``)."""
    lines = [
        f"  {stats.lines_written:,} lines ({stats.bytes_written:,} bytes) written to {out_dir}; "
        f"{stats.files_rotated} files rotated, {stats.files_deleted} deleted by retention",
    ]
    if stats.lines_dropped or stats.write_errors or not stats.healthy:
        lines.append(
            f"  DATA LOST: {stats.lines_dropped:,} lines dropped (write errors {stats.dropped_write_errors:,}, "
            f"writer behind {stats.dropped_writer_behind:,}, at close {stats.dropped_at_close:,}); "
            f"{stats.write_errors} failed writes; last error: {stats.last_error or '-'}"
        )
    if stats.rejected:
        lines.append(f"  {stats.rejected:,} events not written (not market data or unusable names)")
    return Section("output", lines)


def read_jsonl(
    path: str | os.PathLike[str],
    channel: Channel | str | None = None,
    *,
    on_error: Literal["raise", "skip"] = "raise",
) -> Iterator[JsonlEvent]:
    """Decode one file written by :class:`JsonlSink` back into events, with exact ``Decimal`` values.

    Args:
        path: an active (``trades.jsonl``) or rotated (``trades.20240808T120000.000000Z.jsonl``) file.
        channel: ``trades``, ``ticker``, ``book`` or ``gaps``; ``None`` infers it from the file name (the part
            before the first dot).
        on_error: ``"raise"`` stops at the first bad line; ``"skip"`` skips bad lines (e.g. a line cut short
            by a crash).

    Raises:
        ValueError: the channel is unknown or cannot be inferred, or (with ``on_error="raise"``) a line does
            not decode; the message names the file and line number.
        OSError: the file cannot be read.
    """
    p = Path(path)
    name = p.name.split(".", 1)[0] if channel is None else str(channel)
    decoder = EVENT_DECODERS.get(name)
    if decoder is None:
        raise ValueError(
            f"{p}: cannot tell the channel from the file name; pass channel= (one of {list(EVENT_DECODERS)})"
        )
    with p.open("rb") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield decoder.decode(line)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                if on_error == "raise":
                    raise ValueError(f"{p}:{lineno}: {exc}") from None


def read_stream(
    out_dir: str | os.PathLike[str],
    feed: str,
    channel: Channel | str,
    *,
    on_error: Literal["raise", "skip"] = "raise",
) -> Iterator[JsonlEvent]:
    """Decode a whole stream, oldest first: its rotated files, then the active one
    (:func:`iter_stream_files`).

    Raises:
        ValueError: as :func:`read_jsonl`; also when ``feed`` or ``channel`` is not a safe name.
    """
    for path in iter_stream_files(out_dir, feed, str(channel)):
        yield from read_jsonl(path, channel, on_error=on_error)
