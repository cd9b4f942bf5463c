"""Bitget v2 protocol conformance of the simulator with a raw aiohttp client (docs/protocols/bitget.md).

Books and checksums are verified with the test-side book and CRC of tests.simulator.sim_helpers (OkxClientBook, same
interleaved signed CRC32 rule), not with the client adapter."""

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

from cryptolink.clock import FakeClock
from cryptolink.simulator import Fault, SimConfig, Simulator
from cryptolink.simulator.bitget import BITGET_RULES, HOSTS, BitgetServer
from tests.simulator.sim_helpers import OkxClientBook, recv_close, recv_until

pytestmark = pytest.mark.integration

WS = "/v2/ws/public"


def cfg(rate_hz: float = 400.0, **rules: Any) -> SimConfig:
    return SimConfig(rules={"bitget": replace(BITGET_RULES, **rules)}, synthetic_rate_hz=rate_hz)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def sub(*args: tuple[str, str, str], op: str = "subscribe") -> str:
    return json.dumps({"op": op, "args": [{"instType": k, "channel": c, "instId": i} for k, c, i in args]})


def push(channel: str, action: str | None = None) -> Any:
    def pred(f: Any) -> bool:
        return (
            isinstance(f, dict)
            and f.get("arg", {}).get("channel") == channel
            and "data" in f
            and (action is None or f.get("action") == action)
        )

    return pred


def event(f: Any) -> bool:
    return isinstance(f, dict) and "event" in f


class ClientBook(OkxClientBook):
    """A Bitget ``books`` client as the Depth-Channel page describes it: absolute sizes, 0 deletes, a snapshot
    replaces the book; the checksum is the signed CRC32 of the interleaved top 25 ``price:size`` strings, the same
    rule as OKX's (the shared test book, independent of the adapters)."""

    def apply(self, data: dict[str, Any], snapshot: bool = False) -> None:
        if snapshot:
            self.bids.clear()
            self.asks.clear()
        super().apply(data)


def server(sim: Simulator) -> BitgetServer:
    s = sim.servers["bitget"]
    assert isinstance(s, BitgetServer)
    return s


@pytest.mark.timeout(30)
async def test_acks_errors_ping_and_trades(http: aiohttp.ClientSession) -> None:
    async with (
        Simulator(["bitget"], mode="synthetic", config=cfg()) as sim,
        http.ws_connect(sim.endpoints()["bitget"]["ws_url"] + WS) as ws,
    ):
        await ws.send_str(
            sub(("SPOT", "trade", "BTCUSDT"), ("SPOT", "ticker", "BTCUSDT"), ("SPOT", "books", "NOPEUSDT"))
        )
        acks = [await recv_until(ws, event) for _ in range(3)]
        assert acks[0] == {
            "event": "subscribe",
            "arg": {"instType": "SPOT", "channel": "trade", "instId": "BTCUSDT"},
        }
        assert acks[1]["arg"]["channel"] == "ticker"
        assert acks[2] == {
            "event": "error",
            "code": 30001,
            "msg": "instType:SPOT,channel:books,instId:NOPEUSDT doesn't exist",
        }
        await ws.send_str(sub(("USDT-FUTURES", "books", "AVAXUSDT")))  # served as spot only
        assert (await recv_until(ws, event))["code"] == 30001
        await ws.send_str("{bad")
        assert (await recv_until(ws, event))["code"] == 30002
        await ws.send_str(json.dumps({"op": "login", "args": [{}]}))
        assert (await recv_until(ws, event))["code"] == 30003
        await ws.send_str("ping")
        assert await recv_until(ws, lambda f: f == "pong") == "pong"
        ticker = await recv_until(ws, push("ticker"))
        t = ticker["data"][0]
        assert ticker["action"] == "snapshot" and t["instId"] == "BTCUSDT"
        assert Decimal(t["bidPr"]) < Decimal(t["askPr"]) and Decimal(t["bidSz"]) > 0 and t["lastPr"]
        trades = [await recv_until(ws, push("trade")) for _ in range(3)]
        ids = [int(f["data"][0]["tradeId"]) for f in trades]
        assert ids == list(range(ids[0], ids[0] + 3)), "one push per trade, ids in order"
        item = trades[0]["data"][0]
        assert trades[0]["action"] == "update" and item["side"] in ("buy", "sell")
        assert set(item) == {"ts", "price", "size", "side", "tradeId"}
        stats = server(sim).sim_stats()["frames_sent"]
        assert stats[BitgetServer.trade_stream_key("BTCUSDT")] >= 3
        assert BitgetServer.trade_stream_key("USDT-FUTURES:BTCUSDT") == "trade:USDT-FUTURES:BTCUSDT"
        await ws.send_str(sub(("SPOT", "trade", "BTCUSDT"), op="unsubscribe"))
        assert (await recv_until(ws, event))["event"] == "unsubscribe"


