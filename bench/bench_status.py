"""Benchmark: what the status service costs the engine.

1. **End to end**, the throughput benchmark's Binance spot blast (:mod:`bench.bench_throughput`, blast server in a
   child process): client frames per CPU-second with the status service off, and on with a client in another
   process (:mod:`bench.status_poller`) polling ``GET /api/system/status`` every second and scraping ``/metrics``
   every 5 s, runs interleaved. The stream is long enough (``--passes``) for tens of polls to land in the
   measured window.
2. **Per call**, on the demo's 14 feeds (17 connections) against the simulator (child process): CPU time of one
   snapshot (``StatusService.refresh``: every feed's statistics, the host figures), one ``/api/system/status``
   document (built and encoded), one push message (built and encoded once, as each push does for all its
   clients) and one ``/metrics`` exposition (and its series count); and what they cost per second at the
   default rates (snapshot 1/s, push 1/5 s; a poll 1/s and a scrape 1/5 s).

``python -m bench.bench_status [--quick]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec

from bench.bench_throughput import end_to_end
from bench.common import SimProcess, write_section
from cryptolink.config import StatusConfig
from cryptolink.demo import DEMO_EXCHANGES, build_manager
from cryptolink.manager import ExchangeManager
from cryptolink.status import documents
from cryptolink.status.surface import StatusSurface

__all__ = ["main", "run"]

_encode = msgspec.json.Encoder().encode
_ROOT = Path(__file__).resolve().parent.parent


POLLER_READY_S = 30.0
"""How long the poller may take to say it is ready, s."""

POLLER_STOP_S = 20.0
"""How long the poller may take to print its figures after SIGTERM, s (then it is killed)."""


def _stderr_tail(proc: subprocess.Popen[str]) -> str:
    """The end of a finished child's stderr (kills it first if it still runs)."""
    if proc.poll() is None:
        proc.kill()
    try:
        _, err = proc.communicate(timeout=5)
    except (subprocess.TimeoutExpired, ValueError):
        return ""
    return (err or "").strip()[-500:]


def _attach(
    poller_out: list[dict[str, Any]],
) -> Callable[[ExchangeManager], Awaitable[Callable[[], Awaitable[None]]]]:
    """Start the status surface beside the manager and a poller process against it.

    Raises (from the attach step):
        RuntimeError: the poller exited, or printed something else, before its ``{"ready": true}`` line, or did
            not print it within :data:`POLLER_READY_S` (the message carries its exit code and stderr).
    """

    async def attach(manager: ExchangeManager) -> Callable[[], Awaitable[None]]:
        surface = StatusSurface(manager, StatusConfig(port=0))
        await surface.start()
        assert surface.server is not None
        proc = subprocess.Popen(  # noqa: ASYNC220 - a child that runs on its own; only its start is here
            [sys.executable, "-m", "bench.status_poller", surface.server.url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=_ROOT,
        )
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), POLLER_READY_S)
        except TimeoutError:
            line = ""
        try:
            ready = json.loads(line).get("ready") is True
        except (ValueError, AttributeError):
            ready = False
        if not ready:
            stderr = await asyncio.to_thread(_stderr_tail, proc)
            await surface.stop()
            raise RuntimeError(
                f"the status poller was not ready (exit code {proc.returncode}, first line {line.strip()!r}): "
                f"{stderr or 'no stderr'}"
            )

        async def detach() -> None:
            try:
                proc.terminate()
                try:
                    out, err = await asyncio.to_thread(proc.communicate, timeout=POLLER_STOP_S)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    await asyncio.to_thread(proc.communicate)
                    raise RuntimeError(
                        f"the status poller did not stop within {POLLER_STOP_S:.0f} s of SIGTERM (killed)"
                    ) from None
                lines = out.strip().splitlines()
                try:
                    poller_out.append(json.loads(lines[-1]))
                except (IndexError, ValueError):
                    raise RuntimeError(
                        f"the status poller printed no figures (exit code {proc.returncode}): "
                        f"{err.strip()[-500:] or 'no stderr'}"
                    ) from None
            finally:
                await surface.stop()

        return detach

    return attach


def _cpu_ms(fn: Callable[[], object], n: int) -> float:
    t0 = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - t0) * 1000 / n


def series_counts(exposition: bytes) -> tuple[int, int]:
    """``(series, series with a connection label)`` of a Prometheus text exposition (one sample line each)."""
    total = per_connection = 0
    for line in exposition.decode("utf-8", "replace").splitlines():
        if not line or line.startswith("#"):
            continue
        total += 1
        if 'connection="' in line.partition(" ")[0]:
            per_connection += 1
    return total, per_connection


async def per_call(warmup_s: float, n: int) -> dict[str, Any]:
    """CPU ms per snapshot, document, push message (built and encoded once, as each push does) and
    exposition on the demo's feeds, and the exposition's series."""
    with SimProcess(list(DEMO_EXCHANGES), speed=1.0) as sim:
        manager = build_manager(sim.endpoints, seed=1)
        surface = StatusSurface(manager, StatusConfig(port=0), serve_http=False)
        await manager.start()
        await surface.start()
        try:
            await asyncio.sleep(warmup_s)
            service = surface.service
            snap = service.refresh()
            out: dict[str, Any] = {
                "connections": sum(len(f.connections) for f in snap.stats.feeds),
                "feeds": len(snap.stats.feeds),
                "snapshot": _cpu_ms(service.refresh, n),
                "system_status": _cpu_ms(lambda: _encode(documents.system_status(snap)), n),
                "push": _cpu_ms(lambda: _encode(documents.push_message(snap)), n),
                "bytes_status": len(_encode(documents.system_status(snap))),
                "bytes_push": len(_encode(documents.push_message(snap))),
            }
            if surface.metrics is not None:
                metrics = surface.metrics
                out["metrics"] = _cpu_ms(metrics.render, n)
                body = metrics.render()[0]
                out["bytes_metrics"] = len(body)
                out["series"], out["series_connection"] = series_counts(body)
            return out
        finally:
            await surface.stop()
            await manager.stop()


