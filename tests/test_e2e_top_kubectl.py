"""End to end: `autoscaler run` on the emulated cluster, registered by an APIService, read by kubectl.

The emulated kube-apiserver proxies metrics.k8s.io to our server (front-proxy certificate,
X-Remote-* headers); our server scrapes the emulated kubelets. The real `kubectl top` (the one on
PATH plus versioned releases) must report what the load model implies, within the rate window's
error, and a broken kubelet must not hide the others.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from test_metrics_api_support import MetricsServerThread, kubectl, register_apiservice, run_args, wait_for

from autoscaler.k8s.quantity import milli_value
from sim.cluster import run_in_thread
from sim.scenario import parse_scenario
from tests.kubectls import kubectl_set

SCENARIO = {
    "name": "e2e-top",
    "kubelet": {"housekeepingInterval": "2s"},
    "timing": {"startupDelay": "0s", "readinessDelay": "0s"},
    "nodes": [
        {"namePrefix": "worker", "count": 3, "cpu": "8", "memory": "32Gi", "labels": {"pool": "general"}},
        {"name": "broken-1", "cpu": "8", "memory": "32Gi", "labels": {"pool": "flaky"}, "fault": "http500"},
    ],
    "workloads": [
        {"name": "web", "replicas": 3, "labels": {"app": "web", "tier": "front"},
         "nodeSelector": {"pool": "general"},
         "containers": [{"name": "app", "requests": {"cpu": "400m", "memory": "64Mi"}},
                        {"name": "sidecar", "requests": {"cpu": "100m", "memory": "16Mi"}}],
         "load": {"kind": "constant", "cores": 1.5}},
        {"name": "batch", "namespace": "jobs", "replicas": 2, "labels": {"app": "batch"},
         "nodeSelector": {"pool": "general"},
         "requests": {"cpu": "100m", "memory": "32Mi"}, "load": {"kind": "constant", "cores": 0.8}},
    ],
}
# What the load model implies: total demand spread over ready pods, split by CPU request.
POD_MILLI = {("default", "web"): 500, ("jobs", "batch"): 400}
CONTAINER_MILLI = {"app": 400, "sidecar": 100, "batch": 400}
SYSTEM_MILLI = 80  # the emulated node's own (non-pod) usage
TOLERANCE = 0.12  # rate over one ~10 s window of 2 s-granular kubelet stats


def close(value: float, expected: float, tol: float = TOLERANCE) -> bool:
    return abs(value - expected) <= tol * expected


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e-top")
    cluster = run_in_thread(parse_scenario(SCENARIO), tmp / "cluster")
    server = None
    try:
        server = MetricsServerThread(run_args(cluster, tmp)).start()
        register_apiservice(cluster, server.port)
        kc = cluster.kubeconfig

        def all_metrics():
            nodes = json.loads(kubectl(kc, "get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes").stdout)["items"]
            pods = json.loads(kubectl(kc, "get", "--raw", "/apis/metrics.k8s.io/v1beta1/pods").stdout)["items"]
            return len(nodes) >= 3 and len(pods) >= 5

        wait_for(all_metrics, 90, "metrics for 3 nodes and 5 pods through the aggregator", interval=1.0)
        yield cluster, server
    finally:
        if server is not None:
            server.stop()
        cluster.stop()


def _rows(out: str) -> list[list[str]]:
    return [line.split() for line in out.strip().splitlines()]


def _milli(cpu: str) -> int:
    assert cpu.endswith("m"), cpu
    return int(cpu[:-1])


def _milli_of(quantity: str) -> float:
    return milli_value(quantity)


def _pods_by_node(kc: Path) -> dict[str, list[tuple[str, str]]]:
    pods = json.loads(kubectl(kc, "get", "pods", "-A", "-o", "json").stdout)["items"]
    out: dict[str, list[tuple[str, str]]] = {}
    for p in pods:
        out.setdefault(p["spec"]["nodeName"], []).append((p["metadata"]["namespace"], p["metadata"]["labels"]["app"]))
    return out


def test_kubectl_top_nodes_matches_load_model(env):
    cluster, _ = env
    kc = cluster.kubeconfig
    placed = _pods_by_node(kc)
    rows = _rows(kubectl(kc, "top", "nodes").stdout)
    assert rows[0][:2] == ["NAME", "CPU(cores)"]
    by_name = {r[0]: r for r in rows[1:]}
    assert set(by_name) == {"worker-1", "worker-2", "worker-3", "broken-1"}
    for node in ("worker-1", "worker-2", "worker-3"):
        expected = SYSTEM_MILLI + sum(POD_MILLI[(ns, "web" if app == "web" else "batch")] for ns, app in placed.get(node, []))
        assert close(_milli(by_name[node][1]), expected), (node, by_name[node], expected)
        assert by_name[node][3].endswith("Mi")
    # The broken kubelet's node is listed by kubectl but has no metrics; the others are served.
    assert by_name["broken-1"][1:] == ["<unknown>"] * 4

    # -l is applied by the server (label selector on NodeMetrics); --sort-by orders by usage.
    rows = _rows(kubectl(kc, "top", "nodes", "-l", "pool=general", "--sort-by=cpu", "--no-headers").stdout)
    cpus = [_milli(r[1]) for r in rows]
    assert [r[0] for r in rows] and {r[0] for r in rows} == {"worker-1", "worker-2", "worker-3"}
    assert cpus == sorted(cpus, reverse=True)


@pytest.mark.parametrize("release", kubectl_set(), ids=str)
def test_kubectl_top_pods_all_namespaces_with_containers(env, release):
    binary = release.exe()
    cluster, _ = env
    kc = cluster.kubeconfig
    rows = _rows(kubectl(kc, "top", "pods", "-A", "--containers", binary=binary).stdout)
    assert rows[0] == ["NAMESPACE", "POD", "NAME", "CPU(cores)", "MEMORY(bytes)"]
    seen = {}
    for ns, pod, container, cpu, mem in rows[1:]:
        seen[(ns, pod, container)] = (_milli(cpu), mem)
        assert close(_milli(cpu), CONTAINER_MILLI[container]), (ns, pod, container, cpu)
    assert sorted({(ns, c) for ns, _, c in seen}) == [("default", "app"), ("default", "sidecar"), ("jobs", "batch")]
    assert len(seen) == 3 * 2 + 2
    # Memory: 64 MiB per pod (the model's base), split by CPU request inside web pods.
    assert {m for (ns, _, c), (_, m) in seen.items() if c == "batch"} == {"64Mi"}
    assert {m for (ns, _, c), (_, m) in seen.items() if c == "app"} == {"51Mi"}


def test_kubectl_top_pods_selector_sort_and_namespace(env):
    cluster, _ = env
    kc = cluster.kubeconfig
    rows = _rows(kubectl(kc, "top", "pods", "-n", "default", "-l", "app=web,tier in (front)").stdout)
    assert rows[0] == ["NAME", "CPU(cores)", "MEMORY(bytes)"]
    assert len(rows) == 4 and all(r[0].startswith("web-") for r in rows[1:])
    for r in rows[1:]:
        # 0.8 × 64 Mi and 0.2 × 64 Mi, each rounded down to a page: just under 64 Mi.
        assert close(_milli(r[1]), POD_MILLI[("default", "web")]) and r[2] == "63Mi"

    rows = _rows(kubectl(kc, "top", "pods", "-A", "--sort-by=cpu", "--no-headers").stdout)
    cpus = [_milli(r[2]) for r in rows]
    assert len(rows) == 5 and cpus == sorted(cpus, reverse=True)
    assert {r[0] for r in rows[:3]} == {"default"}  # 500m web pods before 400m batch pods

    out = kubectl(kc, "top", "pods", "-n", "jobs", "-l", "app=nothing", check=False)
    assert out.returncode != 0 or "No resources found" in out.stderr + out.stdout


def test_get_raw_and_tables_through_the_aggregator(env):
    cluster, _ = env
    kc = cluster.kubeconfig
    doc = json.loads(kubectl(kc, "get", "--raw",
                             "/apis/metrics.k8s.io/v1beta1/namespaces/jobs/pods?labelSelector=app%3Dbatch").stdout)
    assert doc["kind"] == "PodMetricsList" and doc["apiVersion"] == "metrics.k8s.io/v1beta1"
    assert len(doc["items"]) == 2
    for item in doc["items"]:
        assert item["metadata"]["labels"]["app"] == "batch"
        assert re.fullmatch(r"\d+(\.\d+)?s", item["window"]), item["window"]
        assert item["containers"][0]["usage"]["memory"] == "64Mi"
        assert close(_milli_of(item["containers"][0]["usage"]["cpu"]), 400)
    name = doc["items"][0]["metadata"]["name"]
    one = json.loads(kubectl(kc, "get", "--raw", f"/apis/metrics.k8s.io/v1beta1/namespaces/jobs/pods/{name}").stdout)
    assert one["kind"] == "PodMetrics" and one["metadata"]["name"] == name

    # Server-side Table through the proxy: `kubectl get podmetrics`.
    rows = _rows(kubectl(kc, "get", "podmetrics", "-n", "jobs").stdout)
    assert rows[0] == ["NAME", "CPU", "MEMORY", "WINDOW"] and len(rows) == 3

    missing = kubectl(kc, "get", "--raw", "/apis/metrics.k8s.io/v1beta1/namespaces/jobs/pods/nope", check=False)
    assert missing.returncode != 0 and "NotFound" in missing.stderr

    rows = _rows(kubectl(kc, "get", "apiservice", "v1beta1.metrics.k8s.io", "--no-headers").stdout)
    assert rows[0][2] == "True"  # AVAILABLE
