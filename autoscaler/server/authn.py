"""Delegated authentication, in k8s.io/apiserver's order.

1. Request header (front proxy): the TLS client certificate is signed by the requestheader CA and
   its CN is allowed; only then are ``X-Remote-User``/``-Group``/``-Extra-*``/``-Uid`` believed.
2. Client certificate signed by the client CA: user = CN, groups = O.
3. ``Authorization: Bearer`` token, checked by a TokenReview (cached).
4. Otherwise anonymous, which is accepted only on the always-allowed (health) paths; anywhere
   else the request is 401.
A presented credential that fails (bad token) is a 401, never a fall-back to anonymous.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import structlog
from cryptography import x509

from autoscaler.k8s.certs import ClientCertError, common_name, organizations, verify_client_cert
from autoscaler.k8s.status import ApiError, unauthorized
from autoscaler.server.identity import ANONYMOUS_USER, UserInfo
from autoscaler.server.ttlcache import TTLCache

log = structlog.get_logger(__name__)

Poster = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class RequestHeaderConfig:
    """Which front proxy to trust and which headers carry the identity (all header names any case)."""

    ca_pem: bytes = b""
    allowed_names: tuple[str, ...] = ()
    username_headers: tuple[str, ...] = ("X-Remote-User",)
    group_headers: tuple[str, ...] = ("X-Remote-Group",)
    extra_prefixes: tuple[str, ...] = ("X-Remote-Extra-",)
    uid_headers: tuple[str, ...] = ()

    @property
    def enabled(self) -> bool:
        return bool(self.ca_pem.strip()) and bool(self.username_headers)


@dataclass
class _CABundle:
    pem: bytes = b""
    certs: list[x509.Certificate] = field(default_factory=list)

    @classmethod
    def parse(cls, pem: bytes, what: str) -> _CABundle:
        if not pem.strip():
            return cls()
        try:
            certs = x509.load_pem_x509_certificates(pem)
        except ValueError as exc:
            raise ValueError(f"{what}: not a PEM certificate bundle: {exc}") from exc
        return cls(pem, certs)


class Headers:
    """The header access the authenticator needs (aiohttp's CIMultiDict provides it)."""

    def __init__(self, items: Iterable[tuple[str, str]]):
        self._items = [(k.lower(), k, v) for k, v in items]

    def getall(self, name: str) -> list[str]:
        n = name.lower()
        return [v for k, _, v in self._items if k == n]

    def with_prefix(self, prefix: str) -> list[tuple[str, str]]:
        p = prefix.lower()
        return [(orig[len(prefix):], v) for k, orig, v in self._items if k.startswith(p)]


def identity_from_headers(rh: RequestHeaderConfig, headers: Headers) -> UserInfo | None:
    """The user a trusted front proxy names in its request headers (X-Remote-User and friends, as
    configured); None without a user name. As k8s.io/apiserver's requestheader authenticator: a
    name or uid is the first value of the first header that has a non-empty one, empty group
    values are dropped, extra keys are lower-cased, then percent-decoded."""
    name = _first_value(headers, rh.username_headers)
    if not name:
        return None
    groups = tuple(v for h in rh.group_headers for v in headers.getall(h) if v)
    extra: dict[str, list[str]] = {}
    for prefix in rh.extra_prefixes:
        for raw_key, v in headers.with_prefix(prefix):
            extra.setdefault(unquote(raw_key.lower()), []).append(v)
    uid = _first_value(headers, rh.uid_headers)
    return UserInfo(name, groups, {k: tuple(v) for k, v in extra.items()}, uid, method="requestheader")


def _first_value(headers: Headers, names: Iterable[str]) -> str:
    for h in names:
        values = headers.getall(h)
        if values and values[0]:
            return values[0]
    return ""


def peer_certificate(request: Any) -> bytes | None:
    """The DER client certificate of an aiohttp request over TLS, or None."""
    transport = getattr(request, "transport", None)
    sslobj = transport.get_extra_info("ssl_object") if transport is not None else None
    if sslobj is None:
        return None
    try:
        return sslobj.getpeercert(binary_form=True)
    except ValueError:  # the handshake has not finished (or the connection is closing)
        return None


class Authenticator:
    """Turns a request's certificate, headers and token into a :class:`UserInfo` or a 401."""

    def __init__(self, *, requestheader: RequestHeaderConfig | None = None, client_ca_pem: bytes = b"",
                 token_reviewer: Poster | None = None, token_cache_ttl: float = 10.0,
                 anonymous_paths: Iterable[str] = ("/healthz", "/readyz", "/livez")):
        self._lock = threading.Lock()
        self._rh = RequestHeaderConfig()
        self._rh_cas = _CABundle()
        self._client_cas = _CABundle()
        self._review = token_reviewer
        self._token_ttl = token_cache_ttl
        self._tokens: TTLCache[UserInfo | str] = TTLCache()
        self._certs: TTLCache[tuple[str, UserInfo | None]] = TTLCache(max_entries=1024)
        self._anon = _PathMatcher(anonymous_paths)
        self.update(requestheader or RequestHeaderConfig(), client_ca_pem)

    # -- configuration -------------------------------------------------------------------------

    def update(self, requestheader: RequestHeaderConfig, client_ca_pem: bytes) -> None:
        """Swap in new trust (e.g. after the authentication ConfigMap changed). Raises ValueError on bad PEM."""
        rh_cas = _CABundle.parse(requestheader.ca_pem, "requestheader-client-ca-file")
        client_cas = _CABundle.parse(client_ca_pem, "client-ca-file")
        with self._lock:
            self._rh, self._rh_cas, self._client_cas = requestheader, rh_cas, client_cas
            self._certs.clear()

    @property
    def requestheader(self) -> RequestHeaderConfig:
        return self._rh

    def client_ca_bundle(self) -> bytes:
        """All CAs a client certificate may chain to (for the TLS layer)."""
        return b"\n".join(p for p in (self._rh_cas.pem.strip(), self._client_cas.pem.strip()) if p) + b"\n"

    # -- authentication ------------------------------------------------------------------------

    async def authenticate(self, peer_cert_der: bytes | None, headers: Headers, path: str) -> UserInfo:
        user = self._from_certificate(peer_cert_der, headers)
        if user is None:
            user = await self._from_token(headers)
        if user is None:
            if self._anon.match(path):
                return ANONYMOUS_USER
            raise unauthorized()
        return user.with_authenticated_group()

    def _from_certificate(self, der: bytes | None, headers: Headers) -> UserInfo | None:
        if not der:
            return None
        rh, rh_cas, client_cas = self._rh, self._rh_cas, self._client_cas
        key = hashlib.sha256(der).hexdigest()
        cached = self._certs.get(key)
        if cached is None:
            cached = self._classify(der, rh, rh_cas, client_cas)
            self._certs.put(key, cached, 60.0)
        kind, x509_user = cached
        if kind == "proxy":
            user = identity_from_headers(rh, headers)
            if user is not None:
                return user
        if x509_user is not None:
            return x509_user
        # A presented certificate that yields no identity (a front-proxy certificate without a
        # user header, a CN not allowed, a CA rotated out) is an authentication error: 401.
        raise unauthorized()

    def _classify(self, der: bytes, rh: RequestHeaderConfig, rh_cas: _CABundle, client_cas: _CABundle
                  ) -> tuple[str, UserInfo | None]:
        """("proxy" or "user", x509 user or None) for a presented certificate."""
        try:
            leaf = x509.load_der_x509_certificate(der)
        except ValueError:
            return ("rejected", None)
        kind = "user"
        if rh.enabled:
            try:
                verify_client_cert(leaf, rh_cas.certs)
                cn = common_name(leaf)
                if not rh.allowed_names or cn in rh.allowed_names:
                    kind = "proxy"
                else:
                    log.warning("front-proxy certificate CN not allowed", cn=cn, allowed=list(rh.allowed_names))
            except ClientCertError:
                pass
        user = None
        if client_cas.certs:
            try:
                verify_client_cert(leaf, client_cas.certs)
                user = UserInfo(common_name(leaf), organizations(leaf), method="x509")
            except ClientCertError:
                pass
        return (kind, user)

    async def _from_token(self, headers: Headers) -> UserInfo | None:
        auth = next(iter(headers.getall("Authorization")), "")
        if not auth:
            return None
        scheme, _, token = auth.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        if self._review is None:
            raise unauthorized()
        key = hashlib.sha256(token.encode()).hexdigest()
        cached = self._tokens.get(key)
        if cached is None:
            cached = await self._token_review(token)
            self._tokens.put(key, cached, self._token_ttl)
        if isinstance(cached, str):
            raise unauthorized()
        return cached

    async def _token_review(self, token: str) -> UserInfo | str:
        assert self._review is not None
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}
        try:
            resp = await self._review("/apis/authentication.k8s.io/v1/tokenreviews", body)
        except Exception as exc:
            log.warning("TokenReview failed", error=str(exc))
            raise ApiError(401, "Unauthorized", "Unauthorized") from exc
        status = resp.get("status") or {}
        if not status.get("authenticated"):
            return status.get("error") or "invalid bearer token"
        u = status.get("user") or {}
        extra = {k: tuple(v or ()) for k, v in (u.get("extra") or {}).items()}
        return UserInfo(u.get("username", ""), tuple(u.get("groups") or ()), extra, u.get("uid", ""), method="token")


