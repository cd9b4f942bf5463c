"""``Feed``: one exchange and market — its connections, book sync per symbol, duplicate filtering, publishing.

Data path (hot): ``ManagedConnection`` -> :meth:`Feed._on_data` -> for each item

- :class:`~cryptolink.models.Trade`: dropped when its ``sequence`` is not newer than the last one published for
  the symbol (a duplicate from the second socket of a make-before-break rotation, or a resend after a reconnect);
- :class:`~cryptolink.models.Ticker`: dropped when its ``sequence`` (or, without one, its ``timestamp_ms``) is
  older than the last published, or equal to it with the same prices and sizes (a resend);
- :class:`~cryptolink.exchanges.base.BookMessage`: handed to the symbol's :class:`~cryptolink.book.sync.BookSync`,
  which drops duplicates by sequence, applies checked messages and asks for a REST snapshot
  (:class:`~cryptolink.book.sync.NeedSnapshot`) or a re-subscription (:class:`~cryptolink.book.sync.NeedResubscribe`)
  for THAT symbol only when it finds a gap or a checksum mismatch.

Whatever passes is published on the :class:`~cryptolink.bus.Bus`. Snapshot fetches are bounded: one in flight per
symbol, ``max_concurrent_snapshots`` per feed, a growing delay between a symbol's consecutive attempts, and an HTTP
429/418 answer pauses every snapshot of the feed for its ``Retry-After`` (Binance REST rules, EXCHANGES.md
section 1 "REST").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from cryptolink.book.orderbook import BookState, OrderBook
from cryptolink.book.sync import BookFailed, BookSync, Dropped, NeedResubscribe, NeedSnapshot, SyncAction
from cryptolink.clock import Clock
from cryptolink.engine import (
    ConnectionEvent,
    ConnectionEventType,
    ConnectionState,
    ConnectionStats,
    EngineConfig,
    ManagedConnection,
    Transport,
)
from cryptolink.exchanges.base import BookMessage, DecodeError, ExchangeAdapter, RestRequest
from cryptolink.models import BookUpdate, Channel, Subscription, Ticker, Trade

__all__ = ["BookHealth", "Feed", "FeedStats", "SnapshotError"]

log = logging.getLogger(__name__)

Publish = Callable[[object], None]


class SnapshotError(Exception):
    """A REST snapshot request failed (HTTP status, transport error or unparsable body).

    ``retry_after_s`` is set when the exchange asked us to back off (HTTP 429/418 ``Retry-After``).
    """

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class BookHealth:
    """One book's state: ``state`` is the :class:`~cryptolink.book.orderbook.BookState` value."""

    symbol: str
    state: str
    last_sequence: int | None
    gaps: int
    checksum_failures: int
    resyncs: int
    dropped: int


@dataclass(frozen=True, slots=True)
class FeedStats:
    """Counters of one feed (a snapshot)."""

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