@pytest.mark.timeout(30)
async def test_trade_snapshot_on_subscribe_is_counted_once_per_trade(http: aiohttp.ClientSession) -> None:
    """A ``trade`` subscription first brings one ``action:"snapshot"`` push of the last 50 trades, newest first,
    each as the source recorded it; then live ``update`` pushes continue at the next id. The stats record each
    snapshot trade as one sent trade, and a re-subscription's snapshot records none twice."""
    clock = FakeClock()  # frozen: the market moves only when driven below
    async with (
        Simulator(["bitget"], mode="synthetic", clock=clock, config=cfg()) as sim,
        http.ws_connect(sim.endpoints()["bitget"]["ws_url"] + WS) as ws,
    ):
        src = server(sim).source("BTCUSDT")
        assert src is not None
        now = clock.time_ns() // 1_000_000
        while len(src.trades) < 60:
            src.emit_next(now)
        kept = {t.trade_id: t for t in src.trades.select(10**6)}
        last = src.last_trade_id
        await ws.send_str(sub(("SPOT", "trade", "BTCUSDT")))
        assert (await recv_until(ws, event))["event"] == "subscribe"
        snap = await recv_until(ws, push("trade"))
        assert snap["action"] == "snapshot"
        ids = [int(x["tradeId"]) for x in snap["data"]]
        assert ids == list(range(last, last - 50, -1)), "the last 50 trades, newest first"
        for x in snap["data"]:
            t = kept[int(x["tradeId"])]
            assert (int(x["ts"]), Decimal(x["price"]), Decimal(x["size"])) == (
                t.ts_ms,
                Decimal(t.price),
                Decimal(t.qty),
            )
            assert x["side"] == ("sell" if t.buyer_maker else "buy")
        key = BitgetServer.trade_stream_key("BTCUSDT")
        (conn,) = server(sim).connections.values()
        st = conn.streams[key]
        assert (st.frames, st.first_id, st.last_id, st.non_increasing) == (50, last - 49, last, 0)
        assert server(sim).sim_stats()["frames_sent"][key] == 1, "one frame on the wire"
        while src.last_trade_id == last:
            src.emit_next(now)
        live = await recv_until(ws, push("trade"))
        assert live["action"] == "update" and [int(x["tradeId"]) for x in live["data"]] == [last + 1]
        await ws.send_str(sub(("SPOT", "trade", "BTCUSDT"), op="unsubscribe"))
        await ws.send_str(sub(("SPOT", "trade", "BTCUSDT")))
        again = await recv_until(ws, push("trade", "snapshot"))
        assert int(again["data"][0]["tradeId"]) == last + 1 and len(again["data"]) == 50
        assert (st.frames, st.first_id, st.last_id, st.non_increasing) == (51, last - 49, last + 1, 0)


@pytest.mark.timeout(30)
async def test_book_push_periods_are_200ms_spot_and_150ms_futures(http: aiohttp.ClientSession) -> None:
    clock = FakeClock()
    async with (
        Simulator(["bitget"], mode="synthetic", clock=clock, config=cfg()) as sim,
        http.ws_connect(sim.endpoints()["bitget"]["ws_url"] + WS) as ws,
    ):
        await ws.send_str(sub(("SPOT", "books", "ETHUSDT"), ("USDT-FUTURES", "books", "ETHUSDT")))
        for _ in range(2):
            assert (await recv_until(ws, event))["event"] == "subscribe"
        for _ in range(60):  # 3 s of simulated time
            await clock.advance(0.05)
        (conn,) = server(sim).connections.values()
        periods = {}
        for kind in ("SPOT", "USDT-FUTURES"):
            stream = BitgetServer.book_stream_prefix(f"{kind}:ETHUSDT" if kind != "SPOT" else "ETHUSDT")
            times = [ts for ts, s, _ in conn.recent if s == stream][1:]  # the pushes after the snapshot
            periods[kind] = {round((b - a) / 10) * 10 for a, b in itertools.pairwise(times)}
            assert len(times) >= 10
        assert periods == {"SPOT": {200}, "USDT-FUTURES": {150}}


