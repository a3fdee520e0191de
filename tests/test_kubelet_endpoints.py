"""Emulated kubelets: /metrics/resource and /stats/summary payloads, authn/authz, faults.

One emulated cluster (ManualClock) per module; requests use a real aiohttp client over TLS that
verifies the kubelet serving certificate against the cluster CA, with the metrics-server
ServiceAccount token the cluster writes.
"""

from __future__ import annotations

import asyncio
import ssl

import aiohttp
import orjson
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from sim_fixtures import emulated_cluster

from autoscaler.k8s.timefmt import parse_time

CUSTOM_PATH = "/metrics/resource/v1alpha1"
SCENARIO = {
    "name": "kubelet-test",
    "timing": {"startupDelay": "1s", "readinessDelay": "2s", "terminationDelay": "1s"},
    "kubelet": {"housekeepingInterval": "10s"},
    "nodes": [
        {"name": "worker-1", "cpu": "8", "memory": "32Gi", "annotations": {"metrics.k8s.io/resource-metrics-path": CUSTOM_PATH}},
    ],
    "workloads": [
        {"name": "web", "replicas": 2, "containers": [
            {"name": "app", "image": "nginx:1.27", "requests": {"cpu": "400m", "memory": "64Mi"},
             "limits": {"cpu": "2", "memory": "512Mi"}},
            {"name": "proxy", "image": "envoyproxy/envoy:v1.31", "requests": {"cpu": "100m"}}],
         "load": {"kind": "constant", "cores": 1, "startupCores": 0.1, "memory": {"base": "100Mi", "perCore": "200Mi"}}},
    ],
    "authorization": {"rules": [
        {"user": "system:serviceaccount:kube-system:no-access", "resource": "nodes", "effect": "deny"},
        {"user": "system:serviceaccount:kube-system:metrics-only", "resource": "nodes", "subresource": "stats",
         "effect": "deny"},
    ]},
}
FAMILIES = [
    "container_cpu_usage_seconds_total", "container_memory_working_set_bytes", "container_start_time_seconds",
    "node_cpu_usage_seconds_total", "node_memory_working_set_bytes", "pod_cpu_usage_seconds_total",
    "pod_memory_working_set_bytes", "resource_scrape_error",
]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    with emulated_cluster(tmp_path_factory.mktemp("kubelet"), SCENARIO) as h:
        h.advance(0.5)
        h.advance(20)  # pods ready (≈3 s) well before the latest stats housekeeping
        c = h.cluster
        tokens = {}
        for sa in ("no-access", "metrics-only"):
            obj = h.call(lambda sa=sa: c.store.create("serviceaccounts", {
                "metadata": {"name": sa, "namespace": "kube-system"}}))
            tokens[sa] = c.apiserver.issuer.issue("kube-system", sa, uid=obj["metadata"]["uid"])
        tokens["metrics-server"] = yaml.safe_load(h.metrics_kubeconfig.read_text())["users"][0]["user"]["token"]
        yield h, tokens


def _ctx(h, cert: str | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=h.cluster.pki.ca.cert_pem.decode())
    if cert:
        ctx.load_cert_chain(h.cluster.pki.path(f"{cert}.crt"), h.cluster.pki.path(f"{cert}.key"))
    return ctx


def fetch(h, path: str, token: str | None = None, *, cert: str | None = None, node: str = "worker-1"):
    port = h.cluster.kubelet(node).port

    async def go():
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=_ctx(h, cert))) as s, \
                s.get(f"https://127.0.0.1:{port}{path}", headers=headers) as r:
            return r.status, r.headers.get("Content-Type", ""), await r.read()

    return asyncio.run(go())


def pods(h) -> dict[str, dict]:
    items = h.call(lambda: h.cluster.store.list("pods", "default")[0])
    return {p["metadata"]["name"]: p for p in items}


