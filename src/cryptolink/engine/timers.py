"""The timer task of a :class:`~cryptolink.engine.connection.ManagedConnection`: every ``EngineConfig.tick_s``
of the injected clock it checks keepalive, watchdogs, ack timeouts, the rotation deadline, quality, the
sampled ``data_received`` event and the backoff reset.

Keepalive follows the adapter's :class:`~cryptolink.exchanges.base.KeepalivePolicy`: an application ping
(``app_ping_frame``, e.g. OKX text ``ping``: docs/protocols/okx.md "Keepalive") after ``app_ping_idle_s``
without any received frame and, for the round-trip time, every ``app_ping_interval_s`` while data flows; a
protocol ping every ``protocol_ping_interval_s``; either unanswered for ``pong_timeout_s`` means the socket is
dead (``heartbeat_timeout`` event, then reconnect). Server pings are answered by the transport.

Watchdogs: a stale subscription is resubscribed once on the same socket (cheap fix; not again while it stays
silent) and the state becomes ``unstable``. The session is reset (reconnect) only when the CONNECTION as a
whole received no market data for its own learned threshold (the connection-level stream
:data:`~cryptolink.engine.watchdog.CONNECTION_KEY`; before its first market data the allowance is
``max_idle_s``, so a connection whose streams are all naturally quiet, e.g. a thin symbol's trades, is not
reset every ``first_data_timeout_s`` while it waits for its first message).

Ack timeouts: a subscribe without ack after ``EngineConfig.ack_timeout_s`` is reported and re-sent once; after
a second timeout it is recorded as rejected (code ``ack_timeout``).

The backoff resets once the session delivered market data and stayed open ``BackoffPolicy.reset_after_s``
after its first data (see :mod:`~cryptolink.engine.backoff`). Quality is re-scored every
``quality_interval_s`` in every state (a connection that is down scores low, truthfully).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, cast

from cryptolink.engine.errors import TransportError
from cryptolink.engine.events import ConnectionEventType, Severity
from cryptolink.engine.quality import QualityChange
from cryptolink.engine.rotation import request_rotation
from cryptolink.engine.session import Session, send, send_pending
from cryptolink.engine.state import ACTIVE_STATES
from cryptolink.models import Channel, Subscription

if TYPE_CHECKING:
    from cryptolink.engine.connection import ManagedConnection

__all__ = ["tick", "tick_loop"]

_log = logging.getLogger("cryptolink.engine.connection")  # the connection's logger, as before the split

_E = ConnectionEventType


async def tick_loop(conn: ManagedConnection) -> None:
    """Call :func:`tick` every ``conn.config.tick_s`` until the connection stops (failures are logged)."""
    while not conn._stopping:
        await conn._clock.sleep(conn.config.tick_s)
        try:
            tick(conn, conn._clock.monotonic())
        except Exception:
            _log.exception("%s: tick failed", conn.conn_id)


def tick(conn: ManagedConnection, now: float) -> None:
    """One timer pass at ``now`` (monotonic s): keepalive on every live session, quality always, the rest on
    the primary."""
    for live in conn._live_sessions():
        _check_keepalive(conn, live, now)
    if now >= conn._next_quality:
        conn._next_quality = now + conn.config.quality_interval_s
        _score(conn, now)
    sess = conn._primary
    if sess is None or not sess.alive or conn.state not in ACTIVE_STATES:
        return
    _check_acks(conn, sess, now)
    _check_watchdog(conn, sess, now)
    if not sess.alive:
        return
    if conn._rotate_at is not None and now >= conn._rotate_at:
        request_rotation(conn, "connection lifetime")
    if now - conn._last_data_event >= conn.config.data_event_interval_s:
        n = conn.messages - conn._msgs_at_data_event
        if n > 0:
            conn._emit(
                _E.DATA_RECEIVED,
                Severity.INFO,
                f"{n} frames in the last {now - conn._last_data_event:.0f} s",
            )
        conn._last_data_event = now
        conn._msgs_at_data_event = conn.messages
    conn._update_health()
    if conn._healthy_since is not None and conn._backoff.should_reset(now - conn._healthy_since):
        conn._backoff.reset()


def _score(conn: ManagedConnection, now: float) -> None:
    q = conn._quality
    change = q.tick(now, conn.messages, conn._errors_total(), conn._uptime_pct(), conn._stream_health())
    if change is QualityChange.DEGRADED:
        conn._emit(_E.QUALITY_DEGRADED, Severity.WARNING, f"quality score {q.last_score:.0f}")
        _log.warning("%s: quality degraded: score %.0f", conn.conn_id, q.last_score)
    elif change is QualityChange.IMPROVED:
        conn._emit(_E.QUALITY_IMPROVED, Severity.INFO, f"quality score {q.last_score:.0f}")
        _log.info("%s: quality recovered: score %.0f", conn.conn_id, q.last_score)


def _check_keepalive(conn: ManagedConnection, sess: Session, now: float) -> None:
    ka = conn._policy.keepalive
    if ka.app_ping_frame is not None and ka.app_ping_idle_s is not None:
        if sess.app_ping_at is not None:
            if now - sess.app_ping_at > ka.pong_timeout_s:
                _dead(conn, sess, f"no pong within {ka.pong_timeout_s} s of app ping")
                return
        elif now - sess.last_recv >= ka.app_ping_idle_s or (
            ka.app_ping_interval_s is not None and now - sess.app_ping_sent >= ka.app_ping_interval_s
        ):
            sess.app_ping_at = sess.app_ping_sent = now
            conn._spawn(send(conn, sess, ka.app_ping_frame))
    interval = ka.protocol_ping_interval_s
    if interval is not None:
        if sess.proto_ping_at is not None:
            if now - sess.proto_ping_at > ka.pong_timeout_s:
                _dead(conn, sess, f"protocol ping unanswered for {ka.pong_timeout_s} s")
        elif now >= sess.next_proto_ping:
            sess.proto_ping_at = now
            conn._spawn(_protocol_ping(conn, sess, interval))


async def _protocol_ping(conn: ManagedConnection, sess: Session, interval: float) -> None:
    await sess.bucket.acquire()
    if not sess.alive:
        return
    ping = asyncio.ensure_future(sess.ws.ping())
    ended: asyncio.Future[Any] = sess.ended
    await asyncio.wait({ping, ended}, return_when=asyncio.FIRST_COMPLETED)
    if not ping.done():
        ping.cancel()
        return
    exc = ping.exception()
    if exc is not None:
        if isinstance(exc, TransportError):
            sess.end(f"ping failed: {exc}")
            return
        raise exc
    conn._quality.record_rtt(ping.result() * 1000.0)
    sess.proto_ping_at = None
    sess.next_proto_ping = conn._clock.monotonic() + interval


def _dead(conn: ManagedConnection, sess: Session, why: str) -> None:
    conn._emit(_E.HEARTBEAT_TIMEOUT, Severity.ERROR, f"session {sess.sid}: {why}")
    _log.warning("%s: keepalive failed on session %d: %s", conn.conn_id, sess.sid, why)
    sess.end(f"keepalive: {why}")


def _check_acks(conn: ManagedConnection, sess: Session, now: float) -> None:
    resend = False
    for p in sess.registry.expired(now, conn.config.ack_timeout_s):
        sub = p.subscription
        if p.attempts < 2:
            conn._emit(
                _E.ERROR,
                Severity.WARNING,
                f"no ack for {sub.channel} {sub.symbol} in {conn.config.ack_timeout_s} s, retrying",
            )
            sess.registry.mark_unsent(sub)
            resend = True
        else:
            sess.registry.reject(sub, "ack_timeout", "no ack after one retry")
            conn._watchdog.remove(sub.key)
            _log.error(
                "%s: %s %s: no ack after one retry; not retried again", conn.conn_id, sub.channel, sub.symbol
            )
            conn._emit(
                _E.SUBSCRIPTION_REJECTED,
                Severity.ERROR,
                f"{sub.channel} {sub.symbol}: no ack after one retry (not retried again)",
                error="ack_timeout",
                key=sub.key,
            )
    if resend:
        conn._spawn(send_pending(conn, sess))


def _check_watchdog(conn: ManagedConnection, sess: Session, now: float) -> None:
    reg = sess.registry
    silent = conn._conn_watchdog.check(now)
    if silent and reg.desired:
        r = silent[0]
        what = "no market data since connecting" if r.first_data else "no market data"
        text = f"{what} for {r.silence_s:.1f} s (threshold {r.threshold_s:.1f} s)"
        conn._emit(_E.STALE_SUBSCRIPTION, Severity.ERROR, f"connection silent: {text}, resetting the session")
        _log.warning("%s: connection silent: %s; resetting the session", conn.conn_id, text)
        sess.end(f"data watchdog: {text}")
        return
    for key in [k for k in conn._stale if not conn._watchdog.is_stale(k) or not reg.is_desired(k)]:
        conn._stale.discard(key)
    reports = conn._watchdog.check(now)
    if not reports:
        return
    fix: list[Subscription] = []
    for r in reports:
        if not isinstance(r.key, tuple):
            continue
        key = cast("tuple[Channel, str]", r.key)
        if not reg.is_desired(key):
            continue
        conn._stale.add(key)
        what = "no first message" if r.first_data else "silent"
        text = f"{key[0]} {key[1]} {what} for {r.silence_s:.1f} s (threshold {r.threshold_s:.1f} s)"
        conn._emit(_E.STALE_SUBSCRIPTION, Severity.WARNING, text, key=key)
        if r.count == 1:
            _log.warning("%s: %s; re-subscribing it once", conn.conn_id, text)
        if r.count == 1:
            fix.extend(s for s in reg.desired if s.key == key)
    if fix:
        conn._spawn(conn.resubscribe(fix, rearm=False))
