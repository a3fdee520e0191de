"""What-if sweeps: ``--set FIELD=V1,V2`` over an HPA manifest, run in parallel, ranked.

``FIELD`` is a dotted path into the autoscaling/v2 manifest with list indices
(``spec.metrics[0].resource.target.averageUtilization``); missing objects on the way are created,
list indices must exist (or equal the list's length, which appends). ``controller.*`` paths set
kube-controller-manager options instead: ``controller.tolerance``,
``controller.downscaleStabilization``, ``controller.cpuInitializationPeriod``,
``controller.initialReadinessDelay`` and ``controller.syncPeriod`` (seconds). Values are YAML
scalars or flow collections; commas inside brackets or braces do not split values. Several
``--set`` flags form their cartesian product.
"""

from __future__ import annotations

import copy
import itertools
import json
import multiprocessing
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import yaml

from autoscaler.hpa import ControllerConfig, validate_hpa
from autoscaler.k8s.fields import strict_decoding_error, unknown_fields
from autoscaler.k8s.timefmt import parse_duration
from sim.replay.engine import ReplayOptions, Timeline, replay
from sim.replay.load import WorkloadLoad
from sim.replay.scores import SCORE_KEYS, score

CONTROLLER_FIELDS = {
    "tolerance": "tolerance",
    "downscaleStabilization": "downscale_stabilization",
    "cpuInitializationPeriod": "cpu_initialization_period",
    "initialReadinessDelay": "initial_readiness_delay",
    "syncPeriod": None,
}
OBJECTIVES = ("balanced", "cost", "slo", "unmet", "flapping", "responsiveness", *SCORE_KEYS)

_SEG = re.compile(r"^([A-Za-z_][A-Za-z0-9_-]*)((?:\[\d+\])*)$")


_ABBREV = {"averageUtilization": "util", "averageValue": "avg", "stabilizationWindowSeconds": "window",
           "minReplicas": "min", "maxReplicas": "max", "selectPolicy": "select", "periodSeconds": "period",
           "downscaleStabilization": "stabilization", "cpuInitializationPeriod": "cpuInit",
           "initialReadinessDelay": "readinessDelay"}


def short_name(path: str) -> str:
    """A compact column label for a swept path (``spec.behavior.scaleDown.stabilizationWindowSeconds`` -> ``down.window``)."""
    last = re.sub(r"\[\d+\]$", "", path.rsplit(".", 1)[-1])
    name = _ABBREV.get(last, last)
    if ".scaleDown." in path:
        return f"down.{name}"
    if ".scaleUp." in path:
        return f"up.{name}"
    if path.startswith("controller."):
        return f"ctl.{name}"
    m = re.search(r"metrics\[(\d+)\]", path)
    if m and m.group(1) != "0":
        return f"m{m.group(1)}.{name}"
    return name


class SweepError(ValueError):
    """A bad ``--set`` (the message names the flag and the part at fault)."""


def parse_path(path: str) -> list[str | int]:
    """``a.b[0].c`` -> ``["a", "b", 0, "c"]``."""
    out: list[str | int] = []
    if not path:
        raise SweepError("empty field path")
    for seg in path.split("."):
        m = _SEG.match(seg)
        if not m:
            raise SweepError(f"{path}: bad path segment {seg!r} (want name or name[index])")
        out.append(m.group(1))
        out.extend(int(i) for i in re.findall(r"\[(\d+)\]", m.group(2)))
    return out


def split_values(text: str) -> list[str]:
    """Split on commas that are not inside brackets, braces or quotes."""
    parts, depth, cur, quote = [], 0, [], ""
    for ch in text:
        if quote:
            cur.append(ch)
            if ch == quote:
                quote = ""
            continue
        if ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts]


def parse_set(text: str) -> tuple[str, list[Any]]:
    """``FIELD=V1,V2`` -> ``(FIELD, [v1, v2])`` with YAML-typed values."""
    if "=" not in text:
        raise SweepError(f"--set {text!r}: want FIELD=VALUE[,VALUE...]")
    path, _, raw = text.partition("=")
    path = path.strip()
    parse_path(path)
    values = []
    for item in split_values(raw):
        if item == "":
            raise SweepError(f"--set {text!r}: empty value")
        try:
            values.append(yaml.safe_load(item))
        except yaml.YAMLError as e:
            raise SweepError(f"--set {text!r}: value {item!r} is not valid YAML: {e}") from None
    if path.startswith("controller."):
        name = path.split(".", 1)[1]
        if name not in CONTROLLER_FIELDS:
            raise SweepError(f"--set {path}: unknown controller option (known: {', '.join(CONTROLLER_FIELDS)})")
    return path, values


