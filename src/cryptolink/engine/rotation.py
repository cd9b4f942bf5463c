"""Make-before-break rotation of a :class:`~cryptolink.engine.connection.ManagedConnection`.

``rotation_lead_s`` (jittered) before ``ConnectionPolicy.max_lifetime_s`` (Binance 24 h: docs/protocols/binance.md
"Limits"), or on ``ServerNotice(rotate=True)`` (Binance ``serverShutdown``, OKX notice 64008), a second socket is
opened and subscribed; once market data flowed on it for every subscription (or after
``rotation_flow_timeout_s``), it becomes the primary and the old socket is closed (code 1000). If the
replacement cannot be opened, the old socket stays and rotation is retried after ``rotation_retry_s``; if the
old socket dies first, it is a normal reconnect.

During the overlap both sockets deliver to ``on_data``; the consumer drops duplicates (see the duplicate
contract in :mod:`~cryptolink.engine.connection`).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from cryptolink.clock import Clock
from cryptolink.engine.events import ConnectionEventType, Severity
from cryptolink.engine.session import ROTATED, STOPPED, Session, close_session, open_session, send_pending

if TYPE_CHECKING:
    from cryptolink.engine.connection import ManagedConnection

__all__ = ["request_rotation", "rotate", "schedule_rotation"]

_E = ConnectionEventType


def schedule_rotation(conn: ManagedConnection, sess: Session) -> None:
    """Set the rotation deadline of the new primary ``sess`` (none without ``max_lifetime_s``)."""
    lifetime = conn._policy.max_lifetime_s
    if lifetime is None:
        conn._rotate_at = None
        return
    lead = conn.config.rotation_lead_s * (1.0 + conn._rng.uniform(0.0, conn.config.rotation_jitter))
    lead = min(lead, lifetime / 2)
    conn._rotate_at = sess.opened_at + lifetime - lead


def request_rotation(conn: ManagedConnection, reason: str) -> None:
    """Start a rotation task unless one is running."""
    if conn._rotation is not None and not conn._rotation.done():
        return
    conn._rotate_at = None
    conn._rotation = asyncio.create_task(rotate(conn, reason), name=f"{conn.conn_id}-rotation")


async def rotate(conn: ManagedConnection, reason: str) -> None:
    """Open and subscribe a replacement socket, wait for its data to flow, then swap it in."""
    old = conn._primary
    if old is None or not old.alive:
        return
    t0 = conn._clock.monotonic()
    conn._emit(_E.ROTATION_STARTED, Severity.INFO, f"make-before-break rotation: {reason}")
    registry = conn._registry.fork()
    try:
        cand = await open_session(conn, registry)
    except Exception as exc:
        conn.transport_errors += 1
        conn._emit(
            _E.ERROR,
            Severity.WARNING,
            f"rotation: replacement failed, old socket kept, retry in {conn.config.rotation_retry_s} s",
            error=f"{type(exc).__name__}: {exc}",
        )
        conn._rotate_at = conn._clock.monotonic() + conn.config.rotation_retry_s
        return
    conn._candidate = cand
    try:
        cand.expected = {s.key for s in registry.desired}
        if not cand.expected:
            cand.flow_event.set()
        await send_pending(conn, cand)
        if not cand.flow_event.is_set():
            flow = asyncio.ensure_future(cand.flow_event.wait())
            try:
                await _wait_any(conn._clock, conn.config.rotation_flow_timeout_s, flow, cand.ended, old.ended)
            finally:
                flow.cancel()
        if not old.alive or conn._primary is not old or conn._stopping:
            return  # the old socket died first: a normal reconnect takes over
        if not cand.alive:
            conn._emit(_E.ERROR, Severity.WARNING, "rotation: replacement socket died, keeping the old one")
            conn._rotate_at = conn._clock.monotonic() + conn.config.rotation_retry_s
            return
        conn._candidate = None
        conn._primary = cand
        conn._registry = registry
        conn._connected_since_ns = conn._clock.time_ns()
        schedule_rotation(conn, cand)
        conn.rotations += 1
        old.end(ROTATED)
        conn._spawn(close_session(old))
        flowing = "all flowing" if cand.flow_event.is_set() else "flow timeout"
        conn._emit(
            _E.ROTATION_COMPLETED,
            Severity.INFO,
            f"session {cand.sid} replaced session {old.sid} ({flowing})",
            latency_ms=(conn._clock.monotonic() - t0) * 1000.0,
        )
    finally:
        if conn._candidate is cand:
            conn._candidate = None
            cand.end(STOPPED)
            conn._spawn(close_session(cand))


async def _wait_any(clock: Clock, timeout_s: float, *awaitables: asyncio.Future[Any]) -> None:
    sleeper = asyncio.ensure_future(clock.sleep(timeout_s))
    try:
        await asyncio.wait({sleeper, *awaitables}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        sleeper.cancel()
