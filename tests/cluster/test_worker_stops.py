"""Slow shard stops never delay a worker's lease work (issue 10 review).

Without NATS: the shard runner starts every stop in the background and at once, and runs one operation at a time
per shard in order (a shard being stopped starts again only once its stop ended); a failed stop is counted.

With the real NATS server at 127.0.0.1:4222 and managers whose stops take 1-2 s more: a worker cut off from NATS
fences all its leases at once and every stop ENDS before the server can expire the lease (so before another
worker starts the shard); a make-before-break handover whose stops are slow lets the giver's renewals go on
during the stops, with no self-fence and no lease lost anywhere."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import nats
import pytest

from cryptolink.clock import SystemClock
from cryptolink.cluster.leases import decode_value, open_bucket
from cryptolink.cluster.shards import Shard
from cryptolink.cluster.worker import _LogLimiter, _ShardRunner
from cryptolink.config import ExchangeConfig
from cryptolink.simulator import Simulator
from tests.cluster.natscluster import TcpProxy
from tests.cluster.test_worker import NATS_URL, SHARDS, harness, make_config

# ------------------------------------------------------------------------------ the shard runner (no NATS)


class GatedHost:
    """A manager whose ``add_exchange`` / ``remove_exchange`` wait for a gate of their shard, recording every
    step as ``(op, shard)`` in order."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, str]] = []
        self.gates: dict[tuple[str, str], asyncio.Event] = {}
        self.changed = asyncio.Event()
        self.fail_remove: set[str] = set()

    def gate(self, op: str, shard: str) -> asyncio.Event:
        return self.gates.setdefault((op, shard), asyncio.Event())

    def _step(self, op: str, shard: str) -> None:
        self.steps.append((op, shard))
        self.changed.set()

    async def add_exchange(self, name: str, entry: ExchangeConfig) -> None:
        self._step("add-begin", name)
        await self.gate("add", name).wait()
        self._step("add-end", name)

    async def remove_exchange(self, name: str) -> None:
        self._step("remove-begin", name)
        await self.gate("remove", name).wait()
        if name in self.fail_remove:
            raise RuntimeError("close handshake failed")
        self._step("remove-end", name)

    async def until(self, pred: Callable[[], bool]) -> None:
        async def wait() -> None:
            while not pred():
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(wait(), 5)


def shard(shard_id: str) -> Shard:
    return Shard(shard_id, "e", ExchangeConfig(exchange="binance", symbols=["BTC/USDT"]))


def runner(host: GatedHost, stopped: list[str]) -> _ShardRunner:
    return _ShardRunner(host, _LogLimiter(SystemClock()), stopped.append)


async def start_all(host: GatedHost, run: _ShardRunner, ids: list[str]) -> None:
    started: list[str] = []

    def on_started(sid: str) -> Callable[[], None]:
        return lambda: started.append(sid)

    for sid in ids:
        host.gate("add", sid).set()
        run.start(shard(sid), on_started=on_started(sid), on_failed=lambda exc: None)
    await host.until(lambda: sorted(started) == sorted(ids))


@pytest.mark.timeout(10)
async def test_stops_run_in_the_background_all_at_once() -> None:
    host, stopped = GatedHost(), list[str]()
    run = runner(host, stopped)
    await start_all(host, run, ["a", "b", "c"])
    assert run.running == {"a", "b", "c"}
    for sid in ("a", "b", "c"):
        run.stop(sid)  # returns at once although no remove can end yet
    assert run.running == set() and run.stopping == {"a", "b", "c"}
    await host.until(lambda: sum(op == "remove-begin" for op, _ in host.steps) == 3)
    assert not any(op == "remove-end" for op, _ in host.steps)  # all three began before any ended
    run.stop("a")  # already stopping: no second stop
    for sid in ("c", "a", "b"):
        host.gate("remove", sid).set()
    await run.aclose()
    assert [s for op, s in host.steps if op == "remove-end"] == ["c", "a", "b"]
    assert sorted(stopped) == ["a", "b", "c"] and run.stopping == frozenset() and run.stop_errors == 0


@pytest.mark.timeout(10)
async def test_a_shard_being_stopped_starts_again_only_after_its_stop_ended() -> None:
    host, stopped = GatedHost(), list[str]()
    run = runner(host, stopped)
    await start_all(host, run, ["a"])
    run.stop("a")
    await host.until(lambda: ("remove-begin", "a") in host.steps)
    started: list[str] = []
    host.gates.pop(("add", "a"))  # a fresh gate for the second start
    run.start(shard("a"), on_started=lambda: started.append("a"), on_failed=lambda exc: None)
    host.gate("remove", "a").set()
    await host.until(lambda: host.steps.count(("add-begin", "a")) == 2)
    assert host.steps[-2:] == [("remove-end", "a"), ("add-begin", "a")]
    host.gate("add", "a").set()
    await host.until(lambda: started == ["a"])
    assert run.running == {"a"} and stopped == ["a"]
    await run.aclose()


@pytest.mark.timeout(10)
async def test_a_second_stop_never_overtakes_a_slow_first_one() -> None:
    """stop, start (queued behind the stop), stop again (cancels that start): the second stop waits for the
    FIRST stop too, not only for the cancelled start (review finding: it called remove while the first ran)."""
    host, stopped = GatedHost(), list[str]()
    run = runner(host, stopped)
    await start_all(host, run, ["a"])
    run.stop("a")
    await host.until(lambda: ("remove-begin", "a") in host.steps)
    run.start(shard("a"), on_started=lambda: None, on_failed=lambda exc: None)  # queued behind the stop
    run.stop("a")  # cancels the queued start
    for _ in range(5):
        await asyncio.sleep(0)  # let the cancelled start end: the second stop must still wait
    assert host.steps.count(("remove-begin", "a")) == 1
    assert run.stopping == {"a"}
    host.gate("remove", "a").set()
    await run.aclose()
    removes = [op for op, s in host.steps if s == "a" and op.startswith("remove")]
    assert removes == ["remove-begin", "remove-end", "remove-begin", "remove-end"]
    assert ("add-begin", "a") not in host.steps[2:]  # the cancelled start never reached the manager


