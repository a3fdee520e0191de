"""Scores of a run: cost, an SLO proxy, flapping and responsiveness, all numpy over the timeline.

Definitions (docs/replay.md, "Scores"), with ``dt`` the trace resolution, ``D`` the demand,
``R`` ready pods, ``P`` existing pods, ``S`` spec.replicas, ``r`` the CPU request per pod and
``u`` the HPA's CPU utilization target (1.0 when the HPA has none):

* cost: ``pod_hours = Σ P·dt/3600``; ``core_hours = Σ P·r·dt/3600`` (requests reserve capacity);
* capacity ``C = R·r``; ``under_provisioned_seconds = Σ dt [D > C]``;
  ``unmet_core_seconds = Σ max(0, D − C)·dt``; ``above_target_seconds = Σ dt [D > u·C]``;
  ``over_provisioned_core_hours = Σ max(0, C − D/u)·dt/3600``;
* ``scale_events``: changes of S; ``reversals``: consecutive scale events in opposite directions;
* ``pinned_max_seconds`` / ``pinned_min_seconds``: time with S at maxReplicas / minReplicas;
* time to capacity: a *demand step* starts where the replicas needed at target,
  ``N = clip(ceil(D/(u·r)), min, max)``, rose by at least 2 and 25 % within one minute; its
  response time is until ``R ≥ N`` (censored at the end of the trace).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from sim.replay.engine import Timeline

#: scores where larger is worse (all of them); used to rank and to name objectives
SCORE_KEYS = (
    "pod_hours", "core_hours", "under_provisioned_seconds", "unmet_core_seconds", "above_target_seconds",
    "over_provisioned_core_hours", "scale_events", "reversals", "pinned_max_seconds", "pinned_min_seconds",
    "time_to_capacity_mean_seconds", "time_to_capacity_max_seconds",
)


def scale_event_stats(replicas: np.ndarray) -> tuple[int, int]:
    """(number of scale events, number of direction reversals) of a replica timeline."""
    d = np.diff(replicas)
    signs = np.sign(d[d != 0])
    return len(signs), int(np.count_nonzero(signs[1:] != signs[:-1]))


def demand_steps(needed: np.ndarray, lookback: int) -> np.ndarray:
    """Indices where ``needed`` rose by >= 2 and >= 25 % over ``lookback`` steps (first step of each rise)."""
    if len(needed) <= lookback:
        return np.empty(0, np.int64)
    prev = np.concatenate([np.full(lookback, needed[0]), needed[:-lookback]])
    rise = (needed - prev >= 2) & (needed >= 1.25 * prev)
    starts = np.flatnonzero(rise & ~np.concatenate([[False], rise[:-1]]))
    return starts


def time_to_capacity(enough: np.ndarray, ready: np.ndarray, steps: np.ndarray, dt: float) -> list[float]:
    """Seconds from each demand step ``k`` until ``ready >= enough[k]``."""
    out = []
    for k in steps.tolist():
        reached = np.flatnonzero(ready[k:] >= enough[k])
        out.append(float(reached[0]) * dt if len(reached) else float(len(ready) - k) * dt)
    return out


def score(tl: Timeline, demand: np.ndarray, dt: float, cpu_request: float | None, target: float | None,
          min_replicas: int, max_replicas: int) -> dict[str, Any]:
    """All scores of one timeline (see the module docstring for the definitions)."""
    u = target if target else 1.0
    r = cpu_request or 0.0
    pods = tl.pods.astype(np.float64)
    cap = tl.ready * r
    out: dict[str, Any] = {
        "pod_hours": float(pods.sum() * dt / 3600),
        "core_hours": float(pods.sum() * r * dt / 3600),
    }
    short = np.maximum(demand - cap, 0.0)
    out["under_provisioned_seconds"] = float(np.count_nonzero(demand > cap + 1e-12) * dt)
    out["unmet_core_seconds"] = float(short.sum() * dt)
    out["above_target_seconds"] = float(np.count_nonzero(demand > u * cap + 1e-12) * dt)
    out["over_provisioned_core_hours"] = float(np.maximum(cap - demand / u, 0.0).sum() * dt / 3600)
    events, reversals = scale_event_stats(tl.replicas)
    out["scale_events"] = events
    out["reversals"] = reversals
    out["pinned_max_seconds"] = float(np.count_nonzero(tl.replicas >= max_replicas) * dt)
    out["pinned_min_seconds"] = float(np.count_nonzero(tl.replicas <= min_replicas) * dt)
    if r > 0:
        needed = np.clip(np.ceil(demand / (u * r) - 1e-9), min_replicas, max_replicas).astype(np.int64)
        steps = demand_steps(needed, max(1, math.ceil(60.0 / dt)))
        enough = np.clip(np.ceil(demand / (1.1 * u * r) - 1e-9), min_replicas, max_replicas)
        ttc = time_to_capacity(enough, tl.ready, steps, dt)
    else:
        steps, ttc = np.empty(0), []
    out["demand_steps"] = len(ttc)
    out["time_to_capacity_mean_seconds"] = float(np.mean(ttc)) if ttc else None
    out["time_to_capacity_max_seconds"] = float(np.max(ttc)) if ttc else None
    out["mean_replicas"] = float(tl.replicas.mean())
    out["max_replicas_used"] = int(tl.replicas.max())
    out["sync_errors"] = tl.sync_errors
    return out
