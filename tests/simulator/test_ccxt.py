"""ccxt conformance: third-party clients (ccxt async REST and ccxt.pro watch_*) work against the simulator."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import ccxt.async_support as ccxt_async
import ccxt.pro as ccxtpro
import pytest

from cryptolink.simulator import Simulator

pytestmark = pytest.mark.integration


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(exchanges=["binance", "binanceusdm", "okx"], mode="replay", speed=4.0) as s:
        yield s


def _binance(cls: type, sim: Simulator, kind: str = "spot") -> object:
    ep = sim.endpoints()["binance" if kind == "spot" else "binanceusdm"]
    ex = cls({"options": {"fetchMarkets": [kind], "defaultType": kind, "fetchCurrencies": False}})
    api = ex.urls["api"]
    for key in list(api):
        if isinstance(api[key], str):
            if key in ("public", "v3"):
                api[key] = ep["rest_url"] + "/api/v3"
            elif key == "fapiPublic":
                api[key] = ep["rest_url"] + "/fapi/v1"
    if "ws" in api:
        api["ws"]["spot"] = ep["ws_url"] + "/ws"
        api["ws"]["linear"] = ep["ws_url"] + "/ws"
    return ex


def _okx(cls: type, sim: Simulator) -> object:
    ep = sim.endpoints()["okx"]
    ex = cls({"options": {"fetchMarkets": {"types": ["spot", "swap"]}}})
    ex.urls["api"]["rest"] = ep["rest_url"]
    ex.urls["api"]["ws"] = ep["ws_url"] + "/ws/v5"
    return ex


async def test_ccxt_binance_spot_rest(sim: Simulator) -> None:
    ex = _binance(ccxt_async.binance, sim)
    try:
        markets = await asyncio.wait_for(ex.load_markets(), 20)  # type: ignore[attr-defined]
        assert "BTC/USDT" in markets and "ETH/USDT" in markets
        t = await asyncio.wait_for(ex.fetch_time(), 10)  # type: ignore[attr-defined]
        assert abs(t - sim.clock.time_ns() // 1_000_000) < 60_000
        src = sim.binance.source("BTCUSDT")
        assert src is not None
        first_id = src.last_update_id
        ob = await asyncio.wait_for(ex.fetch_order_book("BTC/USDT", 50), 10)  # type: ignore[attr-defined]
        last_id = src.last_update_id
        assert len(ob["bids"]) == 50 and ob["bids"][0][0] < ob["asks"][0][0]
        # the nonce is the snapshot's lastUpdateId: an id the book had between request and answer
        assert first_id <= ob["nonce"] <= last_id
    finally:
        await ex.close()  # type: ignore[attr-defined]


async def test_ccxt_pro_binance_spot_watch(sim: Simulator) -> None:
    ex = _binance(ccxtpro.binance, sim)
    try:
        await asyncio.wait_for(ex.load_markets(), 20)  # type: ignore[attr-defined]
        trades = await asyncio.wait_for(ex.watch_trades("BTC/USDT"), 20)  # type: ignore[attr-defined]
        assert trades and trades[0]["symbol"] == "BTC/USDT"
        # REST backfill (ccxt reads /api/v3/aggTrades) holds the very trades the stream delivered
        fetched = await asyncio.wait_for(ex.fetch_trades("BTC/USDT"), 10)  # type: ignore[attr-defined]
        assert {t["id"] for t in trades} <= {t["id"] for t in fetched}
        ob = await asyncio.wait_for(ex.watch_order_book("BTC/USDT"), 20)  # type: ignore[attr-defined]
        for _ in range(3):
            ob = await asyncio.wait_for(ex.watch_order_book("BTC/USDT"), 20)  # type: ignore[attr-defined]
        assert ob["bids"] and ob["asks"] and ob["bids"][0][0] < ob["asks"][0][0]
        src = sim.binance.sources["BTCUSDT"]
        assert ob["nonce"] <= src.last_update_id
    finally:
        await ex.close()  # type: ignore[attr-defined]


async def test_ccxt_okx_rest_and_watch(sim: Simulator) -> None:
    rest = _okx(ccxt_async.okx, sim)
    pro = _okx(ccxtpro.okx, sim)
    try:
        markets = await asyncio.wait_for(rest.load_markets(), 20)  # type: ignore[attr-defined]
        assert "BTC/USDT" in markets and "BTC/USDT:USDT" in markets
        t = await asyncio.wait_for(rest.fetch_time(), 10)  # type: ignore[attr-defined]
        assert t > 0
        ob = await asyncio.wait_for(rest.fetch_order_book("BTC/USDT", 20), 10)  # type: ignore[attr-defined]
        assert len(ob["asks"]) == 20 and ob["bids"][0][0] < ob["asks"][0][0]
        await asyncio.wait_for(pro.load_markets(), 20)  # type: ignore[attr-defined]
        trades = await asyncio.wait_for(pro.watch_trades("BTC/USDT"), 20)  # type: ignore[attr-defined]
        assert trades and trades[0]["symbol"] == "BTC/USDT"
        fetched = await asyncio.wait_for(rest.fetch_trades("BTC/USDT"), 10)  # type: ignore[attr-defined]
        assert {t["id"] for t in trades} <= {t["id"] for t in fetched}  # /api/v5/market/trades
        for _ in range(3):  # ccxt verifies the checksum of every update (raises on mismatch)
            book = await asyncio.wait_for(pro.watch_order_book("BTC/USDT"), 20)  # type: ignore[attr-defined]
        assert book["bids"][0][0] < book["asks"][0][0]
    finally:
        await rest.close()  # type: ignore[attr-defined]
        await pro.close()  # type: ignore[attr-defined]


async def test_ccxt_binanceusdm_bonus(sim: Simulator) -> None:
    ex = _binance(ccxtpro.binanceusdm, sim, kind="linear")
    try:
        markets = await asyncio.wait_for(ex.load_markets(), 20)  # type: ignore[attr-defined]
        assert "BTC/USDT:USDT" in markets
        ob = await asyncio.wait_for(ex.fetch_order_book("BTC/USDT:USDT", 100), 10)  # type: ignore[attr-defined]
        assert ob["bids"][0][0] < ob["asks"][0][0]
        book = await asyncio.wait_for(ex.watch_order_book("BTC/USDT:USDT"), 20)  # type: ignore[attr-defined]
        assert book["bids"] and book["asks"]
    finally:
        await ex.close()  # type: ignore[attr-defined]
