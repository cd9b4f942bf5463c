"""The status HTTP API through a real uvicorn server on loopback: endpoints, ``/healthz`` and ``/readyz`` (the
snapshot's age), the bearer token on every request and on the WebSocket handshake (header or query, any
bytes), the ``Host``/``Origin`` checks without a token, the WebSocket reading any frame, ``/metrics`` rendered
off the loop once per snapshot, ``/docs`` with a token, ``/api/events`` cursors, and nothing secret in any
answer."""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import re
import threading
import urllib.parse
from collections import deque
from collections.abc import AsyncIterator

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus
from websockets.typing import Origin

from cryptolink.clock import FakeClock
from cryptolink.config import CryptolinkConfig, StatusConfig
from cryptolink.manager import ExchangeManager
from cryptolink.status import server as server_module
from cryptolink.status import service as service_module
from cryptolink.status.app import create_app
from cryptolink.status.server import StatusBindError, StatusServer, note_refused_handshake
from cryptolink.status.service import StatusService
from tests.status.factories import event

pytestmark = [pytest.mark.timeout(30)]

SECRET_KEY = "k-3f9a1c0e-not-a-real-key"
SECRET = "s-77d2b4aa-not-a-real-secret"
TOKEN = "t-0b5e8c31-status-token"


def _manager() -> ExchangeManager:
    cfg = CryptolinkConfig.from_dict(
        {
            "exchanges": {
                "okx": {"symbols": ["BTC/USDT"], "api_key": SECRET_KEY, "api_secret": SECRET},
                "gate": {"symbols": ["BTC/USDT"]},
            },
            "status": {"token": TOKEN},
        },
        env={},
    )
    return ExchangeManager(cfg)  # never started: nothing is running, so nothing is ready


async def _serve(token: str | None) -> AsyncIterator[tuple[str, StatusService]]:
    manager = _manager()
    service = StatusService(manager, StatusConfig(push_interval_s=3600))
    server = StatusServer(create_app(service, token=token), "127.0.0.1", 0)
    await service.start()  # the snapshot loop keeps the snapshot fresh (/readyz judges its age)
    await server.start()
    try:
        yield server.url, service
    finally:
        await service.close_clients()
        await server.stop()
        await service.stop()


@pytest.fixture
async def open_api() -> AsyncIterator[tuple[str, StatusService]]:
    async for pair in _serve(None):
        yield pair


@pytest.fixture
async def locked_api() -> AsyncIterator[tuple[str, StatusService]]:
    async for pair in _serve(TOKEN):
        yield pair


PATHS = (
    "/api/system/status",
    "/api/connections",
    "/api/events",
    "/api/report",
    "/api/nats",
    "/api/cluster/status",
    "/healthz",
    "/",
)


async def test_endpoints_answer_and_readyz_says_what_is_missing(open_api: tuple[str, StatusService]) -> None:
    url, _ = open_api
    async with httpx.AsyncClient(base_url=url) as http:
        status = (await http.get("/api/system/status")).json()
        assert status["exchange_connections"]["summary"]["healthy"] is False
        assert status["exchange_connections"]["summary"]["unhealthy_reasons"] == [
            "okx: not running",
            "gate: not running",
        ]
        ready = await http.get("/readyz")
        assert ready.status_code == 503 and ready.json() == {
            "ready": False,
            "reasons": ["okx: not running", "gate: not running"],
        }
        assert (await http.get("/healthz")).json()["status"] == "alive"
        assert (await http.get("/api/events", params={"since": -1})).status_code == 422
        assert (await http.get("/api/cluster/status")).json()["redis"] is None
        openapi = (await http.get("/openapi.json")).json()
        assert {"/api/system/status", "/api/events", "/readyz", "/metrics"} <= openapi["paths"].keys()


async def test_every_request_needs_the_token_and_it_is_compared_exactly(
    locked_api: tuple[str, StatusService],
) -> None:
    url, service = locked_api
    async with httpx.AsyncClient(base_url=url) as http:
        for path in (*[p for p in PATHS if p != "/"], "/readyz", "/metrics", "/docs", "/openapi.json"):
            for headers in (
                {},
                {"Authorization": f"Bearer {TOKEN[:-1]}"},
                {"Authorization": f"Basic {TOKEN}"},
            ):
                r = await http.get(path, headers=headers)
                assert r.status_code == 401, (path, headers)
                assert r.headers["www-authenticate"].startswith("Bearer")
            assert (await http.get(path, params={"token": TOKEN + "x"})).status_code == 401
        # the page itself (static HTML, no data) loads without the token, so a reload works
        page = await http.get("/")
        assert (
            page.status_code == 200 and "<html" in page.text.lower() and service.instance_id not in page.text
        )
        assert (await http.post("/")).status_code == 401
        good = await http.get("/api/system/status", headers={"Authorization": f"Bearer {TOKEN}"})
        assert good.status_code == 200 and good.json()["exchange_connections"]["summary"]["total"] == 0
        assert (await http.get("/api/report", params={"token": TOKEN})).status_code == 200


