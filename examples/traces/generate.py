"""Generate the example traces in this directory (seeded, so re-running gives the same files).

    python examples/traces/generate.py

Each trace is a demand curve played through the replay engine under a recorded HPA, so the pods'
lifecycle and the replica timeline come from the real decision core (see sim/replay/synth.py):

* diurnal.csv.gz   — 2 days of a smooth day/night cycle, long CSV (HPA: diurnal-hpa.yaml)
* spike.json.gz    — 6 hours with short bursts every 90 minutes (native format)
* step.json.gz     — 4 hours: load triples for 90 minutes, then drops back (native format)
* production.json.gz — 2 days shaped like a real web service: morning and evening peaks, a lunch
  dip, a quieter night, bursty noise, and a one-off incident surge (native format)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sim.replay.synth import hpa_manifest, synthesize
from sim.replay.trace import write_trace

HERE = Path(__file__).resolve().parent
START = 1_767_225_600.0  # 2026-01-01T00:00:00Z
RES = 15.0  # metric resolution of the short traces; the two-day ones use 30 s
DAY = 86400.0


def grid(hours: float, res: float = RES) -> np.ndarray:
    return np.arange(int(hours * 3600 / res) + 1) * res


def diurnal() -> None:
    t = grid(48, 30.0)
    demand = 0.6 + 2.4 * (1 - np.cos(2 * np.pi * (t - 3 * 3600) / DAY)) / 2
    hpa = hpa_manifest("shop", "retail", target=60, min_replicas=2, max_replicas=12)
    tr = synthesize("shop", START, 30.0, demand, hpa, namespace="retail", seed=1, initial_replicas=2, noise=0.08)
    write_trace(tr, HERE / "diurnal.csv.gz")
    (HERE / "diurnal-hpa.yaml").write_text(yaml.safe_dump(hpa, sort_keys=False))


def spike() -> None:
    t = grid(6)
    demand = np.full(len(t), 0.8)
    for s in np.arange(1800, t[-1], 5400):
        demand[(t >= s) & (t < s + 300)] = 4.0
    hpa = hpa_manifest("api", "default", target=70, min_replicas=2, max_replicas=15)
    write_trace(synthesize("api", START, RES, demand, hpa, seed=2, noise=0.1), HERE / "spike.json.gz")


def step() -> None:
    t = grid(4)
    demand = np.where((t >= 3600) & (t < 3600 + 5400), 3.0, 1.0)
    hpa = hpa_manifest("worker", "batch", target=60, min_replicas=1, max_replicas=10)
    write_trace(synthesize("worker", START, RES, demand, hpa, namespace="batch", seed=3, noise=0.05,
                           initial_replicas=3), HERE / "step.json.gz")


def production() -> None:
    rng = np.random.default_rng(42)
    t = grid(48, 30.0)
    h = (t / 3600) % 24
    shape = (0.35
             + 0.9 * np.exp(-0.5 * ((h - 10.5) / 2.2) ** 2)   # morning peak
             - 0.25 * np.exp(-0.5 * ((h - 13.0) / 0.8) ** 2)  # lunch dip
             + 1.1 * np.exp(-0.5 * ((h - 20.0) / 2.0) ** 2))  # evening peak
    # Bursty noise: AR(1) with occasional short bursts.
    ar = np.zeros(len(t))
    eps = rng.normal(0, 0.04, len(t))
    for i in range(1, len(t)):
        ar[i] = 0.97 * ar[i - 1] + eps[i]
    bursts = (rng.random(len(t)) < 0.002).astype(float)
    bursts = np.convolve(bursts, np.ones(8), mode="same") * 0.6
    incident = np.where((t >= 30.5 * 3600) & (t < 31.0 * 3600), 2.5, 0.0)
    demand = np.maximum(0.2, 3.2 * shape * (1 + ar) + bursts + incident)
    hpa = hpa_manifest("checkout", "shop", target=50, min_replicas=3, max_replicas=20)
    tr = synthesize("checkout", START, 30.0, demand, hpa, namespace="shop", seed=4, noise=0.15, initial_replicas=3,
                    cpu_request=0.5, cpu_limit=1.0, pending_delay=8.0, ready_delay=25.0, startup_cores=0.15)
    write_trace(tr, HERE / "production.json.gz")


if __name__ == "__main__":
    diurnal()
    spike()
    step()
    production()
    for p in sorted(HERE.glob("*.gz")):
        print(f"{p.name}: {p.stat().st_size / 1024:.0f} KiB")
