"""A real Prometheus scraping the emulated cluster, then `autoscaler record --prometheus`.

Prometheus scrapes every emulated kubelet's ``/metrics/cadvisor`` over verified TLS with the
metrics-server ServiceAccount's token (as kube-prometheus-stack scrapes kubelets), and the
kube-state-metrics equivalent (sim/ksm.py) over HTTP, every 5 s, while `autoscaler record`
records the same cluster from the kubelets itself. The trace imported for the recording's period
must hold the same workload, pods, requests, replicas and HPA, and replay to the same scores.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from sim.cluster import run_in_thread
from sim.scenario import parse_scenario
from tests.test_prometheus_import import replay_scores
from tests.test_record_live import SCENARIO as RECORD_SCENARIO
from tests.test_record_live import record_argv

ROOT = Path(__file__).resolve().parents[1]
SCRAPE = 5.0
SCENARIO = dict(RECORD_SCENARIO, name="prometheus-live")


def _query(url: str, q: str) -> list:
    with urllib.request.urlopen(f"{url}/api/v1/query?{urllib.parse.urlencode({'query': q})}", timeout=10) as r:
        return json.loads(r.read())["data"]["result"]


def _config(cluster, tmp: Path, ksm_port: int) -> str:  # type: ignore[no-untyped-def]
    ca, token = tmp / "ca.crt", tmp / "token"
    ca.write_bytes(cluster.cluster.pki.ca.cert_pem)
    token.write_text(cluster.cluster.metrics_token)
    kubelets = [f"127.0.0.1:{k.port}" for k in cluster.cluster.fleet.kubelets.values()]
    return json.dumps({  # YAML is a superset of JSON
        "global": {"scrape_interval": f"{SCRAPE:g}s", "scrape_timeout": "4s"},
        "scrape_configs": [
            {"job_name": "kubelet-cadvisor", "scheme": "https", "metrics_path": "/metrics/cadvisor",
             "tls_config": {"ca_file": str(ca)}, "authorization": {"credentials_file": str(token)},
             "static_configs": [{"targets": kubelets}]},
            {"job_name": "kube-state-metrics", "static_configs": [{"targets": [f"127.0.0.1:{ksm_port}"]}]},
        ]})


@pytest.mark.real_cluster
def test_import_of_a_scraped_cluster_matches_its_recording(tmp_path):
    from sim.autoscaler_proc import free_port
    from sim.ksm import KubeStateMetricsServer
    from sim.promserver import PrometheusServer
    from sim.replay.trace import read_trace

    cluster = run_in_thread(parse_scenario(SCENARIO), tmp_path / "cluster")
    ksm = cluster.run(KubeStateMetricsServer(cluster.store).start())
    server = PrometheusServer(tmp_path / "tsdb", free_port(), _config(cluster, tmp_path, ksm.port)).start()
    try:
        recorded = tmp_path / "recorded.json.gz"
        proc = subprocess.run(record_argv(cluster, tmp_path, recorded, "90s"), cwd=ROOT, capture_output=True,
                              text=True, timeout=240)
        assert proc.returncode == 0, proc.stderr[-3000:]
        rec, _ = read_trace(recorded)
        # both targets up, and Prometheus has scraped past the end of the recording
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            up = _query(server.url, "up")
            last = _query(server.url, 'max(timestamp(container_cpu_usage_seconds_total{container!=""}))')
            if len(up) == 3 and all(r["value"][1] == "1" for r in up) and last and float(last[0]["value"][1]) > rec.end:
                break
            time.sleep(0.5)
        else:
            pytest.fail(f"Prometheus did not scrape past {rec.end}: up={up}, last={last}")
        imported = tmp_path / "imported.json.gz"
        proc = subprocess.run([sys.executable, "-m", "autoscaler", "record", "--prometheus", server.url,
                               "-f", str(imported), "--start", f"{rec.start:.3f}", "--end", f"{rec.end:.3f}",
                               "--workload", "deployment/web"], cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-3000:]
    finally:
        server.stop()
        cluster.run(ksm.stop())
        cluster.stop()
    got, _ = read_trace(imported)
    # cAdvisor stamps samples with its housekeeping time (every 2 s here), so 5 s scrapes are 4 or 6 s apart
    assert 4.0 <= got.resolution <= 6.0
    w, g = rec.workload("default", "web"), got.workload("default", "web")
    assert g.kind == "Deployment"
    assert sorted(p.name for p in g.pods) == sorted(p.name for p in w.pods)
    assert g.hpas[0].manifest["spec"] == w.hpas[-1].manifest["spec"]
    assert g.replicas.tolist() == w.replicas.tolist()
    mine = {p.name: p for p in g.pods}
    for p in w.pods:
        q = mine[p.name]
        # both from the API's whole seconds; a native trace keeps times to the millisecond relative to
        # its (fractional) start, so a round trip moves them by up to half a millisecond each
        assert q.created == pytest.approx(p.created, abs=1e-3) and q.started == pytest.approx(p.started, abs=1e-3)
        # KSM exposes Ready's transition in whole seconds
        assert q.ready == pytest.approx(p.ready, abs=1.0)
        (c,), (d,) = p.containers, q.containers
        assert (d.cpu_request, d.cpu_limit, d.memory_request) == (c.cpu_request, c.cpu_limit, c.memory_request)
        # The same counter read at other times: the CPU used between the recording's first and
        # last sample (cores x seconds) agrees up to the usage of one Prometheus sample interval
        # at each end, where the two sample grids do not line up.
        lo, hi = c.t[0], c.t[-1]
        used_rec = float(np.sum(c.cpu[1:] * np.diff(c.t)))
        inside = (d.t > lo) & (d.t <= hi)
        dt = np.diff(np.concatenate([[lo], d.t[inside]]))
        used_imp = float(np.sum(d.cpu[inside] * dt))
        bound = 2 * float(np.diff(d.t).max()) * float(max(c.cpu.max(), d.cpu.max()))
        assert used_imp == pytest.approx(used_rec, abs=bound), (p.name, used_rec, used_imp, bound)
    # Replays of the two agree: the same scale-ups, each at most a step of either grid apart.
    a = replay_scores(recorded, "--workload", "default/web")["as given"]
    b = replay_scores(imported)["as given"]
    assert (a["scale_events"], a["max_replicas_used"]) == (b["scale_events"], b["max_replicas_used"])
    span = (a["max_replicas_used"] - int(w.replicas[0])) * (rec.resolution + got.resolution) / (rec.end - rec.start)
    assert abs(a["mean_replicas"] - b["mean_replicas"]) <= span, (a, b)
