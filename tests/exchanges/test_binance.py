"""Binance spot / USDⓈ-M adapters on the shipped recordings, plus frames, acks, errors and planning."""

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
    BookMessage,
    DecodeError,
    ExchangeAdapter,
    ExchangeError,
    Rejected,
    ServerNotice,
)
from cryptolink.exchanges.binance import BinanceSpotAdapter, BinanceUsdmAdapter
from cryptolink.models import Channel, Side, Subscription, Ticker, Trade

HFT_FILES = [
    ("hftbacktest_binance_spot_btcusdt_20240808.gz", BinanceSpotAdapter, "BTC/USDT"),
    ("hftbacktest_binance_spot_ethusdt_20240808.gz", BinanceSpotAdapter, "ETH/USDT"),
    ("hftbacktest_binance_usdm_btcusdt_20240808.gz", BinanceUsdmAdapter, "BTC/USDT:USDT"),
    ("hftbacktest_binance_usdm_ethusdt_20240808.gz", BinanceUsdmAdapter, "ETH/USDT:USDT"),
]


def _rebuild_hftbacktest(
    name: str, cls: type[BinanceSpotAdapter | BinanceUsdmAdapter], symbol: str
) -> tuple[BookSync, Counter[str], int, int]:
    """Decode every frame, sync the book with the embedded REST snapshot; compare bookTicker with the book."""
    ad = cls()
    sub = Subscription(Channel.BOOK, symbol)
    sync = BookSync(ad.book_sync, ad.exchange, symbol, ad.exchange_symbol(symbol))
    sync.start()
    counts: Counter[str] = Counter()
    compared = mismatched = 0
    last_ticker: Ticker | None = None

    def check(t: Ticker) -> None:
        nonlocal compared, mismatched
        if sync.book.state.value == "live" and sync.book.last_sequence == t.sequence:
            compared += 1
            if sync.book.best_bid() != (t.bid_price, t.bid_size) or sync.book.best_ask() != (
                t.ask_price,
                t.ask_size,
            ):
                mismatched += 1

    for ts, frame in recordings.iter_hftbacktest(name):
        if frame.startswith('{"lastUpdateId"'):
            actions = sync.on_snapshot(ad.parse_snapshot(frame.encode(), sub, ts))
        else:
            actions = []
            for ev in ad.decode(frame, ts):
                counts[type(ev).__name__] += 1
                if isinstance(ev, BookMessage):
                    actions.extend(sync.on_message(ev))
                    if last_ticker is not None:
                        check(last_ticker)
                elif isinstance(ev, Ticker):
                    last_ticker = ev
                    check(ev)
                elif isinstance(ev, Trade):
                    assert ev.symbol == symbol and ev.sequence is not None
        for a in actions:
            counts[type(a).__name__] += 1
    return sync, counts, compared, mismatched


@pytest.mark.parametrize(("name", "cls", "symbol"), HFT_FILES)
def test_hftbacktest_file_decodes_and_book_stays_in_sequence(
    name: str, cls: type[BinanceSpotAdapter | BinanceUsdmAdapter], symbol: str
) -> None:
    sync, counts, compared, mismatched = _rebuild_hftbacktest(name, cls, symbol)
    st = sync.stats()
    assert st.gaps == 0 and st.resyncs == 0
    assert sync.state.value == "live"
    assert counts["NeedSnapshot"] == 1 and counts["BookFailed"] == 0
    assert counts["Trade"] > 1000 and counts["Ticker"] > 1000
    assert counts["BookUpdate"] > 3000
    assert mismatched == 0
    if cls is BinanceUsdmAdapter:
        # USD-M bookTicker u equals the depth u it reflects: the rebuilt BBO must match exactly
        assert compared > 0


def _cryptofeed_rebuild(
    ws_name: str, http_name: str, cls: type[BinanceSpotAdapter | BinanceUsdmAdapter]
) -> dict[str, BookSync]:
    ad = cls()
    snaps: dict[str, recordings.HttpRecord] = {}
    for http_rec in recordings.iter_cryptofeed_http(http_name):
        ex = http_rec.url.split("symbol=")[1].split("&")[0]
        snaps[ex] = http_rec
    syncs: dict[str, BookSync] = {}
    pending = dict(snaps)
    for rec in recordings.iter_cryptofeed_ws(ws_name):
        if rec.kind != "received":
            continue
        # hand over each REST snapshot at the time it was received
        for ex, h in list(pending.items()):
            if h.ts_s <= rec.ts_s and ex in {s.exchange_symbol for s in syncs.values()}:
                sy = next(s for s in syncs.values() if s.exchange_symbol == ex)
                sub = Subscription(Channel.BOOK, sy.symbol)
                assert [type(a) for a in sy.on_snapshot(ad.parse_snapshot(h.body.encode(), sub, 0))]
                del pending[ex]
        for ev in ad.decode(rec.payload, int(rec.ts_s * 1e9)):
            if isinstance(ev, BookMessage):
                sync = syncs.get(ev.symbol)
                if sync is None:
                    sync = syncs[ev.symbol] = BookSync(
                        ad.book_sync, ad.exchange, ev.symbol, ev.exchange_symbol
                    )
                    sync.start()
                sync.on_message(ev)
    return syncs


