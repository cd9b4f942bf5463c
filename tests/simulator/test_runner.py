"""Simulator entry points: endpoints, port order, CLI runner output, argument errors."""

from __future__ import annotations

import asyncio
import io
import json
import socket

import aiohttp
import pytest

from cryptolink.simulator import Simulator, serve_forever


def _free_port_pair() -> int:
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
        with socket.socket() as b, socket.socket() as c:
            try:
                b.bind(("127.0.0.1", port))
                c.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port pair")


async def test_ports_in_order_and_endpoints() -> None:
    port = _free_port_pair()
    async with Simulator(["okx", "binance"], port=port, mode="synthetic") as sim:
        eps = sim.endpoints()
        assert eps["okx"]["ws_url"] == f"ws://127.0.0.1:{port}"
        assert eps["binance"]["rest_url"] == f"http://127.0.0.1:{port + 1}"
        async with aiohttp.ClientSession() as s, s.get(eps["okx"]["rest_url"] + "/api/v5/public/time") as r:
            assert (await r.json())["code"] == "0"


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
    assert all(set(x) == {"exchange", "ws_url", "rest_url"} for x in lines)
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
