"""The deployment manifests: rendered by the real kubectl's kustomize, accepted by `kubectl apply
--dry-run=client` against the emulated API server, and wired together correctly (flags the
binary accepts, probes on the served health paths, RBAC metrics-server needs)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from autoscaler.cli import build_parser
from sim.cluster import run_in_thread
from sim.scenario import parse_scenario
from tests.kubectls import kubectl_set

ROOT = Path(__file__).resolve().parent.parent
BASE = ROOT / "manifests"
HA = ROOT / "manifests" / "overlays" / "high-availability"


def kustomize(path: Path, binary: str = "kubectl") -> tuple[str, list[dict]]:
    proc = subprocess.run([binary, "kustomize", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout, [d for d in yaml.safe_load_all(proc.stdout) if d]


def by_kind(docs: list[dict]) -> dict[tuple[str, str], dict]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def test_base_renders_with_metrics_server_objects():
    _, docs = kustomize(BASE)
    objs = by_kind(docs)
    assert set(objs) == {
        ("ServiceAccount", "metrics-server"), ("ClusterRole", "system:aggregated-metrics-reader"),
        ("ClusterRole", "system:metrics-server"), ("ClusterRoleBinding", "system:metrics-server"),
        ("RoleBinding", "metrics-server-auth-reader"), ("ClusterRoleBinding", "metrics-server:system:auth-delegator"),
        ("Service", "metrics-server"), ("Deployment", "metrics-server"), ("APIService", "v1beta1.metrics.k8s.io"),
        ("APIService", "v1.metrics.k8s.io"),
        # The HPA controller component (default --controller-mode=dry-run) and its leader election.
        ("ClusterRole", "autoscaler:hpa-controller"), ("ClusterRoleBinding", "autoscaler:hpa-controller"),
        ("Role", "autoscaler:hpa-controller-leader-election"),
        ("RoleBinding", "autoscaler:hpa-controller-leader-election"),
    }
    ctl = objs[("ClusterRole", "autoscaler:hpa-controller")]["rules"]
    assert {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers/status"], "verbs": ["update"]} in ctl
    assert {"apiGroups": ["*"], "resources": ["*/scale"], "verbs": ["get", "update"]} in ctl
    reader = objs[("ClusterRole", "system:aggregated-metrics-reader")]
    for role in ("admin", "edit", "view"):
        assert reader["metadata"]["labels"][f"rbac.authorization.k8s.io/aggregate-to-{role}"] == "true"
    assert reader["rules"] == [{"apiGroups": ["metrics.k8s.io"], "resources": ["pods", "nodes"],
                                "verbs": ["get", "list", "watch"]}]
    own = objs[("ClusterRole", "system:metrics-server")]["rules"]
    assert {"apiGroups": [""], "resources": ["nodes/metrics", "nodes/stats"], "verbs": ["get"]} in own
    assert {"apiGroups": [""], "resources": ["pods", "nodes"], "verbs": ["get", "list", "watch"]} in own
    assert objs[("RoleBinding", "metrics-server-auth-reader")]["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "extension-apiserver-authentication-reader"}
    assert objs[("ClusterRoleBinding", "metrics-server:system:auth-delegator")]["roleRef"]["name"] == "system:auth-delegator"
    for key in (("ClusterRoleBinding", "system:metrics-server"), ("RoleBinding", "metrics-server-auth-reader"),
                ("ClusterRoleBinding", "metrics-server:system:auth-delegator")):
        assert objs[key]["subjects"] == [{"kind": "ServiceAccount", "name": "metrics-server", "namespace": "kube-system"}]
    # Both versions go to the same Service; v1 (GA in 1.37) outranks v1beta1 within the group.
    prio = {}
    for version in ("v1", "v1beta1"):
        api = objs[("APIService", f"{version}.metrics.k8s.io")]["spec"]
        assert api["service"] == {"name": "metrics-server", "namespace": "kube-system"}
        assert (api["group"], api["version"], api["groupPriorityMinimum"]) == ("metrics.k8s.io", version, 100)
        prio[version] = api["versionPriority"]
    assert prio["v1"] > prio["v1beta1"] == 100


def test_deployment_is_locked_down_probed_and_runs_valid_flags():
    _, docs = kustomize(BASE)
    objs = by_kind(docs)
    dep = objs[("Deployment", "metrics-server")]
    pod = dep["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "metrics-server"
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert pod["securityContext"]["runAsNonRoot"] is True
    (c,) = pod["containers"]
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]} and sc["runAsNonRoot"] is True and sc["runAsUser"] != 0
    assert c["resources"]["requests"] == {"cpu": "100m", "memory": "200Mi"}
    assert c["image"].startswith("ghcr.io/autoscaler/autoscaler:")
    assert {(m["name"], m["mountPath"]) for m in c["volumeMounts"]} == {("tmp-dir", "/tmp")}

    # The container's arguments are accepted by the real command-line parser.
    args = build_parser().parse_args(c["args"])
    assert args.command == "run"
    assert (args.secure_port, args.cert_dir, args.metric_resolution) == (10250, "/tmp", 15.0)
    assert args.kubelet_use_node_status_port is True
    port = next(p for p in c["ports"] if p["name"] == "https")
    assert port["containerPort"] == args.secure_port
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/livez")):
        get = c[probe]["httpGet"]
        assert (get["path"], get["port"], get["scheme"]) == (path, "https", "HTTPS")
        assert path in args.authorization_always_allow_paths  # probes need no credentials
    svc = objs[("Service", "metrics-server")]["spec"]
    assert svc["ports"] == [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": "https"}]
    assert svc["selector"] == dep["spec"]["selector"]["matchLabels"] == {"k8s-app": "metrics-server"}


def test_high_availability_overlay():
    _, docs = kustomize(HA)
    objs = by_kind(docs)
    dep = objs[("Deployment", "metrics-server")]
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 1
    (term,) = dep["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"] == {"k8s-app": "metrics-server"}
    pdb = objs[("PodDisruptionBudget", "metrics-server")]
    assert pdb["metadata"]["namespace"] == "kube-system"
    assert pdb["spec"] == {"minAvailable": 1, "selector": {"matchLabels": {"k8s-app": "metrics-server"}}}
    # Everything else is the base, unchanged.
    assert len(objs) == len(by_kind(kustomize(BASE)[1])) + 1


@pytest.mark.parametrize("release", [k for k in kubectl_set() if k.name != "path"], ids=str)
def test_older_and_newer_kubectl_render_the_same_objects(release):
    binary = release.exe()
    for path in (BASE, HA):
        _, ours = kustomize(path)
        _, theirs = kustomize(path, binary)
        assert sorted(map(repr, ours)) == sorted(map(repr, theirs))


def _apply_dry_run(kubeconfig: Path, docs: list[dict]) -> list[str]:
    text = yaml.safe_dump_all(docs, sort_keys=False)
    proc = subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), "apply", "--dry-run=client", "-f", "-"],
                          input=text, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == len(docs) and all(line.endswith("(dry run)") for line in lines), lines
    return lines


@pytest.fixture(scope="module")
def emulated(tmp_path_factory):
    cluster = run_in_thread(parse_scenario({"name": "manifests", "nodes": [{"name": "worker-1"}]}),
                            tmp_path_factory.mktemp("manifests"))
    yield cluster
    cluster.stop()


def test_kubectl_apply_dry_run_against_the_emulated_api_server(emulated):
    for path in (BASE, HA):
        _, docs = kustomize(path)
        lines = _apply_dry_run(emulated.kubeconfig, docs)
        assert "deployment.apps/metrics-server created (dry run)" in lines
        assert "service/metrics-server created (dry run)" in lines
        assert "apiservice.apiregistration.k8s.io/v1beta1.metrics.k8s.io created (dry run)" in lines
        assert "apiservice.apiregistration.k8s.io/v1.metrics.k8s.io created (dry run)" in lines
        assert "clusterrole.rbac.authorization.k8s.io/system:aggregated-metrics-reader created (dry run)" in lines
    assert "poddisruptionbudget.policy/metrics-server created (dry run)" in lines  # HA overlay


def test_dockerfile_matches_the_deployment():
    """The image runs as the Deployment's non-root user, and its default command is a valid `autoscaler run`."""
    import json
    import re

    text = (ROOT / "Dockerfile").read_text()
    user = re.findall(r"^USER\s+(\S+)", text, re.M)[-1]
    entry = json.loads(re.search(r"^ENTRYPOINT\s+(.+)$", text, re.M).group(1))
    cmd = json.loads(re.search(r"^CMD\s+(.+)$", text, re.M).group(1))
    _, docs = kustomize(BASE)
    (c,) = by_kind(docs)[("Deployment", "metrics-server")]["spec"]["template"]["spec"]["containers"]
    assert user == f"{c['securityContext']['runAsUser']}:{c['securityContext']['runAsUser']}"
    assert entry == ["autoscaler"]
    assert build_parser().parse_args(cmd).command == "run"
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignored[1:2] == ["**"] and "!autoscaler/" in ignored  # only the sources reach the build context
