"""``Feed``: one configuration entry (an exchange and a market): its connections, the checks that keep its
data exact, and what it publishes.

Data path (hot): ``ManagedConnection`` -> :meth:`Feed._on_data` -> for each item

- :class:`~cryptolink.models.Trade`: the symbol's :class:`~cryptolink.streams.TradeStream` drops true
  duplicates (an identical recent trade: rotation overlap, resend), reports id regressions (the exchange
  restarted its ids) and continues, and after an interruption or a skipped contiguous id fetches the missing
  trades over REST (``backfill``) before delivering the live ones, in id order;
- :class:`~cryptolink.models.Ticker`: :class:`~cryptolink.streams.TickerFilter` drops identical resends and
  stale BBOs (older than one already delivered), reports regressions;
- :class:`~cryptolink.exchanges.base.BookMessage`: the symbol's :class:`~cryptolink.book.sync.BookSync`
  applies checked messages and asks for a REST snapshot or a re-subscription for THAT symbol only on a gap or
  a checksum mismatch.

Interruptions (a connection ends, a stream goes silent past its watchdog, a book resyncs) open an interval per
stream; the first event after it closes the interval and a :class:`~cryptolink.models.Gap` is published on the
``gaps`` channel (exchange time from/to, cause, missing ids, whether the trades were backfilled). Gaps still
open when the feed stops are published with ``to_ms`` ``None``.

Books that fail (``max_failed_syncs`` consecutive failed syncs) stay visible as ``failed`` and are retried on a
slower schedule (30 s, 60 s ... 300 s), at once after a reconnect, or by :meth:`Feed.resync`.

REST (snapshots, instrument list, backfill) goes through one :class:`~cryptolink.gateway.RestGateway` (today a
:class:`~cryptolink.rest.RestClient`) per
exchange host: one budget, 429/418 ``Retry-After`` pauses every request of the host.

At start the feed loads the exchange's instrument list and refuses symbols that do not exist
(:class:`BadSymbol`, like ccxt's); if the list cannot be loaded it says so and verifies later.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptolink.book.orderbook import BookState, OrderBook
from cryptolink.book.sync import (
    BookFailed,
    BookSync,
    Dropped,
    NeedResubscribe,
    NeedSnapshot,
    ResyncCause,
    SyncAction,
)
from cryptolink.clock import Clock
from cryptolink.engine import (
    ConfigError,
    ConnectionEvent,
    ConnectionEventType,
    ConnectionState,
    ConnectionStats,
    EngineConfig,
    ManagedConnection,
    Transport,
)
from cryptolink.engine.gate import ConnectGates
from cryptolink.engine.subscriptions import take_request_ids
from cryptolink.exchanges.base import (
    BookMessage,
    ConnectionSpec,
    DecodeError,
    ExchangeAdapter,
    Instrument,
    SnapshotSource,
)
from cryptolink.gateway import RestGateway
from cryptolink.models import BookUpdate, Channel, Gap, GapCause, Subscription, Ticker, Trade
from cryptolink.rest import RestError
from cryptolink.streams import (
    IdRegression,
    Interruption,
    IntervalTracker,
    StartBackfill,
    TickerFilter,
    TradeAction,
    TradeStream,
)

__all__ = ["BadSymbol", "BookHealth", "Feed", "FeedStats"]

log = logging.getLogger(__name__)

Publish = Callable[[object], None]

_E = ConnectionEventType
_BOOK = Channel.BOOK
_TRADES = Channel.TRADES
_TICKER = Channel.TICKER
_FAILED_RETRY_S = (30.0, 60.0, 120.0, 300.0)
_INSTRUMENT_RETRY_S = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0)
_MAX_BACKFILL_PAGES = 100
#: how long a snapshot asked for on the WebSocket (:attr:`SnapshotSource.WS_REQUEST`, HTX ``req``) may take
#: before the attempt counts as failed and is retried with backoff (s)
WS_SNAPSHOT_TIMEOUT_S = 10.0
"""Bound on one backfill: Binance 100 000 trades (1000 a page), OKX 10 000 (100 a page); live trades are held
meanwhile (at most ``TradeStream.max_held``)."""
_FIRST_INSTRUMENTS_TIMEOUT_S = 5.0
"""Bound on the instrument-list request at start: an unreachable exchange delays the first connect by at most
this much (the list is then loaded in the background)."""


class BadSymbol(ConfigError):
    """Symbols the exchange does not list (checked against its instrument list, as ccxt's ``BadSymbol``).

    Attributes:
        feed: the configuration entry.
        symbols: the unknown unified symbols.
    """

    def __init__(self, feed: str, exchange: str, market: str, symbols: Sequence[str]) -> None:
        self.feed = feed
        self.symbols = tuple(symbols)
        super().__init__(
            f"{feed}: {exchange} {market} has no instrument "
            + ", ".join(repr(s) for s in symbols)
            + " (checked against the exchange's instrument list)"
        )


@dataclass(frozen=True, slots=True)
class BookHealth:
    """One book's state: ``state`` is the :class:`~cryptolink.book.orderbook.BookState` value, or
    ``"rejected"`` when the exchange refused the subscription.

    ``resyncs_by_cause`` counts each resync by its :class:`~cryptolink.book.sync.ResyncCause` value;
    ``connection_id`` is the connection carrying the book; ``failed_retries`` counts the slower retries of a
    failed book since it was last live; ``id_restarts`` the times the exchange's update ids went back and a new
    chain was started below the book.
    """

    symbol: str
    state: str
    last_sequence: int | None
    gaps: int
    checksum_failures: int
    resyncs: int
    dropped: int
    resyncs_by_cause: dict[str, int] = field(default_factory=dict)
    last_resync_cause: str | None = None
    connection_id: str | None = None
    failed_retries: int = 0
    id_restarts: int = 0


@dataclass(frozen=True, slots=True)
class FeedStats:
    """Counters of one feed (a snapshot).

    Attributes:
        name / exchange / market: the entry.
        connections / books: per-connection and per-book snapshots.
        published: events published (trades, tickers, book updates, gaps).
        duplicates_dropped: identical trades and tickers dropped (rotation overlap, resends).
        stale_dropped: tickers older than one already delivered, dropped.
        out_of_order: trades delivered late (lower id than one already delivered, not a duplicate).
        id_regressions: trade or ticker id sequences that restarted lower (e.g. after an exchange restart).
        gaps: gap events published; gaps_by_stream: of them per stream (``trades``, ``ticker``, ``book``);
        gaps_recovered: trade gaps whose trades were all backfilled (or none was missed).
        backfilled_trades / backfill_requests / backfill_failures: trade backfill over REST.
        backfills_running: symbols whose backfill runs now; trades_held: their live trades held meanwhile.
        snapshots_fetched / snapshot_errors / rate_limited: REST book snapshots; 429/418 answers.
        unknown_symbols: symbols the exchange's instrument list does not have.
        instruments_loaded: the instrument list was loaded (symbols verified, contract sizes known).
        rejected: subscriptions the exchange refused, ``"channel symbol"``.
        adapter_counters: the adapter's protocol-state counters (``ExchangeAdapter.counters``, e.g.
            ``symbol_cache_evicted``), only the non-zero ones.
    """

    name: str
    exchange: str
    market: str
    connections: tuple[ConnectionStats, ...]
    books: tuple[BookHealth, ...]
    published: int
    duplicates_dropped: int
    snapshots_fetched: int
    snapshot_errors: int
    rate_limited: int
    stale_dropped: int = 0
    out_of_order: int = 0
    id_regressions: int = 0
    gaps: int = 0
    gaps_recovered: int = 0
    gaps_by_stream: dict[str, int] = field(default_factory=dict)
    backfilled_trades: int = 0
    backfill_requests: int = 0
    backfill_failures: int = 0
    backfills_running: int = 0
    trades_held: int = 0
    unknown_symbols: tuple[str, ...] = ()
    instruments_loaded: bool = False
    rejected: tuple[str, ...] = ()
    adapter_counters: dict[str, int] = field(default_factory=dict)


class Feed:
    """Connections, books, duplicate and gap handling of one entry (see the module docstring).

    Args:
        name: the entry's name (put on every event as ``feed``).
        adapter: the exchange's sans-I/O adapter (built with ``feed=name``).
        publish: where checked events go (``Bus.publish``); called on the event loop, must not block.
        engine_config: connection engine tunables.
        clock: time source.
        transport: WebSocket factory.
        rest: REST client of the exchange host (snapshots, instruments, backfill); ``None``: no REST.
        gates: connect gates shared by the manager's connections (``None``: one private gate per connection).
        on_event: receives every :class:`~cryptolink.engine.ConnectionEvent` of the feed's connections.
        verify_symbols: load the instrument list at start and refuse unknown symbols.
    """

    def __init__(
        self,
        name: str,
        adapter: ExchangeAdapter,
        *,
        publish: Publish,
        engine_config: EngineConfig,
        clock: Clock,
        transport: Transport,
        rest: RestGateway | None,
        gates: ConnectGates | None = None,
        on_event: Callable[[ConnectionEvent], None] | None = None,
        verify_symbols: bool = True,
    ) -> None:
        self.name = name
        self.adapter = adapter
        self._publish = publish
        self._engine_config = engine_config
        self._clock = clock
        self._transport = transport
        self._rest = rest
        self._gates = gates
        self._on_event = on_event
        self._verify = verify_symbols
        self._connections: dict[str, ManagedConnection] = {}
        self._conn_of: dict[Subscription, ManagedConnection] = {}
        self._books: dict[str, BookSync] = {}
        self._book_subs: dict[str, Subscription] = {}
        self._book_iv: dict[str, IntervalTracker] = {}
        self._trades: dict[str, TradeStream] = {}
        self._tickers: dict[str, TickerFilter] = {}
        self._ticker_iv: dict[str, IntervalTracker] = {}
        self._snapshot_tasks: dict[str, asyncio.Task[None]] = {}
        # symbol -> set when a snapshot asked for on the WebSocket arrives (SnapshotSource.WS_REQUEST)
        self._snapshot_waiters: dict[str, asyncio.Event] = {}
        # symbol -> the exchange's error answering its pending snapshot request (set with its waiter)
        self._snapshot_refusals: dict[str, str] = {}
        # connection -> monotonic time from which its next snapshot request may go (one entry per connection)
        self._ws_request_slots: dict[ManagedConnection, float] = {}
        self._retry_tasks: dict[str, asyncio.Task[None]] = {}
        self._failed_rounds: dict[str, int] = {}
        self._backfills: dict[str, asyncio.Task[None]] = {}
        self._rejected: dict[tuple[Channel, str], str] = {}
        self._instruments: dict[str, Instrument] | None = None
        self._unknown: list[str] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._conn_seq = 0
        self._started = False
        self._stopped = False
        self.published = 0
        self.snapshots_fetched = 0
        self.snapshot_errors = 0
        self.rate_limited = 0
        self.gaps_recovered = 0
        self.gaps_by_stream: dict[str, int] = {}
        self.backfill_requests = 0
        self.backfill_failures = 0

    # ------------------------------------------------------------------------------------------- public API

    @property
    def connections(self) -> dict[str, ManagedConnection]:
        """The feed's connections by id (a copy)."""
        return dict(self._connections)

    @property
    def subscriptions(self) -> list[Subscription]:
        """Every subscription the feed holds, sorted."""
        return sorted(self._conn_of)

    @property
    def instruments(self) -> dict[str, Instrument] | None:
        """The exchange's instruments of this market by unified symbol (``None``: not loaded)."""
        return None if self._instruments is None else dict(self._instruments)

    def connection_of(self, channel: Channel, symbol: str) -> ManagedConnection | None:
        """The connection carrying the feed's ``channel`` stream of unified ``symbol`` (``None``: not
        subscribed). A dict lookup, cheap enough for every check of a trading guard."""
        if channel is _TRADES:
            if symbol not in self._trades:
                return None
        elif channel is _TICKER:
            if symbol not in self._tickers:
                return None
        else:
            sub = self._book_subs.get(symbol)
            return None if sub is None else self._conn_of.get(sub)
        conn = self._conn_of.get(Subscription(channel, symbol))
        if conn is None:  # subscribed with an explicit depth (ignored for trades and tickers): rare
            conn = next((c for s, c in self._conn_of.items() if s.key == (channel, symbol)), None)
        return conn

    def book(self, symbol: str) -> OrderBook | None:
        """The maintained L2 book of unified ``symbol`` (``None``: not subscribed). Check ``book.state``."""
        sync = self._books.get(symbol)
        return sync.book if sync is not None else None

    async def start(self, subscriptions: Sequence[Subscription]) -> None:
        """Load the instrument list (refusing unknown symbols), then open the connections.

        Raises:
            BadSymbol: the exchange lists no instrument for some symbols (nothing was started).
            ValueError: a symbol does not belong to this feed's exchange and market.
        """
        self._started = True
        if self._verify:
            await self._load_instruments(initial=True, symbols=[s.symbol for s in subscriptions])
        await self.subscribe(subscriptions)

    async def stop(self) -> None:
        """Stop every connection gracefully (unsubscribe, close), cancel REST work, close the open gaps."""
        self._started = False
        self._stopped = True
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await asyncio.gather(*(c.stop() for c in self._connections.values()), return_exceptions=True)
        self._close_open_gaps("feed stopped")

    async def subscribe(self, subscriptions: Sequence[Subscription]) -> None:
        """Add subscriptions at run time: onto an existing connection with room on the same route, else new ones.

        Raises:
            BadSymbol: a symbol is not in the loaded instrument list.
            ValueError: a symbol does not belong to this feed's exchange and market.
        """
        new = [s for s in dict.fromkeys(subscriptions) if s not in self._conn_of]
        for sub in new:
            self.adapter.exchange_symbol(sub.symbol)  # raises ValueError early for a foreign symbol
        if self._instruments is not None:
            unknown = sorted({s.symbol for s in new if s.symbol not in self._instruments})
            if unknown:
                raise BadSymbol(self.name, self.adapter.exchange, self.adapter.market.value, unknown)
        if not new:
            return
        for spec in self.adapter.plan_connections(new):
            target = self._connection_with_room(spec)
            for sub in spec.subscriptions:
                self._register(sub)
            if target is None:
                self._conn_seq += 1
                conn_id = f"{self.name}-{spec.route or 'ws'}-{self._conn_seq}"
                gate = None
                if self._gates is not None:
                    gate = self._gates.get(
                        self.adapter.exchange,
                        spec.url,
                        self.adapter.policy.connect_limit,
                        self._engine_config.backoff,
                    )
                conn = ManagedConnection(
                    self.adapter,
                    spec,
                    conn_id=conn_id,
                    config=self._engine_config,
                    clock=self._clock,
                    transport=self._transport,
                    on_data=self._on_data,
                    on_event=self._handle_event,
                    gate=gate,
                    rest=self._rest,
                )
                self._connections[conn_id] = conn
                for sub in spec.subscriptions:
                    self._conn_of[sub] = conn
                await conn.start()
            else:
                for sub in spec.subscriptions:
                    self._conn_of[sub] = target
                await target.subscribe(list(spec.subscriptions))

    async def unsubscribe(self, subscriptions: Sequence[Subscription]) -> None:
        """Remove subscriptions at run time; a connection left without subscriptions is stopped."""
        by_conn: dict[str, list[Subscription]] = {}
        for sub in subscriptions:
            conn = self._conn_of.pop(sub, None)
            if conn is None:
                continue
            by_conn.setdefault(conn.conn_id, []).append(sub)
            self._unregister(sub)
        for conn_id, subs in by_conn.items():
            conn = self._connections[conn_id]
            if any(c is conn for c in self._conn_of.values()):
                await conn.unsubscribe(subs)
            else:
                del self._connections[conn_id]
                await conn.stop()

    def reconnect(self) -> None:
        """Force every connection of the feed to reconnect now (backoff reset to immediate)."""
        for conn in self._connections.values():
            conn.reconnect()

    def resync(self, symbols: Iterable[str] | None = None) -> list[str]:
        """Re-sync books from scratch now (all, or ``symbols``), ``failed`` ones included; returns the symbols
        concerned.

        Raises:
            KeyError: a symbol has no book in this feed.
        """
        names = list(self._books) if symbols is None else list(symbols)
        for sym in names:
            if sym not in self._books:
                raise KeyError(f"{self.name} has no book for {sym!r}; books: {sorted(self._books)}")
        for sym in names:
            self._restart_book(sym, "operator resync")
        return names

    def states(self) -> dict[str, ConnectionState]:
        """Connection id -> state."""
        return {cid: c.state for cid, c in self._connections.items()}

    def book_health(self) -> list[BookHealth]:
        """One record per maintained book, sorted by symbol."""
        out = []
        for symbol, sync in sorted(self._books.items()):
            s = sync.stats()
            sub = self._book_subs.get(symbol)
            conn = self._conn_of.get(sub) if sub is not None else None
            state = "rejected" if (_BOOK, symbol) in self._rejected else str(s.state.value)
            out.append(
                BookHealth(
                    symbol=symbol,
                    state=state,
                    last_sequence=s.last_sequence,
                    gaps=s.gaps,
                    checksum_failures=s.checksum_failures,
                    resyncs=s.resyncs,
                    dropped=s.dropped,
                    resyncs_by_cause=s.resyncs_by_cause,
                    last_resync_cause=s.last_resync_cause,
                    connection_id=conn.conn_id if conn is not None else None,
                    failed_retries=self._failed_rounds.get(symbol, 0),
                    id_restarts=s.id_restarts,
                )
            )
        return out

    def stats(self) -> FeedStats:
        """An immutable snapshot of the feed's counters and its connections' stats."""
        trades = self._trades.values()
        tickers = self._tickers.values()
        return FeedStats(
            name=self.name,
            exchange=self.adapter.exchange,
            market=str(self.adapter.market.value),
            connections=tuple(c.stats() for c in self._connections.values()),
            books=tuple(self.book_health()),
            published=self.published,
            duplicates_dropped=sum(t.duplicates for t in trades) + sum(t.duplicates for t in tickers),
            snapshots_fetched=self.snapshots_fetched,
            snapshot_errors=self.snapshot_errors,
            rate_limited=self.rate_limited,
            stale_dropped=sum(t.stale for t in tickers),
            out_of_order=sum(t.out_of_order for t in trades),
            id_regressions=sum(t.regressions for t in trades) + sum(t.regressions for t in tickers),
            gaps=sum(self.gaps_by_stream.values()),
            gaps_recovered=self.gaps_recovered,
            gaps_by_stream=dict(self.gaps_by_stream),
            backfilled_trades=sum(t.backfilled for t in trades),
            backfill_requests=self.backfill_requests,
            backfill_failures=self.backfill_failures,
            backfills_running=sum(t.backfilling for t in trades),
            trades_held=sum(t.held for t in trades),
            unknown_symbols=tuple(self._unknown),
            instruments_loaded=self._instruments is not None,
            rejected=tuple(f"{ch.value} {sym}" for ch, sym in sorted(self._rejected)),
            adapter_counters={k: v for k, v in self.adapter.counters().items() if v},
        )

    # --------------------------------------------------------------------------------------------- data path

    def _on_data(self, conn: ManagedConnection, items: list[Trade | Ticker | BookMessage]) -> None:
        publish = self._publish
        for item in items:
            kind = type(item)
            if kind is Trade:
                trade: Trade = item  # type: ignore[assignment]
                stream = self._trades.get(trade.symbol)
                if stream is None:
                    self.published += 1
                    publish(trade)
                    continue
                actions = stream.on_trade(trade, conn.rotating)
                if len(actions) == 1 and actions[0] is trade:
                    self.published += 1
                    publish(trade)
                    continue
                for action in actions:
                    self._trade_action(stream, action)
            elif kind is BookMessage:
                msg: BookMessage = item  # type: ignore[assignment]
                sync = self._books.get(msg.symbol)
                if sync is not None:
                    if msg.is_snapshot and self._snapshot_waiters:
                        waiter = self._snapshot_waiters.pop(msg.symbol, None)
                        if waiter is not None:
                            self.snapshots_fetched += 1
                            waiter.set()
                            # the asking task is done: should the sync refuse this snapshot (older than the
                            # buffered deltas), its new request must start a new task, not be dropped
                            self._snapshot_tasks.pop(msg.symbol, None)
                    self._handle_actions(sync, conn, sync.on_message(msg))
            elif kind is Ticker:
                ticker: Ticker = item  # type: ignore[assignment]
                filt = self._tickers.get(ticker.symbol)
                if filt is not None:
                    if not filt.accept(ticker, conn.rotating):
                        continue
                    iv = self._ticker_iv[ticker.symbol]
                    ts = ticker.timestamp_ms
                    if ts is None:
                        ts = ticker.receipt_ns // 1_000_000
                    opened = iv.on_data(ts)
                    if opened is not None:
                        self._publish_gap(_interval_gap(ticker, _TICKER, opened, ts))
                self.published += 1
                publish(ticker)

    def _trade_action(self, stream: TradeStream, action: TradeAction) -> None:
        if isinstance(action, Trade):
            self.published += 1
            self._publish(action)
        elif isinstance(action, Gap):
            self._publish_gap(action)
        elif isinstance(action, StartBackfill):
            self._backfills[stream.symbol] = self._spawn(self._backfill(stream, action))
        elif isinstance(action, IdRegression):
            log.warning(
                "%s: trades %s: ids restarted at %d after %d (exchange restart?); counted, stream continues",
                self.name,
                action.symbol,
                action.after,
                action.before,
            )

    def _publish_gap(self, gap: Gap, *, logged: bool = False) -> None:
        """Publish ``gap`` and tell its story once: trades that could not be recovered at WARNING (data is
        missing for good), everything else at INFO (a book resync restores the book; a backfilled or verified
        trade interval is complete)."""
        stream = gap.stream.value
        self.gaps_by_stream[stream] = self.gaps_by_stream.get(stream, 0) + 1
        if gap.recovered:
            self.gaps_recovered += 1
        if not logged:
            span = (
                ""
                if gap.to_ms is None or gap.from_ms is None
                else f" of {(gap.to_ms - gap.from_ms) / 1000:.1f} s"
            )
            ids = (
                f", ids {gap.first_missing_id}..{gap.last_missing_id}"
                if gap.first_missing_id is not None
                else ""
            )
            what = (
                f"{self.name}: {gap.stream.value} {gap.symbol}: interval{span}{ids} after {gap.cause.value}"
            )
            if gap.stream is _TRADES and gap.recovered:
                log.info("%s complete (%d missed trades backfilled)", what, gap.backfilled)
            elif gap.stream is _TRADES:
                log.warning("%s INCOMPLETE: trades missing%s", what, f" ({gap.detail})" if gap.detail else "")
            else:
                log.info("%s: updates missed%s", what, f" ({gap.detail})" if gap.detail else "")
        self.published += 1
        self._publish(gap)

    # ---------------------------------------------------------------------------------------------- books

    def _handle_actions(self, sync: BookSync, conn: ManagedConnection, actions: list[SyncAction]) -> None:
        symbol = sync.symbol
        for action in actions:
            kind = type(action)
            if kind is BookUpdate:
                update: BookUpdate = action  # type: ignore[assignment]
                self.published += 1
                self._publish(update)
                iv = self._book_iv[symbol]
                ts = (
                    update.timestamp_ms if update.timestamp_ms is not None else update.receipt_ns // 1_000_000
                )
                if update.is_snapshot and self._failed_rounds.pop(symbol, None) is not None:
                    retry = self._retry_tasks.pop(symbol, None)
                    if retry is not None:
                        retry.cancel()
                    log.info("%s: book %s synced again after failing", self.name, symbol)
                opened = iv.on_data(ts)
                if opened is not None:
                    self._book_live_again(sync, opened, update, ts)
            elif kind is Dropped:
                continue
            elif kind is NeedSnapshot:
                need: NeedSnapshot = action  # type: ignore[assignment]
                self._resync_started(sync, conn, need.cause, need.reason)
                self._request_snapshot(sync, need)
            elif kind is NeedResubscribe:
                resub: NeedResubscribe = action  # type: ignore[assignment]
                self._resync_started(sync, conn, resub.cause, resub.reason)
                sub = self._book_subs.get(resub.symbol)
                if sub is not None:
                    self._spawn(self._resubscribe(conn, sub, resub.attempt))
            elif kind is BookFailed:
                failed: BookFailed = action  # type: ignore[assignment]
                self._resync_started(sync, conn, failed.cause, failed.reason)
                self._book_failed(sync, failed)
        conn.set_stream_health((_BOOK, symbol), sync.state is BookState.LIVE)

    def _resync_started(
        self, sync: BookSync, conn: ManagedConnection, cause: ResyncCause | None, reason: str
    ) -> None:
        if cause is ResyncCause.GAP:
            conn.report_sequence_gap()
        elif cause is ResyncCause.CHECKSUM:
            conn.report_book_error()
        iv = self._book_iv.get(sync.symbol)
        if iv is not None and cause is not None:
            iv.interrupted(GapCause.RESYNC, f"{cause.value}: {reason}")
        if cause in (ResyncCause.GAP, ResyncCause.CHECKSUM, ResyncCause.MALFORMED, ResyncCause.OVERFLOW):
            log.warning("%s: book %s resyncing (%s: %s)", self.name, sync.symbol, cause.value, reason)
        elif cause is not None:
            log.info("%s: book %s resyncing (%s: %s)", self.name, sync.symbol, cause.value, reason)

    def _book_live_again(self, sync: BookSync, opened: Interruption, update: BookUpdate, ts: int) -> None:
        symbol = sync.symbol
        gap = _interval_gap(update, _BOOK, opened, ts)
        log.info(
            "%s: book %s live again%s (%s)",
            self.name,
            symbol,
            "" if gap.from_ms is None else f" {(ts - gap.from_ms) / 1000:.1f} s after the last update",
            opened.detail or opened.cause.value,
        )
        self._publish_gap(gap, logged=True)

    def _book_failed(self, sync: BookSync, failed: BookFailed) -> None:
        symbol = sync.symbol
        rounds = self._failed_rounds.get(symbol, 0) + 1
        self._failed_rounds[symbol] = rounds
        delay = _FAILED_RETRY_S[min(rounds - 1, len(_FAILED_RETRY_S) - 1)]
        log.error(
            "%s: book %s FAILED after %d consecutive failed syncs (last: %s); retrying in %.0f s",
            self.name,
            symbol,
            failed.failures,
            failed.reason,
            delay,
        )
        old = self._retry_tasks.pop(symbol, None)
        if old is not None:
            old.cancel()
        self._retry_tasks[symbol] = self._spawn(self._retry_failed(symbol, delay))

    async def _retry_failed(self, symbol: str, delay: float) -> None:
        await self._clock.sleep(delay)
        sync = self._books.get(symbol)
        if sync is None or sync.state is not BookState.FAILED:
            return
        self._retry_tasks.pop(symbol, None)
        self._restart_book(symbol, "retry of a failed book")

    def _restart_book(self, symbol: str, reason: str) -> None:
        sync = self._books[symbol]
        sub = self._book_subs[symbol]
        conn = self._conn_of.get(sub)
        task = self._snapshot_tasks.pop(symbol, None)
        if task is not None:
            task.cancel()
        log.info("%s: book %s: %s", self.name, symbol, reason)
        actions = sync.restart(reason)
        if conn is not None:
            self._handle_actions(sync, conn, actions)

    def _register(self, sub: Subscription) -> None:
        symbol = sub.symbol
        adapter = self.adapter
        if sub.channel is _TRADES:
            if symbol not in self._trades:
                self._trades[symbol] = TradeStream(
                    symbol, contiguous=adapter.trade_ids_contiguous, can_backfill=adapter.trade_backfill
                )
            return
        if sub.channel is _TICKER:
            self._tickers.setdefault(symbol, TickerFilter())
            self._ticker_iv.setdefault(symbol, IntervalTracker())
            return
        if symbol in self._books:
            return
        sync = BookSync(
            adapter.book_sync,
            adapter.exchange,
            symbol,
            adapter.exchange_symbol(symbol),
            feed=self.name,
            amount_unit=adapter.amount_unit(symbol),
            contract_size=adapter.contract_sizes.get(symbol),
        )
        self._books[symbol] = sync
        self._book_subs[symbol] = sub
        self._book_iv[symbol] = IntervalTracker()
        sync.start()

    def _unregister(self, sub: Subscription) -> None:
        symbol = sub.symbol
        now_ms = self._clock.time_ns() // 1_000_000
        if sub.channel is _TRADES:
            stream = self._trades.pop(symbol, None)
            task = self._backfills.pop(symbol, None)
            if task is not None:
                task.cancel()
            if stream is not None:
                for action in stream.cancel_backfill("subscription removed"):
                    self._trade_action(stream, action)
                gap = stream.stop(now_ms, "subscription removed")
                if gap is not None:
                    self._publish_gap(gap)
        elif sub.channel is _TICKER:
            self._tickers.pop(symbol, None)
            self._ticker_iv.pop(symbol, None)
        else:
            self._books.pop(symbol, None)
            self._book_subs.pop(symbol, None)
            self._book_iv.pop(symbol, None)
            for tasks in (self._snapshot_tasks, self._retry_tasks):
                task = tasks.pop(symbol, None)
                if task is not None:
                    task.cancel()
        self._rejected.pop(sub.key, None)

    def _request_snapshot(self, sync: BookSync, need: NeedSnapshot) -> None:
        running = self._snapshot_tasks.get(sync.symbol)
        if running is not None and not running.done():
            return
        self._snapshot_tasks[sync.symbol] = self._spawn(self._fetch_snapshot(sync, need))

    async def _fetch_snapshot(self, sync: BookSync, need: NeedSnapshot) -> None:
        sub = self._book_subs.get(sync.symbol)
        if sub is None:
            return
        if self.adapter.book_sync.source is SnapshotSource.WS_REQUEST:
            await self._ask_snapshot(sync, need, sub)
            return
        request = self.adapter.snapshot_request(sub)
        if request is None:
            return
        if need.attempt > 0:
            await self._clock.sleep(min(30.0, 0.5 * (2 ** (need.attempt - 1))))
        receipt_ns = self._clock.time_ns()
        try:
            if self._rest is None:
                raise RestError("no REST client")
            body = await self._rest.get(request)
            snap = self.adapter.parse_snapshot(body, sub, receipt_ns)
        except (RestError, DecodeError) as exc:
            self.snapshot_errors += 1
            if isinstance(exc, RestError) and exc.status in (418, 429):
                self.rate_limited += 1
            log.warning("%s: snapshot of %s failed: %s", self.name, sub.symbol, exc)
            actions = sync.on_snapshot_error(str(exc))
        else:
            self.snapshots_fetched += 1
            actions = sync.on_snapshot(snap)
        if self._books.get(sync.symbol) is not sync:
            return  # unsubscribed meanwhile
        self._snapshot_tasks.pop(sync.symbol, None)
        conn = self._conn_of.get(sub)
        if conn is not None:
            self._handle_actions(sync, conn, actions)

    async def _ask_snapshot(self, sync: BookSync, need: NeedSnapshot, sub: Subscription) -> None:
        """Ask for the snapshot on the book's own connection (HTX ``req``) and wait for it (it is applied by
        :meth:`_on_data` like any book message); an error answer naming the book (:class:`ExchangeError` with its
        subscription), or no answer within :data:`WS_SNAPSHOT_TIMEOUT_S`, counts as a failed snapshot (retried
        with backoff by the book's sync, or the book fails after its bound)."""
        if need.attempt > 0:
            await self._clock.sleep(min(30.0, 0.5 * (2 ** (need.attempt - 1))))
        conn = self._conn_of.get(sub)
        frame = self.adapter.snapshot_frame(sub, take_request_ids(1))
        if conn is None or frame is None:
            return  # no connection carries the book now: its reconnect starts a new sync
        interval = self.adapter.policy.snapshot_request_interval_s
        if interval:
            # the exchange allows one such request per interval per connection (HTX: one req per 100 ms): take
            # the next free slot of this connection, so several books' requests never go out back to back
            now = self._clock.monotonic()
            slot = max(now, self._ws_request_slots.get(conn, now))
            self._ws_request_slots[conn] = slot + interval
            if slot > now:
                await self._clock.sleep(slot - now)
            if self._conn_of.get(sub) is not conn or self._books.get(sync.symbol) is not sync:
                return  # moved or unsubscribed meanwhile: the new connection's sync asks again
        waiter = asyncio.Event()
        self._snapshot_waiters[sync.symbol] = waiter
        answered = False
        try:
            if await conn.send_frame(frame):
                sleeper = asyncio.ensure_future(self._clock.sleep(WS_SNAPSHOT_TIMEOUT_S))
                waiting = asyncio.ensure_future(waiter.wait())
                try:
                    await asyncio.wait((sleeper, waiting), return_when=asyncio.FIRST_COMPLETED)
                finally:
                    sleeper.cancel()
                    waiting.cancel()
                answered = waiter.is_set()
        finally:
            if self._snapshot_waiters.get(sync.symbol) is waiter:
                del self._snapshot_waiters[sync.symbol]
        refusal = self._snapshot_refusals.pop(sync.symbol, None)
        if refusal is not None:
            answered = False
        if self._snapshot_tasks.get(sync.symbol) is asyncio.current_task():
            del self._snapshot_tasks[sync.symbol]
        if answered or self._books.get(sync.symbol) is not sync:
            return  # answered (applied by _on_data), or unsubscribed meanwhile
        self.snapshot_errors += 1
        reason = (
            f"no snapshot answer within {WS_SNAPSHOT_TIMEOUT_S:g} s"
            if refusal is None
            else f"snapshot request refused: {refusal}"
        )
        log.warning("%s: snapshot of %s failed: %s", self.name, sub.symbol, reason)
        conn = self._conn_of.get(sub)
        if conn is not None:
            self._handle_actions(sync, conn, sync.on_snapshot_error(reason))

    async def _resubscribe(self, conn: ManagedConnection, sub: Subscription, attempt: int) -> None:
        if attempt > 0:
            await self._clock.sleep(min(30.0, 0.5 * (2 ** (attempt - 1))))
        if self._conn_of.get(sub) is conn:
            await conn.resubscribe([sub])

    # ----------------------------------------------------------------------------------------- backfill

    async def _backfill(self, stream: TradeStream, start: StartBackfill) -> None:
        sub = Subscription(_TRADES, stream.symbol)
        cursor = start.cursor
        fetched: list[Trade] = []
        detail = ""
        complete = False
        try:
            for _ in range(_MAX_BACKFILL_PAGES):
                request = self.adapter.backfill_request(sub, cursor)
                if request is None:
                    complete = self.adapter.trade_ids_contiguous or (
                        cursor.oldest is not None and cursor.oldest <= cursor.after_id
                    )
                    break
                if self._rest is None:
                    raise RestError("no REST client")
                self.backfill_requests += 1
                body = await self._rest.get(request, background=True)
                page = self.adapter.parse_trades(body, sub, self._clock.time_ns())
                cursor.pages += 1
                cursor.last_page_size = len(page)
                ids = [t.sequence for t in page if t.sequence is not None]
                if ids:
                    cursor.newest = max(ids) if cursor.newest is None else max(cursor.newest, *ids)
                    cursor.oldest = min(ids) if cursor.oldest is None else min(cursor.oldest, *ids)
                fetched.extend(page)
            else:
                detail = f"backfill stopped after {_MAX_BACKFILL_PAGES} pages"
        except (RestError, DecodeError) as exc:
            self.backfill_failures += 1
            detail = f"backfill failed: {exc}"
            log.warning("%s: trades %s: %s", self.name, stream.symbol, detail)
        except asyncio.CancelledError:
            if self._backfills.get(stream.symbol) is asyncio.current_task():
                self._backfills.pop(stream.symbol, None)
            for action in stream.cancel_backfill("feed stopped during the backfill"):
                self._trade_action(stream, action)
            raise
        if self._backfills.get(stream.symbol) is asyncio.current_task():
            self._backfills.pop(stream.symbol, None)
        if self._trades.get(stream.symbol) is not stream:
            return
        for action in stream.backfill_done(fetched, complete, detail):
            self._trade_action(stream, action)

    # ---------------------------------------------------------------------------------------- instruments

    async def _load_instruments(self, *, initial: bool, symbols: Sequence[str] = ()) -> bool:
        adapter = self.adapter
        try:
            if self._rest is None:
                raise RestError("no REST client")
            listed: list[Instrument] = []
            for request in adapter.instruments_requests():
                body = await self._rest.get(
                    request, timeout_s=_FIRST_INSTRUMENTS_TIMEOUT_S if initial else None
                )
                listed.extend(adapter.parse_instruments(body))
        except (RestError, DecodeError) as exc:
            if initial:
                log.warning(
                    "%s: cannot load the %s instrument list (%s); symbols are not verified yet, "
                    "trying again in the background",
                    self.name,
                    adapter.exchange,
                    exc,
                )
                self._spawn(self._retry_instruments())
            return False
        by_symbol = {i.symbol: i for i in listed}
        self._instruments = by_symbol
        adapter.set_instruments(listed)
        for symbol, sync in self._books.items():
            inst = by_symbol.get(symbol)
            if inst is not None:
                sync.contract_size = inst.contract_size
        wanted = sorted({s.symbol for s in self._conn_of} | set(symbols))
        unknown = [s for s in wanted if s not in by_symbol]
        for sym in wanted:
            inst = by_symbol.get(sym)
            if inst is not None and not inst.active:
                log.warning("%s: %s is listed but not trading (status %s)", self.name, sym, inst.status)
        if unknown:
            self._unknown = unknown
            if initial:
                raise BadSymbol(self.name, adapter.exchange, adapter.market.value, unknown)
            log.error(
                "%s: %s %s has no instrument %s; those subscriptions are removed",
                self.name,
                adapter.exchange,
                adapter.market.value,
                ", ".join(unknown),
            )
            await self.unsubscribe([s for s in list(self._conn_of) if s.symbol in unknown])
        return True

    async def _retry_instruments(self) -> None:
        delays = itertools.chain(_INSTRUMENT_RETRY_S, itertools.repeat(_INSTRUMENT_RETRY_S[-1]))
        for delay in delays:
            await self._clock.sleep(delay)
            if self._stopped:
                return
            if await self._load_instruments(initial=False):
                log.info("%s: instrument list loaded; symbols verified", self.name)
                return

    # ---------------------------------------------------------------------------------------------- events

    def _handle_event(self, event: ConnectionEvent) -> None:
        etype = event.type
        if etype is _E.DISCONNECTED:
            self._interrupted(event.connection_id, GapCause.DISCONNECT, event.description)
        elif etype is _E.STALE_SUBSCRIPTION and event.symbol is not None and event.stream is not None:
            conn = self._conn_of.get(Subscription(Channel(event.stream), event.symbol))
            if conn is not None and conn.conn_id == event.connection_id:
                self._stream_stale(conn, Channel(event.stream), event.symbol, event.description)
        elif etype is _E.SUBSCRIPTION_REJECTED and event.symbol is not None and event.stream is not None:
            self._rejected[(Channel(event.stream), event.symbol)] = event.error or event.description
        elif etype is _E.ERROR and event.stream == _BOOK.value and event.symbol is not None:
            waiter = self._snapshot_waiters.get(event.symbol)
            if waiter is not None:  # the exchange refused the snapshot request (HTX req error): fail it now
                self._snapshot_refusals[event.symbol] = event.error or event.description
                waiter.set()
        if self._on_event is not None:
            self._on_event(event)

    def _interrupted(self, conn_id: str, cause: GapCause, detail: str) -> None:
        for sub, conn in list(self._conn_of.items()):
            if conn.conn_id != conn_id:
                continue
            symbol = sub.symbol
            self._interrupt_stream(sub.channel, symbol, cause, detail)
            if sub.channel is _BOOK:
                sync = self._books.get(symbol)
                if sync is not None:
                    task = self._snapshot_tasks.pop(symbol, None)
                    if task is not None:
                        task.cancel()
                    retry = self._retry_tasks.pop(symbol, None)
                    if retry is not None:
                        retry.cancel()
                    self._handle_actions(sync, conn, sync.on_connection_lost())

    def _interrupt_stream(self, channel: Channel, symbol: str, cause: GapCause, detail: str) -> None:
        """Open an interruption interval on the stream ``(channel, symbol)``, if the feed has it."""
        tracker: TradeStream | IntervalTracker | None
        if channel is _TRADES:
            tracker = self._trades.get(symbol)
        elif channel is _TICKER:
            tracker = self._ticker_iv.get(symbol)
        else:
            tracker = self._book_iv.get(symbol)
        if tracker is not None:
            tracker.interrupted(cause, detail)

    def _stream_stale(self, conn: ManagedConnection, channel: Channel, symbol: str, detail: str) -> None:
        self._interrupt_stream(channel, symbol, GapCause.STALL, detail)
        if channel is _BOOK:
            sync = self._books.get(symbol)
            if sync is not None:
                self._handle_actions(sync, conn, sync.on_stale())

    def _close_open_gaps(self, detail: str) -> None:
        now_ns = self._clock.time_ns()
        now_ms = now_ns // 1_000_000
        for stream in self._trades.values():
            for action in stream.cancel_backfill(detail):
                self._trade_action(stream, action)
            gap = stream.stop(now_ms, detail)
            if gap is not None:
                self._publish_gap(gap)
        for channel, trackers in ((_TICKER, self._ticker_iv), (_BOOK, self._book_iv)):
            for symbol, iv in trackers.items():
                opened = iv.take_open()
                if opened is None:
                    continue
                exchange_symbol = self.adapter.exchange_symbol(symbol)
                self._publish_gap(
                    Gap(
                        exchange=self.adapter.exchange,
                        symbol=symbol,
                        exchange_symbol=exchange_symbol,
                        stream=channel,
                        cause=opened.cause,
                        from_ms=opened.from_ms,
                        to_ms=None,
                        receipt_ns=now_ns,
                        feed=self.name,
                        detail=f"{opened.detail}; {detail}" if opened.detail else detail,
                    )
                )

    # --------------------------------------------------------------------------------------------- helpers

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: background task failed", self.name, exc_info=task.exception())

    def _connection_with_room(self, spec: ConnectionSpec) -> ManagedConnection | None:
        """An open connection of ``spec``'s route and URL that can take all of ``spec``'s subscriptions within
        the policy's per-connection limits (streams, and books where the exchange bounds them)."""
        policy = self.adapter.policy
        books = sum(1 for s in spec.subscriptions if s.channel is Channel.BOOK)
        for conn in self._connections.values():
            if conn.spec.route != spec.route or conn.spec.url != spec.url:
                continue
            held = [s for s, c in self._conn_of.items() if c is conn]
            if len(held) + len(spec.subscriptions) > policy.max_streams_per_connection:
                continue
            if (
                policy.max_books_per_connection is not None
                and books
                and (
                    sum(1 for s in held if s.channel is Channel.BOOK) + books
                    > policy.max_books_per_connection
                )
            ):
                continue
            return conn
        return None


def _interval_gap(event: Trade | Ticker | BookUpdate, stream: Channel, opened: Interruption, ts: int) -> Gap:
    return Gap(
        exchange=event.exchange,
        symbol=event.symbol,
        exchange_symbol=event.exchange_symbol,
        stream=stream,
        cause=opened.cause,
        from_ms=opened.from_ms,
        to_ms=ts,
        receipt_ns=event.receipt_ns,
        feed=event.feed,
        detail=opened.detail,
    )
