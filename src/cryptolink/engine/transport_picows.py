"""A :class:`~cryptolink.engine.transport.Transport` on ``picows`` (a WebSocket client whose frame parser is
compiled C): frames of one socket read are parsed in C and handed over in one batch.

How it maps the transport contract (the same as :class:`~cryptolink.engine.transport.WebsocketsTransport`):

- frames: picows calls :meth:`_Listener.on_ws_frame` for every frame of a socket read; text payloads become
  ``str`` (UTF-8; an invalid payload closes the socket with code 1007), binary ones ``bytes``; fragmented
  messages are reassembled here (the whole message is bounded by ``max_frame_bytes``). The frames wait in a
  list that :meth:`PicowsSession.recv_batch` takes whole (at most ``max_queue`` frames per call, yielding to
  the event loop between batches when it is behind), so the engine wakes up once per socket read, not once
  per frame. The list is bounded: at ``max_queue`` frames the socket stops being read until the reader
  takes the batch (TCP flow control then slows the server down);
- ``max_frame_bytes``: a larger frame (or reassembled message) makes the next ``recv_batch`` raise
  :class:`~cryptolink.engine.errors.FrameTooLarge` after the frames received before it; the socket is closed
  with code 1009;
- server protocol pings are answered by picows itself with a pong echoing the payload (``enable_auto_pong``,
  on by default: the Binance rule, docs/protocols/binance.md "Keepalive"); picows' own pinging is off
  (``enable_auto_ping=False``): the engine drives keepalive;
- :meth:`PicowsSession.ping` sends a ping frame with a 4-byte counter payload and returns the round trip in
  seconds when the pong with that payload arrives (a pong also answers every older unanswered ping, RFC 6455
  section 5.5.3);
- a close frame from the server is answered with a close frame echoing its code, and surfaces as
  :class:`~cryptolink.engine.errors.ConnectionClosed` with the server's ``code`` and ``reason``
  (1005 when it sent no code, 1006 when the TCP connection dropped without a close frame);
- ``open_timeout_s`` bounds TCP connect + TLS + HTTP upgrade: a server that accepts TCP and never answers the
  handshake raises :class:`~cryptolink.engine.errors.HandshakeTimeout`; anything else that prevents the
  connection raises :class:`~cryptolink.engine.errors.ConnectError` naming the URL;
- ``close(code)`` sends a close frame and waits up to ``close_timeout_s`` for the server's; ``abort()`` drops
  the TCP connection at once.

Library errors are mapped onto :mod:`cryptolink.engine.errors` with ``raise ... from exc``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from picows import WSCloseCode, WSError, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from cryptolink.engine.errors import (
    ConnectError,
    ConnectionClosed,
    FrameTooLarge,
    HandshakeTimeout,
    TransportError,
)
from cryptolink.engine.transport import connect_reason

__all__ = ["PicowsSession", "PicowsTransport"]

_TEXT = WSMsgType.TEXT
_BINARY = WSMsgType.BINARY
_CONT = WSMsgType.CONTINUATION
_PONG = WSMsgType.PONG
_CLOSE = WSMsgType.CLOSE
_TOO_BIG = WSCloseCode.MESSAGE_TOO_BIG

_WIRE_LOG = logging.getLogger("cryptolink.engine.transport_picows.wire")
"""picows' own log lines (it logs every TCP connect at INFO, before the WebSocket handshake has even
succeeded, which reads like "connected" in a 24/7 log): kept at WARNING unless set otherwise."""
if _WIRE_LOG.level == logging.NOTSET:
    _WIRE_LOG.setLevel(logging.WARNING)


def _consume(fut: asyncio.Future[None]) -> None:
    if not fut.cancelled():
        fut.exception()


class _Listener(WSListener):
    """Receives picows callbacks for one socket and buffers data frames for :class:`PicowsSession`."""

    def __init__(self, limit: int, max_queue: int) -> None:
        super().__init__()
        self.limit = limit
        self.max_queue = max_queue
        self.frames: list[str | bytes] = []
        self.waiter: asyncio.Future[None] | None = None
        self.error: TransportError | None = None
        self.transport: WSTransport | None = None
        self.pings: dict[bytes, asyncio.Future[float]] = {}
        self.fragments: bytearray | None = None
        self.fragments_text = False
        self.reading_paused = False
        self.writable = asyncio.Event()
        self.writable.set()

    # picows callbacks ------------------------------------------------------------
    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if self.error is not None:
            return  # the socket failed (too big, bad UTF-8, protocol error): nothing after that counts
        mt = frame.msg_type
        if frame.payload_size > self.limit and mt is not _CLOSE:
            # picows also checks, but after its own parser error it may still hand over the oversized frame
            # once the rest of it arrives (before its delayed disconnect)
            self._too_big(transport, frame.payload_size)
            return
        if mt is _TEXT and frame.fin:
            try:
                data: str | bytes = frame.get_payload_as_utf8_text()
            except UnicodeDecodeError:
                self._fail(transport, WSCloseCode.INVALID_TEXT, "invalid UTF-8 in a text frame")
                return
        elif mt is _BINARY and frame.fin:
            data = frame.get_payload_as_bytes()
        elif mt is _TEXT or mt is _BINARY or mt is _CONT:
            assembled = self._fragment(transport, frame)
            if assembled is None:
                return
            data = assembled
        elif mt is _PONG:
            self._pong(frame.get_payload_as_bytes())
            return
        elif mt is _CLOSE:
            if not transport.is_close_frame_sent:
                code = frame.get_close_code()
                if code == WSCloseCode.NO_INFO:
                    transport.send_close()
                else:
                    transport.send_close(code, frame.get_close_message())
            transport.disconnect()
            return
        else:  # pings are answered by picows (enable_auto_pong)
            return
        frames = self.frames
        frames.append(data)
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)
        if len(frames) >= self.max_queue and not self.reading_paused:
            self.reading_paused = True
            transport.underlying_transport.pause_reading()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if self.error is None:
            self.error = self.close_error(transport)
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)
        pings, self.pings = self.pings, {}
        for fut in pings.values():
            if not fut.done():
                fut.set_exception(self.error)
                fut.exception()  # retrieved: nobody may be waiting any more
        self.writable.set()
        # picows keeps why it disconnected in a future only ``wait_disconnected`` awaits: consume it so a
        # socket nobody closes explicitly (already gone) logs no "exception was never retrieved"
        asyncio.ensure_future(transport.wait_disconnected()).add_done_callback(_consume)

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    # helpers ------------------------------------------------------------
    def _fragment(self, transport: WSTransport, frame: WSFrame) -> str | bytes | None:
        mt = frame.msg_type
        buf = self.fragments
        if mt is _CONT:
            if buf is None:
                self._fail(transport, WSCloseCode.PROTOCOL_ERROR, "continuation frame without a message")
                return None
            buf += frame.get_payload_as_memoryview()
        else:
            if buf is not None:
                self._fail(transport, WSCloseCode.PROTOCOL_ERROR, "new message inside a fragmented one")
                return None
            buf = self.fragments = bytearray(frame.get_payload_as_memoryview())
            self.fragments_text = mt is _TEXT
        if len(buf) > self.limit:
            self.fragments = None
            self._too_big(transport, len(buf))
            return None
        if not frame.fin:
            return None
        self.fragments = None
        if not self.fragments_text:
            return bytes(buf)
        try:
            return buf.decode()
        except UnicodeDecodeError:
            self._fail(transport, WSCloseCode.INVALID_TEXT, "invalid UTF-8 in a text message")
            return None

    def _too_big(self, transport: WSTransport, size: int) -> None:
        self.error = FrameTooLarge(self.limit, f"(message of {size}+ bytes)")
        if not transport.is_close_frame_sent:
            transport.send_close(_TOO_BIG, b"message too big")
        transport.disconnect()

    def _fail(self, transport: WSTransport, code: WSCloseCode, reason: str) -> None:
        self.error = ConnectionClosed(code.value, reason)
        transport.send_close(code, reason.encode())
        transport.disconnect()

    def _pong(self, payload: bytes) -> None:
        pings = self.pings
        if payload not in pings:
            return  # unsolicited pong
        now = time.monotonic()
        for key in list(pings):
            fut = pings.pop(key)
            if not fut.done():
                fut.set_result(now)
            if key == payload:
                break

    def close_error(self, transport: WSTransport) -> TransportError:
        """The error that describes how the socket closed (or is closing)."""
        hs = transport.close_handshake
        if hs is None:
            return ConnectionClosed(1006, "connection lost")
        sent, recv = hs.sent, hs.recv
        if sent is not None and sent.code == _TOO_BIG and not hs.recv_then_sent:
            return FrameTooLarge(self.limit, f"({sent.reason})")
        info = recv if recv is not None else sent
        if info is None:
            return ConnectionClosed(1006, "connection lost")
        code: int = info.code.value
        return ConnectionClosed(1005 if code == 0 else code, info.reason)

    async def wait(self) -> None:
        """Return when a frame is buffered; raise the close error when none is and the socket is gone."""
        while not self.frames:
            error = self.error
            if error is not None:
                raise error
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self.waiter = fut
            try:
                await fut
            finally:
                self.waiter = None

    def resume(self) -> None:
        if self.reading_paused and self.transport is not None:
            self.reading_paused = False
            if not self.transport.is_disconnected:
                self.transport.underlying_transport.resume_reading()


class PicowsSession:
    """:class:`~cryptolink.engine.transport.TransportSession` over a picows connection."""

    __slots__ = ("_behind", "_close_timeout_s", "_l", "_next_ping", "_t")

    def __init__(self, transport: WSTransport, listener: _Listener, close_timeout_s: float) -> None:
        self._t = transport
        self._l = listener
        self._close_timeout_s = close_timeout_s
        self._next_ping = 0
        self._behind = False

    def _check_open(self) -> None:
        error = self._l.error
        if error is not None:
            raise error
        t = self._t
        if t.is_close_frame_sent or t.is_disconnected:
            raise self._l.close_error(t)

    async def send(self, frame: str) -> None:
        self._check_open()
        writable = self._l.writable
        if not writable.is_set():
            await writable.wait()
            self._check_open()
        self._t.send(_TEXT, frame)

    async def recv(self) -> str | bytes:
        listener = self._l
        if not listener.frames:
            await listener.wait()
        frame = listener.frames.pop(0)
        if not listener.frames:
            listener.resume()
        return frame

    async def recv_batch(self) -> list[str | bytes]:
        listener = self._l
        if self._behind:
            # the previous batch left frames behind: let other tasks run before the next one, so a reader
            # that is behind blocks the event loop for one batch at a time
            self._behind = False
            await asyncio.sleep(0)
        frames = listener.frames
        if not frames:
            await listener.wait()
            frames = listener.frames
        cap = listener.max_queue
        if len(frames) > cap:
            batch = frames[:cap]
            del frames[:cap]
            self._behind = True
            return batch
        listener.frames = []
        if listener.reading_paused:
            listener.resume()
        return frames

    async def ping(self) -> float:
        self._check_open()
        self._next_ping = (self._next_ping + 1) & 0xFFFFFFFF
        payload = self._next_ping.to_bytes(4, "big")
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._l.pings[payload] = fut
        sent_at = time.monotonic()
        self._t.send_ping(payload)
        try:
            return await fut - sent_at
        finally:
            self._l.pings.pop(payload, None)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        t = self._t
        if t.is_disconnected:
            return
        if not t.is_close_frame_sent:
            t.send_close(WSCloseCode(code), reason.encode())
        try:
            await asyncio.wait_for(t.wait_disconnected(), self._close_timeout_s)
        except TimeoutError:
            t.disconnect(graceful=False)
        except Exception:  # wait_disconnected re-raises why picows disconnected; the close is done
            pass

    def abort(self) -> None:
        if not self._t.is_disconnected:
            self._t.disconnect(graceful=False)


class PicowsTransport:
    """WebSocket transport on picows (see the module docstring).

    Args:
        open_timeout_s: bound on TCP connect + TLS + the opening handshake, s.
        close_timeout_s: bound on the closing handshake, s.
        max_queue: received frames buffered before the socket stops being read (the frames of the socket
            read in progress are still parsed, so the buffer may hold more); also the largest batch
            ``recv_batch`` returns.
        read_buffer_bytes: initial read buffer per socket (picows doubles it as needed, up to the frame
            limit).
    """

    def __init__(
        self,
        *,
        open_timeout_s: float = 10.0,
        close_timeout_s: float = 5.0,
        max_queue: int = 1024,
        read_buffer_bytes: int = 4096,
    ) -> None:
        self.open_timeout_s = open_timeout_s
        self.close_timeout_s = close_timeout_s
        self.max_queue = max_queue
        self.read_buffer_bytes = read_buffer_bytes

    async def connect(self, url: str, *, max_frame_bytes: int) -> PicowsSession:
        limit = max_frame_bytes
        max_queue = self.max_queue

        def factory(_request: Any, _response: Any) -> _Listener:
            return _Listener(limit, max_queue)

        try:
            async with asyncio.timeout(self.open_timeout_s):
                transport, listener = await ws_connect(
                    factory,
                    url,
                    websocket_handshake_timeout=self.open_timeout_s,
                    enable_auto_ping=False,
                    enable_auto_pong=True,
                    max_frame_size=max_frame_bytes,
                    read_buffer_init_size=self.read_buffer_bytes,
                    use_aiofastnet=False,  # the event loop's own socket transport (no measurable gain)
                    logger_name=_WIRE_LOG,
                )
        except TimeoutError as exc:
            raise HandshakeTimeout(f"no WebSocket handshake within {self.open_timeout_s:g} s") from exc
        except (OSError, WSError, ValueError, EOFError) as exc:
            raise ConnectError(connect_reason(exc)) from exc
        if not isinstance(listener, _Listener):  # the server hung up during the handshake
            with contextlib.suppress(Exception):
                transport.disconnect(graceful=False)
            raise ConnectError("connection closed during the WebSocket handshake")
        return PicowsSession(transport, listener, self.close_timeout_s)
