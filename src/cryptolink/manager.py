"""``ExchangeManager``: the unified Python API over every exchange.

>>> manager = ExchangeManager.builder().exchange("binance", symbols=["BTC/USDT"]).build()
>>> await manager.start()
>>> async for trade in manager.trades("binance", "BTC/USDT"):
...     print(trade.price, trade.amount, trade.side)

One :class:`~cryptolink.feed.Feed` per configured exchange entry (an exchange and a market); each feed owns its
connections (:class:`~cryptolink.engine.ManagedConnection`). Checked events go through one bounded
:class:`~cryptolink.bus.Bus` to async iterators, callbacks and sinks. Statistics are immutable snapshots.

**Names.** Every method that selects data takes the configuration entry's name (``binance-perp``), never the
exchange id: ``trades``, ``tickers``, ``book_updates``, ``gaps``, ``connection_events``, ``on``, ``book``,
``guard``, ``resync``, ``reconnect``, ``subscribe``... Every event carries that name as ``feed``. A name that is neither
configured nor added raises :class:`KeyError` at once, listing the known names.

The manager shares one connect gate per exchange host (documented connection-rate limits, outage probing:
:mod:`cryptolink.engine.gate`) and one REST client per exchange REST host (:mod:`cryptolink.rest`) between all
its entries. After :meth:`ExchangeManager.stop` the last statistics and report stay available.
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
from cryptolink.engine.gate import ConnectGates, GateStats
from cryptolink.exchanges import get_adapter
from cryptolink.exchanges.base import ExchangeAdapter
from cryptolink.feed import BookHealth, Feed, FeedStats
from cryptolink.gateway import RestGateway
from cryptolink.guard import GuardKey, GuardRegistry, GuardStats, TradingGuard, check_selection, feeds_probe
from cryptolink.models import GAPS_CHANNEL, Channel, Market, Subscription
from cryptolink.report import ReportRow, Section, render_report
from cryptolink.rest import RestClient, RestStats
from cryptolink.rest.budget import RateBudget, RateBudgets

__all__ = ["ExchangeManager", "ManagerBuilder", "ManagerStats", "engine_config_for"]

log = logging.getLogger(__name__)

_UNHEALTHY = frozenset({ConnectionState.FAILED, ConnectionState.UNSTABLE, ConnectionState.RECONNECTING})


@dataclass(frozen=True, slots=True)
class ManagerStats:
    """Everything the manager counts, as one immutable snapshot: per feed, in total, per connect gate, per
    REST client and the trading guards' counters."""

    feeds: tuple[FeedStats, ...]
    total: TotalStats
    gates: tuple[GateStats, ...] = ()
    rest: tuple[RestStats, ...] = ()
    guards: GuardStats | None = None


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
        adapter_wrapper: applied to every adapter the manager builds, before use (the recorder wraps adapters
            to capture every raw frame and REST body they are given).
        rest_gateway: builds the :class:`~cryptolink.gateway.RestGateway` of an adapter's REST host (book
            snapshots, instrument lists, trade backfill); called once per (exchange, REST base URL). Default: one
            :class:`~cryptolink.rest.RestClient` per host, whose budgets appear in the report. A gateway with an
            ``aclose()`` coroutine method is closed by :meth:`stop`.
        rest_budgets: the process's REST rate budgets (:class:`~cryptolink.rest.budget.RateBudgets`), shared
            with a :class:`~cryptolink.rest.RestManager`; each REST client draws on ``rest_budgets.get(<ccxt
            id>)`` (no limiting for an exchange without documented rules; logged once). Default: budgets built
            from ``config.rest.limits`` on ``clock`` (shared through Redis when it names one), closed by
            :meth:`stop`. The caller closes the ones it passes.
    """

    def __init__(
        self,
        config: CryptolinkConfig,
        *,
        clock: Clock | None = None,
        transport: Transport | None = None,
        bus: Bus | None = None,
        seed: int | None = None,
        adapter_wrapper: Callable[[ExchangeAdapter], ExchangeAdapter] | None = None,
        rest_gateway: Callable[[ExchangeAdapter], RestGateway] | None = None,
        rest_budgets: RateBudgets | None = None,
    ) -> None:
        self.config = config
        self._adapter_wrapper = adapter_wrapper
        self._rest_gateway = rest_gateway
        self._gateways: dict[tuple[str, str], RestGateway] = {}
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
        self._known: set[str] = set(config.exchanges)
        self._last_event: dict[str, ConnectionEvent] = {}
        self._listeners: list[Callable[[ConnectionEvent], None]] = []
        self.listener_errors = 0
        """Calls of :meth:`add_event_listener` listeners that raised."""
        self._http: aiohttp.ClientSession | None = None
        self._gates = ConnectGates(self._clock, seed=seed)
        self._rest: dict[tuple[str, str], RestClient] = {}
        self._owns_budgets = rest_budgets is None
        if rest_budgets is None:  # the config's rest.limits (Redis, share, overrides) hold here too
            rest_budgets = RateBudgets.from_config(config.rest.limits, self._clock)
        self.rest_budgets = rest_budgets
        """The REST rate budgets the manager's REST clients draw on."""
        self._no_rules: set[str] = set()
        self._final: tuple[ManagerStats, list[ReportRow]] | None = None
        self._started = False
        self._guards = GuardRegistry(self._clock, feeds_probe(self._feeds))
        """Trading guards (:meth:`guard`): marked by connection events, judged once per loop step, and by one
        check task."""
        self.add_event_listener(self._guards.on_event)

    @staticmethod
    def builder() -> ManagerBuilder:
        """A fluent builder (see :class:`ManagerBuilder`)."""
        return ManagerBuilder()

    # --------------------------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Connect every enabled exchange entry of the config. Returns once every connection has been started
        (connecting goes on in the background; see :meth:`states`).

        Raises:
            BadSymbol: an entry names a symbol its exchange does not list (nothing is left running).
        """
        if self._started:
            return
        self._started = True
        self._final = None
        self._guards.start()
        try:
            for name, entry in self.config.enabled_exchanges().items():
                await self.add_exchange(name, entry)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop gracefully: halt every trading guard (``manager stopping``, while the connections are still up;
        their async callbacks get up to 1 s), unsubscribe and close every connection, publish the gaps still
        open, then close the bus (consumers end). The last statistics and report stay available
        (:meth:`stats`, :meth:`report`). A guard callback may call it (the stop is then completed by that call;
        the outer one finds nothing left to do)."""
        await self._guards.stop()  # bots halt before their connections close
        feeds = list(self._feeds.values())
        rows = self._live_rows()  # connection states as they were while running
        await asyncio.gather(*(f.stop() for f in feeds), return_exceptions=True)
        if feeds or self._final is None:
            self._final = (self._live_stats(), rows)
        self._feeds.clear()
        if self._http is not None:
            await self._http.close()
            self._http = None
        self._rest.clear()
        gateways = list(self._gateways.values())
        self._gateways.clear()
        for gw in gateways:  # a gateway from ``rest_gateway`` that holds resources closes them here
            close = getattr(gw, "aclose", None)
            if close is not None:
                try:
                    await close()
                except Exception:
                    log.exception("closing a REST gateway failed")
        if self._owns_budgets:
            await self.rest_budgets.aclose()  # idempotent; its statistics stay readable
        self._started = False
        self.bus.close()

    async def __aenter__(self) -> ExchangeManager:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------------------------------ run-time ops

    async def add_exchange(self, name: str, entry: ExchangeConfig) -> None:
        """Add and start one exchange entry at run time (its name becomes a known name).

        Raises:
            ValueError: ``name`` is already running, or the exchange/market is unsupported.
            BadSymbol: the exchange lists no instrument for some of the entry's symbols (nothing started).
        """
        if name in self._feeds:
            raise ValueError(f"exchange entry {name!r} is already running")
        if self._http is None:
            # warm connections: a cold one (DNS, TCP, TLS) widens the grant-to-arrival spread the budgets'
            # window margin must cover, and a budget that waits out a full window leaves its connections idle
            self._http = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(keepalive_timeout=75.0, ttl_dns_cache=300)
            )
        adapter = get_adapter(
            entry.exchange,
            entry.market,
            ws_base_url=entry.ws_url,
            rest_base_url=entry.rest_url,
            testnet=entry.testnet,
            feed=name,
        )
        if self._adapter_wrapper is not None:
            adapter = self._adapter_wrapper(adapter)
        key = (adapter.exchange, adapter.rest_base_url)
        rest = self._gateways.get(key)
        if rest is None:
            if self._rest_gateway is not None:
                rest = self._rest_gateway(adapter)
            else:
                rest = self._rest[key] = RestClient(
                    f"{adapter.exchange} {adapter.rest_base_url}",
                    adapter.rest_base_url,
                    self._http,
                    self._clock,
                    self._rest_budget(adapter.exchange),
                )
            self._gateways[key] = rest
        feed = Feed(
            name,
            adapter,
            publish=self.bus.publish,
            engine_config=engine_config_for(
                entry, event_log_size=self.config.event_log_size, seed=self._seed
            ),
            clock=self._clock,
            transport=self._transport,
            rest=rest,
            gates=self._gates,
            on_event=self._on_event,
            verify_symbols=self.config.verify_symbols,
        )
        self._known.add(name)
        self._feeds[name] = feed
        self._entries[name] = entry
        try:
            await feed.start(entry.subscriptions())
        except BaseException:
            self._feeds.pop(name, None)
            self._entries.pop(name, None)
            await feed.stop()
            raise

    def _rest_budget(self, exchange: str) -> RateBudget | None:
        """The rate budget of ccxt id ``exchange`` (default scope), ``None`` when it has no documented rules."""
        try:
            return self.rest_budgets.get(exchange)
        except KeyError:
            if exchange not in self._no_rules:
                self._no_rules.add(exchange)
                log.warning(
                    "%s: no documented REST rate limits known; its REST requests are not rate limited "
                    "(429/418 answers still pause them)",
                    exchange,
                )
            return None

    async def remove_exchange(self, name: str) -> None:
        """Stop and remove one exchange entry (its consumers stay registered on the bus).

        Raises:
            KeyError: no such entry running.
        """
        feed = self._feed(name)
        self._feeds.pop(name)
        self._entries.pop(name, None)
        await feed.stop()

    async def subscribe(self, name: str, subscriptions: Sequence[Subscription]) -> None:
        """Add subscriptions to a running entry.

        Raises:
            KeyError: no such entry running.
            BadSymbol: a symbol the exchange does not list.
            ValueError: a symbol of another market.
        """
        await self._feed(name).subscribe(subscriptions)

    async def unsubscribe(self, name: str, subscriptions: Sequence[Subscription]) -> None:
        """Remove subscriptions from a running entry (``KeyError``: no such entry running)."""
        await self._feed(name).unsubscribe(subscriptions)

    def reconnect(self, name: str) -> None:
        """Force one entry's connections to reconnect now (``KeyError``: no such entry running)."""
        self._feed(name).reconnect()

    def reconnect_all(self) -> None:
        """Force every connection to reconnect now."""
        for feed in self._feeds.values():
            feed.reconnect()

    def resync(self, name: str, symbol: str | None = None) -> list[str]:
        """Re-sync one entry's books from scratch now (all of them, or ``symbol``), ``failed`` ones included;
        returns the symbols concerned.

        Raises:
            KeyError: no such entry running, or no book for ``symbol`` in it.
        """
        return self._feed(name).resync(None if symbol is None else [symbol])

    # ------------------------------------------------------------------------------------------- consumption

    def _check_name(self, name: str | None) -> str | None:
        if name is not None and name not in self._known:
            raise KeyError(f"unknown exchange entry {name!r}; known entries: {sorted(self._known)}")
        return name

    def _feed(self, name: str) -> Feed:
        feed = self._feeds.get(name)
        if feed is None:
            running = sorted(self._feeds)
            raise KeyError(f"exchange entry {name!r} is not running; running entries: {running}")
        return feed

    def trades(self, name: str | None = None, symbol: str | None = None, **kw: Any) -> Subscriber:
        """An async iterator of :class:`~cryptolink.models.Trade` of entry ``name`` (``None``: every entry)
        and unified ``symbol`` (``None``: every symbol).

        Keyword arguments ``maxsize`` and ``overflow`` (:class:`~cryptolink.bus.OverflowPolicy`) bound its queue.

        Raises:
            KeyError: ``name`` is not a configured or added entry.
        """
        return self.bus.subscribe(channel=Channel.TRADES, feed=self._check_name(name), symbol=symbol, **kw)

    def tickers(self, name: str | None = None, symbol: str | None = None, **kw: Any) -> Subscriber:
        """An async iterator of :class:`~cryptolink.models.Ticker` (filters and errors as :meth:`trades`)."""
        return self.bus.subscribe(channel=Channel.TICKER, feed=self._check_name(name), symbol=symbol, **kw)

    def book_updates(self, name: str | None = None, symbol: str | None = None, **kw: Any) -> Subscriber:
        """An async iterator of checked :class:`~cryptolink.models.BookUpdate`\\ s (as :meth:`trades`)."""
        return self.bus.subscribe(channel=Channel.BOOK, feed=self._check_name(name), symbol=symbol, **kw)

    def gaps(self, name: str | None = None, symbol: str | None = None, **kw: Any) -> Subscriber:
        """An async iterator of :class:`~cryptolink.models.Gap` events: intervals over which a stream's data
        is incomplete (or was verified and backfilled), as :meth:`trades`."""
        return self.bus.subscribe(channel=GAPS_CHANNEL, feed=self._check_name(name), symbol=symbol, **kw)

    def connection_events(self, name: str | None = None, **kw: Any) -> Subscriber:
        """An async iterator of :class:`~cryptolink.engine.ConnectionEvent`\\ s (``KeyError``: unknown name)."""
        return self.bus.subscribe(channel=EVENTS_CHANNEL, feed=self._check_name(name), **kw)

    def on(
        self,
        channel: Channel | str,
        fn: Callable[[Any], object] | Callable[[Any], Awaitable[object]],
        *,
        name: str | None = None,
        symbol: str | None = None,
        maxsize: int | None = None,
        overflow: OverflowPolicy | str | None = None,
    ) -> CallbackHandle:
        """Call ``fn(event)`` for each event of ``channel`` (``trades``, ``ticker``, ``book``, ``gaps``,
        ``events``) from entry ``name`` and ``symbol``; a failing callback is logged and counted, never fatal.

        Raises:
            KeyError: ``name`` is not a configured or added entry.
        """
        return self.bus.add_callback(
            fn,
            channel=channel,
            feed=self._check_name(name),
            symbol=symbol,
            maxsize=maxsize,
            overflow=overflow,
        )

    def guard(
        self,
        name: str,
        symbol: str,
        *,
        channels: Sequence[Channel | str] | None = None,
        max_data_age_s: float | None = None,
    ) -> TradingGuard:
        """The trading guard of ``symbol`` in entry ``name``: whether a bot may trade it now, with halt and
        resume events (:mod:`cryptolink.guard`). The same object for the same arguments until it is closed.

        Args:
            channels: the streams it covers (default: every channel the entry streams for ``symbol``).
            max_data_age_s: the longest data age allowed on each stream (s), instead of the silence each
                stream's watchdog learned from its rhythm.

        Raises:
            KeyError: ``name`` is not a known entry (the message lists them), or the entry does not stream
                ``symbol`` (or one of ``channels``) (its running subscriptions, else its configuration).
            ValueError: an unknown channel name, empty ``channels``, or ``max_data_age_s`` not positive.
            RuntimeError: too many guards are open (:data:`cryptolink.guard.MAX_GUARDS`).
        """
        self._check_name(name)
        if max_data_age_s is not None and not max_data_age_s > 0:
            raise ValueError(f"max_data_age_s must be > 0, got {max_data_age_s}")
        try:
            chans = None if channels is None else frozenset(Channel(c) for c in channels)
        except ValueError:
            raise ValueError(
                f"unknown channel in {list(channels or ())}; channels: {[c.value for c in Channel]}"
            ) from None
        if chans is not None and not chans:
            raise ValueError("channels must name at least one channel (None: every streamed channel)")
        key = GuardKey(name, symbol, chans, max_data_age_s)
        check_selection(
            key, self._feeds.get(name), self._entries.get(name) or self.config.exchanges.get(name)
        )
        return self._guards.get(key)

    def book(self, name: str, symbol: str) -> OrderBook | None:
        """The maintained L2 book of ``symbol`` in entry ``name`` (``None``: not subscribed there).

        Raises:
            KeyError: no such entry running.
        """
        return self._feed(name).book(symbol)

    async def iter_trades(self, name: str, symbol: str) -> AsyncIterator[Any]:
        """Convenience generator over :meth:`trades` that closes its queue when the caller stops iterating."""
        sub = self.trades(name, symbol)
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
        """Names of the entries that are not fully healthy: a connection failed, unstable or reconnecting, a
        stale subscription, a book that is not live, or a rejected subscription."""
        bad = []
        for name, feed in self._feeds.items():
            fs = feed.stats()
            if (
                any(c.state in _UNHEALTHY for c in fs.connections)
                or any(c.subscriptions_stale for c in fs.connections)
                or any(b.state != "live" for b in fs.books)
                or fs.rejected
            ):
                bad.append(name)
        return bad

    def stats(self) -> ManagerStats:
        """Per-feed and total statistics (immutable); after :meth:`stop`, the last ones taken."""
        if not self._feeds and self._final is not None:
            return self._final[0]
        return self._live_stats()

    def _live_stats(self) -> ManagerStats:
        feeds = tuple(f.stats() for f in self._feeds.values())
        return ManagerStats(
            feeds=feeds,
            total=combine([c for f in feeds for c in f.connections]),
            gates=self._gates.stats(),
            rest=tuple(r.stats() for r in self._rest.values()),
            guards=self._guards.stats(),
        )

    def report_rows(self) -> list[ReportRow]:
        """One report row per connection (state, quality, latency, reconnects, uptime, its books); after
        :meth:`stop`, the ones taken just before the connections were closed (their states while running)."""
        if not self._feeds and self._final is not None:
            return list(self._final[1])
        return self._live_rows()

    def snapshot(self) -> tuple[ManagerStats, list[ReportRow]]:
        """Statistics and report rows taken together from one pass over the feeds (what the status service
        reads once per interval); after :meth:`stop`, the last ones taken."""
        if not self._feeds and self._final is not None:
            return self._final[0], list(self._final[1])
        stats = self._live_stats()
        return stats, self._rows_of(stats)

    def add_event_listener(self, listener: Callable[[ConnectionEvent], None]) -> None:
        """Call ``listener(event)`` synchronously for every connection event of every entry (before the bus;
        never dropped). It must be quick and must not raise: an exception is logged and counted in
        :attr:`listener_errors`."""
        self._listeners.append(listener)

    def remove_event_listener(self, listener: Callable[[ConnectionEvent], None]) -> None:
        """Stop calling ``listener`` (unknown ones are ignored)."""
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _live_rows(self) -> list[ReportRow]:
        return self._rows_of(self._live_stats())

    def _rows_of(self, stats: ManagerStats) -> list[ReportRow]:
        rows = []
        for fs in stats.feeds:
            for cs in fs.connections:
                last = self._last_event.get(cs.connection_id)
                books = [b for b in fs.books if b.connection_id == cs.connection_id]
                rows.append(
                    ReportRow.from_stats(
                        cs,
                        feed=fs.name,
                        book_health=_book_summary(books),
                        last_event=f"{last.type.value}: {last.description}" if last else "",
                    )
                )
        return rows

    def report(self, extra: Sequence[Section] = ()) -> str:
        """A readable connection report (see :func:`cryptolink.report.render_report`): one line per
        connection, then books (state, resyncs by cause), data integrity (duplicates, stale, late and
        regressed ids, gaps and backfills), connect gates and REST budgets, trading guards (when any), then
        ``extra``; after :meth:`stop`, the final one."""
        return render_report(self.report_rows(), sections=[*report_sections(self.stats()), *extra])

    def _on_event(self, event: ConnectionEvent) -> None:
        self._last_event[event.connection_id] = event
        for listener in tuple(self._listeners):
            try:
                listener(event)
            except Exception:
                self.listener_errors += 1
                log.exception("connection event listener failed on %s", event.type)
        self.bus.publish(event)


