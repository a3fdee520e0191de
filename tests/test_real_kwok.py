"""Both metrics pipelines against a kubelet emulation neither of us wrote: KWOK's nodes.

The real control plane (no hollow nodes of ours), KWOK managing three fake nodes and serving their
``/metrics/resource`` over HTTPS with a fixed usage per container, a Deployment spread over them,
`autoscaler run` behind the real aggregator and the upstream metrics-server beside it. Both must
report the same values, and those values must be the ones KWOK was configured with.

Part of the real-cluster tier: ``python3 -m pytest -m real_cluster tests/test_real_kwok.py``.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest

from autoscaler.k8s.quantity import milli_value, value
from autoscaler.scraper.decode_resource import decode_resource
from sim.controlplane import binaries
from sim.controlplane.kwok import (
    LABEL,
    LABEL_VALUE,
    TOLERATION,
    Kwok,
    Usage,
    expected_usage,
    metrics_path,
    start_kwok,
)
from sim.scenario import Scenario
from tests.real_cluster import RESOLUTION, fetch, missing_programs, start_tier, stop_tier, wait_for
from tests.test_real_cluster import METRICS, cpu_milli, mem_bytes

pytestmark = pytest.mark.real_cluster

NODES = ("kwok-1", "kwok-2", "kwok-3")
REPLICAS = 6
#: what KWOK reports per container (memory deliberately not a round number of MiB)
USAGES = [Usage("250m", "100000Ki", ("app",)), Usage("40m", "24Mi", ("sidecar",)), Usage("1m", "1Mi")]
SELECTOR = "app%3Dkwok-web"


def deployment() -> dict:
    labels = {"app": "kwok-web"}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "kwok-web", "namespace": "default", "labels": labels},
        "spec": {
            "replicas": REPLICAS,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "nodeSelector": {LABEL: LABEL_VALUE},
                    "tolerations": [TOLERATION],
                    # two per node: every node has usage, so metrics-server reports every node
                    "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                                   "whenUnsatisfiable": "DoNotSchedule",
                                                   "labelSelector": {"matchLabels": labels}}],
                    "containers": [
                        {"name": "app", "image": "registry.k8s.io/e2e-test-images/agnhost:2.53",
                         "resources": {"requests": {"cpu": "500m", "memory": "128Mi"}}},
                        {"name": "sidecar", "image": "registry.k8s.io/pause:3.10",
                         "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}}},
                    ],
                },
            },
        },
    }


@pytest.fixture(scope="module")
def kwok_tier(tmp_path_factory):
    missing = missing_programs()
    try:
        binaries.find("kwok")
    except binaries.BinaryNotFound as exc:
        missing.append(str(exc))
    if missing:
        pytest.fail("the KWOK tests need the upstream programs:\n" + "\n".join(missing))
    tmp = tmp_path_factory.mktemp("kwok")
    # KWOK serves no Summary API (/stats/summary is a 404): with its default source ours reads the
    # path the nodes' resource-metrics-path annotation names, as metrics-server does
    tier = start_tier(tmp, Scenario(name="kwok-tier", nodes=[]))
    try:
        kwok = tier.thread.run(start_kwok(tier.cluster, tmp / "kwok", USAGES))
        tier.processes.append(kwok)
        for name in NODES:
            tier.thread.run(kwok.add_node(name))
        wait_for("the KWOK nodes to be Ready",
                 lambda: all(tier.thread.run(kwok.node_ready(n)) for n in NODES), 60)
        tier.thread.run(tier.cluster.create(deployment()))
        wait_for(f"the {REPLICAS} kwok-web pods to be ready",
                 lambda: tier.json("get", "deploy", "kwok-web")["status"].get("readyReplicas") == REPLICAS, 90)
    except BaseException:
        stop_tier(tier)
        raise
    yield tier
    stop_tier(tier)


def kwok_of(tier) -> Kwok:
    return next(p for p in tier.processes if isinstance(p, Kwok))


def placement(tier) -> dict[str, str]:
    """pod name → node of the kwok-web pods."""
    return {p["metadata"]["name"]: p["spec"]["nodeName"] for p in tier.json("get", "pods", "-l", "app=kwok-web")["items"]}


def expected_containers(tier) -> dict[tuple[str, str], tuple[float, int]]:
    out = {}
    for pod in placement(tier):
        for c in ("app", "sidecar"):
            u = expected_usage(USAGES, c)
            out[(pod, c)] = (milli_value(u.cpu), int(value(u.memory)))
    return out


def expected_nodes(tier) -> dict[str, tuple[float, int]]:
    per_pod_cpu = sum(milli_value(expected_usage(USAGES, c).cpu) for c in ("app", "sidecar"))
    per_pod_mem = sum(int(value(expected_usage(USAGES, c).memory)) for c in ("app", "sidecar"))
    pods_on = Counter(placement(tier).values())
    return {n: (pods_on[n] * per_pod_cpu, pods_on[n] * per_pod_mem) for n in NODES}


def get(tier, port: int | None, path: str) -> Any:
    """From ours through kube-apiserver's aggregator (``port`` None) or from the server on ``port``."""
    if port is None:
        return tier.raw(path)
    code, doc = fetch(tier, port, path)
    assert code == 200, doc
    return doc