def set_path(doc: dict[str, Any], path: str, value: Any) -> None:
    """Set ``path`` in ``doc`` in place (creating objects on the way)."""
    segs = parse_path(path)
    cur: Any = doc
    where = ""
    for i, seg in enumerate(segs):
        last = i == len(segs) - 1
        nxt = None if last else segs[i + 1]
        if isinstance(seg, int):
            if not isinstance(cur, list):
                raise SweepError(f"{path}: {where or 'the manifest'} is not a list")
            if seg > len(cur):
                raise SweepError(f"{path}: {where}[{seg}] is out of range (the list has {len(cur)} items)")
            if seg == len(cur):
                cur.append(None)
            where = f"{where}[{seg}]"
            if last:
                cur[seg] = value
            else:
                if cur[seg] is None:
                    cur[seg] = [] if isinstance(nxt, int) else {}
                cur = cur[seg]
        else:
            if not isinstance(cur, dict):
                raise SweepError(f"{path}: {where or 'the manifest'} is not an object")
            where = f"{where}.{seg}" if where else seg
            if last:
                cur[seg] = value
            else:
                if cur.get(seg) is None:
                    cur[seg] = [] if isinstance(nxt, int) else {}
                cur = cur[seg]


def _seconds(value: Any, path: str) -> float:
    if isinstance(value, bool):
        raise SweepError(f"{path}: want seconds, got {value!r}")
    if isinstance(value, int | float):
        return float(value)
    try:
        return parse_duration(str(value))
    except ValueError:
        raise SweepError(f"{path}: want seconds or a duration like 5m0s, got {value!r}") from None


@dataclass
class Config:
    """One configuration of a sweep: its settings and what they produce."""

    index: int
    settings: dict[str, Any]
    hpa: dict[str, Any]
    controller: ControllerConfig
    sync_period: float
    error: str | None = None
    scores: dict[str, Any] = field(default_factory=dict)
    objective: float | None = None
    #: the replayed run; kept only for the configurations asked for (``run_configs(keep=...)``)
    timeline: Timeline | None = None
    #: the first distinct errors decide() reported during the run
    sync_errors: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        if not self.settings:
            return "(as given)"
        return " ".join(f"{short_name(p)}={v}" for p, v in self.settings.items())


def expand(base_hpa: dict[str, Any], base_cfg: ControllerConfig, sync_period: float,
           sets: list[tuple[str, list[Any]]]) -> list[Config]:
    """The cartesian product of the ``--set`` values applied to the base (index 0 = first combination).

    A path naming a field the HPA kind does not have is an error before anything runs: it would
    otherwise be ignored, and the sweep would compare identical configurations."""
    known = set(unknown_fields(base_hpa))
    for path, values in sets:
        if not path.startswith("controller."):
            probe = copy.deepcopy(base_hpa)
            try:
                set_path(probe, path, values[0])
            except SweepError:
                continue  # reported per configuration below
            new = [f for f in unknown_fields(probe) if f not in known]
            if new:
                raise SweepError(f"--set {path}: {strict_decoding_error(new)} (not a field of "
                                 f"{base_hpa.get('apiVersion')} {base_hpa.get('kind')})")
    paths = [p for p, _ in sets]
    combos = list(itertools.product(*[v for _, v in sets])) if sets else [()]
    out = []
    for i, combo in enumerate(combos):
        hpa = copy.deepcopy(base_hpa)
        cfg = replace(base_cfg)
        sync = sync_period
        settings = dict(zip(paths, combo, strict=True))
        err = None
        try:
            for path, value in settings.items():
                if path.startswith("controller."):
                    name = path.split(".", 1)[1]
                    if name == "tolerance":
                        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                            raise SweepError(f"{path}: want a number >= 0, got {value!r}")
                        cfg.tolerance = float(value)
                    elif name == "syncPeriod":
                        sync = _seconds(value, path)
                        if sync <= 0:
                            raise SweepError(f"{path}: must be positive")
                    else:
                        setattr(cfg, CONTROLLER_FIELDS[name], _seconds(value, path))  # type: ignore[arg-type]
                else:
                    set_path(hpa, path, value)
            problems = validate_hpa(hpa, scale_to_zero=cfg.scale_to_zero, configurable_tolerance=cfg.configurable_tolerance)
            if problems:
                err = "; ".join(f"{p}: {m}" for p, m in problems)
        except SweepError as e:
            err = str(e)
        out.append(Config(i, settings, hpa, cfg, sync, err))
    return out


