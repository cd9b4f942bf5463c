"""Runs the status application with uvicorn in the caller's event loop, on a socket bound at start (so a
port in use or an address that cannot be bound refuses the start with a clear error, and port 0 reports the
port it got). uvicorn's ``serve()`` is not used: its signal handling would replace the service's, which stop everything.

Bounds: at most :data:`LIMIT_CONCURRENCY` open connections and running requests (uvicorn's
``limit_concurrency``: an HTTP request beyond it is answered 503 at once); the WebSocket clients have their own
bound (:data:`cryptolink.status.service.MAX_PUSH_CLIENTS`, below this one, so the API stays reachable when
the dashboards are many). A peer that stops reading cannot hold a socket for long: the kernel closes a connection
whose sent data stays unacknowledged for :data:`UNACKED_TIMEOUT_S` (``TCP_USER_TIMEOUT``, where the platform has
it), and the stop aborts the connections still holding unsent data instead of waiting for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import socket
from typing import Any

import uvicorn

from cryptolink.errors import CryptolinkError

__all__ = [
    "LIMIT_CONCURRENCY",
    "UNACKED_TIMEOUT_S",
    "StatusBindError",
    "StatusServer",
    "note_refused_handshake",
]

log = logging.getLogger("cryptolink.status")

LIMIT_CONCURRENCY = 256
"""Open connections (WebSocket clients included) and running requests uvicorn accepts; above, HTTP gets 503."""

UNACKED_TIMEOUT_S = 30.0
"""A connection whose sent data the peer has not acknowledged for this long is closed by the kernel, s."""

_NO_HANDSHAKE = "ASGI callable returned without completing handshake."

_REFUSED: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "cryptolink_refused_handshake", default=None
)


def note_refused_handshake(reason: str) -> None:
    """Say that the application refused the current WebSocket handshake on purpose (``reason``, e.g. ``"401:
    missing or wrong token"``): logged here at INFO with the reason, and uvicorn's own complaint about it, if its
    version makes one, is dropped (see :class:`_RefusedHandshake`). Call it in the task that serves the handshake,
    before answering."""
    _REFUSED.set(reason)
    _UVICORN_ERRORS.info("status: WebSocket handshake refused (%s)", reason)


class _RefusedHandshake(logging.Filter):
    """uvicorn's sans-I/O WebSocket protocol before 0.55 logs a handshake answered with an HTTP response (our 401
    for a missing token, our 403 for a foreign origin) as an ERROR ("ASGI callable returned without completing
    handshake"; 0.55 logs it at INFO). When the application said it refused on purpose (:func:`note_refused_handshake`,
    in the same task, which logged the refusal with its reason) that ERROR is dropped; any other such ERROR is left
    as it is."""

    def filter(self, record: logging.LogRecord) -> bool:
        if (
            record.levelno == logging.ERROR
            and record.getMessage() == _NO_HANDSHAKE
            and _REFUSED.get() is not None
        ):
            _REFUSED.set(None)
            return False
        return True


_UVICORN_ERRORS = logging.getLogger("uvicorn.error")
if not any(isinstance(f, _RefusedHandshake) for f in _UVICORN_ERRORS.filters):
    _UVICORN_ERRORS.addFilter(_RefusedHandshake())


class StatusBindError(CryptolinkError):
    """The status address cannot be bound (in use, not local, no permission)."""


class StatusServer:
    """uvicorn serving ``app`` on ``host:port``.

    Args:
        app: the ASGI application (:func:`cryptolink.status.app.create_app`).
        host / port: where to listen (port 0: any free port; see :attr:`port`).
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 8766) -> None:
        self.host = host
        self._requested_port = port
        self._app = app
        self._sock: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.aborted = 0
        """Connections aborted at the stop because their peer did not read what was sent to it."""

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        if self._sock is None:
            return self._requested_port
        return int(self._sock.getsockname()[1])

    @property
    def url(self) -> str:
        """``http://host:port``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Bind and start serving.

        Raises:
            StatusBindError: the address cannot be bound.
        """
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if hasattr(socket, "TCP_USER_TIMEOUT"):  # inherited by every accepted connection (Linux)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(UNACKED_TIMEOUT_S * 1000))
            sock.bind((self.host, self._requested_port))
            sock.listen(128)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            raise StatusBindError(
                f"cannot serve the status API on {self.host}:{self._requested_port}: {exc.strerror or exc} "
                "(choose another with --status-addr HOST:PORT or status.port, or turn it off with --no-status)"
            ) from None
        self._sock = sock
        config = uvicorn.Config(
            self._app,
            log_config=None,
            access_log=False,  # a ?token= query must never reach a log
            lifespan="off",
            ws="websockets-sansio",
            ws_per_message_deflate=False,
            timeout_graceful_shutdown=2,
            limit_concurrency=LIMIT_CONCURRENCY,
        )
        config.load()
        server = self._server = uvicorn.Server(config)
        server.lifespan = config.lifespan_class(config)
        await server.startup(sockets=[sock])
        self._task = asyncio.create_task(server.main_loop(), name="status-server")
        log.info("status API on %s (dashboard /, OpenAPI /docs, metrics /metrics)", self.url)

    async def stop(self) -> None:
        """Stop serving (open WebSocket clients are closed; a connection whose peer does not read is aborted).
        Idempotent; never raises."""
        server, task, sock = self._server, self._task, self._sock
        self._server = self._task = None
        if server is not None:
            server.should_exit = True
            if task is not None:
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await task
            self._abort_unread(server)
            try:
                await server.shutdown(sockets=[sock] if sock is not None else None)
            except Exception:
                log.exception("status: stopping the HTTP server failed")
        if sock is not None:
            sock.close()
            self._sock = None

    def _abort_unread(self, server: uvicorn.Server) -> None:
        """Abort the connections whose transport still holds data the peer did not take: a graceful close would
        wait for them to read it (they may never), holding the stop for uvicorn's whole grace period."""
        for connection in list(server.server_state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None and transport.get_write_buffer_size() > 0:
                self.aborted += 1
                transport.abort()
