"""The emulated API server through the official ``kubernetes`` Python client and raw aiohttp."""

from __future__ import annotations

import base64
import ssl
import threading

import aiohttp
import orjson
import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from sim.apiserver.testing import ServerThread


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    with ServerThread(tmp_path_factory.mktemp("apiserver-client"), bookmark_interval=0.3) as s:
        yield s


@pytest.fixture(scope="module")
def api(srv):
    return config.new_client_from_config(config_file=str(srv.kubeconfig))


def _deployment(name: str, replicas: int = 1) -> dict:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": labels},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}


def _cm(name: str, labels: dict | None = None) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels or {}},
            "data": {"k": "v"}}


def test_list_then_watch_resumes_from_resource_version(api):
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": "lw"}})
    core.create_namespaced_config_map("lw", _cm("a"))
    lst = core.list_namespaced_config_map("lw")
    assert [c.metadata.name for c in lst.items] == ["a"]
    rv = lst.metadata.resource_version
    core.create_namespaced_config_map("lw", _cm("b"))
    core.patch_namespaced_config_map("a", "lw", {"data": {"k": "changed"}})
    core.delete_namespaced_config_map("b", "lw")
    w = watch.Watch()
    events = []
    for ev in w.stream(core.list_namespaced_config_map, "lw", resource_version=rv, timeout_seconds=2):
        events.append((ev["type"], ev["object"].metadata.name))
        if len(events) == 3:
            w.stop()
    assert events == [("ADDED", "b"), ("MODIFIED", "a"), ("DELETED", "b")]
    # resuming from a later list's version replays nothing already seen
    last = core.list_namespaced_config_map("lw").metadata.resource_version
    got = list(watch.Watch().stream(core.list_namespaced_config_map, "lw", resource_version=last, timeout_seconds=1))
    assert got == [] and int(last) > int(rv)


def test_watch_from_compacted_version_is_410(api, srv):
    core = client.CoreV1Api(api)
    core.create_namespaced_config_map("default", _cm("old"))
    rv = core.list_namespaced_config_map("default").metadata.resource_version
    core.create_namespaced_config_map("default", _cm("newer"))
    srv.call(lambda: srv.store.compact("configmaps"))
    with pytest.raises(ApiException) as err:
        for _ in watch.Watch().stream(core.list_namespaced_config_map, "default", resource_version=str(int(rv) - 1),
                                      timeout_seconds=2):
            pass
    assert err.value.status == 410
    # a fresh list gives a version the watch accepts again
    rv2 = core.list_namespaced_config_map("default").metadata.resource_version
    core.create_namespaced_config_map("default", _cm("after"))
    names = [e["object"].metadata.name for e in
             watch.Watch().stream(core.list_namespaced_config_map, "default", resource_version=rv2, timeout_seconds=1)]
    assert names == ["after"]


def test_update_with_stale_resource_version_conflicts(api):
    core = client.CoreV1Api(api)
    cm = core.create_namespaced_config_map("default", _cm("cas"))
    cm.data = {"k": "first"}
    core.replace_namespaced_config_map("cas", "default", cm)  # cm still carries the old version
    cm.data = {"k": "second"}
    with pytest.raises(ApiException) as err:
        core.replace_namespaced_config_map("cas", "default", cm)
    assert err.value.status == 409
    body = orjson.loads(err.value.body)
    assert body["reason"] == "Conflict" and "the object has been modified" in body["message"]
    assert core.read_namespaced_config_map("cas", "default").data == {"k": "first"}


def test_create_conflicts_and_generate_name(api):
    core = client.CoreV1Api(api)
    core.create_namespaced_config_map("default", _cm("dup"))
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map("default", _cm("dup"))
    assert err.value.status == 409 and orjson.loads(err.value.body)["reason"] == "AlreadyExists"
    made = core.create_namespaced_config_map("default", {"metadata": {"generateName": "gen-"}, "data": {}})
    assert made.metadata.name.startswith("gen-") and len(made.metadata.name) == 9
    assert made.metadata.uid and made.metadata.creation_timestamp
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map("missing-ns", _cm("x"))
    assert err.value.status == 404
    assert orjson.loads(err.value.body)["message"] == 'namespaces "missing-ns" not found'


