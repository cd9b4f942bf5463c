"""ccxt (async_support) and ccxt.pro ``gate`` with default options, pointed at the simulator by host replacement
only: REST ``load_markets``/``fetch_time``/``fetch_ticker``/``fetch_order_book``/``fetch_trades`` and WebSocket
``watch_trades``/``watch_order_book``/``watch_ticker``/``watch_bids_asks`` on spot and the USDT perpetual."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from cryptolink.simulator import SimConfig, Simulator
from tests.simulator.ccxt_hosts import point_at

ccxt_async = pytest.importorskip("ccxt.async_support")
ccxt_pro = pytest.importorskip("ccxt.pro")

pytestmark = pytest.mark.integration


def _point_at(ex: Any, sim: Simulator) -> Any:
    return point_at(ex, sim.endpoints()["gate"]["hosts"])


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(["gate"], mode="synthetic", config=SimConfig(synthetic_rate_hz=200.0)) as s:
        yield s


@pytest.mark.timeout(60)
@pytest.mark.parametrize("symbol", ["BTC/USDT", "BTC/USDT:USDT"])
async def test_ccxt_rest(sim: Simulator, symbol: str) -> None:
    ex = _point_at(ccxt_async.gate(), sim)
    try:
        markets = await ex.load_markets()
        assert {"BTC/USDT", "ETH/USDT", "BTC/USDT:USDT", "ETH/USDT:USDT"} <= set(markets)
        assert markets["BTC/USDT:USDT"]["contractSize"] == 0.0001
        assert abs(await ex.fetch_time() - ex.milliseconds()) < 60_000
        ticker = await ex.fetch_ticker(symbol)
        assert ticker["symbol"] == symbol and ticker["bid"] < ticker["ask"]
        book = await ex.fetch_order_book(symbol, 20)
        assert book["bids"][0][0] < book["asks"][0][0] and len(book["bids"]) == 20
        trades = await ex.fetch_trades(symbol, limit=5)
        assert trades and all(t["side"] in ("buy", "sell") for t in trades)
    finally:
        await ex.close()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("symbol", ["BTC/USDT", "BTC/USDT:USDT"])
async def test_ccxt_pro_watch(sim: Simulator, symbol: str) -> None:
    ex = _point_at(ccxt_pro.gate(), sim)
    try:
        trades = await asyncio.wait_for(ex.watch_trades(symbol), 15)
        assert trades and trades[-1]["symbol"] == symbol
        book = await asyncio.wait_for(ex.watch_order_book(symbol), 15)
        for _ in range(5):
            book = await asyncio.wait_for(ex.watch_order_book(symbol), 15)
        assert book["bids"][0][0] < book["asks"][0][0]
        ticker = await asyncio.wait_for(ex.watch_ticker(symbol), 15)
        assert ticker["symbol"] == symbol
        bidsasks = await asyncio.wait_for(ex.watch_bids_asks([symbol]), 15)
        assert symbol in bidsasks and bidsasks[symbol]["bid"] < bidsasks[symbol]["ask"]
    finally:
        await ex.close()
