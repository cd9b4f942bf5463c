"""HTX adapters: the shipped recordings, sub/unsub/ack/error/ping frames, the mbp chain and its req snapshot, the
swap depth chain, symbols, instruments, backfill, malformed input, gzip frames through the engine."""

from __future__ import annotations

import ast
import gzip
import json
from collections import Counter
from decimal import Decimal

import msgspec
import pytest

from cryptolink import recordings
from cryptolink.book.sync import BookSync
from cryptolink.clock import FakeClock
from cryptolink.engine.connection import EngineConfig, ManagedConnection, MarketData
from cryptolink.engine.gate import ConnectGate
from cryptolink.exchanges.base import (
    Ack,
    BackfillCursor,
    BookMessage,
    ConnectionSpec,
    DecodeError,
    ExchangeError,
    FrameCompression,
    InflateRefused,
    Rejected,
    ReplyRequired,
    SnapshotSource,
    inflate,
)
from cryptolink.exchanges.htx import HtxLinearSwapAdapter, HtxSpotAdapter
from cryptolink.exchanges.registry import get_adapter, resolve
from cryptolink.models import AmountUnit, BookUpdate, Channel, Market, Side, Subscription, Ticker, Trade

from ..engine.fakes import FakeTransport, settle, wait_connected

SPOT_WS = "cryptofeed_htx_HUOBI.ws.44.0.gz"
SWAP_WS = "cryptofeed_htx_HUOBI_SWAP.ws.2.0.gz"
BOOK = Subscription(Channel.BOOK, "BTC/USDT")
SWAP_BOOK = Subscription(Channel.BOOK, "BTC/USDT:USDT")


def _frames(name: str) -> list[bytes]:
    """The received frames of a cryptofeed HTX recording, inflated (they are stored as gzip bytes literals)."""
    out = []
    for rec in recordings.iter_cryptofeed_ws(name):
        if rec.kind == "received":
            out.append(inflate(ast.literal_eval(rec.payload), FrameCompression.GZIP, 1 << 22))
    return out


def _j(obj: object) -> bytes:
    return json.dumps(obj).encode()


# --------------------------------------------------------------------------------------------- recordings
@pytest.mark.parametrize(
    ("adapter", "name", "trades", "acks", "pings", "step0"),
    [(HtxSpotAdapter, SPOT_WS, 73, 20, 6, 12), (HtxLinearSwapAdapter, SWAP_WS, 17, 10, 6, 6)],
)
def test_every_recorded_frame_decodes(
    adapter: type[HtxSpotAdapter | HtxLinearSwapAdapter],
    name: str,
    trades: int,
    acks: int,
    pings: int,
    step0: int,
) -> None:
    """Trades and acks carry over from the 2021/2022 recordings; ``depth.step0`` (a full-book topic we do not
    subscribe) decodes to nothing and is counted apart."""
    ad = adapter()
    counts: Counter[str] = Counter()
    for raw in _frames(name):
        events = ad.decode(raw, 1)
        if b'"ch": "market.' in raw.replace(b'":"', b'": "') and b".depth.step0" in raw:
            assert events == []
            counts["step0"] += 1
        for ev in events:
            counts[type(ev).__name__] += 1
            if isinstance(ev, Trade):
                assert ev.sequence is not None and ev.trade_id == str(ev.sequence)
                assert ev.price > 0 and ev.amount > 0 and ev.side in (Side.BUY, Side.SELL)
                assert ev.amount_unit is ad.amount_unit(ev.symbol)
            if isinstance(ev, ReplyRequired):
                sent = json.loads(ev.frame)
                assert list(sent) == ["pong"] and isinstance(sent["pong"], int)
    assert counts == Counter(Trade=trades, Ack=acks, ReplyRequired=pings, step0=step0)


