"""``JetStreamReader`` against the real NATS server on 127.0.0.1:4222: every event back in stream order with its
position, acks only once handed out (durable resume gets the rest and nothing twice), nak on an error, malformed
messages counted, term-ed and skipped, filters and deliver policies, clear errors, and a book rebuilt end to end
from two publishers' interleaved copies deduplicated by the stream."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from decimal import Decimal

import msgspec
import nats
import pytest
from nats.aio.client import Client
from nats.js.client import JetStreamContext

from cryptolink.consumer.books import BookRebuilder, Verdict
from cryptolink.consumer.decode import Event
from cryptolink.consumer.reader import (
    JetStreamReader,
    NatsCredentials,
    NatsUnavailable,
    ReaderError,
    connect_nats,
)
from cryptolink.models import GapCause
from cryptolink.sinks.nats_subjects import message_id, subject
from tests.consumer.test_decode import book, gap, ticker, trade

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

NATS_URL = "nats://127.0.0.1:4222"


@dataclass
class Stream:
    nc: Client
    js: JetStreamContext
    name: str
    root: str

    async def publish(self, events: Sequence[Event]) -> None:
        """Publish as the NATS sink does: msgspec JSON, deterministic Nats-Msg-Id."""
        for e in events:
            mid = message_id(e)
            await self.js.publish(
                subject(e, self.root), msgspec.json.encode(e), headers={"Nats-Msg-Id": mid} if mid else None
            )

    async def publish_raw(self, subj: str, data: bytes) -> None:
        await self.js.publish(subj, data)

    def reader(self, durable: str = "reader", **kw: object) -> JetStreamReader:
        options: dict[str, object] = {"fetch_timeout_s": 1.0, "until_caught_up": True, **kw}
        return JetStreamReader(durable, nc=self.nc, stream=self.name, **options)  # type: ignore[arg-type]


@pytest.fixture
async def stream() -> AsyncIterator[Stream]:
    """A private stream (unique name and subject root), deleted afterwards."""
    nc = await nats.connect(NATS_URL)
    js = nc.jetstream()
    tag = uuid.uuid4().hex[:10]
    s = Stream(nc, js, f"TEST_CONSUMER_{tag}", f"t{tag}.md")
    await js.add_stream(name=s.name, subjects=[f"{s.root}.>"], duplicate_window=60.0)
    try:
        yield s
    finally:
        await js.delete_stream(s.name)
        await nc.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def read_all(reader: JetStreamReader) -> list[tuple[str, Event, int]]:
    out: list[tuple[str, Event, int]] = []
    async with reader:
        async for subj, event, pos in reader:
            out.append((subj, event, pos.stream_seq))
    return out


MIXED: list[Event] = [
    book(100, {60000: 1}, {60001: 2}, snapshot=True),
    trade(1),
    ticker(7),
    book(101, {60000: 3}, {}, prev=100),
    trade(2),
    gap(GapCause.PUBLISH),
]


async def test_reads_every_event_in_order_with_its_position(stream: Stream) -> None:
    await stream.publish(MIXED)
    reader = stream.reader()
    async with reader:
        got = [(subj, event, pos) async for subj, event, pos in reader]
    assert [e for _, e, _ in got] == MIXED
    assert [s for s, _, _ in got] == [subject(e, stream.root) for e in MIXED]
    assert [p.stream_seq for _, _, p in got] == [1, 2, 3, 4, 5, 6]
    assert [p.msg_id for _, _, p in got] == [message_id(e) for e in MIXED]
    assert all(p.delivered == 1 for _, _, p in got)
    stats = reader.stats()
    assert (stats.messages, stats.acked, stats.malformed, stats.nacked) == (6, 6, 0, 0)
    info = await stream.js.consumer_info(stream.name, "reader")
    assert info.num_ack_pending == 0 and info.num_pending == 0


async def test_second_copy_with_the_same_msg_id_is_stored_once(stream: Stream) -> None:
    """The wire contract the rebuilder relies on: a second publisher's copy is dropped by the stream."""
    await stream.publish([trade(1), trade(1), trade(2)])
    got = await read_all(stream.reader())
    assert [e.trade_id for _, e, _ in got] == ["1", "2"]  # type: ignore[union-attr]


async def test_durable_resumes_after_the_last_message_handed_out(stream: Stream) -> None:
    events = [trade(i) for i in range(1, 21)]
    await stream.publish(events)
    first: list[int] = []
    reader = stream.reader("resume", batch=8)
    async with reader:
        async for _, _, pos in reader:
            first.append(pos.stream_seq)
            if len(first) == 10:
                break  # messages 11..16 of the batch were fetched but not handed out: nak-ed at close
    assert first == list(range(1, 11))
    assert reader.stats().acked == 10 and reader.stats().nacked == 6
    rest = await read_all(stream.reader("resume", batch=8))
    assert [seq for _, _, seq in rest] == list(range(11, 21))
    assert [e for _, e, _ in rest] == events[10:]
    assert await read_all(stream.reader("resume")) == []  # nothing twice


async def test_an_error_in_the_block_gives_the_message_back(stream: Stream) -> None:
    await stream.publish([trade(i) for i in range(1, 6)])
    seen: list[int] = []
    with pytest.raises(RuntimeError, match="processing failed"):
        async with stream.reader("failing") as reader:
            async for _, _, pos in reader:
                seen.append(pos.stream_seq)
                if pos.stream_seq == 3:
                    raise RuntimeError("processing failed")
    assert seen == [1, 2, 3]
    again = stream.reader("failing")
    async with again:
        positions = [pos async for _, _, pos in again]
    assert [p.stream_seq for p in positions] == [3, 4, 5]
    assert positions[0].delivered == 2 and again.stats().redelivered >= 1


