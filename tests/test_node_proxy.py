"""The node proxy subresource (``/api/v1/nodes/{name}/proxy/...``) of the emulated kube-apiserver,
through the real kubectl and the real ``kubernetes`` client, against a whole emulated cluster.

The kubelet sees the API server's own client certificate (``kube-apiserver-kubelet-client``), never
the caller's credentials; the caller needs ``nodes/proxy`` at the API server.
"""

from __future__ import annotations

import asyncio
import json
import ssl

import aiohttp
import kubernetes
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sim_fixtures import emulated_cluster, kubectl

from sim.apiserver.testing import ServerThread

SCENARIO = {
    "name": "node-proxy",
    "timing": {"startupDelay": "1s", "readinessDelay": "2s", "terminationDelay": "1s"},
    "nodes": [{"name": "worker-1", "cpu": "8", "memory": "32Gi"}, {"name": "worker-2", "cpu": "8", "memory": "32Gi"}],
    "workloads": [{"name": "web", "replicas": 4, "containers": [
        {"name": "app", "image": "nginx:1.27", "requests": {"cpu": "200m", "memory": "64Mi"}}],
        "load": {"kind": "constant", "cores": 0.8}}],
    "authorization": {"rules": [
        {"user": "alice", "resource": "nodes/proxy", "effect": "deny"},
        {"user": "bob", "resource": "nodes", "subresource": "stats", "effect": "deny"},
        {"user": "carol", "resource": "nodes/proxy", "verb": "create", "effect": "deny"},
    ]},
}
PROXY = "/api/v1/nodes/{}/proxy"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    state = tmp_path_factory.mktemp("node-proxy")
    with emulated_cluster(state, SCENARIO) as h:
        h.advance(30)  # pods scheduled, started, ready and measured
        users = {name: h.cluster.apiserver.write_kubeconfig(state / f"{name}.kubeconfig", user=name, groups=())
                 for name in ("alice", "bob", "carol")}
        yield h, users


def pods_on(h, node: str) -> set[str]:
    out = kubectl(h.kubeconfig, "get", "pods", "-A", "--field-selector", f"spec.nodeName={node}", "-o", "name")
    return {line.removeprefix("pod/") for line in out.split()}


def raw(kubeconfig, path: str, *, check: bool = True) -> str:
    return kubectl(kubeconfig, "get", "--raw", path, check=check)


def test_summary_through_the_proxy_names_the_nodes_pods(env):
    h, _ = env
    for node in ("worker-1", "worker-2"):
        summary = json.loads(raw(h.kubeconfig, PROXY.format(node) + "/stats/summary"))
        assert summary["node"]["nodeName"] == node
        assert {p["podRef"]["name"] for p in summary["pods"]} == pods_on(h, node)
        assert all(p["cpu"]["usageNanoCores"] > 0 for p in summary["pods"])


def test_resource_metrics_through_the_proxy(env):
    h, _ = env
    text = raw(h.kubeconfig, PROXY.format("worker-1") + "/metrics/resource")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    pods = {s.labels["pod"] for s in families["pod_cpu_usage_seconds"].samples}
    assert pods == pods_on(h, "worker-1")
    assert "node_cpu_usage_seconds" in families


def test_query_string_is_forwarded(env):
    h, _ = env
    base = PROXY.format("worker-1") + "/stats/summary"
    full = json.loads(raw(h.kubeconfig, base))
    slim = json.loads(raw(h.kubeconfig, base + "?only_cpu_and_memory=true"))
    assert any("network" in p for p in full["pods"])
    assert not any("network" in p for p in slim["pods"])
    assert {p["podRef"]["name"] for p in slim["pods"]} == {p["podRef"]["name"] for p in full["pods"]}


