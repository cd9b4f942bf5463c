"""A purpose-built Binance-spot blast server for the end-to-end throughput benchmark (run in its own process).

It speaks just enough of the Binance spot protocol (docs/protocols/binance.md) for cryptolink's client:

- ``GET /api/v3/depth`` answers the recorded REST depth snapshot (limit 1000) of the hftbacktest spot
  ``btcusdt`` recording;
- a WebSocket upgrade on ``/stream`` (RFC 6455 handshake, no compression); every ``SUBSCRIBE`` request is
  acked with ``{"result":null,"id":N}``; protocol pings are answered with pongs; a close frame is echoed;
- after the first ack it sends the recorded frames that come before the snapshot, waits until the snapshot
  has been served, then writes every remaining frame as fast as the socket takes them (pre-encoded frames,
  written in 256 KiB chunks with transport flow control).

The recording (``btcusdt@depth@100ms`` + ``@trade`` + ``@bookTicker``, 41,248 frames, ~346 s of market time)
is replayed ``--passes`` times; each pass shifts the depth update ids, the bookTicker update ids and the trade
ids past the previous pass so that the client's sequence checks and duplicate filters see one continuous
stream (the depth chain stays contiguous across passes: ``U`` of a pass = ``u`` of the previous pass + 1).

``python -m bench.blast_server --passes 5`` prints one JSON line ``{"port", "frames", "pre_frames",
"trades", "tickers", "depth"}`` and serves until terminated. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import signal
import struct
import sys
from dataclasses import dataclass
from typing import Any

import msgspec

from cryptolink import recordings

__all__ = ["Blast", "build_blast", "main", "ws_frame"]

RECORDING = "hftbacktest_binance_spot_btcusdt_20240808.gz"
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_CHUNK = 256 * 1024


def ws_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """An unmasked server frame (FIN set) carrying ``payload``."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return head + payload


@dataclass(slots=True)
class Blast:
    """The encoded stream: ``pre`` (frames before the snapshot), ``rest`` (everything else), counts."""

    snapshot: bytes
    pre: bytes
    rest: bytes
    frames: int
    pre_frames: int
    trades: int
    tickers: int
    depth: int
    raw_frames: list[bytes]
    """The first pass's payloads as sent (for the in-process decode benchmarks)."""


def recorded_frames() -> tuple[bytes, list[bytes]]:
    """``(REST snapshot body, WebSocket frame payloads in order)`` of the spot btcusdt recording."""
    snapshot = b""
    frames: list[bytes] = []
    for _ts, frame in recordings.iter_hftbacktest(RECORDING):
        if frame.startswith('{"lastUpdateId"'):
            snapshot = frame.encode()
        else:
            frames.append(frame.encode())
    if not snapshot:
        raise RuntimeError(f"{RECORDING}: no REST snapshot line")
    return snapshot, frames


def build_blast(passes: int) -> Blast:
    """Encode ``passes`` shifted copies of the recording (see the module docstring)."""
    if passes < 1:
        raise ValueError("passes must be >= 1")
    snapshot, payloads = recorded_frames()
    decoded: list[dict[str, Any]] = [msgspec.json.decode(p) for p in payloads]
    depth = [d["data"] for d in decoded if "@depth" in d["stream"]]
    trades = [d["data"] for d in decoded if d["stream"].endswith("@trade")]
    tickers = [d["data"] for d in decoded if d["stream"].endswith("@bookTicker")]
    depth_span = depth[-1]["u"] - depth[0]["U"] + 1
    trade_span = trades[-1]["t"] - trades[0]["t"] + 1
    ticker_span = max(t["u"] for t in tickers) - tickers[0]["u"] + 1
    # frames before the snapshot: those recorded before the REST answer (the client buffers them)
    pre_count = 0
    snap_id = msgspec.json.decode(snapshot)["lastUpdateId"]
    for d in decoded:
        if "@depth" in d["stream"] and d["data"]["U"] > snap_id:
            break
        pre_count += 1
    pre_count = min(pre_count, 7)
    enc = msgspec.json.Encoder()
    out: list[bytes] = []
    first_pass: list[bytes] = []
    for k in range(passes):
        for d in decoded:
            data = d["data"]
            stream = d["stream"]
            if k:
                data = dict(data)
                if "@depth" in stream:
                    data["U"] += k * depth_span
                    data["u"] += k * depth_span
                elif stream.endswith("@trade"):
                    data["t"] += k * trade_span
                else:
                    data["u"] += k * ticker_span
            payload = enc.encode({"stream": stream, "data": data})
            if k == 0:
                first_pass.append(payload)
            out.append(ws_frame(payload))
    pre = b"".join(out[:pre_count])
    rest = b"".join(out[pre_count:])
    return Blast(
        snapshot=snapshot,
        pre=pre,
        rest=rest,
        frames=len(out),
        pre_frames=pre_count,
        trades=len(trades) * passes,
        tickers=len(tickers) * passes,
        depth=len(depth) * passes,
        raw_frames=first_pass,
    )


