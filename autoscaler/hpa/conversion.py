"""autoscaling/v1 <-> autoscaling/v2 HorizontalPodAutoscaler conversion, as kube-apiserver does it.

v1 only has ``targetCPUUtilizationPercentage``; everything else survives a round trip through
four ``autoscaling.alpha.kubernetes.io/*`` annotations: the other metrics (v1 MetricSpec JSON),
the current metrics (v1 MetricStatus JSON), the conditions, and the behavior. The behavior
annotation is the JSON of the Go *internal* type, so its keys are capitalised
(``{"ScaleUp":{"StabilizationWindowSeconds":0,...}}``); Go reads JSON keys case-insensitively,
and so does :func:`hpa_v1_to_v2`.
"""

from __future__ import annotations

import json
from typing import Any

METRIC_SPECS_ANNOTATION = "autoscaling.alpha.kubernetes.io/metrics"
METRIC_STATUSES_ANNOTATION = "autoscaling.alpha.kubernetes.io/current-metrics"
CONDITIONS_ANNOTATION = "autoscaling.alpha.kubernetes.io/conditions"
BEHAVIOR_ANNOTATION = "autoscaling.alpha.kubernetes.io/behavior"
ROUND_TRIP_ANNOTATIONS = (METRIC_SPECS_ANNOTATION, METRIC_STATUSES_ANNOTATION, CONDITIONS_ANNOTATION,
                          BEHAVIOR_ANNOTATION)


def _copy(value: Any) -> Any:
    """Copy a JSON-shaped value (dicts and lists only), cheaper than copy.deepcopy."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _drop(d: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in keys and v is not None}


def _ci_get(d: dict[str, Any], key: str) -> Any:
    """Go's encoding/json field match: exact key first, then case-insensitive."""
    if key in d:
        return d[key]
    low = key.lower()
    for k, v in d.items():
        if k.lower() == low:
            return v
    return None


def _split_meta(obj: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    meta = _copy(obj.get("metadata") or {})
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in ROUND_TRIP_ANNOTATIONS}
    return meta, annotations


def _finish_meta(meta: dict[str, Any], annotations: dict[str, str]) -> dict[str, Any]:
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    return meta


# --- metric specs --------------------------------------------------------------------------


def _spec_v2_to_v1(m: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"type": m.get("type", "")}
    if m.get("object") is not None:
        src = m["object"]
        t = src.get("target") or {}
        metric = src.get("metric") or {}
        o: dict[str, Any] = {"target": _copy(src.get("describedObject") or {}), "metricName": metric.get("name", ""),
                             "targetValue": t.get("value") if t.get("value") is not None else "0"}
        if metric.get("selector") is not None:
            o["selector"] = _copy(metric["selector"])
        if t.get("averageValue") is not None:
            o["averageValue"] = t["averageValue"]
        out["object"] = o
    if m.get("pods") is not None:
        src = m["pods"]
        t = src.get("target") or {}
        metric = src.get("metric") or {}
        p: dict[str, Any] = {"metricName": metric.get("name", ""),
                             "targetAverageValue": t.get("averageValue") if t.get("averageValue") is not None else "0"}
        if metric.get("selector") is not None:
            p["selector"] = _copy(metric["selector"])
        out["pods"] = p
    for key in ("resource", "containerResource"):
        if m.get(key) is not None:
            src = m[key]
            t = src.get("target") or {}
            r: dict[str, Any] = {"name": src.get("name", "")}
            if t.get("averageUtilization") is not None:
                r["targetAverageUtilization"] = t["averageUtilization"]
            if t.get("averageValue") is not None:
                r["targetAverageValue"] = t["averageValue"]
            if key == "containerResource":
                r["container"] = src.get("container", "")
            out[key] = r
    if m.get("external") is not None:
        src = m["external"]
        t = src.get("target") or {}
        metric = src.get("metric") or {}
        e: dict[str, Any] = {"metricName": metric.get("name", "")}
        if metric.get("selector") is not None:
            e["metricSelector"] = _copy(metric["selector"])
        if t.get("value") is not None:
            e["targetValue"] = t["value"]
        if t.get("averageValue") is not None:
            e["targetAverageValue"] = t["averageValue"]
        out["external"] = e
    return out


