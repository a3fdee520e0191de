"""CustomResourceDefinitions on the emulated API server, and our HPA controller scaling a custom
resource (an Argo-Rollouts-like ``Rollout``) through its ``/scale`` subresource.

The first tests drive the server with the real kubectl binaries and the kubernetes Python client;
the last one runs the controller against an emulated cluster, step by step on a ManualClock (the
pattern of test_e2e_controller_cluster.py).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from contextlib import asynccontextmanager
from pathlib import Path

import kubernetes
import pytest

from autoscaler.controller.controller import HPAController
from autoscaler.hpa import ControllerConfig
from sim.apiserver.resources import CRDS
from sim.apiserver.store import ObjectStore
from sim.apiserver.testing import ServerThread
from sim.kubelet.pods import PodTiming
from sim.loadmodel import Constant
from sim.nodes import NodeSpec
from sim.scenario import Scenario, WorkloadSpec
from tests.kubectls import kubectl_set
from tests.sim_fixtures import ControllerEnv, kubectl, scraped_cluster

KUBECTL = shutil.which("kubectl") or "kubectl"

GROUP, VERSION, PLURAL = "argoproj.io", "v1alpha1", "rollouts"
CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "rollouts.argoproj.io"},
    "spec": {
        "group": GROUP, "scope": "Namespaced",
        "names": {"kind": "Rollout", "plural": PLURAL, "shortNames": ["ro"]},
        "versions": [{
            "name": VERSION, "served": True, "storage": True,
            "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}},
            "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas",
                                                     "statusReplicasPath": ".status.replicas",
                                                     "labelSelectorPath": ".status.selector"}},
            "additionalPrinterColumns": [
                {"name": "Desired", "type": "integer", "jsonPath": ".spec.replicas"},
                {"name": "Current", "type": "integer", "jsonPath": ".status.replicas"},
                {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}],
        }],
    },
}
ROLLOUT = {
    "apiVersion": f"{GROUP}/{VERSION}", "kind": "Rollout",
    "metadata": {"name": "web", "namespace": "default"},
    "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
             "template": {"metadata": {"labels": {"app": "web"}},
                          "spec": {"containers": [{"name": "app", "image": "app:1"}]}},
             "strategy": {"canary": {"steps": [{"setWeight": 20}]}}},
}


def _write(path: Path, doc: dict) -> Path:
    path.write_text(json.dumps(doc))
    return path


def _fails(kubeconfig: Path, *args: str) -> str:
    """kubectl's stderr for a command that must fail."""
    proc = subprocess.run([KUBECTL, "--kubeconfig", str(kubeconfig), *args], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode != 0, proc.stdout
    return proc.stderr


def test_kubectl_crd_lifecycle_and_scale(tmp_path):
    with ServerThread(tmp_path / "srv") as srv:
        kc = srv.kubeconfig
        assert "created" in kubectl(kc, "apply", "-f", str(_write(tmp_path / "crd.json", CRD)))
        kubectl(kc, "wait", "--for=condition=Established", "crd/rollouts.argoproj.io", "--timeout=10s")
        assert "rollouts.argoproj.io" in kubectl(kc, "get", "crd").splitlines()[1]
        crd = json.loads(kubectl(kc, "get", "crd", "rollouts.argoproj.io", "-o", "json"))
        assert crd["status"]["acceptedNames"] == {"plural": PLURAL, "singular": "rollout", "shortNames": ["ro"],
                                                  "kind": "Rollout", "listKind": "RolloutList"}
        assert {c["type"]: c["status"] for c in crd["status"]["conditions"]} == {
            "NamesAccepted": "True", "Established": "True"}
        assert crd["status"]["storedVersions"] == [VERSION]

        assert "rollout.argoproj.io/web created" in kubectl(kc, "apply", "-f",
                                                            str(_write(tmp_path / "ro.json", ROLLOUT)))
        header, row = kubectl(kc, "get", "rollouts").splitlines()
        assert header.split() == ["NAME", "DESIRED", "CURRENT", "AGE"] and row.split()[:2] == ["web", "2"]
        assert kubectl(kc, "get", "ro", "web", "-o", "jsonpath={.spec.strategy.canary.steps[0].setWeight}") == "20"

        kubectls = [k.exe() for k in kubectl_set()]
        for replicas, binary in enumerate(kubectls, start=3):
            assert "scaled" in kubectl(kc, "scale", "rollout", "web", f"--replicas={replicas}", binary=binary)
            assert kubectl(kc, "get", "ro", "web", "-o", "jsonpath={.spec.replicas}", binary=binary) == str(replicas)
        ro = json.loads(kubectl(kc, "get", "ro", "web", "-o", "json"))
        assert ro["metadata"]["generation"] == 1 + len(kubectls)  # every scale changed the spec
        scale = json.loads(kubectl(kc, "get", "--raw", f"/apis/{GROUP}/{VERSION}/namespaces/default/rollouts/web/scale"))
        assert scale == {"kind": "Scale", "apiVersion": "autoscaling/v1",
                         "metadata": {k: ro["metadata"][k] for k in ("name", "namespace", "uid", "resourceVersion",
                                                                      "creationTimestamp")},
                         "spec": {"replicas": 2 + len(kubectls)}, "status": {"replicas": 0}}

        resources = kubectl(kc, "api-resources", f"--api-group={GROUP}").splitlines()
        assert resources[1].split() == ["rollouts", "ro", f"{GROUP}/{VERSION}", "true", "Rollout"]
        listing = json.loads(kubectl(kc, "get", "--raw", f"/apis/{GROUP}/{VERSION}"))
        subs = {r["name"]: r for r in listing["resources"]}
        assert (subs["rollouts/scale"]["group"], subs["rollouts/scale"]["version"], subs["rollouts/scale"]["kind"]) \
            == ("autoscaling", "v1", "Scale")
        assert subs["rollouts/status"]["kind"] == "Rollout"

        assert "deleted" in kubectl(kc, "delete", "crd", "rollouts.argoproj.io")
        assert len(kubectl(kc, "api-resources", f"--api-group={GROUP}").splitlines()) == 1  # header only
        assert 'the server doesn\'t have a resource type "rollouts"' in _fails(kc, "get", "rollouts")
        # a CRD created again starts empty: its objects went with it
        kubectl(kc, "apply", "-f", str(tmp_path / "crd.json"))
        assert "No resources found" in kubectl(kc, "get", "rollouts", check=False)


def test_invalid_crd_is_refused_like_kube_apiserver(tmp_path):
    bad = json.loads(json.dumps(CRD))
    bad["metadata"]["name"] = "rollout.argoproj.io"
    bad["spec"]["versions"][0]["storage"] = False
    bad["spec"]["versions"][0]["subresources"]["scale"]["specReplicasPath"] = ".status.replicas"
    bad["spec"]["scope"] = "Global"
    with ServerThread(tmp_path / "srv") as srv:
        out = _fails(srv.kubeconfig, "apply", "-f", str(_write(tmp_path / "bad.json", bad)))
        assert 'The CustomResourceDefinition "rollout.argoproj.io" is invalid' in out
        for text in ('metadata.name: Invalid value: "rollout.argoproj.io": must be spec.names.plural+"."+spec.group',
                     'spec.scope: Unsupported value: "Global": supported values: "Cluster", "Namespaced"',
                     'spec.versions[0].subresources.scale.specReplicasPath: Invalid value: ".status.replicas": '
                     "should be a json path under .spec",
                     "must have exactly one version marked as storage version"):
            assert text in out, text
        assert "No resources found" in kubectl(srv.kubeconfig, "get", "crd", check=False)


def test_custom_objects_through_the_python_client(tmp_path):
    with ServerThread(tmp_path / "a") as srv, ServerThread(tmp_path / "b") as other:
        api = kubernetes.config.new_client_from_config(str(srv.kubeconfig))
        try:
            ext = kubernetes.client.ApiextensionsV1Api(api)
            crd = ext.create_custom_resource_definition(CRD)
            assert crd.status.accepted_names.kind == "Rollout"
            custom = kubernetes.client.CustomObjectsApi(api)
            args = (GROUP, VERSION, "default", PLURAL)
            created = custom.create_namespaced_custom_object(*args, {**ROLLOUT, "status": {"replicas": 9}})
            assert "status" not in created and created["metadata"]["generation"] == 1  # status only via /status

            status = {**created, "status": {"replicas": 2, "selector": "app=web"}}
            after = custom.replace_namespaced_custom_object_status(*args, "web", status)
            assert after["status"] == {"replicas": 2, "selector": "app=web"} and after["metadata"]["generation"] == 1
            ignored = custom.replace_namespaced_custom_object(*args, "web", {**after, "status": {"replicas": 7}})
            assert ignored["status"]["replicas"] == 2  # the main resource does not write status

            scale = custom.get_namespaced_custom_object_scale(*args, "web")
            assert scale["spec"] == {"replicas": 2} and scale["status"] == {"replicas": 2, "selector": "app=web"}
            stale = {**scale, "spec": {"replicas": 6}}
            custom.replace_namespaced_custom_object_scale(*args, "web", stale)
            with pytest.raises(kubernetes.client.ApiException) as err:
                custom.replace_namespaced_custom_object_scale(*args, "web", stale)  # resourceVersion is old now
            assert err.value.status == 409 and json.loads(err.value.body)["reason"] == "Conflict"
            obj = custom.get_namespaced_custom_object(*args, "web")
            assert obj["spec"]["replicas"] == 6 and obj["metadata"]["generation"] == 2

            listed = custom.list_namespaced_custom_object(*args, field_selector="metadata.name=web")
            assert listed["kind"] == "RolloutList" and [i["metadata"]["name"] for i in listed["items"]] == ["web"]
            assert custom.list_namespaced_custom_object(*args, label_selector="app=none")["items"] == []

            # the other server, in the same process, knows nothing of this CRD
            assert other.store.catalogue.lookup(GROUP, VERSION, PLURAL) is None
            assert "the server doesn't have a resource type" in _fails(other.kubeconfig, "get", "rollouts")
        finally:
            api.close()


async def test_deleting_a_crd_deletes_its_objects_and_ends_their_watches():
    store = ObjectStore()
    store.create(CRDS, CRD)
    key = f"{PLURAL}.{GROUP}"
    store.create(key, ROLLOUT)
    watch = store.watch(key, None, None)
    assert (await watch.next_event(1))[0] == "ADDED"
    store.delete(CRDS, None, "rollouts.argoproj.io")
    etype, gone = await watch.next_event(1)
    assert (etype, gone["metadata"]["name"]) == ("DELETED", "web")
    with pytest.raises(StopAsyncIteration):
        await watch.next_event(1)
    assert store.catalogue.lookup(GROUP, VERSION, PLURAL) is None

    # without a status subresource, status is part of the object: written directly, counted in generation
    plain = json.loads(json.dumps(CRD))
    del plain["spec"]["versions"][0]["subresources"]
    store.create(CRDS, plain)
    obj = store.create(key, {**ROLLOUT, "status": {"replicas": 1}})
    assert obj["status"] == {"replicas": 1} and obj["metadata"]["generation"] == 1
    assert store.update(key, {**obj, "status": {"replicas": 2}})["metadata"]["generation"] == 2
    assert store.catalogue.lookup(GROUP, VERSION, PLURAL).subresources == {}


# ---------------------------------------------------------------------------------------------
# end to end: our controller scales the Rollout through /scale

STEP = 15.0
CONTAINERS = [{"name": "app", "image": "app:1", "resources": {"requests": {"cpu": "200m", "memory": "64Mi"}}}]
TARGET = 50  # averageUtilization
HPA = {
    "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
    "metadata": {"name": "web", "namespace": "default"},
    "spec": {"scaleTargetRef": {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Rollout", "name": "web"},
             "minReplicas": 1, "maxReplicas": 10,
             "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                 "type": "Utilization", "averageUtilization": TARGET}}}]},
}
CONFIG = ControllerConfig(cpu_initialization_period=120, initial_readiness_delay=10)


class Env(ControllerEnv):
    """The CRD test's cluster, with readers for the Rollout and the HPA."""

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.custom = kubernetes.client.CustomObjectsApi(self.api)

    async def sync(self, controller: HPAController):
        """One sync period; the outcome for the HPA ``default/web``."""
        (out,) = await self.step(controller)
        return out["default/web"]

    def rollout(self) -> dict:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURAL, "web")

    def hpa(self):
        return kubernetes.client.AutoscalingV2Api(self.api).read_namespaced_horizontal_pod_autoscaler("web", "default")


@asynccontextmanager
async def environment(tmp_path, pods: int, cores: float):
    """A Deployment of ``pods`` pods labelled app=web using ``cores`` in all, a Rollout ``web`` whose
    status reports those pods, and the HPA targeting the Rollout."""
    scenario = Scenario(name="crd-scale", nodes=[NodeSpec("worker-0", cpu="16", memory="64Gi", pods=110)],
                        workloads=[WorkloadSpec("web", containers=CONTAINERS, replicas=pods,
                                                load=Constant(cores=cores))],
                        hpas=[json.loads(json.dumps(HPA))], timing=PodTiming(startup=1, readiness=2))
    async with scraped_cluster(scenario, tmp_path / "cluster") as (cluster, store, collector):
        env = Env(cluster, store, collector, CONFIG, STEP)
        try:
            kubernetes.client.ApiextensionsV1Api(env.api).create_custom_resource_definition(CRD)
            ro = env.custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURAL,
                                                            {**ROLLOUT, "spec": {**ROLLOUT["spec"], "replicas": pods}})
            env.custom.replace_namespaced_custom_object_status(
                GROUP, VERSION, "default", PLURAL, "web", {**ro, "status": {"replicas": pods, "selector": "app=web"}})
            yield env
        finally:
            await env.close()


async def test_controller_scales_a_custom_resource_through_scale(tmp_path):
    pods = 2
    utilization = 2 * TARGET  # each pod uses twice what the target asks for
    want = -(-pods * utilization // TARGET)  # upstream: ceil(ratio * ready pods) = 4, within +100%/+4 pods
    async with environment(tmp_path, pods, cores=pods * 0.2 * utilization / 100) as env:
        dry = await env.controller("dry-run")
        before = env.rollout()
        for _ in range(2):
            o = await env.sync(dry)
            assert (o.current, o.desired) == (pods, want)  # it would scale ...
        after = env.rollout()  # ... but a dry run writes nothing
        assert after["spec"]["replicas"] == pods
        assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
        await dry.close()
        env.controllers.remove(dry)

        active = await env.controller("active")
        o = await env.sync(active)
        assert (o.current, o.desired) == (pods, want) and env.rollout()["spec"]["replicas"] == want
        conditions = {c.type: (c.status, c.reason) for c in env.hpa().status.conditions}
        assert conditions["AbleToScale"] == ("True", "SucceededRescale")  # the rescale went through /scale
        assert conditions["ScalingActive"] == ("True", "ValidMetricFound")
        for _ in range(2):  # the pods did not change: the recommendation holds
            o = await env.sync(active)
            assert (o.current, o.desired) == (want, want) and env.rollout()["spec"]["replicas"] == want
        ro = env.rollout()
        assert ro["metadata"]["generation"] == 2 and ro["status"] == {"replicas": pods, "selector": "app=web"}
        status = env.hpa().status
        assert (status.current_replicas, status.desired_replicas) == (want, want)
        row = kubectl(env.cluster.kubeconfig, "get", "hpa", "web").splitlines()[1].split()
        assert row[:2] == ["web", "Rollout/web"] and f"{utilization}%/{TARGET}%" in " ".join(row)
