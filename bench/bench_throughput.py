"""Benchmark 1: frames per CPU-second, end to end and stage by stage, on the Binance spot btcusdt recording.

Stages (each over the same recorded frames: ``btcusdt@depth@100ms`` + ``@trade`` + ``@bookTicker``):

1. bare JSON decode: ``msgspec.json.decode`` of each frame (and ``orjson.loads`` / ``json.loads`` for
   reference when installed);
2. adapter decode only: ``BinanceSpotAdapter.decode(frame, receipt_ns)``;
3. adapter decode + book: the decoded book messages go through ``BookSync`` (sequence checks, exact L2 book),
   no sockets;
4. end to end, once per transport (``picows``: :class:`~cryptolink.engine.transport_picows.PicowsTransport`,
   what :func:`~cryptolink.engine.transport.default_transport` returns; ``websockets``: :class:`~cryptolink.engine.transport.WebsocketsTransport`): an
   :class:`~cryptolink.manager.ExchangeManager` (one Binance spot feed, trades + ticker + book for
   ``BTC/USDT``) reads the frames from the blast server (:mod:`bench.blast_server`, a CHILD process, so
   its CPU is not counted) over loopback; WebSocket, engine, feed (dedupe, book sync), bus and one counting
   callback per channel. Rate = frames / ``time.process_time()`` of this (client) process, measured between
   two samples taken while the stream is flowing.

``python -m bench.bench_throughput [--quick] [--passes N] [--runs N] [--profile]``
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import json
import logging
import pstats
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from bench.blast_server import recorded_frames
from bench.common import write_section
from cryptolink.book.sync import BookSync
from cryptolink.exchanges.base import BookMessage
from cryptolink.exchanges.binance import BinanceSpotAdapter
from cryptolink.models import Channel, Subscription

if TYPE_CHECKING:
    from cryptolink.manager import ExchangeManager

__all__ = ["Attach", "end_to_end", "main", "run"]

SYMBOL = "BTC/USDT"


def _rate(fn: Callable[[], int], min_cpu_s: float) -> tuple[float, int]:
    """Run ``fn`` (returns frames processed) until ``min_cpu_s`` of CPU is used; frames per CPU-second."""
    gc.collect()
    frames = 0
    start = time.process_time()
    while True:
        frames += fn()
        used = time.process_time() - start
        if used >= min_cpu_s:
            return frames / used, frames


def stage_rates(min_cpu_s: float) -> dict[str, float]:
    """Frames per CPU-second of the in-process stages (see the module docstring)."""
    snapshot, payloads = recorded_frames()
    frames = [p.decode() for p in payloads]  # the transport hands text frames over as str
    out: dict[str, float] = {}

    decode = msgspec.json.decode

    def msgspec_generic() -> int:
        for f in frames:
            decode(f)
        return len(frames)

    out["msgspec.json.decode (generic)"] = _rate(msgspec_generic, min_cpu_s)[0]
    try:
        import orjson

        def orjson_loads() -> int:
            for f in frames:
                orjson.loads(f)
            return len(frames)

        out["orjson.loads"] = _rate(orjson_loads, min_cpu_s)[0]
    except ImportError:
        pass

    def json_loads() -> int:
        for f in frames:
            json.loads(f)
        return len(frames)

    out["json.loads (stdlib)"] = _rate(json_loads, min_cpu_s)[0]

    adapter = BinanceSpotAdapter()
    adapter.exchange_symbol(SYMBOL)

    def adapter_only() -> int:
        dec = adapter.decode
        for f in frames:
            dec(f, 0)
        return len(frames)

    out["adapter.decode"] = _rate(adapter_only, min_cpu_s)[0]

    def with_book() -> int:
        sync = BookSync(adapter.book_sync, "binance", SYMBOL, "BTCUSDT")
        sync.start()
        dec = adapter.decode
        on_message = sync.on_message
        snapped = False
        for f in frames:
            for item in dec(f, 0):
                if type(item) is BookMessage:
                    on_message(item)
                    if not snapped:
                        snapped = True
                        sync.on_snapshot(
                            adapter.parse_snapshot(snapshot, Subscription(Channel.BOOK, SYMBOL), 0)
                        )
        if sync.gaps or sync.state.value != "live":
            raise RuntimeError(f"book did not stay live: {sync.stats()}")
        return len(frames)

    out["adapter.decode + BookSync"] = _rate(with_book, min_cpu_s)[0]
    return out


TRANSPORTS = ("picows", "websockets")


def make_transport(name: str) -> Any:
    """A fresh transport by name (``picows`` or ``websockets``)."""
    if name == "picows":
        from cryptolink.engine.transport_picows import PicowsTransport

        return PicowsTransport()
    if name == "websockets":
        from cryptolink.engine.transport import WebsocketsTransport

        return WebsocketsTransport()
    raise ValueError(f"unknown transport {name!r}; known: {TRANSPORTS}")


Attach = Callable[["ExchangeManager"], Awaitable[Callable[[], Awaitable[None]]]]
"""Starts something beside the client's manager (the status service, in :mod:`bench.bench_status`) and returns
the coroutine function that stops it."""


async def _client(
    info: dict[str, Any], timeout_s: float, transport: str, attach: Attach | None = None
) -> dict[str, Any]:
    from cryptolink.manager import ExchangeManager

    url = f"ws://127.0.0.1:{info['port']}"
    rest = f"http://127.0.0.1:{info['port']}"
    m = (
        ExchangeManager.builder()
        .exchange("binance", symbols=[SYMBOL], ws_url=url, rest_url=rest)
        .runtime(seed=1, transport=make_transport(transport))
        .build()
    )
    counts = {"trades": 0, "ticker": 0, "book": 0}

    def counter(name: str) -> Callable[[object], None]:
        def inc(_ev: object) -> None:
            counts[name] += 1

        return inc

    for name in counts:
        m.on(name, counter(name))
    total = int(info["frames"])
    start_at = int(info["pre_frames"]) + min(2000, total // 10)
    detach = await attach(m) if attach is not None else None
    await m.start()
    conn = next(iter(m.feeds["binance"].connections.values()))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    sample0: tuple[float, int, float] | None = None
    sample1: tuple[float, int, float] | None = None
    try:
        while loop.time() < deadline:
            n = conn.messages
            if sample0 is None and n >= start_at:
                sample0 = (time.process_time(), n, time.perf_counter())
            if n >= total:
                sample1 = (time.process_time(), n, time.perf_counter())
                break
            await asyncio.sleep(0.02)
        book = m.book("binance", SYMBOL)
        health = m.feeds["binance"].book_health()
        stats = {
            "decode_errors": conn.decode_errors,
            "callback_errors": conn.callback_errors,
            "book_state": book.state.value if book is not None else None,
            "book_gaps": sum(b.gaps for b in health),
        }
    finally:
        await m.stop()
        if detach is not None:
            await detach()
    if sample0 is None or sample1 is None:
        raise RuntimeError(f"stream did not complete in {timeout_s} s: {conn.messages}/{total} frames")
    cpu = sample1[0] - sample0[0]
    frames = sample1[1] - sample0[1]
    wall = sample1[2] - sample0[2]
    return {
        "frames": frames,
        "cpu_s": cpu,
        "wall_s": wall,
        "rate": frames / cpu,
        "counts": counts,
        "expected": {k: info[k] for k in ("trades", "tickers", "depth", "frames")},
        **stats,
    }


def end_to_end(
    passes: int,
    profile: bool = False,
    timeout_s: float = 120.0,
    transport: str = "picows",
    attach: Attach | None = None,
) -> dict[str, Any]:
    """Run the blast server in a child process and the client here; returns the client's figures."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.blast_server", "--passes", str(passes)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("blast server did not start")
        info = json.loads(line)
        prof = cProfile.Profile() if profile else None
        if prof is not None:
            prof.enable()
        result = asyncio.run(_client(info, timeout_s, transport, attach))
        if prof is not None:
            prof.disable()
            s = io.StringIO()
            pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(25)
            result["profile"] = s.getvalue()
        return result
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run(
    quick: bool = False, passes: int | None = None, profile: bool = False, runs: int | None = None
) -> dict[str, Any]:
    """Run every stage, print the figures and update bench/RESULTS.md.

    The end-to-end figure is the median of ``runs`` client runs per transport (3, or 1 with ``quick``), the
    transports interleaved so that both see the same machine noise (single runs on the 2-core VM vary by
    +-15%).
    """
    logging.basicConfig(level=logging.WARNING)
    min_cpu = 0.3 if quick else 2.0
    passes = passes or (2 if quick else 6)
    runs = runs or (1 if quick else 3)
    stages = stage_rates(min_cpu)
    results: dict[str, list[dict[str, Any]]] = {t: [] for t in TRANSPORTS}
    for i in range(runs):
        for t in TRANSPORTS:
            results[t].append(
                end_to_end(passes, profile=profile and i == 0 and t == TRANSPORTS[0], transport=t)
            )
    medians: dict[str, dict[str, Any]] = {}
    for t, rs in results.items():
        for r in rs:
            if r["book_gaps"] or r["decode_errors"] or r["book_state"] != "live":
                raise RuntimeError(f"{t}: the end-to-end run lost data: {r}")
        medians[t] = sorted(rs, key=lambda r: r["rate"])[len(rs) // 2]
    lines = ["| stage | frames per CPU-second |", "|---|---:|"]
    for name, rate in stages.items():
        lines.append(f"| {name} | {rate:,.0f} |")
    default = TRANSPORTS[0]
    for t in TRANSPORTS:
        shown = f"{medians[t]['rate']:,.0f}"
        label = f"end to end, {t} transport"
        if t == default:
            label, shown = f"**{label}**", f"**{shown}**"
        lines.append(f"| {label} | {shown} |")
    e2e = medians[default]
    exp = e2e["expected"]
    each = "; ".join(f"{t}: " + ", ".join(f"{r['rate']:,.0f}" for r in results[t]) for t in TRANSPORTS)
    body = "\n".join(lines) + (
        f"\n\nEnd to end = socket -> adapter -> engine -> feed (dedupe, book sync) -> bus -> 1 counting callback "
        f"per channel; median of {runs} run(s) per transport, interleaved (each run: {each}). Median "
        f"{default} run: {e2e['frames']:,} frames measured ({passes} passes of the recording, "
        f"{exp['frames']:,} frames sent) in {e2e['cpu_s']:.2f} s client CPU / {e2e['wall_s']:.2f} s wall "
        f"(blast server in a child process). Delivered: {e2e['counts']['trades']:,} trades "
        f"(sent {exp['trades']:,}), {e2e['counts']['ticker']:,} tickers (sent {exp['tickers']:,}), "
        f"{e2e['counts']['book']:,} book updates (sent {exp['depth']:,} deltas); book "
        f"{e2e['book_state']}, {e2e['book_gaps']} gaps, {e2e['decode_errors']} decode errors (every run of "
        "both transports: book live, 0 gaps, 0 decode errors)."
    )
    cmd = "python -m bench.bench_throughput" + (" --quick" if quick else "")
    print(body)
    if profile:
        print(results[default][0]["profile"])
    write_section("throughput", "1. Frames per CPU-second (Binance spot btcusdt replay)", cmd, body)
    return {"stages": stages, "e2e": e2e, "runs": results}


def main() -> None:
    ap = argparse.ArgumentParser(description="Benchmark 1: frames per CPU-second")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--passes", type=int, default=None)
    ap.add_argument("--runs", type=int, default=None, help="end-to-end runs per transport (median)")
    ap.add_argument("--profile", action="store_true", help="cProfile the first end-to-end client run")
    args = ap.parse_args()
    run(quick=args.quick, passes=args.passes, profile=args.profile, runs=args.runs)


if __name__ == "__main__":
    main()
