"""OKX v5 protocol conformance with a raw aiohttp client (https://www.okx.com/docs-v5/en/)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import statistics
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from cryptolink import recordings
from cryptolink.clock import FakeClock
from cryptolink.simulator import Fault, SimConfig, Simulator
from cryptolink.simulator.market import OKX_RECORDING, OkxReplaySource
from cryptolink.simulator.okx import HOSTS, OkxServer
from tests.simulator.sim_helpers import OkxClientBook, fast_config, recv_close, recv_until

pytestmark = pytest.mark.integration

WS = "/ws/v5/public"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def sub(*args: tuple[str, str], op: str = "subscribe", req_id: str | None = None) -> str:
    msg: dict[str, object] = {"op": op, "args": [{"channel": c, "instId": i} for c, i in args]}
    if req_id is not None:
        msg["id"] = req_id
    return json.dumps(msg)


def is_push(channel: str) -> Any:
    return lambda f: isinstance(f, dict) and f.get("arg", {}).get("channel") == channel and "data" in f


def recorded(inst: str, channel: str) -> list[dict[str, str]]:
    """The data items OKX pushed on ``channel`` for ``inst`` in the shipped recording, in order."""
    out = []
    for rec in recordings.iter_cryptofeed_ws(OKX_RECORDING):
        if rec.kind == "received":
            msg = json.loads(rec.payload)
            if msg.get("arg") == {"channel": channel, "instId": inst} and "data" in msg:
                out += msg["data"]
    return out


def follows_cyclically(got: list[Any], loop: list[Any]) -> bool:
    """``got`` is a run of consecutive items of ``loop`` repeated forever."""
    n = len(loop)
    return any(got == [loop[(s + i) % n] for i in range(len(got))] for s in range(n))


def in_cyclic_order(got: list[Any], loop: list[Any]) -> bool:
    """``got`` is a subsequence (items skipped, order kept, less than one loop between two items) of ``loop``
    repeated forever."""
    n = len(loop)
    for start in range(n):
        i, ok = start, True
        for item in got:
            for _ in range(n):
                if loop[i % n] == item:
                    break
                i += 1
            else:
                ok = False
                break
            i += 1
        if ok:
            return True
    return False


async def test_acks_errors_and_ping(http: aiohttp.ClientSession) -> None:
    async with (
        Simulator(["okx"], mode="synthetic", config=fast_config()) as sim,
        http.ws_connect(sim.endpoints()["okx"]["ws_url"] + WS) as ws,
    ):
        await ws.send_str(
            sub(("trades", "BTC-USDT"), ("tickers", "BTC-USDT"), ("books", "NOPE-USDT"), req_id="7")
        )
        acks = [await recv_until(ws, lambda f: "event" in f) for _ in range(3)]
        assert acks[0]["event"] == "subscribe" and acks[0]["arg"] == {
            "channel": "trades",
            "instId": "BTC-USDT",
        }
        assert acks[0]["id"] == "7" and acks[0]["connId"]
        assert acks[1]["arg"]["channel"] == "tickers"
        assert (
            acks[2]["event"] == "error" and acks[2]["code"] == "60018" and "doesn't exist" in acks[2]["msg"]
        )
        await ws.send_str("{bad")
        err = await recv_until(ws, lambda f: isinstance(f, dict) and f.get("event") == "error")
        assert err["code"] == "60012"
        await ws.send_str("ping")
        assert await recv_until(ws, lambda f: f == "pong") == "pong"
        trade = await recv_until(ws, is_push("trades"))
        t = trade["data"][0]
        assert t["instId"] == "BTC-USDT" and t["side"] in ("buy", "sell") and int(t["tradeId"]) > 0
        assert (t["count"], t["source"]) == ("1", "0")
        assert 0 < t["seqId"] <= sim.okx.sources["BTC-USDT"].last_update_id  # the book's seqId at the trade


@pytest.mark.timeout(60)
async def test_replayed_books_verify_across_loop_seams(http: aiohttp.ClientSession) -> None:
    """A client applying every ``books`` update of the replayed BTC-USDT over two loop seams: the seqId chain
    never breaks and every checksum matches its own rebuilt book."""
    async with (
        Simulator(["okx"], mode="replay", speed=20.0, config=fast_config()) as sim,
        http.ws_connect(sim.endpoints()["okx"]["ws_url"] + WS) as ws,
    ):
        await ws.send_str(sub(("books", "BTC-USDT")))
        snap = (await recv_until(ws, lambda f: f.get("action") == "snapshot"))["data"][0]
        assert snap["prevSeqId"] == -1 and len(snap["bids"]) == len(snap["asks"]) == 400  # the whole book
        book = OkxClientBook()
        book.apply(snap)
        assert snap["checksum"] == book.checksum() != 0
        last, bad, updates = snap["seqId"], 0, 0
        source = sim.okx.sources["BTC-USDT"]
        assert isinstance(source, OkxReplaySource)  # replay mode
        seams_seen = 0
        while seams_seen < 2:  # every update up to the second seam and the one after it
            seams_seen = source.loops
            u = (await recv_until(ws, lambda f: f.get("action") == "update"))["data"][0]
            if not u["bids"] and not u["asks"] and u["seqId"] == u["prevSeqId"]:
                continue  # an empty heartbeat update
            # updates aggregate the changes of up to 100 ms: seqId may advance by more than one
            assert u["prevSeqId"] == last and u["seqId"] > last
            last = u["seqId"]
            book.apply(u)
            bad += u["checksum"] != book.checksum()
            updates += 1
        assert bad == 0 and updates > 2
        assert last <= source.last_update_id


async def test_replayed_trades_and_tickers_are_the_recorded_ones(http: aiohttp.ClientSession) -> None:
    """Trades: recorded px/sz/side, the simulator's consecutive trade ids; tickers: recorded values, fresh ts."""
    trades_rec = recorded("BTC-USDT", "trades")
    tickers_rec = [{k: v for k, v in t.items() if k != "ts"} for t in recorded("BTC-USDT", "tickers")]
    clock_start_ms = None
    async with (
        Simulator(["okx"], mode="replay", speed=20.0, config=fast_config()) as sim,
        http.ws_connect(sim.endpoints()["okx"]["ws_url"] + WS) as ws,
    ):
        clock_start_ms = sim.clock.time_ns() // 1_000_000
        await ws.send_str(sub(("trades", "BTC-USDT"), ("tickers", "BTC-USDT")))
        trades: list[dict[str, Any]] = []
        tickers: list[dict[str, Any]] = []
        while len(trades) < len(trades_rec) + 5 or len(tickers) < 5:
            f = await recv_until(ws, lambda f: is_push("trades")(f) or is_push("tickers")(f))
            (trades if f["arg"]["channel"] == "trades" else tickers).append(f["data"][0])
    ids = [int(t["tradeId"]) for t in trades]
    assert ids == list(range(ids[0], ids[0] + len(ids)))  # consecutive, also across the loop seam
    shape = [(t["px"], t["sz"], t["side"]) for t in trades_rec]
    assert follows_cyclically([(t["px"], t["sz"], t["side"]) for t in trades], shape)
    assert all(int(t["ts"]) >= clock_start_ms for t in tickers)
    # at most one ticker per 100 ms: at speed 20 several recorded tickers fall in one push, the newest is sent
    got = [{k: v for k, v in t.items() if k != "ts"} for t in tickers]
    assert in_cyclic_order(got[1:], tickers_rec)  # the first is the current ticker, sent on subscription
    assert got[0] in tickers_rec


