"""The value types handed from stage to stage of the metrics pipeline.

scraper -> :class:`NodeBatch` -> storage -> :class:`NodeUsage` / :class:`PodUsage` -> API and controller.

A batch is columnar (one entry per container series) so the store can ingest it with numpy in
one step instead of looping over samples in Python.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(slots=True)
class NodeBatch:
    """Everything one scrape of one kubelet produced.

    Times are Unix seconds (float, millisecond precision as kubelets report). CPU is cumulative
    core-seconds; memory is working-set bytes. ``node_*`` fields are NaN when the kubelet gave no
    usable node-level point. Container columns all have the same length.
    """

    node: str
    scrape_time: float
    node_start_time: float = float("nan")
    node_timestamp: float = float("nan")
    node_cpu: float = float("nan")
    node_memory: float = float("nan")
    namespaces: list[str] = field(default_factory=list)
    pods: list[str] = field(default_factory=list)
    containers: list[str] = field(default_factory=list)
    start_time: np.ndarray = field(default_factory=lambda: np.empty(0))
    timestamp: np.ndarray = field(default_factory=lambda: np.empty(0))
    cpu: np.ndarray = field(default_factory=lambda: np.empty(0))
    memory: np.ndarray = field(default_factory=lambda: np.empty(0))
    # Exact integer counters when the source has them (Summary API nanoseconds, or the Prometheus
    # value truncated to ns as metrics-server does); the store prefers these over ``cpu``/``node_cpu``.
    cpu_ns: np.ndarray | None = None
    node_cpu_ns: int | None = None
    # Swap usage in bytes (a gauge, like memory) where the kubelet reports it: NaN, or ``swap``
    # None for the whole batch, means "not reported" and the API then omits the key.
    swap: np.ndarray | None = None
    node_swap: float = float("nan")

    def __len__(self) -> int:
        return len(self.containers)


@dataclass(slots=True, frozen=True)
class ContainerUsage:
    name: str
    cpu_nanocores: int
    memory_bytes: int
    swap_bytes: int | None = None  # None: the kubelet reported no swap for it


@dataclass(slots=True, frozen=True)
class NodeUsage:
    """A node's usage as metrics.k8s.io serves it: rate over ``window`` seconds ending at ``timestamp``."""

    name: str
    timestamp: float
    window: float
    cpu_nanocores: int
    memory_bytes: int
    swap_bytes: int | None = None  # None: the kubelet reported no swap for it


@dataclass(slots=True, frozen=True)
class PodUsage:
    namespace: str
    name: str
    timestamp: float
    window: float
    containers: tuple[ContainerUsage, ...]


class MetricsStorage(Protocol):
    """The storage seam, as small as metrics-server's: store a batch, answer queries, say if ready."""

    def store(self, batch: NodeBatch) -> None: ...

    def node_metrics(self, names: list[str]) -> list[NodeUsage | None]: ...

    def pod_metrics(self, keys: list[tuple[str, str]]) -> list[PodUsage | None]: ...

    def ready(self) -> bool: ...


@runtime_checkable
class BulkMetricsStorage(MetricsStorage, Protocol):
    """A storage that also answers many pods at once, column-wise, at a version that changes with
    every write: readers of thousands of pods (API lists, a controller's full sync) cache by it."""

    @property
    def version(self) -> int: ...

    def pod_usage_columns(self, keys: list[tuple[str, str]]) -> PodUsageColumns: ...

    def all_pod_keys(self) -> list[tuple[str, str]]: ...


class MetricsSink(Protocol):
    """What the collector writes: each cycle's batches, the expiry of old samples, a node's removal,
    and the counts it reports as self-metrics."""

    def store_many(self, batches: list[NodeBatch]) -> None: ...

    def expire(self, now: float) -> list[str]: ...

    def forget_node(self, node: str) -> None: ...

    @property
    def stats(self) -> dict: ...


@dataclass(slots=True, frozen=True)
class PodUsageColumns:
    """Latest usage of many pods at once, column by column (no object per pod).

    The API lists tens of thousands of pods per request; building a :class:`PodUsage` and a
    :class:`ContainerUsage` per pod costs more than the rates themselves, so bulk readers get
    arrays. Served pod ``j`` is ``keys[index[j]]`` of the request; its containers (by name) are
    ``offsets[j]:offsets[j + 1]`` of ``names``/``cpu_nanocores``/``memory_bytes``. Times are
    integer microseconds (exact; divide by 1e6 for Unix seconds). ``version`` is the store's
    :attr:`version` the read was made at: an unchanged version means unchanged answers.
    ``swap_bytes`` is per container like ``memory_bytes``, -1 where no swap was reported; it is
    None when no container of the read has swap (the common case costs nothing).
    """

    index: np.ndarray  # intp, ascending positions into the requested keys
    timestamp_us: np.ndarray  # int64, per served pod
    window_us: np.ndarray  # int64, per served pod
    offsets: np.ndarray  # intp, len(index) + 1
    names: list[str]
    cpu_nanocores: np.ndarray  # int64, per container
    memory_bytes: np.ndarray  # int64, per container
    version: int = 0
    swap_bytes: np.ndarray | None = None  # int64, per container, -1 = not reported

    def swap_of(self) -> list[int | None]:
        """Per container: swap bytes, or None where not reported."""
        if self.swap_bytes is None:
            return [None] * len(self.names)
        return [v if v >= 0 else None for v in self.swap_bytes.tolist()]

    def __len__(self) -> int:
        return len(self.index)

    def usages(self, keys: list[tuple[str, str]]) -> list[PodUsage | None]:
        """The same answer as :class:`PodUsage` objects (``None`` where a pod is not served)."""
        out: list[PodUsage | None] = [None] * len(keys)
        conts = list(map(ContainerUsage, self.names, self.cpu_nanocores.tolist(), self.memory_bytes.tolist(),
                         self.swap_of()))
        off = self.offsets.tolist()
        single = len(conts) == len(self.index)
        for j, (i, t, w) in enumerate(zip(self.index.tolist(), self.timestamp_us.tolist(), self.window_us.tolist(),
                                          strict=True)):
            key = keys[i]
            out[i] = PodUsage(key[0], key[1], t / 1_000_000, w / 1_000_000,
                              (conts[j],) if single else tuple(conts[off[j]:off[j + 1]]))
        return out
