"""Leader fail-over, end to end: `autoscaler run` replicas as real processes with --leader-elect
and short leases against the emulated cluster, the HPA controller in active mode at work.

- SIGKILL of the leader: nothing releases the Lease; a standby takes over once the record has
  not changed for --leader-elect-lease-duration (client-go's rule), i.e. after about the lease
  duration, within one retry period either way (plus client-go's 1.2 retry jitter).
- SIGTERM of the leader: it releases the Lease on the way out (holder cleared, duration 1 s) and
  a standby takes over at its next retry, well before a lease duration.
- Throughout, replicas only move as the HPA wants (never back, never beyond maxReplicas), and the
  new leader acts on a change made after the fail-over.
"""

from __future__ import annotations

import signal
import subprocess
import time

from test_faults_kubelets import health
from test_metrics_api_support import wait_for

from sim.autoscaler_proc import start_autoscaler
from sim.cluster import run_in_thread
from sim.scenario import parse_scenario

LEASE, RENEW, RETRY = 4.0, 3.0, 1.0
FLAGS = ["--leader-elect=true", f"--leader-elect-lease-duration={LEASE:g}s",
         f"--leader-elect-renew-deadline={RENEW:g}s", f"--leader-elect-retry-period={RETRY:g}s",
         "--horizontal-pod-autoscaler-sync-period=1s", "--metric-resolution=10s", "--kubelet-request-timeout=3s"]
SCENARIO = {
    "name": "faults-leader",
    "kubelet": {"housekeepingInterval": "1s"},
    "timing": {"startupDelay": "0s", "readinessDelay": "0s"},
    "nodes": [{"namePrefix": "worker", "count": 2, "cpu": "16", "memory": "64Gi"}],
    # 1.5 cores over 250m requests at a 50% target wants 12 pods: capped by maxReplicas
    "workloads": [{"name": "web", "replicas": 2, "requests": {"cpu": "250m", "memory": "64Mi"},
                   "load": {"kind": "constant", "cores": 1.5}}],
    "hpas": [{"target": "web", "minReplicas": 1, "maxReplicas": 4, "cpuUtilization": 50}],
}


def holder(cluster) -> str:
    lease = cluster.call(lambda: cluster.store.try_get("leases.coordination.k8s.io", "kube-system",
                                                       "autoscaler-hpa-controller"))
    return str(((lease or {}).get("spec") or {}).get("holderIdentity") or "")


def failover(cluster, proc: subprocess.Popen, sig: int) -> tuple[str, float]:
    """Signal the leader; return the new holder and the seconds until it held the Lease."""
    old = holder(cluster)
    t0 = time.monotonic()
    proc.send_signal(sig)
    new = wait_for(lambda: (h := holder(cluster)) and h != old and h, 3 * LEASE, "a standby to take the Lease",
                   interval=0.02)
    return new, time.monotonic() - t0


def test_standby_takes_over_after_sigkill_and_at_once_after_sigterm(tmp_path):
    cluster = run_in_thread(parse_scenario(SCENARIO), tmp_path / "cluster")
    procs: list[subprocess.Popen] = []
    written: list[int] = []
    try:
        def start(name: str) -> subprocess.Popen:
            proc, port = cluster.run(start_autoscaler(cluster.cluster, tmp_path / name, controller_mode="active",
                                                      extra_args=FLAGS))
            procs.append(proc)
            wait_for(lambda: proc.poll() is None and health(port, "/readyz") == 200, 60, f"replica {name} to serve")
            return proc

        cluster.call(lambda: cluster.store.subscribe(
            "deployments.apps", lambda t, o, old: written.append(o["spec"]["replicas"])
            if o["metadata"]["name"] == "web" else None))
        a = start("a")
        first = wait_for(lambda: holder(cluster), 30, "the first replica to lead")
        b = start("b")
        wait_for(lambda: cluster.call(lambda: cluster.store.get("deployments.apps", "default", "web"))
                 ["spec"]["replicas"] == 4, 60, "the leader to scale web to maxReplicas 4")

        new, killed_after = failover(cluster, a, signal.SIGKILL)
        assert new != first
        assert LEASE - RETRY - 0.5 <= killed_after <= LEASE + RETRY * 1.2 + 2.0, killed_after

        # the new leader acts: raising maxReplicas lets it scale on
        def raise_max(o: dict) -> None:
            o["spec"]["maxReplicas"] = 6
        cluster.call(lambda: cluster.store.mutate("horizontalpodautoscalers.autoscaling", "default", "web", raise_max))
        wait_for(lambda: cluster.call(lambda: cluster.store.get("deployments.apps", "default", "web"))
                 ["spec"]["replicas"] == 6, 20, "the new leader to scale web to 6")

        start("c")  # a standby again (b leads): measure SIGTERM's hand-over
        third, termed_after = failover(cluster, b, signal.SIGTERM)
        assert b.wait(15) == 0
        assert termed_after <= RETRY * 1.2 + 1.0, f"SIGTERM hand-over {termed_after:.2f}s (SIGKILL {killed_after:.2f}s)"
        assert third not in (first, new)

        # replicas only ever went up, as the HPA wanted, never beyond the maxReplicas in force
        assert written == sorted(written) and set(written) <= {2, 4, 6}, written
        print(f"fail-over: SIGKILL {killed_after:.2f}s, SIGTERM {termed_after:.2f}s")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
        cluster.stop()
