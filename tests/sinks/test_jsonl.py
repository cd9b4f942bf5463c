from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest

from cryptolink.bus import Bus
from cryptolink.clock import FakeClock
from cryptolink.models import (
    GAPS_CHANNEL,
    AmountUnit,
    BookUpdate,
    Channel,
    Gap,
    GapCause,
    Side,
    Ticker,
    Trade,
)
from cryptolink.sinks.jsonl import (
    JsonlEvent,
    JsonlSink,
    OutputDirError,
    check_output_dir,
    iter_stream_files,
    read_jsonl,
    read_stream,
)
from cryptolink.sinks.layout import parse_rotated_name, rotated_name

pytestmark = pytest.mark.timeout(20)

WALL_NS = 1_723_100_000_123_456_000  # FakeClock wall start: 2024-08-08T06:53:20.123456Z


def make_trade(n: int, exchange: str = "binance", feed: str = "") -> Trade:
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
        feed=feed,
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
    feed="okx-swap",
    amount_unit=AmountUnit.CONTRACTS,
    contract_size=Decimal("0.01"),
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

GAP = Gap(
    exchange="binance",
    symbol="BTC/USDT",
    exchange_symbol="BTCUSDT",
    stream=Channel.TRADES,
    cause=GapCause.MISSING_IDS,
    from_ms=1_723_100_000_000,
    to_ms=1_723_100_000_500,
    receipt_ns=9,
    feed="binance-spot",
    first_missing_id=1001,
    last_missing_id=1004,
    recovered=True,
    backfilled=4,
    detail="ids 1001..1004 missing",
)


def encoded(event: Any) -> bytes:
    return msgspec.json.encode(event) + b"\n"


def line_bytes(event: Any) -> int:
    return len(encoded(event))


@pytest.fixture
def make_sink(tmp_path: Path) -> Iterator[Callable[..., JsonlSink]]:
    """Creates sinks under ``tmp_path/out`` (by default) and closes them all at teardown."""
    sinks: list[JsonlSink] = []

    def make(out_dir: Path | None = None, **kw: Any) -> JsonlSink:
        kw.setdefault("clock", FakeClock(wall_start_ns=WALL_NS))
        sink = JsonlSink(tmp_path / "out" if out_dir is None else out_dir, **kw)
        sinks.append(sink)
        return sink

    yield make
    for sink in sinks:
        sink.close()


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def assert_whole_lines(path: Path, max_bytes: int | None = None) -> None:
    data = path.read_bytes()
    assert data.endswith(b"\n"), path
    if max_bytes is not None:
        assert len(data) <= max_bytes or data.count(b"\n") == 1, path
    list(read_jsonl(path))  # every line decodes


# ------------------------------------------------------ layout


def test_layout_by_feed_with_gaps_and_exact_round_trip(
    make_sink: Callable[..., JsonlSink], tmp_path: Path
) -> None:
    sink = make_sink()
    out = tmp_path / "out"
    trades = [make_trade(i, feed="binance-spot") for i in range(3)]
    events: list[JsonlEvent] = [*trades, make_trade(7), TICKER, BOOK, GAP]
    for ev in events:
        sink.write(ev)
    assert files_under(out) == []  # encoded in memory only, until flushed
    assert sink.stats().lines_buffered == 7
    sink.close()
    assert files_under(out) == [
        "binance-spot/gaps.jsonl",
        "binance-spot/trades.jsonl",
        "binance/trades.jsonl",  # no feed name: the exchange id
        "okx-swap/ticker.jsonl",
        "okx/book.jsonl",
    ]
    assert sink.path_for("binance-spot", Channel.TRADES) == out / "binance-spot" / "trades.jsonl"
    back = list(read_stream(out, "binance-spot", "trades"))
    assert back == trades
    assert isinstance(back[0], Trade) and str(back[0].price) == "64123.10000000" and back[0].side is Side.SELL
    (ticker,) = read_jsonl(out / "okx-swap" / "ticker.jsonl")
    assert ticker == TICKER and isinstance(ticker, Ticker) and str(ticker.contract_size) == "0.01"
    (book,) = read_jsonl(out / "okx" / "book.jsonl")
    assert book == BOOK and isinstance(book, BookUpdate) and str(book.bids[1][1]) == "1E-8"
    raw = json.loads((out / "okx" / "book.jsonl").read_text())
    assert raw["bids"][0] == ["8476.97", "256"] and raw["channel"] == "book"
    assert list(read_stream(out, "binance-spot", GAPS_CHANNEL)) == [GAP]
    st = sink.stats()
    assert (st.lines_written, st.lines_buffered, st.lines_pending, st.lines_dropped, st.rejected) == (
        7,
        0,
        0,
        0,
        0,
    )
    assert st.bytes_written == sum(len(p.read_bytes()) for p in out.rglob("*.jsonl"))
    assert st.healthy and not st.writer_alive and st.files_open == 0 and st.last_error is None


