"""The dashboard (``GET /``) in a real browser: Debian's chromium driven by playwright.

Against the real stack (simulator, manager, status service at its **default** intervals: a push every 5 s, a
snapshot every 1 s, and the server): the page shows every connection live with every column filled where the
data exists; an outage turns the connection's row non-connected within 6 s of the injection (the requirement;
at the default push interval only the immediate push on a state change makes it); a stall does the same within
6 s of the engine being able to notice it (its learned silence bound); both recover. With a token the page
passes its own ``?token=`` on, takes it out of the address bar, and a socket without it is refused (the page
says the token is missing or wrong); a page whose service went away stops looking live and reconnects when the
service is back.

Against a scripted service (:class:`tests.status.browser.ScriptedService`: playwright answers every request
and the WebSocket): every column shows the pushed values and the data ages keep growing between pushes;
server strings are shown as text, never parsed as HTML; a silent socket turns the page stale and is dropped
and reopened; the instances of ``api/cluster/status`` are listed (or the section hidden, or the error shown);
scrolling and a text selection survive a push; a push that cannot be shown is counted and not shown as live;
a page under a proxy's sub-path addresses everything relative to itself.

Time: the scripted tests that check figures computed from the clock fix the page's ``Date`` with playwright's
``clock.set_fixed_time`` (its timers keep running), so an age or a "no data for N s" is exact.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from playwright.async_api import Locator, Page, Route, WebSocket, expect

from cryptolink.config import StatusConfig
from cryptolink.manager import ExchangeManager
from cryptolink.simulator import Fault, Simulator
from cryptolink.status.app import create_app
from cryptolink.status.documents import push_message
from cryptolink.status.server import StatusServer
from cryptolink.status.service import StatusService
from tests.status.browser import NO_REDIS, ORIGIN, ScriptedService, browser_page, push

pytestmark = [pytest.mark.timeout(90), pytest.mark.integration]

EXCHANGES = ("okx", "binance")
FAST_RECONNECT = {"initial_delay_s": 0.05, "multiplier": 2.0, "max_delay_s": 0.5, "reset_after_s": 1.0}
STATUS = StatusConfig()  # the defaults: push every 5 s, snapshot every 1 s
INSTANCE = "dashboard-test"
FAULT_SHOWN_S = 6.0  # the requirement: shown on the page within 6 s of the engine being able to see it
CONNECT_MS = 20_000  # first connect, book snapshots and the recovery after a fault: generous, not the claim

NOT_CONNECTED = re.compile(r"^(reconnecting|error)$")
NUMBER_1 = re.compile(r"^\d+\.\d$")

# the page's console lines for a WebSocket handshake that failed and an HTTP error answer (any wording after)
SOCKET_FAILED = r"^WebSocket connection to .* failed"
REFUSED_CONNECT = r"ERR_CONNECTION_REFUSED"
HTTP_401 = r"status of 401"


@dataclass
class Stack:
    """The simulator, a manager streaming from it and the status service watching the manager."""

    sim: Simulator
    manager: ExchangeManager
    service: StatusService


@contextlib.asynccontextmanager
async def running(okx_reconnect: dict[str, float] | None = None) -> AsyncIterator[Stack]:
    """The stack for :data:`EXCHANGES`; ``okx_reconnect`` replaces okx's reconnect policy."""
    async with Simulator(exchanges=list(EXCHANGES), speed=1.0) as sim:
        ep = sim.endpoints()
        builder = ExchangeManager.builder().runtime(
            seed=11
        )  # seeded backoff jitter: the same delays each run
        for name in EXCHANGES:
            builder.exchange(
                name,
                exchange=name,
                market="spot",
                symbols=["BTC/USDT"],
                ws_url=ep[name]["ws_url"],
                rest_url=ep[name]["rest_url"],
                reconnect=okx_reconnect if name == "okx" and okx_reconnect else FAST_RECONNECT,
            )
        manager = builder.build()
        service = StatusService(manager, STATUS, instance_id=INSTANCE)
        try:  # both are stopped whatever fails (stopping one that never started is harmless)
            await service.start()  # first, as cryptolink.service.serve does: it sees the first connects too
            await manager.start()
            yield Stack(sim, manager, service)
        finally:
            await service.stop()
            await asyncio.wait_for(manager.stop(), 10.0)


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    async with running() as s:
        yield s


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


def row(page: Page, exchange: str) -> Locator:
    """The (single) connection row of entry ``exchange``."""
    return page.locator(f'section[data-exchange="{exchange}"] tr[data-connection]')


async def live_and_healthy(page: Page) -> tuple[Locator, Locator]:
    """Wait until both rows are connected and the page healthy; returns the okx and binance rows."""
    okx, binance = row(page, "okx"), row(page, "binance")
    for each in (okx, binance):
        await expect(each).to_have_count(1, timeout=CONNECT_MS)
        await expect(each).to_have_attribute("data-status", "connected", timeout=CONNECT_MS)
    await expect(page.locator("#healthy")).to_have_attribute("data-healthy", "true", timeout=CONNECT_MS)
    return okx, binance


