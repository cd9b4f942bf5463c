"""``/metrics``: the Prometheus exposition built from the status snapshot.

Real runs against the simulator (scraped over HTTP from a real uvicorn server) check that every value equals
the snapshot it was built from and that faults move the right counters; ``promtool check metrics`` lints the
real exposition; hand-made snapshots check the aggregation rules and the bounded cardinality.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from cryptolink import __version__
from cryptolink.bus import BusStats, ConsumerStats, OverflowPolicy
from cryptolink.clock import FakeClock
from cryptolink.engine import ConnectionEvent, ConnectionEventType, ConnectionState
from cryptolink.engine.connection import EngineConfig, ManagedConnection
from cryptolink.engine.quality import LATENCY_BUCKETS_MS, QualityTracker
from cryptolink.engine.stats import ConnectionStats, StreamStatus
from cryptolink.engine.watchdog import WatchdogConfig
from cryptolink.exchanges.base import ConnectionSpec
from cryptolink.feed import BookHealth, FeedStats
from cryptolink.guard import GuardStats
from cryptolink.models import Subscription
from cryptolink.simulator import Fault
from cryptolink.status import documents
from cryptolink.status.app import create_app
from cryptolink.status.cluster import PublisherStats, ReaderStats
from cryptolink.status.counters import MonotonicSum
from cryptolink.status.metrics import ERROR_KINDS, SPECS, MetricsExporter
from cryptolink.status.server import StatusServer
from cryptolink.status.service import StatusService
from cryptolink.status.snapshot import StatusSnapshot
from tests.engine.fakes import (
    BTC_TRADES,
    ETH_TRADES,
    FakeAdapter,
    FakeTransport,
    settle,
    trade,
    wait_connected,
)
from tests.integration.harness import Rig, rig
from tests.status import factories as f

pytestmark = [pytest.mark.timeout(60)]

Labels = dict[str, str]

ALERTS = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "alerts.yml"


def rules_of(path: Path) -> list[dict[str, Any]]:
    """Every rule of a Prometheus rules file."""
    doc = yaml.safe_load(path.read_text())
    return [r for group in doc["groups"] for r in group["rules"]]


# ------------------------------------------------------------------------------------------------ helpers


def parse(body: str) -> list[Sample]:
    """Every sample of an exposition."""
    return [s for fam in text_string_to_metric_families(body) for s in fam.samples]


def find(samples: list[Sample], name: str, **labels: str) -> list[Sample]:
    """Samples named ``name`` whose labels include ``labels``."""
    return [s for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]


def value(samples: list[Sample], name: str, **labels: str) -> float:
    """The value of the one sample named ``name`` with ``labels`` (fails when there is not exactly one)."""
    hits = find(samples, name, **labels)
    assert len(hits) == 1, f"{name}{labels}: {len(hits)} samples"
    return hits[0].value


def conn_labels(fs: FeedStats, cs: ConnectionStats) -> Labels:
    return {"exchange": cs.exchange, "market": fs.market, "feed": fs.name, "connection": cs.connection_id}


def only_feed(snap: StatusSnapshot) -> FeedStats:
    (fs,) = snap.stats.feeds
    return fs


def only_conn(snap: StatusSnapshot) -> ConnectionStats:
    (cs,) = only_feed(snap).connections
    return cs


@dataclass
class Live:
    """A simulator run with its status service, exporter and HTTP server."""

    rig: Rig
    service: StatusService
    exporter: MetricsExporter
    url: str

    async def scrape(self) -> tuple[StatusSnapshot, list[Sample], str]:
        """Take a snapshot, then scrape ``/metrics`` (built from that same snapshot: the service's loop is
        not running, so nothing replaces it in between)."""
        snap = self.service.refresh()
        async with httpx.AsyncClient() as client:
            resp = await client.get(self.url + "/metrics", timeout=10.0)
        assert resp.status_code == 200
        assert resp.headers["content-type"] == CONTENT_TYPE_LATEST
        assert self.service.latest is snap
        return snap, parse(resp.text), resp.text


@asynccontextmanager
async def live(*, per_symbol: bool = False) -> AsyncIterator[Live]:
    """OKX in the simulator (two symbols, trades and books), healthy and flowing, served on loopback."""
    async with rig(["okx"]) as r:
        await r.healthy("okx")
        await r.flowing("okx")
        service = StatusService(r.manager)
        exporter = MetricsExporter(service, per_symbol=per_symbol)
        server = StatusServer(create_app(service, metrics=exporter), "127.0.0.1", 0)
        await server.start()
        try:
            yield Live(r, service, exporter, server.url)
        finally:
            await server.stop()


def promtool_lint(body: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool is not installed"
    return subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, text=True, timeout=30, check=False
    )


# ------------------------------------------------------------------------------------- real simulator runs


async def test_every_value_equals_the_snapshot_it_was_built_from() -> None:
    async with live() as run:
        snap, samples, _ = await run.scrape()
    fs = only_feed(snap)
    cs = only_conn(snap)
    lab = conn_labels(fs, cs)
    assert cs.state is ConnectionState.CONNECTED and cs.messages > 0
    for state in ConnectionState:
        expected = 1.0 if state is ConnectionState.CONNECTED else 0.0
        assert value(samples, "cryptolink_connection_state", **lab, state=state.value) == expected
    assert value(samples, "cryptolink_connection_up", **lab) == 1.0
    assert value(samples, "cryptolink_messages_received_total", **lab) == cs.messages
    assert value(samples, "cryptolink_received_bytes_total", **lab) == cs.bytes
    assert value(samples, "cryptolink_market_events_total", **lab) == cs.market_events
    assert value(samples, "cryptolink_quality_score", **lab) == cs.quality.score
    assert value(samples, "cryptolink_uptime_ratio", **lab) == pytest.approx(cs.quality.uptime_pct / 100)
    assert (
        value(samples, "cryptolink_subscriptions", **lab, state="confirmed")
        == cs.subscriptions_confirmed
        == 4
    )
    assert sum(value(samples, "cryptolink_errors_total", **lab, kind=k) for k in ERROR_KINDS) == cs.errors
    ages = [st.data_age_s for st in cs.streams if st.data_age_s is not None]
    assert value(samples, "cryptolink_data_age_seconds", **lab) == max(ages)
    # the lag histogram: cumulative buckets in seconds, +Inf is the count
    q = cs.quality
    assert q.lag_count > 0
    for bound, n in zip(LATENCY_BUCKETS_MS, q.lag_buckets, strict=True):
        assert value(samples, "cryptolink_exchange_lag_seconds_bucket", **lab, le=str(bound / 1000)) == n
    assert value(samples, "cryptolink_exchange_lag_seconds_bucket", **lab, le="+Inf") == q.lag_count
    assert value(samples, "cryptolink_exchange_lag_seconds_count", **lab) == q.lag_count
    assert value(samples, "cryptolink_exchange_lag_seconds_sum", **lab) == pytest.approx(q.lag_sum_ms / 1000)
    # books, REST budget, connect gate, instance
    feed = {"exchange": fs.exchange, "market": fs.market, "feed": fs.name}
    assert value(samples, "cryptolink_books", **feed) == len(fs.books) == 2
    assert value(samples, "cryptolink_books_live", **feed) == 2
    (rest,) = snap.stats.rest
    assert rest.weight > 0 and rest.budget is not None
    assert value(samples, "cryptolink_rest_weight_used_total", exchange="okx") == rest.weight
    assert value(samples, "cryptolink_rest_weight_budget", exchange="okx") == rest.budget
    assert value(samples, "cryptolink_rest_requests_total", exchange="okx") == rest.requests
    (gate,) = snap.stats.gates
    assert value(samples, "cryptolink_connect_gate_up", exchange="okx") == 1.0
    assert value(samples, "cryptolink_connect_gate_permits_total", exchange="okx") == gate.granted >= 1
    info = find(samples, "cryptolink_instance_info")
    assert [s.labels for s in info] == [{"instance_id": run.service.instance_id, "version": __version__}]
    assert value(samples, "cryptolink_healthy") == (1.0 if documents.health(snap)[0] else 0.0) == 1.0
    assert value(samples, "cryptolink_feed_running", feed="okx") == 1.0
    assert value(samples, "cryptolink_bus_published_total") == snap.bus.published > 0


async def test_a_dropped_socket_raises_the_reconnect_and_resync_counters() -> None:
    async with live() as run:
        r = run.rig
        _, before, _ = await run.scrape()
        run.rig.sim.inject(Fault("drop"), exchange="okx")
        await r.until(lambda: r.conn("okx").stats().successful_reconnects >= 1, 10.0, "a reconnect")
        await r.healthy("okx")
        snap, samples, _ = await run.scrape()
    fs = only_feed(snap)
    cs = only_conn(snap)
    lab = conn_labels(fs, cs)
    feed = {"exchange": fs.exchange, "market": fs.market, "feed": fs.name}
    assert value(before, "cryptolink_reconnect_attempts_total", **lab) == 0
    assert value(samples, "cryptolink_reconnect_attempts_total", **lab) == cs.reconnect_attempts >= 1
    assert value(samples, "cryptolink_reconnect_successes_total", **lab) == cs.successful_reconnects >= 1
    assert (
        value(samples, "cryptolink_unexpected_disconnections_total", **lab)
        == cs.unexpected_disconnections
        >= 1
    )
    resynced = sum(b.resyncs_by_cause.get("reconnect", 0) for b in fs.books)
    assert resynced >= 2  # both books lost their stream
    assert value(before, "cryptolink_book_resyncs_total", **feed, cause="reconnect") == 0
    assert value(samples, "cryptolink_book_resyncs_total", **feed, cause="reconnect") == resynced


async def test_a_sequence_gap_is_counted_as_a_gap_resync_of_its_feed() -> None:
    async with live() as run:
        r = run.rig
        native = r.native("okx", 0)
        run.rig.sim.inject(Fault("gap", symbol=native), exchange="okx")

        def resynced() -> bool:
            return any(b.resyncs_by_cause.get("gap", 0) for b in r.manager.feeds["okx"].book_health())

        await r.until(resynced, 10.0, "a gap resync")
        snap, samples, _ = await run.scrape()
    fs = only_feed(snap)
    feed = {"exchange": fs.exchange, "market": fs.market, "feed": fs.name}
    by_gap = sum(b.resyncs_by_cause.get("gap", 0) for b in fs.books)
    assert by_gap >= 1
    assert value(samples, "cryptolink_book_resyncs_total", **feed, cause="gap") == by_gap
    assert value(samples, "cryptolink_book_gaps_total", **feed) == sum(b.gaps for b in fs.books) >= 1
    assert value(samples, "cryptolink_gaps_total", **feed, stream="book") == fs.gaps_by_stream.get("book", 0)


async def test_a_stall_is_counted_as_stall_detections() -> None:
    """The simulator stops sending data (pings still answered): the data watchdog reports it."""
    async with live() as run:
        r = run.rig
        assert r.conn("okx").stats().stall_detections == 0
        run.rig.sim.inject(Fault("stall", duration_s=2.0), exchange="okx")
        await r.until(lambda: r.conn("okx").stats().stall_detections >= 1, 10.0, "a stall detection")
        snap, samples, _ = await run.scrape()
    fs = only_feed(snap)
    cs = only_conn(snap)
    assert cs.stall_detections >= 1
    assert value(samples, "cryptolink_stall_detections_total", **conn_labels(fs, cs)) == cs.stall_detections


async def test_bus_drops_and_status_push_drops_are_per_consumer_and_visible() -> None:
    async with live() as run:
        r = run.rig
        slow = r.manager.bus.subscribe(
            channel="trades", maxsize=2, overflow="drop_oldest", name="slow-reader"
        )

        def dropping() -> bool:
            return any(c.dropped > 0 for c in r.manager.bus.stats().consumers if c.name == "slow-reader")

        await r.until(dropping, 10.0, "the unread consumer drops")
        client = run.service.connect_client()  # never reads: keeps the newest PUSH_QUEUE_SIZE messages
        assert client is not None
        for _ in range(6):
            run.service.push(run.service.latest)
        snap, samples, _ = await run.scrape()
        run.service.disconnect_client(client)
        slow.close()
    (consumer,) = [c for c in snap.bus.consumers if c.name == "slow-reader"]
    assert value(samples, "cryptolink_bus_dropped_total", consumer="slow-reader") == consumer.dropped > 0
    assert value(samples, "cryptolink_bus_queued", consumer="slow-reader") == 2
    assert value(samples, "cryptolink_bus_queue_capacity", consumer="slow-reader") == 2
    assert snap.push_dropped == 3  # 1 on connect + 6 pushes into a queue of 4
    assert value(samples, "cryptolink_status_push_dropped_total") == 3
    assert value(samples, "cryptolink_status_websocket_clients") == 1


async def test_per_symbol_labels_only_when_asked_and_promtool_finds_no_problem() -> None:
    async with live(per_symbol=True) as run:
        snap, per_symbol, body_sym = await run.scrape()
        body = MetricsExporter(run.service).render()[0].decode()  # the same snapshot, default labels
    default = parse(body)
    assert not [s for s in default if "symbol" in s.labels or "channel" in s.labels]
    fs = only_feed(snap)
    cs = only_conn(snap)
    lab = conn_labels(fs, cs)
    for st in cs.streams:
        sub = {**lab, "channel": st.channel, "symbol": st.symbol}
        assert value(per_symbol, "cryptolink_subscription_stale", **sub) == float(st.stale)
        assert st.data_age_s is not None
        assert value(per_symbol, "cryptolink_data_age_seconds", **sub) == st.data_age_s
    assert len(find(per_symbol, "cryptolink_data_age_seconds")) == len(cs.streams) == 4
    feed = {"exchange": fs.exchange, "market": fs.market, "feed": fs.name}
    for b in fs.books:
        assert value(per_symbol, "cryptolink_book_live", **feed, symbol=b.symbol) == 1.0
    # the per-symbol series add up to the aggregated one
    per_book = find(per_symbol, "cryptolink_book_resyncs_total", cause="restart")
    assert len(per_book) == 2
    assert sum(s.value for s in per_book) == value(default, "cryptolink_book_resyncs_total", cause="restart")
    # the same snapshot with a REST manager (members, groups, budgets and their pools)
    stats = f.rest(
        (
            f.member(latency_ms=20.0, errors={"timeout": 1}, http_429=1, **f.latency(20.0, 300.0)),
            f.member("okx-a", "okx", state="offline"),
        ),
        (f.group(chosen={"binance-a": 3}, retries=1),),
        (
            f.budget(
                lim=f.limiter(
                    f.pool("binance:default:weight", weight=40),
                    f.pool("binance:default:weight:background"),
                    mode="redis",
                ),
                answers_429=1,
            ),
        ),
        reloads=1,
    )
    with_rest = replace(snap, rest=stats, rest_budgets=stats.budgets)
    body_rest = MetricsExporter(FixedSource(with_rest), process=False).render()[0].decode()
    assert value(parse(body_rest), "cryptolink_rest_member_latency_seconds_count", member="binance-a") == 2
    assert value(parse(body_rest), "cryptolink_rest_pool_weight_total", pool="weight") == 40
    for text in (body, body_sym, body_rest):
        lint = promtool_lint(text)
        assert (lint.returncode, lint.stdout, lint.stderr) == (0, "", "")


async def test_promtool_reports_a_broken_exposition() -> None:
    """The lint check above can fail: a counter without ``_total`` is reported."""
    lint = promtool_lint("# HELP bad_requests x\n# TYPE bad_requests counter\nbad_requests 1\n")
    assert lint.returncode != 0
    assert 'bad_requests counter metrics should have "_total" suffix' in lint.stdout + lint.stderr


# ------------------------------------------------------------------ the engine side of stall detections


async def _watched_connection(
    subs: tuple[Subscription, ...],
) -> tuple[ManagedConnection, FakeTransport, FakeClock, list[ConnectionEvent]]:
    """A connection on fake time with acknowledged ``subs`` (watchdog: 2.5 s minimum, 60 s maximum idle)."""
    clock, transport = FakeClock(), FakeTransport()
    events: list[ConnectionEvent] = []
    wd = WatchdogConfig(first_data_timeout_s=10.0, min_idle_s=2.5, max_idle_s=60.0)
    conn = ManagedConnection(
        FakeAdapter(),
        ConnectionSpec("ws://fake/ws", subs),
        conn_id="c1",
        config=EngineConfig(seed=1, tick_s=0.5, watchdog=wd),
        clock=clock,
        transport=transport,
        on_data=lambda _c, _items: None,
        on_event=events.append,
    )
    await conn.start()
    await wait_connected(conn, transport, clock)
    sess = transport.sessions[-1]
    for m in sess.sent_ops("subscribe"):
        sess.feed(f'{{"ack":{m["id"]}}}')
    await settle()
    return conn, transport, clock, events


def _stale_reports(events: list[ConnectionEvent]) -> int:
    return sum(1 for e in events if e.type is ConnectionEventType.STALE_SUBSCRIPTION)


async def test_each_silent_subscription_report_is_one_stall_detection() -> None:
    """ETH goes silent while BTC flows: every watchdog report on ETH counts (the session stays up)."""
    conn, transport, clock, events = await _watched_connection((BTC_TRADES, ETH_TRADES))
    sess = transport.sessions[-1]
    for i in range(30):
        sess.feed(trade("BTC/USDT", i))
        sess.feed(trade("ETH/USDT", i))
        await clock.advance(0.1)
    assert conn.stats().stall_detections == 0
    for i in range(100):  # 10 s of BTC only
        sess.feed(trade("BTC/USDT", 100 + i))
        await clock.advance(0.1)
    reports = _stale_reports(events)
    assert reports >= 1 and len(transport.sessions) == 1
    assert conn.stats().stall_detections == reports
    await conn.stop()


async def test_a_silent_connection_is_one_stall_detection_per_reset() -> None:
    """Nothing at all arrives: the connection-level watchdog resets the session, and that report counts."""
    conn, transport, clock, events = await _watched_connection((BTC_TRADES,))
    sess = transport.sessions[-1]
    for i in range(30):
        sess.feed(trade("BTC/USDT", i))
        await clock.advance(0.1)
    for _ in range(8):  # silent: the session is reset within a few seconds
        await clock.advance(0.5)
    await wait_connected(conn, transport, clock, 2)
    silent = [e for e in events if "connection silent" in e.description]
    assert len(silent) == 1
    assert conn.stats().stall_detections == _stale_reports(events) >= 1
    await conn.stop()


# ----------------------------------------------------------------------------------- hand-made snapshots


@dataclass
class FixedSource:
    """A snapshot source with a fixed snapshot (what the exporter reads of a status service)."""

    latest: StatusSnapshot
    clients: int = 0


class FixedClock:
    def __init__(self, now_ns: int) -> None:
        self.now_ns = now_ns

    def monotonic(self) -> float:
        return 0.0

    def time_ns(self) -> int:
        return self.now_ns

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0)


def render(snap: StatusSnapshot, *, per_symbol: bool = False, now_ns: int | None = None) -> list[Sample]:
    clock = FixedClock(now_ns if now_ns is not None else snap.taken_ns)
    exporter = MetricsExporter(FixedSource(snap), per_symbol=per_symbol, clock=clock, process=False)
    return parse(exporter.render()[0].decode())


def consumer(name: str, consumer_id: int, dropped: int, delivered: int) -> ConsumerStats:
    return ConsumerStats(
        consumer_id,
        name,
        "iterator",
        "trades",
        None,
        None,
        OverflowPolicy.DROP_OLDEST,
        8,
        1,
        delivered,
        dropped,
        0,
        False,
    )


def test_consumers_sharing_a_name_are_summed_into_one_series() -> None:
    bus = BusStats(
        published=50, unrouted=1, consumers=(consumer("algo", 1, 3, 10), consumer("algo", 2, 4, 20))
    )
    snap = replace(f.snapshot(f.feed("okx", f.conn("okx-ws-1"))), bus=bus)
    samples = render(snap)
    assert value(samples, "cryptolink_bus_dropped_total", consumer="algo") == 7
    assert value(samples, "cryptolink_bus_delivered_total", consumer="algo") == 30
    assert value(samples, "cryptolink_bus_queue_capacity", consumer="algo") == 16
    assert value(samples, "cryptolink_bus_unrouted_total") == 1


def test_snapshot_age_is_measured_at_scrape_time() -> None:
    snap = f.snapshot(f.feed("okx", f.conn("okx-ws-1")))
    samples = render(snap, now_ns=snap.taken_ns + 2_500_000_000)
    assert value(samples, "cryptolink_status_snapshot_age_seconds") == 2.5
    assert value(samples, "cryptolink_status_snapshot_timestamp_seconds") == snap.taken_ns / 1e9


def test_a_failed_connection_an_unstarted_entry_and_a_failed_book_read_unhealthy() -> None:
    cs = f.conn("okx-ws-1", ConnectionState.FAILED, reconnect_attempts=7)
    books = (f.book("BTC/USDT", "okx-ws-1", "failed"), f.book("ETH/USDT", "okx-ws-1"))
    snap = f.snapshot(f.feed("okx", cs, books=books), enabled=("okx", "gate"))
    samples = render(snap)
    lab = {"connection": "okx-ws-1"}
    assert value(samples, "cryptolink_connection_state", **lab, state="failed") == 1.0
    assert sum(s.value for s in find(samples, "cryptolink_connection_state", **lab)) == 1.0
    assert value(samples, "cryptolink_connection_up", **lab) == 0.0
    assert value(samples, "cryptolink_books_live", feed="okx") == 1
    assert value(samples, "cryptolink_feed_running", feed="gate") == 0.0
    assert value(samples, "cryptolink_healthy") == 0.0


def test_resync_causes_are_summed_per_feed_and_every_cause_is_present() -> None:
    books = (
        replace(f.book("BTC/USDT", "okx-ws-1"), resyncs_by_cause={"gap": 2, "checksum": 1}),
        replace(f.book("ETH/USDT", "okx-ws-1"), resyncs_by_cause={"gap": 3}),
    )
    samples = render(f.snapshot(f.feed("okx", f.conn("okx-ws-1"), books=books)))
    assert value(samples, "cryptolink_book_resyncs_total", cause="gap") == 5
    assert value(samples, "cryptolink_book_resyncs_total", cause="checksum") == 1
    assert value(samples, "cryptolink_book_resyncs_total", cause="overflow") == 0  # present before it happens
    assert len(find(samples, "cryptolink_book_resyncs_total")) == 8


def test_round_trips_become_a_seconds_histogram() -> None:
    tracker = QualityTracker()
    for ms in (0.8, 30.0, 30.0, 400.0):
        tracker.record_rtt(ms)
    cs = f.conn("okx-ws-1", quality=tracker.snapshot(0.0))
    samples = render(f.snapshot(f.feed("okx", cs)))
    assert value(samples, "cryptolink_ping_rtt_seconds_bucket", le="0.001") == 1
    assert value(samples, "cryptolink_ping_rtt_seconds_bucket", le="0.025") == 1
    assert value(samples, "cryptolink_ping_rtt_seconds_bucket", le="0.05") == 3
    assert value(samples, "cryptolink_ping_rtt_seconds_bucket", le="0.5") == 4
    assert value(samples, "cryptolink_ping_rtt_seconds_bucket", le="+Inf") == 4
    assert value(samples, "cryptolink_ping_rtt_seconds_sum") == pytest.approx(0.4608)


def test_a_quality_without_histograms_exposes_no_half_histogram() -> None:
    samples = render(f.snapshot(f.feed("okx", f.conn("okx-ws-1"))))  # factories' quality has no buckets
    assert find(samples, "cryptolink_ping_rtt_seconds_bucket") == []
    assert find(samples, "cryptolink_ping_rtt_seconds_count") == []


def _many_symbols(n: int) -> StatusSnapshot:
    symbols = [f"S{i}/USDT" for i in range(n)]
    streams = tuple(StreamStatus("book", s, "confirmed", 0.1 + i, 2.5, False) for i, s in enumerate(symbols))
    books = tuple(f.book(s, "okx-ws-1") for s in symbols)
    cs = f.conn("okx-ws-1", streams=streams, quality=QualityTracker().snapshot(0.0))
    return f.snapshot(f.feed("okx", cs, books=books))


def test_series_do_not_grow_with_symbols_unless_per_symbol() -> None:
    few, many = _many_symbols(2), _many_symbols(40)
    assert len(render(few)) == len(render(many)) <= 70 + 34 + 20
    assert value(render(many), "cryptolink_data_age_seconds") == pytest.approx(39.1)  # the most silent one
    grown = len(render(many, per_symbol=True)) - len(render(few, per_symbol=True))
    assert grown == 38 * (2 + 13)  # per subscription: age, stale; per book: live, 4 counters, 8 causes


def test_a_failing_scrape_is_counted_and_shown_on_the_next_one() -> None:
    snap = f.snapshot(f.feed("okx", f.conn("okx-ws-1")))
    source = FixedSource(snap)
    exporter = MetricsExporter(source, process=False)
    source.latest = replace(snap, bus=None)  # type: ignore[arg-type]  # a broken snapshot
    with pytest.raises(AttributeError):
        exporter.render()
    source.latest = snap
    samples = parse(exporter.render()[0].decode())
    assert value(samples, "cryptolink_metrics_render_errors_total") == 1


def test_every_family_has_help_a_unit_suffix_rule_and_no_duplicate() -> None:
    names = [s.name for s in SPECS]
    assert len(names) == len(set(names))
    for spec in SPECS:
        assert spec.name.startswith("cryptolink_") and spec.help.endswith(".")
        assert spec.name.endswith("_total") == (spec.kind == "counter"), spec.name
        assert spec.name.endswith("_info") == (spec.kind == "info"), spec.name


def test_book_counters_are_summed_per_feed() -> None:
    a = BookHealth("X/USDT", "live", 1, gaps=2, checksum_failures=3, resyncs=4, dropped=5, id_restarts=6)
    b = BookHealth("Y/USDT", "live", 1, gaps=10, checksum_failures=20, resyncs=0, dropped=30, id_restarts=40)
    samples = render(f.snapshot(f.feed("okx", f.conn("okx-ws-1"), books=(a, b))))
    assert value(samples, "cryptolink_book_gaps_total") == 12
    assert value(samples, "cryptolink_book_checksum_failures_total") == 23
    assert value(samples, "cryptolink_book_messages_dropped_total") == 35
    assert value(samples, "cryptolink_book_id_restarts_total") == 46


# ------------------------------------------------------------------- sums that never go down (monotonic)


def _books_of(n: int, resyncs_by_cause: dict[str, int]) -> tuple[BookHealth, ...]:
    return tuple(
        replace(f.book(f"S{i}/USDT", "okx-ws-1"), resyncs_by_cause=dict(resyncs_by_cause)) for i in range(n)
    )


def _exporter(snap: StatusSnapshot) -> tuple[FixedSource, MetricsExporter]:
    source = FixedSource(snap)
    return source, MetricsExporter(source, clock=FixedClock(snap.taken_ns), process=False)


def _scrape(exporter: MetricsExporter) -> list[Sample]:
    return parse(exporter.render()[0].decode())


def test_a_book_that_goes_away_keeps_its_counts_in_the_feed_sums() -> None:
    a = BookHealth("A/USDT", "live", 1, gaps=2, checksum_failures=1, resyncs=3, dropped=3, id_restarts=1)
    a = replace(a, resyncs_by_cause={"restart": 1, "gap": 2})
    b = BookHealth("B/USDT", "live", 1, gaps=5, checksum_failures=4, resyncs=6, dropped=7, id_restarts=2)
    b = replace(b, resyncs_by_cause={"restart": 1, "checksum": 4, "exotic": 1})
    conn = f.conn("okx-ws-1")
    source, exporter = _exporter(f.snapshot(f.feed("okx", conn, books=(a, b))))
    before = _scrape(exporter)
    assert value(before, "cryptolink_book_resyncs_total", cause="restart") == 2
    # B is unsubscribed; A goes on counting
    a2 = replace(a, gaps=3, resyncs_by_cause={"restart": 1, "gap": 3})
    source.latest = f.snapshot(f.feed("okx", conn, books=(a2,)))
    after = _scrape(exporter)
    assert value(after, "cryptolink_books", feed="okx") == 1  # gauges follow the books present
    assert value(after, "cryptolink_book_resyncs_total", cause="restart") == 2  # not 1
    assert value(after, "cryptolink_book_resyncs_total", cause="gap") == 3
    assert value(after, "cryptolink_book_resyncs_total", cause="checksum") == 4  # all of them B's
    assert value(after, "cryptolink_book_resyncs_total", cause="exotic") == 1
    assert value(after, "cryptolink_book_gaps_total") == 3 + 5
    assert value(after, "cryptolink_book_checksum_failures_total") == 1 + 4
    assert value(after, "cryptolink_book_messages_dropped_total") == 3 + 7
    assert value(after, "cryptolink_book_id_restarts_total") == 1 + 2
    for sample in find(before, "cryptolink_book_resyncs_total") + find(before, "cryptolink_book_gaps_total"):
        (now,) = find(after, sample.name, **sample.labels)
        assert now.value >= sample.value, sample
    # a second scrape of the same snapshot gives the same samples
    assert _scrape(exporter) == after


def test_a_book_resubscribed_between_scrapes_keeps_the_old_counts() -> None:
    """The same symbol comes back as a new book (counters restarted lower): the old counts stay in."""
    old = replace(f.book("A/USDT", "okx-ws-1"), gaps=9, resyncs_by_cause={"restart": 1, "gap": 9})
    new = replace(f.book("A/USDT", "okx-ws-1"), gaps=1, resyncs_by_cause={"restart": 1})
    conn = f.conn("okx-ws-1")
    source, exporter = _exporter(f.snapshot(f.feed("okx", conn, books=(old,))))
    _scrape(exporter)
    source.latest = f.snapshot(f.feed("okx", conn, books=(new,)))
    samples = _scrape(exporter)
    assert value(samples, "cryptolink_book_gaps_total") == 9 + 1
    assert value(samples, "cryptolink_book_resyncs_total", cause="restart") == 2
    assert value(samples, "cryptolink_book_resyncs_total", cause="gap") == 9


def test_a_closed_consumer_keeps_its_counts_in_its_name_sums() -> None:
    both = (consumer("algo", 1, 5, 10), consumer("algo", 2, 1000, 20))
    snap = f.snapshot(f.feed("okx", f.conn("okx-ws-1")))
    source, exporter = _exporter(replace(snap, bus=BusStats(published=9, unrouted=0, consumers=both)))
    assert value(_scrape(exporter), "cryptolink_bus_dropped_total", consumer="algo") == 1005
    # consumer 1 closes; consumer 2 drops 10 more; a third one with another name appears
    left = (consumer("algo", 2, 1010, 25), consumer("other", 3, 1, 1))
    source.latest = replace(snap, bus=BusStats(published=9, unrouted=0, consumers=left))
    samples = _scrape(exporter)
    assert value(samples, "cryptolink_bus_dropped_total", consumer="algo") == 1015
    assert value(samples, "cryptolink_bus_delivered_total", consumer="algo") == 35
    assert value(samples, "cryptolink_bus_queue_capacity", consumer="algo") == 8  # gauges: present ones only
    assert value(samples, "cryptolink_bus_dropped_total", consumer="other") == 1
    # every consumer of "algo" gone: its series goes away and nothing is kept for it
    source.latest = replace(snap, bus=BusStats(published=9, unrouted=0, consumers=left[1:]))
    samples = _scrape(exporter)
    assert find(samples, "cryptolink_bus_dropped_total", consumer="algo") == []
    assert len(exporter.collector._bus_sums) == 1


def test_monotonic_sums_keep_no_memory_per_vanished_member() -> None:
    acc = MonotonicSum()
    for i in range(1000):  # a thousand short-lived members, one at a time
        totals = acc.update([(i, {"n": 1, "m": 2})])
    assert totals == {"n": 1000, "m": 2000}
    assert acc.members == 1
    assert acc.update([]) == {"n": 1000, "m": 2000}
    assert acc.members == 0


def test_the_resync_alert_does_not_fire_when_a_book_goes_away(tmp_path: Path) -> None:
    """The reviewer's case through promtool: 30 books with one initial resync each, one unsubscribed at minute
    3. The exported series stays at 30 and CryptolinkBookResyncLoop stays silent; the plain sum (30 -> 29,
    what the exporter exposed before) fires it."""
    conn = f.conn("okx-ws-1")
    books = _books_of(30, resyncs_by_cause={"restart": 1})
    source, exporter = _exporter(f.snapshot(f.feed("okx", conn, books=books)))
    exported: list[float] = []
    plain: list[float] = []
    for minute in range(10):
        present = books if minute < 3 else books[1:]
        source.latest = f.snapshot(f.feed("okx", conn, books=present))
        exported.append(value(_scrape(exporter), "cryptolink_book_resyncs_total", cause="restart"))
        plain.append(float(len(present)))
    assert exported == [30.0] * 10
    (rule,) = [r for r in rules_of(ALERTS) if r["alert"] == "CryptolinkBookResyncLoop"]
    (tmp_path / "rules.yml").write_text(
        yaml.safe_dump(
            {"groups": [{"name": "g", "rules": [{k: rule[k] for k in ("alert", "expr", "labels")}]}]}
        )
    )
    labels = 'job="cryptolink", exchange="okx", market="spot", feed="okx", cause="restart"'
    test = {
        "rule_files": ["rules.yml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {
                        "series": f'cryptolink_book_resyncs_total{{{labels}, instance="{name}"}}',
                        "values": " ".join(f"{v:g}" for v in values),
                    }
                    for name, values in (("exported", exported), ("plain", plain))
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "4m",
                        "alertname": "CryptolinkBookResyncLoop",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "warning",
                                    "job": "cryptolink",
                                    "instance": "plain",
                                    "exchange": "okx",
                                    "market": "spot",
                                    "feed": "okx",
                                }
                            }
                        ],
                    }
                ],
            }
        ],
    }
    (tmp_path / "test.yml").write_text(yaml.safe_dump(test))
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool is not installed"
    res = subprocess.run(
        [promtool, "test", "rules", "test.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr


# ---------------------------------------------------------------------------- status service and Redis


@dataclass(frozen=True, slots=True)
class _LaterSnapshot(StatusSnapshot):
    """A snapshot with the status service's later counters (whether or not StatusSnapshot has them yet)."""

    snapshot_errors: int = 0
    push_clients_dropped: int = 0
    push_clients_refused: int = 0
    host_timeouts: int = 0


