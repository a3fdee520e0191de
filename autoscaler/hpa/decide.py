"""The HPA decision: one reconcile of one HPA, pure (no I/O, injected clock).

This is the only implementation of the controller's rules in the project: the live controller,
the replay simulator and ``autoscaler explain`` all call :func:`decide`. It follows upstream's
reconcile order (hpa-spec §3): scale, branch on the current replica count, selector checks,
per-metric proposals, combination, stabilization and rate limits (legacy or behavior),
conditions, events, scale events, status.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from autoscaler.hpa import calculator as calc
from autoscaler.hpa.calculator import CalcError, Proposal, Tolerances
from autoscaler.hpa.inputs import MetricsError, MetricsSource, PodMetricsSet, PodSet, Scale
from autoscaler.hpa.normalize import (
    HPAState,
    Recommendation,
    ScaleEvent,
    convert_legacy,
    convert_with_behavior,
    stabilize_legacy,
    stabilize_with_behavior,
    store_scale_event,
)
from autoscaler.hpa.spec import CompiledHPA, MetricSpec, Rules, compile_hpa, go_label_selector_string
from autoscaler.hpa.versions import DEFAULT_VERSION, at_least
from autoscaler.k8s.quantity import format_binary_si, format_milli
from autoscaler.k8s.selectors import LabelSelector, SelectorError, parse_label_selector, selector_from_object
from autoscaler.k8s.timefmt import format_time

EXPLAIN_LEVELS = ("none", "summary", "full")


@functools.lru_cache(maxsize=4096)
def _parse_selector(text: str) -> LabelSelector | SelectorError:
    """Parsed scale selectors, cached: the same selector string comes back every sync."""
    try:
        return parse_label_selector(text)
    except SelectorError as e:
        return e


@functools.lru_cache(maxsize=64)
def _time_text(now: float) -> str:
    return format_time(now)


def _fork(state: HPAState | None) -> HPAState:
    """A working copy of ``state``: new lists, shared entries. The normalization functions replace
    history entries rather than modify them; :func:`store_scale_event` does modify them, so the
    rescale path copies that direction's events before calling it."""
    if state is None:
        return HPAState()
    return HPAState(None if state.recommendations is None else list(state.recommendations),
                    list(state.scale_up_events), list(state.scale_down_events))


def _own_events(events: list[ScaleEvent]) -> list[ScaleEvent]:
    return [ScaleEvent(e.replica_change, e.timestamp, e.outdated) for e in events]


@dataclass(slots=True)
class ControllerConfig:
    """kube-controller-manager's HPA settings (upstream flag defaults), the Kubernetes version it
    emulates and its HPA feature gates. The defaults are 1.37's; :func:`autoscaler.hpa.gates.config_for`
    builds a configuration for another version from :mod:`autoscaler.hpa.versions`."""

    tolerance: float = 0.1
    cpu_initialization_period: float = 300.0
    initial_readiness_delay: float = 30.0
    downscale_stabilization: float = 300.0
    version: str = DEFAULT_VERSION  # --emulated-version
    scale_to_zero: bool = True  # HPAScaleToZero: beta, on in 1.37 (alpha, off in 1.36)
    configurable_tolerance: bool = True  # HPAConfigurableTolerance: GA in 1.37 (beta, on in 1.36)
    observed_generation: bool = True  # HPAGeneration: beta, on in 1.37; status.observedGeneration
    optimized_selector_store: bool = True  # HPAOptimizedSelectorStore (1.37): AmbiguousSelector lists two HPAs
    stale_consistency: bool = True  # StaleControllerConsistencyHPA (1.37): read our own status writes
    scale_up_limit_factor: float = 2.0
    scale_up_limit_minimum: float = 4.0

    @property
    def immediate_reconcile(self) -> bool:
        """New HPAs are reconciled when added, not one sync period later (1.37, k/k#138294)."""
        return at_least(self.version, "1.37")


@dataclass(slots=True)
class _RescaleContext:
    """What :func:`rescale_failed` needs to redo the end of a reconcile when the scale update fails."""

    conditions: list[dict[str, Any]]
    metric_statuses: list[dict[str, Any]] | None
    original_status: dict[str, Any]
    state: HPAState
    current: int
    desired: int
    reason: str
    now: float
    build_status: bool
    generation: int | None


