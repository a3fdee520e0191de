"""A trace as the history Prometheus would hold of it: cAdvisor and kube-state-metrics series in
OpenMetrics text, for ``promtool tsdb create-blocks-from openmetrics`` (a TSDB backfilled with a
week of load in seconds, for the import tests and benchmark).

Per container, ``container_cpu_usage_seconds_total`` is the counter whose increase between
consecutive samples is exactly the trace's usage (in integer nanoseconds, as the kubelet exposes
it), with one extra sample a resolution before the first (the counter's previous scrape), and
``container_memory_working_set_bytes`` the trace's working set, both with cAdvisor's labels. Per
pod every ``ksm_interval`` while it exists: kube-state-metrics v2's ``kube_pod_owner`` (a
ReplicaSet named ``<deployment>-<hash>`` for Deployments), ``kube_replicaset_owner``, requests and
limits, ``kube_pod_created``, ``kube_pod_start_time``, ``kube_pod_status_ready`` (condition
true/false/unknown) and ``kube_pod_status_ready_time``; per workload ``kube_deployment_spec_replicas``
(or ``kube_statefulset_replicas``) and the HPA's ``kube_horizontalpodautoscaler_*`` spec series.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sim.replay.trace import Trace, WorkloadTrace

TEMPLATE_HASH = "5d8f7c9b4"


def _labels(**kv: str) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in kv.items()) + "}"


_Series = tuple[str, np.ndarray, np.ndarray, str]


def _series(name: str, labels: str, t: np.ndarray, v: np.ndarray, fmt: str = "{:.17g}") -> _Series:
    return f"{name}{labels} ", np.asarray(t, np.float64), np.asarray(v, np.float64), fmt


def _grid(first: float, last: float, every: float) -> np.ndarray:
    k0, k1 = np.ceil(first / every), np.floor(last / every)
    return np.arange(k0, k1 + 1) * every


def _uid(ns: str, pod: str) -> str:
    import uuid

    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{ns}/{pod}"))


def pod_name(w: WorkloadTrace, j: int) -> str:
    """The name the workload's controller gives its ``j``-th pod."""
    if w.kind == "StatefulSet":
        return f"{w.name}-{j}"
    return f"{w.name}-{TEMPLATE_HASH}-{j:05x}"


