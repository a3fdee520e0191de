"""`autoscaler sim replay` and `autoscaler record --convert` end to end, as a user runs them."""

from __future__ import annotations

import base64
import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from sim.replay.synth import hpa_manifest, synthesize
from sim.replay.trace import write_trace

START = 1_767_225_600.0
UTIL = "spec.metrics[0].resource.target.averageUtilization"


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    p = subprocess.run([sys.executable, "-m", "autoscaler", *args], capture_output=True, text=True, timeout=240)
    if check:
        assert p.returncode == 0, p.stderr
    return p


@pytest.fixture(scope="module")
def trace_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    t = np.arange(0, 2 * 3600 + 1, 15.0)
    demand = 0.8 + np.where((t > 1800) & (t < 4200), 2.4, 0.0) + 0.3 * np.sin(t / 600)
    tr = synthesize("web", START, 15.0, demand, hpa_manifest("web", "shop", target=60, min_replicas=2, max_replicas=10),
                    namespace="shop", seed=11)
    path = tmp_path_factory.mktemp("trace") / "web.json.gz"
    write_trace(tr, path)
    return path


def test_json_output_ranks_every_configuration(trace_file: Path) -> None:
    p = run("sim", "replay", str(trace_file), "--set", f"{UTIL}=50,70", "--set",
            "spec.behavior.scaleDown.stabilizationWindowSeconds=0,300", "--set", "spec.minReplicas=2,20",
            "-o", "json", "--jobs", "2")
    items = json.loads(p.stdout)
    assert [i["name"] for i in items[:2]] == ["recorded", "as given"]
    sweep = [i for i in items if i["kind"] == "sweep"]
    assert len(sweep) == 8
    valid = [i for i in sweep if "error" not in i]
    invalid = [i for i in sweep if "error" in i]
    # minReplicas=20 > maxReplicas=10 is rejected by validation, named, and does not stop the rest.
    assert len(valid) == 4 and len(invalid) == 4
    assert all("spec.maxReplicas" in i["error"] for i in invalid)
    assert [i["rank"] for i in valid] == [1, 2, 3, 4]
    objectives = [i["objective"] for i in valid]
    assert objectives == sorted(objectives)
    for i in valid:
        assert set(i["settings"]) == {UTIL, "spec.behavior.scaleDown.stabilizationWindowSeconds", "spec.minReplicas"}
        s = i["scores"]
        assert s["core_hours"] > 0 and s["pod_hours"] == pytest.approx(2 * s["core_hours"])
        assert s["sync_errors"] == 0
        # balanced = cost + priced SLO risk + priced churn, and the terms add up to the objective
        terms = i["objectiveTerms"]
        assert set(terms) == {"cost", "unmet", "underProvisioned", "churn"}
        assert terms["cost"] == pytest.approx(s["core_hours"]) and terms["churn"] > 0
        assert sum(terms.values()) == pytest.approx(i["objective"])
    by = {(i["settings"][UTIL], i["settings"]["spec.behavior.scaleDown.stabilizationWindowSeconds"]): i["scores"]
          for i in valid}
    # A higher target provisions fewer cores; no stabilization window scales down more often.
    assert by[(70, 300)]["core_hours"] < by[(50, 300)]["core_hours"]
    assert by[(50, 0)]["scale_events"] >= by[(50, 300)]["scale_events"]


def test_csv_output_and_objective(trace_file: Path) -> None:
    p = run("sim", "replay", str(trace_file), "--set", f"{UTIL}=40,80", "-o", "csv", "--objective", "cost",
            "--jobs", "1")
    rows = list(csv.DictReader(io.StringIO(p.stdout)))
    assert [r["name"] for r in rows[:2]] == ["recorded", "as given"]
    sweep = rows[2:]
    assert [r[UTIL] for r in sweep] == ["80", "40"]  # cheapest first
    assert float(sweep[0]["core_hours"]) < float(sweep[1]["core_hours"])
    assert sweep[0]["rank"] == "1"
    p = run("sim", "replay", str(trace_file), "--under-provisioned-penalty", "-1", check=False)
    assert p.returncode == 2 and "--under-provisioned-penalty: invalid penalty '-1'" in p.stderr