class _PathMatcher:
    """k8s' path rules: exact paths, or a prefix when the rule ends in ``*``."""

    def __init__(self, rules: Iterable[str]):
        self.exact = {r for r in rules if r and not r.endswith("*")}
        self.prefixes = tuple(r[:-1] for r in rules if r.endswith("*"))

    def match(self, path: str) -> bool:
        return path in self.exact or (bool(self.prefixes) and path.startswith(self.prefixes))


def parse_string_list(value: Any) -> tuple[str, ...]:
    """ConfigMap list values are JSON-encoded string arrays (``'["X-Remote-User"]'``)."""
    import json

    if value is None or value == "":
        return ()
    if isinstance(value, list):
        return tuple(str(v) for v in value)
    try:
        parsed = json.loads(value)
    except (TypeError, ValueError):
        return tuple(s.strip() for s in str(value).split(",") if s.strip())
    if isinstance(parsed, list):
        return tuple(str(v) for v in parsed)
    return (str(parsed),)


def requestheader_from_configmap(data: Mapping[str, str]) -> RequestHeaderConfig:
    """The requestheader settings published in kube-system/extension-apiserver-authentication."""
    return RequestHeaderConfig(
        ca_pem=(data.get("requestheader-client-ca-file") or "").encode(),
        allowed_names=parse_string_list(data.get("requestheader-allowed-names")),
        username_headers=parse_string_list(data.get("requestheader-username-headers")),
        group_headers=parse_string_list(data.get("requestheader-group-headers")),
        extra_prefixes=parse_string_list(data.get("requestheader-extra-headers-prefix")),
        uid_headers=parse_string_list(data.get("requestheader-uid-headers")),
    )