async def test_checksum_zero_mode(http: aiohttp.ClientSession) -> None:
    cfg = fast_config()
    cfg = SimConfig(rules=cfg.rules, okx_checksum="zero", synthetic_rate_hz=400.0)
    async with (
        Simulator(["okx"], mode="synthetic", config=cfg) as sim,
        http.ws_connect(sim.endpoints()["okx"]["ws_url"] + WS) as ws,
    ):
        await ws.send_str(sub(("books", "ETH-USDT")))
        for _ in range(5):
            f = await recv_until(ws, lambda f: "action" in f)
            assert f["data"][0]["checksum"] == 0


async def test_idle_close_without_subscription(http: aiohttp.ClientSession) -> None:
    async with (
        Simulator(["okx"], mode="synthetic", config=fast_config(okx={"idle_close_s": 0.3})) as sim,
        http.ws_connect(sim.endpoints()["okx"]["ws_url"] + WS) as ws,
    ):
        await recv_close(ws)
        assert ws.close_code == 4004


async def test_subscription_rate_limit(http: aiohttp.ClientSession) -> None:
    async with (
        Simulator(["okx"], mode="synthetic", config=fast_config(okx={"max_subs_per_hour": 2})) as sim,
        http.ws_connect(sim.endpoints()["okx"]["ws_url"] + WS) as ws,
    ):
        for op in ("subscribe", "unsubscribe", "subscribe"):
            await ws.send_str(sub(("tickers", "BTC-USDT"), op=op))
        events = [await recv_until(ws, lambda f: "event" in f) for _ in range(3)]
        assert [e["event"] for e in events] == ["subscribe", "unsubscribe", "error"]
        assert events[2]["code"] == "60014"


