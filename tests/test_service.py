"""``cryptolink run``'s service loop against the simulator: connects, writes JSONL, returns the report."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cryptolink.config import CryptolinkConfig
from cryptolink.service import serve
from cryptolink.simulator import Simulator
from cryptolink.sinks.jsonl import read_jsonl

pytestmark = pytest.mark.integration


async def test_serve_until_stopped_writes_jsonl_and_reports(tmp_path: Path) -> None:
    async with Simulator(exchanges=["okx"], speed=2.0) as sim:
        ep = sim.endpoints()["okx"]
        cfg = CryptolinkConfig.from_dict(
            {
                "exchanges": {
                    "okx": {"symbols": ["BTC/USDT"], "ws_url": ep["ws_url"], "rest_url": ep["rest_url"]}
                },
                "output": {"enabled": True, "dir": str(tmp_path), "flush_interval_s": 0.1},
            },
            env={},
        )
        stop = asyncio.Event()
        task = asyncio.create_task(serve(cfg, stop))
        trades = tmp_path / "okx" / "trades.jsonl"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while not (trades.exists() and trades.stat().st_size > 0):
            assert loop.time() < deadline, "no trades written"
            await asyncio.sleep(0.05)
        stop.set()
        report = await asyncio.wait_for(task, 10)
    assert "okx-ws-1" in report
    assert all(t.symbol == "BTC/USDT" for t in read_jsonl(trades))
