"""Faults against the real control plane (kube-apiserver 1.37, etcd, kube-controller-manager,
kube-scheduler; hollow kubelets): API-server outages through the fault proxy (:mod:`sim.faults`)
and leader fail-over between `autoscaler run` replicas on the real Lease API.

A tier of its own: ``python3 -m pytest -m real_cluster tests/test_real_faults.py``. The cluster is
started here without the tier's own `autoscaler run` (it would campaign for the same Lease).

- 503 bursts, dropped watches and 410 Gone between `autoscaler run` and the real kube-apiserver:
  the process stays up with /livez and /readyz 200, and a pod a user creates during the outage is
  served by `kubectl top` through the real aggregator afterwards.
- SIGKILL of the leader: a standby holds the real Lease after about the lease duration;
  SIGTERM: at once (it releases the Lease on the way out).
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
from test_faults_kubelets import health

from sim.autoscaler_proc import start_autoscaler
from sim.cluster import ClusterThread
from sim.controlplane import binaries
from sim.controlplane.cluster import RealCluster
from sim.controlplane.controlplane import ControlPlaneOptions
from sim.faults import proxy_apiserver
from sim.scenario import parse_scenario
from tests.real_cluster import missing_programs, wait_for

pytestmark = pytest.mark.real_cluster

LEASE, RENEW, RETRY = 4.0, 3.0, 1.0
COMMON = ["--metric-resolution=10s", "--kubelet-request-timeout=3s"]
LEADER = ["--leader-elect=true", f"--leader-elect-lease-duration={LEASE:g}s",
          f"--leader-elect-renew-deadline={RENEW:g}s", f"--leader-elect-retry-period={RETRY:g}s"]
SCENARIO = {
    "name": "real-faults",
    "kubelet": {"housekeepingInterval": "2s"},
    "timing": {"startupDelay": "1s", "readinessDelay": "1s"},
    "nodes": [{"namePrefix": "worker", "count": 2, "cpu": "8", "memory": "32Gi"}],
    "workloads": [{"name": "probe", "replicas": 1, "requests": {"cpu": "100m", "memory": "32Mi"},
                   "load": {"kind": "constant", "cores": "50m"}}],
}


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    missing = missing_programs()
    if missing:
        pytest.fail("the real-cluster tier needs the upstream programs:\n" + "\n".join(missing))
    tmp = tmp_path_factory.mktemp("real-faults")
    thread = ClusterThread(parse_scenario(SCENARIO), tmp / "cluster", cls=RealCluster,
                           options=ControlPlaneOptions(hpa_sync_period="5s"))
    thread.start_loop()
    procs: list[subprocess.Popen] = []
    try:
        thread.run(thread.cluster.start(), timeout=300)
        yield thread, tmp, procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        thread.stop()


def kubectl(thread: ClusterThread, *args: str) -> str:
    proc = subprocess.run([str(binaries.find("kubectl")), "--kubeconfig", str(thread.kubeconfig), *args],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def start(thread: ClusterThread, tmp: Path, procs: list, name: str, *flags: str) -> tuple[subprocess.Popen, int]:
    proc, port = thread.run(start_autoscaler(thread.cluster, tmp / name, controller_mode="dry-run",
                                             extra_args=[*COMMON, *flags]))
    procs.append(proc)
    wait_for(f"replica {name} to serve", lambda: proc.poll() is None and health(port, "/readyz") == 200, 60, 0.2)
    return proc, port


def test_apiserver_outages_against_the_real_apiserver(real):
    thread, tmp, procs = real
    c = thread.cluster
    kc = tmp / "via-proxy.kubeconfig"
    proxy = thread.run(proxy_apiserver(c.pki.ca, c.url, c.metrics_kubeconfig, kc, tmp / "proxy"))
    try:
        proc, port = start(thread, tmp, procs, "proxied", "--leader-elect=false", "--kubeconfig", str(kc))
        wait_for("the probe pod in kubectl top", lambda: "probe-" in kubectl(thread, "top", "pod", "--no-headers"),
                 60, 1.0)
        # the later faults hit a number of requests, not a time window: after the 503s the informers
        # back off for seconds, and a short window could pass before they come back
        for n, (kind, params) in enumerate([("status", {"status": 503, "duration": 4.0}),
                                            ("watch_drop", {"delay": 0.3, "count": 2}),
                                            ("gone", {"count": 2})], start=2):
            proxy.set(kind, **params)
            proxy.drop_streams()
            kubectl(thread, "scale", "deployment", "probe", f"--replicas={n}")
            wait_for(f"{kind} to be injected", lambda kind=kind: proxy.counts.get(kind, 0) > 0, 60, 0.1)
            assert health(port, "/livez") == 200 and health(port, "/readyz") == 200 and proc.poll() is None
            wait_for(f"the {kind} outage to end", lambda: not any(r.active() for r in proxy.rules), 60, 0.2)

        def all_probes_served() -> bool:
            rows = [line.split()[0] for line in kubectl(thread, "top", "pod", "--no-headers").splitlines()]
            return sum(r.startswith("probe-") for r in rows) == 4
        wait_for("every probe pod, including those created during the outages, in kubectl top",
                 all_probes_served, 60, 1.0)
        assert proc.poll() is None
    finally:
        proxy.clear()
        for p in procs:
            p.terminate()
            p.wait(15)
        procs.clear()
        thread.run(proxy.stop())


def holder(thread: ClusterThread) -> str:
    proc = subprocess.run([str(binaries.find("kubectl")), "--kubeconfig", str(thread.kubeconfig), "get", "lease",
                           "-n", "kube-system", "autoscaler-hpa-controller", "-o",
                           "jsonpath={.spec.holderIdentity}"], capture_output=True, text=True, timeout=30)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def test_leader_failover_on_the_real_lease_api(real):
    thread, tmp, procs = real
    a, _ = start(thread, tmp, procs, "a", *LEADER)
    first = wait_for("the first replica to lead", lambda: holder(thread), 30, 0.2)
    b, _ = start(thread, tmp, procs, "b", *LEADER)
    figures = {}
    for sig, victim in ((signal.SIGKILL, a), (signal.SIGTERM, b)):
        if sig == signal.SIGTERM:
            start(thread, tmp, procs, "c", *LEADER)
        old = holder(thread)
        t0 = time.monotonic()
        victim.send_signal(sig)
        wait_for("a standby to take the Lease", lambda old=old: holder(thread) not in ("", old), 3 * LEASE, 0.05)
        figures[sig.name] = round(time.monotonic() - t0, 2)
    print(f"real fail-over: {figures} (first leader {first})")
    assert LEASE - RETRY - 0.5 <= figures["SIGKILL"] <= LEASE + 1.2 * RETRY + 1.5, figures
    assert figures["SIGTERM"] <= 1.2 * RETRY + 1.5, figures
