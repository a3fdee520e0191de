"""Replay load model, engine, scores and sweep parsing on small hand-computable inputs."""

from __future__ import annotations

import numpy as np
import pytest

import sim.replay.sweep as sweep_mod
from autoscaler.hpa import ControllerConfig
from autoscaler.hpa.gates import config_for
from sim.replay.engine import ReplayOptions, Timeline, replay
from sim.replay.load import build_load, dispersion_weights, spread
from sim.replay.scores import scale_event_stats, score
from sim.replay.sweep import (
    SweepError,
    Weights,
    balanced_terms,
    expand,
    objective_value,
    parse_path,
    parse_set,
    rank,
    replay_config,
    run_configs,
    score_run,
    set_path,
    split_values,
)
from sim.replay.synth import hpa_manifest
from sim.replay.trace import ContainerTrace, HPARecord, PodTrace, Trace, WorkloadTrace

START = 1_767_225_600.0


def _pod(name: str, t: np.ndarray, cpu, *, limit: float | None = None, mem=None, **life) -> PodTrace:
    cpu = np.broadcast_to(np.asarray(cpu, float), t.shape).copy()
    mem = np.broadcast_to(np.asarray(100e6 if mem is None else mem, float), t.shape).copy()
    return PodTrace(name, [ContainerTrace("app", t, cpu, mem, 0.5, limit, 1e8, None)], **life)


def _trace(pods: list[PodTrace], end: float, res: float = 15.0, replicas=None) -> tuple[Trace, WorkloadTrace]:
    w = WorkloadTrace("ns", "web", "Deployment", pods)
    if replicas is not None:
        w.replicas_t = np.array([START])
        w.replicas = np.array([replicas])
        w.hpas = [HPARecord(START, hpa_manifest("web", "ns"))]
    return Trace([w], START, START + end, res), w


def test_demand_is_the_sum_of_pod_usage_and_gaps_hold_the_last_sample() -> None:
    t = START + np.arange(0, 61, 15.0)  # 5 steps
    a = _pod("a", t, [0.1, 0.2, 0.3, 0.4, 0.5])
    b = _pod("b", np.delete(t, 2), [1.0, 1.0, 2.0, 2.0])  # misses step 2
    tr, w = _trace([a, b], 60)
    load = build_load(tr, w)
    np.testing.assert_allclose(load.usage, [1.1, 1.2, 1.3, 2.4, 2.5])
    np.testing.assert_allclose(load.demand, load.usage)
    assert load.recorded_pods.tolist() == [2, 2, 2, 2, 2]
    assert any("hold the last sample" in n for n in load.assumptions)


def test_throttled_pods_get_the_unthrottled_mean_as_estimated_demand() -> None:
    t = START + np.arange(0, 31, 15.0)
    a = _pod("a", t, [0.5, 1.0, 1.0], limit=1.0)  # at its limit in steps 1, 2
    b = _pod("b", t, [0.5, 1.6, 1.2], limit=2.0)
    c = _pod("c", t, [0.5, 1.4, 2.0], limit=2.0)  # at its limit in step 2
    tr, w = _trace([a, b, c], 30)
    load = build_load(tr, w)
    np.testing.assert_allclose(load.usage, [1.5, 4.0, 4.2])
    # step 1: a wanted mean(b, c) = 1.5, got 1.0; step 2: a wanted 1.2 (only b unthrottled), c used more than that
    np.testing.assert_allclose(load.throttled_unmet, [0.0, 0.5, 0.2])
    np.testing.assert_allclose(load.demand, [1.5, 4.5, 4.4])
    assert load.throttled_steps == 2 and load.saturated_steps == 0
    plain = build_load(tr, w, estimate_throttled=False)
    np.testing.assert_allclose(plain.demand, plain.usage)


