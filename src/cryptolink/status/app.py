"""The status service's FastAPI application (OpenAPI at ``/docs``).

Endpoints (every document is built from the latest :class:`~cryptolink.status.snapshot.StatusSnapshot`, at
most ``status.snapshot_interval_s`` old):

- ``GET /``: the dashboard (one page, live from ``/ws/status``).
- ``GET /api/system/status``: the monitoring document (:func:`~cryptolink.status.documents.system_status`).
- ``GET /api/connections``: per connection state, quality parts, latency, subscriptions, books, events.
- ``GET /api/events?since=N``: connection events after cursor ``N`` (``last_seq`` of the previous answer).
- ``GET /api/report``: the connection report (rows and text).
- ``GET /api/cluster/status``: every instance's status from Redis (``status.redis_url``); 503 with ``error``
  when Redis cannot be read.
- ``GET /healthz``: the process is alive. ``GET /readyz``: 200 when every enabled entry delivers, else 503
  with the reasons.
- ``GET /metrics``: Prometheus text format.
- ``WS /ws/status``: ``{"type": "exchange_status", ...}`` every ``push_interval_s`` and at once on a state change.

**Security.** With a token (``status.token``; required off loopback) every request, the WebSocket included,
must carry ``Authorization: Bearer <token>`` or ``?token=<token>`` (the dashboard passes it on from its own
address); otherwise 401 (the WebSocket handshake is refused with 401 too). The comparison is constant-time
(:func:`hmac.compare_digest`); the token is never logged (uvicorn's access log is off) and no response
carries it or any other secret of the configuration.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from importlib import resources
from typing import Any, Protocol
from urllib.parse import parse_qs

import msgspec
from fastapi import FastAPI, Query, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse, Response

from cryptolink import __version__
from cryptolink.status import documents
from cryptolink.status.service import StatusService

__all__ = ["ClusterReader", "MetricsRenderer", "TokenAuth", "create_app"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_encode = msgspec.json.Encoder().encode


class MetricsRenderer(Protocol):
    """What ``/metrics`` serves (:class:`cryptolink.status.metrics.MetricsExporter`)."""

    def render(self) -> tuple[bytes, str]:
        """``(body, content type)`` of the Prometheus exposition."""
        ...


class ClusterReader(Protocol):
    """What ``/api/cluster/status`` serves (:class:`cryptolink.status.cluster.ClusterStatus`)."""

    async def read(self) -> dict[str, Any]:
        """The cluster document."""
        ...


def _json(doc: Any, status_code: int = 200) -> Response:
    return Response(_encode(doc), status_code=status_code, media_type="application/json")


class TokenAuth:
    """ASGI middleware: every HTTP request and WebSocket handshake must carry the bearer token (header
    ``Authorization: Bearer <token>`` or query ``token``), compared in constant time; else 401."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._token = token.encode()

    def _allowed(self, scope: Scope) -> bool:
        supplied: bytes | None = None
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                scheme, _, credentials = bytes(value).partition(b" ")
                if scheme.lower() == b"bearer":
                    supplied = credentials.strip()
                break
        if supplied is None:
            query = parse_qs(bytes(scope.get("query_string", b"")).decode("latin-1"))
            values = query.get("token")
            if values:
                supplied = values[0].encode("latin-1")
        return supplied is not None and hmac.compare_digest(supplied, self._token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket") or self._allowed(scope):
            await self.app(scope, receive, send)
            return
        body = b'{"detail":"missing or wrong bearer token"}'
        headers = [
            (b"content-type", b"application/json"),
            (b"www-authenticate", b'Bearer realm="cryptolink"'),
            (b"content-length", str(len(body)).encode()),
        ]
        if kind == "http":
            await send({"type": "http.response.start", "status": 401, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await receive()  # websocket.connect
        if "websocket.http.response" in scope.get("extensions", {}):
            await send({"type": "websocket.http.response.start", "status": 401, "headers": headers})
            await send({"type": "websocket.http.response.body", "body": body})
        else:  # a server without the denial-response extension: refuse the handshake (403 on the wire)
            await send({"type": "websocket.close", "code": 1008})


def _page() -> str:
    try:
        return resources.files("cryptolink.status").joinpath("static/index.html").read_text(encoding="utf-8")
    except FileNotFoundError:
        return "<!doctype html><title>cryptolink</title><p>dashboard not built into this package</p>"


def create_app(
    service: StatusService,
    *,
    token: str | None = None,
    metrics: MetricsRenderer | None = None,
    cluster: ClusterReader | None = None,
) -> FastAPI | TokenAuth:
    """The ASGI application serving ``service`` (see the module docstring).

    Args:
        service: the status service (snapshots, events, push).
        token: bearer token required on every request (``None``: no token; only for loopback).
        metrics: the ``/metrics`` renderer (``None``: 404).
        cluster: the ``/api/cluster/status`` reader (``None``: answers that no Redis is configured).
    """
    app = FastAPI(
        title="cryptolink status",
        version=__version__,
        description="State of every exchange connection of one cryptolink instance.",
    )
    page = _page()

    @app.get("/", response_class=HTMLResponse, summary="The dashboard")
    async def dashboard() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/api/system/status", summary="Monitoring document: host figures and every connection")
    async def system_status() -> Response:
        return _json(documents.system_status(service.latest))

    @app.get("/api/connections", summary="Per connection: state, quality, latency, subscriptions, books")
    async def connections() -> Response:
        return _json(documents.connections_detail(service.latest))

    @app.get("/api/events", summary="Connection events after a cursor")
    async def events(
        since: int = Query(
            0, ge=0, description="Return the events with seq > since (last_seq of the last call)."
        ),
    ) -> Response:
        return _json(documents.events_doc(service.events(since), since, dropped=service.events_evicted))

    @app.get("/api/report", summary="The connection report")
    async def report() -> Response:
        return _json(documents.report_doc(service.latest))

    @app.get("/api/cluster/status", summary="Every instance's status from Redis")
    async def cluster_status() -> Response:
        if cluster is None:
            return _json({"redis": None, "instances": [], "detail": "status.redis_url is not set"})
        doc = await cluster.read()
        return _json(doc, 503 if "error" in doc else 200)

    @app.get("/healthz", summary="The process is alive")
    async def healthz() -> Response:
        snap = service.latest
        return _json(
            {"status": "alive", "instance_id": service.instance_id, "snapshot": documents.iso(snap.taken_ns)}
        )

    @app.get("/readyz", summary="Every enabled exchange entry delivers data")
    async def readyz() -> Response:
        ready, reasons = documents.readiness(service.latest)
        return _json({"ready": ready, "reasons": reasons}, 200 if ready else 503)

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics_endpoint() -> Response:
        if metrics is None:
            return _json({"detail": "metrics are not enabled"}, 404)
        body, content_type = metrics.render()
        return Response(body, media_type=content_type)

    @app.websocket("/ws/status")
    async def ws_status(ws: WebSocket) -> None:
        await ws.accept()
        client = service.connect_client()

        async def drain() -> None:  # notices the client leaving while nothing is pushed
            with contextlib.suppress(WebSocketDisconnect):
                while True:
                    await ws.receive_text()

        reader = asyncio.create_task(drain())
        try:
            while not reader.done():
                getter = asyncio.ensure_future(client.get())
                await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    break
                await ws.send_text(_encode(getter.result()).decode())
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass  # the client went away mid-send
        finally:
            service.disconnect_client(client)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    if token:
        return TokenAuth(app, token)
    return app
