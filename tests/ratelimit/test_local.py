"""The in-process limiter in fake time: exact windows, waits, priorities, timeouts, bounds, corrections."""

from __future__ import annotations

import asyncio
import random

import pytest

from cryptolink.clock import FakeClock
from cryptolink.ratelimit import Grant, LineFull, LocalLimiter, LocalWindows, Pool
from tests.ratelimit.helpers import max_window_weight

pytestmark = [pytest.mark.timeout(20)]


async def at(clock: FakeClock, t: float) -> None:
    """Move ``clock`` to ``t`` s."""
    await clock.advance(t - clock.monotonic())


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_a_grant_counts_for_exactly_one_window_and_a_refusal_says_when_room_comes() -> None:
    clock = FakeClock()
    store = LocalWindows([Pool("p", 10, 1.0)], clock)
    assert store.try_acquire({"p": 6}).grant is not None  # t = 0
    await at(clock, 0.4)
    assert store.try_acquire({"p": 4}).grant is not None  # t = 0.4
    refused = store.try_acquire({"p": 1})
    assert (refused.grant, refused.wait_us, refused.reason, refused.pool) == (None, 600_000, "full", "p")
    await at(clock, 0.999999)
    assert store.try_acquire({"p": 1}).grant is None
    await at(clock, 1.0)  # the grant of t = 0 leaves the window exactly now
    granted = store.try_acquire({"p": 6})
    assert granted.grant is not None and granted.grant.at_us == 1_000_000
    assert store.in_window("p") == 10
    # need 5 more: the 4 of t = 0.4 are not enough, the 6 of t = 1.0 must go too
    assert store.try_acquire({"p": 5}).wait_us == 1_000_000


async def test_random_traffic_is_never_above_the_limit_in_any_window_and_never_refused_without_cause() -> (
    None
):
    rng = random.Random(7)
    clock = FakeClock()
    pool = Pool("p", 30, 1.0)
    store = LocalWindows([pool], clock)
    grants: list[Grant] = []
    for _ in range(3000):
        await clock.advance(rng.choice([0.0, 0.0001, 0.003, 0.05, 0.2]))
        weight = rng.randint(1, 5)
        now_us = store.now_us()
        in_window = sum(g.weights["p"] for g in grants if g.at_us > now_us - pool.window_us)
        result = store.try_acquire({"p": weight})
        if result.grant is not None:
            grants.append(result.grant)
            assert in_window + weight <= pool.limit
        else:
            assert in_window + weight > pool.limit  # refused only when it would not fit
            # and room comes exactly at the announced time
            expiring = sorted((g.at_us, g.weights["p"]) for g in grants if g.at_us > now_us - pool.window_us)
            need, freed, expected = in_window + weight - pool.limit, 0, 0
            for at, w in expiring:
                freed += w
                if freed >= need:
                    expected = at + pool.window_us - now_us
                    break
            assert result.wait_us == expected
    assert max_window_weight(grants, "p", pool.window_us) <= pool.limit
    assert len(grants) > 1000


async def test_memory_is_bounded_by_the_limit_and_same_instant_grants_share_an_entry() -> None:
    clock = FakeClock()
    store = LocalWindows([Pool("p", 100, 1.0)], clock)
    most = 0
    for step in range(5000):
        await at(clock, step * 0.001)
        store.try_acquire({"p": 1})
        most = max(most, store.entries("p"))
    assert most <= 100
    await at(clock, 10.0)
    for _ in range(50):
        assert store.try_acquire({"p": 1}).grant is not None
    assert store.entries("p") == 1
    assert store.in_window("p") == 50


async def test_a_request_over_two_pools_takes_from_both_or_neither() -> None:
    store = LocalWindows([Pool("a", 5, 1.0), Pool("b", 5, 1.0)], FakeClock())
    assert store.try_acquire({"b": 4}).grant is not None
    refused = store.try_acquire({"a": 2, "b": 2})
    assert refused.grant is None and refused.pool == "b"
    assert (store.in_window("a"), store.in_window("b")) == (0, 4)
    assert store.try_acquire({"a": 2, "b": 1}).grant is not None
    assert (store.in_window("a"), store.in_window("b")) == (2, 5)


