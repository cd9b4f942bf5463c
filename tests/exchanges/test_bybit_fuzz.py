"""Bybit adapters on mutated frames and REST bodies: events or ``DecodeError``, nothing else.

The shared property test (``tests/property/test_decode_fuzz.py``) lists its adapters and seeds by hand; this
module feeds the same mutation strategies and checks (imported from it) with Bybit seeds: the real v5 frames of
the shipped recordings, the documented control and push frames (trades, partial tickers, book deltas,
acks/errors/pongs) and documented REST bodies.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cryptolink import recordings
from cryptolink.exchanges import get_adapter
from cryptolink.models import Channel, Subscription
from tests.property import PROFILE, examples
from tests.property.test_decode_fuzz import check_decode, check_rest, mutated

MARKETS = {"spot": "BTC/USDT", "perpetual": "BTC/USDT:USDT"}

DOCUMENTED = (
    '{"success":true,"ret_msg":"subscribe","conn_id":"2324d924","req_id":"10001","op":"subscribe"}',
    '{"success":true,"ret_msg":"","conn_id":"c","req_id":"","op":"subscribe"}',
    '{"success":false,"ret_msg":"error:handler not found,topic:orderbook.50.NOPEUSDT","conn_id":"c",'
    '"req_id":"3","op":"subscribe"}',
    '{"success":false,"ret_msg":"Invalid symbol :[orderbook.50.NOPEUSDT]","conn_id":"c","req_id":"4",'
    '"op":"subscribe"}',
    '{"success":true,"ret_msg":"pong","conn_id":"c","op":"ping"}',
    '{"req_id":"t","op":"pong","args":["1675418560633"],"conn_id":"c"}',
    '{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1672304486868,"data":[{"T":1672304486865,'
    '"s":"BTCUSDT","S":"Buy","v":"0.001","p":"16578.50","L":"PlusTick","i":"20f43950-d8dd","BT":false}]}',
    '{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1,"data":[{"T":1,"s":"BTCUSDT","S":"Sell",'
    '"v":"0.5","p":"2","i":"2290000000061666327","BT":false}]}',
    '{"topic":"orderbook.50.BTCUSDT","type":"snapshot","ts":1,"data":{"s":"BTCUSDT","b":[["1","2"]],'
    '"a":[["3","4"]],"u":10,"seq":5},"cts":1}',
    '{"topic":"orderbook.50.BTCUSDT","type":"delta","ts":1,"data":{"s":"BTCUSDT","b":[],"a":[["3","0"]],'
    '"u":11,"seq":6},"cts":1}',
    '{"topic":"tickers.BTCUSDT","type":"snapshot","data":{"symbol":"BTCUSDT","lastPrice":"17216.00",'
    '"bid1Price":"17215.50","bid1Size":"84.489","ask1Price":"17216.00","ask1Size":"83.020"},"cs":2,"ts":1}',
    '{"topic":"tickers.BTCUSDT","type":"delta","data":{"symbol":"BTCUSDT","bid1Size":"80"},"cs":3,"ts":2}',
)
BODIES = {
    "snapshot": (
        '{"retCode":0,"retMsg":"OK","result":{"s":"BTCUSDT","b":[["65485.47","47.081829"]],'
        '"a":[["65557.7","16.606555"]],"ts":1716863719031,"u":230704,"seq":1432604333,"cts":1716863718905},'
        '"retExtInfo":{},"time":1716863719382}',
    ),
    "instruments": (
        '{"retCode":0,"retMsg":"OK","result":{"category":"linear","list":[{"symbol":"BTCUSDT",'
        '"contractType":"LinearPerpetual","status":"Trading","baseCoin":"BTC","quoteCoin":"USDT",'
        '"settleCoin":"USDT","lotSizeFilter":{"qtyStep":"0.001","minOrderQty":"0.001"}},{"symbol":"BTCUSD",'
        '"contractType":"InversePerpetual","status":"Trading","baseCoin":"BTC","quoteCoin":"USD",'
        '"settleCoin":"BTC"},{"symbol":"ETHUSDT","status":"Trading","baseCoin":"ETH","quoteCoin":"USDT"}],'
        '"nextPageCursor":""},"retExtInfo":{},"time":1}',
    ),
    "trades": (
        '{"retCode":0,"retMsg":"OK","result":{"category":"spot","list":[{"execId":"2100000000007764263",'
        '"symbol":"BTCUSDT","price":"16618.49","size":"0.00012","side":"Buy","time":"1672052955758",'
        '"isBlockTrade":false}]},"retExtInfo":{},"time":1672053054358}',
    ),
}


def _seeds() -> tuple[str, ...]:
    recorded = itertools.chain.from_iterable(
        (r.payload for r in recordings.iter_cryptofeed_ws(n) if r.kind == "received")
        for n in ("cryptofeed_bybit_BYBIT.ws.1.0.gz", "cryptofeed_bybit_BYBIT.ws.2.0.gz")
    )
    return (*itertools.islice(recorded, 12), *DOCUMENTED)


SEEDS = _seeds()


@pytest.mark.parametrize("market", list(MARKETS))
def test_seeds_decode(market: str) -> None:
    ad = get_adapter("bybit", market)
    assert sum(len(ad.decode(f, 1)) for f in SEEDS) >= 15
    sym = MARKETS[market]
    assert ad.parse_snapshot(BODIES["snapshot"][0].encode(), Subscription(Channel.BOOK, sym), 1).is_snapshot
    assert ad.parse_trades(BODIES["trades"][0].encode(), Subscription(Channel.TRADES, sym), 1)
    ad.parse_instruments(BODIES["instruments"][0].encode())


@pytest.mark.parametrize("market", list(MARKETS))
@settings(PROFILE, max_examples=examples(250))
@given(data=st.data())
def test_decode_returns_events_or_raises_decode_error(market: str, data: st.DataObject) -> None:
    check_decode(get_adapter("bybit", market), data.draw(mutated(SEEDS), label="frame"))


@pytest.mark.parametrize("market", list(MARKETS))
@pytest.mark.parametrize("kind", ["snapshot", "instruments", "trades"])
@settings(PROFILE, max_examples=examples(60))
@given(data=st.data())
def test_rest_parsers_return_or_raise_decode_error(market: str, kind: str, data: st.DataObject) -> None:
    body = data.draw(mutated(BODIES[kind]), label="body")
    check_rest(
        get_adapter("bybit", market),
        kind,
        body if isinstance(body, bytes) else body.encode(),
        MARKETS[market],
    )
