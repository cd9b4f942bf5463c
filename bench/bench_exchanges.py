"""Benchmark 7: frames per CPU-second for every exchange the demo holds, end to end beside the bare decode.

For each demo exchange (:data:`cryptolink.demo.DEMO_ENTRIES`, grouped by exchange id):

1. **capture**: an :class:`~cryptolink.manager.ExchangeManager` holding the demo's feeds of that exchange (trades,
   tickers, L2 books) runs against the simulator (a child process) for ``--capture`` seconds at ``--speed`` x;
   every frame each WebSocket received (as on the wire: text, or gzip binary for HTX) is kept with its URL, and
   every REST body with its path (a wrapper at the transport seam and one around the REST gateway);
2. **end to end**: a fresh manager with the same config connects to :mod:`bench.replay_blast` (a CHILD process,
   its CPU not counted), which replays each captured session unpaced after the client subscribed. Rate = frames
   received / ``time.process_time()`` of this process from the first replayed frame to the last: socket ->
   transport -> inflate (HTX) -> adapter -> engine -> feed (dedupe, book sync, checksums) -> bus -> one counting
   callback per channel. The books must be live at the end and the client must not report errors;
3. **bare decode** of the same frames: ``msgspec.json.decode`` (HTX: ``gzip.decompress`` first);
4. **adapter decode** of those frames by an adapter of that run (symbol maps warm), the frames inflated first.

Real exchanges pace their channels (OKX books every 100 ms...), so the capture holds fewer frames per second than
the blast delivers: the blast measures what one core can take, not what the exchange sends.

``python -m bench.bench_exchanges [--quick] [--capture S] [--speed X] [--exchange ID ...]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import gzip
import time
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import msgspec

from bench.common import SimProcess, write_section
from bench.replay_blast import BlastProcess, Capture, rest_key
from cryptolink.clock import SystemClock
from cryptolink.demo import DEMO_ENTRIES, DEMO_EXCHANGES
from cryptolink.engine import default_transport
from cryptolink.engine.transport import Transport, TransportSession
from cryptolink.exchanges.base import DecodeError, ExchangeAdapter, FrameCompression, RestRequest, inflate
from cryptolink.manager import ExchangeManager
from cryptolink.rest import RestClient

__all__ = ["main", "run"]


def _rate(fn: Callable[[], int], min_cpu_s: float) -> float:
    gc.collect()
    frames = 0
    start = time.process_time()
    while True:
        frames += fn()
        used = time.process_time() - start
        if used >= min_cpu_s:
            return frames / used


class _Tap:
    """A transport session that records (or times) what the wrapped one receives."""

    def __init__(self, inner: TransportSession, sink: list[str | bytes] | None, meter: _Meter | None) -> None:
        self._inner = inner
        self._sink = sink
        self._meter = meter

    async def send(self, frame: str) -> None:
        await self._inner.send(frame)

    async def recv(self) -> str | bytes:
        frame = await self._inner.recv()
        self._took([frame])
        return frame

    async def recv_batch(self) -> list[str | bytes]:
        frames = await self._inner.recv_batch()
        self._took(frames)
        return frames

    def _took(self, frames: list[str | bytes]) -> None:
        if self._sink is not None:
            self._sink.extend(frames)
        if self._meter is not None:
            self._meter.took(len(frames))

    async def ping(self) -> float:
        return await self._inner.ping()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self._inner.close(code, reason)

    def abort(self) -> None:
        self._inner.abort()


class _Meter:
    """CPU time from the first frame received to the ``expected``-th (set ``done`` then)."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.frames = 0
        self.cpu0: float | None = None
        self.cpu1: float | None = None
        self.done = asyncio.Event()

    def took(self, n: int) -> None:
        if self.cpu0 is None:
            self.cpu0 = time.process_time()
        self.frames += n
        if self.frames >= self.expected and self.cpu1 is None:
            self.cpu1 = time.process_time()
            self.done.set()


class _TapTransport:
    def __init__(
        self, inner: Transport, sessions: list[tuple[str, list[str | bytes]]] | None, meter: _Meter | None
    ):
        self._inner = inner
        self._sessions = sessions
        self._meter = meter

    async def connect(self, url: str, *, max_frame_bytes: int) -> TransportSession:
        session = await self._inner.connect(url, max_frame_bytes=max_frame_bytes)
        sink: list[str | bytes] | None = None
        if self._sessions is not None:
            sink = []
            parts = urlsplit(url)
            self._sessions.append((parts.path + (f"?{parts.query}" if parts.query else ""), sink))
        return _Tap(session, sink, self._meter)


