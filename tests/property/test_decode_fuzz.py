"""Every adapter's decoders on mutated recorded frames: they return events or raise ``DecodeError``, nothing else.

Seeds are real frames from the shipped recordings (``cryptolink.recordings``: hftbacktest Binance captures,
cryptofeed Binance / Binance Futures / OKX captures, see their README) plus the control frames each protocol
documents (acks, errors, pongs). Mutations are JSON-aware (drop a key or an item, swap a value's type, null,
huge or non-finite numbers, non-numeric text where a number is expected, nested junk, lists of the wrong
length) and byte-level (truncation, flipped bytes, invalid UTF-8, random binary frames). The REST parsers
(``parse_snapshot``, ``parse_instruments``, ``parse_trades``) get the same treatment on recorded or documented
bodies.

A leak (``KeyError``, ``TypeError``, ``IndexError``, ``AttributeError``, ``InvalidOperation``...) would reach the
engine's reader loop as an adapter bug instead of a counted, logged decode error.

Control-frame shapes: Binance ``{"result": null, "id": N}`` / ``{"code": 2, "msg": "...", "id": N}``
(https://developers.binance.com/docs/binance-spot-api-docs/web-socket-streams#live-subscribingunsubscribing-to-streams);
OKX ``{"event": "subscribe", "arg": {...}}``, ``{"event": "error", "code": "60012", "msg": "..."}`` and the text
``pong`` (https://www.okx.com/docs-v5/en/#overview-websocket).
"""

from __future__ import annotations

import importlib.util
import itertools
import json
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any, get_args

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from cryptolink import recordings
from cryptolink.exchanges import exchanges, get_adapter, resolve
from cryptolink.exchanges.base import Decoded, DecodeError, ExchangeAdapter
from cryptolink.models import Channel, Subscription
from tests.property import PROFILE, examples

DECODED_TYPES = get_args(Decoded)

ADAPTERS: dict[str, tuple[str, str, str]] = {
    # name: (exchange, market, unified symbol of the recorded frames / bodies)
    "binance-spot": ("binance", "spot", "BTC/USDT"),
    "binanceusdm": ("binance", "perpetual", "BTC/USDT:USDT"),
    "binancecoinm": ("binancecoinm", "perpetual", "BTC/USD:BTC"),
    "okx-spot": ("okx", "spot", "BTC/USDT"),
    "okx-swap": ("okx", "perpetual", "BTC/USDT:USDT"),
}
FUZZED_ELSEWHERE: dict[str, str] = {
    # exchange: its own module feeding these same strategies and checks with its seeds
    "bybit": "tests.exchanges.test_bybit_fuzz",
    "bitget": "tests.exchanges.test_bitget_fuzz",
    "gate": "tests.exchanges.test_gate_fuzz",
    "htx": "tests.exchanges.test_htx_fuzz",
}
PER_KIND = 2
"""Seed frames kept per kind of frame (stream type, channel, event)."""


def adapter(name: str) -> ExchangeAdapter:
    exchange, market, _ = ADAPTERS[name]
    try:
        return get_adapter(exchange, market)
    except ValueError:
        pytest.skip(f"no {exchange} {market} adapter in this tree")


# ---------------------------------------------------------------------------------------------------- seeds
def _pick(frames: Iterator[str], kind: Callable[[str], str], limit: int = 4000) -> list[str]:
    seen: dict[str, int] = {}
    out: list[str] = []
    for frame in itertools.islice(frames, limit):
        k = kind(frame)
        if seen.get(k, 0) < PER_KIND:
            seen[k] = seen.get(k, 0) + 1
            out.append(frame)
    return out


def _binance_kind(frame: str) -> str:
    try:
        obj = json.loads(frame)
    except ValueError:
        return "?"
    if isinstance(obj, dict) and "stream" in obj:
        return str(obj["stream"]).split("@", 1)[-1].split("@")[0]
    return ",".join(sorted(obj)) if isinstance(obj, dict) else "?"


def _okx_kind(frame: str) -> str:
    try:
        obj = json.loads(frame)
    except ValueError:
        return frame[:8]
    if not isinstance(obj, dict):
        return "?"
    arg = obj.get("arg") or {}
    return f"{obj.get('event')}/{arg.get('channel')}/{obj.get('action')}"


