"""The NATS JetStream sink against real servers: the machine's one at 127.0.0.1:4222, and private ones started
here (outages, credentials). Every test uses its own stream and subject root, and deletes its stream."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any
from uuid import uuid4

import msgspec
import nats
import nats.js.errors
import pytest
from nats.aio.msg import Msg
from nats.js.api import RawStreamMsg, StorageType, StreamConfig

from cryptolink.book.orderbook import BookState, OrderBook
from cryptolink.clock import FakeClock
from cryptolink.config import NatsConfig
from cryptolink.consumer.books import BookRebuilder
from cryptolink.errors import NatsError
from cryptolink.models import BookUpdate, Channel, Gap, GapCause, Side, Ticker, Trade
from cryptolink.sinks.base import Sink
from cryptolink.sinks.nats import MSG_ID_HEADER, NatsEvent, NatsSink, nats_section
from cryptolink.sinks.nats_streams import stream_config
from cryptolink.sinks.nats_subjects import message_id

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

NATS_URL = "nats://127.0.0.1:4222"
FEED = "feedx"
SYMBOL = "BTC/USDT"
T0 = 1_700_000_000_000

_DECODERS: dict[str, msgspec.json.Decoder[Any]] = {
    "trades": msgspec.json.Decoder(Trade),
    "ticker": msgspec.json.Decoder(Ticker),
    "book": msgspec.json.Decoder(BookUpdate),
    "gaps": msgspec.json.Decoder(Gap),
}


# ------------------------------------------------------------------------------------------------ helpers


def config(servers: list[str] | None = None, **kw: Any) -> NatsConfig:
    """A configuration with a stream and subject root of this test only (``kw["stream"]`` merges in)."""
    uid = uuid4().hex[:12]
    stream = {"name": f"CLTEST_{uid}", "storage": "memory", **kw.pop("stream", {})}
    return NatsConfig.model_validate(
        {"servers": servers or [NATS_URL], "subject_root": f"cltest{uid}", "stream": stream, **kw}
    )


def trade(i: int, exchange: str = "binance") -> Trade:
    return Trade(
        exchange=exchange,
        symbol=SYMBOL,
        exchange_symbol="BTCUSDT",
        price=Decimal("42000.10"),
        amount=Decimal("0.00150"),
        side=Side.BUY,
        trade_id=str(i),
        timestamp_ms=T0 + i,
        receipt_ns=(T0 + i) * 1_000_000 + 7,
        sequence=i,
        feed=FEED,
    )


def ticker(i: int) -> Ticker:
    return Ticker(
        exchange="binance",
        symbol=SYMBOL,
        exchange_symbol="BTCUSDT",
        bid_price=Decimal("42000.10"),
        bid_size=Decimal("1.500"),
        ask_price=Decimal("42000.20"),
        ask_size=Decimal("0.0010"),
        last_price=None,
        timestamp_ms=T0 + i,
        receipt_ns=1,
        sequence=i,
        feed=FEED,
    )


def delta(seq: int) -> BookUpdate:
    return BookUpdate(
        exchange="binance",
        symbol=SYMBOL,
        exchange_symbol="BTCUSDT",
        is_snapshot=False,
        bids=((Decimal("42000.10"), Decimal(seq)),),
        asks=((Decimal("42000.30"), Decimal("0")),),
        sequence=seq,
        timestamp_ms=T0 + seq,
        receipt_ns=(T0 + seq) * 1_000_000,
        feed=FEED,
        prev_sequence=seq - 1,
    )


def engine_snapshot(seq: int) -> BookUpdate:
    return BookUpdate(
        exchange="binance",
        symbol=SYMBOL,
        exchange_symbol="BTCUSDT",
        is_snapshot=True,
        bids=((Decimal("42000.10"), Decimal("1.0")),),
        asks=((Decimal("42000.20"), Decimal("2.50")),),
        sequence=seq,
        timestamp_ms=T0 + seq,
        receipt_ns=1,
        feed=FEED,
    )


def live_book(seq: int, state: BookState = BookState.LIVE) -> OrderBook:
    book = OrderBook(SYMBOL)
    book.apply_snapshot(
        [["42000.10", "1.0"], ["41999.90", "3"]], [["42000.20", "2.50"], ["42001", "0.1"]], seq
    )
    book.state = state
    return book


def books_source(books: dict[tuple[str, str], OrderBook]) -> Callable[[str, str], OrderBook | None]:
    def source(feed: str, symbol: str) -> OrderBook | None:
        return books[(feed, symbol)]  # KeyError for a book not running, like Manager.book

    return source


def decode(msg: RawStreamMsg) -> NatsEvent:
    assert msg.subject is not None and msg.data is not None
    return _DECODERS[msg.subject.split(".")[1]].decode(msg.data)  # type: ignore[no-any-return]


def shape_of(event: NatsEvent) -> tuple[str, int | None, int | None] | tuple[str, int]:
    """``("gap", from_ms, to_ms)``, ``("s", sequence)`` (snapshot) or ``("d", sequence)`` (delta)."""
    if isinstance(event, Gap):
        return ("gap", event.from_ms, event.to_ms)
    assert isinstance(event, BookUpdate)
    return ("s" if event.is_snapshot else "d", event.sequence)


async def read_stream(name: str, url: str = NATS_URL) -> list[RawStreamMsg]:
    """Every message of stream ``name``, in stream order."""
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(name)
        return [await js.get_msg(name, seq) for seq in range(info.state.first_seq, info.state.last_seq + 1)]
    finally:
        await nc.close()


async def delete_stream(name: str, url: str = NATS_URL) -> None:
    nc = await nats.connect(url)
    try:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await nc.jetstream().delete_stream(name)
    finally:
        await nc.close()


@contextlib.asynccontextmanager
async def running(sink: NatsSink, *, start: bool = True) -> AsyncIterator[asyncio.Task[None]]:
    """``sink`` started and its publisher running; closed (and its stream deleted) afterwards."""
    task: asyncio.Task[None] | None = None
    try:
        if start:
            await sink.start()
        task = asyncio.create_task(sink.run())
        yield task
    finally:
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await sink.aclose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PrivateServer:
    """A nats-server with JetStream of one test (``nats-server -js -p PORT -sd DIR``), restartable on the same
    port and store directory."""

    def __init__(self, store: Path, *extra: str) -> None:
        self.port = free_port()
        self.store = store
        self.extra = extra
        self.url = f"nats://127.0.0.1:{self.port}"
        self._proc: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None

    async def start(self) -> None:
        proc = self._proc = await asyncio.create_subprocess_exec(
            "nats-server", "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.store), *self.extra,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stderr is not None
        while True:  # the server logs to stderr; it is ready once it says so
            line = await proc.stderr.readline()
            if not line:
                raise RuntimeError(f"nats-server on port {self.port} exited before it was ready")
            if b"Server is ready" in line:
                break
        self._drain = asyncio.create_task(self._read_rest(proc.stderr))

    @staticmethod
    async def _read_rest(stream: asyncio.StreamReader) -> None:
        while await stream.readline():
            pass

    def signal(self, sig: int) -> None:
        assert self._proc is not None
        self._proc.send_signal(sig)

    async def stop(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            self._proc.send_signal(signal.SIGCONT)  # a frozen server cannot stop
            self._proc.terminate()
            await self._proc.wait()
        if self._drain is not None:
            await self._drain


@contextlib.asynccontextmanager
async def private_server(store: Path, *extra: str, start: bool = True) -> AsyncIterator[PrivateServer]:
    server = PrivateServer(store, *extra)
    try:
        if start:
            await server.start()
        yield server
    finally:
        await server.stop()


# ------------------------------------------------------------------------------------------------ wire format


async def test_every_kind_is_published_on_its_subject_with_exact_decimals_and_its_msg_id() -> None:
    cfg = config()
    sink = NatsSink(cfg)
    gap = Gap(
        exchange="binance",
        symbol=SYMBOL,
        exchange_symbol="BTCUSDT",
        stream=Channel.TRADES,
        cause=GapCause.DISCONNECT,
        from_ms=T0,
        to_ms=T0 + 5,
        receipt_ns=3,
        feed=FEED,
        detail="session ended",
    )
    events: list[NatsEvent] = [trade(1), ticker(2), engine_snapshot(3), delta(4), gap]
    try:
        async with running(sink):
            for ev in events:
                sink.write(ev)
            assert await sink.flush(10)
        msgs = await read_stream(cfg.stream.name)
    finally:
        await delete_stream(cfg.stream.name)
    root = cfg.subject_root
    assert [m.subject for m in msgs] == [
        f"{root}.trades.binance.BTC-USDT",
        f"{root}.ticker.binance.BTC-USDT",
        f"{root}.book.binance.BTC-USDT",
        f"{root}.book.binance.BTC-USDT",
        f"{root}.gaps.binance.BTC-USDT",
    ]
    assert [(m.headers or {}).get(MSG_ID_HEADER) for m in msgs] == [message_id(ev) for ev in events]
    assert [m.data for m in msgs] == [msgspec.json.encode(ev) for ev in events]  # the JSONL line, exactly
    assert [decode(m) for m in msgs] == events
    first = decode(msgs[0])
    assert isinstance(first, Trade)
    assert (str(first.price), str(first.amount)) == (
        "42000.10",
        "0.00150",
    )  # the exchange's text, not a float
    st = sink.stats()
    assert (st.accepted, st.acked, st.lost, st.duplicates) == (5, 5, 0, 0)
    assert st.snapshots_published["engine"] == 1
    assert isinstance(sink, Sink)


async def test_channels_not_configured_are_not_published() -> None:
    cfg = config(channels=["trades"])
    sink = NatsSink(cfg)
    try:
        async with running(sink):
            sink.write(trade(1))
            sink.write(ticker(1))
            sink.write(delta(2))
            assert await sink.flush(10)
        msgs = await read_stream(cfg.stream.name)
    finally:
        await delete_stream(cfg.stream.name)
    assert [m.subject for m in msgs] == [f"{cfg.subject_root}.trades.binance.BTC-USDT"]
    assert (sink.stats().ignored, sink.stats().lost) == (2, 0)


async def test_two_publishers_of_the_same_events_store_one_copy() -> None:
    cfg = config()
    first, second = NatsSink(cfg, instance="a"), NatsSink(cfg, instance="b")
    try:
        async with running(first):
            for i in range(40):
                first.write(trade(i))
            assert await first.flush(10)
            async with running(second):
                for i in range(40):
                    second.write(trade(i))
                second.write(trade(40))  # one the first collector missed
                assert await second.flush(10)
        msgs = await read_stream(cfg.stream.name)
    finally:
        await delete_stream(cfg.stream.name)
    assert [(m.headers or {})[MSG_ID_HEADER] for m in msgs] == [f"binance:BTC-USDT:t:{i}" for i in range(41)]
    assert (first.stats().acked, first.stats().duplicates) == (40, 0)
    assert (second.stats().acked, second.stats().duplicates) == (41, 40)
    # closed on purpose with nothing lost: no loss is reported (a run ends with exit code 0)
    assert not first.health().data_lost and not second.health().data_lost


# ------------------------------------------------------------------------------------------------ flow control


async def test_never_more_than_max_pending_acks_in_flight_and_order_kept() -> None:
    cfg = config(max_pending_acks=4)
    sink = NatsSink(cfg)
    try:
        async with running(sink):
            for i in range(300):
                sink.write(trade(i))
            assert await sink.flush(20)
        msgs = await read_stream(cfg.stream.name)
    finally:
        await delete_stream(cfg.stream.name)
    st = sink.stats()
    assert st.max_in_flight == 4  # the window was used, never exceeded
    assert (st.acked, st.published, st.retries, st.lost) == (300, 300, 0, 0)
    assert [decode(m).trade_id for m in msgs] == [str(i) for i in range(300)]  # type: ignore[union-attr]


async def test_full_buffer_loses_the_new_event_counted_and_a_gap_marks_the_hole() -> None:
    cfg = config(buffer_max_events=10)
    sink = NatsSink(cfg)
    try:
        await sink.start()
        for i in range(25):  # the publisher is not running: the buffer fills
            sink.write(trade(i))  # a plain call: returns at once, full buffer or not
        st = sink.stats()
        assert (st.accepted, st.buffered, st.lost, st.lost_by_cause["overflow"]) == (10, 10, 15, 15)
        assert st.open_losses == 1
        async with running(sink, start=False):
            assert await sink.flush(10)
            sink.write(trade(25))  # the first event accepted after the loss brings the gap event
            assert await sink.flush(10)
        msgs = await read_stream(cfg.stream.name)
    finally:
        await delete_stream(cfg.stream.name)
    events = [decode(m) for m in msgs]
    assert [e.trade_id for e in events if isinstance(e, Trade)] == [*(str(i) for i in range(10)), "25"]
    gap = events[10]
    assert isinstance(gap, Gap)
    assert (gap.cause, gap.stream, gap.feed, gap.exchange_symbol) == (
        GapCause.PUBLISH,
        Channel.TRADES,
        FEED,
        "BTCUSDT",
    )
    assert (gap.from_ms, gap.to_ms) == (T0 + 9, T0 + 25)  # last event before the loss, first after it
    assert gap.detail == "15 events not published: buffer full"
    st = sink.stats()
    assert (st.gaps_published, st.open_losses, st.lost) == (1, 0, 15)


async def test_a_message_the_server_refuses_for_good_is_lost_as_rejected() -> None:
    """The stream's own limit is smaller than what the sink assumes (streams: off): JetStream answers 10054."""
    cfg = config(streams="off", max_attempts=5)
    nc = await nats.connect(NATS_URL)
    js = nc.jetstream()
    await js.add_stream(
        StreamConfig(
            name=cfg.stream.name,
            subjects=[f"{cfg.subject_root}.>"],
            max_msg_size=1024,
            storage=StorageType.MEMORY,
        )
    )
    sink = NatsSink(cfg)
    big = msgspec.structs.replace(trade(2), trade_id="x" * 1500)
    try:
        async with running(sink):
            sink.write(trade(1))
            sink.write(big)
            sink.write(trade(3))
            assert await sink.flush(10)
        msgs = await read_stream(cfg.stream.name)
    finally:
        await js.delete_stream(cfg.stream.name)
        await nc.close()
    st = sink.stats()
    assert st.lost_by_cause["rejected"] == 1 and st.lost == 1
    assert (st.published, st.retries, st.gaps_published) == (4, 0, 1)  # refused for good: never sent again
    assert "10054" in (st.last_error or "")
    events = [decode(m) for m in msgs]
    assert events[:2] == [trade(1), trade(3)]
    gap = events[2]  # trade 3 was already on its way: the loss is still open at close, its gap comes then
    assert isinstance(gap, Gap) and (gap.from_ms, gap.to_ms) == (T0 + 2, None)
    assert gap.detail == "1 events not published: refused (too large or not encodable)"