@pytest.mark.parametrize("name", [SPOT_WS, SWAP_WS])
def test_trades_of_one_push_come_out_oldest_first(name: str) -> None:
    """Spot pushes list their trades newest first (swaps oldest first): the adapter delivers every push in id
    order, so a multi-trade push is never read as an id regression."""
    ad = HtxSpotAdapter() if name == SPOT_WS else HtxLinearSwapAdapter()
    multi = 0
    for raw in _frames(name):
        seqs = [ev.sequence or 0 for ev in ad.decode(raw, 1) if isinstance(ev, Trade)]
        if len(seqs) > 1:
            multi += 1
            assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), seqs
    assert multi >= 2


def test_recorded_numbers_keep_their_digits() -> None:
    """Prices and sizes are JSON numbers: decoded through Decimal, never float (``9.2e-07``, 16-digit sizes)."""
    ad = HtxSpotAdapter()
    trades = [ev for raw in _frames(SPOT_WS) for ev in ad.decode(raw, 1) if isinstance(ev, Trade)]
    first = trades[0]
    assert (
        first.symbol == "TRIO/ETH"
        and first.price == Decimal("9.2E-7")
        and first.amount == Decimal("20995.88")
    )
    assert first.sequence == 100045088885 and first.side is Side.BUY
    assert any(len(str(t.amount).replace(".", "")) >= 16 for t in trades)  # more digits than a float keeps


# --------------------------------------------------------------------------------------------- requests
def test_requests_routes_and_urls() -> None:
    ad = HtxSpotAdapter()
    subs = [Subscription(Channel.TRADES, "BTC/USDT"), Subscription(Channel.TICKER, "BTC/USDT"), BOOK]
    reqs = ad.subscribe_requests(subs, 7)
    assert [json.loads(r.frame) for r in reqs] == [
        {"sub": "market.btcusdt.trade.detail", "id": "7"},
        {"sub": "market.btcusdt.bbo", "id": "8"},
        {"sub": "market.btcusdt.mbp.150", "id": "9"},
    ]
    assert [r.request_id for r in reqs] == [7, 8, 9] and reqs[2].subscriptions == (BOOK,)
    [un] = ad.unsubscribe_requests([BOOK], 10)
    assert json.loads(un.frame) == {"unsub": "market.btcusdt.mbp.150", "id": "10"} and un.op == "unsubscribe"
    plan = ad.plan_connections(subs)
    assert [(c.url, c.route, len(c.subscriptions)) for c in plan] == [
        ("wss://api.huobi.pro/ws", "ws", 2),
        ("wss://api.huobi.pro/feed", "feed", 1),
    ]
    local = HtxSpotAdapter(ws_base_url="ws://127.0.0.1:9/ws")
    assert local.connection_url("feed") == "ws://127.0.0.1:9/feed"
    assert ad.policy.compression is FrameCompression.GZIP and ad.policy.max_inflated_bytes == 4 * 1024 * 1024
    assert ad.book_sync.source is SnapshotSource.WS_REQUEST and ad.book_sync.bridge_offset == 1


def test_swap_requests_and_url() -> None:
    ad = HtxLinearSwapAdapter()
    [book, trades] = ad.subscribe_requests([SWAP_BOOK, Subscription(Channel.TRADES, "BTC/USDT:USDT")], 1)
    assert json.loads(book.frame) == {
        "sub": "market.BTC-USDT.depth.size_150.high_freq",
        "data_type": "incremental",
        "id": "1",
    }
    assert json.loads(trades.frame) == {"sub": "market.BTC-USDT.trade.detail", "id": "2"}
    [conn] = ad.plan_connections([SWAP_BOOK])
    assert conn.url == "wss://api.hbdm.com/linear-swap-ws"
    assert ad.snapshot_frame(SWAP_BOOK, 1) is None and ad.book_sync.source is SnapshotSource.WEBSOCKET


