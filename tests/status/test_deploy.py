"""The monitoring files in ``deploy/``: promtool checks and unit-tests the alert rules, the dashboard's queries
parse as PromQL, and every metric name either of them uses exists in a real exposition of
:class:`~cryptolink.status.metrics.MetricsExporter` (renaming a metric breaks this test)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from cryptolink.engine.quality import LATENCY_BUCKETS_MS
from cryptolink.status.metrics import SPECS, MetricsExporter
from cryptolink.status.service import StatusService
from tests.integration.harness import rig

pytestmark = [pytest.mark.timeout(60)]

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
ALERTS_TEST = ROOT / "deploy" / "prometheus" / "alerts_test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "cryptolink.json"

NAME = re.compile(r"\bcryptolink_[a-zA-Z0-9_]+")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "info": ("_info",)}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    assert exe is not None, "promtool is not installed"
    return subprocess.run([exe, *args], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [r for group in doc["groups"] for r in group["rules"]]


def dashboard_exprs() -> list[str]:
    doc = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in doc["panels"] for t in p.get("targets", ())]


def names_in(exprs: list[str]) -> set[str]:
    return {m.group(0) for e in exprs for m in NAME.finditer(e)}


async def exposed_names() -> set[str]:
    """Every series name a real exposition of a running OKX feed carries (with per-symbol labels, so the
    per-symbol families are there too), plus the sample names of each family's type (a family with no sample
    in this run still has its TYPE line)."""
    async with rig(["okx"]) as r:
        await r.healthy("okx")
        body = MetricsExporter(StatusService(r.manager), per_symbol=True).render()[0].decode()
    out: set[str] = set()
    for fam in text_string_to_metric_families(body):
        out.update(s.name for s in fam.samples)
        out.update(fam.name + suffix for suffix in SUFFIXES.get(fam.type, ("",)))
    return out


def test_promtool_accepts_the_rules() -> None:
    res = promtool("check", "rules", str(ALERTS.relative_to(ROOT)))
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"SUCCESS: {len(rules())} rules found" in res.stdout


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    res = promtool("test", "rules", str(ALERTS_TEST.relative_to(ROOT)))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def test_promtool_unit_tests_can_fail(tmp_path: Path) -> None:
    """The same tests against rules with one threshold changed fail (the unit tests do check thresholds)."""
    changed = ALERTS.read_text().replace(
        "cryptolink_data_age_seconds > 300", "cryptolink_data_age_seconds > 500"
    )
    assert changed != ALERTS.read_text()
    (tmp_path / "alerts.yml").write_text(changed)
    (tmp_path / "alerts_test.yml").write_text(ALERTS_TEST.read_text())
    res = promtool("test", "rules", str(tmp_path / "alerts_test.yml"))
    assert res.returncode != 0
    assert "alertname: CryptolinkDataAgeHigh" in res.stdout + res.stderr


def test_every_alert_has_severity_summary_description_and_a_test_both_ways() -> None:
    tests = yaml.safe_load(ALERTS_TEST.read_text())["tests"]
    cases = [c for t in tests for c in t.get("alert_rule_test", ())]
    names = [r["alert"] for r in rules()]
    assert len(names) == len(set(names)) >= 14
    for rule in rules():
        name = rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
        mine = [c for c in cases if c["alertname"] == name]
        assert any(c["exp_alerts"] for c in mine), f"{name}: no test where it fires"
        assert any(not c["exp_alerts"] for c in mine), f"{name}: no test where it does not fire"


def test_the_dashboard_queries_parse_as_promql(tmp_path: Path) -> None:
    """Each panel query, with Grafana's variables filled in, checked by promtool as a recording rule."""
    exprs = [
        e.replace("$__rate_interval", "5m").replace("$instance", ".*").replace("$feed", ".*")
        for e in dashboard_exprs()
    ]
    doc = {
        "groups": [
            {"name": "dashboard", "rules": [{"record": f"q:{i}", "expr": e} for i, e in enumerate(exprs)]}
        ]
    }
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(doc))
    res = promtool("check", "rules", str(path))
    assert res.returncode == 0, res.stdout + res.stderr


def test_the_dashboard_shape() -> None:
    doc = json.loads(DASHBOARD.read_text())
    assert doc["schemaVersion"] == 39
    assert [i["name"] for i in doc["__inputs"]] == ["DS_PROMETHEUS"]
    titles = {p["title"] for p in doc["panels"]}
    for wanted in (
        "Connections by state",
        "Quality score",
        "Messages per second",
        "Reconnects",
        "Data age",
        "Book resyncs by cause",
        "Ping RTT p99",
        "Exchange lag p50 / p99",
        "Bus drops per consumer",
        "REST weight vs limit",
        "REST 429 / 418",
    ):
        assert wanted in titles
    (rate,) = [p for p in doc["panels"] if p["title"] == "Messages per second"]
    assert rate["fieldConfig"]["defaults"]["unit"] == "short"  # messages, not requests ("reqps")
    assert rate["fieldConfig"]["defaults"]["custom"]["axisLabel"] == "msg/s"
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids))
    for p in doc["panels"]:
        assert p["datasource"]["uid"] == "${DS_PROMETHEUS}", p["title"]
        assert all(t["datasource"]["uid"] == "${DS_PROMETHEUS}" for t in p["targets"]), p["title"]
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
    assert any(
        "histogram_quantile(0.99" in e and "cryptolink_ping_rtt_seconds_bucket" in e
        for e in dashboard_exprs()
    )


