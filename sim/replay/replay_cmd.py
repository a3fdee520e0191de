"""Replay a recorded load trace against HPA configurations and rank them.

`autoscaler sim replay TRACE` replays the trace's workload under an HPA — the one recorded in the
trace, or the autoscaling/v2 manifest given with --hpa — on a virtual clock, calling the same
decision core as the live controller at every sync. Each --set FIELD=V1,V2,... sweeps a dotted
path into the manifest (e.g. spec.metrics[0].resource.target.averageUtilization=50,60,70,
spec.behavior.scaleDown.stabilizationWindowSeconds=0,300) or a controller option
(controller.tolerance, controller.syncPeriod, ...); several --set flags form their product.
Configurations run in parallel and are ranked by --objective (default balanced: core-hours plus
priced SLO risk and churn, see the --*-penalty flags and docs/replay.md). The table shows the recorded run
(what actually happened), the HPA as given and the best configurations; --report DIR writes PNG
plots, a self-contained HTML report, results.json/.csv and timeline.csv.

Traces are the native format (*.json, *.json.gz; docs/trace-format.md) or long CSV (*.csv, *.csv.gz).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from autoscaler.k8s.timefmt import duration_flag

HELP = __doc__ or ""
#: writes no structured logs, so the CLI starts it without loading structlog
LOGS = False

OUTPUTS = ("table", "json", "csv")


def _penalty(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not v >= 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"invalid penalty {text!r} (want a number >= 0)")
    return v


def add_arguments(p: argparse.ArgumentParser) -> None:
    from sim.replay.sweep import OBJECTIVES, Weights

    w = Weights()

    p.add_argument("trace", metavar="TRACE", help="trace file: native (.json[.gz]) or long CSV (.csv[.gz]); "
                   "with --all-hpas also a folder of trace files")
    p.add_argument("--hpa", metavar="FILE", help="autoscaling/v2 HorizontalPodAutoscaler manifest (YAML or JSON); "
                   "default: the HPA recorded in the trace")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="FIELD=V1,V2,...",
                   help="sweep a dotted manifest path or controller.* option over values (repeatable)")
    p.add_argument("-o", "--output", choices=OUTPUTS, default="table", help="output format (default table)")
    p.add_argument("--report", metavar="DIR", help="write plots, report.html, results.json/.csv, timeline.csv here")
    p.add_argument("--objective", choices=OBJECTIVES, default="balanced", metavar="NAME",
                   help="rank by (lower is better): balanced (default; core-hours plus priced SLO risk and churn: "
                        "unmet core-hours x --unmet-penalty + under-provisioned hours x --under-provisioned-penalty x "
                        "mean demand + (reversals x --reversal-penalty + scale events x --scale-event-penalty) pod-"
                        "minutes), cost (core-hours), slo (under-provisioned time), unmet (unmet core-seconds), "
                        "flapping (reversals, then scale events), responsiveness (mean time to capacity) or any score "
                        "name")
    g = p.add_argument_group("prices of the balanced objective (all in core-hours; see docs/replay.md)")
    g.add_argument("--unmet-penalty", type=_penalty, default=w.unmet, metavar="X",
                   help=f"an unmet core-hour costs X provisioned core-hours (default {w.unmet:g})")
    g.add_argument("--under-provisioned-penalty", type=_penalty, default=w.under_provisioned, metavar="H",
                   help="an hour with demand above ready capacity costs H hours of the workload's mean demand "
                        f"(default {w.under_provisioned:g})")
    g.add_argument("--reversal-penalty", type=_penalty, default=w.reversal, metavar="MIN",
                   help=f"a scale direction reversal (flapping) costs MIN pod-minutes (default {w.reversal:g})")
    g.add_argument("--scale-event-penalty", type=_penalty, default=w.scale_event, metavar="MIN",
                   help=f"a scale event costs MIN pod-minutes (default {w.scale_event:g})")
    p.add_argument("--workload", metavar="NS/NAME", help="the workload to replay when the trace holds several")
    p.add_argument("--skip-invalid", action="store_true", help="skip (and count) invalid CSV rows instead of failing")
    p.add_argument("--top", type=int, default=5, help="best configurations shown in the table (default 5)")
    p.add_argument("--jobs", type=int, default=None, help="parallel processes (default: CPU count)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the per-pod dispersion and of the new pods' delay draws (default 0)")
    p.add_argument("--dispersion", choices=("even", "recorded"), default="even",
                   help="spread demand evenly over ready pods, or with the recorded per-pod dispersion")
    p.add_argument("--pod-delays", choices=("observed", "median"), default="observed",
                   help="each new pod takes the start/ready delays of a pod born during the trace (observed; "
                        "needs 5 such pods, else the medians), or every pod the medians (default observed)")
    p.add_argument("--ready-delay", type=duration_flag, default=None,
                   help="started to Ready for every new pod (default: from the trace, else 30s)")
    p.add_argument("--pending-delay", type=duration_flag, default=None,
                   help="created to started for every new pod (default: from the trace, else 0s)")
    p.add_argument("--startup-cores", type=float, default=None,
                   help="CPU of a started pod until Ready (default: observed in the trace, else 0)")
    p.add_argument("--throttle-threshold", type=float, default=0.95,
                   help="a container at >= this fraction of its CPU limit counts as throttled (default 0.95)")
    p.add_argument("--no-throttle-estimate", action="store_true",
                   help="take demand as recorded even where pods were throttled")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    g = p.add_argument_group("kube-controller-manager options (base values; sweep them with --set controller.*)")
    g.add_argument("--horizontal-pod-autoscaler-sync-period", dest="sync_period", type=duration_flag, default=15.0,
                   metavar="DURATION", help="default 15s")
    g.add_argument("--horizontal-pod-autoscaler-tolerance", dest="tolerance", type=float, default=0.1,
                   metavar="FLOAT", help="default 0.1")
    g.add_argument("--horizontal-pod-autoscaler-downscale-stabilization", dest="downscale", type=duration_flag,
                   default=300.0, metavar="DURATION", help="default 5m0s")
    g.add_argument("--horizontal-pod-autoscaler-cpu-initialization-period", dest="cpu_init", type=duration_flag,
                   default=300.0, metavar="DURATION", help="default 5m0s")
    g.add_argument("--horizontal-pod-autoscaler-initial-readiness-delay", dest="readiness_delay", type=duration_flag,
                   default=30.0, metavar="DURATION", help="default 30s")
    from autoscaler.controller.options import add_version_arguments

    add_version_arguments(g)
    from sim.replay.fleet import add_fleet_arguments

    add_fleet_arguments(p)


def load_hpa_file(path: str) -> dict[str, Any]:
    """The HorizontalPodAutoscaler in a YAML/JSON file (the only one, or the only HPA of several documents)."""
    import yaml

    try:
        docs = [d for d in yaml.safe_load_all(Path(path).read_text(encoding="utf-8")) if d is not None]
    except OSError as e:
        raise ValueError(f"--hpa {path}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise ValueError(f"--hpa {path}: not valid YAML: {e}") from None
    hpas = [d for d in docs if isinstance(d, dict) and d.get("kind") == "HorizontalPodAutoscaler"]
    if len(hpas) != 1:
        raise ValueError(f"--hpa {path}: want exactly one HorizontalPodAutoscaler, found {len(hpas)}")
    hpa = hpas[0]
    api = str(hpa.get("apiVersion", ""))
    from autoscaler.k8s.fields import strict_decoding_error, unknown_fields

    if api in ("autoscaling/v1", "autoscaling/v2") and (unknown := unknown_fields(hpa)):
        raise ValueError(f"--hpa {path}: {strict_decoding_error(unknown)}")
    if api == "autoscaling/v1":
        from autoscaler.hpa import hpa_v1_to_v2

        hpa = hpa_v1_to_v2(hpa)
    elif api != "autoscaling/v2":
        raise ValueError(f"--hpa {path}: apiVersion {api!r} is not supported (want autoscaling/v2 or autoscaling/v1)")
    return hpa


def controller_config(args: argparse.Namespace) -> Any:
    """The replayed controller's settings: the emulated version, its gates and the kcm flags given."""
    from autoscaler.hpa.gates import config_for

    try:
        return config_for(args.emulated_version, args.feature_gates, tolerance=args.tolerance,
                          cpu_initialization_period=args.cpu_init, initial_readiness_delay=args.readiness_delay,
                          downscale_stabilization=args.downscale)
    except ValueError as e:
        raise ValueError(f"--feature-gates: {e}") from None


