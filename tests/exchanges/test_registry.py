"""get_adapter / SUPPORTED (cryptolink.exchanges)."""

from __future__ import annotations

import pytest

from cryptolink.exchanges import SUPPORTED, get_adapter
from cryptolink.exchanges.binance import BinanceSpotAdapter, BinanceUsdmAdapter
from cryptolink.exchanges.okx import OkxAdapter
from cryptolink.models import Channel, Market, Subscription


def test_supported_pairs_build_the_right_adapter() -> None:
    assert set(SUPPORTED) == {"binance", "okx"}
    assert isinstance(get_adapter("binance", Market.SPOT), BinanceSpotAdapter)
    usdm = get_adapter("binance", "perpetual")
    assert isinstance(usdm, BinanceUsdmAdapter) and usdm.exchange == "binance"
    assert isinstance(get_adapter("binanceusdm", Market.PERPETUAL), BinanceUsdmAdapter)
    okx = get_adapter(
        "OKX",
        Market.PERPETUAL,
        ws_base_url="ws://127.0.0.1:1/ws/v5/public/",
        rest_base_url="http://127.0.0.1:2",
    )
    assert isinstance(okx, OkxAdapter) and okx.market is Market.PERPETUAL
    # a full URL override is accepted: connections still go to <host>/ws/v5/public
    assert okx.ws_base_url == "ws://127.0.0.1:1" and okx.rest_base_url == "http://127.0.0.1:2"
    assert okx.plan_connections([Subscription(Channel.TRADES, "BTC/USDT:USDT")])[0].url == (
        "ws://127.0.0.1:1/ws/v5/public"
    )
    # overrides are per instance
    assert get_adapter("okx", Market.SPOT).ws_base_url == "wss://ws.okx.com:8443"


@pytest.mark.parametrize(("ex", "mkt"), [("kraken", "spot"), ("binance", "futures"), ("binanceusdm", "spot")])
def test_unsupported_raise_value_error(ex: str, mkt: str) -> None:
    with pytest.raises(ValueError):
        get_adapter(ex, mkt)


def test_testnet_urls_apply_unless_overridden() -> None:
    spot = get_adapter("binance", Market.SPOT, testnet=True)
    assert spot.ws_base_url == "wss://stream.testnet.binance.vision"
    assert spot.rest_base_url == "https://testnet.binance.vision"
    okx = get_adapter("okx", Market.PERPETUAL, testnet=True)
    assert okx.plan_connections([Subscription(Channel.TRADES, "BTC/USDT:USDT")])[0].url == (
        "wss://wspap.okx.com:8443/ws/v5/public"
    )
    pinned = get_adapter("binance", Market.PERPETUAL, testnet=True, ws_base_url="ws://127.0.0.1:9")
    assert (
        pinned.ws_base_url == "ws://127.0.0.1:9"
        and pinned.rest_base_url == "https://testnet.binancefuture.com"
    )
