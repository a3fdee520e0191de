"""Load: the metrics API of a real `autoscaler run` process under many concurrent clients (prints JSON).

Starts an emulated cluster (``--nodes`` × ``--pods-per-node`` pods in ``--namespaces`` namespaces,
on the real clock) in this process and `python -m autoscaler run` as a subprocess, wired as
`autoscaler sim up --with-autoscaler` wires it (serving certificate from the cluster CA, the
metrics-server ServiceAccount's kubeconfig, the front-proxy CA read from
kube-system/extension-apiserver-authentication, authorization by SubjectAccessReview). Once every
pod has metrics, a load generator in a third process (so the server's CPU is its own) opens
``--clients`` keep-alive HTTPS connections, each presenting the front-proxy client certificate
and X-Remote-User/X-Remote-Group as kube-apiserver's aggregator does, and for ``--seconds`` per
endpoint sends requests back to back: node and pod lists (all namespaces, one namespace) and
single gets, on v1beta1 and v1. Every response must be 200 with the expected number of items.

Reports per endpoint: requests, errors, requests/s, p50/p90/p99/max latency; and the server's CPU
seconds (utime+stime from /proc/<pid>/stat) during each phase, its start-up time (process start
to the first full pod list) and its peak RSS (VmHWM).

    python bench/load_metrics_api.py [--nodes 100] [--pods-per-node 30] [--clients 100] [--seconds 10]
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
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

HEADERS = {"X-Remote-User": "system:serviceaccount:kube-system:horizontal-pod-autoscaler",
           "X-Remote-Group": "system:serviceaccounts", "Accept": "application/json"}
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def status_kb(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def endpoints(namespaces: int, pods_per_namespace: int, nodes: int, pod: tuple[str, str], node: str
              ) -> list[tuple[str, str, int]]:
    """(name, path, items expected; 0 = a single object)."""
    out = []
    for v in ("v1beta1", "v1"):
        base = f"/apis/metrics.k8s.io/{v}"
        out += [(f"{v} list nodes", f"{base}/nodes", nodes),
                (f"{v} list pods (all namespaces)", f"{base}/pods", namespaces * pods_per_namespace),
                (f"{v} list pods (one namespace)", f"{base}/namespaces/{pod[0]}/pods", pods_per_namespace),
                (f"{v} get pod", f"{base}/namespaces/{pod[0]}/pods/{pod[1]}", 0),
                (f"{v} get node", f"{base}/nodes/{node}", 0)]
    return out


# -- the load generator (its own process) ------------------------------------------------------------

async def client(s: Any, url: str, expect: int, stop_at: float, lat: list[float], errors: list[str]) -> None:
    """One keep-alive connection sending requests back to back until ``stop_at``."""
    import aiohttp
    import orjson

    while time.monotonic() < stop_at:
        t = time.perf_counter()
        try:
            async with s.get(url, headers=HEADERS) as r:
                body = await r.read()
                status = r.status
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            continue
        lat.append(time.perf_counter() - t)
        if status != 200:
            errors.append(f"HTTP {status}: {body[:200]!r}")
        elif expect and len(orjson.loads(body)["items"]) != expect:
            errors.append(f"{len(orjson.loads(body)['items'])} items, expected {expect}")


async def generate(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    import aiohttp
    import numpy as np

    ctx = ssl.create_default_context(cafile=cfg["ca"])
    ctx.load_cert_chain(cfg["cert"], cfg["key"])
    url, pid = cfg["url"], cfg["server_pid"]
    sessions = [aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx, limit=1)) for _ in range(cfg["clients"])]
    results = []
    try:
        for name, path, expect in cfg["endpoints"]:
            async def warm(s: aiohttp.ClientSession, path: str = path) -> None:
                async with s.get(url + path, headers=HEADERS) as r:
                    await r.read()

            # warm-up: every connection's TLS handshake, the server's authorization cache
            await asyncio.gather(*(warm(s) for s in sessions))
            lat: list[float] = []
            errors: list[str] = []
            cpu0, t0, gen0 = cpu_seconds(pid), time.perf_counter(), time.process_time()
            stop_at = time.monotonic() + cfg["seconds"]
            await asyncio.gather(*(client(s, url + path, expect, stop_at, lat, errors) for s in sessions))
            wall, cpu = time.perf_counter() - t0, cpu_seconds(pid) - cpu0
            a = np.array(lat) * 1000
            results.append({
                "endpoint": name, "path": path, "items": expect or 1, "clients": cfg["clients"],
                "requests": len(lat), "errors": len(errors), "error_samples": sorted(set(errors))[:3],
                "rps": round(len(lat) / wall, 1),
                **{f"p{q}_ms": round(float(np.percentile(a, q)), 1) for q in (50, 90, 99)},
                "max_ms": round(float(a.max()), 1),
                "server_cpu_seconds": round(cpu, 2), "server_cpu_ms_per_request": round(cpu / max(1, len(lat)) * 1000, 2),
                "generator_cpu_seconds": round(time.process_time() - gen0, 2), "wall_seconds": round(wall, 2),
            })
    finally:
        for s in sessions:
            await s.close()
    return results


# -- the orchestrator ------------------------------------------------------------------------------

def scenario(nodes: int, per_node: int, namespaces: int) -> Any:
    from sim.kubelet.pods import PodTiming
    from sim.loadmodel import Constant
    from sim.nodes import NodeSpec
    from sim.scenario import Scenario, WorkloadSpec

    containers = [{"name": "app", "image": "app:1", "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]
    total = nodes * per_node
    per_ns = total // namespaces
    workloads = [WorkloadSpec(f"app-{i}", namespace=f"ns-{i}", containers=containers, replicas=per_ns,
                              load=Constant(cores=0.005 * per_ns)) for i in range(namespaces)]
    return Scenario(name="load", nodes=[NodeSpec(f"worker-{i:03d}", cpu="32", memory="128Gi", pods=per_node + 5)
                                        for i in range(nodes)],
                    workloads=workloads, timing=PodTiming(startup=0, readiness=0), events=False)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=100)
    p.add_argument("--pods-per-node", type=int, default=30)
    p.add_argument("--namespaces", type=int, default=10)
    p.add_argument("--clients", type=int, default=100, help="concurrent keep-alive connections")
    p.add_argument("--seconds", type=float, default=10.0, help="load per endpoint")
    p.add_argument("--generate", help=argparse.SUPPRESS)  # internal: run the load generator with this JSON config
    a = p.parse_args()
    if a.generate:
        print(json.dumps(asyncio.run(generate(json.loads(a.generate)))))
        return 0

    import logging

    import orjson
    import structlog
    import urllib3

    from sim.autoscaler_proc import start_autoscaler
    from sim.cluster import run_in_thread

    logging.basicConfig(level=logging.ERROR)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))  # stdout is the JSON
    pods_per_ns = a.nodes * a.pods_per_node // a.namespaces
    total = pods_per_ns * a.namespaces
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        t0 = time.perf_counter()
        cluster = run_in_thread(scenario(a.nodes, a.pods_per_node, a.namespaces), tmp / "cluster")
        proc = None
        try:
            cluster_s = time.perf_counter() - t0
            pki = cluster.cluster.pki
            pki.front_proxy_client.write(tmp / "proxy.crt", tmp / "proxy.key")
            (tmp / "ca.crt").write_bytes(pki.ca.cert_pem)
            t_start = time.perf_counter()
            proc, port = cluster.run(start_autoscaler(cluster.cluster, tmp / "autoscaler", controller_mode="off"))
            url = f"https://127.0.0.1:{port}"
            http = urllib3.PoolManager(cert_reqs="CERT_REQUIRED", ca_certs=str(tmp / "ca.crt"),
                                       cert_file=str(tmp / "proxy.crt"), key_file=str(tmp / "proxy.key"))
            serving_s = ready_s = None
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:  # until every pod has metrics (two scrapes)
                if proc.poll() is not None:
                    raise RuntimeError(f"autoscaler run exited with {proc.returncode}; see its log")
                try:
                    r = http.request("GET", url + "/apis/metrics.k8s.io/v1beta1/pods", headers=HEADERS, timeout=10)
                except urllib3.exceptions.HTTPError:
                    time.sleep(0.2)
                    continue
                serving_s = serving_s or time.perf_counter() - t_start
                if r.status == 200 and len(orjson.loads(r.data)["items"]) == total:
                    ready_s = time.perf_counter() - t_start
                    break
                time.sleep(0.2)
            if ready_s is None:
                raise RuntimeError("not every pod got metrics within 180 s")
            rss_idle_kb = status_kb(proc.pid, "VmRSS")
            pod = json.loads(http.request("GET", url + "/apis/metrics.k8s.io/v1/namespaces/ns-0/pods",
                                          headers=HEADERS).data)["items"][0]["metadata"]["name"]
            cfg = {"url": url, "ca": str(tmp / "ca.crt"), "cert": str(tmp / "proxy.crt"), "key": str(tmp / "proxy.key"),
                   "server_pid": proc.pid, "clients": a.clients, "seconds": a.seconds,
                   "endpoints": endpoints(a.namespaces, pods_per_ns, a.nodes, ("ns-0", pod), "worker-000")}
            cpu0 = cpu_seconds(proc.pid)
            gen = subprocess.run([sys.executable, __file__, "--generate", json.dumps(cfg)], capture_output=True,
                                 text=True, check=True)
            results = json.loads(gen.stdout)
            out = {
                "benchmark": "metrics API under concurrent load", "nodes": a.nodes, "pods": total,
                "namespaces": a.namespaces, "clients": a.clients, "seconds_per_endpoint": a.seconds,
                "cpus": os.cpu_count(), "cluster_start_seconds": round(cluster_s, 1),
                "server_serving_seconds": round(serving_s or 0, 2), "server_all_pods_ready_seconds": round(ready_s, 2),
                "requests": sum(r["requests"] for r in results), "errors": sum(r["errors"] for r in results),
                "server_cpu_seconds_under_load": round(cpu_seconds(proc.pid) - cpu0, 1),
                "server_rss_mb_idle": round(rss_idle_kb / 1024, 1),
                "server_rss_mb_end": round(status_kb(proc.pid, "VmRSS") / 1024, 1),
                "server_peak_rss_mb": round(status_kb(proc.pid, "VmHWM") / 1024, 1),
                "server_threads": status_kb(proc.pid, "Threads"),
                "endpoints": results,
            }
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(30)
            cluster.stop()
    print(json.dumps(out, indent=2))
    return 0 if out["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