def test_rejects_unsafe_and_foreign_events_with_a_count(
    make_sink: Callable[..., JsonlSink], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "out"
    for n in range(2):  # a second sink appends to the same files
        sink = make_sink(error_log_interval_s=0)
        sink.write(make_trade(n))
        sink.write(object())  # type: ignore[arg-type]
        sink.write(make_trade(9, exchange="../evil"))
        sink.write(make_trade(9, feed="../../evil"))
        sink.write(msgspec.structs.replace(make_trade(9), channel="book"))  # type does not match the channel
        sink.write(msgspec.structs.replace(make_trade(9), price=object()))  # does not encode
        sink.close()
        assert sink.stats().rejected == 5
        sink.write(make_trade(5))  # after close: rejected, never raises
        assert sink.stats().rejected == 6
    assert seqs(read_stream(out, "binance", "trades")) == [1000, 1001]
    assert files_under(tmp_path) == ["out/binance/trades.jsonl"]
    for reason in (
        "not a Trade, Ticker, BookUpdate or Gap: object",
        "feed/exchange name '../evil' is not usable as a directory name",
        "feed/exchange name '../../evil'",
        "Trade on channel 'book'",
        "Trade does not encode",
        "the sink is closed (6 skipped in total)",
    ):
        assert f"JSONL sink skipped an event: {reason}" in caplog.text


def seqs(events: Iterable[object]) -> list[int | None]:
    return [e.sequence if isinstance(e, Trade) else -1 for e in events]


def test_attach_routes_all_channels_including_gaps(
    make_sink: Callable[..., JsonlSink], tmp_path: Path
) -> None:
    bus = Bus()
    sink = make_sink()
    handles = sink.attach(bus, feed="binance-spot")
    # other feeds and engine events are not routed to the sink
    for ev in (make_trade(0, feed="binance-spot"), GAP, make_trade(1), TICKER, object()):
        bus.publish(ev)
    assert sink.stats().lines_buffered == 2
    for h in handles:
        h.close()
    bus.publish(make_trade(2, feed="binance-spot"))
    sink.close()
    assert files_under(tmp_path / "out") == ["binance-spot/gaps.jsonl", "binance-spot/trades.jsonl"]


# --------------------------------------------------- preflight


def test_preflight_creates_parents_and_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b"
    assert check_output_dir(target) == target
    assert target.is_dir() and list(target.iterdir()) == []
    rel = os.path.relpath(target)
    assert check_output_dir(rel) == target  # relative paths come back absolute


def test_preflight_path_under_a_regular_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(OutputDirError) as info:
        check_output_dir(blocker / "data" / "x")
    err = info.value
    assert isinstance(err, OSError) and err.errno == errno.ENOTDIR
    assert (
        str(err)
        == f"output directory {blocker}/data/x is not usable: is not a directory: {blocker} is a regular file"
    )
    with pytest.raises(OutputDirError, match=f"is not a directory: {blocker} is a regular file"):
        check_output_dir(blocker)  # the path itself
    with pytest.raises(OutputDirError, match="is not a directory: /dev/full is a character device"):
        check_output_dir("/dev/full/data")


def test_sink_refuses_to_start_on_a_bad_directory(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    before = {t.name for t in threading.enumerate()}
    with pytest.raises(OutputDirError, match="is a regular file"):
        JsonlSink(tmp_path / "file" / "out")
    assert {t.name for t in threading.enumerate()} == before  # no writer thread was started


def test_preflight_permission_denied_in_sysfs() -> None:
    target = Path("/sys/kernel")
    if not target.is_dir() or _can_create_in(target):
        pytest.skip("no read-only sysfs directory here")
    with pytest.raises(
        OutputDirError, match=r"output directory /sys/kernel is not usable: (permission denied|read-only)"
    ):
        check_output_dir(target)


def _can_create_in(directory: Path) -> bool:
    try:
        fd = os.open(directory / ".cryptolink-test", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError:
        return False
    os.close(fd)
    os.unlink(directory / ".cryptolink-test")
    return True


def test_bad_arguments(tmp_path: Path) -> None:
    for kw in (
        {"flush_interval_s": 0},
        {"max_buffer_bytes": 0},
        {"max_file_bytes": 0},
        {"rotate_interval_s": 0},
        {"max_files": -1},
        {"max_total_bytes": -1},
        {"max_pending_bytes": 0},
        {"close_timeout_s": -1},
        {"error_log_interval_s": float("nan")},
    ):
        (name,) = kw
        with pytest.raises(ValueError, match=name):
            JsonlSink(tmp_path, **kw)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------- rotation


def test_rotation_by_size_never_splits_a_line(make_sink: Callable[..., JsonlSink], tmp_path: Path) -> None:
    line = line_bytes(make_trade(0))
    limit = 3 * line + line // 2  # room for 3 lines
    sink = make_sink(max_file_bytes=limit)
    trades = [make_trade(i) for i in range(10)]
    for t in trades:
        sink.write(t)
    assert sink.sync()  # one chunk of 10 lines, cut between lines
    out = tmp_path / "out"
    files = list(iter_stream_files(out, "binance", "trades"))
    assert [p.name for p in files] == [
        rotated_name("trades", WALL_NS // 1000),  # the clock does not move: stamps stay distinct, in order
        rotated_name("trades", WALL_NS // 1000 + 1),
        rotated_name("trades", WALL_NS // 1000 + 2),
        "trades.jsonl",
    ]
    assert files[0].name == "trades.20240808T065320.123456Z.jsonl"
    assert [len(list(read_jsonl(p))) for p in files] == [3, 3, 3, 1]
    for p in files:
        assert_whole_lines(p, limit)
    assert list(read_stream(out, "binance", "trades")) == trades
    st = sink.stats()
    assert (st.files_rotated, st.bytes_rotated, st.lines_written) == (3, 9 * line, 10)
    big = msgspec.structs.replace(make_trade(10), trade_id="x" * (2 * limit))  # longer than a file may be
    sink.write(big)
    sink.write(make_trade(11))
    sink.close()
    files = list(iter_stream_files(out, "binance", "trades"))
    assert [len(list(read_jsonl(p))) for p in files] == [3, 3, 3, 1, 1, 1]  # the long line alone in its file
    for p in files:
        assert_whole_lines(p, limit)
    assert list(read_stream(out, "binance", "trades")) == [*trades, big, make_trade(11)]


async def test_rotation_by_time_also_for_idle_streams(
    make_sink: Callable[..., JsonlSink], tmp_path: Path
) -> None:
    clock = FakeClock(wall_start_ns=WALL_NS)
    sink = make_sink(rotate_interval_s=60.0, clock=clock)
    out = tmp_path / "out"
    sink.write(make_trade(0))
    sink.write(TICKER)
    assert sink.sync()
    await clock.advance(59.0)
    sink.write(make_trade(1))
    assert sink.sync()
    assert sink.stats().files_rotated == 0
    await clock.advance(1.0)
    assert sink.sync()  # nothing new: the flush still lets the writer rotate files that are due
    stamp = rotated_name("trades", (WALL_NS + 60 * 10**9) // 1000)
    assert [p.name for p in iter_stream_files(out, "binance", "trades")] == [stamp]
    assert [p.name for p in iter_stream_files(out, "okx-swap", "ticker")] == [
        stamp.replace("trades", "ticker")
    ]
    sink.write(make_trade(2))  # a new active file, with its own 60 s
    await clock.advance(30.0)
    assert sink.sync()
    assert sink.stats().files_rotated == 2
    assert seqs(read_stream(out, "binance", "trades")) == [1000, 1001, 1002]


def test_retention_deletes_the_oldest_and_counts(make_sink: Callable[..., JsonlSink], tmp_path: Path) -> None:
    line = line_bytes(make_trade(0))
    out = tmp_path / "out"
    sink = make_sink(max_file_bytes=line, max_files=2)  # one line per file
    for i in range(6):
        sink.write(make_trade(i))
    sink.close()
    st = sink.stats()
    assert (st.files_rotated, st.files_deleted, st.bytes_deleted) == (5, 3, 3 * line)
    assert seqs(read_stream(out, "binance", "trades")) == [1003, 1004, 1005]

    # a later run with a clock that went backwards: new names still sort after the old ones; old files count
    sink = make_sink(
        max_file_bytes=line, max_files=None, max_total_bytes=3 * line, clock=FakeClock(wall_start_ns=0)
    )
    for i in range(6, 9):
        sink.write(make_trade(i))
    sink.close()
    names = [p.name for p in iter_stream_files(out, "binance", "trades")]
    assert names == [*sorted(names[:-1]), "trades.jsonl"]
    assert seqs(read_stream(out, "binance", "trades")) == [1005, 1006, 1007, 1008]
    st = sink.stats()
    assert (st.files_rotated, st.files_deleted, st.bytes_deleted) == (3, 2, 2 * line)


def test_iter_stream_files_order_and_names(tmp_path: Path) -> None:
    d = tmp_path / "f"
    d.mkdir()
    for name in (
        "trades.jsonl",
        "trades.20240101T000000.000002Z.jsonl",
        "trades.20231231T235959.999999Z.jsonl",
        "ticker.20240101T000000.000000Z.jsonl",
        "trades.bad.jsonl",
        "trades.20241399T000000.000000Z.jsonl",
    ):
        (d / name).write_text("")
    assert [p.name for p in iter_stream_files(tmp_path, "f", "trades")] == [
        "trades.20231231T235959.999999Z.jsonl",
        "trades.20240101T000000.000002Z.jsonl",
        "trades.jsonl",
    ]
    assert list(iter_stream_files(tmp_path, "nothing", "trades")) == []
    assert parse_rotated_name("trades", "trades.20240101T000000.000002Z.jsonl") == 1_704_067_200_000_002
    with pytest.raises(ValueError, match="feed"):
        iter_stream_files(tmp_path, "../f", "trades")


# ----------------------------------------------- writer thread


def _blocking_stream(out: Path, feed: str = "binance") -> Path:
    """Make ``<out>/<feed>/trades.jsonl`` a named pipe: the writer's open blocks until a reader appears."""
    (out / feed).mkdir(parents=True)
    fifo = out / feed / "trades.jsonl"
    os.mkfifo(fifo)
    return fifo


def test_writer_behind_drops_and_counts_without_blocking(
    make_sink: Callable[..., JsonlSink], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "out"
    fifo = _blocking_stream(out)
    sink = make_sink(max_pending_bytes=1)
    sink.write(make_trade(0))
    sink.flush()  # handed over: the writer thread is now stuck opening the pipe
    for i in (1, 2):
        sink.write(make_trade(i))
    sink.flush()  # the writer is behind: dropped and counted, the caller never waits
    st = sink.stats()
    assert (st.lines_pending, st.dropped_writer_behind, st.lines_dropped, st.lines_written) == (1, 2, 2, 0)
    assert "JSONL writer is behind" in caplog.text and "dropped 2 lines" in caplog.text
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # unblock the writer
    try:
        sink.close()
        data = os.read(reader, 1 << 16)
    finally:
        os.close(reader)
    assert data == encoded(make_trade(0))
    st = sink.stats()
    assert (st.lines_written, st.lines_pending, st.lines_dropped, st.writer_alive) == (1, 0, 2, False)


def test_close_gives_up_on_a_stuck_writer_and_counts(
    make_sink: Callable[..., JsonlSink], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "out"
    fifo = _blocking_stream(out)
    sink = make_sink(close_timeout_s=0)
    for i in range(3):
        sink.write(make_trade(i))
    sink.close()  # the writer is stuck in open(): nothing more can be written
    st = sink.stats()
    assert (st.dropped_at_close, st.lines_dropped, st.lines_pending, st.lines_written) == (3, 3, 0, 0)
    assert "did not finish" in caplog.text and "3 lines DROPPED" in caplog.text
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        sink._writer.thread.join()  # let the stuck thread end (what it writes now is not counted twice)
    finally:
        os.close(reader)
    assert sink.stats().lines_written == 0 and sink.stats().lines_dropped == 3


def test_write_failure_is_counted_logged_and_recovers(
    make_sink: Callable[..., JsonlSink], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="cryptolink.sinks.jsonl")
    out = tmp_path / "out"
    (out / "binance").mkdir(parents=True)
    active = out / "binance" / "trades.jsonl"
    active.symlink_to("/dev/full")  # every write: ENOSPC
    clock = FakeClock(wall_start_ns=WALL_NS)
    sink = make_sink(clock=clock)
    for i in range(3):
        sink.write(make_trade(i))
    sink.write(TICKER)  # another stream is not affected
    assert sink.sync()
    st = sink.stats()
    assert (st.write_errors, st.dropped_write_errors, st.lines_dropped, st.lines_written) == (1, 3, 3, 1)
    assert not st.healthy
    assert st.last_error == f"write to {active} failed: [Errno 28] No space left on device"
    assert st.last_error_ns == WALL_NS
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert (
        "No space left on device; 3 lines dropped (in total: 3 lines dropped by write errors, 1 write errors)"
        in (errors[0].getMessage())
    )
    sink.write(make_trade(3))
    assert sink.sync()
    st = sink.stats()
    assert (st.write_errors, st.lines_dropped) == (2, 4)  # counted, but not logged again within 10 s
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1

    active.unlink()  # the disk has room again
    for i in (4, 5):
        sink.write(make_trade(i))
        assert sink.sync()
    st = sink.stats()
    assert st.healthy and (st.write_errors, st.lines_dropped, st.lines_written) == (2, 4, 3)
    assert st.last_error is not None  # kept for the report
    recovered = [r.getMessage() for r in caplog.records if "succeed again" in r.getMessage()]
    assert recovered == [
        f"JSONL writes to {active} succeed again; in total 4 lines were dropped by 2 write errors"
    ]
    assert seqs(read_jsonl(active)) == [1004, 1005]


def test_missing_directory_is_a_write_error_for_that_stream_only(
    make_sink: Callable[..., JsonlSink], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    sink = make_sink()
    (out / "binance").write_text("a file where the directory should be")
    sink.write(make_trade(0))
    sink.write(make_trade(1))
    sink.write(TICKER)
    assert sink.sync()
    st = sink.stats()
    assert (st.write_errors, st.lines_dropped, st.lines_written, st.healthy) == (1, 2, 1, False)
    assert st.last_error is not None and str(out / "binance") in st.last_error
    assert list(read_jsonl(out / "okx-swap" / "ticker.jsonl")) == [TICKER]


def test_a_line_cut_by_a_crash_stays_on_its_own(make_sink: Callable[..., JsonlSink], tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "binance").mkdir(parents=True)
    active = out / "binance" / "trades.jsonl"
    good = encoded(make_trade(0))
    active.write_bytes(good + good[:40])  # the previous run died mid-line
    sink = make_sink()
    sink.write(make_trade(1))
    sink.close()
    assert active.read_bytes() == good + good[:40] + b"\n" + encoded(make_trade(1))
    with pytest.raises(ValueError, match=r"trades.jsonl:2:"):
        list(read_jsonl(active))
    assert seqs(read_jsonl(active, on_error="skip")) == [1000, 1001]


# --------------------------------------------------- lifecycle


async def test_run_flushes_periodically_and_aclose_joins(
    make_sink: Callable[..., JsonlSink], tmp_path: Path
) -> None:
    clock = FakeClock(wall_start_ns=WALL_NS)
    sink = make_sink(flush_interval_s=1.0, clock=clock)
    runner = asyncio.create_task(sink.run())
    await asyncio.sleep(0)
    sink.write(make_trade(0))
    assert sink.stats().lines_buffered == 1
    await clock.advance(1.0)
    st = sink.stats()
    assert st.lines_buffered == 0 and st.lines_pending + st.lines_written == 1  # handed to the writer thread
    sink.write(make_trade(1))
    await sink.aclose()  # flushes, stops and joins the thread
    await sink.aclose()  # idempotent
    sink.close()
    st = sink.stats()
    assert (st.lines_written, st.lines_pending, st.lines_dropped, st.writer_alive, st.files_open) == (
        2,
        0,
        0,
        False,
        0,
    )
    assert len(list(read_stream(tmp_path / "out", "binance", "trades"))) == 2
    await clock.advance(1.0)
    await asyncio.wait_for(runner, timeout=5)  # run() ends once the sink is closed


def test_buffer_is_bounded(make_sink: Callable[..., JsonlSink], tmp_path: Path) -> None:
    sink = make_sink(max_buffer_bytes=1000)
    for i in range(50):
        sink.write(make_trade(i))
        assert sink.stats().bytes_buffered <= 1000
    st = sink.stats()
    assert st.lines_buffered < 50 and st.lines_pending + st.lines_written + st.lines_buffered == 50
    sink.close()
    assert len(list(read_stream(tmp_path / "out", "binance", "trades"))) == 50


def test_read_errors_are_clear(make_sink: Callable[..., JsonlSink], tmp_path: Path) -> None:
    sink = make_sink()
    sink.write(make_trade(0))
    sink.close()
    good = (tmp_path / "out" / "binance" / "trades.jsonl").read_bytes()
    path = tmp_path / "trades.20240808T000000.000000Z.jsonl"  # the channel comes from the name's first part
    path.write_bytes(good + b'{"exchange": "binance", "symbol": \n' + good)
    with pytest.raises(ValueError, match=r"trades.20240808T000000.000000Z.jsonl:2:"):
        list(read_jsonl(path))
    assert len(list(read_jsonl(path, on_error="skip"))) == 2
    with pytest.raises(ValueError, match="channel"):
        list(read_jsonl(tmp_path / "odd.jsonl"))
    other = tmp_path / "other.jsonl"
    other.write_bytes(good)
    assert seqs(read_jsonl(other, Channel.TRADES)) == [1000]
