"""End to end: every simulator fault kind against Binance spot, Binance USD-M and OKX, through ExchangeManager."""

from __future__ import annotations

import asyncio

import pytest

from cryptolink.simulator import Fault
from integration.harness import rig

pytestmark = pytest.mark.integration

ALL = ("binance", "binanceusdm", "okx")


@pytest.mark.parametrize("kind", ["drop", "close"])
async def test_drop_and_close_recover_without_loss(kind: str) -> None:
    async def body() -> None:
        async with rig(ALL) as r:
            r.watch_book_matches(ALL)
            for n in ALL:
                await r.healthy(n)
                await r.flowing(n)
            for n in ALL:
                r.sim.inject(Fault(kind, code=1011), exchange=n)
            for n in ALL:
                await r.until(
                    lambda n=n: all(c.successful_reconnects >= 1 for c in r.conns(n)), 10, f"{n} reconnected"
                )
                await r.healthy(n)
                await r.flowing(n)
                await r.caught_up(n, 0)
                await r.caught_up(n, 1)
            for n in ALL:
                for c in r.conns(n):
                    assert c.disconnections == 1, c.conn_id
                    assert c.successful_reconnects == 1, c.conn_id
                for i in range(2):
                    r.assert_trades_exact(n, i)
                r.assert_books_increasing(n)
                eq, ne = r.book_matches(n)
                assert ne == 0 and eq >= 1, (n, eq, ne)

    await asyncio.wait_for(body(), 30)
