"""``ManagedConnection``: one logical WebSocket connection that stays up for months, for any exchange adapter.

One instance serves one :class:`~cryptolink.exchanges.base.ConnectionSpec`. It owns:

- a supervisor task (this module): connect, restore subscriptions, wait for the session to end, reconnect with
  :mod:`~cryptolink.engine.backoff` (full jitter, cap 30 s; reset once a session delivered market data for
  ``reset_after_s``), ``failed`` after ``max_attempts``; every socket it opens first takes a permit from the
  exchange host's :mod:`~cryptolink.engine.gate` (documented connection-rate limit; one probe at a time while
  the host is down, every waiting connection released as soon as a probe succeeds);
- one reader task per open socket (*session*, :mod:`~cryptolink.engine.session`): ``adapter.decode`` each
  frame; market data goes to the data-idle :mod:`~cryptolink.engine.watchdog` and to ``on_data``; control
  signals (acks, rejections, pongs, replies, notices, errors, heartbeats) are handled there; a malformed frame
  is counted and skipped, an oversized frame resets the session, an exception in ``on_data`` is caught and
  counted (``callback_errors``);
- a tick task (every ``EngineConfig.tick_s`` of the injected clock, :mod:`~cryptolink.engine.timers`) for
  keepalive, watchdogs, ack timeouts, backoff reset, rotation deadlines, quality and the sampled
  ``data_received`` event;
- make-before-break rotation (:mod:`~cryptolink.engine.rotation`) before ``ConnectionPolicy.max_lifetime_s``
  (Binance 24 h: docs/protocols/binance.md "Limits") or on ``ServerNotice(rotate=True)``.

Duplicate contract: during a rotation's overlap both sockets deliver to ``on_data``, and after a reconnect the
exchange may resend recent data. The consumer (the feed) drops duplicates by ``sequence`` / trade id; this
class never deduplicates.

Outbound frames go through a per-socket token bucket (``ConnectionPolicy.max_outbound_per_s``: Binance spot
5/s, USDⓈ-M 10/s) and subscribe/unsubscribe requests through an hourly quota
(``max_subscribe_requests_per_hour``: OKX 480). All timing uses the injected :class:`~cryptolink.clock.Clock`,
so everything runs in fake time in tests.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from cryptolink.clock import Clock
from cryptolink.engine.backoff import Backoff, BackoffPolicy
from cryptolink.engine.errors import ConfigError, IllegalTransition, TransportError
from cryptolink.engine.events import ConnectionEvent, ConnectionEventType, EventLog, Severity
from cryptolink.engine.gate import ConnectGate
from cryptolink.engine.quality import ConnectionQuality, QualityConfig, QualityTracker, StreamHealth
from cryptolink.engine.rotation import request_rotation, schedule_rotation
from cryptolink.engine.session import (
    ROTATED,
    STOPPED,
    MarketData,
    Session,
    close_session,
    open_session,
    send_everywhere,
    send_pending,
    send_requests,
)
from cryptolink.engine.state import ACTIVE_STATES, ConnectionState, StateMachine
from cryptolink.engine.stats import ConnectionStats
from cryptolink.engine.subscriptions import SubscriptionRegistry, peek_request_id, take_request_ids
from cryptolink.engine.timers import tick_loop
from cryptolink.engine.transport import Transport, describe_error
from cryptolink.engine.watchdog import CONNECTION_KEY, Watchdog, WatchdogConfig
from cryptolink.exchanges.base import ConnectionSpec, ExchangeAdapter
from cryptolink.models import Channel, Subscription

__all__ = ["DataCallback", "EngineConfig", "EventCallback", "ManagedConnection", "MarketData"]

_log = logging.getLogger(__name__)

DataCallback = Callable[["ManagedConnection", list[MarketData]], None]
EventCallback = Callable[[ConnectionEvent], None]

_E = ConnectionEventType
_S = ConnectionState


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Tunables of :class:`ManagedConnection` (seconds unless noted).

    Attributes:
        backoff: reconnect schedule.
        watchdog: data-idle thresholds.
        quality: quality windows and thresholds (score 0-100).
        ack_timeout_s: a subscribe without ack after this long is reported and re-sent once; after a second
            timeout it is recorded as rejected (code ``ack_timeout``).
        rotation_lead_s: rotate this long before ``max_lifetime_s`` (jittered by ``rotation_jitter``, a
            fraction: the lead is ``rotation_lead_s * (1 + uniform(0, rotation_jitter))``, at most half the
            lifetime).
        rotation_flow_timeout_s: longest wait for data on the replacement socket before switching anyway.
        rotation_retry_s: delay before retrying a rotation whose replacement failed.
        event_log_size: events kept per connection.
        data_event_interval_s: at most one ``data_received`` event per this interval.
        lag_sample_interval_s: at most one exchange-time-to-receipt lag sample per this interval.
        quality_interval_s: quality is re-scored this often.
        tick_s: period of the timer task (keepalive, watchdogs, timeouts are checked at this resolution).
        seed: seed of the random source (backoff and rotation jitter); ``None``: unpredictable.
    """

    backoff: BackoffPolicy = field(default_factory=BackoffPolicy)
    watchdog: WatchdogConfig = field(default_factory=WatchdogConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    ack_timeout_s: float = 10.0
    rotation_lead_s: float = 600.0
    rotation_jitter: float = 0.5
    rotation_flow_timeout_s: float = 30.0
    rotation_retry_s: float = 30.0
    event_log_size: int = 100
    data_event_interval_s: float = 60.0
    lag_sample_interval_s: float = 1.0
    quality_interval_s: float = 1.0
    tick_s: float = 0.25
    seed: int | None = None


class ManagedConnection:
    """One logical connection (see the module docstring).

    Args:
        adapter: the exchange's sans-I/O adapter.
        spec: URL, initial subscriptions and route of this connection.
        conn_id: id used in events and stats.
        config: engine tunables.
        clock: time source (``SystemClock`` in production, ``FakeClock`` in tests).
        transport: socket factory (``WebsocketsTransport`` in production).
        on_data: called with every frame's market data (``Trade``, ``Ticker``, raw ``BookMessage``), in
            receive order per socket. Exceptions are caught and counted, never affect the connection.
        on_event: called with every :class:`ConnectionEvent` (exceptions isolated).
        gate: the connect gate of this exchange host, shared with the other connections to it (see
            :mod:`~cryptolink.engine.gate`); ``None``: a private gate with the adapter's ``connect_limit``.

    Raises:
        ConfigError: the spec has more subscriptions than ``policy.max_streams_per_connection``.
        ValueError: a subscription's symbol does not belong to the adapter (from ``adapter.exchange_symbol``).
    """

    def __init__(
        self,
        adapter: ExchangeAdapter,
        spec: ConnectionSpec,
        *,
        conn_id: str,
        config: EngineConfig,
        clock: Clock,
        transport: Transport,
        on_data: DataCallback,
        on_event: EventCallback | None = None,
        gate: ConnectGate | None = None,
    ) -> None:
        self.adapter = adapter
        self.spec = spec
        self.conn_id = conn_id
        self.config = config
        self._clock = clock
        self._transport = transport
        self._on_data = on_data
        self._policy = adapter.policy
        self._rng = random.Random(config.seed)
        self._log = EventLog(config.event_log_size)
        if on_event is not None:
            self._log.add_listener(on_event)
        self._sm = StateMachine(self._on_transition)
        self._backoff = Backoff(config.backoff, self._rng)
        self._watchdog = Watchdog(config.watchdog)
        wd = config.watchdog
        self._conn_watchdog = Watchdog(
            replace(wd, first_data_timeout_s=max(wd.first_data_timeout_s, wd.max_idle_s))
        )
        self._quality = QualityTracker(config.quality)
        self._gate = gate or ConnectGate(
            f"{adapter.exchange} {spec.url}", self._policy.connect_limit, clock, rng=self._rng
        )
        self._registry = SubscriptionRegistry()
        self._validate(spec.subscriptions, 0)
        self._registry.want(spec.subscriptions)

        self._primary: Session | None = None
        self._candidate: Session | None = None
        self._sid = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._supervisor: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._rotation: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._requested_end = False
        self._state_waiters: list[asyncio.Future[None]] = []
        self._stale: set[tuple[Channel, str]] = set()
        self._unhealthy_streams: set[tuple[Channel, str]] = set()
        self._last_end_reason = ""

        now = clock.monotonic()
        self._state_since = now
        self._started_at: float | None = None
        self._uptime_s = 0.0
        self._downtime_s = 0.0
        self._connected_since_ns: int | None = None
        self._disconnected_at: float | None = None
        self._ever_connected = False
        self._last_retry_log = -math.inf  # when a failed connect was last logged above DEBUG (monotonic s)
        self._retry_loud = True  # the next "reconnecting in" line is logged above DEBUG
        self._healthy_since: float | None = None
        self._rotate_at: float | None = None
        self._next_lag_sample = now
        self._next_quality = now
        self._last_data_event = now
        self._msgs_at_data_event = 0
        self._last_recv: float | None = None

        # counters
        self.messages = 0
        self.bytes = 0
        self.market_events = 0
        self.decode_errors = 0
        self.oversized_frames = 0
        self.callback_errors = 0
        self.exchange_errors = 0
        self.transport_errors = 0
        self.heartbeats = 0
        self.ignored_frames = 0
        self.book_errors = 0
        self.reconnect_attempts = 0
        self.successful_reconnects = 0
        self.failed_connects = 0
        self.disconnections = 0
        self.unexpected_disconnections = 0
        self.rotations = 0

    # public API ------------------------------------------------------------

    @property
    def state(self) -> ConnectionState:
        """Current :class:`ConnectionState`."""
        return self._sm.state

    @property
    def subscriptions(self) -> SubscriptionRegistry:
        """The registry of the primary socket (read it; change subscriptions through the methods below)."""
        return self._registry

    @property
    def backoff(self) -> Backoff:
        """The reconnect backoff state (attempt counter)."""
        return self._backoff

    @property
    def watchdog(self) -> Watchdog:
        """The data-idle watchdog (read-only use)."""
        return self._watchdog

    def events(self) -> list[ConnectionEvent]:
        """The last ``event_log_size`` events, oldest first."""
        return self._log.events()

    def add_event_listener(self, listener: EventCallback) -> None:
        """Also call ``listener`` for every future event."""
        self._log.add_listener(listener)

    @property
    def rotating(self) -> bool:
        """A make-before-break replacement socket is open: two sockets deliver the same streams now."""
        return self._candidate is not None

    @property
    def gate(self) -> ConnectGate:
        """The connect gate of this connection's exchange host."""
        return self._gate

    def quality(self) -> ConnectionQuality:
        """Current quality snapshot."""
        self._quality.set_streams(self._stream_health())
        return self._quality.snapshot(self._clock.monotonic(), self._uptime_pct())

    def stale_subscriptions(self) -> list[Subscription]:
        """Desired subscriptions whose data watchdog fired and that have had no data since."""
        return [s for s in self._registry.desired if s.key in self._stale]

    def stats(self) -> ConnectionStats:
        """Immutable snapshot of counters and state."""
        now = self._clock.monotonic()
        up, down = self._times(now)
        reg = self._registry
        return ConnectionStats(
            connection_id=self.conn_id,
            exchange=self.adapter.exchange,
            url=self.spec.url,
            route=self.spec.route,
            state=self.state,
            messages=self.messages,
            bytes=self.bytes,
            market_events=self.market_events,
            errors=self._errors_total(),
            decode_errors=self.decode_errors,
            oversized_frames=self.oversized_frames,
            callback_errors=self.callback_errors,
            exchange_errors=self.exchange_errors,
            transport_errors=self.transport_errors,
            book_errors=self.book_errors,
            ignored_frames=self.ignored_frames,
            reconnect_attempts=self.reconnect_attempts,
            successful_reconnects=self.successful_reconnects,
            failed_connects=self.failed_connects,
            disconnections=self.disconnections,
            unexpected_disconnections=self.unexpected_disconnections,
            downtime_s=down,
            uptime_s=up,
            connected_since_ns=self._connected_since_ns,
            last_message_age_s=None if self._last_recv is None else now - self._last_recv,
            subscriptions_confirmed=len(reg.confirmed),
            subscriptions_pending=len(reg.pending_subscribe),
            subscriptions_rejected=len(reg.rejected),
            subscriptions_stale=sum(1 for s in reg.desired if s.key in self._stale),
            rotations=self.rotations,
            last_disconnect_reason=self._last_end_reason,
            quality=self.quality(),
        )

    async def start(self) -> None:
        """Start connecting in the background (returns at once; see :meth:`wait_for_state`).

        Raises:
            IllegalTransition: already started or stopped.
        """
        self._sm.transition(_S.CONNECTING, "start")
        self._started_at = self._clock.monotonic()
        self._supervisor = asyncio.create_task(self._supervise(), name=f"{self.conn_id}-supervisor")
        self._ticker = asyncio.create_task(tick_loop(self), name=f"{self.conn_id}-ticker")

    async def stop(self) -> None:
        """Stop for good: unsubscribe (frames the rate limit allows right now), close code 1000, no reconnect.

        Idempotent.
        """
        if self.state is _S.STOPPED:
            return
        self._stopping = True
        self._wake.set()
        sess = self._primary
        if sess is not None and sess.alive and self.state in ACTIVE_STATES:
            confirmed = list(sess.registry.confirmed)
            if confirmed:
                reqs = self.adapter.unsubscribe_requests(confirmed, peek_request_id())
                take_request_ids(len(reqs))
                for req in reqs:
                    if not sess.bucket.try_acquire():
                        break
                    try:
                        await sess.ws.send(req.frame)
                    except TransportError:
                        break
        current = asyncio.current_task()
        for t in (self._supervisor, self._ticker, self._rotation, *self._tasks):
            if t is not None and t is not current and not t.done():
                t.cancel()
        for s in (self._primary, self._candidate):
            if s is not None:
                s.end(STOPPED)
                await close_session(s)
        waiting = [t for t in (self._supervisor, self._ticker, self._rotation, *self._tasks) if t is not None]
        waiting = [t for t in waiting if t is not current]
        if waiting:
            await asyncio.gather(*waiting, return_exceptions=True)
        self._primary = self._candidate = None
        self._connected_since_ns = None
        self._sm.transition(_S.STOPPED, "stop requested")

    def reconnect(self) -> None:
        """Force a reconnect now, with the backoff reset to immediate.

        From ``failed`` this restarts the connection (state ``reconnecting``). Before :meth:`start` it does
        nothing.

        Raises:
            IllegalTransition: the connection is stopped.
        """
        state = self.state
        if state is _S.STOPPED:
            raise IllegalTransition(state, _S.RECONNECTING)
        self._backoff.reset()
        if state is _S.FAILED:
            self._sm.transition(_S.RECONNECTING, "explicit reconnect")
            self._wake.set()
        elif state is _S.RECONNECTING:
            self._wake.set()
        elif state in ACTIVE_STATES and self._primary is not None:
            self._requested_end = True
            self._primary.end("reconnect requested")

    async def subscribe(self, subs: Sequence[Subscription]) -> None:
        """Add subscriptions; their subscribe frames are sent now if a socket is open, else on connect.

        Raises:
            ConfigError: more than ``policy.max_streams_per_connection`` subscriptions would result.
            ValueError: a symbol does not belong to the adapter.
        """
        self._validate(subs, len(self._registry))
        added = self._registry.want(subs)
        if self._candidate is not None:
            self._candidate.registry.want(subs)
        if not added:
            return
        now = self._clock.monotonic()
        for sub in added:
            self._watchdog.arm(sub.key, now)
        await send_everywhere(self)

    async def unsubscribe(self, subs: Sequence[Subscription]) -> None:
        """Remove subscriptions; unsubscribe frames are sent on the open socket(s).

        Unknown ones are ignored.
        """
        removed = self._registry.drop(subs)
        for sub in removed:
            self._watchdog.remove(sub.key)
            self._stale.discard(sub.key)
            self._unhealthy_streams.discard(sub.key)
        for sess in self._live_sessions():
            if sess is not self._primary:
                sess.registry.drop(subs)
            if removed:
                await send_requests(self, sess, self.adapter.unsubscribe_requests, removed)

    async def resubscribe(self, subs: Sequence[Subscription], *, rearm: bool = True) -> None:
        """Unsubscribe then subscribe ``subs`` on the primary socket, to get fresh WebSocket snapshots (the
        OKX book resync: docs/protocols/okx.md "Book sync"). Subscriptions not currently desired are ignored.

        Args:
            rearm: restart the streams' first-data timeout. The watchdog's own cheap fix passes ``False`` so a
                stream that stays quiet keeps its re-report backoff and is not resubscribed in a loop.
        """
        sess = self._primary
        originals = self._registry.mark_resubscribe(subs)
        if not originals:
            return
        now = self._clock.monotonic()
        if rearm:
            for sub in originals:
                self._watchdog.arm(sub.key, now)
        if sess is not None and sess.alive:
            await send_requests(self, sess, self.adapter.unsubscribe_requests, originals)
            await send_pending(self, sess)

    def report_sequence_gap(self, n: int = 1) -> None:
        """The consumer found ``n`` sequence gaps in this connection's data (counted in quality ``loss``)."""
        self._quality.record_gap(n)

    def set_stream_health(self, key: tuple[Channel, str], healthy: bool) -> None:
        """The consumer says whether stream ``key`` is usable (a book: live or not). A stream that is not
        counts against the quality score's ``data`` part; it does not make the connection ``unstable``."""
        if healthy:
            self._unhealthy_streams.discard(key)
        else:
            self._unhealthy_streams.add(key)

    def report_book_error(self, n: int = 1) -> None:
        """The consumer found ``n`` book errors (checksum mismatches) in this connection's data: counted in
        ``errors`` and the quality score's error rate."""
        self.book_errors += n

    async def wait_for_state(self, *states: ConnectionState) -> ConnectionState:
        """Wait until the state is one of ``states`` (bound it with ``asyncio.wait_for``); return it."""
        while self.state not in states:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._state_waiters.append(fut)
            await fut
        return self.state

    # internals ------------------------------------------------------------
    def _validate(self, subs: Iterable[Subscription], existing: int) -> None:
        new = 0
        for sub in subs:
            self.adapter.exchange_symbol(sub.symbol)
            if not self._registry.is_desired(sub.key):
                new += 1
        limit = self._policy.max_streams_per_connection
        if existing + new > limit:
            raise ConfigError(
                f"{existing + new} subscriptions exceed the {self.adapter.exchange} limit of {limit}"
            )

    def _errors_total(self) -> int:
        return (
            self.decode_errors
            + self.exchange_errors
            + self.callback_errors
            + self.transport_errors
            + self.book_errors
        )

    def _stream_health(self) -> StreamHealth:
        reg = self._registry
        desired = reg.desired
        bad = sum(1 for s in desired if s.key in self._stale or s.key in self._unhealthy_streams)
        return StreamHealth(wanted=len(desired) + len(reg.rejected), delivering=len(desired) - bad)

    def _times(self, now: float) -> tuple[float, float]:
        up, down = self._uptime_s, self._downtime_s
        state = self.state
        if state in ACTIVE_STATES:
            up += now - self._state_since
        elif state not in (_S.STOPPED, _S.DISCONNECTED):
            down += now - self._state_since
        return up, down

    def _uptime_pct(self) -> float:
        up, down = self._times(self._clock.monotonic())
        total = up + down
        return 100.0 * up / total if total > 0 else 0.0

    def _emit(
        self,
        type_: ConnectionEventType,
        severity: Severity,
        description: str = "",
        *,
        error: str | None = None,
        latency_ms: float | None = None,
        attempt: int | None = None,
        key: tuple[Channel, str] | None = None,
    ) -> None:
        self._log.append(
            ConnectionEvent(
                type=type_,
                severity=severity,
                time_ns=self._clock.time_ns(),
                monotonic_s=self._clock.monotonic(),
                connection_id=self.conn_id,
                exchange=self.adapter.exchange,
                description=description,
                error=error,
                latency_ms=latency_ms,
                attempt=attempt,
                feed=self.adapter.feed,
                stream=None if key is None else key[0].value,
                symbol=None if key is None else key[1],
            )
        )

    def _on_transition(self, source: ConnectionState, target: ConnectionState, reason: str) -> None:
        now = self._clock.monotonic()
        if source in ACTIVE_STATES:
            self._uptime_s += now - self._state_since
        elif source is not _S.DISCONNECTED:
            self._downtime_s += now - self._state_since
        self._state_since = now
        self._quality.record_state(now, target in ACTIVE_STATES)
        if target not in ACTIVE_STATES:
            self._healthy_since = None
        severity = {
            _S.FAILED: Severity.CRITICAL,
            _S.UNSTABLE: Severity.WARNING,
            _S.RECONNECTING: Severity.WARNING,
        }.get(target, Severity.INFO)
        self._emit(_E.STATE_CHANGED, severity, f"{source} -> {target}" + (f": {reason}" if reason else ""))
        waiters, self._state_waiters = self._state_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _log.error("%s: background task failed", self.conn_id, exc_info=task.exception())

    def _live_sessions(self) -> list[Session]:
        return [s for s in (self._primary, self._candidate) if s is not None and s.alive]

    async def _sleep_or_wake(self, delay: float) -> None:
        """Sleep ``delay`` s of clock time; wake early on :meth:`reconnect`/:meth:`stop` or, when the exchange
        host is down, as soon as a probe finds it up again."""
        sleeper = asyncio.ensure_future(self._clock.sleep(delay))
        waker = asyncio.ensure_future(self._wake.wait())
        waits: set[asyncio.Future[Any]] = {sleeper, waker}
        if not self._gate.up:
            waits.add(asyncio.ensure_future(self._gate.wait_up()))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    # supervisor ------------------------------------------------------------

    async def _supervise(self) -> None:
        while not self._stopping:
            if self._backoff.exhausted:
                msg = f"giving up after {self._backoff.attempt} attempts; call reconnect() to restart"
                self._sm.transition(_S.FAILED, f"gave up after {self._backoff.attempt} attempts")
                self._emit(_E.RECONNECT_FAILED, Severity.CRITICAL, msg, attempt=self._backoff.attempt)
                _log.error("%s: %s", self.conn_id, msg)
                self._wake.clear()
                await self._wake.wait()
                self._wake.clear()
                continue
            delay = self._backoff.next_delay()
            attempt = self._backoff.attempt
            if self._ever_connected or attempt > 1:
                self.reconnect_attempts += 1
                self._emit(_E.RECONNECT_ATTEMPT, Severity.INFO, f"retry in {delay:.1f} s", attempt=attempt)
                level = logging.INFO if attempt <= 5 or self._retry_loud else logging.DEBUG
                _log.log(level, "%s: reconnecting in %.1f s (attempt %d)", self.conn_id, delay, attempt)
            if delay > 0:
                self._wake.clear()
                await self._sleep_or_wake(delay)
                self._wake.clear()
                if self._stopping:
                    return
            permit = await self._gate.acquire()
            try:
                self._registry.replay()
                sess = await open_session(self, self._registry)
            except asyncio.CancelledError:
                permit.report(None)
                raise
            except Exception as exc:
                permit.report(False)
                self._connect_failed(exc, attempt)
                continue
            permit.report(True)
            if self._stopping:
                await close_session(sess)
                return
            await self._on_open(sess, attempt)
            reason = await self._wait_primary_end()
            if self._stopping:
                return
            await self._on_end(reason)

    def _connect_failed(self, exc: Exception, attempt: int) -> None:
        """Count and log a failed connect. Logged at WARNING (with the next "reconnecting in" at INFO) for
        the first 5 attempts, then every 10th or once a minute: a long outage tells its story without
        flooding the log."""
        now = self._clock.monotonic()
        self.transport_errors += 1
        self.failed_connects += 1
        self._quality.record_failed_connect(now)
        why = describe_error(exc)
        retrying = self._ever_connected or attempt > 1
        self._emit(
            _E.RECONNECT_FAILED if retrying else _E.ERROR,
            Severity.ERROR,
            f"cannot connect to {self.spec.url}",
            error=why,
            attempt=attempt,
        )
        loud = attempt <= 5 or attempt % 10 == 0 or now - self._last_retry_log >= 60.0
        if loud:
            self._last_retry_log = now
        self._retry_loud = loud
        _log.log(
            logging.WARNING if loud else logging.DEBUG,
            "%s: cannot connect to %s: %s (attempt %d%s)",
            self.conn_id,
            self.spec.url,
            why,
            attempt,
            "; from now on logged every 10th attempt or once a minute" if attempt == 5 else "",
        )
        if self.state is _S.CONNECTING:
            self._sm.transition(_S.RECONNECTING, "connect failed")

    async def _on_open(self, sess: Session, attempt: int) -> None:
        now = self._clock.monotonic()
        self._primary = sess
        self._connected_since_ns = self._clock.time_ns()
        self._stale.clear()
        self._watchdog.arm_all(now)
        for sub in self._registry.desired:
            self._watchdog.arm(sub.key, now)
        self._conn_watchdog.arm(CONNECTION_KEY, now)
        schedule_rotation(self, sess)
        self._sm.transition(_S.CONNECTED, f"session {sess.sid} open")
        if self._ever_connected:
            self.successful_reconnects += 1
            down_s = None if self._disconnected_at is None else now - self._disconnected_at
            self._emit(
                _E.RECONNECT_SUCCESS,
                Severity.INFO,
                "reconnected" + (f" after {down_s:.1f} s down" if down_s is not None else ""),
                latency_ms=None if down_s is None else down_s * 1000.0,
                attempt=attempt,
            )
            _log.info(
                "%s: reconnected to %s (attempt %d, %.1f s after the disconnect)",
                self.conn_id,
                self.spec.url,
                attempt,
                down_s or 0.0,
            )
        else:
            self._emit(_E.CONNECTED, Severity.INFO, f"connected to {self.spec.url}", attempt=attempt)
            _log.info("%s: connected to %s (attempt %d)", self.conn_id, self.spec.url, attempt)
        self._ever_connected = True
        self._spawn(send_pending(self, sess))

    async def _wait_primary_end(self) -> str:
        while True:
            sess = self._primary
            assert sess is not None
            reason = await asyncio.shield(sess.ended)
            if reason == ROTATED and self._primary is not sess:
                continue
            return reason

    async def _on_end(self, reason: str) -> None:
        now = self._clock.monotonic()
        sess = self._primary
        requested = self._requested_end
        self._requested_end = False
        self._disconnected_at = now
        self._connected_since_ns = None
        self._last_end_reason = reason
        self.disconnections += 1
        if not requested:
            self.unexpected_disconnections += 1
            self._quality.record_disconnect(now)
        lived = now - sess.opened_at if sess is not None else 0.0
        self._emit(
            _E.DISCONNECTED,
            Severity.INFO if requested else Severity.WARNING,
            f"session ended after {lived:.1f} s: {reason}",
        )
        _log.log(
            logging.INFO if requested else logging.WARNING,
            "%s: disconnected after %.1f s: %s",
            self.conn_id,
            lived,
            reason,
        )
        if self._rotation is not None and not self._rotation.done():
            self._rotation.cancel()
        cand, self._candidate = self._candidate, None
        self._sm.transition(_S.RECONNECTING, reason)
        for s in (sess, cand):
            if s is not None:
                self._spawn(close_session(s))

    # health and rotation ------------------------------------------------------------

    def _request_rotation(self, reason: str) -> None:
        # for engine.session, which cannot import engine.rotation (that one imports it)
        request_rotation(self, reason)

    def _update_health(self) -> None:
        """``unstable`` while no desired subscription delivers (every one silent past its watchdog). A single
        silent subscription or a book that is not live is judged on its own (stats, report, the score's
        ``data`` part), and the score's recent past (downtime, disconnects) does not make a connection that
        delivers now ``unstable``: the state says what the socket does now, the score how it went lately."""
        state = self.state
        if state not in ACTIVE_STATES:
            return
        desired = self._registry.desired
        all_stale = bool(desired) and all(s.key in self._stale for s in desired)
        if state is _S.CONNECTED and all_stale:
            why = f"no subscription delivering ({len(desired)} silent)"
            self._sm.transition(_S.UNSTABLE, why)
            _log.warning("%s: unstable: %s", self.conn_id, why)
        elif state is _S.UNSTABLE and not all_stale:
            self._sm.transition(_S.CONNECTED, "healthy again: data flowing")
            _log.info("%s: healthy again: data flowing", self.conn_id)
