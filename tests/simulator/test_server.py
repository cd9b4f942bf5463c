"""Every fault kind is observable by a raw client; per-connection sent-records match what the client
received."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from cryptolink.clock import FakeClock
from cryptolink.simulator import Fault, Simulator
from tests.simulator.sim_helpers import fast_config, recv_close, recv_json, recv_until

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


async def test_stall_stops_data_but_answers_pings(http: aiohttp.ClientSession) -> None:
    clock = FakeClock()  # data flows only when the test advances time: the stall window is exact
    async with Simulator(["binance"], mode="synthetic", clock=clock, config=fast_config()) as sim:
        url = sim.endpoints()["binance"]["ws_url"] + "/ws/btcusdt@trade"
        async with http.ws_connect(url, autoping=False) as ws:
            conn = await sim.binance.wait_subscribed("btcusdt@trade")
            await clock.advance(0.5)
            st = conn.streams["btcusdt@trade"]
            before = st.last_id
            assert before is not None
            for _ in range(st.frames):  # drain what was sent before the stall
                assert (await ws.receive()).type == aiohttp.WSMsgType.TEXT
            sim.inject(Fault("stall", duration_s=5.0), exchange="binance")
            await ws.ping(b"still there?")
            pong = await ws.receive()
            assert (pong.type, pong.data) == (
                aiohttp.WSMsgType.PONG,
                b"still there?",
            )  # answered in the stall
            await clock.advance(2.0)  # trades happen inside the stall: none is sent
            assert conn.stalled > 0 and st.last_id == before and conn.is_open
            await clock.advance(3.5)  # stall over: data resumes with trades made after it
            frame = await recv_json(ws)
            assert (
                frame["e"] == "trade" and frame["t"] == before + conn.stalled + 1
            )  # the stalled ones are gone


async def test_noping_stops_server_pings_and_pongs(http: aiohttp.ClientSession) -> None:
    clock = FakeClock()
    cfg = fast_config(binance={"ping_interval_s": 0.05, "pong_timeout_s": 30.0})
    async with (
        Simulator(["binance"], mode="synthetic", clock=clock, config=cfg) as sim,
        http.ws_connect(sim.endpoints()["binance"]["ws_url"] + "/ws", autoping=False) as ws,
    ):
        await sim.binance.wait_until(lambda: sim.binance.connections)
        conn = next(iter(sim.binance.connections.values()))
        await clock.advance(0.05)  # the first server ping is due
        msg = await ws.receive()
        assert msg.type == aiohttp.WSMsgType.PING
        sim.inject(Fault("noping", duration_s=30.0), exchange="binance")
        before = conn.pings_sent
        await ws.ping(b"are you there")
        await ws.send_str(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 7}))
        # frames are handled in order and a pong would be written before the queued reply: the reply comes first
        assert await recv_json(ws) == {"result": [], "id": 7}
        await clock.advance(1.0)  # twenty ping intervals
        assert conn.pings_sent == before


async def test_delay_holds_frames(http: aiohttp.ClientSession) -> None:
    clock = FakeClock()
    async with Simulator(["binance"], mode="synthetic", clock=clock, config=fast_config()) as sim:
        url = sim.endpoints()["binance"]["ws_url"] + "/ws/btcusdt@depth@100ms"
        async with http.ws_connect(url) as ws:
            conn = await sim.binance.wait_subscribed("btcusdt@depth@100ms")
            sim.inject(Fault("delay", amount_ms=300.0, duration_s=5.0), exchange="binance")
            await clock.advance(0.25)  # pushes at 0.1 s and 0.2 s
            queued = conn.streams["btcusdt@depth@100ms"].frames
            assert queued == 2 and conn.frames_sent == 0  # all held
            await clock.advance(0.15)  # at 0.4 s the push of 0.1 s is 300 ms old, the one of 0.2 s is not
            first = await recv_json(ws)
            assert first["e"] == "depthUpdate" and 0 < conn.frames_sent < queued


async def test_a_closed_connection_frees_its_unsent_frames(http: aiohttp.ClientSession) -> None:
    """The last 1000 closed connections are kept for stats: their queued frames must not be (a slow reader's
    queue is full when it is cut)."""
    clock = FakeClock()
    async with Simulator(["binance"], mode="synthetic", clock=clock, config=fast_config()) as sim:
        url = sim.endpoints()["binance"]["ws_url"] + "/ws/btcusdt@depth@100ms"
        async with http.ws_connect(url):
            conn = await sim.binance.wait_subscribed("btcusdt@depth@100ms")
            sim.inject(Fault("delay", amount_ms=10_000.0, duration_s=60.0), exchange="binance")
            await clock.advance(0.55)
            assert conn._queue.qsize() >= 4  # held by the delay
            sim.inject(Fault("drop"), exchange="binance")
            await conn.closed
        assert sim.binance.closed_connections[-1] is conn and conn._queue.empty()


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
    ws = await _connect(http, sim, "/ws/btcusdt@depth@100ms")  # 100 ms pacing: 40 diffs in ~4 s, not 40 s
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
    assert gaps == 1 and conn.streams["btcusdt@depth@100ms"].skipped == 1


async def test_reject_next_subscription(http: aiohttp.ClientSession, sim: Simulator) -> None:
    ws = await _connect(http, sim)
    sim.inject(Fault("reject"), exchange="binance")
    await ws.send_str(json.dumps({"method": "SUBSCRIBE", "params": ["ethusdt@trade"], "id": 9}))
    err = await recv_until(ws, lambda f: f.get("id") == 9)
    assert err["error"]["code"] == 2
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


@pytest.mark.timeout(30)
async def test_outage_refuses_connections_then_listens_again(http: aiohttp.ClientSession) -> None:
    clock = FakeClock()  # the outage ends when the test moves time, not after a wall-clock wait
    async with Simulator(["binance"], mode="synthetic", clock=clock, config=fast_config()) as sim:
        server = sim.binance
        port, rest = server.port, sim.endpoints()["binance"]["rest_url"]
        ws = await http.ws_connect(sim.endpoints()["binance"]["ws_url"] + "/ws/btcusdt@trade")
        await server.wait_subscribed("btcusdt@trade")
        await clock.advance(0.5)
        src = server.sources["BTCUSDT"]
        before = src.last_trade_id
        sim.inject(Fault("outage", duration_s=5.0), exchange="binance")
        await recv_close(ws)  # the open WebSocket is cut
        assert server.closed_connections[-1].close_reason == "fault: outage" and not server.listening
        with pytest.raises(aiohttp.ClientConnectorError):  # TCP connects are refused, REST included
            async with http.get(rest + "/api/v3/time"):
                pass
        await clock.advance(3.0)  # still down; the market keeps running
        during = src.last_trade_id
        assert during > before and not server.listening
        with pytest.raises(aiohttp.ClientConnectorError):
            await http.ws_connect(sim.endpoints()["binance"]["ws_url"] + "/ws")
        await clock.advance(2.5)  # past the end: listening again on the same port
        await server.wait_until(lambda: server.listening)
        assert server.port == port and sim.stats()["binance"]["outages"] == 1
        async with http.get(rest + "/api/v3/time") as r:
            assert r.status == 200
        async with http.ws_connect(sim.endpoints()["binance"]["ws_url"] + "/ws/btcusdt@trade") as ws2:
            await server.wait_subscribed("btcusdt@trade")
            await clock.advance(0.5)
            assert (await recv_json(ws2))["t"] > during  # ids kept increasing through the outage
