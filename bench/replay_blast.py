"""A protocol-agnostic blast server: replays a captured client run as fast as the sockets take it (own process).

The per-exchange throughput benchmark (:mod:`bench.bench_exchanges`) first runs cryptolink against the
simulator and captures, at the transport seam, every frame each WebSocket received (exactly as on the wire: text,
or gzip binary for HTX) with the URL it was opened on, and every REST body it was answered. This server then
stands in for the exchange:

- a WebSocket upgrade on a captured path (path + query) takes the next captured session of that path; after the
  client's first frame (its subscribe request) and a short quiet period (``--settle`` s, so that every subscribe
  batch has been sent), it writes every captured frame of that session, in order, with no pacing; it then keeps
  the socket open and ignores what the client sends (pings, pongs, snapshot requests: their answers are in the
  captured stream already);
- a REST GET answers the first body captured for that path and query (instrument lists, book snapshots), so a
  book stitched to a REST snapshot bridges exactly as in the captured run.

``python -m bench.replay_blast CAPTURE_FILE`` prints one JSON line ``{"port"}`` and serves until terminated.
The capture file is msgpack: ``{"sessions": [[path_qs, [[binary, payload], ...]], ...], "rest": {path_qs:
body}}``.
Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import tempfile
from collections import defaultdict, deque
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import WSMsgType, web

__all__ = ["BlastProcess", "Capture", "main", "rest_key"]


class Capture(msgspec.Struct):
    """What the capture run saw: ``sessions`` = ``[(path_qs, frames)]`` in connect order; ``rest`` = body by
    ``path_qs`` (query keys sorted)."""

    sessions: list[tuple[str, list[tuple[bool, bytes]]]]
    rest: dict[str, bytes]

    @staticmethod
    def frames(received: list[str | bytes]) -> list[tuple[bool, bytes]]:
        """``(binary, payload)`` per frame (text frames UTF-8 encoded)."""
        return [(True, f) if isinstance(f, bytes) else (False, f.encode()) for f in received]


def rest_key(path: str, params: dict[str, str]) -> str:
    """``path?k=v&...`` with keys sorted (the REST lookup key of both sides)."""
    if not params:
        return path
    return path + "?" + "&".join(f"{k}={params[k]}" for k in sorted(params))


class BlastProcess:
    """This server in a child process, fed ``capture`` through a temporary file; ``with`` yields its port."""

    def __init__(self, capture: Capture, settle_s: float = 1.0) -> None:
        self._capture = capture
        self._settle_s = settle_s
        self._proc: subprocess.Popen[str] | None = None
        self._file: Any = None

    def __enter__(self) -> int:
        self._file = tempfile.NamedTemporaryFile(suffix=".msgpack")
        self._file.write(msgspec.msgpack.encode(self._capture))
        self._file.flush()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "bench.replay_blast", self._file.name, "--settle", str(self._settle_s)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parent.parent,
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError("the blast server ended before printing its port")
        return int(json.loads(line)["port"])

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._file is not None:
            self._file.close()


async def serve(capture: Capture, settle_s: float) -> None:
    pending: dict[str, deque[list[tuple[bool, bytes]]]] = defaultdict(deque)
    for path, frames in capture.sessions:
        pending[path].append(frames)

    async def handle(request: web.Request) -> web.StreamResponse:
        key = request.path_qs
        if request.headers.get("Upgrade", "").lower() == "websocket":
            queue = pending.get(key) or pending.get(request.path)
            if not queue:
                return web.Response(status=404, text=f"no captured session left for {key}")
            frames = queue.popleft()
            ws = web.WebSocketResponse(autoping=True, max_msg_size=0)
            await ws.prepare(request)
            first = await ws.receive()
            if first.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                return ws
            # every subscribe batch is sent within the settle time; what the client sends later is ignored
            with contextlib.suppress(TimeoutError):
                while True:
                    msg = await asyncio.wait_for(ws.receive(), settle_s)
                    if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                        return ws
            for binary, payload in frames:
                if binary:
                    await ws.send_bytes(payload)
                else:
                    await ws.send_str(payload.decode())
            async for _msg in ws:  # hold the socket open until the client closes it
                pass
            return ws
        params = dict(sorted(request.query.items()))
        body = capture.rest.get(rest_key(request.path, params)) or capture.rest.get(request.path)
        if body is None:
            return web.Response(status=404, text=f"not captured: {key}")
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    print(json.dumps({"port": port}), flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main() -> None:
    ap = argparse.ArgumentParser(description="replay a captured client run, unpaced")
    ap.add_argument("capture")
    ap.add_argument("--settle", type=float, default=1.0)
    args = ap.parse_args()
    with open(args.capture, "rb") as fh:
        capture = msgspec.msgpack.decode(fh.read(), type=Capture)

    async def run() -> None:
        task = asyncio.ensure_future(serve(capture, args.settle))
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(run())


if __name__ == "__main__":
    main()
