"""OKX adapter: the shipped recording, subscribe/ack/error/notice frames, symbols, malformed input."""

from __future__ import annotations

import json
from collections import Counter
from decimal import Decimal

import msgspec
import pytest

from cryptolink import recordings
from cryptolink.book.sync import BookSync
from cryptolink.exchanges.base import (
    Ack,
    BackfillCursor,
    BookMessage,
    DecodeError,
    Pong,
    Rejected,
    ServerNotice,
)
from cryptolink.exchanges.okx import OkxAdapter
from cryptolink.models import AmountUnit, BookUpdate, Channel, Market, Side, Subscription, Ticker, Trade


def test_every_recorded_frame_decodes_and_books_verify() -> None:
    ad = OkxAdapter()
    counts: Counter[str] = Counter()
    syncs: dict[str, BookSync] = {}
    for rec in recordings.iter_cryptofeed_ws("cryptofeed_okx_OKX.ws.1.0.gz"):
        if rec.kind != "received":
            continue
        for ev in ad.decode(rec.payload, int(rec.ts_s * 1e9)):
            counts[type(ev).__name__] += 1
            if isinstance(ev, BookMessage):
                sync = syncs.get(ev.exchange_symbol)
                if sync is None:
                    sync = syncs[ev.exchange_symbol] = BookSync(
                        ad.book_sync, "okx", ev.symbol, ev.exchange_symbol
                    )
                    sync.start()
                for a in sync.on_message(ev):
                    counts[type(a).__name__ + "Action"] += 1
    assert counts["BookMessage"] == 290
    assert counts["BookUpdateAction"] == 290  # every checksum verified, every update applied
    assert counts["NeedResubscribeAction"] == 0
    assert counts["Trade"] >= 74 and counts["Ticker"] == 28 and counts["Ack"] == 18
    assert {s.symbol for s in syncs.values()} == {"BTC/USD:BTC-220527", "UNI/USD:UNI", "BTC/USDT"}
    for sync in syncs.values():
        assert sync.stats().checksum_failures == 0 and sync.state.value == "live"


def test_corrupted_recorded_update_fails_checksum_and_resubscribes() -> None:
    ad = OkxAdapter()
    sync: BookSync | None = None
    corrupted = False
    for rec in recordings.iter_cryptofeed_ws("cryptofeed_okx_OKX.ws.1.0.gz"):
        if rec.kind != "received" or '"BTC-USDT"' not in rec.payload or '"books"' not in rec.payload:
            continue
        for ev in ad.decode(rec.payload, 0):
            if not isinstance(ev, BookMessage):
                continue
            if sync is None:
                sync = BookSync(ad.book_sync, "okx", ev.symbol, ev.exchange_symbol)
            if not ev.is_snapshot and ev.bids and not corrupted:
                ev.bids[0] = [ev.bids[0][0], ev.bids[0][1] + "1"]
                corrupted = True
                out = sync.on_message(ev)
                assert [type(a).__name__ for a in out] == ["NeedResubscribe"]
                assert sync.stats().checksum_failures == 1
                return
            sync.on_message(ev)
    pytest.fail("no BTC-USDT book update with bids in the recording")


def test_trades_tickers_books_fields() -> None:
    ad = OkxAdapter()
    ad.exchange_symbol("BTC/USDT")
    [t] = ad.decode(
        '{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","tradeId":"130639474",'
        '"px":"42219.9","sz":"0.12060306","side":"sell","ts":"1630048897897","count":"3","seqId":1234}]}',
        5,
    )
    assert isinstance(t, Trade)
    assert (t.exchange, t.symbol, t.exchange_symbol, t.side) == ("okx", "BTC/USDT", "BTC-USDT", Side.SELL)
    assert (t.price, t.amount, t.sequence, t.timestamp_ms) == (
        Decimal("42219.9"),
        Decimal("0.12060306"),
        130639474,
        1630048897897,
    )
    [k] = ad.decode(
        '{"arg":{"channel":"tickers","instId":"BTC-USDT"},"data":[{"instType":"SPOT","instId":"BTC-USDT",'
        '"last":"9999.99","lastSz":"0.1","askPx":"9999.99","askSz":"11","bidPx":"8888.88","bidSz":"5",'
        '"ts":"1597026383085"}]}',
        0,
    )
    assert isinstance(k, Ticker)
    assert (k.bid_price, k.ask_size, k.last_price) == (Decimal("8888.88"), Decimal(11), Decimal("9999.99"))
    [b] = ad.decode(
        '{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","data":[{"asks":[["8476.98","415",'
        '"0","13"]],"bids":[],"ts":"1597026383085","checksum":0,"prevSeqId":123,"seqId":124}]}',
        0,
    )
    assert isinstance(b, BookMessage)
    assert (b.is_snapshot, b.first_seq, b.last_seq, b.prev_seq, b.checksum) == (False, 124, 124, 123, None)
    [s] = ad.decode(
        '{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"snapshot","data":[{"asks":[],"bids":[],'
        '"ts":"1","checksum":0,"prevSeqId":-1,"seqId":7}]}',
        0,
    )
    assert isinstance(s, BookMessage) and s.is_snapshot and s.prev_seq == -1


