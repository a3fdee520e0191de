"""`autoscaler sim replay --all-hpas`: every workload under its own HPA and the sweep, as a user runs it."""

from __future__ import annotations

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
from sim.replay.trace import Trace, write_trace

START = 1_767_225_600.0
UTIL = "spec.metrics[0].resource.target.averageUtilization"
HOURS = 1.0


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    p = subprocess.run([sys.executable, "-m", "autoscaler", *args], capture_output=True, text=True, timeout=240)
    if check:
        assert p.returncode == 0, p.stderr
    return p


def _workload(name: str, cores: float, replicas: int) -> Trace:
    """A flat demand of ``cores`` (no noise) recorded at ``replicas`` pods of 0.5 CPU under a 60 % target."""
    t = np.arange(0, HOURS * 3600 + 1, 15.0)
    return synthesize(name, START, 15.0, np.full(len(t), cores), hpa_manifest(name, "shop", target=60, max_replicas=10),
                      namespace="shop", noise=0.0, initial_replicas=replicas, seed=3)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One trace with four workloads (web, api: fine; batch: no HPA; legacy: no CPU requests) and an HPA file
    that also names a workload the trace does not have (ghost)."""
    web = _workload("web", 1.2, 4)  # 1.2 cores / (0.5 x 60 %) = 4 pods; at 80 %: 3
    api = _workload("api", 0.6, 2)  # 0.6 / 0.3 = 2 pods; at 80 %: still 2
    batch = _workload("batch", 0.6, 2)
    legacy = _workload("legacy", 0.6, 2)
    for pod in legacy.workloads[0].pods:
        for c in pod.containers:
            c.cpu_request = None
    trace = Trace([w for tr in (web, api, batch, legacy) for w in tr.workloads], web.start, web.end, 15.0, "test")
    d = tmp_path_factory.mktemp("fleet")
    write_trace(trace, d / "cluster.json.gz")
    hpas = {"apiVersion": "v1", "kind": "List", "items": [
        hpa_manifest(n, "shop", target=60, max_replicas=10) for n in ("web", "api", "legacy", "ghost")]}
    (d / "hpas.yaml").write_text(yaml.safe_dump(hpas), encoding="utf-8")
    return d / "cluster.json.gz", d / "hpas.yaml"


def test_every_workload_reported_with_summary(fleet: tuple[Path, Path]) -> None:
    trace, hpas = fleet
    p = run("sim", "replay", "--all-hpas", str(trace), "--hpas", str(hpas), "--set", f"{UTIL}=60,80", "-o", "json",
            "--jobs", "2")
    out = json.loads(p.stdout)
    rows = {r["workload"]: r for r in out["workloads"]}
    assert set(rows) == {"shop/web", "shop/api", "shop/batch", "shop/legacy", "shop/ghost"}
    # Bad input fails the one thing: each broken workload names its problem, the others are replayed.
    assert rows["shop/batch"]["error"] == "no HPA targets this workload"
    assert "no CPU request" in rows["shop/legacy"]["error"]
    assert rows["shop/ghost"]["error"] == "no trace for the HPA's scale target"
    for key in ("shop/batch", "shop/legacy", "shop/ghost"):
        assert f"error: {key}: " in p.stderr
    web, api = rows["shop/web"], rows["shop/api"]
    # As given, web holds 4 pods of 0.5 CPU for the whole hour: 2 core-hours, nothing unmet, no scaling.
    span_h = HOURS + 15 / 3600  # the last sample counts one step
    assert web["asGiven"]["core_hours"] == pytest.approx(4 * 0.5 * span_h)
    assert web["asGiven"]["pod_hours"] == pytest.approx(4 * span_h)
    assert web["asGiven"]["scale_events"] == 0 and web["asGiven"]["unmet_core_seconds"] == 0
    assert web["recorded"]["core_hours"] == pytest.approx(web["asGiven"]["core_hours"])
    # At 80 % it needs 3 pods: one scale-down after the 5 min stabilization window, still nothing unmet.
    assert web["change"] is True and web["best"]["settings"] == {UTIL: 80}
    assert web["best"]["scale_events"] == 1 and web["best"]["unmet_core_seconds"] == 0
    assert 4 * 0.5 * span_h - web["best"]["core_hours"] == pytest.approx(web["saving"]["coreHours"])
    assert 0.5 * (HOURS - 6 / 60) <= web["saving"]["coreHours"] <= 0.5 * HOURS
    # api needs 2 pods either way: the HPA as given is kept.
    assert api["change"] is False and api["best"]["configuration"] == "(as given)"
    assert api["saving"]["coreHours"] == 0 and api["asGiven"]["core_hours"] == pytest.approx(2 * 0.5 * span_h)
    s = out["summary"]
    assert (s["workloads"], s["replayed"], s["failed"], s["wouldChange"]) == (5, 2, 3, 1)
    assert s["asGiven"]["core_hours"] == pytest.approx(web["asGiven"]["core_hours"] + api["asGiven"]["core_hours"])
    assert s["saving"]["coreHours"] == pytest.approx(web["saving"]["coreHours"])
    assert s["saving"]["fraction"] == pytest.approx(web["saving"]["coreHours"] / s["asGiven"]["core_hours"])


def test_csv_table_and_report(fleet: tuple[Path, Path], tmp_path: Path) -> None:
    trace, hpas = fleet
    p = run("sim", "replay", "--all-hpas", str(trace), "--hpas", str(hpas), "--set", f"{UTIL}=60,80", "-o", "csv",
            "--jobs", "1")
    rows = list(csv.DictReader(io.StringIO(p.stdout)))
    assert [r["workload"] for r in rows] == ["shop/web", "shop/api", "shop/batch", "shop/legacy", "shop/ghost",
                                             "(cluster)"]
    assert rows[0]["change"] == "true" and rows[1]["change"] == "false" and rows[2]["error"]
    assert float(rows[-1]["saving_core_hours"]) == pytest.approx(float(rows[0]["saving_core_hours"]), rel=1e-5)
    assert rows[-1]["best_configuration"] == "1 would change"
    p = run("sim", "replay", "--all-hpas", str(trace), "--hpas", str(hpas), "--set", f"{UTIL}=60,80",
            "--report", str(tmp_path / "r"))
    assert "cluster (5 workloads, 3 failed)" in p.stdout and "util=80" in p.stdout
    page = (tmp_path / "r" / "report.html").read_text()
    assert 'href="#shop_web"' in page and "no HPA targets this workload" in page
    assert json.loads((tmp_path / "r" / "results.json").read_text())["summary"]["wouldChange"] == 1


def test_recorded_hpas_and_folder(fleet: tuple[Path, Path], tmp_path: Path) -> None:
    """Without --hpas every workload uses the HPA its trace recorded; a folder of traces works like one file,
    and an unreadable file in it is one error row."""
    trace, _ = fleet
    (tmp_path / "a.json.gz").write_bytes(trace.read_bytes())
    (tmp_path / "broken.json").write_text("{", encoding="utf-8")
    p = run("sim", "replay", "--all-hpas", str(tmp_path), "-o", "json")
    rows = {r["workload"]: r for r in json.loads(p.stdout)["workloads"]}
    assert "error" not in rows["shop/web"] and "error" not in rows["shop/batch"]
    assert "no CPU request" in rows["shop/legacy"]["error"]
    assert "cannot read the trace" in rows["file:broken.json"]["error"]


def test_bad_flags_fail_clearly(fleet: tuple[Path, Path], tmp_path: Path) -> None:
    trace, hpas = fleet
    p = run("sim", "replay", "--all-hpas", str(trace), "--hpa", str(hpas), check=False)
    assert p.returncode == 1 and "use --hpas FILE" in p.stderr
    (tmp_path / "bad.yaml").write_text("kind: HorizontalPodAutoscaler\napiVersion: autoscaling/v2\nspec: {bogus: 1}\n")
    p = run("sim", "replay", "--all-hpas", str(trace), "--hpas", str(tmp_path / "bad.yaml"), check=False)
    assert p.returncode == 1 and "bogus" in p.stderr
    p = run("sim", "replay", str(trace), "--executor", "dask://nohost", check=False)
    assert p.returncode == 2 and "dask://HOST:PORT" in p.stderr


def test_hpas_read_from_the_cluster(fleet: tuple[Path, Path], tmp_path: Path) -> None:
    """--kubeconfig lists the autoscaling/v2 HPAs of every namespace (here from the emulated API server)."""
    from autoscaler.k8s.kubeconfig import load_kubeconfig
    from autoscaler.k8s.rest import KubeClient
    from sim.apiserver.testing import ServerThread

    trace, _ = fleet
    with ServerThread(tmp_path) as srv:
        async def create() -> None:
            async with KubeClient(load_kubeconfig(str(srv.kubeconfig))) as c:
                await c.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                    "metadata": {"name": "shop"}})
                for name in ("web", "api"):
                    await c.post("/apis/autoscaling/v2/namespaces/shop/horizontalpodautoscalers",
                                 hpa_manifest(name, "shop", target=80, max_replicas=10))

        srv.run(create())
        p = run("sim", "replay", "--all-hpas", str(trace), "--kubeconfig", str(srv.kubeconfig), "-o", "json")
    rows = {r["workload"]: r for r in json.loads(p.stdout)["workloads"]}
    assert rows["shop/web"]["hpa"] == "web" and rows["shop/api"]["hpa"] == "api"
    # The cluster's HPA (80 %) is the one replayed: web runs 3 pods, not the recorded 4.
    assert rows["shop/web"]["asGiven"]["core_hours"] < rows["shop/web"]["recorded"]["core_hours"]
    assert rows["shop/batch"]["error"] == "no HPA targets this workload"
