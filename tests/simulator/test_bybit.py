"""Bybit v5 simulator conformance with a raw aiohttp client (https://bybit-exchange.github.io/docs/v5/): URLs,
answers, pings, refusals, keepalive close, books rebuilt by an independent client, level-1 re-pushes, partial
tickers, REST endpoints and the IP limit."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from cryptolink.exchanges.bybit import BybitAdapter
from cryptolink.models import Channel, Market, Subscription, Ticker
from cryptolink.simulator import Fault, SimConfig, Simulator
from cryptolink.simulator.bybit import BYBIT_RULES, HOSTS, BybitServer
from cryptolink.simulator.market import Depth, Event, Level, MarketSource
from cryptolink.simulator.market import Trade as SimTrade
from tests.simulator.sim_helpers import recv_close, recv_until

pytestmark = pytest.mark.integration


def config(**rules: Any) -> SimConfig:
    return SimConfig(rules={"bybit": replace(BYBIT_RULES, **rules)}, synthetic_rate_hz=300.0)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def req(op: str, *args: str, req_id: str | None = None) -> str:
    msg: dict[str, Any] = {"op": op, "args": list(args)}
    if req_id is not None:
        msg["req_id"] = req_id
    return json.dumps(msg)


def answer(f: Any) -> bool:
    return isinstance(f, dict) and "success" in f


def push(topic: str) -> Any:
    return lambda f: isinstance(f, dict) and f.get("topic") == topic


async def traded(sim: Simulator, served: str) -> None:
    """Return once the simulator's market of ``served`` (``BTCUSDT``, ``linear/BTCUSDT``) has traded: its source
    (started here if needed) holds a trade, or its next event is one (bounded by 10 s)."""
    src = sim.servers["bybit"].source(served)
    assert src is not None
    event = asyncio.Event()

    def on_event(ev: object) -> None:
        if isinstance(ev, SimTrade):
            event.set()

    src.listeners.append(on_event)
    try:
        if not len(src.trades):
            await asyncio.wait_for(event.wait(), 10)
    finally:
        src.listeners.remove(on_event)


class Book:
    """A Bybit book client written from the docs ("Process snapshot/delta"): snapshot resets, 0 deletes, other
    sizes insert or update; ``u`` of a delta must be the previous ``u`` + 1."""

    def __init__(self) -> None:
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}
        self.u: int | None = None

    def apply(self, msg: dict[str, Any]) -> None:
        data = msg["data"]
        if msg["type"] == "snapshot":
            self.bids.clear()
            self.asks.clear()
        else:
            assert data["u"] == (self.u or 0) + 1, (self.u, data["u"])
        for side, levels in ((self.bids, data["b"]), (self.asks, data["a"])):
            for p, q in levels:
                if Decimal(q) == 0:
                    side.pop(Decimal(p), None)
                else:
                    side[Decimal(p)] = Decimal(q)
        self.u = data["u"]

    def top(self) -> tuple[Decimal, Decimal]:
        return max(self.bids), min(self.asks)


@pytest.mark.timeout(20)
async def test_urls_hosts_answers_and_pongs(http: aiohttp.ClientSession) -> None:
    assert set(HOSTS) >= {"https://api.bybit.com", "https://api.bytick.com", "wss://stream.bybit.com"}
    async with Simulator(["bybit"], mode="synthetic", config=config()) as sim:
        base = sim.endpoints()["bybit"]["ws_url"]
        async with http.ws_connect(base + "/v5/public/spot") as ws:
            await ws.send_str(req("subscribe", "publicTrade.BTCUSDT", req_id="7"))
            ack = await recv_until(ws, answer)
            assert ack["success"] is True and ack["ret_msg"] == "subscribe" and ack["req_id"] == "7"
            assert ack["op"] == "subscribe" and ack["conn_id"]
            await ws.send_str('{"op":"ping"}')
            pong = await recv_until(ws, answer)
            assert (pong["ret_msg"], pong["op"], "req_id" in pong) == ("pong", "ping", False)
            trade = await recv_until(ws, push("publicTrade.BTCUSDT"))
            [t] = trade["data"]
            assert t["i"].isdigit() and t["S"] in ("Buy", "Sell") and trade["type"] == "snapshot"
        async with http.ws_connect(base + "/v5/public/linear") as ws:
            await ws.send_str(req("subscribe", "publicTrade.BTCUSDT"))
            ack = await recv_until(ws, answer)
            assert (ack["success"], ack["ret_msg"], ack["req_id"]) == (True, "", "")
            await ws.send_str('{"req_id":"p1","op":"ping"}')
            assert (await recv_until(ws, answer))["req_id"] == "p1"
            t = (await recv_until(ws, push("publicTrade.BTCUSDT")))["data"][0]
            assert not t["i"].isdigit() and len(t["i"]) == 36  # a UUID on derivatives
        async with http.ws_connect(base + "/v5/public/inverse") as ws:
            await ws.send_str(req("subscribe", "publicTrade.BTCUSDT", "publicTrade.BTCUSD", req_id="9"))
            refused = await recv_until(ws, answer)
            assert refused["success"] is False and refused["req_id"] == "9"
            assert refused["ret_msg"] == "Invalid symbol :[publicTrade.BTCUSDT]"
            t = (await recv_until(ws, push("publicTrade.BTCUSD")))["data"][0]
            assert Decimal(t["v"]) == int(Decimal(t["v"]))  # whole contracts
            await ws.send_str(req("subscribe", "publicTrade.BTCUSD"))
            again = await recv_until(ws, answer)
            assert again["ret_msg"] == "error:already subscribed,topic:publicTrade.BTCUSD"


@pytest.mark.timeout(20)
async def test_spot_refuses_more_than_10_args_and_reject_fault(http: aiohttp.ClientSession) -> None:
    async with Simulator(["bybit"], mode="synthetic", config=config()) as sim:
        base = sim.endpoints()["bybit"]["ws_url"]
        async with http.ws_connect(base + "/v5/public/spot") as ws:
            topics = (
                [f"orderbook.{d}.BTCUSDT" for d in (1, 50, 200, 1000)]
                + [f"publicTrade.{s}" for s in ("BTCUSDT", "ETHUSDT", "KCSUSDT")]
                + ["tickers.BTCUSDT", "tickers.ETHUSDT", "tickers.KCSUSDT", "orderbook.50.ETHUSDT"]
            )
            await ws.send_str(req("subscribe", *topics, req_id="1"))
            a = await recv_until(ws, answer)
            assert (a["success"], a["ret_msg"]) == (False, "args size >10")
            server = sim.servers["bybit"]
            assert isinstance(server, BybitServer) and not server.subs
            server.inject(Fault("reject"))
            await ws.send_str(req("subscribe", "publicTrade.BTCUSDT", req_id="2"))
            r = await recv_until(ws, answer)
            assert r["success"] is False and "topic:publicTrade.BTCUSDT" in r["ret_msg"]
            await ws.send_str(req("subscribe", *topics[:10], req_id="3"))
            ok = await recv_until(ws, answer)
            assert ok["success"] is True and ok["req_id"] == "3"


@pytest.mark.timeout(20)
async def test_idle_connection_closed_unless_pinged(http: aiohttp.ClientSession) -> None:
    async with Simulator(["bybit"], mode="synthetic", config=config(idle_close_s=0.4)) as sim:
        base = sim.endpoints()["bybit"]["ws_url"]
        async with (
            http.ws_connect(base + "/v5/public/spot") as quiet,
            http.ws_connect(base + "/v5/public/spot") as pinging,
        ):

            async def keep_pinging() -> None:
                while True:
                    await pinging.send_str('{"op":"ping"}')
                    await asyncio.sleep(0.1)

            task = asyncio.create_task(keep_pinging())
            try:
                await recv_close(quiet, within_s=5)
                assert quiet.close_code == 1000
                assert not pinging.closed
            finally:
                task.cancel()


@pytest.mark.parametrize("category", ["spot", "linear", "inverse"])
@pytest.mark.timeout(30)
async def test_books_rebuilt_by_an_independent_client_match_the_server(
    http: aiohttp.ClientSession, category: str
) -> None:
    """Deltas rebuild the whole top 50 exactly: after many changes, a second subscriber's snapshot (the server's
    top 50 at its ``u``) equals the first client's book once that one reaches the same ``u``; the book never holds
    more than 50 levels a side. Then a gap fault skips one ``u`` and seqreset restarts at ``u = 1``."""
    native = "BTCUSD" if category == "inverse" else "BTCUSDT"
    topic = f"orderbook.50.{native}"
    async with Simulator(["bybit"], mode="synthetic", config=config()) as sim:
        server = sim.servers["bybit"]
        assert isinstance(server, BybitServer)
        url = sim.endpoints()["bybit"]["ws_url"] + f"/v5/public/{category}"
        async with http.ws_connect(url) as ws:
            await ws.send_str(req("subscribe", topic))
            book = Book()
            deltas = 0

            async def step() -> None:
                nonlocal deltas
                f = await recv_until(ws, push(topic))
                book.apply(f)
                deltas += f["type"] == "delta"
                assert len(book.bids) <= 50 and len(book.asks) <= 50

            for _ in range(4):
                for _ in range(40):
                    await step()
                async with http.ws_connect(url) as other:
                    await other.send_str(req("subscribe", topic))
                    snap = await recv_until(other, push(topic))
                assert snap["type"] == "snapshot" and book.u is not None
                assert snap["data"]["u"] >= book.u
                while book.u < snap["data"]["u"]:
                    await step()
                view = Book()
                view.apply(snap)
                assert book.u == view.u and (book.bids, book.asks) == (view.bids, view.asks)
            assert deltas >= 159  # every push after the first snapshot
            # a gap fault withholds one delta: the next one skips a u
            server.inject(Fault("gap", symbol=native))
            while True:
                f = await recv_until(ws, push(topic))
                assert book.u is not None
                if f["data"]["u"] != book.u + 1:
                    assert f["data"]["u"] == book.u + 2
                    break
                book.apply(f)
            # a service restart (seqreset): the next change is a snapshot with u = 1
            server.inject(Fault("seqreset"))
            f = await recv_until(ws, push(topic))
            while f["data"]["u"] > 1:
                f = await recv_until(ws, push(topic))
            assert f["type"] == "snapshot" and f["data"]["u"] == 1
            book.apply(f)
            book.apply(await recv_until(ws, push(topic)))
            assert book.u == 2


class _ManualSource(MarketSource):
    """A market that changes only when the test says so: 60 levels a side (bids 100.00 down, asks 101.00 up)."""

    def __init__(self, symbol: str) -> None:
        super().__init__(symbol)
        self.book.apply(
            [(f"{100 - i}.00", "1") for i in range(60)], [(f"{101 + i}.00", "1") for i in range(60)]
        )
        self.last_update_id = 500
        self._next: tuple[list[Level], list[Level]] = ([], [])

    def _peek_delay(self) -> float:
        return 1e9  # never on its own

    def _pop(self, ts_ms: int) -> Event:
        bids, asks = self._next
        self.book.apply(bids, asks)
        first, last, prev = self._next_ids(1)
        return Depth(first, last, prev, bids, asks, ts_ms)

    def change(self, bids: list[Level], asks: list[Level] = []) -> None:  # noqa: B006 (never mutated)
        self._next = (bids, asks)
        self.emit_next(1)


@pytest.mark.timeout(20)
async def test_top_n_views_and_level1_ticker_on_known_changes(
    http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``orderbook.50`` keeps a top-50 view: removing the best bid deletes it and inserts the 51st; a change at
    level 55 pushes a delta without levels (``u`` still +1); a new best bid pushes the 50th out. ``orderbook.1``
    (the spot ticker, decoded by the adapter) pushes only when the best level changes and then names the new best."""
    monkeypatch.setattr(BybitServer, "make_market_source", lambda self, symbol: _ManualSource(symbol))
    adapter = BybitAdapter(Market.SPOT)
    adapter.subscribe_requests([Subscription(Channel.TICKER, "BTC/USDT")], 1)
    async with Simulator(["bybit"], mode="synthetic", config=config()) as sim:
        server = sim.servers["bybit"]
        url = sim.endpoints()["bybit"]["ws_url"] + "/v5/public/spot"
        async with http.ws_connect(url) as ws, http.ws_connect(url) as ws1:
            await ws.send_str(req("subscribe", "orderbook.50.BTCUSDT"))
            await ws1.send_str(req("subscribe", "orderbook.1.BTCUSDT"))
            assert (await recv_until(ws, answer))["success"] is True
            assert (await recv_until(ws1, answer))["success"] is True
            src = server.sources["BTCUSDT"]
            assert isinstance(src, _ManualSource)
            book, l1 = Book(), Book()
            book.apply(await recv_until(ws, push("orderbook.50.BTCUSDT")))
            first_l1 = await recv_until(ws1, push("orderbook.1.BTCUSDT"))
            l1.apply(first_l1)
            assert (len(book.bids), len(book.asks), book.u) == (50, 50, 500)

            async def delta() -> dict[str, Any]:
                f = await recv_until(ws, push("orderbook.50.BTCUSDT"))
                book.apply(f)
                return dict(f["data"])

            src.change([("100.00", "0")])  # the best bid leaves: the 51st (50.00) enters the top 50
            d = await delta()
            assert (d["b"], d["a"], d["u"]) == ([["100.00", "0"], ["50.00", "1"]], [], 501)
            src.change([], [("155.00", "7")])  # level 55: outside the top 50, nothing to send but u
            d = await delta()
            assert (d["b"], d["a"], d["u"]) == ([], [], 502)
            src.change([("100.50", "3")])  # a new best bid: 50.00 leaves the top 50 again
            d = await delta()
            assert (d["b"], d["u"]) == ([["50.00", "0"], ["100.50", "3"]], 503)
            top_bids, top_asks = src.book.top(50)
            assert book.bids == {Decimal(p): Decimal(q) for p, q in top_bids}
            assert book.asks == {Decimal(p): Decimal(q) for p, q in top_asks}
            # level 1: pushed for the first change (best bid 100.00 -> 99.00) and the third (-> 100.50), not for
            # the change at level 55
            [t0] = adapter.decode(json.dumps(first_l1), 0)
            tickers = []
            for _ in range(2):
                f = await recv_until(ws1, lambda f: push("orderbook.1.BTCUSDT")(f) and f["data"]["u"] != l1.u)
                assert f["data"]["u"] == (l1.u or 0) + 1
                l1.apply(f)
                [t] = adapter.decode(json.dumps(f), 0)
                tickers.append(t)
            assert all(isinstance(t, Ticker) for t in (t0, *tickers))
            assert [(t.bid_price, t.bid_size, t.ask_price) for t in (t0, *tickers)] == [  # type: ignore[union-attr]
                (Decimal("100.00"), Decimal(1), Decimal("101.00")),
                (Decimal("99.00"), Decimal(1), Decimal("101.00")),
                (Decimal("100.50"), Decimal(3), Decimal("101.00")),
            ]


