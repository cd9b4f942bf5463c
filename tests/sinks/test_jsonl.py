from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from pathlib import Path

import pytest

from cryptolink.bus import Bus
from cryptolink.clock import FakeClock
from cryptolink.models import BookUpdate, Channel, Side, Ticker, Trade
from cryptolink.sinks.jsonl import JsonlSink, read_jsonl


def make_trade(n: int, exchange: str = "binance") -> Trade:
    return Trade(
        exchange=exchange,
        symbol="BTC/USDT",
        exchange_symbol="BTCUSDT",
        price=Decimal("64123.10000000"),  # trailing zeros must survive exactly
        amount=Decimal("0.00012"),
        side=Side.SELL,
        trade_id=str(1000 + n),
        timestamp_ms=1_723_100_000_000 + n,
        receipt_ns=1_723_100_000_000_000_000 + n,
        sequence=1000 + n,
    )


TICKER = Ticker(
    exchange="okx",
    symbol="BTC/USDT:USDT",
    exchange_symbol="BTC-USDT-SWAP",
    bid_price=Decimal("64000.1"),
    bid_size=Decimal("12"),
    ask_price=Decimal("64000.2"),
    ask_size=Decimal("3.5"),
    last_price=None,
    timestamp_ms=None,
    receipt_ns=5,
)

BOOK = BookUpdate(
    exchange="okx",
    symbol="BTC/USDT",
    exchange_symbol="BTC-USDT",
    is_snapshot=True,
    bids=((Decimal("8476.97"), Decimal("256")), (Decimal("8476.90"), Decimal("1E-8"))),
    asks=((Decimal("8476.98"), Decimal("0")),),
    sequence=123456,
    timestamp_ms=1597026383085,
    receipt_ns=7,
)


def test_round_trip_exact_decimals(tmp_path: Path) -> None:
    sink = JsonlSink(tmp_path)
    trades = [make_trade(i) for i in range(3)]
    for ev in (*trades, TICKER, BOOK):
        sink.write(ev)
    assert not (tmp_path / "binance" / "trades.jsonl").exists()  # buffered until flush
    sink.close()
    trades_path = tmp_path / "binance" / "trades.jsonl"
    assert sink.path_for("binance", "trades") == trades_path
    back = list(read_jsonl(trades_path))
    assert back == trades
    assert str(back[0].price) == "64123.10000000"
    assert isinstance(back[0].price, Decimal) and back[0].side is Side.SELL
    assert list(read_jsonl(tmp_path / "okx" / "ticker.jsonl")) == [TICKER]
    (book,) = read_jsonl(tmp_path / "okx" / "book.jsonl")
    assert book == BOOK and str(book.bids[1][1]) == "1E-8"
    raw = json.loads((tmp_path / "okx" / "book.jsonl").read_text().splitlines()[0])
    assert raw["bids"][0] == ["8476.97", "256"] and raw["channel"] == "book"
    st = sink.stats()
    assert (st.lines_written, st.lines_buffered, st.bytes_buffered, st.rejected) == (5, 0, 0, 0)


def test_appends_across_instances_and_rejects_non_market(tmp_path: Path) -> None:
    for n in range(2):
        sink = JsonlSink(tmp_path)
        sink.write(make_trade(n))
        sink.write(object())  # type: ignore[arg-type]
        sink.write(make_trade(9, exchange="../evil"))
        sink.close()
        assert sink.stats().rejected == 2
        sink.write(make_trade(5))  # after close: rejected, never raises
        assert sink.stats().rejected == 3
    assert [t.sequence for t in read_jsonl(tmp_path / "binance" / "trades.jsonl")] == [1000, 1001]
    assert not (tmp_path.parent / "evil").exists()


def test_buffer_is_bounded(tmp_path: Path) -> None:
    sink = JsonlSink(tmp_path, max_buffer_bytes=1000)
    for i in range(50):
        sink.write(make_trade(i))
        assert sink.stats().bytes_buffered <= 1000 + 400
    assert sink.stats().lines_written > 0
    sink.close()
    assert len(list(read_jsonl(tmp_path / "binance" / "trades.jsonl"))) == 50


def test_write_error_counts_and_drops(tmp_path: Path) -> None:
    blocker = tmp_path / "binance"
    blocker.write_text("a file where the directory should be")
    sink = JsonlSink(tmp_path)
    sink.write(make_trade(0))
    sink.write(make_trade(1))
    sink.write(TICKER)
    sink.flush()  # no exception
    st = sink.stats()
    assert (st.write_errors, st.lines_dropped, st.lines_written) == (1, 2, 1)
    assert list(read_jsonl(tmp_path / "okx" / "ticker.jsonl")) == [TICKER]
    sink.close()


def test_read_errors_are_clear(tmp_path: Path) -> None:
    path = tmp_path / "trades.jsonl"
    sink_line = JsonlSink(tmp_path)
    sink_line.write(make_trade(0))
    sink_line.close()
    good = (tmp_path / "binance" / "trades.jsonl").read_bytes()
    path.write_bytes(good + b'{"exchange": "binance", "symbol": \n' + good)
    with pytest.raises(ValueError, match=r"trades.jsonl:2:"):
        list(read_jsonl(path))
    assert len(list(read_jsonl(path, on_error="skip"))) == 2
    with pytest.raises(ValueError, match="channel"):
        list(read_jsonl(tmp_path / "odd.jsonl"))
    other = tmp_path / "other.jsonl"
    other.write_bytes(good)
    assert [t.sequence for t in read_jsonl(other, Channel.TRADES)] == [1000]


async def test_attached_to_bus_with_periodic_flush(tmp_path: Path) -> None:
    clock = FakeClock()
    bus = Bus()
    sink = JsonlSink(tmp_path, flush_interval_s=1.0, clock=clock)
    handles = sink.attach(bus, exchange="binance")
    runner = asyncio.create_task(sink.run())
    await asyncio.sleep(0)
    bus.publish(make_trade(0))
    bus.publish(TICKER)  # okx: filtered out
    bus.publish(object())  # engine event: not subscribed
    assert sink.stats().lines_buffered == 1
    await clock.advance(1.0)
    assert sink.stats().lines_written == 1
    assert len(list(read_jsonl(tmp_path / "binance" / "trades.jsonl"))) == 1
    for h in handles:
        h.close()
    sink.close()
    await clock.advance(1.0)
    await asyncio.wait_for(runner, timeout=1)
    assert not (tmp_path / "okx").exists()


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="flush_interval_s"):
        JsonlSink(tmp_path, flush_interval_s=0)
    with pytest.raises(ValueError, match="max_buffer_bytes"):
        JsonlSink(tmp_path, max_buffer_bytes=0)
