"""metrics.k8s.io/v1 beside v1beta1, swap usage, and field selectors on the metrics API.

Kubernetes 1.37 made metrics.k8s.io/v1 GA (KEP-5207; k8s.io/metrics install.go prefers v1 over
v1beta1) and kubectl 1.37 uses v1 when discovery lists it; metrics-server v0.8.0 serves v1beta1
only. Our server answers both versions from the same data: objects differ only in ``apiVersion``.
Swap comes from the kubelet (``/stats/summary`` ``swap.swapUsageBytes``, ``/metrics/resource``
``container_swap_usage_bytes`` / ``node_swap_usage_bytes``) and is served under ``usage.swap``
(what kubectl's ``--show-swap`` reads); a kubelet that reports no swap gets no ``swap`` key.

The data here is what emulated kubelets report (both formats rendered from one snapshot), run
through the real decoders, the window store and the HTTPS server.
"""

from __future__ import annotations

import aiohttp
import numpy as np
import orjson
import pytest
from test_metrics_api_support import T0, proxy_headers, start_server

from autoscaler.api.objects import ObjectIndex
from autoscaler.api.render import TimeStrings, item_list, list_json, pod_item, pod_pieces
from autoscaler.api.resources import MetricsResources
from autoscaler.k8s.quantity import value
from autoscaler.k8s.timefmt import format_time
from autoscaler.scraper.decode_resource import decode_resource
from autoscaler.scraper.decode_summary import decode_summary
from autoscaler.storage.window import WindowStore
from sim.kubelet.payload import render_resource_metrics, render_summary
from sim.kubelet.stats import ContainerRow, NodeStats
from sim.loadmodel import Constant, MiB, WorkloadLoad

GROUP = "/apis/metrics.k8s.io"
VERSIONS = ("v1", "v1beta1")
ADMIN = proxy_headers("kubernetes-admin", ("system:masters", "system:authenticated"))
SWAP_PER_POD = 48 * MiB  # the web workload's swap; its app container gets 3/4, the sidecar 1/4


def kubelet(node: str, swap_capacity: float) -> NodeStats:
    """One node's stats: two web pods (app + sidecar, the load model's swap) and a system pod."""
    stats = NodeStats(node, T0 - 3600, swap_capacity=swap_capacity)
    web = WorkloadLoad("default", "web", Constant(cores=0.4, swap_bytes=SWAP_PER_POD), T0 - 600)
    web.ready_changed(T0 - 600, 2)
    for p in range(2):
        for c, frac in (("app", 0.75), ("sidecar", 0.25)):
            stats.add(ContainerRow("default", f"web-{node}-{p}", f"uid-{node}-{p}", c, T0 - 600, T0 - 600,
                                   workload=web, frac=frac, ready_since=T0 - 590), T0 - 600)
    stats.add(ContainerRow("kube-system", f"coredns-{node}", f"uid-dns-{node}", "coredns", T0 - 600, T0 - 600,
                           ready_since=T0 - 590), T0 - 600)
    return stats


def objects(nodes: list[str]) -> ObjectIndex:
    index = ObjectIndex()
    index.replace_nodes([{"metadata": {"name": n, "labels": {"kubernetes.io/hostname": n}}} for n in nodes])
    pods = []
    for n in nodes:
        pods += [{"metadata": {"namespace": "default", "name": f"web-{n}-{p}", "labels": {"app": "web"}},
                  "status": {"phase": "Running"}} for p in range(2)]
        pods.append({"metadata": {"namespace": "kube-system", "name": f"coredns-{n}", "labels": {"k8s-app": "dns"}},
                     "status": {"phase": "Running"}})
    index.replace_pods(pods)
    return index


def scraped(kubelets: dict[str, NodeStats], source: str) -> WindowStore:
    """A store after two scrapes of every kubelet through ``source`` (summary | resource)."""
    store = WindowStore(resolution=15.0, history=60.0)
    for t in (T0, T0 + 15):
        batches = []
        for name, stats in kubelets.items():
            snap = stats.snapshot(t)
            if source == "summary":
                batches.append(decode_summary(render_summary(snap, only_cpu_and_memory=True), name, t))
            else:
                batches.append(decode_resource(render_resource_metrics(snap), name, t))
        store.store_many(batches)
    return store


