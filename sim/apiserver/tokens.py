"""ServiceAccount tokens of the emulated kube-apiserver.

Tokens are compact JWS (JWT) signed ES256 by a key the emulator holds, shaped like the tokens a real
kube-apiserver mints:

* bound ("projected") tokens from ``TokenRequest`` (``POST .../serviceaccounts/<name>/token``):
  ``iss``, ``sub`` = ``system:serviceaccount:<ns>:<name>``, ``aud``, ``exp``, ``iat``, ``nbf``,
  ``jti`` and the private ``kubernetes.io`` claim (namespace, serviceaccount name/uid, optionally the
  bound pod/secret/node);
* legacy Secret-based tokens (type ``kubernetes.io/service-account-token``) with the old
  ``kubernetes.io/serviceaccount/*`` claims, issuer ``kubernetes/serviceaccount`` and no expiry;
  they stay valid only while their Secret exists and still holds the same token.

The header's ``kid`` is derived from the public key as kube-apiserver does it (SHA-256 of the PKIX
DER, base64url), so ``/openid/v1/jwks`` can publish it.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from autoscaler.k8s import status as st
from autoscaler.k8s.timefmt import format_time

_log = logging.getLogger(__name__)

DEFAULT_ISSUER = "https://kubernetes.default.svc.cluster.local"
LEGACY_ISSUER = "kubernetes/serviceaccount"
LEGACY_TOKEN_TYPE = "kubernetes.io/service-account-token"
SA_NAME_ANNOTATION = "kubernetes.io/service-account.name"
SA_UID_ANNOTATION = "kubernetes.io/service-account.uid"
MIN_EXPIRATION_SECONDS = 600
MAX_EXPIRATION_SECONDS = 1 << 32
BOUND_KINDS = ("Pod", "Secret", "Node")


class TokenError(Exception):
    """Why a token was rejected; the text ends up in TokenReview ``status.error``."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def service_account_username(namespace: str, name: str) -> str:
    return f"system:serviceaccount:{namespace}:{name}"


def service_account_groups(namespace: str) -> tuple[str, ...]:
    return ("system:serviceaccounts", f"system:serviceaccounts:{namespace}")


@dataclass(frozen=True)
class ServiceAccountIdentity:
    """What a verified token says about its bearer (before ``system:authenticated`` is added)."""

    namespace: str
    name: str
    uid: str
    audiences: tuple[str, ...]
    extra: dict[str, tuple[str, ...]] = field(default_factory=dict, hash=False)
    claims: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def username(self) -> str:
        return service_account_username(self.namespace, self.name)

    @property
    def groups(self) -> tuple[str, ...]:
        return service_account_groups(self.namespace)


