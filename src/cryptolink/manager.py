"""``ExchangeManager``: the unified Python API over every exchange.

>>> manager = ExchangeManager.builder().exchange("binance", symbols=["BTC/USDT"]).build()
>>> await manager.start()
>>> async for trade in manager.trades("binance", "BTC/USDT"):
...     print(trade.price, trade.amount, trade.side)

One :class:`~cryptolink.feed.Feed` per configured exchange entry (an exchange and a market); each feed owns its
connections (:class:`~cryptolink.engine.ManagedConnection`). Checked events go through one bounded
:class:`~cryptolink.bus.Bus` to async iterators, callbacks and sinks. Statistics are immutable snapshots.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from cryptolink.book.orderbook import OrderBook
from cryptolink.bus import EVENTS_CHANNEL, Bus, CallbackHandle, OverflowPolicy, Subscriber
from cryptolink.clock import Clock, SystemClock
from cryptolink.config import CryptolinkConfig, ExchangeConfig
from cryptolink.engine import (
    BackoffPolicy,
    ConnectionEvent,
    ConnectionState,
    EngineConfig,
    TotalStats,
    Transport,
    WatchdogConfig,
    combine,
    default_transport,
)
from cryptolink.exchanges import get_adapter
from cryptolink.feed import Feed, FeedStats
from cryptolink.models import Channel, Market, Subscription
from cryptolink.report import ReportRow, render_report

__all__ = ["ExchangeManager", "ManagerBuilder", "ManagerStats", "engine_config_for"]

log = logging.getLogger(__name__)

_UNHEALTHY = frozenset({ConnectionState.FAILED, ConnectionState.UNSTABLE, ConnectionState.RECONNECTING})


@dataclass(frozen=True, slots=True)
class ManagerStats:
    """Everything the manager counts, as one immutable snapshot: per feed, and in total."""

    feeds: tuple[FeedStats, ...]
    total: TotalStats


def engine_config_for(
    entry: ExchangeConfig, *, event_log_size: int = 100, seed: int | None = None
) -> EngineConfig:
    """The engine tunables of one config entry (reconnect, watchdog, rotation)."""
    rc = entry.reconnect
    wd = entry.watchdog
    return EngineConfig(
        backoff=BackoffPolicy(
            base_s=rc.initial_delay_s,
            factor=rc.multiplier,
            cap_s=rc.max_delay_s,
            max_attempts=rc.max_attempts,
            reset_after_s=rc.reset_after_s,
        ),
        watchdog=WatchdogConfig(
            first_data_timeout_s=wd.first_data_timeout_s,
            min_idle_s=wd.min_idle_s,
            max_idle_s=wd.max_idle_s,
        ),
        rotation_lead_s=entry.rotation_lead_s,
        event_log_size=event_log_size,
        seed=seed,
    )


class ExchangeManager:
    """Holds every configured exchange's streams; see the module docstring.

    Args:
        config: the validated configuration (:func:`cryptolink.config.load_config`).
        clock: time source (tests inject :class:`~cryptolink.clock.FakeClock`).
        transport: WebSocket factory (default :func:`~cryptolink.engine.default_transport`: the picows
            transport; pass :class:`~cryptolink.engine.WebsocketsTransport` for the pure-Python one).
        bus: the event bus (default: one sized by ``config.consumer_queue_size``/``overflow_policy``).
        seed: seed for backoff and rotation jitter (``None``: unpredictable).
    """

    def __init__(
        self,
        config: CryptolinkConfig,
        *,
        clock: Clock | None = None,
        transport: Transport | None = None,
        bus: Bus | None = None,
        seed: int | None = None,
    ) -> None:
        self.config = config
        self._clock: Clock = clock or SystemClock()
        self._transport: Transport = transport or default_transport()
        self.bus = bus or Bus(
            default_maxsize=config.consumer_queue_size,
            default_overflow=config.overflow_policy,
            clock=self._clock,
        )
        self._seed = seed
        self._feeds: dict[str, Feed] = {}
        self._entries: dict[str, ExchangeConfig] = {}
        self._last_event: dict[str, ConnectionEvent] = {}
        self._http: aiohttp.ClientSession | None = None
        self._started = False

    @staticmethod
    def builder() -> ManagerBuilder:
        """A fluent builder (see :class:`ManagerBuilder`)."""
        return ManagerBuilder()

    # --------------------------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Connect every enabled exchange of the config. Returns once every connection has been started."""
        if self._started:
            return
        self._started = True
        self._http = aiohttp.ClientSession()
        for name, entry in self.config.enabled_exchanges().items():
            await self.add_exchange(name, entry)

    async def stop(self) -> None:
        """Stop gracefully: unsubscribe and close every connection, then close the bus (consumers end)."""
        feeds = list(self._feeds.values())
        self._feeds.clear()
        await asyncio.gather(*(f.stop() for f in feeds), return_exceptions=True)
        if self._http is not None:
            await self._http.close()
            self._http = None
        self._started = False
        self.bus.close()

    async def __aenter__(self) -> ExchangeManager:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------------------------------ run-time ops

    async def add_exchange(self, name: str, entry: ExchangeConfig) -> None:
        """Add and start one exchange entry at run time.

        Raises:
            ValueError: ``name`` is already running, or the exchange/market is unsupported.
        """
        if name in self._feeds:
            raise ValueError(f"exchange entry {name!r} is already running")
        if self._http is None:
            self._http = aiohttp.ClientSession()
        adapter = get_adapter(
            entry.exchange, entry.market, ws_base_url=entry.ws_url, rest_base_url=entry.rest_url
        )
        feed = Feed(
            name,
            adapter,
            publish=self.bus.publish,
            engine_config=engine_config_for(
                entry, event_log_size=self.config.event_log_size, seed=self._seed
            ),
            clock=self._clock,
            transport=self._transport,
            http=self._http,
            on_event=self._on_event,
        )
        self._feeds[name] = feed
        self._entries[name] = entry
        await feed.start(entry.subscriptions())

    async def remove_exchange(self, name: str) -> None:
        """Stop and remove one exchange entry (its consumers stay registered on the bus).

        Raises:
            KeyError: no such entry.
        """
        feed = self._feeds.pop(name)
        self._entries.pop(name, None)
        await feed.stop()

    async def subscribe(self, name: str, subscriptions: Sequence[Subscription]) -> None:
        """Add subscriptions to a running entry (``KeyError``: no such entry; ``ValueError``: foreign symbol)."""
        await self._feeds[name].subscribe(subscriptions)

    async def unsubscribe(self, name: str, subscriptions: Sequence[Subscription]) -> None:
        """Remove subscriptions from a running entry."""
        await self._feeds[name].unsubscribe(subscriptions)

    def reconnect(self, name: str) -> None:
        """Force one entry's connections to reconnect now (``KeyError``: no such entry)."""
        self._feeds[name].reconnect()

    def reconnect_all(self) -> None:
        """Force every connection to reconnect now."""
        for feed in self._feeds.values():
            feed.reconnect()

    # ------------------------------------------------------------------------------------------- consumption

    def trades(self, exchange: str | None = None, symbol: str | None = None, **kw: Any) -> Subscriber:
        """An async iterator of :class:`~cryptolink.models.Trade` (filters: exchange id, unified symbol).

        Keyword arguments ``maxsize`` and ``overflow`` (:class:`~cryptolink.bus.OverflowPolicy`) bound its queue.
        """
        return self.bus.subscribe(channel=Channel.TRADES, exchange=exchange, symbol=symbol, **kw)

    def tickers(self, exchange: str | None = None, symbol: str | None = None, **kw: Any) -> Subscriber:
        """An async iterator of :class:`~cryptolink.models.Ticker`."""
        return self.bus.subscribe(channel=Channel.TICKER, exchange=exchange, symbol=symbol, **kw)

    def book_updates(self, exchange: str | None = None, symbol: str | None = None, **kw: Any) -> Subscriber:
        """An async iterator of checked :class:`~cryptolink.models.BookUpdate`\\ s."""
        return self.bus.subscribe(channel=Channel.BOOK, exchange=exchange, symbol=symbol, **kw)

    def connection_events(self, exchange: str | None = None, **kw: Any) -> Subscriber:
        """An async iterator of :class:`~cryptolink.engine.ConnectionEvent`\\ s."""
        return self.bus.subscribe(channel=EVENTS_CHANNEL, exchange=exchange, **kw)

    def on(
        self,
        channel: Channel | str,
        fn: Callable[[Any], object] | Callable[[Any], Awaitable[object]],
        *,
        exchange: str | None = None,
        symbol: str | None = None,
        maxsize: int | None = None,
        overflow: OverflowPolicy | str | None = None,
    ) -> CallbackHandle:
        """Call ``fn(event)`` for each matching event; a failing callback is logged and counted, never fatal."""
        return self.bus.add_callback(
            fn, channel=channel, exchange=exchange, symbol=symbol, maxsize=maxsize, overflow=overflow
        )

    def book(self, name: str, symbol: str) -> OrderBook | None:
        """The maintained L2 book of ``symbol`` in entry ``name`` (``None``: not subscribed)."""
        return self._feeds[name].book(symbol)

    async def iter_trades(self, exchange: str, symbol: str) -> AsyncIterator[Any]:
        """Convenience generator over :meth:`trades` that closes its queue when the caller stops iterating."""
        sub = self.trades(exchange, symbol)
        try:
            async for trade in sub:
                yield trade
        finally:
            sub.close()

    # --------------------------------------------------------------------------------------------- inspection

    @property
    def feeds(self) -> dict[str, Feed]:
        """Running entries by name (a copy)."""
        return dict(self._feeds)

    def states(self) -> dict[str, dict[str, ConnectionState]]:
        """Entry name -> connection id -> state."""
        return {name: feed.states() for name, feed in self._feeds.items()}

    def check_health(self) -> list[str]:
        """Names of the entries with a connection that is failed, unstable or reconnecting, or a failed book."""
        bad = []
        for name, feed in self._feeds.items():
            if any(s in _UNHEALTHY for s in feed.states().values()) or any(
                b.state == "failed" for b in feed.book_health()
            ):
                bad.append(name)
        return bad

    def stats(self) -> ManagerStats:
        """Per-feed and total statistics (immutable)."""
        feeds = tuple(f.stats() for f in self._feeds.values())
        return ManagerStats(feeds=feeds, total=combine([c for f in feeds for c in f.connections]))

    def report_rows(self) -> list[ReportRow]:
        """One report row per connection (state, quality, latency, stability, reconnects, uptime, books)."""
        rows = []
        for feed in self._feeds.values():
            fs = feed.stats()
            books = _book_summary(fs)
            for cs in fs.connections:
                last = self._last_event.get(cs.connection_id)
                rows.append(
                    ReportRow.from_stats(
                        cs,
                        book_health=books,
                        last_event=f"{last.type.value}: {last.description}" if last else "",
                    )
                )
        return rows

    def report(self) -> str:
        """A readable connection report (see :func:`cryptolink.report.render_report`)."""
        return render_report(self.report_rows())

    def _on_event(self, event: ConnectionEvent) -> None:
        self._last_event[event.connection_id] = event
        self.bus.publish(event)


