"""Member health (``cryptolink.rest.health``): transitions, hysteresis, maintenance, ramp, weights, bounds."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cryptolink.rest.health import (
    DEGRADED_FACTOR,
    HealthThresholds,
    MemberHealth,
    MemberState,
)
from tests.property import PROFILE, examples

H = MemberState.HEALTHY
D = MemberState.DEGRADED
OFF = MemberState.OFFLINE
M = MemberState.MAINTENANCE


@dataclass(frozen=True)
class Ev:
    """One input: ``ok`` live success, ``fail`` live failure (``kind``), ``check_ok``, ``check_fail``,
    ``check_maint`` (status call says maintenance), ``maint`` (record_maintenance); repeated ``times``."""

    what: str
    latency_ms: float = 50.0
    kind: str = "network"
    times: int = 1


def apply(health: MemberHealth, ev: Ev, now: float) -> MemberState | None:
    changed: MemberState | None = None
    for _ in range(ev.times):
        if ev.what == "ok":
            result = health.record_success(ev.latency_ms, now)
        elif ev.what == "fail":
            result = health.record_failure(now, kind=ev.kind)
        elif ev.what == "check_ok":
            result = health.check_result(True, ev.latency_ms, now)
        elif ev.what == "check_fail":
            result = health.check_result(False, None, now)
        elif ev.what == "check_maint":
            result = health.check_result(True, ev.latency_ms, now, maintenance=True)
        elif ev.what == "maint":
            result = health.record_maintenance(now)
        else:  # pragma: no cover
            raise AssertionError(ev.what)
        changed = result if result is not None else changed
    return changed


# Each scenario: thresholds, then (event, state after it, state returned as changed by it or None).
SCENARIOS: dict[str, tuple[HealthThresholds, list[tuple[Ev, MemberState, MemberState | None]]]] = {
    "consecutive-failures-offline": (
        HealthThresholds(),
        [
            (Ev("ok", times=20), H, None),
            (Ev("fail"), H, None),
            (Ev("fail", kind="timeout"), H, None),
            (Ev("fail", kind="unavailable"), OFF, OFF),
        ],
    ),
    "success-resets-the-run": (
        HealthThresholds(),
        [
            (Ev("ok", times=20), H, None),
            (Ev("fail", times=2), H, None),
            (Ev("ok"), H, None),
            (Ev("fail", times=2), H, None),
            (Ev("fail"), OFF, OFF),
        ],
    ),
    "failed-checks-count": (
        HealthThresholds(),
        [(Ev("check_fail", times=2), H, None), (Ev("check_fail"), OFF, OFF)],
    ),
    "live-and-check-failures-add-up": (
        HealthThresholds(),
        [(Ev("fail", times=2), H, None), (Ev("check_fail"), OFF, OFF)],
    ),
    "offline-needs-a-check": (
        HealthThresholds(),
        [
            (Ev("fail", times=3), OFF, OFF),
            (Ev("ok", times=5), OFF, None),  # late successes of calls sent before: recorded, state kept
            (Ev("fail"), OFF, None),
            (Ev("check_fail"), OFF, None),
            (Ev("check_ok"), H, H),
        ],
    ),
    "comeback-slow-is-degraded": (
        HealthThresholds(),
        [(Ev("fail", times=3), OFF, OFF), (Ev("check_ok", latency_ms=1500.0), D, D)],
    ),
    "rate-limit-is-not-a-health-failure": (
        HealthThresholds(),
        [
            (Ev("fail", kind="rate_limit", times=50), H, None),
            (Ev("fail", kind="ban", times=5), H, None),
            (Ev("fail", times=2), H, None),
            (Ev("fail", kind="rate_limit", times=3), H, None),  # neither ends nor extends the run
            (Ev("fail"), OFF, OFF),
        ],
    ),
    "maintenance": (
        HealthThresholds(),
        [
            (Ev("check_maint"), M, M),
            (Ev("ok", times=3), M, None),
            (Ev("fail", times=5), M, None),  # failures during maintenance are expected: not offline
            (Ev("check_maint"), M, None),
            (Ev("check_fail"), M, None),
            (Ev("check_ok"), H, H),
        ],
    ),
    "maintenance-from-offline-and-back": (
        HealthThresholds(),
        [(Ev("fail", times=3), OFF, OFF), (Ev("maint"), M, M), (Ev("check_ok"), H, H)],
    ),
    "latency-hysteresis": (
        HealthThresholds(ewma_alpha=1.0),  # the EWMA is the last sample
        [
            (Ev("ok", latency_ms=1000.0), H, None),  # at the threshold: not above
            (Ev("ok", latency_ms=1100.0), D, D),
            (Ev("ok", latency_ms=900.0), D, None),  # below 1000 but above 0.8 * 1000
            (Ev("ok", latency_ms=801.0), D, None),
            (Ev("ok", latency_ms=800.0), H, H),
            (Ev("ok", latency_ms=900.0), H, None),  # healthy again: 900 does not degrade
        ],
    ),
    "error-rate-hysteresis": (
        HealthThresholds(window=20, offline_after_failures=100),
        [
            (Ev("ok", times=4), H, None),
            (Ev("fail"), H, None),  # 1/5 = 0.2: not above 0.2
            (Ev("fail"), D, D),  # 2/6
            (Ev("ok", times=5), D, None),  # 2/11 = 0.18 > 0.16
            (Ev("ok"), D, None),  # 2/12 = 0.167
            (Ev("ok"), H, H),  # 2/13 = 0.154 <= 0.16
        ],
    ),
    "error-rate-needs-five-outcomes": (
        HealthThresholds(offline_after_failures=100),
        [(Ev("fail", times=4), H, None), (Ev("fail"), D, D)],
    ),
    "small-window-counts-from-its-size": (
        HealthThresholds(window=3, offline_after_failures=100),
        [(Ev("fail", times=2), H, None), (Ev("fail"), D, D), (Ev("ok", times=3), H, H)],
    ),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_transitions(scenario: str) -> None:
    thresholds, steps = SCENARIOS[scenario]
    health = MemberHealth(2, thresholds)
    for i, (ev, state, changed) in enumerate(steps):
        assert apply(health, ev, now=float(i)) == changed, (i, ev)
        assert health.state is state, (i, ev)


def test_ewma_and_error_rate_values() -> None:
    health = MemberHealth(1, HealthThresholds(ewma_alpha=0.2, offline_after_failures=10))
    assert health.latency_ms is None
    health.record_success(100.0, 0.0)
    assert health.latency_ms == 100.0  # first sample taken as is
    health.record_success(200.0, 1.0)
    assert health.latency_ms == pytest.approx(120.0)
    health.record_failure(2.0, kind="network")
    assert health.latency_ms == pytest.approx(120.0)  # failures carry no latency
    assert health.error_rate == pytest.approx(1 / 3)
    assert health.consecutive_failures == 1


def test_snapshot_counts_and_since() -> None:
    health = MemberHealth(3, HealthThresholds())
    first = health.snapshot(0.0)
    assert (first.state, first.since, first.transitions, first.effective_weight) == (H, None, 0, 3.0)
    health.record_success(40.0, 1.0)
    health.record_failure(2.0, kind="rate_limit")
    for t in (3.0, 4.0, 5.0):
        health.record_failure(t, kind="network")
    health.check_result(True, 60.0, 10.0)
    snap = health.snapshot(10.0)
    assert snap.state is H
    assert snap.since == 10.0
    assert snap.transitions == 2  # healthy -> offline at 5.0, offline -> healthy at 10.0
    assert (snap.successes, snap.failures, snap.rate_limited) == (2, 3, 1)
    assert (snap.outcomes, snap.error_rate, snap.consecutive_failures) == (1, 0.0, 0)  # window restarted
    assert snap.latency_ms == 60.0  # EWMA restarted at the comeback check
    assert snap.weight == 3
    assert snap.effective_weight == pytest.approx(0.3)  # ramp start: weight / 10


# ---- effective weight ----------------------------------------------------------------------------------------


def offline_then_back(
    weight: int, thresholds: HealthThresholds, at: float, latency_ms: float = 50.0
) -> MemberHealth:
    health = MemberHealth(weight, thresholds)
    for _ in range(thresholds.offline_after_failures):
        health.record_failure(at - 5.0, kind="network")
    assert health.effective_weight(at - 1.0) == 0.0
    assert health.check_result(True, latency_ms, at) is not None
    return health


@pytest.mark.parametrize(
    ("t", "expected"),
    [(90.0, 1.0), (100.0, 1.0), (103.0, 1.9), (115.0, 5.5), (127.0, 9.1), (130.0, 10.0), (500.0, 10.0)],
)
def test_recovery_ramp_is_linear_from_a_tenth_to_full(t: float, expected: float) -> None:
    health = offline_then_back(10, HealthThresholds(recovery_s=30.0), at=100.0)
    assert health.effective_weight(t) == pytest.approx(expected)


@pytest.mark.parametrize(("t", "expected"), [(100.0, 0.25), (115.0, 1.375), (130.0, 2.5)])
def test_recovery_ramp_of_a_slow_comeback_is_on_the_degraded_weight(t: float, expected: float) -> None:
    health = offline_then_back(10, HealthThresholds(recovery_s=30.0), at=100.0, latency_ms=2000.0)
    assert health.state is D
    assert health.effective_weight(t) == pytest.approx(expected)


def test_no_ramp_when_recovery_is_zero() -> None:
    health = offline_then_back(4, HealthThresholds(recovery_s=0.0), at=100.0)
    assert health.effective_weight(100.0) == 4.0


def test_recovery_from_maintenance_ramps_too() -> None:
    health = MemberHealth(10, HealthThresholds(recovery_s=20.0))
    health.check_result(True, 10.0, 0.0, maintenance=True)
    assert health.effective_weight(5.0) == 0.0
    health.check_result(True, 10.0, 50.0)
    assert health.effective_weight(60.0) == pytest.approx(10.0 * (0.1 + 0.9 * 10.0 / 20.0))


def test_degraded_gets_a_quarter_and_no_ramp_back_to_healthy() -> None:
    health = MemberHealth(8, HealthThresholds(ewma_alpha=1.0))
    assert health.effective_weight(0.0) == 8.0
    health.record_success(5000.0, 1.0)
    assert health.effective_weight(1.0) == 8.0 * DEGRADED_FACTOR == 2.0
    health.record_success(10.0, 2.0)
    assert health.state is H
    assert health.effective_weight(2.0) == 8.0


def test_set_weight_scales_every_state_and_the_ramp() -> None:
    health = offline_then_back(10, HealthThresholds(recovery_s=30.0), at=100.0)
    health.set_weight(20)
    assert health.state is H
    assert health.effective_weight(115.0) == pytest.approx(11.0)  # half-way up the ramp of the new weight
    assert health.snapshot(130.0).weight == 20
    health.record_success(5000.0, 131.0)  # EWMA jumps above 1000: degraded
    assert health.state is D
    health.set_weight(3)
    assert health.effective_weight(131.0) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="weight must be >= 1"):
        health.set_weight(0)
    assert health.weight == 3


# ---- bounds, reload and bad input ----------------------------------------------------------------------------


def test_window_keeps_only_the_newest_outcomes() -> None:
    health = MemberHealth(1, HealthThresholds(window=10, offline_after_failures=10_000))
    for i in range(1000):
        health.record_failure(float(i), kind="network")
    assert health.snapshot(1000.0).outcomes == 10
    assert health.state is D
    for i in range(10):
        health.record_success(5.0, 2000.0 + i)
    # the 1000 failures have all left the window
    assert (health.error_rate, health.snapshot(3000.0).outcomes, health.state) == (0.0, 10, H)


def test_set_thresholds_keeps_the_newest_outcomes_and_reevaluates() -> None:
    health = MemberHealth(1, HealthThresholds(window=20, offline_after_failures=100))
    for _ in range(17):
        health.record_success(5.0, 0.0)
    for _ in range(3):
        health.record_failure(1.0, kind="network")
    assert health.state is H
    assert health.error_rate == pytest.approx(3 / 20)
    assert health.set_thresholds(HealthThresholds(window=5, offline_after_failures=100), 2.0) is D
    assert health.error_rate == pytest.approx(3 / 5)
    assert health.snapshot(2.0).outcomes == 5
    assert health.set_thresholds(HealthThresholds(window=5, degraded_error_rate=1.0), 3.0) is H


def test_set_thresholds_without_now_applies_at_the_next_outcome() -> None:
    health = MemberHealth(1, HealthThresholds(ewma_alpha=1.0))
    health.record_success(900.0, 0.0)
    assert health.set_thresholds(HealthThresholds(ewma_alpha=1.0, degraded_latency_ms=500.0)) is None
    assert health.state is H
    assert health.record_success(900.0, 1.0) is D


def test_successful_check_without_a_latency_counts_but_keeps_the_ewma() -> None:
    health = MemberHealth(2, HealthThresholds(ewma_alpha=0.5))
    health.record_success(100.0, 0.0)
    health.record_failure(1.0, kind="network")
    health.record_failure(2.0, kind="network")
    assert health.check_result(True, None, 3.0) is None
    assert (health.consecutive_failures, health.latency_ms, health.snapshot(3.0).outcomes) == (0, 100.0, 4)
    for t in (4.0, 5.0, 6.0):
        health.record_failure(t, kind="network")
    assert health.state is OFF
    assert health.check_result(True, None, 10.0) is H  # back, latency unknown until the next sample
    assert health.latency_ms is None


def test_bad_thresholds_are_reported_together() -> None:
    with pytest.raises(ValueError, match=r"window must be >= 1.*ewma_alpha must be in \(0, 1\]") as info:
        HealthThresholds(window=0, ewma_alpha=0.0)
    assert "degraded_latency_ms" not in str(info.value)
    with pytest.raises(ValueError, match="degraded_error_rate"):
        HealthThresholds(degraded_error_rate=1.5)
    with pytest.raises(ValueError, match="offline_after_failures"):
        HealthThresholds(offline_after_failures=0)
    with pytest.raises(ValueError, match="recovery_s"):
        HealthThresholds(recovery_s=-1.0)
    with pytest.raises(ValueError, match="hysteresis"):
        HealthThresholds(hysteresis=1.5)


def test_bad_input_is_refused() -> None:
    health = MemberHealth(1, HealthThresholds())
    with pytest.raises(ValueError, match="weight must be >= 1"):
        MemberHealth(0, HealthThresholds())
    with pytest.raises(ValueError, match="latency_ms must be a finite number >= 0"):
        health.record_success(-1.0, 0.0)
    with pytest.raises(ValueError, match="latency_ms must be a finite number >= 0"):
        health.record_success(float("nan"), 0.0)
    with pytest.raises(ValueError, match="latency_ms must be a finite number >= 0"):
        health.check_result(True, -5.0, 0.0)
    with pytest.raises(ValueError, match="needs a kind"):
        health.record_failure(0.0, kind="")
    assert health.snapshot(0.0).successes == 0  # nothing refused was recorded


# ---- property: the effective weight always matches the state --------------------------------------------------

_EVENT = st.sampled_from(["ok", "slow", "fail", "rate_limit", "check_ok", "check_fail", "check_maint"])


@settings(PROFILE, max_examples=examples(150))
@given(weight=st.integers(1, 10), events=st.lists(_EVENT, max_size=80))
def test_effective_weight_follows_the_state(weight: int, events: list[str]) -> None:
    health = MemberHealth(weight, HealthThresholds(window=8, recovery_s=10.0))
    now = 0.0
    for what in events:
        now += 1.0
        before = health.state
        if what in ("ok", "slow"):
            health.record_success(3000.0 if what == "slow" else 20.0, now)
            if before in (OFF, M):
                assert health.state is before  # live successes never bring a member back
        elif what in ("fail", "rate_limit"):
            health.record_failure(now, kind="network" if what == "fail" else "rate_limit")
            if what == "rate_limit":
                assert health.state is before
        elif what == "check_ok":
            health.check_result(True, 20.0, now)
            if before in (OFF, M):
                assert health.state is H  # a fast comeback check: healthy, the outage's window cleared
        elif what == "check_fail":
            health.check_result(False, None, now)
        else:
            health.check_result(True, 20.0, now, maintenance=True)
            assert health.state is M
        effective = health.effective_weight(now)
        if health.state in (OFF, M):
            assert effective == 0.0
        elif health.state is D:
            assert weight * DEGRADED_FACTOR * 0.1 - 1e-9 <= effective <= weight * DEGRADED_FACTOR + 1e-9
        else:
            assert weight * 0.1 - 1e-9 <= effective <= weight + 1e-9
