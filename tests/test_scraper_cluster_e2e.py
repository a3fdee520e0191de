"""End to end: the collector + node informer against B's emulated cluster (API server + kubelets).

The cluster runs on a ManualClock, so kubelet stats advance exactly when the test says; the
collector scrapes for real over HTTPS with the metrics-server ServiceAccount token.
"""

from __future__ import annotations

import asyncio

import pytest

from autoscaler.k8s.informer import Informer
from autoscaler.k8s.kubeconfig import load_kubeconfig
from autoscaler.scraper.collector import Collector, ScrapeOptions
from autoscaler.scraper.targets import slim_node
from autoscaler.storage.window import WindowStore
from sim.clock import ManualClock
from sim.cluster import run_in_thread
from sim.kubelet.pods import PodTiming
from sim.loadmodel import Constant
from sim.nodes import NodeSpec
from sim.scenario import Scenario, WorkloadSpec

TOTAL_CORES = 1.2
REPLICAS = 6


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    containers = [
        {"name": "app", "image": "app:1", "resources": {"requests": {"cpu": "200m", "memory": "64Mi"}}},
        {"name": "sidecar", "image": "pause:3", "resources": {"requests": {"cpu": "50m", "memory": "16Mi"}}},
    ]
    scenario = Scenario(
        name="scrape-e2e",
        nodes=[NodeSpec(f"worker-{i}", cpu="8", memory="32Gi", pods=110) for i in range(3)],
        workloads=[WorkloadSpec("web", containers=containers, replicas=REPLICAS, load=Constant(cores=TOTAL_CORES))],
        timing=PodTiming(),
    )
    c = run_in_thread(scenario, tmp_path_factory.mktemp("cluster"), clock=ManualClock())
    try:
        c.advance(120)  # schedule, start and ready every pod; containers well past the fresh-container age
        yield c
    finally:
        c.stop()


def running_pods(cluster) -> list[tuple[str, str, str]]:
    items, _ = cluster.call(lambda: cluster.store.list("pods", "default"))
    return [(p["metadata"]["namespace"], p["metadata"]["name"], p["spec"].get("nodeName"))
            for p in items if (p.get("status") or {}).get("phase") == "Running"]


@pytest.mark.parametrize("source", ["resource", "summary"])
async def test_usage_matches_the_load_model_and_one_broken_kubelet_is_isolated(cluster, source):
    kube = load_kubeconfig(str(cluster.metrics_kubeconfig))  # the metrics-server ServiceAccount token
    opts = ScrapeOptions(kubelet_source=source, kubelet_use_node_status_port=True, kubelet_request_timeout=2.0)
    store = WindowStore(opts.metric_resolution, opts.metric_history)
    informer = Informer(kube, "/api/v1/nodes", name="nodes", transform=slim_node)
    stop = asyncio.Event()
    inf_task = asyncio.create_task(informer.run(stop))
    # scrapes stamped with the cluster's virtual clock, so staleness follows emulated time
    collector = Collector(opts, store, kube, node_informer=informer, clock=cluster.clock.now)
    try:
        assert await informer.wait_synced(30)
        pods = running_pods(cluster)
        assert len(pods) == REPLICAS
        first = await collector.scrape_cycle()
        assert (first.nodes, first.failed) == (3, 0), first.errors
        await asyncio.to_thread(cluster.advance, 15)
        await collector.scrape_cycle()
        await asyncio.to_thread(cluster.advance, 15)
        stats = await collector.scrape_cycle()
        assert stats.failed == 0, stats.errors
        usage = store.pod_metrics([(ns, name) for ns, name, _ in pods])
        assert all(u is not None for u in usage)
        total = sum(c.cpu_nanocores for u in usage for c in u.containers) / 1e9
        assert total == pytest.approx(TOTAL_CORES, rel=0.05)  # within the rate window's error
        for u in usage:
            assert {c.name for c in u.containers} == {"app", "sidecar"}
            assert 10 <= u.window <= 20 and all(c.memory_bytes > 0 for c in u.containers)
        nodes = store.node_metrics(["worker-0", "worker-1", "worker-2"])
        assert all(n is not None and n.cpu_nanocores > 0 for n in nodes)

        # break one kubelet: only its node (and its pods) go missing, everyone else is still served
        broken = pods[0][2]
        await asyncio.to_thread(cluster.run, cluster.cluster.kubelet(broken).set_fault("garbage"))
        try:
            for _ in range(3):
                await asyncio.to_thread(cluster.advance, 15)
                stats = await collector.scrape_cycle()  # 45 s without a good scrape: past 2.5 × 15 s
            assert set(stats.errors) == {broken}
            served = store.pod_metrics([(ns, name) for ns, name, _ in pods])
            for (_, _, node), u in zip(pods, served, strict=True):
                assert (u is None) == (node == broken)
            assert [n is None for n in store.node_metrics(["worker-0", "worker-1", "worker-2"])] == [
                name == broken for name in ("worker-0", "worker-1", "worker-2")]
        finally:
            await asyncio.to_thread(cluster.run, cluster.cluster.kubelet(broken).set_fault(None))
    finally:
        await collector.client.close()
        stop.set()
        await asyncio.wait_for(inf_task, 10)


