"""Per-node container statistics, advanced lazily and vectorized.

A node keeps one row per running container. Cumulative CPU counters are integrated only when
someone asks (a scrape): the interval since the last advance is sampled on a small time grid and
every container's rate on that grid is computed in one numpy expression from its workload's
demand history and ready-pod history (see :mod:`sim.loadmodel`). No per-pod timers exist, so one
process can carry thousands of nodes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sim.kubelet.gofmt import go_float
from sim.loadmodel import MiB, WorkloadLoad, cap, noise_matrix, pod_key

INF = float("inf")


@dataclass(slots=True)
class ContainerRow:
    """One running container as the node's stats provider sees it."""

    namespace: str
    pod: str
    pod_uid: str
    container: str
    start_time: float
    pod_start_time: float
    workload: WorkloadLoad | None = None
    #: share of the pod's CPU (and base memory) this container gets
    frac: float = 1.0
    cpu_limit: float = 0.0
    memory_limit: float = 0.0
    #: cores used when ready, for containers without a workload (system pods)
    fixed_rate: float = 0.005
    ready_since: float = INF
    ready_until: float = INF
    cpu: float = 0.0
    key: int = 0
    labels: str = ""

    def __post_init__(self) -> None:
        if not self.key:
            self.key = pod_key(self.namespace, self.pod)
        if not self.labels:
            self.labels = (
                f'{{container="{_esc(self.container)}",namespace="{_esc(self.namespace)}",pod="{_esc(self.pod)}"}}'
            )


