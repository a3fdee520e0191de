"""The README's main job: `autoscaler sim up --with-autoscaler`, then the real kubectl against it.

The emulated cluster starts the real `autoscaler run` as a separate process, registered through
a Service, its Endpoints and the APIService v1beta1.metrics.k8s.io with the cluster CA as
caBundle (so the aggregator verifies our serving certificate). `kubectl top` must work through
the aggregation layer and the HPA must get a status written by our controller.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from sim_fixtures import kubectl

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = """\
name: with-autoscaler
timing: {startupDelay: 0s, readinessDelay: 0s}
nodes:
  - {namePrefix: worker, count: 2, cpu: "4", memory: 8Gi}
workloads:
  - name: web
    replicas: 2
    requests: {cpu: 200m, memory: 64Mi}
    load: {kind: constant, cores: 0.3}
hpas:
  - {target: web, minReplicas: 2, maxReplicas: 6, cpuUtilization: 50}
"""


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except (AssertionError, subprocess.SubprocessError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(1.0)
    raise AssertionError(f"timed out waiting for {what}; last: {last}")


def test_sim_up_with_autoscaler_serves_kubectl_top_and_scales_hpa(tmp_path):
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(SCENARIO)
    state = tmp_path / "state"
    kc = tmp_path / "admin.kubeconfig"
    proc = subprocess.Popen(
        [sys.executable, "-m", "autoscaler", "sim", "up", "-f", str(scenario), "--state-dir", str(state),
         "--kubeconfig", str(kc), "--with-autoscaler"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        for line in proc.stdout:
            if line.startswith("Press Ctrl-C"):
                break
        assert proc.poll() is None, "sim up exited early"

        def apiservice_available() -> bool:
            svc = json.loads(kubectl(kc, "get", "apiservice", "v1beta1.metrics.k8s.io", "-o", "json"))
            assert svc["spec"].get("caBundle"), "the APIService must verify our serving certificate"
            return any(c["type"] == "Available" and c["status"] == "True" for c in svc["status"]["conditions"])

        _wait(apiservice_available, 60, "APIService v1beta1.metrics.k8s.io to become Available")
        top = _wait(lambda: "worker-1" in (out := kubectl(kc, "top", "nodes")) and out, 90, "kubectl top nodes")
        assert "worker-2" in top
        pods = _wait(lambda: (out := kubectl(kc, "top", "pods")).count("web-") >= 2 and out, 60,
                     "kubectl top pods to list both web pods")
        # 0.3 cores spread over the ready pods: 150m each for 2 pods, 100m once the HPA made it 3
        # (within the rate window's error).
        cpus = [int(line.split()[1].rstrip("m")) for line in pods.splitlines()[1:]]
        assert 2 <= len(cpus) <= 3 and all(75 <= c <= 190 for c in cpus), pods

        # The controller (active by default under sim up) writes the HPA status: 75% of request vs
        # a 50% target -> ceil(2 x 1.5) = 3 replicas.
        def hpa_scaled() -> dict | None:
            hpa = json.loads(kubectl(kc, "get", "hpa", "web", "-o", "json"))
            return hpa if hpa.get("status", {}).get("desiredReplicas") == 3 else None

        hpa = _wait(hpa_scaled, 90, "the HPA's desiredReplicas to become 3")
        conds = {c["type"]: c for c in hpa["status"]["conditions"]}
        assert conds["AbleToScale"]["status"] == "True"
        assert conds["ScalingActive"]["reason"] == "ValidMetricFound"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0
    # The autoscaler process was stopped with the cluster.
    log = (state / "autoscaler" / "autoscaler.log").read_text()
    assert log, "the autoscaler wrote no log"
