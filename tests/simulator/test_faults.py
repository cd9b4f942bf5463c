"""Fault spec grammar and the seeded random schedule."""

from __future__ import annotations

import itertools

import pytest

from cryptolink.simulator.faults import Fault, FaultSpecError, RandomFaults, parse_duration, parse_spec


def test_parse_duration_units() -> None:
    assert parse_duration("500ms") == 0.5
    assert parse_duration("5s") == 5.0
    assert parse_duration("1.5m") == 90.0
    with pytest.raises(FaultSpecError):
        parse_duration("5")


def test_parse_spec_scripted_items_sorted() -> None:
    scripted, randoms = parse_spec("gap@20s, drop@5s,stall:3s@12s,okx/close:4000@1s,delay:200ms:2s@3s,noping")
    assert [f.kind for f in scripted] == ["noping", "close", "delay", "drop", "stall", "gap"]
    assert scripted[1] == Fault("close", at_s=1.0, exchange="okx", code=4000)
    assert scripted[2].amount_ms == 200.0 and scripted[2].duration_s == 2.0
    assert scripted[4].duration_s == 3.0 and randoms == []


def test_parse_spec_symbol_and_random() -> None:
    scripted, randoms = parse_spec("binance/gap:BTCUSDT@1s,random:every=5s:kinds=drop+gap:exchange=okx")
    assert scripted == [Fault("gap", at_s=1.0, exchange="binance", symbol="BTCUSDT")]
    assert randoms == [RandomFaults(5.0, ("drop", "gap"), "okx")]


def test_market_qualified_symbols_keep_their_colon_or_slash() -> None:
    scripted, _ = parse_spec(
        "gate/gap:futures:BTC_USDT@1s,gap:linear/BTCUSDT@2s,seqreset:USDT-FUTURES:ETHUSDT"
    )
    assert scripted == [
        Fault("seqreset", symbol="USDT-FUTURES:ETHUSDT"),
        Fault("gap", at_s=1.0, exchange="gate", symbol="futures:BTC_USDT"),
        Fault("gap", at_s=2.0, symbol="linear/BTCUSDT"),
    ]


def test_parse_outage_needs_a_duration() -> None:
    scripted, _ = parse_spec("binance/outage:2s@10s,outage:500ms")
    assert scripted == [
        Fault("outage", duration_s=0.5),
        Fault("outage", at_s=10.0, exchange="binance", duration_s=2.0),
    ]
    with pytest.raises(FaultSpecError, match="outage needs a duration"):
        parse_spec("outage@1s")


@pytest.mark.parametrize(
    "spec",
    [
        "explode@1s",
        "stall@1s",
        "outage",
        "drop@soon",
        "nasdaq/drop",
        "random:kinds=drop",
        "random:every=1s:kinds=fly",
    ],
)
def test_bad_specs_raise_clear_errors(spec: str) -> None:
    with pytest.raises(FaultSpecError):
        parse_spec(spec)


def test_random_schedule_is_seeded_and_ordered() -> None:
    rnd = RandomFaults(10.0, ("drop", "stall"))
    a = list(itertools.islice(rnd.schedule(seed=3), 20))
    b = list(itertools.islice(rnd.schedule(seed=3), 20))
    assert a == b
    times = [f.at_s for f in a]
    assert times == sorted(times) and all(5.0 <= y - x <= 15.0 for x, y in itertools.pairwise([0.0, *times]))
    assert {f.kind for f in a} == {"drop", "stall"}
    assert all(f.duration_s is not None for f in a if f.kind == "stall")