def _hft(name: str) -> Iterator[str]:
    if name in recordings.available():
        for _, frame in recordings.iter_hftbacktest(name):
            yield frame


def _cryptofeed_ws(name: str) -> Iterator[str]:
    for rec in recordings.iter_cryptofeed_ws(name):
        if rec.kind == "received":
            yield rec.payload


def _shrink_book(body: str, levels: int = 5) -> str:
    obj = json.loads(body)
    for side in ("bids", "asks"):
        if isinstance(obj.get(side), list):
            obj[side] = obj[side][:levels]
    return json.dumps(obj)


BINANCE_CONTROL = [
    '{"result":null,"id":1}',
    '{"result":["btcusdt@depth@100ms"],"id":2}',
    '{"code":2,"msg":"Invalid request: unknown variable","id":3}',
    '{"code":-1121,"msg":"Invalid symbol."}',
]
OKX_CONTROL = [
    "pong",
    '{"event":"subscribe","arg":{"channel":"books","instId":"BTC-USDT"},"connId":"a4d3ae55"}',
    '{"event":"unsubscribe","arg":{"channel":"trades","instId":"BTC-USDT"},"connId":"a4d3ae55"}',
    '{"event":"error","code":"60012","msg":"Invalid request","connId":"a4d3ae55"}',
    '{"event":"notice","code":"64008","msg":"The connection will soon be closed for a service upgrade.",'
    '"connId":"a4d3ae55"}',
]


@cache
def frames(name: str) -> tuple[str, ...]:
    """Seed WebSocket frames for adapter ``name``."""
    if name == "binance-spot":
        hft = itertools.chain(
            _hft("hftbacktest_binance_spot_btcusdt_20240808.gz"),
            _cryptofeed_ws("cryptofeed_binance_BINANCE.ws.1.0.gz"),
        )
        return (*_pick(hft, _binance_kind), *BINANCE_CONTROL)
    if name == "binanceusdm":
        hft = itertools.chain(
            _hft("hftbacktest_binance_usdm_btcusdt_20240808.gz"),
            _cryptofeed_ws("cryptofeed_binance_BINANCE_FUTURES.ws.1.0.gz"),
        )
        return (*_pick(hft, _binance_kind), *BINANCE_CONTROL)
    if name == "binancecoinm":
        coinm = [n for n in recordings.available() if "coinm" in n]
        hft = itertools.chain.from_iterable(_hft(n) for n in coinm)
        return (*_pick(hft, _binance_kind), *BINANCE_CONTROL)
    okx = _cryptofeed_ws("cryptofeed_okx_OKX.ws.1.0.gz")
    return (*_pick(okx, _okx_kind), *OKX_CONTROL)


def _http(name: str, marker: str) -> list[str]:
    return [r.body for r in recordings.iter_cryptofeed_http(name) if marker in r.url]


def _trim_list(body: str, key: str, n: int = 3) -> str:
    obj = json.loads(body)
    obj[key] = obj[key][:n]
    return json.dumps(obj)


