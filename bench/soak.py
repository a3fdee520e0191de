"""Soak: hours of simulated time with pod churn and thousands of HPAs; is anything growing? (prints JSON)

An emulated cluster on a ManualClock (so hours of simulated time take minutes) with ``--hpas``
small Deployments, each with an HPA whose load spikes every ``--spike-every`` (so our controller,
in active mode, scales it up and, after the 5-minute downscale stabilisation, down again), and on
top of that ``--delete-per-step`` random pods deleted every step (their ReplicaSets recreate
them). The autoscaler side runs in this process as `autoscaler run` wires it: node and pod
informers feeding the metrics API's object index, the collector scraping every kubelet into the
window store, the metrics API listing every pod, and the HPA controller reconciling every HPA.
Each step advances the clock by ``--step`` seconds, then scrapes, lists and runs a full sync.

Every ``--sample-every`` simulated seconds it records the process RSS, the asyncio tasks of both
event loops, open file descriptors and sockets, established TCP connections, and the sizes of
every long-lived cache (store series, informer caches, object index, controller state, evaluator
and event recorder caches). The verdict compares the end with the end of ``--warmup``: the RSS
slope per simulated hour (least squares over the samples after warm-up) and the growth of tasks,
descriptors, connections and each cache.

    python bench/soak.py [--hpas 2000] [--pods-per-hpa 2] [--hours 3] [--step 60] [--hpa-churn 10]
        [--apiserver-watch-history 1000] [--tracemalloc]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os
import random
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import structlog

from autoscaler.api.objects import ObjectIndex
from autoscaler.api.resources import MetricsResources
from autoscaler.controller.controller import HPAController
from autoscaler.controller.metrics_source import StoreResourceMetrics
from autoscaler.controller.options import ControllerOptions
from autoscaler.k8s.informer import Informer
from autoscaler.k8s.kubeconfig import load_kubeconfig
from autoscaler.scraper.collector import Collector
from autoscaler.scraper.options import ScrapeOptions
from autoscaler.scraper.targets import slim_node
from autoscaler.server.run_cmd import _index_handler, _slim_pod, tune_gc
from autoscaler.storage.window import WindowStore
from sim.clock import ManualClock
from sim.cluster import ClusterThread, run_in_thread
from sim.kubelet.pods import PodTiming
from sim.loadmodel import Spike
from sim.nodes import NodeSpec
from sim.scenario import Scenario, WorkloadSpec

PAGE = os.sysconf("SC_PAGE_SIZE")
HPAS = "horizontalpodautoscalers.autoscaling"


def scenario(hpas: int, pods: int, spike_every: float) -> Scenario:
    """Small Deployments whose CPU spikes to 3x the target every ``spike_every`` (phases staggered)."""
    per_node = 200
    n_nodes = max(1, -(-hpas * pods * 3 // per_node))  # room for every HPA at its maximum
    containers = [{"name": "app", "image": "app:1", "resources": {"requests": {"cpu": "100m", "memory": "32Mi"}}}]
    workloads, objs = [], []
    for i in range(hpas):
        name = f"app-{i:04d}"
        base = 0.05 * pods * 0.4  # 40% of the requests: below the 50% target
        load = Spike(base=base, peak=base * 3, at=(i * 37) % spike_every, duration=spike_every / 3,
                     every=spike_every)
        workloads.append(WorkloadSpec(name, containers=containers, replicas=pods, load=load))
        objs.append({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                     "metadata": {"name": name, "namespace": "default"},
                     "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                              "minReplicas": 1, "maxReplicas": pods * 3,
                              "metrics": [{"type": "Resource", "resource": {
                                  "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}]}})
    nodes = [NodeSpec(f"worker-{i}", cpu="64", memory="256Gi", pods=per_node + 10) for i in range(n_nodes)]
    return Scenario(name="soak", nodes=nodes, workloads=workloads, hpas=objs,
                    timing=PodTiming(startup=1, readiness=1), events=False)


# -- what is sampled ---------------------------------------------------------------------------------

def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def fds() -> tuple[int, int]:
    """(open descriptors, of which sockets)."""
    total = sockets = 0
    for fd in os.listdir("/proc/self/fd"):
        total += 1
        try:
            sockets += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:
            pass
    return total, sockets


def tcp_established() -> int:
    """Established TCP connections in this network namespace (both ends of loopback ones count)."""
    n = 0
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                n += sum(1 for line in f if line.split()[3] == "01")
        except OSError:
            pass
    return n


def caches(ctl: HPAController, collector: Collector, store: WindowStore, index: ObjectIndex,
           informers: list[Informer], resources: MetricsResources) -> dict[str, int]:
    """The size of every long-lived structure a leak would show up in."""
    ev = ctl.evaluator
    rec = ctl.recorder
    out = {
        "store_pods": len(store._pods), "store_nodes": len(store._nodes),
        "store_container_rows": store._containers.live, "store_container_capacity": store._containers.capacity,
        "index_pods": len(index._pods), "index_nodes": len(index._nodes),
        "ctl_states": len(ctl.states), "ctl_last": len(ctl.last), "ctl_written": len(ctl._written),
        "ctl_foreign_writes": len(ctl.foreign_writes), "ctl_history": len(ctl.history),
        "ctl_pod_index_pods": sum(len(v) for v in ctl.pod_index._pods.values()),
        "ctl_pod_index_namespaces": len(ctl.pod_index._pods),
        "ctl_pod_index_labels": len(ctl.pod_index._by_label),
        "ctl_pod_index_label_members": sum(len(v) for v in ctl.pod_index._by_label.values()),
        "evaluator_compiled": len(ev._compiled),
        "recorder_seen": len(rec._seen), "recorder_buckets": len(rec._buckets), "recorder_similar": len(rec._similar),
        "collector_targets": len(collector._targets), "collector_known_nodes": len(collector._known_nodes),
        "listing_cache_heads": sum(len(getattr(c, "by_head", ())) for c in vars(resources).values()
                                   if hasattr(c, "by_head")),
    }
    sel = ev.selectors
    for name in ("_sel", "_anchored", "_free"):
        d = getattr(sel, name, None)
        if d is not None:
            out[f"selectors{name}"] = sum(len(v) for v in d.values())
    if ctl.consistency is not None:
        out["consistency"] = sum(len(v) for v in vars(ctl.consistency).values() if isinstance(v, dict | set | list))
    for inf in informers:
        out[f"informer_{inf.name}"] = len(inf._cache)
    return out


# -- the run -----------------------------------------------------------------------------------------

async def run(a: argparse.Namespace) -> dict[str, Any]:
    tune_gc()
    if a.tracemalloc:
        tracemalloc.start(8)
    wall0 = time.perf_counter()
    churn = {"pods_created": 0, "pods_deleted": 0, "pods_deleted_by_soak": 0, "hpas_replaced": 0}
    hpa_of = {f"app-{i:04d}": f"app-{i:04d}" for i in range(a.hpas)}  # Deployment -> its HPA now
    generation = [0]
    rng = random.Random(1)
    if a.apiserver_watch_history:
        import functools

        import sim.apiserver.store as apistore

        # The emulated API server keeps the last N writes per resource for watches; its default
        # (10,000) takes hours of simulated time to fill at small scale, and looks like growth until then.
        apistore.ObjectStore = functools.partial(apistore.ObjectStore, ring_size=a.apiserver_watch_history)
    with tempfile.TemporaryDirectory() as tmp:
        cluster: ClusterThread = run_in_thread(scenario(a.hpas, a.pods_per_hpa, a.spike_every), Path(tmp),
                                               clock=ManualClock(start=time.time() - 3600))
        stop = asyncio.Event()
        try:
            def count(etype: str, obj: dict, old: dict | None) -> None:
                if etype == "ADDED":
                    churn["pods_created"] += 1
                elif etype == "DELETED":
                    churn["pods_deleted"] += 1

            cluster.call(lambda: cluster.store.subscribe("pods", count))
            cluster.advance(30)
            mkube = load_kubeconfig(str(cluster.metrics_kubeconfig))
            opts = ScrapeOptions(metric_resolution=a.step, metric_history=max(900.0, 4 * a.step),
                                 kubelet_use_node_status_port=True)
            store = WindowStore(opts.metric_resolution, opts.metric_history)
            index = ObjectIndex()
            nodes = Informer(mkube, "/api/v1/nodes", name="nodes", transform=slim_node)
            pods = Informer(mkube, "/api/v1/pods", field_selector="status.phase=Running", metadata_only=True,
                            name="pods", transform=_slim_pod)
            nodes.add_handler(_index_handler(index.upsert_node, lambda o: index.delete_node(o["metadata"]["name"])))
            pods.add_handler(_index_handler(index.upsert_pod, lambda o: index.delete_pod(
                o["metadata"].get("namespace", ""), o["metadata"]["name"])))
            tasks = [asyncio.create_task(i.run(stop), name=f"informer {i.name}") for i in (nodes, pods)]
            await nodes.wait_synced(300)
            await pods.wait_synced(300)
            collector = Collector(opts, store, mkube, node_informer=nodes, clock=cluster.clock.now)
            resources = MetricsResources(index, store, clock=cluster.clock.now)
            ctl = HPAController(load_kubeconfig(str(cluster.kubeconfig)),
                                ControllerOptions(mode=a.mode, leader_elect=False, workers=a.workers,
                                                  sync_period=a.step),
                                StoreResourceMetrics(store), clock=cluster.clock.now)
            await ctl.start(timeout=300)
            setup_s = time.perf_counter() - wall0

            samples: list[dict[str, Any]] = []
            snap0 = None
            steps = int(a.hours * 3600 / a.step)
            sim0 = cluster.clock.now()
            errors = 0
            error_kinds: Counter[str] = Counter()
            for k in range(1, steps + 1):
                await asyncio.to_thread(cluster.advance, a.step)
                if a.delete_per_step:
                    def delete_some() -> int:
                        live = [p for p in cluster.store.list("pods")[0]
                                if not p["metadata"].get("deletionTimestamp")]
                        victims = rng.sample(live, min(a.delete_per_step, len(live)))
                        for p in victims:
                            cluster.store.delete("pods", p["metadata"]["namespace"], p["metadata"]["name"])
                        return len(victims)

                    churn["pods_deleted_by_soak"] += cluster.call(delete_some)
                if a.hpa_churn:
                    def replace_hpas() -> int:
                        for target in rng.sample(sorted(hpa_of), min(a.hpa_churn, len(hpa_of))):
                            old = cluster.store.get(HPAS, "default", hpa_of[target])
                            cluster.store.delete(HPAS, "default", hpa_of[target])
                            generation[0] += 1
                            hpa_of[target] = f"{target}-g{generation[0]}"
                            cluster.store.create(HPAS, {"apiVersion": "autoscaling/v2",
                                                        "kind": "HorizontalPodAutoscaler",
                                                        "metadata": {"name": hpa_of[target], "namespace": "default"},
                                                        "spec": old["spec"]})
                        return min(a.hpa_churn, len(hpa_of))

                    churn["hpas_replaced"] += cluster.call(replace_hpas)
                await collector.scrape_cycle()
                resources.list_pods().json()
                resources.list_nodes().json()
                out = await ctl.sync_all()
                for o in out.values():
                    if o.error is not None:
                        errors += 1
                        error_kinds[o.error[-110:]] += 1
                sim_s = cluster.clock.now() - sim0
                if k % max(1, int(a.sample_every / a.step)) == 0 or k == steps:
                    gc.collect()
                    fd_total, fd_sockets = fds()
                    s = {"sim_minutes": round(sim_s / 60, 1), "wall_seconds": round(time.perf_counter() - wall0, 1),
                         "rss_mb": round(rss_bytes() / 2**20, 1),
                         "tasks_autoscaler_loop": len(asyncio.all_tasks()),
                         "tasks_cluster_loop": len(asyncio.all_tasks(cluster.loop)),
                         "fds": fd_total, "socket_fds": fd_sockets, "tcp_established": tcp_established(),
                         "hpa_errors_so_far": errors, **dict(churn),
                         **cluster.call(lambda: {f"apiserver_{k}": len(kind.objects)
                                                 for k, kind in cluster.store._kinds.items()
                                                 if k in ("events", "pods", "replicasets.apps")}),
                         # the emulated API server's watch history: bounded rings of the last writes
                         "apiserver_watch_rings": cluster.call(lambda: sum(len(kind.log) for kind
                                                                          in cluster.store._kinds.values())),
                         **caches(ctl, collector, store, index, [nodes, pods, ctl.hpas, ctl.pods], resources)}
                    if a.tracemalloc:
                        s["traced_mb"] = round(tracemalloc.get_traced_memory()[0] / 2**20, 1)
                        if snap0 is None and sim_s >= a.warmup:
                            snap0 = tracemalloc.take_snapshot()
                    samples.append(s)
                    print(json.dumps(s), file=sys.stderr, flush=True)
            growth = None
            if snap0 is not None:
                stats = tracemalloc.take_snapshot().compare_to(snap0, "lineno")
                growth = [str(st) for st in stats[:15]]
            await ctl.close()
            await collector.client.close()
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            cluster.stop()
    out = verdict(a, samples, setup_s, time.perf_counter() - wall0, growth)
    out["hpa_error_kinds"] = dict(error_kinds.most_common(8))
    return out


def verdict(a: argparse.Namespace, samples: list[dict[str, Any]], setup_s: float, wall_s: float,
            growth: list[str] | None) -> dict[str, Any]:
    warm = [s for s in samples if s["sim_minutes"] * 60 >= a.warmup]
    w0, end = warm[0], samples[-1]
    t = np.array([s["sim_minutes"] / 60 for s in warm])
    rss = np.array([s["rss_mb"] for s in warm])
    slope = float(np.polyfit(t, rss, 1)[0]) if len(warm) >= 2 else 0.0
    keys = [k for k in end if k not in ("sim_minutes", "wall_seconds", "hpa_errors_so_far", "pods_created",
                                        "pods_deleted", "pods_deleted_by_soak", "hpas_replaced", "rss_mb",
                                        "traced_mb")]
    return {
        "benchmark": "soak", "mode": a.mode, "hpas": a.hpas, "pods_per_hpa": a.pods_per_hpa,
        "simulated_hours": round(samples[-1]["sim_minutes"] / 60, 2), "step_seconds": a.step,
        "setup_wall_seconds": round(setup_s, 1), "wall_seconds": round(wall_s, 1),
        "pods_created": end["pods_created"], "pods_deleted": end["pods_deleted"],
        "pods_deleted_by_soak": end["pods_deleted_by_soak"], "hpas_replaced": end["hpas_replaced"],
        "hpa_errors": end["hpa_errors_so_far"],
        "warmup_simulated_minutes": a.warmup / 60,
        "rss_mb_at_warmup": w0["rss_mb"], "rss_mb_at_end": end["rss_mb"], "rss_mb_max": max(s["rss_mb"] for s in warm),
        "rss_slope_mb_per_simulated_hour": round(slope, 2),
        "at_warmup_vs_end": {k: [w0[k], end[k], max(s[k] for s in warm)] for k in keys},
        "tracemalloc_top_growth": growth,
        "samples": samples,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hpas", type=int, default=2000)
    p.add_argument("--pods-per-hpa", type=int, default=2)
    p.add_argument("--hours", type=float, default=3.0, help="simulated hours")
    p.add_argument("--step", type=float, default=60.0,
                   help="simulated seconds per step: the metric resolution and the HPA sync period")
    p.add_argument("--spike-every", type=float, default=1200.0, help="each workload's load spikes this often (s)")
    p.add_argument("--delete-per-step", type=int, default=40, help="random pods deleted every step")
    p.add_argument("--hpa-churn", type=int, default=0,
                   help="HPAs deleted every step, each replaced by a new one (new name) for the same Deployment")
    p.add_argument("--apiserver-watch-history", type=int, default=0,
                   help="writes per resource the emulated API server keeps for watches (0: its default, 10,000)")
    p.add_argument("--sample-every", type=float, default=600.0, help="simulated seconds between samples")
    p.add_argument("--warmup", type=float, default=1800.0, help="simulated seconds before the baseline")
    p.add_argument("--workers", type=int, default=5)
    p.add_argument("--mode", choices=["active", "dry-run"], default="active")
    p.add_argument("--tracemalloc", action="store_true", help="trace allocations; report the top growth lines")
    a = p.parse_args()
    logging.basicConfig(level=logging.ERROR)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    print(json.dumps(asyncio.run(run(a)), indent=2))


if __name__ == "__main__":
    main()
