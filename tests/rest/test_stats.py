"""The REST manager's block of the connection report."""

from __future__ import annotations

from cryptolink.rest.stats import report_section
from tests.status.factories import group, member, rest


def test_report_section_names_every_member_and_group_with_their_figures() -> None:
    stats = rest(
        members=(
            member(
                "a",
                calls=12,
                successes=10,
                errors={"timeout": 2},
                http_requests=14,
                http_429=1,
                latency_ms=12.34,
            ),
            member("b", state="offline", since_s=75.0, checks=9, check_failures=4),
        ),
        groups=(
            group("g", ("a", "b"), calls=12, successes=11, failures=1, retries=3, chosen={"a": 9, "b": 3}),
        ),
        reloads=2,
    )
    section = report_section(stats)
    assert section.title == "REST manager"
    a, b, g, reloads = section.lines
    assert "a (binance, ip default): healthy" in a and "calls 12, ok 10, errors: timeout 2" in a
    assert "http 14 (429: 1, 418: 0)" in a and "latency 12.3 ms" in a
    assert (
        "b (binance, ip default): offline for 75 s" in b
        and "errors: none" in b
        and "checks 9 (4 failed)" in b
    )
    assert "latency -" in b
    assert "group g (round_robin): calls 12, ok 11, failed 1, retries 3" in g and "first picks: a 9, b 3" in g
    assert reloads == "  reconfigured 2 times"