@pytest.mark.parametrize(
    ("ws", "http", "cls", "symbols"),
    [
        (
            "cryptofeed_binance_BINANCE.ws.1.0.gz",
            "cryptofeed_binance_BINANCE.http.0.0.gz",
            BinanceSpotAdapter,
            {"NKN/USDT", "BLZ/ETH", "LRC/BTC", "RUNE/EUR"},
        ),
        (
            "cryptofeed_binance_BINANCE_FUTURES.ws.1.0.gz",
            "cryptofeed_binance_BINANCE_FUTURES.http.0.0.gz",
            BinanceUsdmAdapter,
            {"SUSHI/USDT:USDT", "AKRO/USDT:USDT", "KEEP/USDT:USDT", "CTK/USDT:USDT"},
        ),
    ],
)
def test_cryptofeed_recordings_sync_with_rest_snapshots(
    ws: str, http: str, cls: type[BinanceSpotAdapter | BinanceUsdmAdapter], symbols: set[str]
) -> None:
    syncs = _cryptofeed_rebuild(ws, http, cls)
    assert set(syncs) == symbols  # best-effort unify of unsubscribed ids
    live = 0
    for sync in syncs.values():
        st = sync.stats()
        assert st.gaps == 0 and st.resyncs == 0, (sync.symbol, st)
        if sync.state.value == "live":
            live += 1
            assert st.applied > 1
            bid, ask = sync.book.best_bid(), sync.book.best_ask()
            assert bid is not None and ask is not None and bid[0] < ask[0]
    assert live >= 3


def test_every_cryptofeed_binance_frame_decodes() -> None:
    for name, cls in (
        ("cryptofeed_binance_BINANCE.ws.1.0.gz", BinanceSpotAdapter),
        ("cryptofeed_binance_BINANCE_FUTURES.ws.1.0.gz", BinanceUsdmAdapter),
    ):
        ad = cls()
        kinds: Counter[str] = Counter()
        for rec in recordings.iter_cryptofeed_ws(name):
            if rec.kind == "received":
                out = ad.decode(rec.payload, 0)
                kinds[type(out[0]).__name__ if out else "none"] += 1
        assert kinds["BookMessage"] > 100 and kinds["Ticker"] > 50 and kinds["Trade"] >= 2
        assert kinds["none"] > 0  # kline_1m: well-formed, not handled


# ------------------------------------------------------------------------------------------------ frames
def test_spot_trade_and_taker_side() -> None:
    ad = BinanceSpotAdapter()
    ad.exchange_symbol("BTC/USDT")
    f = (
        '{"stream":"btcusdt@trade","data":{"e":"trade","E":1,"s":"BTCUSDT","t":42,"p":"61837.63000000",'
        '"q":"0.02000000","T":1723161255342,"m":true,"M":true}}'
    )
    [t] = ad.decode(f, 99)
    assert isinstance(t, Trade)
    assert (t.exchange, t.symbol, t.exchange_symbol) == ("binance", "BTC/USDT", "BTCUSDT")
    assert t.price == Decimal("61837.63000000") and t.amount == Decimal("0.02")
    assert t.side is Side.SELL and t.trade_id == "42" and t.sequence == 42
    assert t.timestamp_ms == 1723161255342 and t.receipt_ns == 99
    [t2] = ad.decode(f.replace('"m":true', '"m":false').encode(), 1)
    assert isinstance(t2, Trade) and t2.side is Side.BUY


