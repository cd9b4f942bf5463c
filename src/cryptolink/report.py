"""Readable connection reports: a plain-text report, rich tables for live views, and a secret-free
config summary.

Input is a list of :class:`ReportRow`, one per connection. The manager builds rows from the engine's
``ConnectionStats`` snapshots (:meth:`ReportRow.from_stats` does the mapping); nothing here holds live state.

- :func:`render_report` -> ``str``: the end-of-run connection report (plain text, fixed-width columns).
- :func:`render_report_table` -> :class:`rich.table.Table`: the same columns for a terminal.
- :func:`render_status_table` -> :class:`rich.table.Table`: the compact live view (state, messages/s,
  reconnects, last event, book health).
- :func:`config_summary` -> ``str``: what a configuration streams; secrets show only as "api key set".

Units: latencies in ms, downtime in s, uptime in percent, error rate in errors per minute, quality and
stability scores 0-100, reconnect success rate 0-1 (shown as percent). ``None`` renders as ``-``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from cryptolink.config import CryptolinkConfig
    from cryptolink.engine.stats import ConnectionStats

__all__ = [
    "ReportRow",
    "config_summary",
    "render_report",
    "render_report_table",
    "render_status_table",
]

_STATE_STYLE = {
    "connected": "green",
    "connecting": "cyan",
    "reconnecting": "yellow",
    "unstable": "yellow",
    "disconnected": "red",
    "failed": "bold red",
    "stopped": "dim",
}


@dataclass(frozen=True, slots=True)
class ReportRow:
    """One connection's line in a report.

    Attributes:
        exchange: exchange id (``binance``).
        connection_id: the engine's connection id.
        state: state name (``connected``, ``reconnecting``, ``failed``, ...).
        quality_score: overall quality 0-100.
        latency_mean_ms, latency_p99_ms: keepalive round trip, ms.
        stability: 0-100 from recent disconnects.
        error_rate: errors per minute over the recent window.
        connections: sessions opened (first connect plus successful reconnects).
        disconnections: sessions that ended unasked.
        reconnect_success_rate: successful reconnects / reconnect attempts, 0-1 (``None``: no attempts).
        uptime_pct: connected time / time since start, percent.
        downtime_s: time not connected since start, s.
        messages: frames received.
        book_health: short text, e.g. ``"2/2 synced"`` or ``"FAILED BTC/USDT"`` (empty: no books).
        messages_per_s: recent throughput, frames/s (live view).
        reconnects: reconnect attempts (live view).
        last_event: short description of the latest connection event (live view).
    """

    exchange: str
    connection_id: str
    state: str
    quality_score: float | None = None
    latency_mean_ms: float | None = None
    latency_p99_ms: float | None = None
    stability: float | None = None
    error_rate: float | None = None
    connections: int = 0
    disconnections: int = 0
    reconnect_success_rate: float | None = None
    uptime_pct: float | None = None
    downtime_s: float = 0.0
    messages: int = 0
    book_health: str = ""
    messages_per_s: float | None = None
    reconnects: int = 0
    last_event: str = ""

    @classmethod
    def from_stats(cls, stats: ConnectionStats, *, book_health: str = "", last_event: str = "") -> ReportRow:
        """Map an engine ``ConnectionStats`` snapshot (:mod:`cryptolink.engine.stats`) to a row."""
        q = stats.quality
        opened = stats.successful_reconnects + (
            1 if stats.uptime_s > 0 or stats.connected_since_ns is not None else 0
        )
        attempts = stats.reconnect_attempts
        return cls(
            exchange=stats.exchange,
            connection_id=stats.connection_id,
            state=str(stats.state.value),
            quality_score=q.score,
            latency_mean_ms=q.latency_mean_ms,
            latency_p99_ms=q.latency_p99_ms,
            stability=q.stability,
            error_rate=q.error_rate_per_min,
            connections=opened,
            disconnections=stats.disconnections,
            reconnect_success_rate=(stats.successful_reconnects / attempts) if attempts else None,
            uptime_pct=q.uptime_pct,
            downtime_s=stats.downtime_s,
            messages=stats.messages,
            book_health=book_health,
            messages_per_s=q.throughput_msgs_s,
            reconnects=attempts,
            last_event=last_event,
        )


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{100 * rate:.0f}%"


_COLUMNS: tuple[tuple[str, bool], ...] = (
    # (header, right-aligned)
    ("exchange", False),
    ("connection", False),
    ("state", False),
    ("quality", True),
    ("lat mean ms", True),
    ("lat p99 ms", True),
    ("stability", True),
    ("err/min", True),
    ("conns", True),
    ("disc", True),
    ("reconn ok", True),
    ("uptime %", True),
    ("down s", True),
    ("messages", True),
    ("books", False),
)


def _cells(row: ReportRow) -> tuple[str, ...]:
    return (
        row.exchange,
        row.connection_id,
        row.state,
        _num(row.quality_score, 0),
        _num(row.latency_mean_ms),
        _num(row.latency_p99_ms),
        _num(row.stability, 0),
        _num(row.error_rate, 2),
        str(row.connections),
        str(row.disconnections),
        _pct(row.reconnect_success_rate),
        _num(row.uptime_pct, 2),
        _num(row.downtime_s),
        f"{row.messages:,}",
        row.book_health or "-",
    )


def render_report(rows: Iterable[ReportRow], *, title: str = "cryptolink connection report") -> str:
    """The connection report as plain text: a title, one fixed-width line per connection (sorted by exchange,
    then connection id) and a totals line. Returns the text, ending with a newline."""
    ordered = sorted(rows, key=lambda r: (r.exchange, r.connection_id))
    table = [tuple(h for h, _ in _COLUMNS), *(_cells(r) for r in ordered)]
    widths = [max(len(line[i]) for line in table) for i in range(len(_COLUMNS))]

    def fmt(cells: Sequence[str]) -> str:
        parts = [
            c.rjust(w) if right else c.ljust(w)
            for c, w, (_, right) in zip(cells, widths, _COLUMNS, strict=True)
        ]
        return "  ".join(parts).rstrip()

    lines = [title, "=" * len(title), fmt(table[0]), fmt(["-" * w for w in widths])]
    lines.extend(fmt(cells) for cells in table[1:])
    if not ordered:
        lines.append("(no connections)")
    lines.append("")
    lines.append(_totals(ordered))
    return "\n".join(lines) + "\n"


def _totals(rows: Sequence[ReportRow]) -> str:
    n = len(rows)
    healthy = sum(1 for r in rows if r.state == "connected")
    messages = sum(r.messages for r in rows)
    disconnections = sum(r.disconnections for r in rows)
    downtime = sum(r.downtime_s for r in rows)
    scores = [r.quality_score for r in rows if r.quality_score is not None]
    mean_score = _num(sum(scores) / len(scores), 0) if scores else "-"
    return (
        f"connections: {n} ({healthy} connected) | messages: {messages:,} | "
        f"disconnections: {disconnections} | downtime: {downtime:,.1f} s | mean quality: {mean_score}"
    )


def render_report_table(rows: Iterable[ReportRow], *, title: str = "Connection report") -> Table:
    """The report's columns as a :class:`rich.table.Table`, states coloured."""
    table = Table(title=title)
    for header, right in _COLUMNS:
        table.add_column(header, justify="right" if right else "left", no_wrap=True)
    for row in sorted(rows, key=lambda r: (r.exchange, r.connection_id)):
        cells = list(_cells(row))
        state = Text(cells[2], style=_STATE_STYLE.get(row.state, ""))
        table.add_row(*cells[:2], state, *cells[3:])
    return table