def test_memory_model_is_fitted_and_lifecycle_delays_are_medians() -> None:
    t = START + np.arange(0, 301, 15.0)
    cpu = np.linspace(0.1, 1.0, len(t))
    a = _pod("a", t, cpu, mem=50e6 + 200e6 * cpu, created=START - 50, ready=START - 20)
    late_t = t[t >= START + 120]
    b = _pod("b", late_t, 0.3, mem=50e6 + 200e6 * 0.3, created=START + 90, started=START + 100, ready=START + 120)
    c = _pod("c", late_t, 0.3, mem=50e6 + 200e6 * 0.3, created=START + 80, started=START + 84, ready=START + 110)
    tr, w = _trace([a, b, c], 300)
    load = build_load(tr, w)
    assert load.memory_base == pytest.approx(50e6, rel=1e-6)
    assert load.memory_per_core == pytest.approx(200e6, rel=1e-6)
    assert load.pending_delay == pytest.approx(7.0)  # median(10, 4)
    assert load.ready_delay == pytest.approx(23.0)  # median(20, 26)
    flags = build_load(tr, w, ready_delay=60.0, pending_delay=1.0)
    assert (flags.ready_delay, flags.pending_delay) == (60.0, 1.0)


def _born_pods(profiles: list[tuple[float, float]], k: int = 200) -> tuple[Trace, WorkloadTrace]:
    """Two settled pods, then one pod born per profile (created-to-started, started-to-Ready seconds)."""
    t = START + 15.0 * np.arange(k)
    pods = [_pod(f"old{i}", t, 0.3, created=START - 600, started=START - 590, ready=START - 500) for i in range(2)]
    for i, (pend, rdy) in enumerate(profiles):
        born = START + 60.0 + 30.0 * i
        late = t[t >= born + pend]
        pods.append(_pod(f"new{i}", late, 0.3, created=born, started=born + pend, ready=born + pend + rdy))
    return _trace(pods, 15.0 * (k - 1), replicas=2)


def test_new_pods_take_the_lifecycles_observed_in_the_trace() -> None:
    fast, slow = (2.0, 10.0), (5.0, 115.0)  # Ready 12 s or 120 s after creation
    tr, w = _born_pods([fast, slow] * 3)
    demand_up = np.concatenate([np.full(40, 0.6), np.full(160, 4.0)])
    hpa = hpa_manifest("web", "ns", target=60, max_replicas=20)

    def lifecycles(load) -> set[float]:
        load.demand[:] = demand_up
        tl = replay(load, ReplayOptions(hpa, seed=3))
        new = tl.pod_created > START
        assert new.sum() >= 10
        return set(np.round(tl.pod_ready[new] - tl.pod_created[new], 6).tolist())

    observed = build_load(tr, w)
    assert observed.observed_delays.tolist() == [list(fast), list(slow)] * 3
    assert any("pods born during the trace" in n for n in observed.assumptions)
    assert lifecycles(observed) == {12.0, 120.0}  # both kinds of start-up, as often as drawn
    median = build_load(tr, w, pod_delays="median")
    assert len(median.observed_delays) == 0
    assert lifecycles(median) == {3.5 + 62.5}  # median pending 3.5 s + median ready 62.5 s, for every pod
    flags = build_load(tr, w, ready_delay=20.0)  # a flag fixes the delays for every pod
    assert len(flags.observed_delays) == 0 and lifecycles(flags) == {3.5 + 20.0}
    few_tr, few_w = _born_pods([fast, slow])  # too few to draw from: medians
    assert len(build_load(few_tr, few_w).observed_delays) == 0


