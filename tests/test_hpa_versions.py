"""Kubernetes 1.37 by default, 1.36 with ``--emulated-version=1.36``: every difference both ways.

The expected texts and defaults are those of the v1.37.2 source (``pkg/features/kube_features.go``,
``pkg/controller/podautoscaler``, ``pkg/registry/autoscaling/horizontalpodautoscaler``,
component-base's feature gate errors, checked against the v1.37.2 kube-controller-manager binary).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_replay_model import _flat_load

from autoscaler.controller.controller import HPAController
from autoscaler.controller.options import ControllerOptions, add_arguments, options_from_args
from autoscaler.controller.workqueue import WorkQueue
from autoscaler.hpa import ControllerConfig, HPAState, Scale, StaticMetrics, decide, pods_from_v1
from autoscaler.hpa.defaults import APIFeatures, prepare_for_write
from autoscaler.hpa.gates import config_for
from autoscaler.hpa.versions import parse_version, resolve_gates
from autoscaler.k8s.kubeconfig import load_kubeconfig
from autoscaler.k8s.rest import KubeClient
from sim.apiserver import strategy
from sim.cluster import run_in_thread
from sim.replay.engine import ReplayOptions, replay
from sim.replay.synth import hpa_manifest
from sim.scenario import parse_scenario

NOW = 1_700_000_000.0
HPA_PATH = "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers"
SKIPS = "horizontal_pod_autoscaler_controller_stale_sync_skips_total"


def hpa(name: str = "web", *, min_replicas: int = 1, metrics: list | None = None, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                     "minReplicas": min_replicas, "maxReplicas": 10,
                     "metrics": metrics or [{"type": "Resource", "resource": {"name": "cpu", "target": {
                         "type": "Utilization", "averageUtilization": 50}}}], **spec}}


EXTERNAL = [{"type": "External", "external": {"metric": {"name": "queue"}, "target": {"type": "Value", "value": "10"}}}]
OBJECT = [{"type": "Object", "object": {"describedObject": {"apiVersion": "v1", "kind": "Service", "name": "front"},
                                        "metric": {"name": "rps"}, "target": {"type": "Value", "value": "10"}}}]


# --------------------------------------------------------------------------------------------
# the version table and its flags


def test_emulated_version_values_and_errors():
    assert parse_version("1.36") == "1.36" and parse_version("kube=1.37") == "1.37"
    with pytest.raises(ValueError, match=r"emulation version 1.35 is not between \[1.36, 1.37\]"):
        parse_version("1.35")
    with pytest.raises(ValueError, match=re.escape("version format could only be major.minor")):
        parse_version("1.37.2")
    with pytest.raises(ValueError, match="component not registered: wardle"):
        parse_version("wardle=1.2")


def test_gate_defaults_per_version():
    assert resolve_gates("1.37") == {"HPAScaleToZero": True, "HPAConfigurableTolerance": True, "HPAGeneration": True,
                                     "HPAOptimizedSelectorStore": True, "StaleControllerConsistencyHPA": True}
    assert resolve_gates("1.36") == {"HPAScaleToZero": False, "HPAConfigurableTolerance": True}
    assert resolve_gates("1.36", {"HPAConfigurableTolerance": False})["HPAConfigurableTolerance"] is False
    # ControllerConfig's own defaults are the 1.37 ones, so a bare ControllerConfig() is 1.37
    assert ControllerConfig() == config_for("1.37")
    old = config_for("1.36")
    assert (old.scale_to_zero, old.configurable_tolerance, old.observed_generation, old.optimized_selector_store,
            old.stale_consistency, old.immediate_reconcile) == (False, True, False, False, False, False)
    assert ControllerConfig().immediate_reconcile


@pytest.mark.parametrize(("version", "gates", "message"), [
    # the exact texts kube-controller-manager v1.37.2 prints for these command lines
    ("1.37", {"HPAConfigurableTolerance": False},
     "cannot set feature gate HPAConfigurableTolerance to false, feature is locked to true"),
    ("1.36", {"HPAGeneration": True},
     "cannot set feature gate HPAGeneration to true, feature is PreAlpha at emulated version 1.36, "
     "min compatibility version 1.35"),
    ("1.36", {"StaleControllerConsistencyHPA": True},
     "cannot set feature gate StaleControllerConsistencyHPA to true, feature is PreAlpha at emulated version 1.36"),
    ("1.36", {"HPAOptimizedSelectorStore": False}, "HPAOptimizedSelectorStore to false, feature is PreAlpha"),
    ("1.37", {"Foo": True}, "unrecognized feature gate: Foo"),
    ("1.37", {"HPAConfigurableTolerance": False, "HPAScaleToZero": False},
     "cannot set feature gate HPAConfigurableTolerance to false, feature is locked to true"),
])
def test_gate_errors_have_upstream_texts(version, gates, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        resolve_gates(version, gates)


def test_several_gate_errors_are_listed_like_an_aggregate():
    with pytest.raises(ValueError) as e:
        resolve_gates("1.36", {"HPAGeneration": True, "StaleControllerConsistencyHPA": False})
    assert str(e.value).startswith("[cannot set feature gate HPAGeneration to true") and str(e.value).endswith("]")


def parse(*argv: str):
    p = argparse.ArgumentParser(exit_on_error=False)
    add_arguments(p)
    return p.parse_args(list(argv))


def test_controller_flags():
    assert options_from_args(parse()).config == ControllerConfig()
    o = options_from_args(parse("--emulated-version=1.36", "--feature-gates=HPAScaleToZero=true"))
    assert (o.config.version, o.config.scale_to_zero, o.config.observed_generation) == ("1.36", True, False)
    with pytest.raises(ValueError, match="--feature-gates: cannot set feature gate HPAConfigurableTolerance"):
        options_from_args(parse("--feature-gates=HPAConfigurableTolerance=false"))
    pre_alpha = "HPAGeneration to true, feature is PreAlpha at emulated version 1.36"
    with pytest.raises(ValueError, match=re.escape(pre_alpha)):
        options_from_args(parse("--emulated-version=1.36", "--feature-gates=HPAGeneration=true"))
    with pytest.raises(argparse.ArgumentError, match=re.escape("emulation version 1.38 is not between")):
        parse("--emulated-version=1.38")


def explain(*args: str) -> subprocess.CompletedProcess[str]:
    snap = Path(__file__).parent / "data" / "snapshots" / "web-list.json"
    return subprocess.run([sys.executable, "-m", "autoscaler", "explain", "-f", str(snap), "--now",
                           "2024-01-01T01:00:30Z", "-o", "json", *args], capture_output=True, text=True, timeout=60)


def test_explain_flags():
    assert explain("--emulated-version=1.36").returncode == 0
    bad = explain("--feature-gates", "HPAConfigurableTolerance=false")
    assert bad.returncode == 2 and "feature is locked to true" in bad.stderr
    bad = explain("--emulated-version=1.36", "--feature-gates", "HPAGeneration=true")
    assert bad.returncode == 2 and "PreAlpha at emulated version 1.36" in bad.stderr
    bad = explain("--emulated-version=1.35")
    assert bad.returncode == 2 and "emulation version 1.35 is not between" in bad.stderr


def test_sim_up_checks_the_version_flags_before_starting_and_passes_them_on(tmp_path, capsys):
    from autoscaler.cli import build_parser
    from sim.up_cmd import version_flags

    args = build_parser().parse_args(["sim", "up", "--state-dir", str(tmp_path / "s"), "--emulated-version=1.36",
                                      "--feature-gates=StaleControllerConsistencyHPA=true"])
    assert args._main(args) == 1
    assert "StaleControllerConsistencyHPA to true, feature is PreAlpha" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
    # what `autoscaler run` and, with --control-plane=real, the upstream programs get
    assert version_flags("1.37", {}) == []
    assert version_flags("1.36", {"HPAScaleToZero": True}) == ["--emulated-version=1.36",
                                                               "--feature-gates=HPAScaleToZero=true"]


# --------------------------------------------------------------------------------------------
# the decision core


class Failing:
    """A MetricsSource whose every API answers with an error."""

    def resource_metrics(self):
        from autoscaler.hpa.inputs import MetricsError

        raise MetricsError("no metrics returned from resource metrics API")

    def pods_metric(self, name, selector):
        return self.resource_metrics()

    def object_metric(self, name, described, selector):
        from autoscaler.hpa.inputs import MetricsError

        raise MetricsError("the server could not find the metric rps for services front")

    def external_metric(self, name, selector):
        return self.resource_metrics()


def ready_pods(n: int):
    return pods_from_v1([{"metadata": {"name": f"web-{i}", "namespace": "default"}, "spec": {"containers": []},
                          "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}
                         for i in range(n)])


def conds(d) -> dict[str, tuple[str, str, str]]:
    return {c["type"]: (c["status"], c["reason"], c["message"]) for c in d.status["conditions"]}


def test_scaled_to_zero_condition_on_every_rescale_at_137_only():
    obj = hpa(min_replicas=0, metrics=EXTERNAL)
    metrics = StaticMetrics(external={"queue": [0]})
    st = HPAState.from_json({"recommendations": []})  # no stabilization history: scale down at once
    new = decide(obj, Scale(3, 3, "app=web"), ready_pods(3), metrics, now=NOW, state=st)
    assert new.scale_to == 0
    assert conds(new)["ScaledToZero"] == ("True", "ScaledToZero", "the HPA controller scaled the workload to zero")
    gate_on = config_for("1.36", {"HPAScaleToZero": True})  # 1.36 can scale to zero only with the alpha gate
    assert decide(obj, Scale(3, 3, "app=web"), ready_pods(3), metrics, now=NOW, state=st, config=gate_on).scale_to == 0
    up = decide(hpa(min_replicas=4), Scale(2, 2, "app=web"), pods_from_v1([]), metrics, now=NOW)
    assert conds(up)["ScaledToZero"] == ("False", "NotScaledToZero",
                                         "the HPA controller did not scale the workload to zero")


def test_observed_generation_at_137_only():
    obj = hpa()
    obj["metadata"]["generation"] = 3
    args = (Scale(2, 2, "app=web"), pods_from_v1([]), Failing())
    assert decide(obj, *args, now=NOW).status["observedGeneration"] == 3
    assert all("observedGeneration" not in c for c in decide(obj, *args, now=NOW).status["conditions"])
    assert "observedGeneration" not in decide(obj, *args, now=NOW, config=config_for("1.36")).status
    assert "observedGeneration" not in decide(obj, *args, now=NOW, config=config_for(gates={"HPAGeneration": False})
                                              ).status
    del obj["metadata"]["generation"]  # an HPA written while the API server's gate was off
    assert decide(obj, *args, now=NOW).status["observedGeneration"] == 0


def test_object_metric_error_text_fixed_in_137():
    args = (hpa(metrics=OBJECT), Scale(2, 2, "app=web"), pods_from_v1([]), Failing())
    new = decide(*args, now=NOW)
    assert new.events[0] == {"type": "Warning", "reason": "FailedGetObjectMetric", "message": (
        "unable to get metric rps on Service default/front: the server could not find the metric rps for services "
        "front")}
    assert new.error == ("failed to compute desired number of replicas based on listed metrics for "
                         "Deployment/default/web: invalid metrics (1 invalid out of 1), first error is: failed to get "
                         "object metric value: "
                         "unable to get metric rps on Service default/front: the server could not find the metric "
                         "rps for services front")
    old = decide(*args, now=NOW, config=config_for("1.36"))
    assert old.events[0]["message"] == ("unable to get metric rps: Service on default front/the server could not "
                                        "find the metric rps for services front")


def test_ambiguous_selector_text_by_version_and_selector_store():
    pods = pods_from_v1([{"metadata": {"name": "web-1", "namespace": "default", "labels": {"app": "web"}},
                          "spec": {"containers": [{"name": "app"}]}, "status": {"phase": "Running"}}])
    others = {"default/web": "app=web", "default/web-2": "app=web", "default/web-3": "app", "default/db": "app=db"}

    def message(config: ControllerConfig) -> str:
        d = decide(hpa(), Scale(1, 1, "app=web"), pods, Failing(), now=NOW, config=config, other_hpa_selectors=others)
        return conds(d)["ScalingActive"][2]

    assert message(ControllerConfig()) == ("pods by selector app=web are controlled by more than one HPA "
                                           "(e.g. [default/web default/web-2])")
    assert message(config_for(gates={"HPAOptimizedSelectorStore": False})) == (
        "pods by selector app=web are controlled by more than one HPA (e.g. [default/web default/web-2 default/web-3])")
    assert message(config_for("1.36")) == ("pods by selector app=web are controlled by multiple HPAs: "
                                           "[default/web default/web-2 default/web-3]")


def test_tolerance_always_honoured_at_137_and_gated_at_136():
    # 8 % above the target of 10: outside a 5 % tolerance, inside the default 10 %
    obj = hpa(metrics=EXTERNAL, behavior={"scaleUp": {"tolerance": "0.05"}})
    metrics = StaticMetrics(external={"queue": [10_800]})
    args = (obj, Scale(5, 5, "app=web"), ready_pods(5), metrics)
    assert decide(*args, now=NOW).scale_to == 6
    assert decide(*args, now=NOW, config=config_for("1.36")).scale_to == 6
    assert decide(*args, now=NOW, config=config_for("1.36", {"HPAConfigurableTolerance": False})).scale_to == 5


# --------------------------------------------------------------------------------------------
# the emulated API server's HPA strategy


def test_generation_bumped_on_spec_changes_at_137_only():
    from sim.apiserver.store import ObjectStore

    res = "horizontalpodautoscalers.autoscaling"
    previous = strategy.hpa_features()
    try:
        for version, created, after_spec in (("1.37", 1, 2), ("1.36", None, None)):
            strategy.configure_hpa(APIFeatures.for_version(version))
            store = ObjectStore()
            obj = store.create(res, hpa())
            assert obj["metadata"].get("generation") == created
            labelled = json.loads(json.dumps(obj))
            labelled["metadata"]["labels"] = {"team": "a"}
            assert store.update(res, labelled)["metadata"].get("generation") == created  # metadata is not spec
            changed = json.loads(json.dumps(store.get(res, "default", "web")))
            changed["spec"]["maxReplicas"] = 6
            assert store.update(res, changed)["metadata"].get("generation") == after_spec
            status = json.loads(json.dumps(store.get(res, "default", "web")))
            status["status"] = {"currentReplicas": 1, "desiredReplicas": 1}
            assert store.update(res, status, subresource="status")["metadata"].get("generation") == after_spec
    finally:
        strategy.configure_hpa(previous)


def test_min_replicas_zero_and_tolerance_follow_the_version():
    at137, at136 = APIFeatures(), APIFeatures.for_version("1.36")
    assert prepare_for_write(hpa(min_replicas=0, metrics=EXTERNAL), None, at137) == []
    assert prepare_for_write(hpa(min_replicas=0, metrics=OBJECT), None, at137) == []
    assert prepare_for_write(hpa(min_replicas=0), None, at137) == [("spec.metrics", (
        "Forbidden: must specify at least one Object or External metric to support scaling to zero replicas"))]
    assert prepare_for_write(hpa(min_replicas=0, metrics=EXTERNAL), None, at136) == [
        ("spec.minReplicas", "Invalid value: 0: must be greater than or equal to 1")]
    assert prepare_for_write(hpa(min_replicas=0, metrics=EXTERNAL), None,
                             APIFeatures.for_version("1.36", {"HPAScaleToZero": True})) == []
    stored = hpa(min_replicas=0, metrics=EXTERNAL)  # kept valid on update when it was stored with 0
    assert prepare_for_write(hpa(min_replicas=0, metrics=EXTERNAL, maxReplicas=4), stored, at136) == []

    tol = {"scaleUp": {"tolerance": "0.05"}}
    new = hpa(behavior=json.loads(json.dumps(tol)))
    assert prepare_for_write(new, None, at137) == [] and new["spec"]["behavior"]["scaleUp"]["tolerance"] == "0.05"
    gate_off = APIFeatures.for_version("1.36", {"HPAConfigurableTolerance": False})
    new = hpa(behavior=json.loads(json.dumps(tol)))
    assert prepare_for_write(new, None, gate_off) == []  # dropped, not refused (dropDisabledFields)
    assert "tolerance" not in new["spec"]["behavior"]["scaleUp"]
    kept = hpa(behavior=json.loads(json.dumps(tol)))
    assert prepare_for_write(kept, hpa(behavior=tol), gate_off) == []  # the stored object already used it
    assert kept["spec"]["behavior"]["scaleUp"]["tolerance"] == "0.05"


# --------------------------------------------------------------------------------------------
# the live controller against the emulated API server

SCENARIO = {
    "name": "versions",
    "timing": {"startupDelay": "0s", "readinessDelay": "0s"},
    "nodes": [{"namePrefix": "worker", "count": 1, "cpu": "8", "memory": "32Gi"}],
    "workloads": [{"name": "web", "replicas": 1, "requests": {"cpu": "100m"}, "load": {"kind": "constant",
                                                                                       "cores": 0.05}}],
}


async def poll(fn, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = await fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


class Running:
    """An emulated cluster at ``version`` with our controller (no leader election) running; with
    ``workers=False`` only its informers run and the test calls ``reconcile`` itself."""

    def __init__(self, tmp: Path, version: str, sync_period: float, mode: str = "active",
                 workers: bool = True) -> None:
        self.workers = workers
        self.cluster = run_in_thread(parse_scenario(SCENARIO), tmp / "cluster", emulated_version=version)
        self.ctrl = HPAController(load_kubeconfig(str(self.cluster.kubeconfig)), ControllerOptions(
            mode=mode, sync_period=sync_period, leader_elect=False, config=config_for(version)))
        self.client = KubeClient(load_kubeconfig(str(self.cluster.kubeconfig)))
        self.stop = asyncio.Event()
        self.task: asyncio.Task | None = None

    async def __aenter__(self) -> Running:
        if not self.workers:
            await self.ctrl.start()
            return self
        self.task = asyncio.create_task(self.ctrl.run(self.stop))
        await poll(self._workers_up, 60, "the controller's workers")
        return self

    async def _workers_up(self) -> bool:
        return self.ctrl.queue is not None

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        if self.task is not None:
            await asyncio.wait_for(self.task, 30)
        else:
            await self.ctrl.close()
        await self.client.close()
        self.cluster.stop()

    async def status_of(self, name: str) -> dict:
        return (await self.client.get(f"{HPA_PATH}/{name}")).get("status") or {}


async def create_and_time_first_status(env: Running, obj: dict) -> float:
    t0 = time.monotonic()
    await env.client.post(HPA_PATH, obj)

    async def written() -> bool:
        return bool((await env.status_of(obj["metadata"]["name"])).get("conditions"))

    await poll(written, 60, "the first status write")
    return time.monotonic() - t0


async def test_137_reconciles_new_and_spec_changed_hpas_at_once(tmp_path):
    async with Running(tmp_path, "1.37", sync_period=120.0) as env:
        took = await create_and_time_first_status(env, hpa())
        assert took < 15.0, f"first status write {took:.1f}s after creation (sync period 120s)"
        stored = await env.client.get(f"{HPA_PATH}/web")
        assert stored["metadata"]["generation"] == 1 and stored["status"]["observedGeneration"] == 1
        # a spec change (generation 2) is reconciled at once: minReplicas 3 > 1 replica scales without metrics
        stored["spec"]["minReplicas"] = 3
        t0 = time.monotonic()
        await env.client.put(f"{HPA_PATH}/web", stored)

        async def scaled() -> bool:
            dep = await env.client.get("/apis/apps/v1/namespaces/default/deployments/web")
            return dep["spec"]["replicas"] == 3

        await poll(scaled, 60, "the rescale after the spec change")
        assert time.monotonic() - t0 < 15.0
        assert (await env.status_of("web"))["observedGeneration"] == 2


async def test_136_waits_one_sync_period_for_a_new_hpa(tmp_path):
    async with Running(tmp_path, "1.36", sync_period=3.0) as env:
        took = await create_and_time_first_status(env, hpa())
        assert took >= 3.0, f"first status write after {took:.2f}s, before the 3s sync period"
        stored = await env.client.get(f"{HPA_PATH}/web")
        assert "generation" not in stored["metadata"] and "observedGeneration" not in stored["status"]
        assert env.ctrl.consistency is None


async def test_spec_changes_skip_the_queue_only_with_hpa_generation(tmp_path):
    async with Running(tmp_path, "1.37", sync_period=120.0) as env:
        ctrl = env.ctrl
        old = {"metadata": {"name": "x", "namespace": "default", "generation": 1}}
        new = {"metadata": {"name": "x", "namespace": "default", "generation": 2}}
        status_only = {"metadata": {"name": "x", "namespace": "default", "generation": 1}, "status": {"x": 1}}
        for cfg, obj, ready in ((ctrl.options.config, new, 1), (ctrl.options.config, status_only, 0),
                                (config_for(gates={"HPAGeneration": False}), new, 0),
                                (config_for("1.36"), new, 0)):
            ctrl.options.config = cfg
            ctrl.queue = WorkQueue()
            ctrl._on_hpa("MODIFIED", obj, old)
            assert len(ctrl.queue) == ready, cfg
            await ctrl.queue.shutdown()


async def test_a_sync_waits_until_the_informer_saw_our_status_write(tmp_path):
    async with Running(tmp_path, "1.37", sync_period=120.0, workers=False) as env:
        ctrl = env.ctrl
        informer_rv = ctrl.consistency.last_synced_rv
        await env.client.post(HPA_PATH, hpa("api"))
        await ctrl.catch_up()
        out = await ctrl.reconcile("default/api")
        assert out is not None and out.status_written
        assert len(ctrl.consistency) == 1  # our write, remembered until a sync finds the informer caught up
        written_rv = (await env.client.get(f"{HPA_PATH}/api"))["metadata"]["resourceVersion"]
        ctrl.consistency.last_synced_rv = lambda: str(int(written_rv) - 1)  # the informer one write behind
        assert (await ctrl.reconcile("default/api")) is None
        assert ctrl.metrics.registry.get_sample_value(
            SKIPS, {"group": "autoscaling", "resource": "horizontalpodautoscalers"}) == 1
        ctrl.consistency.last_synced_rv = informer_rv
        await ctrl.catch_up()
        assert (await ctrl.reconcile("default/api")) is not None  # caught up: syncs, and forgets the write
        assert len(ctrl.consistency) == 0
        assert ctrl.metrics.registry.get_sample_value(
            SKIPS, {"group": "autoscaling", "resource": "horizontalpodautoscalers"}) == 1


async def test_dry_run_writes_no_status_so_never_waits(tmp_path):
    async with Running(tmp_path, "1.37", sync_period=120.0, mode="dry-run", workers=False) as env:
        await env.client.post(HPA_PATH, hpa())
        await env.ctrl.catch_up()
        for _ in range(2):
            assert (await env.ctrl.reconcile("default/web")) is not None
        assert len(env.ctrl.consistency) == 0 and not (await env.status_of("web")).get("conditions")


def test_emulated_cluster_restores_the_strategy_gates_when_stopped(tmp_path):
    before = strategy.hpa_features()
    cluster = run_in_thread(parse_scenario(SCENARIO), tmp_path / "c", emulated_version="1.36",
                            feature_gates={"HPAScaleToZero": True})
    try:
        assert strategy.hpa_features() == APIFeatures("1.36", True, True, False)
    finally:
        cluster.stop()
    assert strategy.hpa_features() == before


# --------------------------------------------------------------------------------------------
# replay


def test_replay_first_decision_at_the_start_with_137():
    load = _flat_load(np.full(40, 2.0), 2)  # 1 core per pod of 0.5 requested: 200 % at a 50 % target
    hpa_doc = hpa_manifest("web", "ns", target=50, max_replicas=20)
    new = replay(load, ReplayOptions(hpa_doc))
    old = replay(load, ReplayOptions(hpa_doc, config_for("1.36")))
    assert new.replicas[0] > 2  # scaled by the decision at t = start
    assert old.replicas[0] == 2 and old.replicas[1] > 2  # first decision one sync period in
    assert new.syncs == old.syncs + 1
