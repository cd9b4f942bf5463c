"""Trading guards: the decision rule with fake inputs, the check task and callbacks in fake time, the manager's
``guard()`` selection rules, and end to end against the simulator (outage, stall, book resync, rejected
subscription, removed entry, failing callbacks)."""

from __future__ import annotations

import ast
import asyncio
import contextlib
import logging
import re
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import cryptolink.guard as guard_mod
from cryptolink.bus import EVENTS_CHANNEL
from cryptolink.clock import FakeClock, SystemClock
from cryptolink.config import CryptolinkConfig
from cryptolink.engine import ConnectionEvent, ConnectionEventType, ConnectionState
from cryptolink.engine.events import Severity
from cryptolink.exchanges.base import ExchangeAdapter, RestRequest
from cryptolink.gateway import RestGateway
from cryptolink.guard import (
    GuardClosed,
    GuardEvent,
    GuardKey,
    GuardRegistry,
    StreamView,
    TradingGuard,
    Verdict,
    decide,
)
from cryptolink.manager import ExchangeManager
from cryptolink.models import Channel, Subscription
from cryptolink.rest import RestClient
from cryptolink.simulator import PORT_OFFSETS, Fault, Simulator
from tests.integration.harness import FAST_RECONNECT, sim_config

pytestmark = [pytest.mark.timeout(60)]

_C = ConnectionState
TRADES, BOOK = Channel.TRADES, Channel.BOOK


# ------------------------------------------------------------------------------------------- the decision


def view(
    channel: Channel = TRADES,
    *,
    conn: str | None = "okx-ws-1",
    state: ConnectionState = _C.CONNECTED,
    sub: str = "confirmed",
    age: float | None = 0.1,
    threshold: float | None = 2.5,
    book: str | None = "live",
) -> StreamView:
    return StreamView(
        channel, "BTC/USDT", conn, state, sub, age, threshold, book if channel is BOOK else None
    )


def test_fresh_connected_live_streams_are_safe_until_the_earliest_bound_passes() -> None:
    v = decide([view(age=0.5, threshold=2.5), view(BOOK, age=1.0, threshold=1.5)])
    assert v.safe and v.reasons == ()
    assert v.fresh_for_s == pytest.approx(0.5)  # the book has 0.5 s left, the trades 2.0 s
    assert decide([view(age=2.5, threshold=2.5)]).safe  # fresh means age <= bound


def test_a_connection_that_is_not_connected_is_named_once_and_its_streams_are_not_judged_for_freshness() -> (
    None
):
    v = decide(
        [
            view(state=_C.RECONNECTING, age=None),
            view(BOOK, state=_C.RECONNECTING, age=None, book="resyncing"),
        ]
    )
    assert v == Verdict(False, ("connection okx-ws-1 reconnecting", "book BTC/USDT resyncing"))


def test_silence_is_judged_by_the_learned_bound_unless_the_user_gives_one() -> None:
    assert decide([view(age=12.3, threshold=4.1)]).reasons == (
        "trades BTC/USDT silent 12.3 s > 4.1 s learned bound",
    )
    # a user bound replaces the learned one, both ways
    assert decide([view(age=3.0, threshold=10.0)], max_data_age_s=2.0).reasons == (
        "trades BTC/USDT silent 3.0 s > 2.0 s bound",
    )
    lenient = decide([view(age=3.0, threshold=1.0)], max_data_age_s=5.0)
    assert lenient.safe and lenient.fresh_for_s == pytest.approx(2.0)
    # numbers that round alike are shown to the millisecond
    assert decide([view(age=2.5012, threshold=2.5)]).reasons == (
        "trades BTC/USDT silent 2.501 s > 2.500 s learned bound",
    )


@pytest.mark.parametrize(
    ("stream", "reason"),
    [
        (view(age=None), "trades BTC/USDT no data since the socket opened"),
        (view(sub="rejected"), "trades BTC/USDT rejected by the exchange"),
        (view(conn=None, sub="missing"), "trades BTC/USDT not subscribed"),
        (view(state=_C.UNSTABLE), "connection okx-ws-1 unstable"),
        (view(state=_C.FAILED), "connection okx-ws-1 failed"),
        (view(state=_C.CONNECTING, age=None), "connection okx-ws-1 connecting"),
        (view(BOOK, book="syncing"), "book BTC/USDT syncing"),
        (view(BOOK, book="failed"), "book BTC/USDT failed"),
        (view(BOOK, book=None), "book BTC/USDT missing"),
    ],
)
def test_each_unsafe_condition_has_its_reason(stream: StreamView, reason: str) -> None:
    good = view(BOOK)
    v = decide([stream, good] if stream.channel is TRADES else [view(), stream])
    assert v == Verdict(False, (reason,))


def test_a_problem_or_nothing_to_judge_is_not_safe() -> None:
    assert decide([], problem="entry okx not running") == Verdict(False, ("entry okx not running",))
    assert decide([]) == Verdict(False, ("no stream to judge",))


# ------------------------------------------------------------------------------- the registry in fake time


class FakeFeeds:
    """A probe over fake streams: their last data time (monotonic s), learned threshold, connection state
    and book state can be changed by the test."""

    def __init__(self) -> None:
        self.last: dict[Channel, float | None] = {TRADES: 0.0, BOOK: 0.0}
        self.threshold = 1.0
        self.state = _C.CONNECTED
        self.book = "live"
        self.problem: str | None = None

    def probe(self, key: GuardKey, now: float) -> tuple[str | None, tuple[StreamView, ...]]:
        if self.problem is not None:
            return self.problem, ()
        return None, tuple(
            StreamView(
                ch,
                key.symbol,
                "x-ws-1",
                self.state,
                "confirmed",
                None if last is None else now - last,
                self.threshold,
                self.book if ch is BOOK else None,
            )
            for ch, last in self.last.items()
        )