def test_a_replay_with_the_recorded_pods_reads_their_recorded_working_set() -> None:
    """A working set jumps at an instant while the CPU rate, averaged over the window before the
    sample, trails it: a memory AverageValue HPA reading the recorded samples (as kcm did) scales at
    that sample; the memory model alone (CPU x per-core slope) would see it one step late."""
    t = START + np.arange(0, 301, 15.0)
    k = 8  # the load changes just before this sample: memory already up, CPU rate only half way
    cpu = np.where(np.arange(len(t)) < k, 0.05, 0.6)
    cpu[k] = 0.3
    mem = 64 * 2**20 + 400 * 2**20 * np.where(np.arange(len(t)) < k, 0.05, 0.6)  # 304 MiB from sample k
    tr, w = _trace([_pod("a", t, cpu, mem=mem, created=START - 60, ready=START - 30)], 300, replicas=1)
    load = build_load(tr, w)
    assert load.sampled_pods.tolist() == [1] * len(t)
    assert load.sampled_memory[k] == pytest.approx(304 * 2**20)
    hpa = hpa_manifest("web", "ns", min_replicas=1, max_replicas=5)
    hpa["spec"]["metrics"] = [{"type": "Resource", "resource": {"name": "memory", "target": {
        "type": "AverageValue", "averageValue": "150Mi"}}}]
    tl = replay(load, ReplayOptions(hpa))
    first = int(np.flatnonzero(tl.replicas > 1)[0])
    assert first == k and tl.replicas[first] == 3  # 304 Mi / 150 Mi = 2.03 -> 3 pods, at the sample itself


def test_spread_is_even_capped_and_weighted() -> None:
    np.testing.assert_allclose(spread(3.0, 3, None, None), [1.0, 1.0, 1.0])
    np.testing.assert_allclose(spread(3.0, 2, None, 1.2), [1.2, 1.2])
    w = dispersion_weights(0.5, np.array([-1.0, 0.0, 1.0]))
    np.testing.assert_allclose(w, [0.5, 1.0, 1.5])
    np.testing.assert_allclose(spread(6.0, 3, w, None), [1.0, 2.0, 3.0])


def _flat_load(demand: np.ndarray, replicas: int):
    k = len(demand)
    t = START + 15.0 * np.arange(k)
    pods = [_pod(f"p{i}", t, demand / replicas, created=START - 600, ready=START - 500) for i in range(replicas)]
    tr, w = _trace(pods, 15.0 * (k - 1), replicas=replicas)
    return build_load(tr, w, ready_delay=30.0, pending_delay=0.0)


def test_engine_scales_up_to_the_hpa_proposal_and_back_down_after_stabilization() -> None:
    demand = np.concatenate([np.full(40, 0.6), np.full(80, 2.4), np.full(80, 0.6)])  # 50 min at 15 s
    load = _flat_load(demand, 2)
    hpa = hpa_manifest("web", "ns", target=60, min_replicas=1, max_replicas=10)
    tl = replay(load, ReplayOptions(hpa))
    # 2 pods at 0.3 cores of 0.5 requested = 60 %: stay. 2.4 cores over 2 pods = 240 % -> ceil(2 x 4) = 8 pods.
    assert tl.replicas[:40].tolist() == [2] * 40
    assert tl.replicas[40:120].max() == 8
    # Scale-down waits for the 5-minute stabilization window: 2.4 -> 0.6 cores needs 2 pods again.
    down = np.flatnonzero(tl.replicas[120:] < 8)
    assert len(down) and down[0] * 15 >= 300
    assert tl.replicas[-1] == 2
    # The legacy scale-up limit (max(2 x current, 4)) makes the first step 2 -> 4; new pods become
    # ready 30 s (two steps) after creation.
    up_step = int(np.flatnonzero(tl.replicas > 2)[0])
    assert tl.replicas[up_step] == 4
    assert tl.ready[up_step] == 2 and tl.ready[up_step + 1] == 2 and tl.ready[up_step + 2] == 4
    assert tl.sync_errors == 0


def test_engine_is_deterministic_for_a_seed_and_uses_dispersion() -> None:
    rng = np.random.default_rng(0)
    demand = 1.5 + rng.random(240) * 2
    load = _flat_load(demand, 3)
    load.dispersion[:] = 0.4
    hpa = hpa_manifest("web", "ns", target=60, max_replicas=12)
    # 1.36: the first sync one period in, while the three settled pods carry the load (with 1.37's
    # sync at the start both spreads reach the same replica counts on this load)
    cfg = config_for("1.36")
    a = replay(load, ReplayOptions(hpa, cfg, dispersion="recorded", seed=5))
    b = replay(load, ReplayOptions(hpa, cfg, dispersion="recorded", seed=5))
    assert a.replicas.tolist() == b.replicas.tolist() and a.ready.tolist() == b.ready.tolist()
    even = replay(load, ReplayOptions(hpa, cfg))
    assert even.replicas.tolist() != a.replicas.tolist() or even.ready.tolist() != a.ready.tolist()