def test_scale_subresource_and_generation(api):
    apps = client.AppsV1Api(api)
    apps.create_namespaced_deployment("default", _deployment("sc", 2))
    scale = apps.read_namespaced_deployment_scale("sc", "default")
    assert scale.spec.replicas == 2 and scale.status.selector == "app=sc"
    apps.patch_namespaced_deployment_scale("sc", "default", {"spec": {"replicas": 5}})
    d = apps.read_namespaced_deployment("sc", "default")
    assert d.spec.replicas == 5 and d.metadata.generation == 2
    scale = apps.read_namespaced_deployment_scale("sc", "default")
    scale.spec.replicas = 3
    apps.replace_namespaced_deployment_scale("sc", "default", scale)
    assert apps.read_namespaced_deployment("sc", "default").spec.replicas == 3
    scale.spec.replicas = 9  # stale resourceVersion
    with pytest.raises(ApiException) as err:
        apps.replace_namespaced_deployment_scale("sc", "default", scale)
    assert err.value.status == 409
    with pytest.raises(ApiException) as err:
        apps.patch_namespaced_deployment_scale("sc", "default", {"spec": {"replicas": -1}})
    assert err.value.status == 422


def test_status_subresource_is_separate_from_spec(api):
    apps = client.AppsV1Api(api)
    apps.create_namespaced_deployment("default", _deployment("st"))
    apps.patch_namespaced_deployment_status("st", "default", {"status": {"replicas": 1, "readyReplicas": 1},
                                                              "spec": {"replicas": 7}})
    d = apps.read_namespaced_deployment("st", "default")
    assert d.status.ready_replicas == 1 and d.spec.replicas == 1 and d.metadata.generation == 1
    apps.patch_namespaced_deployment("st", "default", {"status": {"readyReplicas": 0}, "spec": {"replicas": 2}})
    d = apps.read_namespaced_deployment("st", "default")
    assert d.status.ready_replicas == 1 and d.spec.replicas == 2