def test_symbols_and_registry() -> None:
    spot, swap = HtxSpotAdapter(), HtxLinearSwapAdapter()
    assert spot.exchange_symbol("ETH/BTC") == "ethbtc" and spot.unified_symbol("trxusdt") == "TRX/USDT"
    assert (
        swap.exchange_symbol("ETH/USDT:USDT") == "ETH-USDT"
        and swap.unified_symbol("SOL-USDT") == "SOL/USDT:USDT"
    )
    for bad in ("BTC/USDT:USDT", "BTCUSDT"):
        with pytest.raises(ValueError):
            spot.exchange_symbol(bad)
    for bad in ("BTC/USDT", "BTC/USD:BTC", "BTC/USDT:USDT-250627"):
        with pytest.raises(ValueError):
            swap.exchange_symbol(bad)
    assert resolve("huobi", "spot").exchange == "htx"
    assert isinstance(get_adapter("huobi", "perpetual"), HtxLinearSwapAdapter)
    assert get_adapter("htx", Market.SPOT).exchange == "htx"


# --------------------------------------------------------------------------------------------- control frames
def test_ping_acks_and_errors() -> None:
    ad = HtxSpotAdapter()
    trades = Subscription(Channel.TRADES, "BTC/USDT")
    ad.subscribe_requests([trades, BOOK], 1)
    assert ad.decode(b'{"ping":1492420473027}', 0) == [ReplyRequired('{"pong":1492420473027}')]
    assert ad.decode(
        _j({"id": "1", "status": "ok", "subbed": "market.btcusdt.trade.detail", "ts": 1}), 0
    ) == [Ack("subscribe", 1, (trades,))]
    assert ad.decode(_j({"id": "3", "status": "ok", "unsubbed": "market.btcusdt.mbp.150", "ts": 1}), 0) == [
        Ack("unsubscribe", 3, (BOOK,))
    ]
    # an unknown topic: the engine resolves the subscription from the request id
    assert ad.decode(_j({"id": "5", "status": "ok", "subbed": "market.xyz.bbo"}), 0) == [Ack("subscribe", 5)]
    err = {
        "id": "2",
        "status": "error",
        "err-code": "bad-request",
        "err-msg": "invalid topic market.btcusdt.mbp.150",
    }
    assert ad.decode(_j(err), 0) == [Rejected(2, "bad-request", err["err-msg"], (BOOK,))]
    assert ad.decode(_j({**err, "err-msg": "429 too many request"}), 0) == [
        Rejected(2, "bad-request", "429 too many request")
    ]
    # no id: named by the topic in the message, else a plain exchange error
    assert ad.decode(_j({"status": "error", "err-code": "bad-request", "err-msg": err["err-msg"]}), 0) == [
        Rejected(None, "bad-request", err["err-msg"], (BOOK,))
    ]
    assert ad.decode(_j({"status": "error", "err-code": "x", "err-msg": "not json string"}), 0) == [
        ExchangeError("x", "not json string")
    ]


def test_snapshot_req_rep_and_error() -> None:
    ad = HtxSpotAdapter()
    frame = ad.snapshot_frame(BOOK, 41)
    assert frame is not None and json.loads(frame) == {"req": "market.btcusdt.mbp.150", "id": "41"}
    assert ad.snapshot_frame(Subscription(Channel.TRADES, "BTC/USDT"), 1) is None
    rep = {
        "id": "41",
        "rep": "market.btcusdt.mbp.150",
        "status": "ok",
        "ts": 1698359289261,
        "data": {
            "seqNum": 104999417756,
            "bids": [[9058.27, 1.5]],
            "asks": [[9084.27, 0.2], [9085.69, 3e-05]],
        },
    }
    [snap] = ad.decode(_j(rep), 5)
    assert isinstance(snap, BookMessage) and snap.is_snapshot and snap.prev_seq is None
    assert snap.first_seq == snap.last_seq == 104999417756 and snap.symbol == "BTC/USDT"
    assert snap.bids == [["9058.27", "1.5"]] and Decimal(snap.asks[1][1]) == Decimal("0.00003")
    ad.snapshot_frame(BOOK, 42)
    bad = {"id": "42", "status": "error", "err-code": "bad-request", "err-msg": "request timeout", "ts": 1}
    [err] = ad.decode(_j(bad), 0)
    assert isinstance(err, ExchangeError) and "market.btcusdt.mbp.150" in err.message
    assert err.subscription == BOOK  # names the book: the feed fails its snapshot request at once


