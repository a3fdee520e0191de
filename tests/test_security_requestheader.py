"""What the server sends to kube-apiserver for delegated decisions, and how it treats the answers.

The review endpoints here stand in for kube-apiserver's TokenReview / SubjectAccessReview API
(recording the request bodies, answering like kube-apiserver); requests are real HTTPS calls
from aiohttp clients with real certificates.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest
from test_metrics_api_support import Trust, proxy_headers, start_server, synthetic_store

from autoscaler.k8s.certs import issue_cert

NODES = "/apis/metrics.k8s.io/v1beta1/nodes"


class Reviews:
    """A kube-apiserver review endpoint: records bodies, answers from a decision function."""

    def __init__(self, allow: Any = True, fail: bool = False):
        self.bodies: list[dict[str, Any]] = []
        self.allow = allow
        self.fail = fail

    async def __call__(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.bodies.append(body)
        if self.fail:
            raise OSError("connection refused")
        if path.endswith("/tokenreviews"):
            if body["spec"]["token"] == "good-token":
                return {**body, "status": {"authenticated": True, "user": {
                    "username": "system:serviceaccount:monitoring:prometheus", "uid": "u-1",
                    "groups": ["system:serviceaccounts", "system:serviceaccounts:monitoring"]}}}
            return {**body, "status": {"authenticated": False}}
        allowed = self.allow(body["spec"]) if callable(self.allow) else self.allow
        return {**body, "status": {"allowed": allowed, "reason": "" if allowed else "no RBAC policy matched"}}


@pytest.fixture
async def server(tmp_path):
    store, index = synthetic_store(2, 3)
    servers = []

    async def make(reviews: Reviews, **kw: Any):
        srv = await start_server(tmp_path / str(len(servers)), store, index, trust=Trust(tmp_path), reviewer=reviews,
                                 token_reviewer=reviews, **kw)
        servers.append(srv)
        return srv

    yield make
    for s in servers:
        await s.server.stop()


async def _get(srv, path: str, headers: list[tuple[str, str]], cert=None) -> tuple[int, Any]:
    ctx = srv.client_ssl(cert, "c") if cert is not None else srv.client_ssl()
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s, \
            s.get(srv.url + path, headers=headers) as r:
        return r.status, orjson.loads(await r.read()) if r.content_type == "application/json" else await r.text()


async def test_identity_headers_reach_subject_access_review_decoded(server):
    reviews = Reviews()
    srv = await server(reviews)
    headers = proxy_headers("jane", ("devs", "system:authenticated"),
                            extra={"Authentication.kubernetes.io%2fcredential-Id": ["X509SHA256=abc"],
                                   "Scopes": ["view", "edit"]}, uid="1234-5678")
    code, _ = await _get(srv, "/apis/metrics.k8s.io/v1beta1/namespaces/web/pods/web-0", headers,
                         srv.trust.proxy_cert())
    assert code == 404  # allowed, and there is no such pod
    (sar,) = reviews.bodies
    assert sar["kind"] == "SubjectAccessReview" and sar["apiVersion"] == "authorization.k8s.io/v1"
    assert sar["spec"] == {
        "user": "jane", "groups": ["devs", "system:authenticated"], "uid": "1234-5678",
        "extra": {"authentication.kubernetes.io/credential-id": ["X509SHA256=abc"], "scopes": ["view", "edit"]},
        "resourceAttributes": {"verb": "get", "group": "metrics.k8s.io", "version": "v1beta1", "resource": "pods",
                               "namespace": "web", "name": "web-0"},
    }


async def test_lists_and_non_resource_paths_are_reviewed_as_kubernetes_does(server):
    reviews = Reviews()
    srv = await server(reviews)
    cert = srv.trust.proxy_cert()
    who = proxy_headers("jane")
    assert (await _get(srv, NODES + "?labelSelector=zone%3Dz1", who, cert))[0] == 200
    assert (await _get(srv, "/metrics", who, cert))[0] == 200
    assert (await _get(srv, "/apis/metrics.k8s.io/v1beta1", who, cert))[0] == 200
    specs = [b["spec"] for b in reviews.bodies]
    assert specs[0]["resourceAttributes"] == {"verb": "list", "group": "metrics.k8s.io", "version": "v1beta1",
                                              "resource": "nodes"}
    assert specs[0]["groups"] == ["system:authenticated"]  # added to every authenticated user
    assert specs[1]["nonResourceAttributes"] == {"path": "/metrics", "verb": "get"}
    assert specs[2]["nonResourceAttributes"] == {"path": "/apis/metrics.k8s.io/v1beta1", "verb": "get"}


async def test_denied_and_failed_reviews(server):
    srv = await server(Reviews(allow=lambda spec: spec["user"] != "eve"))
    cert = srv.trust.proxy_cert()
    code, body = await _get(srv, NODES, proxy_headers("eve"), cert)
    assert code == 403
    assert body["message"] == ('nodes.metrics.k8s.io is forbidden: User "eve" cannot list resource "nodes" in API '
                               'group "metrics.k8s.io" at the cluster scope: no RBAC policy matched')
    assert body["details"] == {"group": "metrics.k8s.io", "kind": "nodes"}

    broken = await server(Reviews(fail=True))
    code, body = await _get(broken, NODES, proxy_headers("eve"), broken.trust.proxy_cert())
    assert (code, body["reason"]) == (500, "InternalError")  # never an implicit allow
    # Health probes do not depend on the webhook.
    assert (await _get(broken, "/livez", []))[0] == 200


async def test_system_masters_needs_no_review_and_tokens_are_cached(server):
    reviews = Reviews()
    srv = await server(reviews)
    code, _ = await _get(srv, NODES, proxy_headers("admin", ("system:masters",)), srv.trust.proxy_cert())
    assert code == 200 and reviews.bodies == []

    for _ in range(3):
        code, body = await _get(srv, NODES, [("Authorization", "Bearer good-token")])
        assert (code, body["kind"]) == (200, "NodeMetricsList")
    kinds = [b["kind"] for b in reviews.bodies]
    assert kinds == ["TokenReview", "SubjectAccessReview"]  # both answers cached for 10 s
    assert reviews.bodies[1]["spec"]["user"] == "system:serviceaccount:monitoring:prometheus"
    assert reviews.bodies[1]["spec"]["uid"] == "u-1"

    code, body = await _get(srv, NODES, [("Authorization", "Bearer bad-token")])
    assert (code, body["reason"]) == (401, "Unauthorized")


async def test_client_certificates_signed_by_the_client_ca_are_users(server):
    reviews = Reviews()
    srv = await server(reviews)
    user = srv.trust.user_cert("kim", ("ops", "oncall"))
    code, _ = await _get(srv, NODES, [("X-Remote-User", "admin")], user)
    assert code == 200
    assert reviews.bodies[0]["spec"]["user"] == "kim"
    assert reviews.bodies[0]["spec"]["groups"] == ["ops", "oncall", "system:authenticated"]
    # A front-proxy-CA certificate whose CN is not allowed cannot assert identities.
    rogue = issue_cert(srv.trust.front_proxy_ca, "not-the-proxy", client=True)
    assert (await _get(srv, NODES, proxy_headers("admin", ("system:masters",)), rogue))[0] == 401


async def test_requests_past_max_in_flight_get_429_before_any_token_review(server):
    """A flood of made-up bearer tokens must not become a flood of TokenReviews; probes still answer."""
    release = asyncio.Event()

    class SlowReviews(Reviews):
        async def __call__(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
            self.bodies.append(body)
            await release.wait()
            return {**body, "status": {"authenticated": False}}

    reviews = SlowReviews()
    srv = await server(reviews, max_in_flight=3)
    flood = [asyncio.create_task(_get(srv, "/apis/metrics.k8s.io/v1beta1/nodes",
                                      [("Authorization", f"Bearer made-up-{i}")])) for i in range(12)]
    deadline = asyncio.get_running_loop().time() + 10
    while sum(t.done() for t in flood) < 9:
        assert asyncio.get_running_loop().time() < deadline, "the surplus requests were not refused"
        await asyncio.sleep(0.01)
    refused = [t.result() for t in flood if t.done()]
    assert all(code == 429 and body["reason"] == "TooManyRequests" for code, body in refused)
    assert len(reviews.bodies) == 3
    assert (await _get(srv, "/livez", []))[0] == 200  # probes are exempt
    release.set()
    assert [code for code, _ in await asyncio.gather(*flood)].count(401) == 3
