"""ExchangeManager end to end against the simulator on 127.0.0.1: consumption by entry name, run-time
operations, stats, the report after stop, health, callback isolation, symbol checks, testnet and secrets."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence

import aiohttp
import pytest

from cryptolink.bus import Subscriber
from cryptolink.clock import SystemClock
from cryptolink.config import ConfigError, CryptolinkConfig
from cryptolink.engine import ConnectionEventType, ConnectionState
from cryptolink.exchanges.base import ExchangeAdapter, RestRequest
from cryptolink.feed import BadSymbol
from cryptolink.gateway import RestGateway
from cryptolink.manager import ExchangeManager
from cryptolink.models import BookUpdate, Channel, Subscription, Trade
from cryptolink.report import config_summary
from cryptolink.rest import RestClient
from cryptolink.simulator import Simulator
from tests.engine.fakes import REFUSED, FakeTransport

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(exchanges=["binance", "okx"], speed=2.0) as s:
        yield s


def builder(sim: Simulator, **extra: str) -> ExchangeManager:
    ep = sim.endpoints()
    return (
        ExchangeManager.builder()
        .exchange(
            "binance",
            symbols=["BTC/USDT"],
            ws_url=ep["binance"]["ws_url"],
            rest_url=ep["binance"]["rest_url"],
            **extra,
        )
        .runtime(seed=1)
        .build()
    )


async def first_snapshot(updates: Subscriber) -> BookUpdate:
    """Wait for the book's first snapshot (the book is live from then on)."""
    while True:
        update = await updates.get()
        if isinstance(update, BookUpdate) and update.is_snapshot:
            return update


async def test_trades_iterator_books_stats_and_the_report_after_stop(sim: Simulator) -> None:
    manager = builder(sim)
    trades = manager.trades("binance", "BTC/USDT")
    updates = manager.book_updates("binance", "BTC/USDT")
    async with manager:
        first = await asyncio.wait_for(trades.get(), 10)
        assert isinstance(first, Trade) and first.symbol == "BTC/USDT" and first.exchange_symbol == "BTCUSDT"
        assert first.feed == "binance" and first.amount_unit == "base" and first.contract_size is None
        await asyncio.wait_for(first_snapshot(updates), 10)
        book = manager.book("binance", "BTC/USDT")
        assert book is not None and book.state.value == "live"
        bid, ask = book.best_bid(), book.best_ask()
        assert bid is not None and ask is not None and bid[0] < ask[0]
        stats = manager.stats()
        assert (
            stats.total.connections == 1 and stats.total.active_connections == 1 and stats.total.messages > 0
        )
        assert [g.key.split()[0] for g in stats.gates] == ["binance"] and stats.rest[0].requests >= 2
    # the final report survives the stop: rows as they were while running, then the detail sections
    report = manager.report()
    assert "binance-ws-1" in report and "connected" in report
    assert "binance BTC/USDT: live" in report and "data integrity" in report
    assert manager.stats().total.connections == 1

    async def drain() -> int:
        return sum([1 async for _ in trades])

    await asyncio.wait_for(drain(), 5)  # stop closed the bus: the iterator ends


async def test_one_name_rule_entries_of_one_exchange_never_mix(sim: Simulator) -> None:
    ep = sim.endpoints()["binance"]
    manager = (
        ExchangeManager.builder()
        .exchange("bn-a", exchange="binance", symbols=["BTC/USDT"], channels=["trades"], ws_url=ep["ws_url"],
                  rest_url=ep["rest_url"])
        .exchange("bn-b", exchange="binance", symbols=["ETH/USDT"], channels=["trades", "book"],
                  ws_url=ep["ws_url"], rest_url=ep["rest_url"])
        .build()
    )  # fmt: skip
    with pytest.raises(
        KeyError, match="unknown exchange entry 'binance'; known entries: \\['bn-a', 'bn-b'\\]"
    ):
        manager.trades("binance")
    with pytest.raises(KeyError):
        manager.on("trades", print, name="binance")
    a, b = manager.trades("bn-a"), manager.trades("bn-b")
    async with manager:
        ta, tb = await asyncio.wait_for(a.get(), 10), await asyncio.wait_for(b.get(), 10)
        assert (ta.feed, ta.symbol, tb.feed, tb.symbol) == ("bn-a", "BTC/USDT", "bn-b", "ETH/USDT")
        assert manager.book("bn-b", "ETH/USDT") is not None and manager.book("bn-a", "ETH/USDT") is None
        with pytest.raises(KeyError, match="not running"):
            manager.book("binance", "BTC/USDT")


