"""The simulator registry and what derives from it (runner, faults, config, CLI), the ``hosts`` every endpoint
line carries, ``GET /_sim/stats`` and ``--rest-limit``."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from typer.testing import CliRunner

from cryptolink.cli import app
from cryptolink.clock import FakeClock
from cryptolink.simulator import Fault, FaultSpecError, SimConfig, Simulator, registry, serve_forever
from cryptolink.simulator.binance import BinanceCoinmServer, BinanceServer, BinanceUsdmServer
from cryptolink.simulator.config import BINANCE_COINM_RULES
from cryptolink.simulator.runner import PORT_OFFSETS, SERVERS, parse_rest_limit
from tests.simulator.sim_helpers import fast_config

pytestmark = pytest.mark.integration


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def test_registry_drives_runner_faults_and_config() -> None:
    specs = registry.specs()
    assert {"binance", "binanceusdm", "binancecoinm", "okx"} <= set(specs)
    assert {n: PORT_OFFSETS[n] for n in ("binance", "binanceusdm", "okx", "binancecoinm")} == {
        "binance": 0,
        "binanceusdm": 1,
        "okx": 2,
        "binancecoinm": 3,
    }
    assert SERVERS["binancecoinm"] is BinanceCoinmServer and specs["binancecoinm"].replay_kinds == ("coinm",)
    cfg = SimConfig()
    assert cfg.rules["binancecoinm"] is BINANCE_COINM_RULES and cfg.rules["binancecoinm"].max_streams == 200
    assert cfg.symbols["binancecoinm"] == ("BTCUSD_PERP", "ETHUSD_PERP")
    assert Fault("drop", exchange="binancecoinm").exchange == "binancecoinm"
    with pytest.raises(FaultSpecError, match="binancecoinm"):
        Fault("drop", exchange="kraken")  # the message lists the registered ids


def test_register_refuses_a_taken_name_or_port_offset() -> None:
    spec = registry.get("binance")
    registry.register(spec)  # the same class again: a no-op
    with pytest.raises(ValueError, match="already registered"):
        registry.register(registry.ServerSpec("binance", BinanceUsdmServer, 9, spec.rules, ()))
    with pytest.raises(ValueError, match="port offset 0"):
        registry.register(registry.ServerSpec("newex", BinanceServer, 0, spec.rules, ()))
    assert "newex" not in registry.names()
    with pytest.raises(ValueError, match="unknown simulator exchange"):
        registry.get("kraken")


class _Lines(io.StringIO):
    """Output that sets ``done`` once ``n`` lines were written."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n
        self.done = asyncio.Event()

    def write(self, text: str) -> int:
        written = super().write(text)
        if self.getvalue().count("\n") >= self.n:
            self.done.set()
        return written


async def test_endpoint_lines_map_every_real_host_to_the_local_base() -> None:
    out = _Lines(2)
    task = asyncio.create_task(serve_forever(Simulator(["binance", "binancecoinm"], mode="synthetic"), out))
    await asyncio.wait_for(out.done.wait(), 10)
    lines = {x["exchange"]: x for x in map(json.loads, out.getvalue().splitlines())}
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    spot, coinm = lines["binance"], lines["binancecoinm"]
    assert set(spot) == {"exchange", "ws_url", "rest_url", "hosts"}
    assert set(spot["hosts"]) == set(BinanceServer.hosts)
    for real in ("https://api.binance.com", "https://api4.binance.com", "https://data-api.binance.vision"):
        assert spot["hosts"][real] == spot["rest_url"]
    assert spot["hosts"]["wss://stream.binance.com:9443"] == spot["ws_url"] + "/stream"
    assert spot["hosts"]["wss://data-stream.binance.vision"] == spot["ws_url"]
    assert coinm["hosts"] == {
        "https://dapi.binance.com": coinm["rest_url"],
        "wss://dstream.binance.com": coinm["ws_url"],
    }


async def test_a_client_reaches_streams_through_the_mapped_spot_ws_host(http: aiohttp.ClientSession) -> None:
    """``wss://stream.binance.com:9443/ws/...`` with only the host prefix replaced reaches the spot streams."""
    async with Simulator(["binance"], mode="synthetic", config=fast_config()) as sim:
        hosts = sim.endpoints()["binance"]["hosts"]
        url = hosts["wss://stream.binance.com:9443"] + "/ws/btcusdt@trade"
        async with http.ws_connect(url) as ws:
            msg = await asyncio.wait_for(ws.receive_json(), 5)
            assert msg["e"] == "trade" and msg["s"] == "BTCUSDT"