def hpa_target(hpa: dict[str, Any]) -> float | None:
    """The first CPU Utilization target as a fraction (for the utilization-based scores)."""
    for m in (hpa.get("spec") or {}).get("metrics") or []:
        if not isinstance(m, dict):
            continue
        src = m.get("resource") if m.get("type") == "Resource" else (
            m.get("containerResource") if m.get("type") == "ContainerResource" else None)
        if isinstance(src, dict) and src.get("name") == "cpu":
            tgt = src.get("target") or {}
            if tgt.get("type") == "Utilization" and isinstance(tgt.get("averageUtilization"), int | float):
                return float(tgt["averageUtilization"]) / 100.0
    return None


def min_max(hpa: dict[str, Any]) -> tuple[int, int]:
    spec = hpa.get("spec") or {}
    mn = spec.get("minReplicas")
    return (1 if mn is None else int(mn)), int(spec.get("maxReplicas") or 0)


def score_run(load: WorkloadLoad, tl: Timeline, hpa: dict[str, Any]) -> dict[str, Any]:
    mn, mx = min_max(hpa)
    return score(tl, load.demand, load.resolution, load.cpu_request, hpa_target(hpa), mn, mx)


# --- objectives -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Weights:
    """The prices of the ``balanced`` objective; every term is in core-hours (docs/replay.md).

    ``balanced = core_hours                                   (cost)
    + unmet x unmet core-hours                                 (demand not served)
    + under_provisioned x mean_demand x under-provisioned hours (time at risk of breaking the SLO)
    + (reversal x reversals + scale_event x scale events) x pod_cores / 60``  (churn)

    An under-provisioned hour is priced in hours of the workload's mean demand (so the default
    fits any workload size: the whole service is at risk), churn in pod-minutes (a pod's CPU
    request for that many minutes: the cold start, cache warm-up and connection drain each scale
    event causes, and for a reversal the wasted previous scale event as well).
    """

    unmet: float = 10.0
    under_provisioned: float = 10.0
    reversal: float = 5.0
    scale_event: float = 1.0
    #: cores: the load's mean demand (the same for every configuration of a sweep)
    mean_demand: float = 0.0
    #: cores per pod: the CPU request (or, without one, the mean recorded usage per pod)
    pod_cores: float = 0.0

    @classmethod
    def for_load(cls, load: WorkloadLoad, **prices: float) -> Weights:
        """The prices with the load's scale: its mean demand and cores per pod."""
        for name, v in prices.items():
            if not v >= 0:
                raise SweepError(f"the {name.replace('_', '-')} penalty must be a number >= 0, got {v!r}")
        mean = float(load.demand.mean()) if load.steps else 0.0
        if load.cpu_request is not None:
            per_pod = load.cpu_request
        else:
            pods = float(load.recorded_pods.mean()) if load.steps else 0.0
            per_pod = mean / pods if pods > 0 else 0.0
        return cls(**prices, mean_demand=mean, pod_cores=per_pod)


def balanced_terms(scores: dict[str, Any], w: Weights) -> dict[str, float]:
    """The four terms of ``balanced`` (core-hours each) for one run."""
    def g(key: str) -> float:
        v = scores.get(key)
        return float(v) if v is not None else 0.0

    return {
        "cost": g("core_hours"),
        "unmet": w.unmet * g("unmet_core_seconds") / 3600,
        "underProvisioned": w.under_provisioned * w.mean_demand * g("under_provisioned_seconds") / 3600,
        "churn": (w.reversal * g("reversals") + w.scale_event * g("scale_events")) * w.pod_cores / 60,
    }


def objective_value(scores: dict[str, Any], objective: str, weights: Weights) -> float:
    """Lower is better. ``balanced`` is the sum of :func:`balanced_terms`; the others are one score."""
    def g(key: str) -> float:
        v = scores.get(key)
        return float(v) if v is not None else 0.0

    if objective == "balanced":
        return sum(balanced_terms(scores, weights).values())
    if objective == "cost":
        return g("core_hours")
    if objective == "slo":
        return g("under_provisioned_seconds")
    if objective == "unmet":
        return g("unmet_core_seconds")
    if objective == "flapping":
        return g("reversals") * 1000 + g("scale_events")
    if objective == "responsiveness":
        return g("time_to_capacity_mean_seconds")
    if objective in SCORE_KEYS:
        return g(objective)
    raise SweepError(f"unknown objective {objective!r} (known: {', '.join(OBJECTIVES)})")


