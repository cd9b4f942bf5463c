"""The timers of one connection as a sans-I/O core: ``tick(now) -> list[Action]``, no sockets, no clock.

:class:`TimerCore` knows every deadline of a :class:`~cryptolink.engine.connection.ManagedConnection` and says
what is due; the connection's timer task sleeps until :meth:`TimerCore.next_deadline` (at most
``EngineConfig.tick_s``), calls :meth:`TimerCore.tick` and executes the returned actions. Times are plain
floats (monotonic seconds), so the rules are tested with numbers (``tests/engine/test_timer_core.py``).

Keepalive (per open socket, :class:`KeepaliveTimer`) follows the adapter's
:class:`~cryptolink.exchanges.base.KeepalivePolicy`: an application ping (``app_ping_frame``, e.g. OKX text
``ping``, https://www.okx.com/docs-v5/en/#overview-websocket-connect) after ``app_ping_idle_s`` without any
received frame and, for the round-trip time, every ``app_ping_interval_s`` while data flows
(:class:`SendAppPing`); a protocol ping every ``protocol_ping_interval_s`` (:class:`SendPing`); either
unanswered for ``pong_timeout_s`` means the socket is dead (:class:`CloseDead`). Server pings are answered by
the transport, server application pings by the session (``ReplyRequired``).

Data watchdogs (primary socket only): a stale subscription is reported (:class:`StreamStale`) and, on its
first report, resubscribed once on the same socket (:class:`ResubscribeStale`; not again while it stays
silent). The socket is reset (:class:`ConnectionSilent`) only when the connection as a whole received no
market data for its own learned threshold (the connection-level stream
:data:`~cryptolink.engine.watchdog.CONNECTION_KEY`; before its first market data the allowance is at least
``max_idle_s``, so a connection whose streams are all naturally quiet is not reset every
``first_data_timeout_s``).

Ack timeouts (primary socket): a subscribe without ack ``ack_timeout_s`` after sending is retried once, then
given up (:class:`AckTimedOut`); they are checked on every tick (at most ``tick_s`` late), not scheduled.

Rotation: :class:`RotateNow` once the lifetime deadline set by :meth:`TimerCore.set_rotation_deadline` passed.
Housekeeping: :class:`ScoreQuality` every ``quality_interval_s`` in every state, :class:`ReportDataRate`
every ``data_event_interval_s`` while a primary socket is open.

Contract with the executor: it applies :class:`AckTimedOut` to the registry (``mark_unsent`` or ``reject``)
before the next tick, and tells the core about sockets opening and closing (:meth:`TimerCore.open_session`,
:meth:`TimerCore.close_session`, :meth:`TimerCore.set_primary`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import cast

from cryptolink.engine.subscriptions import SubscriptionRegistry
from cryptolink.engine.watchdog import CONNECTION_KEY, StaleReport, Watchdog, WatchdogConfig
from cryptolink.exchanges.base import KeepalivePolicy
from cryptolink.models import Channel, Subscription

__all__ = [
    "AckTimedOut",
    "Action",
    "CloseDead",
    "ConnectionSilent",
    "KeepaliveTimer",
    "ReportDataRate",
    "ResubscribeStale",
    "RotateNow",
    "ScoreQuality",
    "SendAppPing",
    "SendPing",
    "StreamStale",
    "TimerCore",
]

StreamKey = tuple[Channel, str]


# --------------------------------------------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class SendAppPing:
    """Send the application ping ``frame`` on socket ``sid``."""

    sid: int
    frame: str


@dataclass(frozen=True, slots=True)
class SendPing:
    """Send a WebSocket protocol ping on socket ``sid`` and report its pong (:meth:`KeepaliveTimer.protocol_pong`)."""

    sid: int


@dataclass(frozen=True, slots=True)
class CloseDead:
    """Socket ``sid`` failed its keepalive (``reason`` says which ping went unanswered): end it."""

    sid: int
    reason: str


@dataclass(frozen=True, slots=True)
class ConnectionSilent:
    """The primary socket ``sid`` delivered no market data at all for ``report.threshold_s``: reset it."""

    sid: int
    report: StaleReport


@dataclass(frozen=True, slots=True)
class StreamStale:
    """Subscription ``key`` is silent past its threshold (``report.count``: reports since its last data)."""

    key: StreamKey
    report: StaleReport


@dataclass(frozen=True, slots=True)
class ResubscribeStale:
    """Resubscribe these newly stale subscriptions once on the primary socket (the cheap fix)."""

    keys: tuple[StreamKey, ...]


@dataclass(frozen=True, slots=True)
class AckTimedOut:
    """No ack for ``subscription`` within ``ack_timeout_s``: ``retry`` it (first time) or give it up."""

    subscription: Subscription
    retry: bool


@dataclass(frozen=True, slots=True)
class RotateNow:
    """The primary socket reached its rotation deadline: start a make-before-break rotation."""

    reason: str


@dataclass(frozen=True, slots=True)
class ScoreQuality:
    """Re-score the connection's quality."""


@dataclass(frozen=True, slots=True)
class ReportDataRate:
    """Emit the sampled ``data_received`` event covering the last ``elapsed_s`` seconds."""

    elapsed_s: float


