"""Bitget decoders on mutated frames and bodies: they return events or raise ``DecodeError``, nothing else (the
shared property module's mutation strategy and checks, seeded with Bitget's recorded and documented frames)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cryptolink import recordings
from cryptolink.exchanges.bitget import BitgetAdapter
from cryptolink.models import Market
from tests.property import PROFILE, examples
from tests.property.test_decode_fuzz import check_decode, check_rest, mutated


def _seeds() -> tuple[str, ...]:
    kinds: dict[str, int] = {}
    out: list[str] = []
    for rec in recordings.iter_cryptofeed_ws("cryptofeed_bitget_BITGET.ws.1.0.gz"):
        if rec.kind != "received":
            continue
        obj = json.loads(rec.payload)
        key = f"{obj.get('event')}/{obj.get('arg', {}).get('channel')}/{obj.get('action')}"
        if kinds.get(key, 0) < 2:
            kinds[key] = kinds.get(key, 0) + 1
            out.append(rec.payload[:3000] if "books" not in key else rec.payload)
    v2 = [
        '{"action":"update","arg":{"instType":"SPOT","channel":"trade","instId":"BTCUSDT"},"data":[{"ts":"1",'
        '"price":"26293.4","size":"0.0013","side":"buy","tradeId":"1000000000"}],"ts":1}',
        '{"action":"snapshot","arg":{"instType":"SPOT","channel":"ticker","instId":"BTCUSDT"},"data":[{"instId":'
        '"BTCUSDT","lastPr":"1","bidPr":"1","askPr":"2","bidSz":"1","askSz":"1","ts":"1"}],"ts":1}',
        '{"action":"update","arg":{"instType":"SPOT","channel":"books","instId":"BTCUSDT"},"data":[{"asks":'
        '[["2","1"]],"bids":[["1","1"]],"checksum":-1,"seq":5,"ts":"1"}],"ts":1}',
        '{"event":"error","code":30001,"msg":"instType:SPOT,channel:books,instId:X doesn\'t exist"}',
        "pong",
    ]
    return (*out, *v2)


SEEDS = _seeds()
BODIES = {
    "instruments": (
        '{"code":"00000","msg":"success","data":[{"symbol":"BTCUSDT","baseCoin":"BTC","quoteCoin":"USDT",'
        '"status":"online","symbolType":"perpetual","symbolStatus":"normal"}]}',
    ),
    "trades": (
        '{"code":"00000","msg":"success","data":[{"tradeId":"5","price":"1","size":"2","side":"Buy","ts":"1",'
        '"symbol":"BTCUSDT"}]}',
    ),
}


@pytest.mark.parametrize("market", [Market.SPOT, Market.PERPETUAL])
@settings(PROFILE, max_examples=examples(200))
@given(data=st.data())
def test_decode_returns_events_or_raises_decode_error(market: Market, data: st.DataObject) -> None:
    check_decode(BitgetAdapter(market), data.draw(mutated(SEEDS), label="frame"))


@pytest.mark.parametrize("kind", ["instruments", "trades"])
@settings(PROFILE, max_examples=examples(60))
@given(data=st.data())
def test_rest_parsers_return_or_raise_decode_error(kind: str, data: st.DataObject) -> None:
    body = data.draw(mutated(BODIES[kind]), label="body")
    raw = body if isinstance(body, bytes) else body.encode()
    check_rest(BitgetAdapter(Market.PERPETUAL), kind, raw, "BTC/USDT:USDT")
