"""Bitget adapter: the shipped (API v1) recordings, v2 frames as documented, requests, acks, errors, symbols,
instruments, backfill paging, the per-socket seq chain, malformed input."""

from __future__ import annotations

import json
import zlib
from collections import Counter
from decimal import Decimal

import pytest

from cryptolink import recordings
from cryptolink.book.sync import BookSync, NeedResubscribe, SyncAction
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
from cryptolink.exchanges.bitget import BitgetAdapter, _side
from cryptolink.models import BookUpdate, Channel, Market, Side, Subscription, Ticker, Trade

SPOT_REC = "cryptofeed_bitget_BITGET.ws.1.0.gz"
MIX_REC = "cryptofeed_bitget_BITGET.ws.2.0.gz"


def _received(name: str) -> list[tuple[float, str]]:
    return [(r.ts_s, r.payload) for r in recordings.iter_cryptofeed_ws(name) if r.kind == "received"]


@pytest.mark.parametrize(
    ("name", "market", "books", "acks", "v1_trades", "v1_tickers"),
    [(SPOT_REC, Market.SPOT, 443, 24, 38, 128), (MIX_REC, Market.PERPETUAL, 194, 6, 27, 217)],
)
def test_recorded_v1_frames_books_verify_and_old_shapes_are_counted(
    name: str, market: Market, books: int, acks: int, v1_trades: int, v1_tickers: int
) -> None:
    """The shipped recordings are API v1 (2022-04). ``books`` frames have the v2 shape minus ``seq``: they decode,
    and every rebuilt book passes every checksum (the CRC rule: signed CRC32 of the interleaved top 25 levels as
    received). v1 ``trade`` (arrays, no tradeId) and ``ticker`` (``last``/``bestBid``, no ``lastPr``) frames are
    not v2 shapes: each raises DecodeError, counted here by kind."""
    ad = BitgetAdapter(market)
    counts: Counter[str] = Counter()
    syncs: dict[str, BookSync] = {}
    for ts, payload in _received(name):
        channel = json.loads(payload).get("arg", {}).get("channel")
        try:
            events = ad.decode(payload, int(ts * 1e9))
        except DecodeError:
            counts[f"v1:{channel}"] += 1
            continue
        for ev in events:
            counts[type(ev).__name__] += 1
            if isinstance(ev, BookMessage):
                assert ev.prev_seq is None and ev.checksum is not None
                sync = syncs.get(ev.exchange_symbol)
                if sync is None:
                    sync = syncs[ev.exchange_symbol] = BookSync(
                        ad.book_sync, "bitget", ev.symbol, ev.exchange_symbol
                    )
                    sync.start()
                for a in sync.on_message(ev):
                    counts[type(a).__name__] += 1
    assert counts["BookMessage"] == books
    assert counts["BookUpdate"] == books, "every recorded checksum verified, every update applied"
    assert counts["NeedResubscribe"] == 0
    assert counts["Ack"] == acks
    assert counts["v1:trade"] == v1_trades and counts["v1:ticker"] == v1_tickers
    assert set(counts) == {"BookMessage", "BookUpdate", "Ack", "v1:trade", "v1:ticker"}
    for sync in syncs.values():
        assert sync.stats().checksum_failures == 0 and sync.state.value == "live"


def test_a_corrupted_recorded_level_fails_the_checksum() -> None:
    ad = BitgetAdapter()
    sync = BookSync(ad.book_sync, "bitget", "EOS/USDT", "EOSUSDT")
    sync.start()
    actions: list[SyncAction] = []
    updates = 0
    for ts, payload in _received(SPOT_REC):
        if '"books"' not in payload or '"EOSUSDT"' not in payload or '"action"' not in payload:
            continue
        (msg,) = ad.decode(payload, int(ts * 1e9))
        assert isinstance(msg, BookMessage)
        if not msg.is_snapshot:
            updates += 1
            if updates == 3:
                msg.bids[0][1] = msg.bids[0][1] + "1"  # one size changed: the CRC no longer matches
        actions = sync.on_message(msg)
        if updates == 3 and not msg.is_snapshot:
            break
    assert [type(a) for a in actions] == [NeedResubscribe]
    assert sync.stats().checksum_failures == 1


