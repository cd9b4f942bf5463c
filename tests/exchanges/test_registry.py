"""The adapter registry (cryptolink.exchanges.registry): registrations, aliases, derived views, symbol shapes."""

from __future__ import annotations

import re

import pytest

from cryptolink.exchanges import (
    SUPPORTED,
    TESTNET_URLS,
    BinanceCoinmAdapter,
    check_symbol,
    exchanges,
    get_adapter,
    register,
    resolve,
)
from cryptolink.exchanges import registry as registry_mod
from cryptolink.exchanges.binance import BinanceSpotAdapter, BinanceUsdmAdapter
from cryptolink.exchanges.okx import OkxAdapter
from cryptolink.models import Channel, Market, Subscription
from cryptolink.symbols import SymbolShape

from .test_contract import MadeUpAdapter


def test_supported_pairs_build_the_right_adapter() -> None:
    assert dict(SUPPORTED) == {
        "binance": (Market.SPOT, Market.PERPETUAL),  # perpetual: the alias of binanceusdm
        "binancecoinm": (Market.PERPETUAL,),
        "binanceusdm": (Market.PERPETUAL,),
        "okx": (Market.SPOT, Market.PERPETUAL),
        "bybit": (Market.SPOT, Market.PERPETUAL),
        "bitget": (Market.SPOT, Market.PERPETUAL),
        "gate": (Market.SPOT, Market.PERPETUAL),
        "gateio": (Market.SPOT, Market.PERPETUAL),  # ccxt's older id, an alias of gate
        "htx": (Market.SPOT, Market.PERPETUAL),
        "huobi": (Market.SPOT, Market.PERPETUAL),  # ccxt's older id, an alias of htx
    }
    assert type(get_adapter("binance", Market.SPOT)) is BinanceSpotAdapter
    usdm = get_adapter("binance", "perpetual")
    assert type(usdm) is BinanceUsdmAdapter and usdm.exchange == "binanceusdm"
    assert type(get_adapter("binanceusdm", Market.PERPETUAL)) is BinanceUsdmAdapter
    coinm = get_adapter("BinanceCoinM", "perpetual", feed="cm")
    assert type(coinm) is BinanceCoinmAdapter and (coinm.exchange, coinm.feed) == ("binancecoinm", "cm")
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
    assert get_adapter("okx", Market.SPOT).market is Market.SPOT


@pytest.mark.parametrize(
    ("ex", "mkt", "message"),
    [
        ("kraken", "spot", "unsupported exchange 'kraken'"),
        ("binance", "futures", "unknown market 'futures'"),
        ("binanceusdm", "spot", "has no adapter for market 'spot'"),
        ("binancecoinm", "spot", "has no adapter for market 'spot'"),
    ],
)
def test_unsupported_raise_value_error(ex: str, mkt: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
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
        and pinned.rest_base_url == "https://demo-fapi.binance.com"  # docs/protocols/binance.md 2.1
    )
    coinm = get_adapter("binancecoinm", Market.PERPETUAL, testnet=True)
    assert (coinm.ws_base_url, coinm.rest_base_url) == (
        "wss://dstream.binancefuture.com",
        "https://testnet.binancefuture.com",
    )
    # the derived mapping carries canonical ids and aliases alike
    assert TESTNET_URLS[("binance", Market.PERPETUAL)] == TESTNET_URLS[("binanceusdm", Market.PERPETUAL)]
    # binance spot, perpetual (alias) and usdm, coinm, okx x2, bybit x2, bitget x2; Gate and HTX: none registered
    assert len(TESTNET_URLS) == 10
    assert ("htx", Market.SPOT) not in TESTNET_URLS and ("gate", Market.PERPETUAL) not in TESTNET_URLS


def test_derived_views_are_read_only() -> None:
    with pytest.raises(TypeError):
        SUPPORTED["kraken"] = (Market.SPOT,)  # type: ignore[index]
    with pytest.raises(TypeError):
        TESTNET_URLS[("kraken", Market.SPOT)] = ("a", "b")  # type: ignore[index]


def test_exchanges_lists_ids_markets_and_aliases() -> None:
    entries = {e.exchange: e for e in exchanges()}
    assert list(entries) == [
        "binance",
        "binancecoinm",
        "binanceusdm",
        "bitget",
        "bybit",
        "gate",
        "gateio",
        "htx",
        "huobi",
        "okx",
    ]
    assert dict(entries["binance"].alias_of) == {Market.PERPETUAL: "binanceusdm"}
    assert dict(entries["huobi"].alias_of) == {Market.SPOT: "htx", Market.PERPETUAL: "htx"}
    assert resolve("gateio", "perpetual").exchange == "gate"
    assert get_adapter("huobi", "spot").exchange == "htx"
    assert entries["binance"].markets == (Market.SPOT, Market.PERPETUAL)
    assert dict(entries["okx"].alias_of) == {}
    assert resolve("binance", "perpetual").exchange == "binanceusdm"
    assert resolve("binance", "spot").exchange == "binance"


