"""A compiled HPA spec: parsed once, reused by every decision.

The replay simulator runs tens of thousands of decisions on one HPA; parsing quantities,
selectors and behavior rules on each of them would dominate the cost. :func:`compile_hpa`
defaults the object like the API server and turns it into plain attributes.
"""

from __future__ import annotations

import decimal
from dataclasses import dataclass, field
from typing import Any

from autoscaler.hpa.defaults import default_hpa
from autoscaler.k8s.quantity import QuantityError, milli_value, parse_quantity


@dataclass(slots=True)
class Policy:
    type: str
    value: int
    period: int


@dataclass(slots=True)
class Rules:
    """One direction of ``spec.behavior`` after API defaulting (window None = controller default)."""

    window: int | None
    select: str
    policies: list[Policy]
    tolerance: float | None

    @property
    def longest_period(self) -> int:
        return max((p.period for p in self.policies), default=0)


@dataclass(slots=True)
class MetricSpec:
    """One ``spec.metrics[]`` entry with its target already in milli-units.

    ``error`` holds the controller's error text when the entry cannot be evaluated (missing
    source, no usable target, bad selector); ``reason`` is the condition reason that goes with it.
    """

    index: int
    type: str
    raw: dict[str, Any]
    resource: str = ""
    container: str = ""
    metric_name: str = ""
    selector: dict[str, Any] | None = None
    described: dict[str, Any] = field(default_factory=dict)
    target_kind: str = ""  # "utilization" | "value" | "average"
    target_milli: int = 0
    target_utilization: int = 0
    error: str | None = None
    reason: str = ""
    description: str = ""


@dataclass(slots=True)
class CompiledHPA:
    namespace: str
    name: str
    min_replicas: int
    max_replicas: int
    metrics: list[MetricSpec]
    behavior: dict[str, Rules] | None
    target_ref: dict[str, Any]
    has_object_or_external: bool
    obj: dict[str, Any]
    status: dict[str, Any]
    #: ``metadata.generation`` (0 when the API server gave none): status.observedGeneration
    generation: int = 0
    #: ``Kind/namespace/name`` of the scale target, as the controller's errors name it
    target_text: str = ""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def go_label_selector_string(sel: dict[str, Any] | None) -> str:
    """``%+v`` of a Go ``*metav1.LabelSelector`` (the generated String method), used in messages."""
    if sel is None:
        return "nil"
    labels = sel.get("matchLabels") or {}
    ml = "map[string]string{" + "".join(f"{k}: {labels[k]}," for k in sorted(labels)) + "}"
    exprs = "".join(
        "LabelSelectorRequirement{{Key:{},Operator:{},Values:[{}],}},".format(
            e.get("key", ""), e.get("operator", ""), " ".join(str(v) for v in e.get("values") or []))
        for e in sel.get("matchExpressions") or []
    )
    return f"&LabelSelector{{MatchLabels:{ml},MatchExpressions:[]LabelSelectorRequirement{{{exprs}}},}}"


def _milli(value: Any) -> int | None:
    if value is None:
        return None
    try:
        return milli_value(value)
    except (QuantityError, decimal.InvalidOperation, TypeError, ValueError):
        return None


def _float_quantity(value: Any) -> float | None:
    if value is None:
        return None
    try:
        return float(parse_quantity(value))
    except (QuantityError, decimal.InvalidOperation, TypeError, ValueError):
        return None


