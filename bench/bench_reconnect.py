"""Benchmark 2: reconnect time after a dropped connection, on loopback.

The simulator (in this process; replay of the Binance spot btcusdt recording at ``--speed``) aborts the TCP
connection (``drop`` fault). Per drop we measure wall time from the injection to

- ``disconnected``: the engine noticed the loss (``DISCONNECTED`` event);
- ``reconnected``: the new socket is open (``RECONNECT_SUCCESS`` event);
- ``first data``: the first market-data message of the new socket reached ``on_data`` (the figure the aim is
  about: data flowing again).

The engine's backoff makes attempt 1 immediate (``cryptolink.engine.backoff``); the counter resets only after
``reset_after_s`` of healthy data, so between drops we wait until it has reset (``reset_after_s`` is set to
0.3 s here so that 100 drops take about a minute; the default 2 s gives the same first attempt).

``python -m bench.bench_reconnect [--quick] [--drops N]``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import time
from typing import Any

from bench.common import summary_ms, write_section
from bench.probe import Probe, wait_until
from cryptolink.engine import BackoffPolicy, ConnectionEvent, ConnectionEventType, EngineConfig
from cryptolink.simulator import Fault, Simulator

__all__ = ["main", "run"]


class _GcPauses:
    """Wall-time intervals (``perf_counter``, s) of the garbage collector's passes, via ``gc.callbacks``."""

    def __init__(self) -> None:
        self.passes: list[tuple[float, float, int]] = []
        self._start = 0.0

    def __enter__(self) -> _GcPauses:
        gc.callbacks.append(self._cb)
        return self

    def __exit__(self, *_exc: object) -> None:
        gc.callbacks.remove(self._cb)

    def _cb(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.passes.append((self._start, time.perf_counter(), info["generation"]))

    def within(self, t0: float, t1: float) -> float:
        """Seconds of collector passes overlapping ``[t0, t1]``."""
        return sum(max(0.0, min(b, t1) - max(a, t0)) for a, b, _g in self.passes)


async def measure(drops: int, speed: float) -> dict[str, Any]:
    out: dict[str, list[float]] = {"disconnected": [], "reconnected": [], "first data": []}
    slow: list[dict[str, float]] = []
    config = EngineConfig(backoff=BackoffPolicy(reset_after_s=0.3), seed=1)
    async with Simulator(exchanges=["binance"], mode="replay", speed=speed) as sim:
        probe = Probe(sim.endpoints()["binance"]["ws_url"], config)
        attempts: list[int] = []
        failed: list[float] = []

        def on_event(e: ConnectionEvent) -> None:
            if e.type is ConnectionEventType.RECONNECT_SUCCESS:
                attempts.append(e.attempt or 0)
            elif e.type is ConnectionEventType.RECONNECT_FAILED:
                failed.append(time.perf_counter())

        probe.conn.add_event_listener(on_event)
        await probe.start()
        try:
            with _GcPauses() as gcp:
                for _ in range(drops):
                    await wait_until(lambda: probe.flowing() and probe.conn.backoff.attempt == 0, 15.0)
                    disc = probe.next_event(ConnectionEventType.DISCONNECTED)
                    conn = probe.next_event(ConnectionEventType.RECONNECT_SUCCESS)
                    data = probe.data_after_next_reconnect()
                    n_failed = len(failed)
                    t0 = time.perf_counter()
                    sim.inject(Fault("drop"), exchange="binance")
                    t_data = await asyncio.wait_for(data, 10.0)
                    out["disconnected"].append(await asyncio.wait_for(disc, 1.0) - t0)
                    out["reconnected"].append(await asyncio.wait_for(conn, 1.0) - t0)
                    out["first data"].append(t_data - t0)
                    slow.append(
                        {
                            "first_data_s": t_data - t0,
                            "attempt": attempts[-1] if attempts else 0,
                            "failed_connects": len(failed) - n_failed,
                            "gc_s": gcp.within(t0, t_data),
                        }
                    )
                gc_passes = [(b - a, g) for a, b, g in gcp.passes]
        finally:
            await probe.stop()
    slow.sort(key=lambda d: -d["first_data_s"])
    full = [d for d, g in gc_passes if g == 2]
    return {
        "times": out,
        "slowest": slow[:3],
        "gen2_passes": len(full),
        "gen2_max_s": max(full, default=0.0),
    }


def run(quick: bool = False, drops: int | None = None, speed: float = 10.0) -> dict[str, Any]:
    logging.basicConfig(level=logging.WARNING)
    n = drops or (15 if quick else 100)
    measured = asyncio.run(measure(n, speed))
    res: dict[str, list[float]] = measured["times"]
    lines = ["| from drop to | n | median ms | p99 ms | max ms |", "|---|---:|---:|---:|---:|"]
    for name, values in res.items():
        s = summary_ms(values)
        lines.append(f"| {name} | {s['n']} | {s['median_ms']} | {s['p99_ms']} | {s['max_ms']} |")
    slowest = "; ".join(
        f"{d['first_data_s'] * 1000:.1f} ms (reconnect attempt {d['attempt']:.0f}, "
        f"{d['failed_connects']:.0f} failed connects, {d['gc_s'] * 1000:.1f} ms of GC passes in it)"
        for d in measured["slowest"]
    )
    body = "\n".join(lines) + (
        f"\n\nSimulator in the same process (same event loop, so its CPU competes with the client's: a "
        f"conservative setting), replay at speed {speed:g} (bookTicker ~{81 * speed:.0f} msg/s, so the wait "
        "for the first message after the subscribe ack is small). Wall time (`perf_counter`). Attempt 1 of "
        "the backoff is immediate; drops are spaced so the backoff has reset before each one. Slowest drops "
        f"(drop to first data): {slowest}. Full (generation 2) GC passes during the run: "
        f"{measured['gen2_passes']}, longest {measured['gen2_max_s'] * 1000:.1f} ms (the in-process "
        "simulator keeps the replayed recording in memory, so a full pass has a large heap to walk)."
    )
    print(body)
    cmd = "python -m bench.bench_reconnect" + (" --quick" if quick else "")
    write_section("reconnect", "2. Reconnect after a TCP drop (loopback)", cmd, body)
    return {k: summary_ms(v) for k, v in res.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description="Benchmark 2: reconnect time")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--drops", type=int, default=None)
    ap.add_argument("--speed", type=float, default=10.0)
    args = ap.parse_args()
    run(quick=args.quick, drops=args.drops, speed=args.speed)


if __name__ == "__main__":
    main()