@dataclass(slots=True)
class Decision:
    """The outcome of one reconcile.

    ``status`` is the autoscaling/v2 HorizontalPodAutoscalerStatus the controller would write
    (``status_changed`` says whether it differs from the HPA's current status); ``scale_from`` is
    the target's spec.replicas (None without a Scale); ``scale_to`` the replicas it has after the
    decision; ``updated`` whether ``/scale`` is updated; ``events`` the events upstream emits;
    ``state`` the new controller state; ``error`` the error reconcile would return (or None).
    """

    status: dict[str, Any]
    scale_from: int | None
    scale_to: int | None
    updated: bool
    events: list[dict[str, str]]
    state: HPAState
    explanation: dict[str, Any]
    status_changed: bool = False
    error: str | None = None
    desired_replicas: int | None = None
    reason: str = ""
    _rescale: _RescaleContext | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        """The ``autoscaler explain -o json`` document."""
        return {
            "status": self.status,
            "scale": {"from": self.scale_from, "to": self.scale_to, "updated": self.updated},
            "events": self.events,
            "state": self.state.to_json(),
            "explanation": self.explanation,
        }


class _Conditions:
    """Status conditions as a list keyed by type; lastTransitionTime moves only on a status change."""

    __slots__ = ("_now_text", "items", "now")

    def __init__(self, items: list[dict[str, Any]], now: float):
        self.items = [dict(c) for c in items]
        self.now = now
        self._now_text: str | None = None  # formatted on the first transition only

    @property
    def now_text(self) -> str:
        if self._now_text is None:
            self._now_text = _time_text(self.now)
        return self._now_text

    def set(self, ctype: str, status: str, reason: str, message: str) -> None:
        for c in self.items:
            if c.get("type") == ctype:
                break
        else:
            c = {"type": ctype}
            self.items.append(c)
        if c.get("status") != status:
            c["lastTransitionTime"] = self.now_text
        c["status"] = status
        c["reason"] = reason
        c["message"] = message

    def remove(self, ctype: str) -> None:
        self.items = [c for c in self.items if c.get("type") != ctype]

    def get(self, ctype: str) -> dict[str, Any] | None:
        for c in self.items:
            if c.get("type") == ctype:
                return c
        return None


def _quantity(milli: int, resource: str = "") -> str:
    if resource == "memory":
        return format_binary_si(Decimal(milli) / 1000)
    return format_milli(milli)


def _tolerances(hpa: CompiledHPA, config: ControllerConfig) -> Tolerances:
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
            metric = {"name": ms.metric_name}
            if ms.selector is not None:
                metric["selector"] = ms.selector
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
            metric = {"name": ms.metric_name}
            if ms.selector is not None:
                metric["selector"] = ms.selector
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
                values = source.external_metric(ms.metric_name, ms.selector)
            except MetricsError as e:
                raise CalcError(f"unable to get external metric {hpa.namespace}/{ms.metric_name}/"
                                f"{go_label_selector_string(ms.selector)}: {e}") from None
            usage = calc.saturating_sum(values)
            if ms.target_kind == "average":
                prop = calc.per_pod_replicas(usage, ms.target_milli, status_replicas, tol, external=True)
            else:
                prop = calc.usage_ratio_replicas(pods, usage, ms.target_milli, current, tol)
            prop.detail["samples"] = len(values)
        except CalcError as e:
            inner = (f"failed to get {ms.metric_name} external metric: {e}" if ms.target_kind == "average"
                     else f"failed to get external metric {ms.metric_name}: {e}")
            return _fail(res, ms, str(e), outer_prefix + inner)
        res.proposal = prop
        if build_status:
            metric = {"name": ms.metric_name}
            if ms.selector is not None:
                metric["selector"] = ms.selector
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


@functools.lru_cache(maxsize=256)
def _parse_group_version(api_version: str) -> str | None:
    """schema.ParseGroupVersion: return the error text, or None when it parses (cached: the same
    target comes back every sync)."""
    if api_version.count("/") > 1:
        return f"unexpected GroupVersion string: {api_version}"
    return None


