"""`--executor dask://HOST:PORT`: sweeps on a real Dask cluster (scheduler and worker processes) give the
same results as local runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from sim.replay.synth import hpa_manifest, synthesize
from sim.replay.trace import Trace, write_trace
from tests.test_replay_fleet import UTIL, run

START = 1_767_225_600.0


@pytest.fixture(scope="module")
def dask_cluster() -> Iterator[Any]:
    try:
        from distributed import LocalCluster
    except ImportError:
        pytest.fail("dask.distributed is missing: pip install -e '.[distributed]'")
    # The worker processes (started now, inheriting the environment) import this checkout.
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]), saved]))
    try:
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                          host="127.0.0.1") as cluster:
            yield cluster
    finally:
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved


def address(cluster: Any) -> str:
    return "dask://" + cluster.scheduler_address.removeprefix("tcp://")


def ran_on_workers(cluster: Any) -> int:
    """Replay jobs the cluster's workers have finished (the scheduler runs in this process)."""
    prefix = cluster.scheduler.task_prefixes.get("dask_one")
    return 0 if prefix is None else int(prefix.state_counts["memory"])


@pytest.fixture(scope="module")
def traces(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    t = np.arange(0, 2 * 3600 + 1, 15.0)
    d = tmp_path_factory.mktemp("dask")
    ws = []
    for i, name in enumerate(("web", "api", "cart")):
        demand = 0.6 + 0.5 * i + np.where((t > 1800) & (t < 4200), 1.5, 0.0) + 0.3 * np.sin(t / (500 + 100 * i))
        ws.append(synthesize(name, START, 15.0, demand, hpa_manifest(name, "shop", target=60, max_replicas=12),
                             namespace="shop", seed=i))
    write_trace(ws[0], d / "web.json.gz")
    write_trace(Trace([w for tr in ws for w in tr.workloads], START, ws[0].end, 15.0, "test"), d / "all.json.gz")
    hpas = [hpa_manifest(n, "shop", target=60, max_replicas=12) for n in ("web", "api", "cart")]
    (d / "hpas.yaml").write_text(yaml.safe_dump_all(hpas), encoding="utf-8")
    return d / "web.json.gz", d / "all.json.gz"


SWEEP = ("--set", f"{UTIL}=50,60,70,80", "--set", "spec.behavior.scaleDown.stabilizationWindowSeconds=0,300")


def test_sweep_on_dask_matches_local(dask_cluster: Any, traces: tuple[Path, Path]) -> None:
    one, _ = traces
    local = run("sim", "replay", str(one), *SWEEP, "-o", "json", "--jobs", "2")
    before = ran_on_workers(dask_cluster)
    remote = run("sim", "replay", str(one), *SWEEP, "-o", "json", "--executor", address(dask_cluster))
    assert ran_on_workers(dask_cluster) - before == 1 + 8  # the HPA as given and the 8 configurations
    assert len(json.loads(local.stdout)) == 2 + 8
    assert json.loads(remote.stdout) == json.loads(local.stdout)


def test_all_hpas_on_dask_matches_local(dask_cluster: Any, traces: tuple[Path, Path]) -> None:
    _, many = traces
    hpas = ("--hpas", str(many.parent / "hpas.yaml"))
    local = run("sim", "replay", "--all-hpas", str(many), *hpas, *SWEEP, "-o", "json", "--jobs", "2")
    before = ran_on_workers(dask_cluster)
    remote = run("sim", "replay", "--all-hpas", str(many), *hpas, *SWEEP, "-o", "json", "--executor",
                 address(dask_cluster))
    assert ran_on_workers(dask_cluster) - before == 3 * (1 + 8)
    out = json.loads(remote.stdout)
    assert out["summary"]["replayed"] == 3
    assert out == json.loads(local.stdout)


def test_unreachable_scheduler_is_a_clear_error(traces: tuple[Path, Path]) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "2s"}  # Dask's own setting; default 30s
    p = subprocess.run([sys.executable, "-m", "autoscaler", "sim", "replay", str(traces[0]), "--executor",
                        f"dask://127.0.0.1:{port}"], capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode == 1 and "cannot connect to the Dask scheduler" in p.stderr