# Records every status the okx row takes, in the page itself: a stall's reconnect can be over in a few
# milliseconds (two pushes back to back), faster than any polling from the test could see.
WATCH_STATUS = """(exchange) => {
  window.seenStatus = [];
  const note = () => {
    const tr = document.querySelector(`section[data-exchange="${exchange}"] tr[data-connection]`);
    const status = tr ? tr.dataset.status : null;
    if (window.seenStatus[window.seenStatus.length - 1] !== status) window.seenStatus.push(status);
  };
  new MutationObserver(note).observe(document.getElementById("exchanges"),
    {subtree: true, childList: true, attributes: true, attributeFilter: ["data-status"]});
  note();
}"""
LEFT_CONNECTED = "() => window.seenStatus.some((s) => s !== null && s !== 'connected')"


RECEIVED = "document.querySelector('#footer [data-counter=received]')"
PUSH_AFTER = f"(n) => parseInt({RECEIVED}.textContent, 10) > n"
OUTAGE_S = 3.0  # with FAST_RECONNECT, connected again within ~0.5 s of its end: before the next periodic push


async def pushes_received(page: Page) -> int:
    """The push messages the page has received so far (its footer's count)."""
    return int(await page.evaluate(f"parseInt({RECEIVED}.textContent, 10)"))


def smallest_silence_bound_s(manager: ExchangeManager, entry: str) -> float:
    """The smallest learned data-silence threshold of ``entry``'s subscriptions, s."""
    feed = next(f for f in manager.stats().feeds if f.name == entry)
    bounds = [st.threshold_s for cs in feed.connections for st in cs.streams if st.threshold_s is not None]
    assert bounds, f"{entry}: no watched subscription"
    return min(bounds)


# ------------------------------------------------------------------------------------------ the real stack


async def test_outage_shows_within_6_s_at_the_default_push_interval_then_the_recovery(stack: Stack) -> None:
    assert (STATUS.push_interval_s, STATUS.snapshot_interval_s) == (5.0, 1.0)
    async with serving(stack.service) as server, browser_page() as bp:
        page = bp.page
        await page.goto(server.url + "/")
        okx, binance = await live_and_healthy(page)
        okx_id = await okx.get_attribute("data-connection")
        assert okx_id and okx_id.startswith("okx")

        # the header: instance, link, freshness, host figures
        await expect(page.locator("#instance")).to_have_text(INSTANCE)
        await expect(page.locator("#healthy")).to_have_text("healthy")
        await expect(page.locator("#link")).to_have_attribute("data-link", "open")
        await expect(page.locator("#link")).to_have_text("live")
        await expect(page.locator("#last-update")).to_have_attribute("data-stale", "false")
        await expect(page.locator("body")).to_have_attribute("data-live", "true")
        await expect(page.locator("#host-cpu")).to_have_text(re.compile(r"^\d+\.\d %$"))
        size = r"\d+(\.\d)?[MG]B"
        for figure in ("#host-memory", "#host-disk"):
            await expect(page.locator(figure)).to_have_text(re.compile(rf"^{size} / {size} \(\d+\.\d %\)$"))
        await expect(page.locator('[data-count="connected"] b')).to_have_text("2")
        await expect(page.locator("#cluster")).to_be_hidden()  # no Redis configured

        # every column of both rows, filled: the data exists for each once connected and healthy
        for each in (okx, binance):
            await expect(each.locator('[data-field="status"]')).to_have_text("connected")
            await expect(each.locator('[data-field="status"]')).to_have_class(re.compile(r"\bc-green\b"))
            await expect(each.locator('[data-field="quality"]')).to_have_text(NUMBER_1)
            await expect(each.locator('[data-field="messages-per-s"]')).to_have_text(NUMBER_1)
            await expect(each.locator('[data-field="reconnects"]')).to_have_text("0")
            await expect(each.locator('[data-field="books-live"]')).to_have_text(
                re.compile(r"^(\d+)/\1 live$")
            )
            await expect(each.locator("[data-book]")).to_have_count(0)  # every book live
            ages = each.locator('[data-subscription] [data-field="data-age"]')
            assert await ages.count() >= 2  # trades, ticker, book of BTC/USDT
            for i in range(await ages.count()):
                await expect(ages.nth(i)).to_have_text(re.compile(r"^\d+\.\d\d s$"))
            await expect(each.locator('[data-field="message-age"]')).to_have_text(re.compile(r"^\d+\.\d s$"))
        connected_event = page.locator(f'#events li[data-type="connected"][data-connection="{okx_id}"]')
        await expect(connected_event.first).to_contain_text("connected to ws://")

        # the outage: shown within 6 s of the injection, by the row, its badge and the header. Injected just
        # after a periodic push and over (reconnected) well before the next one, 5 s later: only the push on the
        # state change can show it.
        await page.wait_for_function(PUSH_AFTER, arg=await pushes_received(page), timeout=CONNECT_MS)
        stack.sim.inject(Fault("outage", duration_s=OUTAGE_S), exchange="okx")
        await expect(okx).to_have_attribute("data-status", NOT_CONNECTED, timeout=FAULT_SHOWN_S * 1000)
        await expect(okx.locator('[data-field="status"]')).to_have_text(NOT_CONNECTED)
        await expect(okx.locator('[data-field="status"]')).not_to_have_class(re.compile(r"\bc-green\b"))
        await expect(page.locator("#healthy")).to_have_attribute("data-healthy", "false")
        await expect(page.locator("#healthy")).to_have_text("unhealthy")
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

        # the keepalive round trip arrives after the first ping (tens of seconds on some exchanges): a row
        # whose latency the service knows shows it by the next push (a measured latency stays measured)
        measured = {
            c["exchange_name"]: c["latency_ms"]
            for c in push_message(stack.service.latest)["data"]["connections"]
        }
        for name, latency in measured.items():
            if latency is not None:
                cell = row(page, name).locator('[data-field="latency"]')
                await expect(cell).to_have_text(re.compile(r"^\d+\.\d ms$"), timeout=7_000)
        bp.assert_clean()


