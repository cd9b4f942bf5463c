"""Feed: true duplicates only, id regressions, gaps and trade backfill, book resync and failed-book retries,
REST snapshots (429 Retry-After), instrument checks; against a loopback Binance-like REST server."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from cryptolink.book.orderbook import BookState
from cryptolink.clock import Clock, FakeClock, SystemClock
from cryptolink.engine import EngineConfig
from cryptolink.engine.events import ConnectionEvent, ConnectionEventType, Severity
from cryptolink.exchanges import get_adapter
from cryptolink.exchanges.base import BookMessage, BookSyncSpec, SequenceModel, SnapshotSource
from cryptolink.feed import WS_SNAPSHOT_TIMEOUT_S, BadSymbol, Feed
from cryptolink.models import BookUpdate, Channel, Gap, GapCause, Market, Side, Subscription, Ticker, Trade
from cryptolink.rest import RestClient
from tests.engine.fakes import REFUSED, FakeTransport, settle
from tests.http_server import serve_app

pytestmark = pytest.mark.timeout(30)

BTC_BOOK = Subscription(Channel.BOOK, "BTC/USDT")
BTC_TRADES = Subscription(Channel.TRADES, "BTC/USDT")
BTC_TICKER = Subscription(Channel.TICKER, "BTC/USDT")


class StubConnection:
    """What the feed calls on a connection, recorded."""

    def __init__(self, conn_id: str = "binance-ws-1") -> None:
        self.conn_id = conn_id
        self.rotating = False
        self.gaps = 0
        self.book_errors = 0
        self.health: dict[tuple[Channel, str], bool] = {}
        self.resubscribed: list[list[Subscription]] = []

    def report_sequence_gap(self, n: int = 1) -> None:
        self.gaps += n

    def report_book_error(self, n: int = 1) -> None:
        self.book_errors += n

    def set_stream_health(self, key: tuple[Channel, str], healthy: bool) -> None:
        self.health[key] = healthy

    async def resubscribe(self, subs: list[Subscription]) -> None:
        self.resubscribed.append(subs)


def trade(seq: int, symbol: str = "BTC/USDT", ts: int | None = None) -> Trade:
    return Trade(
        "binance",
        symbol,
        symbol.replace("/", ""),
        Decimal("1"),
        Decimal("2"),
        Side.BUY,
        str(seq),
        1_000 + seq if ts is None else ts,
        1,
        seq,
        feed="binance",
    )


def ticker(seq: int | None, bid: str, ts: int | None = None) -> Ticker:
    return Ticker(
        "binance",
        "BTC/USDT",
        "BTCUSDT",
        Decimal(bid),
        Decimal("1"),
        Decimal("9"),
        Decimal("1"),
        None,
        ts,
        1,
        seq,
    )


def delta(first: int, last: int, bid: str = "100") -> BookMessage:
    return BookMessage(
        "BTC/USDT", "BTCUSDT", False, [[bid, "1"]], [["101", "1"]], first, last, None, None, 1, 1
    )


@dataclass
class RestState:
    """The loopback server's behaviour and what it saw."""

    snapshot_id: int = 10
    depth_failures: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    trades: dict[int, int] = field(default_factory=dict)  # id -> time ms
    trades_status: int = 200
    symbols: list[str] = field(default_factory=lambda: ["BTCUSDT", "ETHUSDT"])
    calls: list[str] = field(default_factory=list)
    seen: asyncio.Event = field(default_factory=asyncio.Event)

    def note(self, what: str) -> None:
        self.calls.append(what)
        self.seen.set()

    async def next_call(self, what: str) -> None:
        """Wait for the next request of kind ``what`` (``depth``, ``trades``, ``info``)."""
        before = self.calls.count(what)
        while self.calls.count(what) <= before:
            self.seen.clear()
            await self.seen.wait()


