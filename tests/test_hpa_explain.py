"""`autoscaler explain` run as a real subprocess on snapshot files (YAML multi-doc, JSON List)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

SNAPSHOTS = Path(__file__).parent / "data" / "snapshots"
NOW = "2024-01-01T01:00:30Z"


def explain(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "autoscaler", "explain", *args], capture_output=True, text=True,
                          input=stdin, timeout=60)


def load_items() -> list[dict[str, Any]]:
    return json.loads((SNAPSHOTS / "web-list.json").read_text())["items"]


def write_list(tmp_path: Path, items: list[dict[str, Any]], name: str = "snap.json") -> Path:
    p = tmp_path / name
    p.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    return p


def conditions(doc: dict[str, Any]) -> list[tuple[str, str, str]]:
    return [(c["type"], c["status"], c["reason"]) for c in doc["status"]["conditions"]]


@pytest.mark.parametrize("snapshot", ["web-multidoc.yaml", "web-list.json"])
def test_scale_up_from_snapshot(snapshot: str) -> None:
    r = explain("-f", str(SNAPSHOTS / snapshot), "--now", NOW, "-o", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert set(doc) == {"status", "scale", "events", "state", "explanation"}
    assert doc["scale"] == {"from": 2, "to": 4, "updated": True}
    assert doc["status"]["desiredReplicas"] == 4 and doc["status"]["currentReplicas"] == 2
    assert doc["status"]["currentMetrics"] == [
        {"type": "Resource", "resource": {"name": "cpu", "current": {"averageValue": "200m", "averageUtilization": 100}}}]
    # 1.37 (HPAScaleToZero on) records ScaledToZero on every rescale
    assert conditions(doc) == [("AbleToScale", "True", "SucceededRescale"), ("ScalingActive", "True", "ValidMetricFound"),
                               ("ScalingLimited", "False", "DesiredWithinRange"),
                               ("ScaledToZero", "False", "NotScaledToZero")]
    assert doc["events"] == [{"type": "Normal", "reason": "SuccessfulRescale",
                              "message": "New size: 4; reason: cpu resource utilization (percentage of request) above target"}]
    assert [r["replicas"] for r in doc["state"]["recommendations"]] == [2, 4]
    metric = doc["explanation"]["metrics"][0]
    assert metric["utilization"] == 100 and metric["proposal"] == 4
    assert {p["name"]: p["class"] for p in metric["pods"]} == {"web-1": "ready", "web-2": "ready"}


def test_yaml_output_and_text_output() -> None:
    r = explain("-f", str(SNAPSHOTS / "web-multidoc.yaml"), "--now", NOW, "-o", "yaml")
    assert r.returncode == 0, r.stderr
    assert yaml.safe_load(r.stdout)["scale"]["to"] == 4
    t = explain("-f", str(SNAPSHOTS / "web-multidoc.yaml"), "--now", NOW, "-o", "text")
    assert t.returncode == 0 and "would scale 2 -> 4" in t.stdout and "100% of request" in t.stdout
    # offline nothing is written: the controller's "was able to update" text is marked as hypothetical
    head, _, written = t.stdout.partition("what the controller would write, had its scale update succeeded")
    assert "was able to update" not in head and "SucceededRescale" in written


def test_stdin_snapshot() -> None:
    r = explain("-f", "-", "--now", NOW, "-o", "json", stdin=(SNAPSHOTS / "web-list.json").read_text())
    assert r.returncode == 0 and json.loads(r.stdout)["scale"]["to"] == 4


def _low_usage(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for it in items:
        if it["kind"] == "PodMetrics":
            it["containers"][0]["usage"]["cpu"] = "20m"
    return items


def test_state_controls_scale_down_stabilization(tmp_path: Path) -> None:
    snap = write_list(tmp_path, _low_usage(load_items()))
    # A controller that never saw the HPA seeds its history with the current size: no scale-down yet.
    fresh = json.loads(explain("-f", str(snap), "--now", NOW, "-o", "json").stdout)
    assert fresh["scale"] == {"from": 2, "to": 2, "updated": False}
    assert ("AbleToScale", "True", "ScaleDownStabilized") in conditions(fresh)
    # An empty history lets it scale down at once.
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"recommendations": [], "scaleUpEvents": [], "scaleDownEvents": []}))
    r = explain("-f", str(snap), "--now", NOW, "-o", "json", "--state", str(state))
    doc = json.loads(r.stdout)
    assert r.returncode == 0 and doc["scale"] == {"from": 2, "to": 1, "updated": True}
    # The state it prints can be fed back in.
    state.write_text(json.dumps(doc["state"]))
    again = json.loads(explain("-f", str(snap), "--now", "2024-01-01T01:00:45Z", "-o", "json", "--state",
                               str(state)).stdout)
    assert [r["replicas"] for r in again["state"]["recommendations"]] == [1, 1]


def test_missing_scale_is_failed_get_scale(tmp_path: Path) -> None:
    snap = write_list(tmp_path, [it for it in load_items() if it["kind"] != "Scale"])
    r = explain("-f", str(snap), "--now", NOW, "-o", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["scale"] == {"from": None, "to": None, "updated": False}
    assert conditions(doc) == [("AbleToScale", "False", "FailedGetScale")]
    assert doc["events"] == [{"type": "Warning", "reason": "FailedGetScale",
                              "message": 'deployments.apps "web" not found'}]


def test_unknown_metric_type_and_missing_metrics(tmp_path: Path) -> None:
    items = load_items()
    items[0]["spec"]["metrics"] = [{"type": "CheddarCheese"}]
    doc = json.loads(explain("-f", str(write_list(tmp_path, items)), "--now", NOW, "-o", "json").stdout)
    assert conditions(doc)[-1] == ("ScalingActive", "False", "InvalidMetricSourceType")
    items = [it for it in load_items() if it["kind"] != "PodMetrics"]
    doc = json.loads(explain("-f", str(write_list(tmp_path, items, "b.json")), "--now", NOW, "-o", "json").stdout)
    assert conditions(doc)[-1] == ("ScalingActive", "False", "FailedGetResourceMetric")
    assert doc["status"]["desiredReplicas"] == 0  # the HPA had no previous status: desired keeps its old value
    assert doc["events"][0]["message"] == ("failed to get cpu utilization: unable to get metrics for resource cpu: "
                                           "no metrics returned from resource metrics API")
    assert doc["events"][-1]["reason"] == "FailedComputeMetricsReplicas"


def test_external_and_object_metrics_from_value_lists(tmp_path: Path) -> None:
    items = load_items()
    items[0]["spec"]["metrics"] = [
        {"type": "External", "external": {"metric": {"name": "queue", "selector": {"matchLabels": {"q": "jobs"}}},
                                          "target": {"type": "AverageValue", "averageValue": "10"}}},
        {"type": "Object", "object": {"describedObject": {"apiVersion": "v1", "kind": "Service", "name": "web"},
                                      "metric": {"name": "rps"}, "target": {"type": "Value", "value": "100"}}},
    ]
    items.append({"apiVersion": "external.metrics.k8s.io/v1beta1", "kind": "ExternalMetricValueList", "items": [
        {"metricName": "queue", "metricLabels": {"q": "jobs"}, "timestamp": NOW, "value": "55"},
        {"metricName": "queue", "metricLabels": {"q": "other"}, "timestamp": NOW, "value": "1000"}]})
    items.append({"apiVersion": "custom.metrics.k8s.io/v1beta2", "kind": "MetricValueList", "items": [
        {"describedObject": {"kind": "Service", "name": "web", "namespace": "default", "apiVersion": "/v1"},
         "metric": {"name": "rps"}, "timestamp": NOW, "value": "150"}]})
    doc = json.loads(explain("-f", str(write_list(tmp_path, items)), "--now", NOW, "-o", "json").stdout)
    proposals = [m["proposal"] for m in doc["explanation"]["metrics"]]
    assert proposals == [6, 3]  # ceil(55/10); ceil(1.5 x 2 ready pods)
    assert doc["scale"]["to"] == 4  # legacy scale-up limit max(2 x 2, 4)
    assert ("ScalingLimited", "True", "ScaleUpLimit") in conditions(doc)


def test_ambiguous_selector(tmp_path: Path) -> None:
    items = load_items()
    other = json.loads(json.dumps(items[0]))
    other["metadata"]["name"] = "web-too"
    other["spec"]["scaleTargetRef"]["name"] = "web-too"
    scale = json.loads(json.dumps(next(it for it in items if it["kind"] == "Scale")))
    scale["metadata"]["name"] = "web-too"
    items += [other, scale]
    snap = str(write_list(tmp_path, items))
    r = explain("-f", snap, "--hpa", "default/web", "--now", NOW, "-o", "json")
    doc = json.loads(r.stdout)
    assert conditions(doc)[-1] == ("ScalingActive", "False", "AmbiguousSelector")
    assert doc["events"][0]["message"] == ("pods by selector app=web are controlled by more than one HPA "
                                           "(e.g. [default/web default/web-too])")
    old = json.loads(explain("-f", snap, "--hpa", "default/web", "--now", NOW, "-o", "json",
                             "--emulated-version=1.36").stdout)
    assert old["events"][0]["message"] == ("pods by selector app=web are controlled by multiple HPAs: "
                                           "[default/web default/web-too]")
    both = explain("-f", str(write_list(tmp_path, items, "c.json")), "--now", NOW)
    assert both.returncode == 2 and "--hpa" in both.stderr


def test_scale_to_zero_gate(tmp_path: Path) -> None:
    items = load_items()
    items[0]["spec"]["minReplicas"] = 0
    items[0]["spec"]["metrics"] = [{"type": "External", "external": {
        "metric": {"name": "queue"}, "target": {"type": "Value", "value": "10"}}}]
    items.append({"apiVersion": "external.metrics.k8s.io/v1beta1", "kind": "ExternalMetricValueList",
                  "items": [{"metricName": "queue", "metricLabels": {}, "timestamp": NOW, "value": "0"}]})
    snap = write_list(tmp_path, items)
    state = tmp_path / "s.json"
    state.write_text(json.dumps({"recommendations": []}))
    common = ("-f", str(snap), "--now", NOW, "-o", "json", "--state", str(state))
    off = json.loads(explain(*common, "--emulated-version=1.36").stdout)  # alpha, off in 1.36
    assert off["scale"]["to"] == 0 and "ScaledToZero" not in [c[0] for c in conditions(off)]
    on = json.loads(explain(*common, "--emulated-version=1.36", "--feature-gates", "HPAScaleToZero=true").stdout)
    assert ("ScaledToZero", "True", "ScaledToZero") in conditions(on)
    assert json.loads(explain(*common).stdout)["status"]["conditions"] == on["status"]["conditions"]  # 1.37: on
    off = json.loads(explain(*common, "--feature-gates", "HPAScaleToZero=false").stdout)
    assert "ScaledToZero" not in [c[0] for c in conditions(off)]


def test_typed_lists_as_kubectl_get_raw_returns_them(tmp_path: Path) -> None:
    """`kubectl get --raw .../pods` answers a PodMetricsList (a PodList, ...) whose items carry no kind."""
    items = load_items()

    def typed(kind: str) -> dict[str, Any]:
        members = [it for it in items if it["kind"] == kind]
        return {"kind": f"{kind}List", "apiVersion": members[0]["apiVersion"], "metadata": {},
                "items": [{k: v for k, v in it.items() if k not in ("kind", "apiVersion")} for it in members]}

    docs = [it for it in items if it["kind"] not in ("Pod", "PodMetrics")] + [typed("Pod"), typed("PodMetrics")]
    snap = tmp_path / "raw.yaml"
    snap.write_text("\n---\n".join(json.dumps(d) for d in docs))
    r = explain("-f", str(snap), "--now", NOW, "-o", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["scale"] == {"from": 2, "to": 4, "updated": True}  # as from the List snapshot
    assert doc["explanation"]["metrics"][0]["utilization"] == 100


def test_hpa_generation_gate_sets_observed_generation(tmp_path: Path) -> None:
    items = load_items()
    hpa = next(it for it in items if it["kind"] == "HorizontalPodAutoscaler")
    hpa["metadata"]["generation"] = 7
    snap = write_list(tmp_path, items)
    on = json.loads(explain("-f", str(snap), "--now", NOW, "-o", "json").stdout)  # 1.37: beta, on
    assert on["status"]["observedGeneration"] == 7
    assert all("observedGeneration" not in c for c in on["status"]["conditions"])  # v1.37.2 sets none per condition
    for flags in (["--emulated-version=1.36"], ["--feature-gates", "HPAGeneration=false"]):
        off = json.loads(explain("-f", str(snap), "--now", NOW, "-o", "json", *flags).stdout)
        assert "observedGeneration" not in off["status"] and on["scale"] == off["scale"]


@pytest.mark.parametrize(("content", "needle"), [
    ("foo: [", "neither JSON nor YAML"),
    ('{"apiVersion": "v1", "metadata": {"name": "x"}}', "document 1: kind: required field is missing"),
    ('{"apiVersion": "v1", "kind": "List", "items": [{"kind": "Pod", "metadata": {"name": "p"}}]}',
     "document 1, item 0 (Pod p): apiVersion: required field is missing"),
    ('{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}', "no HorizontalPodAutoscaler"),
])
def test_unreadable_input_exits_2(tmp_path: Path, content: str, needle: str) -> None:
    p = tmp_path / "in.yaml"
    p.write_text(content)
    r = explain("-f", str(p), "--now", NOW)
    assert r.returncode == 2
    assert needle in r.stderr


def test_hpa_flag_names_none() -> None:
    r = explain("-f", str(SNAPSHOTS / "web-list.json"), "--hpa", "default/nope", "--now", NOW)
    assert r.returncode == 2 and "--hpa default/nope" in r.stderr and "default/web" in r.stderr


def test_bad_pod_metrics_quantity_names_object(tmp_path: Path) -> None:
    items = load_items()
    for it in items:
        if it["kind"] == "PodMetrics":
            it["containers"][0]["usage"]["cpu"] = "lots"
    r = explain("-f", str(write_list(tmp_path, items)), "--now", NOW)
    assert r.returncode == 2 and "PodMetrics default/web-1" in r.stderr and "usage.cpu" in r.stderr


def test_fields_the_hpa_kind_lacks_are_named_in_a_warning(tmp_path: Path) -> None:
    items = load_items()
    hpa = next(it for it in items if it["kind"] == "HorizontalPodAutoscaler")
    hpa["spec"]["behavior"] = {"scaleDown": {"stabilizationWindowSecond": 0}}
    r = explain("-f", str(write_list(tmp_path, items)), "--now", NOW, "-o", "json")
    assert r.returncode == 0, r.stderr
    assert "ignored: spec.behavior.scaleDown.stabilizationWindowSecond" in r.stderr
    assert json.loads(r.stdout)["scale"]["to"] == 4
