"""The demo end to end (short): simulator replaying recordings, faults, JSONL output and the final report."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from cryptolink.demo import DEMO_FAULTS, demo_main
from cryptolink.models import BookUpdate, Ticker, Trade
from cryptolink.sinks.jsonl import read_jsonl

pytestmark = pytest.mark.integration


async def test_demo_writes_normalized_jsonl_and_report_under_faults(tmp_path: Path) -> None:
    console = Console(file=io.StringIO(), width=200)
    code = await demo_main(9.0, tmp_path, True, fault_every_s=1.0, quiet_end_s=3.0, console=console)
    assert code == 0
    report = (tmp_path / "report.txt").read_text()
    assert "cryptolink connection report" in report
    injected = int(report.split("faults injected: ", 1)[1].split(";", 1)[0])
    assert 4 <= injected <= 6  # one a second until 6 s, then quiet so the run ends recovered
    for exchange, channel, kind in (
        ("binance", "trades", Trade),
        ("binance", "book", BookUpdate),
        ("binance", "ticker", Ticker),
        ("okx", "trades", Trade),
        ("okx", "book", BookUpdate),
    ):
        path = tmp_path / exchange / f"{channel}.jsonl"
        events = list(read_jsonl(path))
        assert events, path
        assert all(isinstance(e, kind) for e in events)
    # per symbol, trades are never delivered twice, even across the drop/notice/lifetime faults
    trades = list(read_jsonl(tmp_path / "binance" / "trades.jsonl"))
    by_symbol: dict[str, list[int]] = {}
    for t in trades:
        assert isinstance(t, Trade) and t.sequence is not None
        by_symbol.setdefault(t.symbol, []).append(t.sequence)
    for symbol, seqs in by_symbol.items():
        assert seqs == sorted(set(seqs)), symbol


def test_fault_cycle_covers_the_issue_faults() -> None:
    kinds = {f.kind for f in DEMO_FAULTS}
    assert {"drop", "stall", "gap", "notice", "lifetime"} <= kinds
