"""The pieces of the real-HPA comparison that need no cluster: reading kube-controller-manager's
and our sync records, pairing and classifying syncs, the gate flags, and external metric series."""

from __future__ import annotations

import json

import pytest

from sim.controlplane.agreement import StatusRecord, Sync, compare, parse_kcm_log, parse_ours_log
from sim.external_series import ExternalSeries
from sim.scenario import ScenarioError, parse_scenario

T0 = 1796557400.0  # 2026-12-06T11:43:20Z
TARGETS = {"Deployment/default/web": "default/web"}

# klog text lines as kube-controller-manager 1.37 writes them with --vmodule=horizontal=4
KCM = [
    'I1206 11:43:24.338241   23977 horizontal.go:958] "Proposing desired replicas" desiredReplicas=7 '
    'metric="cpu resource utilization (percentage of request)" tolerances="[down:10.0%, up:10.0%]" '
    'timestamp="2026-12-06 11:43:20 +0000 UTC" scaleTarget="Deployment/default/web"',
    'I1206 11:43:24.338279   23977 horizontal.go:1059] "Decided not to scale" scaleTarget="Deployment/default/web" '
    'desiredReplicas=7 lastScaleTime="2026-12-06 11:43:19 +0000 UTC"',
    'I1206 11:43:24.338300   23977 replica_set.go:640] "Decided not to scale" scaleTarget="Deployment/default/web" '
    'desiredReplicas=1',
    'E1206 11:43:29.000000   23977 horizontal.go:354] "Unhandled Error" err="failed to compute desired number of '
    'replicas based on listed metrics for Deployment/default/web: invalid metrics (1 invalid out of 1), first error '
    'is: failed to get cpu resource metric value: no metrics returned from resource metrics API" '
    'logger="UnhandledError"',
    'I1206 11:43:34.100000   23977 horizontal.go:958] "Proposing desired replicas" desiredReplicas=2 '
    'metric="cpu resource utilization (percentage of request)" tolerances="[down:10.0%, up:10.0%]" '
    'timestamp="2026-12-06 11:43:30 +0000 UTC" scaleTarget="Deployment/default/web"',
    'I1206 11:43:34.200000   23977 horizontal.go:1032] "Successfully rescaled" HPA="default/web" currentReplicas=7 '
    'desiredReplicas=2 reason="All metrics below target"',
]


def test_kcm_log_gives_one_sync_per_decision_with_its_metric_timestamp():
    syncs = parse_kcm_log(KCM, TARGETS, 2026)
    assert [(s.desired, s.current, s.metrics_time) for s in syncs] == [
        (7, 7, T0), (None, None, None), (2, 7, T0 + 10)]  # the replica_set.go line is not the HPA's
    assert syncs[0].time == pytest.approx(T0 + 4.338279)
    assert syncs[1].error.startswith("invalid metrics (1 invalid out of 1)")


def test_our_log_gives_the_dry_run_records_only():
    rec = {"hpa": "default/web", "current": 7, "desired": 2, "recommended": 2, "error": None, "reason": "",
           "metrics_time": T0 + 10, "current_metrics": [], "event": "dry-run sync", "level": "debug",
           "timestamp": "2026-12-06T11:43:36.500000Z"}
    lines = [json.dumps({"event": "request", "timestamp": "2026-12-06T11:43:36Z"}), json.dumps(rec), "not json"]
    (s,) = parse_ours_log(lines)
    assert (s.hpa, s.desired, s.current, s.metrics_time) == ("default/web", 2, 7, T0 + 10)
    assert s.time == pytest.approx(T0 + 16.5)


def _status(t: float, desired: int) -> StatusRecord:
    return StatusRecord("default/web", t, desired, desired, [], "Deployment/default/web")


def test_syncs_pair_by_scrape_and_agree():
    real = [Sync("default/web", T0 + 4, 3, 3, T0), Sync("default/web", T0 + 9, 3, 3, T0)]
    ours = [Sync("default/web", T0 + 6, 3, 3, T0, current_metrics=[]),
            Sync("default/web", T0 + 11, 4, 3, T0 + 10, current_metrics=[])]
    rep = compare(real, ours, [_status(T0 + 4.01, 3)], 5.0)
    # the second real sync read the scrape at T0: it pairs with our sync at +6 (same scrape), not +11
    assert [(p.match, p.agree) for p in rep.pairs] == [("same input", True), ("same input", True)]


