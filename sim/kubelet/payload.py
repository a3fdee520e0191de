"""Kubelet response bodies: ``/metrics/resource`` (Prometheus text 0.0.4, families in alphabetical
order, series sorted by label values, ms timestamps) and ``/stats/summary`` (stats/v1alpha1 JSON),
shaped as a 1.36 kubelet writes them; on nodes with swap, the swap series and ``swap`` stats a
1.37 kubelet adds (``container_swap_usage_bytes``, ``node_swap_usage_bytes``,
``pod_swap_usage_bytes``; ``swap.swapUsageBytes``), and none of them elsewhere."""

from __future__ import annotations

import functools
import math

import numpy as np
import orjson

from autoscaler.k8s.timefmt import format_time
from sim.kubelet.gofmt import go_float
from sim.kubelet.stats import Snapshot

PROM_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_FAMILIES = {
    "container_cpu_usage_seconds_total": (
        "counter", "Cumulative cpu time consumed by the container in core-seconds"),
    "container_memory_working_set_bytes": ("gauge", "Current working set of the container in bytes"),
    "container_start_time_seconds": ("gauge", "Start time of the container since unix epoch in seconds"),
    "container_swap_usage_bytes": (
        "gauge", "Current amount of the container swap usage in bytes. Reported only on non-windows systems"),
    "node_cpu_usage_seconds_total": ("counter", "Cumulative cpu time consumed by the node in core-seconds"),
    "node_memory_working_set_bytes": ("gauge", "Current working set of the node in bytes"),
    "node_swap_usage_bytes": ("gauge", "Current swap usage of the node in bytes. Reported only on non-windows systems"),
    "pod_cpu_usage_seconds_total": ("counter", "Cumulative cpu time consumed by the pod in core-seconds"),
    "pod_memory_working_set_bytes": ("gauge", "Current working set of the pod in bytes"),
    "pod_swap_usage_bytes": (
        "gauge", "Current amount of the pod swap usage in bytes. Reported only on non-windows systems"),
    "resource_scrape_error": ("gauge", "1 if there was an error while getting container metrics, 0 otherwise"),
}
#: the kubelet's swap families are ALPHA, the others STABLE
_ALPHA = frozenset(("container_swap_usage_bytes", "node_swap_usage_bytes", "pod_swap_usage_bytes"))

#: working-set values repeat a lot (page-aligned bases): memoize their text
_mem_text = functools.lru_cache(maxsize=1 << 16)(go_float)

#: memory of the pod sandbox (pause container) added to the pod cgroup's working set
POD_OVERHEAD_BYTES = 94208.0


def _header(name: str) -> str:
    kind, text = _FAMILIES[name]
    return f"# HELP {name} [{'ALPHA' if name in _ALPHA else 'STABLE'}] {text}\n# TYPE {name} {kind}\n"


def _seconds(cpu: np.ndarray) -> np.ndarray:
    """Core-seconds as the kubelet exposes them: integer nanoseconds divided by 1e9."""
    return np.floor(cpu * 1e9) / 1e9


def render_resource_metrics(snap: Snapshot) -> bytes:
    """The ``/metrics/resource`` body for one node at ``snap.time``."""
    stats = snap.stats
    ts = str(int(snap.time * 1000))
    out: list[str] = []
    rows = stats.rows
    order = [i for i in stats._prom_order if snap.visible[i]] if rows else []
    cpu = _seconds(snap.cpu).tolist()
    mem = snap.memory.tolist()
    if order:
        out.append(_header("container_cpu_usage_seconds_total"))
        out.extend(f"container_cpu_usage_seconds_total{rows[i].labels} {go_float(cpu[i])} {ts}\n" for i in order)
        out.append(_header("container_memory_working_set_bytes"))
        out.extend(f"container_memory_working_set_bytes{rows[i].labels} {_mem_text(mem[i])} {ts}\n" for i in order)
        out.append(_header("container_start_time_seconds"))
        start = stats._start_text
        out.extend(f"container_start_time_seconds{rows[i].labels} {start[i]}\n" for i in order)
        if snap.swap is not None:
            swap = snap.swap.tolist()
            out.append(_header("container_swap_usage_bytes"))
            out.extend(f"container_swap_usage_bytes{rows[i].labels} {_mem_text(swap[i])} {ts}\n" for i in order)
    out.append(_header("node_cpu_usage_seconds_total"))
    out.append(f"node_cpu_usage_seconds_total {go_float(math.floor(snap.node_cpu * 1e9) / 1e9)} {ts}\n")
    out.append(_header("node_memory_working_set_bytes"))
    out.append(f"node_memory_working_set_bytes {go_float(snap.node_memory)} {ts}\n")
    if snap.node_swap is not None:
        out.append(_header("node_swap_usage_bytes"))
        out.append(f"node_swap_usage_bytes {go_float(snap.node_swap)} {ts}\n")
    if order:
        pod_idx = stats._arrays["pod"] if stats._arrays is not None else np.zeros(0, dtype=np.int64)
        vis = snap.visible
        npods = len(stats._pod_keys)
        pod_cpu = _seconds(np.bincount(pod_idx[vis], weights=snap.cpu[vis], minlength=npods)).tolist()
        pod_mem = (np.bincount(pod_idx[vis], weights=snap.memory[vis], minlength=npods) + POD_OVERHEAD_BYTES).tolist()
        present = np.bincount(pod_idx[vis], minlength=npods) > 0
        porder = [p for p in stats._pod_order if present[p]]
        labels = stats._pod_labels
        out.append(_header("pod_cpu_usage_seconds_total"))
        out.extend(f"pod_cpu_usage_seconds_total{labels[p]} {go_float(pod_cpu[p])} {ts}\n" for p in porder)
        out.append(_header("pod_memory_working_set_bytes"))
        out.extend(f"pod_memory_working_set_bytes{labels[p]} {_mem_text(pod_mem[p])} {ts}\n" for p in porder)
        if snap.swap is not None:
            pod_swap = np.bincount(pod_idx[vis], weights=snap.swap[vis], minlength=npods).tolist()
            out.append(_header("pod_swap_usage_bytes"))
            out.extend(f"pod_swap_usage_bytes{labels[p]} {_mem_text(pod_swap[p])} {ts}\n" for p in porder)
    out.append(_header("resource_scrape_error"))
    out.append("resource_scrape_error 0\n")
    return "".join(out).encode()


