"""End to end: the HPA controller reads custom and external metrics through the emulated API server.

A prometheus-adapter/KEDA stand-in (tests/custom_metrics_backend.py) is registered as the
APIServices ``v1beta2.custom.metrics.k8s.io`` and ``v1beta1.external.metrics.k8s.io`` and reached
through the aggregation layer (front-proxy client certificate, ``caBundle`` verification). The
cluster runs on a ManualClock; each step advances one sync period (15 virtual seconds) and runs
one full sync. Expected replica counts are worked out below with the upstream formulas
(hpa-spec §4.6-§4.8); the kubernetes client and the real kubectl read what the controller wrote.
"""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import time
from contextlib import asynccontextmanager
from typing import Any

import kubernetes
import yaml

from autoscaler.controller.controller import HPAController
from autoscaler.controller.options import ControllerOptions
from autoscaler.hpa import ControllerConfig
from autoscaler.k8s.kubeconfig import load_kubeconfig
from autoscaler.k8s.selectors import LabelSelector, parse_label_selector
from sim.clock import ManualClock
from sim.cluster import ClusterThread, run_in_thread
from sim.kubelet.pods import PodTiming
from sim.nodes import NodeSpec
from sim.scenario import Scenario, WorkloadSpec
from tests.custom_metrics_backend import APISERVICES, CustomMetricsBackend, PodLister, manifests
from tests.sim_fixtures import KUBECTL, kubectl

STEP = 15.0
NS = "default"
CONTAINERS = [{"name": "app", "image": "app:1", "resources": {"requests": {"cpu": "100m", "memory": "32Mi"}}}]
BEHAVIOR = {"scaleDown": {"stabilizationWindowSeconds": 60}}  # scale-up: the default max(+4 pods, +100%) / 15 s

# (a) Pods metric, AverageValue: 48 rps shared by the workers, target 10 per pod.
RPS_TOTAL, RPS_TARGET = 48_000, 10_000
# (b) Object metric on Service "api", Value: the service's backlog per running worker, 5 in total, target 1.
BACKLOG_TOTAL, BACKLOG_TARGET = 5_000, 1_000
# (c) External metric, AverageValue: two queue shards hold 12 + 13 messages (another queue 100), target 5 per pod.
JOBS = [({"queue": "jobs", "shard": "0"}, 12_000), ({"queue": "jobs", "shard": "1"}, 13_000),
        ({"queue": "other", "shard": "0"}, 100_000)]
JOBS_TARGET = 5_000
# (b') Object metric on Deployment "queue" (a group-qualified resource), AverageValue: 15 pending, target 5 per pod.
PENDING, PENDING_TARGET = 15_000, 5_000


def hpa(name: str, metric: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                     "minReplicas": 1, "maxReplicas": 10, "metrics": [metric],
                     "behavior": json.loads(json.dumps(BEHAVIOR))}}


def pods_metric(name: str, target: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    metric: dict[str, Any] = {"name": name}
    if labels:
        metric["selector"] = {"matchLabels": labels}
    return {"type": "Pods", "pods": {"metric": metric, "target": {"type": "AverageValue", "averageValue": target}}}


def external_metric(name: str, labels: dict[str, str], target: str) -> dict[str, Any]:
    return {"type": "External", "external": {"metric": {"name": name, "selector": {"matchLabels": labels}},
                                             "target": {"type": "AverageValue", "averageValue": target}}}


HPAS = [
    hpa("web", pods_metric("http_requests_per_second", "10", {"verb": "GET"})),
    hpa("api", {"type": "Object", "object": {
        "describedObject": {"apiVersion": "v1", "kind": "Service", "name": "api"},
        "metric": {"name": "backlog"}, "target": {"type": "Value", "value": "1"}}}),
    hpa("worker", external_metric("queue_messages_ready", {"queue": "jobs"}, "5")),
    hpa("queue", {"type": "Object", "object": {
        "describedObject": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "queue"},
        "metric": {"name": "pending_jobs"}, "target": {"type": "AverageValue", "averageValue": "5"}}}),
    # failures: a metric the adapter does not know (404), a selector no series matches (empty list)
    hpa("batch", pods_metric("jobs_per_second", "10")),
    hpa("ingest", external_metric("queue_messages_ready", {"queue": "ingest"}, "5")),
]


