"""Workers on a three-node NATS cluster (private nats-servers with routes between them on loopback ports) with
the lease bucket replicated three times: killing the node a worker is connected to, which also leads the
bucket's stream, costs no lease; the client reconnects to another node, renewals fail while a new stream leader
is elected and then go on (no shard stops anywhere). The same on one private
server that is killed and restarted: the worker fences itself while the server is down and gets its shards back
once it returns."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import nats
import pytest
from nats.aio.client import Client as NatsClient

from cryptolink.cluster.leases import open_bucket
from cryptolink.simulator import Simulator
from tests.cluster.natscluster import nats_cluster
from tests.cluster.test_worker import SHARDS, harness, make_config

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(exchanges=["binance", "binanceusdm"], speed=1.0) as s:
        yield s


def connected_port(nc: NatsClient) -> int | None:
    url = nc.connected_url
    return None if url is None or not nc.is_connected else urlsplit(url.geturl()).port


async def test_a_worker_keeps_its_leases_when_its_nats_node_is_killed(sim: Simulator, tmp_path: Path) -> None:
    async with nats_cluster(tmp_path, 3) as cluster:
        urls = cluster.urls
        bucket = f"cltest_{uuid.uuid4().hex[:12]}"
        config = make_config(sim, bucket, servers=urls, ttl_s=15.0, renew_s=1.0, kv_replicas=3)
        assert config.nats is not None
        # the bucket first, to learn which node leads its stream: the worker connected there loses both its
        # connection and the bucket's leader at once
        nc = await nats.connect(urls[0], connect_timeout=2)
        try:
            await open_bucket(nc.jetstream(), config.nats.cluster)
            info = await nc.jetstream().stream_info(f"KV_{bucket}")
        finally:
            await nc.close()
        assert info.config.num_replicas == 3 and info.cluster is not None
        leader = next(n for n in cluster.nodes if n.name == info.cluster.leader)
        others = [n.url for n in cluster.nodes if n is not leader]
        async with harness(config) as h:
            await h.add("wa", servers=[leader.url, *others])
            await h.add("wb", servers=others)
            await h.until(lambda: h.counts() == [2, 2] and h.settled(), within_s=30)
            wa_nc = h.members["wa"].nc
            port = connected_port(wa_nc)
            assert port == leader.port
            node = leader
            before = {w: h.worker(w).status() for w in ("wa", "wb")}
            killed_at = time.monotonic()
            await cluster.kill(node)

            def recovered() -> bool:
                moved = connected_port(wa_nc) not in (None, port)
                renewed = all(
                    h.worker(w).status().leases_renewed >= before[w].leases_renewed + 6 for w in before
                )
                return moved and renewed

            await h.until(recovered, within_s=30)
            # the outage was felt (the bucket's leader was elected anew), and cost no lease
            assert h.worker("wa").status().nats_failures > before["wa"].nats_failures
            for w, old in before.items():
                st = h.worker(w).status()
                assert (st.leases_lost, st.self_fences, st.state) == (0, 0, "active"), w
                assert st.shard_ids == old.shard_ids, w
            assert [e for e in h.log.events if e[0] > killed_at and e[2] == "remove"] == []
            assert {s for w in ("wa", "wb") for s in h.members[w].manager.feeds} == set(SHARDS)


async def test_a_worker_fences_while_its_only_server_is_down_and_recovers(
    sim: Simulator, tmp_path: Path
) -> None:
    async with nats_cluster(tmp_path, 1) as server:
        bucket = f"cltest_{uuid.uuid4().hex[:12]}"
        async with harness(make_config(sim, bucket, servers=server.urls)) as h:
            worker = await h.add("wa", servers=server.urls)
            await h.until(lambda: h.counts() == [4] and h.settled())
            (node,) = server.nodes
            await server.kill(node)
            await h.until(lambda: worker.state == "fenced" and not worker.status().held)
            assert worker.status().self_fences == 4 and h.members["wa"].manager.feeds == {}
            await server.restart(node)  # same store: the bucket survives
            await h.until(lambda: h.counts() == [4] and h.settled() and worker.state == "active", within_s=30)
            assert set(h.members["wa"].manager.feeds) == set(SHARDS)
