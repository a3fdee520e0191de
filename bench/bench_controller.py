"""Benchmark: one full sync of many HPAs against the emulated cluster (prints JSON).

1,000 HPAs x 10 pods by default: 1,000 Deployments on an emulated cluster (ManualClock), their
kubelets scraped twice into the window store, then full syncs of the controller (every HPA
reconciled once: GET /scale, pods from the informer cache, metrics from the store, the decision,
and in active mode the status writes). One sync period is 15 s; the figures say how much of it a
full sync takes. CPU seconds are the controller thread's (the emulated cluster runs on another
thread of this process; its cost is reported separately as the process total).

    python bench/bench_controller.py [--hpas 1000] [--pods-per-hpa 10] [--syncs 3] [--mode active] [--profile FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import structlog

from autoscaler.controller.controller import HPAController
from autoscaler.controller.metrics_source import StoreResourceMetrics
from autoscaler.controller.options import ControllerOptions
from autoscaler.k8s.informer import Informer
from autoscaler.k8s.kubeconfig import load_kubeconfig
from autoscaler.scraper.collector import Collector, ScrapeOptions
from autoscaler.scraper.targets import slim_node
from autoscaler.storage.window import WindowStore
from sim.clock import ManualClock
from sim.cluster import ClusterThread, run_in_thread
from sim.kubelet.pods import PodTiming
from sim.loadmodel import Constant
from sim.nodes import NodeSpec
from sim.scenario import Scenario, WorkloadSpec


def scenario(hpas: int, pods: int) -> Scenario:
    per_node = 200
    n_nodes = max(1, -(-hpas * pods // per_node))
    containers = [{"name": "app", "image": "app:1", "resources": {"requests": {"cpu": "100m", "memory": "32Mi"}}}]
    workloads, objs = [], []
    for i in range(hpas):
        name = f"app-{i:04d}"
        workloads.append(WorkloadSpec(name, containers=containers, replicas=pods,
                                      load=Constant(cores=0.05 * pods * (0.5 + (i % 3) * 0.5))))
        objs.append({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                     "metadata": {"name": name, "namespace": "default"},
                     "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                              "minReplicas": 1, "maxReplicas": pods * 3,
                              "metrics": [{"type": "Resource", "resource": {
                                  "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}]}})
    nodes = [NodeSpec(f"worker-{i}", cpu="64", memory="256Gi", pods=per_node + 10) for i in range(n_nodes)]
    return Scenario(name="bench-controller", nodes=nodes, workloads=workloads, hpas=objs,
                    timing=PodTiming(startup=1, readiness=1), events=False)


def deep_size(root: object, skip: tuple[type, ...]) -> int:
    """Bytes of ``root`` and everything it references (each object once): containers, instance
    attributes and slots, numpy arrays with their data; not modules, classes, functions or ``skip``."""
    import types

    import numpy as np

    seen: set[int] = set()
    stack = [root]
    total = 0
    opaque = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType,
              types.CodeType, asyncio.AbstractEventLoop, *skip)
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, opaque):
            continue
        seen.add(id(obj))
        if isinstance(obj, np.ndarray):
            total += sys.getsizeof(obj) + (obj.nbytes if obj.base is None else 0)
            continue
        total += sys.getsizeof(obj)
        if isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, list | tuple | set | frozenset):
            stack.extend(obj)
        else:
            if hasattr(obj, "__dict__"):
                stack.append(vars(obj))
            for cls in type(obj).__mro__:
                for slot in getattr(cls, "__slots__", ()):
                    if isinstance(slot, str) and hasattr(obj, slot):
                        stack.append(getattr(obj, slot))
    return total


def controller_memory(ctl: HPAController) -> dict:
    """What the controller holds for its HPAs: informer caches (HPAs, pods), pod index and rows,
    selectors, compiled specs, states, last outcomes, the metrics snapshot and its Prometheus
    children; not the clients, the store it reads or the event loop."""
    from autoscaler.k8s.rest import KubeClient
    from autoscaler.storage.window import WindowStore

    skip = (KubeClient, WindowStore, asyncio.Event, asyncio.Task, asyncio.Future)
    parts = {"pod_informer": deep_size(ctl.pods._cache, skip), "hpa_informer": deep_size(ctl.hpas._cache, skip),
             "pod_index": deep_size(ctl.pod_index, skip), "everything": deep_size(ctl, skip)}
    return parts


def advance(cluster: ClusterThread, seconds: float) -> None:
    """``cluster.advance`` without its 2-minute bound: 50,000 pods take longer to start on a busy machine."""
    cluster.run(cluster.cluster.clock.advance_async(seconds), timeout=1800)


async def run(args: argparse.Namespace) -> dict:
    t_setup = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        cluster = run_in_thread(scenario(args.hpas, args.pods_per_hpa), Path(tmp), clock=ManualClock(start=time.time() - 3600))
        stop = asyncio.Event()
        try:
            advance(cluster, 30)
            mkube = load_kubeconfig(str(cluster.metrics_kubeconfig))
            opts = ScrapeOptions(kubelet_use_node_status_port=True)
            store = WindowStore(opts.metric_resolution, opts.metric_history)
            nodes = Informer(mkube, "/api/v1/nodes", name="nodes", transform=slim_node)
            task = asyncio.create_task(nodes.run(stop))
            await nodes.wait_synced(120)
            collector = Collector(opts, store, mkube, node_informer=nodes, clock=cluster.clock.now)
            for _ in range(2):
                await asyncio.to_thread(advance, cluster, 15)
                await collector.scrape_cycle()
            ctl = HPAController(load_kubeconfig(str(cluster.kubeconfig)),
                                ControllerOptions(mode=args.mode, leader_elect=False, workers=args.workers),
                                StoreResourceMetrics(store), clock=cluster.clock.now)
            await ctl.start(timeout=300)
            await ctl.catch_up(120)
            setup = time.perf_counter() - t_setup
            syncs = []
            profiler = None
            if args.profile:
                import cProfile

                profiler = cProfile.Profile()
            for _ in range(args.syncs):
                requests0 = ctl.client.requests
                if profiler is not None:
                    profiler.enable()
                w0, c0, p0 = time.perf_counter(), time.thread_time(), time.process_time()
                out = await ctl.sync_all()
                wall, cpu, proc = time.perf_counter() - w0, time.thread_time() - c0, time.process_time() - p0
                if profiler is not None:
                    profiler.disable()
                syncs.append({"wall_seconds": round(wall, 3), "controller_cpu_seconds": round(cpu, 3),
                              "process_cpu_seconds": round(proc, 3), "reconciled": len(out),
                              "errors": sum(o.error is not None for o in out.values()),
                              "rescaled": sum(o.updated for o in out.values()),
                              "api_requests": ctl.client.requests - requests0})
            if profiler is not None:
                profiler.dump_stats(args.profile)
            memory = controller_memory(ctl)
            await ctl.close()
            await collector.client.close()
            stop.set()
            await task
        finally:
            cluster.stop()
    best = min(syncs, key=lambda s: s["wall_seconds"])
    n = best["reconciled"] or 1
    return {
        "benchmark": "controller_full_sync", "mode": args.mode, "hpas": args.hpas, "pods_per_hpa": args.pods_per_hpa,
        "workers": args.workers, "gc_thresholds": list(gc.get_threshold()), "setup_seconds": round(setup, 1),
        "syncs": syncs,
        "best_wall_seconds": best["wall_seconds"], "best_controller_cpu_seconds": best["controller_cpu_seconds"],
        "per_hpa_wall_ms": round(best["wall_seconds"] / n * 1000, 3),
        "per_hpa_controller_cpu_ms": round(best["controller_cpu_seconds"] / n * 1000, 3),
        "sync_period_seconds": 15.0, "fraction_of_sync_period": round(best["wall_seconds"] / 15.0, 3),
        "memory_bytes": memory, "memory_bytes_per_hpa": round(memory["everything"] / max(args.hpas, 1)),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hpas", type=int, default=1000)
    p.add_argument("--pods-per-hpa", type=int, default=10)
    p.add_argument("--syncs", type=int, default=3)
    p.add_argument("--workers", type=int, default=5)
    p.add_argument("--mode", choices=["active", "dry-run"], default="active")
    p.add_argument("--profile", metavar="FILE", help="write a cProfile of the measured syncs (controller thread) to FILE")
    p.add_argument("--default-gc", action="store_true",
                   help="keep CPython's default collector thresholds (autoscaler run raises them; the default measures that)")
    args = p.parse_args()
    if not args.default_gc:
        from autoscaler.server.run_cmd import tune_gc

        tune_gc()  # as `autoscaler run` does
    logging.basicConfig(level=logging.WARNING)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    print(json.dumps(asyncio.run(run(args)), indent=2))


if __name__ == "__main__":
    main()
