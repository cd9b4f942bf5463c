"""Helpers for ccxt-style unified symbols (``BTC/USDT`` spot, ``BTC/USDT:USDT`` linear perpetual).

Only string work, no exchange metadata: a best-effort split is used for exchange ids that arrive without a
subscription that told us their unified form (e.g. ``NKNUSDT`` -> ``NKN/USDT``).
"""

from __future__ import annotations

__all__ = ["KNOWN_QUOTES", "parse_unified", "split_concatenated"]

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
