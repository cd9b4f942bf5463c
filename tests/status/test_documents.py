"""The status documents built from snapshots: the monitoring document's fixed keys and formats, the mapping of
the engine's seven states, what ``healthy`` and ``ready`` require, event cursors and the push message."""

from __future__ import annotations

from dataclasses import replace

import pytest

from cryptolink.engine import ConnectionEventType, ConnectionState, Severity
from cryptolink.engine.stats import StreamStatus
from cryptolink.status import documents as d
from cryptolink.status.host import format_bytes
from cryptolink.status.snapshot import StatusSnapshot
from tests.status.factories import T0, book, conn, event, feed, snapshot

S = ConnectionState

SYSTEM_KEYS = {
    "cpu_usage",
    "cpu_usage_percent",
    "memory_usage",
    "memory_usage_percent",
    "disk_space",
    "disk_space_percent",
    "timestamp",
    "exchange_connections",
}
CONNECTION_KEYS = {
    "exchange_name",
    "status",
    "status_color",
    "last_connected_at",
    "last_disconnected_at",
    "last_error",
    "last_error_at",
    "reconnect_count",
    "latency_ms",
    "message_count",
}
SUMMARY_KEYS = {"total", "connected", "disconnected", "error", "reconnecting", "healthy"}


def healthy_snapshot() -> StatusSnapshot:
    return snapshot(
        feed("okx", conn("okx-ws-1"), books=(book("BTC/USDT", "okx-ws-1"),)),
        feed("binance", conn("binance-ws-1", exchange="binance"), books=(book("BTC/USDT", "binance-ws-1"),)),
    )


def test_system_status_has_every_monitoring_key_with_the_documented_formats() -> None:
    doc = d.system_status(healthy_snapshot())
    assert doc.keys() >= SYSTEM_KEYS
    assert doc["cpu_usage"] == doc["cpu_usage_percent"] == 15.2
    assert doc["memory_usage"] == "2.5GB / 16GB" and doc["memory_usage_percent"] == 15.6
    assert doc["disk_space"] == "45GB / 500GB" and doc["disk_space_percent"] == 9.0
    assert doc["timestamp"] == "2026-12-02T02:53:25.000Z"
    ec = doc["exchange_connections"]
    assert set(ec) >= {"summary", "connections", "timestamp"}
    assert ec["summary"].keys() >= SUMMARY_KEYS
    for c in ec["connections"]:
        assert c.keys() >= CONNECTION_KEYS
    first = ec["connections"][0]  # sorted by entry name: binance first
    assert first["exchange_name"] == "binance" and first["connection_id"] == "binance-ws-1"
    assert first["status"] == "connected" and first["status_color"] == "green"
    assert first["latency_ms"] == 12.5 and first["message_count"] == 1000 and first["reconnect_count"] == 0
    assert first["last_connected_at"] == d.iso(T0) and first["last_disconnected_at"] is None
    assert [s["data_age_s"] for s in first["subscriptions"]] == [0.25, 0.1]


def test_every_engine_state_maps_to_a_documented_status_and_colour() -> None:
    assert set(d.STATUS_OF) == set(ConnectionState)
    expected = {
        S.CONNECTED: ("connected", "green"),
        S.UNSTABLE: ("error", "red"),
        S.CONNECTING: ("connecting", "yellow"),
        S.RECONNECTING: ("reconnecting", "orange"),
        S.FAILED: ("error", "red"),
        S.DISCONNECTED: ("disconnected", "gray"),
        S.STOPPED: ("disconnected", "gray"),
    }
    for state, (status, colour) in expected.items():
        doc = d.exchange_connections(snapshot(feed("okx", conn("okx-ws-1", state))))
        c = doc["connections"][0]
        assert (c["status"], c["status_color"], c["state"]) == (status, colour, state.value)
        assert c["unstable"] is (state is S.UNSTABLE)