async def test_run_watches_nodes_itself_and_scrapes_on_its_ticker(cluster):
    kube = load_kubeconfig(str(cluster.metrics_kubeconfig))
    opts = ScrapeOptions(kubelet_use_node_status_port=True, node_selector="kubernetes.io/hostname!=worker-2")
    store = WindowStore(opts.metric_resolution, opts.metric_history)
    collector = Collector(opts, store, kube, clock=cluster.clock.now)
    stop = asyncio.Event()
    task = asyncio.create_task(collector.run(stop))
    try:
        while collector.last_cycle is None:
            assert not task.done(), task
            await asyncio.sleep(0.05)
        first = collector.last_cycle
        assert (first.nodes, first.succeeded) == (2, 2), first.errors
        assert sorted(store.all_node_names()) == ["worker-0", "worker-1"]
        assert collector.timely()
        assert sorted(collector.node_informer.keys()) == ["worker-0", "worker-1"]
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_kubelets_through_the_api_server_node_proxy(cluster):
    """--kubelet-via-apiserver: what `autoscaler record` uses from outside a cluster."""
    kube = load_kubeconfig(str(cluster.metrics_kubeconfig))
    # no node has an ExternalDNS address: scraping directly could not reach any kubelet
    direct = ScrapeOptions(kubelet_preferred_address_types=["ExternalDNS"])
    proxied = ScrapeOptions(kubelet_preferred_address_types=["ExternalDNS"], kubelet_via_apiserver=True)
    informer = Informer(kube, "/api/v1/nodes", name="nodes", transform=slim_node)
    stop = asyncio.Event()
    inf_task = asyncio.create_task(informer.run(stop))
    collectors = []
    try:
        assert await informer.wait_synced(30)
        for opts in (direct, proxied):
            store = WindowStore(opts.metric_resolution, opts.metric_history)
            collectors.append(Collector(opts, store, kube, node_informer=informer, clock=cluster.clock.now))
        unreachable = await collectors[0].scrape_cycle()
        assert unreachable.succeeded == 0 and all("no address matched" in e for e in unreachable.errors.values())
        col = collectors[1]
        assert (await col.scrape_cycle()).failed == 0
        await asyncio.to_thread(cluster.advance, 15)
        stats = await col.scrape_cycle()
        assert (stats.nodes, stats.succeeded) == (3, 3), stats.errors
        pods = running_pods(cluster)
        usage = col.storage.pod_metrics([(ns, name) for ns, name, _ in pods])
        assert all(u is not None for u in usage)
        total = sum(c.cpu_nanocores for u in usage for c in u.containers) / 1e9
        assert total == pytest.approx(TOTAL_CORES, rel=0.05)
    finally:
        for c in collectors:
            await c.client.close()
        stop.set()
        await asyncio.wait_for(inf_task, 10)
