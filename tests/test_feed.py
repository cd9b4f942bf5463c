"""Feed: duplicate filtering, book actions, REST snapshots (with 429 Retry-After) on a loopback HTTP server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from cryptolink.book.orderbook import BookState
from cryptolink.clock import SystemClock
from cryptolink.engine import EngineConfig
from cryptolink.exchanges import get_adapter
from cryptolink.exchanges.base import BookMessage
from cryptolink.feed import Feed
from cryptolink.models import BookUpdate, Channel, Market, Side, Subscription, Ticker, Trade


class StubConnection:
    """What the feed calls on a connection, recorded."""

    def __init__(self) -> None:
        self.gaps = 0
        self.failing: dict[tuple[Channel, str], bool] = {}
        self.resubscribed: list[list[Subscription]] = []

    def report_sequence_gap(self, n: int = 1) -> None:
        self.gaps += n

    def set_book_failing(self, key: tuple[Channel, str], failing: bool) -> None:
        self.failing[key] = failing

    async def resubscribe(self, subs: list[Subscription]) -> None:
        self.resubscribed.append(subs)


def trade(seq: int, symbol: str = "BTC/USDT") -> Trade:
    return Trade(
        "binance", symbol, "BTCUSDT", Decimal("1"), Decimal("2"), Side.BUY, str(seq), 1, 1, sequence=seq
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


def make_feed(
    published: list[Any], http: aiohttp.ClientSession | None = None, rest: str | None = None
) -> Feed:
    adapter = get_adapter("binance", Market.SPOT, rest_base_url=rest)
    return Feed(
        "binance",
        adapter,
        publish=published.append,
        engine_config=EngineConfig(),
        clock=SystemClock(),
        transport=None,  # type: ignore[arg-type]  # no connection is opened in these tests
        http=http,
    )


def test_trades_dropped_when_not_newer_per_symbol() -> None:
    out: list[Any] = []
    feed = make_feed(out)
    conn = StubConnection()
    feed._on_data(conn, [trade(1), trade(2), trade(2), trade(1), trade(3), trade(1, "ETH/USDT")])  # type: ignore[arg-type]
    assert [t.sequence for t in out] == [1, 2, 3, 1]
    assert feed.duplicates_dropped == 2


def test_ticker_resends_dropped_but_new_sizes_at_same_sequence_kept() -> None:
    out: list[Any] = []
    feed = make_feed(out)
    conn = StubConnection()
    items = [ticker(5, "1"), ticker(5, "1"), ticker(5, "2"), ticker(4, "3"), ticker(6, "3")]
    feed._on_data(conn, items)  # type: ignore[arg-type]
    assert [(t.sequence, t.bid_price) for t in out] == [(5, 1), (5, 2), (6, 3)]
    assert feed.duplicates_dropped == 2


def test_ticker_without_sequence_uses_timestamp() -> None:
    out: list[Any] = []
    feed = make_feed(out)
    feed._on_data(StubConnection(), [ticker(None, "1", 10), ticker(None, "2", 9), ticker(None, "2", 11)])  # type: ignore[arg-type]
    assert [t.timestamp_ms for t in out] == [10, 11]


def delta(first: int, last: int, bid: str = "100") -> BookMessage:
    return BookMessage(
        "BTC/USDT", "BTCUSDT", False, [[bid, "1"]], [["101", "1"]], first, last, None, None, 1, 1
    )


@pytest.fixture
async def depth_server() -> AsyncIterator[tuple[str, list[int], asyncio.Queue[int]]]:
    """A loopback REST server: first answer 429 with Retry-After 0, then a snapshot with lastUpdateId 10.
    Each request is also announced on the queue."""
    calls: list[int] = []
    announced: asyncio.Queue[int] = asyncio.Queue()

    async def depth(request: web.Request) -> web.Response:
        calls.append(1)
        announced.put_nowait(len(calls))
        if len(calls) == 1:
            return web.json_response(
                {"code": -1003, "msg": "too many"}, status=429, headers={"Retry-After": "0"}
            )
        return web.json_response({"lastUpdateId": 10, "bids": [["99", "5"]], "asks": [["102", "5"]]})

    app = web.Application()
    app.router.add_get("/api/v3/depth", depth)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", calls, announced
    finally:
        await runner.cleanup()


async def test_rest_snapshot_after_429_then_gap_resyncs_that_symbol(
    depth_server: tuple[str, list[int], asyncio.Queue[int]],
) -> None:
    rest, calls, announced = depth_server
    out: list[Any] = []
    async with aiohttp.ClientSession() as http:
        feed = make_feed(out, http, rest)
        sub = Subscription(Channel.BOOK, "BTC/USDT")
        feed._register_book(sub)
        conn = StubConnection()
        feed._conn_of[sub] = conn  # type: ignore[assignment]
        feed._on_data(conn, [delta(9, 11)])  # type: ignore[arg-type]  # buffered; asks for a snapshot

        async def live() -> None:
            while feed.book("BTC/USDT").state is not BookState.LIVE:  # type: ignore[union-attr]
                await asyncio.sleep(0.01)
                if feed.snapshot_errors and len(calls) == 1:
                    feed._on_data(conn, [delta(11, 12)])  # type: ignore[arg-type]  # next delta retries

        await asyncio.wait_for(live(), 5)
        assert feed.rate_limited == 1 and feed.snapshot_errors == 1 and feed.snapshots_fetched == 1
        updates = [u for u in out if isinstance(u, BookUpdate)]
        assert updates[0].is_snapshot and updates[-1].sequence == 12
        book = feed.book("BTC/USDT")
        assert book is not None and book.best_bid() == (Decimal("100"), Decimal("1"))
        # a gap (13..14 missing) asks for a new snapshot for this symbol only
        before = len(calls)
        feed._on_data(conn, [delta(15, 15)])  # type: ignore[arg-type]
        assert book.state is not BookState.LIVE
        assert conn.gaps >= 1

        async def refetched() -> None:
            while await announced.get() <= before:
                pass

        await asyncio.wait_for(refetched(), 5)
        await feed.stop()