def event(
    type_: ConnectionEventType, feed: str = "x", *, conn: str = "x-ws-1", symbol: str | None = None
) -> ConnectionEvent:
    stream = None if symbol is None else "trades"
    return ConnectionEvent(type_, Severity.INFO, 0, 0.0, conn, "x", feed=feed, stream=stream, symbol=symbol)


class Calls:
    """Records callback calls; ``seen`` is set on each."""

    def __init__(self) -> None:
        self.events: list[GuardEvent] = []
        self.seen = asyncio.Event()

    def __call__(self, e: GuardEvent) -> None:
        self.events.append(e)
        self.seen.set()


async def next_step() -> None:
    """Return once every callback the event loop had scheduled so far has run (the judgment a connection event
    asked for included): the loop runs its ready callbacks in the order they were scheduled."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    loop.call_soon(done.set_result, None)
    await asyncio.wait_for(done, 1)


@contextlib.asynccontextmanager
async def registry(fake: FakeFeeds, clock: FakeClock, interval: float = 0.25) -> AsyncIterator[GuardRegistry]:
    reg = GuardRegistry(clock, fake.probe, check_interval_s=interval)
    reg.start()
    try:
        yield reg
    finally:
        await reg.stop(grace_s=0.0)


async def test_the_check_task_wakes_at_the_freshness_deadline_not_only_on_its_interval() -> None:
    clock, fake = FakeClock(), FakeFeeds()
    async with registry(fake, clock, interval=60.0) as reg:  # the interval alone would look again at 60 s
        guard = reg.get(GuardKey("x", "BTC/USDT"))
        assert guard.last_status().safe and guard.resumes == 1  # first safe verdict: a resume
        fake.last[TRADES] = 0.5  # trades have 1.5 s of freshness, the book 1.0 s
        await clock.advance(0.99)
        assert guard.last_status().safe  # nobody asked: only the task judged
        await clock.advance(0.02)
        status = guard.last_status()
        assert not status.safe and status.halts == 1
        assert status.reasons == ("book BTC/USDT silent 1.001 s > 1.000 s learned bound",)


async def test_changes_that_are_no_event_are_seen_within_the_interval() -> None:
    clock, fake = FakeClock(), FakeFeeds()
    fake.book = "resyncing"
    async with registry(fake, clock, interval=0.25) as reg:
        guard = reg.get(GuardKey("x", "BTC/USDT"))
        await clock.advance(0)  # the task's first check; it looks again in 0.25 s
        assert guard.last_status().reasons == ("book BTC/USDT resyncing",)
        fake.book = "live"
        fake.last = {TRADES: 0.2, BOOK: 0.2}
        await clock.advance(0.26)
        assert guard.last_status().safe and guard.resumes == 1


async def test_connection_events_mark_guards_judged_once_in_the_next_loop_step_with_callbacks_once() -> None:
    clock, fake = FakeClock(), FakeFeeds()
    async with registry(fake, clock, interval=60.0) as reg:
        guard = reg.get(GuardKey("x", "BTC/USDT"))
        halts, resumes = Calls(), Calls()
        guard.on_halt(halts)
        guard.on_resume(resumes)
        await asyncio.wait_for(resumes.seen.wait(), 1)  # the first safe verdict, reported once registered
        fake.state = _C.RECONNECTING
        checks = reg.checks
        reg.on_event(event(ConnectionEventType.STATE_CHANGED, feed="other"))
        await next_step()
        assert reg.checks == checks  # another entry's event judges nothing
        reg.on_event(event(ConnectionEventType.STATE_CHANGED))
        for _ in range(3):
            reg.on_event(event(ConnectionEventType.RECONNECT_ATTEMPT))
        assert reg.checks == checks and guard.last_status().safe  # never inside the connection's event path
        await next_step()
        assert reg.checks == checks + 1  # four events, one judgment
        assert not guard.last_status().safe
        assert [e.reasons for e in halts.events] == [("connection x-ws-1 reconnecting",)]  # in that same step
        assert guard.halts == 1
        fake.state = _C.CONNECTED
        fake.last = {TRADES: clock.monotonic(), BOOK: clock.monotonic()}
        resumes.seen.clear()
        reg.on_event(event(ConnectionEventType.RECONNECT_SUCCESS))
        await asyncio.wait_for(resumes.seen.wait(), 1)
        assert [e.kind for e in guard.events()] == ["resume", "halt", "resume"]
        assert (guard.halts, guard.resumes, len(resumes.events)) == (1, 2, 2)


async def test_a_disconnected_event_counts_its_connection_as_down_before_its_state_moves() -> None:
    clock, fake = FakeClock(), FakeFeeds()
    async with registry(fake, clock, interval=60.0) as reg:
        guard = reg.get(GuardKey("x", "BTC/USDT"))
        assert guard.last_status().safe
        reg.on_event(event(ConnectionEventType.DISCONNECTED))  # the state still says connected
        await next_step()
        assert guard.last_status().reasons == ("connection x-ws-1 disconnected",)
        assert guard.safe  # the next judgment reads the state again: the mark held for one batch only


async def test_callbacks_that_raise_are_counted_and_the_others_still_run() -> None:
    clock, fake = FakeClock(), FakeFeeds()
    async with registry(fake, clock) as reg:
        guard = reg.get(GuardKey("x", "BTC/USDT"))
        sync_ok, async_done = Calls(), asyncio.Event()

        def sync_bad(e: GuardEvent) -> None:
            raise RuntimeError("bot bug")

        async def async_bad(e: GuardEvent) -> None:
            raise RuntimeError("async bot bug")

        async def async_ok(e: GuardEvent) -> None:
            async_done.set()

        for cb in (sync_bad, async_bad, sync_ok, async_ok):
            guard.on_halt(cb)
        fake.state = _C.FAILED
        reg.on_event(event(ConnectionEventType.STATE_CHANGED))
        await asyncio.wait_for(async_done.wait(), 1)
        await clock.advance(0)  # let the failed task's completion be counted
        assert len(sync_ok.events) == 1
        assert guard.callback_errors == 2 and reg.stats().callback_errors == 2


async def test_async_callbacks_beyond_the_bound_are_dropped_and_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(guard_mod, "MAX_RUNNING_CALLBACKS", 1)
    clock, fake = FakeClock(), FakeFeeds()
    release, started = asyncio.Event(), asyncio.Event()

    async def slow(e: GuardEvent) -> None:
        started.set()
        await release.wait()

    async with registry(fake, clock) as reg:
        guard = reg.get(GuardKey("x", "BTC/USDT"))
        await clock.advance(0)  # the first resume is reported before the callbacks exist
        guard.on_halt(slow)
        guard.on_resume(slow)
        fake.state = _C.FAILED
        reg.on_event(event(ConnectionEventType.STATE_CHANGED))
        await asyncio.wait_for(started.wait(), 1)
        fake.state = _C.CONNECTED
        fake.last = {TRADES: clock.monotonic(), BOOK: clock.monotonic()}
        reg.on_event(event(ConnectionEventType.STATE_CHANGED))
        await clock.advance(0)
        assert guard.callbacks_dropped == 1 and reg.stats().callbacks_dropped == 1
        assert guard.resumes == 2  # the transition itself is never lost
        release.set()


async def test_the_task_exists_only_while_started_with_an_open_guard_and_close_halts() -> None:
    clock, fake = FakeClock(), FakeFeeds()
    empty = GuardRegistry(clock, fake.probe)
    empty.start()
    assert not empty.task_running  # started, but no guard: no task
    await empty.stop(grace_s=0.0)
    reg = GuardRegistry(clock, fake.probe)
    guard = reg.get(GuardKey("x", "BTC/USDT"))
    assert guard.last_status().reasons == ("manager not started",)
    assert not reg.task_running
    reg.start()
    assert reg.task_running
    await clock.advance(0)
    assert guard.safe and reg.get(GuardKey("x", "BTC/USDT")) is guard
    guard.close()
    assert guard.last_status().reasons == ("guard closed",) and guard.halts == 1
    await clock.advance(0)
    assert not reg.task_running
    again = reg.get(GuardKey("x", "BTC/USDT"))
    assert again is not guard and reg.task_running
    assert reg.stats().halts == 1 and reg.stats().guards == 1  # the closed guard's counts are kept
    await reg.stop(grace_s=0.0)
    assert not reg.task_running


async def test_stop_halts_safe_guards_and_gives_async_callbacks_a_bounded_grace() -> None:
    clock, fake = FakeClock(), FakeFeeds()
    reg = GuardRegistry(clock, fake.probe)
    reg.start()
    guard = reg.get(GuardKey("x", "BTC/USDT"))
    finished: list[tuple[str, ...]] = []
    quick_done, stuck_cancelled = asyncio.Event(), asyncio.Event()

    async def quick(e: GuardEvent) -> None:
        await asyncio.sleep(0)
        finished.append(e.reasons)
        quick_done.set()

    async def stuck(e: GuardEvent) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            stuck_cancelled.set()

    guard.on_halt(quick)
    guard.on_halt(stuck)
    stopping = asyncio.ensure_future(reg.stop(grace_s=1.0))
    await asyncio.wait_for(quick_done.wait(), 1)
    assert finished == [("manager stopping",)]
    await clock.advance(0.5)
    assert not stopping.done() and not stuck_cancelled.is_set()  # the stuck one has its grace
    await clock.advance(0.6)
    await asyncio.wait_for(stopping, 1)
    await asyncio.wait_for(stuck_cancelled.wait(), 1)
    assert not guard.safe and guard.last_status().reasons == ("manager stopped",)


async def test_wait_safe_returns_once_safe_or_raises_on_timeout() -> None:
    clock, fake = FakeClock(), FakeFeeds()
    fake.state = _C.RECONNECTING
    async with registry(fake, clock, interval=60.0) as reg:
        guard = reg.get(GuardKey("x", "BTC/USDT"))
        with pytest.raises(TimeoutError):
            await guard.wait_safe(timeout=0.01)
        waiting = asyncio.ensure_future(guard.wait_safe(timeout=5))
        await clock.advance(0)
        assert not waiting.done()
        fake.state = _C.CONNECTED
        fake.last = {TRADES: clock.monotonic(), BOOK: clock.monotonic()}
        reg.on_event(event(ConnectionEventType.RECONNECT_SUCCESS))
        await asyncio.wait_for(waiting, 1)


async def test_a_flapping_guard_logs_ten_transitions_a_minute_and_counts_them_all(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="cryptolink.guard")
    clock, fake = FakeClock(), FakeFeeds()
    async with registry(fake, clock, interval=60.0) as reg:
        guard = reg.get(GuardKey("x", "BTC/USDT"))  # resume 1

        async def flip(state: ConnectionState) -> None:
            fake.state = state
            fake.last = {TRADES: clock.monotonic(), BOOK: clock.monotonic()}
            reg.on_event(event(ConnectionEventType.STATE_CHANGED))
            await next_step()

        for _ in range(6):  # 12 more transitions: 10 logged in the first minute in all, then quiet
            await flip(_C.UNSTABLE)
            await flip(_C.CONNECTED)

        def loud() -> list[str]:
            return [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]

        assert (guard.halts, guard.resumes) == (6, 7)
        assert sum("HALT" in m or "RESUME" in m for m in loud()) == 10
        assert sum("flapping" in m for m in loud()) == 1
        await clock.advance(60.0)
        await flip(_C.UNSTABLE)  # a new minute: logged again
        assert "HALT" in loud()[-1]


async def test_a_burst_of_events_judges_each_concerned_guard_once_per_loop_step(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="cryptolink.guard")
    clock, fake = FakeClock(), FakeFeeds()
    probed: list[GuardKey] = []

    def probe(key: GuardKey, now: float) -> tuple[str | None, tuple[StreamView, ...]]:
        probed.append(key)
        return fake.probe(key, now)

    reg = GuardRegistry(clock, probe, check_interval_s=60.0)
    reg.start()
    try:
        guards = [reg.get(GuardKey("x", f"C{i:03d}/USDT")) for i in range(300)]
        await clock.advance(0)  # the check task's first pass
        assert reg.stats().safe == 300
        caplog.clear()
        probed.clear()

        # 100 events of the connection every guard sits on: nothing judged inside the event path, then each
        # guard once
        fake.state = _C.RECONNECTING
        for _ in range(100):
            reg.on_event(event(ConnectionEventType.STATE_CHANGED))
        assert probed == []
        await next_step()
        assert len(probed) == 300 and len(set(probed)) == 300
        assert reg.stats().halts == 300 and all(g.halts == 1 for g in guards)
        loud = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
        assert loud == ["guard: 300 guards of x halted: connection x-ws-1 reconnecting"]
        quiet = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
        assert sum(": HALT: connection x-ws-1 reconnecting" in m for m in quiet) == 300

        # stream events (a symbol named): that symbol's guard only
        probed.clear()
        for _ in range(50):
            reg.on_event(event(ConnectionEventType.STALE_SUBSCRIPTION, symbol="C007/USDT"))
        await next_step()
        assert probed == [GuardKey("x", "C007/USDT")]

        # a connection no guard sits on (a new one): every guard of the entry, once
        probed.clear()
        for _ in range(20):
            reg.on_event(event(ConnectionEventType.STATE_CHANGED, conn="x-ws-9"))
        await next_step()
        assert len(probed) == 300 and len(set(probed)) == 300

        # sampled data and quality events change no verdict: nothing judged
        probed.clear()
        for kind in (ConnectionEventType.DATA_RECEIVED, ConnectionEventType.QUALITY_DEGRADED):
            reg.on_event(event(kind))
        await next_step()
        assert probed == []

        # the resume of all of them: one summary line too
        caplog.clear()
        fake.state = _C.CONNECTED
        fake.last = {TRADES: clock.monotonic(), BOOK: clock.monotonic()}
        reg.on_event(event(ConnectionEventType.STATE_CHANGED))
        await next_step()
        loud = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
        assert loud == ["guard: 300 guards of x resumed"] and reg.stats().safe == 300
    finally:
        await reg.stop(grace_s=0.0)


async def test_a_few_transitions_in_one_step_are_each_logged_loudly(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="cryptolink.guard")
    clock, fake = FakeClock(), FakeFeeds()
    async with registry(fake, clock, interval=60.0) as reg:
        for i in range(3):
            reg.get(GuardKey("x", f"C{i}/USDT"))
        await clock.advance(0)
        caplog.clear()
        fake.state = _C.FAILED
        reg.on_event(event(ConnectionEventType.STATE_CHANGED))
        await next_step()
        assert [r.getMessage() for r in caplog.records] == [
            f"guard x C{i}/USDT: HALT: connection x-ws-1 failed" for i in range(3)
        ]


async def test_halt_callbacks_may_stop_the_registry_they_are_never_waited_for_nor_cancelled() -> None:
    clock, fake = FakeClock(), FakeFeeds()
    reg = GuardRegistry(clock, fake.probe, check_interval_s=60.0)
    reg.start()
    guard = reg.get(GuardKey("x", "BTC/USDT"))
    outcome: list[str] = []
    both_done = asyncio.Event()

    async def kill_switch(e: GuardEvent) -> None:
        try:
            await reg.stop(grace_s=1.0)  # the fake clock never reaches the grace: a wait for a stopper hangs
            outcome.append("completed")
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise
        finally:
            if len(outcome) == 2:
                both_done.set()

    guard.on_halt(kill_switch)
    guard.on_halt(kill_switch)  # two of them: neither may wait for the other
    fake.state = _C.FAILED
    reg.on_event(event(ConnectionEventType.STATE_CHANGED))
    await asyncio.wait_for(both_done.wait(), 1)
    assert outcome == ["completed", "completed"]
    assert not reg.task_running and reg.stopping
    assert guard.status().reasons == ("manager stopped",) and guard.callback_errors == 0


async def test_wait_safe_raises_on_a_closed_guard_and_after_stop_and_wakes_those_waiting() -> None:
    clock, fake = FakeClock(), FakeFeeds()
    fake.state = _C.RECONNECTING
    reg = GuardRegistry(clock, fake.probe, check_interval_s=60.0)
    early = reg.get(GuardKey("x", "ETH/USDT"))
    before_start = asyncio.ensure_future(early.wait_safe(timeout=5))  # before the start: waits for it
    await next_step()
    assert not before_start.done()
    reg.start()
    fake.state = _C.CONNECTED
    reg.on_event(event(ConnectionEventType.STATE_CHANGED))
    await asyncio.wait_for(before_start, 1)

    fake.state = _C.RECONNECTING
    closing = reg.get(GuardKey("x", "BTC/USDT"))
    waiting = asyncio.ensure_future(closing.wait_safe())  # no timeout: it would wait forever
    await next_step()
    assert not waiting.done()
    closing.close()
    with pytest.raises(GuardClosed, match="BTC/USDT is closed"):
        await asyncio.wait_for(waiting, 1)
    with pytest.raises(GuardClosed, match="closed"):
        await closing.wait_safe(timeout=5)  # at once, not after the timeout

    other = reg.get(GuardKey("x", "SOL/USDT"))
    waiting = asyncio.ensure_future(other.wait_safe())
    await next_step()
    assert not waiting.done()
    await reg.stop(grace_s=0.0)
    with pytest.raises(GuardClosed, match="manager is stopping or stopped"):
        await asyncio.wait_for(waiting, 1)
    with pytest.raises(GuardClosed):
        await other.wait_safe()
    fake.state = _C.CONNECTED
    reg.start()  # a new start: waiting works again
    await asyncio.wait_for(other.wait_safe(), 1)


def test_a_registry_reused_under_a_second_event_loop_wakes_its_waiters_and_its_task() -> None:
    clock, fake = FakeClock(), FakeFeeds()
    reg = GuardRegistry(clock, fake.probe, check_interval_s=60.0)
    guard = reg.get(GuardKey("x", "BTC/USDT"))

    async def once() -> tuple[bool, tuple[str, ...]]:
        fake.state = _C.RECONNECTING
        reg.start()
        waiting = asyncio.ensure_future(guard.wait_safe(timeout=5))
        await next_step()
        fake.state = _C.CONNECTED
        fake.last = {TRADES: clock.monotonic(), BOOK: clock.monotonic()}
        reg.on_event(event(ConnectionEventType.STATE_CHANGED))
        await asyncio.wait_for(waiting, 1)
        await clock.advance(0)  # the check task (woken by the resume) plans its next look: at 1.0 s
        await clock.advance(1.01)  # the check task of this loop judges at the freshness deadline
        status = guard.last_status()
        await reg.stop(grace_s=0.0)
        return status.safe, status.reasons

    stale = tuple(f"{ch} BTC/USDT silent 1.001 s > 1.000 s learned bound" for ch in ("trades", "book"))
    assert asyncio.run(once()) == (False, stale)
    assert asyncio.run(once()) == (False, stale)
    assert (guard.resumes, guard.halts) == (2, 2)  # each run: a resume, a stale halt; stop halts nothing new


async def test_more_guards_than_allowed_are_refused_until_one_is_closed() -> None:
    clock, fake = FakeClock(), FakeFeeds()
    reg = GuardRegistry(clock, fake.probe, max_guards=2)
    first = reg.get(GuardKey("x", "A/USDT"))
    reg.get(GuardKey("x", "B/USDT"))
    assert reg.get(GuardKey("x", "A/USDT")) is first  # an open guard's key is no new guard
    with pytest.raises(RuntimeError, match="2 trading guards are open already"):
        reg.get(GuardKey("x", "C/USDT"))
    first.close()
    assert reg.get(GuardKey("x", "C/USDT")).symbol == "C/USDT"
    assert reg.stats().guards == 2


async def test_a_callback_backlog_beyond_the_bound_drops_the_oldest_and_counts_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(guard_mod, "MAX_OUTBOX", 4)
    clock, fake = FakeClock(), FakeFeeds()
    async with registry(fake, clock, interval=60.0) as reg:
        guard = reg.get(GuardKey("x", "BTC/USDT"))
        await next_step()  # the first resume is delivered (to no callback yet)
        seen = Calls()
        guard.on_halt(seen)
        guard.on_resume(seen)
        for state in (_C.FAILED, _C.CONNECTED) * 3:  # six transitions before the loop runs a callback
            fake.state = state
            guard.check()
        assert (guard.halts, guard.resumes) == (3, 4)
        await next_step()
        assert [e.kind for e in seen.events] == ["halt", "resume", "halt", "resume"]  # the four newest
        assert guard.callbacks_dropped == 2 and reg.stats().callbacks_dropped == 2


async def test_a_check_that_raises_is_counted_and_logged_and_the_others_are_still_judged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, fake = FakeClock(), FakeFeeds()
    broken: set[str] = set()

    def probe(key: GuardKey, now: float) -> tuple[str | None, tuple[StreamView, ...]]:
        if key.symbol in broken:
            raise RuntimeError("probe bug")
        return fake.probe(key, now)

    reg = GuardRegistry(clock, probe, check_interval_s=60.0)
    reg.start()
    try:
        bad = reg.get(GuardKey("x", "BAD/USDT"))
        good = reg.get(GuardKey("x", "BTC/USDT"))
        await clock.advance(0)
        broken.add("BAD/USDT")
        fake.state = _C.FAILED
        reg.on_event(event(ConnectionEventType.STATE_CHANGED))
        await next_step()
        assert reg.stats().check_errors == 1
        assert good.last_status().reasons == ("connection x-ws-1 failed",)
        assert bad.last_status().safe  # its last verdict stands
        failed = [r for r in caplog.records if "check failed" in r.getMessage()]
        assert len(failed) == 1 and failed[0].exc_info is not None
        reg.check_all(clock.monotonic())  # the check task's pass counts the same way
        assert reg.stats().check_errors == 2
    finally:
        await reg.stop(grace_s=0.0)


def test_the_report_has_a_guards_line_when_guards_exist() -> None:
    m = offline_manager()
    assert "trading guards" not in m.report()
    m.guard("okx-spot", "BTC/USDT")
    m.guard("okx-spot", "ETH/USDT")
    (line,) = [ln for ln in m.report().splitlines() if "open," in ln]
    assert line.strip() == (
        "2 open, 0 safe | halts 0, resumes 0 | callback errors 0, dropped 0 | check errors 0"
    )


# ------------------------------------------------------------------------------------- the manager's rules


def offline_manager() -> ExchangeManager:
    cfg = CryptolinkConfig.from_dict(
        {
            "exchanges": {
                "okx-spot": {
                    "exchange": "okx",
                    "symbols": ["BTC/USDT", "ETH/USDT"],
                    "channels": {"trades": True, "ticker": False, "book": True},
                }
            }
        },
        env={},
    )
    return ExchangeManager(cfg)


async def test_guard_selection_follows_the_manager_names_and_is_cached() -> None:
    m = offline_manager()
    with pytest.raises(KeyError, match="okx-spot"):
        m.guard("okx", "BTC/USDT")  # the exchange id is not a name; the message lists the names
    with pytest.raises(KeyError, match="SOL/USDT"):
        m.guard("okx-spot", "SOL/USDT")
    with pytest.raises(KeyError, match="ticker"):
        m.guard("okx-spot", "BTC/USDT", channels=["ticker"])
    with pytest.raises(ValueError, match="channel"):
        m.guard("okx-spot", "BTC/USDT", channels=["candles"])
    with pytest.raises(ValueError, match="channel"):
        m.guard("okx-spot", "BTC/USDT", channels=[])
    with pytest.raises(ValueError, match="max_data_age_s"):
        m.guard("okx-spot", "BTC/USDT", max_data_age_s=0)
    g = m.guard("okx-spot", "BTC/USDT")
    assert m.guard("okx-spot", "BTC/USDT") is g
    both = m.guard("okx-spot", "BTC/USDT", channels=["book", "trades"])
    assert m.guard("okx-spot", "BTC/USDT", channels=[TRADES, BOOK]) is both and both is not g
    assert m.guard("okx-spot", "BTC/USDT", max_data_age_s=1.0) is not g
    assert (g.name, g.symbol, g.key.channels, g.key.max_data_age_s) == ("okx-spot", "BTC/USDT", None, None)
    assert both.key.channels == frozenset({TRADES, BOOK})
    assert g.safe is False and g.status().reasons == ("manager not started",)


# ------------------------------------------------------------------------------------ against the simulator


OKX, BINANCE = ("okx", "BTC/USDT", "BTC-USDT"), ("binance", "BTC/USDT", "BTCUSDT")


@contextlib.asynccontextmanager
async def simulated(
    exchange: str,
    *,
    watchdog: dict[str, float] | None = None,
    rest_gateway: Callable[[ExchangeAdapter], RestGateway] | None = None,
) -> AsyncIterator[tuple[Simulator, ExchangeManager]]:
    """A synthetic-market simulator of ``exchange`` and a (not started) manager with one entry named
    ``exchange``: BTC/USDT trades and book, fast reconnects."""
    async with Simulator(exchanges=[exchange], mode="synthetic", seed=3, config=sim_config()) as sim:
        ep = sim.endpoints()[exchange]
        entry: dict[str, Any] = {
            "symbols": ["BTC/USDT", "ETH/USDT"],
            "channels": {"trades": True, "ticker": False, "book": True},
            "ws_url": ep["ws_url"],
            "rest_url": ep["rest_url"],
            "reconnect": FAST_RECONNECT,
            "watchdog": watchdog or {"first_data_timeout_s": 1.5, "min_idle_s": 1.0, "max_idle_s": 3.0},
        }
        cfg = CryptolinkConfig.from_dict({"exchanges": {exchange: entry}}, env={})
        m = ExchangeManager(cfg, seed=3, rest_gateway=rest_gateway)
        try:
            yield sim, m
        finally:
            await asyncio.wait_for(m.stop(), 10)


class Transitions:
    """Halt and resume callbacks of one guard; :meth:`halt` / :meth:`resume` wait for the n-th one, re-checking
    each time a callback ran (never polling)."""

    def __init__(self, guard: TradingGuard) -> None:
        self.halts: list[GuardEvent] = []
        self.resumes: list[GuardEvent] = []
        self.changed = asyncio.Event()
        guard.on_halt(self._on(self.halts))
        guard.on_resume(self._on(self.resumes))

    def _on(self, into: list[GuardEvent]) -> Callable[[GuardEvent], None]:
        def record(e: GuardEvent) -> None:
            into.append(e)
            self.changed.set()

        return record

    async def _nth(self, into: list[GuardEvent], n: int, within_s: float) -> GuardEvent:
        async def loop() -> None:
            while len(into) < n:
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(loop(), within_s)
        return into[n - 1]

    async def halt(self, n: int, within_s: float = 10.0) -> GuardEvent:
        return await self._nth(self.halts, n, within_s)

    async def resume(self, n: int, within_s: float = 15.0) -> GuardEvent:
        return await self._nth(self.resumes, n, within_s)


@pytest.mark.integration
async def test_outage_halts_naming_the_connection_and_resumes_after_recovery() -> None:
    async with simulated("okx") as (sim, m):
        guard = m.guard("okx", "BTC/USDT")  # before start: not safe, and says why
        assert guard.status().reasons == ("manager not started",)
        seen = Transitions(guard)
        await m.start()
        await asyncio.wait_for(guard.wait_safe(), 10)
        await seen.resume(1)
        assert guard.halts == 0
        sim.inject(Fault("outage", duration_s=2.0), exchange="okx")
        halt = await seen.halt(1)
        assert any(r.startswith("connection okx-ws-") for r in halt.reasons), halt.reasons
        assert not guard.safe
        resume = await seen.resume(2)
        assert resume.previous_s > 0.0 and guard.safe
        (conn,) = m.feeds["okx"].connections.values()
        assert conn.successful_reconnects >= 1  # it resumed on a new socket, after recovery
        assert guard.halts == 1 and [e.kind for e in guard.events()] == ["resume", "halt", "resume"]


@pytest.mark.integration
async def test_a_stall_halts_on_the_learned_bound_while_the_connection_is_still_connected() -> None:
    async with simulated("okx") as (sim, m):
        guard = m.guard("okx", "BTC/USDT")
        seen = Transitions(guard)
        await m.start()
        await seen.resume(1)
        sim.inject(Fault("stall", duration_s=3.0), exchange="okx")
        halt = await seen.halt(1)
        # judged on the streams' own rhythm (1 s floor) before the connection's watchdog resets the socket
        assert any("silent" in r and r.endswith("learned bound") for r in halt.reasons), halt.reasons
        assert not any(r.startswith("connection ") for r in halt.reasons), halt.reasons
        await seen.resume(2)
        assert guard.safe


@pytest.mark.integration
async def test_a_user_bound_halts_on_a_stall_the_learned_bound_tolerates() -> None:
    watchdog = {"first_data_timeout_s": 5.0, "min_idle_s": 3.0, "max_idle_s": 10.0}
    async with simulated("okx", watchdog=watchdog) as (sim, m):
        tight = m.guard("okx", "BTC/USDT", channels=["trades"], max_data_age_s=0.3)
        learned = m.guard("okx", "BTC/USDT", channels=["trades"])
        seen = Transitions(tight)
        await m.start()
        await seen.resume(1)
        await asyncio.wait_for(learned.wait_safe(), 10)
        sim.inject(Fault("stall", duration_s=1.5), exchange="okx")
        halt = await seen.halt(1)
        assert halt.reasons and all(
            r.startswith("trades BTC/USDT silent") and r.endswith(" bound") and "learned" not in r
            for r in halt.reasons
        ), halt.reasons
        await seen.resume(2)
        (conn,) = m.feeds["okx"].connections.values()
        assert conn.disconnections == 0  # the same socket: only the guard's bound was passed
        assert learned.halts == 0 and learned.safe


class HeldSnapshots:
    """A REST gateway over a real client whose book snapshot requests wait while ``held``."""

    def __init__(self, http: aiohttp.ClientSession) -> None:
        self.http = http
        self.released = asyncio.Event()
        self.released.set()
        self.waiting = asyncio.Event()

    def hold(self) -> None:
        self.released.clear()
        self.waiting.clear()

    def gateway(self, adapter: ExchangeAdapter) -> RestGateway:
        inner = RestClient("test", adapter.rest_base_url, self.http, SystemClock(), None)
        outer = self

        class Gateway:
            async def get(
                self, request: RestRequest, *, timeout_s: float | None = None, background: bool = False
            ) -> bytes:
                if request.path.endswith("/depth") and not outer.released.is_set():
                    outer.waiting.set()
                    await outer.released.wait()
                return await inner.get(request, timeout_s=timeout_s, background=background)

        return Gateway()


@pytest.mark.integration
async def test_a_book_resync_halts_until_the_book_is_live_again() -> None:
    async with aiohttp.ClientSession() as http:
        held = HeldSnapshots(http)
        async with simulated("binance", rest_gateway=held.gateway) as (sim, m):
            guard = m.guard("binance", "BTC/USDT")
            seen = Transitions(guard)
            await m.start()
            await seen.resume(1)
            held.hold()  # the resync's snapshot waits until the test lets it go
            sim.inject(Fault("gap", symbol="BTCUSDT"), exchange="binance")
            halt = await seen.halt(1)
            assert halt.reasons == ("book BTC/USDT resyncing",)
            await asyncio.wait_for(held.waiting.wait(), 5)
            assert not guard.safe and guard.status().reasons == ("book BTC/USDT resyncing",)
            held.released.set()
            await seen.resume(2)
            assert m.book("binance", "BTC/USDT") is not None
            assert guard.halts == 1


@pytest.mark.integration
async def test_failing_callbacks_on_a_real_drop_do_not_stop_the_others() -> None:
    async with simulated("okx") as (sim, m):
        guard = m.guard("okx", "BTC/USDT")
        seen = Transitions(guard)
        async_seen = asyncio.Event()

        def sync_bad(e: GuardEvent) -> None:
            raise RuntimeError("bot bug")

        async def async_bad(e: GuardEvent) -> None:
            raise RuntimeError("async bot bug")

        async def async_ok(e: GuardEvent) -> None:
            async_seen.set()

        guard.on_halt(sync_bad)
        guard.on_halt(async_bad)
        guard.on_halt(async_ok)
        await m.start()
        await seen.resume(1)
        sim.inject(Fault("drop"), exchange="okx")
        halt = await seen.halt(1)  # registered first: runs although two later callbacks fail
        await asyncio.wait_for(async_seen.wait(), 5)
        assert any(r.startswith("connection okx-ws-") for r in halt.reasons), halt.reasons
        await seen.resume(2)  # the failures touched nothing
        assert guard.callback_errors == 2


@pytest.mark.integration
async def test_a_rejected_subscription_and_a_removed_entry_are_not_safe() -> None:
    async with simulated("okx") as (sim, m):
        rejected = asyncio.Event()

        def on_event(e: ConnectionEvent) -> None:
            if e.type is ConnectionEventType.SUBSCRIPTION_REJECTED:
                rejected.set()

        m.on(EVENTS_CHANNEL, on_event, name="okx")
        btc = m.guard("okx", "BTC/USDT", channels=["trades", "book"])
        seen = Transitions(btc)
        await m.start()
        await seen.resume(1)
        sim.inject(Fault("reject"), exchange="okx")
        await m.subscribe("okx", [Subscription(Channel.TICKER, "BTC/USDT")])
        ticker = m.guard("okx", "BTC/USDT", channels=["ticker"])
        await asyncio.wait_for(rejected.wait(), 10)
        assert ticker.status().reasons == ("ticker BTC/USDT rejected by the exchange",)
        assert btc.safe  # the refusal concerns the ticker only
        await m.remove_exchange("okx")
        halt = await seen.halt(1)
        assert halt.reasons == ("entry okx not running",)


@pytest.mark.integration
async def test_a_halt_callback_that_stops_the_manager_leaves_everything_closed() -> None:
    async with simulated("okx") as (sim, m):
        guard = m.guard("okx", "BTC/USDT")
        outcome: list[str] = []
        done = asyncio.Event()

        @guard.on_halt
        async def kill_switch(e: GuardEvent) -> None:  # "on a halt, shut everything down"
            try:
                await m.stop()
                outcome.append("completed")
            except asyncio.CancelledError:
                outcome.append("cancelled")
                raise
            finally:
                done.set()

        await m.start()
        await asyncio.wait_for(guard.wait_safe(), 10)
        (conn,) = m.feeds["okx"].connections.values()
        sim.inject(Fault("drop"), exchange="okx")
        await asyncio.wait_for(done.wait(), 10)
        assert outcome == ["completed"]
        assert m.feeds == {} and conn.state is _C.STOPPED
        assert m._http is None and m.bus.closed  # the HTTP session and the bus were closed too
        assert not m._guards.task_running and guard.status().reasons == ("manager stopped",)
        assert guard.callback_errors == 0


@pytest.mark.integration
async def test_stop_halts_every_guard_while_its_connections_are_still_up() -> None:
    async with simulated("okx") as (_sim, m):
        guard = m.guard("okx", "BTC/USDT")
        seen: list[tuple[tuple[str, ...], dict[str, ConnectionState]]] = []
        guard.on_halt(lambda e: seen.append((e.reasons, m.states()["okx"])))
        await m.start()
        await asyncio.wait_for(guard.wait_safe(), 10)
        await m.stop()
        assert len(seen) == 1
        reasons, states = seen[0]
        assert reasons == ("manager stopping",)
        assert states and set(states.values()) == {_C.CONNECTED}  # halted before the feeds stopped
        assert guard.status().reasons == ("manager stopped",)


def free_port_pair() -> int:
    """A base port N whose okx port (N + 2, the simulator's offset) was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port - PORT_OFFSETS["okx"]


@pytest.mark.integration
def test_a_manager_reused_under_a_second_asyncio_run_guards_again() -> None:
    port = free_port_pair()
    made: list[tuple[ExchangeManager, TradingGuard]] = []

    async def run() -> tuple[bool, int]:
        async with Simulator(
            exchanges=["okx"], mode="synthetic", seed=3, config=sim_config(), port=port
        ) as sim:
            if not made:
                ep = sim.endpoints()["okx"]
                entry = {
                    "symbols": ["BTC/USDT"],
                    "channels": ["trades"],
                    "ws_url": ep["ws_url"],
                    "rest_url": ep["rest_url"],
                    "reconnect": FAST_RECONNECT,
                }
                manager = ExchangeManager(CryptolinkConfig.from_dict({"exchanges": {"okx": entry}}, env={}))
                made.append((manager, manager.guard("okx", "BTC/USDT")))
            m, guard = made[0]
            await m.start()
            try:
                await asyncio.wait_for(guard.wait_safe(), 15)
                return guard.safe, guard.resumes
            finally:
                await m.stop()

    assert asyncio.run(run()) == (True, 1)
    assert asyncio.run(run()) == (True, 2)  # the second loop's guard judged, waited for and resumed


def test_the_docs_example_parses_and_names_real_api() -> None:
    text = (Path(__file__).resolve().parents[1] / "docs" / "guard.md").read_text()
    (code,) = re.findall(r"```python\n(.*?)```", text, re.S)
    called = {
        n.func.attr
        for n in ast.walk(ast.parse(code))
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
    }
    decorators = {
        d.attr
        for n in ast.walk(ast.parse(code))
        if isinstance(n, ast.AsyncFunctionDef | ast.FunctionDef)
        for d in n.decorator_list
        if isinstance(d, ast.Attribute)
    }
    assert {"guard", "wait_safe", "status"} <= called and {"on_halt", "on_resume"} <= decorators
    for name in ("wait_safe", "status", "on_halt", "on_resume"):
        assert callable(getattr(TradingGuard, name)), name
    guard = offline_manager().guard("okx-spot", "BTC/USDT")  # the names the example uses, on a real guard
    assert guard.safe is False and guard.status().reasons == ("manager not started",)
    assert guard.on_halt(print) is print and guard.on_resume(print) is print


async def test_guard_counters_reach_the_manager_statistics_and_metrics() -> None:
    """A guard's halts and resumes are counted in the manager's statistics snapshot and in /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    from cryptolink.config import StatusConfig
    from cryptolink.status.metrics import MetricsExporter
    from cryptolink.status.service import StatusService

    async with Simulator(exchanges=["okx"], speed=1.0) as sim:
        ep = sim.endpoints()["okx"]
        manager = (
            ExchangeManager.builder()
            .exchange(
                "okx", symbols=["BTC/USDT"], channels=["trades"], ws_url=ep["ws_url"], rest_url=ep["rest_url"]
            )
            .build()
        )
        service = StatusService(manager, StatusConfig())
        await manager.start()
        try:
            guard = manager.guard("okx", "BTC/USDT")
            await guard.wait_safe(timeout=20)
            stats = manager.stats().guards
            assert stats is not None and (stats.guards, stats.safe, stats.resumes) == (1, 1, 1)
            service.refresh()
            body, _ = MetricsExporter(service, process=False).render()
        finally:
            await manager.stop()
    samples = {s.name: s.value for f in text_string_to_metric_families(body.decode()) for s in f.samples}
    assert samples["cryptolink_guards_open"] == 1 and samples["cryptolink_guards_safe"] == 1
    assert samples["cryptolink_guard_resumes_total"] == 1 and samples["cryptolink_guard_halts_total"] == 0
