"""OKX v5 protocol conformance with a raw aiohttp client (https://www.okx.com/docs-v5/en/)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from cryptolink import recordings
from cryptolink.clock import FakeClock
from cryptolink.simulator import Fault, SimConfig, Simulator
from cryptolink.simulator.market import OKX_RECORDING, OkxReplaySource
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
        recorded_updates = len(recorded("BTC-USDT", "books")) - 1  # minus the snapshot
        per_loop = recorded_updates + 1  # plus the seam update
        while updates < 2 * per_loop + 1:  # at least two seams
            u = (await recv_until(ws, lambda f: f.get("action") == "update"))["data"][0]
            if not u["bids"] and not u["asks"] and u["seqId"] == u["prevSeqId"]:
                continue  # an empty heartbeat update
            assert u["prevSeqId"] == last and u["seqId"] == last + 1
            last = u["seqId"]
            book.apply(u)
            bad += u["checksum"] != book.checksum()
            updates += 1
        assert bad == 0
        source = sim.okx.sources["BTC-USDT"]
        assert isinstance(source, OkxReplaySource)  # replay mode
        assert source.loops >= 2


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
    assert follows_cyclically([{k: v for k, v in t.items() if k != "ts"} for t in tickers], tickers_rec)


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
        assert list(listed["SWAP"]) == ["UNI-USD-SWAP", "BTC-USDT-SWAP"]
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
        for _ in range(20):
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
        fields = ("bidPx", "bidSz", "askPx", "askSz", "last")
        previous: tuple[str, ...] | None = None
        for _ in range(30):
            t = (await recv_until(ws, is_push("tickers")))["data"][0]
            current = tuple(t[k] for k in fields)
            assert current != previous
            previous = current
