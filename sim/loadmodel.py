"""Load models: how much CPU (and memory) a workload wants over time, and how it lands on pods.

A workload's *total* demand in cores is a function of time (constant, diurnal, step, spike or a
recorded series). It is spread evenly over the workload's **ready** pods, each pod's share is
split over its containers in proportion to their CPU requests, optionally perturbed by seeded
per-pod noise, and capped at each container's CPU limit. Memory working set follows the usage:
``base + perCore × cores``, capped at the memory limit.

All functions take numpy arrays of times so a kubelet can integrate a whole node's containers in
a few vector operations; times passed to :meth:`LoadModel.demand` are seconds since the model's
origin (the cluster start for scenario models, the moment of ``set_load`` for run-time changes).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

KINDS = ("constant", "diurnal", "step", "spike", "series")

MiB = 1024 * 1024


@dataclass
class LoadModel:
    """Total demand of one workload. Subclasses implement :meth:`_demand`."""

    kind: str = "constant"
    #: relative standard deviation of the per-pod noise (0 = none)
    noise: float = 0.0
    #: the noise changes value every ``noise_period`` seconds (piecewise constant per pod)
    noise_period: float = 15.0
    seed: int = 0
    #: cores a running pod uses before it is ready (startup work)
    startup_cores: float = 0.01
    #: memory working set per pod: base bytes plus bytes per core of current usage
    memory_base: float = 64 * MiB
    memory_per_core: float = 0.0
    #: swap bytes per pod, reported only by kubelets of nodes with swap (0: none used)
    swap_bytes: float = 0.0
    #: absolute unix time the model's relative time starts at (None: set by the cluster)
    origin: float | None = None

    def demand(self, t: np.ndarray | float) -> np.ndarray:
        """Total cores wanted at relative times ``t`` (vectorized, never negative)."""
        arr = np.asarray(t, dtype=np.float64)
        return np.maximum(self._demand(arr), 0.0)

    def _demand(self, t: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def breakpoints(self, t0: float, t1: float) -> np.ndarray:
        """Relative times in (t0, t1) where demand jumps or bends (exact integration needs them)."""
        return np.empty(0)


@dataclass
class Constant(LoadModel):
    kind: str = "constant"
    cores: float = 0.1

    def _demand(self, t: np.ndarray) -> np.ndarray:
        return np.full(t.shape, self.cores)


@dataclass
class Diurnal(LoadModel):
    """A cosine day: ``min`` cores at the trough, ``max`` at ``peak`` seconds (mod ``period``)."""

    kind: str = "diurnal"
    min: float = 0.1
    max: float = 1.0
    period: float = 86400.0
    peak: float = 0.0

    def _demand(self, t: np.ndarray) -> np.ndarray:
        phase = 2.0 * np.pi * (t - self.peak) / self.period
        return self.min + (self.max - self.min) * (1.0 + np.cos(phase)) / 2.0


@dataclass
class Step(LoadModel):
    """``base`` cores, then each ``(at, cores)`` step holds from ``at`` seconds on."""

    kind: str = "step"
    base: float = 0.1
    steps: Sequence[tuple[float, float]] = ()

    def _demand(self, t: np.ndarray) -> np.ndarray:
        if not self.steps:
            return np.full(t.shape, self.base)
        ats = np.array([s[0] for s in self.steps], dtype=np.float64)
        vals = np.concatenate([[self.base], [s[1] for s in self.steps]])
        order = np.argsort(ats, kind="stable")
        ats, vals = ats[order], np.concatenate([[self.base], vals[1:][order]])
        return vals[np.searchsorted(ats, t, side="right")]

    def breakpoints(self, t0: float, t1: float) -> np.ndarray:
        ats = np.array([s[0] for s in self.steps], dtype=np.float64)
        return ats[(ats > t0) & (ats < t1)]


@dataclass
class Spike(LoadModel):
    """``base`` cores with ``peak`` cores during ``[at, at + duration)``, repeated every ``every``
    seconds when ``every`` > 0."""

    kind: str = "spike"
    base: float = 0.1
    peak: float = 1.0
    at: float = 60.0
    duration: float = 60.0
    every: float = 0.0

    def _demand(self, t: np.ndarray) -> np.ndarray:
        rel = t - self.at
        if self.every > 0:
            on = (rel >= 0) & (np.mod(rel, self.every) < self.duration)
        else:
            on = (rel >= 0) & (rel < self.duration)
        return np.where(on, self.peak, self.base)

    def breakpoints(self, t0: float, t1: float) -> np.ndarray:
        if self.every > 0:
            first = np.floor((t0 - self.at) / self.every)
            n = np.arange(max(first, 0), np.floor((t1 - self.at) / self.every) + 1)
            if n.size > 10000:
                return np.empty(0)
            starts = self.at + n * self.every
            edges = np.concatenate([starts, starts + self.duration])
        else:
            edges = np.array([self.at, self.at + self.duration])
        return edges[(edges > t0) & (edges < t1)]


@dataclass
class Series(LoadModel):
    """A recorded series: ``values[i]`` cores at ``times[i]`` seconds, linear (or step)
    interpolation between points, held flat outside, optionally repeating."""

    kind: str = "series"
    times: np.ndarray = field(default_factory=lambda: np.zeros(1))
    values: np.ndarray = field(default_factory=lambda: np.zeros(1))
    interpolation: str = "linear"
    repeat: bool = False

    def __post_init__(self) -> None:
        self.times = np.asarray(self.times, dtype=np.float64)
        self.values = np.asarray(self.values, dtype=np.float64)
        if self.times.shape != self.values.shape or self.times.size == 0:
            raise ValueError("series needs as many times as values (at least one)")
        if np.any(np.diff(self.times) < 0):
            raise ValueError("series times must be non-decreasing")

    def _demand(self, t: np.ndarray) -> np.ndarray:
        ts, vs = self.times, self.values
        if self.repeat and ts.size > 1 and ts[-1] > ts[0]:
            t = ts[0] + np.mod(t - ts[0], ts[-1] - ts[0])
        if self.interpolation == "step":
            idx = np.clip(np.searchsorted(ts, t, side="right") - 1, 0, ts.size - 1)
            return vs[idx]
        return np.interp(t, ts, vs)

    def breakpoints(self, t0: float, t1: float) -> np.ndarray:
        ts = self.times
        if self.repeat and ts.size > 1 and ts[-1] > ts[0]:
            span = ts[-1] - ts[0]
            k = np.arange(np.floor((t0 - ts[0]) / span), np.floor((t1 - ts[0]) / span) + 1)
            if k.size * ts.size > 100000:
                return np.empty(0)
            ts = (ts[None, :] + (k * span)[:, None]).ravel()
        return ts[(ts > t0) & (ts < t1)]


# --- spreading demand over pods -------------------------------------------------------------


def per_pod_share(demand: np.ndarray, ready: np.ndarray) -> np.ndarray:
    """Each ready pod's share of the total demand (0 where no pod is ready)."""
    ready = np.asarray(ready, dtype=np.float64)
    return np.divide(demand, ready, out=np.zeros(np.broadcast(demand, ready).shape), where=ready > 0)


