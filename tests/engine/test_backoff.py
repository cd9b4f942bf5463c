import random

import pytest

from cryptolink.engine.backoff import Backoff, BackoffPolicy


def test_sequence_immediate_then_bounded_by_doubling_up_to_cap() -> None:
    b = Backoff(BackoffPolicy(), random.Random(1))
    delays = [b.next_delay() for _ in range(15)]
    assert delays[0] == 0.0
    bounds = [b.bound(n) for n in range(1, 16)]
    assert bounds[:8] == [0, 1, 2, 4, 8, 16, 30, 30]  # the 30 s cap bounds the wait after an outage ends
    assert bounds[-1] == 30
    for d, bound in zip(delays, bounds, strict=True):
        assert 0.0 <= d <= bound


def test_full_jitter_covers_whole_range() -> None:
    rng = random.Random(7)
    samples = []
    for _ in range(2000):
        b = Backoff(BackoffPolicy(), rng)
        for _ in range(4):
            d = b.next_delay()
        samples.append(d)  # attempt 4: uniform(0, 4)
    assert min(samples) < 0.1 and max(samples) > 3.9
    assert 1.8 < sum(samples) / len(samples) < 2.2  # mean of uniform(0, 4)


def test_huge_attempt_numbers_stay_capped() -> None:
    b = Backoff(BackoffPolicy(cap_s=300), random.Random(0))
    b.attempt = 10_000
    assert 0 <= b.next_delay() <= 300


def test_reset_only_after_healthy_period() -> None:
    assert BackoffPolicy().reset_after_s == 2.0
    b = Backoff(BackoffPolicy(reset_after_s=30), random.Random(0))
    assert not b.should_reset(100.0)  # nothing to reset
    for _ in range(5):
        b.next_delay()
    assert not b.should_reset(29.9)
    assert b.should_reset(30.0)
    b.reset()
    assert b.next_delay() == 0.0 and b.attempt == 1


def test_max_attempts_exhausts() -> None:
    b = Backoff(BackoffPolicy(max_attempts=3))
    for _ in range(3):
        assert not b.exhausted
        b.next_delay()
    assert b.exhausted


@pytest.mark.parametrize("kw", [{"base_s": -1}, {"factor": 0.5}, {"max_attempts": 0}])
def test_invalid_policy(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        BackoffPolicy(**kw)  # type: ignore[arg-type]