async def test_heartbeat_update_and_seq_reset(http: aiohttp.ClientSession) -> None:
    cfg = fast_config(okx={"book_heartbeat_s": 0.2})
    cfg = SimConfig(rules=cfg.rules, synthetic_rate_hz=0.01)  # a quiet book
    async with (
        Simulator(["okx"], mode="synthetic", config=cfg) as sim,
        http.ws_connect(sim.endpoints()["okx"]["ws_url"] + WS) as ws,
    ):
        await ws.send_str(sub(("books", "BTC-USDT")))
        snap = (await recv_until(ws, lambda f: f.get("action") == "snapshot"))["data"][0]
        hb = (await recv_until(ws, lambda f: f.get("action") == "update"))["data"][0]
        assert hb["seqId"] == hb["prevSeqId"] == snap["seqId"] and hb["bids"] == hb["asks"] == []
        sim.inject(Fault("seqreset"), exchange="okx")
        src = sim.okx.sources["BTC-USDT"]
        src.emit_next(0)  # drive the next event now instead of waiting for the quiet market
        while True:
            u = (await recv_until(ws, lambda f: f.get("action") == "update", 5))["data"][0]
            if u["bids"] or u["asks"]:
                break
            src.emit_next(0)
        assert u["seqId"] < u["prevSeqId"] == snap["seqId"]


async def test_rest_endpoints_instruments_and_429(http: aiohttp.ClientSession) -> None:
    async with Simulator(["okx"], mode="synthetic", config=fast_config()) as sim:
        base = sim.endpoints()["okx"]["rest_url"] + "/api/v5"
        listed = {}
        for kind in ("SPOT", "SWAP", "FUTURES"):
            async with http.get(base + f"/public/instruments?instType={kind}") as r:
                listed[kind] = {i["instId"]: i for i in (await r.json())["data"]}
        assert list(listed["SPOT"]) == ["BTC-USDT", "ETH-USDT"]
        assert list(listed["SWAP"]) == ["UNI-USD-SWAP", "BTC-USDT-SWAP", "BTC-USD-SWAP", "ETH-USD-SWAP"]
        assert list(listed["FUTURES"]) == ["BTC-USD-220527"]
        uni, fut = listed["SWAP"]["UNI-USD-SWAP"], listed["FUTURES"]["BTC-USD-220527"]
        assert (uni["ctType"], uni["ctVal"], uni["ctMult"], uni["ctValCcy"]) == ("inverse", "10", "1", "USD")
        assert (fut["ctType"], fut["ctVal"], fut["ctValCcy"], fut["state"]) == (
            "inverse",
            "100",
            "USD",
            "live",
        )
        assert listed["SWAP"]["BTC-USDT-SWAP"]["ctVal"] == "0.01"
        async with http.get(base + "/market/books?instId=BTC-USDT&sz=5") as r:
            d = (await r.json())["data"][0]
            assert len(d["bids"]) == 5 and Decimal(d["bids"][0][0]) < Decimal(d["asks"][0][0])
        async with http.get(base + "/market/books?instId=NOPE-USDT") as r:
            assert (await r.json())["code"] == "51001"
        async with http.get(base + "/market/ticker?instId=ETH-USDT") as r:
            assert (await r.json())["data"][0]["instId"] == "ETH-USDT"
        async with http.get(base + "/market/tickers?instType=FUTURES") as r:
            assert [t["instId"] for t in (await r.json())["data"]] == ["BTC-USD-220527"]
        statuses = []
        for _ in range(11):
            async with http.get(base + "/public/time") as r:
                statuses.append(r.status)
                body = await r.json()
        assert statuses == [200] * 10 + [429]
        assert body == {"code": "50011", "msg": "Too Many Requests", "data": []}


