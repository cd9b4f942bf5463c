"""HTX protocol conformance with a raw aiohttp client: gzip frames, sub/unsub/acks/errors, JSON ping/pong and the
missed-ping close, /ws vs /feed routing, the mbp chain and its req snapshot checked by an independent little book,
the swap depth snapshot + version chain, REST endpoints, rate-limit answers and headers."""

from __future__ import annotations

import asyncio
import gzip
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from cryptolink.simulator import Fault, SimConfig, Simulator
from cryptolink.simulator.htx import HOSTS, HTX_RULES, HtxServer

pytestmark = pytest.mark.integration


def config(**rules: Any) -> SimConfig:
    return SimConfig(rules={"htx": replace(HTX_RULES, **rules)}, synthetic_rate_hz=400.0)


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(["htx"], mode="synthetic", config=config()) as s:
        yield s


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def server(sim: Simulator) -> HtxServer:
    s = sim.servers["htx"]
    assert isinstance(s, HtxServer)
    return s


async def recv(ws: aiohttp.ClientWebSocketResponse, within_s: float = 5.0) -> Any:
    """Next frame: it must be BINARY gzip carrying JSON."""
    msg = await asyncio.wait_for(ws.receive(), within_s)
    assert msg.type == aiohttp.WSMsgType.BINARY, msg
    return json.loads(gzip.decompress(msg.data))


async def until(ws: aiohttp.ClientWebSocketResponse, pred: Any, within_s: float = 5.0) -> Any:
    async def loop() -> Any:
        while True:
            frame = await recv(ws, within_s)
            if pred(frame):
                return frame

    return await asyncio.wait_for(loop(), within_s)


def on(ch: str) -> Any:
    return lambda f: f.get("ch") == ch


class IndependentBook:
    """A price -> size book written here (Decimal keys, size 0 deletes), sharing nothing with the client."""

    def __init__(self, bids: list[list[float]], asks: list[list[float]]) -> None:
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}
        self.apply(bids, asks)

    def apply(self, bids: list[list[Any]], asks: list[list[Any]]) -> None:
        for side, levels in ((self.bids, bids), (self.asks, asks)):
            for p, q in levels:
                price, size = Decimal(str(p)), Decimal(str(q))
                if size == 0:
                    side.pop(price, None)
                else:
                    side[price] = size

    def top(self, n: int) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        b = sorted(self.bids.items(), key=lambda kv: -kv[0])[:n]
        a = sorted(self.asks.items())[:n]
        return b, a


def _levels(levels: list[tuple[str, str]]) -> list[tuple[Decimal, Decimal]]:
    return [(Decimal(p), Decimal(q)) for p, q in levels]


# ------------------------------------------------------------------------------------------------- WebSocket
@pytest.mark.timeout(30)
async def test_hosts_and_registration() -> None:
    assert {
        "https://api.huobi.pro",
        "wss://api.huobi.pro",
        "https://api.hbdm.vn",
        "wss://api.hbdm.com",
    } <= set(HOSTS)
    assert HtxServer.trade_stream_key("btcusdt") == "market.btcusdt.trade.detail"
    assert HtxServer.book_stream_prefix("btcusdt") == "market.btcusdt.mbp."
    assert HtxServer.book_stream_prefix("BTC-USDT") == "market.BTC-USDT.depth."