def _note(core_pct: float, calls: dict[str, Any]) -> str:
    """The closing remark, with the figures of this measurement."""
    conns = max(1, calls["connections"])
    metrics = ""
    if "series" in calls:
        metrics = (
            f" The dearest piece is the `/metrics` exposition: {calls['series']:,} series, "
            f"{calls['series_connection'] / conns:.0f} per connection (series with a connection label / "
            "connections); it is built only when scraped, so a 15-30 s scrape interval, usual in production, "
            "costs a fraction of the 5 s used here. Its size grows with connections, not symbols, unless "
            "`per_symbol_metrics` is on."
        )
    return (
        f"At the default rates the status service takes about {core_pct:.2f} % of one core (the per-call figures "
        f"above, on {calls['connections']} connections).{metrics}"
    )


def _median(values: list[float]) -> float | None:
    """The median (the upper one of an even count), ``None`` for no values."""
    return sorted(values)[len(values) // 2] if values else None


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"


def _rates(runs: list[dict[str, Any]]) -> str:
    return ", ".join(f"{r['rate']:,.0f}" for r in runs)


def run(quick: bool = False) -> dict[str, Any]:
    """Both parts; prints and writes the section of bench/RESULTS.md."""
    logging.basicConfig(level=logging.WARNING)
    passes = 6 if quick else 40
    runs = 1 if quick else 3
    off: list[dict[str, Any]] = []
    on: list[dict[str, Any]] = []
    polls: list[dict[str, Any]] = []
    for _ in range(runs):
        off.append(end_to_end(passes, timeout_s=300))
        on.append(end_to_end(passes, timeout_s=300, attach=_attach(polls)))
    for r in off + on:
        if r["book_gaps"] or r["decode_errors"] or r["book_state"] != "live":
            raise RuntimeError(f"the end-to-end run lost data: {r}")
    med_off = sorted(off, key=lambda r: r["rate"])[len(off) // 2]
    med_on = sorted(on, key=lambda r: r["rate"])[len(on) // 2]
    calls = asyncio.run(per_call(3.0 if quick else 10.0, 20 if quick else 100))
    per_s = calls["snapshot"] + calls["push"] / 5 + calls["system_status"] + calls.get("metrics", 0.0) / 5
    core_pct = per_s / 10  # ms of CPU per s -> percent of one core
    delta = 100.0 * (med_on["rate"] - med_off["rate"]) / med_off["rate"]
    poll_p50 = _median([p["poll_ms_p50"] for p in polls if p.get("poll_ms_p50") is not None])
    scrape_p50 = _median([p["scrape_ms_p50"] for p in polls if p.get("scrape_ms_p50") is not None])
    lines = [
        "| status service | frames per CPU-second (median) | runs |",
        "|---|---:|---|",
        f"| off | {med_off['rate']:,.0f} | {_rates(off)} |",
        f"| on, polled every 1 s, scraped every 5 s | {med_on['rate']:,.0f} | {_rates(on)} |",
        "",
        f"Difference of the medians: {delta:+.1f} % (runs interleaved; single runs on this 2-core VM vary by "
        f"several percent). Measured windows: {med_on['wall_s']:.1f} s wall each; the pollers answered "
        + ", ".join(
            f"{p['polls']} polls and {p['scrapes']} scrapes ({p['errors']} errors, {p.get('missed', 0)} slots "
            "missed)"
            for p in polls
        )
        + f"; round trip, median over the runs of each run's p50: poll {_ms(poll_p50)}, scrape "
        f"{_ms(scrape_p50)} (while the engine ran flat out).",
        "",
        f"Per call on the demo's {calls['feeds']} feeds / {calls['connections']} connections (CPU ms): "
        f"snapshot {calls['snapshot']:.2f}, `/api/system/status` document {calls['system_status']:.2f} "
        f"({calls['bytes_status']:,} bytes), push message built and encoded once {calls['push']:.2f} "
        f"({calls['bytes_push']:,} bytes)"
        + (
            f", `/metrics` exposition {calls['metrics']:.2f} ({calls['bytes_metrics']:,} bytes)"
            if "metrics" in calls
            else ""
        )
        + f". At the default rates that is {per_s:.2f} ms of CPU per second ({core_pct:.2f} % of one core).",
        "",
        _note(core_pct, calls),
    ]
    body = "\n".join(lines)
    print(body)
    write_section(
        "status",
        "8. What the status service costs the engine",
        "python -m bench.bench_status" + (" --quick" if quick else ""),
        body,
    )
    return {"off": off, "on": on, "polls": polls, "calls": calls}


def main() -> None:
    ap = argparse.ArgumentParser(description="status service cost")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    run(quick=args.quick)


if __name__ == "__main__":
    main()
