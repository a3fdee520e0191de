"""Recording: build a trace from the live metrics store and the cluster's objects.

:class:`TraceRecorder` is fed periodically with what a metrics pipeline already holds — the
:class:`~autoscaler.storage.window.WindowStore` (raw per-container samples), the Pods (lifecycle,
requests and limits, owners), the workloads (spec.replicas) and the HPAs (spec) — and keeps
everything it has seen, adding only samples newer than those it has, so polling at least once per
``--metric-history`` loses nothing. ``trace()`` returns the :class:`~sim.replay.trace.Trace`.

Samples are kept in one growable numpy buffer per container: measured 34 bytes per sample, where a
dict entry per sample took 179; a day of 15 s samples for 1,000 containers is about 200 MB (was 1 GB).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autoscaler.k8s.quantity import parse_quantity
from autoscaler.k8s.timefmt import parse_duration, parse_time
from sim.replay.trace import ContainerTrace, HPARecord, PodTrace, Trace, WorkloadTrace

WORKLOAD_KINDS = ("Deployment", "StatefulSet")


def _time(v: Any) -> float | None:
    if not v:
        return None
    try:
        return parse_time(str(v))
    except ValueError:
        return None


def _qty(v: Any, cpu: bool) -> float | None:
    if v is None:
        return None
    try:
        return float(parse_quantity(str(v)))
    except Exception:
        return None


class _Samples:
    """One container's samples, oldest first, in one growable (3, capacity) float64 buffer
    (timestamp, cumulative CPU, memory). Only samples newer than the last one kept are added (the
    store's ring is in time order), so polling the same ring twice stores nothing twice."""

    __slots__ = ("buf", "n")

    def __init__(self) -> None:
        self.buf = np.empty((3, 16))
        self.n = 0

    @property
    def last(self) -> float:
        return float(self.buf[0, self.n - 1]) if self.n else -np.inf

    def add(self, ts: np.ndarray, cpu: np.ndarray, mem: np.ndarray) -> None:
        ts = np.round(np.asarray(ts, np.float64), 3)
        new = ts > self.last
        m = int(np.count_nonzero(new))
        if not m:
            return
        if self.n + m > self.buf.shape[1]:  # double: appends stay amortized O(1), at most 2x the data
            grown = np.empty((3, max(2 * self.buf.shape[1], self.n + m)))
            grown[:, : self.n] = self.buf[:, : self.n]
            self.buf = grown
        self.buf[:, self.n : self.n + m] = (ts[new], np.asarray(cpu, np.float64)[new], np.asarray(mem, np.float64)[new])
        self.n += m

    def __len__(self) -> int:
        return self.n

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.buf[0, : self.n], self.buf[1, : self.n], self.buf[2, : self.n]


@dataclass
class _Pod:
    namespace: str
    name: str
    workload: tuple[str, str, str]  # namespace, kind, name
    created: float | None = None
    started: float | None = None
    ready: float | None = None
    deleted: float | None = None
    resources: dict[str, tuple[float | None, ...]] = field(default_factory=dict)
    #: raw store samples per container: timestamps, cumulative CPU core-seconds, memory bytes
    samples: dict[str, _Samples] = field(default_factory=dict)
    container_start: dict[str, float] = field(default_factory=dict)


def owner_workload(pod: dict[str, Any]) -> tuple[str, str] | None:
    """(kind, name) of the Deployment or StatefulSet owning ``pod`` (ReplicaSet names drop the hash)."""
    meta = pod.get("metadata") or {}
    for ref in meta.get("ownerReferences") or []:
        if not ref.get("controller"):
            continue
        kind, name = ref.get("kind"), str(ref.get("name") or "")
        if kind == "StatefulSet":
            return "StatefulSet", name
        if kind == "ReplicaSet":
            h = (meta.get("labels") or {}).get("pod-template-hash")
            if h and name.endswith("-" + h):
                return "Deployment", name[: -len(h) - 1]
            return "ReplicaSet", name
    return None


def _rates(samples: _Samples, start: float | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative CPU counters to usage rates (cores) between consecutive samples, as metrics-server
    computes them; the first sample is measured from the container's start when known. A counter
    that went down (restart) drops that sample."""
    ts, cpu, mem = samples.arrays()
    if not len(ts):
        return ts, ts, ts
    prev_t = np.concatenate([[start if start is not None else np.nan], ts[:-1]])
    prev_c = np.concatenate([[0.0], cpu[:-1]])
    dt = ts - prev_t
    dc = cpu - prev_c
    ok = np.isfinite(dt) & (dt > 0) & (dc >= 0)
    return ts[ok], dc[ok] / dt[ok], mem[ok]


class TraceRecorder:
    """Accumulates pods, samples, replica counts and HPA specs into a trace."""

    def __init__(self, resolution: float, namespace: str | None = None) -> None:
        self.resolution = resolution
        self.namespace = namespace
        self.pods: dict[tuple[str, str], _Pod] = {}
        self.replicas: dict[tuple[str, str, str], list[tuple[float, int]]] = {}
        self.hpas: dict[tuple[str, str, str], list[HPARecord]] = {}
        self.first: float | None = None
        self.last: float | None = None

    def _mark(self, now: float) -> None:
        self.first = now if self.first is None else min(self.first, now)
        self.last = now if self.last is None else max(self.last, now)

    def observe_pods(self, pods: list[dict[str, Any]], now: float) -> None:
        """Lifecycle and resources of the pods that belong to a Deployment or StatefulSet."""
        self._mark(now)
        seen = set()
        for pod in pods:
            meta = pod.get("metadata") or {}
            ns, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
            if self.namespace and ns != self.namespace:
                continue
            owner = owner_workload(pod)
            if owner is None or owner[0] not in WORKLOAD_KINDS:
                continue
            key = (ns, name)
            seen.add(key)
            p = self.pods.get(key)
            if p is None:
                p = self.pods[key] = _Pod(ns, name, (ns, owner[0], owner[1]))
            p.created = _time(meta.get("creationTimestamp")) or p.created
            st = pod.get("status") or {}
            p.started = _time(st.get("startTime")) or p.started
            for c in st.get("conditions") or []:
                if c.get("type") == "Ready" and c.get("status") == "True" and p.ready is None:
                    p.ready = _time(c.get("lastTransitionTime"))
            if meta.get("deletionTimestamp") and p.deleted is None:
                p.deleted = now
            for c in (pod.get("spec") or {}).get("containers") or []:
                r = c.get("resources") or {}
                req, lim = r.get("requests") or {}, r.get("limits") or {}
                p.resources[str(c.get("name"))] = (_qty(req.get("cpu"), True), _qty(lim.get("cpu"), True),
                                                   _qty(req.get("memory"), False), _qty(lim.get("memory"), False))
        for key, p in self.pods.items():
            if key not in seen and p.deleted is None and (not self.namespace or p.namespace == self.namespace):
                p.deleted = now

    def observe_usage(self, store: Any) -> None:
        """Copy new raw samples of the known pods from a WindowStore (``series(ns, pod)``)."""
        for (ns, name), p in self.pods.items():
            series = store.series(ns, name)
            for cname, s in (series.get("containers") or {}).items():
                if s.get("start_time"):
                    p.container_start[cname] = float(s["start_time"])
                p.samples.setdefault(cname, _Samples()).add(s["timestamp"], s["cpu"], s["memory"])

    def observe_pod_metrics(self, items: list[dict[str, Any]]) -> None:
        """Add the new samples of metrics.k8s.io PodMetrics objects: the values an HPA reads.

        A PodMetrics holds a rate (cores over ``window``), not the kubelet's cumulative counter; the
        samples are kept as a counter rebuilt from those rates so the trace gets back exactly the
        rates served: each new sample adds its rate times the time since the previous one, and the
        first is measured over its own window. Pods not yet seen by :meth:`observe_pods` wait for
        the next poll (a sample stays served until the next scrape replaces it)."""
        for item in items:
            meta = item.get("metadata") or {}
            p = self.pods.get((str(meta.get("namespace") or ""), str(meta.get("name") or "")))
            t = _time(item.get("timestamp"))
            if p is None or t is None:
                continue
            try:
                window = parse_duration(str(item.get("window") or ""))
            except ValueError:
                continue
            t = round(t, 3)
            for c in item.get("containers") or []:
                usage = c.get("usage") or {}
                cores, mem = _qty(usage.get("cpu"), True), _qty(usage.get("memory"), False)
                cname = str(c.get("name") or "")
                s = p.samples.setdefault(cname, _Samples())
                if cores is None or mem is None or t <= s.last:
                    continue
                if len(s):
                    counter = float(s.buf[1, s.n - 1]) + cores * (t - s.last)
                else:  # _rates measures the first sample from here: its window's start
                    p.container_start[cname] = t - window
                    counter = cores * window
                s.add(np.array([t]), np.array([counter]), np.array([mem]))

    @property
    def samples(self) -> int:
        """Container samples kept so far."""
        return sum(len(s) for p in self.pods.values() for s in p.samples.values())

    def observe_workloads(self, workloads: list[dict[str, Any]], hpas: list[dict[str, Any]], now: float) -> None:
        """spec.replicas of Deployments/StatefulSets and the spec of the HPAs that target them."""
        self._mark(now)
        for obj in workloads:
            meta = obj.get("metadata") or {}
            key = (str(meta.get("namespace") or ""), str(obj.get("kind") or ""), str(meta.get("name") or ""))
            if self.namespace and key[0] != self.namespace:
                continue
            reps = int((obj.get("spec") or {}).get("replicas") or 0)
            hist = self.replicas.setdefault(key, [])
            if not hist or hist[-1][1] != reps:
                hist.append((now, reps))
        for h in hpas:
            meta = h.get("metadata") or {}
            ref = (h.get("spec") or {}).get("scaleTargetRef") or {}
            key = (str(meta.get("namespace") or ""), str(ref.get("kind") or ""), str(ref.get("name") or ""))
            if self.namespace and key[0] != self.namespace:
                continue
            manifest = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                        "metadata": {"name": meta.get("name"), "namespace": meta.get("namespace")},
                        "spec": copy.deepcopy(h.get("spec") or {})}
            hist_h = self.hpas.setdefault(key, [])
            if not hist_h or hist_h[-1].manifest != manifest:
                hist_h.append(HPARecord(now, manifest))

    def trace(self, source: str = "recorded") -> Trace:
        wl: dict[tuple[str, str, str], WorkloadTrace] = {}
        times = []
        for p in self.pods.values():
            containers = []
            for cname, d in sorted(p.samples.items()):
                ts, cores, mem = _rates(d, p.container_start.get(cname))
                if not len(ts):
                    continue
                res = p.resources.get(cname, (None, None, None, None))
                containers.append(ContainerTrace(cname, ts, cores, mem, *res))
                times.append(ts)
            w = wl.get(p.workload)
            if w is None:
                w = wl[p.workload] = WorkloadTrace(p.workload[0], p.workload[2], p.workload[1])
            w.pods.append(PodTrace(p.name, containers, p.created, p.started, p.ready, p.deleted))
        for key in set(self.replicas) | set(self.hpas):
            if key not in wl and key in self.replicas:
                wl[key] = WorkloadTrace(key[0], key[2], key[1])
        for key, w in wl.items():
            hist = self.replicas.get(key, [])
            w.replicas_t = np.array([t for t, _ in hist], np.float64)
            w.replicas = np.array([v for _, v in hist], np.int64)
            w.hpas = list(self.hpas.get(key, []))
        start = min([float(t[0]) for t in times] + ([self.first] if self.first is not None else []))
        end = max([float(t[-1]) for t in times] + ([self.last] if self.last is not None else []))
        return Trace(sorted(wl.values(), key=lambda w: (w.namespace, w.name)), start, end, self.resolution, source)
