#!/usr/bin/env python3
"""Scrape-cycle benchmark: collector CPU, memory and wall time per cycle at 1,000 / 5,000 nodes.

Emulated kubelets (HTTPS, 30 pods × 2 containers per node by default, both payload formats)
run in a separate process so their CPU is not counted. The collector runs here, scraping all
nodes with the production code path (aiohttp keep-alive session, decoders, WindowStore).
Steady-state cycles (connections already open) are measured after one warm-up cycle.

Prints one JSON document. Reference (metrics-server v0.9.0, 1,000 nodes × 30 pods × 2
containers, /metrics/resource, 15 s): ~0.5-0.75 ms CPU per node per cycle, ~0.5 MB RSS per node.

    python bench/bench_scrape.py                    # 1000 and 5000 nodes, both sources
    python bench/bench_scrape.py --nodes 200 --cycles 3
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

T0 = 1_700_000_000.0


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# -- the kubelet farm (separate process) -----------------------------------------------------------
class _Node:
    """One emulated kubelet's counters; every request advances its stats by 15 s."""

    def __init__(self, idx: int, pods: int, containers: int) -> None:
        self.name = f"node-{idx:05d}"
        self.n = 0
        self.keys = [(f"ns-{p % 7}", f"app-{idx:05d}-{p:03d}-7f9c6d8b5-x2k4q", f"c{c}")
                     for p in range(pods) for c in range(containers)]
        self.rates = [0.01 * (1 + (idx + i) % 50) for i in range(len(self.keys))]
        self.labels = [f'{{container="{c}",namespace="{ns}",pod="{p}"}}' for ns, p, c in self.keys]

    def advance(self) -> tuple[float, list[float]]:
        self.n += 1
        return T0 + 15.0 * self.n, [100.0 + r * 15.0 * self.n for r in self.rates]

    def resource(self) -> bytes:
        now, cpus = self.advance()
        ts = int(now * 1000)
        out = ["# HELP container_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the container in core-seconds",
               "# TYPE container_cpu_usage_seconds_total counter"]
        out += [f"container_cpu_usage_seconds_total{lab} {cpu:.6f} {ts}" for lab, cpu in zip(self.labels, cpus, strict=True)]
        out += ["# HELP container_memory_working_set_bytes [STABLE] Current working set of the container in bytes",
                "# TYPE container_memory_working_set_bytes gauge"]
        out += [f"container_memory_working_set_bytes{lab} {5.2527104e+07 + i * 4096:.8e} {ts}" for i, lab in enumerate(self.labels)]
        out += ["# HELP container_start_time_seconds [STABLE] Start time of the container since unix epoch in seconds",
                "# TYPE container_start_time_seconds gauge"]
        out += [f"container_start_time_seconds{lab} 1.6999964e+09" for lab in self.labels]
        out += ["# HELP node_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the node in core-seconds",
                "# TYPE node_cpu_usage_seconds_total counter",
                f"node_cpu_usage_seconds_total {1000 + sum(cpus):.6f} {ts}",
                "# HELP node_memory_working_set_bytes [STABLE] Current working set of the node in bytes",
                "# TYPE node_memory_working_set_bytes gauge",
                f"node_memory_working_set_bytes 1.616273408e+09 {ts}"]
        pods = sorted({k[:2] for k in self.keys})
        out += ["# HELP pod_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the pod in core-seconds",
                "# TYPE pod_cpu_usage_seconds_total counter"]
        out += [f'pod_cpu_usage_seconds_total{{namespace="{ns}",pod="{p}"}} 4.67812 {ts}' for ns, p in pods]
        out += ["# HELP pod_memory_working_set_bytes [STABLE] Current working set of the pod in bytes",
                "# TYPE pod_memory_working_set_bytes gauge"]
        out += [f'pod_memory_working_set_bytes{{namespace="{ns}",pod="{p}"}} 1.2627968e+07 {ts}' for ns, p in pods]
        out += ["# HELP resource_scrape_error [STABLE] 1 if there was an error while getting container metrics, 0 otherwise",
                "# TYPE resource_scrape_error gauge", "resource_scrape_error 0"]
        return ("\n".join(out) + "\n").encode()

    def summary(self) -> bytes:
        import orjson

        from autoscaler.k8s.timefmt import format_time

        now, cpus = self.advance()
        t = format_time(now)
        pods: dict[tuple[str, str], list] = {}
        for i, (ns, p, c) in enumerate(self.keys):
            pods.setdefault((ns, p), []).append({
                "name": c, "startTime": "2023-11-14T19:00:00Z",
                "cpu": {"time": t, "usageNanoCores": 12345678, "usageCoreNanoSeconds": round(cpus[i] * 1e9)},
                "memory": {"time": t, "availableBytes": 165724160, "usageBytes": 15400960,
                           "workingSetBytes": 52527104 + i * 4096, "rssBytes": 9392128, "pageFaults": 5781,
                           "majorPageFaults": 0}})
        return orjson.dumps({
            "node": {"nodeName": self.name, "startTime": "2023-11-01T00:00:00Z",
                     "cpu": {"time": t, "usageNanoCores": 183201458, "usageCoreNanoSeconds": round((1000 + sum(cpus)) * 1e9)},
                     "memory": {"time": t, "availableBytes": 6414852096, "usageBytes": 2513981440,
                                "workingSetBytes": 1616273408, "rssBytes": 990797824, "pageFaults": 48837519,
                                "majorPageFaults": 301}},
            "pods": [{"podRef": {"name": p, "namespace": ns, "uid": "0c9c7a3e-5d7b-4c62-9a51-5a0d5fb1f9a2"},
                      "startTime": "2023-11-14T19:00:00Z", "containers": cs} for (ns, p), cs in pods.items()]})