def test_subscribe_acks_errors_notice_pong() -> None:
    ad = OkxAdapter(Market.PERPETUAL)
    subs = [
        Subscription(Channel.BOOK, "BTC/USDT:USDT", depth=400),
        Subscription(Channel.TRADES, "BTC/USD:BTC"),
    ]
    [req] = ad.subscribe_requests(subs, 41)
    assert json.loads(req.frame) == {
        "id": "41",
        "op": "subscribe",
        "args": [
            {"channel": "books", "instId": "BTC-USDT-SWAP"},
            {"channel": "trades", "instId": "BTC-USD-SWAP"},
        ],
    }
    assert req.request_id == 41
    [ack] = ad.decode(
        '{"id":"41","event":"subscribe","arg":{"channel":"books","instId":"BTC-USDT-SWAP"},"connId":"a"}', 0
    )
    assert ack == Ack("subscribe", 41, (subs[0],))  # maps back to the exact Subscription (depth kept)
    [uack] = ad.decode('{"event":"unsubscribe","arg":{"channel":"trades","instId":"BTC-USD-SWAP"}}', 0)
    assert uack == Ack("unsubscribe", None, (subs[1],))
    [rej] = ad.decode('{"id":"41","event":"error","code":"60012","msg":"Invalid request","connId":"a"}', 0)
    assert rej == Rejected(41, "60012", "Invalid request")  # the engine resolves id 41 on its own socket
    [n] = ad.decode(
        '{"event":"notice","code":"64008","msg":"The connection will soon be closed","connId":"a"}', 0
    )
    assert isinstance(n, ServerNotice) and n.rotate and n.code == "64008"
    assert ad.decode("pong", 0) == [Pong()] and ad.decode(b"pong", 0) == [Pong()]
    assert ad.decode('{"event":"channel-conn-count","channel":"books","connCount":"2"}', 0) == []


def test_requests_are_batched_under_64kb() -> None:
    ad = OkxAdapter()
    subs = [Subscription(Channel.TRADES, f"C{i:05d}/USDT") for i in range(3000)]
    reqs = ad.unsubscribe_requests(subs, 1)
    assert len(reqs) > 1
    assert [r.request_id for r in reqs] == list(range(1, len(reqs) + 1))
    for r in reqs:
        # the whole frame as sent (compact JSON) stays within the 64 KB bound on a request's args
        assert len(r.frame.encode()) <= 64 * 1024
        assert json.loads(r.frame)["op"] == "unsubscribe"
        assert [a["instId"] for a in json.loads(r.frame)["args"]] == [
            ad.exchange_symbol(s.symbol) for s in r.subscriptions
        ]
    # batches are filled up to the bound, not cut early
    assert all(len(r.frame.encode()) > 60 * 1024 for r in reqs[:-1])
    assert [s for r in reqs for s in r.subscriptions] == subs


def test_plan_connections_limits_books_per_connection() -> None:
    ad = OkxAdapter()
    subs = [Subscription(Channel.BOOK, f"C{i}/USDT") for i in range(70)] + [
        Subscription(Channel.TRADES, f"C{i}/USDT") for i in range(300)
    ]
    plan = ad.plan_connections(subs)
    for spec in plan:
        assert spec.url == "wss://ws.okx.com:8443/ws/v5/public"
        assert len(spec.subscriptions) <= ad.policy.max_streams_per_connection
        # OKX: "fewer than 30" 400-level book channels per connection
        assert sum(s.channel is Channel.BOOK for s in spec.subscriptions) <= 29
    assert max(sum(s.channel is Channel.BOOK for s in spec.subscriptions) for spec in plan) == 29
    assert sorted((s for spec in plan for s in spec.subscriptions), key=repr) == sorted(subs, key=repr)


