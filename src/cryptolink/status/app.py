"""The status service's FastAPI application (OpenAPI at ``/docs``).

Endpoints (every document is built from the latest :class:`~cryptolink.status.snapshot.StatusSnapshot`, at
most ``status.snapshot_interval_s`` old while the snapshot loop is healthy):

- ``GET /``: the dashboard (one page, live from ``/ws/status``).
- ``GET /api/system/status``: the monitoring document (:func:`~cryptolink.status.documents.system_status`).
- ``GET /api/connections``: per connection state, quality parts, latency, subscriptions, books, events.
- ``GET /api/events?since=N``: connection events after cursor ``N`` (``last_seq`` of the previous answer);
  ``dropped`` counts the events after ``N`` this caller can no longer get (pushed out of the bounded ring).
- ``GET /api/report``: the connection report (rows and text).
- ``GET /api/nats``: the NATS sink's counters and this process's worker state (leases, shards)
  (:func:`~cryptolink.status.documents.nats_doc`; ``null`` parts when absent).
- ``GET /api/rest``: the REST manager's members, groups and every rate budget of the process
  (:func:`~cryptolink.status.documents.rest_doc`; ``manager: false`` and only the budgets without a manager).
- ``GET /api/cluster/status``: every instance's status from Redis (``status.redis_url``); 503 with ``error``
  when Redis cannot be read.
- ``GET /healthz``: 200 while the process serves, with the age of the latest snapshot. ``GET /readyz``: 200
  when every enabled entry delivers, else 503 with the reasons; also 503 when the snapshot is older than three
  snapshot intervals (``status snapshot stale``: the figures cannot be trusted).
- ``GET /metrics``: Prometheus text format, rendered in a worker thread, one rendering at a time, and reused by
  every scrape of the same snapshot.
- ``WS /ws/status``: ``{"type": "exchange_status", ...}`` every ``push_interval_s`` and soon after a state
  change. Messages the client sends are read and ignored (text or binary). A client that does not take a push
  within ``max(1, 2 * push_interval_s)`` s is closed with code 1013; at the stop every client is closed with
  1001.

**Security.** With a token (``status.token``; required off loopback) every request that reads data, the
WebSocket included, must carry ``Authorization: Bearer <token>`` or ``?token=<token>`` (the dashboard passes it on from its own
address); otherwise 401 (the WebSocket handshake is refused with 401 too). The comparison is constant-time
(:func:`hmac.compare_digest`) on the UTF-8 bytes of the token; a percent-encoded ``?token=`` is decoded as
UTF-8 (bytes that are not UTF-8 compare as themselves, never match a UTF-8 token and never fail the request).
The token is never logged (uvicorn's access log is off) and no response carries it or any other secret of the
configuration; ``/docs?token=<token>`` builds its page so that it fetches ``/openapi.json`` with the same
``?token=`` (the token the caller just sent, nothing else), and the OpenAPI document declares the bearer scheme,
so that "Authorize" in the page lets "Try it out" send the header.

Without a token (loopback only) the application defends the browser's side: a request whose ``Host`` header is
not a loopback name (``localhost``, ``*.localhost``, ``127.0.0.0/8``, ``::1``) or the bound host is answered 421
(a DNS-rebinding page cannot read it), and a WebSocket whose ``Origin`` is neither a loopback name nor the
request's own ``Host`` is refused with 403 (another site's page cannot open it). Clients that send no ``Origin``
(scripts, ``curl``, Prometheus) are not affected.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hmac
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from importlib import resources
from typing import Any, Protocol
from urllib.parse import parse_qs, quote_from_bytes, urlsplit

import msgspec
from fastapi import FastAPI, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, Response

from cryptolink import __version__
from cryptolink.config import is_loopback
from cryptolink.status import documents
from cryptolink.status.server import note_refused_handshake
from cryptolink.status.service import PushClient, StatusService

__all__ = ["ClusterReader", "LoopbackOnly", "MetricsRenderer", "RequestGuard", "TokenAuth", "create_app"]

log = logging.getLogger("cryptolink.status")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_encode = msgspec.json.Encoder().encode

CLOSE_TIMEOUT_S = 1.0
"""Longest wait for a WebSocket close frame to be handed to a socket, s (a peer that does not read never takes
it: the socket is then left to the server to close)."""


class MetricsRenderer(Protocol):
    """What ``/metrics`` serves (:class:`cryptolink.status.metrics.MetricsExporter`). :meth:`render` runs in a
    worker thread: it may read only frozen data (the service's latest snapshot, its client count)."""

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


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value)
    return None


