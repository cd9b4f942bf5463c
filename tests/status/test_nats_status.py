"""The NATS sink's counters and the scale-out worker's state in the status documents and ``/metrics``.

Statistics are built by hand and checked value by value: ``nats`` and ``worker`` in ``/api/system/status`` (and so
in every instance of the cluster view) and ``/api/nats``, and the ``cryptolink_nats_*`` / ``cryptolink_worker_*``
families; nothing of them without a sink or a worker.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from prometheus_client.samples import Sample

from cryptolink.cluster.worker import HeldShard, PeerStatus, WorkerStatus
from cryptolink.sinks.nats import NatsSinkStats
from cryptolink.status import documents
from cryptolink.status.metrics import MetricsExporter
from cryptolink.status.snapshot import StatusSnapshot
from tests.status import factories as f
from tests.status.test_metrics import FixedClock, FixedSource, value
from tests.status.test_rest_metrics import scrape

pytestmark = [pytest.mark.timeout(60)]


def sink_stats(**kw: Any) -> NatsSinkStats:
    base: dict[str, Any] = {
        "accepted": 120,
        "published": 125,
        "acked": 110,
        "duplicates": 40,
        "retries": 5,
        "lost": 7,
        "lost_by_cause": {"overflow": 6, "attempts": 0, "rejected": 1, "closed": 0},
        "buffered": 3,
        "in_flight": 2,
        "max_buffered": 50,
        "max_in_flight": 20,
        "connected": True,
        "disconnects": 1,
        "reconnects": 1,
        "gaps_published": 2,
        "snapshots_published": {"engine": 4, "periodic": 9, "after_loss": 1},
        "open_losses": 0,
        "ignored": 0,
        "last_error": None,
        "server": "nats://127.0.0.1:4222",
        "stream": "matches",
    }
    base.update(kw)
    return NatsSinkStats(**base)


def worker_status(**kw: Any) -> WorkerStatus:
    base: dict[str, Any] = {
        "worker_id": "w-a",
        "state": "active",
        "fingerprint": "abc123",
        "bucket": "cryptolink_leases",
        "workers_seen": ("w-a", "w-b", "w-c"),
        "target": 2,
        "slots": 4,  # 2 held here, 2 by w-b (w-c runs another configuration: not counted)
        "held": (
            HeldShard("binance", 0, 17, 1_700_000_000_000, True),
            HeldShard("okx", 1, 23, 1_700_000_000_500, True),
        ),
        "handing_over": (),
        "peers": (PeerStatus("w-b", "active", 2, True, 0.4), PeerStatus("w-c", "active", 2, False, 1.1)),
        "leases_acquired": 3,
        "leases_renewed": 40,
        "leases_lost": 1,
        "leases_released": 1,
        "self_fences": 1,
        "renew_failures": 2,
        "nats_failures": 2,
        "acquire_conflicts": 0,
        "start_failures": 0,
        "last_renew_age_s": 1.5,
        "handovers": 1,
        "handovers_completed": 1,
        "handover_timeouts": 0,
        "config_mismatch": ("w-c",),
        "errors": 0,
    }
    base.update(kw)
    return WorkerStatus(**base)


def snap(nats: NatsSinkStats | None = None, worker: WorkerStatus | None = None) -> StatusSnapshot:
    return replace(f.snapshot(f.feed("okx", f.conn("okx-ws-1"))), nats=nats, worker=worker)


def render(s: StatusSnapshot) -> list[Sample]:
    return scrape(MetricsExporter(FixedSource(s), clock=FixedClock(s.taken_ns), process=False))


def test_the_sink_and_the_worker_are_in_the_system_status_and_api_nats() -> None:
    s = snap(sink_stats(), worker_status())
    doc = documents.system_status(s)
    assert doc["nats"]["acked"] == 110 and doc["nats"]["lost_by_cause"]["overflow"] == 6
    assert doc["nats"]["server"] == "nats://127.0.0.1:4222" and doc["nats"]["connected"] is True
    held = doc["worker"]["held"]
    assert [(h["shard"], h["replica"], h["revision"]) for h in held] == [("binance", 0, 17), ("okx", 1, 23)]
    assert list(doc["worker"]["config_mismatch"]) == ["w-c"]
    api = documents.nats_doc(s)
    assert api["sink"] == doc["nats"] and api["worker"] == doc["worker"]
    bare = documents.system_status(snap())
    assert bare["nats"] is None and bare["worker"] is None
    assert documents.nats_doc(snap())["sink"] is None


def test_nats_and_worker_families_carry_the_counters() -> None:
    samples = render(snap(sink_stats(), worker_status()))
    assert value(samples, "cryptolink_nats_connected") == 1.0
    assert value(samples, "cryptolink_nats_acked_total") == 110
    assert value(samples, "cryptolink_nats_duplicates_total") == 40
    assert value(samples, "cryptolink_nats_lost_total", cause="overflow") == 6
    assert value(samples, "cryptolink_nats_lost_total", cause="rejected") == 1
    assert value(samples, "cryptolink_nats_snapshots_published_total", origin="periodic") == 9
    assert value(samples, "cryptolink_nats_in_flight") == 2
    assert value(samples, "cryptolink_worker_state", state="active") == 1.0
    assert value(samples, "cryptolink_worker_state", state="fenced") == 0.0
    assert value(samples, "cryptolink_worker_shards_held") == 2
    assert value(samples, "cryptolink_worker_workers_seen") == 3
    assert value(samples, "cryptolink_worker_config_mismatch") == 1
    assert value(samples, "cryptolink_worker_leases_total", op="renewed") == 40
    assert value(samples, "cryptolink_worker_handovers_total", outcome="completed") == 1
    assert value(samples, "cryptolink_worker_last_renew_age_seconds") == 1.5


def test_no_nats_or_worker_series_without_them() -> None:
    names = {s.name for s in render(snap())}
    assert not [n for n in names if n.startswith(("cryptolink_nats_", "cryptolink_worker_"))]
    down = render(snap(sink_stats(connected=False)))
    assert value(down, "cryptolink_nats_connected") == 0.0


def test_health_and_readiness_see_the_sink_and_the_worker() -> None:
    ok = snap(sink_stats(), worker_status(config_mismatch=()))
    assert documents.health(ok) == (True, []) and documents.readiness(ok) == (True, [])
    down = snap(sink_stats(connected=False, open_losses=3), worker_status(state="fenced", config_mismatch=()))
    healthy, reasons = documents.health(down)
    assert not healthy and reasons == [
        "nats: not connected",
        "nats: 3 stream(s) losing events",
        "worker w-a: fenced (leases not renewed in time, shards stopped)",
    ]
    assert documents.readiness(down)[1] == reasons
    starting = snap(None, worker_status(state="starting", config_mismatch=("w-c",)))
    assert documents.health(starting)[1] == ["worker w-a: workers with another configuration: w-c"]
    assert documents.readiness(starting)[1] == [
        "worker w-a: starting",
        "worker w-a: workers with another configuration: w-c",
    ]
    unrun = snap(None, worker_status(config_mismatch=(), unheld_slots=1))
    assert documents.health(unrun)[1] == [
        "cluster: 1 of 4 shard slots held by no worker for two renewal intervals (a shard failing to start "
        "everywhere? see the log)"
    ]
    twin = snap(None, worker_status(config_mismatch=(), id_conflict=True))
    assert documents.health(twin)[1] == ["worker w-a: another process uses this worker id"]
    samples = render(twin)
    assert value(samples, "cryptolink_worker_id_conflict") == 1.0
    closed = snap(sink_stats(connected=False, closed=True), None)  # stopped on purpose: not a failure
    assert documents.health(closed) == (True, [])
