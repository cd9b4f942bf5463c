"""``cryptolink demo``: the main job on its embedded default.

Starts the exchange simulator on 127.0.0.1 replaying the shipped real recordings (Binance spot and USDⓈ-M
BTCUSDT/ETHUSDT from hftbacktest 2024-08-08; OKX BTC-USDT, ETH-USDT and BTC-USDT-SWAP re-encoded from the same
recordings), connects an :class:`~cryptolink.manager.ExchangeManager` to it (trades, tickers and L2 books),
injects a fault every few seconds (drop, stall, gap, notice, lifetime, corrupt, bad checksum), shows a live status
table, writes normalized JSONL under ``--out`` and ends with the connection report (also saved as
``<out>/report.txt``). Stops cleanly on Ctrl-C or after ``--duration``.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from cryptolink.manager import ExchangeManager
from cryptolink.models import BookUpdate, Ticker, Trade
from cryptolink.report import render_status_table
from cryptolink.simulator import Fault, Simulator
from cryptolink.sinks.jsonl import JsonlSink

__all__ = ["DEMO_FAULTS", "DemoFault", "run_demo"]


@dataclass(frozen=True, slots=True)
class DemoFault:
    """One fault of the demo's cycle: ``kind`` (simulator fault kind) on ``exchange`` (simulator id)."""

    kind: str
    exchange: str
    duration_s: float | None = None
    symbol: str | None = None

    def fault(self) -> Fault:
        return Fault(self.kind, exchange=self.exchange, duration_s=self.duration_s, symbol=self.symbol)

    def describe(self) -> str:
        extra = f" {self.duration_s:g}s" if self.duration_s else ""
        return f"{self.kind}{extra} on {self.exchange}" + (f" ({self.symbol})" if self.symbol else "")


DEMO_FAULTS: tuple[DemoFault, ...] = (
    DemoFault("drop", "binance"),
    DemoFault("stall", "okx", duration_s=8.0),
    DemoFault("gap", "binanceusdm", symbol="BTCUSDT"),
    DemoFault("notice", "binance"),
    DemoFault("lifetime", "okx"),
    DemoFault("corrupt", "binanceusdm"),
    DemoFault("badchecksum", "okx", symbol="BTC-USDT"),
    DemoFault("drop", "binanceusdm"),
    DemoFault("gap", "binance", symbol="ETHUSDT"),
    DemoFault("notice", "okx"),
    DemoFault("lifetime", "binanceusdm"),
    DemoFault("stall", "binance", duration_s=8.0),
)
"""The demo's fault cycle, one every ``fault_every_s``."""


DEMO_ENTRIES: tuple[tuple[str, str, str, str, tuple[str, ...]], ...] = (
    ("binance", "binance", "spot", "binance", ("BTC/USDT", "ETH/USDT")),
    ("binanceusdm", "binance", "perpetual", "binanceusdm", ("BTC/USDT:USDT", "ETH/USDT:USDT")),
    ("okx", "okx", "spot", "okx", ("BTC/USDT", "ETH/USDT")),
    ("okx-swap", "okx", "perpetual", "okx", ("BTC/USDT:USDT",)),
)
"""``(entry name, exchange, market, simulator id, symbols)`` of the demo's feeds (trades, tickers and books)."""


def build_manager(endpoints: dict[str, dict[str, str]], *, seed: int = 0) -> ExchangeManager:
    """The demo's manager pointed at the simulator's ``endpoints`` (from :meth:`Simulator.endpoints`)."""
    b = ExchangeManager.builder()
    for name, exchange, market, sim_id, symbols in DEMO_ENTRIES:
        ep = endpoints[sim_id]
        b.exchange(
            name,
            exchange=exchange,
            market=market,
            symbols=list(symbols),
            ws_url=ep["ws_url"],
            rest_url=ep["rest_url"],
        )
    return b.runtime(seed=seed).build()


QUIET_END_S = 12.0
"""No fault is injected in the demo's last seconds, so the final report shows the recovery (stall 8 s + resync)."""


async def _fault_loop(
    sim: Simulator, every_s: float, log: list[str], started: float, last_at: float | None
) -> None:
    i = 0
    while True:
        await asyncio.sleep(every_s)
        if last_at is not None and time.monotonic() - started > last_at:
            return
        f = DEMO_FAULTS[i % len(DEMO_FAULTS)]
        i += 1
        try:
            sim.inject(f.fault(), exchange=f.exchange)
        except KeyError:
            continue
        log.append(f"t+{time.monotonic() - started:5.1f}s  injected {f.describe()}")


