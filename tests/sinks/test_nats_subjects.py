"""Subjects and deterministic message ids of the NATS publishing."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from cryptolink.models import BookUpdate, Gap, GapCause, Side, Ticker, Trade
from cryptolink.sinks.nats_subjects import MAX_ID_LENGTH, message_id, subject, symbol_token


def trade(symbol: str = "BTC/USDT", exchange: str = "binance", trade_id: str = "42", **kw: object) -> Trade:
    base: dict[str, object] = {
        "exchange": exchange,
        "symbol": symbol,
        "exchange_symbol": "BTCUSDT",
        "price": Decimal("100.5"),
        "amount": Decimal("0.1"),
        "side": Side.BUY,
        "trade_id": trade_id,
        "timestamp_ms": 1_700_000_000_000,
        "receipt_ns": 1,
    }
    base.update(kw)
    return Trade(**base)  # type: ignore[arg-type]


def book(sequence: int, snapshot: bool = False, receipt_ns: int = 1) -> BookUpdate:
    return BookUpdate(
        exchange="okx",
        symbol="BTC/USDT:USDT",
        exchange_symbol="BTC-USDT-SWAP",
        is_snapshot=snapshot,
        bids=(),
        asks=(),
        sequence=sequence,
        timestamp_ms=None,
        receipt_ns=receipt_ns,
    )


def ticker(sequence: int | None, timestamp_ms: int | None) -> Ticker:
    return Ticker(
        exchange="bybit",
        symbol="ETH/USDT",
        exchange_symbol="ETHUSDT",
        bid_price=Decimal("10"),
        bid_size=Decimal("1"),
        ask_price=Decimal("11"),
        ask_size=Decimal("1"),
        last_price=None,
        timestamp_ms=timestamp_ms,
        receipt_ns=5,
        sequence=sequence,
    )


def test_tokens_of_each_symbol_shape_are_subject_safe_and_distinct() -> None:
    assert symbol_token("BTC/USDT") == "BTC-USDT"
    assert symbol_token("BTC/USDT:USDT") == "BTC-USDT-SWAP"
    assert symbol_token("BTC/USD:BTC") == "BTC-USD-SWAP-BTC"
    assert symbol_token("BTC/USD:USD") == "BTC-USD-SWAP"  # the linear twin of the inverse one differs
    assert symbol_token("BTC/USD:BTC-220527") == "BTC-USD-BTC-220527"


def test_subjects_follow_channel_exchange_and_token() -> None:
    assert subject(trade()) == "cryptolink.trades.binance.BTC-USDT"
    assert subject(book(1)) == "cryptolink.book.okx.BTC-USDT-SWAP"
    assert subject(ticker(1, None), root="md") == "md.ticker.bybit.ETH-USDT"


def test_the_same_event_seen_by_two_collectors_has_one_id() -> None:
    """Ids depend on what the event is, not on when it was received nor whether it was backfilled."""
    assert message_id(trade(receipt_ns=1)) == message_id(trade(receipt_ns=999, backfilled=True))
    assert message_id(trade()) == "binance:BTC-USDT:t:42"
    assert message_id(trade(trade_id="43")) != message_id(trade())
    assert message_id(trade(exchange="okx")) != message_id(trade())
    assert message_id(trade(symbol="BTC/USDT:USDT")) != message_id(trade())
    assert message_id(book(7, receipt_ns=1)) == message_id(book(7, receipt_ns=2)) == "okx:BTC-USDT-SWAP:d:7"
    assert message_id(book(7, snapshot=True)) == "okx:BTC-USDT-SWAP:s:7"


def test_ticker_ids_use_the_sequence_then_the_exchange_time_else_none() -> None:
    assert message_id(ticker(9, 123)) == "bybit:ETH-USDT:k:9"
    assert message_id(ticker(None, 123)) == "bybit:ETH-USDT:k:123:10:11"
    assert message_id(ticker(None, None)) is None


def test_gap_ids_name_stream_cause_and_start() -> None:
    from cryptolink.models import Channel

    gap = Gap(
        exchange="binance",
        symbol="BTC/USDT",
        exchange_symbol="BTCUSDT",
        stream=Channel.TRADES,
        cause=GapCause.DISCONNECT,
        from_ms=100,
        to_ms=200,
        receipt_ns=3,
        first_missing_id=77,
    )
    assert message_id(gap) == "binance:BTC-USDT:g:trades:disconnect:77"
    assert subject(gap) == "cryptolink.gaps.binance.BTC-USDT"


@given(st.text(min_size=1, max_size=400))
def test_any_trade_id_gives_a_bounded_deterministic_id(trade_id: str) -> None:
    first = message_id(trade(trade_id=trade_id))
    assert first is not None and len(first) <= MAX_ID_LENGTH
    assert first == message_id(trade(trade_id=trade_id, receipt_ns=77))


@given(st.text(min_size=1, max_size=40))
def test_any_symbol_gives_a_legal_subject_token(symbol: str) -> None:
    token = symbol_token(symbol)
    assert token and not any(c in token for c in ".*> \t\r\n")


def test_book_events_without_sequence_are_told_apart_by_time_and_levels() -> None:
    """Sequence 0 means "no sequence information": ids by sequence alone would make every such update one."""
    one = BookUpdate("okx", "BTC/USDT", "BTC-USDT", False, ((Decimal("1"), Decimal("2")),), (), 0, 1000, 1)
    same_elsewhere = BookUpdate(
        "okx", "BTC/USDT", "BTC-USDT", False, ((Decimal("1"), Decimal("2")),), (), 0, 1000, 9
    )
    other_levels = BookUpdate(
        "okx", "BTC/USDT", "BTC-USDT", False, ((Decimal("1"), Decimal("3")),), (), 0, 1000, 1
    )
    later = BookUpdate("okx", "BTC/USDT", "BTC-USDT", False, ((Decimal("1"), Decimal("2")),), (), 0, 1001, 1)
    assert message_id(one) == message_id(same_elsewhere)
    assert len({message_id(one), message_id(other_levels), message_id(later)}) == 3
    assert message_id(one) != message_id(book(0))
