"""Figures: the fault matrix, run once end to end (prints JSON).

`autoscaler run` (a real subprocess, HPA controller in active mode) against an emulated cluster,
with :mod:`sim.faults` proxies in front of kubelets and of the API server, and leader fail-over
between replicas. Per fault: ``survived`` (the process is up, /livez and /readyz answer 200),
``healthy_nodes_served`` (nodes the metrics API serves that should be), ``wrong_scales`` (changes
of the replicas of an HPA target sitting at its target: must be 0), and ``recovery_s`` (kubelet faults: until the
node is served again after the fault ends; API-server faults: until a pod created during the
outage is served, which includes its first two scrapes; fail-over: until a standby holds the
Lease). Takes about four minutes.

    python bench/faults.py [--only kubelets,apiserver,leader]
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import structlog

from sim.autoscaler_proc import start_autoscaler
from sim.cluster import ClusterThread, run_in_thread
from sim.faults import proxy_apiserver, proxy_kubelet
from sim.scenario import parse_scenario

RESOLUTION = 10.0
COMMON = ["--metric-resolution=10s", "--kubelet-request-timeout=3s", "--horizontal-pod-autoscaler-sync-period=1s",
          "--kubelet-max-response-size=1048576"]
BASE = {"kubelet": {"housekeepingInterval": "1s"}, "timing": {"startupDelay": "0s", "readinessDelay": "0s"}}
# web sits at its 50% target: any scale is a wrong one
WEB = {"name": "web", "replicas": 4, "requests": {"cpu": "500m", "memory": "64Mi"},
       "load": {"kind": "constant", "cores": 1.0}}
HPA = {"target": "web", "minReplicas": 1, "maxReplicas": 20, "cpuUtilization": 50}
KUBELET_FAULTS = {"hang": {}, "reset": {}, "slow-beyond-timeout": {"delay": 1.0, "size": 64},
                  "slow-within-timeout": {"delay": 0.05, "size": 4096}, "garbage": {}, "huge": {"size": 8 << 20},
                  "truncated": {}, "wrong_ca": {}, "wrong_san": {}, "flap": {"delay": 2.0}}
APISERVER_FAULTS = [("gone", {"duration": 1.0}), ("hang", {"duration": 4.0}),
                    ("watch_drop", {"delay": 0.3, "duration": 3.0}), ("status", {"status": 503, "duration": 4.0})]


def wait(pred: Callable[[], Any], timeout: float, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if v := pred():
            return v
        time.sleep(interval)
    return None


def health(port: int, path: str) -> int:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    try:
        with urllib.request.urlopen(f"https://127.0.0.1:{port}{path}", context=ctx, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def raw(c: ClusterThread, path: str) -> dict:
    out = subprocess.run(["kubectl", "--kubeconfig", str(c.kubeconfig), "get", "--raw", path], capture_output=True,
                         text=True, timeout=30)
    return json.loads(out.stdout) if out.returncode == 0 else {"items": []}


def served_nodes(c: ClusterThread) -> set[str]:
    return {i["metadata"]["name"] for i in raw(c, "/apis/metrics.k8s.io/v1beta1/nodes")["items"]}


def served_pods(c: ClusterThread) -> set[str]:
    return {i["metadata"]["name"] for i in raw(c, "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods")["items"]}


def record_replicas(c: ClusterThread, name: str) -> list[int]:
    """Every change of the Deployment's spec.replicas from now on."""
    written: list[int] = []

    def on(_t: str, o: dict, old: dict | None) -> None:
        if o["metadata"]["name"] == name and old is not None and old["spec"]["replicas"] != o["spec"]["replicas"]:
            written.append(o["spec"]["replicas"])
    c.call(lambda: c.store.subscribe("deployments.apps", on))
    return written


def survived(proc: subprocess.Popen, port: int) -> bool:
    return proc.poll() is None and health(port, "/livez") == 200 and health(port, "/readyz") == 200


def kubelets(tmp: Path) -> list[dict]:
    names = list(KUBELET_FAULTS)
    healthy = ["worker-1", "worker-2"]
    scenario = {"name": "bench-faults-kubelets", **BASE,
                "nodes": [{"namePrefix": "worker", "count": 2 + len(names), "cpu": "8", "memory": "32Gi"}],
                "workloads": [{**WEB, "replicas": 2 + len(names), "load": {"kind": "constant",
                                                                            "cores": 0.25 * (2 + len(names))}}],
                "hpas": [HPA]}
    c = run_in_thread(parse_scenario(scenario), tmp / "k")
    try:
        node_of = {f: f"worker-{i + 3}" for i, f in enumerate(names)}
        proxies = {f: c.run(proxy_kubelet(c.cluster, n, tmp / "kp")) for f, n in node_of.items()}
        proc, port = c.run(start_autoscaler(c.cluster, tmp / "k-run", controller_mode="active",
                                            extra_args=[*COMMON, "--leader-elect=false"]))
        try:
            every = set(healthy) | set(node_of.values())
            wait(lambda: served_nodes(c) == every, 60)
            written = record_replicas(c, "web")
            for f, p in proxies.items():
                p.set(f.split("-")[0], **KUBELET_FAULTS[f])
            t0 = time.monotonic()
            failing = {n for f, n in node_of.items() if not f.startswith(("slow-within", "flap"))}
            hidden = wait(lambda: not served_nodes(c) & failing, 5 * RESOLUTION)
            hidden_after = time.monotonic() - t0
            ok, served = survived(proc, port), served_nodes(c)
            for p in proxies.values():
                p.clear()
            t1 = time.monotonic()
            back: dict[str, float] = {}

            def all_back() -> bool:
                for n in served_nodes(c):
                    back.setdefault(n, time.monotonic() - t1)
                return len(back) == len(every)
            wait(all_back, 4 * RESOLUTION, interval=0.5)
            out = []
            for f, n in node_of.items():
                out.append({"fault": f"kubelet:{f}", "survived": ok, "healthy_nodes_served": len(served & (
                    set(healthy) | {node_of["slow-within-timeout"]})), "faulty_node_served": n in served,
                    "hidden_after_s": round(hidden_after, 1) if hidden and n in failing else None,
                    "wrong_scales": len(written), "recovery_s": round(back.get(n, float("nan")), 1)})
            return out
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
            for p in proxies.values():
                c.run(p.stop())
    finally:
        c.stop()


