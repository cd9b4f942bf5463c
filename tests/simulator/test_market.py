"""Market sources: replay loop seams keep ids valid and the book exact; the OKX replay reproduces OKX's own
checksums; synthetic books never cross; the trade history answers id/time queries; user captures and
recordings without a snapshot replay consistently."""

from __future__ import annotations

import gzip
import json
from decimal import Decimal
from pathlib import Path

import pytest

from cryptolink import recordings
from cryptolink.simulator import SimConfig
from cryptolink.simulator.market import (
    OKX_RECORDING,
    Bbo,
    Depth,
    OkxReplaySource,
    ReplaySource,
    SimBook,
    SyntheticSource,
    Ticker,
    Trade,
    TradeHistory,
    make_source,
)
from cryptolink.simulator.okx import okx_checksum

SPOT_BTC = "hftbacktest_binance_spot_btcusdt_20240808.gz"


def _client_apply(book: dict[str, dict[Decimal, str]], ev: Depth) -> None:
    for side, levels in (("bids", ev.bids), ("asks", ev.asks)):
        for p, q in levels:
            if Decimal(q) == 0:
                book[side].pop(Decimal(p), None)
            else:
                book[side][Decimal(p)] = q


def _as_client(book: SimBook) -> dict[str, dict[Decimal, str]]:
    return {
        "bids": {Decimal(p): q for p, q in book.bids.values()},
        "asks": {Decimal(p): q for p, q in book.asks.values()},
    }


@pytest.mark.parametrize("recording", [SPOT_BTC, "hftbacktest_binance_usdm_btcusdt_20240808.gz"])
def test_replay_loop_seam_ids_and_book(recording: str) -> None:
    src = ReplaySource("BTCUSDT", recording)
    client = _as_client(src.book)
    last_u, last_t = src.last_update_id, src.last_trade_id
    last_bbo = last_u
    n = len(src._events) + 200  # cross the seam
    for _ in range(n):
        ev = src.emit_next(0)
        if isinstance(ev, Depth):
            assert ev.first_id == last_u + 1 and ev.prev_id == last_u and ev.last_id >= ev.first_id
            assert ev.last_id > last_bbo  # every BBO id lies inside a delta's range, before its end
            last_u = ev.last_id
            _client_apply(client, ev)
        elif isinstance(ev, Trade):
            assert ev.trade_id == last_t + 1
            last_t = ev.trade_id
        elif isinstance(ev, Bbo):
            # bookTicker ids strictly increase: one id never carries two different BBOs
            assert last_u < ev.update_id and ev.update_id > last_bbo
            last_bbo = ev.update_id
        else:
            pytest.fail(f"unexpected event {ev!r}")
    assert src.loops == 1
    assert client == _as_client(src.book)


def test_replay_seam_restores_start_book() -> None:
    src = ReplaySource("ETHUSDT", "hftbacktest_binance_spot_ethusdt_20240808.gz")
    start = _as_client(src.book)
    for _ in range(len(src._events)):
        src.emit_next(0)
    assert _as_client(src.book) != start
    src.emit_next(0)  # the seam delta
    assert src.loops == 1 and _as_client(src.book) == start


def _recorded_okx(inst: str) -> tuple[list[int], list[dict[str, str]]]:
    """OKX's own checksums of ``inst``'s book updates and its ticker pushes, in recorded order."""
    checksums, tickers = [], []
    for rec in recordings.iter_cryptofeed_ws(OKX_RECORDING):
        if rec.kind != "received":
            continue
        msg = json.loads(rec.payload)
        if msg.get("arg", {}).get("instId") != inst or "data" not in msg:
            continue
        if msg["arg"]["channel"] == "books" and msg["action"] == "update":
            checksums.append(msg["data"][0]["checksum"])
        elif msg["arg"]["channel"] == "tickers":
            tickers.append(msg["data"][0])
    return checksums, tickers


@pytest.mark.parametrize("inst", ["BTC-USDT", "UNI-USD-SWAP", "BTC-USD-220527"])
def test_okx_replay_reproduces_okx_checksums_and_loops(inst: str) -> None:
    """First pass: every update's checksum on the simulator's book equals the one OKX sent (same strings, same
    book); later passes: seqIds chain, trade ids continue, the book stays within the recorded depth."""
    recorded, tickers = _recorded_okx(inst)
    src = OkxReplaySource(inst)
    client = _as_client(src.book)
    computed: list[int] = []
    last_seq, last_trade = src.last_update_id, src.last_trade_id
    seen_tickers: list[dict[str, str]] = []
    max_depth = src.book.depth()
    while src.loops < 3:
        ev = src.emit_next(1_700_000_000_000)
        if isinstance(ev, Depth):
            assert ev.prev_id == last_seq and ev.last_id == last_seq + 1
            last_seq = ev.last_id
            _client_apply(client, ev)
            if src.loops == 0:
                computed.append(okx_checksum(*src.book.top(25)))
        elif isinstance(ev, Trade):
            assert ev.trade_id == last_trade + 1
            last_trade = ev.trade_id
        elif isinstance(ev, Ticker):
            assert ev.ts_ms == 1_700_000_000_000  # re-stamped
            if src.loops == 0:
                seen_tickers.append(ev.fields)
        else:
            pytest.fail(f"unexpected event {ev!r}")
        max_depth = max(max_depth, src.book.depth())
    assert computed == recorded and len(recorded) > 80
    assert seen_tickers == [
        {k: v for k, v in t.items() if k not in ("ts", "instType", "instId")} for t in tickers
    ]
    assert client == _as_client(src.book)
    assert max_depth <= 400