async def test_run_time_add_subscribe_unsubscribe_reconnect_remove(sim: Simulator) -> None:
    manager = builder(sim)
    events = manager.connection_events("binance")
    await manager.start()
    try:
        ep = sim.endpoints()
        cfg = CryptolinkConfig.from_dict(
            {"exchanges": {"okx": {"symbols": ["BTC/USDT"], "ws_url": ep["okx"]["ws_url"], "rest_url": ep["okx"]["rest_url"]}}}
        )  # fmt: skip
        with pytest.raises(KeyError):
            manager.trades("okx")  # not configured, not added yet
        await manager.add_exchange("okx", cfg.exchanges["okx"])
        okx_trades = manager.trades("okx", "BTC/USDT")
        assert isinstance(await asyncio.wait_for(okx_trades.get(), 10), Trade)
        with pytest.raises(ValueError, match="already running"):
            await manager.add_exchange("okx", cfg.exchanges["okx"])

        eth = manager.trades("binance", "ETH/USDT")
        await manager.subscribe("binance", [Subscription(Channel.TRADES, "ETH/USDT")])
        assert (await asyncio.wait_for(eth.get(), 10)).symbol == "ETH/USDT"
        assert len(manager.feeds["binance"].connections) == 1  # added onto the existing connection
        with pytest.raises(BadSymbol):
            await manager.subscribe("binance", [Subscription(Channel.TRADES, "NOPE/USDT")])

        await manager.unsubscribe("binance", [Subscription(Channel.BOOK, "BTC/USDT")])
        assert manager.book("binance", "BTC/USDT") is None

        conn = next(iter(manager.feeds["binance"].connections.values()))
        before = conn.stats()
        manager.reconnect("binance")
        while (await asyncio.wait_for(events.get(), 10)).type is not ConnectionEventType.RECONNECT_SUCCESS:
            pass
        after = conn.stats()
        assert after.successful_reconnects == before.successful_reconnects + 1
        assert after.disconnections == before.disconnections + 1  # a requested reconnect ends a session too
        assert after.unexpected_disconnections == before.unexpected_disconnections
        eth_after = manager.trades("binance", "ETH/USDT")
        assert (await asyncio.wait_for(eth_after.get(), 10)).symbol == "ETH/USDT"  # subscriptions restored

        await manager.remove_exchange("okx")
        assert set(manager.feeds) == {"binance"}
        with pytest.raises(KeyError):
            manager.reconnect("okx")
    finally:
        await manager.stop()


async def test_failing_callback_never_touches_the_connection(sim: Simulator) -> None:
    manager = builder(sim)
    five = asyncio.Event()
    calls = 0

    def boom(_: object) -> None:
        nonlocal calls
        calls += 1
        if calls >= 5:
            five.set()
        raise RuntimeError("user bug")

    manager.on(Channel.TRADES, boom)
    async with manager:
        await asyncio.wait_for(five.wait(), 10)
        conn = next(iter(manager.feeds["binance"].connections.values()))
        assert conn.state is ConnectionState.CONNECTED
        assert conn.stats().reconnect_attempts == 0
        assert manager.bus.stats().errors >= 5


async def test_unknown_symbol_is_refused_at_start_and_nothing_runs(sim: Simulator) -> None:
    ep = sim.endpoints()["binance"]
    manager = (
        ExchangeManager.builder()
        .exchange("binance", symbols=["BTC/USDT", "DOGE/USDT"], ws_url=ep["ws_url"], rest_url=ep["rest_url"])
        .build()
    )
    with pytest.raises(BadSymbol, match="'DOGE/USDT'"):
        await manager.start()
    assert manager.feeds == {} and manager.stats().total.connections == 0


def test_config_errors_name_every_wrong_field() -> None:
    with pytest.raises(ConfigError) as info:
        ExchangeManager.builder().exchange(
            "binance", symbols=["BTCUSDT"], market="swap", ws_url="ftp://x"
        ).build()
    text = str(info.value)
    for field in ("symbols", "market", "ws_url"):
        assert field in text


async def test_testnet_reaches_the_adapter() -> None:
    transport = FakeTransport(REFUSED)
    manager = (
        ExchangeManager.builder()
        .exchange("binance", symbols=["BTC/USDT"], testnet=True)
        .option(verify_symbols=False)
        .runtime(transport=transport)
        .build()
    )
    async with manager:
        conn = next(iter(manager.feeds["binance"].connections.values()))
        await asyncio.wait_for(conn.wait_for_state(ConnectionState.RECONNECTING), 5)
    assert transport.urls[0] == "wss://stream.testnet.binance.vision/stream"
    assert manager.feeds == {} and "stream.testnet.binance.vision" in manager.report()