async def test_the_websocket_handshake_is_refused_without_the_token(
    locked_api: tuple[str, StatusService], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="uvicorn.error")
    url, service = locked_api
    ws_url = url.replace("http://", "ws://") + "/ws/status"
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(ws_url):
            pass
    assert refused.value.response.status_code == 401
    assert service.clients == 0
    # an expected refusal, not an error in the log (uvicorn reports it as one)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert "WebSocket handshake refused (401" in caplog.text
    async with websockets.connect(ws_url, additional_headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
        message = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert message["type"] == "exchange_status" and message["id"] == f"exchange_status_{message['timestamp']}"


async def test_no_answer_carries_a_secret(locked_api: tuple[str, StatusService]) -> None:
    url, _ = locked_api
    bodies = []
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        for path in (*PATHS, "/readyz", "/docs", "/openapi.json"):
            r = await http.get(path)
            assert r.status_code in (200, 503), path
            bodies.append(r.text)
    text = "\n".join(bodies)
    assert "okx: not running" in text and "exchange_connections" in text  # the answers were not empty
    for secret in (SECRET_KEY, SECRET, TOKEN):
        assert secret not in text


async def test_a_port_in_use_is_refused_with_a_way_out() -> None:
    service = StatusService(_manager(), StatusConfig())
    first = StatusServer(create_app(service), "127.0.0.1", 0)
    await first.start()
    try:
        second = StatusServer(create_app(service), "127.0.0.1", first.port)
        with pytest.raises(StatusBindError, match=f"127.0.0.1:{first.port}.*--status-addr.*--no-status"):
            await second.start()
    finally:
        await first.stop()


# --------------------------------------------------------------------------------------------------- token


def test_an_empty_or_blank_token_is_refused_not_taken_as_no_token() -> None:
    service = StatusService(_manager(), StatusConfig())
    for blank in ("", "   ", "\t"):
        with pytest.raises(ValueError, match="empty or only whitespace"):
            create_app(service, token=blank)


UNICODE_TOKEN = "pässwörd-tøken-🙂-0123"


async def test_a_non_ascii_token_matches_by_header_and_by_query_and_garbage_is_a_401() -> None:
    service = StatusService(_manager(), StatusConfig(push_interval_s=3600))
    server = StatusServer(create_app(service, token=UNICODE_TOKEN), "127.0.0.1", 0)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url) as http:
            header = {b"Authorization": f"Bearer {UNICODE_TOKEN}".encode()}
            assert (await http.get("/healthz", headers=header)).status_code == 200
            quoted = urllib.parse.quote(UNICODE_TOKEN, safe="")
            assert (await http.get(f"/healthz?token={quoted}")).status_code == 200
            # percent-encoded bytes that are not UTF-8, and a UTF-8 token that is not ours: refused, never a 500
            for query in ("token=%F0%9F%99%82", "token=%FF%FE", "token=%C3", f"token={quoted}x", "token="):
                r = await http.get(f"/healthz?{query}")
                assert r.status_code == 401, (query, r.text)
            wrong = {b"Authorization": b"Bearer \xff\xfe"}
            assert (await http.get("/healthz", headers=wrong)).status_code == 401
    finally:
        await server.stop()


async def test_an_ascii_token_is_never_matched_by_non_utf8_query_bytes() -> None:
    service = StatusService(_manager(), StatusConfig(push_interval_s=3600))
    server = StatusServer(create_app(service, token=TOKEN), "127.0.0.1", 0)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url) as http:
            r = await http.get("/healthz?token=%F0%9F%99%82")
            assert r.status_code == 401 and r.json() == {"detail": "missing or wrong bearer token"}
    finally:
        await server.stop()


async def test_the_websocket_takes_the_token_from_the_query(locked_api: tuple[str, StatusService]) -> None:
    url, service = locked_api
    ws_url = url.replace("http://", "ws://") + "/ws/status"
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(f"{ws_url}?token={TOKEN}x"):
            pass
    assert refused.value.response.status_code == 401
    async with websockets.connect(f"{ws_url}?token={TOKEN}") as ws:
        message = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert message["type"] == "exchange_status" and service.clients == 1


