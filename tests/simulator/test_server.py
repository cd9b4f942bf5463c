"""Every fault kind is observable by a raw client; per-connection sent-records match what the client
received."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from sim_helpers import fast_config, recv_close, recv_json, recv_until

from cryptolink.simulator import Fault, Simulator

pytestmark = pytest.mark.integration

STREAM = "/stream?streams=btcusdt@depth@100ms/btcusdt@trade"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(["binance"], mode="synthetic", config=fast_config()) as s:
        yield s


async def _connect(
    http: aiohttp.ClientSession, sim: Simulator, path: str = STREAM
) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(sim.endpoints()["binance"]["ws_url"] + path)
    await recv_json(ws)
    return ws


async def test_drop_aborts_without_close_frame(http: aiohttp.ClientSession, sim: Simulator) -> None:
    ws = await _connect(http, sim)
    sim.inject(Fault("drop"), exchange="binance")
    msg = await recv_close(ws)
    assert msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSE)
    assert ws.close_code in (None, 1006)
    assert sim.binance.closed_connections[-1].close_reason == "fault: drop"


async def test_close_with_code_from_spec(http: aiohttp.ClientSession) -> None:
    async with Simulator(
        ["binance"], mode="synthetic", config=fast_config(), faults="close:4001@0.3s"
    ) as sim:
        ws = await _connect(http, sim)
        await recv_close(ws)
        assert ws.close_code == 4001


async def test_stall_stops_data_but_answers_pings(http: aiohttp.ClientSession, sim: Simulator) -> None:
    url = sim.endpoints()["binance"]["ws_url"] + STREAM
    async with http.ws_connect(url, autoping=False) as ws:
        await recv_json(ws)
        conn = next(iter(sim.binance.connections.values()))
        loop = asyncio.get_running_loop()
        sim.inject(Fault("stall", duration_s=0.5), exchange="binance")
        t0 = loop.time()
        await ws.ping(b"still there?")

        async def until(kind: aiohttp.WSMsgType, after: float) -> float:
            while True:
                msg = await ws.receive()
                if msg.type == kind and loop.time() - t0 >= after:
                    return loop.time() - t0

        assert await asyncio.wait_for(until(aiohttp.WSMsgType.PONG, 0.0), 2) < 0.4  # pings answered
        # the only data frames in the stall window are those already queued before it; then data resumes
        await asyncio.wait_for(until(aiohttp.WSMsgType.TEXT, 0.3), 5)
        assert conn.stalled > 0 and conn.is_open


async def test_noping_stops_server_pings(http: aiohttp.ClientSession) -> None:
    cfg = fast_config(binance={"ping_interval_s": 0.05, "pong_timeout_s": 30.0})
    async with (
        Simulator(["binance"], mode="synthetic", config=cfg) as sim,
        http.ws_connect(sim.endpoints()["binance"]["ws_url"] + "/ws", autoping=False) as ws,
    ):
        msg = await asyncio.wait_for(ws.receive(), 5)
        assert msg.type == aiohttp.WSMsgType.PING
        conn = next(iter(sim.binance.connections.values()))
        sim.inject(Fault("noping", duration_s=30.0), exchange="binance")
        before = conn.pings_sent
        await ws.ping(b"are you there")
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(ws.receive(), 0.4)  # neither pings nor our pong arrive
        assert conn.pings_sent == before


async def test_delay_holds_frames(http: aiohttp.ClientSession, sim: Simulator) -> None:
    ws = await _connect(http, sim)
    loop = asyncio.get_running_loop()
    sim.inject(Fault("delay", amount_ms=300.0, duration_s=5.0), exchange="binance")
    t_prev = loop.time()
    gaps = []
    for _ in range(4):
        await recv_json(ws)
        gaps.append(loop.time() - t_prev)
        t_prev = loop.time()
    assert max(gaps) >= 0.25


async def test_corrupt_frame(http: aiohttp.ClientSession, sim: Simulator) -> None:
    ws = await _connect(http, sim)
    sim.inject(Fault("corrupt"), exchange="binance")

    async def find_bad() -> str:
        while True:
            msg = await ws.receive()
            try:
                json.loads(msg.data)
            except ValueError:
                return str(msg.data)

    assert await asyncio.wait_for(find_bad(), 5)


async def test_gap_skips_one_delta_and_is_recorded(http: aiohttp.ClientSession, sim: Simulator) -> None:
    ws = await _connect(http, sim, "/ws/btcusdt@depth")
    conn = next(iter(sim.binance.connections.values()))
    prev = None
    gaps = 0
    for i in range(40):
        d = await recv_json(ws)
        if prev is not None and d["U"] != prev + 1:
            gaps += 1
        prev = d["u"]
        if i == 5:
            sim.inject(Fault("gap", symbol="BTCUSDT"), exchange="binance")
    assert gaps == 1 and conn.streams["btcusdt@depth"].skipped == 1


async def test_reject_next_subscription(http: aiohttp.ClientSession, sim: Simulator) -> None:
    ws = await _connect(http, sim)
    sim.inject(Fault("reject"), exchange="binance")
    await ws.send_str(json.dumps({"method": "SUBSCRIBE", "params": ["ethusdt@trade"], "id": 9}))
    err = await recv_until(ws, lambda f: f.get("id") == 9)
    assert err["code"] == 2
    await ws.send_str(json.dumps({"method": "SUBSCRIBE", "params": ["ethusdt@trade"], "id": 10}))
    assert await recv_until(ws, lambda f: f.get("id") == 10) == {"result": None, "id": 10}


async def test_forced_lifetime_close_on_one_connection(http: aiohttp.ClientSession, sim: Simulator) -> None:
    ws1 = await _connect(http, sim)
    ws2 = await _connect(http, sim)
    first = min(sim.binance.connections)
    sim.inject(Fault("lifetime"), exchange="binance", connection=first)
    await recv_close(ws1)
    assert ws1.close_code == 1001
    assert not ws2.closed and len(sim.binance.connections) == 1
    await ws2.close()


async def test_sent_records_match_received(http: aiohttp.ClientSession, sim: Simulator) -> None:
    """Nothing lost, nothing twice: the client's frames equal the server's per-stream record."""
    ws = await _connect(http, sim, "/stream?streams=btcusdt@trade")
    received = [(await recv_json(ws))["data"]["t"] for _ in range(50)]
    conn = next(iter(sim.binance.connections.values()))
    await ws.close()
    await sim.binance.wait_until(lambda: not conn.is_open)
    st = sim.stats()["binance"]["connections"][-1].streams["btcusdt@trade"]
    assert st.non_increasing == 0
    assert received == sorted(set(received)) and all(b == a + 1 for a, b in itertools.pairwise(received))
    assert st.last_id is not None and st.first_id is not None
    assert st.first_id <= received[0] - 1 and received[-1] <= st.last_id
    assert st.frames == st.last_id - st.first_id + 1