@pytest.mark.timeout(30)
async def test_sub_ack_trades_bbo_unsub_and_errors(sim: Simulator, http: aiohttp.ClientSession) -> None:
    s = server(sim)
    async with http.ws_connect(s.ws_url + "/ws") as ws:
        await ws.send_str(json.dumps({"sub": "market.btcusdt.trade.detail", "id": "a1"}))
        ack = await until(ws, lambda f: "subbed" in f)
        assert ack["id"] == "a1" and ack["status"] == "ok" and ack["subbed"] == "market.btcusdt.trade.detail"
        t = await until(ws, on("market.btcusdt.trade.detail"))
        [item] = t["tick"]["data"]
        assert isinstance(item["tradeId"], int) and item["direction"] in ("buy", "sell")
        assert isinstance(item["price"], float) and isinstance(item["amount"], float)  # numbers, not strings
        await ws.send_str(json.dumps({"sub": "market.btcusdt.bbo", "id": "a2"}))
        bbo = await until(ws, on("market.btcusdt.bbo"))
        assert bbo["tick"]["bid"] < bbo["tick"]["ask"] and isinstance(bbo["tick"]["seqId"], int)
        for topic, want in (
            ("market.btcusdt.mbp.150", "invalid topic market.btcusdt.mbp.150"),  # books live on /feed
            ("market.nosuch.trade.detail", "invalid symbol nosuch"),
            ("market.BTC-USDT.trade.detail", "invalid symbol BTC-USDT"),  # a swap on the spot socket
        ):
            await ws.send_str(json.dumps({"sub": topic, "id": "e"}))
            err = await until(ws, lambda f: f.get("status") == "error")
            assert err["id"] == "e" and err["err-code"] == "bad-request" and err["err-msg"] == want
        await ws.send_str("not json")
        err = await until(ws, lambda f: f.get("status") == "error")
        assert err["err-msg"] == "not json string" and "id" not in err
        await ws.send_str(json.dumps({"unsub": "market.btcusdt.trade.detail", "id": "u1"}))
        un = await until(ws, lambda f: "unsubbed" in f)
        assert un == {"id": "u1", "status": "ok", "unsubbed": "market.btcusdt.trade.detail", "ts": un["ts"]}
        await sim.servers["htx"].wait_until(lambda: not s.subs.get("market.btcusdt.trade.detail"))
        s.inject(Fault("reject"))
        await ws.send_str(json.dumps({"sub": "market.ethusdt.trade.detail", "id": "r"}))
        err = await until(ws, lambda f: f.get("status") == "error")
        assert err["id"] == "r" and "market.ethusdt.trade.detail" in err["err-msg"]


@pytest.mark.timeout(30)
async def test_json_ping_pong_and_missed_pings_close() -> None:
    cfg = config(ping_interval_s=0.1, pong_timeout_s=0.6)  # margin for a loaded event loop
    async with Simulator(["htx"], mode="synthetic", config=cfg) as sim, aiohttp.ClientSession() as http:
        s = server(sim)
        async with http.ws_connect(s.ws_url + "/ws") as ws:
            for _ in range(3):  # answered pings keep it open
                ping = await until(ws, lambda f: "ping" in f)
                assert isinstance(ping["ping"], int)
                await ws.send_str(json.dumps({"pong": ping["ping"]}))
            assert not ws.closed
            conn = next(iter(s.connections.values()))
            await s.wait_until(lambda: conn.pongs_received >= 3)  # woken by each pong
            # now stop answering: closed after the pong timeout (two ping periods)
            while True:
                msg = await asyncio.wait_for(ws.receive(), 5)
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                    break
            assert ws.close_code == 1008 and conn.close_reason == "pong timeout"


@pytest.mark.timeout(30)
async def test_inbound_rate_close() -> None:
    async with (
        Simulator(["htx"], mode="synthetic", config=config(max_in_msgs_per_s=5)) as sim,
        aiohttp.ClientSession() as http,
    ):
        s = server(sim)
        async with http.ws_connect(s.ws_url + "/ws") as ws:
            for i in range(8):
                await ws.send_str(json.dumps({"pong": i}))
            while True:
                msg = await asyncio.wait_for(ws.receive(), 5)
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                    break
            assert ws.close_code == 1008


