#!/usr/bin/env python3
"""Our metrics pipeline beside the upstream metrics-server, on the real control plane.

The upstream control plane (1.37) runs on loopback with our hollow nodes (default 300 nodes x 30
pods x 2 containers, pods created by the real deployment controller and bound by the real
scheduler). Then, for each kubelet source of ours (`/stats/summary`, `/metrics/resource`),
`autoscaler run --controller-mode=off` and metrics-server v0.8.0 (which reads
`/metrics/resource`) run at the same time, both scraping every kubelet each 15 s. After a warm-up,
each process's CPU time (utime+stime from /proc) is read over several cycles, and its peak RSS
(VmHWM) at the end. Both processes serve their APIs and watch nodes and pods as in a cluster.

The hollow kubelets, the control plane and both servers share this machine's cores: absolute CPU
figures are inflated by contention, the ratio ours/theirs is what this measures.

    python3 bench/bench_vs_metrics_server.py                    # 300 x 30, 6 cycles per source
    python3 bench/bench_vs_metrics_server.py --nodes 50 --cycles 3
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from autoscaler.logs import configure_logging  # noqa: E402
from sim.cluster import ClusterThread  # noqa: E402
from sim.controlplane.cluster import RealCluster  # noqa: E402
from sim.controlplane.controlplane import ControlPlaneOptions  # noqa: E402
from sim.scenario import Scenario  # noqa: E402

CLK_TCK = 100


def proc_cpu(pid: int) -> float:
    """utime + stime of ``pid`` in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    return 0


def wait_pods_ready(thread: ClusterThread, total: int, timeout: float) -> float:
    cluster = thread.cluster
    start = time.monotonic()
    while True:
        dep = thread.run(cluster.admin.get("/apis/apps/v1/namespaces/default/deployments/app"))
        ready = (dep.get("status") or {}).get("readyReplicas") or 0
        if ready >= total:
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            raise SystemExit(f"only {ready} of {total} pods ready after {timeout:.0f} s")
        print(f"  {ready}/{total} pods ready", file=sys.stderr, flush=True)
        time.sleep(5)


def measure(thread: ClusterThread, workdir: Path, label: str, flags: list[str], warmup: int, cycles: int,
            resolution: float) -> dict:
    from sim.autoscaler_proc import start_autoscaler
    from sim.controlplane.metrics_server import start_metrics_server

    cluster = thread.cluster
    res = f"{resolution:g}s"
    ours, _ = thread.run(start_autoscaler(cluster, workdir / f"ours-{label}", controller_mode="off",
                                          extra_args=["--metric-resolution", res, "--log-format", "json", *flags]))
    theirs, _ = thread.run(start_metrics_server(cluster, workdir / f"metrics-server-{label}", resolution=res))
    try:
        time.sleep(warmup * resolution)  # a benchmark's fixed measuring window, not a condition
        pids = {"ours": ours.pid, "metrics-server": theirs.proc.pid}
        before = {k: proc_cpu(p) for k, p in pids.items()}
        t0 = time.monotonic()
        time.sleep(cycles * resolution)
        wall = time.monotonic() - t0
        after = {k: proc_cpu(p) for k, p in pids.items()}
        out: dict = {}
        for k, p in pids.items():
            cpu = after[k] - before[k]
            out[k] = {"cpu_seconds_per_cycle": round(cpu / (wall / resolution), 4),
                      "cpu_ms_per_node_cycle": round(1000 * cpu / (wall / resolution) / len(cluster.scenario.nodes), 3),
                      "peak_rss_mb": round(proc_status(p, "VmHWM") / 2**20, 1),
                      "rss_mb": round(proc_status(p, "VmRSS") / 2**20, 1)}
        out["ratio_cpu"] = round(out["ours"]["cpu_seconds_per_cycle"] / out["metrics-server"]["cpu_seconds_per_cycle"], 3)
        out["ratio_peak_rss"] = round(out["ours"]["peak_rss_mb"] / out["metrics-server"]["peak_rss_mb"], 3)
        out["ours_flags"] = flags
        out["theirs_reads"] = "/metrics/resource"
        return out
    finally:
        ours.terminate()
        ours.wait(20)
        theirs.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=300)
    ap.add_argument("--pods-per-node", type=int, default=30)
    ap.add_argument("--cycles", type=int, default=6, help="measured scrape cycles per source (default 6)")
    ap.add_argument("--warmup", type=int, default=3, help="cycles before measuring (default 3)")
    ap.add_argument("--resolution", type=float, default=15.0, help="--metric-resolution of both, seconds")
    ap.add_argument("--sources", default="summary,resource", help="our kubelet sources to measure")
    ap.add_argument("--like-for-like", action="store_true",
                    help="also measure ours (resource) with --metric-history 30s: the two points per series "
                         "metrics-server keeps, instead of our default 15 minutes")
    ap.add_argument("--binaries", help="directory of the upstream programs (default: the build cache)")
    args = ap.parse_args()
    configure_logging("auto", "warning")  # logs to stderr: stdout carries only the JSON figures

    scenario = Scenario.default(nodes=args.nodes, pods_per_node=args.pods_per_node)
    scenario.events = False
    total = args.nodes * args.pods_per_node
    with tempfile.TemporaryDirectory(prefix="bench-vs-ms-") as tmp:
        workdir = Path(tmp)
        thread = ClusterThread(scenario, workdir / "cluster", cls=RealCluster,
                               options=ControlPlaneOptions(binaries=args.binaries, client_qps=500))
        thread.start_loop()
        try:
            t0 = time.monotonic()
            thread.run(thread.cluster.start(), timeout=900)
            started = time.monotonic() - t0
            print(f"control plane and {args.nodes} hollow nodes up in {started:.0f} s", file=sys.stderr, flush=True)
            ready = wait_pods_ready(thread, total, timeout=1800)
            result = {"nodes": args.nodes, "pods": total, "containers": 2 * total, "resolution_s": args.resolution,
                      "cycles": args.cycles, "cluster_start_s": round(started, 1),
                      "pods_ready_s": round(ready, 1), "sources": {}}
            configs = {s: ["--kubelet-source", s] for s in args.sources.split(",")}
            if args.like_for_like:
                configs["resource, --metric-history 30s"] = ["--kubelet-source", "resource", "--metric-history", "30s"]
            for label, flags in configs.items():
                print(f"measuring ours ({label}) beside metrics-server ...", file=sys.stderr, flush=True)
                result["sources"][label] = measure(thread, workdir, label.replace(" ", "").replace(",", "-"),
                                                   flags, args.warmup, args.cycles, args.resolution)
            result["hollow_node_failed_writes"] = thread.cluster.mirror.failed_writes
        finally:
            thread.stop()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