async def _verify_books(ws: aiohttp.ClientWebSocketResponse, updates: int) -> tuple[ClientBook, list[int]]:
    book = ClientBook()
    seqs: list[int] = []
    snap = await recv_until(ws, push("books", "snapshot"))
    book.apply(snap["data"][0], True)
    assert book.checksum() == snap["data"][0]["checksum"]
    seqs.append(snap["data"][0]["seq"])
    for _ in range(updates):
        up = await recv_until(ws, push("books", "update"), 10)
        data = up["data"][0]
        book.apply(data, False)
        assert book.checksum() == data["checksum"]
        seqs.append(data["seq"])
    return book, seqs


@pytest.mark.timeout(60)
async def test_synthetic_books_checksums_and_seq_on_spot_and_futures(http: aiohttp.ClientSession) -> None:
    async with (
        Simulator(["bitget"], mode="synthetic", config=cfg()) as sim,
        http.ws_connect(sim.endpoints()["bitget"]["ws_url"] + WS) as ws,
    ):
        for kind in ("SPOT", "USDT-FUTURES"):
            await ws.send_str(sub((kind, "books", "ETHUSDT")))
            book, seqs = await _verify_books(ws, 15)
            assert all(b > a for a, b in itertools.pairwise(seqs)), "seq increases"
            assert any(b - a > 1 for a, b in itertools.pairwise(seqs)), "not by a fixed +1"
            await ws.send_str(sub((kind, "books", "ETHUSDT"), op="unsubscribe"))
            await recv_until(ws, lambda f: event(f) and f["event"] == "unsubscribe")
            src = server(sim).sources["ETHUSDT" if kind == "SPOT" else "USDT-FUTURES:ETHUSDT"]
            assert max(book.bids) < min(book.asks) and src.last_update_id >= seqs[-1]


@pytest.mark.timeout(60)
async def test_replayed_books_verify_across_loop_seams(http: aiohttp.ClientSession) -> None:
    """AVAXUSDT replays the recording (about 30 s) at 15x: two seconds of updates cross a loop seam; every
    checksum matches the client's book rebuilt from the recorded strings."""
    async with (
        Simulator(["bitget"], mode="replay", speed=15.0, config=cfg()) as sim,
        http.ws_connect(sim.endpoints()["bitget"]["ws_url"] + WS) as ws,
    ):
        await ws.send_str(sub(("SPOT", "books", "AVAXUSDT"), ("USDT-FUTURES", "books", "DASHUSDT")))
        src = server(sim).sources
        books: dict[str, ClientBook] = {}
        verified = {"AVAXUSDT": 0, "DASHUSDT": 0}
        while min(verified.values()) < 20 or src["AVAXUSDT"].loops < 1:  # type: ignore[attr-defined]
            f = await recv_until(ws, push("books"), 10)
            inst, data = f["arg"]["instId"], f["data"][0]
            if f["action"] == "snapshot":
                books[inst] = ClientBook()
            books[inst].apply(data, f["action"] == "snapshot")
            assert books[inst].checksum() == data["checksum"], (inst, f["action"])
            verified[inst] += 1
        assert books["AVAXUSDT"].bids and books["DASHUSDT"].asks


@pytest.mark.timeout(30)
async def test_no_ping_closes_pings_keep_it_open(http: aiohttp.ClientSession) -> None:
    # a 1.2 s limit against pings every ~0.1 s: a loaded machine would have to stall 1 s to close the pinger
    async with Simulator(["bitget"], mode="synthetic", config=cfg(pong_timeout_s=1.2)) as sim:
        url = sim.endpoints()["bitget"]["ws_url"] + WS
        async with http.ws_connect(url) as quiet, http.ws_connect(url) as pinger:
            await quiet.send_str(sub(("SPOT", "trade", "BTCUSDT")))
            closer = asyncio.ensure_future(recv_close(quiet, 10))
            for _ in range(20):  # 2 s of pings every 0.1 s: beyond the limit, still open
                await pinger.send_str("ping")
                assert await recv_until(pinger, lambda f: f == "pong") == "pong"
                await asyncio.sleep(0.1)
            await closer
            assert quiet.close_code == 4000
            assert not pinger.closed