def _crc(bids: list[list[str]], asks: list[list[str]]) -> int:
    parts: list[str] = []
    for i in range(25):
        if i < len(bids):
            parts += bids[i][:2]
        if i < len(asks):
            parts += asks[i][:2]
    c = zlib.crc32(":".join(parts).encode())
    return c - (1 << 32) if c >= 1 << 31 else c


def _books(
    action: str,
    bids: list[list[str]],
    asks: list[list[str]],
    seq: int,
    inst: str = "BTCUSDT",
    book: tuple[list[list[str]], list[list[str]]] | None = None,
) -> str:
    """A v2 ``books`` frame; its checksum is computed on ``book`` (the exchange's whole book after this message;
    default: the message's own levels)."""
    top_b, top_a = book if book is not None else (bids, asks)
    return json.dumps(
        {
            "action": action,
            "arg": {"instType": "SPOT", "channel": "books", "instId": inst},
            "data": [
                {
                    "asks": asks,
                    "bids": bids,
                    "checksum": _crc(top_b, top_a),
                    "seq": seq,
                    "ts": "1695710946294",
                }
            ],
            "ts": 1695710946294,
        }
    )


def test_v2_books_seq_chain_per_socket_drops_copies_and_checksum_catches_a_lost_update() -> None:
    """``seq`` increases but not by a documented step: each update links to the previous one seen on the same
    socket. A copy from a second socket is dropped (no double), a lost update is caught by the checksum."""
    ad = BitgetAdapter()
    ad.exchange_symbol("BTC/USDT")
    first, second = ad.session_decoder(), ad.session_decoder()
    asks = [["100.5", "3"]]
    snap = _books("snapshot", [["100.0", "1"], ["99.5", "2"]], asks, 10)
    after1 = ([["100.0", "4"], ["99.5", "2"]], asks)
    up1 = _books("update", [["100.0", "4"]], [], 17, book=after1)  # seq jumps by 7: not a gap
    after2 = ([["100.0", "4"]], asks)
    up2 = _books("update", [["99.5", "0"]], [], 18, book=after2)
    sync = BookSync(ad.book_sync, "bitget", "BTC/USDT", "BTCUSDT")
    sync.start()
    (m,) = first(snap, 1)
    assert isinstance(m, BookMessage) and m.is_snapshot and m.prev_seq == -1 and m.last_seq == 10
    assert [type(a) for a in sync.on_message(m)] == [BookUpdate]
    (m1,) = first(up1, 2)
    assert isinstance(m1, BookMessage) and m1.prev_seq == 10 and m1.last_seq == 17
    assert [type(a) for a in sync.on_message(m1)] == [BookUpdate]
    # the same update on a second socket (rotation overlap): its snapshot first there, then the copy
    (s2,) = second(_books("snapshot", *after1, 17), 3)
    (c1,) = second(up2, 4)
    (m2,) = first(up2, 5)
    assert isinstance(s2, BookMessage) and isinstance(c1, BookMessage) and isinstance(m2, BookMessage)
    assert [type(a).__name__ for a in sync.on_message(s2)] == ["Dropped"]
    assert [type(a) for a in sync.on_message(c1)] == [BookUpdate]
    assert [type(a).__name__ for a in sync.on_message(m2)] == ["Dropped"]
    assert sync.book.last_sequence == 18
    # a lost update: 19 (bid 99.0 added) never arrives; 20 changes the ask, its checksum covers both
    after4 = ([["100.0", "4"], ["99.0", "5"]], [["100.5", "1"]])
    (m3,) = first(_books("update", [], [["100.5", "1"]], 20, book=after4), 6)
    assert isinstance(m3, BookMessage) and m3.prev_seq == 18
    assert [type(a) for a in sync.on_message(m3)] == [NeedResubscribe]
    assert sync.stats().resyncs_by_cause == {"checksum": 1}


