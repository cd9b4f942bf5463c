"""Gate API v4 simulator conformance with a raw aiohttp client (docs/protocols/gate.md).

The books are checked by a little client written here (Decimal prices, nothing shared with the adapter).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from cryptolink.simulator import Fault, SimConfig, Simulator
from cryptolink.simulator import registry as sim_registry
from cryptolink.simulator.gate import HOSTS, GateServer
from cryptolink.simulator.market import Depth
from tests.simulator.sim_helpers import recv_until

pytestmark = pytest.mark.integration

SPOT = "/ws/v4/"
FUT = "/v4/ws/usdt"


def config(**kw: Any) -> SimConfig:
    return SimConfig(synthetic_rate_hz=400.0, **kw)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(["gate"], mode="synthetic", config=config()) as s:
        yield s


def req(
    channel: str, payload: list[str], event: str = "subscribe", rid: int | None = 1, t: int | None = None
) -> str:
    msg: dict[str, Any] = {"time": int(time.time()) if t is None else t, "channel": channel, "event": event}
    msg["payload"] = payload
    if rid is not None:
        msg["id"] = rid
    return json.dumps(msg)


def answer(rid: int) -> Any:
    return lambda f: f.get("id") == rid and f.get("event") in ("subscribe", "unsubscribe")


def push(channel: str) -> Any:
    return lambda f: f.get("channel") == channel and f.get("event") == "update"


class Book:
    """An L2 book keyed by Decimal price: absolute sizes, zero deletes."""

    def __init__(self) -> None:
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}

    def apply(self, bids: list[Any], asks: list[Any]) -> None:
        for side, levels in ((self.bids, bids), (self.asks, asks)):
            for lv in levels:
                p, s = (lv["p"], lv["s"]) if isinstance(lv, dict) else lv
                if Decimal(str(s)) == 0:
                    side.pop(Decimal(p), None)
                else:
                    side[Decimal(p)] = Decimal(str(s))

    def top(self) -> tuple[tuple[Decimal, Decimal], tuple[Decimal, Decimal]]:
        b, a = max(self.bids), min(self.asks)
        return (b, self.bids[b]), (a, self.asks[a])


Side = dict[Decimal, Decimal]


def record_views(sim: Simulator, symbol: str, depth: int | None = None) -> dict[int, tuple[Side, Side]]:
    """The server's book (best ``depth`` levels per side, else all) after every source delta, by its last update
    id, from now on: the view a push ending at ``u`` stands for, so every push can be checked."""
    src = sim.servers["gate"].source(symbol)  # started now if nobody asked for it yet
    assert src is not None
    views: dict[int, tuple[Side, Side]] = {}

    def record(last_id: int) -> None:
        bids, asks = src.book.top(depth if depth is not None else src.book.depth())
        views[last_id] = (
            {Decimal(p): Decimal(q) for p, q in bids},
            {Decimal(p): Decimal(q) for p, q in asks},
        )

    record(src.last_update_id)
    src.listeners.append(lambda ev: record(ev.last_id) if isinstance(ev, Depth) else None)
    return views


# ------------------------------------------------------------------------------------------------ registry
def test_registered_hosts_and_stream_keys() -> None:
    spec = sim_registry.get("gate")
    assert spec.server is GateServer and spec.port_offset == 6
    assert set(HOSTS) == {
        "https://api.gateio.ws", "https://fx-api.gateio.ws", "wss://api.gateio.ws", "wss://fx-ws.gateio.ws",
    }  # fmt: skip
    assert GateServer.trade_stream_key("BTC_USDT") == "spot.trades:BTC_USDT"
    assert GateServer.trade_stream_key("futures:BTC_USDT") == "futures.trades:BTC_USDT"
    assert GateServer.book_stream_prefix("ETH_USDT") == "spot.obu:ETH_USDT"
    assert GateServer.book_stream_prefix("futures:ETH_USDT") == "futures.order_book_update:ETH_USDT"


# ------------------------------------------------------------------------------------------------ WebSocket
@pytest.mark.timeout(30)
async def test_acks_errors_ping_and_trades(sim: Simulator, http: aiohttp.ClientSession) -> None:
    async with http.ws_connect(sim.endpoints()["gate"]["ws_url"] + SPOT) as ws:
        await ws.send_str(req("spot.trades", ["BTC_USDT"], rid=7))
        ack = await recv_until(ws, answer(7))
        assert ack["result"] == {"status": "success"} and ack["payload"] == ["BTC_USDT"]
        assert ack["channel"] == "spot.trades" and ack["conn_id"] and "error" not in ack
        await ws.send_str(req("spot.trades", ["NOPE_USDT"], rid=8))
        err = await recv_until(ws, answer(8))
        assert err["error"]["code"] == 2 and err["result"] == {"status": "fail"}
        await ws.send_str("{bad")
        bad = await recv_until(ws, lambda f: "error" in f and f.get("id") is None)
        assert bad["error"]["code"] == 1
        await ws.send_str(req("spot.book_ticker", ["BTC_USDT"], rid=9, t=int(time.time()) - 61))
        skew = await recv_until(ws, answer(9))
        assert skew["error"]["code"] == 2 and "time" in skew["error"]["message"]
        await ws.send_str(json.dumps({"time": int(time.time()), "channel": "spot.ping"}))
        pong = await recv_until(ws, lambda f: f.get("channel") == "spot.pong")
        assert pong["event"] == "" and pong["result"] is None
        t = (await recv_until(ws, push("spot.trades")))["result"]
        assert t["currency_pair"] == "BTC_USDT" and t["side"] in ("buy", "sell") and isinstance(t["id"], int)
        assert Decimal(t["amount"]) > 0 and t["create_time_ms"].split(".")[0].isdigit()
        await ws.send_str(req("spot.trades", ["BTC_USDT"], event="unsubscribe", rid=10))
        assert (await recv_until(ws, answer(10)))["result"] == {"status": "success"}


@pytest.mark.timeout(30)
async def test_obu_rules_one_stream_per_request_and_no_duplicates(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    async with http.ws_connect(sim.endpoints()["gate"]["ws_url"] + SPOT) as ws:
        await ws.send_str(req("spot.obu", ["ob.BTC_USDT.400", "ob.ETH_USDT.400"], rid=1))
        assert (await recv_until(ws, answer(1)))["error"]["code"] == 2
        await ws.send_str(req("spot.obu", ["ob.BTC_USDT.400"], rid=2))
        assert (await recv_until(ws, answer(2)))["result"]["status"] == "success"
        await ws.send_str(req("spot.obu", ["ob.BTC_USDT.400"], rid=3))
        dup = await recv_until(ws, answer(3))
        assert dup["error"] == {"code": 2, "message": "Alert sub ob.BTC_USDT.400"}
        await ws.send_str(req("spot.obu", ["ob.BTC_USDT.7"], rid=4))
        assert (await recv_until(ws, answer(4)))["error"]["code"] == 2
        # the futures endpoint has no spot channels
    async with http.ws_connect(sim.endpoints()["gate"]["ws_url"] + FUT) as fws:
        await fws.send_str(req("spot.trades", ["BTC_USDT"], rid=5))
        assert (await recv_until(fws, answer(5)))["error"]["code"] == 2


@pytest.mark.timeout(30)
@pytest.mark.parametrize("level", ["400", "50"])
async def test_obu_chain_rebuilds_the_servers_book(
    sim: Simulator, http: aiohttp.ClientSession, level: str
) -> None:
    """``full`` then incremental pushes with ``U == previous u + 1``: after every push an independent client book
    equals the server's whole book as it was at that push's ``u``."""
    views = record_views(sim, "ETH_USDT")
    async with http.ws_connect(sim.endpoints()["gate"]["ws_url"] + SPOT) as ws:
        await ws.send_str(req("spot.obu", [f"ob.ETH_USDT.{level}"]))
        full = (await recv_until(ws, lambda f: f.get("result", {}).get("full") is True))["result"]
        assert full["s"] == f"ob.ETH_USDT.{level}"
        book = Book()
        book.apply(full["b"], full["a"])
        last = full["u"]
        for _ in range(20):
            r = (await recv_until(ws, push("spot.obu")))["result"]
            assert "full" not in r and r["U"] == last + 1 and r["u"] >= r["U"]
            last = r["u"]
            book.apply(r["b"], r["a"])
            assert (book.bids, book.asks) == views[last]


@pytest.mark.timeout(30)
async def test_gap_fault_breaks_the_obu_chain_once(sim: Simulator, http: aiohttp.ClientSession) -> None:
    async with http.ws_connect(sim.endpoints()["gate"]["ws_url"] + SPOT) as ws:
        await ws.send_str(req("spot.obu", ["ob.BTC_USDT.400"]))
        last = (await recv_until(ws, lambda f: f.get("result", {}).get("full") is True))["result"]["u"]
        r = (await recv_until(ws, push("spot.obu")))["result"]
        assert r["U"] == last + 1
        sim.inject(Fault("gap", symbol="BTC_USDT"), exchange="gate")
        r2 = (await recv_until(ws, push("spot.obu")))["result"]
        assert r2["U"] > r["u"] + 1  # one push withheld
        r3 = (await recv_until(ws, push("spot.obu")))["result"]
        assert r3["U"] == r2["u"] + 1
        sim.inject(Fault("seqreset"), exchange="gate")  # Gate documents no id restart: ignored
        r4 = (await recv_until(ws, push("spot.obu")))["result"]
        assert r4["U"] == r3["u"] + 1 and sim.servers["gate"].faults_injected["seqreset"] == 1
        sim.inject(Fault("reject"), exchange="gate")
        await ws.send_str(req("spot.trades", ["ETH_USDT"], rid=11))
        assert (await recv_until(ws, answer(11)))["error"]["code"] == 2


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("freq", "level"), [("100ms", 100), ("20ms", 20)])
async def test_futures_book_stitched_to_the_rest_snapshot(
    sim: Simulator, http: aiohttp.ClientSession, freq: str, level: int
) -> None:
    """``futures.order_book_update`` pushes bridge ``U <= id + 1 <= u`` onto ``/futures/usdt/order_book``
    ``with_id&limit=<level>`` and then chain ``U == u + 1``; levels are ``{"p","s"}`` in contracts and lie within
    the top ``level`` (or leave it as 0); after every push the client book equals the server's top ``level`` at
    that push's ``u``; trades carry signed sizes."""
    ep = sim.endpoints()["gate"]
    views = record_views(sim, "futures:BTC_USDT", level)
    async with http.ws_connect(ep["ws_url"] + FUT) as ws:
        await ws.send_str(req("futures.order_book_update", ["BTC_USDT", freq, str(level)], rid=1))
        assert (await recv_until(ws, answer(1)))["result"]["status"] == "success"
        await ws.send_str(req("futures.trades", ["BTC_USDT"], rid=2))
        await recv_until(ws, answer(2))
        first = (await recv_until(ws, push("futures.order_book_update")))["result"]
        async with http.get(
            ep["rest_url"] + "/api/v4/futures/usdt/order_book",
            params={"contract": "BTC_USDT", "limit": str(level), "with_id": "true"},
        ) as resp:
            snap = await resp.json()
        assert isinstance(snap["asks"][0]["s"], int) and snap["id"] >= first["u"]
        book = Book()
        book.apply(snap["bids"], snap["asks"])
        last, bridged, compared = snap["id"], False, 0
        while compared < 20:
            msg = await recv_until(ws, lambda f: f.get("event") == "update")
            if msg["channel"] == "futures.trades":
                [t] = msg["result"]
                assert t["contract"] == "BTC_USDT" and isinstance(t["size"], int) and t["size"] != 0
                continue
            r = msg["result"]
            if r["u"] <= last:
                continue
            if not bridged:
                assert r["U"] <= last + 1 <= r["u"]
                bridged = True
            else:
                assert r["U"] == last + 1
            last = r["u"]
            view_bids, view_asks = views[last]
            for lv in r["b"]:
                assert lv["s"] == 0 or Decimal(lv["p"]) in view_bids
            for lv in r["a"]:
                assert lv["s"] == 0 or Decimal(lv["p"]) in view_asks
            book.apply(r["b"], r["a"])
            assert (book.bids, book.asks) == (view_bids, view_asks)
            compared += 1


