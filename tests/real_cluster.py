"""The real-cluster tier: the upstream control plane (1.37) on loopback with our hollow nodes,
`autoscaler run` registered behind the real aggregator, and the upstream metrics-server beside it.

Run with ``python3 -m pytest -m real_cluster`` after ``python3 scripts/build_control_plane.py``.
The binaries must be there: a missing one fails the tier with the command that builds it (it never
skips). One cluster serves the whole session; tests that change load use their own workloads.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import ssl
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from sim.cluster import ClusterThread
from sim.controlplane import binaries
from sim.controlplane.cluster import RealCluster
from sim.controlplane.controlplane import ControlPlaneOptions
from sim.scenario import Scenario, parse_scenario

T = TypeVar("T")

#: programs the tier runs; kubectl is the one built from the same pins (1.37)
PROGRAMS = (*binaries.CONTROL_PLANE, "kubectl", "metrics-server")
#: kube-controller-manager's --node-monitor-grace-period in this tier
GRACE = 20.0
#: scrape period of both metrics servers and the kubelets' stats housekeeping in this tier
RESOLUTION = 10.0

SCENARIO = {
    "name": "real-tier",
    "seed": 7,
    "kubelet": {"housekeepingInterval": "5s"},
    "timing": {"startupDelay": "1s", "readinessDelay": "2s"},
    "nodes": [{"namePrefix": "worker", "count": 3, "cpu": "4", "memory": "16Gi"}],
    "workloads": [
        # steady load, two containers per pod: what `kubectl top` and the comparison read
        {"name": "steady", "replicas": 3, "labels": {"app": "steady", "tier": "backend"},
         "containers": [
             {"name": "app", "requests": {"cpu": "300m", "memory": "128Mi"}},
             {"name": "sidecar", "requests": {"cpu": "100m", "memory": "64Mi"}}],
         "load": {"kind": "constant", "cores": "900m", "memory": {"base": "96Mi"}}},
        # CPU Utilization HPA driven by the tests
        {"name": "web", "replicas": 1, "requests": {"cpu": "200m", "memory": "64Mi"},
         "limits": {"cpu": "2"}, "load": {"kind": "constant", "cores": "100m"}},
        # memory AverageValue HPA (the podinfo walk-through): working set grows with load
        {"name": "podinfo", "replicas": 1, "requests": {"cpu": "100m", "memory": "64Mi"},
         "limits": {"cpu": "2", "memory": "1Gi"},
         "load": {"kind": "constant", "cores": "50m", "memory": {"base": "64Mi", "perCore": "400Mi"}}},
    ],
    "hpas": [
        {"target": "web", "minReplicas": 1, "maxReplicas": 4, "cpuUtilization": 50,
         "behavior": {"scaleDown": {"stabilizationWindowSeconds": 10}}},
        {"target": "podinfo", "minReplicas": 1, "maxReplicas": 4,
         "metrics": [{"type": "Resource", "resource": {"name": "memory",
                                                       "target": {"type": "AverageValue", "averageValue": "200Mi"}}}],
         "behavior": {"scaleDown": {"stabilizationWindowSeconds": 10}}},
    ],
}


def missing_programs() -> list[str]:
    out = []
    for name in PROGRAMS:
        try:
            binaries.find(name)
        except binaries.BinaryNotFound as exc:
            out.append(str(exc))
    return out


def wait_for(what: str, fn: Callable[[], T | None], timeout: float = 120.0, interval: float = 1.0) -> T:
    """Poll ``fn`` until it returns a truthy value; fail naming ``what`` and the last value/error."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            value = fn()
            if value:
                return value
            last = value
        except Exception as exc:  # the condition is not reachable yet
            last = exc
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}; last: {last!r}")
        time.sleep(interval)


