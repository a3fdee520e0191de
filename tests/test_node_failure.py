"""Node failure on the emulated cluster, as kube-controller-manager handles it: a stopped kubelet
(no Lease renewals, port refusing connections) → after --node-monitor-grace-period (50 s) Ready
Unknown, unreachable taints, pods not ready → after the default 300 s tolerations the pods are
evicted and replaced on the other nodes → on recovery Ready again and the taints removed.
Observed through the real kubectl and the kubernetes client, on the ManualClock."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from sim.scenario import ScenarioError, parse_scenario
from tests.sim_fixtures import emulated_cluster, kubectl, kubectl_json

SCENARIO = {
    "name": "node-failure",
    "nodes": [{"namePrefix": "worker", "count": 3, "cpu": "4", "memory": "16Gi"}],
    "workloads": [{"name": "web", "replicas": 6, "requests": {"cpu": "500m", "memory": "128Mi"},
                   "load": {"kind": "constant", "cores": 0.6}}],
}
UNREACHABLE = "node.kubernetes.io/unreachable"


def _node(h, name: str) -> dict:
    return kubectl_json(h.kubeconfig, "get", "node", name)


def _conditions(obj: dict) -> dict[str, dict]:
    return {c["type"]: c for c in obj["status"].get("conditions") or ()}


def _pods(h) -> list[dict]:
    return kubectl_json(h.kubeconfig, "get", "pods", "-l", "app=web")["items"]


def _ready(pod: dict) -> bool:
    return _conditions(pod).get("Ready", {}).get("status") == "True"


def _node_status(h, name: str) -> str:
    for line in kubectl(h.kubeconfig, "get", "nodes", "--no-headers").splitlines():
        cols = line.split()
        if cols[0] == name:
            return cols[1]
    raise AssertionError(f"node {name} not listed")


def _refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def test_node_failure_taints_evicts_and_recovers(tmp_path: Path) -> None:
    import kubernetes

    with emulated_cluster(tmp_path, SCENARIO) as h:
        h.advance(30)
        pods = _pods(h)
        assert len(pods) == 6 and all(_ready(p) for p in pods)
        victims = sorted(p["metadata"]["name"] for p in pods if p["spec"]["nodeName"] == "worker-2")
        assert victims, "the scheduler spreads the pods over the three nodes"
        port = _node(h, "worker-2")["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        renewed = kubectl_json(h.kubeconfig, "get", "lease", "-n", "kube-node-lease", "worker-2")["spec"]["renewTime"]

        h.fail_node("worker-2")
        assert _refuses(port), "a stopped kubelet refuses connections (the collector's scrape fails)"
        h.advance(30)
        lease = kubectl_json(h.kubeconfig, "get", "lease", "-n", "kube-node-lease", "worker-2")
        assert lease["spec"]["renewTime"] == renewed, "no heartbeats from a stopped kubelet"
        assert _node_status(h, "worker-2") == "Ready", "still within --node-monitor-grace-period"
        assert "taints" not in _node(h, "worker-2")["spec"]

        h.advance(30)  # > 50 s since the last renewal, and a --node-monitor-period (5 s) later
        assert _node_status(h, "worker-2") == "NotReady"
        assert _node_status(h, "worker-1") == "Ready" and _node_status(h, "worker-3") == "Ready"
        node = _node(h, "worker-2")
        conds = _conditions(node)
        for ctype in ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure"):
            assert conds[ctype]["status"] == "Unknown"
            assert conds[ctype]["reason"] == "NodeStatusUnknown"
            assert conds[ctype]["message"] == "Kubelet stopped posting node status."
        taints = {(t["key"], t["effect"]): t for t in node["spec"]["taints"]}
        assert set(taints) == {(UNREACHABLE, "NoSchedule"), (UNREACHABLE, "NoExecute")}
        assert all(t.get("timeAdded") for t in taints.values())
        describe = kubectl(h.kubeconfig, "describe", "node", "worker-2")
        assert f"{UNREACHABLE}:NoSchedule" in describe and f"{UNREACHABLE}:NoExecute" in describe
        assert "Kubelet stopped posting node status." in describe

        pods = {p["metadata"]["name"]: p for p in _pods(h)}
        for name in victims:
            c = _conditions(pods[name])
            assert c["Ready"]["status"] == "False" and c["ContainersReady"]["status"] == "False"
            assert pods[name]["status"]["phase"] == "Running", "status is frozen but for the controller's write"
            tols = {(t["key"], t["effect"], t.get("tolerationSeconds")) for t in pods[name]["spec"]["tolerations"]}
            assert {("node.kubernetes.io/not-ready", "NoExecute", 300), (UNREACHABLE, "NoExecute", 300)} <= tols
        assert all(_ready(p) for n, p in pods.items() if n not in victims)
        events = kubectl_json(h.kubeconfig, "get", "events", "-A")["items"]
        assert any(e["reason"] == "NodeNotReady" and e["involvedObject"]["kind"] == "Node"
                   and e["message"] == "Node worker-2 status is now: NodeNotReady"
                   and e["source"]["component"] == "node-controller" for e in events)
        assert {e["involvedObject"]["name"] for e in events if e["reason"] == "NodeNotReady"
                and e["involvedObject"]["kind"] == "Pod" and e["message"] == "Node is not ready"} == set(victims)
        deploy = kubectl_json(h.kubeconfig, "get", "deploy", "web")
        assert deploy["status"]["readyReplicas"] == 6 - len(victims)

        # the default tolerations (300 s) run out: the taint manager evicts, the ReplicaSet replaces
        h.advance(300)
        h.advance(20)
        pods = {p["metadata"]["name"]: p for p in _pods(h)}
        for name in victims:
            assert pods[name]["metadata"].get("deletionTimestamp"), "Terminating until the kubelet comes back"
            dt = _conditions(pods[name])["DisruptionTarget"]
            assert (dt["status"], dt["reason"]) == ("True", "DeletionByTaintManager")
        fresh = [p for n, p in pods.items() if not p["metadata"].get("deletionTimestamp")]
        assert len(fresh) == 6 and all(_ready(p) and p["status"]["phase"] == "Running" for p in fresh)
        assert all(p["spec"]["nodeName"] in ("worker-1", "worker-3") for p in fresh)
        wide = kubectl(h.kubeconfig, "get", "pods", "-o", "wide", "--no-headers")
        rows = [line.split() for line in wide.splitlines()]
        assert {r[0] for r in rows if r[2] == "Terminating" and r[6] == "worker-2"} == set(victims)
        assert sum(1 for r in rows if r[2] == "Running" and r[6] in ("worker-1", "worker-3")) == 6
        events = kubectl_json(h.kubeconfig, "get", "events")["items"]
        assert {e["involvedObject"]["name"] for e in events if e["reason"] == "TaintManagerEviction"
                and e["message"].startswith("Marking for deletion Pod default/")} == set(victims)

        # recovery: heartbeats resume, Ready again, taints gone, the evicted pods finish terminating
        h.recover_node("worker-2")
        assert not _refuses(port)
        h.advance(10)
        api = kubernetes.config.new_client_from_config(str(h.kubeconfig))
        try:
            node = kubernetes.client.CoreV1Api(api).read_node("worker-2")
            ready = next(c for c in node.status.conditions if c.type == "Ready")
            assert (ready.status, ready.reason, ready.message) == ("True", "KubeletReady",
                                                                  "kubelet is posting ready status")
            assert not node.spec.taints
            pods = kubernetes.client.CoreV1Api(api).list_namespaced_pod("default", label_selector="app=web").items
        finally:
            api.close()
        assert _node_status(h, "worker-2") == "Ready"
        assert len(pods) == 6 and not {p.metadata.name for p in pods} & set(victims)
        assert all(p.metadata.deletion_timestamp is None for p in pods)


def test_recovery_before_eviction_makes_pods_ready_again(tmp_path: Path) -> None:
    with emulated_cluster(tmp_path, SCENARIO) as h:
        h.advance(30)
        victims = sorted(p["metadata"]["name"] for p in _pods(h) if p["spec"]["nodeName"] == "worker-2")
        h.fail_node("worker-2")
        h.advance(60)
        assert _node_status(h, "worker-2") == "NotReady"
        assert not any(_ready(p) for p in _pods(h) if p["metadata"]["name"] in victims)

        h.recover_node("worker-2")
        h.advance(10)
        assert _node_status(h, "worker-2") == "Ready"
        assert "taints" not in _node(h, "worker-2")["spec"]
        pods = {p["metadata"]["name"]: p for p in _pods(h)}
        assert len(pods) == 6 and set(victims) <= set(pods), "nothing was evicted"
        assert all(_ready(p) and not p["metadata"].get("deletionTimestamp") for p in pods.values())
        events = kubectl_json(h.kubeconfig, "get", "events")["items"]
        assert {e["involvedObject"]["name"] for e in events if e["reason"] == "TaintManagerEviction"
                and e["message"].startswith("Cancelling deletion of Pod default/")} == set(victims)
        assert any(e["reason"] == "NodeReady" and e["source"]["component"] == "kubelet" for e in events)
        h.advance(400)
        assert len(_pods(h)) == 6 and all(_ready(p) for p in _pods(h))


def test_scenario_node_events(tmp_path: Path) -> None:
    doc = dict(SCENARIO, nodeEvents=[{"at": "1m", "fail": "worker-3"}, {"at": "3m", "recover": "worker-3"}])
    with emulated_cluster(tmp_path, doc) as h:
        h.advance(60 + 30)
        assert _node_status(h, "worker-3") == "Ready"
        h.advance(30)
        assert _node_status(h, "worker-3") == "NotReady"
        assert {t["key"] for t in _node(h, "worker-3")["spec"]["taints"]} == {UNREACHABLE}
        h.advance(65)  # 3m05s
        assert _node_status(h, "worker-3") == "Ready"
        assert "taints" not in _node(h, "worker-3")["spec"]
        h.advance(10)
        assert all(_ready(p) for p in _pods(h))


@pytest.mark.parametrize(("events", "message"), [
    ([{"at": "1m", "fail": "worker-9"}],
     "cluster.yaml: nodeEvents[0].fail: no such node 'worker-9'; nodes are worker-1, worker-2, worker-3"),
    ([{"at": "1m", "fail": "worker-1", "recover": "worker-1"}],
     "cluster.yaml: nodeEvents[0]: expected exactly one of fail, recover (the node name)"),
    ([{"fail": "worker-1"}], "cluster.yaml: nodeEvents[0].at: required field is missing"),
    ([{"at": "soon", "fail": "worker-1"}],
     "cluster.yaml: nodeEvents[0].at: invalid duration 'soon' (use seconds or Go syntax like 30s, 5m, 1h)"),
    ([{"at": "1m", "fail": "worker-1"}, {"at": "30s", "recover": "worker-1"}],
     "cluster.yaml: nodeEvents[1].recover: node worker-1 has not failed at 30s (no earlier fail event)"),
    ([{"at": "1m", "fail": "worker-1"}, {"at": "2m", "fail": "worker-1"}],
     "cluster.yaml: nodeEvents[1].fail: node worker-1 has already failed at 2m (recover it first)"),
    ([{"at": "1m", "drain": "worker-1"}],
     "cluster.yaml: nodeEvents[0].drain: unknown field; expected one of at, fail, recover"),
    ({"at": "1m"}, "cluster.yaml: nodeEvents: expected a list, got dict"),
])
def test_bad_node_events_name_file_path_and_problem(events: object, message: str) -> None:
    with pytest.raises(ScenarioError) as err:
        parse_scenario(dict(SCENARIO, nodeEvents=events), "cluster.yaml")
    assert str(err.value) == message


async def test_scrapes_of_a_failed_node_fail_until_it_recovers(tmp_path: Path) -> None:
    import asyncio

    from tests.sim_fixtures import scenario_from, scraped_cluster

    async with scraped_cluster(scenario_from(SCENARIO), tmp_path / "cluster") as (cluster, _store, collector):
        assert collector.last_cycle.succeeded == 3
        await asyncio.to_thread(cluster.fail_node, "worker-2")
        await asyncio.to_thread(cluster.advance, 15)
        stats = await collector.scrape_cycle()
        assert stats.succeeded == 2 and set(stats.errors) == {"worker-2"}
        assert "Cannot connect to host" in stats.errors["worker-2"]  # connection refused
        await asyncio.to_thread(cluster.recover_node, "worker-2")
        await asyncio.to_thread(cluster.advance, 15)
        stats = await collector.scrape_cycle()
        assert stats.succeeded == 3 and not stats.errors
