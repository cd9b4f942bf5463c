"""Start-up check of an output directory: :func:`check_output_dir` and its error, :class:`OutputDirError`.

The check runs once, before anything is written, so that a bad ``output.dir`` (a path under a regular file, a
read-only mount, a directory the service may not write to) stops the service at start with one clear message
instead of dropping every line later. ``cryptolink validate-config`` calls it too.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path

from cryptolink.errors import CryptolinkError

__all__ = ["OutputDirError", "check_output_dir"]

_PROBE_PREFIX = ".cryptolink-probe-"


class OutputDirError(CryptolinkError, OSError):
    """An output directory cannot be created or written to.

    ``str(err)`` is the whole message, e.g. ``output directory /data/x is not usable: is not a directory:
    /data is a regular file``. Attributes: ``path`` (the directory asked for, absolute), ``reason`` (the part
    after the colon), ``errno`` (the underlying error number, or ``None``).
    """

    def __init__(self, path: Path, reason: str, errno_: int | None = None) -> None:
        super().__init__(errno_, reason)
        self.path = path
        self.reason = reason
        self.filename = str(path)

    def __str__(self) -> str:
        return f"output directory {self.path} is not usable: {self.reason}"


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "a regular file"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a directory"


def _not_a_directory(path: Path) -> str:
    """The reason for ENOTDIR/EEXIST: the first component of ``path`` that exists but is not a directory."""
    for part in (*reversed(path.parents), path):
        try:
            st = part.stat()
        except OSError:
            break
        if not stat.S_ISDIR(st.st_mode):
            return f"is not a directory: {part} is {_kind(st.st_mode)}"
    return f"is not a directory: {path}"


def _reason(path: Path, exc: OSError, *, name_file: bool = True) -> str:
    """``exc`` as a reason; ``name_file``: add the file it names when that is not ``path`` itself."""
    if exc.errno in (errno.ENOTDIR, errno.EEXIST):
        return _not_a_directory(path)
    text = (exc.strerror or type(exc).__name__).lower()
    where = exc.filename if name_file and exc.filename not in (None, str(path)) else None
    return f"{text} (at {where})" if where else text


def check_output_dir(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` (with its parents) and prove it is writable; return it as an absolute path.

    The proof creates a uniquely named probe file (``.cryptolink-probe-<pid>-<hex>``) in it, writes a few
    bytes, flushes them to the device (``fsync``) and removes it. Blocking file-system calls: run it at start
    (or through :func:`asyncio.to_thread`), not on a busy event loop.

    Raises:
        OutputDirError: the directory cannot be created or written to. The message names the path and the
            reason: ``is not a directory: /x/file is a regular file``, ``read-only file system``,
            ``permission denied``, ``no space left on device``, ...
    """
    p = Path(os.path.abspath(os.fspath(path)))
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputDirError(p, _reason(p, exc), exc.errno) from exc
    if not p.is_dir():  # mkdir(exist_ok=True) accepts a symlink to a non-directory on some systems
        raise OutputDirError(p, _not_a_directory(p), errno.ENOTDIR)
    probe = p / f"{_PROBE_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, b"cryptolink write probe\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        with contextlib.suppress(OSError):
            probe.unlink(missing_ok=True)
        raise OutputDirError(p, _reason(p, exc, name_file=False), exc.errno) from exc
    return p
