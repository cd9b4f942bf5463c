"""HTX adapters under the shared decode fuzzing (``tests/property/test_decode_fuzz.py``): mutated real frames and
REST bodies return events or raise ``DecodeError``, nothing else.

The shared module lists its adapters by hand; this file feeds it HTX's seeds with the same mutation strategies and
checks, without editing it. HTX server frames are gzip binary frames that the engine inflates before
``decode``, so the seeds are the inflated JSON payloads: real frames of the shipped recordings
(``cryptofeed_htx_*``: trades, subscribe acks, pings, ``depth.step0``, trimmed to a few levels) plus the documented
control and data shapes the adapters parse (``docs/protocols/htx.md`` and ``tests/exchanges/test_htx.py``: sub /
unsub acks, errors with and without an id, ``{"ping"}``, the spot ``rep`` snapshot answer, ``mbp`` increments,
spot / swap ``bbo``, spot ``ticker``, swap ``depth.size_150.high_freq`` snapshot and update).

Each adapter is primed with subscriptions (and, spot, a pending snapshot ``req``; swaps, their contract sizes) so
the ack / error paths that look topics and request ids up are exercised too.
"""

from __future__ import annotations

import ast
import itertools
import json
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cryptolink import recordings
from cryptolink.exchanges.base import ExchangeAdapter, FrameCompression, Instrument, inflate
from cryptolink.exchanges.htx import HtxLinearSwapAdapter, HtxSpotAdapter
from cryptolink.models import Channel, Subscription
from tests.property import PROFILE, examples
from tests.property.test_decode_fuzz import check_decode, check_rest, mutated

SPOT_CONTROL = [
    '{"ping":1492420473027}',
    '{"id":"1","status":"ok","subbed":"market.btcusdt.trade.detail","ts":1}',
    '{"id":"3","status":"ok","unsubbed":"market.btcusdt.mbp.150","ts":1}',
    '{"id":"2","status":"error","err-code":"bad-request","err-msg":"invalid topic market.btcusdt.mbp.150","ts":1}',
    '{"status":"error","err-code":"bad-request","err-msg":"invalid topic market.btcusdt.mbp.150"}',
    '{"id":"41","status":"error","err-code":"bad-request","err-msg":"request timeout","ts":1}',
    '{"id":"41","rep":"market.btcusdt.mbp.150","status":"ok","ts":1698359289261,"data":{"seqNum":104999417756,'
    '"bids":[[9058.27,1.5]],"asks":[[9084.27,0.2],[9085.69,3e-05]]}}',
    '{"ch":"market.btcusdt.mbp.150","ts":1103,"tick":{"seqNum":103,"prevSeqNum":100,"bids":[[10,0],[9.5,2]],'
    '"asks":[]}}',
    '{"ch":"market.btcusdt.mbp.150","ts":1104,"tick":{"seqNum":104,"prevSeqNum":103}}',
    '{"ch":"market.btcusdt.bbo","ts":1671941599613,"tick":{"seqId":161499562790,"ask":16829.51,"askSize":0.707776,'
    '"bid":16829.5,"bidSize":1.685945,"quoteTime":1671941599612,"symbol":"btcusdt"}}',
    '{"ch":"market.btcusdt.ticker","ts":1,"tick":{"open":1,"close":2,"bid":1.9,"bidSize":1,"ask":2.1,"askSize":2,'
    '"lastPrice":2.0,"lastSize":0.1}}',
    '{"ch":"market.btcusdt.trade.detail","ts":1,"tick":{"id":1,"ts":1,"data":[{"id":1.0e26,"ts":1,"tradeId":77,'
    '"amount":0.25,"price":60000.5,"direction":"sell"}]}}',
]
SWAP_CONTROL = [
    '{"ping":1645289389594}',
    '{"id":"1","status":"ok","subbed":"market.BTC-USDT.depth.size_150.high_freq","ts":1}',
    '{"id":"2","status":"ok","unsubbed":"market.BTC-USDT.trade.detail","ts":1}',
    '{"id":"1","status":"error","err-code":"bad-request","err-msg":"invalid topic '
    'market.BTC-USDT.depth.size_150.high_freq","ts":1}',
    '{"status":"error","err-code":"x","err-msg":"not json string"}',
    '{"ch":"market.BTC-USDT.depth.size_150.high_freq","ts":5,"tick":{"mrid":1,"id":2,"bids":[[100.1,3],[100.0,1]],'
    '"asks":[[100.2,4]],"ts":5,"version":7,"event":"snapshot","ch":"market.BTC-USDT.depth.size_150.high_freq"}}',
    '{"ch":"market.BTC-USDT.depth.size_150.high_freq","ts":5,"tick":{"mrid":1,"id":2,"bids":[[100.1,0]],"asks":[],'
    '"ts":5,"version":8,"event":"update","ch":"market.BTC-USDT.depth.size_150.high_freq"}}',
    '{"ch":"market.BTC-USDT.bbo","ts":9,"tick":{"mrid":1,"id":2,"bid":[30000.1,12],"ask":[30000.2,7],"ts":8,'
    '"version":55,"ch":"market.BTC-USDT.bbo"}}',
    '{"ch":"market.BTC-USDT.trade.detail","ts":1,"tick":{"id":1,"ts":1,"data":[{"amount":4,"quantity":0.004,'
    '"trade_turnover":120.5,"ts":1,"id":431311833130000,"price":30125,"direction":"buy"}]}}',
]

