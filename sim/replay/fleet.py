"""Replay every HPA of a cluster: ``autoscaler sim replay --all-hpas TRACE|FOLDER``.

Each workload of the traces (one file with many workloads, or a folder of trace files) is replayed
under its own HPA — from ``--hpas FILE``, from the cluster (``--kubeconfig``) or as recorded in
the trace — and under the ``--set`` sweep applied to that HPA. Every (workload x configuration)
job runs on one executor (sim/replay/executors.py), so a thousand workloads fill a Dask cluster
as well as one. The result is per workload (cost, SLO risk, flapping, the best configuration and
its saving against the HPA as given) plus a cluster summary. A workload that cannot be replayed
(no HPA, no CPU request, an invalid HPA, an unreadable file) gets its error and the rest go on.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import csv
import html
import io
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sim.replay.executors import executor_flag

TRACE_SUFFIXES = (".json", ".json.gz", ".csv", ".csv.gz")
#: the scores the per-workload view shows (cost, SLO risk, flapping)
KEYS = ("core_hours", "pod_hours", "unmet_core_seconds", "under_provisioned_seconds", "scale_events", "reversals")


def add_fleet_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("every HPA of a cluster (docs/fleet-replay.md)")
    g.add_argument("--all-hpas", action="store_true",
                   help="replay every workload of TRACE (a trace file or a folder of them) under its own HPA and "
                        "the --set sweep; report per workload and a cluster summary")
    g.add_argument("--hpas", metavar="FILE", help="the HPAs: a List or multi-document YAML/JSON of "
                   "HorizontalPodAutoscalers (default: the cluster's with --kubeconfig, else those recorded in the traces)")
    g.add_argument("--kubeconfig", metavar="FILE", help="read the autoscaling/v2 HPAs of all namespaces from this cluster")
    g.add_argument("--context", metavar="NAME", help="kubeconfig context (default: the current one)")
    p.add_argument("--executor", type=executor_flag, default="local", metavar="local|dask://HOST:PORT",
                   help="where the replays run: local processes (--jobs; default) or a running Dask cluster")


@dataclass
class Workload:
    """One workload of the fleet and what it needs to be replayed (or why it cannot be)."""

    key: str
    source: str
    hpa_name: str = ""
    error: str | None = None
    trace: Any = None
    trace_workload: Any = None
    hpa: dict[str, Any] | None = None
    load: Any = None
    weights: Any = None
    base: Any = None
    configs: list[Any] = field(default_factory=list)


# --- inputs -----------------------------------------------------------------------------------


def read_traces(path: str, skip_invalid: bool) -> list[Workload]:
    """Every workload of a trace file or of the trace files in a folder (a bad file is one error row)."""
    from sim.replay.trace import read_trace

    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and f.name.endswith(TRACE_SUFFIXES))
        if not files:
            raise ValueError(f"{path}: no trace files ({', '.join(TRACE_SUFFIXES)}) in this folder")
    elif p.exists():
        files = [p]
    else:
        raise ValueError(f"{path}: no such file or folder")
    out: dict[str, Workload] = {}
    for f in files:
        try:
            trace, skipped = read_trace(f, skip_invalid=skip_invalid)
        except (ValueError, OSError) as e:
            if len(files) == 1:
                raise ValueError(str(e)) from None
            out[f"file:{f.name}"] = Workload(f"file:{f.name}", str(f), error=f"cannot read the trace: {e}")
            continue
        if skipped:
            print(f"warning: skipped {skipped} invalid CSV row(s) in {f}", file=sys.stderr)
        for w in trace.workloads:
            if w.key in out:
                out[w.key].error = f"recorded in two trace files ({out[w.key].source} and {f})"
                continue
            out[w.key] = Workload(w.key, str(f), trace=trace, trace_workload=w)
    return list(out.values())


def parse_hpas(text: str, where: str) -> list[dict[str, Any]]:
    """The HPAs of a List or multi-document YAML/JSON, as autoscaling/v2 (v1 is converted)."""
    import yaml

    from autoscaler.hpa import hpa_v1_to_v2
    from autoscaler.k8s.fields import strict_decoding_error, unknown_fields

    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as e:
        raise ValueError(f"{where}: not valid YAML: {e}") from None
    flat: list[Any] = []
    for d in docs:
        if isinstance(d, dict) and str(d.get("kind", "")).endswith("List"):
            flat.extend(d.get("items") or [])
        else:
            flat.append(d)
    out = []
    for i, d in enumerate(flat):
        if not isinstance(d, dict) or d.get("kind", "HorizontalPodAutoscaler") != "HorizontalPodAutoscaler":
            continue
        d = copy.deepcopy(d)
        api = str(d.setdefault("apiVersion", "autoscaling/v2"))
        d.setdefault("kind", "HorizontalPodAutoscaler")
        d.pop("status", None)
        (d.get("metadata") or {}).pop("managedFields", None)
        name = (d.get("metadata") or {}).get("name") or f"item {i}"
        if api not in ("autoscaling/v1", "autoscaling/v2"):
            raise ValueError(f"{where}: HPA {name}: apiVersion {api!r} is not supported (want autoscaling/v2 or v1)")
        if unknown := unknown_fields(d):
            raise ValueError(f"{where}: HPA {name}: {strict_decoding_error(unknown)}")
        out.append(hpa_v1_to_v2(d) if api == "autoscaling/v1" else d)
    return out


async def _cluster_hpas(kubeconfig: str, context: str | None) -> dict[str, Any]:
    from autoscaler.k8s.kubeconfig import load_kubeconfig
    from autoscaler.k8s.rest import KubeClient

    async with KubeClient(load_kubeconfig(kubeconfig, context), user_agent="autoscaler-replay") as client:
        return await client.get("/apis/autoscaling/v2/horizontalpodautoscalers")


def read_hpas(args: argparse.Namespace) -> list[dict[str, Any]] | None:
    """The HPAs from --hpas or the cluster; None means: those recorded in the traces."""
    if args.hpas:
        try:
            text = Path(args.hpas).read_text(encoding="utf-8")
        except OSError as e:
            raise ValueError(f"--hpas {args.hpas}: {e.strerror or e}") from None
        return parse_hpas(text, f"--hpas {args.hpas}")
    if args.kubeconfig:
        try:
            doc = asyncio.run(_cluster_hpas(args.kubeconfig, args.context))
        except (OSError, ValueError) as e:
            raise ValueError(f"--kubeconfig {args.kubeconfig}: cannot list the HPAs: {e}") from None
        return parse_hpas_list(doc)
    return None


def parse_hpas_list(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """A HorizontalPodAutoscalerList from the API server (items carry no apiVersion/kind)."""
    import json

    return parse_hpas(json.dumps(doc), "the cluster's HPAs")


def target_key(hpa: dict[str, Any]) -> str:
    ns = (hpa.get("metadata") or {}).get("namespace") or "default"
    return f"{ns}/{((hpa.get('spec') or {}).get('scaleTargetRef') or {}).get('name', '')}"


def assign_hpas(workloads: list[Workload], hpas: list[dict[str, Any]] | None) -> list[Workload]:
    """Give every workload its HPA; an HPA whose target has no trace becomes an error row."""
    by_key = {w.key: w for w in workloads}
    if hpas is None:
        for w in workloads:
            if w.error is None and w.trace_workload is not None:
                if w.trace_workload.hpas:
                    w.hpa = w.trace_workload.hpas[0].manifest
                    w.hpa_name = str((w.hpa.get("metadata") or {}).get("name") or "")
                else:
                    w.error = "the trace records no HPA for this workload (pass --hpas FILE or --kubeconfig)"
        return workloads
    targets: dict[str, list[dict[str, Any]]] = {}
    for h in hpas:
        targets.setdefault(target_key(h), []).append(h)
    extra = []
    for key, hs in targets.items():
        names = ", ".join(str((h.get("metadata") or {}).get("name")) for h in hs)
        w = by_key.get(key)
        if w is None:
            extra.append(Workload(key, "", hpa_name=names, error="no trace for the HPA's scale target"))
            continue
        w.hpa_name = names
        kind = ((hs[0].get("spec") or {}).get("scaleTargetRef") or {}).get("kind")
        if len(hs) > 1:
            w.error = w.error or f"{len(hs)} HPAs target this workload ({names}); the controller would not scale it"
        elif w.trace_workload is not None and w.trace_workload.kind and kind and kind != w.trace_workload.kind:
            w.error = w.error or f"the HPA targets a {kind}, the trace records a {w.trace_workload.kind}"
        else:
            w.hpa = hs[0]
    for w in workloads:
        if w.hpa is None and w.error is None:
            w.error = "no HPA targets this workload"
    return workloads + extra


# --- running ----------------------------------------------------------------------------------


def prepare(w: Workload, args: argparse.Namespace, cfg: Any, sets: list[tuple[str, list[Any]]]) -> None:
    """Build the load model and the configurations; any problem becomes the workload's error."""
    from autoscaler.hpa import validate_hpa
    from sim.replay.load import build_load
    from sim.replay.sweep import Config, Weights, expand, hpa_target

    if w.error is not None or w.hpa is None:
        return
    try:
        problems = validate_hpa(w.hpa, scale_to_zero=cfg.scale_to_zero,
                                configurable_tolerance=cfg.configurable_tolerance)
        if problems:
            raise ValueError("the HPA is invalid: " + "; ".join(f"{p}: {m}" for p, m in problems))
        w.load = build_load(w.trace, w.trace_workload, throttle_threshold=args.throttle_threshold,
                            estimate_throttled=not args.no_throttle_estimate, ready_delay=args.ready_delay,
                            pending_delay=args.pending_delay, startup_cores=args.startup_cores,
                            pod_delays=args.pod_delays)
        if w.load.cpu_request is None and hpa_target(w.hpa) is not None:
            raise ValueError("the trace records no CPU request for its pods, so the HPA's CPU utilization target "
                             "cannot be evaluated")
        w.weights = Weights.for_load(w.load, unmet=args.unmet_penalty,
                                     under_provisioned=args.under_provisioned_penalty,
                                     reversal=args.reversal_penalty, scale_event=args.scale_event_penalty)
        w.base = Config(-1, {}, w.hpa, cfg, args.sync_period)
        w.configs = expand(w.hpa, cfg, args.sync_period, sets) if sets else []
    except ValueError as e:
        w.error, w.load = str(e), None


