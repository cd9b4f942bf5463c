"""Property-based tests (hypothesis): book sync under perturbed streams, the subscription registry as a state
machine, adapters' decoders on mutated frames.

Deterministic: every test here runs under :data:`PROFILE` (``derandomize=True``: the examples are derived from
the test itself, so CI runs the same cases every time; no example database is read or written). Example
counts are chosen per test to keep the whole directory within ~40 s on a 2-core machine; for a longer local
search, set ``CRYPTOLINK_PROPERTY_SCALE`` (an integer multiplier of every test's ``max_examples``, default 1).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

__all__ = ["PROFILE", "PROFILE_NAME", "examples"]

PROFILE_NAME = "cryptolink-property"

settings.register_profile(
    PROFILE_NAME,
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PROFILE = settings.get_profile(PROFILE_NAME)
"""The registered profile; tests use it as ``@settings(PROFILE, max_examples=examples(N))``. It is NOT loaded
globally (other test directories keep hypothesis' defaults)."""

_SCALE = max(1, int(os.environ.get("CRYPTOLINK_PROPERTY_SCALE", "1") or "1"))


def examples(n: int) -> int:
    """``n`` times ``CRYPTOLINK_PROPERTY_SCALE``: the ``max_examples`` of one property."""
    return n * _SCALE