# --- running ----------------------------------------------------------------------------------

#: what every worker process holds once (set by the pool initializer, inherited on fork)
_WORKER: dict[str, Any] = {}


def _init_worker(load: WorkloadLoad, dispersion: str, seed: int) -> None:
    _WORKER.update(load=load, dispersion=dispersion, seed=seed)


def replay_config(load: WorkloadLoad, c: Config, *, dispersion: str = "even", seed: int = 0) -> Timeline:
    """Replay one configuration (deterministic: the same inputs give the same timeline)."""
    return replay(load, ReplayOptions(c.hpa, c.controller, c.sync_period, dispersion, seed))


_Result = tuple[int, dict[str, Any], list[str], str | None, Timeline | None]


def _run_one(args: tuple[Config, bool]) -> _Result:
    """Replay and score in the worker; only the scores travel back (a timeline only when asked)."""
    c, keep = args
    load = _WORKER["load"]
    try:
        tl = replay_config(load, c, dispersion=_WORKER["dispersion"], seed=_WORKER["seed"])
        scores = score_run(load, tl, c.hpa)
    except Exception as e:  # one bad configuration never stops the sweep
        return c.index, {}, [], f"{type(e).__name__}: {e}", None
    return c.index, scores, tl.errors, None, tl if keep else None


def _identity(c: Config) -> str:
    """Configurations with the same identity replay identically (the engine is deterministic)."""
    return json.dumps([c.hpa, repr(c.controller), c.sync_period], sort_keys=True, default=str)


def run_configs(load: WorkloadLoad, configs: list[Config], *, dispersion: str = "even", seed: int = 0,
                jobs: int | None = None, on_done: Callable[[], None] | None = None,
                keep: Callable[[Config], bool] | None = None, on_start: Callable[[], None] | None = None,
                executor: str = "local") -> None:
    """Replay and score every valid configuration, in parallel across ``jobs`` processes.

    Workers are forked once with the load model (nothing large is pickled per task); each task
    sends a configuration and gets back its scores, so the main process never holds a timeline
    except for the configurations ``keep`` selects (replay the others with :func:`replay_config`
    if you need them). Configurations identical to an earlier one are replayed once. ``on_start``
    runs once the workers exist: start threads (a progress display) there, not before the fork.
    ``executor`` ``dask://HOST:PORT`` runs the configurations on a Dask cluster instead.
    """
    groups: dict[str, list[Config]] = {}
    for c in configs:
        if c.error is None:
            groups.setdefault(_identity(c), []).append(c)
    wanted = {id(c) for c in configs if keep is not None and keep(c)}
    todo = [(g[0], any(id(c) in wanted for c in g)) for g in groups.values()]
    group_of = {g[0].index: g for g in groups.values()}
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(todo) or 1))
    pool = None
    if executor != "local":  # a Dask cluster (sim/replay/executors.py)
        from sim.replay.executors import run_jobs

        results = (r[1:] for r in run_jobs({"": load}, [("", c, k) for c, k in todo], executor=executor,
                                            dispersion=dispersion, seed=seed))
    elif jobs == 1:
        _init_worker(load, dispersion, seed)
        results = map(_run_one, todo)
    else:
        ctx = multiprocessing.get_context("fork")
        pool = ctx.Pool(jobs, initializer=_init_worker, initargs=(load, dispersion, seed))
        results = pool.imap_unordered(_run_one, todo)
    try:
        if on_start is not None:
            on_start()
        for index, scores, sync_errors, err, tl in results:
            for c in group_of[index]:
                if err is not None:
                    c.error = err
                else:
                    c.scores = dict(scores)
                    c.sync_errors = list(sync_errors)
                    if id(c) in wanted:
                        c.timeline = tl
                if on_done is not None:
                    on_done()
    finally:
        if pool is not None:
            pool.close()
            pool.join()


def rank(configs: list[Config], objective: str, weights: Weights) -> list[Config]:
    """Valid configurations best first (ties: fewer core-hours, then sweep order)."""
    ok = [c for c in configs if c.error is None and c.scores]
    for c in ok:
        c.objective = objective_value(c.scores, objective, weights)
    return sorted(ok, key=lambda c: (c.objective, c.scores.get("core_hours", 0.0), c.index))
