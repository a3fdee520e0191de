"""Replay speed: one HPA over 7 days of 15 s steps, and a sweep of 100 configurations.

    python bench/bench_replay.py [--configs 100] [--days 7] [--jobs N]

Prints one JSON object: simulated seconds per wall second for the single replay and the sweep,
the per-sync cost (most of it is the decision core's ``decide()``), and the CPU seconds spent
(this process plus the sweep's worker processes), which vary less than wall time on a busy machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autoscaler.hpa import ControllerConfig
from sim.replay.engine import ReplayOptions, replay
from sim.replay.load import build_load
from sim.replay.sweep import expand, parse_set, run_configs
from sim.replay.synth import hpa_manifest, synthesize


def _children_cpu() -> float:
    """CPU seconds of the finished child processes (the sweep's workers, once joined)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=float, default=7.0)
    ap.add_argument("--configs", type=int, default=100)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    a = ap.parse_args()
    res = 15.0
    t = np.arange(0, a.days * 86400 + 1, res)
    rng = np.random.default_rng(1)
    demand = 1.0 + 3.0 * (1 - np.cos(2 * np.pi * t / 86400)) / 2 * (1 + 0.1 * rng.standard_normal(len(t)))
    hpa = hpa_manifest("web", target=60, min_replicas=2, max_replicas=30)
    trace = synthesize("web", 1_767_225_600.0, res, np.maximum(demand, 0.1), hpa, seed=1)
    load = build_load(trace, trace.workloads[0])
    simulated = float(load.times[-1] - load.times[0])

    t0, c0 = time.perf_counter(), time.process_time()
    tl = replay(load, ReplayOptions(hpa))
    single = time.perf_counter() - t0
    single_cpu = time.process_time() - c0

    utils = list(range(40, 90, 5))  # 10 values
    windows = [0, 30, 60, 120, 180, 240, 300, 450, 600, 900]  # 10 values
    n_w = max(1, a.configs // len(utils))
    sets = [parse_set("spec.metrics[0].resource.target.averageUtilization=" + ",".join(map(str, utils))),
            parse_set("spec.behavior.scaleDown.stabilizationWindowSeconds=" + ",".join(map(str, windows[:n_w])))]
    configs = expand(hpa, ControllerConfig(), res, sets)
    t0, c0, k0 = time.perf_counter(), time.process_time(), _children_cpu()
    run_configs(load, configs, jobs=a.jobs)
    sweep = time.perf_counter() - t0
    sweep_cpu = time.process_time() - c0 + _children_cpu() - k0
    print(json.dumps({
        "days": a.days, "resolution_s": res, "steps": load.steps, "syncs_per_replay": tl.syncs,
        "single_replay_wall_s": round(single, 3),
        "single_simulated_s_per_wall_s": round(simulated / single),
        "single_us_per_sync": round(single / tl.syncs * 1e6, 1),
        "single_cpu_s": round(single_cpu, 3),
        "sweep_configs": len(configs), "sweep_jobs": a.jobs, "sweep_wall_s": round(sweep, 2),
        "sweep_simulated_s_per_wall_s": round(simulated * len(configs) / sweep),
        "sweep_cpu_s": round(sweep_cpu, 2),
        "sweep_cpu_s_per_config": round(sweep_cpu / len(configs), 3),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "goal_single_wall_s": 1.0,
    }, indent=2))


if __name__ == "__main__":
    main()
