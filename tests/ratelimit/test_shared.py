"""The shared limiter against the real Redis: exact under concurrency, across processes, and its fallback."""

from __future__ import annotations

import asyncio
import logging
import random
import sys
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from cryptolink.clock import FakeClock
from cryptolink.ratelimit import Grant, Pool, SharedLimiter
from cryptolink.ratelimit.redis_store import pool_keys
from tests.ratelimit.helpers import REDIS_URL, TcpProxy, max_window_weight
from tests.redis_keys import redis_prefix

pytestmark = [pytest.mark.timeout(60), pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]


async def test_independent_instances_never_exceed_the_limit_in_any_window_and_use_most_of_it() -> None:
    pool = Pool("p", 30, 1.0)
    run_us = 3_000_000
    grants: list[Grant] = []
    async with redis_prefix() as prefix:
        limiters = [SharedLimiter([pool], redis_url=REDIS_URL, prefix=prefix) for _ in range(3)]
        start = (await limiters[0].acquire({"p": 1})).at_us
        grants.append(Grant(start, {"p": 1}, "redis"))

        async def worker(limiter: SharedLimiter, seed: int) -> None:
            rng = random.Random(seed)
            while True:
                grant = await limiter.acquire({"p": rng.randint(1, 5)}, priority=rng.randint(0, 2))
                grants.append(grant)
                if grant.at_us >= start + run_us:
                    return

        try:
            await asyncio.wait_for(
                asyncio.gather(*(worker(limiters[i % 3], i) for i in range(9))), timeout=30
            )
            stats = [limiter.stats() for limiter in limiters]
        finally:
            for limiter in limiters:
                await limiter.aclose()
    assert {g.source for g in grants} == {"redis"}
    assert all(s.fallbacks == 0 and s.redis_errors == 0 for s in stats)
    assert max_window_weight(grants, "p", pool.window_us) <= pool.limit
    used = sum(g.weights["p"] for g in grants if g.at_us < start + run_us)
    # the limit was reached, not merely respected (loosely: a loaded CI machine slows the workers; the
    # utilisation figure itself belongs to the benchmark)
    assert used >= 0.5 * pool.limit * run_us / pool.window_us
    assert all(s.grants > 5 for s in stats)  # every instance took part


async def test_a_second_process_shares_the_same_windows() -> None:
    pool = Pool("p", 20, 0.5)
    async with redis_prefix() as prefix:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.ratelimit.worker",
            prefix,
            str(pool.limit),
            str(pool.window_s),
            "40",
            "1",
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert proc.stdin is not None and proc.stdout is not None
        try:
            assert await asyncio.wait_for(proc.stdout.readline(), 20) == b"ready\n"
            ours: list[Grant] = []
            async with SharedLimiter([pool], redis_url=REDIS_URL, prefix=prefix) as limiter:
                proc.stdin.write(b"go\n")
                await proc.stdin.drain()
                rng = random.Random(2)
                for _ in range(40):
                    ours.append(await limiter.acquire({"p": rng.randint(1, 3)}))
            lines = (await asyncio.wait_for(proc.stdout.read(), 30)).decode().split()
            assert await asyncio.wait_for(proc.wait(), 10) == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert lines[-1] == "done"
    theirs = [
        Grant(int(at), {"p": int(w)}, "redis") for at, w in zip(lines[:-1:2], lines[1:-1:2], strict=True)
    ]
    assert len(theirs) == 40
    both = ours + theirs
    assert max_window_weight(both, "p", pool.window_us) <= pool.limit
    # they really competed: some window holds grants of both processes
    mine = {g.at_us for g in ours}
    points = sorted(g.at_us for g in both)
    assert any(
        {t in mine for t in points if start <= t < start + pool.window_us} == {True, False}
        for start in points
    )