def _book_summary(books: list[BookHealth]) -> str:
    if not books:
        return ""
    live = sum(1 for b in books if b.state == "live")
    return f"{live}/{len(books)} live"


def _gap_counts(fs: FeedStats) -> str:
    """``"5 (trades 2, 1 complete; ticker 2; book 1)"``: gap events per stream; a trade gap is complete when
    every missed trade was backfilled (or none was missed)."""
    if not fs.gaps:
        return "0"
    parts = []
    for stream in ("trades", "ticker", "book"):
        n = fs.gaps_by_stream.get(stream, 0)
        if n:
            parts.append(
                f"trades {n}, {fs.gaps_recovered} complete" if stream == "trades" else f"{stream} {n}"
            )
    return f"{fs.gaps} ({'; '.join(parts)})"


def report_sections(stats: ManagerStats) -> list[Section]:
    """The detail sections of the report, from one statistics snapshot."""
    books: list[str] = []
    data: list[str] = []
    for fs in stats.feeds:
        for b in fs.books:
            causes = ", ".join(f"{k} {v}" for k, v in sorted(b.resyncs_by_cause.items()))
            books.append(
                f"  {fs.name} {b.symbol}: {b.state}, resyncs {b.resyncs}"
                + (f" ({causes})" if causes else "")
                + (f", failed retries {b.failed_retries}" if b.failed_retries else "")
                + (f", id restarts {b.id_restarts}" if b.id_restarts else "")
                + (f", last sequence {b.last_sequence}" if b.last_sequence is not None else "")
            )
        data.append(
            f"  {fs.name}: published {fs.published:,} | duplicates dropped {fs.duplicates_dropped:,} | "
            f"stale tickers dropped {fs.stale_dropped:,} | late trades {fs.out_of_order} | "
            f"id restarts {fs.id_regressions}"
        )
        data.append(
            f"  {fs.name}: gaps {_gap_counts(fs)} | backfilled {fs.backfilled_trades:,} "
            f"trades, {fs.backfill_requests} requests, {fs.backfill_failures} failed"
            + (
                f", {fs.backfills_running} running ({fs.trades_held:,} live trades held)"
                if fs.backfills_running
                else ""
            )
            + f" | snapshots {fs.snapshots_fetched}, {fs.snapshot_errors} failed, {fs.rate_limited} rate-limited"
        )
        if fs.unknown_symbols or fs.rejected or not fs.instruments_loaded:
            data.append(
                f"  {fs.name}: instruments {'loaded' if fs.instruments_loaded else 'NOT loaded'}; unknown "
                f"symbols {', '.join(fs.unknown_symbols) or '-'}; rejected {', '.join(fs.rejected) or '-'}"
            )
        skipped = {
            "malformed": sum(c.decode_errors for c in fs.connections),
            "adapter bugs": sum(c.adapter_errors for c in fs.connections),
            "compressed refused": sum(c.inflate_refused for c in fs.connections),
            "oversized": sum(c.oversized_frames for c in fs.connections),
        }
        if any(skipped.values()):
            data.append(
                f"  {fs.name}: frames skipped: "
                + ", ".join(f"{what} {n:,}" for what, n in skipped.items() if n)
                + (" (adapter bugs are logged with their traceback)" if skipped["adapter bugs"] else "")
            )
        if fs.adapter_counters:
            data.append(
                f"  {fs.name}: adapter "
                + ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in sorted(fs.adapter_counters.items()))
            )
    hosts = [
        f"  {g.key}: {'up' if g.up else f'DOWN for {g.down_for_s or 0:.0f} s'}, {g.granted} connects, "
        f"{g.probes} probes, {g.outages} outages, {g.rate_waits} paced"
        + (f" (budget {g.allowed} per {g.window_s:g} s)" if g.allowed is not None and g.window_s else "")
        for g in stats.gates
    ]
    hosts += [
        f"  {r.key}: {r.requests} requests, weight {r.weight:,}, {r.errors} errors, {r.rate_limited} rate-limited"
        + (f" (budget {r.budget} per {r.window_s:g} s)" if r.budget is not None and r.window_s else "")
        for r in stats.rest
    ]
    sections = [
        Section("books", books),
        Section("data integrity", data),
        Section("connect gates and REST budgets", hosts),
    ]
    g = stats.guards
    if g is not None and (g.guards or g.checks):
        sections.append(
            Section(
                "trading guards",
                [
                    f"  {g.guards} open, {g.safe} safe | halts {g.halts:,}, resumes {g.resumes:,} | callback "
                    f"errors {g.callback_errors:,}, dropped {g.callbacks_dropped:,} | check errors {g.check_errors:,}"
                ],
            )
        )
    return sections


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
        if channels is not None:
            entry["channels"] = list(channels)
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
