"""Prometheus metrics of one cryptolink instance, built at scrape time from the latest
:class:`~cryptolink.status.snapshot.StatusSnapshot`.

:class:`MetricsExporter` owns a private :class:`~prometheus_client.CollectorRegistry` holding one collector
(:class:`SnapshotCollector`, plus prometheus_client's process collector: ``process_*``). A scrape reads
``service.latest`` (a frozen snapshot) and turns it into metric families; nothing is updated on the hot path,
and two scrapes of the same snapshot give the same samples (except ``cryptolink_status_snapshot_age_seconds``
and the process figures).

**Labels.** ``exchange`` (ccxt id), ``market`` (``spot``/``perpetual``...), ``feed`` (the configuration entry
name) and ``connection`` (the engine's connection id) on connection metrics; ``exchange``, ``market``,
``feed`` on feed metrics; ``consumer`` (registration name) on bus metrics; ``exchange`` and ``endpoint``
(REST base URL, or ``host:port`` of a connect gate) on REST and gate metrics; ``member`` and ``exchange`` on
the REST manager's members, ``group`` on its groups, ``exchange`` and ``scope`` (the IP scope) on rate budgets,
plus ``pool`` (the pool's key in its budget) on their pools. The per-symbol labels ``symbol`` and ``channel``
appear only with ``per_symbol=True``.

**Cardinality.** Without ``per_symbol`` the number of series is bounded by
``70 * connections + 34 * feeds + 5 * bus consumer names + 11 * REST hosts + 8 * connect gates + 20`` (plus
6 with trading guards, 7 with the Redis status, one per non-zero adapter counter and the ``process_*``
series): it does not grow with the number of symbols. The REST manager and the rate budgets (from
``StatusSnapshot.rest`` and ``rest_budgets``) add ``46 * members + 9 * groups + (group, member) pairs +
22 * budgets + 7 * pools + 1``.
With ``per_symbol`` each subscription adds two series (data age, stale) and each book 13 (live, four book
counters, eight resync causes) in place of the feed's aggregates. Every family and its meaning are listed in
:data:`SPECS` (and in ``docs/metrics.md``).

**Counters and resets.** Counters are the engine's cumulative counters. A counter summed over several objects
(book counters per feed, bus counters of consumers sharing a name) keeps the last counts of an object that went
away (an unsubscribed book, a closed consumer) in a retired total per series
(:class:`~cryptolink.status.counters.MonotonicSum`), so it never goes down and Prometheus never reads a false
reset. The REST manager's counters go through the same sums per member, group, budget and pool: a member or
group rebuilt by a hot reload (counters starting again at 0) or a budget created again keeps its old counts in
its series. The collector is therefore stateful: the sums grow from scrape to scrape (a group that disappears,
a whole feed, every consumer of a name, a removed member, is forgotten with its series).

**Redis.** With a ``redis`` source (:class:`~cryptolink.status.cluster.RedisStatusPublisher`) and a ``cluster``
source (:class:`~cryptolink.status.cluster.ClusterStatus`), the ``cryptolink_status_redis_*`` families carry
their counters; without them those families have no sample.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, get_args

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)

from cryptolink import __version__
from cryptolink.book.sync import ResyncCause
from cryptolink.bus import BusStats, ConsumerStats
from cryptolink.clock import Clock, SystemClock
from cryptolink.engine import ConnectionState
from cryptolink.engine.gate import GateStats
from cryptolink.engine.quality import LATENCY_BUCKETS_MS
from cryptolink.engine.stats import ConnectionStats
from cryptolink.feed import BookHealth, FeedStats
from cryptolink.models import Channel
from cryptolink.ratelimit.stats import Mode
from cryptolink.rest import RestStats
from cryptolink.rest.health import MemberState
from cryptolink.rest.stats import GroupStats, MemberStats
from cryptolink.rest.strategy import STRATEGIES
from cryptolink.status import documents
from cryptolink.status.counters import MonotonicSums
from cryptolink.status.snapshot import StatusSnapshot

if TYPE_CHECKING:  # the exporter itself does not need redis-py
    from cryptolink.rest.budget import BudgetStats
    from cryptolink.status.cluster import PublisherStats, ReaderStats

__all__ = [
    "BUDGET_MODES",
    "ERROR_KINDS",
    "MEMBER_STATES",
    "REST_ERROR_KINDS",
    "SPECS",
    "MetricSpec",
    "MetricsExporter",
    "PublisherSource",
    "ReaderSource",
    "SnapshotCollector",
    "SnapshotSource",
]

log = logging.getLogger("cryptolink.status")

Kind = Literal["counter", "gauge", "histogram", "info"]

CONN = ("exchange", "market", "feed", "connection")
FEED = ("exchange", "market", "feed")
HOST = ("exchange", "endpoint")
MEMBER = ("member", "exchange")
BUDGET = ("exchange", "scope")
POOL = ("exchange", "scope", "pool")

ERROR_KINDS = ("decode", "adapter", "inflate_refused", "exchange", "callback", "transport", "book")
"""Values of the ``kind`` label of ``cryptolink_errors_total``; their sum is ``ConnectionStats.errors``."""


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One metric family.

    Attributes:
        name: the exposed name (counters with their ``_total``, info with its ``_info``).
        kind: ``counter``, ``gauge``, ``histogram`` or ``info``.
        help: the HELP text (meaning and unit).
        labels: label names always present.
        symbol_labels: label names added with ``per_symbol=True`` (the family is then per subscription or per
            book instead of aggregated).
        per_symbol_only: the family exists only with ``per_symbol=True``.
    """

    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()
    symbol_labels: tuple[str, ...] = ()
    per_symbol_only: bool = False

    def label_names(self, per_symbol: bool) -> tuple[str, ...]:
        """The family's label names with or without the per-symbol ones."""
        return self.labels + self.symbol_labels if per_symbol else self.labels


def _c(name: str, help_: str, labels: tuple[str, ...] = CONN, symbol: tuple[str, ...] = ()) -> MetricSpec:
    return MetricSpec(name, "counter", help_, labels, symbol)


def _g(name: str, help_: str, labels: tuple[str, ...] = CONN, symbol: tuple[str, ...] = ()) -> MetricSpec:
    return MetricSpec(name, "gauge", help_, labels, symbol)


_SYM = ("symbol",)
_SUB = ("channel", "symbol")