Action = (
    SendAppPing
    | SendPing
    | CloseDead
    | ConnectionSilent
    | StreamStale
    | ResubscribeStale
    | AckTimedOut
    | RotateNow
    | ScoreQuality
    | ReportDataRate
)


# --------------------------------------------------------------------------------------------------- keepalive


class KeepaliveTimer:
    """Keepalive state of one socket (monotonic seconds). Created by :meth:`TimerCore.open_session`; the
    socket's reader reports into it (:meth:`received`, :meth:`app_pong`, :meth:`protocol_pong`)."""

    __slots__ = (
        "_app_ping_at",
        "_app_ping_sent",
        "_last_recv",
        "_next_proto_ping",
        "_policy",
        "_proto_ping_at",
        "sid",
    )

    def __init__(self, sid: int, policy: KeepalivePolicy, now: float) -> None:
        self.sid = sid
        self._policy = policy
        self._last_recv = now
        self._app_ping_at: float | None = None
        self._app_ping_sent = now
        self._proto_ping_at: float | None = None
        interval = policy.protocol_ping_interval_s
        self._next_proto_ping = now + interval if interval is not None else math.inf

    def received(self, now: float) -> None:
        """Any frame arrived at ``now`` (the socket is not idle)."""
        self._last_recv = now

    def app_pong(self, now: float) -> float | None:
        """An application pong arrived: the round-trip time in s, or ``None`` if no app ping was out."""
        sent = self._app_ping_at
        if sent is None:
            return None
        self._app_ping_at = None
        return now - sent

    def protocol_pong(self, now: float) -> None:
        """The protocol ping answered at ``now``: the next one is due ``protocol_ping_interval_s`` later."""
        self._proto_ping_at = None
        interval = self._policy.protocol_ping_interval_s
        self._next_proto_ping = now + interval if interval is not None else math.inf

    def tick(self, now: float, out: list[Action]) -> None:
        """Append what is due at ``now`` to ``out``."""
        ka = self._policy
        if ka.app_ping_frame is not None and ka.app_ping_idle_s is not None:
            if self._app_ping_at is not None:
                if now - self._app_ping_at >= ka.pong_timeout_s:
                    out.append(CloseDead(self.sid, f"no pong within {ka.pong_timeout_s} s of app ping"))
                    return
            elif now - self._last_recv >= ka.app_ping_idle_s or (
                ka.app_ping_interval_s is not None and now - self._app_ping_sent >= ka.app_ping_interval_s
            ):
                self._app_ping_at = self._app_ping_sent = now
                out.append(SendAppPing(self.sid, ka.app_ping_frame))
        if ka.protocol_ping_interval_s is not None:
            if self._proto_ping_at is not None:
                if now - self._proto_ping_at >= ka.pong_timeout_s:
                    out.append(CloseDead(self.sid, f"protocol ping unanswered for {ka.pong_timeout_s} s"))
            elif now >= self._next_proto_ping:
                self._proto_ping_at = now
                out.append(SendPing(self.sid))

    def next_deadline(self) -> float:
        """Earliest time :meth:`tick` may have something to do (``inf``: never)."""
        ka = self._policy
        t = math.inf
        if ka.app_ping_frame is not None and ka.app_ping_idle_s is not None:
            if self._app_ping_at is not None:
                t = self._app_ping_at + ka.pong_timeout_s
            else:
                t = self._last_recv + ka.app_ping_idle_s
                if ka.app_ping_interval_s is not None:
                    t = min(t, self._app_ping_sent + ka.app_ping_interval_s)
        if ka.protocol_ping_interval_s is not None:
            p = (
                self._next_proto_ping
                if self._proto_ping_at is None
                else self._proto_ping_at + ka.pong_timeout_s
            )
            t = min(t, p)
        return t


# --------------------------------------------------------------------------------------------------- the core


