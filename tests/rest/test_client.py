"""RestClient against a loopback HTTP server, in fake time: the budget paces requests (slot first, then grant),
backfills keep to their share of the budget and of the slots, every answer is fed back (header corrections,
429/418/ban statuses pause or ban every client sharing the budget), configuration errors are refused before
sending, and without a budget a 429/418 still pauses the client; errors are typed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping

import aiohttp
import pytest
from aiohttp import web

from cryptolink.clock import FakeClock
from cryptolink.exchanges.base import RestRequest
from cryptolink.rest import RestClient, RestError
from cryptolink.rest.budget import RateBudgets
from tests.engine.fakes import settle
from tests.http_server import serve_app
from tests.rest.test_budget import StubRules, stub_budgets

pytestmark = pytest.mark.timeout(30)


class Server:
    """``/w`` and ``/ok`` answer 200 (``/w?used=N`` with header ``X-Used: N``); ``/limited`` answers the next
    status of ``plan`` (429/418 with ``Retry-After: 7``), then 200. ``hits`` lists ``(path, status)``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.hits: list[tuple[str, int]] = []
        self.plan: list[int] = []


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    box: list[Server] = []

    async def weighted(request: web.Request) -> web.Response:
        box[0].hits.append((request.path, 200))
        used = request.query.get("used")
        return web.Response(text="fine", headers={"X-Used": used} if used else {})

    async def limited(request: web.Request) -> web.Response:
        srv = box[0]
        status = srv.plan.pop(0) if srv.plan else 200
        srv.hits.append((request.path, status))
        headers = {"Retry-After": "7"} if status in (418, 429) else {}
        return web.Response(text="x", status=status, headers=headers)

    app = web.Application()
    for path in ("/w", "/ok", "/api/w"):
        app.router.add_get(path, weighted)
    app.router.add_get("/limited", limited)
    async with serve_app(app) as url:
        box.append(Server(url))
        yield box[0]


def w(weight: int, **params: str) -> RestRequest:
    """``GET /w?w=<weight>``: the stub rules charge ``weight`` in the main pool."""
    return RestRequest("/w", {"w": str(weight), **params}, weight=weight)


async def test_the_budget_paces_requests_in_its_window(server: Server) -> None:
    clock = FakeClock()
    budget = stub_budgets(clock, window_margin_s=0.25).get("stub")
    async with aiohttp.ClientSession() as http:
        rest = RestClient("x", server.url, http, clock, budget)
        first = [asyncio.create_task(rest.get(w(40))) for _ in range(2)]
        await asyncio.wait_for(asyncio.gather(*first), 5)
        third = asyncio.create_task(rest.get(w(40)))
        await settle()
        s = rest.stats()
        assert not third.done() and (s.waiting, s.in_window, s.budget, s.window_s) == (1, 80, 100, 10.25)
        assert (s.mode, s.pool) == ("local", "stub:default:weight")
        await clock.advance(10.1)  # the documented window, not yet the margin
        assert not third.done()
        await clock.advance(0.2)
        assert await asyncio.wait_for(third, 5) == b"fine"
        s = rest.stats()
        assert len(server.hits) == 3 and (s.requests, s.weight, s.errors, s.waiting) == (3, 120, 0, 0)


async def test_a_request_takes_its_slot_before_its_grant(server: Server) -> None:
    """Only requests holding a slot wait in the budget's line (so they are sent as soon as granted); the others
    wait for a slot."""
    clock = FakeClock()
    budget = stub_budgets(clock).get("stub")
    async with aiohttp.ClientSession() as http:
        rest = RestClient("x", server.url, http, clock, budget, max_concurrent=2)
        await rest.get(w(100))
        waiting = [asyncio.create_task(rest.get(w(30))) for _ in range(3)]
        await settle()
        assert rest.stats().waiting == 3 and budget.stats().limiter.waiting == 2
        await clock.advance(10.5)
        await asyncio.wait_for(asyncio.gather(*waiting), 5)
        assert len(server.hits) == 4 and budget.in_window() == 90


async def test_backfills_keep_to_their_share_of_budget_and_slots_so_snapshots_go_at_once(
    server: Server,
) -> None:
    clock = FakeClock()
    budget = stub_budgets(clock, background_share=0.5).get("stub")
    async with aiohttp.ClientSession() as http:
        rest = RestClient("x", server.url, http, clock, budget, max_concurrent=4)
        await rest.get(w(50), background=True)  # fills the background pool (50 of 100)
        backfills = [asyncio.create_task(rest.get(w(10), background=True)) for _ in range(3)]
        await settle()
        # two hold their (half of the) slots waiting for the background pool; the third waits for a slot
        assert rest.stats().waiting == 3 and budget.stats().limiter.waiting == 2
        snapshot = rest.get(w(50))
        assert await asyncio.wait_for(snapshot, 5) == b"fine"
        assert budget.in_window() == 100 and not any(t.done() for t in backfills)
        await clock.advance(10.5)
        await asyncio.wait_for(asyncio.gather(*backfills), 5)
        s = rest.stats()
        assert (s.requests, s.background, s.weight) == (5, 4, 130)