@pytest.mark.timeout(30)
async def test_level1_repushed_every_3s_unchanged_and_replayed_from_the_recording(
    http: aiohttp.ClientSession,
) -> None:
    async with Simulator(["bybit"], mode="replay", speed=1.0, config=config()) as sim:
        server = sim.servers["bybit"]
        assert isinstance(server, BybitServer)
        async with http.ws_connect(sim.endpoints()["bybit"]["ws_url"] + "/v5/public/spot") as ws:
            await ws.send_str(req("subscribe", "orderbook.1.KCSUSDT"))
            first = await recv_until(ws, push("orderbook.1.KCSUSDT"))
            assert first["type"] == "snapshot" and len(first["data"]["b"]) == 1
            recorded = {
                (json.dumps(d["data"]["b"]), json.dumps(d["data"]["a"]))
                for d in _recorded_pushes("cryptofeed_bybit_BYBIT.ws.2.0.gz", "orderbook.1.KCSUSDT")
            }
            assert (json.dumps(first["data"]["b"]), json.dumps(first["data"]["a"])) in recorded
            seen: list[dict[str, Any]] = [first]
            while len(seen) < 6:
                seen.append(await recv_until(ws, push("orderbook.1.KCSUSDT"), within_s=10))
            for a, b in itertools.pairwise(seen):
                if a["data"]["u"] == b["data"]["u"]:  # the same book pushed again, 3 s later
                    assert (a["data"]["b"], a["data"]["a"]) == (b["data"]["b"], b["data"]["a"])
                    assert b["ts"] - a["ts"] >= 2900
                else:
                    assert b["data"]["u"] == a["data"]["u"] + 1
                assert (json.dumps(b["data"]["b"]), json.dumps(b["data"]["a"])) in recorded


