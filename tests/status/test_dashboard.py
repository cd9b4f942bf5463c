"""The dashboard (``GET /``) in a real browser: Debian's chromium driven by playwright.

Against the real stack (simulator, manager, status service and server): the page shows every connection live,
an outage injected in the simulator turns the connection's row non-connected within 6 s (the requirement; the
``expect`` timeout is the bound) and connected again after it; with a token the page passes its own ``?token=``
on, and a socket without it is refused (the page says it is disconnected); a page whose service went away
stops looking live and reconnects when the service is back.

Against a scripted socket (playwright's WebSocket routing, no service): server strings are shown as text,
never parsed as HTML; the page turns stale after two push periods without a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from importlib import resources
from typing import Any

import pytest
from playwright.async_api import Route, WebSocket, WebSocketRoute, expect

from cryptolink.config import StatusConfig
from cryptolink.manager import ExchangeManager
from cryptolink.simulator import Fault, Simulator
from cryptolink.status.app import create_app
from cryptolink.status.server import StatusServer
from cryptolink.status.service import StatusService
from tests.status.browser import browser_page

pytestmark = [pytest.mark.timeout(90), pytest.mark.integration]

EXCHANGES = ("okx", "binance")
FAST_RECONNECT = {"initial_delay_s": 0.05, "multiplier": 2.0, "max_delay_s": 0.5, "reset_after_s": 1.0}
STATUS = StatusConfig(push_interval_s=1.0, snapshot_interval_s=0.25)
INSTANCE = "dashboard-test"
FAULT_SHOWN_MS = 6_000  # the requirement: a fault shows on the page within 6 s of its injection
CONNECT_MS = 20_000  # first connect, book snapshots and the recovery after an outage: generous, not the claim

NOT_CONNECTED = re.compile(r"^(reconnecting|error)$")


@dataclass
class Stack:
    """The simulator, a manager streaming from it and the status service watching the manager."""

    sim: Simulator
    manager: ExchangeManager
    service: StatusService


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    async with Simulator(exchanges=list(EXCHANGES), speed=1.0) as sim:
        ep = sim.endpoints()
        builder = ExchangeManager.builder().runtime(seed=11)
        for name in EXCHANGES:
            builder.exchange(
                name,
                exchange=name,
                market="spot",
                symbols=["BTC/USDT"],
                ws_url=ep[name]["ws_url"],
                rest_url=ep[name]["rest_url"],
                reconnect=FAST_RECONNECT,
            )
        manager = builder.build()
        service = StatusService(manager, STATUS, instance_id=INSTANCE)
        await manager.start()
        await service.start()
        try:
            yield Stack(sim, manager, service)
        finally:
            await service.stop()
            await asyncio.wait_for(manager.stop(), 10.0)


@contextlib.asynccontextmanager
async def serving(
    service: StatusService, *, token: str | None = None, port: int = 0
) -> AsyncIterator[StatusServer]:
    server = StatusServer(create_app(service, token=token), "127.0.0.1", port)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def row(page: Any, exchange: str) -> Any:
    """The (single) connection row of entry ``exchange``."""
    return page.locator(f'section[data-exchange="{exchange}"] tr[data-connection]')


# ------------------------------------------------------------------------------------------ the real stack


async def test_fault_shows_within_6_s_then_the_recovery(stack: Stack) -> None:
    async with serving(stack.service) as server, browser_page() as bp:
        page = bp.page
        await page.goto(server.url + "/")
        okx, binance = row(page, "okx"), row(page, "binance")
        for each in (okx, binance):
            await expect(each).to_have_count(1, timeout=CONNECT_MS)
            await expect(each).to_have_attribute("data-status", "connected", timeout=CONNECT_MS)
        await expect(page.locator("#healthy")).to_have_attribute("data-healthy", "true", timeout=CONNECT_MS)
        okx_id = await okx.get_attribute("data-connection")
        assert okx_id and okx_id.startswith("okx")

        # the header: instance, link, freshness, host figures
        await expect(page.locator("#instance")).to_have_text(INSTANCE)
        await expect(page.locator("#link")).to_have_attribute("data-link", "open")
        await expect(page.locator("#last-update")).to_have_attribute("data-stale", "false")
        await expect(page.locator("body")).to_have_attribute("data-live", "true")
        await expect(page.locator("#host-cpu")).to_have_text(re.compile(r"^\d+\.\d %$"))
        size = r"\d+(\.\d)?[MG]B"
        for field in ("#host-memory", "#host-disk"):
            await expect(page.locator(field)).to_have_text(re.compile(rf"^{size} / {size} \(\d+\.\d %\)$"))
        await expect(page.locator('[data-count="connected"] b')).to_have_text("2")

        # a row: its badge says the state in words, a subscription's data age, the events list
        await expect(okx.locator('[data-field="status"]')).to_have_text("connected")
        await expect(okx.locator('[data-field="status"]')).to_have_class(re.compile(r"\bc-green\b"))
        age = okx.locator('[data-subscription="trades BTC/USDT"] [data-field="data-age"]')
        await expect(age).to_have_text(re.compile(r"^\d+\.\d\d s$"))
        await expect(okx.locator('[data-field="reconnects"]')).to_have_text("0")
        connected_event = page.locator(f'#events li[data-type="connected"][data-connection="{okx_id}"]')
        await expect(connected_event.first).to_contain_text("connected to ws://")

        # the outage: shown within 6 s of the injection, by the row, its badge and the header
        stack.sim.inject(Fault("outage", duration_s=4.0), exchange="okx")
        await expect(okx).to_have_attribute("data-status", NOT_CONNECTED, timeout=FAULT_SHOWN_MS)
        await expect(okx.locator('[data-field="status"]')).to_have_text(NOT_CONNECTED)
        await expect(okx.locator('[data-field="status"]')).not_to_have_class(re.compile(r"\bc-green\b"))
        await expect(page.locator("#healthy")).to_have_attribute("data-healthy", "false")
        await expect(page.locator("#reasons")).to_contain_text(okx_id)
        await expect(binance).to_have_attribute("data-status", "connected")
        retries = page.locator(f'#events li[data-type^="reconnect"][data-connection="{okx_id}"]')
        await expect(retries.first).to_be_visible()
        await expect(okx.locator('[data-field="reconnects"]')).to_have_text(re.compile(r"^[1-9]\d*$"))

        # the recovery
        await expect(okx).to_have_attribute("data-status", "connected", timeout=CONNECT_MS)
        await expect(okx.locator('[data-field="status"]')).to_have_class(re.compile(r"\bc-green\b"))
        await expect(page.locator("#healthy")).to_have_attribute("data-healthy", "true", timeout=CONNECT_MS)
        await expect(page.locator("body")).to_have_attribute("data-live", "true")
        assert bp.errors == []


async def test_token_is_passed_on_and_a_socket_without_it_is_refused(stack: Stack) -> None:
    async with serving(stack.service, token="t") as server:
        async with browser_page() as bp:
            page = bp.page
            await page.goto(server.url + "/?token=t")
            await expect(row(page, "okx")).to_have_count(1, timeout=CONNECT_MS)
            await expect(page.locator("#instance")).to_have_text(INSTANCE)
            await expect(page.locator("#link")).to_have_attribute("data-link", "open")
            await expect(page.locator("body")).to_have_attribute("data-live", "true")
            assert bp.errors == []

        async with browser_page() as bp:
            page = bp.page

            async def page_with_header(route: Route) -> None:  # the page itself, but no ?token= to pass on
                await route.continue_(headers={**route.request.headers, "authorization": "Bearer t"})

            await page.route(server.url + "/", page_with_header)

            refusals: asyncio.Queue[str] = asyncio.Queue()

            def on_socket(ws: WebSocket) -> None:
                ws.on("socketerror", refusals.put_nowait)

            page.on("websocket", on_socket)
            response = await page.goto(server.url + "/")
            # chromium's words for a handshake answered 401 with WWW-Authenticate
            refusal = await asyncio.wait_for(refusals.get(), 10.0)
            assert "Authentication failed" in refusal
            assert response is not None and response.status == 200
            await expect(page.locator("#link")).to_have_attribute("data-link", "closed")
            await expect(page.locator("#link")).to_contain_text("disconnected from the service")
            await expect(page.locator("body")).to_have_attribute("data-live", "false")
            await expect(page.locator("#last-update")).to_have_text("no update yet")
            await expect(page.locator("tr[data-connection]")).to_have_count(0)
            assert bp.errors == []


async def test_page_stops_looking_live_when_the_service_goes_and_reconnects(stack: Stack) -> None:
    async with browser_page() as bp:
        page = bp.page
        async with serving(stack.service) as server:
            port = server.port
            await page.goto(server.url + "/")
            await expect(row(page, "okx")).to_have_count(1, timeout=CONNECT_MS)
            await expect(page.locator("body")).to_have_attribute("data-live", "true")
        # the server is gone: the socket closed
        await expect(page.locator("#link")).to_have_attribute("data-link", "closed")
        await expect(page.locator("#link")).to_contain_text("disconnected from the service")
        await expect(page.locator("body")).to_have_attribute("data-live", "false")
        await expect(page.locator("#last-update")).to_have_attribute("data-stale", "true")
        # back on the same address: the page reconnects by itself (backoff) and is live again
        async with serving(stack.service, port=port):
            await expect(page.locator("#link")).to_have_attribute("data-link", "open", timeout=CONNECT_MS)
            await expect(page.locator("body")).to_have_attribute("data-live", "true")
            await expect(page.locator("#last-update")).to_have_attribute("data-stale", "false")
        assert bp.errors == []


# -------------------------------------------------------------------------------------- a scripted socket

ORIGIN = "http://dashboard.test"
SOCKET = re.compile(r"^ws://dashboard\.test/ws/status")


def _push(data: dict[str, Any]) -> str:
    return json.dumps({"type": "exchange_status", "id": "exchange_status_1", "timestamp": 1, "data": data})


def _data(**extra: Any) -> dict[str, Any]:
    return {
        "summary": {"total": 1, "connected": 1, "healthy": True, "books": {"total": 0, "live": 0}},
        "connections": [],
        "host": {"cpu_usage": 1.0},
        "events": [],
        "instance_id": "scripted",
        **extra,
    }


async def _open_scripted(page: Any, messages: list[str]) -> list[str]:
    """Serve the packaged page at :data:`ORIGIN` and answer its socket with ``messages``; returns the
    socket URLs the page opened."""
    html = resources.files("cryptolink.status").joinpath("static/index.html").read_text(encoding="utf-8")
    opened: list[str] = []

    async def serve_page(route: Route) -> None:
        await route.fulfill(status=200, content_type="text/html", body=html)

    def on_socket(ws: WebSocketRoute) -> None:
        opened.append(ws.url)
        for m in messages:
            ws.send(m)

    await page.route(ORIGIN + "/**", serve_page)
    await page.route_web_socket(SOCKET, on_socket)
    await page.goto(ORIGIN + "/?token=a%20b&x=1")
    return opened


async def test_server_strings_are_text_never_html() -> None:
    hostile = '<img src=x onerror="window.pwned=1">'
    conn = {
        "exchange_name": hostile,
        "exchange": "okx",
        "market": "spot",
        "connection_id": '<b id="injected">c1</b>',
        "status": "connected",
        "status_color": 'green" onmouseover="window.pwned=3',
        "subscriptions": [{"channel": "<i>trades</i>", "symbol": "X", "data_age_s": 0.5, "stale": True}],
        "book_states": [{"symbol": "<u>X</u>", "state": "resyncing"}],
        "last_error": "<script>window.pwned=4</script>",
        "last_event": "<em>event</em>",
    }
    event = {"seq": 1, "type": "connected", "severity": "info", "connection_id": "c1", "description": hostile}
    data = _data(connections=[conn], events=[event])
    data["summary"]["unhealthy_reasons"] = ['<i id="injected2">r</i>']
    async with browser_page() as bp:
        page = bp.page
        opened = await _open_scripted(page, ["not json", json.dumps({"type": "other"}), _push(data)])
        section = page.locator("section[data-exchange]")
        await expect(section).to_have_attribute("data-exchange", hostile)
        await expect(section.locator("h2")).to_contain_text(hostile)
        await expect(page.locator("#events li")).to_contain_text(hostile)
        await expect(page.locator("#reasons")).to_contain_text('<i id="injected2">r</i>')
        await expect(section.locator('[data-field="last-error"]')).to_contain_text("<script>")
        await expect(section.locator('[data-subscription="<i>trades</i> X"]')).to_have_attribute(
            "data-stale", "true"
        )
        # nothing of it became an element, and an unknown colour is not a class name: gray
        for selector in ("img", "#injected", "#injected2", "main script", "main i", "main u", "main em"):
            await expect(page.locator(selector)).to_have_count(0)
        await expect(section.locator('[data-field="status"]')).to_have_class("badge c-gray")
        assert await page.evaluate("window.pwned") is None
        # the two unreadable messages are counted, not silently dropped
        await expect(page.locator("#footer")).to_contain_text("2 unreadable messages ignored")
        # the page's own ?token= is passed on to the socket (and nothing else of its query)
        assert opened == ["ws://dashboard.test/ws/status?token=a%20b"]
        assert bp.errors == []


async def test_page_turns_stale_after_two_push_periods_without_a_message() -> None:
    async with browser_page() as bp:
        page = bp.page
        await _open_scripted(page, [_push(_data(push_interval_s=1.5))])
        await expect(page.locator("#instance")).to_have_text("scripted")
        await expect(page.locator("#healthy")).to_have_attribute("data-healthy", "true")
        await expect(page.locator("#link")).to_have_attribute("data-link", "open")
        await expect(page.locator("#last-update")).to_have_attribute("data-stale", "false")
        await expect(page.locator("body")).to_have_attribute("data-live", "true")
        # the socket stays open but silent: after 2 x 1.5 s the page must not look live
        await expect(page.locator("#last-update")).to_have_attribute("data-stale", "true", timeout=8_000)
        await expect(page.locator("#last-update")).to_have_text(re.compile(r"^last update \d+ s ago$"))
        await expect(page.locator("body")).to_have_attribute("data-live", "false")
        await expect(page.locator("#link")).to_have_attribute("data-link", "open")
        assert bp.errors == []
