"""The JSONL sink's writer thread: takes filled buffers from the event loop and does all the file I/O.

The event loop calls :meth:`Writer.submit` (never blocks: a bounded queue, and a bound on bytes handed over
but not yet written); the one thread per sink appends each chunk to its stream's :class:`StreamFile`, which
rotates and applies retention. Every line lost is counted here, by cause: the writer was behind when the chunk
was handed over, a write failed, or the thread did not finish in time at close. Counters are read through
:meth:`Writer.counters` (consistent under one lock).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptolink.clock import Clock
from cryptolink.sinks.rotating import RotationPolicy, StreamFile

__all__ = ["Chunk", "StreamKey", "Writer", "WriterCounters"]

log = logging.getLogger("cryptolink.sinks.jsonl")

StreamKey = tuple[str, str]
"""``(feed, channel)``."""

Chunk = tuple[StreamKey, bytearray, int]
"""``(stream, whole lines, number of lines)`` handed from the loop to the writer thread."""

MAX_QUEUED_BATCHES = 1024
"""Bound of the hand-over queue, in batches (one batch per flush)."""


@dataclass(frozen=True, slots=True)
class WriterCounters:
    """The writer's counters at one instant (see :class:`~cryptolink.sinks.jsonl.JsonlSinkStats`)."""

    lines_written: int
    bytes_written: int
    lines_pending: int
    bytes_pending: int
    dropped_writer_behind: int
    dropped_write_errors: int
    dropped_at_close: int
    write_errors: int
    file_errors: int
    files_open: int
    files_rotated: int
    bytes_rotated: int
    files_deleted: int
    bytes_deleted: int
    last_error: str | None
    last_error_ns: int | None
    healthy: bool
    alive: bool


