"""The replay engine: a virtual clock driving the real HPA decision core over a recorded load.

Every ``sync_period`` virtual seconds (and, emulating 1.37, once at the start, when the HPA is
created) the engine builds what the live controller would see — the target's Scale, the pods
(phase, Ready condition and its transition time, start time) and their PodMetrics at the latest
metric step — and calls :func:`autoscaler.hpa.decide`, the very function
the live controller calls. Nothing about readiness, missing metrics, tolerance, stabilization or
policies is decided here. The engine only plays the cluster: it creates pods when the HPA scales
up (Pending, then Running, then Ready, each new pod with the delays of a pod observed in the trace,
or the load's fixed delays) and deletes pods on scale-down in the ReplicaSet controller's order. Pod state lives in small numpy arrays that change
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
#: how long before the replay starts the initial pods became ready when the trace does not say
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


def _milli_cpu_one(cores: float) -> int:
    """:func:`_milli_cpu` of one value in plain Python (same IEEE operations, no numpy call overhead)."""
    return math.ceil(round(cores * 1e9) / 1e6 - 1e-9)


def _filled(n: int, value: float | int, dtype: Any) -> np.ndarray:
    """``np.full(n, value, dtype)`` without its Python-level overhead (it runs several times per sync)."""
    a = np.empty(n, dtype)
    a.fill(value)
    return a


_RUNNING8, _PENDING8 = np.int8(RUNNING), np.int8(PENDING)
_TRUE8, _FALSE8 = np.int8(COND_TRUE), np.int8(COND_FALSE)
#: rows of the live-pod matrix; STARTED..FRESH are the times the next rebuild compares against the clock
CREATED, STARTED, READY_T, READY_M, FRESH, ZS, ID = range(7)


def replay(load: WorkloadLoad, opts: ReplayOptions) -> Timeline:
    """Replay ``load`` under ``opts.hpa``; the returned timeline is on ``load.times``.

    The loop is the hot path of every sweep (40,320 syncs for 7 days at 15 s): per sync it only
    indexes plain lists, fills the few metric columns and calls ``decide``. The live pods are one
    small float matrix (rows ``CREATED`` .. ``ID``) so a rebuild of the pod columns, needed only when
    a pod changes state (a scale event, a pod starting, getting metrics or becoming Ready), is a
    handful of numpy calls.
    """
    h = compile_hpa(opts.hpa)
    cfg = opts.controller
    res = load.resolution
    start = load.start
    end = float(load.times[-1])
    rng = np.random.default_rng(opts.seed)
    delays_rng = np.random.default_rng([opts.seed, 1])  # its own stream: dispersion draws stay as they were
    observed = load.observed_delays
    req_milli = None if load.cpu_request is None else round(load.cpu_request * 1000)
    mem_req_milli = None if load.memory_request is None else round(load.memory_request * 1000)
    times_l: list[float] = load.times.tolist()
    demand_l: list[float] = load.demand.tolist()
    disp_l: list[float] = load.dispersion.tolist()
    last_k = len(times_l) - 1
    i64, f64 = np.int64, np.float64
    pend, rdel = load.pending_delay, load.ready_delay
    limit = load.cpu_limit
    weights_on = opts.dispersion == "recorded"
    mem_base, mem_slope = load.memory_base, load.memory_per_core
    sampled_l: list[int] = load.sampled_pods.tolist() if len(load.sampled_pods) else [-1] * len(times_l)
    sampled_mem_l: list[float] = load.sampled_memory.tolist() if len(load.sampled_memory) else [math.nan] * len(times_l)
    startup = load.startup_cores
    window = np.float64(res)
    fresh = min(FRESH_CONTAINER_AGE, res) if load.first_sample_delay is None else load.first_sample_delay
    age = load.sample_age

    n0 = opts.initial_replicas if opts.initial_replicas is not None else int(load.recorded_replicas[0])
    n0 = max(n0, 0)
    # The live pods (columns; rows CREATED..ID) change only on scale events; the log keeps every pod.
    settled = start - SETTLED
    pm = np.empty((7, n0))
    pm[CREATED] = settled - 60.0
    pm[STARTED] = settled - 30.0
    pm[READY_T] = pm[READY_M] = settled
    # Pods whose start and readiness the trace recorded keep them (a pod that became Ready shortly
    # before the start is still unready, or within the CPU initialization period, for the HPA).
    known = load.initial_pods[:n0]
    m0 = len(known)
    pm[CREATED, :m0], pm[STARTED, :m0] = known[:, 0], known[:, 1]
    pm[READY_T, :m0] = pm[READY_M, :m0] = known[:, 2]
    pm[FRESH] = pm[STARTED] + fresh
    pm[ZS] = rng.standard_normal(n0)
    pm[ID] = np.arange(n0)
    names = [f"{load.name}-{i}" for i in range(n0)]
    next_id = n0
    log_created: list[float] = pm[CREATED].tolist()
    log_started: list[float] = pm[STARTED].tolist()
    log_ready: list[float] = pm[READY_T].tolist()
    log_deleted: list[float] = [math.inf] * n0
    change_t: list[float] = [start]
    change_v: list[int] = [n0]

    state = None
    status: dict[str, Any] = {}
    current = n0
    errors: list[str] = []
    n_err = 0
    syncs = 0
    next_change = -math.inf
    last_tm = math.nan
    newest_start = -math.inf  # the latest start among the pods with metrics (decides their windows)
    sync_period = opts.sync_period
    thresholds = np.empty((4, 1))

    regular = start + sync_period
    if len(load.change_offsets):
        # Keep the recorded controller's phase (its replica changes mark its syncs), and its drift.
        sync_period, phase = recorded_sync(load.change_offsets, sync_period)
        regular = start + (phase or sync_period)
    # The replayed HPA is created at the start: 1.37 reconciles a new HPA at once (then on the
    # sync-period schedule), 1.36 only one sync period later.
    first = cfg.immediate_reconcile
    t = start if first else regular
    while t <= end + 1e-9:
        syncs += 1
        k = min(int((t - start) / res + 1e-9), last_k)
        tm = times_l[k]
        n = len(names)
        if t >= next_change:
            # A pod changed state since the last build (or a scale event happened): rebuild the
            # columns. Pods start and become Ready at the sync time t; the metrics pipeline holds the
            # latest step tm, whose samples were taken at tm - age: metrics-server's fresh-container
            # rule gives a pod a rate once it had run for 10 s then, and a pod's sample is a Ready
            # pod's share if it was Ready by then.
            thresholds[:, 0] = (t, t, tm - age, tm - age)
            events = pm[STARTED:ZS]
            passed = events <= thresholds
            next_change = float(np.where(passed, math.inf, events).min()) if n else math.inf
            running, is_ready, has = passed[0], passed[1], passed[3]
            created, started, ready_at = pm[CREATED], pm[STARTED], pm[READY_T]
            pods = PodSet(
                names,
                np.where(running, _RUNNING8, _PENDING8),
                np.where(is_ready, _TRUE8, _FALSE8),
                np.where(is_ready, ready_at, created),
                np.where(running, started, np.nan),
                np.zeros(n, bool),
                {} if req_milli is None else {"cpu": _filled(n, req_milli, i64)},
            )
            if mem_req_milli is not None:
                pods.requests["memory"] = _filled(n, mem_req_milli, i64)
            ready_m = has & passed[2]
            all_has = np.count_nonzero(has) == n
            n_ready = int(np.count_nonzero(ready_m))
            if all_has:
                started_m, m_names, ready_among_m = started, names, ready_m
            else:
                started_m, ready_among_m = started[has], ready_m[has]
                m_names = [nm for nm, hv in zip(names, has.tolist(), strict=True) if hv]
            nm = len(m_names)
            newest_start = float(started_m.max()) if nm else -math.inf
            simple = n > 0 and all_has and n_ready == n and not weights_on
            last_tm = math.nan  # force new metric columns
        if tm != last_tm:
            ts = tm - age  # when the step's samples were taken
            ts_col = _filled(nm, ts, f64)
            # min(window, ts - start) is the full window for every pod once the newest is old enough
            # (subtraction is monotone, so testing the newest start is exact).
            win_col = _filled(nm, window, f64) if ts - newest_start >= window else np.minimum(window, ts - started_m)
            last_tm = tm
        if simple:
            share = demand_l[k] / n
            if limit is not None and share > limit:
                share = limit
            cpu_m = _filled(n, _milli_cpu_one(share), i64)
            mem = _filled(n, round((mem_base + mem_slope * share) * 1000), i64)
        elif not weights_on:
            # Even spread: a pod with metrics is either ready (its share) or starting (startup CPU).
            if n_ready:
                share = demand_l[k] / n_ready
                if limit is not None and share > limit:
                    share = limit
                boot = startup
            else:
                share = 0.0
                boot = startup if limit is None or startup <= limit else limit
            cpu_m = np.where(ready_among_m, _milli_cpu_one(share), _milli_cpu_one(boot))
            mem = np.where(ready_among_m, round((mem_base + mem_slope * share) * 1000),
                           round((mem_base + mem_slope * boot) * 1000))
        else:
            cpu = np.where(has, startup, 0.0)
            if n_ready:
                w = dispersion_weights(disp_l[k], pm[ZS][ready_m])
                cpu[ready_m] = spread(demand_l[k], n_ready, w, limit)
            elif limit is not None:
                np.minimum(cpu, limit, out=cpu)
            if not all_has:
                cpu = cpu[has]
            cpu_m = _milli_cpu(cpu)
            mem = np.rint((mem_base + mem_slope * cpu) * 1000).astype(np.int64)
        if nm == sampled_l[k] and sampled_mem_l[k] == sampled_mem_l[k]:  # as many pods as recorded (not NaN)
            mem = _filled(nm, round(sampled_mem_l[k] * 1000), i64)
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
                if len(observed):
                    drawn = observed[delays_rng.integers(len(observed), size=m)]
                    began, ready = t + drawn[:, 0], t + drawn[:, 0] + drawn[:, 1]
                else:
                    began, ready = np.full(m, t + pend), np.full(m, t + pend + rdel)
                block = np.empty((7, m))
                block[CREATED] = t
                block[STARTED] = began
                block[READY_T] = block[READY_M] = ready
                block[FRESH] = began + fresh
                block[ZS] = rng.standard_normal(m)
                block[ID] = np.arange(next_id, next_id + m)
                pm = np.concatenate([pm, block], axis=1)
                names = names + [f"{load.name}-{i}" for i in range(next_id, next_id + m)]
                next_id += m
                log_created.extend([t] * m)
                log_started.extend(began.tolist())
                log_ready.extend(ready.tolist())
                log_deleted.extend([math.inf] * m)
            elif new < n:
                # ReplicaSet deletion order: pending, then not ready, then most recently ready, then newest.
                created, started, ready_at = pm[CREATED], pm[STARTED], pm[READY_T]
                order = np.lexsort((-created, -ready_at, ready_at <= t, started <= t))
                gone = np.sort(order[: n - new])
                keep = np.ones(n, bool)
                keep[gone] = False
                for i in pm[ID][gone].tolist():
                    log_deleted[int(i)] = t
                pm = pm[:, keep]
                names = [nm_ for nm_, kp in zip(names, keep.tolist(), strict=True) if kp]
            current = new
            next_change = -math.inf
            change_t.append(t)
            change_v.append(new)
        if first:
            first, t = False, regular
        else:
            t += sync_period

    times = load.times
    ct = np.asarray(change_t)
    reps = np.asarray(change_v, np.int64)[np.searchsorted(ct, times, side="right") - 1]
    lc, lr, ld = np.asarray(log_created), np.asarray(log_ready), np.asarray(log_deleted)
    pods_n = _count_between(lc, ld, times)
    ok = lr < ld
    ready_n = _count_between(lr[ok], ld[ok], times)
    return Timeline(times, reps, pods_n, ready_n, n_err, errors, syncs, lc, np.asarray(log_started), lr, ld)


def recorded_sync(offsets: np.ndarray, period: float) -> tuple[float, float]:
    """The recorded controller's sync (period, phase in [0, period)) from its replica changes
    (seconds after the start; each happened at one of its syncs).

    kube-controller-manager queues an HPA's next sync one period after the last one finished, so its
    syncs drift by the time a sync takes (about 20 ms a sync on the real-HPA tier: half a second over
    three minutes). A line through the changes, numbered by the syncs between them, gives that
    effective period and the phase; when it is not within 2 % of ``period``, or a change lies more
    than a tenth of a period off the line (a replay under another sync period), or there are too
    few changes, the median phase modulo ``period`` is kept.
    """
    offs = np.sort(np.asarray(offsets, np.float64))
    median_phase = float(np.median(offs % period))
    n = np.rint((offs - offs[0]) / period)
    if len(np.unique(n)) < 2:
        return period, median_phase
    fitted, first = np.polyfit(n, offs, 1)
    off_line = float(np.abs(offs - (first + fitted * n)).max())
    if abs(fitted - period) > 0.02 * period or off_line > 0.1 * period:
        return period, median_phase
    return float(fitted), float(first % fitted)


def _count_between(begin: np.ndarray, end: np.ndarray, times: np.ndarray) -> np.ndarray:
    """How many intervals ``[begin, end)`` contain each time (vectorized with two sorted searches)."""
    b = np.sort(begin)
    e = np.sort(end)
    return (np.searchsorted(b, times, side="right") - np.searchsorted(e, times, side="right")).astype(np.int64)


def recorded_timeline(load: WorkloadLoad) -> Timeline:
    """The run that actually happened, as the trace recorded it."""
    return Timeline(load.times, load.recorded_replicas, load.recorded_pods, load.recorded_ready)