def test_hpa_defaults_visible_in_v1_and_v2(api):
    v2 = client.AutoscalingV2Api(api)
    v1 = client.AutoscalingV1Api(api)
    v2.create_namespaced_horizontal_pod_autoscaler("default", {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "h2"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                 "maxReplicas": 4, "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}}})
    got = v2.read_namespaced_horizontal_pod_autoscaler("h2", "default")
    assert got.spec.min_replicas == 1
    assert got.spec.metrics[0].resource.name == "cpu"
    assert got.spec.metrics[0].resource.target.average_utilization == 80
    assert got.spec.behavior.scale_up.stabilization_window_seconds == 0
    assert [p.type for p in got.spec.behavior.scale_up.policies] == ["Pods", "Percent"]
    assert got.spec.behavior.scale_down.stabilization_window_seconds == 60
    old = v1.read_namespaced_horizontal_pod_autoscaler("h2", "default")
    assert old.spec.min_replicas == 1 and old.spec.target_cpu_utilization_percentage == 80
    # created through v1, read through v2
    v1.create_namespaced_horizontal_pod_autoscaler("default", {
        "apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "h1"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                 "maxReplicas": 3, "targetCPUUtilizationPercentage": 55}})
    h1 = v2.read_namespaced_horizontal_pod_autoscaler("h1", "default")
    assert h1.spec.metrics[0].resource.target.average_utilization == 55 and h1.spec.min_replicas == 1
    with pytest.raises(ApiException) as err:
        v2.create_namespaced_horizontal_pod_autoscaler("default", {
            "metadata": {"name": "bad"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                     "minReplicas": 0, "maxReplicas": 2}})
    # 1.37 (HPAScaleToZero on) allows minReplicas 0 only with an Object or External metric
    assert err.value.status == 422 and "spec.metrics" in err.value.body
    assert "must specify at least one Object or External metric" in err.value.body


def test_pagination_with_limit_and_continue(api):
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": "pages"}})
    for i in range(7):
        core.create_namespaced_config_map("pages", _cm(f"cm-{i}"))
    names, token, pages = [], None, 0
    while True:
        page = core.list_namespaced_config_map("pages", limit=3, _continue=token)
        names += [c.metadata.name for c in page.items]
        pages += 1
        token = page.metadata._continue
        if not token:
            break
        assert page.metadata.remaining_item_count == 7 - len(names)
    assert pages == 3 and names == [f"cm-{i}" for i in range(7)]


def test_watch_selector_moves_are_added_and_deleted(api):
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": "sel"}})
    core.create_namespaced_config_map("sel", _cm("m", {"tier": "a"}))
    rv = core.list_namespaced_config_map("sel").metadata.resource_version
    core.patch_namespaced_config_map("m", "sel", {"metadata": {"labels": {"tier": "b"}}})
    core.patch_namespaced_config_map("m", "sel", {"metadata": {"labels": {"tier": "a"}}})
    seen = [e["type"] for e in watch.Watch().stream(core.list_namespaced_config_map, "sel", label_selector="tier=a",
                                                    resource_version=rv, timeout_seconds=1)]
    assert seen == ["DELETED", "ADDED"]


# -----------------------------------------------------------------------------------------------
# raw HTTP: representations, bookmarks, authentication


def _ssl(srv, with_cert: bool = True) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(srv.directory / "pki" / "ca.crt"))
    if with_cert:
        ctx.load_cert_chain(srv.directory / "pki" / "admin.crt", srv.directory / "pki" / "admin.key")
    return ctx


async def _get(srv, path: str, accept: str = "application/json", with_cert: bool = True):
    async with aiohttp.ClientSession() as s, s.get(srv.server.url + path, headers={"Accept": accept},
                                                    ssl=_ssl(srv, with_cert)) as r:
        return r.status, r.headers.get("Content-Type", ""), await r.read()


async def test_table_and_partial_metadata(srv):
    status, ct, body = await _get(srv, "/api/v1/namespaces", "application/json;as=Table;v=v1;g=meta.k8s.io")
    table = orjson.loads(body)
    assert status == 200 and "as=Table" in ct and table["kind"] == "Table"
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Status", "Age"]
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    status, ct, body = await _get(srv, "/api/v1/namespaces/default/pods",
                                  "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json")
    doc = orjson.loads(body)
    assert doc["kind"] == "PartialObjectMetadataList" and doc["apiVersion"] == "meta.k8s.io/v1"
    # built-in kinds are answered in protobuf to clients that ask for it (kube-controller-manager,
    # kube-scheduler, kubectl's typed clients); custom resources have no protobuf form
    status, ct, body = await _get(srv, "/api/v1/namespaces", "application/vnd.kubernetes.protobuf")
    assert status == 200 and ct == "application/vnd.kubernetes.protobuf"
    from sim.apiserver import protobuf

    unknown = protobuf.decode_message(protobuf.UNKNOWN, body[len(protobuf.MAGIC):])
    assert (unknown["apiVersion"], unknown["kind"]) == ("v1", "NamespaceList")
    listed = protobuf.decode_message("k8s.io.api.core.v1.NamespaceList", base64.b64decode(unknown["raw"]))
    assert "default" in {ns["metadata"]["name"] for ns in listed["items"]}


async def test_aggregated_discovery(srv):
    accept = ("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
              "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json")
    status, ct, body = await _get(srv, "/apis", accept)
    doc = orjson.loads(body)
    assert status == 200 and ct == "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    groups = {i["metadata"]["name"]: i for i in doc["items"]}
    auto = groups["autoscaling"]["versions"]
    assert [v["version"] for v in auto] == ["v2", "v1"]
    hpa = next(r for r in auto[0]["resources"] if r["resource"] == "horizontalpodautoscalers")
    assert hpa["scope"] == "Namespaced" and hpa["shortNames"] == ["hpa"]
    _, ct, body = await _get(srv, "/apis", "application/json")
    assert orjson.loads(body)["kind"] == "APIGroupList"


async def test_unauthenticated_requests(srv):
    status, _, body = await _get(srv, "/api/v1/pods", with_cert=False)
    assert status == 401 and orjson.loads(body)["message"] == "Unauthorized"
    status, _, body = await _get(srv, "/version", with_cert=False)
    assert status == 200 and orjson.loads(body)["major"] == "1"


async def test_watch_bookmarks_and_table_watch(srv):
    ctx = _ssl(srv)
    srv.call(lambda: srv.store.create("configmaps", _cm("bm")))
    url = srv.server.url + "/api/v1/namespaces/default/configmaps?watch=1&allowWatchBookmarks=true&timeoutSeconds=2"
    async with aiohttp.ClientSession() as s, s.get(url, ssl=ctx) as r:
        events = [orjson.loads(line) async for line in r.content if line.strip()]
    types = [e["type"] for e in events]
    assert "BOOKMARK" in types and types[0] == "ADDED"
    bm = next(e for e in events if e["type"] == "BOOKMARK")
    assert int(bm["object"]["metadata"]["resourceVersion"]) >= int(events[0]["object"]["metadata"]["resourceVersion"])
    url = srv.server.url + "/api/v1/namespaces?watch=1&timeoutSeconds=1"
    async with aiohttp.ClientSession() as s, s.get(url, ssl=ctx, headers={
            "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}) as r:
        events = [orjson.loads(line) async for line in r.content if line.strip()]
    assert events[0]["object"]["kind"] == "Table" and events[0]["object"]["columnDefinitions"]
    assert events[1]["object"]["columnDefinitions"] == [] and len(events[1]["object"]["rows"]) == 1


def test_store_subscribers_and_thread_safety_of_harness(srv):
    seen: list[tuple[str, str]] = []
    done = threading.Event()

    def cb(etype, obj, old):
        seen.append((etype, obj["metadata"]["name"]))
        done.set()
    unsub = srv.call(lambda: srv.store.subscribe("secrets", cb))
    srv.call(lambda: srv.store.create("secrets", {"metadata": {"name": "s", "namespace": "default"}}))
    assert done.wait(5) and seen[-1] == ("ADDED", "s")
    srv.call(unsub)
