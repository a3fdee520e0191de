"""Security of the aggregated server, against the emulated kube-apiserver's TokenReview/SAR.

Only a client certificate from the front-proxy CA with an allowed CN makes X-Remote-* headers
trusted; user certificates from the cluster CA are identities by themselves; bearer tokens are
checked by TokenReview; every request is authorized by SubjectAccessReview (cached with the
configured TTLs), health probes excepted; the trust roots follow the
extension-apiserver-authentication ConfigMap as it rotates.
"""

from __future__ import annotations

import asyncio
import copy
import ssl
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from test_metrics_api_support import MetricsServerThread, run_args, wait_for

from autoscaler.k8s.certs import CertPair, generate_ca, issue_cert
from autoscaler.server.authn import Authenticator, Headers, RequestHeaderConfig
from sim.cluster import run_in_thread
from sim.scenario import parse_scenario

SCENARIO = {
    "name": "security",
    "nodes": [{"name": "worker-1"}],
    "authorization": {"default": "allow", "rules": [
        {"effect": "deny", "user": "mallory", "reason": "mallory is not welcome"},
        {"effect": "deny", "user": "system:anonymous"},
    ]},
}
NODES = "/apis/metrics.k8s.io/v1beta1/nodes"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("security")
    cluster = run_in_thread(parse_scenario(SCENARIO), tmp / "cluster")
    server = None
    try:
        server = MetricsServerThread(run_args(cluster, tmp, "--authorization-webhook-cache-authorized-ttl", "5m",
                                              "--authorization-webhook-cache-unauthorized-ttl", "5m")).start()
        yield cluster, server, tmp
    finally:
        if server is not None:
            server.stop()
        cluster.stop()


def _files(tmp: Path, pair: CertPair, name: str) -> tuple[str, str]:
    crt, key = tmp / f"{name}.crt", tmp / f"{name}.key"
    pair.write(crt, key)
    return str(crt), str(key)


def request(port: int, path: str, *, cert: tuple[str, str] | None = None, headers: list[tuple[str, str]] | None = None
            ) -> tuple[int, Any]:
    """One HTTPS GET with a real aiohttp client (server certificate not verified: self-signed)."""

    async def go() -> tuple[int, Any]:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        if cert:
            ctx.load_cert_chain(*cert)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s, \
                s.get(f"https://127.0.0.1:{port}{path}", headers=headers or []) as r:
            body = await r.read()
            try:
                return r.status, orjson.loads(body)
            except orjson.JSONDecodeError:
                return r.status, body.decode()

    return asyncio.run(go())


def proxy(pki: Any, tmp: Path) -> tuple[str, str]:
    return _files(tmp, pki.front_proxy_client, "front-proxy-client")


def test_no_trusted_certificate_means_headers_are_ignored(env):
    _cluster, server, _tmp = env
    code, body = request(server.port, NODES, headers=[("X-Remote-User", "kubernetes-admin"),
                                                      ("X-Remote-Group", "system:masters")])
    assert code == 401
    assert body == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": "Unauthorized", "reason": "Unauthorized", "code": 401}


def test_forged_remote_user_with_a_user_certificate_is_that_user(env):
    cluster, server, tmp = env
    cert = _files(tmp, cluster.cluster.pki.issue_client("mallory", ("developers",)), "mallory")
    code, body = request(server.port, NODES, cert=cert, headers=[("X-Remote-User", "kubernetes-admin"),
                                                                 ("X-Remote-Group", "system:masters")])
    assert code == 403
    assert body["reason"] == "Forbidden"
    assert body["message"] == ('nodes.metrics.k8s.io is forbidden: User "mallory" cannot list resource "nodes" in '
                               'API group "metrics.k8s.io" at the cluster scope: mallory is not welcome')
    # The same certificate user is allowed where the policy allows: a client certificate is an identity.
    cert = _files(tmp, cluster.cluster.pki.issue_client("alice", ("developers",)), "alice")
    code, body = request(server.port, NODES, cert=cert)
    assert (code, body["kind"]) == (200, "NodeMetricsList")


def test_front_proxy_identity_is_authorized_by_subject_access_review(env):
    cluster, server, tmp = env
    cert = proxy(cluster.cluster.pki, tmp)
    code, body = request(server.port, "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/x",
                         cert=cert, headers=[("X-Remote-User", "mallory"), ("X-Remote-Group", "system:authenticated")])
    assert code == 403
    assert body["message"].startswith('pods.metrics.k8s.io "x" is forbidden: User "mallory" cannot get resource '
                                      '"pods" in API group "metrics.k8s.io" in the namespace "default"')
    code, body = request(server.port, NODES, cert=cert, headers=[("X-Remote-User", "bob"),
                                                                 ("X-Remote-Group", "system:authenticated")])
    assert (code, body["kind"]) == (200, "NodeMetricsList")
    # The front proxy's certificate alone, without a user header, is not an identity.
    assert request(server.port, NODES, cert=cert)[0] == 401


def test_front_proxy_certificate_with_a_cn_not_allowed_is_refused(env):
    cluster, server, tmp = env
    rogue = issue_cert(cluster.cluster.pki.front_proxy_ca, "some-other-proxy", client=True)
    code, _ = request(server.port, NODES, cert=_files(tmp, rogue, "rogue"),
                      headers=[("X-Remote-User", "kubernetes-admin"), ("X-Remote-Group", "system:masters")])
    assert code == 401


def test_certificate_from_an_unknown_ca_is_refused_in_the_handshake(env):
    _cluster, server, tmp = env
    stranger = issue_cert(generate_ca("front-proxy-ca"), "front-proxy-client", client=True)
    with pytest.raises(aiohttp.ClientError):
        request(server.port, NODES, cert=_files(tmp, stranger, "stranger"),
                headers=[("X-Remote-User", "kubernetes-admin"), ("X-Remote-Group", "system:masters")])