def test_resource_metrics_match_the_kubelet_format(env):
    h, tokens = env
    status, ctype, body = fetch(h, "/metrics/resource", tokens["metrics-server"])
    assert status == 200
    assert ctype == "text/plain; version=0.0.4; charset=utf-8"
    text = body.decode()
    types = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
    assert types == FAMILIES  # alphabetical, as the kubelet's registry gathers them
    assert "# HELP node_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the node in core-seconds" in text
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    names = set(pods(h))
    cpu = fams["container_cpu_usage_seconds"].samples  # the parser drops a counter's _total suffix
    assert {(s.labels["pod"], s.labels["container"]) for s in cpu} == {(p, c) for p in names for c in ("app", "proxy")}
    for s in cpu:
        assert set(s.labels) == {"container", "namespace", "pod"}
        assert s.labels["namespace"] == "default"
        assert s.value > 0
        assert s.timestamp is not None and float(s.timestamp) * 1000 == int(float(s.timestamp) * 1000 + 0.5)
    starts = fams["container_start_time_seconds"].samples
    assert all(s.timestamp is None for s in starts)
    pod_objs = pods(h)
    for s in starts:
        started = pod_objs[s.labels["pod"]]["status"]["containerStatuses"][0]["state"]["running"]["startedAt"]
        assert s.value == pytest.approx(parse_time(started), abs=1)
    mem = {(s.labels["pod"], s.labels["container"]): s.value for s in fams["container_memory_working_set_bytes"].samples}
    for (_, container), v in mem.items():
        # app: 100Mi base × 0.8 of the pod plus 200Mi per core of 0.4 cores; proxy gets 0.2 of the base
        assert v == {"app": (80 + 80) * 2**20, "proxy": (20 + 20) * 2**20}[container]
    node_cpu = fams["node_cpu_usage_seconds"].samples[0]
    assert node_cpu.labels == {} and node_cpu.value > sum(s.value for s in cpu)
    assert fams["resource_scrape_error"].samples[0].value == 0


def test_cpu_counters_advance_with_the_load_model(env):
    h, tokens = env

    def scrape():
        text = fetch(h, "/metrics/resource", tokens["metrics-server"])[2].decode()
        out = {}
        for f in text_string_to_metric_families(text):
            for s in f.samples:
                if s.name == "container_cpu_usage_seconds_total":
                    out[(s.labels["pod"], s.labels["container"])] = (s.value, float(s.timestamp))
        return out

    first = scrape()
    h.advance(30)
    second = scrape()
    for key, (v1, t1) in first.items():
        v2, t2 = second[key]
        assert t2 - t1 == pytest.approx(30, abs=0.01)  # housekeeping every 10 s, same phase
        # 1 core over 2 ready pods, split 4:1 between app and proxy by CPU request
        want = {"app": 0.4, "proxy": 0.1}[key[1]] * (t2 - t1)
        assert v2 - v1 == pytest.approx(want, rel=1e-6)


def test_set_load_changes_demand_at_run_time(env):
    from sim.loadmodel import Constant

    h, tokens = env
    h.set_load("default", "web", Constant(cores=3.0))
    h.advance(20)
    body = fetch(h, "/stats/summary?only_cpu_and_memory=true", tokens["metrics-server"])[2]
    doc = orjson.loads(body)
    rates = sorted(c["cpu"]["usageNanoCores"] for p in doc["pods"] for c in p["containers"])
    # 3 cores over 2 pods: app 1.2 cores, proxy 0.3 cores
    assert rates == [300_000_000, 300_000_000, 1_200_000_000, 1_200_000_000]
    h.set_load("default", "web", Constant(cores=1.0))


def test_summary_has_the_stats_v1alpha1_shape(env):
    h, tokens = env
    status, ctype, body = fetch(h, "/stats/summary", tokens["metrics-server"])
    assert status == 200 and ctype.startswith("application/json")
    doc = orjson.loads(body)
    node = doc["node"]
    assert node["nodeName"] == "worker-1"
    assert {"startTime", "cpu", "memory", "network", "fs", "runtime", "rlimit", "systemContainers"} <= set(node)
    assert {"time", "usageNanoCores", "usageCoreNanoSeconds"} == set(node["cpu"])
    assert {"time", "availableBytes", "usageBytes", "workingSetBytes", "rssBytes", "pageFaults",
            "majorPageFaults"} == set(node["memory"])
    assert node["cpu"]["time"].endswith("Z") and len(node["cpu"]["time"]) == 20
    objs = pods(h)
    assert {p["podRef"]["name"] for p in doc["pods"]} == set(objs)
    for p in doc["pods"]:
        assert p["podRef"]["uid"] == objs[p["podRef"]["name"]]["metadata"]["uid"]
        assert [c["name"] for c in p["containers"]] == ["app", "proxy"]
        assert {"network", "volume", "ephemeral-storage", "process_stats"} <= set(p)
        for c in p["containers"]:
            assert {"name", "startTime", "cpu", "memory", "rootfs", "logs"} <= set(c)
            assert isinstance(c["cpu"]["usageCoreNanoSeconds"], int)
        app = p["containers"][0]
        assert app["memory"]["availableBytes"] == 512 * 2**20 - app["memory"]["workingSetBytes"]
    lean = orjson.loads(fetch(h, "/stats/summary?only_cpu_and_memory=true", tokens["metrics-server"])[2])
    assert "network" not in lean["node"] and "fs" not in lean["node"]
    for p in lean["pods"]:
        assert set(p) == {"podRef", "startTime", "containers", "cpu", "memory"}
        assert all(set(c) == {"name", "startTime", "cpu", "memory"} for c in p["containers"])