def test_an_update_without_a_snapshot_on_its_socket_links_to_nothing() -> None:
    ad = BitgetAdapter()
    (m,) = ad.session_decoder()(_books("update", [["1", "1"]], [], 5), 0)
    assert isinstance(m, BookMessage) and m.prev_seq == -2


def test_a_malformed_books_frame_breaks_the_link_and_resyncs() -> None:
    """An update whose payload does not decode (DecodeError, counted) is lost, possibly below the top 25 levels
    the checksum covers: the next update of that symbol links to nothing, so the book resyncs (cause gap)."""
    ad = BitgetAdapter()
    dec = ad.session_decoder()
    sync = BookSync(ad.book_sync, "bitget", "BTC/USDT", "BTCUSDT")
    sync.start()
    (snap,) = dec(_books("snapshot", [["100", "1"]], [["101", "1"]], 10), 0)
    assert isinstance(snap, BookMessage)
    assert [type(a) for a in sync.on_message(snap)] == [BookUpdate]
    bad = _books("update", [["90", "1"]], [], 11).replace('"seq": 11', '"seq": "x"')
    with pytest.raises(DecodeError):
        dec(bad, 0)
    (up,) = dec(
        _books("update", [], [["102", "1"]], 12, book=([["100", "1"]], [["101", "1"], ["102", "1"]])), 0
    )
    assert isinstance(up, BookMessage) and up.prev_seq == -2
    assert [type(a) for a in sync.on_message(up)] == [NeedResubscribe]
    assert sync.stats().resyncs_by_cause == {"gap": 1}
    (again,) = dec(_books("update", [], [["103", "1"]], 13), 0)
    assert isinstance(again, BookMessage) and again.prev_seq == 12, "the chain continues after the bad frame"


def test_maintenance_seq_restart_is_followed() -> None:
    ad = BitgetAdapter()
    dec = ad.session_decoder()
    sync = BookSync(ad.book_sync, "bitget", "BTC/USDT", "BTCUSDT")
    sync.start()
    bids, asks = [["100", "1"]], [["101", "1"]]
    for frame in (
        _books("snapshot", bids, asks, 500),
        _books("update", [["100", "2"]], [], 3, book=([["100", "2"]], asks)),
    ):
        (m,) = dec(frame, 0)
        assert isinstance(m, BookMessage)
        out = sync.on_message(m)
        assert [type(a) for a in out] == [BookUpdate]
    assert sync.book.last_sequence == 3


def test_trades_in_id_order_tickers_and_fields() -> None:
    ad = BitgetAdapter(feed="bg")
    ad.exchange_symbol("BTC/USDT")
    frame = json.dumps(
        {
            "action": "snapshot",
            "arg": {"instType": "SPOT", "channel": "trade", "instId": "BTCUSDT"},
            "data": [
                {
                    "ts": "1695709835823",
                    "price": "26293.5",
                    "size": "0.0013",
                    "side": "sell",
                    "tradeId": "1000000002",
                },
                {
                    "ts": "1695709835822",
                    "price": "26293.4",
                    "size": "0.5",
                    "side": "buy",
                    "tradeId": "1000000001",
                },
            ],
            "ts": 1695711090682,
        }
    )
    out = ad.decode(frame, 7)
    assert all(isinstance(t, Trade) for t in out)
    trades = [t for t in out if isinstance(t, Trade)]
    assert [t.sequence for t in trades] == [1000000001, 1000000002]
    t = trades[0]
    assert (t.symbol, t.exchange_symbol, t.price, t.amount, t.side) == (
        "BTC/USDT",
        "BTCUSDT",
        Decimal("26293.4"),
        Decimal("0.5"),
        Side.BUY,
    )
    assert (
        t.trade_id == "1000000001"
        and t.timestamp_ms == 1695709835822
        and t.receipt_ns == 7
        and t.feed == "bg"
    )
    assert trades[1].side is Side.SELL
    ticker = json.dumps(
        {
            "action": "snapshot",
            "arg": {"instType": "SPOT", "channel": "ticker", "instId": "BTCUSDT"},
            "data": [
                {
                    "instId": "BTCUSDT", "lastPr": "26300", "bidPr": "26299.9", "askPr": "26300.1", "bidSz": "1.5",
                    "askSz": "2", "open24h": "26000", "ts": "1695702438018",
                }
            ],
            "ts": 1695702438029,
        }
    )  # fmt: skip
    (tk,) = ad.decode(ticker, 1)
    assert isinstance(tk, Ticker)
    assert (tk.bid_price, tk.bid_size, tk.ask_price, tk.ask_size, tk.last_price, tk.timestamp_ms) == (
        Decimal("26299.9"),
        Decimal("1.5"),
        Decimal("26300.1"),
        Decimal("2"),
        Decimal("26300"),
        1695702438018,
    )


