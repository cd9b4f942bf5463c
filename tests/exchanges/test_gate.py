"""Gate adapters: the shipped recordings (spot 2021, USDT futures 2023), requests, answers, symbols, REST parsers,
malformed input.

Recordings: ``cryptofeed_gate_*`` (bmoscon/cryptofeed sample data, see ``LICENSE.cryptofeed``); the spot REST body
in ``fixtures/gate_gocryptotrader_http.json`` is thrasher-corp/gocryptotrader test data (MIT,
``fixtures/gate_gocryptotrader_LICENSE``).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path

import pytest

from cryptolink import recordings
from cryptolink.book.sync import BookSync, NeedResubscribe, NeedSnapshot
from cryptolink.exchanges import get_adapter
from cryptolink.exchanges.base import (
    Ack,
    BackfillCursor,
    BookMessage,
    BookSyncSpec,
    DecodeError,
    ExchangeError,
    Pong,
    Rejected,
    SequenceModel,
    SnapshotSource,
)
from cryptolink.exchanges.gate import GateFuturesAdapter, GateSpotAdapter
from cryptolink.models import AmountUnit, BookUpdate, Channel, Market, Side, Subscription, Ticker, Trade

SPOT_WS = "cryptofeed_gate_GATEIO.ws.1.0.gz"
SPOT_HTTP = "cryptofeed_gate_GATEIO.http.0.0.gz"
FUT_WS = "cryptofeed_gate_GATEIO_FUTURES.ws.1.0.gz"
FUT_HTTP = "cryptofeed_gate_GATEIO_FUTURES.http.0.0.gz"
FIXTURES = Path(__file__).parent / "fixtures"
NOW_MS = 1_700_000_000_123


def _received(name: str) -> list[tuple[float, str]]:
    return [(r.ts_s, r.payload) for r in recordings.iter_cryptofeed_ws(name) if r.kind == "received"]


def _snapshots(name: str, key: str) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for r in recordings.iter_cryptofeed_http(name):
        native = r.url.split(f"{key}=")[1].split("&")[0]
        out[native] = r.body.encode()
    return out


# ------------------------------------------------------------------------------------------------ recordings
def test_every_futures_frame_decodes() -> None:
    """The 2023 USDT futures recording is the current API: every frame decodes, none is unknown except the
    candlestick push we do not subscribe to."""
    ad = GateFuturesAdapter()
    counts: Counter[str] = Counter()
    for _, payload in _received(FUT_WS):
        out = ad.decode(payload, 1)
        counts[type(out[0]).__name__ if out else "ignored"] += len(out) or 1
    assert counts == Counter({"BookMessage": 352, "Ticker": 75, "Ack": 22, "ignored": 1})


def test_every_spot_frame_decodes_and_older_version_frames_are_counted() -> None:
    """The 2021 spot recording predates ``spot.obu`` and ``spot.book_ticker``: its ``spot.order_book_update``
    (172) and ``spot.tickers`` (22) frames are the older API; they still decode. Trades and acks are current."""
    ad = GateSpotAdapter()
    current: Counter[str] = Counter()
    older: Counter[str] = Counter()
    ignored = 0
    for _, payload in _received(SPOT_WS):
        obj = json.loads(payload)
        channel = obj["channel"] if obj["event"] == "update" else ""
        out = ad.decode(payload, 1)
        if not out:
            ignored += 1
            continue
        target = older if channel in ("spot.order_book_update", "spot.tickers") else current
        for ev in out:
            target[type(ev).__name__] += 1
    assert older == Counter({"BookMessage": 172, "Ticker": 22})
    assert current == Counter({"Ack": 22, "Trade": 9})
    assert ignored == 14  # spot.candlesticks updates


def _rebuild(
    ad: GateSpotAdapter | GateFuturesAdapter, spec: BookSyncSpec, ws: str, snaps: dict[str, bytes]
) -> dict[str, BookSync]:
    syncs: dict[str, BookSync] = {}
    for ts, payload in _received(ws):
        for ev in ad.decode(payload, int(ts * 1e9)):
            if not isinstance(ev, BookMessage):
                continue
            sync = syncs.get(ev.exchange_symbol)
            if sync is None:
                sync = syncs[ev.exchange_symbol] = BookSync(spec, "gate", ev.symbol, ev.exchange_symbol)
                sync.start()
            for action in sync.on_message(ev):
                if isinstance(action, NeedSnapshot):
                    sub = Subscription(Channel.BOOK, ev.symbol)
                    snap = ad.parse_snapshot(snaps[ev.exchange_symbol], sub, 0)
                    sync.on_snapshot(snap)
    return syncs


def test_futures_books_rebuild_from_the_recording_with_every_check_passing() -> None:
    """``futures.order_book_update`` stitched to the recorded ``with_id`` REST snapshots with the adapter's own
    spec (CONTIGUOUS, bridge offset 1): every book goes live, no gap, no resync, and every delta after the
    snapshot is applied."""
    ad = GateFuturesAdapter()
    syncs = _rebuild(ad, ad.book_sync, FUT_WS, _snapshots(FUT_HTTP, "contract"))
    assert len(syncs) == 10
    snap_ids = {k: json.loads(v)["id"] for k, v in _snapshots(FUT_HTTP, "contract").items()}
    newer: Counter[str] = Counter()
    for _, payload in _received(FUT_WS):
        obj = json.loads(payload)
        if obj["channel"] == "futures.order_book_update" and obj["event"] == "update":
            newer[obj["result"]["s"]] += obj["result"]["u"] > snap_ids[obj["result"]["s"]]
    for native, sync in syncs.items():
        st = sync.stats()
        assert st.state.value == "live", native
        assert (st.gaps, st.resyncs) == (0, 0), native
        assert st.applied == 1 + newer[native], native  # the snapshot, then every delta newer than it
    assert sum(newer.values()) == 316
    rdnt = syncs["RDNT_USDT"].book
    assert rdnt.last_sequence is not None and rdnt.last_sequence > 203083287


def test_futures_bridge_offset_is_one_on_the_recording() -> None:
    """With offset 0 the first applied delta would end AT the snapshot id (already in the snapshot); the recorded
    data bridges ``U <= id + 1 <= u`` for every contract that had a delta after its snapshot."""
    ad = GateFuturesAdapter()
    snaps = {k: json.loads(v)["id"] for k, v in _snapshots(FUT_HTTP, "contract").items()}
    deltas: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for _, payload in _received(FUT_WS):
        for ev in ad.decode(payload, 0):
            if isinstance(ev, BookMessage):
                deltas[ev.exchange_symbol].append((ev.first_seq, ev.last_seq))
    bridged = [c for c, sid in snaps.items() if any(a <= sid + 1 <= b for a, b in deltas[c])]
    assert len(bridged) == 9  # DIA_USDT had no delta after its snapshot


def test_legacy_spot_books_rebuild_with_a_rest_snapshot() -> None:
    """The 2021 ``spot.order_book_update`` frames stitched to the recorded ``/spot/order_book?with_id=true``
    snapshots (REST source, CONTIGUOUS, offset 1) pass every sequence check."""
    ad = GateSpotAdapter()
    spec = BookSyncSpec(source=SnapshotSource.REST, sequence=SequenceModel.CONTIGUOUS, bridge_offset=1)
    syncs = _rebuild(ad, spec, SPOT_WS, _snapshots(SPOT_HTTP, "currency_pair"))
    assert len(syncs) == 10
    for sync in syncs.values():
        st = sync.stats()
        assert st.state.value == "live" and st.gaps == 0 and st.resyncs == 0, sync.symbol
    assert sum(s.stats().applied for s in syncs.values()) == 169  # 10 snapshots + 159 deltas applied


# ------------------------------------------------------------------------------------------------ requests
def test_requests_one_per_subscription_with_the_wall_time() -> None:
    ad = GateSpotAdapter()
    subs = [
        Subscription(Channel.TRADES, "BTC/USDT"),
        Subscription(Channel.BOOK, "BTC/USDT"),
        Subscription(Channel.BOOK, "ETH/USDT", depth=50),
        Subscription(Channel.TICKER, "ETH/USDT"),
    ]
    reqs = ad.subscribe_requests(subs, 7, NOW_MS)
    assert [json.loads(r.frame) for r in reqs] == [
        {"time": 1_700_000_000, "id": 7, "channel": "spot.trades", "event": "subscribe", "payload": ["BTC_USDT"]},
        {"time": 1_700_000_000, "id": 8, "channel": "spot.obu", "event": "subscribe",
         "payload": ["ob.BTC_USDT.400"]},
        {"time": 1_700_000_000, "id": 9, "channel": "spot.obu", "event": "subscribe",
         "payload": ["ob.ETH_USDT.50"]},
        {"time": 1_700_000_000, "id": 10, "channel": "spot.book_ticker", "event": "subscribe",
         "payload": ["ETH_USDT"]},
    ]  # fmt: skip
    assert [r.request_id for r in reqs] == [7, 8, 9, 10]
    assert [r.subscriptions for r in reqs] == [(s,) for s in subs]
    [un] = ad.unsubscribe_requests([subs[0]], 11, NOW_MS)
    assert json.loads(un.frame)["event"] == "unsubscribe" and un.op == "unsubscribe"
    with pytest.raises(ValueError, match="now_ms"):
        ad.subscribe_requests(subs, 1)


def test_futures_requests_and_urls() -> None:
    ad = GateFuturesAdapter()
    book = Subscription(Channel.BOOK, "BTC/USDT:USDT")
    [req] = ad.subscribe_requests([book], 1, NOW_MS)
    assert json.loads(req.frame)["payload"] == ["BTC_USDT", "100ms", "100"]
    assert json.loads(req.frame)["channel"] == "futures.order_book_update"
    assert ad.connection_url("") == "wss://fx-ws.gateio.ws/v4/ws/usdt"
    assert GateSpotAdapter().connection_url("") == "wss://api.gateio.ws/ws/v4/"
    local = GateFuturesAdapter(ws_base_url="ws://127.0.0.1:9", rest_base_url="http://127.0.0.1:9")
    assert local.connection_url("") == "ws://127.0.0.1:9/v4/ws/usdt"
    snap = local.snapshot_request(book)
    assert (snap.path, snap.params) == (
        "/api/v4/futures/usdt/order_book",
        {"contract": "BTC_USDT", "limit": "100", "with_id": "true"},
    )
    assert ad.policy.max_subscriptions_per_request == 1


def test_symbols_and_registry() -> None:
    spot, fut = GateSpotAdapter(), GateFuturesAdapter()
    assert spot.exchange_symbol("BTC/USDT") == "BTC_USDT"
    assert fut.exchange_symbol("ETH/USDT:USDT") == "ETH_USDT"
    for bad in ("BTC/USDT:USDT", "nonsense"):
        with pytest.raises(ValueError):
            spot.exchange_symbol(bad)
    for bad in ("BTC/USDT", "BTC/USD:BTC", "BTC/USDC:USDC"):
        with pytest.raises(ValueError):
            fut.exchange_symbol(bad)
    assert spot.unified_symbol("SOL_BTC") == "SOL/BTC" and fut.unified_symbol("SOL_USDT") == "SOL/USDT:USDT"
    assert isinstance(get_adapter("gate", "spot"), GateSpotAdapter)
    assert type(get_adapter("gateio", Market.PERPETUAL)) is GateFuturesAdapter
    assert (
        fut.amount_unit("BTC/USDT:USDT") is AmountUnit.CONTRACTS
        and spot.amount_unit("X/Y") is AmountUnit.BASE
    )


# ------------------------------------------------------------------------------------------------ answers
def test_acks_rejections_pongs_and_errors() -> None:
    ad = GateSpotAdapter()
    sub = Subscription(Channel.BOOK, "BTC/USDT")
    ad.subscribe_requests([sub], 3, NOW_MS)
    ack = ad.decode(
        '{"time":1748572394,"time_ms":1748572394271,"id":3,"conn_id":"b61f","trace_id":"d2e2","channel":"spot.obu",'
        '"event":"subscribe","payload":["ob.BTC_USDT.400"],"result":{"status":"success"}}',
        0,
    )
    assert ack == [Ack("subscribe", 3, (sub,))]
    rej = ad.decode(
        '{"time":1,"id":3,"channel":"spot.obu","event":"subscribe","payload":["ob.BTC_USDT.400"],'
        '"error":{"code":3,"message":"service error"},"result":{"status":"fail"}}',
        0,
    )
    assert rej == [Rejected(3, "3", "service error", (sub,))]
    # the older shape: error object, result null, no payload: resolved by the engine from the id
    old = ad.decode(
        '{"time":1,"id":4,"channel":"spot.trades","event":"subscribe",'
        '"error":{"code":2,"message":"unknown currency pair GIBBERISH_USD"},"result":null}',
        0,
    )
    assert old == [Rejected(4, "2", "unknown currency pair GIBBERISH_USD", ())]
    # 2023 acks carry no id and no payload
    assert ad.decode(
        '{"time":1,"channel":"spot.trades","event":"unsubscribe","result":{"status":"success"}}', 0
    ) == [Ack("unsubscribe", None, ())]
    assert ad.decode(
        '{"time":1,"time_ms":2,"channel":"spot.pong","event":"","error":null,"result":null}', 0
    ) == [Pong()]
    assert ad.decode(
        '{"time":1,"channel":"spot.trades","event":"update","error":{"code":3,"message":"x"}}', 0
    ) == [ExchangeError("3", "x")]
    assert ad.decode('{"time":1,"channel":"spot.candlesticks","event":"update","result":{"t":"1"}}', 0) == []


def test_alert_sub_for_a_stream_we_asked_for_is_an_ack() -> None:
    """The engine resends a subscribe once after an ack timeout; if the first copy did arrive, Gate answers the
    second with ``Alert sub <stream>``: the stream is live, so that is an Ack, not a Rejected."""
    ad = GateSpotAdapter()
    sub = Subscription(Channel.BOOK, "BTC/USDT")
    ad.subscribe_requests([sub], 5, NOW_MS)
    resent = ad.decode(
        '{"time":1,"id":6,"channel":"spot.obu","event":"subscribe","payload":["ob.BTC_USDT.400"],'
        '"error":{"code":2,"message":"Alert sub ob.BTC_USDT.400"},"result":{"status":"fail"}}',
        0,
    )
    assert resent == [Ack("subscribe", 6, (sub,))]
    # no payload echoed: the stream named in the message maps back to our subscription
    bare = ad.decode(
        '{"time":1,"id":7,"channel":"spot.obu","event":"subscribe",'
        '"error":{"code":2,"message":"Alert sub ob.BTC_USDT.400"},"result":null}',
        0,
    )
    assert bare == [Ack("subscribe", 7, (sub,))]
    # a stream we never asked for stays a rejection
    other = ad.decode(
        '{"time":1,"id":8,"channel":"spot.obu","event":"subscribe","payload":["ob.ETH_USDT.50"],'
        '"error":{"code":2,"message":"Alert sub ob.ETH_USDT.50"},"result":{"status":"fail"}}',
        0,
    )
    assert other == [Rejected(8, "2", "Alert sub ob.ETH_USDT.50", ())]


@pytest.mark.parametrize("op", ["subscribe", "unsubscribe"])
def test_answer_with_null_result_and_no_error_is_an_ack(op: str) -> None:
    ad = GateFuturesAdapter()
    sub = Subscription(Channel.TRADES, "BTC/USDT:USDT")
    ad.subscribe_requests([sub], 1, NOW_MS)
    frame = (
        f'{{"time":1,"id":9,"channel":"futures.trades","event":"{op}","payload":["BTC_USDT"],'
        '"error":null,"result":null}'
    )
    assert ad.decode(frame, 0) == [Ack(op, 9, (sub,))]  # type: ignore[arg-type]


def test_keepalive_is_protocol_pings_both_ways_and_no_app_ping() -> None:
    """Both Gate markets document server protocol pings; the ``*.ping`` frame carries a ``time``, so no static
    app ping is declared (the engine's protocol pings measure the round trip)."""
    for ad in (GateSpotAdapter(), GateFuturesAdapter()):
        ka = ad.policy.keepalive
        assert (ka.server_pings, ka.protocol_ping_interval_s, ka.app_ping_frame) == (True, 10.0, None)
        assert not hasattr(ad, "ping_frame")


def test_trades_tickers_and_obu_fields() -> None:
    ad = GateSpotAdapter()
    [t] = ad.decode(
        '{"time":1606292218,"time_ms":1606292218231,"channel":"spot.trades","event":"update","result":'
        '{"id":309143071,"create_time":1606292218,"create_time_ms":"1606292218213.4578","side":"sell",'
        '"currency_pair":"GT_USDT","amount":"16.47","price":"0.4705","range":"2390902-2390902"}}',
        5,
    )
    assert isinstance(t, Trade)
    assert (t.symbol, t.exchange_symbol, t.side, t.sequence, t.trade_id, t.timestamp_ms) == (
        "GT/USDT", "GT_USDT", Side.SELL, 309143071, "309143071", 1606292218213,
    )  # fmt: skip
    assert (t.price, t.amount, t.receipt_ns) == (Decimal("0.4705"), Decimal("16.47"), 5)
    [k] = ad.decode(
        '{"time":1,"channel":"spot.book_ticker","event":"update","result":{"t":1606293275123,"u":48733182,'
        '"s":"BTC_USDT","b":"19177.79","B":"0.0003341504","a":"19179.38","A":"0.09"}}',
        0,
    )
    assert isinstance(k, Ticker)
    assert (k.bid_price, k.bid_size, k.ask_price, k.sequence, k.last_price) == (
        Decimal("19177.79"), Decimal("0.0003341504"), Decimal("19179.38"), 48733182, None,
    )  # fmt: skip
    [full] = ad.decode(
        '{"channel":"spot.obu","result":{"t":1748572394325,"full":true,"s":"ob.BTC_USDT.50","u":28606981,'
        '"b":[["105958.9","0.00908"]],"a":[["105960","1"]]},"time_ms":1748572394325}',
        0,
    )
    assert isinstance(full, BookMessage)
    assert (full.is_snapshot, full.first_seq, full.last_seq, full.prev_seq, full.symbol) == (
        True, 28606981, 28606981, -1, "BTC/USDT",
    )  # fmt: skip
    [inc] = ad.decode(
        '{"channel":"spot.obu","result":{"t":1748572394425,"s":"ob.BTC_USDT.50","U":28606982,"u":28606990,'
        '"b":[],"a":[["105960","0"]]},"time_ms":1748572394425}',
        0,
    )
    assert isinstance(inc, BookMessage)
    assert (inc.is_snapshot, inc.first_seq, inc.last_seq, inc.prev_seq) == (
        False,
        28606982,
        28606990,
        28606981,
    )


def test_obu_chain_gap_resubscribes() -> None:
    ad = GateSpotAdapter()
    sync = BookSync(ad.book_sync, "gate", "BTC/USDT", "BTC_USDT")
    sync.start()

    def frame(body: str) -> BookMessage:
        [m] = ad.decode('{"channel":"spot.obu","result":' + body + "}", 0)
        assert isinstance(m, BookMessage)
        return m

    out = sync.on_message(frame('{"full":true,"s":"ob.BTC_USDT.400","u":10,"b":[["1","1"]],"a":[["2","1"]]}'))
    assert isinstance(out[0], BookUpdate) and out[0].is_snapshot
    out = sync.on_message(frame('{"s":"ob.BTC_USDT.400","U":11,"u":15,"b":[["1","2"]],"a":[]}'))
    assert isinstance(out[0], BookUpdate) and out[0].sequence == 15
    out = sync.on_message(frame('{"s":"ob.BTC_USDT.400","U":17,"u":18,"b":[],"a":[["2","0"]]}'))
    assert [type(a) for a in out] == [NeedResubscribe] and sync.stats().gaps == 1


def test_futures_trades_side_from_size_sign_and_levels_in_contracts() -> None:
    ad = GateFuturesAdapter()
    ad.set_instruments(ad.parse_instruments(_body("cryptofeed_gate_GATEIO_FUTURES.0.gz", "/contracts")))
    trades = ad.decode(
        '{"channel":"futures.trades","event":"update","time":1,"result":[{"size":-108,"id":27753479,'
        '"create_time":1545136464,"create_time_ms":1545136464123,"price":"96.4","contract":"RDNT_USDT"},'
        '{"size":3,"id":27753480,"create_time":1545136465,"price":"96.5","contract":"RDNT_USDT"}]}',
        0,
    )
    assert [(t.side, t.amount, t.sequence, t.timestamp_ms) for t in trades if isinstance(t, Trade)] == [
        (Side.SELL, Decimal(108), 27753479, 1545136464123),
        (Side.BUY, Decimal(3), 27753480, 1545136465000),
    ]
    assert all(isinstance(t, Trade) and t.contract_size == Decimal(1) for t in trades)
    assert all(isinstance(t, Trade) and t.amount_unit is AmountUnit.CONTRACTS for t in trades)
    [b] = ad.decode(
        '{"time":1,"time_ms":1684930165254,"channel":"futures.order_book_update","event":"update","result":'
        '{"U":203083177,"a":[{"p":"0.2983","s":0}],"b":[{"p":"0.29","s":12}],"s":"RDNT_USDT","t":1684930165217,'
        '"u":203083179}}',
        0,
    )
    assert isinstance(b, BookMessage)
    assert (b.asks, b.bids, b.first_seq, b.last_seq, b.prev_seq) == (
        [["0.2983", "0"]], [["0.29", "12"]], 203083177, 203083179, None,
    )  # fmt: skip


# ------------------------------------------------------------------------------------------------ REST
def _body(name: str, marker: str) -> bytes:
    return next(r.body for r in recordings.iter_cryptofeed_http(name) if marker in r.url).encode()


def test_instruments() -> None:
    spot = GateSpotAdapter().parse_instruments(_body("cryptofeed_gate_GATEIO.0.gz", "currency_pairs"))
    by = {i.exchange_symbol: i for i in spot}
    assert by["HAI_ETH"].symbol == "HAI/ETH" and by["HAI_ETH"].active and by["HAI_ETH"].contract_size is None
    fut = GateFuturesAdapter().parse_instruments(_body("cryptofeed_gate_GATEIO_FUTURES.0.gz", "/contracts"))
    fby = {i.exchange_symbol: i for i in fut}
    rdnt = fby["RDNT_USDT"]
    assert (rdnt.symbol, rdnt.active, rdnt.amount_unit, rdnt.contract_size, rdnt.contract_currency) == (
        "RDNT/USDT:USDT", True, AmountUnit.CONTRACTS, Decimal(1), "RDNT",
    )  # fmt: skip
    assert fby["BTC_USDT"].contract_size == Decimal("0.0001")
    delisting = GateFuturesAdapter().parse_instruments(
        b'[{"name":"X_USDT","quanto_multiplier":"1","in_delisting":true}]'
    )
    assert not delisting[0].active
    with pytest.raises(DecodeError):
        GateSpotAdapter().parse_instruments(b'{"label":"X","message":"y"}')


def test_snapshots() -> None:
    routes = json.loads((FIXTURES / "gate_gocryptotrader_http.json").read_text())["routes"]
    body = json.dumps(routes["/api/v4/spot/order_book"]["GET"][0]["data"]).encode()
    snap = GateSpotAdapter().parse_snapshot(body, Subscription(Channel.BOOK, "BTC/USDT"), 9)
    assert (snap.is_snapshot, snap.last_seq, snap.timestamp_ms, snap.bids[0]) == (
        True, 27596272445, 1759104757920, ["112095.8", "2.255276"],
    )  # fmt: skip
    fsnap = GateFuturesAdapter().parse_snapshot(
        _snapshots(FUT_HTTP, "contract")["RDNT_USDT"], Subscription(Channel.BOOK, "RDNT/USDT:USDT"), 0
    )
    assert (fsnap.last_seq, fsnap.asks[0], fsnap.timestamp_ms) == (
        203083287,
        ["0.2974", "803"],
        1684930166384,
    )
    for bad in (b'{"label":"INVALID_CURRENCY_PAIR","message":"x"}', b"[]", b"not json"):
        with pytest.raises(DecodeError):
            GateSpotAdapter().parse_snapshot(bad, Subscription(Channel.BOOK, "BTC/USDT"), 0)


def test_backfill_pages_back_from_the_first_trade_after_the_interruption() -> None:
    ad = GateSpotAdapter()
    sub = Subscription(Channel.TRADES, "BTC/USDT")
    cursor = BackfillCursor(after_id=100, before_id=5000)
    req = ad.backfill_request(sub, cursor)
    assert req is not None
    assert (req.path, req.params) == (
        "/api/v4/spot/trades",
        {"currency_pair": "BTC_USDT", "last_id": "5000", "reverse": "true", "limit": "1000"},
    )
    cursor.oldest, cursor.newest, cursor.last_page_size = 4000, 4999, 1000
    nxt = ad.backfill_request(sub, cursor)
    assert nxt is not None and nxt.params["last_id"] == "4000"
    cursor.oldest = 99
    assert ad.backfill_request(sub, cursor) is None
    assert ad.backfill_request(sub, BackfillCursor(100, 5000, 1, 4999, 4500, 500)) is None  # short page
    page = ad.parse_trades(
        b'[{"id":"4999","create_time":"1","create_time_ms":"1606292218213.45","currency_pair":"BTC_USDT",'
        b'"side":"buy","amount":"0.5","price":"100"}]',
        sub,
        7,
    )
    assert [(t.sequence, t.side, t.backfilled, t.timestamp_ms) for t in page] == [
        (4999, Side.BUY, True, 1606292218213)
    ]
    assert GateFuturesAdapter.trade_backfill is False and GateSpotAdapter.trade_backfill is True
    with pytest.raises(DecodeError):
        ad.parse_trades(b'[{"id":"x","side":"buy","amount":"1","price":"1"}]', sub, 0)


# ------------------------------------------------------------------------------------------------ malformed
@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        "[1,2]",
        '{"channel":"spot.trades","event":"update","result":{"id":"x"}}',
        '{"channel":"spot.trades","event":"update","result":{"id":1,"side":"up","currency_pair":"A_B",'
        '"amount":"1","price":"1"}}',
        '{"channel":"spot.obu","result":{"s":"BTC_USDT","u":1}}',
        '{"channel":"spot.obu","result":{"s":"ob.BTC_USDT.400","u":5,"b":[],"a":[]}}',
        '{"channel":"spot.book_ticker","event":"update","result":{"s":"A_B","b":"x1"}}',
        '{"channel":"spot.trades","event":"subscribe","result":{"status":5}}',
    ],
)
def test_malformed_frames_raise_decode_error(frame: str) -> None:
    with pytest.raises(DecodeError):
        GateSpotAdapter().decode(frame, 0)


