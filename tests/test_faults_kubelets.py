"""Misbehaving kubelets, end to end: what `kubectl top` and the HPA controller show.

An emulated cluster of 13 nodes; a fault-injecting proxy (:mod:`sim.faults`) sits in front of the
kubelets of worker-3 … worker-13 (the Node status advertises the proxy's port, which `autoscaler
run --kubelet-use-node-status-port` scrapes). `autoscaler run` serves metrics.k8s.io through the
API server's aggregation layer and runs the HPA controller in active mode. Everything is healthy
first; then the kubelets hang, reset, drip, send garbage, huge or truncated bodies, present wrong
certificates or flap, all at once. Users must see:

- every healthy node and pod still in `kubectl top` and the metrics API; a kubelet that stops
  answering loses its node's and pods' metrics once it has not been scraped successfully for
  2.5 × --metric-resolution (metrics-server hides it after one failed scrape; the deliberate
  difference is in docs/metrics-pipeline.md), a slow one within --kubelet-request-timeout keeps them;
- the process live and ready, each failure named in the scrape errors;
- the HPA never scales on missing metrics: ``web`` (at its target, some pods on failed nodes)
  keeps its replicas; ``batch`` (all pods behind a hung kubelet, demand far above target) stays
  put with ScalingActive=False/FailedGetResourceMetric;
- once the kubelets recover, their metrics return within two resolutions.

One test, one cluster: the faults run side by side, which is also what keeps the file near a minute.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from test_metrics_api_support import MetricsServerThread, kubectl, probe, register_apiservice, run_args, wait_for

from sim.cluster import run_in_thread
from sim.faults import proxy_kubelet
from sim.scenario import parse_scenario

RESOLUTION = 10.0
#: a node not scraped successfully for 2.5 resolutions is hidden; the scrape that notices comes up to one later
HIDDEN_WITHIN = 2.5 * RESOLUTION + RESOLUTION
SCENARIO = {
    "name": "faults-kubelets",
    "kubelet": {"housekeepingInterval": "1s"},
    "timing": {"startupDelay": "0s", "readinessDelay": "0s"},
    "nodes": [{"namePrefix": "worker", "count": 13, "cpu": "8", "memory": "32Gi"}],
    "workloads": [
        # 12 pods × 250m = 50% of the 500m request: exactly at the HPA's target
        {"name": "web", "replicas": 12, "requests": {"cpu": "500m", "memory": "64Mi"},
         "load": {"kind": "constant", "cores": 3.0}},
        # far above target, but every pod sits behind a kubelet that hangs from the start
        {"name": "batch", "replicas": 2, "requests": {"cpu": "500m", "memory": "64Mi"},
         "nodeSelector": {"kubernetes.io/hostname": "worker-5"}, "load": {"kind": "constant", "cores": 2.0}},
    ],
    "hpas": [{"target": "web", "minReplicas": 1, "maxReplicas": 40, "cpuUtilization": 50},
             {"target": "batch", "minReplicas": 1, "maxReplicas": 10, "cpuUtilization": 50}],
}
#: node → (fault, parameters); worker-3 is proxied without a fault (the proxy itself is transparent)
FAULTS: dict[str, tuple[str, dict] | None] = {
    "worker-3": None,
    "worker-4": ("slow", {"delay": 0.05, "size": 4096}),  # well within the 3 s timeout
    "worker-6": ("slow", {"delay": 1.0, "size": 64}),  # beyond it
    "worker-7": ("reset", {}),
    "worker-8": ("garbage", {}),
    "worker-9": ("huge", {"size": 8 << 20}),  # > --kubelet-max-response-size=1 MiB
    "worker-10": ("truncated", {}),
    "worker-11": ("wrong_ca", {}),
    "worker-12": ("wrong_san", {}),
    "worker-13": ("flap", {"delay": 2.0}),
}
HUNG = "worker-5"
HEALTHY = {"worker-1", "worker-2", "worker-3", "worker-4"}
FAILING = {"worker-6", "worker-7", "worker-8", "worker-9", "worker-10", "worker-11", "worker-12", HUNG}
#: what the scrape errors say for each failing node
ERRORS = {"worker-5": "timed out", "worker-6": "timed out", "worker-7": "closed before the response was complete",
          "worker-8": "", "worker-9": "too large", "worker-10": "closed before the response was complete", "worker-11": "certificate verify failed",
          "worker-12": "certificate verify failed"}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("faults-kubelets")
    cluster = run_in_thread(parse_scenario(SCENARIO), tmp / "cluster")
    proxies = {}
    server = None
    try:
        for node in [*FAULTS, HUNG]:
            proxies[node] = cluster.run(proxy_kubelet(cluster.cluster, node, tmp / "proxies"))
        proxies[HUNG].set("hang")
        server = MetricsServerThread(run_args(
            cluster, tmp, "--controller-mode=active", "--horizontal-pod-autoscaler-sync-period=2s",
            "--leader-elect=false", "--kubelet-request-timeout=3s", "--kubelet-max-response-size=1048576",
            "--kubelet-certificate-authority", str(cluster.cluster.pki.path("ca.crt")))).start()
        register_apiservice(cluster, server.port)
        yield cluster, server, proxies
    finally:
        for p in proxies.values():
            p.clear()
        if server is not None:
            server.stop()
        for p in proxies.values():
            cluster.run(p.stop())
        cluster.stop()


def raw(kc: Path, path: str) -> dict:
    return json.loads(kubectl(kc, "get", "--raw", path).stdout)


def served_nodes(kc: Path) -> set[str]:
    return {i["metadata"]["name"] for i in raw(kc, "/apis/metrics.k8s.io/v1beta1/nodes")["items"]}


def served_pods(kc: Path) -> set[str]:
    return {i["metadata"]["name"] for i in raw(kc, "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods")["items"]}


def placement(kc: Path) -> dict[str, str]:
    pods = json.loads(kubectl(kc, "get", "pods", "-o", "json").stdout)["items"]
    return {p["metadata"]["name"]: p["spec"].get("nodeName", "") for p in pods}


def replicas(kc: Path, name: str) -> int:
    return json.loads(kubectl(kc, "get", "deployment", name, "-o", "json").stdout)["spec"]["replicas"]


def health(port: int, path: str) -> int:
    return probe(port, path, timeout=5)[0]


def test_faulty_kubelets_only_hide_themselves_and_never_cause_a_scale(env):
    cluster, server, proxies = env
    kc = cluster.kubeconfig
    where = placement(kc)
    assert {n for p, n in where.items() if p.startswith("batch")} == {HUNG}
    hidden = {p for p, n in where.items() if n == HUNG}
    expect_nodes = {f"worker-{i}" for i in range(1, 14)} - {HUNG}
    wait_for(lambda: served_nodes(kc) == expect_nodes and served_pods(kc) == set(where) - hidden,
             40, "every node and pod but the hung kubelet's to be served")

    started, started_wall = time.monotonic(), time.time()
    for node, fault in FAULTS.items():
        if fault is not None:
            proxies[node].set(fault[0], **fault[1])

    def settled() -> bool:
        served = served_nodes(kc)
        return served >= HEALTHY and not served & FAILING
    wait_for(settled, HIDDEN_WITHIN + 5, "the failing kubelets' nodes to disappear from the metrics API")
    assert time.monotonic() - started <= HIDDEN_WITHIN

    # the latest scrape ran with every fault on (hiding a node takes more than one failed scrape)
    assert server.rt.collector.last_cycle.started > started_wall
    errors = server.rt.collector.last_cycle.errors
    for node, text in ERRORS.items():
        assert node in errors and text in errors[node], (node, errors.get(node))
    assert not HEALTHY & set(errors), errors
    pods = served_pods(kc)
    assert {p for p, n in where.items() if n in HEALTHY} <= pods
    assert not {p for p, n in where.items() if n in FAILING} & pods

    top = kubectl(kc, "top", "node", "--no-headers").stdout.splitlines()
    rows = {line.split()[0]: line.split()[1] for line in top}
    assert all(rows[n] != "<unknown>" for n in HEALTHY), top
    assert all(rows.get(n, "<unknown>") == "<unknown>" for n in FAILING), top
    top_pods = {line.split()[0] for line in kubectl(kc, "top", "pod", "--no-headers").stdout.splitlines()}
    assert top_pods == pods

    assert health(server.port, "/livez") == 200 and health(server.port, "/readyz") == 200

    # the controller decided with these metrics for several syncs: no wrong scale
    hpas = {h["metadata"]["name"]: h for h in json.loads(kubectl(kc, "get", "hpa", "-o", "json").stdout)["items"]}
    assert replicas(kc, "web") == 12 and hpas["web"]["status"]["desiredReplicas"] == 12
    assert replicas(kc, "batch") == 2
    conds = {c["type"]: c for c in hpas["batch"]["status"].get("conditions") or ()}
    assert conds["ScalingActive"]["status"] == "False"
    assert conds["ScalingActive"]["reason"] == "FailedGetResourceMetric"
    events = json.loads(kubectl(kc, "get", "events", "--field-selector", "involvedObject.name=batch",
                                "-o", "json").stdout)["items"]
    assert any(e["reason"] == "FailedGetResourceMetric" and e["type"] == "Warning" for e in events)
    assert not any(e["reason"] == "SuccessfulRescale" for e in events)

    # recovery: the kubelets answer again and their metrics return within two resolutions
    for p in proxies.values():
        p.clear()
    healed = time.monotonic()
    wait_for(lambda: served_nodes(kc) == expect_nodes | {HUNG} and served_pods(kc) >= set(where),
             3 * RESOLUTION, "every node and pod to be served again")
    assert time.monotonic() - healed <= 2 * RESOLUTION
    assert replicas(kc, "web") == 12
    # the failure phase lasted several syncs: the controller never moved web off its target size
    events = json.loads(kubectl(kc, "get", "events", "--field-selector", "involvedObject.name=web",
                                "-o", "json").stdout)["items"]
    assert not any(e["reason"] == "SuccessfulRescale" for e in events), events
