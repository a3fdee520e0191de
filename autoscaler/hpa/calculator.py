"""The replica calculator: one replica proposal per metric, as upstream's replica_calculator.go.

Pure functions over columnar inputs. Pods are grouped (ready / unready / missing / ignored) with
numpy masks; utilization uses int64 milli sums and truncating integer division; ratios are
float64 and the tolerance band is inclusive, exactly as upstream. Failures raise
:class:`CalcError` carrying upstream's error text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autoscaler.hpa.inputs import (
    COND_FALSE,
    COND_TRUE,
    FAILED,
    MISSING,
    NO_CONDITION,
    PENDING,
    RUNNING,
    PodMetricsSet,
    PodSet,
    PodValues,
)

MAX_INT32 = 2**31 - 1
MAX_INT64 = 2**63 - 1


class CalcError(Exception):
    """A calculator failure; ``str()`` is upstream's error text, ``pods`` the per-pod rows if known."""

    def __init__(self, message: str, pods: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.pods = pods


@dataclass(slots=True)
class Tolerances:
    scale_down: float
    scale_up: float

    def within(self, ratio: float) -> bool:
        return (1.0 - self.scale_down) <= ratio <= (1.0 + self.scale_up)

    def band(self) -> list[float]:
        return [1.0 - self.scale_down, 1.0 + self.scale_up]


@dataclass(slots=True)
class Proposal:
    """A metric's replica proposal and what status reports for it (milli-units)."""

    replicas: int
    usage: int
    utilization: int | None = None
    ratio: float = 0.0
    timestamp: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Aligned:
    """Metric samples aligned to the pod list, plus samples for pods not in the list."""

    has: np.ndarray
    value: np.ndarray
    ts: np.ndarray
    window: np.ndarray
    extras: np.ndarray  # values of samples whose pod is not listed ("superfluous")
    extra_names: list[str]
    first_ts: float | None


def _cap_int32(x: float) -> int:
    if x != x:  # NaN: Go's int32(NaN) is undefined; report the minimum like amd64 does
        return -(2**31)
    if x >= MAX_INT32:
        return MAX_INT32
    if x <= -(2**31):
        return -(2**31)
    return int(x)


def _ceil32(x: float) -> int:
    return _cap_int32(math.ceil(x) if math.isfinite(x) else x)


def align_resource(pods: PodSet, metrics: PodMetricsSet, resource: str, container: str | None) -> Aligned:
    col = metrics.column(resource, container)
    n = len(pods)
    if metrics.names is pods.names or metrics.names == pods.names:
        has = col >= 0
        return Aligned(has, np.where(has, col, 0), np.asarray(metrics.timestamp, np.float64),
                       np.asarray(metrics.window, np.float64), np.empty(0, np.int64), [],
                       float(metrics.timestamp[0]) if len(metrics) else None)
    index = pods.index
    has = np.zeros(n, bool)
    value = np.zeros(n, np.int64)
    ts = np.zeros(n, np.float64)
    win = np.zeros(n, np.float64)
    extras: list[int] = []
    extra_names: list[str] = []
    for j, name in enumerate(metrics.names):
        v = int(col[j])
        if v < 0:
            continue  # the pod's sample lacks the resource/container: no entry, the pod is missing
        i = index.get(name)
        if i is None:
            extras.append(v)
            extra_names.append(name)
        else:
            has[i], value[i], ts[i], win[i] = True, v, metrics.timestamp[j], metrics.window[j]
    return Aligned(has, value, ts, win, np.asarray(extras, np.int64), extra_names,
                   float(metrics.timestamp[0]) if len(metrics) else None)


def align_values(pods: PodSet, values: PodValues) -> Aligned:
    n = len(pods)
    index = pods.index
    has = np.zeros(n, bool)
    value = np.zeros(n, np.int64)
    ts = np.zeros(n, np.float64)
    win = np.full(n, 60.0)
    extras: list[int] = []
    extra_names: list[str] = []
    first_ts = None
    for name, v in values.values.items():
        t = values.timestamp.get(name)
        if first_ts is None:
            first_ts = t
        i = index.get(name)
        if i is None:
            extras.append(int(v))
            extra_names.append(name)
        else:
            has[i], value[i] = True, int(v)
            ts[i] = t if t is not None else 0.0
            win[i] = values.window.get(name, 60.0)
    return Aligned(has, value, ts, win, np.asarray(extras, np.int64), extra_names, first_ts)


@dataclass(slots=True)
class Groups:
    ready: np.ndarray
    unready: np.ndarray
    missing: np.ndarray
    ignored: np.ndarray


def group_pods(pods: PodSet, al: Aligned, cpu: bool, now: float, cpu_init: float, readiness_delay: float) -> Groups:
    """Classify pods in upstream's order: ignored, pending-unready, missing, CPU readiness, ready."""
    ignored = pods.deleting | (pods.phase == FAILED)
    pending = ~ignored & (pods.phase == PENDING)
    missing = ~ignored & ~pending & ~al.has
    rest = ~ignored & ~pending & al.has
    if cpu and rest.any():
        start = pods.start_time
        no_cond = (pods.ready == NO_CONDITION) | np.isnan(start)
        with np.errstate(invalid="ignore"):
            in_init = (start + cpu_init) > now
            stale = al.ts < (pods.ready_time + al.window)
            never_ready = (start + readiness_delay) > pods.ready_time
        is_false = pods.ready == COND_FALSE
        cpu_unready = rest & (no_cond | np.where(in_init, is_false | stale, is_false & never_ready))
        return Groups(rest & ~cpu_unready, pending | cpu_unready, missing, ignored)
    return Groups(rest, pending, missing, ignored)


def _unready_reason(pods: PodSet, al: Aligned, i: int, now: float, cpu_init: float) -> str:
    if pods.phase[i] == PENDING:
        return "pod is Pending"
    if pods.ready[i] == NO_CONDITION or math.isnan(pods.start_time[i]):
        return "no Ready condition or no start time"
    if pods.start_time[i] + cpu_init > now:
        if pods.ready[i] == COND_FALSE:
            return "not Ready during the CPU initialization period"
        return "CPU sample taken before one full metric window after the pod became Ready"
    return "not Ready and never became Ready since it started"


def pod_table(pods: PodSet, al: Aligned, g: Groups, counted: dict[str, str], now: float, cpu: bool,
              cpu_init: float, requests: np.ndarray | None) -> list[dict[str, Any]]:
    """Per-pod explanation rows (only built at the "full" explain level)."""
    rows = []
    for i, name in enumerate(pods.names):
        if g.ignored[i]:
            cls, why = "ignored", "pod is being deleted" if pods.deleting[i] else "pod phase is Failed"
        elif g.unready[i]:
            cls, why = "unready", _unready_reason(pods, al, i, now, cpu_init)
        elif g.missing[i]:
            cls, why = "missing", "no metric sample for this pod"
        else:
            cls, why = "ready", "ready" if cpu else "counted (readiness only matters for cpu)"
        row: dict[str, Any] = {"name": name, "class": cls, "reason": why,
                               "usageMilli": int(al.value[i]) if al.has[i] else None}
        if requests is not None:
            row["requestMilli"] = int(requests[i]) if requests[i] >= 0 else None
        row["counted"] = counted.get(cls, "not counted")
        rows.append(row)
    for name, v in zip(al.extra_names, al.extras.tolist(), strict=True):
        rows.append({"name": name, "class": "superfluous", "reason": "metric sample for a pod that is not listed",
                     "usageMilli": v, "counted": counted.get("superfluous", "not counted")})
    return rows


def resource_utilization_replicas(
    pods: PodSet, al: Aligned, requests: np.ndarray, request_error: str | None, target_util: int, current: int,
    tol: Tolerances, cpu: bool, now: float, cpu_init: float, readiness_delay: float, detail: bool,
) -> Proposal:
    """GetResourceReplicas: utilization of request (Resource / ContainerResource, Utilization target)."""
    if len(pods) == 0:
        raise CalcError("no pods returned by selector while calculating replica count")
    g = group_pods(pods, al, cpu, now, cpu_init, readiness_delay)
    n_ready = int(g.ready.sum())

    def failed(msg: str) -> CalcError:
        rows = pod_table(pods, al, g, {"ready": "measured usage"}, now, cpu, cpu_init, requests) if detail else None
        return CalcError(msg, rows)

    if n_ready + len(al.extras) == 0:
        raise failed("did not receive metrics for targeted pods (pods might be unready)")
    if request_error is not None:
        raise failed(request_error)
    req_ready = requests[g.ready]
    usage_total = int(al.value[g.ready].sum())
    request_total = int(req_ready.sum())
    if request_total == 0:
        raise failed("no metrics returned matched known pods")
    utilization = _cap_int32((usage_total * 100) // request_total)
    ratio = utilization / target_util
    raw_average = usage_total // n_ready
    n_unready = int(g.unready.sum())
    n_missing = int(g.missing.sum())
    scale_up_with_unready = n_unready > 0 and ratio > 1.0
    info: dict[str, Any] = {"utilization": utilization, "averageValueMilli": raw_average, "ratio": ratio,
                            "readyPods": n_ready, "unreadyPods": n_unready, "missingPods": n_missing,
                            "ignoredPods": int(g.ignored.sum()), "superfluousSamples": len(al.extras),
                            "usageTotalMilli": usage_total, "requestTotalMilli": request_total}
    counted = {"ready": "measured usage", "unready": "excluded", "missing": "excluded", "ignored": "excluded",
               "superfluous": "excluded (no request)"}
    replicas: int
    if not scale_up_with_unready and n_missing == 0:
        if tol.within(ratio):
            replicas, info["step"] = current, "ratio within tolerance: keep current replicas"
        else:
            replicas = _ceil32(ratio * n_ready)
            info["step"] = f"ceil({ratio:.6g} x {n_ready} ready pods)"
    else:
        m_total, r_total, count = usage_total, request_total, n_ready + len(al.extras)
        if n_missing:
            req_missing = requests[g.missing]
            if ratio < 1.0:
                fallback = max(100, target_util)
                m_total += int((req_missing * fallback // 100).sum())
                r_total += int(req_missing.sum())
                count += n_missing
                counted["missing"] = f"assumed {fallback}% of request (scale-down)"
            elif ratio > 1.0:
                r_total += int(req_missing.sum())
                count += n_missing
                counted["missing"] = "assumed 0 (scale-up)"
        if scale_up_with_unready:
            r_total += int(requests[g.unready].sum())
            count += n_unready
            counted["unready"] = "assumed 0 (scale-up)"
        if r_total == 0:
            raise failed("no metrics returned matched known pods")
        new_util = _cap_int32((m_total * 100) // r_total)
        new_ratio = new_util / target_util
        info["rebalanced"] = {"utilization": new_util, "ratio": new_ratio, "samples": count}
        if tol.within(new_ratio) or (ratio < 1.0 < new_ratio) or (ratio > 1.0 > new_ratio):
            replicas = current
            info["step"] = ("rebalanced ratio within tolerance: keep current replicas" if tol.within(new_ratio)
                            else "rebalancing flips the scale direction: keep current replicas")
        else:
            replicas = _ceil32(new_ratio * count)
            if (new_ratio < 1.0 and replicas > current) or (new_ratio > 1.0 and replicas < current):
                info["step"] = f"ceil({new_ratio:.6g} x {count}) = {replicas} would flip direction: keep current"
                replicas = current
            else:
                info["step"] = f"ceil({new_ratio:.6g} x {count} samples)"
    if detail:
        info["pods"] = pod_table(pods, al, g, counted, now, cpu, cpu_init, requests)
    return Proposal(replicas, raw_average, utilization, ratio, al.first_ts, info)


def plain_metric_replicas(
    pods: PodSet, al: Aligned, target: int, current: int, tol: Tolerances, cpu: bool, now: float,
    cpu_init: float, readiness_delay: float, detail: bool,
) -> Proposal:
    """calcPlainMetricReplicas: per-pod average against an AverageValue target (Pods metric, raw resource)."""
    if len(pods) == 0:
        raise CalcError("no pods returned by selector while calculating replica count")
    g = group_pods(pods, al, cpu, now, cpu_init, readiness_delay)
    n_ready = int(g.ready.sum())
    count = n_ready + len(al.extras)
    if count == 0:
        rows = pod_table(pods, al, g, {}, now, cpu, cpu_init, None) if detail else None
        raise CalcError("did not receive metrics for targeted pods (pods might be unready)", rows)
    total = int(al.value[g.ready].sum()) + int(al.extras.sum())
    usage = total // count
    ratio = usage / target
    n_unready = int(g.unready.sum())
    n_missing = int(g.missing.sum())
    scale_up_with_unready = n_unready > 0 and ratio > 1.0
    info: dict[str, Any] = {"averageValueMilli": usage, "ratio": ratio, "readyPods": n_ready,
                            "unreadyPods": n_unready, "missingPods": n_missing, "ignoredPods": int(g.ignored.sum()),
                            "superfluousSamples": len(al.extras), "usageTotalMilli": total}
    counted = {"ready": "measured value", "unready": "excluded", "missing": "excluded", "ignored": "excluded",
               "superfluous": "measured value"}
    if not scale_up_with_unready and n_missing == 0:
        if tol.within(ratio):
            replicas, info["step"] = current, "ratio within tolerance: keep current replicas"
        else:
            replicas = _ceil32(ratio * n_ready)
            info["step"] = f"ceil({ratio:.6g} x {n_ready} ready pods)"
    else:
        new_total, new_count = total, count
        if n_missing:
            if ratio < 1.0:
                new_total += target * n_missing
                new_count += n_missing
                counted["missing"] = "assumed at target (scale-down)"
            elif ratio > 1.0:
                new_count += n_missing
                counted["missing"] = "assumed 0 (scale-up)"
        if scale_up_with_unready:
            new_count += n_unready
            counted["unready"] = "assumed 0 (scale-up)"
        new_usage = new_total // new_count
        new_ratio = new_usage / target
        info["rebalanced"] = {"averageValueMilli": new_usage, "ratio": new_ratio, "samples": new_count}
        if tol.within(new_ratio) or (ratio < 1.0 < new_ratio) or (ratio > 1.0 > new_ratio):
            replicas = current
            info["step"] = ("rebalanced ratio within tolerance: keep current replicas" if tol.within(new_ratio)
                            else "rebalancing flips the scale direction: keep current replicas")
        else:
            replicas = _ceil32(new_ratio * new_count)
            if (new_ratio < 1.0 and replicas > current) or (new_ratio > 1.0 and replicas < current):
                info["step"] = f"ceil({new_ratio:.6g} x {new_count}) = {replicas} would flip direction: keep current"
                replicas = current
            else:
                info["step"] = f"ceil({new_ratio:.6g} x {new_count} samples)"
    if detail:
        info["pods"] = pod_table(pods, al, g, counted, now, cpu, cpu_init, None)
    return Proposal(replicas, usage, None, ratio, al.first_ts, info)


def ready_running_pods(pods: PodSet) -> int:
    if len(pods) == 0:
        raise CalcError("unable to calculate ready pods: no pods returned by selector while calculating replica count")
    return int(((pods.phase == RUNNING) & (pods.ready == COND_TRUE)).sum())


def usage_ratio_replicas(pods: PodSet, usage: int, target: int, current: int, tol: Tolerances) -> Proposal:
    """Object Value / External Value: total against the target, times ready pods (or ceil(ratio) from 0)."""
    ratio = usage / target
    info: dict[str, Any] = {"valueMilli": usage, "ratio": ratio}
    if current != 0:
        if tol.within(ratio):
            info["step"] = "ratio within tolerance: keep current replicas"
            return Proposal(current, usage, None, ratio, None, info)
        ready = ready_running_pods(pods)
        info["readyPods"] = ready
        info["step"] = f"ceil({ratio:.6g} x {ready} ready pods)"
        return Proposal(_ceil32(ratio * ready), usage, None, ratio, None, info)
    info["step"] = f"from zero: ceil({ratio:.6g})"
    return Proposal(_ceil32(ratio), usage, None, ratio, None, info)


def per_pod_replicas(usage: int, target: int, status_replicas: int, tol: Tolerances, external: bool) -> Proposal:
    """Object AverageValue / External AverageValue: compare with target x status.replicas."""
    denom = float(target) * float(status_replicas)
    ratio = (math.inf if usage > 0 else math.nan) if denom == 0.0 else usage / denom
    replicas = status_replicas
    info: dict[str, Any] = {"valueMilli": usage, "ratio": ratio, "statusReplicas": status_replicas}
    if not tol.within(ratio):
        replicas = _ceil32(usage / target)
        info["step"] = f"ceil({usage} / {target})"
    else:
        info["step"] = "ratio within tolerance: keep status.replicas"
    if external and usage == MAX_INT64:
        average = MAX_INT64
    elif status_replicas == 0:
        average = MAX_INT64 if usage > 0 else 0
    else:
        average = min(math.ceil(usage / status_replicas), MAX_INT64)
    info["averageValueMilli"] = average
    return Proposal(replicas, average, None, ratio, None, info)


def saturating_sum(values: list[int]) -> int:
    total = 0
    for v in values:
        total += v
        if total >= MAX_INT64:
            return MAX_INT64
    return total


__all__ = [
    "MISSING",
    "Aligned",
    "CalcError",
    "Proposal",
    "Tolerances",
    "align_resource",
    "align_values",
    "group_pods",
    "per_pod_replicas",
    "plain_metric_replicas",
    "resource_utilization_replicas",
    "saturating_sum",
    "usage_ratio_replicas",
]
