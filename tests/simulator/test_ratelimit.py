"""REST rate-limit models in fake time."""

from __future__ import annotations

from cryptolink.clock import FakeClock
from cryptolink.simulator.ratelimit import WeightLimiter, WindowCounter


async def test_weight_429_then_418_ban_then_recovery() -> None:
    clock = FakeClock(start=0.0)
    lim = WeightLimiter(limit=10, window_s=60.0, ban_s=120.0, clock=clock)
    assert lim.charge(6).status == 200 and lim.charge(4).used == 10
    v = lim.charge(1)
    assert (v.status, v.retry_after_s) == (429, 60)
    await clock.advance(30)
    v = lim.charge(1)  # continuing during the 429 window earns a ban
    assert v.status == 418 and v.retry_after_s == 120
    await clock.advance(60)  # new window, still banned
    assert lim.charge(1).status == 418
    await clock.advance(61)
    assert lim.charge(1).status == 200
    assert (lim.rejected_429, lim.rejected_418) == (1, 2)


async def test_weight_window_resets() -> None:
    clock = FakeClock(start=0.0)
    lim = WeightLimiter(limit=5, window_s=60.0, ban_s=120.0, clock=clock)
    assert lim.charge(5).status == 200
    await clock.advance(60)
    assert lim.used == 0 and lim.charge(5).status == 200


async def test_window_counter_per_endpoint() -> None:
    clock = FakeClock(start=0.0)
    wc = WindowCounter({"time": 2}, 2.0, clock)
    assert [wc.hit("time").status for _ in range(3)] == [200, 200, 429]
    assert wc.hit("books").status == 200  # unlisted: unlimited
    await clock.advance(2.0)
    assert wc.hit("time").status == 200 and wc.rejected == 1
