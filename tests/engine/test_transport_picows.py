"""Real sockets on 127.0.0.1 only: the picows transport against a websockets server, and ManagedConnection
over it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from websockets.asyncio.server import ServerConnection, serve

from cryptolink.clock import FakeClock
from cryptolink.engine.connection import EngineConfig, ManagedConnection, MarketData
from cryptolink.engine.errors import ConnectError, ConnectionClosed, FrameTooLarge, HandshakeTimeout
from cryptolink.engine.events import ConnectionEvent, ConnectionEventType
from cryptolink.engine.state import ConnectionState
from cryptolink.engine.transport_picows import PicowsSession, PicowsTransport
from cryptolink.exchanges.base import ConnectionPolicy, ConnectionSpec, KeepalivePolicy

from .fakes import BTC_TRADES, FakeAdapter, trade, until

Handler = Callable[[ServerConnection], Awaitable[None]]


class Peer:
    """A websockets server running ``handler`` per connection; keeps what it saw."""

    def __init__(self) -> None:
        self.port = 0
        self.received: list[str | bytes] = []
        self.close_codes: list[int | None] = []
        self.done = asyncio.Event()


@pytest.fixture
async def peer(request: pytest.FixtureRequest) -> AsyncIterator[Peer]:
    handler: Handler = request.param
    p = Peer()

    async def wrapped(ws: ServerConnection) -> None:
        try:
            await handler(ws)
            async for msg in ws:
                p.received.append(msg)
        except Exception:
            pass
        finally:
            await ws.wait_closed()
            p.close_codes.append(ws.close_code)
            p.done.set()

    async with serve(wrapped, "127.0.0.1", 0, ping_interval=None) as server:
        p.port = next(iter(server.sockets)).getsockname()[1]
        yield p


async def connect(peer: Peer, max_frame_bytes: int = 1 << 20, **kw: float) -> PicowsSession:
    return await PicowsTransport(**kw).connect(  # type: ignore[arg-type]
        f"ws://127.0.0.1:{peer.port}/ws", max_frame_bytes=max_frame_bytes
    )


async def burst(ws: ServerConnection) -> None:
    for i in range(50):
        await ws.send(trade(tid=i))
    await ws.send(b"\x01\x02")


@pytest.mark.parametrize("peer", [burst], indirect=True)
async def test_batches_keep_order_text_str_binary_bytes(peer: Peer) -> None:
    sess = await connect(peer)
    got: list[str | bytes] = []
    batches = 0
    while len(got) < 51:
        got.extend(await asyncio.wait_for(sess.recv_batch(), 5))
        batches += 1
    assert got[:50] == [trade(tid=i) for i in range(50)] and got[50] == b"\x01\x02"
    assert batches < 51  # several frames per wakeup
    await sess.send('{"op":"hello"}')
    await sess.close(1000)
    await asyncio.wait_for(peer.done.wait(), 5)
    assert peer.received == ['{"op":"hello"}'] and peer.close_codes == [1000]


async def server_ping_then_close(ws: ServerConnection) -> None:
    waiter = await ws.ping(b"binance-ping-payload")
    await asyncio.wait_for(waiter, 5)  # resolves only on a pong echoing this payload
    await ws.send("pinged")
    await ws.send("last")
    await ws.close(4001, "going away for tests")


@pytest.mark.parametrize("peer", [server_ping_then_close], indirect=True)
async def test_server_ping_echoed_and_close_code_surfaced(peer: Peer) -> None:
    sess = await connect(peer)
    got: list[str | bytes] = []
    with pytest.raises(ConnectionClosed) as info:
        while True:
            got.extend(await asyncio.wait_for(sess.recv_batch(), 5))
    assert got == ["pinged", "last"]  # frames before the close come first
    assert info.value.code == 4001 and info.value.reason == "going away for tests"
    with pytest.raises(ConnectionClosed):
        await sess.send("x")
    await asyncio.wait_for(peer.done.wait(), 5)
    assert peer.close_codes == [4001]


async def fragments(ws: ServerConnection) -> None:
    await ws.send(["{", '"trade":"BTC/USDT",', '"id":1}'])  # one message in three frames
    await ws.send([b"\x00" * 600, b"\x01" * 600])  # 1200 bytes > the 1000-byte limit


@pytest.mark.parametrize("peer", [fragments], indirect=True)
async def test_fragmented_message_assembled_and_bounded(peer: Peer) -> None:
    sess = await connect(peer, max_frame_bytes=1000)
    assert await asyncio.wait_for(sess.recv(), 5) == '{"trade":"BTC/USDT","id":1}'
    with pytest.raises(FrameTooLarge) as info:
        await asyncio.wait_for(sess.recv_batch(), 5)
    assert info.value.limit_bytes == 1000
    await asyncio.wait_for(peer.done.wait(), 5)
    assert peer.close_codes == [1009]


async def big_frame(ws: ServerConnection) -> None:
    await ws.recv()  # "go"
    await ws.send("{broken")
    await ws.send('{"trade":"BTC/USDT","id":2,"pad":"' + "x" * 5000 + '"}')


@pytest.mark.parametrize("peer", [big_frame], indirect=True)
async def test_oversized_frame_and_protocol_ping(peer: Peer) -> None:
    sess = await connect(peer, max_frame_bytes=1024)
    rtt = await asyncio.wait_for(sess.ping(), 5)
    assert 0 <= rtt < 5
    await sess.send("go")
    got: list[str | bytes] = []
    with pytest.raises(FrameTooLarge) as info:
        while True:
            got.extend(await asyncio.wait_for(sess.recv_batch(), 5))
    assert got == ["{broken"] and info.value.limit_bytes == 1024
    with pytest.raises(FrameTooLarge):
        await sess.ping()
    await asyncio.wait_for(peer.done.wait(), 5)
    assert peer.close_codes == [1009]


async def quiet(ws: ServerConnection) -> None:
    return None


@pytest.mark.parametrize("peer", [quiet], indirect=True)
async def test_abort_drops_without_close_frame(peer: Peer) -> None:
    sess = await connect(peer)
    sess.abort()
    with pytest.raises(ConnectionClosed) as info:
        await asyncio.wait_for(sess.recv_batch(), 5)
    assert info.value.code == 1006
    await asyncio.wait_for(peer.done.wait(), 5)
    assert peer.close_codes == [1006]


async def test_handshake_timeout_and_refused() -> None:
    writers: list[asyncio.StreamWriter] = []

    async def handle(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        writers.append(w)

    silent = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    with pytest.raises(HandshakeTimeout) as timeout:
        await PicowsTransport(open_timeout_s=0.2).connect(f"ws://127.0.0.1:{port}/ws", max_frame_bytes=1024)
    assert str(timeout.value) == "no WebSocket handshake within 0.2 s"
    assert isinstance(timeout.value.__cause__, TimeoutError)
    for w in writers:
        w.close()
    silent.close()
    await silent.wait_closed()
    with pytest.raises(ConnectError) as refused:
        await PicowsTransport(open_timeout_s=1).connect(f"ws://127.0.0.1:{port}/", max_frame_bytes=1024)
    assert str(refused.value) == "connection refused"  # the URL is said once, by the engine's log line


async def http_only(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    await writer.drain()
    writer.close()


async def test_non_websocket_answer_is_connect_error() -> None:
    server = await asyncio.start_server(http_only, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(ConnectError) as info:
            await PicowsTransport(open_timeout_s=2).connect(f"ws://127.0.0.1:{port}/", max_frame_bytes=1024)
        assert not isinstance(info.value, HandshakeTimeout)
    finally:
        server.close()
        await server.wait_closed()


async def scripted(ws: ServerConnection) -> None:
    await ws.send("{broken")
    await ws.send(trade(tid=1))
    await ws.send('{"trade":"BTC/USDT","id":2,"pad":"' + "x" * 5000 + '"}')


@pytest.mark.parametrize("peer", [scripted], indirect=True)
async def test_engine_over_picows_malformed_counted_oversized_resets(peer: Peer) -> None:
    events: list[ConnectionEvent] = []
    data: list[MarketData] = []
    policy = ConnectionPolicy(KeepalivePolicy(protocol_ping_interval_s=None), max_frame_bytes=1024)
    conn = ManagedConnection(
        FakeAdapter(policy),
        ConnectionSpec(f"ws://127.0.0.1:{peer.port}/ws", (BTC_TRADES,)),
        conn_id="picows",
        config=EngineConfig(seed=1),
        clock=FakeClock(),
        transport=PicowsTransport(open_timeout_s=1, close_timeout_s=0.5),
        on_data=lambda c, items: data.extend(items),
        on_event=events.append,
    )
    await conn.start()
    await until(lambda: conn.stats().oversized_frames == 1, 5.0)
    st = conn.stats()
    assert st.decode_errors == 1 and len(data) == 1  # malformed skipped, the trade after it delivered
    assert any(e.type is ConnectionEventType.DISCONNECTED for e in events)
    await until(lambda: conn.state is ConnectionState.RECONNECTING or conn.stats().successful_reconnects > 0)
    await conn.stop()


async def two_hundred(ws: ServerConnection) -> None:
    for i in range(200):
        await ws.send(trade(tid=i))


@pytest.mark.parametrize("peer", [two_hundred], indirect=True)
async def test_receive_queue_bounded_reading_paused_then_resumed(peer: Peer) -> None:
    sess = await PicowsTransport(max_queue=10).connect(f"ws://127.0.0.1:{peer.port}/ws", max_frame_bytes=4096)
    listener = sess._l
    await until(lambda: len(listener.frames) >= 10, 5.0)
    assert listener.reading_paused  # the socket is not read while the reader is behind
    got: list[str | bytes] = []
    sizes: list[int] = []
    while len(got) < 200:
        batch = await asyncio.wait_for(sess.recv_batch(), 5)
        got.extend(batch)
        sizes.append(len(batch))
    assert got == [trade(tid=i) for i in range(200)]
    assert max(sizes) <= 10 and not listener.reading_paused
    await sess.close()
