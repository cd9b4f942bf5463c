"""``cryptolink demo``: the main job on its embedded default.

Starts the exchange simulator on 127.0.0.1 for the six exchanges (:data:`DEMO_ENTRIES`), replaying the shipped
real recordings where they exist in the current API or convert to it: Binance spot and USDⓈ-M BTCUSDT/ETHUSDT and
COIN-M BTCUSD_PERP from hftbacktest (2024-08-08, ~6 min, looped); OKX BTC-USDT and the inverse swap UNI-USD-SWAP
from a real OKX v5 recording (cryptofeed sample data, 2022-05-13, ~11 s, looped with the simulator's own
sequence and trade ids); Bybit KCSUSDT level-1 books (v5, 2025-06); Bitget AVAXUSDT, EOSUSDT and the DASHUSDT
perpetual (v1 books and trades of 2022-04, converted to v2). Every other symbol (Bybit, Bitget, Gate and HTX BTC
and ETH markets) is a synthesized market with valid sequences and checksums. It connects an :class:`~cryptolink.manager.ExchangeManager` to it (trades, tickers and
L2 books), injects a fault every few seconds (drop, stall, sequence gap, shutdown notice, lifetime close,
corrupt frame, bad checksum, a short outage), shows a live status table, writes normalized JSONL and gap
events under ``--out`` and ends with the connection report (also saved as ``<out>/report.txt``).

Each run starts from a fresh output directory: a directory this demo wrote before (it holds the marker file
``.cryptolink-demo``) is emptied first, so the JSONL files and the report always describe one run; a
non-empty directory without the marker is refused, never emptied. The status address is bound before the
directory is emptied: a refused address leaves the previous run's output as it was. Stops cleanly on Ctrl-C or
after ``--duration``.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console, ConsoleRenderable, Group
from rich.live import Live
from rich.text import Text

from cryptolink.config import NatsConfig, StatusConfig
from cryptolink.errors import CryptolinkError
from cryptolink.manager import ExchangeManager
from cryptolink.models import BookUpdate, Gap, Ticker, Trade
from cryptolink.report import WIDTH, Section, render_status_table
from cryptolink.service import output_section
from cryptolink.simulator import Fault, Simulator
from cryptolink.simulator import registry as sim_registry
from cryptolink.sinks.jsonl import JsonlSink
from cryptolink.status.server import StatusBindError
from cryptolink.status.surface import StatusSurface

__all__ = [
    "DEMO_ENTRIES",
    "DEMO_EXCHANGES",
    "DEMO_FAULTS",
    "MARKER",
    "DemoEntry",
    "DemoFault",
    "DemoOutputError",
    "check_out_dir",
    "prepare_out_dir",
    "run_demo",
]

MARKER = ".cryptolink-demo"
"""File that marks a directory as the demo's own output (safe to empty on the next run)."""


class DemoOutputError(CryptolinkError):
    """The output directory holds files the demo did not write (it is never emptied)."""


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


@dataclass(frozen=True, slots=True)
class DemoEntry:
    """One feed of the demo: configuration entry ``name`` on ``exchange`` (ccxt id, also the simulator's id)."""

    name: str
    exchange: str
    market: str
    symbols: tuple[str, ...]
    channels: tuple[str, ...] | None = None


DEMO_ENTRIES: tuple[DemoEntry, ...] = (
    DemoEntry("binance", "binance", "spot", ("BTC/USDT", "ETH/USDT")),
    DemoEntry("binanceusdm", "binanceusdm", "perpetual", ("BTC/USDT:USDT", "ETH/USDT:USDT")),
    DemoEntry("binancecoinm", "binancecoinm", "perpetual", ("BTC/USD:BTC",)),
    DemoEntry("okx", "okx", "spot", ("BTC/USDT",)),
    DemoEntry("okx-swap", "okx", "perpetual", ("UNI/USD:UNI",), ("trades", "book")),
    DemoEntry("bybit", "bybit", "spot", ("BTC/USDT", "ETH/USDT")),
    DemoEntry("bybit-l1", "bybit", "spot", ("KCS/USDT",), ("ticker", "book")),
    DemoEntry("bybit-perp", "bybit", "perpetual", ("BTC/USDT:USDT", "BTC/USD:BTC")),
    DemoEntry("bitget", "bitget", "spot", ("AVAX/USDT", "EOS/USDT", "BTC/USDT")),
    DemoEntry("bitget-perp", "bitget", "perpetual", ("DASH/USDT:USDT", "BTC/USDT:USDT")),
    DemoEntry("gate", "gate", "spot", ("BTC/USDT", "ETH/USDT")),
    DemoEntry("gate-perp", "gate", "perpetual", ("BTC/USDT:USDT",)),
    DemoEntry("htx", "htx", "spot", ("BTC/USDT", "ETH/USDT")),
    DemoEntry("htx-perp", "htx", "perpetual", ("BTC/USDT:USDT",)),
)
"""The demo's feeds (trades, tickers and books; ``okx-swap`` trades and books: its recorded ticker updates once per
loop, too thin to tell a stall from a quiet market; ``bybit-l1`` tickers and books: the Bybit recording holds level-1
books only). Spot and the linear perpetual of every exchange, Bybit's and OKX's inverse ones too; replayed or
synthesized as the module docstring says. Each exchange must be registered both as an adapter
(:mod:`cryptolink.exchanges`) and as a simulator server (:mod:`cryptolink.simulator.registry`), which
``tests/test_demo.py`` checks."""

