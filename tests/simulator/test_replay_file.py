"""``cryptolink simulate --replay FILE``: which file kinds are served, and a clear refusal otherwise."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cryptolink import recordings
from cryptolink.cli import app
from cryptolink.simulator import Simulator
from cryptolink.simulator.capture import CaptureError
from cryptolink.simulator.runner import replay_config, sniff_hftbacktest

pytestmark = pytest.mark.timeout(60)


def _head(name: str, lines: int, out: Path) -> Path:
    """The first ``lines`` lines of a shipped hftbacktest recording, gzipped into ``out``."""
    text = recordings.read_bytes(name).decode()
    out.write_bytes(gzip.compress("\n".join(text.splitlines()[:lines]).encode()))
    return out


@pytest.mark.parametrize(
    ("name", "kind", "symbol", "exchange"),
    [
        ("hftbacktest_binance_spot_btcusdt_20240808.gz", "spot", "BTCUSDT", "binance"),
        ("hftbacktest_binance_usdm_ethusdt_20240808.gz", "usdm", "ETHUSDT", "binanceusdm"),
        ("hftbacktest_binance_coinm_btcusd_perp_20240808.gz", "coinm", "BTCUSD_PERP", "binancecoinm"),
    ],
)
def test_an_hftbacktest_recording_is_recognised(
    tmp_path: Path, name: str, kind: str, symbol: str, exchange: str
) -> None:
    path = _head(name, 3000, tmp_path / "mine.gz")
    assert sniff_hftbacktest(path) == (kind, symbol)
    chosen, config = replay_config(path, None)
    assert chosen == [exchange]
    assert config.symbols == {exchange: (symbol,)} and config.replay_files == {(kind, symbol): path}


async def test_a_recognised_recording_is_what_the_simulator_serves(tmp_path: Path) -> None:
    path = _head("hftbacktest_binance_spot_btcusdt_20240808.gz", 3000, tmp_path / "mine.gz")
    chosen, config = replay_config(path, None)
    async with Simulator(exchanges=chosen, config=config) as sim:
        assert sim.binance.symbols == ("BTCUSDT",)
        src = sim.binance.source("BTCUSDT")
        assert src is not None and type(src).__name__ == "ReplaySource"


def test_a_file_that_is_neither_is_refused_with_exit_code_2(tmp_path: Path) -> None:
    junk = tmp_path / "junk.txt"
    junk.write_text("hello\nworld\n")
    with pytest.raises(CaptureError, match="neither a cryptolink capture nor an hftbacktest recording"):
        replay_config(junk, None)
    result = CliRunner().invoke(app, ["simulate", "--replay", str(junk)])
    assert result.exit_code == 2 and "neither a cryptolink capture" in result.output
    missing = CliRunner().invoke(app, ["simulate", "--replay", str(tmp_path / "nope.gz")])
    assert missing.exit_code == 2 and "nope.gz" in missing.output


def test_a_capture_with_nothing_to_serve_or_without_the_asked_exchange_is_refused(tmp_path: Path) -> None:
    from tests.simulator.test_capture import snap, write, ws
    from tests.simulator.test_capture import trade as binance_trade

    empty = write(tmp_path / "empty.gz", [])  # e.g. a `record` run refused at start: a header only
    with pytest.raises(CaptureError, match="holds no market data of a simulated exchange"):
        replay_config(empty, None)
    result = CliRunner().invoke(app, ["simulate", "--replay", str(empty)])
    assert result.exit_code == 2  # never a simulator that serves nothing and prints nothing
    binance_only = write(
        tmp_path / "b.gz",
        [
            snap(1.0, "binance", "BTCUSDT", 5, [["1", "1"]], [["2", "1"]]),
            ws(1.1, "binance", binance_trade("BTCUSDT", 1, "1")),
        ],
    )
    assert replay_config(binance_only, None)[0] == ["binance"]
    with pytest.raises(CaptureError, match="okx"):
        replay_config(binance_only, ["okx"])  # would have served OKX's shipped recording instead


def test_replay_needs_replay_mode(tmp_path: Path) -> None:
    path = _head("hftbacktest_binance_spot_btcusdt_20240808.gz", 200, tmp_path / "mine.gz")
    result = CliRunner().invoke(app, ["simulate", "--replay", str(path), "--mode", "synthetic"])
    assert result.exit_code == 2 and "needs --mode replay" in result.output
