"""Subjects and message ids of the NATS JetStream publishing (groundwork of the NATS sink, issue 10).

Every normalized event is published on ``cryptolink.<channel>.<exchange>.<symbol token>``
(``cryptolink.trades.binance.BTC-USDT``, ``cryptolink.book.okx.BTC-USDT-SWAP``) with a ``Nats-Msg-Id`` header
that depends only on what the event is, never on who saw it or when: two collectors publishing the same trade or
the same book delta give it the same id, and JetStream's duplicate window keeps one copy
(https://docs.nats.io/using-nats/developer/develop_jetstream/model_deep_dive#message-deduplication).

**Symbol tokens.** A NATS subject token may not contain ``.``, ``*``, ``>`` or white space
(https://docs.nats.io/nats-concepts/subjects#characters-allowed-and-recommended-for-subject-names). The token is
made from the unified symbol, so one instrument has one token on every exchange:

=====================  ==========================  ======================
shape                  symbol                      token
=====================  ==========================  ======================
spot                   ``BTC/USDT``                ``BTC-USDT``
linear perpetual       ``BTC/USDT:USDT``           ``BTC-USDT-SWAP``
inverse perpetual      ``BTC/USD:BTC``             ``BTC-USD-SWAP-BTC``
anything else          ``BTC/USD:BTC-220527``      ``BTC-USD-BTC-220527``
=====================  ==========================  ======================

The settle currency is named only where it is not the quote, so the linear and the inverse perpetual of one pair
never share a token.

**Message ids** (``<exchange>:<token>:<kind>:<identity>``):

- trade: the exchange's trade id (``binance:BTC-USDT:t:3081234567``); a backfilled trade has the same id as the
  live one, so a backfill after a gap never duplicates what another collector delivered live;
- book delta: its sequence (``okx:BTC-USDT-SWAP:d:18820345``); book snapshot: ``s`` and the sequence it stands at;
  a book event without sequence information (sequence 0: OKX frames recorded before ``seqId`` existed) is
  identified by its exchange time and a hash of its levels instead;
- ticker: its sequence where the exchange gives one, else its exchange timestamp (ms) and best bid and ask;
  a ticker with neither sequence nor timestamp has no id (published without one; it cannot be deduplicated);
- gap: the stream, cause, and the first missing id or the start time (ms).

Ids are at most :data:`MAX_ID_LENGTH` characters; a longer one (a very long trade id) is replaced by its
SHA-256 prefix, still deterministic.
"""

from __future__ import annotations

import functools
import hashlib
import re

from cryptolink.models import BookUpdate, Gap, Ticker, Trade
from cryptolink.symbols import SymbolShape, parse_unified, symbol_shape

__all__ = ["MAX_ID_LENGTH", "SUBJECT_ROOT", "message_id", "subject", "symbol_token"]

SUBJECT_ROOT = "cryptolink"
"""First token of every subject."""

MAX_ID_LENGTH = 200
"""Longest message id sent as such; longer ids are hashed."""

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")

Event = Trade | Ticker | BookUpdate | Gap


@functools.lru_cache(maxsize=8192)
def symbol_token(symbol: str) -> str:
    """The subject token of a unified symbol (see the module docstring); never empty, never ``.``/``*``/``>``.
    Cached (a few thousand symbols at most: one parse per symbol, not per event).

    Raises:
        ValueError: an empty symbol.
    """
    if not symbol:
        raise ValueError("empty symbol")
    shape = symbol_shape(symbol)
    if shape is not None:
        base, quote, settle, _ = parse_unified(symbol)
        if shape is SymbolShape.SPOT:
            return f"{base}-{quote}"
        if shape is SymbolShape.LINEAR:
            return f"{base}-{quote}-SWAP"
        return f"{base}-{quote}-SWAP-{settle}"
    return _UNSAFE.sub("_", symbol.replace("/", "-").replace(":", "-"))


def _safe(token: str) -> str:
    return _UNSAFE.sub("_", token) or "_"


def subject(event: Event, root: str = SUBJECT_ROOT) -> str:
    """``<root>.<channel>.<exchange>.<symbol token>`` of ``event`` (channels ``trades``, ``ticker``, ``book``,
    ``gaps``)."""
    return f"{root}.{_safe(str(event.channel))}.{_safe(event.exchange)}.{symbol_token(event.symbol)}"


def message_id(event: Event) -> str | None:
    """The deterministic ``Nats-Msg-Id`` of ``event`` (see the module docstring); ``None`` for a ticker without
    sequence or timestamp."""
    head = f"{event.exchange}:{symbol_token(event.symbol)}"
    if isinstance(event, Trade):
        ident = f"{head}:t:{event.trade_id}"
    elif isinstance(event, BookUpdate):
        kind = "s" if event.is_snapshot else "d"
        if event.sequence > 0:
            ident = f"{head}:{kind}:{event.sequence}"
        else:  # no sequence information (OKX frames recorded before seqId): the exchange time and the levels
            levels = hashlib.sha256(repr((event.bids, event.asks)).encode()).hexdigest()[:32]
            ident = f"{head}:{kind}:0:{event.timestamp_ms}:{levels}"
    elif isinstance(event, Ticker):
        if event.sequence is not None:
            ident = f"{head}:k:{event.sequence}"
        elif event.timestamp_ms is not None:
            ident = f"{head}:k:{event.timestamp_ms}:{event.bid_price}:{event.ask_price}"
        else:
            return None
    else:
        start = event.first_missing_id if event.first_missing_id is not None else event.from_ms
        ident = f"{head}:g:{event.stream}:{event.cause}:{start}"
    if len(ident) > MAX_ID_LENGTH:
        return f"{head[:64]}:h:{hashlib.sha256(ident.encode()).hexdigest()[:40]}"
    return ident