def container_fractions(cpu_requests: Sequence[float]) -> np.ndarray:
    """How a pod's share splits over its containers: by CPU request, evenly if none has one."""
    req = np.asarray(cpu_requests, dtype=np.float64)
    total = req.sum()
    if req.size == 0:
        return req
    if total <= 0:
        return np.full(req.shape, 1.0 / req.size)
    return req / total


def cap(rates: np.ndarray, limits: np.ndarray) -> np.ndarray:
    """Cap container rates at their limits (``limits <= 0`` means unlimited)."""
    lim = np.where(limits > 0, limits, np.inf)
    return np.minimum(rates, lim if rates.ndim == lim.ndim else lim[:, None])


_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xBF58476D1CE4E5B9)
_M3 = np.uint64(0x94D049BB133111EB)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer: a cheap, well-spread deterministic hash of uint64 arrays."""
    x = x + _M1
    x = (x ^ (x >> np.uint64(30))) * _M2
    x = (x ^ (x >> np.uint64(27))) * _M3
    return x ^ (x >> np.uint64(31))


def pod_key(namespace: str, name: str) -> int:
    """A stable 64-bit key for a pod (independent of Python's per-process string hashing)."""
    raw = f"{namespace}/{name}".encode()
    return (zlib.crc32(raw) << 32) | zlib.adler32(raw)


def noise_factors(seed: int, keys: np.ndarray, buckets: np.ndarray, sigma: float) -> np.ndarray:
    """Multiplicative noise ``max(0, 1 + sigma·z)``, z ~ N(0, 1), deterministic in
    (seed, pod key, time bucket). ``keys`` shape (C,), ``buckets`` shape (K,) → (C, K)."""
    keys = np.asarray(keys, dtype=np.uint64)
    buckets = np.asarray(buckets).astype(np.int64).astype(np.uint64)
    if sigma <= 0:
        return np.ones((keys.size, buckets.size))
    with np.errstate(over="ignore"):
        base = _mix(keys ^ _mix(np.full(keys.shape, seed, dtype=np.uint64)))
        h1 = _mix(base[:, None] ^ _mix(buckets[None, :]))
        h2 = _mix(h1 ^ _M3)
    u1 = ((h1 >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)
    u2 = (h2 >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    z = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
    return np.maximum(0.0, 1.0 + sigma * z)


def noise_matrix(seeds: np.ndarray, keys: np.ndarray, sigmas: np.ndarray, periods: np.ndarray,
                 ts: np.ndarray) -> np.ndarray:
    """Row-wise :func:`noise_factors`: row i uses its own seed, sigma and bucket period → (C, K).
    Bucket values are identical to ``noise_factors(seed_i, [key_i], floor(ts / period_i), sigma_i)``."""
    out = np.ones((keys.size, ts.size))
    on = sigmas > 0
    if not on.any():
        return out
    keys = np.asarray(keys, dtype=np.uint64)[on]
    seeds = np.asarray(seeds).astype(np.int64).astype(np.uint64)[on]
    buckets = np.floor(ts[None, :] / periods[on, None]).astype(np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        base = _mix(keys ^ _mix(seeds))
        h1 = _mix(base[:, None] ^ _mix(buckets))
        h2 = _mix(h1 ^ _M3)
    u1 = ((h1 >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)
    u2 = (h2 >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    z = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)
    out[on] = np.maximum(0.0, 1.0 + sigmas[on, None] * z)
    return out


def integrate(times: np.ndarray, rates: np.ndarray) -> np.ndarray:
    """Trapezoid integral of ``rates`` (C, K) sampled at ``times`` (K,) → core-seconds (C,)."""
    if times.size < 2:
        return np.zeros(rates.shape[0])
    dt = np.diff(times)
    return ((rates[:, :-1] + rates[:, 1:]) * 0.5 * dt).sum(axis=1)


class WorkloadLoad:
    """Run-time load state of one workload: its model history and its ready-pod count history.

    Both are kept as change points so a kubelet can integrate any past interval lazily (at
    scrape time) without being told about every readiness change as it happens.
    """

    HISTORY = 4096

    def __init__(self, namespace: str, name: str, model: LoadModel, now: float) -> None:
        self.namespace = namespace
        self.name = name
        self._seg_starts: list[float] = [float("-inf")]
        self._seg_models: list[LoadModel] = [model]
        self._seg_origins: list[float] = [model.origin if model.origin is not None else now]
        self._ready_t: list[float] = [float("-inf")]
        self._ready_n: list[int] = [0]
        self._ready_arrays: tuple[np.ndarray, np.ndarray] | None = None
        #: bumped on every model change, so per-row caches (noise, memory) can tell
        self.version = 0

    @property
    def model(self) -> LoadModel:
        return self._seg_models[-1]

    @property
    def ready(self) -> int:
        return self._ready_n[-1]

    def set_model(self, model: LoadModel, now: float) -> None:
        """Switch to ``model`` from ``now`` on (its relative time starts now unless it has an origin)."""
        self._seg_starts.append(now)
        self._seg_models.append(model)
        self._seg_origins.append(model.origin if model.origin is not None else now)
        self.version += 1
        if len(self._seg_starts) > self.HISTORY:
            del self._seg_starts[1:2], self._seg_models[:1], self._seg_origins[:1]

    def ready_changed(self, now: float, delta: int) -> None:
        n = max(0, self._ready_n[-1] + delta)
        if self._ready_t[-1] == now:
            self._ready_n[-1] = n
        else:
            self._ready_t.append(now)
            self._ready_n.append(n)
            if len(self._ready_t) > self.HISTORY:
                del self._ready_t[1:2], self._ready_n[:1]
        self._ready_arrays = None

    def ready_at(self, ts: np.ndarray) -> np.ndarray:
        if self._ready_arrays is None:
            self._ready_arrays = (np.array(self._ready_t), np.array(self._ready_n, dtype=np.float64))
        times, counts = self._ready_arrays
        return counts[np.maximum(np.searchsorted(times, ts, side="right") - 1, 0)]

    def demand_at(self, ts: np.ndarray) -> np.ndarray:
        """Total demand at absolute times ``ts``, honouring model changes."""
        if len(self._seg_models) == 1:
            return self._seg_models[0].demand(ts - self._seg_origins[0])
        out = np.empty(ts.shape)
        seg = np.maximum(np.searchsorted(np.array(self._seg_starts), ts, side="right") - 1, 0)
        for i in np.unique(seg):
            sel = seg == i
            out[sel] = self._seg_models[i].demand(ts[sel] - self._seg_origins[i])
        return out

    def breakpoints(self, t0: float, t1: float) -> np.ndarray | None:
        """Absolute times in (t0, t1) where this workload's per-pod share can jump or bend (noise
        bucket edges excluded: the caller adds those once per noise period); None when there are
        none, which is the common case of a quiet scrape interval."""
        model = self._seg_models[-1]
        if (self._ready_t[-1] <= t0 and self._seg_starts[-1] <= t0
                and type(model).breakpoints is LoadModel.breakpoints):
            return None
        parts = [np.array([t for t in self._ready_t if t0 < t < t1]),
                 np.array([t for t in self._seg_starts if t0 < t < t1])]
        seg_starts = np.array(self._seg_starts)
        first = max(int(np.searchsorted(seg_starts, t0, side="right")) - 1, 0)
        last = max(int(np.searchsorted(seg_starts, t1, side="right")) - 1, 0)
        for i in range(first, last + 1):
            origin = self._seg_origins[i]
            parts.append(self._seg_models[i].breakpoints(t0 - origin, t1 - origin) + origin)
        return np.concatenate(parts)

    def noise_periods(self, t0: float) -> set[float]:
        """Noise periods of the models active after ``t0``."""
        out = set()
        for start, model in zip(reversed(self._seg_starts), reversed(self._seg_models), strict=True):
            if model.noise > 0:
                out.add(model.noise_period)
            if start <= t0:
                break
        return out

    def share_at(self, ts: np.ndarray) -> np.ndarray:
        """Per-ready-pod share of the demand at absolute times ``ts``."""
        if ts.size and ts[0] >= self._ready_t[-1] and ts[0] >= self._seg_starts[-1]:
            n = self._ready_n[-1]  # quiet interval: one model, one ready count
            if n <= 0:
                return np.zeros(ts.shape)
            return self._seg_models[-1].demand(ts - self._seg_origins[-1]) / n
        return per_pod_share(self.demand_at(ts), self.ready_at(ts))