def _recorded_pushes(name: str, topic: str) -> list[dict[str, Any]]:
    from cryptolink import recordings

    return [
        json.loads(r.payload)
        for r in recordings.iter_cryptofeed_ws(name)
        if r.kind == "received" and f'"{topic}"' in r.payload
    ]


@pytest.mark.timeout(20)
async def test_linear_tickers_snapshot_then_partial_deltas(http: aiohttp.ClientSession) -> None:
    async with (
        Simulator(["bybit"], mode="synthetic", config=config()) as sim,
        http.ws_connect(sim.endpoints()["bybit"]["ws_url"] + "/v5/public/linear") as ws,
    ):
        await ws.send_str(req("subscribe", "tickers.BTCUSDT"))
        snap = await recv_until(ws, push("tickers.BTCUSDT"))
        assert snap["type"] == "snapshot"
        state = dict(snap["data"])
        assert {"bid1Price", "ask1Price", "lastPrice", "markPrice", "fundingRate"} <= set(state)
        last = snap
        stamps = []
        for _ in range(5):
            d = await recv_until(ws, push("tickers.BTCUSDT"))
            assert d["type"] == "delta" and d["cs"] > last["cs"]
            stamps.append(d["ts"])
            changed = {k: v for k, v in d["data"].items() if k != "symbol"}
            assert changed and len(changed) < len(state)  # only the changed fields
            assert all(state.get(k) != v for k, v in changed.items())
            state.update(changed)
            last = d
        # one delta per 100 ms tick at most (a late tick may come closer to the next one, never two per tick)
        assert stamps[-1] - stamps[0] >= 300


