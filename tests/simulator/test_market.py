"""Market sources: replay loop seam keeps ids valid and the book exact; synthetic books never cross."""

from __future__ import annotations

from decimal import Decimal

import pytest

from cryptolink.simulator.market import Bbo, Depth, ReplaySource, SimBook, SyntheticSource, Trade, make_source


def _client_apply(book: dict[str, dict[Decimal, str]], ev: Depth) -> None:
    for side, levels in (("bids", ev.bids), ("asks", ev.asks)):
        for p, q in levels:
            if Decimal(q) == 0:
                book[side].pop(Decimal(p), None)
            else:
                book[side][Decimal(p)] = q


def _as_client(book: SimBook) -> dict[str, dict[Decimal, str]]:
    return {
        "bids": {Decimal(p): q for p, q in book.bids.values()},
        "asks": {Decimal(p): q for p, q in book.asks.values()},
    }


@pytest.mark.parametrize("kind", ["spot", "usdm"])
def test_replay_loop_seam_ids_and_book(kind: str) -> None:
    src = make_source(kind, "BTCUSDT", "replay")
    assert isinstance(src, ReplaySource)
    client = _as_client(src.book)
    last_u, last_t = src.last_update_id, src.last_trade_id
    last_bbo = last_u
    n = len(src._events) + 200  # cross the seam
    for _ in range(n):
        ev = src.emit_next(0)
        if isinstance(ev, Depth):
            assert ev.first_id == last_u + 1 and ev.prev_id == last_u and ev.last_id >= ev.first_id
            assert ev.last_id > last_bbo  # every BBO id lies inside a delta's range, before its end
            last_u = ev.last_id
            _client_apply(client, ev)
        elif isinstance(ev, Trade):
            assert ev.trade_id == last_t + 1
            last_t = ev.trade_id
        else:
            # bookTicker ids strictly increase: one id never carries two different BBOs
            assert isinstance(ev, Bbo) and last_u < ev.update_id and ev.update_id > last_bbo
            last_bbo = ev.update_id
    assert src.loops == 1
    assert client == _as_client(src.book)


def test_replay_seam_restores_start_book() -> None:
    src = ReplaySource("BTCUSDT", "hftbacktest_binance_spot_ethusdt_20240808.gz")
    start = _as_client(src.book)
    for _ in range(len(src._events)):
        src.emit_next(0)
    assert _as_client(src.book) != start
    seam = src.emit_next(0)
    assert isinstance(seam, Depth) and src.loops == 1 and _as_client(src.book) == start


def test_synthetic_is_seeded_valid_and_uncrossed() -> None:
    a, b = SyntheticSource("SOLUSDT", seed=7), SyntheticSource("SOLUSDT", seed=7)
    client = _as_client(a.book)
    for _ in range(3000):
        ea, eb = a.emit_next(1), b.emit_next(1)
        assert ea == eb
        if isinstance(ea, Depth):
            _client_apply(client, ea)
            bids, asks = a.book.top(1)
            assert Decimal(bids[0][0]) < Decimal(asks[0][0])
    assert client == _as_client(a.book)


def test_make_source_falls_back_and_validates() -> None:
    assert isinstance(make_source("spot", "DOGEUSDT", "replay"), SyntheticSource)
    with pytest.raises(ValueError):
        make_source("spot", "BTCUSDT", "live")