def test_snapshot_ids_leave_the_map_on_answer_and_on_replacement() -> None:
    """A pending ``req`` id is dropped once answered or refused, and a newer ``req`` of the same book replaces an
    unanswered one (a timeout, or a frame never sent): thousands of retries leave one entry and evict nothing."""
    ad = HtxSpotAdapter()
    eth = Subscription(Channel.BOOK, "ETH/USDT")
    for rid in range(1, 5001):  # 5000 timed-out (or unsent) requests of one book
        ad.snapshot_frame(BOOK, rid)
    ad.snapshot_frame(eth, 6000)
    assert len(ad._snapshot_ids) == 2 and ad.counters()["snapshot_ids_evicted"] == 0
    rep = {"id": "5000", "rep": "market.btcusdt.mbp.150", "status": "ok", "ts": 1,
           "data": {"seqNum": 7, "bids": [], "asks": []}}  # fmt: skip
    [snap] = ad.decode(_j(rep), 0)
    assert isinstance(snap, BookMessage) and snap.is_snapshot
    refused = {"id": "6000", "status": "error", "err-code": "bad-request", "err-msg": "429 too many request"}
    [err] = ad.decode(_j(refused), 0)
    assert isinstance(err, ExchangeError) and "market.ethusdt.mbp.150" in err.message
    assert len(ad._snapshot_ids) == 0 and not ad._snapshot_id_of
    # an answer to a replaced id still decodes as the snapshot (by its topic); its late error names nothing
    assert ad.decode(_j({**rep, "id": "17"}), 0)[0] == snap
    assert ad.decode(_j({**refused, "id": "18"}), 0) == [Rejected(18, "bad-request", "429 too many request")]


def test_snapshot_id_bound_is_small_and_counted() -> None:
    ad = HtxSpotAdapter()
    books = [Subscription(Channel.BOOK, f"C{i}/USDT") for i in range(1001)]
    for i, sub in enumerate(books):
        ad.snapshot_frame(sub, i + 1)
    assert len(ad._snapshot_ids) == 1000 and ad.counters()["snapshot_ids_evicted"] == 1


def test_error_names_its_subscription_by_index_lookup() -> None:
    """The topic named in ``err-msg`` is looked up, not searched for among every known topic."""
    ad = HtxSpotAdapter()
    subs = [Subscription(Channel.TRADES, f"C{i}/USDT") for i in range(2000)]
    ad.subscribe_requests([*subs, BOOK], 1)

    class NoScan(type(ad._topics)):  # type: ignore[misc]
        __slots__ = ()

        def items(self) -> list[tuple[str, Subscription]]:
            raise AssertionError("error decoding scanned every topic")

    ad._topics.__class__ = NoScan
    for text in (
        "invalid topic market.btcusdt.mbp.150",
        "invalid topic market.btcusdt.mbp.150 (simulated fault)",
        "unsub with not subbed topic market.btcusdt.mbp.150.",
        "bad topic=market.btcusdt.mbp.150, retry",
    ):
        err = {"id": "9", "status": "error", "err-code": "bad-request", "err-msg": text}
        assert ad.decode(_j(err), 0) == [Rejected(9, "bad-request", text, (BOOK,))], text
    named = "invalid topic market.c7usdt.trade.detail"
    assert ad.decode(_j({"status": "error", "err-code": "c", "err-msg": named}), 0) == [
        Rejected(None, "c", named, (subs[7],))
    ]
    assert ad.decode(
        _j({"status": "error", "err-code": "c", "err-msg": "invalid topic market.nosuch.bbo"}), 0
    ) == [ExchangeError("c", "invalid topic market.nosuch.bbo")]


