"""Binance spot, USD-M and COIN-M protocol conformance with a raw aiohttp client
(https://developers.binance.com/docs/binance-spot-api-docs, .../derivatives/usds-margined-futures,
.../derivatives/coin-margined-futures)."""

from __future__ import annotations

import asyncio
import gzip
import itertools
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cryptolink import recordings
from cryptolink.clock import FakeClock
from cryptolink.simulator import Fault, Simulator
from cryptolink.simulator.binance import BinanceServer
from tests.simulator.sim_helpers import fast_config, recv_close, recv_json, recv_until

pytestmark = pytest.mark.integration


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def test_subscribe_ack_list_unsubscribe_and_errors(http: aiohttp.ClientSession) -> None:
    async with Simulator(["binance"], mode="synthetic", config=fast_config()) as sim:
        url = sim.endpoints()["binance"]["ws_url"] + "/stream"
        async with http.ws_connect(url) as ws:
            await ws.send_str(json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 1}))
            assert await recv_until(ws, lambda f: "id" in f) == {"result": None, "id": 1}
            await ws.send_str(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": "x2"}))
            assert await recv_until(ws, lambda f: "id" in f) == {"result": ["btcusdt@trade"], "id": "x2"}
            frame = await recv_until(ws, lambda f: "stream" in f)
            assert frame["stream"] == "btcusdt@trade" and frame["data"]["e"] == "trade"
            await ws.send_str("{not json")
            err = await recv_until(ws, lambda f: "error" in f)  # nested, as the live servers send it
            assert err["error"]["code"] == 3 and err["id"] is None
            await ws.send_str(json.dumps({"method": "FLY", "id": 5}))
            err = await recv_until(ws, lambda f: "error" in f)
            assert err["error"]["code"] == 2 and err["id"] == 5 and "FLY" in err["error"]["msg"]
            await ws.send_str(json.dumps({"method": "UNSUBSCRIBE", "params": ["btcusdt@trade"], "id": 6}))
            assert await recv_until(ws, lambda f: f.get("id") == 6) == {"result": None, "id": 6}
            server = sim.binance
            assert isinstance(server, BinanceServer)
            assert "btcusdt@trade" not in server.subs


async def test_raw_path_streams_and_unknown_stream_accepted(http: aiohttp.ClientSession) -> None:
    async with Simulator(["binance"], mode="synthetic", config=fast_config()) as sim:
        base = sim.endpoints()["binance"]["ws_url"]
        async with http.ws_connect(base + "/ws/btcusdt@bookTicker/nopecoin@trade") as ws:
            frame = await recv_json(ws)
            assert set(frame) == {"u", "s", "b", "B", "a", "A"} and frame["s"] == "BTCUSDT"
            conn = next(iter(sim.binance.connections.values()))
            assert "nopecoin@trade" in conn.subscriptions and "nopecoin@trade" not in conn.streams


async def test_server_pings_and_pong_timeout(http: aiohttp.ClientSession) -> None:
    cfg = fast_config(binance={"ping_interval_s": 0.05, "pong_timeout_s": 0.3})
    async with Simulator(["binance"], mode="synthetic", config=cfg) as sim:
        url = sim.endpoints()["binance"]["ws_url"] + "/ws"
        async with http.ws_connect(url, autoping=False) as ws:
            msg = await asyncio.wait_for(ws.receive(), 5)
            assert msg.type == aiohttp.WSMsgType.PING
            await ws.pong(msg.data)  # answered: the connection lives on
            for _ in range(3):
                msg = await asyncio.wait_for(ws.receive(), 5)
                assert msg.type == aiohttp.WSMsgType.PING
                await ws.pong(msg.data)
            conn = next(iter(sim.binance.connections.values()))
            await sim.binance.wait_until(lambda: conn.pongs_received >= 4)
            assert conn.is_open
            # stop answering: closed with 1008 "pong timeout" once the oldest ping is unanswered for too long
            closed = await recv_close(ws, 5)
            assert (closed.type, closed.data, closed.extra) == (aiohttp.WSMsgType.CLOSE, 1008, "pong timeout")
            await sim.binance.wait_until(lambda: not conn.is_open)
            assert conn.close_reason == "pong timeout" and conn.close_code == 1008


async def test_inbound_rate_limit_closes_1008(http: aiohttp.ClientSession) -> None:
    cfg = fast_config(binance={"max_in_msgs_per_s": 5})
    async with (
        Simulator(["binance"], mode="synthetic", config=cfg) as sim,
        http.ws_connect(sim.endpoints()["binance"]["ws_url"] + "/ws") as ws,
    ):
        for _ in range(7):
            await ws.ping(b"x")  # ping frames count against the limit
        await recv_close(ws)
        assert ws.close_code == 1008


async def test_lifetime_close(http: aiohttp.ClientSession) -> None:
    cfg = fast_config(binance={"lifetime_s": 0.3})
    async with (
        Simulator(["binance"], mode="synthetic", config=cfg) as sim,
        http.ws_connect(sim.endpoints()["binance"]["ws_url"] + "/ws/btcusdt@trade") as ws,
    ):
        await recv_close(ws)
        assert ws.close_code == 1001


async def test_rest_weight_429_then_418(http: aiohttp.ClientSession) -> None:
    cfg = fast_config(binance={"rest_weight_limit": 10})
    async with Simulator(["binance"], mode="synthetic", config=cfg) as sim:
        url = sim.endpoints()["binance"]["rest_url"] + "/api/v3/time"
        for i in range(10):
            async with http.get(url) as r:
                assert r.status == 200
                assert r.headers["X-MBX-USED-WEIGHT-1M"] == str(i + 1)
        async with http.get(url) as r:
            assert r.status == 429 and int(r.headers["Retry-After"]) >= 1
            assert (await r.json())["code"] == -1003
        async with http.get(url) as r:
            assert r.status == 418 and int(r.headers["Retry-After"]) >= 1
        async with http.get(sim.endpoints()["binance"]["rest_url"] + "/api/v3/depth?symbol=NOPE") as r:
            assert r.status == 418  # still banned, whatever the endpoint


async def test_rest_errors_and_tickers(http: aiohttp.ClientSession) -> None:
    async with Simulator(["binance"], mode="synthetic", config=fast_config()) as sim:
        base = sim.endpoints()["binance"]["rest_url"] + "/api/v3"
        async with http.get(base + "/depth?symbol=NOPEUSDT") as r:
            assert r.status == 400 and (await r.json())["code"] == -1121
        async with http.get(base + "/depth") as r:
            assert r.status == 400 and (await r.json())["code"] == -1102
        async with http.get(base + "/ticker/bookTicker?symbol=BTCUSDT") as r:
            bt = await r.json()
            assert Decimal(bt["bidPrice"]) < Decimal(bt["askPrice"])
        async with http.get(base + "/ticker/24hr") as r:
            assert {t["symbol"] for t in await r.json()} == {"BTCUSDT", "ETHUSDT"}
        async with http.get(base + "/exchangeInfo") as r:
            info = await r.json()
            assert [s["symbol"] for s in info["symbols"]] == ["BTCUSDT", "ETHUSDT"]
            assert all(s["status"] == "TRADING" for s in info["symbols"])


def _apply(book: dict[str, dict[Decimal, Decimal]], bids: list[list[str]], asks: list[list[str]]) -> None:
    for side, levels in (("bids", bids), ("asks", asks)):
        for p, q in levels:
            if Decimal(q) == 0:
                book[side].pop(Decimal(p), None)
            else:
                book[side][Decimal(p)] = Decimal(q)


async def _sync_and_compare(http: aiohttp.ClientSession, sim: Simulator, exchange: str) -> None:
    """Run the documented sync procedure ("How to manage a local order book correctly") on BTCUSDT and check the
    rebuilt book equals a later REST snapshot exactly."""
    ep = sim.endpoints()[exchange]
    spot = exchange == "binance"
    symbol = "BTCUSD_PERP" if exchange == "binancecoinm" else "BTCUSDT"
    stream = f"{symbol.lower()}@depth@100ms"
    path = {"binance": "/stream", "binanceusdm": "/public/stream", "binancecoinm": "/stream"}[exchange]
    prefix = {"binance": "/api/v3", "binanceusdm": "/fapi/v1", "binancecoinm": "/dapi/v1"}[exchange]
    rest = ep["rest_url"] + prefix + "/depth"
    async with http.ws_connect(ep["ws_url"] + path + "?streams=" + stream) as ws:
        first = (await recv_json(ws))["data"]
        async with http.get(rest, params={"symbol": symbol, "limit": "1000"}) as r:
            snap = await r.json()
        assert snap["lastUpdateId"] >= first["U"]
        book: dict[str, dict[Decimal, Decimal]] = {"bids": {}, "asks": {}}
        _apply(book, snap["bids"], snap["asks"])
        last = snap["lastUpdateId"]
        prev_u: int | None = None
        started = False
        target = None
        for _ in range(400):
            d = (await recv_json(ws))["data"]
            if d["u"] <= last and not started:
                continue
            if not started:
                assert d["U"] <= last + 1 <= d["u"]
                started = True
            else:
                assert prev_u is not None  # set by the first applied update
                assert d["U"] == prev_u + 1
                if not spot:
                    assert d["pu"] == prev_u
            prev_u = d["u"]
            _apply(book, d["b"], d["a"])
            # a snapshot equals the rebuilt book when no change happened between the push and the snapshot
            # (periodic pushes batch every change of their interval); try again after the next push otherwise
            async with http.get(rest, params={"symbol": symbol, "limit": "50"}) as r:
                target = await r.json()
            if target["lastUpdateId"] == d["u"]:
                break
        assert target is not None and prev_u == target["lastUpdateId"]
        top_bids = sorted(book["bids"].items(), reverse=True)[:50]
        assert top_bids == [(Decimal(p), Decimal(q)) for p, q in target["bids"]]
        top_asks = sorted(book["asks"].items())[:50]
        assert top_asks == [(Decimal(p), Decimal(q)) for p, q in target["asks"]]


@pytest.mark.parametrize("exchange", ["binance", "binanceusdm", "binancecoinm"])
async def test_rest_snapshot_bridges_ws_diffs(http: aiohttp.ClientSession, exchange: str) -> None:
    async with Simulator([exchange], mode="replay", speed=3.0, config=fast_config()) as sim:
        await _sync_and_compare(http, sim, exchange)


def _capture_without_snapshot(path: Path) -> Path:
    """The first 3000 lines of the shipped spot BTCUSDT recording minus its REST snapshot line, gzipped."""
    lines = [
        f"{ts} {frame}"
        for ts, frame in recordings.iter_hftbacktest("hftbacktest_binance_spot_btcusdt_20240808.gz")
        if frame.startswith('{"stream"')
    ]
    path.write_bytes(gzip.compress(("\n".join(lines[:3000]) + "\n").encode()))
    return path


async def test_user_capture_without_snapshot_stays_self_consistent(
    http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """A capture with no REST snapshot line starts from an empty book: REST snapshots and diffs still agree."""
    path = _capture_without_snapshot(tmp_path / "capture.gz")
    cfg = replace(fast_config(), replay_files={("spot", "BTCUSDT"): path})
    async with Simulator(["binance"], mode="replay", speed=3.0, config=cfg) as sim:
        await _sync_and_compare(http, sim, "binance")


async def test_bad_user_capture_fails_at_start(tmp_path: Path) -> None:
    path = tmp_path / "empty.txt"
    path.write_text("\n")
    cfg = replace(fast_config(), replay_files={("spot", "BTCUSDT"): path})
    with pytest.raises(ValueError, match=r"empty\.txt"):
        async with Simulator(["binance"], mode="replay", config=cfg):
            pass


async def test_usdm_routes_pu_chain_and_wrong_route_silent(http: aiohttp.ClientSession) -> None:
    async with Simulator(["binanceusdm"], mode="synthetic", config=fast_config()) as sim:
        base = sim.endpoints()["binanceusdm"]["ws_url"]
        async with http.ws_connect(base + "/market/stream?streams=btcusdt@depth/btcusdt@aggTrade") as ws:
            streams = {(await recv_json(ws))["stream"] for _ in range(20)}
            assert streams == {"btcusdt@aggTrade"}  # depth on /market: accepted, delivers nothing
        async with http.ws_connect(base + "/public/ws/btcusdt@depth@0ms") as ws:  # real time: one per event
            prev = None
            for _ in range(20):
                d = await recv_json(ws)
                assert d["e"] == "depthUpdate" and {"T", "pu", "U", "u"} <= set(d)
                if prev is not None:
                    assert d["pu"] == prev
                prev = d["u"]


async def test_server_shutdown_notice(http: aiohttp.ClientSession) -> None:
    async with (
        Simulator(["binance"], mode="synthetic", config=fast_config()) as sim,
        http.ws_connect(sim.endpoints()["binance"]["ws_url"] + "/stream?streams=btcusdt@trade") as ws,
    ):
        await recv_json(ws)
        sim.inject(Fault("notice"), exchange="binance")
        frame = await recv_until(ws, lambda f: f.get("stream") == "!serverShutdown")
        assert frame["data"]["e"] == "serverShutdown"


async def _get(http: aiohttp.ClientSession, url: str) -> tuple[int, int, Any]:
    """``(status, X-MBX-USED-WEIGHT-1M, body)``."""
    async with http.get(url) as r:
        return r.status, int(r.headers["X-MBX-USED-WEIGHT-1M"]), await r.json()


async def test_spot_trade_history_endpoints(http: aiohttp.ClientSession) -> None:
    """aggTrades / trades / historicalTrades: the stream's ids, documented shapes, order, filters and weights."""
    clock = FakeClock()  # frozen between advances: one weight window, exact trade counts
    async with Simulator(["binance"], mode="synthetic", clock=clock, config=fast_config()) as sim:
        base = sim.endpoints()["binance"]["rest_url"] + "/api/v3"
        url = sim.endpoints()["binance"]["ws_url"] + "/stream?streams=btcusdt@aggTrade"
        async with http.ws_connect(url) as ws:
            await sim.binance.wait_subscribed("btcusdt@aggTrade")
            await clock.advance(2.0)
            kept = sim.binance.sources["BTCUSDT"].trades.select(10**6)
            streamed = [(await recv_json(ws))["data"]["a"] for _ in kept]
        ids = [t.trade_id for t in kept]
        assert streamed == ids and len(ids) > 40

        status, used, rows = await _get(http, base + "/aggTrades?symbol=BTCUSDT&limit=5")
        assert (status, used) == (200, 4)  # aggTrades weighs 4
        assert [r["a"] for r in rows] == ids[-5:]  # the newest, oldest first
        t = kept[-1]
        assert rows[-1] == {
            "a": t.trade_id, "p": t.price, "q": t.qty, "f": t.trade_id, "l": t.trade_id, "T": t.ts_ms,
            "m": t.buyer_maker, "M": True,
        }  # fmt: skip
        _, _, rows = await _get(http, base + f"/aggTrades?symbol=BTCUSDT&fromId={ids[3]}&limit=4")
        assert [r["a"] for r in rows] == ids[3:7]
        start, end = kept[5].ts_ms, kept[9].ts_ms
        _, _, rows = await _get(http, base + f"/aggTrades?symbol=BTCUSDT&startTime={start}&endTime={end}")
        assert [r["a"] for r in rows] == [t.trade_id for t in kept if start <= t.ts_ms <= end]
        _, _, rows = await _get(http, base + f"/aggTrades?symbol=BTCUSDT&endTime={end}&limit=2")
        assert [r["a"] for r in rows] == [t.trade_id for t in kept if t.ts_ms <= end][-2:]
        _, _, rows = await _get(http, base + "/aggTrades?symbol=BTCUSDT&fromId=1")  # older than kept
        assert [r["a"] for r in rows] == ids  # what is kept
        status, used, body = await _get(http, base + "/aggTrades?symbol=BTCUSDT&limit=0")
        assert (status, body["code"]) == (400, -1100)

        status, used, rows = await _get(http, base + "/trades?symbol=BTCUSDT&limit=3")
        assert status == 200 and used == 4 * 6 + 25  # 6 aggTrades calls so far, then trades weighs 25
        t = kept[-1]
        assert rows[-1] == {
            "id": t.trade_id, "price": t.price, "qty": t.qty,
            "quoteQty": format((Decimal(t.price) * Decimal(t.qty)).normalize(), "f"), "time": t.ts_ms,
            "isBuyerMaker": t.buyer_maker, "isBestMatch": True,
        }  # fmt: skip
        assert [r["id"] for r in rows] == ids[-3:]
        status, used, rows = await _get(
            http, base + f"/historicalTrades?symbol=BTCUSDT&fromId={ids[10]}&limit=2"
        )
        assert (status, used, [r["id"] for r in rows]) == (200, 4 * 6 + 50, ids[10:12])  # no API key needed
        status, _, body = await _get(http, base + "/trades?symbol=NOPEUSDT")
        assert (status, body["code"]) == (400, -1121)
        status, _, body = await _get(http, base + "/aggTrades")
        assert (status, body["code"]) == (400, -1102)


async def test_usdm_trade_history_endpoints_and_weights(http: aiohttp.ClientSession) -> None:
    clock = FakeClock()
    cfg = fast_config(binanceusdm={"rest_weight_limit": 50})
    async with Simulator(["binanceusdm"], mode="synthetic", clock=clock, config=cfg) as sim:
        base = sim.endpoints()["binanceusdm"]["rest_url"] + "/fapi/v1"
        await _get(http, base + "/time")  # weight 1; creates nothing
        sim.binanceusdm.source("BTCUSDT")  # starts the market task ...
        await asyncio.sleep(0)  # ... which parks on the fake clock at its first event
        await clock.advance(2.0)
        kept = sim.binanceusdm.sources["BTCUSDT"].trades.select(10**6)
        status, used, rows = await _get(http, base + "/aggTrades?symbol=BTCUSDT&limit=2")
        assert (status, used) == (200, 21)  # aggTrades weighs 20 on USD-M
        assert [r["a"] for r in rows] == [t.trade_id for t in kept[-2:]] and "M" not in rows[0]
        status, used, rows = await _get(http, base + "/trades?symbol=BTCUSDT&limit=2")
        assert (status, used) == (200, 26)  # trades weighs 5
        assert set(rows[0]) == {"id", "price", "qty", "quoteQty", "time", "isBuyerMaker"}
        start = kept[0].ts_ms
        status, used, body = await _get(
            http, base + f"/aggTrades?symbol=BTCUSDT&startTime={start}&endTime={start + 3_600_000}"
        )
        assert (status, used, body["code"]) == (400, 46, -1127)  # the window must be under 1 hour
        async with http.get(base + "/aggTrades?symbol=BTCUSDT") as r:
            assert r.status == 429 and (await r.json())["code"] == -1003  # 46 + 20 > 50


async def _drain(ws: aiohttp.ClientWebSocketResponse, n: int) -> list[dict[str, Any]]:
    """The next ``n`` combined-stream frames."""
    return [await recv_json(ws) for _ in range(n)]


async def test_periodic_diffs_batch_every_event_between_ticks(http: aiohttp.ClientSession) -> None:
    """``@depth@100ms`` pushes once per 100 ms tick and ``@depth`` (spot: 1000 ms) once per second, each push
    covering every book change since the previous one (``U`` = previous ``u`` + 1), measured as a client does:
    from the event times of what arrives."""
    clock = FakeClock()
    async with Simulator(["binance"], mode="synthetic", clock=clock, config=fast_config()) as sim:
        streams = "btcusdt@depth@100ms/btcusdt@depth"
        async with http.ws_connect(sim.endpoints()["binance"]["ws_url"] + "/stream?streams=" + streams) as ws:
            conn = await sim.binance.wait_subscribed("btcusdt@depth")
            await clock.advance(1.05)
            fast = conn.streams["btcusdt@depth@100ms"].frames
            slow = conn.streams["btcusdt@depth"].frames
            assert (fast, slow) == (10, 1)
            frames = await _drain(ws, 11)
        src = sim.binance.sources["BTCUSDT"]
    tenths = [f["data"] for f in frames if f["stream"] == "btcusdt@depth@100ms"]
    second = next(f["data"] for f in frames if f["stream"] == "btcusdt@depth")
    start_ms = 1_700_000_000_000
    assert [d["E"] - start_ms for d in tenths] == [100 * k for k in range(1, 11)]
    assert second["E"] - start_ms == 1000
    for a, b in itertools.pairwise(tenths):
        assert b["U"] == a["u"] + 1  # consecutive batches: no id lost, none twice
    # the one-second batch covers exactly the ten 100 ms batches, later levels overriding earlier ones
    assert (second["U"], second["u"]) == (tenths[0]["U"], tenths[-1]["u"])
    merged: dict[str, dict[float, list[str]]] = {"b": {}, "a": {}}
    for d in tenths:
        for side in ("b", "a"):
            merged[side].update({float(p): [p, q] for p, q in d[side]})
    for side in ("b", "a"):
        assert {float(p): [p, q] for p, q in second[side]} == merged[side]
    assert src.events_emitted > 100  # ~400 events/s were folded into 11 frames


async def test_ticker_mini_ticker_mark_price_and_partial_depth(http: aiohttp.ClientSession) -> None:
    """USD-M: ``@ticker``/``@miniTicker`` every 2 s, ``@markPrice`` every 3 s, ``@markPrice@1s`` every second on
    ``/market``; ``@depth5@100ms`` (``e: depthUpdate``, ``pu``-linked, top 5) on ``/public``."""
    clock = FakeClock()
    async with Simulator(["binanceusdm"], mode="synthetic", clock=clock, config=fast_config()) as sim:
        ep = sim.endpoints()["binanceusdm"]["ws_url"]
        market = "btcusdt@ticker/btcusdt@miniTicker/btcusdt@markPrice/btcusdt@markPrice@1s"
        async with (
            http.ws_connect(ep + "/market/stream?streams=" + market) as mws,
            http.ws_connect(ep + "/public/stream?streams=btcusdt@depth5@100ms") as pws,
        ):
            await sim.binanceusdm.wait_subscribed("btcusdt@depth5@100ms")
            mconn = await sim.binanceusdm.wait_subscribed("btcusdt@markPrice@1s")
            await clock.advance(3.05)
            counts = {k: v.frames for k, v in mconn.streams.items()}
            assert counts == {
                "btcusdt@ticker": 1,
                "btcusdt@miniTicker": 1,
                "btcusdt@markPrice": 1,
                "btcusdt@markPrice@1s": 3,
            }
            mframes = {f["stream"]: f["data"] for f in await _drain(mws, 6)}
            partial = [f["data"] for f in await _drain(pws, 30)]
    src = sim.binanceusdm.sources["BTCUSDT"]
    t = mframes["btcusdt@ticker"]
    assert t["e"] == "24hrTicker" and t["s"] == "BTCUSDT" and t["E"] - 1_700_000_000_000 == 2000
    assert set(t) >= {"p", "P", "w", "c", "Q", "o", "h", "l", "v", "q", "O", "C", "F", "L", "n"}
    assert float(t["l"]) <= float(t["c"]) <= float(t["h"]) and t["L"] <= src.last_trade_id
    mini = mframes["btcusdt@miniTicker"]
    assert mini["e"] == "24hrMiniTicker" and set(mini) == {"e", "E", "s", "c", "o", "h", "l", "v", "q"}
    mark = mframes["btcusdt@markPrice@1s"]
    assert mark["e"] == "markPriceUpdate" and mark["r"] == "0.00010000" and mark["T"] % (8 * 3_600_000) == 0
    bid, ask = float(src.book.top(1)[0][0][0]), float(src.book.top(1)[1][0][0])
    assert abs(float(mark["p"]) - (bid + ask) / 2) < 1.0  # the mid price a second ago
    assert [d["E"] - 1_700_000_000_000 for d in partial] == [100 * k for k in range(1, 31)]
    for a, b in itertools.pairwise(partial):
        assert b["pu"] == a["u"] and b["U"] == a["u"] + 1
        assert len(b["b"]) == 5 and len(b["a"]) == 5 and float(b["b"][0][0]) < float(b["a"][0][0])


async def test_spot_partial_depth_shape(http: aiohttp.ClientSession) -> None:
    clock = FakeClock()
    async with Simulator(["binance"], mode="synthetic", clock=clock, config=fast_config()) as sim:
        url = sim.endpoints()["binance"]["ws_url"] + "/ws/btcusdt@depth10"
        async with http.ws_connect(url) as ws:
            await sim.binance.wait_subscribed("btcusdt@depth10")
            await clock.advance(1.05)  # the 1000 ms default speed of spot partial depth
            frame = await recv_json(ws)
            src = sim.binance.sources["BTCUSDT"]
            assert set(frame) == {"lastUpdateId", "bids", "asks"}
            assert frame["lastUpdateId"] <= src.last_update_id and len(frame["bids"]) == 10


async def test_error_frame_carries_the_request_id(http: aiohttp.ClientSession) -> None:
    """Two pending SUBSCRIBE requests, the first malformed: its error names id 7, the second is acked as id 8 and
    its stream flows."""
    async with (
        Simulator(["binance"], mode="synthetic", config=fast_config()) as sim,
        http.ws_connect(sim.endpoints()["binance"]["ws_url"] + "/ws") as ws,
    ):
        await ws.send_str(json.dumps({"method": "SUBSCRIBE", "params": [1], "id": 7}))
        await ws.send_str(json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 8}))
        err, ack = await recv_json(ws), await recv_json(ws)
        assert err["id"] == 7 and err["error"]["code"] == 2
        assert ack == {"result": None, "id": 8}
        trade = await recv_until(ws, lambda f: f.get("e") == "trade")
        assert trade["s"] == "BTCUSDT"


