"""Synthetic traces: what a workload would have recorded under an HPA, for examples, tests and benchmarks.

A demand curve is played through the replay engine with the given HPA (so the pod lifecycle and
replica timeline come from the real decision core), then every pod gets per-step samples: its
share of the demand while Ready (with seeded multiplicative noise, capped at its CPU limit),
``startup_cores`` before, and a memory working set of ``base + per_core x cpu``.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np

from autoscaler.hpa import ControllerConfig
from sim.replay.engine import ReplayOptions, replay
from sim.replay.load import WorkloadLoad
from sim.replay.trace import ContainerTrace, HPARecord, PodTrace, Trace, WorkloadTrace

MiB = 2**20


def hpa_manifest(name: str, namespace: str = "default", *, target: int = 60, min_replicas: int = 1,
                 max_replicas: int = 10, behavior: dict[str, Any] | None = None) -> dict[str, Any]:
    """A CPU-utilization autoscaling/v2 HPA for Deployment ``name``."""
    spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
        "minReplicas": min_replicas, "maxReplicas": max_replicas,
        "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
            "type": "Utilization", "averageUtilization": target}}}],
    }
    if behavior is not None:
        spec["behavior"] = behavior
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def synthesize(name: str, start: float, resolution: float, demand: np.ndarray, hpa: dict[str, Any], *,
               namespace: str = "default", cpu_request: float = 0.5, cpu_limit: float | None = 1.0,
               memory_request: float = 256 * MiB, memory_limit: float | None = 512 * MiB,
               memory_base: float = 120 * MiB, memory_per_core: float = 200 * MiB, pending_delay: float = 5.0,
               ready_delay: float = 20.0, startup_cores: float = 0.05, noise: float = 0.1, seed: int = 0,
               initial_replicas: int = 2, controller: ControllerConfig | None = None,
               sync_period: float = 15.0, source: str = "synthetic") -> Trace:
    """A recorded-looking trace of ``demand`` (cores per step) under ``hpa``."""
    rng = np.random.default_rng(seed)
    k_n = len(demand)
    times = start + resolution * np.arange(k_n)
    demand = np.asarray(demand, np.float64)
    load = WorkloadLoad(namespace, name, "Deployment", start, resolution, times, demand, demand.copy(),
                        np.zeros(k_n), 0, 0, np.zeros(k_n), np.full(k_n, initial_replicas),
                        np.full(k_n, initial_replicas), np.full(k_n, initial_replicas), True, cpu_request, cpu_limit,
                        memory_request, memory_limit, memory_base, memory_per_core, pending_delay, ready_delay,
                        startup_cores)
    tl = replay(load, ReplayOptions(hpa, controller or ControllerConfig(), sync_period, "even", seed))
    pods = []
    for j in range(len(tl.pod_created)):
        c, s, r, d = (float(tl.pod_created[j]), float(tl.pod_started[j]), float(tl.pod_ready[j]),
                      float(tl.pod_deleted[j]))
        ks = np.flatnonzero((times >= s + resolution) & (times < d))
        if not len(ks):
            continue
        ready = times[ks] >= r
        share = np.where(ready, demand[ks] / np.maximum(tl.ready[ks], 1), startup_cores)
        cpu = share * np.maximum(0.0, 1.0 + noise * rng.standard_normal(len(ks)))
        if cpu_limit is not None:
            cpu = np.minimum(cpu, cpu_limit)
        mem = memory_base + memory_per_core * cpu + rng.normal(0, 2 * MiB, len(ks))
        if memory_limit is not None:
            mem = np.minimum(mem, memory_limit)
        ct = ContainerTrace("app", times[ks], np.round(cpu, 3), np.rint(mem / 65536) * 65536, cpu_request, cpu_limit, memory_request,
                            memory_limit)
        pods.append(PodTrace(f"{name}-{j:04d}", [ct], c, s, r, None if math.isinf(d) else d))
    change = np.flatnonzero(np.diff(tl.replicas)) + 1
    idx = np.concatenate([[0], change])
    w = WorkloadTrace(namespace, name, "Deployment", pods, times[idx], tl.replicas[idx].astype(np.int64),
                      [HPARecord(start, copy.deepcopy(hpa))])
    return Trace([w], start, float(times[-1]), resolution, source)
