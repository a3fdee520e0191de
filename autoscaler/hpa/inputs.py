"""Decision inputs: columnar pods, resource metrics, and the metrics-source seam.

The live controller, the replay simulator and ``explain`` all feed :func:`autoscaler.hpa.decide`
through these types. Pods and PodMetrics are kept columnar (numpy arrays, one entry per pod) so
that the replay simulator can build them straight from arrays every step without creating
per-pod Python objects, and the calculator can group and sum pods in a few vector operations.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from autoscaler.k8s.quantity import milli_value
from autoscaler.k8s.selectors import LabelSelector
from autoscaler.k8s.timefmt import ZERO_TIME, parse_duration, parse_time

ZERO_TS = parse_time(ZERO_TIME)

PHASES = ("Pending", "Running", "Succeeded", "Failed", "Unknown")
PENDING, RUNNING, SUCCEEDED, FAILED, UNKNOWN = range(5)
_PHASE_CODE = {p: i for i, p in enumerate(PHASES)}

# Ready condition column: no condition, False, True, Unknown.
NO_CONDITION, COND_FALSE, COND_TRUE, COND_UNKNOWN = -1, 0, 1, 2
_COND_CODE = {"False": COND_FALSE, "True": COND_TRUE, "Unknown": COND_UNKNOWN}

MISSING = -1  # request or usage column value: the container/pod does not have it
ABSENT = -2  # container column value: the pod has no container of that name


class InputError(ValueError):
    """An input object that cannot be read; the message names the object and the field."""


class MetricsError(Exception):
    """A metrics API call failed or returned nothing; the message is the metrics client's wording."""


@dataclass(slots=True)
class Scale:
    """The target's autoscaling/v1 Scale: what the controller reads from ``/scale``."""

    spec_replicas: int
    status_replicas: int
    selector: str

    @classmethod
    def from_v1(cls, obj: Mapping[str, Any]) -> Scale:
        spec = obj.get("spec") or {}
        status = obj.get("status") or {}
        return cls(int(spec.get("replicas") or 0), int(status.get("replicas") or 0), str(status.get("selector") or ""))