def test_symbols() -> None:
    spot, perp = OkxAdapter(Market.SPOT), OkxAdapter(Market.PERPETUAL)
    assert spot.exchange_symbol("BTC/USDT") == "BTC-USDT"
    assert perp.exchange_symbol("BTC/USDT:USDT") == "BTC-USDT-SWAP"
    assert perp.exchange_symbol("BTC/USD:BTC") == "BTC-USD-SWAP"
    assert spot.unified_symbol("ETH-USDT") == "ETH/USDT"
    assert spot.unified_symbol("ETH-USDT-SWAP") == "ETH/USDT:USDT"
    assert spot.unified_symbol("BTC-USD-220527") == "BTC/USD:BTC-220527"
    for bad in ("BTC/USDT:USDT", "BTC-USDT"):
        with pytest.raises(ValueError):
            spot.exchange_symbol(bad)
    for bad in ("BTC/USDT", "BTC/USD:BTC-220527", "BTC/USDT:ETH"):
        with pytest.raises(ValueError):
            perp.exchange_symbol(bad)
    assert perp.policy.keepalive.app_ping_frame == "ping" and perp.policy.server_idle_close_s == 30.0
    assert perp.snapshot_request(Subscription(Channel.BOOK, "BTC/USDT:USDT")) is None


def test_rest_books_parse() -> None:
    ad = OkxAdapter()
    sub = Subscription(Channel.BOOK, "BTC/USDT")
    r = ad.rest_books_request(sub)
    assert r.path == "/api/v5/market/books" and r.params == {"instId": "BTC-USDT", "sz": "400"}
    m = ad.parse_snapshot(
        b'{"code":"0","msg":"","data":[{"asks":[["2","1","0","1"]],"bids":[],"ts":"5"}]}', sub, 0
    )
    assert m.is_snapshot and m.asks[0][:2] == ["2", "1"] and m.timestamp_ms == 5
    with pytest.raises(DecodeError):
        ad.parse_snapshot(b'{"code":"50011","msg":"Too Many Requests","data":[]}', sub, 0)


@pytest.mark.parametrize(
    "frame",
    [
        "ping?",
        "[]",
        '{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"px":"1"}]}',
        '{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","tradeId":"1","px":"1",'
        '"sz":"1","side":"up","ts":"1"}]}',
        '{"arg":{"channel":"books","instId":"BTC-USDT"},"data":[{"asks":[],"bids":[]}]}',
        '{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","data":[{"asks":"x","bids":[]}]}',
        '{"arg":{"channel":"tickers","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","ts":"1","last":"abc"}]}',
        '{"data":[]}',
    ],
)
def test_malformed_frames_raise_decode_error(frame: str) -> None:
    with pytest.raises(DecodeError):
        OkxAdapter().decode(frame, 0)


def test_unknown_channels_ignored() -> None:
    ad = OkxAdapter()
    assert ad.decode('{"arg":{"channel":"candle1m","instId":"BTC-USDT"},"data":[["1","2"]]}', 0) == []
    assert ad.decode('{"hello":1}', 0) == []


INSTRUMENTS = msgspec.json.encode(
    {
        "code": "0",
        "msg": "",
        "data": [
            {"instType": "SWAP", "instId": "BTC-USDT-SWAP", "ctVal": "0.01", "ctMult": "1", "ctValCcy": "BTC",
             "settleCcy": "USDT", "state": "live"},
            {"instType": "SWAP", "instId": "BTC-USD-SWAP", "ctVal": "100", "ctMult": "1", "ctValCcy": "USD",
             "settleCcy": "BTC", "state": "live"},
            {"instType": "SWAP", "instId": "UNI-USD-SWAP", "ctVal": "10", "ctMult": "1", "ctValCcy": "USD",
             "settleCcy": "UNI", "state": "suspend"},
            {"instType": "SPOT", "instId": "BTC-USDT", "baseCcy": "BTC", "quoteCcy": "USDT", "state": "live"},
        ],
    }
)  # fmt: skip