def test_bearer_tokens_go_through_token_review(env):
    cluster, server, _tmp = env
    token = cluster.cluster.metrics_token
    code, body = request(server.port, NODES, headers=[("Authorization", f"Bearer {token}")])
    assert (code, body["kind"]) == (200, "NodeMetricsList")
    assert request(server.port, NODES, headers=[("Authorization", "Bearer not-a-token")])[0] == 401


def test_health_is_open_everything_else_needs_identity(env):
    cluster, server, tmp = env
    assert request(server.port, "/livez") == (200, "ok")
    assert request(server.port, "/healthz") == (200, "ok")
    code, text = request(server.port, "/readyz?verbose")  # no pods in this cluster: nothing to serve
    assert code == 500 and "[-]metric-storage-ready failed: reason withheld" in text
    assert request(server.port, "/metrics")[0] == 401
    assert request(server.port, "/openapi/v2")[0] == 401
    cert = proxy(cluster.cluster.pki, tmp)
    code, text = request(server.port, "/metrics", cert=cert, headers=[("X-Remote-User", "prometheus")])
    assert code == 200 and "metrics_server_kubelet_request_total" in text


def test_authorization_decisions_are_cached_for_the_ttl(env):
    cluster, server, tmp = env
    cert = proxy(cluster.cluster.pki, tmp)
    as_carol = [("X-Remote-User", "carol"), ("X-Remote-Group", "system:authenticated")]
    assert request(server.port, NODES, cert=cert, headers=as_carol)[0] == 200
    policy = cluster.cluster.apiserver.authorizer.policy
    rule = cluster.call(lambda: policy.deny(user="carol"))
    try:
        # This server caches allowed answers for 5 minutes: carol is still allowed.
        assert request(server.port, NODES, cert=cert, headers=as_carol)[0] == 200
        # A server without caching asks again and is refused at once.
        uncached = MetricsServerThread(run_args(cluster.cluster, tmp / "uncached",
                                                "--authorization-webhook-cache-authorized-ttl", "0s",
                                                "--authorization-webhook-cache-unauthorized-ttl", "0s")).start()
        try:
            assert request(uncached.port, NODES, cert=cert, headers=as_carol)[0] == 403
        finally:
            uncached.stop()
    finally:
        cluster.call(lambda: policy.remove(rule))


def test_rotated_front_proxy_ca_is_picked_up_from_the_configmap(env):
    cluster, server, tmp = env
    pki = cluster.cluster.pki
    old_cert = proxy(pki, tmp)
    new_ca = generate_ca("front-proxy-ca-2")
    new_cert = _files(tmp, issue_cert(new_ca, "front-proxy-client", client=True), "front-proxy-client-2")
    who = [("X-Remote-User", "bob")]
    store = cluster.store

    def rotate(ca_pem: str) -> dict:
        cm = copy.deepcopy(store.get("configmaps", "kube-system", "extension-apiserver-authentication"))
        previous = cm["data"]["requestheader-client-ca-file"]
        cm["data"]["requestheader-client-ca-file"] = ca_pem
        store.update("configmaps", cm)
        return previous

    previous = cluster.call(lambda: rotate(new_ca.cert_pem.decode()))
    try:
        wait_for(lambda: request(server.port, NODES, cert=new_cert, headers=who)[0] == 200, 30,
                 "the rotated front-proxy CA to be trusted")

        def old_refused() -> bool:
            try:
                return request(server.port, NODES, cert=old_cert, headers=who)[0] == 401
            except aiohttp.ClientError:
                return True  # refused in the handshake: the old CA is no longer trusted at all

        assert old_refused()
    finally:
        cluster.call(lambda: rotate(previous))
        wait_for(lambda: request(server.port, NODES, cert=old_cert, headers=who)[0] == 200, 30,
                 "the original front-proxy CA to be trusted again")


# -- the front-proxy CA check itself: an allowed CN is not enough -----------------------------------
def _der(pair: CertPair) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding
    return x509.load_pem_x509_certificate(pair.cert_pem).public_bytes(Encoding.DER)


FORGED = Headers([("X-Remote-User", "kubernetes-admin"), ("X-Remote-Group", "system:masters")])


@pytest.mark.parametrize("allowed", [("front-proxy-client",), ()], ids=["allowed-names", "no-allowed-names"])
async def test_a_client_ca_certificate_named_like_the_proxy_is_not_a_proxy(allowed):
    """Only the requestheader CA makes X-Remote-* trusted; a cluster-CA certificate with the proxy's
    CN (easy to get: any CSR signer of the cluster CA) is that user and nothing more."""
    front_proxy_ca, client_ca = generate_ca("front-proxy-ca"), generate_ca("kubernetes-ca")
    rh = RequestHeaderConfig(ca_pem=front_proxy_ca.cert_pem, allowed_names=allowed,
                             username_headers=("X-Remote-User",), group_headers=("X-Remote-Group",),
                             extra_prefixes=("X-Remote-Extra-",), uid_headers=("X-Remote-Uid",))
    authn = Authenticator(requestheader=rh, client_ca_pem=client_ca.cert_pem)
    impostor = issue_cert(client_ca, "front-proxy-client", client=True)
    user = await authn.authenticate(_der(impostor), FORGED, NODES)
    assert user.name == "front-proxy-client" and "system:masters" not in user.groups
    # the genuine proxy certificate, from the requestheader CA, is believed
    proxy_user = await authn.authenticate(_der(issue_cert(front_proxy_ca, "front-proxy-client", client=True)),
                                          FORGED, NODES)
    assert proxy_user.name == "kubernetes-admin" and "system:masters" in proxy_user.groups