# The reconnect after a stall: the engine's first retry after a session that delivered data is immediate, and a
# stall only stops the stalled socket, so by default the new session is open ~3 ms after the reset, between two
# status snapshots: no push can carry "reconnecting" (the reset shows in the events and the reconnects column
# only). This policy never resets its attempt counter, so that retry waits uniform(0, 2 s) (seeded: ~0.9 s), long
# enough for the state-change push to carry it.
WAITED_RETRY = {"initial_delay_s": 2.0, "multiplier": 1.0, "max_delay_s": 2.0, "reset_after_s": 3600.0}


async def test_stall_shows_within_6_s_of_its_silence_bound_then_the_recovery() -> None:
    """A stalled socket stays open and answers pings: nothing can tell it from a quiet market before the
    engine's learned silence bound passes. The connection hears market data at least as often as its busiest
    subscription, so its own bound (the one that resets the session) is at most the smallest subscription
    bound, read from the engine at the injection. The requirement is then: shown within that bound + 6 s."""
    async with (
        running(okx_reconnect=WAITED_RETRY) as stack,
        serving(stack.service) as server,
        browser_page() as bp,
    ):
        page = bp.page
        await page.goto(server.url + "/")
        okx, binance = await live_and_healthy(page)
        await page.evaluate(WATCH_STATUS, "okx")

        bound_s = smallest_silence_bound_s(stack.manager, "okx")
        stack.sim.inject(Fault("stall", duration_s=30.0), exchange="okx")
        await page.wait_for_function(LEFT_CONNECTED, timeout=(bound_s + FAULT_SHOWN_S) * 1000)
        seen = await page.evaluate("window.seenStatus")
        assert seen[0] == "connected"
        assert any(NOT_CONNECTED.match(s) for s in seen[1:] if s is not None), seen
        await expect(binance).to_have_attribute("data-status", "connected")
        stalled = page.locator('#events li[data-type="stale_subscription"]')
        await expect(stalled.first).to_contain_text(re.compile(r"silent|no market data"))

        # the recovery: the engine resets the stalled session; the new socket is not stalled
        await expect(okx).to_have_attribute("data-status", "connected", timeout=CONNECT_MS)
        await expect(page.locator("#healthy")).to_have_attribute("data-healthy", "true", timeout=CONNECT_MS)
        await expect(okx.locator('[data-field="reconnects"]')).to_have_text(re.compile(r"^[1-9]\d*$"))
        bp.assert_clean()


async def test_token_is_passed_on_and_a_socket_without_it_is_refused(stack: Stack) -> None:
    async with serving(stack.service, token="t") as server:
        async with browser_page() as bp:
            page = bp.page
            await page.goto(server.url + "/?token=t&view=1")
            await expect(row(page, "okx")).to_have_count(1, timeout=CONNECT_MS)
            await expect(page.locator("#instance")).to_have_text(INSTANCE)
            await expect(page.locator("#link")).to_have_attribute("data-link", "open")
            await expect(page.locator("body")).to_have_attribute("data-live", "true")
            # read once, then out of the address bar; the rest of the query stays
            assert page.url == server.url + "/?view=1"
            # the cluster read carried it too (a 401 there would log a console error)
            bp.assert_clean()

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
            assert response is not None and response.status == 200
            await asyncio.wait_for(refusals.get(), 10.0)  # the handshake failed (whatever chromium calls it)
            # the page asked healthz why: a 401, so it says the token is the problem
            await expect(page.locator("#link")).to_have_attribute("data-link", "refused")
            await expect(page.locator("#link")).to_contain_text("refused: missing or wrong token")
            await expect(page.locator("body")).to_have_attribute("data-live", "false")
            await expect(page.locator("#healthy")).to_have_attribute("data-healthy", "unknown")
            await expect(page.locator("#last-update")).to_have_text("no update yet")
            await expect(page.locator("tr[data-connection]")).to_have_count(0)
            bp.assert_clean(SOCKET_FAILED, HTTP_401)


