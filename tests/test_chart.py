"""The Helm chart (charts/autoscaler), rendered by the real helm built from its Go module.

With default values the chart renders exactly the objects of `kubectl kustomize manifests/`
(the 1.37 kubectl's kustomize), with the HA values those of the high-availability overlay, and
with monitoring on those of the monitoring overlay; the only differences allowed are Helm's own
labels (chart, instance, version, managed-by). Values that change the install are checked
through what a user relies on: the container's flags parse with the real `autoscaler run`
parser, and bad combinations fail the render with the reason. The real-cluster tier applies the
rendered objects with --dry-run=server (tests/test_real_cluster.py).
"""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest
import yaml

from autoscaler.cli import build_parser
from sim.controlplane import binaries

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "autoscaler"
HA_VALUES = CHART / "values-ha.yaml"
MONITORING = ("--set", "metrics.enabled=true,serviceMonitor.enabled=true,prometheusRule.enabled=true,"
              "dashboards.enabled=true")
#: labels only Helm adds (metrics-server's chart has the same ones); everything else must match
HELM_LABELS = {"app.kubernetes.io/instance", "app.kubernetes.io/version", "app.kubernetes.io/managed-by",
               "helm.sh/chart"}


def helm_exe() -> str:
    return str(binaries.find("helm"))  # fails with `python3 scripts/build_control_plane.py` when missing


def helm(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([helm_exe(), *argv], capture_output=True, text=True, timeout=120)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def render(*values: str, namespace: str = "kube-system", release: str = "metrics-server") -> list[dict]:
    out = helm("template", release, str(CHART), "--namespace", namespace, *values).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def kustomize(path: Path) -> list[dict]:
    proc = subprocess.run([str(binaries.find("kubectl")), "kustomize", str(path)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def key(d: dict) -> tuple[str, str, str | None, str]:
    return d["apiVersion"], d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]


def without_helm_labels(docs: list[dict]) -> dict[tuple, dict]:
    out = {}
    for d in docs:
        labels = d["metadata"].get("labels") or {}
        d["metadata"]["labels"] = {k: v for k, v in labels.items() if k not in HELM_LABELS}
        out[key(d)] = d
    return out


def by_kind(docs: list[dict]) -> dict[tuple[str, str], dict]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def container(docs: list[dict]) -> dict:
    (c,) = by_kind(docs)[("Deployment", "metrics-server")]["spec"]["template"]["spec"]["containers"]
    return c


def run_args(docs: list[dict]):
    return build_parser().parse_args(container(docs)["args"])


def test_helm_lint_passes_for_default_and_ha_values():
    for values in ((), ("-f", str(HA_VALUES)), MONITORING):
        proc = helm("lint", "--strict", str(CHART), *values)
        assert "1 chart(s) linted, 0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize(("values", "overlay"), [
    ((), ROOT / "manifests"),
    (("-f", str(HA_VALUES)), ROOT / "manifests" / "overlays" / "high-availability"),
    (MONITORING, ROOT / "manifests" / "overlays" / "monitoring"),
], ids=["default", "high-availability", "monitoring"])
def test_chart_renders_the_same_objects_as_kustomize(values, overlay):
    ours = without_helm_labels(render(*values))
    theirs = {key(d): d for d in kustomize(overlay)}
    assert sorted(ours) == sorted(theirs)
    for k, obj in theirs.items():
        assert ours[k] == obj, k


