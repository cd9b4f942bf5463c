"""Benchmark 4: client memory per idle connection.

The simulator runs in a CHILD process (Binance spot, synthetic mode), so only the client's memory is measured.
The client opens ``--connections`` :class:`~cryptolink.engine.ManagedConnection`\\ s (default 1000), each with
one subscription to the trades of ``XRP/USDT``, a symbol the simulator does not serve: Binance accepts the
stream and sends nothing (docs/protocols/binance.md), so the connection is idle apart from the server's pings
every 20 s. The data watchdog's first-data timeout is raised to 1 h so that idle streams are not reset.

Figures: RSS of the client process (``/proc/self/statm``) after one warm-up connection, and after every
connection is open and its subscribe ack received; the difference divided by the count. Then ``tracemalloc``
traces ``--traced`` more connections to show the Python-heap share and the top allocation sites (tracemalloc
inflates RSS, so it runs after the RSS figure is taken).

``python -m bench.bench_memory [--quick] [--connections N]``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import time
import tracemalloc
from typing import Any

from bench.common import SimProcess, raise_fd_limit, rss_bytes, write_section
from bench.probe import wait_until
from cryptolink.clock import SystemClock
from cryptolink.engine import (
    ConnectionState,
    EngineConfig,
    ManagedConnection,
    WatchdogConfig,
    default_transport,
)
from cryptolink.exchanges.binance import BinanceSpotAdapter
from cryptolink.models import Channel, Subscription

__all__ = ["main", "run"]

_BATCH = 50


async def _open(adapter: BinanceSpotAdapter, n: int, start_id: int) -> list[ManagedConnection]:
    config = EngineConfig(watchdog=WatchdogConfig(first_data_timeout_s=3600.0, max_idle_s=3600.0), seed=1)
    spec = adapter.plan_connections([Subscription(Channel.TRADES, "XRP/USDT")])[0]
    clock = SystemClock()
    transport = default_transport()

    def on_data(_c: ManagedConnection, _items: list[Any]) -> None:
        return None

    conns: list[ManagedConnection] = []
    for i in range(0, n, _BATCH):
        batch = [
            ManagedConnection(
                adapter,
                spec,
                conn_id=f"idle-{start_id + i + j}",
                config=config,
                clock=clock,
                transport=transport,
                on_data=on_data,
            )
            for j in range(min(_BATCH, n - i))
        ]
        for c in batch:
            await c.start()
        await asyncio.wait_for(
            asyncio.gather(*(c.wait_for_state(ConnectionState.CONNECTED) for c in batch)), 30.0
        )
        conns.extend(batch)
    # every subscribe ack received (the ack is the only frame an idle connection gets)
    await wait_until(lambda: all(c.messages >= 1 for c in conns), 60.0, poll_s=0.05)
    return conns


async def measure(n: int, traced: int) -> dict[str, Any]:
    with SimProcess(["binance"], mode="synthetic") as sim:
        adapter = BinanceSpotAdapter(ws_base_url=sim.endpoints["binance"]["ws_url"])
        warm = await _open(adapter, 1, 0)
        gc.collect()
        rss0 = rss_bytes()
        t0 = time.perf_counter()
        conns = await _open(adapter, n, 1)
        open_s = time.perf_counter() - t0
        gc.collect()
        rss1 = rss_bytes()
        states = {c.state for c in conns}
        tm: dict[str, Any] = {}
        if traced:
            tracemalloc.start(1)
            snap0 = tracemalloc.take_snapshot()
            more = await _open(adapter, traced, n + 1)
            gc.collect()
            snap1 = tracemalloc.take_snapshot()
            tracemalloc.stop()
            stats = snap1.compare_to(snap0, "lineno")
            total = sum(s.size_diff for s in stats)
            tm = {
                "per_conn_bytes": total / traced,
                "top": [
                    (str(s.traceback[0]).replace(str(__file__), "bench_memory.py"), s.size_diff / traced)
                    for s in stats[:8]
                ],
            }
            conns.extend(more)
        await asyncio.gather(*(c.stop() for c in conns + warm), return_exceptions=True)
    return {
        "n": n,
        "rss0": rss0,
        "rss1": rss1,
        "per_conn": (rss1 - rss0) / n,
        "open_s": open_s,
        "states": sorted(s.value for s in states),
        "tracemalloc": tm,
    }


def run(quick: bool = False, connections: int | None = None) -> dict[str, Any]:
    logging.basicConfig(level=logging.WARNING)
    n = connections or (200 if quick else 1000)
    traced = 50 if quick else 100
    limit = raise_fd_limit(4 * n + 1024)
    res = asyncio.run(measure(n, traced))
    body = (
        f"| figure | value |\n|---|---:|\n"
        f"| idle connections | {res['n']} (all {', '.join(res['states'])}) |\n"
        f"| client RSS before / after | {res['rss0'] / 2**20:.1f} MiB / {res['rss1'] / 2**20:.1f} MiB |\n"
        f"| **RSS per idle connection** | **{res['per_conn'] / 1024:.1f} KiB** |\n"
        f"| time to open them (batches of {_BATCH}) | {res['open_s']:.1f} s |\n"
    )
    tm = res["tracemalloc"]
    if tm:
        body += f"| Python heap per connection (tracemalloc, {traced} more) | {tm['per_conn_bytes'] / 1024:.1f} KiB |\n"
        body += "\nTop allocation sites per connection (tracemalloc):\n\n"
        for where, size in tm["top"]:
            body += f"- {size / 1024:.1f} KiB: `{where}`\n"
    body += (
        f"\nClient side only (the simulator is a child process). One subscription per connection to a stream "
        f"that sends nothing; open-files limit raised to {limit}."
    )
    print(body)
    cmd = "python -m bench.bench_memory" + (" --quick" if quick else "")
    write_section("memory", "4. Memory per idle connection", cmd, body)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description="Benchmark 4: memory per idle connection")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--connections", type=int, default=None)
    args = ap.parse_args()
    run(quick=args.quick, connections=args.connections)


if __name__ == "__main__":
    main()