@cache
def bodies(name: str) -> dict[str, tuple[str, ...]]:
    """Seed REST bodies for adapter ``name``: ``snapshot``, ``instruments``, ``trades``."""
    if name.startswith("binance"):
        if name == "binance-spot":
            snaps = [_shrink_book(b) for b in _http("cryptofeed_binance_BINANCE.http.0.0.gz", "/depth")]
            snaps += [
                _shrink_book(f)
                for f in _hft("hftbacktest_binance_spot_btcusdt_20240808.gz")
                if "lastUpdateId" in f[:20]
            ][:1]
            info = [
                _trim_list(b, "symbols") for b in _http("cryptofeed_binance_BINANCE.0.gz", "exchangeInfo")
            ]
            trades = [
                '[{"id":28457,"price":"4.00000100","qty":"12.00000000","quoteQty":"48.000012",'
                '"time":1499865549590,"isBuyerMaker":true,"isBestMatch":true}]'
            ]
        else:
            rec = "hftbacktest_binance_usdm_btcusdt_20240808.gz" if name == "binanceusdm" else ""
            coinm = [n for n in recordings.available() if "coinm" in n]
            hft = _hft(rec) if rec else itertools.chain.from_iterable(_hft(n) for n in coinm)
            snaps = [_shrink_book(f) for f in itertools.islice(hft, 50) if "lastUpdateId" in f[:20]][:1]
            if name == "binanceusdm":
                snaps += [
                    _shrink_book(b) for b in _http("cryptofeed_binance_BINANCE_FUTURES.http.0.0.gz", "/depth")
                ]
            info = [
                _trim_list(b, "symbols")
                for b in _http("cryptofeed_binance_BINANCE_FUTURES.0.gz", "exchangeInfo")
            ]
            trades = [
                '[{"a":26129,"p":"0.01633102","q":"4.70443515","f":27781,"l":27781,"T":1498793709153,'
                '"m":true}]'
            ]
        return {"snapshot": tuple(snaps), "instruments": tuple(info), "trades": tuple(trades)}
    inst = [_trim_list(b, "data") for b in _http("cryptofeed_okx_OKX.0.gz", "/public/instruments")]
    okx_snap = (
        '{"code":"0","msg":"","data":[{"asks":[["41006.8","0.60038921","0","1"]],'
        '"bids":[["41006.3","0.30178218","0","2"]],"ts":"1629966436396"}]}'
    )
    okx_trades = (
        '{"code":"0","msg":"","data":[{"instId":"BTC-USDT","side":"sell","sz":"0.00001","px":"29963.2",'
        '"tradeId":"242720720","ts":"1654161646974"}]}'
    )
    return {"snapshot": (okx_snap,), "instruments": tuple(inst), "trades": (okx_trades,)}