def run_all(workloads: list[Workload], args: argparse.Namespace) -> None:
    """Every valid (workload x configuration) on the executor; identical configurations run once."""
    from sim.replay.executors import run_jobs
    from sim.replay.sweep import _identity

    ready = [w for w in workloads if w.error is None]
    jobs = []
    group_of: dict[tuple[str, int], list[Any]] = {}
    for w in ready:
        groups: dict[str, list[Any]] = {}
        for c in [w.base, *w.configs]:
            if c.error is None:
                groups.setdefault(_identity(c), []).append(c)
        for g in groups.values():
            jobs.append((w.key, g[0], bool(args.report) and any(c is w.base for c in g)))
            group_of[(w.key, g[0].index)] = g
    loads = {w.key: w.load for w in ready}
    for key, index, scores, sync_errors, err, tl in run_jobs(loads, jobs, executor=args.executor,
                                                            dispersion=args.dispersion, seed=args.seed,
                                                            n_jobs=args.jobs):
        for c in group_of[(key, index)]:
            if err is not None:
                c.error = err
            else:
                c.scores, c.sync_errors = dict(scores), list(sync_errors)
                c.timeline = tl if c.index == -1 else None
    for w in ready:
        if w.base.error:
            w.error = f"replay of the HPA as given failed: {w.base.error}"


