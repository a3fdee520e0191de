"""The replica calculator: one replica proposal per metric, as upstream's replica_calculator.go.

Pure functions over columnar inputs. Pods are grouped (ready / unready / missing / ignored) with
numpy masks; utilization uses int64 milli sums and truncating integer division; ratios are
float64 and the tolerance band is inclusive, exactly as upstream. Failures raise
:class:`CalcError` carrying upstream's error text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import repeat
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


def _measured_replicas(ratio: float, n_ready: int, current: int, tol: Tolerances, info: dict[str, Any] | None) -> int:
    """The first pass of upstream's calculators, when every pod was measured and none is assumed in:
    keep the current count inside the tolerance band, else ``ceil(ratio x ready pods)``."""
    if tol.within(ratio):
        if info is not None:
            info["step"] = "ratio within tolerance: keep current replicas"
        return current
    if info is not None:
        info["step"] = f"ceil({ratio:.6g} x {n_ready} ready pods)"
    return _ceil32(ratio * n_ready)


def _rebalanced_replicas(ratio: float, new_ratio: float, count: int, current: int, tol: Tolerances,
                         info: dict[str, Any] | None) -> int:
    """The second pass of upstream's calculators, after missing and unready pods were assumed in.

    Keep the current count when the rebalanced ratio falls inside the tolerance band or points the
    other way than the first pass, or when ``ceil(new_ratio x count)`` would move against it.
    """
    if tol.within(new_ratio) or (ratio < 1.0 < new_ratio) or (ratio > 1.0 > new_ratio):
        if info is not None:
            info["step"] = ("rebalanced ratio within tolerance: keep current replicas" if tol.within(new_ratio)
                            else "rebalancing flips the scale direction: keep current replicas")
        return current
    replicas = _ceil32(new_ratio * count)
    if (new_ratio < 1.0 and replicas > current) or (new_ratio > 1.0 and replicas < current):
        if info is not None:
            info["step"] = f"ceil({new_ratio:.6g} x {count}) = {replicas} would flip direction: keep current"
        return current
    if info is not None:
        info["step"] = f"ceil({new_ratio:.6g} x {count} samples)"
    return replicas


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
    counted = ~(ignored | pending)
    missing = counted & ~al.has
    rest = counted & al.has
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
    # plain lists: indexing numpy arrays element by element costs more than converting them once
    ignored, unready, missing = g.ignored.tolist(), g.unready.tolist(), g.missing.tolist()
    deleting, has, value = pods.deleting.tolist(), al.has.tolist(), al.value.tolist()
    reqs = requests.tolist() if requests is not None else None
    for i, name in enumerate(pods.names):
        if ignored[i]:
            cls, why = "ignored", "pod is being deleted" if deleting[i] else "pod phase is Failed"
        elif unready[i]:
            cls, why = "unready", _unready_reason(pods, al, i, now, cpu_init)
        elif missing[i]:
            cls, why = "missing", "no metric sample for this pod"
        else:
            cls, why = "ready", "ready" if cpu else "counted (readiness only matters for cpu)"
        row: dict[str, Any] = {"name": name, "class": cls, "reason": why,
                               "usageMilli": int(value[i]) if has[i] else None}
        if reqs is not None:
            row["requestMilli"] = int(reqs[i]) if reqs[i] >= 0 else None
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
    n_ready = int(np.count_nonzero(g.ready))

    def failed(msg: str) -> CalcError:
        rows = pod_table(pods, al, g, {"ready": "measured usage"}, now, cpu, cpu_init, requests) if detail else None
        return CalcError(msg, rows)

    if n_ready + len(al.extras) == 0:
        raise failed("did not receive metrics for targeted pods (pods might be unready)")
    if request_error is not None:
        raise failed(request_error)
    n_missing = int(np.count_nonzero(g.missing))
    n_unready = int(np.count_nonzero(g.unready))
    out = _utilization_math(n_ready, int(al.value[g.ready].sum()), int(requests[g.ready].sum()),
                            n_unready, n_missing, int(np.count_nonzero(g.ignored)), len(al.extras),
                            requests[g.missing] if n_missing else [],
                            int(requests[g.unready].sum()) if n_unready else 0,
                            target_util, current, tol, True)
    if isinstance(out, str):
        raise failed(out)
    replicas, raw_average, utilization, ratio, info, counted = out
    if detail:
        info["pods"] = pod_table(pods, al, g, counted, now, cpu, cpu_init, requests)
    return Proposal(replicas, raw_average, utilization, ratio, al.first_ts, info)


def _utilization_math(n_ready: int, usage_total: int, request_total: int, n_unready: int, n_missing: int,
                      n_ignored: int, n_extras: int, req_missing: np.ndarray | list[int], req_unready_total: int,
                      target_util: int, current: int, tol: Tolerances, want_info: bool,
                      ) -> str | tuple[int, int, int, float, dict[str, Any], dict[str, str]]:
    """The replica arithmetic of GetResourceReplicas from per-group totals (shared by both grouping
    paths); returns upstream's error text instead when it fails. ``info`` is only filled if wanted."""
    if request_total == 0:
        return "no metrics returned matched known pods"
    if target_util <= 0:  # the API server refuses these; an offline snapshot may still hold one
        return f"invalid target utilization {target_util}: must be greater than 0"
    utilization = _cap_int32((usage_total * 100) // request_total)
    ratio = utilization / target_util
    raw_average = usage_total // n_ready
    scale_up_with_unready = n_unready > 0 and ratio > 1.0
    info: dict[str, Any] = {}
    counted: dict[str, str] = {}
    if want_info:
        info.update({"utilization": utilization, "averageValueMilli": raw_average, "ratio": ratio,
                     "readyPods": n_ready, "unreadyPods": n_unready, "missingPods": n_missing,
                     "ignoredPods": n_ignored, "superfluousSamples": n_extras,
                     "usageTotalMilli": usage_total, "requestTotalMilli": request_total})
        counted.update({"ready": "measured usage", "unready": "excluded", "missing": "excluded",
                        "ignored": "excluded", "superfluous": "excluded (no request)"})
    replicas: int
    if not scale_up_with_unready and n_missing == 0:
        replicas = _measured_replicas(ratio, n_ready, current, tol, info if want_info else None)
    else:
        m_total, r_total, count = usage_total, request_total, n_ready + n_extras
        if n_missing:
            if ratio < 1.0:
                fallback = max(100, target_util)
                if isinstance(req_missing, np.ndarray):
                    m_total += int((req_missing * fallback // 100).sum())
                    r_total += int(req_missing.sum())
                else:
                    m_total += sum(r * fallback // 100 for r in req_missing)
                    r_total += sum(req_missing)
                count += n_missing
                counted["missing"] = f"assumed {fallback}% of request (scale-down)"
            elif ratio > 1.0:
                r_total += int(req_missing.sum()) if isinstance(req_missing, np.ndarray) else sum(req_missing)
                count += n_missing
                counted["missing"] = "assumed 0 (scale-up)"
        if scale_up_with_unready:
            r_total += req_unready_total
            count += n_unready
            counted["unready"] = "assumed 0 (scale-up)"
        if r_total == 0:
            return "no metrics returned matched known pods"
        new_util = _cap_int32((m_total * 100) // r_total)
        new_ratio = new_util / target_util
        if want_info:
            info["rebalanced"] = {"utilization": new_util, "ratio": new_ratio, "samples": count}
        replicas = _rebalanced_replicas(ratio, new_ratio, count, current, tol, info if want_info else None)
    return replicas, raw_average, utilization, ratio, info, counted


def plain_metric_replicas(
    pods: PodSet, al: Aligned, target: int, current: int, tol: Tolerances, cpu: bool, now: float,
    cpu_init: float, readiness_delay: float, detail: bool,
) -> Proposal:
    """calcPlainMetricReplicas: per-pod average against an AverageValue target (Pods metric, raw resource)."""
    if len(pods) == 0:
        raise CalcError("no pods returned by selector while calculating replica count")
    g = group_pods(pods, al, cpu, now, cpu_init, readiness_delay)
    n_ready = int(np.count_nonzero(g.ready))
    count = n_ready + len(al.extras)
    if count == 0:
        rows = pod_table(pods, al, g, {}, now, cpu, cpu_init, None) if detail else None
        raise CalcError("did not receive metrics for targeted pods (pods might be unready)", rows)
    total = int(al.value[g.ready].sum()) + int(al.extras.sum())
    replicas, usage, ratio, info, counted = _plain_math(n_ready, total, len(al.extras),
                                                        int(np.count_nonzero(g.unready)),
                                                        int(np.count_nonzero(g.missing)),
                                                        int(np.count_nonzero(g.ignored)), target, current, tol, True)
    if detail:
        info["pods"] = pod_table(pods, al, g, counted, now, cpu, cpu_init, None)
    return Proposal(replicas, usage, None, ratio, al.first_ts, info)


def _plain_math(n_ready: int, total: int, n_extras: int, n_unready: int, n_missing: int, n_ignored: int,
                target: int, current: int, tol: Tolerances, want_info: bool,
                ) -> tuple[int, int, float, dict[str, Any], dict[str, str]]:
    """The replica arithmetic of calcPlainMetricReplicas from per-group totals (``n_ready + n_extras > 0``)."""
    count = n_ready + n_extras
    usage = total // count
    ratio = usage / target
    scale_up_with_unready = n_unready > 0 and ratio > 1.0
    info: dict[str, Any] = {}
    counted: dict[str, str] = {}
    if want_info:
        info.update({"averageValueMilli": usage, "ratio": ratio, "readyPods": n_ready,
                     "unreadyPods": n_unready, "missingPods": n_missing, "ignoredPods": n_ignored,
                     "superfluousSamples": n_extras, "usageTotalMilli": total})
        counted.update({"ready": "measured value", "unready": "excluded", "missing": "excluded",
                        "ignored": "excluded", "superfluous": "measured value"})
    if not scale_up_with_unready and n_missing == 0:
        replicas = _measured_replicas(ratio, n_ready, current, tol, info if want_info else None)
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
        if want_info:
            info["rebalanced"] = {"averageValueMilli": new_usage, "ratio": new_ratio, "samples": new_count}
        replicas = _rebalanced_replicas(ratio, new_ratio, new_count, current, tol, info if want_info else None)
    return replicas, usage, ratio, info, counted


#: Up to this many pods the resource-metric proposal is computed with plain Python lists: numpy's
#: per-call overhead (a few dozen array operations per proposal) costs more than the loop saves.
SMALL_PODS = 80


def small_resource_replicas(
    pods: PodSet, metrics: PodMetricsSet, resource: str, container: str | None, requests: np.ndarray | None,
    target_util: int | None, target: int, current: int, tol: Tolerances, cpu: bool, now: float, cpu_init: float,
    readiness_delay: float, want_info: bool,
) -> Proposal | None:
    """The list-based twin of :func:`align_resource` + :func:`group_pods` + the two resource proposals,
    for a few pods and no per-pod rows. ``target_util`` None means an AverageValue target.

    Returns None whenever the case is not the plain one (no pods, an error to raise): the caller then
    takes the numpy path, which produces the error text and per-pod rows.
    """
    n = len(pods)
    if n == 0 or n > SMALL_PODS:
        return None
    col = metrics.column(resource, container).tolist()
    if len(col) != len(metrics.names) or (requests is not None and len(requests) != n):
        return None  # inconsistent columns: let the numpy path report them
    no_reqs = requests is None
    reqs = repeat(0) if requests is None else pods.request_list(f"{container}/{resource}", requests)
    same_pods = metrics.names is pods.names or metrics.names == pods.names
    since = pods.running_ready_since()
    if same_pods and since is not None and (not cpu or since + cpu_init <= now) and min(col) >= 0:
        # The steady state: every pod Running and Ready, past the CPU initialization period, with a
        # sample. The loop below would count each one ready with its measured usage; do it at once.
        return _small_tail(n, sum(col), 0 if requests is None else sum(reqs), 0, 0, 0, [], [], 0, no_reqs,
                           float(metrics.timestamp[0]), target_util, target, current, tol, want_info)
    m_ts = metrics.timestamp.tolist()
    m_win = metrics.window.tolist()
    extras: list[int] = []
    if same_pods:
        value, ts, win = col, m_ts, m_win  # a negative value: the pod has no sample (missing)
    else:
        index = pods.index
        value = [-1] * n
        ts = [0.0] * n
        win = [0.0] * n
        for j, name in enumerate(metrics.names):
            v = col[j]
            if v < 0:
                continue
            i = index.get(name)
            if i is None:
                extras.append(v)
            else:
                value[i], ts[i], win[i] = v, m_ts[j], m_win[j]
    first_ts = float(m_ts[0]) if len(metrics) else None
    deleting, phase, ready, start, ready_time = pods.lists()
    if not cpu:
        start = ready_time = [0.0] * len(phase)
    n_ready = n_unready = n_missing = n_ignored = 0
    usage_total = request_total = req_unready_total = 0
    req_missing: list[int] = []
    # not strict: ``repeat`` stands in for the requests when no container needs them
    for dl, ph, v, r, s, rt, t, w, rq in zip(deleting, phase, value, ready, start, ready_time, ts, win, reqs,
                                             strict=False):
        if dl or ph == FAILED:
            n_ignored += 1
            continue
        if ph == PENDING:
            unready = True
        elif v < 0:
            n_missing += 1
            req_missing.append(rq)
            continue
        elif cpu:
            # group_pods' CPU readiness rule, pod by pod (NaN start: no start time)
            if r == NO_CONDITION or s != s:
                unready = True
            elif s + cpu_init > now:
                unready = r == COND_FALSE or t < rt + w
            else:
                unready = r == COND_FALSE and s + readiness_delay > rt
        else:
            unready = False
        if unready:
            n_unready += 1
            req_unready_total += rq
        else:
            n_ready += 1
            usage_total += v
            request_total += rq
    return _small_tail(n_ready, usage_total, request_total, n_unready, n_missing, n_ignored, req_missing, extras,
                       req_unready_total, no_reqs, first_ts, target_util, target, current, tol, want_info)


def _small_tail(n_ready: int, usage_total: int, request_total: int, n_unready: int, n_missing: int, n_ignored: int,
                req_missing: list[int], extras: list[int], req_unready_total: int, no_reqs: bool,
                first_ts: float | None, target_util: int | None, target: int, current: int, tol: Tolerances,
                want_info: bool) -> Proposal | None:
    """The proposal of :func:`small_resource_replicas` from its per-group counts."""
    n_extras = len(extras)
    if n_ready + n_extras == 0:
        return None
    if target_util is not None:
        if no_reqs:
            return None
        out = _utilization_math(n_ready, usage_total, request_total, n_unready, n_missing, n_ignored, n_extras,
                                req_missing, req_unready_total, target_util, current, tol, want_info)
        if isinstance(out, str):
            return None
        replicas, raw_average, utilization, ratio, info, _ = out
        return Proposal(replicas, raw_average, utilization, ratio, first_ts, info)
    replicas, usage, ratio, info, _ = _plain_math(n_ready, usage_total + sum(extras), n_extras, n_unready,
                                                  n_missing, n_ignored, target, current, tol, want_info)
    return Proposal(replicas, usage, None, ratio, first_ts, info)


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