def query_token(scope: Scope) -> bytes | None:
    """The ``token`` query parameter of ``scope`` as bytes: percent-decoded, UTF-8 kept as UTF-8 and any other
    byte kept as itself (``None``: none given)."""
    text = bytes(scope.get("query_string", b"")).decode("utf-8", "surrogateescape")
    values = parse_qs(text, encoding="utf-8", errors="surrogateescape", max_num_fields=100).get("token")
    return values[0].encode("utf-8", "surrogateescape") if values else None


async def _deny(scope: Scope, receive: Receive, send: Send, status: int, detail: str, reason: str) -> None:
    """Answer ``scope`` (HTTP or a WebSocket handshake) with ``status`` and ``{"detail": detail}``."""
    body = _encode({"detail": detail})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="cryptolink"'))
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    await receive()  # websocket.connect
    note_refused_handshake(reason)
    if "websocket.http.response" in scope.get("extensions", {}):
        await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
    else:  # a server without the denial-response extension: refuse the handshake (403 on the wire)
        await send({"type": "websocket.close", "code": 1008})


class RequestGuard:
    """ASGI middleware that lets a request through or refuses it (see :class:`TokenAuth`, :class:`LoopbackOnly`);
    other scope types pass."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def refusal(self, scope: Scope) -> tuple[int, str, str] | None:
        """``(status, detail, log reason)`` to refuse ``scope`` with, or ``None`` to let it through."""
        raise NotImplementedError

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            refused = self.refusal(scope)
            if refused is not None:
                await _deny(scope, receive, send, *refused)
                return
        await self.app(scope, receive, send)


class TokenAuth(RequestGuard):
    """Every HTTP request and WebSocket handshake must carry the bearer token (header ``Authorization: Bearer
    <token>`` or query ``token``), compared in constant time on UTF-8 bytes; else 401.

    Raises:
        ValueError: ``token`` is empty or only whitespace.
    """

    def __init__(self, app: ASGIApp, token: str) -> None:
        super().__init__(app)
        if not token.strip():
            raise ValueError("the status token must not be empty or only whitespace")
        self._token = token.encode("utf-8", "surrogateescape")

    def _allowed(self, scope: Scope) -> bool:
        try:
            supplied: bytes | None = None
            authorization = _header(scope, b"authorization")
            if authorization is not None:
                scheme, _, credentials = authorization.partition(b" ")
                if scheme.lower() == b"bearer":
                    supplied = credentials.strip()
            if supplied is None:
                supplied = query_token(scope)
            return supplied is not None and hmac.compare_digest(supplied, self._token)
        except Exception:  # whatever the request holds, it is refused, never a 500
            return False

    def refusal(self, scope: Scope) -> tuple[int, str, str] | None:
        if self._allowed(scope) or _is_page(scope):
            return None
        return 401, "missing or wrong bearer token", "401: missing or wrong token"


def _is_page(scope: Scope) -> bool:
    """``GET /`` (or ``HEAD``): the dashboard's static HTML, which holds no data and no secret. It is served
    without the token so that a reload works once the page has taken the token out of the address bar (it keeps
    it for the tab and sends it with every request that reads data, which all still require it)."""
    return scope["type"] == "http" and scope.get("method") in ("GET", "HEAD") and scope.get("path") == "/"


def is_loopback_name(host: str) -> bool:
    """Whether ``host`` (a host name or address, no port) can only mean this machine: what
    :func:`cryptolink.config.is_loopback` accepts, plus the names RFC 6761 reserves for it (``*.localhost``,
    with or without the trailing dot)."""
    name = host.strip().lower().removeprefix("[").removesuffix("]")
    return is_loopback(name.removesuffix(".")) or name.endswith((".localhost", ".localhost."))


def _host_name(netloc: str) -> str:
    """The host of a ``Host`` header or an origin's netloc: ``"127.0.0.1:8766"`` -> ``"127.0.0.1"``,
    ``"[::1]:8766"`` -> ``"::1"``, ``"localhost"`` -> ``"localhost"`` (lowercase)."""
    netloc = netloc.strip().lower()
    if netloc.startswith("["):
        return netloc[1 : netloc.find("]")] if "]" in netloc else netloc
    return netloc.rpartition(":")[0] if netloc.count(":") == 1 else netloc


class LoopbackOnly(RequestGuard):
    """For an API without a token (loopback): refuses a request whose ``Host`` is not a loopback name or
    ``bound_host`` (421), and a WebSocket whose ``Origin`` is neither a loopback name nor the request's ``Host``
    (403). See the module docstring.

    Args:
        app: the application.
        bound_host: the address the server listens on (also accepted as ``Host``).
    """

    def __init__(self, app: ASGIApp, bound_host: str | None = None) -> None:
        super().__init__(app)
        self._bound = None if bound_host is None else bound_host.strip().lower().strip("[]")

    def _host_ok(self, host: str) -> bool:
        name = _host_name(host)
        return is_loopback_name(name) or (self._bound is not None and name == self._bound)

    def refusal(self, scope: Scope) -> tuple[int, str, str] | None:
        try:
            raw_host = _header(scope, b"host")
            host = raw_host.decode("latin-1") if raw_host is not None else None
            if host is not None and not self._host_ok(host):
                return (
                    421,
                    "this status API answers loopback host names only (set status.token to serve other names)",
                    "421: foreign Host header",
                )
            raw_origin = _header(scope, b"origin")
            if scope["type"] != "websocket" or raw_origin is None:
                return None
            origin = raw_origin.decode("latin-1").strip().lower()
            netloc = urlsplit(origin).netloc if origin != "null" else ""
            if netloc and (
                is_loopback_name(_host_name(netloc)) or (host is not None and netloc == host.lower())
            ):
                return None
            return 403, "WebSocket from a page of another origin", "403: foreign Origin"
        except Exception:
            return 400, "unreadable Host or Origin header", "400: unreadable Host or Origin header"


def _page() -> str:
    try:
        return resources.files("cryptolink.status").joinpath("static/index.html").read_text(encoding="utf-8")
    except FileNotFoundError:
        return "<!doctype html><title>cryptolink</title><p>dashboard not built into this package</p>"


class _MetricsCache:
    """The last ``/metrics`` body and the snapshot it was built from; one rendering at a time."""

    def __init__(self, metrics: MetricsRenderer) -> None:
        self.metrics = metrics
        self.lock = asyncio.Lock()
        self.key: int | None = None
        self.body = b""
        self.content_type = "text/plain"

    async def get(self, key: int) -> tuple[bytes, str]:
        """The body for the snapshot taken at ``key`` (epoch ns), rendered in a worker thread unless cached.

        Raises:
            Exception: what rendering raised (the exporter logs and counts it).
        """
        async with self.lock:
            if self.key != key:
                self.body, self.content_type = await asyncio.to_thread(self.metrics.render)
                self.key = key
            return self.body, self.content_type


class _Ended(enum.Enum):
    LEFT = "left"  # the client closed or the socket broke
    STOPPING = "stopping"  # the service closes every client
    SLOW = "slow"  # a push was not taken within the send timeout


async def _drain(ws: WebSocket) -> None:
    """Read (and ignore) whatever the client sends, text or binary, until it leaves."""
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return


async def _cancel(*tasks: asyncio.Future[Any] | None) -> None:
    """Cancel ``tasks`` and wait for them (their outcomes are collected, never raised; a cancellation of the
    caller still propagates)."""
    live = [t for t in tasks if t is not None]
    for task in live:
        task.cancel()
    await asyncio.gather(*live, return_exceptions=True)


async def _close(ws: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(ws.close(code, reason), CLOSE_TIMEOUT_S)


async def _pump(ws: WebSocket, client: PushClient, send_timeout_s: float) -> _Ended:
    """Send ``client``'s messages until the client leaves, the service stops or a send times out."""
    reader = asyncio.create_task(_drain(ws))
    stopping = asyncio.create_task(client.closing.wait())
    getter: asyncio.Task[str] | None = None
    sender: asyncio.Task[None] | None = None
    try:
        while True:
            getter = asyncio.create_task(client.get())
            await asyncio.wait({getter, reader, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not getter.done():
                return _Ended.STOPPING if stopping.done() else _Ended.LEFT
            sender = asyncio.create_task(ws.send_text(getter.result()))
            done, _ = await asyncio.wait(
                {sender, reader, stopping}, timeout=send_timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
            if sender in done:
                if sender.exception() is not None:
                    return _Ended.LEFT  # the client went away mid-send
                continue
            if reader.done():
                return _Ended.LEFT
            return _Ended.STOPPING if stopping.done() else _Ended.SLOW
    finally:
        await _cancel(getter, sender, reader, stopping)


def _openapi_with_bearer(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """``app.openapi`` declaring the bearer scheme on every operation (so that the docs page can send it)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            schema.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer", "description": "status.token"}
            }
            schema["security"] = [{"bearer": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    return openapi


def create_app(
    service: StatusService,
    *,
    token: str | None = None,
    metrics: MetricsRenderer | None = None,
    cluster: ClusterReader | None = None,
    bound_host: str | None = None,
) -> RequestGuard:
    """The ASGI application serving ``service`` (see the module docstring).

    Args:
        service: the status service (snapshots, events, push).
        token: bearer token required on every request (``None``: no token; only for loopback, and then the
            ``Host``/``Origin`` checks of :class:`LoopbackOnly` apply).
        metrics: the ``/metrics`` renderer (``None``: 404).
        cluster: the ``/api/cluster/status`` reader (``None``: answers that no Redis is configured).
        bound_host: the address the server listens on (accepted as ``Host`` without a token).

    Raises:
        ValueError: ``token`` is empty or only whitespace (it would let every request in).
    """
    if token is not None and not token.strip():
        raise ValueError("the status token must not be empty or only whitespace")
    app = FastAPI(
        title="cryptolink status",
        version=__version__,
        description="State of every exchange connection of one cryptolink instance.",
        docs_url=None,  # served below: the page passes the caller's ?token= on to /openapi.json
        redoc_url=None,
    )
    if token is not None:
        app.openapi = _openapi_with_bearer(app)  # type: ignore[method-assign]
    page = _page()
    metrics_cache = _MetricsCache(metrics) if metrics is not None else None

    @app.get("/", response_class=HTMLResponse, summary="The dashboard")
    async def dashboard() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        openapi_url = "/openapi.json"
        supplied = query_token(request.scope) if token is not None else None
        if supplied:  # the caller's own token (TokenAuth let it in), percent-encoded: inert in the page's JS
            openapi_url += "?token=" + quote_from_bytes(supplied, safe="")
        page = get_swagger_ui_html(openapi_url=openapi_url, title="cryptolink status - API")
        page.headers["cache-control"] = "no-store"
        page.headers["referrer-policy"] = "no-referrer"
        return page

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
        return _json(documents.events_doc(service.events(since), since, evicted_total=service.events_evicted))

    @app.get("/api/report", summary="The connection report")
    async def report() -> Response:
        return _json(documents.report_doc(service.latest))

    @app.get("/api/rest", summary="REST manager: members, groups and the rate budgets")
    async def rest() -> Response:
        return _json(documents.rest_doc(service.latest))

    @app.get("/api/nats", summary="NATS sink counters and this process's scale-out worker state")
    async def nats_state() -> Response:
        return _json(documents.nats_doc(service.latest))

    @app.get("/api/cluster/status", summary="Every instance's status from Redis")
    async def cluster_status() -> Response:
        if cluster is None:
            return _json({"redis": None, "instances": [], "detail": "status.redis_url is not set"})
        doc = await cluster.read()
        return _json(doc, 503 if "error" in doc else 200)

    @app.get("/healthz", summary="The process serves (with the age of the latest status snapshot)")
    async def healthz() -> Response:
        snap = service.latest_or_none
        return _json(
            {
                "status": "alive",
                "instance_id": service.instance_id,
                "snapshot": None if snap is None else documents.iso(snap.taken_ns),
                "snapshot_age_s": None if snap is None else round(service.age_s(snap), 3),
                "stale_after_s": service.stale_after_s,
            }
        )

    @app.get(
        "/readyz", summary="Every enabled exchange entry delivers data, and the status snapshot is fresh"
    )
    async def readyz() -> Response:
        snap = service.latest
        ready, reasons = documents.readiness(snap)
        stale = service.staleness(snap)
        if stale is not None:
            ready, reasons = False, [stale, *reasons]
        return _json({"ready": ready, "reasons": reasons}, 200 if ready else 503)

    @app.get("/metrics", summary="Prometheus metrics")
    async def metrics_endpoint() -> Response:
        if metrics_cache is None:
            return _json({"detail": "metrics are not enabled"}, 404)
        key = service.latest.taken_ns  # taken here, on the loop: the renderer's thread only reads it
        try:
            body, content_type = await metrics_cache.get(key)
        except Exception:  # logged and counted by the exporter
            return _json({"detail": "rendering the metrics failed (see the log)"}, 500)
        return Response(body, media_type=content_type)

    @app.websocket("/ws/status")
    async def ws_status(ws: WebSocket) -> None:
        client = service.connect_client()
        if client is None:
            note_refused_handshake("503: too many WebSocket clients")
            with contextlib.suppress(Exception):
                await ws.send_denial_response(_json({"detail": "too many WebSocket clients"}, 503))
            return
        try:
            await ws.accept()
            ended = await _pump(ws, client, service.send_timeout_s)
            if ended is _Ended.SLOW:
                service.drop_slow_client(client)
                await _close(ws, 1013, "no push taken in time")
            elif ended is _Ended.STOPPING:
                await _close(ws, 1001, "server stopping")
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass  # the client went away
        finally:
            service.disconnect_client(client)

    if token is not None:
        return TokenAuth(app, token)
    return LoopbackOnly(app, bound_host)
