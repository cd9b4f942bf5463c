"""The Redis store against the real server: atomic multi-pool grants, exact waits, pauses, bans, corrections.

Two stores on two clients stand for two processes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from cryptolink.ratelimit import Pool, RedisWindowStore
from cryptolink.ratelimit.redis_store import KEY_MARGIN_MS, pool_keys
from tests.ratelimit.helpers import REDIS_URL
from tests.redis_keys import redis_prefix

pytestmark = [pytest.mark.timeout(30), pytest.mark.integration]

POOLS = [Pool("a", 5, 1.0, "ip"), Pool("b", 5, 1.0, "ip"), Pool("c", 5, 1.0)]


@contextlib.asynccontextmanager
async def two_stores(
    pools: list[Pool],
) -> AsyncIterator[tuple[RedisWindowStore, RedisWindowStore, aioredis.Redis]]:
    async with redis_prefix() as prefix:
        clients = [aioredis.Redis.from_url(REDIS_URL) for _ in range(3)]
        try:
            yield (
                RedisWindowStore(clients[0], pools, prefix),
                RedisWindowStore(clients[1], pools, prefix),
                clients[2],
            )
        finally:
            for client in clients:
                await client.aclose()


async def total(client: aioredis.Redis, store: RedisWindowStore, pool: str) -> int:
    log, tot, _ = pool_keys(store.prefix, pool)
    if not await client.exists(log):
        return 0
    return int(await client.get(tot) or 0)


async def test_a_request_over_two_pools_is_granted_in_both_or_neither() -> None:
    async with two_stores(POOLS) as (one, two, client):
        assert (await one.try_acquire({"b": 4})).grant is not None
        refused = await two.try_acquire({"a": 2, "b": 2})
        assert (refused.grant, refused.reason, refused.pool) == (None, "full", "b")
        assert (await total(client, one, "a"), await total(client, one, "b")) == (0, 4)
        granted = await two.try_acquire({"a": 2, "b": 1})
        assert granted.grant is not None and granted.grant.source == "redis"
        assert (await total(client, one, "a"), await total(client, one, "b")) == (2, 5)
        log_a, _, _ = pool_keys(one.prefix, "a")
        log_b, _, _ = pool_keys(one.prefix, "b")
        members = [bytes(m) for m in await client.zrange(log_a, 0, -1) if isinstance(m, bytes)]
        assert len(members) == 1 and members[0].startswith(b"2:")
        assert await client.zscore(log_a, members[0]) == granted.grant.at_us
        assert await client.zcard(log_b) == 2


async def test_a_refusal_names_the_time_the_needed_grants_leave_the_window() -> None:
    async with two_stores([Pool("p", 3, 1.0)]) as (one, two, _client):
        first = (await one.try_acquire({"p": 1})).grant
        second = (await two.try_acquire({"p": 2})).grant
        assert first is not None and second is not None
        refused = await one.try_acquire({"p": 1})
        assert refused.wait_us == first.at_us + 1_000_000 - refused.now_us
        refused = await one.try_acquire({"p": 2})  # 1 is not enough: the second grant must go too
        assert refused.wait_us == second.at_us + 1_000_000 - refused.now_us


async def test_keys_live_one_window_plus_a_margin() -> None:
    async with two_stores([Pool("p", 3, 2.0)]) as (one, _two, client):
        await one.try_acquire({"p": 1})
        for key in pool_keys(one.prefix, "p")[:2]:
            ttl = await client.pttl(key)
            assert 2000 < ttl <= 2000 + KEY_MARGIN_MS


async def test_a_pause_is_seen_by_another_instance_at_once_and_ends_at_its_time() -> None:
    async with two_stores(POOLS) as (one, two, _client):
        await one.pause(["a"], 0.3)
        await one.pause(["a"], 0.05)  # a shorter pause does not cut the running one
        refused = await two.try_acquire({"a": 1})
        assert refused.reason == "paused" and refused.pool == "a"
        assert 50_000 < refused.wait_us <= 300_000
        assert (await two.try_acquire({"b": 1})).grant is not None
        await asyncio.sleep(refused.wait_us / 1_000_000)
        assert (await two.try_acquire({"a": 1})).grant is not None


async def test_a_ban_holds_every_pool_of_its_scope_for_every_instance() -> None:
    async with two_stores(POOLS) as (one, two, _client):
        await one.ban("ip", 0.3)
        for name in ("a", "b"):
            refused = await two.try_acquire({name: 1})
            assert refused.reason == "banned" and 0 < refused.wait_us <= 300_000
        assert (await two.try_acquire({"c": 1})).grant is not None
        refused = await two.try_acquire({"c": 1, "a": 1})
        assert refused.reason == "banned"
        await asyncio.sleep(refused.wait_us / 1_000_000)
        assert (await two.try_acquire({"a": 1, "b": 1})).grant is not None
        with pytest.raises(KeyError):
            await one.ban("nope", 1.0)


async def test_the_exchange_count_raises_the_shared_count_and_never_lowers_it() -> None:
    async with two_stores([Pool("p", 10, 5.0)]) as (one, two, client):
        first = (await one.try_acquire({"p": 2})).grant
        assert first is not None
        assert await two.observe_used("p", 7) == 5
        assert (await one.try_acquire({"p": 4})).grant is None
        assert await one.observe_used("p", 3) == 0
        assert await total(client, one, "p") == 7
        assert (await one.try_acquire({"p": 3})).grant is not None
        # at the first grant we counted 2 (the correction of 5 and the grant of 3 came later); the exchange
        # saw 9 then: 7 more, stamped at the first grant (a late report errs on the safe side)
        assert await two.observe_used("p", 9, at_us=first.at_us) == 7
        assert await total(client, one, "p") == 17
        assert await one.observe_used("p", 99, at_us=first.at_us - 5_000_000) == 0  # older than a window


async def test_a_lost_total_is_rebuilt_from_the_log() -> None:
    async with two_stores([Pool("p", 10, 5.0)]) as (one, _two, client):
        await one.try_acquire({"p": 4})
        await one.try_acquire({"p": 3})
        await client.delete(pool_keys(one.prefix, "p")[1])
        assert (await one.try_acquire({"p": 4})).grant is None
        assert (await one.try_acquire({"p": 3})).grant is not None
        assert await total(client, one, "p") == 10


async def test_a_flushed_script_cache_is_reloaded() -> None:
    async with two_stores([Pool("p", 10, 5.0)]) as (one, _two, client):
        assert (await one.try_acquire({"p": 1})).grant is not None
        await client.script_flush()
        assert (await one.try_acquire({"p": 1})).grant is not None


async def test_a_huge_count_is_taken_as_the_limit_and_every_entry_stays_readable() -> None:
    async with two_stores([Pool("p", 5, 5.0)]) as (one, two, client):
        assert (await one.try_acquire({"p": 1})).grant is not None
        assert await two.observe_used("p", 10**15) == 4  # "full": raised to the limit, not to 10**15
        assert await total(client, one, "p") == 5
        # a weight of 10**15 added as such is still written in digits (Lua would print 1e+15): the log reads back
        assert await two.add("p", 10**15) == 10**15
        log, _, _ = pool_keys(one.prefix, "p")
        members = [m for m in await client.zrange(log, 0, -1) if isinstance(m, bytes)]
        weights = sorted(int(m.split(b":")[0]) for m in members)
        assert weights == [1, 4, 10**15]
        refused = await one.try_acquire({"p": 1})
        assert (refused.grant, refused.reason) == (None, "full")


async def test_a_grant_of_a_huge_weight_is_logged_in_digits() -> None:
    async with two_stores([Pool("p", 10**15, 5.0)]) as (one, two, client):
        assert (await one.try_acquire({"p": 10**15})).grant is not None
        refused = await two.try_acquire({"p": 1})  # reads the entry back: it parses
        assert (refused.grant, refused.reason) == (None, "full")
        assert await total(client, one, "p") == 10**15


async def test_pauses_and_bans_of_several_lengths_are_set_in_one_call() -> None:
    async with two_stores(POOLS) as (one, two, _client):
        await one.pause(["a"], 0.05)
        await one.block({"a": 0.3, "c": 0.2}, {"ip": 0.1})  # a longer pause of "a" replaces the shorter one
        waits = {name: await two.try_acquire({name: 1}) for name in ("a", "b", "c")}
        assert {n: a.reason for n, a in waits.items()} == {"a": "paused", "b": "banned", "c": "paused"}
        assert 200_000 < waits["a"].wait_us <= 300_000
        assert 0 < waits["b"].wait_us <= 100_000
        assert 100_000 < waits["c"].wait_us <= 200_000
        await one.block({}, {})  # nothing to send
        with pytest.raises(KeyError):
            await one.block({}, {"nope": 1.0})
        with pytest.raises(KeyError):
            await one.block({"nope": 1.0}, {})
