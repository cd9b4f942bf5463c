"""Record from the simulator, replay the capture in a second simulator, connect a client: every book goes live and
equals, sequence by sequence, the book the recording client rebuilt (issue 6, section 5 "done when")."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cryptolink.manager import ExchangeManager
from cryptolink.models import BookUpdate, Trade
from cryptolink.record import CaptureWriter, Recorder
from cryptolink.simulator import Simulator
from cryptolink.simulator.capture import load_capture
from cryptolink.simulator.runner import replay_config
from tests.integration.harness import FAST_RECONNECT, FAST_WATCHDOG, TARGETS, sim_config

NAMES = ("binance", "binanceusdm", "okx", "binancecoinm")
Levels = tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]


class Books:
    """Full client book after every delivered update, by (feed, symbol) then sequence; trade ids by
    (feed, symbol). Every delivery sets ``changed``."""

    def __init__(self) -> None:
        self.manager: ExchangeManager | None = None
        self.states: dict[tuple[str, str], dict[int, Levels]] = {}
        self.order: dict[tuple[str, str], list[int]] = {}
        self.trades: dict[tuple[str, str], list[int]] = {}
        self.changed = asyncio.Event()

    def on_book(self, u: BookUpdate) -> None:
        assert self.manager is not None
        book = self.manager.book(u.feed, u.symbol)
        assert book is not None
        assert book.last_sequence == u.sequence, "inline callback runs right after the update is applied"
        self.states.setdefault((u.feed, u.symbol), {})[u.sequence] = (dict(book.bids()), dict(book.asks()))
        self.order.setdefault((u.feed, u.symbol), []).append(u.sequence)
        self.changed.set()

    def on_trade(self, t: Trade) -> None:
        assert t.sequence is not None
        self.trades.setdefault((t.feed, t.symbol), []).append(t.sequence)
        self.changed.set()

    async def until(self, predicate: Callable[[], bool], within_s: float, what: str) -> None:
        async def loop() -> None:
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

        try:
            await asyncio.wait_for(loop(), within_s)
        except TimeoutError:
            pytest.fail(f"timed out after {within_s} s waiting for {what}")


def keys() -> list[tuple[str, str]]:
    return [(name, sym) for name in NAMES for sym in TARGETS[name][2]]


def build_manager(sim: Simulator, books: Books, **runtime: Any) -> ExchangeManager:
    ep = sim.endpoints()
    b = ExchangeManager.builder().runtime(seed=5, **runtime)
    for name in NAMES:
        exch, market, symbols, _ = TARGETS[name]
        b.exchange(
            name,
            exchange=exch,
            market=market,
            symbols=list(symbols),
            channels=["trades", "book"],
            ws_url=ep[name]["ws_url"],
            rest_url=ep[name]["rest_url"],
            reconnect=FAST_RECONNECT,
            watchdog=FAST_WATCHDOG,
        )
    m = b.build()
    books.manager = m
    m.on("book", books.on_book)
    m.on("trades", books.on_trade)
    return m


def books_live(m: ExchangeManager) -> bool:
    health = [b for name in NAMES for b in m.feeds[name].book_health()]
    return len(health) == 2 * len(NAMES) and all(b.state == "live" for b in health)


async def test_recorded_capture_replays_every_book_equal_sequence_by_sequence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "capture.jsonl.gz"

    # 1. record: a client on a synthetic simulator, every adapter wrapped by the recorder
    recorded = Books()
    writer = CaptureWriter(path, flush_interval_s=0.05)
    flusher = asyncio.create_task(writer.run())
    async with Simulator(exchanges=list(NAMES), mode="synthetic", seed=3, config=sim_config()) as sim_a:
        m_a = build_manager(sim_a, recorded, adapter_wrapper=Recorder(writer).wrap)
        await m_a.start()
        try:
            await recorded.until(
                lambda: all(len(recorded.order.get(k, ())) >= 40 for k in keys()),
                30.0,
                "40 book updates per recorded book",
            )
            assert books_live(m_a)
        finally:
            await m_a.stop()
    flusher.cancel()
    await writer.aclose()
    stats = writer.stats()
    assert stats.error is None and stats.lines_dropped == 0
    assert set(stats.exchanges) == set(NAMES)  # ccxt ids: binance spot, binanceusdm, okx, binancecoinm
    assert stats.exchanges["binance"].rest_bodies >= 3  # instruments + one snapshot per symbol

    # 2. replay: a second simulator serving the capture instead of its own markets
    capture = load_capture(path)
    assert capture.stats.corrupt_lines == 0 and not capture.problems
    assert set(capture.exchanges) == set(NAMES)
    # what `cryptolink simulate --replay FILE` does: the file's exchanges, its symbols served from it
    chosen, replay = replay_config(path, None)
    assert sorted(chosen) == sorted(NAMES)
    for name in NAMES:
        assert set(replay.symbols[name]) == set(TARGETS[name][3])
    base = sim_config()
    replay = dataclasses.replace(replay, rules=base.rules, synthetic_rate_hz=base.synthetic_rate_hz)
    async with Simulator(exchanges=chosen, mode="synthetic", seed=9, config=replay) as sim_b:
        replayed = Books()
        m_b = build_manager(sim_b, replayed)
        await m_b.start()
        last_recorded = {k: max(recorded.states[k]) for k in keys()}
        native = {(n, TARGETS[n][2][i]): (n, TARGETS[n][3][i]) for n in NAMES for i in range(2)}

        def past_first_pass() -> bool:
            """Each replayed book went past the recording's last sequence (or, if ids went wrong, its tape
            looped twice: the assertions below then say what differs)."""
            return all(
                replayed.order.get(k, [0])[-1] > last_recorded[k]
                or getattr(sim_b.servers[n].sources.get(sym), "loops", 0) >= 2
                for k, (n, sym) in native.items()
            )

        try:
            await replayed.until(past_first_pass, 30.0, "the replay going past the recording")
            assert books_live(m_b)
        finally:
            await m_b.stop()

    # 3. sequence by sequence: every replayed book state of the first pass is the recorded one at that sequence
    for k in keys():
        assert replayed.order[k][-1] > last_recorded[k], f"{k}: the replay did not go past the recording"
        want = recorded.states[k]
        first_pass = [s for s in replayed.order[k] if s <= last_recorded[k]]
        assert len(first_pass) >= 25, f"{k}: only {len(first_pass)} replayed updates compared"
        assert first_pass == sorted(first_pass)
        unknown = [s for s in first_pass if s not in want]
        assert not unknown, f"{k}: replayed sequences the recording never had: {unknown[:5]}"
        differ = [s for s in first_pass if replayed.states[k][s] != want[s]]
        assert not differ, f"{k}: replayed book differs from the recorded one at sequences {differ[:5]}"
        # trades of the first pass carry the recorded ids
        got = [t for t in replayed.trades.get(k, []) if t <= max(recorded.trades[k])]
        assert got, f"{k}: no replayed trades"
        assert set(got) <= set(recorded.trades[k]), f"{k}: replayed trade ids the recording never had"
