"""Benchmark 10: the NATS JetStream sink beside the JSONL sink (events per CPU-second).

1. **capture**: the demo's feeds (:data:`cryptolink.demo.DEMO_ENTRIES`: six exchanges, trades, tickers and L2
   books) run against the simulator (a child process, replaying the shipped recordings) at ``--speed`` x for
   ``--capture`` seconds; every normalized event the bus delivers is kept in memory, in order.
2. **JSONL**: the captured events written through a fresh :class:`~cryptolink.sinks.jsonl.JsonlSink` into a temporary
   directory and closed (every line on disk). Rate = events / CPU-seconds of this process (its writer thread
   included).
3. **NATS**: the same events written through a :class:`~cryptolink.sinks.nats.NatsSink` to a private
   ``nats-server -js`` (a child process, file storage, its CPU reported apart) until JetStream acknowledged every
   one. Rate = events / CPU-seconds of this process; the server's CPU-seconds are given beside. Run with the
   default window (``max_pending_acks`` 1000) and, for comparison, with a window of 1: one acknowledgement awaited
   per message, what the issue says one collector project did.

The events are written in chunks of 1000 with a yield to the event loop between chunks (JSONL: a flush to the
writer thread after each chunk, and a wait for it every 10 chunks, or the blast outruns its bounded queue); the
buffers hold them all, so nothing is lost (checked).

``python -m bench.bench_nats [--quick] [--capture S] [--speed X]``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import nats
import psutil

from bench.common import SimProcess, write_section
from cryptolink.config import NatsConfig
from cryptolink.demo import DEMO_EXCHANGES, build_manager
from cryptolink.sinks.jsonl import JsonlSink
from cryptolink.sinks.nats import NatsEvent, NatsSink

__all__ = ["NatsServer", "capture", "main", "run"]

CHUNK = 1000


class NatsServer:
    """A private ``nats-server`` with JetStream on a free loopback port (file storage in a temporary directory)."""

    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port: int = s.getsockname()[1]
        self.url = f"nats://127.0.0.1:{self.port}"
        self.store = Path(tempfile.mkdtemp(prefix="cl-bench-nats-"))
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> NatsServer:
        exe = shutil.which("nats-server")
        if exe is None:
            raise RuntimeError("nats-server is not installed (Debian package nats-server)")
        self.proc = subprocess.Popen(
            [exe, "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.store)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.05)
        raise RuntimeError("nats-server did not listen within 10 s")

    def cpu_s(self) -> float:
        assert self.proc is not None
        t = psutil.Process(self.proc.pid).cpu_times()
        return float(t.user + t.system)

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.store, ignore_errors=True)


async def capture(seconds: float, speed: float) -> list[NatsEvent]:
    """The normalized events of the demo's feeds over ``seconds`` against the simulator at ``speed`` x."""
    events: list[NatsEvent] = []
    with SimProcess(list(DEMO_EXCHANGES), speed=speed) as sim:
        manager = build_manager(sim.endpoints)
        for channel in ("trades", "ticker", "book", "gaps"):
            manager.on(channel, events.append)
        await manager.start()
        await asyncio.sleep(seconds)
        await manager.stop()
    return events


