"""Real sockets on 127.0.0.1 only: the websockets transport and ManagedConnection over it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.server import ServerConnection, serve

from cryptolink.clock import FakeClock
from cryptolink.engine.connection import EngineConfig, ManagedConnection, MarketData
from cryptolink.engine.errors import ConnectError, FrameTooLarge, HandshakeTimeout
from cryptolink.engine.events import ConnectionEvent, ConnectionEventType
from cryptolink.engine.state import ConnectionState
from cryptolink.engine.transport import WebsocketsTransport
from cryptolink.exchanges.base import ConnectionPolicy, ConnectionSpec, KeepalivePolicy

from .fakes import BTC_TRADES, FakeAdapter, state_of, trade, until


@pytest.fixture
async def silent_tcp() -> AsyncIterator[int]:
    """Accepts TCP and never answers the WebSocket handshake."""
    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    for w in writers:
        w.close()
    server.close()
    await server.wait_closed()


@pytest.fixture
async def scripted_ws() -> AsyncIterator[int]:
    """On connect sends: a malformed frame, a trade, a 5000-byte frame, then echoes."""

    async def handler(ws: ServerConnection) -> None:
        await ws.send("{broken")
        await ws.send(trade(tid=1))
        await ws.send('{"trade":"BTC/USDT","id":2,"pad":"' + "x" * 5000 + '"}')
        async for msg in ws:
            await ws.send(msg)

    async with serve(handler, "127.0.0.1", 0) as server:
        yield next(iter(server.sockets)).getsockname()[1]


async def test_handshake_timeout_is_typed(silent_tcp: int) -> None:
    t = WebsocketsTransport(open_timeout_s=0.2)
    with pytest.raises(HandshakeTimeout) as info:
        await t.connect(f"ws://127.0.0.1:{silent_tcp}/ws", max_frame_bytes=1024)
    assert isinstance(info.value.__cause__, TimeoutError)


async def test_refused_is_connect_error() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(ConnectError):
        await WebsocketsTransport(open_timeout_s=1).connect(f"ws://127.0.0.1:{port}/", max_frame_bytes=1024)


async def test_oversized_frame_and_ping(scripted_ws: int) -> None:
    big = await WebsocketsTransport().connect(f"ws://127.0.0.1:{scripted_ws}/", max_frame_bytes=1 << 20)
    assert await big.recv() == "{broken"
    rtt = await big.ping()
    assert 0 <= rtt < 5
    await big.close()
    sess = await WebsocketsTransport().connect(f"ws://127.0.0.1:{scripted_ws}/", max_frame_bytes=1024)
    assert await sess.recv() == "{broken"
    await sess.recv()
    with pytest.raises(FrameTooLarge) as info:
        await sess.recv()
    assert info.value.limit_bytes == 1024
    sess.abort()


def make_conn(
    port: int, events: list[ConnectionEvent], data: list[MarketData], max_frame: int
) -> ManagedConnection:
    policy = ConnectionPolicy(KeepalivePolicy(protocol_ping_interval_s=None), max_frame_bytes=max_frame)
    return ManagedConnection(
        FakeAdapter(policy),
        ConnectionSpec(f"ws://127.0.0.1:{port}/ws", (BTC_TRADES,)),
        conn_id="real",
        config=EngineConfig(seed=1),
        clock=FakeClock(),
        transport=WebsocketsTransport(open_timeout_s=0.2, close_timeout_s=0.5),
        on_data=lambda c, items: data.extend(items),
        on_event=events.append,
    )


async def test_engine_handshake_timeout_schedules_reconnect(silent_tcp: int) -> None:
    events: list[ConnectionEvent] = []
    conn = make_conn(silent_tcp, events, [], 1 << 20)
    await conn.start()
    await until(lambda: conn.state is ConnectionState.RECONNECTING, 5.0)
    err = [e for e in events if e.type is ConnectionEventType.ERROR]
    assert err and err[0].error is not None and err[0].error.startswith("no WebSocket handshake within")
    assert err[0].description == f"cannot connect to ws://127.0.0.1:{silent_tcp}/ws"
    await until(lambda: any(e.type is ConnectionEventType.RECONNECT_ATTEMPT for e in events), 5.0)
    assert conn.stats().reconnect_attempts == 1
    await conn.stop()


async def test_engine_malformed_counted_oversized_resets(scripted_ws: int) -> None:
    events: list[ConnectionEvent] = []
    data: list[MarketData] = []
    conn = make_conn(scripted_ws, events, data, 1024)
    await conn.start()
    await until(lambda: conn.stats().oversized_frames == 1, 5.0)
    st = conn.stats()
    assert st.decode_errors == 1 and len(data) == 1  # malformed skipped, the trade after it delivered
    assert any(e.type is ConnectionEventType.DISCONNECTED for e in events)
    await conn.stop()


async def test_engine_stays_up_on_malformed_json(scripted_ws: int) -> None:
    events: list[ConnectionEvent] = []
    data: list[MarketData] = []
    conn = make_conn(scripted_ws, events, data, 1 << 20)
    await conn.start()
    await until(lambda: len(data) == 2, 5.0)
    assert conn.stats().decode_errors == 1 and conn.state is ConnectionState.CONNECTED
    assert conn.stats().disconnections == 0
    await conn.stop()
    assert state_of(conn) is ConnectionState.STOPPED
