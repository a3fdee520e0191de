"""Results of a replay for people and programs: rich table, JSON, CSV and the HTML report."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from sim.replay.engine import Timeline
from sim.replay.load import WorkloadLoad
from sim.replay.scores import SCORE_KEYS
from sim.replay.sweep import Config, short_name

EXTRA_KEYS = ("demand_steps", "mean_replicas", "max_replicas_used", "sync_errors")


Terms = Callable[[dict[str, Any]], dict[str, float]]


def entry(name: str, kind: str, settings: dict[str, Any], scores: dict[str, Any], *, rank: int | None = None,
          objective: float | None = None, error: str | None = None, errors: list[str] | None = None,
          terms: Terms | None = None) -> dict[str, Any]:
    """One result object (the ``-o json`` element); ``terms`` breaks the objective down (balanced)."""
    out: dict[str, Any] = {"name": name, "kind": kind, "rank": rank, "settings": settings,
                           "objective": objective, "scores": scores}
    if terms is not None and scores:
        out["objectiveTerms"] = terms(scores)
    if error is not None:
        out["error"] = error
    if errors:
        out["syncErrors"] = errors
    return out


def results(recorded: dict[str, Any], base: Config | None, ranked: list[Config], invalid: list[Config],
            terms: Terms | None = None) -> list[dict[str, Any]]:
    """Recorded first, then the HPA as given, then the sweep best first, then the invalid ones."""
    out = [recorded]
    if base is not None and base.error is None:
        out.append(entry("as given", "replay", {}, base.scores, objective=base.objective, errors=base.sync_errors,
                         terms=terms))
    elif base is not None:
        out.append(entry("as given", "replay", {}, {}, error=base.error))
    for i, c in enumerate(ranked, 1):
        out.append(entry(f"config-{c.index}", "sweep", c.settings, c.scores, rank=i, objective=c.objective,
                         errors=c.sync_errors, terms=terms))
    for c in invalid:
        out.append(entry(f"config-{c.index}", "sweep", c.settings, {}, error=c.error))
    return out


def to_json(items: list[dict[str, Any]]) -> str:
    return json.dumps(items, indent=2, default=_json_default)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def to_csv(items: list[dict[str, Any]]) -> str:
    paths: list[str] = []
    for it in items:
        for p in it["settings"]:
            if p not in paths:
                paths.append(p)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["name", "kind", "rank", *paths, "objective", *SCORE_KEYS, *EXTRA_KEYS, "error"])
    for it in items:
        s = it["scores"]
        w.writerow([it["name"], it["kind"], "" if it["rank"] is None else it["rank"],
                    *[_cell(it["settings"].get(p)) for p in paths],
                    _cell(it["objective"]), *[_cell(s.get(k)) for k in SCORE_KEYS],
                    *[_cell(s.get(k)) for k in EXTRA_KEYS], it.get("error", "")])
    return buf.getvalue()


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, dict | list):
        return json.dumps(v, separators=(",", ":"))
    return str(v)


def human_seconds(v: float | None) -> str:
    if v is None:
        return "-"
    s = round(v)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


COLUMNS: list[tuple[str, str, Any]] = [
    ("core-h", "core_hours", lambda v: f"{v:.1f}"),
    ("pod-h", "pod_hours", lambda v: f"{v:.1f}"),
    ("unmet core-s", "unmet_core_seconds", lambda v: f"{v:.0f}"),
    ("under-prov.", "under_provisioned_seconds", human_seconds),
    ("above target", "above_target_seconds", human_seconds),
    ("over core-h", "over_provisioned_core_hours", lambda v: f"{v:.1f}"),
    ("scalings", "scale_events", str),
    ("reversals", "reversals", str),
    ("at max", "pinned_max_seconds", human_seconds),
    ("at min", "pinned_min_seconds", human_seconds),
    ("to capacity", "time_to_capacity_mean_seconds", human_seconds),
]


def _label(it: dict[str, Any]) -> str:
    if it["kind"] != "sweep":
        return it["name"]
    return " ".join(f"{short_name(p)}={_cell(v)}" for p, v in it["settings"].items()) or it["name"]


def table_rows(items: list[dict[str, Any]], top: int) -> list[tuple[str, str, list[str]]]:
    """(rank, configuration, cells) for the recorded run, the HPA as given and the ``top`` best."""
    rows = []
    shown = 0
    for it in items:
        if it.get("error"):
            continue
        if it["kind"] == "sweep":
            shown += 1
            if shown > top:
                continue
        s = it["scores"]
        obj = "-" if it.get("objective") is None else f"{it['objective']:.4g}"
        cells = [obj] + [fmt(s[key]) if s.get(key) is not None else "-" for _, key, fmt in COLUMNS]
        rank = "" if it["rank"] is None else str(it["rank"])
        rows.append((rank, _label(it), cells))
    return rows


def shown_note(items: list[dict[str, Any]], top: int) -> str:
    """Says how many of the sweep's valid configurations the table leaves out ('' when none)."""
    valid = sum(1 for it in items if it["kind"] == "sweep" and not it.get("error"))
    return f"the best {top} of {valid} configurations are shown (--top)" if valid > top else ""


