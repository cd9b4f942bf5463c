"""Helpers for ccxt-style unified symbols (``BTC/USDT`` spot, ``BTC/USDT:USDT`` linear perpetual,
``BTC/USD:BTC`` inverse perpetual).

Only string work, no exchange metadata: a best-effort split is used for exchange ids that arrive without a
subscription that told us their unified form (e.g. ``NKNUSDT`` -> ``NKN/USDT``).
"""

from __future__ import annotations

import re
from enum import StrEnum

__all__ = ["KNOWN_QUOTES", "SymbolShape", "parse_unified", "split_concatenated", "symbol_shape"]


class SymbolShape(StrEnum):
    """The shape of a unified symbol, which says what kind of instrument it names."""

    SPOT = "spot"
    """``BASE/QUOTE`` (``BTC/USDT``)."""
    LINEAR = "linear"
    """``BASE/QUOTE:QUOTE``: a perpetual margined and settled in the quote currency (``BTC/USDT:USDT``)."""
    INVERSE = "inverse"
    """``BASE/QUOTE:BASE``: a perpetual margined and settled in the base currency (``BTC/USD:BTC``)."""

    @property
    def pattern(self) -> str:
        """The form, for error messages (``BASE/QUOTE:QUOTE``)."""
        return _PATTERNS[self]

    @property
    def example(self) -> str:
        """An example symbol of this shape, for error messages."""
        return _EXAMPLES[self]


_PATTERNS = {
    SymbolShape.SPOT: "BASE/QUOTE",
    SymbolShape.LINEAR: "BASE/QUOTE:QUOTE",
    SymbolShape.INVERSE: "BASE/QUOTE:BASE",
}
_EXAMPLES = {
    SymbolShape.SPOT: "BTC/USDT",
    SymbolShape.LINEAR: "BTC/USDT:USDT",
    SymbolShape.INVERSE: "BTC/USD:BTC",
}
_ASSET_RE = re.compile(r"^[A-Z0-9]{1,20}$")


def symbol_shape(symbol: str) -> SymbolShape | None:
    """The :class:`SymbolShape` of ``symbol``, or ``None`` when it has none of them (not a unified symbol,
    lower-case or over-long assets, a dated future ``BTC/USD:BTC-220527``, a settle currency that is neither
    base nor quote).

    Assets are 1 to 20 characters ``A-Z0-9``.
    """
    try:
        base, quote, settle, expiry = parse_unified(symbol)
    except ValueError:
        return None
    if expiry is not None or not (_ASSET_RE.match(base) and _ASSET_RE.match(quote)):
        return None
    if settle is None:
        return SymbolShape.SPOT
    if settle == quote:
        return SymbolShape.LINEAR
    if settle == base:
        return SymbolShape.INVERSE
    return None


KNOWN_QUOTES: tuple[str, ...] = (
    "FDUSD",
    "USDT",
    "USDC",
    "BUSD",
    "TUSD",
    "USDP",
    "DAI",
    "BTC",
    "ETH",
    "BNB",
    "EUR",
    "GBP",
    "TRY",
    "BRL",
    "AUD",
    "JPY",
    "RUB",
    "UAH",
    "USD",
)
"""Quote currencies tried (longest first within each prefix family) when splitting ids such as ``BTCUSDT``."""


def parse_unified(symbol: str) -> tuple[str, str, str | None, str | None]:
    """Split a unified symbol into ``(base, quote, settle, expiry)``.

    ``BTC/USDT`` -> ``("BTC", "USDT", None, None)``; ``BTC/USDT:USDT`` -> ``("BTC", "USDT", "USDT", None)``;
    ``BTC/USD:BTC-220527`` -> ``("BTC", "USD", "BTC", "220527")``.

    Raises:
        ValueError: ``symbol`` is not of the form ``BASE/QUOTE`` or ``BASE/QUOTE:SETTLE[-EXPIRY]``.
    """
    base, sep, rest = symbol.partition("/")
    if not sep or not base or not rest:
        raise ValueError(f"not a unified symbol (expected BASE/QUOTE[:SETTLE]): {symbol!r}")
    quote, sep, settle_part = rest.partition(":")
    if not quote:
        raise ValueError(f"not a unified symbol (empty quote): {symbol!r}")
    if not sep:
        return base, quote, None, None
    settle, dash, expiry = settle_part.partition("-")
    if not settle or (dash and not expiry):
        raise ValueError(f"not a unified symbol (bad settle part): {symbol!r}")
    return base, quote, settle, expiry if dash else None


def split_concatenated(exchange_id: str) -> tuple[str, str]:
    """Best-effort split of a concatenated id (``BTCUSDT`` -> ``("BTC", "USDT")``) by known quote currencies.

    Falls back to ``(exchange_id, "")`` when no known quote matches.
    """
    upper = exchange_id.upper()
    for quote in KNOWN_QUOTES:
        if upper.endswith(quote) and len(upper) > len(quote):
            return upper[: -len(quote)], quote
    return upper, ""