def _selector_key(value: LabelSelector | str | None) -> LabelSelector | None:
    if value is None or isinstance(value, LabelSelector):
        return value
    parsed = _parse_selector(value)
    return None if isinstance(parsed, SelectorError) else parsed


def decide(
    hpa: Mapping[str, Any] | CompiledHPA,
    scale: Scale | None,
    pods: PodSet,
    metrics: MetricsSource,
    *,
    now: float,
    state: HPAState | None = None,
    config: ControllerConfig | None = None,
    other_hpa_selectors: Mapping[str, LabelSelector | str | None] | None = None,
    hpa_status: Mapping[str, Any] | None = None,
    scale_error: str | None = None,
    explain: str = "full",
    build_status: bool = True,
) -> Decision:
    """Run one reconcile of ``hpa`` and return the :class:`Decision`.

    Signature::

        decide(hpa, scale, pods, metrics, *, now, state=None, config=None,
               other_hpa_selectors=None, hpa_status=None, scale_error=None,
               explain="full", build_status=True) -> Decision

    - ``hpa``: an autoscaling/v2 HPA dict (API-defaulted here) or a :func:`compile_hpa` result.
    - ``scale``: the target's Scale, or None when GET ``/scale`` failed (``scale_error`` is the
      error text; the default names the missing object like a 404).
    - ``pods``: the pods the lister returns for ``scale.selector`` (:func:`pods_from_v1`); with
      ``pods.labels`` set, they also drive the ambiguous-selector check.
    - ``metrics``: a :class:`MetricsSource` (e.g. :class:`StaticMetrics`).
    - ``now``: Unix seconds (the injected clock).
    - ``state``: the controller's memory of this HPA; None means never seen (history is seeded).
      It is not modified; the new state is ``Decision.state``.
    - ``other_hpa_selectors``: ``{"ns/name": selector}`` for the other HPAs in the namespace (their
      Scale's selector; None for one that has none), for the AmbiguousSelector check.
    - ``hpa_status``: the HPA's current status; defaults to the status in ``hpa``.
    - ``explain``: "none", "summary" (no per-pod rows) or "full".
    - ``build_status``: False skips building ``currentMetrics`` (replay's hot path).

    The scale update itself is the caller's: if it fails, call :func:`rescale_failed`.
    """
    if explain not in EXPLAIN_LEVELS:
        raise ValueError(f"explain must be one of {EXPLAIN_LEVELS}, got {explain!r}")
    cfg = config or ControllerConfig()
    h = hpa if isinstance(hpa, CompiledHPA) else compile_hpa(hpa)  # type: ignore[arg-type]
    original = dict(hpa_status if hpa_status is not None else h.status)
    conds = _Conditions(original.get("conditions") or [], now)
    st = _fork(state)
    events: list[dict[str, str]] = []
    want = explain != "none"
    detail = explain == "full"
    ex: dict[str, Any] = {"hpa": h.key, "now": format_time(now)} if want else {}

    def finish(status: dict[str, Any], *, scale_to: int | None, updated: bool, error: str | None,
               desired: int | None, reason: str = "", rescale_ctx: _RescaleContext | None = None) -> Decision:
        status["conditions"] = conds.items
        if want:
            ex["desiredReplicas"] = desired
            ex["rescale"] = updated
            if reason:
                ex["reason"] = reason
            if error:
                ex["error"] = error
        return Decision(status, scale.spec_replicas if scale is not None else None, scale_to, updated, events, st,
                        ex, status != original, error, desired, reason, rescale_ctx)

    # 3.1 the scale subresource
    gv_error = _parse_group_version(str(h.target_ref.get("apiVersion", "")))
    if scale is None or gv_error is not None:
        err = gv_error or scale_error or "the server could not find the requested resource"
        events.append({"type": "Warning", "reason": "FailedGetScale", "message": err})
        conds.set("AbleToScale", "False", "FailedGetScale", f"the HPA controller was unable to get the target's current scale: {err}")
        if want:
            ex["branch"] = "failed to get the target's scale"
            ex["scale"] = {"error": err}
        error = (f"invalid API version in scale target reference: {gv_error}" if gv_error
                 else f"failed to query scale subresource for {h.target_text}: {err}")
        return finish(dict(original), scale_to=None, updated=False, error=error,
                      desired=original.get("desiredReplicas"))
    conds.set("AbleToScale", "True", "SucceededGetScale", "the HPA controller was able to get the target's current scale")
    current = scale.spec_replicas
    if st.recommendations is None:
        st.recommendations = [Recommendation(current, now)]
    if want:
        ex["scale"] = {"specReplicas": scale.spec_replicas, "statusReplicas": scale.status_replicas,
                       "selector": scale.selector}
        ex["limits"] = {"minReplicas": h.min_replicas, "maxReplicas": h.max_replicas}
    min_r, max_r = h.min_replicas, h.max_replicas
    gate_zero = cfg.scale_to_zero
    scaled_to_zero = _scaled_to_zero(conds.get("ScaledToZero"), cfg)
    # HPAGeneration: observedGeneration is metadata.generation, 0 for an HPA the API server gave none
    gen = h.generation if cfg.observed_generation else None

    metric_statuses: list[dict[str, Any]] | None = None
    desired = 0
    reason = ""
    rescale = True
    error: str | None = None
    branch = _branch(h, current, scaled_to_zero)
    compute = branch == "compute"
    if branch == "disabled":
        desired, rescale = 0, False
        conds.set("ScalingActive", "False", "ScalingDisabled", "scaling is disabled since the replica count of the target is zero")
        if not gate_zero:
            conds.remove("ScaledToZero")
        if want:
            ex["branch"] = "scaling disabled (target has zero replicas)"
    elif branch == "above":
        reason, desired = "Current number of replicas above Spec.MaxReplicas", max_r
        if want:
            ex["branch"] = "current replicas above maxReplicas: scale to maxReplicas without metrics"
    elif branch == "below":
        reason, desired = "Current number of replicas below Spec.MinReplicas", min_r
        if want:
            ex["branch"] = "current replicas below minReplicas: scale to minReplicas without metrics"

    if compute:
        if want:
            ex["branch"] = "compute from metrics"
        best, metric_name, metric_statuses, metric_error = _compute_metrics(
            h, scale, pods, metrics, conds, events, cfg, now, other_hpa_selectors, detail, want, build_status, ex)
        if best == -1:
            status = _status(original, current, original.get("desiredReplicas", 0), metric_statuses, False, now,
                             build_status, gen)
            events.append({"type": "Warning", "reason": "FailedComputeMetricsReplicas", "message": metric_error or ""})
            return finish(status, scale_to=current, updated=False,
                          error=f"failed to compute desired number of replicas based on listed metrics for {h.target_text}: "
                                f"{metric_error}", desired=original.get("desiredReplicas"))
        error = metric_error
        rescale_metric = ""
        if best > desired:
            desired, rescale_metric = best, metric_name
        if desired > current:
            reason = f"{rescale_metric} above target"
        if desired < current:
            reason = "All metrics below target"
        prenormalized = desired
        if h.behavior is None:
            desired = _normalize_legacy(h, st, current, desired, min_r, cfg, now, conds, ex if want else None)
        else:
            desired = _normalize_behavior(h, st, current, desired, min_r, cfg, now, conds, ex if want else None)
        if want:
            ex["prenormalizedReplicas"] = prenormalized
        if current == 0 and min_r != 0 and scaled_to_zero and desired < min_r:
            desired = min_r
            if not reason:
                reason = "Current number of replicas below Spec.MinReplicas"
        rescale = desired != current

    if rescale:
        conds_before = [dict(c) for c in conds.items]
        state_before = _fork(st)
        conds.set("AbleToScale", "True", "SucceededRescale", f"the HPA controller was able to update the target scale to {desired}")
        events.append({"type": "Normal", "reason": "SuccessfulRescale", "message": f"New size: {desired}; reason: {reason}"})
        if h.behavior is not None:
            if desired > current:
                rules = h.behavior["up"]
                st.scale_up_events = _own_events(st.scale_up_events)
            else:
                rules = h.behavior["down"]
                st.scale_down_events = _own_events(st.scale_down_events)
            store_scale_event(st, rules, current, desired, now)
        if gate_zero:
            if current > 0 and desired == 0 and min_r == 0 and h.has_object_or_external:
                conds.set("ScaledToZero", "True", "ScaledToZero", "the HPA controller scaled the workload to zero")
            else:
                conds.set("ScaledToZero", "False", "NotScaledToZero", "the HPA controller did not scale the workload to zero")
        else:
            conds.remove("ScaledToZero")
        status = _status(original, current, desired, metric_statuses, True, now, build_status, gen)
        ctx = _RescaleContext(conds_before, metric_statuses, original, state_before, current, desired, reason, now,
                              build_status, gen)
        return finish(status, scale_to=desired, updated=True, error=error, desired=desired, reason=reason,
                      rescale_ctx=ctx)
    status = _status(original, current, current, metric_statuses, False, now, build_status, gen)
    return finish(status, scale_to=current, updated=False, error=error, desired=current, reason=reason)