@pytest.fixture
async def rest_server() -> AsyncIterator[tuple[str, RestState]]:
    state = RestState()

    async def depth(request: web.Request) -> web.Response:
        state.note("depth")
        if state.depth_failures:
            status, headers = state.depth_failures.pop(0)
            return web.json_response({"code": -1003, "msg": "no"}, status=status, headers=headers)
        return web.json_response(
            {"lastUpdateId": state.snapshot_id, "bids": [["99", "5"]], "asks": [["102", "5"]]}
        )

    async def historical(request: web.Request) -> web.Response:
        state.note("trades")
        if state.trades_status != 200:
            return web.json_response({"code": -1, "msg": "down"}, status=state.trades_status)
        start, limit = int(request.query["fromId"]), int(request.query["limit"])
        items = [
            {"id": i, "price": "1", "qty": "2", "quoteQty": "2", "time": state.trades[i], "isBuyerMaker": False,
             "isBestMatch": True}
            for i in range(start, start + limit) if i in state.trades
        ]  # fmt: skip
        return web.json_response(items)

    async def info(request: web.Request) -> web.Response:
        state.note("info")
        return web.json_response(
            {
                "symbols": [
                    {"symbol": s, "status": "TRADING", "baseAsset": s[:-4], "quoteAsset": "USDT"}
                    for s in state.symbols
                ]
            }
        )

    app = web.Application()
    app.router.add_get("/api/v3/depth", depth)
    app.router.add_get("/api/v3/historicalTrades", historical)
    app.router.add_get("/api/v3/exchangeInfo", info)
    async with serve_app(app) as url:
        yield url, state


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def make_feed(
    published: list[Any],
    http: aiohttp.ClientSession | None = None,
    rest: str = "http://127.0.0.1:9",
    clock: Clock | None = None,
    transport: FakeTransport | None = None,
) -> Feed:
    clock = clock or SystemClock()
    adapter = get_adapter("binance", Market.SPOT, rest_base_url=rest, feed="binance")
    return Feed(
        "binance",
        adapter,
        publish=published.append,
        engine_config=EngineConfig(),
        clock=clock,
        transport=transport or FakeTransport(REFUSED),
        rest=RestClient("binance test", rest, http, clock, None),
    )


def attach(feed: Feed, *subs: Subscription) -> StubConnection:
    """Register ``subs`` on a stub connection without opening anything."""
    conn = StubConnection()
    for sub in subs:
        feed._register(sub)
        feed._conn_of[sub] = conn  # type: ignore[assignment]
    return conn


def disconnected(conn: StubConnection, why: str = "connection lost without a close frame (code 1006)") -> Any:
    return ConnectionEvent(
        ConnectionEventType.DISCONNECTED,
        Severity.WARNING,
        0,
        0.0,
        conn.conn_id,
        "binance",
        f"session ended: {why}",
    )


def seqs(out: list[Any]) -> list[object]:
    return [x.sequence if isinstance(x, Trade) else "gap" if isinstance(x, Gap) else None for x in out]


def test_only_true_duplicates_are_dropped_and_an_id_restart_continues(
    caplog: pytest.LogCaptureFixture,
) -> None:
    out: list[Any] = []
    feed = make_feed(out)
    conn = attach(feed, BTC_TRADES)
    feed._on_data(conn, [trade(1), trade(2), trade(2), trade(3), trade(1, "ETH/USDT")])  # type: ignore[arg-type]
    assert seqs(out) == [1, 2, 3, 1]  # ETH is not subscribed here: passed through
    out.clear()
    # the exchange restarted: ids 1.. again, with new times: every trade is delivered, the restart reported
    feed._on_data(conn, [trade(1, ts=99_000), trade(2, ts=99_001)])  # type: ignore[arg-type]
    assert seqs(out) == [1, 2]
    st = feed.stats()
    assert st.duplicates_dropped == 1 and st.id_regressions == 1
    assert "ids restarted at 1 after 3" in caplog.text


