"""Host figures for the status documents (CPU, memory, disk, this process), read with psutil.

:class:`HostSampler` is called once per status snapshot (default every second), never on the hot path. CPU
usage is the system-wide share since the previous sample (``psutil.cpu_percent(interval=None)``: it never
sleeps), so the first sample of a process reads 0.0.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import psutil

__all__ = ["HostFigures", "HostSampler", "format_bytes"]


@dataclass(frozen=True, slots=True)
class HostFigures:
    """One reading of the host.

    Attributes:
        cpu_percent: system-wide CPU use since the previous reading, percent of all cores (0-100).
        memory_used / memory_total: bytes (used = total - available, as ``free`` counts it).
        memory_percent: percent of total.
        disk_path: the filesystem measured (the output directory, or the working directory).
        disk_used / disk_total: bytes; disk_percent: percent of total.
        process_rss: this process's resident memory, bytes; process_cpu_percent: its CPU use since the
            previous reading, percent of one core (may exceed 100 with threads on several cores).
    """

    cpu_percent: float
    memory_used: int
    memory_total: int
    memory_percent: float
    disk_path: str
    disk_used: int
    disk_total: int
    disk_percent: float
    process_rss: int
    process_cpu_percent: float


def format_bytes(n: int) -> str:
    """``2684354560`` -> ``"2.5GB"``: binary gigabytes (GiB, written ``GB`` as monitoring pages do) with one
    decimal, a trailing ``.0`` dropped; below 1 GiB in MB."""
    if n >= 1024**3:
        value, unit = n / 1024**3, "GB"
    else:
        value, unit = n / 1024**2, "MB"
    text = f"{value:.1f}"
    return (text[:-2] if text.endswith(".0") else text) + unit


class HostSampler:
    """Reads :class:`HostFigures`.

    Args:
        disk_path: a path on the filesystem to report (it need not exist yet: its nearest existing parent is
            measured).
    """

    def __init__(self, disk_path: str | os.PathLike[str] = ".") -> None:
        path = Path(disk_path).resolve()
        while not path.exists() and path != path.parent:
            path = path.parent
        self.disk_path = str(path)
        self._process = psutil.Process()
        psutil.cpu_percent(interval=None)  # start the interval: the next call measures from here
        self._process.cpu_percent(interval=None)

    def sample(self) -> HostFigures:
        """Read the host now (a few system calls, no sleep)."""
        vm = psutil.virtual_memory()
        used = vm.total - vm.available
        try:
            du = psutil.disk_usage(self.disk_path)
            disk_used, disk_total, disk_pct = du.used, du.total, du.percent
        except OSError:  # the directory vanished: say so with zeros rather than fail the snapshot
            disk_used = disk_total = 0
            disk_pct = 0.0
        return HostFigures(
            cpu_percent=psutil.cpu_percent(interval=None),
            memory_used=used,
            memory_total=vm.total,
            memory_percent=round(100.0 * used / vm.total, 1) if vm.total else 0.0,
            disk_path=self.disk_path,
            disk_used=disk_used,
            disk_total=disk_total,
            disk_percent=disk_pct,
            process_rss=self._process.memory_info().rss,
            process_cpu_percent=self._process.cpu_percent(interval=None),
        )