#: an image for the emulated workload containers (cAdvisor labels every series with one)
CADVISOR_IMAGE = "registry.k8s.io/e2e-test-images/agnhost:2.52"
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"


def render_cadvisor(snap: Snapshot) -> bytes:
    """The ``/metrics/cadvisor`` body for one node at ``snap.time``: cAdvisor's
    ``container_cpu_usage_seconds_total`` (``cpu="total"``) and ``container_memory_working_set_bytes``
    with its labels (container, cpu, id, image, name, namespace, pod) and ms timestamps, for each
    container, for each pod's cgroup (``container=""``, the sum of its containers and sandbox) and
    for each sandbox (the pause container, ``container="POD"``). The same counters and working sets
    as ``/metrics/resource`` and ``/stats/summary`` at that time."""
    stats = snap.stats
    rows = stats.rows
    order = [i for i in stats._prom_order if snap.visible[i]] if rows else []
    ts = str(int(snap.time * 1000))
    cpu = _seconds(snap.cpu).tolist()
    mem = snap.memory.tolist()
    pods: dict[tuple[str, str, str], list[int]] = {}
    for i in order:
        r = rows[i]
        pods.setdefault((r.namespace, r.pod, r.pod_uid), []).append(i)
    cpu_lines, mem_lines = [], []
    for (ns, pod, uid), idx in sorted(pods.items()):
        cg = f"/kubepods/burstable/pod{uid}"
        series = [("", cg, "", "", sum(cpu[i] for i in idx), sum(mem[i] for i in idx) + POD_OVERHEAD_BYTES),
                  ("POD", f"{cg}/sandbox", f"k8s_POD_{pod}", PAUSE_IMAGE, 0.0, POD_OVERHEAD_BYTES)]
        series += [(rows[i].container, f"{cg}/{rows[i].container}", f"k8s_{rows[i].container}_{pod}", CADVISOR_IMAGE,
                    cpu[i], mem[i]) for i in idx]
        for container, cid, name, image, c, m in series:
            labels = (f'{{container="{container}",cpu="total",id="{cid}",image="{image}",name="{name}",'
                      f'namespace="{ns}",pod="{pod}"}}')
            cpu_lines.append(f"container_cpu_usage_seconds_total{labels} {go_float(math.floor(c * 1e9) / 1e9)} {ts}\n")
            mem_lines.append(f"container_memory_working_set_bytes{labels} {_mem_text(m)} {ts}\n")
    out = ["# HELP container_cpu_usage_seconds_total Cumulative cpu time consumed in seconds.\n",
           "# TYPE container_cpu_usage_seconds_total counter\n", *cpu_lines,
           "# HELP container_memory_working_set_bytes Current working set in bytes.\n",
           "# TYPE container_memory_working_set_bytes gauge\n", *mem_lines]
    return "".join(out).encode()


def _cpu(t: str, rate: float, cumulative: float) -> dict:
    return {"time": t, "usageNanoCores": int(rate * 1e9), "usageCoreNanoSeconds": int(cumulative * 1e9)}


def _memory(t: str, ws: float, limit: float | None, full: bool = True) -> dict:
    usage = ws * 1.25
    m: dict = {"time": t}
    if limit:
        m["availableBytes"] = max(0, int(limit - ws))
    m.update(
        usageBytes=int(usage), workingSetBytes=int(ws), rssBytes=int(ws * 0.7),
        pageFaults=int(ws / 4096) * 3, majorPageFaults=int(ws / 4096 / 8192),
    )
    return m


