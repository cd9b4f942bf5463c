"""``ManagedConnection``: one logical WebSocket connection that stays up for months, for any exchange adapter.

One instance serves one :class:`~cryptolink.exchanges.base.ConnectionSpec`. It owns the state machine, the
backoff, the gate permits, the statistics, the subscription registry of its primary socket, its timer core
and its sessions (the primary and, during a rotation, a candidate):

- a supervisor task: connect, restore subscriptions, wait for the session to end, reconnect with
  :mod:`~cryptolink.engine.backoff` (full jitter, cap 30 s; reset once a session delivered market data for
  ``reset_after_s``), ``failed`` after ``max_attempts``; every socket it opens first takes a permit from the
  exchange host's :mod:`~cryptolink.engine.gate` (documented connection-rate limit; one probe at a time while
  the host is down, every waiting connection released as soon as a probe succeeds). When the adapter asks
  for a REST step before connecting (``adapter.connect_request(spec)``: a token or URL fetched first), it is
  fetched through the ``rest`` gateway and ``adapter.connect_url(spec, body)`` is opened instead of
  ``spec.url``; a failure there is a failed connect attempt (backoff);
- one :class:`~cryptolink.engine.session.Session` per open socket: its reader decodes every frame with the
  session's decoder (``adapter.session_decoder()``, once per socket) and reports back through the
  :class:`~cryptolink.engine.session.SessionHost` methods of this class;
- a timer task that sleeps until the next deadline of its sans-I/O
  :class:`~cryptolink.engine.timer_core.TimerCore` (at most ``EngineConfig.tick_s``) and executes the
  actions it returns (keepalive, watchdogs, ack timeouts, rotation deadline, quality, the sampled
  ``data_received`` event), then judges health and the backoff reset;
- make-before-break rotation before ``ConnectionPolicy.max_lifetime_s`` (Binance 24 h: docs/protocols/binance.md
  "Limits") or on ``ServerNotice(rotate=True)`` (:mod:`~cryptolink.engine.rotation`).

Every task belongs to a :class:`~cryptolink.engine.tasks.TaskOwner` (the connection's, or a session's), so
:meth:`ManagedConnection.stop` cancels and awaits all of them.

Duplicate contract: during a rotation's overlap both sockets deliver to ``on_data``, and after a reconnect the
exchange may resend recent data. The consumer (the feed) drops duplicates by ``sequence`` / trade id; this
class never deduplicates.

All timing uses the injected :class:`~cryptolink.clock.Clock`, so everything runs in fake time in tests.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from cryptolink.clock import Clock
from cryptolink.engine.backoff import Backoff, BackoffPolicy
from cryptolink.engine.errors import ConfigError, ConnectError, FrameTooLarge, IllegalTransition
from cryptolink.engine.events import ConnectionEvent, ConnectionEventType, EventLog, Severity
from cryptolink.engine.gate import ConnectGate
from cryptolink.engine.quality import (
    ConnectionQuality,
    QualityChange,
    QualityConfig,
    QualityTracker,
    StreamHealth,
)
from cryptolink.engine.rotation import rotation_deadline, wait_any
from cryptolink.engine.session import ROTATED, STOPPED, MarketData, Session, SessionCounters
from cryptolink.engine.state import ACTIVE_STATES, ConnectionState, StateMachine
from cryptolink.engine.stats import ConnectionStats, StreamStatus
from cryptolink.engine.subscriptions import SubscriptionRegistry
from cryptolink.engine.tasks import TaskOwner
from cryptolink.engine.timer_core import (
    AckTimedOut,
    CloseDead,
    ConnectionSilent,
    ReportDataRate,
    ResubscribeStale,
    RotateNow,
    ScoreQuality,
    SendAppPing,
    SendPing,
    StreamStale,
    TimerCore,
)
from cryptolink.engine.transport import Transport, describe_error
from cryptolink.engine.watchdog import Watchdog, WatchdogConfig
from cryptolink.exchanges.base import (
    ConnectionSpec,
    ExchangeAdapter,
    ExchangeError,
    Rejected,
    ServerNotice,
)
from cryptolink.models import Channel, Subscription

if TYPE_CHECKING:
    from cryptolink.gateway import RestGateway

__all__ = ["DataCallback", "EngineConfig", "EventCallback", "ManagedConnection", "MarketData"]

_log = logging.getLogger(__name__)

DataCallback = Callable[["ManagedConnection", list[MarketData]], None]
EventCallback = Callable[[ConnectionEvent], None]

_E = ConnectionEventType
_S = ConnectionState
StreamKey = tuple[Channel, str]


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
        tick_s: longest sleep of the timer task: deadlines are met exactly, ack timeouts and the health state
            at this resolution.
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
        rest: the exchange's REST gateway, for adapters that fetch something before connecting
            (``adapter.connect_request``); ``None`` is fine for the others.

    Raises:
        ConfigError: the spec has more subscriptions than ``policy.max_streams_per_connection``, or the
            adapter needs a REST step before connecting and ``rest`` is ``None``.
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
        rest: RestGateway | None = None,
    ) -> None:
        self.adapter = adapter
        self.spec = spec
        self.conn_id = conn_id
        self.config = config
        self._clock = clock
        self._transport = transport
        self._on_data = on_data
        self._rest = rest
        self._policy = adapter.policy
        if rest is None and adapter.connect_request(spec) is not None:
            raise ConfigError(
                f"{adapter.exchange} fetches a REST resource before connecting; pass its REST gateway (rest=)"
            )
        self._rng = random.Random(config.seed)
        self._log = EventLog(config.event_log_size)
        if on_event is not None:
            self._log.add_listener(on_event)
        self._sm = StateMachine(self._on_transition)
        self._backoff = Backoff(config.backoff, self._rng)
        self._quality = QualityTracker(config.quality)
        self._gate = gate or ConnectGate(
            f"{adapter.exchange} {spec.url}", self._policy.connect_limit, clock, rng=self._rng
        )
        now = clock.monotonic()
        self._core = TimerCore(
            keepalive=self._policy.keepalive,
            watchdog=config.watchdog,
            ack_timeout_s=config.ack_timeout_s,
            quality_interval_s=config.quality_interval_s,
            data_event_interval_s=config.data_event_interval_s,
            now=now,
        )
        self._registry = SubscriptionRegistry()
        self._validate(spec.subscriptions, 0)
        self._registry.want(spec.subscriptions)
        self._counters = SessionCounters()
        self._tasks = TaskOwner(conn_id, _log)

        self._primary: Session | None = None
        self._candidate: Session | None = None
        self._fork: SubscriptionRegistry | None = (
            None  # a rotation's registry from the fork on, socket or not
        )
        self._open_sessions: set[Session] = set()  # opened and not closed yet (closed on stop)
        self._sid = 0
        self._rotation: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._requested_end = False
        self._state_waiters: list[asyncio.Future[None]] = []
        self._unhealthy_streams: set[StreamKey] = set()
        self._last_end_reason = ""

        self._state_since = now
        self._uptime_s = 0.0
        self._downtime_s = 0.0
        self._connected_since_ns: int | None = None
        self._last_connected_ns: int | None = None
        self._last_disconnected_ns: int | None = None
        self._last_error: tuple[str, int] | None = None
        self._disconnected_at: float | None = None
        self._ever_connected = False
        self._last_retry_log = -math.inf  # when a failed connect was last logged above DEBUG (monotonic s)
        self._retry_loud = True  # the next "reconnecting in" line is logged above DEBUG
        self._healthy_since: float | None = None
        self._next_lag_sample = now
        self._msgs_at_data_event = 0
        self._connect_errors = (
            0  # failed connects and failed rotation replacements (part of transport_errors)
        )

        # counters of the connection itself (per-frame counters live in self._counters)
        self.exchange_errors = 0
        self.book_errors = 0
        self.reconnect_attempts = 0
        self.successful_reconnects = 0
        self.failed_connects = 0
        self.disconnections = 0
        self.unexpected_disconnections = 0
        self.rotations = 0
        self.stall_detections = 0  # data watchdog reports: stale subscriptions + silent connection

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
        """The per-subscription data-idle watchdog (read-only use)."""
        return self._core.watchdog

    @property
    def messages(self) -> int:
        """Frames received so far (all sessions, all kinds)."""
        return self._counters.messages

    @property
    def bytes(self) -> int:
        """Size of the frames received so far (UTF-8 bytes for text frames; binary frames as received)."""
        return self._counters.bytes

    @property
    def market_events(self) -> int:
        """Trades, tickers and book messages delivered to ``on_data``."""
        return self._counters.market_events

    @property
    def decode_errors(self) -> int:
        """Malformed frames (the adapter raised ``DecodeError``), counted and skipped."""
        return self._counters.decode_errors

    @property
    def adapter_errors(self) -> int:
        """Frames on which the adapter raised something other than ``DecodeError`` (a bug), skipped."""
        return self._counters.adapter_errors

    @property
    def inflate_refused(self) -> int:
        """Binary frames refused by the inflater (corrupt, or beyond ``policy.max_inflated_bytes``)."""
        return self._counters.inflate_refused

    @property
    def callback_errors(self) -> int:
        """Exceptions raised by ``on_data`` (isolated)."""
        return self._counters.callback_errors

    @property
    def oversized_frames(self) -> int:
        """Frames over ``max_frame_bytes`` (each reset its session)."""
        return self._counters.oversized_frames

    @property
    def ignored_frames(self) -> int:
        """Well-formed frames that carried nothing the engine handles."""
        return self._counters.ignored_frames

    @property
    def heartbeats(self) -> int:
        """Server heartbeats received (they never reset a data watchdog)."""
        return self._counters.heartbeats

    @property
    def transport_errors(self) -> int:
        """Failed connects, failed rotation replacements, failed sends, oversized frames."""
        c = self._counters
        return self._connect_errors + c.send_errors + c.oversized_frames

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
        return [s for s in self._registry.desired if self._core.is_stale(s.key)]

    def stats(self) -> ConnectionStats:
        """Immutable snapshot of counters and state."""
        now = self._clock.monotonic()
        up, down = self._times(now)
        reg = self._registry
        c = self._counters
        return ConnectionStats(
            connection_id=self.conn_id,
            exchange=self.adapter.exchange,
            url=self.spec.url,
            route=self.spec.route,
            state=self.state,
            messages=c.messages,
            bytes=c.bytes,
            market_events=c.market_events,
            errors=self._errors_total(),
            decode_errors=c.decode_errors,
            oversized_frames=c.oversized_frames,
            callback_errors=c.callback_errors,
            exchange_errors=self.exchange_errors,
            transport_errors=self.transport_errors,
            book_errors=self.book_errors,
            ignored_frames=c.ignored_frames,
            reconnect_attempts=self.reconnect_attempts,
            successful_reconnects=self.successful_reconnects,
            failed_connects=self.failed_connects,
            disconnections=self.disconnections,
            unexpected_disconnections=self.unexpected_disconnections,
            downtime_s=down,
            uptime_s=up,
            connected_since_ns=self._connected_since_ns,
            last_message_age_s=None if c.last_recv is None else now - c.last_recv,
            subscriptions_confirmed=len(reg.confirmed),
            subscriptions_pending=len(reg.pending_subscribe),
            subscriptions_rejected=len(reg.rejected),
            subscriptions_stale=sum(1 for s in reg.desired if self._core.is_stale(s.key)),
            rotations=self.rotations,
            last_disconnect_reason=self._last_end_reason,
            quality=self.quality(),
            adapter_errors=c.adapter_errors,
            inflate_refused=c.inflate_refused,
            last_connected_ns=self._last_connected_ns,
            last_disconnected_ns=self._last_disconnected_ns,
            last_error=None if self._last_error is None else self._last_error[0],
            last_error_ns=None if self._last_error is None else self._last_error[1],
            streams=self._stream_statuses(now),
            stall_detections=self.stall_detections,
        )

    def _stream_statuses(self, now: float) -> tuple[StreamStatus, ...]:
        reg = self._registry
        confirmed = {s.key for s in reg.confirmed}
        unsent = {s.key for s in reg.unsent()}  # pending with no request on the current socket yet
        pending = {s.key for s in reg.pending_subscribe}
        watchdog = self._core.watchdog
        out = []
        for sub in reg.desired:
            key = sub.key
            try:
                age, threshold = watchdog.silence(key, now)
            except KeyError:
                age = threshold = None
            if key in confirmed:
                state = "confirmed"
            elif key in unsent or key not in pending:
                state = "unsent"
            else:
                state = "pending"
            out.append(StreamStatus(key[0].value, key[1], state, age, threshold, self._core.is_stale(key)))
        for rej in reg.rejected:
            out.append(
                StreamStatus(
                    rej.subscription.channel.value, rej.subscription.symbol, "rejected", None, None, False
                )
            )
        return tuple(out)

    def stream_status(self, key: tuple[Channel, str], now: float | None = None) -> StreamStatus | None:
        """The :class:`StreamStatus` of the one subscription ``key`` at ``now`` (monotonic s, default the
        clock's now), built without :meth:`stats` (what the trading guard reads on every check): ``None`` when
        the connection neither wants nor has rejected ``key``. The state is ``unsent`` for a subscription not yet
        asked on the current socket (waiting for a socket or for its turn), ``pending`` for one asked and waiting
        for its ack, else ``confirmed`` (acknowledged; it stays so while the connection is down, until the next
        socket asks again), as in :meth:`stats`."""
        reg = self._registry
        if not reg.is_desired(key):
            for rej in reg.rejected:
                if rej.subscription.key == key:
                    return StreamStatus(key[0].value, key[1], "rejected", None, None, False)
            return None
        try:
            age, threshold = self._core.watchdog.silence(key, self._clock.monotonic() if now is None else now)
        except KeyError:
            age = threshold = None
        if not any(s.key == key for s in reg.pending_subscribe):
            state = "confirmed"
        elif any(s.key == key for s in reg.unsent()):
            state = "unsent"
        else:
            state = "pending"
        return StreamStatus(key[0].value, key[1], state, age, threshold, self._core.is_stale(key))

    async def start(self) -> None:
        """Start connecting in the background (returns at once; see :meth:`wait_for_state`).

        Raises:
            IllegalTransition: already started or stopped.
        """
        self._sm.transition(_S.CONNECTING, "start")
        self._tasks.spawn(self._supervise(), "supervisor")
        self._tasks.spawn(self._timer_loop(), "timers")

    async def stop(self) -> None:
        """Stop for good: unsubscribe (frames the rate limit allows right now), close code 1000, no reconnect;
        every task of the connection and of its sessions is cancelled and awaited.

        Idempotent.
        """
        if self.state is _S.STOPPED:
            return
        self._stopping = True
        self._wake.set()
        sess = self._primary
        if sess is not None and sess.alive and self.state in ACTIVE_STATES:
            await sess.unsubscribe_now()
        await self._tasks.close()
        for s in list(self._open_sessions):
            await self._close(s)
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
        if self._fork is not None:  # a rotation under way (its socket may still be opening): it gets them too
            self._fork.want(subs)
        if not added:
            return
        now = self._clock.monotonic()
        for sub in added:
            self._core.arm(sub.key, now)
        for sess in self._live_sessions():
            await sess.send_pending()

    async def unsubscribe(self, subs: Sequence[Subscription]) -> None:
        """Remove subscriptions; unsubscribe frames are sent on the open socket(s).

        Unknown ones are ignored.
        """
        removed = self._registry.drop(subs)
        if self._fork is not None and self._candidate is None:  # the candidate socket is not open yet
            self._fork.drop(subs)
        for sub in removed:
            self._core.forget(sub.key)
            self._unhealthy_streams.discard(sub.key)
        for sess in self._live_sessions():
            if sess is not self._primary:
                sess.registry.drop(subs)
            if removed:
                await sess.unsubscribe(removed)

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
        if rearm:
            now = self._clock.monotonic()
            for sub in originals:
                self._core.arm(sub.key, now)
        if sess is not None:
            await sess.resend(originals)

    async def send_frame(self, frame: str) -> bool:
        """Send ``frame`` on the primary socket within its outbound rate limit (a snapshot request on the book's
        own connection, HTX ``req``). ``False`` when no socket is open or the send failed (the session ends)."""
        sess = self._primary
        if sess is None or not sess.alive:
            return False
        return await sess.send(frame)

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
            try:
                await fut
            finally:  # a caller that gave up (wait_for timed out) leaves nothing behind
                if fut in self._state_waiters:
                    self._state_waiters.remove(fut)
        return self.state

    # SessionHost: what the sessions report ------------------------------------------------------------

    def session_data(
        self, sess: Session, keys: set[StreamKey], market: list[MarketData], receipt_ns: int, now: float
    ) -> None:
        """A batch of ``sess`` delivered market data on ``keys`` (once per batch)."""
        self._core.market_data(keys, now)
        if self._healthy_since is None and sess is self._primary:
            self._healthy_since = now
        if now >= self._next_lag_sample:
            self._next_lag_sample = now + self.config.lag_sample_interval_s
            for item in market:
                ts = item.timestamp_ms
                if ts is not None:
                    self._quality.record_lag(receipt_ns / 1e6 - ts)
                    break

    def session_unsubscribed(self, sess: Session, subs: list[Subscription]) -> None:
        """The exchange confirmed unsubscribing ``subs`` on ``sess``."""
        if sess is self._primary:
            for sub in subs:
                if not sess.registry.is_desired(sub.key):
                    self._core.forget(sub.key)  # the timer core owns the watchdog and the stale set

    def session_rejected(self, sess: Session, rejection: Rejected, refused: list[Subscription]) -> None:
        """The exchange refused a request on ``sess``: reported, never retried."""
        self.exchange_errors += 1
        error = f"{rejection.code}: {rejection.message}"
        if not refused:
            self._emit(_E.ERROR, Severity.ERROR, "request rejected", error=error)
            _log.error("%s: request rejected: %s %s", self.conn_id, rejection.code, rejection.message)
            return
        for sub in refused:
            if sess is self._primary:
                self._core.forget(sub.key)
            self._emit(
                _E.SUBSCRIPTION_REJECTED,
                Severity.ERROR,
                f"{sub.channel} {sub.symbol} rejected by the exchange (not retried)",
                error=error,
                key=sub.key,
            )
        names = ", ".join(f"{s.channel} {s.symbol}" for s in refused)
        _log.error(
            "%s: subscription rejected (not retried): %s: %s %s",
            self.conn_id,
            names,
            rejection.code,
            rejection.message,
        )

    def session_rtt(self, sess: Session, rtt_s: float) -> None:
        """A ping on ``sess`` was answered after ``rtt_s`` s."""
        self._quality.record_rtt(rtt_s * 1000.0)

    def session_notice(self, sess: Session, notice: ServerNotice) -> None:
        """The server announced the end of ``sess``: rotate when it asks to and ``sess`` is the primary."""
        self._emit(_E.SERVER_NOTICE, Severity.WARNING, f"server notice {notice.code}: {notice.message}")
        _log.info("%s: server notice %s: %s", self.conn_id, notice.code, notice.message)
        if notice.rotate and sess is self._primary:
            self._request_rotation(f"server notice {notice.code}")

    def session_exchange_error(self, sess: Session, error: ExchangeError) -> None:
        """An error frame on ``sess`` not tied to a request."""
        self.exchange_errors += 1
        sub = error.subscription
        self._emit(
            _E.ERROR,
            Severity.ERROR,
            "exchange error",
            error=f"{error.code}: {error.message}",
            key=None if sub is None else sub.key,
        )
        _log.warning("%s: exchange error %s: %s", self.conn_id, error.code, error.message)

    def session_oversized(self, sess: Session, error: FrameTooLarge) -> None:
        """A frame over ``max_frame_bytes`` arrived on ``sess`` (it ends right after)."""
        self._emit(_E.ERROR, Severity.ERROR, "oversized frame, resetting session", error=str(error))

    def session_ended(self, sess: Session, reason: str) -> None:
        """``sess`` ended: its timers stop."""
        self._core.close_session(sess.sid)

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
        c = self._counters
        return (
            c.decode_errors
            + c.adapter_errors
            + c.inflate_refused
            + self.exchange_errors
            + c.callback_errors
            + self.transport_errors
            + self.book_errors
        )

    def _stream_health(self) -> StreamHealth:
        reg = self._registry
        desired = reg.desired
        is_stale = self._core.is_stale
        bad = sum(1 for s in desired if is_stale(s.key) or s.key in self._unhealthy_streams)
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
        time_ns = self._clock.time_ns()
        if severity >= Severity.ERROR:
            self._last_error = (error or description, time_ns)
        self._log.append(
            ConnectionEvent(
                type=type_,
                severity=severity,
                time_ns=time_ns,
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

    def _live_sessions(self) -> list[Session]:
        return [s for s in (self._primary, self._candidate) if s is not None and s.alive]

    def _session(self, sid: int) -> Session | None:
        """The live session ``sid`` (primary or candidate), if any."""
        for s in (self._primary, self._candidate):
            if s is not None and s.sid == sid and s.alive:
                return s
        return None

    # sessions ------------------------------------------------------------

    async def _resolve_url(self) -> str:
        """The URL to open: ``spec.url``, or what the adapter's REST step answers (a token or URL fetched first).

        Raises:
            ConnectError: the REST step failed (the gateway's error or the adapter's ``DecodeError`` from
                ``connect_url`` is its ``__cause__``).
        """
        request = self.adapter.connect_request(self.spec)
        if request is None:
            return self.spec.url
        if self._rest is None:  # checked in __init__; the adapter changed its mind
            raise ConfigError(f"{self.adapter.exchange} needs a REST gateway to connect")
        try:
            return self.adapter.connect_url(self.spec, await self._rest.get(request))
        except Exception as exc:
            raise ConnectError(f"REST step {request.path} failed: {describe_error(exc)}") from exc

    async def _open_session(self, registry: SubscriptionRegistry, url: str | None = None) -> Session:
        """Open a socket at ``url`` (default: :meth:`_resolve_url`) and start its reader.

        Raises:
            ConnectError: the REST step failed; else what ``Transport.connect`` raises.
        """
        if url is None:
            url = await self._resolve_url()
        ws = await self._transport.connect(url, max_frame_bytes=self._policy.max_frame_bytes)
        self._sid += 1
        sid = self._sid
        sess = Session(
            sid=sid,
            ws=ws,
            adapter=self.adapter,
            decoder=self.adapter.session_decoder(),
            registry=registry,
            keepalive=self._core.open_session(sid, self._clock.monotonic()),
            clock=self._clock,
            counters=self._counters,
            host=self,
            on_data=functools.partial(self._on_data, self),  # C-level call on the per-frame path
            name=self.conn_id,
        )
        self._open_sessions.add(sess)
        sess.start()
        return sess

    async def _close(self, sess: Session) -> None:
        await sess.close()
        self._open_sessions.discard(sess)  # a close cancelled half-way is done again by stop()

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
            try:  # the REST step first: its failures (a 429 on a token endpoint) never count against the host's
                url = await self._resolve_url()  # WebSocket gate, and no permit is held while it waits
            except ConnectError as exc:
                self._connect_failed(exc, attempt)
                continue
            permit = await self._gate.acquire()
            try:
                self._registry.replay()
                sess = await self._open_session(self._registry, url)
            except asyncio.CancelledError:
                permit.report(None)
                raise
            except Exception as exc:
                permit.report(False)
                self._connect_failed(exc, attempt)
                continue
            permit.report(True)
            if self._stopping:
                await self._close(sess)
                return
            self._on_open(sess, attempt)
            reason = await self._wait_primary_end()
            if self._stopping:
                return
            self._on_end(reason)

    def _connect_failed(self, exc: Exception, attempt: int) -> None:
        """Count and log a failed connect. Logged at WARNING (with the next "reconnecting in" at INFO) for
        the first 5 attempts, then every 10th or once a minute: a long outage tells its story without
        flooding the log."""
        now = self._clock.monotonic()
        self._connect_errors += 1
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

    def _rotation_deadline(self, sess: Session) -> float | None:
        return rotation_deadline(
            sess.opened_at,
            lifetime_s=self._policy.max_lifetime_s,
            lead_s=self.config.rotation_lead_s,
            jitter=self.config.rotation_jitter,
            rng=self._rng,
        )

    def _on_open(self, sess: Session, attempt: int) -> None:
        now = self._clock.monotonic()
        self._primary = sess
        self._connected_since_ns = self._last_connected_ns = self._clock.time_ns()
        if sess.alive:
            self._core.set_primary(sess.sid, self._registry, now, rearm=True)
        self._core.set_rotation_deadline(self._rotation_deadline(sess))
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
        sess.spawn_pending()

    async def _wait_primary_end(self) -> str:
        while True:
            sess = self._primary
            assert sess is not None
            reason = await asyncio.shield(sess.ended)
            if reason == ROTATED and self._primary is not sess:
                continue
            return reason

    def _on_end(self, reason: str) -> None:
        now = self._clock.monotonic()
        sess = self._primary
        requested = self._requested_end
        self._requested_end = False
        self._disconnected_at = now
        self._connected_since_ns = None
        self._last_disconnected_ns = self._clock.time_ns()
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
        self._core.set_rotation_deadline(None)
        cand, self._candidate = self._candidate, None
        self._sm.transition(_S.RECONNECTING, reason)
        for s in (sess, cand):
            if s is not None:
                self._core.close_session(s.sid)
                self._tasks.spawn(self._close(s), "close")

    # timers ------------------------------------------------------------

    async def _timer_loop(self) -> None:
        """Sleep until the timer core's next deadline (at most ``tick_s``), then run what is due."""
        clock = self._clock
        core = self._core
        cap = self.config.tick_s
        floor = min(cap, 0.01)  # a deadline that is due but not acted on never spins the loop
        while not self._stopping:
            delay = min(cap, core.next_deadline() - clock.monotonic())
            await clock.sleep(delay if delay > floor else floor)
            try:
                self._on_timers(clock.monotonic())
            except Exception:
                _log.exception("%s: timer pass failed", self.conn_id)

    def _on_timers(self, now: float) -> None:
        """Execute what the timer core says is due at ``now``, then judge health and the backoff reset."""
        resend = False
        for action in self._core.tick(now):
            match action:
                case SendAppPing(sid=sid, frame=frame):
                    if (s := self._session(sid)) is not None:
                        s.send_soon(frame, "app-ping")
                case SendPing(sid=sid):
                    if (s := self._session(sid)) is not None:
                        s.spawn_protocol_ping()
                case CloseDead(sid=sid, reason=why):
                    if (s := self._session(sid)) is not None:
                        self._emit(_E.HEARTBEAT_TIMEOUT, Severity.ERROR, f"session {sid}: {why}")
                        _log.warning("%s: keepalive failed on session %d: %s", self.conn_id, sid, why)
                        s.end(f"keepalive: {why}")
                case ConnectionSilent(sid=sid, report=r):
                    if (s := self._session(sid)) is not None:
                        self.stall_detections += 1
                        what = "no market data since connecting" if r.first_data else "no market data"
                        text = f"{what} for {r.silence_s:.1f} s (threshold {r.threshold_s:.1f} s)"
                        self._emit(
                            _E.STALE_SUBSCRIPTION,
                            Severity.ERROR,
                            f"connection silent: {text}, resetting the session",
                        )
                        _log.warning("%s: connection silent: %s; resetting the session", self.conn_id, text)
                        s.end(f"data watchdog: {text}")
                case StreamStale(key=key, report=r):
                    self.stall_detections += 1
                    what = "no first message" if r.first_data else "silent"
                    text = (
                        f"{key[0]} {key[1]} {what} for {r.silence_s:.1f} s (threshold {r.threshold_s:.1f} s)"
                    )
                    self._emit(_E.STALE_SUBSCRIPTION, Severity.WARNING, text, key=key)
                    if r.count == 1:
                        _log.warning("%s: %s; re-subscribing it once", self.conn_id, text)
                case ResubscribeStale(keys=keys):
                    fix = [s for s in self._registry.desired if s.key in keys]
                    self._tasks.spawn(self.resubscribe(fix, rearm=False), "resubscribe")
                case AckTimedOut(subscription=sub, retry=retry):
                    resend |= self._ack_timed_out(sub, retry)
                case RotateNow(reason=reason):
                    self._request_rotation(reason)
                case ScoreQuality():
                    self._score(now)
                case ReportDataRate(elapsed_s=elapsed):
                    messages = self._counters.messages
                    n = messages - self._msgs_at_data_event
                    self._msgs_at_data_event = messages
                    if n > 0:
                        self._emit(_E.DATA_RECEIVED, Severity.INFO, f"{n} frames in the last {elapsed:.0f} s")
        primary = self._primary
        if primary is None or not primary.alive or self.state not in ACTIVE_STATES:
            return
        if resend:
            primary.spawn_pending()
        self._update_health()
        if self._healthy_since is not None and self._backoff.should_reset(now - self._healthy_since):
            self._backoff.reset()

    def _ack_timed_out(self, sub: Subscription, retry: bool) -> bool:
        """Apply an ack timeout of ``sub`` on the primary's registry; ``True``: re-send pending requests."""
        timeout = self.config.ack_timeout_s
        if retry:
            self._emit(
                _E.ERROR, Severity.WARNING, f"no ack for {sub.channel} {sub.symbol} in {timeout} s, retrying"
            )
            self._registry.mark_unsent(sub)
            return True
        self._registry.reject(sub, "ack_timeout", "no ack after one retry")
        self._core.forget(sub.key)
        _log.error(
            "%s: %s %s: no ack after one retry; not retried again", self.conn_id, sub.channel, sub.symbol
        )
        self._emit(
            _E.SUBSCRIPTION_REJECTED,
            Severity.ERROR,
            f"{sub.channel} {sub.symbol}: no ack after one retry (not retried again)",
            error="ack_timeout",
            key=sub.key,
        )
        return False

    def _score(self, now: float) -> None:
        q = self._quality
        change = q.tick(
            now, self._counters.messages, self._errors_total(), self._uptime_pct(), self._stream_health()
        )
        if change is QualityChange.DEGRADED:
            self._emit(_E.QUALITY_DEGRADED, Severity.WARNING, f"quality score {q.last_score:.0f}")
            _log.warning("%s: quality degraded: score %.0f", self.conn_id, q.last_score)
        elif change is QualityChange.IMPROVED:
            self._emit(_E.QUALITY_IMPROVED, Severity.INFO, f"quality score {q.last_score:.0f}")
            _log.info("%s: quality recovered: score %.0f", self.conn_id, q.last_score)

    def _update_health(self) -> None:
        """``unstable`` while no desired subscription delivers (every one silent past its watchdog). A single
        silent subscription or a book that is not live is judged on its own (stats, report, the score's
        ``data`` part), and the score's recent past (downtime, disconnects) does not make a connection that
        delivers now ``unstable``: the state says what the socket does now, the score how it went lately."""
        state = self.state
        desired = self._registry.desired
        all_stale = bool(desired) and all(self._core.is_stale(s.key) for s in desired)
        if state is _S.CONNECTED and all_stale:
            why = f"no subscription delivering ({len(desired)} silent)"
            self._sm.transition(_S.UNSTABLE, why)
            _log.warning("%s: unstable: %s", self.conn_id, why)
        elif state is _S.UNSTABLE and not all_stale:
            self._sm.transition(_S.CONNECTED, "healthy again: data flowing")
            _log.info("%s: healthy again: data flowing", self.conn_id)

    # rotation ------------------------------------------------------------

    def _request_rotation(self, reason: str) -> None:
        """Start a make-before-break rotation unless one is running."""
        if self._rotation is not None and not self._rotation.done():
            return
        self._core.set_rotation_deadline(None)
        self._rotation = self._tasks.spawn(self._rotate(reason), "rotation")

    async def _rotate(self, reason: str) -> None:
        """Open and subscribe a replacement socket, wait for its data to flow, then swap it in (see
        :mod:`~cryptolink.engine.rotation`)."""
        old = self._primary
        if old is None or not old.alive:
            return
        clock = self._clock
        t0 = clock.monotonic()
        retry_s = self.config.rotation_retry_s
        self._emit(_E.ROTATION_STARTED, Severity.INFO, f"make-before-break rotation: {reason}")
        registry = self._fork = self._registry.fork()
        try:
            cand = await self._open_session(registry)
        except Exception as exc:
            self._fork = None
            self._connect_errors += 1
            self._emit(
                _E.ERROR,
                Severity.WARNING,
                f"rotation: replacement failed, old socket kept, retry in {retry_s} s",
                error=f"{type(exc).__name__}: {exc}",
            )
            self._core.set_rotation_deadline(clock.monotonic() + retry_s)
            return
        self._candidate = cand
        try:
            cand.expect_flow({s.key for s in registry.desired})
            await cand.send_pending()
            if not cand.flow_event.is_set():
                flow = asyncio.ensure_future(cand.flow_event.wait())
                try:
                    await wait_any(clock, self.config.rotation_flow_timeout_s, flow, cand.ended, old.ended)
                finally:
                    flow.cancel()
            if not old.alive or self._primary is not old or self._stopping:
                return  # the old socket died first: a normal reconnect takes over
            if not cand.alive:
                self._emit(
                    _E.ERROR, Severity.WARNING, "rotation: replacement socket died, keeping the old one"
                )
                self._core.set_rotation_deadline(clock.monotonic() + retry_s)
                return
            self._candidate = None
            self._primary = cand
            self._registry = registry
            self._core.set_primary(cand.sid, registry, clock.monotonic(), rearm=False)
            self._connected_since_ns = clock.time_ns()
            self._core.set_rotation_deadline(self._rotation_deadline(cand))
            self.rotations += 1
            old.end(ROTATED)
            self._tasks.spawn(self._close(old), "close")
            flowing = "all flowing" if cand.flow_event.is_set() else "flow timeout"
            self._emit(
                _E.ROTATION_COMPLETED,
                Severity.INFO,
                f"session {cand.sid} replaced session {old.sid} ({flowing})",
                latency_ms=(clock.monotonic() - t0) * 1000.0,
            )
        finally:
            self._fork = None
            if self._candidate is cand:
                self._candidate = None
                cand.end(STOPPED)
                self._tasks.spawn(self._close(cand), "close")
