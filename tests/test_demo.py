"""The demo end to end (short): simulator replaying recordings, faults, fresh JSONL output per run, gap events
and the final report (also written to report.txt); refusals (a foreign directory, a status address in use)
that leave the directory as it was."""

from __future__ import annotations

import contextlib
import io
import socket
from pathlib import Path
from uuid import uuid4

import nats as nats_py
import pytest
from rich.console import Console

from cryptolink.config import NatsConfig, StatusConfig
from cryptolink.demo import (
    DEMO_ENTRIES,
    DEMO_EXCHANGES,
    DEMO_FAULTS,
    MARKER,
    DemoOutputError,
    check_out_dir,
    demo_main,
    prepare_out_dir,
)
from cryptolink.exchanges import SUPPORTED, check_symbol
from cryptolink.models import BookUpdate, Gap, Ticker, Trade
from cryptolink.simulator import registry as sim_registry
from cryptolink.sinks.jsonl import read_jsonl

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def trade_ids(path: Path) -> dict[str, list[int]]:
    by_symbol: dict[str, list[int]] = {}
    for t in read_jsonl(path):
        assert isinstance(t, Trade) and t.sequence is not None
        by_symbol.setdefault(t.symbol, []).append(t.sequence)
    return by_symbol


async def test_demo_writes_fresh_normalized_jsonl_and_report_under_faults(tmp_path: Path) -> None:
    console = Console(file=io.StringIO(), width=120)
    code = await demo_main(9.0, tmp_path, True, fault_every_s=1.0, quiet_end_s=3.0, console=console)
    assert code == 0
    report = (tmp_path / "report.txt").read_text()
    assert "cryptolink connection report" in report and report in console.file.getvalue()  # type: ignore[attr-defined]
    assert max(len(line) for line in report.splitlines()) <= 120
    injected = int(report.split("faults injected: ", 1)[1].split(";", 1)[0])
    assert injected >= 1 and report.count("  injected ") == injected
    for feed, channel, kind in (
        ("binance", "trades", Trade),
        ("binance", "book", BookUpdate),
        ("binance", "ticker", Ticker),
        ("okx", "trades", Trade),
        ("okx", "book", BookUpdate),
        ("okx-swap", "book", BookUpdate),
    ):
        events = list(read_jsonl(tmp_path / feed / f"{channel}.jsonl"))
        assert events, (feed, channel)
        assert all(isinstance(e, kind) and e.feed == feed for e in events)
    swap = next(iter(read_jsonl(tmp_path / "okx-swap" / "book.jsonl")))
    assert isinstance(swap, BookUpdate) and swap.amount_unit == "contracts" and swap.contract_size is not None
    gaps_file = tmp_path / "binance" / "gaps.jsonl"
    if gaps_file.exists():
        assert all(isinstance(g, Gap) for g in read_jsonl(gaps_file))
    # per symbol, trades are never delivered twice, even across the drop/notice/lifetime faults
    first = trade_ids(tmp_path / "binance" / "trades.jsonl")
    for symbol, seqs in first.items():
        assert seqs == sorted(set(seqs)), symbol
    # a second run replaces the first one's output: one run's trades, not two runs appended
    code = await demo_main(3.0, tmp_path, False, console=Console(file=io.StringIO(), width=120))
    assert code == 0
    second = trade_ids(tmp_path / "binance" / "trades.jsonl")
    for symbol, seqs in second.items():
        assert seqs == sorted(set(seqs)), symbol
    assert sum(map(len, second.values())) < sum(map(len, first.values()))
    assert "faults injected: 0" in (tmp_path / "report.txt").read_text()