SPECS: tuple[MetricSpec, ...] = (
    # ---- connections
    _g(
        "cryptolink_connection_state",
        "1 for the connection's current engine state, 0 for the six others (disconnected, connecting, "
        "connected, unstable, reconnecting, failed, stopped).",
        (*CONN, "state"),
    ),
    _g(
        "cryptolink_connection_up", "1 while the connection is connected (socket open, data flowing), else 0."
    ),
    _c("cryptolink_messages_received_total", "Frames received on every session of the connection."),
    _c("cryptolink_received_bytes_total", "Size of the frames received, bytes (UTF-8 bytes of text frames)."),
    _c("cryptolink_market_events_total", "Trades, tickers and book messages decoded and delivered."),
    _c(
        "cryptolink_ignored_frames_total",
        "Well-formed frames carrying nothing handled (e.g. unknown streams).",
    ),
    _c(
        "cryptolink_errors_total",
        "Errors by kind: decode (malformed frame), adapter (adapter bug), inflate_refused (bad or oversized "
        "compressed frame), exchange (error frames, rejections), callback (data callback raised), transport "
        "(failed connects and sends, oversized frames), book (checksum mismatches).",
        (*CONN, "kind"),
    ),
    _c("cryptolink_oversized_frames_total", "Frames over the size limit (each resets the session)."),
    _c("cryptolink_reconnect_attempts_total", "Reconnect attempts (every attempt after the first connect)."),
    _c("cryptolink_reconnect_successes_total", "Reconnect attempts that opened a socket."),
    _c("cryptolink_connect_failures_total", "Attempts (the first included) that could not open a socket."),
    _c("cryptolink_disconnections_total", "Sessions that ended, asked for or not (rotations excluded)."),
    _c("cryptolink_unexpected_disconnections_total", "Sessions that ended without being asked to."),
    _c(
        "cryptolink_stall_detections_total",
        "Data watchdog reports: a subscription silent past its learned threshold, or the whole connection "
        "silent (which resets the session).",
    ),
    _c("cryptolink_rotations_total", "Completed make-before-break connection rotations."),
    _c("cryptolink_connected_seconds_total", "Time spent connected (incl. unstable) since start, seconds."),
    _c("cryptolink_disconnected_seconds_total", "Time spent not connected since start, seconds."),
    _g("cryptolink_quality_score", "Connection quality score, 0 (unusable) to 100 (perfect)."),
    _g("cryptolink_uptime_ratio", "Connected time / time since the connection first started, 0 to 1."),
    _g(
        "cryptolink_last_message_age_seconds",
        "Seconds since the connection's last frame (absent before the first frame).",
    ),
    _g(
        "cryptolink_session_start_time_seconds",
        "Wall time the current session opened, seconds since the epoch (absent when not connected).",
    ),
    _g(
        "cryptolink_subscriptions",
        "Subscriptions by registry state: confirmed, pending (asked, no answer) and rejected.",
        (*CONN, "state"),
    ),
    _g(
        "cryptolink_stale_subscriptions",
        "Subscriptions whose data watchdog fired and that had no data since.",
    ),
    _g(
        "cryptolink_data_age_seconds",
        "Seconds since the last market data of the connection's most silent subscription (per subscription "
        "with per-symbol labels); absent until a subscription received data on the current socket.",
        CONN,
        _SUB,
    ),
    MetricSpec(
        "cryptolink_subscription_stale",
        "gauge",
        "1 when the subscription's data watchdog fired and no data came since, else 0.",
        CONN,
        _SUB,
        per_symbol_only=True,
    ),
    MetricSpec(
        "cryptolink_ping_rtt_seconds",
        "histogram",
        "Keepalive round trips (ping to pong) since start, seconds.",
        CONN,
    ),
    MetricSpec(
        "cryptolink_exchange_lag_seconds",
        "histogram",
        "Exchange event time to local receipt, sampled, seconds (negative lags, clock skew, count as 0).",
        CONN,
    ),
    # ---- feeds and books
    _g(
        "cryptolink_feed_running",
        "1 when the enabled configuration entry runs, 0 when it is enabled but not running.",
        ("feed",),
    ),
    _c(
        "cryptolink_book_resyncs_total",
        "Order book resyncs by cause: gap, checksum, reconnect, stale, snapshot, malformed, overflow, restart.",
        (*FEED, "cause"),
        _SYM,
    ),
    _g("cryptolink_books", "Order books maintained by the feed.", FEED),
    _g("cryptolink_books_live", "Order books in state live (synced, every check passing).", FEED),
    MetricSpec(
        "cryptolink_book_live",
        "gauge",
        "1 when the symbol's order book is live, else 0.",
        FEED,
        _SYM,
        per_symbol_only=True,
    ),
    _c("cryptolink_book_gaps_total", "Sequence gaps found in order book updates.", FEED, _SYM),
    _c("cryptolink_book_checksum_failures_total", "Order book checksum mismatches.", FEED, _SYM),
    _c(
        "cryptolink_book_messages_dropped_total",
        "Order book messages dropped as duplicates or older than the book.",
        FEED,
        _SYM,
    ),
    _c(
        "cryptolink_book_id_restarts_total",
        "Times the exchange's book update ids went back and a new chain was started.",
        FEED,
        _SYM,
    ),
    _c(
        "cryptolink_gaps_total",
        "Gap events published, by stream (trades, ticker, book).",
        (*FEED, "stream"),
    ),
    _c("cryptolink_gaps_recovered_total", "Trade gaps whose missing trades were all backfilled.", FEED),
    _c(
        "cryptolink_published_events_total",
        "Events published to the bus (trades, tickers, books, gaps).",
        FEED,
    ),
    _c(
        "cryptolink_duplicates_dropped_total",
        "Identical trades and tickers dropped (overlap, resends).",
        FEED,
    ),
    _c("cryptolink_stale_tickers_dropped_total", "Tickers older than one already delivered, dropped.", FEED),
    _c("cryptolink_out_of_order_trades_total", "Trades delivered late (lower id, not a duplicate).", FEED),
    _c("cryptolink_id_regressions_total", "Trade or ticker id sequences that restarted lower.", FEED),
    _c("cryptolink_backfilled_trades_total", "Trades recovered over REST after a trade gap.", FEED),
    _c("cryptolink_backfill_requests_total", "REST trade backfill requests.", FEED),
    _c("cryptolink_backfill_failures_total", "REST trade backfill requests that failed.", FEED),
    _g("cryptolink_backfills_running", "Symbols whose trade backfill runs now.", FEED),
    _g("cryptolink_trades_held", "Live trades held while their symbol's backfill runs.", FEED),
    _c("cryptolink_book_snapshots_fetched_total", "REST order book snapshots fetched.", FEED),
    _c("cryptolink_book_snapshot_errors_total", "REST order book snapshot requests that failed.", FEED),
    _c(
        "cryptolink_book_snapshot_rate_limited_total",
        "REST order book snapshot requests answered 429 or 418.",
        FEED,
    ),
    _g(
        "cryptolink_unknown_symbols", "Configured symbols the exchange's instrument list does not have.", FEED
    ),
    _g("cryptolink_instruments_loaded", "1 when the instrument list was loaded, else 0.", FEED),
    _c(
        "cryptolink_adapter_events_total",
        "Exchange adapter protocol-state counters by name (e.g. symbol_cache_evicted); only non-zero ones.",
        (*FEED, "event"),
    ),
    # ---- bus
    _c("cryptolink_bus_published_total", "Events published on the bus.", ()),
    _c("cryptolink_bus_unrouted_total", "Events published that matched no consumer.", ()),
    _c("cryptolink_bus_delivered_total", "Events handed to the consumer.", ("consumer",)),
    _c(
        "cryptolink_bus_dropped_total",
        "Events the consumer's overflow policy discarded (it did not keep up).",
        ("consumer",),
    ),
    _c("cryptolink_bus_callback_errors_total", "Callback calls of the consumer that raised.", ("consumer",)),
    _g("cryptolink_bus_queued", "Events waiting in the consumer's queue.", ("consumer",)),
    _g(
        "cryptolink_bus_queue_capacity",
        "Bound of the consumer's queue, events (0: sync callback).",
        ("consumer",),
    ),
    # ---- REST clients
    _c("cryptolink_rest_requests_total", "REST requests sent.", HOST),
    _c("cryptolink_rest_weight_used_total", "Summed request weight of the REST requests sent.", HOST),
    _c("cryptolink_rest_errors_total", "REST requests that failed (any reason).", HOST),
    _c("cryptolink_rest_rate_limited_total", "REST answers 429 (rate limited) or 418 (IP banned).", HOST),
    _g("cryptolink_rest_weight_budget", "Request weight allowed per window (absent: no budget).", HOST),
    _g(
        "cryptolink_rest_window_seconds",
        "Length of the REST weight window, seconds (absent: no budget).",
        HOST,
    ),
    _g("cryptolink_rest_weight_in_window", "Request weight used in the current window.", HOST),
    _g("cryptolink_rest_paused_seconds", "Seconds left of a Retry-After pause (0: none).", HOST),
    _g("cryptolink_rest_waiting_requests", "REST requests waiting for budget, pause or a slot.", HOST),
    _c(
        "cryptolink_rest_refused_total",
        "REST requests refused before sending (a cost above a pool's limit, or too many waiting).",
        HOST,
    ),
    _c(
        "cryptolink_rest_background_requests_total",
        "REST requests sent as background (trade backfills).",
        HOST,
    ),
    # ---- REST manager: members
    _g(
        "cryptolink_rest_member_state",
        "1 for the REST member's current health state, 0 for the three others (healthy, degraded, offline, "
        "maintenance).",
        (*MEMBER, "state"),
    ),
    _g(
        "cryptolink_rest_member_state_seconds",
        "Seconds the REST member has been in its current state.",
        MEMBER,
    ),
    _g("cryptolink_rest_member_weight", "The REST member's configured weight.", MEMBER),
    _g(
        "cryptolink_rest_member_effective_weight",
        "The weight the strategies use now (0 offline or in maintenance, lower when degraded, ramping up after "
        "a recovery).",
        MEMBER,
    ),
    _c(
        "cryptolink_rest_member_calls_total",
        "ccxt method calls made on the REST member (group or direct).",
        MEMBER,
    ),
    _c("cryptolink_rest_member_successes_total", "Calls on the REST member that returned.", MEMBER),
    _c(
        "cryptolink_rest_member_errors_total",
        "Failed calls on the REST member by kind: network, timeout, rate_limit, unavailable, maintenance, "
        "budget, bad_response, exchange, auth, bad_request, other.",
        (*MEMBER, "kind"),
    ),
    _c("cryptolink_rest_member_http_requests_total", "HTTP requests the REST member sent.", MEMBER),
    _c(
        "cryptolink_rest_member_rate_limit_answers_total",
        "HTTP answers to the REST member refusing for a rate limit (status 429) or an IP ban (status 418).",
        (*MEMBER, "status"),
    ),
    MetricSpec(
        "cryptolink_rest_member_latency_seconds",
        "histogram",
        "HTTP latency of the REST member's requests, seconds.",
        MEMBER,
    ),
    _g(
        "cryptolink_rest_member_latency_smoothed_seconds",
        "Smoothed (EWMA) HTTP latency of the REST member, seconds (absent before the first answer).",
        MEMBER,
    ),
    _g(
        "cryptolink_rest_member_error_ratio",
        "Failed share of the REST member's recent outcomes, 0 to 1.",
        MEMBER,
    ),
    _g(
        "cryptolink_rest_member_consecutive_failures",
        "Failures of the REST member since its last success.",
        MEMBER,
    ),
    _c("cryptolink_rest_member_health_checks_total", "Health checks of the REST member.", MEMBER),
    _c(
        "cryptolink_rest_member_health_check_failures_total",
        "Health checks of the REST member that failed.",
        MEMBER,
    ),
    _c("cryptolink_rest_member_transitions_total", "Health state changes of the REST member.", MEMBER),
    _g("cryptolink_rest_member_in_flight", "HTTP requests of the REST member in flight now.", MEMBER),
    # ---- REST manager: groups
    _g(
        "cryptolink_rest_group_strategy",
        "1 for the REST group's strategy, 0 for the others (round_robin, least_latency, weighted, failover).",
        ("group", "strategy"),
    ),
    _c("cryptolink_rest_group_calls_total", "Calls on the REST group.", ("group",)),
    _c(
        "cryptolink_rest_group_successes_total", "Calls on the REST group that returned a result.", ("group",)
    ),
    _c("cryptolink_rest_group_failures_total", "Calls on the REST group that raised.", ("group",)),
    _c(
        "cryptolink_rest_group_retries_total",
        "Further tries of a REST group call after a failure another member could absorb.",
        ("group",),
    ),
    _c(
        "cryptolink_rest_group_unavailable_total",
        "REST group calls refused because no member was available (all offline or in maintenance).",
        ("group",),
    ),
    _c(
        "cryptolink_rest_group_choices_total",
        "Times the REST group's strategy picked the member first.",
        ("group", "member"),
    ),
    _c("cryptolink_rest_reloads_total", "REST configurations applied by a hot reload.", ()),
    # ---- rate budgets (exchange, IP scope) and their pools
    _g(
        "cryptolink_rest_budget_mode",
        "1 for the rate budget's limiter mode, 0 for the others: local (in-process), redis (shared), fallback "
        "(Redis unreachable: a local share of each limit).",
        (*BUDGET, "mode"),
    ),
    _c("cryptolink_rest_budget_grants_total", "Requests granted by the rate budget.", BUDGET),
    _g("cryptolink_rest_budget_waiting", "Requests waiting in the rate budget's line now.", BUDGET),
    _c("cryptolink_rest_budget_attempts_total", "Tries at the limiter store by heads of the line.", BUDGET),
    _c(
        "cryptolink_rest_budget_refused_attempts_total",
        "Tries refused by reason: full (no room in a window), paused (after a 429), banned (after a 418).",
        (*BUDGET, "reason"),
    ),
    _c(
        "cryptolink_rest_budget_timeouts_total",
        "Requests that gave up waiting for the budget at their deadline.",
        BUDGET,
    ),
    _c(
        "cryptolink_rest_budget_rejected_total",
        "Requests refused because the budget's wait line was full.",
        BUDGET,
    ),
    _c(
        "cryptolink_rest_budget_fallbacks_total",
        "Switches of the rate budget from Redis to its local share (Redis unreachable).",
        BUDGET,
    ),
    _c(
        "cryptolink_rest_budget_rejoins_total",
        "Switches of the rate budget back from its local share to Redis.",
        BUDGET,
    ),
    _c("cryptolink_rest_budget_redis_errors_total", "Failed Redis calls of the rate budget.", BUDGET),
    _c(
        "cryptolink_rest_budget_pauses_total", "Pauses of the budget's pools after a 429-like answer.", BUDGET
    ),
    _c("cryptolink_rest_budget_bans_total", "Bans of the budget's scope after a 418-like answer.", BUDGET),
    _c(
        "cryptolink_rest_budget_rate_limit_answers_total",
        "Answers fed to the rate budget refusing for a rate limit (status 429), an IP ban (418) or the exchange's "
        "other ban statuses (other).",
        (*BUDGET, "status"),
    ),
    _c(
        "cryptolink_rest_budget_header_corrections_total",
        "Weight added to the budget from the exchange's own used-weight headers.",
        BUDGET,
    ),
    _c(
        "cryptolink_rest_budget_garbled_headers_total",
        "Rate-limit header values of the exchange the rules could not read (ignored).",
        BUDGET,
    ),
    _g(
        "cryptolink_rest_budget_paused_seconds",
        "Seconds left of the longest pause or ban this process applied to the budget (0: none).",
        BUDGET,
    ),
    _g("cryptolink_rest_pool_limit", "The pool's limit, weight per window.", POOL),
    _g(
        "cryptolink_rest_pool_window_seconds",
        "The pool's window, seconds (documented window plus margin).",
        POOL,
    ),
    _c("cryptolink_rest_pool_requests_total", "Requests granted touching the pool.", POOL),
    _c("cryptolink_rest_pool_weight_total", "Weight granted from the pool.", POOL),
    _c(
        "cryptolink_rest_pool_observed_weight_total",
        "Weight added to the pool from the exchange's own counts.",
        POOL,
    ),
    _g(
        "cryptolink_rest_pool_local_weight_in_window",
        "Weight in the pool's local window now (the whole count of a local budget; the fallback share's log of a "
        "shared one).",
        POOL,
    ),
    _g(
        "cryptolink_rest_pool_local_limit",
        "Limit of the pool's local window (the fallback share of a shared budget), weight per window.",
        POOL,
    ),
    # ---- connect gates
    _g("cryptolink_connect_gate_up", "0 while the exchange host is judged down (probing), else 1.", HOST),
    _g("cryptolink_connect_gate_down_seconds", "How long the host has been down, seconds (0 when up).", HOST),
    _g("cryptolink_connect_gate_consecutive_failures", "Failed socket opens since the last success.", HOST),
    _c("cryptolink_connect_gate_permits_total", "Connect permits handed out.", HOST),
    _c(
        "cryptolink_connect_gate_probes_total",
        "Connect permits handed out as probes while the host was down.",
        HOST,
    ),
    _c("cryptolink_connect_gate_outages_total", "Times the host was judged down.", HOST),
    _c("cryptolink_connect_gate_rate_waits_total", "Permits that waited for room in the rate window.", HOST),
    _g("cryptolink_connect_gate_waiting", "Connections waiting for a connect permit.", HOST),
    # ---- the instance and its status service
    MetricSpec(
        "cryptolink_instance_info",
        "info",
        "The instance's name and cryptolink version.",
        ("instance_id", "version"),
    ),
    _g(
        "cryptolink_healthy",
        "1 when every enabled entry runs, every connection is connected and every book live.",
        (),
    ),
    _g("cryptolink_start_time_seconds", "Wall time the instance started, seconds since the epoch.", ()),
    _g(
        "cryptolink_status_snapshot_age_seconds",
        "Age of the status snapshot this scrape was built from, seconds.",
        (),
    ),
    _g(
        "cryptolink_status_snapshot_timestamp_seconds",
        "Wall time the status snapshot was taken, seconds since the epoch.",
        (),
    ),
    _c(
        "cryptolink_status_push_dropped_total",
        "Status push messages dropped for WebSocket clients too slow to read.",
        (),
    ),
    _c(
        "cryptolink_status_events_evicted_total",
        "Connection events pushed out of the bounded event ring.",
        (),
    ),
    _g("cryptolink_status_websocket_clients", "WebSocket clients of /ws/status.", ()),
    _c(
        "cryptolink_status_snapshot_errors_total",
        "Status snapshot passes that failed (logged; the previous snapshot stays served).",
        (),
    ),
    _c(
        "cryptolink_status_push_clients_dropped_total",
        "WebSocket clients of /ws/status closed because a push could not be sent in time (not reading).",
        (),
    ),
    _c(
        "cryptolink_status_push_clients_refused_total",
        "WebSocket clients of /ws/status refused because the client limit was reached.",
        (),
    ),
    _c(
        "cryptolink_status_host_timeouts_total",
        "Host figure readings (CPU, memory, disk) that timed out; the previous figures were kept.",
        (),
    ),
    # ---- Redis status (status.redis_url)
    _c("cryptolink_status_redis_writes_total", "Status snapshots written to Redis.", ()),
    _c(
        "cryptolink_status_redis_write_errors_total",
        "Status writes to Redis that failed (unreachable, timeout, refused), the stop tombstone included.",
        (),
    ),
    _c(
        "cryptolink_status_redis_writes_skipped_total",
        "Status snapshots not written to Redis because the previous write was still in flight.",
        (),
    ),
    _g("cryptolink_status_redis_connected", "1 when the latest status write to Redis succeeded, else 0.", ()),
    _c(
        "cryptolink_status_redis_collisions_total",
        "Status writes that found another process's snapshot under this instance id.",
        (),
    ),
    _c("cryptolink_status_redis_reads_total", "Cluster status reads answered by Redis.", ()),
    _c(
        "cryptolink_status_redis_read_errors_total",
        "Cluster status reads from Redis that failed (answered with an error).",
        (),
    ),
    # ---- NATS sink (nats:) and scale-out worker (nats.cluster)
    _g("cryptolink_nats_connected", "1 while the NATS sink's link to NATS is up, else 0.", ()),
    _c("cryptolink_nats_accepted_total", "Events the NATS sink took from the bus into its buffer.", ()),
    _c("cryptolink_nats_published_total", "Sends to NATS (first sends and re-sends).", ()),
    _c("cryptolink_nats_acked_total", "Messages JetStream acknowledged (stored, or already stored).", ()),
    _c(
        "cryptolink_nats_duplicates_total",
        "Acknowledgements marked duplicate: the stream already held that Nats-Msg-Id (another publisher's copy).",
        (),
    ),
    _c("cryptolink_nats_retries_total", "Re-sends with the same message id (failed or unacknowledged).", ()),
    _c(
        "cryptolink_nats_lost_total",
        "Events that will never be published, by cause: overflow (buffer full), attempts (not acknowledged after "
        "max_attempts sends), rejected (too large), closed (at stop).",
        ("cause",),
    ),
    _g("cryptolink_nats_buffered", "Messages waiting in the NATS sink's buffer.", ()),
    _g("cryptolink_nats_in_flight", "Messages sent and awaiting JetStream's acknowledgement.", ()),
    _c("cryptolink_nats_disconnects_total", "Losses of the link to NATS.", ()),
    _c("cryptolink_nats_reconnects_total", "Recoveries of the link to NATS.", ()),
    _c(
        "cryptolink_nats_gaps_published_total",
        "Gap events (cause publish) the sink published after a loss.",
        (),
    ),
    _c(
        "cryptolink_nats_late_sends_total",
        "Events sent later than the stream's duplicate window after they were accepted (after a long outage; each "
        "counted once): JetStream can no longer recognize them as copies.",
        (),
    ),
    _c(
        "cryptolink_nats_snapshots_published_total",
        "Book snapshots published, by origin: engine ((re)sync), periodic, after_loss.",
        ("origin",),
    ),
    _g(
        "cryptolink_worker_state",
        "1 for the scale-out worker's state, 0 for the others: starting, active, fenced, stopping.",
        ("state",),
    ),
    _g("cryptolink_worker_shards_held", "Shard slots (leases) this worker holds.", ()),
    _g("cryptolink_worker_target", "This worker's fair share of the cluster's slots.", ()),
    _g("cryptolink_worker_slots", "Slots in the cluster: shards x redundancy.", ()),
    _g("cryptolink_worker_workers_seen", "Live workers (heartbeats) this worker sees, itself included.", ()),
    _g(
        "cryptolink_worker_config_mismatch",
        "Workers seen with another configuration fingerprint (they do not share the same shards).",
        (),
    ),
    _c(
        "cryptolink_worker_leases_total",
        "Lease operations by kind: acquired, renewed, lost (refused renewal or self-fence), released.",
        ("op",),
    ),
    _c(
        "cryptolink_worker_self_fences_total",
        "Leases dropped because their renewal could not be confirmed in time.",
        (),
    ),
    _c("cryptolink_worker_renew_failures_total", "Lease renewals that failed on NATS.", ()),
    _c("cryptolink_worker_stop_failures_total", "Shard stops the manager failed (logged).", ()),
    _g(
        "cryptolink_worker_id_conflict",
        "1 while another process writes heartbeats under this worker id (a copied worker_id), else 0.",
        (),
    ),
    _c(
        "cryptolink_worker_handovers_total",
        "Slots given away for another worker, by outcome: completed (the new holder started first), timeout.",
        ("outcome",),
    ),
    _g(
        "cryptolink_worker_last_renew_age_seconds",
        "Seconds since the last successful heartbeat or lease renewal (absent before the first).",
        (),
    ),
    _g("cryptolink_guards_open", "Trading guards open (manager.guard).", ()),
    _g("cryptolink_guards_safe", "Open trading guards that say it is safe to trade now.", ()),
    _c(
        "cryptolink_guard_halts_total", "Trading guard halts (safe -> not safe), every guard ever opened.", ()
    ),
    _c(
        "cryptolink_guard_resumes_total",
        "Trading guard resumes (not safe -> safe), every guard ever opened.",
        (),
    ),
    _c("cryptolink_guard_callback_errors_total", "Halt/resume callbacks that raised.", ()),
    _c(
        "cryptolink_guard_callbacks_dropped_total",
        "Async halt/resume callbacks not run because too many were running already.",
        (),
    ),
    _c(
        "cryptolink_metrics_render_errors_total",
        "Scrapes of /metrics that failed (logged with a traceback).",
        (),
    ),
    _g("cryptolink_host_cpu_usage_ratio", "System-wide CPU use since the previous snapshot, 0 to 1.", ()),
    _g("cryptolink_host_memory_used_bytes", "Host memory in use (total - available), bytes.", ()),
    _g("cryptolink_host_memory_total_bytes", "Host memory, bytes.", ()),
    _g("cryptolink_host_disk_used_bytes", "Used space of the output directory's filesystem, bytes.", ()),
    _g("cryptolink_host_disk_total_bytes", "Size of the output directory's filesystem, bytes.", ()),
)
"""Every family :class:`SnapshotCollector` exposes, in exposition order."""


