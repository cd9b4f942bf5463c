"""The status server with real WebSocket clients: a client that never reads is dropped after the send timeout
(counted, no traceback) and its socket aborted at the stop; clients that read are closed cleanly (1001) at the
stop, with nothing logged as an error; the listening socket's bounds."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import AsyncIterator

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from cryptolink.config import CryptolinkConfig, StatusConfig
from cryptolink.manager import ExchangeManager
from cryptolink.status.app import create_app
from cryptolink.status.server import UNACKED_TIMEOUT_S, StatusServer
from cryptolink.status.service import PushClient, StatusService
from cryptolink.status.snapshot import StatusSnapshot
from cryptolink.status.surface import StatusSurface

pytestmark = [pytest.mark.timeout(60)]

PADDING = " " * 1_000_000
"""Appended to every push (valid JSON text still): a client that does not read fills the socket buffers in a few
pushes."""


def _manager() -> ExchangeManager:
    return ExchangeManager(
        CryptolinkConfig.from_dict({"exchanges": {"okx": {"symbols": ["BTC/USDT"]}}}, env={})
    )


class BigPushes(StatusService):
    """The status service with 1 MB push messages, and an event set when a slow client is dropped."""

    def __init__(self, config: StatusConfig) -> None:
        super().__init__(_manager(), config)
        self.dropped = asyncio.Event()

    def _message(self, snap: StatusSnapshot) -> str:
        return super()._message(snap) + PADDING

    def drop_slow_client(self, client: PushClient) -> None:
        super().drop_slow_client(client)
        self.dropped.set()


async def _served(service: StatusService) -> AsyncIterator[StatusServer]:
    server = StatusServer(create_app(service), "127.0.0.1", 0)
    await service.start()
    await server.start()
    try:
        yield server
    finally:
        await service.close_clients()  # what StatusSurface.stop does first
        await server.stop()
        await service.stop()


async def test_a_client_that_never_reads_is_dropped_and_aborted_at_the_stop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    # pushes every 0.2 s: the send timeout is 1 s
    service = BigPushes(StatusConfig(push_interval_s=0.2, snapshot_interval_s=0.1))
    async for server in _served(service):
        ws_url = server.url.replace("http://", "ws://") + "/ws/status"
        # max_queue=1: the client stops reading its socket after one message and never reads again
        async with websockets.connect(ws_url, max_queue=1, close_timeout=0.1) as ws:
            await asyncio.wait_for(service.dropped.wait(), 40)
            assert service.clients == 0 and service.push_clients_dropped == 1
            assert service.refresh().push_clients_dropped == 1  # in the snapshot, thus /metrics
            await service.close_clients()
            await server.stop()  # its socket still holds what it never read: aborted, not waited for
            assert server.aborted >= 1
            with pytest.raises(ConnectionClosed):
                while True:  # what was buffered, then the end of the aborted connection
                    await asyncio.wait_for(ws.recv(), 10)
    dropped = [r for r in caplog.records if "took no push for 1.0 s; closed" in r.getMessage()]
    assert len(dropped) == 1 and dropped[0].levelno == logging.WARNING
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


async def test_at_the_stop_reading_clients_are_closed_with_1001_and_nothing_is_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    surface = StatusSurface(_manager(), StatusConfig(port=0, push_interval_s=0.2, snapshot_interval_s=0.1))
    await surface.start()
    assert surface.server is not None
    ws_url = surface.server.url.replace("http://", "ws://") + "/ws/status"
    clients = [await websockets.connect(ws_url) for _ in range(3)]
    try:
        for ws in clients:
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "exchange_status"
        assert surface.service.clients == 3
        await asyncio.wait_for(surface.stop(), 20)
        for ws in clients:
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(ws.recv(), 10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    finally:
        for ws in clients:
            await ws.close()
    assert surface.service.clients == 0 and surface.server.aborted == 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert "CancelledError" not in caplog.text


async def test_the_listening_socket_bounds_unacknowledged_data() -> None:
    server = StatusServer(create_app(StatusService(_manager(), StatusConfig())), "127.0.0.1", 0)
    await server.start()
    try:
        assert server._sock is not None
        if hasattr(socket, "TCP_USER_TIMEOUT"):
            value = server._sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT)
            assert value == int(UNACKED_TIMEOUT_S * 1000)
        assert server._server is not None and server._server.config.limit_concurrency == 256
    finally:
        await server.stop()
    await server.stop()  # idempotent
