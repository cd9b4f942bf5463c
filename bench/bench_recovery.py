"""Benchmark 6: recovery after outages, delivery under a fault every 5 s, and the connect budget at scale.

Every part runs the demo's manager (Binance spot BTC/USDT and ETH/USDT, USDⓈ-M BTC/USDT:USDT and ETH/USDT:USDT,
OKX BTC/USDT, OKX swap UNI/USD:UNI; trades, tickers (not on the swap) and books) with the DEFAULT engine and
manager settings against the simulator (in this process, replaying the shipped recordings at speed 1).

- ``outage``: the simulator makes every exchange unreachable for ``D`` seconds (connections cut, connects and
  REST refused: the ``outage`` fault). We measure, per entry, the time from the moment the simulator listens
  again to the first market event delivered, and whether the trades missed meanwhile were backfilled.
  The target: data flowing again < 60 s after the exchange is reachable, whatever the outage length.
- ``flap``: a random fault about every 5 s on every exchange (``random:every=5s``: drop, stall 1-5 s, gap,
  corrupt, notice) for ``D`` seconds. Per entry: the share of one-second intervals in which it delivered
  market data ("delivering"), its connections' uptime, reconnects and the backoff attempt they needed, and
  whether its books are live at the end. The target: >= 90 % of the time delivering.
- ``budget`` (fake time, no sockets): 1000 connections to one Binance host through the connect gate during a
  5-minute outage: attempts during the outage, the most connects in any 300 s window (Binance allows 300 per
  5 minutes per IP; the gate uses 270), and when they are all connected again.

``python -m bench.bench_recovery [outage|flap|budget|all] [--quick]``
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import time
from collections import Counter, defaultdict
from typing import Any

from bench.common import write_section
from cryptolink.clock import FakeClock
from cryptolink.demo import build_manager
from cryptolink.engine import ConnectionEvent, ConnectionEventType
from cryptolink.engine.gate import ConnectGate
from cryptolink.exchanges.base import ConnectRateLimit
from cryptolink.manager import ExchangeManager
from cryptolink.models import Gap, Trade
from cryptolink.simulator import Fault, RandomFaults, Simulator
from cryptolink.simulator.server import ExchangeServer

__all__ = ["budget", "flap", "main", "outage", "run"]

EXCHANGES = ["binance", "binanceusdm", "okx"]


class Watch:
    """Times of delivered market events per entry, gaps and reconnect events, from bus callbacks."""

    def __init__(self, manager: ExchangeManager) -> None:
        self.last: dict[str, float] = {}
        self.seconds: dict[str, set[int]] = defaultdict(set)
        self.first_after: dict[str, float] = {}
        self.mark: float | None = None
        self.gaps: list[Gap] = []
        self.attempts: Counter[int] = Counter()
        self.start = time.monotonic()
        for ch in ("trades", "ticker", "book"):
            manager.on(ch, self.on_market)
        manager.on("gaps", self.gaps.append)
        manager.on("events", self.on_event)

    def on_market(self, ev: Any) -> None:
        now = time.monotonic()
        feed = ev.feed
        self.last[feed] = now
        self.seconds[feed].add(int(now - self.start))
        live = not (isinstance(ev, Trade) and ev.backfilled)
        if self.mark is not None and feed not in self.first_after and now >= self.mark and live:
            self.first_after[feed] = now

    def on_event(self, ev: ConnectionEvent) -> None:
        if ev.type is ConnectionEventType.RECONNECT_SUCCESS and ev.attempt is not None:
            self.attempts[ev.attempt] += 1


async def _until(cond: Any, within_s: float) -> None:
    async def loop() -> None:
        # a benchmark driver, not a test: a coarse poll of health that has no event of its own
        while not cond():  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    await asyncio.wait_for(loop(), within_s)


async def outage(duration_s: float, seed: int = 7) -> dict[str, Any]:
    async with Simulator(exchanges=EXCHANGES, mode="replay", seed=seed) as sim:
        manager = build_manager(sim.endpoints(), seed=seed)  # the seed of the backoff jitter
        watch = Watch(manager)
        await manager.start()
        try:
            await _until(lambda: len(watch.last) == 4 and not manager.check_health(), 60)
            await asyncio.sleep(5.0)
            for ex in EXCHANGES:
                sim.inject(Fault("outage", duration_s=duration_s), exchange=ex)
            t_down = time.monotonic()
            for ex in EXCHANGES:
                server = sim.servers[ex]

                def down(s: ExchangeServer = server) -> bool:
                    return not s.listening

                await server.wait_until(down, 5)
            for ex in EXCHANGES:
                server = sim.servers[ex]

                def up(s: ExchangeServer = server) -> bool:
                    return s.listening

                await server.wait_until(up, duration_s + 10)
            t_back = time.monotonic()
            watch.mark = t_back
            await _until(lambda: len(watch.first_after) == 4, 120)
            await _until(lambda: not manager.check_health(), 120)
            t_healthy = time.monotonic()
            # the trade gaps of the outage are published once their backfills end
            await _until(lambda: all(fs.backfills_running == 0 for fs in manager.stats().feeds), 180)
            stats = manager.stats()
            return {
                "outage_s": duration_s,
                "seed": seed,
                "measured_outage_s": t_back - t_down,
                "first_data_s": {f: watch.first_after[f] - t_back for f in sorted(watch.first_after)},
                "healthy_s": t_healthy - t_back,
                "trade_gaps": [
                    (g.feed, g.symbol, g.recovered, g.backfilled)
                    for g in watch.gaps
                    if g.stream.value == "trades"
                ],
                "probes": sum(g.probes for g in stats.gates),
                "connects": sum(g.granted for g in stats.gates),
            }
        finally:
            await manager.stop()


async def flap(duration_s: float, every_s: float = 5.0) -> dict[str, Any]:
    faults = [RandomFaults(every_s, exchange=ex) for ex in EXCHANGES]
    async with Simulator(exchanges=EXCHANGES, mode="replay", seed=11, faults=faults) as sim:
        manager = build_manager(sim.endpoints(), seed=11)
        watch = Watch(manager)
        await manager.start()
        try:
            await asyncio.sleep(duration_s)
            stats = manager.stats()
            per_feed: dict[str, dict[str, Any]] = {}
            seconds = int(time.monotonic() - watch.start)
            for fs in stats.feeds:
                got = watch.seconds[fs.name]
                per_feed[fs.name] = {
                    "delivering_pct": 100.0 * len([s for s in got if 5 <= s < seconds]) / max(1, seconds - 5),
                    "uptime_pct": min(c.quality.uptime_pct for c in fs.connections),
                    "reconnects": sum(c.successful_reconnects for c in fs.connections),
                    "score": min(c.quality.score for c in fs.connections),
                    "books_live": f"{sum(b.state == 'live' for b in fs.books)}/{len(fs.books)}",
                    "gaps": fs.gaps,
                    "backfilled": fs.backfilled_trades,
                }
            faults_applied = len(sim.faults_applied)
            return {
                "duration_s": duration_s,
                "faults": faults_applied,
                "feeds": per_feed,
                "attempts": dict(sorted(watch.attempts.items())),
            }
        finally:
            await manager.stop()


async def budget(n: int = 1000, outage_s: float = 300.0) -> dict[str, Any]:
    clock = FakeClock()
    gate = ConnectGate("binance h", ConnectRateLimit(300, 300.0), clock, rng=random.Random(1))
    reachable = True
    grants: list[float] = []
    attempts_during = 0
    connected_at: dict[int, float] = {}
    rng = random.Random(2)

    async def connection(i: int) -> None:
        nonlocal attempts_during
        attempt = 0
        while True:
            permit = await gate.acquire()
            grants.append(clock.monotonic())
            if not reachable:
                attempts_during += 1
            permit.report(reachable)
            if reachable:
                connected_at[i] = clock.monotonic()
                return
            attempt += 1
            bound = min(30.0, 2.0 ** (attempt - 1))  # the default backoff: 1, 2, 4 ... 30 s, full jitter
            await clock.sleep(rng.uniform(0, bound))

    # every connection was up; the exchange goes down, every connection notices at once and retries
    reachable = False
    tasks = [asyncio.create_task(connection(i)) for i in range(n)]
    step = 1.0
    while clock.monotonic() < outage_s:
        await clock.advance(step)
    reachable = True
    back = clock.monotonic()
    while len(connected_at) < n:
        await clock.advance(step)
    await asyncio.gather(*tasks)
    times = sorted(grants)
    window_max = 0
    lo = 0
    for hi, t in enumerate(times):
        while times[lo] <= t - 300.0:
            lo += 1
        window_max = max(window_max, hi - lo + 1)
    done = sorted(connected_at.values())
    return {
        "connections": n,
        "outage_s": outage_s,
        "attempts_during_outage": attempts_during,
        "max_connects_per_300s": window_max,
        "first_connected_after_s": done[0] - back,
        "connected_within_60s": sum(1 for t in done if t - back <= 60.0),
        "270th_connected_after_s": done[min(269, n - 1)] - back,
        "all_connected_after_s": done[-1] - back,
    }


def _outage_body(runs: list[dict[str, Any]]) -> str:
    lines = [
        "| outage (jitter seed) | reachable again -> first data, per entry (s) | -> every entry healthy (s) | trades missed | "
        "backfilled | probes |",
        "|---:|---|---:|---|---:|---:|",
    ]
    for r in runs:
        firsts = ", ".join(f"{k} {v:.1f}" for k, v in r["first_data_s"].items())
        gaps = r["trade_gaps"]
        recovered = sum(1 for g in gaps if g[2])
        lines.append(
            f"| {r['outage_s']:.0f} s ({r['seed']}) | {firsts} | {r['healthy_s']:.1f} | {recovered}/{len(gaps)} trade "
            f"gaps recovered | {sum(g[3] for g in gaps)} | {r['probes']} |"
        )
    return "\n".join(lines)


def _flap_body(r: dict[str, Any]) -> str:
    lines = [
        f"{r['faults']} faults in {r['duration_s']:.0f} s (about one every 5 s per exchange). Reconnects by the "
        f"backoff attempt that succeeded: {r['attempts']} (1 = immediate).",
        "",
        "| entry | delivering % | uptime % | reconnects | score at end | books live at end | gaps | backfilled |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, f in r["feeds"].items():
        lines.append(
            f"| {name} | {f['delivering_pct']:.1f} | {f['uptime_pct']:.2f} | {f['reconnects']} | "
            f"{f['score']:.0f} | {f['books_live']} | {f['gaps']} | {f['backfilled']} |"
        )
    return "\n".join(lines)


def _budget_body(r: dict[str, Any]) -> str:
    return (
        f"{r['connections']} connections, {r['outage_s']:.0f} s outage (fake time, the gate and the default "
        f"backoff only): {r['attempts_during_outage']} connect attempts during the outage; at most "
        f"{r['max_connects_per_300s']} connects in any 300 s window (limit 300); after the host is back the "
        f"first connection is up in {r['first_connected_after_s']:.1f} s (one probe interval), "
        f"{r['connected_within_60s']} within 60 s (the window still holds the outage's attempts), the 270th "
        f"in {r['270th_connected_after_s']:.1f} s, all {r['connections']} in {r['all_connected_after_s']:.0f} s "
        "(the exchange's limit, not the engine, sets that pace)."
    )


def run(
    parts: tuple[str, ...] = ("budget", "outage", "flap"), quick: bool = False, flap_s: float = 600.0
) -> None:
    """Run ``parts`` and write their sections of bench/RESULTS.md (``quick``: one 20 s outage, 60 s of
    flapping; the full run takes about 25 minutes)."""
    logging.basicConfig(level=logging.ERROR)
    if "budget" in parts:
        r = asyncio.run(budget())
        print(r)
        write_section(
            "budget", "6c. Connect budget: 1000 connections, a 5-minute outage", "python -m bench.bench_recovery budget",
            _budget_body(r),
        )  # fmt: skip
    if "outage" in parts:
        durations = [20.0] if quick else [20.0, 20.0, 20.0, 300.0]
        runs = []
        for i, d in enumerate(durations):
            r = asyncio.run(outage(d, seed=7 + i))
            print(r)
            runs.append(r)
        write_section(
            "outage",
            "6a. Recovery after an outage (every exchange unreachable, REST too)",
            "python -m bench.bench_recovery outage" + (" --quick" if quick else ""),
            "The demo's manager, default settings, simulator replaying recordings at speed 1 in this process. "
            "Time from the simulator listening again to the first live market event of each entry, and to "
            "every entry healthy (connected, subscriptions confirmed, books live); the trade gaps published for "
            "the outage once every backfill ended (a stream without a trade since the outage has none yet)."
            "\n\n" + _outage_body(runs),
        )
    if "flap" in parts:
        seconds = 60.0 if quick else flap_s
        r = asyncio.run(flap(seconds))
        print(r)
        write_section(
            "flap",
            "6b. Delivery under a fault every 5 s",
            f"python -m bench.bench_recovery flap --flap-s {seconds:g}",
            "The demo's manager, default settings; `random:every=5s` on each simulated exchange (drop, stall "
            "1-5 s, gap, corrupt, notice). 'delivering %' = share of one-second intervals with at least one "
            "market event from the entry (the first 5 s excluded).\n\n" + _flap_body(r),
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("part", nargs="?", default="all", choices=["outage", "flap", "budget", "all"])
    ap.add_argument("--quick", action="store_true", help="a 20 s outage once and a 60 s flap run")
    ap.add_argument("--flap-s", type=float, default=600.0)
    args = ap.parse_args()
    parts = ("budget", "outage", "flap") if args.part == "all" else (args.part,)
    run(parts, args.quick, args.flap_s)


if __name__ == "__main__":
    main()