@dataclass
class RealTier:
    thread: ClusterThread
    state_dir: Path
    ours_port: int
    upstream_port: int
    kubectl: Path
    #: `autoscaler run`, metrics-server and anything else a test starts, stopped with the tier
    processes: list[Any]

    @property
    def cluster(self) -> RealCluster:
        return self.thread.cluster  # type: ignore[return-value]

    @property
    def kubeconfig(self) -> Path:
        return self.cluster.admin_kubeconfig

    def run(self, *args: str, binary: str | Path | None = None, check: bool = True,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(binary or self.kubectl), "--kubeconfig", str(self.kubeconfig), *args],
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc

    def json(self, *args: str) -> Any:
        return json.loads(self.run(*args, "-o", "json").stdout)

    def raw(self, path: str) -> Any:
        return json.loads(self.run("get", "--raw", path).stdout)

    def admin_ssl(self, cert: str = "admin") -> ssl.SSLContext:
        pki = self.cluster.pki
        ctx = ssl.create_default_context(cadata=pki.ca.cert_pem.decode())
        if cert:
            ctx.load_cert_chain(str(pki.path(f"{cert}.crt")), str(pki.path(f"{cert}.key")))
        return ctx


def _stop_process(proc: Any) -> None:
    """Stop an `autoscaler run` (Popen) or anything with ``stop()`` (upstream programs, KWOK)."""
    if isinstance(proc, subprocess.Popen):
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
    else:
        proc.stop()


def start_tier(tmp: Path, scenario: Scenario | None = None, *, kcm_args: list[str] | None = None,
               autoscaler_args: list[str] | None = None, with_metrics_server: bool = True) -> RealTier:
    """The control plane with ``scenario`` (default: :data:`SCENARIO`), ours and (unless told
    otherwise) metrics-server; ``kcm_args`` and ``autoscaler_args`` are added to their flags."""
    from sim.autoscaler_proc import start_autoscaler
    from sim.controlplane.metrics_server import start_metrics_server

    scenario = scenario or parse_scenario(SCENARIO, "real-tier")
    # a failed node goes NotReady after 20 s instead of 50 s
    options = ControlPlaneOptions(hpa_sync_period="5s",
                                  extra_args={"kube-controller-manager": [f"--node-monitor-grace-period={GRACE:g}s",
                                                                          *(kcm_args or [])]})
    thread = ClusterThread(scenario, tmp / "cluster", cls=RealCluster, options=options)
    thread.start_loop()
    procs: list[Any] = []
    try:
        thread.run(thread.cluster.start(), timeout=300)
        cluster = thread.cluster
        # metrics-server wants the kubelet request timeout (default 10s) below the resolution
        flags = ["--metric-resolution", f"{RESOLUTION:g}s", "--kubelet-request-timeout", "5s", *(autoscaler_args or [])]
        ours, ours_port = thread.run(start_autoscaler(cluster, tmp / "autoscaler", controller_mode="dry-run",
                                                      extra_args=flags))
        procs.append(ours)
        upstream_port = 0
        if with_metrics_server:
            upstream, upstream_port = thread.run(start_metrics_server(cluster, tmp / "metrics-server",
                                                                      resolution=f"{RESOLUTION:g}s",
                                                                      extra_args=["--kubelet-request-timeout=5s"]))
            procs.append(upstream)
    except BaseException:
        for p in procs:
            _stop_process(p)
        thread.stop()
        raise
    return RealTier(thread, tmp, ours_port, upstream_port, binaries.find("kubectl"), procs)


def stop_tier(tier: RealTier) -> None:
    for p in reversed(tier.processes):
        _stop_process(p)
    tier.thread.stop()
    if os.environ.get("CI") != "true":
        shutil.rmtree(tier.state_dir, ignore_errors=True)


def fetch(tier: RealTier, port: int, path: str, *, cert: str = "admin", headers: dict[str, str] | None = None,
          ) -> tuple[int, Any]:
    """GET https://127.0.0.1:port/path with a client certificate from the tier's PKI (or none)."""
    import aiohttp

    async def go() -> tuple[int, Any]:
        conn = aiohttp.TCPConnector(ssl=tier.admin_ssl(cert))
        async with aiohttp.ClientSession(connector=conn) as s, \
                s.get(f"https://127.0.0.1:{port}{path}", headers=headers or {},
                      timeout=aiohttp.ClientTimeout(total=15)) as r:
            text = await r.text()
            try:
                return r.status, json.loads(text)
            except ValueError:
                return r.status, text

    return asyncio.run(go())