def _compile_metric(i: int, m: dict[str, Any]) -> MetricSpec:
    mtype = str(m.get("type") or "")
    spec = MetricSpec(index=i, type=mtype, raw=m)
    if mtype in ("Resource", "ContainerResource"):
        key = "resource" if mtype == "Resource" else "containerResource"
        spec.reason = "FailedGetResourceMetric" if mtype == "Resource" else "FailedGetContainerResourceMetric"
        src = m.get(key) or {}
        spec.resource = str(src.get("name") or "")
        spec.container = str(src.get("container") or "") if mtype == "ContainerResource" else ""
        target = src.get("target") or {}
        avg = _milli(target.get("averageValue"))
        if not src:
            spec.error = f"invalid {key} metric source: the {key} field is not set"
        elif avg is not None:
            spec.target_kind, spec.target_milli = "average", avg
            spec.description = f"{spec.resource} resource"
        elif target.get("averageUtilization") is not None:
            spec.target_kind, spec.target_utilization = "utilization", int(target["averageUtilization"])
            spec.description = (f"{spec.resource} resource utilization (percentage of request)" if mtype == "Resource"
                                else f"{spec.resource} container resource utilization (percentage of request)")
        else:
            spec.error = ("invalid resource metric source: neither an average utilization target nor an average "
                          "value (usage) target was set")
    elif mtype == "Pods":
        spec.reason = "FailedGetPodsMetric"
        src = m.get("pods") or {}
        metric = src.get("metric") or {}
        spec.metric_name = str(metric.get("name") or "")
        spec.selector = metric.get("selector")
        avg = _milli((src.get("target") or {}).get("averageValue"))
        spec.description = f"pods metric {spec.metric_name}"
        if not src:
            spec.error = "invalid pods metric source: the pods field is not set"
        elif avg is None:
            spec.error = "invalid pods metric source: no average value target was set"
        else:
            spec.target_kind, spec.target_milli = "average", avg
    elif mtype == "Object":
        spec.reason = "FailedGetObjectMetric"
        src = m.get("object") or {}
        metric = src.get("metric") or {}
        spec.metric_name = str(metric.get("name") or "")
        spec.selector = metric.get("selector")
        spec.described = dict(src.get("describedObject") or {})
        target = src.get("target") or {}
        ttype = target.get("type")
        value, avg = _milli(target.get("value")), _milli(target.get("averageValue"))
        if ttype == "Value" and value is not None:
            spec.target_kind, spec.target_milli = "value", value
            spec.description = f"{spec.described.get('kind', '')} metric {spec.metric_name}"
        elif ttype == "AverageValue" and avg is not None:
            spec.target_kind, spec.target_milli = "average", avg
            # Upstream quirk: the per-pod Object metric describes itself as "external metric".
            spec.description = f"external metric {spec.metric_name}({go_label_selector_string(spec.selector)})"
        else:
            spec.error = "invalid object metric source: neither a value target nor an average value target was set"
    elif mtype == "External":
        spec.reason = "FailedGetExternalMetric"
        src = m.get("external") or {}
        metric = src.get("metric") or {}
        spec.metric_name = str(metric.get("name") or "")
        spec.selector = metric.get("selector")
        target = src.get("target") or {}
        value, avg = _milli(target.get("value")), _milli(target.get("averageValue"))
        spec.description = f"external metric {spec.metric_name}({go_label_selector_string(spec.selector)})"
        if avg is not None:
            spec.target_kind, spec.target_milli = "average", avg
        elif value is not None:
            spec.target_kind, spec.target_milli = "value", value
        else:
            spec.error = "invalid external metric source: neither a value target nor an average value target was set"
    else:
        spec.reason = "InvalidMetricSourceType"
        spec.error = f'unknown metric source type "{mtype}"'
    return spec


def _compile_rules(rules: dict[str, Any] | None) -> Rules | None:
    if rules is None:
        return None
    policies = [Policy(str(p.get("type") or ""), int(p.get("value") or 0), int(p.get("periodSeconds") or 0))
                for p in rules.get("policies") or []]
    window = rules.get("stabilizationWindowSeconds")
    return Rules(None if window is None else int(window), str(rules.get("selectPolicy") or "Max"), policies,
                 _float_quantity(rules.get("tolerance")))


def compile_hpa(hpa: dict[str, Any] | CompiledHPA) -> CompiledHPA:
    """Default ``hpa`` (autoscaling/v2) like the API server and parse it for :func:`decide`."""
    if isinstance(hpa, CompiledHPA):
        return hpa
    obj = default_hpa(hpa)
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    metrics = [_compile_metric(i, m if isinstance(m, dict) else {}) for i, m in enumerate(spec.get("metrics") or [])]
    behavior = spec.get("behavior")
    compiled_behavior: dict[str, Rules] | None = None
    if isinstance(behavior, dict):
        up = _compile_rules(behavior.get("scaleUp"))
        down = _compile_rules(behavior.get("scaleDown"))
        compiled_behavior = {"up": up, "down": down}  # type: ignore[dict-item]
    min_r = spec.get("minReplicas")
    namespace = str(meta.get("namespace") or "default")
    ref = dict(spec.get("scaleTargetRef") or {})
    return CompiledHPA(
        namespace=namespace,
        name=str(meta.get("name") or ""),
        min_replicas=1 if min_r is None else int(min_r),
        max_replicas=int(spec.get("maxReplicas") or 0),
        metrics=metrics,
        behavior=compiled_behavior,
        target_ref=ref,
        has_object_or_external=any(m.type in ("Object", "External") for m in metrics),
        obj=obj,
        status=dict(obj.get("status") or {}),
        generation=int(meta.get("generation") or 0),
        target_text=f"{ref.get('kind', '')}/{namespace}/{ref.get('name', '')}",
    )
