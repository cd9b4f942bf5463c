"""ccxt conformance on Bitget: ccxt (async_support) and ccxt.pro with their default options, pointed at the simulator
by host replacement only, on spot and the USDT perpetual."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import ccxt.async_support as ccxt_async
import ccxt.pro as ccxtpro
import pytest

from cryptolink.simulator import Simulator
from cryptolink.simulator.bitget import BitgetServer
from cryptolink.simulator.market import Trade
from tests.simulator.ccxt_hosts import point_at

pytestmark = pytest.mark.integration


@pytest.fixture
async def bitget_sim() -> AsyncIterator[Simulator]:
    async with Simulator(exchanges=["bitget"], mode="replay", speed=4.0) as s:
        yield s


def _client(cls: type, sim: Simulator) -> Any:
    return point_at(cls(), sim.endpoints()["bitget"]["hosts"])


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    ("symbol", "native", "kind"),
    [
        ("BTC/USDT", "BTCUSDT", "spot"),  # synthetic
        ("AVAX/USDT", "AVAXUSDT", "spot"),  # replayed
        ("BTC/USDT:USDT", "USDT-FUTURES:BTCUSDT", "swap"),  # synthetic
        ("DASH/USDT:USDT", "USDT-FUTURES:DASHUSDT", "swap"),  # replayed
    ],
)
async def test_ccxt_bitget_common_calls(bitget_sim: Simulator, symbol: str, native: str, kind: str) -> None:
    sim = bitget_sim
    server = sim.servers["bitget"]
    assert isinstance(server, BitgetServer)
    rest = _client(ccxt_async.bitget, sim)
    pro = _client(ccxtpro.bitget, sim)
    try:
        markets = await asyncio.wait_for(rest.load_markets(), 20)
        assert {"BTC/USDT", "ETH/USDT", "BTC/USDT:USDT", "AVAX/USDT", "DASH/USDT:USDT"} <= set(markets)
        m = markets[symbol]
        assert m["id"] == native.split(":")[-1] and m["active"] and m[kind]
        if kind == "swap":
            assert m["linear"] and m["settle"] == "USDT" and m["contractSize"] == 1
        t = await asyncio.wait_for(rest.fetch_time(), 10)
        assert abs(t - sim.clock.time_ns() // 1_000_000) < 60_000
        ticker = await asyncio.wait_for(rest.fetch_ticker(symbol), 10)
        assert ticker["symbol"] == symbol and 0 < ticker["bid"] < ticker["ask"]
        ob = await asyncio.wait_for(rest.fetch_order_book(symbol, 5), 10)
        assert len(ob["bids"]) == len(ob["asks"]) == 5 and ob["bids"][0][0] < ob["asks"][0][0]
        src = server.sources[native]
        for _ in range(200):  # make sure there are trades to fetch (the replay has a few per 30 s)
            src.emit_next(sim.clock.time_ns() // 1_000_000)
        fetched = await asyncio.wait_for(rest.fetch_trades(symbol), 10)
        assert fetched and {int(tr["id"]) for tr in fetched} <= {
            tr.trade_id for tr in src.trades.select(10**6)
        }
        assert all(tr["side"] in ("buy", "sell") for tr in fetched)

        await asyncio.wait_for(pro.load_markets(), 20)
        for _ in range(3):  # ccxt verifies every update's checksum (ChecksumError otherwise)
            book = await asyncio.wait_for(pro.watch_order_book(symbol), 20)
        assert book["bids"][0][0] < book["asks"][0][0]
        assert [b[0] for b in book["bids"]] == sorted((b[0] for b in book["bids"]), reverse=True)
        wt = await asyncio.wait_for(pro.watch_ticker(symbol), 20)
        assert wt["symbol"] == symbol and 0 < wt["bid"] < wt["ask"]
        ba = await asyncio.wait_for(pro.watch_bids_asks([symbol]), 20)
        assert 0 < ba[symbol]["bid"] < ba[symbol]["ask"]
        watcher = asyncio.ensure_future(pro.watch_trades(symbol))
        await server.wait_subscribed(BitgetServer.trade_stream_key(native), 20)
        while not isinstance(src.emit_next(sim.clock.time_ns() // 1_000_000), Trade):
            pass  # the replay's trades are sparse: drive the market to the next one now
        trades = await asyncio.wait_for(watcher, 20)
        assert trades and trades[0]["symbol"] == symbol and trades[0]["amount"] > 0
    finally:
        await rest.close()
        await pro.close()