async def test_sim_stats_counts_rest_ws_limits_and_faults(http: aiohttp.ClientSession) -> None:
    clock = FakeClock()
    async with Simulator(["binance"], mode="synthetic", clock=clock, config=fast_config()) as sim:
        ep = sim.endpoints()["binance"]
        base = ep["rest_url"]
        for path in ("/api/v3/time", "/api/v3/depth?symbol=BTCUSDT&limit=100", "/api/v3/nope"):
            async with http.get(base + path) as r:
                await r.read()
        async with http.ws_connect(ep["ws_url"] + "/ws/btcusdt@depth@100ms") as ws:
            conn = await sim.binance.wait_subscribed("btcusdt@depth@100ms")
            await clock.advance(0.35)
            for _ in range(3):
                await ws.receive()
            sim.inject(Fault("stall", duration_s=1.0), exchange="binance")
            async with http.get(base + "/_sim/stats") as r:
                assert r.status == 200 and r.content_type == "application/json"
                stats = await r.json()
            assert stats["connections"] == {"open": 1, "total": 1}
            assert (
                stats["frames_sent"]
                == {"btcusdt@depth@100ms": 3}
                == {k: v.frames for k, v in conn.streams.items()}
            )
        assert stats["rest"]["requests"] == 3  # /_sim/stats itself is not counted
        assert stats["rest"]["weight"] == 1 + 5  # time 1, depth(limit 100) 5, the unknown path 0
        assert stats["rest"]["by_path"] == {"/api/v3/time": 1, "/api/v3/depth": 1, "/api/v3/nope": 1}
        assert (stats["rest"]["429"], stats["rest"]["418"]) == (0, 0)
        assert stats["faults"] == {"stall": 1}
        assert stats["exchange"] == "binance" and stats["listening"] is True


async def test_rest_limit_scales_the_weight_window_down(http: aiohttp.ClientSession) -> None:
    """``rest_limits={"binance": (3, 10.0)}``: 3 weight per 10 s, then HTTP 429 with ``Retry-After`` and the
    ``X-MBX-USED-WEIGHT-10S`` header, then 418 for a request sent while the 429 holds ("LIMITS" of
    https://developers.binance.com/docs/binance-spot-api-docs/rest-api/limits)."""
    clock = FakeClock(start=1000.0)  # a window boundary: the 429 lasts the whole 10 s
    async with Simulator(
        ["binance"], mode="synthetic", clock=clock, config=fast_config(), rest_limits={"binance": (3, 10.0)}
    ) as sim:
        assert sim.binance.rest_limit_override == (3, 10.0)
        url = sim.endpoints()["binance"]["rest_url"] + "/api/v3/ping"
        for used in (1, 2, 3):
            async with http.get(url) as r:
                assert r.status == 200 and r.headers["X-MBX-USED-WEIGHT-10S"] == str(used)
        async with http.get(url) as r:
            assert r.status == 429 and r.headers["Retry-After"] == "10"
            assert r.headers["X-MBX-USED-WEIGHT-10S"] == "3"
            body = await r.json()
            assert body["code"] == -1003 and "3 request weight per 10 SECOND" in body["msg"]
        async with http.get(url) as r:
            assert r.status == 418 and int(r.headers["Retry-After"]) > 0
        stats = sim.binance.sim_stats()["rest"]
        assert (stats["429"], stats["418"]) == (1, 1) and stats["requests"] == 5


def test_parse_rest_limit_and_cli_validation() -> None:
    assert parse_rest_limit("binance=50/10") == ("binance", (50, 10.0))
    assert parse_rest_limit("okx=5/500ms") == ("okx", (5, 0.5))
    for bad in ("binance", "binance=50", "binance=0/10", "binance=5/0", "kraken=5/10", "binance=x/10"):
        with pytest.raises(ValueError):
            parse_rest_limit(bad)
    with pytest.raises(ValueError, match="rest_limits"):
        Simulator(["binance"], rest_limits={"kraken": (1, 1.0)})
    runner = CliRunner()
    result = runner.invoke(app, ["simulate", "--rest-limit", "binance=0/10"])
    assert result.exit_code == 2 and "--rest-limit" in result.output
    result = runner.invoke(app, ["simulate", "--exchange", "kraken"])
    assert result.exit_code == 2 and "binancecoinm" in result.output