async def test_page_stops_looking_live_when_the_service_goes_and_reconnects(stack: Stack) -> None:
    async with browser_page() as bp:
        page = bp.page
        async with serving(stack.service) as server:
            port = server.port
            await page.goto(server.url + "/")
            await expect(row(page, "okx")).to_have_count(1, timeout=CONNECT_MS)
            await expect(page.locator("body")).to_have_attribute("data-live", "true")
            await expect(page.locator("#healthy")).to_have_attribute(
                "data-healthy", "true", timeout=CONNECT_MS
            )
        # the server is gone: the socket closed; nothing on the page may still claim health
        await expect(page.locator("#link")).to_have_attribute("data-link", "closed")
        await expect(page.locator("#link")).to_contain_text("disconnected from the service (no data for")
        await expect(page.locator("body")).to_have_attribute("data-live", "false")
        await expect(page.locator("#last-update")).to_have_attribute("data-stale", "true")
        await expect(page.locator("#healthy")).to_have_attribute("data-healthy", "unknown")
        await expect(page.locator("#healthy")).to_have_text("stale")
        # back on the same address: the page reconnects by itself (backoff) and is live again
        async with serving(stack.service, port=port):
            await expect(page.locator("#link")).to_have_attribute("data-link", "open", timeout=CONNECT_MS)
            await expect(page.locator("body")).to_have_attribute("data-live", "true")
            await expect(page.locator("#last-update")).to_have_attribute("data-stale", "false")
            await expect(page.locator("#healthy")).to_have_attribute("data-healthy", "true")
        bp.assert_clean(SOCKET_FAILED, REFUSED_CONNECT)


# -------------------------------------------------------------------------------------- a scripted service

T0 = 1_796_180_000.0
"""The page's fixed wall time in the scripted tests that read clock-derived figures, epoch s."""


def _data(**extra: Any) -> dict[str, Any]:
    return {
        "summary": {"total": 1, "connected": 1, "healthy": True, "books": {"total": 0, "live": 0}},
        "connections": [],
        "host": {"cpu_usage": 1.0},
        "events": [],
        "instance_id": "scripted",
        **extra,
    }


def _conn(**extra: Any) -> dict[str, Any]:
    return {
        "exchange_name": "okx",
        "exchange": "okx",
        "market": "spot",
        "connection_id": "okx-ws-1",
        "status": "connected",
        "status_color": "green",
        "unstable": False,
        "quality_score": 87.5,
        "latency_ms": 12.34,
        "messages_per_s": 40.2,
        "reconnect_count": 3,
        "reconnect_successes": 2,
        "uptime_pct": 99.5,
        "last_message_age_s": 0.4,
        "books": {"total": 2, "live": 1},
        "book_states": [{"symbol": "BTC/USDT", "state": "live"}, {"symbol": "ETH/USDT", "state": "resyncing"}],
        "subscriptions": [
            {"channel": "trades", "symbol": "BTC/USDT", "state": "confirmed", "data_age_s": 0.5,
             "threshold_s": 3.0, "stale": False},
            {"channel": "book", "symbol": "ETH/USDT", "state": "confirmed", "data_age_s": 7.25,
             "threshold_s": 2.5, "stale": True},
        ],
        "last_error": "connection lost",
        "last_error_at": "2026-12-02T03:50:12.345Z",
        "last_event": "reconnected after 0.2 s",
        **extra,
    }  # fmt: skip


