"""Status across instances through the real Redis on 127.0.0.1:6379: two instances publish and read as live and
healthy, one whose snapshot expired (a crash) reads as unknown and never healthy, one stopped cleanly reads as
stopped, two processes sharing an instance id are flagged, a write during a write is skipped and counted, old
index entries are pruned, an unreachable Redis is counted and logged once per outage (never with the password)
and the reader answers an error document instead of raising; concurrent reads share one Redis read; the
surface wires it all to ``/api/cluster/status``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import pytest
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from cryptolink.config import CryptolinkConfig, StatusConfig
from cryptolink.manager import ExchangeManager
from cryptolink.simulator import Simulator
from cryptolink.status import documents
from cryptolink.status.cluster import (
    MAX_CONNECTIONS,
    REDIS_TIMEOUT_S,
    ClusterStatus,
    RedisStatusPublisher,
    collision_key,
    index_key,
    status_key,
)
from cryptolink.status.metrics import MetricsExporter
from cryptolink.status.service import StatusService
from cryptolink.status.snapshot import StatusSnapshot
from cryptolink.status.surface import StatusSurface
from tests.redis_keys import redis_prefix

pytestmark = [pytest.mark.timeout(60), pytest.mark.integration]

REDIS_URL = "redis://127.0.0.1:6379/0"
PASSWORD = "pw-5c1e9d-not-a-real-password"


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    """A key prefix of this test alone; every key under it is deleted afterwards."""
    async with redis_prefix("cltest") as name:
        yield name


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


# --------------------------------------------------------------------------------------------- publishing
@contextlib.asynccontextmanager
async def publishing(
    prefix: str, ids: tuple[str, ...]
) -> AsyncIterator[tuple[list[StatusService], list[RedisStatusPublisher]]]:
    """One manager against the simulator, healthy, with one status service and publisher per id, each
    having written a snapshot; everything stopped on exit."""
    async with Simulator(exchanges=["okx"], speed=1.0) as sim:
        manager = okx_manager(sim)
        services = [status_service(manager, i) for i in ids]
        publishers = [RedisStatusPublisher(s, REDIS_URL, prefix=prefix, ttl_s=5.0) for s in services]
        try:
            for p in publishers:
                await p.start()
            await manager.start()
            await until_healthy(manager)
            for s, p in zip(services, publishers, strict=True):
                await publish(s, p)
            yield services, publishers
        finally:
            await manager.stop()
            for p in publishers:
                await p.aclose()


async def test_two_instances_publish_and_both_read_live_and_healthy(prefix: str) -> None:
    reader = ClusterStatus(REDIS_URL, prefix=prefix, ttl_s=5.0)
    try:
        async with publishing(prefix, ("inst-a", "inst-b")) as (_, publishers):
            doc = await reader.read()
            async with redis_client() as client:
                ttl_ms = await client.pttl(status_key(prefix, "inst-a"))
                seen = await client.zrange(index_key(prefix), 0, -1)
    finally:
        await reader.aclose()

    assert "error" not in doc
    assert doc["summary"] == {
        "instances": 2,
        "live": 2,
        "unknown": 0,
        "stopped": 0,
        "healthy": 2,
        "collisions": 0,
        "omitted": 0,
    }
    instances = by_id(doc)
    assert sorted(instances) == ["inst-a", "inst-b"]
    for iid, inst in instances.items():
        assert inst["state"] == "live" and inst["healthy"] is True and inst["collision"] is False
        assert inst["status"]["instance_id"] == iid
        assert "writer" not in inst["status"]  # the publisher's token stays out of the status document
        conns = inst["status"]["exchange_connections"]["connections"]
        assert [c["exchange_name"] for c in conns] == ["okx"] and conns[0]["status"] == "connected"
        assert inst["last_seen"].endswith("Z") and inst["age_s"] >= 0
    for p in publishers:
        st = p.stats()
        assert st.writes >= 1 and st.errors == 0 and st.connected and st.last_error is None
    assert 0 < ttl_ms <= 5000  # written with the snapshot lifetime
    assert sorted(seen) == [b"inst-a", b"inst-b"]


async def test_an_instance_whose_snapshot_expired_is_unknown_and_never_healthy(prefix: str) -> None:
    """A crash: the publisher stops writing without aclose() and its snapshot expires."""
    manager = okx_manager()  # never started: published as live but unhealthy
    live, gone = status_service(manager, "live-1"), status_service(manager, "gone-1")
    pub_live = RedisStatusPublisher(live, REDIS_URL, prefix=prefix, ttl_s=1.0)
    pub_gone = RedisStatusPublisher(gone, REDIS_URL, prefix=prefix, ttl_s=1.0)
    reader = ClusterStatus(REDIS_URL, prefix=prefix, ttl_s=1.0)
    try:
        for s, p in ((live, pub_live), (gone, pub_gone)):
            await p.start()
            await publish(s, p)
        async with redis_client() as client:
            assert 0 < await client.pttl(status_key(prefix, "gone-1")) <= 1000
            # expire it now rather than waiting out the 1 s lifetime: a timeout <= 0 expires the key at once
            await client.pexpire(status_key(prefix, "gone-1"), 0)
        doc = await reader.read()
    finally:
        await pub_live.aclose()
        await pub_gone.aclose()
        await reader.aclose()

    instances = by_id(doc)
    assert instances["gone-1"]["state"] == "unknown"
    assert instances["gone-1"]["healthy"] is False and instances["gone-1"]["status"] is None
    assert instances["gone-1"]["last_seen"] is not None
    assert instances["live-1"]["state"] == "live"
    assert instances["live-1"]["healthy"] is False  # okx is enabled but not running
    assert doc["summary"] == {
        "instances": 2,
        "live": 1,
        "unknown": 1,
        "stopped": 0,
        "healthy": 0,
        "collisions": 0,
        "omitted": 0,
    }


async def test_a_clean_stop_leaves_a_stopped_tombstone_and_nothing_is_written_after(prefix: str) -> None:
    manager = okx_manager()
    live, stopping = status_service(manager, "live-1"), status_service(manager, "stop-1")
    pub_live = RedisStatusPublisher(live, REDIS_URL, prefix=prefix, ttl_s=1.0)
    pub_stop = RedisStatusPublisher(stopping, REDIS_URL, prefix=prefix, ttl_s=1.0, forget_after_s=60.0)
    reader = ClusterStatus(REDIS_URL, prefix=prefix, ttl_s=1.0)
    try:
        for s, p in ((live, pub_live), (stopping, pub_stop)):
            await p.start()
            await publish(s, p)
        await pub_stop.aclose()
        async with redis_client() as client:
            tombstone = await client.get(status_key(prefix, "stop-1"))
            lifetime_ms = await client.pttl(status_key(prefix, "stop-1"))
        stopping.refresh()  # a snapshot after aclose() is not written: the tombstone stays
        await asyncio.wait_for(pub_stop.wait_idle(), 5)
        async with redis_client() as client:
            assert await client.get(status_key(prefix, "stop-1")) == tombstone
        doc = await reader.read()
    finally:
        await pub_live.aclose()
        await reader.aclose()

    assert tombstone is not None
    stone = json.loads(tombstone)
    assert (
        stone["state"] == "stopped" and stone["instance_id"] == "stop-1" and stone["stopped_at"].endswith("Z")
    )
    assert 1000 < lifetime_ms <= 60_000  # kept as long as the index remembers the instance, not ttl_s
    st = pub_stop.stats()
    assert (st.writes, st.errors) == (1, 0)
    inst = by_id(doc)["stop-1"]
    assert inst["state"] == "stopped" and inst["healthy"] is False and inst["status"] is None
    assert inst["stopped_at"] == stone["stopped_at"] and inst["collision"] is False
    assert doc["summary"] == {
        "instances": 2,
        "live": 1,
        "unknown": 0,
        "stopped": 1,
        "healthy": 0,
        "collisions": 0,
        "omitted": 0,
    }


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
        redis_ttl_s=120.0,  # at least 2 snapshot intervals + 2 s
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


# ---------------------------------------------------------------------------------- one id, two processes
def collision_warnings(caplog: pytest.LogCaptureFixture, instance_id: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.levelno == logging.WARNING and "same instance id" in r.message and repr(instance_id) in r.message
    ]


async def test_two_processes_writing_one_instance_id_are_counted_flagged_and_both_keep_writing(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    manager = okx_manager()
    a, b = status_service(manager, "twin-1"), status_service(manager, "twin-1")
    pub_a = RedisStatusPublisher(a, REDIS_URL, prefix=prefix, ttl_s=5.0)
    pub_b = RedisStatusPublisher(b, REDIS_URL, prefix=prefix, ttl_s=5.0)
    reader = ClusterStatus(REDIS_URL, prefix=prefix, ttl_s=5.0)
    caplog.set_level(logging.INFO, logger="cryptolink.status")
    assert pub_a.writer != pub_b.writer
    try:
        await pub_a.start()
        await pub_b.start()
        await publish(a, pub_a)
        await publish(b, pub_b)  # b's first write: it may be a restart of a, not counted
        assert (pub_a.stats().collisions, pub_b.stats().collisions) == (0, 0)
        await publish(a, pub_a)  # a finds b's snapshot where its own was
        await publish(b, pub_b)
        await publish(a, pub_a)
        doc = await reader.read()
        await publish(b, pub_b)  # b wrote last: a's stop must not mark b's live snapshot stopped
        await pub_a.aclose()
        async with redis_client() as client:
            raw = await client.get(status_key(prefix, "twin-1"))
            assert raw is not None
            kept = json.loads(raw)
            marker_ttl = await client.pttl(collision_key(prefix, "twin-1"))
    finally:
        await pub_a.aclose()
        await pub_b.aclose()
        await reader.aclose()

    assert (pub_a.stats().collisions, pub_b.stats().collisions) == (2, 2)
    assert pub_a.stats().writes == 3 and pub_b.stats().writes == 3  # both kept writing
    assert len(collision_warnings(caplog, "twin-1")) == 2  # once per publisher, not once per collision
    (inst,) = doc["instances"]
    assert inst["state"] == "live" and inst["collision"] is True
    assert inst["healthy"] is False  # whose status is this? never vouched for
    assert doc["summary"]["collisions"] == 1
    assert kept["writer"] == pub_b.writer and kept.get("state") != "stopped"
    assert 0 < marker_ttl <= 5000
    refused = [r for r in caplog.records if "not marked stopped" in r.message]
    assert len(refused) == 1


async def test_a_restart_under_the_same_instance_id_is_not_a_collision(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """After a crash (the dead process's snapshot still there) and after a clean stop (its tombstone)."""
    caplog.set_level(logging.INFO, logger="cryptolink.status")
    crashed = b'{"writer":"0123456789abcdef","instance_id":"node-1"}'  # what a crashed process leaves
    async with redis_client() as client:
        await client.set(status_key(prefix, "node-1"), crashed, px=5000)
    service = status_service(okx_manager(), "node-1")
    first = RedisStatusPublisher(service, REDIS_URL, prefix=prefix, ttl_s=5.0)
    await first.start()
    try:
        for _ in range(3):
            await publish(service, first)
    finally:
        await first.aclose()  # a clean stop: the tombstone
    second = RedisStatusPublisher(service, REDIS_URL, prefix=prefix, ttl_s=5.0)
    await second.start()
    try:
        for _ in range(3):
            await publish(service, second)
    finally:
        await second.aclose()
    assert first.stats().collisions == 0 and second.stats().collisions == 0
    assert collision_warnings(caplog, "node-1") == []
    async with redis_client() as client:
        assert await client.exists(collision_key(prefix, "node-1")) == 0


# ------------------------------------------------------------------------------------ shared reads, pool
async def test_concurrent_reads_share_one_redis_read_and_reuse_it_briefly(prefix: str) -> None:
    now = [100.0]
    reader = ClusterStatus(REDIS_URL, prefix=prefix, ttl_s=2.0, monotonic=lambda: now[0])
    assert reader.cache_s == 0.5  # min(1 s, ttl / 4)
    try:
        docs = await asyncio.gather(*(reader.read() for _ in range(20)))
        assert (reader.reads, reader.shared) == (1, 19)
        assert all(d is docs[0] for d in docs)
        now[0] += 0.4
        assert await reader.read() is docs[0] and reader.reads == 1  # still fresh enough
        now[0] += 0.2
        fresh = await reader.read()
        assert fresh is not docs[0] and reader.reads == 2
        # a caller that goes away does not cancel the read the others wait for
        now[0] += 1.0
        leaving = asyncio.create_task(reader.read())
        staying = asyncio.create_task(reader.read())
        await asyncio.sleep(0)  # both are now waiting on the same read
        leaving.cancel()
        assert "error" not in await asyncio.wait_for(staying, 10) and reader.reads == 3
        assert reader._client is not None
        pool = reader._client.connection_pool
        assert isinstance(pool, aioredis.BlockingConnectionPool)
        assert (pool.max_connections, pool.timeout) == (MAX_CONNECTIONS, REDIS_TIMEOUT_S)
    finally:
        await reader.aclose()
    assert reader.stats().shared == 21  # 19 + the cached answer + the caller that stayed


async def test_a_hung_redis_sees_one_connection_for_many_concurrent_requests(prefix: str) -> None:
    """A server that accepts and never answers: 50 concurrent reads cost one read (one connection and its
    one retry at most), not 50, and all of them get the same error answer."""
    accepted: list[asyncio.StreamWriter] = []
    release = asyncio.Event()

    async def hole(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        await release.wait()
        writer.close()

    server = await asyncio.start_server(hole, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader = ClusterStatus(f"redis://127.0.0.1:{port}/0", prefix=prefix, log_failures=False)
    try:
        docs = await asyncio.wait_for(asyncio.gather(*(reader.read() for _ in range(50))), 30)
    finally:
        await reader.aclose()
        release.set()
        server.close()
        await server.wait_closed()
    assert all(d is docs[0] for d in docs) and "Timeout" in docs[0]["error"]
    assert (reader.errors, reader.shared) == (1, 49)
    assert 1 <= len(accepted) <= 2


async def test_a_quiet_reader_forgets_its_error_when_redis_comes_back(prefix: str) -> None:
    port = closed_port()
    now = [0.0]
    reader = ClusterStatus(
        f"redis://127.0.0.1:{port}/0", prefix=prefix, log_failures=False, monotonic=lambda: now[0]
    )
    started, stop = asyncio.Event(), asyncio.Event()
    forwarder: asyncio.Task[None] | None = None
    try:
        failed = await reader.read()
        assert "error" in failed and reader.last_error is not None
        forwarder = asyncio.create_task(_forward(port, started, stop))
        await asyncio.wait_for(started.wait(), 5)
        now[0] += 10.0  # past the answer cache
        recovered = await reader.read()
    finally:
        await reader.aclose()
        stop.set()
        if forwarder is not None:
            await asyncio.wait_for(forwarder, 5)
    assert "error" not in recovered
    assert reader.last_error is None and reader.stats().last_error is None
    assert (reader.reads, reader.errors) == (1, 1)


# ---------------------------------------------------------------------------------------------- metrics
async def test_the_exporter_shows_the_publishers_and_the_readers_counters(prefix: str) -> None:
    service = status_service(okx_manager(), "metered-1")
    publisher = RedisStatusPublisher(service, REDIS_URL, prefix=prefix, ttl_s=5.0)
    down = RedisStatusPublisher(
        status_service(okx_manager(), "down-1"),
        f"redis://127.0.0.1:{closed_port()}/0",
        prefix=prefix,
        ttl_s=5.0,
    )
    reader = ClusterStatus(REDIS_URL, prefix=prefix)
    await publisher.start()
    await down.start()
    try:
        await publish(service, publisher)
        await publish(service, publisher)
        await publish(down.service, down)
        await reader.read()
        up_body = MetricsExporter(service, process=False, redis=publisher, cluster=reader).render()[0]
        down_body = MetricsExporter(down.service, process=False, redis=down).render()[0]
    finally:
        await publisher.aclose()
        await down.aclose()
        await reader.aclose()
    up = {s.name: s.value for fam in text_string_to_metric_families(up_body.decode()) for s in fam.samples}
    assert up["cryptolink_status_redis_writes_total"] == 2
    assert up["cryptolink_status_redis_write_errors_total"] == 0
    assert up["cryptolink_status_redis_connected"] == 1
    assert up["cryptolink_status_redis_reads_total"] == 1
    assert up["cryptolink_status_redis_read_errors_total"] == 0
    dn = {s.name: s.value for fam in text_string_to_metric_families(down_body.decode()) for s in fam.samples}
    assert dn["cryptolink_status_redis_write_errors_total"] == 1
    assert dn["cryptolink_status_redis_connected"] == 0
    assert "cryptolink_status_redis_reads_total" not in dn  # no reader given