def scenario() -> Scenario:
    return Scenario(name="controller-custom-metrics", nodes=[NodeSpec("worker-0", cpu="16", memory="64Gi", pods=110)],
                    workloads=[WorkloadSpec(h["metadata"]["name"], containers=CONTAINERS, replicas=2) for h in HPAS],
                    hpas=json.loads(json.dumps(HPAS)), timing=PodTiming(startup=1, readiness=2))


def running_pods(cluster: ClusterThread) -> PodLister:
    """The adapter's view of which pods have series: running, not terminating (runs on the cluster loop)."""
    def pods(ns: str, selector: LabelSelector) -> list[str]:
        items, _ = cluster.store.list("pods", ns, selector)
        return [p["metadata"]["name"] for p in items
                if (p.get("status") or {}).get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")]
    return pods


class Env:
    """The cluster, the adapter stand-in, and controllers stepped one sync period at a time."""

    def __init__(self, cluster: ClusterThread, backend: CustomMetricsBackend) -> None:
        self.cluster = cluster
        self.backend = backend
        self.kube = load_kubeconfig(str(cluster.kubeconfig))
        self.api = kubernetes.config.new_client_from_config(str(cluster.kubeconfig))
        self.controllers: list[HPAController] = []

    async def controller(self) -> HPAController:
        config = ControllerConfig(cpu_initialization_period=120, initial_readiness_delay=10)
        c = HPAController(self.kube, ControllerOptions(mode="active", leader_elect=False, config=config),
                          clock=self.cluster.clock.now, monotonic=self.cluster.clock.now)
        await c.start()
        self.controllers.append(c)
        return c

    async def step(self, ctl: HPAController) -> dict:
        await asyncio.to_thread(self.cluster.advance, STEP)
        await ctl.catch_up()
        return await ctl.sync_all()

    def serve_metrics(self) -> None:
        data = self.backend.data
        data.pods_total[(NS, "http_requests_per_second")] = RPS_TOTAL
        api_pods = running_pods(self.cluster)
        api_sel = parse_label_selector("app=api")
        data.objects[(NS, "services", "api", "backlog")] = lambda: BACKLOG_TOTAL // max(1, len(api_pods(NS, api_sel)))
        data.external[(NS, "queue_messages_ready")] = JOBS
        data.objects[(NS, "deployments.apps", "queue", "pending_jobs")] = PENDING

    def register(self) -> None:
        """kubectl apply the adapter's Service, Endpoints and APIServices; wait until both are Available."""
        cmd = [KUBECTL, f"--kubeconfig={self.cluster.kubeconfig}", "apply", "-f", "-"]
        out = subprocess.run(cmd, input=yaml.safe_dump_all(manifests(self.backend)), capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr
        reg = kubernetes.client.ApiregistrationV1Api(self.api)
        deadline = time.monotonic() + 30
        while True:
            objs = [reg.read_api_service(name) for name in APISERVICES]
            conds = {o.metadata.name: {c.type: c for c in (o.status.conditions if o.status else None) or []
                                       }.get("Available") for o in objs}
            if all(c is not None and c.status == "True" for c in conds.values()):
                return
            assert time.monotonic() < deadline, f"APIServices never became Available: {conds}"
            time.sleep(0.05)

    def replicas(self, name: str) -> int:
        return kubernetes.client.AppsV1Api(self.api).read_namespaced_deployment(name, NS).spec.replicas

    def status(self, name: str):
        return kubernetes.client.AutoscalingV2Api(self.api).read_namespaced_horizontal_pod_autoscaler(name, NS).status

    def conditions(self, name: str) -> dict[str, Any]:
        return {c.type: c for c in self.status(name).conditions or []}

    def events(self, name: str, reason: str) -> list:
        core = kubernetes.client.CoreV1Api(self.api)
        return [e for e in core.list_namespaced_event(NS, field_selector=f"involvedObject.name={name}").items
                if e.involved_object.kind == "HorizontalPodAutoscaler" and e.reason == reason]


@asynccontextmanager
async def environment(tmp_path):
    cluster = run_in_thread(scenario(), tmp_path / "cluster", clock=ManualClock(start=time.time() - 3600))
    backend = None
    try:
        cluster.advance(30)  # pods scheduled, started and ready
        backend = CustomMetricsBackend(tmp_path, cluster.cluster.pki.front_proxy_ca.cert_pem, running_pods(cluster),
                                       clock=cluster.clock.now)
        cluster.run(backend.start())
        env = Env(cluster, backend)
        env.serve_metrics()
        try:
            yield env
        finally:
            for c in env.controllers:
                await c.close()
            env.api.close()
    finally:
        if backend is not None:
            cluster.run(backend.stop())
        cluster.stop()


def expected_first_sync() -> dict[str, int]:
    """The upstream formulas on two ready pods per workload (status replicas 2)."""
    pods = 2
    per_pod_rps = RPS_TOTAL // pods  # §4.6: plain per-pod average
    web = math.ceil(per_pod_rps / RPS_TARGET * pods)
    backlog = BACKLOG_TOTAL // pods  # §4.7: object value vs target, times the ready pods
    api = math.ceil(backlog / BACKLOG_TARGET * pods)
    jobs = sum(v for labels, v in JOBS if labels["queue"] == "jobs")  # §4.8: sum over the selected series
    worker = math.ceil(jobs / JOBS_TARGET)
    queue = math.ceil(PENDING / PENDING_TARGET)  # §4.8 for an object: per-pod target, not within tolerance of 2
    return {"web": web, "api": api, "worker": worker, "queue": queue}


async def test_pods_object_and_external_metrics_scale_deployments(tmp_path):
    want = expected_first_sync()
    assert want == {"web": 5, "api": 5, "worker": 5, "queue": 3}  # within the default scale-up policy (2 -> 6)
    async with environment(tmp_path) as env:
        await asyncio.to_thread(env.register)
        ctl = await env.controller()
        first = await env.step(ctl)
        for name, n in want.items():
            o = first[f"{NS}/{name}"]
            assert (o.current, o.desired, o.error) == (2, n, None), (name, o)
            assert env.replicas(name) == n
        # the reasons upstream gives, naming each metric as its description says
        assert first[f"{NS}/web"].reason == "pods metric http_requests_per_second above target"
        assert first[f"{NS}/api"].reason == "Service metric backlog above target"
        assert first[f"{NS}/worker"].reason == "external metric queue_messages_ready(&LabelSelector{MatchLabels:" \
                                               "map[string]string{queue: jobs,},MatchExpressions:" \
                                               "[]LabelSelectorRequirement{},}) above target"
        assert first[f"{NS}/queue"].reason == "external metric pending_jobs(nil) above target"  # upstream's wording

        # the new pods run and the per-pod values fall to the targets: within tolerance, no change
        second = await env.step(ctl)
        for name, n in want.items():
            o = second[f"{NS}/{name}"]
            assert (o.current, o.desired, o.updated, o.error) == (n, n, False, None), (name, o)
            cond = env.conditions(name)
            assert (cond["ScalingActive"].status, cond["ScalingActive"].reason) == ("True", "ValidMetricFound")
            assert (cond["AbleToScale"].status, cond["AbleToScale"].reason) == ("True", "ReadyForNewScale")
        # what status.currentMetrics reports: the per-pod average, the object's value, the external average
        web = env.status("web").current_metrics[0].pods
        assert (web.metric.name, web.current.average_value) == ("http_requests_per_second", "9600m")
        assert web.metric.selector.match_labels == {"verb": "GET"}
        api = env.status("api").current_metrics[0].object
        assert (api.described_object.kind, api.described_object.name, api.current.value) == ("Service", "api", "1")
        worker = env.status("worker").current_metrics[0].external
        assert worker.metric.selector.match_labels == {"queue": "jobs"} and worker.current.average_value == "5"
        queue = env.status("queue").current_metrics[0].object
        assert (queue.described_object.kind, queue.current.average_value) == ("Deployment", "5")
        assert all(env.status(n).desired_replicas == want[n] for n in want)

        # the requests reached the adapter as the upstream metrics clients make them, with the
        # controller's identity from the aggregator's front-proxy client certificate
        seen = {(r.path, tuple(sorted(r.query.items()))) for r in env.backend.metric_requests()}
        assert ("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/*/http_requests_per_second",
                (("labelSelector", "app=web"), ("metricLabelSelector", "verb=GET"))) in seen
        assert ("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/services/api/backlog", ()) in seen
        assert ("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/deployments.apps/queue/pending_jobs", ()) in seen
        assert ("/apis/external.metrics.k8s.io/v1beta1/namespaces/default/queue_messages_ready",
                (("labelSelector", "queue=jobs"),)) in seen
        users = {(r.user, r.client_cn) for r in env.backend.metric_requests()}
        assert users == {("kubernetes-admin", "front-proxy-client")}

        # the failures: each HPA reports its own metric error, nothing scaled, the others unaffected
        batch = env.conditions("batch")["ScalingActive"]
        assert (batch.status, batch.reason) == ("False", "FailedGetPodsMetric")
        assert batch.message == ("the HPA was unable to compute the replica count: unable to get metric jobs_per_second: "
                                 "unable to fetch metrics from custom metrics API: the server could not find the "
                                 "metric jobs_per_second for pods")
        ingest = env.conditions("ingest")["ScalingActive"]
        assert (ingest.status, ingest.reason) == ("False", "FailedGetExternalMetric")
        assert ingest.message == ("the HPA was unable to compute the replica count: unable to get external metric "
                                  "default/queue_messages_ready/&LabelSelector{MatchLabels:map[string]string"
                                  "{queue: ingest,},MatchExpressions:[]LabelSelectorRequirement{},}: "
                                  "no metrics returned from external metrics API")
        for name in ("batch", "ingest"):
            assert env.replicas(name) == 2
            assert second[f"{NS}/{name}"].desired == 2 and second[f"{NS}/{name}"].error
            assert env.status(name).current_replicas == 2
        await ctl.recorder.flush()
        (ev,) = env.events("batch", "FailedGetPodsMetric")
        assert ev.type == "Warning" and ev.count == 2 and ev.source.component == "horizontal-pod-autoscaler"
        assert env.events("ingest", "FailedGetExternalMetric")
        assert env.events("batch", "FailedComputeMetricsReplicas")
        assert not env.events("web", "FailedGetPodsMetric") and env.events("web", "SuccessfulRescale")

        # what a person sees with the real kubectl
        get = kubectl(env.cluster.kubeconfig, "get", "hpa", "web", "api", "worker")
        for line in ("9600m/10", "1/1", "5/5 (avg)"):  # kubectl marks only Object/External averages
            assert line in get, get
        describe = kubectl(env.cluster.kubeconfig, "describe", "hpa", "batch")
        assert "FailedGetPodsMetric" in describe and "ScalingActive" in describe


async def test_metrics_apis_registered_after_the_controller_started_are_used(tmp_path):
    async with environment(tmp_path) as env:
        ctl = await env.controller()
        before = await env.step(ctl)  # nothing serves the metrics APIs yet
        for name, reason in (("web", "FailedGetPodsMetric"), ("api", "FailedGetObjectMetric"),
                             ("worker", "FailedGetExternalMetric")):
            assert before[f"{NS}/{name}"].desired == 2 and env.replicas(name) == 2
            cond = env.conditions(name)["ScalingActive"]
            assert (cond.status, cond.reason) == ("False", reason)
        assert not env.backend.metric_requests()
        assert env.conditions("web")["ScalingActive"].message.endswith(
            "unable to fetch metrics from custom metrics API: the server could not find the requested resource")

        await asyncio.to_thread(env.register)  # e.g. prometheus-adapter installed later: no controller restart needed
        after = await env.step(ctl)
        for name, n in expected_first_sync().items():
            assert (after[f"{NS}/{name}"].desired, after[f"{NS}/{name}"].error) == (n, None), name
            assert env.replicas(name) == n
            cond = env.conditions(name)["ScalingActive"]
            assert (cond.status, cond.reason) == ("True", "ValidMetricFound")
