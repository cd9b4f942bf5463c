"""The engine side of the adapter contract, with made-up adapters: compressed binary frames (and bombs),
per-session decoders, a REST step before connecting, server application pings, adapter bugs, one dispatch."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import tracemalloc
import zlib
from collections.abc import Callable
from decimal import Decimal

import msgspec
import pytest

from cryptolink.clock import FakeClock
from cryptolink.engine.connection import EngineConfig, ManagedConnection, MarketData
from cryptolink.engine.errors import ConfigError
from cryptolink.engine.events import ConnectionEvent, ConnectionEventType
from cryptolink.engine.gate import ConnectGate
from cryptolink.engine.state import ConnectionState
from cryptolink.exchanges.base import (
    Ack,
    ConnectionPolicy,
    ConnectionSpec,
    Decoded,
    DecodeError,
    FrameCompression,
    FrameDecoder,
    KeepalivePolicy,
    RestRequest,
)
from cryptolink.models import Side, Subscription, Trade
from cryptolink.rest import RestError

from .fakes import (
    BTC_TRADES,
    ETH_TRADES,
    FakeAdapter,
    FakeSession,
    FakeTransport,
    settle,
    trade,
    wait_connected,
)

S = ConnectionState
E = ConnectionEventType
NO_PINGS = KeepalivePolicy(protocol_ping_interval_s=None)


class Rig:
    def __init__(
        self,
        adapter: FakeAdapter,
        *,
        subs: tuple[Subscription, ...] = (BTC_TRADES,),
        rest: FakeRest | None = None,
        config: EngineConfig | None = None,
    ) -> None:
        self.clock = FakeClock()
        self.gate = ConnectGate("fake host", None, self.clock)
        self.transport = FakeTransport()
        self.data: list[MarketData] = []
        self.events: list[ConnectionEvent] = []
        self.conn = ManagedConnection(
            adapter,
            ConnectionSpec("ws://fake/ws", subs),
            conn_id="k1",
            config=config or EngineConfig(seed=1, tick_s=0.5),
            clock=self.clock,
            transport=self.transport,
            on_data=lambda _c, items: self.data.extend(items),
            on_event=self.events.append,
            rest=rest,
            gate=self.gate,
        )

    @property
    def sess(self) -> FakeSession:
        return self.transport.sessions[-1]

    async def connected(self, n: int = 1) -> None:
        """Wait for the n-th session, advancing fake time in small steps to let backoff delays pass."""
        await wait_connected(self.conn, self.transport, self.clock, n)

    def of(self, t: ConnectionEventType) -> list[ConnectionEvent]:
        return [e for e in self.events if e.type is t]


# ------------------------------------------------------------------------------------------ compressed frames


def compressed_adapter(compression: FrameCompression, limit: int = 64 * 1024) -> FakeAdapter:
    return FakeAdapter(ConnectionPolicy(NO_PINGS, compression=compression, max_inflated_bytes=limit))


def deflate_raw(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


@pytest.mark.parametrize(
    ("compression", "pack"),
    [(FrameCompression.GZIP, gzip.compress), (FrameCompression.DEFLATE, deflate_raw)],
)
async def test_binary_frames_are_inflated_before_decoding(
    compression: FrameCompression, pack: Callable[[bytes], bytes]
) -> None:
    r = Rig(compressed_adapter(compression))
    await r.conn.start()
    await r.connected()
    r.sess.feed(pack(trade(tid=1).encode()))
    r.sess.feed(trade(tid=2))  # text frames are passed as they are
    await settle()
    assert [t.sequence for t in r.data] == [1, 2]  # type: ignore[union-attr]
    st = r.conn.stats()
    assert st.inflate_refused == 0 and st.decode_errors == 0 and st.market_events == 2
    await r.conn.stop()


async def test_compression_bomb_refused_counted_and_bounded(caplog: pytest.LogCaptureFixture) -> None:
    """32 MiB of zeros in ~32 KiB of gzip against a 64 KiB bound: refused, counted, logged, the next frame
    decoded; the inflater never holds more than the bound."""
    limit = 64 * 1024
    r = Rig(compressed_adapter(FrameCompression.GZIP, limit))
    await r.conn.start()
    await r.connected()
    bomb = gzip.compress(b"0" * (32 * 1024 * 1024), 9)
    assert len(bomb) < 64 * 1024
    tracemalloc.start()
    try:
        r.sess.feed(bomb)
        r.sess.feed(b"\x1f\x8b garbage")  # corrupt: refused too
        r.sess.feed(gzip.compress(trade(tid=3).encode()))
        await settle()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * limit + 1024 * 1024  # far below the 32 MiB the bomb inflates to
    assert [t.sequence for t in r.data] == [3]  # type: ignore[union-attr]
    st = r.conn.stats()
    assert st.inflate_refused == 2 and st.decode_errors == 0 and st.errors == 2
    assert r.conn.state is S.CONNECTED and len(r.transport.sessions) == 1
    assert "binary frame refused" in caplog.text and "inflates beyond 65536 bytes" in caplog.text
    await r.conn.stop()


async def test_binary_frames_without_declared_compression_reach_the_decoder_as_sent() -> None:
    r = Rig(FakeAdapter(ConnectionPolicy(NO_PINGS)))
    await r.conn.start()
    await r.connected()
    r.sess.feed(trade(tid=4).encode())  # bytes, not compressed: decoded as they are
    r.sess.feed(gzip.compress(trade(tid=5).encode()))  # not declared: the adapter sees gzip and refuses it
    await settle()
    assert [t.sequence for t in r.data] == [4]  # type: ignore[union-attr]
    st = r.conn.stats()
    assert st.decode_errors == 1 and st.inflate_refused == 0
    await r.conn.stop()


# ------------------------------------------------------------------------------------------ per-session decoders


class ChannelIdAdapter(FakeAdapter):
    """Bitfinex-like: the server assigns a numeric channel id per socket (``{"chan":5,"sym":"BTC/USDT"}``),
    data frames carry only the id (``[5, trade_id]``)."""

    def __init__(self) -> None:
        super().__init__(ConnectionPolicy(NO_PINGS))
        self.decoders = 0

    def session_decoder(self) -> FrameDecoder:
        self.decoders += 1
        channels: dict[int, str] = {}
        base = self.decode

        def decode(frame: str | bytes, receipt_ns: int) -> list[Decoded]:
            try:
                msg = msgspec.json.decode(frame)
            except msgspec.DecodeError as exc:
                raise DecodeError(str(exc)) from exc
            if isinstance(msg, dict) and "chan" in msg:
                channels[msg["chan"]] = msg["sym"]
                return [Ack("subscribe", msg.get("id"))]
            if isinstance(msg, list):
                sym = channels.get(msg[0])
                if sym is None:
                    raise DecodeError(f"unknown channel id {msg[0]}")
                one = Decimal(1)
                return [Trade("fake", sym, sym, one, one, Side.BUY, str(msg[1]), None, receipt_ns, msg[1])]
            return base(frame, receipt_ns)

        return decode


async def test_each_session_decodes_with_its_own_decoder() -> None:
    adapter = ChannelIdAdapter()
    r = Rig(adapter)
    await r.conn.start()
    await r.connected()
    assert adapter.decoders == 1
    r.sess.feed('{"chan":5,"sym":"BTC/USDT"}')
    r.sess.feed("[5,1]")
    await settle()
    assert [t.sequence for t in r.data] == [1]  # type: ignore[union-attr]
    r.sess.server_close()
    await r.connected(2)
    assert adapter.decoders == 2
    r.sess.feed("[5,2]")  # channel 5 belonged to the old socket: unknown on this one
    r.sess.feed('{"chan":9,"sym":"BTC/USDT"}')
    r.sess.feed("[9,3]")
    await settle()
    assert [t.sequence for t in r.data] == [1, 3]  # type: ignore[union-attr]
    assert r.conn.stats().decode_errors == 1
    await r.conn.stop()


# ------------------------------------------------------------------------------------------ REST step


class FakeRest:
    """A scripted :class:`~cryptolink.gateway.RestGateway`: each ``get`` pops an outcome (bytes or an error)."""

    def __init__(self, *outcomes: bytes | Exception) -> None:
        self.outcomes = list(outcomes)
        self.requests: list[RestRequest] = []

    async def get(
        self, request: RestRequest, *, timeout_s: float | None = None, background: bool = False
    ) -> bytes:
        self.requests.append(request)
        out = self.outcomes.pop(0)
        if isinstance(out, Exception):
            raise out
        return out


class TokenAdapter(FakeAdapter):
    """KuCoin-like: a token is fetched over REST first and put in the URL."""

    def connect_request(self, spec: ConnectionSpec) -> RestRequest | None:
        return RestRequest("/bullet-public", {}, weight=10)

    def connect_url(self, spec: ConnectionSpec, body: bytes) -> str:
        msg = msgspec.json.decode(body)
        if not isinstance(msg, dict) or "token" not in msg:
            raise DecodeError("no token in the answer")
        return f"{spec.url}?token={msg['token']}"


async def test_rest_step_before_connecting_and_its_failures_back_off() -> None:
    rest = FakeRest(RestError("503", status=503), b'{"nope":1}', b'{"token":"t1"}', b'{"token":"t2"}')
    r = Rig(TokenAdapter(ConnectionPolicy(NO_PINGS)), rest=rest)
    await r.conn.start()
    await r.connected()
    assert r.transport.urls == ["ws://fake/ws?token=t1"]  # both failures opened no socket
    assert [q.path for q in rest.requests] == ["/bullet-public"] * 3
    st = r.conn.stats()
    assert st.failed_connects == 2 and st.transport_errors == 2
    failures = [e for e in r.events if e.type in (E.ERROR, E.RECONNECT_FAILED)]
    assert [e.error for e in failures] == [
        "REST step /bullet-public failed: 503",  # our own errors read as their message (they say what failed)
        "REST step /bullet-public failed: no token in the answer",
    ]
    delays = [e.description for e in r.of(E.RECONNECT_ATTEMPT)]
    assert len(delays) == 2 and all(not d.startswith("retry in 0.0 s") for d in delays)  # backed off
    # REST failures are not WebSocket failures: the host's gate saw one open, never a failed one
    gs = r.gate.stats()
    assert gs.up and gs.outages == 0 and gs.granted == 1 and gs.consecutive_failures == 0
    r.sess.server_close()
    await r.connected(2)
    assert r.transport.urls[-1] == "ws://fake/ws?token=t2"  # a fresh token for every socket
    await r.conn.stop()


def test_rest_step_without_a_gateway_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="rest="):
        Rig(TokenAdapter(ConnectionPolicy(NO_PINGS)))


# ------------------------------------------------------------------------------------------ server app pings


async def test_server_application_ping_answered_at_once_and_never_market_data() -> None:
    r = Rig(FakeAdapter(ConnectionPolicy(NO_PINGS, max_outbound_per_s=5)))
    await r.conn.start()
    await r.connected()
    r.sess.feed('{"ping":1}')
    await settle()
    assert r.sess.sent[-1] == '{"pong":1}'  # answered without waiting for a timer
    for i in range(2, 14):  # 12 s of server pings only: no market data
        r.sess.feed(f'{{"ping":{i}}}')
        await r.clock.advance(1.0)
    assert r.sess.sent.count('{"pong":12}') == 1
    stale = r.of(E.STALE_SUBSCRIPTION)
    assert stale and "no first message" in stale[0].description  # pings did not feed the watchdog
    st = r.conn.stats()
    assert st.market_events == 0 and st.messages == 13 and r.data == []
    await r.conn.stop()


# ------------------------------------------------------------------------------------------ adapter bugs


class BuggyAdapter(FakeAdapter):
    def decode(self, frame: str | bytes, receipt_ns: int) -> list[Decoded]:
        if frame == "boom":
            raise KeyError("a bug in the adapter")
        if frame == "odd":
            return [object()]  # type: ignore[list-item]  # neither an event nor a signal: an adapter bug
        return super().decode(frame, receipt_ns)


async def test_adapter_exceptions_counted_apart_logged_with_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="cryptolink")
    r = Rig(BuggyAdapter(ConnectionPolicy(NO_PINGS)))
    await r.conn.start()
    await r.connected()
    for _ in range(3):
        r.sess.feed("boom")
    r.sess.feed("{broken")
    r.sess.feed(trade(tid=1))
    await settle()
    st = r.conn.stats()
    assert st.adapter_errors == 3 and st.decode_errors == 1 and st.errors == 4
    assert r.conn.adapter_errors == 3
    assert [t.sequence for t in r.data] == [1]  # type: ignore[union-attr]
    assert r.conn.state is S.CONNECTED and len(r.transport.sessions) == 1  # the session survives
    bugs = [rec for rec in caplog.records if "raised on a frame" in rec.getMessage()]
    assert len(bugs) == 1  # rate limited: the first, then every 1000th
    assert bugs[0].exc_info is not None and bugs[0].exc_info[0] is KeyError
    await r.conn.stop()


# ------------------------------------------------------------------------------------------ one dispatch


class MixedAdapter(FakeAdapter):
    """A frame carrying an ack, a trade and a heartbeat at once."""

    def decode(self, frame: str | bytes, receipt_ns: int) -> list[Decoded]:
        if frame == "mixed":
            (t,) = super().decode(trade(tid=7), receipt_ns)
            (hb,) = super().decode('{"hb":1}', receipt_ns)
            (err,) = super().decode('{"err":"x"}', receipt_ns)
            return [err, t, hb]
        return super().decode(frame, receipt_ns)


async def test_mixed_frame_control_handled_and_market_data_delivered_once() -> None:
    r = Rig(MixedAdapter(ConnectionPolicy(NO_PINGS)))
    await r.conn.start()
    await r.connected()
    r.sess.feed("mixed")
    await settle()
    assert [t.sequence for t in r.data] == [7]  # type: ignore[union-attr]
    st = r.conn.stats()
    assert st.market_events == 1 and st.exchange_errors == 1
    assert r.conn.watchdog.keys() == {BTC_TRADES.key}
    await r.conn.stop()


# ------------------------------------------------------------------------------------------ tasks


async def test_stop_leaves_no_task_behind() -> None:
    """Stop in the middle of everything (a rotation waiting for flow, an unanswered protocol ping, a send
    waiting for the rate limit): every task of the connection and its sessions is cancelled and awaited."""
    adapter = FakeAdapter(
        ConnectionPolicy(KeepalivePolicy(protocol_ping_interval_s=5, pong_timeout_s=60), max_outbound_per_s=1)
    )
    r = Rig(adapter)
    r.transport.auto_pong = False
    await r.conn.start()
    await r.connected()
    await r.clock.advance(6.0)  # a protocol ping is out, never answered
    r.sess.feed('{"notice":"upgrade"}')  # rotation: a second socket, waiting for its data
    await settle()
    for i in range(3):
        r.sess.feed(f'{{"ping":{i}}}')  # replies queue behind the 1/s rate limit
    await settle()
    assert r.conn.rotating
    before = {t for t in asyncio.all_tasks() if t.get_name().startswith("k1")}
    assert len(before) >= 5
    await r.conn.stop()
    left = [t for t in before if not t.done()]
    assert left == []
    assert all(s.closed_with == 1000 for s in r.transport.sessions)


async def test_an_item_that_is_no_event_and_no_signal_is_counted_as_an_adapter_bug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    r = Rig(BuggyAdapter(ConnectionPolicy(NO_PINGS)))
    await r.conn.start()
    await r.connected()
    r.sess.feed("odd")
    r.sess.feed(trade(tid=1))
    await settle()
    assert r.conn.stats().adapter_errors == 1 and "unknown item" in caplog.text
    assert [t.sequence for t in r.data] == [1]  # type: ignore[union-attr]
    await r.conn.stop()


async def test_a_caller_that_stops_waiting_for_a_state_leaves_nothing_behind() -> None:
    r = Rig(FakeAdapter(ConnectionPolicy(NO_PINGS)))
    await r.conn.start()
    await r.connected()
    for _ in range(50):  # a monitor polling with a timeout, for months
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(r.conn.wait_for_state(S.FAILED), 0.001)
    assert r.conn._state_waiters == []
    await r.conn.stop()


class GatedRest(FakeRest):
    """A gateway whose second request (the rotation's token) waits until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__(b'{"token":"t1"}', b'{"token":"t2"}')
        self.release = asyncio.Event()
        self.waiting = asyncio.Event()

    async def get(
        self, request: RestRequest, *, timeout_s: float | None = None, background: bool = False
    ) -> bytes:
        if len(self.requests) == 1:
            self.waiting.set()
            await self.release.wait()
        return await super().get(request, timeout_s=timeout_s, background=background)


async def test_a_subscription_added_while_a_rotation_opens_its_socket_reaches_the_new_socket() -> None:
    """Found in review: subscribe() while the rotation's replacement was still opening went only into the old
    registry, and the swap dropped it (never sent on the new socket, never restored)."""
    rest = GatedRest()
    r = Rig(TokenAdapter(ConnectionPolicy(NO_PINGS)), rest=rest)
    await r.conn.start()
    await r.connected()
    old = r.sess
    old.feed(f'{{"ack":{old.sent_ops("subscribe")[0]["id"]}}}')
    old.feed('{"notice":"upgrade"}')  # rotation: its REST step now waits
    await rest.waiting.wait()
    await r.conn.subscribe([ETH_TRADES])
    rest.release.set()
    await r.connected(2)
    await settle()
    new = r.sess
    subscribed = [a for m in new.sent_ops("subscribe") for a in m["args"]]  # type: ignore[attr-defined]
    assert sorted(subscribed) == ["trades:BTC/USDT", "trades:ETH/USDT"]
    for m in new.sent_ops("subscribe"):
        new.feed(f'{{"ack":{m["id"]}}}')
    new.feed(trade(tid=1))
    new.feed(trade(tid=1, symbol="ETH/USDT"))
    await settle()
    assert r.of(E.ROTATION_COMPLETED) and r.conn.stats().subscriptions_confirmed == 2
    await r.conn.stop()