def jsonl_rate(events: list[NatsEvent]) -> dict[str, Any]:
    out = Path(tempfile.mkdtemp(prefix="cl-bench-jsonl-"))
    try:
        gc.collect()
        sink = JsonlSink(out, flush_interval_s=1.0)
        t0, w0 = time.process_time(), time.perf_counter()
        for i in range(0, len(events), CHUNK):
            for e in events[i : i + CHUNK]:
                sink.write(e)
            sink.flush()
            if (i // CHUNK) % 10 == 9:
                sink.sync(60)  # let the writer thread catch up (a blast outruns it; the bus would pace it)
        sink.close()
        cpu, wall = time.process_time() - t0, time.perf_counter() - w0
        st = sink.stats()
        if st.lines_dropped or st.lines_written != len(events):
            raise RuntimeError(f"the JSONL sink lost lines: {st}")
        size = sum(p.stat().st_size for p in out.rglob("*.jsonl"))
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return {"events": len(events), "cpu_s": cpu, "wall_s": wall, "rate": len(events) / cpu, "bytes": size}


async def nats_rate(events: list[NatsEvent], url: str, server: NatsServer, window: int) -> dict[str, Any]:
    cfg = NatsConfig.model_validate(
        {
            "servers": [url],
            "max_pending_acks": window,
            "buffer_max_events": len(events) + 10,
            "ack_timeout_s": 60,
            "max_attempts": 1,
            "snapshot_interval_s": 0,
            "stream": {"name": f"BENCH_{window}", "max_bytes": None, "storage": "file"},
        }
    )
    sink = NatsSink(cfg)
    await sink.start()
    task = asyncio.create_task(sink.run())
    try:
        gc.collect()
        s0 = server.cpu_s()
        t0, w0 = time.process_time(), time.perf_counter()
        for i in range(0, len(events), CHUNK):
            for e in events[i : i + CHUNK]:
                sink.write(e)
            await asyncio.sleep(0)
        if not await sink.flush(600):
            raise RuntimeError("the NATS sink did not drain within 600 s")
        cpu, wall = time.process_time() - t0, time.perf_counter() - w0
        server_cpu = server.cpu_s() - s0
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await sink.aclose()
        nc = await nats.connect(url)
        try:
            await nc.jetstream().delete_stream(cfg.stream.name)  # the next run starts from an empty stream
        finally:
            await nc.close()
    st = sink.stats()
    if st.lost or st.acked != len(events):
        raise RuntimeError(f"the NATS sink lost events: {st}")
    return {
        "events": len(events),
        "cpu_s": cpu,
        "wall_s": wall,
        "rate": len(events) / cpu,
        "wall_rate": len(events) / wall,
        "server_cpu_s": server_cpu,
        "max_in_flight": st.max_in_flight,
    }


def _rates(runs: list[dict[str, Any]]) -> str:
    return ", ".join(f"{r['rate']:,.0f}" for r in runs)


def run(quick: bool = False, capture_s: float | None = None, speed: float = 20.0) -> dict[str, Any]:
    """Capture, then both sinks; prints and writes the section of bench/RESULTS.md."""
    logging.basicConfig(level=logging.WARNING)
    seconds = capture_s if capture_s is not None else (5.0 if quick else 20.0)
    events = asyncio.run(capture(seconds, speed))
    kinds: dict[str, int] = {}
    for e in events:
        kinds[str(e.channel)] = kinds.get(str(e.channel), 0) + 1
    jsonl = [jsonl_rate(events) for _ in range(1 if quick else 3)]
    nats_runs: list[dict[str, Any]] = []
    with NatsServer() as server:
        for _ in range(1 if quick else 3):
            nats_runs.append(asyncio.run(nats_rate(events, server.url, server, 1000)))
        sample = events[: min(len(events), 2000 if quick else 5000)]
        one = asyncio.run(nats_rate(sample, server.url, server, 1))
    j = sorted(jsonl, key=lambda r: r["rate"])[len(jsonl) // 2]
    n = sorted(nats_runs, key=lambda r: r["rate"])[len(nats_runs) // 2]
    lines = [
        f"{len(events):,} events captured from the demo's feeds over {seconds:g} s at {speed:g} x "
        f"({', '.join(f'{k} {v:,}' for k, v in sorted(kinds.items()))}).",
        "",
        "| sink | events per CPU-second (median) | runs | wall time | server CPU |",
        "|---|---:|---|---:|---:|",
        f"| JSONL (files, writer thread included) | **{j['rate']:,.0f}** | "
        f"{_rates(jsonl)} | {j['wall_s']:.2f} s | - |",
        f"| NATS JetStream, window 1000 | **{n['rate']:,.0f}** | "
        f"{_rates(nats_runs)} | {n['wall_s']:.2f} s "
        f"({n['wall_rate']:,.0f} events/s) | {n['server_cpu_s']:.2f} s |",
        f"| NATS JetStream, window 1 (one ack awaited per message) | {one['rate']:,.0f} | "
        f"{one['events']:,} events | {one['wall_s']:.2f} s ({one['wall_rate']:,.0f} events/s) | "
        f"{one['server_cpu_s']:.2f} s |",
        "",
        f"Every event acknowledged by JetStream (file storage, one stream), none lost; at most "
        f"{n['max_in_flight']:,} in flight. JSONL wrote {j['bytes'] / 1e6:.1f} MB.",
    ]
    body = "\n".join(lines)
    print(body)
    write_section(
        "nats",
        "10. The NATS sink beside the JSONL sink (events per CPU-second)",
        "python -m bench.bench_nats",
        body,
    )
    return {"jsonl": jsonl, "nats": nats_runs, "window_1": one, "events": len(events)}


def main() -> None:
    ap = argparse.ArgumentParser(description="NATS sink beside the JSONL sink")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--capture", type=float, default=None, help="capture seconds")
    ap.add_argument("--speed", type=float, default=20.0)
    args = ap.parse_args()
    run(args.quick, args.capture, args.speed)


if __name__ == "__main__":
    main()