def test_swap_books_get_a_connection_each() -> None:
    """``version`` counts per connection (usdt_swap docs): one depth topic per connection; other channels share."""
    ad = HtxLinearSwapAdapter()
    eth_book = Subscription(Channel.BOOK, "ETH/USDT:USDT")
    trades = [Subscription(Channel.TRADES, s) for s in ("BTC/USDT:USDT", "ETH/USDT:USDT")]
    plan = ad.plan_connections([SWAP_BOOK, eth_book, *trades])
    assert ad.policy.max_books_per_connection == 1
    assert [sum(s.channel is Channel.BOOK for s in c.subscriptions) for c in plan] == [1, 1]
    assert {s for c in plan for s in c.subscriptions} == {SWAP_BOOK, eth_book, *trades}
    assert all(c.url == "wss://api.hbdm.com/linear-swap-ws" for c in plan)
    spot = HtxSpotAdapter()
    [feed] = spot.plan_connections([BOOK, Subscription(Channel.BOOK, "ETH/USDT")])
    assert feed.route == "feed" and len(feed.subscriptions) == 2  # spot books share their /feed socket
    assert spot.policy.snapshot_request_interval_s == 0.15


def _mbp(
    seq: int, prev: int, bids: list[list[float]] | None = None, asks: list[list[float]] | None = None
) -> bytes:
    tick: dict[str, object] = {"seqNum": seq, "prevSeqNum": prev}
    if bids is not None:
        tick["bids"] = bids
    if asks is not None:
        tick["asks"] = asks
    return _j({"ch": "market.btcusdt.mbp.150", "ts": 1000 + seq, "tick": tick})


def test_mbp_chain_with_empty_diffs_and_a_gap() -> None:
    """Snapshot at seqNum 100, diffs 100->103 (empty 103->104 still moves the chain) -> live book; a diff whose
    prevSeqNum skips is a gap (the book resyncs)."""
    ad = HtxSpotAdapter()
    sync = BookSync(ad.book_sync, "htx", "BTC/USDT", "btcusdt")
    sync.start()
    rep = {
        "id": "1",
        "rep": "market.btcusdt.mbp.150",
        "status": "ok",
        "data": {"seqNum": 100, "bids": [[10, 1]], "asks": [[11, 1]]},
    }
    out = []
    for frame in (
        _j(rep),
        _mbp(103, 100, bids=[[10, 0], [9.5, 2]]),
        _mbp(104, 103),
        _mbp(106, 104, asks=[[11, 3]]),
    ):
        [msg] = ad.decode(frame, 0)
        assert isinstance(msg, BookMessage)
        out.extend(sync.on_message(msg))
    updates = [a for a in out if isinstance(a, BookUpdate) and (a.is_snapshot or a.bids or a.asks)]
    assert [u.sequence for u in updates] == [100, 103, 106]  # the empty diff moved the chain
    [m] = ad.decode(_mbp(104, 103), 0)
    assert isinstance(m, BookMessage)
    assert (m.first_seq, m.last_seq, m.prev_seq, m.bids, m.asks) == (104, 104, 103, [], [])
    assert sync.book.last_sequence == 106 and sync.state.value == "live"
    assert [str(p) for p in sync.book.bids()] == ["9.5"]
    [gap] = ad.decode(_mbp(110, 108, bids=[[9, 1]]), 0)
    assert isinstance(gap, BookMessage)
    sync.on_message(gap)
    assert sync.gaps == 1 and sync.state.value != "live"


def test_swap_depth_snapshot_and_version_chain() -> None:
    ad = HtxLinearSwapAdapter()
    sync = BookSync(ad.book_sync, "htx", "BTC/USDT:USDT", "BTC-USDT")
    sync.start()

    def depth(version: int, event: str, bids: list[list[float]], asks: list[list[float]]) -> bytes:
        tick = {"mrid": 1, "id": 2, "bids": bids, "asks": asks, "ts": 5, "version": version, "event": event,
                "ch": "market.BTC-USDT.depth.size_150.high_freq"}  # fmt: skip
        return _j({"ch": tick["ch"], "ts": 5, "tick": tick})

    actions = []
    for frame in (
        depth(7, "snapshot", [[100.1, 3], [100.0, 1]], [[100.2, 4]]),
        depth(8, "update", [[100.1, 0]], []),
        depth(9, "update", [], [[100.3, 2]]),
    ):
        [m] = ad.decode(frame, 0)
        assert isinstance(m, BookMessage)
        actions.extend(sync.on_message(m))
    assert [a.sequence for a in actions if isinstance(a, BookUpdate)] == [7, 8, 9]
    assert [str(p) for p in sync.book.bids()] == ["100.0"]
    [m] = ad.decode(depth(11, "update", [[99, 1]], []), 0)
    assert isinstance(m, BookMessage)
    assert m.prev_seq == 10 and not m.is_snapshot
    sync.on_message(m)
    assert sync.gaps == 1


