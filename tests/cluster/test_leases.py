"""Leases on the real NATS server at 127.0.0.1:4222 (JetStream KV, server 2.9): create refuses a held key,
compare-and-swap renewals (a stale revision is a lost lease; a lost reply of our own is recovered), release,
re-creation over a delete marker, expiry by the bucket TTL with no renewal, take-over of a key naming us,
heartbeats, the bucket's own TTL winning, and NATS failures mapped to LeaseStoreError. Each test uses a bucket of
its own, deleted afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import cast

import msgspec
import nats
import nats.js.errors
import pytest
from nats.aio.client import Client as NatsClient
from nats.js.kv import KeyValue

from cryptolink.cluster.leases import (
    STOP_ALLOWANCE_MAX_S,
    ClusterError,
    Lease,
    LeaseLost,
    LeaseStore,
    LeaseStoreError,
    LeaseValue,
    decode_value,
    open_bucket,
    slot_of,
    workers_of,
)
from cryptolink.config import NatsClusterConfig

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

NATS_URL = "nats://127.0.0.1:4222"
TTL_S = 2.0
RENEW_S = 0.5


@pytest.fixture
async def nc() -> AsyncIterator[NatsClient]:
    client = await nats.connect(NATS_URL, connect_timeout=2)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def bucket(nc: NatsClient) -> AsyncIterator[str]:
    name = f"cltest_{uuid.uuid4().hex[:12]}"
    try:
        yield name
    finally:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await nc.jetstream().delete_key_value(name)


def cluster_cfg(bucket: str, ttl: float = TTL_S) -> NatsClusterConfig:
    return NatsClusterConfig(enabled=True, bucket=bucket, lease_ttl_s=ttl, renew_interval_s=RENEW_S)


async def stores(nc: NatsClient, bucket: str, *workers: str) -> tuple[KeyValue, list[LeaseStore]]:
    kv, ttl = await open_bucket(nc.jetstream(), cluster_cfg(bucket))
    assert ttl == TTL_S
    return kv, [
        LeaseStore(kv, w, fingerprint="fp", ttl_s=ttl, renew_every_s=RENEW_S, timeout_s=2.0) for w in workers
    ]


async def test_acquire_renew_release_and_a_second_acquire_is_refused(nc: NatsClient, bucket: str) -> None:
    kv, (a, b) = await stores(nc, bucket, "wa", "wb")
    key = "shard.binance-s0.0"
    assert slot_of(key) == ("binance-s0", 0) and slot_of("worker.wa") is None

    lease = await a.acquire(key)
    assert lease is not None and lease.revision > 0
    stored = decode_value((await kv.get(key)).value)
    assert stored is not None and (stored.worker, stored.fingerprint, stored.started_ms) == ("wa", "fp", None)
    assert stored.nonce == a.nonce and a.nonce != b.nonce  # each store (process) writes its own nonce
    assert await b.acquire(key) is None  # held

    renewed = await a.renew(lease, started_ms=1234)
    assert renewed.revision > lease.revision and renewed.renewed_at >= lease.renewed_at
    assert renewed.value.acquired_ms == lease.value.acquired_ms and renewed.value.started_ms == 1234
    assert a.deadline(renewed) == pytest.approx(renewed.renewed_at + TTL_S - RENEW_S)
    # fencing starts the shard's stop min(1, renew/2, (ttl - 2 renew)/2) = 0.25 s before the deadline
    assert a.fence_at(renewed) == pytest.approx(a.deadline(renewed) - 0.25)
    holders = await b.holders()
    assert holders[key].worker == "wa" and holders[key].revision == renewed.revision

    assert await a.release(renewed) is True
    assert key not in await b.holders()  # a delete marker is a free slot
    again = await b.acquire(key)  # create over the delete marker
    assert again is not None and again.revision > renewed.revision
    assert (await b.holders())[key].worker == "wb"
    assert await a.release(renewed) is False  # lost already: not an error, and b keeps the key
    assert (await a.holders())[key].worker == "wb"


async def test_a_stale_revision_is_a_lost_lease_unless_the_key_still_holds_our_own_value(
    nc: NatsClient, bucket: str
) -> None:
    kv, (a,) = await stores(nc, bucket, "wa")
    lease = await a.acquire("shard.x.0")
    assert lease is not None
    # our earlier renewal reached the server but its reply was lost: the key holds our value at a newer revision
    newer = await a.renew(lease)
    recovered = await a.renew(lease)
    assert recovered.revision > newer.revision and a.recovered == 1

    # another writer overwrote it: lost, and the error names the new holder
    thief = LeaseValue("thief", 1, 2, "fp")
    await kv.put("shard.x.0", msgspec.json.encode(thief))
    with pytest.raises(LeaseLost) as lost:
        await a.renew(recovered)
    assert lost.value.holder == "thief" and lost.value.key == "shard.x.0"

    # a deleted key: lost, no holder
    mine = await a.acquire("shard.y.0")
    assert mine is not None
    await kv.delete("shard.y.0")
    with pytest.raises(LeaseLost) as gone:
        await a.renew(mine)
    assert gone.value.holder is None

    # a same-named worker's other lease (another acquired_ms) is not ours to recover
    other = await a.acquire("shard.z.0")
    assert other is not None
    await kv.put("shard.z.0", msgspec.json.encode(LeaseValue("wa", other.value.acquired_ms - 1, 0, "fp")))
    with pytest.raises(LeaseLost):
        await a.renew(other)

    # nor is another process's lease under our worker id, even acquired in the same millisecond
    twin = await a.acquire("shard.t.0")
    assert twin is not None
    forged = msgspec.structs.replace(twin.value, nonce="another-process")
    await kv.put("shard.t.0", msgspec.json.encode(forged))
    with pytest.raises(LeaseLost):
        await a.renew(twin)
    assert a.recovered == 1


async def test_an_unrenewed_lease_expires_after_the_ttl(nc: NatsClient, bucket: str) -> None:
    _, (a, b) = await stores(nc, bucket, "wa", "wb")
    lease = await a.acquire("shard.x.0")
    assert lease is not None and await b.acquire("shard.x.0") is None
    await asyncio.sleep(TTL_S + 1.0)  # the one sleep: the server ages the key out
    assert "shard.x.0" not in await b.holders()
    with pytest.raises(LeaseLost):
        await a.renew(lease)
    taken = await b.acquire("shard.x.0")
    assert taken is not None


async def test_take_over_a_key_naming_us_by_compare_and_swap(nc: NatsClient, bucket: str) -> None:
    _, (a, a_again) = await stores(nc, bucket, "wa", "wa")
    old = await a.acquire("shard.x.0")  # e.g. a create whose reply never came back
    assert old is not None
    holder = (await a_again.holders())["shard.x.0"]
    assert holder.worker == "wa"
    assert await a_again.take_over("shard.x.0", holder.revision - 1) is None  # moved on: refused
    taken = await a_again.take_over("shard.x.0", holder.revision)
    assert taken is not None and taken.revision > holder.revision
    with pytest.raises(LeaseLost):  # the old handle is fenced by the revision
        await a.renew(old)


async def test_heartbeats_show_every_worker(nc: NatsClient, bucket: str) -> None:
    _, (a, b) = await stores(nc, bucket, "wa", "wb")
    await a.heartbeat(started_ms=10, state="active", held=2)
    await b.heartbeat(started_ms=20, state="starting", held=0)
    workers = workers_of(await a.holders())
    assert {w: (v.state, v.held, v.acquired_ms, v.nonce) for w, v in workers.items()} == {
        "wa": ("active", 2, 10, a.nonce),
        "wb": ("starting", 0, 20, b.nonce),
    }
    await b.forget_worker()
    assert set(workers_of(await a.holders())) == {"wa"}


async def test_the_buckets_own_ttl_is_used_and_a_bucket_without_ttl_is_refused(
    nc: NatsClient, bucket: str
) -> None:
    js = nc.jetstream()
    await js.create_key_value(bucket=bucket, ttl=5.0, history=1)
    _, ttl = await open_bucket(js, cluster_cfg(bucket, ttl=3.0))
    assert ttl == 5.0  # fencing deadlines follow the server's TTL
    no_ttl = f"{bucket}_nottl"
    await js.create_key_value(bucket=no_ttl, history=1)
    try:
        with pytest.raises(ClusterError, match="no TTL"):
            await open_bucket(js, cluster_cfg(no_ttl))
    finally:
        await js.delete_key_value(no_ttl)


async def test_nats_failures_are_lease_store_errors(bucket: str) -> None:
    client = await nats.connect(NATS_URL, connect_timeout=2)
    try:
        _, (a,) = await stores(client, bucket, "wa")
        lease = await a.acquire("shard.x.0")
        assert lease is not None
    finally:
        await client.close()
    ops: list[Callable[[], Awaitable[object]]] = [
        lambda: a.acquire("shard.y.0"),
        lambda: a.renew(lease),
        lambda: a.release(lease),
        lambda: a.holders(),
        lambda: a.heartbeat(started_ms=1, state="active", held=0),
    ]
    for op in ops:
        with pytest.raises(LeaseStoreError) as err:
            await op()
        assert err.value.__cause__ is not None


@pytest.mark.parametrize(
    ("ttl", "renew", "allowance"),
    [
        (10.0, 10.0 / 3, 1.0),  # the defaults: capped at STOP_ALLOWANCE_MAX_S
        (2.0, 0.5, 0.25),  # half the renewal interval
        (2.1, 1.0, 0.05),  # half the slack above two intervals: the next renewal still comes before fencing
    ],
)
def test_the_stop_allowance_never_fences_before_the_next_renewal(
    ttl: float, renew: float, allowance: float
) -> None:
    store = LeaseStore(cast(KeyValue, None), "wa", fingerprint="fp", ttl_s=ttl, renew_every_s=renew)
    assert store.stop_allowance_s == pytest.approx(allowance)
    assert STOP_ALLOWANCE_MAX_S == 1.0
    lease = Lease("shard.x.0", 1, LeaseValue("wa", 0, 0, "fp"), renewed_at=100.0)
    assert store.fence_at(lease) == pytest.approx(100.0 + ttl - renew - allowance)
    assert store.fence_at(lease) > 100.0 + renew  # a healthy holder renews before it would fence