@pytest.fixture(scope="module")
def swap_kubelets() -> dict[str, NodeStats]:
    return {"swappy": kubelet("swappy", 4 * 2**30), "plain": kubelet("plain", 0.0)}


@pytest.fixture
async def api(tmp_path, swap_kubelets):
    store = scraped(swap_kubelets, "summary")
    srv = await start_server(tmp_path, store, objects(list(swap_kubelets)), clock=lambda: T0 + 16)
    ctx = srv.client_ssl(srv.trust.proxy_cert(), "proxy")
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as session:

        async def get(path: str, accept: str = "application/json", headers: list[tuple[str, str]] | None = None):
            async with session.get(srv.url + path, headers=[*ADMIN, ("Accept", accept), *(headers or [])]) as r:
                body = await r.read()
                return r.status, r.headers, orjson.loads(body) if body else None

        yield get
    await srv.server.stop()


# -- both versions, same objects --------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/nodes", "/nodes/swappy", "/pods", "/namespaces/default/pods",
                                  "/namespaces/default/pods/web-swappy-0", "/pods?labelSelector=app%3Dweb"])
async def test_v1_and_v1beta1_serve_the_same_objects(api, path):
    code1, h1, v1 = await api(f"{GROUP}/v1{path}")
    code2, h2, v1beta1 = await api(f"{GROUP}/v1beta1{path}")
    assert code1 == code2 == 200 and h1["Content-Type"] == h2["Content-Type"] == "application/json"
    assert v1["apiVersion"] == "metrics.k8s.io/v1" and v1beta1["apiVersion"] == "metrics.k8s.io/v1beta1"
    assert {**v1, "apiVersion": ""} == {**v1beta1, "apiVersion": ""}
    if "items" in v1:
        assert v1["items"], path


async def test_discovery_lists_v1_first_and_preferred(api):
    _, _, groups = await api("/apis")
    (group,) = groups["groups"]
    gvs = [{"groupVersion": f"metrics.k8s.io/{v}", "version": v} for v in VERSIONS]
    assert group == {"name": "metrics.k8s.io", "versions": gvs, "preferredVersion": gvs[0]}
    _, _, doc = await api(GROUP)
    assert doc == {"kind": "APIGroup", "apiVersion": "v1", **group}
    lists = {}
    for v in VERSIONS:
        code, _, lists[v] = await api(f"{GROUP}/{v}")
        assert code == 200 and lists[v]["groupVersion"] == f"metrics.k8s.io/{v}"
    assert [(r["name"], r["kind"], r["namespaced"], r["verbs"]) for r in lists["v1"]["resources"]] == [
        ("nodes", "NodeMetrics", False, ["get", "list"]), ("pods", "PodMetrics", True, ["get", "list"])]
    assert lists["v1"]["resources"] == lists["v1beta1"]["resources"]
    # aggregated discovery (what kube-aggregator asks for first): both versions, v1 first
    code, headers, agg = await api("/apis", "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList")
    assert code == 200 and headers["Content-Type"].endswith("as=APIGroupDiscoveryList")
    versions = agg["items"][0]["versions"]
    assert [v["version"] for v in versions] == list(VERSIONS)
    assert versions[0]["resources"] == versions[1]["resources"]
    assert {v["freshness"] for v in versions} == {"Current"}


