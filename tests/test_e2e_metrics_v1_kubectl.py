"""End to end: kubectl 1.37 (metrics.k8s.io/v1, --show-swap, --field-selector) and kubectl 1.27
(v1beta1) against `autoscaler run` behind the emulated cluster's aggregation layer.

kubectl 1.37 picks the first version of metrics.k8s.io discovery lists that it supports (v1),
prints ``SWAP(bytes)`` from ``usage.swap`` (and ``SWAP(%)`` against the node's
``status.nodeInfo.swap.capacity``), and applies ``--field-selector`` by listing pods from the core
API and filtering locally; kubectl 1.27 reads v1beta1 and sends the field selector to the metrics
API itself. Both must work against one server.
"""

from __future__ import annotations

import json
import re

import pytest
from test_metrics_api_support import MetricsServerThread, kubectl, register_apiservice, run_args, wait_for

from sim.cluster import run_in_thread
from sim.scenario import parse_scenario
from tests import kubectls

SCENARIO = {
    "name": "e2e-metrics-v1",
    "kubelet": {"housekeepingInterval": "2s"},
    "timing": {"startupDelay": "0s", "readinessDelay": "0s"},
    "nodes": [
        {"name": "swappy", "cpu": "8", "memory": "32Gi", "swap": "4Gi", "labels": {"pool": "swap"}},
        {"name": "plain", "cpu": "8", "memory": "32Gi", "labels": {"pool": "plain"}},
    ],
    "workloads": [
        {"name": "web", "replicas": 2, "labels": {"app": "web"}, "nodeSelector": {"pool": "swap"},
         "containers": [{"name": "app", "requests": {"cpu": "300m", "memory": "64Mi"}},
                        {"name": "sidecar", "requests": {"cpu": "100m", "memory": "16Mi"}}],
         "load": {"kind": "constant", "cores": 0.8, "swap": "200Mi"}},
        {"name": "batch", "replicas": 2, "labels": {"app": "batch"}, "nodeSelector": {"pool": "plain"},
         "requests": {"cpu": "100m", "memory": "32Mi"}, "load": {"kind": "constant", "cores": 0.4, "swap": "64Mi"}},
    ],
}
SWAP_MI = {"app": 150, "sidecar": 50}  # 200Mi per web pod, split like its CPU requests (3:1)


def kubectl_137() -> str:
    return kubectls.today().exe()


def kubectl_127() -> str:
    return kubectls.oldest().exe()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e-metrics-v1")
    cluster = run_in_thread(parse_scenario(SCENARIO), tmp / "cluster")
    server = None
    try:
        server = MetricsServerThread(run_args(cluster, tmp)).start()
        register_apiservice(cluster, server.port)
        kc = cluster.kubeconfig

        def ready():
            out = kubectl(kc, "top", "pods", "-A", "--no-headers", binary=kubectl_137(), check=False)
            return out.returncode == 0 and len(out.stdout.strip().splitlines()) == 4 and out

        wait_for(ready, 90, "metrics for all 4 pods through metrics.k8s.io/v1", interval=1.0)
        yield cluster
    finally:
        if server is not None:
            server.stop()
        cluster.stop()


def rows(out: str) -> list[list[str]]:
    return [line.split() for line in out.strip().splitlines()]


def requested_paths(stderr: str) -> list[str]:
    """The paths of the request URLs kubectl logs at -v=6."""
    return re.findall(r'https://[^/\s"]+(/[^\s"]*)', stderr)


def test_kubectl_137_uses_v1_and_kubectl_127_uses_v1beta1(env):
    kc = env.kubeconfig
    out = kubectl(kc, "top", "nodes", "-v=6", binary=kubectl_137())
    paths = requested_paths(out.stderr)
    assert "/apis/metrics.k8s.io/v1/nodes" in paths, paths
    assert not any("/metrics.k8s.io/v1beta1/" in p for p in paths), paths
    assert {r[0] for r in rows(out.stdout)[1:]} == {"swappy", "plain"}
    out = kubectl(kc, "top", "pods", "-v=6", binary=kubectl_127())
    paths = requested_paths(out.stderr)
    assert "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods" in paths, paths
    assert not any("/metrics.k8s.io/v1/" in p for p in paths), paths
    for binary in (kubectl_137(), kubectl_127()):
        table = rows(kubectl(kc, "top", "pods", binary=binary).stdout)
        assert table[0] == ["NAME", "CPU(cores)", "MEMORY(bytes)"]
        assert sorted(r[0].split("-")[0] for r in table[1:]) == ["batch", "batch", "web", "web"]
        assert all(r[1].endswith("m") and int(r[1][:-1]) > 0 for r in table[1:]), table


