"""The Sink seam: any sink given to the service receives the bus's events, adds its report section, and a loss
in it ends the run with exit code 1."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cryptolink.bus import Bus, CallbackHandle
from cryptolink.config import CryptolinkConfig
from cryptolink.manager import ExchangeManager
from cryptolink.models import Channel, Trade
from cryptolink.report import Section
from cryptolink.service import EXIT_DATA_LOST, EXIT_OK, serve
from cryptolink.simulator import Simulator
from cryptolink.sinks.base import SinkHealth

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


class MemorySink:
    """Keeps trades in memory; ``lose_every`` > 0 loses every n-th one (counted, as a real sink must)."""

    def __init__(self, lose_every: int = 0) -> None:
        self.trades: list[Trade] = []
        self.lost = 0
        self.seen = 0
        self.lose_every = lose_every
        self.closed = False
        self.enough = asyncio.Event()

    def _on(self, event: object) -> None:
        if not isinstance(event, Trade):
            return
        self.seen += 1
        if self.lose_every and self.seen % self.lose_every == 0:
            self.lost += 1
        else:
            self.trades.append(event)
        if self.seen >= 4:
            self.enough.set()

    def attach(self, bus: Bus, *, feed: str | None = None, symbol: str | None = None) -> list[CallbackHandle]:
        return [
            bus.add_callback(self._on, channel=Channel.TRADES.value, feed=feed, symbol=symbol, name="memory")
        ]

    async def run(self) -> None:
        await asyncio.Event().wait()

    async def aclose(self) -> None:
        self.closed = True

    def health(self) -> SinkHealth:
        return SinkHealth("memory", delivered=len(self.trades), lost=self.lost, healthy=True)

    def report_section(self) -> Section:
        return Section("memory sink", [f"  {len(self.trades)} kept, {self.lost} lost"])


def _config(sim: Simulator) -> CryptolinkConfig:
    ep = sim.endpoints()["okx"]
    data: dict[str, Any] = {
        "exchanges": {"okx": {"symbols": ["BTC/USDT"], "ws_url": ep["ws_url"], "rest_url": ep["rest_url"]}},
        "status": {"enabled": False},
    }
    return CryptolinkConfig.from_dict(data, env={})


async def _run(sink: MemorySink) -> Any:
    async with Simulator(exchanges=["okx"], speed=4.0) as sim:
        cfg = _config(sim)
        stop = asyncio.Event()
        task = asyncio.create_task(serve(cfg, stop, manager=ExchangeManager(cfg), sinks=[sink]))
        await asyncio.wait_for(sink.enough.wait(), 30)
        stop.set()
        return await asyncio.wait_for(task, 30)


async def test_an_extra_sink_receives_events_and_reports() -> None:
    sink = MemorySink()
    result = await _run(sink)
    assert result.exit_code == EXIT_OK
    assert sink.closed and len(sink.trades) >= 4 and all(t.symbol == "BTC/USDT" for t in sink.trades)
    assert f"{len(sink.trades)} kept, 0 lost" in result.report


async def test_a_loss_in_any_sink_means_exit_code_1() -> None:
    sink = MemorySink(lose_every=2)
    result = await _run(sink)
    assert sink.lost >= 2
    assert result.exit_code == EXIT_DATA_LOST
    assert f"{sink.lost} lost" in result.report


class CrashingSink(MemorySink):
    """Its background work fails after the first trades (a publisher bug)."""

    async def run(self) -> None:
        await self.enough.wait()
        raise RuntimeError("publisher bug")


async def test_a_sink_that_crashes_is_reported_and_means_exit_code_1(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = CrashingSink()
    result = await _run(sink)
    assert sink.lost == 0  # its own counters say nothing is lost: the crash alone must make the run fail
    assert result.exit_code == EXIT_DATA_LOST
    assert "CrashingSink: RuntimeError: publisher bug" in result.report
    assert "CrashingSink sink failed" in caplog.text