@pytest.mark.timeout(20)
async def test_rest_endpoints_and_headers(http: aiohttp.ClientSession) -> None:
    async with Simulator(["bybit"], mode="synthetic", config=config()) as sim:
        rest = sim.endpoints()["bybit"]["rest_url"]

        async def get(path: str, **params: str) -> tuple[int, Any, Any]:
            async with http.get(rest + path, params=params) as r:
                return r.status, await r.json(content_type=None), r.headers

        status, body, headers = await get("/v5/market/time")
        assert status == 200 and body["retCode"] == 0 and body["result"]["timeSecond"].isdigit()
        assert headers["X-Bapi-Limit"] == "600" and int(headers["X-Bapi-Limit-Status"]) < 600
        assert headers["X-Bapi-Limit-Reset-Timestamp"].isdigit()
        _, body, _ = await get("/v5/market/instruments-info", category="linear", limit="1")
        assert [i["symbol"] for i in body["result"]["list"]] == ["BTCUSDT"]
        cursor = body["result"]["nextPageCursor"]
        _, body2, _ = await get("/v5/market/instruments-info", category="linear", limit="1", cursor=cursor)
        assert [i["symbol"] for i in body2["result"]["list"]] == ["ETHUSDT"]
        _, inv, _ = await get("/v5/market/instruments-info", category="inverse")
        assert {i["contractType"] for i in inv["result"]["list"]} == {"InversePerpetual"}
        _, opt, _ = await get("/v5/market/instruments-info", category="option", baseCoin="BTC")
        assert opt["retCode"] == 0 and opt["result"]["list"] == []
        _, ob, _ = await get("/v5/market/orderbook", category="spot", symbol="BTCUSDT", limit="5")
        r = ob["result"]
        assert len(r["b"]) == len(r["a"]) == 5 and Decimal(r["b"][0][0]) < Decimal(r["a"][0][0])
        assert r["u"] >= 1 and r["s"] == "BTCUSDT"
        await traded(sim, "BTCUSDT")
        _, tr, _ = await get("/v5/market/recent-trade", category="spot", symbol="BTCUSDT")
        items = tr["result"]["list"]
        assert 0 < len(items) <= 60
        ids = [int(t["execId"]) for t in items]
        assert ids == sorted(ids, reverse=True)  # newest first
        _, tk, _ = await get("/v5/market/tickers", category="spot", symbol="BTCUSDT")
        assert tk["result"]["list"][0]["symbol"] == "BTCUSDT"
        _, bad, _ = await get("/v5/market/orderbook", category="spot", symbol="NOPE")
        assert bad["retCode"] == 10001
        status, nf, _ = await get("/v5/nope")
        assert status == 404 and nf["retCode"] == 404


@pytest.mark.timeout(20)
async def test_ip_limit_answers_403_then_bans(http: aiohttp.ClientSession) -> None:
    cfg = SimConfig(rules={"bybit": BYBIT_RULES}, rest_limits={"bybit": (5, 60.0)})
    async with Simulator(["bybit"], mode="synthetic", config=cfg) as sim:
        rest = sim.endpoints()["bybit"]["rest_url"]
        statuses = []
        for _ in range(7):
            async with http.get(rest + "/v5/market/time") as r:
                statuses.append(r.status)
                text = await r.text()
                if r.status == 403:
                    assert "access too frequent" in text and r.headers["X-Bapi-Limit-Status"] == "0"
        assert statuses == [200] * 5 + [403, 403]
        stats = sim.servers["bybit"].sim_stats()
        assert stats["rest"]["requests"] == 7
