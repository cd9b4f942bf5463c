"""The shared limiter's fallback against the real Redis: pauses and bans that never reached Redis, pools too
small for a share, and the exchange's absurd counts."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping

import pytest
import redis.asyncio as aioredis

from cryptolink.clock import FakeClock
from cryptolink.ratelimit import Attempt, LimiterStats, Pool, RedisWindowStore, SharedLimiter
from cryptolink.ratelimit.redis_store import ban_key, pool_keys
from tests.ratelimit.helpers import REDIS_URL, TcpProxy
from tests.redis_keys import redis_prefix

pytestmark = [pytest.mark.timeout(60), pytest.mark.integration]

POOLS = [Pool("w", 10, 5.0, "ip")]


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


def refused(stats: LimiterStats, kind: str) -> int:
    return stats.refused_paused if kind == "pause" else stats.refused_banned


async def block(limiter: SharedLimiter, kind: str, duration_s: float) -> None:
    if kind == "pause":
        await limiter.pause(["w"], duration_s)
    else:
        await limiter.ban("ip", duration_s)


@pytest.mark.parametrize("kind", ["pause", "ban"])
async def test_a_block_set_while_redis_is_down_reaches_the_other_processes_when_it_rejoins(kind: str) -> None:
    clock = FakeClock()
    proxy = TcpProxy()
    await proxy.open()
    async with redis_prefix() as prefix:
        one = SharedLimiter(POOLS, redis_url=proxy.url, prefix=prefix, retry_s=1.0, clock=clock)
        two = SharedLimiter(POOLS, redis_url=REDIS_URL, prefix=prefix)
        checker = aioredis.Redis.from_url(REDIS_URL)
        probe = RedisWindowStore(checker, POOLS, prefix)
        key = pool_keys(prefix, "w")[2] if kind == "pause" else ban_key(prefix, "ip")
        reason = "paused" if kind == "pause" else "banned"
        try:
            await proxy.close()
            await block(one, kind, 300.0)  # the exchange's 429/418, met while Redis is unreachable
            assert one.in_fallback
            # Redis never heard of it: the other process is still granted
            assert (await two.acquire({"w": 1})).source == "redis"
            await proxy.open()
            await clock.advance(1.0)  # one retry later
            with pytest.raises(TimeoutError):
                await one.acquire({"w": 1}, timeout_s=0)
            stats = one.stats()
            assert (stats.mode, stats.rejoins, refused(stats, kind)) == ("redis", 1, 1)
            # pushed with the time it had left (299 s of 300), so the other process is refused as long
            with pytest.raises(TimeoutError):
                await two.acquire({"w": 1}, timeout_s=0)
            assert refused(two.stats(), kind) == 1
            seen = await probe.try_acquire({"w": 1})
            assert (seen.grant, seen.reason) == (None, reason)
            assert 200_000_000 < seen.wait_us <= 299_000_000
            # on Redis again, the block kept here still refuses first, even if Redis loses it
            await checker.delete(key)
            with pytest.raises(TimeoutError):
                await one.acquire({"w": 1}, timeout_s=0)
            assert refused(one.stats(), kind) == 2
            assert (await two.acquire({"w": 1}, timeout_s=0)).source == "redis"
            # until it ends: then Redis decides again
            await clock.advance(299.0)
            assert (await one.acquire({"w": 1}, timeout_s=0)).source == "redis"
        finally:
            await one.aclose()
            await two.aclose()
            await checker.aclose()
            await proxy.close()


class GatedStore(RedisWindowStore):
    """The real store, but a try waits for ``gate`` (after setting ``entered``) and ``block`` fails while
    ``blocks_fail``: a Redis call failing while another one is in flight."""

    def __init__(self, client: aioredis.Redis, pools: Iterable[Pool], prefix: str) -> None:
        super().__init__(client, pools, prefix)
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()
        self.blocks_fail = False

    async def try_acquire(self, costs: dict[str, int]) -> Attempt:
        self.entered.set()
        await self.gate.wait()
        return await super().try_acquire(costs)

    async def block(self, pauses: Mapping[str, float], bans: Mapping[str, float]) -> None:
        if self.blocks_fail:
            raise ConnectionError("Redis went away")
        await super().block(pauses, bans)


async def test_a_ban_that_failed_during_a_try_is_not_dropped_by_that_try_succeeding() -> None:
    clock = FakeClock()
    async with redis_prefix() as prefix:
        client = aioredis.Redis.from_url(REDIS_URL)
        probe = RedisWindowStore(client, POOLS, prefix)
        store = GatedStore(client, POOLS, prefix)
        limiter = SharedLimiter(POOLS, client=client, prefix=prefix, retry_s=1.0, clock=clock)
        limiter._store = store
        try:
            waiter = asyncio.ensure_future(limiter.acquire({"w": 1}))
            await store.entered.wait()
            store.blocks_fail = True
            await limiter.ban("ip", 300.0)  # fails to reach Redis while the try is in flight
            assert limiter.in_fallback
            store.gate.set()
            assert (await waiter).source == "redis"
            # the try's success does not end the fallback: the ban is still only here
            stats = limiter.stats()
            assert (stats.mode, stats.rejoins) == ("fallback", 0)
            assert (await probe.try_acquire({"w": 1})).grant is not None
            store.blocks_fail = False
            await clock.advance(1.0)
            with pytest.raises(TimeoutError):
                await limiter.acquire({"w": 1}, timeout_s=0)
            assert (limiter.stats().mode, limiter.stats().rejoins) == ("redis", 1)
            assert (await probe.try_acquire({"w": 1})).reason == "banned"
        finally:
            store.gate.set()
            await client.aclose()


async def test_a_pool_too_small_for_a_share_waits_for_redis_during_a_fallback() -> None:
    # 3 x 0.25 < 1: a share of 1 unit in each of four processes would send 4 where 3 are allowed in all
    pools = [Pool("tiny", 3, 10.0), Pool("big", 100, 10.0)]
    clock = FakeClock()
    proxy = TcpProxy()
    await proxy.open()
    async with redis_prefix() as prefix:
        limiter = SharedLimiter(
            pools, redis_url=proxy.url, prefix=prefix, fallback_share=0.25, retry_s=1.0, clock=clock
        )
        try:
            assert (await limiter.acquire({"big": 1})).source == "redis"
            await proxy.close()
            assert (await limiter.acquire({"big": 1})).source == "local"
            for costs in ({"tiny": 1}, {"tiny": 1, "big": 1}):
                with pytest.raises(TimeoutError):
                    await limiter.acquire(costs, timeout_s=0)
            stats = limiter.stats()
            assert (stats.mode, stats.refused_full, stats.redis_errors) == ("fallback", 2, 1)
            by_name = {p.name: p for p in stats.pools}
            assert (by_name["tiny"].local_limit, by_name["big"].local_limit) == (0, 25)
            # the refused pair took nothing
            assert (by_name["tiny"].local_in_window, by_name["big"].local_in_window) == (0, 2)
            # a waiter sleeps until the next retry, and is granted through Redis when it answers
            waiter = asyncio.ensure_future(limiter.acquire({"tiny": 1}))
            await settle()
            assert not waiter.done()
            await proxy.open()
            await clock.advance(1.0)
            assert (await asyncio.wait_for(waiter, 10)).source == "redis"
            assert (limiter.stats().mode, limiter.stats().rejoins) == ("redis", 1)
            # on Redis the pool has its whole limit
            for _ in range(2):
                assert (await limiter.acquire({"tiny": 1}, timeout_s=0)).source == "redis"
        finally:
            await limiter.aclose()
            await proxy.close()


async def test_a_huge_used_weight_header_leaves_the_shared_pool_working() -> None:
    pool = Pool("p", 5, 0.2)
    async with (
        redis_prefix() as prefix,
        SharedLimiter([pool], redis_url=REDIS_URL, prefix=prefix) as limiter,
    ):
        grant = await limiter.acquire({"p": 1})
        # 10**15 means "full": taken as the limit (5), of which 1 was ours
        assert await limiter.observe_used("p", 10**15, at=grant) == 4
        after = await limiter.acquire({"p": 1}, timeout_s=10)
        stats = limiter.stats()
        assert (after.source, stats.mode, stats.redis_errors, stats.fallbacks) == ("redis", "redis", 0, 0)
        assert after.at_us >= grant.at_us + pool.window_us  # it waited for the correction to leave the window
