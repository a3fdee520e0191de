"""The decision core's fast paths decide exactly like its general path.

Replay and the live controller call ``decide(explain="none")``, which takes the list-based proposal
for a few pods (and, in the steady state, counts every pod at once); ``explain="full"`` takes the
numpy path that also builds the per-pod rows. Whatever the pods look like — pending, unready,
deleted, missing samples, samples of unknown pods, inside the CPU initialization period — both
must give the same replicas, status, events and controller state.
"""

from __future__ import annotations

import numpy as np
import pytest

from autoscaler.hpa import ControllerConfig, PodMetricsSet, PodSet, Scale, StaticMetrics, compile_hpa, decide
from autoscaler.hpa.inputs import COND_FALSE, COND_TRUE, FAILED, NO_CONDITION, PENDING, RUNNING
from sim.replay.synth import hpa_manifest

NOW = 1_800_000_000.0


def _pods(rng: np.random.Generator, n: int, steady: bool) -> PodSet:
    names = [f"web-{i}" for i in range(n)]
    if steady:
        phase = np.full(n, RUNNING, np.int8)
        ready = np.full(n, COND_TRUE, np.int8)
        deleting = np.zeros(n, bool)
        start = NOW - rng.uniform(0, 3000, n)  # mostly settled, some inside the CPU initialization period (300 s)
    else:
        phase = rng.choice(np.array([RUNNING, RUNNING, RUNNING, PENDING, FAILED], np.int8), n)
        ready = rng.choice(np.array([COND_TRUE, COND_TRUE, COND_FALSE, NO_CONDITION], np.int8), n)
        deleting = rng.random(n) < 0.1
        start = np.where(rng.random(n) < 0.1, np.nan, NOW - rng.uniform(0, 900, n))
    ready_time = np.where(np.isnan(start), NOW - 1000, start + rng.uniform(0, 60, n))
    requests = {"cpu": rng.choice(np.array([250, 500, 1000], np.int64), n), "memory": np.full(n, 2**28 * 1000)}
    return PodSet(names, phase, ready, ready_time, start, deleting, requests)


def _metrics(rng: np.random.Generator, pods: PodSet, steady: bool) -> StaticMetrics:
    names = list(pods.names) if steady else [nm for nm in pods.names if rng.random() > 0.15]
    if not steady and rng.random() < 0.3:
        names.append("not-a-pod-of-this-hpa")
    m = len(names)
    names_arg = pods.names if steady else names  # the replay engine passes its own name list
    cpu = rng.integers(0, 1500, m).astype(np.int64)
    mem = rng.integers(2**27, 2**29, m).astype(np.int64) * 1000
    ts = NOW - rng.uniform(1, 30, m)
    return StaticMetrics(resource=PodMetricsSet(names_arg, cpu, mem, ts, np.full(m, 15.0)))


@pytest.mark.parametrize("steady", [True, False])
@pytest.mark.parametrize("resource,target", [("cpu", {"type": "Utilization", "averageUtilization": 60}),
                                              ("cpu", {"type": "AverageValue", "averageValue": "300m"}),
                                              ("memory", {"type": "Utilization", "averageUtilization": 70})])
def test_few_pod_paths_decide_like_the_general_path(steady: bool, resource: str, target: dict) -> None:
    rng = np.random.default_rng(12 + steady)
    hpa = hpa_manifest("web", min_replicas=1, max_replicas=40)
    hpa["spec"]["metrics"] = [{"type": "Resource", "resource": {"name": resource, "target": target}}]
    h = compile_hpa(hpa)
    cfg = ControllerConfig()
    for case in range(150):
        n = int(rng.integers(1, 12))
        pods = _pods(rng, n, steady)
        metrics = _metrics(rng, pods, steady)
        scale = Scale(n, n, "app=web")
        fast = decide(h, scale, pods, metrics, now=NOW, config=cfg, explain="none")
        full = decide(h, scale, pods, metrics, now=NOW, config=cfg, explain="full")
        where = f"case {case}: {n} pods"
        assert (fast.scale_to, fast.desired_replicas, fast.updated, fast.error) == (
            full.scale_to, full.desired_replicas, full.updated, full.error), where
        assert fast.status == full.status, where
        assert fast.events == full.events, where
        assert fast.state.to_json() == full.state.to_json(), where


def test_decide_never_modifies_the_status_it_is_given() -> None:
    """Conditions are copied on write: the previous status (which replay and the controller keep)
    stays as it was, while the new status carries the changed conditions."""
    h = compile_hpa(hpa_manifest("web", min_replicas=1, max_replicas=10))
    rng = np.random.default_rng(3)
    pods = _pods(rng, 4, True)
    cfg = ControllerConfig()
    first = decide(h, Scale(4, 4, "app=web"), pods, _metrics(rng, pods, True), now=NOW, config=cfg, explain="none")
    import copy

    kept = copy.deepcopy(first.status)
    later = decide(h, Scale(4, 4, "app=web"), pods, StaticMetrics(resource=PodMetricsSet(
        pods.names, np.full(4, 5000, np.int64), np.full(4, 2**28 * 1000), np.full(4, NOW + 10), np.full(4, 15.0))),
        now=NOW + 15, state=first.state, config=cfg, hpa_status=first.status, explain="none")
    assert first.status == kept
    assert later.updated and later.status != first.status
    able = next(c for c in later.status["conditions"] if c["type"] == "AbleToScale")
    assert able["reason"] == "SucceededRescale"


@pytest.mark.parametrize("behavior", [None, {"scaleDown": {"stabilizationWindowSeconds": 120},
                                              "scaleUp": {"stabilizationWindowSeconds": 45}}])
def test_stabilization_history_is_the_same_on_both_paths(behavior: dict | None) -> None:
    """Many syncs in a row: the recommendation history (stabilization windows, the entry that is
    replaced) and every decision come out the same without and with the explanation."""
    rng = np.random.default_rng(5)
    h = compile_hpa(hpa_manifest("web", min_replicas=1, max_replicas=30, behavior=behavior))
    cfg = ControllerConfig(downscale_stabilization=90.0)
    runs = {"none": (None, {}, 4), "full": (None, {}, 4)}
    for k in range(300):
        now = NOW + 15 * k + rng.uniform(0, 2)  # drifting syncs: entries fall out of the windows unevenly
        n = runs["none"][2]
        pods = _pods(rng, n, True)
        cpu = np.full(n, int(rng.integers(50, 900)), np.int64)
        metrics = StaticMetrics(resource=PodMetricsSet(pods.names, cpu, np.full(n, 2**28 * 1000), np.full(n, now - 5),
                                                       np.full(n, 15.0)))
        out = {}
        for level, (state, status, replicas) in runs.items():
            d = decide(h, Scale(replicas, replicas, "app=web"), pods, metrics, now=now, state=state, config=cfg,
                       hpa_status=status, explain=level)
            out[level] = d
            runs[level] = (d.state, d.status, d.scale_to)
        assert out["none"].scale_to == out["full"].scale_to, k
        assert out["none"].status == out["full"].status, k
        assert out["none"].state.to_json() == out["full"].state.to_json(), k