# --- results ----------------------------------------------------------------------------------


def _pick(scores: dict[str, Any]) -> dict[str, Any]:
    return {k: scores.get(k) for k in KEYS}


def summarize(w: Workload, objective: str) -> dict[str, Any]:
    """The workload's result: recorded, as given, the best configuration and its saving."""
    from sim.replay.engine import recorded_timeline
    from sim.replay.sweep import objective_value, rank, score_run

    out: dict[str, Any] = {"workload": w.key, "hpa": w.hpa_name, "source": w.source}
    if w.error is not None:
        out["error"] = w.error
        return out
    ranked = rank(w.configs, objective, w.weights)
    rank([w.base], objective, w.weights)
    rec = score_run(w.load, recorded_timeline(w.load), w.hpa)
    best = ranked[0] if ranked and ranked[0].objective < w.base.objective else w.base
    given_core, best_core = float(w.base.scores["core_hours"]), float(best.scores["core_hours"])
    out.update({
        "recorded": {**_pick(rec), "objective": objective_value(rec, objective, w.weights)},
        "asGiven": {**_pick(w.base.scores), "objective": w.base.objective},
        "best": {"configuration": best.label, "settings": best.settings, **_pick(best.scores),
                 "objective": best.objective},
        "change": best is not w.base,
        "saving": {"objective": w.base.objective - best.objective, "coreHours": given_core - best_core,
                   "fraction": (given_core - best_core) / given_core if given_core > 0 else 0.0},
        "configurations": len([c for c in w.configs if c.error is None]),
        "invalidConfigurations": [{"settings": c.settings, "error": c.error} for c in w.configs if c.error],
    })
    return out


