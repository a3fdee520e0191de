"""metrics.k8s.io/v1beta1 as clients see it: JSON shapes, errors, selectors, sorting, negotiation.

Served over HTTPS by the real server stack; requests come from aiohttp clients presenting a
front-proxy certificate with X-Remote-* headers (as kube-apiserver's aggregator does) and from
the official kubernetes Python client with a user certificate.
"""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import kubernetes
import orjson
import pytest
from test_metrics_api_support import proxy_headers, start_server, synthetic_store

from autoscaler.api.objects import ObjectIndex
from autoscaler.api.render import (
    TimeStrings,
    cpu_string,
    item_list,
    list_json,
    memory_string,
    node_item,
    node_pieces,
    pod_item,
    pod_pieces,
)
from autoscaler.k8s.quantity import format_cpu_nanocores, format_memory_bytes
from autoscaler.k8s.timefmt import parse_time
from autoscaler.storage.types import ContainerUsage, NodeUsage, PodUsage

REF = json.loads((Path(__file__).parent / "data" / "metrics_api" / "reference.json").read_text())
NOW = parse_time("2026-07-20T10:15:21Z")
API = "/apis/metrics.k8s.io/v1beta1"
ADMIN = proxy_headers("kubernetes-admin", ("system:masters", "system:authenticated"))


class StaticStorage:
    """A metrics store holding fixed usage (the reference examples' exact values)."""

    def __init__(self, nodes: list[NodeUsage], pods: list[PodUsage]):
        self.nodes = {n.name: n for n in nodes}
        self.pods = {(p.namespace, p.name): p for p in pods}

    def store(self, batch):  # pragma: no cover - not used
        raise NotImplementedError

    def node_metrics(self, names):
        return [self.nodes.get(n) for n in names]

    def pod_metrics(self, keys):
        return [self.pods.get(tuple(k)) for k in keys]

    def ready(self):
        return True


def reference_cluster() -> tuple[StaticStorage, ObjectIndex]:
    node, pod = REF["node"], REF["pod"]
    storage = StaticStorage(
        [NodeUsage("worker-1", parse_time(node["timestamp"]), 15.003, 183201458, 1616273408),
         NodeUsage("worker-2", parse_time(node["timestamp"]), 15.0, 250_000_000, 2 * 2**30)],
        [PodUsage("kube-system", "coredns-558bd4d5db-4dpjz", parse_time(pod["timestamp"]), 15.012,
                  (ContainerUsage("coredns", 3142466, 12533760),)),
         PodUsage("default", "web-1", NOW - 20, 15.0, (ContainerUsage("app", 100_000_000, 2**20),
                                                       ContainerUsage("sidecar", 5_000_000, 2**21))),
         PodUsage("default", "web-0", NOW - 20, 15.0, (ContainerUsage("app", 200_000_000, 2**20),)),
         PodUsage("batch", "job-x", NOW - 20, 15.0, (ContainerUsage("main", 1_500_000_000, 3 * 2**20),))],
    )
    index = ObjectIndex()
    index.replace_nodes([
        {"metadata": {"name": "worker-1", "labels": node["metadata"]["labels"]}},
        {"metadata": {"name": "worker-2", "labels": {"kubernetes.io/hostname": "worker-2", "role": "gpu"}}},
        {"metadata": {"name": "worker-3"}},  # known node, no metrics yet
    ])
    index.replace_pods([
        {"metadata": {"namespace": "kube-system", "name": "coredns-558bd4d5db-4dpjz", "labels": pod["metadata"]["labels"]}},
        {"metadata": {"namespace": "default", "name": "web-1", "labels": {"app": "web", "tier": "front"}}},
        {"metadata": {"namespace": "default", "name": "web-0", "labels": {"app": "web"}}},
        {"metadata": {"namespace": "batch", "name": "job-x", "labels": {"app": "job"}}},
        {"metadata": {"namespace": "default", "name": "busy", "labels": {"app": "busy"}}},  # Running, no metrics
    ])
    return storage, index