def test_show_swap_prints_the_kubelets_swap_with_kubectl_137(env):
    kc = env.kubeconfig
    table = rows(kubectl(kc, "top", "nodes", "--show-swap", binary=kubectl_137()).stdout)
    assert table[0] == ["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)", "SWAP(bytes)", "SWAP(%)"]
    by = {r[0]: r for r in table[1:]}
    # 2 web pods × 200 Mi of 4 Gi of swap; the node without swap has no capacity: <unknown>
    assert by["swappy"][5:] == ["400Mi", "9%"]
    assert by["plain"][5:] == ["<unknown>", "<unknown>"]
    table = rows(kubectl(kc, "top", "pods", "-A", "--containers", "--show-swap", binary=kubectl_137()).stdout)
    assert table[0] == ["NAMESPACE", "POD", "NAME", "CPU(cores)", "MEMORY(bytes)", "SWAP(bytes)"]
    swap = {(r[1].split("-")[0], r[2]): r[5] for r in table[1:]}
    assert swap == {("web", "app"): f"{SWAP_MI['app']}Mi", ("web", "sidecar"): f"{SWAP_MI['sidecar']}Mi",
                    ("batch", "batch"): "0Mi"}  # batch runs on the node without swap: no key, printed as 0
    table = rows(kubectl(kc, "top", "pods", "-l", "app=web", "--show-swap", "--sum", binary=kubectl_137()).stdout)
    assert [r[3] for r in table[1:3]] == ["200Mi", "200Mi"] and table[-1][-1] == "400Mi"


def test_field_selectors_filter_with_both_kubectls(env):
    kc = env.kubeconfig
    # 1.37 filters through the core API: any pod field works
    out = kubectl(kc, "top", "pods", "-A", "--field-selector", "spec.nodeName=plain", "-v=6", binary=kubectl_137())
    assert sorted(r[1].split("-")[0] for r in rows(out.stdout)[1:]) == ["batch", "batch"]
    assert any(p.startswith("/apis/metrics.k8s.io/v1/pods") for p in requested_paths(out.stderr))
    web = sorted(r[0] for r in rows(kubectl(kc, "top", "pods", binary=kubectl_137()).stdout)[1:] if r[0].startswith("web-"))
    out = kubectl(kc, "top", "pods", "--field-selector", f"metadata.name!={web[0]}", binary=kubectl_137())
    assert web[0] not in {r[0] for r in rows(out.stdout)[1:]} and len(rows(out.stdout)) == 4
    # 1.27 sends the selector to the metrics API: metadata.name works, other fields are refused there
    out = kubectl(kc, "top", "pods", "--field-selector", f"metadata.name={web[1]}", "-v=6", binary=kubectl_127())
    assert [r[0] for r in rows(out.stdout)[1:]] == [web[1]]
    assert any("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods?fieldSelector=metadata.name" in p
               for p in requested_paths(out.stderr)), requested_paths(out.stderr)
    out = kubectl(kc, "top", "pods", "--field-selector", "spec.nodeName=plain", binary=kubectl_127(), check=False)
    assert out.returncode != 0
    assert '"spec.nodeName" is not a known field selector: only "metadata.name", "metadata.namespace"' in out.stderr


def test_the_emulated_aggregator_lists_both_versions_v1_preferred(env):
    kc = env.kubeconfig
    groups = json.loads(kubectl(kc, "get", "--raw", "/apis").stdout)["groups"]
    metrics = next(g for g in groups if g["name"] == "metrics.k8s.io")
    assert [v["version"] for v in metrics["versions"]] == ["v1", "v1beta1"]
    assert metrics["preferredVersion"]["version"] == "v1"
    # kubectl 1.37 reads aggregated discovery (apidiscovery.k8s.io/v2) and shows the preferred version
    table = rows(kubectl(kc, "api-resources", "--api-group=metrics.k8s.io", binary=kubectl_137()).stdout)
    assert [(r[0], r[1]) for r in table[1:]] == [("nodes", "metrics.k8s.io/v1"), ("pods", "metrics.k8s.io/v1")]
    for version in ("v1", "v1beta1"):
        svc = json.loads(kubectl(kc, "get", "apiservice", f"{version}.metrics.k8s.io", "-o", "json").stdout)
        assert any(c["type"] == "Available" and c["status"] == "True" for c in svc["status"]["conditions"])
