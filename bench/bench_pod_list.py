#!/usr/bin/env python3
"""Listing every pod of a large cluster through the API: what an informer's initial list costs.

The emulated API server (its own process) holds N pods shaped like a kubelet leaves them (owner
reference, two containers with requests, Running with conditions and container statuses). This
process lists them as `autoscaler run`'s pod informer does: paged, ``limit=500`` and ``continue``,
JSON, each object slimmed as it arrives. Two informers are measured, each in a fresh process:

* ``shared``: all pods, whole objects slimmed for the HPA controller (one informer serves the
  metrics API and the controller, as `autoscaler run` does with the controller on);
* ``metadata``: Running pods' metadata only (PartialObjectMetadata), the metrics API alone.

Prints JSON: wall seconds, client CPU seconds, client RSS growth (the cache), server CPU seconds.

    python bench/bench_pod_list.py [--pods 300000] [--modes shared metadata]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def rss_bytes(pid: str = "self") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def proc_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pod(i: int) -> dict:
    app = f"app-{i // 10:05d}"
    name = f"{app}-7f9c6d8b5-{i % 10:05d}"
    t = "2026-11-30T10:00:00Z"
    container = {"name": "app", "image": "registry.example/app:1.2.3",
                 "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
                 "ports": [{"containerPort": 8080, "protocol": "TCP"}]}
    sidecar = {"name": "proxy", "image": "registry.example/proxy:2.0",
               "resources": {"requests": {"cpu": "20m", "memory": "32Mi"}}}
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": f"ns-{i % 50}", "labels": {"app": app, "pod-template-hash": "7f9c6d8b5"},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": f"{app}-7f9c6d8b5",
                                          "uid": "6b1f1a4e-0000-4000-8000-000000000000", "controller": True,
                                          "blockOwnerDeletion": True}]},
        "spec": {"nodeName": f"node-{i % 10000:05d}", "containers": [container, sidecar],
                 "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
                 "serviceAccountName": "default", "schedulerName": "default-scheduler"},
        "status": {"phase": "Running", "podIP": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", "startTime": t,
                   "hostIP": "192.0.2.1", "qosClass": "Burstable",
                   "conditions": [{"type": c, "status": "True", "lastTransitionTime": t}
                                  for c in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady",
                                            "PodScheduled")],
                   "containerStatuses": [{"name": n, "ready": True, "restartCount": 0, "started": True,
                                          "image": img, "imageID": img, "containerID": f"containerd://{i:064x}",
                                          "state": {"running": {"startedAt": t}}}
                                         for n, img in (("app", "registry.example/app:1.2.3"),
                                                        ("proxy", "registry.example/proxy:2.0"))]},
    }


def serve(pods: int, directory: Path) -> None:
    """The API server process: fill the store, write the kubeconfig path, serve until killed."""
    from sim.apiserver.testing import ServerThread

    srv = ServerThread(directory).start()

    def namespaces() -> None:
        for n in range(min(pods, 50)):
            srv.store.create("namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"ns-{n}"}},
                             owned=True)

    def fill(first: int) -> None:
        for i in range(first, min(first + 5000, pods)):
            srv.store.create("pods", _pod(i), owned=True)

    srv.call(namespaces)
    for first in range(0, pods, 5000):  # in batches: the server's loop answers in between
        srv.call(lambda first=first: fill(first), timeout=600)
    (directory / "ready").write_text(str(srv.kubeconfig))
    while True:
        time.sleep(3600)


async def list_once(kubeconfig: str, mode: str) -> dict:
    from autoscaler.controller.controller import slim_pod
    from autoscaler.k8s.informer import Informer
    from autoscaler.k8s.kubeconfig import load_kubeconfig
    from autoscaler.server.run_cmd import _slim_pod, tune_gc

    tune_gc()
    gc.collect()
    kube = load_kubeconfig(kubeconfig)
    if mode == "shared":
        inf = Informer(kube, "/api/v1/pods", name="pods", transform=slim_pod)
    else:
        inf = Informer(kube, "/api/v1/pods", field_selector="status.phase=Running", metadata_only=True, name="pods",
                       transform=_slim_pod)
    rss0 = rss_bytes()
    stop = asyncio.Event()
    c0 = time.process_time()
    w0 = time.perf_counter()
    task = asyncio.create_task(inf.run(stop))
    ok = await inf.wait_synced(1200)
    wall = time.perf_counter() - w0
    cpu = time.process_time() - c0
    items = len(inf.keys())
    gc.collect()
    rss = rss_bytes() - rss0
    stop.set()
    await task
    return {"mode": mode, "synced": ok, "items": items, "wall_s": round(wall, 2), "client_cpu_s": round(cpu, 2),
            "client_rss_growth_bytes": rss, "client_rss_bytes_per_pod": round(rss / max(items, 1)),
            "pages": -(-items // inf.page_size)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pods", type=int, default=300_000)
    p.add_argument("--modes", nargs="+", default=["shared", "metadata"], choices=["shared", "metadata"])
    p.add_argument("--serve", help=argparse.SUPPRESS)
    p.add_argument("--list", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    import logging

    import structlog
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    if args.serve:
        serve(args.pods, Path(args.serve))
        return
    if args.list:
        print(json.dumps(asyncio.run(list_once(*args.list))))
        return
    with tempfile.TemporaryDirectory() as d:
        directory = Path(d)
        t0 = time.perf_counter()
        server = subprocess.Popen([sys.executable, __file__, "--serve", str(directory), "--pods", str(args.pods)],
                                  stdout=subprocess.DEVNULL)
        try:
            while not (directory / "ready").exists():
                if server.poll() is not None:
                    raise RuntimeError("API server process exited")
                time.sleep(0.5)
            fill_s = time.perf_counter() - t0
            kubeconfig = (directory / "ready").read_text()
            runs = []
            for mode in args.modes:
                s0 = proc_cpu(server.pid)
                out = subprocess.run([sys.executable, __file__, "--list", kubeconfig, mode], capture_output=True,
                                     text=True, check=True)
                run = json.loads(out.stdout)
                run["server_cpu_s"] = round(proc_cpu(server.pid) - s0, 2)
                runs.append(run)
                print(json.dumps(run), file=sys.stderr)
            server_rss = rss_bytes(str(server.pid))
        finally:
            server.kill()
            server.wait()
    print(json.dumps({"benchmark": "pod_list", "pods": args.pods, "page_size": 500, "cpus": os.cpu_count(),
                      "store_fill_s": round(fill_s, 1), "server_rss_bytes": server_rss, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
