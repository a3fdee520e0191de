"""The Grafana dashboard and the Prometheus alerts query only metrics our process exports.

Every PromQL expression of charts/autoscaler/dashboards/*.json (panels and template variables)
and charts/autoscaler/files/alerts.yaml is reduced to the metric names it reads, and each must
be a series family on the /metrics of a real `autoscaler run` (metrics pipeline and HPA
controller with leader election, as the chart deploys it), read over HTTPS without credentials
with the flag the chart's metrics.enabled adds. A renamed metric thus breaks this test, not a
dashboard in someone's cluster. The alert file also has the PrometheusRule spec's shape.
(The kustomize copies are checked equal to these in tests/test_chart.py.)
"""

from __future__ import annotations

import json
import re
import ssl
import urllib.request
from pathlib import Path

import pytest
import yaml
from test_metrics_api_support import MetricsServerThread, run_args

from sim.cluster import run_in_thread
from sim.scenario import parse_scenario

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "autoscaler"
DASHBOARDS = sorted((CHART / "dashboards").glob("*.json"))
ALERTS = CHART / "files" / "alerts.yaml"
#: what the chart's metrics.enabled adds to the container's arguments
METRICS_ALLOWED = "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics"

#: PromQL words that are neither functions (those are followed by "(") nor metric names
KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool",
            "atan2", "inf", "nan"}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_LABEL_LISTS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*([A-Za-z_:][A-Za-z0-9_:]*)")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: identifiers outside strings, label matchers,
    ranges and label lists that are not keywords and not called as functions. A Grafana
    ``label_values(metric, label)`` query reads ``metric``."""
    grafana = _LABEL_VALUES.match(expr)
    if grafana:
        return {grafana.group(1)}
    text = _LABEL_LISTS.sub(" ", _RANGES.sub(" ", _MATCHERS.sub(" ", _STRING.sub('""', expr))))
    names = set()
    for m in _IDENT.finditer(text):
        if m.group().lower() in KEYWORDS or text[m.end():].lstrip().startswith("("):
            continue
        if m.start() and (text[m.start() - 1].isdigit() or text[m.start() - 1] == "."):
            continue  # the exponent or unit of a number
        names.add(m.group())
    return names


def test_the_tokenizer_finds_metrics_and_nothing_else():
    expr = ('histogram_quantile(0.99, sum by (node, le) (rate(a_seconds_bucket{job=~"$job", x="y z"}[5m])))'
            ' / on (job) group_left max without (pod) (b_total offset 1h) > bool 1e3 unless c:recorded or vector(0)')
    assert metric_names(expr) == {"a_seconds_bucket", "b_total", "c:recorded"}
    assert metric_names("label_values(d_count, job)") == {"d_count"}


def dashboard_queries() -> list[tuple[str, str]]:
    out = []
    for path in DASHBOARDS:
        doc = json.loads(path.read_text())
        for var in doc.get("templating", {}).get("list", []):
            if var.get("type") == "query":
                q = var["query"]
                out.append((f"{path.name} variable {var['name']}", q["query"] if isinstance(q, dict) else q))

        panels = list(doc["panels"])
        while panels:  # rows may nest their panels
            p = panels.pop()
            out += [(f"{path.name} panel {p['title']!r}", t["expr"]) for t in p.get("targets", [])]
            panels += p.get("panels", [])
    return out


def alert_rules() -> list[dict]:
    return [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]


def test_dashboard_shape():
    assert DASHBOARDS
    for path in DASHBOARDS:
        doc = json.loads(path.read_text())
        assert doc["uid"] and doc["title"]
        ids = [p["id"] for p in doc["panels"]]
        assert len(ids) == len(set(ids))
        for p in doc["panels"]:
            if p["type"] != "row":
                assert p["targets"] and p["datasource"]["uid"] == "${datasource}", p["title"]
    sections = {p["title"] for p in json.loads(DASHBOARDS[0].read_text())["panels"] if p["type"] == "row"}
    assert {"Metrics pipeline", "Scrapes per node", "Metrics API", "HPA controller",
            "Dry-run gap (ours vs built-in)"} <= sections


def test_alerts_have_the_prometheusrule_shape():
    doc = yaml.safe_load(ALERTS.read_text())
    assert set(doc) == {"groups"}
    names = [g["name"] for g in doc["groups"]]
    assert len(names) == len(set(names))
    alerts = set()
    for rule in alert_rules():
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", rule["alert"])
        assert re.fullmatch(r"\d+[smh]", rule["for"])
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        alerts.add(rule["alert"])
    # the four situations an operator pages on: scrapes failing, metrics stale, controller stuck, leader flapping
    assert {"AutoscalerKubeletScrapesFailing", "AutoscalerMetricsStale", "AutoscalerControllerStuck",
            "AutoscalerLeaderFlapping"} <= alerts


def exported_names(text: str) -> set[str]:
    """Series names a Prometheus text exposition offers (families without samples included)."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names.add(name)
            if kind == "histogram":
                names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
            elif kind == "counter" and not name.endswith("_total"):
                names.add(f"{name}_total")
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


@pytest.fixture(scope="module")
def served_metrics(tmp_path_factory) -> str:
    tmp = tmp_path_factory.mktemp("monitoring")
    scenario = {"name": "monitoring", "timing": {"startupDelay": "0s", "readinessDelay": "0s"},
                "nodes": [{"name": "worker-1"}],
                "workloads": [{"name": "web", "replicas": 1, "requests": {"cpu": "100m", "memory": "64Mi"},
                               "load": {"kind": "constant", "cores": 0.05}}],
                "hpas": [{"target": "web", "minReplicas": 1, "maxReplicas": 3, "cpuUtilization": 50}]}
    cluster = run_in_thread(parse_scenario(scenario), tmp / "cluster")
    server = None
    try:
        argv = [a for a in run_args(cluster, tmp) if a != "--controller-mode=off"]
        server = MetricsServerThread([*argv, "--controller-mode=dry-run", METRICS_ALLOWED]).start()
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        with urllib.request.urlopen(f"https://127.0.0.1:{server.port}/metrics", context=ctx, timeout=30) as resp:
            assert resp.status == 200
            yield resp.read().decode()
    finally:
        if server is not None:
            server.stop()
        cluster.stop()


def test_every_queried_metric_is_exported(served_metrics):
    exported = exported_names(served_metrics)
    queries = dashboard_queries() + [(f"alert {r['alert']}", r["expr"]) for r in alert_rules()]
    assert len(queries) > 20
    missing = {}
    for where, expr in queries:
        names = metric_names(expr)
        assert names, f"{where}: no metric in {expr!r}"
        for name in names - exported:
            missing.setdefault(name, []).append(where)
    assert not missing, f"queried but not exported by autoscaler run: {missing}"
    # the families that exist only to be watched: per-node failures and leadership
    assert {"autoscaler_kubelet_request_failures_total", "leader_election_master_status"} <= exported