def test_synthetic_is_seeded_valid_and_uncrossed() -> None:
    a, b = SyntheticSource("SOLUSDT", seed=7), SyntheticSource("SOLUSDT", seed=7)
    client = _as_client(a.book)
    for _ in range(3000):
        ea, eb = a.emit_next(1), b.emit_next(1)
        assert ea == eb
        if isinstance(ea, Depth):
            _client_apply(client, ea)
            bids, asks = a.book.top(1)
            assert Decimal(bids[0][0]) < Decimal(asks[0][0])
    assert client == _as_client(a.book)


def test_make_source_falls_back_and_validates() -> None:
    # no recording for DOGEUSDT: the seeded synthetic market of that symbol
    doge = make_source("spot", "DOGEUSDT", "replay", seed=3)
    twin = SyntheticSource("DOGEUSDT", seed=3)
    assert [doge.emit_next(1) for _ in range(50)] == [twin.emit_next(1) for _ in range(50)]
    with pytest.raises(ValueError):
        make_source("spot", "BTCUSDT", "live")


def _trade(i: int, ts: int) -> Trade:
    return Trade(i, "1.0", "2.0", False, ts)


def test_trade_history_bounds_and_queries() -> None:
    h = TradeHistory(maxlen=100)
    for i in range(1, 251):  # ids 1..250, ts = 10 * id
        h.append(_trade(i, 10 * i))
    assert (len(h), h.oldest_id, h.newest_id) == (100, 151, 250)

    def ids(ts: list[Trade]) -> list[int]:
        return [t.trade_id for t in ts]

    assert ids(h.select(3, newest=True)) == [248, 249, 250]
    assert ids(h.select(3, min_id=200)) == [200, 201, 202]
    assert ids(h.select(3, min_id=5)) == [151, 152, 153]  # older than kept: what is kept
    assert ids(h.select(3, min_id=300)) == []
    assert ids(h.select(10, start_ms=2000, end_ms=2030)) == [200, 201, 202, 203]  # both inclusive
    assert ids(h.select(2, end_ms=2030, newest=True)) == [202, 203]
    assert ids(h.select(5, min_id=190, max_id=194, newest=True)) == [190, 191, 192, 193, 194]
    assert ids(h.select(2, min_id=190, max_id=194, newest=True)) == [193, 194]
    assert h.select(0) == []


def _capture_lines(name: str, drop_snapshot: bool) -> list[str]:
    lines = [f"{ts} {frame}" for ts, frame in recordings.iter_hftbacktest(name)]
    if drop_snapshot:
        lines = [ln for ln in lines if '"stream"' in ln.split(" ", 1)[1][:12]]
    return lines[:3000]


def test_recording_without_snapshot_starts_empty_at_first_delta(tmp_path: Path) -> None:
    path = tmp_path / "capture.txt"
    path.write_text("\n".join(_capture_lines(SPOT_BTC, drop_snapshot=True)) + "\n")
    first_depth = next(
        json.loads(ln.split(" ", 1)[1])["data"]
        for ln in path.read_text().splitlines()
        if "@depth" in ln.split(" ", 1)[1][:40]
    )
    src = ReplaySource("BTCUSDT", path)
    assert src.last_update_id == first_depth["U"] - 1 and src.book.depth() == 0
    ev = next(e for e in (src.emit_next(0) for _ in range(50)) if isinstance(e, Depth))
    assert ev.first_id == first_depth["U"] and ev.prev_id == first_depth["U"] - 1
    assert len(src.book.bids) == sum(1 for _, q in first_depth["b"] if float(q))


def test_user_capture_gzip_overrides_shipped_recording(tmp_path: Path) -> None:
    lines = _capture_lines("hftbacktest_binance_spot_ethusdt_20240808.gz", drop_snapshot=False)
    path = tmp_path / "eth_as_btc.gz"
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    cfg = SimConfig(replay_files={("spot", "BTCUSDT"): str(path)})
    src = make_source("spot", "BTCUSDT", "replay", replay_files=cfg.replay_files)
    assert src.book.top(1) == ReplaySource(
        "ETHUSDT", "hftbacktest_binance_spot_ethusdt_20240808.gz"
    ).book.top(1)


def test_recordings_without_usable_frames_name_the_file(tmp_path: Path) -> None:
    only_trades = tmp_path / "no_depth.txt"
    only_trades.write_text('1 {"stream":"btcusdt@trade","data":{"p":"1","q":"1","m":true}}\n')
    with pytest.raises(ValueError, match=r"no_depth\.txt"):
        ReplaySource("BTCUSDT", only_trades)
    snapshot_only = tmp_path / "snapshot_only.txt"
    snapshot_only.write_text('1 {"lastUpdateId":5,"bids":[["1","1"]],"asks":[["2","1"]]}\n')
    with pytest.raises(ValueError, match=r"snapshot_only\.txt"):
        ReplaySource("BTCUSDT", snapshot_only)
    garbage = tmp_path / "garbage.txt"
    garbage.write_text("not a capture\n")
    with pytest.raises(ValueError, match=r"garbage\.txt: line 1"):
        ReplaySource("BTCUSDT", garbage)


def test_sim_config_rejects_missing_replay_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.gz"):
        SimConfig(replay_files={("spot", "BTCUSDT"): tmp_path / "nope.gz"})
    with pytest.raises(ValueError, match="kind"):
        SimConfig(replay_files={("okx", "BTC-USDT"): Path(__file__)})
