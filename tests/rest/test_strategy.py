"""Load-balancing strategies (``cryptolink.rest.strategy``): picks, failover order, proportions, state bounds."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cryptolink.rest.strategy import (
    STRATEGIES,
    Candidate,
    Failover,
    LeastLatency,
    RoundRobin,
    Strategy,
    Weighted,
    make_strategy,
)
from tests.property import PROFILE, examples

NOW = 100.0


def cand(
    name: str,
    weight: int = 1,
    priority: int = 0,
    effective: float | None = None,
    latency_ms: float | None = 10.0,
) -> Candidate:
    return Candidate(name, weight, priority, float(weight) if effective is None else effective, latency_ms)


def picks(strategy: Strategy, members: Sequence[Candidate], calls: int) -> list[str]:
    out = []
    for _ in range(calls):
        order = strategy.order(members, NOW)
        out.append(order[0])
    return out


# ---- construction and validation -----------------------------------------------------------------------------


def test_make_strategy_builds_each_named_strategy_with_fresh_state() -> None:
    assert STRATEGIES == ("round_robin", "least_latency", "weighted", "failover")
    kinds = {name: type(make_strategy(name)) for name in STRATEGIES}
    assert kinds == {
        "round_robin": RoundRobin,
        "least_latency": LeastLatency,
        "weighted": Weighted,
        "failover": Failover,
    }
    for name in STRATEGIES:
        assert make_strategy(name).name == name
    members = [cand("a"), cand("b")]
    first = make_strategy("round_robin")
    assert first.order(members, NOW)[0] == "a"
    # a second group's strategy does not share the first one's cursor
    assert make_strategy("round_robin").order(members, NOW)[0] == "a"


def test_make_strategy_unknown_name_lists_known_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown strategy 'random'.*round_robin, least_latency, weighted"):
        make_strategy("random")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": ""}, "needs a name"),
        ({"weight": 0}, "weight must be >= 1"),
        ({"effective_weight": -0.5}, "effective_weight must be in"),
        ({"effective_weight": 3.5}, "effective_weight must be in"),
        ({"effective_weight": float("nan")}, "effective_weight must be in"),
        ({"latency_ms": -1.0}, "latency_ms must be >= 0"),
        ({"latency_ms": float("inf")}, "latency_ms must be >= 0"),
    ],
)
def test_candidate_rejects_invalid_values(kwargs: dict[str, object], message: str) -> None:
    base: dict[str, object] = {
        "name": "a",
        "weight": 3,
        "priority": 0,
        "effective_weight": 3.0,
        "latency_ms": 5.0,
    }
    base.update(kwargs)
    with pytest.raises(ValueError, match=message):
        Candidate(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", STRATEGIES)
def test_duplicate_member_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match=r"duplicate member names in one call: \['a'\]"):
        make_strategy(name).order([cand("a"), cand("b"), cand("a")], NOW)


@pytest.mark.parametrize("name", STRATEGIES)
def test_no_available_member_gives_empty_order(name: str) -> None:
    strategy = make_strategy(name)
    assert strategy.order([], NOW) == []
    assert strategy.order([cand("a", effective=0.0), cand("b", weight=2, effective=0.0)], NOW) == []


# ---- round robin ---------------------------------------------------------------------------------------------


def test_round_robin_rotates_over_healthy_members_in_given_order() -> None:
    rr = RoundRobin()
    members = [cand("a"), cand("b", weight=5), cand("c", priority=-3)]
    orders = [rr.order(members, NOW) for _ in range(4)]
    assert orders == [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"], ["a", "b", "c"]]


def test_round_robin_skips_offline_members() -> None:
    rr = RoundRobin()
    members = [cand("a"), cand("b", effective=0.0), cand("c")]
    orders = [rr.order(members, NOW) for _ in range(3)]
    assert orders == [["a", "c"], ["c", "a"], ["a", "c"]]


def test_round_robin_picks_a_degraded_member_on_its_share_of_visits() -> None:
    rr = RoundRobin()
    # b at a quarter of its weight: credit 0.25 per visit, picked on every 4th visit
    members = [cand("a", weight=2), cand("b", weight=4, effective=1.0)]
    assert picks(rr, members, 10) == ["a", "a", "a", "a", "b", "a", "a", "a", "a", "b"]


def test_round_robin_retry_order_puts_full_health_members_first() -> None:
    rr = RoundRobin()
    members = [cand("a"), cand("b", weight=4, effective=2.0), cand("c"), cand("d")]
    # pick a; then rotation order b, c, d with the degraded b moved behind the healthy ones
    assert rr.order(members, NOW) == ["a", "c", "d", "b"]


def test_round_robin_shares_are_relative_to_the_healthiest_member() -> None:
    rr = RoundRobin()
    # nobody at full health: a at 0.5, b at 0.25 -> a picked twice as often as b
    members = [cand("a", weight=4, effective=2.0), cand("b", weight=4, effective=1.0)]
    counts = Counter(picks(rr, members, 300))
    assert counts == {"a": 200, "b": 100}


_QUARTERS = st.lists(st.integers(min_value=0, max_value=4), min_size=1, max_size=6).filter(lambda q: 4 in q)


@settings(PROFILE, max_examples=examples(150))
@given(
    quarters=_QUARTERS, weights=st.lists(st.integers(1, 8), min_size=6, max_size=6), calls=st.integers(1, 600)
)
def test_round_robin_picks_follow_health_shares(quarters: list[int], weights: list[int], calls: int) -> None:
    """Member i at health share k_i/4 (0 = offline, at least one at 4/4): over any number of calls, its picks
    stay within len(members) + 1 of calls * share_i / sum(shares)."""
    members = [
        cand(f"m{i}", weight=w, effective=w * k / 4)
        for i, (k, w) in enumerate(zip(quarters, weights, strict=False))
    ]
    counts = Counter(picks(RoundRobin(), members, calls))
    total_share = sum(quarters)
    for i, k in enumerate(quarters):
        ideal = calls * k / total_share
        assert abs(counts[f"m{i}"] - ideal) <= len(members) + 1, (i, counts, ideal)


# ---- least latency -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("members", "expected"),
    [
        pytest.param(
            [cand("a", latency_ms=30.0), cand("b", latency_ms=10.0), cand("c", latency_ms=20.0)],
            ["b", "c", "a"],
            id="lowest-first",
        ),
        pytest.param(
            [cand("a", latency_ms=1.0), cand("b", latency_ms=None), cand("c", latency_ms=None, priority=-1)],
            ["c", "b", "a"],
            id="unknown-first-by-priority",
        ),
        # b measures 200 ms at a quarter of its weight: scored 800 ms, behind a's 500 ms
        pytest.param(
            [cand("a", latency_ms=500.0), cand("b", weight=4, effective=1.0, latency_ms=200.0)],
            ["a", "b"],
            id="degraded-penalised",
        ),
        pytest.param(
            [cand("a", latency_ms=500.0), cand("b", weight=4, effective=2.0, latency_ms=200.0)],
            ["b", "a"],
            id="half-weight-still-faster",
        ),
        pytest.param(
            [cand("z", latency_ms=5.0), cand("y", latency_ms=5.0, priority=1), cand("x", latency_ms=5.0)],
            ["x", "z", "y"],
            id="ties-by-priority-then-name",
        ),
        pytest.param(
            [
                cand("a", latency_ms=1.0, effective=0.0),
                cand("b", latency_ms=None, effective=0.0),
                cand("c", latency_ms=90.0),
            ],
            ["c"],
            id="offline-excluded",
        ),
    ],
)
def test_least_latency_order(members: list[Candidate], expected: list[str]) -> None:
    assert LeastLatency().order(members, NOW) == expected


# ---- weighted (smooth weighted round robin) -------------------------------------------------------------------


def test_weighted_spreads_picks_smoothly() -> None:
    # weights 5, 1, 1: the smooth sequence interleaves b and c among the a's instead of a run of five a's
    members = [cand("a", weight=5), cand("b"), cand("c")]
    assert picks(Weighted(), members, 14) == ["a", "a", "b", "a", "c", "a", "a"] * 2


def test_weighted_retry_order_follows_current_values() -> None:
    w = Weighted()
    members = [cand("a", weight=5), cand("b"), cand("c", weight=2)]
    # current after adding: a 5, b 1, c 2 -> pick a (5 - 8 = -3); then c (2) before b (1)
    assert w.order(members, NOW) == ["a", "c", "b"]


def test_weighted_uses_effective_weights() -> None:
    w = Weighted()
    # a healthy at 3, b configured 3 but recovering at effective 1: a gets 3 picks for each of b's
    members = [cand("a", weight=3), cand("b", weight=3, effective=1.0)]
    assert Counter(picks(w, members, 400)) == {"a": 300, "b": 100}


@settings(PROFILE, max_examples=examples(150))
@given(
    weights=st.lists(st.tuples(st.integers(1, 10), st.integers(1, 10)), min_size=1, max_size=6),
    cycles=st.integers(1, 4),
)
def test_weighted_picks_each_member_exactly_its_effective_weight_per_cycle(
    weights: list[tuple[int, int]], cycles: int
) -> None:
    """Integer effective weights e_i <= weight_i: every block of sum(e) calls picks member i exactly e_i times."""
    members = [
        cand(f"m{i}", weight=max(a, b), effective=float(min(a, b))) for i, (a, b) in enumerate(weights)
    ]
    effective = {m.name: int(m.effective_weight) for m in members}
    total = sum(effective.values())
    strategy = Weighted()
    for _ in range(cycles):
        assert Counter(picks(strategy, members, total)) == effective


# ---- failover ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("members", "expected"),
    [
        pytest.param(
            [cand("b", priority=1), cand("a", priority=2), cand("c", priority=0)],
            ["c", "b", "a"],
            id="priority-order",
        ),
        pytest.param([cand("b"), cand("a"), cand("c", priority=-1)], ["c", "a", "b"], id="ties-by-name"),
        pytest.param(
            [cand("p", priority=0, effective=0.0), cand("s", priority=1), cand("t", priority=2)],
            ["s", "t"],
            id="primary-offline",
        ),
        # degraded is still available: failover does not skip it
        pytest.param(
            [cand("p", weight=4, effective=1.0), cand("s", priority=1)], ["p", "s"], id="degraded-kept"
        ),
    ],
)
def test_failover_order(members: list[Candidate], expected: list[str]) -> None:
    failover = Failover()
    assert failover.order(members, NOW) == expected
    assert failover.order(members, NOW) == expected  # stateless: same answer every call


# ---- every strategy ------------------------------------------------------------------------------------------

_MEMBER = st.tuples(
    st.integers(1, 5),  # weight
    st.integers(-2, 2),  # priority
    st.sampled_from([0.0, 0.1, 0.25, 0.5, 1.0]),  # health share (0 = offline)
    st.one_of(st.none(), st.floats(0.0, 2000.0)),  # latency
)


@settings(PROFILE, max_examples=examples(100))
@given(
    name=st.sampled_from(STRATEGIES),
    rounds=st.lists(st.lists(_MEMBER, min_size=0, max_size=6), min_size=1, max_size=12),
)
def test_offline_member_is_never_picked_and_available_ones_are_each_listed_once(
    name: str, rounds: list[list[tuple[int, int, float, float | None]]]
) -> None:
    """Across calls whose members and health change, order() lists exactly the available members, once each."""
    strategy = make_strategy(name)
    for specs in rounds:
        members = [
            Candidate(f"m{i}", weight, priority, weight * share, latency)
            for i, (weight, priority, share, latency) in enumerate(specs)
        ]
        for _ in range(3):
            order = strategy.order(members, NOW)
            assert len(order) == len(set(order))
            assert set(order) == {m.name for m in members if m.effective_weight > 0}


@pytest.mark.parametrize("strategy", [RoundRobin(), Weighted()], ids=["round_robin", "weighted"])
def test_state_is_kept_only_for_the_latest_members(strategy: RoundRobin | Weighted) -> None:
    for generation in range(50):
        members = [cand(f"g{generation}-{i}", weight=i + 1) for i in range(4)]
        for _ in range(4):
            strategy.order(members, NOW)
        assert strategy.tracked == {m.name for m in members}
    strategy.order([cand("solo")], NOW)
    assert strategy.tracked == {"solo"}


def test_weighted_drops_the_state_of_an_offline_member() -> None:
    w = Weighted()
    members = [cand("a", weight=3), cand("b")]
    w.order(members, NOW)
    assert w.tracked == {"a", "b"}
    w.order([cand("a", weight=3), cand("b", effective=0.0)], NOW)
    assert w.tracked == {"a"}
    # back online it starts from a fresh current value: the next 4 calls still split 3:1
    assert Counter(picks(w, members, 4)) == {"a": 3, "b": 1}
