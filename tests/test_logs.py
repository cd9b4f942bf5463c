"""cryptolink.logs: JSON and console rendering of every log record, secret redaction, connection events as
structured records (unit level, and from a real run against the simulator)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import structlog

from cryptolink.config import CryptolinkConfig
from cryptolink.engine.events import ConnectionEvent, ConnectionEventType, Severity
from cryptolink.logs import (
    EVENT_FIELDS,
    EVENTS_LOGGER,
    REDACTED,
    LogFormat,
    config_secrets,
    configure_logging,
    log_connection_event,
    redact_query_tokens,
)
from cryptolink.manager import ExchangeManager
from cryptolink.service import serve
from cryptolink.simulator import Fault, Simulator

pytestmark = [pytest.mark.timeout(60)]

SECRET = "k3y-Value/with+chars"


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state: put it back after each test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    quiet = logging.getLogger("aiohttp.access")
    quiet_level = quiet.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    quiet.setLevel(quiet_level)
    logging.captureWarnings(False)
    structlog.reset_defaults()


def json_lines(buf: io.StringIO) -> list[dict[str, Any]]:
    lines = [line for line in buf.getvalue().splitlines() if line]
    return [json.loads(line) for line in lines]


def event(
    type_: ConnectionEventType,
    severity: Severity = Severity.INFO,
    description: str = "",
    **kw: Any,
) -> ConnectionEvent:
    return ConnectionEvent(
        type=type_,
        severity=severity,
        time_ns=1,
        monotonic_s=1.0,
        connection_id="okx-ws-1",
        exchange="okx",
        description=description,
        feed="okx-perp",
        **kw,
    )


# ---------------------------------------------------------------------------------------------- rendering


def test_json_mode_renders_stdlib_percent_messages_as_one_object_per_line() -> None:
    buf = io.StringIO()
    configure_logging("json", "INFO", stream=buf)
    logging.getLogger("cryptolink.feed").info("%s: book %s resyncing (%d)", "okx", "BTC/USDT", 3)
    logging.getLogger("cryptolink.feed").debug("below the level: %s", "dropped")
    structlog.get_logger("cryptolink.native").warning("native", queue="trades", depth=5)
    first, second = json_lines(buf)
    assert first["event"] == "okx: book BTC/USDT resyncing (3)"
    assert first["level"] == "info" and first["logger"] == "cryptolink.feed"
    stamp = datetime.fromisoformat(first["timestamp"])
    assert stamp.utcoffset() == UTC.utcoffset(None)  # UTC, ISO 8601
    assert list(first)[:4] == ["timestamp", "level", "logger", "event"]
    assert second["event"] == "native" and second["level"] == "warning"
    assert second["queue"] == "trades" and second["depth"] == 5


def test_json_mode_puts_the_traceback_inside_the_object() -> None:
    buf = io.StringIO()
    configure_logging("json", "INFO", stream=buf)
    try:
        raise RuntimeError("socket exploded")
    except RuntimeError:
        logging.getLogger("cryptolink.engine").exception("session %d failed", 2)
    (line,) = json_lines(buf)  # the traceback did not add lines of its own
    assert line["event"] == "session 2 failed" and line["level"] == "error"
    assert "Traceback (most recent call last)" in line["exception"]
    assert "RuntimeError: socket exploded" in line["exception"]


def test_console_mode_is_readable_not_json() -> None:
    buf = io.StringIO()
    configure_logging("console", "INFO", stream=buf)
    logging.getLogger("cryptolink.demo").warning("feed %s is %s", "okx", "down")
    text = buf.getvalue()
    assert "feed okx is down" in text and "warning" in text and "cryptolink.demo" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text.splitlines()[0])


def test_configuring_twice_replaces_the_handler_and_keeps_aiohttp_access_quiet() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging("json", "INFO", stream=first)
    configure_logging("json", "DEBUG", stream=second)
    logging.getLogger("cryptolink").info("once")
    logging.getLogger("aiohttp.access").info("GET / 200")  # below WARNING: not logged
    assert first.getvalue() == ""
    assert [line["event"] for line in json_lines(second)] == ["once"]
    assert logging.getLogger("aiohttp.access").getEffectiveLevel() == logging.WARNING


def test_without_a_stream_it_follows_sys_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    """A CLI test runner swaps sys.stderr and closes its own afterwards: the handler must not keep writing
    (or flushing) to the closed one."""
    first, second = (
        io.TextIOWrapper(io.BytesIO(), encoding="utf-8"),
        io.StringIO(),
    )  # flush() when closed raises
    monkeypatch.setattr("sys.stderr", first)
    configure_logging("json", "INFO")
    logging.getLogger("cryptolink").info("to the first")
    first.close()
    monkeypatch.setattr("sys.stderr", second)
    logging.getLogger("cryptolink").info("to the second")
    assert [line["event"] for line in json_lines(second)] == ["to the second"]


def test_bad_mode_or_level_is_refused() -> None:
    with pytest.raises(ValueError, match="log format"):
        configure_logging("xml", "INFO")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="log level"):
        configure_logging("json", "LOUD")


# ---------------------------------------------------------------------------------------------- redaction


def test_secrets_are_redacted_in_message_fields_and_traceback() -> None:
    buf = io.StringIO()
    configure_logging("json", "INFO", secrets=[SECRET, ""], stream=buf)
    log = logging.getLogger("cryptolink.rest")
    log.info("signing with %s", SECRET)
    log.info("header", extra={"authorization": f"Bearer {SECRET}", "nested": {"k": [SECRET]}})
    structlog.get_logger("cryptolink.native").info("kw", api_key=SECRET, url=f"wss://x/?k={SECRET}")
    try:
        raise PermissionError(f"rejected key {SECRET}")
    except PermissionError:
        log.exception("login failed")
    from urllib.parse import quote

    log.info("url %s", f"redis://:{quote(SECRET, safe='')}@host/0")  # percent-encoded form
    text = buf.getvalue()
    assert SECRET not in text and quote(SECRET, safe="") not in text
    message, fields, native, failure, url = json_lines(buf)
    assert message["event"] == f"signing with {REDACTED}"
    assert fields["authorization"] == f"Bearer {REDACTED}" and fields["nested"] == {"k": [REDACTED]}
    assert native["api_key"] == REDACTED and native["url"] == f"wss://x/?k={REDACTED}"
    assert f"PermissionError: rejected key {REDACTED}" in failure["exception"]
    assert url["event"] == f"url redis://:{REDACTED}@host/0"


def test_secrets_are_redacted_in_console_mode_too() -> None:
    buf = io.StringIO()
    configure_logging("console", "INFO", secrets=[SECRET], stream=buf)
    logging.getLogger("x").info("token %s", SECRET, extra={"token": SECRET})
    assert SECRET not in buf.getvalue() and REDACTED in buf.getvalue()


ODD_SECRET = "Tk ab!c'd(e)*\"ö~/+"
"""A secret with every character the encodings treat differently: space, ``!'()*~`` (kept by
``encodeURIComponent``), a double quote, a non-ASCII letter, ``/`` and ``+``."""


def odd_secret_encodings() -> dict[str, str]:
    from urllib.parse import quote, quote_plus

    def lower_hex(text: str) -> str:
        return re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), text)

    browser = quote(ODD_SECRET, safe="-_.!~*'()")  # what encodeURIComponent gives
    return {
        "raw": ODD_SECRET,
        "encodeURIComponent": browser,
        "encodeURIComponent, lowercase hex": lower_hex(browser),
        "quote(safe='')": quote(ODD_SECRET, safe=""),
        "quote(safe=''), lowercase hex": lower_hex(quote(ODD_SECRET, safe="")),
        "quote_plus": quote_plus(ODD_SECRET),
        "repr": repr(ODD_SECRET)[1:-1],
        "bytes repr": repr(ODD_SECRET.encode())[2:-1],
        "json": json.dumps(ODD_SECRET)[1:-1],
        "json, not ascii": json.dumps(ODD_SECRET, ensure_ascii=False)[1:-1],
    }


@pytest.mark.parametrize("mode", ["json", "console"])
def test_every_encoding_of_a_secret_is_redacted(mode: LogFormat) -> None:
    forms = odd_secret_encodings()
    assert len(set(forms.values())) == len(forms)  # each encoding really differs
    buf = io.StringIO()
    configure_logging(mode, "INFO", secrets=[ODD_SECRET], stream=buf)
    log = logging.getLogger("cryptolink.test")
    for name, form in forms.items():
        log.info("%s: [%s]", name, form)
    log.info("as a field", extra={"secret": ODD_SECRET, "seen": [ODD_SECRET]})
    log.info("as a repr: %r", {"secret": ODD_SECRET})
    text = buf.getvalue()
    for name, form in forms.items():
        assert form not in text, (name, form)
    lines = text.splitlines()
    assert len(lines) == len(forms) + 2
    for name, line in zip(forms, lines, strict=False):
        assert f"{name}: [{REDACTED}]" in line, line


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('"WebSocket /ws/status?token=Tk%20ab!c" [accepted]', '"WebSocket /ws/status?token=***" [accepted]'),
        ("GET /healthz?x=1&token=Tk+ab%21c&y=2 HTTP/1.1", "GET /healthz?x=1&token=***&y=2 HTTP/1.1"),
        ("GET /?TOKEN=abc#top", "GET /?TOKEN=***#top"),
        ("next=%2Fws%3Ftoken%3Dabc%26x%3D1", "next=%2Fws%3Ftoken%3D***%26x%3D1"),
        ('{"event": "GET /?token=a\\"b"}', '{"event": "GET /?token=***\\"b"}'),
        ("access_token=zz tokens=5 token= end", "access_token=*** tokens=5 token= end"),
    ],
)
def test_query_tokens_are_redacted_whatever_their_encoding(line: str, expected: str) -> None:
    assert redact_query_tokens(line) == expected


def test_a_token_in_a_query_is_redacted_without_any_configured_secret() -> None:
    buf = io.StringIO()
    configure_logging("json", "INFO", stream=buf)  # no secrets: a wrong token is hidden too
    logging.getLogger("uvicorn.error").info(
        '%s - "WebSocket %s" [accepted]', "127.0.0.1:5", "/ws?token=wr%20ong!"
    )
    (record,) = json_lines(buf)
    assert record["event"] == '127.0.0.1:5 - "WebSocket /ws?token=***" [accepted]'


def test_config_secrets_lists_every_secret_of_a_config() -> None:
    cfg = CryptolinkConfig.from_dict(
        {
            "exchanges": {
                "okx": {"symbols": ["BTC/USDT"], "api_key": "ak-1", "api_secret": "as-1"},
                "binance": {"symbols": ["BTC/USDT"], "api_key": "ak-2"},
            },
            "status": {
                "token": "tok-1-long-enough-4c1e",
                "redis_url": "redis://user:p%40ss@127.0.0.1:6379/0?password=q2",
            },
            "rest": {
                "members": {
                    "m": {"exchange": "okx", "api_key": "rk-1", "api_secret": "rs-1", "password": "rp-1"}
                },
                "limits": {"redis_url": "redis://:rl-pw@127.0.0.1:6379/0"},
            },
            "nats": {
                "servers": ["nats://127.0.0.1:4222", "nats://nu:n-url-pw@127.0.0.1:4223"],
                "token": "n-tok",
            },
        },
        env={},
    )
    assert set(config_secrets(cfg)) == {
        "ak-1",
        "as-1",
        "ak-2",
        "tok-1-long-enough-4c1e",
        "p%40ss",
        "p@ss",
        "q2",
        "rk-1",
        "rs-1",
        "rp-1",
        "rl-pw",
        "n-url-pw",
        "n-tok",
    }
    plain = CryptolinkConfig.from_dict({"exchanges": {"okx": {"symbols": ["BTC/USDT"]}}}, env={})
    assert config_secrets(plain) == []


# ----------------------------------------------------------------------------------------- connection events


def test_state_change_becomes_a_record_with_state_and_cause() -> None:
    buf = io.StringIO()
    configure_logging("json", "INFO", stream=buf)
    log_connection_event(
        event(
            ConnectionEventType.STATE_CHANGED,
            Severity.WARNING,
            "connected -> reconnecting: session ended: closed 1006: keepalive: no pong",
        )
    )
    (line,) = json_lines(buf)
    assert line["logger"] == EVENTS_LOGGER and line["level"] == "warning"
    assert set(EVENT_FIELDS) <= set(line)
    assert line["exchange"] == "okx" and line["feed"] == "okx-perp" and line["connection"] == "okx-ws-1"
    assert line["event_type"] == "state_changed" and line["severity"] == "warning"
    assert line["state"] == "reconnecting" and line["from_state"] == "connected"
    assert line["cause"] == "session ended: closed 1006: keepalive: no pong"
    assert line["event"].startswith("okx-ws-1 state_changed: connected -> reconnecting")


@pytest.mark.parametrize(
    ("severity", "level"),
    [
        (Severity.INFO, "info"),
        (Severity.WARNING, "warning"),
        (Severity.ERROR, "error"),
        (Severity.CRITICAL, "critical"),
    ],
)
def test_level_follows_the_severity(severity: Severity, level: str) -> None:
    buf = io.StringIO()
    configure_logging("json", "INFO", stream=buf)
    log_connection_event(event(ConnectionEventType.ERROR, severity, "request rejected", error="code 60012"))
    (line,) = json_lines(buf)
    assert line["level"] == level and line["cause"] == "code 60012" and line["state"] is None


def test_other_events_carry_their_details() -> None:
    buf = io.StringIO()
    configure_logging("json", "INFO", stream=buf)
    log_connection_event(
        event(ConnectionEventType.RECONNECT_ATTEMPT, description="retry in 2.0 s", attempt=3)
    )
    log_connection_event(
        event(
            ConnectionEventType.STALE_SUBSCRIPTION,
            Severity.WARNING,
            "book BTC/USDT silent for 12.0 s",
            stream="book",
            symbol="BTC/USDT",
        )
    )
    log_connection_event(event(ConnectionEventType.RECONNECT_SUCCESS, latency_ms=812.5))
    attempt, stale, success = json_lines(buf)
    assert attempt["attempt"] == 3 and attempt["cause"] is None
    assert stale["stream"] == "book" and stale["symbol"] == "BTC/USDT"
    assert stale["cause"] == "book BTC/USDT silent for 12.0 s"
    assert success["latency_ms"] == 812.5 and success["event_type"] == "reconnect_success"


def test_data_received_is_debug() -> None:
    buf = io.StringIO()
    configure_logging("json", "INFO", stream=buf)
    sampled = event(ConnectionEventType.DATA_RECEIVED, description="120 frames in the last 10 s")
    log_connection_event(sampled)
    assert buf.getvalue() == ""
    configure_logging("json", "DEBUG", stream=buf)
    log_connection_event(sampled)
    (line,) = json_lines(buf)
    assert line["level"] == "debug" and line["event_type"] == "data_received"


@pytest.mark.integration
async def test_a_run_logs_its_connection_events_as_records() -> None:
    """serve() registers the event logger: a real disconnect shows up as a state_changed record with the
    target state and the cause."""
    buf = io.StringIO()
    configure_logging("json", "INFO", stream=buf)
    async with Simulator(exchanges=["okx"], speed=2.0) as sim:
        ep = sim.endpoints()["okx"]
        cfg = CryptolinkConfig.from_dict(
            {
                "exchanges": {
                    "okx": {"symbols": ["BTC/USDT"], "ws_url": ep["ws_url"], "rest_url": ep["rest_url"]}
                },
                "status": {"enabled": False},
            },
            env={},
        )
        manager = ExchangeManager(cfg)
        loop = asyncio.get_running_loop()
        connected: asyncio.Future[None] = loop.create_future()
        dropped: asyncio.Future[None] = loop.create_future()

        def on_event(ev: ConnectionEvent) -> None:
            if ev.type is ConnectionEventType.STATE_CHANGED:
                if "-> connected" in ev.description and not connected.done():
                    connected.set_result(None)
                elif "-> reconnecting" in ev.description and connected.done() and not dropped.done():
                    dropped.set_result(None)

        manager.add_event_listener(on_event)
        stop = asyncio.Event()
        task = asyncio.create_task(serve(cfg, stop, manager=manager))
        await asyncio.wait_for(connected, 20)
        sim.inject(Fault("close", code=4001), exchange="okx")
        await asyncio.wait_for(dropped, 20)
        stop.set()
        await asyncio.wait_for(task, 20)
    records = [line for line in json_lines(buf) if line["logger"] == EVENTS_LOGGER]
    changes = [r for r in records if r["event_type"] == "state_changed"]
    assert any(r["state"] == "connected" and r["exchange"] == "okx" for r in changes)
    down = [r for r in changes if r["state"] == "reconnecting" and r["from_state"] == "connected"]
    assert down and down[0]["connection"] == "okx-ws-1" and "code 4001" in down[0]["cause"]
    assert any(r["state"] == "stopped" for r in changes)  # the stop's events are logged too
