"""Gate adapters under the shared decode fuzzing (``tests/property/test_decode_fuzz.py``): mutated real frames and
REST bodies return events or raise ``DecodeError``, nothing else.

The shared module lists its adapters by hand; this file feeds it Gate's seeds (the shipped recordings plus the
documented answer shapes) with the same mutation strategies and checks, without editing it.
"""

from __future__ import annotations

import itertools
import json
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cryptolink import recordings
from cryptolink.exchanges.base import ExchangeAdapter
from cryptolink.exchanges.gate import GateFuturesAdapter, GateSpotAdapter
from tests.property import PROFILE, examples
from tests.property.test_decode_fuzz import check_decode, check_rest, mutated

CONTROL = [
    '{"time":1,"time_ms":2,"id":3,"conn_id":"a","channel":"spot.obu","event":"subscribe",'
    '"payload":["ob.BTC_USDT.400"],"result":{"status":"success"}}',
    '{"time":1,"id":3,"channel":"spot.obu","event":"subscribe","payload":["ob.BTC_USDT.400"],'
    '"error":{"code":2,"message":"Alert sub ob.BTC_USDT.400"},"result":{"status":"fail"}}',
    '{"time":1,"time_ms":2,"channel":"spot.pong","event":"","error":null,"result":null}',
    '{"channel":"spot.obu","result":{"t":1,"full":true,"s":"ob.BTC_USDT.50","u":5,"b":[["1","2"]],"a":[["3","4"]]}}',
    '{"channel":"spot.obu","result":{"t":1,"s":"ob.BTC_USDT.50","U":6,"u":9,"b":[],"a":[["3","0"]]}}',
    '{"time":1,"channel":"spot.book_ticker","event":"update","result":{"t":1,"u":4,"s":"BTC_USDT","b":"1",'
    '"B":"2","a":"3","A":"4"}}',
    '{"channel":"futures.trades","event":"update","time":1,"result":[{"size":-108,"id":27753479,'
    '"create_time":1545136464,"create_time_ms":1545136464123,"price":"96.4","contract":"BTC_USDT"}]}',
]

ADAPTERS = {"gate-spot": (GateSpotAdapter, "BTC/USDT"), "gate-perp": (GateFuturesAdapter, "BTC/USDT:USDT")}


def _kind(frame: str) -> str:
    try:
        obj = json.loads(frame)
    except ValueError:
        return "?"
    return f"{obj.get('channel')}/{obj.get('event')}" if isinstance(obj, dict) else "?"


@cache
def frames(name: str) -> tuple[str, ...]:
    rec = (
        "cryptofeed_gate_GATEIO.ws.1.0.gz"
        if name == "gate-spot"
        else "cryptofeed_gate_GATEIO_FUTURES.ws.1.0.gz"
    )
    seen: dict[str, int] = {}
    out: list[str] = []
    for r in itertools.islice(recordings.iter_cryptofeed_ws(rec), 4000):
        if r.kind != "received":
            continue
        k = _kind(r.payload)
        if seen.get(k, 0) < 2:
            seen[k] = seen.get(k, 0) + 1
            out.append(r.payload)
    return (*out, *CONTROL)


def _http(name: str, marker: str) -> list[str]:
    return [r.body for r in recordings.iter_cryptofeed_http(name) if marker in r.url]


def _shrink(body: str) -> str:
    obj = json.loads(body)
    if isinstance(obj, list):
        return json.dumps(obj[:3])
    for side in ("bids", "asks"):
        obj[side] = obj[side][:5]
    return json.dumps(obj)


@cache
def bodies(name: str) -> dict[str, tuple[str, ...]]:
    trades = (
        '[{"id":"4999","create_time":"1","create_time_ms":"1606292218213.45","currency_pair":"BTC_USDT",'
        '"side":"buy","amount":"0.5","price":"100"}]',
    )
    if name == "gate-spot":
        snaps = [_shrink(b) for b in _http("cryptofeed_gate_GATEIO.http.0.0.gz", "order_book")[:2]]
        inst = [_shrink(b) for b in _http("cryptofeed_gate_GATEIO.0.gz", "currency_pairs")]
    else:
        snaps = [_shrink(b) for b in _http("cryptofeed_gate_GATEIO_FUTURES.http.0.0.gz", "order_book")[:2]]
        inst = [_shrink(b) for b in _http("cryptofeed_gate_GATEIO_FUTURES.0.gz", "contracts")]
    return {"snapshot": tuple(snaps), "instruments": tuple(inst), "trades": trades}


def adapter(name: str) -> ExchangeAdapter:
    return ADAPTERS[name][0]()


@pytest.mark.parametrize("name", list(ADAPTERS))
def test_seeds_decode(name: str) -> None:
    ad = adapter(name)
    assert sum(len(ad.decode(f, 1)) for f in frames(name)) >= 6
    assert all(ad.parse_instruments(b.encode()) for b in bodies(name)["instruments"])


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
    if kind == "trades" and name == "gate-perp":
        pytest.skip("no futures trade backfill")
    body = data.draw(mutated(bodies(name)[kind]), label="body")
    check_rest(adapter(name), kind, body if isinstance(body, bytes) else body.encode(), ADAPTERS[name][1])