def _fs(t: str, capacity: int, used: int) -> dict:
    return {
        "time": t, "availableBytes": capacity - used, "capacityBytes": capacity, "usedBytes": used,
        "inodesFree": 6_000_000, "inodes": 6_553_600, "inodesUsed": 553_600,
    }


def render_summary(snap: Snapshot, *, only_cpu_and_memory: bool = False) -> bytes:
    """The ``/stats/summary`` body (``?only_cpu_and_memory=true`` drops network, fs, rlimit ...)."""
    stats = snap.stats
    t = format_time(snap.time)
    full = not only_cpu_and_memory
    node_ws = snap.node_memory
    kubelet_rate = min(0.02, stats.system_cores / 2)
    node: dict = {
        "nodeName": stats.node_name,
        "systemContainers": [
            {
                "name": "kubelet",
                "startTime": format_time(stats.boot_time + 2),
                "cpu": _cpu(t, kubelet_rate, kubelet_rate * (snap.time - stats.boot_time)),
                "memory": _memory(t, 75 * 1024 * 1024, None),
            },
            {
                "name": "pods",
                "startTime": format_time(stats.boot_time + 2),
                "cpu": _cpu(t, snap.node_rate - stats.system_cores, max(0.0, snap.node_cpu - stats.system_cores * (snap.time - stats.boot_time))),
                "memory": _memory(t, max(0.0, node_ws - stats.system_memory), stats.memory_capacity),
            },
        ],
        "startTime": format_time(stats.boot_time),
        "cpu": _cpu(t, snap.node_rate, snap.node_cpu),
        "memory": _memory(t, node_ws, stats.memory_capacity),
    }
    if snap.node_swap is not None:
        node["swap"] = {"time": t, "swapAvailableBytes": int(stats.swap_capacity - snap.node_swap),
                        "swapUsageBytes": int(snap.node_swap)}
    if full:
        node["network"] = {
            "time": t, "name": "eth0", "rxBytes": 0, "rxErrors": 0, "txBytes": 0, "txErrors": 0,
            "interfaces": [{"name": "eth0", "rxBytes": 0, "rxErrors": 0, "txBytes": 0, "txErrors": 0}],
        }
        node["fs"] = _fs(t, 100 * 1024**3, 20 * 1024**3)
        node["runtime"] = {"imageFs": _fs(t, 100 * 1024**3, 8 * 1024**3)}
        node["rlimit"] = {"time": t, "maxpid": 4194304, "curproc": 300 + len(stats.rows)}
    pods_out: list[dict] = []
    if stats.rows:
        by_pod: dict[int, list[int]] = {}
        pod_idx = stats._arrays["pod"].tolist() if stats._arrays is not None else []
        for i, p in enumerate(pod_idx):
            if snap.visible[i]:
                by_pod.setdefault(p, []).append(i)
        cpu, rates, mem = snap.cpu.tolist(), snap.rates.tolist(), snap.memory.tolist()
        swap = snap.swap.tolist() if snap.swap is not None else None
        for p in stats._pod_order:
            idx = by_pod.get(p)
            if not idx:
                continue
            first = stats.rows[idx[0]]
            containers = []
            for i in sorted(idx, key=lambda i: stats.rows[i].container):
                r = stats.rows[i]
                c: dict = {
                    "name": r.container,
                    "startTime": format_time(r.start_time),
                    "cpu": _cpu(t, rates[i], cpu[i]),
                    "memory": _memory(t, mem[i], r.memory_limit or None),
                }
                if swap is not None:  # a container's swap limit is not modelled: no swapAvailableBytes
                    c["swap"] = {"time": t, "swapUsageBytes": int(swap[i])}
                if full:
                    c["rootfs"] = _fs(t, 100 * 1024**3, 40960)
                    c["logs"] = _fs(t, 100 * 1024**3, 8192)
                containers.append(c)
            pod: dict = {
                "podRef": {"name": first.pod, "namespace": first.namespace, "uid": first.pod_uid},
                "startTime": format_time(first.pod_start_time),
                "containers": containers,
                "cpu": _cpu(t, sum(rates[i] for i in idx), sum(cpu[i] for i in idx)),
                "memory": _memory(t, sum(mem[i] for i in idx) + POD_OVERHEAD_BYTES, None),
            }
            if swap is not None:  # the kubelet sums its containers' swap stats (none available: 0)
                pod["swap"] = {"time": t, "swapAvailableBytes": 0, "swapUsageBytes": int(sum(swap[i] for i in idx))}
            if full:
                pod["network"] = {
                    "time": t, "name": "eth0", "rxBytes": 0, "rxErrors": 0, "txBytes": 0, "txErrors": 0,
                    "interfaces": [{"name": "eth0", "rxBytes": 0, "rxErrors": 0, "txBytes": 0, "txErrors": 0}],
                }
                pod["volume"] = []
                pod["ephemeral-storage"] = _fs(t, 100 * 1024**3, 49152)
                pod["process_stats"] = {"process_count": len(idx) + 1}
            pods_out.append(pod)
    return orjson.dumps({"node": node, "pods": pods_out})