class SnapshotSource(Protocol):
    """What the exporter reads (:class:`~cryptolink.status.service.StatusService` is one)."""

    @property
    def latest(self) -> StatusSnapshot:
        """The latest status snapshot."""
        ...

    @property
    def clients(self) -> int:
        """Connected ``/ws/status`` clients."""
        ...


class PublisherSource(Protocol):
    """A Redis status publisher (:class:`~cryptolink.status.cluster.RedisStatusPublisher`)."""

    def stats(self) -> PublisherStats:
        """Its counters."""
        ...


class ReaderSource(Protocol):
    """A Redis cluster status reader (:class:`~cryptolink.status.cluster.ClusterStatus`)."""

    def stats(self) -> ReaderStats:
        """Its counters."""
        ...


_SPEC_BY_NAME: Mapping[str, MetricSpec] = {s.name: s for s in SPECS}


def _split_key(key: str) -> tuple[str, str]:
    """``"binance https://api.binance.com"`` -> ``("binance", "https://api.binance.com")``."""
    exchange, _, endpoint = key.partition(" ")
    return exchange, endpoint


class _Families:
    """The families of one scrape, keyed by name, filled in any order and yielded in :data:`SPECS` order."""

    def __init__(self, per_symbol: bool) -> None:
        self.per_symbol = per_symbol
        self._order: list[Metric] = []
        self._simple: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}
        self._hist: dict[str, HistogramMetricFamily] = {}
        self._info: dict[str, InfoMetricFamily] = {}
        self._arity: dict[str, int] = {}
        for spec in SPECS:
            if spec.per_symbol_only and not per_symbol:
                continue
            labels = spec.label_names(per_symbol)
            self._arity[spec.name] = len(labels)
            fam: Metric
            if spec.kind == "counter":
                fam = self._simple[spec.name] = CounterMetricFamily(spec.name, spec.help, labels=labels)
            elif spec.kind == "gauge":
                fam = self._simple[spec.name] = GaugeMetricFamily(spec.name, spec.help, labels=labels)
            elif spec.kind == "histogram":
                fam = self._hist[spec.name] = HistogramMetricFamily(spec.name, spec.help, labels=labels)
            else:  # the info's labels are its value
                fam = self._info[spec.name] = InfoMetricFamily(spec.name.removesuffix("_info"), spec.help)
            self._order.append(fam)

    def _values(self, name: str, labels: Iterable[str]) -> list[str]:
        values = list(labels)
        if len(values) != self._arity[name]:  # prometheus_client would silently drop the extra values
            raise ValueError(f"{name}: {len(values)} label values for {self._arity[name]} labels")
        return values

    def add(self, name: str, labels: Iterable[str], value: float) -> None:
        """One sample of counter or gauge ``name`` (label values in the family's label order).

        Raises:
            ValueError: the number of label values is not the family's number of labels.
        """
        self._simple[name].add_metric(self._values(name, labels), value)

    def histogram(
        self,
        name: str,
        labels: Iterable[str],
        cumulative: tuple[int, ...],
        count: int,
        sum_ms: float,
        bounds_ms: tuple[float, ...] = LATENCY_BUCKETS_MS,
    ) -> None:
        """One histogram sample from cumulative ms-bucket counts (at or below each of ``bounds_ms``, ms); skipped
        when the counts do not match the bounds (a quality snapshot built without histograms)."""
        if len(cumulative) != len(bounds_ms):
            return
        buckets = [(str(bound / 1000.0), float(n)) for bound, n in zip(bounds_ms, cumulative, strict=True)]
        buckets.append(("+Inf", float(count)))
        self._hist[name].add_metric(self._values(name, labels), buckets, sum_ms / 1000.0)

    def info(self, name: str, labels: Iterable[str]) -> None:
        """The info sample of ``name`` (its label values)."""
        names = _SPEC_BY_NAME[name].labels
        self._info[name].add_metric([], dict(zip(names, labels, strict=True)))

    def __iter__(self) -> Iterator[Metric]:
        return iter(self._order)


