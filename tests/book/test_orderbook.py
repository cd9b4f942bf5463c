"""OrderBook: ordering, deletes, bounds, views; hypothesis model check against a plain dict."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cryptolink.book.orderbook import BookState, OrderBook

D = Decimal


def test_snapshot_sorted_best_first_and_zero_sizes_skipped() -> None:
    book = OrderBook("BTC/USDT")
    bids, asks = book.apply_snapshot(
        [["99", "1"], ["101", "2"], ["100", "0"]], [["103", "1"], ["102", "0.5"]], sequence=7
    )
    assert bids == ((D("101"), D("2")), (D("99"), D("1")))
    assert asks == ((D("102"), D("0.5")), (D("103"), D("1")))
    assert book.best_bid() == (D("101"), D("2"))
    assert book.best_ask() == (D("102"), D("0.5"))
    assert book.last_sequence == 7
    assert book.depth == (2, 2)
    assert book.state is BookState.EMPTY  # state is driven by BookSync


def test_delta_updates_deletes_and_unknown_delete_is_fine() -> None:
    book = OrderBook()
    book.apply_snapshot([["10", "1"], ["9", "1"]], [["11", "1"]])
    changed = book.apply_delta([["10", "0"], ["8.5", "3"], ["7", "0"]], [["11", "2.50"]], sequence=3)
    assert changed == (((D("10"), D("0")), (D("8.5"), D("3")), (D("7"), D("0"))), ((D("11"), D("2.50")),))
    assert book.bids() == {D("9"): D("1"), D("8.5"): D("3")}
    assert book.asks() == {D("11"): D("2.5")}
    assert book.top_strings(5) == ([("9", "1"), ("8.5", "3")], [("11", "2.50")])
    assert book.last_sequence == 3


def test_empty_book_views() -> None:
    book = OrderBook()
    assert book.best_bid() is None and book.best_ask() is None
    assert book.top(3) == ((), ())
    assert len(book) == 0


def test_same_price_different_text_is_one_level_latest_text_kept() -> None:
    book = OrderBook()
    book.apply_delta([["1.0", "1"]], [])
    book.apply_delta([["1.00", "2"]], [])
    assert book.depth == (1, 0)
    assert book.top_strings(1)[0] == [("1.00", "2")]


def test_max_levels_bound_trims_worst() -> None:
    book = OrderBook(max_levels=3)
    book.apply_snapshot([[str(i), "1"] for i in range(1, 10)], [[str(i), "1"] for i in range(10, 20)])
    assert book.depth == (3, 3)
    assert [p for p, _ in book.top(10)[0]] == [D(9), D(8), D(7)]
    assert [p for p, _ in book.top(10)[1]] == [D(10), D(11), D(12)]
    book.apply_delta([["9.5", "1"]], [["9.9", "1"]])
    assert [p for p, _ in book.top(10)[0]] == [D("9.5"), D(9), D(8)]
    assert book.depth == (3, 3)
    with pytest.raises(ValueError):
        OrderBook(max_levels=0)


@pytest.mark.parametrize("bad", [[["x", "1"]], [["1", "nan?"]], [["1"]]])
def test_bad_levels_raise_value_error(bad: list[list[str]]) -> None:
    book = OrderBook()
    book.apply_snapshot([["1", "1"]], [])
    with pytest.raises(ValueError):
        book.apply_snapshot(bad, [])
    assert book.bids() == {D(1): D(1)}  # snapshot failure leaves the book unchanged
    with pytest.raises(ValueError):
        book.apply_delta([], bad)


def test_clear() -> None:
    book = OrderBook()
    book.apply_snapshot([["1", "1"]], [["2", "1"]], 5)
    book.clear()
    assert len(book) == 0 and book.last_sequence is None


prices = st.integers(min_value=1, max_value=60).map(lambda i: f"{i / 4:.2f}")
sizes = st.one_of(st.just("0"), st.just("0.000"), st.integers(1, 500).map(lambda i: f"{i / 10}"))
levels = st.lists(st.tuples(prices, sizes), max_size=8)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(levels, levels), min_size=1, max_size=25), st.none() | st.integers(1, 6))
def test_random_deltas_match_dict_model(
    steps: list[tuple[list[tuple[str, str]], list[tuple[str, str]]]], max_levels: int | None
) -> None:
    book = OrderBook(max_levels=max_levels)
    model_b: dict[Decimal, Decimal] = {}
    model_a: dict[Decimal, Decimal] = {}
    for bids, asks in steps:
        book.apply_delta([list(x) for x in bids], [list(x) for x in asks])
        for model, side in ((model_b, bids), (model_a, asks)):
            for p, s in side:
                if D(s) == 0:
                    model.pop(D(p), None)
                else:
                    model[D(p)] = D(s)
        if max_levels is not None:
            for k in sorted(model_b, reverse=True)[max_levels:]:
                del model_b[k]
            for k in sorted(model_a)[max_levels:]:
                del model_a[k]
        top_b, top_a = book.top(1000)
        bid_prices = [p for p, _ in top_b]
        ask_prices = [p for p, _ in top_a]
        assert all(x > y for x, y in itertools.pairwise(bid_prices))
        assert all(x < y for x, y in itertools.pairwise(ask_prices))
        assert dict(top_b) == model_b
        assert dict(top_a) == model_a
        assert (
            book.best_bid() == (max(model_b), model_b[max(model_b)]) if model_b else book.best_bid() is None
        )


def test_decimal_cache_is_exact_per_text_and_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    from cryptolink.book import orderbook as ob

    monkeypatch.setattr(ob, "DECIMAL_CACHE_SIZE", 8)
    monkeypatch.setattr(ob, "_DEC", {})
    monkeypatch.setattr(ob, "_NEG", {})
    monkeypatch.setattr(ob, "_PX", {})
    book = OrderBook()
    for i in range(40):  # far more texts than the cache holds: evictions on the way
        bids, asks = book.apply_delta([[f"{i}.10", "1.500"]], [[f"{100 + i}.0", "0.0"]])
        assert str(bids[0][0]) == f"{i}.10" and str(bids[0][1]) == "1.500"
        assert str(asks[0][0]) == f"{100 + i}.0" and str(asks[0][1]) == "0.0"
    assert len(ob._DEC) <= 8 and len(ob._PX) <= 8
    # the same value in another text is the same level; the emitted Decimal keeps the text's exponent
    bids, _ = book.apply_delta([["39.1", "2"]], [])
    assert str(bids[0][0]) == "39.1"
    assert book.best_bid() == (D("39.1"), D("2"))
    assert book.top_strings(1)[0] == [("39.1", "2")]
    book.apply_delta([], [["5", "1"], ["5.00", "2"]])
    assert book.depth == (40, 1)
    assert book.top_strings(1)[1] == [("5.00", "2")]


def _sorted_model(book: OrderBook) -> None:
    """The views agree with a plain Decimal sort of the stored levels."""
    bids = book.bids()
    asks = book.asks()
    assert list(bids) == sorted(bids, reverse=True)
    assert list(asks) == sorted(asks)
    assert book.best_bid() == (next(iter(bids.items())) if bids else None)
    assert book.best_ask() == (next(iter(asks.items())) if asks else None)


def test_long_or_unusual_price_text_switches_to_decimal_keys_exactly() -> None:
    book = OrderBook()
    book.apply_snapshot([["100.5", "1"], ["99", "2"]], [["101", "1"], ["102.25", "3"]])
    assert book._float_keys
    # 17 digits: two prices that are the same float but different Decimals; and an exponent form
    a, b = "100.0000000000000001", "100.0000000000000002"
    assert float(a) == float(b) and D(a) != D(b)
    out = book.apply_delta([[a, "1"], [b, "2"], ["1.005E+2", "4"]], [["1.01e2", "7"]])
    assert not book._float_keys
    assert out == (((D(a), D("1")), (D(b), D("2")), (D("100.5"), D("4"))), ((D("101"), D("7")),))
    assert book.bids() == {D("100.5"): D("4"), D(b): D("2"), D(a): D("1"), D("99"): D("2")}
    assert book.asks() == {D("101"): D("7"), D("102.25"): D("3")}
    assert book.top_strings(2) == ([("1.005E+2", "4"), (b, "2")], [("1.01e2", "7"), ("102.25", "3")])
    # still exact after more changes, and a snapshot of short numerals goes back to float keys
    book.apply_delta([[a, "0"], ["100.50", "0"]], [["101.0", "0"]])
    assert book.bids() == {D(b): D("2"), D("99"): D("2")} and book.asks() == {D("102.25"): D("3")}
    _sorted_model(book)
    book.apply_snapshot([["1", "1"]], [["2", "1"]])
    assert book._float_keys and book.top(1) == (((D("1"), D("1")),), ((D("2"), D("1")),))


def test_switch_in_the_middle_of_a_one_shot_iterator() -> None:
    book = OrderBook()
    book.apply_delta(iter([["5", "1"], ["6", "1"]]), iter([["7", "1"]]))
    bids, asks = book.apply_delta(iter([["5.0", "2"], ["+6", "0"], ["4", "1"]]), iter([["7.00", "3"]]))
    assert bids == ((D("5.0"), D("2")), (D("6"), D("0")), (D("4"), D("1")))
    assert asks == ((D("7.00"), D("3")),)
    assert not book._float_keys
    assert book.bids() == {D("5"): D("2"), D("4"): D("1")}
    assert book.top_strings(1) == ([("5.0", "2")], [("7.00", "3")])


short_prices = st.builds(
    lambda i, f, digits: f"{i}.{f:0{digits}d}" if digits else str(i),
    st.integers(0, 10**6),
    st.integers(0, 99999),
    st.sampled_from([0, 5, 6, 8]),
).filter(lambda t: len(t.replace(".", "")) <= 15)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(short_prices, st.sampled_from(["0", "1.5", "2"])), max_size=40))
def test_float_keys_order_like_decimals(levels: list[tuple[str, str]]) -> None:
    book = OrderBook()
    book.apply_delta([list(x) for x in levels], [list(x) for x in levels])
    assert book._float_keys
    model: dict[Decimal, Decimal] = {}
    for px, sz in levels:
        if D(sz):
            model[D(px)] = D(sz)
        else:
            model.pop(D(px), None)
    assert book.bids() == dict(sorted(model.items(), reverse=True))
    assert book.asks() == dict(sorted(model.items()))
    _sorted_model(book)