def _book_summary(fs: FeedStats) -> str:
    if not fs.books:
        return ""
    failed = [b.symbol for b in fs.books if b.state == "failed"]
    if failed:
        return "FAILED " + ",".join(failed)
    live = sum(1 for b in fs.books if b.state == "live")
    gaps = sum(b.gaps + b.checksum_failures for b in fs.books)
    return f"{live}/{len(fs.books)} live" + (f", {gaps} resynced" if gaps else "")


class ManagerBuilder:
    """Fluent construction of an :class:`ExchangeManager` without a YAML file.

    >>> ExchangeManager.builder().exchange("okx", symbols=["BTC/USDT"], channels=["trades", "book"]).build()
    """

    def __init__(self) -> None:
        self._exchanges: dict[str, dict[str, Any]] = {}
        self._top: dict[str, Any] = {}
        self._kwargs: dict[str, Any] = {}

    def exchange(
        self,
        name: str,
        *,
        symbols: Sequence[str],
        exchange: str | None = None,
        market: Market | str = Market.SPOT,
        channels: Sequence[str] | None = None,
        depth: int | None = None,
        ws_url: str | None = None,
        rest_url: str | None = None,
        **extra: Any,
    ) -> ManagerBuilder:
        """Add an exchange entry (same fields as the YAML ``exchanges.<name>`` section)."""
        entry: dict[str, Any] = {
            "exchange": exchange or name,
            "market": str(market),
            "symbols": list(symbols),
        }
        if channels is not None or depth is not None:
            ch: dict[str, Any] = {
                c: (c in (channels or ("trades", "ticker", "book"))) for c in ("trades", "ticker", "book")
            }
            if depth is not None:
                ch["depth"] = depth
            entry["channels"] = ch
        if ws_url:
            entry["ws_url"] = ws_url
        if rest_url:
            entry["rest_url"] = rest_url
        entry.update(extra)
        self._exchanges[name] = entry
        return self

    def option(self, **top_level: Any) -> ManagerBuilder:
        """Set top-level config keys (``consumer_queue_size``, ``overflow_policy``, ``output``...)."""
        self._top.update(top_level)
        return self

    def runtime(self, **kwargs: Any) -> ManagerBuilder:
        """Set :class:`ExchangeManager` constructor arguments (``clock``, ``transport``, ``bus``, ``seed``)."""
        self._kwargs.update(kwargs)
        return self

    def config(self) -> CryptolinkConfig:
        """The validated config (``ConfigError`` names every wrong field)."""
        return CryptolinkConfig.from_dict({"exchanges": self._exchanges, **self._top})

    def build(self) -> ExchangeManager:
        """The manager (not started)."""
        return ExchangeManager(self.config(), **self._kwargs)