class TokenIssuer:
    """Mints and verifies ES256 ServiceAccount JWTs with one signing key.

    ``key_pem`` is a PEM EC P-256 private key (a fresh one is generated when omitted);
    ``api_audiences`` are the audiences a token gets when a TokenRequest names none, and those a
    token must carry to authenticate API requests (kube-apiserver ``--api-audiences``, default the
    issuer). ``clock`` is injectable so expiry can be tested without sleeping.
    """

    def __init__(self, key_pem: bytes | None = None, *, issuer: str = DEFAULT_ISSUER,
                 api_audiences: Sequence[str] | None = None, clock: Callable[[], float] = time.time):
        if key_pem is None:
            self._key = ec.generate_private_key(ec.SECP256R1())
        else:
            key = serialization.load_pem_private_key(key_pem, password=None)
            if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
                raise ValueError("service account signing key must be an EC P-256 private key (ES256)")
            self._key = key
        self.issuer = issuer
        self.api_audiences: tuple[str, ...] = tuple(api_audiences or (issuer,))
        self.clock = clock
        der = self._key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.key_id = _b64url(hashlib.sha256(der).digest())
        self._verified: dict[str, dict[str, Any]] = {}  # token -> claims whose signature checked out

    # -- signing ------------------------------------------------------------------------------

    def key_pem(self) -> bytes:
        return self._key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption())

    def _sign(self, claims: dict[str, Any]) -> str:
        header = {"alg": "ES256", "kid": self.key_id}
        signing_input = f"{_b64url(orjson.dumps(header))}.{_b64url(orjson.dumps(claims))}"
        der = self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def issue(self, namespace: str, serviceaccount: str, *, audiences: Iterable[str] = (),
              expiration_seconds: int = 3600, uid: str = "",
              bound_object: dict[str, str] | None = None, node: dict[str, str] | None = None) -> str:
        """A bound token like TokenRequest returns. ``bound_object`` is ``{kind, name, uid}`` of a
        Pod, Secret or Node; ``node`` (``{name, uid}``) is recorded for pod-bound tokens."""
        now = int(self.clock())
        private: dict[str, Any] = {"namespace": namespace,
                                   "serviceaccount": {"name": serviceaccount, "uid": uid}}
        if bound_object:
            kind = bound_object.get("kind", "")
            ref = {"name": bound_object.get("name", ""), "uid": bound_object.get("uid", "")}
            private[kind.lower()] = ref
            if kind == "Pod" and node:
                private["node"] = {"name": node.get("name", ""), "uid": node.get("uid", "")}
        claims = {
            "aud": list(audiences) or list(self.api_audiences),
            "exp": now + int(expiration_seconds),
            "iat": now,
            "iss": self.issuer,
            "jti": str(uuid.uuid4()),
            "kubernetes.io": private,
            "nbf": now,
            "sub": service_account_username(namespace, serviceaccount),
        }
        return self._sign(claims)

    def issue_legacy(self, namespace: str, serviceaccount: str, uid: str, secret_name: str) -> str:
        """A non-expiring Secret-based token (the pre-1.24 token controller's format)."""
        return self._sign({
            "iss": LEGACY_ISSUER,
            "kubernetes.io/serviceaccount/namespace": namespace,
            "kubernetes.io/serviceaccount/secret.name": secret_name,
            "kubernetes.io/serviceaccount/service-account.name": serviceaccount,
            "kubernetes.io/serviceaccount/service-account.uid": uid,
            "sub": service_account_username(namespace, serviceaccount),
        })

    # -- verification ---------------------------------------------------------------------------

    def verify(self, token: str) -> dict[str, Any] | None:
        """The claims of a token signed by this key and not expired, else None."""
        try:
            return self.check(token)
        except TokenError:
            return None

    def check(self, token: str) -> dict[str, Any]:
        """Like :meth:`verify` but raises :class:`TokenError` saying why a token is refused.

        Signature checks are remembered per token (an ECDSA verify costs ~0.2 ms; clients reuse
        one token for thousands of requests); the time checks run on every call.
        """
        claims = self._verified.get(token)
        if claims is None:
            claims = self._check_signature(token)
            if len(self._verified) >= 4096:
                self._verified.pop(next(iter(self._verified)))
            self._verified[token] = claims
        now = self.clock()
        exp = claims.get("exp")
        if exp is not None and now >= float(exp):
            raise TokenError("invalid bearer token, service account token has expired")
        nbf = claims.get("nbf")
        if nbf is not None and now + 60 < float(nbf):  # one minute of leeway, like go-jose
            raise TokenError("invalid bearer token, service account token is not valid yet")
        return claims

    def _check_signature(self, token: str) -> dict[str, Any]:
        parts = token.split(".")
        if len(parts) != 3:
            raise TokenError("invalid bearer token")
        try:
            header = orjson.loads(_b64url_decode(parts[0]))
            claims = orjson.loads(_b64url_decode(parts[1]))
            sig = _b64url_decode(parts[2])
        except (ValueError, orjson.JSONDecodeError) as exc:
            raise TokenError("invalid bearer token") from exc
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise TokenError("invalid bearer token")
        if header.get("alg") != "ES256" or len(sig) != 64:
            raise TokenError("invalid bearer token, unexpected signing algorithm")
        der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
        try:
            self._key.public_key().verify(der, f"{parts[0]}.{parts[1]}".encode(), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature as exc:
            raise TokenError("invalid bearer token, signature does not match") from exc
        if claims.get("iss") not in (self.issuer, LEGACY_ISSUER):
            raise TokenError("invalid bearer token, token issuer is not trusted")
        for key in ("exp", "nbf"):
            if key in claims and not isinstance(claims[key], (int, float)):
                raise TokenError(f"invalid bearer token, claim {key!r} is not a number")
        return claims

    def identity(self, claims: dict[str, Any]) -> ServiceAccountIdentity:
        """Who the (already verified) claims identify, with kube-apiserver's user extra."""
        if claims.get("iss") == LEGACY_ISSUER:
            p = "kubernetes.io/serviceaccount/"
            return ServiceAccountIdentity(
                namespace=str(claims.get(p + "namespace", "")),
                name=str(claims.get(p + "service-account.name", "")),
                uid=str(claims.get(p + "service-account.uid", "")),
                audiences=(), claims=claims)
        private = claims.get("kubernetes.io") or {}
        sa = private.get("serviceaccount") or {}
        extra: dict[str, tuple[str, ...]] = {}
        if claims.get("jti"):
            extra["authentication.kubernetes.io/credential-id"] = (f"JTI={claims['jti']}",)
        for kind in ("pod", "node"):
            ref = private.get(kind)
            if ref:
                extra[f"authentication.kubernetes.io/{kind}-name"] = (str(ref.get("name", "")),)
                extra[f"authentication.kubernetes.io/{kind}-uid"] = (str(ref.get("uid", "")),)
        aud = claims.get("aud") or []
        return ServiceAccountIdentity(
            namespace=str(private.get("namespace", "")), name=str(sa.get("name", "")),
            uid=str(sa.get("uid", "")), audiences=tuple([aud] if isinstance(aud, str) else aud),
            extra=extra, claims=claims)

    # -- discovery documents ----------------------------------------------------------------------

    def jwks(self) -> dict[str, Any]:
        """``/openid/v1/jwks``: the public signing key."""
        nums = self._key.public_key().public_numbers()
        return {"keys": [{
            "use": "sig", "kty": "EC", "kid": self.key_id, "crv": "P-256", "alg": "ES256",
            "x": _b64url(nums.x.to_bytes(32, "big")), "y": _b64url(nums.y.to_bytes(32, "big")),
        }]}

    def openid_configuration(self) -> dict[str, Any]:
        """``/.well-known/openid-configuration`` as kube-apiserver serves it."""
        return {
            "issuer": self.issuer,
            "jwks_uri": f"{self.issuer}/openid/v1/jwks",
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
        }


# -- validation of a verified token against the cluster's current objects ----------------------------


def validate_against_store(store: Any, token: str, ident: ServiceAccountIdentity) -> None:
    """Refuse tokens whose ServiceAccount (or bound object / legacy Secret) is gone or was recreated.

    kube-apiserver does the same lookups, so deleting a ServiceAccount revokes its tokens at once.
    """
    ns = ident.namespace
    sa = store.try_get("serviceaccounts", ns, ident.name)
    if sa is None:
        raise TokenError(f"invalid bearer token, serviceaccounts \"{ident.name}\" not found")
    sa_uid = (sa.get("metadata") or {}).get("uid", "")
    if ident.uid and sa_uid and sa_uid != ident.uid:
        raise TokenError(f"invalid bearer token, service account UID ({sa_uid}) does not match claim ({ident.uid})")
    claims = ident.claims
    if claims.get("iss") == LEGACY_ISSUER:
        secret_name = str(claims.get("kubernetes.io/serviceaccount/secret.name", ""))
        secret = store.try_get("secrets", ns, secret_name)
        stored = base64.b64decode(((secret or {}).get("data") or {}).get("token", "") or b"")
        if secret is None or stored.decode(errors="replace") != token:
            raise TokenError(f"invalid bearer token, secrets \"{secret_name}\" not found or token does not match")
        return
    private = claims.get("kubernetes.io") or {}
    for kind, resource in (("pod", "pods"), ("secret", "secrets")):
        ref = private.get(kind)
        if not ref:
            continue
        obj = store.try_get(resource, ns, str(ref.get("name", "")))
        if obj is None:
            raise TokenError(f"invalid bearer token, {resource} \"{ref.get('name')}\" not found")
        if ref.get("uid") and (obj.get("metadata") or {}).get("uid") != ref.get("uid"):
            raise TokenError(f"invalid bearer token, the UID in the bound object reference ({ref.get('uid')}) "
                             f"does not match the UID in record. The object might have been deleted and then recreated")


# -- TokenRequest --------------------------------------------------------------------------------------


def request_token(store: Any, issuer: TokenIssuer, namespace: str, serviceaccount: str,
                  body: dict[str, Any]) -> dict[str, Any]:
    """``POST /api/v1/namespaces/<ns>/serviceaccounts/<name>/token``: the TokenRequest answer.

    Raises ApiError 404 for an unknown ServiceAccount / bound object, 422 for an invalid spec, 400
    for a body that is not a TokenRequest.
    """
    if not isinstance(body, dict):
        raise st.bad_request("the body of the request was not a TokenRequest object")
    kind = body.get("kind")
    if kind not in (None, "TokenRequest"):
        raise st.bad_request(f'TokenRequest expected, got kind "{kind}"')
    spec = body.get("spec") or {}
    if not isinstance(spec, dict):
        raise st.bad_request("spec: expected an object")
    sa = store.try_get("serviceaccounts", namespace, serviceaccount)
    if sa is None:
        raise st.not_found("serviceaccounts", serviceaccount)

    causes: list[tuple[str, str]] = []
    exp = spec.get("expirationSeconds", 3600)
    if exp is None:
        exp = 3600
    if not isinstance(exp, int) or isinstance(exp, bool):
        causes.append(("spec.expirationSeconds", f"Invalid value: {orjson.dumps(exp).decode()}: must be an integer"))
        exp = 3600
    elif exp < MIN_EXPIRATION_SECONDS:
        causes.append(("spec.expirationSeconds", f"Invalid value: {exp}: may not specify a duration less than 10 minutes"))
    elif exp > MAX_EXPIRATION_SECONDS:
        causes.append(("spec.expirationSeconds", f"Invalid value: {exp}: may not specify a duration larger than 2^32 seconds"))
    audiences = spec.get("audiences") or []
    if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
        causes.append(("spec.audiences", "Invalid value: must be a list of strings"))
        audiences = []
    bound = spec.get("boundObjectRef")
    bound_obj: dict[str, str] | None = None
    node: dict[str, str] | None = None
    if bound:
        bkind = bound.get("kind", "") if isinstance(bound, dict) else ""
        if bkind not in BOUND_KINDS:
            causes.append(("spec.boundObjectRef.kind",
                           f'Unsupported value: "{bkind}": supported values: "Node", "Pod", "Secret"'))
    if causes:
        raise st.invalid("TokenRequest", serviceaccount, "authentication.k8s.io", causes)

    if bound:
        bkind, bname, buid = bound["kind"], bound.get("name", ""), bound.get("uid", "")
        resource = {"Pod": "pods", "Secret": "secrets", "Node": "nodes"}[bkind]
        obj = store.try_get(resource, "" if bkind == "Node" else namespace, bname)
        if obj is None:
            raise st.not_found(resource, bname)
        actual_uid = (obj.get("metadata") or {}).get("uid", "")
        if buid and actual_uid and buid != actual_uid:
            raise st.ApiError(409, "Conflict", f'Operation cannot be fulfilled on {bkind} "{bname}": the UID in the '
                              f"bound object reference ({buid}) does not match the UID in record. The object might "
                              "have been deleted and then recreated", {"name": bname, "kind": bkind})
        bound_obj = {"kind": bkind, "name": bname, "uid": buid or actual_uid}
        if bkind == "Pod":
            node_name = (obj.get("spec") or {}).get("nodeName")
            if node_name:
                n = store.try_get("nodes", "", node_name)
                node = {"name": node_name, "uid": ((n or {}).get("metadata") or {}).get("uid", "")}

    sa_uid = (sa.get("metadata") or {}).get("uid", "")
    token = issuer.issue(namespace, serviceaccount, audiences=audiences, expiration_seconds=exp,
                         uid=sa_uid, bound_object=bound_obj, node=node)
    claims = issuer.verify(token) or {}
    out_spec: dict[str, Any] = {"audiences": list(claims.get("aud") or audiences), "expirationSeconds": exp}
    if bound:
        out_spec["boundObjectRef"] = {k: v for k, v in bound.items() if v}
    return {
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": serviceaccount, "namespace": namespace, "creationTimestamp": None},
        "spec": out_spec,
        "status": {"token": token, "expirationTimestamp": format_time(float(claims.get("exp", 0)))},
    }


# -- legacy Secret-based tokens ---------------------------------------------------------------------------


def fill_legacy_token_secret(store: Any, issuer: TokenIssuer, secret: dict[str, Any],
                             ca_pem: bytes = b"") -> dict[str, Any] | None:
    """The token controller's job for one Secret of type ``kubernetes.io/service-account-token``:
    returns the Secret with ``data.token``, ``data.namespace`` (and ``data["ca.crt"]``) filled, or
    None when nothing is to be done (other type, already filled, or its ServiceAccount is missing)."""
    if secret.get("type") != LEGACY_TOKEN_TYPE:
        return None
    meta = secret.get("metadata") or {}
    data = dict(secret.get("data") or {})
    if data.get("token"):
        return None
    ann = meta.get("annotations") or {}
    ns, sa_name = meta.get("namespace", ""), ann.get(SA_NAME_ANNOTATION, "")
    sa = store.try_get("serviceaccounts", ns, sa_name) if sa_name else None
    if sa is None:
        return None
    sa_uid = (sa.get("metadata") or {}).get("uid", "")
    token = issuer.issue_legacy(ns, sa_name, sa_uid, meta.get("name", ""))
    data["token"] = base64.b64encode(token.encode()).decode()
    data["namespace"] = base64.b64encode(ns.encode()).decode()
    if ca_pem:
        data["ca.crt"] = base64.b64encode(ca_pem).decode()
    out = dict(secret)
    out["metadata"] = {**meta, "annotations": {**ann, SA_UID_ANNOTATION: sa_uid}}
    out["data"] = data
    return out


class LegacyTokenController:
    """Fills Secrets of type ``kubernetes.io/service-account-token`` with a token, as
    kube-controller-manager's token controller does (started and stopped with the API server).

    Store subscribers run inside the write that triggered them, so the fill is deferred to the
    event loop: watchers see the Secret's ADDED event before the MODIFIED one that adds the token.
    """

    def __init__(self, store: Any, issuer: TokenIssuer, ca_pem: bytes = b""):
        self.store = store
        self.issuer = issuer
        self.ca_pem = ca_pem
        self._unsubscribe: list[Callable[[], None]] = []
        self._loop: Any = None

    async def start(self) -> None:
        import asyncio

        self._loop = asyncio.get_running_loop()
        self._unsubscribe.append(self.store.subscribe("secrets", self._on_secret))
        self._unsubscribe.append(self.store.subscribe("serviceaccounts", self._on_serviceaccount))
        items, _ = self.store.list("secrets")
        for secret in items:
            self._fill(secret)

    async def stop(self) -> None:
        for unsub in self._unsubscribe:
            unsub()
        self._unsubscribe.clear()

    def _on_secret(self, event: str, obj: dict[str, Any], old: dict[str, Any] | None = None) -> None:
        if event != "DELETED" and obj.get("type") == LEGACY_TOKEN_TYPE and self._loop is not None:
            self._loop.call_soon(self._fill_current, obj)

    def _on_serviceaccount(self, event: str, obj: dict[str, Any], old: dict[str, Any] | None = None) -> None:
        # A Secret created before its ServiceAccount is filled once the ServiceAccount appears.
        if event == "ADDED" and self._loop is not None:
            ns = (obj.get("metadata") or {}).get("namespace", "")
            self._loop.call_soon(self._fill_namespace, ns)

    def _fill_namespace(self, namespace: str) -> None:
        items, _ = self.store.list("secrets", namespace)
        for secret in items:
            self._fill(secret)

    def _fill_current(self, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        current = self.store.try_get("secrets", meta.get("namespace", ""), meta.get("name", ""))
        if current is not None:
            self._fill(current)

    def _fill(self, secret: dict[str, Any]) -> None:
        try:
            filled = fill_legacy_token_secret(self.store, self.issuer, secret, self.ca_pem)
            if filled is not None:
                meta = filled["metadata"]
                self.store.mutate("secrets", meta.get("namespace", ""), meta.get("name", ""),
                                  lambda o: o.update({"data": filled["data"], "metadata": {
                                      **o["metadata"], "annotations": meta.get("annotations", {})}}))
        except Exception:  # one bad Secret never stops the controller; the next event retries
            _log.exception("filling service account token secret failed")
