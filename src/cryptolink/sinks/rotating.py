"""One JSONL stream's files on disk: append whole lines, rotate by size or age, delete the oldest files.

Used only by the sink's writer thread (:mod:`cryptolink.sinks.writer`); nothing here is thread-safe. Names and
layout are in :mod:`cryptolink.sinks.layout`.

Guarantees: a line is never split across files; a line longer than ``max_file_bytes`` goes alone into its own
file. A write that fails half-way is cut back to its last whole line (``ftruncate``); when even that fails, or
an earlier run crashed mid-line, the next write starts with a newline so the fragment stays a line of its own
(``read_jsonl(..., on_error="skip")`` skips it).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptolink.clock import Clock
from cryptolink.sinks.layout import active_name, rotated_files, rotated_name

__all__ = ["FileEvents", "RotationPolicy", "StreamFile"]

_OPEN_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC


@dataclass(frozen=True, slots=True)
class RotationPolicy:
    """When a stream's active file is rotated and how many rotated files are kept.

    Attributes:
        max_file_bytes: rotate before a write would take the active file past this size, bytes (>= 1).
        rotate_interval_s: also rotate a non-empty active file this many seconds (the sink clock's monotonic
            time) after this process started it; ``None``: never by age.
        max_files: keep at most this many rotated files per stream (``None``: no limit; 0 keeps none).
        max_total_bytes: keep the rotated files of a stream within this many bytes (``None``: no limit).
    """

    max_file_bytes: int
    rotate_interval_s: float | None
    max_files: int | None
    max_total_bytes: int | None


class FileEvents(Protocol):
    """What a :class:`StreamFile` reports besides the result of :meth:`StreamFile.append`."""

    def rotated(self, path: Path, size: int) -> None:
        """The active file was closed and renamed to ``path`` (``size`` bytes)."""

    def deleted(self, path: Path, size: int) -> None:
        """Retention deleted the rotated file ``path`` (``size`` bytes)."""

    def file_error(self, action: str, path: Path, exc: OSError) -> None:
        """``action`` (``"close"``, ``"rotate"``, ``"delete"``) on ``path`` failed; no line was lost."""


class _WriteFailed(Exception):
    def __init__(self, done: int, cause: OSError) -> None:
        super().__init__(done, cause)
        self.done = done
        self.cause = cause


class StreamFile:
    """The files of one stream: ``<directory>/<channel>.jsonl`` and its rotated siblings.

    The active file is opened on the first :meth:`append` (creating ``directory``), kept open, and closed by
    rotation, by a failed write (reopened by the next append) or by :meth:`close`. Existing rotated files are
    listed at the first open and count towards retention.
    """

    def __init__(
        self, directory: Path, channel: str, policy: RotationPolicy, clock: Clock, events: FileEvents
    ) -> None:
        self.directory = directory
        self.channel = channel
        self.path = directory / active_name(channel)
        self._policy = policy
        self._clock = clock
        self._events = events
        self._fd: int | None = None
        self._size = 0
        self._needs_newline = False
        self._started_at: float | None = None
        self._rotated: deque[tuple[Path, int]] | None = None
        self._rotated_bytes = 0
        self._last_stamp_us = -1

    @property
    def is_open(self) -> bool:
        """The active file is open."""
        return self._fd is not None

    def append(self, data: bytes | bytearray) -> tuple[int, OSError | None]:
        """Append ``data`` (whole lines, each ending in ``\\n``), rotating between lines as the policy says.

        Returns ``(done, error)``: ``data[:done]`` (whole lines) is in the files; ``error`` is what stopped
        the rest (``None`` when everything was written). A failure closes the active file.
        """
        n = len(data)
        view = memoryview(data)
        pos = 0
        can_rotate = True
        try:
            while pos < n:
                if self._fd is None:
                    self._open()
                if can_rotate and self._rotation_due():
                    can_rotate = self._rotate()
                    continue
                end = self._cut(data, pos) if can_rotate else n
                if end is None:
                    can_rotate = self._rotate()
                    continue
                pos = self._write(data, view, pos, end)
        except _WriteFailed as failed:
            return failed.done, failed.cause
        except OSError as exc:
            self._close_quietly()
            return pos, exc
        finally:
            view.release()
        return n, None

    def check_age(self) -> None:
        """Rotate the active file if it is open and older than ``rotate_interval_s`` (idle streams too)."""
        if self._fd is not None and self._rotation_due():
            self._rotate()

    def close(self) -> None:
        """Close the active file (a failure is reported to ``file_error``). Idempotent."""
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.close(fd)
            except OSError as exc:
                self._events.file_error("close", self.path, exc)

    # ---------------------------------------------------------------------------------------- internals

    def _rotation_due(self) -> bool:
        interval = self._policy.rotate_interval_s
        return (
            interval is not None
            and self._size > 0
            and self._started_at is not None
            and self._clock.monotonic() - self._started_at >= interval
        )

    def _cut(self, data: bytes | bytearray, pos: int) -> int | None:
        """End of the next piece of ``data[pos:]`` for the active file (whole lines within the size limit), or
        ``None`` when the file must be rotated first."""
        room = self._policy.max_file_bytes - self._size
        if len(data) - pos <= room:
            return len(data)
        cut = data.rfind(b"\n", pos, pos + room) if room > 0 else -1
        if cut >= 0:
            return cut + 1
        if self._size > 0:
            return None
        nl = data.find(b"\n", pos)  # a single line longer than max_file_bytes: alone in an empty file
        return len(data) if nl < 0 else nl + 1

    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        if self._rotated is None:
            self._scan()
        fd = os.open(self.path, _OPEN_FLAGS, 0o644)
        try:
            st = os.fstat(fd)
            regular = stat.S_ISREG(st.st_mode)
            size = st.st_size if regular else 0
            needs_newline = False
            if size > 0:
                with self.path.open("rb") as fh:
                    fh.seek(-1, os.SEEK_END)
                    needs_newline = fh.read(1) != b"\n"
        except OSError:
            os.close(fd)
            raise
        self._fd, self._size, self._needs_newline = fd, size, needs_newline
        if self._started_at is None:
            self._started_at = self._clock.monotonic()

    def _write(self, data: bytes | bytearray, view: memoryview, pos: int, end: int) -> int:
        """Write ``data[pos:end]`` (whole lines) to the active file; returns ``end``.

        Raises:
            _WriteFailed: with ``done`` = the end of the last whole line written.
        """
        fd = self._fd
        assert fd is not None
        start = pos
        try:
            if self._needs_newline and os.write(fd, b"\n") == 1:
                self._size += 1
                self._needs_newline = False
            while pos < end:
                n = os.write(fd, view[pos:end])
                if n <= 0:
                    raise OSError(errno.EIO, f"write returned {n}")
                pos += n
        except OSError as exc:
            keep = max(start, data.rfind(b"\n", start, pos) + 1)
            if pos > keep:  # a partial line reached the file: cut it off (else the next open adds a newline)
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, self._size + keep - start)
            self._size += keep - start
            self._close_quietly()
            raise _WriteFailed(keep, exc) from exc
        self._size += end - start
        return end

    def _close_quietly(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _rotate(self) -> bool:
        """Close the active file and rename it to a stamped name, then apply retention. ``False`` when the
        rename failed (the caller then keeps appending to the active file)."""
        self.close()
        stamp = max(self._clock.time_ns() // 1000, self._last_stamp_us + 1)
        target = self.directory / rotated_name(self.channel, stamp)
        while os.path.lexists(target):
            stamp += 1
            target = self.directory / rotated_name(self.channel, stamp)
        try:
            os.rename(self.path, target)
        except OSError as exc:
            self._events.file_error("rotate", self.path, exc)
            return False
        self._last_stamp_us = stamp
        size, self._size, self._started_at = self._size, 0, None
        assert self._rotated is not None
        self._rotated.append((target, size))
        self._rotated_bytes += size
        self._events.rotated(target, size)
        self._apply_retention()
        return True

    def _scan(self) -> None:
        self._rotated = deque()
        for stamp, path in rotated_files(self.directory, self.channel):
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue
            self._rotated.append((path, size))
            self._rotated_bytes += size
            self._last_stamp_us = max(self._last_stamp_us, stamp)
        self._apply_retention()

    def _apply_retention(self) -> None:
        rotated = self._rotated
        assert rotated is not None
        max_files, max_bytes = self._policy.max_files, self._policy.max_total_bytes
        while rotated and (
            (max_files is not None and len(rotated) > max_files)
            or (max_bytes is not None and self._rotated_bytes > max_bytes)
        ):
            path, size = rotated[0]
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                self._events.file_error("delete", path, exc)
                return
            else:
                self._events.deleted(path, size)
            rotated.popleft()
            self._rotated_bytes -= size