async def test_too_large_for_the_configured_stream_is_refused_before_sending() -> None:
    cfg = config(stream={"max_msg_size": 1024})
    sink = NatsSink(cfg)
    try:
        async with running(sink):
            sink.write(msgspec.structs.replace(trade(1), trade_id="y" * 1500))
            sink.write(trade(2))
            assert await sink.flush(10)
        msgs = await read_stream(cfg.stream.name)
    finally:
        await delete_stream(cfg.stream.name)
    st = sink.stats()
    assert (st.lost_by_cause["rejected"], st.published, st.acked) == (1, 2, 2)  # trade 2 came with a gap
    gap = decode(msgs[0])
    assert (
        isinstance(gap, Gap) and gap.detail == "1 events not published: refused (too large or not encodable)"
    )
    assert decode(msgs[1]) == trade(2)


async def test_resends_go_before_newer_events_in_their_original_order() -> None:
    """No stream captures the subjects at first (no responders): the first events back off and are sent again;
    once the stream exists they are stored before everything written after them."""
    cfg = config(streams="off", max_pending_acks=4, max_attempts=50, ack_timeout_s=2, channels=["trades"])
    sink = NatsSink(cfg)
    nc = await nats.connect(NATS_URL)
    js = nc.jetstream()
    try:
        async with running(sink):
            for i in range(10):
                sink.write(trade(i))
            assert not await sink.flush(0.3)  # refused (no responders) and backing off
            assert sink.stats().retries > 0
            await js.add_stream(stream_config(cfg.model_copy(update={"streams": "create"})))
            for i in range(10, 20):
                sink.write(trade(i))
            assert await sink.flush(20)
        msgs = await read_stream(cfg.stream.name)
    finally:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_stream(cfg.stream.name)
        await nc.close()
    assert [decode(m) for m in msgs] == [trade(i) for i in range(20)]
    st = sink.stats()
    assert (st.lost, st.acked, st.duplicates) == (0, 20, 0)