def _connection(out: _Families, fs: FeedStats, cs: ConnectionStats) -> None:
    base = (cs.exchange, fs.market, fs.name, cs.connection_id)
    for state in ConnectionState:
        out.add("cryptolink_connection_state", (*base, state.value), 1.0 if cs.state is state else 0.0)
    out.add("cryptolink_connection_up", base, 1.0 if cs.state is ConnectionState.CONNECTED else 0.0)
    plain = {
        "cryptolink_messages_received_total": cs.messages,
        "cryptolink_received_bytes_total": cs.bytes,
        "cryptolink_market_events_total": cs.market_events,
        "cryptolink_ignored_frames_total": cs.ignored_frames,
        "cryptolink_oversized_frames_total": cs.oversized_frames,
        "cryptolink_reconnect_attempts_total": cs.reconnect_attempts,
        "cryptolink_reconnect_successes_total": cs.successful_reconnects,
        "cryptolink_connect_failures_total": cs.failed_connects,
        "cryptolink_disconnections_total": cs.disconnections,
        "cryptolink_unexpected_disconnections_total": cs.unexpected_disconnections,
        "cryptolink_stall_detections_total": cs.stall_detections,
        "cryptolink_rotations_total": cs.rotations,
        "cryptolink_connected_seconds_total": cs.uptime_s,
        "cryptolink_disconnected_seconds_total": cs.downtime_s,
        "cryptolink_quality_score": cs.quality.score,
        "cryptolink_uptime_ratio": cs.quality.uptime_pct / 100.0,
        "cryptolink_stale_subscriptions": cs.subscriptions_stale,
    }
    for name, value in plain.items():
        out.add(name, base, float(value))
    errors = (
        cs.decode_errors,
        cs.adapter_errors,
        cs.inflate_refused,
        cs.exchange_errors,
        cs.callback_errors,
        cs.transport_errors,
        cs.book_errors,
    )
    for kind, n in zip(ERROR_KINDS, errors, strict=True):
        out.add("cryptolink_errors_total", (*base, kind), float(n))
    if cs.last_message_age_s is not None:
        out.add("cryptolink_last_message_age_seconds", base, cs.last_message_age_s)
    if cs.connected_since_ns is not None:
        out.add("cryptolink_session_start_time_seconds", base, cs.connected_since_ns / 1e9)
    for registry_state, n in (
        ("confirmed", cs.subscriptions_confirmed),
        ("pending", cs.subscriptions_pending),
        ("rejected", cs.subscriptions_rejected),
    ):
        out.add("cryptolink_subscriptions", (*base, registry_state), float(n))
    if out.per_symbol:
        for st in cs.streams:
            sub = (*base, st.channel, st.symbol)
            out.add("cryptolink_subscription_stale", sub, 1.0 if st.stale else 0.0)
            if st.data_age_s is not None:
                out.add("cryptolink_data_age_seconds", sub, st.data_age_s)
    else:
        ages = [st.data_age_s for st in cs.streams if st.data_age_s is not None]
        if ages:
            out.add("cryptolink_data_age_seconds", base, max(ages))
    q = cs.quality
    out.histogram("cryptolink_ping_rtt_seconds", base, q.rtt_buckets, q.rtt_count, q.rtt_sum_ms)
    out.histogram("cryptolink_exchange_lag_seconds", base, q.lag_buckets, q.lag_count, q.lag_sum_ms)