def _scaled_to_zero(condition: Mapping[str, Any] | None, cfg: ControllerConfig) -> bool:
    """The HPA itself scaled the target to zero (HPAScaleToZero and a True ScaledToZero condition)."""
    return cfg.scale_to_zero and condition is not None and condition.get("status") == "True"


def _branch(h: CompiledHPA, current: int, scaled_to_zero: bool) -> str:
    """Which way reconcile goes: "disabled" (target at zero), "above"/"below" the replica limits
    (rescale without metrics) or "compute" (the only branch that reads metrics)."""
    min_r = h.min_replicas
    if current == 0 and not ((min_r != 0 and scaled_to_zero) or (scaled_to_zero and h.has_object_or_external)):
        return "disabled"
    if current != 0 and current > h.max_replicas:
        return "above"
    if current != 0 and current < min_r:
        return "below"
    return "compute"


def uses_metrics(hpa: dict[str, Any] | CompiledHPA, scale: Scale | None, *, config: ControllerConfig | None = None,
                 hpa_status: Mapping[str, Any] | None = None) -> bool:
    """Whether :func:`decide` with these inputs reads any metric, so a caller that fetches metrics
    before deciding (the live controller) can skip the fetch for a target at zero or outside the limits."""
    if scale is None:
        return False
    h = compile_hpa(hpa)  # type: ignore[arg-type]
    status = hpa_status if hpa_status is not None else h.status
    stz = next((c for c in status.get("conditions") or [] if c.get("type") == "ScaledToZero"), None)
    return _branch(h, scale.spec_replicas, _scaled_to_zero(stz, config or ControllerConfig())) == "compute"


