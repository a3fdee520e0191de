"""The emulated kube-apiserver's aggregation layer, driven with the real kubectl, the kubernetes
client and aiohttp against an aggregated HTTPS backend that records what it receives."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from kubernetes import client, config

from autoscaler.k8s.certs import generate_ca, self_signed_serving
from sim.apiserver.testing import ServerThread

GROUP, VERSION = "metrics.k8s.io", "v1beta1"
APISERVICE = f"{VERSION}.{GROUP}"
SERVICE_NAME = "metrics-server.kube-system.svc"
RESOURCE_LIST = {
    "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{GROUP}/{VERSION}",
    "resources": [
        {"name": "nodes", "singularName": "", "namespaced": False, "kind": "NodeMetrics", "verbs": ["get", "list"]},
        {"name": "pods", "singularName": "", "namespaced": True, "kind": "PodMetrics", "verbs": ["get", "list"]},
    ],
}

DISCOVERY_V2_TYPE = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
DISCOVERY_V2 = {
    "kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {},
    "items": [{"metadata": {"name": GROUP, "creationTimestamp": None}, "versions": [{
        "version": VERSION, "freshness": "Current",
        "resources": [{"resource": "pods", "responseKind": {"group": "", "version": "", "kind": "PodMetrics"},
                       "scope": "Namespaced", "singularResource": "podmetrics", "shortNames": ["pm"],
                       "verbs": ["get", "list"]}],
    }]}],
}
NODE_METRICS_SCHEMA = {
    "description": "NodeMetrics sets resource usage metrics of a node.",
    "type": "object",
    "properties": {
        "apiVersion": {"type": "string", "description": "APIVersion defines the versioned schema."},
        "kind": {"type": "string", "description": "Kind is a string value representing the REST resource."},
        "timestamp": {"type": "string", "description": "The following fields define time interval from which "
                                                       "metrics were collected."},
        "window": {"type": "string", "description": "Length of the collection interval."},
    },
    "x-kubernetes-group-version-kind": [{"group": GROUP, "kind": "NodeMetrics", "version": VERSION}],
}
OPENAPI = {
    "/openapi/v2": {
        "swagger": "2.0", "info": {"title": "Kubernetes metrics-server", "version": "v0.9.0"},
        "paths": {f"/apis/{GROUP}/{VERSION}/nodes": {"get": {"operationId": "listMetricsV1beta1NodeMetrics"}}},
        "definitions": {"io.k8s.metrics.pkg.apis.metrics.v1beta1.NodeMetrics": NODE_METRICS_SCHEMA},
    },
    "/openapi/v3": {"paths": {f"apis/{GROUP}/{VERSION}": {
        "serverRelativeURL": f"/openapi/v3/apis/{GROUP}/{VERSION}?hash=ABC"}}},
    f"/openapi/v3/apis/{GROUP}/{VERSION}": {
        "openapi": "3.0.0", "info": {"title": "Kubernetes metrics-server", "version": "v0.9.0"},
        "paths": {f"/apis/{GROUP}/{VERSION}/nodes": {"get": {
            "operationId": "listMetricsV1beta1NodeMetrics", "x-kubernetes-action": "list",
            "x-kubernetes-group-version-kind": {"group": GROUP, "kind": "NodeMetrics", "version": VERSION}}}},
        "components": {"schemas": {"io.k8s.metrics.pkg.apis.metrics.v1beta1.NodeMetrics": NODE_METRICS_SCHEMA}},
    },
}


class RecordingBackend:
    """An aggregated API server: HTTPS with a serving cert for the Service name, requiring a client
    certificate from the front-proxy CA; records every request."""

    def __init__(self, directory: Path, front_proxy_ca_pem: bytes):
        self.ca, serving = self_signed_serving("metrics-server", [SERVICE_NAME])
        serving.write(directory / "backend.crt", directory / "backend.key")
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ctx.load_cert_chain(directory / "backend.crt", directory / "backend.key")
        self.ctx.load_verify_locations(cadata=front_proxy_ca_pem.decode())
        self.ctx.verify_mode = ssl.CERT_REQUIRED
        self.sni: list[str | None] = []
        self.ctx.sni_callback = lambda _obj, name, _ctx: self.sni.append(name)
        self.requests: list[dict[str, Any]] = []
        self.discovery_status = 200  # what the availability probe gets
        self.discovery_v2 = False  # answer /apis with aggregated discovery instead of a legacy APIGroupList
        self.release: asyncio.Event | None = None
        self.port = 0
        self._runner: web.AppRunner | None = None

    def user_requests(self) -> list[dict[str, Any]]:
        """Requests other than the aggregator's own availability and discovery checks."""
        return [r for r in self.requests if r["path"] not in (f"/apis/{GROUP}/{VERSION}", "/apis")]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peercert") or {}
        self.requests.append({
            "method": request.method, "path": request.raw_path, "headers": list(request.headers.items()),
            "subject": dict(x[0] for x in peer.get("subject", ())),
            "issuer": dict(x[0] for x in peer.get("issuer", ())),
        })
        if request.path == f"/apis/{GROUP}/{VERSION}":
            if self.discovery_status != 200:
                return web.json_response({"kind": "Status", "code": self.discovery_status}, status=self.discovery_status)
            return web.json_response(RESOURCE_LIST)
        if request.path == "/apis":
            if self.discovery_v2 and "apidiscovery.k8s.io;v=v2" in request.headers.get("Accept", ""):
                return web.json_response(DISCOVERY_V2, content_type=DISCOVERY_V2_TYPE)
            return web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": []})
        if request.path in OPENAPI:
            return web.json_response(OPENAPI[request.path])
        if request.query.get("watch") in ("true", "1"):
            resp = web.StreamResponse(headers={"Content-Type": "application/json"})
            await resp.prepare(request)
            await resp.write(b'{"type":"ADDED","object":{"metadata":{"name":"first"}}}\n')
            assert self.release is not None
            await self.release.wait()
            await resp.write(b'{"type":"ADDED","object":{"metadata":{"name":"second"}}}\n')
            await resp.write_eof()
            return resp
        return web.json_response({"kind": "PodMetricsList", "apiVersion": f"{GROUP}/{VERSION}", "metadata": {},
                                  "items": [], "echo": request.raw_path})

    async def start(self) -> None:
        self.release = asyncio.Event()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=self.ctx)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@pytest.fixture
