from __future__ import annotations

from rich.console import Console

from cryptolink.config import CryptolinkConfig
from cryptolink.engine.quality import ConnectionQuality
from cryptolink.engine.state import ConnectionState
from cryptolink.engine.stats import ConnectionStats
from cryptolink.report import (
    ReportRow,
    config_summary,
    render_report,
    render_report_table,
    render_status_table,
)

ROWS = [
    ReportRow(
        exchange="okx",
        connection_id="okx-spot-0",
        state="reconnecting",
        quality_score=42.4,
        latency_mean_ms=None,
        latency_p99_ms=None,
        stability=50,
        error_rate=1.25,
        connections=3,
        disconnections=2,
        reconnect_success_rate=2 / 3,
        uptime_pct=97.5,
        downtime_s=12.25,
        messages=1_234,
        book_health="FAILED BTC/USDT",
        messages_per_s=0.0,
        reconnects=3,
        last_event="reconnect attempt 3 failed: connection refused",
    ),
    ReportRow(
        exchange="binance",
        connection_id="binance-spot-0",
        state="connected",
        quality_score=98.6,
        latency_mean_ms=1.234,
        latency_p99_ms=4.5,
        stability=100,
        error_rate=0.0,
        connections=1,
        messages=1_500_000,
        book_health="2/2 synced",
        messages_per_s=2500.5,
        last_event="subscribed 6 streams",
    ),
]


def render(table: object) -> str:
    console = Console(width=220, record=True, color_system=None)
    console.print(table)
    return console.export_text()


def test_plain_report_lines_sorted_aligned_and_totalled() -> None:
    text = render_report(ROWS, title="Report")
    lines = text.splitlines()
    assert lines[0] == "Report" and lines[1] == "======"
    header, rule, first, second = lines[2:6]
    assert header.startswith("exchange") and "lat p99 ms" in header and header.endswith("books")
    assert first.startswith("binance") and second.startswith("okx")  # sorted by exchange
    assert "1,500,000" in first and "2/2 synced" in first and "98.6" not in first  # quality rounded: 99
    assert " 99 " in first and "1.2" in first and "4.5" in first
    assert "67%" in second and "FAILED BTC/USDT" in second and "12.2" in second and "97.50" in second
    # columns line up: every row's "messages" column ends at the same offset as the header's
    end = header.index("messages") + len("messages")
    assert first[:end].endswith("1,500,000") and second[:end].endswith("1,234")
    assert len(rule) == max(len(first), len(second))
    assert lines[-1] == (
        "connections: 2 (1 connected) | messages: 1,501,234 | disconnections: 2 | downtime: 12.2 s"
        " | mean quality: 70"
    )
    assert text.endswith("\n")


def test_empty_report() -> None:
    text = render_report([])
    assert "(no connections)" in text and "connections: 0 (0 connected)" in text and "mean quality: -" in text


def test_rich_tables_render_every_row() -> None:
    out = render(render_report_table(ROWS))
    assert "binance-spot-0" in out and "okx-spot-0" in out and "reconnecting" in out
    status = render(render_status_table(ROWS))
    for needle in ("msg/s", "2,500.5", "subscribed 6 streams", "FAILED BTC/USDT", "connected"):
        assert needle in status
    assert status.index("binance") < status.index("okx")


def test_from_engine_stats() -> None:
    quality = ConnectionQuality(
        latency_mean_ms=3.0,
        latency_p99_ms=9.0,
        lag_mean_ms=None,
        lag_p99_ms=None,
        gaps=0,
        loss_rate=0.0,
        stability=75.0,
        throughput_msgs_s=120.0,
        error_rate_per_min=0.5,
        uptime_pct=99.0,
        score=88.0,
        poor=False,
    )
    stats = ConnectionStats(
        connection_id="c1",
        exchange="binance",
        url="ws://127.0.0.1:1/ws",
        route="",
        state=ConnectionState.CONNECTED,
        messages=1000,
        bytes=50_000,
        market_events=990,
        errors=1,
        decode_errors=1,
        oversized_frames=0,
        callback_errors=0,
        reconnect_attempts=4,
        successful_reconnects=3,
        disconnections=3,
        downtime_s=2.5,
        uptime_s=100.0,
        connected_since_ns=1,
        last_message_age_s=0.1,
        subscriptions_confirmed=3,
        subscriptions_pending=0,
        subscriptions_rejected=0,
        rotations=0,
        quality=quality,
    )
    row = ReportRow.from_stats(stats, book_health="1/1 synced", last_event="connected")
    assert row.state == "connected" and row.connections == 4 and row.reconnects == 4
    assert row.reconnect_success_rate == 0.75 and row.messages_per_s == 120.0
    assert (row.quality_score, row.latency_p99_ms, row.stability, row.error_rate) == (88.0, 9.0, 75.0, 0.5)
    assert "75%" in render_report([row])


def test_config_summary_hides_secrets() -> None:
    cfg = CryptolinkConfig.from_yaml_text(
        """
exchanges:
  binance:
    symbols: [BTC/USDT]
    channels: {ticker: false, depth: 20}
    api_key: K-123-secret
    api_secret: S-456-secret
    ws_url: ws://127.0.0.1:9000
  okx: {market: perpetual, symbols: [BTC/USDT:USDT, ETH/USDT:USDT], enabled: false}
""",
        env={},
    )
    text = config_summary(cfg)
    assert "secret" not in text.replace("api secret set", "")
    assert "binance: binance spot 1 symbol(s) BTC/USDT; channels trades,book (depth 20)" in text
    assert "api key set; api secret set" in text and "ws ws://127.0.0.1:9000" in text
    assert "okx: okx perpetual 2 symbol(s)" in text and "disabled" in text
    assert "output: disabled" in text