def test_python_client_connect_get_node_proxy(env):
    h, _ = env
    with kubernetes.config.new_client_from_config(str(h.kubeconfig)) as api_client:
        api = kubernetes.client.CoreV1Api(api_client)
        resp = api.connect_get_node_proxy_with_path("worker-2", "stats/summary", _preload_content=False)
        assert resp.status == 200 and resp.headers["Content-Type"] == "application/json"
        assert json.loads(resp.data)["node"]["nodeName"] == "worker-2"
        assert api.connect_get_node_proxy_with_path("worker-2", "healthz") == "ok"
        # the bare .../proxy is redirected to .../proxy/, which is the kubelet's "/" (a 404 there)
        with pytest.raises(kubernetes.client.ApiException) as exc:
            api.connect_get_node_proxy("worker-2")
        assert exc.value.status == 404 and "404 page not found" in exc.value.body
        with pytest.raises(kubernetes.client.ApiException) as exc:
            api.connect_get_node_proxy_with_path("nope", "healthz")
        status = json.loads(exc.value.body)
        assert (status["code"], status["reason"], status["message"]) == (404, "NotFound", 'nodes "nope" not found')


def test_explicit_kubelet_port_and_scheme(env):
    h, _ = env
    port = h.cluster.kubelet("worker-1").port
    for node_id in (f"worker-1:{port}", f"https:worker-1:{port}"):
        assert raw(h.kubeconfig, PROXY.format(node_id) + "/healthz") == "ok"
    out = raw(h.kubeconfig, PROXY.format("a:worker-1:1") + "/healthz", check=False)
    assert 'Error from server (BadRequest): invalid node request "a:worker-1:1"' in out


def test_unknown_node_is_not_found(env):
    h, _ = env
    out = raw(h.kubeconfig, PROXY.format("nope") + "/stats/summary", check=False)
    assert 'Error from server (NotFound): nodes "nope" not found' in out


def test_denied_user_is_forbidden(env):
    _, users = env
    out = raw(users["alice"], PROXY.format("worker-1") + "/stats/summary", check=False)
    assert ('Error from server (Forbidden): nodes "worker-1" is forbidden: User "alice" cannot get resource '
            '"nodes/proxy" in API group "" at the cluster scope') in out
    assert kubectl(users["alice"], "get", "node", "worker-1", "-o", "name").strip() == "node/worker-1"
    assert kubectl(users["alice"], "auth", "can-i", "get", "nodes", "--subresource=proxy",
                   check=False).startswith("no")


def test_verb_follows_the_method(env):
    _, users = env
    with kubernetes.config.new_client_from_config(str(users["carol"])) as api_client:
        api = kubernetes.client.CoreV1Api(api_client)
        assert api.connect_get_node_proxy_with_path("worker-1", "healthz") == "ok"
        with pytest.raises(kubernetes.client.ApiException) as exc:
            api.connect_post_node_proxy_with_path("worker-1", "healthz")
        assert exc.value.status == 403
        assert 'User "carol" cannot create resource "nodes/proxy"' in json.loads(exc.value.body)["message"]


def test_kubelet_sees_the_apiserver_not_the_caller(env):
    """bob may not read kubelet stats himself, but nodes/proxy lets him through the API server."""
    h, users = env
    pki = h.cluster.pki
    pair = pki.issue_client("bob")
    crt, key = pki.path("bob.crt"), pki.path("bob.key")
    pair.write(crt, key)
    ctx = ssl.create_default_context(cadata=pki.ca.cert_pem.decode())
    ctx.load_cert_chain(crt, key)
    port = h.cluster.kubelet("worker-1").port

    async def direct() -> tuple[int, str]:
        async with aiohttp.ClientSession() as s, s.get(f"https://127.0.0.1:{port}/stats/summary", ssl=ctx) as r:
            return r.status, await r.text()

    assert asyncio.run(direct()) == (403, "Forbidden (user=bob, verb=get, resource=nodes, subresource=stats)")
    summary = json.loads(raw(users["bob"], PROXY.format("worker-1") + "/stats/summary"))
    assert summary["node"]["nodeName"] == "worker-1"


