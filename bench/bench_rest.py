"""Benchmark: the REST manager against the simulator (each simulator in a child process).

1. **Overhead**: 1000 concurrent ``fetch_time`` calls through a ``RestManager`` member vs the same through a bare
   ccxt instance (throttler off, same simulator, limit raised out of the way): latency per request (p50, p99)
   and client CPU per request, median of interleaved rounds.
2. **Shared budget**: 4 worker processes (:mod:`bench.rest_worker`) saturate one Binance weight limit through
   Redis for ``--duration`` seconds (2 minutes in full) with a mix of weights (time 1, ticker 2, depth 5). The
   simulator enforces the limit and counts: 429s and 418s answered, and the weight it served over the limit's
   capacity in that time (utilisation), all from its ``/_sim/stats``, not from the clients.
3. **Failover**: a group of two members on two simulators under steady traffic (20 calls/s, round robin); one
   simulator is frozen with SIGSTOP, then resumed with SIGCONT: time until the member is ``offline`` (no more
   traffic), time until it is ``healthy`` again and served a call, and group calls that failed meanwhile.

``python -m bench.bench_rest [--quick]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import ccxt.async_support as ccxt_async

from bench.common import SimProcess, percentile, write_section
from cryptolink.config import RestConfig
from cryptolink.rest.managed import move_urls
from cryptolink.rest.manager import RestManager

__all__ = ["main", "run"]

_ROOT = Path(__file__).resolve().parent.parent
REDIS_URL = "redis://127.0.0.1:6379/0"
SPOT_ONLY = {"fetchMarkets": {"types": ["spot"]}}


def _sim_rest(rest_url: str) -> dict[str, Any]:
    with urllib.request.urlopen(rest_url + "/_sim/stats", timeout=10) as resp:
        return json.loads(resp.read())["rest"]  # type: ignore[no-any-return]


def _member(hosts: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {"exchange": "binance", "hosts": hosts, "options": SPOT_ONLY, **extra}


# ------------------------------------------------------------------------------------------------ 1. overhead


async def _round(call: Any, n: int) -> tuple[list[float], float]:
    lat: list[float] = []

    async def one() -> None:
        t = time.perf_counter()
        await call()
        lat.append(time.perf_counter() - t)

    cpu = time.process_time()
    await asyncio.gather(*(one() for _ in range(n)))
    return lat, (time.process_time() - cpu) / n


async def overhead(hosts: dict[str, str], n: int, rounds: int) -> dict[str, dict[str, float]]:
    bare = ccxt_async.binance({"enableRateLimit": False, "options": SPOT_ONLY})
    bare.urls = move_urls(bare.urls, hosts, None)
    config = RestConfig.model_validate(
        {
            "members": {"a": _member(hosts, max_concurrent=100)},  # ccxt's connection pool
            "limits": {"overrides": {"binance": {"weight": [10_000_000, 60], "raw": [10_000_000, 300]}}},
            "health": {"check_at_start": False, "interval_s": 3600},
        }
    )
    results: dict[str, list[tuple[list[float], float]]] = {"bare ccxt": [], "RestManager": []}
    seq: dict[str, list[float]] = {"bare ccxt": [], "RestManager": []}
    first_calls: list[float] = []
    for _ in range(rounds):  # a new member: its first call opens its HTTP connection
        async with RestManager(config) as fresh:
            t = time.perf_counter()
            await fresh.call("a", "fetch_time")
            first_calls.append(time.perf_counter() - t)
    try:
        async with RestManager(config) as rm:
            await bare.load_markets()
            await rm.call("a", "load_markets")
            calls = {"bare ccxt": bare.fetch_time, "RestManager": lambda: rm.call("a", "fetch_time")}
            for call in calls.values():  # warm-up: connections opened
                await _round(call, min(n, 200))
            for _ in range(rounds):
                for name, call in calls.items():
                    results[name].append(await _round(call, n))
            for _ in range(200):  # one request at a time: no queueing, the manager's own cost
                for name, call in calls.items():
                    t = time.perf_counter()
                    await call()
                    seq[name].append(time.perf_counter() - t)
    finally:
        await bare.close()
    out: dict[str, dict[str, float]] = {}
    for name, runs in results.items():
        p50 = sorted(percentile(lat, 50) * 1000 for lat, _ in runs)[len(runs) // 2]
        p99 = sorted(percentile(lat, 99) * 1000 for lat, _ in runs)[len(runs) // 2]
        cpu = sorted(c * 1e6 for _, c in runs)[len(runs) // 2]
        out[name] = {"p50_ms": p50, "p99_ms": p99, "cpu_us": cpu}
    for name, lat in seq.items():
        out[name]["seq_p50_ms"] = percentile(lat, 50) * 1000
        out[name]["seq_p99_ms"] = percentile(lat, 99) * 1000
    out["first call of a new member"] = {
        "p50_ms": percentile(first_calls, 50) * 1000,
        "max_ms": max(first_calls) * 1000,
    }
    return out


# ------------------------------------------------------------------------------------------------ 2. shared


def shared(limit: str, duration_s: float, workers: int, concurrency: int) -> dict[str, Any]:
    weight, window = limit.split("/")
    prefix = f"bench-rl-{uuid.uuid4().hex}"
    with SimProcess(["binance"], rest_limits=[f"binance={limit}"], symbols=["binance:BTCUSDT"]) as sim:
        ep = sim.endpoints["binance"]
        start_at = time.time() + 8.0 + workers * 1.5
        procs = [
            subprocess.Popen(
                [
                    sys.executable, "-m", "bench.rest_worker",
                    "--hosts", json.dumps(ep["hosts"]), "--redis", REDIS_URL, "--prefix", prefix,
                    "--limit", limit, "--start-at", str(start_at), "--duration", str(duration_s),
                    "--concurrency", str(concurrency),
                ],
                stdout=subprocess.PIPE, text=True, cwd=_ROOT,
            )
            for _ in range(workers)
        ]  # fmt: skip
        for p in procs:
            assert p.stdout is not None
            ready = p.stdout.readline()
            if not ready:
                raise RuntimeError("a worker ended before it was ready")
        time.sleep(max(0.0, start_at - time.time() - 0.2))
        before = _sim_rest(ep["rest_url"])
        time.sleep(max(0.0, start_at + duration_s - time.time()))
        at_end = _sim_rest(ep["rest_url"])  # the weight served within the run's duration
        outs = []
        for p in procs:
            assert p.stdout is not None
            outs.append(json.loads(p.stdout.readline()))
            p.wait(timeout=60)
        after = _sim_rest(ep["rest_url"])
    served = at_end["weight"] - before["weight"]
    capacity = int(weight) * duration_s / float(window)
    errors: dict[str, int] = {}
    for o in outs:
        for k, v in o["errors"].items():
            errors[k] = errors.get(k, 0) + v
    return {
        "workers": workers,
        "limit": limit,
        "duration_s": duration_s,
        "requests": after["requests"] - before["requests"],
        "weight_served": served,
        "capacity": capacity,
        "utilisation": served / capacity,
        "429": after["429"] - before["429"],
        "418": after["418"] - before["418"],
        "client_failures": sum(o["failed"] for o in outs),
        "client_errors": errors,
        "weight_after_end": after["weight"] - at_end["weight"],
        "modes": sorted({o["mode"] for o in outs}),
    }


# ------------------------------------------------------------------------------------------------ 3. failover


async def failover(interval_s: float, outage_s: float) -> dict[str, float]:
    with (
        SimProcess(["binance"], symbols=["binance:BTCUSDT"]) as sim_a,
        SimProcess(["binance"], symbols=["binance:BTCUSDT"]) as sim_b,
    ):
        assert sim_a.proc is not None
        config = RestConfig.model_validate(
            {
                "members": {
                    "a": _member(sim_a.endpoints["binance"]["hosts"]),
                    "b": _member(sim_b.endpoints["binance"]["hosts"]),
                },
                "groups": {"g": {"members": ["a", "b"], "strategy": "round_robin"}},
                "health": {"interval_s": interval_s},
            }
        )
        failed = 0
        calls = 0
        async with RestManager(config) as rm:
            await rm.call("a", "load_markets")
            await rm.call("b", "load_markets")
            stop = asyncio.Event()

            async def traffic() -> None:
                nonlocal failed, calls
                tasks: set[asyncio.Task[Any]] = set()

                async def one() -> None:
                    nonlocal failed, calls
                    calls += 1
                    try:
                        await rm.call_group("g", "fetch_time")
                    except Exception:
                        failed += 1

                while not stop.is_set():
                    t = asyncio.create_task(one())
                    tasks.add(t)
                    t.add_done_callback(tasks.discard)
                    await asyncio.sleep(0.05)
                await asyncio.gather(*tasks)

            offline = asyncio.Event()
            back = asyncio.Event()

            def on_state(member: str, old: str, new: str) -> None:
                if member == "a" and new == "offline":
                    offline.set()
                elif member == "a" and new in ("healthy", "degraded") and offline.is_set():
                    back.set()

            rm.add_state_listener(on_state)
            runner = asyncio.create_task(traffic())
            await asyncio.sleep(3.0)
            os.kill(sim_a.proc.pid, signal.SIGSTOP)
            t0 = time.monotonic()
            await offline.wait()
            detected = time.monotonic() - t0
            await asyncio.sleep(max(0.0, outage_s - detected))
            os.kill(sim_a.proc.pid, signal.SIGCONT)
            t1 = time.monotonic()
            await back.wait()
            recovered = time.monotonic() - t1
            stop.set()
            await runner
    return {
        "detected_s": detected,
        "recovered_s": recovered,
        "group_calls": calls,
        "group_calls_failed": failed,
    }


# ------------------------------------------------------------------------------------------------ main


def run(quick: bool = False) -> dict[str, Any]:
    n = 1000
    rounds = 3 if quick else 7
    with SimProcess(["binance"], rest_limits=["binance=100000000/60"], symbols=["binance:BTCUSDT"]) as sim:
        over = asyncio.run(overhead(sim.endpoints["binance"]["hosts"], n, rounds))
    duration = 20.0 if quick else 120.0
    share = shared("6000/60" if not quick else "600/10", duration, 4, 16)
    fail = asyncio.run(failover(interval_s=30.0, outage_s=20.0))
    bare, managed = over["bare ccxt"], over["RestManager"]
    first = over.pop("first call of a new member")
    lines = [
        f"1000 concurrent `fetch_time` calls, median of {rounds} interleaved rounds:",
        "",
        "| client | p50 (ms) | p99 (ms) | client CPU per request (µs) | one at a time: p50 (ms) | p99 (ms) |",
        "|---|---|---|---|---|---|",
        *(
            f"| {name} | {v['p50_ms']:.1f} | {v['p99_ms']:.1f} | {v['cpu_us']:.0f} | {v['seq_p50_ms']:.2f} | "
            f"{v['seq_p99_ms']:.2f} |"
            for name, v in over.items()
        ),
        f"| overhead | {managed['p50_ms'] - bare['p50_ms']:+.1f} | {managed['p99_ms'] - bare['p99_ms']:+.1f} "
        f"| {managed['cpu_us'] - bare['cpu_us']:+.0f} | {managed['seq_p50_ms'] - bare['seq_p50_ms']:+.2f} | "
        f"{managed['seq_p99_ms'] - bare['seq_p99_ms']:+.2f} |",
        "",
        f"First call of a new member (TCP connect included), {rounds} members: median {first['p50_ms']:.1f} ms, "
        f"max {first['max_ms']:.1f} ms.",
        "",
        f"{share['workers']} processes sharing Binance weight {share['limit']} (weight/seconds) through Redis for "
        f"{share['duration_s']:.0f} s, counted by the simulator's `/_sim/stats`:",
        "",
        "| requests | weight served in the run | capacity in the run | utilisation | 429 | 418 | client failures "
        "| limiter modes |",
        "|---|---|---|---|---|---|---|---|",
        f"| {share['requests']} | {share['weight_served']} | {share['capacity']:.0f} | "
        f"{share['utilisation']:.1%} | {share['429']} | {share['418']} | {share['client_failures']} "
        f"{share['client_errors'] or ''} | {', '.join(share['modes'])} |",
        "",
        "One of two members frozen (SIGSTOP) under 20 group calls/s, health checks every 30 s, member timeout 10 s:",
        "",
        "| detected offline (s) | healthy again after SIGCONT (s) | group calls | failed |",
        "|---|---|---|---|",
        f"| {fail['detected_s']:.2f} | {fail['recovered_s']:.2f} | {fail['group_calls']} | "
        f"{fail['group_calls_failed']} |",
    ]
    body = "\n".join(lines)
    print(body)
    write_section(
        "rest", "9. The REST manager: overhead, shared budget, failover", "python -m bench.bench_rest", body
    )
    return {"overhead": over, "shared": share, "failover": fail}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    run(quick=args.quick)


if __name__ == "__main__":
    main()