# ------------------------------------------------------------------------------------------ Host / Origin


async def test_without_a_token_a_foreign_host_is_refused(open_api: tuple[str, StatusService]) -> None:
    url, _ = open_api
    port = url.rsplit(":", 1)[1]
    async with httpx.AsyncClient(base_url=url) as http:
        for host in ("attacker.example:8766", "attacker.example", "127.attacker.example", "localhost.evil"):
            r = await http.get("/api/system/status", headers={"Host": host})
            assert r.status_code == 421, host
            assert "loopback" in r.json()["detail"]
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST", f"[::1]:{port}", "app.localhost"):
            assert (await http.get("/api/system/status", headers={"Host": host})).status_code == 200, host


async def test_without_a_token_a_websocket_from_another_origin_is_refused(
    open_api: tuple[str, StatusService], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="uvicorn.error")
    url, service = open_api
    ws_url = url.replace("http://", "ws://") + "/ws/status"
    for origin in ("https://evil.example", "null", "http://127.attacker.example"):
        with pytest.raises(InvalidStatus) as refused:
            async with websockets.connect(ws_url, origin=Origin(origin)):
                pass
        assert refused.value.response.status_code == 403, origin
    assert service.clients == 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert "WebSocket handshake refused (403: foreign Origin)" in caplog.text
    # the dashboard's own page, a loopback page, and clients that send no Origin are served
    for page in (url, "http://localhost:3000", None):
        async with websockets.connect(ws_url, origin=None if page is None else Origin(page)) as ws:
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "exchange_status"


async def test_with_a_token_the_token_is_the_guard_for_any_host_and_origin(
    locked_api: tuple[str, StatusService],
) -> None:
    url, _ = locked_api
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=url) as http:
        r = await http.get("/api/system/status", headers={"Host": "status.example.com", **bearer})
        assert r.status_code == 200
    ws_url = url.replace("http://", "ws://") + "/ws/status"
    async with websockets.connect(
        ws_url, origin=Origin("https://ops.example.com"), additional_headers=bearer
    ) as ws:
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "exchange_status"


def test_only_a_purposeful_refusal_drops_uvicorns_handshake_error(caplog: pytest.LogCaptureFixture) -> None:
    """A refusal we make is logged by us at INFO with its reason; uvicorn before 0.55 also logs it as an ERROR,
    which is dropped then, and only then (0.55 logs no such ERROR)."""
    caplog.set_level(logging.INFO, logger="uvicorn.error")
    flt = server_module._RefusedHandshake()

    def record() -> logging.LogRecord:
        return logging.LogRecord(
            "uvicorn.error", logging.ERROR, __file__, 1, server_module._NO_HANDSHAKE, (), None
        )

    plain = record()
    assert contextvars.copy_context().run(flt.filter, plain) is True  # not ours: kept as an ERROR
    assert plain.levelno == logging.ERROR

    def refused() -> bool:
        note_refused_handshake("401: missing or wrong token")
        return flt.filter(record())

    assert contextvars.copy_context().run(refused) is False
    assert "status: WebSocket handshake refused (401: missing or wrong token)" in caplog.text


# ----------------------------------------------------------------------------------------------- WebSocket


async def test_a_binary_frame_is_read_and_ignored(open_api: tuple[str, StatusService]) -> None:
    url, service = open_api
    async with websockets.connect(url.replace("http://", "ws://") + "/ws/status") as ws:
        await asyncio.wait_for(ws.recv(), 10)
        await ws.send(b"\x00binary")
        await ws.send("text is ignored too")
        await asyncio.wait_for(await ws.ping(), 10)  # the server has read both frames
        assert service.clients == 1
        service.push(service.refresh())
        message = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert message["type"] == "exchange_status"


async def test_beyond_the_client_bound_the_handshake_is_refused_with_503(
    open_api: tuple[str, StatusService], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="uvicorn.error")
    monkeypatch.setattr(service_module, "MAX_PUSH_CLIENTS", 1)
    url, service = open_api
    ws_url = url.replace("http://", "ws://") + "/ws/status"
    async with websockets.connect(ws_url) as first:
        await asyncio.wait_for(first.recv(), 10)
        with pytest.raises(InvalidStatus) as refused:
            async with websockets.connect(ws_url):
                pass
        assert refused.value.response.status_code == 503
    assert service.push_clients_refused == 1
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


# ---------------------------------------------------------------------------------------- health, events


