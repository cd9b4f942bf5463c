"""End to end: bad input gets a clear error, counters move, nothing crashes, nothing is lost."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from cryptolink.bus import EVENTS_CHANNEL
from cryptolink.config import ConfigError
from cryptolink.engine import ConnectionEvent, ConnectionState, WebsocketsTransport
from cryptolink.engine import ConnectionEventType as E
from cryptolink.exchanges.base import ExchangeAdapter
from cryptolink.manager import ExchangeManager
from tests.integration.harness import Rig, patch_policy, rig

pytestmark = pytest.mark.integration

ALL = ("binance", "binanceusdm", "okx")


def total(r: Rig, name: str, attr: str) -> int:
    return sum(int(getattr(c, attr)) for c in r.conns(name))


async def ready(r: Rig, names: tuple[str, ...] = ALL) -> None:
    for n in names:
        await r.healthy(n)
        await r.flowing(n)


UNKNOWN = {
    "binance": ['{"e":"mysteryEvent","E":1,"s":"BTCUSDT"}', '{"stream":"btcusdt@mystery","data":{"x":1}}'],
    "binanceusdm": ['{"e":"mysteryEvent","E":1,"s":"BTCUSDT"}', '{"result":null,"id":987654}'],
    "okx": [
        '{"event":"mystery","connId":"x"}',
        '{"arg":{"channel":"mystery","instId":"BTC-USDT"},"data":[]}',
    ],
}


@pytest.mark.timeout(30)
async def test_unknown_messages_and_malformed_json_are_skipped_without_reconnect() -> None:
    """Unknown message types and invalid JSON sent by the server: skipped (malformed ones counted in
    decode_errors), no reconnect, data keeps flowing, nothing lost."""
    async with rig(ALL) as r:
        await ready(r)
        for n in ALL:
            for conn in r.server(n).connections.values():
                for text in UNKNOWN[n]:
                    conn.send_ctrl(text)
                conn.send_ctrl("{not json")
                conn.send_ctrl("[1, 2")
        for n in ALL:

            def counted(n: str = n) -> bool:
                return total(r, n, "decode_errors") >= 2 * len(r.conns(n))

            await r.until(counted, 5, f"{n} counted")
            await r.flowing(n)
            await r.caught_up(n, 0)
            await r.caught_up(n, 1)
            assert total(r, n, "disconnections") == 0
            assert all(c.state is ConnectionState.CONNECTED for c in r.conns(n))
            for i in range(2):
                r.assert_trades_exact(n, i)


@pytest.mark.timeout(30)
async def test_oversized_frame_is_counted_and_the_session_reset(monkeypatch: pytest.MonkeyPatch) -> None:
    """A frame over ``max_frame_bytes`` (64 KiB here): counted (oversized_frames), reported as an error event,
    the session is reset and everything recovers."""

    def small_frames(adapter: ExchangeAdapter) -> None:
        adapter.policy = replace(adapter.policy, max_frame_bytes=64 * 1024)

    patch_policy(monkeypatch, small_frames)
    async with rig(ALL) as r:
        await ready(r)
        for n in ALL:
            for conn in r.server(n).connections.values():
                conn.send_ctrl('{"pad":"' + "x" * 100_000 + '"}')
        for n in ALL:

            def oversized_counted(n: str = n) -> bool:
                return total(r, n, "oversized_frames") == len(r.conns(n))

            await r.until(oversized_counted, 5, f"{n} oversized")

            def back(n: str = n) -> bool:
                return all(c.successful_reconnects == 1 for c in r.conns(n))

            await r.until(back, 5, f"{n} back")
            await r.healthy(n)
            await r.flowing(n)
            errors = [e for e in r.rec.events if e.type is E.ERROR and e.connection_id.startswith(n + "-")]
            assert any("oversized" in e.description and e.error for e in errors)
            for i in range(2):
                got = r.delivered_trades(n, i)
                assert got == sorted(set(got))


@pytest.mark.timeout(30)
async def test_server_that_never_answers_the_handshake() -> None:
    """A bare TCP listener that accepts and says nothing: a clear error event naming the URL, reconnects
    scheduled with backoff, no crash; stop() still works."""
    accepted: list[asyncio.StreamWriter] = []
    changed = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        changed.set()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    events: list[ConnectionEvent] = []
    m = (
        ExchangeManager.builder()
        .exchange(
            "binance",
            symbols=["BTC/USDT"],
            ws_url=f"ws://127.0.0.1:{port}",
            rest_url=f"http://127.0.0.1:{port}",
            reconnect={"initial_delay_s": 0.05, "max_delay_s": 0.2},
        )
        .option(verify_symbols=False)
        .runtime(transport=WebsocketsTransport(open_timeout_s=0.3), seed=1)
        .build()
    )

    def on_event(e: ConnectionEvent) -> None:
        events.append(e)
        changed.set()

    m.on(EVENTS_CHANNEL, on_event)
    try:
        await m.start()

        def failures() -> list[ConnectionEvent]:
            return [e for e in events if e.type in (E.ERROR, E.RECONNECT_FAILED) and e.error]

        async def wait() -> None:
            while len(failures()) < 3 or len(accepted) < 3:
                changed.clear()
                await changed.wait()

        await asyncio.wait_for(wait(), 20)
        first = failures()[0]
        assert f"127.0.0.1:{port}" in first.description
        assert (first.error or "").startswith("no WebSocket handshake within 0.3 s")
        assert any(e.type is E.RECONNECT_ATTEMPT for e in events)
        (feed,) = m.feeds.values()
        (conn,) = feed.connections.values()
        assert conn.state is ConnectionState.RECONNECTING
        assert conn.stats().reconnect_attempts >= 2 and conn.stats().failed_connects >= 3
        assert conn.backoff.attempt >= 2
        assert not conn.gate.up  # the host is judged down: one probe at a time
        assert conn.quality().score == 0.0  # never connected: nothing to be proud of
    finally:
        await asyncio.wait_for(m.stop(), 5)
        for w in accepted:
            w.close()
        server.close()
        await server.wait_closed()


def test_config_with_several_wrong_fields_names_each() -> None:
    b = ExchangeManager.builder().exchange(
        "binance",
        symbols=["BTCUSDT", "ETH/USDT"],
        ws_url="http://127.0.0.1:1",
        reconnect={"initial_delay_s": -1, "max_delay_s": 10},
        watchdog={"min_idle_s": 0},
    )
    b.exchange("kraken-ish", exchange="nosuchexchange", symbols=["BTC/USDT"])
    with pytest.raises(ConfigError) as info:
        b.build()
    text = str(info.value)
    paths = [p for p, _ in info.value.problems]
    assert len(info.value.problems) >= 5, info.value.problems
    for needle in ("symbols", "ws_url", "initial_delay_s", "min_idle_s", "exchange"):
        assert any(needle in p for p in paths), (needle, paths)
    assert "BTCUSDT" in text and "nosuchexchange" in text