async def test_no_stream_for_the_subject_means_lost_after_max_attempts() -> None:
    cfg = config(streams="off", max_attempts=3, channels=["trades"])
    sink = NatsSink(cfg)
    async with running(sink):
        sink.write(trade(1))
        sink.write(trade(2))
        assert await sink.flush(10)
    st = sink.stats()
    assert (st.lost_by_cause["attempts"], st.published, st.retries, st.acked) == (2, 6, 4, 0)
    assert "no responders" in (st.last_error or "")
    assert sink.health().data_lost


# ------------------------------------------------------------------------------------------------ outages


async def test_outage_buffers_to_the_bound_then_resends_in_order_with_a_gap_and_a_snapshot(
    tmp_path: Path,
) -> None:
    async with private_server(tmp_path / "store") as server:
        cfg = config(
            [server.url],
            buffer_max_events=50,
            reconnect_wait_s=0.1,
            ack_timeout_s=2,
            snapshot_interval_s=0,
            stream={"storage": "file"},  # survives the restart
        )
        books: dict[tuple[str, str], OrderBook] = {}
        sink = NatsSink(cfg, book_source=books_source(books))
        async with running(sink):
            sink.write(engine_snapshot(1))
            for seq in range(2, 6):
                sink.write(delta(seq))
            assert await sink.flush(10)
            await server.stop()
            await sink.wait_link(up=False)
            for seq in range(6, 86):  # 50 fit in the buffer, 30 are lost
                sink.write(delta(seq))
            st = sink.stats()
            assert (st.buffered, st.lost_by_cause["overflow"], st.connected) == (50, 30, False)
            await server.start()  # same port, same store
            await sink.wait_link(up=True)
            assert await sink.flush(20)
            books[(FEED, SYMBOL)] = live_book(86)
            sink.write(delta(86))
            assert await sink.flush(10)
        msgs = await read_stream(cfg.stream.name, server.url)
    events = [decode(m) for m in msgs]
    shape = [shape_of(e) for e in events]
    assert shape == [
        ("s", 1),
        *(("d", seq) for seq in range(2, 56)),
        ("gap", T0 + 55, T0 + 86),
        ("s", 86),
        ("d", 86),
    ]
    gap = events[55]
    assert isinstance(gap, Gap)
    assert (gap.cause, gap.stream) == (GapCause.PUBLISH, Channel.BOOK)
    assert gap.detail == "30 events not published: buffer full while NATS was unreachable"
    snap = events[56]
    assert isinstance(snap, BookUpdate) and snap.prev_sequence is None
    assert snap.bids == ((Decimal("42000.10"), Decimal("1.0")), (Decimal("41999.90"), Decimal("3")))
    assert snap.asks == ((Decimal("42000.20"), Decimal("2.50")), (Decimal("42001"), Decimal("0.1")))
    st = sink.stats()
    assert (st.disconnects, st.reconnects, st.gaps_published) == (1, 1, 1)
    assert st.snapshots_published == {"engine": 1, "periodic": 0, "after_loss": 1}
    assert (st.lost, st.acked) == (30, 58)


