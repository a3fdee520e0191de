"""Scenario files: the nodes, workloads, load models and HPAs of an emulated cluster.

Example (all keys optional except where noted)::

    name: demo
    seed: 7
    timing: {schedulingDelay: 0s, startupDelay: 2s, readinessDelay: 5s, terminationDelay: 1s, jitter: 0.1}
    kubelet: {housekeepingInterval: 10s, faults: {worker-2: http500}}
    nodes:
      - {namePrefix: worker, count: 3, cpu: "4", memory: 16Gi, pods: 110}
      - {name: control-plane, role: control-plane, taints: [{key: node-role.kubernetes.io/control-plane, effect: NoSchedule}]}
      - {name: swappy, swap: 4Gi}       # swap capacity: the kubelet reports swap usage (default: no swap)
    workloads:
      - name: web                       # required
        kind: Deployment                # or StatefulSet
        replicas: 2
        image: nginx:1.27
        requests: {cpu: 200m, memory: 128Mi}
        limits: {cpu: "1", memory: 256Mi}
        load: {kind: diurnal, min: 0.2, max: 3, period: 24h, peak: 14h, noise: 0.1, swap: 32Mi}
    hpas:
      - {target: web, minReplicas: 1, maxReplicas: 10, cpuUtilization: 60}
    nodeEvents:                         # node failures, relative to the cluster's start
      - {at: 10m, fail: worker-2}       # its kubelet stops (no heartbeats, port refuses connections)
      - {at: 20m, recover: worker-2}    # and comes back
    externalMetrics:                    # served as external.metrics.k8s.io (real control plane)
      - {name: queue_length, labels: {queue: orders}, points: [[0, 30], [40s, 0], [110s, 50]]}
    authorization: {default: allow, rules: []}

Load kinds: ``constant`` (cores), ``diurnal`` (min, max, period, peak), ``step`` (base, steps:
[{at, cores}]), ``spike`` (base, peak, at, duration, every), ``series`` (points: [[t, cores]...] or
file: a CSV of ``seconds,cores`` relative to the scenario file; interpolation linear|step; repeat).
Common load keys: noise, noiseSeed, startupCores, memory: {base, perCore}, swap (bytes each pod
swaps, split over its containers like memory; reported only on nodes with ``swap``; default 0).
Cores may be numbers or
CPU quantities ("500m"); times are seconds or Go durations ("5m").

Errors name the file and the field, e.g.
``scenario.yaml: workloads[1].load.kind: unsupported value 'sine'; expected one of constant, diurnal, step, spike, series``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from autoscaler.k8s.quantity import QuantityError, parse_quantity
from autoscaler.k8s.timefmt import parse_duration
from sim.external_series import ExternalSeries
from sim.kubelet.pods import PodTiming
from sim.loadmodel import KINDS, Constant, Diurnal, LoadModel, Series, Spike, Step
from sim.nodes import NodeSpec


class ScenarioError(ValueError):
    """A bad scenario file; the message names the file and the field."""


@dataclass(frozen=True)
class NodeEvent:
    """At ``at`` seconds after the cluster starts, the node's kubelet stops (``fail``) or comes
    back (``recover``)."""

    at: float
    action: str  # fail | recover
    node: str


@dataclass
class WorkloadSpec:
    name: str
    namespace: str = "default"
    kind: str = "Deployment"
    replicas: int = 1
    containers: list[dict] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    node_selector: dict[str, str] = field(default_factory=dict)
    min_ready_seconds: int = 0
    termination_grace: int = 30
    load: LoadModel = field(default_factory=Constant)
    timing: PodTiming | None = None

    def manifest(self) -> dict:
        """The apps/v1 object for this workload."""
        labels = self.labels or {"app": self.name}
        pod_spec: dict[str, Any] = {"containers": [dict(c) for c in self.containers],
                                    "terminationGracePeriodSeconds": self.termination_grace}
        if self.node_selector:
            pod_spec["nodeSelector"] = dict(self.node_selector)
        spec: dict[str, Any] = {
            "replicas": self.replicas,
            "selector": {"matchLabels": dict(labels)},
            "template": {"metadata": {"labels": dict(labels)}, "spec": pod_spec},
        }
        if self.min_ready_seconds:
            spec["minReadySeconds"] = self.min_ready_seconds
        if self.kind == "StatefulSet":
            spec["serviceName"] = self.name
        return {"apiVersion": "apps/v1", "kind": self.kind,
                "metadata": {"name": self.name, "namespace": self.namespace, "labels": dict(labels)}, "spec": spec}


@dataclass
class Scenario:
    name: str = "default"
    seed: int = 0
    nodes: list[NodeSpec] = field(default_factory=list)
    workloads: list[WorkloadSpec] = field(default_factory=list)
    hpas: list[dict] = field(default_factory=list)
    timing: PodTiming = field(default_factory=PodTiming)
    scheduling_delay: float = 0.0
    housekeeping_interval: float = 10.0
    faults: dict[str, str] = field(default_factory=dict)
    authorization: Any = None
    events: bool | None = None
    node_events: list[NodeEvent] = field(default_factory=list)
    #: series served by the external metrics API (sim.external_metrics)
    external_metrics: list[ExternalSeries] = field(default_factory=list)
    source: str = "<scenario>"

    @classmethod
    def default(cls, nodes: int = 3, pods_per_node: int = 2) -> Scenario:
        """``nodes`` workers and one two-container Deployment "app" of ``nodes × pods_per_node``
        replicas, sized to fit and spread evenly."""
        if nodes < 1 or pods_per_node < 0:
            raise ScenarioError("--nodes must be >= 1 and --pods-per-node >= 0")
        node_specs = [NodeSpec(f"worker-{i + 1}", cpu="32", memory="128Gi", pods=max(110, pods_per_node + 10))
                      for i in range(nodes)]
        containers = [
            {"name": "app", "image": "registry.k8s.io/e2e-test-images/agnhost:2.53",
             "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "256Mi"}}},
            {"name": "sidecar", "image": "registry.k8s.io/pause:3.10",
             "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}},
        ]
        replicas = nodes * pods_per_node
        workloads = []
        if replicas:
            workloads.append(WorkloadSpec("app", containers=containers, replicas=replicas,
                                          load=Constant(cores=0.05 * replicas, noise=0.1)))
        return cls(name=f"default-{nodes}x{pods_per_node}", nodes=node_specs, workloads=workloads)

    def workload(self, namespace: str, name: str) -> WorkloadSpec | None:
        return next((w for w in self.workloads if w.namespace == namespace and w.name == name), None)


# --- parsing ----------------------------------------------------------------------------------


class _P:
    """Typed access to one mapping of the scenario with error messages naming the field."""

    def __init__(self, source: str, path: str, data: Any) -> None:
        self.source, self.path, self.data = source, path, data

    def err(self, key: str | None, message: str) -> ScenarioError:
        where = self.at(key) if key is not None else self.path
        return ScenarioError(f"{self.source}: {where or '<top level>'}: {message}")

    def at(self, key: str | int) -> str:
        if isinstance(key, int):
            return f"{self.path}[{key}]"
        return f"{self.path}.{key}" if self.path else key

    def sub(self, key: str, default: Any = None) -> _P:
        return _P(self.source, self.at(key), self.data.get(key, default) if isinstance(self.data, dict) else default)

    def mapping(self) -> _P:
        if self.data is None:
            self.data = {}
        if not isinstance(self.data, dict):
            raise self.err(None, f"expected a mapping, got {type(self.data).__name__}")
        return self

    def items(self) -> list[_P]:
        if self.data is None:
            return []
        if not isinstance(self.data, list):
            raise self.err(None, f"expected a list, got {type(self.data).__name__}")
        return [_P(self.source, self.at(i), v) for i, v in enumerate(self.data)]

    def known(self, *keys: str) -> None:
        for k in self.data:
            if k not in keys:
                raise self.err(str(k), f"unknown field; expected one of {', '.join(keys)}")

    def str(self, key: str, default: str | None = None, *, required: bool = False) -> str:
        v = self.data.get(key)
        if v is None:
            if required:
                raise self.err(key, "required field is missing")
            return default if default is not None else ""
        if not isinstance(v, str | int | float) or isinstance(v, bool):
            raise self.err(key, f"expected a string, got {type(v).__name__}")
        return str(v)

    def choice(self, key: str, options: tuple[str, ...], default: str) -> str:
        v = self.str(key, default)
        if v not in options:
            raise self.err(key, f"unsupported value {v!r}; expected one of {', '.join(options)}")
        return v

    def int(self, key: str, default: int, *, minimum: int | None = 0) -> int:
        v = self.data.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.err(key, f"expected an integer, got {v!r}")
        if minimum is not None and v < minimum:
            raise self.err(key, f"must be >= {minimum}, got {v}")
        return v

    def float(self, key: str, default: float, *, minimum: float | None = 0.0) -> float:
        v = self.data.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise self.err(key, f"expected a number, got {v!r}")
        if minimum is not None and v < minimum:
            raise self.err(key, f"must be >= {minimum}, got {v}")
        return float(v)

    def cores(self, key: str, default: float | None = None) -> float:
        v = self.data.get(key, default)
        if v is None:
            raise self.err(key, "required field is missing")
        try:
            out = float(parse_quantity(v)) if not isinstance(v, bool) else None
        except QuantityError:
            out = None
        if out is None or out < 0:
            raise self.err(key, f"expected cores as a non-negative number or CPU quantity, got {v!r}")
        return out

    def quantity(self, key: str, default: str | None = None) -> float:
        v = self.data.get(key, default)
        try:
            return float(parse_quantity(v))
        except (QuantityError, TypeError):
            raise self.err(key, f"invalid quantity {v!r}") from None

    def duration(self, key: str, default: float) -> float:
        v = self.data.get(key, default)
        if isinstance(v, int | float) and not isinstance(v, bool):
            out = float(v)
        else:
            try:
                out = parse_duration(str(v))
            except ValueError:
                raise self.err(key, f"invalid duration {v!r} (use seconds or Go syntax like 30s, 5m, 1h)") from None
        if out < 0:
            raise self.err(key, f"must not be negative, got {v!r}")
        return out

    def str_map(self, key: str) -> dict[str, str]:
        v = self.data.get(key) or {}
        if not isinstance(v, dict):
            raise self.err(key, f"expected a mapping of strings, got {type(v).__name__}")
        return {str(k): "" if val is None else str(val) for k, val in v.items()}


def _resources(p: _P, key: str) -> dict[str, str]:
    res = p.str_map(key)
    for name, q in res.items():
        try:
            parse_quantity(q)
        except QuantityError:
            raise p.err(f"{key}.{name}", f"invalid quantity {q!r}") from None
    return res


def _timing(p: _P, base: PodTiming) -> PodTiming:
    p.mapping()
    return PodTiming(
        startup=p.duration("startupDelay", base.startup),
        readiness=p.duration("readinessDelay", base.readiness),
        termination=p.duration("terminationDelay", base.termination),
        jitter=p.float("jitter", base.jitter),
    )


def _load(p: _P, base_dir: Path, seed: int) -> LoadModel:
    p.mapping()
    kind = p.choice("kind", KINDS, "constant")
    common: dict[str, Any] = {
        "noise": p.float("noise", 0.0),
        "seed": p.int("noiseSeed", seed, minimum=None),
        "startup_cores": p.cores("startupCores", 0.01),
        "noise_period": p.duration("noisePeriod", 15.0) or 15.0,
    }
    mem = p.sub("memory").mapping()
    mem.known("base", "perCore")
    common["memory_base"] = mem.quantity("base", "64Mi")
    common["memory_per_core"] = mem.quantity("perCore", "0")
    common["swap_bytes"] = p.quantity("swap", "0")
    if common["swap_bytes"] < 0:
        raise p.err("swap", f"must not be negative, got {p.data.get('swap')!r}")
    keys = {"constant": ("cores",), "diurnal": ("min", "max", "period", "peak"), "step": ("base", "steps"),
            "spike": ("base", "peak", "at", "duration", "every"),
            "series": ("points", "file", "interpolation", "repeat")}[kind]
    p.known("kind", "noise", "noiseSeed", "noisePeriod", "startupCores", "memory", "swap", *keys)
    if kind == "constant":
        return Constant(cores=p.cores("cores", 0.1), **common)
    if kind == "diurnal":
        lo, hi = p.cores("min", 0.1), p.cores("max", 1.0)
        if hi < lo:
            raise p.err("max", f"must be >= min ({lo}), got {hi}")
        period = p.duration("period", 86400.0)
        if period <= 0:
            raise p.err("period", "must be positive")
        return Diurnal(min=lo, max=hi, period=period, peak=p.duration("peak", 0.0), **common)
    if kind == "step":
        steps = []
        for s in p.sub("steps").items():
            s.mapping()
            s.known("at", "cores")
            steps.append((s.duration("at", 0.0), s.cores("cores")))
        return Step(base=p.cores("base", 0.1), steps=tuple(steps), **common)
    if kind == "spike":
        return Spike(base=p.cores("base", 0.1), peak=p.cores("peak", 1.0), at=p.duration("at", 60.0),
                     duration=p.duration("duration", 60.0), every=p.duration("every", 0.0), **common)
    interp = p.choice("interpolation", ("linear", "step"), "linear")
    repeat = p.data.get("repeat", False)
    if not isinstance(repeat, bool):
        raise p.err("repeat", f"expected true or false, got {repeat!r}")
    times: list[float] = []
    values: list[float] = []
    if p.data.get("file") is not None:
        path = base_dir / p.str("file")
        try:
            with path.open(newline="") as fh:
                for n, row in enumerate(csv.reader(fh), 1):
                    if not row or row[0].startswith("#"):
                        continue
                    try:
                        t, v = float(row[0]), float(parse_quantity(row[1].strip()))
                    except (ValueError, IndexError, QuantityError):
                        if n == 1:
                            continue  # header
                        raise p.err("file", f"{path}:{n}: expected 'seconds,cores'") from None
                    times.append(t)
                    values.append(v)
        except OSError as exc:
            raise p.err("file", f"cannot read {path}: {exc.strerror}") from None
    else:
        for i, pt in enumerate(p.sub("points").items()):
            if not isinstance(pt.data, list) or len(pt.data) != 2:
                raise pt.err(None, "expected [seconds, cores]")
            pair = _P(p.source, pt.path, {"t": pt.data[0], "c": pt.data[1]})
            t = pair.duration("t", 0.0)
            if times and t < times[-1]:
                raise p.err(f"points[{i}]", "times must not decrease")
            times.append(t)
            values.append(pair.cores("c"))
    if not times:
        raise p.err("points", "a series needs at least one point (points or file)")
    return Series(times=times, values=values, interpolation=interp, repeat=repeat, **common)


def _node_specs(p: _P) -> list[NodeSpec]:
    out: list[NodeSpec] = []
    for item in p.items():
        item.mapping()
        item.known("name", "namePrefix", "count", "cpu", "memory", "pods", "role", "labels", "annotations",
                   "taints", "reservedCpu", "reservedMemory", "fault", "swap")
        count = item.int("count", 1, minimum=1)
        name = item.str("name")
        prefix = item.str("namePrefix")
        if name and count > 1:
            raise item.err("count", "a node with a fixed name cannot have count > 1; use namePrefix")
        if not name and not prefix:
            prefix = "worker"
        cpu = str(item.data.get("cpu", "4"))
        item.cores("cpu", 4)
        memory = str(item.data.get("memory", "16Gi"))
        item.quantity("memory", "16Gi")
        swap = str(item.data.get("swap") or "")
        if swap and item.quantity("swap") <= 0:
            raise item.err("swap", f"swap capacity must be positive, got {swap!r}")
        taints = item.data.get("taints") or []
        if not isinstance(taints, list) or not all(isinstance(t, dict) and t.get("key") for t in taints):
            raise item.err("taints", "expected a list of {key, value, effect}")
        for t in taints:
            t.setdefault("effect", "NoSchedule")
        for i in range(count):
            out.append(NodeSpec(
                name=name or f"{prefix}-{len([n for n in out if n.name.startswith(prefix + '-')]) + 1}",
                cpu=cpu, memory=memory, pods=item.int("pods", 110, minimum=1), role=item.str("role", "worker"),
                labels=item.str_map("labels"), annotations=item.str_map("annotations"), taints=taints,
                reserved_cpu=str(item.data.get("reservedCpu", "100m")),
                reserved_memory=str(item.data.get("reservedMemory", "256Mi")),
                fault=item.str("fault", "none"), swap=swap,
            ))
            del i
    names = [n.name for n in out]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise p.err(None, f"duplicate node names: {', '.join(sorted(dup))}")
    return out


def _workloads(p: _P, base_dir: Path, seed: int, timing: PodTiming) -> list[WorkloadSpec]:
    out: list[WorkloadSpec] = []
    for idx, item in enumerate(p.items()):
        item.mapping()
        item.known("name", "namespace", "kind", "replicas", "image", "requests", "limits", "containers", "labels",
                   "nodeSelector", "minReadySeconds", "terminationGracePeriodSeconds", "load", "timing")
        name = item.str("name", required=True)
        containers: list[dict] = []
        if item.data.get("containers") is not None:
            for c in item.sub("containers").items():
                c.mapping()
                c.known("name", "image", "requests", "limits")
                res: dict[str, Any] = {}
                if c.data.get("requests"):
                    res["requests"] = _resources(c, "requests")
                if c.data.get("limits"):
                    res["limits"] = _resources(c, "limits")
                containers.append({"name": c.str("name", required=True),
                                   "image": c.str("image", "registry.k8s.io/e2e-test-images/agnhost:2.53"),
                                   "resources": res})
            if not containers:
                raise item.err("containers", "at least one container is required")
        else:
            res = {}
            if item.data.get("requests"):
                res["requests"] = _resources(item, "requests")
            if item.data.get("limits"):
                res["limits"] = _resources(item, "limits")
            containers.append({"name": name, "image": item.str("image", "registry.k8s.io/e2e-test-images/agnhost:2.53"),
                               "resources": res})
        out.append(WorkloadSpec(
            name=name,
            namespace=item.str("namespace", "default"),
            kind=item.choice("kind", ("Deployment", "StatefulSet"), "Deployment"),
            replicas=item.int("replicas", 1),
            containers=containers,
            labels=item.str_map("labels"),
            node_selector=item.str_map("nodeSelector"),
            min_ready_seconds=item.int("minReadySeconds", 0),
            termination_grace=item.int("terminationGracePeriodSeconds", 30),
            load=_load(item.sub("load"), base_dir, seed + idx),
            timing=_timing(item.sub("timing"), timing) if item.data.get("timing") is not None else None,
        ))
    keys = [(w.namespace, w.name) for w in out]
    for i, k in enumerate(keys):
        if keys.index(k) != i:
            raise p.err(f"[{i}].name", f"duplicate workload {k[0]}/{k[1]}")
    return out


def _hpas(p: _P, workloads: list[WorkloadSpec]) -> list[dict]:
    out = []
    for item in p.items():
        item.mapping()
        item.known("name", "namespace", "target", "targetKind", "minReplicas", "maxReplicas", "cpuUtilization",
                   "memoryUtilization", "metrics", "behavior")
        target = item.str("target", required=True)
        ns = item.str("namespace", "default")
        wl = next((w for w in workloads if w.name == target and w.namespace == ns), None)
        kind = item.str("targetKind", wl.kind if wl else "Deployment")
        max_r = item.int("maxReplicas", 0, minimum=1) if "maxReplicas" in item.data else None
        if max_r is None:
            raise item.err("maxReplicas", "required field is missing")
        min_r = item.int("minReplicas", 1, minimum=0)
        metrics = item.data.get("metrics")
        if metrics is not None and not isinstance(metrics, list):
            raise item.err("metrics", "expected a list of autoscaling/v2 MetricSpec")
        metrics = list(metrics or [])
        for res_name, key in (("cpu", "cpuUtilization"), ("memory", "memoryUtilization")):
            if key in item.data:
                metrics.append({"type": "Resource", "resource": {"name": res_name, "target": {
                    "type": "Utilization", "averageUtilization": item.int(key, 0, minimum=1)}}})
        spec: dict[str, Any] = {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": kind, "name": target},
            "minReplicas": min_r, "maxReplicas": max_r,
        }
        if metrics:
            spec["metrics"] = metrics
        if item.data.get("behavior") is not None:
            if not isinstance(item.data["behavior"], dict):
                raise item.err("behavior", "expected an autoscaling/v2 HorizontalPodAutoscalerBehavior mapping")
            spec["behavior"] = item.data["behavior"]
        out.append({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                    "metadata": {"name": item.str("name", target), "namespace": ns}, "spec": spec})
    return out


def _node_events(p: _P, nodes: list[NodeSpec]) -> list[NodeEvent]:
    names = [n.name for n in nodes]
    out: list[tuple[float, int, NodeEvent, _P]] = []
    for i, item in enumerate(p.items()):
        item.mapping()
        item.known("at", "fail", "recover")
        if "at" not in item.data:
            raise item.err("at", "required field is missing")
        at = item.duration("at", 0.0)
        actions = [a for a in ("fail", "recover") if a in item.data]
        if len(actions) != 1:
            raise item.err(None, "expected exactly one of fail, recover (the node name)")
        action = actions[0]
        node = item.str(action, required=True)
        if node not in names:
            raise item.err(action, f"no such node {node!r}; nodes are {', '.join(names)}")
        out.append((at, i, NodeEvent(at, action, node), item))
    out.sort(key=lambda e: (e[0], e[1]))
    failed: set[str] = set()
    for _, _, ev, item in out:
        if ev.action == "fail" and ev.node in failed:
            raise item.err("fail", f"node {ev.node} has already failed at {item.data['at']} (recover it first)")
        if ev.action == "recover" and ev.node not in failed:
            raise item.err("recover", f"node {ev.node} has not failed at {item.data['at']} (no earlier fail event)")
        if ev.action == "fail":
            failed.add(ev.node)
        else:
            failed.discard(ev.node)
    return [ev for _, _, ev, _ in out]


def _external_metrics(p: _P) -> list[ExternalSeries]:
    out: list[ExternalSeries] = []
    for item in p.items():
        item.mapping()
        item.known("name", "namespace", "labels", "interpolation", "points")
        times: list[float] = []
        values: list[int] = []
        for i, pt in enumerate(item.sub("points").items()):
            if not isinstance(pt.data, list) or len(pt.data) != 2:
                raise pt.err(None, "expected [time, value]")
            pair = _P(p.source, pt.path, {"t": pt.data[0], "v": pt.data[1]})
            t = pair.duration("t", 0.0)
            if times and t < times[-1]:
                raise item.err(f"points[{i}]", "times must not decrease")
            times.append(t)
            values.append(round(pair.quantity("v") * 1000))
        if not times:
            raise item.err("points", "a series needs at least one point")
        series = ExternalSeries(item.str("name", required=True), item.str("namespace", "default"),
                                item.str_map("labels"), times, values,
                                item.choice("interpolation", ("step", "linear"), "step"))
        if any(s.name == series.name and s.namespace == series.namespace and s.labels == series.labels for s in out):
            raise item.err("labels", f"duplicate series {series.namespace}/{series.name} {series.labels}")
        out.append(series)
    return out


def parse_scenario(data: Any, source: str = "<scenario>", base_dir: Path | None = None) -> Scenario:
    """Build a Scenario from parsed YAML, raising ScenarioError naming the field on bad input."""
    p = _P(source, "", data).mapping()
    p.known("name", "seed", "timing", "kubelet", "nodes", "workloads", "hpas", "authorization", "events",
            "nodeEvents", "externalMetrics")
    seed = p.int("seed", 0, minimum=None)
    t = p.sub("timing").mapping()
    t.known("schedulingDelay", "startupDelay", "readinessDelay", "terminationDelay", "jitter")
    timing = _timing(t, PodTiming())
    kub = p.sub("kubelet").mapping()
    kub.known("housekeepingInterval", "faults")
    faults = kub.str_map("faults")
    from sim.kubelet.server import FAULT_KINDS

    for node, f in faults.items():
        if f.partition(":")[0] not in FAULT_KINDS:
            raise kub.err(f"faults.{node}", f"unsupported value {f!r}; expected one of {', '.join(FAULT_KINDS)}")
    nodes = _node_specs(p.sub("nodes"))
    if not nodes:
        nodes = [NodeSpec(f"worker-{i}") for i in (1, 2, 3)]
    for n in nodes:
        if n.fault != "none":
            if n.fault.partition(":")[0] not in FAULT_KINDS:
                raise p.err("nodes", f"node {n.name}: unsupported fault {n.fault!r}; expected one of "
                                     f"{', '.join(FAULT_KINDS)}")
            faults.setdefault(n.name, n.fault)
    workloads = _workloads(p.sub("workloads"), base_dir or Path("."), seed, timing)
    events = p.data.get("events")
    if events is not None and not isinstance(events, bool):
        raise p.err("events", f"expected true or false, got {events!r}")
    return Scenario(
        name=p.str("name", "scenario"),
        seed=seed,
        nodes=nodes,
        workloads=workloads,
        hpas=_hpas(p.sub("hpas"), workloads),
        timing=timing,
        scheduling_delay=t.duration("schedulingDelay", 0.0),
        housekeeping_interval=kub.duration("housekeepingInterval", 10.0),
        faults=faults,
        authorization=p.data.get("authorization"),
        events=events,
        node_events=_node_events(p.sub("nodeEvents"), nodes),
        external_metrics=_external_metrics(p.sub("externalMetrics")),
        source=source,
    )


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario YAML file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ScenarioError(f"{path.name}: invalid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    return parse_scenario(data, path.name, path.parent)
