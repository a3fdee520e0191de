"""End to end: the HPA controller against the emulated cluster and its deployment emulation.

The cluster runs on a ManualClock (started an hour in the past so kubectl ages stay sane); each
step advances 15 virtual seconds (one sync period), scrapes the kubelets into the window store
and runs one full sync. The real kubectl and the kubernetes Python client read what we wrote.
"""

from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager

import kubernetes
from prometheus_client import generate_latest

from autoscaler.controller.controller import ANNOTATION
from autoscaler.hpa import ControllerConfig
from sim.kubelet.pods import PodTiming
from sim.loadmodel import Constant
from sim.nodes import NodeSpec
from sim.scenario import Scenario, WorkloadSpec
from tests.sim_fixtures import ControllerEnv, kubectl, scraped_cluster

STEP = 15.0
UP_WINDOW_PODS, UP_PERCENT = 4, 100  # the default scale-up policies: +4 pods or +100% per 15 s
DOWN_WINDOW = 60  # the HPA's scale-down stabilization window (seconds)
CONTAINERS = [{"name": "app", "image": "app:1", "resources": {"requests": {"cpu": "200m", "memory": "64Mi"}}}]
HPA = {
    "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
    "metadata": {"name": "web", "namespace": "default"},
    "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
             "minReplicas": 1, "maxReplicas": 10,
             "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                                                           "target": {"type": "Utilization", "averageUtilization": 50}}}],
             "behavior": {"scaleDown": {"stabilizationWindowSeconds": DOWN_WINDOW}}},
}
CONFIG = ControllerConfig(cpu_initialization_period=120, initial_readiness_delay=10)


def scenario() -> Scenario:
    return Scenario(name="controller-e2e", nodes=[NodeSpec("worker-0", cpu="16", memory="64Gi", pods=110)],
                    workloads=[WorkloadSpec("web", containers=CONTAINERS, replicas=2, load=Constant(cores=0.2))],
                    hpas=[json.loads(json.dumps(HPA))], timing=PodTiming(startup=1, readiness=2))


class Env(ControllerEnv):
    """The cluster of :func:`scenario`, with readers for what the tests check."""

    def replicas(self) -> int:
        apps = kubernetes.client.AppsV1Api(self.api)
        return apps.read_namespaced_deployment("web", "default").spec.replicas

    def hpa(self):
        return kubernetes.client.AutoscalingV2Api(self.api).read_namespaced_horizontal_pod_autoscaler("web", "default")

    def events(self, reason: str | None = None) -> list:
        core = kubernetes.client.CoreV1Api(self.api)
        items = core.list_namespaced_event("default", field_selector="involvedObject.name=web").items
        return [e for e in items if e.involved_object.kind == "HorizontalPodAutoscaler"
                and (reason is None or e.reason == reason)]


@asynccontextmanager
async def environment(tmp_path):
    async with scraped_cluster(scenario(), tmp_path / "cluster") as (cluster, store, collector):
        env = Env(cluster, store, collector, CONFIG, STEP)
        try:
            yield env
        finally:
            await env.close()


