"""Benchmark 2: reconnect time after a dropped connection, on loopback.

The simulator (in this process; replay of the Binance spot btcusdt recording at ``--speed``) aborts the TCP
connection (``drop`` fault). Per drop we measure wall time from the injection to

- ``disconnected``: the engine noticed the loss (``DISCONNECTED`` event);
- ``reconnected``: the new socket is open (``RECONNECT_SUCCESS`` event);
- ``first data``: the first market-data message of the new socket reached ``on_data`` (the figure the aim is
  about: data flowing again).

The engine's backoff makes attempt 1 immediate (``cryptolink.engine.backoff``); the counter resets only after
``reset_after_s`` of healthy data, so between drops we wait until it has reset (``reset_after_s`` is set to
0.3 s here so that 100 drops take about a minute; the default 30 s would give the same first attempt).

``python -m bench.bench_reconnect [--quick] [--drops N]``
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from typing import Any

from bench.common import summary_ms, write_section
from bench.probe import Probe, wait_until
from cryptolink.engine import BackoffPolicy, ConnectionEventType, EngineConfig
from cryptolink.simulator import Fault, Simulator

__all__ = ["main", "run"]


async def measure(drops: int, speed: float) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"disconnected": [], "reconnected": [], "first data": []}
    config = EngineConfig(backoff=BackoffPolicy(reset_after_s=0.3), seed=1)
    async with Simulator(exchanges=["binance"], mode="replay", speed=speed) as sim:
        probe = Probe(sim.endpoints()["binance"]["ws_url"], config)
        await probe.start()
        try:
            for _ in range(drops):
                await wait_until(lambda: probe.flowing() and probe.conn.backoff.attempt == 0, 15.0)
                disc = probe.next_event(ConnectionEventType.DISCONNECTED)
                conn = probe.next_event(ConnectionEventType.RECONNECT_SUCCESS)
                data = probe.data_after_next_reconnect()
                t0 = time.perf_counter()
                sim.inject(Fault("drop"), exchange="binance")
                t_data = await asyncio.wait_for(data, 10.0)
                out["disconnected"].append(await asyncio.wait_for(disc, 1.0) - t0)
                out["reconnected"].append(await asyncio.wait_for(conn, 1.0) - t0)
                out["first data"].append(t_data - t0)
        finally:
            await probe.stop()
    return out


def run(quick: bool = False, drops: int | None = None, speed: float = 10.0) -> dict[str, Any]:
    logging.basicConfig(level=logging.WARNING)
    n = drops or (15 if quick else 100)
    res = asyncio.run(measure(n, speed))
    lines = ["| from drop to | n | median ms | p99 ms | max ms |", "|---|---:|---:|---:|---:|"]
    for name, values in res.items():
        s = summary_ms(values)
        lines.append(f"| {name} | {s['n']} | {s['median_ms']} | {s['p99_ms']} | {s['max_ms']} |")
    body = "\n".join(lines) + (
        f"\n\nSimulator in the same process (same event loop, so its CPU competes with the client's: a "
        f"conservative setting), replay at speed {speed:g} (bookTicker ~{81 * speed:.0f} msg/s, so the wait "
        "for the first message after the subscribe ack is small). Wall time (`perf_counter`). Attempt 1 of "
        "the backoff is immediate; drops are spaced so the backoff has reset before each one."
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
