"""Benchmark of the emulated kubelets: throughput and cost of /metrics/resource and /stats/summary.

A child process serves N emulated kubelets (one TLS socket each, P pods × C containers per node,
shared load models); this process scrapes them with keep-alive aiohttp clients for a fixed time
and reads the child's CPU time and RSS from /proc. Prints one JSON document:

  python bench/bench_kubelet.py                       # 200 nodes for throughput, 5000 for RSS
  python bench/bench_kubelet.py --nodes 50 --duration 3 --rss-nodes 0

``projected_cores_5000_nodes_15s`` = CPU seconds per /metrics/resource request × 5000 / 15: what
serving a 5,000-node cluster scraped every 15 s costs the emulator (goal: under one core).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TOKEN = "bench-token"


def _proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _proc_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


# --- server (child process) -------------------------------------------------------------------


async def serve(nodes: int, pods: int, containers: int, state: Path) -> None:
    from autoscaler.k8s.certs import generate_ca, issue_cert
    from sim.clock import Clock
    from sim.kubelet.server import KubeletAuth, KubeletFleet, compact_tls_buffers
    from sim.kubelet.stats import ContainerRow, NodeStats
    from sim.loadmodel import Constant, WorkloadLoad

    if nodes >= 500:
        compact_tls_buffers()  # as EmulatedCluster does for large clusters
    ca = generate_ca("bench-ca")
    ca.write(state / "ca.crt", state / "ca.key")
    issue_cert(ca, "kubelet", ip_addresses=["127.0.0.1"], server=True).write(state / "k.crt", state / "k.key")
    clock = Clock()

    class User:
        username = "system:serviceaccount:kube-system:metrics-server"

    user = User()
    auth = KubeletAuth(lambda t: user if t == TOKEN else None, lambda u, v, s, n: (True, ""),
                       lambda cn, g: user, clock)
    fleet = KubeletFleet(state / "k.crt", state / "k.key", ca.cert_pem, auth, clock, housekeeping_interval=10.0)
    now = clock.now()
    loads = [WorkloadLoad("default", f"app-{i}", Constant(cores=2.0, noise=0.1, seed=i), now) for i in range(100)]
    ports = []
    for n in range(nodes):
        stats = NodeStats(f"node-{n}", now - 3600)
        for p in range(pods):
            load = loads[(n * pods + p) % len(loads)]
            name = f"{load.name}-{n:05d}-{p:02d}"
            for c in range(containers):
                row = ContainerRow("default", name, f"uid-{n}-{p}", f"c{c}", now - 600, now - 600, workload=load,
                                   frac=1.0 / containers, cpu_limit=1.0, memory_limit=512 * 2**20)
                row.ready_since = now - 590
                stats.add(row, now)
            load.ready_changed(now - 590, +1)
        kubelet = await fleet.add(stats.node_name, stats, phase=n * 0.01)
        ports.append(kubelet.port)
    print(json.dumps({"ports": ports, "ca": str(state / "ca.crt")}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await fleet.stop()


# --- client (parent) --------------------------------------------------------------------------


async def scrape(ports: list[int], ca: str, path: str, duration: float, concurrency: int) -> tuple[int, int]:
    import aiohttp

    if len(ports) >= 500:
        from sim.kubelet.server import compact_tls_buffers

        compact_tls_buffers()  # the client side holds one TLS connection per node too
    ctx = ssl.create_default_context(cafile=ca)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    done = 0
    size = 0
    conn = aiohttp.TCPConnector(ssl=ctx, limit=0, limit_per_host=1)
    async with aiohttp.ClientSession(connector=conn) as session:
        # warm the keep-alive connections first (bounded: thousands of parallel handshakes time out)
        sem = asyncio.Semaphore(64)

        async def warm(port: int) -> None:
            async with sem, session.get(f"https://127.0.0.1:{port}/healthz", headers=headers) as r:
                await r.read()

        await asyncio.gather(*(warm(p) for p in ports))
        if duration <= 0:  # one pass over every node instead of a timed run
            async def once(port: int) -> int:
                async with sem, session.get(f"https://127.0.0.1:{port}{path}", headers=headers) as r:
                    return len(await r.read())

            sizes = await asyncio.gather(*(once(p) for p in ports))
            return len(sizes), sum(sizes)
        deadline = time.monotonic() + duration

        async def worker(offset: int) -> None:
            nonlocal done, size
            i = offset
            while time.monotonic() < deadline:
                async with session.get(f"https://127.0.0.1:{ports[i % len(ports)]}{path}", headers=headers) as r:
                    body = await r.read()
                    if r.status != 200:
                        raise RuntimeError(f"{path}: HTTP {r.status}")
                done += 1
                size += len(body)
                i += concurrency

        await asyncio.gather(*(worker(k) for k in range(concurrency)))
    return done, size


def run_child(nodes: int, pods: int, containers: int, state: Path) -> tuple[subprocess.Popen, dict]:
    child = subprocess.Popen([sys.executable, __file__, "--serve", str(nodes), "--pods-per-node", str(pods),
                              "--containers", str(containers), "--state", str(state)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    info = json.loads(child.stdout.readline())
    return child, info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=200, help="nodes for the throughput runs")
    ap.add_argument("--rss-nodes", type=int, default=5000, help="nodes for the memory run (0 = skip)")
    ap.add_argument("--pods-per-node", type=int, default=30)
    ap.add_argument("--containers", type=int, default=2)
    ap.add_argument("--duration", type=float, default=5.0, help="seconds per endpoint")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--state", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve is not None:
        asyncio.run(serve(args.serve, args.pods_per_node, args.containers, Path(args.state)))
        return

    result: dict = {"pods_per_node": args.pods_per_node, "containers_per_pod": args.containers,
                    "throughput_nodes": args.nodes, "concurrency": args.concurrency}
    if args.nodes:
        with tempfile.TemporaryDirectory() as tmp:
            child, info = run_child(args.nodes, args.pods_per_node, args.containers, Path(tmp))
            try:
                for name, path in (("metrics_resource", "/metrics/resource"),
                                   ("stats_summary", "/stats/summary?only_cpu_and_memory=true")):
                    cpu0, t0 = _proc_cpu(child.pid), time.monotonic()
                    n, size = asyncio.run(scrape(info["ports"], info["ca"], path, args.duration, args.concurrency))
                    cpu, wall = _proc_cpu(child.pid) - cpu0, time.monotonic() - t0
                    result[name] = {"requests": n, "requests_per_second": round(n / wall, 1),
                                    "server_cpu_seconds_per_request": round(cpu / max(n, 1), 6),
                                    "mean_body_bytes": size // max(n, 1)}
                per_req = result["metrics_resource"]["server_cpu_seconds_per_request"]
                result["projected_cores_5000_nodes_15s"] = round(per_req * 5000 / 15, 3)
            finally:
                child.communicate("")
    if args.rss_nodes:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.monotonic()
            child, info = run_child(args.rss_nodes, args.pods_per_node, args.containers, Path(tmp))
            try:
                started = time.monotonic() - t0
                cpu0, t1 = _proc_cpu(child.pid), time.monotonic()
                n, _ = asyncio.run(scrape(info["ports"], info["ca"], "/metrics/resource", 0, args.concurrency))
                sweep = time.monotonic() - t1
                result["rss"] = {"nodes": args.rss_nodes, "rss_bytes": _proc_rss(child.pid),
                                 "rss_mib": round(_proc_rss(child.pid) / 2**20, 1),
                                 "startup_seconds": round(started, 2),
                                 "one_scrape_of_every_node_seconds": round(sweep, 2),
                                 "server_cpu_seconds_for_that_sweep": round(_proc_cpu(child.pid) - cpu0, 2)}
            finally:
                child.communicate("")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