async def test_replayed_rest_ticker_is_the_recorded_one(http: aiohttp.ClientSession) -> None:
    async with Simulator(["okx"], mode="replay", config=fast_config()) as sim:
        url = sim.endpoints()["okx"]["rest_url"] + "/api/v5/market/ticker?instId=UNI-USD-SWAP"
        async with http.get(url) as r:
            t = (await r.json())["data"][0]
    (rec,) = recorded("UNI-USD-SWAP", "tickers")
    assert {k: v for k, v in t.items() if k != "ts"} == {k: v for k, v in rec.items() if k != "ts"}
    assert t["ts"] != rec["ts"]


async def test_rest_trades_and_history_pagination(http: aiohttp.ClientSession) -> None:
    clock = FakeClock()
    async with Simulator(["okx"], mode="synthetic", clock=clock, config=fast_config()) as sim:
        base = sim.endpoints()["okx"]["rest_url"] + "/api/v5/market"

        async def get(path: str) -> tuple[int, dict[str, Any]]:
            async with http.get(base + path) as r:
                return r.status, await r.json()

        assert (await get("/trades?instId=ETH-USDT"))[1]["data"] == []  # creates the market; no trade yet
        await clock.advance(2.0)  # ~120 trades; also a fresh rate-limit window
        kept = sim.okx.sources["ETH-USDT"].trades.select(10**6)
        ids = [t.trade_id for t in kept]
        assert len(ids) > 40 and ids == list(range(ids[0], ids[0] + len(ids)))

        def ids_of(body: dict[str, Any]) -> list[int]:
            return [int(t["tradeId"]) for t in body["data"]]

        _, body = await get("/trades?instId=ETH-USDT&limit=5")
        assert ids_of(body) == ids[::-1][:5]  # newest first
        newest = body["data"][0]
        assert set(newest) == {"instId", "side", "sz", "px", "source", "tradeId", "ts"}
        assert (newest["px"], newest["sz"]) == (
            kept[-1].price.rstrip("0").rstrip("."),
            kept[-1].qty.rstrip("0").rstrip("."),
        )
        assert ids_of((await get("/trades?instId=ETH-USDT"))[1]) == ids[::-1][:100]  # default limit 100

        x = ids[20]
        assert ids_of((await get(f"/history-trades?instId=ETH-USDT&after={x}&limit=3"))[1]) == [
            x - 1,
            x - 2,
            x - 3,
        ]
        # before alone: the newest trades newer than it
        assert ids_of((await get(f"/history-trades?instId=ETH-USDT&before={ids[-4]}"))[1]) == ids[::-1][:3]
        # both: strictly between, newest first
        between = ids_of((await get(f"/history-trades?instId=ETH-USDT&type=1&after={x}&before={x - 4}"))[1])
        assert between == [x - 1, x - 2, x - 3]
        # page backwards with after = the oldest id of the previous page: every kept trade exactly once
        pages, after = [], ""
        while True:
            page = ids_of((await get(f"/history-trades?instId=ETH-USDT&limit=17{after}"))[1])
            if not page:
                break
            pages += page
            after = f"&after={page[-1]}"
        assert pages == ids[::-1]
        # ids older than the kept history: nothing older is kept; before = older than kept: the newest kept
        assert ids_of((await get(f"/history-trades?instId=ETH-USDT&after={ids[0]}"))[1]) == []
        assert ids_of((await get("/history-trades?instId=ETH-USDT&before=1&limit=2"))[1]) == ids[::-1][:2]
        # type 2: after is a timestamp
        ts_x = kept[20].ts_ms
        by_ts = ids_of((await get(f"/history-trades?instId=ETH-USDT&type=2&after={ts_x}&limit=100"))[1])
        assert by_ts == [t.trade_id for t in kept if t.ts_ms < ts_x][::-1]
        assert len(ids_of((await get("/history-trades?instId=ETH-USDT&limit=500"))[1])) == min(100, len(ids))
        status, body = await get("/history-trades?instId=ETH-USDT&type=3")
        assert (status, body["code"]) == (400, "51000")
        status, body = await get("/trades?instId=NOPE-USDT")
        assert (status, body["code"]) == (400, "51001")


