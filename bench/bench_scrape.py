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
import re
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


# -- the kubelet farm (separate processes) ---------------------------------------------------------
# Each response is rendered from a per-node template: the static text (labels, names, gauges) is
# laid out once, and a request only formats the values that move (times, CPU counters) into it,
# so a few farm processes carry 10,000 nodes on a small machine. The bodies are the same bytes a
# straightforward rendering gives (same fields, order and number formats).
_MARK = re.compile(rb'"\\u0001([A-Za-z0-9_]+)\\u0001"')


def _mark(name: str) -> str:
    """A placeholder in a rendered body, spelt as orjson spells a string of the name between two U+0001."""
    return '"\\u0001' + name + '\\u0001"'


class _Template:
    """Bytes with named placeholders: ``render(values)`` joins the fixed parts and the values."""

    def __init__(self, text: bytes) -> None:
        parts = _MARK.split(text)
        self.fixed = parts[0::2]
        self.names = [p.decode() for p in parts[1::2]]

    def render(self, values: dict[str, bytes]) -> bytes:
        out = [self.fixed[0]]
        for name, fixed in zip(self.names, self.fixed[1:], strict=True):
            out.append(values[name])
            out.append(fixed)
        return b"".join(out)


class _Node:
    """One emulated kubelet's counters; every request advances its stats by 15 s."""

    def __init__(self, idx: int, pods: int, containers: int) -> None:
        self.name = f"node-{idx:05d}"
        self.n = 0
        self.keys = [(f"ns-{p % 7}", f"app-{idx:05d}-{p:03d}-7f9c6d8b5-x2k4q", f"c{c}")
                     for p in range(pods) for c in range(containers)]
        self.rates = [0.01 * (1 + (idx + i) % 50) for i in range(len(self.keys))]
        self._resource = _Template(self._resource_text())
        self._summary = _Template(self._summary_text())

    def advance(self) -> tuple[float, list[float]]:
        self.n += 1
        return T0 + 15.0 * self.n, [100.0 + r * 15.0 * self.n for r in self.rates]

    def _resource_text(self) -> bytes:
        labels = [f'{{container="{c}",namespace="{ns}",pod="{p}"}}' for ns, p, c in self.keys]
        ts = _mark("ts")
        out = ["# HELP container_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the container in core-seconds",
               "# TYPE container_cpu_usage_seconds_total counter"]
        out += [f"container_cpu_usage_seconds_total{lab} {_mark(f'c{i}')} {ts}" for i, lab in enumerate(labels)]
        out += ["# HELP container_memory_working_set_bytes [STABLE] Current working set of the container in bytes",
                "# TYPE container_memory_working_set_bytes gauge"]
        out += [f"container_memory_working_set_bytes{lab} {5.2527104e+07 + i * 4096:.8e} {ts}" for i, lab in enumerate(labels)]
        out += ["# HELP container_start_time_seconds [STABLE] Start time of the container since unix epoch in seconds",
                "# TYPE container_start_time_seconds gauge"]
        out += [f"container_start_time_seconds{lab} 1.6999964e+09" for lab in labels]
        out += ["# HELP node_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the node in core-seconds",
                "# TYPE node_cpu_usage_seconds_total counter",
                f"node_cpu_usage_seconds_total {_mark('node')} {ts}",
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

    def _summary_text(self) -> bytes:
        import orjson

        def mark(name: str) -> str:
            return f"\x01{name}\x01"

        t = mark("t")
        pods: dict[tuple[str, str], list] = {}
        for i, (ns, p, c) in enumerate(self.keys):
            pods.setdefault((ns, p), []).append({
                "name": c, "startTime": "2023-11-14T19:00:00Z",
                "cpu": {"time": t, "usageNanoCores": 12345678, "usageCoreNanoSeconds": mark(f"c{i}")},
                "memory": {"time": t, "availableBytes": 165724160, "usageBytes": 15400960,
                           "workingSetBytes": 52527104 + i * 4096, "rssBytes": 9392128, "pageFaults": 5781,
                           "majorPageFaults": 0}})
        return orjson.dumps({
            "node": {"nodeName": self.name, "startTime": "2023-11-01T00:00:00Z",
                     "cpu": {"time": t, "usageNanoCores": 183201458, "usageCoreNanoSeconds": mark("node")},
                     "memory": {"time": t, "availableBytes": 6414852096, "usageBytes": 2513981440,
                                "workingSetBytes": 1616273408, "rssBytes": 990797824, "pageFaults": 48837519,
                                "majorPageFaults": 301}},
            "pods": [{"podRef": {"name": p, "namespace": ns, "uid": "0c9c7a3e-5d7b-4c62-9a51-5a0d5fb1f9a2"},
                      "startTime": "2023-11-14T19:00:00Z", "containers": cs} for (ns, p), cs in pods.items()]})

    def resource(self) -> bytes:
        now, cpus = self.advance()
        values = {f"c{i}": b"%.6f" % cpu for i, cpu in enumerate(cpus)}
        values["ts"] = b"%d" % int(now * 1000)
        values["node"] = b"%.6f" % (1000 + sum(cpus))
        return self._resource.render(values)

    def summary(self) -> bytes:
        from autoscaler.k8s.timefmt import format_time

        now, cpus = self.advance()
        values = {f"c{i}": b"%d" % round(cpu * 1e9) for i, cpu in enumerate(cpus)}
        values["t"] = b'"' + format_time(now).encode() + b'"'
        values["node"] = b"%d" % round((1000 + sum(cpus)) * 1e9)
        return self._summary.render(values)


#: nodes per farm process: its listening and accepted sockets must fit its file-descriptor limit
NODES_PER_FARM = 2500


async def _serve(indices: range, pods: int, containers: int, port_file: Path, cert: Path, key: Path) -> None:
    from aiohttp import web
    from aiohttp.web_server import Server

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    loop = asyncio.get_running_loop()
    ports = []
    for i in indices:
        node = _Node(i, pods, containers)

        async def handler(request, node=node):  # type: ignore[no-untyped-def]
            if request.path.startswith("/stats/summary"):
                return web.Response(body=node.summary(), content_type="application/json")
            return web.Response(body=node.resource(), content_type="text/plain")

        server = await loop.create_server(Server(handler, access_log=None), "127.0.0.1", 0, ssl=ctx, backlog=512)
        ports.append(server.sockets[0].getsockname()[1])
    tmp = port_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(ports))
    tmp.rename(port_file)
    await asyncio.Event().wait()


