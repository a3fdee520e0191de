"""The replay engine: a virtual clock driving the real HPA decision core over a recorded load.

Every ``sync_period`` virtual seconds the engine builds what the live controller would see — the
target's Scale, the pods (phase, Ready condition and its transition time, start time) and their
PodMetrics at the latest metric step — and calls :func:`autoscaler.hpa.decide`, the very function
the live controller calls. Nothing about readiness, missing metrics, tolerance, stabilization or
policies is decided here. The engine only plays the cluster: it creates pods when the HPA scales
up (Pending for ``pending_delay``, then Running, Ready ``ready_delay`` later) and deletes pods on
scale-down in the ReplicaSet controller's order. Pod state lives in small numpy arrays that change
only on scale events; the per-step timeline and the scores are computed afterwards in numpy.
Runs are deterministic: the only randomness (per-pod dispersion) comes from ``seed``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autoscaler.hpa import ControllerConfig, PodMetricsSet, PodSet, Scale, StaticMetrics, compile_hpa, decide
from autoscaler.hpa.inputs import COND_FALSE, COND_TRUE, PENDING, RUNNING
from sim.replay.load import WorkloadLoad, dispersion_weights, spread

SELECTOR = "replay.autoscaler.dev/workload=target"
#: metrics-server serves a new container's rate once it is this old (measured from its start)
FRESH_CONTAINER_AGE = 10.0
#: how long before the replay starts the initial pods became ready (they are long settled)
SETTLED = 3600.0


@dataclass
class ReplayOptions:
    """How one configuration is replayed (everything except the load)."""

    hpa: dict[str, Any]
    controller: ControllerConfig = field(default_factory=ControllerConfig)
    sync_period: float = 15.0
    dispersion: str = "even"  # "even" | "recorded"
    seed: int = 0
    initial_replicas: int | None = None  # default: the recorded spec.replicas at the start


@dataclass
class Timeline:
    """A replayed (or the recorded) run on the load's grid."""

    times: np.ndarray
    replicas: np.ndarray  # spec.replicas per step
    pods: np.ndarray  # pods that exist per step (any phase)
    ready: np.ndarray  # ready pods per step
    sync_errors: int = 0
    errors: list[str] = field(default_factory=list)
    syncs: int = 0
    #: every pod of the run: created, started, ready and deleted (inf = alive at the end) times
    pod_created: np.ndarray = field(default_factory=lambda: np.empty(0))
    pod_started: np.ndarray = field(default_factory=lambda: np.empty(0))
    pod_ready: np.ndarray = field(default_factory=lambda: np.empty(0))
    pod_deleted: np.ndarray = field(default_factory=lambda: np.empty(0))


def _milli_cpu(cores: np.ndarray) -> np.ndarray:
    """Cores to milli-cores the way the metrics API's nanocore quantities read back (rounded up)."""
    nano = np.rint(cores * 1e9)
    return np.ceil(nano / 1e6 - 1e-9).astype(np.int64)