def test_usdm_aggtrade_and_book_ticker() -> None:
    ad = BinanceUsdmAdapter()
    [t] = ad.decode(
        '{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":5,"s":"BTCUSDT","a":5933014,"p":"1.5",'
        '"q":"100","f":100,"l":105,"T":4,"m":false}}',
        0,
    )
    assert isinstance(t, Trade) and t.sequence == 5933014 and t.symbol == "BTC/USDT:USDT"
    [k] = ad.decode(
        '{"stream":"btcusdt@bookTicker","data":{"e":"bookTicker","u":7,"s":"BTCUSDT","b":"1","B":"2",'
        '"a":"3","A":"4","T":1,"E":2}}',
        0,
    )
    assert isinstance(k, Ticker)
    assert (k.bid_price, k.bid_size, k.ask_price, k.ask_size) == (
        Decimal(1),
        Decimal(2),
        Decimal(3),
        Decimal(4),
    )
    assert k.last_price is None and k.sequence == 7 and k.timestamp_ms == 2


def test_depth_message_fields() -> None:
    ad = BinanceUsdmAdapter()
    [m] = ad.decode(
        '{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":9,"T":8,"s":"BTCUSDT","U":157,"u":160,'
        '"pu":149,"b":[["0.0024","10"]],"a":[["0.0026","100"]]}}',
        3,
    )
    assert isinstance(m, BookMessage)
    assert (m.first_seq, m.last_seq, m.prev_seq, m.is_snapshot) == (157, 160, 149, False)
    assert m.bids == [["0.0024", "10"]] and m.timestamp_ms == 9 and m.checksum is None


def test_acks_errors_and_shutdown() -> None:
    """Binance acks and errors name only the request id: the adapter says so (op ``None``, no subscriptions)
    and the engine resolves them in the registry of the socket they came on (tests/engine)."""
    ad = BinanceSpotAdapter()
    reqs = ad.subscribe_requests([Subscription(Channel.BOOK, "BTC/USDT")], 7)
    unsub = ad.unsubscribe_requests([Subscription(Channel.BOOK, "BTC/USDT")], 8)
    assert ad.decode('{"result":null,"id":7}', 0) == [Ack(None, 7)]
    assert ad.decode('{"result":null,"id":8}', 0) == [Ack(None, 8)]
    [rej] = ad.decode('{"code":2,"msg":"Invalid request","id":7}', 0)
    assert rej == Rejected(7, "2", "Invalid request")
    assert ad.decode('{"code":3,"msg":"Invalid JSON"}', 0) == [ExchangeError("3", "Invalid JSON")]
    # the live servers nest the error (the docs' table writes it flat): both are a rejection of request 9
    nested = '{"error":{"code":2,"msg":"Invalid request: invalid stream"},"id":9}'
    assert ad.decode(nested, 0) == [Rejected(9, "2", "Invalid request: invalid stream")]
    assert ad.decode('{"error":{"code":3,"msg":"Invalid JSON"},"id":null}', 0) == [
        ExchangeError("3", "Invalid JSON")
    ]
    for f in (
        '{"e":"serverShutdown","E":1}',
        '{"stream":"!serverShutdown","data":{"e":"serverShutdown","E":1}}',
    ):
        [n] = ad.decode(f, 0)
        assert isinstance(n, ServerNotice) and n.rotate
    assert reqs[0].request_id == 7 and unsub[0].op == "unsubscribe"


def test_subscribe_frames_and_stream_names() -> None:
    spot = BinanceSpotAdapter()
    subs = [
        Subscription(Channel.TRADES, "BTC/USDT"),
        Subscription(Channel.TICKER, "BTC/USDT"),
        Subscription(Channel.BOOK, "ETH/USDT"),
    ]
    [req] = spot.subscribe_requests(subs, 1)
    assert json.loads(req.frame) == {
        "method": "SUBSCRIBE",
        "params": ["btcusdt@trade", "btcusdt@bookTicker", "ethusdt@depth@100ms"],
        "id": 1,
    }
    assert req.subscriptions == tuple(subs)
    usdm = BinanceUsdmAdapter()
    assert usdm.stream_name(Subscription(Channel.TRADES, "BTC/USDT:USDT")) == "btcusdt@aggTrade"
    many = [Subscription(Channel.TRADES, f"C{i}/USDT") for i in range(450)]
    reqs = spot.subscribe_requests(many, 10)
    assert [r.request_id for r in reqs] == [10, 11, 12]
    assert sum(len(r.subscriptions) for r in reqs) == 450


