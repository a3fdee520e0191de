"""Load model arithmetic: demand curves, spreading over ready pods, limits, noise, CPU counters."""

from __future__ import annotations

import numpy as np
import pytest

from sim.kubelet.stats import ContainerRow, NodeStats
from sim.loadmodel import (
    Constant,
    Diurnal,
    Series,
    Spike,
    Step,
    WorkloadLoad,
    cap,
    container_fractions,
    noise_factors,
    per_pod_share,
)

T0 = 1_700_000_000.0


def test_demand_curves_have_the_documented_shape():
    t = np.array([0.0, 59.9, 60.0, 119.9, 120.0])
    assert Constant(cores=2.0).demand(t).tolist() == [2.0] * 5
    assert Step(base=0.5, steps=((60, 3.0), (120, 1.0))).demand(t).tolist() == [0.5, 0.5, 3.0, 3.0, 1.0]
    assert Spike(base=0.1, peak=2.0, at=60, duration=60).demand(t).tolist() == [0.1, 0.1, 2.0, 2.0, 0.1]
    rep = Spike(base=0.0, peak=1.0, at=10, duration=5, every=100).demand(np.array([9, 10, 14, 15, 110, 114, 116]))
    assert rep.tolist() == [0, 1, 1, 0, 1, 1, 0]
    d = Diurnal(min=1.0, max=3.0, period=3600, peak=900)
    assert d.demand(900.0) == pytest.approx(3.0)
    assert d.demand(900.0 + 1800) == pytest.approx(1.0)
    assert d.demand(900.0 + 3600) == pytest.approx(3.0)


def test_recorded_series_interpolates_holds_and_repeats():
    s = Series(times=[0, 10, 20], values=[1.0, 3.0, 2.0])
    assert s.demand(np.array([-5, 0, 5, 10, 15, 30])).tolist() == [1.0, 1.0, 2.0, 3.0, 2.5, 2.0]
    stepped = Series(times=[0, 10, 20], values=[1.0, 3.0, 2.0], interpolation="step")
    assert stepped.demand(np.array([5, 15, 25])).tolist() == [1.0, 3.0, 2.0]
    looped = Series(times=[0, 10, 20], values=[1.0, 3.0, 2.0], repeat=True)
    assert looped.demand(np.array([25.0])).tolist() == s.demand(np.array([5.0])).tolist()
    with pytest.raises(ValueError):
        Series(times=[0, 10], values=[1.0])


def test_demand_is_spread_over_ready_pods_and_capped_at_limits():
    assert per_pod_share(np.array([3.0, 3.0, 3.0]), np.array([3, 2, 0])).tolist() == [1.0, 1.5, 0.0]
    assert container_fractions([0.2, 0.05]).tolist() == pytest.approx([0.8, 0.2])
    assert container_fractions([0, 0]).tolist() == [0.5, 0.5]
    rates = np.array([[0.5, 2.0], [0.5, 2.0]])
    assert cap(rates, np.array([1.0, 0.0])).tolist() == [[0.5, 1.0], [0.5, 2.0]]


def test_seeded_noise_is_deterministic_and_centered():
    keys = np.arange(1, 201, dtype=np.uint64)
    buckets = np.arange(50)
    a = noise_factors(42, keys, buckets, 0.2)
    assert np.array_equal(a, noise_factors(42, keys, buckets, 0.2))
    assert not np.array_equal(a, noise_factors(43, keys, buckets, 0.2))
    assert a.shape == (200, 50)
    assert (a >= 0).all()
    assert abs(a.mean() - 1.0) < 0.02
    assert 0.15 < a.std() < 0.25
    assert (noise_factors(42, keys, buckets, 0.0) == 1.0).all()


def _row(pod: str, load: WorkloadLoad | None, *, limit: float = 0.0, ready: float = T0) -> ContainerRow:
    r = ContainerRow("default", pod, f"uid-{pod}", "app", T0, T0, workload=load, cpu_limit=limit)
    r.ready_since = ready
    return r


def test_cpu_counters_integrate_the_share_of_ready_pods():
    load = WorkloadLoad("default", "web", Constant(cores=3.0, startup_cores=0.0), T0)
    stats = NodeStats("n1", T0, system_cores=0.0)
    for i in range(3):
        stats.add(_row(f"web-{i}", load), T0)
        load.ready_changed(T0, +1)
    snap = stats.snapshot(T0 + 100)
    assert snap.cpu.tolist() == pytest.approx([100.0, 100.0, 100.0])
    assert snap.node_cpu == pytest.approx(300.0)
    # one pod stops being ready at T0+100: the other two carry 1.5 cores each from then on
    stats.rows[2].ready_until = T0 + 100
    stats.changed()
    load.ready_changed(T0 + 100, -1)
    snap = stats.snapshot(T0 + 200)
    assert snap.cpu[:2].tolist() == pytest.approx([250.0, 250.0])
    assert snap.cpu[2] == pytest.approx(100.0)
    assert snap.rates.tolist() == pytest.approx([1.5, 1.5, 0.0])


def test_lazy_integration_matches_the_piecewise_demand_and_limits():
    load = WorkloadLoad("default", "api", Step(base=1.0, steps=((50, 4.0),), startup_cores=0.0, origin=T0), T0)
    stats = NodeStats("n1", T0, system_cores=0.0)
    stats.add(_row("api-0", load, limit=1.5), T0)
    stats.add(_row("api-1", load), T0)
    load.ready_changed(T0, +2)
    # 0-50 s: 0.5 core each; 50-100 s: 2 cores wanted each, the first capped at 1.5
    snap = stats.snapshot(T0 + 100)
    assert snap.cpu.tolist() == pytest.approx([25 + 75, 25 + 100], rel=1e-6)
    # reading at an earlier stat time than the last advance rewinds consistently
    earlier = stats.snapshot(T0 + 75)
    assert earlier.cpu.tolist() == pytest.approx([25 + 37.5, 25 + 50], rel=1e-6)


def test_not_ready_containers_use_startup_cores_and_memory_follows_usage():
    load = WorkloadLoad("default", "w", Constant(cores=1.0, startup_cores=0.2, memory_base=100 * 2**20,
                                                memory_per_core=200 * 2**20), T0)
    stats = NodeStats("n1", T0, system_cores=0.0)
    stats.add(_row("w-0", load, ready=T0 + 10), T0)
    load.ready_changed(T0 + 10, +1)
    snap = stats.snapshot(T0 + 20)
    assert snap.cpu[0] == pytest.approx(0.2 * 10 + 1.0 * 10)
    assert snap.memory[0] == (100 + 200) * 2**20


def test_set_model_changes_demand_from_that_moment():
    load = WorkloadLoad("default", "w", Constant(cores=1.0, startup_cores=0.0), T0)
    stats = NodeStats("n1", T0, system_cores=0.0)
    stats.add(_row("w-0", load), T0)
    load.ready_changed(T0, +1)
    load.set_model(Constant(cores=3.0), T0 + 60)
    assert stats.snapshot(T0 + 120).cpu[0] == pytest.approx(60 + 180)