ADAPTERS = {
    "htx-spot": (HtxSpotAdapter, "BTC/USDT", "cryptofeed_htx_HUOBI.ws.44.0.gz", SPOT_CONTROL),
    "htx-perp": (HtxLinearSwapAdapter, "BTC/USDT:USDT", "cryptofeed_htx_HUOBI_SWAP.ws.2.0.gz", SWAP_CONTROL),
}


def _kind(obj: object) -> str:
    if not isinstance(obj, dict):
        return "?"
    if "ch" in obj:
        return str(obj["ch"]).split(".", 2)[-1]
    return ",".join(sorted(obj))


def _trim(obj: dict[str, object], levels: int = 5) -> str:
    """A recorded frame with its book sides cut to ``levels`` (``depth.step0`` carries 150 a side)."""
    tick = obj.get("tick")
    if isinstance(tick, dict):
        for side in ("bids", "asks"):
            if isinstance(tick.get(side), list):
                tick[side] = tick[side][:levels]
    return json.dumps(obj)


@cache
def frames(name: str) -> tuple[str, ...]:
    """Two inflated recorded frames per kind (trades, acks, pings, ``depth.step0``) plus the documented shapes."""
    _, _, rec, control = ADAPTERS[name]
    seen: dict[str, int] = {}
    out: list[str] = []
    for r in itertools.islice(recordings.iter_cryptofeed_ws(rec), 4000):
        if r.kind != "received":
            continue
        obj = json.loads(inflate(ast.literal_eval(r.payload), FrameCompression.GZIP, 1 << 22))
        k = _kind(obj)
        if seen.get(k, 0) < 2:
            seen[k] = seen.get(k, 0) + 1
            out.append(_trim(obj))
    return (*out, *control)


def _http(name: str, marker: str) -> list[str]:
    return [r.body for r in recordings.iter_cryptofeed_http(name) if marker in r.url]


def _shrink(body: str) -> str:
    obj = json.loads(body)
    obj["data"] = obj["data"][:3]
    return json.dumps(obj)