@pytest.mark.parametrize(
    ("exchange", "path"),
    [("binance", "/api/v3/nope"), ("binanceusdm", "/fapi/v1/nope"), ("binancecoinm", "/dapi/v2/ticker")],
)
async def test_unknown_path_answers_binance_json_404(
    http: aiohttp.ClientSession, exchange: str, path: str
) -> None:
    async with Simulator([exchange], mode="synthetic", config=fast_config()) as sim:
        base = sim.endpoints()[exchange]["rest_url"]
        async with http.get(base + path) as r:
            assert r.status == 404 and r.content_type == "application/json"
            assert await r.json() == {"code": -1000, "msg": f"Path {path}, Method GET is invalid"}
        prefix = {"binance": "/api/v3", "binanceusdm": "/fapi/v1", "binancecoinm": "/dapi/v1"}[exchange]
        async with http.post(base + prefix + "/time") as r:  # a served path, a method it does not serve
            assert r.status == 405 and (await r.json())["code"] == -1000


async def test_coinm_rest_shapes_and_contract_sizes(http: aiohttp.ClientSession) -> None:
    """COIN-M REST: exchangeInfo contract fields, depth with ``E``/``T``/``pair``, trades in contracts with their
    base-coin size, list-shaped tickers, premiumIndex (https://developers.binance.com/docs/derivatives/
    coin-margined-futures/market-data/rest-api)."""
    clock = FakeClock()
    async with Simulator(["binancecoinm"], mode="synthetic", clock=clock, config=fast_config()) as sim:
        base = sim.endpoints()["binancecoinm"]["rest_url"] + "/dapi/v1"
        async with http.get(base + "/exchangeInfo") as r:
            info = await r.json()
        by = {s["symbol"]: s for s in info["symbols"]}
        assert set(by) == {"BTCUSD_PERP", "ETHUSD_PERP"}
        btc, eth = by["BTCUSD_PERP"], by["ETHUSD_PERP"]
        assert (btc["contractSize"], eth["contractSize"]) == (100, 10)
        assert btc["contractType"] == "PERPETUAL" and btc["marginAsset"] == "BTC" and btc["pair"] == "BTCUSD"
        assert btc["contractStatus"] == "TRADING" and btc["quoteAsset"] == "USD"
        sim.binancecoinm.source("BTCUSD_PERP")
        await asyncio.sleep(0)
        await clock.advance(2.0)
        src = sim.binancecoinm.sources["BTCUSD_PERP"]
        async with http.get(base + "/depth", params={"symbol": "BTCUSD_PERP", "limit": "5"}) as r:
            depth = await r.json()
        assert list(depth) == ["lastUpdateId", "E", "T", "symbol", "pair", "bids", "asks"]
        assert depth["lastUpdateId"] == src.last_update_id and depth["pair"] == "BTCUSD"
        async with http.get(base + "/trades", params={"symbol": "BTCUSD_PERP", "limit": "3"}) as r:
            rows = await r.json()
        assert set(rows[0]) == {"id", "price", "qty", "baseQty", "time", "isBuyerMaker"}
        for row in rows:
            expect = Decimal(row["qty"]) * 100 / Decimal(row["price"])
            assert abs(Decimal(row["baseQty"]) - expect) < Decimal("1e-8")
        async with http.get(base + "/ticker/24hr", params={"symbol": "BTCUSD_PERP"}) as r:
            (ticker,) = await r.json()
        assert ticker["pair"] == "BTCUSD" and ticker["lastPrice"] == src.last_price and "baseVolume" in ticker
        async with http.get(base + "/premiumIndex", params={"symbol": "BTCUSD_PERP"}) as r:
            (prem,) = await r.json()
        assert prem["pair"] == "BTCUSD" and prem["lastFundingRate"] == "0.00010000"
        old = {"symbol": "BTCUSD_PERP", "fromId": str(rows[0]["id"]), "limit": "2"}
        async with http.get(base + "/historicalTrades", params=old) as r:
            assert r.status == 401 and (await r.json())["code"] == -2014  # MARKET_DATA: an API key is needed
        async with http.get(base + "/historicalTrades", params=old, headers={"X-MBX-APIKEY": "k"}) as r:
            assert r.status == 200 and [x["id"] for x in await r.json()] == [rows[0]["id"], rows[1]["id"]]