def apiserver(tmp: Path) -> list[dict]:
    scenario = {"name": "bench-faults-apiserver", **BASE,
                "nodes": [{"namePrefix": "worker", "count": 2, "cpu": "16", "memory": "64Gi"}],
                "workloads": [WEB, {"name": "probe", "replicas": 1, "requests": {"cpu": "100m", "memory": "32Mi"},
                                    "load": {"kind": "constant", "cores": 0.05}}],
                "hpas": [HPA]}
    c = run_in_thread(parse_scenario(scenario), tmp / "a")
    try:
        kc = tmp / "a-via-proxy.kubeconfig"
        proxy = c.run(proxy_apiserver(c.cluster.pki.ca, c.cluster.url, c.cluster.metrics_kubeconfig, kc, tmp / "ap"))
        proc, port = c.run(start_autoscaler(c.cluster, tmp / "a-run", controller_mode="active",
                                            extra_args=[*COMMON, "--leader-elect=false", "--kubeconfig", str(kc)]))
        try:
            wait(lambda: len(served_pods(c)) == 5, 60)
            written = record_replicas(c, "web")
            out = []
            for n, (kind, params) in enumerate(APISERVER_FAULTS, start=2):
                before = c.call(lambda: {p["metadata"]["name"] for p in c.store.list("pods", "default")[0]})
                proxy.set(kind, **params)
                proxy.drop_streams()
                c.call(lambda n=n: c.cluster.scale("default", "probe", n))
                up = survived(proc, port)
                time.sleep(params["duration"])  # the outage lasts this long (it is the fault, not a wait)
                up = up and survived(proc, port)
                t0 = time.monotonic()
                new = c.call(lambda: {p["metadata"]["name"] for p in c.store.list("pods", "default")[0]}) - before
                wait(lambda new=new: new <= served_pods(c), 6 * RESOLUTION, interval=0.5)
                out.append({"fault": f"apiserver:{kind}{params.get('status', '')}", "survived": up,
                            "healthy_nodes_served": len(served_nodes(c)), "wrong_scales": len(written),
                            "recovery_s": round(time.monotonic() - t0, 1), "injected": proxy.counts.get(kind, 0)})
            return out
        finally:
            proxy.clear()
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
            c.run(proxy.stop())
    finally:
        c.stop()


def leader(tmp: Path) -> list[dict]:
    lease_flags = ["--leader-elect=true", "--leader-elect-lease-duration=4s", "--leader-elect-renew-deadline=3s",
                   "--leader-elect-retry-period=1s"]
    scenario = {"name": "bench-faults-leader", **BASE,
                "nodes": [{"namePrefix": "worker", "count": 2, "cpu": "16", "memory": "64Gi"}],
                "workloads": [WEB], "hpas": [HPA]}
    c = run_in_thread(parse_scenario(scenario), tmp / "l")
    procs: list[subprocess.Popen] = []

    def holder() -> str:
        lease = c.call(lambda: c.store.try_get("leases.coordination.k8s.io", "kube-system", "autoscaler-hpa-controller"))
        return str(((lease or {}).get("spec") or {}).get("holderIdentity") or "")

    def start(name: str) -> tuple[subprocess.Popen, int]:
        proc, port = c.run(start_autoscaler(c.cluster, tmp / name, controller_mode="active",
                                            extra_args=[*COMMON, *lease_flags]))
        procs.append(proc)
        wait(lambda: health(port, "/readyz") == 200, 60)
        return proc, port

    try:
        written = record_replicas(c, "web")
        out = []
        leader_proc, _ = start("l0")
        wait(holder, 30)
        for i, sig in enumerate((signal.SIGKILL, signal.SIGTERM), start=1):
            standby, port = start(f"l{i}")
            old = holder()
            t0 = time.monotonic()
            leader_proc.send_signal(sig)
            wait(lambda old=old: holder() not in ("", old), 20, interval=0.02)
            out.append({"fault": f"leader:{signal.Signals(sig).name}", "survived": survived(standby, port),
                        "healthy_nodes_served": len(served_nodes(c)), "wrong_scales": len(written),
                        "recovery_s": round(time.monotonic() - t0, 2)})
            leader_proc = standby
        return out
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        c.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="kubelets,apiserver,leader")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))  # JSON alone on stdout
    results: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-faults-") as d:
        for part in args.only.split(","):
            results += {"kubelets": kubelets, "apiserver": apiserver, "leader": leader}[part](Path(d))
    print(json.dumps({"resolution_s": RESOLUTION, "faults": results}, indent=1))


if __name__ == "__main__":
    main()
