"""End to end: what an operator saw go wrong, now recovered and visible.

- an outage (connections cut, connects refused, REST down): reconnect within the probe interval, the trades
  missed meanwhile backfilled over REST and delivered in order, the interval published as a gap;
- an exchange restart that starts its trade ids again: trades keep flowing at once (they used to be dropped as
  "duplicates" for as long as the previous session had lasted), the id restart counted;
- request ids unique across the sockets of one feed, so a rejection on one socket never touches the other.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from cryptolink.engine import ConnectionEventType as E
from cryptolink.manager import ExchangeManager
from cryptolink.models import Channel, GapCause, Subscription, Trade
from cryptolink.simulator import Fault, Simulator
from tests.integration.harness import FAST_RECONNECT, FAST_WATCHDOG, rig, sim_config

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

ALL = ("binance", "binanceusdm", "okx")


async def ready(r: object, names: tuple[str, ...] = ALL) -> None:
    for n in names:
        await r.healthy(n)  # type: ignore[attr-defined]
        await r.flowing(n)  # type: ignore[attr-defined]


async def test_outage_recovers_and_backfills_every_missed_trade_in_order() -> None:
    async with rig(ALL) as r:
        await ready(r)
        before = {n: [len(r.delivered_trades(n, i)) for i in range(2)] for n in ALL}
        for n in ALL:
            r.sim.inject(Fault("outage", duration_s=2.0), exchange=n)
        for n in ALL:

            def reconnected(n: str = n) -> bool:
                return all(c.successful_reconnects >= 1 for c in r.conns(n))

            await r.until(reconnected, 40, f"{n} reconnected")
            await r.healthy(n, within_s=20)
            await r.caught_up(n, 0, within_s=20)
            await r.caught_up(n, 1, within_s=20)
        for n in ALL:
            for i in range(2):
                got = r.delivered_trades(n, i)
                assert len(got) > before[n][i]
                # nothing twice and, thanks to the backfill, nothing missing at all across the outage
                assert got == list(range(got[0], got[-1] + 1)), (n, i)
            gaps = [g for g in r.rec.gaps if g.feed == n and g.stream is Channel.TRADES]
            assert len(gaps) == 2 and all(g.recovered and g.cause is GapCause.DISCONNECT for g in gaps), gaps
            assert sum(g.backfilled for g in gaps) >= 1
            assert r.manager.feeds[n].stats().backfilled_trades == sum(g.backfilled for g in gaps)
            book_gaps = [g for g in r.rec.gaps if g.feed == n and g.stream is Channel.BOOK]
            assert len(book_gaps) == 2 and all(g.to_ms is not None and not g.recovered for g in book_gaps)
        assert r.rec.backfilled >= 3
        gate_stats = r.manager.stats().gates
        assert all(g.up for g in gate_stats) and sum(g.outages for g in gate_stats) >= 1


async def test_exchange_restart_with_new_ids_keeps_trades_flowing() -> None:
    """The simulator is stopped and started again on the same port: its trade ids start over. Every trade of
    the new session is delivered (none dropped as a duplicate), the restart is counted as an id regression."""
    config = sim_config()
    first = Simulator(exchanges=["binance"], mode="synthetic", seed=3, config=config)
    await first.start()
    port = first.servers["binance"].port
    ep = first.endpoints()["binance"]
    manager = (
        ExchangeManager.builder()
        .exchange(
            "binance",
            symbols=["BTC/USDT"],
            channels=["trades"],
            ws_url=ep["ws_url"],
            rest_url=ep["rest_url"],
            reconnect=FAST_RECONNECT,
            watchdog=FAST_WATCHDOG,
        )
        .runtime(seed=3)
        .build()
    )
    trades = manager.trades("binance", "BTC/USDT", maxsize=100_000)
    second: Simulator | None = None
    try:
        await manager.start()
        seen: list[int] = []
        while len(seen) < 30:  # about a second of trades
            t = await asyncio.wait_for(trades.get(), 10)
            assert isinstance(t, Trade) and t.sequence is not None
            seen.append(t.sequence)
        await first.stop()
        second = Simulator(exchanges=["binance"], mode="synthetic", seed=3, config=config, port=port)
        await second.start()
        top = max(seen)
        after: list[int] = []
        while len(after) < 20:  # the new session's trades: ids from the start again
            t = await asyncio.wait_for(trades.get(), 15)
            assert isinstance(t, Trade) and t.sequence is not None
            if t.sequence < top or after:
                after.append(t.sequence)
        assert after == list(range(after[0], after[0] + 20)) and after[0] < top
        stats = manager.feeds["binance"].stats()
        assert stats.id_regressions == 1 and stats.duplicates_dropped == 0
    finally:
        await manager.stop()
        if second is not None:
            await second.stop()


async def test_request_ids_are_unique_across_the_sockets_of_one_feed() -> None:
    """Binance USDⓈ-M always opens two sockets (routed /public and /market). Ids used to restart at 1 on each,
    so a rejection of one socket's id 1 resolved the other socket's subscriptions."""
    ids: list[tuple[str, object]] = []
    async with rig(("binanceusdm",), channels=("trades", "book")) as r:
        server = r.server("binanceusdm")
        original = server.on_text

        async def recording(conn: Any, text: str) -> None:
            msg = json.loads(text)
            if isinstance(msg, dict) and "id" in msg:
                ids.append((conn.route, msg["id"]))
            await original(conn, text)

        server.on_text = recording  # type: ignore[method-assign]
        r.manager.reconnect_all()  # so that every request goes through the recorder
        await ready(r, ("binanceusdm",))
        public = next(c for c in server.connections.values() if c.route.startswith("/public"))
        r.sim.inject(Fault("reject"), exchange="binanceusdm", connection=public.conn_id)
        await r.manager.subscribe("binanceusdm", [Subscription(Channel.TICKER, r.unified("binanceusdm", 0))])
        await r.until(lambda: r.rec.count(E.SUBSCRIPTION_REJECTED, "binanceusdm") == 1, 10, "rejected")
        by_route = {c.spec.route: c for c in r.conns("binanceusdm")}
        assert by_route["public"].stats().subscriptions_rejected == 1
        market = by_route["market"].stats()
        assert market.subscriptions_rejected == 0 and market.subscriptions_confirmed == 2
        [rejected] = [e for e in r.rec.events if e.type is E.SUBSCRIPTION_REJECTED]
        assert (rejected.stream, rejected.symbol, rejected.feed) == ("ticker", "BTC/USDT:USDT", "binanceusdm")
        # every subscribe/unsubscribe id the server saw is distinct, whichever socket carried it
        await r.manager.unsubscribe(
            "binanceusdm", [Subscription(Channel.TRADES, r.unified("binanceusdm", 1))]
        )
        market_reg = by_route["market"].subscriptions
        await r.until(
            lambda: market_reg.pending_unsubscribe == (), 10, "the unsubscribe ack resolved as an unsubscribe"
        )
        assert by_route["market"].stats().subscriptions_confirmed == 1 and market_reg.stale_acks == 0
    routes = {route.split("/")[1] for route, _ in ids}
    assert routes == {"public", "market"}
    assert len({i for _, i in ids}) == len(ids) >= 4