def cluster_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals over the replayed workloads, how many would change and the total saving."""
    ok = [r for r in rows if "error" not in r]
    tot = {role: {k: sum(float(r[role][k] or 0) for r in ok) for k in KEYS} for role in ("recorded", "asGiven", "best")}
    given = tot["asGiven"]["core_hours"]
    saving = given - tot["best"]["core_hours"]
    return {"workloads": len(rows), "replayed": len(ok), "failed": len(rows) - len(ok),
            "wouldChange": sum(1 for r in ok if r["change"]), **tot,
            "saving": {"coreHours": saving, "fraction": saving / given if given > 0 else 0.0}}


def to_csv(rows: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    roles = (("recorded", "recorded"), ("asGiven", "given"), ("best", "best"))
    w.writerow(["workload", "hpa", *[f"{p}_{k}" for _, p in roles for k in KEYS], "best_configuration", "change",
                "saving_core_hours", "saving_fraction", "error"])
    for r in rows:
        if "error" in r:
            w.writerow([r["workload"], r["hpa"], *[""] * (3 * len(KEYS) + 4), r["error"]])
            continue
        w.writerow([r["workload"], r["hpa"], *[_num(r[role][k]) for role, _ in roles for k in KEYS],
                    r["best"]["configuration"], str(r["change"]).lower(), _num(r["saving"]["coreHours"]),
                    _num(r["saving"]["fraction"]), ""])
    w.writerow(["(cluster)", f"{summary['replayed']} of {summary['workloads']} replayed",
                *[_num(summary[role][k]) for role, _ in roles for k in KEYS],
                f"{summary['wouldChange']} would change", "", _num(summary["saving"]["coreHours"]),
                _num(summary["saving"]["fraction"]), f"{summary['failed']} failed" if summary["failed"] else ""])
    return buf.getvalue()


def _num(v: Any) -> str:
    if v is None:
        return ""
    return f"{float(v):.6g}"


def table_rows(rows: list[dict[str, Any]], summary: dict[str, Any]) -> list[list[str]]:
    """The cells of the table (and of the HTML page), the cluster summary last."""
    from sim.replay.report import human_seconds

    def cells(rec: dict[str, Any], given: dict[str, Any], best: dict[str, Any], label: str,
              saving: dict[str, Any]) -> list[str]:
        return [f"{rec['core_hours']:.1f}", f"{given['core_hours']:.1f}", f"{given['unmet_core_seconds']:.0f}",
                human_seconds(given["under_provisioned_seconds"]), f"{given['scale_events']:g}",
                f"{given['reversals']:g}", label, f"{best['core_hours']:.1f}", f"{best['unmet_core_seconds']:.0f}",
                f"{best['reversals']:g}", f"{saving['coreHours']:.1f}", f"{100 * saving['fraction']:.0f}%"]

    out = []
    for r in rows:
        if "error" in r:
            out.append([r["workload"], r["hpa"], *["-"] * 6, "error (below)", *["-"] * 5])
        else:
            label = r["best"]["configuration"] if r["change"] else "(as given)"
            out.append([r["workload"], r["hpa"], *cells(r["recorded"], r["asGiven"], r["best"], label, r["saving"])])
    s = summary
    label = f"{s['wouldChange']} of {s['replayed']} would change"
    failed = f", {s['failed']} failed" if s["failed"] else ""
    out.append([f"cluster ({s['workloads']} workloads{failed})", "",
                *cells(s["recorded"], s["asGiven"], s["best"], label, s["saving"])])
    return out


HEADS = ["workload", "HPA", "rec. core-h", "core-h", "unmet core-s", "under-prov.", "scalings", "reversals",
         "best configuration", "best core-h", "best unmet core-s", "best reversals", "saving core-h", "saving"]


def render_table(rows: list[dict[str, Any]], summary: dict[str, Any], objective: str) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"Every HPA replayed (objective: {objective}; as given vs the sweep's best)", header_style="bold")
    for i, h in enumerate(HEADS):
        t.add_column(h, justify="left" if i in (0, 1, 8) else "right", no_wrap=i in (0, 8))
    body = table_rows(rows, summary)
    for cells in body[:-1]:
        t.add_row(*cells, style="red" if cells[8] == "error (below)" else None)
    t.add_section()
    t.add_row(*body[-1], style="bold")
    console = Console()
    if not console.is_terminal:
        console.width = 220
    console.print(t)
    for r in rows:
        if "error" in r:
            console.print(f"[red]{r['workload']}[/red]: {r['error']}", highlight=False)


def _slug(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", key)


def write_report(out: Path, rows: list[dict[str, Any]], summary: dict[str, Any], workloads: list[Workload],
                 args: argparse.Namespace) -> Path:
    """report.html (summary, per-workload table linking to a section per workload with its plots),
    results.json and results.csv; plots need matplotlib (the report extra) and are skipped without it."""
    from sim.replay import report as rep
    from sim.replay.engine import recorded_timeline
    from sim.replay.sweep import hpa_target, replay_config

    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(rep.to_json({"workloads": rows, "summary": summary}), encoding="utf-8")
    (out / "results.csv").write_text(to_csv(rows, summary), encoding="utf-8")
    try:
        from sim.replay.plots import plot_all
    except ImportError:
        plot_all = None  # type: ignore[assignment]
    by_key = {w.key: w for w in workloads}
    sections = []
    for r in rows:
        w = by_key[r["workload"]]
        body = f"<p class=err>error: {html.escape(r['error'])}</p>" if "error" in r else ""
        if "error" not in r and plot_all is not None:
            runs = {"recorded": ("recorded", recorded_timeline(w.load)), "as given": ("as given", w.base.timeline)}
            targets = {"as given": hpa_target(w.hpa)}
            if r["change"]:
                best = next(c for c in w.configs if c.label == r["best"]["configuration"])
                runs["best"] = (best.label, replay_config(w.load, best, dispersion=args.dispersion, seed=args.seed))
                targets["best"] = hpa_target(best.hpa)
            try:
                images = plot_all(w.load, runs, targets, out / _slug(w.key))  # type: ignore[arg-type]
            except ImportError:
                images = {}
            body += "".join(f'<figure><img alt="{html.escape(n)}" src="{html.escape(_slug(w.key))}/'
                            f'{html.escape(Path(p).name)}"></figure>' for n, p in images.items())
        sections.append(f'<h3 id="{_slug(r["workload"])}">{html.escape(r["workload"])}</h3>{body}')
    heads = "".join(f"<th>{html.escape(h)}</th>" for h in HEADS)
    trs = []
    body_rows = table_rows(rows, summary)
    for i, cells in enumerate(body_rows):
        last = i == len(body_rows) - 1
        first = cells[0] if last else f'<a href="#{_slug(cells[0])}">{html.escape(cells[0])}</a>'
        tds = "".join(f"<td>{html.escape(c)}</td>" for c in cells[1:])
        trs.append(f'<tr{" class=sum" if last else ""}><td class=l>{first}</td>{tds}</tr>')
    facts = {"traces": args.trace, "workloads": summary["workloads"], "replayed": summary["replayed"],
             "failed": summary["failed"], "would change": summary["wouldChange"], "objective": args.objective,
             "sweep": " ".join(f"--set {s}" for s in args.sets) or "(none: the HPAs as given)",
             "saving (core-hours)": f"{summary['saving']['coreHours']:.2f} ({100 * summary['saving']['fraction']:.1f}%)"}
    fact_rows = "".join(f"<tr><th class=l>{html.escape(k)}</th><td class=l>{html.escape(str(v))}</td></tr>"
                        for k, v in facts.items())
    doc = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>HPA replay: every workload</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2em;color:#222}} table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 7px;text-align:right}} .l{{text-align:left}} tr.sum td{{font-weight:600}}
.err{{color:#a00}} img{{max-width:100%}}
</style></head><body>
<h1>HPA replay: every workload</h1>
<table>{fact_rows}</table>
<h2>Workloads (as given vs the sweep's best; lower is better)</h2>
<table><tr>{heads}</tr>{"".join(trs)}</table>
<h2>Per workload</h2>{"".join(sections)}
<p>Scores are defined in docs/replay.md; all numbers are in results.json and results.csv.</p>
</body></html>
"""
    path = out / "report.html"
    path.write_text(doc, encoding="utf-8")
    return path