def cluster(tmp_path: Path):
    with ServerThread(tmp_path, aggregator_check_interval=0.5) as srv:
        yield srv


@pytest.fixture
def backend(cluster: ServerThread, tmp_path: Path):
    b = RecordingBackend(tmp_path, cluster.server.pki.front_proxy_ca.cert_pem)
    cluster.run(b.start())
    yield b
    cluster.run(b.stop())


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    cache = Path(kubeconfig).parent / "kubectl-cache"
    return subprocess.run(["kubectl", f"--kubeconfig={kubeconfig}", f"--cache-dir={cache}", *args],
                          input=stdin, capture_output=True, text=True, timeout=60)


def apply(kubeconfig: Path, *docs: dict[str, Any]) -> None:
    out = kubectl(kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump_all(docs))
    assert out.returncode == 0, out.stderr


def service_doc() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "metrics-server", "namespace": "kube-system"},
            "spec": {"ports": [{"name": "https", "port": 443, "targetPort": "https"}]}}


def endpoints_doc(port: int | None) -> dict[str, Any]:
    subsets = [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "https", "port": port}]}] if port else []
    return {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "metrics-server", "namespace": "kube-system"},
            "subsets": subsets}


def apiservice_doc(ca_pem: bytes | None = None, insecure: bool = False) -> dict[str, Any]:
    spec: dict[str, Any] = {"service": {"name": "metrics-server", "namespace": "kube-system"}, "group": GROUP,
                            "version": VERSION, "groupPriorityMinimum": 100, "versionPriority": 100}
    if insecure:
        spec["insecureSkipTLSVerify"] = True
    if ca_pem:
        spec["caBundle"] = base64.b64encode(ca_pem).decode()
    return {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": {"name": APISERVICE},
            "spec": spec}