def main(args: argparse.Namespace) -> int:
    try:
        if args.all_hpas:
            from sim.replay.fleet import run_fleet

            return run_fleet(args)
        return _run(args)
    except ValueError as e:  # TraceError, SweepError and bad input all derive from ValueError
        print(f"error: {e}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    import json

    from autoscaler.hpa import validate_hpa
    from sim.replay import report as rep
    from sim.replay.engine import recorded_timeline
    from sim.replay.load import build_load
    from sim.replay.sweep import (
        Config,
        Weights,
        balanced_terms,
        expand,
        hpa_target,
        objective_value,
        parse_set,
        rank,
        replay_config,
        run_configs,
        score_run,
    )
    from sim.replay.trace import read_trace

    sets = [parse_set(s) for s in args.sets]
    trace, skipped = read_trace(args.trace, skip_invalid=args.skip_invalid)
    if skipped:
        print(f"warning: skipped {skipped} invalid CSV row(s) in {args.trace}", file=sys.stderr)
    ns = name = None
    if args.workload:
        if "/" not in args.workload:
            raise ValueError(f"--workload {args.workload!r}: want NAMESPACE/NAME")
        ns, name = args.workload.split("/", 1)
    hpa: dict[str, Any] | None = None
    if args.hpa:
        hpa = load_hpa_file(args.hpa)
        if not args.workload:
            ns = str((hpa.get("metadata") or {}).get("namespace") or "default")
            name = str(((hpa.get("spec") or {}).get("scaleTargetRef") or {}).get("name") or "") or None
    workload = trace.workload(ns, name)
    if hpa is None:
        if not workload.hpas:
            raise ValueError(f"the trace records no HPA for {workload.key}: pass --hpa FILE")
        hpa = workload.hpas[0].manifest
    cfg = controller_config(args)
    problems = validate_hpa(hpa, scale_to_zero=cfg.scale_to_zero, configurable_tolerance=cfg.configurable_tolerance)
    if problems:
        raise ValueError("the HPA is invalid: " + "; ".join(f"{p}: {m}" for p, m in problems))
    if args.sync_period <= 0:
        raise ValueError("--horizontal-pod-autoscaler-sync-period must be positive")

    load = build_load(trace, workload, throttle_threshold=args.throttle_threshold,
                      estimate_throttled=not args.no_throttle_estimate, ready_delay=args.ready_delay,
                      pending_delay=args.pending_delay, startup_cores=args.startup_cores,
                      pod_delays=args.pod_delays)
    if load.cpu_request is None and hpa_target(hpa) is not None:
        raise ValueError(f"the trace records no CPU request for the pods of {workload.key}, so a CPU utilization "
                         "target cannot be evaluated (add cpu_request_cores to the CSV)")
    weights = Weights.for_load(load, unmet=args.unmet_penalty, under_provisioned=args.under_provisioned_penalty,
                               reversal=args.reversal_penalty, scale_event=args.scale_event_penalty)
    base = Config(-1, {}, hpa, cfg, args.sync_period)
    configs = expand(hpa, cfg, args.sync_period, sets) if sets else []
    runnable = [base] + [c for c in configs if c.error is None]

    progress = None
    if not args.no_progress and sys.stderr.isatty():
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        progress = Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), transient=True, console=None)
    # Only the report plots timelines: keep the one of the HPA as given; the best is replayed again.
    def keep(c: Config) -> bool:
        return bool(args.report) and c is base

    if progress is not None:
        task = progress.add_task("replaying", total=len(runnable))
        try:
            # The display's refresh thread starts after the workers are forked (a fork copies locks).
            run_configs(load, [base, *configs], dispersion=args.dispersion, seed=args.seed, jobs=args.jobs,
                        on_done=lambda: progress.advance(task), keep=keep, on_start=progress.start,
                        executor=args.executor)
        finally:
            progress.stop()
    else:
        run_configs(load, [base, *configs], dispersion=args.dispersion, seed=args.seed, jobs=args.jobs, keep=keep,
                    executor=args.executor)
    if base.error:
        raise ValueError(f"replay of the HPA as given failed: {base.error}")
    ranked = rank(configs, args.objective, weights)
    rank([base], args.objective, weights)
    rec_tl = recorded_timeline(load)
    rec_scores = score_run(load, rec_tl, hpa)
    terms = (lambda s: balanced_terms(s, weights)) if args.objective == "balanced" else None
    recorded = rep.entry("recorded", "recorded", {}, rec_scores,
                         objective=objective_value(rec_scores, args.objective, weights), terms=terms)
    items = rep.results(recorded, base, ranked, [c for c in configs if c.error], terms)

    if args.output == "json":
        print(rep.to_json(items))
    elif args.output == "csv":
        sys.stdout.write(rep.to_csv(items))
    else:
        rep.render_table(items, args.top, args.objective)
        for a in load.assumptions:
            print(f"  note: {a}")

    if args.report:
        from sim.replay.plots import plot_all

        out = Path(args.report)
        out.mkdir(parents=True, exist_ok=True)
        best = ranked[0] if ranked else base
        runs = {"recorded": ("recorded", rec_tl), "as given": ("as given", base.timeline)}
        if ranked:
            # The engine is deterministic: replaying the winner again gives the timeline its scores came from.
            best_tl = best.timeline or replay_config(load, best, dispersion=args.dispersion, seed=args.seed)
            runs["best"] = (best.label, best_tl)
        targets = {"as given": hpa_target(base.hpa)}
        if ranked:
            targets["best"] = hpa_target(best.hpa)
        images = plot_all(load, runs, targets, out)  # type: ignore[arg-type]
        (out / "results.json").write_text(rep.to_json(items), encoding="utf-8")
        (out / "results.csv").write_text(rep.to_csv(items), encoding="utf-8")
        (out / "timeline.csv").write_text(rep.timeline_csv(load, runs), encoding="utf-8")  # type: ignore[arg-type]
        span = load.times[-1] - load.times[0]
        summary = {
            "trace": args.trace, "workload": f"{workload.namespace}/{workload.name}",
            "span": rep.human_seconds(float(span)), "resolution": f"{load.resolution:g}s",
            "steps": load.steps, "configurations": len(configs) or 1, "objective": _objective_text(args, weights),
            "sync period": f"{args.sync_period:g}s", "CPU request per pod": load.cpu_request,
            "HPA as given": json.dumps((hpa.get("spec") or {}), separators=(",", ":")),
        }
        if ranked:
            summary["best"] = best.label
        html_path = rep.write_html(out, title=f"HPA replay: {workload.namespace}/{workload.name}", summary=summary,
                                   assumptions=load.assumptions, items=items, top=args.top, objective=args.objective,
                                   images=images)
        print(f"report: {html_path}", file=sys.stderr)
    return 0


def _objective_text(args: argparse.Namespace, w: Any) -> str:
    """The objective as the report states it (with the prices when it is ``balanced``)."""
    if args.objective != "balanced":
        return str(args.objective)
    return (f"balanced = core-hours + {w.unmet:g} x unmet core-hours + {w.under_provisioned:g} x "
            f"{w.mean_demand:.3g} cores (mean demand) x under-provisioned hours + ({w.reversal:g} x reversals + "
            f"{w.scale_event:g} x scale events) x {w.pod_cores:.3g} cores (per pod) / 60")
