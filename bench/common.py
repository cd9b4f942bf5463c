"""Shared helpers of the benchmarks: machine facts, percentiles, the RESULTS.md section writer, and a
simulator child process.

Nothing here is used by the library or its tests.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).with_name("RESULTS.md")

__all__ = [
    "RESULTS",
    "SimProcess",
    "machine_facts",
    "percentile",
    "raise_fd_limit",
    "rss_bytes",
    "summary_ms",
    "write_section",
]


def machine_facts() -> str:
    """One line: cores, CPU model, Python version, date (UTC)."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"nproc {os.cpu_count()}, CPU {model}, Python {platform.python_version()} "
        f"({platform.python_implementation()}), {platform.system()} {platform.release()}, {now}"
    )


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (``pct`` in 0..100) of a non-empty list."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100.0 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def summary_ms(values_s: list[float]) -> dict[str, float]:
    """``{"n", "median_ms", "p99_ms", "max_ms", "min_ms"}`` of durations given in seconds."""
    if not values_s:
        return {"n": 0}
    ms = [v * 1000.0 for v in values_s]
    return {
        "n": len(ms),
        "min_ms": round(min(ms), 2),
        "median_ms": round(percentile(ms, 50), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "max_ms": round(max(ms), 2),
    }


def rss_bytes() -> int:
    """Resident set size of this process, bytes (Linux ``/proc/self/statm``)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def raise_fd_limit(want: int = 8192) -> int:
    """Raise the soft open-files limit towards ``want`` (bounded by the hard limit); returns the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def write_section(key: str, title: str, command: str, body: str) -> None:
    """Replace (or append) the section ``key`` of bench/RESULTS.md.

    A section runs from its ``<!-- bench:KEY -->`` marker to the next marker or the end of the file.
    """
    text = RESULTS.read_text() if RESULTS.exists() else _HEADER
    block = (
        f"<!-- bench:{key} -->\n## {title}\n\n"
        f"Command: `{command}`  \nMachine: {machine_facts()}\n\n{body.rstrip()}\n\n"
    )
    pattern = re.compile(rf"<!-- bench:{re.escape(key)} -->\n.*?(?=<!-- bench:|\Z)", re.S)
    text = pattern.sub(lambda _m: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block
    RESULTS.write_text(text.rstrip() + "\n")


_HEADER = """# cryptolink benchmark results

Written by `python -m bench.run_all` (each benchmark replaces its own section). Numbers are from one run on
the machine named in each section; rerun to compare. Aims from the issue: >= 100k frames per CPU-second end
to end, reconnect < 250 ms p99 on loopback, stalls caught within 3 s, < 100 KB per idle connection.
"""


class SimProcess:
    """The cryptolink simulator in a child process (so its CPU and memory are not the client's).

    Args:
        exchanges: simulator exchange ids.
        mode: ``replay`` or ``synthetic``.
        speed: pacing multiple.
        faults: fault spec for the simulator (grammar in ``cryptolink.simulator.faults``).
        fd_limit: open-files limit the child gets (inherited from this process after :func:`raise_fd_limit`).
        rest_limits: ``EXCHANGE=WEIGHT/SECONDS`` REST limits (``--rest-limit``).
        symbols: ``EXCHANGE:SYMBOL`` (exchange-native) to serve instead of the defaults.

    Use as a context manager; :attr:`endpoints` maps exchange id -> ``{"ws_url", "rest_url"}``.
    """

    def __init__(
        self,
        exchanges: list[str],
        *,
        mode: str = "replay",
        speed: float = 1.0,
        faults: str | None = None,
        rest_limits: list[str] | None = None,
        symbols: list[str] | None = None,
    ) -> None:
        self.args = [
            sys.executable,
            "-m",
            "bench.sim_proc",
            "--mode",
            mode,
            "--speed",
            str(speed),
            *[a for e in exchanges for a in ("--exchange", e)],
            *(["--faults", faults] if faults else []),
            *[a for r in rest_limits or () for a in ("--rest-limit", r)],
            *[a for x in symbols or () for a in ("--symbol", x)],
        ]
        self.count = len(exchanges)
        self.proc: subprocess.Popen[str] | None = None
        self.endpoints: dict[str, dict[str, Any]] = {}

    def __enter__(self) -> SimProcess:
        self.proc = subprocess.Popen(
            self.args, stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parent.parent
        )
        assert self.proc.stdout is not None
        for _ in range(self.count):
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("simulator process ended before printing its endpoints")
            ep = json.loads(line)
            self.endpoints[ep["exchange"]] = ep
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
