"""ServiceAccount tokens of the emulated kube-apiserver: TokenRequest, TokenReview, bearer
authentication, revocation and legacy Secret tokens, through the real kubectl and kubernetes client."""

from __future__ import annotations

import base64
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from kubernetes import client, config

from sim.apiserver.testing import ServerThread

ISSUER = "https://kubernetes.default.svc.cluster.local"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    with ServerThread(tmp_path_factory.mktemp("auth-tokens")) as srv:
        yield srv


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    cache = Path(kubeconfig).parent / "kubectl-cache"
    return subprocess.run(["kubectl", f"--kubeconfig={kubeconfig}", f"--cache-dir={cache}", *args],
                          input=stdin, capture_output=True, text=True, timeout=60)


def admin_api(cluster: ServerThread) -> client.ApiClient:
    return config.new_client_from_config(str(cluster.kubeconfig))


def bearer_api(cluster: ServerThread, token: str) -> client.ApiClient:
    cfg = client.Configuration()
    cfg.host = cluster.server.url
    cfg.ssl_ca_cert = str(cluster.server.pki.path("ca.crt"))
    cfg.api_key = {"authorization": token}
    cfg.api_key_prefix = {"authorization": "Bearer"}
    return client.ApiClient(cfg)


def review(cluster: ServerThread, token: str, audiences: list[str] | None = None) -> Any:
    api = client.AuthenticationV1Api(admin_api(cluster))
    return api.create_token_review(
        client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token, audiences=audiences))).status


def create_sa(cluster: ServerThread, name: str, namespace: str = "default") -> client.V1ServiceAccount:
    core = client.CoreV1Api(admin_api(cluster))
    return core.create_namespaced_service_account(namespace, client.V1ServiceAccount(
        metadata=client.V1ObjectMeta(name=name)))


def b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_kubectl_create_token_mints_a_verifiable_es256_jwt(cluster: ServerThread) -> None:
    create_sa(cluster, "minted")
    out = kubectl(cluster.kubeconfig, "create", "token", "minted", "--audience=metrics", "--duration=20m")
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip()
    head, body, sig = token.split(".")
    header, claims = json.loads(b64url(head)), json.loads(b64url(body))
    assert header["alg"] == "ES256"

    # Verify the signature independently with the key the server publishes for OIDC discovery.
    core = admin_api(cluster)
    jwks = json.loads(kubectl(cluster.kubeconfig, "get", "--raw", "/openid/v1/jwks").stdout)
    key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    pub = ec.EllipticCurvePublicNumbers(int.from_bytes(b64url(key["x"]), "big"), int.from_bytes(b64url(key["y"]), "big"),
                                        ec.SECP256R1()).public_key()
    raw = b64url(sig)
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    pub.verify(der, f"{head}.{body}".encode(), ec.ECDSA(hashes.SHA256()))
    with pytest.raises(InvalidSignature):
        pub.verify(der, f"{head}.{body}x".encode(), ec.ECDSA(hashes.SHA256()))

    sa = client.CoreV1Api(core).read_namespaced_service_account("minted", "default")
    assert claims["iss"] == ISSUER
    assert claims["sub"] == "system:serviceaccount:default:minted"
    assert claims["aud"] == ["metrics"]
    assert claims["exp"] - claims["iat"] == 1200
    assert claims["kubernetes.io"]["namespace"] == "default"
    assert claims["kubernetes.io"]["serviceaccount"] == {"name": "minted", "uid": sa.metadata.uid}


def test_token_review_of_minted_and_garbage_tokens(cluster: ServerThread) -> None:
    sa = create_sa(cluster, "reviewed")
    core = client.CoreV1Api(admin_api(cluster))
    tr = core.create_namespaced_service_account_token(
        "reviewed", "default", client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(
            audiences=[], expiration_seconds=3600)))
    assert tr.spec.audiences == [ISSUER] and tr.spec.expiration_seconds == 3600
    assert tr.status.expiration_timestamp is not None

    status = review(cluster, tr.status.token)
    assert status.authenticated is True
    assert status.error is None
    assert status.audiences == [ISSUER]
    assert status.user.username == "system:serviceaccount:default:reviewed"
    assert status.user.uid == sa.metadata.uid
    assert status.user.groups == ["system:serviceaccounts", "system:serviceaccounts:default", "system:authenticated"]
    assert status.user.extra["authentication.kubernetes.io/credential-id"][0].startswith("JTI=")

    bad = review(cluster, "garbage")
    assert not bad.authenticated
    assert bad.user.username is None
    assert "invalid bearer token" in bad.error

    tampered = tr.status.token[:-4] + ("AAAA" if not tr.status.token.endswith("AAAA") else "BBBB")
    assert not review(cluster, tampered).authenticated


def test_audiences_are_enforced(cluster: ServerThread) -> None:
    create_sa(cluster, "audience")
    token = kubectl(cluster.kubeconfig, "create", "token", "audience", "--audience=vault").stdout.strip()
    refused = review(cluster, token)
    assert not refused.authenticated
    assert refused.error == f'token audiences ["vault"] is invalid for the target audiences ["{ISSUER}"]'
    accepted = review(cluster, token, audiences=["other", "vault"])
    assert accepted.authenticated and accepted.audiences == ["vault"]
    # Not an API audience: the API server itself does not accept it.
    with pytest.raises(client.ApiException) as err:
        client.CoreV1Api(bearer_api(cluster, token)).list_namespaced_pod("default")
    assert err.value.status == 401