#: the farm's niceness: the emulated kubelets stand for other machines, so the collector being
#: measured gets the CPU first and the farm the rest (on 2 cores, four busy farm processes would
#: otherwise take most of the collector's core in every burst)
FARM_NICENESS = 10


def serve_main(args: argparse.Namespace) -> None:
    os.nice(FARM_NICENESS)
    first, count = args.first, args.nodes[0]
    asyncio.run(_serve(range(first, first + count), args.pods, args.containers, Path(args.port_file), Path(args.cert),
                       Path(args.key)))


# -- the collector side ----------------------------------------------------------------------------
def error_kinds(errors: dict[str, str]) -> dict[str, int]:
    """How many nodes failed for each reason (the text up to its first digit or colon)."""
    kinds: dict[str, int] = {}
    for text in errors.values():
        kind = re.split(r"[0-9:]", text, maxsplit=1)[0].strip()
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


async def measure(nodes: int, ports: list[int], source: str, cycles: int, ca: Path, profile: str | None = None) -> dict:
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
    profilers = {}
    if profile:
        import cProfile

        profilers = {"first": cProfile.Profile(), "steady": cProfile.Profile()}
    c0, w0 = cpu_seconds(), time.perf_counter()
    if profilers:
        profilers["first"].enable()
    first = await col.scrape_cycle()
    if profilers:
        profilers["first"].disable()
    warm = {"cpu_s": cpu_seconds() - c0, "wall_s": time.perf_counter() - w0, "failed": first.failed,
            "errors": error_kinds(first.errors)}
    per_cycle = []
    for _ in range(cycles):
        c0, w0 = cpu_seconds(), time.perf_counter()
        if profilers:
            profilers["steady"].enable()
        st = await col.scrape_cycle()
        if profilers:
            profilers["steady"].disable()
        per_cycle.append({"cpu_s": cpu_seconds() - c0, "wall_s": time.perf_counter() - w0, "failed": st.failed,
                          "succeeded": st.succeeded, "containers": st.containers, "errors": error_kinds(st.errors)})
    for name, prof in profilers.items():
        prof.dump_stats(f"{profile}-{name}.prof")
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
        "warmup_cycle": {k: round(v, 4) if isinstance(v, float) else v for k, v in warm.items()},
        "cycle_cpu_s_median": round(cpu, 4),
        "cpu_ms_per_node_cycle": round(cpu / nodes * 1000, 4),
        "millicores_per_node_at_15s": round(cpu / nodes / 15.0 * 1000, 4),
        "cycle_wall_s_median": round(wall, 3),
        "rss_bytes_per_node": round((rss1 - rss0) / nodes),
        "store_bytes_per_node": round(stats["bytes"] / nodes),
        "store_series": stats["container_series"] + stats["node_series"],
        "cycles": [{k: round(v, 4) if isinstance(v, float) else v for k, v in c.items()} for c in per_cycle],
    }


