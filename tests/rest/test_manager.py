"""RestManager against the simulator: pooled ccxt members, groups, failover, health, budgets fed by answers."""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import AsyncIterator
from typing import Any

import ccxt
import pytest

from cryptolink.clock import FakeClock, SystemClock
from cryptolink.config import RestConfig
from cryptolink.errors import ConfigError
from cryptolink.rest.budget import RateBudgets
from cryptolink.rest.managed import MemberClosed
from cryptolink.rest.manager import NoMemberAvailable, RestManager, UnknownGroup, UnknownMember, classify
from cryptolink.simulator import SimConfig, Simulator
from tests.redis_keys import REDIS_URL, redis_prefix

pytestmark = pytest.mark.integration

SPOT_ONLY = {"fetchMarkets": {"types": ["spot"]}}


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(
        exchanges=["binance"], mode="replay", speed=4.0, config=SimConfig(symbols={"binance": ("BTCUSDT",)})
    ) as s:
        yield s


def _dead_url() -> str:
    """A loopback address nothing listens on (connections refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _member(hosts: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {"exchange": "binance", "hosts": hosts, "options": SPOT_ONLY, **extra}


def _config(members: dict[str, Any], groups: dict[str, Any] | None = None, **rest: Any) -> RestConfig:
    return RestConfig.model_validate({"members": members, "groups": groups or {}, **rest})


def _sim_rest(sim: Simulator) -> dict[str, Any]:
    return sim.servers["binance"].sim_stats()["rest"]  # type: ignore[no-any-return]


@pytest.mark.timeout(60)
async def test_member_call_is_charged_exactly_what_the_exchange_charges(sim: Simulator) -> None:
    """A member call returns the exchange's data, and the budget took exactly the weight the simulator counted
    (exchangeInfo for load_markets, then depth limit=100): costs are the exchange's, not a guess."""
    hosts = sim.endpoints()["binance"]["hosts"]
    async with RestManager(_config({"a": _member(hosts)})) as rm:
        book = await rm.call("a", "fetch_order_book", "BTC/USDT", limit=100)
        assert book["symbol"] == "BTC/USDT" and book["bids"] and book["asks"]
        assert book["bids"][0][0] < book["asks"][0][0]
        served = _sim_rest(sim)
        budget = rm.stats().budgets[0]
        weight_pool = next(p for p in budget.limiter.pools if p.name.endswith(":weight"))
        assert served["weight"] > 0 and served["429"] == 0
        assert weight_pool.weight == served["weight"]
        member = rm.stats().members[0]
        assert (member.calls, member.successes, member.http_requests) == (1, 1, served["requests"])


@pytest.mark.timeout(60)
async def test_round_robin_alternates_and_counts_choices(sim: Simulator) -> None:
    hosts = sim.endpoints()["binance"]["hosts"]
    config = _config(
        {"a": _member(hosts), "b": _member(hosts)}, {"g": {"members": ["a", "b"], "strategy": "round_robin"}}
    )
    async with RestManager(config) as rm:
        for _ in range(6):
            await rm.call_group("g", "fetch_time")
        stats = rm.stats()
        assert stats.groups[0].chosen == {"a": 3, "b": 3}
        assert [m.calls for m in stats.members] == [3, 3]
        assert stats.groups[0].retries == 0


@pytest.mark.timeout(60)
async def test_failover_moves_to_the_next_member_and_an_offline_member_gets_no_traffic(
    sim: Simulator,
) -> None:
    """The first member's host refuses connections: each call moves on to the second member within the same call;
    after ``offline_after_failures`` failures the first is offline and no longer tried."""
    hosts = sim.endpoints()["binance"]["hosts"]
    dead = {real: _dead_url() for real in hosts}
    config = _config(
        {"a": _member(dead, priority=0), "b": _member(hosts, priority=1)},
        {"g": {"members": ["a", "b"], "strategy": "failover"}},
        health={"offline_after_failures": 2, "interval_s": 3600, "check_at_start": False},
        retry={"max_attempts": 3, "backoff_initial_s": 0.0, "backoff_max_s": 0.0},
    )
    async with RestManager(config) as rm:
        for _ in range(4):
            assert isinstance(await rm.call_group("g", "fetch_time"), int)
        stats = {m.name: m for m in rm.stats().members}
        assert stats["a"].calls == 2  # tried twice, then offline: never again
        assert stats["a"].errors == {"unavailable": 2}
        assert rm.state("a") == "offline"
        assert stats["b"].successes == 4
        assert rm.stats().groups[0].retries == 2


