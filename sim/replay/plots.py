"""PNG plots of a replay (matplotlib, Agg backend): demand vs capacity, replicas, utilization."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sim.replay.engine import Timeline
from sim.replay.load import WorkloadLoad

COLORS = {"recorded": "#555555", "as given": "#1f77b4", "best": "#d62728"}


def _x(times: np.ndarray) -> np.ndarray:
    return times.astype("datetime64[s]")


def _figure():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 3.6), dpi=90)
    loc = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(loc)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(loc))
    ax.grid(alpha=0.3)
    return fig, ax, plt


def _save(fig, plt, path: Path) -> Path:  # type: ignore[no-untyped-def]
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return path


def plot_all(load: WorkloadLoad, runs: dict[str, tuple[str, Timeline]], target: float | None, out: Path
             ) -> dict[str, Path]:
    """Write the three plots to ``out``; ``runs`` maps a role (recorded/as given/best) to (label, timeline)."""
    out.mkdir(parents=True, exist_ok=True)
    x = _x(load.times)
    r = load.cpu_request or 0.0
    paths = {}

    fig, ax, plt = _figure()
    ax.plot(x, load.demand, color="black", lw=1.0, label="demand (cores)")
    if load.throttled_steps:
        ax.plot(x, load.usage, color="black", lw=0.6, ls=":", label="recorded usage")
    for role, (label, tl) in runs.items():
        ax.step(x, tl.ready * r, where="post", color=COLORS.get(role), lw=1.0, alpha=0.85,
                label=f"{role}: ready capacity ({label})" if role != "recorded" else "recorded: ready capacity")
    ax.set_ylabel("cores")
    ax.set_title(f"Demand against provisioned capacity (ready pods x CPU request) — {load.namespace}/{load.name}")
    ax.legend(loc="upper left", fontsize=8)
    paths["demand"] = _save(fig, plt, out / "demand_capacity.png")

    fig, ax, plt = _figure()
    for role, (label, tl) in runs.items():
        ax.step(x, tl.replicas, where="post", color=COLORS.get(role), lw=1.1, alpha=0.9,
                label=role if role == "recorded" else f"{role} ({label})")
    ax.set_ylabel("replicas")
    ax.set_title("Replicas over time")
    ax.legend(loc="upper left", fontsize=8)
    paths["replicas"] = _save(fig, plt, out / "replicas.png")

    fig, ax, plt = _figure()
    for role, (label, tl) in runs.items():
        cap = tl.ready * r
        with np.errstate(divide="ignore", invalid="ignore"):
            util = np.where(cap > 0, load.demand / cap * 100, np.nan)
        ax.plot(x, util, color=COLORS.get(role), lw=0.8, alpha=0.85,
                label=role if role == "recorded" else f"{role} ({label})")
    if target:
        ax.axhline(target * 100, color="green", ls="--", lw=1.0, label=f"target {target * 100:.0f}%")
    ax.set_ylabel("CPU utilization of requests (%)")
    ax.set_title("Utilization against target")
    ax.legend(loc="upper left", fontsize=8)
    paths["utilization"] = _save(fig, plt, out / "utilization.png")
    return paths