_BOOK_COUNTERS = (
    ("cryptolink_book_gaps_total", "gaps"),
    ("cryptolink_book_checksum_failures_total", "checksum_failures"),
    ("cryptolink_book_messages_dropped_total", "dropped"),
    ("cryptolink_book_id_restarts_total", "id_restarts"),
)


_RESYNC = "resyncs:"
"""Prefix of the per-cause resync counters in a book's :class:`MonotonicSum` counts."""


def _book_counts(b: BookHealth) -> dict[str, int]:
    counts = {name: int(getattr(b, attr)) for name, attr in _BOOK_COUNTERS}
    for cause, n in b.resyncs_by_cause.items():
        counts[_RESYNC + cause] = int(n)
    return counts


def _books(out: _Families, fs: FeedStats, sums: MonotonicSums) -> None:
    base = (fs.exchange, fs.market, fs.name)
    out.add("cryptolink_books", base, float(len(fs.books)))
    out.add("cryptolink_books_live", base, float(sum(1 for b in fs.books if b.state == "live")))
    causes = [c.value for c in ResyncCause]
    if out.per_symbol:
        for b in fs.books:
            out.add("cryptolink_book_live", (*base, b.symbol), 1.0 if b.state == "live" else 0.0)
            for name, attr in _BOOK_COUNTERS:
                out.add(name, (*base, b.symbol), float(getattr(b, attr)))
            extra = [c for c in b.resyncs_by_cause if c not in causes]
            for cause in causes + extra:
                n = b.resyncs_by_cause.get(cause, 0)
                out.add("cryptolink_book_resyncs_total", (*base, cause, b.symbol), float(n))
        return
    # summed per feed: the counts of books that went away stay in (the sums never go down)
    totals = sums.update(base, ((b.symbol, _book_counts(b)) for b in fs.books))
    for name, _ in _BOOK_COUNTERS:
        out.add(name, base, float(totals.get(name, 0)))
    by_cause = dict.fromkeys(causes, 0)
    for key, n in totals.items():
        if key.startswith(_RESYNC):
            by_cause[key.removeprefix(_RESYNC)] = n
    for cause, n in by_cause.items():
        out.add("cryptolink_book_resyncs_total", (*base, cause), float(n))