def register(cluster: ServerThread, backend: RecordingBackend) -> None:
    apply(cluster.kubeconfig, service_doc(), endpoints_doc(backend.port), apiservice_doc(backend.ca.cert_pem))
    wait_available(cluster, "True", "Passed")


def wait_available(cluster: ServerThread, status: str, reason: str) -> dict[str, Any]:
    """Polls the APIService through the kubernetes client until its Available condition matches."""
    api = client.ApiregistrationV1Api(config.new_client_from_config(str(cluster.kubeconfig)))
    deadline = time.monotonic() + 30
    cond: Any = None
    while time.monotonic() < deadline:
        obj = api.read_api_service(APISERVICE)
        conds = [c for c in (obj.status.conditions or []) if c.type == "Available"] if obj.status else []
        cond = conds[0] if conds else None
        if cond is not None and (cond.status, cond.reason) == (status, reason):
            return cond.to_dict()
        time.sleep(0.05)
    raise AssertionError(f"APIService never became Available={status}/{reason}; last condition: {cond}")


def headers_named(req: dict[str, Any], name: str) -> list[str]:
    return [v for k, v in req["headers"] if k.lower() == name.lower()]


def test_kubectl_request_reaches_backend_with_front_proxy_identity(cluster: ServerThread, backend: RecordingBackend,
                                                                    tmp_path: Path) -> None:
    register(cluster, backend)
    alice = cluster.server.write_kubeconfig(tmp_path / "alice.kubeconfig", user="alice", groups=("team-a", "team-b"))
    path = f"/apis/{GROUP}/{VERSION}/namespaces/default/pods?labelSelector=app%3Dweb"
    out = kubectl(alice, "get", "--raw", path)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["kind"] == "PodMetricsList"

    req = backend.user_requests()[-1]
    assert req["path"] == path
    assert req["subject"]["commonName"] == "front-proxy-client"
    assert req["issuer"]["commonName"] == "front-proxy-ca"
    assert SERVICE_NAME in backend.sni
    assert headers_named(req, "X-Remote-User") == ["alice"]
    assert headers_named(req, "X-Remote-Group") == ["team-a", "team-b", "system:authenticated"]
    assert headers_named(req, "Authorization") == []
    # The user's certificate fingerprint travels as a percent-encoded extra key, header name in Go's form.
    cfg = yaml.safe_load(alice.read_text())
    cert_pem = base64.b64decode(cfg["users"][0]["user"]["client-certificate-data"])
    der = x509.load_pem_x509_certificate(cert_pem).public_bytes(Encoding.DER)
    names = [k for k, _ in req["headers"] if k.lower().startswith("x-remote-extra-")]
    assert names == ["X-Remote-Extra-Authentication.kubernetes.io%2fcredential-Id"]
    assert headers_named(req, names[0]) == [f"X509SHA256={hashlib.sha256(der).hexdigest()}"]
    assert headers_named(req, "X-Forwarded-Uri") == [path]
    assert headers_named(req, "X-Forwarded-For") == ["127.0.0.1"]

    # The availability checks come from the aggregator's own identity.
    check = next(r for r in backend.requests if r["path"] == f"/apis/{GROUP}/{VERSION}")
    assert headers_named(check, "X-Remote-User") == ["system:kube-aggregator"]
    assert headers_named(check, "X-Remote-Group") == ["system:masters"]