def test_summary_counts_each_status_and_is_healthy_only_when_everything_is() -> None:
    snap = snapshot(
        feed("a", conn("a-1"), conn("a-2", S.RECONNECTING), conn("a-3", S.FAILED)),
        feed("b", conn("b-1", S.UNSTABLE), conn("b-2", S.CONNECTING), conn("b-3", S.STOPPED)),
    )
    summary = d.exchange_connections(snap)["summary"]
    assert (summary["total"], summary["connected"], summary["reconnecting"]) == (6, 1, 1)
    assert (summary["error"], summary["connecting"], summary["disconnected"], summary["unstable"]) == (
        2,
        1,
        1,
        1,
    )
    assert summary["healthy"] is False
    assert d.exchange_connections(healthy_snapshot())["summary"]["healthy"] is True


@pytest.mark.parametrize(
    "snap, reason",
    [
        (
            snapshot(feed("okx", conn("okx-ws-1"), books=(book("BTC/USDT", "okx-ws-1", "resyncing"),))),
            "book resyncing",
        ),
        (snapshot(feed("okx", conn("okx-ws-1", S.UNSTABLE))), "okx-ws-1: unstable"),
        (snapshot(feed("okx", conn("okx-ws-1")), enabled=("okx", "bybit")), "bybit: not running"),
        (snapshot(feed("okx")), "okx: no connection"),
    ],
)
def test_one_bad_part_makes_the_instance_unhealthy_and_says_why(snap: StatusSnapshot, reason: str) -> None:
    healthy, reasons = d.health(snap)
    assert healthy is False and any(reason in r for r in reasons), reasons
    assert d.exchange_connections(snap)["summary"]["healthy"] is False


def test_ready_needs_every_enabled_entry_delivering_but_not_every_book_live() -> None:
    assert d.readiness(healthy_snapshot()) == (True, [])
    resyncing = snapshot(feed("okx", conn("okx-ws-1"), books=(book("BTC/USDT", "okx-ws-1", "resyncing"),)))
    assert d.readiness(resyncing)[0] is True  # data flows; the book's state is health, not readiness
    stale = snapshot(feed("okx", conn("okx-ws-1", subscriptions_stale=1)))
    assert d.readiness(stale) == (False, ["okx-ws-1: 1 stale subscription(s)"])
    missing = snapshot(feed("okx", conn("okx-ws-1")), enabled=("okx", "gate"))
    assert d.readiness(missing) == (False, ["gate: not running"])
    assert d.readiness(snapshot(feed("okx", conn("okx-ws-1", S.RECONNECTING))))[1] == [
        "okx-ws-1: reconnecting"
    ]


def test_last_error_and_disconnect_times_are_iso_8601_utc() -> None:
    c = conn(
        "okx-ws-1",
        S.RECONNECTING,
        last_disconnected_ns=T0 + 1_500_000_000,
        last_error="connection refused",
        last_error_ns=T0 + 2_000_000,
        reconnect_attempts=3,
        successful_reconnects=1,
    )
    doc = d.exchange_connections(snapshot(feed("okx", c)))["connections"][0]
    assert doc["last_disconnected_at"] == "2026-12-02T02:53:21.500Z"
    assert doc["last_error"] == "connection refused" and doc["last_error_at"] == "2026-12-02T02:53:20.002Z"
    assert doc["reconnect_count"] == 3 and doc["reconnect_successes"] == 1


def test_events_after_a_cursor_and_the_next_cursor() -> None:
    records = [event(i) for i in range(4, 9)]  # the ring keeps 4..8: 1..3 were pushed out
    doc = d.events_doc(records, since=6, evicted_total=3)
    assert [e["seq"] for e in doc["events"]] == [7, 8]
    assert (
        doc["last_seq"] == 8 and doc["dropped"] == 0 and doc["evicted_total"] == 3
    )  # this caller missed nothing
    assert d.events_doc(records, since=8)["events"] == []
    assert d.events_doc([], since=5)["last_seq"] == 5  # an empty ring never moves the cursor back
    one = d.event_doc(event(1, ConnectionEventType.RECONNECT_FAILED, severity=Severity.CRITICAL, attempt=4))
    assert (one["type"], one["severity"], one["level"], one["attempt"]) == (
        "reconnect_failed",
        "critical",
        4,
        4,
    )
    assert one["time"] == "2026-12-02T02:53:20.001Z" and one["time_ms"] == T0 // 1_000_000 + 1