async def test_every_column_shows_the_pushed_values_and_ages_tick_between_pushes() -> None:
    poor = _conn(
        exchange_name="bybit",
        exchange="bybit",
        connection_id="bybit-spot-1",
        status="reconnecting",
        status_color="orange",
        quality_score=30.0,
        latency_ms=None,
        messages_per_s=0.0,
        reconnect_count=0,
        books={"total": 0, "live": 0},
        book_states=[],
        subscriptions=[],
        last_error=None,
        last_message_age_s=None,
    )
    events = [
        {"seq": 7, "type": "disconnected", "severity": "warning", "time": "2026-12-02T03:50:10.000Z",
         "connection_id": "okx-ws-1", "description": "socket closed", "error": "code 1006"},
        {"seq": 8, "type": "connected", "severity": "info", "time": "2026-12-02T03:50:11.500Z",
         "connection_id": "okx-ws-1", "description": "connected to ws://x", "error": None},
    ]  # fmt: skip
    data = _data(
        summary={
            "total": 2, "connected": 1, "reconnecting": 1, "error": 0, "connecting": 0, "disconnected": 0,
            "healthy": False, "books": {"total": 2, "live": 1},
            "unhealthy_reasons": ["gate: not running", "bybit-spot-1: reconnecting"],
        },
        connections=[_conn(), poor],
        host={"cpu_usage": 12.5, "memory_usage": "1.0GB / 8.0GB", "memory_usage_percent": 12.5,
              "disk_space": "40.0GB / 100.0GB", "disk_space_percent": 40.0},
        events=events,
        push_interval_s=5.0,
    )  # fmt: skip
    async with browser_page() as bp:
        page = bp.page
        await page.clock.set_fixed_time(T0)
        svc = ScriptedService(page, greeting=[push(data)])
        await svc.open()
        okx, bybit = row(page, "okx"), row(page, "bybit")
        await expect(okx).to_have_count(1)

        # header
        await expect(page.locator("#instance")).to_have_text("scripted")
        await expect(page.locator("#healthy")).to_have_attribute("data-healthy", "false")
        await expect(page.locator("#host-cpu")).to_have_text("12.5 %")
        await expect(page.locator("#host-memory")).to_have_text("1.0GB / 8.0GB (12.5 %)")
        await expect(page.locator("#host-disk")).to_have_text("40.0GB / 100.0GB (40.0 %)")
        await expect(page.locator('[data-count="reconnecting"]')).to_have_class("alarm")
        await expect(page.locator('[data-count="reconnecting"] b')).to_have_text("1")
        await expect(page.locator('[data-count="books"] b')).to_have_text("1/2")
        await expect(page.locator("#reasons li")).to_have_text(
            ["gate: not running", "bybit-spot-1: reconnecting"]
        )

        # the okx row, column by column
        await expect(okx.locator('[data-field="status"]')).to_have_text("connected")
        await expect(okx.locator('[data-field="connection"]')).to_have_text("okx-ws-1")
        await expect(okx.locator('[data-field="quality"]')).to_have_text("87.5")
        await expect(okx.locator('[data-field="quality"]')).to_have_class(re.compile(r"\bq-good\b"))
        await expect(okx.locator('[data-field="latency"]')).to_have_text("12.3 ms")
        await expect(okx.locator('[data-field="messages-per-s"]')).to_have_text("40.2")
        await expect(okx.locator('[data-field="reconnects"]')).to_have_text("3")
        await expect(okx.locator('[data-field="reconnects"]')).to_have_attribute("title", "2 succeeded")
        await expect(okx.locator('[data-field="books-live"]')).to_have_text("1/2 live")
        await expect(okx.locator("[data-book]")).to_have_count(1)  # only the book that is not live is named
        await expect(okx.locator('[data-book="ETH/USDT"]')).to_have_text("ETH/USDT resyncing")
        trades = okx.locator('[data-subscription="trades BTC/USDT"]')
        book = okx.locator('[data-subscription="book ETH/USDT"]')
        await expect(trades.locator('[data-field="data-age"]')).to_have_text("0.50 s")
        await expect(trades).to_have_attribute("data-stale", "false")
        await expect(book.locator('[data-field="data-age"]')).to_have_text("7.25 s")
        await expect(book).to_have_attribute("data-stale", "true")
        await expect(book).to_contain_text("stale")
        await expect(okx.locator('[data-field="message-age"]')).to_have_text("0.4 s")
        await expect(okx.locator('[data-field="last-error"]')).to_have_text("03:50:12 connection lost")
        await expect(okx.locator('[data-field="last-event"]')).to_have_text("reconnected after 0.2 s")

        # the bybit row: poor quality, no latency measured yet, no books, reconnecting
        await expect(bybit).to_have_attribute("data-status", "reconnecting")
        await expect(bybit.locator('[data-field="status"]')).to_have_class(re.compile(r"\bc-orange\b"))
        await expect(bybit.locator('[data-field="quality"]')).to_have_text("30.0")
        await expect(bybit.locator('[data-field="quality"]')).to_have_class(re.compile(r"\bq-poor\b"))
        await expect(bybit.locator('[data-field="latency"]')).to_have_text("—")
        await expect(bybit.locator('[data-field="messages-per-s"]')).to_have_text("0.0")
        await expect(bybit.locator('[data-field="books"]')).to_have_text("—")
        await expect(bybit.locator('[data-field="last-error"]')).to_have_count(0)

        # an enabled entry that does not run: its own card, sorted among the others
        await expect(page.locator("section[data-exchange]")).to_have_count(3)
        gate = page.locator('section[data-exchange="gate"]')
        await expect(gate).to_have_attribute("data-state", "not running")
        await expect(gate.locator('[data-field="status"]')).to_have_text("not running")
        names = await page.locator("section[data-exchange]").evaluate_all(
            "(cards) => cards.map((c) => c.dataset.exchange)"
        )
        assert names == ["bybit", "gate", "okx"]

        # events, newest first
        await expect(page.locator("#events li")).to_have_count(2)
        await expect(page.locator("#events li").first).to_have_attribute("data-seq", "8")
        await expect(page.locator("#events li").first).to_contain_text("03:50:11")
        await expect(page.locator('#events li[data-seq="7"]')).to_contain_text("socket closed (code 1006)")

        # two seconds later, without a push: the ages have grown by two seconds, the rest is unchanged
        await page.clock.set_fixed_time(T0 + 2)
        await expect(trades.locator('[data-field="data-age"]')).to_have_text("2.50 s")
        await expect(book.locator('[data-field="data-age"]')).to_have_text("9.25 s")
        await expect(okx.locator('[data-field="message-age"]')).to_have_text("2.4 s")
        await expect(page.locator("#last-update")).to_have_text("last update 2 s ago")
        await expect(okx.locator('[data-field="quality"]')).to_have_text("87.5")
        # a new push restarts them from its own figures
        svc.send(push(data))
        await expect(trades.locator('[data-field="data-age"]')).to_have_text("0.50 s")
        await expect(page.locator("#footer [data-counter=received]")).to_have_text(
            "2 status messages received"
        )
        bp.assert_clean()


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
    data["summary"]["unhealthy_reasons"] = ['<i id="injected2">r</i>', "<s>x</s>: not running"]
    cluster = {
        "redis": "<i>redis</i>",
        "prefix": "p",
        "instances": [{"instance_id": '<b id="injected3">i</b>', "state": "__proto__", "healthy": False}],
        "summary": {},
    }
    async with browser_page() as bp:
        page = bp.page
        svc = ScriptedService(
            page, greeting=["not json", json.dumps({"type": "other"}), push(data)], cluster=(200, cluster)
        )
        await svc.open("?token=a%20b&x=1")
        section = page.locator("section[data-exchange]").first
        await expect(section).to_have_attribute("data-exchange", hostile)
        await expect(section.locator("h2")).to_contain_text(hostile)
        await expect(page.locator("#events li")).to_contain_text(hostile)
        await expect(page.locator("#reasons")).to_contain_text('<i id="injected2">r</i>')
        await expect(page.locator('section[data-exchange="<s>x</s>"]')).to_contain_text("not running")
        await expect(section.locator('[data-field="last-error"]')).to_contain_text("<script>")
        await expect(section.locator('[data-subscription="<i>trades</i> X"]')).to_have_attribute(
            "data-stale", "true"
        )
        instance = page.locator("#cluster tr[data-instance]")
        await expect(instance).to_have_attribute("data-instance", '<b id="injected3">i</b>')
        await expect(instance.locator('[data-field="state"]')).to_have_class("badge c-gray")
        await expect(page.locator("#cluster-source")).to_contain_text("<i>redis</i>")
        # nothing of it became an element, and an unknown colour is not a class name: gray
        for selector in (
            "img", "#injected", "#injected2", "#injected3", "main script", "main i", "main u", "main em",
            "main s", "main b#injected3",
        ):  # fmt: skip
            await expect(page.locator(selector)).to_have_count(0)
        await expect(section.locator('[data-field="status"]')).to_have_class("badge c-gray")
        assert await page.evaluate("window.pwned") is None
        # the two unreadable messages are counted, not silently dropped
        await expect(page.locator("#footer")).to_contain_text("2 unreadable messages ignored")
        # the page's own ?token= is passed on to the socket (and nothing else of its query)
        assert list(svc.urls()) == ["ws://dashboard.test/ws/status?token=a%20b"]
        bp.assert_clean()


