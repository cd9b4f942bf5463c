"""Binance COIN-M (``binancecoinm``) adapter on real COIN-M frames (tests/exchanges/fixtures, see its README):
symbols, contract sizes from exchangeInfo, the ``pu``-linked book stitched to REST snapshots, URLs, limits."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest

from cryptolink import recordings
from cryptolink.book.sync import BookSync
from cryptolink.exchanges import get_adapter
from cryptolink.exchanges.base import (
    BackfillCursor,
    BookMessage,
    DecodeError,
    SequenceModel,
    SnapshotSource,
)
from cryptolink.exchanges.binance import BinanceCoinmAdapter, BinanceUsdmAdapter
from cryptolink.models import AmountUnit, Channel, Market, Side, Subscription, Ticker, Trade

FIXTURES = Path(__file__).parent / "fixtures"


def _text(name: str) -> str:
    return gzip.decompress((FIXTURES / name).read_bytes()).decode()


def _instruments_body() -> bytes:
    line = _text("cryptofeed_BINANCE_DELIVERY.exchangeInfo.gz").splitlines()[0]
    assert line.startswith("https://dapi.binance.com/dapi/v1/exchangeInfo -> ")
    return line.split(": ", 1)[1].encode()


def _coinm_with_instruments() -> BinanceCoinmAdapter:
    ad = BinanceCoinmAdapter(feed="cm")
    ad.set_instruments(ad.parse_instruments(_instruments_body()))
    return ad


def test_exchange_info_lists_perpetuals_with_their_contract_sizes() -> None:
    ad = BinanceCoinmAdapter()
    req = ad.instruments_request()
    assert (req.path, req.weight) == ("/dapi/v1/exchangeInfo", 1)
    insts = {i.symbol: i for i in ad.parse_instruments(_instruments_body())}
    # 36 listed contracts, of which 18 are PERPETUAL; the quarterlies are not this market
    assert len(insts) == 18 and all(i.exchange_symbol.endswith("_PERP") for i in insts.values())
    btc, eth = insts["BTC/USD:BTC"], insts["ETH/USD:ETH"]
    assert (btc.exchange_symbol, btc.active, btc.status) == ("BTCUSD_PERP", True, "TRADING")
    assert (btc.amount_unit, btc.contract_size, btc.contract_currency) == (
        AmountUnit.CONTRACTS,
        Decimal(100),
        "USD",
    )
    assert (eth.contract_size, eth.contract_currency) == (Decimal(10), "USD")
    assert {i.contract_size for s, i in insts.items() if s != "BTC/USD:BTC"} == {Decimal(10)}
    # each listed unified symbol maps back to the exchange's id
    assert all(ad.exchange_symbol(s) == i.exchange_symbol for s, i in insts.items())
    with pytest.raises(DecodeError):
        ad.parse_instruments(b'{"code":-1121,"msg":"Invalid symbol."}')


def test_symbols_streams_and_market_validation() -> None:
    ad = BinanceCoinmAdapter()
    assert ad.exchange_symbol("BTC/USD:BTC") == "BTCUSD_PERP"
    names = {ch: ad.stream_name(Subscription(ch, "ETH/USD:ETH")) for ch in Channel}
    assert names[Channel.TRADES] == "ethusd_perp@aggTrade"
    assert names[Channel.TICKER] == "ethusd_perp@bookTicker"
    assert names[Channel.BOOK] == "ethusd_perp@depth@100ms"
    for bad in ("BTC/USDT:USDT", "BTC/USD", "BTC/USD:BTC-240927", "BTC/USD:USD"):
        with pytest.raises(ValueError, match=r"expected BASE/USD:BASE"):
            ad.exchange_symbol(bad)
    # and the linear market refuses the inverse symbol
    with pytest.raises(ValueError):
        BinanceUsdmAdapter().exchange_symbol("BTC/USD:BTC")


def test_urls_policy_and_rest_requests() -> None:
    ad = get_adapter("binancecoinm", Market.PERPETUAL)
    assert isinstance(ad, BinanceCoinmAdapter)
    assert (ad.exchange, ad.market, ad.rest_base_url) == (
        "binancecoinm",
        Market.PERPETUAL,
        "https://dapi.binance.com",
    )
    subs = [Subscription(ch, f"C{i}/USD:C{i}") for i in range(400) for ch in Channel]
    plan = ad.plan_connections(subs)
    # no routes on COIN-M: every stream on <base>/stream, split at 1024 per connection
    assert {s.url for s in plan} == {"wss://dstream.binance.com/stream"} and {s.route for s in plan} == {""}
    assert [len(s.subscriptions) for s in plan] == [1024, 176]
    reqs = ad.subscribe_requests(subs[:450], 1)
    assert [len(r.subscriptions) for r in reqs] == [200, 200, 50]
    assert json.loads(reqs[0].frame)["params"][:3] == [
        "c0usd_perp@aggTrade",
        "c0usd_perp@bookTicker",
        "c0usd_perp@depth@100ms",
    ]
    p = ad.policy
    assert (p.max_streams_per_connection, p.max_outbound_per_s, p.max_lifetime_s) == (1024, 10.0, 86400.0)
    assert p.keepalive.server_pings and p.max_subscriptions_per_request == 200
    assert ad.rest_limit is not None and (ad.rest_limit.weight, ad.rest_limit.window_s) == (2400, 60.0)
    assert ad.book_sync.source is SnapshotSource.REST and ad.book_sync.sequence is SequenceModel.LINKED
    assert ad.book_sync.bridge_offset == 0
    sub = Subscription(Channel.BOOK, "BTC/USD:BTC")
    snap = ad.snapshot_request(sub)
    assert (snap.path, snap.params, snap.weight) == (
        "/dapi/v1/depth",
        {"symbol": "BTCUSD_PERP", "limit": "1000"},
        20,
    )
    tsub = Subscription(Channel.TRADES, "BTC/USD:BTC")
    back = ad.backfill_request(tsub, BackfillCursor(after_id=416689, before_id=416700))
    assert back is not None and (back.path, back.weight) == ("/dapi/v1/aggTrades", 20)
    assert back.params == {"symbol": "BTCUSD_PERP", "fromId": "416690", "limit": "10"}
    assert ad.amount_unit("BTC/USD:BTC") is AmountUnit.CONTRACTS


def test_backfilled_aggtrades_carry_contracts_and_contract_size() -> None:
    ad = _coinm_with_instruments()
    sub = Subscription(Channel.TRADES, "BTC/USD:BTC")
    [t] = ad.parse_trades(
        b'[{"a":416690,"p":"9642.4","q":"3","f":595259,"l":595259,"T":1591250548649,"m":false}]', sub, 5
    )
    assert (t.exchange, t.symbol, t.exchange_symbol, t.sequence, t.side) == (
        "binancecoinm",
        "BTC/USD:BTC",
        "BTCUSD_PERP",
        416690,
        Side.BUY,
    )
    assert (t.amount, t.amount_unit, t.contract_size, t.backfilled, t.feed) == (
        Decimal(3),
        AmountUnit.CONTRACTS,
        Decimal(100),
        True,
        "cm",
    )


def test_hftbacktest_coinm_frames_sync_the_book_and_match_book_ticker() -> None:
    """The real COIN-M frames of 2024-08-08: ``pu``-linked depth stitched to the REST snapshot with bridge
    offset 0 goes live without a gap; tickers and trades are contracts of 100 USD.

    Unlike USDⓈ-M, a COIN-M bookTicker's ``u`` is not the ``u`` of a depth event (in this recording it equals
    the ``U`` of the next one), so tickers are not compared level by level with the rebuilt book."""
    ad = _coinm_with_instruments()
    symbol = "BTC/USD:BTC"
    sub = Subscription(Channel.BOOK, symbol)
    sync = BookSync(ad.book_sync, ad.exchange, symbol, ad.exchange_symbol(symbol))
    sync.start()
    counts: Counter[str] = Counter()
    compared = 0
    for ts, frame in recordings.parse_hftbacktest(
        _text("hftbacktest_binance_cm_btcusd_perp_20240808.head.gz")
    ):
        if frame.startswith('{"lastUpdateId"'):
            sync.on_snapshot(ad.parse_snapshot(frame.encode(), sub, ts))
            continue
        for ev in ad.decode(frame, ts):
            counts[type(ev).__name__] += 1
            if isinstance(ev, BookMessage):
                assert (ev.symbol, ev.exchange_symbol) == (symbol, "BTCUSD_PERP") and ev.prev_seq is not None
                sync.on_message(ev)
            elif isinstance(ev, Ticker):
                assert (ev.amount_unit, ev.contract_size) == (AmountUnit.CONTRACTS, Decimal(100))
                if sync.state.value == "live" and sync.book.last_sequence == ev.sequence:
                    compared += 1
                    assert sync.book.best_bid() == (ev.bid_price, ev.bid_size)
                    assert sync.book.best_ask() == (ev.ask_price, ev.ask_size)
            elif isinstance(ev, Trade):
                assert (ev.symbol, ev.exchange, ev.amount_unit, ev.contract_size) == (
                    symbol,
                    "binancecoinm",
                    AmountUnit.CONTRACTS,
                    Decimal(100),
                )
                assert ev.amount == ev.amount.to_integral_value()  # whole contracts
    st = sync.stats()
    assert sync.state.value == "live" and st.gaps == 0 and st.resyncs == 0 and st.applied > 100
    assert counts["BookMessage"] > 200 and counts["Ticker"] > 100 and counts["Trade"] == 6
    bid, ask = sync.book.best_bid(), sync.book.best_ask()
    assert bid is not None and ask is not None and bid[0] < ask[0]


def _cryptofeed_ws() -> list[tuple[float, str]]:
    out: list[tuple[float, str]] = []
    for line in _text("cryptofeed_BINANCE_DELIVERY.ws.head.gz").splitlines():
        if line.startswith("wss://"):
            assert line.startswith("wss://dstream.binance.com/stream?streams=")
            continue
        ts, payload = line.split(": ", 1)
        out.append((float(ts), payload))
    return out


def test_cryptofeed_coinm_recording_decodes_and_syncs_with_rest_snapshots() -> None:
    ad = BinanceCoinmAdapter()
    snaps: dict[str, tuple[float, bytes]] = {}
    for line in _text("cryptofeed_BINANCE_DELIVERY.http.head.gz").splitlines():
        url, rest = line.split(" -> ", 1)
        ts_text, body_text = rest.split(": ", 1)
        snaps[url.split("symbol=")[1].split("&")[0]] = (float(ts_text), body_text.encode())
    assert set(snaps) == {"BCHUSD_PERP", "ETCUSD_PERP", "EOSUSD_PERP"}
    syncs: dict[str, BookSync] = {}
    for ex in snaps:
        unified = ex.replace("USD_PERP", "/USD:") + ex.replace("USD_PERP", "")
        syncs[ex] = BookSync(ad.book_sync, ad.exchange, unified, ex)
        syncs[ex].start()
    kinds: Counter[str] = Counter()
    symbols: set[str] = set()
    for ts, payload in _cryptofeed_ws():
        for ex, (snap_ts, body) in list(snaps.items()):
            if snap_ts <= ts:
                sub = Subscription(Channel.BOOK, syncs[ex].symbol)
                syncs[ex].on_snapshot(ad.parse_snapshot(body, sub, 0))
                del snaps[ex]
        out = ad.decode(payload, int(ts * 1e9))
        kinds[type(out[0]).__name__ if out else "none"] += 1
        for ev in out:
            if isinstance(ev, Trade | Ticker | BookMessage):
                symbols.add(ev.symbol)
            if isinstance(ev, BookMessage) and ev.exchange_symbol in syncs:
                syncs[ev.exchange_symbol].on_message(ev)
    assert kinds["Ticker"] > 500 and kinds["BookMessage"] > 100 and kinds["Trade"] > 10
    assert kinds["none"] > 0  # kline_1m: well-formed, not handled
    # unsubscribed ids are unified best-effort, dated contracts with their expiry
    assert {"BCH/USD:BCH", "LINK/USD:LINK-211231", "BTC/USD:BTC-211231", "ETH/USD:ETH-210924"} <= symbols
    for ex, sync in syncs.items():
        st = sync.stats()
        assert sync.state.value == "live", (ex, st)
        assert st.gaps == 0 and st.resyncs == 0 and st.applied >= 1
        bid, ask = sync.book.best_bid(), sync.book.best_ask()
        assert bid is not None and ask is not None and bid[0] < ask[0]
