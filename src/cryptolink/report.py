"""Readable connection reports: a plain-text report, rich tables for live views, and a secret-free config
summary. Everything fits in 120 columns.

Input is a list of :class:`ReportRow`, one per connection, plus optional detail sections (books, data
integrity, output) as :class:`Section`. The manager builds rows from the engine's ``ConnectionStats``
snapshots (:meth:`ReportRow.from_stats` does the mapping); nothing here holds live state.

- :func:`render_report` -> ``str``: the end-of-run connection report (plain text, fixed-width columns, at most
  :data:`WIDTH` characters per line).
- :func:`render_report_table` -> :class:`rich.table.Table`: the same columns for a terminal.
- :func:`render_status_table` -> :class:`rich.table.Table`: the compact live view (state, messages/s,
  reconnects, score, books, last event) sized to fit :data:`WIDTH` columns without wrapping.
- :func:`config_summary` -> ``str``: what a configuration streams; secrets show only as "api key set".

Units: latencies in ms, uptime in percent, error rate in errors per minute, quality score 0-100. ``None``
renders as ``-``.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rich import box
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from cryptolink.config import CryptolinkConfig
    from cryptolink.engine.stats import ConnectionStats

__all__ = [
    "WIDTH",
    "ReportRow",
    "Section",
    "config_summary",
    "render_report",
    "render_report_table",
    "render_status_table",
]

WIDTH = 120
"""Widest line of every report and table."""

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
        feed: configuration entry name.
        exchange: exchange id (``binance``).
        connection_id: the engine's connection id.
        state: state name (``connected``, ``reconnecting``, ``failed``, ...).
        quality_score: overall quality 0-100.
        latency_mean_ms, latency_p99_ms: keepalive round trip, ms.
        error_rate: errors per minute over the recent window.
        connections: sessions opened (first connect plus successful reconnects).
        disconnections: sessions that ended (asked for or not).
        failed_connects: attempts that could not open a socket.
        uptime_pct: connected time / time since start, percent.
        downtime_s: time not connected since start, s.
        messages: frames received.
        book_health: short text, ``"<live>/<books> live"`` (empty: no books on this connection; the
            report's books section has the details).
        messages_per_s: recent throughput, frames/s (live view).
        reconnects: reconnect attempts (live view).
        stale: subscriptions silent past their watchdog.
        last_event: short description of the latest connection event (live view).
        last_disconnect: why the last session ended.
    """

    exchange: str
    connection_id: str
    state: str
    feed: str = ""
    quality_score: float | None = None
    latency_mean_ms: float | None = None
    latency_p99_ms: float | None = None
    error_rate: float | None = None
    connections: int = 0
    disconnections: int = 0
    failed_connects: int = 0
    uptime_pct: float | None = None
    downtime_s: float = 0.0
    messages: int = 0
    book_health: str = ""
    messages_per_s: float | None = None
    reconnects: int = 0
    stale: int = 0
    last_event: str = ""
    last_disconnect: str = ""

    @classmethod
    def from_stats(
        cls, stats: ConnectionStats, *, feed: str = "", book_health: str = "", last_event: str = ""
    ) -> ReportRow:
        """Map an engine ``ConnectionStats`` snapshot (:mod:`cryptolink.engine.stats`) to a row."""
        q = stats.quality
        opened = stats.successful_reconnects + (
            1 if stats.uptime_s > 0 or stats.connected_since_ns is not None else 0
        )
        return cls(
            exchange=stats.exchange,
            connection_id=stats.connection_id,
            state=str(stats.state.value),
            feed=feed,
            quality_score=q.score,
            latency_mean_ms=q.latency_mean_ms,
            latency_p99_ms=q.latency_p99_ms,
            error_rate=q.error_rate_per_min,
            connections=opened,
            disconnections=stats.disconnections,
            failed_connects=stats.failed_connects,
            uptime_pct=q.uptime_pct,
            downtime_s=stats.downtime_s,
            messages=stats.messages,
            book_health=book_health,
            messages_per_s=q.throughput_msgs_s,
            reconnects=stats.reconnect_attempts,
            stale=stats.subscriptions_stale,
            last_event=last_event,
            last_disconnect=stats.last_disconnect_reason,
        )


@dataclass(frozen=True, slots=True)
class Section:
    """A titled block of text lines appended to the report (a line wider than :data:`WIDTH` is wrapped at
    spaces, its continuation indented 4 more; nothing is cut)."""

    title: str
    lines: Sequence[str] = field(default_factory=tuple)


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _wrap(text: str, width: int) -> list[str]:
    """``text`` wrapped at spaces to ``width`` columns, continuation lines indented 4 more than the first (a
    word longer than a line is split)."""
    if len(text) <= width:
        return [text]
    indent = text[: len(text) - len(text.lstrip(" "))]
    return textwrap.wrap(
        text.strip(),
        width,
        initial_indent=indent,
        subsequent_indent=indent + "    ",
        break_on_hyphens=False,
    )