class _RestTap:
    """Keeps the first body of every REST path + query the feed asked for."""

    def __init__(self, inner: RestClient, base_path: str, store: dict[str, bytes]) -> None:
        self._inner = inner
        self._base_path = base_path
        self._store = store

    async def get(
        self, request: RestRequest, *, timeout_s: float | None = None, background: bool = False
    ) -> bytes:
        body = await self._inner.get(request, timeout_s=timeout_s, background=background)
        self._store.setdefault(rest_key(self._base_path + request.path, request.params), body)
        return body


def _manager(
    exchange: str, ws_url: str, rest_url: str, transport: Transport, **runtime: Any
) -> tuple[ExchangeManager, Counter[str]]:
    counts: Counter[str] = Counter()
    b = ExchangeManager.builder()
    for e in DEMO_ENTRIES:
        if e.exchange != exchange:
            continue
        b.exchange(
            e.name,
            exchange=e.exchange,
            market=e.market,
            symbols=list(e.symbols),
            channels=list(e.channels) if e.channels is not None else None,
            ws_url=ws_url,
            rest_url=rest_url,
        )
    manager = b.runtime(seed=1, transport=transport, **runtime).build()
    for channel in ("trades", "book", "ticker"):
        manager.on(channel, lambda _e, c=channel: counts.update((c,)))
    return manager, counts


async def capture_run(
    exchange: str, seconds: float, speed: float, min_frames: int
) -> tuple[Capture, list[ExchangeAdapter]]:
    """Run the demo feeds of ``exchange`` against the simulator for ``seconds``, or longer (up to 6x) until the
    sockets received ``min_frames``; what the sockets and REST calls received."""
    sessions: list[tuple[str, list[str | bytes]]] = []
    rest: dict[str, bytes] = {}
    adapters: list[ExchangeAdapter] = []
    enough = _Meter(min_frames)
    async with aiohttp.ClientSession() as http:
        with SimProcess([exchange], speed=speed) as sim:
            ep = sim.endpoints[exchange]

            def gateway(adapter: ExchangeAdapter) -> _RestTap:
                client = RestClient(exchange, adapter.rest_base_url, http, SystemClock(), None)
                return _RestTap(client, urlsplit(adapter.rest_base_url).path, rest)

            def keep(adapter: ExchangeAdapter) -> ExchangeAdapter:
                adapters.append(adapter)
                return adapter

            manager, _ = _manager(
                exchange,
                ep["ws_url"],
                ep["rest_url"],
                _TapTransport(default_transport(), sessions, enough),
                rest_gateway=gateway,
                adapter_wrapper=keep,
            )
            await manager.start()
            await asyncio.sleep(seconds)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(enough.done.wait(), 5 * seconds)
            await manager.stop()
    return Capture(sessions=[(p, Capture.frames(f)) for p, f in sessions], rest=rest), adapters


async def blast_run(exchange: str, capture: Capture, sim_ws: str, sim_rest: str) -> dict[str, Any]:
    """The same feeds against the replayed capture; frames per CPU-second and the end state."""
    expected = sum(len(f) for _, f in capture.sessions)
    meter = _Meter(expected)
    with BlastProcess(capture) as port:
        base = f"127.0.0.1:{port}"
        ws_url = f"ws://{base}{urlsplit(sim_ws).path}"
        rest_url = f"http://{base}{urlsplit(sim_rest).path}"
        manager, counts = _manager(
            exchange, ws_url, rest_url, _TapTransport(default_transport(), None, meter)
        )
        await manager.start()
        try:
            await asyncio.wait_for(meter.done.wait(), 120)
        finally:
            stats = manager.stats()
            await manager.stop()
    assert meter.cpu0 is not None and meter.cpu1 is not None
    books = [b for f in stats.feeds for b in f.books]
    return {
        "e2e": meter.frames / max(1e-9, meter.cpu1 - meter.cpu0),
        "frames": meter.frames,
        "books_live": sum(1 for b in books if b.state == "live"),
        "books": len(books),
        "errors": stats.total.errors,
        "delivered": dict(counts),
    }