async def test_the_exchange_count_raises_ours_and_never_lowers_it() -> None:
    clock = FakeClock()
    store = LocalWindows([Pool("p", 10, 1.0)], clock)
    first = store.try_acquire({"p": 2}).grant
    assert first is not None
    assert store.observe_used("p", 7) == 5
    assert store.try_acquire({"p": 4}).grant is None
    assert store.observe_used("p", 3) == 0  # a stale, lower count changes nothing
    assert store.in_window("p") == 7
    # a count seen at the first grant's time ignores what was granted after it, and expires with that time
    await at(clock, 0.5)
    assert store.try_acquire({"p": 3}).grant is not None  # 10 now
    # at t = 0 we counted 2 + 5; the 3 of t = 0.5 came later and are not compared
    assert store.observe_used("p", 9, at_us=first.at_us) == 2
    assert store.in_window("p") == 12


async def test_a_count_above_the_limit_is_taken_as_the_limit() -> None:
    store = LocalWindows([Pool("p", 10, 1.0)], FakeClock())
    assert store.try_acquire({"p": 3}).grant is not None
    assert store.observe_used("p", 10**15) == 7
    assert store.in_window("p") == 10


async def test_a_count_stamped_in_the_past_is_compared_with_what_we_had_then() -> None:
    clock = FakeClock()
    store = LocalWindows([Pool("p", 20, 1.0)], clock)
    first = store.try_acquire({"p": 2}).grant
    assert first is not None
    await at(clock, 0.3)
    assert store.try_acquire({"p": 3}).grant is not None
    # the exchange saw 6 when it answered the first request: 4 more than our 2 at that time
    assert store.observe_used("p", 6, at_us=first.at_us) == 4
    assert store.in_window("p") == 9
    await at(clock, 1.0)  # the correction expires with the first grant's window
    assert store.in_window("p") == 3
    assert store.observe_used("p", 50, at_us=0) == 0  # older than one window: ignored


async def test_a_pause_holds_its_pool_and_a_ban_every_pool_of_its_scope_until_their_time() -> None:
    clock = FakeClock()
    store = LocalWindows([Pool("a", 5, 1.0, "ip"), Pool("b", 5, 1.0, "ip"), Pool("c", 5, 1.0)], clock)
    store.pause(["a"], 2.0)
    store.pause(["a"], 0.5)  # a shorter pause does not cut the longer one
    refused = store.try_acquire({"a": 1})
    assert (refused.reason, refused.wait_us) == ("paused", 2_000_000)
    assert store.try_acquire({"b": 1}).grant is not None
    store.ban("ip", 3.0)
    assert store.try_acquire({"b": 1}).reason == "banned"
    assert store.try_acquire({"a": 1}).wait_us == 3_000_000
    assert store.try_acquire({"c": 1}).grant is not None
    await at(clock, 3.0)
    assert store.try_acquire({"a": 1, "b": 1}).grant is not None
    with pytest.raises(KeyError):
        store.ban("nope", 1.0)
    with pytest.raises(KeyError):
        store.pause(["nope"], 1.0)


async def test_the_blocks_in_force_are_listed_with_their_time_left_and_refuse_whatever_the_room() -> None:
    clock = FakeClock()
    store = LocalWindows([Pool("a", 5, 1.0, "ip"), Pool("b", 5, 1.0, "ip"), Pool("c", 5, 1.0)], clock)
    assert store.blocks() == ({}, {})
    assert store.blocked(["a", "b", "c"]) is None
    store.pause(["a"], 2.0)
    store.pause(["c"], 0.5)
    store.ban("ip", 1.0)
    await at(clock, 0.25)
    assert store.blocks() == ({"a": 1.75, "c": 0.25}, {"ip": 0.75})
    refusal = store.blocked(["b", "a"])  # the longest block of the pools named
    assert refusal is not None
    assert (refusal.grant, refusal.reason, refusal.pool, refusal.wait_us) == (None, "paused", "a", 1_750_000)
    refusal = store.blocked(["b"])
    assert refusal is not None and (refusal.reason, refusal.wait_us) == ("banned", 750_000)
    await at(clock, 1.0)  # the ban and the pause of "c" have ended
    assert store.blocks() == ({"a": 1.0}, {})
    assert store.blocked(["b", "c"]) is None
    with pytest.raises(KeyError):
        store.blocked(["nope"])