@pytest.fixture
async def api(tmp_path):
    storage, index = reference_cluster()
    srv = await start_server(tmp_path, storage, index, clock=lambda: NOW)
    ctx = srv.client_ssl(srv.trust.proxy_cert(), "proxy")
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as session:

        async def get(path: str, headers: list[tuple[str, str]] | None = None, method: str = "GET"):
            async with session.request(method, srv.url + path, headers=(headers or []) + ADMIN) as r:
                return r.status, r.headers.get("Content-Type", ""), await r.read()

        get.srv = srv  # type: ignore[attr-defined]
        yield get
    await srv.server.stop()


async def test_single_node_and_pod_match_metrics_server_json_exactly(api):
    code, ctype, body = await api(f"{API}/nodes/worker-1")
    assert (code, ctype) == (200, "application/json")
    assert body == orjson.dumps(REF["node"])  # same keys, same order, same strings
    code, _, body = await api(f"{API}/namespaces/kube-system/pods/coredns-558bd4d5db-4dpjz")
    assert code == 200
    assert body == orjson.dumps(REF["pod"])


async def test_lists_are_sorted_complete_and_omit_objects_without_metrics(api):
    code, _, body = await api(f"{API}/nodes")
    doc = orjson.loads(body)
    assert code == 200
    assert (doc["kind"], doc["apiVersion"], doc["metadata"]) == ("NodeMetricsList", "metrics.k8s.io/v1beta1", {})
    assert [i["metadata"]["name"] for i in doc["items"]] == ["worker-1", "worker-2"]  # worker-3 has no data
    expected = dict(REF["node"])
    del expected["kind"], expected["apiVersion"]
    assert doc["items"][0] == expected
    assert doc["items"][1]["usage"] == {"cpu": "250m", "memory": "2Gi"}

    doc = orjson.loads((await api(f"{API}/pods"))[2])
    assert doc["kind"] == "PodMetricsList"
    assert [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in doc["items"]] == [
        ("batch", "job-x"), ("default", "web-0"), ("default", "web-1"), ("kube-system", "coredns-558bd4d5db-4dpjz")]
    web1 = doc["items"][2]
    assert [c["name"] for c in web1["containers"]] == ["app", "sidecar"]
    assert web1["containers"][1]["usage"] == {"cpu": "5m", "memory": "2Mi"}

    doc = orjson.loads((await api(f"{API}/namespaces/default/pods"))[2])
    assert [i["metadata"]["name"] for i in doc["items"]] == ["web-0", "web-1"]


async def test_label_selectors_full_syntax_and_field_selectors(api):
    async def names(q: str) -> list[str]:
        code, _, body = await api(f"{API}/pods?{q}")
        assert code == 200, body
        return [i["metadata"]["name"] for i in orjson.loads(body)["items"]]

    assert await names("labelSelector=app%3Dweb") == ["web-0", "web-1"]
    assert await names("labelSelector=app%20in%20(web,job)") == ["job-x", "web-0", "web-1"]
    assert await names("labelSelector=app%20notin%20(web)") == ["job-x", "coredns-558bd4d5db-4dpjz"]
    assert await names("labelSelector=tier") == ["web-1"]
    assert await names("labelSelector=!tier,app%3Dweb") == ["web-0"]
    assert await names("labelSelector=app!%3Dweb,k8s-app") == ["coredns-558bd4d5db-4dpjz"]
    assert await names("fieldSelector=metadata.name%3Dweb-1") == ["web-1"]
    assert await names("fieldSelector=metadata.namespace!%3Ddefault") == ["job-x", "coredns-558bd4d5db-4dpjz"]

    code, _, body = await api(f"{API}/nodes?labelSelector=role%3Dgpu")
    assert code == 200 and [i["metadata"]["name"] for i in orjson.loads(body)["items"]] == ["worker-2"]
    code, _, body = await api(f"{API}/nodes?fieldSelector=metadata.name%3Dworker-1")
    assert code == 200
    assert [i["metadata"]["name"] for i in orjson.loads(body)["items"]] == ["worker-1"]