@pytest.mark.timeout(60)
async def test_errors_another_member_cannot_fix_are_raised_at_once(sim: Simulator) -> None:
    hosts = sim.endpoints()["binance"]["hosts"]
    config = _config({"a": _member(hosts), "b": _member(hosts)}, {"g": {"members": ["a", "b"]}})
    async with RestManager(config) as rm:
        with pytest.raises(ccxt.BadSymbol):
            await rm.call_group("g", "fetch_ticker", "NOPE/USDT")
        g = rm.stats().groups[0]
        assert (g.calls, g.retries, g.failures) == (1, 0, 1)
        assert sum(m.calls for m in rm.stats().members) == 1


@pytest.mark.timeout(60)
async def test_a_call_that_may_change_state_is_not_retried_after_a_network_error(sim: Simulator) -> None:
    hosts = sim.endpoints()["binance"]["hosts"]
    dead = {real: _dead_url() for real in hosts}
    keys = {"api_key": "k" * 16, "api_secret": "s" * 16}
    config = _config(
        {"a": _member(dead, **keys), "b": _member(hosts, **keys)},
        {"g": {"members": ["a", "b"], "strategy": "failover"}},
    )
    async with RestManager(config) as rm:
        with pytest.raises(ccxt.ExchangeNotAvailable):
            await rm.call_group("g", "create_order", "BTC/USDT", "limit", "buy", 0.001, 10_000)
        assert {m.name: m.calls for m in rm.stats().members} == {"a": 1, "b": 0}


@pytest.mark.timeout(60)
async def test_no_member_available_names_each_state(sim: Simulator) -> None:
    dead = {real: _dead_url() for real in sim.endpoints()["binance"]["hosts"]}
    config = _config(
        {"a": _member(dead)},
        {"g": {"members": ["a"]}},
        health={"offline_after_failures": 1, "interval_s": 3600, "check_at_start": False},
        retry={"max_attempts": 1},
    )
    async with RestManager(config) as rm:
        with pytest.raises(ccxt.ExchangeNotAvailable):
            await rm.call_group("g", "fetch_time")
        with pytest.raises(NoMemberAvailable, match="a: offline"):
            await rm.call_group("g", "fetch_time")
        assert rm.stats().groups[0].unavailable == 1
        with pytest.raises(UnknownGroup):
            await rm.call_group("nope", "fetch_time")
        with pytest.raises(UnknownMember):
            await rm.call("nope", "fetch_time")


@pytest.mark.timeout(60)
async def test_health_checks_take_a_member_offline_and_back(sim: Simulator) -> None:
    """An outage of the member's host: checks fail until offline; after the outage one check brings it back
    (healthy, its weight ramping up again)."""
    hosts = sim.endpoints()["binance"]["hosts"]
    config = _config(
        {"a": _member(hosts)},
        health={"offline_after_failures": 2, "interval_s": 3600, "check_at_start": False},
    )
    server = sim.servers["binance"]
    async with RestManager(config) as rm:
        assert await rm.check_now("a") == "healthy"
        server.begin_outage(3.0)
        assert await rm.check_now("a") == "healthy"  # one failure is not enough
        assert await rm.check_now("a") == "offline"
        assert rm.stats().members[0].effective_weight == 0
        await server.wait_until(lambda: server.listening, within_s=10)
        assert await rm.check_now("a") == "healthy"
        member = rm.stats().members[0]
        assert 0 < member.effective_weight < member.weight  # gradual recovery
        assert (member.checks, member.check_failures) == (4, 2)


@pytest.mark.timeout(90)
async def test_a_429_pauses_the_pool_so_no_418_follows(sim: Simulator) -> None:
    """Our budget believes in a limit larger than the exchange's (other users of the IP, a wrong override):
    the exchange's 429 pauses the pool for its Retry-After and the calls behind it wait, so the exchange never
    escalates to a 418 ban. (One request at a time: requests already in flight when a 429 comes back cannot be
    recalled, and Binance bans for those.) The exchange counts fixed 5 s windows: 20 + 70 weight sent in less
    than one window touch at most two of them, which hold 80, so at least one 429 comes whatever the alignment."""
    async with Simulator(
        exchanges=["binance"],
        mode="replay",
        speed=4.0,
        config=SimConfig(symbols={"binance": ("BTCUSDT",)}, rest_limits={"binance": (40, 5.0)}),
    ) as small:
        hosts = small.endpoints()["binance"]["hosts"]
        config = _config(
            {"a": _member(hosts, max_concurrent=1)},
            limits={"overrides": {"binance": {"weight": [100_000, 5.0]}}},
            health={"check_at_start": False},
        )
        async with RestManager(config) as rm:
            await rm.call("a", "load_markets")  # exchangeInfo: 20 of the 40
            results = await asyncio.gather(
                *(rm.call("a", "fetch_time") for _ in range(70)), return_exceptions=True
            )
            served = _sim_rest(small)
            assert served["418"] == 0
            assert served["429"] >= 1
            refused = [r for r in results if isinstance(r, BaseException)]
            assert [classify(r) for r in refused] == ["rate_limit"] * served["429"]
            budget = rm.stats().budgets[0]
            assert budget.answers_429 == served["429"] and budget.pauses >= 1


