"""Status across instances through the real Redis on 127.0.0.1:6379: two instances publish and read as live and
healthy, one whose snapshot expired reads as unknown and never healthy, a write during a write is skipped and
counted, old index entries are pruned, an unreachable Redis is counted and logged once per outage (never with
the password) and the reader answers an error document instead of raising; the surface wires it all to
``/api/cluster/status``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator
from typing import Any
from uuid import uuid4

import httpx
import msgspec
import pytest
import redis.asyncio as aioredis
from pydantic import SecretStr

from cryptolink.config import CryptolinkConfig, StatusConfig
from cryptolink.manager import ExchangeManager
from cryptolink.simulator import Simulator
from cryptolink.status import documents
from cryptolink.status.cluster import (
    ClusterStatus,
    RedisStatusPublisher,
    index_key,
    redact_url,
    status_key,
)
from cryptolink.status.service import StatusService
from cryptolink.status.snapshot import StatusSnapshot
from cryptolink.status.surface import StatusSurface

pytestmark = [pytest.mark.timeout(60), pytest.mark.integration]

REDIS_URL = "redis://127.0.0.1:6379/0"
PASSWORD = "pw-5c1e9d-not-a-real-password"


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    """A key prefix of this test alone; every key under it is deleted afterwards."""
    name = f"cltest-{uuid4().hex}"
    yield name
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        keys = [k async for k in client.scan_iter(match=f"{name}:*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def redis_client() -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        yield client
    finally:
        await client.aclose()


def okx_manager(sim: Simulator | None = None) -> ExchangeManager:
    """A manager of one okx BTC/USDT entry (on the simulator when given; never started otherwise)."""
    entry: dict[str, Any] = {"symbols": ["BTC/USDT"]}
    if sim is not None:
        ep = sim.endpoints()["okx"]
        entry.update(ws_url=ep["ws_url"], rest_url=ep["rest_url"])
    return ExchangeManager(CryptolinkConfig.from_dict({"exchanges": {"okx": entry}}, env={}))


def status_service(manager: ExchangeManager, instance_id: str) -> StatusService:
    """A status service whose loop is never started: snapshots are taken by ``refresh()`` only."""
    return StatusService(manager, StatusConfig(push_interval_s=3600), instance_id=instance_id)


async def until_healthy(manager: ExchangeManager) -> None:
    """Wait (event-driven, on the snapshot listener) until a snapshot of ``manager`` is healthy."""
    probe = StatusService(
        manager, StatusConfig(snapshot_interval_s=0.05, push_interval_s=3600), instance_id="probe"
    )
    healthy = asyncio.Event()

    def check(snap: StatusSnapshot) -> None:
        if documents.health(snap)[0]:
            healthy.set()

    probe.add_snapshot_listener(check)
    await probe.start()
    try:
        await asyncio.wait_for(healthy.wait(), 30)
    finally:
        await probe.stop()


async def publish(service: StatusService, publisher: RedisStatusPublisher) -> StatusSnapshot:
    """Take a snapshot and wait until ``publisher`` has finished writing it."""
    await publisher.wait_idle()
    snap = service.refresh()
    await asyncio.wait_for(publisher.wait_idle(), 10)
    return snap


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def by_id(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {i["instance_id"]: i for i in doc["instances"]}


# ------------------------------------------------------------------------------------------ URL redaction
@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://:hunter2@10.0.0.1:6379/0", "redis://:***@10.0.0.1:6379/0"),
        ("rediss://ops:hunter2@redis.example:6380/1", "rediss://ops:***@redis.example:6380/1"),
        ("redis://hunter2@10.0.0.1:6379", "redis://***@10.0.0.1:6379"),
        ("redis://10.0.0.1:6379/0?password=hunter2&db=2", "redis://10.0.0.1:6379/0?password=***&db=2"),
        ("unix://:hunter2@/run/redis.sock?db=0", "unix://:***@/run/redis.sock?db=0"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ],
)
def test_the_password_is_redacted_from_urls(url: str, expected: str) -> None:
    assert redact_url(url) == expected


# --------------------------------------------------------------------------------------------- publishing
async def test_two_instances_publish_and_both_read_live_and_healthy(prefix: str) -> None:
    async with Simulator(exchanges=["okx"], speed=1.0) as sim:
        manager = okx_manager(sim)
        services = [status_service(manager, "inst-a"), status_service(manager, "inst-b")]
        publishers = [RedisStatusPublisher(s, REDIS_URL, prefix=prefix, ttl_s=5.0) for s in services]
        reader = ClusterStatus(REDIS_URL, prefix=prefix, ttl_s=5.0)
        try:
            for p in publishers:
                await p.start()
            await manager.start()
            await until_healthy(manager)
            for s, p in zip(services, publishers, strict=True):
                await publish(s, p)
            doc = await reader.read()
        finally:
            await manager.stop()
            for p in publishers:
                await p.aclose()
            await reader.aclose()

    assert "error" not in doc
    assert doc["summary"] == {"instances": 2, "live": 2, "unknown": 0, "healthy": 2, "omitted": 0}
    instances = by_id(doc)
    assert sorted(instances) == ["inst-a", "inst-b"]
    for iid, inst in instances.items():
        assert inst["state"] == "live" and inst["healthy"] is True
        assert inst["status"]["instance_id"] == iid
        conns = inst["status"]["exchange_connections"]["connections"]
        assert [c["exchange_name"] for c in conns] == ["okx"] and conns[0]["status"] == "connected"
        assert inst["last_seen"].endswith("Z") and inst["age_s"] >= 0
    for p in publishers:
        st = p.stats()
        assert st.writes >= 1 and st.errors == 0 and st.connected and st.last_error is None
    async with redis_client() as client:
        ttl_ms = await client.pttl(status_key(prefix, "inst-a"))
        assert 0 < ttl_ms <= 5000  # written with the snapshot lifetime
        seen = await client.zrange(index_key(prefix), 0, -1)
        assert sorted(seen) == [b"inst-a", b"inst-b"]


async def test_an_instance_whose_snapshot_expired_is_unknown_and_never_healthy(prefix: str) -> None:
    manager = okx_manager()  # never started: published as live but unhealthy
    live, gone = status_service(manager, "live-1"), status_service(manager, "gone-1")
    pub_live = RedisStatusPublisher(live, REDIS_URL, prefix=prefix, ttl_s=1.0)
    pub_gone = RedisStatusPublisher(gone, REDIS_URL, prefix=prefix, ttl_s=1.0)
    reader = ClusterStatus(REDIS_URL, prefix=prefix, ttl_s=1.0)
    try:
        for s, p in ((live, pub_live), (gone, pub_gone)):
            await p.start()
            await publish(s, p)
        await pub_gone.aclose()
        async with redis_client() as client:
            assert 0 < await client.pttl(status_key(prefix, "gone-1")) <= 1000
            # expire it now rather than waiting out the 1 s lifetime: a timeout <= 0 expires the key at once
            await client.pexpire(status_key(prefix, "gone-1"), 0)
        doc = await reader.read()
        gone.refresh()  # a snapshot after aclose() is not written
        assert pub_gone.stats().writes == 1
    finally:
        await pub_live.aclose()
        await reader.aclose()

    instances = by_id(doc)
    assert instances["gone-1"]["state"] == "unknown"
    assert instances["gone-1"]["healthy"] is False and instances["gone-1"]["status"] is None
    assert instances["gone-1"]["last_seen"] is not None
    assert instances["live-1"]["state"] == "live"
    assert instances["live-1"]["healthy"] is False  # okx is enabled but not running
    assert doc["summary"] == {"instances": 2, "live": 1, "unknown": 1, "healthy": 0, "omitted": 0}


async def test_a_snapshot_taken_while_a_write_is_in_flight_is_skipped_and_counted(prefix: str) -> None:
    service = status_service(okx_manager(), "busy-1")
    publisher = RedisStatusPublisher(service, REDIS_URL, prefix=prefix, ttl_s=5.0)
    await publisher.start()
    try:
        service.refresh()  # starts a write (the task has not run yet)
        service.refresh()  # arrives while it is in flight
        await asyncio.wait_for(publisher.wait_idle(), 10)
    finally:
        await publisher.aclose()
    st = publisher.stats()
    assert (st.writes, st.skipped, st.errors) == (1, 1, 0)


async def test_index_entries_older_than_the_bound_are_pruned(prefix: str) -> None:
    service = status_service(okx_manager(), "fresh-1")
    publisher = RedisStatusPublisher(service, REDIS_URL, prefix=prefix, ttl_s=5.0, forget_after_s=60.0)
    now_ms = time.time_ns() // 1_000_000
    async with redis_client() as client:
        await client.zadd(index_key(prefix), {"ancient-1": now_ms - 120_000, "recent-1": now_ms - 30_000})
        await publisher.start()
        try:
            await publish(service, publisher)
        finally:
            await publisher.aclose()
        members = sorted(await client.zrange(index_key(prefix), 0, -1))
        index_ttl = await client.pttl(index_key(prefix))
    assert members == [b"fresh-1", b"recent-1"]
    assert 0 < index_ttl <= 60_000  # the index goes away too once nobody writes for the bound


async def test_an_unreadable_snapshot_is_unknown_with_the_reason(prefix: str) -> None:
    now_ms = time.time_ns() // 1_000_000
    async with redis_client() as client:
        await client.zadd(index_key(prefix), {"odd-1": now_ms})
        await client.set(status_key(prefix, "odd-1"), b"{not json", px=5000)
    reader = ClusterStatus(REDIS_URL, prefix=prefix)
    try:
        doc = await reader.read()
    finally:
        await reader.aclose()
    (inst,) = doc["instances"]
    assert inst["state"] == "unknown" and inst["healthy"] is False and "undecodable" in inst["error"]


async def test_the_reader_reads_at_most_its_bound_and_counts_the_rest(prefix: str) -> None:
    now_ms = time.time_ns() // 1_000_000
    async with redis_client() as client:
        await client.zadd(index_key(prefix), {"old-1": now_ms - 5000, "new-1": now_ms})
    reader = ClusterStatus(REDIS_URL, prefix=prefix, max_instances=1)
    try:
        doc = await reader.read()
    finally:
        await reader.aclose()
    assert [i["instance_id"] for i in doc["instances"]] == ["new-1"]  # the most recently seen
    assert doc["summary"]["omitted"] == 1


# ---------------------------------------------------------------------------------------------- failures
async def test_an_unreachable_redis_is_counted_logged_once_and_never_raises(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"redis://:{PASSWORD}@127.0.0.1:{closed_port()}/0"
    service = status_service(okx_manager(), "lonely-1")
    publisher = RedisStatusPublisher(service, url, prefix=prefix, ttl_s=5.0)
    reader = ClusterStatus(url, prefix=prefix)
    caplog.set_level(logging.INFO, logger="cryptolink.status")
    await publisher.start()
    try:
        for _ in range(3):
            await publish(service, publisher)
        doc = await reader.read()
    finally:
        await publisher.aclose()
        await reader.aclose()

    st = publisher.stats()
    assert (st.writes, st.errors, st.connected) == (0, 3, False)
    assert st.last_error is not None and "Connect" in st.last_error
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "write to Redis" in r.message]
    assert len(warnings) == 1  # once per outage, not once per snapshot
    assert doc["instances"] == [] and "Connect" in doc["error"]
    assert doc["redis"] == f"redis://:***@127.0.0.1:{url.rsplit(':', 1)[1]}"
    assert reader.errors == 1
    assert PASSWORD not in caplog.text and PASSWORD not in msgspec.json.encode(doc).decode()
    assert PASSWORD not in st.last_error


async def _forward(port: int, started: asyncio.Event, stop: asyncio.Event) -> None:
    """Listen on ``port`` and forward every connection to the real Redis (Redis "coming back")."""

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", 6379)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    started.set()
    async with server:
        await stop.wait()


async def test_writes_resume_when_redis_comes_back_and_the_recovery_is_logged(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    port = closed_port()
    service = status_service(okx_manager(), "phoenix-1")
    publisher = RedisStatusPublisher(service, f"redis://127.0.0.1:{port}/0", prefix=prefix, ttl_s=5.0)
    caplog.set_level(logging.INFO, logger="cryptolink.status")
    started, stop = asyncio.Event(), asyncio.Event()
    await publisher.start()
    forwarder: asyncio.Task[None] | None = None
    try:
        await publish(service, publisher)
        await publish(service, publisher)
        assert publisher.stats().errors == 2 and not publisher.stats().connected
        forwarder = asyncio.create_task(_forward(port, started, stop))
        await asyncio.wait_for(started.wait(), 5)
        await publish(service, publisher)
    finally:
        await publisher.aclose()
        stop.set()
        if forwarder is not None:
            await asyncio.wait_for(forwarder, 5)
    st = publisher.stats()
    assert (st.writes, st.errors, st.connected) == (1, 2, True)
    recovered = [r for r in caplog.records if r.levelno == logging.INFO and "again" in r.message]
    assert len(recovered) == 1 and "after 2 failed writes" in recovered[0].message
    async with redis_client() as client:
        assert await client.exists(status_key(prefix, "phoenix-1")) == 1


# ------------------------------------------------------------------------------------------------ surface
async def test_the_surface_publishes_and_serves_the_cluster_document(prefix: str) -> None:
    config = StatusConfig(
        port=0,
        redis_url=SecretStr(REDIS_URL),
        redis_prefix=prefix,
        redis_ttl_s=5.0,
        instance_id="surface-1",
        push_interval_s=3600,
        snapshot_interval_s=30,
    )
    surface = StatusSurface(okx_manager(), config)
    written = asyncio.Event()
    surface.service.add_snapshot_listener(lambda snap: written.set())
    assert surface.redis_publisher is not None and surface.server is None
    try:
        await surface.start()
        await asyncio.wait_for(written.wait(), 10)  # the loop's first snapshot ...
        await asyncio.wait_for(surface.redis_publisher.wait_idle(), 10)  # ... is in Redis
        assert surface.server is not None
        async with httpx.AsyncClient() as http:
            answer = await http.get(f"{surface.server.url}/api/cluster/status")
    finally:
        await surface.stop()
    doc = answer.json()
    assert answer.status_code == 200
    assert [i["instance_id"] for i in doc["instances"]] == ["surface-1"]
    assert doc["instances"][0]["state"] == "live"
    assert surface.redis_publisher.stats().writes >= 2  # the first snapshot and the last one at stop