async def test_errors_are_status_objects_with_kubernetes_wording(api):
    code, ctype, body = await api(f"{API}/namespaces/default/pods/busy")
    assert (code, ctype) == (404, "application/json")
    assert orjson.loads(body) == REF["pod_metrics_not_found"]

    code, _, body = await api(f"{API}/namespaces/default/pods/nope")
    assert (code, orjson.loads(body)["message"]) == (404, 'pods "nope" not found')
    code, _, body = await api(f"{API}/nodes/worker-3")
    st = orjson.loads(body)
    assert (code, st["reason"], st["message"]) == (404, "NotFound", 'nodemetrics.metrics.k8s.io "worker-3" not found')
    code, _, body = await api(f"{API}/nodes/ghost")
    assert (code, orjson.loads(body)["details"]) == (404, {"name": "ghost", "kind": "node"})

    code, _, body = await api(f"{API}/pods?fieldSelector=spec.nodeName%3Dworker-1")
    st = orjson.loads(body)
    assert (code, st["reason"], st["message"]) == (400, "BadRequest", REF["field_selector_error"])
    code, _, body = await api(f"{API}/pods?labelSelector=app%20in%20web")
    assert (code, orjson.loads(body)["reason"]) == (400, "BadRequest")

    code, _, body = await api(f"{API}/pods?watch=true")
    st = orjson.loads(body)
    assert (code, st["reason"]) == (405, "MethodNotAllowed")
    assert st["message"] == 'watch is not supported on resources of kind "pods.metrics.k8s.io"'
    code, _, body = await api(f"{API}/nodes", method="POST")
    assert (code, orjson.loads(body)["reason"]) == (405, "MethodNotAllowed")
    code, _, body = await api(f"{API}/namespaces/default/pods/web-0", method="DELETE")
    assert code == 405
    code, _, body = await api("/apis/metrics.k8s.io/v1beta1/deployments")
    assert (code, orjson.loads(body)["message"]) == (404, "the server could not find the requested resource")


async def test_discovery_documents(api):
    code, _, body = await api(API)
    assert (code, orjson.loads(body)) == (200, REF["api_resource_list"])
    # metrics-server's group lists v1beta1 only; we also serve v1 (GA in 1.37), preferred and first.
    v1 = {"groupVersion": "metrics.k8s.io/v1", "version": "v1"}
    assert orjson.loads((await api("/apis/metrics.k8s.io"))[2]) == {
        **REF["api_group"], "versions": [v1, *REF["api_group"]["versions"]], "preferredVersion": v1}
    groups = orjson.loads((await api("/apis"))[2])
    assert groups["kind"] == "APIGroupList" and [g["name"] for g in groups["groups"]] == ["metrics.k8s.io"]
    # The aggregator asks for aggregated discovery first.
    accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
    code, ctype, body = await api("/apis", [("Accept", accept)])
    doc = orjson.loads(body)
    assert ctype == "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    assert [v["version"] for v in doc["items"][0]["versions"]] == ["v1", "v1beta1"]
    res = doc["items"][0]["versions"][1]["resources"]
    assert [(r["resource"], r["scope"], r["responseKind"]["kind"]) for r in res] == [
        ("nodes", "Cluster", "NodeMetrics"), ("pods", "Namespaced", "PodMetrics")]


async def test_content_negotiation(api):
    # kubectl top / the HPA controller prefer protobuf and accept JSON through */*.
    code, ctype, _ = await api(f"{API}/nodes", [("Accept", "application/vnd.kubernetes.protobuf, */*")])
    assert (code, ctype) == (200, "application/json")
    code, _, body = await api(f"{API}/nodes", [("Accept", "application/vnd.kubernetes.protobuf")])
    assert (code, orjson.loads(body)["reason"]) == (406, "NotAcceptable")
    q = "application/vnd.kubernetes.protobuf;q=1,application/cbor;q=0.9,application/json;q=0.8"
    assert (await api(f"{API}/pods", [("Accept", q)]))[0] == 200


