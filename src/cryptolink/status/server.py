"""Runs the status application with uvicorn in the caller's event loop, on a socket bound at start (so a
port in use or an address that cannot be bound refuses the start with a clear error, and port 0 reports the
port it got). uvicorn's ``serve()`` is not used: its signal handling would replace the service's, which stop everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import Any

import uvicorn

from cryptolink.errors import CryptolinkError

__all__ = ["StatusBindError", "StatusServer"]

log = logging.getLogger("cryptolink.status")


_NO_HANDSHAKE = "ASGI callable returned without completing handshake."


class _RefusedHandshake(logging.Filter):
    """uvicorn's sans-I/O WebSocket protocol logs a refused handshake (our 401 for a missing token, sent with the
    ASGI denial response) as an ERROR; it is an expected refusal: logged at INFO, saying so."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.ERROR and record.getMessage() == _NO_HANDSHAKE:
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg, record.args = "status: WebSocket handshake refused (401: missing or wrong token)", ()
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
        )
        config.load()
        server = self._server = uvicorn.Server(config)
        server.lifespan = config.lifespan_class(config)
        await server.startup(sockets=[sock])
        self._task = asyncio.create_task(server.main_loop(), name="status-server")
        log.info("status API on %s (dashboard /, OpenAPI /docs, metrics /metrics)", self.url)

    async def stop(self) -> None:
        """Stop serving (open WebSocket clients are closed). Idempotent."""
        server, task, sock = self._server, self._task, self._sock
        self._server = self._task = None
        if server is not None:
            server.should_exit = True
            if task is not None:
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await task
            with contextlib.suppress(Exception):
                await server.shutdown(sockets=[sock] if sock is not None else None)
        if sock is not None:
            sock.close()
            self._sock = None