async def test_openapi_describes_both_versions(api):
    _, _, v2 = await api("/openapi/v2")
    for v in VERSIONS:
        for kind in ("NodeMetrics", "NodeMetricsList", "PodMetrics", "PodMetricsList", "ContainerMetrics"):
            assert f"io.k8s.metrics.pkg.apis.metrics.{v}.{kind}" in v2["definitions"]
        get = v2["paths"][f"{GROUP}/{v}/namespaces/{{namespace}}/pods/{{name}}"]["get"]
        assert get["x-kubernetes-group-version-kind"] == {"group": "metrics.k8s.io", "version": v, "kind": "PodMetrics"}
        assert get["responses"]["200"]["schema"]["$ref"] == f"#/definitions/io.k8s.metrics.pkg.apis.metrics.{v}.PodMetrics"
    assert v2["paths"][f"{GROUP}/v1/pods"]["get"]["operationId"] == "listMetricsV1PodMetricsForAllNamespaces"
    assert v2["paths"][f"{GROUP}/v1/nodes"]["get"]["tags"] == ["metricsV1"]
    _, _, index = await api("/openapi/v3")
    assert sorted(index["paths"]) == ["apis/metrics.k8s.io/v1", "apis/metrics.k8s.io/v1beta1"]
    for v in VERSIONS:
        url = index["paths"][f"apis/metrics.k8s.io/{v}"]["serverRelativeURL"]
        assert url.startswith(f"/openapi/v3/apis/metrics.k8s.io/{v}?hash=")
        code, headers, doc = await api(url)
        assert code == 200
        schemas = doc["components"]["schemas"]
        assert f"io.k8s.metrics.pkg.apis.metrics.{v}.NodeMetrics" in schemas
        assert not any(k.startswith("io.k8s.metrics") and f".{v}." not in k for k in schemas)
        assert all(p.startswith(f"{GROUP}/{v}/") for p in doc["paths"])
        code, _, _ = await api(url, headers=[("If-None-Match", headers["ETag"])])
        assert code == 304
    assert (await api("/openapi/v3/apis/metrics.k8s.io/v2"))[0] == 404


# -- tables and errors ------------------------------------------------------------------------------

TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"


@pytest.mark.parametrize("version", VERSIONS)
async def test_tables_show_swap_columns_and_carry_the_versions_objects(api, version):
    code, _, table = await api(f"{GROUP}/{version}/nodes?includeObject=Object", TABLE)
    assert code == 200 and table["kind"] == "Table"
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "cpu", "memory", "Window"]  # 'plain' first
    rows = {r["cells"][0]: r for r in table["rows"]}
    assert set(rows) == {"plain", "swappy"}
    assert rows["swappy"]["object"]["apiVersion"] == f"metrics.k8s.io/{version}"
    assert rows["swappy"]["object"]["usage"]["swap"] == "96Mi"
    _, _, table = await api(f"{GROUP}/{version}/nodes/swappy", TABLE)
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "cpu", "memory", "swap", "Window"]
    assert table["rows"][0]["cells"][3] == "96Mi"
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    _, _, table = await api(f"{GROUP}/{version}/namespaces/default/pods/web-swappy-1", TABLE)
    assert table["rows"][0]["cells"][3] == "48Mi"  # the pod's swap: the sum of its containers'


@pytest.mark.parametrize("version", VERSIONS)
async def test_errors_are_the_same_status_in_both_versions(api, version):
    code, _, st = await api(f"{GROUP}/{version}/nodes/nope")
    assert (code, st["kind"], st["reason"], st["message"]) == (404, "Status", "NotFound", 'node "nope" not found')
    code, _, st = await api(f"{GROUP}/{version}/namespaces/default/pods/nope")
    assert (code, st["message"]) == (404, 'pods "nope" not found')
    code, _, st = await api(f"{GROUP}/{version}/pods?watch=true")
    assert (code, st["reason"]) == (405, "MethodNotAllowed")
    code, _, st = await api(f"{GROUP}/{version}/deployments")
    assert (code, st["message"]) == (404, "the server could not find the requested resource")
    code, _, st = await api(f"{GROUP}/{version}/nodes", "application/vnd.kubernetes.protobuf")
    assert (code, st["reason"]) == (406, "NotAcceptable")
    assert (await api(f"{GROUP}/v2/nodes"))[0] == 404


# -- field selectors --------------------------------------------------------------------------------

def _names(doc: dict) -> list[str]:
    return [f'{i["metadata"].get("namespace", "")}/{i["metadata"]["name"]}' for i in doc["items"]]


