"""The replay load model: a workload's demand per step, derived from its recorded pods.

Everything here is numpy over a ``(pods, steps)`` grid at the trace's metric resolution. The
assumptions (docs/replay.md, "Load model") are collected in :attr:`WorkloadLoad.assumptions` so
every report states what it rests on:

* demand is the sum of the pods' CPU usage per step; gaps inside a pod's lifetime hold the last
  sample; where a container ran at >= ``throttle_threshold`` of its CPU limit it was throttled, and
  its unmet demand is estimated as the gap to the mean usage of the unthrottled pods at that step
  (unknown, and counted as zero, when every pod was throttled);
* under a simulated replica count the demand is spread over the ready pods (evenly, or with the
  recorded per-step coefficient of variation across pods); pods that run but are not ready use
  ``startup_cores``; a pod never uses more than its CPU limit;
* a pod's memory working set is the recorded pods' mean at that step where the replay has as many
  pods with metrics as were recorded, else ``memory_base + memory_per_core x its CPU``, fitted by least
  squares on the recorded samples, refitted without those more than 3 MADs off the line (taken
  while the load changed: an instantaneous working set beside a windowed CPU rate);
* each new pod takes the start and readiness delays of one pod born during the trace (drawn with
  the replay's seed), so slow starters show up as often as they did; with ``pod_delays="median"``,
  or too few observed pods, every pod takes ``pending_delay`` and ``ready_delay`` (the medians,
  else flags/defaults); flags set both delays for every pod.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sim.replay.trace import Trace, WorkloadTrace

DEFAULT_READY_DELAY = 30.0
DEFAULT_PENDING_DELAY = 0.0
#: fewer observed pods than this and every new pod takes the medians
MIN_OBSERVED_PODS = 5
POD_DELAYS = ("observed", "median")


@dataclass
class WorkloadLoad:
    """A workload's load on the replay grid (``times[k] = start + k x resolution``)."""

    namespace: str
    name: str
    kind: str
    start: float
    resolution: float
    times: np.ndarray
    demand: np.ndarray  # cores wanted (recorded usage + estimated throttled demand)
    usage: np.ndarray  # cores used as recorded
    throttled_unmet: np.ndarray  # estimated cores the throttled pods wanted but did not get
    throttled_steps: int
    saturated_steps: int  # steps where every pod was throttled (true demand unknown)
    dispersion: np.ndarray  # coefficient of variation of per-pod usage per step
    recorded_pods: np.ndarray  # pods that existed per step
    recorded_ready: np.ndarray  # pods that were ready per step
    recorded_replicas: np.ndarray  # spec.replicas per step (recorded_pods when not recorded)
    replicas_recorded: bool
    cpu_request: float | None  # cores per pod (sum over containers)
    cpu_limit: float | None
    memory_request: float | None  # bytes per pod
    memory_limit: float | None
    memory_base: float
    memory_per_core: float
    pending_delay: float
    ready_delay: float
    startup_cores: float
    assumptions: list[str] = field(default_factory=list)
    #: seconds after ``start`` of the recorded replica changes (they happen at the controller's syncs)
    change_offsets: np.ndarray = field(default_factory=lambda: np.empty(0))
    #: observed (pending, ready) delays, one row per pod born during the trace; new pods draw from
    #: these rows (empty: every pod takes ``pending_delay`` and ``ready_delay``)
    observed_delays: np.ndarray = field(default_factory=lambda: np.empty((0, 2)))
    #: (created, started, ready) of the pods present at ``start`` whose readiness the trace recorded,
    #: earliest Ready first: the replay starts with these pods as they were (one row per pod)
    initial_pods: np.ndarray = field(default_factory=lambda: np.empty((0, 3)))
    #: how much older than its step a step's metric samples are (their timestamp is ``times[k] - sample_age``)
    sample_age: float = 0.0
    #: the shortest time from a born pod's start to its first sample (None: no pod started during the trace)
    first_sample_delay: float | None = None
    #: per step, the recorded pods with a sample and their mean working set (bytes; NaN without any):
    #: a replay with as many pods with metrics gives them this instead of the memory model
    sampled_pods: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    sampled_memory: np.ndarray = field(default_factory=lambda: np.empty(0))

    @property
    def steps(self) -> int:
        return len(self.times)


