"""Shared helpers for tests that run an emulated cluster (importable by any helper's tests).

    from tests.sim_fixtures import emulated_cluster, kubectl
    with emulated_cluster(tmp_path, scenario) as h:      # ManualClock unless clock= is given
        h.advance(10)                                     # virtual seconds, the cluster reacts
        out = kubectl(h.kubeconfig, "get", "pods", "-o", "json")
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from autoscaler.controller.controller import HPAController
from autoscaler.controller.metrics_source import StoreResourceMetrics
from autoscaler.controller.options import ControllerOptions
from autoscaler.hpa import ControllerConfig
from autoscaler.k8s.informer import Informer
from autoscaler.k8s.kubeconfig import load_kubeconfig
from autoscaler.scraper.collector import Collector, ScrapeOptions
from autoscaler.scraper.targets import slim_node
from autoscaler.storage.window import WindowStore
from sim.clock import Clock, ManualClock
from sim.cluster import ClusterThread, run_in_thread
from sim.scenario import Scenario, parse_scenario

KUBECTL = shutil.which("kubectl") or "kubectl"


def scenario_from(doc: dict[str, Any]) -> Scenario:
    """A Scenario from a dict shaped like a scenario file."""
    return parse_scenario(doc, "test-scenario")


@contextlib.contextmanager
def emulated_cluster(state_dir: Path, scenario: Scenario | dict | None = None, *,
                     clock: Clock | None = None, **kw: Any) -> Iterator[ClusterThread]:
    """An emulated cluster on a background thread, on a ManualClock by default."""
    if scenario is None:
        scenario = Scenario.default(nodes=1, pods_per_node=0)
    elif isinstance(scenario, dict):
        scenario = scenario_from(scenario)
    handle = run_in_thread(scenario, Path(state_dir), clock=clock or ManualClock(), **kw)
    try:
        yield handle
    finally:
        handle.stop()


@contextlib.asynccontextmanager
async def scraped_cluster(scenario: Scenario, state_dir: Path, *, past: float = 3600.0,
                          settle: float = 30.0) -> AsyncIterator[tuple[ClusterThread, WindowStore, Collector]]:
    """An emulated cluster on a ManualClock started ``past`` seconds ago (so kubectl ages stay sane),
    advanced ``settle`` seconds (pods scheduled, started, ready), and a collector that has scraped its
    kubelets once into a WindowStore, as the metrics-server ServiceAccount."""
    cluster = run_in_thread(scenario, Path(state_dir), clock=ManualClock(start=float(int(time.time() - past))))
    stop = asyncio.Event()
    try:
        cluster.advance(settle)
        kube = load_kubeconfig(str(cluster.metrics_kubeconfig))
        opts = ScrapeOptions(kubelet_use_node_status_port=True)
        store = WindowStore(opts.metric_resolution, opts.metric_history)
        nodes = Informer(kube, "/api/v1/nodes", name="nodes", transform=slim_node)
        task = asyncio.create_task(nodes.run(stop))
        try:
            assert await nodes.wait_synced(30)
            collector = Collector(opts, store, kube, node_informer=nodes, clock=cluster.clock.now)
            try:
                await collector.scrape_cycle()
                yield cluster, store, collector
            finally:
                await collector.client.close()
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)
    finally:
        cluster.stop()


class ControllerEnv:
    """A :func:`scraped_cluster` plus HPA controllers (reading the window store in-process), stepped
    one sync period at a time."""

    def __init__(self, cluster: ClusterThread, store: WindowStore, collector: Collector, config: ControllerConfig,
                 step: float = 15.0) -> None:
        import kubernetes

        self.cluster, self.store, self.collector, self.config, self.period = cluster, store, collector, config, step
        self.controllers: list[HPAController] = []
        self.kube = load_kubeconfig(str(cluster.kubeconfig))
        self.api = kubernetes.config.new_client_from_config(str(cluster.kubeconfig))

    async def controller(self, mode: str, **kw: Any) -> HPAController:
        c = HPAController(self.kube, ControllerOptions(mode=mode, leader_elect=False, config=self.config, **kw),
                          StoreResourceMetrics(self.store), clock=self.cluster.clock.now, monotonic=self.cluster.clock.now)
        await c.start()
        self.controllers.append(c)
        return c

    async def step(self, *controllers: HPAController) -> list[dict]:
        """One sync period: advance, scrape, let the caches catch up, sync each controller in order."""
        await asyncio.to_thread(self.cluster.advance, self.period)
        await self.collector.scrape_cycle()
        out = []
        for c in controllers:
            await c.catch_up()
            out.append(await c.sync_all())
        return out

    async def close(self) -> None:
        for c in self.controllers:
            await c.close()
        self.api.close()


def kubectl(kubeconfig: Path, *args: str, check: bool = True, binary: str = KUBECTL) -> str:
    """Run the real kubectl against the cluster and return stdout."""
    proc = subprocess.run([binary, "--kubeconfig", str(kubeconfig), *args], capture_output=True, text=True,
                          timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc.stdout if check else proc.stdout + proc.stderr


def kubectl_json(kubeconfig: Path, *args: str) -> Any:
    return json.loads(kubectl(kubeconfig, *args, "-o", "json"))
