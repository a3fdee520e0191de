"""Replay as a user runs it: the ``autoscaler`` command in a fresh process, wall time end to end.

    python bench/bench_replay_cli.py [--days 7.8] [--runs 5] [--configs 100] [--jobs 2] [--no-sweep]

Builds (once, cached under --dir) a long-CSV trace of ``--days`` days: one Deployment whose 6 pods
were sampled every 30 s (134,790 rows for 7.8 days) under a fixed-size HPA, and a CPU HPA to replay
it with (min 2, max 12, 60 %; 15 s syncs), then times, as the median of ``--runs`` fresh processes
(interpreter start-up, imports and parsing included):

* ``autoscaler sim replay TRACE --hpa HPA -o json`` (one configuration),
* ``autoscaler --help`` and ``autoscaler explain`` on the README's snapshot,
* a sweep of ``--configs`` configurations (target utilization x scale-down window) with ``--jobs``.

Prints one JSON object. The command is the console script beside this interpreter (what a user's
shell runs after ``pip install``), else ``python -m autoscaler``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

START = 1_767_225_600.0  # 2026-01-01T00:00:00Z
RESOLUTION = 30.0  # seconds between a pod's samples
PODS = 6
UTILS = list(range(40, 90, 5))  # 10 target utilizations
WINDOWS = [0, 30, 60, 120, 180, 240, 300, 450, 600, 900]  # 10 scale-down stabilization windows


def command() -> list[str]:
    script = Path(sys.executable).parent / "autoscaler"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "autoscaler"]


def build_trace(days: float, directory: Path) -> tuple[Path, Path]:
    """The trace and the HPA manifest to replay it with (made once per size, then reused)."""
    import numpy as np
    import yaml

    from sim.replay.synth import hpa_manifest, synthesize
    from sim.replay.trace import write_trace

    trace = directory / f"web-{days:g}d.csv"
    hpa_path = directory / "web-hpa.yaml"
    replay_hpa = hpa_manifest("web", target=60, min_replicas=2, max_replicas=12)
    if not hpa_path.exists():
        hpa_path.write_text(yaml.safe_dump(replay_hpa, sort_keys=False))
    if not trace.exists():
        t = np.arange(int(days * 86400 / RESOLUTION) + 1) * RESOLUTION
        rng = np.random.default_rng(7)
        demand = 0.6 + 2.4 * (1 - np.cos(2 * np.pi * (t - 3 * 3600) / 86400)) / 2
        demand = np.maximum(0.1, demand * (1 + 0.08 * rng.standard_normal(len(t))))
        recorded = hpa_manifest("web", target=60, min_replicas=PODS, max_replicas=PODS)  # 6 pods throughout
        tr = synthesize("web", START, RESOLUTION, demand, recorded, seed=7, initial_replicas=PODS, noise=0.08)
        tmp = trace.with_suffix(".tmp.csv")
        write_trace(tr, tmp)
        tmp.replace(trace)
    return trace, hpa_path


def timed(argv: list[str], runs: int, env: dict[str, str]) -> dict[str, float]:
    """Median / min wall seconds of ``runs`` fresh processes (each must exit 0), and their median CPU
    seconds, which a busy machine disturbs less than wall time."""
    walls, cpus = [], []
    subprocess.run(argv, env=env, capture_output=True)  # warm-up: bytecode caches, page cache
    for _ in range(runs):
        c0 = _children_cpu()
        t0 = time.perf_counter()
        p = subprocess.run(argv, env=env, capture_output=True, text=True)
        walls.append(time.perf_counter() - t0)
        cpus.append(_children_cpu() - c0)
        if p.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} exited {p.returncode}: {p.stderr[-2000:]}")
    return {"median_s": round(statistics.median(walls), 3), "min_s": round(min(walls), 3),
            "cpu_s": round(statistics.median(cpus), 3), "runs": runs}


def _children_cpu() -> float:
    """CPU seconds (user + system) of the finished child processes and their children (sweep workers)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--days", type=float, default=7.8)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--configs", type=int, default=100, help="sweep size (a multiple of 10 up to 100)")
    ap.add_argument("--sweep-runs", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--no-sweep", action="store_true")
    ap.add_argument("--no-commands", action="store_true", help="skip --help and explain")
    ap.add_argument("--dir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "autoscaler-bench")
    a = ap.parse_args()
    a.dir.mkdir(parents=True, exist_ok=True)
    trace, hpa = build_trace(a.days, a.dir)
    rows = sum(1 for _ in trace.open()) - 1
    env = dict(os.environ)
    # As after `pip install` (which compiles every module): the first run writes the bytecode caches.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = command()
    replay = [*cmd, "sim", "replay", str(trace), "--hpa", str(hpa), "-o", "json", "--no-progress"]
    simulated = a.days * 86400
    out: dict[str, object] = {
        "command": " ".join(Path(c).name for c in cmd), "trace_days": a.days, "trace_rows": rows,
        "trace_bytes": trace.stat().st_size, "sync_period_s": 15,
    }
    r = timed(replay, a.runs, env)
    out["replay"] = {**r, "real_time_x": round(simulated / r["median_s"])}
    if not a.no_commands:
        out["help"] = timed([*cmd, "--help"], a.runs, env)
        snapshot = ROOT / "tests" / "data" / "snapshots" / "web-multidoc.yaml"
        out["explain"] = timed([*cmd, "explain", "-f", str(snapshot), "-o", "text"], a.runs, env)
    if not a.no_sweep:
        n_w = max(1, min(len(WINDOWS), a.configs // len(UTILS)))
        sweep = [*replay, "--jobs", str(a.jobs),
                 "--set", "spec.metrics[0].resource.target.averageUtilization=" + ",".join(map(str, UTILS)),
                 "--set", "spec.behavior.scaleDown.stabilizationWindowSeconds=" + ",".join(map(str, WINDOWS[:n_w]))]
        s = timed(sweep, a.sweep_runs, env)
        configs = len(UTILS) * n_w
        out["sweep"] = {**s, "configs": configs, "jobs": a.jobs,
                        "real_time_x": round(simulated * configs / s["median_s"])}
    out["machine"] = {"nproc": os.cpu_count(), "cpu": _cpu_model(), "python": platform.python_version()}
    out["load_average_1m"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out))


def _cpu_model() -> str:
    if shutil.which("lscpu"):
        p = subprocess.run(["lscpu"], capture_output=True, text=True)
        for line in p.stdout.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


if __name__ == "__main__":
    main()