@pytest.mark.parametrize("version", VERSIONS)
async def test_field_selectors_on_name_and_namespace(api, version):
    pods = f"{GROUP}/{version}/pods"
    assert _names((await api(f"{pods}?fieldSelector=metadata.name%3Dweb-plain-1"))[2]) == ["default/web-plain-1"]
    assert _names((await api(f"{pods}?fieldSelector=metadata.name%3D%3Dweb-plain-1"))[2]) == ["default/web-plain-1"]
    assert _names((await api(f"{pods}?fieldSelector=metadata.namespace%3Dkube-system"))[2]) == [
        "kube-system/coredns-plain", "kube-system/coredns-swappy"]
    rest = _names((await api(f"{pods}?fieldSelector=metadata.namespace!%3Dkube-system,metadata.name!%3Dweb-plain-0"))[2])
    assert rest == ["default/web-plain-1", "default/web-swappy-0", "default/web-swappy-1"]
    # with a label selector and inside a namespace
    doc = (await api(f"{GROUP}/{version}/namespaces/default/pods?labelSelector=app%3Dweb"
                     "&fieldSelector=metadata.name%3Dweb-swappy-0"))[2]
    assert _names(doc) == ["default/web-swappy-0"]
    assert _names((await api(f"{GROUP}/{version}/nodes?fieldSelector=metadata.name!%3Dplain"))[2]) == ["/swappy"]
    # any other field: 400, worded as kube-apiserver's default field label conversion words it
    code, _, st = await api(f"{pods}?fieldSelector=spec.nodeName%3Dswappy")
    assert (code, st["kind"], st["reason"]) == (400, "Status", "BadRequest")
    assert st["message"] == '"spec.nodeName" is not a known field selector: only "metadata.name", "metadata.namespace"'
    code, _, st = await api(f"{pods}?fieldSelector=metadata.name")
    assert (code, st["reason"]) == (400, "BadRequest")


# -- swap -------------------------------------------------------------------------------------------

def _pod_swap(doc: dict) -> dict[str, dict[str, str | None]]:
    return {i["metadata"]["name"]: {c["name"]: c["usage"].get("swap") for c in i["containers"]} for i in doc["items"]}


async def test_swap_is_served_where_the_kubelet_reports_it_and_omitted_elsewhere(api):
    _, _, nodes = await api(f"{GROUP}/v1/nodes")
    usage = {i["metadata"]["name"]: i["usage"] for i in nodes["items"]}
    assert usage["swappy"]["swap"] == "96Mi" and sorted(usage["swappy"]) == ["cpu", "memory", "swap"]
    assert sorted(usage["plain"]) == ["cpu", "memory"]  # no swap reported: no key, not a zero
    _, _, pods = await api(f"{GROUP}/v1/pods")
    swap = _pod_swap(pods)
    assert swap["web-swappy-0"] == {"app": "36Mi", "sidecar": "12Mi"}
    assert swap["coredns-swappy"] == {"coredns": "0"}  # reported as zero by the kubelet: served as zero
    assert swap["web-plain-0"] == {"app": None, "sidecar": None}
    assert swap["coredns-plain"] == {"coredns": None}
    # JSON key order as Go writes a ResourceList: cpu, memory, swap
    item = next(i for i in pods["items"] if i["metadata"]["name"] == "web-swappy-0")
    assert list(item["containers"][0]["usage"]) == ["cpu", "memory", "swap"]


def test_both_kubelet_formats_give_the_same_swap(swap_kubelets):
    snap = swap_kubelets["swappy"].snapshot(T0 + 30)
    summary = decode_summary(render_summary(snap, only_cpu_and_memory=True), "swappy", T0 + 30)
    resource = decode_resource(render_resource_metrics(snap), "swappy", T0 + 30)
    key = list(zip(summary.namespaces, summary.pods, summary.containers, strict=True))
    by = dict(zip(zip(resource.namespaces, resource.pods, resource.containers, strict=True), resource.swap, strict=True))
    assert np.array_equal(summary.swap, [by[k] for k in key])
    assert sorted(set(summary.swap.tolist())) == [0.0, 12 * MiB, 36 * MiB]
    assert summary.node_swap == resource.node_swap == 2 * SWAP_PER_POD
    plain = swap_kubelets["plain"].snapshot(T0 + 30)
    for batch in (decode_summary(render_summary(plain, only_cpu_and_memory=True), "plain", T0 + 30),
                  decode_resource(render_resource_metrics(plain), "plain", T0 + 30)):
        assert batch.swap is None and batch.node_swap != batch.node_swap  # NaN: not reported
    a = scraped(swap_kubelets, "summary")
    b = scraped(swap_kubelets, "resource")
    keys = a.all_pod_keys()
    assert [[c.swap_bytes for c in u.containers] for u in a.pod_metrics(keys)] == \
        [[c.swap_bytes for c in u.containers] for u in b.pod_metrics(keys)]
    assert [n.swap_bytes for n in a.node_metrics(["swappy", "plain"])] == [2 * SWAP_PER_POD, None]


