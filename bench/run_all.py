"""Run every benchmark and update bench/RESULTS.md.

``python -m bench.run_all`` (full: about 30 minutes on 2 cores, 25 of them the recovery benchmark's outages and
flapping) or ``python -m bench.run_all --quick`` (short runs of each, about 5 minutes). ``--only throughput,memory`` picks benchmarks.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from bench import (
    bench_cluster,
    bench_exchanges,
    bench_memory,
    bench_nats,
    bench_reconnect,
    bench_recovery,
    bench_stall,
    bench_status,
    bench_throughput,
)

__all__ = ["BENCHMARKS", "main"]

# memory first: its RSS figure needs a fresh process (memory freed by the other benchmarks would be reused by
# the new connections and hide their cost)
BENCHMARKS: dict[str, Callable[[bool], Any]] = {
    "memory": lambda quick: bench_memory.run(quick=quick),
    "throughput": lambda quick: bench_throughput.run(quick=quick),
    "exchanges": lambda quick: bench_exchanges.run(quick=quick),
    "reconnect": lambda quick: bench_reconnect.run(quick=quick),
    "stall": lambda quick: bench_stall.run(quick=quick),
    "recovery": lambda quick: bench_recovery.run(quick=quick),
    "status": lambda quick: bench_status.run(quick=quick),
    "nats": lambda quick: bench_nats.run(quick=quick),
    "cluster": lambda quick: bench_cluster.run(quick=quick),
}


def main() -> None:
    ap = argparse.ArgumentParser(description="Run the cryptolink benchmarks")
    ap.add_argument("--quick", action="store_true", help="short runs (smoke test, about 5 min)")
    ap.add_argument("--only", default="", help=f"comma-separated subset of {','.join(BENCHMARKS)}")
    args = ap.parse_args()
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        ap.error(f"unknown benchmarks {unknown}; known: {list(BENCHMARKS)}")
    for name in names:
        print(f"\n=== {name} ===", flush=True)
        t0 = time.perf_counter()
        BENCHMARKS[name](args.quick)
        print(f"({name}: {time.perf_counter() - t0:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