def test_plan_connections_routes_and_splits() -> None:
    usdm = BinanceUsdmAdapter(ws_base_url="ws://127.0.0.1:9999/")
    subs = [Subscription(ch, f"C{i}/USDT:USDT") for i in range(600) for ch in Channel]
    plan = usdm.plan_connections(subs + subs[:10])
    by_url: Counter[str] = Counter()
    for spec in plan:
        assert len(spec.subscriptions) <= 1024
        by_url[spec.url] += len(spec.subscriptions)
        if spec.route == "market":
            assert all(s.channel is Channel.TRADES for s in spec.subscriptions)
        else:
            assert spec.route == "public" and all(s.channel is not Channel.TRADES for s in spec.subscriptions)
    assert by_url == {"ws://127.0.0.1:9999/market/stream": 600, "ws://127.0.0.1:9999/public/stream": 1200}
    assert len(plan) == 3
    spot = BinanceSpotAdapter()
    [one] = spot.plan_connections([Subscription(Channel.BOOK, "BTC/USDT")])
    assert one.url == "wss://stream.binance.com:9443/stream"


def test_snapshot_request_and_parse() -> None:
    spot, usdm = BinanceSpotAdapter(), BinanceUsdmAdapter()
    r = spot.snapshot_request(Subscription(Channel.BOOK, "BTC/USDT"))
    assert (r.path, r.params, r.weight) == ("/api/v3/depth", {"symbol": "BTCUSDT", "limit": "1000"}, 50)
    r2 = usdm.snapshot_request(Subscription(Channel.BOOK, "BTC/USDT:USDT"))
    assert (r2.path, r2.weight) == ("/fapi/v1/depth", 20)
    sub = Subscription(Channel.BOOK, "BTC/USDT")
    m = spot.parse_snapshot(b'{"lastUpdateId":5,"bids":[["1","2"]],"asks":[]}', sub, 1)
    assert m.is_snapshot and m.first_seq == m.last_seq == 5 and m.prev_seq is None and m.bids == [["1", "2"]]
    with pytest.raises(DecodeError):
        spot.parse_snapshot(b'{"code":-1121,"msg":"Invalid symbol."}', sub, 1)


def test_symbols_and_market_validation() -> None:
    spot, usdm = BinanceSpotAdapter(), BinanceUsdmAdapter()
    assert spot.exchange_symbol("BTC/USDT") == "BTCUSDT"
    assert usdm.exchange_symbol("BTC/USDT:USDT") == "BTCUSDT"
    for bad_spot in ("BTC/USDT:USDT", "BTCUSDT", "/USDT"):
        with pytest.raises(ValueError):
            spot.exchange_symbol(bad_spot)
    for bad_perp in ("BTC/USDT", "BTC/USD:BTC", "BTC/USDT:USDT-240927"):
        with pytest.raises(ValueError):
            usdm.exchange_symbol(bad_perp)
    # the adapter's exchange is ccxt's id of its market (USDⓈ-M events say ``binanceusdm``)
    assert (spot.exchange, usdm.exchange) == ("binance", "binanceusdm")
    assert (spot.ccxt_id, usdm.ccxt_id) == (spot.exchange, usdm.exchange)


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        b"\xff\xfe",
        "[1,2]",
        '{"stream":"btcusdt@trade"}',
        '{"stream":"btcusdt@trade","data":{"p":"1"}}',
        '{"stream":"btcusdt@trade","data":{"p":"x","q":"1","m":true,"t":1}}',
        '{"stream":"btcusdt@depth@100ms","data":{"U":"a","u":1,"b":[],"a":[]}}',
        '{"stream":"btcusdt@bookTicker","data":{"b":"1"}}',
        '{"stream":"btcusdt@trade","data":{"p":"1","q":"1","m":true}}',
    ],
)
def test_malformed_frames_raise_decode_error(frame: str | bytes) -> None:
    ad: ExchangeAdapter = BinanceSpotAdapter()
    with pytest.raises(DecodeError):
        ad.decode(frame, 0)


@pytest.mark.parametrize(
    "frame",
    [
        '{"stream":"btcusdt@kline_1m","data":{"e":"kline","k":{}}}',
        '{"stream":"weird","data":{}}',
        '{"result":["btcusdt@trade"],"id":3}',
        '{"e":"somethingNew"}',
        "{}",
    ],
)
def test_unknown_but_well_formed_frames_are_ignored(frame: str) -> None:
    assert BinanceSpotAdapter().decode(frame, 0) == []


def test_decode_emits_events_that_encode_with_exact_decimals_and_the_feed_name() -> None:
    ad = BinanceSpotAdapter(feed="binance-main")
    [t] = ad.decode(
        '{"stream":"btcusdt@trade","data":{"s":"BTCUSDT","t":1,"p":"1.10","q":"2","T":3,"m":false}}', 0
    )
    encoded = msgspec.json.decode(msgspec.json.encode(t))
    assert encoded["price"] == "1.10" and encoded["amount"] == "2"
    assert (encoded["feed"], encoded["amount_unit"], encoded["contract_size"]) == (
        "binance-main",
        "base",
        None,
    )
    assert msgspec.json.decode(msgspec.json.encode(t), type=Trade) == t