async def test_every_metric_the_rules_and_the_dashboard_use_is_exposed() -> None:
    exposed = await exposed_names()
    used_by_rules = names_in([r["expr"] for r in rules()])
    used_by_dashboard = names_in(dashboard_exprs())
    assert len(used_by_rules) >= 14 and len(used_by_dashboard) >= 14
    assert used_by_rules - exposed == set()
    assert used_by_dashboard - exposed == set()
    assert "cryptolink_ping_rtt_seconds_bucket" in exposed and "cryptolink_renamed_metric" not in exposed


def test_the_metrics_page_documents_every_family_alert_and_bucket() -> None:
    page = (ROOT / "docs" / "metrics.md").read_text()
    missing = [s.name for s in SPECS if f"`{s.name}`" not in page]
    assert missing == []
    assert [r["alert"] for r in rules() if f"`{r['alert']}`" not in page] == []
    bounds = ", ".join(f"{b / 1000:g}" for b in LATENCY_BUCKETS_MS)
    assert f"`{bounds}, +Inf`" in page


# ------------------------------------------------------------------------------------------- label names
SCRAPE_LABELS = frozenset({"job", "instance"})
"""Labels Prometheus adds to every scraped series."""

SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}")
MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
TEMPLATE_LABEL = re.compile(r"\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)")
LEGEND_LABEL = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")
LABEL_VALUES = re.compile(r"^label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)$")


def labels_of(series: str) -> frozenset[str] | None:
    """The label names a series named ``series`` can carry (per-symbol ones included), ``None`` for a name
    this project does not expose. ``up`` is Prometheus' own."""
    if series == "up":
        return SCRAPE_LABELS
    by_name = {s.name: s for s in SPECS}
    for suffix, extra in (("", ()), ("_bucket", ("le",)), ("_count", ()), ("_sum", ())):
        spec = by_name.get(series.removesuffix(suffix)) if series.endswith(suffix) else None
        if spec is not None and (suffix == "" or spec.kind == "histogram"):
            return SCRAPE_LABELS | set(spec.labels) | set(spec.symbol_labels) | set(extra)
    return None


def label_problems(expr: str, used_elsewhere: tuple[str, ...] = ()) -> list[str]:
    """Label names in ``expr`` (selectors, grouping clauses) and in ``used_elsewhere`` (annotations, legends)
    that the metrics they go with do not have."""
    problems: list[str] = []
    union: set[str] = set(SCRAPE_LABELS)
    for m in NAME.finditer(expr):
        known = labels_of(m.group(0))
        if known is None:
            problems.append(f"{m.group(0)}: not an exposed series")
        else:
            union |= known
    for m in SELECTOR.finditer(expr):
        known = labels_of(m.group(1))
        for label in MATCHER.findall(m.group(2)):
            if known is not None and label not in known:
                problems.append(f"{m.group(1)} has no label {label!r}")
    grouped = [label.strip() for m in GROUPING.finditer(expr) for label in m.group(1).split(",")]
    for label in [g for g in grouped if g] + list(used_elsewhere):
        if label not in union:
            problems.append(f"no metric of {expr!r} has the label {label!r}")
    return problems


def test_the_label_check_finds_wrong_labels() -> None:
    """The checks below can fail: a misspelt grouping label, a label of another metric, an annotation label."""
    assert label_problems('sum by (feed) (cryptolink_books{feed=~"x"})') == []
    assert label_problems("sum by (symbl) (cryptolink_books)") != []
    assert label_problems('cryptolink_books{cause="gap"}') != []  # cause exists, but not on books
    assert label_problems("cryptolink_books > 1", ("connection",)) != []
    assert label_problems("cryptolink_renamed_metric > 1") != []
    assert label_problems('cryptolink_ping_rtt_seconds_bucket{le="0.1"}') == []


def test_every_label_the_rules_use_exists_on_their_metrics() -> None:
    for rule in rules():
        annotations = " ".join(rule["annotations"].values())
        used = tuple(TEMPLATE_LABEL.findall(annotations))
        assert label_problems(rule["expr"], used) == [], rule["alert"]


def test_every_label_the_dashboard_uses_exists_on_its_metrics() -> None:
    doc = json.loads(DASHBOARD.read_text())
    for p in doc["panels"]:
        for t in p.get("targets", ()):
            legend = tuple(LEGEND_LABEL.findall(t.get("legendFormat", "")))
            assert label_problems(t["expr"], legend) == [], (p["title"], t["expr"])
            kept = re.search(r"\bby\s*\(([^)]*)\)", t["expr"])  # the outer aggregation keeps only these
            if kept is not None:
                names = {label.strip() for label in kept.group(1).split(",")}
                assert set(legend) <= names, (p["title"], t["expr"], legend)


def test_the_dashboard_variables_query_exposed_labels(tmp_path: Path) -> None:
    doc = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    used = {m for e in dashboard_exprs() for m in re.findall(r"\$([a-zA-Z_]+)", e)} - {"__rate_interval"}
    assert used <= set(variables), used - set(variables)
    selectors = []
    for name, var in variables.items():
        query = var["query"]["query"]
        assert var["definition"] == query, name
        m = LABEL_VALUES.match(query)
        assert m is not None, f"{name}: {query!r} is not label_values(<selector>, <label>)"
        selector, label = m.group(1), m.group(2)
        assert label_problems(selector, (label,)) == [], name
        selectors.append(re.sub(r"\$[a-zA-Z_]+", ".*", selector))
    path = tmp_path / "variables.yml"
    rules_doc = [{"record": f"v:{i}", "expr": s} for i, s in enumerate(selectors)]
    path.write_text(yaml.safe_dump({"groups": [{"name": "variables", "rules": rules_doc}]}))
    res = promtool("check", "rules", str(path))
    assert res.returncode == 0, res.stdout + res.stderr
