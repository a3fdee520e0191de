"""The HPA decision: one reconcile of one HPA, pure (no I/O, injected clock).

This is the only implementation of the controller's rules in the project: the live controller,
the replay simulator and ``autoscaler explain`` all call :func:`decide`. It follows upstream's
reconcile order (hpa-spec §3): scale, branch on the current replica count, selector checks,
per-metric proposals, combination, stabilization and rate limits (legacy or behavior),
conditions, events, scale events, status. The per-metric proposals are
:mod:`autoscaler.hpa.metrics_eval`, the conditions and status object :mod:`autoscaler.hpa.status`,
the stabilization and rate limits :mod:`autoscaler.hpa.normalize`; this module is the reconcile
that strings them together.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from autoscaler.hpa.config import ControllerConfig
from autoscaler.hpa.inputs import MetricsSource, PodSet, Scale
from autoscaler.hpa.metrics_eval import compute_metrics
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
from autoscaler.hpa.spec import CompiledHPA, Rules, compile_hpa
from autoscaler.hpa.status import Conditions, new_status
from autoscaler.k8s.selectors import LabelSelector
from autoscaler.k8s.timefmt import format_time

EXPLAIN_LEVELS = ("none", "summary", "full")


@functools.lru_cache(maxsize=256)
def _parse_group_version(api_version: str) -> str | None:
    """schema.ParseGroupVersion: return the error text, or None when it parses (cached: the same
    target comes back every sync)."""
    if api_version.count("/") > 1:
        return f"unexpected GroupVersion string: {api_version}"
    return None


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
    conds = Conditions(original.get("conditions") or [], now)
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
        return finish(dict(original), scale_to=None, updated=False,
                      error=(f"invalid API version in scale target reference: {gv_error}" if gv_error
                             else f"failed to query scale subresource for {h.target_text}: {err}"),
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
        best, metric_name, metric_statuses, metric_error = compute_metrics(
            h, scale, pods, metrics, conds, events, cfg, now, other_hpa_selectors, detail, want, build_status, ex)
        if best == -1:
            status = new_status(original, current, original.get("desiredReplicas", 0), metric_statuses, False, now,
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
        status = new_status(original, current, desired, metric_statuses, True, now, build_status, gen)
        ctx = _RescaleContext(conds_before, metric_statuses, original, state_before, current, desired, reason, now,
                              build_status, gen)
        return finish(status, scale_to=desired, updated=True, error=error, desired=desired, reason=reason,
                      rescale_ctx=ctx)
    status = new_status(original, current, current, metric_statuses, False, now, build_status, gen)
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


def _normalize_legacy(h: CompiledHPA, st: HPAState, current: int, desired: int, min_r: int, cfg: ControllerConfig,
                      now: float, conds: Conditions, ex: dict[str, Any] | None) -> int:
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
                        now: float, conds: Conditions, ex: dict[str, Any] | None) -> int:
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
    conds = Conditions(ctx.conditions, ctx.now)
    conds.set("AbleToScale", "False", "FailedUpdateScale", f"the HPA controller was unable to update the target scale: {error}")
    status = new_status(ctx.original_status, ctx.current, ctx.original_status.get("desiredReplicas", 0),
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