async def test_server_killed_while_publishing_every_event_is_stored_once(tmp_path: Path) -> None:
    """Messages in flight when the server goes are sent again; those it had stored are dropped as duplicates."""
    async with private_server(tmp_path / "store") as server:
        cfg = config(
            [server.url],
            max_pending_acks=20,
            reconnect_wait_s=0.1,
            ack_timeout_s=30,  # what was in flight is sent again when the link returns, not after a timeout
            max_attempts=3,
            stream={"storage": "file"},
        )
        sink = NatsSink(cfg)
        async with running(sink):
            for i in range(150):
                sink.write(trade(i))
            stopping = asyncio.create_task(server.stop())
            await asyncio.sleep(0)  # the publisher runs while the server shuts down
            for i in range(150, 200):
                sink.write(trade(i))
            await stopping
            await sink.wait_link(up=False)
            for i in range(200, 300):
                sink.write(trade(i))
            await server.start()
            await sink.wait_link(up=True)
            assert await sink.flush(20)
        msgs = await read_stream(cfg.stream.name, server.url)
    ids = [int(decode(m).trade_id) for m in msgs]  # type: ignore[union-attr]
    assert sorted(ids) == list(range(300))  # every event, once
    st = sink.stats()
    assert (st.lost, st.acked, st.disconnects, st.reconnects) == (0, 300, 1, 1)


