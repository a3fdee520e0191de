"""The value types handed from stage to stage of the metrics pipeline.

scraper -> :class:`NodeBatch` -> storage -> :class:`NodeUsage` / :class:`PodUsage` -> API and controller.

A batch is columnar (one entry per container series) so the store can ingest it with numpy in
one step instead of looping over samples in Python.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

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

    def __len__(self) -> int:
        return len(self.containers)


@dataclass(slots=True, frozen=True)
class ContainerUsage:
    name: str
    cpu_nanocores: int
    memory_bytes: int


@dataclass(slots=True, frozen=True)
class NodeUsage:
    """A node's usage as metrics.k8s.io serves it: rate over ``window`` seconds ending at ``timestamp``."""

    name: str
    timestamp: float
    window: float
    cpu_nanocores: int
    memory_bytes: int


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