async def test_trade_endpoints_rate_limits(http: aiohttp.ClientSession) -> None:
    clock = FakeClock()  # frozen: every request below falls in one 2 s window
    async with Simulator(["okx"], mode="synthetic", clock=clock, config=fast_config()) as sim:
        base = sim.endpoints()["okx"]["rest_url"] + "/api/v5/market"
        for path, limit in (("/history-trades", 20), ("/trades", 100)):
            statuses = []
            for _ in range(limit + 1):
                async with http.get(base + path + "?instId=BTC-USDT") as r:
                    statuses.append(r.status)
                    body = await r.json()
            assert statuses == [200] * limit + [429] and body["code"] == "50011"


async def test_notice_and_badchecksum_faults(http: aiohttp.ClientSession) -> None:
    async with (
        Simulator(["okx"], mode="synthetic", config=fast_config()) as sim,
        http.ws_connect(sim.endpoints()["okx"]["ws_url"] + WS) as ws,
    ):
        await ws.send_str(sub(("books", "BTC-USDT")))
        d = (await recv_until(ws, lambda f: f.get("action") == "snapshot"))["data"][0]
        book = OkxClientBook()
        book.apply(d)
        sim.inject(Fault("badchecksum", symbol="BTC-USDT"), exchange="okx")
        sim.inject(Fault("notice"), exchange="okx")
        bad = 0
        for _ in range(8):
            f = await recv_until(ws, lambda f: "action" in f or f.get("event") == "notice")
            if f.get("event") == "notice":
                assert f["code"] == "64008"
                continue
            book.apply(f["data"][0])
            bad += f["data"][0]["checksum"] != book.checksum()
        assert bad == 1


async def test_synthetic_tickers_are_pushed_on_change_only(http: aiohttp.ClientSession) -> None:
    async with (
        Simulator(["okx"], mode="synthetic", config=fast_config()) as sim,
        http.ws_connect(sim.endpoints()["okx"]["ws_url"] + WS) as ws,
    ):
        await ws.send_str(sub(("tickers", "ETH-USDT")))
        fields = ("bidPx", "bidSz", "askPx", "askSz", "last", "vol24h")  # a trade or a top-of-book change
        previous: tuple[str, ...] | None = None
        for _ in range(10):
            t = (await recv_until(ws, is_push("tickers")))["data"][0]
            current = tuple(t[k] for k in fields)
            assert current != previous
            previous = current