async def test_a_frozen_server_spends_no_attempt_and_everything_lands_once_it_answers(tmp_path: Path) -> None:
    """SIGSTOP: the link looks up but nothing is answered. Timed-out messages wait (no attempt spent, no loss as
    ``attempts``) instead of burning ``max_attempts`` re-sends into a server that cannot answer; after SIGCONT
    every event is stored exactly once."""
    async with private_server(tmp_path / "store") as server:
        cfg = config([server.url], ack_timeout_s=0.3, max_attempts=2, stream={"storage": "file"})
        sink = NatsSink(cfg)
        async with running(sink):
            sink.write(trade(0))
            assert await sink.flush(10)  # the stream answers
            server.signal(signal.SIGSTOP)
            for i in range(1, 21):
                sink.write(trade(i))
            await asyncio.sleep(2.0)  # more than max_attempts x ack_timeout_s: each would have been lost
            frozen = sink.stats()
            server.signal(signal.SIGCONT)
            assert await sink.flush(20)
        msgs = await read_stream(cfg.stream.name, server.url)
    assert frozen.lost == 0 and frozen.buffered + frozen.in_flight == 20
    assert "answered nothing" in (frozen.last_error or "")
    assert sorted(int(decode(m).trade_id) for m in msgs) == list(range(21))  # type: ignore[union-attr]
    assert sink.stats().lost == 0


