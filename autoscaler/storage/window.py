"""The window store: recent history of every node and container, the single source of usage.

metrics-server keeps two samples per series and rebuilds its maps from every scrape. We keep a
ring of the last ``K = ceil(history / resolution) + 1`` samples per series in numpy arrays
(:mod:`autoscaler.storage.rings`) so that the API can serve metrics-server's latest-pair rates,
the controller can ask for rates over a longer window, and recording can read raw history, all
from one place. Semantics follow metrics-server (docs/metrics-pipeline.md lists where and why
we differ):

* swap usage, where the kubelet reports it, rides along with the latest sample and never makes a
  node or pod unusable (a kubelet without swap reports none, and the API omits the key);
* a node is usable only with a timestamp, CPU ≠ 0 and memory ≠ 0; a pod only when every
  container it reported in the latest scrape has a timestamp, CPU ≠ 0 and memory ≠ 0, and is
  served only when every one of those containers has a valid rate;
* restarts (start time at/after the previous sample), counter resets and clock steps back
  clear that series' ring; a repeated timestamp replaces the latest sample;
* a container first seen at an age within ``[10 s, resolution)`` gets a rate at once, measured
  from its start (the fresh-container rule);
* a pod that vanishes from its node's scrape, a forgotten node, and nodes not scraped for
  ``history`` are evicted; a node not scraped successfully for ``stale_after`` is not served.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field

import numpy as np
import structlog

from autoscaler.storage.rings import Rings
from autoscaler.storage.types import NodeBatch, NodeUsage, PodUsage, PodUsageColumns

log = structlog.get_logger(__name__)

FRESH_CONTAINER_MIN_AGE = 10.0  # seconds; metrics-server's lower bound for the fresh-container rule
_US = 1_000_000


@dataclass(eq=False, slots=True)
class _Node:
    name: str
    row: int = -1
    last_scrape: float = -math.inf
    sig: tuple[list[str], list[str], list[str]] | None = None
    batch_rows: np.ndarray = field(default_factory=lambda: np.empty(0, np.intp))
    pod_of: np.ndarray = field(default_factory=lambda: np.empty(0, np.intp))
    pod_keys: list[tuple[str, str]] = field(default_factory=list)
    pod_complete: np.ndarray = field(default_factory=lambda: np.empty(0, bool))
    has_dups: bool = False
    gen: int = 0


@dataclass(eq=False, slots=True)
class _Pod:
    node: _Node
    index: int  # position in node.pod_keys / node.pod_complete
    names: list[str]  # sorted container names
    rows: np.ndarray


def _us(values: np.ndarray) -> np.ndarray:
    """Unix seconds to int64 microseconds; non-finite values become 0."""
    return np.round(np.where(np.isfinite(values), values, 0.0) * _US).astype(np.int64)


def _ns(cpu_seconds: np.ndarray) -> np.ndarray:
    """Cumulative CPU seconds to int64 nanoseconds, truncated like metrics-server; unusable -> 0."""
    ok = np.isfinite(cpu_seconds) & (cpu_seconds > 0)
    return np.trunc(np.where(ok, cpu_seconds, 0.0) * 1e9).astype(np.int64)


class WindowStore:
    """Implements :class:`autoscaler.storage.types.MetricsStorage` over numpy rings."""

    def __init__(self, resolution: float = 15.0, history: float = 900.0, stale_after: float | None = None) -> None:
        if resolution <= 0:
            raise ValueError("resolution must be positive")
        if history < resolution:
            raise ValueError(f"metric history ({history}s) must be at least the resolution ({resolution}s)")
        self.resolution = float(resolution)
        self.history = float(history)
        self.stale_after = float(stale_after) if stale_after is not None else 2.5 * self.resolution
        self.k = max(2, math.ceil(history / resolution) + 1)
        self._lock = threading.RLock()
        self._containers = Rings(self.k)
        self._node_rings = Rings(self.k, capacity=16)
        self._nodes: dict[str, _Node] = {}
        self._pods: dict[tuple[str, str], _Pod] = {}
        self._now = -math.inf
        self._gen = 0
        self._version = 0  # bumped by every change a read could see (see :attr:`version`)
        self._ready_cache: bool | None = None

    # -- writing ---------------------------------------------------------------------------------
    def store(self, batch: NodeBatch) -> None:
        """Ingest one node's scrape; that node's pods not in the batch are evicted."""
        self.store_many([batch])

    def store_many(self, batches: list[NodeBatch]) -> None:
        """Ingest a whole cycle at once: the bookkeeping is per node, the arithmetic one numpy pass."""
        unique: dict[str, NodeBatch] = {}
        for b in batches:
            unique[b.node] = b
        with self._lock:
            self._ready_cache = None
            self._version += 1
            n_rows: list[int] = []
            n_vals: list[tuple[int, int, int, int, int]] = []
            used: list[tuple[_Node, NodeBatch]] = []
            self._containers.reserve(sum(len(b) for b in unique.values() if (e := self._nodes.get(b.node)) is None
                                         or e.sig != (b.namespaces, b.pods, b.containers)))
            for b in unique.values():
                self._now = max(self._now, b.scrape_time)
                entry = self._nodes.get(b.node)
                if entry is None:
                    entry = self._nodes[b.node] = _Node(b.node)
                entry.last_scrape = max(entry.last_scrape, b.scrape_time)
                point = self._node_point(b)
                if point is not None:
                    if entry.row < 0:
                        entry.row = int(self._node_rings.alloc(1)[0])
                    n_rows.append(entry.row)
                    n_vals.append(point)
                sig = (b.namespaces, b.pods, b.containers)
                if entry.sig is None or entry.sig != sig or (entry.has_dups and entry.gen != self._gen):
                    self._rebuild(entry, b)
                if len(b) and entry.pod_keys:
                    used.append((entry, b))
            if n_rows:
                v = np.array(n_vals, dtype=np.int64).reshape(-1, 5)
                self._node_rings.ingest(np.array(n_rows, np.intp), v[:, 0], v[:, 1], v[:, 2], v[:, 3],
                                        swap=v[:, 4] if (v[:, 4] >= 0).any() else None)
            if used:
                self._ingest_containers(used)

    def _ingest_containers(self, used: list[tuple[_Node, NodeBatch]]) -> None:
        """All nodes' container samples in one pass: validity, whole-pod drops, ring append."""
        offsets = np.cumsum([0] + [len(e.pod_keys) for e, _ in used])
        pod_of = np.concatenate([e.pod_of + off for (e, _), off in zip(used, offsets[:-1].tolist(), strict=True)])
        rows = np.concatenate([e.batch_rows for e, _ in used])
        ts = np.concatenate([b.timestamp for _, b in used]).astype(np.float64, copy=False)
        mem_f = np.concatenate([b.memory for _, b in used]).astype(np.float64, copy=False)
        start = np.concatenate([b.start_time for _, b in used]).astype(np.float64, copy=False)
        cpu_ns = np.concatenate([
            np.asarray(b.cpu_ns, dtype=np.int64) if b.cpu_ns is not None else _ns(np.asarray(b.cpu, dtype=np.float64))
            for _, b in used])
        with np.errstate(invalid="ignore"):
            valid = np.isfinite(ts) & (cpu_ns > 0) & (mem_f >= 1)  # NaN memory compares False
        pod_ok = np.ones(int(offsets[-1]), bool)
        pod_ok[pod_of[~valid]] = False
        for (entry, _), lo, hi in zip(used, offsets[:-1].tolist(), offsets[1:].tolist(), strict=True):
            entry.pod_complete = pod_ok[lo:hi]
        take = pod_ok[pod_of] & (rows >= 0)
        if not take.any():
            return
        start = start[take]
        start_us = np.where(np.isfinite(start) & (start > 0), _us(start), 0)
        mem = np.trunc(mem_f[take]).astype(np.int64)
        swap = None
        if any(b.swap is not None for _, b in used):  # only batches from swap-reporting kubelets pay
            sw = np.concatenate([np.full(len(b), np.nan) if b.swap is None else np.asarray(b.swap, np.float64)
                                 for _, b in used])[take]
            with np.errstate(invalid="ignore"):
                swap = np.where(sw >= 0, np.trunc(np.nan_to_num(sw, nan=-1.0)), -1).astype(np.int64)
        lo_us = round(FRESH_CONTAINER_MIN_AGE * _US)
        self._containers.ingest(rows[take], _us(ts[take]), cpu_ns[take], mem, start_us, lo_us,
                                round(self.resolution * _US), swap)

    @staticmethod
    def _node_point(b: NodeBatch) -> tuple[int, int, int, int, int] | None:
        ts, cpu, mem = b.node_timestamp, b.node_cpu, b.node_memory
        if not (math.isfinite(ts) and math.isfinite(mem)):
            return None
        cpu_ns = b.node_cpu_ns if b.node_cpu_ns is not None else (int(cpu * 1e9) if math.isfinite(cpu) else 0)
        if cpu_ns <= 0 or int(mem) <= 0:
            return None
        start = b.node_start_time
        start_us = round(start * _US) if math.isfinite(start) and start > 0 else 0
        swap = int(b.node_swap) if math.isfinite(b.node_swap) and b.node_swap >= 0 else -1
        return round(ts * _US), cpu_ns, int(mem), start_us, swap

    def _rebuild(self, entry: _Node, b: NodeBatch) -> None:
        """The node's container set changed: map batch positions to series rows, evict the rest."""
        n = len(b)
        # one object per distinct string (decoders hand us a fresh copy on every line)
        canon: dict[str, str] = {}
        namespaces, pod_names, cont_names = ([canon.setdefault(x, x) for x in col]
                                             for col in (b.namespaces, b.pods, b.containers))
        pod_index: dict[tuple[str, str], int] = {}
        pod_of = np.empty(n, np.intp)
        members: list[list[int]] = []
        for i, key in enumerate(zip(namespaces, pod_names, strict=True)):
            j = pod_index.get(key)
            if j is None:
                j = pod_index[key] = len(members)
                members.append([])
            pod_of[i] = j
            members[j].append(i)
        batch_rows = np.full(n, -1, np.intp)
        keys = list(pod_index)
        has_dups = False
        plans: list[tuple[tuple[str, str], int, list[str], dict[str, int], dict[str, int]]] = []
        new_series = 0
        for key, j in pod_index.items():
            existing = self._pods.get(key)
            if existing is not None and existing.node is not entry:
                owner = existing.node
                if owner.name in self._nodes and owner.last_scrape > b.scrape_time - self.resolution / 2:
                    has_dups = True
                    log.error("pod reported by two nodes; keeping the first", pod="/".join(key),
                              node=entry.name, first_node=owner.name)
                    continue
                self._evict_pod(key)
                existing = None
            by_name: dict[str, int] = {}
            for i in members[j]:
                c = cont_names[i]
                if c in by_name:
                    log.warning("duplicate container in kubelet response; ignoring the repeat",
                                node=entry.name, pod="/".join(key), container=c)
                    continue
                by_name[c] = i
            old = dict(zip(existing.names, existing.rows.tolist(), strict=True)) if existing else {}
            names = sorted(by_name)
            new_series += sum(c not in old for c in names)
            plans.append((key, j, names, by_name, old))
        # rows for every new series of the node in one allocation
        fresh_rows = iter(self._containers.alloc(new_series).tolist()) if new_series else iter(())
        positions: list[int] = []
        all_rows: list[int] = []
        for key, j, names, by_name, old in plans:
            rows = [old.pop(c) if c in old else next(fresh_rows) for c in names]
            if old:
                self._containers.release(list(old.values()))
            self._pods[key] = _Pod(entry, j, names, np.asarray(rows, np.intp))
            positions.extend(by_name[c] for c in names)
            all_rows.extend(rows)
        batch_rows[positions] = all_rows
        for key in entry.pod_keys:
            if key not in pod_index:
                pod = self._pods.get(key)
                if pod is not None and pod.node is entry:
                    self._evict_pod(key)
        entry.sig = (namespaces, pod_names, cont_names)
        entry.batch_rows, entry.pod_of, entry.pod_keys = batch_rows, pod_of, keys
        entry.pod_complete = np.ones(len(keys), bool)
        entry.has_dups, entry.gen = has_dups, self._gen

    def _evict_pod(self, key: tuple[str, str]) -> None:
        pod = self._pods.pop(key, None)
        if pod is not None:
            self._containers.release(pod.rows)
            pod.node.sig = None  # its cached batch-to-row map may point at the released rows
            self._gen += 1

    def forget_node(self, node: str) -> None:
        """The node was deleted (or deselected): drop it and every pod it reported."""
        with self._lock:
            entry = self._nodes.pop(node, None)
            if entry is None:
                return
            self._ready_cache = None
            self._version += 1
            if entry.row >= 0:
                self._node_rings.release([entry.row])
            for key in entry.pod_keys:
                pod = self._pods.get(key)
                if pod is not None and pod.node is entry:
                    self._evict_pod(key)
            self._gen += 1

    def expire(self, now: float) -> list[str]:
        """Advance the store's clock; evict nodes not scraped successfully for ``history``."""
        with self._lock:
            if now > self._now:  # the clock decides which nodes are fresh enough to serve
                self._now = now
                self._version += 1
            self._ready_cache = None
            gone = [name for name, e in self._nodes.items() if e.last_scrape < now - self.history]
        for name in gone:
            self.forget_node(name)
        return gone

    # -- reading ---------------------------------------------------------------------------------
    def _fresh(self, entry: _Node) -> bool:
        return entry.last_scrape >= self._now - self.stale_after

    def node_metrics(self, names: list[str]) -> list[NodeUsage | None]:
        with self._lock:
            entries = [self._nodes.get(n) for n in names]
            idx = [i for i, e in enumerate(entries) if e is not None and e.row >= 0 and self._fresh(e)]
            out: list[NodeUsage | None] = [None] * len(names)
            if not idx:
                return out
            rows = np.array([entries[i].row for i in idx], np.intp)  # type: ignore[union-attr]
            ok, t1, win, cores, mem = self._node_rings.latest_pair(rows)
            sw = self._node_rings.latest_swap(rows)
            swap = [None] * len(idx) if sw is None else [v if v >= 0 else None for v in sw.tolist()]
            for j, i in enumerate(idx):
                if ok[j]:
                    out[i] = NodeUsage(names[i], int(t1[j]) / _US, int(win[j]) / _US, int(cores[j]), int(mem[j]),
                                       swap[j])
            return out

    def _servable(self, key: tuple[str, str]) -> _Pod | None:
        pod = self._pods.get(key)
        if pod is None or not len(pod.rows) or not self._fresh(pod.node):
            return None
        if pod.node.pod_complete[pod.index]:
            return pod
        return None

    def pod_metrics(self, keys: list[tuple[str, str]]) -> list[PodUsage | None]:
        """metrics-server's latest-pair usage of each pod; ``None`` where not servable."""
        return self._pods_usage(keys, None)

    def pod_cpu_window(self, keys: list[tuple[str, str]], window: float) -> list[PodUsage | None]:
        """CPU rate over about ``window`` seconds (the oldest sample within ``window`` plus half a
        resolution of the latest), for the controller; memory is the latest working set."""
        return self._pods_usage(keys, window)

    @property
    def version(self) -> int:
        """Changes whenever a read could answer differently (ingest, eviction, the clock moving on);
        readers cache what they derive from the store against it (the API's rendered JSON)."""
        return self._version

    def pod_usage_columns(self, keys: list[tuple[str, str]]) -> PodUsageColumns:
        """:meth:`pod_metrics` for bulk readers: the same answer as arrays, no object per pod."""
        return self._pod_columns(keys, None)

    def _pods_usage(self, keys: list[tuple[str, str]], window: float | None) -> list[PodUsage | None]:
        return self._pod_columns(keys, window).usages(keys)

    def _pod_columns(self, keys: list[tuple[str, str]], window: float | None) -> PodUsageColumns:
        """The servable pods among ``keys`` and their usage: one numpy pass over all their series.

        A pod is served only if every container has a rate; its timestamp and window are those of
        its container with the oldest latest sample (the first such, in name order).
        """
        with self._lock:
            get = self._pods.get
            try:
                pods = list(map(get, keys))
            except TypeError:  # unhashable keys (lists): normalise
                pods = [get(tuple(k)) for k in keys]  # type: ignore[arg-type]
            limit = self._now - self.stale_after
            idx = [i for i, p in enumerate(pods)
                   if p is not None and p.node.last_scrape >= limit and len(p.rows) and p.node.pod_complete[p.index]]
            if not idx:
                empty = np.empty(0, np.int64)
                return PodUsageColumns(np.empty(0, np.intp), empty, empty, np.zeros(1, np.intp), [], empty, empty,
                                       self._version)
            served = [pods[i] for i in idx]
            row_lists = [p.rows for p in served]  # type: ignore[union-attr]
            counts = np.fromiter(map(len, row_lists), np.intp, len(served))
            rows = np.concatenate(row_lists)
            if window is None:
                ok, t1, win, cores, mem = self._containers.latest_pair(rows)
            else:
                ok, t1, win, cores, mem = self._containers.window_pair(
                    rows, round(window * _US), round(self.resolution * _US / 2))
            swap = self._containers.latest_swap(rows)
            starts = np.zeros(len(served), np.intp)
            np.cumsum(counts[:-1], out=starts[1:])
            if len(rows) == len(served):  # one container per pod: nothing to group
                pod_ok, first = ok, np.arange(len(rows))
            else:
                pod_ok = np.logical_and.reduceat(ok, starts)
                # lexsort is stable: within a pod, the earliest timestamp, ties by name order
                first = np.lexsort((t1, np.repeat(np.arange(len(served)), counts)))[starts]
            keep = np.flatnonzero(pod_ok)
            version = self._version
            if len(keep) == len(served):
                names = ([p.names[0] for p in served] if len(rows) == len(served)  # type: ignore[union-attr]
                         else [n for p in served for n in p.names])  # type: ignore[union-attr]
                c_rows: slice | np.ndarray = slice(None)
                kept_counts = counts
            else:
                names = [n for j in keep.tolist() for n in served[j].names]  # type: ignore[union-attr]
                c_rows = np.repeat(pod_ok, counts)
                kept_counts = counts[keep]
        offsets = np.zeros(len(keep) + 1, np.intp)
        np.cumsum(kept_counts, out=offsets[1:])
        if swap is not None:
            swap = swap[c_rows]
            if not (swap >= 0).any():
                swap = None
        return PodUsageColumns(np.asarray(idx, np.intp)[keep], t1[first[keep]], win[first[keep]], offsets, names,
                               cores[c_rows], mem[c_rows], version, swap)

    def all_pod_keys(self) -> list[tuple[str, str]]:
        """Every pod with stored series (servable or not)."""
        with self._lock:
            return list(self._pods)

    def all_node_names(self) -> list[str]:
        with self._lock:
            return list(self._nodes)

    def ready(self) -> bool:
        """metrics-server v0.9: at least one node and at least one pod can be served."""
        with self._lock:
            if self._ready_cache is None:
                self._ready_cache = self._compute_ready()
            return self._ready_cache

    def _compute_ready(self) -> bool:
        rows = np.array([e.row for e in self._nodes.values() if e.row >= 0 and self._fresh(e)], np.intp)
        if not len(rows) or not self._node_rings.latest_pair(rows)[0].any():
            return False
        has_pair = self._containers.count >= 2  # by construction a pair always gives a valid rate
        return any(self._servable(key) is not None and bool(has_pair[pod.rows].all())
                   for key, pod in self._pods.items())

    def series(self, namespace: str, pod: str) -> dict:
        """Raw history of one pod for recording/replay: per container, oldest first."""
        with self._lock:
            p = self._pods.get((namespace, pod))
            if p is None:
                return {}
            containers = {}
            for name, row in zip(p.names, p.rows.tolist(), strict=True):
                ts, cpu, mem = self._containers.history(row)
                start = int(self._containers.start[row])
                containers[name] = {
                    "start_time": start / _US if start else None,
                    "timestamp": ts / _US,
                    "cpu": cpu / 1e9,
                    "memory": mem.astype(np.float64),
                }
            return {"namespace": namespace, "name": pod, "node": p.node.name, "containers": containers}

    @property
    def stats(self) -> dict:
        """Series counts, servable points (metrics_server_storage_points) and bytes held."""
        with self._lock:
            c, nr = self._containers, self._node_rings
            live_c = np.flatnonzero(c.count[: c._next] >= 2)
            live_n = np.flatnonzero(nr.count[: nr._next] >= 2)
            ring_bytes = c.nbytes + nr.nbytes
            return {
                "nodes": len(self._nodes),
                "pods": len(self._pods),
                "node_series": nr.live,
                "container_series": c.live,
                "node_points": len(live_n),
                "container_points": len(live_c),
                "samples_per_series": self.k,
                "bytes_per_series": 3 * 8 * self.k + 24,
                "capacity_series": c.capacity + nr.capacity,
                "bytes": ring_bytes,
            }