async def test_healthz_shows_the_snapshot_age_and_readyz_refuses_a_stale_snapshot() -> None:
    clock = FakeClock()
    service = StatusService(_manager(), StatusConfig(snapshot_interval_s=1.0), clock=clock, enabled=())
    server = StatusServer(create_app(service), "127.0.0.1", 0)  # the loop is not running: nothing refreshes
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url) as http:
            assert (await http.get("/readyz")).json() == {"ready": True, "reasons": []}  # nothing enabled
            await clock.advance(4.0)
            health = await http.get("/healthz")
            assert health.status_code == 200  # the process is alive
            assert health.json()["snapshot_age_s"] == 4.0 and health.json()["stale_after_s"] == 3.0
            ready = await http.get("/readyz")
            assert ready.status_code == 503
            assert ready.json()["reasons"] == ["status snapshot stale: 4.0 s old (taken every 1 s)"]
            service.refresh()
            assert (await http.get("/readyz")).status_code == 200
    finally:
        await server.stop()


async def test_events_dropped_is_what_the_caller_missed(open_api: tuple[str, StatusService]) -> None:
    url, service = open_api
    service._events = deque(maxlen=3)
    for i in range(1, 6):
        service._on_event(event(i).event)
    async with httpx.AsyncClient(base_url=url) as http:
        fresh = (await http.get("/api/events", params={"since": 0})).json()
        assert [e["seq"] for e in fresh["events"]] == [3, 4, 5]
        assert fresh["dropped"] == 2 and fresh["evicted_total"] == 2
        caught_up = (await http.get("/api/events", params={"since": 4})).json()
        assert [e["seq"] for e in caught_up["events"]] == [5]
        assert caught_up["dropped"] == 0 and caught_up["evicted_total"] == 2


# ---------------------------------------------------------------------------------------------- /metrics


class _CountingRenderer:
    """Renders a body naming the snapshot it read; records the threads it ran on."""

    def __init__(self, service: StatusService) -> None:
        self.service = service
        self.threads: list[str] = []
        self.started = threading.Event()
        self.release = threading.Event()

    def render(self) -> tuple[bytes, str]:
        self.threads.append(threading.current_thread().name)
        self.started.set()
        self.release.wait(10)
        return f"snapshot {self.service.latest.taken_ns}\n".encode(), "text/plain; version=0.0.4"


async def test_metrics_render_off_the_loop_once_per_snapshot() -> None:
    service = StatusService(_manager(), StatusConfig(push_interval_s=3600))
    renderer = _CountingRenderer(service)
    server = StatusServer(create_app(service, metrics=renderer), "127.0.0.1", 0)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url) as http:
            first = asyncio.create_task(http.get("/metrics"))
            second = asyncio.create_task(http.get("/metrics"))
            await asyncio.wait_for(asyncio.to_thread(renderer.started.wait, 10), 15)
            # the loop is free while the renderer works: another endpoint answers
            assert (await http.get("/healthz")).status_code == 200
            renderer.release.set()
            a, b = await asyncio.wait_for(asyncio.gather(first, second), 15)
            assert a.status_code == b.status_code == 200 and a.text == b.text
            assert len(renderer.threads) == 1  # the concurrent scrape shared the rendering
            assert (await http.get("/metrics")).text == a.text and len(renderer.threads) == 1
            service.refresh()  # a new snapshot: rendered again
            c = await http.get("/metrics")
            assert c.text != a.text and c.text == f"snapshot {service.latest.taken_ns}\n"
            assert len(renderer.threads) == 2
        assert threading.main_thread().name not in renderer.threads
    finally:
        renderer.release.set()
        await server.stop()


# -------------------------------------------------------------------------------------------------- /docs


async def test_docs_with_a_token_fetch_the_openapi_document_with_it(
    locked_api: tuple[str, StatusService],
) -> None:
    url, _ = locked_api
    async with httpx.AsyncClient(base_url=url) as http:
        assert (await http.get("/docs")).status_code == 401
        page = await http.get("/docs", params={"token": TOKEN})
        assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
        match = re.search(r"url: '([^']*)'", page.text)
        assert (
            match is not None
            and match.group(1) == f"/openapi.json?token={urllib.parse.quote(TOKEN, safe='')}"
        )
        openapi = await http.get(match.group(1))  # what the page fetches
        assert openapi.status_code == 200
        schema = openapi.json()
        assert schema["components"]["securitySchemes"]["bearer"] == {
            "type": "http",
            "scheme": "bearer",
            "description": "status.token",
        }
        assert schema["security"] == [{"bearer": []}]
        by_header = await http.get("/docs", headers={"Authorization": f"Bearer {TOKEN}"})
        assert (
            by_header.status_code == 200 and TOKEN not in by_header.text
        )  # nothing echoed that was not sent
