"""Simulator entry points: endpoints, fixed port offsets, CLI runner output, argument errors."""

from __future__ import annotations

import asyncio
import io
import json

import aiohttp
import pytest

from cryptolink.simulator import Simulator, serve_forever
from tests.simulator.sim_helpers import free_port_run


async def test_fixed_port_offsets_whatever_subset_or_order() -> None:
    port = free_port_run(3)
    async with Simulator(["okx", "binance"], port=port, mode="synthetic") as sim:
        eps = sim.endpoints()
        assert eps["okx"]["ws_url"] == f"ws://127.0.0.1:{port + 2}"
        assert eps["binance"]["rest_url"] == f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as s, s.get(eps["okx"]["rest_url"] + "/api/v5/public/time") as r:
            assert (await r.json())["code"] == "0"


async def test_okx_alone_listens_on_base_plus_two() -> None:
    port = free_port_run(3)
    async with Simulator(exchanges=["okx"], port=port, mode="synthetic") as sim:
        assert sim.okx.port == port + 2
        async with (
            aiohttp.ClientSession() as s,
            s.get(f"http://127.0.0.1:{port + 2}/api/v5/public/time") as r,
        ):
            assert r.status == 200


class _Lines(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.two = asyncio.Event()

    def write(self, text: str) -> int:
        n = super().write(text)
        if self.getvalue().count("\n") >= 2:
            self.two.set()
        return n


async def test_serve_forever_prints_json_lines() -> None:
    out = _Lines()
    sim = Simulator(["binance", "okx"], mode="synthetic")
    task = asyncio.create_task(serve_forever(sim, out))
    await asyncio.wait_for(out.two.wait(), 5)
    lines = [json.loads(x) for x in out.getvalue().splitlines()]
    assert [x["exchange"] for x in lines] == ["binance", "okx"]
    assert all(set(x) == {"exchange", "ws_url", "rest_url", "hosts"} for x in lines)
    binance, okx = lines
    assert binance["hosts"]["https://api.binance.com"] == binance["rest_url"]
    assert okx["hosts"]["wss://ws.okx.com:8443"] == okx["ws_url"]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert not sim.binance.connections


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        Simulator(["kraken"])
    with pytest.raises(ValueError):
        Simulator(["binance"], mode="live")
    with pytest.raises(ValueError):
        Simulator(["binance"], faults="explode@1s")
    with pytest.raises(ValueError):
        Simulator(["okx", "okx"])
