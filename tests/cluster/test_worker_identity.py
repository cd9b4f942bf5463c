"""Two processes given one worker id (issue 10 review), against the real NATS server at 127.0.0.1:4222: each sees
the other's heartbeat nonce, reports the conflict (ERROR log, ``id_conflict``, ``id_conflicts``), and the lease
churn stops (they split the shards instead of taking each other's keys over). A process restarted under the id
of a crashed one is no conflict: it takes the crashed process's keys over."""

from __future__ import annotations

import logging

import pytest

from cryptolink.simulator import Simulator
from tests.cluster.test_worker import SHARDS, Harness, harness, make_config

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

CONFLICT_LOG = "another process uses this worker id"


def running_shards(h: Harness) -> list[str]:
    """Every shard running in some member, once per member running it."""
    return sorted(s for m in h.members.values() for s in m.manager.feeds)


async def test_two_processes_with_one_worker_id_are_reported_and_stop_stealing(
    sim: Simulator, bucket: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="cryptolink.cluster.worker")
    async with harness(make_config(sim, bucket)) as h:
        p1 = await h.add("w1", member="p1")
        p2 = await h.add("w1", member="p2")
        assert p1.worker_id == p2.worker_id == "w1" and p1.nonce != p2.nonce
        await h.until(lambda: p1.status().id_conflict and p2.status().id_conflict)
        # each shard runs in exactly one of the two processes
        await h.until(lambda: running_shards(h) == sorted(SHARDS) and h.settled())
        before = {m: h.worker(m).status() for m in ("p1", "p2")}
        # leases change hands only before the conflict is seen
        assert sum(s.leases_lost for s in before.values()) <= 2 * len(SHARDS)
        renewed = sum(s.leases_renewed for s in before.values())
        await h.until(lambda: sum(h.worker(m).status().leases_renewed for m in ("p1", "p2")) >= renewed + 16)
        for m, old in before.items():
            st = h.worker(m).status()
            assert (st.leases_lost, st.leases_acquired) == (old.leases_lost, old.leases_acquired), m
            assert st.shard_ids == old.shard_ids and st.id_conflict and st.id_conflicts > 0, m
            assert st.to_dict()["id_conflict"] is True
        assert running_shards(h) == sorted(SHARDS)
        errors = [r for r in caplog.records if r.levelno == logging.ERROR and CONFLICT_LOG in r.getMessage()]
        assert errors and all("w1" in r.getMessage() for r in errors)


async def test_a_process_restarted_under_a_crashed_ones_id_is_no_conflict(
    sim: Simulator, bucket: str
) -> None:
    async with harness(make_config(sim, bucket)) as h:
        old = await h.add("w1", member="old")
        await h.until(lambda: h.counts(["old"]) == [4] and h.settled(["old"]))
        await h.kill("old")  # its heartbeat and leases stay until they expire
        new = await h.add("w1", member="new")
        await h.until(lambda: h.counts(["new"]) == [4] and h.settled(["new"]))
        st = new.status()
        assert (st.id_conflict, st.id_conflicts, st.leases_lost) == (False, 0, 0)
        assert old.status().id_conflicts == 0
