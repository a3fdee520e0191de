"""Shared helpers for tests that run an emulated cluster (importable by any helper's tests).

    from tests.sim_fixtures import emulated_cluster, kubectl
    with emulated_cluster(tmp_path, scenario) as h:      # ManualClock unless clock= is given
        h.advance(10)                                     # virtual seconds, the cluster reacts
        out = kubectl(h.kubeconfig, "get", "pods", "-o", "json")
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sim.clock import Clock, ManualClock
from sim.cluster import ClusterThread, run_in_thread
from sim.scenario import Scenario, parse_scenario

KUBECTL = shutil.which("kubectl") or "kubectl"


def scenario_from(doc: dict[str, Any]) -> Scenario:
    """A Scenario from a dict shaped like a scenario file."""
    return parse_scenario(doc, "test-scenario")


@contextlib.contextmanager
def emulated_cluster(state_dir: Path, scenario: Scenario | dict | None = None, *,
                     clock: Clock | None = None, **kw: Any) -> Iterator[ClusterThread]:
    """An emulated cluster on a background thread, on a ManualClock by default."""
    if scenario is None:
        scenario = Scenario.default(nodes=1, pods_per_node=0)
    elif isinstance(scenario, dict):
        scenario = scenario_from(scenario)
    handle = run_in_thread(scenario, Path(state_dir), clock=clock or ManualClock(), **kw)
    try:
        yield handle
    finally:
        handle.stop()


def kubectl(kubeconfig: Path, *args: str, check: bool = True, binary: str = KUBECTL) -> str:
    """Run the real kubectl against the cluster and return stdout."""
    proc = subprocess.run([binary, "--kubeconfig", str(kubeconfig), *args], capture_output=True, text=True,
                          timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc.stdout if check else proc.stdout + proc.stderr


def kubectl_json(kubeconfig: Path, *args: str) -> Any:
    return json.loads(kubectl(kubeconfig, *args, "-o", "json"))
