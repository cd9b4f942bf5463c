"""Where a JSONL stream's files live and what they are called.

A *stream* is one ``(feed, channel)`` pair. Its files are in ``<out_dir>/<feed>/``:

- ``<channel>.jsonl``: the active file, appended to;
- ``<channel>.<YYYYmmddTHHMMSS.ffffffZ>.jsonl``: closed (rotated) files, stamped with the UTC time of their
  rotation to the microsecond, e.g. ``trades.20240808T120000.000000Z.jsonl``. The stamps are fixed-width, so
  name order is time order.

``<feed>`` is the configuration entry name (or the exchange id for events without one) and ``<channel>`` one
of ``trades``, ``ticker``, ``book``, ``gaps``; both must match :data:`SAFE_NAME` (no path separators, no
leading dot).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

__all__ = [
    "CHANNELS",
    "SAFE_NAME",
    "active_name",
    "check_name",
    "iter_stream_files",
    "parse_rotated_name",
    "rotated_files",
    "rotated_name",
]

CHANNELS: tuple[str, ...] = ("trades", "ticker", "book", "gaps")
"""The channels the JSONL sink writes (the three market-data channels and gaps)."""

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
"""Feed and channel names usable as a path component: 1-64 of ``A-Z a-z 0-9 _ . -``, not starting with a dot,
dash or underscore."""

_STAMP_RE = r"(\d{8}T\d{6})\.(\d{6})Z"
_STAMP_FMT = "%Y%m%dT%H%M%S"


def check_name(value: object, what: str) -> str:
    """``value`` if it is a :data:`SAFE_NAME`.

    Raises:
        ValueError: it is not a string or not safe as a path component (``"../x"``, ``""``, ``"a/b"``).
    """
    if not isinstance(value, str) or not SAFE_NAME.match(value):
        raise ValueError(f"{what} {value!r} is not usable as a file name (expected {SAFE_NAME.pattern})")
    return value


def active_name(channel: str) -> str:
    """``<channel>.jsonl``."""
    return f"{channel}.jsonl"


def rotated_name(channel: str, stamp_us: int) -> str:
    """``<channel>.<UTC YYYYmmddTHHMMSS.ffffffZ>.jsonl`` for ``stamp_us`` (epoch microseconds, >= 0)."""
    seconds, micros = divmod(stamp_us, 1_000_000)
    return f"{channel}.{datetime.fromtimestamp(seconds, UTC).strftime(_STAMP_FMT)}.{micros:06d}Z.jsonl"


def parse_rotated_name(channel: str, name: str) -> int | None:
    """The stamp (epoch microseconds) of a rotated file name of ``channel``; ``None`` for other names."""
    m = re.fullmatch(re.escape(channel) + r"\." + _STAMP_RE + r"\.jsonl", name)
    if m is None:
        return None
    try:
        when = datetime.strptime(m.group(1), _STAMP_FMT).replace(tzinfo=UTC)
    except ValueError:
        return None
    return int(when.timestamp()) * 1_000_000 + int(m.group(2))


def rotated_files(directory: Path, channel: str) -> list[tuple[int, Path]]:
    """``(stamp_us, path)`` of the rotated files of ``channel`` in ``directory``, oldest first (empty when the
    directory does not exist)."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        stamp = parse_rotated_name(channel, name)
        if stamp is not None:
            found.append((stamp, directory / name))
    found.sort()
    return found


def iter_stream_files(out_dir: str | os.PathLike[str], feed: str, channel: str) -> Iterator[Path]:
    """The files of stream ``(feed, channel)`` under ``out_dir``, oldest first: rotated files in stamp order,
    then the active ``<channel>.jsonl`` if it exists.

    The directory is listed once, when iteration starts; a rotation that happens while the caller reads may
    move the active file to a name not in that listing (read a closed sink's files for a consistent view).

    Raises:
        ValueError: ``feed`` or ``channel`` is not a :data:`SAFE_NAME`.
    """
    check_name(feed, "feed")
    check_name(str(channel), "channel")
    directory = Path(out_dir) / feed
    files = [path for _stamp, path in rotated_files(directory, str(channel))]
    active = directory / active_name(str(channel))
    if active.exists():
        files.append(active)
    return iter(files)