class _Conn(asyncio.Protocol):
    def __init__(self, server: BlastServer) -> None:
        self.server = server
        self.buf = bytearray()
        self.ws = False
        self.transport: asyncio.Transport | None = None
        self.can_write = asyncio.Event()
        self.can_write.set()
        self.blasting = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=4 * _CHUNK)

    def pause_writing(self) -> None:
        self.can_write.clear()

    def resume_writing(self) -> None:
        self.can_write.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.can_write.set()
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.ws:
            self._ws_frames()
            return
        while not self.ws:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).decode("latin-1")
            del self.buf[: end + 4]
            self._http(head)
        self._ws_frames()

    def _http(self, head: str) -> None:
        lines = head.split("\r\n")
        path = lines[0].split(" ")[1] if len(lines[0].split(" ")) > 1 else "/"
        headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        t = self.transport
        if t is None:
            return
        if headers.get("upgrade", "").lower() == "websocket":
            key = headers.get("sec-websocket-key", "").encode()
            accept = base64.b64encode(hashlib.sha1(key + _GUID).digest()).decode()
            t.write(
                (
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Accept: {accept}\r\n\r\n"
                ).encode()
            )
            self.ws = True
            return
        if path.startswith("/api/v3/depth"):
            body = self.server.blast.snapshot
            status = "200 OK"
        else:
            body = b'{"code":-1,"msg":"not served by the blast server"}'
            status = "404 Not Found"
        t.write(
            f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        if status.startswith("200") and not self.server.snapshot_served.is_set():
            self.server.snapshot_served.set()

    def _ws_frames(self) -> None:
        buf = self.buf
        while len(buf) >= 2:
            b0, b1 = buf[0], buf[1]
            n = b1 & 0x7F
            pos = 2
            if n == 126:
                if len(buf) < 4:
                    return
                n = struct.unpack_from("!H", buf, 2)[0]
                pos = 4
            elif n == 127:
                if len(buf) < 10:
                    return
                n = struct.unpack_from("!Q", buf, 2)[0]
                pos = 10
            masked = b1 & 0x80
            if len(buf) < pos + (4 if masked else 0) + n:
                return
            mask = bytes(buf[pos : pos + 4]) if masked else b"\0\0\0\0"
            pos += 4 if masked else 0
            payload = bytes(b ^ mask[i & 3] for i, b in enumerate(buf[pos : pos + n]))
            del buf[: pos + n]
            self._on_frame(b0 & 0x0F, payload)

    def _on_frame(self, opcode: int, payload: bytes) -> None:
        t = self.transport
        if t is None:
            return
        if opcode == 0x9:  # ping -> pong
            t.write(ws_frame(payload, 0xA))
        elif opcode == 0x8:  # close -> echo and close
            t.write(ws_frame(payload[:2], 0x8))
            t.close()
        elif opcode == 0x1:
            try:
                req = json.loads(payload)
            except ValueError:
                return
            t.write(ws_frame(json.dumps({"result": None, "id": req.get("id")}).encode()))
            if not self.blasting:
                self.blasting = True
                self.server.tasks.add(asyncio.ensure_future(self._blast()))

    async def _blast(self) -> None:
        blast = self.server.blast
        t = self.transport
        if t is None:
            return
        t.write(blast.pre)
        await self.server.snapshot_served.wait()
        rest = memoryview(blast.rest)
        for i in range(0, len(rest), _CHUNK):
            await self.can_write.wait()
            t = self.transport
            if t is None or t.is_closing():
                return
            t.write(rest[i : i + _CHUNK])


class BlastServer:
    """Serves :class:`Blast` on 127.0.0.1 (see the module docstring)."""

    def __init__(self, blast: Blast) -> None:
        self.blast = blast
        self.snapshot_served = asyncio.Event()
        self.tasks: set[asyncio.Future[None]] = set()
        self.server: asyncio.Server | None = None

    async def start(self, port: int = 0) -> int:
        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(lambda: _Conn(self), "127.0.0.1", port)
        sock = self.server.sockets[0]
        return int(sock.getsockname()[1])

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in self.tasks:
            task.cancel()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--passes", type=int, default=5)
    args = ap.parse_args()
    blast = build_blast(args.passes)

    async def run() -> None:
        server = BlastServer(blast)
        port = await server.start()
        info = {
            "port": port,
            "frames": blast.frames,
            "pre_frames": blast.pre_frames,
            "trades": blast.trades,
            "tickers": blast.tickers,
            "depth": blast.depth,
        }
        sys.stdout.write(json.dumps(info) + "\n")
        sys.stdout.flush()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await server.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


if __name__ == "__main__":
    main()
