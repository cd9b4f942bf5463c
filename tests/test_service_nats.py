"""``cryptolink run`` with a ``nats:`` section, against the simulator and the machine's NATS server: every event
published to JetStream (trades, books from a snapshot on, the NATS sink's report section, exit code 0), and
refused starts (a stream that differs from the configuration, no NATS server answering) before any exchange is
contacted."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any
from uuid import uuid4

import msgspec
import nats
import nats.js.errors
import pytest
from nats.js.api import StreamConfig

from cryptolink.config import CryptolinkConfig
from cryptolink.manager import ExchangeManager
from cryptolink.models import BookUpdate, Trade
from cryptolink.service import EXIT_DATA_LOST, EXIT_OK, EXIT_REFUSED, serve
from cryptolink.simulator import Simulator
from tests.sinks.test_nats_sink import private_server

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

NATS_URL = "nats://127.0.0.1:4222"


def config(sim: Simulator, uid: str, **nats_kw: Any) -> CryptolinkConfig:
    ep = sim.endpoints()["okx"]
    return CryptolinkConfig.from_dict(
        {
            "exchanges": {
                "okx": {"symbols": ["BTC/USDT"], "ws_url": ep["ws_url"], "rest_url": ep["rest_url"]}
            },
            "status": {"enabled": False},
            "nats": {
                "servers": [NATS_URL],
                "subject_root": f"svc{uid}",
                "stream": {"name": f"SVC_{uid}", "storage": "memory"},
                **nats_kw,
            },
        },
        env={},
    )


async def stored(stream: str) -> list[tuple[str, bytes]]:
    """Every message of ``stream``: (subject, payload)."""
    nc = await nats.connect(NATS_URL)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        out = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            msg = await js.get_msg(stream, seq)
            assert msg.subject is not None and msg.data is not None
            out.append((msg.subject, msg.data))
        return out
    finally:
        await nc.close()


async def delete_stream(name: str) -> None:
    nc = await nats.connect(NATS_URL)
    try:
        await nc.jetstream().delete_stream(name)
    except nats.js.errors.NotFoundError:
        pass
    finally:
        await nc.close()


async def test_a_run_publishes_trades_and_books_and_reports_the_sink() -> None:
    uid = uuid4().hex[:10]
    try:
        async with Simulator(exchanges=["okx"], speed=2.0) as sim:
            cfg = config(sim, uid)
            manager = ExchangeManager(cfg)
            trades = manager.trades("okx")
            deltas = manager.book_updates("okx")
            stop = asyncio.Event()
            task = asyncio.create_task(serve(cfg, stop, manager=manager))
            for _ in range(3):
                await asyncio.wait_for(trades.get(), 20)
            for _ in range(3):
                await asyncio.wait_for(deltas.get(), 20)
            stop.set()
            result = await asyncio.wait_for(task, 30)
        msgs = await stored(f"SVC_{uid}")
    finally:
        await delete_stream(f"SVC_{uid}")
    assert result.exit_code == EXIT_OK, result.report
    assert "NATS sink" in result.report and "DATA LOST" not in result.report
    trade_msgs = [msgspec.json.decode(p, type=Trade) for s, p in msgs if s == f"svc{uid}.trades.okx.BTC-USDT"]
    books = [msgspec.json.decode(p, type=BookUpdate) for s, p in msgs if s == f"svc{uid}.book.okx.BTC-USDT"]
    assert len(trade_msgs) >= 3 and all(t.feed == "okx" for t in trade_msgs)
    assert len({t.trade_id for t in trade_msgs}) == len(trade_msgs)  # one copy each
    assert books and books[0].is_snapshot and len(books) >= 4
    chain = [b for b in books if not b.is_snapshot]
    held = books[0].sequence
    for b in chain:  # every delta follows the update before it: a reader can keep the book from the stream
        assert b.prev_sequence is not None and b.prev_sequence <= held < b.sequence
        held = b.sequence


async def test_a_stream_that_differs_refuses_the_start_before_any_exchange() -> None:
    uid = uuid4().hex[:10]
    nc = await nats.connect(NATS_URL)
    try:
        await nc.jetstream().add_stream(
            StreamConfig(name=f"SVC_{uid}", subjects=[f"svc{uid}.>"], max_age=60.0, storage="memory")  # type: ignore[arg-type]
        )
        async with Simulator(exchanges=["okx"]) as sim:
            result = await serve(config(sim, uid))
            assert sim.okx.all_connections() == []
    finally:
        await nc.close()
        await delete_stream(f"SVC_{uid}")
    assert result.exit_code == EXIT_REFUSED
    assert (
        result.error is not None and f"stream SVC_{uid}" in result.error and "max_age is 60 s" in result.error
    )


async def test_no_nats_server_refuses_the_start() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    async with Simulator(exchanges=["okx"]) as sim:
        cfg = config(sim, uuid4().hex[:10], servers=[f"nats://127.0.0.1:{port}"], connect_timeout_s=1)
        result = await serve(cfg)
        assert sim.okx.all_connections() == []
    assert result.exit_code == EXIT_REFUSED
    assert result.error is not None and f"127.0.0.1:{port}" in result.error


async def test_events_lost_while_nats_is_down_end_the_run_with_exit_code_1(tmp_path: Path) -> None:
    """NATS goes away mid-run and the sink's small buffer overflows: the run goes on, the loss is in the report
    (and a gap event in the stream once NATS is back), and the exit code is 1."""
    uid = uuid4().hex[:10]
    async with private_server(tmp_path / "store") as server, Simulator(exchanges=["okx"], speed=4.0) as sim:
        cfg = config(
            sim,
            uid,
            servers=[server.url],
            buffer_max_events=5,
            reconnect_wait_s=0.1,
            stream={"name": f"SVC_{uid}", "storage": "file"},
        )
        manager = ExchangeManager(cfg)
        trades = manager.trades("okx")
        stop = asyncio.Event()
        task = asyncio.create_task(serve(cfg, stop, manager=manager))
        await asyncio.wait_for(trades.get(), 20)
        await server.stop()
        for _ in range(20):  # more events than the buffer holds arrive while NATS is down
            await asyncio.wait_for(trades.get(), 20)
        await server.start()
        stop.set()
        result = await asyncio.wait_for(task, 30)
    assert result.exit_code == EXIT_DATA_LOST, result.report
    assert "DATA LOST" in result.report and "overflow" in result.report
