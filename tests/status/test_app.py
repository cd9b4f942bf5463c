"""The status HTTP API through a real uvicorn server on loopback: endpoints, ``/readyz``, the bearer token on
every request and on the WebSocket handshake, and nothing secret in any answer."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

import httpx
import pytest
import websockets
from websockets.exceptions import InvalidStatus

from cryptolink.config import CryptolinkConfig, StatusConfig
from cryptolink.manager import ExchangeManager
from cryptolink.status.app import create_app
from cryptolink.status.server import StatusBindError, StatusServer
from cryptolink.status.service import StatusService

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
    await server.start()
    try:
        yield server.url, service
    finally:
        await server.stop()


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
    url, _ = locked_api
    async with httpx.AsyncClient(base_url=url) as http:
        for path in (*PATHS, "/readyz", "/metrics", "/docs", "/openapi.json"):
            for headers in (
                {},
                {"Authorization": f"Bearer {TOKEN[:-1]}"},
                {"Authorization": f"Basic {TOKEN}"},
            ):
                r = await http.get(path, headers=headers)
                assert r.status_code == 401, (path, headers)
                assert r.headers["www-authenticate"].startswith("Bearer")
            assert (await http.get(path, params={"token": TOKEN + "x"})).status_code == 401
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