def test_report_writes_plots_and_a_self_contained_html(trace_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    p = run("sim", "replay", str(trace_file), "--set", f"{UTIL}=50,70", "--report", str(out))
    assert "recorded" in p.stdout and "util=" in p.stdout  # the table
    for name in ("demand_capacity.png", "replicas.png", "utilization.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = (out / "report.html").read_text()
    imgs = html.count('src="data:image/png;base64,')
    assert imgs == 3
    first = html.split('src="data:image/png;base64,', 1)[1].split('"', 1)[0]
    assert base64.b64decode(first)[:4] == b"\x89PNG"
    assert "<table>" in html and "util=" in html and "Model assumptions" in html
    assert json.loads((out / "results.json").read_text())[0]["name"] == "recorded"
    header = (out / "timeline.csv").read_text().splitlines()[0]
    assert header.startswith("timestamp,demand_cores,recorded_replicas")


def test_same_seed_same_results(trace_file: Path) -> None:
    args = ("sim", "replay", str(trace_file), "--dispersion", "recorded", "--seed", "3", "--set", f"{UTIL}=55,65",
            "-o", "json")
    assert run(*args).stdout == run(*args).stdout


def test_csv_trace_with_hpa_file_and_errors(trace_file: Path, tmp_path: Path) -> None:
    csv_path = tmp_path / "web.csv"
    assert run("record", "--convert", str(trace_file), "-f", str(csv_path)).returncode == 0
    hpa = tmp_path / "hpa.yaml"
    hpa.write_text(yaml.safe_dump(hpa_manifest("web", "shop", target=60, min_replicas=2, max_replicas=10)))
    # A CSV trace carries no HPA.
    p = run("sim", "replay", str(csv_path), check=False)
    assert p.returncode == 1 and "records no HPA for shop/web: pass --hpa FILE" in p.stderr
    p = run("sim", "replay", str(csv_path), "--hpa", str(hpa), "-o", "json")
    assert json.loads(p.stdout)[1]["scores"]["core_hours"] > 0
    # A bad row fails with its line number, or is skipped and counted.
    lines = csv_path.read_text().splitlines()
    lines.insert(5, "not-a-time,shop,web,web-0000,app,0.1,1000,0.5,1,268435456,536870912")
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(lines) + "\n")
    p = run("sim", "replay", str(bad), "--hpa", str(hpa), check=False)
    assert p.returncode == 1 and f"{bad}:6: timestamp" in p.stderr
    p = run("sim", "replay", str(bad), "--hpa", str(hpa), "--skip-invalid", "-o", "json")
    assert "skipped 1 invalid CSV row" in p.stderr
    # A path that does not exist in the manifest's lists is named.
    p = run("sim", "replay", str(trace_file), "--set", "spec.metrics[3].type=Pods", "-o", "json")
    errs = [i["error"] for i in json.loads(p.stdout) if "error" in i]
    assert errs == ["spec.metrics[3].type: spec.metrics[3] is out of range (the list has 1 items)"]


def test_fields_the_hpa_kind_lacks_are_refused(trace_file: Path, tmp_path: Path) -> None:
    # a misspelt --set path would otherwise sweep identical configurations
    p = run("sim", "replay", str(trace_file), "--set", "spec.behavior.scaleDown.stabilizationWindowSecond=0,300",
            check=False)
    assert p.returncode == 1
    assert ('--set spec.behavior.scaleDown.stabilizationWindowSecond: strict decoding error: unknown field '
            '"spec.behavior.scaleDown.stabilizationWindowSecond"') in p.stderr
    manifest = hpa_manifest("web", "shop", target=60, min_replicas=2, max_replicas=10)
    manifest["spec"]["metrics"][0]["resource"]["target"]["averageUtilisation"] = 50
    hpa = tmp_path / "typo.yaml"
    hpa.write_text(yaml.safe_dump(manifest))
    p = run("sim", "replay", str(trace_file), "--hpa", str(hpa), check=False)
    assert p.returncode == 1
    assert f'--hpa {hpa}: strict decoding error: unknown field "spec.metrics[0].resource.target.averageUtilisation"' \
        in p.stderr


def test_table_and_html_say_how_many_configurations_they_leave_out(trace_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    p = run("sim", "replay", str(trace_file), "--set", f"{UTIL}=40,45,50,55,60,65,70,75", "--top", "5",
            "--report", str(out), "--no-progress")
    assert "the best 5 of 8 configurations are shown (--top)" in p.stdout
    assert "the best 5 of 8 configurations are shown (--top); all of them are in results.csv" in (
        out / "report.html").read_text()
    p = run("sim", "replay", str(trace_file), "--set", f"{UTIL}=40,45", "--top", "5", "--no-progress")
    assert "configurations are shown" not in p.stdout


def test_plot_legends_name_each_run_once_and_every_target(trace_file: Path, tmp_path: Path, monkeypatch) -> None:
    """Legends read "as given", not "as given (as given)"; the recorded run is drawn beneath the others
    (wider) so an identical replay does not hide it; each configuration's target has its own line."""
    from sim.replay import plots
    from sim.replay.engine import Timeline

    figures = {}
    monkeypatch.setattr(plots, "_save", lambda fig, plt, path: figures.setdefault(path.name, fig) and path)
    n = 8
    load = type("Load", (), {"times": START + 15.0 * np.arange(n), "demand": np.full(n, 1.2), "usage": np.full(n, 1.2),
                             "throttled_steps": 0, "cpu_request": 0.25, "namespace": "shop", "name": "web"})()
    tl = Timeline(load.times, replicas=np.full(n, 4), pods=np.full(n, 4), ready=np.full(n, 4))
    runs = {"recorded": ("recorded", tl), "as given": ("as given", tl), "best": ("util=70", tl)}
    plots.plot_all(load, runs, {"as given": 0.6, "best": 0.7}, tmp_path)
    legend = {name: [t.get_text() for t in fig.axes[0].get_legend().get_texts()] for name, fig in figures.items()}
    assert legend["replicas.png"] == ["recorded", "as given", "best (util=70)"]
    assert "target 60% (as given)" in legend["utilization.png"] and "target 70% (best)" in legend["utilization.png"]
    lines = {ln.get_label(): ln for ln in figures["replicas.png"].axes[0].get_lines()}
    assert lines["recorded"].get_linewidth() > lines["as given"].get_linewidth()
    assert lines["recorded"].get_zorder() < lines["as given"].get_zorder()
