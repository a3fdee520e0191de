"""The emulated API server driven by real kubectl binaries (1.37, the one on PATH and 1.27: tests/kubectls.py)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time

import pytest

from sim.apiserver.testing import ServerThread
from tests.kubectls import kubectl_set

KUBECTL = shutil.which("kubectl")
ALL_KUBECTLS = kubectl_set()

APP = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  labels: {{app: {name}}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers:
      - name: app
        image: nginx:1.25
        resources: {{requests: {{cpu: 100m}}}}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {{name: {name}}}
spec:
  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: {name}}}
  maxReplicas: 5
"""

NODE_AND_PODS = """\
apiVersion: v1
kind: Node
metadata: {name: node-a, labels: {node-role.kubernetes.io/worker: ""}}
status:
  conditions: [{type: Ready, status: "True"}]
  nodeInfo: {kubeletVersion: v1.32.0, osImage: Sim OS, kernelVersion: "6.1", containerRuntimeVersion: "sim://1"}
  addresses: [{type: InternalIP, address: 127.0.0.1}]
  capacity: {cpu: "4", memory: 8Gi, pods: "110"}
  allocatable: {cpu: "4", memory: 8Gi, pods: "110"}
---
apiVersion: v1
kind: Pod
metadata: {name: bound, labels: {app: web, tier: fe}}
spec:
  nodeName: node-a
  containers: [{name: c, image: nginx, resources: {requests: {cpu: 250m, memory: 64Mi}, limits: {cpu: 250m, memory: 64Mi}}}]
---
apiVersion: v1
kind: Pod
metadata: {name: unbound, labels: {app: db}}
spec:
  containers: [{name: c, image: redis:7}]
"""


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    with ServerThread(tmp_path_factory.mktemp("apiserver")) as s:
        yield s


def kubectl(srv, *args: str, binary: str | None = None, check: bool = True, stdin: str | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess:
    cmd = [binary or KUBECTL, "--kubeconfig", str(srv.kubeconfig), *args]
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc


def test_versioned_kubectls_are_installed():
    assert KUBECTL, "kubectl must be on PATH"
    for k in ALL_KUBECTLS:
        assert os.access(k.exe(), os.X_OK), f"{k.exe()} is not executable"


def test_api_resources_lists_served_resources(srv):
    out = kubectl(srv, "api-resources", "-o", "wide").stdout
    names = {line.split()[0] for line in out.splitlines()[1:]}
    for name in ("pods", "nodes", "deployments", "replicasets", "statefulsets", "horizontalpodautoscalers",
                 "leases", "apiservices", "tokenreviews", "subjectaccessreviews", "events", "endpoints"):
        assert name in names, out
    assert "hpa" in out and "autoscaling/v2" in out


@pytest.mark.parametrize("release", ALL_KUBECTLS, ids=str)
def test_apply_is_idempotent_and_hpa_is_defaulted(srv, release):
    binary = release.exe()
    name = "web-" + release.name.replace(".", "-")
    manifest = APP.format(name=name)
    out = kubectl(srv, "apply", "-f", "-", binary=binary, stdin=manifest).stdout
    assert f"deployment.apps/{name} created" in out
    assert f"horizontalpodautoscaler.autoscaling/{name} created" in out
    out = kubectl(srv, "apply", "-f", "-", binary=binary, stdin=manifest).stdout
    assert f"deployment.apps/{name} unchanged" in out
    hpa = json.loads(kubectl(srv, "get", "hpa", name, "-o", "json", binary=binary).stdout)
    assert hpa["spec"]["minReplicas"] == 1
    assert hpa["spec"]["metrics"][0]["resource"]["target"] == {"type": "Utilization", "averageUtilization": 80}
    # a changed field is applied with a strategic merge patch and bumps the generation
    kubectl(srv, "apply", "-f", "-", binary=binary, stdin=manifest.replace("nginx:1.25", "nginx:1.26"))
    dep = json.loads(kubectl(srv, "get", "deploy", name, "-o", "json").stdout)
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.26"
    assert dep["metadata"]["generation"] == 2


def test_get_tables_match_kube_columns(srv):
    kubectl(srv, "apply", "-f", "-", stdin=APP.format(name="cols"))
    out = kubectl(srv, "get", "deploy", "cols", "-o", "wide").stdout.splitlines()
    assert out[0].split() == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]
    assert out[1].split()[:2] == ["cols", "0/2"] and out[1].split()[-1] == "app=cols"
    out = kubectl(srv, "get", "hpa", "cols").stdout.splitlines()
    assert out[0].split() == ["NAME", "REFERENCE", "TARGETS", "MINPODS", "MAXPODS", "REPLICAS", "AGE"]
    assert "Deployment/cols" in out[1] and "cpu: <unknown>/80%" in out[1]
    out = kubectl(srv, "get", "ns").stdout
    assert out.splitlines()[0].split() == ["NAME", "STATUS", "AGE"]
    for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
        assert f"{ns} " in out


