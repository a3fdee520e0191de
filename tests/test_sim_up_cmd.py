"""`autoscaler sim up` as a user runs it: a subprocess with a scenario file, then the real kubectl."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from sim_fixtures import kubectl

from sim.scenario import ScenarioError, load_scenario, parse_scenario

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = """\
name: up-test
timing: {startupDelay: 1s, readinessDelay: 1s}
nodes:
  - {namePrefix: worker, count: 2, cpu: "2", memory: 8Gi}
workloads:
  - name: web
    replicas: 3
    requests: {cpu: 100m, memory: 64Mi}
    load: {kind: diurnal, min: 100m, max: 1, period: 1h}
  - name: batch
    namespace: jobs
    replicas: 1
    requests: {cpu: 200m}
    load: {kind: spike, base: 100m, peak: 2, at: 1m, duration: 30s}
hpas:
  - {target: web, minReplicas: 2, maxReplicas: 5, cpuUtilization: 50}
"""


def _sim_up(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "autoscaler", "sim", "up", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sim_up_serves_a_cluster_kubectl_can_use(tmp_path):
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(SCENARIO)
    kc = tmp_path / "admin.kubeconfig"
    proc = _sim_up("-f", str(scenario), "--state-dir", str(tmp_path / "state"), "--kubeconfig", str(kc),
                   "--speed", "10")
    try:
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("Press Ctrl-C"):
                break
        out = "".join(lines)
        assert f"export KUBECONFIG={kc}" in out, proc.stderr.read() if proc.poll() is not None else out
        assert "metrics-server.kubeconfig" in out
        assert "2 nodes, 2 workloads, 1 HPAs" in out
        # 1 core over 3 pods x 100m at 50 % from the start (the diurnal peak is at 0s)
        assert "HPA web: the load first asks for more than 3 pods at 0s" in out
        nodes = kubectl(kc, "get", "nodes")
        assert "worker-1" in nodes and "worker-2" in nodes and "Ready" in nodes
        for _ in range(200):  # until the kubelets report every pod Running (virtual time runs 10×)
            pods = json.loads(kubectl(kc, "get", "pods", "-A", "-o", "json"))["items"]
            if len(pods) == 4 and all(p["status"].get("phase") == "Running" for p in pods):
                break
            time.sleep(0.1)
        assert {(p["metadata"]["namespace"], p["status"]["phase"]) for p in pods} == {
            ("default", "Running"), ("jobs", "Running")}
        deploys = kubectl(kc, "get", "deploy", "-A")
        assert "web" in deploys and "batch" in deploys
        hpa = json.loads(kubectl(kc, "get", "hpa", "web", "-o", "json"))
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}
        assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 50
        # the metrics-server ServiceAccount kubeconfig authenticates with its token
        assert "worker-1" in kubectl(tmp_path / "state" / "metrics-server.kubeconfig", "get", "nodes")
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0
    assert (tmp_path / "state" / "metrics-server.kubeconfig").exists()  # a --state-dir given is kept
    assert "it holds private keys" in proc.stderr.read()


@pytest.mark.parametrize("keep", [False, True])
def test_a_temporary_state_dir_is_deleted_at_the_stop_unless_kept(tmp_path, keep):
    """The default state directory holds the cluster's private keys: gone at the stop unless asked for."""
    import os

    proc = subprocess.Popen([sys.executable, "-m", "autoscaler", "sim", "up", "--nodes", "1",
                             *(["--keep-state-dir"] if keep else [])], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=dict(os.environ, TMPDIR=str(tmp_path)))
    try:
        state = None
        for line in proc.stdout:
            if line.startswith("State dir:"):
                state = Path(line.split(":", 1)[1].strip())
            if line.startswith("Press Ctrl-C"):
                break
        assert state is not None and state.parent == tmp_path, proc.stderr.read() if proc.poll() is not None else state
        assert (state / "pki").exists() or any(state.iterdir())
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    err = proc.stderr.read()
    assert proc.returncode == 0, err
    assert state.exists() == keep, err
    assert ("Deleted the state directory" in err) != keep


