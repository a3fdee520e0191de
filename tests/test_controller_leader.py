"""Leader election (client-go semantics on a coordination.k8s.io/v1 Lease) and the live work loop.

Two controller replicas run against one emulated API server with short (real-time) lease
settings: exactly one leads, the Lease names it, and when it goes away the other takes over
(after a clean release at once; after a crash once the lease has expired). A sampler checks
the whole time that the two never act together.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from autoscaler.controller.controller import HPAController
from autoscaler.controller.options import ControllerOptions
from autoscaler.k8s.kubeconfig import load_kubeconfig
from sim.clock import ManualClock
from sim.cluster import run_in_thread
from sim.nodes import NodeSpec
from sim.scenario import Scenario, WorkloadSpec
from tests.sim_fixtures import kubectl

LEASE = dict(lease_duration=1.5, renew_deadline=1.0, retry_period=0.2)
HPA = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
       "metadata": {"name": "web", "namespace": "default"},
       "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 1, "maxReplicas": 5}}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    sc = Scenario(name="leader", nodes=[NodeSpec("worker-0", cpu="8", memory="32Gi", pods=110)],
                  workloads=[WorkloadSpec("web", replicas=1, containers=[
                      {"name": "app", "image": "app:1", "resources": {"requests": {"cpu": "100m"}}}])],
                  hpas=[HPA])
    c = run_in_thread(sc, tmp_path_factory.mktemp("leader"), clock=ManualClock(start=time.time() - 3600))
    try:
        c.advance(10)
        yield c
    finally:
        c.stop()


async def wait_until(pred, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def lease(cluster, name: str) -> dict:
    return json.loads(kubectl(cluster.kubeconfig, "get", "lease", "-n", "kube-system", name, "-o", "json"))["spec"]


def leading(ctl: HPAController) -> float | None:
    return ctl.metrics.registry.get_sample_value("leader_election_master_status", {"name": "ha"})


async def test_two_replicas_elect_one_leader_and_fail_over(cluster):
    a = HPAController(load_kubeconfig(str(cluster.kubeconfig)),
                      ControllerOptions(mode="dry-run", leader_elect=True, lease_name="ha", **LEASE), identity="a")
    b = HPAController(load_kubeconfig(str(cluster.kubeconfig)),
                      ControllerOptions(mode="dry-run", leader_elect=True, lease_name="ha", **LEASE), identity="b")
    stop_a, stop_b = asyncio.Event(), asyncio.Event()
    both = []
    sampling = True

    async def sampler():
        while sampling:
            if a.may_act() and b.may_act():
                both.append(time.monotonic())
            await asyncio.sleep(0.005)

    sample = asyncio.create_task(sampler())
    ta = asyncio.create_task(a.run(stop_a))
    await wait_until(lambda: a.may_act())
    tb = asyncio.create_task(b.run(stop_b))
    await asyncio.sleep(1.0)  # b campaigns while a renews
    assert a.may_act() and not b.may_act()
    spec = lease(cluster, "ha")
    assert spec["holderIdentity"] == "a" and spec["leaseDurationSeconds"] == 2
    assert a.last  # the leader's workers reconciled the HPA
    # client-go's leader_election_master_status: what the leader-flapping alert counts
    assert (leading(a), leading(b)) == (1.0, 0.0)
    transitions = spec.get("leaseTransitions", 0)

    # clean shutdown: the lease is released, b takes over without waiting for expiry
    stop_a.set()
    await asyncio.wait_for(ta, 20)
    await wait_until(lambda: b.may_act())
    spec = lease(cluster, "ha")
    assert spec["holderIdentity"] == "b" and spec["leaseTransitions"] == transitions + 1
    assert (leading(a), leading(b)) == (0.0, 1.0)

    # crash (no release): a new replica waits out the lease duration it observes, then leads
    c = HPAController(load_kubeconfig(str(cluster.kubeconfig)),
                      ControllerOptions(mode="dry-run", leader_elect=True, lease_name="ha", **LEASE), identity="c")
    stop_c = asyncio.Event()
    tc = asyncio.create_task(c.run(stop_c))
    await asyncio.sleep(0.5)
    assert not c.may_act()
    tb.cancel()  # b dies without releasing
    await asyncio.gather(tb, return_exceptions=True)
    await wait_until(lambda: c.may_act())
    assert lease(cluster, "ha")["holderIdentity"] == "c"
    stop_c.set()
    await asyncio.wait_for(tc, 20)
    sampling = False
    await sample
    await b.close()
    assert both == []


async def test_work_loop_resyncs_every_hpa_each_sync_period(cluster):
    ctl = HPAController(load_kubeconfig(str(cluster.kubeconfig)),
                        ControllerOptions(mode="dry-run", leader_elect=False, sync_period=0.2, workers=2))
    ctl.keep_history = True
    stop = asyncio.Event()
    task = asyncio.create_task(ctl.run(stop))
    await wait_until(lambda: sum(o.key == "default/web" for o in ctl.history) >= 3)
    # a spec change is picked up at once, not after the period
    kubectl(cluster.kubeconfig, "patch", "hpa", "web", "--type=merge", "-p", '{"spec":{"maxReplicas":7}}')
    await wait_until(lambda: ctl.hpas.get("default/web")["spec"]["maxReplicas"] == 7)
    stop.set()
    await asyncio.wait_for(task, 20)
    # never two reconciles of one HPA at the same time: outcomes are strictly ordered
    times = [o.time for o in ctl.history if o.key == "default/web"]
    assert times == sorted(times)