@pytest.mark.timeout(120)
async def test_two_managers_share_one_budget_through_redis() -> None:
    """Two managers (as two processes would) each with their own budgets on one Redis prefix, against a
    scaled-down limit: together they never get a 429, and the server counted at most the limit per window."""
    async with (
        redis_prefix("rl-mgr") as prefix,
        Simulator(
            exchanges=["binance"],
            mode="replay",
            speed=4.0,
            config=SimConfig(symbols={"binance": ("BTCUSDT",)}, rest_limits={"binance": (60, 2.0)}),
        ) as small,
    ):
        hosts = small.endpoints()["binance"]["hosts"]
        config = _config(
            {"a": _member(hosts)},
            limits={
                "redis_url": REDIS_URL,
                "prefix": prefix,
                "overrides": {"binance": {"weight": [60, 2.0]}},
            },
            health={"check_at_start": False},
        )
        async with RestManager(config) as one, RestManager(config) as two:
            await one.call("a", "load_markets")
            await two.call("a", "load_markets")

            async def hammer(rm: RestManager) -> None:
                for _ in range(40):
                    await rm.call("a", "fetch_time")

            await asyncio.gather(hammer(one), hammer(two))
            served = _sim_rest(small)
            assert served["429"] == 0 and served["418"] == 0
            assert served["requests"] == 2 + 80
            assert one.stats().budgets[0].limiter.mode == "redis"


@pytest.mark.timeout(60)
async def test_reconfigure_keeps_what_did_not_change(sim: Simulator) -> None:
    hosts = sim.endpoints()["binance"]["hosts"]
    first = _config(
        {"a": _member(hosts), "b": _member(hosts), "c": _member(hosts)},
        {"g": {"members": ["a", "b"], "strategy": "weighted"}},
    )
    async with RestManager(first) as rm:
        await rm.call_group("g", "fetch_time")
        instance_a = rm._members["a"].managed
        instance_c = rm._members["c"].managed
        second = _config(
            {"a": _member(hosts, weight=3), "c": _member(hosts, timeout_s=5), "d": _member(hosts)},
            {"g": {"members": ["a", "d"], "strategy": "weighted"}},
        )
        result = await rm.reconfigure(second)
        assert (result.added, result.removed, result.replaced, result.reweighted) == (
            ("d",),
            ("b",),
            ("c",),
            ("a",),
        )
        assert result.groups_changed == ("g",)
        assert rm._members["a"].managed is instance_a  # untouched instance, same session
        assert rm._members["c"].managed is not instance_c
        await asyncio.sleep(0)
        await asyncio.gather(*rm._closing)
        assert instance_c.closed
        g = rm.stats().groups[0]
        assert g.calls == 1  # counters carried over
        for _ in range(8):
            await rm.call_group("g", "fetch_time")
        assert rm.stats().groups[0].chosen.get("a", 0) > rm.stats().groups[0].chosen.get("d", 0)
        with pytest.raises(UnknownMember):
            await rm.call("b", "fetch_time")


@pytest.mark.timeout(30)
async def test_an_exchange_ccxt_does_not_know_is_refused_at_start() -> None:
    config = _config({"x": {"exchange": "nosuchexchange"}, "y": {"exchange": "alsonotone"}})
    with pytest.raises(ConfigError) as info:
        async with RestManager(config):
            pass
    text = str(info.value)
    assert "rest.members.x.exchange" in text and "rest.members.y.exchange" in text


@pytest.mark.timeout(30)
async def test_shared_budgets_are_the_ones_given(sim: Simulator) -> None:
    """A manager given a RateBudgets (the engine's) draws on it and leaves it open at exit."""
    hosts = sim.endpoints()["binance"]["hosts"]
    budgets = RateBudgets(SystemClock())
    try:
        async with RestManager(_config({"a": _member(hosts)}), budgets=budgets, rng=random.Random(1)) as rm:
            await rm.call("a", "fetch_time")
            assert rm.budgets is budgets
        assert budgets.get("binance").stats().limiter.grants >= 1
    finally:
        await budgets.aclose()


