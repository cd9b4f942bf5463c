"""Immutable statistics of the REST manager (``RestManager.stats()``), read by the status API, the Prometheus
exporter and the report.

Counters are cumulative since the manager started (they never go down, also across a hot reload that keeps the
member); times are monotonic seconds ago or wall epoch ms as named.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptolink.report import Section

if TYPE_CHECKING:
    from cryptolink.rest.budget import BudgetStats

__all__ = ["GroupStats", "MemberStats", "RestManagerStats", "report_section"]


@dataclass(frozen=True, slots=True)
class MemberStats:
    """One member.

    Attributes:
        name, exchange (ccxt id), ip (rate-limit scope): the member.
        state: ``healthy``, ``degraded``, ``offline`` or ``maintenance``; since_s: seconds in that state.
        weight: configured weight; effective_weight: the weight strategies use now (0 when offline, ramping up
            after a recovery, lower when degraded).
        priority: failover order.
        calls: ccxt method calls made on this member (group or direct); successes: those that returned.
        errors: failed calls by kind (``network``, ``timeout``, ``rate_limit``, ``unavailable``,
            ``maintenance``, ``budget``, ``exchange``, ``auth``, ``bad_request``, ``other``).
        http_requests: HTTP requests sent; http_429, http_418: answers refusing for a rate limit or ban.
        latency_ms: smoothed (EWMA) HTTP latency, ms, ``None`` before the first answer.
        latency_buckets_ms, latency_counts, latency_sum_ms, latency_count: cumulative histogram of HTTP latency,
            ms (Prometheus shape: counts at or below each bound).
        error_rate: failed share of the recent outcomes (0..1).
        consecutive_failures: failures since the last success.
        checks, check_failures: health checks made and failed.
        last_error: the latest error, ``"<Type>: <message>"`` (secrets removed), or ``None``.
        transitions: state changes so far.
        in_flight: HTTP requests in flight now.
    """

    name: str
    exchange: str
    ip: str
    state: str
    since_s: float
    weight: int
    effective_weight: float
    priority: int
    calls: int
    successes: int
    errors: dict[str, int]
    http_requests: int
    http_429: int
    http_418: int
    latency_ms: float | None
    latency_buckets_ms: tuple[float, ...]
    latency_counts: tuple[int, ...]
    latency_sum_ms: float
    latency_count: int
    error_rate: float
    consecutive_failures: int
    checks: int
    check_failures: int
    last_error: str | None
    transitions: int
    in_flight: int


@dataclass(frozen=True, slots=True)
class GroupStats:
    """One group.

    Attributes:
        name, strategy, members: the group.
        calls: group calls; successes: calls that returned a result; failures: calls that raised.
        retries: further tries on another (or the same) member after a failure another member could absorb.
        chosen: member -> times it was the strategy's first pick.
        unavailable: calls refused because no member was available (all offline or in maintenance).
    """

    name: str
    strategy: str
    members: tuple[str, ...]
    calls: int
    successes: int
    failures: int
    retries: int
    chosen: dict[str, int]
    unavailable: int


@dataclass(frozen=True, slots=True)
class RestManagerStats:
    """The whole manager at one moment.

    Attributes:
        members, groups: in configuration order.
        budgets: every rate budget of the process (shared with the WebSocket engine's snapshots and backfills).
        reloads: configurations applied by ``reconfigure``.
        taken_at_ms: wall time of the snapshot, epoch ms.
    """

    members: tuple[MemberStats, ...]
    groups: tuple[GroupStats, ...]
    budgets: tuple[BudgetStats, ...]
    reloads: int
    taken_at_ms: int


def report_section(stats: RestManagerStats) -> Section:
    """The REST manager's block of the connection report: one line per member (state, calls, successes, errors
    by kind, 429/418, smoothed latency), one per group (strategy, calls, retries, failures, first picks)."""
    lines: list[str] = []
    for m in stats.members:
        errors = ", ".join(f"{k} {v}" for k, v in sorted(m.errors.items())) or "none"
        latency = "-" if m.latency_ms is None else f"{m.latency_ms:,.1f} ms"
        lines.append(
            f"  {m.name} ({m.exchange}, ip {m.ip}): {m.state} for {m.since_s:,.0f} s | calls {m.calls:,}, "
            f"ok {m.successes:,}, errors: {errors} | http {m.http_requests:,} (429: {m.http_429}, 418: "
            f"{m.http_418}) | latency {latency} | checks {m.checks:,} ({m.check_failures:,} failed)"
        )
    for g in stats.groups:
        picks = ", ".join(f"{k} {v:,}" for k, v in sorted(g.chosen.items())) or "none"
        lines.append(
            f"  group {g.name} ({g.strategy}): calls {g.calls:,}, ok {g.successes:,}, failed {g.failures:,}, "
            f"retries {g.retries:,}, no member available {g.unavailable:,} | first picks: {picks}"
        )
    if stats.reloads:
        lines.append(f"  reconfigured {stats.reloads} times")
    return Section("REST manager", lines)
