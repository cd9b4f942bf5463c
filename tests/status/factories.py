"""Builders of status snapshots from hand-made statistics, for tests of the pure document functions."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from cryptolink.bus import BusStats
from cryptolink.engine import (
    ConnectionEvent,
    ConnectionEventType,
    ConnectionQuality,
    ConnectionState,
    Severity,
)
from cryptolink.engine.quality import LATENCY_BUCKETS_MS, LatencyHistogram
from cryptolink.engine.stats import ConnectionStats, StreamStatus, combine
from cryptolink.feed import BookHealth, FeedStats
from cryptolink.manager import ManagerStats
from cryptolink.ratelimit.stats import LimiterStats, PoolStats
from cryptolink.report import ReportRow
from cryptolink.rest.budget import BudgetStats
from cryptolink.rest.stats import GroupStats, MemberStats, RestManagerStats
from cryptolink.status.host import HostFigures
from cryptolink.status.snapshot import EventRecord, StatusSnapshot

T0 = 1_796_180_000_000_000_000
"""A wall time, epoch ns (2026-12-02T02:53:20Z)."""

QUALITY = ConnectionQuality(
    latency_mean_ms=12.5,
    latency_p99_ms=40.0,
    lag_mean_ms=3.0,
    lag_p99_ms=9.0,
    gaps=0,
    loss_rate=0.0,
    stability=100.0,
    availability=100.0,
    reliability=100.0,
    data=100.0,
    throughput_msgs_s=25.0,
    error_rate_per_min=0.0,
    uptime_pct=100.0,
    score=97.0,
    poor=False,
)

HOST = HostFigures(
    cpu_percent=15.25,
    memory_used=int(2.5 * 1024**3),
    memory_total=16 * 1024**3,
    memory_percent=15.6,
    disk_path="/",
    disk_used=45 * 1024**3,
    disk_total=500 * 1024**3,
    disk_percent=9.0,
    process_rss=100 * 1024**2,
    process_cpu_percent=3.0,
)


def conn(
    connection_id: str, state: ConnectionState = ConnectionState.CONNECTED, **kw: Any
) -> ConnectionStats:
    """A connection's statistics (connected, healthy) with ``kw`` replaced."""
    base = ConnectionStats(
        connection_id=connection_id,
        exchange=kw.pop("exchange", "okx"),
        url="ws://127.0.0.1:1/ws",
        route="public",
        state=state,
        messages=1000,
        bytes=100_000,
        market_events=900,
        errors=0,
        decode_errors=0,
        oversized_frames=0,
        callback_errors=0,
        exchange_errors=0,
        transport_errors=0,
        book_errors=0,
        ignored_frames=0,
        reconnect_attempts=0,
        successful_reconnects=0,
        failed_connects=0,
        disconnections=0,
        unexpected_disconnections=0,
        downtime_s=0.0,
        uptime_s=60.0,
        connected_since_ns=T0,
        last_message_age_s=0.1,
        subscriptions_confirmed=2,
        subscriptions_pending=0,
        subscriptions_rejected=0,
        subscriptions_stale=0,
        rotations=0,
        last_disconnect_reason="",
        quality=QUALITY,
        last_connected_ns=T0,
        streams=(
            StreamStatus("trades", "BTC/USDT", "confirmed", 0.25, 4.0, False),
            StreamStatus("book", "BTC/USDT", "confirmed", 0.1, 2.5, False),
        ),
    )
    return replace(base, **kw)


def book(symbol: str, connection_id: str, state: str = "live") -> BookHealth:
    return BookHealth(symbol, state, 100, 0, 0, 0, 0, connection_id=connection_id)


def feed(
    name: str, *conns: ConnectionStats, books: tuple[BookHealth, ...] = (), market: str = "spot"
) -> FeedStats:
    return FeedStats(
        name=name,
        exchange=conns[0].exchange if conns else name,
        market=market,
        connections=conns,
        books=books,
        published=0,
        duplicates_dropped=0,
        snapshots_fetched=0,
        snapshot_errors=0,
        rate_limited=0,
    )


def event(seq: int, kind: ConnectionEventType = ConnectionEventType.STATE_CHANGED, **kw: Any) -> EventRecord:
    base = ConnectionEvent(
        type=kind,
        severity=Severity.INFO,
        time_ns=T0 + seq * 1_000_000,
        monotonic_s=float(seq),
        connection_id="okx-ws-1",
        exchange="okx",
        description="connecting -> connected",
        feed="okx",
    )
    return EventRecord(seq, replace(base, **kw))


