"""Workload emulation through the real kubectl and the kubernetes Python client: Deployment →
ReplicaSet → Pods, scaling, Pending when nothing fits, graceful deletion, StatefulSets, nodes."""

from __future__ import annotations

import pytest
from kubernetes import client, config
from sim_fixtures import emulated_cluster, kubectl, kubectl_json

from autoscaler.k8s.timefmt import parse_time

SCENARIO = {
    "name": "workloads",
    "timing": {"startupDelay": "2s", "readinessDelay": "3s", "terminationDelay": "5s"},
    "nodes": [{"namePrefix": "worker", "count": 2, "cpu": "1", "memory": "4Gi"}],
    "workloads": [
        {"name": "web", "replicas": 2, "image": "nginx:1.27", "requests": {"cpu": "300m", "memory": "64Mi"},
         "limits": {"cpu": "500m", "memory": "128Mi"}},
        {"name": "db", "kind": "StatefulSet", "replicas": 3, "image": "postgres:17",
         "requests": {"memory": "64Mi"}},
    ],
    "hpas": [{"target": "web", "minReplicas": 2, "maxReplicas": 6, "cpuUtilization": 70}],
}


@pytest.fixture(scope="module")
def h(tmp_path_factory):
    with emulated_cluster(tmp_path_factory.mktemp("workloads"), SCENARIO) as handle:
        for _ in range(6):  # the StatefulSet starts one pod at a time
            handle.advance(6)
        yield handle


@pytest.fixture(scope="module")
def api(h):
    return config.new_client_from_config(config_file=str(h.kubeconfig))


def web_pods(kc) -> list[dict]:
    return kubectl_json(kc, "get", "pods", "-l", "app=web")["items"]


