"""Test doubles for the engine: a tiny JSON adapter and a scripted in-memory transport."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from decimal import Decimal

import msgspec

from cryptolink.clock import FakeClock
from cryptolink.engine.connection import ManagedConnection
from cryptolink.engine.errors import ConnectError, ConnectionClosed, FrameTooLarge
from cryptolink.engine.state import ConnectionState
from cryptolink.exchanges.base import (
    Ack,
    BookSyncSpec,
    ConnectionPolicy,
    ConnectionSpec,
    Decoded,
    DecodeError,
    ExchangeAdapter,
    ExchangeError,
    Heartbeat,
    Instrument,
    KeepalivePolicy,
    OutboundRequest,
    Pong,
    Rejected,
    ReplyRequired,
    RestRequest,
    SequenceModel,
    ServerNotice,
    SnapshotSource,
)
from cryptolink.models import Channel, Market, Side, Subscription, Trade

BTC_TRADES = Subscription(Channel.TRADES, "BTC/USDT")
ETH_TRADES = Subscription(Channel.TRADES, "ETH/USDT")


class FakeAdapter(ExchangeAdapter):
    """Frames (JSON): out ``{"op":"subscribe","id":1,"args":["trades:BTC/USDT"]}``; in
    ``{"trade":"BTC/USDT","id":7,"ts":ms}``, ``{"ack":1}``, ``{"ack":1,"op":"unsubscribe"}``, ``{"rej":1}``,
    ``{"notice":"x"}``, ``{"err":"x"}``, ``{"hb":1}``, ``{"ping":5}`` and text ``pong``."""

    exchange = "fake"
    market = Market.SPOT
    ws_base_url = "ws://fake"
    rest_base_url = "http://fake"
    book_sync = BookSyncSpec(SnapshotSource.WEBSOCKET, SequenceModel.LINKED)

    def __init__(self, policy: ConnectionPolicy | None = None) -> None:
        super().__init__()
        self.policy = policy or ConnectionPolicy(KeepalivePolicy(protocol_ping_interval_s=None))

    def exchange_symbol(self, symbol: str) -> str:
        if "/" not in symbol:
            raise ValueError(f"not a fake symbol: {symbol}")
        return symbol.replace("/", "")

    def instruments_request(self) -> RestRequest:
        return RestRequest("/instruments", {})

    def parse_instruments(self, body: bytes) -> list[Instrument]:
        return [Instrument(s, s.replace("/", ""), True, "live") for s in msgspec.json.decode(body)]

    def plan_connections(self, subscriptions: Sequence[Subscription]) -> list[ConnectionSpec]:
        return [ConnectionSpec(self.ws_base_url, tuple(subscriptions))]

    def requests(
        self, op: str, subs: Sequence[Subscription], next_id: int, now_ms: int | None = None
    ) -> list[OutboundRequest]:
        args = [f"{s.channel}:{s.symbol}" for s in subs]
        frame = msgspec.json.encode({"op": op, "id": next_id, "args": args}).decode()
        return [OutboundRequest(frame, next_id, op, tuple(subs))]  # type: ignore[arg-type]

    def decode(self, frame: str | bytes, receipt_ns: int) -> list[Decoded]:
        if frame == "pong":
            return [Pong()]
        try:
            msg = msgspec.json.decode(frame)
        except msgspec.DecodeError as exc:
            raise DecodeError(str(exc)) from exc
        if not isinstance(msg, dict):
            raise DecodeError("not an object")
        if "trade" in msg:
            sym = msg["trade"]
            return [
                Trade(
                    "fake",
                    sym,
                    sym.replace("/", ""),
                    Decimal("1"),
                    Decimal("1"),
                    Side.BUY,
                    str(msg["id"]),
                    msg.get("ts"),
                    receipt_ns,
                    msg["id"],
                )
            ]
        if "ack" in msg:
            return [Ack(msg.get("op", "subscribe"), msg["ack"])]
        if "rej" in msg:
            return [Rejected(msg["rej"], "2", "bad stream")]
        if "notice" in msg:
            return [ServerNotice("64008", msg["notice"])]
        if "err" in msg:
            return [ExchangeError("1", msg["err"])]
        if "hb" in msg:
            return [Heartbeat()]
        if "ping" in msg:
            return [ReplyRequired(msgspec.json.encode({"pong": msg["ping"]}).decode())]
        raise DecodeError(f"unknown frame {msg!r}")


def trade(symbol: str = "BTC/USDT", tid: int = 1, ts: int | None = None) -> str:
    return msgspec.json.encode({"trade": symbol, "id": tid, "ts": ts}).decode()


class FakeSession:
    """In-memory socket: the test pushes frames with :meth:`feed`, reads what the engine sent in ``sent``."""

    def __init__(self, auto_pong: bool = True) -> None:
        self.incoming: asyncio.Queue[str | bytes | BaseException] = asyncio.Queue()
        self.sent: list[str] = []
        self.closed_with: int | None = None
        self.aborted = False
        self.auto_pong = auto_pong
        self.pings = 0
        self.batches = 0

    def feed(self, frame: str | bytes) -> None:
        self.incoming.put_nowait(frame)

    def server_close(self, code: int = 1001) -> None:
        self.incoming.put_nowait(ConnectionClosed(code, "server closed"))

    def oversized(self) -> None:
        self.incoming.put_nowait(FrameTooLarge(1024))

    def sent_json(self) -> list[dict[str, object]]:
        return [msgspec.json.decode(f) for f in self.sent if f.startswith("{")]

    def sent_ops(self, op: str) -> list[dict[str, object]]:
        return [m for m in self.sent_json() if m.get("op") == op]

    async def send(self, frame: str) -> None:
        if self.closed_with is not None:
            raise ConnectionClosed(self.closed_with)
        self.sent.append(frame)

    async def recv(self) -> str | bytes:
        item = await self.incoming.get()
        if isinstance(item, BaseException):
            raise item
        return item

    async def recv_batch(self) -> list[str | bytes]:
        """Every queued frame up to the next close/error (which the following call raises)."""
        item = await self.incoming.get()
        if isinstance(item, BaseException):
            raise item
        batch = [item]
        queue = self.incoming
        while not queue.empty():
            nxt = queue.get_nowait()
            if isinstance(nxt, BaseException):
                # put it back at the front: the next call raises it
                rest: list[str | bytes | BaseException] = [nxt]
                while not queue.empty():
                    rest.append(queue.get_nowait())
                for r in rest:
                    queue.put_nowait(r)
                break
            batch.append(nxt)
        self.batches += 1
        return batch

    async def ping(self) -> float:
        self.pings += 1
        if self.auto_pong:
            return 0.005
        await asyncio.Event().wait()  # never answered
        raise AssertionError("unreachable")

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed_with = code
        self.incoming.put_nowait(ConnectionClosed(code, "closed by us"))

    def abort(self) -> None:
        self.aborted = True


class FakeTransport:
    """Each ``connect`` pops the next outcome: ``None`` -> a new :class:`FakeSession`, an exception -> raised.

    With no scripted outcome left, ``default`` decides (``None``: accept)."""

    def __init__(self, default: BaseException | None = None, auto_pong: bool = True) -> None:
        self.script: list[BaseException | None] = []
        self.sessions: list[FakeSession] = []
        self.urls: list[str] = []
        self.attempts = 0
        self.default = default
        self.auto_pong = auto_pong
        self.on_connect: Callable[[FakeSession], None] | None = None

    async def connect(self, url: str, *, max_frame_bytes: int) -> FakeSession:
        self.attempts += 1
        self.urls.append(url)
        outcome = self.script.pop(0) if self.script else self.default
        if outcome is not None:
            raise outcome
        sess = FakeSession(self.auto_pong)
        self.sessions.append(sess)
        if self.on_connect is not None:
            self.on_connect(sess)
        return sess


REFUSED = ConnectError("refused")


async def settle(n: int = 20) -> None:
    """Let ready tasks run (zero-delay yields only)."""
    for _ in range(n):
        await asyncio.sleep(0)


async def until(cond: Callable[[], bool], limit_s: float = 2.0) -> None:
    """Bounded polling on a condition (zero-delay yields, real-time bound)."""

    async def poll() -> None:
        while not cond():  # noqa: ASYNC110 - bounded polling on a condition
            await asyncio.sleep(0)

    await asyncio.wait_for(poll(), limit_s)


def state_of(conn: ManagedConnection) -> ConnectionState:
    """``conn.state`` read afresh: mypy keeps a property narrowed by an earlier assert across the awaits that
    change it (it would call the comparison after such an await non-overlapping)."""
    return conn.state


async def wait_connected(
    conn: ManagedConnection, transport: FakeTransport, clock: FakeClock, n: int = 1
) -> None:
    """Wait until ``transport`` opened its ``n``-th session and ``conn`` is connected, advancing fake time in
    small steps to let backoff delays pass (at most 100 s of fake time)."""
    for _ in range(400):
        await settle()
        if len(transport.sessions) >= n and conn.state is ConnectionState.CONNECTED:
            await settle()
            return
        await clock.advance(0.25)
    raise AssertionError(f"not connected: {conn.state}, {len(transport.sessions)} sessions")