@pytest.mark.parametrize(
    ("exchange", "market", "symbol", "shape"),
    [
        ("binance", "spot", "BTC/USDT", SymbolShape.SPOT),
        ("binance", "perpetual", "BTC/USDT:USDT", SymbolShape.LINEAR),
        ("binanceusdm", "perpetual", "ETH/USDC:USDC", SymbolShape.LINEAR),
        ("binancecoinm", "perpetual", "BTC/USD:BTC", SymbolShape.INVERSE),
        ("okx", "spot", "BTC/USDT", SymbolShape.SPOT),
        ("okx", "perpetual", "BTC/USDT:USDT", SymbolShape.LINEAR),
        ("okx", "perpetual", "BTC/USD:BTC", SymbolShape.INVERSE),
        ("bybit", "spot", "BTC/USDT", SymbolShape.SPOT),
        ("bybit", "perpetual", "BTC/USDT:USDT", SymbolShape.LINEAR),
        ("bybit", "perpetual", "BTC/USD:BTC", SymbolShape.INVERSE),
        ("bitget", "spot", "BTC/USDT", SymbolShape.SPOT),
        ("bitget", "perpetual", "BTC/USDT:USDT", SymbolShape.LINEAR),
        ("gate", "spot", "BTC/USDT", SymbolShape.SPOT),
        ("gate", "perpetual", "BTC/USDT:USDT", SymbolShape.LINEAR),
        ("htx", "spot", "BTC/USDT", SymbolShape.SPOT),
        ("htx", "perpetual", "BTC/USDT:USDT", SymbolShape.LINEAR),
    ],
)
def test_check_symbol_accepts_each_markets_shapes(
    exchange: str, market: str, symbol: str, shape: SymbolShape
) -> None:
    assert check_symbol(exchange, market, symbol) is shape
    # and the adapter agrees: it maps the symbol without complaint
    assert get_adapter(exchange, market).exchange_symbol(symbol)


@pytest.mark.parametrize(
    ("exchange", "market", "symbol", "expected"),
    [
        ("binance", "spot", "BTC/USDT:USDT", "BASE/QUOTE"),
        ("binance", "spot", "btc/usdt", "BASE/QUOTE"),
        ("binance", "perpetual", "BTC/USD:BTC", "BASE/QUOTE:QUOTE"),
        ("binancecoinm", "perpetual", "BTC/USDT:USDT", "BASE/QUOTE:BASE"),
        ("binancecoinm", "perpetual", "BTC/USD:BTC-220527", "BASE/QUOTE:BASE"),
        ("gate", "perpetual", "BTC/USD:BTC", "BASE/QUOTE:QUOTE"),
        ("htx", "perpetual", "BTC/USD:BTC", "BASE/QUOTE:QUOTE"),
        ("bitget", "perpetual", "BTC/USD:BTC", "BASE/QUOTE:QUOTE"),
        (
            "okx",
            "perpetual",
            "BTC/USDT",
            "BASE/QUOTE:QUOTE (linear, e.g. 'BTC/USDT:USDT') or BASE/QUOTE:BASE",
        ),
        (
            "okx",
            "perpetual",
            "BTC/USDT:ETH",
            "BASE/QUOTE:QUOTE (linear, e.g. 'BTC/USDT:USDT') or BASE/QUOTE:BASE",
        ),
    ],
)
def test_check_symbol_names_the_accepted_forms(
    exchange: str, market: str, symbol: str, expected: str
) -> None:
    with pytest.raises(ValueError, match=re.escape("expected " + expected)) as info:
        check_symbol(exchange, market, symbol)
    assert repr(symbol) in str(info.value)


def test_a_new_exchange_is_one_registration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_mod, "_REGISTRY", dict(registry_mod._REGISTRY))
    monkeypatch.setattr(registry_mod, "_ALIASES", dict(registry_mod._ALIASES))
    register(
        "madeup",
        Market.SPOT,
        MadeUpAdapter,
        shapes=(SymbolShape.SPOT,),
        testnet=("wss://test.madeup.example", "https://test.madeup.example"),
        aliases=("madeupalias",),
    )
    assert SUPPORTED["madeup"] == (Market.SPOT,) and SUPPORTED["madeupalias"] == (Market.SPOT,)
    ad = get_adapter("madeupalias", "spot", testnet=True)
    assert type(ad) is MadeUpAdapter and ad.ws_base_url == "wss://test.madeup.example"
    assert check_symbol("madeup", "spot", "BTC/USD") is SymbolShape.SPOT
    with pytest.raises(ValueError, match="already registered"):
        register("madeup", Market.SPOT, MadeUpAdapter, shapes=(SymbolShape.SPOT,))
    with pytest.raises(ValueError, match="already registered"):
        register("other", Market.SPOT, MadeUpAdapter, shapes=(SymbolShape.SPOT,), aliases=("madeup",))
    with pytest.raises(ValueError, match="lower case"):
        register("MadeUp2", Market.SPOT, MadeUpAdapter, shapes=(SymbolShape.SPOT,))
    with pytest.raises(ValueError, match="no registered test environment"):
        register("notest", Market.SPOT, MadeUpAdapter, shapes=(SymbolShape.SPOT,))
        get_adapter("notest", "spot", testnet=True)
