"""computeReplicasForMetrics: the scale selector checks, one replica proposal per metric of the HPA
(from :mod:`autoscaler.hpa.calculator`), each with its status entry and explanation, and the largest
proposal kept; the conditions and events upstream sets on the way."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from autoscaler.hpa import calculator as calc
from autoscaler.hpa.calculator import CalcError, Proposal, Tolerances
from autoscaler.hpa.config import ControllerConfig
from autoscaler.hpa.inputs import MetricsError, MetricsSource, PodMetricsSet, PodSet, Scale
from autoscaler.hpa.spec import CompiledHPA, MetricSpec, go_label_selector_string
from autoscaler.hpa.status import Conditions
from autoscaler.hpa.versions import at_least
from autoscaler.k8s.quantity import format_binary_si, format_milli
from autoscaler.k8s.selectors import LabelSelector, SelectorError, parse_label_selector, selector_from_object


@functools.lru_cache(maxsize=4096)
def _parse_selector(text: str) -> LabelSelector | SelectorError:
    """Parsed scale selectors, cached: the same selector string comes back every sync."""
    try:
        return parse_label_selector(text)
    except SelectorError as e:
        return e


def _metric_identifier(ms: MetricSpec) -> dict[str, Any]:
    """The MetricIdentifier of a Pods, Object or External metric's status: its name, and its
    selector when the spec has one."""
    metric: dict[str, Any] = {"name": ms.metric_name}
    if ms.selector is not None:
        metric["selector"] = ms.selector
    return metric


def _quantity(milli: int, resource: str = "") -> str:
    if resource == "memory":
        return format_binary_si(Decimal(milli) / 1000)
    return format_milli(milli)


def tolerances(hpa: CompiledHPA, config: ControllerConfig) -> Tolerances:
    t = Tolerances(config.tolerance, config.tolerance)
    if hpa.behavior is None or not config.configurable_tolerance:
        return t
    down, up = hpa.behavior.get("down"), hpa.behavior.get("up")
    if down is not None and down.tolerance is not None:
        t.scale_down = down.tolerance
    if up is not None and up.tolerance is not None:
        t.scale_up = up.tolerance
    return t


@dataclass(slots=True)
class _MetricResult:
    proposal: Proposal | None = None
    status: dict[str, Any] | None = None
    error: str | None = None  # the error computeReplicasForMetric returns
    reason: str = ""
    message: str = ""  # the error the condition and event carry
    explain: dict[str, Any] = field(default_factory=dict)


def _small_resource(ms: MetricSpec, pods: PodSet, pm: PodMetricsSet, current: int, tol: Tolerances, cpu: bool,
                    config: ControllerConfig, now: float, want: bool) -> Proposal | None:
    """The list-based proposal for a few pods (None: take the numpy path, which also words errors)."""
    container = ms.container or None
    if ms.target_kind == "average":
        reqs = None
    elif ms.container:
        reqs = pods.container_requests.get(ms.container, {}).get(ms.resource)
        if reqs is None or (reqs < 0).any():
            return None
    else:
        reqs = pods.requests.get(ms.resource)
        if reqs is None or pods.request_errors.get(ms.resource):
            return None
    return calc.small_resource_replicas(
        pods, pm, ms.resource, container, reqs, None if reqs is None else ms.target_utilization, ms.target_milli,
        current, tol, cpu, now, config.cpu_initialization_period, config.initial_readiness_delay, want)


def _resource_result(res: _MetricResult, ms: MetricSpec, prop: Proposal, build_status: bool) -> _MetricResult:
    res.proposal = prop
    if build_status:
        cur: dict[str, Any] = {"averageValue": _quantity(prop.usage, ms.resource)}
        if prop.utilization is not None:
            cur["averageUtilization"] = prop.utilization
        if ms.type == "Resource":
            res.status = {"type": "Resource", "resource": {"name": ms.resource, "current": cur}}
        else:
            res.status = {"type": "ContainerResource", "containerResource": {
                "name": ms.resource, "container": ms.container, "current": cur}}
    return res


def _fail(res: _MetricResult, ms: MetricSpec, message: str, outer: str, exc: CalcError | None = None
          ) -> _MetricResult:
    """The metric failed: the condition/event text ``message`` and the error reconcile returns."""
    res.reason, res.message, res.error = ms.reason, message, outer
    if exc is not None and exc.pods is not None:
        res.explain["pods"] = exc.pods
    return res


def _selector_or_spec_failure(res: _MetricResult, ms: MetricSpec, outer_prefix: str) -> _MetricResult | None:
    """Pods and Object metrics: an unparsable metric selector, then a spec error, fail the metric."""
    if ms.selector is not None:
        try:
            selector_from_object(ms.selector)
        except SelectorError as e:
            return _fail(res, ms, str(e), outer_prefix + str(e))
    if ms.error:
        return _fail(res, ms, ms.error, outer_prefix + ms.error)
    return None


def _eval_metric(ms: MetricSpec, hpa: CompiledHPA, scale: Scale, pods: PodSet, source: MetricsSource,
                 tol: Tolerances, config: ControllerConfig, now: float, detail: bool, build_status: bool,
                 want: bool = True) -> _MetricResult:
    res = _MetricResult()
    current, status_replicas = scale.spec_replicas, scale.status_replicas

    if ms.type in ("Resource", "ContainerResource"):
        outer_prefix = (f"failed to get {ms.resource} resource metric value: " if ms.type == "Resource"
                        else f"failed to get {ms.container} container metric value: ")
        if ms.error:
            return _fail(res, ms, ms.error, outer_prefix + ms.error)
        kind = "usage" if ms.target_kind == "average" else "utilization"
        try:
            try:
                pm = source.resource_metrics()
            except MetricsError as e:
                raise CalcError(f"unable to get metrics for resource {ms.resource}: {e}") from None
            cpu = ms.resource == "cpu"
            if not detail and 0 < len(pods) <= calc.SMALL_PODS:
                prop = _small_resource(ms, pods, pm, current, tol, cpu, config, now, want)
                if prop is not None:
                    return _resource_result(res, ms, prop, build_status)
            al = calc.align_resource(pods, pm, ms.resource, ms.container or None)
            if ms.target_kind == "average":
                prop = calc.plain_metric_replicas(pods, al, ms.target_milli, current, tol, cpu, now,
                                                  config.cpu_initialization_period, config.initial_readiness_delay,
                                                  detail)
            else:
                if ms.container:
                    reqs = pods.container_requests.get(ms.container, {}).get(ms.resource)
                    req_err = None
                    if reqs is None:
                        reqs = calc.np.zeros(len(pods), calc.np.int64)
                        if len(pods):
                            req_err = f"container {ms.container} not found in Pod {pods.names[0]}"
                    else:
                        bad = calc.np.flatnonzero(reqs < 0)
                        if len(bad):
                            i = int(bad[0])
                            req_err = (f"missing request for {ms.resource} in container {ms.container} of Pod "
                                       f"{pods.names[i]}" if reqs[i] == calc.MISSING
                                       else f"container {ms.container} not found in Pod {pods.names[i]}")
                else:
                    reqs = pods.requests.get(ms.resource)
                    errs = pods.request_errors.get(ms.resource) or {}
                    req_err = errs[min(errs)] if errs else None
                    if reqs is None:
                        reqs = calc.np.zeros(len(pods), calc.np.int64)
                        if len(pods):
                            req_err = f"missing request for {ms.resource} in Pod {pods.names[0]}"
                prop = calc.resource_utilization_replicas(
                    pods, al, reqs, req_err, ms.target_utilization, current, tol, cpu, now,
                    config.cpu_initialization_period, config.initial_readiness_delay, detail)
        except CalcError as e:
            msg = f"failed to get {ms.resource} {kind}: {e}"
            return _fail(res, ms, msg, outer_prefix + msg, e)
        return _resource_result(res, ms, prop, build_status)

    if ms.type == "Pods":
        outer_prefix = "failed to get pods metric value: "
        if (failed := _selector_or_spec_failure(res, ms, outer_prefix)) is not None:
            return failed
        try:
            try:
                values = source.pods_metric(ms.metric_name, ms.selector)
            except MetricsError as e:
                raise CalcError(f"unable to get metric {ms.metric_name}: {e}") from None
            al = calc.align_values(pods, values)
            prop = calc.plain_metric_replicas(pods, al, ms.target_milli, current, tol, False, now,
                                              config.cpu_initialization_period, config.initial_readiness_delay,
                                              detail)
        except CalcError as e:
            return _fail(res, ms, str(e), outer_prefix + str(e), e)
        res.proposal = prop
        if build_status:
            metric = _metric_identifier(ms)
            res.status = {"type": "Pods", "pods": {"metric": metric, "current": {"averageValue": _quantity(prop.usage)}}}
        return res

    if ms.type == "Object":
        outer_prefix = "failed to get object metric value: "
        if (failed := _selector_or_spec_failure(res, ms, outer_prefix)) is not None:
            return failed
        d = ms.described
        try:
            try:
                usage, ts = source.object_metric(ms.metric_name, d, ms.selector)
            except MetricsError as e:
                if at_least(config.version, "1.37"):  # k/k#139029 fixed the argument order
                    raise CalcError(f"unable to get metric {ms.metric_name} on {d.get('kind', '')} {hpa.namespace}/"
                                    f"{d.get('name', '')}: {e}") from None
                raise CalcError(f"unable to get metric {ms.metric_name}: {d.get('kind', '')} on {hpa.namespace} "
                                f"{d.get('name', '')}/{e}") from None
            if ms.target_kind == "value":
                prop = calc.usage_ratio_replicas(pods, usage, ms.target_milli, current, tol)
            else:
                prop = calc.per_pod_replicas(usage, ms.target_milli, status_replicas, tol, external=False)
                prop.timestamp = ts
        except CalcError as e:
            outer = (outer_prefix + str(e) if ms.target_kind == "value"
                     else f"{outer_prefix}failed to get {ms.metric_name} object metric: {e}")
            return _fail(res, ms, str(e), outer)
        res.proposal = prop
        if build_status:
            metric = _metric_identifier(ms)
            cur = ({"value": _quantity(prop.usage)} if ms.target_kind == "value"
                   else {"averageValue": _quantity(prop.usage)})
            res.status = {"type": "Object", "object": {"describedObject": d, "metric": metric, "current": cur}}
        return res

    if ms.type == "External":
        outer_prefix = f"failed to get {ms.metric_name} external metric value: "
        if ms.error:
            return _fail(res, ms, ms.error, outer_prefix + ms.error)
        try:
            try:
                selector_from_object(ms.selector)
            except SelectorError as e:
                raise CalcError(str(e)) from None
            try:
                ext_values = source.external_metric(ms.metric_name, ms.selector)
            except MetricsError as e:
                raise CalcError(f"unable to get external metric {hpa.namespace}/{ms.metric_name}/"
                                f"{go_label_selector_string(ms.selector)}: {e}") from None
            usage = calc.saturating_sum(ext_values)
            if ms.target_kind == "average":
                prop = calc.per_pod_replicas(usage, ms.target_milli, status_replicas, tol, external=True)
            else:
                prop = calc.usage_ratio_replicas(pods, usage, ms.target_milli, current, tol)
            prop.detail["samples"] = len(ext_values)
        except CalcError as e:
            inner = (f"failed to get {ms.metric_name} external metric: {e}" if ms.target_kind == "average"
                     else f"failed to get external metric {ms.metric_name}: {e}")
            return _fail(res, ms, str(e), outer_prefix + inner)
        res.proposal = prop
        if build_status:
            metric = _metric_identifier(ms)
            cur = ({"averageValue": _quantity(prop.usage)} if ms.target_kind == "average"
                   else {"value": _quantity(prop.usage)})
            res.status = {"type": "External", "external": {"metric": metric, "current": cur}}
        return res

    return _fail(res, ms, ms.error or f'unknown metric source type "{ms.type}"', ms.error or "")


def _metric_target_explain(ms: MetricSpec) -> dict[str, Any]:
    if ms.target_kind == "utilization":
        return {"type": "Utilization", "averageUtilization": ms.target_utilization}
    if ms.target_kind == "average":
        return {"type": "AverageValue", "averageValueMilli": ms.target_milli}
    if ms.target_kind == "value":
        return {"type": "Value", "valueMilli": ms.target_milli}
    return {}


def _selector_key(value: LabelSelector | str | None) -> LabelSelector | None:
    if value is None or isinstance(value, LabelSelector):
        return value
    parsed = _parse_selector(value)
    return None if isinstance(parsed, SelectorError) else parsed


def compute_metrics(h: CompiledHPA, scale: Scale, pods: PodSet, source: MetricsSource, conds: Conditions,
                     events: list[dict[str, str]], cfg: ControllerConfig, now: float,
                     others: Mapping[str, LabelSelector | str | None] | None, detail: bool, want: bool,
                     build_status: bool, ex: dict[str, Any]) -> tuple[int, str, list[dict[str, Any]] | None, str | None]:
    """computeReplicasForMetrics: selector checks, one proposal per metric, keep the maximum."""
    sel_text = scale.selector
    if not sel_text:
        events.append({"type": "Warning", "reason": "SelectorRequired", "message": "selector is required"})
        conds.set("ScalingActive", "False", "InvalidSelector", "the HPA target's scale is missing a selector")
        if want:
            ex["selector"] = {"error": "selector is required"}
        return -1, "", None, "selector is required"
    parsed = _parse_selector(sel_text)
    if isinstance(parsed, SelectorError):
        e = parsed
        msg = f"couldn't convert selector into a corresponding internal selector object: {e}"
        events.append({"type": "Warning", "reason": "InvalidSelector", "message": msg})
        conds.set("ScalingActive", "False", "InvalidSelector", msg)
        if want:
            ex["selector"] = {"error": msg}
        return -1, "", None, msg
    if others and pods.labels is not None and len(pods):
        selecting = [h.key]
        for key, sel in others.items():
            other = _selector_key(sel)
            if key != h.key and other is not None and any(other.matches(lb) for lb in pods.labels):
                selecting.append(key)
        if len(selecting) > 1:
            msg = _ambiguous_message(sel_text, selecting, cfg)
            events.append({"type": "Warning", "reason": "AmbiguousSelector", "message": msg})
            conds.set("ScalingActive", "False", "AmbiguousSelector", msg)
            if want:
                ex["selector"] = {"error": msg}
            return -1, "", None, msg

    tol = tolerances(h, cfg)
    statuses: list[dict[str, Any]] = []
    replicas, metric_name = 0, ""
    invalid, first_error, first_cond = 0, None, None
    explained: list[dict[str, Any]] = []
    for ms in h.metrics:
        r = _eval_metric(ms, h, scale, pods, source, tol, cfg, now, detail, build_status, want)
        if build_status:  # (read only to build status.currentMetrics)
            statuses.append(r.status if r.status is not None else {"type": ""})
        if want:
            item: dict[str, Any] = {"index": ms.index, "type": ms.type, "description": ms.description,
                                    "target": _metric_target_explain(ms),
                                    "tolerance": {"scaleDown": tol.scale_down, "scaleUp": tol.scale_up,
                                                  "band": tol.band()}}
            if ms.resource:
                item["resource"] = ms.resource
            if ms.container:
                item["container"] = ms.container
            if ms.metric_name:
                item["metricName"] = ms.metric_name
        if r.error is not None or r.proposal is None:
            events.append({"type": "Warning", "reason": r.reason, "message": r.message})
            if invalid == 0:
                first_cond = (r.reason, f"the HPA was unable to compute the replica count: {r.message}")
                first_error = r.error
            invalid += 1
            if want:
                item.update({"ok": False, "error": r.error, "reason": r.reason, **r.explain})
                explained.append(item)
            continue
        p = r.proposal
        if want:
            item.update({"ok": True, "proposal": p.replicas, **p.detail})
            if p.utilization is not None:
                item["utilization"] = p.utilization
            explained.append(item)
        if replicas == 0 or p.replicas > replicas:
            replicas, metric_name = p.replicas, ms.description
    n = len(h.metrics)
    combined_error = None
    if first_error is not None:
        combined_error = f"invalid metrics ({invalid} invalid out of {n}), first error is: {first_error}"
    if want:
        ex["metrics"] = explained
        ex["combination"] = {"rule": "the largest proposal of the metrics that could be computed",
                             "invalidMetrics": invalid, "totalMetrics": n,
                             "proposal": replicas if invalid < n else None, "from": metric_name or None}
    if invalid >= n or (invalid > 0 and replicas < scale.spec_replicas):
        if first_cond is not None:
            conds.set("ScalingActive", "False", first_cond[0], first_cond[1])
        if want:
            ex["combination"]["outcome"] = ("all metrics failed" if invalid >= n
                                            else "some metrics failed and the others would scale down: no scaling")
        return -1, "", statuses, combined_error
    conds.set("ScalingActive", "True", "ValidMetricFound",
              f"the HPA was able to successfully calculate a replica count from {metric_name}")
    return replicas, metric_name, statuses, combined_error


def _ambiguous_message(selector: str, selecting: list[str], cfg: ControllerConfig) -> str:
    """The AmbiguousSelector text. 1.37 names HPAs "e.g." and, with HPAOptimizedSelectorStore, the
    store stops at two matches (upstream's pick is map order; ours is the first two by name)."""
    keys = sorted(selecting)
    if not at_least(cfg.version, "1.37"):
        return f"pods by selector {selector} are controlled by multiple HPAs: [{' '.join(keys)}]"
    if cfg.optimized_selector_store:
        keys = keys[:2]
    return f"pods by selector {selector} are controlled by more than one HPA (e.g. [{' '.join(keys)}])"