def test_requests_acks_errors_pong() -> None:
    ad = BitgetAdapter(Market.PERPETUAL)
    subs = [Subscription(Channel.BOOK, "BTC/USDT:USDT"), Subscription(Channel.TICKER, "ETH/USDT:USDT")]
    (req,) = ad.subscribe_requests(subs, 5)
    assert json.loads(req.frame) == {
        "op": "subscribe",
        "args": [
            {"instType": "USDT-FUTURES", "channel": "books", "instId": "BTCUSDT"},
            {"instType": "USDT-FUTURES", "channel": "ticker", "instId": "ETHUSDT"},
        ],
    }
    assert req.request_id == 5 and req.subscriptions == tuple(subs)
    (unsub,) = ad.unsubscribe_requests(subs[:1], 6)
    assert json.loads(unsub.frame)["op"] == "unsubscribe"
    ack = '{"event":"subscribe","arg":{"instType":"USDT-FUTURES","channel":"books","instId":"BTCUSDT"}}'
    assert ad.decode(ack, 0) == [Ack("subscribe", None, (subs[0],))]
    v1_ack = '{"event":"unsubscribe","arg":{"instType":"usdt-futures","channel":"ticker","instId":"ETHUSDT"}}'
    assert ad.decode(v1_ack, 0) == [Ack("unsubscribe", None, (subs[1],))]
    err = '{"event":"error","code":30001,"msg":"instType:USDT-FUTURES,channel:ticker,instId:ETHUSDT doesn\'t exist"}'
    assert ad.decode(err, 0) == [Rejected(None, "30001", ad.decode(err, 0)[0].message, (subs[1],))]  # type: ignore[union-attr]
    with_arg = (
        '{"event":"error","arg":{"instType":"USDT-FUTURES","channel":"books","instId":"BTCUSDT"},'
        '"code":30006,"msg":"request too many"}'
    )
    assert ad.decode(with_arg, 0) == [Rejected(None, "30006", "request too many", (subs[0],))]
    assert ad.decode('{"event":"error","code":30002,"msg":"illegal request"}', 0) == [
        ExchangeError("30002", "illegal request")
    ]
    assert ad.decode("pong", 0) == [Pong()]
    assert ad.decode(b"pong", 0) == [Pong()]


def test_requests_are_batched_and_connections_hold_50_channels() -> None:
    ad = BitgetAdapter()
    subs = [Subscription(Channel.TRADES, f"C{i}/USDT") for i in range(120)]
    reqs = ad.subscribe_requests(subs, 1)
    assert [len(r.subscriptions) for r in reqs] == [50, 50, 20]
    assert [r.request_id for r in reqs] == [1, 2, 3]
    plan = ad.plan_connections(subs)
    assert [len(c.subscriptions) for c in plan] == [50, 50, 20]
    assert {c.url for c in plan} == {"wss://ws.bitget.com/v2/ws/public"}
    assert BitgetAdapter(ws_base_url="ws://127.0.0.1:9/v2/ws/public").connection_url("") == (
        "ws://127.0.0.1:9/v2/ws/public"
    )


