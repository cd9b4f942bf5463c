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

__all__ = ["SUPPORTED", "BinanceSpotAdapter", "BinanceUsdmAdapter", "OkxAdapter", "get_adapter"]

SUPPORTED: dict[str, tuple[Market, ...]] = {
    "binance": (Market.SPOT, Market.PERPETUAL),
    "okx": (Market.SPOT, Market.PERPETUAL),
}
"""Exchange id -> markets with an adapter."""

_ALIASES = {"binanceusdm": "binance"}


def get_adapter(
    exchange: str,
    market: Market | str,
    *,
    ws_base_url: str | None = None,
    rest_base_url: str | None = None,
) -> ExchangeAdapter:
    """A fresh adapter for ``exchange`` (``binance``, ``okx``; ccxt's ``binanceusdm`` is accepted for Binance
    perpetuals) and ``market``.

    Args:
        ws_base_url: override of the WebSocket base URL (e.g. ``ws://127.0.0.1:PORT`` for the simulator).
        rest_base_url: override of the REST base URL.

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
    if ex == "binance":
        cls = BinanceSpotAdapter if mkt is Market.SPOT else BinanceUsdmAdapter
        return cls(ws_base_url=ws_base_url, rest_base_url=rest_base_url)
    return OkxAdapter(mkt, ws_base_url=ws_base_url, rest_base_url=rest_base_url)