@pytest.mark.timeout(30)
async def test_mbp_chain_and_req_snapshot_rebuild_the_served_book(
    sim: Simulator, http: aiohttp.ClientSession
) -> None:
    """Diffs chain by prevSeqNum; the req snapshot's seqNum is the prevSeqNum of the next diff; the book rebuilt
    here equals the server's top 150 after every diff; ``req`` on /ws is refused, a second one within 100 ms too."""
    s = server(sim)
    topic = "market.btcusdt.mbp.150"
    async with http.ws_connect(s.ws_url + "/feed") as ws:
        await ws.send_str(json.dumps({"sub": "market.btcusdt.trade.detail", "id": "x"}))
        err = await until(ws, lambda f: f.get("status") == "error")
        assert err["err-msg"] == "invalid topic market.btcusdt.trade.detail"
        await ws.send_str(json.dumps({"sub": topic, "id": "1"}))
        await until(ws, lambda f: f.get("subbed") == topic)
        first = await until(ws, on(topic))
        await ws.send_str(json.dumps({"req": topic, "id": "2"}))
        await ws.send_str(json.dumps({"req": topic, "id": "3"}))
        rep = await until(ws, lambda f: f.get("id") == "2")
        assert rep["rep"] == topic and rep["status"] == "ok"
        again = await until(ws, lambda f: f.get("id") == "3")
        assert again["status"] == "error" and again["err-msg"] == "429 too many request"
        book = IndependentBook(rep["data"]["bids"], rep["data"]["asks"])
        last = rep["data"]["seqNum"]
        assert last >= first["tick"]["seqNum"]
        applied = compared = 0
        while applied < 15 or compared < 3:  # compared only while the server has pushed nothing newer
            f = await until(ws, on(topic))
            tick = f["tick"]
            if tick["seqNum"] <= last:
                continue
            assert tick["prevSeqNum"] == last  # the chain links, starting at the snapshot
            book.apply(tick.get("bids", []), tick.get("asks", []))
            last = tick["seqNum"]
            applied += 1
            feed = s._feeds["btcusdt"]
            if feed.view.seq == last:  # the server's view as of this push
                compared += 1
                assert book.top(150) == (
                    _levels(list(feed.view.bids.items())),
                    _levels(list(feed.view.asks.items())),
                )
    async with http.ws_connect(s.ws_url + "/ws") as ws2:
        await ws2.send_str(json.dumps({"req": topic, "id": "9"}))
        err = await until(ws2, lambda f: f.get("id") == "9")
        assert err["status"] == "error" and "invalid topic" in err["err-msg"]


@pytest.mark.timeout(30)
async def test_gap_fault_breaks_the_mbp_chain_once(sim: Simulator, http: aiohttp.ClientSession) -> None:
    s = server(sim)
    topic = "market.ethusdt.mbp.150"
    async with http.ws_connect(s.ws_url + "/feed") as ws:
        await ws.send_str(json.dumps({"sub": topic, "id": "1"}))
        prev = (await until(ws, on(topic)))["tick"]["seqNum"]
        s.inject(Fault("gap", symbol="ethusdt"))
        f = await until(ws, on(topic))
        assert f["tick"]["prevSeqNum"] != prev  # one diff withheld
        nxt = await until(ws, on(topic))
        assert nxt["tick"]["prevSeqNum"] == f["tick"]["seqNum"]
        conn = next(iter(s.connections.values()))
        assert conn.streams[topic].skipped == 1


@pytest.mark.timeout(30)
async def test_swap_depth_snapshot_then_version_chain(sim: Simulator, http: aiohttp.ClientSession) -> None:
    s = server(sim)
    topic = "market.BTC-USDT.depth.size_150.high_freq"
    async with http.ws_connect(s.ws_url + "/linear-swap-ws") as ws:
        await ws.send_str(json.dumps({"sub": topic, "data_type": "incremental", "id": "1"}))
        await until(ws, lambda f: f.get("subbed") == topic)
        snap = await until(ws, on(topic))
        assert snap["tick"]["event"] == "snapshot"
        book = IndependentBook(snap["tick"]["bids"], snap["tick"]["asks"])
        version = snap["tick"]["version"]
        feed = s._feeds["BTC-USDT"]
        updates = compared = 0
        while updates < 10 or compared < 3:  # compared only while the server has pushed nothing newer
            f = await until(ws, on(topic))
            assert f["tick"]["event"] == "update" and f["tick"]["version"] == version + 1
            version += 1
            updates += 1
            book.apply(f["tick"]["bids"], f["tick"]["asks"])
            assert all(float(q) == int(q) for q in book.bids.values())  # whole contracts
            if feed.version == version:
                compared += 1
                assert book.top(150) == (
                    _levels(list(feed.view.bids.items())),
                    _levels(list(feed.view.asks.items())),
                )
        await ws.send_str(json.dumps({"sub": "market.BTC-USDT.bbo", "id": "2"}))
        bbo = await until(ws, on("market.BTC-USDT.bbo"))
        assert len(bbo["tick"]["bid"]) == 2 and bbo["tick"]["bid"][0] < bbo["tick"]["ask"][0]