def test_policy_is_the_documented_rules() -> None:
    p = BitgetAdapter.policy
    assert p.keepalive.app_ping_frame == "ping" and p.keepalive.app_ping_idle_s == 30.0
    assert p.max_lifetime_s == 86400.0 and p.max_outbound_per_s == 10.0
    assert p.max_subscribe_requests_per_hour == 240 and p.max_streams_per_connection == 50
    assert p.connect_limit is not None and (p.connect_limit.max_connects, p.connect_limit.window_s) == (
        300,
        300.0,
    )
    assert BitgetAdapter.book_sync.checksum is not None and BitgetAdapter.book_sync.checksum.depth == 25


def test_symbols_and_registration() -> None:
    spot, perp = BitgetAdapter(), BitgetAdapter(Market.PERPETUAL)
    assert spot.exchange_symbol("BTC/USDT") == "BTCUSDT"
    assert perp.exchange_symbol("ETH/USDT:USDT") == "ETHUSDT"
    for bad in ("BTC/USDT:USDT", "BTCUSDT"):
        with pytest.raises(ValueError):
            spot.exchange_symbol(bad)
    for bad in ("BTC/USDT", "BTC/USD:BTC", "BTC/USDT:USDT-250627"):
        with pytest.raises(ValueError):
            perp.exchange_symbol(bad)
    assert spot.unified_symbol("SOLUSDT") == "SOL/USDT" and perp.unified_symbol("SOLUSDT") == "SOL/USDT:USDT"
    assert spot.unified_symbol("WEIRD") == "WEIRD"
    assert isinstance(get_adapter("bitget", "spot"), BitgetAdapter)
    assert get_adapter("bitget", "perpetual").market is Market.PERPETUAL
    assert (
        get_adapter("bitget", "spot", testnet=True).connection_url("")
        == "wss://wspap.bitget.com/v2/ws/public"
    )


SPOT_SYMBOLS = json.dumps(
    {
        "code": "00000",
        "msg": "success",
        "requestTime": 1695808949356,
        "data": [
            {
                "symbol": "BTCUSDT",
                "baseCoin": "BTC",
                "quoteCoin": "USDT",
                "status": "online",
                "pricePrecision": "2",
            },
            {"symbol": "OLDUSDT", "baseCoin": "OLD", "quoteCoin": "USDT", "status": "offline"},
        ],
    }
).encode()
CONTRACTS = json.dumps(
    {
        "code": "00000",
        "msg": "success",
        "data": [
            {"symbol": "BTCUSDT", "baseCoin": "BTC", "quoteCoin": "USDT", "sizeMultiplier": "0.001",
             "symbolType": "perpetual", "symbolStatus": "normal"},
            {"symbol": "BTCUSDT0627", "baseCoin": "BTC", "quoteCoin": "USDT", "symbolType": "delivery",
             "symbolStatus": "normal"},
            {"symbol": "XUSDT", "baseCoin": "X", "quoteCoin": "USDT", "symbolType": "perpetual",
             "symbolStatus": "maintain"},
        ],
    }
).encode()  # fmt: skip


def test_instruments() -> None:
    spot, perp = BitgetAdapter(), BitgetAdapter(Market.PERPETUAL)
    assert spot.instruments_request().path == "/api/v2/spot/public/symbols"
    req = perp.instruments_request()
    assert (req.path, req.params) == ("/api/v2/mix/market/contracts", {"productType": "USDT-FUTURES"})
    got = spot.parse_instruments(SPOT_SYMBOLS)
    assert [(i.symbol, i.exchange_symbol, i.active) for i in got] == [
        ("BTC/USDT", "BTCUSDT", True),
        ("OLD/USDT", "OLDUSDT", False),
    ]
    got = perp.parse_instruments(CONTRACTS)
    assert [(i.symbol, i.active, i.status, i.contract_size) for i in got] == [
        ("BTC/USDT:USDT", True, "normal", None),
        ("X/USDT:USDT", False, "maintain", None),
    ]
    with pytest.raises(DecodeError):
        spot.parse_instruments(b'{"code":"40034","msg":"Parameter does not exist","data":null}')
    with pytest.raises(DecodeError):
        spot.parse_instruments(b"<html>")


