"""Benchmark: what the status service costs the engine.

1. **End to end**, the throughput benchmark's Binance spot blast (:mod:`bench.bench_throughput`, blast server in a
   child process): client frames per CPU-second with the status service off, and on with a client in another
   process (:mod:`bench.status_poller`) polling ``GET /api/system/status`` every second and scraping ``/metrics``
   every 5 s, runs interleaved. The stream is long enough (``--passes``) for tens of polls to land in the
   measured window.
2. **Per call**, on the demo's 14 feeds (17 connections) against the simulator (child process): CPU time of one
   snapshot (``StatusService.refresh``: every feed's statistics, the host figures), one ``/api/system/status``
   document (built and encoded), one push message and one ``/metrics`` exposition; and what they cost per
   second at the default rates (snapshot 1/s, push 1/5 s; a poll 1/s and a scrape 1/5 s).

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


def _attach(
    poller_out: list[dict[str, Any]],
) -> Callable[[ExchangeManager], Awaitable[Callable[[], Awaitable[None]]]]:
    """Start the status surface beside the manager and a poller process against it."""

    async def attach(manager: ExchangeManager) -> Callable[[], Awaitable[None]]:
        surface = StatusSurface(manager, StatusConfig(port=0))
        await surface.start()
        assert surface.server is not None
        proc = subprocess.Popen(  # noqa: ASYNC220 - a child that runs on its own; only its start is here
            [sys.executable, "-m", "bench.status_poller", surface.server.url],
            stdout=subprocess.PIPE,
            text=True,
            cwd=_ROOT,
        )
        assert proc.stdout is not None
        await asyncio.to_thread(proc.stdout.readline)  # the poller's "ready" line

        async def detach() -> None:
            proc.terminate()
            out, _ = await asyncio.to_thread(proc.communicate, timeout=20)
            poller_out.append(json.loads(out.strip().splitlines()[-1]))
            await surface.stop()

        return detach

    return attach


def _cpu_ms(fn: Callable[[], object], n: int) -> float:
    t0 = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - t0) * 1000 / n


async def per_call(warmup_s: float, n: int) -> dict[str, Any]:
    """CPU ms per snapshot, document, push message and exposition on the demo's feeds."""
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
            }
            if surface.metrics is not None:
                metrics = surface.metrics
                out["metrics"] = _cpu_ms(metrics.render, n)
                out["bytes_metrics"] = len(metrics.render()[0])
            return out
        finally:
            await surface.stop()
            await manager.stop()


_NOTE = "The service's cost is below this benchmark's noise: at the default rates it takes about half a percent of one core. The dearest piece is the `/metrics` exposition (about 70 series per connection: the state set, the error kinds, two histograms of 14 buckets); it is built only when scraped, so a 15-30 s scrape interval, usual in production, costs a fraction of the 5 s used here. Its size grows with connections, not symbols, unless `per_symbol_metrics` is on."


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
    delta = 100.0 * (med_on["rate"] - med_off["rate"]) / med_off["rate"]
    lines = [
        "| status service | frames per CPU-second (median) | runs |",
        "|---|---:|---|",
        f"| off | {med_off['rate']:,.0f} | {_rates(off)} |",
        f"| on, polled every 1 s, scraped every 5 s | {med_on['rate']:,.0f} | {_rates(on)} |",
        "",
        f"Difference of the medians: {delta:+.1f} % (runs interleaved; single runs on this 2-core VM vary by "
        f"several percent). Measured windows: {med_on['wall_s']:.1f} s wall each; the pollers answered "
        + ", ".join(f"{p['polls']} polls and {p['scrapes']} scrapes ({p['errors']} errors)" for p in polls)
        + f"; poll round trip p50 {polls[0]['poll_ms_p50']:.1f} ms, scrape p50 "
        f"{polls[0]['scrape_ms_p50'] or 0:.1f} ms (while the engine ran flat out).",
        "",
        f"Per call on the demo's {calls['feeds']} feeds / {calls['connections']} connections (CPU ms): "
        f"snapshot {calls['snapshot']:.2f}, `/api/system/status` document {calls['system_status']:.2f} "
        f"({calls['bytes_status']:,} bytes), push message {calls['push']:.2f}"
        + (
            f", `/metrics` exposition {calls['metrics']:.2f} ({calls['bytes_metrics']:,} bytes)"
            if "metrics" in calls
            else ""
        )
        + f". At the default rates that is {per_s:.2f} ms of CPU per second ({per_s / 10:.2f} % of one core).",
        "",
        _NOTE,
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