def _spec_v1_to_v2(m: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"type": m.get("type", "")}
    if m.get("object") is not None:
        src = m["object"]
        avg = src.get("averageValue")
        target: dict[str, Any] = {"type": "Value" if avg is None else "AverageValue",
                                  "value": src.get("targetValue", "0")}
        if avg is not None:
            target["averageValue"] = avg
        metric: dict[str, Any] = {"name": src.get("metricName", "")}
        if src.get("selector") is not None:
            metric["selector"] = _copy(src["selector"])
        out["object"] = {"describedObject": _copy(src.get("target") or {}), "metric": metric, "target": target}
    if m.get("pods") is not None:
        src = m["pods"]
        metric = {"name": src.get("metricName", "")}
        if src.get("selector") is not None:
            metric["selector"] = _copy(src["selector"])
        out["pods"] = {"metric": metric,
                       "target": {"type": "AverageValue", "averageValue": src.get("targetAverageValue", "0")}}
    for key in ("resource", "containerResource"):
        if m.get(key) is not None:
            src = m[key]
            util = src.get("targetAverageUtilization")
            target = {"type": "AverageValue" if util is None else "Utilization"}
            if util is not None:
                target["averageUtilization"] = util
            if src.get("targetAverageValue") is not None:
                target["averageValue"] = src["targetAverageValue"]
            r: dict[str, Any] = {"name": src.get("name", "")}
            if key == "containerResource":
                r["container"] = src.get("container", "")
            r["target"] = target
            out[key] = r
    if m.get("external") is not None:
        src = m["external"]
        value = src.get("targetValue")
        target = {"type": "AverageValue" if value is None else "Value"}
        if value is not None:
            target["value"] = value
        if src.get("targetAverageValue") is not None:
            target["averageValue"] = src["targetAverageValue"]
        metric = {"name": src.get("metricName", "")}
        if src.get("metricSelector") is not None:
            metric["selector"] = _copy(src["metricSelector"])
        out["external"] = {"metric": metric, "target": target}
    return out


# --- metric statuses -----------------------------------------------------------------------


def _status_v2_to_v1(m: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"type": m.get("type", "")}
    if m.get("object") is not None:
        src = m["object"]
        cur = src.get("current") or {}
        metric = src.get("metric") or {}
        o: dict[str, Any] = {"target": _copy(src.get("describedObject") or {}), "metricName": metric.get("name", ""),
                             "currentValue": cur.get("value") if cur.get("value") is not None else "0"}
        if metric.get("selector") is not None:
            o["selector"] = _copy(metric["selector"])
        if cur.get("averageValue") is not None:
            o["averageValue"] = cur["averageValue"]
        out["object"] = o
    if m.get("pods") is not None:
        src = m["pods"]
        cur = src.get("current") or {}
        metric = src.get("metric") or {}
        p: dict[str, Any] = {"metricName": metric.get("name", ""),
                             "currentAverageValue": cur.get("averageValue") if cur.get("averageValue") is not None else "0"}
        if metric.get("selector") is not None:
            p["selector"] = _copy(metric["selector"])
        out["pods"] = p
    for key in ("resource", "containerResource"):
        if m.get(key) is not None:
            src = m[key]
            cur = src.get("current") or {}
            r: dict[str, Any] = {"name": src.get("name", "")}
            if cur.get("averageUtilization") is not None:
                r["currentAverageUtilization"] = cur["averageUtilization"]
            r["currentAverageValue"] = cur.get("averageValue") if cur.get("averageValue") is not None else "0"
            if key == "containerResource":
                r["container"] = src.get("container", "")
            out[key] = r
    if m.get("external") is not None:
        src = m["external"]
        cur = src.get("current") or {}
        metric = src.get("metric") or {}
        e: dict[str, Any] = {"metricName": metric.get("name", "")}
        if metric.get("selector") is not None:
            e["metricSelector"] = _copy(metric["selector"])
        e["currentValue"] = cur.get("value") if cur.get("value") is not None else "0"
        if cur.get("averageValue") is not None:
            e["currentAverageValue"] = cur["averageValue"]
        out["external"] = e
    return out


