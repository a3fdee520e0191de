"""`autoscaler record` on a live (emulated) cluster, then `autoscaler sim replay` of what it wrote.

The recorder runs as a user runs it: a subprocess with the metrics-server ServiceAccount's
kubeconfig, scraping the emulated kubelets over verified TLS, watching Deployments, Pods and
HPAs. The trace must carry the workload's samples, requests, replica counts and HPA spec, and
replay must accept it as a trace.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sim.cluster import run_in_thread
from sim.replay.trace import read_trace
from sim.scenario import parse_scenario

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = {
    "name": "record-live",
    "kubelet": {"housekeepingInterval": "2s"},
    "timing": {"startupDelay": "0s", "readinessDelay": "0s"},
    "nodes": [{"namePrefix": "worker", "count": 2, "cpu": "4", "memory": "8Gi"}],
    "workloads": [{"name": "web", "replicas": 2, "requests": {"cpu": "250m", "memory": "64Mi"},
                   "limits": {"cpu": "1"}, "load": {"kind": "constant", "cores": 0.4}}],
    "hpas": [{"target": "web", "minReplicas": 2, "maxReplicas": 5, "cpuUtilization": 60}],
}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("record-live")
    cluster = run_in_thread(parse_scenario(SCENARIO), tmp / "cluster")
    try:
        ca = tmp / "ca.crt"
        ca.write_bytes(cluster.cluster.pki.ca.cert_pem)
        trace = tmp / "trace.json.gz"
        proc = subprocess.run(
            [sys.executable, "-m", "autoscaler", "record", "-f", str(trace),
             "--kubeconfig", str(cluster.metrics_kubeconfig), "--kubelet-use-node-status-port",
             "--kubelet-certificate-authority", str(ca), "--metric-resolution", "10s", "--kubelet-request-timeout", "5s", "--duration", "35s",
             "--log-format", "json"],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        yield trace
    finally:
        cluster.stop()


def test_record_writes_workload_samples_requests_and_hpa(recorded):
    trace, skipped = read_trace(recorded)
    assert skipped == 0
    names = {(w.namespace, w.name) for w in trace.workloads}
    assert ("default", "web") in names, names
    web = next(w for w in trace.workloads if (w.namespace, w.name) == ("default", "web"))
    assert web.kind == "Deployment"
    assert len(web.pods) == 2, [p.name for p in web.pods]
    # At least three scrapes of each container, each sample about 0.2 cores (0.4 spread over 2 pods).
    for pod in web.pods:
        for container in pod.containers:
            cpu = [float(c) for c in container.cpu if c == c]  # drop NaN gaps
            assert len(cpu) >= 3, (pod.name, len(cpu))
            assert all(0.15 <= c <= 0.25 for c in cpu[1:]), (pod.name, cpu)
            assert container.cpu_request == pytest.approx(0.25)
    assert web.hpas and web.hpas[-1].manifest["spec"]["maxReplicas"] == 5
    assert list(web.replicas) and int(web.replicas[-1]) >= 2


def test_recorded_trace_replays(recorded):
    proc = subprocess.run([sys.executable, "-m", "autoscaler", "sim", "replay", str(recorded), "-o", "json",
                           "--no-progress"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    runs = out if isinstance(out, list) else out.get("configurations") or out.get("results")
    assert runs, out