def test_controller_options_change_the_outcome() -> None:
    demand = np.concatenate([np.full(20, 0.6), np.full(60, 0.66)])  # +10 %: inside the default tolerance
    load = _flat_load(demand, 2)
    hpa = hpa_manifest("web", "ns", target=60, max_replicas=10)
    assert replay(load, ReplayOptions(hpa)).replicas.max() == 2
    assert replay(load, ReplayOptions(hpa, ControllerConfig(tolerance=0.05))).replicas.max() == 3


def test_scores_on_a_hand_computable_timeline() -> None:
    times = START + 60.0 * np.arange(6)
    demand = np.array([1.0, 1.0, 3.0, 3.0, 1.0, 1.0])
    tl = Timeline(times, np.array([2, 2, 2, 6, 6, 2]), np.array([2, 2, 2, 6, 6, 2]), np.array([2, 2, 2, 2, 6, 2]))
    s = score(tl, demand, 60.0, 0.5, 0.5, 2, 6)
    assert s["pod_hours"] == pytest.approx(20 * 60 / 3600)
    assert s["core_hours"] == pytest.approx(10 * 60 / 3600)
    # capacity = ready x 0.5 = [1, 1, 1, 1, 3, 1]; demand > capacity at steps 2, 3 by 2 cores each
    assert s["under_provisioned_seconds"] == 120.0
    assert s["unmet_core_seconds"] == pytest.approx(4 * 60)
    # above 50 % of capacity everywhere except step 4 (1 core of 3)
    assert s["above_target_seconds"] == 300.0
    # over: capacity - demand/0.5 -> only step 4: 3 - 2 = 1 core for 60 s
    assert s["over_provisioned_core_hours"] == pytest.approx(60 / 3600)
    assert (s["scale_events"], s["reversals"]) == (2, 1)
    assert s["pinned_max_seconds"] == 120.0 and s["pinned_min_seconds"] == 240.0
    # demand step at 2 (needed 2 -> 6): reached when ready >= ceil(3 / (1.1 x 0.25)) = 6 -> at step 4
    assert s["demand_steps"] == 1 and s["time_to_capacity_mean_seconds"] == 120.0


def test_scale_event_stats_counts_reversals() -> None:
    assert scale_event_stats(np.array([1, 1, 2, 3, 3, 2, 4, 4])) == (4, 2)
    assert scale_event_stats(np.array([3, 3, 3])) == (0, 0)


def test_sweep_paths_values_and_products() -> None:
    assert parse_path("spec.metrics[0].resource.target.averageUtilization") == [
        "spec", "metrics", 0, "resource", "target", "averageUtilization"]
    assert parse_path("a[1][2].b") == ["a", 1, 2, "b"]
    with pytest.raises(SweepError, match="bad path segment"):
        parse_path("spec..x")
    assert split_values('1,[{"type":"Pods","value":4}],x') == ["1", '[{"type":"Pods","value":4}]', "x"]
    _path, values = parse_set("spec.behavior.scaleUp.policies=[{type: Pods, value: 4, periodSeconds: 60}],"
                             "[{type: Percent, value: 100, periodSeconds: 15}]")
    assert values[1] == [{"type": "Percent", "value": 100, "periodSeconds": 15}]
    assert parse_set("controller.tolerance=0.05,0.1") == ("controller.tolerance", [0.05, 0.1])
    with pytest.raises(SweepError, match="unknown controller option"):
        parse_set("controller.speed=1")
    with pytest.raises(SweepError, match="want FIELD=VALUE"):
        parse_set("spec.maxReplicas")

    doc = hpa_manifest("web")
    set_path(doc, "spec.behavior.scaleDown.stabilizationWindowSeconds", 0)
    assert doc["spec"]["behavior"] == {"scaleDown": {"stabilizationWindowSeconds": 0}}
    set_path(doc, "spec.metrics[1].type", "Resource")
    assert doc["spec"]["metrics"][1] == {"type": "Resource"}
    with pytest.raises(SweepError, match=r"spec.metrics\[5\] is out of range \(the list has 2 items\)"):
        set_path(doc, "spec.metrics[5].type", "Pods")

    base = hpa_manifest("web", target=60)
    configs = expand(base, ControllerConfig(), 15.0, [
        parse_set("spec.metrics[0].resource.target.averageUtilization=50,70"),
        parse_set("spec.maxReplicas=0,5"), parse_set("controller.syncPeriod=30s")])
    assert len(configs) == 4
    assert [c.hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] for c in configs] == [50, 50, 70, 70]
    assert configs[0].error and "spec.maxReplicas" in configs[0].error and configs[1].error is None
    assert configs[1].sync_period == 30.0
    assert base["spec"]["maxReplicas"] == 10  # the base manifest is untouched