def _status_v1_to_v2(m: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"type": m.get("type", "")}
    if m.get("object") is not None:
        src = m["object"]
        cur: dict[str, Any] = {"value": src.get("currentValue", "0")}
        if src.get("averageValue") is not None:
            cur["averageValue"] = src["averageValue"]
        metric: dict[str, Any] = {"name": src.get("metricName", "")}
        if src.get("selector") is not None:
            metric["selector"] = _copy(src["selector"])
        out["object"] = {"metric": metric, "current": cur, "describedObject": _copy(src.get("target") or {})}
    if m.get("pods") is not None:
        src = m["pods"]
        metric = {"name": src.get("metricName", "")}
        if src.get("selector") is not None:
            metric["selector"] = _copy(src["selector"])
        out["pods"] = {"metric": metric, "current": {"averageValue": src.get("currentAverageValue", "0")}}
    for key in ("resource", "containerResource"):
        if m.get(key) is not None:
            src = m[key]
            cur = {"averageValue": src.get("currentAverageValue", "0")}
            if src.get("currentAverageUtilization") is not None:
                cur["averageUtilization"] = src["currentAverageUtilization"]
            r: dict[str, Any] = {"name": src.get("name", "")}
            if key == "containerResource":
                r["container"] = src.get("container", "")
            r["current"] = cur
            out[key] = r
    if m.get("external") is not None:
        src = m["external"]
        cur = {"value": src.get("currentValue", "0")}
        if src.get("currentAverageValue") is not None:
            cur["averageValue"] = src["currentAverageValue"]
        metric = {"name": src.get("metricName", "")}
        if src.get("metricSelector") is not None:
            metric["selector"] = _copy(src["metricSelector"])
        out["external"] = {"metric": metric, "current": cur}
    return out


# --- behavior (internal-type JSON, capitalised keys) ---------------------------------------


def _rules_to_internal(rules: dict[str, Any] | None) -> dict[str, Any] | None:
    if rules is None:
        return None
    policies = rules.get("policies")
    return {
        "StabilizationWindowSeconds": rules.get("stabilizationWindowSeconds"),
        "SelectPolicy": rules.get("selectPolicy"),
        "Policies": None if policies is None else [
            {"Type": p.get("type", ""), "Value": p.get("value", 0), "PeriodSeconds": p.get("periodSeconds", 0)}
            for p in policies
        ],
        "Tolerance": rules.get("tolerance"),
    }


def _rules_from_internal(rules: Any) -> dict[str, Any] | None:
    if not isinstance(rules, dict):
        return None
    out: dict[str, Any] = {}
    for src, dst in (("StabilizationWindowSeconds", "stabilizationWindowSeconds"), ("SelectPolicy", "selectPolicy"),
                     ("Tolerance", "tolerance")):
        val = _ci_get(rules, src)
        if val is not None:
            out[dst] = val
    policies = _ci_get(rules, "Policies")
    if policies is not None:
        out["policies"] = [
            {"type": _ci_get(p, "Type") or "", "value": _ci_get(p, "Value") or 0,
             "periodSeconds": _ci_get(p, "PeriodSeconds") or 0}
            for p in policies if isinstance(p, dict)
        ]
    return out


# --- conditions ----------------------------------------------------------------------------


def _condition(c: dict[str, Any]) -> dict[str, Any]:
    return {"type": c.get("type", ""), "status": c.get("status", ""),
            "lastTransitionTime": c.get("lastTransitionTime"), "reason": c.get("reason", ""),
            "message": c.get("message", "")}


def _cpu_utilization_target(metric: dict[str, Any]) -> int | None:
    res = metric.get("resource")
    if metric.get("type") == "Resource" and isinstance(res, dict) and res.get("name") == "cpu":
        util = (res.get("target") or {}).get("averageUtilization")
        return util
    return None


def hpa_v2_to_v1(obj: dict[str, Any]) -> dict[str, Any]:
    """Convert an autoscaling/v2 HPA to autoscaling/v1, keeping v2-only data in annotations."""
    meta, annotations = _split_meta(obj)
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    metrics = spec.get("metrics") or []

    v1_spec: dict[str, Any] = {"scaleTargetRef": _copy(spec.get("scaleTargetRef") or {})}
    if spec.get("minReplicas") is not None:
        v1_spec["minReplicas"] = spec["minReplicas"]
    v1_spec["maxReplicas"] = spec.get("maxReplicas", 0)
    other: list[dict[str, Any]] = []
    for m in metrics:
        util = _cpu_utilization_target(m)
        if util is not None:
            if "targetCPUUtilizationPercentage" not in v1_spec:
                v1_spec["targetCPUUtilizationPercentage"] = util
            continue
        other.append(_spec_v2_to_v1(m))

    v1_status: dict[str, Any] = {}
    if status.get("observedGeneration") is not None:
        v1_status["observedGeneration"] = status["observedGeneration"]
    if status.get("lastScaleTime") is not None:
        v1_status["lastScaleTime"] = status["lastScaleTime"]
    v1_status["currentReplicas"] = status.get("currentReplicas", 0)
    v1_status["desiredReplicas"] = status.get("desiredReplicas", 0)
    current = status.get("currentMetrics") or []
    for m in current:
        res = m.get("resource")
        if m.get("type") == "Resource" and isinstance(res, dict) and res.get("name") == "cpu":
            util = (res.get("current") or {}).get("averageUtilization")
            if util is not None:
                v1_status["currentCPUUtilizationPercentage"] = util

    if other:
        annotations[METRIC_SPECS_ANNOTATION] = _dumps(other)
    if current:
        annotations[METRIC_STATUSES_ANNOTATION] = _dumps([_status_v2_to_v1(m) for m in current])
    behavior = spec.get("behavior")
    if behavior is not None:
        annotations[BEHAVIOR_ANNOTATION] = _dumps({
            "ScaleUp": _rules_to_internal(behavior.get("scaleUp")),
            "ScaleDown": _rules_to_internal(behavior.get("scaleDown")),
        })
    conditions = status.get("conditions") or []
    if conditions:
        annotations[CONDITIONS_ANNOTATION] = _dumps([_condition(c) for c in conditions])

    out = _drop(obj, "spec", "status", "metadata", "apiVersion")
    result: dict[str, Any] = {"apiVersion": "autoscaling/v1", **out}
    result["metadata"] = _finish_meta(meta, annotations)
    result["spec"] = v1_spec
    result["status"] = v1_status
    return result


