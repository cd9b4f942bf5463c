from __future__ import annotations

from dataclasses import replace

from rich.console import Console

from cryptolink.config import CryptolinkConfig
from cryptolink.report import (
    WIDTH,
    ReportRow,
    Section,
    config_summary,
    render_report,
    render_report_table,
    render_status_table,
)
from tests.status.factories import QUALITY, conn

ROWS = [
    ReportRow(
        exchange="okx",
        connection_id="okx-swap-ws-1",
        state="reconnecting",
        feed="okx-swap",
        quality_score=42.4,
        latency_mean_ms=None,
        latency_p99_ms=None,
        error_rate=1.25,
        connections=3,
        disconnections=2,
        failed_connects=7,
        uptime_pct=97.5,
        downtime_s=12.25,
        messages=1_234,
        book_health="0/1 live",
        messages_per_s=0.0,
        reconnects=3,
        last_event="reconnect_failed: cannot connect to ws://127.0.0.1:9102/ws/v5/public: connection refused",
    ),
    ReportRow(
        exchange="binance",
        connection_id="binanceusdm-a-very-long-entry-name-public-12",
        state="connected",
        feed="binanceusdm-a-very-long-entry-name",
        quality_score=98.6,
        latency_mean_ms=1.234,
        latency_p99_ms=4.5,
        error_rate=0.0,
        connections=1,
        messages=1_500_000,
        book_health="2/2 live",
        messages_per_s=2500.5,
        last_event="connected: connected to ws://127.0.0.1:9101/public/stream",
    ),
]


def render(table: object, width: int = 220) -> str:
    console = Console(width=width, record=True, color_system=None)
    console.print(table)
    return console.export_text()


def test_plain_report_fits_120_columns_sorted_aligned_and_totalled() -> None:
    text = render_report(ROWS, title="Report", sections=[Section("books", ["  x" * 100]), Section("empty")])
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= WIDTH
    assert lines[0] == "Report" and lines[1] == "======"
    header, _rule, first, second = lines[2:6]
    assert header.startswith("connection") and "rtt ms" in header and header.endswith("books")
    # sorted by connection id; a long id keeps its start and end around an ellipsis
    assert first.startswith("binanceusdm-a-…-name-public-12  ") and second.startswith("okx-swap-ws-1 ")
    assert "reconnecting" in second  # the state is never cut
    assert " 99 " in first and "4.5" in first and "1,500,000" in first and first.endswith("2/2 live")
    assert " 42 " in second and " 7 " in second and "97.50" in second
    end = header.index("messages") + len("messages")
    assert first[:end].endswith("1,500,000") and second[:end].endswith("1,234")
    totals = lines[7]
    assert totals == (
        "connections: 2 (1 connected) | messages: 1,501,234 | disconnections: 2 | downtime: 12.2 s"
        " | mean score: 70"
    )
    # a long section line is wrapped, not cut: every x is there, continuation lines indented 4 more
    books = lines[lines.index("books") + 1 : lines.index("empty") - 1]
    assert len(books) == 3 and books[0].startswith("  x") and all(b.startswith("      x") for b in books[1:])
    assert sum(b.count("x") for b in books) == 100
    assert lines[lines.index("empty") + 1] == "  (none)"
    assert text.endswith("\n")


def test_empty_report() -> None:
    text = render_report([])
    assert "(no connections)" in text and "connections: 0 (0 connected)" in text and "mean score: -" in text


def test_live_table_fits_120_columns_without_wrapping_or_cutting_the_state() -> None:
    out = render(render_status_table(ROWS), width=200)
    lines = out.splitlines()
    assert max(len(line.rstrip()) for line in lines) <= WIDTH
    rows = [line for line in lines if "okx-swap-ws-1" in line or "binanceusdm" in line]
    assert len(rows) == 2  # one line per connection: nothing wrapped
    assert "reconnecting" in rows[1] and "connected" in rows[0]
    assert "2,500" in rows[0] and "…" in rows[1]  # the long last event is cut, not wrapped
    report = render(render_report_table(ROWS), width=200)
    assert max(len(line.rstrip()) for line in report.splitlines()) <= WIDTH
    assert "reconnecting" in report


def test_from_engine_stats() -> None:
    quality = replace(
        QUALITY,
        latency_mean_ms=3.0,
        latency_p99_ms=9.0,
        lag_mean_ms=None,
        lag_p99_ms=None,
        stability=75.0,
        availability=99.0,
        reliability=70.0,
        throughput_msgs_s=120.0,
        error_rate_per_min=0.5,
        uptime_pct=99.0,
        score=88.0,
    )
    stats = conn(
        "c1",
        exchange="binance",
        messages=1000,
        bytes=50_000,
        market_events=990,
        errors=1,
        decode_errors=1,
        reconnect_attempts=4,
        successful_reconnects=3,
        failed_connects=1,
        disconnections=3,
        unexpected_disconnections=2,
        downtime_s=2.5,
        uptime_s=100.0,
        connected_since_ns=1,
        last_message_age_s=0.1,
        subscriptions_confirmed=3,
        subscriptions_stale=1,
        last_disconnect_reason="connection lost without a close frame (code 1006)",
        quality=quality,
    )
    row = ReportRow.from_stats(stats, feed="binance", book_health="1/1 live", last_event="connected")
    assert row.state == "connected" and row.connections == 4 and row.disconnections == 3
    assert row.reconnects == 4 and row.failed_connects == 1 and row.stale == 1
    assert (row.quality_score, row.latency_p99_ms, row.error_rate) == (88.0, 9.0, 0.5)
    assert row.last_disconnect.endswith("(code 1006)")


def test_config_summary_hides_secrets() -> None:
    cfg = CryptolinkConfig.from_yaml_text(
        """
exchanges:
  binance:
    symbols: [BTC/USDT]
    channels: {ticker: false}
    api_key: K-123-secret
    api_secret: S-456-secret
    ws_url: ws://127.0.0.1:9000
  okx: {market: perpetual, symbols: [BTC/USDT:USDT, ETH/USDT:USDT], enabled: false}
""",
        env={},
    )
    text = config_summary(cfg)
    assert "K-123" not in text and "S-456" not in text
    assert "binance: binance spot 1 symbol(s) BTC/USDT; channels trades,book" in text
    assert "api key set; api secret set" in text and "ws ws://127.0.0.1:9000" in text
    assert "okx: okx perpetual 2 symbol(s)" in text and "disabled" in text
    assert "output: disabled" in text
