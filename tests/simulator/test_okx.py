"""OKX v5 protocol conformance with a raw aiohttp client (EXCHANGES.md §3)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal

import aiohttp
import pytest
from sim_helpers import fast_config, recv_close, recv_until

from cryptolink.simulator import Fault, SimConfig, Simulator

pytestmark = pytest.mark.integration


def crc32_ref(data: bytes) -> int:
    """Bitwise reflected CRC-32 (poly 0xEDB88320), written out here to check the server independently."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0xEDB88320 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def expected_checksum(book: dict[str, dict[Decimal, tuple[str, str]]]) -> int:
    bids = [book["bids"][k] for k in sorted(book["bids"], reverse=True)[:25]]
    asks = [book["asks"][k] for k in sorted(book["asks"])[:25]]
    parts = []
    for i in range(25):
        if i < len(bids):
            parts += list(bids[i])
        if i < len(asks):
            parts += list(asks[i])
    v = crc32_ref(":".join(parts).encode())
    return v - 2**32 if v >= 2**31 else v


def apply(book: dict[str, dict[Decimal, tuple[str, str]]], data: dict[str, list[list[str]]]) -> None:
    for side in ("bids", "asks"):
        for p, sz, *_ in data[side]:
            if Decimal(sz) == 0:
                book[side].pop(Decimal(p), None)
            else:
                book[side][Decimal(p)] = (p, sz)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def sub(*args: tuple[str, str], op: str = "subscribe", req_id: str | None = None) -> str:
    msg: dict[str, object] = {"op": op, "args": [{"channel": c, "instId": i} for c, i in args]}
    if req_id is not None:
        msg["id"] = req_id
    return json.dumps(msg)


