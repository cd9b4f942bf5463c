"""ccxt (async_support) and ccxt.pro ``bybit`` with default options, pointed at the Bybit simulator by host
replacement only: REST market data and WebSocket watches on spot and the linear perpetual."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from cryptolink.simulator import Simulator
from cryptolink.simulator.market import Trade as SimTrade
from tests.simulator.ccxt_hosts import point_at

ccxt_async = pytest.importorskip("ccxt.async_support")
ccxt_pro = pytest.importorskip("ccxt.pro")

pytestmark = pytest.mark.integration


def _point_at(ex: Any, sim: Simulator) -> Any:
    return point_at(ex, sim.endpoints()["bybit"]["hosts"])


async def traded(sim: Simulator, served: str) -> None:
    """Return once the simulator's market of ``served`` (``BTCUSDT``, ``linear/BTCUSDT``) has traded: its source
    (started here if needed) holds a trade, or its next event is one (bounded by 10 s)."""
    src = sim.servers["bybit"].source(served)
    assert src is not None
    event = asyncio.Event()

    def on_event(ev: object) -> None:
        if isinstance(ev, SimTrade):
            event.set()

    src.listeners.append(on_event)
    try:
        if not len(src.trades):
            await asyncio.wait_for(event.wait(), 10)
    finally:
        src.listeners.remove(on_event)


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(exchanges=["bybit"], mode="synthetic") as s:
        yield s


@pytest.mark.parametrize("symbol", ["BTC/USDT", "BTC/USDT:USDT"])
@pytest.mark.timeout(60)
async def test_ccxt_rest(sim: Simulator, symbol: str) -> None:
    ex = _point_at(ccxt_async.bybit(), sim)
    try:
        markets = await ex.load_markets()
        assert {"BTC/USDT", "ETH/USDT", "BTC/USDT:USDT", "BTC/USD:BTC"} <= set(markets)
        assert markets["BTC/USD:BTC"]["inverse"] and markets["BTC/USDT:USDT"]["linear"]
        t = await ex.fetch_time()
        assert abs(t - sim.clock.time_ns() // 1_000_000) < 60_000
        await traded(sim, "BTCUSDT" if symbol == "BTC/USDT" else "linear/BTCUSDT")  # fetch_trades finds some
        ticker = await ex.fetch_ticker(symbol)
        assert ticker["symbol"] == symbol and ticker["bid"] < ticker["ask"]
        ob = await ex.fetch_order_book(symbol, 5)
        assert len(ob["bids"]) == 5 and ob["bids"][0][0] < ob["asks"][0][0]
        trades = await ex.fetch_trades(symbol)
        assert trades and all(x["side"] in ("buy", "sell") for x in trades)
    finally:
        await ex.close()


@pytest.mark.parametrize("symbol", ["BTC/USDT", "BTC/USDT:USDT"])
@pytest.mark.timeout(60)
async def test_ccxt_pro_watches(sim: Simulator, symbol: str) -> None:
    ex = _point_at(ccxt_pro.bybit(), sim)
    try:
        await ex.load_markets()
        trades = await asyncio.wait_for(ex.watch_trades(symbol), 10)
        assert trades and trades[0]["symbol"] == symbol
        book = await asyncio.wait_for(ex.watch_order_book(symbol), 10)
        for _ in range(5):
            book = await asyncio.wait_for(ex.watch_order_book(symbol), 10)
        assert book["bids"][0][0] < book["asks"][0][0]
        ticker = await asyncio.wait_for(ex.watch_ticker(symbol), 10)
        assert ticker["symbol"] == symbol and ticker["last"] is not None
        bba = await asyncio.wait_for(ex.watch_bids_asks([symbol]), 10)
        assert bba[symbol]["bid"] < bba[symbol]["ask"]
    finally:
        await ex.close()