@dataclass(slots=True, eq=False)
class PodSet:
    """The pods the lister returns for the scale's selector, one array entry per pod.

    ``requests[res]`` is the pod's request in milli-units (regular containers plus restartable
    init containers, or the pod-level request when the pod sets one); ``MISSING`` when a container
    lacks it, with the upstream error text in ``request_errors[res][i]``.
    ``container_requests[container][res]`` is one container's request (``MISSING``/``ABSENT``).
    ``ready_time`` is the Ready condition's lastTransitionTime (zero time when unset); ``start_time``
    is NaN when the pod has no ``status.startTime``.
    """

    names: list[str]
    phase: np.ndarray
    ready: np.ndarray
    ready_time: np.ndarray
    start_time: np.ndarray
    deleting: np.ndarray
    requests: dict[str, np.ndarray] = field(default_factory=dict)
    request_errors: dict[str, dict[int, str]] = field(default_factory=dict)
    container_requests: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    labels: list[Mapping[str, str]] | None = None
    _index: dict[str, int] | None = None
    _lists: tuple[list[bool], list[int], list[int], list[float], list[float]] | None = None
    _request_lists: dict[str, tuple[np.ndarray, list[int]]] | None = None
    _settled: float | None = None

    def __len__(self) -> int:
        return len(self.names)

    @property
    def index(self) -> dict[str, int]:
        if self._index is None:
            self._index = {n: i for i, n in enumerate(self.names)}
        return self._index

    def lists(self) -> tuple[list[bool], list[int], list[int], list[float], list[float]]:
        """``(deleting, phase, ready, start_time, ready_time)`` as lists, made once: a replay passes
        the same PodSet to many syncs, and the few-pod proposal loops over plain lists. (Like the
        name index, this assumes the columns are not modified once the set is in use.)"""
        if self._lists is None:
            self._lists = (self.deleting.tolist(), self.phase.tolist(), self.ready.tolist(),
                           self.start_time.tolist(), self.ready_time.tolist())
        return self._lists

    def running_ready_since(self) -> float | None:
        """The latest start time if every pod is Running, Ready=True, not being deleted and has a
        start time (the steady state, where the proposal needs no pod-by-pod rules), else None."""
        if self._settled is None:
            deleting, phase, ready, start, _ = self.lists()
            plain = (len(start) > 0 and not any(deleting) and all(p == RUNNING for p in phase)
                     and all(r == COND_TRUE for r in ready) and not any(s != s for s in start))
            self._settled = max(start) if plain else math.nan
        return None if self._settled != self._settled else self._settled

    def request_list(self, resource: str, column: np.ndarray) -> list[int]:
        """``column`` (a request column of this set) as a list, made once per column."""
        cache = self._request_lists
        if cache is None:
            cache = self._request_lists = {}
        hit = cache.get(resource)
        if hit is None or hit[0] is not column:
            hit = cache[resource] = (column, column.tolist())
        return hit[1]

    @classmethod
    def from_arrays(
        cls,
        names: Sequence[str],
        *,
        cpu_request_milli: np.ndarray | Sequence[int] | None = None,
        memory_request_milli: np.ndarray | Sequence[int] | None = None,
        phase: np.ndarray | None = None,
        ready: np.ndarray | None = None,
        ready_time: np.ndarray | None = None,
        start_time: np.ndarray | None = None,
        deleting: np.ndarray | None = None,
    ) -> PodSet:
        """Build directly from columns (replay): defaults are Running, Ready=True since the zero time."""
        n = len(names)
        requests: dict[str, np.ndarray] = {}
        if cpu_request_milli is not None:
            requests["cpu"] = np.asarray(cpu_request_milli, dtype=np.int64)
        if memory_request_milli is not None:
            requests["memory"] = np.asarray(memory_request_milli, dtype=np.int64)
        return cls(
            names=list(names),
            phase=np.full(n, RUNNING, np.int8) if phase is None else np.asarray(phase, np.int8),
            ready=np.full(n, COND_TRUE, np.int8) if ready is None else np.asarray(ready, np.int8),
            ready_time=np.full(n, ZERO_TS) if ready_time is None else np.asarray(ready_time, np.float64),
            start_time=np.full(n, ZERO_TS) if start_time is None else np.asarray(start_time, np.float64),
            deleting=np.zeros(n, bool) if deleting is None else np.asarray(deleting, bool),
            requests=requests,
        )