def test_status_service_counters_are_exported_and_zero_by_default() -> None:
    snap = f.snapshot(f.feed("okx", f.conn("okx-ws-1")))
    plain = render(snap)
    for name in (
        "cryptolink_status_snapshot_errors_total",
        "cryptolink_status_push_clients_dropped_total",
        "cryptolink_status_push_clients_refused_total",
        "cryptolink_status_host_timeouts_total",
    ):
        assert value(plain, name) == 0, name
    fields = {f_.name: getattr(snap, f_.name) for f_ in dataclasses.fields(StatusSnapshot)}
    later = _LaterSnapshot(
        **{
            **fields,
            "snapshot_errors": 3,
            "push_clients_dropped": 2,
            "push_clients_refused": 5,
            "host_timeouts": 7,
        }
    )
    samples = render(later)
    assert value(samples, "cryptolink_status_snapshot_errors_total") == 3
    assert value(samples, "cryptolink_status_push_clients_dropped_total") == 2
    assert value(samples, "cryptolink_status_push_clients_refused_total") == 5
    assert value(samples, "cryptolink_status_host_timeouts_total") == 7


def test_guard_callback_errors_and_drops_are_two_counters() -> None:
    guards = GuardStats(
        guards=2,
        checks=10,
        check_errors=0,
        halts=3,
        resumes=2,
        callback_errors=4,
        callbacks_dropped=9,
        safe=1,
    )
    snap = f.snapshot(f.feed("okx", f.conn("okx-ws-1")))
    samples = render(replace(snap, stats=replace(snap.stats, guards=guards)))
    assert value(samples, "cryptolink_guard_callback_errors_total") == 4
    assert value(samples, "cryptolink_guard_callbacks_dropped_total") == 9
    assert value(samples, "cryptolink_guard_halts_total") == 3


