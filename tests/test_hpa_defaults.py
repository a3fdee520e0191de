"""autoscaling/v2 defaulting, validation messages and v1 <-> v2 conversion."""

from __future__ import annotations

import json
from typing import Any

from kubernetes.client import ApiClient

from autoscaler.hpa import default_hpa, hpa_v1_to_v2, hpa_v2_to_v1, validate_hpa


def hpa(**spec: Any) -> dict[str, Any]:
    base = {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}, "maxReplicas": 5}
    base.update(spec)
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "default"}, "spec": base}


def test_defaults_min_replicas_and_cpu_metric() -> None:
    obj = hpa()
    out = default_hpa(obj)
    assert out["spec"]["minReplicas"] == 1
    assert out["spec"]["metrics"] == [{"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]
    assert "behavior" not in out["spec"]
    assert "minReplicas" not in obj["spec"]  # a new dict: the input is untouched
    assert default_hpa(out) == out


def test_behavior_defaulted_field_by_field() -> None:
    out = default_hpa(hpa(behavior={"scaleUp": {"stabilizationWindowSeconds": 60, "tolerance": "0.05"},
                                    "scaleDown": {"policies": []}}))
    up, down = out["spec"]["behavior"]["scaleUp"], out["spec"]["behavior"]["scaleDown"]
    assert up == {"stabilizationWindowSeconds": 60, "selectPolicy": "Max", "tolerance": "0.05", "policies": [
        {"type": "Pods", "value": 4, "periodSeconds": 15}, {"type": "Percent", "value": 100, "periodSeconds": 15}]}
    assert down == {"selectPolicy": "Max", "policies": []}  # window stays unset; explicit [] kept
    assert default_hpa(out) == out
    assert ("spec.behavior.scaleDown.policies", "Required value: must specify at least one Policy") in validate_hpa(out)


def test_validation_messages() -> None:
    # the replica bounds are declarative validation in 1.37: the v1.37.2 kube-apiserver lists them last
    assert validate_hpa(hpa(minReplicas=0)) == [
        ("spec.metrics", "Forbidden: must specify at least one Object or External metric to support scaling to zero replicas"),
        ("spec.minReplicas", "Invalid value: 0: must be greater than or equal to 1"),
    ]
    assert validate_hpa(hpa(maxReplicas=None)) == [
        ("spec.maxReplicas", "Invalid value: 0: must be greater than or equal to `minReplicas`"),
        ("spec.maxReplicas", "Required value")]
    assert validate_hpa(hpa(maxReplicas=-1, minReplicas=None)) == [
        ("spec.maxReplicas", "Invalid value: -1: must be greater than or equal to `minReplicas`"),
        ("spec.maxReplicas", "Invalid value: -1: must be greater than or equal to 1")]
    # every check runs: a bad reference does not hide the metric errors
    bad_ref = hpa(metrics=[{"type": "Pods", "pods": {"metric": {"name": ""},
                                                     "target": {"type": "AverageValue", "averageValue": "1"}}}])
    bad_ref["spec"]["scaleTargetRef"]["name"] = ""
    assert validate_hpa(bad_ref) == [("spec.scaleTargetRef.name", "Required value"),
                                     ("spec.metrics[0].pods.metric.name", "Required value: must specify a metric name")]
    ext = [{"type": "External", "external": {"metric": {"name": "q"}, "target": {"type": "Value", "value": "1"}}}]
    assert validate_hpa(hpa(minReplicas=0, metrics=ext), scale_to_zero=True) == []
    assert validate_hpa(hpa(minReplicas=3, maxReplicas=2)) == [
        ("spec.maxReplicas", "Invalid value: 2: must be greater than or equal to `minReplicas`")]
    errs = validate_hpa(hpa(metrics=[{"type": "CheddarCheese"}]))
    assert errs == [("spec.metrics[0].type", 'Unsupported value: "CheddarCheese": supported values: '
                                             '"ContainerResource", "External", "Object", "Pods", "Resource"')]
    errs = validate_hpa(hpa(metrics=[{"type": "Pods", "pods": {"metric": {"name": "qps"},
                                                               "target": {"type": "AverageValue", "averageValue": "-1"}}}]))
    assert errs == [("spec.metrics[0].pods.target.averageValue", 'Invalid value: "-1": must be positive')]
    errs = validate_hpa(hpa(behavior={"scaleUp": {"stabilizationWindowSeconds": 3601, "selectPolicy": "Fastest",
                                                  "policies": [{"type": "Pods", "value": 0, "periodSeconds": 1801}],
                                                  "tolerance": "-0.001"}}))
    assert errs == [
        ("spec.behavior.scaleUp.stabilizationWindowSeconds", "Invalid value: 3601: must be less than or equal to 3600"),
        ("spec.behavior.scaleUp.selectPolicy", 'Unsupported value: "Fastest": supported values: "Disabled", "Max", "Min"'),
        ("spec.behavior.scaleUp.policies[0].value", "Invalid value: 0: must be greater than zero"),
        ("spec.behavior.scaleUp.policies[0].periodSeconds", "Invalid value: 1801: must be less than or equal to 1800"),
        ("spec.behavior.scaleUp.tolerance", 'Invalid value: "-1m": must be greater than or equal to 0'),
    ]
    for tol in ("0", "0.001", "0.1", "10"):
        assert validate_hpa(hpa(behavior={"scaleUp": {"tolerance": tol}})) == []
    assert validate_hpa(hpa(behavior={"scaleUp": {"tolerance": "0.1"}}), configurable_tolerance=False)[0][0] == \
        "spec.behavior.scaleUp.tolerance"


def test_v2_to_v1_round_trip_keeps_everything() -> None:
    obj = default_hpa(hpa(
        minReplicas=2,
        metrics=[{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}},
                 {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}},
                 {"type": "External", "external": {"metric": {"name": "q", "selector": {"matchLabels": {"a": "b"}}},
                                                   "target": {"type": "AverageValue", "averageValue": "10"}}}],
        behavior={"scaleDown": {"stabilizationWindowSeconds": 60}}))
    obj["status"] = {"currentReplicas": 2, "desiredReplicas": 3, "currentMetrics": [
        {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 70, "averageValue": "140m"}}}],
        "conditions": [{"type": "AbleToScale", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z",
                        "reason": "SucceededRescale", "message": "ok"}]}
    v1 = hpa_v2_to_v1(obj)
    assert v1["apiVersion"] == "autoscaling/v1"
    assert v1["spec"]["targetCPUUtilizationPercentage"] == 60
    assert v1["status"]["currentCPUUtilizationPercentage"] == 70
    ann = v1["metadata"]["annotations"]
    assert json.loads(ann["autoscaling.alpha.kubernetes.io/metrics"])[0] == {
        "type": "Resource", "resource": {"name": "memory", "targetAverageValue": "100Mi"}}
    assert json.loads(ann["autoscaling.alpha.kubernetes.io/behavior"])["ScaleDown"]["StabilizationWindowSeconds"] == 60
    # The real Kubernetes client reads the v1 object.
    model = ApiClient()._ApiClient__deserialize(v1, "V1HorizontalPodAutoscaler")
    assert model.spec.target_cpu_utilization_percentage == 60 and model.status.desired_replicas == 3
    back = hpa_v1_to_v2(v1)
    assert "annotations" not in back["metadata"]
    assert sorted(json.dumps(m, sort_keys=True) for m in back["spec"]["metrics"]) == \
        sorted(json.dumps(m, sort_keys=True) for m in obj["spec"]["metrics"])
    assert back["spec"]["behavior"] == obj["spec"]["behavior"]
    assert back["status"]["conditions"] == obj["status"]["conditions"]
    assert back["status"]["currentMetrics"] == obj["status"]["currentMetrics"]


def test_v1_without_cpu_target_defaults_on_v2_read() -> None:
    v1 = {"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "x"},
          "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "x"}, "maxReplicas": 3}}
    v2 = default_hpa(hpa_v1_to_v2(v1))
    assert v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 80
    assert v2["spec"]["minReplicas"] == 1