def test_ranking_by_objective() -> None:
    good = {"core_hours": 10.0, "unmet_core_seconds": 0.0, "under_provisioned_seconds": 0.0, "reversals": 3,
            "scale_events": 9}
    cheap = {"core_hours": 6.0, "unmet_core_seconds": 3600.0, "under_provisioned_seconds": 1800.0, "reversals": 0,
             "scale_events": 2}
    w = Weights(mean_demand=2.0, pod_cores=0.5)
    # good: 10 + churn (5 x 3 + 1 x 9) x 0.5 / 60 = 10.2
    assert objective_value(good, "balanced", w) == pytest.approx(10.2)
    # cheap: 6 + 10 x 1 unmet core-hour + 10 x 2 cores x 0.5 h + (0 + 2) x 0.5 / 60
    assert objective_value(cheap, "balanced", w) == pytest.approx(6 + 10 + 10 + 1 / 60)
    configs = expand(hpa_manifest("web"), ControllerConfig(), 15.0, [parse_set("spec.maxReplicas=5,6")])
    configs[0].scores, configs[1].scores = good, cheap
    assert [c.index for c in rank(configs, "balanced", w)] == [0, 1]
    assert [c.index for c in rank(configs, "cost", w)] == [1, 0]
    assert [c.index for c in rank(configs, "flapping", w)] == [1, 0]
    with pytest.raises(SweepError, match="unknown objective"):
        objective_value(good, "beauty", w)


def test_balanced_prefers_a_stable_configuration_to_a_slightly_cheaper_flapping_one() -> None:
    # 10 minutes at 1-minute steps, 1.4 cores of demand, 0.5 cores requested per pod.
    times = START + 60.0 * np.arange(10)
    demand = np.full(10, 1.4)
    stable = np.full(10, 4)
    flapping = np.array([4, 3] * 5)  # 3 pods (1.5 cores) still cover the demand: only churn differs
    s_stable = score(Timeline(times, stable, stable, stable), demand, 60.0, 0.5, None, 1, 10)
    s_flap = score(Timeline(times, flapping, flapping, flapping), demand, 60.0, 0.5, None, 1, 10)
    # cost: 40 vs 35 pod-minutes of 0.5 cores
    assert s_stable["core_hours"] == pytest.approx(40 * 0.5 / 60)
    assert s_flap["core_hours"] == pytest.approx(35 * 0.5 / 60)
    assert s_flap["under_provisioned_seconds"] == 0 and s_flap["unmet_core_seconds"] == 0
    assert (s_flap["scale_events"], s_flap["reversals"]) == (9, 8)
    w = Weights(mean_demand=1.4, pod_cores=0.5)  # the defaults: 5 pod-minutes a reversal, 1 a scale event
    terms = balanced_terms(s_flap, w)
    assert terms["churn"] == pytest.approx((5 * 8 + 1 * 9) * 0.5 / 60)
    assert terms["unmet"] == 0 and terms["underProvisioned"] == 0
    assert objective_value(s_stable, "balanced", w) == pytest.approx(20 / 60)
    assert objective_value(s_flap, "balanced", w) == pytest.approx(17.5 / 60 + 24.5 / 60)
    configs = expand(hpa_manifest("web"), ControllerConfig(), 15.0, [parse_set("spec.maxReplicas=5,6")])
    configs[0].scores, configs[1].scores = s_flap, s_stable
    assert [c.index for c in rank(configs, "balanced", w)] == [1, 0]
    # Cost alone (churn priced at zero) picks the flapping one.
    free_churn = Weights(reversal=0.0, scale_event=0.0, mean_demand=1.4, pod_cores=0.5)
    assert [c.index for c in rank(configs, "balanced", free_churn)] == [0, 1]
    assert [c.index for c in rank(configs, "cost", w)] == [0, 1]


