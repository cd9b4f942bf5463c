"""``cryptolink tail``: the line format, subject checks, and against the real NATS server: live messages on a
wildcard subject, ``--json`` raw payloads, ``--from-start`` and ``--last N`` through an ordered consumer, the CLI's
exit codes (0, also on Ctrl-C; 2 for a bad argument, an unreachable server or no stream) without secrets in its
output, and ``--help`` without the heavy imports."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
from collections.abc import Sequence
from decimal import Decimal

import msgspec
import pytest
from typer.testing import CliRunner, Result

from cryptolink.cli import app
from cryptolink.consumer.decode import Event
from cryptolink.consumer.tail import TailError, check_subject, format_line, tail
from cryptolink.models import GapCause
from cryptolink.sinks.nats_subjects import subject
from tests.consumer.test_decode import book, gap, ticker, trade
from tests.consumer.test_reader import MIXED, NATS_URL, Stream, closed_port, stream

__all__ = ["stream"]  # the fixture, imported for this module's tests

# ------------------------------------------------------------------------------------------------ lines


def test_trade_line() -> None:
    line = format_line("cryptolink.trades.binance.BTC-USDT", trade(42, timestamp_ms=1_723_118_400_123))
    assert line == "2024-08-08T12:00:00.123Z cryptolink.trades.binance.BTC-USDT sell 0.00100 @ 60000.10 id=42"
    backfilled = format_line("s.trades.binance.BTC-USDT", trade(42, backfilled=True))
    assert backfilled.endswith(" id=42 backfilled")


def test_ticker_line_uses_receipt_time_without_exchange_time() -> None:
    t = ticker(9, timestamp_ms=None, receipt_ns=1_723_118_401_500_000_000, last_price=Decimal("60000.05"))
    assert format_line("x.ticker.binance.BTC-USDT", t) == (
        "2024-08-08T12:00:01.500Z x.ticker.binance.BTC-USDT bid 1.50 @ 60000.0 | ask 0.3 @ 60000.1 "
        "last 60000.05 seq=9"
    )
    empty = ticker(None, bid_price=None, bid_size=None)
    assert " bid - @ - | ask 0.3 @ 60000.1" in format_line("x.ticker.binance.BTC-USDT", empty)


def test_book_lines() -> None:
    snap = book(100, {60000: 1, 59999: 2}, {60001: 3}, snapshot=True)
    assert format_line("b", snap).endswith(" b snapshot seq=100 bids=2 asks=1 best 60000/60001")
    assert format_line("b", book(101, {60000: 0}, {}, prev=100)).endswith(
        " b delta seq=101 prev=100 bids=1 asks=0"
    )
    assert " delta seq=5 prev=- " in format_line("b", book(5, {1: 1}, {}))
    assert format_line("b", book(1, snapshot=True)).endswith("best -/-")


def test_gap_line() -> None:
    g = gap(GapCause.MISSING_IDS, recovered=True, backfilled=6, detail="ids skipped")
    assert format_line("g", g) == (
        "2024-08-08T12:00:02.500Z g GAP trades missing_ids 12:00:00.000 -> 12:00:02.500 (2.500 s) ids 100-105 "
        "recovered (6 backfilled) - ids skipped"
    )
    open_gap = gap(GapCause.STOPPED, to_ms=None, first_missing_id=None)
    assert format_line("g", open_gap).endswith(" g GAP trades stopped 12:00:00.000 -> ?")


@pytest.mark.parametrize("bad", ["", "a..b", "a.b c", "a.>.b", "a.b*", "a.>x"])
def test_bad_subjects_are_refused(bad: str) -> None:
    with pytest.raises(TailError, match="bad subject"):
        check_subject(bad)


def test_good_subjects_pass() -> None:
    for good in ("cryptolink.>", "cryptolink.trades.*.BTC-USDT", "acme.md.book.okx.BTC-USDT-SWAP", ">"):
        assert check_subject(good) == good


# ------------------------------------------------------------------------------------------- with NATS


async def run_tail(stream: Stream, subj: str, publish: Sequence[Event] | None = None, **kw: object) -> str:
    """Run :func:`tail` into a string; publish ``publish`` once it is subscribed."""
    out = io.StringIO()
    ready = asyncio.Event()
    task = asyncio.create_task(tail([NATS_URL], subj, out=out, ready=ready, **kw))  # type: ignore[arg-type]
    await asyncio.wait({task, asyncio.create_task(ready.wait())}, return_when=asyncio.FIRST_COMPLETED)
    if publish:
        await stream.publish(publish)
    stats = await task
    text = out.getvalue()
    assert stats.printed == len(text.splitlines())
    return text


@pytest.mark.integration
@pytest.mark.timeout(30)
async def test_live_lines_on_a_wildcard_subject(stream: Stream) -> None:
    text = await run_tail(stream, f"{stream.root}.trades.>", publish=[ticker(1), trade(1), trade(2)], count=2)
    lines = text.splitlines()
    assert lines == [format_line(subject(t, stream.root), t) for t in (trade(1), trade(2))]


@pytest.mark.integration
@pytest.mark.timeout(30)
async def test_live_json_prints_the_raw_payloads(stream: Stream) -> None:
    events: list[Event] = [trade(1), book(5, {1: 1}, {2: 2}, snapshot=True)]
    text = await run_tail(stream, f"{stream.root}.>", publish=events, count=2, as_json=True)
    assert text.splitlines() == [msgspec.json.encode(e).decode() for e in events]


@pytest.mark.integration
@pytest.mark.timeout(30)
async def test_from_start_reads_the_stored_messages_including_malformed(stream: Stream) -> None:
    await stream.publish(MIXED)
    await stream.publish_raw(f"{stream.root}.book.okx.BTC-USDT-SWAP", b"{}")
    out = io.StringIO()
    stats = await tail([NATS_URL], f"{stream.root}.book.*.*", out=out, from_start=True, count=3)
    lines = out.getvalue().splitlines()
    assert lines[:2] == [format_line(subject(e, stream.root), e) for e in (MIXED[0], MIXED[3])]
    assert lines[2].startswith(f"{stream.root}.book.okx.BTC-USDT-SWAP MALFORMED: payload is not a book event")
    assert (stats.printed, stats.malformed, stats.dropped) == (3, 1, 0)


@pytest.mark.integration
@pytest.mark.timeout(30)
async def test_last_n_starts_with_the_last_matching_messages(stream: Stream) -> None:
    events = [e for i in range(1, 8) for e in (trade(i), ticker(i))]  # trades interleaved with tickers
    await stream.publish(events)
    out = io.StringIO()
    await tail([NATS_URL], f"{stream.root}.trades.>", out=out, last=3, count=3)
    assert out.getvalue().splitlines() == [
        format_line(subject(trade(i), stream.root), trade(i)) for i in (5, 6, 7)
    ]
    few = io.StringIO()  # fewer stored than asked: all of them
    await tail([NATS_URL], f"{stream.root}.ticker.>", out=few, last=50, count=7, as_json=True)
    assert [json.loads(x)["sequence"] for x in few.getvalue().splitlines()] == list(range(1, 8))


@pytest.mark.integration
@pytest.mark.timeout(30)
async def test_from_start_without_a_stream_is_an_error() -> None:
    with pytest.raises(TailError, match="no JetStream stream holds 'nostream-"):
        await tail([NATS_URL], "nostream-e2b9.>", out=io.StringIO(), from_start=True, count=1)


# ------------------------------------------------------------------------------------------------- CLI


async def cli(*args: str, env: dict[str, str | None] | None = None) -> Result:
    """``cryptolink tail ARGS`` in a worker thread (it runs its own event loop)."""

    def invoke() -> Result:
        return CliRunner().invoke(app, ["tail", *args], env={"CRYPTOLINK__NATS__TOKEN": None, **(env or {})})

    return await asyncio.to_thread(invoke)


@pytest.mark.integration
@pytest.mark.timeout(30)
async def test_cli_prints_stored_messages_and_exits_0(stream: Stream) -> None:
    await stream.publish(MIXED)
    result = await cli(f"{stream.root}.>", "--server", NATS_URL, "--from-start", "--count", "6")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [format_line(subject(e, stream.root), e) for e in MIXED]
    raw = await cli(f"{stream.root}.trades.>", "--last", "1", "--count", "1", "--json")
    assert raw.exit_code == 0 and json.loads(raw.stdout) == json.loads(msgspec.json.encode(MIXED[4]))


@pytest.mark.integration
@pytest.mark.timeout(30)
async def test_cli_unreachable_server_exit_2_without_secrets() -> None:
    url = f"nats://ops:pw-8c1f@127.0.0.1:{closed_port()}"
    result = await cli(
        "cryptolink.>", "--server", url, "--connect-timeout", "1", env={"CRYPTOLINK__NATS__TOKEN": "tk-55e1"}
    )
    assert result.exit_code == 2
    assert result.output.startswith("error: no NATS server answered at nats://ops:***@127.0.0.1:")
    assert len(result.output.strip().splitlines()) == 1
    assert "pw-8c1f" not in result.output and "tk-55e1" not in result.output


@pytest.mark.integration
@pytest.mark.timeout(30)
async def test_cli_no_stream_exit_2() -> None:
    result = await cli("nostream-71c0.>", "--from-start", "--count", "1")
    assert result.exit_code == 2
    assert result.output.strip() == "error: no JetStream stream holds 'nostream-71c0.>'"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["a..b"], "error: bad subject 'a..b': empty token"),
        (
            ["x.>", "--server", "http://127.0.0.1:4222"],
            "error: --server http://127.0.0.1:4222: expected nats://",
        ),
        (["x.>", "--server", "nats://u:secret-77@"], "error: --server nats://u:***@: expected nats://"),
        (["x.>", "--from-start", "--last", "3"], "error: use --from-start or --last, not both"),
        (["x.>", "--creds", "/nonexistent/a.creds"], "error: --creds /nonexistent/a.creds: no such file"),
    ],
)
def test_cli_bad_arguments_exit_2(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["tail", *args])
    assert result.exit_code == 2
    assert result.output.startswith(message)
    assert "secret-77" not in result.output


def test_cli_count_must_be_positive() -> None:
    result = CliRunner().invoke(app, ["tail", "x.>", "--count", "0"])
    assert result.exit_code == 2 and "--count" in result.output


def test_cli_ctrl_c_exits_0_quietly(monkeypatch: pytest.MonkeyPatch) -> None:
    async def interrupted(*args: object, **kw: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("cryptolink.consumer.tail.tail", interrupted)
    result = CliRunner().invoke(app, ["tail", "x.>"])
    assert result.exit_code == 0
    assert result.output == ""


def test_cli_help_is_light() -> None:
    code = (
        "import json, sys\n"
        "from typer.testing import CliRunner\n"
        "from cryptolink.cli import app\n"
        "r = CliRunner().invoke(app, ['tail', '--help'])\n"
        "heavy = sorted(m for m in ('nats', 'cryptolink.consumer') if m in sys.modules)\n"
        "print(json.dumps({'code': r.exit_code, 'heavy': heavy, 'out': r.output}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    answer = json.loads(done.stdout)
    assert answer["code"] == 0
    assert answer["heavy"] == []
    assert "--from-start" in answer["out"] and "--count" in answer["out"]
