"""The controller's own pieces: flags (upstream names, defaults, errors), the work queue's
client-go guarantees, and the pod/selector indexes behind the per-HPA lookups."""

from __future__ import annotations

import argparse
import asyncio
import re

import pytest

from autoscaler.controller.options import add_arguments, options_from_args
from autoscaler.controller.podindex import PodIndex, SelectorRegistry
from autoscaler.controller.workqueue import WorkQueue
from autoscaler.k8s.selectors import parse_label_selector


def parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(exit_on_error=False)
    add_arguments(p)
    return p.parse_args(list(argv))


def test_flags_have_upstream_defaults_and_reject_bad_values():
    o = options_from_args(parse())
    assert (o.mode, o.sync_period, o.workers, o.leader_elect) == ("dry-run", 15.0, 5, True)
    c = o.config
    assert (c.tolerance, c.cpu_initialization_period, c.initial_readiness_delay, c.downscale_stabilization) == \
        (0.1, 300.0, 30.0, 300.0)
    # Kubernetes 1.37 gate defaults
    assert (c.version, c.scale_to_zero, c.configurable_tolerance, c.observed_generation) == ("1.37", True, True, True)
    o = options_from_args(parse("--controller-mode=active", "--horizontal-pod-autoscaler-sync-period=1m0s",
                                "--emulated-version=1.36",
                                "--feature-gates=HPAScaleToZero=true,HPAConfigurableTolerance=false",
                                "--leader-elect=false"))
    assert (o.mode, o.sync_period, o.leader_elect, o.config.scale_to_zero, o.config.configurable_tolerance) == \
        ("active", 60.0, False, True, False)
    with pytest.raises(argparse.ArgumentError, match="unrecognized feature gate: Nope"):
        parse("--feature-gates=Nope=true")
    assert not options_from_args(parse("--feature-gates=HPAGeneration=false")).config.observed_generation
    with pytest.raises(argparse.ArgumentError, match="invalid value of HPAGeneration=yes, err: invalid boolean"):
        parse("--feature-gates=HPAGeneration=yes")
    with pytest.raises(ValueError, match="renew-deadline must be less than"):
        options_from_args(parse("--leader-elect-renew-deadline=20s"))


async def test_queue_dedupes_and_never_hands_out_a_key_twice_at_once():
    q = WorkQueue()
    q.add("a")
    q.add("a")
    q.add("b")
    assert len(q) == 2
    key = await q.get()
    q.add(key)  # re-added while processing: held back until done
    other = await q.get()
    assert other != key and len(q) == 0
    q.done(key)
    assert await q.get() == key
    q.done(key)
    q.done(other)
    q.add_after("c", 0.05)
    q.add_after("c", 10)  # the earlier pending time wins
    assert await asyncio.wait_for(q.get(), 5) == "c"
    await q.shutdown()


def pod(name: str, **labels: str) -> dict:
    return {"metadata": {"name": name, "namespace": "ns", "labels": labels}}


def test_pod_index_and_selector_registry_find_the_same_pods_as_a_scan():
    idx = PodIndex()
    pods = [pod(f"p{i}", app=f"a{i % 3}", tier="web" if i % 2 else "db") for i in range(12)]
    for p in pods:
        idx.upsert(p)
    idx.delete(pods[0])
    idx.upsert(pod("p1", app="a9"))  # relabelled
    for text in ("app=a1", "app in (a1,a2),tier=web", "tier!=web", "app", ""):
        sel = parse_label_selector(text)
        live = [p for p in pods[1:] if p["metadata"]["name"] != "p1"] + [pod("p1", app="a9")]
        want = sorted(p["metadata"]["name"] for p in live if sel.matches(p["metadata"]["labels"]))
        assert [p["metadata"]["name"] for p in idx.select("ns", sel)] == want, text
    reg = SelectorRegistry()
    reg.put("ns", "ns/one", parse_label_selector("app=a1"))
    reg.put("ns", "ns/two", parse_label_selector("tier=web"))
    reg.put("ns", "ns/all", parse_label_selector("tier"))
    reg.put("other", "other/x", parse_label_selector("app=a1"))
    assert set(reg.selecting("ns", [{"app": "a1", "tier": "db"}], exclude="ns/one")) == {"ns/all"}
    reg.remove("ns", "ns/all")
    assert set(reg.selecting("ns", [{"app": "a1", "tier": "web"}], exclude="ns/one")) == {"ns/two"}