class Feed:
    """Connections, books and de-duplication of one (exchange, market).

    Args:
        name: the feed's name (the config entry name, e.g. ``binance``).
        adapter: the exchange's sans-I/O adapter.
        publish: where checked events go (``Bus.publish``); called on the event loop, must not block.
        engine_config: connection engine tunables.
        clock: time source.
        transport: WebSocket factory.
        http: aiohttp session used for REST snapshots (shared, so connections are reused).
        on_event: receives every :class:`~cryptolink.engine.ConnectionEvent` of the feed's connections.
        max_concurrent_snapshots: REST snapshot requests in flight at once, per feed.
        snapshot_timeout_s: timeout of one snapshot request, s.
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
        http: aiohttp.ClientSession | None,
        on_event: Callable[[ConnectionEvent], None] | None = None,
        max_concurrent_snapshots: int = 2,
        snapshot_timeout_s: float = 10.0,
    ) -> None:
        self.name = name
        self.adapter = adapter
        self._publish = publish
        self._engine_config = engine_config
        self._clock = clock
        self._transport = transport
        self._http = http
        self._on_event = on_event
        self._snapshot_slots = asyncio.Semaphore(max_concurrent_snapshots)
        self._snapshot_timeout_s = snapshot_timeout_s
        self._connections: dict[str, ManagedConnection] = {}
        self._conn_of: dict[Subscription, ManagedConnection] = {}
        self._books: dict[str, BookSync] = {}
        self._book_subs: dict[str, Subscription] = {}
        self._last_trade: dict[str, int] = {}
        self._last_ticker: dict[str, Ticker] = {}
        self._snapshot_tasks: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._paused_until = 0.0
        self._conn_seq = 0
        self._started = False
        self.published = 0
        self.duplicates_dropped = 0
        self.snapshots_fetched = 0
        self.snapshot_errors = 0
        self.rate_limited = 0

    # ------------------------------------------------------------------------------------------- public API

    @property
    def connections(self) -> dict[str, ManagedConnection]:
        """The feed's connections by id (a copy)."""
        return dict(self._connections)

    @property
    def subscriptions(self) -> list[Subscription]:
        """Every subscription the feed holds, sorted."""
        return sorted(self._conn_of)

    def book(self, symbol: str) -> OrderBook | None:
        """The maintained L2 book of unified ``symbol`` (``None``: not subscribed). Check ``book.state``."""
        sync = self._books.get(symbol)
        return sync.book if sync is not None else None

    async def start(self, subscriptions: Sequence[Subscription]) -> None:
        """Open connections for ``subscriptions`` (planned by the adapter) and start them."""
        self._started = True
        await self.subscribe(subscriptions)

    async def stop(self) -> None:
        """Stop every connection gracefully (unsubscribe, close) and cancel pending snapshot work."""
        self._started = False
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await asyncio.gather(*(c.stop() for c in self._connections.values()), return_exceptions=True)

    async def subscribe(self, subscriptions: Sequence[Subscription]) -> None:
        """Add subscriptions at run time: onto an existing connection with room on the same route, else new ones.

        Raises:
            ValueError: a symbol does not belong to this feed's exchange and market.
        """
        new = [s for s in dict.fromkeys(subscriptions) if s not in self._conn_of]
        for sub in new:
            self.adapter.exchange_symbol(sub.symbol)  # raises ValueError early for a foreign symbol
        if not new:
            return
        for spec in self.adapter.plan_connections(new):
            target = self._connection_with_room(spec.route, spec.url, len(spec.subscriptions))
            for sub in spec.subscriptions:
                self._register_book(sub)
            if target is None:
                self._conn_seq += 1
                conn_id = f"{self.name}-{spec.route or 'ws'}-{self._conn_seq}"
                conn = ManagedConnection(
                    self.adapter,
                    spec,
                    conn_id=conn_id,
                    config=self._engine_config,
                    clock=self._clock,
                    transport=self._transport,
                    on_data=self._on_data,
                    on_event=self._handle_event,
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
            if sub.channel is Channel.BOOK:
                self._books.pop(sub.symbol, None)
                self._book_subs.pop(sub.symbol, None)
                task = self._snapshot_tasks.pop(sub.symbol, None)
                if task is not None:
                    task.cancel()
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

    def states(self) -> dict[str, ConnectionState]:
        """Connection id -> state."""
        return {cid: c.state for cid, c in self._connections.items()}

    def book_health(self) -> list[BookHealth]:
        """One record per maintained book, sorted by symbol."""
        out = []
        for symbol, sync in sorted(self._books.items()):
            s = sync.stats()
            out.append(
                BookHealth(
                    symbol=symbol,
                    state=str(s.state.value),
                    last_sequence=s.last_sequence,
                    gaps=s.gaps,
                    checksum_failures=s.checksum_failures,
                    resyncs=s.resyncs,
                    dropped=s.dropped,
                )
            )
        return out

    def stats(self) -> FeedStats:
        """An immutable snapshot of the feed's counters and its connections' stats."""
        return FeedStats(
            name=self.name,
            exchange=self.adapter.exchange,
            market=str(self.adapter.market.value),
            connections=tuple(c.stats() for c in self._connections.values()),
            books=tuple(self.book_health()),
            published=self.published,
            duplicates_dropped=self.duplicates_dropped,
            snapshots_fetched=self.snapshots_fetched,
            snapshot_errors=self.snapshot_errors,
            rate_limited=self.rate_limited,
        )

    # --------------------------------------------------------------------------------------------- data path

    def _on_data(self, conn: ManagedConnection, items: list[Trade | Ticker | BookMessage]) -> None:
        publish = self._publish
        for item in items:
            kind = type(item)
            if kind is Trade:
                trade: Trade = item  # type: ignore[assignment]
                seq = trade.sequence
                if seq is not None:
                    last = self._last_trade.get(trade.symbol)
                    if last is not None and seq <= last:
                        self.duplicates_dropped += 1
                        continue
                    self._last_trade[trade.symbol] = seq
                self.published += 1
                publish(trade)
            elif kind is BookMessage:
                msg: BookMessage = item  # type: ignore[assignment]
                sync = self._books.get(msg.symbol)
                if sync is not None:
                    self._handle_actions(sync, conn, sync.on_message(msg))
            elif kind is Ticker:
                ticker: Ticker = item  # type: ignore[assignment]
                if self._ticker_is_duplicate(ticker):
                    self.duplicates_dropped += 1
                    continue
                self._last_ticker[ticker.symbol] = ticker
                self.published += 1
                publish(ticker)

    def _ticker_is_duplicate(self, ticker: Ticker) -> bool:
        last = self._last_ticker.get(ticker.symbol)
        if last is None:
            return False
        if ticker.sequence is not None and last.sequence is not None:
            if ticker.sequence != last.sequence:
                return ticker.sequence < last.sequence
        elif (
            ticker.timestamp_ms is not None
            and last.timestamp_ms is not None
            and ticker.timestamp_ms != last.timestamp_ms
        ):
            return ticker.timestamp_ms < last.timestamp_ms
        return (
            ticker.bid_price == last.bid_price
            and ticker.bid_size == last.bid_size
            and ticker.ask_price == last.ask_price
            and ticker.ask_size == last.ask_size
            and ticker.last_price == last.last_price
        )

    def _handle_actions(self, sync: BookSync, conn: ManagedConnection, actions: list[SyncAction]) -> None:
        for action in actions:
            kind = type(action)
            if kind is BookUpdate:
                self.published += 1
                self._publish(action)
            elif kind is Dropped:
                continue
            elif kind is NeedSnapshot:
                self._request_snapshot(sync, action)  # type: ignore[arg-type]
            elif kind is NeedResubscribe:
                resub: NeedResubscribe = action  # type: ignore[assignment]
                conn.report_sequence_gap()
                sub = self._book_subs.get(resub.symbol)
                if sub is not None:
                    self._spawn(self._resubscribe(conn, sub, resub.attempt))
            elif kind is BookFailed:
                failed: BookFailed = action  # type: ignore[assignment]
                log.error("%s: book %s FAILED: %s", self.name, failed.symbol, failed.reason)
                conn.set_book_failing((Channel.BOOK, failed.symbol), True)
        if sync.state is BookState.LIVE:
            conn.set_book_failing((Channel.BOOK, sync.symbol), False)

    # ---------------------------------------------------------------------------------------------- resync

    def _register_book(self, sub: Subscription) -> None:
        if sub.channel is not Channel.BOOK or sub.symbol in self._books:
            return
        sync = BookSync(
            self.adapter.book_sync,
            self.adapter.exchange,
            sub.symbol,
            self.adapter.exchange_symbol(sub.symbol),
        )
        self._books[sub.symbol] = sync
        self._book_subs[sub.symbol] = sub
        sync.start()

    def _request_snapshot(self, sync: BookSync, need: NeedSnapshot) -> None:
        if need.attempt > 0:
            conn = self._conn_of.get(self._book_subs.get(sync.symbol, _NO_SUB))
            if conn is not None:
                conn.report_sequence_gap()
        running = self._snapshot_tasks.get(sync.symbol)
        if running is not None and not running.done():
            return
        task = self._spawn(self._fetch_snapshot(sync, need))
        self._snapshot_tasks[sync.symbol] = task

    async def _fetch_snapshot(self, sync: BookSync, need: NeedSnapshot) -> None:
        sub = self._book_subs.get(sync.symbol)
        if sub is None:
            return
        request = self.adapter.snapshot_request(sub)
        if request is None:
            return
        delay = min(30.0, 0.5 * (2 ** (need.attempt - 1))) if need.attempt > 0 else 0.0
        delay = max(delay, self._paused_until - self._clock.monotonic())
        if delay > 0:
            await self._clock.sleep(delay)
        async with self._snapshot_slots:
            receipt_ns = self._clock.time_ns()
            try:
                body = await self._get(request)
                snap = self.adapter.parse_snapshot(body, sub, receipt_ns)
            except (SnapshotError, DecodeError) as exc:
                self.snapshot_errors += 1
                retry_after = getattr(exc, "retry_after_s", None)
                if retry_after is not None:
                    self.rate_limited += 1
                    self._paused_until = self._clock.monotonic() + retry_after
                log.warning("%s: snapshot of %s failed: %s", self.name, sub.symbol, exc)
                actions = sync.on_snapshot_error(str(exc))
            else:
                self.snapshots_fetched += 1
                actions = sync.on_snapshot(snap)
        if self._books.get(sync.symbol) is not sync:
            return  # unsubscribed meanwhile
        conn = self._conn_of.get(sub)
        if conn is not None:
            # the task is finished with; let a new NeedSnapshot start another
            self._snapshot_tasks.pop(sync.symbol, None)
            self._handle_actions(sync, conn, actions)

    async def _get(self, request: RestRequest) -> bytes:
        if self._http is None:
            raise SnapshotError("no HTTP session")
        url = self.adapter.rest_base_url + request.path
        try:
            async with self._http.get(
                url, params=request.params, timeout=aiohttp.ClientTimeout(total=self._snapshot_timeout_s)
            ) as resp:
                body = await resp.read()
                if resp.status in (418, 429):
                    retry = _retry_after(resp.headers.get("Retry-After"))
                    raise SnapshotError(
                        f"HTTP {resp.status} from {url}", retry_after_s=60.0 if retry is None else retry
                    )
                if resp.status != 200:
                    raise SnapshotError(f"HTTP {resp.status} from {url}: {body[:200]!r}")
                return body
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SnapshotError(f"{type(exc).__name__} from {url}: {exc}") from exc

    async def _resubscribe(self, conn: ManagedConnection, sub: Subscription, attempt: int) -> None:
        if attempt > 0:
            await self._clock.sleep(min(30.0, 0.5 * (2 ** (attempt - 1))))
        if self._conn_of.get(sub) is conn:
            await conn.resubscribe([sub])

    # ---------------------------------------------------------------------------------------------- events

    def _handle_event(self, event: ConnectionEvent) -> None:
        if event.type is ConnectionEventType.DISCONNECTED:
            conn = self._connections.get(event.connection_id)
            if conn is not None:
                self._books_lost(s for s, c in self._conn_of.items() if c is conn)
        if self._on_event is not None:
            self._on_event(event)

    def _books_lost(self, subs: Iterable[Subscription]) -> None:
        for sub in subs:
            if sub.channel is not Channel.BOOK:
                continue
            sync = self._books.get(sub.symbol)
            conn = self._conn_of.get(sub)
            if sync is not None and conn is not None:
                self._handle_actions(sync, conn, sync.on_connection_lost())

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: background task failed", self.name, exc_info=task.exception())

    def _connection_with_room(self, route: str, url: str, count: int) -> ManagedConnection | None:
        limit = self.adapter.policy.max_streams_per_connection
        for conn in self._connections.values():
            if conn.spec.route != route or conn.spec.url != url:
                continue
            held = sum(1 for c in self._conn_of.values() if c is conn)
            if held + count <= limit:
                return conn
        return None


_NO_SUB = Subscription(Channel.BOOK, "")


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
