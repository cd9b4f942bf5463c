"""Helpers of the rate-limiter tests: a window checker and a closable TCP proxy to Redis (key clean-up: tests.redis_keys)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from cryptolink.ratelimit import Grant

REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379
REDIS_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/0"


def max_window_weight(grants: Iterable[Grant], pool: str, window_us: int) -> int:
    """The largest weight of ``pool`` granted in any window ``[t, t + window_us)`` starting at a grant."""
    points = sorted((g.at_us, g.weights[pool]) for g in grants if pool in g.weights)
    best = 0
    total = 0
    end = 0
    for start, (at, _w) in enumerate(points):
        while end < len(points) and points[end][0] < at + window_us:
            total += points[end][1]
            end += 1
        best = max(best, total)
        total -= points[start][1]
    return best


class TcpProxy:
    """Forwards 127.0.0.1:<port> to Redis; :meth:`close` drops the listener and every open connection (new
    connections are refused), :meth:`open` listens on the same port again."""

    def __init__(self) -> None:
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.connections = 0

    async def open(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection(REDIS_HOST, REDIS_PORT)
        self._writers.update((writer, up_writer))
        pumps = [
            asyncio.ensure_future(self._pump(reader, up_writer)),
            asyncio.ensure_future(self._pump(up_reader, writer)),
        ]
        self._tasks.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
                self._tasks.discard(task)
            for w in (writer, up_writer):
                w.transport.abort()
                self._writers.discard(w)

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