def test_bbo_and_ticker_payloads() -> None:
    spot, swap = HtxSpotAdapter(), HtxLinearSwapAdapter()
    spot.exchange_symbol("BTC/USDT")
    bbo = {"ch": "market.btcusdt.bbo", "ts": 1671941599613, "tick": {"seqId": 161499562790, "ask": 16829.51,
           "askSize": 0.707776, "bid": 16829.5, "bidSize": 1.685945, "quoteTime": 1671941599612, "symbol": "btcusdt"}}  # fmt: skip
    [t] = spot.decode(_j(bbo), 3)
    assert isinstance(t, Ticker) and t.sequence == 161499562790 and t.timestamp_ms == 1671941599612
    assert (t.bid_price, t.bid_size, t.ask_price, t.ask_size) == (
        Decimal("16829.5"), Decimal("1.685945"), Decimal("16829.51"), Decimal("0.707776"),
    )  # fmt: skip
    swap.set_instruments(swap.parse_instruments(_swap_contracts()))
    sbbo = {"ch": "market.BTC-USDT.bbo", "ts": 9, "tick": {"mrid": 1, "id": 2, "bid": [30000.1, 12], "ask": [30000.2, 7],
            "ts": 8, "version": 55, "ch": "market.BTC-USDT.bbo"}}  # fmt: skip
    [s] = swap.decode(_j(sbbo), 3)
    assert (
        isinstance(s, Ticker) and s.sequence == 55 and s.bid_size == 12 and s.ask_price == Decimal("30000.2")
    )
    assert s.amount_unit is AmountUnit.CONTRACTS and s.contract_size == Decimal("0.001")
    tick = {"ch": "market.btcusdt.ticker", "ts": 1, "tick": {"open": 1, "close": 2, "bid": 1.9, "bidSize": 1,
            "ask": 2.1, "askSize": 2, "lastPrice": 2.0, "lastSize": 0.1}}  # fmt: skip
    [k] = spot.decode(_j(tick), 0)
    assert isinstance(k, Ticker) and k.last_price == Decimal("2.0") and k.sequence is None


# --------------------------------------------------------------------------------------------- REST
def _swap_contracts() -> bytes:
    return next(
        h.body.encode()
        for h in recordings.iter_cryptofeed_http("cryptofeed_htx_HUOBI_SWAP.0.gz")
        if "linear" in h.url
    )


def test_instruments() -> None:
    spot = HtxSpotAdapter()
    body = next(recordings.iter_cryptofeed_http("cryptofeed_htx_HUOBI.0.gz")).body.encode()
    insts = {i.symbol: i for i in spot.parse_instruments(body)}
    assert insts["BTC/USDT"].exchange_symbol == "btcusdt" and insts["BTC/USDT"].active
    assert len(insts) > 900 and spot.instruments_request().path == "/v1/common/symbols"
    swap = HtxLinearSwapAdapter()
    sinsts = {i.symbol: i for i in swap.parse_instruments(_swap_contracts())}
    btc = sinsts["BTC/USDT:USDT"]
    assert btc.contract_size == Decimal("0.001") and btc.contract_currency == "BTC" and btc.active
    assert all(s.endswith(":USDT") for s in sinsts)
    inverse = next(
        h.body.encode()
        for h in recordings.iter_cryptofeed_http("cryptofeed_htx_HUOBI_SWAP.0.gz")
        if "/swap-api/" in h.url
    )
    assert swap.parse_instruments(inverse) == []
    assert swap.instruments_request().params == {"business_type": "swap"}
    with pytest.raises(DecodeError):
        swap.parse_instruments(b'{"status":"error","err-msg":"x"}')
    with pytest.raises(DecodeError):
        spot.parse_instruments(b"[]")


