"""Pools and request costs: validation."""

from __future__ import annotations

import pytest

from cryptolink.ratelimit import Pool
from cryptolink.ratelimit.pool import check_costs, pool_table, seconds_to_us

pytestmark = [pytest.mark.timeout(10)]


def test_a_pool_defaults_its_scope_to_its_name_and_resolves_its_window_in_microseconds() -> None:
    assert Pool("okx:books", 20, 2.0).scope == "okx:books"
    assert Pool("binance:ip:weight", 6000, 60.0, "binance:ip").scope == "binance:ip"
    assert Pool("p", 1, 0.0000015).window_us == 2
    assert seconds_to_us(0.5) == 500_000


@pytest.mark.parametrize(("limit", "window_s", "name"), [(0, 1.0, "p"), (1, 0.0, "p"), (1, 1.0, "")])
def test_an_invalid_pool_is_refused(limit: int, window_s: float, name: str) -> None:
    with pytest.raises(ValueError, match="invalid pool"):
        Pool(name, limit, window_s)


def test_a_share_rounds_down_but_keeps_at_least_one_unit() -> None:
    assert Pool("p", 6000, 60.0, "ip").scaled(0.25) == Pool("p", 1500, 60.0, "ip")
    assert Pool("p", 3, 1.0).scaled(0.1).limit == 1
    with pytest.raises(ValueError, match="share"):
        Pool("p", 3, 1.0).scaled(0.0)


def test_costs_must_name_known_pools_with_weights_within_their_limit() -> None:
    pools = pool_table([Pool("a", 5, 1.0), Pool("b", 2, 1.0)])
    assert check_costs({"a": 5, "b": 1}, pools) == {"a": 5, "b": 1}
    for costs, message in [
        ({}, "at least one pool"),
        ({"c": 1}, "unknown pool"),
        ({"a": 0}, ">= 1"),
        ({"b": 3}, "exceeds the limit 2"),
    ]:
        with pytest.raises(ValueError, match=message):
            check_costs(costs, pools)


def test_pool_names_are_unique_and_at_least_one_is_needed() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        pool_table([Pool("a", 1, 1.0), Pool("a", 2, 1.0)])
    with pytest.raises(ValueError, match="at least one"):
        pool_table([])
