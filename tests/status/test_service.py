"""The status service: snapshots handed to listeners, a push at once on a state change (not only on the
period, debounced), bounded push queues whose drops are counted, one encoding per push, the bounded event ring,
the periodic report, a snapshot loop that survives failing passes (counted, logged once a minute), a stop that
never raises, and host figures read off the loop with a timeout."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
from dataclasses import replace
from typing import Any

import pytest

from cryptolink.clock import FakeClock
from cryptolink.config import CryptolinkConfig, StatusConfig
from cryptolink.engine import ConnectionEventType
from cryptolink.manager import ExchangeManager
from cryptolink.models import Channel
from cryptolink.simulator import Fault, Simulator
from cryptolink.status import documents
from cryptolink.status import service as service_module
from cryptolink.status.host import EMPTY_FIGURES, HostFigures, HostReader, HostSampler
from cryptolink.status.service import (
    PUSH_QUEUE_SIZE,
    ErrorThrottle,
    PushClient,
    PushSchedule,
    StatusService,
    send_timeout_s,
)
from cryptolink.status.snapshot import RECENT_EVENTS, StatusSnapshot
from tests.status.factories import HOST, event

pytestmark = [pytest.mark.timeout(60)]


def _manager(sim: Simulator | None = None) -> ExchangeManager:
    entry: dict[str, object] = {"symbols": ["BTC/USDT"]}
    if sim is not None:
        ep = sim.endpoints()["okx"]
        entry.update(ws_url=ep["ws_url"], rest_url=ep["rest_url"])
    return ExchangeManager(CryptolinkConfig.from_dict({"exchanges": {"okx": entry}}, env={}))


async def _next_status(client: PushClient, status: str) -> dict[str, Any]:
    """The next push whose okx connection shows ``status``."""
    while True:
        msg: dict[str, Any] = json.loads(await client.get())
        conns = msg["data"]["connections"]
        if conns and conns[0]["status"] == status:
            return msg


async def test_a_state_change_is_pushed_at_once_not_on_the_period() -> None:
    async with Simulator(exchanges=["okx"], speed=1.0) as sim:
        manager = _manager(sim)
        # a push period far beyond the test's timeout: only state changes can push
        service = StatusService(manager, StatusConfig(push_interval_s=3600, snapshot_interval_s=30))
        await service.start()
        client = service.connect_client()
        assert client is not None
        try:
            await manager.start()
            await asyncio.wait_for(_next_status(client, "connected"), 20)
            sim.inject(Fault("outage", duration_s=2.0), exchange="okx")
            down = await asyncio.wait_for(_next_status(client, "reconnecting"), 20)
            assert down["data"]["summary"]["healthy"] is False
            await asyncio.wait_for(_next_status(client, "connected"), 30)
        finally:
            await manager.stop()
            await service.stop()
    assert service.pushes >= 3
    assert down["data"]["push_interval_s"] == 3600  # the page's staleness bound
    kinds = {r.event.type for r in service.events()}
    assert ConnectionEventType.STATE_CHANGED in kinds and ConnectionEventType.DATA_RECEIVED not in kinds


async def test_snapshots_reach_listeners_on_the_interval_and_a_failing_listener_is_counted() -> None:
    manager = _manager()
    service = StatusService(manager, StatusConfig(snapshot_interval_s=0.01, push_interval_s=3600))
    seen: list[StatusSnapshot] = []
    three = asyncio.Event()

    def listener(snap: StatusSnapshot) -> None:
        seen.append(snap)
        if len(seen) >= 3:
            three.set()

    def broken(snap: StatusSnapshot) -> None:
        raise RuntimeError("boom")

    service.add_snapshot_listener(broken)
    service.add_snapshot_listener(listener)
    await service.start()
    try:
        await asyncio.wait_for(three.wait(), 10)
    finally:
        await service.stop()
    assert service.listener_errors >= 3  # the broken one failed every time; the good one still ran
    assert seen[0].taken_ns <= seen[1].taken_ns <= seen[2].taken_ns
    assert seen[0].enabled == ("okx",) and seen[0].instance_id == service.instance_id


def test_a_slow_client_keeps_the_newest_messages_and_every_drop_is_counted() -> None:
    service = StatusService(_manager(), StatusConfig())
    client = service.connect_client()  # gets the current message at once
    assert client is not None
    snap = service.refresh()
    for _ in range(PUSH_QUEUE_SIZE + 2):
        service.push(snap)
    assert client.dropped == 3 and service.push_dropped == 3
    assert service.refresh().push_dropped == 3  # visible in the snapshot (and /metrics)
    service.disconnect_client(client)
    service.push(snap)
    assert service.clients == 0 and service.push_dropped == 3


def test_the_event_ring_is_bounded_and_counts_what_it_pushed_out() -> None:
    service = StatusService(_manager(), StatusConfig(events_kept=3))
    for i in range(1, 6):
        service._on_event(event(i).event)
    service._on_event(event(9, ConnectionEventType.DATA_RECEIVED).event)  # sampled notes are not kept
    assert [r.seq for r in service.events()] == [3, 4, 5]
    assert [r.seq for r in service.events(since=4)] == [5]
    assert service.events_evicted == 2 and service.refresh().events_evicted == 2


async def test_the_connection_report_is_logged_on_its_period(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="cryptolink.status")
    service = StatusService(_manager(), StatusConfig(snapshot_interval_s=0.01, report_interval_s=0.05))
    logged = asyncio.Event()
    service.add_snapshot_listener(lambda _: logged.set() if service.reports_logged >= 2 else None)
    await service.start()
    try:
        await asyncio.wait_for(logged.wait(), 10)
    finally:
        await service.stop()
    reports = [r for r in caplog.records if r.getMessage().startswith("connection report")]
    assert len(reports) >= 2 and "cryptolink connection report" in reports[0].getMessage()


async def test_a_failing_pass_is_counted_logged_once_a_minute_and_the_loop_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="cryptolink.status")
    manager = _manager()
    real_snapshot = manager.snapshot
    failures = 0

    def flaky() -> Any:  # the engine's snapshot fails five times in a row, then works again
        nonlocal failures
        if failures < 5:
            failures += 1
            raise OSError("transient /proc read failure")
        return real_snapshot()

    service = StatusService(manager, StatusConfig(snapshot_interval_s=0.01, push_interval_s=3600))
    await service.start()  # the first pass works: the latest snapshot exists
    recovered = asyncio.Event()
    seen: list[StatusSnapshot] = []

    def listener(snap: StatusSnapshot) -> None:
        seen.append(snap)
        if snap.snapshot_errors == 5:
            recovered.set()

    service.add_snapshot_listener(listener)
    manager.snapshot = flaky  # type: ignore[method-assign]
    try:
        await asyncio.wait_for(recovered.wait(), 10)
    finally:
        await service.stop()
    assert service.snapshot_errors == 5 and service.latest.snapshot_errors == 5
    logged = [r for r in caplog.records if "snapshot pass failed" in r.getMessage()]
    assert len(logged) == 1, logged  # the first failure; the next four are within the minute
    assert logged[0].levelno == logging.ERROR and logged[0].exc_info is not None  # with its traceback
    assert "transient /proc read failure" in caplog.text


async def test_stop_never_raises_even_when_the_last_snapshot_fails() -> None:
    manager = _manager()
    service = StatusService(manager, StatusConfig(snapshot_interval_s=0.01, push_interval_s=3600))
    await service.start()
    first = service.latest

    def broken() -> Any:
        raise RuntimeError("engine gone")

    manager.snapshot = broken  # type: ignore[method-assign]
    await service.stop()  # no exception
    assert service.snapshot_errors >= 1
    assert service.latest is first  # the views keep the last good snapshot


def test_the_error_throttle_logs_the_first_then_once_per_interval() -> None:
    throttle = ErrorThrottle(60.0)
    assert throttle.allow(100.0) == (True, 0)
    assert throttle.allow(101.0)[0] is False
    assert throttle.allow(159.9)[0] is False
    assert throttle.allow(160.0) == (True, 2)  # two failures were not logged since the last one
    assert throttle.allow(161.0)[0] is False


def test_state_change_pushes_are_debounced_and_the_period_restarts_after_a_push() -> None:
    schedule = PushSchedule(interval_s=5.0, debounce_s=0.25)
    schedule.start(0.0)
    assert not schedule.due(4.9) and schedule.due(5.0)
    schedule.pushed(5.0)
    schedule.state_changed()  # within 0.25 s of the last push: waits for the window's end
    assert not schedule.due(5.1) and schedule.deadline() == 5.25 and schedule.due(5.25)
    schedule.pushed(5.25)
    assert schedule.deadline() == 10.25  # nothing changed since: the next one is a period later
    schedule.state_changed()
    assert schedule.due(9.0)  # long after the last push: at once
    schedule.pushed(9.0)
    schedule.state_changed()
    schedule.state_changed()  # several changes in one window: one push
    assert schedule.deadline() == 9.25
    schedule.pushed(9.25)
    assert not schedule.changed and not schedule.due(9.3)


def test_one_encoding_per_push_is_shared_by_every_client() -> None:
    service = StatusService(_manager(), StatusConfig(push_interval_s=7))
    a, b = service.connect_client(), service.connect_client()
    assert a is not None and b is not None
    snap = service.refresh()
    service.push(snap)
    at_connect, texts = [], []
    for client in (a, b):
        at_connect.append(client._queue.get_nowait())  # the latest snapshot's message
        texts.append(client._queue.get_nowait())
    assert at_connect[0] is at_connect[1]  # one encoding of the latest snapshot for every new client
    assert texts[0] is texts[1]  # the same str object: encoded once per push, not once per client
    assert json.loads(texts[0])["data"]["push_interval_s"] == 7


def test_clients_beyond_the_bound_are_refused_and_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(service_module, "MAX_PUSH_CLIENTS", 2)
    service = StatusService(_manager(), StatusConfig())
    assert service.connect_client() is not None and service.connect_client() is not None
    assert service.connect_client() is None
    assert service.clients == 2 and service.push_clients_refused == 1
    assert service.refresh().push_clients_refused == 1


def test_a_snapshot_carries_the_latest_events_in_order() -> None:
    service = StatusService(_manager(), StatusConfig(events_kept=1000))
    for i in range(1, 121):
        service._on_event(event(i).event)
    assert [r.seq for r in service.refresh().events] == list(range(121 - RECENT_EVENTS, 121))


def test_the_send_timeout_is_two_push_periods_at_least_one_second() -> None:
    assert send_timeout_s(5.0) == 10.0 and send_timeout_s(0.2) == 1.0
    assert StatusService(_manager(), StatusConfig(push_interval_s=30)).send_timeout_s == 60.0


async def test_the_snapshot_age_and_staleness_follow_the_clock() -> None:
    clock = FakeClock()
    service = StatusService(_manager(), StatusConfig(snapshot_interval_s=2.0), clock=clock)
    snap = service.refresh()
    assert service.age_s(snap) == 0.0 and service.staleness(snap) is None
    await clock.advance(6.0)  # exactly three intervals: still fresh
    assert service.staleness(snap) is None
    await clock.advance(0.5)
    reason = service.staleness(snap)
    assert reason is not None and reason.startswith("status snapshot stale") and "6.5 s old" in reason


class _BlockingSampler(HostSampler):
    """A host sampler whose sample waits for :attr:`release` (a hung filesystem), counting its calls."""

    def __init__(self) -> None:
        super().__init__(".")
        self.release = threading.Event()
        self.calls = 0

    def sample(self) -> HostFigures:
        self.calls += 1
        if not self.release.wait(30):
            raise TimeoutError("never released")
        return replace(HOST, disk_path="released")


async def test_a_hung_host_reading_keeps_the_previous_figures_and_holds_one_thread() -> None:
    sampler = _BlockingSampler()
    reader = HostReader(sampler, timeout_s=0.05)
    try:
        assert await reader.read() is EMPTY_FIGURES  # nothing read yet: the empty figures, not a hang
        assert await reader.read() is EMPTY_FIGURES
        assert reader.timeouts == 2 and sampler.calls == 1  # the hung sample is waited on, not started again
    finally:
        sampler.release.set()
    figures = await asyncio.wait_for(reader.read(), 10)  # the same sample returns
    assert figures.disk_path == "released" and reader.latest is figures and sampler.calls == 1
    await asyncio.wait_for(reader.read(), 10)  # the next read samples again
    assert sampler.calls == 2 and reader.timeouts == 2


async def test_the_service_counts_host_timeouts_in_its_snapshot() -> None:
    sampler = _BlockingSampler()
    service = StatusService(
        _manager(),
        StatusConfig(snapshot_interval_s=0.01, push_interval_s=3600),
        host=sampler,
        host_timeout_s=0.02,
    )
    two = asyncio.Event()
    service.add_snapshot_listener(lambda snap: two.set() if snap.host_timeouts >= 2 else None)
    try:
        await service.start()
        await asyncio.wait_for(two.wait(), 10)  # the loop goes on while the host hangs
    finally:
        sampler.release.set()
        await service.stop()
    assert service.latest.host_timeouts >= 2 and sampler.calls == 1


def test_a_host_reading_gives_the_disk_share_as_used_over_total() -> None:
    figures = HostSampler(".").sample()
    assert figures.disk_total > 0
    assert figures.disk_percent == round(100.0 * figures.disk_used / figures.disk_total, 1)


async def test_subscriptions_not_asked_yet_read_unsent_not_pending() -> None:
    closed = socket.socket()  # a port nothing listens on: the connection never gets a socket to ask on
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    entry = {
        "symbols": ["BTC/USDT"],
        "ws_url": f"ws://127.0.0.1:{port}/ws",
        "rest_url": f"http://127.0.0.1:{port}",
    }
    cfg = CryptolinkConfig.from_dict({"exchanges": {"okx": entry}, "verify_symbols": False}, env={})
    manager = ExchangeManager(cfg)
    service = StatusService(manager, StatusConfig())
    await manager.start()
    try:
        detail = documents.connections_detail(service.refresh())
        states = {s["state"] for c in detail["connections"] for s in c["subscriptions"]}
        assert states == {"unsent"}, detail["connections"]
        conn = manager.feeds["okx"].connection_of(Channel.TRADES, "BTC/USDT")
        assert conn is not None
        status = conn.stream_status((Channel.TRADES, "BTC/USDT"))
        assert status is not None and status.state == "unsent"
    finally:
        await manager.stop()