def write_openmetrics(trace: Trace, directory: Path, *, ksm_interval: float = 30.0, node: str = "worker-0",
                      window: float = 7200.0) -> tuple[list[Path], int]:
    """Write ``trace``'s history as one OpenMetrics file per ``window`` (aligned like TSDB blocks)
    into ``directory``; returns the files and the number of samples. promtool reads its whole
    input once per 2-hour block it writes, so one file per block keeps a week's backfill linear."""
    families: dict[str, list[_Series]] = {}

    def add(name: str, it: _Series) -> None:
        families.setdefault(name, []).append(it)

    end = trace.end
    n = 0
    for w in trace.workloads:
        ns = w.namespace
        owner_kind, owner_name = ("StatefulSet", w.name) if w.kind == "StatefulSet" else (
            "ReplicaSet", f"{w.name}-{TEMPLATE_HASH}")
        alive_from, alive_to = [], []
        for p in w.pods:
            uid = _uid(ns, p.name)
            first = min(float(c.t[0]) for c in p.containers) - trace.resolution
            last = p.deleted if p.deleted is not None else end
            alive_from.append(first)
            alive_to.append(last)
            for c in p.containers:
                cl = _labels(container=c.name, cpu="total", id=f"/kubepods/burstable/pod{uid}/{c.name}",
                             image="registry.k8s.io/app:1", name=f"k8s_{c.name}_{p.name}", namespace=ns, pod=p.name)
                t = np.concatenate([[float(c.t[0]) - trace.resolution], c.t])
                dt = np.diff(t)
                counter = np.concatenate([[0.0], np.cumsum(np.rint(c.cpu * dt * 1e9))]) / 1e9
                add("container_cpu_usage_seconds_total", _series("container_cpu_usage_seconds_total", cl, t, counter,
                                                                 "{:.9f}"))
                mem = np.concatenate([[c.memory[0]], c.memory])
                add("container_memory_working_set_bytes", _series("container_memory_working_set_bytes", cl, t, mem,
                                                                  "{:.0f}"))
                n += 2 * len(t)
                for metric, cpu, memv in (("kube_pod_container_resource_requests", c.cpu_request, c.memory_request),
                                          ("kube_pod_container_resource_limits", c.cpu_limit, c.memory_limit)):
                    g = _grid(first, last, ksm_interval)
                    for res, unit, v in (("cpu", "core", cpu), ("memory", "byte", memv)):
                        if v is not None:
                            lab = _labels(namespace=ns, pod=p.name, uid=uid, container=c.name, node=node,
                                          resource=res, unit=unit)
                            add(metric, _series(metric, lab, g, np.full(len(g), float(v))))
                            n += len(g)
            g = _grid(first, last, ksm_interval)
            pl = dict(namespace=ns, pod=p.name, uid=uid)
            add("kube_pod_owner", _series("kube_pod_owner", _labels(**pl, owner_kind=owner_kind, owner_name=owner_name,
                                                                    owner_is_controller="true"), g, np.ones(len(g))))
            for metric, v in (("kube_pod_created", p.created), ("kube_pod_start_time", p.started)):
                if v is not None:
                    add(metric, _series(metric, _labels(**pl), g, np.full(len(g), float(int(v)))))
            ready = np.zeros(len(g)) if p.ready is None else (g >= p.ready).astype(np.float64)
            for cond, v in (("true", ready), ("false", 1.0 - ready), ("unknown", np.zeros(len(g)))):
                add("kube_pod_status_ready", _series("kube_pod_status_ready", _labels(**pl, condition=cond), g, v))
            if p.ready is not None:
                gr = g[g >= p.ready]
                add("kube_pod_status_ready_time", _series("kube_pod_status_ready_time", _labels(**pl), gr,
                                                          np.full(len(gr), float(int(p.ready)))))
            n += 6 * len(g)
        g = _grid(trace.start - trace.resolution, end, ksm_interval)
        if owner_kind == "ReplicaSet" and alive_from:
            rg = _grid(min(alive_from), max(alive_to), ksm_interval)
            add("kube_replicaset_owner", _series("kube_replicaset_owner", _labels(
                namespace=ns, replicaset=owner_name, owner_kind="Deployment", owner_name=w.name,
                owner_is_controller="true"), rg, np.ones(len(rg))))
        if len(w.replicas):
            idx = np.clip(np.searchsorted(w.replicas_t, g, side="right") - 1, 0, len(w.replicas) - 1)
            metric, lab = (("kube_statefulset_replicas", _labels(namespace=ns, statefulset=w.name))
                           if w.kind == "StatefulSet" else
                           ("kube_deployment_spec_replicas", _labels(namespace=ns, deployment=w.name)))
            add(metric, _series(metric, lab, g, w.replicas[idx].astype(np.float64)))
        for h in w.hpas[:1]:
            meta, spec = h.manifest.get("metadata") or {}, h.manifest.get("spec") or {}
            hl = dict(namespace=ns, horizontalpodautoscaler=str(meta.get("name") or w.name))
            ref = spec.get("scaleTargetRef") or {}
            add("kube_horizontalpodautoscaler_info", _series("kube_horizontalpodautoscaler_info", _labels(
                **hl, scaletargetref_api_version=str(ref.get("apiVersion") or "apps/v1"),
                scaletargetref_kind=str(ref.get("kind") or w.kind), scaletargetref_name=str(ref.get("name") or w.name)),
                g, np.ones(len(g))))
            for metric, v in (("kube_horizontalpodautoscaler_spec_min_replicas", spec.get("minReplicas", 1)),
                              ("kube_horizontalpodautoscaler_spec_max_replicas", spec.get("maxReplicas"))):
                add(metric, _series(metric, _labels(**hl), g, np.full(len(g), float(v))))
            for m in spec.get("metrics") or []:
                src = m.get("resource") or m.get("containerResource") or {}
                target = src.get("target") or {}
                if "averageUtilization" in target:
                    add("kube_horizontalpodautoscaler_spec_target_metric", _series(
                        "kube_horizontalpodautoscaler_spec_target_metric",
                        _labels(**hl, metric_name=str(src.get("name")), metric_target_type="utilization",
                                container=str(src.get("container") or "")),
                        g, np.full(len(g), float(target["averageUtilization"]))))
    directory.mkdir(parents=True, exist_ok=True)
    t_all = np.concatenate([x[1] for fam in families.values() for x in fam])
    w0, w1 = int(np.floor(t_all.min() / window)), int(np.floor(t_all.max() / window))
    files = []
    for wi in range(w0, w1 + 1):
        lo, hi = wi * window, (wi + 1) * window
        lines: list[str] = []
        for name in sorted(families):
            kind = "counter" if name.endswith("_total") else "gauge"
            lines.append(f"# TYPE {name[: -len('_total')] if kind == 'counter' else name} {kind}\n")
            for head, t, v, fmt in families[name]:
                i0, i1 = np.searchsorted(t, lo), np.searchsorted(t, hi)
                lines.extend(f"{head}{fmt.format(vi)} {ti:.3f}\n"
                             for ti, vi in zip(t[i0:i1].tolist(), v[i0:i1].tolist(), strict=True))
        lines.append("# EOF\n")
        f = directory / f"history-{wi}.om"
        f.write_text("".join(lines))
        files.append(f)
    return files, n


def rename_pods(trace: Trace) -> Trace:
    """The trace with each pod named as its controller would name it (synthetic traces number them)."""
    for w in trace.workloads:
        for j, p in enumerate(w.pods):
            p.name = pod_name(w, j)
    return trace
