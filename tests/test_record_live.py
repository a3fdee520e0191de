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


def record_argv(cluster, tmp: Path, trace: Path, duration: str) -> list[str]:
    """`autoscaler record` as a user runs it against the emulated cluster (its CA written to ``tmp``)."""
    ca = tmp / "ca.crt"
    ca.write_bytes(cluster.cluster.pki.ca.cert_pem)
    return [sys.executable, "-m", "autoscaler", "record", "-f", str(trace), "--duration", duration,
            "--kubeconfig", str(cluster.metrics_kubeconfig), "--kubelet-use-node-status-port",
            "--kubelet-certificate-authority", str(ca), "--metric-resolution", "10s",
            "--kubelet-request-timeout", "5s", "--log-format", "json"]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("record-live")
    cluster = run_in_thread(parse_scenario(SCENARIO), tmp / "cluster")
    try:
        trace = tmp / "trace.json.gz"
        proc = subprocess.run(record_argv(cluster, tmp, trace, "35s"), cwd=ROOT, capture_output=True, text=True,
                              timeout=120)
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


def test_polling_overlapping_store_windows_keeps_each_sample_once():
    import numpy as np

    from autoscaler.storage.types import NodeBatch
    from autoscaler.storage.window import WindowStore
    from sim.replay.recorder import TraceRecorder

    store = WindowStore(15.0, 60.0)  # the ring holds 4 samples: polls every 2 steps overlap
    rec = TraceRecorder(15.0)
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "web-1", "namespace": "shop", "creationTimestamp": "2023-11-14T22:00:00Z",
                        "ownerReferences": [{"kind": "StatefulSet", "name": "web", "controller": True}]},
           "spec": {"containers": [{"name": "app"}]}, "status": {"phase": "Running"}}
    t0 = 1_700_000_000.0
    for k in range(12):
        t = t0 + 15.0 * k
        store.store(NodeBatch(node="n1", scrape_time=t, namespaces=["shop"], pods=["web-1"], containers=["app"],
                              start_time=np.array([t0 - 100]), timestamp=np.array([t]), cpu=np.array([0.5 * k + 1]),
                              memory=np.array([1e8]), cpu_ns=np.array([int((0.5 * k + 1) * 1e9)])))
        rec.observe_pods([pod], t)
        if k % 2:
            rec.observe_usage(store)
    samples = rec.pods[("shop", "web-1")].samples["app"]
    ts, _, _ = samples.arrays()
    assert ts.tolist() == [t0 + 15.0 * k for k in range(12)]  # every step once, in order
    (container,) = rec.trace().workloads[0].pods[0].containers
    np.testing.assert_allclose(container.cpu[1:], 0.5 / 15.0)  # the rate between consecutive samples


def test_an_interrupted_recording_still_writes_its_trace(tmp_path):
    import signal

    from tests.test_metrics_api_support import wait_for

    cluster = run_in_thread(parse_scenario(SCENARIO), tmp_path / "cluster")
    try:
        trace = tmp_path / "trace.json.gz"
        kubelets = list(cluster.cluster.fleet.kubelets.values())
        before = [k.requests for k in kubelets]
        proc = subprocess.Popen(record_argv(cluster, tmp_path, trace, "1h"), cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        # nothing else scrapes these kubelets: a third request to each means the recorder holds two
        # scrapes of every pod, so each has a rate
        wait_for(lambda: all(k.requests - b >= 3 for k, b in zip(kubelets, before, strict=True))
                 or proc.poll() is not None, 90,
                 "the recorder to scrape every kubelet three times")
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        proc.send_signal(signal.SIGINT)  # Ctrl-C, an hour early
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err[-2000:]
        assert "stopping: writing what was recorded so far" in err
        t, _ = read_trace(trace)
        web = t.workload("default", "web")
        assert len(web.pods) == 2 and all(c.t.size for p in web.pods for c in p.containers)
    finally:
        cluster.stop()


def test_pod_metrics_give_back_exactly_the_rates_the_metrics_api_served():
    """--metrics-source=metrics-api: each PodMetrics sample once, at its own time, with the rate and
    working set served (the first over its window), even across a missed poll; unknown pods wait."""
    import numpy as np

    from autoscaler.k8s.timefmt import format_time
    from sim.replay.recorder import TraceRecorder

    rec = TraceRecorder(15.0)
    pod = {"metadata": {"name": "web-1", "namespace": "shop", "creationTimestamp": "2023-11-14T22:00:00Z",
                        "ownerReferences": [{"kind": "StatefulSet", "name": "web", "controller": True}]},
           "spec": {"containers": [{"name": "app"}]}, "status": {"phase": "Running"}}
    t0 = 1_700_000_000.0
    served = [0.120, 0.250, 0.250, 0.900, 0.035, 0.500]

    def metrics(k: int, name: str = "web-1") -> dict:
        return {"metadata": {"name": name, "namespace": "shop"}, "timestamp": format_time(t0 + 15.0 * k),
                "window": "15s", "containers": [{"name": "app", "usage": {
                    "cpu": f"{round(served[k] * 1e9)}n", "memory": f"{100 + k}Mi"}}]}

    rec.observe_pod_metrics([metrics(0)])  # the pod is not known yet: skipped, and read at the next poll
    rec.observe_pods([pod], t0)
    for k in range(6):
        if k == 3:
            continue  # a missed poll: sample 3 is never seen, sample 4 is over 30 s since sample 2
        rec.observe_pod_metrics([metrics(k), metrics(k, "not-a-known-pod")])
        rec.observe_pod_metrics([metrics(k)])  # polled again before the next scrape: kept once
    (container,) = rec.trace().workloads[0].pods[0].containers
    kept = [0, 1, 2, 4, 5]
    np.testing.assert_allclose(container.t, [t0 + 15.0 * k for k in kept])
    np.testing.assert_allclose(container.cpu, [served[k] for k in kept], rtol=1e-12)
    np.testing.assert_allclose(container.memory, [(100 + k) * 2**20 for k in kept])
