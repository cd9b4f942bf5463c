"""The JSON documents of the status service, built from one :class:`~cryptolink.status.snapshot.StatusSnapshot`
(pure functions: no I/O, no clock).

``/api/system/status`` returns :func:`system_status`: the monitoring document existing dashboards read
(``cpu_usage``, ``memory_usage``, ``disk_space``, ``exchange_connections`` with ``summary`` and
``connections``...). Its keys are fixed; extra keys are added beside them, never instead of them.

**Engine state -> monitoring status** (:data:`STATUS_OF`), and the colours (:data:`COLOR_OF`):

================  ================  ======  ================================================================
engine state      status            colour  why
================  ================  ======  ================================================================
``connected``     ``connected``     green   socket open, data flowing
``unstable``      ``error``         red     socket open but *no* subscription delivers data: a page that
                                            showed it green would lie (``unstable: true`` says which case)
``connecting``    ``connecting``    yellow  first connect in progress
``reconnecting``  ``reconnecting``  orange  between sessions: waiting out the backoff or opening a socket
``failed``        ``error``         red     gave up after ``reconnect.max_attempts``; needs ``reconnect()``
``disconnected``  ``disconnected``  gray    not started yet
``stopped``       ``disconnected``  gray    stopped on purpose
================  ================  ======  ================================================================

``summary.healthy`` is true only when every enabled entry is running, every one of its connections is
``connected`` (not unstable) and every book is live. Times are ISO 8601 in UTC (``2026-12-02T03:50:12.345Z``);
``latency_ms`` is the keepalive round trip's mean over the last samples (``null`` until one was measured);
``reconnect_count`` counts reconnect attempts (successful ones are ``reconnect_successes``).

Host figures: ``disk_space`` is ``"<used> / <total>"`` of the output directory's filesystem and
``disk_space_percent`` is ``100 * used / total`` of the same two numbers (as ``memory_usage`` and
``memory_usage_percent`` are).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cryptolink.engine import ConnectionState
from cryptolink.engine.stats import ConnectionStats
from cryptolink.feed import BookHealth, FeedStats
from cryptolink.manager import report_sections
from cryptolink.report import ReportRow, render_report
from cryptolink.rest.health import MemberState
from cryptolink.rest.stats import GroupStats, MemberStats
from cryptolink.status.host import format_bytes
from cryptolink.status.snapshot import EventRecord, StatusSnapshot

if TYPE_CHECKING:
    from cryptolink.rest.budget import BudgetStats

__all__ = [
    "COLOR_OF",
    "STATUS_OF",
    "connections_detail",
    "event_doc",
    "events_doc",
    "exchange_connections",
    "health",
    "iso",
    "nats_doc",
    "nats_summary",
    "pool_key",
    "push_message",
    "readiness",
    "report_doc",
    "rest_doc",
    "rest_summary",
    "system_status",
    "worker_doc",
]

_S = ConnectionState

STATUS_OF: Mapping[ConnectionState, str] = {
    _S.CONNECTED: "connected",
    _S.UNSTABLE: "error",
    _S.CONNECTING: "connecting",
    _S.RECONNECTING: "reconnecting",
    _S.FAILED: "error",
    _S.DISCONNECTED: "disconnected",
    _S.STOPPED: "disconnected",
}
"""Monitoring status of each engine state (see the module docstring)."""

COLOR_OF: Mapping[str, str] = {
    "connected": "green",
    "disconnected": "gray",
    "connecting": "yellow",
    "error": "red",
    "reconnecting": "orange",
}
"""Colour of each monitoring status."""


def iso(time_ns: int | None) -> str | None:
    """Epoch ns -> ISO 8601 UTC with milliseconds and ``Z`` (``None`` stays ``None``)."""
    if time_ns is None:
        return None
    dt = datetime.fromtimestamp(time_ns / 1e9, tz=UTC)
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def _books_of(fs: FeedStats, connection_id: str) -> list[BookHealth]:
    return [b for b in fs.books if b.connection_id == connection_id]


def _book_doc(b: BookHealth) -> dict[str, Any]:
    return {
        "symbol": b.symbol,
        "state": b.state,
        "last_sequence": b.last_sequence,
        "resyncs": b.resyncs,
        "resyncs_by_cause": dict(b.resyncs_by_cause),
        "last_resync_cause": b.last_resync_cause,
        "gaps": b.gaps,
        "checksum_failures": b.checksum_failures,
        "failed_retries": b.failed_retries,
    }


def _connection(fs: FeedStats, cs: ConnectionStats, row: ReportRow | None) -> dict[str, Any]:
    status = STATUS_OF[cs.state]
    books = _books_of(fs, cs.connection_id)
    q = cs.quality
    return {
        # the monitoring keys (fixed)
        "exchange_name": fs.name,
        "status": status,
        "status_color": COLOR_OF[status],
        "last_connected_at": iso(cs.last_connected_ns),
        "last_disconnected_at": iso(cs.last_disconnected_ns),
        "last_error": cs.last_error,
        "last_error_at": iso(cs.last_error_ns),
        "reconnect_count": cs.reconnect_attempts,
        "latency_ms": _round(q.latency_mean_ms),
        "message_count": cs.messages,
        # extras
        "exchange": cs.exchange,
        "market": fs.market,
        "connection_id": cs.connection_id,
        "state": cs.state.value,
        "unstable": cs.state is _S.UNSTABLE,
        "reconnect_successes": cs.successful_reconnects,
        "quality_score": _round(q.score, 1),
        "messages_per_s": _round(q.throughput_msgs_s, 1),
        "uptime_pct": _round(q.uptime_pct, 2),
        "last_message_age_s": _round(cs.last_message_age_s, 3),
        "books": {"total": len(books), "live": sum(1 for b in books if b.state == "live")},
        "subscriptions": [
            {
                "channel": st.channel,
                "symbol": st.symbol,
                "state": st.state,
                "data_age_s": _round(st.data_age_s, 3),
                "threshold_s": _round(st.threshold_s, 3),
                "stale": st.stale,
            }
            for st in cs.streams
        ],
        "book_states": [{"symbol": b.symbol, "state": b.state} for b in books],
        "last_event": row.last_event if row is not None else "",
    }


def _pairs(snap: StatusSnapshot) -> Iterable[tuple[FeedStats, ConnectionStats]]:
    for fs in snap.stats.feeds:
        for cs in fs.connections:
            yield fs, cs


def health(snap: StatusSnapshot) -> tuple[bool, list[str]]:
    """``(healthy, reasons)``: healthy only when every enabled entry runs, every connection is ``connected``
    (not unstable), every book is live, the NATS sink (if any) is connected and losing nothing now, and the
    cluster worker (if any) is not fenced and meets no worker with another configuration; ``reasons`` names each
    thing that is not."""
    reasons: list[str] = []
    running = {fs.name for fs in snap.stats.feeds}
    reasons += [f"{name}: not running" for name in snap.enabled if name not in running]
    for _fs, cs in _pairs(snap):
        if cs.state is not _S.CONNECTED:
            reasons.append(f"{cs.connection_id}: {cs.state.value}")
    for fs in snap.stats.feeds:
        if not fs.connections:
            reasons.append(f"{fs.name}: no connection")
        reasons += [f"{fs.name} {b.symbol}: book {b.state}" for b in fs.books if b.state != "live"]
    reasons += _nats_reasons(snap, ready=False)
    return not reasons, reasons


def _nats_reasons(snap: StatusSnapshot, *, ready: bool) -> list[str]:
    """Why the NATS sink or the cluster worker make the instance unhealthy (or, ``ready``, not ready): the sink
    not connected or losing events now; the worker fenced (its leases not renewed), meeting workers with another
    configuration, or (readiness) still starting."""
    out: list[str] = []
    n = snap.nats
    if n is not None:
        if not n.connected and not n.closed:
            out.append("nats: not connected")
        if n.open_losses:
            out.append(f"nats: {n.open_losses} stream(s) losing events")
    w = snap.worker
    if w is not None:
        if w.state == "fenced":
            out.append(f"worker {w.worker_id}: fenced (leases not renewed in time, shards stopped)")
        elif ready and w.state == "starting":
            out.append(f"worker {w.worker_id}: starting")
        if w.unheld_slots and w.state == "active":
            out.append(
                f"cluster: {w.unheld_slots} of {w.slots} shard slots held by no worker for two renewal intervals "
                "(a shard failing to start everywhere? see the log)"
            )
        if w.id_conflict:
            out.append(f"worker {w.worker_id}: another process uses this worker id")
        if w.config_mismatch:
            out.append(
                f"worker {w.worker_id}: workers with another configuration: {', '.join(w.config_mismatch)}"
            )
    return out


def readiness(snap: StatusSnapshot) -> tuple[bool, list[str]]:
    """``(ready, reasons)`` for ``/readyz``: every enabled entry runs and delivers: each of its connections is
    ``connected`` (data flowing; ``unstable`` means nothing flows) with no stale subscription; the NATS sink and
    the cluster worker as in :func:`health`, and a worker still starting is not ready."""
    reasons: list[str] = []
    running = {fs.name: fs for fs in snap.stats.feeds}
    for name in snap.enabled:
        fs = running.get(name)
        if fs is None:
            reasons.append(f"{name}: not running")
            continue
        if not fs.connections:
            reasons.append(f"{name}: no connection")
        for cs in fs.connections:
            if cs.state is not _S.CONNECTED:
                reasons.append(f"{cs.connection_id}: {cs.state.value}")
            elif cs.subscriptions_stale:
                reasons.append(f"{cs.connection_id}: {cs.subscriptions_stale} stale subscription(s)")
    reasons += _nats_reasons(snap, ready=True)
    return not reasons, reasons


def exchange_connections(snap: StatusSnapshot) -> dict[str, Any]:
    """The ``exchange_connections`` document: ``summary`` (total, connected, disconnected, error,
    reconnecting, healthy; extras connecting, unstable, books), ``connections`` (one per engine connection,
    sorted by entry then connection id) and ``timestamp``."""
    rows = {r.connection_id: r for r in snap.rows}
    conns = [
        _connection(fs, cs, rows.get(cs.connection_id))
        for fs, cs in sorted(_pairs(snap), key=lambda p: (p[0].name, p[1].connection_id))
    ]
    counts = {s: 0 for s in COLOR_OF}
    for c in conns:
        counts[c["status"]] += 1
    healthy, reasons = health(snap)
    books = [b for fs in snap.stats.feeds for b in fs.books]
    return {
        "summary": {
            "total": len(conns),
            "connected": counts["connected"],
            "disconnected": counts["disconnected"],
            "error": counts["error"],
            "reconnecting": counts["reconnecting"],
            "healthy": healthy,
            "connecting": counts["connecting"],
            "unstable": sum(1 for c in conns if c["unstable"]),
            "books": {"total": len(books), "live": sum(1 for b in books if b.state == "live")},
            "unhealthy_reasons": reasons,
        },
        "connections": conns,
        "timestamp": iso(snap.taken_ns),
    }


def _host_doc(snap: StatusSnapshot) -> dict[str, Any]:
    h = snap.host
    return {
        "cpu_usage": round(h.cpu_percent, 1),
        "cpu_usage_percent": round(h.cpu_percent, 1),
        "memory_usage": f"{format_bytes(h.memory_used)} / {format_bytes(h.memory_total)}",
        "memory_usage_percent": round(h.memory_percent, 1),
        "disk_space": f"{format_bytes(h.disk_used)} / {format_bytes(h.disk_total)}",
        "disk_space_percent": round(100.0 * h.disk_used / h.disk_total, 1) if h.disk_total else 0.0,
        "timestamp": iso(snap.taken_ns),
    }


def system_status(snap: StatusSnapshot) -> dict[str, Any]:
    """The ``/api/system/status`` document (keys in the module docstring), host figures from psutil."""
    return {
        **_host_doc(snap),
        "exchange_connections": exchange_connections(snap),
        # extras
        "instance_id": snap.instance_id,
        "started_at": iso(snap.started_ns),
        "process": {
            "rss_bytes": snap.host.process_rss,
            "cpu_percent": round(snap.host.process_cpu_percent, 1),
        },
        "guards": None
        if (g := snap.stats.guards) is None
        else {"open": g.guards, "safe": g.safe, "halts": g.halts},
        "rest": rest_summary(snap),
        "nats": nats_summary(snap),
        "worker": worker_doc(snap),
    }


def nats_summary(snap: StatusSnapshot) -> dict[str, Any] | None:
    """The ``nats`` extra of ``/api/system/status``: the NATS sink's counters (``connected``, ``server``
    without credentials, ``stream``, ``accepted``, ``acked``, ``duplicates``, ``retries``, ``lost`` and
    ``lost_by_cause``, ``buffered``, ``in_flight``, ``gaps_published``, ``snapshots_published``,
    ``last_error``...: :class:`~cryptolink.sinks.nats.NatsSinkStats`); ``None`` without a NATS sink."""
    return None if snap.nats is None else dataclasses.asdict(snap.nats)


def worker_doc(snap: StatusSnapshot) -> dict[str, Any] | None:
    """The ``worker`` extra of ``/api/system/status`` (and so of each instance in the cluster view): this
    worker's id, state, fair share, the shards it holds with their lease revisions, its peers and lease
    counters (:class:`~cryptolink.cluster.worker.WorkerStatus`); ``None`` when the process is not a worker."""
    return None if snap.worker is None else snap.worker.to_dict()


def nats_doc(snap: StatusSnapshot) -> dict[str, Any]:
    """``/api/nats``: ``sink`` (:func:`nats_summary`) and ``worker`` (:func:`worker_doc`), each ``null`` when
    absent."""
    return {"sink": nats_summary(snap), "worker": worker_doc(snap), "timestamp": iso(snap.taken_ns)}


def pool_key(exchange: str, scope: str, pool: str) -> str:
    """The pool's key within its budget: ``"binance:default:weight"`` -> ``"weight"`` (the limiter's pool name
    is ``<exchange>:<scope>:<key>``, after a prefix if any); a name of another shape is returned whole."""
    marker = f"{exchange}:{scope}:"
    _, found, key = pool.rpartition(marker)
    return key if found and key else pool


def rest_summary(snap: StatusSnapshot) -> dict[str, Any] | None:
    """The ``rest`` extra of ``/api/system/status``: ``members`` (count), ``states`` (members per health
    state, every state present), ``groups``, ``budgets`` and ``budgets_fallback`` (budgets on their local share
    because Redis is unreachable); ``None`` without a REST manager and without budgets."""
    r = snap.rest
    if r is None and not snap.rest_budgets:
        return None
    members = r.members if r is not None else ()
    states = {s.value: 0 for s in MemberState}
    for m in members:
        states[m.state] = states.get(m.state, 0) + 1
    return {
        "members": len(members),
        "states": states,
        "groups": len(r.groups) if r is not None else 0,
        "budgets": len(snap.rest_budgets),
        "budgets_fallback": sum(1 for b in snap.rest_budgets if b.limiter.mode == "fallback"),
    }


def _member_doc(m: MemberStats) -> dict[str, Any]:
    return {
        "name": m.name,
        "exchange": m.exchange,
        "ip": m.ip,
        "state": m.state,
        "since_s": round(m.since_s, 3),
        "weight": m.weight,
        "effective_weight": round(m.effective_weight, 3),
        "priority": m.priority,
        "calls": m.calls,
        "successes": m.successes,
        "errors": dict(m.errors),
        "http_requests": m.http_requests,
        "http_429": m.http_429,
        "http_418": m.http_418,
        "latency_ms": _round(m.latency_ms),
        "latency_histogram": {
            "bounds_ms": list(m.latency_buckets_ms),
            "cumulative": list(m.latency_counts),
            "count": m.latency_count,
            "sum_ms": round(m.latency_sum_ms, 3),
        },
        "error_rate": round(m.error_rate, 4),
        "consecutive_failures": m.consecutive_failures,
        "checks": m.checks,
        "check_failures": m.check_failures,
        "last_error": m.last_error,
        "transitions": m.transitions,
        "in_flight": m.in_flight,
    }


def _group_doc(g: GroupStats) -> dict[str, Any]:
    return {
        "name": g.name,
        "strategy": g.strategy,
        "members": list(g.members),
        "calls": g.calls,
        "successes": g.successes,
        "failures": g.failures,
        "retries": g.retries,
        "chosen": dict(g.chosen),
        "unavailable": g.unavailable,
    }


def _budget_doc(b: BudgetStats) -> dict[str, Any]:
    lim = b.limiter
    return {
        "exchange": b.exchange,
        "scope": b.scope,
        "mode": lim.mode,
        "grants": lim.grants,
        "waiting": lim.waiting,
        "attempts": lim.attempts,
        "refused": {"full": lim.refused_full, "paused": lim.refused_paused, "banned": lim.refused_banned},
        "timeouts": lim.timeouts,
        "rejected": lim.rejected,
        "fallbacks": lim.fallbacks,
        "rejoins": lim.rejoins,
        "redis_errors": lim.redis_errors,
        "last_redis_error": lim.last_error,
        "answers": {"429": b.answers_429, "418": b.answers_418, "ban_other": b.answers_ban_other},
        "pauses": b.pauses,
        "bans": b.bans,
        "header_corrections": b.header_corrections,
        "garbled_headers": b.garbled_headers,
        "paused_for_s": round(b.paused_for_s, 3),
        "pools": [
            {
                "name": p.name,
                "key": pool_key(b.exchange, b.scope, p.name),
                "limit": p.limit,
                "window_s": p.window_s,
                "scope": p.scope,
                "requests": p.requests,
                "weight": p.weight,
                "observed": p.observed,
                "local_in_window": p.local_in_window,
                "local_limit": p.local_limit,
            }
            for p in lim.pools
        ],
    }


def rest_doc(snap: StatusSnapshot) -> dict[str, Any]:
    """``/api/rest``: the REST manager's ``members`` (health state, weights, calls, errors by kind, HTTP
    requests, 429/418 answers, latency with its cumulative histogram in ms), ``groups`` (strategy, calls,
    retries, failures, first picks per member, calls refused for want of a member) and every rate ``budget`` of
    the process (limiter mode, grants, waiting, refusals, Redis fallbacks, 429/418 answers, pauses, bans, and
    per pool its limit, window, weight granted and weight in the local window), with ``summary``
    (:func:`rest_summary`). ``manager`` is false without a REST manager (then ``members`` and ``groups`` are
    empty and ``reloads``, ``taken_at`` are ``null``). No field carries a secret: the statistics hold none
    (``last_error`` texts have the member's credentials removed by the manager)."""
    r = snap.rest
    return {
        "timestamp": iso(snap.taken_ns),
        "instance_id": snap.instance_id,
        "manager": r is not None,
        "taken_at": iso(r.taken_at_ms * 1_000_000) if r is not None else None,
        "reloads": r.reloads if r is not None else None,
        "summary": rest_summary(snap),
        "members": [_member_doc(m) for m in r.members] if r is not None else [],
        "groups": [_group_doc(g) for g in r.groups] if r is not None else [],
        "budgets": [_budget_doc(b) for b in snap.rest_budgets],
    }


def event_doc(rec: EventRecord) -> dict[str, Any]:
    """One connection event as JSON (``seq``, ``type``, ``severity`` name and level, ``time``...)."""
    e = rec.event
    return {
        "seq": rec.seq,
        "type": e.type.value,
        "severity": e.severity.name.lower(),
        "level": int(e.severity),
        "time": iso(e.time_ns),
        "time_ms": e.time_ns // 1_000_000,
        "exchange": e.exchange,
        "feed": e.feed,
        "connection_id": e.connection_id,
        "description": e.description,
        "error": e.error,
        "latency_ms": _round(e.latency_ms),
        "attempt": e.attempt,
        "stream": e.stream,
        "symbol": e.symbol,
    }


def events_doc(records: Iterable[EventRecord], since: int = 0, *, evicted_total: int = 0) -> dict[str, Any]:
    """``{"events": [...], "last_seq": N, "dropped": n, "evicted_total": m}`` for a caller at cursor ``since``.

    ``records`` are the kept events (the service's ring, or its part after ``since``), oldest first, with
    consecutive ``seq`` (read once). ``events`` are those after ``since``; ``last_seq`` is the cursor for the next
    call (never below ``since``); ``dropped`` counts the events after ``since`` that this caller missed because
    they were pushed out of the ring before it asked (``first kept seq - since - 1``, 0 when nothing is
    missing); ``evicted_total`` is how many events the ring has pushed out since the start, whoever read them.
    """
    kept = list(records)
    out = [r for r in kept if r.seq > since]
    last = kept[-1].seq if kept else since
    dropped = max(0, out[0].seq - since - 1) if out else 0
    return {
        "events": [event_doc(r) for r in out],
        "last_seq": max(last, since),
        "dropped": dropped,
        "evicted_total": evicted_total,
    }


def connections_detail(snap: StatusSnapshot) -> dict[str, Any]:
    """``/api/connections``: per connection its state, quality score and every part of it, latency and lag,
    subscriptions with their data age, books with their state, and its last events."""
    rows = {r.connection_id: r for r in snap.rows}
    by_conn: dict[str, list[dict[str, Any]]] = {}
    for rec in snap.events:
        by_conn.setdefault(rec.event.connection_id, []).append(event_doc(rec))
    out = []
    for fs, cs in sorted(_pairs(snap), key=lambda p: (p[0].name, p[1].connection_id)):
        q = cs.quality
        doc = _connection(fs, cs, rows.get(cs.connection_id))
        doc.update(
            {
                "url": cs.url,
                "quality": {
                    "score": _round(q.score, 1),
                    "availability": _round(q.availability, 1),
                    "reliability": _round(q.reliability, 1),
                    "data": _round(q.data, 1),
                    "stability": _round(q.stability, 1),
                    "loss_rate": q.loss_rate,
                    "error_rate_per_min": _round(q.error_rate_per_min, 2),
                    "poor": q.poor,
                },
                "latency": {
                    "rtt_mean_ms": _round(q.latency_mean_ms),
                    "rtt_p99_ms": _round(q.latency_p99_ms),
                    "lag_mean_ms": _round(q.lag_mean_ms),
                    "lag_p99_ms": _round(q.lag_p99_ms),
                },
                "counters": {
                    "messages": cs.messages,
                    "bytes": cs.bytes,
                    "market_events": cs.market_events,
                    "errors": cs.errors,
                    "decode_errors": cs.decode_errors,
                    "reconnect_attempts": cs.reconnect_attempts,
                    "successful_reconnects": cs.successful_reconnects,
                    "failed_connects": cs.failed_connects,
                    "disconnections": cs.disconnections,
                    "unexpected_disconnections": cs.unexpected_disconnections,
                    "rotations": cs.rotations,
                },
                "uptime_s": round(cs.uptime_s, 3),
                "downtime_s": round(cs.downtime_s, 3),
                "last_disconnect_reason": cs.last_disconnect_reason,
                "books_detail": [_book_doc(b) for b in _books_of(fs, cs.connection_id)],
                "events": by_conn.get(cs.connection_id, [])[-10:],
            }
        )
        out.append(doc)
    return {"connections": out, "timestamp": iso(snap.taken_ns), "instance_id": snap.instance_id}


def report_doc(snap: StatusSnapshot) -> dict[str, Any]:
    """``/api/report``: the connection report's rows (state, quality score, latency, stability, error rate,
    connections, disconnections, reconnect success rate, uptime, downtime) and its text."""
    stability = {cs.connection_id: cs.quality.stability for _, cs in _pairs(snap)}
    attempts = {cs.connection_id: (cs.reconnect_attempts, cs.successful_reconnects) for _, cs in _pairs(snap)}
    rows = []
    for r in sorted(snap.rows, key=lambda r: r.connection_id):
        tried, ok = attempts.get(r.connection_id, (0, 0))
        rows.append(
            {
                "feed": r.feed,
                "exchange": r.exchange,
                "connection_id": r.connection_id,
                "state": r.state,
                "quality_score": _round(r.quality_score, 1),
                "latency_mean_ms": _round(r.latency_mean_ms),
                "latency_p99_ms": _round(r.latency_p99_ms),
                "stability": _round(stability.get(r.connection_id), 1),
                "error_rate_per_min": _round(r.error_rate, 2),
                "connections": r.connections,
                "disconnections": r.disconnections,
                "reconnect_attempts": tried,
                "reconnect_success_rate": None if tried == 0 else round(100.0 * ok / tried, 1),
                "uptime_pct": _round(r.uptime_pct, 2),
                "downtime_s": round(r.downtime_s, 3),
                "messages": r.messages,
                "books": r.book_health,
            }
        )
    text = render_report(snap.rows, sections=report_sections(snap.stats))
    return {"timestamp": iso(snap.taken_ns), "rows": rows, "text": text}


def push_message(snap: StatusSnapshot) -> dict[str, Any]:
    """The ``/ws/status`` message: ``{"type": "exchange_status", "id": "exchange_status_<ms>", "timestamp":
    <ms>, "data": <exchange_connections>}``; ``data`` also carries ``host`` (the system figures) and
    ``events`` (the latest connection events) for the dashboard."""
    ms = snap.taken_ns // 1_000_000
    data = exchange_connections(snap)
    data["host"] = _host_doc(snap)
    data["events"] = [event_doc(r) for r in snap.events[-20:]]
    data["instance_id"] = snap.instance_id
    return {"type": "exchange_status", "id": f"exchange_status_{ms}", "timestamp": ms, "data": data}