def test_authentication_and_authorization_like_the_kubelet(env):
    h, tokens = env
    status, ctype, body = fetch(h, "/metrics/resource")
    assert (status, body) == (401, b"Unauthorized") and ctype.startswith("text/plain")
    assert fetch(h, "/metrics/resource", "not-a-token")[0] == 401
    status, _, body = fetch(h, "/metrics/resource", tokens["no-access"])
    assert status == 403
    assert body.decode() == ("Forbidden (user=system:serviceaccount:kube-system:no-access, verb=get, "
                             "resource=nodes, subresource=metrics)")
    # the SubjectAccessReview names the subresource: metrics allowed, stats denied
    assert fetch(h, "/metrics/resource", tokens["metrics-only"])[0] == 200
    status, _, body = fetch(h, "/stats/summary", tokens["metrics-only"])
    assert status == 403 and body.decode().endswith("subresource=stats)")
    # client certificates from the cluster CA are accepted too
    assert fetch(h, "/metrics/resource", cert="admin")[0] == 200


def test_metrics_served_on_the_node_annotation_path(env):
    h, tokens = env
    node = h.call(lambda: h.cluster.store.get("nodes", None, "worker-1"))
    assert node["metadata"]["annotations"]["metrics.k8s.io/resource-metrics-path"] == CUSTOM_PATH
    status, _, body = fetch(h, CUSTOM_PATH, tokens["metrics-server"])
    assert status == 200 and b"container_cpu_usage_seconds_total{" in body
    assert fetch(h, "/metrics/nope", tokens["metrics-server"])[0] == 404


def test_fault_injection(env):
    h, tokens = env
    kubelet = h.cluster.kubelet("worker-1")
    token = tokens["metrics-server"]
    port = kubelet.port
    try:
        kubelet.fault = "http500"
        assert fetch(h, "/metrics/resource", token)[0] == 500
        kubelet.fault = "garbage"
        status, _, body = fetch(h, "/metrics/resource", token)
        assert status == 200
        with pytest.raises(ValueError):
            list(text_string_to_metric_families(body.decode(errors="replace")))
        kubelet.fault = "truncated"
        with pytest.raises(aiohttp.ClientPayloadError):
            fetch(h, "/metrics/resource", token)
        kubelet.fault = "stopped"
        with pytest.raises(aiohttp.ClientConnectorError) as exc:
            fetch(h, "/metrics/resource", token)
        assert not isinstance(exc.value, aiohttp.ClientConnectorCertificateError)
        kubelet.fault = "wrong_ca"
        assert kubelet.port == port
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            fetch(h, "/metrics/resource", token)
    finally:
        kubelet.fault = None
    assert kubelet.port == port
    assert fetch(h, "/metrics/resource", token)[0] == 200