def _feed(out: _Families, fs: FeedStats, book_sums: MonotonicSums) -> None:
    base = (fs.exchange, fs.market, fs.name)
    _books(out, fs, book_sums)
    streams = dict.fromkeys((c.value for c in Channel), 0)
    streams.update(fs.gaps_by_stream)
    for stream, n in streams.items():
        out.add("cryptolink_gaps_total", (*base, stream), float(n))
    plain = {
        "cryptolink_gaps_recovered_total": fs.gaps_recovered,
        "cryptolink_published_events_total": fs.published,
        "cryptolink_duplicates_dropped_total": fs.duplicates_dropped,
        "cryptolink_stale_tickers_dropped_total": fs.stale_dropped,
        "cryptolink_out_of_order_trades_total": fs.out_of_order,
        "cryptolink_id_regressions_total": fs.id_regressions,
        "cryptolink_backfilled_trades_total": fs.backfilled_trades,
        "cryptolink_backfill_requests_total": fs.backfill_requests,
        "cryptolink_backfill_failures_total": fs.backfill_failures,
        "cryptolink_backfills_running": fs.backfills_running,
        "cryptolink_trades_held": fs.trades_held,
        "cryptolink_book_snapshots_fetched_total": fs.snapshots_fetched,
        "cryptolink_book_snapshot_errors_total": fs.snapshot_errors,
        "cryptolink_book_snapshot_rate_limited_total": fs.rate_limited,
        "cryptolink_unknown_symbols": len(fs.unknown_symbols),
        "cryptolink_instruments_loaded": 1 if fs.instruments_loaded else 0,
    }
    for name, value in plain.items():
        out.add(name, base, float(value))
    for event, n in sorted(fs.adapter_counters.items()):
        out.add("cryptolink_adapter_events_total", (*base, event), float(n))
    for cs in fs.connections:
        _connection(out, fs, cs)


_BUS_COUNTERS = (
    ("cryptolink_bus_delivered_total", "delivered"),
    ("cryptolink_bus_dropped_total", "dropped"),
    ("cryptolink_bus_callback_errors_total", "errors"),
)
_BUS_GAUGES = (("cryptolink_bus_queued", "queued"), ("cryptolink_bus_queue_capacity", "maxsize"))


def _bus(out: _Families, bus: BusStats, sums: MonotonicSums) -> None:
    out.add("cryptolink_bus_published_total", (), float(bus.published))
    out.add("cryptolink_bus_unrouted_total", (), float(bus.unrouted))
    by_name: dict[str, list[ConsumerStats]] = {}  # consumers sharing a name: one series per name
    for c in bus.consumers:
        by_name.setdefault(c.name, []).append(c)
    for consumer, members in sorted(by_name.items()):
        counts = ((c.consumer_id, {a: int(getattr(c, a)) for _, a in _BUS_COUNTERS}) for c in members)
        totals = sums.update(consumer, counts)  # a closed consumer's counts stay in: never goes down
        for name, attr in _BUS_COUNTERS:
            out.add(name, (consumer,), float(totals.get(attr, 0)))
        for name, attr in _BUS_GAUGES:
            out.add(name, (consumer,), float(sum(getattr(c, attr) for c in members)))
    sums.keep_only(by_name)


def _rest(out: _Families, rest: Iterable[RestStats]) -> None:
    for r in rest:
        key = _split_key(r.key)
        out.add("cryptolink_rest_requests_total", key, float(r.requests))
        out.add("cryptolink_rest_weight_used_total", key, float(r.weight))
        out.add("cryptolink_rest_errors_total", key, float(r.errors))
        out.add("cryptolink_rest_rate_limited_total", key, float(r.rate_limited))
        if r.budget is not None:
            out.add("cryptolink_rest_weight_budget", key, float(r.budget))
        if r.window_s is not None:
            out.add("cryptolink_rest_window_seconds", key, r.window_s)
        out.add("cryptolink_rest_weight_in_window", key, float(r.in_window))
        out.add("cryptolink_rest_paused_seconds", key, r.paused_for_s)
        out.add("cryptolink_rest_waiting_requests", key, float(r.waiting))
        out.add("cryptolink_rest_refused_total", key, float(r.refused))
        out.add("cryptolink_rest_background_requests_total", key, float(r.background))


REST_ERROR_KINDS = (
    "network",
    "timeout",
    "rate_limit",
    "unavailable",
    "maintenance",
    "budget",
    "bad_response",
    "exchange",
    "auth",
    "bad_request",
    "other",
)
"""Values of the ``kind`` label of ``cryptolink_rest_member_errors_total`` (the REST manager's error kinds,
always present; a kind outside this list is added when it occurs)."""

MEMBER_STATES: tuple[str, ...] = tuple(s.value for s in MemberState)
"""Values of the ``state`` label of ``cryptolink_rest_member_state``."""

BUDGET_MODES: tuple[str, ...] = get_args(Mode)
"""Values of the ``mode`` label of ``cryptolink_rest_budget_mode``."""

_ERR = "errors:"
_BUCKET = "latency_bucket:"
_CHOSEN = "chosen:"


def _state_set(
    out: _Families, name: str, labels: tuple[str, ...], vocabulary: Iterable[str], current: str
) -> None:
    """1 for ``current``, 0 for every other value of ``vocabulary`` (``current`` added when outside it)."""
    values = list(vocabulary)
    if current not in values:
        values.append(current)
    for v in values:
        out.add(name, (*labels, v), 1.0 if v == current else 0.0)


def _member_counts(m: MemberStats) -> dict[str, int]:
    counts = {
        "calls": m.calls,
        "successes": m.successes,
        "http_requests": m.http_requests,
        "http_429": m.http_429,
        "http_418": m.http_418,
        "checks": m.checks,
        "check_failures": m.check_failures,
        "transitions": m.transitions,
        "latency_count": m.latency_count,
        "latency_sum_us": round(m.latency_sum_ms * 1000.0),  # integer µs: the sums add up exactly
    }
    for kind, n in m.errors.items():
        counts[_ERR + kind] = n
    for i, n in enumerate(m.latency_counts):
        counts[f"{_BUCKET}{i}"] = n
    return counts


def _members(out: _Families, members: Iterable[MemberStats], sums: MonotonicSums) -> None:
    present = []
    for m in members:
        base = (m.name, m.exchange)
        present.append(base)
        _state_set(out, "cryptolink_rest_member_state", base, MEMBER_STATES, m.state)
        gauges = {
            "cryptolink_rest_member_state_seconds": m.since_s,
            "cryptolink_rest_member_weight": float(m.weight),
            "cryptolink_rest_member_effective_weight": m.effective_weight,
            "cryptolink_rest_member_error_ratio": m.error_rate,
            "cryptolink_rest_member_consecutive_failures": float(m.consecutive_failures),
            "cryptolink_rest_member_in_flight": float(m.in_flight),
        }
        for name, value in gauges.items():
            out.add(name, base, value)
        if m.latency_ms is not None:
            out.add("cryptolink_rest_member_latency_smoothed_seconds", base, m.latency_ms / 1000.0)
        # a member rebuilt by a reload starts its counters again: its series keep the old counts (never go down)
        t = sums.update(base, [(base, _member_counts(m))])
        plain = {
            "cryptolink_rest_member_calls_total": "calls",
            "cryptolink_rest_member_successes_total": "successes",
            "cryptolink_rest_member_http_requests_total": "http_requests",
            "cryptolink_rest_member_health_checks_total": "checks",
            "cryptolink_rest_member_health_check_failures_total": "check_failures",
            "cryptolink_rest_member_transitions_total": "transitions",
        }
        for name, key in plain.items():
            out.add(name, base, float(t.get(key, 0)))
        kinds = list(REST_ERROR_KINDS)
        kinds += sorted(k.removeprefix(_ERR) for k in t if k.startswith(_ERR) and k[len(_ERR) :] not in kinds)
        for kind in kinds:
            out.add("cryptolink_rest_member_errors_total", (*base, kind), float(t.get(_ERR + kind, 0)))
        for status, key in (("429", "http_429"), ("418", "http_418")):
            out.add("cryptolink_rest_member_rate_limit_answers_total", (*base, status), float(t.get(key, 0)))
        cumulative = tuple(t.get(f"{_BUCKET}{i}", 0) for i in range(len(m.latency_counts)))
        out.histogram(
            "cryptolink_rest_member_latency_seconds",
            base,
            cumulative,
            t.get("latency_count", 0),
            t.get("latency_sum_us", 0) / 1000.0,
            bounds_ms=m.latency_buckets_ms,
        )
    sums.keep_only(present)


