"""Workers against the real NATS server at 127.0.0.1:4222 and real ExchangeManagers streaming from the
simulator on loopback: two workers split 4 shards 2/2; a third joins and gets its share (2/1/1) by
make-before-break handovers, with no moment where a shard runs nowhere; a killed worker's shards are taken once
its leases expire (not before); redundancy 2 puts every shard on two distinct workers; a stolen lease stops the
shard at the holder's next renewal; a holder cut off from NATS stops its shards before its leases can expire,
then comes back to its fair share. The planning rules themselves are checked without NATS first.

Each test uses a lease bucket of its own (deleted afterwards). Every wait is on the workers' state changes
(:meth:`Worker.next_change`), bounded by ``asyncio.wait_for``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

import msgspec
import nats
import nats.js.errors
import pytest
from nats.aio.client import Client as NatsClient

from cryptolink.cluster.leases import ClusterError, LeaseValue
from cryptolink.cluster.shards import Shard
from cryptolink.cluster.worker import Slot, Worker, fair_targets, idle_config, plan_round, slots_of
from cryptolink.config import CryptolinkConfig, ExchangeConfig
from cryptolink.manager import ExchangeManager
from cryptolink.simulator import Simulator
from tests.cluster.natscluster import TcpProxy

NATS_URL = "nats://127.0.0.1:4222"
TTL_S = 2.0
RENEW_S = 0.5
SHARDS = ("perp-s0", "perp-s1", "spot-s0", "spot-s1")

# ------------------------------------------------------------------------------------- planning (no NATS)


def fake_slots(n_shards: int, redundancy: int) -> list[Slot]:
    entry = ExchangeConfig(exchange="binance", symbols=["BTC/USDT"])
    return slots_of([Shard(f"e-s{i}", "e", entry) for i in range(n_shards)], redundancy)


def test_fair_targets_keep_the_larger_shares_where_they_are() -> None:
    assert fair_targets(4, 4, {"a": 2, "b": 2, "c": 0}) == {"a": 2, "b": 1, "c": 1}
    assert fair_targets(4, 4, {"a": 0, "b": 0}) == {"a": 2, "b": 2}
    assert fair_targets(5, 5, {"c": 3, "a": 1, "b": 1}) == {"c": 2, "a": 2, "b": 1}
    assert fair_targets(8, 4, {"a": 0}) == {"a": 4}  # capped: one slot per shard per worker
    assert fair_targets(4, 4, {}) == {}


def test_a_joining_worker_gets_a_share_from_the_worker_above_its_target() -> None:
    slots = fake_slots(4, 1)
    keys = [s.key for s in slots]
    holders = {keys[0]: "a", keys[1]: "a", keys[2]: "b", keys[3]: "b"}
    live = ["a", "b", "c"]
    # a keeps 2 (ranked first), b is above its target 1 while c is below: b hands one over, a does nothing
    plan_b = plan_round("b", slots, holders, live, held=keys[2:], busy_shards=["e-s2", "e-s3"])
    plan_a = plan_round("a", slots, holders, live, held=keys[:2], busy_shards=["e-s0", "e-s1"])
    assert (plan_b.target, len(plan_b.release), plan_b.acquire) == (1, 1, ())
    assert (plan_a.target, plan_a.release, plan_a.acquire) == (2, (), ())
    # once b's key is deleted, c takes exactly that slot
    freed = plan_b.release[0]
    left = {k: w for k, w in holders.items() if k != freed}
    plan_c = plan_round("c", slots, left, live, held=[], busy_shards=[])
    assert [s.key for s in plan_c.acquire] == [freed] and plan_c.release == ()
    # no release when the free slots already cover the others' deficit
    plan_b2 = plan_round("b", slots, {keys[2]: "b", keys[3]: "b"}, ["a", "b"], keys[2:], ["e-s2", "e-s3"])
    assert plan_b2.release == ()


def test_replicas_of_one_shard_go_to_distinct_workers_fewest_replicas_first() -> None:
    slots = fake_slots(3, 2)
    # e-s0 has both replicas held, e-s1 one (by b), e-s2 none: a takes e-s2 before e-s1, never two of one shard
    holders = {"shard.e-s0.0": "b", "shard.e-s0.1": "c", "shard.e-s1.0": "b"}
    plan = plan_round("a", slots, holders, ["a", "b", "c"], held=[], busy_shards=[])
    assert plan.target == 2
    assert [s.shard.id for s in plan.acquire] == ["e-s2", "e-s1"]
    # with room for one slot only, every worker id picks the shard with no replica (whatever its hash order)
    for me in [f"w{i}" for i in range(12)]:
        one = plan_round(me, slots, holders, [me, "b", "c", "d"], held=[], busy_shards=[])
        assert one.target == 1 and [s.shard.id for s in one.acquire] == ["e-s2"], me
    alone = plan_round("a", slots, {}, ["a"], held=[], busy_shards=[])
    assert sorted(s.shard.id for s in alone.acquire) == ["e-s0", "e-s1", "e-s2"]  # 6 slots, 3 shards: 3 max


def test_a_slot_free_for_an_interval_is_taken_even_above_target() -> None:
    slots = fake_slots(3, 1)
    keys = [s.key for s in slots]
    holders = {keys[0]: "a"}
    live = ["a", "b", "c"]  # targets 1 each; c does not take keys[2] (e.g. it is stuck)
    assert plan_round("a", slots, holders, live, [keys[0]], ["e-s0"]).acquire == ()
    adopt = plan_round("a", slots, holders, live, [keys[0]], ["e-s0"], orphans=[keys[2]])
    assert [s.key for s in adopt.acquire] == [keys[2]]
    # a key naming us that we do not hold is ours to take over first
    mine = plan_round("b", slots, {keys[1]: "b"}, live, held=[], busy_shards=[])
    assert [s.key for s in mine.acquire] == [keys[1]]


# ---------------------------------------------------------------------------------------- harness


@dataclass
class Log:
    """Every shard start (``add``, recorded when it returned), stop (``remove``, recorded when it began) and stop
    end (``removed``, when it returned), all workers; times on :func:`time.monotonic`."""

    events: list[tuple[float, str, str, str]] = field(default_factory=list)

    def of(self, shard: str, op: str, worker: str | None = None) -> list[float]:
        return [t for t, w, o, s in self.events if s == shard and o == op and (worker is None or w == worker)]

    def uncovered(self, shard: str, since: float) -> list[float]:
        """Times after ``since`` at which ``shard`` ran on no worker."""
        running: set[str] = set()
        holes: list[float] = []
        for t, worker, op, s in sorted(self.events):
            if s != shard:
                continue
            if op == "add":
                running.add(worker)
            elif op == "remove":
                running.discard(worker)
                if t > since and not running:
                    holes.append(t)
        return holes


class RecordingManager(ExchangeManager):
    """A real manager that records when shards start and stop; a stop takes ``stop_delay_s`` more (a feed whose
    websockets are slow to close)."""

    def __init__(self, config: CryptolinkConfig, log: Log, worker: str, stop_delay_s: float = 0.0) -> None:
        super().__init__(config, seed=1)
        self.log = log
        self.worker = worker
        self.stop_delay_s = stop_delay_s

    async def add_exchange(self, name: str, entry: ExchangeConfig) -> None:
        await super().add_exchange(name, entry)
        self.log.events.append((time.monotonic(), self.worker, "add", name))

    async def remove_exchange(self, name: str) -> None:
        self.log.events.append((time.monotonic(), self.worker, "remove", name))
        if self.stop_delay_s:
            await asyncio.sleep(self.stop_delay_s)
        await super().remove_exchange(name)
        self.log.events.append((time.monotonic(), self.worker, "removed", name))


@dataclass
class Member:
    worker: Worker
    manager: RecordingManager
    nc: NatsClient
    task: asyncio.Task[None]


async def quiet(exc: Exception) -> None:
    """NATS client errors (refused reconnections while a proxy is cut): expected here, not logged."""


class Harness:
    """Workers of one configuration, each with its own NATS client and manager."""

    def __init__(self, config: CryptolinkConfig) -> None:
        self.config = config
        self.log = Log()
        self.members: dict[str, Member] = {}

    def worker(self, wid: str) -> Worker:
        return self.members[wid].worker

    async def add(
        self,
        wid: str,
        servers: Sequence[str] = (NATS_URL,),
        config: CryptolinkConfig | None = None,
        *,
        member: str | None = None,
        stop_delay_s: float = 0.0,
    ) -> Worker:
        """Start worker ``wid`` (with ``config``, default the harness's), its client connecting to ``servers``
        in that order, as member ``member`` (default ``wid``: two members may share one worker id), its
        manager's stops taking ``stop_delay_s`` more."""
        member = member or wid
        config = config or self.config
        assert config.nats is not None
        nats_cfg = config.nats
        cluster = nats_cfg.cluster.model_copy(update={"worker_id": wid})
        cfg = config.model_copy(update={"nats": nats_cfg.model_copy(update={"cluster": cluster})})
        nc = await nats.connect(
            servers=list(servers),
            dont_randomize=True,
            connect_timeout=2,
            reconnect_time_wait=0.2,
            max_reconnect_attempts=-1,
            error_cb=quiet,
        )
        manager = RecordingManager(idle_config(cfg), self.log, member, stop_delay_s)
        worker = Worker(cfg, manager, nc=nc)
        await worker.start()
        task = asyncio.get_running_loop().create_task(worker.run())
        self.members[member] = Member(worker, manager, nc, task)
        return worker

    async def kill(self, wid: str) -> None:
        """A crash as far as NATS sees it: the rounds end, nothing is released, the connection closes."""
        m = self.members[wid]
        m.task.cancel()
        await asyncio.wait({m.task})
        await m.nc.close()

    async def until(self, pred: Callable[[], bool], within_s: float = 20.0) -> None:
        """Wait until ``pred()`` holds, re-checking at each state change of any worker."""

        async def wait() -> None:
            while not pred():
                changes = [asyncio.ensure_future(m.worker.next_change()) for m in self.members.values()]
                try:
                    await asyncio.wait(changes, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for c in changes:
                        c.cancel()

        await asyncio.wait_for(wait(), within_s)

    def counts(self, wids: Sequence[str] | None = None) -> list[int]:
        ids = wids if wids is not None else list(self.members)
        return sorted(len(self.worker(w).status().held) for w in ids)

    def settled(self, wids: Sequence[str] | None = None) -> bool:
        """Every held shard running, no handover in progress, no stop in progress (stops run in the background)."""
        ids = wids if wids is not None else list(self.members)
        statuses = [self.worker(w).status() for w in ids]
        return all(all(h.running for h in s.held) and not s.handing_over and not s.stopping for s in statuses)

    def owners(self, shard: str, wids: Sequence[str] | None = None) -> set[str]:
        ids = wids if wids is not None else list(self.members)
        return {w for w in ids if shard in self.worker(w).status().shard_ids}

    async def aclose(self) -> None:
        await asyncio.gather(*(m.worker.aclose() for m in self.members.values()))
        for m in self.members.values():
            m.task.cancel()
            await asyncio.wait({m.task})
            await m.manager.stop()
            await m.nc.close()


def make_config(
    sim: Simulator,
    bucket: str,
    *,
    redundancy: int = 1,
    handover_s: float = 8.0,
    servers: Sequence[str] = (NATS_URL,),
    ttl_s: float = TTL_S,
    renew_s: float = RENEW_S,
    kv_replicas: int = 1,
) -> CryptolinkConfig:
    """4 shards (``SHARDS``): two binance spot symbols and two USD-M ones, trades only, one symbol each."""
    ep = sim.endpoints()
    spot, perp = ep["binance"], ep["binanceusdm"]
    return CryptolinkConfig.from_dict(
        {
            "exchanges": {
                "spot": {"exchange": "binance", "symbols": ["BTC/USDT", "ETH/USDT"], "channels": ["trades"],
                         "ws_url": spot["ws_url"], "rest_url": spot["rest_url"]},
                "perp": {"exchange": "binanceusdm", "symbols": ["BTC/USDT:USDT", "ETH/USDT:USDT"],
                         "channels": ["trades"], "ws_url": perp["ws_url"], "rest_url": perp["rest_url"]},
            },
            "nats": {"servers": list(servers), "cluster": {
                "enabled": True, "bucket": bucket, "lease_ttl_s": ttl_s, "renew_interval_s": renew_s,
                "kv_replicas": kv_replicas, "shard_symbols": 1, "redundancy": redundancy,
                "handover_timeout_s": handover_s}},
        }
    )  # fmt: skip


@contextlib.asynccontextmanager
async def harness(config: CryptolinkConfig) -> AsyncIterator[Harness]:
    h = Harness(config)
    try:
        yield h
    finally:
        await h.aclose()


# ------------------------------------------------------------------------------------------- workers


@pytest.mark.integration
@pytest.mark.timeout(120)
async def test_two_workers_split_then_a_third_gets_its_share_without_a_hole(
    sim: Simulator, bucket: str
) -> None:
    async with harness(make_config(sim, bucket)) as h:
        await h.add("wa")
        await h.add("wb")
        await h.until(lambda: h.counts() == [2, 2] and h.settled())
        assert all(len(h.owners(s)) == 1 for s in SHARDS)  # each shard runs on exactly one worker
        assert {s for w in ("wa", "wb") for s in h.members[w].manager.feeds} == set(SHARDS)
        steady = time.monotonic()
        done_before = sum(h.worker(w).status().handovers_completed for w in ("wa", "wb"))

        await h.add("wc")
        everyone = ("wa", "wb", "wc")
        await h.until(
            lambda: (
                h.counts() == [1, 1, 2]
                and h.settled()
                and all(h.worker(w).status().workers_seen == everyone for w in everyone)
            )  # each ran a round since
        )
        assert all(len(h.owners(s)) == 1 for s in SHARDS)
        statuses = {w: h.worker(w).status() for w in ("wa", "wb", "wc")}
        moved = [s for s in SHARDS if "wc" in h.owners(s)]
        assert len(moved) == 1
        # make-before-break: the giver stopped the shard only after the new holder had started it, and no
        # shard was ever running nowhere since the steady state
        (taken,) = moved
        assert {s: h.log.uncovered(s, steady) for s in SHARDS} == {s: [] for s in SHARDS}
        assert max(h.log.of(taken, "add", "wc")) < max(h.log.of(taken, "remove"))
        assert sum(s.handovers_completed for s in statuses.values()) == done_before + 1
        assert sum(s.handover_timeouts for s in statuses.values()) == 0
        for w, s in statuses.items():
            assert s.state == "active" and s.workers_seen == ("wa", "wb", "wc") and s.leases_lost == 0, w
            assert s.fingerprint == statuses["wa"].fingerprint and s.config_mismatch == ()
            json.dumps(s.to_dict())  # JSON-friendly for the status API
        assert {p.worker for p in statuses["wa"].peers} == {"wb", "wc"}


@pytest.mark.integration
@pytest.mark.timeout(120)
async def test_a_killed_workers_shards_are_taken_after_its_leases_expire(sim: Simulator, bucket: str) -> None:
    async with harness(make_config(sim, bucket)) as h:
        await h.add("wa")
        await h.add("wb")
        await h.until(lambda: h.counts() == [2, 2] and h.settled())
        before = h.worker("wa").status()
        lost = sorted(before.shard_ids)
        killed_at = time.monotonic()
        await h.kill("wa")
        await h.until(lambda: h.counts(["wb"]) == [4] and h.settled(["wb"]))
        # wa released nothing: wb could only take the slots once the server expired them, i.e. no earlier
        # than wa's last renewal (about one interval before the kill) plus the TTL (a release would have let
        # wb in within a round)
        for shard in lost:
            assert min(h.log.of(shard, "add", "wb")) >= killed_at + TTL_S / 2
        status = h.worker("wa").status()
        assert status.leases_released == before.leases_released
        # its own fencing task stopped wa's shards once their leases could no longer be trusted
        assert status.self_fences == 2 and h.members["wa"].manager.feeds == {}
        assert h.worker("wb").status().workers_seen == ("wb",)  # wa's heartbeat expired too


@pytest.mark.integration
@pytest.mark.timeout(120)
async def test_redundancy_two_puts_every_shard_on_two_distinct_workers(sim: Simulator, bucket: str) -> None:
    async with harness(make_config(sim, bucket, redundancy=2)) as h:
        for wid in ("wa", "wb", "wc"):
            await h.add(wid)
        await h.until(lambda: h.counts() == [2, 3, 3] and h.settled())
        for shard in SHARDS:
            holders = [
                (w, held.replica)
                for w in ("wa", "wb", "wc")
                for held in h.worker(w).status().held
                if held.shard == shard
            ]
            assert len({w for w, _ in holders}) == 2 and sorted(r for _, r in holders) == [0, 1], shard
        for w in ("wa", "wb", "wc"):
            st = h.worker(w).status()
            assert set(h.members[w].manager.feeds) == st.shard_ids and st.slots == 8


@pytest.mark.integration
@pytest.mark.timeout(120)
async def test_a_stolen_lease_stops_the_shard_at_the_next_renewal(sim: Simulator, bucket: str) -> None:
    async with harness(make_config(sim, bucket)) as h:
        worker = await h.add("wa")
        await h.until(lambda: h.counts() == [4] and h.settled())
        key = "shard.spot-s0.0"
        nc = await nats.connect(NATS_URL, connect_timeout=2)
        try:
            kv = await nc.jetstream().key_value(bucket)
            now_ms = time.time_ns() // 1_000_000
            await kv.put(key, msgspec.json.encode(LeaseValue("thief", now_ms, now_ms, "other")))
            stolen_at = time.monotonic()
            await h.until(lambda: "spot-s0" not in worker.status().shard_ids)
            assert "spot-s0" not in h.members["wa"].manager.feeds
            assert worker.status().leases_lost == 1 and worker.status().self_fences == 0
            assert min(h.log.of("spot-s0", "remove", "wa")) > stolen_at
            # the thief never renews: once its key expires, the slot is free and wa takes it back
            await h.until(lambda: h.counts() == [4] and h.settled())
            assert max(h.log.of("spot-s0", "add", "wa")) > min(h.log.of("spot-s0", "remove", "wa"))
        finally:
            await nc.close()


@pytest.mark.integration
@pytest.mark.timeout(120)
async def test_a_holder_cut_off_from_nats_stops_its_shards_before_they_can_be_taken(
    sim: Simulator, bucket: str
) -> None:
    proxy = TcpProxy(4222)
    await proxy.start()
    try:
        async with harness(make_config(sim, bucket)) as h:
            await h.add("wa", servers=[proxy.url])
            await h.add("wb")
            await h.until(lambda: h.counts() == [2, 2] and h.settled())
            before = h.worker("wa").status()
            b_before = h.worker("wb").status()
            cut_off = sorted(before.shard_ids)
            await proxy.cut()
            await h.until(lambda: h.counts(["wb"]) == [4] and h.settled(["wb"]))
            a = h.worker("wa").status()
            assert a.state == "fenced" and a.held == () and a.self_fences == 2
            assert a.leases_released == before.leases_released
            assert a.nats_failures > 0 and h.members["wa"].manager.feeds == {}
            for shard in cut_off:
                # wa stopped the shard before wb could start it: wb only got the slot after the server expired
                # wa's lease, and wa's fencing deadline ends one renewal interval before that
                assert max(h.log.of(shard, "remove", "wa")) < min(h.log.of(shard, "add", "wb")), shard
            # back online: wa becomes active again and gets its fair share back, by handover
            await proxy.restore()
            await h.until(lambda: h.counts() == [2, 2] and h.settled())
            assert h.worker("wa").state == "active"
            assert h.worker("wb").status().handovers_completed == b_before.handovers_completed + 2
    finally:
        await proxy.aclose()


@pytest.mark.integration
@pytest.mark.timeout(120)
async def test_a_worker_with_another_configuration_is_reported_and_not_counted(
    sim: Simulator, bucket: str
) -> None:
    config = make_config(sim, bucket)
    assert config.nats is not None
    other_cluster = config.nats.cluster.model_copy(update={"shard_symbols": 2})  # shards spot, perp
    other = config.model_copy(update={"nats": config.nats.model_copy(update={"cluster": other_cluster})})
    async with harness(config) as h:
        wa = await h.add("wa")
        wx = await h.add("wx", config=other)
        assert wa.fingerprint != wx.fingerprint
        await h.until(
            lambda: wa.status().config_mismatch == ("wx",) and wx.status().config_mismatch == ("wa",)
        )
        await h.until(lambda: h.counts(["wa"]) == [4] and h.settled(["wa"]))
        st = wa.status()
        assert st.workers_seen == ("wa",) and st.target == 4  # wx is not given a share of wa's shards
        assert [(p.worker, p.same_config) for p in st.peers] == [("wx", False)]


@pytest.mark.integration
@pytest.mark.timeout(60)
async def test_a_manager_with_entries_of_its_own_is_refused(sim: Simulator, bucket: str) -> None:
    config = make_config(sim, bucket)
    nc = await nats.connect(NATS_URL, connect_timeout=2)
    manager = ExchangeManager(config)
    try:
        worker = Worker(config, manager, nc=nc)
        with pytest.raises(ClusterError, match="idle_config"):
            await worker.start()
        assert manager.feeds == {}
    finally:
        await manager.stop()
        await nc.close()


async def test_unheld_slots_count_only_what_a_live_worker_could_hold() -> None:
    """The status's ``unheld_slots``: slots free for two renewal intervals, not counting the replicas beyond the
    number of live workers (one worker alone cannot hold a shard's second replica: that is no failure)."""
    from cryptolink.clock import FakeClock

    config = CryptolinkConfig.from_dict(
        {
            "exchanges": {"spot": {"exchange": "binance", "symbols": ["BTC/USDT"]}},
            "nats": {"cluster": {"enabled": True, "redundancy": 2, "lease_ttl_s": 9}},
        },
        env={},
    )
    clock = FakeClock()
    w = Worker(config, ExchangeManager(idle_config(config)), nc=None, clock=clock)  # type: ignore[arg-type]
    w._live = ("a",)  # alone: one replica of "spot" is all it can hold
    w._free_since = {"shard.spot.1": 0.0}  # replica 0 held (by this worker), replica 1 free
    await clock.advance(7.0)  # more than two renewals (3 s each)
    assert w.status().unheld_slots == 0
    w._live = ("a", "b")  # a second worker could hold it: it is unheld now
    assert w.status().unheld_slots == 1
    w._free_since = {"shard.spot.0": 0.0, "shard.spot.1": 0.0}  # nobody holds the shard at all
    assert w.status().unheld_slots == 2
    w._free_since = {"shard.spot.0": 6.5}  # free for only half a second: a rebalance in progress
    assert w.status().unheld_slots == 0
