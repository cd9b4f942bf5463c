"""Exchange protocol adapters (sans-I/O) and their registry.

:func:`get_adapter` builds the adapter of one (exchange, market); :data:`SUPPORTED` lists the pairs. The
user-facing exchange id is ``binance`` for both Binance markets; ccxt's id (``binance`` / ``binanceusdm``) is
on the adapter's ``ccxt_id`` attribute.
"""

from __future__ import annotations

from cryptolink.exchanges.base import ExchangeAdapter
from cryptolink.exchanges.binance import BinanceSpotAdapter, BinanceUsdmAdapter
from cryptolink.exchanges.okx import OkxAdapter
from cryptolink.models import Market

__all__ = [
    "SUPPORTED",
    "TESTNET_URLS",
    "BinanceSpotAdapter",
    "BinanceUsdmAdapter",
    "OkxAdapter",
    "get_adapter",
]

SUPPORTED: dict[str, tuple[Market, ...]] = {
    "binance": (Market.SPOT, Market.PERPETUAL),
    "okx": (Market.SPOT, Market.PERPETUAL),
}
"""Exchange id -> markets with an adapter."""

_ALIASES = {"binanceusdm": "binance"}

TESTNET_URLS: dict[tuple[str, Market], tuple[str, str]] = {
    ("binance", Market.SPOT): ("wss://stream.testnet.binance.vision", "https://testnet.binance.vision"),
    ("binance", Market.PERPETUAL): ("wss://fstream.binancefuture.com", "https://testnet.binancefuture.com"),
    ("okx", Market.SPOT): ("wss://wspap.okx.com:8443", "https://www.okx.com"),
    ("okx", Market.PERPETUAL): ("wss://wspap.okx.com:8443", "https://www.okx.com"),
}
"""(exchange, market) -> (WebSocket base, REST base) of the exchange's test or demo environment.

Sources (docs/protocols/okx.md and binance.md "Testnet"): OKX demo trading ``wss://wspap.okx.com:8443``
(https://www.okx.com/docs-v5/en/#overview-demo-trading-services; demo REST needs the header
``x-simulated-trading: 1``, not needed for public market data); Binance spot testnet
``stream.testnet.binance.vision`` / ``testnet.binance.vision`` and USDⓈ-M testnet ``fstream.binancefuture.com`` /
``testnet.binancefuture.com`` (Binance developer docs, "Testnet" sections; whether the testnet serves the 2026
``/public`` and ``/market`` routes is unconfirmed)."""


def get_adapter(
    exchange: str,
    market: Market | str,
    *,
    ws_base_url: str | None = None,
    rest_base_url: str | None = None,
    testnet: bool = False,
    feed: str | None = None,
) -> ExchangeAdapter:
    """A fresh adapter for ``exchange`` (``binance``, ``okx``; ccxt's ``binanceusdm`` is accepted for Binance
    perpetuals) and ``market``.

    Args:
        ws_base_url: override of the WebSocket base URL (e.g. ``ws://127.0.0.1:PORT`` for the simulator).
        rest_base_url: override of the REST base URL.
        testnet: use the exchange's test/demo environment (:data:`TESTNET_URLS`) where no override is given.
        feed: the name put on every event the adapter builds (the configuration entry; default: the
            exchange id).

    Raises:
        ValueError: unknown exchange, unknown market, or a pair with no adapter.
    """
    ex = exchange.lower()
    ex = _ALIASES.get(ex, ex)
    try:
        mkt = Market(market)
    except ValueError:
        raise ValueError(f"unknown market {market!r}; known: {[m.value for m in Market]}") from None
    if exchange.lower() == "binanceusdm" and mkt is not Market.PERPETUAL:
        raise ValueError("binanceusdm only has the perpetual market")
    if ex not in SUPPORTED:
        raise ValueError(f"unsupported exchange {exchange!r}; supported: {sorted(SUPPORTED)}")
    if mkt not in SUPPORTED[ex]:
        raise ValueError(f"{exchange!r} has no adapter for market {mkt.value!r}")
    if testnet:
        test_ws, test_rest = TESTNET_URLS[(ex, mkt)]
        ws_base_url = ws_base_url or test_ws
        rest_base_url = rest_base_url or test_rest
    if ex == "binance":
        cls = BinanceSpotAdapter if mkt is Market.SPOT else BinanceUsdmAdapter
        return cls(ws_base_url=ws_base_url, rest_base_url=rest_base_url, feed=feed)
    return OkxAdapter(mkt, ws_base_url=ws_base_url, rest_base_url=rest_base_url, feed=feed)