# ------------------------------------------------------------------------------------------------- REST
@pytest.mark.timeout(30)
async def test_rest_endpoints(sim: Simulator, http: aiohttp.ClientSession) -> None:
    base = server(sim).rest_url

    async def get(path: str) -> Any:
        async with http.get(base + path) as r:
            assert r.status == 200 and "X-HB-RateLimit-Requests-Remain" in r.headers
            return await r.json()

    assert isinstance((await get("/v1/common/timestamp"))["data"], int)
    assert isinstance((await get("/api/v1/timestamp"))["ts"], int)
    symbols = (await get("/v1/common/symbols"))["data"]
    assert {s["symbol"] for s in symbols} == {"btcusdt", "ethusdt"} and symbols[0]["state"] == "online"
    linear = (await get("/linear-swap-api/v1/swap_contract_info?business_type=all"))["data"]
    assert {c["contract_code"]: c["contract_size"] for c in linear} == {"BTC-USDT": 0.001, "ETH-USDT": 0.01}
    assert (await get("/swap-api/v1/swap_contract_info"))["data"]
    assert (await get("/api/v1/contract_contract_info"))["data"]
    depth = await get("/market/depth?symbol=btcusdt&type=step0&depth=5")
    assert len(depth["tick"]["bids"]) == 5 and depth["tick"]["bids"][0][0] < depth["tick"]["asks"][0][0]
    assert (
        len((await get("/linear-swap-ex/market/depth?contract_code=BTC-USDT&type=step0"))["tick"]["asks"]) > 5
    )
    await asyncio.sleep(0.3)
    trades = await get("/market/history/trade?symbol=btcusdt&size=5")
    ids = [g["data"][0]["trade-id"] for g in trades["data"]]
    assert ids == sorted(ids, reverse=True) and len(ids) == 5
    swap_trades = await get("/linear-swap-ex/market/history/trade?contract_code=BTC-USDT&size=3")
    assert all("quantity" in g["data"][0] for g in swap_trades["data"])
    merged = await get("/market/detail/merged?symbol=btcusdt")
    assert merged["tick"]["bid"][0] < merged["tick"]["ask"][0]
    assert (await get("/linear-swap-ex/market/detail/merged?contract_code=BTC-USDT"))["status"] == "ok"
    assert {t["symbol"] for t in (await get("/market/tickers"))["data"]} == {"btcusdt", "ethusdt"}
    bad = await get("/market/depth?symbol=nosuch&type=step0")
    assert bad["status"] == "error" and bad["err-code"] == "invalid-parameter"
    async with http.get(base + "/v9/nope") as r:
        assert r.status == 404 and (await r.json())["status"] == "error"


@pytest.mark.timeout(30)
async def test_rest_rate_limit_answer() -> None:
    cfg = SimConfig(rest_limits={"htx": (3, 60.0)}, synthetic_rate_hz=50.0)
    async with Simulator(["htx"], mode="synthetic", config=cfg) as sim, aiohttp.ClientSession() as http:
        base = server(sim).rest_url
        remain = []
        for _ in range(3):
            async with http.get(base + "/v1/common/timestamp") as r:
                assert r.status == 200
                remain.append(int(r.headers["X-HB-RateLimit-Requests-Remain"]))
        assert remain == [2, 1, 0]
        async with http.get(base + "/v1/common/timestamp") as r:
            body = await r.json()
            assert r.status == 429 and int(r.headers["Retry-After"]) >= 1
            assert body["err-code"] == "rate-too-many-requests"
        assert sim.servers["htx"].sim_stats()["rest"]["429"] == 1


