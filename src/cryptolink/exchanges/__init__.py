"""Exchange protocol adapters (sans-I/O) and their registry.

Every module of this package other than ``base`` and ``registry`` is an exchange module and is imported here;
at import it registers its adapters per market (:func:`cryptolink.exchanges.registry.register`). A new
exchange is therefore one new module, and no list elsewhere changes.

:func:`get_adapter` builds the adapter of one (exchange, market); :data:`SUPPORTED` maps every exchange id
(ccxt's: ``binance``, ``binanceusdm``, ``binancecoinm``, ``okx``; plus the alias ``binance`` + ``perpetual`` for
``binanceusdm``) to its markets; :func:`exchanges` lists them with their aliases; :func:`check_symbol` checks
a configured symbol's shape. An adapter's ``exchange`` attribute is ccxt's id of its market.
"""

from __future__ import annotations

import importlib
import pkgutil

from cryptolink.exchanges.binance import BinanceCoinmAdapter, BinanceSpotAdapter, BinanceUsdmAdapter
from cryptolink.exchanges.okx import OkxAdapter
from cryptolink.exchanges.registry import (
    SUPPORTED,
    TESTNET_URLS,
    ExchangeEntry,
    Registration,
    check_symbol,
    exchanges,
    get_adapter,
    register,
    resolve,
)

__all__ = [
    "SUPPORTED",
    "TESTNET_URLS",
    "BinanceCoinmAdapter",
    "BinanceSpotAdapter",
    "BinanceUsdmAdapter",
    "ExchangeEntry",
    "OkxAdapter",
    "Registration",
    "check_symbol",
    "exchanges",
    "get_adapter",
    "register",
    "resolve",
]

_NOT_EXCHANGES = frozenset({"base", "registry"})

for _module in pkgutil.iter_modules(__path__):
    if _module.name not in _NOT_EXCHANGES and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")
