"""End to end through the real CLI: `autoscaler run --controller-mode=active` and `autoscaler recommend`.

The emulated cluster runs on real time. `autoscaler run` (metrics API, collector and the
controller plugin with leader election) scales the Deployment from its in-process store;
`autoscaler recommend` reads the same cluster through metrics.k8s.io (our server, reached via the
APIService) and must report the controller's view: current replicas, the status the controller
wrote, and its own recommendation with the limiting rule.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys

import pytest
from prometheus_client import generate_latest
from test_metrics_api_support import MetricsServerThread, kubectl, probe, register_apiservice, run_args, wait_for

from sim.cluster import run_in_thread
from sim.scenario import parse_scenario

SCENARIO = {
    "name": "e2e-controller-run",
    "kubelet": {"housekeepingInterval": "2s"},
    "timing": {"startupDelay": "0s", "readinessDelay": "0s"},
    "nodes": [{"namePrefix": "worker", "count": 1, "cpu": "16", "memory": "64Gi"}],
    "workloads": [{"name": "web", "replicas": 2, "requests": {"cpu": "200m", "memory": "64Mi"},
                   "load": {"kind": "constant", "cores": 1.0}}],
    "hpas": [{"target": "web", "minReplicas": 1, "maxReplicas": 6, "cpuUtilization": 50}],
}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e-controller-run")
    cluster = run_in_thread(parse_scenario(SCENARIO), tmp / "cluster")
    server = None
    try:
        server = MetricsServerThread(run_args(
            cluster, tmp, "--controller-mode=active", "--horizontal-pod-autoscaler-sync-period=1s",
            "--leader-elect-lease-duration=4s", "--leader-elect-renew-deadline=3s",
            "--leader-elect-retry-period=1s")).start()
        register_apiservice(cluster, server.port)
        yield cluster, server
    finally:
        if server is not None:
            server.stop()
        cluster.stop()


def replicas(kc) -> int:
    return json.loads(kubectl(kc, "get", "deployment", "web", "-o", "json").stdout)["spec"]["replicas"]


def test_run_active_scales_and_recommend_reports_it(env):
    cluster, server = env
    kc = cluster.kubeconfig
    # 1 core over 200m requests at a 50% target wants 10 pods; maxReplicas caps it at 6
    wait_for(lambda: replicas(kc) == 6, 120, "the controller in `autoscaler run` to scale web to 6", interval=1.0)
    hpa = json.loads(kubectl(kc, "get", "hpa", "web", "-o", "json").stdout)
    assert hpa["status"]["desiredReplicas"] == 6
    lease = json.loads(kubectl(kc, "get", "lease", "-n", "kube-system", "autoscaler-hpa-controller",
                               "-o", "json").stdout)
    assert lease["spec"]["holderIdentity"]

    proc = subprocess.run([sys.executable, "-m", "autoscaler", "recommend", "--kubeconfig", str(kc), "-o", "json"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(proc.stdout)["items"]
    assert row["name"] == "web" and row["reference"] == "Deployment/web"
    assert row["currentReplicas"] == 6 and row["builtinDesiredReplicas"] == 6
    assert row["recommendedReplicas"] == 6 and row["limitedBy"] == "TooManyReplicas"
    assert "cpu" in row["explanation"] and row["error"] is None

    table = subprocess.run([sys.executable, "-m", "autoscaler", "recommend", "--kubeconfig", str(kc)],
                           capture_output=True, text=True, timeout=60)
    assert table.returncode == 0, table.stderr
    header, line = table.stdout.splitlines()[:2]
    assert header.split()[:5] == ["HPA", "REFERENCE", "CURRENT", "BUILT-IN", "RECOMMENDED"]
    assert line.split()[:6] == ["web", "Deployment/web", "6", "6", "6", "TooManyReplicas"]

    # the controller's families are on the server's /metrics registry
    text = generate_latest(server.rt.collector.registry).decode()
    assert "horizontal_pod_autoscaler_controller_reconciliations_total" in text
    assert 'horizontal_pod_autoscaler_controller_desired_replicas{hpa_name="web",namespace="default"} 6.0' in text


def test_one_pod_watch_feeds_the_metrics_api_and_the_controller(env):
    """With the controller on, `autoscaler run` lists and watches pods once (not once for the metrics
    API and again for the controller), and pods created later reach both through that one watch."""
    import asyncio

    from autoscaler.k8s.selectors import parse_label_selector

    cluster, server = env
    kc = cluster.kubeconfig
    wait_for(lambda: replicas(kc) == 6, 120, "the controller to scale web to 6 (new pods after start-up)",
             interval=1.0)
    match = json.loads(kubectl(kc, "get", "deployment", "web", "-o", "json").stdout)["spec"]["selector"]["matchLabels"]
    selector = parse_label_selector(",".join(f"{k}={v}" for k, v in match.items()))

    def running() -> set[str]:
        pods = json.loads(kubectl(kc, "get", "pods", "-l", str(selector), "-o", "json").stdout)["items"]
        return {p["metadata"]["name"] for p in pods if p["status"].get("phase") == "Running"}

    async def seen() -> tuple[set[str], set[str]]:  # read in the server's loop, where the caches change
        api = {name for _, name, _ in server.rt.objects.list_pods("default", selector)}
        ctl = {p["metadata"]["name"] for p in server.rt.controller.pod_index.select("default", selector)}
        return api, ctl

    def both_see_all() -> bool:
        want = running()
        api, ctl = asyncio.run_coroutine_threadsafe(seen(), server.loop).result(10)
        return len(want) == 6 and api == want and want <= ctl

    wait_for(both_see_all, 60, "the metrics API and the controller to see the 6 Running web pods", interval=0.5)
    pod_watches = {ua: n for (key, ua), n in cluster.cluster.apiserver.watch_requests.items() if key == "pods"}
    assert pod_watches.get("autoscaler-informer") == 1, pod_watches
    assert server.rt.controller.pods is server.rt.pod_informer


def test_recommend_watch_into_a_pipe_appends_whole_tables_and_ends_on_sigterm(env):
    """Piped (a log file, `| tee`), --watch prints each refresh as a complete table, flushed, with one
    line per HPA (no folding into 80 columns), and SIGTERM ends it cleanly between refreshes."""
    import signal
    import threading
    import time

    cluster, _ = env
    proc = subprocess.Popen([sys.executable, "-m", "autoscaler", "recommend", "--kubeconfig", str(cluster.kubeconfig),
                             "--watch", "--interval", "1s"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    two_tables = threading.Event()

    def read() -> None:
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if sum(x.startswith("HPA ") for x in lines) >= 2 and lines[-1].startswith("web "):
                two_tables.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert two_tables.wait(60), f"no two tables within 60 s: {lines}"
    finally:
        proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        proc.wait(timeout=30)
        reader.join(timeout=10)
    assert proc.returncode == 0, proc.stderr.read()
    assert time.monotonic() - t0 < 10
    tables = [x for x in lines if x.startswith("HPA ")]
    rows = [x for x in lines if x.startswith("web ")]
    assert len(rows) == len(tables) >= 2, lines  # each HPA on one line, under each header
    assert all(len(x.split()) > 7 and "cpu" in x for x in rows), rows  # the explanation is on that line


def _livez(port: int) -> tuple[int, str]:
    return probe(port, "/livez?verbose")


def test_livez_fails_when_the_controller_is_dead(env):
    """An HPA controller that stopped would freeze every HPA while the metrics API stays green;
    /livez says so, and the kubelet restarts the Pod."""
    _cluster, server = env
    code, text = _livez(server.port)
    assert code == 200 and "[+]hpa-controller ok" in text
    server.loop.call_soon_threadsafe(setattr, server.rt.controller, "failure", "RuntimeError: informer exploded")
    wait_for(lambda: _livez(server.port)[0] == 500, 10, "/livez to fail")
    assert "[-]hpa-controller failed: reason withheld" in _livez(server.port)[1]


def test_stopping_releases_the_lease_at_once(env):
    """SIGTERM's path (stop is set): stop serving, then the elector gives the Lease up before exit, so
    a standby takes over without waiting out the lease duration."""
    cluster, server = env
    kc = cluster.kubeconfig

    def holder() -> str:
        lease = json.loads(kubectl(kc, "get", "lease", "-n", "kube-system", "autoscaler-hpa-controller",
                                   "-o", "json").stdout)
        return lease["spec"].get("holderIdentity") or ""

    wait_for(lambda: holder() != "", 30, "the controller to hold the lease", interval=0.5)
    # client-go's identity: hostname, underscore, a random UUID (two processes on one host differ)
    assert re.fullmatch(rf"{re.escape(socket.gethostname())}_[0-9a-f-]{{36}}", holder()), holder()
    assert server.stop() == 0
    assert holder() == ""