def render_table(items: list[dict[str, Any]], top: int, objective: str, file: Any = None) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"Replay results (objective: {objective}; lower is better)", header_style="bold",
              caption=shown_note(items, top) or None)
    t.add_column("#", justify="right")
    t.add_column("configuration", no_wrap=True)
    t.add_column("objective", justify="right")
    for head, _, _ in COLUMNS:
        t.add_column(head, justify="right")
    for rank, label, cells in table_rows(items, top):
        style = "bold green" if rank == "1" else ("dim" if label == "recorded" else None)
        t.add_row(rank, label, *cells, style=style)
    console = Console(file=file)
    if not console.is_terminal:
        console.width = 200  # piped or captured: do not squeeze the columns into 80
    console.print(t)
    bad = [it for it in items if it.get("error")]
    for it in bad:
        console.print(f"[yellow]{it['name']}[/yellow] ({_label(it)}): invalid: {it['error']}")


def timeline_csv(load: WorkloadLoad, runs: dict[str, tuple[str, Timeline]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    roles = list(runs)
    w.writerow(["timestamp", "demand_cores", *[f"{r.replace(' ', '_')}_{c}" for r in roles
                                               for c in ("replicas", "pods", "ready")]])
    cols = [load.times.astype(np.int64), np.round(load.demand, 6)]
    for r in roles:
        tl = runs[r][1]
        cols += [tl.replicas, tl.pods, tl.ready]
    w.writerows(zip(*[c.tolist() for c in cols], strict=True))
    return buf.getvalue()


def write_html(out: Path, *, title: str, summary: dict[str, Any], assumptions: list[str],
               items: list[dict[str, Any]], top: int, objective: str, images: dict[str, Path]) -> Path:
    """A self-contained HTML report: the table, the plots (inline base64 PNG) and the assumptions."""
    heads = "".join(f"<th>{html.escape(h)}</th>" for h in ["objective", *(c[0] for c in COLUMNS)])
    body_rows = []
    for rank, label, cells in table_rows(items, top):
        cls = ' class="best"' if rank == "1" else (' class="rec"' if label == "recorded" else "")
        tds = "".join(f"<td>{html.escape(c)}</td>" for c in cells)
        body_rows.append(f"<tr{cls}><td>{rank}</td><td class=l>{html.escape(label)}</td>{tds}</tr>")
    imgs = []
    for name, p in images.items():
        data = base64.b64encode(Path(p).read_bytes()).decode()
        imgs.append(f'<figure><img alt="{html.escape(name)}" src="data:image/png;base64,{data}"></figure>')
    facts = "".join(f"<tr><th class=l>{html.escape(k)}</th><td class=l>{html.escape(str(v))}</td></tr>"
                    for k, v in summary.items())
    notes = "".join(f"<li>{html.escape(a)}</li>" for a in assumptions)
    invalid = "".join(f"<li><b>{html.escape(it['name'])}</b> {html.escape(_label(it))}: {html.escape(it['error'])}</li>"
                      for it in items if it.get("error"))
    doc = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:2em;color:#222}} table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 7px;text-align:right}} .l{{text-align:left}}
tr.best td{{background:#e8f6e8;font-weight:600}} tr.rec td{{color:#666}} img{{max-width:100%}}
</style></head><body>
<h1>{html.escape(title)}</h1>
<table>{facts}</table>
<h2>Configurations (objective: {html.escape(objective)}; lower is better)</h2>
<table><tr><th>#</th><th class=l>configuration</th>{heads}</tr>{"".join(body_rows)}</table>
{f"<p>{html.escape(shown_note(items, top))}; all of them are in results.csv and results.json</p>"
 if shown_note(items, top) else ""}
{f"<h3>Invalid configurations</h3><ul>{invalid}</ul>" if invalid else ""}
<h2>Plots</h2>{"".join(imgs)}
<h2>Model assumptions</h2><ul>{notes}</ul>
<p>Scores are defined in docs/replay.md. The replay calls the same HPA decision core as the live controller.</p>
</body></html>
"""
    path = out / "report.html"
    path.write_text(doc, encoding="utf-8")
    return path