@pytest.mark.timeout(30)
async def test_futures_book_streams_are_per_frequency_and_level(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """Frequency 20ms or 100ms, level 100/50/20 (20ms only with 20; 1000ms and level 10 are gone): anything else
    is refused with code 2; each (contract, frequency, level) is its own stream, paced at its own interval, and a
    level-20 stream never carries a change below the top 20."""
    ep = sim.endpoints()["gate"]
    server = sim.servers["gate"]
    assert isinstance(server, GateServer)
    views = record_views(sim, "futures:BTC_USDT", 20)
    async with http.ws_connect(ep["ws_url"] + FUT) as deep, http.ws_connect(ep["ws_url"] + FUT) as top20:
        for rid, payload in enumerate(
            (["BTC_USDT", "20ms", "100"], ["BTC_USDT", "1000ms", "100"], ["BTC_USDT", "100ms", "10"],
             ["BTC_USDT", "100ms", "20", "x"], ["BTC_USDT", "20ms"]),
            start=10,
        ):  # fmt: skip
            await deep.send_str(req("futures.order_book_update", payload, rid=rid))
            assert (await recv_until(deep, answer(rid)))["error"]["code"] == 2, payload
        await deep.send_str(req("futures.order_book_update", ["BTC_USDT", "100ms", "100"], rid=1))
        assert (await recv_until(deep, answer(1)))["result"]["status"] == "success"
        await top20.send_str(req("futures.order_book_update", ["BTC_USDT", "20ms", "20"], rid=2))
        assert (await recv_until(top20, answer(2)))["result"]["status"] == "success"
        intervals = {k: s.interval_s for k, s in server.books.items() if k.startswith("futures.")}
        assert intervals == {
            "futures.order_book_update:BTC_USDT.100ms.100": 0.1,
            "futures.order_book_update:BTC_USDT.20ms.20": 0.02,
        }
        deeper = 0
        for _ in range(10):
            r = (await recv_until(deep, push("futures.order_book_update")))["result"]
            view_bids, view_asks = views[r["u"]]
            deeper += sum(lv["s"] != 0 and Decimal(lv["p"]) not in view_bids for lv in r["b"])
            deeper += sum(lv["s"] != 0 and Decimal(lv["p"]) not in view_asks for lv in r["a"])
        assert deeper > 0  # the level-100 stream carries changes below the top 20
        for _ in range(10):
            r = (await recv_until(top20, push("futures.order_book_update")))["result"]
            view_bids, view_asks = views[r["u"]]
            assert all(lv["s"] == 0 or Decimal(lv["p"]) in view_bids for lv in r["b"])
            assert all(lv["s"] == 0 or Decimal(lv["p"]) in view_asks for lv in r["a"])


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("path", "channel", "symbol"), [
    (SPOT, "spot.book_ticker", "BTC_USDT"), (FUT, "futures.book_ticker", "futures:BTC_USDT"),
])  # fmt: skip
async def test_book_ticker_pushes_only_when_the_best_bid_or_ask_changes(
    sim: Simulator, http: aiohttp.ClientSession, path: str, channel: str, symbol: str
) -> None:
    """Gate pushes the best bid/ask when it changes: no push repeats the previous one, and each is the server's
    best bid/ask at its update id ``u``."""
    views = record_views(sim, symbol, 1)
    async with http.ws_connect(sim.endpoints()["gate"]["ws_url"] + path) as ws:
        await ws.send_str(req(channel, [symbol.removeprefix("futures:")], rid=1))
        assert (await recv_until(ws, answer(1)))["result"]["status"] == "success"
        previous = None
        for _ in range(15):
            r = (await recv_until(ws, push(channel)))["result"]
            top = (Decimal(r["b"]), Decimal(str(r["B"])), Decimal(r["a"]), Decimal(str(r["A"])))
            assert top != previous
            previous = top
            ((bid, bq),) = views[r["u"]][0].items()
            ((ask, aq),) = views[r["u"]][1].items()
            assert top == (bid, bq, ask, aq)