async def test_not_required_at_start_buffers_until_the_server_comes(tmp_path: Path) -> None:
    async with private_server(tmp_path / "store", start=False) as server:
        cfg = config([server.url], require_at_start=False, reconnect_wait_s=0.1, connect_timeout_s=1)
        sink = NatsSink(cfg)
        async with running(sink):  # start() returns although nothing answers
            assert not sink.health().healthy
            for i in range(5):
                sink.write(trade(i))
            assert sink.stats().buffered == 5
            await server.start()
            await sink.wait_link(up=True)
            assert await sink.flush(10)
            assert sink.health().healthy
        msgs = await read_stream(cfg.stream.name, server.url)
    assert [decode(m) for m in msgs] == [trade(i) for i in range(5)]
    assert sink.stats().stream == "created"


async def test_sends_later_than_the_duplicate_window_are_counted_and_reported(tmp_path: Path) -> None:
    """Events held longer than the stream's duplicate window (NATS away) can no longer be recognized as copies:
    the sink says so in its counters and report. A config whose retries outlast the window is refused."""
    async with private_server(tmp_path / "store", start=False) as server:
        cfg = config(
            [server.url],
            require_at_start=False,
            reconnect_wait_s=0.1,
            connect_timeout_s=1,
            ack_timeout_s=0.2,
            max_attempts=2,
            stream={"duplicate_window_s": 1},
        )
        sink = NatsSink(cfg)
        async with running(sink):
            sink.write(trade(0))
            await asyncio.sleep(1.5)  # held longer than the 1 s window
            sink.write(trade(1))
            await server.start()
            await sink.wait_link(up=True)
            assert await sink.flush(10)
    st = sink.stats()
    assert (st.late_sends, st.acked, st.lost) == (1, 2, 0)
    assert "1 events sent later than the stream's duplicate window" in "\n".join(sink.report_section().lines)
    with pytest.raises(ValueError, match=r"ack_timeout_s x max_attempts \(250 s\) must be below"):
        config(ack_timeout_s=25, max_attempts=10)