def _fit(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters with a middle ellipsis (ids keep their start and end)."""
    if len(text) <= width:
        return text
    if width <= 3:
        return text[:width]
    head = (width - 1) // 2
    return text[:head] + "…" + text[len(text) - (width - 1 - head) :]


_CONN_MAX = 30

_COLUMNS: tuple[tuple[str, bool], ...] = (
    # (header, right-aligned); rtt = keepalive round trip p99 in ms, conn/disc/fail = sessions opened, ended,
    # failed connect attempts, up % = uptime
    ("connection", False),
    ("state", False),
    ("score", True),
    ("rtt ms", True),
    ("err/min", True),
    ("conn", True),
    ("disc", True),
    ("fail", True),
    ("up %", True),
    ("messages", True),
    ("books", False),
)


def _cells(row: ReportRow) -> tuple[str, ...]:
    return (
        _fit(row.connection_id, _CONN_MAX),
        row.state,
        _num(row.quality_score, 0),
        _num(row.latency_p99_ms),
        _num(row.error_rate, 2),
        str(row.connections),
        str(row.disconnections),
        str(row.failed_connects),
        _num(row.uptime_pct, 2),
        f"{row.messages:,}",
        row.book_health or "-",
    )


def render_report(
    rows: Iterable[ReportRow],
    *,
    title: str = "cryptolink connection report",
    sections: Iterable[Section] = (),
) -> str:
    """The connection report as plain text: a title, one fixed-width line per connection (sorted by
    connection id), a totals line, then each section. No line is wider than :data:`WIDTH`. Returns the text,
    ending with a newline."""
    ordered = sorted(rows, key=lambda r: r.connection_id)
    table = [tuple(h for h, _ in _COLUMNS), *(_cells(r) for r in ordered)]
    widths = [max(len(line[i]) for line in table) for i in range(len(_COLUMNS))]
    fixed = sum(widths[:-1]) + 2 * (len(widths) - 1)
    widths[-1] = max(len("books"), min(widths[-1], WIDTH - fixed))

    def fmt(cells: Sequence[str]) -> str:
        parts = [
            _fit(c, w).rjust(w) if right else _fit(c, w).ljust(w)
            for c, w, (_, right) in zip(cells, widths, _COLUMNS, strict=True)
        ]
        return "  ".join(parts).rstrip()

    lines = [title, "=" * len(title), fmt(table[0]), fmt(["-" * w for w in widths])]
    lines.extend(fmt(cells) for cells in table[1:])
    if not ordered:
        lines.append("(no connections)")
    lines.append("")
    lines.extend(_wrap(_totals(ordered), WIDTH))
    for section in sections:
        lines.append("")
        lines.append(section.title)
        for line in section.lines:
            lines.extend(_wrap(line, WIDTH))
        if not section.lines:
            lines.append("  (none)")
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
        f"disconnections: {disconnections} | downtime: {downtime:,.1f} s | mean score: {mean_score}"
    )


def _table(title: str) -> Table:
    """An empty table of :data:`WIDTH` columns, simple head rule, title on the left."""
    return Table(
        title=title,
        width=WIDTH,
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
        title_justify="left",
    )


def render_report_table(rows: Iterable[ReportRow], *, title: str = "Connection report") -> Table:
    """The report's columns as a :class:`rich.table.Table`, states coloured."""
    table = _table(title)
    for header, right in _COLUMNS:
        table.add_column(
            header,
            justify="right" if right else "left",
            no_wrap=True,
            overflow="ellipsis",
            min_width=12 if header == "state" else None,
            max_width=_CONN_MAX if header == "connection" else None,
        )
    for row in sorted(rows, key=lambda r: r.connection_id):
        cells = list(_cells(row))
        state = Text(cells[1], style=_STATE_STYLE.get(row.state, ""))
        table.add_row(cells[0], state, *cells[2:])
    return table


def render_status_table(rows: Iterable[ReportRow], *, title: str = "cryptolink status") -> Table:
    """A compact live view, one line per connection: connection, state, messages/s, messages, reconnects,
    score, books and the last event (cut to fit). At most :data:`WIDTH` columns wide; nothing wraps."""
    table = _table(title)
    table.add_column("connection", no_wrap=True, max_width=_CONN_MAX, overflow="ellipsis")
    table.add_column("state", no_wrap=True, min_width=12)
    table.add_column("msg/s", justify="right", no_wrap=True)
    table.add_column("messages", justify="right", no_wrap=True)
    table.add_column("reconn", justify="right", no_wrap=True)
    table.add_column("score", justify="right", no_wrap=True)
    table.add_column("books", no_wrap=True, max_width=10, overflow="ellipsis")
    table.add_column("last event", no_wrap=True, overflow="ellipsis", ratio=1)
    for row in sorted(rows, key=lambda r: r.connection_id):
        table.add_row(
            row.connection_id,
            Text(row.state, style=_STATE_STYLE.get(row.state, "")),
            _num(row.messages_per_s, 0),
            f"{row.messages:,}",
            str(row.reconnects),
            _num(row.quality_score, 0),
            row.book_health or "-",
            row.last_event or "-",
        )
    return table


def config_summary(config: CryptolinkConfig) -> str:
    """One line per exchange entry: name, exchange, market, symbols, channels, address overrides and whether
    credentials are set. Secret values never appear."""
    lines = []
    for name, ex in config.exchanges.items():
        channels = ",".join(c.value for c in ex.channels.enabled_channels())
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
