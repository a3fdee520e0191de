#!/usr/bin/env python3
"""Cost of the scrape-to-API path per cycle, with and without swap: decode, ingest, read, render.

For ``--nodes`` kubelets × ``--pods`` pods × ``--containers`` containers it builds one
``/stats/summary`` and one ``/metrics/resource`` body per node (``--swap``: with the swap fields a
1.37 kubelet on a swap-enabled node adds), then times, per cycle and in-process:

* decoding every node's body (both formats, reported separately),
* ``WindowStore.store_many`` of the whole cycle,
* ``pod_usage_columns`` of every pod (the API's bulk read) and ``node_metrics`` of every node,
* ``pod_rests`` (the per-pod JSON the pod list is made of).

Prints one JSON object (median seconds over ``--cycles`` cycles after two warm-up cycles).

    python bench/bench_store.py                 # 1000 nodes x 30 pods x 2 containers
    python bench/bench_store.py --swap
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

T0 = 1_784_540_100.0


class _Kubelet:
    """One node's counters and its two payload formats."""

    def __init__(self, idx: int, pods: int, containers: int, swap: bool) -> None:
        self.name = f"node-{idx:05d}"
        self.swap = swap
        self.keys = [(f"ns-{p % 7}", f"app-{idx:05d}-{p:03d}-7f9c6d8b5-x2k4q", f"c{c}")
                     for p in range(pods) for c in range(containers)]
        self.rates = [0.01 * (1 + (idx + i) % 50) for i in range(len(self.keys))]
        self.labels = [f'{{container="{c}",namespace="{ns}",pod="{p}"}}' for ns, p, c in self.keys]

    def cpus(self, n: int) -> list[float]:
        return [100.0 + r * 15.0 * n for r in self.rates]

    def resource(self, n: int) -> bytes:
        cpus, ts = self.cpus(n), int((T0 + 15.0 * n) * 1000)
        out = ["# TYPE container_cpu_usage_seconds_total counter"]
        out += [f"container_cpu_usage_seconds_total{lab} {cpu:.6f} {ts}" for lab, cpu in zip(self.labels, cpus, strict=True)]
        out += ["# TYPE container_memory_working_set_bytes gauge"]
        out += [f"container_memory_working_set_bytes{lab} {5.2527104e+07 + i * 4096:.8e} {ts}" for i, lab in enumerate(self.labels)]
        out += ["# TYPE container_start_time_seconds gauge"]
        out += [f"container_start_time_seconds{lab} 1.7845e+09" for lab in self.labels]
        if self.swap:
            out += ["# TYPE container_swap_usage_bytes gauge"]
            out += [f"container_swap_usage_bytes{lab} {i * 65536} {ts}" for i, lab in enumerate(self.labels)]
        out += ["# TYPE node_cpu_usage_seconds_total counter", f"node_cpu_usage_seconds_total {1000 + sum(cpus):.6f} {ts}",
                "# TYPE node_memory_working_set_bytes gauge", f"node_memory_working_set_bytes 1.616273408e+09 {ts}"]
        if self.swap:
            out += ["# TYPE node_swap_usage_bytes gauge", f"node_swap_usage_bytes 1.048576e+08 {ts}"]
        out += ["# TYPE resource_scrape_error gauge", "resource_scrape_error 0"]
        return ("\n".join(out) + "\n").encode()

    def summary(self, n: int) -> bytes:
        from autoscaler.k8s.timefmt import format_time

        cpus, t = self.cpus(n), format_time(T0 + 15.0 * n)
        pods: dict[tuple[str, str], list] = {}
        for i, (ns, p, c) in enumerate(self.keys):
            cont = {"name": c, "startTime": "2026-07-20T09:00:00Z",
                    "cpu": {"time": t, "usageNanoCores": 12345678, "usageCoreNanoSeconds": round(cpus[i] * 1e9)},
                    "memory": {"time": t, "availableBytes": 165724160, "usageBytes": 15400960,
                               "workingSetBytes": 52527104 + i * 4096, "rssBytes": 9392128, "pageFaults": 5781,
                               "majorPageFaults": 0}}
            if self.swap:
                cont["swap"] = {"time": t, "swapUsageBytes": i * 65536}
            pods.setdefault((ns, p), []).append(cont)
        node = {"nodeName": self.name, "startTime": "2026-07-01T00:00:00Z",
                "cpu": {"time": t, "usageNanoCores": 183201458, "usageCoreNanoSeconds": round((1000 + sum(cpus)) * 1e9)},
                "memory": {"time": t, "availableBytes": 6414852096, "usageBytes": 2513981440,
                           "workingSetBytes": 1616273408, "rssBytes": 990797824, "pageFaults": 48837519,
                           "majorPageFaults": 301}}
        if self.swap:
            node["swap"] = {"time": t, "swapAvailableBytes": 4 << 30, "swapUsageBytes": 100 << 20}
        return orjson.dumps({"node": node, "pods": [
            {"podRef": {"name": p, "namespace": ns, "uid": "0c9c7a3e-5d7b-4c62-9a51-5a0d5fb1f9a2"},
             "startTime": "2026-07-20T09:00:00Z", "containers": cs} for (ns, p), cs in pods.items()]})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--pods", type=int, default=30)
    p.add_argument("--containers", type=int, default=2)
    p.add_argument("--cycles", type=int, default=5)
    p.add_argument("--swap", action="store_true", help="kubelets report swap usage")
    a = p.parse_args()

    from autoscaler.api.render import TimeStrings, pod_rests
    from autoscaler.scraper.decode_resource import decode_resource
    from autoscaler.scraper.decode_summary import decode_summary
    from autoscaler.storage.window import WindowStore

    kubelets = [_Kubelet(i, a.pods, a.containers, a.swap) for i in range(a.nodes)]
    timings: dict[str, list[float]] = {k: [] for k in (
        "decode_summary", "decode_resource", "store_many", "pod_usage_columns", "node_metrics", "pod_rests")}
    store = WindowStore(resolution=15.0, history=900.0)
    ts = TimeStrings()
    keys = names = None
    for n in range(1, a.cycles + 3):
        summaries = [k.summary(n) for k in kubelets]
        resources = [k.resource(n) for k in kubelets]
        scrape = T0 + 15.0 * n
        t = time.perf_counter()
        batches = [decode_summary(body, k.name, scrape) for body, k in zip(summaries, kubelets, strict=True)]
        d_summary = time.perf_counter() - t
        t = time.perf_counter()
        for body, k in zip(resources, kubelets, strict=True):
            decode_resource(body, k.name, scrape)
        d_resource = time.perf_counter() - t
        t = time.perf_counter()
        store.store_many(batches)
        ingest = time.perf_counter() - t
        if keys is None:
            keys = store.all_pod_keys()
            names = store.all_node_names()
        t = time.perf_counter()
        cols = store.pod_usage_columns(keys)
        read = time.perf_counter() - t
        t = time.perf_counter()
        store.node_metrics(names)
        nodes_read = time.perf_counter() - t
        t = time.perf_counter()
        rests = pod_rests(cols, ts)
        render = time.perf_counter() - t
        if n > 2:
            for key, v in zip(timings, (d_summary, d_resource, ingest, read, nodes_read, render), strict=True):
                timings[key].append(v)
    out = {"nodes": a.nodes, "pods": a.nodes * a.pods, "containers": a.nodes * a.pods * a.containers,
           "swap": a.swap, "served_pods": len(rests),
           **{f"{k}_s": round(statistics.median(v), 5) for k, v in timings.items()},
           "store_bytes": store.stats["bytes"]}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