async def test_acks_errors_and_ping(http: aiohttp.ClientSession) -> None:
    async with (
        Simulator(["okx"], mode="synthetic", config=fast_config()) as sim,
        http.ws_connect(sim.endpoints()["okx"]["ws_url"] + "/ws/v5/public") as ws,
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
        trade = await recv_until(
            ws, lambda f: isinstance(f, dict) and f.get("arg", {}).get("channel") == "trades"
        )
        t = trade["data"][0]
        assert t["instId"] == "BTC-USDT" and t["side"] in ("buy", "sell") and int(t["tradeId"]) > 0


async def test_books_snapshot_seq_chain_and_checksums(http: aiohttp.ClientSession) -> None:
    async with (
        Simulator(["okx"], mode="replay", speed=3.0, config=fast_config()) as sim,
        http.ws_connect(sim.endpoints()["okx"]["ws_url"] + "/ws/v5/public") as ws,
    ):
        await ws.send_str(sub(("books", "BTC-USDT")))
        snap = await recv_until(ws, lambda f: f.get("action") == "snapshot")
        d = snap["data"][0]
        assert d["prevSeqId"] == -1 and len(d["bids"]) == 400
        book: dict[str, dict[Decimal, tuple[str, str]]] = {"bids": {}, "asks": {}}
        apply(book, d)
        assert d["checksum"] == expected_checksum(book) != 0
        last = d["seqId"]
        for _ in range(100):
            u = (await recv_until(ws, lambda f: f.get("action") == "update"))["data"][0]
            assert u["prevSeqId"] == last and u["seqId"] > last
            last = u["seqId"]
            apply(book, u)
            assert u["checksum"] == expected_checksum(book)


async def test_checksum_zero_mode(http: aiohttp.ClientSession) -> None:
    cfg = fast_config()
    cfg = SimConfig(rules=cfg.rules, okx_checksum="zero", synthetic_rate_hz=400.0)
    async with (
        Simulator(["okx"], mode="synthetic", config=cfg) as sim,
        http.ws_connect(sim.endpoints()["okx"]["ws_url"] + "/ws/v5/public") as ws,
    ):
        await ws.send_str(sub(("books", "ETH-USDT")))
        for _ in range(5):
            f = await recv_until(ws, lambda f: "action" in f)
            assert f["data"][0]["checksum"] == 0


async def test_idle_close_without_subscription(http: aiohttp.ClientSession) -> None:
    async with (
        Simulator(["okx"], mode="synthetic", config=fast_config(okx={"idle_close_s": 0.3})) as sim,
        http.ws_connect(sim.endpoints()["okx"]["ws_url"] + "/ws/v5/public") as ws,
    ):
        await recv_close(ws)
        assert ws.close_code == 4004


async def test_subscription_rate_limit(http: aiohttp.ClientSession) -> None:
    async with (
        Simulator(["okx"], mode="synthetic", config=fast_config(okx={"max_subs_per_hour": 2})) as sim,
        http.ws_connect(sim.endpoints()["okx"]["ws_url"] + "/ws/v5/public") as ws,
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
        http.ws_connect(sim.endpoints()["okx"]["ws_url"] + "/ws/v5/public") as ws,
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


async def test_rest_endpoints_and_429(http: aiohttp.ClientSession) -> None:
    async with Simulator(["okx"], mode="synthetic", config=fast_config()) as sim:
        base = sim.endpoints()["okx"]["rest_url"] + "/api/v5"
        async with http.get(base + "/public/instruments?instType=SPOT") as r:
            ids = [i["instId"] for i in (await r.json())["data"]]
            assert ids == ["BTC-USDT", "ETH-USDT"]
        async with http.get(base + "/public/instruments?instType=SWAP") as r:
            assert [i["instId"] for i in (await r.json())["data"]] == ["BTC-USDT-SWAP"]
        async with http.get(base + "/market/books?instId=BTC-USDT&sz=5") as r:
            d = (await r.json())["data"][0]
            assert len(d["bids"]) == 5 and Decimal(d["bids"][0][0]) < Decimal(d["asks"][0][0])
        async with http.get(base + "/market/books?instId=NOPE-USDT") as r:
            assert (await r.json())["code"] == "51001"
        async with http.get(base + "/market/ticker?instId=ETH-USDT") as r:
            assert (await r.json())["data"][0]["instId"] == "ETH-USDT"
        statuses = []
        for _ in range(11):
            async with http.get(base + "/public/time") as r:
                statuses.append(r.status)
                body = await r.json()
        assert statuses[-1] == 429 and body == {"code": "50011", "msg": "Too Many Requests", "data": []}


async def test_notice_and_badchecksum_faults(http: aiohttp.ClientSession) -> None:
    async with (
        Simulator(["okx"], mode="synthetic", config=fast_config()) as sim,
        http.ws_connect(sim.endpoints()["okx"]["ws_url"] + "/ws/v5/public") as ws,
    ):
        await ws.send_str(sub(("books", "BTC-USDT")))
        d = (await recv_until(ws, lambda f: f.get("action") == "snapshot"))["data"][0]
        book: dict[str, dict[Decimal, tuple[str, str]]] = {"bids": {}, "asks": {}}
        apply(book, d)
        sim.inject(Fault("badchecksum", symbol="BTC-USDT"), exchange="okx")
        sim.inject(Fault("notice"), exchange="okx")
        bad = 0
        for _ in range(20):
            f = await recv_until(ws, lambda f: "action" in f or f.get("event") == "notice")
            if f.get("event") == "notice":
                assert f["code"] == "64008"
                continue
            apply(book, f["data"][0])
            bad += f["data"][0]["checksum"] != expected_checksum(book)
        assert bad == 1


async def test_tickers_are_pushed_on_change_only(http: aiohttp.ClientSession) -> None:
    async with (
        Simulator(["okx"], mode="replay", speed=3.0, config=fast_config()) as sim,
        http.ws_connect(sim.endpoints()["okx"]["ws_url"] + "/ws/v5/public") as ws,
    ):
        await ws.send_str(sub(("tickers", "BTC-USDT")))
        fields = ("bidPx", "bidSz", "askPx", "askSz", "last")
        previous: tuple[str, ...] | None = None
        for _ in range(30):
            t = (await recv_until(ws, lambda f: "data" in f))["data"][0]
            current = tuple(t[k] for k in fields)
            assert current != previous
            previous = current