def _loads(text: Any) -> Any:
    if not isinstance(text, str):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None  # upstream ignores an annotation it cannot decode


def hpa_v1_to_v2(obj: dict[str, Any]) -> dict[str, Any]:
    """Convert an autoscaling/v1 HPA to autoscaling/v2, restoring data kept in annotations."""
    src_annotations = (obj.get("metadata") or {}).get("annotations") or {}
    meta, annotations = _split_meta(obj)
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}

    v2_spec: dict[str, Any] = {"scaleTargetRef": _copy(spec.get("scaleTargetRef") or {})}
    if spec.get("minReplicas") is not None:
        v2_spec["minReplicas"] = spec["minReplicas"]
    v2_spec["maxReplicas"] = spec.get("maxReplicas", 0)
    metrics: list[dict[str, Any]] = []
    other = _loads(src_annotations.get(METRIC_SPECS_ANNOTATION))
    if isinstance(other, list):
        metrics.extend(_spec_v1_to_v2(m) for m in other if isinstance(m, dict))
    if spec.get("targetCPUUtilizationPercentage") is not None:
        metrics.append({"type": "Resource", "resource": {
            "name": "cpu", "target": {"type": "Utilization",
                                      "averageUtilization": spec["targetCPUUtilizationPercentage"]}}})
    if metrics:
        v2_spec["metrics"] = metrics
    behavior = _loads(src_annotations.get(BEHAVIOR_ANNOTATION))
    if isinstance(behavior, dict):
        up = _rules_from_internal(_ci_get(behavior, "ScaleUp"))
        down = _rules_from_internal(_ci_get(behavior, "ScaleDown"))
        if up is not None or down is not None:
            v2_spec["behavior"] = {k: v for k, v in (("scaleUp", up), ("scaleDown", down)) if v is not None}

    v2_status: dict[str, Any] = {}
    if status.get("observedGeneration") is not None:
        v2_status["observedGeneration"] = status["observedGeneration"]
    if status.get("lastScaleTime") is not None:
        v2_status["lastScaleTime"] = status["lastScaleTime"]
    v2_status["currentReplicas"] = status.get("currentReplicas", 0)
    v2_status["desiredReplicas"] = status.get("desiredReplicas", 0)
    current = _loads(src_annotations.get(METRIC_STATUSES_ANNOTATION))
    if isinstance(current, list):
        v2_status["currentMetrics"] = [_status_v1_to_v2(m) for m in current if isinstance(m, dict)]
    elif status.get("currentCPUUtilizationPercentage") is not None:
        v2_status["currentMetrics"] = [{"type": "Resource", "resource": {
            "name": "cpu", "current": {"averageUtilization": status["currentCPUUtilizationPercentage"]}}}]
    conditions = _loads(src_annotations.get(CONDITIONS_ANNOTATION))
    if isinstance(conditions, list):
        v2_status["conditions"] = [
            {k: v for k, v in _condition(c).items() if v is not None} for c in conditions if isinstance(c, dict)
        ]

    out = _drop(obj, "spec", "status", "metadata", "apiVersion")
    result: dict[str, Any] = {"apiVersion": "autoscaling/v2", **out}
    result["metadata"] = _finish_meta(meta, annotations)
    result["spec"] = v2_spec
    result["status"] = v2_status
    return result
