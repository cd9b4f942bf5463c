"""RestClient: one weight budget per host (in fake time), Retry-After pauses every request of the host, typed
errors; against a loopback HTTP server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from cryptolink.clock import FakeClock
from cryptolink.exchanges.base import RestRateLimit, RestRequest
from cryptolink.rest import RestClient, RestError
from tests.engine.fakes import settle
from tests.http_server import serve_app

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, list[int], list[int]]]:
    """``/ok`` answers 200; ``/limited`` answers the next status of ``plan`` (429 with Retry-After 7)."""
    hits: list[int] = []
    plan: list[int] = []

    async def ok(request: web.Request) -> web.Response:
        hits.append(200)
        return web.Response(text="fine")

    async def limited(request: web.Request) -> web.Response:
        status = plan.pop(0) if plan else 200
        hits.append(status)
        headers = {"Retry-After": "7"} if status in (418, 429) else {}
        return web.Response(text="x", status=status, headers=headers)

    app = web.Application()
    app.router.add_get("/ok", ok)
    app.router.add_get("/limited", limited)
    async with serve_app(app) as url:
        yield url, hits, plan


async def test_weight_budget_paces_requests_in_its_window(server: tuple[str, list[int], list[int]]) -> None:
    url, hits, _ = server
    clock = FakeClock()
    async with aiohttp.ClientSession() as http:
        rest = RestClient("x", url, http, clock, RestRateLimit(weight=100, window_s=60.0), share=0.5)
        assert rest.budget == 50
        first = [asyncio.create_task(rest.get(RestRequest("/ok", {}, weight=20))) for _ in range(2)]
        await asyncio.wait_for(asyncio.gather(*first), 5)
        third = asyncio.create_task(rest.get(RestRequest("/ok", {}, weight=20)))
        await settle()
        assert not third.done() and rest.stats().waiting == 1 and rest.stats().in_window == 40
        await clock.advance(59.0)
        assert not third.done()
        await clock.advance(1.5)  # the first two left the window
        assert await asyncio.wait_for(third, 5) == b"fine"
        assert hits == [200, 200, 200] and rest.stats().weight == 60


async def test_background_requests_leave_room_for_snapshots(server: tuple[str, list[int], list[int]]) -> None:
    """Backfills (background) fill at most half the budget: a snapshot asked after them goes at once."""
    url, hits, _ = server
    clock = FakeClock()
    async with aiohttp.ClientSession() as http:
        rest = RestClient("x", url, http, clock, RestRateLimit(weight=200, window_s=60.0), share=0.5)
        assert (rest.budget, rest.background_budget) == (100, 50)
        backfill = [
            asyncio.create_task(rest.get(RestRequest("/ok", {}, weight=25), background=True))
            for _ in range(3)
        ]
        await asyncio.wait_for(asyncio.gather(*backfill[:2]), 5)  # granted in order, the third waits
        await settle()
        assert not backfill[2].done() and rest.stats().waiting == 1
        snapshot = rest.get(RestRequest("/ok", {}, weight=50))
        assert await asyncio.wait_for(snapshot, 5) == b"fine"
        assert rest.stats().in_window == 100 and not backfill[2].done()
        await clock.advance(60.5)
        await asyncio.wait_for(backfill[2], 5)
        assert len(hits) == 4


async def test_429_pauses_every_request_of_the_host_for_retry_after(
    server: tuple[str, list[int], list[int]],
) -> None:
    url, _hits, plan = server
    plan.append(429)
    clock = FakeClock()
    async with aiohttp.ClientSession() as http:
        rest = RestClient("x", url, http, clock, None)
        with pytest.raises(RestError) as info:
            await rest.get(RestRequest("/limited", {}))
        assert info.value.status == 429 and info.value.retry_after_s == 7.0
        other = asyncio.create_task(rest.get(RestRequest("/ok", {})))
        await settle()
        assert not other.done() and rest.stats().paused_for_s == pytest.approx(7.0)
        await clock.advance(7.5)
        assert await asyncio.wait_for(other, 5) == b"fine"
        assert rest.stats().rate_limited == 1 and rest.stats().errors == 1


async def test_an_exchanges_ban_status_pauses_the_host_for_its_ban_time(
    server: tuple[str, list[int], list[int]],
) -> None:
    """Bybit answers an IP over its limit with HTTP 403 and no Retry-After, and bans it for 10 minutes: declared
    in the adapter's limit, it pauses every request of the host for ``ban_pause_s``; a 403 of an exchange that
    does not declare it is a plain error."""
    url, hits, plan = server
    plan.extend([403, 403])
    clock = FakeClock()
    async with aiohttp.ClientSession() as http:
        plain = RestClient("plain", url, http, clock, RestRateLimit(100, 1.0))
        with pytest.raises(RestError) as info:
            await plain.get(RestRequest("/limited", {}))
        assert (
            info.value.status == 403 and plain.stats().paused_for_s == 0 and plain.stats().rate_limited == 0
        )
        limit = RestRateLimit(100, 1.0, ban_statuses=(403,), ban_pause_s=600.0)
        rest = RestClient("bybit", url, http, clock, limit)
        with pytest.raises(RestError) as info:
            await rest.get(RestRequest("/limited", {}))
        assert info.value.retry_after_s == 600.0 and rest.stats().rate_limited == 1
        other = asyncio.create_task(rest.get(RestRequest("/ok", {})))
        await settle()
        assert not other.done() and rest.stats().paused_for_s == pytest.approx(600.0)
        await clock.advance(600.5)
        assert await asyncio.wait_for(other, 5) == b"fine" and hits == [403, 403, 200]


async def test_errors_are_typed_and_readable() -> None:
    async with aiohttp.ClientSession() as http:
        rest = RestClient("x", "http://127.0.0.1:9", http, FakeClock(), None)
        with pytest.raises(RestError) as info:
            await rest.get(RestRequest("/ok", {}))
        assert info.value.status is None and "GET http://127.0.0.1:9/ok" in str(info.value)
    offline = RestClient("x", "http://127.0.0.1:9", None, FakeClock(), None)
    with pytest.raises(RestError, match="no HTTP session"):
        await offline.get(RestRequest("/ok", {}))