def test_backfill_one_page_of_newest_trades() -> None:
    spot = HtxSpotAdapter()
    sub = Subscription(Channel.TRADES, "BTC/USDT")
    cursor = BackfillCursor(after_id=10, before_id=20)
    req = spot.backfill_request(sub, cursor)
    assert req is not None and req.path == "/market/history/trade"
    assert req.params == {"symbol": "btcusdt", "size": "2000"}
    body = _j({"ch": "market.btcusdt.trade.detail", "status": "ok", "ts": 1, "data": [
        {"id": 5, "ts": 3, "data": [{"id": 1.2e26, "ts": 3, "trade-id": 19, "amount": 0.5, "price": 100.25, "direction": "sell"}]},
        {"id": 4, "ts": 2, "data": [{"id": 1.1e26, "ts": 2, "trade-id": 11, "amount": 1, "price": 100, "direction": "buy"}]},
    ]})  # fmt: skip
    trades = spot.parse_trades(body, sub, 7)
    assert [(t.sequence, t.side, t.backfilled) for t in trades] == [
        (19, Side.SELL, True),
        (11, Side.BUY, True),
    ]
    cursor.pages = 1
    assert spot.backfill_request(sub, cursor) is None
    swap = HtxLinearSwapAdapter()
    ssub = Subscription(Channel.TRADES, "BTC/USDT:USDT")
    sreq = swap.backfill_request(ssub, BackfillCursor(1, 2))
    assert sreq is not None and sreq.path == "/linear-swap-ex/market/history/trade"
    assert sreq.params == {"contract_code": "BTC-USDT", "size": "2000"}
    sbody = _j({"status": "ok", "data": [{"id": 9, "ts": 1, "data": [
        {"amount": 4, "quantity": 0.004, "trade_turnover": 120.5, "ts": 1, "id": 431311833130000, "price": 30125, "direction": "buy"}]}]})  # fmt: skip
    [st] = swap.parse_trades(sbody, ssub, 0)
    assert st.sequence == 431311833130000 and st.amount == 4 and st.amount_unit is AmountUnit.CONTRACTS
    with pytest.raises(DecodeError):
        spot.parse_trades(b'{"status":"error","err-code":"bad-request","err-msg":"x"}', sub, 0)


# --------------------------------------------------------------------------------------------- malformed
@pytest.mark.parametrize(
    "frame",
    [
        b"not json",
        b"[1,2]",
        b'{"ping":"x"}',
        b'{"ch":"market.btcusdt.trade.detail","tick":{"data":[{"amount":1,"direction":"buy","tradeId":1}]}}',
        b'{"ch":"market.btcusdt.trade.detail","tick":{"data":[{"price":1,"amount":1,"direction":"up","tradeId":1}]}}',
        b'{"ch":"market.btcusdt.trade.detail","tick":{"data":[{"price":1,"amount":1,"direction":"buy","id":1.5e20}]}}',
        b'{"ch":"market.btcusdt.mbp.150","tick":{"prevSeqNum":1,"bids":[]}}',
        b'{"ch":"market.btcusdt.mbp.150","tick":{"seqNum":2,"bids":[]}}',
        b'{"ch":"market.btcusdt.mbp.150","tick":{"seqNum":2,"prevSeqNum":1,"bids":[["x","y"]]}}',
        b'{"ch":"market.btcusdt.bbo","tick":{"bid":"nan?","ask":1}}',
        b'{"id":"1","rep":"market.btcusdt.mbp.150","status":"ok","data":{"bids":[]}}',
    ],
)
def test_malformed_frames_raise_decode_error(frame: bytes) -> None:
    with pytest.raises(DecodeError):
        HtxSpotAdapter().decode(frame, 0)