async def test_without_redis_it_keeps_its_share_and_rejoins_when_redis_returns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="cryptolink.ratelimit")
    clock = FakeClock()
    proxy = TcpProxy()
    await proxy.open()
    async with redis_prefix() as prefix:
        limiter = SharedLimiter(
            [Pool("p", 8, 10.0)],
            redis_url=proxy.url,
            prefix=prefix,
            fallback_share=0.5,
            retry_s=1.0,
            clock=clock,
        )
        checker = aioredis.Redis.from_url(REDIS_URL)
        log, total, _ = pool_keys(prefix, "p")
        try:
            assert (await limiter.acquire({"p": 1})).source == "redis"
            await proxy.close()
            # Redis gone: the local share (4 of 8) holds, the grant taken through Redis counted in it
            fallback = [await limiter.acquire({"p": 1}), await limiter.acquire({"p": 2})]
            assert [g.source for g in fallback] == ["local", "local"]
            with pytest.raises(TimeoutError):
                await limiter.acquire({"p": 1}, timeout_s=0)
            stats = limiter.stats()
            assert (stats.mode, stats.fallbacks, stats.redis_errors, stats.timeouts) == ("fallback", 1, 1, 1)
            assert (stats.pools[0].local_in_window, stats.pools[0].local_limit) == (4, 4)
            assert stats.last_error is not None
            # still gone one retry later: counted again, logged once
            await clock.advance(1.0)
            with pytest.raises(TimeoutError):
                await limiter.acquire({"p": 1}, timeout_s=0)
            assert (limiter.stats().redis_errors, limiter.stats().fallbacks) == (2, 1)
            # Redis back: at the next retry the fallback's 3 units are carried over, then Redis grants again
            await proxy.open()
            await clock.advance(1.0)
            assert (await limiter.acquire({"p": 1})).source == "redis"
            stats = limiter.stats()
            assert (stats.mode, stats.rejoins, stats.fallbacks) == ("redis", 1, 1)
            assert await checker.get(total) == b"5"  # 1 + the 3 carried + 1
            assert await checker.zcard(log) == 3
            # a second outage: the local window is full (5 of 4 in it); nothing is granted, nothing carried twice
            await proxy.close()
            with pytest.raises(TimeoutError):
                await limiter.acquire({"p": 1}, timeout_s=0)
            await proxy.open()
            await clock.advance(1.0)
            assert (await limiter.acquire({"p": 1})).source == "redis"
            assert await checker.get(total) == b"6"
            stats = limiter.stats()
            assert (stats.fallbacks, stats.rejoins, stats.redis_errors) == (2, 2, 3)
        finally:
            await limiter.aclose()
            await checker.aclose()
            await proxy.close()
    records = [r for r in caplog.records if r.name == "cryptolink.ratelimit"]
    assert [r.levelno for r in records] == [logging.WARNING, logging.INFO] * 2
    assert "local share 0.50" in records[0].getMessage()


async def test_pauses_bans_and_counts_reach_other_instances_through_redis() -> None:
    pools = [Pool("w", 10, 5.0, "ip"), Pool("r", 10, 5.0, "ip")]
    async with (
        redis_prefix() as prefix,
        SharedLimiter(pools, redis_url=REDIS_URL, prefix=prefix) as one,
        SharedLimiter(pools, redis_url=REDIS_URL, prefix=prefix) as two,
    ):
        grant = await one.acquire({"w": 2})
        await one.acquire({"w": 1})
        # the exchange counted 9 when it answered the first request: we had 2 then (the 1 came later)
        assert await two.observe_used("w", 9, at=grant) == 7
        with pytest.raises(TimeoutError):
            await one.acquire({"w": 2}, timeout_s=0)
        await two.pause(["r"], 5.0)
        with pytest.raises(TimeoutError):
            await one.acquire({"r": 1}, timeout_s=0)
        assert one.stats().refused_paused == 1
        await two.ban("ip", 5.0)
        with pytest.raises(TimeoutError):
            await one.acquire({"w": 1}, timeout_s=0)
        assert one.stats().refused_banned == 1
        with pytest.raises(ValueError, match="exceeds"):
            await one.acquire({"w": 11})
