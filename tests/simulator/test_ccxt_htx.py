"""ccxt conformance on HTX: ccxt (async REST) and ccxt.pro with their default options, pointed at the simulator by
host replacement only, on spot and the linear perpetual."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import ccxt.async_support as ccxt_async
import ccxt.pro as ccxtpro
import pytest

from cryptolink.simulator import SimConfig, Simulator
from cryptolink.simulator.htx import HtxServer
from tests.simulator.ccxt_hosts import point_at

pytestmark = pytest.mark.integration


@pytest.fixture
async def htx_sim() -> AsyncIterator[Simulator]:
    async with Simulator(exchanges=["htx"], mode="synthetic", config=SimConfig(synthetic_rate_hz=200.0)) as s:
        yield s


def _htx(cls: type, sim: Simulator) -> Any:
    return point_at(cls(), sim.endpoints()["htx"]["hosts"])


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    ("symbol", "native", "contract_size"),
    [("BTC/USDT", "btcusdt", None), ("BTC/USDT:USDT", "BTC-USDT", 0.001)],
)
async def test_ccxt_htx_common_calls(
    htx_sim: Simulator, symbol: str, native: str, contract_size: float | None
) -> None:
    sim = htx_sim
    server = sim.servers["htx"]
    rest = _htx(ccxt_async.htx, sim)
    pro = _htx(ccxtpro.htx, sim)
    try:
        markets = await asyncio.wait_for(
            rest.load_markets(), 20
        )  # spot, linear, inverse swap and future lists
        assert {"BTC/USDT", "ETH/USDT", "BTC/USDT:USDT", "ETH/USDT:USDT"} <= set(markets)
        m = markets[symbol]
        assert m["id"] == native and m["active"] and m["contractSize"] == contract_size
        assert m["spot"] if contract_size is None else (m["swap"] and m["linear"])
        t = await asyncio.wait_for(rest.fetch_time(), 10)
        assert abs(t - sim.clock.time_ns() // 1_000_000) < 60_000
        src = server.source(native)
        assert src is not None
        ticker = await asyncio.wait_for(rest.fetch_ticker(symbol), 10)
        assert ticker["symbol"] == symbol and 0 < ticker["bid"] < ticker["ask"]
        ob = await asyncio.wait_for(rest.fetch_order_book(symbol, 20), 10)
        # spot asks ``depth=20``; swaps get the 150-level step0 book (ccxt sends no depth there)
        assert len(ob["bids"]) == 20 if contract_size is None else len(ob["bids"]) > 20
        assert ob["bids"][0][0] < ob["asks"][0][0]
        assert [b[0] for b in ob["bids"]] == sorted((b[0] for b in ob["bids"]), reverse=True)

        await asyncio.wait_for(pro.load_markets(), 20)
        trades = await asyncio.wait_for(pro.watch_trades(symbol), 20)
        kept = {tr.trade_id: tr for tr in src.trades.select(100_000)}
        # ccxt names a spot WebSocket trade by its long ``id`` and a REST one by ``trade-id``: compare trade ids
        ids = [int(tr["info"].get("tradeId", tr["id"])) for tr in trades]
        for tr, tid in zip(trades, ids, strict=True):
            assert tr["symbol"] == symbol and tr["side"] in ("buy", "sell")
            assert tr["price"] == float(kept[tid].price)
        fetched = await asyncio.wait_for(rest.fetch_trades(symbol, limit=100), 10)
        assert fetched and set(ids) <= {int(tr["id"]) for tr in fetched}
        nonces = []
        for _ in range(3):  # spot: mbp diffs + req snapshot (seqNum chain); swaps: depth version chain
            book = await asyncio.wait_for(pro.watch_order_book(symbol), 30)
            nonces.append(book["nonce"])
        assert nonces == sorted(nonces) and 0 < book["bids"][0][0] < book["asks"][0][0]
        # limit 20: spot mbp.20 (tick by tick, req snapshot), swaps depth.size_20.high_freq
        book20 = await asyncio.wait_for(pro.watch_order_book(symbol, 20), 30)
        book20 = await asyncio.wait_for(pro.watch_order_book(symbol, 20), 30)
        assert 0 < len(book20["bids"]) <= 20 and 0 < book20["bids"][0][0] < book20["asks"][0][0]
        topic = (
            f"market.{native}.mbp.20" if contract_size is None else f"market.{native}.depth.size_20.high_freq"
        )
        assert isinstance(server, HtxServer) and server.subs.get(topic)
        wt = await asyncio.wait_for(pro.watch_ticker(symbol), 20)  # market.$symbol.detail
        assert wt["symbol"] == symbol and wt["close"] > 0
    finally:
        await rest.close()
        await pro.close()
