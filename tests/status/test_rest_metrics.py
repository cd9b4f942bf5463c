"""The REST manager and the rate budgets in the status snapshot, ``/metrics`` and ``/api/rest``.

Statistics are built by hand (``RestManagerStats``, ``BudgetStats``: no ccxt, no exchange) and checked sample
by sample against the exposition and the JSON; one test feeds a real process-local :class:`RateBudgets` (its
429 answer, its pools) through the status service. Counters stay monotonic when a reload removes or rebuilds a
member, a group or a budget. ``/api/rest`` answers behind the same token as every other data endpoint.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pytest
from prometheus_client.samples import Sample

from cryptolink.clock import FakeClock
from cryptolink.config import CryptolinkConfig, StatusConfig
from cryptolink.engine.quality import LATENCY_BUCKETS_MS
from cryptolink.manager import ExchangeManager
from cryptolink.rest.budget import BudgetStats, RateBudgets
from cryptolink.rest.stats import RestManagerStats
from cryptolink.status import documents
from cryptolink.status.app import create_app
from cryptolink.status.metrics import REST_ERROR_KINDS, MetricsExporter
from cryptolink.status.server import StatusServer
from cryptolink.status.service import StatusService
from cryptolink.status.snapshot import StatusSnapshot
from tests.status import factories as f
from tests.status.factories import budget, group, latency, limiter, member, pool, rest
from tests.status.test_metrics import FixedClock, FixedSource, find, parse, value

pytestmark = [pytest.mark.timeout(60)]

TOKEN = "t-5d1c9e77-rest-status-token"
SECRET_KEY = "k-9e2f7a41-not-a-real-key"
SECRET = "s-1b6d3c58-not-a-real-secret"


def snap_of(stats: RestManagerStats | None, budgets: tuple[BudgetStats, ...] | None = None) -> StatusSnapshot:
    """A snapshot of one healthy OKX connection plus ``stats`` (its budgets are the snapshot's, as the status
    service sets them)."""
    base = f.snapshot(f.feed("okx", f.conn("okx-ws-1")))
    if budgets is None:
        budgets = stats.budgets if stats is not None else ()
    return replace(base, rest=stats, rest_budgets=budgets)


def exporter_of(snap: StatusSnapshot) -> tuple[FixedSource, MetricsExporter]:
    source = FixedSource(snap)
    return source, MetricsExporter(source, clock=FixedClock(snap.taken_ns), process=False)


def scrape(exporter: MetricsExporter) -> list[Sample]:
    return parse(exporter.render()[0].decode())


def render(snap: StatusSnapshot) -> list[Sample]:
    return scrape(exporter_of(snap)[1])


def rest_samples(samples: list[Sample]) -> list[Sample]:
    """The samples of the REST manager and budget families (not the engine gateway's ``cryptolink_rest_*``)."""
    prefixes = (
        "cryptolink_rest_member_",
        "cryptolink_rest_group_",
        "cryptolink_rest_budget_",
        "cryptolink_rest_pool_",
    )
    return [s for s in samples if s.name.startswith(prefixes) or s.name == "cryptolink_rest_reloads_total"]


A = {"member": "binance-a", "exchange": "binance"}
B = {"member": "binance-b", "exchange": "binance"}
BUD = {"exchange": "binance", "scope": "default"}


# ------------------------------------------------------------------------------------------------ members


def test_every_member_figure_is_exported_with_its_value() -> None:
    m = member(
        state="degraded",
        since_s=12.5,
        weight=3,
        effective_weight=1.5,
        calls=40,
        successes=35,
        errors={"timeout": 3, "rate_limit": 2},
        http_requests=45,
        http_429=2,
        http_418=1,
        latency_ms=125.0,
        error_rate=0.125,
        consecutive_failures=2,
        checks=9,
        check_failures=1,
        transitions=4,
        in_flight=6,
        **latency(0.8, 30.0, 30.0, 400.0),
    )
    samples = render(snap_of(rest((m,))))
    states = {s.labels["state"]: s.value for s in find(samples, "cryptolink_rest_member_state", **A)}
    assert states == {"healthy": 0.0, "degraded": 1.0, "offline": 0.0, "maintenance": 0.0}
    expected = {
        "cryptolink_rest_member_state_seconds": 12.5,
        "cryptolink_rest_member_weight": 3,
        "cryptolink_rest_member_effective_weight": 1.5,
        "cryptolink_rest_member_calls_total": 40,
        "cryptolink_rest_member_successes_total": 35,
        "cryptolink_rest_member_http_requests_total": 45,
        "cryptolink_rest_member_latency_smoothed_seconds": 0.125,
        "cryptolink_rest_member_error_ratio": 0.125,
        "cryptolink_rest_member_consecutive_failures": 2,
        "cryptolink_rest_member_health_checks_total": 9,
        "cryptolink_rest_member_health_check_failures_total": 1,
        "cryptolink_rest_member_transitions_total": 4,
        "cryptolink_rest_member_in_flight": 6,
    }
    for name, want in expected.items():
        assert value(samples, name, **A) == want, name
    errors = {s.labels["kind"]: s.value for s in find(samples, "cryptolink_rest_member_errors_total", **A)}
    assert errors == {**dict.fromkeys(REST_ERROR_KINDS, 0.0), "timeout": 3.0, "rate_limit": 2.0}
    answers = {
        s.labels["status"]: s.value for s in find(samples, "cryptolink_rest_member_rate_limit_answers_total")
    }
    assert answers == {"429": 2.0, "418": 1.0}
    # the cumulative ms buckets become a seconds histogram
    assert value(samples, "cryptolink_rest_member_latency_seconds_bucket", **A, le="0.001") == 1
    assert value(samples, "cryptolink_rest_member_latency_seconds_bucket", **A, le="0.025") == 1
    assert value(samples, "cryptolink_rest_member_latency_seconds_bucket", **A, le="0.05") == 3
    assert value(samples, "cryptolink_rest_member_latency_seconds_bucket", **A, le="0.5") == 4
    assert value(samples, "cryptolink_rest_member_latency_seconds_bucket", **A, le="+Inf") == 4
    assert value(samples, "cryptolink_rest_member_latency_seconds_count", **A) == 4
    assert value(samples, "cryptolink_rest_member_latency_seconds_sum", **A) == pytest.approx(0.4608)


def test_a_member_before_its_first_answer_and_values_outside_the_vocabulary() -> None:
    m = member(state="quarantined", errors={"exotic": 2}, latency_ms=None)
    samples = render(snap_of(rest((m,))))
    assert find(samples, "cryptolink_rest_member_latency_smoothed_seconds") == []  # absent, not a made-up 0
    states = {s.labels["state"]: s.value for s in find(samples, "cryptolink_rest_member_state", **A)}
    assert states == {"healthy": 0.0, "degraded": 0.0, "offline": 0.0, "maintenance": 0.0, "quarantined": 1.0}
    assert value(samples, "cryptolink_rest_member_errors_total", **A, kind="exotic") == 2
    assert len(find(samples, "cryptolink_rest_member_errors_total", **A)) == len(REST_ERROR_KINDS) + 1


def test_groups_strategies_choices_and_reloads() -> None:
    g = group(
        strategy="weighted",
        calls=100,
        successes=90,
        failures=10,
        retries=7,
        chosen={"binance-a": 60},
        unavailable=3,
    )
    samples = render(snap_of(rest((member(), member("binance-b")), (g,), reloads=2)))
    strategies = {s.labels["strategy"]: s.value for s in find(samples, "cryptolink_rest_group_strategy")}
    assert strategies == {"round_robin": 0.0, "least_latency": 0.0, "weighted": 1.0, "failover": 0.0}
    for key, want in (
        ("calls", 100),
        ("successes", 90),
        ("failures", 10),
        ("retries", 7),
        ("unavailable", 3),
    ):
        assert value(samples, f"cryptolink_rest_group_{key}_total", group="btc-spot") == want, key
    choices = {s.labels["member"]: s.value for s in find(samples, "cryptolink_rest_group_choices_total")}
    assert choices == {"binance-a": 60.0, "binance-b": 0.0}  # a member never picked yet is there, at 0
    assert value(samples, "cryptolink_rest_reloads_total") == 2


def test_budgets_and_their_pools() -> None:
    lim = limiter(
        pool(
            "binance:default:weight",
            6000,
            requests=50,
            weight=520,
            observed=40,
            local_in_window=1500,
            local_limit=1500,
        ),
        pool("binance:default:weight:background", 3000, requests=5, weight=100, local_limit=750),
        mode="fallback",
        grants=55,
        waiting=4,
        attempts=70,
        refused_full=9,
        refused_paused=5,
        refused_banned=1,
        timeouts=2,
        rejected=3,
        fallbacks=1,
        rejoins=0,
        redis_errors=12,
    )
    b = budget(
        lim=lim,
        answers_429=2,
        answers_418=1,
        answers_ban_other=0,
        pauses=2,
        bans=1,
        header_corrections=40,
        garbled_headers=1,
        paused_for_s=7.5,
    )
    samples = render(snap_of(rest(budgets=(b,))))
    modes = {s.labels["mode"]: s.value for s in find(samples, "cryptolink_rest_budget_mode", **BUD)}
    assert modes == {"local": 0.0, "redis": 0.0, "fallback": 1.0}
    expected = {
        "cryptolink_rest_budget_grants_total": 55,
        "cryptolink_rest_budget_waiting": 4,
        "cryptolink_rest_budget_attempts_total": 70,
        "cryptolink_rest_budget_timeouts_total": 2,
        "cryptolink_rest_budget_rejected_total": 3,
        "cryptolink_rest_budget_fallbacks_total": 1,
        "cryptolink_rest_budget_rejoins_total": 0,
        "cryptolink_rest_budget_redis_errors_total": 12,
        "cryptolink_rest_budget_pauses_total": 2,
        "cryptolink_rest_budget_bans_total": 1,
        "cryptolink_rest_budget_header_corrections_total": 40,
        "cryptolink_rest_budget_garbled_headers_total": 1,
        "cryptolink_rest_budget_paused_seconds": 7.5,
    }
    for name, want in expected.items():
        assert value(samples, name, **BUD) == want, name
    refused = {
        s.labels["reason"]: s.value for s in find(samples, "cryptolink_rest_budget_refused_attempts_total")
    }
    assert refused == {"full": 9.0, "paused": 5.0, "banned": 1.0}
    answers = {
        s.labels["status"]: s.value for s in find(samples, "cryptolink_rest_budget_rate_limit_answers_total")
    }
    assert answers == {"429": 2.0, "418": 1.0, "other": 0.0}
    # pools are labelled by their key within the budget
    assert {s.labels["pool"] for s in find(samples, "cryptolink_rest_pool_limit")} == {
        "weight",
        "weight:background",
    }
    main = {**BUD, "pool": "weight"}
    side = {**BUD, "pool": "weight:background"}
    assert value(samples, "cryptolink_rest_pool_limit", **main) == 6000
    assert value(samples, "cryptolink_rest_pool_window_seconds", **main) == 60.25
    assert value(samples, "cryptolink_rest_pool_requests_total", **main) == 50
    assert value(samples, "cryptolink_rest_pool_weight_total", **main) == 520
    assert value(samples, "cryptolink_rest_pool_observed_weight_total", **main) == 40
    assert value(samples, "cryptolink_rest_pool_local_weight_in_window", **main) == 1500
    assert value(samples, "cryptolink_rest_pool_local_limit", **main) == 1500
    assert value(samples, "cryptolink_rest_pool_limit", **side) == 3000
    assert value(samples, "cryptolink_rest_pool_weight_total", **side) == 100


def test_series_per_member_group_budget_and_pool_are_fixed() -> None:
    """The cardinality documented in docs/metrics.md: 46 series per member, 9 per group plus one per member of
    it, 22 per budget, 7 per pool, and the reload counter; nothing at all without REST."""
    assert rest_samples(render(snap_of(None))) == []
    one = rest((member(latency_ms=20.0, **latency(20.0)),), (group(members=("binance-a",)),), (budget(),))
    assert len(rest_samples(render(snap_of(one)))) == 46 + (9 + 1) + 22 + 7 + 1
    two = rest(
        (member(latency_ms=20.0, **latency(20.0)), member("binance-b", latency_ms=20.0, **latency(20.0))),
        (group(), group("eth-spot")),
        (budget(), budget("okx", lim=limiter(pool("okx:default:a"), pool("okx:default:b")))),
    )
    assert len(rest_samples(render(snap_of(two)))) == 2 * 46 + 2 * (9 + 2) + 2 * 22 + 3 * 7 + 1


# ---------------------------------------------------------------------------- counters that never go down


def test_counters_never_go_down_when_a_reload_removes_or_rebuilds_a_member() -> None:
    a1 = member(
        calls=10, successes=8, errors={"timeout": 2}, http_requests=12, http_429=1, **latency(30.0, 400.0)
    )
    b1 = member("binance-b", calls=5, successes=5, http_requests=5)
    g1 = group(calls=15, successes=13, failures=2, chosen={"binance-a": 10, "binance-b": 5})
    source, exporter = exporter_of(snap_of(rest((a1, b1), (g1,))))
    before = rest_samples(scrape(exporter))

    # reload 1: b is removed; a goes on counting; the group keeps its counters (one member fewer)
    a2 = replace(a1, calls=11, successes=9)
    g2 = replace(g1, members=("binance-a",), calls=16, successes=14, chosen={"binance-a": 11, "binance-b": 5})
    source.latest = snap_of(rest((a2,), (g2,), reloads=1))
    after_removal = rest_samples(scrape(exporter))
    assert find(after_removal, "cryptolink_rest_member_calls_total", **B) == []  # its series goes away
    assert value(after_removal, "cryptolink_rest_member_calls_total", **A) == 11
    assert value(after_removal, "cryptolink_rest_group_calls_total", group="btc-spot") == 16
    # the removed member's first picks stay counted in the group (the group's counter kept them)
    assert (
        value(after_removal, "cryptolink_rest_group_choices_total", group="btc-spot", member="binance-b") == 5
    )

    # reload 2: a is rebuilt (new ccxt instance: its counters start again at 0) and makes 3 calls; the group is
    # rebuilt too and its counters start again
    a3 = member(calls=3, successes=2, errors={"network": 1}, http_requests=3, **latency(50.0))
    g3 = group(members=("binance-a",), calls=3, successes=2, failures=1, chosen={"binance-a": 3})
    source.latest = snap_of(rest((a3,), (g3,), reloads=2))
    after_rebuild = rest_samples(scrape(exporter))
    assert value(after_rebuild, "cryptolink_rest_member_calls_total", **A) == 11 + 3
    assert value(after_rebuild, "cryptolink_rest_member_successes_total", **A) == 9 + 2
    assert value(after_rebuild, "cryptolink_rest_member_errors_total", **A, kind="timeout") == 2
    assert value(after_rebuild, "cryptolink_rest_member_errors_total", **A, kind="network") == 1
    assert value(after_rebuild, "cryptolink_rest_member_rate_limit_answers_total", **A, status="429") == 1
    assert value(after_rebuild, "cryptolink_rest_member_latency_seconds_count", **A) == 3
    assert value(after_rebuild, "cryptolink_rest_member_latency_seconds_sum", **A) == pytest.approx(0.48)
    assert value(after_rebuild, "cryptolink_rest_member_latency_seconds_bucket", **A, le="0.05") == 2
    assert value(after_rebuild, "cryptolink_rest_group_calls_total", group="btc-spot") == 16 + 3
    assert (
        value(after_rebuild, "cryptolink_rest_group_choices_total", group="btc-spot", member="binance-a")
        == 14
    )
    assert value(after_rebuild, "cryptolink_rest_member_in_flight", **A) == 0  # gauges are the present values

    # no counter sample of any scrape is above the same series in a later scrape
    for earlier, later in ((before, after_removal), (after_removal, after_rebuild)):
        for s in earlier:
            if not s.name.endswith(("_total", "_bucket", "_count", "_sum")):
                continue
            now = find(later, s.name, **s.labels)
            assert all(n.value >= s.value for n in now), (s, now)
    # a second scrape of the same snapshot gives the same samples
    assert rest_samples(scrape(exporter)) == after_rebuild


def test_a_member_moved_to_another_exchange_is_a_new_series_and_a_gone_budget_is_forgotten() -> None:
    source, exporter = exporter_of(
        snap_of(rest((member(calls=10),), budgets=(budget(lim=limiter(grants=7)),)))
    )
    scrape(exporter)
    moved = member(exchange="okx", calls=2)
    source.latest = snap_of(rest((moved,)))
    samples = scrape(exporter)
    assert value(samples, "cryptolink_rest_member_calls_total", member="binance-a", exchange="okx") == 2
    assert find(samples, "cryptolink_rest_member_calls_total", exchange="binance") == []
    assert find(samples, "cryptolink_rest_budget_grants_total") == []
    assert len(exporter.collector._member_sums) == 1 and len(exporter.collector._budget_sums) == 0


def test_a_budget_created_again_keeps_its_counts() -> None:
    old = budget(
        lim=limiter(pool("binance:default:weight", requests=40, weight=400), grants=40), answers_429=3
    )
    source, exporter = exporter_of(snap_of(None, (old,)))
    scrape(exporter)
    new = budget(lim=limiter(pool("binance:default:weight", requests=2, weight=20), grants=2), answers_429=0)
    source.latest = snap_of(None, (new,))
    samples = scrape(exporter)
    assert value(samples, "cryptolink_rest_budget_grants_total", **BUD) == 42
    assert value(samples, "cryptolink_rest_budget_rate_limit_answers_total", **BUD, status="429") == 3
    assert value(samples, "cryptolink_rest_pool_weight_total", **BUD, pool="weight") == 420


# ------------------------------------------------------------------------------------------ status service


def _manager() -> ExchangeManager:
    cfg = CryptolinkConfig.from_dict(
        {
            "exchanges": {"okx": {"symbols": ["BTC/USDT"], "api_key": SECRET_KEY, "api_secret": SECRET}},
            "status": {"token": TOKEN},
        },
        env={},
    )
    return ExchangeManager(cfg)  # never started


@dataclass
class Provider:
    """A statistics provider that counts its calls."""

    result: Any
    calls: int = 0

    def __call__(self) -> Any:
        self.calls += 1
        return self.result


def test_the_snapshot_carries_the_managers_budgets_once_and_the_engines_without_a_manager() -> None:
    engine_budgets = (budget("okx"),)
    manager_stats = rest((member(),), budgets=(budget("binance"), budget("okx")))
    only_budgets = Provider(engine_budgets)
    no_manager = Provider(None)
    service = StatusService(_manager(), StatusConfig(), rest=no_manager, budgets=only_budgets)
    snap = service.refresh()
    assert snap.rest is None and snap.rest_budgets == engine_budgets
    assert (no_manager.calls, only_budgets.calls) == (1, 1)
    # with a manager: its budgets are the process's; the budgets provider is not asked
    with_manager = Provider(manager_stats)
    service = StatusService(_manager(), StatusConfig(), rest=with_manager, budgets=only_budgets)
    snap = service.refresh()
    assert snap.rest is manager_stats and snap.rest_budgets == manager_stats.budgets
    assert (with_manager.calls, only_budgets.calls) == (1, 1)
    samples = render(snap)
    assert len(find(samples, "cryptolink_rest_budget_grants_total")) == 2  # okx once, not twice
    # neither provider: nothing
    snap = StatusService(_manager(), StatusConfig()).refresh()
    assert (snap.rest, snap.rest_budgets) == (None, ())


def test_a_failing_provider_fails_the_pass_like_the_engines_snapshot() -> None:
    def broken() -> RestManagerStats | None:
        raise RuntimeError("boom")

    service = StatusService(_manager(), StatusConfig(), rest=broken)
    with pytest.raises(RuntimeError, match="boom"):
        service.refresh()
    assert service.latest_or_none is None  # the views keep what they had (nothing yet)


async def test_a_real_budgets_429_reaches_metrics_and_json() -> None:
    """A process-local RateBudgets (Binance rules): two grants, a 429 with Retry-After, a used-weight header above
    our count; its own statistics go through the status service unchanged."""
    clock = FakeClock()
    budgets = RateBudgets(clock, window_margin_s=0.25)
    b = budgets.get("binance")
    params = {"symbol": "BTCUSDT", "limit": "100"}
    g1 = await b.acquire("GET", "/api/v3/depth", params)
    await b.feed(g1, 200, {"X-MBX-USED-WEIGHT-1M": "30"}, path="/api/v3/depth")
    g2 = await b.acquire("GET", "/api/v3/depth", params)
    await b.feed(g2, 429, {"Retry-After": "5"}, path="/api/v3/depth")
    stats = budgets.stats()
    (bs,) = stats
    assert (bs.answers_429, bs.pauses) == (1, 1)
    service = StatusService(_manager(), StatusConfig(), budgets=budgets.stats)
    snap = service.refresh()
    samples = render(snap)
    assert value(samples, "cryptolink_rest_budget_rate_limit_answers_total", **BUD, status="429") == 1
    assert value(samples, "cryptolink_rest_budget_pauses_total", **BUD) == 1
    assert value(samples, "cryptolink_rest_budget_grants_total", **BUD) == 2
    assert value(samples, "cryptolink_rest_budget_mode", **BUD, mode="local") == 1
    main = next(p for p in bs.limiter.pools if p.name == "binance:default:weight")
    lab = {**BUD, "pool": "weight"}
    assert value(samples, "cryptolink_rest_pool_limit", **lab) == main.limit
    assert value(samples, "cryptolink_rest_pool_window_seconds", **lab) == main.window_s
    assert value(samples, "cryptolink_rest_pool_weight_total", **lab) == main.weight > 0
    assert value(samples, "cryptolink_rest_pool_observed_weight_total", **lab) == main.observed
    assert value(samples, "cryptolink_rest_budget_header_corrections_total", **BUD) == bs.header_corrections
    assert value(samples, "cryptolink_rest_pool_local_weight_in_window", **lab) == main.local_in_window
    doc = documents.rest_doc(snap)
    assert doc["manager"] is False and doc["members"] == [] and doc["groups"] == []
    (budget_doc,) = doc["budgets"]
    assert budget_doc["answers"] == {"429": 1, "418": 0, "ban_other": 0}
    assert [p["key"] for p in budget_doc["pools"]] == [
        documents.pool_key("binance", "default", p.name) for p in bs.limiter.pools
    ]
    await budgets.aclose()


# ------------------------------------------------------------------------------------------------ documents


def test_the_rest_document_has_every_figure() -> None:
    m = member(
        state="offline",
        since_s=130.25,
        weight=2,
        effective_weight=0.0,
        calls=12,
        successes=9,
        errors={"network": 3},
        http_requests=14,
        http_429=1,
        latency_ms=42.123,
        consecutive_failures=3,
        error_rate=0.25,
        checks=4,
        check_failures=3,
        last_error="NetworkError: connection refused",
        transitions=2,
        **latency(40.0, 45.0),
    )
    g = group(
        members=("binance-a",),
        strategy="failover",
        calls=12,
        successes=9,
        failures=3,
        retries=2,
        chosen={"binance-a": 12},
        unavailable=1,
    )
    b = budget(
        lim=limiter(pool("binance:default:weight", requests=14, weight=140), mode="redis", grants=14),
        answers_429=1,
        pauses=1,
    )
    doc = documents.rest_doc(snap_of(rest((m,), (g,), (b,), reloads=3)))
    assert doc["manager"] is True and doc["reloads"] == 3 and doc["instance_id"] == "test-1"
    assert doc["taken_at"] == documents.iso(f.T0 + 4_000_000_000)
    assert doc["summary"] == {
        "members": 1,
        "states": {"healthy": 0, "degraded": 0, "offline": 1, "maintenance": 0},
        "groups": 1,
        "budgets": 1,
        "budgets_fallback": 0,
    }
    (md,) = doc["members"]
    assert md == {
        "name": "binance-a",
        "exchange": "binance",
        "ip": "default",
        "state": "offline",
        "since_s": 130.25,
        "weight": 2,
        "effective_weight": 0.0,
        "priority": 0,
        "calls": 12,
        "successes": 9,
        "errors": {"network": 3},
        "http_requests": 14,
        "http_429": 1,
        "http_418": 0,
        "latency_ms": 42.12,
        "latency_histogram": {
            "bounds_ms": list(LATENCY_BUCKETS_MS),
            "cumulative": list(latency(40.0, 45.0)["latency_counts"]),
            "count": 2,
            "sum_ms": 85.0,
        },
        "error_rate": 0.25,
        "consecutive_failures": 3,
        "checks": 4,
        "check_failures": 3,
        "last_error": "NetworkError: connection refused",
        "transitions": 2,
        "in_flight": 0,
    }
    assert doc["groups"] == [
        {
            "name": "btc-spot",
            "strategy": "failover",
            "members": ["binance-a"],
            "calls": 12,
            "successes": 9,
            "failures": 3,
            "retries": 2,
            "chosen": {"binance-a": 12},
            "unavailable": 1,
        }
    ]
    (bd,) = doc["budgets"]
    assert bd["mode"] == "redis" and bd["grants"] == 14 and bd["pauses"] == 1
    assert bd["refused"] == {"full": 0, "paused": 0, "banned": 0}
    assert bd["pools"] == [
        {
            "name": "binance:default:weight",
            "key": "weight",
            "limit": 6000,
            "window_s": 60.25,
            "scope": "binance:default",
            "requests": 14,
            "weight": 140,
            "observed": 0,
            "local_in_window": 0,
            "local_limit": 6000,
        }
    ]
    json.dumps(doc)  # plain JSON types only


def test_system_status_has_a_rest_summary_only_with_rest() -> None:
    assert documents.system_status(snap_of(None))["rest"] is None
    fallback = budget(lim=limiter(mode="fallback"))
    stats = rest((member(), member("binance-b", state="maintenance")), (group(),), (fallback, budget("okx")))
    summary = documents.system_status(snap_of(stats))["rest"]
    assert summary == {
        "members": 2,
        "states": {"healthy": 1, "degraded": 0, "offline": 0, "maintenance": 1},
        "groups": 1,
        "budgets": 2,
        "budgets_fallback": 1,
    }
    only_budgets = documents.system_status(snap_of(None, (budget(),)))["rest"]
    assert only_budgets is not None and only_budgets["members"] == 0 and only_budgets["budgets"] == 1


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("binance:default:weight", "weight"),
        ("binance:default:weight:background", "weight:background"),
        ("cryptolink:rl:binance:default:orders", "orders"),
        ("something-else", "something-else"),
        ("binance:default:", "binance:default:"),
    ],
)
def test_pool_keys_within_their_budget(name: str, key: str) -> None:
    assert documents.pool_key("binance", "default", name) == key