# ------------------------------------------------------------------------------------------------- review fixes
@pytest.mark.timeout(30)
async def test_req_limit_is_per_connection_not_per_topic(sim: Simulator, http: aiohttp.ClientSession) -> None:
    """One ``req`` per 100 ms per connection: a ``req`` of ANOTHER topic right after is refused too; another
    connection is not affected."""
    s = server(sim)
    async with http.ws_connect(s.ws_url + "/feed") as ws, http.ws_connect(s.ws_url + "/feed") as other:
        await ws.send_str(json.dumps({"req": "market.btcusdt.mbp.150", "id": "1"}))
        await ws.send_str(json.dumps({"req": "market.ethusdt.mbp.150", "id": "2"}))
        await other.send_str(json.dumps({"req": "market.ethusdt.mbp.150", "id": "3"}))
        ok = await until(ws, lambda f: f.get("id") == "1")
        assert ok["status"] == "ok" and ok["rep"] == "market.btcusdt.mbp.150"
        refused = await until(ws, lambda f: f.get("id") == "2")
        assert refused["status"] == "error" and refused["err-code"] == "bad-request"
        assert refused["err-msg"] == "429 too many request"
        elsewhere = await until(other, lambda f: f.get("id") == "3")
        assert elsewhere["status"] == "ok" and elsewhere["rep"] == "market.ethusdt.mbp.150"


@pytest.mark.timeout(30)
@pytest.mark.parametrize("levels", [5, 20])
async def test_mbp_5_and_20_tick_by_tick_with_req(
    sim: Simulator, http: aiohttp.ClientSession, levels: int
) -> None:
    """mbp.5/mbp.20: a push per change of the view (an unchanged side left out), chained by prevSeqNum from the
    ``req`` snapshot; the book rebuilt here equals the server's view of that depth."""
    s = server(sim)
    topic = f"market.btcusdt.mbp.{levels}"
    async with http.ws_connect(s.ws_url + "/feed") as ws:
        await ws.send_str(json.dumps({"sub": topic, "id": "1"}))
        await until(ws, lambda f: f.get("subbed") == topic)
        await until(ws, on(topic))
        await ws.send_str(json.dumps({"req": topic, "id": "2"}))
        rep = await until(ws, lambda f: f.get("id") == "2")
        assert rep["status"] == "ok" and rep["rep"] == topic
        assert 0 < len(rep["data"]["bids"]) <= levels and 0 < len(rep["data"]["asks"]) <= levels
        book = IndependentBook(rep["data"]["bids"], rep["data"]["asks"])
        last = rep["data"]["seqNum"]
        feed = s._feeds["btcusdt"]
        applied = compared = one_sided = 0
        while applied < 20 or compared < 3:
            tick = (await until(ws, on(topic)))["tick"]
            if tick["seqNum"] <= last:
                continue
            assert tick["prevSeqNum"] == last
            assert tick.get("bids") or tick.get("asks")  # tick by tick: never an empty push
            one_sided += "bids" not in tick or "asks" not in tick
            book.apply(tick.get("bids", []), tick.get("asks", []))
            last = tick["seqNum"]
            applied += 1
            view = feed.views[f"mbp.{levels}"]
            if view.seq == last:
                compared += 1
                assert book.top(levels) == (
                    _levels(list(view.bids.items())),
                    _levels(list(view.asks.items())),
                )
                assert len(book.bids) <= levels and len(book.asks) <= levels  # leavers deleted
        assert one_sided > 0


@pytest.mark.timeout(30)
async def test_mbp_400_is_served_but_has_no_req(sim: Simulator, http: aiohttp.ClientSession) -> None:
    s = server(sim)
    topic = "market.ethusdt.mbp.400"
    async with http.ws_connect(s.ws_url + "/feed") as ws:
        await ws.send_str(json.dumps({"sub": topic, "id": "1"}))
        assert (await until(ws, lambda f: "subbed" in f or f.get("status") == "error"))["subbed"] == topic
        first = (await until(ws, on(topic)))["tick"]
        nxt = (await until(ws, on(topic)))["tick"]
        assert nxt["prevSeqNum"] == first["seqNum"]
        await ws.send_str(json.dumps({"req": topic, "id": "2"}))
        err = await until(ws, lambda f: f.get("id") == "2")
        assert err["status"] == "error" and err["err-msg"] == f"invalid topic {topic}"
        await ws.send_str(json.dumps({"sub": "market.ethusdt.mbp.10", "id": "3"}))
        assert (await until(ws, lambda f: f.get("id") == "3"))["status"] == "error"