async def test_active_scales_up_within_policies_then_down_after_the_window(tmp_path):
    async with environment(tmp_path) as env:
        ctl = await env.controller("active")
        (first,) = await env.step(ctl)
        assert first["default/web"].desired == 2  # 50% of request: at target
        env.cluster.set_load("default", "web", Constant(cores=0.8))  # 4x the demand
        ups = []
        for _ in range(4):
            (out,) = await env.step(ctl)
            o = out["default/web"]
            ups.append((o.current, o.desired))
            assert env.replicas() == o.desired
        # scaled up at the first sync that saw the new load, never faster than the policies allow
        assert ups[0][1] > ups[0][0] == 2
        for cur, new in ups:
            assert new <= max(cur + UP_WINDOW_PODS, cur * (1 + UP_PERCENT // 100))
        high = env.replicas()
        assert high >= 8  # 0.8 cores at 50% of 200m wants 8 pods

        env.cluster.set_load("default", "web", Constant(cores=0.1))
        seen_low_at = None
        scaled_down_at = None
        for i in range(10):
            (out,) = await env.step(ctl)
            o = out["default/web"]
            if seen_low_at is None and "below target" in o.summary:
                seen_low_at = i
            if scaled_down_at is None and o.desired < o.current:
                scaled_down_at = i
                assert o.limited_by in ("-", "ScaleDownLimit", "TooFewReplicas")
            if seen_low_at is not None and scaled_down_at is None:
                assert o.limited_by == "ScaleDownStabilized"
        assert seen_low_at is not None and scaled_down_at is not None
        # not before the stabilization window has passed since the last high recommendation
        assert (scaled_down_at - seen_low_at) * STEP >= DOWN_WINDOW - STEP
        assert env.replicas() < high

        # what we wrote, as the real kubectl shows it
        await ctl.recorder.flush()
        get = kubectl(env.cluster.kubeconfig, "get", "hpa", "web")
        assert "Deployment/web" in get and f"{env.replicas()}" in get.splitlines()[1].split()
        describe = kubectl(env.cluster.kubeconfig, "describe", "hpa", "web")
        for text in ("AbleToScale", "ScalingActive", "ValidMetricFound", "SuccessfulRescale",
                     "horizontal-pod-autoscaler", f"New size: {high}"):
            assert text in describe, text
        status = env.hpa().status
        assert status.current_replicas is not None and status.desired_replicas == env.replicas()
        assert {c.type for c in status.conditions} >= {"AbleToScale", "ScalingActive", "ScalingLimited"}
        rescales = env.events("SuccessfulRescale")
        assert rescales and all(e.source.component == "horizontal-pod-autoscaler" for e in rescales)

        # upstream's metric families, with this HPA's desired replicas
        text = generate_latest(ctl.metrics.registry).decode()
        assert 'horizontal_pod_autoscaler_controller_reconciliations_total{action="scale_up",error="none"}' in text
        assert f'horizontal_pod_autoscaler_controller_desired_replicas{{hpa_name="web",namespace="default"}} ' \
               f'{float(env.replicas())}' in text
        assert "horizontal_pod_autoscaler_controller_metric_computation_total" in text

        # another writer changes the status: detected, logged and reported in an event
        patched = env.hpa()
        patched.status.desired_replicas = 42
        kubernetes.client.AutoscalingV2Api(env.api).replace_namespaced_horizontal_pod_autoscaler_status(
            "web", "default", patched)
        for _ in range(200):
            if ctl.foreign_writes:
                break
            await asyncio.sleep(0.02)
        assert ctl.foreign_writes == {"default/web"}
        await ctl.recorder.flush()
        (warn,) = env.events("StatusChangedByAnotherWriter")
        assert warn.type == "Warning" and "--controllers=*,-horizontalpodautoscaling" in warn.message


async def test_repeated_failures_are_one_event_with_a_count(tmp_path):
    async with environment(tmp_path) as env:
        ctl = await env.controller("active")
        bad = json.loads(json.dumps(HPA))
        bad["metadata"]["name"] = "ghost"
        bad["spec"]["scaleTargetRef"]["name"] = "missing"
        env.cluster.call(lambda: env.cluster.store.create("horizontalpodautoscalers.autoscaling", bad))
        for _ in range(3):
            await env.step(ctl)
        await ctl.recorder.flush()
        core = kubernetes.client.CoreV1Api(env.api)
        events = [e for e in core.list_namespaced_event("default", field_selector="involvedObject.name=ghost").items
                  if e.reason == "FailedGetScale"]
        assert len(events) == 1 and events[0].count == 3
        assert 'deployments.apps "missing" not found' in events[0].message
        cond = {c.type: c for c in kubernetes.client.AutoscalingV2Api(env.api)
                .read_namespaced_horizontal_pod_autoscaler("ghost", "default").status.conditions}
        assert cond["AbleToScale"].status == "False" and cond["AbleToScale"].reason == "FailedGetScale"
        # the healthy HPA was reconciled all along
        assert ctl.last["default/web"].error is None


async def test_dry_run_writes_nothing_and_reports_what_active_mode_does(tmp_path):
    async with environment(tmp_path) as env:
        active = await env.controller("active")
        dry = await env.controller("dry-run", dry_run_annotate=True)
        env.cluster.set_load("default", "web", Constant(cores=0.8))
        pairs = []
        for i in range(8):
            if i == 5:
                env.cluster.set_load("default", "web", Constant(cores=0.1))
            # same inputs: the dry-run controller decides first, then the active one acts
            d_out, a_out = await env.step(dry, active)
            d, a = d_out["default/web"], a_out["default/web"]
            pairs.append((d.current, d.desired, a.current, a.desired))
            assert (d.current, d.desired, d.limited_by, d.reason) == (a.current, a.desired, a.limited_by, a.reason)
        assert any(a_cur != a_des for _, _, a_cur, a_des in pairs)  # active did scale along the way

        text = generate_latest(dry.metrics.registry).decode()
        last = pairs[-1]
        assert f'autoscaler_dry_run_recommended_replicas{{hpa_name="web",namespace="default"}} {float(last[1])}' in text
        await dry.recorder.flush()
        assert env.events("DryRunRescale")
        ann = json.loads(env.hpa().metadata.annotations[ANNOTATION])
        assert ann["recommendedReplicas"] == last[1]


async def test_dry_run_alone_leaves_the_cluster_untouched(tmp_path):
    async with environment(tmp_path) as env:
        dry = await env.controller("dry-run")
        fresh = env.hpa().status  # as the API server wrote it at creation (desiredReplicas: 0)
        env.cluster.set_load("default", "web", Constant(cores=0.8))
        recs = []
        for _ in range(3):
            (out,) = await env.step(dry)
            recs.append(out["default/web"].desired)
        assert max(recs) > 2  # it recommends scaling up...
        assert env.replicas() == 2  # ...but the Deployment was not touched
        assert env.hpa().status == fresh and not fresh.last_scale_time  # nor the HPA status
        await dry.recorder.flush()
        (ev,) = env.events("DryRunRescale")
        assert ev.count >= 1 and "would rescale to" in ev.message
        assert not env.events("SuccessfulRescale")