def pod_metrics(tier, port: int | None) -> dict[tuple[str, str], tuple[float, int]]:
    doc = get(tier, port, f"{METRICS}/namespaces/default/pods?labelSelector={SELECTOR}")
    return {(item["metadata"]["name"], c["name"]): (cpu_milli(c["usage"]["cpu"]), mem_bytes(c["usage"]["memory"]))
            for item in doc["items"] for c in item["containers"]}


def node_metrics(tier, port: int | None) -> dict[str, tuple[float, int]]:
    doc = get(tier, port, f"{METRICS}/nodes?labelSelector={LABEL}%3D{LABEL_VALUE}")
    return {item["metadata"]["name"]: (cpu_milli(item["usage"]["cpu"]), mem_bytes(item["usage"]["memory"]))
            for item in doc["items"]}


def both(tier, read, keys) -> tuple[dict, dict] | None:
    """Both servers' readings once each covers ``keys`` with a CPU rate (two scrapes in)."""
    ours, theirs = read(tier, None), read(tier, tier.upstream_port)
    for who, r in (("ours", ours), ("metrics-server", theirs)):
        missing = sorted(k for k in keys if k not in r or r[k][0] <= 0)
        if missing:  # wait_for reports the last exception when it times out
            raise AssertionError(f"{who} lacks {missing}; has {r}")
    return ours, theirs


def check(ours: dict, theirs: dict, expected: dict) -> None:
    for key, (cpu, mem) in expected.items():
        (o_cpu, o_mem), (t_cpu, t_mem) = ours[key], theirs[key]
        assert o_cpu == pytest.approx(t_cpu, rel=0.1, abs=3), (key, "cpu ours vs metrics-server", o_cpu, t_cpu)
        assert o_mem == t_mem, (key, "memory ours vs metrics-server", o_mem, t_mem)
        # KWOK's counter is exact for a constant rate; only the request-time jitter remains
        assert o_cpu == pytest.approx(cpu, rel=0.05, abs=2), (key, "cpu ours vs configured", o_cpu, cpu)
        assert t_cpu == pytest.approx(cpu, rel=0.05, abs=2), (key, "cpu metrics-server vs configured", t_cpu, cpu)
        assert o_mem == mem, (key, "memory ours vs configured", o_mem, mem)


# --- KWOK itself -----------------------------------------------------------------------------------

def test_kwok_runs_the_nodes_and_the_pods(kwok_tier):
    nodes = {n["metadata"]["name"]: n for n in kwok_tier.json("get", "nodes")["items"]}
    assert set(nodes) == set(NODES)
    for n in nodes.values():
        assert n["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] == kwok_of(kwok_tier).port
        assert {"type": "InternalIP", "address": "127.0.0.1"} in n["status"]["addresses"]
    leases = kwok_tier.json("get", "leases", "-n", "kube-node-lease")["items"]
    assert {le["metadata"]["name"] for le in leases} == set(NODES)  # KWOK renews them (holder: its own id)
    pods = kwok_tier.json("get", "pods", "-l", "app=kwok-web")["items"]
    assert len(pods) == REPLICAS
    assert all(p["status"]["phase"] == "Running" for p in pods)
    # bound by the real kube-scheduler, spread by the topology constraint
    assert Counter(p["spec"]["nodeName"] for p in pods) == {n: REPLICAS // len(NODES) for n in NODES}


def test_kwok_serves_what_it_was_configured_with(kwok_tier):
    """KWOK's own output, over HTTPS verified with the cluster CA, read by our decoder."""
    import aiohttp

    kwok = kwok_of(kwok_tier)
    node = NODES[0]

    async def scrape() -> str:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=kwok.ssl_context())) as s, \
                s.get(f"https://127.0.0.1:{kwok.port}{metrics_path(node)}") as r:
            assert r.status == 200
            return await r.text()

    on_node = {p for p, n in placement(kwok_tier).items() if n == node}

    def served():
        # KWOK fills its pod cache on the first request that needs it: that one has no pods, and
        # the node's own usage (summed over its pods) can lag the pods' by a request
        text = asyncio.run(scrape())
        batch = decode_resource(text, node, 0.0)
        return text if set(batch.pods) == on_node and batch.node_memory > 0 else None

    body = wait_for(f"KWOK to serve the pods on {node}", served, 30)
    (kwok_tier.state_dir / "kwok-metrics-resource.txt").write_text(body)  # a sample, kept in CI
    batch = decode_resource(body, node, 0.0)
    for pod, container, mem in zip(batch.pods, batch.containers, batch.memory, strict=True):
        assert mem == value(expected_usage(USAGES, container).memory), (pod, container)
    assert batch.node_memory == expected_nodes(kwok_tier)[node][1]
    assert all(batch.start_time > 1e9)  # Unix seconds, as a kubelet reports them


# --- the two metrics servers -----------------------------------------------------------------------

def test_node_metrics_agree_and_match_the_configuration(kwok_tier):
    ours, theirs = wait_for("both servers to report NodeMetrics for the KWOK nodes",
                            lambda: both(kwok_tier, node_metrics, NODES), 3 * RESOLUTION + 60)
    check(ours, theirs, expected_nodes(kwok_tier))


def test_pod_metrics_agree_and_match_the_configuration(kwok_tier):
    expected = expected_containers(kwok_tier)
    assert len(expected) == 2 * REPLICAS
    ours, theirs = wait_for("both servers to report PodMetrics for every container of the KWOK pods",
                            lambda: both(kwok_tier, pod_metrics, expected), 3 * RESOLUTION + 60)
    assert set(ours) == set(theirs) == set(expected)
    check(ours, theirs, expected)
