"""Decoding cryptolink NATS messages: exact decimals for every event type, any subject root, and a clear
:class:`MalformedMessage` for unknown channels, bad subjects, bad payloads and payloads on the wrong subject."""

from __future__ import annotations

import re
from decimal import Decimal

import msgspec
import pytest

from cryptolink.consumer.decode import PREVIEW_BYTES, MalformedMessage, decode, split_subject
from cryptolink.models import BookUpdate, Gap, GapCause, Side, Ticker, Trade
from cryptolink.sinks.nats_subjects import subject


def trade(trade_id: int = 1, *, exchange: str = "binance", symbol: str = "BTC/USDT", **kw: object) -> Trade:
    base: dict[str, object] = {
        "exchange": exchange,
        "symbol": symbol,
        "exchange_symbol": "BTCUSDT",
        "price": Decimal("60000.10"),
        "amount": Decimal("0.00100"),
        "side": Side.SELL,
        "trade_id": str(trade_id),
        "timestamp_ms": 1_723_118_400_000 + trade_id,
        "receipt_ns": 1_723_118_400_000_000_000 + trade_id,
        "sequence": trade_id,
    }
    base.update(kw)
    return Trade(**base)  # type: ignore[arg-type]


def ticker(sequence: int | None = 7, **kw: object) -> Ticker:
    base: dict[str, object] = {
        "exchange": "binance",
        "symbol": "BTC/USDT",
        "exchange_symbol": "BTCUSDT",
        "bid_price": Decimal("60000.0"),
        "bid_size": Decimal("1.50"),
        "ask_price": Decimal("60000.1"),
        "ask_size": Decimal("0.3"),
        "last_price": None,
        "timestamp_ms": 1_723_118_400_000,
        "receipt_ns": 1_723_118_400_000_000_000,
        "sequence": sequence,
    }
    base.update(kw)
    return Ticker(**base)  # type: ignore[arg-type]


def book(
    sequence: int,
    bids: dict[int, int] | None = None,
    asks: dict[int, int] | None = None,
    *,
    snapshot: bool = False,
    prev: int | None = None,
    exchange: str = "okx",
    symbol: str = "BTC/USDT:USDT",
) -> BookUpdate:
    """A book update with integer prices/sizes (as Decimals); bids best first for snapshots."""

    def levels(side: dict[int, int] | None, reverse: bool) -> tuple[tuple[Decimal, Decimal], ...]:
        items = sorted((side or {}).items(), reverse=reverse)
        return tuple((Decimal(p), Decimal(z)) for p, z in items)

    return BookUpdate(
        exchange=exchange,
        symbol=symbol,
        exchange_symbol="BTC-USDT-SWAP",
        is_snapshot=snapshot,
        bids=levels(bids, True),
        asks=levels(asks, False),
        sequence=sequence,
        timestamp_ms=1_723_118_400_000 + sequence,
        receipt_ns=1_723_118_400_000_000_000 + sequence,
        prev_sequence=None if snapshot else prev,
    )


def gap(cause: GapCause = GapCause.PUBLISH, from_ms: int = 1_723_118_400_000, **kw: object) -> Gap:
    base: dict[str, object] = {
        "exchange": "binance",
        "symbol": "BTC/USDT",
        "exchange_symbol": "BTCUSDT",
        "stream": "trades",
        "cause": cause,
        "from_ms": from_ms,
        "to_ms": from_ms + 2500,
        "receipt_ns": 1,
        "first_missing_id": 100,
        "last_missing_id": 105,
    }
    base.update(kw)
    return Gap(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "event",
    [
        trade(3081234567),
        ticker(),
        ticker(None, last_price=Decimal("59999.990"), bid_price=None, bid_size=None),
        book(18820345, {60000: 2, 59999: 1}, {60001: 3}, snapshot=True),
        book(18820346, {60000: 0}, {}, prev=18820345),
        gap(GapCause.RESYNC, stream="book", first_missing_id=None, last_missing_id=None, detail="seq gap"),
    ],
    ids=["trade", "ticker", "ticker-no-bid", "snapshot", "delta", "gap"],
)
def test_round_trip_every_type(event: Trade | Ticker | BookUpdate | Gap) -> None:
    subj = subject(event)
    assert decode(subj, msgspec.json.encode(event)) == event