@pytest.mark.timeout(30)
async def test_inbound_rate_and_lifetime_closes(http: aiohttp.ClientSession) -> None:
    async with Simulator(["bitget"], mode="synthetic", config=cfg(lifetime_s=0.5)) as sim:
        url = sim.endpoints()["bitget"]["ws_url"] + WS
        async with http.ws_connect(url) as ws:
            for _ in range(11):  # 10 messages per second, ping included
                await ws.send_str("ping")
            await recv_close(ws)
            assert ws.close_code == 1008
        async with http.ws_connect(url) as ws:
            await recv_close(ws)
            assert ws.close_code == 1001


@pytest.mark.timeout(30)
async def test_subscription_quota(http: aiohttp.ClientSession) -> None:
    async with (
        Simulator(["bitget"], mode="synthetic", config=cfg(max_subs_per_hour=2)) as sim,
        http.ws_connect(sim.endpoints()["bitget"]["ws_url"] + WS) as ws,
    ):
        for op in ("subscribe", "unsubscribe", "subscribe"):
            await ws.send_str(sub(("SPOT", "ticker", "BTCUSDT"), op=op))
        events = [await recv_until(ws, event) for _ in range(3)]
        assert [e["event"] for e in events] == ["subscribe", "unsubscribe", "error"]
        assert events[2]["code"] == 30006


@pytest.mark.timeout(30)
async def test_faults_gap_badchecksum_noping_seqreset_reject(http: aiohttp.ClientSession) -> None:
    async with (
        Simulator(["bitget"], mode="synthetic", config=cfg()) as sim,
        http.ws_connect(sim.endpoints()["bitget"]["ws_url"] + WS) as ws,
    ):
        await ws.send_str(sub(("SPOT", "books", "BTCUSDT")))
        book, _ = await _verify_books(ws, 2)
        sim.inject(Fault("badchecksum", symbol="BTCUSDT"), exchange="bitget")
        up = (await recv_until(ws, push("books", "update")))["data"][0]
        book.apply(up, False)
        assert book.checksum() != up["checksum"], "a wrong checksum"
        up = (await recv_until(ws, push("books", "update")))["data"][0]
        book.apply(up, False)
        assert book.checksum() == up["checksum"], "only one"
        sim.inject(Fault("gap", symbol="BTCUSDT"), exchange="bitget")
        up = (await recv_until(ws, push("books", "update")))["data"][0]
        book.apply(up, False)
        assert book.checksum() != up["checksum"], "an update of the top 25 was withheld"
        (conn,) = server(sim).connections.values()
        assert conn.streams["books:SPOT:BTCUSDT"].skipped == 1
        before = up["seq"]
        sim.inject(Fault("seqreset", symbol="BTCUSDT"), exchange="bitget")
        up = (await recv_until(ws, push("books", "update")))["data"][0]
        assert up["seq"] < before
        sim.inject(Fault("noping"), exchange="bitget")
        await ws.send_str("ping")
        sim.inject(Fault("notice"), exchange="bitget")  # Bitget has no notice: nothing is sent
        frames = [await recv_until(ws, lambda f: True) for _ in range(5)]
        assert "pong" not in frames and not any(event(f) for f in frames)
        sim.inject(Fault("reject"), exchange="bitget")
        await ws.send_str(sub(("SPOT", "ticker", "ETHUSDT")))
        err = await recv_until(ws, event)
        assert err["event"] == "error" and "instType:SPOT,channel:ticker,instId:ETHUSDT" in err["msg"]
        assert server(sim).sim_stats()["faults"]["notice"] == 1