def _time_field(value: Any, where: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    try:
        return parse_time(str(value))
    except ValueError:
        raise InputError(f"{where}: invalid time {value!r}") from None


_INT64_MAX = 2**63 - 1


def _quantity_milli(value: Any, where: str) -> int:
    try:
        milli = milli_value(value)
    except Exception:
        raise InputError(f"{where}: invalid quantity {value!r}") from None
    if not -_INT64_MAX <= milli <= _INT64_MAX:
        raise InputError(f"{where}: quantity {value!r} is out of range (over 2^63-1 thousandths)")
    return milli


def _pod_name(pod: Mapping[str, Any], i: int) -> str:
    return str((pod.get("metadata") or {}).get("name") or f"<pod {i}>")


@dataclass(slots=True, frozen=True)
class PodRow:
    """One pod's entries of a :class:`PodSet`, read from its v1 object once (see :func:`pod_row`).

    A pod that has not changed reads the same every sync: the controller keeps each pod's row with
    the pod in its index and only assembles the columns per HPA."""

    name: str
    labels: Mapping[str, str]
    phase: int
    ready: int
    ready_time: float
    start_time: float
    deleting: bool
    requests: tuple[int, ...]  # per resource, in the order asked for (MISSING with an error)
    errors: tuple[str | None, ...]  # per resource
    containers: dict[str, dict[str, int]]  # container -> resource -> request (MISSING)


def pod_row(pod: Mapping[str, Any], i: int = 0, resources: Sequence[str] = ("cpu", "memory")) -> PodRow:
    """Read one v1 Pod (``i``: its position, named in errors when it has no name); raises InputError."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    name = _pod_name(pod, i)
    st = status.get("startTime")
    start_time = np.nan if st is None else _time_field(st, f"Pod {name}: status.startTime")
    ready, ready_time = NO_CONDITION, ZERO_TS
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Ready":
            ready = _COND_CODE.get(cond.get("status"), COND_UNKNOWN)
            ltt = cond.get("lastTransitionTime")
            ready_time = ZERO_TS if ltt is None else _time_field(
                ltt, f"Pod {name}: status.conditions[Ready].lastTransitionTime")
            break
    containers = list(spec.get("containers") or [])
    containers += [c for c in spec.get("initContainers") or [] if c.get("restartPolicy") == "Always"]
    this: dict[str, dict[str, int]] = {}
    pod_level = ((spec.get("resources") or {}).get("requests")) or None
    totals: list[int] = []
    errors: list[str | None] = []
    for res in resources:
        total, err = 0, None
        for c in containers:
            cname = c.get("name", "")
            req = ((c.get("resources") or {}).get("requests") or {}).get(res)
            val = MISSING if req is None else _quantity_milli(
                req, f"Pod {name}: spec.containers[{cname}].resources.requests.{res}")
            this.setdefault(cname, {})[res] = val
            if val == MISSING and err is None:
                err = f"missing request for {res} in container {cname} of Pod {name}"
            elif val != MISSING:
                total += val
                if not -_INT64_MAX <= total <= _INT64_MAX:
                    raise InputError(f"Pod {name}: requests.{res} of its containers add up to more"
                                     " than 2^63-1 thousandths")
        if pod_level:
            if res in pod_level:
                total, err = _quantity_milli(pod_level[res], f"Pod {name}: spec.resources.requests.{res}"), None
            else:
                err = f"missing request for {res} in pod-level resources of Pod {name}"
        totals.append(MISSING if err is not None else total)
        errors.append(err)
    return PodRow(name, meta.get("labels") or {}, _PHASE_CODE.get(status.get("phase") or "", UNKNOWN),  # "" ~ Unknown
                  ready, ready_time, start_time, meta.get("deletionTimestamp") is not None, tuple(totals),
                  tuple(errors), this)


def pod_set_from_rows(rows: Sequence[PodRow], resources: Sequence[str] = ("cpu", "memory")) -> PodSet:
    """The :class:`PodSet` of these rows (read with the same ``resources``), in their order."""
    n = len(rows)
    requests = {r: np.fromiter((row.requests[k] for row in rows), np.int64, n) for k, r in enumerate(resources)}
    request_errors: dict[str, dict[int, str]] = {
        r: {i: err for i, row in enumerate(rows) if (err := row.errors[k]) is not None} for k, r in enumerate(resources)}
    container_requests: dict[str, dict[str, np.ndarray]] = {}
    for cname in sorted({c for row in rows for c in row.containers}):
        cols = {r: np.full(n, ABSENT, np.int64) for r in resources}
        for i, row in enumerate(rows):
            d = row.containers.get(cname)
            if d is not None:
                for r in resources:
                    cols[r][i] = d.get(r, MISSING)
        container_requests[cname] = cols
    return PodSet([row.name for row in rows],
                  np.fromiter((row.phase for row in rows), np.int8, n),
                  np.fromiter((row.ready for row in rows), np.int8, n),
                  np.fromiter((row.ready_time for row in rows), np.float64, n),
                  np.fromiter((row.start_time for row in rows), np.float64, n),
                  np.fromiter((row.deleting for row in rows), bool, n),
                  requests, {r: e for r, e in request_errors.items() if e}, container_requests,
                  [row.labels for row in rows])


def pods_from_v1(pods: Iterable[Mapping[str, Any]], selector: LabelSelector | None = None,
                 resources: Sequence[str] = ("cpu", "memory")) -> PodSet:
    """Build a :class:`PodSet` from v1 Pod objects, keeping those ``selector`` matches (all if None).

    Requests are read for ``resources`` (cpu and memory by default) from regular containers and
    restartable init containers (sidecars), or from pod-level ``spec.resources`` when set.
    """
    kept = [p for p in pods if selector is None or selector.matches((p.get("metadata") or {}).get("labels") or {})]
    return pod_set_from_rows([pod_row(p, i, resources) for i, p in enumerate(kept)], resources)


@dataclass(slots=True, eq=False)
class PodMetricsSet:
    """Resource usage per pod as metrics.k8s.io PodMetrics gives it, columnar.

    ``cpu``/``memory`` are pod totals in milli-units (sum over containers, ``MISSING`` when the pod
    reports no containers or a container lacks the resource). ``containers[name]`` holds
    ``(cpu, memory)`` columns for one container (``MISSING``/``ABSENT``). Memory milli-units are
    bytes x 1000, as ``Quantity.MilliValue()`` gives them.
    """

    names: list[str]
    cpu: np.ndarray
    memory: np.ndarray
    timestamp: np.ndarray
    window: np.ndarray
    containers: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.names)

    @classmethod
    def from_arrays(cls, names: Sequence[str], cpu_milli: np.ndarray | Sequence[int],
                    memory_bytes: np.ndarray | Sequence[float] | None = None,
                    timestamp: float | np.ndarray = ZERO_TS, window: float | np.ndarray = 60.0) -> PodMetricsSet:
        """Fast path for replay: pod totals as arrays, one timestamp/window for all (or arrays)."""
        n = len(names)
        cpu = np.asarray(cpu_milli, dtype=np.int64)
        mem = (np.full(n, MISSING, np.int64) if memory_bytes is None
               else np.rint(np.asarray(memory_bytes, dtype=np.float64) * 1000).astype(np.int64))
        ts = np.broadcast_to(np.asarray(timestamp, np.float64), (n,))
        win = np.broadcast_to(np.asarray(window, np.float64), (n,))
        return cls(list(names), cpu, mem, ts, win)

    @classmethod
    def from_mapping(cls, usage: Mapping[str, Mapping[str, tuple[int | None, float | None]]],
                     timestamp: float | Mapping[str, float], window: float | Mapping[str, float] = 60.0
                     ) -> PodMetricsSet:
        """From ``{pod: {container: (cpu_milli, memory_bytes)}}``; None marks a missing resource."""
        names = list(usage)
        n = len(names)
        cpu = np.empty(n, np.int64)
        mem = np.empty(n, np.int64)
        ts = np.empty(n, np.float64)
        win = np.empty(n, np.float64)
        cont: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for i, pod in enumerate(names):
            cs = usage[pod]
            c_tot = m_tot = 0
            for cname, (c, m) in cs.items():
                if cname not in cont:
                    cont[cname] = (np.full(n, ABSENT, np.int64), np.full(n, ABSENT, np.int64))
                cc, mm = cont[cname]
                cv = MISSING if c is None else int(c)
                mv = MISSING if m is None else round(m * 1000)
                c_tot = MISSING if (c is None or c_tot == MISSING) else c_tot + cv
                m_tot = MISSING if (m is None or m_tot == MISSING) else m_tot + mv
                if not all(-_INT64_MAX <= v <= _INT64_MAX for v in (c_tot, m_tot, cv, mv)):
                    raise InputError(f"PodMetrics {pod}: container {cname}: usage out of range"
                                     " (over 2^63-1 thousandths, alone or added to the pod's)")
                cc[i], mm[i] = cv, mv
            if not cs:
                c_tot = m_tot = MISSING
            cpu[i], mem[i] = c_tot, m_tot
            ts[i] = timestamp[pod] if isinstance(timestamp, Mapping) else timestamp
            win[i] = window[pod] if isinstance(window, Mapping) else window
        return cls(names, cpu, mem, ts, win, cont)

    def column(self, resource: str, container: str | None) -> np.ndarray:
        """Per-pod usage (milli) of ``resource``, whole pod or one container; MISSING/ABSENT if none."""
        if container:
            pair = self.containers.get(container)
            if pair is None:
                return np.full(len(self.names), ABSENT, np.int64)
            return pair[0] if resource == "cpu" else pair[1] if resource == "memory" else np.full(
                len(self.names), MISSING, np.int64)
        if resource == "cpu":
            return self.cpu
        if resource == "memory":
            return self.memory
        return np.full(len(self.names), MISSING, np.int64)


def pod_metrics_from_v1beta1(items: Iterable[Mapping[str, Any]]) -> PodMetricsSet:
    """Build a :class:`PodMetricsSet` from metrics.k8s.io/v1beta1 PodMetrics objects.

    ``timestamp`` is RFC 3339 (an explicit zero time stays the zero time); ``window`` uses
    Kubernetes duration syntax (``1m0s``, ``30s``).
    """
    usage: dict[str, dict[str, tuple[int | None, float | None]]] = {}
    ts: dict[str, float] = {}
    win: dict[str, float] = {}
    for item in items:
        meta = item.get("metadata") or {}
        name = str(meta.get("name") or "")
        where = f"PodMetrics {meta.get('namespace', '')}/{name}".replace(" /", " ")
        t = item.get("timestamp")
        ts[name] = ZERO_TS if t is None else _time_field(t, f"{where}: timestamp")
        w = item.get("window")
        try:
            win[name] = 0.0 if w is None else (float(w) if isinstance(w, int | float) else parse_duration(str(w)))
        except ValueError:
            raise InputError(f"{where}: window: invalid duration {w!r}") from None
        cs: dict[str, tuple[int | None, float | None]] = {}
        for j, c in enumerate(item.get("containers") or []):
            u = c.get("usage") or {}
            cname = c.get("name", "")
            cpu = None if u.get("cpu") is None else _quantity_milli(u["cpu"], f"{where}: containers[{j}].usage.cpu")
            mem = None if u.get("memory") is None else _quantity_milli(
                u["memory"], f"{where}: containers[{j}].usage.memory") / 1000
            cs[cname] = (cpu, mem)
        usage[name] = cs
    return PodMetricsSet.from_mapping(usage, ts, win)


@dataclass(slots=True)
class PodValues:
    """Per-pod values of a custom (Pods) metric in milli-units, with each sample's time and window."""

    values: dict[str, int]
    timestamp: dict[str, float] = field(default_factory=dict)
    window: dict[str, float] = field(default_factory=dict)


class MetricsSource(Protocol):
    """What the decision core asks of the three metrics APIs, already fetched or computable offline.

    Each method raises :class:`MetricsError` with the metrics client's wording (for example
    ``"no metrics returned from resource metrics API"``) when the API fails or returns nothing.
    """

    def resource_metrics(self) -> PodMetricsSet: ...

    def pods_metric(self, name: str, selector: Mapping[str, Any] | None) -> PodValues: ...

    def object_metric(self, name: str, described: Mapping[str, Any], selector: Mapping[str, Any] | None
                      ) -> tuple[int, float]: ...

    def external_metric(self, name: str, selector: Mapping[str, Any] | None) -> list[int]: ...


@dataclass
class StaticMetrics:
    """A :class:`MetricsSource` over values already in hand (prefetched by the controller, or tests).

    ``objects`` is keyed by ``(described kind, described name, metric name)``; ``pods`` and
    ``external`` by metric name. ``errors`` maps an API (``"resource"``, ``"custom"``,
    ``"external"``) to the error text the API call returned.
    """

    resource: PodMetricsSet | None = None
    pods: dict[str, PodValues] = field(default_factory=dict)
    objects: dict[tuple[str, str, str], tuple[int, float]] = field(default_factory=dict)
    external: dict[str, list[int]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    def resource_metrics(self) -> PodMetricsSet:
        if "resource" in self.errors:
            raise MetricsError(f"unable to fetch metrics from resource metrics API: {self.errors['resource']}")
        if self.resource is None or len(self.resource) == 0:
            raise MetricsError("no metrics returned from resource metrics API")
        return self.resource

    def pods_metric(self, name: str, selector: Mapping[str, Any] | None) -> PodValues:
        if "custom" in self.errors:
            raise MetricsError(f"unable to fetch metrics from custom metrics API: {self.errors['custom']}")
        vals = self.pods.get(name)
        if vals is None or not vals.values:
            raise MetricsError("no metrics returned from custom metrics API")
        return vals

    def object_metric(self, name: str, described: Mapping[str, Any], selector: Mapping[str, Any] | None
                      ) -> tuple[int, float]:
        if "custom" in self.errors:
            raise MetricsError(f"unable to fetch metrics from custom metrics API: {self.errors['custom']}")
        key = (str(described.get("kind", "")), str(described.get("name", "")), name)
        if key not in self.objects:
            raise MetricsError("unable to fetch metrics from custom metrics API: the custom metrics API server "
                               "returned 0 results when we asked for exactly one")
        return self.objects[key]

    def external_metric(self, name: str, selector: Mapping[str, Any] | None) -> list[int]:
        if "external" in self.errors:
            raise MetricsError(f"unable to fetch metrics from external metrics API: {self.errors['external']}")
        vals = self.external.get(name)
        if not vals:
            raise MetricsError("no metrics returned from external metrics API")
        return list(vals)
