"""Authentication methods and the authorization policy of the emulated kube-apiserver, through the
real kubectl, the kubernetes client and aiohttp."""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kubernetes import client, config

from sim.apiserver.auth import AuthzPolicy, PolicyError
from sim.apiserver.testing import ServerThread

POLICY = {
    "default": "allow",
    "rules": [
        {"user": "bob", "verb": ["list", "watch"], "resource": "pods", "reason": "bob may not list pods"},
        {"group": "auditors", "verb": ["create", "update", "patch", "delete"]},
        {"user": "bob", "nonResourceURL": "/openapi/*"},
        {"group": "*", "verb": "delete", "resource": "namespaces", "name": "kube-system"},
    ],
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    with ServerThread(tmp_path_factory.mktemp("auth-authz"), authorizer_policy=AuthzPolicy.from_config(POLICY)) as srv:
        yield srv


def kubectl(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cache = Path(kubeconfig).parent / "kubectl-cache"
    return subprocess.run(["kubectl", f"--kubeconfig={kubeconfig}", f"--cache-dir={cache}", *args],
                          capture_output=True, text=True, timeout=60)


def user_kubeconfig(cluster: ServerThread, user: str, groups: tuple[str, ...] = ()) -> Path:
    return cluster.server.write_kubeconfig(cluster.directory / f"{user}.kubeconfig", user=user, groups=groups)


def sar(cluster: ServerThread, **spec: Any) -> Any:
    api = client.AuthorizationV1Api(config.new_client_from_config(str(cluster.kubeconfig)))
    return api.create_subject_access_review(client.V1SubjectAccessReview(spec=client.V1SubjectAccessReviewSpec(**spec)))


def test_subject_access_review_answers_from_the_policy(cluster: ServerThread) -> None:
    pods = client.V1ResourceAttributes(verb="list", resource="pods", namespace="default")
    allowed = sar(cluster, user="alice", groups=["dev"], resource_attributes=pods)
    assert allowed.status.allowed is True and allowed.status.denied is None
    assert allowed.spec.user == "alice"

    denied = sar(cluster, user="bob", resource_attributes=pods)
    assert denied.status.allowed is False
    assert denied.status.denied is True
    assert denied.status.reason == "bob may not list pods"

    get_pod = client.V1ResourceAttributes(verb="get", resource="pods", namespace="default", name="web")
    assert sar(cluster, user="bob", resource_attributes=get_pod).status.allowed is True
    metrics = client.V1NonResourceAttributes(path="/openapi/v3", verb="get")
    assert sar(cluster, user="bob", non_resource_attributes=metrics).status.allowed is False
    assert sar(cluster, user="carol", non_resource_attributes=metrics).status.allowed is True
    # The privileged group is never denied, even by a rule that matches every group.
    ns_delete = client.V1ResourceAttributes(verb="delete", resource="namespaces", name="kube-system")
    assert sar(cluster, user="carol", groups=["dev"], resource_attributes=ns_delete).status.allowed is False
    assert sar(cluster, user="root", groups=["system:masters"], resource_attributes=ns_delete).status.allowed is True


def test_subject_access_review_validation(cluster: ServerThread) -> None:
    with pytest.raises(client.ApiException) as err:
        sar(cluster, user="alice")
    assert err.value.status == 422
    body = json.loads(err.value.body)
    assert body["reason"] == "Invalid"
    assert body["details"]["causes"][0]["field"] == "spec.resourceAttributes"
    assert "exactly one of nonResourceAttributes or resourceAttributes must be specified" in body["message"]

    with pytest.raises(client.ApiException) as err:
        sar(cluster, resource_attributes=client.V1ResourceAttributes(verb="get", resource="pods"))
    assert "at least one of user or group must be specified" in json.loads(err.value.body)["message"]


def test_denied_requests_get_403_status_from_the_emulator(cluster: ServerThread) -> None:
    bob = user_kubeconfig(cluster, "bob")
    out = kubectl(bob, "get", "pods", "-n", "default")
    assert out.returncode != 0
    assert ('Error from server (Forbidden): pods is forbidden: User "bob" cannot list resource "pods" in API group "" '
            'in the namespace "default": bob may not list pods') in out.stderr
    assert kubectl(bob, "get", "configmaps", "-n", "default").returncode == 0

    out = kubectl(bob, "get", "--raw", "/openapi/v2")
    assert out.returncode != 0
    assert 'forbidden: User "bob" cannot get path "/openapi/v2"' in out.stderr

    auditor = user_kubeconfig(cluster, "dana", ("auditors",))
    out = kubectl(auditor, "create", "configmap", "x", "-n", "default")
    assert 'User "dana" cannot create resource "configmaps" in API group "" in the namespace "default"' in out.stderr

    with pytest.raises(client.ApiException) as err:
        client.CoreV1Api(config.new_client_from_config(str(bob))).list_namespaced_pod("default")
    assert err.value.status == 403
    body = json.loads(err.value.body)
    assert (body["kind"], body["reason"], body["details"]) == ("Status", "Forbidden", {"kind": "pods"})


def test_kubectl_auth_can_i_uses_the_policy(cluster: ServerThread) -> None:
    bob = user_kubeconfig(cluster, "bob")
    assert kubectl(bob, "auth", "can-i", "list", "pods").stdout.strip() == "no - bob may not list pods"
    assert kubectl(bob, "auth", "can-i", "get", "pods").stdout.strip() == "yes"
    assert kubectl(cluster.kubeconfig, "auth", "can-i", "delete", "namespace/kube-system").stdout.strip() == "yes"


def test_policy_can_change_at_run_time(cluster: ServerThread) -> None:
    erin = user_kubeconfig(cluster, "erin")
    assert kubectl(erin, "get", "services").returncode == 0
    rule = cluster.server.authorizer.policy.deny(user="erin", resource="services")
    try:
        out = kubectl(erin, "get", "services")
        assert 'User "erin" cannot list resource "services"' in out.stderr
    finally:
        cluster.server.authorizer.policy.remove(rule)
    assert kubectl(erin, "get", "services").returncode == 0


def test_no_credentials_gets_401_status(cluster: ServerThread) -> None:
    cfg = client.Configuration()
    cfg.host = cluster.server.url
    cfg.ssl_ca_cert = str(cluster.server.pki.path("ca.crt"))
    with pytest.raises(client.ApiException) as err:
        client.CoreV1Api(client.ApiClient(cfg)).list_namespaced_pod("default")
    assert err.value.status == 401
    body = json.loads(err.value.body)
    assert (body["kind"], body["reason"], body["message"], body["code"]) == ("Status", "Unauthorized", "Unauthorized", 401)


def _whoami(cluster: ServerThread, cert: str, key: str, headers: dict[str, str] | list[tuple[str, str]]
            ) -> tuple[int, dict[str, Any]]:
    ctx = ssl.create_default_context(cafile=str(cluster.server.pki.path("ca.crt")))
    ctx.load_cert_chain(cluster.server.pki.path(cert), cluster.server.pki.path(key))
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}

    async def call() -> tuple[int, dict[str, Any]]:
        async with aiohttp.ClientSession() as session, session.post(
                f"{cluster.server.url}/apis/authentication.k8s.io/v1/selfsubjectreviews", json=body, ssl=ctx,
                headers=headers) as resp:
            return resp.status, await resp.json()

    return asyncio.run(call())


def test_front_proxy_requests_authenticate_by_request_headers(cluster: ServerThread) -> None:
    headers = [("X-Remote-User", "proxied"), ("X-Remote-Group", "g1"), ("X-Remote-Group", "g2"),
               ("X-Remote-Uid", "1234"), ("X-Remote-Extra-Scopes", "a"), ("X-Remote-Extra-Scopes", "b"),
               ("X-Remote-Extra-Example.com%2fteam", "x")]
    code, body = _whoami(cluster, "front-proxy-client.crt", "front-proxy-client.key", headers)
    assert code == 201
    assert body["status"]["userInfo"] == {
        "username": "proxied", "uid": "1234", "groups": ["g1", "g2", "system:authenticated"],
        "extra": {"scopes": ["a", "b"], "example.com/team": ["x"]}}

    code, body = _whoami(cluster, "front-proxy-client.crt", "front-proxy-client.key", {})
    assert code == 401 and body["reason"] == "Unauthorized"

    # A cluster-CA client certificate is its own user; X-Remote-* from it are not trusted.
    code, body = _whoami(cluster, "admin.crt", "admin.key", {"X-Remote-User": "someone-else"})
    assert code == 201 and body["status"]["userInfo"]["username"] == "kubernetes-admin"


def test_policy_documents_are_validated() -> None:
    with pytest.raises(PolicyError, match=r"rules\[1\]: unknown key 'verbz'"):
        AuthzPolicy.from_config([{"user": "a"}, {"verbz": "get"}])
    with pytest.raises(PolicyError, match=r"rules\[0\]\.effect"):
        AuthzPolicy.from_config({"rules": [{"effect": "maybe"}]})
    with pytest.raises(PolicyError, match="nonResourceURL cannot be combined"):
        AuthzPolicy.from_config([{"nonResourceURL": "/metrics", "resource": "pods"}])
    with pytest.raises(PolicyError, match="default"):
        AuthzPolicy.from_config({"default": "sometimes"})
    policy = AuthzPolicy.from_config({"default": "deny", "rules": [{"effect": "allow", "resource": "pods/log"}]})
    assert policy.rules[0].to_dict() == {"effect": "allow", "resources": ["pods"], "subresources": ["log"]}
