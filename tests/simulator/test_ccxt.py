"""ccxt conformance: third-party clients (ccxt async REST and ccxt.pro watch_*) work against the simulator."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import ccxt.async_support as ccxt_async
import ccxt.pro as ccxtpro
import pytest

from cryptolink.simulator import SimConfig, Simulator
from tests.simulator.ccxt_hosts import point_at

pytestmark = pytest.mark.integration


#: the Binance servers ccxt's default ``load_markets`` for any Binance class asks (spot, USDⓈ-M and COIN-M
#: exchangeInfo), BTC only so the start parses three recordings, not six
_BINANCE = ("binance", "binanceusdm", "binancecoinm")


@pytest.fixture
async def binance_sim() -> AsyncIterator[Simulator]:
    symbols: dict[str, tuple[str, ...]] = {
        "binance": ("BTCUSDT",),
        "binanceusdm": ("BTCUSDT",),
        "binancecoinm": ("BTCUSD_PERP",),
    }
    async with Simulator(
        exchanges=_BINANCE, mode="replay", speed=4.0, config=SimConfig(symbols=symbols)
    ) as s:
        yield s


def _point_at(ex: Any, sim: Simulator) -> Any:
    """``ex`` (any ccxt Binance class) pointed at the Binance servers the simulator runs."""
    hosts: dict[str, str] = {}
    for name in _BINANCE:
        hosts.update(sim.endpoints()[name]["hosts"])
    return point_at(ex, hosts)


@pytest.fixture
async def okx_sim() -> AsyncIterator[Simulator]:
    """OKX alone with its default instruments (replayed spot, synthetic linear and inverse swaps)."""
    async with Simulator(exchanges=["okx"], mode="replay", speed=4.0) as s:
        yield s


def _okx(cls: type, sim: Simulator) -> Any:
    """A ccxt OKX client with ccxt's default options, pointed at the simulator by host replacement only."""
    return point_at(cls(), sim.endpoints()["okx"]["hosts"])


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    ("symbol", "inst", "kind", "contract_size"),
    [
        ("BTC/USDT", "BTC-USDT", "spot", None),  # replayed
        ("BTC/USDT:USDT", "BTC-USDT-SWAP", "linear", 0.01),  # synthetic
        ("BTC/USD:BTC", "BTC-USD-SWAP", "inverse", 100.0),  # synthetic, sizes in contracts
    ],
)
async def test_ccxt_okx_common_calls(
    okx_sim: Simulator, symbol: str, inst: str, kind: str, contract_size: float | None
) -> None:
    """ccxt and ccxt.pro with their default options, pointed at the simulator by host replacement only: the
    common REST and watch calls on OKX spot, linear and inverse swaps, checked against the simulator's state."""
    sim = okx_sim
    rest = _okx(ccxt_async.okx, sim)
    pro = _okx(ccxtpro.okx, sim)
    try:
        markets = await asyncio.wait_for(rest.load_markets(), 20)  # spot, future, swap and option types
        assert {"BTC/USDT", "ETH/USDT", "BTC/USDT:USDT", "BTC/USD:BTC", "ETH/USD:ETH", "UNI/USD:UNI"} <= set(
            markets
        )
        m = markets[symbol]
        assert m["id"] == inst and m["active"]
        if kind == "spot":
            assert m["spot"] and not m["contract"]
        else:
            assert m["swap"] and m["contractSize"] == contract_size and m[kind] and m["settle"] in symbol
        assert markets["ETH/USD:ETH"]["contractSize"] == 10 and markets["ETH/USD:ETH"]["inverse"]
        t = await asyncio.wait_for(rest.fetch_time(), 10)
        assert abs(t - sim.clock.time_ns() // 1_000_000) < 60_000
        ticker = await asyncio.wait_for(rest.fetch_ticker(symbol), 10)
        assert ticker["symbol"] == symbol and ticker["info"]["instId"] == inst
        assert 0 < ticker["bid"] < ticker["ask"]
        ob = await asyncio.wait_for(rest.fetch_order_book(symbol, 20), 10)
        assert len(ob["bids"]) == len(ob["asks"]) == 20 and ob["bids"][0][0] < ob["asks"][0][0]
        assert [b[0] for b in ob["bids"]] == sorted((b[0] for b in ob["bids"]), reverse=True)
        if kind != "spot":  # whole contracts
            assert all(lv[1] == int(lv[1]) for lv in ob["bids"] + ob["asks"])
        if kind == "inverse":  # the replayed inverse swap too (recorded sizes are contracts)
            uni = await asyncio.wait_for(rest.fetch_order_book("UNI/USD:UNI", 5), 10)
            assert uni["bids"][0][0] < uni["asks"][0][0] and all(lv[1] == int(lv[1]) for lv in uni["asks"])

        await asyncio.wait_for(pro.load_markets(), 20)
        trades = await asyncio.wait_for(pro.watch_trades(symbol), 20)
        assert trades and trades[0]["symbol"] == symbol and trades[0]["amount"] > 0
        fetched = await asyncio.wait_for(rest.fetch_trades(symbol), 10)  # GET /api/v5/market/trades
        assert {tr["id"] for tr in trades} <= {tr["id"] for tr in fetched}
        src = sim.okx.sources[inst]
        assert {int(tr["id"]) for tr in fetched} <= {tr.trade_id for tr in src.trades.select(10**6)}
        nonces = []
        for _ in range(3):  # the seqId chain is checked by ccxt (InvalidNonce on a break)
            book = await asyncio.wait_for(pro.watch_order_book(symbol), 20)
            nonces.append(book["nonce"])
        assert book["bids"][0][0] < book["asks"][0][0] and nonces == sorted(nonces)
        assert nonces[-1] <= src.last_update_id
        wt = await asyncio.wait_for(pro.watch_ticker(symbol), 20)  # tickers channel
        assert wt["symbol"] == symbol and 0 < wt["bid"] < wt["ask"]
        ba = await asyncio.wait_for(pro.watch_bids_asks([symbol]), 20)  # bbo-tbt channel
        assert 0 < ba[symbol]["bid"] < ba[symbol]["ask"]
    finally:
        await rest.close()
        await pro.close()


def _near(a: float, b: float) -> bool:
    """Within 1 %: a price ccxt parsed against the simulator's current one (the replay moves between the two)."""
    return abs(a - b) <= 0.01 * b


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    ("exchange", "cls", "symbol", "native", "contract_size"),
    [
        ("binance", "binance", "BTC/USDT", "BTCUSDT", None),
        ("binanceusdm", "binanceusdm", "BTC/USDT:USDT", "BTCUSDT", 1.0),
        ("binancecoinm", "binancecoinm", "BTC/USD:BTC", "BTCUSD_PERP", 100.0),
    ],
)
async def test_ccxt_binance_common_calls(
    binance_sim: Simulator, exchange: str, cls: str, symbol: str, native: str, contract_size: float | None
) -> None:
    """ccxt and ccxt.pro, default options, host replacement only: the common REST and watch calls on Binance
    spot, USDⓈ-M and COIN-M return the simulator's own content."""
    sim = binance_sim
    server = sim.servers[exchange]
    rest = _point_at(getattr(ccxt_async, cls)(), sim)
    pro = _point_at(getattr(ccxtpro, cls)(), sim)
    try:
        markets = await asyncio.wait_for(rest.load_markets(), 20)
        if cls == "binance":  # ccxt's default: spot, USDⓈ-M and COIN-M exchangeInfo, from three hosts
            assert {"BTC/USDT", "BTC/USDT:USDT", "BTC/USD:BTC"} <= set(markets)
        market = markets[symbol]
        assert market["id"] == native and market["contractSize"] == contract_size
        assert market["inverse"] is (
            True if exchange == "binancecoinm" else None if exchange == "binance" else False
        )
        t = await asyncio.wait_for(rest.fetch_time(), 10)
        assert abs(t - sim.clock.time_ns() // 1_000_000) < 60_000
        src = server.source(native)
        assert src is not None
        first_id = src.last_update_id
        ob = await asyncio.wait_for(rest.fetch_order_book(symbol, 50), 10)
        assert first_id <= ob["nonce"] <= src.last_update_id  # the snapshot's lastUpdateId
        assert len(ob["bids"]) == 50 and ob["bids"][0][0] < ob["asks"][0][0]
        assert _near(ob["bids"][0][0], float(src.book.top(1)[0][0][0]))
        ticker = await asyncio.wait_for(rest.fetch_ticker(symbol), 10)
        assert ticker["symbol"] == symbol and _near(ticker["last"], float(src.last_price))

        await asyncio.wait_for(pro.load_markets(), 20)
        trades = await asyncio.wait_for(pro.watch_trades(symbol), 30)
        kept = {tr.trade_id: tr for tr in src.trades.select(100_000)}
        for tr in trades:  # each streamed trade is one the source emitted: id, price and size (contracts)
            assert tr["symbol"] == symbol
            own = kept[int(tr["id"])]
            assert tr["price"] == float(own.price) and tr["amount"] == float(own.qty)
        fetched = await asyncio.wait_for(rest.fetch_trades(symbol), 10)  # REST backfill holds them too
        assert {tr["id"] for tr in trades} <= {tr["id"] for tr in fetched}
        for _ in range(3):
            book = await asyncio.wait_for(pro.watch_order_book(symbol), 20)  # diffs + REST snapshot
        assert book["nonce"] <= src.last_update_id and 0 < book["bids"][0][0] < book["asks"][0][0]
        assert _near(book["asks"][0][0], float(src.book.top(1)[1][0][0]))
        wt = await asyncio.wait_for(pro.watch_ticker(symbol), 20)
        assert wt["symbol"] == symbol and _near(wt["last"], float(src.last_price))
        ba = await asyncio.wait_for(pro.watch_bids_asks([symbol]), 20)  # <symbol>@bookTicker
        assert 0 < ba[symbol]["bid"] < ba[symbol]["ask"] and _near(ba[symbol]["bid"], float(src.last_price))
        # ccxt.pro 4.5's watch_ticker reads <symbol>@miniTicker (1 s / 2 s / 500 ms pushes)
        assert server.sim_stats()["frames_sent"][native.lower() + "@miniTicker"] >= 1
    finally:
        await rest.close()
        await pro.close()
