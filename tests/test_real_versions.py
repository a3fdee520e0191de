"""The emulated API server's HPA strategy against the real kube-apiserver, at both versions.

A bare upstream control plane (v1.37.2, started with the flags `autoscaler sim up
--control-plane=real --emulated-version=...` passes) and our store at the same version get the
same HPA writes; creates, validation errors and ``metadata.generation`` after label and spec
updates must agree. Real tier: ``python3 -m pytest -m real_cluster``.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from autoscaler.hpa.defaults import APIFeatures
from autoscaler.k8s.rest import KubeError
from autoscaler.k8s.status import ApiError
from sim.apiserver import strategy
from sim.apiserver.store import ObjectStore
from sim.controlplane.controlplane import ControlPlane, ControlPlaneOptions
from sim.up_cmd import version_flags
from tests.real_cluster import missing_programs

pytestmark = pytest.mark.real_cluster

PATH = "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers"
RESOURCE = "horizontalpodautoscalers.autoscaling"
EXTERNAL = {"type": "External", "external": {"metric": {"name": "queue"}, "target": {"type": "Value", "value": "10"}}}
CPU = {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}


def hpa(name: str, min_replicas: int, metrics: list, target: str = "web", **spec: Any) -> dict[str, Any]:
    full = {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
            "minReplicas": min_replicas, "maxReplicas": 5, "metrics": metrics, **spec}
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": name, "namespace": "default"}, "spec": {k: v for k, v in full.items() if v is not None}}


CASES = [
    hpa("zero-external", 0, [EXTERNAL]),
    hpa("zero-cpu", 0, [CPU]),
    hpa("tolerance", 1, [CPU], behavior={"scaleUp": {"tolerance": "50m"}}),
    hpa("plain", 2, [CPU]),
    # validation order: handwritten checks first, then the replica bounds (declarative in 1.37.2)
    hpa("no-max", 1, [CPU], maxReplicas=None),
    hpa("negative", -2, [CPU], maxReplicas=-1, behavior={"scaleUp": {"policies": [], "stabilizationWindowSeconds": -1}}),
    hpa("bad-ref", 1, [{"type": "Pods", "pods": {"metric": {"name": ""}, "target": {
        "type": "AverageValue", "averageValue": "-1"}}}], target=""),
]


def unconditional(obj: dict[str, Any]) -> dict[str, Any]:
    """An update without resourceVersion: kube-controller-manager writes the status in between."""
    obj["metadata"].pop("resourceVersion", None)
    return obj


def _outcome(create, update) -> dict[str, Any]:
    """What happened to each case: the error, or the generation after create, a label-only and a
    spec update, and whether the tolerance was kept."""
    out: dict[str, Any] = {}
    for case in CASES:
        name = case["metadata"]["name"]
        try:
            obj = create(copy.deepcopy(case))
        except ApiError as exc:  # the Status the server answers
            out[name] = ("invalid", exc.message)
            continue
        gens = [obj["metadata"].get("generation")]
        obj = copy.deepcopy(obj)
        obj["metadata"]["labels"] = {"team": "a"}
        obj = update(unconditional(obj))
        gens.append(obj["metadata"].get("generation"))
        obj = copy.deepcopy(obj)
        obj["spec"]["maxReplicas"] = 6
        obj = update(unconditional(obj))
        gens.append(obj["metadata"].get("generation"))
        tol = ((obj["spec"].get("behavior") or {}).get("scaleUp") or {}).get("tolerance")
        out[name] = ("created", gens, tol)
    return out


@pytest.mark.parametrize("version", ["1.37", "1.36"])
async def test_hpa_writes_agree_with_kube_apiserver(version, tmp_path):
    missing = missing_programs()
    if missing:
        pytest.fail("the real-cluster tier needs the upstream programs:\n" + "\n".join(missing))
    flags = version_flags(version, {})
    assert flags == ([] if version == "1.37" else ["--emulated-version=1.36"])
    cp = ControlPlane(tmp_path / "cp", ControlPlaneOptions(extra_args={
        p: flags for p in ("kube-apiserver", "kube-controller-manager", "kube-scheduler")}))
    try:
        await cp.start()
        assert cp.admin is not None
        real: dict[str, Any] = {}
        for case in CASES:  # the same sequence as _outcome, against the real server
            name = case["metadata"]["name"]
            try:
                obj = await cp.admin.post(PATH, copy.deepcopy(case))
            except KubeError as exc:
                real[name] = ("invalid", exc.message)
                continue
            gens = [obj["metadata"].get("generation")]
            obj["metadata"]["labels"] = {"team": "a"}
            obj = await cp.admin.put(f"{PATH}/{name}", unconditional(obj))
            gens.append(obj["metadata"].get("generation"))
            obj["spec"]["maxReplicas"] = 6
            obj = await cp.admin.put(f"{PATH}/{name}", unconditional(obj))
            gens.append(obj["metadata"].get("generation"))
            real[name] = ("created", gens, ((obj["spec"].get("behavior") or {}).get("scaleUp") or {}).get("tolerance"))
    finally:
        await cp.stop()

    previous = strategy.configure_hpa(APIFeatures.for_version(version))
    try:
        store = ObjectStore()
        ours = _outcome(lambda o: store.create(RESOURCE, o), lambda o: store.update(RESOURCE, o))
    finally:
        strategy.configure_hpa(previous)
    assert ours == real
    # what the versions differ in, spelled out
    if version == "1.37":
        assert real["zero-external"] == ("created", [1, 1, 2], None)
        assert real["zero-cpu"][0] == "invalid" and "Object or External metric" in real["zero-cpu"][1]
    else:
        assert real["zero-external"][0] == "invalid" and "must be greater than or equal to 1" in real["zero-external"][1]
        assert real["plain"] == ("created", [None, None, None], None)