async def test_a_waiter_is_granted_exactly_when_the_oldest_grant_expires() -> None:
    clock = FakeClock()
    limiter = LocalLimiter([Pool("p", 10, 1.0)], clock)
    await limiter.acquire({"p": 6})
    await clock.advance(0.4)
    await limiter.acquire({"p": 4})
    waiter = asyncio.ensure_future(limiter.acquire({"p": 1}))
    await settle()
    await clock.advance(0.599)
    assert not waiter.done()
    await clock.advance(0.001)
    grant = await asyncio.wait_for(waiter, 1.0)
    assert grant.at_us == 1_000_000
    stats = limiter.stats()
    assert (stats.grants, stats.refused_full, stats.attempts) == (3, 1, 4)


async def test_lower_priority_numbers_are_served_first_then_arrival_order() -> None:
    clock = FakeClock()
    limiter = LocalLimiter([Pool("p", 1, 1.0)], clock)
    await limiter.acquire({"p": 1})
    order: list[str] = []

    async def want(name: str, priority: int) -> None:
        await limiter.acquire({"p": 1}, priority=priority)
        order.append(name)

    tasks = []
    for name, priority in [("backfill", 5), ("book-1", 0), ("book-2", 0), ("other", 3)]:
        tasks.append(asyncio.ensure_future(want(name, priority)))
        await settle()
    assert limiter.stats().waiting == 4
    for _ in range(4):
        await clock.advance(1.0)
        await settle()
    await asyncio.wait_for(asyncio.gather(*tasks), 1.0)
    assert order == ["book-1", "book-2", "other", "backfill"]
    # the first acquire tried once; then only heads tried: backfill and book-1 on arrival (each the head then), then per second one grant and
    # one refusal of the next head; later arrivals did not try nor wake the sleeping head
    assert limiter.stats().attempts == 1 + 2 + 4 + 3


async def test_a_timeout_takes_nothing_and_is_counted() -> None:
    clock = FakeClock()
    limiter = LocalLimiter([Pool("p", 5, 1.0)], clock)
    await limiter.acquire({"p": 5})
    waiter = asyncio.ensure_future(limiter.acquire({"p": 1}, timeout_s=0.5))
    await settle()
    await clock.advance(0.5)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(waiter, 1.0)
    stats = limiter.stats()
    assert (stats.timeouts, stats.waiting, stats.pools[0].local_in_window) == (1, 0, 5)
    await clock.advance(0.5)
    assert limiter.windows.in_window("p") == 0


async def test_a_timed_out_head_lets_the_next_waiter_through() -> None:
    clock = FakeClock()
    limiter = LocalLimiter([Pool("p", 2, 1.0)], clock)
    await limiter.acquire({"p": 2})
    head = asyncio.ensure_future(limiter.acquire({"p": 2}, priority=0, timeout_s=0.2))
    await settle()
    second = asyncio.ensure_future(limiter.acquire({"p": 1}, priority=1))
    await settle()
    await clock.advance(0.2)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(head, 1.0)
    await clock.advance(0.8)
    grant = await asyncio.wait_for(second, 1.0)
    assert grant.at_us == 1_000_000


async def test_a_cost_above_a_limit_raises_at_once_and_a_full_line_refuses() -> None:
    clock = FakeClock()
    limiter = LocalLimiter([Pool("p", 3, 1.0)], clock, max_waiters=1)
    with pytest.raises(ValueError, match="exceeds the limit"):
        await limiter.acquire({"p": 4})
    await limiter.acquire({"p": 3})
    waiter = asyncio.ensure_future(limiter.acquire({"p": 1}))
    await settle()
    with pytest.raises(LineFull):
        await limiter.acquire({"p": 1})
    assert limiter.stats().rejected == 1
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    assert limiter.stats().waiting == 0


async def test_the_limiter_feeds_pauses_bans_and_counts_into_stats() -> None:
    clock = FakeClock()
    limiter = LocalLimiter([Pool("a", 10, 1.0, "ip"), Pool("b", 10, 1.0, "ip")], clock)
    grant = await limiter.acquire({"a": 1})
    assert await limiter.observe_used("a", 4, at=grant) == 3
    await limiter.pause(["a"], 1.0)
    await limiter.ban("ip", 2.0)
    waiter = asyncio.ensure_future(limiter.acquire({"b": 1}))
    await settle()
    await clock.advance(1.999)
    assert not waiter.done()
    await clock.advance(0.001)
    assert (await asyncio.wait_for(waiter, 1.0)).at_us == 2_000_000
    stats = limiter.stats()
    assert (stats.pauses, stats.bans, stats.refused_banned, stats.pools[0].observed) == (1, 1, 1, 3)