async def test_malformed_messages_are_counted_termed_and_skipped(stream: Stream) -> None:
    noted: list[tuple[str, str]] = []
    await stream.publish([trade(1)])
    await stream.publish_raw(f"{stream.root}.trades.binance.BTC-USDT", b"not json")
    await stream.publish_raw(f"{stream.root}.orders.binance.BTC-USDT", msgspec.json.encode(trade(9)))
    await stream.publish([trade(2)])
    rebuilder = BookRebuilder()

    def on_malformed(subj: str, reason: str) -> None:
        noted.append((subj, reason))
        rebuilder.note_malformed(subj, reason)

    reader = stream.reader("bad", on_malformed=on_malformed, subject_root=stream.root)
    got = []
    async with reader:
        async for _, event, pos in reader:
            got.append(pos.stream_seq)
            rebuilder.feed(event)
    assert got == [1, 4]
    assert reader.stats().malformed == 2 and rebuilder.stats().malformed == 2
    assert [s for s, _ in noted] == [
        f"{stream.root}.trades.binance.BTC-USDT",
        f"{stream.root}.orders.binance.BTC-USDT",
    ]
    assert "unknown channel 'orders'" in noted[1][1]
    info = await stream.js.consumer_info(stream.name, "bad")
    assert info.num_ack_pending == 0  # term-ed: never delivered again
    assert await read_all(stream.reader("bad")) == []


async def test_filter_subject_and_deliver_new(stream: Stream) -> None:
    await stream.publish(MIXED)
    books = await read_all(stream.reader("books", filter_subject=f"{stream.root}.book.>"))
    assert [e for _, e, _ in books] == [MIXED[0], MIXED[3]]
    late = stream.reader("late", deliver="new", until_caught_up=False)
    async with late:
        await stream.publish([trade(99)])
        _, event, pos = await late.__anext__()
    assert event == trade(99) and pos.stream_seq == len(MIXED) + 1


async def test_a_durable_with_another_filter_is_refused(stream: Stream) -> None:
    await read_all(stream.reader("picky", filter_subject=f"{stream.root}.book.>"))
    with pytest.raises(ReaderError, match=r"filters \S+\.book\.>, not nothing"):
        async with stream.reader("picky"):
            pass


async def test_missing_stream_is_a_clear_error(stream: Stream) -> None:
    reader = JetStreamReader("x", nc=stream.nc, stream=f"NOPE_{uuid.uuid4().hex[:8]}")
    with pytest.raises(ReaderError, match="no JetStream stream named 'NOPE_"):
        await reader.open()
    assert stream.nc.is_connected  # a given connection is left open


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="durable name"):
        JetStreamReader("has.dot")
    with pytest.raises(ValueError, match="batch"):
        JetStreamReader("ok", batch=0)


async def test_unreachable_server_fails_fast_without_the_password() -> None:
    url = f"nats://user:s3cret-pw@127.0.0.1:{closed_port()}"
    with pytest.raises(NatsUnavailable) as info:
        await connect_nats([url], NatsCredentials(token="tok-xyz"), start_timeout_s=1.0)
    text = str(info.value)
    assert "no NATS server answered at nats://user:***@127.0.0.1:" in text
    assert "s3cret-pw" not in text and "tok-xyz" not in text
    assert "tok-xyz" not in repr(NatsCredentials(token="tok-xyz"))


async def test_reader_connects_itself_and_closes(stream: Stream) -> None:
    await stream.publish([trade(1)])
    reader = JetStreamReader("own", servers=[NATS_URL], stream=stream.name, until_caught_up=True)
    assert [e for _, e, _ in await read_all(reader)] == [trade(1)]
    assert reader._nc is None  # closed and released


async def test_book_rebuilt_end_to_end_from_two_publishers(stream: Stream) -> None:
    """Publisher A starts at 100, publisher B (lagging) at 102 with its own prev chain; both publish every
    update they saw, interleaved. The stream keeps one copy of each; the rebuilder ends with the exchange's book
    and no gap."""
    a = [
        book(100, {10: 1}, {20: 1}, snapshot=True),
        book(101, {10: 2}, {}, prev=100),
        book(102, {}, {20: 0, 21: 1}, prev=101),
        book(103, {11: 1}, {}, prev=102),
        book(104, {10: 0}, {}, prev=103),
    ]
    b = [
        book(102, {10: 2}, {21: 1}, snapshot=True),
        book(103, {11: 1}, {}, prev=102),
        book(104, {10: 0}, {}, prev=103),
        book(105, {12: 5}, {}, prev=104),
    ]
    order = [a[0], b[0], a[1], b[1], a[2], a[3], b[2], b[3], a[4]]
    await stream.publish(order)
    rebuilder = BookRebuilder()
    verdicts = [rebuilder.feed(e) for _, e, _ in await read_all(stream.reader("e2e"))]
    # stored: s100, s102, d101, d103 (B), d102 (A), d104 (B), d105 (B); A's 103 and 104 were second copies
    assert verdicts == [
        Verdict.SNAPSHOT,
        Verdict.SNAPSHOT,
        Verdict.DUPLICATE,
        Verdict.APPLIED,
        Verdict.DUPLICATE,
        Verdict.APPLIED,
        Verdict.APPLIED,
    ]
    rebuilt = rebuilder.book("okx", "BTC/USDT:USDT")
    assert rebuilt is not None and rebuilt.live and rebuilt.sequence == 105
    assert rebuilt.bids == {Decimal(11): Decimal(1), Decimal(12): Decimal(5)}
    assert rebuilt.asks == {Decimal(21): Decimal(1)}
    assert rebuilder.stats().book_gaps == 0