def _esc(value: str) -> str:
    """Prometheus text-format label value escaping."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class NodeStats:
    """CPU and memory of one node and its containers, as a kubelet's stats provider reports them.

    ``step`` bounds the integration grid (seconds between samples); long idle gaps are sampled at
    most ``max_samples`` times. ``swap_capacity`` > 0 makes it a swap-enabled node: the kubelet
    then reports swap usage (each workload pod's ``swap_bytes``, split like memory; 0 for the
    rest), and without it reports none at all.
    """

    def __init__(
        self,
        node_name: str,
        boot_time: float,
        *,
        system_cores: float = 0.08,
        system_memory: float = 600 * MiB,
        memory_capacity: float = 16 * 1024 * MiB,
        swap_capacity: float = 0.0,
        step: float = 1.0,
        max_samples: int = 512,
    ) -> None:
        self.node_name = node_name
        self.boot_time = boot_time
        self.system_cores = system_cores
        self.system_memory = system_memory
        self.memory_capacity = memory_capacity
        self.swap_capacity = swap_capacity
        self.step = step
        self.max_samples = max_samples
        self.rows: list[ContainerRow] = []
        self.last_t = boot_time
        self.node_cpu = system_cores * 0.0
        self._arrays: dict[str, np.ndarray] | None = None
        self._workloads: list[WorkloadLoad] = []

    # --- structure ---------------------------------------------------------------------------

    def add(self, row: ContainerRow, now: float) -> None:
        self.advance(now)
        self._invalidate()
        self.rows.append(row)

    def remove_pod(self, namespace: str, pod: str, now: float) -> list[ContainerRow]:
        self.advance(now)
        gone = [r for r in self.rows if r.namespace == namespace and r.pod == pod]
        if gone:
            self._invalidate()
            self.rows = [r for r in self.rows if not (r.namespace == namespace and r.pod == pod)]
        return gone

    def pod_rows(self, namespace: str, pod: str) -> list[ContainerRow]:
        return [r for r in self.rows if r.namespace == namespace and r.pod == pod]

    def changed(self) -> None:
        """Call after editing rows' times/limits in place (readiness, restarts)."""
        self._invalidate()

    def _invalidate(self) -> None:
        self._sync_back()
        self._arrays = None

    def _sync_back(self) -> None:
        if self._arrays is not None:
            cpu = self._arrays["cpu"]
            for i, r in enumerate(self.rows):
                r.cpu = float(cpu[i])

    def _build(self) -> dict[str, np.ndarray]:
        if self._arrays is not None:
            if all(w.version == v for w, v in zip(self._workloads, self._versions, strict=True)):
                return self._arrays
            self._invalidate()  # a workload switched load model: per-row parameters changed
        rows = self.rows
        wl_index: dict[int, int] = {}
        self._workloads = []
        wl = np.empty(len(rows), dtype=np.int64)
        for i, r in enumerate(rows):
            if r.workload is None:
                wl[i] = -1
                continue
            j = wl_index.get(id(r.workload))
            if j is None:
                j = wl_index[id(r.workload)] = len(self._workloads)
                self._workloads.append(r.workload)
            wl[i] = j

        def col(attr: str) -> np.ndarray:
            return np.array([getattr(r, attr) for r in rows], dtype=np.float64)

        pods: dict[tuple[str, str], int] = {}
        pod_idx = np.array([pods.setdefault((r.namespace, r.pod), len(pods)) for r in rows], dtype=np.int64)
        self._pod_keys = list(pods)
        self._prom_order = sorted(range(len(rows)), key=lambda i: (rows[i].container, rows[i].namespace, rows[i].pod))
        self._pod_order = sorted(range(len(pods)), key=lambda i: self._pod_keys[i])
        self._pod_labels = [
            f'{{namespace="{_esc(ns)}",pod="{_esc(name)}"}}' for ns, name in self._pod_keys
        ]
        self._arrays = {
            "wl": wl,
            "pod": pod_idx,
            "cpu": col("cpu"),
            "frac": col("frac"),
            "limit": col("cpu_limit"),
            "mem_limit": col("memory_limit"),
            "fixed": col("fixed_rate"),
            "start": col("start_time"),
            "ready_since": col("ready_since"),
            "ready_until": col("ready_until"),
            "keys": np.array([r.key for r in rows], dtype=np.uint64),
        }
        models = [r.workload.model if r.workload is not None else None for r in rows]
        frac = self._arrays["frac"]
        self._arrays["scale"] = np.where(wl < 0, self._arrays["fixed"], frac)
        self._arrays["startup"] = np.array([m.startup_cores if m else r.fixed_rate for m, r in zip(models, rows, strict=True)]) * np.where(wl < 0, 1.0, frac)
        self._arrays["seed"] = np.array([m.seed if m else 0 for m in models], dtype=np.int64)
        self._arrays["sigma"] = np.array([m.noise if m else 0.0 for m in models])
        self._arrays["period"] = np.array([m.noise_period if m else 15.0 for m in models])
        self._arrays["any_noise"] = bool((self._arrays["sigma"] > 0).any())
        self._arrays["mem_base"] = np.array([m.memory_base if m else 16 * MiB for m in models]) * np.where(wl < 0, 1.0, frac)
        self._arrays["mem_per_core"] = np.array([m.memory_per_core if m else 0.0 for m in models])
        # whole pages (rounded: a 3:1 split of 200Mi is exactly 150Mi + 50Mi, float fractions or not)
        self._arrays["swap"] = np.round(np.array([m.swap_bytes if m else 0.0 for m in models]) * frac / 4096.0) * 4096.0
        self._versions = [w.version for w in self._workloads]
        self._start_text = [go_float(r.start_time) for r in rows]
        return self._arrays

    # --- dynamics ----------------------------------------------------------------------------

    def rates(self, ts: np.ndarray) -> np.ndarray:
        """CPU rate (cores) of every container at absolute times ``ts`` → (C, K)."""
        a = self._build()
        n = len(self.rows)
        if n == 0:
            return np.zeros((0, ts.size))
        shares = np.empty((len(self._workloads) + 1, ts.size))
        shares[-1] = 1.0  # rows without a workload: their fixed rate (×1)
        for j, w in enumerate(self._workloads):
            shares[j] = w.share_at(ts)
        wl = a["wl"]
        share = shares[wl] * a["scale"][:, None]
        if a["any_noise"]:
            share *= noise_matrix(a["seed"], a["keys"], a["sigma"], a["period"], ts)
        t = ts[None, :]
        ready = (t >= a["ready_since"][:, None]) & (t < a["ready_until"][:, None])
        running = t >= a["start"][:, None]
        rate = np.where(ready, share, a["startup"][:, None])
        rate = np.where(running, rate, 0.0)
        return cap(rate, a["limit"])

    def integral(self, t0: float, t1: float) -> np.ndarray:
        """Core-seconds each container used in [t0, t1]: the midpoint rule on a grid that contains
        every point where a rate can jump (readiness, starts, demand steps, noise buckets), so
        piecewise-constant demand integrates exactly and smooth demand to second order."""
        a = self._build()
        k = int(min(self.max_samples, max(1, math.ceil((t1 - t0) / self.step))))
        parts = [np.linspace(t0, t1, k + 1)]
        for col in ("start", "ready_since", "ready_until"):
            v = a[col]
            parts.append(v[(v > t0) & (v < t1)])
        periods: set[float] = set()
        for w in self._workloads:
            bp = w.breakpoints(t0, t1)
            if bp is not None:
                parts.append(bp)
            periods |= w.noise_periods(t0)
        for period in periods:
            if (t1 - t0) / period < 100000:
                parts.append(np.arange(np.floor(t0 / period) + 1, np.ceil(t1 / period)) * period)
        grid = np.unique(np.concatenate(parts))
        mids = (grid[:-1] + grid[1:]) * 0.5
        return self.rates(mids) @ np.diff(grid)

    def advance(self, t: float) -> None:
        """Integrate every counter up to time ``t`` (no-op if already there)."""
        if t <= self.last_t:
            return
        span = t - self.last_t
        if self.rows:
            inc = self.integral(self.last_t, t)
            a = self._arrays
            assert a is not None
            a["cpu"] += inc
            self.node_cpu += float(inc.sum())
        self.node_cpu += self.system_cores * span
        self.last_t = t

    def memory(self, t: float, rates: np.ndarray | None = None) -> np.ndarray:
        """Working-set bytes of every container at time ``t`` (page aligned, capped at limits)."""
        a = self._build()
        if not self.rows:
            return np.zeros(0)
        if rates is None:
            rates = self.rates(np.array([t]))[:, 0]
        base, per_core = a["mem_base"], a["mem_per_core"]
        ws = base + per_core * rates
        lim = a["mem_limit"]
        ws = np.where(lim > 0, np.minimum(ws, lim), ws)
        return np.floor(ws / 4096.0) * 4096.0

    def snapshot(self, t: float) -> Snapshot:
        """Everything a stats endpoint reports at stat time ``t`` (containers started after ``t``
        are not reported yet)."""
        self.advance(t)
        a = self._build()
        cpu = a["cpu"].copy()
        node_cpu = self.node_cpu
        if t < self.last_t:
            # A structural change already integrated past the stat time: rewind to ``t``.
            span = self.last_t - t
            if self.rows:
                inc = self.integral(t, self.last_t)
                cpu = np.maximum(cpu - inc, 0.0)
                node_cpu -= float(inc.sum())
            node_cpu = max(0.0, node_cpu - self.system_cores * span)
        rates = self.rates(np.array([t]))[:, 0] if self.rows else np.zeros(0)
        mem = self.memory(t, rates)
        visible = a["start"] <= t if self.rows else np.zeros(0, dtype=bool)
        node_rate = float(rates.sum()) + self.system_cores
        node_mem = float(mem.sum()) + self.system_memory
        swap = node_swap = None
        if self.swap_capacity > 0:
            swap = a["swap"] if self.rows else np.zeros(0)
            node_swap = min(float(swap[visible].sum()), self.swap_capacity)
        return Snapshot(self, t, cpu, rates, mem, visible, node_cpu, node_rate, node_mem, swap, node_swap)

    def restart(self, namespace: str, pod: str, container: str, now: float) -> ContainerRow | None:
        """A container restart: counter back to 0, new start time, not ready again."""
        self.advance(now)
        self._invalidate()
        for r in self.rows:
            if r.namespace == namespace and r.pod == pod and r.container == container:
                r.cpu = 0.0
                r.start_time = now
                r.ready_since = INF
                return r
        return None


@dataclass
class Snapshot:
    stats: NodeStats
    time: float
    cpu: np.ndarray
    rates: np.ndarray
    memory: np.ndarray
    visible: np.ndarray
    node_cpu: float
    node_rate: float
    node_memory: float
    #: per container and node swap bytes; None on nodes without swap (the kubelet reports none)
    swap: np.ndarray | None = None
    node_swap: float | None = None