def _count(counts: Counter[str]) -> object:
    def on_event(ev: object) -> None:
        if isinstance(ev, Trade):
            counts["trades"] += 1
        elif isinstance(ev, BookUpdate):
            counts["book updates"] += 1
        elif isinstance(ev, Ticker):
            counts["tickers"] += 1

    return on_event


async def demo_main(
    duration_s: float | None,
    out_dir: Path,
    faults: bool,
    *,
    fault_every_s: float = 5.0,
    speed: float = 1.0,
    quiet_end_s: float = QUIET_END_S,
    console: Console | None = None,
    seed: int = 7,
) -> int:
    """The demo as a coroutine (see the module docstring); returns the process exit code (0)."""
    console = console or Console()
    if not console.is_terminal:
        console = Console(width=180, force_terminal=False)
    await asyncio.to_thread(out_dir.mkdir, parents=True, exist_ok=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    counts: Counter[str] = Counter()
    fault_log: list[str] = []
    started = time.monotonic()
    async with Simulator(
        exchanges=["binance", "binanceusdm", "okx"], mode="replay", speed=speed, seed=seed
    ) as sim:
        manager = build_manager(sim.endpoints(), seed=seed)
        sink = JsonlSink(out_dir)
        sink.attach(manager.bus)
        manager.on("trades", _count(counts))  # type: ignore[arg-type]
        manager.on("book", _count(counts))  # type: ignore[arg-type]
        manager.on("ticker", _count(counts))  # type: ignore[arg-type]
        sink_task = asyncio.create_task(sink.run())
        await manager.start()
        fault_task = (
            asyncio.create_task(
                _fault_loop(
                    sim,
                    fault_every_s,
                    fault_log,
                    started,
                    None if duration_s is None else max(fault_every_s, duration_s - quiet_end_s),
                )
            )
            if faults
            else None
        )

        def view() -> Group:
            elapsed = time.monotonic() - started
            head = Text(
                f"cryptolink demo — simulator replaying real recordings — {elapsed:5.1f}s"
                + (f" / {duration_s:g}s" if duration_s else " (Ctrl-C to stop)")
                + f" — out: {out_dir}",
                style="bold",
            )
            totals = Text(" | ".join(f"{k}: {v:,}" for k, v in sorted(counts.items())) or "waiting for data")
            faults_text = Text(
                "\n".join(fault_log[-6:]) if fault_log else "no faults injected yet", style="dim"
            )
            return Group(head, render_status_table(manager.report_rows()), totals, faults_text)

        try:
            if console.is_terminal:
                with Live(view(), console=console, refresh_per_second=4, transient=False) as live:
                    while not stop.is_set() and (
                        duration_s is None or time.monotonic() - started < duration_s
                    ):
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(stop.wait(), 0.5)
                        live.update(view())
            else:
                next_print = 0.0
                while not stop.is_set() and (duration_s is None or time.monotonic() - started < duration_s):
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 0.5)
                    if time.monotonic() - started >= next_print:
                        next_print += 10.0
                        console.print(view())
        finally:
            if fault_task is not None:
                fault_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await fault_task
            report = manager.report()
            stats = manager.stats()
            await manager.stop()
            sink_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sink_task
            sink.close()
    summary = [
        "",
        report,
        "",
        "delivered: " + ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items())),
        "duplicates dropped (rotation overlap / resends): "
        + str(sum(f.duplicates_dropped for f in stats.feeds)),
        "books: "
        + "; ".join(
            f"{f.name} {b.symbol} {b.state} (gaps resynced {b.gaps + b.checksum_failures})"
            for f in stats.feeds
            for b in f.books
        ),
        f"faults injected: {len(fault_log)}; normalized JSONL under {out_dir}/<exchange>/<channel>.jsonl",
    ]
    text = "\n".join(summary)
    (out_dir / "report.txt").write_text(text + "\n")
    print(text, flush=True)
    return 0


def run_demo(duration_s: float | None, out_dir: Path, faults: bool) -> int:
    """Entry point of ``cryptolink demo`` (blocking); returns the exit code."""
    return asyncio.run(demo_main(duration_s, out_dir, faults))