def start_farm(nodes: int, args: argparse.Namespace, tmp: Path, cert: Path, key: Path) -> tuple[list, list[int]]:
    """Kubelet processes of up to NODES_PER_FARM nodes each; returns them and every node's port."""
    farms, files = [], []
    for k, first in enumerate(range(0, nodes, NODES_PER_FARM)):
        port_file = tmp / f"ports-{nodes}-{k}.json"
        port_file.unlink(missing_ok=True)
        files.append(port_file)
        farms.append(subprocess.Popen(
            [sys.executable, __file__, "--serve", "--nodes", str(min(NODES_PER_FARM, nodes - first)), "--first",
             str(first), "--pods", str(args.pods), "--containers", str(args.containers), "--port-file", str(port_file),
             "--cert", str(cert), "--key", str(key)], stdout=subprocess.DEVNULL))
    deadline = time.time() + 900
    while not all(f.exists() for f in files):
        if any(f.poll() is not None for f in farms) or time.time() > deadline:
            stop_farm(farms)
            raise RuntimeError("kubelet farm failed to start")
        time.sleep(0.2)
    return farms, [port for f in files for port in json.loads(f.read_text())]


def stop_farm(farms: list) -> None:
    for farm in farms:
        farm.send_signal(signal.SIGTERM)
    for farm in farms:
        farm.wait(30)


def run_one(nodes: int, source: str, args: argparse.Namespace, tmp: Path, cert: Path, key: Path, ca: Path) -> dict:
    """One measurement in a fresh collector process (so RSS figures don't mix) against a fresh farm."""
    farms, ports = start_farm(nodes, args, tmp, cert, key)
    try:
        port_file = tmp / f"ports-{nodes}.json"
        port_file.write_text(json.dumps(ports))
        cmd = [sys.executable, __file__, "--measure", "--nodes", str(nodes), "--source", source, "--cycles",
               str(args.cycles), "--port-file", str(port_file), "--ca", str(ca)]
        if args.profile:
            cmd += ["--profile", f"{args.profile}-{nodes}-{source}"]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        result = json.loads(out.stdout)
        result["farm_processes"] = len(farms)
        return result
    finally:
        stop_farm(farms)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, nargs="+", default=[1000, 5000])
    p.add_argument("--pods", type=int, default=30)
    p.add_argument("--containers", type=int, default=2)
    p.add_argument("--sources", nargs="+", default=["summary", "resource"], choices=["summary", "resource"])
    p.add_argument("--cycles", type=int, default=3, help="measured cycles after the warm-up cycle")
    p.add_argument("--profile", metavar="PREFIX", help="write a cProfile of the collector to PREFIX-<nodes>-<source>")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
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
        print(json.dumps(asyncio.run(measure(args.nodes[0], ports, args.source, args.cycles, Path(args.ca), args.profile))))
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