class Writer:
    """One thread writing chunks to the stream files under ``out_dir``.

    Args:
        out_dir: the checked output directory; stream ``(feed, channel)`` goes to ``out_dir/feed``.
        policy: rotation and retention.
        clock: ages for rotation (``monotonic``), rotated-file stamps and ``last_error_ns`` (``time_ns``), log
            rate limiting. Called from the writer thread.
        max_pending_bytes: a chunk is dropped (``dropped_writer_behind``) when bytes handed over but not yet
            written are above 0 and would pass this bound with it.
        error_log_interval_s: at most one ERROR line per this many seconds for each kind of loss.
        name: the thread's name.
    """

    def __init__(
        self,
        out_dir: Path,
        policy: RotationPolicy,
        clock: Clock,
        *,
        max_pending_bytes: int,
        error_log_interval_s: float,
        name: str = "jsonl-writer",
    ) -> None:
        self._out_dir = out_dir
        self._policy = policy
        self._clock = clock
        self._max_pending_bytes = max_pending_bytes
        self._error_log_interval_s = error_log_interval_s
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[list[Chunk] | threading.Event] = deque()
        self._stopping = False
        self._exited = False
        self._abandoned = False
        self._files: dict[StreamKey, StreamFile] = {}  # writer thread only
        self._last_write_log: float | None = None  # writer thread only
        self._last_file_log: float | None = None  # writer thread only
        self._last_behind_log: float | None = None  # submitting thread only
        # guarded by self._cond
        self._lines_written = 0
        self._bytes_written = 0
        self._lines_pending = 0
        self._bytes_pending = 0
        self._dropped_behind = 0
        self._dropped_write = 0
        self._dropped_close = 0
        self._write_errors = 0
        self._file_errors = 0
        self._files_open = 0
        self._files_rotated = 0
        self._bytes_rotated = 0
        self._files_deleted = 0
        self._bytes_deleted = 0
        self._last_error: str | None = None
        self._last_error_ns: int | None = None
        self._failing: set[StreamKey] = set()  # streams whose last write failed
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    # ---------------------------------------------------------------------------------------- loop side

    def start(self) -> None:
        """Start the thread."""
        self.thread.start()

    def submit(self, chunks: list[Chunk], *, tick: bool = False) -> int:
        """Hand ``chunks`` over without blocking; returns the number of lines dropped because the writer is
        behind (bytes pending bound or a full queue) or stopped. ``tick``: queue an empty batch (when nothing
        else is queued) so the thread checks file ages."""
        dropped = 0
        with self._cond:
            if self._stopping:
                dropped = sum(c[2] for c in chunks)
                self._dropped_close += dropped
                return dropped
            room_in_queue = len(self._queue) < MAX_QUEUED_BATCHES
            accepted: list[Chunk] = []
            for chunk in chunks:
                size = len(chunk[1])
                if not room_in_queue or (
                    self._bytes_pending > 0 and self._bytes_pending + size > self._max_pending_bytes
                ):
                    dropped += chunk[2]
                    continue
                accepted.append(chunk)
                self._bytes_pending += size
                self._lines_pending += chunk[2]
            if accepted or (tick and not self._queue):
                self._queue.append(accepted)
                self._cond.notify()
            if dropped:
                self._dropped_behind += dropped
                pending, total = self._bytes_pending, self._dropped_behind
        if dropped:
            now = self._clock.monotonic()
            if self._last_behind_log is None or now - self._last_behind_log >= self._error_log_interval_s:
                self._last_behind_log = now
                log.error(
                    "JSONL writer is behind (%d bytes pending, bound %d): dropped %d lines (%d dropped as "
                    "writer-behind in total)",
                    pending,
                    self._max_pending_bytes,
                    dropped,
                    total,
                )
        return dropped

    def barrier(self) -> threading.Event:
        """An event set once everything submitted before is processed (at once if the thread is done)."""
        ev = threading.Event()
        with self._cond:
            if self._exited or self._abandoned:
                ev.set()
            else:
                self._queue.append(ev)
                self._cond.notify()
        return ev

    def stop(self) -> None:
        """Accept nothing more; the thread writes what is queued, closes the files and ends."""
        with self._cond:
            self._stopping = True
            self._cond.notify()

    def join(self, timeout_s: float | None) -> bool:
        """Wait up to ``timeout_s`` seconds for the thread to end; ``True`` if it has (or never started)."""
        if self.thread.ident is not None:
            self.thread.join(timeout_s)
        return not self.thread.is_alive()

    def abandon(self) -> int:
        """Give up on what is still pending (the thread did not finish in time): count those lines as
        ``dropped_at_close`` and return how many. Lines the thread still manages to write afterwards are not
        counted again (the loss may be over-counted, never under-counted)."""
        with self._cond:
            if self._abandoned:
                return 0
            self._abandoned = True
            lost = self._lines_pending
            self._dropped_close += lost
            self._lines_pending = self._bytes_pending = 0
            for item in self._queue:
                if isinstance(item, threading.Event):
                    item.set()
            self._queue.clear()
        return lost

    def counters(self) -> WriterCounters:
        """A consistent snapshot of the counters."""
        with self._cond:
            return WriterCounters(
                lines_written=self._lines_written,
                bytes_written=self._bytes_written,
                lines_pending=self._lines_pending,
                bytes_pending=self._bytes_pending,
                dropped_writer_behind=self._dropped_behind,
                dropped_write_errors=self._dropped_write,
                dropped_at_close=self._dropped_close,
                write_errors=self._write_errors,
                file_errors=self._file_errors,
                files_open=self._files_open,
                files_rotated=self._files_rotated,
                bytes_rotated=self._bytes_rotated,
                files_deleted=self._files_deleted,
                bytes_deleted=self._bytes_deleted,
                last_error=self._last_error,
                last_error_ns=self._last_error_ns,
                healthy=not self._failing,
                alive=self.thread.is_alive(),
            )

    # ---------------------------------------------------------------------------------------- thread side

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._queue and not self._stopping:
                        self._cond.wait()
                    if not self._queue:
                        self._exited = True
                        break
                    item = self._queue.popleft()
                if isinstance(item, threading.Event):
                    item.set()
                    continue
                for chunk in item:
                    self._write_chunk(chunk)
                if self._policy.rotate_interval_s is not None:
                    for f in self._files.values():
                        self._guarded("age check", f.check_age, f.path)
                self._count_open()
        finally:
            for f in self._files.values():
                self._guarded("close", f.close, f.path)
            self._count_open()
            with self._cond:
                self._exited = True
                for item in self._queue:  # only left if the loop above died: release the waiters
                    if isinstance(item, threading.Event):
                        item.set()

    def _guarded(self, what: str, action: Callable[[], None], path: Path) -> None:
        try:
            action()
        except Exception as exc:
            self.file_error(what, path, OSError(f"unexpected {type(exc).__name__}: {exc}"))
            log.exception("JSONL writer: unexpected error on %s", path)

    def _count_open(self) -> None:
        n = sum(1 for f in self._files.values() if f.is_open)
        with self._cond:
            self._files_open = n

    def _write_chunk(self, chunk: Chunk) -> None:
        key, data, lines = chunk
        f = self._files.get(key)
        if f is None:
            f = self._files[key] = StreamFile(self._out_dir / key[0], key[1], self._policy, self._clock, self)
        if self._abandoned:  # benign race: at worst one more chunk is written after abandon()
            return
        try:
            done, exc = f.append(data)
        except Exception as bug:  # a bug must not kill the thread: count it like a failed write
            log.exception("JSONL writer: unexpected error writing %s", f.path)
            done, exc = 0, OSError(f"unexpected {type(bug).__name__}: {bug}")
        ok_lines = lines if done >= len(data) else data.count(b"\n", 0, done)
        now_ns = self._clock.time_ns() if exc is not None else None
        with self._cond:
            if self._abandoned:
                return
            self._bytes_pending -= len(data)
            self._lines_pending -= lines
            self._lines_written += ok_lines
            self._bytes_written += done
            lost = lines - ok_lines
            recovered = False
            if exc is not None:
                self._dropped_write += lost
                self._write_errors += 1
                self._last_error = f"write to {f.path} failed: {exc}"
                self._last_error_ns = now_ns
                self._failing.add(key)
            elif key in self._failing:
                self._failing.remove(key)
                recovered = True
            totals = (self._dropped_write, self._write_errors)
        if exc is not None:
            now = self._clock.monotonic()
            if self._last_write_log is None or now - self._last_write_log >= self._error_log_interval_s:
                self._last_write_log = now
                log.error(
                    "JSONL write to %s failed: %s; %d lines dropped (in total: %d lines dropped by write "
                    "errors, %d write errors)",
                    f.path,
                    exc,
                    lost,
                    *totals,
                )
        elif recovered:
            log.warning(
                "JSONL writes to %s succeed again; in total %d lines were dropped by %d write errors",
                f.path,
                *totals,
            )

    # FileEvents, called by StreamFile in the writer thread

    def rotated(self, path: Path, size: int) -> None:
        with self._cond:
            self._files_rotated += 1
            self._bytes_rotated += size
        log.info("JSONL rotated %s (%d bytes)", path, size)

    def deleted(self, path: Path, size: int) -> None:
        with self._cond:
            self._files_deleted += 1
            self._bytes_deleted += size
        log.info("JSONL retention deleted %s (%d bytes)", path, size)

    def file_error(self, action: str, path: Path, exc: OSError) -> None:
        now_ns = self._clock.time_ns()
        with self._cond:
            self._file_errors += 1
            self._last_error = f"{action} {path} failed: {exc}"
            self._last_error_ns = now_ns
            total = self._file_errors
        now = self._clock.monotonic()
        if self._last_file_log is None or now - self._last_file_log >= self._error_log_interval_s:
            self._last_file_log = now
            log.error("JSONL %s of %s failed: %s (%d file errors in total)", action, path, exc, total)
