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
    "GAPS_CHANNEL",
    "AmountUnit",
    "BookLevel",
    "BookUpdate",
    "Channel",
    "Gap",
    "GapCause",
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


class AmountUnit(StrEnum):
    """What an event's amounts and sizes count."""

    BASE = "base"
    """Units of the base currency (spot; Binance USDⓈ-M quantities)."""
    CONTRACTS = "contracts"
    """Contracts (OKX SWAP ``sz``, Binance COIN-M ``q``); one contract is ``contract_size`` units of the
    instrument's contract currency (base for linear swaps, USD for inverse ones: Binance COIN-M BTCUSD_PERP is
    100 USD)."""


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

    ``feed`` is the name of the configuration entry the trade came through (``binance-perp``);
    ``amount_unit`` says whether ``amount`` is in base currency or contracts, ``contract_size`` is the size of
    one contract (``None`` for base units, or while the instrument list is not loaded yet). ``backfilled`` is
    ``True`` for a trade fetched over REST after an interruption (delivered in id order before the live trades
    that follow it).
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
    feed: str = ""
    amount_unit: AmountUnit = AmountUnit.BASE
    contract_size: Decimal | None = None
    backfilled: bool = False


class Ticker(msgspec.Struct, frozen=True, gc=False):
    """Best bid and offer, with the last trade price where the exchange sends it.

    ``sequence`` is the exchange's update id where it has one (Binance ``bookTicker`` ``u``). ``feed``,
    ``amount_unit`` and ``contract_size`` as on :class:`Trade` (they describe ``bid_size``/``ask_size``).
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
    feed: str = ""
    amount_unit: AmountUnit = AmountUnit.BASE
    contract_size: Decimal | None = None


BookLevel = tuple[Decimal, Decimal]
"""``(price, size)``; in an update a size of 0 deletes the level."""


class BookUpdate(msgspec.Struct, frozen=True, gc=False):
    """A change to a maintained L2 order book, emitted only after it passed sequence (and checksum) checks.

    ``is_snapshot``: ``bids``/``asks`` replace the whole book (sorted best first); otherwise they are the changed
    levels (size 0 = deleted). ``sequence`` is the exchange's last update id applied (Binance ``u``, OKX
    ``seqId``). ``feed``, ``amount_unit`` and ``contract_size`` as on :class:`Trade` (they describe the sizes).

    ``prev_sequence`` (deltas only; ``None`` on snapshots) is the ``sequence`` of the update emitted before this
    one for the same book: a reader that holds the book at sequence ``q`` may apply the delta when
    ``prev_sequence <= q < sequence`` (sizes are absolute, so a delta that overlaps what the book holds is safe);
    ``q < prev_sequence`` means it missed an update. Empty exchange updates (heartbeats) are not emitted and do
    not count.

    ``sequence_reset`` (snapshots only) is ``True`` when the snapshot's sequence is not above the last update the
    same book emitted before: the exchange's update ids went back (a restart), or the book re-synced at the same
    point. A reader holding a higher sequence takes such a snapshot instead of dropping it as a late copy.
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
    feed: str = ""
    amount_unit: AmountUnit = AmountUnit.BASE
    contract_size: Decimal | None = None
    prev_sequence: int | None = None
    sequence_reset: bool = False


GAPS_CHANNEL = "gaps"
"""Bus channel of :class:`Gap` events (not a market-data channel: nothing subscribes to it on an exchange)."""


class GapCause(StrEnum):
    """Why a stream's data is incomplete over an interval."""

    DISCONNECT = "disconnect"
    """The connection carrying the stream ended (drop, close, keepalive death, reset)."""
    STALL = "stall"
    """The stream went silent while its connection stayed open (data watchdog)."""
    RESYNC = "resync"
    """The book lost continuity (sequence gap, checksum mismatch) and was re-synced from a new snapshot."""
    MISSING_IDS = "missing_ids"
    """Contiguous trade ids skipped some ids (Binance ``a``/``t``)."""
    STOPPED = "stopped"
    """The feed stopped (or the subscription was removed) with the interval still open."""
    PUBLISH = "publish"
    """A publisher (the NATS sink) could not deliver some of the stream's events (its buffer overflowed while
    NATS was unreachable or slow, or a publish failed every attempt); the stream's consumers miss them."""


class Gap(msgspec.Struct, frozen=True, gc=False):
    """An interval over which one stream's data is incomplete; published on :data:`GAPS_CHANNEL`.

    Attributes:
        exchange / symbol / exchange_symbol / feed: the stream's exchange id, unified symbol, exchange id of
            the symbol and configuration entry name.
        stream: the affected market-data channel (``trades``, ``ticker``, ``book``).
        cause: :class:`GapCause`.
        from_ms: exchange time (epoch ms) of the last event received before the interruption, or our
            receipt time when the exchange sends none.
        to_ms: exchange time (epoch ms) of the first event after it (``None``: the interval was still open
            when the feed stopped).
        first_missing_id / last_missing_id: for trades with contiguous ids, the missing id range (inclusive);
            ``None`` when unknown.
        recovered: ``True`` when every missing trade was backfilled over REST (the interval is complete after
            all); ``backfilled`` counts the trades fetched.
        detail: human-readable reason (``"session ended: ConnectionClosed 1006"``).
        receipt_ns: our wall-clock time (epoch ns) when the gap was closed (or the feed stopped).
    """

    exchange: str
    symbol: str
    exchange_symbol: str
    stream: Channel
    cause: GapCause
    from_ms: int | None
    to_ms: int | None
    receipt_ns: int
    feed: str = ""
    first_missing_id: int | None = None
    last_missing_id: int | None = None
    recovered: bool = False
    backfilled: int = 0
    detail: str = ""
    channel: str = GAPS_CHANNEL