def test_swap_depth_without_version_is_malformed() -> None:
    frame = b'{"ch":"market.BTC-USDT.depth.size_150.high_freq","tick":{"event":"update","bids":[]}}'
    with pytest.raises(DecodeError):
        HtxLinearSwapAdapter().decode(frame, 0)


def test_unknown_topics_decode_to_nothing() -> None:
    ad = HtxSpotAdapter()
    assert ad.decode(b'{"ch":"market.btcusdt.kline.1min","ts":1,"tick":{"id":1}}', 0) == []
    assert ad.decode(b'{"ch":"weird","tick":{}}', 0) == []
    assert ad.decode(b'{"status":"ok"}', 0) == []


# --------------------------------------------------------------------------------------------- gzip, engine
def test_compression_bomb_is_refused_within_the_policy_bound() -> None:
    limit = HtxSpotAdapter.policy.max_inflated_bytes
    bomb = gzip.compress(b"0" * (limit * 4), 9)
    assert len(bomb) < limit // 64
    with pytest.raises(InflateRefused) as info:
        inflate(bomb, FrameCompression.GZIP, limit)
    assert info.value.bomb and info.value.limit_bytes == limit


@pytest.mark.timeout(20)
async def test_engine_inflates_answers_pings_and_counts_a_bomb() -> None:
    """Through a ManagedConnection on a fake socket: a gzip ``{"ping"}`` is answered with ``{"pong"}`` at once, a
    bomb is refused and counted (the socket stays up), the next gzip trade is delivered."""
    clock = FakeClock()
    transport = FakeTransport()
    data: list[MarketData] = []
    ad = HtxSpotAdapter()
    sub = Subscription(Channel.TRADES, "BTC/USDT")
    conn = ManagedConnection(
        ad,
        ConnectionSpec("ws://fake/ws", (sub,)),
        conn_id="h1",
        config=EngineConfig(seed=1, tick_s=0.5),
        clock=clock,
        transport=transport,
        on_data=lambda _c, items: data.extend(items),
        on_event=lambda _e: None,
        gate=ConnectGate("fake host", None, clock),
    )
    await conn.start()
    await wait_connected(conn, transport, clock)
    sess = transport.sessions[-1]
    sub_frame = json.loads(sess.sent[0])
    sess.feed(gzip.compress(_j({"id": sub_frame["id"], "status": "ok", "subbed": sub_frame["sub"], "ts": 1})))
    sess.feed(gzip.compress(b'{"ping":1700000000123}'))
    sess.feed(gzip.compress(b"0" * (ad.policy.max_inflated_bytes + 1), 9))
    trade = {"ch": "market.btcusdt.trade.detail", "ts": 1, "tick": {"id": 1, "ts": 1, "data": [
        {"id": 1.0e26, "ts": 1, "tradeId": 77, "amount": 0.25, "price": 60000.5, "direction": "sell"}]}}  # fmt: skip
    sess.feed(gzip.compress(_j(trade)))
    await settle()
    assert '{"pong":1700000000123}' in sess.sent
    assert [t.sequence for t in data if isinstance(t, Trade)] == [77]
    st = conn.stats()
    assert st.inflate_refused == 1 and st.decode_errors == 0 and len(transport.sessions) == 1
    await conn.stop()


def test_ids_int_refuses_never_escape_as_value_error() -> None:
    """``"²"`` passes ``str.isdigit`` but not ``int()``, and ``int()`` refuses a 5000-digit number: an echoed id
    stays a non-numeric id and a swap trade id of that kind gives no sequence, never a bare ValueError."""
    from cryptolink.exchanges.htx import _raw_int, _request_id

    assert _request_id("²") == "²" and _request_id("42") == 42
    assert _raw_int(msgspec.Raw(b"9" * 5000)) is None and _raw_int(msgspec.Raw(b"17")) == 17