class Reader:
    """Collects every JSON frame of ``ws`` in a task; :meth:`drain` returns once every frame the server queued
    before it has arrived (a text ``ping`` is answered in order with the data frames)."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self._pong: asyncio.Future[None] | None = None
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            if msg.data == "pong":
                if self._pong is not None and not self._pong.done():
                    self._pong.set_result(None)
            else:
                self.frames.append(json.loads(msg.data))

    async def drain(self) -> list[dict[str, Any]]:
        self._pong = asyncio.get_running_loop().create_future()
        await self.ws.send_str("ping")
        await asyncio.wait_for(self._pong, 5)
        return self.frames

    def pushes(self, channel: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if "data" in f and f["arg"]["channel"] == channel]

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def okx_server(sim: Simulator) -> OkxServer:
    server = sim.okx
    assert isinstance(server, OkxServer)  # narrows the type for the white-box checks below
    return server


def gaps_ms(frames: list[dict[str, Any]]) -> list[int]:
    ts = [int(f["data"][0]["ts"]) for f in frames]
    return [b - a for a, b in itertools.pairwise(ts)]


async def test_push_pacing_on_the_simulator_clock(http: aiohttp.ClientSession) -> None:
    """A busy market (400 events/s) for 1.5 s of fake time, measured as a client sees it (the pushes' ``ts``, the
    simulator's clock): ``books`` updates, ``books5`` and ``tickers`` every 100 ms, ``bbo-tbt`` never closer than
    10 ms; the aggregated ``books`` updates chain and verify, and ``books5``/``bbo-tbt`` carry the top of that
    book at their ``seqId``."""
    clock = FakeClock()
    channels = ("books", "books5", "bbo-tbt", "tickers")
    async with (
        Simulator(["okx"], mode="synthetic", clock=clock, config=fast_config()) as sim,
        http.ws_connect(sim.endpoints()["okx"]["ws_url"] + WS) as ws,
    ):
        reader = Reader(ws)
        await ws.send_str(sub(*((c, "BTC-USDT") for c in channels)))
        server = okx_server(sim)
        await server.wait_until(lambda: all(f"{c}:BTC-USDT" in server.subs for c in channels))
        for _ in range(750):
            await clock.advance(0.002)
        await reader.drain()
        await reader.close()
        src = sim.okx.sources["BTC-USDT"]
        assert src.events_emitted > 400
    (snap,) = [f["data"][0] for f in reader.pushes("books") if f["action"] == "snapshot"]
    updates = [f for f in reader.pushes("books") if f["action"] == "update"]
    book = OkxClientBook()
    book.apply(snap)
    last, top_at_seq = snap["seqId"], {}
    for f in updates:
        u = f["data"][0]
        assert u["prevSeqId"] == last and u["seqId"] > last
        last = u["seqId"]
        book.apply(u)
        assert u["checksum"] == book.checksum()
        bids = [list(book.bids[k]) for k in sorted(book.bids, reverse=True)[:5]]
        asks = [list(book.asks[k]) for k in sorted(book.asks)[:5]]
        top_at_seq[last] = (bids, asks)
    assert any(len(u["data"][0]["bids"]) + len(u["data"][0]["asks"]) > 3 for u in updates)  # aggregated
    for channel, interval in (("books", 100), ("books5", 100), ("tickers", 100), ("bbo-tbt", 10)):
        frames = updates if channel == "books" else reader.pushes(channel)
        gaps = gaps_ms(frames)
        assert len(gaps) >= 10, channel
        assert min(gaps) >= interval, (channel, gaps)
        if channel != "bbo-tbt":
            assert statistics.median(gaps) == interval, (channel, gaps)
    assert 10 in gaps_ms(reader.pushes("bbo-tbt"))  # faster than the 100 ms channels when the top moves
    matched = 0
    for channel, depth in (("books5", 5), ("bbo-tbt", 1)):
        for f in reader.pushes(channel):
            d = f["data"][0]
            assert "action" not in f and "checksum" not in d and len(d["bids"]) == len(d["asks"]) == depth
            assert (d.get("instId") == "BTC-USDT") == (channel == "books5")
            top = top_at_seq.get(d["seqId"])
            if top is not None:
                assert [lv[:2] for lv in d["bids"]] == top[0][:depth]
                assert [lv[:2] for lv in d["asks"]] == top[1][:depth]
                matched += 1
    assert matched >= 5


async def test_books_subscriber_joining_between_pushes_gets_its_snapshot_with_the_next_push(
    http: aiohttp.ClientSession,
) -> None:
    """While changes wait for the next 100 ms ``books`` push, a new subscriber's snapshot is sent with that push
    (its seqId is the push's), so both subscribers continue on the same chain with the same checksums."""
    clock = FakeClock()
    async with (
        Simulator(["okx"], mode="synthetic", clock=clock, config=fast_config()) as sim,
        http.ws_connect(sim.endpoints()["okx"]["ws_url"] + WS) as ws1,
        http.ws_connect(sim.endpoints()["okx"]["ws_url"] + WS) as ws2,
    ):
        r1, r2 = Reader(ws1), Reader(ws2)
        await ws1.send_str(sub(("books", "ETH-USDT")))
        await sim.okx.wait_subscribed("books:ETH-USDT")
        for _ in range(30):
            await clock.advance(0.005)
        server = okx_server(sim)
        assert server._feeds["ETH-USDT"].prev_id is not None  # changes are waiting for their push
        await ws2.send_str(sub(("books", "ETH-USDT")))
        await server.wait_until(lambda: len(server.subs["books:ETH-USDT"]) == 2)
        assert [f["event"] for f in await r2.drain()] == ["subscribe"]  # no snapshot yet
        for _ in range(60):
            await clock.advance(0.005)
        await r1.drain()
        await r2.drain()
        await r1.close()
        await r2.close()
    snap = r2.pushes("books")[0]
    assert snap["action"] == "snapshot"
    seqs1 = [f["data"][0]["seqId"] for f in r1.pushes("books")]
    assert snap["data"][0]["seqId"] in seqs1[1:]
    later1 = r1.pushes("books")[seqs1.index(snap["data"][0]["seqId"]) + 1 :]
    later2 = r2.pushes("books")[1:]
    assert len(later2) >= 2 and later1 == later2  # the same updates from there on
    book = OkxClientBook()
    book.apply(snap["data"][0])
    assert book.checksum() == snap["data"][0]["checksum"]
    for f in later2:
        book.apply(f["data"][0])
        assert f["data"][0]["checksum"] == book.checksum()


async def test_error_frames_carry_the_request_id(http: aiohttp.ClientSession) -> None:
    """Each error names its own request: the ``id`` it carried, the channel and instId in ``msg``; the login-only
    depth channels answer 60011 "Please log in" as OKX does without login; other requests are unaffected."""
    async with (
        Simulator(["okx"], mode="synthetic", config=fast_config()) as sim,
        http.ws_connect(sim.endpoints()["okx"]["ws_url"] + WS) as ws,
    ):
        await ws.send_str(sub(("trades", "BTC-USDT"), req_id="good"))
        await ws.send_str(sub(("books", "NOPE-USDT"), req_id="bad"))
        await ws.send_str(sub(("books-l2-tbt", "BTC-USDT"), req_id="vip"))
        await ws.send_str(sub(("books50-l2-tbt", "BTC-USDT")))
        await ws.send_str(json.dumps({"op": "subscribe", "args": "books", "id": "shape"}))
        events = [await recv_until(ws, lambda f: isinstance(f, dict) and "event" in f) for _ in range(5)]
        by_id = {e.get("id"): e for e in events}
        assert by_id["good"]["event"] == "subscribe" and by_id["good"]["arg"]["instId"] == "BTC-USDT"
        assert by_id["bad"]["event"] == "error" and by_id["bad"]["code"] == "60018"
        assert "channel:books,instId:NOPE-USDT doesn't exist" in by_id["bad"]["msg"]
        assert (by_id["vip"]["code"], by_id["vip"]["msg"]) == ("60011", "Please log in")
        assert by_id[None]["code"] == "60011"  # no id sent, none echoed
        assert by_id["shape"]["code"] == "60012" and by_id["shape"]["msg"].startswith("Illegal request: {")
        assert all(e["connId"] == by_id["good"]["connId"] for e in events)
        trade = await recv_until(ws, is_push("trades"))
        assert trade["data"][0]["instId"] == "BTC-USDT"


async def test_inverse_swaps_instruments_and_contract_sizes(http: aiohttp.ClientSession) -> None:
    """``BTC-USD-SWAP``/``ETH-USD-SWAP`` are listed as OKX lists inverse swaps (100 / 10 USD per contract, settled
    in the coin); their books, trades and tickers are in whole contracts."""
    clock = FakeClock()
    async with Simulator(["okx"], mode="synthetic", clock=clock, config=fast_config()) as sim:
        base = sim.endpoints()["okx"]["rest_url"] + "/api/v5"

        async def get(path: str) -> Any:
            async with http.get(base + path) as r:
                assert r.status == 200, await r.text()
                return (await r.json())["data"]

        swaps = {i["instId"]: i for i in await get("/public/instruments?instType=SWAP")}
        for inst, coin, ct_val in (("BTC-USD-SWAP", "BTC", "100"), ("ETH-USD-SWAP", "ETH", "10")):
            i = swaps[inst]
            assert (i["instType"], i["ctType"], i["ctVal"], i["ctValCcy"], i["settleCcy"]) == (
                "SWAP",
                "inverse",
                ct_val,
                "USD",
                coin,
            )
            assert (i["uly"], i["instFamily"], i["lotSz"], i["state"]) == (
                f"{coin}-USD",
                f"{coin}-USD",
                "1",
                "live",
            )
        linear = swaps["BTC-USDT-SWAP"]
        assert (linear["ctType"], linear["settleCcy"], linear["instFamily"]) == ("linear", "USDT", "BTC-USDT")
        assert await get("/public/instruments?instType=SWAP&instId=ETH-USD-SWAP") == [swaps["ETH-USD-SWAP"]]
        assert await get("/public/instruments?instType=OPTION&uly=BTC-USD") == []  # nothing served: no data
        assert await get("/public/instruments?instType=MARGIN") == []
        await get("/market/trades?instId=BTC-USD-SWAP")  # starts the market
        await clock.advance(1.0)
        book = (await get("/market/books?instId=BTC-USD-SWAP&sz=50"))[0]
        sizes = [lv[1] for lv in book["bids"] + book["asks"]]
        assert len(sizes) > 50 and all(s.isdigit() and int(s) >= 1 for s in sizes)
        trades = await get("/market/trades?instId=BTC-USD-SWAP")
        assert len(trades) > 5 and all(t["sz"].isdigit() for t in trades)
        (ticker,) = await get("/market/ticker?instId=BTC-USD-SWAP")
        contracts = sum(int(t.qty) for t in sim.okx.sources["BTC-USD-SWAP"].trades.select(10**6))
        assert ticker["vol24h"] == str(contracts)  # contracts
        assert float(ticker["volCcy24h"]) == pytest.approx(contracts * 100 / float(ticker["last"]), rel=1e-6)
        assert ticker["instType"] == "SWAP" and float(ticker["bidPx"]) < float(ticker["askPx"])


async def test_unknown_path_answers_okx_json_and_stats_count_rest(http: aiohttp.ClientSession) -> None:
    clock = FakeClock()  # frozen: one rate-limit window
    async with Simulator(
        ["okx"], mode="synthetic", clock=clock, config=fast_config(), rest_limits={"okx": (3, 1.0)}
    ) as sim:
        ep = sim.endpoints()["okx"]
        rest = ep["rest_url"]
        assert ep["hosts"] == {host: ep["ws_url" if host.startswith("wss") else "rest_url"] for host in HOSTS}
        assert {"https://www.okx.com", "wss://ws.okx.com:8443", "wss://ws.okx.com:443"} <= set(HOSTS)
        async with http.get(rest + "/api/v5/market/nope?instId=BTC-USDT") as r:
            assert (r.status, r.content_type) == (404, "application/json")
            assert await r.json() == {"code": "404", "msg": "Not Found", "data": []}
        for query, code in (("", "50014"), ("?instType=PERP", "51000")):
            async with http.get(rest + "/api/v5/market/tickers" + query) as r:
                assert (r.status, (await r.json())["code"]) == (400, code)
        statuses = []
        for _ in range(4):  # every endpoint limited to 3 per second by the override
            async with http.get(rest + "/api/v5/market/books?instId=BTC-USDT") as r:
                statuses.append(r.status)
                body = await r.json()
        assert statuses == [200, 200, 200, 429] and body["code"] == "50011"
        async with http.get(rest + "/_sim/stats") as r:
            stats = await r.json()
    assert stats["rest"]["by_path"]["/api/v5/market/books"] == 4
    assert stats["rest"]["429"] == 1 and stats["rest"]["requests"] == 7  # 404, 2 tickers, 4 books