def test_service_account_token_identity_is_forwarded_without_the_token(cluster: ServerThread,
                                                                        backend: RecordingBackend) -> None:
    register(cluster, backend)
    admin = config.new_client_from_config(str(cluster.kubeconfig))
    core = client.CoreV1Api(admin)
    sa = core.read_namespaced_service_account("default", "default")
    token = core.create_namespaced_service_account_token(
        "default", "default", client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(audiences=[]))
    ).status.token

    cfg = client.Configuration()
    cfg.host = cluster.server.url
    cfg.ssl_ca_cert = str(cluster.server.pki.path("ca.crt"))
    cfg.api_key = {"authorization": token}
    cfg.api_key_prefix = {"authorization": "Bearer"}
    api = client.ApiClient(cfg)
    resp = client.CustomObjectsApi(api).list_cluster_custom_object(GROUP, VERSION, "pods")
    assert resp["kind"] == "PodMetricsList"

    req = backend.user_requests()[-1]
    assert headers_named(req, "Authorization") == []
    assert headers_named(req, "X-Remote-User") == ["system:serviceaccount:default:default"]
    assert headers_named(req, "X-Remote-Uid") == [sa.metadata.uid]
    assert headers_named(req, "X-Remote-Group") == [
        "system:serviceaccounts", "system:serviceaccounts:default", "system:authenticated"]
    cred = headers_named(req, "X-Remote-Extra-Authentication.kubernetes.io%2fcredential-Id")
    assert len(cred) == 1 and cred[0].startswith("JTI=")


def test_available_condition_tracks_service_endpoints_and_backend(cluster: ServerThread,
                                                                  backend: RecordingBackend) -> None:
    kc = cluster.kubeconfig
    apply(kc, apiservice_doc(backend.ca.cert_pem))
    cond = wait_available(cluster, "False", "ServiceNotFound")
    assert cond["message"] == 'service/metrics-server in "kube-system" is not present'

    apply(kc, service_doc())
    cond = wait_available(cluster, "False", "EndpointsNotFound")
    assert cond["message"] == 'cannot find endpoints for service/metrics-server in "kube-system"'

    apply(kc, endpoints_doc(None))
    cond = wait_available(cluster, "False", "MissingEndpoints")
    assert cond["message"] == 'endpoints for service/metrics-server in "kube-system" have no addresses with port name "https"'
    out = kubectl(kc, "get", "--raw", f"/apis/{GROUP}/{VERSION}/nodes")
    assert out.returncode != 0
    assert "Error from server (ServiceUnavailable): the server is currently unable to handle the request" in out.stderr

    apply(kc, endpoints_doc(backend.port))
    cond = wait_available(cluster, "True", "Passed")
    assert cond["message"] == "all checks passed"
    out = kubectl(kc, "get", "apiservice", APISERVICE)
    assert out.stdout.split("\n")[1].split()[:3] == [APISERVICE, "kube-system/metrics-server", "True"]

    cluster.run(backend.stop())
    out = kubectl(kc, "get", "--raw", f"/apis/{GROUP}/{VERSION}/nodes")
    assert out.returncode != 0
    assert "Error from server (ServiceUnavailable): the server is currently unable to handle the request" in out.stderr
    cond = wait_available(cluster, "False", "FailedDiscoveryCheck")
    url = f"https://127.0.0.1:{backend.port}/apis/{GROUP}/{VERSION}"
    assert cond["message"] == (f'failing or missing response from {url}: Get "{url}": '
                               f"dial tcp 127.0.0.1:{backend.port}: connect: connection refused")
    out = kubectl(kc, "get", "apiservice", APISERVICE)
    assert "False (FailedDiscoveryCheck)" in out.stdout
    # Aggregated discovery now marks the group-version Stale, so kubectl leaves its resources out.
    out = kubectl(kc, "api-resources", f"--cache-dir={kc.parent / 'fresh-cache'}")
    assert out.returncode == 0 and "deployments" in out.stdout and GROUP not in out.stdout

    backend.port = 0  # the backend comes back elsewhere, as a restarted pod does
    cluster.run(backend.start())
    apply(kc, endpoints_doc(backend.port))
    wait_available(cluster, "True", "Passed")
    assert kubectl(kc, "get", "--raw", f"/apis/{GROUP}/{VERSION}/nodes").returncode == 0


def test_backend_certificate_is_verified_against_ca_bundle(cluster: ServerThread, backend: RecordingBackend) -> None:
    kc = cluster.kubeconfig
    apply(kc, service_doc(), endpoints_doc(backend.port), apiservice_doc(generate_ca("someone-else").cert_pem))
    cond = wait_available(cluster, "False", "FailedDiscoveryCheck")
    assert "x509: certificate signed by unknown authority" in cond["message"]
    assert backend.requests == []

    out = kubectl(kc, "patch", "apiservice", APISERVICE, "--type=merge",
                  "-p", json.dumps({"spec": {"caBundle": None, "insecureSkipTLSVerify": True}}))
    assert out.returncode == 0, out.stderr
    wait_available(cluster, "True", "Passed")