def test_deployment_owns_a_replicaset_that_owns_running_pods(h):
    kc = h.kubeconfig
    deploy = kubectl_json(kc, "get", "deployment", "web")
    rs_list = kubectl_json(kc, "get", "rs", "-l", "app=web")["items"]
    assert len(rs_list) == 1
    rs = rs_list[0]
    h_label = rs["metadata"]["labels"]["pod-template-hash"]
    assert rs["metadata"]["name"] == f"web-{h_label}"
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", "pod-template-hash": h_label}
    ref = rs["metadata"]["ownerReferences"][0]
    assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == ("Deployment", "web", deploy["metadata"]["uid"], True)
    assert rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    assert deploy["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    st = deploy["status"]
    assert (st["replicas"], st["updatedReplicas"], st["readyReplicas"], st["availableReplicas"]) == (2, 2, 2, 2)
    assert st["observedGeneration"] == deploy["metadata"]["generation"]
    conds = {c["type"]: c for c in st["conditions"]}
    assert (conds["Available"]["status"], conds["Available"]["reason"]) == ("True", "MinimumReplicasAvailable")
    assert conds["Progressing"]["reason"] == "NewReplicaSetAvailable"
    assert conds["Progressing"]["message"] == f'ReplicaSet "web-{h_label}" has successfully progressed.'
    for pod in web_pods(kc):
        assert pod["metadata"]["name"].startswith(f"web-{h_label}-")
        assert pod["metadata"]["ownerReferences"][0]["uid"] == rs["metadata"]["uid"]
        s = pod["status"]
        assert s["phase"] == "Running" and s["qosClass"] == "Burstable"
        assert s["hostIP"] == "127.0.0.1" and s["podIP"].startswith("10.")
        types = [c["type"] for c in s["conditions"]]
        assert types == ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"]
        assert all(c["status"] == "True" and c["lastTransitionTime"] for c in s["conditions"])
        ready_at = parse_time(next(c for c in s["conditions"] if c["type"] == "Ready")["lastTransitionTime"])
        cs = s["containerStatuses"][0]
        started_at = parse_time(cs["state"]["running"]["startedAt"])
        assert parse_time(s["startTime"]) < started_at < ready_at  # startup, then readiness delay
        assert cs["ready"] is True and cs["started"] is True and cs["restartCount"] == 0
        assert cs["containerID"].startswith("containerd://")
        assert cs["image"] == "nginx:1.27" and cs["imageID"].startswith("docker.io/library/nginx@sha256:")


def test_scale_up_down_pending_and_graceful_deletion(h, api):
    kc = h.kubeconfig
    apps = client.AppsV1Api(api)
    core = client.CoreV1Api(api)
    # 2 nodes × 900m allocatable, 300m per pod → 6 fit, the 7th doesn't
    apps.patch_namespaced_deployment_scale("web", "default", {"spec": {"replicas": 7}})
    h.advance(0.5)
    h.advance(6)
    pods = core.list_namespaced_pod("default", label_selector="app=web").items
    assert len(pods) == 7
    pending = [p for p in pods if p.status.phase == "Pending"]
    assert len(pending) == 1 and pending[0].spec.node_name is None
    cond = next(c for c in pending[0].status.conditions if c.type == "PodScheduled")
    assert (cond.status, cond.reason) == ("False", "Unschedulable")
    assert cond.message == ("0/2 nodes are available: 2 Insufficient cpu. preemption: 0/2 nodes are available: "
                            "2 No preemption victims found for incoming pod.")
    assert "Pending" in kubectl(kc, "get", "pod", pending[0].metadata.name)
    dep = apps.read_namespaced_deployment_status("web", "default").status
    assert (dep.replicas, dep.ready_replicas, dep.available_replicas, dep.unavailable_replicas) == (7, 6, 6, 1)
    events = kubectl(kc, "get", "events", "--field-selector", f"involvedObject.name={pending[0].metadata.name}")
    assert "FailedScheduling" in events

    kubectl(kc, "scale", "deployment/web", "--replicas=3")
    h.advance(0.5)
    pods = {p.metadata.name: p for p in core.list_namespaced_pod("default", label_selector="app=web").items}
    # the unscheduled pod goes first and at once; bound pods terminate gracefully
    assert pending[0].metadata.name not in pods
    terminating = [p for p in pods.values() if p.metadata.deletion_timestamp is not None]
    assert len(terminating) == 3
    assert all(p.metadata.deletion_grace_period_seconds == 30 for p in terminating)
    table = kubectl(kc, "get", "pods", "-l", "app=web")
    assert table.count("Terminating") == 3
    h.advance(6)  # terminationDelay 5 s: the kubelets finish the deletion
    names = [p.metadata.name for p in core.list_namespaced_pod("default", label_selector="app=web").items]
    assert len(names) == 3 and not set(names) & {p.metadata.name for p in terminating}
    dep = apps.read_namespaced_deployment_status("web", "default").status
    assert (dep.replicas, dep.ready_replicas, dep.available_replicas) == (3, 3, 3)
    assert dep.unavailable_replicas is None


def test_rolling_update_creates_a_new_replicaset(h):
    kc = h.kubeconfig
    replicas = kubectl_json(kc, "get", "deployment", "web")["spec"]["replicas"]
    kubectl(kc, "set", "image", "deployment/web", "web=nginx:1.28")
    for _ in range(8):
        h.advance(6)
    rs = {r["metadata"]["name"]: r for r in kubectl_json(kc, "get", "rs", "-l", "app=web")["items"]}
    assert len(rs) == 2
    new = next(r for r in rs.values() if r["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2")
    old = next(r for r in rs.values() if r is not new)
    assert new["spec"]["replicas"] == replicas and old["spec"]["replicas"] == 0
    pods = web_pods(kc)
    assert len(pods) == replicas
    assert {p["spec"]["containers"][0]["image"] for p in pods} == {"nginx:1.28"}
    assert all(p["metadata"]["labels"]["pod-template-hash"] == new["metadata"]["labels"]["pod-template-hash"]
               for p in pods)


def test_statefulset_pods_are_ordinal_and_scale_down_from_the_top(h):
    kc = h.kubeconfig
    names = sorted(p["metadata"]["name"] for p in kubectl_json(kc, "get", "pods", "-l", "app=db")["items"])
    assert names == ["db-0", "db-1", "db-2"]
    sts = kubectl_json(kc, "get", "statefulset", "db")
    assert (sts["status"]["replicas"], sts["status"]["readyReplicas"]) == (3, 3)
    pod = kubectl_json(kc, "get", "pod", "db-1")
    assert pod["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"] == "db-1"
    assert pod["metadata"]["labels"]["apps.kubernetes.io/pod-index"] == "1"
    kubectl(kc, "scale", "statefulset/db", "--replicas=1")
    h.advance(0.5)
    terminating = [p["metadata"]["name"] for p in kubectl_json(kc, "get", "pods", "-l", "app=db")["items"]
                   if p["metadata"].get("deletionTimestamp")]
    assert terminating == ["db-2"]
    for _ in range(3):
        h.advance(6)
    names = [p["metadata"]["name"] for p in kubectl_json(kc, "get", "pods", "-l", "app=db")["items"]]
    assert names == ["db-0"]


def test_nodes_leases_and_heartbeats(h):
    kc = h.kubeconfig
    node = kubectl_json(kc, "get", "node", "worker-1")
    md, st = node["metadata"], node["status"]
    assert md["labels"]["kubernetes.io/hostname"] == "worker-1"
    assert md["labels"]["kubernetes.io/os"] == "linux"
    assert "node-role.kubernetes.io/worker" in md["labels"]
    assert st["addresses"] == [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": "worker-1"}]
    assert st["daemonEndpoints"]["kubeletEndpoint"]["Port"] == h.cluster.kubelet("worker-1").port
    assert st["nodeInfo"]["kubeletVersion"].startswith("v1.36.")
    assert st["capacity"]["cpu"] == "1" and st["allocatable"]["cpu"] == "900m"
    ready = next(c for c in st["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "KubeletReady")
    lease = kubectl_json(kc, "get", "lease", "-n", "kube-node-lease", "worker-1")
    assert lease["spec"]["holderIdentity"] == "worker-1" and lease["spec"]["leaseDurationSeconds"] == 40
    before = parse_time(lease["spec"]["renewTime"])
    h.advance(10)
    after = parse_time(kubectl_json(kc, "get", "lease", "-n", "kube-node-lease", "worker-1")["spec"]["renewTime"])
    assert 0 < after - before <= 10.5
    assert "Ready" in kubectl(kc, "get", "nodes")


def test_node_selector_is_honoured_and_pending_pods_retry_when_nodes_change(h, api):
    core = client.CoreV1Api(api)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "needs-ssd"},
           "spec": {"nodeSelector": {"disk": "ssd"}, "containers": [{"name": "c", "image": "busybox:1.36"}]}}
    core.create_namespaced_pod("default", pod)
    h.advance(1)
    got = core.read_namespaced_pod("needs-ssd", "default")
    assert got.status.phase == "Pending" and got.spec.node_name is None
    cond = next(c for c in got.status.conditions if c.type == "PodScheduled")
    assert cond.message == ("0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector. "
                            "preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling.")
    kubectl(h.kubeconfig, "label", "node", "worker-2", "disk=ssd")
    h.advance(1)
    h.advance(6)
    got = core.read_namespaced_pod("needs-ssd", "default")
    assert got.spec.node_name == "worker-2" and got.status.phase == "Running"
    assert got.metadata.owner_references is None  # a bare pod: no controller, still run by the kubelet
    core.delete_namespaced_pod("needs-ssd", "default")
    h.advance(6)
    assert "needs-ssd" not in kubectl(h.kubeconfig, "get", "pods")