def test_balanced_prices_under_provisioned_time_in_hours_of_mean_demand() -> None:
    times = START + 60.0 * np.arange(4)
    demand = np.array([1.0, 2.0, 2.0, 1.0])
    ready = np.array([2, 2, 4, 4])  # 1 core short at step 1 only
    s = score(Timeline(times, ready, ready, ready), demand, 60.0, 0.5, None, 1, 10)
    assert s["under_provisioned_seconds"] == 60.0 and s["unmet_core_seconds"] == pytest.approx(60.0)
    load_scale = Weights.for_load(_flat_load(np.full(8, 1.5), 3), unmet=4.0, under_provisioned=2.0)
    assert load_scale.mean_demand == pytest.approx(1.5) and load_scale.pod_cores == 0.5
    terms = balanced_terms(s, load_scale)
    assert terms["unmet"] == pytest.approx(4.0 / 60)  # 1 unmet core-minute x 4
    assert terms["underProvisioned"] == pytest.approx(2.0 * 1.5 / 60)  # 1 minute x 2 x mean demand
    with pytest.raises(SweepError, match="under-provisioned penalty must be a number >= 0"):
        Weights.for_load(_flat_load(np.full(8, 1.5), 3), under_provisioned=-1.0)


@pytest.mark.parametrize("dispersion", ["even", "recorded"])
def test_parallel_sweep_matches_single_replays_and_replays_twins_once(monkeypatch: pytest.MonkeyPatch,
                                                                      dispersion: str) -> None:
    rng = np.random.default_rng(3)
    demand = 1.0 + 2.5 * (np.arange(480) % 120 > 60) + 0.3 * rng.random(480)
    load = _flat_load(demand, 2)
    load.dispersion[:] = 0.3
    base = hpa_manifest("web", "ns", target=60, max_replicas=12)
    sets = [parse_set("spec.metrics[0].resource.target.averageUtilization=50,80"),
            parse_set("spec.behavior.scaleDown.stabilizationWindowSeconds=0,300,300")]
    configs = expand(base, ControllerConfig(), 15.0, sets)
    done: list[int] = []
    run_configs(load, configs, dispersion=dispersion, seed=4, jobs=2, on_done=lambda: done.append(1),
                keep=lambda c: c.index == 0)
    assert len(done) == len(configs) == 6
    assert configs[0].timeline is not None and all(c.timeline is None for c in configs[1:])
    for c in configs:
        tl = replay_config(load, c, dispersion=dispersion, seed=4)
        assert c.scores == score_run(load, tl, c.hpa), c.label
    # The repeated window value is the same configuration: same scores, replayed once.
    assert configs[1].scores == configs[2].scores and configs[4].scores == configs[5].scores
    assert configs[0].scores["scale_events"] > configs[1].scores["scale_events"]
    single = expand(base, ControllerConfig(), 15.0, sets)
    calls: list[int] = []
    real = sweep_mod.replay
    monkeypatch.setattr(sweep_mod, "replay", lambda *a, **k: calls.append(1) or real(*a, **k))
    run_configs(load, single, dispersion=dispersion, seed=4, jobs=1)
    assert len(calls) == 4
    assert [c.scores for c in single] == [c.scores for c in configs]