async def test_answers_are_fed_back_and_a_429_pauses_every_client_sharing_the_budget(server: Server) -> None:
    clock = FakeClock()
    budget = stub_budgets(clock).get("stub")
    async with aiohttp.ClientSession() as http:
        one = RestClient("one", server.url, http, clock, budget)
        two = RestClient("two", server.url, http, clock, budget)
        await one.get(w(5, used="40"))  # the exchange counts 40: other users of the IP
        assert budget.in_window() == 40 and two.stats().in_window == 40
        server.plan.append(429)
        with pytest.raises(RestError) as info:
            await one.get(RestRequest("/limited", {}))
        assert info.value.status == 429 and info.value.retry_after_s == 7.0
        other = asyncio.create_task(two.get(RestRequest("/ok", {})))
        await settle()
        assert not other.done() and two.stats().paused_for_s == pytest.approx(7.0)
        await clock.advance(7.5)
        assert await asyncio.wait_for(other, 5) == b"fine"
        assert (one.stats().rate_limited, one.stats().errors, two.stats().rate_limited) == (1, 1, 0)
        b = budget.stats()
        assert (b.answers_429, b.pauses, b.header_corrections) == (1, 1, 35)


async def test_a_418_bans_and_a_ban_status_of_the_rules_is_rate_limiting(server: Server) -> None:
    clock = FakeClock()
    budget = stub_budgets(clock).get("stub")
    async with aiohttp.ClientSession() as http:
        rest = RestClient("x", server.url, http, clock, budget)
        server.plan.extend([418, 403, 404])
        with pytest.raises(RestError) as info:
            await rest.get(RestRequest("/limited", {}))
        assert info.value.status == 418 and info.value.retry_after_s == 7.0
        later = asyncio.create_task(rest.get(RestRequest("/limited", {})))
        await settle()
        assert not later.done()
        await clock.advance(7.5)
        with pytest.raises(RestError) as info:
            await asyncio.wait_for(later, 5)  # the 403 of the rules: banned 600 s
        assert info.value.status == 403 and info.value.retry_after_s == 600.0
        await clock.advance(600.5)
        with pytest.raises(RestError, match="HTTP 404 from") as info:
            await rest.get(RestRequest("/limited", {}))
        assert info.value.retry_after_s is None
        s, b = rest.stats(), budget.stats()
        assert (s.requests, s.errors, s.rate_limited) == (3, 3, 2)
        assert (b.answers_418, b.answers_ban_other, b.bans) == (1, 1, 2)


async def test_a_request_that_can_never_be_granted_is_refused_before_sending(server: Server) -> None:
    clock = FakeClock()
    budget = stub_budgets(clock).get("stub")
    async with aiohttp.ClientSession() as http:
        rest = RestClient("x", server.url, http, clock, budget)
        with pytest.raises(
            RestError, match=r"GET .*/w: refused before sending: .*can never be granted"
        ) as info:
            await rest.get(w(101))
        assert info.value.status is None
        s = rest.stats()
        assert not server.hits and (s.requests, s.refused, s.errors, s.waiting) == (0, 1, 1, 0)


async def test_the_rules_see_the_full_path_under_the_base_url(server: Server) -> None:
    seen: list[tuple[str, str, dict[str, str]]] = []

    class Recording(StubRules):
        def costs(self, method: str, path: str, params: Mapping[str, str]) -> dict[str, int]:
            seen.append((method, path, dict(params)))
            return super().costs(method, path, params)

    clock = FakeClock()
    budget = RateBudgets(clock, rules=lambda exchange: Recording(exchange)).get("stub")
    async with aiohttp.ClientSession() as http:
        rest = RestClient("x", server.url + "/api/", http, clock, budget)
        assert await rest.get(RestRequest("/w", {"w": "3"})) == b"fine"
    assert seen == [("GET", "/api/w", {"w": "3"})] and server.hits == [("/api/w", 200)]


async def test_without_a_budget_a_429_still_pauses_every_request_of_the_client(server: Server) -> None:
    server.plan.append(429)
    clock = FakeClock()
    async with aiohttp.ClientSession() as http:
        rest = RestClient("x", server.url, http, clock, None)
        with pytest.raises(RestError) as info:
            await rest.get(RestRequest("/limited", {}))
        assert info.value.status == 429 and info.value.retry_after_s == 7.0
        other = asyncio.create_task(rest.get(RestRequest("/ok", {}, weight=3)))
        await settle()
        assert not other.done() and rest.stats().paused_for_s == pytest.approx(7.0)
        await clock.advance(7.5)
        assert await asyncio.wait_for(other, 5) == b"fine"
        s = rest.stats()
        assert (s.rate_limited, s.errors, s.weight, s.budget, s.window_s, s.mode) == (
            1,
            1,
            4,
            None,
            None,
            None,
        )


async def test_errors_are_typed_and_readable() -> None:
    async with aiohttp.ClientSession() as http:
        rest = RestClient("x", "http://127.0.0.1:9", http, FakeClock(), None)
        with pytest.raises(RestError) as info:
            await rest.get(RestRequest("/ok", {}))
        assert info.value.status is None and "GET http://127.0.0.1:9/ok" in str(info.value)
    offline = RestClient("x", "http://127.0.0.1:9", None, FakeClock(), None)
    with pytest.raises(RestError, match="no HTTP session"):
        await offline.get(RestRequest("/ok", {}))
    with pytest.raises(ValueError):
        RestClient("x", "http://127.0.0.1:9", None, FakeClock(), None, max_concurrent=0)