class TimerCore:
    """Every timer of one connection (see the module docstring). Owns the data watchdogs and the set of
    stale subscriptions.

    Args:
        keepalive: the adapter's keepalive rule.
        watchdog: data-idle thresholds (the connection-level watchdog allows at least ``max_idle_s`` before
            the first market data).
        ack_timeout_s: subscribe ack timeout, s.
        quality_interval_s: :class:`ScoreQuality` period, s.
        data_event_interval_s: :class:`ReportDataRate` period, s.
        now: creation time (monotonic s).
    """

    def __init__(
        self,
        *,
        keepalive: KeepalivePolicy,
        watchdog: WatchdogConfig,
        ack_timeout_s: float,
        quality_interval_s: float,
        data_event_interval_s: float,
        now: float,
    ) -> None:
        self._keepalive = keepalive
        self.watchdog = Watchdog(watchdog)
        """Per-subscription data watchdog (keys ``(channel, symbol)``)."""
        self._conn_watchdog = Watchdog(
            replace(watchdog, first_data_timeout_s=max(watchdog.first_data_timeout_s, watchdog.max_idle_s))
        )
        self._ack_timeout_s = ack_timeout_s
        self._quality_interval_s = quality_interval_s
        self._data_event_interval_s = data_event_interval_s
        self._sessions: dict[int, KeepaliveTimer] = {}
        self._primary: int | None = None
        self._registry: SubscriptionRegistry | None = None
        self._stale: set[StreamKey] = set()
        self._rotate_at: float | None = None
        self._next_quality = now
        self._last_data_event = now

    # sockets --------------------------------------------------------------------------------------------------
    def open_session(self, sid: int, now: float) -> KeepaliveTimer:
        """A socket opened at ``now``: its keepalive starts."""
        timer = self._sessions[sid] = KeepaliveTimer(sid, self._keepalive, now)
        return timer

    def close_session(self, sid: int) -> None:
        """Socket ``sid`` ended: no more keepalive for it; if it was the primary, no primary until the next
        :meth:`set_primary`."""
        self._sessions.pop(sid, None)
        if self._primary == sid:
            self._primary = None
            self._registry = None

    def set_primary(self, sid: int, registry: SubscriptionRegistry, now: float, *, rearm: bool) -> None:
        """Socket ``sid`` (with the subscription ``registry``) is the primary now. ``rearm`` (a fresh connect,
        not a rotation): every watchdog starts its first-data timeout again and no stream is stale."""
        self._primary = sid
        self._registry = registry
        if rearm:
            self._stale.clear()
            self.watchdog.arm_all(now)
            for sub in registry.desired:
                self.watchdog.arm(sub.key, now)
            self._conn_watchdog.arm(CONNECTION_KEY, now)

    @property
    def primary(self) -> int | None:
        """The primary socket's id, ``None`` while not connected."""
        return self._primary

    def set_rotation_deadline(self, at: float | None) -> None:
        """:class:`RotateNow` once ``at`` (monotonic s) is reached; ``None``: no rotation scheduled."""
        self._rotate_at = at

    @property
    def rotation_deadline(self) -> float | None:
        """The scheduled rotation time (monotonic s), if any."""
        return self._rotate_at

    # data ------------------------------------------------------------------------------------------------------
    def market_data(self, keys: Iterable[StreamKey], now: float) -> None:
        """Market data for ``keys`` arrived at ``now`` (once per received batch)."""
        on_data = self.watchdog.on_data
        for key in keys:
            on_data(key, now)
        self._conn_watchdog.on_data(CONNECTION_KEY, now)

    def arm(self, key: StreamKey, now: float) -> None:
        """(Re)start the first-data timeout of subscription ``key``."""
        self.watchdog.arm(key, now)

    def forget(self, key: StreamKey) -> None:
        """Stop watching subscription ``key`` (unsubscribed or rejected)."""
        self.watchdog.remove(key)
        self._stale.discard(key)

    def is_stale(self, key: StreamKey) -> bool:
        """Whether ``key`` was reported stale and had no data since (as of the last tick)."""
        return key in self._stale

    # the tick --------------------------------------------------------------------------------------------------
    def tick(self, now: float) -> list[Action]:
        """What is due at ``now`` (monotonic s), in execution order."""
        out: list[Action] = []
        for timer in self._sessions.values():
            timer.tick(now, out)
        if now >= self._next_quality:
            self._next_quality = now + self._quality_interval_s
            out.append(ScoreQuality())
        sid, reg = self._primary, self._registry
        if sid is None or reg is None:
            return out
        if any(type(a) is CloseDead and a.sid == sid for a in out):
            return out
        for p in reg.expired(now, self._ack_timeout_s):
            out.append(AckTimedOut(p.subscription, p.attempts < 2))
        silent = self._conn_watchdog.check(now)
        if silent and reg.desired:
            out.append(ConnectionSilent(sid, silent[0]))
            return out
        wd = self.watchdog
        for key in [k for k in self._stale if not wd.is_stale(k) or not reg.is_desired(k)]:
            self._stale.discard(key)
        fix: list[StreamKey] = []
        for r in wd.check(now):
            if not isinstance(r.key, tuple):
                continue
            key = cast("StreamKey", r.key)
            if not reg.is_desired(key):
                continue
            self._stale.add(key)
            out.append(StreamStale(key, r))
            if r.count == 1:
                fix.append(key)
        if fix:
            out.append(ResubscribeStale(tuple(fix)))
        if self._rotate_at is not None and now >= self._rotate_at:
            self._rotate_at = None
            out.append(RotateNow("connection lifetime"))
        if now - self._last_data_event >= self._data_event_interval_s:
            out.append(ReportDataRate(now - self._last_data_event))
            self._last_data_event = now
        return out

    def next_deadline(self) -> float:
        """Earliest monotonic time at which :meth:`tick` may have something to do (ack timeouts excluded: they
        are checked on every tick)."""
        t = self._next_quality
        for timer in self._sessions.values():
            t = min(t, timer.next_deadline())
        if self._primary is not None:
            for wd in (self.watchdog, self._conn_watchdog):
                d = wd.next_deadline()
                if d is not None:
                    t = min(t, d)
            if self._rotate_at is not None:
                t = min(t, self._rotate_at)
            t = min(t, self._last_data_event + self._data_event_interval_s)
        return t