def test_pods_nodes_selectors_and_describe(srv):
    kubectl(srv, "apply", "-f", "-", stdin=NODE_AND_PODS)
    out = kubectl(srv, "get", "pods", "-o", "wide", "-l", "app in (web,db)").stdout.splitlines()
    assert out[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED", "NODE",
                              "READINESS", "GATES"]
    assert {line.split()[0] for line in out[1:]} == {"bound", "unbound"}
    out = kubectl(srv, "get", "pods", "-l", "app=web,tier!=be", "-o", "name").stdout.split()
    assert out == ["pod/bound"]
    out = kubectl(srv, "get", "pods", "--field-selector", "spec.nodeName=node-a", "-o", "name").stdout.split()
    assert out == ["pod/bound"]
    bad = kubectl(srv, "get", "pods", "--field-selector", "spec.foo=x", check=False)
    assert bad.returncode != 0 and "field label not supported: spec.foo" in bad.stderr
    nodes = kubectl(srv, "get", "nodes", "-o", "wide").stdout.splitlines()
    assert nodes[0].split()[:5] == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert nodes[1].split()[:3] == ["node-a", "Ready", "worker"] and "Sim OS" in nodes[1]
    desc = kubectl(srv, "describe", "node", "node-a").stdout
    assert "default                     bound" in desc and "250m (6%)" in desc
    desc = kubectl(srv, "describe", "pod", "bound").stdout
    # describe aligns values after the longest key (the token volume's), so compare words
    assert re.search(r"QoS Class:\s+Guaranteed", desc) and re.search(r"Node:\s+node-a", desc)


def test_describe_deployment_and_hpa(srv):
    kubectl(srv, "apply", "-f", "-", stdin=APP.format(name="desc"))
    d = kubectl(srv, "describe", "deployment", "desc").stdout
    assert "RollingUpdateStrategy:  25% max unavailable, 25% max surge" in d
    assert "Replicas:               2 desired" in d
    h = kubectl(srv, "describe", "hpa", "desc").stdout
    assert "Reference:" in h and "Deployment/desc" in h
    assert "resource cpu on pods  (as a percentage of request):  <unknown> / 80%" in h
    assert "Min replicas:" in h and "Max replicas:" in h


def test_scale_and_three_patch_types(srv):
    kubectl(srv, "apply", "-f", "-", stdin=APP.format(name="pt"))
    kubectl(srv, "scale", "deploy", "pt", "--replicas=4")
    kubectl(srv, "patch", "deploy", "pt", "-p", '{"spec":{"template":{"spec":{"containers":[{"name":"app","image":"x:2"}]}}}}')
    kubectl(srv, "patch", "deploy", "pt", "--type=merge", "-p", '{"metadata":{"labels":{"team":"a"}}}')
    kubectl(srv, "patch", "deploy", "pt", "--type=json", "-p", '[{"op":"replace","path":"/spec/replicas","value":3}]')
    d = json.loads(kubectl(srv, "get", "deploy", "pt", "-o", "json").stdout)
    c = d["spec"]["template"]["spec"]["containers"]
    assert len(c) == 1 and c[0]["image"] == "x:2" and c[0]["resources"] == {"requests": {"cpu": "100m"}}
    assert d["metadata"]["labels"] == {"app": "pt", "team": "a"}
    assert d["spec"]["replicas"] == 3
    assert d["metadata"]["generation"] == 4  # scale, image, replicas; the label patch is not a spec change


