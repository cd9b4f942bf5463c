"""The status service: snapshots handed to listeners, a push at once on a state change (not only on the
period), bounded push queues whose drops are counted, the bounded event ring, and the periodic report."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from cryptolink.config import CryptolinkConfig, StatusConfig
from cryptolink.engine import ConnectionEventType
from cryptolink.manager import ExchangeManager
from cryptolink.simulator import Fault, Simulator
from cryptolink.status.service import PUSH_QUEUE_SIZE, PushClient, StatusService
from cryptolink.status.snapshot import StatusSnapshot
from tests.status.factories import event

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
        msg = await client.get()
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