def test_raw_book_ticker_payload_without_e_is_decoded() -> None:
    """The raw (non-combined) spot bookTicker payload has no ``"e"`` field (docs/protocols/binance.md)."""
    [tk] = BinanceSpotAdapter().decode(
        '{"u":400900217,"s":"BNBUSDT","b":"25.35190000","B":"31.21000000","a":"25.36520000","A":"40.66000000"}',
        5,
    )
    assert isinstance(tk, Ticker)
    assert (tk.symbol, tk.sequence, tk.bid_price, tk.ask_size) == (
        "BNB/USDT",
        400900217,
        Decimal("25.35190000"),
        Decimal("40.66000000"),
    )


def test_exchange_info_lists_this_market_only() -> None:
    body = msgspec.json.encode(
        {
            "symbols": [
                {"symbol": "BTCUSDT", "status": "TRADING", "baseAsset": "BTC", "quoteAsset": "USDT"},
                {"symbol": "LUNAUSDT", "status": "BREAK", "baseAsset": "LUNA", "quoteAsset": "USDT"},
            ]
        }
    )
    spot = BinanceSpotAdapter()
    assert (
        spot.instruments_request().path == "/api/v3/exchangeInfo" and spot.instruments_request().weight == 20
    )
    insts = {i.symbol: i for i in spot.parse_instruments(body)}
    assert insts["BTC/USDT"].active and insts["BTC/USDT"].exchange_symbol == "BTCUSDT"
    assert not insts["LUNA/USDT"].active and insts["LUNA/USDT"].status == "BREAK"
    usdm_body = msgspec.json.encode(
        {
            "symbols": [
                {"symbol": "BTCUSDT", "status": "TRADING", "baseAsset": "BTC", "quoteAsset": "USDT",
                 "contractType": "PERPETUAL", "marginAsset": "USDT"},
                {"symbol": "BTCUSDT_250627", "status": "TRADING", "baseAsset": "BTC", "quoteAsset": "USDT",
                 "contractType": "CURRENT_QUARTER", "marginAsset": "USDT"},
            ]
        }
    )  # fmt: skip
    usdm = BinanceUsdmAdapter()
    assert [i.symbol for i in usdm.parse_instruments(usdm_body)] == ["BTC/USDT:USDT"]
    with pytest.raises(DecodeError):
        spot.parse_instruments(b'{"code":-1121,"msg":"Invalid symbol."}')


def test_backfill_requests_walk_up_from_the_last_id_and_parse_both_shapes() -> None:
    from cryptolink.exchanges.base import BackfillCursor

    sub = Subscription(Channel.TRADES, "BTC/USDT")
    spot = BinanceSpotAdapter(feed="spot")
    cursor = BackfillCursor(after_id=1000, before_id=2600)
    req = spot.backfill_request(sub, cursor)
    assert req is not None and req.path == "/api/v3/historicalTrades" and req.weight == 25
    assert req.params == {"symbol": "BTCUSDT", "fromId": "1001", "limit": "1000"}
    cursor.newest, cursor.last_page_size = 2000, 1000
    req2 = spot.backfill_request(sub, cursor)
    assert req2 is not None and req2.params["fromId"] == "2001" and req2.params["limit"] == "599"
    cursor.newest = 2599
    assert spot.backfill_request(sub, cursor) is None
    [t] = spot.parse_trades(
        b'[{"id":1001,"price":"60000.10","qty":"0.5","quoteQty":"1","time":7,"isBuyerMaker":true,'
        b'"isBestMatch":true}]',
        sub,
        9,
    )
    assert (t.sequence, t.side, t.price, t.backfilled, t.feed) == (
        1001,
        Side.SELL,
        Decimal("60000.10"),
        True,
        "spot",
    )
    perp = BinanceUsdmAdapter()
    psub = Subscription(Channel.TRADES, "BTC/USDT:USDT")
    preq = perp.backfill_request(psub, BackfillCursor(after_id=5, before_id=9))
    assert preq is not None and preq.path == "/fapi/v1/aggTrades" and preq.params["limit"] == "3"
    [a] = perp.parse_trades(b'[{"a":6,"p":"1.5","q":"2","f":10,"l":12,"T":3,"m":false}]', psub, 1)
    assert (a.sequence, a.side, a.symbol, a.backfilled) == (6, Side.BUY, "BTC/USDT:USDT", True)