def test_create_namespace_and_missing_namespace(srv):
    assert "namespace/team-a created" in kubectl(srv, "create", "namespace", "team-a").stdout
    kubectl(srv, "create", "deployment", "d", "-n", "team-a", "--image=nginx:1", "--replicas=0")
    d = json.loads(kubectl(srv, "get", "deploy", "d", "-n", "team-a", "-o", "json").stdout)
    assert d["spec"]["replicas"] == 0 and d["spec"]["selector"] == {"matchLabels": {"app": "d"}}
    sa = json.loads(kubectl(srv, "get", "sa", "default", "-n", "team-a", "-o", "json").stdout)
    assert sa["metadata"]["namespace"] == "team-a"
    bad = kubectl(srv, "create", "configmap", "c", "-n", "no-such-ns", "--from-literal=a=b", check=False)
    assert bad.returncode != 0 and 'namespaces "no-such-ns" not found' in bad.stderr
    out = kubectl(srv, "delete", "namespace", "team-a").stdout
    assert 'namespace "team-a" deleted' in out
    assert kubectl(srv, "get", "ns", "team-a", check=False).returncode != 0


def test_dry_run_server_does_not_persist(srv):
    out = kubectl(srv, "create", "configmap", "dry", "--from-literal=a=b", "--dry-run=server", "-o", "name").stdout
    assert out.strip() == "configmap/dry"
    assert "NotFound" in kubectl(srv, "get", "cm", "dry", check=False).stderr


def test_delete_pods_graceful_and_immediate(srv):
    kubectl(srv, "apply", "-f", "-", stdin=NODE_AND_PODS.replace("bound", "gbound"))
    kubectl(srv, "delete", "pod", "ungbound")
    assert kubectl(srv, "get", "pod", "ungbound", check=False).returncode != 0
    kubectl(srv, "delete", "pod", "gbound", "--wait=false")
    p = json.loads(kubectl(srv, "get", "pod", "gbound", "-o", "json").stdout)
    assert p["metadata"]["deletionGracePeriodSeconds"] == 30 and p["metadata"]["deletionTimestamp"]
    assert "Terminating" in kubectl(srv, "get", "pod", "gbound").stdout
    # what the kubelet does once the containers are gone
    kubectl(srv, "delete", "pod", "gbound", "--grace-period=0", "--force")
    assert kubectl(srv, "get", "pod", "gbound", check=False).returncode != 0


