"""When to rotate a socket (pure) and the wait helper of the rotation procedure.

Make-before-break rotation (the procedure is :meth:`ManagedConnection._rotate
<cryptolink.engine.connection.ManagedConnection>`): ``rotation_lead_s`` (jittered) before
``ConnectionPolicy.max_lifetime_s`` (Binance 24 h:
https://developers.binance.com/docs/binance-spot-api-docs/web-socket-streams#general-wss-information), or on
``ServerNotice(rotate=True)`` (Binance ``serverShutdown``, OKX notice 64008), a second socket is opened and
subscribed; once market data flowed on it for every subscription (or after ``rotation_flow_timeout_s``), it
becomes the primary and the old socket is closed (code 1000). If the replacement cannot be opened, the old
socket stays and rotation is retried after ``rotation_retry_s``; if the old socket dies first, it is a normal
reconnect.

During the overlap both sockets deliver to ``on_data``; the consumer drops duplicates (see the duplicate
contract in :mod:`~cryptolink.engine.connection`).
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from cryptolink.clock import Clock

__all__ = ["rotation_deadline", "wait_any"]


def rotation_deadline(
    opened_at: float, *, lifetime_s: float | None, lead_s: float, jitter: float, rng: random.Random
) -> float | None:
    """Monotonic time (s) to rotate a socket opened at ``opened_at``: ``lead_s * (1 + uniform(0, jitter))``
    before ``lifetime_s``, the lead at most half the lifetime; ``None`` without a lifetime."""
    if lifetime_s is None:
        return None
    lead = min(lead_s * (1.0 + rng.uniform(0.0, jitter)), lifetime_s / 2)
    return opened_at + lifetime_s - lead


async def wait_any(clock: Clock, timeout_s: float, *awaitables: asyncio.Future[Any]) -> None:
    """Wait until one of ``awaitables`` is done or ``timeout_s`` of clock time passed (nothing is cancelled
    but the timer)."""
    sleeper = asyncio.ensure_future(clock.sleep(timeout_s))
    try:
        await asyncio.wait({sleeper, *awaitables}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        sleeper.cancel()
