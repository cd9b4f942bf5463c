"""Soak: memory and health over minutes of replayed data with a random fault every few seconds.

The demo's manager (Binance spot, USDⓈ-M, OKX spot and swap; trades, tickers, books) runs against the simulator
(a child process) replaying the recordings at ``--speed`` x, with seeded random faults (drop, stall, gap, notice,
lifetime, corrupt) on each exchange in turn, one every ``--fault-every`` seconds per exchange. RSS of the client
process is sampled every ``--sample`` seconds after a warm-up: the figure of interest is whether it stays flat
(everything bounded).

Run: ``python -m bench.bench_soak [--duration 300] [--speed 5]`` (not part of ``run_all``: it takes minutes).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter

from bench.common import SimProcess, rss_bytes, write_section
from cryptolink.demo import build_manager

KINDS = "drop+stall+gap+notice+lifetime+corrupt"


def fault_spec(every_s: float) -> str:
    """One seeded random fault stream per exchange, each every ``every_s`` seconds on average."""
    return ",".join(
        f"random:every={every_s:g}s:kinds={KINDS}:exchange={ex}" for ex in ("binance", "binanceusdm", "okx")
    )


async def soak(duration_s: float, speed: float, sample_s: float, warmup_s: float, every_s: float) -> str:
    counts: Counter[str] = Counter()
    with SimProcess(["binance", "binanceusdm", "okx"], speed=speed, faults=fault_spec(every_s)) as sim:
        manager = build_manager(sim.endpoints, seed=3)
        manager.on("trades", lambda _e: counts.update(("trades",)))
        manager.on("book", lambda _e: counts.update(("book updates",)))
        manager.on("ticker", lambda _e: counts.update(("tickers",)))
        await manager.start()
        start = time.monotonic()
        await asyncio.sleep(warmup_s)
        samples: list[tuple[float, int]] = []
        while time.monotonic() - start < duration_s:
            samples.append((time.monotonic() - start, rss_bytes()))
            await asyncio.sleep(sample_s)
        samples.append((time.monotonic() - start, rss_bytes()))
        stats = manager.stats()
        books = [(f.name, b.symbol, b.state) for f in stats.feeds for b in f.books]
        total = stats.total
        await manager.stop()
    first, last = samples[0][1], samples[-1][1]
    peak = max(r for _, r in samples)
    mib = 1024 * 1024
    rows = "\n".join(f"| {t:6.0f} | {r / mib:7.1f} |" for t, r in samples)
    return (
        f"Client RSS (the simulator is a child process). Replay at speed {speed:g} for {duration_s:.0f} s, a "
        f"random fault ({KINDS.replace('+', ', ')}) every ~{every_s:g} s on each of the 3 simulated exchanges, "
        f"warm-up {warmup_s:.0f} s. Delivered: "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items()))
        + f". Reconnect attempts {total.reconnect_attempts}, successful {total.successful_reconnects}. "
        f"RSS after warm-up {first / mib:.1f} MiB, at the end {last / mib:.1f} MiB, peak {peak / mib:.1f} MiB "
        f"(growth {(last - first) / mib:+.1f} MiB). Books at the end: "
        + "; ".join(f"{n} {s} {st}" for n, s, st in books)
        + ".\n\n| t (s) | RSS (MiB) |\n|---:|---:|\n"
        + rows
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--duration", type=float, default=300.0)
    ap.add_argument("--speed", type=float, default=5.0)
    ap.add_argument("--sample", type=float, default=30.0)
    ap.add_argument("--warmup", type=float, default=30.0)
    ap.add_argument("--fault-every", type=float, default=40.0)
    args = ap.parse_args()
    body = asyncio.run(soak(args.duration, args.speed, args.sample, args.warmup, args.fault_every))
    print(body)
    write_section(
        "soak",
        "5. Soak: memory and health under sustained replay and random faults",
        f"python -m bench.bench_soak --duration {args.duration:g} --speed {args.speed:g} "
        f"--fault-every {args.fault_every:g}",
        body,
    )


if __name__ == "__main__":
    main()
