"""Bybit v5 adapter: the shipped v5 recordings, the retired v2 recording (refused as such), requests, acks,
rejections, pongs, symbols and routing, the shared level-1 topic (reference counted), tickers (level-1 BBO and
merged partial deltas), book sequence rules, instruments, snapshots, backfill, malformed input.

The v2 fixtures ``fixtures/bybit_v2_BYBIT.ws.{25,26}.0.gz`` are the first 300 lines of two bmoscon/cryptofeed sample
recordings (2021); their licence is ``fixtures/bybit_v2_LICENSE`` ("This product includes software developed by
Bryant Moscon (http://www.bryantmoscon.com/)")."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from cryptolink import recordings
from cryptolink.book.sync import BookSync
from cryptolink.engine.subscriptions import SubscriptionRegistry
from cryptolink.exchanges import get_adapter
from cryptolink.exchanges.base import (
    Ack,
    BackfillCursor,
    BookMessage,
    DecodeError,
    ExchangeError,
    Pong,
    Rejected,
)
from cryptolink.exchanges.bybit import BybitAdapter
from cryptolink.models import AmountUnit, BookUpdate, Channel, Market, Side, Subscription, Ticker, Trade

FIXTURES = Path(__file__).parent / "fixtures"
V5_FILES = ("cryptofeed_bybit_BYBIT.ws.1.0.gz", "cryptofeed_bybit_BYBIT.ws.2.0.gz")


def _v5_frames(name: str) -> list[tuple[float, str]]:
    return [(r.ts_s, r.payload) for r in recordings.iter_cryptofeed_ws(name) if r.kind == "received"]


def test_every_recorded_v5_frame_decodes() -> None:
    """Linear (ws.1) and spot (ws.2) connections of 2025-06: every frame decodes; the orderbook.1 pushes
    (snapshots only, as documented for level 1) are the ticker: best bid/offer with ``u`` as sequence."""
    for name, adapter, acks, pushes in (
        (V5_FILES[0], BybitAdapter(Market.PERPETUAL), 4, 198),
        (V5_FILES[1], BybitAdapter(Market.SPOT), 6, 139),
    ):
        counts: Counter[str] = Counter()
        for _, payload in _v5_frames(name):
            for ev in adapter.decode(payload, 0):
                counts[type(ev).__name__] += 1
                if isinstance(ev, Ticker):
                    assert ev.bid_price is not None and ev.ask_price is not None
                    assert ev.bid_price < ev.ask_price and ev.sequence is not None
        assert counts == {"Ticker": pushes, "Ack": acks}, name


def test_recorded_level1_books_pass_the_sequence_rules() -> None:
    """With a depth-1 book subscription the same recorded pushes are book snapshots: every one with a new ``u``
    replaces the book, every re-push of an unchanged book (same ``u``, documented for level 1) is dropped as a
    duplicate, and the rebuilt top of book equals the last pushed level."""
    for name, market in ((V5_FILES[0], Market.PERPETUAL), (V5_FILES[1], Market.SPOT)):
        ad = BybitAdapter(market)
        frames = _v5_frames(name)
        natives = {json.loads(p)["data"]["s"] for _, p in frames if '"topic"' in p}
        for native in natives:  # subscribe depth-1 books of every recorded symbol
            unified = ad.unified_symbol(native)
            ad.subscribe_requests([Subscription(Channel.BOOK, unified, depth=1)], 1)
        syncs: dict[str, BookSync] = {}
        counts: Counter[str] = Counter()
        last_u: dict[str, int] = {}
        repeats = 0
        for _, payload in frames:
            for ev in ad.decode(payload, 0):
                if not isinstance(ev, BookMessage):
                    continue
                assert ev.is_snapshot
                if last_u.get(ev.exchange_symbol) == ev.last_seq:
                    repeats += 1
                last_u[ev.exchange_symbol] = ev.last_seq
                sync = syncs.setdefault(
                    ev.exchange_symbol, BookSync(ad.book_sync, "bybit", ev.symbol, ev.symbol)
                )
                for action in sync.on_message(ev):
                    counts[type(action).__name__] += 1
                    if isinstance(action, BookUpdate):
                        assert action.bids[0][0] == Decimal(ev.bids[0][0])
        assert counts["BookUpdate"] + counts["Dropped"] == sum(1 for _, p in frames if '"topic"' in p)
        assert counts["Dropped"] == repeats > 0
        assert counts["NeedResubscribe"] == 0 and counts["BookFailed"] == 0
        assert all(s.stats().gaps == 0 and s.state.value == "live" for s in syncs.values())


def test_retired_v2_recording_is_refused_without_crashing() -> None:
    """The 2021 v2 API (``wss://stream.bybit.com/realtime*``, topics ``trade.X``/``orderBookL2_25.X``, answers
    with a ``request`` object) is retired: none of its frames decode to events; each is ignored, none raises."""
    ignored = raised = 0
    total = 0
    for name in ("bybit_v2_BYBIT.ws.25.0.gz", "bybit_v2_BYBIT.ws.26.0.gz"):
        ad = BybitAdapter(Market.PERPETUAL)
        for line in gzip.decompress((FIXTURES / name).read_bytes()).decode().splitlines():
            if line.startswith("wss://"):
                continue
            total += 1
            try:
                out = ad.decode(line.split(": ", 1)[1], 0)
            except DecodeError:
                raised += 1
                continue
            ignored += not out
    assert (
        total == 578
    )  # the fixtures hold the first 300 lines of each v2 file, 22 of them connect/sent lines
    assert (ignored, raised) == (578, 0)


def test_trades_spot_numeric_ids_and_derivative_uuids() -> None:
    spot = BybitAdapter(Market.SPOT, feed="by")
    spot.exchange_symbol("BTC/USDT")
    [t] = spot.decode(
        '{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1672304486868,"data":[{"T":1672304486865,'
        '"s":"BTCUSDT","S":"Sell","v":"0.001","p":"16578.50","L":"PlusTick","i":"2290000000061666327",'
        '"BT":false}]}',
        9,
    )
    assert isinstance(t, Trade)
    assert (t.symbol, t.side, t.price, t.amount, t.sequence, t.timestamp_ms, t.receipt_ns, t.feed) == (
        "BTC/USDT", Side.SELL, Decimal("16578.50"), Decimal("0.001"), 2290000000061666327, 1672304486865, 9,
        "by",
    )  # fmt: skip
    perp = BybitAdapter(Market.PERPETUAL)
    [u] = perp.decode(
        '{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1,"data":[{"T":2,"s":"BTCUSDT","S":"Buy",'
        '"v":"0.5","p":"1","L":"PlusTick","i":"20f43950-d8dd-5b31-9112-a178eb6023af","BT":false,"seq":7}]}',
        0,
    )
    assert isinstance(u, Trade)
    assert (u.symbol, u.side, u.sequence, u.trade_id) == (
        "BTC/USDT:USDT", Side.BUY, None, "20f43950-d8dd-5b31-9112-a178eb6023af",
    )  # fmt: skip


def test_derivative_tickers_merge_partial_deltas() -> None:
    ad = BybitAdapter(Market.PERPETUAL)
    ad.exchange_symbol("BTC/USDT:USDT")
    [a] = ad.decode(
        '{"topic":"tickers.BTCUSDT","type":"snapshot","data":{"symbol":"BTCUSDT","tickDirection":"PlusTick",'
        '"lastPrice":"17216.00","bid1Price":"17215.50","bid1Size":"84.489","ask1Price":"17216.00",'
        '"ask1Size":"83.020","fundingRate":"-0.000212"},"cs":24987956059,"ts":1673272861686}',
        0,
    )
    [b] = ad.decode(
        '{"topic":"tickers.BTCUSDT","type":"delta","data":{"symbol":"BTCUSDT","bid1Size":"80.000",'
        '"markPrice":"17217.33"},"cs":24987956100,"ts":1673272861700}',
        0,
    )
    assert isinstance(a, Ticker) and isinstance(b, Ticker)
    assert (a.bid_size, a.last_price, a.sequence) == (Decimal("84.489"), Decimal("17216.00"), 24987956059)
    assert (b.bid_price, b.bid_size, b.ask_price, b.last_price, b.sequence, b.timestamp_ms) == (
        Decimal("17215.50"), Decimal("80.000"), Decimal("17216.00"), Decimal("17216.00"), 24987956100,
        1673272861700,
    )  # fmt: skip
    [c] = ad.decode(
        '{"topic":"tickers.ETHUSDT","type":"delta","data":{"symbol":"ETHUSDT","lastPrice":"2"}}', 0
    )
    assert isinstance(c, Ticker) and c.last_price == Decimal(2) and c.bid_price is None
    assert c.symbol == "ETH/USDT:USDT" and ad.counters()["ticker_delta_without_snapshot"] == 1


def test_book_messages_and_sync_rules() -> None:
    ad = BybitAdapter(Market.SPOT)
    sub = Subscription(Channel.BOOK, "BTC/USDT")
    ad.subscribe_requests([sub], 1)

    def push(kind: str, u: int, bids: str = "[]", asks: str = "[]") -> BookMessage:
        [m] = ad.decode(
            f'{{"topic":"orderbook.50.BTCUSDT","type":"{kind}","ts":5,"data":{{"s":"BTCUSDT","b":{bids},'
            f'"a":{asks},"u":{u},"seq":9}},"cts":4}}',
            0,
        )
        assert isinstance(m, BookMessage)
        return m

    snap = push("snapshot", 100, '[["10","1"],["9","2"]]', '[["11","1"]]')
    assert (snap.is_snapshot, snap.first_seq, snap.last_seq, snap.prev_seq, snap.timestamp_ms) == (
        True, 100, 100, 99, 5,
    )  # fmt: skip
    sync = BookSync(ad.book_sync, "bybit", "BTC/USDT", "BTCUSDT")
    assert [type(a).__name__ for a in sync.on_message(snap)] == ["BookUpdate"]
    assert [type(a).__name__ for a in sync.on_message(push("delta", 101, '[["10","0"]]'))] == ["BookUpdate"]
    assert [type(a).__name__ for a in sync.on_message(push("delta", 101, '[["10","5"]]'))] == ["Dropped"]
    # u skips 102: a gap, resubscribe this symbol
    assert [type(a).__name__ for a in sync.on_message(push("delta", 103, '[["9","0"]]'))] == [
        "NeedResubscribe"
    ]
    assert sync.stats().gaps == 1
    # after a service restart u starts again at 1 with a snapshot: it replaces the book
    restart = push("snapshot", 1, '[["8","1"]]', '[["12","1"]]')
    assert restart.prev_seq is None
    assert [type(a).__name__ for a in sync.on_message(restart)] == ["BookUpdate"]
    assert [type(a).__name__ for a in sync.on_message(push("delta", 2, "[]", '[["12","3"]]'))] == [
        "BookUpdate"
    ]
    assert sync.book.last_sequence == 2
    # u = 1 is snapshot data after a restart even when the push says "delta": it overwrites the book
    again = push("delta", 1, '[["7","1"]]', '[["13","1"]]')
    assert (again.is_snapshot, again.prev_seq) == (True, None)
    assert [type(a).__name__ for a in sync.on_message(again)] == ["BookUpdate"]
    assert (sync.book.best_bid(), sync.book.last_sequence) == ((Decimal(7), Decimal(1)), 1)


def test_requests_batching_acks_rejections_pong() -> None:
    spot = BybitAdapter(Market.SPOT)
    subs = [Subscription(Channel.TRADES, f"C{i}/USDT") for i in range(23)]
    reqs = spot.subscribe_requests(subs, 40)
    assert [len(r.subscriptions) for r in reqs] == [10, 10, 3]  # at most 10 args per spot request
    assert [r.request_id for r in reqs] == [40, 41, 42]
    first = json.loads(reqs[0].frame)
    assert first == {"req_id": "40", "op": "subscribe", "args": [f"publicTrade.C{i}USDT" for i in range(10)]}
    perp = BybitAdapter(Market.PERPETUAL)
    many = [Subscription(Channel.TRADES, f"C{i}/USDT:USDT") for i in range(23)]
    assert len(perp.subscribe_requests(many, 1)) == 1  # no per-request bound on derivatives
    # acks: spot and linear shapes
    assert spot.decode(
        '{"success":true,"ret_msg":"subscribe","conn_id":"2324d924-aa4d","req_id":"40","op":"subscribe"}', 0
    ) == [Ack("subscribe", 40)]
    assert perp.decode('{"success":true,"ret_msg":"","conn_id":"c","req_id":"","op":"unsubscribe"}', 0) == [
        Ack("unsubscribe", None)
    ]
    [rej] = spot.decode(
        '{"success":false,"ret_msg":"error:handler not found,topic:publicTrade.C3USDT","conn_id":"c",'
        '"req_id":"40","op":"subscribe"}',
        0,
    )
    assert rej == Rejected(40, "", "error:handler not found,topic:publicTrade.C3USDT", (subs[3],))
    [rej3] = spot.decode(
        '{"success":false,"ret_msg":"Invalid symbol :[publicTrade.C4USDT]","conn_id":"c","req_id":"40",'
        '"op":"subscribe"}',
        0,
    )
    assert rej3 == Rejected(40, "", "Invalid symbol :[publicTrade.C4USDT]", (subs[4],))  # the v5 form
    [rej2] = spot.decode('{"success":false,"ret_msg":"Invalid request","req_id":"41","op":"subscribe"}', 0)
    assert rej2 == Rejected(41, "", "Invalid request", ())  # resolved by the engine from req_id 41
    assert spot.decode('{"success":true,"ret_msg":"pong","conn_id":"c","op":"ping"}', 0) == [Pong()]
    assert perp.decode('{"success":true,"ret_msg":"pong","conn_id":"c","req_id":"","op":"ping"}', 0) == [
        Pong()
    ]
    assert perp.decode('{"req_id":"t","op":"pong","args":["1675418560633"],"conn_id":"c"}', 0) == [Pong()]
    assert spot.decode('{"success":false,"ret_msg":"auth failed","op":"auth"}', 0) == [
        ExchangeError("auth", "auth failed")
    ]
    assert spot.policy.keepalive.app_ping_frame == '{"op":"ping"}'
    assert spot.policy.keepalive.app_ping_idle_s == 20.0 and spot.policy.max_subscriptions_per_request == 10
    assert perp.policy.max_subscriptions_per_request is None
    assert spot.policy.connect_limit is not None and spot.policy.connect_limit.max_connects == 500


def test_topics_routes_and_symbols() -> None:
    spot = BybitAdapter(Market.SPOT)
    perp = BybitAdapter(Market.PERPETUAL, ws_base_url="ws://127.0.0.1:9/v5/public/linear")
    assert perp.ws_base_url == "ws://127.0.0.1:9"
    assert spot.topic(Subscription(Channel.TICKER, "BTC/USDT")) == "orderbook.1.BTCUSDT"
    assert spot.topic(Subscription(Channel.BOOK, "BTC/USDT")) == "orderbook.50.BTCUSDT"
    assert spot.topic(Subscription(Channel.BOOK, "BTC/USDT", depth=100)) == "orderbook.200.BTCUSDT"
    assert spot.topic(Subscription(Channel.BOOK, "BTC/USDT", depth=5000)) == "orderbook.1000.BTCUSDT"
    assert perp.topic(Subscription(Channel.TICKER, "BTC/USD:BTC")) == "tickers.BTCUSD"
    assert perp.exchange_symbol("BTC/USDC:USDC") == "BTCPERP"
    plan = perp.plan_connections(
        [Subscription(Channel.TRADES, "BTC/USDT:USDT"), Subscription(Channel.TRADES, "ETH/USD:ETH")]
    )
    assert [(p.url, p.route) for p in plan] == [
        ("ws://127.0.0.1:9/v5/public/linear", "linear"),
        ("ws://127.0.0.1:9/v5/public/inverse", "inverse"),
    ]
    [sp] = spot.plan_connections([Subscription(Channel.TRADES, "BTC/USDT")])
    assert sp.url == "wss://stream.bybit.com/v5/public/spot"
    assert spot.unified_symbol("ETHUSDC") == "ETH/USDC"
    assert (
        perp.unified_symbol("SOLUSD") == "SOL/USD:SOL" and perp.unified_symbol("ETHPERP") == "ETH/USDC:USDC"
    )
    for bad in ("BTC/USDT:USDT", "nope"):
        with pytest.raises(ValueError):
            spot.exchange_symbol(bad)
    for bad in ("BTC/USDT", "BTC/USD:BTC-250627", "BTC/USDT:ETH"):
        with pytest.raises(ValueError):
            perp.exchange_symbol(bad)
    assert perp.amount_unit("BTC/USD:BTC") is AmountUnit.CONTRACTS
    assert perp.amount_unit("BTC/USDT:USDT") is AmountUnit.BASE
    assert get_adapter("bybit", "perpetual", testnet=True).ws_base_url == "wss://stream-testnet.bybit.com"


def _inst(symbol: str, base: str, quote: str, kind: str = "", status: str = "Trading") -> dict[str, object]:
    out: dict[str, object] = {"symbol": symbol, "baseCoin": base, "quoteCoin": quote, "status": status,
                              "lotSizeFilter": {"qtyStep": "0.001", "minOrderQty": "0.001"}}  # fmt: skip
    if kind:
        out.update(contractType=kind, settleCoin=base if kind == "InversePerpetual" else quote)
    return out


def test_instruments_linear_inverse_and_spot() -> None:
    perp = BybitAdapter(Market.PERPETUAL)
    reqs = perp.instruments_requests()
    assert [(r.path, r.params["category"]) for r in reqs] == [
        ("/v5/market/instruments-info", "linear"),
        ("/v5/market/instruments-info", "inverse"),
    ]
    linear = msgspec.json.encode({"retCode": 0, "retMsg": "OK", "result": {"category": "linear", "list": [
        _inst("BTCUSDT", "BTC", "USDT", "LinearPerpetual"),
        _inst("BTCPERP", "BTC", "USDC", "LinearPerpetual", "PreLaunch"),
        _inst("BTC-27JUN25", "BTC", "USDC", "LinearFutures"),
    ], "nextPageCursor": ""}, "retExtInfo": {}, "time": 1})  # fmt: skip
    inverse = msgspec.json.encode({"retCode": 0, "retMsg": "OK", "result": {"category": "inverse", "list": [
        _inst("BTCUSD", "BTC", "USD", "InversePerpetual"),
        _inst("BTCUSDH25", "BTC", "USD", "InverseFutures"),
    ]}})  # fmt: skip
    got = {i.symbol: i for b in (linear, inverse) for i in perp.parse_instruments(b)}
    assert set(got) == {"BTC/USDT:USDT", "BTC/USDC:USDC", "BTC/USD:BTC"}
    assert not got["BTC/USDC:USDC"].active and got["BTC/USDC:USDC"].status == "PreLaunch"
    inv = got["BTC/USD:BTC"]
    assert (inv.amount_unit, inv.contract_size, inv.contract_currency) == (
        AmountUnit.CONTRACTS,
        Decimal(1),
        "USD",
    )
    perp.set_instruments(got.values())
    [t] = perp.decode(
        '{"topic":"publicTrade.BTCUSD","type":"snapshot","ts":1,"data":[{"T":2,"s":"BTCUSD","S":"Buy","v":"100",'
        '"p":"30000","i":"a-b"}]}',
        0,
    )
    assert isinstance(t, Trade) and (t.amount_unit, t.contract_size) == (AmountUnit.CONTRACTS, Decimal(1))
    spot = BybitAdapter(Market.SPOT)
    assert spot.instruments_request().params == {"category": "spot", "limit": "1000"}
    body = msgspec.json.encode(
        {"retCode": 0, "result": {"category": "spot", "list": [_inst("ETHBTC", "ETH", "BTC")]}}
    )
    assert [(i.symbol, i.exchange_symbol, i.active) for i in spot.parse_instruments(body)] == [
        ("ETH/BTC", "ETHBTC", True)
    ]
    with pytest.raises(DecodeError):
        spot.parse_instruments(b'{"retCode":10006,"retMsg":"Too many visits!","result":{}}')


def test_recent_trade_backfill_is_one_page() -> None:
    ad = BybitAdapter(Market.SPOT, feed="b")
    sub = Subscription(Channel.TRADES, "BTC/USDT")
    cursor = BackfillCursor(after_id=100, before_id=200)
    req = ad.backfill_request(sub, cursor)
    assert req is not None and req.path == "/v5/market/recent-trade"
    assert req.params == {"category": "spot", "symbol": "BTCUSDT", "limit": "60"}
    body = msgspec.json.encode({"retCode": 0, "retMsg": "OK", "result": {"category": "spot", "list": [
        {"execId": str(i), "symbol": "BTCUSDT", "price": "1.5", "size": "0.1", "side": "Sell" if i % 2 else "Buy",
         "time": str(1000 + i), "isBlockTrade": False}
        for i in range(199, 139, -1)
    ]}})  # fmt: skip
    trades = ad.parse_trades(body, sub, 3)
    assert len(trades) == 60 and all(t.backfilled and t.feed == "b" for t in trades)
    assert (trades[0].sequence, trades[0].side, trades[0].timestamp_ms) == (199, Side.SELL, 1199)
    cursor.pages = 1
    assert ad.backfill_request(sub, cursor) is None  # no cursor: one page only
    perp = BybitAdapter(Market.PERPETUAL)
    preq = perp.backfill_request(Subscription(Channel.TRADES, "BTC/USD:BTC"), BackfillCursor(1, 2))
    assert preq is not None and preq.params == {"category": "inverse", "symbol": "BTCUSD", "limit": "1000"}
    with pytest.raises(DecodeError):
        ad.parse_trades(b'{"retCode":10001,"retMsg":"params error","result":{}}', sub, 0)


def test_rest_orderbook_snapshot_parse() -> None:
    ad = BybitAdapter(Market.PERPETUAL)
    sub = Subscription(Channel.BOOK, "BTC/USDT:USDT")
    req = ad.rest_book_request(sub)
    assert req.params == {"category": "linear", "symbol": "BTCUSDT", "limit": "200"}
    m = ad.parse_snapshot(
        b'{"retCode":0,"retMsg":"OK","result":{"s":"BTCUSDT","b":[["65485.47","47.081829"]],"a":[],'
        b'"ts":1716863719031,"u":230704,"seq":1432604333,"cts":1716863718905},"retExtInfo":{},"time":1}',
        sub,
        0,
    )
    assert (m.is_snapshot, m.last_seq, m.bids, m.timestamp_ms) == (True, 230704, [["65485.47", "47.081829"]],
                                                                   1716863719031)  # fmt: skip
    assert ad.snapshot_request(sub) is None


@pytest.mark.parametrize(
    "frame",
    [
        "pong?",
        "[]",
        '{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1}',
        '{"topic":"publicTrade.BTCUSDT","data":[{"T":1,"s":"BTCUSDT","S":"Up","v":"1","p":"1","i":"1"}]}',
        '{"topic":"publicTrade.BTCUSDT","data":[{"T":1,"s":"BTCUSDT","S":"Buy","v":"x","p":"1","i":"1"}]}',
        '{"topic":"orderbook.50.BTCUSDT","type":"delta","data":{"s":"BTCUSDT","b":[],"a":[]}}',
        '{"topic":"orderbook.50.BTCUSDT","type":"partial","data":{"s":"BTCUSDT","b":[],"a":[],"u":1}}',
        '{"topic":"orderbook.1.BTCUSDT","type":"snapshot","data":{"s":"BTCUSDT","b":[["1"]],"a":[],"u":1}}',
        '{"topic":"tickers.BTCUSDT","type":"snapshot","data":{"symbol":"BTCUSDT","lastPrice":"abc"}}',
        '{"topic":"tickers.BTCUSDT","type":"snapshot","data":{"lastPrice":"1"}}',
        '{"success":"yes","op":"subscribe"}',
    ],
)
def test_malformed_frames_raise_decode_error(frame: str) -> None:
    with pytest.raises(DecodeError):
        BybitAdapter(Market.SPOT).decode(frame, 0)


def test_non_ascii_digit_ids_do_not_escape_decode() -> None:
    """``"²"`` passes ``str.isdigit`` but not ``int``: such an id is kept as text, never a ValueError."""
    ad = BybitAdapter(Market.SPOT)
    [t] = ad.decode(
        '{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1,"data":[{"T":1,"s":"BTCUSDT","S":"Buy","v":"1",'
        '"p":"1","i":"\u00b2"}]}',
        0,
    )
    assert isinstance(t, Trade) and (t.trade_id, t.sequence) == ("\u00b2", None)
    assert ad.decode('{"success":true,"ret_msg":"","req_id":"\u00b2","op":"subscribe"}', 0) == [
        Ack("subscribe", "\u00b2")
    ]
    body = msgspec.json.encode({"retCode": 0, "result": {"list": [
        {"execId": "1", "symbol": "BTCUSDT", "price": "1", "size": "1", "side": "Buy", "time": "\u00b2"}
    ]}})  # fmt: skip
    [b] = ad.parse_trades(body, Subscription(Channel.TRADES, "BTC/USDT"), 0)
    assert b.timestamp_ms is None


def test_unknown_topics_and_frames_ignored() -> None:
    ad = BybitAdapter(Market.PERPETUAL)
    assert ad.decode('{"topic":"kline.1.BTCUSDT","type":"snapshot","data":[{"start":1}]}', 0) == []
    assert ad.decode('{"hello":1}', 0) == []
    assert ad.decode('{"op":"auth","success":true,"ret_msg":""}', 0) == []


def _l1_push(u: int, bid: str = "10", ask: str = "11") -> str:
    return (
        f'{{"topic":"orderbook.1.BTCUSDT","type":"snapshot","ts":5,"data":{{"s":"BTCUSDT","b":[["{bid}","1"]],'
        f'"a":[["{ask}","2"]],"u":{u},"seq":9}},"cts":4}}'
    )


def _kinds(ad: BybitAdapter, frame: str) -> list[str]:
    return [type(e).__name__ for e in ad.decode(frame, 0)]


def test_shared_level1_topic_is_reference_counted() -> None:
    """The spot ticker and a depth-1 book share ``orderbook.1.X``: unsubscribing one sends nothing (the other keeps
    the topic and its events); the topic is unsubscribed when the last owner leaves; a re-subscription of an owned
    topic is still sent (a new socket needs it)."""
    ad = BybitAdapter(Market.SPOT)
    ticker = Subscription(Channel.TICKER, "BTC/USDT")
    book = Subscription(Channel.BOOK, "BTC/USDT", depth=1)
    [r1] = ad.subscribe_requests([ticker], 1)
    [r2] = ad.subscribe_requests([book], 2)
    assert json.loads(r1.frame)["args"] == json.loads(r2.frame)["args"] == ["orderbook.1.BTCUSDT"]
    assert _kinds(ad, _l1_push(7)) == ["Ticker", "BookMessage"]
    assert ad.unsubscribe_requests([ticker], 3) == []  # the book still owns the topic
    assert _kinds(ad, _l1_push(8)) == ["BookMessage"]
    # a resync cycle of the book (unsubscribe + subscribe) while the ticker is back: only the subscribe is sent
    ad.subscribe_requests([ticker], 4)
    assert ad.unsubscribe_requests([book], 5) == []
    assert _kinds(ad, _l1_push(9)) == ["Ticker"]
    [again] = ad.subscribe_requests([book], 6)
    assert json.loads(again.frame) == {"req_id": "6", "op": "subscribe", "args": ["orderbook.1.BTCUSDT"]}
    # both leave in one batch: one unsubscribe frame for the shared topic, naming both subscriptions
    [last] = ad.unsubscribe_requests([ticker, book], 7)
    assert json.loads(last.frame)["args"] == ["orderbook.1.BTCUSDT"] and last.subscriptions == (ticker, book)
    [r8] = ad.subscribe_requests([ticker], 8)
    [r9] = ad.unsubscribe_requests([ticker], 9)  # the only owner: sent
    assert json.loads(r9.frame) == {"req_id": "9", "op": "unsubscribe", "args": ["orderbook.1.BTCUSDT"]}
    assert r8.op == "subscribe"


def test_refusal_of_a_shared_topic_resolves_to_every_owner() -> None:
    """The ticker asked first (req 1), the book second (req 2, ``already subscribed``): a refusal of req 1 naming
    the topic names both owners, so the engine finds the ticker pending on req 1 (naming only the last owner, the
    book, matched nothing in flight); the refused ticker no longer owns the topic."""
    ad = BybitAdapter(Market.SPOT)
    ticker = Subscription(Channel.TICKER, "BTC/USDT")
    book = Subscription(Channel.BOOK, "BTC/USDT", depth=1)
    registry = SubscriptionRegistry()
    registry.want([ticker, book])
    for req in (*ad.subscribe_requests([ticker], 1), *ad.subscribe_requests([book], 2)):
        registry.sent(req, 0.0)
    [ack] = ad.decode(
        '{"success":false,"ret_msg":"error:already subscribed,topic:orderbook.1.BTCUSDT","req_id":"2",'
        '"op":"subscribe"}',
        0,
    )
    assert ack == Ack("subscribe", 2) and registry.on_ack(ack) == ("subscribe", [book])
    [rej] = ad.decode(
        '{"success":false,"ret_msg":"error:rejected,topic:orderbook.1.BTCUSDT","req_id":"1","op":"subscribe"}',
        0,
    )
    assert isinstance(rej, Rejected) and set(rej.subscriptions) == {ticker, book}
    assert registry.on_rejected(rej) == [ticker]
    assert registry.confirmed == (book,)
    assert _kinds(ad, _l1_push(3)) == ["BookMessage"]  # no ticker events for the refused ticker
    [bye] = ad.unsubscribe_requests([book], 3)  # the book was the last owner
    assert json.loads(bye.frame)["args"] == ["orderbook.1.BTCUSDT"]


def test_truncated_instrument_page_is_counted() -> None:
    """A page with a ``nextPageCursor`` is parsed and counted (later pages are not fetched: docs/protocols/bybit.md
    section 7)."""
    spot = BybitAdapter(Market.SPOT)
    for cursor, expected in (("", 0), ("cursor=ETHBTC", 1), ("cursor=XRPBTC", 2)):
        body = msgspec.json.encode({"retCode": 0, "result": {
            "category": "spot", "list": [_inst("ETHBTC", "ETH", "BTC")], "nextPageCursor": cursor,
        }})  # fmt: skip
        assert [i.symbol for i in spot.parse_instruments(body)] == ["ETH/BTC"]
        assert spot.counters()["instrument_pages_truncated"] == expected


def test_amount_units_cached_per_symbol_and_bounded() -> None:
    """The perpetual adapter works a symbol's amount unit out once (bounded cache, evictions counted); tickers
    keep merging partial deltas and a new snapshot replaces every field."""
    perp = BybitAdapter(Market.PERPETUAL)
    assert perp.amount_unit("BTC/USD:BTC") is AmountUnit.CONTRACTS
    assert perp.amount_unit("BTC/USDT:USDT") is AmountUnit.BASE
    assert perp.counters()["amount_units_evicted"] == 0
    for i in range(10_000):
        perp.amount_unit(f"C{i}/USDT:USDT")
    assert perp.counters()["amount_units_evicted"] == 2
    assert perp.amount_unit("BTC/USD:BTC") is AmountUnit.CONTRACTS  # recomputed after its eviction
    perp.exchange_symbol("BTC/USD:BTC")
    [a] = perp.decode(
        '{"topic":"tickers.BTCUSD","type":"snapshot","data":{"symbol":"BTCUSD","lastPrice":"5","bid1Price":"4",'
        '"bid1Size":"1","ask1Price":"6","ask1Size":"2"},"cs":1,"ts":1}',
        0,
    )
    [b] = perp.decode(
        '{"topic":"tickers.BTCUSD","type":"delta","data":{"symbol":"BTCUSD","ask1Size":"3"}}', 0
    )
    [c] = perp.decode(
        '{"topic":"tickers.BTCUSD","type":"snapshot","data":{"symbol":"BTCUSD","lastPrice":"7"},"cs":3}', 0
    )
    assert isinstance(a, Ticker) and isinstance(b, Ticker) and isinstance(c, Ticker)
    assert (b.bid_price, b.ask_size, b.last_price, b.amount_unit) == (
        Decimal(4), Decimal(3), Decimal(5), AmountUnit.CONTRACTS,
    )  # fmt: skip
    assert (c.bid_price, c.ask_size, c.last_price) == (None, None, Decimal(7))