# ------------------------------------------------------------------------------------------------ REST
@pytest.mark.timeout(30)
async def test_rest_endpoints(sim: Simulator, http: aiohttp.ClientSession) -> None:
    base = sim.endpoints()["gate"]["rest_url"] + "/api/v4"
    async with http.get(base + "/spot/time") as r:
        assert abs((await r.json())["server_time"] - time.time() * 1000) < 60_000
        assert r.headers["X-Gate-RateLimit-Limit"] == "200"
        assert int(r.headers["X-Gate-RateLimit-Requests-Remain"]) == 199
        assert int(r.headers["X-Gate-RateLimit-Reset-Timestamp"]) > 0
    async with http.get(base + "/spot/currency_pairs") as r:
        assert {p["id"] for p in await r.json()} == {"BTC_USDT", "ETH_USDT"}
    async with http.get(base + "/futures/usdt/contracts") as r:
        contracts = {c["name"]: c for c in await r.json()}
        assert contracts["BTC_USDT"]["quanto_multiplier"] == "0.0001" and set(contracts) == {
            "BTC_USDT",
            "ETH_USDT",
        }
    async with http.get(base + "/futures/btc/contracts") as r:
        assert await r.json() == []
    async with http.get(base + "/spot/order_book", params={"currency_pair": "BTC_USDT", "limit": "5"}) as r:
        book = await r.json()
        assert (
            "id" not in book
            and len(book["bids"]) == 5
            and float(book["bids"][0][0]) < float(book["asks"][0][0])
        )
    async with http.get(base + "/spot/order_book", params={"currency_pair": "X_Y"}) as r:
        assert r.status == 400 and (await r.json())["label"] == "INVALID_CURRENCY_PAIR"
    src = sim.servers["gate"].sources["BTC_USDT"]
    while len(src.trades) < 30:  # drive the market on the spot: no waiting
        src.emit_next(int(time.time() * 1000))
    async with http.get(base + "/spot/trades", params={"currency_pair": "BTC_USDT", "limit": "10"}) as r:
        newest = [int(t["id"]) for t in await r.json()]
    assert newest == sorted(newest, reverse=True) and len(newest) == 10
    params = {"currency_pair": "BTC_USDT", "last_id": str(newest[-1]), "reverse": "true", "limit": "5"}
    async with http.get(base + "/spot/trades", params=params) as r:
        older = [int(t["id"]) for t in await r.json()]
    assert older == list(range(newest[-1] - 1, newest[-1] - 6, -1))
    async with http.get(base + "/futures/usdt/trades", params={"contract": "BTC_USDT", "limit": "3"}) as r:
        assert all(isinstance(t["size"], int) for t in await r.json())
    async with http.get(base + "/spot/tickers", params={"currency_pair": "ETH_USDT"}) as r:
        [tk] = await r.json()
        assert tk["currency_pair"] == "ETH_USDT" and float(tk["highest_bid"]) < float(tk["lowest_ask"])
    async with http.get(base + "/futures/usdt/tickers") as r:
        assert {t["contract"] for t in await r.json()} == {"BTC_USDT", "ETH_USDT"}
    async with http.get(base + "/nope") as r:
        assert r.status == 404 and (await r.json())["label"] == "NOT_FOUND"


@pytest.mark.timeout(30)
async def test_rest_limit_answers_429_with_headers(http: aiohttp.ClientSession) -> None:
    async with Simulator(["gate"], mode="synthetic", config=config(rest_limits={"gate": (3, 60.0)})) as sim:
        base = sim.endpoints()["gate"]["rest_url"] + "/api/v4"
        statuses = []
        for _ in range(4):
            async with http.get(base + "/spot/time") as r:
                statuses.append(r.status)
                remain = r.headers["X-Gate-RateLimit-Requests-Remain"]
                body = await r.json()
        assert statuses == [200, 200, 200, 429] and remain == "0" and body["label"] == "TOO_MANY_REQUESTS"
        async with http.get(base + "/spot/currency_pairs") as r:  # limits are per endpoint
            assert r.status == 200
        stats = sim.servers["gate"].sim_stats()
        assert stats["rest"]["429"] == 1