async def _serve(nodes: int, pods: int, containers: int, port_file: Path, cert: Path, key: Path) -> None:
    from aiohttp import web
    from aiohttp.web_server import Server

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    loop = asyncio.get_running_loop()
    ports = []
    for i in range(nodes):
        node = _Node(i, pods, containers)

        async def handler(request, node=node):  # type: ignore[no-untyped-def]
            if request.path.startswith("/stats/summary"):
                return web.Response(body=node.summary(), content_type="application/json")
            return web.Response(body=node.resource(), content_type="text/plain")

        server = await loop.create_server(Server(handler, access_log=None), "127.0.0.1", 0, ssl=ctx, backlog=128)
        ports.append(server.sockets[0].getsockname()[1])
    port_file.write_text(json.dumps(ports))
    await asyncio.Event().wait()


def serve_main(args: argparse.Namespace) -> None:
    asyncio.run(_serve(args.nodes[0], args.pods, args.containers, Path(args.port_file), Path(args.cert), Path(args.key)))


# -- the collector side ----------------------------------------------------------------------------
async def measure(nodes: int, ports: list[int], source: str, cycles: int, ca: Path) -> dict:
    from autoscaler.k8s.kubeconfig import KubeConfig
    from autoscaler.scraper.collector import Collector, ScrapeOptions
    from autoscaler.server.run_cmd import tune_gc
    from autoscaler.storage.window import WindowStore

    tune_gc()  # as `autoscaler run` does
    gc.collect()
    rss0 = rss_bytes()
    node_objs = [{"metadata": {"name": f"node-{i:05d}", "labels": {"kubernetes.io/hostname": f"node-{i:05d}"}},
                  "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                             "daemonEndpoints": {"kubeletEndpoint": {"Port": port}}}} for i, port in enumerate(ports)]
    opts = ScrapeOptions(kubelet_source=source, kubelet_use_node_status_port=True, kubelet_request_timeout=10.0)
    store = WindowStore(opts.metric_resolution, opts.metric_history)
    kube = KubeConfig(host="https://127.0.0.1:1", ca_file=str(ca), token="bench-token")
    col = Collector(opts, store, kube, nodes=lambda: node_objs)
    c0, w0 = cpu_seconds(), time.perf_counter()
    first = await col.scrape_cycle()
    warm = {"cpu_s": cpu_seconds() - c0, "wall_s": time.perf_counter() - w0, "failed": first.failed}
    per_cycle = []
    for _ in range(cycles):
        c0, w0 = cpu_seconds(), time.perf_counter()
        st = await col.scrape_cycle()
        per_cycle.append({"cpu_s": cpu_seconds() - c0, "wall_s": time.perf_counter() - w0, "failed": st.failed,
                          "succeeded": st.succeeded, "containers": st.containers})
    gc.collect()
    rss1 = rss_bytes()
    stats = store.stats
    served = sum(u is not None for u in store.pod_metrics(store.all_pod_keys()))
    await col.client.close()
    cpu = sorted(c["cpu_s"] for c in per_cycle)[len(per_cycle) // 2]
    wall = sorted(c["wall_s"] for c in per_cycle)[len(per_cycle) // 2]
    return {
        "nodes": nodes,
        "source": source,
        "containers_per_cycle": per_cycle[-1]["containers"],
        "failed_per_cycle": max(c["failed"] for c in per_cycle),
        "pods_served": served,
        "warmup_cycle": {k: round(v, 4) for k, v in warm.items()},
        "cycle_cpu_s_median": round(cpu, 4),
        "cpu_ms_per_node_cycle": round(cpu / nodes * 1000, 4),
        "millicores_per_node_at_15s": round(cpu / nodes / 15.0 * 1000, 4),
        "cycle_wall_s_median": round(wall, 3),
        "rss_bytes_per_node": round((rss1 - rss0) / nodes),
        "store_bytes_per_node": round(stats["bytes"] / nodes),
        "store_series": stats["container_series"] + stats["node_series"],
        "cycles": [{k: round(v, 4) if isinstance(v, float) else v for k, v in c.items()} for c in per_cycle],
    }


def run_one(nodes: int, source: str, args: argparse.Namespace, tmp: Path, cert: Path, key: Path, ca: Path) -> dict:
    """One measurement in a fresh collector process so RSS figures don't mix."""
    port_file = tmp / f"ports-{nodes}.json"
    farm = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--nodes", str(nodes), "--pods", str(args.pods), "--containers",
         str(args.containers), "--port-file", str(port_file), "--cert", str(cert), "--key", str(key)],
        stdout=subprocess.DEVNULL)
    try:
        deadline = time.time() + 600
        while not port_file.exists():
            if farm.poll() is not None or time.time() > deadline:
                raise RuntimeError("kubelet farm failed to start")
            time.sleep(0.2)
        time.sleep(0.2)
        out = subprocess.run(
            [sys.executable, __file__, "--measure", "--nodes", str(nodes), "--source", source, "--cycles",
             str(args.cycles), "--port-file", str(port_file), "--ca", str(ca)],
            capture_output=True, text=True, check=True)
        return json.loads(out.stdout)
    finally:
        farm.send_signal(signal.SIGTERM)
        farm.wait(30)
        port_file.unlink(missing_ok=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, nargs="+", default=[1000, 5000])
    p.add_argument("--pods", type=int, default=30)
    p.add_argument("--containers", type=int, default=2)
    p.add_argument("--sources", nargs="+", default=["summary", "resource"], choices=["summary", "resource"])
    p.add_argument("--cycles", type=int, default=3, help="measured cycles after the warm-up cycle")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--source", default="summary", help=argparse.SUPPRESS)
    p.add_argument("--port-file", help=argparse.SUPPRESS)
    p.add_argument("--cert", help=argparse.SUPPRESS)
    p.add_argument("--key", help=argparse.SUPPRESS)
    p.add_argument("--ca", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        serve_main(args)
        return
    import logging

    import structlog
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    if args.measure:
        ports = json.loads(Path(args.port_file).read_text())
        print(json.dumps(asyncio.run(measure(args.nodes[0], ports, args.source, args.cycles, Path(args.ca)))))
        return
    from autoscaler.k8s.certs import self_signed_serving

    results = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        ca_pair, serving = self_signed_serving("kubelet", ["localhost"], ["127.0.0.1"])
        cert, key, ca = tmp / "kubelet.crt", tmp / "kubelet.key", tmp / "ca.crt"
        serving.write(cert, key)
        ca.write_bytes(ca_pair.cert_pem)
        for nodes in args.nodes:
            for source in args.sources:
                results.append(run_one(nodes, source, args, tmp, cert, key, ca))
                print(json.dumps({k: v for k, v in results[-1].items() if k != "cycles"}), file=sys.stderr)
    print(json.dumps({
        "benchmark": "scrape_cycle",
        "pods_per_node": args.pods,
        "containers_per_pod": args.containers,
        "cpus": os.cpu_count(),
        "reference_metrics_server_v0_9": {"cpu_ms_per_node_cycle": [0.5, 0.75], "rss_bytes_per_node": 500_000},
        "goal": {"cpu_ms_per_node_cycle_max": 0.75, "rss_bytes_per_node_max": 250_000},
        "results": results,
    }, indent=2))


if __name__ == "__main__":
    main()
