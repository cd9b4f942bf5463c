from __future__ import annotations

import asyncio
import logging
from dataclasses import FrozenInstanceError, dataclass
from decimal import Decimal
from typing import cast

import pytest

from cryptolink.bus import EVENTS_CHANNEL, Bus, OverflowPolicy, Subscriber, SubscriberClosed
from cryptolink.clock import FakeClock
from cryptolink.models import BookUpdate, Channel, Side, Ticker, Trade


def trade(feed: str = "binance", symbol: str = "BTC/USDT", n: int = 0) -> Trade:
    return Trade(
        exchange="binance",
        symbol=symbol,
        exchange_symbol=symbol.replace("/", ""),
        price=Decimal("100.5"),
        amount=Decimal("0.01"),
        side=Side.BUY,
        trade_id=str(n),
        timestamp_ms=1,
        receipt_ns=2,
        sequence=n,
        feed=feed,
    )


def ticker(feed: str = "binance", symbol: str = "BTC/USDT") -> Ticker:
    return Ticker(
        "binance", symbol, "X", Decimal(1), Decimal(2), Decimal(3), Decimal(4), None, 1, 2, feed=feed
    )


def book(feed: str = "okx", symbol: str = "BTC/USDT") -> BookUpdate:
    return BookUpdate("okx", symbol, "BTC-USDT", True, ((Decimal(1), Decimal(2)),), (), 7, 1, 2, feed=feed)


@dataclass
class EngineEvent:
    feed: str
    kind: str


def drain(sub: Subscriber) -> list[object]:
    out = []
    while (ev := sub.get_nowait()) is not None:
        out.append(ev)
    return out


def test_filters_route_by_channel_feed_symbol() -> None:
    bus = Bus()
    all_sub = bus.subscribe()
    trades = bus.subscribe(channel=Channel.TRADES)
    bn = bus.subscribe(feed="binance")
    eth = bus.subscribe(channel="trades", feed="binance", symbol="ETH/USDT")
    perp = bus.subscribe(feed="binance-perp")  # same exchange id, another entry: nothing of "binance"
    events_only = bus.subscribe(channel=EVENTS_CHANNEL)
    t1, t2, tk, bk = trade(), trade(symbol="ETH/USDT"), ticker(), book()
    ev = EngineEvent("okx", "connected")
    for e in (t1, t2, tk, bk, ev, t1):
        bus.publish(e)
    assert drain(all_sub) == [t1, t2, tk, bk, ev, t1]
    assert drain(trades) == [t1, t2, t1]
    assert drain(bn) == [t1, t2, tk, t1]
    assert drain(eth) == [t2]
    assert drain(events_only) == [ev]
    assert drain(perp) == []
    # a subscriber added later invalidates the cached routes
    late = bus.subscribe(channel="book", feed="okx")
    bus.publish(bk)
    bus.publish(t1)
    assert drain(late) == [bk]
    st = bus.stats()
    assert st.published == 8 and st.unrouted == 0


def test_unrouted_events_are_counted() -> None:
    bus = Bus()
    bus.subscribe(feed="okx")
    bus.publish(trade())
    bus.publish(object())
    assert bus.stats().unrouted == 2


def test_drop_oldest_keeps_newest_and_counts() -> None:
    bus = Bus()
    sub = bus.subscribe(maxsize=3, overflow=OverflowPolicy.DROP_OLDEST, name="slow")
    events = [trade(n=i) for i in range(10)]
    for e in events:
        bus.publish(e)
    assert drain(sub) == events[-3:]
    (cs,) = bus.stats().consumers
    assert (cs.name, cs.dropped, cs.delivered, cs.queued, cs.maxsize) == ("slow", 7, 3, 0, 3)
    assert cs.overflow is OverflowPolicy.DROP_OLDEST


def test_drop_newest_keeps_oldest_and_counts() -> None:
    bus = Bus(default_maxsize=3, default_overflow="drop_newest")
    sub = bus.subscribe()
    events = [trade(n=i) for i in range(10)]
    for e in events:
        bus.publish(e)
    st = bus.stats()
    assert st.consumers[0].queued == 3 and st.dropped == 7
    assert drain(sub) == events[:3]


def test_stats_are_immutable_snapshots() -> None:
    bus = Bus()
    bus.subscribe()
    before = bus.stats()
    bus.publish(trade())
    assert before.published == 0 and before.consumers[0].queued == 0
    assert bus.stats().consumers[0].queued == 1
    with pytest.raises(FrozenInstanceError):
        before.published = 5  # type: ignore[misc]


async def test_slow_consumer_never_blocks_publisher() -> None:
    bus = Bus()
    slow = bus.subscribe(maxsize=10, overflow=OverflowPolicy.BLOCK)
    fast = bus.subscribe(maxsize=100_000)
    for i in range(20_000):
        bus.publish(trade(n=i))  # sync: cannot wait, even for a BLOCK consumer
    st = {c.consumer_id: c for c in bus.stats().consumers}
    assert st[slow.consumer_id].queued == 10 and st[slow.consumer_id].dropped == 19_990
    assert st[fast.consumer_id].queued == 20_000 and st[fast.consumer_id].dropped == 0