def replay(load: WorkloadLoad, opts: ReplayOptions) -> Timeline:
    """Replay ``load`` under ``opts.hpa``; the returned timeline is on ``load.times``."""
    h = compile_hpa(opts.hpa)
    cfg = opts.controller
    res = load.resolution
    start = load.start
    end = float(load.times[-1])
    rng = np.random.default_rng(opts.seed)
    req_milli = None if load.cpu_request is None else round(load.cpu_request * 1000)
    mem_req_milli = None if load.memory_request is None else round(load.memory_request * 1000)

    n0 = opts.initial_replicas if opts.initial_replicas is not None else int(load.recorded_replicas[0])
    n0 = max(n0, 0)
    # Pod columns of the live pods (change only on scale events) and the full event log.
    settled = start - SETTLED
    created = np.full(n0, settled - 60.0)
    started = np.full(n0, settled - 30.0)
    ready_at = np.full(n0, settled)
    zs = rng.standard_normal(n0)
    ids = np.arange(n0, dtype=np.int64)
    names = [f"{load.name}-{i}" for i in range(n0)]
    next_id = n0
    log_created: list[float] = created.tolist()
    log_started: list[float] = started.tolist()
    log_ready: list[float] = ready_at.tolist()
    log_deleted: list[float] = [math.inf] * n0
    change_t: list[float] = [start]
    change_v: list[int] = [n0]

    state = None
    status: dict[str, Any] = {}
    current = n0
    errors: list[str] = []
    n_err = 0
    syncs = 0
    pend, rdel = load.pending_delay, load.ready_delay
    limit = load.cpu_limit
    weights_on = opts.dispersion == "recorded"
    mem_base, mem_slope = load.memory_base, load.memory_per_core
    startup = load.startup_cores
    window = np.float64(res)
    fresh = min(FRESH_CONTAINER_AGE, res)
    next_change = -math.inf
    last_tm = math.nan

    t = start + opts.sync_period
    if len(load.change_offsets):
        # Keep the recorded controller's phase (its replica changes mark its syncs).
        t = start + (float(np.median(load.change_offsets % opts.sync_period)) or opts.sync_period)
    while t <= end + 1e-9:
        syncs += 1
        k = min(int((t - start) / res + 1e-9), len(load.times) - 1)
        tm = float(load.times[k])
        n = len(ids)
        if t >= next_change:
            # Pod states changed since the last build (or a scale event happened): rebuild the columns.
            running = started <= t
            is_ready = ready_at <= t
            pods = PodSet(
                names,
                np.where(running, RUNNING, PENDING).astype(np.int8),
                np.where(is_ready, COND_TRUE, COND_FALSE).astype(np.int8),
                np.where(is_ready, ready_at, created),
                np.where(running, started, np.nan),
                np.zeros(n, bool),
                {} if req_milli is None else {"cpu": np.full(n, req_milli, np.int64)},
            )
            if mem_req_milli is not None:
                pods.requests["memory"] = np.full(n, mem_req_milli, np.int64)
            pending_times = np.concatenate([started[started > t], ready_at[ready_at > t],
                                            (started + fresh)[started + fresh > tm], (started + res)[started + res > tm], ready_at[ready_at > tm]])
            next_change = float(pending_times.min()) if len(pending_times) else math.inf
            # What the metrics pipeline holds at the latest step: metrics-server's fresh-container
            # rule gives a pod a rate once it has run for 10 s, measured from its start.
            has = started + fresh <= tm
            ready_m = has & (ready_at <= tm)
            all_has = bool(has.all())
            n_ready = int(ready_m.sum())
            m_names = names if all_has else [nm for nm, hv in zip(names, has.tolist(), strict=True) if hv]
            nm = len(m_names)
            ts_col, win_col = np.full(nm, tm), np.minimum(window, tm - started[has])
            simple = all_has and n_ready == n and not weights_on
            last_tm = tm
        elif tm != last_tm:
            ts_col, win_col = np.full(nm, tm), np.minimum(window, tm - started[has])
            last_tm = tm
        if simple:
            share = float(load.demand[k]) / n
            if limit is not None and share > limit:
                share = limit
            cpu_m = np.full(n, _milli_cpu(np.float64(share)), np.int64)
            mem = np.full(n, round((mem_base + mem_slope * share) * 1000), np.int64)
        else:
            cpu = np.where(has, startup, 0.0)
            if n_ready:
                w = dispersion_weights(float(load.dispersion[k]), zs[ready_m]) if weights_on else None
                cpu[ready_m] = spread(float(load.demand[k]), n_ready, w, limit)
            elif limit is not None:
                np.minimum(cpu, limit, out=cpu)
            if not all_has:
                cpu = cpu[has]
            cpu_m = _milli_cpu(cpu)
            mem = np.rint((mem_base + mem_slope * cpu) * 1000).astype(np.int64)
        metrics = StaticMetrics(resource=PodMetricsSet(m_names, cpu_m, mem, ts_col, win_col))
        d = decide(h, Scale(current, n, SELECTOR), pods, metrics, now=t, state=state, config=cfg, hpa_status=status,
                   explain="none", build_status=False)
        state = d.state
        status = d.status
        if d.error:
            n_err += 1
            if len(errors) < 5 and d.error not in errors:
                errors.append(d.error)
        if d.updated and d.scale_to is not None and d.scale_to != current:
            new = int(d.scale_to)
            if new > n:
                m = new - n
                new_ids = np.arange(next_id, next_id + m, dtype=np.int64)
                next_id += m
                ids = np.concatenate([ids, new_ids])
                names = names + [f"{load.name}-{i}" for i in new_ids.tolist()]
                created = np.concatenate([created, np.full(m, t)])
                started = np.concatenate([started, np.full(m, t + pend)])
                ready_at = np.concatenate([ready_at, np.full(m, t + pend + rdel)])
                zs = np.concatenate([zs, rng.standard_normal(m)])
                log_created.extend([t] * m)
                log_started.extend([t + pend] * m)
                log_ready.extend([t + pend + rdel] * m)
                log_deleted.extend([math.inf] * m)
            elif new < n:
                # ReplicaSet deletion order: pending, then not ready, then most recently ready, then newest.
                order = np.lexsort((-created, -ready_at, ready_at <= t, started <= t))
                gone = np.sort(order[: n - new])
                keep = np.ones(n, bool)
                keep[gone] = False
                for i in ids[gone].tolist():
                    log_deleted[i] = t
                ids, created, started, ready_at, zs = ids[keep], created[keep], started[keep], ready_at[keep], zs[keep]
                names = [nm_ for nm_, kp in zip(names, keep.tolist(), strict=True) if kp]
            current = new
            next_change = -math.inf
            change_t.append(t)
            change_v.append(new)
        t += opts.sync_period

    times = load.times
    ct = np.asarray(change_t)
    reps = np.asarray(change_v, np.int64)[np.searchsorted(ct, times, side="right") - 1]
    lc, lr, ld = np.asarray(log_created), np.asarray(log_ready), np.asarray(log_deleted)
    pods_n = _count_between(lc, ld, times)
    ok = lr < ld
    ready_n = _count_between(lr[ok], ld[ok], times)
    return Timeline(times, reps, pods_n, ready_n, n_err, errors, syncs, lc, np.asarray(log_started), lr, ld)


def _count_between(begin: np.ndarray, end: np.ndarray, times: np.ndarray) -> np.ndarray:
    """How many intervals ``[begin, end)`` contain each time (vectorized with two sorted searches)."""
    b = np.sort(begin)
    e = np.sort(end)
    return (np.searchsorted(b, times, side="right") - np.searchsorted(e, times, side="right")).astype(np.int64)


def recorded_timeline(load: WorkloadLoad) -> Timeline:
    """The run that actually happened, as the trace recorded it."""
    return Timeline(load.times, load.recorded_replicas, load.recorded_pods, load.recorded_ready)
