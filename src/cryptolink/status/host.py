"""Host figures for the status documents (CPU, memory, disk, this process), read with psutil.

:class:`HostSampler` is called once per status snapshot (default every second), never on the hot path. CPU
usage is the system-wide share since the previous sample (``psutil.cpu_percent(interval=None)``: it never
sleeps), so the first sample of a process reads 0.0. Disk use is ``used / total`` of the filesystem (the same
two numbers the documents print as ``"45GB / 500GB"``; psutil's own percent leaves the blocks reserved for root
out of the total, and would disagree with them).

:class:`HostReader` runs the sampler in a worker thread with a timeout, so that a filesystem that hangs (a dead
NFS mount under the output directory) never blocks the event loop: on a timeout the previous figures are kept
and the timeout is counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import psutil

__all__ = ["HOST_SAMPLE_TIMEOUT_S", "HostFigures", "HostReader", "HostSampler", "format_bytes"]

log = logging.getLogger("cryptolink.status")

HOST_SAMPLE_TIMEOUT_S = 0.5
"""How long :class:`HostReader` waits for one host sample before keeping the previous figures, s."""


@dataclass(frozen=True, slots=True)
class HostFigures:
    """One reading of the host.

    Attributes:
        cpu_percent: system-wide CPU use since the previous reading, percent of all cores (0-100).
        memory_used / memory_total: bytes (used = total - available, as ``free`` counts it).
        memory_percent: percent of total.
        disk_path: the filesystem measured (the output directory, or the working directory).
        disk_used / disk_total: bytes; disk_percent: ``100 * disk_used / disk_total`` (0 when unknown).
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
            disk_used, disk_total = du.used, du.total
            disk_pct = round(100.0 * du.used / du.total, 1) if du.total else 0.0
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


EMPTY_FIGURES = HostFigures(0.0, 0, 0, 0.0, "", 0, 0, 0.0, 0, 0.0)
"""What :class:`HostReader` reports before its first sample completed."""


class HostReader:
    """Reads :class:`HostFigures` off the event loop: :meth:`read` runs ``sampler.sample`` in a daemon thread and
    waits at most ``timeout_s`` for it. A sample still running after that keeps running (a thread cannot be
    stopped) and no other is started until it ends, so a hung filesystem holds one thread, never more, and never
    keeps the process from exiting (a daemon thread, not the loop's executor, which the exit would wait for);
    meanwhile every read returns the previous figures and counts :attr:`timeouts`.

    Args:
        sampler: what reads the host.
        timeout_s: longest wait for one sample, s (> 0).

    Raises:
        ValueError: ``timeout_s`` is not positive.
    """

    def __init__(self, sampler: HostSampler, timeout_s: float = HOST_SAMPLE_TIMEOUT_S) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be > 0")
        self.sampler = sampler
        self.timeout_s = timeout_s
        self.latest: HostFigures = EMPTY_FIGURES
        """The figures of the last sample that completed (:data:`EMPTY_FIGURES` before the first)."""
        self.timeouts = 0
        """Reads that returned the previous figures because the sample was not done within ``timeout_s``."""
        self.errors = 0
        """Samples that raised (logged; the previous figures are kept)."""
        self._running: asyncio.Future[HostFigures] | None = None
        self._late = 0

    async def read(self) -> HostFigures:
        """The host now, or the previous figures when the sample takes longer than ``timeout_s`` or fails
        (never raises, except :class:`asyncio.CancelledError`)."""
        running = self._running
        if running is None:
            running = self._running = self._start()
        done, _ = await asyncio.wait({running}, timeout=self.timeout_s)
        if not done:
            self.timeouts += 1
            self._late += 1
            if self._late == 1:  # once per hung sample; its end is logged too
                log.warning(
                    "status: reading the host (disk %s) takes longer than %.1f s; the previous figures are kept "
                    "until it returns",
                    self.sampler.disk_path,
                    self.timeout_s,
                )
            return self.latest
        self._running = None
        if self._late:
            log.info("status: reading the host returned after %d late read(s)", self._late)
            self._late = 0
        try:
            self.latest = running.result()
        except Exception:
            self.errors += 1
            log.exception("status: reading the host failed; keeping the previous figures")
        return self.latest

    def _start(self) -> asyncio.Future[HostFigures]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[HostFigures] = loop.create_future()

        def settle(result: HostFigures | None, error: BaseException | None) -> None:
            if future.done():
                return
            if error is not None:
                future.set_exception(error)
            else:
                assert result is not None
                future.set_result(result)

        def work() -> None:
            result: HostFigures | None = None
            error: BaseException | None = None
            try:
                result = self.sampler.sample()
            except Exception as exc:
                error = exc
            with contextlib.suppress(RuntimeError):  # the loop closed while the sample ran: nobody waits
                loop.call_soon_threadsafe(settle, result, error)

        threading.Thread(target=work, name="cryptolink-host-sample", daemon=True).start()
        return future