def _pod_resources(w: WorkloadTrace) -> tuple[tuple[float | None, ...], bool]:
    """Per-pod request/limit totals of the newest pod, and whether pods disagree."""
    def totals(pod) -> tuple[float | None, ...]:  # type: ignore[no-untyped-def]
        out: list[float | None] = []
        for attr in ("cpu_request", "cpu_limit", "memory_request", "memory_limit"):
            vals = [getattr(c, attr) for c in pod.containers]
            out.append(None if not vals or any(v is None for v in vals) else float(sum(vals)))
        return tuple(out)

    # a pod created just before the recording ended may have no sample yet, hence no containers
    sampled = [p for p in w.pods if p.containers]
    pods = sorted(sampled, key=lambda p: (p.created if p.created is not None else (p.first_sample() or 0.0)))
    if not pods:
        return (None, None, None, None), False
    all_totals = {totals(p) for p in pods}
    return totals(pods[-1]), len(all_totals) > 1


def build_load(trace: Trace, w: WorkloadTrace, *, throttle_threshold: float = 0.95, estimate_throttled: bool = True,
               ready_delay: float | None = None, pending_delay: float | None = None,
               startup_cores: float | None = None, pod_delays: str = "observed") -> WorkloadLoad:
    """Put ``w``'s recorded pods on the replay grid and derive the load model's parameters."""
    res = trace.resolution
    start = trace.start
    k_n = int(np.floor((trace.end - start) / res + 1e-9)) + 1
    times = start + res * np.arange(k_n)
    n_p = len(w.pods)
    notes: list[str] = []
    usage = np.zeros((n_p, k_n))
    memory = np.zeros((n_p, k_n))
    present = np.zeros((n_p, k_n), bool)
    throttled = np.zeros((n_p, k_n), bool)
    first = np.full(n_p, k_n, np.int64)
    last = np.full(n_p, -1, np.int64)
    for i, pod in enumerate(w.pods):
        for c in pod.containers:
            if not len(c.t):
                continue
            # A sample belongs to the first grid step at or after it, so no step sees a later sample.
            k = np.clip(np.ceil((c.t - start) / res - 1e-9).astype(np.int64), 0, k_n - 1)
            cnt = np.bincount(k, minlength=k_n)
            has = cnt > 0
            usage[i] += np.where(has, np.bincount(k, c.cpu, k_n) / np.maximum(cnt, 1), 0.0)
            memory[i] += np.where(has, np.bincount(k, c.memory, k_n) / np.maximum(cnt, 1), 0.0)
            present[i] |= has
            if c.cpu_limit:
                hit = np.bincount(k, (c.cpu >= throttle_threshold * c.cpu_limit).astype(np.float64), k_n) > 0
                throttled[i] |= hit
            first[i] = min(first[i], int(k[0]))
            last[i] = max(last[i], int(k[-1]))
    steps = np.arange(k_n)
    alive = (steps[None, :] >= first[:, None]) & (steps[None, :] <= last[:, None])
    # Hold the last sample through gaps inside a pod's lifetime.
    if n_p:
        idx = np.where(present, steps[None, :], 0)
        np.maximum.accumulate(idx, axis=1, out=idx)
        rows = np.arange(n_p)[:, None]
        gaps = alive & ~present
        if gaps.any():
            notes.append(f"{int(gaps.sum())} pod-steps without a sample inside a pod's lifetime hold the last sample")
        usage = np.where(alive, usage[rows, idx], 0.0)
        memory = np.where(alive, memory[rows, idx], 0.0)
        throttled = alive & throttled[rows, idx]

    # Lifecycle on the grid.
    def bin_of(t: float | None, default: int) -> int:
        return default if t is None else int(np.clip(np.ceil((t - start) / res - 1e-9), 0, k_n))

    created_k = np.array([bin_of(p.created, int(first[i])) for i, p in enumerate(w.pods)], np.int64)
    ready_k = np.array([bin_of(p.ready, int(first[i])) for i, p in enumerate(w.pods)], np.int64)
    end_k = np.array([k_n if p.deleted is None else bin_of(p.deleted, k_n) for p in w.pods], np.int64)
    exists = (steps[None, :] >= created_k[:, None]) & (steps[None, :] < end_k[:, None]) if n_p else alive
    is_ready = exists & (steps[None, :] >= ready_k[:, None]) & alive if n_p else alive
    rec_pods = exists.sum(axis=0).astype(np.int64)
    rec_ready = is_ready.sum(axis=0).astype(np.int64)
    recorded_usage = usage.sum(axis=0)

    # Throttling: estimate what throttled pods wanted from the unthrottled pods at the same step.
    unthr = alive & ~throttled
    n_un = unthr.sum(axis=0)
    mean_un = np.where(n_un > 0, (usage * unthr).sum(axis=0) / np.maximum(n_un, 1), 0.0)
    gap = np.where(throttled, np.maximum(mean_un[None, :] - usage, 0.0), 0.0) if n_p else usage
    unmet = gap.sum(axis=0) if n_p else np.zeros(k_n)
    thr_steps = int(throttled.any(axis=0).sum()) if n_p else 0
    saturated = int((throttled.any(axis=0) & (n_un == 0)).sum()) if n_p else 0
    if thr_steps:
        notes.append(f"pods ran at >= {throttle_threshold:.0%} of their CPU limit (throttled) in {thr_steps} steps; "
                     + ("their unmet demand is estimated from the unthrottled pods' mean usage"
                        if estimate_throttled else "demand is taken as recorded (--no-throttle-estimate)")
                     + (f"; in {saturated} steps every pod was throttled and the unmet demand is unknown (counted 0)"
                        if saturated else ""))
    demand = recorded_usage + (unmet if estimate_throttled else 0.0)

    # Per-pod dispersion among ready pods.
    ready_use = np.where(is_ready, usage, np.nan) if n_p else np.full((1, k_n), np.nan)
    cnt = np.sum(is_ready, axis=0) if n_p else np.zeros(k_n)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nanmean(np.where(cnt[None, :] > 0, ready_use, 0.0), axis=0) if n_p else np.zeros(k_n)
        std = np.nanstd(np.where(cnt[None, :] > 0, ready_use, 0.0), axis=0) if n_p else np.zeros(k_n)
        cv = np.where((cnt >= 2) & (mean > 0), std / mean, 0.0)
    cv = np.nan_to_num(cv)

    # Spec replicas over time.
    if len(w.replicas_t):
        j = np.searchsorted(w.replicas_t, times, side="right") - 1
        rec_reps = w.replicas[np.clip(j, 0, None)].astype(np.int64)
        replicas_recorded = True
    else:
        rec_reps = rec_pods.copy()
        replicas_recorded = False
        notes.append("the trace records no replica count: the recorded timeline counts pods with samples")

    # The working set as recorded: where the replay has as many pods with metrics, each pod's load is
    # the recorded one, and so is its memory (the model below trails it at a load change: memory is
    # read at the sample's instant, CPU averaged over the window before it).
    sampled = alive.sum(axis=0).astype(np.int64) if n_p else np.zeros(k_n, np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        sampled_memory = (np.where(alive, memory, 0.0).sum(axis=0) / sampled if n_p else np.full(k_n, np.nan))

    # Memory: base + per-core slope fitted on every recorded pod-step.
    x, y = usage[alive], memory[alive]
    mem_base, mem_slope = 0.0, 0.0
    dropped = 0
    if len(x) >= 2 and np.ptp(x) > 0:
        (slope, base), dropped = _robust_line(x, y)
        if slope < 0:
            mem_base, mem_slope = float(y.mean()), 0.0
        else:
            mem_base, mem_slope = float(max(base, 0.0)), float(slope)
    elif len(y):
        mem_base = float(y.mean())
    notes.append(f"pod memory working set = {mem_base / 2**20:.1f} MiB + {mem_slope / 2**20:.1f} MiB per core "
                 "(least-squares fit on the recorded samples"
                 + (f"; {dropped} samples off the line, taken while the load changed, left out)" if dropped else ")"))

    # Lifecycle delays from the pods born during the trace.
    born = [p for p in w.pods if p.created is not None and p.ready is not None and p.created > start + res
            and p.ready >= p.created]
    obs_pending = [p.started - p.created for p in born if p.started is not None and p.started >= p.created]
    obs_ready = [p.ready - (p.started if p.started is not None and p.started <= p.ready else p.created) for p in born]
    if pod_delays not in POD_DELAYS:
        raise ValueError(f"pod delays: want one of {', '.join(POD_DELAYS)}, got {pod_delays!r}")
    draw = pod_delays == "observed" and ready_delay is None and pending_delay is None and len(born) >= MIN_OBSERVED_PODS
    delay_notes = []
    if pending_delay is None:
        pending_delay = float(np.median(obs_pending)) if obs_pending else DEFAULT_PENDING_DELAY
        src = f"median of {len(obs_pending)} observed pods" if obs_pending else "default"
        delay_notes.append(f"new pods start {pending_delay:g}s after creation ({src})")
    if ready_delay is None:
        ready_delay = float(np.median(obs_ready)) if obs_ready else DEFAULT_READY_DELAY
        src = (f"median of {len(obs_ready)} observed pods" if obs_ready
               else "default: no pod was born and became Ready during the trace; set --ready-delay")
        delay_notes.append(f"started pods become Ready after {ready_delay:g}s ({src})")
    observed = np.empty((0, 2))
    if draw:
        # each born pod's own pair; a pod whose start was not recorded takes the median pending delay
        pend = [p.started - p.created if p.started is not None and p.started >= p.created else pending_delay
                for p in born]
        observed = np.column_stack([pend, obs_ready]).astype(np.float64)
        total = observed.sum(axis=1)
        delay_notes = [f"each new pod takes the start and ready delays of one of the {len(born)} pods born during "
                       f"the trace (seeded draw; creation to Ready: median {np.median(total):g}s, "
                       f"p90 {np.percentile(total, 90):g}s, max {total.max():g}s)"]
    notes.extend(delay_notes)
    if startup_cores is None:
        vals = []
        for i, p in enumerate(w.pods):
            if p.ready is not None and p.ready > start + res and ready_k[i] > first[i]:
                vals.append(usage[i, first[i]:ready_k[i]])
        startup_cores = float(np.mean(np.concatenate(vals))) if vals and sum(len(v) for v in vals) else 0.0
        notes.append(f"a started pod uses {startup_cores:.3g} cores until it is Ready"
                     + (" (observed)" if vals else " (no startup observed)"))

    # The recorded controller's sync phase: replica changes happen at its syncs.
    offsets = w.replicas_t[1:] - start if len(w.replicas_t) > 1 else np.empty(0)
    if len(offsets):
        notes.append("replayed syncs keep the phase of the recorded controller's syncs (from its replica changes)")

    firsts = [p.first_sample() - p.started for p in born if p.started is not None and p.first_sample() is not None
              and p.first_sample() >= p.started]
    # the gap is this delay plus the wait for the kubelet's next sample tick: the shortest gap is it
    first_sample_delay = float(np.min(firsts)) if firsts else None
    if firsts:
        notes.append(f"a new pod has metrics from its first sample at least {first_sample_delay:g}s after it starts "
                     f"(the shortest start-to-first-sample time of {len(firsts)} observed pods)")
    initial = _initial_pods(w, start)
    if len(initial):
        notes.append(f"the {len(initial)} pods present at the start keep their recorded start and Ready times "
                     f"(newest Ready {initial[:, 2].max() - start:+g}s)")

    (cpu_req, cpu_lim, mem_req, mem_lim), varied = _pod_resources(w)
    if varied:
        notes.append("pods had different requests/limits over the trace: simulated pods use the newest pod's")
    if cpu_req is None:
        notes.append("pods have no CPU request recorded: CPU utilization targets cannot be evaluated")
    return WorkloadLoad(
        w.namespace, w.name, w.kind, start, res, times, demand, recorded_usage, unmet, thr_steps, saturated, cv,
        rec_pods, rec_ready, rec_reps, replicas_recorded, cpu_req, cpu_lim, mem_req, mem_lim, mem_base, mem_slope,
        float(pending_delay), float(ready_delay), float(startup_cores), notes, offsets, observed, initial,
        sample_age(w, start, res), first_sample_delay, sampled, sampled_memory)


def _initial_pods(w: WorkloadTrace, start: float) -> np.ndarray:
    """(created, started, ready) rows of the pods alive at ``start`` with a recorded Ready time,
    earliest Ready first. Pods without one (CSV, older recordings) are left to the replay's default
    (Ready long before), as before; a missing start time is taken as the creation time."""
    rows = []
    for p in w.pods:
        if p.created is None or p.ready is None or p.created > start or (p.deleted is not None and p.deleted <= start):
            continue
        started = p.started if p.started is not None and p.created <= p.started <= p.ready else p.created
        rows.append((p.created, started, p.ready))
    rows.sort(key=lambda r: r[2])
    return np.asarray(rows, np.float64).reshape(-1, 3)


def _robust_line(x: np.ndarray, y: np.ndarray, rounds: int = 3) -> tuple[tuple[float, float], int]:
    """Least-squares line ``y = slope x + base`` on the samples within three robust standard
    deviations (MAD) of it: ((slope, base), samples left out).

    A working set is read at an instant but CPU is a rate over the window before it, so the samples
    taken while the load changed pair a new working set with a mixed CPU rate; a plain fit lets
    those few samples shift the base (75 Mi where the pods' base was 64 Mi in the real-HPA tier).
    """
    keep = np.zeros(len(x), bool)  # the first round always refits by least squares
    # start from the Theil-Sen line (median pairwise slope; on at most 1000 evenly spaced samples),
    # which a minority of outliers cannot bend, then refit by least squares on the samples near it
    sub = np.linspace(0, len(x) - 1, min(len(x), 1000)).astype(np.int64)
    xs, ys = x[sub], y[sub]
    i, j = np.triu_indices(len(xs), 1)
    dx = xs[j] - xs[i]
    ok = dx != 0
    slope = float(np.median((ys[j] - ys[i])[ok] / dx[ok]))
    base = float(np.median(y - slope * x))
    floor = 0.005 * float(np.median(np.abs(y)))  # noise below 0.5 % of the working set is no outlier
    for _ in range(rounds):
        res = y - (slope * x + base)
        mad = float(np.median(np.abs(res - np.median(res))))
        nxt = np.abs(res) <= max(3 * 1.4826 * mad, floor)
        if nxt.sum() < 2 or np.ptp(x[nxt]) == 0 or np.array_equal(nxt, keep):
            break
        keep = nxt
        slope, base = np.polyfit(x[keep], y[keep], 1)
    return (float(slope), float(base)), int(len(x) - keep.sum())


def sample_age(w: WorkloadTrace, start: float, res: float) -> float:
    """How old (seconds, ``0 <= age < res``) the samples a grid step holds typically are.

    A sample belongs to the first step at or after it: with a kubelet whose housekeeping runs 2 s
    past the recording's start, the step at 30 s holds the sample taken at 22 s. The HPA must see
    that sample's own timestamp, since the CPU initialization period compares it with the pod's
    Ready time (a window that began before readiness is not counted). The samples' place in the
    resolution period is the phase after which they wait least, on average, for the next grid
    step (just after the cluster of their offsets; a circular problem, solved on a histogram of
    the offsets in 0.1 s bins, at most 600); the age is the resolution minus that phase (0 for
    samples on the grid, as in generated traces).
    """
    offs = [np.mod(c.t - start, res) for p in w.pods for c in p.containers if len(c.t)]
    if not offs or res <= 0:
        return 0.0
    bins = min(600, max(1, round(res * 10)))
    # a sample at offset o waits (phase - o) mod res; an offset just below a bin edge counts as
    # that edge, so the chosen phase is never before a sample it is meant to include
    hist = np.bincount(np.ceil(np.concatenate(offs) / res * bins - 1e-6).astype(np.int64) % bins, minlength=bins)
    cand = np.arange(bins)
    wait = (cand[:, None] - cand[None, :]) % bins
    best = int(np.argmin(wait @ hist))
    return (bins - best) % bins * res / bins


def spread(demand: float, n_ready: int, weights: np.ndarray | None, limit: float | None) -> np.ndarray:
    """Each ready pod's CPU: ``demand`` split evenly (or by ``weights``), capped at the CPU limit."""
    if n_ready == 0:
        return np.zeros(0)
    share = np.full(n_ready, demand / n_ready) if weights is None else demand * weights / weights.sum()
    if limit is not None:
        np.minimum(share, limit, out=share)
    return share


def dispersion_weights(cv: float, z: np.ndarray) -> np.ndarray:
    """Per-pod weights ``max(0.05, 1 + cv x z)`` from seeded standard normals ``z``."""
    return np.maximum(0.05, 1.0 + cv * z)
