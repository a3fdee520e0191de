"""The replay's start and its metric timing, as the recorded controller saw them: pods present at
the trace's start keep their recorded start and Ready times (the CPU initialization period applies
to them), each step's samples reach the HPA with their own timestamps, and the memory model is not
pulled off by samples taken while the load changed."""

from __future__ import annotations

import numpy as np
import pytest

from sim.replay.engine import ReplayOptions, replay
from sim.replay.load import build_load
from sim.replay.synth import hpa_manifest
from sim.replay.trace import ContainerTrace, HPARecord, PodTrace, Trace, WorkloadTrace

START = 1_767_225_600.0
RES = 10.0


def _trace(cpu: np.ndarray, *, offset: float = 1.0, ready: float | None = 18.0, mem=None) -> tuple[Trace, WorkloadTrace]:
    """One pod (0.5 cores requested) of workload ns/web, sampled every 10 s at ``offset`` past the grid."""
    t = START + offset + RES * np.arange(len(cpu))
    memory = np.full(len(t), 100e6) if mem is None else np.asarray(mem, float)
    pod = PodTrace("web-0", [ContainerTrace("app", t, np.asarray(cpu, float), memory, 0.5, None, 1e8, None)],
                   created=START - 3, started=START - 3, ready=None if ready is None else START + ready)
    w = WorkloadTrace("ns", "web", "Deployment", [pod], np.array([START]), np.array([1]),
                      [HPARecord(START, hpa_manifest("web", "ns", target=50, max_replicas=8))])
    return Trace([w], START, float(t[-1]), RES), w


#: the pod burns 0.3 cores (60 % of its request) while it starts, then 0.1 (20 %) once Ready at +18 s
STARTING = np.array([0.3, 0.3, 0.3, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])


def test_a_pod_ready_just_before_the_trace_is_inside_the_cpu_initialization_period() -> None:
    tr, w = _trace(STARTING)
    load = build_load(tr, w)
    assert load.initial_pods.tolist() == [[START - 3, START - 3, START + 18]]
    assert any("present at the start keep their recorded start and Ready times" in n for n in load.assumptions)
    tl = replay(load, ReplayOptions(w.hpas[0].manifest, sync_period=5.0))
    # kcm ignores the start-up CPU: unready, then a window (ending 21 s) that began before Ready + 10 s
    assert tl.replicas.tolist() == [1] * len(tl.replicas)


def test_without_a_recorded_ready_time_the_pods_are_taken_as_long_ready() -> None:
    """CSV traces and older recordings: as before, the start-up CPU counts and the HPA scales up."""
    tr, w = _trace(STARTING, ready=None)
    load = build_load(tr, w)
    assert load.initial_pods.shape == (0, 3)
    tl = replay(load, ReplayOptions(w.hpas[0].manifest, sync_period=5.0))
    assert tl.replicas.max() == 2  # 60 % of the request against a 50 % target: ceil(1 x 1.2)


@pytest.mark.parametrize(("offset", "age"), [(0.0, 0.0), (1.0, 9.0), (2.0, 8.0), (9.5, 0.5)])
def test_the_samples_reach_the_hpa_with_their_own_age(offset: float, age: float) -> None:
    """A step holds the samples taken since the previous step; their timestamp is the step's time
    minus this age (0 for samples on the grid, as in generated traces)."""
    tr, w = _trace(np.full(10, 0.1), offset=offset)
    assert build_load(tr, w).sample_age == pytest.approx(age)


def test_memory_samples_taken_while_the_load_changed_do_not_bend_the_fit() -> None:
    cpu = np.array([0.05, 0.05, 0.05, 0.1, 0.6, 0.6, 0.6, 0.6, 0.3, 0.05, 0.05, 0.05])
    mib = 2**20
    mem = (64 + 400 * cpu) * mib
    # the working set is read at an instant, CPU over the window before it: at a change they disagree
    mem[3] = (64 + 400 * 0.6) * mib
    mem[8] = (64 + 400 * 0.05) * mib
    tr, w = _trace(cpu, ready=-60.0, mem=mem)
    load = build_load(tr, w)
    assert load.memory_base == pytest.approx(64 * mib, rel=1e-6)
    assert load.memory_per_core == pytest.approx(400 * mib, rel=1e-6)
    assert any("2 samples off the line" in n for n in load.assumptions)


def test_new_pods_get_their_first_sample_after_the_observed_delay() -> None:
    """A pod has metrics from its first sample at least the shortest observed start-to-first-sample
    time after it starts (8 s here; the rest of a gap is the wait for the kubelet's next sample),
    not a fixed 10 s, compared with the samples' own time."""
    tr, w = _trace(np.full(10, 0.1))
    t = START + 41.0 + RES * np.arange(5)
    late = PodTrace("web-1", [ContainerTrace("app", t, np.full(5, 0.1), np.full(5, 1e8), 0.5, None, 1e8, None)],
                    created=START + 32, started=START + 33, ready=START + 35)
    w.pods.append(late)
    load = build_load(tr, w)
    assert load.first_sample_delay == pytest.approx(8.0)
    assert any("first sample at least 8s after it starts" in n for n in load.assumptions)


def test_the_replay_keeps_the_recorded_controllers_sync_drift() -> None:
    """kcm queues the next sync a period after the last one finished: its syncs drift (5.036 s apart
    on the real-HPA tier). The replica changes give that period and the phase; under another sync
    period the median phase is kept."""
    from sim.replay.engine import recorded_sync

    changes = 2.7 + 5.04 * np.array([10, 12, 21, 23, 25, 30])
    period, phase = recorded_sync(changes, 5.0)
    assert period == pytest.approx(5.04) and phase == pytest.approx(2.7)
    assert recorded_sync(changes, 15.0)[0] == 15.0
    assert recorded_sync(np.array([3.2]), 5.0) == (5.0, pytest.approx(3.2))