def render_status_table(rows: Iterable[ReportRow], *, title: str = "cryptolink status") -> Table:
    """A compact live view: exchange, connection, state, messages/s, messages, reconnects, last event and book
    health, one line per connection."""
    table = Table(title=title)
    table.add_column("exchange", no_wrap=True)
    table.add_column("connection", no_wrap=True)
    table.add_column("state", no_wrap=True)
    table.add_column("msg/s", justify="right")
    table.add_column("messages", justify="right")
    table.add_column("reconnects", justify="right")
    table.add_column("last event", overflow="ellipsis", max_width=48)
    table.add_column("books", overflow="ellipsis", max_width=32)
    for row in sorted(rows, key=lambda r: (r.exchange, r.connection_id)):
        table.add_row(
            row.exchange,
            row.connection_id,
            Text(row.state, style=_STATE_STYLE.get(row.state, "")),
            _num(row.messages_per_s),
            f"{row.messages:,}",
            str(row.reconnects),
            row.last_event or "-",
            row.book_health or "-",
        )
    return table


def config_summary(config: CryptolinkConfig) -> str:
    """One line per exchange entry: name, exchange, market, symbols, channels, address overrides and whether
    credentials are set. Secret values never appear."""
    lines = []
    for name, ex in config.exchanges.items():
        channels = ",".join(c.value for c in ex.channels.enabled_channels())
        if ex.channels.depth is not None:
            channels += f" (depth {ex.channels.depth})"
        extras = []
        if not ex.enabled:
            extras.append("disabled")
        if ex.testnet:
            extras.append("testnet")
        if ex.ws_url:
            extras.append(f"ws {ex.ws_url}")
        if ex.rest_url:
            extras.append(f"rest {ex.rest_url}")
        if ex.api_key is not None:
            extras.append("api key set")
        if ex.api_secret is not None:
            extras.append("api secret set")
        tail = f" [{'; '.join(extras)}]" if extras else ""
        lines.append(
            f"{name}: {ex.exchange} {ex.market.value} {len(ex.symbols)} symbol(s) "
            f"{', '.join(ex.symbols)}; channels {channels}{tail}"
        )
    out = config.output
    lines.append(f"output: {'jsonl ' + str(out.dir) if out.enabled else 'disabled'}")
    lines.append(
        f"consumers: queue {config.consumer_queue_size} events, overflow {config.overflow_policy.value}; "
        f"log level {config.log_level}"
    )
    return "\n".join(lines)
