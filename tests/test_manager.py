"""ExchangeManager end to end against the simulator on 127.0.0.1: consumption, run-time operations, stats,
report, health, callback isolation and secrets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from cryptolink.config import ConfigError, CryptolinkConfig
from cryptolink.engine import ConnectionState
from cryptolink.manager import ExchangeManager
from cryptolink.models import Channel, Subscription, Trade
from cryptolink.report import config_summary
from cryptolink.simulator import Simulator

pytestmark = pytest.mark.integration


async def wait_until(pred: Callable[[], object], timeout_s: float = 10.0, what: str = "condition") -> None:
    """Poll ``pred`` every 20 ms until true; fail after ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not pred():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(exchanges=["binance", "okx"], speed=2.0) as s:
        yield s


def builder(sim: Simulator) -> ExchangeManager:
    ep = sim.endpoints()
    return (
        ExchangeManager.builder()
        .exchange(
            "binance",
            symbols=["BTC/USDT"],
            ws_url=ep["binance"]["ws_url"],
            rest_url=ep["binance"]["rest_url"],
        )
        .runtime(seed=1)
        .build()
    )


async def test_trades_iterator_books_stats_and_report(sim: Simulator) -> None:
    manager = builder(sim)
    trades = manager.trades("binance", "BTC/USDT")
    await manager.start()
    try:
        first = await asyncio.wait_for(trades.get(), 10)
        assert isinstance(first, Trade) and first.symbol == "BTC/USDT" and first.exchange_symbol == "BTCUSDT"
        book = manager.book("binance", "BTC/USDT")
        assert book is not None
        await wait_until(lambda: book.state.value == "live", what="book live")
        bid, ask = book.best_bid(), book.best_ask()
        assert bid is not None and ask is not None and bid[0] < ask[0]
        assert manager.check_health() == []
        stats = manager.stats()
        assert stats.total.connections == 1 and stats.total.active_connections == 1
        assert stats.total.messages > 0
        report = manager.report()
        assert "binance-ws-1" in report and "connected" in report
    finally:
        await manager.stop()
    # stop closes the bus: the iterator hands out what it still holds, then ends

    async def drain() -> int:
        return sum([1 async for _ in trades])

    await asyncio.wait_for(drain(), 5)


async def test_run_time_add_subscribe_unsubscribe_reconnect_remove(sim: Simulator) -> None:
    manager = builder(sim)
    await manager.start()
    try:
        ep = sim.endpoints()
        cfg = CryptolinkConfig.from_dict(
            {
                "exchanges": {
                    "okx": {
                        "symbols": ["BTC/USDT"],
                        "ws_url": ep["okx"]["ws_url"],
                        "rest_url": ep["okx"]["rest_url"],
                    }
                }
            }
        )
        okx_trades = manager.trades("okx", "BTC/USDT")
        await manager.add_exchange("okx", cfg.exchanges["okx"])
        assert isinstance(await asyncio.wait_for(okx_trades.get(), 10), Trade)
        with pytest.raises(ValueError, match="already running"):
            await manager.add_exchange("okx", cfg.exchanges["okx"])

        eth = manager.trades("binance", "ETH/USDT")
        await manager.subscribe("binance", [Subscription(Channel.TRADES, "ETH/USDT")])
        assert (await asyncio.wait_for(eth.get(), 10)).symbol == "ETH/USDT"
        assert len(manager.feeds["binance"].connections) == 1  # added onto the existing connection

        await manager.unsubscribe("binance", [Subscription(Channel.BOOK, "BTC/USDT")])
        assert manager.book("binance", "BTC/USDT") is None

        conn = next(iter(manager.feeds["binance"].connections.values()))
        before = conn.stats().successful_reconnects
        manager.reconnect("binance")
        await wait_until(lambda: conn.stats().successful_reconnects == before + 1, what="reconnect")
        await wait_until(lambda: conn.state is ConnectionState.CONNECTED, what="connected again")
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
    calls = 0

    def boom(_: object) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("user bug")

    manager.on(Channel.TRADES, boom)
    await manager.start()
    try:
        await wait_until(lambda: calls >= 5, what="callbacks")
        conn = next(iter(manager.feeds["binance"].connections.values()))
        assert conn.state is ConnectionState.CONNECTED
        assert conn.stats().reconnect_attempts == 0
        assert manager.bus.stats().errors >= 5
    finally:
        await manager.stop()


def test_config_errors_name_every_wrong_field() -> None:
    with pytest.raises(ConfigError) as info:
        ExchangeManager.builder().exchange(
            "binance", symbols=["BTCUSDT"], market="swap", ws_url="ftp://x"
        ).build()
    text = str(info.value)
    for field in ("symbols", "market", "ws_url"):
        assert field in text


def test_secrets_never_reach_report_or_summary() -> None:
    cfg = CryptolinkConfig.from_dict(
        {
            "exchanges": {
                "binance": {"symbols": ["BTC/USDT"], "api_key": "KEY-123456", "api_secret": "SECRET-987"}
            }
        }
    )
    manager = ExchangeManager(cfg)
    for text in (config_summary(cfg), manager.report(), repr(cfg), str(cfg.model_dump())):
        assert "KEY-123456" not in text and "SECRET-987" not in text