async def test_secrets_never_reach_logs_or_the_report_of_a_running_manager(
    sim: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    manager = builder(sim, api_key="KEY-123456", api_secret="SECRET-987")
    trades = manager.trades("binance")
    async with manager:
        await asyncio.wait_for(trades.get(), 10)
        report = manager.report()
        assert "binance-ws-1" in report  # a real report with a connection in it
        cfg = manager.config
        for text in (report, config_summary(cfg), repr(cfg), str(cfg.model_dump()), caplog.text):
            assert "KEY-123456" not in text and "SECRET-987" not in text
        assert "api key set" in config_summary(cfg)


def test_report_counts_gaps_per_stream_and_complete_trade_gaps() -> None:
    from cryptolink.feed import FeedStats
    from cryptolink.manager import _gap_counts

    def stats(gaps: int, recovered: int, by_stream: dict[str, int]) -> FeedStats:
        return FeedStats("b", "binance", "spot", (), (), 0, 0, 0, 0, 0, gaps=gaps, gaps_recovered=recovered,
                         gaps_by_stream=by_stream)  # fmt: skip

    assert _gap_counts(stats(0, 0, {})) == "0"
    assert _gap_counts(stats(12, 2, {"book": 4, "trades": 4, "ticker": 4})) == (
        "12 (trades 4, 2 complete; ticker 4; book 4)"
    )
    assert _gap_counts(stats(3, 0, {"ticker": 3})) == "3 (ticker 3)"


async def test_snapshots_and_instruments_go_through_a_given_rest_gateway(sim: Simulator) -> None:
    """The REST gateway seam: the manager fetches every snapshot and instrument list through the gateway it is
    given (the REST manager plugs in here), never around it."""
    ep = sim.endpoints()["binance"]
    seen: list[str] = []

    closed: list[str] = []

    class CountingGateway:
        def __init__(self, inner: RestClient) -> None:
            self.inner = inner

        async def aclose(self) -> None:
            closed.append(self.inner.key)

        async def get(
            self, request: RestRequest, *, timeout_s: float | None = None, background: bool = False
        ) -> bytes:
            seen.append(request.path)
            return await self.inner.get(request, timeout_s=timeout_s, background=background)

    async with aiohttp.ClientSession() as http:

        def gateway(adapter: ExchangeAdapter) -> RestGateway:
            return CountingGateway(RestClient("test", adapter.rest_base_url, http, SystemClock(), None))

        cfg = CryptolinkConfig.from_dict(
            {
                "exchanges": {
                    "binance": {"symbols": ["BTC/USDT"], "ws_url": ep["ws_url"], "rest_url": ep["rest_url"]}
                }
            },
            env={},
        )
        manager = ExchangeManager(cfg, rest_gateway=gateway)
        updates = manager.book_updates("binance", "BTC/USDT")
        async with manager:
            await asyncio.wait_for(first_snapshot(updates), 10)
    assert "/api/v3/exchangeInfo" in seen and "/api/v3/depth" in seen
    assert manager.stats().rest == ()  # no client of the manager's own was built
    assert closed == ["test"]  # stop() closed the gateway it was given


def test_report_shows_adapter_counters_when_non_zero() -> None:
    from cryptolink.feed import FeedStats
    from cryptolink.manager import ManagerStats, report_sections

    def section(counters: dict[str, int]) -> Sequence[str]:
        fs = FeedStats("okx", "okx", "spot", (), (), 0, 0, 0, 0, 0, adapter_counters=counters)
        stats = ManagerStats(total=None, feeds=(fs,))  # type: ignore[arg-type]
        (data,) = [s for s in report_sections(stats) if s.title == "data integrity"]
        return data.lines

    assert any(
        "okx: adapter symbol cache evicted 12" in line for line in section({"symbol_cache_evicted": 12})
    )
    assert not any("adapter" in line for line in section({}))


def test_report_says_which_frames_were_skipped_and_why() -> None:
    from types import SimpleNamespace

    from cryptolink.feed import FeedStats
    from cryptolink.manager import ManagerStats, report_sections

    def lines(**counts: int) -> Sequence[str]:
        base = {"decode_errors": 0, "adapter_errors": 0, "inflate_refused": 0, "oversized_frames": 0}
        conns = (SimpleNamespace(**{**base, **counts}), SimpleNamespace(**{**base, **counts}))
        fs = FeedStats("htx", "htx", "spot", conns, (), 0, 0, 0, 0, 0)  # type: ignore[arg-type]
        stats = ManagerStats(total=None, feeds=(fs,))  # type: ignore[arg-type]
        (data,) = [s for s in report_sections(stats) if s.title == "data integrity"]
        return data.lines

    got = lines(decode_errors=2, adapter_errors=1, inflate_refused=3)
    assert any(
        "htx: frames skipped: malformed 4, adapter bugs 2, compressed refused 6 (adapter bugs are logged"
        in line
        for line in got
    )
    assert not any("frames skipped" in line for line in lines())