def test_token_request_validation(cluster: ServerThread) -> None:
    core = client.CoreV1Api(admin_api(cluster))
    with pytest.raises(client.ApiException) as err:
        core.create_namespaced_service_account_token("default", "default", client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=60)))
    assert err.value.status == 422
    body = json.loads(err.value.body)
    assert body["reason"] == "Invalid"
    assert "spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes" in body["message"]

    with pytest.raises(client.ApiException) as err:
        core.create_namespaced_service_account_token("nobody", "default", client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[])))
    assert err.value.status == 404
    assert json.loads(err.value.body)["message"] == 'serviceaccounts "nobody" not found'


def test_bearer_token_authenticates_until_its_service_account_is_deleted(cluster: ServerThread, tmp_path: Path) -> None:
    create_sa(cluster, "short-lived")
    token = kubectl(cluster.kubeconfig, "create", "token", "short-lived").stdout.strip()
    kc = tmp_path / "token.kubeconfig"
    cfg = yaml.safe_load(cluster.kubeconfig.read_text())
    cfg["users"] = [{"name": "sa", "user": {"token": token}}]
    cfg["contexts"][0]["context"]["user"] = "sa"
    kc.write_text(yaml.safe_dump(cfg))

    out = kubectl(kc, "auth", "whoami", "-o", "json")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)["status"]["userInfo"]
    assert info["username"] == "system:serviceaccount:default:short-lived"
    assert "system:authenticated" in info["groups"]

    assert kubectl(cluster.kubeconfig, "delete", "serviceaccount", "short-lived").returncode == 0
    out = kubectl(kc, "get", "pods")
    assert out.returncode != 0
    assert "error: You must be logged in to the server" in out.stderr


def test_expired_token_is_refused(cluster: ServerThread) -> None:
    issuer = cluster.server.issuer
    sa = client.CoreV1Api(admin_api(cluster)).read_namespaced_service_account("default", "default")

    def mint_in_the_past() -> str:
        real = issuer.clock
        issuer.clock = lambda: real() - 7200
        try:
            return issuer.issue("default", "default", expiration_seconds=3600, uid=sa.metadata.uid)
        finally:
            issuer.clock = real

    token = cluster.call(mint_in_the_past)
    status = review(cluster, token)
    assert not status.authenticated
    assert "expired" in status.error
    with pytest.raises(client.ApiException) as err:
        client.CoreV1Api(bearer_api(cluster, token)).list_namespaced_pod("default")
    assert err.value.status == 401


def test_pod_bound_token_carries_pod_and_dies_with_it(cluster: ServerThread) -> None:
    core = client.CoreV1Api(admin_api(cluster))
    pod = core.create_namespaced_pod("default", client.V1Pod(
        metadata=client.V1ObjectMeta(name="bound"),
        spec=client.V1PodSpec(containers=[client.V1Container(name="c", image="busybox")])))
    out = kubectl(cluster.kubeconfig, "create", "token", "default", "--bound-object-kind=Pod",
                  "--bound-object-name=bound")
    assert out.returncode == 0, out.stderr
    status = review(cluster, out.stdout.strip())
    assert status.authenticated
    assert status.user.extra["authentication.kubernetes.io/pod-name"] == ["bound"]
    assert status.user.extra["authentication.kubernetes.io/pod-uid"] == [pod.metadata.uid]

    core.delete_namespaced_pod("bound", "default", grace_period_seconds=0)
    assert not review(cluster, out.stdout.strip()).authenticated


def test_legacy_secret_token_is_filled_and_revoked_with_the_secret(cluster: ServerThread) -> None:
    create_sa(cluster, "legacy")
    core = client.CoreV1Api(admin_api(cluster))
    core.create_namespaced_secret("default", client.V1Secret(
        metadata=client.V1ObjectMeta(name="legacy-token", annotations={"kubernetes.io/service-account.name": "legacy"}),
        type="kubernetes.io/service-account-token"))
    deadline = time.monotonic() + 30
    secret = core.read_namespaced_secret("legacy-token", "default")
    while not (secret.data or {}).get("token") and time.monotonic() < deadline:
        time.sleep(0.05)
        secret = core.read_namespaced_secret("legacy-token", "default")
    token = base64.b64decode(secret.data["token"]).decode()
    assert base64.b64decode(secret.data["ca.crt"]) == cluster.server.pki.ca.cert_pem
    assert base64.b64decode(secret.data["namespace"]) == b"default"
    claims = json.loads(b64url(token.split(".")[1]))
    assert claims["iss"] == "kubernetes/serviceaccount"
    assert claims["kubernetes.io/serviceaccount/secret.name"] == "legacy-token"

    status = review(cluster, token)
    assert status.authenticated and status.user.username == "system:serviceaccount:default:legacy"
    pods = client.CoreV1Api(bearer_api(cluster, token)).list_namespaced_pod("default")
    assert pods.kind == "PodList"

    core.delete_namespaced_secret("legacy-token", "default")
    assert not review(cluster, token).authenticated