DEMO_EXCHANGES: tuple[str, ...] = tuple(dict.fromkeys(e.exchange for e in DEMO_ENTRIES))
"""The simulator exchanges the demo starts (one server per exchange id)."""

_CYCLE: tuple[tuple[str, float | None, bool], ...] = (
    ("drop", None, False),
    ("stall", 8.0, False),
    ("gap", None, True),
    ("notice", None, False),
    ("lifetime", None, False),
    ("corrupt", None, False),
    ("outage", 4.0, False),
)
"""Fault kinds of the cycle: (kind, duration s, aimed at one symbol)."""


def _fault_cycle() -> tuple[DemoFault, ...]:
    """Rounds of :data:`_CYCLE`, each kind on another demo exchange in every round (so every kind meets every
    exchange whose protocol has a counterpart for it; a symbol fault on the first symbol the simulator serves for
    it), each round closed by a bad checksum on one exchange whose books carry checksums."""
    specs = sim_registry.specs()
    checksummed = [x for x in DEMO_EXCHANGES if specs[x].server.book_checksums]
    n = len(DEMO_EXCHANGES)
    out: list[DemoFault] = []
    for rnd in range(n):
        for k, (kind, duration, on_symbol) in enumerate(_CYCLE):
            exchange = DEMO_EXCHANGES[(k + rnd) % n]
            if kind in specs[exchange].server.inert_faults:
                continue  # no counterpart in that exchange's protocol (Bybit has no shutdown notice)
            symbol = specs[exchange].symbols[0] if on_symbol else None
            out.append(DemoFault(kind, exchange, duration_s=duration, symbol=symbol))
        if checksummed:
            exchange = checksummed[rnd % len(checksummed)]
            out.append(DemoFault("badchecksum", exchange, symbol=specs[exchange].symbols[0]))
    return tuple(out)


DEMO_FAULTS: tuple[DemoFault, ...] = _fault_cycle()
"""The demo's fault cycle, one every ``fault_every_s``: every kind on every demo exchange in turn."""


def build_manager(endpoints: dict[str, dict[str, str]], *, seed: int = 0) -> ExchangeManager:
    """The demo's manager pointed at the simulator's ``endpoints`` (from :meth:`Simulator.endpoints`)."""
    b = ExchangeManager.builder()
    for e in DEMO_ENTRIES:
        ep = endpoints[e.exchange]
        b.exchange(
            e.name,
            exchange=e.exchange,
            market=e.market,
            symbols=list(e.symbols),
            channels=list(e.channels) if e.channels is not None else None,
            ws_url=ep["ws_url"],
            rest_url=ep["rest_url"],
        )
    return b.runtime(seed=seed).build()


def check_out_dir(out_dir: Path) -> None:
    """Refuse ``out_dir`` unless :func:`prepare_out_dir` may use it (it changes nothing).

    Raises:
        DemoOutputError: ``out_dir`` is not a directory, or is not empty and was not written by the demo.
        OSError: it cannot be read.
    """
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise DemoOutputError(f"{out_dir} is not a directory")
    if any(out_dir.iterdir()) and not (out_dir / MARKER).is_file():
        raise DemoOutputError(
            f"{out_dir} is not empty and was not written by the demo; choose another --out "
            "(the demo empties its own output directory at every run)"
        )


def prepare_out_dir(out_dir: Path) -> None:
    """Make ``out_dir`` an empty directory of the demo's own (see the module docstring).

    Raises:
        DemoOutputError: ``out_dir`` is not empty and was not written by the demo (:func:`check_out_dir`).
        OSError: it cannot be created or emptied.
    """
    check_out_dir(out_dir)
    if out_dir.exists():
        for entry in list(out_dir.iterdir()):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MARKER).write_text("written by `cryptolink demo`; emptied at every demo run\n")


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
            counts["backfilled trades" if ev.backfilled else "trades"] += 1
        elif isinstance(ev, BookUpdate):
            counts["book updates"] += 1
        elif isinstance(ev, Ticker):
            counts["tickers"] += 1
        elif isinstance(ev, Gap):
            counts["gaps"] += 1

    return on_event


