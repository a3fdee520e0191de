"""The metrics pipeline and the HPA against the real thing: upstream kube-apiserver 1.37 (its
aggregation layer, RBAC, SubjectAccessReview), kube-controller-manager's HPA controller and
kube-scheduler, our hollow kubelets, and the upstream metrics-server as the reference.

A tier of its own: ``python3 -m pytest -m real_cluster`` (the default run deselects it).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from autoscaler.k8s.timefmt import parse_duration, parse_time
from sim.controlplane import binaries
from sim.loadmodel import Constant
from tests.kubectls import oldest
from tests.real_cluster import GRACE, RESOLUTION, fetch, missing_programs, start_tier, stop_tier, wait_for

pytestmark = pytest.mark.real_cluster

ROOT = Path(__file__).resolve().parent.parent
METRICS = "/apis/metrics.k8s.io/v1beta1"


@pytest.fixture(scope="module")
def tier(tmp_path_factory):
    missing = missing_programs()
    if missing:
        pytest.fail("the real-cluster tier needs the upstream programs:\n" + "\n".join(missing))
    t = start_tier(tmp_path_factory.mktemp("real"))
    yield t
    stop_tier(t)


def pinned_kubernetes() -> str:
    text = (binaries.MODULES / "kubernetes" / "go.mod").read_text()
    return re.search(r"^\s*k8s\.io/kubernetes (v\S+)", text, re.M).group(1)


def cpu_milli(q: str) -> float:
    if q.endswith("n"):
        return int(q[:-1]) / 1e6
    if q.endswith("u"):
        return int(q[:-1]) / 1e3
    if q.endswith("m"):
        return float(q[:-1])
    return float(q) * 1000


def mem_bytes(q: str) -> int:
    units = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}
    for u, f in units.items():
        if q.endswith(u):
            return int(q[: -len(u)]) * f
    return int(q)


def kubectl_127() -> str:
    """kubectl 1.27, found as tests/kubectls.py finds it (failing with the install command when absent)."""
    return oldest().exe()


def apiservice_available(tier) -> bool:
    svc = tier.json("get", "apiservice", "v1beta1.metrics.k8s.io")
    return any(c["type"] == "Available" and c["status"] == "True" for c in svc["status"].get("conditions", []))


def steady_pod_metrics(tier, port: int | None) -> dict[tuple[str, str], tuple[float, int, float]]:
    """(pod, container) → (CPU millicores, memory bytes, start of the rate window in epoch seconds)
    of the steady pods, from ours (port None: through kube-apiserver's aggregator) or from the
    server on ``port`` directly."""
    path = f"{METRICS}/namespaces/default/pods?labelSelector=app%3Dsteady"
    if port is None:
        doc = tier.raw(path)
    else:
        code, doc = fetch(tier, port, path)
        assert code == 200, doc
    out = {}
    for item in doc["items"]:
        since = parse_time(item["timestamp"]) - parse_duration(item["window"])
        for c in item["containers"]:
            out[(item["metadata"]["name"], c["name"])] = (cpu_milli(c["usage"]["cpu"]), mem_bytes(c["usage"]["memory"]),
                                                         since)
    return out


def ready_since(tier, selector: str) -> dict[str, float]:
    """Pod name → when its Ready condition last turned True (epoch seconds, the API's whole second)."""
    out = {}
    for pod in tier.json("get", "pods", "-l", selector)["items"]:
        for c in pod["status"].get("conditions", []):
            if c["type"] == "Ready" and c["status"] == "True":
                out[pod["metadata"]["name"]] = parse_time(c["lastTransitionTime"])
    return out


# --- the control plane and the hollow nodes ---------------------------------------------------

def test_control_plane_is_the_pinned_release(tier):
    version = tier.json("version")
    pinned = pinned_kubernetes()
    assert version["serverVersion"]["gitVersion"] == pinned
    assert version["clientVersion"]["gitVersion"] == pinned


def test_hollow_nodes_join_and_run_the_real_controllers_pods(tier):
    nodes = tier.json("get", "nodes")["items"]
    assert sorted(n["metadata"]["name"] for n in nodes) == ["worker-1", "worker-2", "worker-3"]
    for n in nodes:
        ready = next(c for c in n["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True"
        # the role label comes from the admin: NodeRestriction forbids a kubelet to set it
        assert "node-role.kubernetes.io/worker" in n["metadata"]["labels"]
    leases = tier.json("get", "leases", "-n", "kube-node-lease")["items"]
    assert {le["spec"]["holderIdentity"] for le in leases} == {"worker-1", "worker-2", "worker-3"}

    def steady_ready():
        d = tier.json("get", "deploy", "steady")
        return d["status"].get("readyReplicas") == 3

    wait_for("the steady Deployment's 3 replicas to be ready", steady_ready, 90)
    pods = tier.json("get", "pods", "-l", "app=steady")["items"]
    assert len(pods) == 3
    for p in pods:
        assert p["spec"]["nodeName"] in {"worker-1", "worker-2", "worker-3"}  # bound by kube-scheduler
        assert p["status"]["phase"] == "Running"
        assert p["metadata"]["ownerReferences"][0]["kind"] == "ReplicaSet"  # made by the ReplicaSet controller


def test_node_restriction_holds_the_hollow_kubelets(tier):
    """A hollow node's own identity may not touch another node: NodeRestriction judges our writes."""
    client = tier.cluster.node_clients["worker-1"]

    async def patch_other():
        from autoscaler.k8s.rest import KubeError

        try:
            await client.patch("/api/v1/nodes/worker-2", {"metadata": {"labels": {"x": "y"}}})
        except KubeError as exc:
            return exc.code
        return 200

    assert tier.thread.run(patch_other()) == 403


# --- our metrics API behind the real aggregator -----------------------------------------------

@pytest.mark.parametrize("which", ["1.37", "1.27"])
def test_kubectl_top_through_the_real_aggregator(tier, which):
    binary = tier.kubectl if which == "1.37" else kubectl_127()
    wait_for("APIService v1beta1.metrics.k8s.io to be Available", lambda: apiservice_available(tier), 120)

    def nodes():
        out = tier.run("top", "nodes", binary=binary, check=False).stdout
        return out if all(re.search(rf"^{n}\s+\d+m\s+\d+%\s+\d+Mi\s+\d+%", out, re.M)
                          for n in ("worker-1", "worker-2", "worker-3")) else None

    wait_for("kubectl top nodes to show the 3 workers' usage", nodes, 90)

    def containers():
        out = tier.run("top", "pods", "-A", "--containers", binary=binary, check=False).stdout
        # every steady container: a pod's first metrics need two scrapes after it started
        return out if len(re.findall(r"^default\s+steady-\S+\s+(app|sidecar)\s+\d+m\s+\d+Mi", out, re.M)) == 6 \
            else None

    out = wait_for("kubectl top pods -A --containers with the 6 steady containers", containers, 90)
    assert re.search(r"^default\s+steady-\S+\s+app\s+\d+m\s+\d+Mi", out, re.M), out

    def steady_rows():
        out = tier.run("top", "pods", "-l", "app=steady", "--sort-by=cpu", binary=binary, check=False).stdout
        rows = [line.split() for line in out.splitlines()[1:]]
        return rows if len(rows) == 3 else None

    rows = wait_for("kubectl top pods -l app=steady to list the 3 steady pods", steady_rows, 60)
    assert all(r[0].startswith("steady-") for r in rows), rows
    cpus = [int(r[1].rstrip("m")) for r in rows]
    assert cpus == sorted(cpus, reverse=True)


def test_values_agree_with_upstream_metrics_server(tier):
    """Both servers scrape the same kubelets: CPU within the rate window's error, memory equal.

    Compared once both servers' rate windows begin after every steady pod became Ready: a window
    that still covers a container's start-up (metrics-server's fresh-container rule serves the
    average since the start) depends on when each server happened to scrape."""
    wait_for("APIService v1beta1.metrics.k8s.io to be Available", lambda: apiservice_available(tier), 120)

    def both():
        ready = ready_since(tier, "app=steady")
        ours, theirs = steady_pod_metrics(tier, None), steady_pod_metrics(tier, tier.upstream_port)
        settled = all(pod in ready and since >= ready[pod] + 1
                      for side in (ours, theirs) for (pod, _), (_, _, since) in side.items())
        return (ours, theirs) if len(ours) == 6 and set(ours) == set(theirs) and settled else None

    ours, theirs = wait_for("both servers to report the 6 steady containers over windows after readiness", both,
                            4 * RESOLUTION + 60)
    for key, (cpu, mem, _) in ours.items():
        their_cpu, their_mem, _ = theirs[key]
        assert cpu == pytest.approx(their_cpu, rel=0.1, abs=3), (key, cpu, their_cpu)
        assert mem == their_mem, (key, mem, their_mem)
    # the load model: 900m over 3 pods, split 3:1 by the containers' CPU requests
    app = [cpu for (_, c), (cpu, _, _) in ours.items() if c == "app"]
    assert sum(app) / 3 == pytest.approx(225, rel=0.1)
    code, node = fetch(tier, tier.upstream_port, f"{METRICS}/nodes/worker-1")
    assert code == 200
    mine = tier.raw(f"{METRICS}/nodes/worker-1")
    assert cpu_milli(mine["usage"]["cpu"]) == pytest.approx(cpu_milli(node["usage"]["cpu"]), rel=0.1, abs=3)


def test_requests_without_the_front_proxy_certificate_are_refused(tier):
    pki = tier.cluster.pki
    pki.issue_client("nobody").write(pki.path("nobody.crt"), pki.path("nobody.key"))
    path = f"{METRICS}/nodes"
    admin = {"X-Remote-User": "kubernetes-admin", "X-Remote-Group": "system:masters"}
    # positive control: the aggregator's own certificate with an authorized user is served
    code, _ = fetch(tier, tier.ours_port, path, cert="front-proxy-client", headers=admin)
    assert code == 200
    # no client certificate, forged headers: anonymous is not let in
    code, _ = fetch(tier, tier.ours_port, path, cert="", headers=admin)
    assert code == 401
    # a client-CA certificate is its own user, never a proxy: the headers are ignored
    code, body = fetch(tier, tier.ours_port, path, cert="nobody", headers=admin)
    assert code == 403, body
    assert "nobody" in str(body)
    # the front proxy vouches for a user the real RBAC denies: SubjectAccessReview says no
    code, body = fetch(tier, tier.ours_port, path, cert="front-proxy-client",
                       headers={"X-Remote-User": "nobody", "X-Remote-Group": "system:authenticated"})
    assert code == 403, body


@pytest.fixture(scope="module")
def fresh_cluster(tmp_path_factory):
    """A second, empty control plane (no metrics-server, nothing registered): where a user installs."""
    from sim.controlplane.controlplane import ControlPlane
    from sim.loopthread import LoopThread

    cp = ControlPlane(tmp_path_factory.mktemp("fresh"))
    loop = LoopThread("fresh-control-plane")
    loop.start_loop()
    try:
        loop.run(cp.start(), timeout=180)
        yield cp
    finally:
        loop.run(cp.stop(), timeout=60)
        loop.stop_loop()


def test_our_manifests_apply_with_server_dry_run_on_a_fresh_cluster(tier, fresh_cluster):
    """What a user does first: `kubectl apply -k manifests/` on a cluster without metrics-server."""
    for binary in (tier.kubectl, kubectl_127()):
        proc = subprocess.run([str(binary), "--kubeconfig", str(fresh_cluster.admin_kubeconfig), "apply", "-k",
                               str(ROOT / "manifests"), "--dry-run=server"], capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert "apiservice.apiregistration.k8s.io/v1beta1.metrics.k8s.io created (server dry run)" in proc.stdout
        assert "apiservice.apiregistration.k8s.io/v1.metrics.k8s.io created (server dry run)" in proc.stdout
        assert "clusterrole.rbac.authorization.k8s.io/system:metrics-server created (server dry run)" in proc.stdout


@pytest.mark.parametrize("values", [(), ("-f", "values-ha.yaml")], ids=["default", "high-availability"])
def test_helm_chart_applies_with_server_dry_run_on_a_fresh_cluster(tier, fresh_cluster, values):
    """The Helm chart's objects (helm template, as `helm install` would create them) pass the real
    API server's validation and admission: every object accepted, none unchanged or refused."""
    chart = ROOT / "charts" / "autoscaler"
    rendered = subprocess.run([str(binaries.find("helm")), "template", "metrics-server", str(chart), "-n",
                               "kube-system", *[str(chart / v) if v.endswith(".yaml") else v for v in values]],
                              capture_output=True, text=True, timeout=60)
    assert rendered.returncode == 0, rendered.stderr
    proc = subprocess.run([str(tier.kubectl), "--kubeconfig", str(fresh_cluster.admin_kubeconfig), "apply", "-f", "-",
                           "--dry-run=server"], input=rendered.stdout, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    objects = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    assert len(lines) == len(objects) and all(line.endswith("created (server dry run)") for line in lines), lines
    assert "deployment.apps/metrics-server created (server dry run)" in lines
    assert "apiservice.apiregistration.k8s.io/v1.metrics.k8s.io created (server dry run)" in lines
    if values:
        assert "poddisruptionbudget.policy/metrics-server created (server dry run)" in lines


# --- kube-controller-manager's HPA on our metrics ---------------------------------------------

def replicas(tier, name: str) -> int:
    return tier.json("get", "deploy", name)["spec"]["replicas"]


def test_builtin_hpa_scales_on_cpu_utilization_from_our_api(tier):
    wait_for("APIService Available", lambda: apiservice_available(tier), 120)
    tier.thread.set_load("default", "web", Constant(cores=1.2))
    wait_for("the built-in HPA to scale web up to 4", lambda: replicas(tier, "web") == 4, 150)
    hpa = tier.json("get", "hpa", "web")
    cpu = hpa["status"]["currentMetrics"][0]["resource"]
    assert cpu["name"] == "cpu" and cpu["current"]["averageUtilization"] > 50
    tier.thread.set_load("default", "web", Constant(cores=0.1))
    wait_for("the built-in HPA to scale web back down to 1", lambda: replicas(tier, "web") == 1, 180)
    out = tier.run("describe", "hpa", "web").stdout
    assert re.search(r"AbleToScale\s+True", out), out
    assert re.search(r"ScalingActive\s+True\s+ValidMetricFound", out), out
    assert re.search(r"SuccessfulRescale\s+.*New size: 4; reason: cpu resource utilization", out), out
    assert re.search(r"SuccessfulRescale\s+.*New size: 1; reason: All metrics below target", out), out


def test_builtin_hpa_scales_on_memory_average_value_from_our_api(tier):
    wait_for("APIService Available", lambda: apiservice_available(tier), 120)
    tier.thread.set_load("default", "podinfo", Constant(cores=1.0, memory_base=64 * 2**20,
                                                        memory_per_core=400 * 2**20))
    wait_for("the built-in HPA to scale podinfo up on memory", lambda: replicas(tier, "podinfo") >= 3, 150)
    hpa = tier.json("get", "hpa", "podinfo")
    mem = hpa["status"]["currentMetrics"][0]["resource"]
    assert mem["name"] == "memory" and "averageValue" in mem["current"]
    tier.thread.set_load("default", "podinfo", Constant(cores=0.05, memory_base=64 * 2**20,
                                                        memory_per_core=400 * 2**20))
    wait_for("the built-in HPA to scale podinfo back down to 1", lambda: replicas(tier, "podinfo") == 1, 180)
    out = tier.run("describe", "hpa", "podinfo").stdout
    assert re.search(r"SuccessfulRescale\s+.*reason: memory resource above target", out), out


# --- node failure (last: it takes a node away for a while) ------------------------------------

def node_ready(tier, name: str) -> dict:
    node = tier.json("get", "node", name)
    return next(c for c in node["status"]["conditions"] if c["type"] == "Ready")


def test_a_stopped_hollow_kubelet_is_seen_by_the_real_node_lifecycle_controller(tier):
    """The hollow node stops renewing its Lease and serving: kube-controller-manager marks it
    Unknown and unreachable, both metrics servers stop serving it; back, it is Ready again."""
    wait_for("APIService Available", lambda: apiservice_available(tier), 120)
    tier.thread.fail_node("worker-3")
    try:
        cond = wait_for("worker-3 to go Unknown", lambda: (c := node_ready(tier, "worker-3"))["status"] == "Unknown"
                        and c, GRACE + 60)
        assert cond["reason"] == "NodeStatusUnknown"
        taints = {t["key"] for t in tier.json("get", "node", "worker-3")["spec"].get("taints", [])}
        assert "node.kubernetes.io/unreachable" in taints
        wait_for("our metrics API to stop serving worker-3",
                 lambda: tier.run("get", "--raw", f"{METRICS}/nodes/worker-3", check=False).returncode != 0,
                 4 * RESOLUTION + 30)
        wait_for("metrics-server to stop serving worker-3",
                 lambda: fetch(tier, tier.upstream_port, f"{METRICS}/nodes/worker-3")[0] == 404, 4 * RESOLUTION + 30)
    finally:
        tier.thread.recover_node("worker-3")
    wait_for("worker-3 to be Ready again", lambda: node_ready(tier, "worker-3")["status"] == "True", 60)
    wait_for("the unreachable taint to go", lambda: not any(
        t["key"] == "node.kubernetes.io/unreachable"
        for t in tier.json("get", "node", "worker-3")["spec"].get("taints", [])), 60)
    wait_for("our metrics API to serve worker-3 again",
             lambda: tier.run("get", "--raw", f"{METRICS}/nodes/worker-3", check=False).returncode == 0,
             4 * RESOLUTION + 30)