def test_tickers_stale_only_during_a_rotation_overlap() -> None:
    out: list[Any] = []
    feed = make_feed(out)
    conn = attach(feed, BTC_TICKER)
    feed._on_data(conn, [ticker(5, "1"), ticker(5, "1"), ticker(5, "2"), ticker(6, "3")])  # type: ignore[arg-type]
    conn.rotating = True
    feed._on_data(conn, [ticker(4, "0")])  # type: ignore[arg-type]
    conn.rotating = False
    feed._on_data(conn, [ticker(2, "7")])  # type: ignore[arg-type]
    assert [(t.sequence, t.bid_price) for t in out] == [(5, 1), (5, 2), (6, 3), (2, 7)]
    st = feed.stats()
    assert (st.duplicates_dropped, st.stale_dropped, st.id_regressions) == (1, 1, 1)


async def test_disconnect_then_backfill_delivers_missed_trades_in_order(
    rest_server: tuple[str, RestState], http: aiohttp.ClientSession
) -> None:
    rest, state = rest_server
    state.trades = {i: 1_000 + i for i in range(1, 3000)}
    out: list[Any] = []
    feed = make_feed(out, http, rest)
    conn = attach(feed, BTC_TRADES)
    feed._on_data(conn, [trade(1), trade(2)])  # type: ignore[arg-type]
    feed._handle_event(disconnected(conn))
    feed._on_data(conn, [trade(1500)])  # type: ignore[arg-type]  # 3..1499 were missed
    feed._on_data(conn, [trade(1501)])  # type: ignore[arg-type]  # held while the backfill runs
    assert seqs(out) == [1, 2]
    assert (feed.stats().backfills_running, feed.stats().trades_held) == (1, 1)
    task = feed._backfills["BTC/USDT"]
    await asyncio.wait_for(task, 10)
    assert (feed.stats().backfills_running, feed.stats().trades_held) == (0, 0)
    assert seqs(out) == [1, 2, "gap", *range(3, 1500), 1500, 1501]
    gap = out[2]
    assert isinstance(gap, Gap) and gap.recovered and gap.backfilled == 1497
    assert (gap.cause, gap.first_missing_id, gap.last_missing_id) == (GapCause.DISCONNECT, 3, 1499)
    assert (gap.from_ms, gap.to_ms, gap.feed) == (1002, 2500, "binance")
    assert all(t.backfilled for t in out[3:-2]) and not out[-1].backfilled
    assert state.calls.count("trades") == 2  # 1000 + 497 ids
    st = feed.stats()
    assert (
        st.backfilled_trades == 1497 and st.gaps == 1 and st.gaps_recovered == 1 and st.backfill_requests == 2
    )
    assert st.gaps_by_stream == {"trades": 1}


async def test_a_backfill_stops_after_100_pages_and_says_the_gap_is_incomplete(
    rest_server: tuple[str, RestState], http: aiohttp.ClientSession
) -> None:
    rest, state = rest_server
    state.trades = {i: 1_000 + i for i in range(1, 100_010)}
    out: list[Any] = []
    feed = make_feed(out, http, rest)
    feed._rest = RestClient("binance test", rest, http, SystemClock(), None)  # no weight budget: no waiting
    conn = attach(feed, BTC_TRADES)
    feed._on_data(conn, [trade(1), trade(2)])  # type: ignore[arg-type]
    feed._handle_event(disconnected(conn))
    feed._on_data(conn, [trade(100_009)])  # type: ignore[arg-type]  # 3..100_008 missed: 101 pages of 1000
    await asyncio.wait_for(feed._backfills["BTC/USDT"], 30)
    gap = out[2]
    assert isinstance(gap, Gap) and not gap.recovered and gap.backfilled == 100_000
    assert "backfill stopped after 100 pages" in gap.detail
    assert seqs(out[3:]) == [*range(3, 100_003), 100_009]
    assert state.calls.count("trades") == 100 and feed.stats().gaps_recovered == 0


