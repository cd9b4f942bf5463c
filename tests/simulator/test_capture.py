"""Reading a user's capture into replayable tapes: Binance diffs stitched to REST snapshots (spot ``U``/``u``,
futures ``pu``), OKX ``books`` chains, duplicates from a second connection dropped, gaps repaired by the next
snapshot, symbols without a snapshot refused by name, corrupt lines counted, cut files read up to the cut."""

from __future__ import annotations

import base64
import gzip
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cryptolink.simulator.capture import Capture, CaptureError, CaptureSource, Tape, load_capture
from cryptolink.simulator.market import Bbo, Depth, SimBook, Ticker, Trade

S = 1_000_000_000  # ns per second
HEADER = {"format": "cryptolink-capture", "version": 1, "created": 0}


def write(path: Path, records: list[Any], header: dict[str, Any] | None = HEADER) -> Path:
    """A capture file: ``records`` are dicts (JSON-encoded) or raw strings (written as they are)."""
    out = [] if header is None else [json.dumps(header)]
    out += [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_bytes(gzip.compress(("\n".join(out) + "\n").encode()))
    return path


def ws(t: float, ex: str, frame: Any, c: int = 1) -> dict[str, Any]:
    text = frame if isinstance(frame, str) else json.dumps(frame)
    return {"t": int(t * S), "k": "ws", "ex": ex, "m": "spot", "feed": ex, "c": c, "f": text}


def snap(
    t: float, ex: str, xs: str, last: int, bids: list[list[str]], asks: list[list[str]]
) -> dict[str, Any]:
    body = json.dumps({"lastUpdateId": last, "bids": bids, "asks": asks})
    return {"t": int(t * S), "k": "rest", "ex": ex, "what": "snapshot", "symbol": "X", "xs": xs, "body": body}


def depth(
    s: str, first: int, last: int, b: list[list[str]], a: list[list[str]], pu: int | None = None
) -> Any:
    data: dict[str, Any] = {"e": "depthUpdate", "E": 1, "s": s, "U": first, "u": last, "b": b, "a": a}
    if pu is not None:
        data["pu"] = pu
    return {"stream": f"{s.lower()}@depth@100ms", "data": data}


def trade(s: str, tid: int, price: str) -> Any:
    data = {"e": "trade", "E": 1, "s": s, "t": tid, "p": price, "q": "1", "T": 1, "m": False}
    return {"stream": f"{s.lower()}@trade", "data": data}


def book_of(bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> SimBook:
    b = SimBook()
    b.apply(bids, asks)
    return b


def levels(book: SimBook) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    return book.top(1000)


def play(tape: Tape) -> tuple[CaptureSource, list[Any]]:
    """One full pass of ``tape`` (and nothing of the seam)."""
    src = CaptureSource(tape)
    return src, [src.emit_next(0) for _ in tape.events]


def test_binance_spot_diffs_are_stitched_to_the_snapshot_and_duplicates_dropped(tmp_path: Path) -> None:
    bids, asks = [["100", "1"], ["99", "2"]], [["101", "1"]]
    path = write(
        tmp_path / "c.gz",
        [
            ws(1.0, "binance", depth("BTCUSDT", 95, 99, [["98", "1"]], [])),  # covered by the snapshot
            ws(1.1, "binance", trade("BTCUSDT", 6, "100")),  # before the snapshot: not replayed
            ws(1.2, "binance", depth("BTCUSDT", 99, 101, [["100", "3"]], [])),  # buffered, bridges 101
            snap(1.5, "binance", "BTCUSDT", 100, bids, asks),
            ws(2.0, "binance", depth("BTCUSDT", 102, 104, [["99", "0"]], [["102", "5"]])),
            ws(2.0, "binance", depth("BTCUSDT", 102, 104, [["99", "0"]], [["102", "5"]]), c=2),  # duplicate
            ws(2.5, "binance", trade("BTCUSDT", 7, "100.5")),
            ws(2.5, "binance", trade("BTCUSDT", 7, "100.5"), c=2),  # duplicate
            ws(3.0, "binance", {"u": 105, "s": "BTCUSDT", "b": "100", "B": "3", "a": "101", "A": "1"}),
            ws(3.5, "binance", depth("BTCUSDT", 105, 105, [], [["101", "0"]])),
            ws(3.6, "binance", {"result": None, "id": 3}),  # an ack: ignored
        ],
    )
    capture = load_capture(path)
    tape = capture.tapes[("binance", "BTCUSDT")]
    assert (tape.start_seq, tape.bids, tape.asks) == (100, [("100", "1"), ("99", "2")], [("101", "1")])
    assert [(k, p[0] if k == "depth" else p) for _, k, p in tape.events] == [
        ("depth", 1),  # 99..101 after 100: one new id
        ("depth", 3),
        ("trade", ("100.5", "1", False)),
        ("bbo", ("100", "3", "101", "1", 1)),  # u 105 = book sequence 104 + 1
        ("depth", 1),
    ]
    assert [round(d, 3) for d, _, _ in tape.events] == [0.0, 0.5, 0.5, 0.5, 0.5]
    assert tape.first_trade_id == 7 and tape.duration_s == pytest.approx(2.0)
    assert capture.stats.ignored_frames == 1 and capture.stats.rest_bodies == 1

    src, events = play(tape)
    depths = [e for e in events if isinstance(e, Depth)]
    # first pass: the recorded ids (the BBO's id 105 lies inside the next delta)
    assert [(d.first_id, d.last_id) for d in depths] == [(101, 101), (102, 104), (105, 105)]
    (bbo,) = [e for e in events if isinstance(e, Bbo)]
    assert bbo.update_id == 105
    (tr,) = [e for e in events if isinstance(e, Trade)]
    assert (tr.trade_id, tr.price) == (7, "100.5")
    want = book_of([("100", "3")], [("102", "5")])
    assert levels(src.book) == levels(want)
    seam = src.emit_next(0)  # back to the snapshot book, ids still growing
    assert isinstance(seam, Depth) and seam.first_id == 106 and src.loops == 1
    assert levels(src.book) == levels(book_of([("100", "1"), ("99", "2")], [("101", "1")]))


def test_futures_pu_chain_and_a_gap_repaired_by_the_next_snapshot(tmp_path: Path) -> None:
    path = write(
        tmp_path / "c.gz",
        [
            snap(1.0, "binanceusdm", "BTCUSDT", 100, [["10", "1"]], [["11", "1"]]),
            ws(1.1, "binanceusdm", depth("BTCUSDT", 95, 102, [["10", "2"]], [], pu=94)),  # U <= 100 <= u
            ws(1.2, "binanceusdm", depth("BTCUSDT", 103, 106, [["9", "1"]], [], pu=102)),
            ws(1.3, "binanceusdm", depth("BTCUSDT", 110, 112, [["8", "1"]], [], pu=108)),  # gap: pu != 106
            ws(1.4, "binanceusdm", depth("BTCUSDT", 113, 115, [], [["12", "4"]], pu=112)),
            snap(1.5, "binanceusdm", "BTCUSDT", 113, [["10", "5"], ["7", "1"]], [["11", "2"]]),  # the resync
            ws(1.6, "binanceusdm", depth("BTCUSDT", 116, 118, [["7", "0"]], [], pu=115)),
        ],
    )
    tape = load_capture(path).tapes[("binanceusdm", "BTCUSDT")]
    assert tape.jumps == 1 and tape.unrepaired_gaps == 0
    assert [p[0] for _, k, p in tape.events if k == "depth"] == [2, 4, 7, 2, 3]  # 102, 106, 113, 115, 118
    src, events = play(tape)
    assert [(e.last_id, e.prev_id) for e in events if isinstance(e, Depth)] == [
        (102, 100),
        (106, 102),
        (113, 106),  # the jump: from the book at 106 to the snapshot at 113
        (115, 113),
        (118, 115),
    ]
    assert levels(src.book) == levels(book_of([("10", "5")], [("11", "2"), ("12", "4")]))


def test_a_gap_no_snapshot_repairs_ends_the_book_part_and_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(
        tmp_path / "c.gz",
        [
            snap(1.0, "binance", "ETHUSDT", 10, [["5", "1"]], [["6", "1"]]),
            ws(1.1, "binance", depth("ETHUSDT", 11, 11, [["5", "2"]], [])),
            ws(1.2, "binance", depth("ETHUSDT", 15, 16, [["5", "9"]], [])),  # 12..14 never recorded
            ws(1.3, "binance", trade("ETHUSDT", 1, "5.5")),
        ],
    )
    with caplog.at_level(logging.WARNING, logger="cryptolink.simulator.capture"):
        tape = load_capture(path).tapes[("binance", "ETHUSDT")]
    assert tape.unrepaired_gaps == 1 and "ETHUSDT" in caplog.text and "breaks at sequence 11" in caplog.text
    assert [k for _, k, _ in tape.events] == ["depth", "trade"]  # the trade after the gap is still replayed


def test_okx_books_trades_tickers_and_bbo(tmp_path: Path) -> None:
    def books(action: str, seq: int, prev: int, bids: list[list[str]], asks: list[list[str]]) -> Any:
        data: dict[str, Any] = {
            "bids": [[*lv, "0", "1"] for lv in bids],
            "asks": [[*lv, "0", "1"] for lv in asks],
        }
        data.update(ts="1", checksum=0, seqId=seq, prevSeqId=prev)
        return {"arg": {"channel": "books", "instId": "BTC-USDT"}, "action": action, "data": [data]}

    def okx_trade(tid: int) -> Any:
        item = {"instId": "BTC-USDT", "tradeId": str(tid), "px": "50", "sz": "2", "side": "sell", "ts": "1"}
        return {"arg": {"channel": "trades", "instId": "BTC-USDT"}, "data": [item]}

    def ticker(last: str) -> Any:
        item = {"instType": "SPOT", "instId": "BTC-USDT", "last": last, "bidPx": "49", "ts": "5"}
        return {"arg": {"channel": "tickers", "instId": "BTC-USDT"}, "data": [item]}

    bbo = {
        "arg": {"channel": "bbo-tbt", "instId": "BTC-USDT"},
        "data": [{"bids": [["49", "3", "0", "1"]], "asks": [["51", "1", "0", "1"]], "ts": "1", "seqId": 15}],
    }
    binary = base64.b64encode(json.dumps(okx_trade(7)).encode()).decode()
    path = write(
        tmp_path / "c.gz",
        [
            ws(1.0, "okx", {"event": "subscribe", "arg": {"channel": "books"}, "connId": "a"}),
            ws(1.1, "okx", books("snapshot", 10, -1, [["49", "1"]], [["51", "1"]])),
            ws(1.2, "okx", books("update", 12, 10, [["49", "3"]], [])),
            ws(1.2, "okx", books("update", 12, 10, [["49", "3"]], []), c=2),  # duplicate
            ws(1.3, "okx", books("update", 12, 12, [], [])),  # heartbeat: no change
            ws(1.4, "okx", okx_trade(5)),
            ws(1.4, "okx", okx_trade(5), c=2),  # duplicate
            ws(1.5, "okx", ticker("50")),
            ws(1.5, "okx", ticker("50"), c=2),  # duplicate
            ws(1.6, "okx", books("update", 15, 12, [], [["52", "1"]])),
            ws(1.7, "okx", bbo),
            {**ws(1.8, "okx", "x"), "f": binary, "b": True},  # a binary frame: trade 7
            ws(1.9, "okx", "pong"),
        ],
    )
    capture = load_capture(path)
    assert capture.stats.ignored_frames == 2  # the subscribe event and the pong
    tape = capture.tapes[("okx", "BTC-USDT")]
    assert tape.start_seq == 10 and tape.first_trade_id == 5
    assert [k for _, k, _ in tape.events] == ["depth", "trade", "ticker", "depth", "bbo", "trade"]
    src, events = play(tape)
    assert [(e.first_id, e.last_id, e.prev_id) for e in events if isinstance(e, Depth)] == [
        (11, 12, 10),
        (13, 15, 12),
    ]
    assert [e.trade_id for e in events if isinstance(e, Trade)] == [5, 6]  # re-sequenced from the first id
    (tick,) = [e for e in events if isinstance(e, Ticker)]
    assert tick.fields == {"last": "50", "bidPx": "49"}
    (b,) = [e for e in events if isinstance(e, Bbo)]
    assert (b.update_id, b.bid, b.ask_qty) == (15, "49", "1")  # OKX BBOs take no ids
    assert levels(src.book) == levels(book_of([("49", "3")], [("51", "1"), ("52", "1")]))


def test_a_reconnect_snapshot_past_an_intact_chain_moves_the_tape_to_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Found replaying a capture recorded while the simulator was frozen (SIGSTOP): the recorder's socket was
    reset, and the new socket's snapshot (seqId 13) came right after the old socket's last update (12), with
    no update between them to break the chain. The tape must jump to that snapshot and go on, not stop."""

    def books(action: str, seq: int, prev: int, bids: list[list[str]]) -> Any:
        data: dict[str, Any] = {
            "bids": [[*lv, "0", "1"] for lv in bids],
            "asks": [["60", "1", "0", "1"]],
            "ts": "1",
        }
        data.update(checksum=0, seqId=seq, prevSeqId=prev)
        return {"arg": {"channel": "books", "instId": "BTC-USDT"}, "action": action, "data": [data]}

    path = write(
        tmp_path / "c.gz",
        [
            ws(1.0, "okx", books("snapshot", 10, -1, [["49", "1"]]), c=1),
            ws(1.1, "okx", books("update", 11, 10, [["49", "2"]]), c=1),
            ws(1.2, "okx", books("update", 12, 11, [["48", "1"]]), c=1),
            ws(8.0, "okx", books("snapshot", 13, -1, [["49", "5"], ["47", "1"]]), c=2),
            ws(8.1, "okx", books("update", 14, 13, [["46", "1"]]), c=2),
        ],
    )
    with caplog.at_level(logging.WARNING):
        capture = load_capture(path)
    assert "chain breaks" not in caplog.text
    src, events = play(capture.tapes[("okx", "BTC-USDT")])
    assert [(e.first_id, e.last_id) for e in events if isinstance(e, Depth)][-2:] == [(13, 13), (14, 14)]
    assert levels(src.book) == levels(book_of([("49", "5"), ("47", "1"), ("46", "1")], [("60", "1")]))


def test_a_symbol_without_a_snapshot_is_refused_by_name(tmp_path: Path) -> None:
    path = write(
        tmp_path / "c.gz",
        [
            ws(1.0, "binance", depth("BTCUSDT", 5, 6, [["1", "1"]], [])),
            snap(1.0, "binance", "ETHUSDT", 3, [["2", "1"]], [["3", "1"]]),
            ws(1.1, "binance", depth("ETHUSDT", 4, 4, [["2", "2"]], [])),
            ws(1.2, "binance", trade("SOLUSDT", 1, "150")),  # trades only: an empty book
        ],
    )
    capture = load_capture(path)
    assert capture.exchanges == ("binance",)
    assert capture.symbols("binance") == ("BTCUSDT", "ETHUSDT", "SOLUSDT")
    with pytest.raises(
        CaptureError, match=r"binance BTCUSDT: the capture has book updates but no book snapshot"
    ):
        capture.sources("binance")
    sources = capture.sources("binance", strict=False)
    assert sorted(sources) == ["ETHUSDT", "SOLUSDT"]
    sol = sources["SOLUSDT"]()
    assert not capture.tapes[("binance", "SOLUSDT")].has_book and sol.book.depth() == 0
    assert isinstance(sol.emit_next(0), Trade)
    with pytest.raises(CaptureError, match=r"holds nothing of 'okx'; it holds: binance"):
        capture.sources("okx")


def test_corrupt_lines_are_counted_skipped_and_logged_with_their_number(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(
        tmp_path / "c.gz",
        [
            snap(1.0, "binance", "BTCUSDT", 1, [["2", "1"]], [["3", "1"]]),
            '{"t": 5, "k": "ws", "ex": "binance", "f": "{\\"stream\\":',  # line 3: cut mid-line
            '{"t": "soon", "k": "ws", "ex": "binance"}',  # line 4: wrong type
            ws(2.0, "binance", depth("BTCUSDT", 2, 2, [["2", "2"]], [])),
            ws(
                2.1, "binance", '{"stream":"btcusdt@depth","data":{"e":"depthUpdate","s":"BTCUSDT"}}'
            ),  # no U/u
        ],
    )
    with caplog.at_level(logging.WARNING, logger="cryptolink.simulator.capture"):
        capture = load_capture(path)
    assert capture.stats.corrupt_lines == 2 and capture.stats.bad_frames == 1 and capture.stats.lines == 6
    assert "line 3" in caplog.text and "line 4" in caplog.text
    assert capture.tapes[("binance", "BTCUSDT")].depth_events == 1  # the good lines around them are kept


def test_a_cut_recording_is_read_up_to_the_cut(tmp_path: Path) -> None:
    records = [snap(1.0, "binance", "BTCUSDT", 1, [["2", "1"]], [["3", "1"]])]
    records += [
        ws(1 + i / 10, "binance", depth("BTCUSDT", 2 + i, 2 + i, [["2", str(i)]], [])) for i in range(200)
    ]
    full = write(tmp_path / "full.gz", records)
    data = full.read_bytes()
    cut = tmp_path / "cut.gz"
    cut.write_bytes(data[: len(data) * 2 // 3])
    capture = load_capture(cut)
    assert capture.stats.truncated and capture.stats.corrupt_lines == 0
    n = capture.tapes[("binance", "BTCUSDT")].depth_events
    assert 0 < n < 200 and capture.stats.lines == n + 2
    assert not load_capture(full).stats.truncated


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "not a cryptolink capture"),
        ({"format": "hftbacktest"}, "not a cryptolink capture"),
        ({"format": "cryptolink-capture", "version": 99}, "version 99 is not supported"),
    ],
)
def test_files_that_are_not_captures_are_refused(tmp_path: Path, header: Any, message: str) -> None:
    path = write(tmp_path / "c.gz", ['{"t": 1, "k": "ws", "ex": "okx", "f": "pong"}'], header=header)
    with pytest.raises(CaptureError, match=message):
        load_capture(path)
    (tmp_path / "empty").write_bytes(b"")
    with pytest.raises(CaptureError, match="empty file"):
        load_capture(tmp_path / "empty")


def test_a_plain_text_capture_is_read_too(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    lines = [HEADER, snap(1.0, "binance", "BTCUSDT", 1, [["2", "1"]], [["3", "1"]])]
    path.write_text("\n".join(json.dumps(x) for x in lines), encoding="utf-8")  # no final newline
    capture: Capture = load_capture(path)
    assert capture.tapes[("binance", "BTCUSDT")].start_seq == 1


def test_the_capture_reader_imports_nothing_of_the_client() -> None:
    code = (
        "import sys, cryptolink.simulator.capture\n"
        "allowed = ('cryptolink.simulator', 'cryptolink.clock', 'cryptolink.recordings')\n"
        "print([m for m in sys.modules if m.startswith('cryptolink.') and not m.startswith(allowed)])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