@cache
def bodies(name: str) -> dict[str, tuple[str, ...]]:
    """REST seeds: recorded instrument lists (first 3 entries; swaps: the linear list and the inverse one, which
    parses to nothing) and documented ``history/trade`` answers. No ``snapshot``: HTX books come over the
    WebSocket."""
    if name == "htx-spot":
        inst = [_shrink(b) for b in _http("cryptofeed_htx_HUOBI.0.gz", "/v1/common/symbols")]
        trades = (
            '{"ch":"market.btcusdt.trade.detail","status":"ok","ts":1,"data":[{"id":5,"ts":3,"data":[{"id":1.2e26,'
            '"ts":3,"trade-id":19,"amount":0.5,"price":100.25,"direction":"sell"}]},{"id":4,"ts":2,"data":[{"id":'
            '1.1e26,"ts":2,"trade-id":11,"amount":1,"price":100,"direction":"buy"}]}]}',
        )
    else:
        inst = [_shrink(b) for b in _http("cryptofeed_htx_HUOBI_SWAP.0.gz", "/linear-swap-api/")]
        inst += [_shrink(b) for b in _http("cryptofeed_htx_HUOBI_SWAP.0.gz", "/swap-api/")]
        trades = (
            '{"status":"ok","data":[{"id":9,"ts":1,"data":[{"amount":4,"quantity":0.004,"trade_turnover":120.5,'
            '"ts":1,"id":431311833130000,"price":30125,"direction":"buy"}]}]}',
        )
    return {"snapshot": (), "instruments": tuple(inst), "trades": trades}


def adapter(name: str) -> ExchangeAdapter:
    """A fresh adapter, subscribed to trades / ticker / book of the seed symbol (spot: with a pending snapshot
    ``req`` id 41; swaps: with the recorded contract sizes)."""
    cls, symbol, _, _ = ADAPTERS[name]
    ad = cls()
    subs = [Subscription(ch, symbol) for ch in (Channel.TRADES, Channel.TICKER, Channel.BOOK)]
    ad.subscribe_requests(subs, 1)
    if isinstance(ad, HtxSpotAdapter):
        ad.snapshot_frame(subs[2], 41)
    else:
        ad.set_instruments(_swap_instruments())
    return ad


@cache
def _swap_instruments() -> tuple[Instrument, ...]:
    return tuple(HtxLinearSwapAdapter().parse_instruments(bodies("htx-perp")["instruments"][0].encode()))


@pytest.mark.parametrize("name", list(ADAPTERS))
def test_seeds_decode(name: str) -> None:
    ad = adapter(name)
    seeds = frames(name)
    kinds = {_kind(json.loads(f)) for f in seeds}
    assert {"trade.detail", "depth.step0", "ping"} <= kinds
    assert sum(len(ad.decode(f, 1)) for f in seeds) >= 15
    insts = [ad.parse_instruments(b.encode()) for b in bodies(name)["instruments"]]
    assert insts and insts[0]
    sub = Subscription(Channel.TRADES, ADAPTERS[name][1])
    assert all(ad.parse_trades(b.encode(), sub, 1) for b in bodies(name)["trades"])


@pytest.mark.parametrize("name", list(ADAPTERS))
@settings(PROFILE, max_examples=examples(250))
@given(data=st.data())
def test_decode_returns_events_or_raises_decode_error(name: str, data: st.DataObject) -> None:
    check_decode(adapter(name), data.draw(mutated(frames(name)), label="frame"))


@pytest.mark.parametrize("name", list(ADAPTERS))
@pytest.mark.parametrize("kind", ["snapshot", "instruments", "trades"])
@settings(PROFILE, max_examples=examples(60))
@given(data=st.data())
def test_rest_parsers_return_or_raise_decode_error(name: str, kind: str, data: st.DataObject) -> None:
    if kind == "snapshot":
        pytest.skip("HTX books are snapshotted over the WebSocket (spot req/rep, swap event:snapshot)")
    body = data.draw(mutated(bodies(name)[kind]), label="body")
    check_rest(adapter(name), kind, body if isinstance(body, bytes) else body.encode(), ADAPTERS[name][1])
