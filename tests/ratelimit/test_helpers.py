"""The window checker the other tests rely on."""

from __future__ import annotations

import pytest

from cryptolink.ratelimit import Grant
from tests.ratelimit.helpers import max_window_weight

pytestmark = [pytest.mark.timeout(10)]


def grant(at_us: int, weight: int) -> Grant:
    return Grant(at_us, {"p": weight}, "local")


def test_windows_are_half_open_and_start_at_each_grant() -> None:
    grants = [grant(0, 3), grant(500, 4), grant(999, 2), grant(1000, 5)]
    # [0, 1000) holds 3+4+2; [500, 1500) holds 4+2+5
    assert max_window_weight(grants, "p", 1000) == 11
    assert max_window_weight(grants, "p", 1001) == 14
    assert max_window_weight(grants, "p", 1) == 5
    assert max_window_weight([], "p", 1000) == 0