def test_backend_refusing_the_probe_fails_the_discovery_check(cluster: ServerThread, backend: RecordingBackend) -> None:
    backend.discovery_status = 403
    apply(cluster.kubeconfig, service_doc(), endpoints_doc(backend.port), apiservice_doc(backend.ca.cert_pem))
    cond = wait_available(cluster, "False", "FailedDiscoveryCheck")
    url = f"https://127.0.0.1:{backend.port}/apis/{GROUP}/{VERSION}"
    assert cond["message"] == f"failing or missing response from {url}: bad status from {url}: 403"
    backend.discovery_status = 200
    wait_available(cluster, "True", "Passed")  # the periodic check sees the backend recover


def test_watch_stream_is_relayed_as_it_arrives(cluster: ServerThread, backend: RecordingBackend) -> None:
    register(cluster, backend)
    pki = cluster.server.pki
    ctx = ssl.create_default_context(cafile=str(pki.path("ca.crt")))
    ctx.load_cert_chain(pki.path("admin.crt"), pki.path("admin.key"))

    async def watch() -> list[bytes]:
        lines = []
        async with aiohttp.ClientSession() as session, session.get(
                f"{cluster.server.url}/apis/{GROUP}/{VERSION}/pods?watch=true", ssl=ctx) as resp:
            assert resp.status == 200
            lines.append(await resp.content.readline())
            # The backend holds the second event until we have seen the first one through the proxy.
            assert backend.release is not None
            cluster.loop.call_soon_threadsafe(backend.release.set)
            lines.append(await resp.content.readline())
            lines.append(await resp.content.readline())
        return lines

    first, second, end = asyncio.run(watch())
    assert json.loads(first)["object"]["metadata"]["name"] == "first"
    assert json.loads(second)["object"]["metadata"]["name"] == "second"
    assert end == b""


def test_discovery_lists_aggregated_group(cluster: ServerThread, backend: RecordingBackend) -> None:
    register(cluster, backend)
    kc = cluster.kubeconfig
    out = kubectl(kc, "api-resources", f"--api-group={GROUP}", "--no-headers")
    assert out.returncode == 0, out.stderr
    rows = sorted(line.split() for line in out.stdout.splitlines())
    assert rows == [["nodes", f"{GROUP}/{VERSION}", "false", "NodeMetrics"],
                    ["pods", f"{GROUP}/{VERSION}", "true", "PodMetrics"]]

    groups = json.loads(kubectl(kc, "get", "--raw", "/apis").stdout)["groups"]
    mine = [g for g in groups if g["name"] == GROUP]
    assert mine == [{"name": GROUP, "versions": [{"groupVersion": f"{GROUP}/{VERSION}", "version": VERSION}],
                     "preferredVersion": {"groupVersion": f"{GROUP}/{VERSION}", "version": VERSION}}]
    group_doc = json.loads(kubectl(kc, "get", "--raw", f"/apis/{GROUP}").stdout)
    assert group_doc["kind"] == "APIGroup" and group_doc["preferredVersion"]["version"] == VERSION


def test_local_apiservices_and_authentication_configmap(cluster: ServerThread) -> None:
    kc = cluster.kubeconfig
    out = kubectl(kc, "get", "apiservices", "--no-headers")
    rows = {line.split()[0]: line.split()[1:3] for line in out.stdout.splitlines()}
    for name in ("v1.", "v1.apps", "v2.autoscaling", "v1.authentication.k8s.io"):
        assert rows[name] == ["Local", "True"]

    core = client.CoreV1Api(config.new_client_from_config(str(kc)))
    data = core.read_namespaced_config_map("extension-apiserver-authentication", "kube-system").data
    pki = cluster.server.pki
    assert data["client-ca-file"] == pki.ca.cert_pem.decode()
    assert data["requestheader-client-ca-file"] == pki.front_proxy_ca.cert_pem.decode()
    assert json.loads(data["requestheader-allowed-names"]) == ["front-proxy-client"]
    assert data["requestheader-username-headers"] == '["X-Remote-User"]'
    assert data["requestheader-group-headers"] == '["X-Remote-Group"]'
    assert data["requestheader-extra-headers-prefix"] == '["X-Remote-Extra-"]'
    assert data["requestheader-uid-headers"] == '["X-Remote-Uid"]'


