from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cryptolink import __version__
from cryptolink.cli import app

runner = CliRunner()

GOOD = """
exchanges:
  binance:
    symbols: [BTC/USDT, ETH/USDT]
    api_secret: very-secret-value
  okx:
    market: perpetual
    symbols: [BTC/USDT:USDT]
"""

BAD = """
exchanges:
  binance:
    symbols: [BTC/USDT, BTCUSDT]
    reconnect: {multiplier: 0.5}
  okx:
    market: perpetual
    symbols: [BTC/USDT]
    speed: 3
overflow_policy: whenever
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_help_lists_every_command() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for cmd in ("demo", "run", "simulate", "validate-config", "version"):
        assert cmd in result.output


@pytest.mark.parametrize(
    ("cmd", "options"),
    [
        ("demo", ("--duration", "--out", "--no-faults")),
        ("simulate", ("--exchange", "--host", "--port", "--mode", "--speed", "--faults", "--seed")),
        ("run", ("CONFIG.yaml",)),
    ],
)
def test_command_help(cmd: str, options: tuple[str, ...]) -> None:
    result = runner.invoke(app, [cmd, "--help"])
    assert result.exit_code == 0
    for opt in options:
        assert opt in result.output


def test_version() -> None:
    result = runner.invoke(app, ["version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_validate_good_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CRYPTOLINK__EXCHANGES__BINANCE__API_SECRET", raising=False)
    result = runner.invoke(app, ["validate-config", str(write(tmp_path, GOOD))])
    assert result.exit_code == 0, result.output
    assert "OK:" in result.output
    assert "binance: binance spot 2 symbol(s)" in result.output
    assert "api secret set" in result.output
    assert "very-secret-value" not in result.output


def test_validate_bad_config_lists_every_field_exit_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate-config", str(write(tmp_path, BAD))])
    assert result.exit_code == 2
    out = result.output + (result.stderr or "")
    for path in (
        "exchanges.binance.symbols[1]",
        "exchanges.binance.reconnect.multiplier",
        "exchanges.okx.symbols[0]",
        "exchanges.okx.speed: unknown key",
        "overflow_policy",
    ):
        assert path in out, out
    assert "Traceback" not in out and "5 problems" in out


def test_validate_missing_file_exit_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate-config", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "cannot read configuration file" in result.output + (result.stderr or "")


def test_run_with_bad_config_exits_2_before_starting(tmp_path: Path) -> None:
    result = runner.invoke(app, ["run", str(write(tmp_path, BAD))])
    assert result.exit_code == 2
    assert "exchanges.binance.symbols[1]" in result.output + (result.stderr or "")


def test_simulate_rejects_non_positive_speed() -> None:
    result = runner.invoke(app, ["simulate", "--speed", "0"])
    assert result.exit_code == 2


def test_version_flag_and_help_without_type_noise() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"cryptolink {__version__}"
    for args in (["--help"], ["demo", "--help"], ["run", "--help"]):
        out = runner.invoke(app, args).output
        assert "<bool>" not in out and "--help" in out
    assert "binanceusdm N+1, okx N+2" in runner.invoke(app, ["simulate", "--help"]).output


def test_validate_refuses_an_unwritable_output_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cfg = write(tmp_path, GOOD + f"output: {{enabled: true, dir: '{blocker / 'out'}'}}\n")
    result = runner.invoke(app, ["validate-config", str(cfg)])
    assert result.exit_code == 2
    out = result.output + (result.stderr or "")
    assert "output.dir" in out and "not a directory" in out and "OK:" not in out


def test_validate_says_all_disabled_entries_stream_nothing(tmp_path: Path) -> None:
    cfg = write(tmp_path, "exchanges:\n  binance: {symbols: [BTC/USDT], enabled: false}\n")
    result = runner.invoke(app, ["validate-config", str(cfg)])
    assert result.exit_code == 2
    assert "nothing to stream" in result.output + (result.stderr or "")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--status-addr", "0.0.0.0:8766"], "not loopback: set status.token"),
        (["--status-addr", "127.0.0.1"], "expected HOST:PORT"),
        (["--status-addr", "127.0.0.1:70000"], "expected HOST:PORT"),
    ],
)
def test_a_bad_status_address_is_refused_before_starting(
    tmp_path: Path, args: list[str], message: str
) -> None:
    for command in (["run", str(write(tmp_path, GOOD))], ["demo", "--out", str(tmp_path / "demo")]):
        result = runner.invoke(app, [*command, *args])
        assert result.exit_code == 2, result.output
        assert message in result.output
    assert not (tmp_path / "demo").exists()  # refused before the demo touched anything


def test_status_address_options_are_documented() -> None:
    for cmd in ("run", "demo"):
        text = runner.invoke(app, [cmd, "--help"]).output
        assert "--status-addr" in text and "--no-status" in text
