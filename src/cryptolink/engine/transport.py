"""The socket seam: a :class:`Transport` opens :class:`TransportSession` objects; the engine only sees these.

:class:`WebsocketsTransport` is the real implementation on ``websockets.asyncio.client.connect`` (websockets
>= 14):

- ``max_size`` = the adapter's ``ConnectionPolicy.max_frame_bytes``: a larger frame makes ``recv`` raise
  :class:`~cryptolink.engine.errors.FrameTooLarge` (the library closes the socket with code 1009);
- ``ping_interval=None``: the engine drives keepalive itself (``ping()``), per adapter policy;
- ``compression=None`` (the supported exchanges send plain JSON text: docs/protocols/);
- ``open_timeout_s``: bounds the TCP + TLS + HTTP upgrade; a server that accepts TCP but never answers the
  handshake raises :class:`~cryptolink.engine.errors.HandshakeTimeout`;
- ``max_queue``: received frames buffered by the library (bounded, default 64); ``recv_batch`` returns the
  complete messages already queued;
- server protocol pings are answered automatically by the library with a pong echoing the payload (the Binance
  rule: docs/protocols/binance.md "Keepalive").

Library errors are mapped onto :mod:`cryptolink.engine.errors` with ``raise ... from exc``.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Protocol

import websockets
from websockets.asyncio.client import ClientConnection, connect
from websockets.frames import CloseCode

from cryptolink.engine.errors import (
    ConnectError,
    ConnectionClosed,
    CryptolinkError,
    FrameTooLarge,
    HandshakeTimeout,
)

__all__ = [
    "Transport",
    "TransportSession",
    "WebsocketsSession",
    "WebsocketsTransport",
    "connect_reason",
    "default_transport",
    "describe_error",
]


def connect_reason(exc: BaseException) -> str:
    """A short, readable reason for a failed connect (``connection refused``, ``DNS lookup failed: ...``,
    ``HTTP 503 during the WebSocket handshake``), without repeating the URL."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset by peer"
    if isinstance(exc, socket.gaierror):
        return f"DNS lookup failed: {exc.strerror or exc}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[0].lower() + exc.strerror[1:] + (f" (errno {exc.errno})" if exc.errno else "")
    if isinstance(exc, websockets.exceptions.InvalidStatus):
        return f"HTTP {exc.response.status_code} during the WebSocket handshake"
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def describe_error(exc: BaseException) -> str:
    """How an error reads in an event or a log line: the message of our own errors (which already say what
    failed), ``Type: message`` for anything else."""
    if isinstance(exc, CryptolinkError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


class TransportSession(Protocol):
    """One open socket."""

    async def send(self, frame: str) -> None:
        """Send a text frame.

        Raises:
            ConnectionClosed: the socket is closed.
        """
        ...

    async def recv(self) -> str | bytes:
        """The next data frame (text as ``str``, binary as ``bytes``).

        Raises:
            ConnectionClosed: the socket closed (``code`` and ``reason`` of the close frame).
            FrameTooLarge: the frame exceeded the size limit; the socket is closed.
        """
        ...

    async def recv_batch(self) -> list[str | bytes]:
        """Every data frame already received, oldest first (at least one; waits for the first).

        The engine's reader calls this once per wakeup, so per-frame costs (clock reads, watchdog updates,
        counters) are paid once per batch. Frames received before a close or an oversized frame are returned
        first; the next call raises. A batch is bounded by the transport's receive queue.

        Raises:
            ConnectionClosed: the socket closed and no frame is left (``code`` and ``reason`` of the close
                frame).
            FrameTooLarge: the next frame exceeded the size limit; the socket is closed.
        """
        ...

    async def ping(self) -> float:
        """Send a protocol ping and wait for its pong; return the round trip in seconds.

        Raises:
            ConnectionClosed: the socket closed before the pong.
        """
        ...

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Close gracefully (close handshake, bounded by the transport's close timeout)."""
        ...

    def abort(self) -> None:
        """Drop the connection at once, without a close handshake."""
        ...


class Transport(Protocol):
    """Opens sessions."""

    async def connect(self, url: str, *, max_frame_bytes: int) -> TransportSession:
        """Open a WebSocket to ``url`` accepting frames up to ``max_frame_bytes``.

        Raises:
            HandshakeTimeout: the opening handshake did not finish in time.
            ConnectError: anything else that prevented the connection.
        """
        ...


def _closed(exc: websockets.exceptions.ConnectionClosed, limit: int) -> ConnectionClosed | FrameTooLarge:
    sent = exc.sent
    if sent is not None and sent.code == CloseCode.MESSAGE_TOO_BIG:
        return FrameTooLarge(limit, f"({sent.reason})")
    rcvd = exc.rcvd
    if rcvd is not None:
        return ConnectionClosed(int(rcvd.code), rcvd.reason)
    if sent is not None:
        return ConnectionClosed(int(sent.code), sent.reason)
    return ConnectionClosed(1006, "connection lost")


class WebsocketsSession:
    """:class:`TransportSession` over a ``websockets`` client connection."""

    __slots__ = ("_limit", "_ws")

    def __init__(self, ws: ClientConnection, max_frame_bytes: int) -> None:
        self._ws = ws
        self._limit = max_frame_bytes

    async def send(self, frame: str) -> None:
        try:
            await self._ws.send(frame)
        except websockets.exceptions.ConnectionClosed as exc:
            raise _closed(exc, self._limit) from exc

    async def recv(self) -> str | bytes:
        try:
            return await self._ws.recv()
        except websockets.exceptions.ConnectionClosed as exc:
            raise _closed(exc, self._limit) from exc

    async def recv_batch(self) -> list[str | bytes]:
        ws = self._ws
        try:
            batch = [await ws.recv()]
        except websockets.exceptions.ConnectionClosed as exc:
            raise _closed(exc, self._limit) from exc
        # Then take the complete, unfragmented messages the library has already queued: ``recv`` returns them
        # without suspending. This peeks at websockets' receive queue (``recv_messages.frames.queue``, a
        # deque of data frames); without it every batch holds one frame.
        queue = getattr(getattr(getattr(ws, "recv_messages", None), "frames", None), "queue", None)
        if queue is None:
            return batch
        try:
            while queue and queue[0].fin:
                batch.append(await ws.recv())
        except websockets.exceptions.ConnectionClosed:
            pass  # the next call raises it
        return batch

    async def ping(self) -> float:
        try:
            waiter = await self._ws.ping()
            return await waiter
        except websockets.exceptions.ConnectionClosed as exc:
            raise _closed(exc, self._limit) from exc

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self._ws.close(code, reason)

    def abort(self) -> None:
        transport = self._ws.transport
        if transport is not None:
            transport.abort()


class WebsocketsTransport:
    """Real WebSocket transport.

    Args:
        open_timeout_s: bound on the opening handshake, s.
        close_timeout_s: bound on the closing handshake, s.
        max_queue: frames buffered by the library before it stops reading the socket.
    """

    def __init__(
        self, *, open_timeout_s: float = 10.0, close_timeout_s: float = 5.0, max_queue: int = 64
    ) -> None:
        self.open_timeout_s = open_timeout_s
        self.close_timeout_s = close_timeout_s
        self.max_queue = max_queue

    async def connect(self, url: str, *, max_frame_bytes: int) -> WebsocketsSession:
        try:
            ws = await connect(
                url,
                max_size=max_frame_bytes,
                ping_interval=None,
                ping_timeout=None,
                compression=None,
                open_timeout=self.open_timeout_s,
                close_timeout=self.close_timeout_s,
                max_queue=self.max_queue,
                proxy=None,
            )
        except TimeoutError as exc:
            raise HandshakeTimeout(f"no WebSocket handshake within {self.open_timeout_s:g} s") from exc
        except (OSError, websockets.exceptions.WebSocketException, asyncio.IncompleteReadError) as exc:
            raise ConnectError(connect_reason(exc)) from exc
        return WebsocketsSession(ws, max_frame_bytes)


def default_transport() -> Transport:
    """The transport to use when none is given: :class:`~cryptolink.engine.transport_picows.PicowsTransport`
    (frames parsed in C and handed over per socket read; ~1.5x the end-to-end frames per CPU-second of
    :class:`WebsocketsTransport` in ``bench/RESULTS.md`` section 1). Pass ``WebsocketsTransport()`` explicitly to use
    the pure-Python ``websockets`` client instead."""
    from cryptolink.engine.transport_picows import PicowsTransport

    return PicowsTransport()