def test_kubelet_swap_payloads_are_shaped_like_a_137_kubelet(swap_kubelets):
    snap = swap_kubelets["swappy"].snapshot(T0 + 30)
    doc = orjson.loads(render_summary(snap, only_cpu_and_memory=True))
    assert doc["node"]["swap"] == {"time": format_time(T0 + 30), "swapAvailableBytes": 4 * 2**30 - 2 * SWAP_PER_POD,
                                   "swapUsageBytes": 2 * SWAP_PER_POD}
    web = next(p for p in doc["pods"] if p["podRef"]["name"] == "web-swappy-0")
    assert [c["swap"] for c in web["containers"]] == [{"time": format_time(T0 + 30), "swapUsageBytes": 36 * MiB},
                                                      {"time": format_time(T0 + 30), "swapUsageBytes": 12 * MiB}]
    assert web["swap"]["swapUsageBytes"] == SWAP_PER_POD
    text = render_resource_metrics(snap).decode()
    ms = int((T0 + 30) * 1000)
    assert "# HELP node_swap_usage_bytes [ALPHA] Current swap usage of the node in bytes." in text
    assert f"\nnode_swap_usage_bytes 1.00663296e+08 {ms}\n" in text
    assert f'\ncontainer_swap_usage_bytes{{container="app",namespace="default",pod="web-swappy-0"}} 3.7748736e+07 {ms}\n' in text
    assert f'\npod_swap_usage_bytes{{namespace="default",pod="web-swappy-0"}} 5.0331648e+07 {ms}\n' in text
    names = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
    assert names == sorted(names)  # families in the kubelet's alphabetical order
    plain = swap_kubelets["plain"].snapshot(T0 + 30)
    assert "swap" not in render_resource_metrics(plain).decode()
    assert b"swap" not in render_summary(plain)


def test_every_rendering_path_agrees_with_swap(swap_kubelets):
    """The pod list is rendered three ways (objects, per-object text, columns from the store);
    with swap on some containers and not others they must give the same bytes."""
    store = scraped(swap_kubelets, "resource")
    index = objects(list(swap_kubelets))
    listing = index.list_pods()
    usages = store.pod_metrics([(ns, n) for ns, n, _ in listing])
    ts, created = TimeStrings(), format_time(T0 + 16)
    slow = orjson.dumps(item_list("PodMetricsList", [pod_item(u, e.labels, created, ts)
                                                     for (_, _, e), u in zip(listing, usages, strict=True) if u]))
    fast = list_json("PodMetricsList", pod_pieces([e for _, _, e in listing], usages, created, ts))
    cached = MetricsResources(index, store, clock=lambda: T0 + 16).list_pods().json()
    assert slow == fast == cached
    assert b'"swap":"36Mi"' in cached and cached.count(b'"swap"') == 5  # swappy's 5 containers


def test_scenario_swap_options_reach_the_node_and_the_kubelet():
    from sim.nodes import node_object
    from sim.scenario import ScenarioError, parse_scenario

    sc = parse_scenario({"nodes": [{"name": "s", "swap": "4Gi"}, {"name": "n"}],
                         "workloads": [{"name": "w", "load": {"kind": "constant", "cores": 1, "swap": "64Mi"}}]})
    assert [n.swap for n in sc.nodes] == ["4Gi", ""]
    assert sc.workloads[0].load.swap_bytes == 64 * MiB
    assert node_object(sc.nodes[0], 0, 10250, T0)["status"]["nodeInfo"]["swap"] == {"capacity": value("4Gi")}
    assert "swap" not in node_object(sc.nodes[1], 1, 10250, T0)["status"]["nodeInfo"]
    for bad, field in (({"nodes": [{"name": "s", "swap": "-1Gi"}]}, "nodes[0].swap"),
                       ({"workloads": [{"name": "w", "load": {"swap": "lots"}}]}, "workloads[0].load.swap")):
        with pytest.raises(ScenarioError, match=field.replace("[", r"\[").replace("]", r"\]")):
            parse_scenario(bad)