@pytest.mark.timeout(10)
async def test_a_stop_cancels_a_pending_start_and_a_failed_stop_is_counted() -> None:
    host, stopped = GatedHost(), list[str]()
    run = runner(host, stopped)
    failed: list[BaseException] = []
    run.start(shard("a"), on_started=lambda: None, on_failed=failed.append)  # its add never gets through
    await host.until(lambda: ("add-begin", "a") in host.steps)
    run.stop("a")
    assert run.stopping == {"a"}
    host.gate("remove", "a").set()
    await run.wait_stopped("a")
    assert ("add-end", "a") not in host.steps and run.running == set() and failed == []

    await start_all(host, run, ["b"])
    host.fail_remove.add("b")
    host.gate("remove", "b").set()
    run.stop("b")
    await run.aclose()
    assert run.stop_errors == 1 and stopped == ["a", "b"] and run.stopping == frozenset()


# --------------------------------------------------------------------------------------- workers (NATS)


@pytest.mark.integration
@pytest.mark.timeout(120)
async def test_a_cut_off_worker_ends_every_slow_stop_before_its_leases_can_expire(
    sim: Simulator, bucket: str
) -> None:
    ttl_s, renew_s, stop_s = 4.0, 1.0, 1.0  # fencing starts 1 + 0.5 s before the server can expire a lease
    config = make_config(sim, bucket, ttl_s=ttl_s, renew_s=renew_s)
    assert config.nats is not None
    proxy = TcpProxy(4222)
    await proxy.start()
    nc = await nats.connect(NATS_URL, connect_timeout=2)
    try:
        kv, _ = await open_bucket(nc.jetstream(), config.nats.cluster)
        async with harness(config) as h:
            wa = await h.add("wa", servers=[proxy.url], stop_delay_s=stop_s)
            try:
                await h.until(lambda: h.counts() == [4] and h.settled())
                await proxy.cut()
                # the last renewal the server may have: its value's renewed_ms is when it was sent, so the server
                # cannot expire the key before renewed_ms + ttl (wall clock, mapped to time.monotonic)
                wall_minus_mono = time.time() - time.monotonic()
                expiry: dict[str, float] = {}
                for s in SHARDS:
                    entry = await kv.get(f"shard.{s}.0")
                    value = decode_value(entry.value)
                    assert value is not None and value.worker == "wa"
                    expiry[s] = value.renewed_ms / 1000 + ttl_s - wall_minus_mono
                await h.add("wb", stop_delay_s=stop_s)
                await h.until(lambda: h.counts(["wb"]) == [4] and h.settled(["wb"]), within_s=30)
                await h.until(lambda: wa.status().stopping == ())
                st = wa.status()
                assert st.self_fences == 4 and st.held == () and st.stop_failures == 0
                begins = [h.log.of(s, "remove", "wa")[-1] for s in SHARDS]
                ends = {s: h.log.of(s, "removed", "wa")[-1] for s in SHARDS}
                assert max(begins) < min(ends.values())  # every stop began before any ended: concurrent stops
                for s in SHARDS:
                    # ended before the server could expire the lease, so before wb could start the shard
                    assert ends[s] < expiry[s], (s, expiry[s] - ends[s])
                    assert ends[s] < min(h.log.of(s, "add", "wb")), s
            finally:
                await proxy.restore()  # wa closes cleanly
    finally:
        await nc.close()
        await proxy.aclose()


@pytest.mark.integration
@pytest.mark.timeout(120)
async def test_slow_stops_after_a_handover_delay_no_renewal(sim: Simulator, bucket: str) -> None:
    # a stop (2 s) longer than the lease TTL (2 s): awaited inside a round, it would fence every other lease
    async with harness(make_config(sim, bucket)) as h:
        wa = await h.add("wa", stop_delay_s=2.0)
        await h.until(lambda: h.counts() == [4] and h.settled())
        await h.add("wb", stop_delay_s=2.0)
        await h.until(lambda: wa.status().stopping != ())
        renewed_before = wa.status().leases_renewed
        await h.until(lambda: h.counts() == [2, 2] and h.settled() and wa.status().stopping == ())
        # the giver renewed its other leases while its stops ran: at least two rounds' worth
        assert wa.status().leases_renewed >= renewed_before + 4
        await h.until(lambda: all(h.worker(w).status().leases_renewed >= 12 for w in ("wa", "wb")))
        for w in ("wa", "wb"):
            st = h.worker(w).status()
            assert (st.self_fences, st.leases_lost, st.state, st.stop_failures) == (0, 0, "active", 0), w
        assert h.worker("wa").status().handovers_completed == 2
        moved = [s for s in SHARDS if "wb" in h.owners(s)]
        assert len(moved) == 2
        for s in moved:  # make-before-break still: wa began its stop once wb ran the shard
            assert min(h.log.of(s, "add", "wb")) < min(h.log.of(s, "remove", "wa")), s
            assert len(h.log.of(s, "remove", "wa")) == 1, s  # stopped once