def _groups(out: _Families, groups: Iterable[GroupStats], sums: MonotonicSums) -> None:
    present = []
    for g in groups:
        base = (g.name,)
        present.append(g.name)
        _state_set(out, "cryptolink_rest_group_strategy", base, STRATEGIES, g.strategy)
        counts = {
            "calls": g.calls,
            "successes": g.successes,
            "failures": g.failures,
            "retries": g.retries,
            "unavailable": g.unavailable,
        }
        counts.update({_CHOSEN + member: n for member, n in g.chosen.items()})
        t = sums.update(g.name, [(g.name, counts)])
        for key in ("calls", "successes", "failures", "retries", "unavailable"):
            out.add(f"cryptolink_rest_group_{key}_total", base, float(t.get(key, 0)))
        chosen = dict.fromkeys(g.members, 0)  # every member of the group, 0 until it is picked
        chosen.update({k.removeprefix(_CHOSEN): n for k, n in t.items() if k.startswith(_CHOSEN)})
        for member, n in chosen.items():
            out.add("cryptolink_rest_group_choices_total", (g.name, member), float(n))
    sums.keep_only(present)


_BUDGET_COUNTERS = (
    ("cryptolink_rest_budget_grants_total", "grants"),
    ("cryptolink_rest_budget_attempts_total", "attempts"),
    ("cryptolink_rest_budget_timeouts_total", "timeouts"),
    ("cryptolink_rest_budget_rejected_total", "rejected"),
    ("cryptolink_rest_budget_fallbacks_total", "fallbacks"),
    ("cryptolink_rest_budget_rejoins_total", "rejoins"),
    ("cryptolink_rest_budget_redis_errors_total", "redis_errors"),
    ("cryptolink_rest_budget_pauses_total", "pauses"),
    ("cryptolink_rest_budget_bans_total", "bans"),
    ("cryptolink_rest_budget_header_corrections_total", "header_corrections"),
    ("cryptolink_rest_budget_garbled_headers_total", "garbled_headers"),
)
_REFUSED = (("full", "refused_full"), ("paused", "refused_paused"), ("banned", "refused_banned"))
_ANSWERS = (("429", "answers_429"), ("418", "answers_418"), ("other", "answers_ban_other"))
_POOL_COUNTERS = (
    ("cryptolink_rest_pool_requests_total", "requests"),
    ("cryptolink_rest_pool_weight_total", "weight"),
    ("cryptolink_rest_pool_observed_weight_total", "observed"),
)


def _budgets(
    out: _Families, budgets: Iterable[BudgetStats], sums: MonotonicSums, pool_sums: MonotonicSums
) -> None:
    present: list[tuple[str, str]] = []
    pools_present: list[tuple[str, str, str]] = []
    for b in budgets:
        base = (b.exchange, b.scope)
        present.append(base)
        lim = b.limiter
        _state_set(out, "cryptolink_rest_budget_mode", base, BUDGET_MODES, lim.mode)
        out.add("cryptolink_rest_budget_waiting", base, float(lim.waiting))
        out.add("cryptolink_rest_budget_paused_seconds", base, b.paused_for_s)
        counts = {
            "grants": lim.grants,
            "attempts": lim.attempts,
            "timeouts": lim.timeouts,
            "rejected": lim.rejected,
            "fallbacks": lim.fallbacks,
            "rejoins": lim.rejoins,
            "redis_errors": lim.redis_errors,
            "pauses": b.pauses,
            "bans": b.bans,
            "header_corrections": b.header_corrections,
            "garbled_headers": b.garbled_headers,
            "refused_full": lim.refused_full,
            "refused_paused": lim.refused_paused,
            "refused_banned": lim.refused_banned,
            "answers_429": b.answers_429,
            "answers_418": b.answers_418,
            "answers_ban_other": b.answers_ban_other,
        }
        t = sums.update(base, [(base, counts)])
        for name, key in _BUDGET_COUNTERS:
            out.add(name, base, float(t.get(key, 0)))
        for reason, key in _REFUSED:
            out.add("cryptolink_rest_budget_refused_attempts_total", (*base, reason), float(t.get(key, 0)))
        for status, key in _ANSWERS:
            out.add("cryptolink_rest_budget_rate_limit_answers_total", (*base, status), float(t.get(key, 0)))
        for p in lim.pools:
            labels = (*base, documents.pool_key(b.exchange, b.scope, p.name))
            pools_present.append(labels)
            out.add("cryptolink_rest_pool_limit", labels, float(p.limit))
            out.add("cryptolink_rest_pool_window_seconds", labels, p.window_s)
            out.add("cryptolink_rest_pool_local_weight_in_window", labels, float(p.local_in_window))
            out.add("cryptolink_rest_pool_local_limit", labels, float(p.local_limit))
            pt = pool_sums.update(labels, [(labels, {k: int(getattr(p, k)) for _, k in _POOL_COUNTERS})])
            for name, key in _POOL_COUNTERS:
                out.add(name, labels, float(pt.get(key, 0)))
    sums.keep_only(present)
    pool_sums.keep_only(pools_present)


def _gates(out: _Families, gates: Iterable[GateStats]) -> None:
    for g in gates:
        key = _split_key(g.key)
        out.add("cryptolink_connect_gate_up", key, 1.0 if g.up else 0.0)
        out.add("cryptolink_connect_gate_down_seconds", key, g.down_for_s or 0.0)
        out.add("cryptolink_connect_gate_consecutive_failures", key, float(g.consecutive_failures))
        out.add("cryptolink_connect_gate_permits_total", key, float(g.granted))
        out.add("cryptolink_connect_gate_probes_total", key, float(g.probes))
        out.add("cryptolink_connect_gate_outages_total", key, float(g.outages))
        out.add("cryptolink_connect_gate_rate_waits_total", key, float(g.rate_waits))
        out.add("cryptolink_connect_gate_waiting", key, float(g.waiting))


def _redis(out: _Families, publisher: PublisherSource | None, reader: ReaderSource | None) -> None:
    if publisher is not None:
        p = publisher.stats()
        out.add("cryptolink_status_redis_writes_total", (), float(p.writes))
        out.add("cryptolink_status_redis_write_errors_total", (), float(p.errors))
        out.add("cryptolink_status_redis_writes_skipped_total", (), float(p.skipped))
        out.add("cryptolink_status_redis_connected", (), 1.0 if p.connected else 0.0)
        out.add("cryptolink_status_redis_collisions_total", (), float(p.collisions))
    if reader is not None:
        r = reader.stats()
        out.add("cryptolink_status_redis_reads_total", (), float(r.reads))
        out.add("cryptolink_status_redis_read_errors_total", (), float(r.errors))


WORKER_STATES = ("starting", "active", "fenced", "stopping")
"""Values of the ``state`` label of ``cryptolink_worker_state``."""