@pytest.mark.parametrize(
    "frame",
    [
        '{"channel":"futures.trades","event":"update","result":{"id":1}}',
        '{"channel":"futures.trades","event":"update","result":[{"id":1,"size":0,"price":"1","contract":"A_B"}]}',
        '{"channel":"futures.order_book_update","event":"update","result":{"s":"A_B","U":1,"u":2,"b":[["1","2"]]}}',
    ],
)
def test_malformed_futures_frames_raise_decode_error(frame: str) -> None:
    with pytest.raises(DecodeError):
        GateFuturesAdapter().decode(frame, 0)


def test_non_ascii_digit_ids_never_escape_as_value_error() -> None:
    """``"²"`` passes ``str.isdigit`` but not ``int()``: an echoed request id becomes a non-numeric id, a REST trade
    id or a time of that kind a counted DecodeError, never a bare ValueError."""
    ad = GateSpotAdapter()
    [ack] = ad.decode(
        '{"time":1,"id":"²","channel":"spot.trades","event":"subscribe","payload":["BTC_USDT"],'
        '"result":{"status":"success"}}',
        1,
    )
    assert type(ack) is Ack and ack.request_id == "²"
    bad = (
        '[{"id":"²","create_time_ms":"1.5","currency_pair":"BTC_USDT","side":"buy","amount":"1","price":"1"}]'
    )
    with pytest.raises(DecodeError):
        ad.parse_trades(bad.encode(), Subscription(Channel.TRADES, "BTC/USDT"), 1)
    trade = (
        '{"channel":"spot.trades","event":"update","result":{"id":5,"create_time_ms":"²","side":"buy",'
        '"currency_pair":"BTC_USDT","amount":"1","price":"1"}}'
    )
    with pytest.raises(DecodeError):
        ad.decode(trade, 1)