async def test_coinm_replays_its_recording_in_contracts(http: aiohttp.ClientSession) -> None:
    """BTCUSD_PERP replays the shipped COIN-M recording: ``ps`` on depth diffs, ``pu`` chained, whole contracts."""
    async with Simulator(["binancecoinm"], mode="replay", speed=4.0, config=fast_config()) as sim:
        url = sim.endpoints()["binancecoinm"]["ws_url"] + "/ws/btcusd_perp@depth@0ms"
        async with http.ws_connect(url) as ws:
            diffs = [await recv_json(ws) for _ in range(20)]
    assert all(d["ps"] == "BTCUSD" and d["s"] == "BTCUSD_PERP" for d in diffs)
    for a, b in itertools.pairwise(diffs):
        assert b["pu"] == a["u"]
    sizes = [q for d in diffs for _, q in d["b"] + d["a"]]
    assert sizes and all(q.isdigit() for q in sizes)  # contracts: integers, as recorded


async def test_a_malformed_stream_name_is_refused_and_an_unknown_symbol_accepted(
    http: aiohttp.ClientSession,
) -> None:
    async with (
        Simulator(["binance"], mode="synthetic", config=fast_config()) as sim,
        http.ws_connect(sim.endpoints()["binance"]["ws_url"] + "/ws") as ws,
    ):
        for i, bad in enumerate(
            (["not asdfads"], ["btcusdt@trades"], ["BTCUSDT@trade"], ["btcusdt@trade", "x"])
        ):
            await ws.send_str(json.dumps({"method": "SUBSCRIBE", "params": bad, "id": 20 + i}))
            err = await recv_until(ws, lambda f, i=i: f.get("id") == 20 + i)
            assert err == {"error": {"code": 2, "msg": "Invalid request: invalid stream"}, "id": 20 + i}
        await ws.send_str(
            json.dumps({"method": "SUBSCRIBE", "params": ["nopecoin@trade", "btcusdt@kline_1m"], "id": 30})
        )
        assert await recv_until(ws, lambda f: f.get("id") == 30) == {"result": None, "id": 30}
        await ws.send_str(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 31}))
        assert (await recv_until(ws, lambda f: f.get("id") == 31))["result"] == [
            "nopecoin@trade",
            "btcusdt@kline_1m",
        ]