def test_bare_proxy_path_redirects_with_the_query(env):
    h, _ = env
    pki = h.cluster.pki
    ctx = ssl.create_default_context(cadata=pki.ca.cert_pem.decode())
    ctx.load_cert_chain(pki.path("admin.crt"), pki.path("admin.key"))
    url = h.cluster.apiserver.url + PROXY.format("worker-1")

    async def go() -> tuple[tuple[int, str | None], tuple[int, str]]:
        async with aiohttp.ClientSession() as s:
            async with s.get(url + "?a=1", ssl=ctx, allow_redirects=False) as r:
                first = (r.status, r.headers.get("Location"))
            async with s.get(url + "/", ssl=ctx) as r:
                second = (r.status, await r.text())
        return first, second

    first, second = asyncio.run(go())
    assert first == (301, PROXY.format("worker-1") + "/?a=1")
    assert second == (404, "404 page not found\n")


def test_stopped_kubelet_answers_service_unavailable(env):
    h, _ = env
    kubelet = h.cluster.kubelet("worker-2")
    path = PROXY.format("worker-2") + "/stats/summary"
    assert json.loads(raw(h.kubeconfig, path))["node"]["nodeName"] == "worker-2"  # a pooled connection exists
    h.run(kubelet.set_fault("stopped"))
    try:
        out = raw(h.kubeconfig, path, check=False)
        assert ("Error from server (ServiceUnavailable): error trying to reach service: "
                f"dial tcp 127.0.0.1:{kubelet.port}: connect: connection refused") in out
    finally:
        h.run(kubelet.set_fault("none"))
    assert json.loads(raw(h.kubeconfig, path))["node"]["nodeName"] == "worker-2"


def test_node_pointing_at_a_closed_port(env):
    h, _ = env
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "ghost"},
            "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                       "daemonEndpoints": {"kubeletEndpoint": {"Port": 1}}}}
    h.call(lambda: h.cluster.store.create("nodes", node))
    try:
        out = raw(h.kubeconfig, PROXY.format("ghost") + "/healthz", check=False)
        assert ("Error from server (ServiceUnavailable): error trying to reach service: "
                "dial tcp 127.0.0.1:1: connect: connection refused") in out
    finally:
        h.call(lambda: h.cluster.store.delete("nodes", None, "ghost"))


def test_kubelet_with_an_unknown_ca_is_refused(env):
    h, _ = env
    kubelet = h.cluster.kubelet("worker-2")
    h.run(kubelet.set_fault("wrong_ca"))
    try:
        out = raw(h.kubeconfig, PROXY.format("worker-2") + "/healthz", check=False)
        assert ("error trying to reach service: tls: failed to verify certificate: x509: certificate signed by "
                "unknown authority") in out
    finally:
        h.run(kubelet.set_fault("none"))


def test_discovery_lists_nodes_proxy(env):
    h, _ = env
    core = json.loads(raw(h.kubeconfig, "/api/v1"))
    entry = next(r for r in core["resources"] if r["name"] == "nodes/proxy")
    assert entry == {"name": "nodes/proxy", "singularName": "node", "namespaced": False, "kind": "NodeProxyOptions",
                     "verbs": ["create", "delete", "get", "patch", "update"]}


def test_one_keep_alive_session_closed_with_the_server(env):
    h, _ = env
    proxy = h.cluster.apiserver.node_proxy
    session = proxy.session
    for _ in range(3):
        raw(h.kubeconfig, PROXY.format("worker-1") + "/healthz")
    assert proxy.session is session and not session.closed


def test_session_closes_with_the_server(tmp_path):
    srv = ServerThread(tmp_path).start()
    session = srv.server.node_proxy.session
    assert session is not None and not session.closed
    srv.stop()
    assert session.closed and srv.server.node_proxy.session is None