@pytest.mark.parametrize("since, dropped", [(0, 3), (1, 2), (2, 1), (3, 0), (4, 0), (8, 0), (20, 0)])
def test_dropped_counts_what_this_caller_missed_not_the_lifetime_evictions(since: int, dropped: int) -> None:
    records = [event(i) for i in range(4, 9)]
    doc = d.events_doc(records, since=since, evicted_total=3)
    assert doc["dropped"] == dropped and doc["evicted_total"] == 3
    assert [e["seq"] for e in doc["events"]] == [s for s in range(4, 9) if s > since]


def test_events_doc_reads_its_records_once() -> None:
    doc = d.events_doc(
        (event(i) for i in range(1, 4)), since=1
    )  # a generator: a second pass would see nothing
    assert [e["seq"] for e in doc["events"]] == [2, 3] and doc["last_seq"] == 3


def test_disk_space_and_its_percent_agree() -> None:
    host = replace(
        healthy_snapshot().host, disk_used=45 * 1024**3, disk_total=500 * 1024**3, disk_percent=23.1
    )
    doc = d.system_status(
        replace(healthy_snapshot(), host=host)
    )  # 23.1: psutil's share, without reserved blocks
    assert doc["disk_space"] == "45GB / 500GB" and doc["disk_space_percent"] == 9.0  # used / total, as shown
    empty = replace(host, disk_used=0, disk_total=0, disk_percent=0.0)
    assert d.system_status(replace(healthy_snapshot(), host=empty))["disk_space_percent"] == 0.0


def test_push_message_wraps_the_connections_document_with_a_millisecond_id() -> None:
    snap = snapshot(feed("okx", conn("okx-ws-1")), events=tuple(event(i) for i in range(1, 31)))
    msg = d.push_message(snap)
    ms = snap.taken_ns // 1_000_000
    assert (msg["type"], msg["id"], msg["timestamp"]) == ("exchange_status", f"exchange_status_{ms}", ms)
    assert msg["data"]["summary"].keys() >= SUMMARY_KEYS
    assert msg["data"]["connections"][0]["exchange_name"] == "okx"
    assert msg["data"]["host"]["memory_usage"] == "2.5GB / 16GB"
    assert [e["seq"] for e in msg["data"]["events"]] == list(range(11, 31))  # the latest 20


def test_connections_detail_has_quality_parts_latency_books_and_subscriptions() -> None:
    c = conn(
        "okx-ws-1",
        streams=(StreamStatus("trades", "BTC/USDT", "confirmed", 12.0, 4.0, True),),
        subscriptions_stale=1,
    )
    doc = d.connections_detail(snapshot(feed("okx", c, books=(book("BTC/USDT", "okx-ws-1", "resyncing"),))))
    one = doc["connections"][0]
    assert one["quality"]["score"] == 97.0 and one["quality"]["availability"] == 100.0
    assert one["latency"] == {"rtt_mean_ms": 12.5, "rtt_p99_ms": 40.0, "lag_mean_ms": 3.0, "lag_p99_ms": 9.0}
    assert one["subscriptions"] == [
        {
            "channel": "trades",
            "symbol": "BTC/USDT",
            "state": "confirmed",
            "data_age_s": 12.0,
            "threshold_s": 4.0,
            "stale": True,
        }
    ]
    assert one["books"] == {"total": 1, "live": 0} and one["books_detail"][0]["state"] == "resyncing"


def test_report_rows_carry_the_reconnect_success_rate() -> None:
    snap = snapshot(
        feed("okx", conn("okx-ws-1", reconnect_attempts=4, successful_reconnects=3), conn("okx-ws-2"))
    )
    rows = {r["connection_id"]: r for r in d.report_doc(snap)["rows"]}
    assert rows["okx-ws-1"]["reconnect_success_rate"] == 75.0
    assert rows["okx-ws-2"]["reconnect_success_rate"] is None  # no attempt: no rate, not 100 %
    assert "okx-ws-1" in d.report_doc(snap)["text"]


@pytest.mark.parametrize(
    "n, text", [(int(2.5 * 1024**3), "2.5GB"), (16 * 1024**3, "16GB"), (512 * 1024**2, "512MB"), (0, "0MB")]
)
def test_byte_sizes_read_as_monitoring_pages_write_them(n: int, text: str) -> None:
    assert format_bytes(n) == text