def test_fills_history_backfill_pages_down_to_the_interval_start() -> None:
    perp = BitgetAdapter(Market.PERPETUAL)
    sub = Subscription(Channel.TRADES, "BTC/USDT:USDT")
    cur = BackfillCursor(after_id=100, before_id=5000)
    req = perp.backfill_request(sub, cur)
    assert req is not None and req.path == "/api/v2/mix/market/fills-history"
    assert req.params == {
        "symbol": "BTCUSDT",
        "idLessThan": "5000",
        "limit": "1000",
        "productType": "USDT-FUTURES",
    }
    cur.pages, cur.oldest, cur.last_page_size = 1, 4000, 1000
    req = perp.backfill_request(sub, cur)
    assert req is not None and req.params["idLessThan"] == "4000"
    cur.oldest = 101
    assert perp.backfill_request(sub, cur) is None
    cur.oldest, cur.last_page_size = 3000, 20
    assert perp.backfill_request(sub, cur) is None
    spot_req = BitgetAdapter().backfill_request(
        Subscription(Channel.TRADES, "BTC/USDT"), BackfillCursor(after_id=1, before_id=9)
    )
    assert spot_req is not None and spot_req.path == "/api/v2/spot/market/fills-history"
    assert "productType" not in spot_req.params
    body = json.dumps(
        {
            "code": "00000",
            "msg": "success",
            "data": [
                {"tradeId": "4999", "price": "26372.5", "size": "9.25", "side": "Sell", "ts": "1695865151000",
                 "symbol": "BTCUSDT"},
                {"tradeId": "4998", "price": "26383", "size": "12.12", "side": "Buy", "ts": "1695865115000",
                 "symbol": "BTCUSDT"},
            ],
        }
    ).encode()  # fmt: skip
    trades = perp.parse_trades(body, sub, 3)
    assert [(t.sequence, t.side, t.backfilled, t.symbol) for t in trades] == [
        (4999, Side.SELL, True, "BTC/USDT:USDT"),
        (4998, Side.BUY, True, "BTC/USDT:USDT"),
    ]
    with pytest.raises(DecodeError):
        perp.parse_trades(b'{"code":"429","msg":"Too Many Requests","data":null}', sub, 0)
    with pytest.raises(DecodeError):
        perp.parse_trades(body.replace(b'"4999"', b'"x"'), sub, 0)


@pytest.mark.parametrize(
    "frame",
    [
        "{",
        "[]",
        '{"action":"update","data":[{}]}',
        '{"action":"update","arg":{"instType":"SPOT","channel":"books","instId":"A"},"data":[{"asks":1}]}',
        '{"action":"nope","arg":{"instType":"SPOT","channel":"books","instId":"A"},"data":[{"asks":[],"bids":[]}]}',
        '{"action":"update","arg":{"instType":"SPOT","channel":"trade","instId":"A"},"data":[["1","2","3","buy"]]}',
        '{"action":"update","arg":{"instType":"SPOT","channel":"trade","instId":"A"},'
        '"data":[{"tradeId":"1","price":"1","size":"1","side":"up","ts":"1"}]}',
        '{"action":"snapshot","arg":{"instType":"SPOT","channel":"ticker","instId":"A"},"data":[{"instId":"A",'
        '"lastPr":"x"}]}',
        '{"action":"update","arg":{"instType":"SPOT","channel":"books","instId":"A"},'
        '"data":[{"asks":[],"bids":[],"seq":"abc"}]}',
    ],
)
def test_malformed_frames_raise_decode_error(frame: str) -> None:
    with pytest.raises(DecodeError):
        BitgetAdapter().decode(frame, 0)


def test_other_channels_and_events_are_ignored() -> None:
    ad = BitgetAdapter()
    candle = '{"action":"update","arg":{"instType":"SPOT","channel":"candle1m","instId":"A"},"data":[["1"]]}'
    assert ad.decode(candle, 0) == []
    assert ad.decode('{"event":"login","code":0}', 0) == []
    assert ad.decode("{}", 0) == []
    assert (
        ad.decode('{"event":"subscribe","arg":{"instType":"SPOT","channel":"candle1m","instId":"A"}}', 0)
        == []
    )