def full_pod(name: str, *, cpu: str | None = "250m", phase: str = "Running", ready: str = "True",
             started: str = "2026-01-02T03:04:05Z", sidecar: bool = False) -> dict:
    containers = [{"name": "app", "resources": {"requests": {"cpu": cpu, "memory": "64Mi"} if cpu else {}}}]
    init = [{"name": "proxy", "restartPolicy": "Always", "resources": {"requests": {"cpu": "50m"}}}] if sidecar else []
    return {"metadata": {"name": name, "namespace": "ns", "labels": {"app": "web"}},
            "spec": {"containers": containers, "initContainers": init},
            "status": {"phase": phase, "startTime": started,
                       "conditions": [{"type": "Ready", "status": ready, "lastTransitionTime": started}]}}


def _same_pod_sets(a, b) -> None:
    import numpy as np

    assert a.names == b.names and list(a.labels) == list(b.labels)
    for col in ("phase", "ready", "ready_time", "start_time", "deleting"):
        np.testing.assert_array_equal(getattr(a, col), getattr(b, col), err_msg=col)
    assert a.requests.keys() == b.requests.keys() and a.request_errors == b.request_errors
    for r in a.requests:
        np.testing.assert_array_equal(a.requests[r], b.requests[r])
    assert a.container_requests.keys() == b.container_requests.keys()
    for c, cols in a.container_requests.items():
        for r, v in cols.items():
            np.testing.assert_array_equal(v, b.container_requests[c][r])


def test_pod_index_pod_sets_match_reading_the_pods_and_follow_changes():
    """The controller reads each pod's row once; the PodSet it assembles must be what reading the
    pod objects gives (pods_from_v1), also after a pod changes (its row is read again)."""
    from autoscaler.hpa import pods_from_v1
    from autoscaler.hpa.inputs import InputError

    idx = PodIndex()
    pods = [full_pod("a"), full_pod("b", cpu=None), full_pod("c", phase="Pending", ready="False"),
            full_pod("d", sidecar=True)]
    for p in pods:
        idx.upsert(p)
    sel = parse_label_selector("app=web")
    got_pods, got = idx.select_set("ns", sel)
    assert got_pods == pods
    _same_pod_sets(got, pods_from_v1(pods))
    assert got.request_errors["cpu"] == {1: "missing request for cpu in container app of Pod b"}
    pods[0] = full_pod("a", cpu="1", started="2026-01-02T03:05:00Z")  # the informer hands over a new object
    idx.upsert(pods[0])
    idx.delete(pods[2])
    del pods[2]
    _same_pod_sets(idx.select_set("ns", sel)[1], pods_from_v1(pods))
    idx.upsert(full_pod("e", cpu="lots"))
    with pytest.raises(InputError, match=re.escape("Pod e: spec.containers[app].resources.requests.cpu: invalid quantity")):
        idx.select_set("ns", sel)


async def test_liveness_reports_a_dead_or_stuck_controller():
    from autoscaler.controller.controller import STUCK_AFTER, HPAController
    from autoscaler.controller.options import ControllerOptions
    from autoscaler.k8s.kubeconfig import KubeConfig

    now = [1000.0]
    ctl = HPAController(KubeConfig(host="https://127.0.0.1:1"), ControllerOptions(leader_elect=False, sync_period=15.0),
                        monotonic=lambda: now[0])
    assert ctl.liveness() is None  # not leading yet
    ctl.hpas._cache["default/web"] = {"metadata": {"name": "web", "namespace": "default"}}
    ctl.last_progress = now[0]
    now[0] += STUCK_AFTER - 1
    assert ctl.liveness() is None
    now[0] += 2  # a minute without one finished sync, three sync periods being shorter
    assert ctl.liveness() == f"no HPA sync finished for {STUCK_AFTER + 1:.0f}s (sync period 15s)"

    async def explode(timeout=None):
        raise RuntimeError("informer exploded")

    ctl.start = explode  # type: ignore[method-assign]
    with pytest.raises(RuntimeError):
        await ctl.run(asyncio.Event())
    assert ctl.liveness() == "the HPA controller stopped: RuntimeError: informer exploded"


def test_metric_children_come_back_after_an_hpa_is_forgotten():
    """The controller caches labelled children; forgetting an HPA must drop its cached children
    with its series, or an HPA re-created under the same name would write to detached ones."""
    from prometheus_client import generate_latest

    from autoscaler.controller.prommetrics import ControllerMetrics

    m = ControllerMetrics()
    m.child(m.desired_replicas, "default", "web").set(3)
    assert m.child(m.desired_replicas, "default", "web") is m.desired_replicas.labels("default", "web")
    sample = 'horizontal_pod_autoscaler_controller_desired_replicas{hpa_name="web",namespace="default"}'
    assert f"{sample} 3.0" in generate_latest(m.registry).decode()
    m.forget("default", "web")
    assert sample not in generate_latest(m.registry).decode()
    m.child(m.desired_replicas, "default", "web").set(5)
    assert f"{sample} 5.0" in generate_latest(m.registry).decode()