def snapshot(
    *feeds: FeedStats, enabled: tuple[str, ...] | None = None, events: tuple[EventRecord, ...] = ()
) -> StatusSnapshot:
    """A snapshot of ``feeds`` (enabled: their names unless given)."""
    conns = [c for f in feeds for c in f.connections]
    return StatusSnapshot(
        instance_id="test-1",
        taken_ns=T0 + 5_000_000_000,
        started_ns=T0,
        enabled=enabled if enabled is not None else tuple(f.name for f in feeds),
        stats=ManagerStats(feeds=tuple(feeds), total=combine(conns)),
        rows=tuple(ReportRow.from_stats(c, feed=f.name) for f in feeds for c in f.connections),
        events=events,
        host=HOST,
        bus=BusStats(published=0, unrouted=0, consumers=()),
    )


# ------------------------------------------------------------------------------- REST manager and budgets


def latency(*samples_ms: float) -> dict[str, Any]:
    """The four histogram fields of a member that measured ``samples_ms``."""
    h = LatencyHistogram()
    for ms in samples_ms:
        h.observe(ms)
    return {
        "latency_buckets_ms": LATENCY_BUCKETS_MS,
        "latency_counts": h.cumulative(),
        "latency_sum_ms": h.sum_ms,
        "latency_count": h.count,
    }


def member(name: str = "binance-a", exchange: str = "binance", **kw: Any) -> MemberStats:
    base: dict[str, Any] = {
        "name": name,
        "exchange": exchange,
        "ip": "default",
        "state": "healthy",
        "since_s": 30.0,
        "weight": 1,
        "effective_weight": 1.0,
        "priority": 0,
        "calls": 0,
        "successes": 0,
        "errors": {},
        "http_requests": 0,
        "http_429": 0,
        "http_418": 0,
        "latency_ms": None,
        "error_rate": 0.0,
        "consecutive_failures": 0,
        "checks": 0,
        "check_failures": 0,
        "last_error": None,
        "transitions": 0,
        "in_flight": 0,
        **latency(),
    }
    base.update(kw)
    return MemberStats(**base)


def group(
    name: str = "btc-spot", members: tuple[str, ...] = ("binance-a", "binance-b"), **kw: Any
) -> GroupStats:
    base: dict[str, Any] = {
        "name": name,
        "strategy": "round_robin",
        "members": members,
        "calls": 0,
        "successes": 0,
        "failures": 0,
        "retries": 0,
        "chosen": {},
        "unavailable": 0,
    }
    base.update(kw)
    return GroupStats(**base)


def pool(name: str, limit: int = 6000, **kw: Any) -> PoolStats:
    base: dict[str, Any] = {
        "name": name,
        "limit": limit,
        "window_s": 60.25,
        "scope": "binance:default",
        "requests": 0,
        "weight": 0,
        "observed": 0,
        "local_in_window": 0,
        "local_limit": limit,
    }
    base.update(kw)
    return PoolStats(**base)


def limiter(*pools: PoolStats, **kw: Any) -> LimiterStats:
    base: dict[str, Any] = {
        "mode": "local",
        "grants": 0,
        "waiting": 0,
        "attempts": 0,
        "refused_full": 0,
        "refused_paused": 0,
        "refused_banned": 0,
        "timeouts": 0,
        "rejected": 0,
        "pauses": 0,
        "bans": 0,
        "fallbacks": 0,
        "redis_errors": 0,
        "rejoins": 0,
        "last_error": None,
        "pools": pools,
    }
    base.update(kw)
    return LimiterStats(**base)


def budget(
    exchange: str = "binance", scope: str = "default", lim: LimiterStats | None = None, **kw: Any
) -> BudgetStats:
    base: dict[str, Any] = {
        "exchange": exchange,
        "scope": scope,
        "limiter": lim if lim is not None else limiter(pool(f"{exchange}:{scope}:weight")),
        "answers_429": 0,
        "answers_418": 0,
        "answers_ban_other": 0,
        "pauses": 0,
        "bans": 0,
        "header_corrections": 0,
        "garbled_headers": 0,
        "paused_for_s": 0.0,
    }
    base.update(kw)
    return BudgetStats(**base)


def rest(
    members: tuple[MemberStats, ...] = (),
    groups: tuple[GroupStats, ...] = (),
    budgets: tuple[BudgetStats, ...] = (),
    reloads: int = 0,
) -> RestManagerStats:
    return RestManagerStats(members, groups, budgets, reloads, taken_at_ms=T0 // 1_000_000 + 4_000)