@pytest.mark.parametrize("trade_id", ["\u00b2", "\u0663", "9" * 5000])
def test_trade_ids_int_refuses_never_escape_as_value_error(trade_id: str) -> None:
    """``"²"`` passes ``str.isdigit`` but not ``int``; 5000 digits pass neither ``int``'s digit bound: a live
    trade keeps no sequence, a history page is a DecodeError (never a bare ValueError)."""
    frame = json.dumps(
        {
            "action": "update",
            "arg": {"instType": "SPOT", "channel": "trade", "instId": "BTCUSDT"},
            "data": [{"ts": "1", "price": "1", "size": "1", "side": "buy", "tradeId": trade_id}],
        }
    )
    (t,) = BitgetAdapter().decode(frame, 0)
    assert isinstance(t, Trade) and t.sequence is None and t.trade_id == trade_id
    body = json.dumps(
        {
            "code": "00000",
            "msg": "",
            "data": [{"tradeId": trade_id, "price": "1", "size": "1", "side": "Buy", "ts": "1"}],
        }
    ).encode()
    with pytest.raises(DecodeError):
        BitgetAdapter().parse_trades(body, Subscription(Channel.TRADES, "BTC/USDT"), 0)


class _NoLower(str):
    """A side text whose ``lower()`` fails: the decoder must not build a lower-cased copy per trade."""

    __slots__ = ()

    def lower(self) -> str:
        raise AssertionError("lower() called")


@pytest.mark.parametrize(
    ("text", "side"),
    [("buy", Side.BUY), ("Buy", Side.BUY), ("BUY", Side.BUY), ("sell", Side.SELL), ("Sell", Side.SELL),
     ("SELL", Side.SELL)],
)  # fmt: skip
def test_side_spellings_are_looked_up_without_lowering(text: str, side: Side) -> None:
    assert _side(_NoLower(text)) is side


@pytest.mark.parametrize("text", ["bUy", "sELL", "buy ", "", "b"])
def test_other_side_spellings_raise_decode_error(text: str) -> None:
    with pytest.raises(DecodeError):
        _side(text)


def _trade_frame(action: str, inst: str, ids: list[int]) -> str:
    data = [{"ts": str(i), "price": "1", "size": "1", "side": "buy", "tradeId": str(i)} for i in ids]
    return json.dumps({"action": action, "arg": {"instType": "SPOT", "channel": "trade", "instId": inst},
                       "data": data, "ts": 1})  # fmt: skip


def test_trade_snapshot_keeps_only_trades_above_the_highest_id_decoded_on_any_socket() -> None:
    """The snapshot after a (re)subscription repeats recent trades: those at or below the highest id already
    decoded for the symbol (on any socket) are dropped and counted; newer ones come in id order; live updates
    are never filtered (a lower id there is the feed's regression check)."""
    ad = BitgetAdapter()
    first, second = ad.session_decoder(), ad.session_decoder()
    got = first(_trade_frame("snapshot", "BTCUSDT", [12, 11, 10]), 0)
    assert [t.sequence for t in got if isinstance(t, Trade)] == [10, 11, 12], "nothing seen yet: all kept"
    first(_trade_frame("update", "BTCUSDT", [13]), 0)
    # trade 14 lost (say a malformed frame), 15 delivered, then the socket is replaced
    first(_trade_frame("update", "BTCUSDT", [15]), 0)
    got = second(_trade_frame("snapshot", "BTCUSDT", [17, 16, 15, 14, 13, 12]), 0)
    assert [t.sequence for t in got if isinstance(t, Trade)] == [16, 17]
    assert ad.counters()["trade_snapshot_dropped"] == 4
    assert [
        t.sequence for t in second(_trade_frame("snapshot", "ETHUSDT", [3, 2]), 0) if isinstance(t, Trade)
    ] == [
        2,
        3,
    ], "per symbol"
    got = second(_trade_frame("update", "BTCUSDT", [5]), 0)
    assert [t.sequence for t in got if isinstance(t, Trade)] == [5], "live updates pass (exchange restart)"
