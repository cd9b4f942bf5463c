"""The connect gate in fake time: the documented connection-rate limit is never exceeded, however many
connections want to open; while a host is down one probe at a time goes out, and every waiting connection is
released as soon as a probe succeeds."""

from __future__ import annotations

import asyncio
import itertools
import random

import pytest

from cryptolink.clock import FakeClock
from cryptolink.engine.connection import EngineConfig, ManagedConnection
from cryptolink.engine.gate import ConnectGate, ConnectGates
from cryptolink.engine.state import ConnectionState
from cryptolink.exchanges.base import ConnectionPolicy, ConnectionSpec, ConnectRateLimit, KeepalivePolicy

from .fakes import BTC_TRADES, REFUSED, FakeAdapter, FakeTransport, settle

BINANCE_LIMIT = ConnectRateLimit(max_connects=300, window_s=300.0)


def max_in_window(times: list[float], window_s: float) -> int:
    """The most grants that fall in any half-open window (t - window_s, t]."""
    times = sorted(times)
    best = lo = 0
    for hi, t in enumerate(times):
        while times[lo] <= t - window_s:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


async def test_thousand_connections_never_exceed_the_documented_rate() -> None:
    clock = FakeClock()
    gate = ConnectGate("binance h:1", BINANCE_LIMIT, clock)
    assert gate.allowed == 270  # 90 % of 300 per 5 min
    granted: list[float] = []

    async def connect() -> None:
        permit = await gate.acquire()
        granted.append(clock.monotonic())
        permit.report(True)

    tasks = [asyncio.create_task(connect()) for _ in range(1000)]
    await settle()
    assert len(granted) == 270
    while len(granted) < 1000:
        await clock.advance(10.0)
    await asyncio.gather(*tasks)
    assert max_in_window(granted, 300.0) == 270
    assert sorted(granted)[-1] == pytest.approx(900.0)  # 270 at 0, 300, 600, the last 190 at 900 s
    st = gate.stats()
    assert st.granted == 1000 and st.rate_waits == 730 and st.waiting == 0 and st.up


async def test_cancelled_waiter_frees_its_place() -> None:
    clock = FakeClock()
    gate = ConnectGate("x h:1", ConnectRateLimit(1, 10.0), clock)
    (await gate.acquire()).report(True)
    first = asyncio.create_task(gate.acquire())
    second = asyncio.create_task(gate.acquire())
    await settle()
    first.cancel()
    await settle()
    await clock.advance(10.0)
    permit = await asyncio.wait_for(second, 1)
    permit.report(True)
    assert gate.stats().granted == 2


async def test_outage_one_probe_at_a_time_then_everyone_released() -> None:
    clock = FakeClock()
    gate = ConnectGate("okx h:1", None, clock, rng=random.Random(3))
    reachable = False
    attempts: list[tuple[float, bool]] = []
    connected: list[float] = []

    async def connection() -> None:
        while True:
            permit = await gate.acquire()
            attempts.append((clock.monotonic(), permit.probe))
            permit.report(reachable)
            if reachable:
                connected.append(clock.monotonic())
                return
            await clock.sleep(1.0)  # a short own backoff: the gate, not the connection, paces the outage

    tasks = [asyncio.create_task(connection()) for _ in range(100)]
    await settle()
    assert not gate.up  # the first two failures marked the host down
    for _ in range(300):
        await clock.advance(1.0)
    during = len(attempts)
    # 100 connections first try at once (they do not know yet); afterwards one probe per probe interval
    assert during - 100 <= 40
    probes = [t for t, probe in attempts if probe]
    assert probes and all(b - a > 0 for a, b in itertools.pairwise(probes))
    assert gate.stats().outages == 1 and gate.stats().waiting == 100
    reachable = True
    back_at = clock.monotonic()
    for _ in range(31):
        await clock.advance(1.0)
        if len(connected) == 100:
            break
    await asyncio.gather(*tasks)
    assert len(connected) == 100 and max(connected) - back_at <= 30.0
    assert gate.up and gate.stats().consecutive_failures == 0


async def test_wait_up_returns_when_a_probe_succeeds() -> None:
    clock = FakeClock()
    gate = ConnectGate("x h:1", None, clock, down_after=1, rng=random.Random(1))
    (await gate.acquire()).report(False)
    assert not gate.up
    woke = asyncio.create_task(gate.wait_up())
    await settle()
    assert not woke.done()
    probe = asyncio.create_task(gate.acquire())
    await clock.advance(1.0)
    (await asyncio.wait_for(probe, 1)).report(True)
    await settle()
    assert woke.done() and gate.up


def test_gates_shared_per_exchange_host() -> None:
    gates = ConnectGates(FakeClock())
    a = gates.get("binance", "wss://stream.binance.com:9443/stream", BINANCE_LIMIT)
    b = gates.get("binance", "wss://stream.binance.com:9443/ws/btcusdt@trade", BINANCE_LIMIT)
    c = gates.get("binance", "wss://fstream.binance.com/public/stream", None)
    assert a is b and a is not c
    assert [s.key for s in gates.stats()] == [
        "binance fstream.binance.com",
        "binance stream.binance.com:9443",
    ]


def make(transport: FakeTransport, gate: ConnectGate, clock: FakeClock, i: int) -> ManagedConnection:
    return ManagedConnection(
        FakeAdapter(ConnectionPolicy(KeepalivePolicy(protocol_ping_interval_s=None))),
        ConnectionSpec("ws://fake/ws", (BTC_TRADES,)),
        conn_id=f"c{i}",
        config=EngineConfig(seed=i, tick_s=1.0),
        clock=clock,
        transport=transport,
        on_data=lambda c, items: None,
        gate=gate,
    )


async def test_connections_recover_within_one_probe_interval_of_a_five_minute_outage() -> None:
    clock = FakeClock()
    transport = FakeTransport(default=REFUSED)
    gate = ConnectGate("fake fake", None, clock, rng=random.Random(5))
    conns = [make(transport, gate, clock, i) for i in range(20)]
    for c in conns:
        await c.start()
    for _ in range(300):
        await clock.advance(1.0)
    during = transport.attempts
    assert during <= 20 + 40  # the first round, then about one probe per interval for all 20
    transport.default = None
    back_at = clock.monotonic()
    while not all(c.state is ConnectionState.CONNECTED for c in conns):
        await clock.advance(0.5)
        assert clock.monotonic() - back_at <= 31.0
    assert all(c.stats().failed_connects >= 1 for c in conns)
    for c in conns:
        await c.stop()
