"""The emulated API server answers kubectl as kube-apiserver 1.37 does, command by command.

One script (tests/kubectl_script/commands.yaml) runs with kubectl 1.37, the kubectl on PATH and
1.27 against the real kube-apiserver (etcd and the API server only) and the emulated one; see
tests/kubectl_compare.py. Every command outside the script's allow-list must give the same exit
code, stdout and stderr once uids, times, ages and addresses are normalised.
"""

from __future__ import annotations

import pytest

from sim.apiserver.resources import RESOURCES, VIRTUAL
from sim.controlplane import binaries
from tests import kubectl_compare
from tests.kubectls import kubectl_set

pytestmark = pytest.mark.real_cluster

#: kinds served so that kube-scheduler's informers sync, stored without defaults or validation:
#: the emulator does not model them, so the script does not compare them
STORED_ONLY = {f"{plural}.storage.k8s.io" for plural in (
    "csidrivers", "csinodes", "csistoragecapacities", "volumeattachments", "volumeattributesclasses")} | {
    f"{plural}.resource.k8s.io" for plural in (
        "deviceclasses", "devicetaintrules", "resourceclaims", "resourceclaimtemplates", "resourceslices")}


def test_script_creates_every_kind_the_emulator_stores():
    """The script's manifests name every stored built-in kind (the catalogue is the list to cover)."""
    import yaml

    raw = yaml.safe_load(kubectl_compare.SCRIPT.read_text())
    kinds = {(d.get("apiVersion"), d.get("kind")) for text in raw["manifests"].values()
             for d in yaml.safe_load_all(text) if d}
    missing = {(r.api_version(), r.kind) for r in RESOURCES
               if r.key not in VIRTUAL and not r.storage and r.key not in ("namespaces", *STORED_ONLY)} - kinds
    assert not missing, f"the kubectl script creates none of {sorted(missing)}"


def test_kubectl_commands_match_kube_apiserver(tmp_path):
    for name in ("etcd", "kube-apiserver"):
        binaries.find(name)  # fails with the build command when missing
    releases = {k.name: k.exe() for k in kubectl_set()}
    script = kubectl_compare.Script.load()
    with kubectl_compare.api_servers(tmp_path) as targets:
        outcomes = kubectl_compare.run_script(script, releases, targets)
    report = kubectl_compare.report(outcomes)
    summary = kubectl_compare.summary(outcomes)
    print("\n" + "\n".join(f"kubectl {r}: {n} commands compared, {same} identical ({allowed} allow-listed)"
                           for r, (n, same, allowed) in summary.items()))
    assert set(summary) == set(releases)
    failing = [o for o in outcomes if not o.identical and o.allowed is None]
    assert not failing, "differences outside the allow-list:\n" + "\n".join(o.diff() for o in failing[:3]) + \
        f"\n\n{report.splitlines()[0]}\n...({len(failing)} in all)"
