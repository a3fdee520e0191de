"""Unknown-field detection for built-in kinds (kube-apiserver's strict decoding), and the emulator's
``fieldValidation`` handling as the real kubectl sees it."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path

import pytest
import yaml

from autoscaler.k8s.fields import model_for, prune_unknown, strict_decoding_error, unknown_fields
from sim.apiserver.testing import ServerThread
from tests.sim_fixtures import KUBECTL

HPA = {
    "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
    "metadata": {"name": "web", "namespace": "default", "labels": {"app.kubernetes.io/name": "web"}},
    "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
             "minReplicas": 1, "maxReplicas": 5,
             "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                 "type": "Utilization", "averageUtilization": 60}}}],
             "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60, "tolerance": "0.05",
                                        "policies": [{"type": "Pods", "value": 1, "periodSeconds": 15}]}}},
}


def test_a_valid_object_has_no_unknown_fields():
    assert unknown_fields(HPA) == []


def test_unknown_fields_are_named_with_api_server_paths_and_pruned():
    hpa = copy.deepcopy(HPA)
    hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilisation"] = 50
    hpa["spec"]["behavior"]["scaleDown"]["policies"][0]["periodSecond"] = 30
    hpa["spec"]["replicas"] = 3
    paths = ["spec.metrics[0].resource.target.averageUtilisation", "spec.behavior.scaleDown.policies[0].periodSecond",
             "spec.replicas"]
    assert unknown_fields(hpa) == paths
    assert strict_decoding_error(paths[2:]) == 'strict decoding error: unknown field "spec.replicas"'
    assert prune_unknown(hpa) == paths
    assert hpa == HPA


def test_other_kinds_and_versions():
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "annotations": {"a.b/c": "x"}},
           "spec": {"replicas": 1, "template": {"spec": {"containers": [
               {"name": "c", "image": "i", "resources": {"requests": {"cpu": "1"}}, "imagePullPolcy": "Always"}]}}}}
    assert unknown_fields(dep) == ["spec.template.spec.containers[0].imagePullPolcy"]
    v1 = {"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
          "spec": {"targetCPUUtilizationPercentage": 50, "metrics": []}}
    assert unknown_fields(v1) == ["spec.metrics"]  # autoscaling/v1 has no metrics list
    assert model_for("v1", "Event") == "CoreV1Event" and model_for("events.k8s.io/v1", "Event") == "EventsV1Event"
    assert model_for("example.com/v1", "Widget") is None
    assert unknown_fields({"apiVersion": "example.com/v1", "kind": "Widget", "spec": {"anything": 1}}) == []


# -- the emulated API server, through the real kubectl ---------------------------------------------
@pytest.fixture(scope="module")
def apiserver(tmp_path_factory):
    with ServerThread(tmp_path_factory.mktemp("apiserver")) as srv:
        yield srv


def kubectl(srv: ServerThread, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([KUBECTL, "--kubeconfig", str(srv.kubeconfig), *args], capture_output=True, text=True,
                          timeout=60)


def test_field_validation_strict_warn_and_ignore(apiserver, tmp_path: Path):
    hpa = copy.deepcopy(HPA)
    hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSecond"] = 0
    manifest = tmp_path / "hpa.yaml"
    manifest.write_text(yaml.safe_dump(hpa))
    # kubectl's default (--validate=strict) sends fieldValidation=Strict: refused, as by kube-apiserver
    p = kubectl(apiserver, "apply", "-f", str(manifest))
    assert p.returncode == 1
    assert ('HorizontalPodAutoscaler in version "v2" cannot be handled as a HorizontalPodAutoscaler: strict decoding '
            'error: unknown field "spec.behavior.scaleDown.stabilizationWindowSecond"') in p.stderr
    assert kubectl(apiserver, "get", "hpa", "web").returncode == 1  # nothing was stored
    # Warn: stored without the field, and kubectl prints the server's warning
    p = kubectl(apiserver, "apply", "--validate=warn", "-f", str(manifest))
    assert p.returncode == 0, p.stderr
    assert 'Warning: unknown field "spec.behavior.scaleDown.stabilizationWindowSecond"' in p.stderr
    stored = yaml.safe_load(kubectl(apiserver, "get", "hpa", "web", "-o", "yaml").stdout)
    assert "stabilizationWindowSecond" not in stored["spec"]["behavior"]["scaleDown"]
    assert stored["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 60
    # Ignore: dropped silently
    hpa["spec"]["maxReplicas"], hpa["spec"]["maxReplica"] = 7, 8
    manifest.write_text(yaml.safe_dump(hpa))
    p = kubectl(apiserver, "apply", "--validate=false", "-f", str(manifest))
    assert p.returncode == 0 and "Warning" not in p.stderr, p.stderr
    stored = yaml.safe_load(kubectl(apiserver, "get", "hpa", "web", "-o", "yaml").stdout)
    assert stored["spec"]["maxReplicas"] == 7 and "maxReplica" not in stored["spec"]
    # kubectl patch sends no fieldValidation: the server's default, Warn, checks the patched object
    p = kubectl(apiserver, "patch", "hpa", "web", "--type=merge", "-p", '{"spec": {"maxReplica": 8}}')
    assert p.returncode == 0 and 'Warning: unknown field "spec.maxReplica"' in p.stderr, p.stderr


def test_the_field_table_is_the_kubernetes_clients_models():
    """autoscaler/k8s/api_fields.json (read instead of importing the client) matches the installed
    client; after upgrading it run `python3 scripts/gen_api_fields.py`."""
    import json
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from gen_api_fields import OUT, table

    assert json.loads(OUT.read_text()) == table(), "stale table: run python3 scripts/gen_api_fields.py"