def test_openapi_of_the_backend_is_aggregated(cluster: ServerThread, backend: RecordingBackend) -> None:
    register(cluster, backend)
    kc = cluster.kubeconfig
    v2 = json.loads(kubectl(kc, "get", "--raw", "/openapi/v2").stdout)
    assert f"/apis/{GROUP}/{VERSION}/nodes" in v2["paths"]
    assert "io.k8s.metrics.pkg.apis.metrics.v1beta1.NodeMetrics" in v2["definitions"]

    index = json.loads(kubectl(kc, "get", "--raw", "/openapi/v3").stdout)["paths"]
    url = index[f"apis/{GROUP}/{VERSION}"]["serverRelativeURL"]
    doc = json.loads(kubectl(kc, "get", "--raw", url).stdout)
    assert doc == OPENAPI[f"/openapi/v3/apis/{GROUP}/{VERSION}"]

    out = kubectl(kc, "explain", "nodemetrics")
    assert out.returncode == 0, out.stderr
    assert "NodeMetrics sets resource usage metrics of a node." in out.stdout

    fetches = [r for r in backend.requests if r["path"].startswith("/openapi/")]
    assert fetches and all(headers_named(r, "X-Remote-User") == ["system:aggregator"] for r in fetches)


def test_aggregated_discovery_from_a_backend_that_serves_it(cluster: ServerThread, backend: RecordingBackend) -> None:
    backend.discovery_v2 = True
    register(cluster, backend)
    out = kubectl(cluster.kubeconfig, "api-resources", f"--api-group={GROUP}", "--no-headers")
    assert out.returncode == 0, out.stderr
    assert [line.split() for line in out.stdout.splitlines()] == [["pods", "pm", f"{GROUP}/{VERSION}", "true",
                                                                   "PodMetrics"]]
    # kubectl resolves the short name from that discovery and lists through the proxy.
    out = kubectl(cluster.kubeconfig, "get", "pm", "-n", "default")
    assert out.returncode == 0, out.stderr
    assert backend.user_requests()[-1]["path"].startswith(f"/apis/{GROUP}/{VERSION}/namespaces/default/pods")


def test_client_identity_and_hop_by_hop_headers_are_not_passed_through(cluster: ServerThread,
                                                                       backend: RecordingBackend) -> None:
    register(cluster, backend)
    pki = cluster.server.pki
    ctx = ssl.create_default_context(cafile=str(pki.path("ca.crt")))
    ctx.load_cert_chain(pki.path("admin.crt"), pki.path("admin.key"))
    spoof = [("X-Remote-User", "mallory"), ("X-Remote-Group", "system:masters"), ("X-Remote-Extra-Scopes", "all"),
             ("Proxy-Authorization", "Basic bWFsbG9yeQ=="), ("Keep-Alive", "timeout=5"), ("X-Custom", "kept")]

    async def call() -> int:
        async with aiohttp.ClientSession() as session, session.get(
                f"{cluster.server.url}/apis/{GROUP}/{VERSION}/nodes", ssl=ctx, headers=spoof) as resp:
            await resp.read()
            return resp.status

    assert asyncio.run(call()) == 200
    req = backend.user_requests()[-1]
    assert headers_named(req, "X-Remote-User") == ["kubernetes-admin"]
    assert headers_named(req, "X-Remote-Group") == ["system:masters", "system:authenticated"]
    assert headers_named(req, "X-Remote-Extra-Scopes") == []
    assert headers_named(req, "Proxy-Authorization") == []
    assert headers_named(req, "Keep-Alive") == []
    assert headers_named(req, "X-Custom") == ["kept"]