async def test_table_output_for_kubectl_get(api):
    accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
    code, _, body = await api(f"{API}/namespaces/default/pods", [("Accept", accept)])
    table = orjson.loads(body)
    assert (code, table["kind"], table["apiVersion"]) == (200, "Table", "meta.k8s.io/v1")
    assert [(c["name"], c["format"]) for c in table["columnDefinitions"]] == [
        ("Name", "name"), ("cpu", "quantity"), ("memory", "quantity"), ("Window", "duration")]
    assert table["columnDefinitions"][0]["description"] == "Name of the resource"
    # Pod cells are the sums over containers: 100m + 5m, 1Mi + 2Mi.
    assert [r["cells"] for r in table["rows"]] == [["web-0", "200m", "1Mi", "15s"], ["web-1", "105m", "3Mi", "15s"]]
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    assert table["rows"][0]["object"]["metadata"]["namespace"] == "default"

    code, _, body = await api(f"{API}/nodes/worker-1?includeObject=None", [("Accept", accept)])
    table = orjson.loads(body)
    assert table["rows"] == [{"cells": ["worker-1", "183201458n", "1578392Ki", "15.003s"]}]
    code, _, body = await api(f"{API}/namespaces/empty/pods", [("Accept", accept)])
    assert orjson.loads(body)["columnDefinitions"] == [] and orjson.loads(body)["rows"] == []

    accept = "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io"
    doc = orjson.loads((await api(f"{API}/nodes", [("Accept", accept)]))[2])
    assert doc["kind"] == "PartialObjectMetadataList"
    assert [i["metadata"]["name"] for i in doc["items"]] == ["worker-1", "worker-2"]


async def test_openapi_documents_with_etag(api):
    code, _ctype, body = await api("/openapi/v2")
    doc = orjson.loads(body)
    assert (code, doc["swagger"], doc["info"]["title"]) == (200, "2.0", "Kubernetes metrics-server")
    assert "io.k8s.metrics.pkg.apis.metrics.v1beta1.PodMetrics" in doc["definitions"]
    assert f"{API}/namespaces/{{namespace}}/pods" in doc["paths"]
    index = orjson.loads((await api("/openapi/v3"))[2])
    url = index["paths"]["apis/metrics.k8s.io/v1beta1"]["serverRelativeURL"]
    v3 = orjson.loads((await api(url))[2])
    assert v3["openapi"].startswith("3.") and "io.k8s.metrics.pkg.apis.metrics.v1beta1.NodeMetrics" in v3["components"]["schemas"]

    srv = api.srv
    ctx = srv.client_ssl(srv.trust.proxy_cert(), "proxy2")
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s:
        async with s.get(srv.url + "/openapi/v2", headers=ADMIN) as r:
            tag = r.headers["ETag"]
        async with s.get(srv.url + "/openapi/v2", headers=[*ADMIN, ("If-None-Match", tag)]) as r:
            assert r.status == 304


async def test_self_metrics_after_serving(api):
    await api(f"{API}/pods")
    code, ctype, body = await api("/metrics")
    text = body.decode()
    assert code == 200 and ctype.startswith("text/plain")
    assert "metrics_server_api_metric_freshness_seconds_bucket" in text
    assert 'apiserver_request_total{code="200",group="metrics.k8s.io",resource="pods",verb="LIST",version="v1beta1"}' in text
    await api("/apis/metrics.k8s.io/v1/pods")
    text = (await api("/metrics"))[2].decode()
    assert 'apiserver_request_total{code="200",group="metrics.k8s.io",resource="pods",verb="LIST",version="v1"}' in text


def _request_series(text: str) -> set[str]:
    return {line.rsplit(" ", 1)[0] for line in text.splitlines() if line.startswith("apiserver_request_total{")}


