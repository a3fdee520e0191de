"""Benchmark: one full sync of many HPAs against the emulated cluster (prints JSON).

1,000 HPAs x 10 pods by default: 1,000 Deployments on an emulated cluster (ManualClock), their
kubelets scraped twice into the window store, then full syncs of the controller (every HPA
reconciled once: GET /scale, pods from the informer cache, metrics from the store, the decision,
and in active mode the status writes). One sync period is 15 s; the figures say how much of it a
full sync takes. CPU seconds are the controller thread's (the emulated cluster runs on another
thread of this process; its cost is reported separately as the process total).

    python bench/bench_controller.py [--hpas 1000] [--pods-per-hpa 10] [--syncs 3] [--mode active] [--profile FILE] [--memory]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
import time
import tracemalloc
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
from sim.cluster import run_in_thread
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


def controller_memory() -> int:
    """Bytes still allocated (tracemalloc, since the controller was created) by the controller's code:
    traces with a frame in autoscaler/ (its informers, caches, indexes, states, metrics) and none in
    sim/ (the emulated cluster shares the process) or in the collector and store it reads."""
    snap = tracemalloc.take_snapshot()
    total = 0
    for trace in snap.traces:
        files = [f.filename for f in trace.traceback]
        if any("/sim/" in f or "/autoscaler/scraper/" in f or "/autoscaler/storage/" in f for f in files):
            continue
        if any("/autoscaler/" in f for f in files):
            total += trace.size
    tracemalloc.stop()
    return total


async def run(args: argparse.Namespace) -> dict:
    t_setup = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        cluster = run_in_thread(scenario(args.hpas, args.pods_per_hpa), Path(tmp), clock=ManualClock(start=time.time() - 3600))
        stop = asyncio.Event()
        try:
            for _ in range(30):  # in steps: each is bounded, and 50,000 pods start in the first ones
                cluster.advance(1)
            mkube = load_kubeconfig(str(cluster.metrics_kubeconfig))
            opts = ScrapeOptions(kubelet_use_node_status_port=True)
            store = WindowStore(opts.metric_resolution, opts.metric_history)
            nodes = Informer(mkube, "/api/v1/nodes", name="nodes", transform=slim_node)
            task = asyncio.create_task(nodes.run(stop))
            await nodes.wait_synced(120)
            collector = Collector(opts, store, mkube, node_informer=nodes, clock=cluster.clock.now)
            for _ in range(2):
                await asyncio.to_thread(cluster.advance, 15)
                await collector.scrape_cycle()
            if args.memory:
                tracemalloc.start(16)
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
            memory = controller_memory() if args.memory else None
            await ctl.close()
            await collector.client.close()
            stop.set()
            await task
        finally:
            cluster.stop()
    if memory is not None:  # CPU figures of this mode are inflated by the tracing
        return {"benchmark": "controller_memory", "hpas": args.hpas, "pods_per_hpa": args.pods_per_hpa,
                "controller_traced_bytes": memory, "bytes_per_hpa": round(memory / args.hpas)}
    best = min(syncs, key=lambda s: s["wall_seconds"])
    n = best["reconciled"] or 1
    return {
        "benchmark": "controller_full_sync", "mode": args.mode, "hpas": args.hpas, "pods_per_hpa": args.pods_per_hpa,
        "workers": args.workers, "setup_seconds": round(setup, 1), "syncs": syncs,
        "best_wall_seconds": best["wall_seconds"], "best_controller_cpu_seconds": best["controller_cpu_seconds"],
        "per_hpa_wall_ms": round(best["wall_seconds"] / n * 1000, 3),
        "per_hpa_controller_cpu_ms": round(best["controller_cpu_seconds"] / n * 1000, 3),
        "sync_period_seconds": 15.0, "fraction_of_sync_period": round(best["wall_seconds"] / 15.0, 3),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hpas", type=int, default=1000)
    p.add_argument("--pods-per-hpa", type=int, default=10)
    p.add_argument("--syncs", type=int, default=3)
    p.add_argument("--workers", type=int, default=5)
    p.add_argument("--mode", choices=["active", "dry-run"], default="active")
    p.add_argument("--memory", action="store_true",
                   help="measure the controller's memory with tracemalloc instead of timing (slower)")
    p.add_argument("--profile", metavar="FILE", help="write a cProfile of the measured syncs (controller thread) to FILE")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    print(json.dumps(asyncio.run(run(args)), indent=2))


if __name__ == "__main__":
    main()