async def test_a_silent_socket_turns_the_page_stale_then_is_dropped_and_reopened() -> None:
    """A frozen or half-open peer sends nothing, not even a close: the page must stop claiming health after
    2 push periods and drop the socket after 3 (then reconnect with backoff)."""
    async with browser_page() as bp:
        page = bp.page
        await page.clock.set_fixed_time(T0)
        svc = ScriptedService(page, greeting=[push(_data(push_interval_s=5.0))])  # then silent, never closed
        await svc.open()
        first = await asyncio.wait_for(svc.opened.get(), 10.0)
        await expect(page.locator("#healthy")).to_have_attribute("data-healthy", "true")
        await expect(page.locator("#healthy")).to_have_text("healthy")
        await expect(page.locator("#link")).to_have_text("live")
        await expect(page.locator("body")).to_have_attribute("data-live", "true")

        # 10 s = 2 periods: still live; 11 s: stale
        await page.clock.set_fixed_time(T0 + 10)
        await expect(page.locator("#last-update")).to_have_text("last update 10 s ago")
        await expect(page.locator("body")).to_have_attribute("data-live", "true")
        await page.clock.set_fixed_time(T0 + 11)
        await expect(page.locator("#healthy")).to_have_attribute("data-healthy", "unknown")
        await expect(page.locator("#healthy")).to_have_text("stale")
        await expect(page.locator("#link")).to_have_attribute("data-link", "stale")
        await expect(page.locator("#link")).to_have_text("no data for 11 s (socket open)")
        await expect(page.locator("#last-update")).to_have_attribute("data-stale", "true")
        await expect(page.locator("body")).to_have_attribute("data-live", "false")
        assert svc.opened.empty()  # stale is not yet dead: the same socket

        # 16 s > 3 periods: dropped, and a new socket opens (the greeting makes the page live again)
        await page.clock.set_fixed_time(T0 + 16)
        second = await asyncio.wait_for(svc.opened.get(), 10.0)
        assert second is not first
        await expect(page.locator("#footer [data-counter=dropped]")).to_have_text("1 silent sockets dropped")
        await expect(page.locator("#healthy")).to_have_attribute("data-healthy", "true")
        await expect(page.locator("#link")).to_have_text("live")
        bp.assert_clean()


