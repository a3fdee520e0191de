"""Fidelity: record the live controller scaling a workload on the emulated cluster, replay the
trace with the same HPA, and compare the replica timelines step by step.

The cluster runs on a ManualClock; each step advances one sync period (15 s), scrapes the kubelets
into the window store, runs one sync of the live controller, and feeds the recorder with what a
recording run reads (pods and workloads through the real Kubernetes client, samples from the
store). The trace goes through a file, and the replay must match the live replica count at
>= 95 % of the steps; docs/replay.md ("Fidelity") lists the model limits that explain the rest.
"""

from __future__ import annotations

import asyncio
import json

import kubernetes
import numpy as np

from autoscaler.controller.controller import HPAController
from autoscaler.controller.metrics_source import StoreResourceMetrics
from autoscaler.controller.options import ControllerOptions
from autoscaler.hpa import ControllerConfig, default_hpa
from autoscaler.k8s.kubeconfig import load_kubeconfig
from sim.kubelet.pods import PodTiming
from sim.loadmodel import Constant
from sim.nodes import NodeSpec
from sim.replay.engine import ReplayOptions, recorded_timeline, replay
from sim.replay.load import build_load
from sim.replay.recorder import TraceRecorder
from sim.replay.trace import read_trace, write_trace
from sim.scenario import Scenario, WorkloadSpec
from tests.sim_fixtures import scraped_cluster

STEP = 15.0
CONTAINERS = [{"name": "app", "image": "app:1", "resources": {"requests": {"cpu": "200m", "memory": "64Mi"}}}]
HPA = {
    "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
    "metadata": {"name": "web", "namespace": "default"},
    "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
             "minReplicas": 1, "maxReplicas": 10,
             "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                                                           "target": {"type": "Utilization", "averageUtilization": 50}}}],
             "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}},
}
CONFIG = ControllerConfig(cpu_initialization_period=120, initial_readiness_delay=10)
#: (from step, cores): steady, a surge, a quiet period, a surge above maxReplicas
LOAD = [(0, 0.2), (12, 0.8), (40, 0.3), (70, 1.3), (95, 0.5)]
STEPS = 115


async def test_replay_matches_the_live_controller(tmp_path):
    scenario = Scenario(name="fidelity", nodes=[NodeSpec("worker-0", cpu="16", memory="64Gi", pods=110)],
                        workloads=[WorkloadSpec("web", containers=CONTAINERS, replicas=2, load=Constant(cores=0.2))],
                        hpas=[json.loads(json.dumps(HPA))], timing=PodTiming(startup=1, readiness=2))
    async with scraped_cluster(scenario, tmp_path / "cluster", past=7200) as (cluster, store, collector):
        api = kubernetes.config.new_client_from_config(str(cluster.kubeconfig))
        ctl = HPAController(load_kubeconfig(str(cluster.kubeconfig)),
                            ControllerOptions(mode="active", leader_elect=False, config=CONFIG),
                            StoreResourceMetrics(store), clock=cluster.clock.now, monotonic=cluster.clock.now)
        await ctl.start()
        core = kubernetes.client.CoreV1Api(api)
        apps = kubernetes.client.AppsV1Api(api)
        hpas = kubernetes.client.AutoscalingV2Api(api)
        rec = TraceRecorder(STEP)

        def observe() -> None:
            now = cluster.clock.now()
            pods = [api.sanitize_for_serialization(p) for p in core.list_namespaced_pod("default").items]
            deps = [dict(api.sanitize_for_serialization(d), kind="Deployment")
                    for d in apps.list_namespaced_deployment("default").items]
            hs = [api.sanitize_for_serialization(h)
                  for h in hpas.list_namespaced_horizontal_pod_autoscaler("default").items]
            rec.observe_pods(pods, now)
            rec.observe_workloads(deps, hs, now)
            rec.observe_usage(store)

        live = []
        loads = dict(LOAD)
        try:
            for i in range(STEPS):
                if i in loads:
                    cluster.set_load("default", "web", Constant(cores=loads[i]))
                await asyncio.to_thread(cluster.advance, STEP)
                await collector.scrape_cycle()
                await ctl.catch_up()
                await ctl.sync_all()
                await asyncio.to_thread(observe)
                live.append(apps.read_namespaced_deployment("web", "default").spec.replicas)
        finally:
            await ctl.close()
            api.close()

    # The live run really scaled: up past 2, to maxReplicas, and back down.
    assert max(live) == 10 and min(live[40:70]) < 8 and live[0] == 2

    path = tmp_path / "fidelity.json.gz"
    write_trace(rec.trace(source="fidelity test"), path)
    trace, _ = read_trace(path)
    w = trace.workload("default", "web")
    assert w.hpas and default_hpa(w.hpas[0].manifest)["spec"] == default_hpa(HPA)["spec"]
    load = build_load(trace, w)
    assert load.cpu_request == 0.2
    tl = replay(load, ReplayOptions(w.hpas[0].manifest, CONFIG, STEP))
    rec_tl = recorded_timeline(load)
    # Compare where the live run was observed (after its first sync).
    first = int(np.searchsorted(load.times, w.replicas_t[0]))
    same = tl.replicas[first:] == rec_tl.replicas[first:]
    ratio = float(same.mean())
    diff = np.flatnonzero(~same) + first
    detail = [(int(k), int(rec_tl.replicas[k]), int(tl.replicas[k])) for k in diff[:20]]
    assert ratio >= 0.95, f"replay matched {ratio:.1%} of {len(same)} steps; (step, live, replay): {detail}"
    assert tl.replicas.max() == 10 and tl.sync_errors == 0