KUBELET_137_RESOURCE = """\
# HELP container_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the container in core-seconds
# TYPE container_cpu_usage_seconds_total counter
container_cpu_usage_seconds_total{container="app",namespace="default",pod="web-0"} 12.5 1784540100000
container_cpu_usage_seconds_total{container="log",namespace="default",pod="web-0"} 1.25 1784540100000
# HELP container_memory_working_set_bytes [STABLE] Current working set of the container in bytes
# TYPE container_memory_working_set_bytes gauge
container_memory_working_set_bytes{container="app",namespace="default",pod="web-0"} 5.2527104e+07 1784540100000
container_memory_working_set_bytes{container="log",namespace="default",pod="web-0"} 8.388608e+06 1784540100000
# HELP container_start_time_seconds [STABLE] Start time of the container since unix epoch in seconds
# TYPE container_start_time_seconds gauge
container_start_time_seconds{container="app",namespace="default",pod="web-0"} 1.7845e+09
container_start_time_seconds{container="log",namespace="default",pod="web-0"} 1.7845e+09
# HELP container_swap_limit_bytes [ALPHA] Current amount of the container swap limit in bytes. Reported only on non-windows systems
# TYPE container_swap_limit_bytes gauge
container_swap_limit_bytes{container="app",namespace="default",pod="web-0"} 2.68435456e+08 1784540100000
container_swap_limit_bytes{container="log",namespace="default",pod="web-0"} 0 1784540100000
# HELP container_swap_usage_bytes [ALPHA] Current amount of the container swap usage in bytes. Reported only on non-windows systems
# TYPE container_swap_usage_bytes gauge
container_swap_usage_bytes{container="app",namespace="default",pod="web-0"} 3.3554432e+07 1784540100000
# HELP node_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the node in core-seconds
# TYPE node_cpu_usage_seconds_total counter
node_cpu_usage_seconds_total 3000.5 1784540100000
# HELP node_memory_working_set_bytes [STABLE] Current working set of the node in bytes
# TYPE node_memory_working_set_bytes gauge
node_memory_working_set_bytes 1.616273408e+09 1784540100000
# HELP node_swap_usage_bytes [ALPHA] Current swap usage of the node in bytes. Reported only on non-windows systems
# TYPE node_swap_usage_bytes gauge
node_swap_usage_bytes 1.34217728e+08 1784540100000
# HELP pod_swap_usage_bytes [ALPHA] Current amount of the pod swap usage in bytes. Reported only on non-windows systems
# TYPE pod_swap_usage_bytes gauge
pod_swap_usage_bytes{namespace="default",pod="web-0"} 3.3554432e+07 1784540100000
# HELP scrape_error [ALPHA] 1 if there was an error while getting container metrics, 0 otherwise
# TYPE scrape_error gauge
scrape_error 0
"""


def test_a_137_kubelets_resource_body_with_swap_limits_and_a_container_without_swap():
    """The limit family sits between start time and usage and is not usage; a container with no
    usage series (here ``log``) has no swap, which the store keeps as "not reported"."""
    batch = decode_resource(KUBELET_137_RESOURCE, "n1", T0)
    assert batch.containers == ["app", "log"]
    assert batch.swap[0] == 32 * MiB and np.isnan(batch.swap[1])
    assert batch.node_swap == 128 * MiB and batch.memory.tolist() == [52527104.0, 8388608.0]
    # the careful parser (an escaped label value forces it) agrees
    slow = decode_resource(KUBELET_137_RESOURCE.replace('pod="web-0"}', 'pod="web-0",x="\\\\"}'), "n1", T0)
    assert slow.swap[0] == 32 * MiB and np.isnan(slow.swap[1]) and slow.node_swap == 128 * MiB
    store = WindowStore(resolution=15.0, history=60.0)
    store.store(decode_resource(KUBELET_137_RESOURCE, "n1", T0))
    store.store(decode_resource(KUBELET_137_RESOURCE.replace("12.5 ", "14 ").replace("1784540100000", "1784540115000")
                                .replace("3000.5 ", "3010 "), "n1", T0 + 15))
    (pod,) = store.pod_metrics([("default", "web-0")])
    assert [(c.name, c.swap_bytes) for c in pod.containers] == [("app", 32 * MiB), ("log", None)]
    assert store.node_metrics(["n1"])[0].swap_bytes == 128 * MiB
