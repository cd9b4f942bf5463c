"""Benchmark 11: scale-out workers — the failover gap a consumer sees, its duplicates, and rebalancing time.

Every worker is a real ``cryptolink run CONFIG.yaml`` process with ``nats.cluster.enabled`` (default lease TTL
10 s, renewal every 3.3 s), against the simulator (a child process) and a private ``nats-server -js`` (a child
process, file storage); the benchmark process only watches the lease bucket and reads the stream.

1. **Failover** (Binance spot BTC/USDT trades and book as one shard, Binance USDⓈ-M BTC/USDT:USDT as another):
   two workers; once every slot is held and streaming, the worker holding the spot shard is SIGKILLed. The stream
   is then read from its start: the trade-id hole (ids missing: Binance ids are contiguous), its length in
   exchange time (the last trade stored before the hole to the first after it), book updates missed
   (:class:`~cryptolink.consumer.books.BookRebuilder`), and duplicates (a trade id or a book sequence delivered
   twice). With redundancy 1 the hole is bounded by the lease TTL plus the new holder's start; with redundancy 2
   the target is no hole at all. Duplicates: target 0 in both.
2. **Rebalancing**, 6 exchanges (one trades shard each: binance, binanceusdm, binancecoinm, okx, bybit, gate) and
   redundancy 1: two workers hold 3 + 3; then a third joins (time from its heartbeat to 2/2/2 with every shard
   started by its holder), one leaves with SIGTERM (its leases released, make-before-break: time to 3/3 with every
   shard started), and one is SIGKILLed (its leases expire: time until every shard is held and started again).

``python -m bench.bench_cluster [--quick]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import os
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client as NatsClient

from bench.bench_nats import NatsServer
from bench.common import SimProcess, write_section
from cryptolink.cluster.leases import decode_value
from cryptolink.consumer.books import BookRebuilder, Verdict
from cryptolink.consumer.reader import JetStreamReader
from cryptolink.models import BookUpdate, Trade

__all__ = ["main", "run"]

_ROOT = Path(__file__).resolve().parent.parent
BUCKET = "bench_leases"
STREAM = "BENCH_CLUSTER"
SUBJECTS = "bench"


class Bucket:
    """The lease bucket as a KV watcher sees it: shard key -> (worker, started); worker ids with a heartbeat."""

    def __init__(self) -> None:
        self.shards: dict[str, tuple[str, bool]] = {}
        self.workers: set[str] = set()
        self.changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self, nc: NatsClient, ttl_s: float) -> None:
        kv = await nc.jetstream().create_key_value(bucket=BUCKET, ttl=ttl_s, history=1)
        watcher = await kv.watchall()

        async def follow() -> None:
            async for entry in watcher:
                if entry is None:
                    continue
                value = decode_value(entry.value) if entry.operation is None else None
                if entry.key.startswith("shard."):
                    if value is None:
                        self.shards.pop(entry.key, None)
                    else:
                        self.shards[entry.key] = (value.worker, value.started_ms is not None)
                elif entry.key.startswith("worker."):
                    wid = entry.key.removeprefix("worker.")
                    if value is None or value.state == "stopping":
                        self.workers.discard(wid)
                    else:
                        self.workers.add(wid)
                self.changed.set()

        self._task = asyncio.create_task(follow())

    async def wait(self, ok: Callable[[Bucket], bool], within_s: float) -> float:
        """Wait until ``ok(self)``; return the wall time (perf_counter) it became true."""

        async def loop() -> float:
            while not ok(self):
                self.changed.clear()
                await self.changed.wait()
            return time.perf_counter()

        return await asyncio.wait_for(loop(), within_s)

    def per_worker(self, started: bool = True) -> Counter[str]:
        return Counter(w for w, s in self.shards.values() if s or not started)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


def _config(path: Path, entries: list[str], nats_url: str, redundancy: int) -> None:
    path.write_text(
        "exchanges:\n"
        + "".join(f"  {e}\n" for e in entries)
        + "status: {enabled: false}\n"
        + f"nats: {{servers: ['{nats_url}'], subject_root: {SUBJECTS}, snapshot_interval_s: 5, "
        f"stream: {{name: {STREAM}}}, cluster: {{enabled: true, bucket: {BUCKET}, redundancy: {redundancy}}}}}\n"
    )


async def _spawn(cfg: Path, worker_id: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cryptolink.cli",
        "run",
        str(cfg),
        "--no-status",
        env={**os.environ, "CRYPTOLINK__NATS__CLUSTER__WORKER_ID": worker_id},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
        cwd=_ROOT,
    )


async def _stop_all(procs: dict[str, asyncio.subprocess.Process]) -> None:
    for p in procs.values():
        if p.returncode is None:
            p.send_signal(signal.SIGTERM)
    for p in procs.values():
        try:
            await asyncio.wait_for(p.wait(), 30)
        except TimeoutError:
            p.kill()
            await p.wait()


def _balanced(shape: list[int], slots: int) -> Callable[[Bucket], bool]:
    def ok(b: Bucket) -> bool:
        started = sorted(b.per_worker().values(), reverse=True)
        return sum(started) == slots and started == shape and len(b.shards) == slots

    return ok


# ------------------------------------------------------------------------------------------------ failover


async def failover(redundancy: int, sim: SimProcess, server: NatsServer) -> dict[str, Any]:
    eps = sim.endpoints
    entries = [
        f"spot: {{exchange: binance, symbols: [BTC/USDT], channels: [trades, book], "
        f"ws_url: '{eps['binance']['ws_url']}', rest_url: '{eps['binance']['rest_url']}'}}",
        f"perp: {{exchange: binanceusdm, market: perpetual, symbols: [BTC/USDT:USDT], channels: [trades, book], "
        f"ws_url: '{eps['binanceusdm']['ws_url']}', rest_url: '{eps['binanceusdm']['rest_url']}'}}",
    ]
    nc = await nats.connect(server.url)
    bucket = Bucket()
    procs: dict[str, asyncio.subprocess.Process] = {}
    tmp = Path(tempfile.mkdtemp(prefix="cl-bench-cluster-"))
    try:
        with contextlib.suppress(Exception):
            await nc.jetstream().delete_stream(STREAM)
        with contextlib.suppress(Exception):
            await nc.jetstream().delete_key_value(BUCKET)
        cfg = tmp / "failover.yaml"
        _config(cfg, entries, server.url, redundancy)
        await bucket.start(nc, 10.0)
        for wid in ("a", "b"):
            procs[wid] = await _spawn(cfg, wid)
        slots = 2 * redundancy
        await bucket.wait(lambda b: sum(b.per_worker().values()) == slots, 90)
        await asyncio.sleep(5.0)  # both streaming steadily; books live
        victim = bucket.shards["shard.spot.0"][0]
        killed_at = time.perf_counter()
        procs[victim].send_signal(signal.SIGKILL)
        await procs[victim].wait()
        survivor = "b" if victim == "a" else "a"
        if redundancy == 1:
            took = await bucket.wait(lambda b: b.shards.get("shard.spot.0") == (survivor, True), 60)
            takeover_s: float | None = took - killed_at
        else:
            takeover_s = None
        await asyncio.sleep(8.0)  # the survivor streams on alone
        await _stop_all(procs)
        trades: list[int] = []
        trade_ms: list[int] = []
        rebuilder = BookRebuilder()
        verdicts: Counter[Verdict] = Counter()
        async with JetStreamReader(
            f"bench{redundancy}", nc=nc, stream=STREAM, subject_root=SUBJECTS, until_caught_up=True
        ) as reader:
            async for _, event, _ in reader:
                if event.exchange != "binance":
                    continue
                verdicts[rebuilder.feed(event)] += 1
                if isinstance(event, Trade) and event.sequence is not None:
                    trades.append(event.sequence)
                    trade_ms.append(event.timestamp_ms or 0)
                elif isinstance(event, BookUpdate):
                    pass
    finally:
        await _stop_all(procs)
        await bucket.stop()
        with contextlib.suppress(Exception):
            await nc.jetstream().delete_stream(STREAM)
        with contextlib.suppress(Exception):
            await nc.jetstream().delete_key_value(BUCKET)
        await nc.close()
    hole_ids = 0
    hole_ms = 0
    holes: list[tuple[int, int]] = []
    order = sorted(range(len(trades)), key=lambda i: trades[i])  # stream order is first arrival, not id order
    for a, b in itertools.pairwise(order):
        step = trades[b] - trades[a]
        if step > 1:
            hole_ids += step - 1
            hole_ms = max(hole_ms, trade_ms[b] - trade_ms[a])
            holes.append((step - 1, trade_ms[b] - trade_ms[a]))
    stats = rebuilder.stats()
    return {
        "redundancy": redundancy,
        "trades": len(trades),
        "missing_ids": hole_ids,
        "holes": holes,
        "hole_ms": hole_ms,
        "trade_duplicates": len(trades) - len(set(trades)),
        "book_gaps": stats.book_gaps,
        "book_duplicates": stats.duplicates.get("book", 0),
        "stale_snapshots": stats.stale_snapshots,
        "takeover_s": takeover_s,
        "books_live": stats.books_live,
    }


# --------------------------------------------------------------------------------------------- rebalancing

_SIX = (
    ("binance", "binance", "spot", "BTC/USDT"),
    ("binanceusdm", "binanceusdm", "perpetual", "BTC/USDT:USDT"),
    ("binancecoinm", "binancecoinm", "perpetual", "BTC/USD:BTC"),
    ("okx", "okx", "spot", "BTC/USDT"),
    ("bybit", "bybit", "spot", "BTC/USDT"),
    ("gate", "gate", "spot", "BTC/USDT"),
)


async def rebalance(sim: SimProcess, server: NatsServer) -> dict[str, float]:
    eps = sim.endpoints
    entries = [
        f"{name}: {{exchange: {ex}, market: {market}, symbols: ['{sym}'], channels: [trades], "
        f"ws_url: '{eps[ex]['ws_url']}', rest_url: '{eps[ex]['rest_url']}'}}"
        for name, ex, market, sym in _SIX
    ]
    nc = await nats.connect(server.url)
    bucket = Bucket()
    procs: dict[str, asyncio.subprocess.Process] = {}
    tmp = Path(tempfile.mkdtemp(prefix="cl-bench-cluster-"))
    out: dict[str, float] = {}
    try:
        with contextlib.suppress(Exception):
            await nc.jetstream().delete_key_value(BUCKET)
        cfg = tmp / "six.yaml"
        _config(cfg, entries, server.url, 1)
        await bucket.start(nc, 10.0)
        t0 = time.perf_counter()
        for wid in ("a", "b"):
            procs[wid] = await _spawn(cfg, wid)
        out["cold_start_2_workers_s"] = await bucket.wait(_balanced([3, 3], 6), 120) - t0
        procs["c"] = await _spawn(cfg, "c")
        joined = await bucket.wait(lambda b: "c" in b.workers, 60)
        out["join_s"] = await bucket.wait(_balanced([2, 2, 2], 6), 120) - joined
        leaving = "a"
        t1 = time.perf_counter()
        procs[leaving].send_signal(signal.SIGTERM)
        out["leave_sigterm_s"] = (
            await bucket.wait(lambda b: _balanced([3, 3], 6)(b) and leaving not in b.per_worker(), 120) - t1
        )
        await procs[leaving].wait()
        victim = "b"
        t2 = time.perf_counter()
        procs[victim].send_signal(signal.SIGKILL)
        await procs[victim].wait()
        out["kill_sigkill_s"] = (
            await bucket.wait(
                lambda b: _balanced([6], 6)(b) and victim not in b.per_worker(started=False), 120
            )
            - t2
        )
    finally:
        await _stop_all(procs)
        await bucket.stop()
        with contextlib.suppress(Exception):
            await nc.jetstream().delete_key_value(BUCKET)
        with contextlib.suppress(Exception):
            await nc.jetstream().delete_stream(STREAM)
        await nc.close()
    return out


def run(quick: bool = False) -> dict[str, Any]:
    logging.basicConfig(level=logging.WARNING)
    trials = 1 if quick else 2
    exchanges = [ex for _, ex, _, _ in _SIX]
    results: dict[str, Any] = {"failover": [], "rebalance": []}
    with SimProcess(exchanges, speed=1.0) as sim, NatsServer() as server:
        for redundancy in (1, 2):
            for _ in range(trials):
                results["failover"].append(asyncio.run(failover(redundancy, sim, server)))
        for _ in range(trials):
            results["rebalance"].append(asyncio.run(rebalance(sim, server)))
    lines = [
        "| redundancy | trades read | trade ids missing | longest hole (exchange time) | duplicates (trades / book) "
        "| book updates missed | lease taken over after |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["failover"]:
        takeover = f"{r['takeover_s']:.1f} s" if r["takeover_s"] is not None else "- (other replica running)"
        lines.append(
            f"| {r['redundancy']} | {r['trades']:,} | {r['missing_ids']:,} | {r['hole_ms'] / 1000:.1f} s | "
            f"{r['trade_duplicates']} / {r['book_duplicates']} | {r['book_gaps']} | {takeover} |"
        )
    lines += [
        "",
        "| rebalancing, 6 exchanges, redundancy 1 | "
        + " | ".join(f"run {i + 1}" for i in range(trials))
        + " |",
        "|---|" + "---:|" * trials,
    ]
    labels = {
        "cold_start_2_workers_s": "2 workers start: every shard held and started (3/3)",
        "join_s": "a 3rd worker joins: from its heartbeat to 2/2/2, every shard started by its holder",
        "leave_sigterm_s": "a worker leaves (SIGTERM): to 3/3, every shard started (make-before-break)",
        "kill_sigkill_s": "a worker is killed (SIGKILL): to 6 on the survivor, every shard started",
    }
    for key, label in labels.items():
        lines.append(f"| {label} | " + " | ".join(f"{r[key]:.1f} s" for r in results["rebalance"]) + " |")
    lines += [
        "",
        "Lease TTL 10 s, renewal every 3.3 s (the defaults); workers are `cryptolink run` processes on this "
        "machine; the simulator replays Binance at 1x (BTC/USDT: about 15 trades per second, so a hole of less than "
        "a tenth of a second may hold no trade id). Duplicates are counted on the stream as the consumer reads it: a trade "
        "id or a book delta delivered twice.",
    ]
    body = "\n".join(lines)
    print(body)
    write_section(
        "cluster",
        "11. Scale-out: failover gap, duplicates, rebalancing",
        "python -m bench.bench_cluster",
        body,
    )
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description="scale-out workers: failover and rebalancing")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    run(args.quick)


if __name__ == "__main__":
    main()