@dataclass
class _Publisher:
    figures: PublisherStats

    def stats(self) -> PublisherStats:
        return self.figures


@dataclass
class _Reader:
    figures: ReaderStats

    def stats(self) -> ReaderStats:
        return self.figures


def test_redis_publisher_and_reader_counters_are_exported_only_with_their_sources() -> None:
    snap = f.snapshot(f.feed("okx", f.conn("okx-ws-1")))
    without = render(snap)
    assert [s for s in without if s.name.startswith("cryptolink_status_redis_")] == []
    publisher = _Publisher(PublisherStats(12, 3, 2, "ConnectionError: x", False, None, collisions=4))
    reader = _Reader(ReaderStats(reads=7, errors=1, shared=30, last_error=None))
    exporter = MetricsExporter(
        FixedSource(snap), clock=FixedClock(snap.taken_ns), process=False, redis=publisher, cluster=reader
    )
    samples = parse(exporter.render()[0].decode())
    assert value(samples, "cryptolink_status_redis_writes_total") == 12
    assert value(samples, "cryptolink_status_redis_write_errors_total") == 3
    assert value(samples, "cryptolink_status_redis_writes_skipped_total") == 2
    assert value(samples, "cryptolink_status_redis_connected") == 0
    assert value(samples, "cryptolink_status_redis_collisions_total") == 4
    assert value(samples, "cryptolink_status_redis_reads_total") == 7
    assert value(samples, "cryptolink_status_redis_read_errors_total") == 1
    publisher.figures = replace(publisher.figures, connected=True, writes=13)
    samples = parse(exporter.render()[0].decode())
    assert value(samples, "cryptolink_status_redis_connected") == 1
    assert value(samples, "cryptolink_status_redis_writes_total") == 13


def test_a_nan_round_trip_is_ignored_by_the_histogram() -> None:
    tracker = QualityTracker()
    tracker.record_rtt(30.0)
    tracker.record_rtt(math.nan)
    tracker.record_rtt(400.0)
    assert tracker.rtt_histogram.nan == 1
    h = tracker.rtt_histogram
    quality = replace(f.QUALITY, rtt_buckets=h.cumulative(), rtt_sum_ms=h.sum_ms, rtt_count=h.count)
    cs = f.conn("okx-ws-1", quality=quality)
    samples = render(f.snapshot(f.feed("okx", cs)))
    assert value(samples, "cryptolink_ping_rtt_seconds_count") == 2
    assert value(samples, "cryptolink_ping_rtt_seconds_sum") == pytest.approx(0.43)
    assert value(samples, "cryptolink_ping_rtt_seconds_bucket", le="0.001") == 0  # NaN fell in no bucket