async def measure(exchange: str, capture_s: float, speed: float, min_frames: int) -> dict[str, Any]:
    """One table row: capture, blast, then the decode-only stages over the captured frames."""
    with SimProcess([exchange], speed=speed) as sim:  # only to learn the URL paths the adapters use
        ep = sim.endpoints[exchange]
    capture, adapters = await capture_run(exchange, capture_s, speed, min_frames)
    row = await blast_run(exchange, capture, ep["ws_url"], ep["rest_url"])
    wire: list[str | bytes] = [p if b else p.decode() for _, frames in capture.sessions for b, p in frames]
    adapter = adapters[0]
    compression = adapter.policy.compression
    limit = adapter.policy.max_inflated_bytes
    decode = msgspec.json.decode
    if compression is not None:
        payloads: list[str | bytes] = [
            inflate(f, compression, limit) if isinstance(f, bytes) else f for f in wire
        ]

        def bare() -> int:
            for w in wire:
                try:  # noqa: SIM105 - cheaper than contextlib.suppress in this loop
                    decode(gzip.decompress(w) if isinstance(w, bytes) else w)
                except msgspec.DecodeError:  # a text control frame (OKX, Bitget ``pong``)
                    pass
            return len(wire)

    else:
        payloads = wire

        def bare() -> int:
            for w in wire:
                try:  # noqa: SIM105 - cheaper than contextlib.suppress in this loop
                    decode(w)
                except msgspec.DecodeError:  # a text control frame (OKX, Bitget ``pong``)
                    pass
            return len(wire)

    receipt = time.time_ns()
    # the first feed's adapter decodes every frame (a second feed of the exchange, e.g. okx-swap, sends the same
    # shapes; its symbols are mapped on first sight and cached)
    adapter_decode = adapter.decode

    def adapter_only() -> int:
        for f in payloads:
            try:  # noqa: SIM105 - cheaper than contextlib.suppress in this loop
                adapter_decode(f, receipt)
            except DecodeError:
                pass
        return len(payloads)

    row.update(
        exchange=exchange,
        compressed=compression is FrameCompression.GZIP,
        bare=_rate(bare, 0.5),
        adapter=_rate(adapter_only, 0.5),
    )
    return row


def run(
    quick: bool = False, capture_s: float | None = None, speed: float = 50.0, only: list[str] | None = None
) -> str:
    capture_s = capture_s if capture_s is not None else (5.0 if quick else 10.0)
    min_frames = 5_000 if quick else 30_000
    names = only or list(DEMO_EXCHANGES)
    rows = []
    for name in names:
        print(f"  {name} ...", flush=True)
        rows.append(asyncio.run(measure(name, capture_s, speed, min_frames)))
    lines = [
        "| exchange | end to end, frames/CPU-s | bare decode, frames/CPU-s | adapter decode, frames/CPU-s "
        "| adapter share of e2e CPU | frames | books live | errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        share = r["e2e"] / r["adapter"] if r["adapter"] else 0.0
        bare = f"{r['bare']:,.0f}" + (" (gzip + JSON)" if r["compressed"] else "")
        lines.append(
            f"| {r['exchange']} | **{r['e2e']:,.0f}** | {bare} | {r['adapter']:,.0f} | {share:.0%} "
            f"| {r['frames']:,} | {r['books_live']}/{r['books']} | {r['errors']} |"
        )
    body = "\n".join(lines) + (
        f"\n\nEach exchange: its demo feeds (`cryptolink.demo.DEMO_ENTRIES`) captured against the simulator at speed "
        f"{speed:g} for {capture_s:g} s or until {min_frames:,} frames (at most {6 * capture_s:g} s), then replayed unpaced by `bench/replay_blast.py` (a child process) to a "
        "fresh manager; end to end = frames / client CPU-seconds from the first replayed frame to the last. Bare and "
        'adapter decode over the same frames (HTX: gzip as sent). "adapter share" = end-to-end rate / '
        "adapter-decode rate: the part of a frame's client CPU spent in the adapter; the rest is the socket, "
        "inflate, engine, book sync and bus. Errors = the client's counted decode, exchange and checksum errors "
        "during the replay."
    )
    write_section(
        "exchanges",
        "7. Frames per CPU-second, every demo exchange (end to end beside the bare decode)",
        "python -m bench.bench_exchanges",
        body,
    )
    print(body)
    return body


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--capture", type=float, default=None, help="seconds of capture against the simulator")
    ap.add_argument("--speed", type=float, default=50.0)
    ap.add_argument("--exchange", action="append", default=[])
    args = ap.parse_args()
    run(args.quick, args.capture, args.speed, args.exchange or None)


if __name__ == "__main__":
    main()
