"""Benchmark 3: how fast a silent stall is caught on an active stream.

The simulator (in this process; replay of the Binance spot btcusdt recording at speed 1, i.e. the recorded
rhythm: ~81 bookTicker, ~28 trade, 10 depth messages/s) stops sending data frames on the connection while still
answering pings (``stall`` fault). Per stall we measure wall time from the injection to

- ``first stale``: the engine's first ``STALE_SUBSCRIPTION`` event (the busiest stream's watchdog);
- ``session reset``: ``DISCONNECTED`` (every subscription silent: the engine resets the session);
- ``data again``: first market data of the replacement socket reaching ``on_data``.

The engine runs with its default :class:`~cryptolink.engine.EngineConfig` (watchdog ``min_idle_s`` 2.5 s,
timer tick 0.25 s; the YAML/manager default is the same; backoff ``reset_after_s`` set to 1 s, see below).

``python -m bench.bench_stall [--quick] [--stalls N]``
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


async def measure(stalls: int, speed: float) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"first stale": [], "session reset": [], "data again": []}
    config = EngineConfig(backoff=BackoffPolicy(reset_after_s=1.0), seed=1)
    async with Simulator(exchanges=["binance"], mode="replay", speed=speed) as sim:
        probe = Probe(sim.endpoints()["binance"]["ws_url"], config)
        await probe.start()
        try:
            for _ in range(stalls):
                # let every stream's watchdog learn its rhythm on the (new) socket first
                calls = probe.data_calls

                def relearned(c: int = calls) -> bool:
                    return probe.flowing() and probe.data_calls > c + 100 and probe.conn.backoff.attempt == 0

                await wait_until(relearned, 20.0)
                stale = probe.next_event(ConnectionEventType.STALE_SUBSCRIPTION)
                disc = probe.next_event(ConnectionEventType.DISCONNECTED)
                data = probe.data_after_next_reconnect()
                t0 = time.perf_counter()
                sim.inject(Fault("stall", duration_s=60.0), exchange="binance")
                t_data = await asyncio.wait_for(data, 60.0)
                out["first stale"].append(await asyncio.wait_for(stale, 1.0) - t0)
                out["session reset"].append(await asyncio.wait_for(disc, 1.0) - t0)
                out["data again"].append(t_data - t0)
        finally:
            await probe.stop()
    return out


def run(quick: bool = False, stalls: int | None = None, speed: float = 1.0) -> dict[str, Any]:
    logging.basicConfig(level=logging.WARNING)
    n = stalls or (3 if quick else 20)
    res = asyncio.run(measure(n, speed))
    lines = ["| from stall start to | n | median ms | p99 ms | max ms |", "|---|---:|---:|---:|---:|"]
    for name, values in res.items():
        s = summary_ms(values)
        lines.append(f"| {name} | {s['n']} | {s['median_ms']} | {s['p99_ms']} | {s['max_ms']} |")
    body = "\n".join(lines) + (
        f"\n\nSimulator in the same process, replay at speed {speed:g}; the stall (pings still answered) "
        "lasts 60 s, so every figure is the engine's own detection. Engine defaults: watchdog min_idle_s "
        "2.5 s, tick 0.25 s, so the floor is ~2.5-2.75 s; the YAML/manager defaults are the same "
        "(`watchdog.min_idle_s: 2.5`). The backoff's `reset_after_s` is "
        "1 s here and each stall waits until it has reset, so every session reset is an immediate attempt 1 "
        "(with the default 2 s the same holds once a session delivered data for 2 s; resets closer together "
        "make later ones attempts 2, 3, ... with full-jitter delays of up to 1, 2, 4 ... s, by design)."
    )
    print(body)
    cmd = "python -m bench.bench_stall" + (" --quick" if quick else "")
    write_section("stall", "3. Stall detection on an active stream", cmd, body)
    return {k: summary_ms(v) for k, v in res.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description="Benchmark 3: stall detection time")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--stalls", type=int, default=None)
    ap.add_argument("--speed", type=float, default=1.0)
    args = ap.parse_args()
    run(quick=args.quick, stalls=args.stalls, speed=args.speed)


if __name__ == "__main__":
    main()