INSTANCES = {
    "redis": "redis://127.0.0.1:6379/0",
    "prefix": "cryptolink",
    "ttl_s": 15.0,
    "timestamp": "2026-12-02T03:50:13.000Z",
    "instances": [
        {
            "instance_id": "scripted",
            "state": "live",
            "last_seen": "2026-12-02T03:50:12.345Z",
            "age_s": 0.8,
            "healthy": True,
            "status": {
                "exchange_connections": {
                    "summary": {
                        "total": 3, "connected": 3, "reconnecting": 0, "error": 0,
                        "books": {"total": 2, "live": 2},
                    }
                }
            },
        },
        {
            "instance_id": "other-host-9",
            "state": "unknown",
            "last_seen": "2026-12-02T03:49:30.000Z",
            "age_s": 43.0,
            "healthy": False,
            "status": None,
        },
        {
            "instance_id": "old-host-2",
            "state": "stopped",
            "last_seen": "2026-12-02T03:40:00.000Z",
            "age_s": 613.0,
            "healthy": False,
            "status": None,
        },
    ],
    "summary": {"instances": 3, "live": 1, "unknown": 2, "healthy": 1, "omitted": 0},
}  # fmt: skip


async def test_cluster_section_lists_every_instance_hides_without_redis_and_shows_the_error() -> None:
    async with browser_page() as bp:
        page = bp.page
        svc = ScriptedService(page, greeting=[push(_data(push_interval_s=1.0))], cluster=(200, INSTANCES))
        await svc.open("?token=s3")
        cluster = page.locator("#cluster")
        await expect(cluster).to_be_visible()
        rows = cluster.locator("tr[data-instance]")
        await expect(rows).to_have_count(3)
        live = cluster.locator('tr[data-instance="scripted"]')
        await expect(live).to_have_attribute("data-state", "live")
        await expect(live).to_contain_text("(this page)")
        await expect(live.locator('[data-field="state"]')).to_have_class(re.compile(r"\bc-green\b"))
        await expect(live.locator('[data-field="healthy"]')).to_have_text("healthy")
        await expect(live.locator('[data-field="last-seen"]')).to_have_text("03:50:12")
        await expect(live.locator('[data-field="age"]')).to_have_text("0.8 s")
        await expect(live.locator('[data-field="connected"]')).to_have_text("3/3")
        await expect(live.locator('[data-field="trouble"]')).to_have_text("0 / 0")
        await expect(live.locator('[data-field="books"]')).to_have_text("2/2")
        unknown = cluster.locator('tr[data-instance="other-host-9"]')
        await expect(unknown).to_have_attribute("data-state", "unknown")
        await expect(unknown.locator('[data-field="healthy"]')).to_have_text("not healthy")
        await expect(unknown.locator('[data-field="age"]')).to_have_text("43.0 s")
        await expect(unknown.locator('[data-field="connected"]')).to_have_text("—")
        stopped = cluster.locator('tr[data-instance="old-host-2"]')
        await expect(stopped.locator('[data-field="state"]')).to_have_text("stopped")
        await expect(page.locator("#cluster-source")).to_contain_text("1 live, 2 unknown, 1 healthy")
        await expect(page.locator("#cluster-error")).to_be_hidden()
        assert svc.cluster_reads[0] == ("/api/cluster/status", "Bearer s3")

        # Redis not configured: the section goes away
        svc.cluster = (200, NO_REDIS)
        await expect(cluster).to_be_hidden()

        # Redis unreadable: 503 with the reason, shown, and counted
        svc.cluster = (503, {"redis": "redis://127.0.0.1:1/0", "prefix": "cryptolink", "instances": [],
                             "error": "ConnectionError: connection refused"})  # fmt: skip
        await expect(page.locator("#cluster-error")).to_have_text(
            "cannot read the instances: ConnectionError: connection refused"
        )
        await expect(page.locator("#cluster-error")).to_be_visible()
        await expect(cluster).to_be_visible()
        await expect(cluster).to_have_attribute("data-state", "error")
        await expect(page.locator("#footer [data-counter=cluster-failures]")).to_contain_text(
            "failed instance reads"
        )

        # readable again: the error goes, the instances come back
        svc.cluster = (200, INSTANCES)
        await expect(page.locator("#cluster-error")).to_be_hidden()
        await expect(rows).to_have_count(3)
        bp.assert_clean(r"status of 503")