def test_get_watch_streams_table_rows(srv):
    kubectl(srv, "create", "configmap", "w1", "--from-literal=a=b")
    proc = subprocess.Popen([KUBECTL, "--kubeconfig", str(srv.kubeconfig), "get", "cm", "-w",
                             "--request-timeout=8s"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        assert first.split() == ["NAME", "DATA", "AGE"]
        seen = {proc.stdout.readline().split()[0] for _ in range(_count_cms(srv))}
        assert "w1" in seen
        kubectl(srv, "create", "configmap", "w2", "--from-literal=a=b", "--from-literal=c=d")
        line = proc.stdout.readline().split()
        assert line[:2] == ["w2", "2"]
    finally:
        proc.kill()
        proc.wait()


def _count_cms(srv) -> int:
    return len(srv.call(lambda: srv.store.list("configmaps", "default")[0]))


def test_create_token_and_auth(srv):
    token = kubectl(srv, "create", "token", "default").stdout.strip()
    assert token.count(".") == 2
    assert kubectl(srv, "auth", "can-i", "list", "pods").stdout.strip() == "yes"
    who = kubectl(srv, "auth", "whoami", "-o", "json").stdout
    assert json.loads(who)["status"]["userInfo"]["username"] == "admin"
    # the token authenticates as the service account
    cfg = srv.kubeconfig.read_text()
    out = subprocess.run([KUBECTL, "--server", srv.server.url, "--certificate-authority",
                          str(srv.directory / "pki" / "ca.crt"), "--token", token, "auth", "whoami", "-o", "json"],
                         capture_output=True, text=True, timeout=30, env={**os.environ, "KUBECONFIG": "/dev/null"})
    assert cfg and json.loads(out.stdout)["status"]["userInfo"]["username"] == "system:serviceaccount:default:default"


def test_unauthenticated_is_refused(srv):
    out = subprocess.run([KUBECTL, "--server", srv.server.url, "--certificate-authority",
                          str(srv.directory / "pki" / "ca.crt"), "--token", "not-a-token", "get", "pods"],
                         capture_output=True, text=True, timeout=30, env={**os.environ, "KUBECONFIG": "/dev/null"})
    assert out.returncode != 0 and "You must be logged in to the server (Unauthorized)" in out.stderr


def test_events_table(srv):
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    ev = {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "web.1", "namespace": "default"},
          "involvedObject": {"kind": "Deployment", "name": "web", "namespace": "default"},
          "reason": "ScalingReplicaSet", "message": "Scaled up replica set web-1 to 2", "type": "Normal",
          "count": 1, "firstTimestamp": now, "lastTimestamp": now, "source": {"component": "deployment-controller"}}
    kubectl(srv, "create", "-f", "-", stdin=json.dumps(ev))
    out = kubectl(srv, "get", "events").stdout.splitlines()
    assert out[0].split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    assert "deployment/web" in out[1] and "ScalingReplicaSet" in out[1]
    # the same event seen through events.k8s.io/v1
    got = json.loads(kubectl(srv, "get", "--raw", "/apis/events.k8s.io/v1/namespaces/default/events/web.1").stdout)
    assert got["regarding"]["name"] == "web" and got["note"].startswith("Scaled up")


@pytest.mark.parametrize("release", ALL_KUBECTLS, ids=str)
def test_typed_create_subcommands_protobuf_and_rbac_colons(srv, release):
    """kubectl 1.32+ sends (and reads) protobuf from its typed `create`/`autoscale` subcommands;
    RBAC names may hold colons, as system:* roles do."""
    binary, tag = release.exe(), release.name.replace(".", "-")
    role = f"team:{tag}:view"
    out = kubectl(srv, "create", "clusterrole", role, "--verb=get,list", "--resource=deployments.apps",
                  binary=binary).stdout
    assert f"clusterrole.rbac.authorization.k8s.io/{role} created" in out
    kubectl(srv, "create", "clusterrolebinding", role, f"--clusterrole={role}", "--group=viewers", binary=binary)
    kubectl(srv, "create", "pdb", f"pdb-{tag}", "--selector=app=x", "--max-unavailable=1", binary=binary)
    kubectl(srv, "create", "deployment", f"d-{tag}", "--image=nginx:1", "--replicas=0", binary=binary)
    kubectl(srv, "autoscale", "deploy", f"d-{tag}", "--min=2", "--max=4", binary=binary)
    crb = json.loads(kubectl(srv, "get", "clusterrolebinding", role, "-o", "json").stdout)
    assert crb["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role}
    assert crb["subjects"] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "viewers"}]
    pdb = json.loads(kubectl(srv, "get", "pdb", f"pdb-{tag}", "-o", "json").stdout)
    assert pdb["spec"] == {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "x"}}}
    hpa = json.loads(kubectl(srv, "get", "hpa", f"d-{tag}", "-o", "json").stdout)
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 4)
    bad = kubectl(srv, "create", "clusterrole", "a/b", "--verb=get", "--resource=pods", binary=binary, check=False)
    assert bad.returncode != 0 and "may not contain '/'" in bad.stderr