def test_a_window_edge_between_the_syncs_is_sync_phase_skew():
    # kcm at +4 still holds 7 in its stabilization window, ours 2 s later no longer; kcm's next sync agrees
    real = [Sync("default/web", T0 + 4, 7, 7, T0), Sync("default/web", T0 + 9, 2, 7, T0)]
    ours = [Sync("default/web", T0 + 1, 7, 7, T0 - 10, current_metrics=[]),
            Sync("default/web", T0 + 6, 2, 7, T0, current_metrics=[])]
    rep = compare(real, ours, [_status(T0 + 4.01, 7), _status(T0 + 9.01, 2)], 5.0)
    bad = [p for p in rep.pairs if not p.agree]
    assert len(bad) == 1 and bad[0].cause == "sync-phase" and bad[0].sampling_skew
    assert rep.to_json()["byCause"]["sync-phase"]["count"] == 1
    assert "sync-phase" in rep.to_markdown()


def test_a_divergence_on_the_same_inputs_is_not_called_skew():
    real = [Sync("default/web", T0 + 4, 5, 3, T0), Sync("default/web", T0 + 9, 5, 3, T0)]
    ours = [Sync("default/web", T0 + 6, 4, 3, T0, current_metrics=[]),
            Sync("default/web", T0 + 11, 4, 3, T0, current_metrics=[])]
    rep = compare(real, ours, [_status(T0 + 4.01, 5)], 5.0)
    assert {(p.cause, p.sampling_skew) for p in rep.pairs} == {("same-inputs", False)}


def test_a_replica_count_read_across_a_rescale_is_named():
    real = [Sync("default/web", T0 + 4, 6, 4, T0)]
    ours = [Sync("default/web", T0 + 5, 7, 6, T0, current_metrics=[]),
            Sync("default/web", T0 + 1, 6, 4, T0 - 10, current_metrics=[])]
    (p,) = compare(real, ours, [], 5.0).pairs
    assert (p.cause, p.sampling_skew) == ("replicas-read", True)
    assert "kcm 4, ours 6" in p.evidence


def test_external_series_from_a_scenario():
    sc = parse_scenario({"externalMetrics": [
        {"name": "queue_length", "labels": {"queue": "orders"}, "points": [[0, 30], ["40s", 0], ["1m", "1.5k"]]},
        {"name": "lag", "namespace": "jobs", "interpolation": "linear", "points": [[0, 0], [10, "1"]]}]})
    q, lag = sc.external_metrics
    assert [q.value_at(t) for t in (-5, 0, 39.9, 40, 59, 60, 1e6)] == [30000, 30000, 30000, 0, 0, 1500000, 1500000]
    assert (lag.namespace, lag.value_at(5), lag.value_at(20)) == ("jobs", 500, 1000)
    assert ExternalSeries("x", times=[0], values_milli=[7]).value_at(100) == 7


@pytest.mark.parametrize("bad, message", [
    ({"points": [[0, 1]]}, "externalMetrics[0].name: required"),
    ({"name": "q", "points": []}, "externalMetrics[0].points: a series needs at least one point"),
    ({"name": "q", "points": [[10, 1], [5, 2]]}, "points[1]: times must not decrease"),
    ({"name": "q", "points": [[0, "lots"]]}, "invalid quantity 'lots'"),
    ({"name": "q", "points": [[0, 1]], "interpolation": "cubic"}, "unsupported value 'cubic'"),
])
def test_bad_external_series_are_refused_naming_the_field(bad, message):
    with pytest.raises(ScenarioError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_scenario({"externalMetrics": [bad]}, "s.yaml")


def test_sim_up_refuses_external_metrics_on_the_emulated_control_plane(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    sc = tmp_path / "s.yaml"
    sc.write_text("externalMetrics:\n  - {name: q, points: [[0, 1]]}\n")
    proc = subprocess.run([sys.executable, "-m", "autoscaler", "sim", "up", "-f", str(sc)], capture_output=True,
                          text=True, timeout=60, cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 1
    assert "externalMetrics are served on --control-plane=real only" in proc.stderr