@pytest.mark.timeout(30)
async def test_the_health_loop_sleeps_between_checks() -> None:
    """With no member due (none at all here) the health loop parks until the next interval, however large the
    clock's reading: it does not spin."""
    clock = FakeClock(start=100_000.0)
    async with RestManager(_config({}), clock=clock) as rm:
        for _ in range(50):
            await asyncio.sleep(0)
        assert rm._health_passes == 1
        await clock.advance(30.0)
        for _ in range(50):
            await asyncio.sleep(0)
        assert rm._health_passes == 2


def test_classify_keeps_a_stale_nonce_apart() -> None:
    """A timestamp outside the receive window is neither a network failure (no retry elsewhere, no health
    failure) nor confused with the budget."""
    assert classify(ccxt.InvalidNonce("timestamp outside recvWindow")) == "nonce"
    assert classify(ccxt.NetworkError("reset")) == "network"


@pytest.mark.timeout(60)
async def test_a_member_closed_by_a_reload_refuses_before_anything_is_charged_or_sent(sim: Simulator) -> None:
    """A request that reaches a member a reload has closed is refused before its grant (nothing charged, nothing
    sent) with MemberClosed, a failure the group moves on from (``budget``: never sent)."""
    hosts = sim.endpoints()["binance"]["hosts"]
    async with RestManager(_config({"a": _member(hosts)}, health={"check_at_start": False})) as rm:
        await rm.call("a", "fetch_time")
        old = rm._members["a"].managed
        await rm.reconfigure(_config({"a": _member(hosts, timeout_s=9)}, health={"check_at_start": False}))
        await asyncio.gather(*rm._closing)
        assert old.closed
        pool = next(p for p in rm.stats().budgets[0].limiter.pools if p.name.endswith(":weight"))
        requests_before = _sim_rest(sim)["requests"]
        with pytest.raises(MemberClosed) as info:
            await old.call("fetch_time")
        assert classify(info.value) == "budget"
        after = next(p for p in rm.stats().budgets[0].limiter.pools if p.name.endswith(":weight"))
        assert after.weight == pool.weight and _sim_rest(sim)["requests"] == requests_before
        assert isinstance(await rm.call("a", "fetch_time"), int)  # the replacement serves


@pytest.mark.timeout(60)
async def test_a_health_check_that_finds_no_room_is_no_failure_and_close_does_not_wait_for_it(
    sim: Simulator,
) -> None:
    hosts = sim.endpoints()["binance"]["hosts"]
    config = _config({"a": _member(hosts)}, health={"check_at_start": False, "timeout_s": 0.2})
    async with RestManager(config) as rm:
        budget = rm.budgets.get("binance")
        await budget.limiter.ban(budget.limiter_scope, 300.0)  # as a 418 would
        assert await rm.check_now("a") == "healthy"
        member = rm.stats().members[0]
        assert (member.checks, member.check_failures, member.consecutive_failures) == (1, 0, 0)
        # a check as the health loop starts it, waiting out the ban without a bound of its own
        check = asyncio.create_task(rm._check(rm._members["a"]))
        rm._checks.add(check)
        await asyncio.sleep(0)
    assert check.cancelled()  # close cancelled it instead of waiting out the 300 s ban


@pytest.mark.timeout(60)
async def test_a_member_without_a_health_check_is_never_taken_offline() -> None:
    dead = _dead_url()
    config = _config(
        {"b": {"exchange": "bitstamp", "hosts": {"https://www.bitstamp.net": dead}}},
        health={"offline_after_failures": 1},
    )
    async with RestManager(config) as rm:
        for _ in range(2):
            with pytest.raises(ccxt.ExchangeNotAvailable):
                await rm.call("b", "fetch_ticker", "BTC/USD")
        member = rm.stats().members[0]
        assert member.state == "healthy" and member.errors == {"unavailable": 2} and member.checks == 0


@pytest.mark.timeout(30)
async def test_hosts_that_replace_nothing_are_refused_at_start() -> None:
    config = _config(
        {"a": {"exchange": "binance", "hosts": {"https://api.binance.co": "http://127.0.0.1:1"}}}
    )
    with pytest.raises(ConfigError, match=r"rest\.members\.a\.hosts"):
        async with RestManager(config):
            pass


@pytest.mark.timeout(60)
async def test_cancelling_one_caller_of_load_markets_leaves_the_others_loading(sim: Simulator) -> None:
    hosts = sim.endpoints()["binance"]["hosts"]
    async with RestManager(_config({"a": _member(hosts)}, health={"check_at_start": False})) as rm:
        first = asyncio.create_task(rm.call("a", "load_markets"))
        second = asyncio.create_task(rm.call("a", "load_markets"))
        for _ in range(5):
            await asyncio.sleep(0)
        first.cancel()
        markets = await second
        assert "BTC/USDT" in markets
        assert first.cancelled()