def test_every_object_carries_helms_labels_for_its_tooling():
    for d in render("-f", str(HA_VALUES)):
        labels = d["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "Helm" and labels["helm.sh/chart"] == "autoscaler-0.1.0"
        assert labels["app.kubernetes.io/instance"] == "metrics-server"


def test_ha_values_spread_two_replicas_with_a_budget_and_leader_election():
    docs = render("-f", str(HA_VALUES))
    objs = by_kind(docs)
    dep = objs[("Deployment", "metrics-server")]["spec"]
    assert dep["replicas"] == 2 and dep["strategy"]["rollingUpdate"]["maxUnavailable"] == 1
    (term,) = dep["template"]["spec"]["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["labelSelector"]["matchLabels"] == dep["selector"]["matchLabels"]
    assert objs[("PodDisruptionBudget", "metrics-server")]["spec"]["minAvailable"] == 1
    args = run_args(docs)
    assert args.leader_elect is True and args.controller_mode == "dry-run"
    assert ("Role", "autoscaler:hpa-controller-leader-election") in objs


def test_controller_values_become_run_flags_and_rbac():
    docs = render("--set", "controller.mode=active,controller.leaderElection.resourceName=hpa-lease")
    args = run_args(docs)
    assert (args.controller_mode, args.leader_elect_resource_name) == ("active", "hpa-lease")
    role = by_kind(docs)[("Role", "autoscaler:hpa-controller-leader-election")]
    assert {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": ["hpa-lease"],
            "verbs": ["get", "update"]} in role["rules"]

    off = by_kind(render("--set", "controller.mode=off"))
    assert run_args(list(off.values())).controller_mode == "off"
    assert not [k for k in off if k[1].startswith("autoscaler:hpa-controller")]  # no controller RBAC

    args = run_args(render("--set", "controller.dryRunAnnotate=true,controller.leaderElection.enabled=false"))
    assert args.dry_run_annotate is True and args.leader_elect is False


def test_another_namespace_keeps_the_auth_reader_in_kube_system_and_the_lease_beside_the_pods():
    docs = render(namespace="monitoring", release="ms")
    objs = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    assert ("Deployment", "ms-metrics-server") in objs
    assert objs[("RoleBinding", "ms-metrics-server-auth-reader")]["metadata"]["namespace"] == "kube-system"
    assert objs[("Role", "autoscaler:hpa-controller-leader-election")]["metadata"]["namespace"] == "monitoring"
    dep = objs[("Deployment", "ms-metrics-server")]
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert build_parser().parse_args(c["args"]).leader_elect_resource_namespace == "monitoring"
    for version in ("v1", "v1beta1"):
        assert objs[("APIService", f"{version}.metrics.k8s.io")]["spec"]["service"] == {
            "name": "ms-metrics-server", "namespace": "monitoring"}
    sa = {"kind": "ServiceAccount", "name": "ms-metrics-server", "namespace": "monitoring"}
    assert objs[("ClusterRoleBinding", "system:ms-metrics-server")]["subjects"] == [sa]
    assert objs[("Service", "ms-metrics-server")]["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]


def test_apiservice_tls_by_ca_bundle():
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    docs = render("--set", "tls.type=existingSecret,tls.existingSecret.name=serving", "--set-string",
                  f"apiService.caBundle={pem}")
    objs = by_kind(docs)
    for version in ("v1", "v1beta1"):
        spec = objs[("APIService", f"{version}.metrics.k8s.io")]["spec"]
        assert "insecureSkipTLSVerify" not in spec
        assert base64.b64decode(spec["caBundle"]).decode() == pem
    args = run_args(docs)
    c = container(docs)
    mount = next(m for m in c["volumeMounts"] if m["name"] == "tls")
    assert args.tls_cert_file == f"{mount['mountPath']}/tls.crt" and mount["readOnly"] is True
    volumes = objs[("Deployment", "metrics-server")]["spec"]["template"]["spec"]["volumes"]
    assert {"name": "tls", "secret": {"secretName": "serving"}} in volumes


def test_apiservice_tls_by_cert_manager():
    docs = render("--set", "tls.type=cert-manager")
    objs = by_kind(docs)
    cert = objs[("Certificate", "metrics-server")]["spec"]
    assert "metrics-server.kube-system.svc" in cert["dnsNames"]
    assert cert["issuerRef"] == {"group": "cert-manager.io", "kind": "Issuer", "name": "metrics-server-issuer"}
    assert ("Issuer", "metrics-server-issuer") in objs
    for version in ("v1", "v1beta1"):
        api = objs[("APIService", f"{version}.metrics.k8s.io")]
        assert api["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == "kube-system/metrics-server"
        assert "insecureSkipTLSVerify" not in api["spec"] and "caBundle" not in api["spec"]
    volumes = objs[("Deployment", "metrics-server")]["spec"]["template"]["spec"]["volumes"]
    assert {"name": "tls", "secret": {"secretName": cert["secretName"]}} in volumes
    assert run_args(docs).tls_private_key_file.endswith("/tls.key")


@pytest.mark.parametrize(("values", "message"), [
    ("controller.mode=on", "controller.mode must be active, dry-run or off"),
    ("replicas=2,controller.mode=active,controller.leaderElection.enabled=false", "needs controller.leaderElection"),
    ("serviceMonitor.enabled=true", "serviceMonitor.enabled needs metrics.enabled"),
    ("tls.type=helm", "tls.type must be metrics-server, existingSecret or cert-manager"),
    ("tls.type=existingSecret", "needs tls.existingSecret.name"),
])
def test_bad_values_fail_the_render_with_the_reason(values, message):
    proc = helm("template", "metrics-server", str(CHART), "--set", values, check=False)
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr


def test_metrics_server_values_carry_over():
    """Keys a metrics-server values file commonly sets mean the same here."""
    docs = render("--set", "args={--kubelet-insecure-tls},replicas=3,containerPort=4443,service.port=8443,"
                  "image.tag=9.9.9,priorityClassName=,hostNetwork.enabled=true",
                  "--set-string", "podLabels.team=infra")
    objs = by_kind(docs)
    pod = objs[("Deployment", "metrics-server")]["spec"]["template"]
    args = run_args(docs)
    assert args.kubelet_insecure_tls is True and args.secure_port == 4443
    assert container(docs)["image"] == "ghcr.io/autoscaler/autoscaler:9.9.9"
    assert objs[("Deployment", "metrics-server")]["spec"]["replicas"] == 3
    assert pod["metadata"]["labels"]["team"] == "infra" and pod["spec"]["hostNetwork"] is True
    assert "priorityClassName" not in pod["spec"]
    assert objs[("Service", "metrics-server")]["spec"]["ports"][0]["port"] == 8443
    assert objs[("APIService", "v1.metrics.k8s.io")]["spec"]["service"]["port"] == 8443