async def test_required_at_start_refuses_when_no_server_answers(tmp_path: Path) -> None:
    async with private_server(tmp_path / "store", start=False) as server:
        sink = NatsSink(config([server.url], connect_timeout_s=1))
        with pytest.raises(NatsError, match=rf"cannot connect to NATS at nats://127.0.0.1:{server.port}"):
            await sink.start()
        await sink.aclose()


# ------------------------------------------------------------------------------------------------ snapshots


async def test_periodic_snapshot_only_of_a_live_book_at_the_delta_sequence() -> None:
    clock = FakeClock()
    cfg = config(snapshot_interval_s=10)
    books: dict[tuple[str, str], OrderBook] = {}
    sink = NatsSink(cfg, clock=clock, book_source=books_source(books))
    try:
        async with running(sink):
            books[(FEED, SYMBOL)] = live_book(1)
            sink.write(delta(1))  # first sight of the book: the interval starts now
            assert await sink.flush()
            await clock.advance(10)
            books[(FEED, SYMBOL)] = live_book(3)
            sink.write(delta(2))  # due, but the book is already at 3: no snapshot
            books[(FEED, SYMBOL)] = live_book(3, BookState.RESYNCING)
            sink.write(delta(3))  # at 3 but not live: no snapshot
            books[(FEED, SYMBOL)] = live_book(4)
            sink.write(delta(4))  # live at 4: snapshot after the delta
            books[(FEED, SYMBOL)] = live_book(5)
            sink.write(delta(5))  # the interval starts again at the snapshot
            assert await sink.flush()
            await clock.advance(10)
            del books[(FEED, SYMBOL)]  # the feed stopped: KeyError means no book
            sink.write(delta(6))
            assert await sink.flush()
        msgs = await read_stream(cfg.stream.name)
    finally:
        await delete_stream(cfg.stream.name)
    shape = [shape_of(decode(m)) for m in msgs]
    assert shape == [("d", 1), ("d", 2), ("d", 3), ("d", 4), ("s", 4), ("d", 5), ("d", 6)]
    assert sink.stats().snapshots_published == {"engine": 0, "periodic": 1, "after_loss": 0}
    assert (headers := msgs[4].headers) is not None and headers[MSG_ID_HEADER] == "binance:BTC-USDT:s:4"


# ------------------------------------------------------------------------------------------------ closing


async def test_aclose_drains_what_is_buffered_then_refuses_later_events() -> None:
    cfg = config()
    sink = NatsSink(cfg)
    try:
        await sink.start()
        for i in range(50):
            sink.write(trade(i))
        await sink.aclose()  # no run() task: aclose publishes by itself
        await sink.aclose()  # idempotent
        sink.write(trade(50))
        msgs = await read_stream(cfg.stream.name)
    finally:
        await delete_stream(cfg.stream.name)
    assert len(msgs) == 50
    st = sink.stats()
    assert (st.acked, st.lost, st.lost_by_cause["closed"], st.buffered) == (50, 1, 1, 0)


