"""Every case of hpa-cases.json, replayed through the public decision function ``decide``.

The level of a case only decides how its inputs are built (per the file's ``conventions``): the
controller level builds v1 Pods, PodMetrics, a Scale and an HPA; the calculator level builds the
pods/metrics of replica_calculator_test.go and reads the metric's proposal from the explanation;
the pure-function levels drive ``decide`` with an External per-pod metric whose proposal is the
case's pre-normalized replica count (tolerance 0), so only stabilization and rate limits act.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from autoscaler.hpa import (
    ControllerConfig,
    HPAState,
    PodValues,
    Recommendation,
    Scale,
    ScaleEvent,
    StaticMetrics,
    decide,
    pod_metrics_from_v1beta1,
    pods_from_v1,
)
from autoscaler.hpa.gates import config_for
from autoscaler.hpa.normalize import replicas_change_in_period
from autoscaler.hpa.versions import resolve_gates
from autoscaler.k8s.timefmt import ZERO_TIME, format_time, parse_duration

DATA = json.loads((Path(__file__).parent / "data" / "hpa-cases.json").read_text())
CASES = DATA["cases"]
NOW = 1_700_000_000.0
NS = "test-namespace"


def _ids(cases: list[dict[str, Any]]) -> list[str]:
    return [c["name"] for c in cases]


def _at(spec: str | None) -> str:
    """'zero' | 'hot' | 'cool' | 'now' | 'now-9m54s' | RFC 3339 -> RFC 3339."""
    if spec in (None, "zero"):
        return ZERO_TIME
    if spec == "hot" or spec == "now":
        return format_time(NOW)
    if spec == "cool":
        return format_time(NOW - 180)
    if spec.startswith("now-"):
        return format_time(NOW - parse_duration(spec[4:]))
    return spec


def _metric_v2(m: dict[str, Any]) -> dict[str, Any]:
    t = m["type"]
    if t == "Resource":
        return {"type": t, "resource": {"name": m["resource"], "target": m["target"]}}
    if t == "ContainerResource":
        return {"type": t, "containerResource": {"name": m["resource"], "container": m["container"],
                                                 "target": m["target"]}}
    if t == "Pods":
        return {"type": t, "pods": {"metric": m["metric"], "target": m["target"]}}
    if t == "Object":
        return {"type": t, "object": {"describedObject": m["describedObject"], "metric": m["metric"],
                                      "target": m["target"]}}
    if t == "External":
        return {"type": t, "external": {"metric": m["metric"], "target": m["target"]}}
    return dict(m)


def _hpa(min_r: int, max_r: int, metrics: list[dict[str, Any]], behavior: dict[str, Any] | None = None,
         status: dict[str, Any] | None = None, ref: dict[str, Any] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"scaleTargetRef": ref or {"apiVersion": "v1", "kind": "ReplicationController",
                                                       "name": "test-rc"},
                            "minReplicas": min_r, "maxReplicas": max_r, "metrics": metrics}
    if behavior is not None:
        spec["behavior"] = behavior
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"namespace": NS, "name": "test-hpa"}, "spec": spec, "status": status or {}}


def _pod(name: str, *, containers: list[tuple[str, str | None, str | None]], phase: str = "Running",
         ready: str | None = "True", ready_time: str | None = None, start: str | None = ZERO_TIME,
         deleting: bool = False) -> dict[str, Any]:
    conts = []
    for cname, cpu, mem in containers:
        req = {k: v for k, v in (("cpu", cpu), ("memory", mem)) if v is not None}
        conts.append({"name": cname, "resources": {"requests": req} if req else {}})
    status: dict[str, Any] = {"phase": phase}
    if start is not None:
        status["startTime"] = start
    if ready is not None:
        cond: dict[str, Any] = {"type": "Ready", "status": ready}
        if ready_time is not None:
            cond["lastTransitionTime"] = ready_time
        status["conditions"] = [cond]
    meta: dict[str, Any] = {"name": name, "namespace": NS, "labels": {"name": "test-pod"}}
    if deleting:
        meta["deletionTimestamp"] = format_time(NOW)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {"containers": conts}, "status": status}


def _pod_metrics(name: str, containers: list[tuple[str, str | None, str | None]], ts: str | None,
                 window: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"apiVersion": "metrics.k8s.io/v1beta1", "kind": "PodMetrics",
                           "metadata": {"name": name, "namespace": NS, "labels": {"name": "test-pod"}},
                           "containers": [{"name": c, "usage": {k: v for k, v in (("cpu", cpu), ("memory", mem))
                                                                if v is not None}} for c, cpu, mem in containers]}
    if ts is not None:
        out["timestamp"] = ts
    if window is not None:
        out["window"] = window
    return out


def _milli(q: str) -> int:
    from autoscaler.k8s.quantity import milli_value

    return milli_value(q)


# --------------------------------------------------------------------------------------------
# controller level


def _controller_inputs(inp: dict[str, Any], version: str) -> dict[str, Any]:
    spec_r, status_r = inp["specReplicas"], inp["statusReplicas"]
    status: dict[str, Any] = {"currentReplicas": spec_r, "desiredReplicas": spec_r}
    if inp.get("initialConditions"):
        status["conditions"] = [dict(c, message="", lastTransitionTime=format_time(NOW - 600))
                                for c in inp["initialConditions"]]
    if inp.get("lastScaleTime") == "now":
        status["lastScaleTime"] = format_time(NOW)
    hpa = _hpa(inp["minReplicas"], inp["maxReplicas"], [_metric_v2(m) for m in inp["metrics"]], inp.get("behavior"),
               status, inp.get("scaleTargetRef"))
    requests = inp.get("reportedCPURequests")
    n = len(requests) if requests is not None else status_r
    readiness = inp.get("reportedPodReadiness") or []
    starts = inp.get("reportedPodStartTime") or []
    phases = inp.get("reportedPodPhase") or []
    deletions = inp.get("reportedPodDeletionTimestamp") or []
    pods = []
    for i in range(n):
        req = _milli(requests[i]) if requests is not None else 1000
        start = _at(starts[i] if i < len(starts) else "zero")
        pods.append(_pod(f"test-pod-{i}", containers=[(f"container{j + 1}", f"{req // 2}m", None) for j in range(2)],
                         phase=phases[i] if i < len(phases) else "Running",
                         ready=readiness[i] if i < len(readiness) else "True", ready_time=start, start=start,
                         deleting=bool(deletions[i]) if i < len(deletions) else False))
    levels = inp.get("reportedLevels") or []
    types = {m["type"] for m in inp["metrics"]}
    metrics = StaticMetrics()
    if types & {"Resource", "ContainerResource"}:
        metrics.resource = pod_metrics_from_v1beta1([
            _pod_metrics(f"test-pod-{i}", [(f"container{j + 1}", f"{lv // 2}m", None) for j in range(2)],
                         format_time(NOW), "1m0s") for i, lv in enumerate(levels)])
    if "Pods" in types:
        for m in inp["metrics"]:
            if m["type"] == "Pods":
                metrics.pods[m["metric"]["name"]] = PodValues({f"test-pod-{i}": lv for i, lv in enumerate(levels)},
                                                              {f"test-pod-{i}": NOW for i in range(len(levels))})
    for m in inp["metrics"]:
        if m["type"] == "Object" and levels:
            d = m["describedObject"]
            metrics.objects[(d["kind"], d["name"], m["metric"]["name"])] = (levels[0], NOW)
        if m["type"] == "External":
            metrics.external[m["metric"]["name"]] = list(levels)
    if inp.get("metricsAPIs") == "all return errors":
        metrics.errors = {k: "an error on the server has prevented the request from succeeding" for k in
                          ("resource", "custom", "external")}
    selector = inp.get("scaleStatusSelector", "name=test-pod")
    scale = None if inp.get("scaleGet") == "returns error" else Scale(spec_r, status_r, selector)
    recs = inp.get("recommendations", "nil")
    state = None if recs == "nil" else HPAState([Recommendation(r["replicas"], NOW - r["ageSeconds"]) for r in recs])
    config = config_for(version, inp.get("featureGates") or {}, tolerance=0.1, cpu_initialization_period=120,
                        initial_readiness_delay=10, downscale_stabilization=300, scale_up_limit_factor=8.0)
    return {"hpa": hpa, "scale": scale, "pods": pods_from_v1(pods), "metrics": metrics, "state": state,
            "config": config, "scale_error": 'replicationcontrollers "test-rc" not found'}


def _check_controller(case: dict[str, Any], version: str) -> None:
    args = _controller_inputs(case["inputs"], version)
    d = decide(args["hpa"], args["scale"], args["pods"], args["metrics"], now=NOW, state=args["state"],
               config=args["config"], scale_error=args["scale_error"])
    exp = case["expected"]
    assert d.updated == exp["scaleUpdated"], d.explanation
    assert d.status["desiredReplicas"] == exp["desiredReplicas"], d.explanation
    if d.updated:
        assert d.scale_to == exp["desiredReplicas"]
        assert any(e["reason"] == "SuccessfulRescale" for e in d.events)
    if isinstance(exp["conditions"], list):
        want = [(c["type"], c["status"], c["reason"]) for c in exp["conditions"]]
        if not args["config"].scale_to_zero:
            want = [w for w in want if w[0] != "ScaledToZero"]
        got = [(c["type"], c["status"], c["reason"]) for c in d.status["conditions"]]
        assert got == want, d.explanation


def _settable_at(version: str, case: dict[str, Any]) -> bool:
    try:
        resolve_gates(version, case["inputs"].get("featureGates") or {})
    except ValueError:
        return False
    return True


_AT_137 = [c for c in CASES["controller"] if _settable_at("1.37", c)]


@pytest.mark.parametrize("case", _AT_137, ids=_ids(_AT_137))
def test_controller_case(case: dict[str, Any]) -> None:
    """At Kubernetes 1.37's gate defaults (HPAScaleToZero on), as upstream's test source runs it."""
    _check_controller(case, "1.37")


def test_every_controller_case_runs_at_some_version() -> None:
    """A case whose gates 1.37 refuses (HPAConfigurableTolerance=false: GA, locked) runs at 1.36."""
    at_136 = [c["name"] for c in CASES["controller"] if c not in _AT_137]
    assert at_136 == ["configurable tolerance ignored when gate off"]
    assert all(_settable_at("1.36", c) for c in CASES["controller"] if c not in _AT_137)


_GATE_FREE = [c for c in CASES["controller"] if "HPAScaleToZero" not in (c["inputs"].get("featureGates") or {})]


@pytest.mark.parametrize("case", _GATE_FREE, ids=_ids(_GATE_FREE))
def test_controller_case_released_defaults(case: dict[str, Any]) -> None:
    """At 1.36 (HPAScaleToZero alpha, off): the same result without the ScaledToZero condition."""
    _check_controller(case, "1.36")


# --------------------------------------------------------------------------------------------
# replica-calculator level (GetResourceReplicas & co.) and metrics utilization helpers


def _calc_inputs(inp: dict[str, Any]) -> tuple[dict[str, Any], Scale, Any, StaticMetrics, ControllerConfig]:
    current = inp["currentReplicas"]
    phases = inp.get("podPhase") or []
    n = max(current, len(phases))
    requests = inp.get("requestsPerContainer") or []
    readiness = inp.get("podReadiness") or []
    starts = inp.get("podStartTime") or []
    deletions = inp.get("podDeletionTimestamp") or []
    resource = inp.get("resource", "cpu")
    pods = []
    for i in range(n):
        req = requests[i] if i < len(requests) else None
        conts = [(f"container{j + 1}", req if resource == "cpu" else None, req if resource == "memory" else None)
                 for j in range(2)]
        pods.append(_pod(f"test-pod-{i}", containers=conts, phase=phases[i] if i < len(phases) else "Running",
                         ready=readiness[i] if i < len(readiness) else "True", ready_time=None,
                         start=_at(starts[i] if i < len(starts) else "zero"),
                         deleting=bool(deletions[i]) if i < len(deletions) else False))
    tol = inp.get("tolerances") or {"scaleDown": 0.1, "scaleUp": 0.1}
    behavior = {"scaleUp": {"tolerance": repr(tol["scaleUp"])}, "scaleDown": {"tolerance": repr(tol["scaleDown"])}}
    metrics = StaticMetrics()
    mtype = inp.get("metricType")
    name = inp.get("metricName", "qps")
    status_r = current
    if mtype is None:
        target = {"type": "Utilization", "averageUtilization": inp["targetUtilization"]}
        if inp.get("container"):
            metric = {"type": "ContainerResource", "containerResource": {"name": resource, "container": inp["container"],
                                                                         "target": target}}
        else:
            metric = {"type": "Resource", "resource": {"name": resource, "target": target}}
        names = inp.get("podNames") or []
        metrics.resource = pod_metrics_from_v1beta1([
            _pod_metrics(names[i] if i < len(names) else f"test-pod-{i}",
                         [(f"container{j + 1}", f"{lv}m" if resource == "cpu" else None,
                           f"{lv}m" if resource == "memory" else None) for j, lv in enumerate(levels)],
                         ZERO_TIME, "1m0s")
            for i, levels in enumerate(inp["levelsPerContainer"])])
    elif mtype == "pods":
        metric = {"type": "Pods", "pods": {"metric": {"name": name},
                                           "target": {"type": "AverageValue", "averageValue": f"{inp['targetMilli']}m"}}}
        metrics.pods[name] = PodValues({f"test-pod-{i}": v for i, v in enumerate(inp["levelsMilli"])})
    elif mtype in ("object", "objectPerPod"):
        described = {"apiVersion": "apps/v1", "kind": "Deployment", "name": "some-deployment"}
        target = ({"type": "Value", "value": f"{inp['targetMilli']}m"} if mtype == "object"
                  else {"type": "AverageValue", "averageValue": f"{inp['perPodTargetMilli']}m"})
        metric = {"type": "Object", "object": {"describedObject": described, "metric": {"name": name}, "target": target}}
        metrics.objects[("Deployment", "some-deployment", name)] = (inp["levelsMilli"][0], NOW)
    else:
        target = ({"type": "Value", "value": f"{inp['targetMilli']}m"} if mtype == "external"
                  else {"type": "AverageValue", "averageValue": f"{inp['perPodTargetMilli']}m"})
        metric = {"type": "External", "external": {"metric": {"name": name, "selector": {}}, "target": target}}
        metrics.external[name] = list(inp["levelsMilli"])
    hpa = _hpa(1, 2**31 - 1, [metric], behavior)
    config = ControllerConfig(cpu_initialization_period=120, initial_readiness_delay=10, scale_up_limit_factor=8.0)
    return hpa, Scale(current, status_r, "name=test-pod"), pods_from_v1(pods), metrics, config


def _proposal(case_inputs: tuple) -> dict[str, Any]:
    hpa, scale, pods, metrics, config = case_inputs
    d = decide(hpa, scale, pods, metrics, now=NOW, config=config)
    return d.explanation["metrics"][0]


@pytest.mark.parametrize("case", CASES["replica_calculator"], ids=_ids(CASES["replica_calculator"]))
def test_replica_calculator_case(case: dict[str, Any]) -> None:
    m = _proposal(_calc_inputs(case["inputs"]))
    exp = case["expected"]
    if "errorContains" in exp:
        assert not m["ok"] and exp["errorContains"] in m["error"]
        return
    assert m["ok"], m
    assert m["proposal"] == exp["replicas"]
    if "utilization" in exp:
        assert m["utilization"] == exp["utilization"]
    if "rawAverageValueMilli" in exp:
        assert m["averageValueMilli"] == exp["rawAverageValueMilli"]
    if "usageMilli" in exp:
        assert m.get("averageValueMilli", m.get("valueMilli")) == exp["usageMilli"]


@pytest.mark.parametrize("case", CASES["utilization"], ids=_ids(CASES["utilization"]))
def test_utilization_case(case: dict[str, Any]) -> None:
    inp, exp = case["inputs"], case["expected"]
    usage = inp["podMetricsMilli"]
    if "targetUtilization" in inp:
        reqs = inp["podRequestsMilli"] or {name: 0 for name in usage}
        pods = [_pod(name, containers=[("c", f"{r}m", None)]) for name, r in reqs.items()]
        metric = {"type": "Resource", "resource": {"name": "cpu", "target": {
            "type": "Utilization", "averageUtilization": inp["targetUtilization"]}}}
        metrics = StaticMetrics(resource=pod_metrics_from_v1beta1(
            [_pod_metrics(name, [("c", f"{v}m", None)], format_time(NOW), "1m0s") for name, v in usage.items()]))
    else:
        pods = [_pod(name, containers=[("c", "1", None)]) for name in usage]
        metric = {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {
            "type": "AverageValue", "averageValue": f"{inp['targetUsageMilli']}m"}}}
        metrics = StaticMetrics(pods={"qps": PodValues(dict(usage))})
    m = decide(_hpa(1, 100, [metric]), Scale(len(pods), len(pods), "name=test-pod"), pods_from_v1(pods), metrics,
               now=NOW).explanation["metrics"][0]
    if "errorContains" in exp:
        assert not m["ok"] and exp["errorContains"] in m["error"]
        return
    assert math.isclose(m["ratio"], exp["ratio"], rel_tol=1e-12)
    if "currentUtilization" in exp:
        assert m["utilization"] == exp["currentUtilization"]
        assert m["averageValueMilli"] == exp["rawAverageValueMilli"]
    else:
        assert m["averageValueMilli"] == exp["currentUsageMilli"]


# --------------------------------------------------------------------------------------------
# pure-function levels, driven through decide with an External per-pod "desired" metric


def _desired_metric() -> dict[str, Any]:
    return {"type": "External", "external": {"metric": {"name": "desired"},
                                             "target": {"type": "AverageValue", "averageValue": "1"}}}


def _events(items: list[dict[str, Any]] | None) -> list[ScaleEvent]:
    return [ScaleEvent(e["replicaChange"], NOW - e["ageSeconds"], e.get("outdated", False)) for e in items or []]


def _drive(current: int, desired: int, min_r: int, max_r: int, behavior: dict[str, Any] | None, state: HPAState,
           factor: float = 8.0):
    pods = pods_from_v1([_pod(f"test-pod-{i}", containers=[("c", "1", None)]) for i in range(current)])
    metrics = StaticMetrics(external={"desired": [desired * 1000]})
    config = ControllerConfig(tolerance=0.0, scale_up_limit_factor=factor)
    return decide(_hpa(min_r, max_r, [_desired_metric()], behavior), Scale(current, current, "name=test-pod"), pods,
                  metrics, now=NOW, state=state, config=config)


def _limited_reason(d) -> str | None:
    for c in d.status["conditions"]:
        if c["type"] == "ScalingLimited":
            return c["reason"]
    return None


_NORMALIZATION = CASES["normalization"] + CASES["derived_not_from_tests"]


@pytest.mark.parametrize("case", _NORMALIZATION, ids=_ids(_NORMALIZATION))
def test_normalization_case(case: dict[str, Any]) -> None:
    inp, exp, level = case["inputs"], case["expected"], case["level"]
    if level.endswith("GetRawResourceReplicas"):  # DERIVED memory AverageValue
        pods = [_pod(f"test-pod-{i}", containers=[("c", None, "1Gi")]) for i in range(inp["currentReplicas"])]
        pm = pod_metrics_from_v1beta1([_pod_metrics(f"test-pod-{i}", [("c", None, f"{u}m")], format_time(NOW), "1m0s")
                                       for i, u in enumerate(inp["podUsageMilli"])])
        metric = {"type": "Resource", "resource": {"name": "memory", "target": {
            "type": "AverageValue", "averageValue": f"{inp['targetAverageValueMilli']}m"}}}
        d = decide(_hpa(1, 100, [metric]), Scale(3, 3, "name=test-pod"), pods_from_v1(pods), StaticMetrics(resource=pm),
                   now=NOW)
        m = d.explanation["metrics"][0]
        assert (m["proposal"], m["averageValueMilli"]) == (exp["replicas"], exp["usageMilli"])
        assert d.status["currentMetrics"][0]["resource"]["current"]["averageValue"] == "150Mi"
        return
    current = inp["currentReplicas"]
    state = HPAState([], _events(inp.get("scaleUpEvents")), _events(inp.get("scaleDownEvents")))
    if "rules" in inp:  # a single direction's limit function
        up = "ScaleUp" in level
        behavior = {"scaleUp": inp["rules"], "scaleDown": None} if up else {"scaleUp": None, "scaleDown": inp["rules"]}
        d = _drive(current, current * 100 + 1000 if up else 0, 0, 10**6, behavior, state)
        assert d.explanation["rateLimit"]["limit"] == exp["limit"]
        assert d.scale_to == exp["limit"]
        return
    legacy = "scaleUpRules" not in inp
    desired = inp["desiredReplicas"] if legacy else inp["prenormalizedDesiredReplicas"]
    behavior = None if legacy else {"scaleUp": inp["scaleUpRules"], "scaleDown": inp["scaleDownRules"]}
    factor = 2.0 if "production factor" in case["name"] else 8.0
    d = _drive(current, desired, inp["minReplicas"], inp["maxReplicas"], behavior, state, factor)
    want = exp["replicas"]
    if want == "calculateScaleUpLimit(3)":
        want = int(max(8.0 * 3, 4))
    assert d.scale_to == want, d.explanation
    if current > inp["maxReplicas"] or current < inp["minReplicas"]:
        # decide() takes the "outside [min, max]" branch before normalizing: no ScalingLimited then.
        assert d.explanation["branch"].startswith("current replicas")
        assert exp["reason"] in ("TooManyReplicas", "TooFewReplicas")
    else:
        assert _limited_reason(d) == exp["reason"], d.explanation


@pytest.mark.parametrize("case", CASES["stabilization"], ids=_ids(CASES["stabilization"]))
def test_stabilization_case(case: dict[str, Any]) -> None:
    inp, exp = case["inputs"], case["expected"]
    recs = [Recommendation(r["replicas"], NOW - r["ageSeconds"]) for r in inp["recommendations"]]
    desired = inp["prenormalizedDesiredReplicas"]
    if "downscaleStabilizationWindowSeconds" in inp:  # legacy
        d = _drive(10, desired, 1, 1000, None, HPAState(recs))
    else:
        policies = [{"type": "Pods", "value": 10000, "periodSeconds": 15}]
        behavior = {"scaleUp": {"stabilizationWindowSeconds": inp["scaleUpStabilizationWindowSeconds"],
                                "policies": policies},
                    "scaleDown": {"stabilizationWindowSeconds": inp["scaleDownStabilizationWindowSeconds"],
                                  "policies": policies}}
        d = _drive(inp["currentReplicas"], desired, 1, 1000, behavior, HPAState(recs))
    assert d.explanation["stabilization"]["stabilizedReplicas"] == exp["stabilizedReplicas"]
    if "recommendationLogLength" in exp:
        assert len(d.state.recommendations) == exp["recommendationLogLength"]
    if "recommendationsAfter" in exp:
        assert [r.replicas for r in d.state.recommendations] == exp["recommendationsAfter"]


@pytest.mark.parametrize("case", CASES["scale_events"], ids=_ids(CASES["scale_events"]))
def test_scale_events_case(case: dict[str, Any]) -> None:
    """The scale-down variant (10 -> 5); the rules given are the scale-down rules."""
    inp, exp = case["inputs"], case["expected"]
    previous = _events(inp["previousEvents"])
    assert replicas_change_in_period(previous, 60, NOW) == exp["replicasChangeInLast60sBeforeStore"]
    rules = inp["rulesForTheDirection"]
    behavior = None if rules is None else {"scaleUp": None, "scaleDown": rules}
    d = _drive(inp["prevReplicas"], inp["prevReplicas"] - inp["replicaChange"], 1, 100, behavior,
               HPAState([], [], previous))
    assert d.updated
    change = inp["prevReplicas"] - d.scale_to
    # The rate limit of the same rules can hold the change below the case's (a policy allowing
    # fewer pods in the period): the new event then records the change really made.
    assert change == inp["replicaChange"] or d.explanation["limits"]["reason"] == "ScaleDownLimit"
    got = [{"replicaChange": inp["replicaChange"] if e.timestamp == NOW else e.replica_change,
            "outdated": e.outdated} for e in d.state.scale_down_events]
    assert all(e.replica_change == change for e in d.state.scale_down_events if e.timestamp == NOW)
    assert got == exp["eventsAfterStore"]


@pytest.mark.parametrize("case", CASES["group_pods"], ids=_ids(CASES["group_pods"]))
def test_group_pods_case(case: dict[str, Any]) -> None:
    inp, exp = case["inputs"], case["expected"]
    resource = inp["resource"]
    pods = []
    for p in inp["pods"]:
        ready = p.get("ready")
        pods.append(_pod(p["name"], containers=[("c", "1" if resource == "cpu" else None,
                                                 "1Gi" if resource == "memory" else None)],
                         phase=p.get("phase", "Running"), ready=ready["status"] if ready else None,
                         ready_time=_at(ready.get("lastTransitionTime")) if ready else None,
                         start=_at(p["startTime"]) if p.get("startTime") else None,
                         deleting=p.get("deletionTimestamp") is not None))
    samples = [_pod_metrics(name, [("c", f"{m['value']}m" if resource == "cpu" else None,
                                    f"{m['value']}m" if resource == "memory" else None)],
                            _at(m["timestamp"]) if m.get("timestamp") else None, m.get("window"))
               for name, m in inp["metrics"].items()]
    # An extra sample for a pod that is not listed keeps the metrics list non-empty (an empty list
    # fails before grouping) without changing how the listed pods are classified.
    samples.append(_pod_metrics("not-a-listed-pod", [("c", "1m", "1m")], format_time(NOW), "1m0s"))
    metric = {"type": "Resource", "resource": {"name": resource, "target": {"type": "AverageValue", "averageValue": "1"}}}
    config = ControllerConfig(cpu_initialization_period=120, initial_readiness_delay=10)
    d = decide(_hpa(1, 100, [metric]), Scale(max(len(pods), 1), len(pods), "name=test-pod"), pods_from_v1(pods),
               StaticMetrics(resource=pod_metrics_from_v1beta1(samples)), now=NOW, config=config)
    rows = [r for r in d.explanation["metrics"][0].get("pods", []) if r["class"] != "superfluous"]
    by_class: dict[str, list[str]] = {"ready": [], "unready": [], "missing": [], "ignored": []}
    for r in rows:
        by_class[r["class"]].append(r["name"])
    assert len(by_class["ready"]) == exp["readyPodCount"]
    for cls in ("unready", "missing", "ignored"):
        assert sorted(by_class[cls]) == sorted(exp[cls]), cls
