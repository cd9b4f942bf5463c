"""The registry of exchange adapters: one registration per (exchange, market), made by the exchange's module.

An exchange module (``cryptolink/exchanges/<name>.py``) calls :func:`register` at import time for each market
it serves; :mod:`cryptolink.exchanges` imports every module of the package, so adding an exchange means adding
its module and nothing else. Everything that lists exchanges derives from here: :func:`get_adapter`,
:data:`SUPPORTED`, :data:`TESTNET_URLS`, :func:`exchanges` (CLI choices, config validation) and
:func:`check_symbol` (the shape of a configured symbol).

Exchange ids are ccxt's (``binance`` spot, ``binanceusdm``, ``binancecoinm``, ``okx``). An alias is another
id that reaches a registration for one market: ``binance`` + ``perpetual`` is the documented alias of
``binanceusdm`` (the adapter's ``exchange`` is then ``binanceusdm``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from cryptolink.exchanges.base import ExchangeAdapter
from cryptolink.models import Market
from cryptolink.symbols import SymbolShape, symbol_shape

__all__ = [
    "SUPPORTED",
    "TESTNET_URLS",
    "AdapterFactory",
    "ExchangeEntry",
    "Registration",
    "check_symbol",
    "exchanges",
    "for_market",
    "get_adapter",
    "register",
    "resolve",
]


class AdapterFactory(Protocol):
    """Builds one adapter (an adapter class whose constructor takes these keywords fits)."""

    def __call__(
        self, *, ws_base_url: str | None = None, rest_base_url: str | None = None, feed: str | None = None
    ) -> ExchangeAdapter: ...


class MarketAdapter(Protocol):
    """An adapter class serving several markets: the market is its first argument (OKX, Bybit, Bitget)."""

    def __call__(
        self,
        market: Market,
        *,
        ws_base_url: str | None = None,
        rest_base_url: str | None = None,
        feed: str | None = None,
    ) -> ExchangeAdapter: ...


def for_market(adapter: MarketAdapter, market: Market) -> AdapterFactory:
    """The factory of ``adapter`` bound to ``market``, for :func:`register`."""

    def make(
        *, ws_base_url: str | None = None, rest_base_url: str | None = None, feed: str | None = None
    ) -> ExchangeAdapter:
        return adapter(market, ws_base_url=ws_base_url, rest_base_url=rest_base_url, feed=feed)

    return make


@dataclass(frozen=True, slots=True)
class Registration:
    """One (exchange, market) an adapter serves.

    Attributes:
        exchange: ccxt's exchange id (``binanceusdm``).
        market: the market.
        factory: builds the adapter (``ws_base_url``, ``rest_base_url``, ``feed`` keywords).
        shapes: the symbol shapes the market accepts (OKX perpetual: linear and inverse).
        testnet: ``(WebSocket base, REST base)`` of the exchange's test or demo environment, or ``None``.
        aliases: other exchange ids that reach this registration with this market (``binance`` for
            ``binanceusdm`` perpetual).
    """

    exchange: str
    market: Market
    factory: AdapterFactory
    shapes: tuple[SymbolShape, ...]
    testnet: tuple[str, str] | None = None
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ExchangeEntry:
    """One exchange id as :func:`exchanges` lists it.

    Attributes:
        exchange: the id (canonical, or an alias).
        markets: the markets reachable with this id.
        alias_of: for an alias, ``{market: canonical exchange id}``; empty for a canonical id.
    """

    exchange: str
    markets: tuple[Market, ...]
    alias_of: Mapping[Market, str]


_REGISTRY: dict[tuple[str, Market], Registration] = {}
_ALIASES: dict[tuple[str, Market], str] = {}


def register(
    exchange: str,
    market: Market,
    factory: AdapterFactory,
    *,
    shapes: tuple[SymbolShape, ...],
    testnet: tuple[str, str] | None = None,
    aliases: tuple[str, ...] = (),
) -> Registration:
    """Register the adapter of ``exchange`` (ccxt's id, lower case) for ``market``.

    Raises:
        ValueError: the id is not lower case, ``shapes`` is empty, or the pair (or one of its aliases) is
            already registered.
    """
    if exchange != exchange.lower() or not exchange:
        raise ValueError(f"exchange ids are ccxt's, lower case: {exchange!r}")
    if not shapes:
        raise ValueError(f"{exchange} {market.value}: no symbol shapes given")
    key = (exchange, market)
    if key in _REGISTRY or key in _ALIASES:
        raise ValueError(f"{exchange} {market.value} is already registered")
    for alias in aliases:
        if (alias, market) in _REGISTRY or (alias, market) in _ALIASES:
            raise ValueError(f"alias {alias} {market.value} is already registered")
    reg = Registration(exchange, market, factory, tuple(shapes), testnet, tuple(aliases))
    _REGISTRY[key] = reg
    for alias in aliases:
        _ALIASES[(alias, market)] = exchange
    return reg


def _market(market: Market | str) -> Market:
    try:
        return Market(market)
    except ValueError:
        raise ValueError(f"unknown market {market!r}; known: {[m.value for m in Market]}") from None


def resolve(exchange: str, market: Market | str) -> Registration:
    """The registration reached by ``exchange`` (canonical id or alias, any case) and ``market``.

    Raises:
        ValueError: unknown market, unknown exchange, or an exchange with no adapter for that market.
    """
    mkt = _market(market)
    ex = exchange.lower()
    ex = _ALIASES.get((ex, mkt), ex)
    reg = _REGISTRY.get((ex, mkt))
    if reg is not None:
        return reg
    known = _ids()
    if ex not in known:
        raise ValueError(f"unsupported exchange {exchange!r}; supported: {sorted(known)}")
    markets = [m.value for m in known[ex]]
    raise ValueError(f"{exchange!r} has no adapter for market {mkt.value!r} (it has: {', '.join(markets)})")


def get_adapter(
    exchange: str,
    market: Market | str,
    *,
    ws_base_url: str | None = None,
    rest_base_url: str | None = None,
    testnet: bool = False,
    feed: str | None = None,
) -> ExchangeAdapter:
    """A fresh adapter for ``exchange`` (a ccxt id or an alias, see :func:`exchanges`) and ``market``.

    Args:
        ws_base_url: override of the WebSocket base URL (e.g. ``ws://127.0.0.1:PORT`` for the simulator).
        rest_base_url: override of the REST base URL.
        testnet: use the exchange's test/demo environment (:data:`TESTNET_URLS`) where no override is given.
        feed: the name put on every event the adapter builds (the configuration entry; default: the
            exchange id).

    Raises:
        ValueError: unknown exchange, unknown market, a pair with no adapter, or ``testnet`` for an exchange
            without a registered test environment.
    """
    reg = resolve(exchange, market)
    if testnet:
        if reg.testnet is None:
            raise ValueError(f"{reg.exchange} {reg.market.value} has no registered test environment")
        ws_base_url = ws_base_url or reg.testnet[0]
        rest_base_url = rest_base_url or reg.testnet[1]
    return reg.factory(ws_base_url=ws_base_url, rest_base_url=rest_base_url, feed=feed)


def _ids() -> dict[str, tuple[Market, ...]]:
    out: dict[str, list[Market]] = {}
    for ex, mkt in [*_REGISTRY, *_ALIASES]:
        out.setdefault(ex, []).append(mkt)
    return {ex: tuple(m for m in Market if m in mkts) for ex, mkts in sorted(out.items())}


def exchanges() -> list[ExchangeEntry]:
    """Every exchange id (canonical ones and aliases), sorted, with its markets and what it aliases."""
    out: list[ExchangeEntry] = []
    for ex, markets in _ids().items():
        alias_of = {m: _ALIASES[(ex, m)] for m in markets if (ex, m) in _ALIASES}
        out.append(ExchangeEntry(ex, markets, alias_of))
    return out


def check_symbol(exchange: str, market: Market | str, symbol: str) -> SymbolShape:
    """Check that ``symbol`` has a shape ``exchange``'s ``market`` accepts; return that shape.

    Spot takes ``BASE/QUOTE``; a linear perpetual ``BASE/QUOTE:QUOTE``; an inverse one ``BASE/QUOTE:BASE``
    (``BTC/USD:BTC``). Only the shape is checked: whether the instrument is listed is the instrument list's
    job (the feed's ``BadSymbol``).

    Raises:
        ValueError: unknown exchange/market, or a symbol of another shape (the message names the accepted
            forms).
    """
    reg = resolve(exchange, market)
    shape = symbol_shape(symbol)
    if shape is None or shape not in reg.shapes:
        forms = " or ".join(f"{s.pattern} ({s.value}, e.g. {s.example!r})" for s in reg.shapes)
        raise ValueError(
            f"{symbol!r} is not a unified symbol {reg.exchange} {reg.market.value} accepts; expected {forms}, "
            "assets of 1-20 characters A-Z0-9"
        )
    return shape


class _LiveView(Mapping[str, tuple[Market, ...]]):
    """Read-only view of exchange id -> markets, computed from the registry on each access."""

    def __getitem__(self, key: str) -> tuple[Market, ...]:
        return _ids()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(_ids())

    def __len__(self) -> int:
        return len(_ids())

    def __repr__(self) -> str:
        return f"SUPPORTED({_ids()!r})"


class _TestnetView(Mapping[tuple[str, Market], tuple[str, str]]):
    """Read-only view of (exchange id, market) -> (WS base, REST base), aliases included."""

    @staticmethod
    def _all() -> dict[tuple[str, Market], tuple[str, str]]:
        out = {k: r.testnet for k, r in _REGISTRY.items() if r.testnet is not None}
        for key, canonical in _ALIASES.items():
            urls = _REGISTRY[(canonical, key[1])].testnet
            if urls is not None:
                out[key] = urls
        return out

    def __getitem__(self, key: tuple[str, Market]) -> tuple[str, str]:
        return self._all()[key]

    def __iter__(self) -> Iterator[tuple[str, Market]]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())

    def __repr__(self) -> str:
        return f"TESTNET_URLS({self._all()!r})"


SUPPORTED: Mapping[str, tuple[Market, ...]] = _LiveView()
"""Exchange id (canonical or alias) -> markets with an adapter; read-only, derived from the registrations."""

TESTNET_URLS: Mapping[tuple[str, Market], tuple[str, str]] = _TestnetView()
"""(exchange id, market) -> (WebSocket base, REST base) of the exchange's test or demo environment; read-only,
derived from the registrations (sources: each exchange module's ``register`` call and docs/protocols)."""
