"""Import time of `autoscaler record --prometheus` against a real Prometheus.

    python bench/bench_prometheus_import.py [--days 7] [--workloads 50] [--cluster-days 1] [--pods 6]

Two histories are backfilled with promtool (cAdvisor every 15 s, kube-state-metrics every 30 s)
and served by Prometheus on loopback: one workload of ``--pods`` pods for ``--days`` days, and a
test cluster of ``--workloads`` such workloads for ``--cluster-days``. Prints one JSON object with,
for each, the samples imported, the queries made and the wall and CPU seconds of the import (the
backfill's time is reported apart: it is the benchmark's setup, not the import).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sim.autoscaler_proc import free_port
from sim.promserver import PrometheusServer, backfill
from sim.replay.openmetrics import rename_pods, write_openmetrics
from sim.replay.prometheus import Connection, ImportOptions, import_trace
from sim.replay.synth import hpa_manifest, synthesize
from sim.replay.trace import Trace

RES = 15.0


def history(workloads: int, days: float, pods: int) -> Trace:
    """``workloads`` Deployments of ``pods`` pods each (min = max replicas), a noisy daily load."""
    day = 86400.0
    start = (time.time() // day - days - 1) * day
    tt = np.arange(int(days * day / RES)) * RES
    traces = []
    for i in range(workloads):
        demand = pods * 0.3 * (1.0 + 0.5 * np.sin(2 * np.pi * (tt / day + i / workloads)))
        hpa = hpa_manifest(f"app-{i:02d}", "bench", min_replicas=pods, max_replicas=pods)
        traces.append(rename_pods(synthesize(f"app-{i:02d}", start, RES, demand, hpa, namespace="bench", seed=i,
                                             initial_replicas=pods)))
    return Trace([t.workloads[0] for t in traces], start, traces[0].end, RES, "bench")


def measure(trace: Trace, tmp: Path, workload: str | None) -> dict:
    t0 = time.monotonic()
    files, samples = write_openmetrics(trace, tmp / "om")
    backfill(files, tmp / "tsdb")
    setup = time.monotonic() - t0
    for f in files:
        f.unlink()
    with PrometheusServer(tmp / "tsdb", free_port()) as server:
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.monotonic()
        got, queries = import_trace(Connection(server.url), ImportOptions(trace.start, trace.end, namespace="bench",
                                                                          workload=workload))
        wall = time.monotonic() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    imported = sum(len(c.t) for w in got.workloads for p in w.pods for c in p.containers)
    return {"workloads": len(got.workloads), "pods": sum(len(w.pods) for w in got.workloads),
            "days": round((trace.end - trace.start) / 86400, 3), "container_samples": imported,
            "backfilled_samples": samples, "queries": queries, "import_seconds": round(wall, 2),
            "import_cpu_seconds": round(cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 2),
            "samples_per_second": round(imported / wall), "backfill_seconds": round(setup, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--days", type=float, default=7.0)
    ap.add_argument("--workloads", type=int, default=50)
    ap.add_argument("--cluster-days", type=float, default=1.0)
    ap.add_argument("--pods", type=int, default=6)
    a = ap.parse_args()
    out = {}
    with tempfile.TemporaryDirectory() as d:
        out["one_workload"] = measure(history(1, a.days, a.pods), Path(d) / "one", "deployment/app-00")
    with tempfile.TemporaryDirectory() as d:
        out["cluster"] = measure(history(a.workloads, a.cluster_days, a.pods), Path(d) / "cluster", None)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