async def test_made_up_paths_and_verbs_add_no_request_series(api):
    """Anyone who reaches the port could otherwise grow /metrics without bound."""
    srv = api.srv  # type: ignore[attr-defined]
    await api(f"{API}/pods")
    before = _request_series((await api("/metrics"))[2].decode())
    anonymous = aiohttp.TCPConnector(ssl=srv.client_ssl())  # no front-proxy certificate: every request is a 401
    async with aiohttp.ClientSession(connector=anonymous) as s:
        for i in range(60):
            async with s.get(f"{srv.url}/apis/made.up.{i}/v{i}/things{i}") as r:
                assert r.status == 401
    for i in range(30):
        await api(f"/apis/metrics.k8s.io/v{i}alpha/nodes{i}")
        await api(f"/apis/metrics.k8s.io/v1beta1/nodes{i}")
        await api(f"{API}/pods", method=f"VERB{i}")
    after = _request_series((await api("/metrics"))[2].decode())
    added = after - before
    assert not any("made.up" in s or "nodes1" in s or "VERB" in s for s in after)
    assert all(('group="other"' in s and 'resource="other"' in s) or 'verb="other"' in s for s in added), added
    assert len(added) <= 4, added  # a few (verb, code) combinations with "other", not one per path


async def test_official_python_client_reads_node_and_pod_metrics(tmp_path):
    storage, index = reference_cluster()
    srv = await start_server(tmp_path, storage, index, clock=lambda: NOW)
    try:
        cert, key = srv.trust.cert_files(srv.trust.user_cert("alice", ("system:masters",)), "alice")
        ca = tmp_path / "serving-ca.crt"
        ca.write_bytes(srv.serving_ca_pem)
        cfg = kubernetes.client.Configuration()
        cfg.host, cfg.ssl_ca_cert, cfg.cert_file, cfg.key_file = srv.url, str(ca), cert, key
        import asyncio

        def call():
            with kubernetes.client.ApiClient(cfg) as c:
                api = kubernetes.client.CustomObjectsApi(c)
                node = api.get_cluster_custom_object("metrics.k8s.io", "v1beta1", "nodes", "worker-1")
                pods = api.list_namespaced_custom_object("metrics.k8s.io", "v1beta1", "default", "pods",
                                                         label_selector="app=web")
                return node, pods

        node, pods = await asyncio.to_thread(call)
        assert node == REF["node"]
        assert [p["metadata"]["name"] for p in pods["items"]] == ["web-0", "web-1"]
    finally:
        await srv.server.stop()


def test_quantity_time_and_window_strings_match_reference_vectors():
    for n, s in REF["cpu_vectors"]:
        assert cpu_string(n) == s == format_cpu_nanocores(n)
    for b, s in REF["memory_vectors"]:
        assert memory_string(b) == s == format_memory_bytes(b)
    ts = TimeStrings()
    for sec, s in REF["window_vectors"]:
        assert ts.duration(sec) == s
    for t, s in REF["time_vectors"]:
        assert ts.time(t) == s


def test_fast_list_encoding_is_identical_to_the_object_form():
    store, index = synthetic_store(7, 9)
    listing = index.list_pods()
    usages = store.pod_metrics([(ns, n) for ns, n, _ in listing])
    ts = TimeStrings()
    created = "2026-07-20T10:15:21Z"
    fast = pod_pieces([e for _, _, e in listing], usages, created, ts)
    slow = orjson.dumps(item_list("PodMetricsList", [pod_item(u, e.labels, created, ts)
                                                     for (_, _, e), u in zip(listing, usages, strict=True) if u]))
    assert len(fast) == 63
    assert list_json("PodMetricsList", fast) == slow

    storage, index = reference_cluster()  # multi-container pods and pods without data
    listing = index.list_pods()
    usages = storage.pod_metrics([(ns, n) for ns, n, _ in listing])
    fast = pod_pieces([e for _, _, e in listing], usages, created, ts)
    slow = orjson.dumps(item_list("PodMetricsList", [pod_item(u, e.labels, created, ts)
                                                     for (_, _, e), u in zip(listing, usages, strict=True) if u]))
    assert len(fast) == 4 and list_json("PodMetricsList", fast) == slow

    nodes = index.list_nodes()
    usages = storage.node_metrics([n for n, _ in nodes])
    fast = node_pieces([e for _, e in nodes], usages, created, ts)
    slow = orjson.dumps(item_list("NodeMetricsList", [node_item(u, e.labels, created, ts)
                                                      for (_, e), u in zip(nodes, usages, strict=True) if u]))
    assert len(fast) == 2 and list_json("NodeMetricsList", fast) == slow