def _status(original: Mapping[str, Any], current: int, desired: int, metric_statuses: list[dict[str, Any]] | None,
            rescale: bool, now: float, build_status: bool, generation: int | None = None) -> dict[str, Any]:
    """setStatus: a fresh status keeping lastScaleTime and conditions; ``observedGeneration`` is the
    HPA's ``metadata.generation`` with the HPAGeneration gate (``generation`` given), else dropped."""
    status: dict[str, Any] = {}
    if generation is not None:
        status["observedGeneration"] = generation
    last = format_time(now) if rescale else original.get("lastScaleTime")
    if last is not None:
        status["lastScaleTime"] = last
    status["currentReplicas"] = current
    status["desiredReplicas"] = desired
    if build_status and metric_statuses:
        status["currentMetrics"] = metric_statuses
    return status


def _compute_metrics(h: CompiledHPA, scale: Scale, pods: PodSet, source: MetricsSource, conds: _Conditions,
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
            parsed = _selector_key(sel)
            if key != h.key and parsed is not None and any(parsed.matches(lb) for lb in pods.labels):
                selecting.append(key)
        if len(selecting) > 1:
            msg = _ambiguous_message(sel_text, selecting, cfg)
            events.append({"type": "Warning", "reason": "AmbiguousSelector", "message": msg})
            conds.set("ScalingActive", "False", "AmbiguousSelector", msg)
            if want:
                ex["selector"] = {"error": msg}
            return -1, "", None, msg

    tol = _tolerances(h, cfg)
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


def _normalize_legacy(h: CompiledHPA, st: HPAState, current: int, desired: int, min_r: int, cfg: ControllerConfig,
                      now: float, conds: _Conditions, ex: dict[str, Any] | None) -> int:
    assert st.recommendations is not None
    stabilized, considered = stabilize_legacy(st.recommendations, desired, now, cfg.downscale_stabilization,
                                               ex is not None)
    if stabilized != desired:
        conds.set("AbleToScale", "True", "ScaleDownStabilized",
                  "recent recommendations were higher than current one, applying the highest recent recommendation")
    else:
        conds.set("AbleToScale", "True", "ReadyForNewScale", "recommended size matches current size")
    result, reason, msg, limit = convert_legacy(current, stabilized, min_r, h.max_replicas, cfg.scale_up_limit_factor,
                                                cfg.scale_up_limit_minimum)
    conds.set("ScalingLimited", "False" if result == stabilized else "True", reason, msg)
    if ex is not None:
        ex["stabilization"] = {"mode": "legacy (no behavior): scale-down only",
                               "windowSeconds": cfg.downscale_stabilization, "entries": considered,
                               "stabilizedReplicas": stabilized, "applied": stabilized != desired}
        ex["rateLimit"] = {"mode": "legacy scale-up limit",
                           "scaleUpLimit": limit, "factor": cfg.scale_up_limit_factor,
                           "minimum": cfg.scale_up_limit_minimum}
        ex["limits"].update({"result": result, "reason": reason, "limited": result != stabilized})
    return result


def _normalize_behavior(h: CompiledHPA, st: HPAState, current: int, desired: int, min_r: int, cfg: ControllerConfig,
                        now: float, conds: _Conditions, ex: dict[str, Any] | None) -> int:
    assert h.behavior is not None and st.recommendations is not None
    up: Rules = h.behavior["up"]
    down: Rules = h.behavior["down"]
    down_window = down.window if down.window is not None else int(cfg.downscale_stabilization)
    up_window = up.window if up.window is not None else 0
    stabilized, reason, msg, info = stabilize_with_behavior(st.recommendations, current, desired, now,
                                                             up_window, down_window, ex is not None)
    if stabilized != desired:
        conds.set("AbleToScale", "True", reason, msg)
    else:
        conds.set("AbleToScale", "True", "ReadyForNewScale", "recommended size matches current size")
    rl: dict[str, Any] | None = {} if ex is not None else None
    result, lreason, lmsg = convert_with_behavior(current, stabilized, min_r, h.max_replicas, up, down, st, now, rl)
    conds.set("ScalingLimited", "False" if result == stabilized else "True", lreason, lmsg)
    if ex is not None:
        info.update({"mode": "behavior: both directions", "stabilizedReplicas": stabilized,
                     "applied": stabilized != desired})
        ex["stabilization"] = info
        ex["rateLimit"] = rl or {"direction": "none", "note": "stabilized equals current: no policy applies"}
        ex["limits"].update({"result": result, "reason": lreason, "limited": result != stabilized})
    return result


def rescale_failed(decision: Decision, error: str) -> Decision:
    """The end of the reconcile when UPDATE ``/scale`` failed: FailedRescale event,
    AbleToScale=False/FailedUpdateScale, desiredReplicas kept, no scale event stored."""
    ctx = decision._rescale
    if ctx is None:
        raise ValueError("rescale_failed: this decision did not rescale")
    conds = _Conditions(ctx.conditions, ctx.now)
    conds.set("AbleToScale", "False", "FailedUpdateScale", f"the HPA controller was unable to update the target scale: {error}")
    status = _status(ctx.original_status, ctx.current, ctx.original_status.get("desiredReplicas", 0),
                     ctx.metric_statuses, False, ctx.now, ctx.build_status, ctx.generation)
    status["conditions"] = conds.items
    events = [e for e in decision.events if e["reason"] != "SuccessfulRescale"]
    events.append({"type": "Warning", "reason": "FailedRescale",
                   "message": f"New size: {ctx.desired}; reason: {ctx.reason}; error: {error}"})
    ex = dict(decision.explanation)
    if ex:
        ex["rescale"] = False
        ex["error"] = f"failed to rescale: {error}"
    return Decision(status, decision.scale_from, ctx.current, False, events, ctx.state, ex,
                    status != ctx.original_status, f"failed to rescale: {error}", ctx.desired, ctx.reason, None)


__all__ = ["EXPLAIN_LEVELS", "ControllerConfig", "Decision", "decide", "rescale_failed", "uses_metrics"]