def _nats(out: _Families, snap: StatusSnapshot) -> None:
    n = snap.nats
    if n is not None:
        out.add("cryptolink_nats_connected", (), 1.0 if n.connected else 0.0)
        out.add("cryptolink_nats_accepted_total", (), float(n.accepted))
        out.add("cryptolink_nats_published_total", (), float(n.published))
        out.add("cryptolink_nats_acked_total", (), float(n.acked))
        out.add("cryptolink_nats_duplicates_total", (), float(n.duplicates))
        out.add("cryptolink_nats_retries_total", (), float(n.retries))
        for cause, count in sorted(n.lost_by_cause.items()):
            out.add("cryptolink_nats_lost_total", (cause,), float(count))
        out.add("cryptolink_nats_buffered", (), float(n.buffered))
        out.add("cryptolink_nats_in_flight", (), float(n.in_flight))
        out.add("cryptolink_nats_disconnects_total", (), float(n.disconnects))
        out.add("cryptolink_nats_reconnects_total", (), float(n.reconnects))
        out.add("cryptolink_nats_gaps_published_total", (), float(n.gaps_published))
        out.add("cryptolink_nats_late_sends_total", (), float(n.late_sends))
        for origin, count in sorted(n.snapshots_published.items()):
            out.add("cryptolink_nats_snapshots_published_total", (origin,), float(count))
    w = snap.worker
    if w is not None:
        _state_set(out, "cryptolink_worker_state", (), WORKER_STATES, w.state)
        out.add("cryptolink_worker_shards_held", (), float(len(w.held)))
        out.add("cryptolink_worker_target", (), float(w.target))
        out.add("cryptolink_worker_slots", (), float(w.slots))
        out.add("cryptolink_worker_workers_seen", (), float(len(w.workers_seen)))
        out.add("cryptolink_worker_config_mismatch", (), float(len(w.config_mismatch)))
        for op, count in (
            ("acquired", w.leases_acquired),
            ("renewed", w.leases_renewed),
            ("lost", w.leases_lost),
            ("released", w.leases_released),
        ):
            out.add("cryptolink_worker_leases_total", (op,), float(count))
        out.add("cryptolink_worker_self_fences_total", (), float(w.self_fences))
        out.add("cryptolink_worker_renew_failures_total", (), float(w.renew_failures))
        out.add("cryptolink_worker_stop_failures_total", (), float(w.stop_failures))
        out.add("cryptolink_worker_id_conflict", (), 1.0 if w.id_conflict else 0.0)
        out.add("cryptolink_worker_handovers_total", ("completed",), float(w.handovers_completed))
        out.add("cryptolink_worker_handovers_total", ("timeout",), float(w.handover_timeouts))
        if w.last_renew_age_s is not None:
            out.add("cryptolink_worker_last_renew_age_seconds", (), w.last_renew_age_s)


def _instance(out: _Families, snap: StatusSnapshot, now_ns: int, clients: int, render_errors: int) -> None:
    out.info("cryptolink_instance_info", (snap.instance_id, __version__))
    healthy, _ = documents.health(snap)
    running = {fs.name for fs in snap.stats.feeds}
    for name in sorted(running | set(snap.enabled)):
        out.add("cryptolink_feed_running", (name,), 1.0 if name in running else 0.0)
    h = snap.host
    plain = {
        "cryptolink_healthy": 1.0 if healthy else 0.0,
        "cryptolink_start_time_seconds": snap.started_ns / 1e9,
        "cryptolink_status_snapshot_age_seconds": max(0.0, (now_ns - snap.taken_ns) / 1e9),
        "cryptolink_status_snapshot_timestamp_seconds": snap.taken_ns / 1e9,
        "cryptolink_status_push_dropped_total": float(snap.push_dropped),
        "cryptolink_status_events_evicted_total": float(snap.events_evicted),
        "cryptolink_status_websocket_clients": float(clients),
        # fields added to StatusSnapshot later than the others: read with a default
        "cryptolink_status_snapshot_errors_total": float(getattr(snap, "snapshot_errors", 0)),
        "cryptolink_status_push_clients_dropped_total": float(getattr(snap, "push_clients_dropped", 0)),
        "cryptolink_status_push_clients_refused_total": float(getattr(snap, "push_clients_refused", 0)),
        "cryptolink_status_host_timeouts_total": float(getattr(snap, "host_timeouts", 0)),
        "cryptolink_metrics_render_errors_total": float(render_errors),
        "cryptolink_host_cpu_usage_ratio": h.cpu_percent / 100.0,
        "cryptolink_host_memory_used_bytes": float(h.memory_used),
        "cryptolink_host_memory_total_bytes": float(h.memory_total),
        "cryptolink_host_disk_used_bytes": float(h.disk_used),
        "cryptolink_host_disk_total_bytes": float(h.disk_total),
    }
    g = snap.stats.guards
    if g is not None:
        plain["cryptolink_guards_open"] = float(g.guards)
        plain["cryptolink_guards_safe"] = float(g.safe)
        plain["cryptolink_guard_halts_total"] = float(g.halts)
        plain["cryptolink_guard_resumes_total"] = float(g.resumes)
        plain["cryptolink_guard_callback_errors_total"] = float(g.callback_errors)
        plain["cryptolink_guard_callbacks_dropped_total"] = float(g.callbacks_dropped)
    for name, value in plain.items():
        out.add(name, (), value)


class SnapshotCollector:
    """A prometheus_client collector building every family of :data:`SPECS` from ``service.latest``.

    Stateful: it keeps the retired totals of the summed counters (see the module docstring), bounded by the
    feeds and consumer names present; collections are serialized by a lock.

    Args:
        service: the status service (only its latest snapshot and its WebSocket client count are read).
        per_symbol: add the ``symbol``/``channel`` labels (see the module docstring on cardinality).
        clock: wall clock for the snapshot's age.
        redis: the Redis status publisher whose counters are exported (``None``: no samples).
        cluster: the Redis cluster status reader whose counters are exported (``None``: no samples).
    """

    def __init__(
        self,
        service: SnapshotSource,
        *,
        per_symbol: bool = False,
        clock: Clock | None = None,
        redis: PublisherSource | None = None,
        cluster: ReaderSource | None = None,
    ) -> None:
        self.service = service
        self.per_symbol = per_symbol
        self.redis = redis
        self.cluster = cluster
        self._clock: Clock = clock or SystemClock()
        self._book_sums = MonotonicSums()
        self._bus_sums = MonotonicSums()
        self._member_sums = MonotonicSums()
        self._group_sums = MonotonicSums()
        self._budget_sums = MonotonicSums()
        self._pool_sums = MonotonicSums()
        self._lock = threading.Lock()
        self.render_errors = 0
        """Failed scrapes (set by :class:`MetricsExporter`)."""

    def collect(self) -> Iterable[Metric]:
        """The families of the latest snapshot (:data:`SPECS` order; families with no sample keep their
        HELP and TYPE)."""
        with self._lock:
            snap = self.service.latest
            out = _Families(self.per_symbol)
            feeds = sorted(snap.stats.feeds, key=lambda f: f.name)
            for fs in feeds:
                _feed(out, fs, self._book_sums)
            self._book_sums.keep_only((fs.exchange, fs.market, fs.name) for fs in feeds)
            _bus(out, snap.bus, self._bus_sums)
            _rest(out, snap.stats.rest)
            rest = snap.rest
            _members(out, rest.members if rest is not None else (), self._member_sums)
            _groups(out, rest.groups if rest is not None else (), self._group_sums)
            if rest is not None:
                out.add("cryptolink_rest_reloads_total", (), float(rest.reloads))
            _budgets(out, snap.rest_budgets, self._budget_sums, self._pool_sums)
            _gates(out, snap.stats.gates)
            _redis(out, self.redis, self.cluster)
            _nats(out, snap)
            _instance(out, snap, self._clock.time_ns(), self.service.clients, self.render_errors)
            return list(out)


class MetricsExporter:
    """What ``/metrics`` serves: the Prometheus text exposition of the latest status snapshot.

    Args:
        service: the status service.
        per_symbol: add per-symbol labels (``symbol``, ``channel``); off by default (bounded cardinality).
        clock: wall clock for ``cryptolink_status_snapshot_age_seconds`` (default the system clock).
        process: include prometheus_client's ``process_*`` metrics (CPU seconds, memory, open files).
        redis: the Redis status publisher (``StatusSurface.redis_publisher``): its writes, errors, skips,
            collisions and connected flag become ``cryptolink_status_redis_*``.
        cluster: the Redis cluster status reader: its reads and read errors.
    """

    def __init__(
        self,
        service: SnapshotSource,
        *,
        per_symbol: bool = False,
        clock: Clock | None = None,
        process: bool = True,
        redis: PublisherSource | None = None,
        cluster: ReaderSource | None = None,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.collector = SnapshotCollector(
            service, per_symbol=per_symbol, clock=clock, redis=redis, cluster=cluster
        )
        self.registry.register(self.collector)
        if process:
            ProcessCollector(registry=self.registry)

    def render(self) -> tuple[bytes, str]:
        """``(body, content type)``: the Prometheus text exposition (``CONTENT_TYPE_LATEST`` of prometheus_client).

        Raises:
            Exception: whatever building the families raised (logged and counted in
                ``cryptolink_metrics_render_errors_total``, visible on the next successful scrape).
        """
        try:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        except Exception:
            self.collector.render_errors += 1
            log.exception("rendering /metrics failed")
            raise