def test_first_scale_up_forecast():
    from sim.up_cmd import first_scale_ups

    doc = yaml.safe_load(SCENARIO)
    doc["workloads"][0]["load"] = {"kind": "diurnal", "min": "100m", "max": "1", "period": "1h", "peak": "30m"}
    # 3 pods x 100m x 50 % x 1.1 tolerance = 165m: the cosine from 100m reaches it at 5m15s of the hour
    assert first_scale_ups(parse_scenario(doc), 1) == [
        "HPA web: the load first asks for more than 3 pods at 5m15s; the HPA follows one sync period and about "
        "two scrapes later"]
    assert "at 5m15s of virtual time (31.5s wall)" in first_scale_ups(parse_scenario(doc), 10)[0]
    doc["workloads"][0]["load"] = {"kind": "constant", "cores": "150m"}
    assert first_scale_ups(parse_scenario(doc), 1) == ["HPA web: the load stays within 3 pods for the first 6h0m0s"]


def test_sim_up_rejects_a_bad_scenario_naming_the_field(tmp_path):
    bad = tmp_path / "scenario.yaml"
    bad.write_text(SCENARIO.replace("kind: spike", "kind: sine"))
    proc = _sim_up("-f", str(bad))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert err.strip() == ("error: scenario.yaml: workloads[1].load.kind: unsupported value 'sine'; "
                           "expected one of constant, diurnal, step, spike, series")


@pytest.mark.parametrize(("doc", "message"), [
    ({"workloads": [{"replicas": 1}]}, "t.yaml: workloads[0].name: required field is missing"),
    ({"workloads": [{"name": "a", "requests": {"cpu": "lots"}}]},
     "t.yaml: workloads[0].requests.cpu: invalid quantity 'lots'"),
    ({"workloads": [{"name": "a", "replicas": -1}]}, "t.yaml: workloads[0].replicas: must be >= 0, got -1"),
    ({"workloads": [{"name": "a", "load": {"kind": "step", "steps": [{"at": "soon", "cores": 1}]}}]},
     "t.yaml: workloads[0].load.steps[0].at: invalid duration 'soon' (use seconds or Go syntax like 30s, 5m, 1h)"),
    ({"workloads": [{"name": "a", "load": {"kind": "constant", "cores": 1, "peak": 2}}]},
     "t.yaml: workloads[0].load.peak: unknown field; expected one of kind, noise, noiseSeed, noisePeriod, "
     "startupCores, memory, swap, cores"),
    ({"nodes": [{"name": "n", "count": 2}]},
     "t.yaml: nodes[0].count: a node with a fixed name cannot have count > 1; use namePrefix"),
    ({"kubelet": {"faults": {"worker-1": "on-fire"}}},
     "t.yaml: kubelet.faults.worker-1: unsupported value 'on-fire'; expected one of none, slow, http500, garbage, "
     "truncated, stopped, wrong_ca"),
    ({"hpas": [{"target": "web"}]}, "t.yaml: hpas[0].maxReplicas: required field is missing"),
    ({"nodez": []}, "t.yaml: nodez: unknown field; expected one of name, seed, timing, kubelet, nodes, workloads, "
                    "hpas, authorization, events, nodeEvents, externalMetrics"),
    ([1, 2], "t.yaml: <top level>: expected a mapping, got list"),
])
def test_scenario_errors_name_the_field(doc, message):
    with pytest.raises(ScenarioError) as exc:
        parse_scenario(doc, "t.yaml")
    assert str(exc.value) == message


def test_invalid_yaml_reports_the_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("nodes:\n  - name: [unclosed\n")
    with pytest.raises(ScenarioError, match=r"^broken.yaml: invalid YAML \(line \d+, column \d+\)"):
        load_scenario(path)


def test_example_scenarios_load():
    files = sorted((ROOT / "examples" / "scenarios").glob("*.yaml"))
    assert files
    for f in files:
        sc = load_scenario(f)
        assert sc.nodes and sc.workloads


def test_recorded_series_from_a_csv_file(tmp_path):
    (tmp_path / "load.csv").write_text("seconds,cores\n0,0.5\n60,2\n120,1\n")
    path = tmp_path / "s.yaml"
    path.write_text("workloads:\n  - name: api\n    load: {kind: series, file: load.csv, repeat: true}\n")
    model = load_scenario(path).workloads[0].load
    assert model.demand([0, 30, 60, 150, 180]).tolist() == [0.5, 1.25, 2.0, 1.25, 2.0]
    path.write_text("workloads:\n  - name: api\n    load: {kind: series, file: missing.csv}\n")
    with pytest.raises(ScenarioError, match=r"^s.yaml: workloads\[0\].load.file: cannot read .*missing.csv"):
        load_scenario(path)