def test_instruments_give_unified_symbols_states_and_contract_sizes_carried_on_every_event() -> None:
    perp = OkxAdapter(Market.PERPETUAL, feed="okx-perp")
    assert perp.instruments_request().params == {"instType": "SWAP"}
    insts = {i.symbol: i for i in perp.parse_instruments(INSTRUMENTS)}
    assert set(insts) == {"BTC/USDT:USDT", "BTC/USD:BTC", "UNI/USD:UNI"}
    linear, inverse = insts["BTC/USDT:USDT"], insts["BTC/USD:BTC"]
    assert (linear.contract_size, linear.contract_currency, linear.amount_unit) == (
        Decimal("0.01"),
        "BTC",
        AmountUnit.CONTRACTS,
    )
    assert (inverse.contract_size, inverse.contract_currency) == (Decimal("100"), "USD")
    assert not insts["UNI/USD:UNI"].active and insts["UNI/USD:UNI"].status == "suspend"
    perp.set_instruments(insts.values())
    [t] = perp.decode(
        '{"arg":{"channel":"trades","instId":"BTC-USD-SWAP"},"data":[{"instId":"BTC-USD-SWAP","tradeId":"7",'
        '"px":"30000","sz":"3","side":"sell","ts":"5"}]}',
        0,
    )
    assert isinstance(t, Trade)
    assert (t.feed, t.amount_unit, t.contract_size, t.amount) == (
        "okx-perp",
        AmountUnit.CONTRACTS,
        Decimal("100"),
        Decimal(3),
    )
    spot = OkxAdapter(Market.SPOT)
    assert [i.symbol for i in spot.parse_instruments(INSTRUMENTS)] == ["BTC/USDT"]
    assert spot.amount_unit("BTC/USDT") is AmountUnit.BASE


def test_history_trades_backfill_pages_down_until_the_interval_start() -> None:
    ad = OkxAdapter(Market.SPOT, feed="okx")
    sub = Subscription(Channel.TRADES, "BTC/USDT")
    cursor = BackfillCursor(after_id=100, before_id=500)
    req = ad.backfill_request(sub, cursor)
    assert req is not None and req.path == "/api/v5/market/history-trades"
    assert req.params == {"instId": "BTC-USDT", "type": "1", "after": "500", "limit": "100"}
    body = msgspec.json.encode(
        {"code": "0", "msg": "", "data": [
            {"instId": "BTC-USDT", "side": "buy", "sz": "0.1", "px": "1.5", "tradeId": str(i), "ts": str(i)}
            for i in range(499, 399, -1)
        ]}
    )  # fmt: skip
    trades = ad.parse_trades(body, sub, 7)
    assert len(trades) == 100 and all(t.backfilled and t.feed == "okx" for t in trades)
    assert trades[0].sequence == 499 and trades[0].side is Side.BUY and trades[0].receipt_ns == 7
    cursor.pages, cursor.last_page_size, cursor.newest, cursor.oldest = 1, 100, 499, 400
    nxt = ad.backfill_request(sub, cursor)
    assert nxt is not None and nxt.params["after"] == "400"
    cursor.oldest = 99  # reached the last trade delivered before the interval
    assert ad.backfill_request(sub, cursor) is None
    cursor.oldest, cursor.last_page_size = 300, 12  # a short page: no more history
    assert ad.backfill_request(sub, cursor) is None
    with pytest.raises(DecodeError):
        ad.parse_trades(b'{"code":"50011","msg":"Too Many Requests","data":[]}', sub, 0)