def _line(text: str, style: str = "") -> Text:
    return Text(text, style=style, no_wrap=True, overflow="ellipsis")


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
    status: StatusConfig | None = None,
    nats: NatsConfig | None = None,
) -> int:
    """The demo as a coroutine (see the module docstring); returns the process exit code (0; 1 when JSONL
    lines were lost or events could not be published to NATS; 2 when the output directory, the status address or
    NATS is refused). ``status``: serve the status API and dashboard (``None`` or ``enabled: false``: not).
    ``nats``: also publish every event to NATS JetStream (``docs/nats.md``)."""
    console = console or Console()
    if not console.is_terminal:
        console = Console(width=WIDTH, force_terminal=False, file=console.file)
    try:  # refused before anything starts; emptied only once the status address is bound (below)
        await asyncio.to_thread(check_out_dir, out_dir)
    except (DemoOutputError, OSError) as exc:
        console.print(f"error: {exc}", style="bold red")
        return 2
    counts: Counter[str] = Counter()
    fault_log: list[str] = []
    started = time.monotonic()
    async with Simulator(exchanges=list(DEMO_EXCHANGES), mode="replay", speed=speed, seed=seed) as sim:
        manager = build_manager(sim.endpoints(), seed=seed)
        nats_sink = None
        if nats is not None:
            from cryptolink.sinks.nats import NatsSink  # nats-py only for --nats

            nats_sink = NatsSink(nats, book_source=manager.book, instance="demo")
        surface = None
        if status is not None and status.enabled:
            surface = StatusSurface(
                manager, status, disk_path=out_dir, nats=nats_sink.stats if nats_sink is not None else None
            )
            try:  # before the output directory is emptied: a refused address leaves the last run's output
                await surface.start()
            except (StatusBindError, ValueError) as exc:
                await surface.stop()
                console.print(f"error: {exc}", style="bold red")
                return 2
        if nats_sink is not None:
            try:
                await nats_sink.start()
            except CryptolinkError as exc:
                if surface is not None:
                    await surface.stop()
                console.print(f"error: {exc}", style="bold red")
                return 2
        try:
            await asyncio.to_thread(prepare_out_dir, out_dir)
        except (DemoOutputError, OSError) as exc:
            if surface is not None:
                await surface.stop()
            console.print(f"error: {exc}", style="bold red")
            return 2
        stop = asyncio.Event()  # the handlers are installed once nothing can refuse the run any more
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        sink = JsonlSink(out_dir)
        sink.attach(manager.bus)
        nats_task = None
        if nats_sink is not None:
            nats_sink.attach(manager.bus)
            nats_task = asyncio.create_task(nats_sink.run())
        for channel in ("trades", "book", "ticker", "gaps"):
            manager.on(channel, _count(counts))  # type: ignore[arg-type]
        dashboard = f" — dashboard {surface.server.url}/" if surface is not None and surface.server else ""
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
            head = _line(
                f"cryptolink demo — simulator replaying real recordings — {elapsed:5.1f}s"
                + (f" / {duration_s:g}s" if duration_s else " (Ctrl-C to stop)")
                + f" — out: {out_dir}{dashboard}",
                "bold",
            )
            totals = _line(" | ".join(f"{k}: {v:,}" for k, v in sorted(counts.items())) or "waiting for data")
            out = sink.stats()
            output = _line(
                f"JSONL: {out.lines_written:,} lines written, {out.lines_dropped:,} dropped"
                + ("" if out.healthy else f" — WRITE ERRORS: {out.last_error}"),
                "" if out.healthy and not out.lines_dropped else "bold red",
            )
            faults_text = Group(*(_line(x, "dim") for x in (fault_log[-6:] or ["no faults injected yet"])))
            parts: list[ConsoleRenderable] = [
                head,
                render_status_table(manager.report_rows()),
                totals,
                output,
            ]
            if nats_sink is not None:
                ns = nats_sink.stats()
                parts.append(
                    _line(
                        f"NATS {ns.server or '-'}: {ns.acked:,} acknowledged, {ns.in_flight:,} in flight, "
                        f"{ns.buffered:,} buffered, {ns.lost:,} lost"
                        + ("" if ns.connected else " — NOT CONNECTED"),
                        "" if ns.connected and not ns.lost else "bold red",
                    )
                )
            return Group(*parts, faults_text)

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
            await manager.stop()
            if surface is not None:
                await surface.stop()
            sink_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sink_task
            await sink.aclose()
            if nats_sink is not None:
                if nats_task is not None:
                    nats_task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await nats_task
                await nats_sink.aclose()
    out = sink.stats()
    demo = Section(
        "demo",
        [
            "  delivered: " + ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items())),
            f"  faults injected: {len(fault_log)}; JSONL under {out_dir}/<entry>/<channel>.jsonl "
            "(trades, ticker, book, gaps)",
            *(f"  {line}" for line in fault_log),
        ],
    )
    sections = [output_section(out, out_dir)]
    if nats_sink is not None:
        sections.append(nats_sink.report_section())
    text = manager.report([*sections, demo])
    (out_dir / "report.txt").write_text(text)
    console.print(text, highlight=False, markup=False, soft_wrap=True)
    lost = out.lines_dropped > 0 or out.write_errors > 0 or not out.healthy
    if nats_sink is not None and nats_sink.health().data_lost:
        lost = True
    return 1 if lost else 0


def run_demo(
    duration_s: float | None,
    out_dir: Path,
    faults: bool,
    status: StatusConfig | None = None,
    nats: NatsConfig | None = None,
) -> int:
    """Entry point of ``cryptolink demo`` (blocking); returns the exit code."""
    return asyncio.run(demo_main(duration_s, out_dir, faults, status=status, nats=nats))