# ---------------------------------------------------------------------------------------------------- HTTP


@pytest.fixture
async def served() -> AsyncIterator[tuple[str, Callable[[RestManagerStats | None], None]]]:
    """The status API with a token, its REST provider settable; yields ``(url, set_stats)``."""
    provider = Provider(None)
    service = StatusService(_manager(), StatusConfig(push_interval_s=3600), rest=provider)
    server = StatusServer(create_app(service, token=TOKEN), "127.0.0.1", 0)
    await server.start()

    def set_stats(stats: RestManagerStats | None) -> None:
        provider.result = stats
        service.refresh()

    try:
        yield server.url, set_stats
    finally:
        await server.stop()
        await service.stop()


def _keys(doc: Any) -> set[str]:
    if isinstance(doc, dict):
        return set(doc) | {k for v in doc.values() for k in _keys(v)}
    if isinstance(doc, list):
        return {k for v in doc for k in _keys(v)}
    return set()


async def test_api_rest_needs_the_token_and_carries_no_secret(
    served: tuple[str, Callable[[RestManagerStats | None], None]],
) -> None:
    url, set_stats = served
    stats = rest((member(last_error="AuthenticationError: invalid key"),), (group(),), (budget(),), reloads=1)
    set_stats(stats)
    async with httpx.AsyncClient(base_url=url) as http:
        for headers in ({}, {"Authorization": f"Bearer {TOKEN}x"}, {"Authorization": f"Basic {TOKEN}"}):
            r = await http.get("/api/rest", headers=headers)
            assert r.status_code == 401, headers
            assert "binance-a" not in r.text
        assert (await http.get("/api/rest", params={"token": TOKEN[:-1]})).status_code == 401
        ok = await http.get("/api/rest", headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200 and ok.headers["content-type"] == "application/json"
        body = ok.json()
        assert (await http.get("/api/rest", params={"token": TOKEN})).json() == body
        status = (await http.get("/api/system/status", params={"token": TOKEN})).json()
        openapi = (await http.get("/openapi.json", params={"token": TOKEN})).json()
    assert body["manager"] is True and [m["name"] for m in body["members"]] == ["binance-a"]
    assert body["members"][0]["last_error"] == "AuthenticationError: invalid key"
    assert [g["name"] for g in body["groups"]] == ["btc-spot"] and len(body["budgets"]) == 1
    assert status["rest"]["members"] == 1 and status["rest"]["states"]["healthy"] == 1
    assert "/api/rest" in openapi["paths"]
    for secret in (SECRET_KEY, SECRET, TOKEN):
        assert secret not in ok.text
    assert not {k for k in _keys(body) if any(w in k for w in ("key", "secret", "password", "token"))} - {
        "key"
    }


async def test_api_rest_without_a_manager(
    served: tuple[str, Callable[[RestManagerStats | None], None]],
) -> None:
    url, set_stats = served
    set_stats(None)
    async with httpx.AsyncClient(base_url=url, params={"token": TOKEN}) as http:
        body = (await http.get("/api/rest")).json()
    assert body["manager"] is False
    assert (body["members"], body["groups"], body["budgets"], body["summary"]) == ([], [], [], None)
    assert (body["reloads"], body["taken_at"]) == (None, None)


# ------------------------------------------------------------------------------------------------- promtool


def test_promtool_finds_no_problem_in_the_rest_families() -> None:
    promtool = shutil.which("promtool")
    assert promtool is not None, "promtool is not installed"
    stats = rest(
        (
            member(latency_ms=20.0, errors={"timeout": 1}, **latency(20.0)),
            member("okx-a", "okx", state="offline"),
        ),
        (group(chosen={"binance-a": 3}),),
        (
            budget(
                lim=limiter(
                    pool("binance:default:weight"), pool("binance:default:weight:background"), mode="redis"
                )
            ),
        ),
        reloads=1,
    )
    body = MetricsExporter(FixedSource(snap_of(stats)), process=False).render()[0].decode()
    assert "cryptolink_rest_member_latency_seconds_bucket" in body
    lint = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, text=True, timeout=30, check=False
    )
    assert (lint.returncode, lint.stdout, lint.stderr) == (0, "", "")