async def test_aclose_counts_what_cannot_be_delivered(tmp_path: Path) -> None:
    async with private_server(tmp_path / "store") as server:
        cfg = config([server.url], ack_timeout_s=0.2, reconnect_wait_s=0.1)
        sink = NatsSink(cfg)
        await sink.start()
        await server.stop()
        await sink.wait_link(up=False)
        for i in range(7):
            sink.write(trade(i))
        await sink.aclose()
    st = sink.stats()
    assert (st.lost_by_cause["closed"], st.acked, st.buffered, st.in_flight) == (7, 0, 0, 0)
    assert "DATA LOST: 7 messages" in "\n".join(nats_section(st).lines)


# ------------------------------------------------------------------------------------------------ secrets


async def test_a_password_never_reaches_errors_logs_or_the_report(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "Pw-" + uuid4().hex
    caplog.set_level(logging.DEBUG)
    async with private_server(tmp_path / "store", "--user", "u", "--pass", secret) as server:
        texts: list[str] = []
        for cfg in (
            config([server.url], user="u", password=secret + "-wrong", connect_timeout_s=1),
            config([f"nats://u:{secret}-wrong@127.0.0.1:{server.port}"], connect_timeout_s=1),
        ):
            sink = NatsSink(cfg)
            with pytest.raises(NatsError, match="cannot connect to NATS at nats:") as refused:
                await sink.start()
            await sink.aclose()
            texts += [str(refused.value), repr(sink.stats()), "\n".join(sink.report_section().lines)]
        cfg = config([server.url], user="u", password=secret)
        sink = NatsSink(cfg)
        async with running(sink):
            sink.write(trade(1))
            assert await sink.flush(10)
            texts += [repr(sink.stats()), "\n".join(sink.report_section().lines)]
        assert sink.stats().acked == 1
    texts += [r.getMessage() for r in caplog.records]
    assert not [t for t in texts if secret in t]
    assert any(
        f"nats://127.0.0.1:{server.port}" in t for t in texts
    )  # the server is named, without credentials


async def test_a_refused_book_delta_sent_again_late_brings_a_snapshot_so_readers_resume() -> None:
    """A transient refusal (10008 during a leader election) of one delta while newer ones are stored: the re-send
    lands after them, so the sink publishes a snapshot of the book before its next delta, and a reader of the
    stream is live again there (found by review: only timeouts and lost links used to do this)."""
    cfg = config(streams="off", channels=["book"], snapshot_interval_s=0, max_pending_acks=10)
    root = cfg.subject_root
    nc = await nats.connect(NATS_URL)
    stored: list[bytes] = []
    ids: set[str] = set()
    refused: list[str] = []

    async def responder(msg: Msg) -> None:  # a stand-in for JetStream that refuses delta 2 once
        mid = (msg.headers or {})[MSG_ID_HEADER]
        if mid.endswith(":d:2") and not refused:
            refused.append(mid)
            await msg.respond(
                b'{"error":{"code":503,"err_code":10008,"description":"temporarily unavailable"}}'
            )
            return
        dup = mid in ids
        if not dup:
            ids.add(mid)
            stored.append(msg.data)
        await msg.respond(msgspec.json.encode({"stream": "X", "seq": len(stored), "duplicate": dup}))

    await nc.subscribe(f"{root}.>", cb=responder)
    await nc.flush()
    books = {(FEED, SYMBOL): live_book(0)}
    sink = NatsSink(cfg, book_source=books_source(books))
    try:
        async with running(sink):
            sink.write(engine_snapshot(0))
            for s in range(1, 6):
                books[(FEED, SYMBOL)] = live_book(s)
                sink.write(delta(s))
            assert await sink.flush(10)
            for s in range(6, 9):
                books[(FEED, SYMBOL)] = live_book(s)
                sink.write(delta(s))
            assert await sink.flush(10)
    finally:
        await nc.close()
    events = [msgspec.json.decode(d, type=BookUpdate) for d in stored]
    rebuilder = BookRebuilder()
    for e in events:
        rebuilder.feed(e)
    assert refused and sink.stats().snapshots_published["after_loss"] == 1
    assert rebuilder.stats().books_live == 1
    book = rebuilder.book("binance", SYMBOL)
    assert book is not None and book.sequence == 8
