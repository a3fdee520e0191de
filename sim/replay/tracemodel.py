"""The trace's data model: recorded load of one or more workloads (pods with their lifecycle, per
container CPU and memory samples with requests and limits, replica counts and HPA manifests over
time). The file formats that hold it are :mod:`sim.replay.trace` (native) and
:mod:`sim.replay.csvtrace` (long CSV), which both build these types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


class TraceError(ValueError):
    """A trace file that cannot be read; the message names the file and the place."""


@dataclass
class ContainerTrace:
    """One container's samples (Unix seconds, cores, bytes) and its resources (None = unset)."""

    name: str
    t: np.ndarray
    cpu: np.ndarray
    memory: np.ndarray
    cpu_request: float | None = None
    cpu_limit: float | None = None
    memory_request: float | None = None
    memory_limit: float | None = None


@dataclass
class PodTrace:
    """One pod: lifecycle times (Unix seconds; None = not observed / still alive) and containers."""

    name: str
    containers: list[ContainerTrace]
    created: float | None = None
    started: float | None = None
    ready: float | None = None
    deleted: float | None = None

    def first_sample(self) -> float | None:
        firsts = [float(c.t[0]) for c in self.containers if len(c.t)]
        return min(firsts) if firsts else None

    def last_sample(self) -> float | None:
        lasts = [float(c.t[-1]) for c in self.containers if len(c.t)]
        return max(lasts) if lasts else None


@dataclass
class HPARecord:
    """An HPA manifest (autoscaling/v2) in force from ``since`` (Unix seconds) on."""

    since: float
    manifest: dict[str, Any]


@dataclass
class WorkloadTrace:
    namespace: str
    name: str
    kind: str = ""  # "" when the source does not say (CSV)
    pods: list[PodTrace] = field(default_factory=list)
    #: spec.replicas as a step function: value ``replicas[i]`` from ``replicas_t[i]`` on
    replicas_t: np.ndarray = field(default_factory=lambda: np.empty(0))
    replicas: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    hpas: list[HPARecord] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass
class Trace:
    workloads: list[WorkloadTrace]
    start: float
    end: float
    resolution: float
    source: str = ""

    def workload(self, namespace: str | None, name: str | None) -> WorkloadTrace:
        """The workload called ``namespace/name`` (either may be None when unambiguous)."""
        found = [w for w in self.workloads
                 if (name is None or w.name == name) and (namespace is None or w.namespace == namespace)]
        if len(found) == 1:
            return found[0]
        known = ", ".join(w.key for w in self.workloads) or "none"
        want = f"{namespace or '*'}/{name or '*'}"
        if not found:
            raise TraceError(f"the trace has no workload {want} (it has: {known})")
        raise TraceError(f"the trace has several workloads matching {want} ({known}): pick one with --workload NS/NAME")