# ------------------------------------------------------------------------------------------------- mutations
HUGE: list[Any] = [10**30, -(10**30), 10**400, 2**63, -(2**63) - 1, 1e308, -0.0, 0.5]
BAD_TEXT = ["", "abc", "NaN", "Infinity", "-", "1e999999", "1_000", " 1", "0x10", "\u00e9", "1.2.3"]
junk: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.sampled_from(HUGE)
    | st.sampled_from(BAD_TEXT)
    | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=5,
)


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path (keys / indexes) into ``obj``, containers included."""
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, (*prefix, i))


def _swap_type(value: Any) -> Any:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            try:
                return float(value)
            except ValueError:
                return [value]
    if isinstance(value, list):
        return {str(i): v for i, v in enumerate(value)}
    if isinstance(value, dict):
        return list(value.values())
    return 0


@st.composite
def json_mutation(draw: st.DrawFn, seed: str) -> str:
    obj = json.loads(seed)
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(obj))
        path = draw(st.sampled_from(paths))
        action = draw(st.sampled_from(["drop", "replace", "swap", "null", "huge", "text", "length", "nest"]))
        if not path:
            obj = draw(junk) if action in ("replace", "nest") else _swap_type(obj)
            continue
        parent = obj
        for p in path[:-1]:
            parent = parent[p]
        key = path[-1]
        value = parent[key]
        if action == "drop":
            del parent[key]
        elif action == "replace":
            parent[key] = draw(junk)
        elif action == "swap":
            parent[key] = _swap_type(value)
        elif action == "null":
            parent[key] = None
        elif action == "huge":
            parent[key] = draw(st.sampled_from(HUGE))
        elif action == "text":
            parent[key] = draw(st.sampled_from(BAD_TEXT))
        elif action == "length":
            if isinstance(value, list):
                n = draw(st.integers(0, len(value) + 2))
                parent[key] = value[:n] + [draw(junk) for _ in range(max(0, n - len(value)))]
            else:
                parent[key] = [value] * draw(st.integers(0, 3))
        else:
            parent[key] = {"x": value, "y": [value, draw(junk)]}
    try:
        return json.dumps(obj)
    except ValueError:  # pragma: no cover - json.dumps of these values does not fail
        return seed


@st.composite
def byte_mutation(draw: st.DrawFn, seed: str) -> bytes:
    data = bytearray(seed.encode())
    action = draw(st.sampled_from(["truncate", "flip", "invalid-utf8", "binary", "prefix"]))
    if action == "truncate" and data:
        return bytes(data[: draw(st.integers(0, len(data) - 1))])
    if action == "flip" and data:
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= draw(st.integers(1, 255))
        return bytes(data)
    if action == "invalid-utf8":
        i = draw(st.integers(0, len(data)))
        return (
            bytes(data[:i])
            + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80\x80"]))
            + bytes(data[i:])
        )
    if action == "binary":
        return draw(st.binary(max_size=64))
    return draw(st.sampled_from([b"\x1f\x8b\x08\x00", b"\x00", b"\xef\xbb\xbf"])) + bytes(data)


@st.composite
def mutated(draw: st.DrawFn, seeds: tuple[str, ...]) -> str | bytes:
    seed = draw(st.sampled_from(seeds))
    how = draw(st.sampled_from(["json", "json", "json-bytes", "bytes"]))
    if how == "bytes":
        return draw(byte_mutation(seed))
    try:
        json.loads(seed)
    except ValueError:  # "pong": byte-level only
        return draw(byte_mutation(seed))
    text = draw(json_mutation(seed))
    return text.encode() if how == "json-bytes" else text


# ---------------------------------------------------------------------------------------------- properties
def check_decode(ad: ExchangeAdapter, frame: str | bytes) -> None:
    try:
        out = ad.decode(frame, 1)
    except DecodeError:
        event("DecodeError")
        return
    event("events" if out else "no events")
    assert isinstance(out, list)
    for ev in out:
        assert isinstance(ev, DECODED_TYPES), ev


def check_rest(ad: ExchangeAdapter, kind: str, body: bytes, symbol: str) -> None:
    sub = Subscription(Channel.BOOK if kind == "snapshot" else Channel.TRADES, symbol)
    try:
        if kind == "snapshot":
            ad.parse_snapshot(body, sub, 1)
        elif kind == "instruments":
            assert isinstance(ad.parse_instruments(body), list)
        else:
            assert isinstance(ad.parse_trades(body, sub, 1), list)
    except DecodeError:
        event("DecodeError")
        return
    event("parsed")


def test_every_registered_exchange_is_fuzzed() -> None:
    """A new exchange cannot slip in without decode fuzzing: each canonical exchange id is fuzzed here or by the
    module named in FUZZED_ELSEWHERE."""
    here = {resolve(exchange, market).exchange for exchange, market, _ in ADAPTERS.values()}
    registered = {e.exchange for e in exchanges() if not e.alias_of}
    missing = sorted(registered - here - set(FUZZED_ELSEWHERE))
    assert not missing, f"no decode fuzzing for {missing}"
    for module in FUZZED_ELSEWHERE.values():
        assert importlib.util.find_spec(module) is not None, module


@pytest.mark.parametrize("name", list(ADAPTERS))
def test_seed_frames_decode(name: str) -> None:
    """The unmutated seeds are valid: they decode into events, and the REST bodies parse."""
    ad = adapter(name)
    seeds = frames(name)
    assert len(seeds) >= 6
    decoded = [ad.decode(f, 1) for f in seeds]
    assert sum(len(d) for d in decoded) >= 5
    symbol = ADAPTERS[name][2]
    for kind, bodies_ in bodies(name).items():
        assert bodies_, kind
        for body in bodies_:
            sub = Subscription(Channel.BOOK if kind == "snapshot" else Channel.TRADES, symbol)
            if kind == "snapshot":
                assert ad.parse_snapshot(body.encode(), sub, 1).is_snapshot
            elif kind == "instruments":
                ad.parse_instruments(body.encode())
            else:
                assert ad.parse_trades(body.encode(), sub, 1)


@pytest.mark.parametrize("name", list(ADAPTERS))
@settings(PROFILE, max_examples=examples(250))
@given(data=st.data())
def test_decode_returns_events_or_raises_decode_error(name: str, data: st.DataObject) -> None:
    ad = adapter(name)
    check_decode(ad, data.draw(mutated(frames(name)), label="frame"))


@pytest.mark.parametrize("name", list(ADAPTERS))
@pytest.mark.parametrize("kind", ["snapshot", "instruments", "trades"])
@settings(PROFILE, max_examples=examples(60))
@given(data=st.data())
def test_rest_parsers_return_or_raise_decode_error(name: str, kind: str, data: st.DataObject) -> None:
    ad = adapter(name)
    seeds = bodies(name)[kind]
    body = data.draw(mutated(seeds), label="body")
    check_rest(ad, kind, body if isinstance(body, bytes) else body.encode(), ADAPTERS[name][2])