async def test_scroll_position_and_text_selection_survive_a_push() -> None:
    data = _data(connections=[_conn()], push_interval_s=5.0)
    async with browser_page(width=700, height=600) as bp:
        page = bp.page
        svc = ScriptedService(page, greeting=[push(data)])
        await svc.open()
        card = page.locator('section[data-exchange="okx"]')
        await expect(card).to_have_count(1)
        scrolled = await card.evaluate("(c) => { c.scrollLeft = 300; return c.scrollLeft; }")
        assert scrolled > 100  # the table is wider than the card: it scrolls
        await page.evaluate(
            """() => {
              const text = document.querySelector('[data-field="connection"]').firstChild;
              const range = document.createRange();
              range.selectNodeContents(text);
              getSelection().removeAllRanges();
              getSelection().addRange(range);
            }"""
        )
        changed = _data(connections=[_conn(quality_score=55.5, messages_per_s=9.9)], push_interval_s=5.0)
        svc.send(push(changed))
        await expect(card.locator('[data-field="quality"]')).to_have_text("55.5")
        assert await card.evaluate("(c) => c.scrollLeft") == scrolled
        assert await page.evaluate("getSelection().toString()") == "okx-ws-1"
        bp.assert_clean()


async def test_a_push_that_cannot_be_shown_is_counted_and_not_shown_as_live() -> None:
    async with browser_page() as bp:
        page = bp.page
        await page.clock.set_fixed_time(T0)
        # a push whose "connections" cannot be read stands for any bug in the page's rendering
        await page.add_init_script(
            """(() => {
              const parse = JSON.parse;
              JSON.parse = (raw) => {
                const msg = parse(raw);
                if (msg && msg.data && msg.data.instance_id === "broken") {
                  Object.defineProperty(msg.data, "connections", {get() { throw new Error("boom"); }});
                }
                return msg;
              };
            })()"""
        )
        svc = ScriptedService(page, greeting=[push(_data(push_interval_s=5.0))])
        await svc.open()
        await expect(page.locator("body")).to_have_attribute("data-live", "true")
        await page.clock.set_fixed_time(T0 + 11)
        await expect(page.locator("body")).to_have_attribute("data-live", "false")

        svc.send(push(_data(push_interval_s=5.0, instance_id="broken")))
        failures = page.locator("#footer [data-counter=render-failures]")
        await expect(failures).to_have_text("1 render failures (last: boom)")
        await expect(page.locator("#instance")).to_have_text("scripted")  # what it showed stays
        await expect(page.locator("body")).to_have_attribute("data-live", "false")  # and is not called fresh
        await expect(page.locator("#healthy")).to_have_attribute("data-healthy", "unknown")

        svc.send(push(_data(push_interval_s=5.0, instance_id="fixed")))
        await expect(page.locator("#instance")).to_have_text("fixed")
        await expect(page.locator("body")).to_have_attribute("data-live", "true")
        bp.assert_clean(r"render failed")


async def test_under_a_sub_path_everything_is_relative_and_the_token_leaves_the_address_bar() -> None:
    async with browser_page() as bp:
        page = bp.page
        svc = ScriptedService(page, path="/proxy/cl/", greeting=[push(_data(push_interval_s=1.0))])
        await svc.open("?token=a%20b&x=1")
        await expect(page.locator("#instance")).to_have_text("scripted")
        assert list(svc.urls()) == ["ws://dashboard.test/proxy/cl/ws/status?token=a%20b"]
        assert page.url == ORIGIN + "/proxy/cl/?x=1"
        await asyncio.wait_for(svc.cluster_read.wait(), 10.0)
        assert svc.cluster_reads[0] == ("/proxy/cl/api/cluster/status", "Bearer a b")
        # a reload of the cleaned address still passes the token on
        await page.reload()
        await expect(page.locator("#instance")).to_have_text("scripted")
        assert list(svc.urls())[-1] == "ws://dashboard.test/proxy/cl/ws/status?token=a%20b"
        bp.assert_clean()