@pytest.mark.timeout(30)
async def test_swap_depth_size_20(sim: Simulator, http: aiohttp.ClientSession) -> None:
    """depth.size_20.high_freq: a 20-level snapshot then updates with its own version chain (+1 per push), next
    to the 150-level topic on the same socket."""
    s = server(sim)
    t20, t150 = (f"market.ETH-USDT.depth.size_{n}.high_freq" for n in (20, 150))
    async with http.ws_connect(s.ws_url + "/linear-swap-ws") as ws:
        for i, topic in enumerate((t20, t150)):
            await ws.send_str(json.dumps({"sub": topic, "data_type": "incremental", "id": str(i)}))
        snaps: dict[str, Any] = {}
        while len(snaps) < 2:
            f = await until(ws, lambda f: f.get("ch") in (t20, t150))
            assert f["tick"]["event"] == "snapshot"
            snaps[f["ch"]] = f["tick"]
        assert len(snaps[t20]["bids"]) == 20 and len(snaps[t150]["bids"]) > 20
        book = IndependentBook(snaps[t20]["bids"], snaps[t20]["asks"])
        version = {ch: snaps[ch]["version"] for ch in snaps}
        seen = dict.fromkeys(snaps, 0)
        feed = s._feeds["ETH-USDT"]
        compared = 0
        while min(seen.values()) < 5 or compared < 2:
            f = await until(ws, lambda f: f.get("ch") in (t20, t150))
            ch = f["ch"]
            assert f["tick"]["event"] == "update" and f["tick"]["version"] == version[ch] + 1
            version[ch] += 1
            seen[ch] += 1
            if ch == t20:
                book.apply(f["tick"]["bids"], f["tick"]["asks"])
                if feed.versions["depth.size_20.high_freq"] == version[ch]:
                    view = feed.views["depth.size_20.high_freq"]
                    compared += 1
                    assert book.top(20) == (
                        _levels(list(view.bids.items())),
                        _levels(list(view.asks.items())),
                    )


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("symbol", "newest_first"), [("btcusdt", True), ("BTC-USDT", False)])
async def test_trade_pushes_are_batched(
    sim: Simulator, http: aiohttp.ClientSession, symbol: str, newest_first: bool
) -> None:
    """Some ``trade.detail`` pushes carry several trades (spot newest first, swaps oldest first); over the pushes
    every trade id comes once, none skipped; the stream stats count trades."""
    s = server(sim)
    topic = f"market.{symbol}.trade.detail"
    path = "/linear-swap-ws" if "-" in symbol else "/ws"
    async with http.ws_connect(s.ws_url + path) as ws:
        await ws.send_str(json.dumps({"sub": topic, "id": "1"}))
        ids: list[int] = []
        batches = 0
        while batches < 3:
            items = (await until(ws, on(topic)))["tick"]["data"]
            push = [int(it["tradeId"] if "tradeId" in it else it["id"]) for it in items]
            assert push == sorted(push, reverse=newest_first)
            batches += len(push) > 1
            ids += sorted(push)
        assert ids == list(range(ids[0], ids[0] + len(ids)))  # contiguous, once each
        conn = next(iter(s.connections.values()))
        st = conn.streams[topic]
        assert st.first_id is not None and st.last_id is not None
        assert st.frames == st.last_id - st.first_id + 1 and st.non_increasing == 0
        assert st.last_id >= ids[-1]


def test_gzip_frame_compressed_once_per_text(monkeypatch: pytest.MonkeyPatch) -> None:
    """A frame queued to many connections (one str object) is compressed once; equal text of another object, or
    a text evicted from the bounded cache, is compressed again and still correct."""
    calls: list[int] = []
    real = gzip.compress

    def counting(data: bytes, level: int = 9) -> bytes:
        calls.append(level)
        return real(data, level)

    monkeypatch.setattr(gzip, "compress", counting)
    s = HtxServer.__new__(HtxServer)
    s._gzipped = {}
    text = json.dumps({"ch": "market.btcusdt.trade.detail", "n": 1})
    frames = [s.encode_frame(text) for _ in range(5)]
    assert len(calls) == 1 and all(f is frames[0] for f in frames)
    assert gzip.decompress(frames[0]).decode() == text
    twin = "".join(list(text))  # equal, another object
    assert twin is not text and gzip.decompress(s.encode_frame(twin)).decode() == text and len(calls) == 2
    for i in range(300):
        s.encode_frame(f'{{"i":{i}}}')
    assert len(s._gzipped) <= 256
    assert gzip.decompress(s.encode_frame(text)).decode() == text and len(calls) == 303