def test_container_restart_resets_the_counter_and_start_time(env):
    h, tokens = env
    name = sorted(pods(h))[0]

    def series(metric: str) -> tuple[float, float | None]:
        text = fetch(h, "/metrics/resource", tokens["metrics-server"])[2].decode()
        for f in text_string_to_metric_families(text):
            for s in f.samples:
                if s.name == metric and s.labels["pod"] == name and s.labels["container"] == "app":
                    return s.value, None if s.timestamp is None else float(s.timestamp)
        raise AssertionError(f"{metric} of {name}/app missing")

    before_cpu, _ = series("container_cpu_usage_seconds_total")
    before_start, _ = series("container_start_time_seconds")
    assert before_cpu > 1
    h.call(lambda: h.cluster.restart_container("default", name, "app", reason="OOMKilled", exit_code=137))
    h.advance(20)
    start, _ = series("container_start_time_seconds")
    cpu, ts = series("container_cpu_usage_seconds_total")
    assert start > before_start
    # the counter restarted from 0 with the container: at most 0.4 cores (its share) since the new start
    assert 0 < cpu <= 0.4 * (ts - start) + 1e-6
    status = pods(h)[name]["status"]
    app = next(c for c in status["containerStatuses"] if c["name"] == "app")
    assert app["restartCount"] == 1
    assert app["lastState"]["terminated"]["reason"] == "OOMKilled"
    assert app["lastState"]["terminated"]["exitCode"] == 137
    assert app["ready"] is True  # ready again after the readiness delay


def test_cadvisor_metrics_carry_the_same_counters_with_cadvisors_labels(env):
    """/metrics/cadvisor (what Prometheus scrapes) holds the /metrics/resource counters and working
    sets at the same timestamps, plus each pod's cgroup (container="") and sandbox (container="POD")."""
    h, tokens = env
    status, ctype, body = fetch(h, "/metrics/cadvisor", tokens["metrics-server"])
    assert status == 200 and ctype == "text/plain; version=0.0.4; charset=utf-8"
    resource = fetch(h, "/metrics/resource", tokens["metrics-server"])[2].decode()
    want = {}
    for f in text_string_to_metric_families(resource):
        for s in f.samples:
            if s.name in ("container_cpu_usage_seconds_total", "container_memory_working_set_bytes"):
                want[(s.name, s.labels["pod"], s.labels["container"])] = (s.value, s.timestamp)
    got: dict[tuple[str, str, str], tuple[float, object]] = {}
    for f in text_string_to_metric_families(body.decode()):
        for s in f.samples:
            assert set(s.labels) == {"container", "cpu", "id", "image", "name", "namespace", "pod"}
            assert s.labels["cpu"] == "total" and s.labels["id"].startswith("/kubepods/")
            got[(s.name, s.labels["pod"], s.labels["container"])] = (s.value, s.timestamp)
    assert {k: v for k, v in got.items() if k[2] not in ("", "POD")} == want
    for pod in pods(h):
        cpu = "container_cpu_usage_seconds_total"
        assert got[(cpu, pod, "")][0] == pytest.approx(got[(cpu, pod, "app")][0] + got[(cpu, pod, "proxy")][0])
        assert got[(cpu, pod, "POD")][0] == 0


def test_kube_state_metrics_equivalent_names_owners_requests_and_readiness(env):
    from sim.ksm import render

    h, _ = env
    text = h.call(lambda: render(h.cluster.store)).decode()
    series = {}
    for f in text_string_to_metric_families(text):
        for s in f.samples:
            series.setdefault(s.name, []).append((s.labels, s.value))
    names = set(pods(h))
    owners = {lab["pod"]: (lab["owner_kind"], lab["owner_name"], lab["owner_is_controller"])
              for lab, _ in series["kube_pod_owner"] if lab["namespace"] == "default"}
    assert set(owners) == names
    (rs,) = {o[1] for o in owners.values()}
    assert all(o == ("ReplicaSet", rs, "true") for o in owners.values())
    assert ({"namespace": "default", "replicaset": rs, "owner_kind": "Deployment", "owner_name": "web",
             "owner_is_controller": "true"}, 1.0) in series["kube_replicaset_owner"]
    req = {(lab["pod"], lab["container"], lab["resource"], lab["unit"]): v
           for lab, v in series["kube_pod_container_resource_requests"]}
    for pod in names:
        assert req[(pod, "app", "cpu", "core")] == pytest.approx(0.4)
        assert req[(pod, "app", "memory", "byte")] == 64 * 2**20
        assert req[(pod, "proxy", "cpu", "core")] == pytest.approx(0.1)
    ready = {(lab["pod"], lab["condition"]): v for lab, v in series["kube_pod_status_ready"]}
    assert all(ready[(p, "true")] == 1 and ready[(p, "false")] == 0 for p in names)
    assert ({"namespace": "default", "deployment": "web"}, 2.0) in series["kube_deployment_spec_replicas"]