def test_decimals_are_exact_as_sent() -> None:
    """Trailing zeros survive: the JSON strings become the same Decimals (not floats)."""
    event = decode(subject(trade()), msgspec.json.encode(trade()))
    assert isinstance(event, Trade)
    assert str(event.price) == "60000.10"
    assert str(event.amount) == "0.00100"


def test_multi_token_root_and_root_check() -> None:
    event = trade(5, symbol="BTC/USD:BTC", exchange="binancecoinm")
    subj = subject(event, "acme.md")
    assert subj == "acme.md.trades.binancecoinm.BTC-USD-SWAP-BTC"
    assert decode(subj, msgspec.json.encode(event), root="acme.md") == event
    assert split_subject(subj) == ("acme.md", "trades", "binancecoinm", "BTC-USD-SWAP-BTC")
    with pytest.raises(MalformedMessage, match=re.escape("root is 'acme.md', expected 'cryptolink'")):
        decode(subj, msgspec.json.encode(event), root="cryptolink")


@pytest.mark.parametrize(
    ("subj", "match"),
    [
        ("cryptolink.orders.binance.BTC-USDT", "unknown channel 'orders'"),
        ("trades.binance.BTC-USDT", "expected <root>.<channel>.<exchange>.<symbol token>"),
        ("cryptolink..binance.BTC-USDT", "expected <root>"),
    ],
)
def test_bad_subjects(subj: str, match: str) -> None:
    with pytest.raises(MalformedMessage, match=match) as info:
        decode(subj, msgspec.json.encode(trade()))
    assert info.value.subject == subj


def test_payload_that_is_not_json_names_the_subject_and_is_cut_short() -> None:
    payload = b"\x00garbage" + b"x" * 1000
    with pytest.raises(MalformedMessage) as info:
        decode("cryptolink.trades.binance.BTC-USDT", payload)
    text = str(info.value)
    assert text.startswith("cryptolink.trades.binance.BTC-USDT: payload is not a trades event")
    assert "x" * PREVIEW_BYTES not in text  # the preview holds at most PREVIEW_BYTES bytes in all
    assert text.endswith("...)")


def test_payload_of_another_type_on_the_channel() -> None:
    """A trade published on a book subject does not decode as a BookUpdate."""
    with pytest.raises(MalformedMessage, match="payload is not a book event"):
        decode("cryptolink.book.binance.BTC-USDT", msgspec.json.encode(trade()))


def test_decimal_that_is_not_a_number() -> None:
    raw = msgspec.json.decode(msgspec.json.encode(trade()))
    raw["price"] = "sixty thousand"
    with pytest.raises(MalformedMessage, match="payload is not a trades event"):
        decode("cryptolink.trades.binance.BTC-USDT", msgspec.json.encode(raw))


@pytest.mark.parametrize(
    "subj",
    [
        "cryptolink.trades.okx.BTC-USDT",  # other exchange
        "cryptolink.trades.binance.ETH-USDT",  # other symbol
        "cryptolink.ticker.binance.BTC-USDT",  # a trade payload lacks the ticker fields
    ],
)
def test_payload_on_the_wrong_subject(subj: str) -> None:
    with pytest.raises(MalformedMessage):
        decode(subj, msgspec.json.encode(trade()))


def test_payload_channel_field_must_match_the_subject() -> None:
    """A gap payload claims its own channel; a trade payload whose channel says ``book`` is refused even on the
    trades subject (it would be published on the book subject)."""
    raw = msgspec.json.decode(msgspec.json.encode(trade()))
    raw["channel"] = "book"
    with pytest.raises(MalformedMessage, match=re.escape("belongs on 'cryptolink.book.binance.BTC-USDT'")):
        decode("cryptolink.trades.binance.BTC-USDT", msgspec.json.encode(raw))
