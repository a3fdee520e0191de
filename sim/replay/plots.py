"""PNG plots of a replay (matplotlib, Agg backend): demand vs capacity, replicas, utilization."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sim.replay.engine import Timeline
from sim.replay.load import WorkloadLoad

COLORS = {"recorded": "#555555", "as given": "#1f77b4", "best": "#d62728"}
#: the recorded run is drawn wide and pale beneath the replays, so a replay that matches it exactly
#: (the HPA as given often does) still shows both lines; the best one is dashed over the one as given
STYLE = {"recorded": {"lw": 3.2, "alpha": 0.4, "zorder": 1}, "as given": {"lw": 1.1, "alpha": 0.9, "zorder": 2},
         "best": {"lw": 1.1, "alpha": 0.9, "zorder": 3, "ls": "--"}}


def _name(role: str, label: str) -> str:
    """Legend text: the role, and the configuration when it says more than the role."""
    return role if label == role else f"{role} ({label})"


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


def plot_all(load: WorkloadLoad, runs: dict[str, tuple[str, Timeline]], targets: dict[str, float | None],
             out: Path) -> dict[str, Path]:
    """Write the three plots to ``out``; ``runs`` maps a role (recorded/as given/best) to (label, timeline),
    ``targets`` a role to its HPA's CPU utilization target (a fraction), drawn once per distinct value."""
    out.mkdir(parents=True, exist_ok=True)
    x = _x(load.times)
    r = load.cpu_request or 0.0
    paths = {}

    fig, ax, plt = _figure()
    ax.plot(x, load.demand, color="black", lw=1.0, label="demand (cores)")
    if load.throttled_steps:
        ax.plot(x, load.usage, color="black", lw=0.6, ls=":", label="recorded usage")
    for role, (label, tl) in runs.items():
        ax.step(x, tl.ready * r, where="post", color=COLORS.get(role), **STYLE.get(role, {}),
                label=f"ready capacity: {_name(role, label)}")
    ax.set_ylabel("cores")
    ax.set_title(f"Demand against provisioned capacity (ready pods x CPU request) — {load.namespace}/{load.name}")
    ax.legend(loc="upper left", fontsize=8)
    paths["demand"] = _save(fig, plt, out / "demand_capacity.png")

    fig, ax, plt = _figure()
    for role, (label, tl) in runs.items():
        ax.step(x, tl.replicas, where="post", color=COLORS.get(role), **STYLE.get(role, {}),
                label=_name(role, label))
    ax.set_ylabel("replicas")
    ax.set_title("Replicas over time")
    ax.legend(loc="upper left", fontsize=8)
    paths["replicas"] = _save(fig, plt, out / "replicas.png")

    fig, ax, plt = _figure()
    for role, (label, tl) in runs.items():
        cap = tl.ready * r
        with np.errstate(divide="ignore", invalid="ignore"):
            util = np.where(cap > 0, load.demand / cap * 100, np.nan)
        ax.plot(x, util, color=COLORS.get(role), **{**STYLE.get(role, {}), "lw": STYLE.get(role, {}).get("lw", 1) * 0.8},
                label=_name(role, label))
    drawn: dict[float, list[str]] = {}
    for role, target in targets.items():
        if target:
            drawn.setdefault(target, []).append(role)
    for target, roles in drawn.items():
        ax.axhline(target * 100, color=COLORS.get(roles[-1], "green"), ls=":", lw=1.2,
                   label=f"target {target * 100:.0f}% ({', '.join(roles)})")
    ax.set_ylabel("CPU utilization of requests (%)")
    ax.set_title("Utilization against target")
    ax.legend(loc="upper left", fontsize=8)
    paths["utilization"] = _save(fig, plt, out / "utilization.png")
    return paths
