"""The recorder: a proxy adapter that behaves like the wrapped one and records what it is given, a bounded capture
writer that never loses a line silently, ``record()`` against the simulator, and ``cryptolink record``'s
refusal of an unwritable ``--out``."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import IO, Any

import pytest
from typer.testing import CliRunner

from cryptolink.cli import app
from cryptolink.config import CryptolinkConfig
from cryptolink.exchanges import get_adapter
from cryptolink.exchanges.base import DecodeError, ExchangeAdapter
from cryptolink.models import Channel, Market, Subscription, Trade
from cryptolink.record import (
    CAPTURE_FORMAT,
    CaptureWriteError,
    CaptureWriter,
    Recorder,
    RecordingAdapter,
    record,
)
from cryptolink.service import EXIT_OK
from cryptolink.simulator import Simulator
from cryptolink.simulator.capture import load_capture

TRADE = (
    '{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":7,"p":"100.5","q":"0.25",'
    '"T":1,"m":true,"M":true}}'
)
SNAPSHOT = b'{"lastUpdateId":42,"bids":[["100.0","1.5"]],"asks":[["101.0","2.0"]]}'


def lines(path: Path) -> list[dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def spot(writer: CaptureWriter) -> tuple[ExchangeAdapter, ExchangeAdapter]:
    inner = get_adapter("binance", "spot", feed="main")
    return inner, Recorder(writer).wrap(inner)


def test_proxy_reads_and_writes_exactly_like_the_wrapped_adapter(tmp_path: Path) -> None:
    inner, proxy = spot(CaptureWriter(tmp_path / "c.gz"))
    assert isinstance(proxy, RecordingAdapter)
    # class attributes that differ from ExchangeAdapter's defaults must come from the wrapped adapter
    assert proxy.trade_ids_contiguous is True and type(inner).trade_ids_contiguous is True
    assert proxy.rest_limit == inner.rest_limit and proxy.rest_limit is not None
    assert proxy.policy is inner.policy and proxy.book_sync is inner.book_sync
    assert (proxy.exchange, proxy.market, proxy.feed) == (inner.exchange, Market.SPOT, "main")
    assert proxy.ws_base_url == inner.ws_base_url and proxy.exchange_symbol("BTC/USDT") == "BTCUSDT"
    sub = Subscription(Channel.TRADES, "BTC/USDT")
    assert proxy.subscribe_requests([sub], 5) == inner.subscribe_requests([sub], 5)
    # writes go to the wrapped adapter (tests shorten policies on the adapters the manager uses)
    short = replace(inner.policy, max_frame_bytes=1234)
    proxy.policy = short
    assert inner.policy is short and proxy.policy is short


def test_frames_are_recorded_with_receipt_time_and_connection(tmp_path: Path) -> None:
    path = tmp_path / "c.gz"
    writer = CaptureWriter(path)
    inner, proxy = spot(writer)
    sub = Subscription(Channel.TRADES, "BTC/USDT")
    inner.subscribe_requests([sub], 1)  # the adapter learns the symbol from its subscriptions
    first, second = proxy.session_decoder(), proxy.session_decoder()
    (trade,) = first(TRADE, 111)
    assert isinstance(trade, Trade) and trade.price == inner.decode(TRADE, 111)[0].price  # type: ignore[union-attr]
    second(TRADE, 222)
    proxy.decode(TRADE, 333)  # an engine that calls decode directly: connection 0
    with pytest.raises(DecodeError):
        first(b"\x00\xff not json", 444)  # recorded before parsing: a rejected frame is kept too
    writer.close()
    header, *recs = lines(path)
    assert header["format"] == CAPTURE_FORMAT and header["version"] == 1
    conns = [r for r in recs if r["k"] == "conn"]
    frames = [r for r in recs if r["k"] == "ws"]
    assert [c["c"] for c in conns] == [1, 2]
    assert [(f["t"], f["c"]) for f in frames] == [(111, 1), (222, 2), (333, 0), (444, 1)]
    assert all(f["ex"] == "binance" and f["m"] == "spot" and f["feed"] == "main" for f in frames)
    assert frames[0]["f"] == TRADE and "b" not in frames[0]
    assert frames[3]["b"] is True and base64.b64decode(frames[3]["f"]) == b"\x00\xff not json"
    stats = writer.stats()
    assert stats.exchanges["binance"].frames == 4 and stats.exchanges["binance"].binary_frames == 1
    assert stats.exchanges["binance"].connections == 2 and stats.lines_written == 7


def test_rest_bodies_are_recorded_with_their_symbol(tmp_path: Path) -> None:
    path = tmp_path / "c.gz"
    writer = CaptureWriter(path)
    inner = get_adapter("binance", "perpetual")
    proxy = RecordingAdapter(inner, writer)
    sub = Subscription(Channel.BOOK, "BTC/USDT:USDT")
    snap = proxy.parse_snapshot(SNAPSHOT, sub, 555)
    assert snap.last_seq == 42 and snap.is_snapshot
    with pytest.raises(DecodeError):
        proxy.parse_instruments(b"\x89PNG not an instrument list")
    writer.close()
    _, rest, inst = lines(path)
    assert rest == {
        "t": 555,
        "k": "rest",
        "ex": "binanceusdm",  # ccxt's id, not the adapter's user-facing one
        "m": "perpetual",
        "feed": inner.feed,
        "what": "snapshot",
        "symbol": "BTC/USDT:USDT",
        "xs": "BTCUSDT",
        "body": SNAPSHOT.decode(),
    }
    assert inst["what"] == "instruments" and inst["b"] is True
    assert base64.b64decode(inst["body"]) == b"\x89PNG not an instrument list"


def test_round_trip_writer_to_simulator_loader(tmp_path: Path) -> None:
    path = tmp_path / "c.gz"
    writer = CaptureWriter(path)
    inner = get_adapter("binance", "spot")
    proxy = Recorder(writer).wrap(inner)
    proxy.parse_snapshot(SNAPSHOT, Subscription(Channel.BOOK, "BTC/USDT"), 1_000)
    decode = proxy.session_decoder()
    diff = '{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":2,"s":"BTCUSDT","U":43,"u":45,"b":[["100.0","0"]],"a":[]}}'
    decode(diff, 2_000_000_000)
    decode(TRADE.encode(), 3_000_000_000)  # a binary frame carrying JSON
    writer.close()
    capture = load_capture(path)
    tape = capture.tapes[("binance", "BTCUSDT")]
    assert (tape.start_seq, tape.bids, tape.asks) == (42, [("100.0", "1.5")], [("101.0", "2.0")])
    assert [(k, p) for _, k, p in tape.events] == [
        ("depth", (3, [("100.0", "0")], [])),
        ("trade", ("100.5", "0.25", True)),
    ]
    assert [round(d, 3) for d, _, _ in tape.events] == [2.0, 1.0]  # seconds after the snapshot's receipt
    assert tape.first_trade_id == 7 and capture.stats.corrupt_lines == 0


def test_a_full_queue_drops_lines_and_counts_them(tmp_path: Path) -> None:
    writer = CaptureWriter(tmp_path / "c.gz", max_pending_bytes=300)
    _, proxy = spot(writer)
    for i in range(5):
        proxy.decode(TRADE, i)  # each line is about 240 bytes: only the first fits
    assert writer.stats().lines_dropped == 4
    writer.flush()
    proxy.decode(TRADE, 9)  # room again after the flush
    writer.close()
    assert writer.stats().lines_dropped == 4 and writer.stats().lines_written == 3
    health = writer.health()
    assert health.lost == 4 and health.data_lost and health.healthy
    assert len(lines(tmp_path / "c.gz")) == 3


class FailingFile:
    """Fails like a full disk once ``full`` is set."""

    def __init__(self) -> None:
        self.full = False
        self.data = b""

    def write(self, data: bytes) -> int:
        if self.full:
            raise OSError(28, "No space left on device")
        self.data += data
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_a_write_failure_is_an_error_and_every_lost_line_is_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    disk = FailingFile()

    def opener(path: Path) -> IO[bytes]:
        return disk  # type: ignore[return-value]

    writer = CaptureWriter(tmp_path / "c.gz", opener=opener)  # the header fits
    disk.full = True
    _, proxy = spot(writer)
    proxy.decode(TRADE, 1)
    proxy.decode(TRADE, 2)
    with caplog.at_level(logging.ERROR, logger="cryptolink.record"):
        writer.flush()
    assert "write failed, 2 lines lost" in caplog.text and "No space left" in caplog.text
    proxy.decode(TRADE, 3)  # after a failure nothing more is accepted, and that is counted too
    writer.close()
    stats, health = writer.stats(), writer.health()
    assert stats.lines_dropped == 3 and stats.error is not None and "No space left" in stats.error
    assert not health.healthy and health.lost == 3 and health.data_lost
    assert "ERROR" in "\n".join(writer.report_section().lines)


def test_an_unwritable_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CaptureWriteError, match="not usable"):
        CaptureWriter(tmp_path / "no-such-dir" / "c.gz")
    with pytest.raises(CaptureWriteError, match="is a directory"):
        CaptureWriter(tmp_path)


def test_cli_record_help_names_its_options() -> None:
    result = CliRunner().invoke(app, ["record", "--help"])
    assert result.exit_code == 0
    assert all(opt in result.output for opt in ("CONFIG.yaml", "--out", "--duration"))
    assert "record" in CliRunner().invoke(app, ["--help"]).output


def test_cli_record_refuses_an_unwritable_out_with_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("exchanges:\n  okx:\n    symbols: [BTC/USDT]\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["record", str(config), "--out", str(tmp_path / "missing" / "c.gz")])
    assert result.exit_code == 2, result.output
    assert "not usable" in result.output and "missing" in result.output


@pytest.mark.timeout(60)
async def test_record_runs_the_config_and_writes_a_replayable_capture(tmp_path: Path) -> None:
    out = tmp_path / "capture.gz"
    async with Simulator(exchanges=["binance"], mode="synthetic", seed=1) as sim:
        ep = sim.endpoints()["binance"]
        cfg = CryptolinkConfig.from_dict(
            {
                "exchanges": {
                    "binance": {
                        "symbols": ["BTC/USDT"],
                        "channels": ["trades", "book"],
                        "ws_url": ep["ws_url"],
                        "rest_url": ep["rest_url"],
                    }
                },
                "output": {"enabled": True, "dir": str(tmp_path / "jsonl")},
            },
            env={},
        )
        stop = asyncio.Event()
        task = asyncio.create_task(record(cfg, out, stop=stop, flush_interval_s=0.05))
        # stop once the source has produced a few book deltas after the client's snapshot
        server = sim.servers["binance"]
        await server.wait_subscribed("btcusdt@trade", within_s=10)
        src = server.sources["BTCUSDT"]
        done = asyncio.Event()

        def seen(_: Any) -> None:
            if src.events_emitted >= 60:
                done.set()

        src.listeners.append(seen)
        await asyncio.wait_for(done.wait(), 20)
        stop.set()
        result = await asyncio.wait_for(task, 20)
    assert result.exit_code == EXIT_OK and result.error is None
    assert result.capture is not None and result.capture.lines_dropped == 0
    counts = result.capture.exchanges["binance"]
    assert counts.frames > 10 and counts.rest_bodies >= 2 and counts.connections >= 1
    assert "capture" in result.report and str(out) in result.report
    assert not (tmp_path / "jsonl").exists()  # the capture is the sink: JSONL output is off while recording
    tape = load_capture(out).tapes[("binance", "BTCUSDT")]
    assert tape.has_book and tape.depth_events > 0