async def test_publish_wait_blocks_until_room() -> None:
    bus = Bus()
    sub = bus.subscribe(maxsize=2, overflow=OverflowPolicy.BLOCK)
    other = bus.subscribe(maxsize=1, overflow=OverflowPolicy.DROP_OLDEST)
    await bus.publish_wait(trade(n=0))
    await bus.publish_wait(trade(n=1))
    pending = asyncio.create_task(bus.publish_wait(trade(n=2)))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert not pending.done()
    assert (await sub.get()).sequence == 0
    await asyncio.wait_for(pending, timeout=1)
    assert [cast(Trade, e).sequence for e in drain(sub)] == [1, 2]
    assert [cast(Trade, e).sequence for e in drain(other)] == [2]
    assert bus.stats().dropped == 2  # only the drop-oldest consumer dropped


async def test_publish_wait_released_when_consumer_closes() -> None:
    bus = Bus()
    sub = bus.subscribe(maxsize=1, overflow=OverflowPolicy.BLOCK)
    await bus.publish_wait(trade())
    pending = asyncio.create_task(bus.publish_wait(trade()))
    await asyncio.sleep(0)
    sub.close()
    await asyncio.wait_for(pending, timeout=1)


async def test_async_iteration_and_close() -> None:
    bus = Bus()
    sub = bus.subscribe(channel="trades")
    got: list[Trade] = []
    first_two = asyncio.Event()

    async def consume() -> None:
        async for ev in sub:
            got.append(ev)
            if len(got) == 2:
                first_two.set()

    task = asyncio.create_task(consume())
    bus.publish(trade(n=1))
    bus.publish(trade(n=2))
    await asyncio.wait_for(first_two.wait(), timeout=1)
    sub.close()  # wakes the parked iterator
    await asyncio.wait_for(task, timeout=1)
    assert [t.sequence for t in got] == [1, 2]
    bus.publish(trade(n=3))  # no longer delivered; not an error
    assert sub.closed and bus.stats().consumers == ()
    with pytest.raises(SubscriberClosed):
        await sub.get()


async def test_bus_close_drains_then_ends_iterators() -> None:
    bus = Bus()
    async with bus.subscribe() as sub:
        bus.publish(trade(n=1))
        bus.publish(trade(n=2))
        bus.close()
        got = [ev.sequence async for ev in sub]
        assert got == [1, 2]
        bus.publish(trade(n=3))
    with pytest.raises(RuntimeError, match="closed"):
        bus.subscribe()


def test_sync_callback_exceptions_isolated_counted_and_rate_limited(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    bus = Bus(clock=clock, error_log_interval_s=10)
    seen: list[object] = []

    def bad(ev: object) -> None:
        raise RuntimeError("user bug")

    handle = bus.add_callback(bad, channel="trades", name="bad")
    bus.add_callback(seen.append, name="good")
    with caplog.at_level(logging.ERROR, logger="cryptolink.bus"):
        for i in range(5):
            bus.publish(trade(n=i))  # never raises
    assert len(seen) == 5
    st = handle.stats()
    assert (st.errors, st.delivered, st.kind) == (5, 0, "callback")
    assert len([r for r in caplog.records if "user bug" in r.getMessage()]) == 1
    assert bus.stats().errors == 5
    handle.close()
    bus.publish(trade())
    assert len(bus.stats().consumers) == 1


async def test_async_callback_runs_in_order_and_errors_are_isolated() -> None:
    bus = Bus()
    got: list[int] = []
    done = asyncio.Event()

    async def cb(ev: Trade) -> None:
        if ev.sequence == 2:
            raise ValueError("boom")
        got.append(ev.sequence or 0)
        if ev.sequence == 4:
            done.set()

    handle = bus.add_callback(cb, channel="trades", maxsize=100)
    for i in range(5):
        bus.publish(trade(n=i))
    await asyncio.wait_for(done.wait(), timeout=1)
    assert got == [0, 1, 3, 4]
    st = handle.stats()
    assert (st.errors, st.delivered, st.maxsize) == (1, 4, 100)
    await bus.aclose(timeout_s=1)


async def test_async_callable_object_is_run_as_async_callback() -> None:
    done = asyncio.Event()

    class Obj:
        async def __call__(self, ev: object) -> None:
            done.set()

    bus = Bus()
    bus.add_callback(Obj())
    bus.publish(trade())
    await asyncio.wait_for(done.wait(), timeout=1)
    await bus.aclose(timeout_s=1)


def test_async_callback_deferred_without_loop() -> None:
    bus = Bus()

    async def cb(ev: object) -> None:
        return None

    bus.add_callback(cb)
    assert len(bus._pending_starts) == 1

    async def main() -> None:
        bus.publish(trade())
        await bus.aclose(timeout_s=1)

    asyncio.run(main())
    assert bus.stats().consumers[0].delivered == 1


@pytest.mark.parametrize("maxsize", [0, -1, True, 10**9])
def test_bad_bounds_rejected(maxsize: int) -> None:
    with pytest.raises(ValueError, match="maxsize"):
        Bus().subscribe(maxsize=maxsize)


def test_bad_filter_rejected() -> None:
    with pytest.raises(ValueError, match="channel"):
        Bus().subscribe(channel="")
    with pytest.raises(TypeError):
        Bus().add_callback(42)  # type: ignore[arg-type]
