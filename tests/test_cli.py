from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cryptolink import __version__
from cryptolink.cli import app
from cryptolink.config import CryptolinkConfig

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
        (["--status-addr", "127.attacker.example:8766"], "not loopback: set status.token"),
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


def test_status_addr_sets_the_address_and_turns_the_api_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cryptolink.cli
    import cryptolink.service

    seen: list[CryptolinkConfig] = []

    def fake_run_config(
        cfg: CryptolinkConfig, **_: object
    ) -> int:  # the run itself is tested in tests/test_service.py
        seen.append(cfg)
        return 0

    monkeypatch.setattr(cryptolink.service, "run_config", fake_run_config)
    monkeypatch.setattr(cryptolink.cli, "_setup_logging", lambda *a, **k: None)  # the process's logging stays
    off = write(tmp_path, GOOD + "status: {enabled: false}\n")
    result = runner.invoke(app, ["run", str(off), "--status-addr", "127.0.0.2:9123"])
    assert result.exit_code == 0, result.output
    status = seen[-1].status
    assert (status.enabled, status.host, status.port) == (True, "127.0.0.2", 9123)
    result = runner.invoke(app, ["run", str(off)])
    assert result.exit_code == 0 and seen[-1].status.enabled is False  # the config's word without the option
    both = runner.invoke(app, ["run", str(off), "--status-addr", "127.0.0.1:9123", "--no-status"])
    assert both.exit_code == 2 and "contradict" in both.output


@pytest.mark.parametrize(
    "status, message",
    [
        ("{token: ''}", "must not be empty or only whitespace"),
        ("{token: '   '}", "must not be empty or only whitespace"),
        ("{token: 'short-s3cret'}", "at least 16 characters"),
        ("{token: ' padded-token-0123456 '}", "must not start or end with whitespace"),
        ("{host: 0.0.0.0, token: ''}", "must not be empty or only whitespace"),
        ("{redis_url: 'redis://:hunter2@127.0.0.1:6379/0?socket_timeout=abc'}", "'socket_timeout'"),
        ("{redis_url: 'redis://:hunter2@127.0.0.1:6379/0?no_such_option=hunter3'}", "'no_such_option'"),
        (
            "{redis_url: 'redis://127.0.0.1:6379/0', snapshot_interval_s: 5, redis_ttl_s: 10}",
            "below 2 * snapshot_interval_s + 2 = 12 s",
        ),
    ],
)
def test_status_settings_that_would_fail_at_start_or_open_the_api_are_refused(
    tmp_path: Path, status: str, message: str
) -> None:
    result = runner.invoke(app, ["validate-config", str(write(tmp_path, GOOD + f"status: {status}\n"))])
    out = result.output + (result.stderr or "")
    assert result.exit_code == 2, out
    assert message in out and "Traceback" not in out
    for secret in ("short-s3cret", "padded-token", "hunter2", "hunter3"):
        assert secret not in out  # the message says why, never the value


def test_a_long_enough_token_and_a_usable_redis_url_pass(tmp_path: Path) -> None:
    cfg = write(
        tmp_path,
        GOOD
        + "status: {token: 'a-long-enough-token-1234', redis_url: 'redis://127.0.0.1:6379/0?socket_timeout=3'}\n",
    )
    result = runner.invoke(app, ["validate-config", str(cfg)])
    assert result.exit_code == 0, result.output + (result.stderr or "")


def test_the_demo_takes_its_status_token_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The demo has no configuration file: CRYPTOLINK__STATUS__TOKEN still lets it bind off loopback."""
    import cryptolink.demo

    seen: list[Any] = []

    def fake_run_demo(
        duration: float | None, out: Path, faults: bool, status: Any = None, nats: Any = None
    ) -> int:
        seen.append(status)
        return 0

    monkeypatch.setattr(cryptolink.demo, "run_demo", fake_run_demo)
    monkeypatch.setattr("cryptolink.cli._setup_logging", lambda *a, **k: None)
    args = ["demo", "--out", str(tmp_path / "d"), "--status-addr", "0.0.0.0:0"]
    refused = runner.invoke(app, args, env={"CRYPTOLINK__STATUS__TOKEN": ""})
    assert refused.exit_code == 2 and "not loopback" in refused.output and not seen
    short = runner.invoke(app, args, env={"CRYPTOLINK__STATUS__TOKEN": "short"})
    assert (
        short.exit_code == 2
        and "CRYPTOLINK__STATUS__TOKEN" in short.output
        and "short" not in short.output.split("(")[0]
    )
    ok = runner.invoke(app, args, env={"CRYPTOLINK__STATUS__TOKEN": "a-long-enough-demo-token"})
    assert ok.exit_code == 0, ok.output
    assert seen[0].host == "0.0.0.0" and seen[0].token.get_secret_value() == "a-long-enough-demo-token"


def test_a_bad_nats_url_of_the_demo_is_refused_before_starting(tmp_path: Path) -> None:
    result = runner.invoke(app, ["demo", "--out", str(tmp_path / "demo"), "--nats", "http://127.0.0.1:4222"])
    assert result.exit_code == 2, result.output
    assert "--nats: Value error, must start with nats://" in result.output
    assert not (tmp_path / "demo").exists()