@pytest.mark.timeout(30)
async def test_rest_endpoints_and_paging(http: aiohttp.ClientSession) -> None:
    async with Simulator(["bitget"], mode="synthetic", config=cfg()) as sim:
        base = sim.endpoints()["bitget"]["rest_url"]
        assert sim.endpoints()["bitget"]["hosts"].keys() == set(HOSTS)

        async def get(path: str, status: int = 200) -> Any:
            async with http.get(base + path) as r:
                assert r.status == status, (path, await r.text())
                return await r.json()

        t = await get("/api/v2/public/time")
        assert t["code"] == "00000" and int(t["data"]["serverTime"]) > 0
        spot = (await get("/api/v2/spot/public/symbols"))["data"]
        assert [s["symbol"] for s in spot] == ["AVAXUSDT", "EOSUSDT", "BTCUSDT", "ETHUSDT"]
        assert spot[2]["baseCoin"] == "BTC" and spot[2]["status"] == "online"
        perp = (await get("/api/v2/mix/market/contracts?productType=USDT-FUTURES"))["data"]
        assert [s["symbol"] for s in perp] == ["DASHUSDT", "UNIUSDT", "BTCUSDT", "ETHUSDT"]
        assert perp[2]["symbolType"] == "perpetual" and perp[2]["symbolStatus"] == "normal"
        assert (await get("/api/v2/mix/market/contracts?productType=COIN-FUTURES"))["data"] == []
        assert (await get("/api/v2/mix/market/contracts", 400))["code"] == "40019"
        assert (await get("/api/v2/margin/currencies"))["data"] == []
        ob = (await get("/api/v2/spot/market/orderbook?symbol=BTCUSDT&type=step0&limit=5"))["data"]
        assert len(ob["bids"]) == 5 and Decimal(ob["bids"][0][0]) < Decimal(ob["asks"][0][0])
        md = (await get("/api/v2/mix/market/merge-depth?symbol=BTCUSDT&productType=USDT-FUTURES&limit=3"))[
            "data"
        ]
        assert len(md["asks"]) == 3
        assert (await get("/api/v2/spot/market/orderbook?symbol=NOPE", 400))["code"] == "40034"
        (tk,) = (await get("/api/v2/spot/market/tickers?symbol=ETHUSDT"))["data"]
        assert tk["symbol"] == "ETHUSDT" and Decimal(tk["bidPr"]) < Decimal(tk["askPr"])
        (mt,) = (await get("/api/v2/mix/market/ticker?symbol=BTCUSDT&productType=USDT-FUTURES"))["data"]
        assert mt["symbol"] == "BTCUSDT" and "fundingRate" in mt
        assert len((await get("/api/v2/mix/market/tickers?productType=USDT-FUTURES"))["data"]) == 4
        src = server(sim).sources["BTCUSDT"]
        for _ in range(400):  # drive the market now (about 15 % of synthetic events are trades)
            src.emit_next(sim.clock.time_ns() // 1_000_000)
        assert len(src.trades) >= 30
        newest = (await get("/api/v2/spot/market/fills?symbol=BTCUSDT&limit=10"))["data"]
        ids = [int(x["tradeId"]) for x in newest]
        assert ids == sorted(ids, reverse=True) and len(ids) == 10
        page = (await get(f"/api/v2/spot/market/fills-history?symbol=BTCUSDT&idLessThan={ids[4]}&limit=3"))[
            "data"
        ]
        assert [int(x["tradeId"]) for x in page] == [ids[4] - 1, ids[4] - 2, ids[4] - 3]
        mix = (await get("/api/v2/mix/market/fills-history?symbol=BTCUSDT&productType=USDT-FUTURES&limit=2"))[
            "data"
        ]
        assert all(x["side"] in ("Buy", "Sell") for x in mix)
        missing = await get("/api/v2/spot/market/nothing", 404)
        assert missing["code"] == "40404"


@pytest.mark.timeout(30)
async def test_rest_limit_answers_429(http: aiohttp.ClientSession) -> None:
    """``rest_limit_override`` (3 requests per 60 s on every endpoint): the 4th request within the window is
    HTTP 429 with Bitget's error body, whatever the machine's speed; the limit is per endpoint."""
    limits = {"bitget": (3, 60.0)}
    async with Simulator(["bitget"], mode="synthetic", config=cfg(), rest_limits=limits) as sim:
        base = sim.endpoints()["bitget"]["rest_url"]
        statuses, bodies = [], []
        for _ in range(5):
            async with http.get(base + "/api/v2/public/time") as r:
                statuses.append(r.status)
                bodies.append(await r.json())
        assert statuses == [200, 200, 200, 429, 429]
        body = bodies[3]
        assert body["code"] == "429" and body["msg"] == "Too Many Requests" and body["data"] is None
        async with http.get(base + "/api/v2/spot/public/symbols") as r:
            assert r.status == 200, "another endpoint has its own count"
        assert server(sim).sim_stats()["rest"]["429"] == 2