async def test_failed_backfill_publishes_an_incomplete_gap_and_every_live_trade(
    rest_server: tuple[str, RestState], http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    rest, state = rest_server
    state.trades_status = 503
    out: list[Any] = []
    feed = make_feed(out, http, rest)
    conn = attach(feed, BTC_TRADES)
    feed._on_data(conn, [trade(1), trade(5), trade(6)])  # type: ignore[arg-type]  # 2..4 skipped
    await asyncio.wait_for(feed._backfills["BTC/USDT"], 10)
    assert seqs(out) == [1, "gap", 5, 6]
    gap = out[1]
    assert isinstance(gap, Gap) and not gap.recovered and gap.cause is GapCause.MISSING_IDS
    assert (gap.first_missing_id, gap.last_missing_id) == (2, 4) and "HTTP 503" in gap.detail
    assert feed.stats().backfill_failures == 1
    assert "INCOMPLETE: trades missing" in caplog.text


async def test_stop_publishes_the_gaps_still_open(
    rest_server: tuple[str, RestState], http: aiohttp.ClientSession
) -> None:
    rest, _ = rest_server
    out: list[Any] = []
    feed = make_feed(out, http, rest)
    conn = attach(feed, BTC_TRADES, BTC_TICKER)
    feed._on_data(conn, [trade(1), ticker(7, "1", ts=500)])  # type: ignore[arg-type]
    feed._handle_event(disconnected(conn))
    await feed.stop()
    gaps = [g for g in out if isinstance(g, Gap)]
    assert sorted(g.stream.value for g in gaps) == ["ticker", "trades"]
    assert all(
        g.to_ms is None and g.cause is GapCause.DISCONNECT and "feed stopped" in g.detail for g in gaps
    )


async def test_rest_snapshot_after_429_then_gap_resyncs_that_symbol(
    rest_server: tuple[str, RestState], http: aiohttp.ClientSession
) -> None:
    rest, state = rest_server
    state.depth_failures = [(429, {"Retry-After": "0"})]
    out: list[Any] = []
    feed = make_feed(out, http, rest)
    conn = attach(feed, BTC_BOOK)
    feed._on_data(conn, [delta(9, 11)])  # type: ignore[arg-type]  # buffered; asks for a snapshot
    await state.next_call("depth")
    await asyncio.wait_for(feed._snapshot_tasks["BTC/USDT"], 5)
    assert feed.book("BTC/USDT").state is not BookState.LIVE  # type: ignore[union-attr]
    feed._on_data(conn, [delta(11, 12)])  # type: ignore[arg-type]  # the next delta asks again
    await asyncio.wait_for(feed._snapshot_tasks["BTC/USDT"], 5)
    assert feed.stats().rate_limited == 1 and feed.stats().snapshot_errors == 1
    assert feed.stats().snapshots_fetched == 1
    updates = [u for u in out if isinstance(u, BookUpdate)]
    assert updates[0].is_snapshot and updates[-1].sequence == 12 and updates[0].feed == "binance"
    book = feed.book("BTC/USDT")
    assert (
        book is not None
        and book.state is BookState.LIVE
        and book.best_bid() == (Decimal("100"), Decimal("1"))
    )
    assert conn.health[(Channel.BOOK, "BTC/USDT")] is True
    # a gap (13..14 missing) asks for a new snapshot for this symbol only, and is published as a gap
    feed._on_data(conn, [delta(15, 15)])  # type: ignore[arg-type]
    assert book.state is not BookState.LIVE and conn.gaps == 1
    assert conn.health[(Channel.BOOK, "BTC/USDT")] is False
    state.snapshot_id = 15
    await asyncio.wait_for(feed._snapshot_tasks["BTC/USDT"], 5)
    feed._on_data(conn, [delta(16, 16)])
    assert book.state is BookState.LIVE
    [gap] = [g for g in out if isinstance(g, Gap)]
    assert gap.stream is Channel.BOOK and gap.cause is GapCause.RESYNC and "gap" in gap.detail
    assert feed.book_health()[0].resyncs_by_cause == {"snapshot": 1, "gap": 1}
    await feed.stop()


async def test_failed_book_is_retried_slower_and_recovers_when_rest_is_back(
    rest_server: tuple[str, RestState], http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    """REST unreachable long enough to fail the book: it stays visible as failed and is retried every 30 s (then
    slower) until a snapshot works; the old code left it failed for the life of the process."""
    rest, state = rest_server
    state.depth_failures = [(503, {})] * 5
    clock = FakeClock()
    out: list[Any] = []
    feed = make_feed(out, http, rest, clock=clock)
    conn = attach(feed, BTC_BOOK)
    feed._on_data(conn, [delta(9, 11)])  # type: ignore[arg-type]
    await asyncio.wait_for(feed._snapshot_tasks["BTC/USDT"], 5)  # attempt 1: HTTP 503
    for _ in range(4):  # attempts 2..5, each after its growing delay (0.5, 1, 2, 4 s)
        await settle()
        waiting = feed._snapshot_tasks["BTC/USDT"]
        await clock.advance(5.0)
        await asyncio.wait_for(waiting, 5)
    assert "BTC/USDT" not in feed._snapshot_tasks and state.calls.count("depth") == 5
    health = feed.book_health()[0]
    assert health.state == "failed" and health.failed_retries == 1
    assert "FAILED after 5 consecutive failed syncs" in caplog.text and "retrying in 30 s" in caplog.text
    await clock.advance(29.0)
    feed._on_data(conn, [delta(13, 13)])  # type: ignore[arg-type]  # still failed: no request
    assert state.calls.count("depth") == 5
    await clock.advance(1.5)  # the retry (30 s after the failure): the book syncs again from the next delta
    assert feed.book("BTC/USDT").state is BookState.RESYNCING  # type: ignore[union-attr]
    state.snapshot_id = 13
    feed._on_data(conn, [delta(14, 14)])  # type: ignore[arg-type]
    await asyncio.wait_for(feed._snapshot_tasks["BTC/USDT"], 5)
    assert feed.book("BTC/USDT").state is BookState.LIVE  # type: ignore[union-attr]
    assert feed.book_health()[0].failed_retries == 0
    await feed.stop()


async def test_operator_resync_restarts_a_book(
    rest_server: tuple[str, RestState], http: aiohttp.ClientSession
) -> None:
    rest, state = rest_server
    out: list[Any] = []
    feed = make_feed(out, http, rest)
    conn = attach(feed, BTC_BOOK)
    feed._on_data(conn, [delta(9, 11)])  # type: ignore[arg-type]
    await asyncio.wait_for(feed._snapshot_tasks["BTC/USDT"], 5)
    assert feed.book("BTC/USDT").state is BookState.LIVE  # type: ignore[union-attr]
    assert feed.resync() == ["BTC/USDT"]
    assert feed.book("BTC/USDT").state is BookState.RESYNCING  # type: ignore[union-attr]
    state.snapshot_id = 30
    feed._on_data(conn, [delta(30, 31)])  # type: ignore[arg-type]
    await asyncio.wait_for(feed._snapshot_tasks["BTC/USDT"], 5)
    assert feed.book("BTC/USDT").state is BookState.LIVE  # type: ignore[union-attr]
    assert feed.book_health()[0].resyncs_by_cause == {"restart": 1}
    with pytest.raises(KeyError):
        feed.resync(["DOGE/USDT"])
    await feed.stop()


async def test_unknown_symbols_refused_at_start(
    rest_server: tuple[str, RestState], http: aiohttp.ClientSession
) -> None:
    rest, _ = rest_server
    feed = make_feed([], http, rest)
    subs = [Subscription(Channel.TRADES, s) for s in ("BTC/USDT", "NOPE/USDT", "FAKE/USDT")]
    with pytest.raises(BadSymbol) as info:
        await feed.start(subs)
    assert info.value.symbols == ("FAKE/USDT", "NOPE/USDT")
    assert "binance spot has no instrument 'FAKE/USDT', 'NOPE/USDT'" in str(info.value)
    assert feed.connections == {} and feed.stats().unknown_symbols == ("FAKE/USDT", "NOPE/USDT")


async def test_unreachable_instrument_list_starts_anyway_and_says_so(
    http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    feed = make_feed([], http, "http://127.0.0.1:9")
    await feed.start([BTC_TRADES])
    assert "cannot load the binance instrument list" in caplog.text
    assert len(feed.connections) == 1 and not feed.stats().instruments_loaded
    await feed.stop()


def test_gap_events_encode_to_json() -> None:
    gap = Gap("binance", "BTC/USDT", "BTCUSDT", Channel.TRADES, GapCause.DISCONNECT, 1, 2, 3, "binance")
    data = json.loads(__import__("msgspec").json.encode(gap))
    assert data["channel"] == "gaps" and data["stream"] == "trades" and data["cause"] == "disconnect"


def test_run_time_subscriptions_respect_the_books_per_connection_limit() -> None:
    """OKX allows fewer than 30 book channels per connection: a connection holding 29 books takes more trades at
    run time but not one more book (that one gets a new connection)."""
    adapter = get_adapter("okx", Market.SPOT, feed="okx")
    limit = adapter.policy.max_books_per_connection
    assert limit == 29
    feed = Feed(
        "okx",
        adapter,
        publish=lambda _: None,
        engine_config=EngineConfig(),
        clock=SystemClock(),
        transport=FakeTransport(REFUSED),
        rest=None,
    )
    books = [Subscription(Channel.BOOK, f"C{i}/USDT") for i in range(limit)]
    (spec,) = adapter.plan_connections(books)
    conn = StubConnection("okx-ws-1")
    conn.spec = spec  # type: ignore[attr-defined]
    feed._connections["okx-ws-1"] = conn  # type: ignore[assignment]
    for sub in books:
        feed._conn_of[sub] = conn  # type: ignore[assignment]
    (one_more_book,) = adapter.plan_connections([Subscription(Channel.BOOK, "X/USDT")])
    (trades,) = adapter.plan_connections([Subscription(Channel.TRADES, "X/USDT")])
    assert feed._connection_with_room(one_more_book) is None
    assert feed._connection_with_room(trades) is conn  # type: ignore[comparison-overlap]


async def test_a_rest_step_before_connecting_goes_through_the_feeds_gateway(
    rest_server: tuple[str, RestState], http: aiohttp.ClientSession
) -> None:
    """An adapter that must fetch something before opening its socket (a token, a URL) gets it through the
    feed's REST gateway, and the socket is opened at the URL built from the answer."""
    from cryptolink.exchanges.base import ConnectionSpec, RestRequest
    from cryptolink.exchanges.binance import BinanceSpotAdapter

    class TokenAdapter(BinanceSpotAdapter):
        def connect_request(self, spec: ConnectionSpec) -> RestRequest | None:
            return RestRequest("/api/v3/exchangeInfo", {})

        def connect_url(self, spec: ConnectionSpec, body: bytes) -> str:
            symbols = json.loads(body)["symbols"]
            return f"{spec.url}?token={symbols[0]['symbol']}"

    class SignallingTransport(FakeTransport):
        opened = asyncio.Event()

        async def connect(self, url: str, *, max_frame_bytes: int) -> Any:
            self.opened.set()
            return await super().connect(url, max_frame_bytes=max_frame_bytes)

    rest, state = rest_server
    clock = SystemClock()
    transport = SignallingTransport(REFUSED)
    adapter = TokenAdapter(rest_base_url=rest, feed="binance")
    feed = Feed(
        "binance",
        adapter,
        publish=lambda _: None,
        engine_config=EngineConfig(),
        clock=clock,
        transport=transport,
        rest=RestClient("binance test", rest, http, clock, None),
    )
    await feed.start([BTC_TRADES])
    try:
        await asyncio.wait_for(transport.opened.wait(), 10)
        assert transport.urls[0].endswith("?token=BTCUSDT")
        assert state.calls.count("info") == 2  # the instrument list, then the REST step
    finally:
        await feed.stop()


class FrameConnection(StubConnection):
    """A stub connection that records the frames the feed sends on it (snapshot requests)."""

    def __init__(self) -> None:
        super().__init__()
        self.frames: list[str] = []
        self.sent = asyncio.Event()

    async def send_frame(self, frame: str) -> bool:
        self.frames.append(frame)
        self.sent.set()
        return True


def linked(prev: int, seq: int, bid: str = "100") -> BookMessage:
    return BookMessage(
        "BTC/USDT", "BTCUSDT", False, [[bid, "1"]], [["101", "1"]], prev + 1, seq, prev, None, 1, 1
    )


async def test_a_snapshot_asked_for_on_the_websocket_is_stitched_and_retried_when_unanswered() -> None:
    """SnapshotSource.WS_REQUEST (HTX req/rep): the feed sends the adapter's request frame on the book's own
    connection, the answer arriving there is stitched to the buffered deltas like a REST snapshot; an unanswered
    request counts as a failed snapshot after the timeout and is asked again."""
    clock = FakeClock()
    out: list[Any] = []
    feed = make_feed(out, clock=clock)
    adapter = feed.adapter
    adapter.book_sync = BookSyncSpec(SnapshotSource.WS_REQUEST, SequenceModel.LINKED, bridge_offset=1)
    adapter.snapshot_frame = lambda sub, rid: f"req {sub.symbol} {rid}"  # type: ignore[method-assign,assignment]
    conn = FrameConnection()
    feed._register(BTC_BOOK)
    feed._conn_of[BTC_BOOK] = conn  # type: ignore[assignment]
    feed._on_data(conn, [linked(9, 11)])  # type: ignore[arg-type]  # buffered; asks on the socket
    await asyncio.wait_for(conn.sent.wait(), 5)
    assert conn.frames[0].startswith("req BTC/USDT ")
    snap = BookMessage("BTC/USDT", "BTCUSDT", True, [["99", "2"]], [["102", "2"]], 10, 10, None, None, 1, 1)
    feed._on_data(conn, [snap, linked(11, 12, bid="100.5")])  # type: ignore[arg-type]
    assert "BTC/USDT" not in feed._snapshot_tasks  # answered: the asking task is released
    book = feed.book("BTC/USDT")
    assert book is not None and book.state is BookState.LIVE and book.last_sequence == 12
    assert book.best_bid() == (Decimal("100.5"), Decimal("1"))
    assert [u.sequence for u in out if isinstance(u, BookUpdate)] == [10, 11, 12]
    assert feed.stats().snapshots_fetched == 1 and feed.stats().snapshot_errors == 0
    # a gap asks again; this time nobody answers: after the timeout the attempt failed and a new one is sent
    conn.sent.clear()
    feed._on_data(conn, [linked(13, 14)])  # type: ignore[arg-type]
    await settle()
    await clock.advance(0.5)  # the first retry's backoff
    await asyncio.wait_for(conn.sent.wait(), 5)
    conn.sent.clear()
    await clock.advance(WS_SNAPSHOT_TIMEOUT_S)
    await settle()
    assert feed.stats().snapshot_errors == 1 and len(conn.frames) == 2
    await clock.advance(1.0)  # the second retry's backoff
    await asyncio.wait_for(conn.sent.wait(), 5)
    assert len(conn.frames) == 3 and book.state is not BookState.LIVE
    snap = BookMessage("BTC/USDT", "BTCUSDT", True, [["99", "2"]], [["102", "2"]], 14, 14, None, None, 1, 1)
    feed._on_data(conn, [snap])
    assert "BTC/USDT" not in feed._snapshot_tasks  # answered: the asking task is released
    assert book.state is BookState.LIVE and feed.stats().snapshots_fetched == 2
    await feed.stop()


async def test_a_refused_websocket_snapshot_is_asked_again_and_requests_are_spaced_per_connection() -> None:
    """A snapshot answer the sync refuses (older than the buffered deltas) starts a new request (it used to be
    dropped while the first request's task was still registered: the book waited ~17 minutes); with the policy's
    ``snapshot_request_interval_s`` two books on one connection never ask back to back."""
    clock = FakeClock()
    out: list[Any] = []
    feed = make_feed(out, clock=clock)
    adapter = feed.adapter
    adapter.book_sync = BookSyncSpec(SnapshotSource.WS_REQUEST, SequenceModel.LINKED, bridge_offset=1)
    adapter.policy = dataclasses.replace(adapter.policy, snapshot_request_interval_s=0.1)
    adapter.snapshot_frame = lambda sub, rid: f"req {sub.symbol}"  # type: ignore[method-assign,assignment]
    conn = FrameConnection()
    eth_book = Subscription(Channel.BOOK, "ETH/USDT")
    for sub in (BTC_BOOK, eth_book):
        feed._register(sub)
        feed._conn_of[sub] = conn  # type: ignore[assignment]
    eth = BookMessage("ETH/USDT", "ETHUSDT", False, [["10", "1"]], [["11", "1"]], 10, 11, 9, None, 1, 1)
    feed._on_data(conn, [linked(9, 11), eth])  # type: ignore[arg-type]  # both books ask
    await asyncio.wait_for(conn.sent.wait(), 5)
    await settle()
    assert conn.frames == ["req BTC/USDT"]  # the second waits for its slot
    conn.sent.clear()
    await clock.advance(0.1)
    await asyncio.wait_for(conn.sent.wait(), 5)
    assert conn.frames == ["req BTC/USDT", "req ETH/USDT"]
    conn.sent.clear()
    old = BookMessage("BTC/USDT", "BTCUSDT", True, [["99", "2"]], [["102", "2"]], 5, 5, None, None, 1, 1)
    feed._on_data(conn, [old])  # type: ignore[arg-type]  # older than the buffered delta (10..11): refused
    await settle()
    await clock.advance(0.5)  # the retry's backoff
    await asyncio.wait_for(conn.sent.wait(), 5)
    assert conn.frames[-1] == "req BTC/USDT" and len(conn.frames) == 3
    snap = BookMessage("BTC/USDT", "BTCUSDT", True, [["99", "2"]], [["102", "2"]], 10, 10, None, None, 1, 1)
    feed._on_data(conn, [snap])  # type: ignore[arg-type]
    book = feed.book("BTC/USDT")
    assert book is not None and book.state is BookState.LIVE and book.last_sequence == 11
    await feed.stop()


async def test_an_error_answer_to_a_websocket_snapshot_request_fails_it_at_once() -> None:
    """HTX answers a refused ``req`` with an error frame naming the book (an ExchangeError with its subscription,
    an ERROR event of that stream): the request fails at once, not after the 10 s timeout, and is asked again."""
    clock = FakeClock()
    out: list[Any] = []
    feed = make_feed(out, clock=clock)
    adapter = feed.adapter
    adapter.book_sync = BookSyncSpec(SnapshotSource.WS_REQUEST, SequenceModel.LINKED, bridge_offset=1)
    adapter.snapshot_frame = lambda sub, rid: f"req {sub.symbol}"  # type: ignore[method-assign,assignment]
    conn = FrameConnection()
    feed._register(BTC_BOOK)
    feed._conn_of[BTC_BOOK] = conn  # type: ignore[assignment]
    feed._on_data(conn, [linked(9, 11)])  # type: ignore[arg-type]
    await asyncio.wait_for(conn.sent.wait(), 5)
    conn.sent.clear()
    refused = ConnectionEvent(
        ConnectionEventType.ERROR,
        Severity.ERROR,
        0,
        0.0,
        conn.conn_id,
        "binance",
        "exchange error",
        error="bad-request: snapshot req market.btcusdt.mbp.150 failed: 429 too many request",
        stream="book",
        symbol="BTC/USDT",
    )
    feed._handle_event(refused)
    await settle()
    assert feed.stats().snapshot_errors == 1  # no clock advance: not the timeout
    await clock.advance(0.5)  # the retry's backoff
    await asyncio.wait_for(conn.sent.wait(), 5)
    assert conn.frames == ["req BTC/USDT", "req BTC/USDT"]
    await feed.stop()