def run_fleet(args: argparse.Namespace) -> int:
    """``--all-hpas``: exit 0 when at least one workload was replayed (the others' errors are reported)."""
    from sim.replay import report as rep
    from sim.replay.replay_cmd import controller_config
    from sim.replay.sweep import parse_set

    if args.hpa or args.workload:
        raise ValueError("--all-hpas replays every workload: use --hpas FILE (not --hpa / --workload)")
    if args.sync_period <= 0:
        raise ValueError("--horizontal-pod-autoscaler-sync-period must be positive")
    sets = [parse_set(s) for s in args.sets]
    cfg = controller_config(args)
    workloads = assign_hpas(read_traces(args.trace, args.skip_invalid), read_hpas(args))
    for w in workloads:
        prepare(w, args, cfg, sets)
    run_all(workloads, args)
    rows = [summarize(w, args.objective) for w in workloads]
    summary = cluster_summary(rows)
    if args.output == "json":
        print(rep.to_json({"workloads": rows, "summary": summary}))
    elif args.output == "csv":
        sys.stdout.write(to_csv(rows, summary))
    else:
        render_table(rows, summary, args.objective)
    if args.output != "table":
        for r in rows:
            if "error" in r:
                print(f"error: {r['workload']}: {r['error']}", file=sys.stderr)
    if args.report:
        print(f"report: {write_report(Path(args.report), rows, summary, workloads, args)}", file=sys.stderr)
    return 0 if summary["replayed"] else 1