def test_inverse_swaps_on_real_instruments_and_frames() -> None:
    """OKX inverse swaps (``BTC-USD-SWAP``: ``ctType`` inverse, ``ctVal`` in ``ctValCcy`` USD, settled in the
    base) from the shipped recording: the real SWAP instrument list gives ``BTC/USD:BTC`` 100 USD and
    ``UNI/USD:UNI`` 10 USD contracts next to the linear ``UNI/USDT:USDT`` 1 UNI contract, and the recorded
    ``UNI-USD-SWAP`` trades, ticker and book carry contracts with that size."""
    ad = OkxAdapter(Market.PERPETUAL, feed="okx-inverse")
    [swap_body] = [
        h.body for h in recordings.iter_cryptofeed_http("cryptofeed_okx_OKX.0.gz") if "instType=SWAP" in h.url
    ][:1]
    insts = {i.symbol: i for i in ad.parse_instruments(swap_body.encode())}
    btc, uni, uni_linear = insts["BTC/USD:BTC"], insts["UNI/USD:UNI"], insts["UNI/USDT:USDT"]
    assert (btc.exchange_symbol, btc.contract_size, btc.contract_currency) == (
        "BTC-USD-SWAP",
        Decimal(100),
        "USD",
    )
    assert (uni.exchange_symbol, uni.contract_size, uni.contract_currency) == (
        "UNI-USD-SWAP",
        Decimal(10),
        "USD",
    )
    assert (uni_linear.contract_size, uni_linear.contract_currency) == (Decimal(1), "UNI")
    assert {i.amount_unit for i in insts.values()} == {AmountUnit.CONTRACTS}
    inverse = [s for s in insts if s.split(":")[1] == s.split("/")[0]]
    assert len(inverse) > 10 and all(insts[s].contract_currency == "USD" for s in inverse)
    ad.set_instruments(insts.values())
    assert ad.exchange_symbol("UNI/USD:UNI") == "UNI-USD-SWAP"
    sub = Subscription(Channel.BOOK, "UNI/USD:UNI")
    sync = BookSync(
        ad.book_sync,
        ad.exchange,
        sub.symbol,
        "UNI-USD-SWAP",
        amount_unit=ad.amount_unit(sub.symbol),
        contract_size=ad.contract_sizes[sub.symbol],
    )
    kinds: Counter[str] = Counter()
    for rec in recordings.iter_cryptofeed_ws("cryptofeed_okx_OKX.ws.1.0.gz"):
        if rec.kind != "received" or '"UNI-USD-SWAP"' not in rec.payload:
            continue
        for ev in ad.decode(rec.payload, 0):
            kinds[type(ev).__name__] += 1
            if isinstance(ev, Trade | Ticker):
                assert (ev.symbol, ev.exchange_symbol, ev.feed) == (
                    "UNI/USD:UNI",
                    "UNI-USD-SWAP",
                    "okx-inverse",
                )
                assert (ev.amount_unit, ev.contract_size) == (AmountUnit.CONTRACTS, Decimal(10))
            elif isinstance(ev, BookMessage):
                for action in sync.on_message(ev):
                    if isinstance(action, BookUpdate):
                        kinds["BookUpdate"] += 1
                        assert (action.amount_unit, action.contract_size) == (
                            AmountUnit.CONTRACTS,
                            Decimal(10),
                        )
            elif isinstance(ev, Ack):
                assert ev.subscriptions[0].symbol == "UNI/USD:UNI"
    assert kinds["Trade"] >= 1 and kinds["Ticker"] >= 1 and kinds["BookMessage"] == 93 and kinds["Ack"] == 6
    assert kinds["BookUpdate"] > 50
    assert sync.state.value == "live" and sync.stats().gaps == 0 and sync.stats().checksum_failures == 0


def test_ids_int_refuses_never_escape_as_value_error() -> None:
    """``"²"`` passes ``str.isdigit`` but not ``int()``, and ``int()`` refuses 5000 digits: a trade or request id
    like that must give a counted DecodeError or a non-numeric id, never a bare ValueError."""
    ad = OkxAdapter(Market.SPOT)
    ad.requests("subscribe", [Subscription(Channel.TRADES, "BTC/USDT")], 1)
    trade = (
        '{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","tradeId":"%s",'
        '"px":"1","sz":"1","side":"buy","ts":"1"}]}'
    )
    for tid in ("²", "9" * 5000):
        [t] = ad.decode(trade % tid, 1)
        assert isinstance(t, Trade) and t.sequence is None
    [ack] = ad.decode('{"id":"²","event":"subscribe","arg":{"channel":"trades","instId":"BTC-USDT"}}', 1)
    assert isinstance(ack, Ack) and ack.request_id == "²"
    history = '{"code":"0","msg":"","data":[{"instId":"BTC-USDT","tradeId":"²","px":"1","sz":"1","side":"buy","ts":"1"}]}'
    with pytest.raises(DecodeError):
        ad.parse_trades(history.encode(), Subscription(Channel.TRADES, "BTC/USDT"), 1)