def test_a_foreign_directory_is_never_emptied(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("mine")
    with pytest.raises(DemoOutputError, match="not empty and was not written by the demo"):
        prepare_out_dir(tmp_path)
    assert (tmp_path / "precious.txt").read_text() == "mine"
    fresh = tmp_path / "new" / "out"
    prepare_out_dir(fresh)
    assert (fresh / MARKER).is_file()
    (fresh / "binance").mkdir()
    (fresh / "binance" / "trades.jsonl").write_text("{}\n")
    prepare_out_dir(fresh)
    assert sorted(p.name for p in fresh.iterdir()) == [MARKER]


def test_fault_cycle_and_entries_derive_from_the_registries() -> None:
    kinds = {f.kind for f in DEMO_FAULTS}
    assert {"drop", "stall", "gap", "notice", "lifetime", "outage", "corrupt", "badchecksum"} <= kinds
    assert {e.exchange for e in DEMO_ENTRIES} == {
        "binance",
        "binanceusdm",
        "binancecoinm",
        "okx",
        "bybit",
        "bitget",
        "gate",
        "htx",
    }
    # spot and the linear perpetual of each of the six exchanges (and Bybit's inverse)
    shapes = {
        (e.exchange, check_symbol(e.exchange, e.market, s).value) for e in DEMO_ENTRIES for s in e.symbols
    }
    for exchange in ("bybit", "bitget", "gate", "htx"):
        assert {(exchange, "spot"), (exchange, "linear")} <= shapes, exchange
    assert {("bybit", "inverse"), ("okx", "spot"), ("okx", "inverse")} <= shapes
    # every demo exchange is one registration on each side, and every generic fault meets every exchange
    assert set(DEMO_EXCHANGES) <= set(SUPPORTED) and set(DEMO_EXCHANGES) <= set(sim_registry.names())
    specs = sim_registry.specs()
    for kind in kinds - {"badchecksum"}:
        meaningful = {x for x in DEMO_EXCHANGES if kind not in specs[x].server.inert_faults}
        assert {f.exchange for f in DEMO_FAULTS if f.kind == kind} == meaningful, kind
    # a notice only where the exchange announces closes (Binance serverShutdown, OKX 64008)
    assert {f.exchange for f in DEMO_FAULTS if f.kind == "notice"} == {
        "binance",
        "binanceusdm",
        "binancecoinm",
        "okx",
    }
    # the books with checksums
    assert {f.exchange for f in DEMO_FAULTS if f.kind == "badchecksum"} == {"okx", "bitget"}
    for e in DEMO_ENTRIES:
        for symbol in e.symbols:
            check_symbol(e.exchange, e.market, symbol)


async def test_a_refused_status_address_leaves_the_last_output_untouched(tmp_path: Path) -> None:
    out = tmp_path / "out"
    prepare_out_dir(out)  # the previous run's output
    (out / "report.txt").write_text("the previous run's report\n")
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    console = Console(file=io.StringIO(), width=120)
    try:
        code = await demo_main(3.0, out, False, console=console, status=StatusConfig(port=port))
    finally:
        holder.close()
    assert code == 2
    assert f"127.0.0.1:{port}" in console.file.getvalue()  # type: ignore[attr-defined]
    assert (out / "report.txt").read_text() == "the previous run's report\n"
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "report.txt"]


async def test_a_foreign_directory_is_refused_before_anything_starts(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("mine")
    console = Console(file=io.StringIO(), width=120)
    assert await demo_main(3.0, tmp_path, False, console=console) == 2
    assert "not written by the demo" in console.file.getvalue()  # type: ignore[attr-defined]
    assert (tmp_path / "precious.txt").read_text() == "mine"
    with pytest.raises(DemoOutputError, match="not a directory"):
        check_out_dir(tmp_path / "precious.txt")


async def test_demo_with_nats_publishes_what_it_delivers(tmp_path: Path) -> None:
    """``--nats``: every event the demo writes is also in the JetStream stream, the report has the NATS sink's
    section, nothing lost."""
    uid = uuid4().hex[:10]
    cfg = NatsConfig.model_validate(
        {"subject_root": f"demo{uid}", "stream": {"name": f"DEMO_{uid}", "storage": "memory"}}
    )
    console = Console(file=io.StringIO(), width=120)
    nc = await nats_py.connect("nats://127.0.0.1:4222")
    try:
        code = await demo_main(4.0, tmp_path, False, console=console, nats=cfg)
        info = await nc.jetstream().stream_info(f"DEMO_{uid}")
    finally:
        with contextlib.suppress(Exception):
            await nc.jetstream().delete_stream(f"DEMO_{uid}")
        await nc.close()
    assert code == 0
    report = (tmp_path / "report.txt").read_text()
    section = report.split("NATS sink", 1)[1]
    acked = int(section.split(" acknowledged", 1)[0].strip().replace(",", ""))
    written = sum(len(p.read_bytes().splitlines()) for p in sorted(tmp_path.glob("*/*.jsonl")))  # noqa: ASYNC240
    assert acked == written == info.state.messages > 0  # one message per JSONL line, one copy each
    assert "DATA LOST" not in report and "(closed)" in section
