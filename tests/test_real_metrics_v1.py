"""metrics.k8s.io/v1 through the REAL kube-apiserver 1.37 aggregator, served by us.

Our `autoscaler run` registers APIServices v1.metrics.k8s.io and v1beta1.metrics.k8s.io; the
upstream aggregator must make both Available, prefer v1 in discovery, merge our v1 OpenAPI, and
kubectl 1.37 must then read ``/apis/metrics.k8s.io/v1`` — with ``--show-swap`` numbers from the
hollow kubelet of a swap node (and that node's ``status.nodeInfo.swap.capacity``).

A tier of its own (``python3 -m pytest -m real_cluster``), with its own small cluster.
"""

from __future__ import annotations

import re

import pytest

from sim.scenario import parse_scenario
from tests.real_cluster import missing_programs, start_tier, stop_tier, wait_for

pytestmark = pytest.mark.real_cluster

SCENARIO = {
    "name": "real-metrics-v1",
    "seed": 3,
    "kubelet": {"housekeepingInterval": "5s"},
    "timing": {"startupDelay": "1s", "readinessDelay": "1s"},
    "nodes": [{"name": "swappy", "cpu": "4", "memory": "16Gi", "swap": "2Gi", "labels": {"pool": "swap"}},
              {"name": "plain", "cpu": "4", "memory": "16Gi", "labels": {"pool": "plain"}}],
    "workloads": [{"name": "web", "replicas": 2, "nodeSelector": {"pool": "swap"},
                   "requests": {"cpu": "200m", "memory": "64Mi"},
                   "load": {"kind": "constant", "cores": "400m", "swap": "256Mi"}}],
}


@pytest.fixture(scope="module")
def tier(tmp_path_factory):
    missing = missing_programs()
    if missing:
        pytest.fail("the real-cluster tier needs the upstream programs:\n" + "\n".join(missing))
    t = start_tier(tmp_path_factory.mktemp("real-v1"), parse_scenario(SCENARIO, "real-metrics-v1"))
    yield t
    stop_tier(t)


def _available(tier, name: str) -> bool:
    svc = tier.json("get", "apiservice", name)
    return any(c["type"] == "Available" and c["status"] == "True" for c in svc["status"].get("conditions", []))


def test_kubectl_137_reads_v1_with_swap_through_the_real_aggregator(tier):
    for name in ("v1.metrics.k8s.io", "v1beta1.metrics.k8s.io"):
        wait_for(f"APIService {name} to be Available", lambda name=name: _available(tier, name), 120)
    group = tier.raw("/apis/metrics.k8s.io")
    assert [v["version"] for v in group["versions"]] == ["v1", "v1beta1"]
    assert group["preferredVersion"]["version"] == "v1"
    assert tier.json("get", "node", "swappy")["status"]["nodeInfo"]["swap"] == {"capacity": 2 * 2**30}

    def top_nodes():
        out = tier.run("top", "nodes", "--show-swap", "-v=6", check=False)
        rows = {line.split()[0]: line.split() for line in out.stdout.splitlines()[1:]}
        return out if rows.get("swappy", [""])[-2:] == ["512Mi", "25%"] and "plain" in rows else None

    out = wait_for("kubectl top nodes --show-swap to show swappy's 512Mi of 2Gi", top_nodes, 90)
    paths = re.findall(r'https://[^/\s"]+(/[^\s"]*)', out.stderr)
    assert "/apis/metrics.k8s.io/v1/nodes" in paths, paths
    assert not any("metrics.k8s.io/v1beta1" in p for p in paths), paths
    assert out.stdout.splitlines()[0].split() == ["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)",
                                                  "SWAP(bytes)", "SWAP(%)"]
    plain = next(line.split() for line in out.stdout.splitlines() if line.startswith("plain "))
    assert plain[-2:] == ["<unknown>", "<unknown>"]  # no swap capacity on that node

    def top_pods():
        out = tier.run("top", "pods", "-l", "app=web", "--show-swap", "--no-headers", check=False).stdout
        rows = [line.split() for line in out.splitlines()]
        return rows if len(rows) == 2 else None

    rows = wait_for("kubectl top pods --show-swap to list both web pods", top_pods, 60)
    assert [r[3] for r in rows] == ["256Mi", "256Mi"], rows
    # the aggregator merged our v1 OpenAPI (what `kubectl explain` reads)
    index = wait_for("the aggregated OpenAPI v3 index to list metrics.k8s.io/v1",
                     lambda: "apis/metrics.k8s.io/v1" in tier.raw("/openapi/v3")["paths"] and tier.raw("/openapi/v3"),
                     60)
    doc = tier.raw(index["paths"]["apis/metrics.k8s.io/v1"]["serverRelativeURL"])
    assert "io.k8s.metrics.pkg.apis.metrics.v1.PodMetrics" in doc["components"]["schemas"]
