"""A :class:`~cryptolink.engine.ManagedConnection` instrumented for latency benchmarks.

It records the wall time (``time.perf_counter``, s) of connection events and of ``on_data`` calls, and lets a
benchmark await "the next event of type X" or "the first market data after the next reconnect" as futures
(no sleeping to wait for things).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

from cryptolink.clock import SystemClock
from cryptolink.engine import (
    ConnectionEvent,
    ConnectionEventType,
    ConnectionState,
    EngineConfig,
    ManagedConnection,
    default_transport,
)
from cryptolink.exchanges.base import BookMessage
from cryptolink.exchanges.binance import BinanceSpotAdapter
from cryptolink.models import Channel, Subscription, Ticker, Trade

__all__ = ["Probe", "wait_until"]


async def wait_until(cond: Callable[[], bool], timeout_s: float, poll_s: float = 0.01) -> None:
    """Poll ``cond()`` every ``poll_s`` until true; ``TimeoutError`` after ``timeout_s`` (bounded polling)."""

    async def loop() -> None:
        while True:
            if cond():
                return
            await asyncio.sleep(poll_s)

    await asyncio.wait_for(loop(), timeout_s)


class Probe:
    """One Binance spot connection to ``ws_url`` with ``subscriptions`` (default: BTC/USDT trades, ticker, book).

    Attributes:
        conn: the connection.
        last_data_s: ``perf_counter`` time of the last ``on_data`` call.
    """

    def __init__(
        self,
        ws_url: str,
        config: EngineConfig,
        subscriptions: Sequence[Subscription] | None = None,
        conn_id: str = "probe",
    ) -> None:
        self.adapter = BinanceSpotAdapter(ws_base_url=ws_url)
        subs = list(subscriptions or [Subscription(c, "BTC/USDT") for c in Channel])
        spec = self.adapter.plan_connections(subs)[0]
        self.conn = ManagedConnection(
            self.adapter,
            spec,
            conn_id=conn_id,
            config=config,
            clock=SystemClock(),
            transport=default_transport(),
            on_data=self._on_data,
            on_event=self._on_event,
        )
        self.last_data_s = 0.0
        self.data_calls = 0
        self._event_waiters: list[tuple[ConnectionEventType, asyncio.Future[float]]] = []
        self._data_after_reconnect: asyncio.Future[float] | None = None
        self._armed = False

    def _on_data(self, _conn: ManagedConnection, _items: list[Trade | Ticker | BookMessage]) -> None:
        now = time.perf_counter()
        self.last_data_s = now
        self.data_calls += 1
        fut = self._data_after_reconnect
        if self._armed and fut is not None and not fut.done():
            fut.set_result(now)

    def _on_event(self, event: ConnectionEvent) -> None:
        now = time.perf_counter()
        if event.type in (ConnectionEventType.RECONNECT_SUCCESS, ConnectionEventType.CONNECTED):
            self._armed = True
        keep = []
        for kind, fut in self._event_waiters:
            if fut.done():
                continue
            if kind is event.type:
                fut.set_result(now)
            else:
                keep.append((kind, fut))
        self._event_waiters = keep

    def next_event(self, kind: ConnectionEventType) -> asyncio.Future[float]:
        """A future resolved with the ``perf_counter`` time of the next event of type ``kind``."""
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._event_waiters.append((kind, fut))
        return fut

    def data_after_next_reconnect(self) -> asyncio.Future[float]:
        """A future resolved at the first ``on_data`` call after the next (re)connect."""
        self._armed = False
        self._data_after_reconnect = asyncio.get_running_loop().create_future()
        return self._data_after_reconnect

    async def start(self, timeout_s: float = 10.0) -> None:
        await self.conn.start()
        await asyncio.wait_for(self.conn.wait_for_state(ConnectionState.CONNECTED), timeout_s)

    async def stop(self) -> None:
        await self.conn.stop()

    def flowing(self, within_s: float = 0.2) -> bool:
        """Connected and market data seen in the last ``within_s`` seconds."""
        return (
            self.conn.state is ConnectionState.CONNECTED and time.perf_counter() - self.last_data_s < within_s
        )
