"""Normalized market-data events and the vocabulary shared by every layer.

Every event is a frozen :mod:`msgspec` Struct (cheap to create, encodes straight to JSON). Units:

- prices: exact :class:`~decimal.Decimal` in quote currency, exactly as the exchange sent them;
- amounts/sizes: exact ``Decimal`` in base currency for spot, in contracts for derivatives where the exchange
  quotes contracts (OKX SWAP ``sz``), said per adapter;
- ``timestamp_ms``: the exchange's event time, epoch milliseconds (``None`` where the exchange sends none);
- ``receipt_ns``: our wall-clock time (epoch nanoseconds) when the frame carrying the event was received.

Symbols are in ccxt's unified form (``BTC/USDT`` spot, ``BTC/USDT:USDT`` linear perpetual) with the exchange's own
id in ``exchange_symbol`` (``BTCUSDT``, ``BTC-USDT-SWAP``).
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum

import msgspec

__all__ = [
    "BookLevel",
    "BookUpdate",
    "Channel",
    "Market",
    "Side",
    "Subscription",
    "Ticker",
    "Trade",
]


class Channel(StrEnum):
    """Market-data channels cryptolink normalizes."""

    TRADES = "trades"
    """Public trades (Binance ``trade``/``aggTrade``, OKX ``trades``)."""
    TICKER = "ticker"
    """Best bid/offer (BBO) with last price where the exchange sends it (Binance ``bookTicker``, OKX ``tickers``)."""
    BOOK = "book"
    """Incremental L2 order book (snapshot then deltas)."""


class Market(StrEnum):
    """Market type of one feed."""

    SPOT = "spot"
    PERPETUAL = "perpetual"
    """Linear (USDⓈ-margined) perpetual swaps."""


class Side(StrEnum):
    """Taker side of a trade."""

    BUY = "buy"
    SELL = "sell"


class Subscription(msgspec.Struct, frozen=True, order=True):
    """One stream: a channel for one unified symbol.

    ``depth`` is the number of book levels per side asked for (``None``: the adapter's default); it is ignored for
    trades and tickers.
    """

    channel: Channel
    symbol: str
    depth: int | None = None

    @property
    def key(self) -> tuple[Channel, str]:
        """``(channel, symbol)``: what watchdogs and dedupe are keyed by."""
        return (self.channel, self.symbol)


class Trade(msgspec.Struct, frozen=True, gc=False):
    """One public trade.

    ``side`` is the taker's side. ``trade_id`` is the exchange's id as text; ``sequence`` is that id as an integer
    when the exchange's ids are increasing integers (Binance ``t``/``a``, OKX ``tradeId``), used to drop
    duplicates across reconnects and rotations.
    """

    exchange: str
    symbol: str
    exchange_symbol: str
    price: Decimal
    amount: Decimal
    side: Side
    trade_id: str
    timestamp_ms: int | None
    receipt_ns: int
    sequence: int | None = None
    channel: Channel = Channel.TRADES


class Ticker(msgspec.Struct, frozen=True, gc=False):
    """Best bid and offer, with the last trade price where the exchange sends it.

    ``sequence`` is the exchange's update id where it has one (Binance ``bookTicker`` ``u``).
    """

    exchange: str
    symbol: str
    exchange_symbol: str
    bid_price: Decimal | None
    bid_size: Decimal | None
    ask_price: Decimal | None
    ask_size: Decimal | None
    last_price: Decimal | None
    timestamp_ms: int | None
    receipt_ns: int
    sequence: int | None = None
    channel: Channel = Channel.TICKER


BookLevel = tuple[Decimal, Decimal]
"""``(price, size)``; in an update a size of 0 deletes the level."""


class BookUpdate(msgspec.Struct, frozen=True, gc=False):
    """A change to a maintained L2 order book, emitted only after it passed sequence (and checksum) checks.

    ``is_snapshot``: ``bids``/``asks`` replace the whole book (sorted best first); otherwise they are the changed
    levels (size 0 = deleted). ``sequence`` is the exchange's last update id applied (Binance ``u``, OKX
    ``seqId``).
    """

    exchange: str
    symbol: str
    exchange_symbol: str
    is_snapshot: bool
    bids: tuple[BookLevel, ...]
    asks: tuple[BookLevel, ...]
    sequence: int
    timestamp_ms: int | None
    receipt_ns: int
    channel: Channel = Channel.BOOK
