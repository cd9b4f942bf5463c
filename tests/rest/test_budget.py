"""RateBudget / RateBudgets: pools built from the rules (share, margin, overrides, background pools), costs mapped
to pool names, waits in fake time, answers fed back (corrections, pauses, bans, counters, one warning), the margin
keeping fixed server windows under the limit, and two budgets sharing the real Redis server."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping

import pytest

from cryptolink.clock import FakeClock
from cryptolink.ratelimit import Grant, SharedLimiter
from cryptolink.rest.budget import RateBudgets
from cryptolink.rest.costs import Feedback, PoolSpec, rules_for
from tests.engine.fakes import settle
from tests.redis_keys import REDIS_URL, redis_prefix

DOC = "https://example.invalid/limits"


class StubRules:
    """Rules of a made-up exchange (the :class:`~cryptolink.rest.budget.RateRulesLike` side of ``RateRules``): a
    main ``weight`` pool (``weight`` per ``window_s``; ``GET /w?w=N`` costs N, ``/ok`` and anything else 1) and an
    ``orders`` pool (10 per 1 s; ``GET /orders`` costs 1 there only). Feedback: header ``X-Used`` is the
    exchange's weight count; 429 pauses (Retry-After or 30 s), 418 bans (Retry-After or 120 s), 403 bans 600 s;
    ``silent`` rules name no duration at all."""

    def __init__(
        self, exchange: str = "stub", weight: int = 100, window_s: float = 10.0, *, silent: bool = False
    ) -> None:
        self.exchange = exchange
        self.pools = (PoolSpec("weight", weight, window_s, DOC), PoolSpec("orders", 10, 1.0, DOC))
        self.silent = silent

    def costs(self, method: str, path: str, params: Mapping[str, str]) -> dict[str, int]:
        if path == "/orders":
            return {"orders": 1}
        if path == "/w":
            return {"weight": int(params.get("w", "1"))}
        return {"weight": 1}

    def feedback(self, status: int, headers: Mapping[str, str], *, path: str = "") -> Feedback:
        lowered = {k.lower(): v for k, v in headers.items()}
        used = {"weight": int(lowered["x-used"])} if "x-used" in lowered else {}
        retry = float(lowered["retry-after"]) if "retry-after" in lowered else None
        if self.silent:
            return Feedback(used, None, None)
        if status == 429:
            return Feedback(used, retry if retry is not None else 30.0, None)
        if status == 418:
            return Feedback(used, None, retry if retry is not None else 120.0)
        if status == 403:  # a Bybit-like "access too frequent" ban status without Retry-After
            return Feedback(used, None, 600.0)
        return Feedback(used, None, None)


def stub_budgets(clock: FakeClock, **kw: object) -> RateBudgets:
    """Process-local budgets over :func:`stub_rules` (``stub``; ``other`` has no rules)."""
    table = {"stub": StubRules()}

    def lookup(exchange: str) -> StubRules:
        if exchange not in table:
            raise KeyError(f"no rate rules for exchange {exchange!r}; known: stub")
        return table[exchange]

    return RateBudgets(clock, rules=lookup, **kw)  # type: ignore[arg-type]


def test_pools_apply_share_margin_and_overrides_and_pair_each_with_a_background_pool() -> None:
    clock = FakeClock()
    budgets = stub_budgets(
        clock, share=0.5, window_margin_s=0.25, background_share=0.3, overrides={"stub": {"orders": (7, 2.0)}}
    )
    budget = budgets.get("stub", "ip1")
    assert budgets.get("stub", "ip1") is budget  # one per (exchange, scope)
    assert budget.pool_names == {"weight": "stub:ip1:weight", "orders": "stub:ip1:orders"}
    pools = budget.limiter.pools
    got = {name: (p.limit, p.window_s, p.scope) for name, p in pools.items()}
    assert got == {
        "stub:ip1:weight": (50, 10.25, "stub:ip1"),
        "stub:ip1:weight:background": (15, 10.25, "stub:ip1"),
        "stub:ip1:orders": (3, 2.25, "stub:ip1"),  # the override (7 per 2 s) replaced 10 per 1 s, then share
        "stub:ip1:orders:background": (1, 2.25, "stub:ip1"),  # floor(3 * 0.3) = 0 -> at least 1
    }
    assert (budget.main_pool, budget.main_limit, budget.main_window_s) == ("stub:ip1:weight", 50, 10.25)
    assert budgets.get("stub") is not budget and budgets.get("stub").main_pool == "stub:default:weight"


def test_costs_map_pool_keys_to_names_and_background_adds_the_background_pools() -> None:
    budget = stub_budgets(FakeClock()).get("stub")
    assert budget.costs("GET", "/orders", {}) == {"stub:default:orders": 1}
    assert budget.costs("GET", "/w", {"w": "7"}, background=True) == {
        "stub:default:weight": 7,
        "stub:default:weight:background": 7,
    }
    assert budget.costs("GET", "/unknown", {}) == {"stub:default:weight": 1}  # the rules' default


def test_the_real_binance_rules_price_a_depth_snapshot() -> None:
    budget = RateBudgets(FakeClock()).get("binance")
    assert rules_for("binance") is budget.rules
    assert budget.costs("GET", "/api/v3/depth", {"symbol": "BTCUSDT", "limit": "1000"}) == {
        "binance:default:weight": 50,
        "binance:default:raw": 1,
    }
    assert (budget.main_pool, budget.main_limit, budget.main_window_s) == (
        "binance:default:weight",
        6000,
        60.25,
    )


def test_bad_configuration_is_refused_with_a_clear_error() -> None:
    clock = FakeClock()
    with pytest.raises(KeyError, match="no rate rules for exchange 'other'"):
        stub_budgets(clock).get("other")
    with pytest.raises(ValueError, match="stub has no pool 'nope'; pools: orders, weight"):
        stub_budgets(clock, overrides={"stub": {"nope": (1, 1.0)}})
    with pytest.raises(ValueError, match="overrides: no rate rules for exchange 'other'"):
        stub_budgets(clock, overrides={"other": {"weight": (1, 1.0)}})
    with pytest.raises(ValueError, match="need limit >= 1"):
        stub_budgets(clock, overrides={"stub": {"weight": (0, 1.0)}})
    for kw in ({"share": 0.0}, {"background_share": 1.5}, {"fallback_share": 0.0}, {"window_margin_s": -1.0}):
        with pytest.raises(ValueError):
            stub_budgets(clock, **kw)


async def test_a_request_above_a_pools_limit_is_a_configuration_error_raised_at_once() -> None:
    budget = stub_budgets(FakeClock(), background_share=0.5).get("stub")
    with pytest.raises(ValueError, match=r"stub \(default\): GET /w costs .* can never be granted"):
        await budget.acquire("GET", "/w", {"w": "101"})
    with pytest.raises(ValueError, match="exceeds the limit 50 of pool 'stub:default:weight:background'"):
        await budget.acquire("GET", "/w", {"w": "60"}, background=True)
    assert budget.stats().limiter.grants == 0


async def test_requests_wait_for_room_for_the_window_plus_the_margin() -> None:
    clock = FakeClock()
    budget = stub_budgets(clock, window_margin_s=0.5).get("stub")
    first = await budget.acquire("GET", "/w", {"w": "80"})
    assert first.weights == {"stub:default:weight": 80}
    second = asyncio.create_task(budget.acquire("GET", "/w", {"w": "30"}))
    await settle()
    await clock.advance(10.2)  # past the documented 10 s window, but not past the margin
    assert not second.done()
    await clock.advance(0.4)
    await asyncio.wait_for(second, 5)
    assert budget.in_window() == 30


async def test_background_requests_fill_at_most_their_share_and_snapshots_keep_the_rest() -> None:
    """Background requests take weight from the background pool too: they stop at ``floor(L * share)`` while a
    foreground request still finds the rest of the main pool."""
    clock = FakeClock()
    budget = stub_budgets(clock, background_share=0.4).get("stub")
    for _ in range(4):
        await budget.acquire("GET", "/w", {"w": "10"}, background=True, priority=10)
    waiting = asyncio.create_task(budget.acquire("GET", "/w", {"w": "10"}, background=True, priority=10))
    await settle()
    assert not waiting.done() and budget.in_window() == 40
    snapshot = await asyncio.wait_for(budget.acquire("GET", "/w", {"w": "60"}), 5)
    assert snapshot.weights == {"stub:default:weight": 60}
    assert budget.in_window() == 100 and not waiting.done()
    await clock.advance(10.5)
    await asyncio.wait_for(waiting, 5)


async def test_a_snapshot_arriving_later_is_granted_before_waiting_backfills() -> None:
    clock = FakeClock()
    budget = stub_budgets(clock, background_share=1.0).get("stub")
    await budget.acquire("GET", "/w", {"w": "100"})
    order: list[str] = []

    async def take(label: str, background: bool) -> None:
        await budget.acquire(
            "GET", "/w", {"w": "50"}, background=background, priority=10 if background else 0
        )
        order.append(label)

    tasks = [asyncio.create_task(take(f"backfill{i}", True)) for i in range(2)]
    await settle()
    tasks.append(asyncio.create_task(take("snapshot", False)))
    await settle()
    await clock.advance(10.3)
    await settle()
    assert order == ["snapshot", "backfill0"]
    await clock.advance(10.3)
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert order == ["snapshot", "backfill0", "backfill1"]


async def test_feed_corrects_the_count_from_the_exchanges_header() -> None:
    clock = FakeClock()
    budget = stub_budgets(clock).get("stub")
    grant = await budget.acquire("GET", "/w", {"w": "10"})
    assert await budget.feed(grant, 200, {"X-Used": "35"}, path="/w") is None
    assert budget.in_window() == 35 and budget.stats().header_corrections == 25
    assert await budget.feed(grant, 200, {"X-Used": "20"}, path="/w") is None  # never lowered
    assert budget.in_window() == 35 and budget.stats().header_corrections == 25
    blocked = asyncio.create_task(budget.acquire("GET", "/w", {"w": "70"}))
    await settle()
    assert not blocked.done()  # 35 + 70 > 100: the correction takes room
    await clock.advance(10.5)
    await asyncio.wait_for(blocked, 5)


async def test_with_a_share_the_header_counts_only_what_exceeds_the_room_left_to_others() -> None:
    """At ``share`` 0.5 of a 100-weight limit, 50 belong to other users of the IP: an exchange count of 70
    (the whole IP) means 20 of ours, not 70."""
    clock = FakeClock()
    budget = stub_budgets(clock, share=0.5).get("stub")
    grant = await budget.acquire("GET", "/w", {"w": "10"})
    await budget.feed(grant, 200, {"X-Used": "40"}, path="/w")  # within the others' 50: nothing to add
    assert budget.in_window() == 10 and budget.stats().header_corrections == 0
    await budget.feed(grant, 200, {"X-Used": "70"}, path="/w")
    assert budget.in_window() == 20 and budget.stats().header_corrections == 10


async def test_a_429_pauses_the_pools_the_request_touched_and_a_418_bans_the_scope(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    budget = stub_budgets(clock).get("stub")
    grant = await budget.acquire("GET", "/orders", {})
    with caplog.at_level(logging.WARNING, logger="cryptolink.rest.budget"):
        assert await budget.feed(grant, 429, {"Retry-After": "5"}, path="/orders") == 5.0
        assert (
            await budget.feed(grant, 429, {"Retry-After": "5"}, path="/orders") == 5.0
        )  # in force: no new log
    warnings = [r.getMessage() for r in caplog.records]
    assert (
        len(warnings) == 1
        and "stub scope default: HTTP 429 on /orders" in warnings[0]
        and "5 s" in warnings[0]
    )
    assert budget.paused_for_s() == pytest.approx(5.0)
    await asyncio.wait_for(budget.acquire("GET", "/ok", {}), 5)  # "weight" was not touched: not paused
    paused = asyncio.create_task(budget.acquire("GET", "/orders", {}))
    await settle()
    assert not paused.done()
    await clock.advance(5.1)
    await asyncio.wait_for(paused, 5)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="cryptolink.rest.budget"):
        assert await budget.feed(grant, 418, {}, path="/orders") == 120.0  # the rules' default ban
    assert len(caplog.records) == 1 and "HTTP 418" in caplog.records[0].getMessage()
    banned = [asyncio.create_task(budget.acquire("GET", p, {})) for p in ("/ok", "/orders")]
    await settle()
    assert not any(t.done() for t in banned)
    await clock.advance(119.0)
    assert not any(t.done() for t in banned)
    await clock.advance(1.5)
    await asyncio.wait_for(asyncio.gather(*banned), 5)
    s = budget.stats()
    assert (s.answers_429, s.answers_418, s.answers_ban_other, s.pauses, s.bans) == (2, 1, 0, 2, 1)
    assert (
        s.limiter.pauses,
        s.limiter.bans,
        s.limiter.refused_paused >= 1,
        s.limiter.refused_banned >= 1,
    ) == (
        2,
        1,
        True,
        True,
    )


async def test_another_ban_status_of_the_rules_bans_and_is_counted_apart() -> None:
    clock = FakeClock()
    budget = stub_budgets(clock).get("stub")
    grant = await budget.acquire("GET", "/ok", {})
    assert await budget.feed(grant, 403, {}, path="/ok") == 600.0
    assert await budget.feed(grant, 404, {}, path="/ok") is None  # a plain error: nothing
    s = budget.stats()
    assert (s.answers_429, s.answers_418, s.answers_ban_other, s.bans, s.pauses) == (0, 0, 1, 1, 0)
    assert s.paused_for_s == pytest.approx(600.0)


async def test_a_429_the_rules_do_not_price_still_pauses_for_the_default() -> None:
    clock = FakeClock()
    budget = RateBudgets(clock, rules=lambda exchange: StubRules("quiet", silent=True)).get("quiet")
    grant = await budget.acquire("GET", "/x", {})
    assert await budget.feed(grant, 429, {}) == 60.0
    assert await budget.feed(grant, 418, {}) == 120.0


@pytest.mark.parametrize(("margin_s", "exceeds"), [(0.3, False), (0.0, True)])
async def test_margin_at_least_the_jitter_keeps_every_fixed_server_window_within_the_limit(
    margin_s: float, exceeds: bool
) -> None:
    """Grants arrive at the exchange up to ``jitter`` (0.3 s) later; the exchange counts fixed 1 s windows on its
    own clock (any alignment). With ``margin >= jitter`` no server window ever holds more than the limit; without
    a margin the same arrivals overflow some window (the check can fail)."""
    clock = FakeClock()
    budgets = stub_budgets(clock, window_margin_s=margin_s, overrides={"stub": {"weight": (20, 1.0)}})
    budget = budgets.get("stub")
    rng = random.Random(5)
    grants: list[Grant] = []

    async def worker() -> None:
        while True:
            grants.append(await budget.acquire("GET", "/w", {"w": str(rng.randint(1, 4))}))

    workers = [asyncio.create_task(worker()) for _ in range(3)]
    try:
        for _ in range(600):  # 30 s of fake time
            await clock.advance(0.05)
    finally:
        for w in workers:
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    assert len(grants) > 100
    jitter_us = 300_000
    arrivals = sorted(
        (g.at_us + (jitter_us if i % 2 else rng.randint(0, jitter_us)), g.weights["stub:default:weight"])
        for i, g in enumerate(grants)
    )
    worst = 0
    for offset_us in range(0, 1_000_000, 10_000):  # every window alignment, 10 ms apart
        per_window: dict[int, int] = {}
        for at_us, weight in arrivals:
            index = (at_us - offset_us) // 1_000_000
            per_window[index] = per_window.get(index, 0) + weight
        worst = max(worst, *per_window.values())
    assert (worst > 20) is exceeds, worst


@pytest.mark.timeout(30)
@pytest.mark.integration
async def test_two_budgets_sharing_redis_see_each_others_429_pause_and_418_ban() -> None:
    """Two processes' registries (one Redis client each): a 429 fed in one pauses the other's pool, a 418 bans the
    other's whole scope; a budget on another IP scope is untouched."""
    clock = FakeClock()
    async with redis_prefix() as prefix:
        one = stub_budgets(clock, redis_url=REDIS_URL, prefix=prefix)
        two = stub_budgets(clock, redis_url=REDIS_URL, prefix=prefix)
        try:
            a, b, other_ip = one.get("stub"), two.get("stub"), two.get("stub", "ip2")
            assert isinstance(b.limiter, SharedLimiter) and b.limiter.pools == a.limiter.pools
            grant = await a.acquire("GET", "/orders", {})
            assert grant.source == "redis"
            await b.acquire("GET", "/orders", {}, timeout_s=0)  # room before the pause
            assert await a.feed(grant, 429, {"Retry-After": "30"}, path="/orders") == 30.0
            with pytest.raises(TimeoutError):  # one try (fake time), refused: paused in Redis by the other
                await b.acquire("GET", "/orders", {}, timeout_s=0)
            assert b.stats().limiter.refused_paused == 1 and b.stats().pauses == 0
            b_grant = await b.acquire("GET", "/ok", {}, timeout_s=0)  # "weight" was not touched: not paused
            await other_ip.acquire("GET", "/orders", {}, timeout_s=0)  # another IP: not paused
            # a 418 fed in registry two bans the whole scope for registry one too; the other IP stays free
            assert await b.feed(b_grant, 418, {"Retry-After": "30"}, path="/ok") == 30.0
            for path in ("/ok", "/orders"):
                with pytest.raises(TimeoutError):
                    await a.acquire("GET", path, {}, timeout_s=0)
            assert a.stats().limiter.refused_banned >= 1
            await other_ip.acquire("GET", "/ok", {}, timeout_s=0)
            stats = (*one.stats(), *two.stats())
            assert all(s.limiter.mode == "redis" and s.limiter.redis_errors == 0 for s in stats)
        finally:
            await one.aclose()
            await two.aclose()
