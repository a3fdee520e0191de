"""Distributed sweep throughput: (workload x configuration) jobs per second against the number of workers.

    python bench/bench_distributed_sweep.py [--workloads 4] [--hours 24] [--workers 1,2,4]

Runs one fixed sweep (``--workloads`` synthetic workloads x 16 configurations, ``--hours`` of 15 s
steps) on the local fork pool (``--executor local``, ``--jobs N``) and on a Dask cluster started here
(``distributed.LocalCluster``: a real scheduler and N single-threaded worker processes; the same
path as ``--executor dask://HOST:PORT``, scatter and connection included, cluster start-up not).
Prints one JSON object; ``identical`` says whether every executor produced the same scores, and
``worker_compute_seconds`` (Dask) the workers' summed task time (workers x seconds when the cores
were free for them).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autoscaler.hpa import ControllerConfig
from sim.replay.executors import run_jobs
from sim.replay.load import build_load
from sim.replay.sweep import expand, parse_set
from sim.replay.synth import hpa_manifest, synthesize

START = 1_767_225_600.0
SETS = ["spec.metrics[0].resource.target.averageUtilization=50,60,70,80",
        "spec.behavior.scaleDown.stabilizationWindowSeconds=0,60,300,600"]


def workloads(n: int, hours: float) -> tuple[dict, list]:
    t = np.arange(0, hours * 3600 + 1, 15.0)
    loads, jobs = {}, []
    for i in range(n):
        demand = 1.0 + 0.5 * i + 1.5 * (np.sin(t / (3600 * (1 + i))) > 0.6) + 0.4 * np.sin(t / (700 + 50 * i))
        hpa = hpa_manifest(f"w{i}", target=60, max_replicas=20)
        tr = synthesize(f"w{i}", START, 15.0, demand, hpa, seed=i)
        key = tr.workloads[0].key
        loads[key] = build_load(tr, tr.workloads[0])
        jobs += [(key, c, False) for c in expand(hpa, ControllerConfig(), 15.0, [parse_set(s) for s in SETS])]
    return loads, jobs


def timed(loads: dict, jobs: list, **kw: object) -> tuple[float, dict]:
    t0 = time.perf_counter()
    out = {(k, i): s for k, i, s, _, err, _ in run_jobs(loads, jobs, **kw)}  # type: ignore[arg-type]
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workloads", type=int, default=4)
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--workers", default="1,2,4")
    a = ap.parse_args()
    from distributed import LocalCluster

    loads, jobs = workloads(a.workloads, a.hours)
    counts = [int(x) for x in a.workers.split(",")]
    rows, reference = [], None
    for n in counts:
        secs, out = timed(loads, jobs, executor="local", n_jobs=n)
        reference = reference or out
        rows.append({"executor": "local", "workers": n, "seconds": round(secs, 2),
                     "jobs_per_second": round(len(jobs) / secs, 2), "identical": out == reference})
    for n in counts:
        with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0",
                          host="127.0.0.1") as cluster:
            addr = "dask://" + cluster.scheduler_address.removeprefix("tcp://")
            secs, out = timed(loads, jobs, executor=addr)
            # the workers' summed task time: about workers x seconds when the cores were free
            compute = cluster.scheduler.task_prefixes["dask_one"].all_durations["compute"]
        rows.append({"executor": "dask", "workers": n, "seconds": round(secs, 2),
                     "jobs_per_second": round(len(jobs) / secs, 2), "identical": out == reference,
                     "worker_compute_seconds": round(compute, 2)})
    print(json.dumps({"cpus": os.cpu_count(), "jobs": len(jobs), "workloads": a.workloads,
                      "steps_per_job": int(a.hours * 240) + 1, "results": rows}, indent=1))


if __name__ == "__main__":
    main()
