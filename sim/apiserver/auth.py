"""Authentication and authorization of the emulated kube-apiserver.

Authentication (first success wins, like kube-apiserver's union authenticator; any credential
that was presented but failed, with nothing else succeeding, gives 401 — no anonymous fallback):

1. request header (front proxy): a client certificate issued by the front-proxy CA with a CN in
   the allowed names (``front-proxy-client``) plus ``X-Remote-User`` → that user, groups from
   repeated ``X-Remote-Group``, extra from ``X-Remote-Extra-<percent-encoded key>``, uid from
   ``X-Remote-Uid``;
2. client certificate issued by the cluster CA → user = CN, groups = O, extra
   ``authentication.kubernetes.io/credential-id`` = ``X509SHA256=<fingerprint>``;
3. ``Authorization: Bearer <token>`` → a ServiceAccount JWT minted by this emulator (bound or legacy
   Secret-based, see tokens.py) whose ServiceAccount still exists;
4. nothing presented → ``system:anonymous`` / ``system:unauthenticated`` when anonymous access is
   enabled, else unauthenticated (401). Anonymous is off by default.

Every authenticated user gets the group ``system:authenticated``.

Authorization policy (RBAC is not emulated; this small policy is what SubjectAccessReview answers
and what the emulator enforces on every request):

* members of ``system:masters`` are always allowed (kube-apiserver's privileged-group bypass);
* otherwise the rules are tried in order and the first matching rule decides;
* no rule matches → the default effect decides (``allow`` unless configured otherwise).

A rule is a mapping; every key it gives must match, absent keys match anything, list values
mean "any of", ``"*"`` matches everything::

    {"effect": "deny",                       # or "allow"; default "deny"
     "user": "system:serviceaccount:kube-system:horizontal-pod-autoscaler",   # or "users"
     "group": "system:serviceaccounts",      # or "groups"
     "verb": ["list", "watch"],              # or "verbs"
     "apiGroup": "metrics.k8s.io",           # or "apiGroups"; "" is the core group
     "resource": "pods",                     # or "resources"; "pods/log" sets the subresource too
     "subresource": "status",                # or "subresources"; "" means none
     "namespace": "default",                 # or "namespaces"; "" means cluster scope
     "name": "web",                          # or "names"
     "nonResourceURL": "/metrics",           # or "nonResourceURLs"; a trailing "*" is a prefix match
     "reason": "metrics are off limits"}     # optional text for the SubjectAccessReview reason

A rule naming any resource field only matches resource requests; a rule naming ``nonResourceURL``
only matches non-resource requests; a rule naming neither matches both. A policy document is
``{"default": "allow"|"deny", "rules": [...]}`` or just the list of rules.
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from cryptography import x509

from autoscaler.k8s import status as st
from autoscaler.k8s.certs import ClientCertError, common_name, organizations, verify_client_cert
from autoscaler.k8s.timefmt import format_time
from autoscaler.server.authn import Headers, RequestHeaderConfig, identity_from_headers, peer_certificate
from sim.apiserver.tokens import TokenError, TokenIssuer, validate_against_store

AUTHENTICATED = "system:authenticated"
UNAUTHENTICATED = "system:unauthenticated"
ANONYMOUS = "system:anonymous"
MASTERS = "system:masters"
CREDENTIAL_ID = "authentication.kubernetes.io/credential-id"

# kube-apiserver's requestheader defaults (what it publishes in extension-apiserver-authentication);
# the front-proxy CA itself is checked by _classify_cert, so the config carries only the header names.
REQUESTHEADER = RequestHeaderConfig(uid_headers=("X-Remote-Uid",))
ALLOWED_NAMES = ("front-proxy-client",)
AUTH_CONFIGMAP = ("kube-system", "extension-apiserver-authentication")


@dataclass(frozen=True)
class UserInfo:
    """An authenticated identity (k8s.io/apiserver ``user.Info``). ``extra`` is read-only."""

    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "groups", tuple(self.groups))
        object.__setattr__(self, "extra", MappingProxyType({k: tuple(v) for k, v in dict(self.extra).items()}))

    def with_authenticated(self) -> UserInfo:
        """Adds ``system:authenticated`` as kube-apiserver does for every non-anonymous user."""
        if self.username == ANONYMOUS or AUTHENTICATED in self.groups:
            return self
        return UserInfo(self.username, self.uid, (*self.groups, AUTHENTICATED), self.extra)

    def to_api(self) -> dict[str, Any]:
        """The ``UserInfo`` JSON of TokenReview / SelfSubjectReview (empty fields omitted)."""
        out: dict[str, Any] = {"username": self.username}
        if self.uid:
            out["uid"] = self.uid
        if self.groups:
            out["groups"] = list(self.groups)
        if self.extra:
            out["extra"] = {k: list(v) for k, v in self.extra.items()}
        return out


ANONYMOUS_USER = UserInfo(ANONYMOUS, groups=(UNAUTHENTICATED,))


@dataclass(frozen=True)
class RequestAttributes:
    """What is being asked (k8s.io/apiserver ``authorizer.Attributes``)."""

    user: UserInfo
    verb: str
    resource: str = ""
    subresource: str = ""
    api_group: str = ""
    api_version: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""
    resource_request: bool = True


# ---------------------------------------------------------------------------------------------------
# authentication
# ---------------------------------------------------------------------------------------------------


def _load_pem_certs(pem: bytes | None) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem) if pem else []


def _pem_of(pair: Any) -> bytes | None:
    if pair is None:
        return None
    return pair.cert_pem if hasattr(pair, "cert_pem") else bytes(pair)


class _CertVerifier:
    """Checks that a leaf certificate was issued by one of ``cas`` and is a valid client cert now.

    The TLS layer already verified the chain against whatever CAs its context trusts; this tells
    *which* CA issued it, so a front-proxy certificate is never taken as a cluster user and vice
    versa.
    """

    def __init__(self, cas: Sequence[x509.Certificate]):
        self.cas = list(cas)

    def verify(self, cert: x509.Certificate) -> None:
        verify_client_cert(cert, self.cas)


@dataclass(frozen=True)
class TokenResult:
    """Outcome of checking one bearer token (TokenReview needs the reason and the audiences)."""

    user: UserInfo | None
    audiences: tuple[str, ...] = ()
    error: str = ""


class Authenticator:
    """Authenticates emulator requests; see the module docstring for the order of methods.

    ``pki`` is the cluster PKI (``ca``, ``front_proxy_ca``; any may be missing), ``issuer`` the
    ServiceAccount token issuer (one with a fresh key is made when omitted).
    """

    def __init__(self, store: Any, pki: Any, *, issuer: TokenIssuer | None = None, anonymous: bool = False,
                 allowed_names: Sequence[str] = ALLOWED_NAMES):
        self.store = store
        self.pki = pki
        self.issuer = issuer or TokenIssuer()
        self.anonymous = anonymous
        self.allowed_names = tuple(allowed_names)
        self._client_ca = _CertVerifier(_load_pem_certs(_pem_of(getattr(pki, "ca", None))))
        self._front_proxy_ca = _CertVerifier(_load_pem_certs(_pem_of(getattr(pki, "front_proxy_ca", None))))
        self._cert_cache: OrderedDict[bytes, tuple[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    # -- certificates ------------------------------------------------------------------------------

    def _classify_cert(self, der: bytes) -> tuple[str, Any]:
        """("front-proxy", cn) / ("user", UserInfo) / ("error", message) for a DER client cert."""
        with self._lock:
            hit = self._cert_cache.get(der)
            if hit is not None:
                self._cert_cache.move_to_end(der)
        if hit is not None and hit[0] != "error":
            return hit
        result: tuple[str, Any]
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError:
            return ("error", "x509: malformed certificate")
        try:
            self._front_proxy_ca.verify(cert)
            result = ("front-proxy", common_name(cert))
        except ClientCertError:
            try:
                self._client_ca.verify(cert)
                fp = hashlib.sha256(der).hexdigest()
                result = ("user", UserInfo(common_name(cert), groups=organizations(cert),
                                           extra={CREDENTIAL_ID: (f"X509SHA256={fp}",)}))
            except ClientCertError as exc:
                result = ("error", str(exc))
        if result[0] != "error":
            with self._lock:
                self._cert_cache[der] = result
                while len(self._cert_cache) > 256:
                    self._cert_cache.popitem(last=False)
        return result

    def user_from_headers(self, headers: Any) -> UserInfo | None:
        """The requestheader identity (X-Remote-*) of a request from an authenticated front proxy."""
        user = identity_from_headers(REQUESTHEADER, Headers(headers.items()))
        if user is None:
            return None
        return UserInfo(user.name, user.uid, user.groups, user.extra)

    # -- the entry points -----------------------------------------------------------------------------

    def authenticate(self, request: Any) -> UserInfo | None:
        """The user behind an aiohttp request, or None (→ 401 Unauthorized)."""
        presented = False
        der = peer_certificate(request)
        if der:
            presented = True
            kind, value = self._classify_cert(der)
            if kind == "front-proxy":
                if not self.allowed_names or value in self.allowed_names:
                    user = self.user_from_headers(request.headers)
                    if user is not None:
                        return user.with_authenticated()
            elif kind == "user":
                return value.with_authenticated()
        auth = request.headers.get("Authorization", "")
        if auth:
            presented = True
            scheme, _, token = auth.strip().partition(" ")
            token = token.strip()
            if scheme.lower() == "bearer" and token:
                user = self.authenticate_token(token)
                if user is not None:
                    return user
        if not presented and self.anonymous:
            return ANONYMOUS_USER
        return None

    def authenticate_token(self, token: str) -> UserInfo | None:
        """The user a bearer token stands for (with ``system:authenticated``), or None."""
        return self.check_token(token).user

    def check_token(self, token: str, audiences: Sequence[str] = ()) -> TokenResult:
        """Verifies a token for ``audiences`` (default: the API audiences), saying why on failure."""
        wanted = tuple(audiences) or self.issuer.api_audiences
        try:
            claims = self.issuer.check(token)
            ident = self.issuer.identity(claims)
            token_aud = ident.audiences or self.issuer.api_audiences  # legacy tokens: API audiences
            common = tuple(a for a in wanted if a in token_aud)
            if not common:
                raise TokenError(f"token audiences {_go_quote_list(token_aud)} is invalid for the target "
                                 f"audiences {_go_quote_list(wanted)}")
            validate_against_store(self.store, token, ident)
        except TokenError as exc:
            return TokenResult(None, (), str(exc))
        user = UserInfo(ident.username, ident.uid, ident.groups, ident.extra).with_authenticated()
        return TokenResult(user, common)


def _go_quote_list(items: Iterable[str]) -> str:
    return "[" + " ".join(f'"{i}"' for i in items) + "]"


# ---------------------------------------------------------------------------------------------------
# authorization
# ---------------------------------------------------------------------------------------------------

_RULE_KEYS = {
    "user": "users", "group": "groups", "verb": "verbs", "apiGroup": "apiGroups", "resource": "resources",
    "subresource": "subresources", "namespace": "namespaces", "name": "names",
    "nonResourceURL": "nonResourceURLs",
}
_RESOURCE_KEYS = ("apiGroups", "resources", "subresources", "namespaces", "names")


class PolicyError(ValueError):
    """An authorization policy document that cannot be used; says which rule and key."""


@dataclass(frozen=True)
class Rule:
    """One policy rule; each field is a tuple of accepted values, or None for "anything"."""

    effect: str = "deny"
    users: tuple[str, ...] | None = None
    groups: tuple[str, ...] | None = None
    verbs: tuple[str, ...] | None = None
    apiGroups: tuple[str, ...] | None = None
    resources: tuple[str, ...] | None = None
    subresources: tuple[str, ...] | None = None
    namespaces: tuple[str, ...] | None = None
    names: tuple[str, ...] | None = None
    nonResourceURLs: tuple[str, ...] | None = None
    reason: str = ""

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], where: str = "rule") -> Rule:
        if not isinstance(raw, Mapping):
            raise PolicyError(f"{where}: expected a mapping, got {type(raw).__name__}")
        values: dict[str, Any] = {}
        for key, val in raw.items():
            if key in ("effect", "reason"):
                continue
            plural = _RULE_KEYS.get(key, key)
            if plural not in _RULE_KEYS.values():
                raise PolicyError(f"{where}: unknown key {key!r} (known: effect, reason, "
                                  f"{', '.join(sorted(_RULE_KEYS))} and their plurals)")
            if isinstance(val, str):
                items = (val,)
            elif isinstance(val, (list, tuple)) and all(isinstance(v, str) for v in val):
                items = tuple(val)
            else:
                raise PolicyError(f"{where}.{key}: expected a string or a list of strings")
            values[plural] = (*values.get(plural, ()), *items)
        # "pods/log" style resources carry their subresource
        if "resources" in values and any("/" in r for r in values["resources"]):
            if len(values["resources"]) != 1 or "subresources" in values:
                raise PolicyError(f"{where}.resource: a 'resource/subresource' value must be the only resource "
                                  "and cannot be combined with 'subresource'")
            res, sub = values["resources"][0].split("/", 1)
            values["resources"], values["subresources"] = (res,), (sub,)
        effect = raw.get("effect", "deny")
        if effect not in ("allow", "deny"):
            raise PolicyError(f"{where}.effect: must be \"allow\" or \"deny\", got {effect!r}")
        if "nonResourceURLs" in values and any(k in values for k in _RESOURCE_KEYS):
            raise PolicyError(f"{where}: nonResourceURL cannot be combined with resource fields")
        reason = raw.get("reason", "")
        if not isinstance(reason, str):
            raise PolicyError(f"{where}.reason: expected a string")
        return cls(effect=effect, reason=reason, **values)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"effect": self.effect}
        for plural in _RULE_KEYS.values():
            v = getattr(self, plural)
            if v is not None:
                out[plural] = list(v)
        if self.reason:
            out["reason"] = self.reason
        return out

    def matches(self, a: RequestAttributes) -> bool:
        if self.users is not None and not _any(self.users, a.user.username):
            return False
        if self.groups is not None and not any(_any(self.groups, g) for g in a.user.groups):
            return False
        if self.verbs is not None and not _any(self.verbs, a.verb):
            return False
        if self.nonResourceURLs is not None:
            return not a.resource_request and any(_url_match(p, a.path) for p in self.nonResourceURLs)
        if any(getattr(self, k) is not None for k in _RESOURCE_KEYS):
            if not a.resource_request:
                return False
            checks = ((self.apiGroups, a.api_group), (self.resources, a.resource),
                      (self.subresources, a.subresource), (self.namespaces, a.namespace), (self.names, a.name))
            return all(allowed is None or _any(allowed, value) for allowed, value in checks)
        return True


def _any(allowed: tuple[str, ...], value: str) -> bool:
    return "*" in allowed or value in allowed


def _url_match(pattern: str, path: str) -> bool:
    if pattern == "*":
        return True
    if pattern.endswith("*"):
        return path.startswith(pattern[:-1])
    return path == pattern


class AuthzPolicy:
    """Ordered rules plus a default effect; safe to change while the server runs."""

    def __init__(self, rules: Iterable[Mapping[str, Any] | Rule] = (), default: str = "allow"):
        if default not in ("allow", "deny"):
            raise PolicyError(f"default: must be \"allow\" or \"deny\", got {default!r}")
        self.default = default
        self._lock = threading.Lock()
        self._rules: list[Rule] = []
        for i, r in enumerate(rules):
            self._rules.append(r if isinstance(r, Rule) else Rule.from_dict(r, f"rules[{i}]"))

    @classmethod
    def from_config(cls, doc: Any) -> AuthzPolicy:
        """From a scenario's ``authorization`` section: a list of rules or ``{default, rules}``."""
        if doc is None:
            return cls()
        if isinstance(doc, list):
            return cls(doc)
        if not isinstance(doc, Mapping):
            raise PolicyError(f"authorization policy: expected a list of rules or a mapping, got {type(doc).__name__}")
        unknown = set(doc) - {"default", "rules"}
        if unknown:
            raise PolicyError(f"authorization policy: unknown keys {sorted(unknown)} (known: default, rules)")
        rules = doc.get("rules") or []
        if not isinstance(rules, list):
            raise PolicyError("authorization policy.rules: expected a list")
        return cls(rules, default=doc.get("default", "allow"))

    @property
    def rules(self) -> list[Rule]:
        with self._lock:
            return list(self._rules)

    def add(self, rule: Mapping[str, Any] | Rule, *, first: bool = False) -> Rule:
        """Adds a rule (default at the end; ``first`` puts it before all others) and returns it."""
        r = rule if isinstance(rule, Rule) else Rule.from_dict(rule)
        with self._lock:
            self._rules.insert(0, r) if first else self._rules.append(r)
        return r

    def deny(self, **fields: Any) -> Rule:
        """Shortcut: ``policy.deny(user="bob", verb="list", resource="pods")``."""
        return self.add({"effect": "deny", **fields}, first=True)

    def remove(self, rule: Rule) -> bool:
        with self._lock:
            try:
                self._rules.remove(rule)
                return True
            except ValueError:
                return False

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def decide(self, attrs: RequestAttributes) -> tuple[bool, str]:
        if MASTERS in attrs.user.groups:
            return True, ""
        with self._lock:
            rules = list(self._rules)
        for i, rule in enumerate(rules):
            if rule.matches(attrs):
                reason = rule.reason or f"{'allowed' if rule.effect == 'allow' else 'denied'} by policy rule {i}"
                return rule.effect == "allow", reason
        if self.default == "allow":
            return True, "allowed by the default policy"
        return False, ""


class Authorizer:
    """Answers "may this user do this?" from an :class:`AuthzPolicy` (allow-all when none given)."""

    def __init__(self, policy: AuthzPolicy | None = None):
        self.policy = policy or AuthzPolicy()

    def authorize(self, attrs: RequestAttributes) -> tuple[bool, str]:
        return self.policy.decide(attrs)


def forbidden_error(attrs: RequestAttributes, reason: str = "") -> st.ApiError:
    """The 403 Status kube-apiserver answers for a denied request (reason appended after ``: ``)."""
    user = attrs.user.username
    if attrs.resource_request:
        err = st.forbidden(user, attrs.verb, attrs.resource, attrs.api_group, attrs.name, attrs.namespace,
                           attrs.subresource)
    else:
        err = st.forbidden_path(user, attrs.verb, attrs.path)
    if reason:
        err.message = f"{err.message}: {reason}"
    return err


# ---------------------------------------------------------------------------------------------------
# TokenReview, SubjectAccessReview, SelfSubjectAccessReview, SelfSubjectReview
# ---------------------------------------------------------------------------------------------------


def _review_envelope(kind: str, api_version: str, body: Mapping[str, Any], spec: Any) -> dict[str, Any]:
    meta = dict(body.get("metadata") or {})
    if meta.get("creationTimestamp") is None:  # a zero time is omitted (omitzero, 1.35+)
        meta.pop("creationTimestamp", None)
    return {"kind": kind, "apiVersion": api_version, "metadata": meta, "spec": spec}


def _require_kind(body: Any, kind: str) -> Mapping[str, Any]:
    if not isinstance(body, Mapping):
        raise st.bad_request(f"the body of the request was not a {kind} object")
    got = body.get("kind")
    if got not in (None, kind):
        raise st.bad_request(f'{kind} expected, got kind "{got}"')
    spec = body.get("spec")
    if spec is not None and not isinstance(spec, Mapping):
        raise st.bad_request(f"{kind}.spec: expected an object")
    return body


def review_token(authenticator: Authenticator, body: dict[str, Any]) -> dict[str, Any]:
    """TokenReview create: ``status.authenticated``/``user``/``audiences`` or ``status.error``.

    As from kube-apiserver, a failed review has ``"user": {}`` and an ``error`` and no
    ``authenticated`` key (the field is ``omitempty``, so false is not written).
    """
    _require_kind(body, "TokenReview")
    spec = dict(body.get("spec") or {})
    token = spec.get("token", "")
    if not isinstance(token, str) or not token:
        raise st.bad_request("token is required for TokenReview in authentication")
    audiences = spec.get("audiences") or []
    if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
        raise st.bad_request("TokenReview.spec.audiences: expected a list of strings")
    result = authenticator.check_token(token, audiences)
    out = _review_envelope("TokenReview", "authentication.k8s.io/v1", body, spec)
    if result.user is None:
        out["status"] = {"user": {}, "error": result.error}
    else:
        out["status"] = {"authenticated": True, "user": result.user.to_api(), "audiences": list(result.audiences)}
    return out


def attributes_from_spec(user: UserInfo, spec: Mapping[str, Any]) -> RequestAttributes:
    """RequestAttributes for a (Self)SubjectAccessReview spec's resource/nonResource attributes."""
    ra = spec.get("resourceAttributes")
    if ra is not None:
        return RequestAttributes(
            user=user, verb=str(ra.get("verb", "")), resource=str(ra.get("resource", "")),
            subresource=str(ra.get("subresource", "")), api_group=str(ra.get("group", "")),
            api_version=str(ra.get("version", "")), namespace=str(ra.get("namespace", "")),
            name=str(ra.get("name", "")), resource_request=True)
    nra = spec.get("nonResourceAttributes") or {}
    return RequestAttributes(user=user, verb=str(nra.get("verb", "")), path=str(nra.get("path", "")),
                             resource_request=False)


def _attribute_causes(spec: Mapping[str, Any]) -> list[tuple[str, str]]:
    ra, nra = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    causes = []
    if ra is not None and nra is not None:
        causes.append(("spec.nonResourceAttributes",
                       "Invalid value: \"object\": cannot be specified in combination with resourceAttributes"))
    if ra is None and nra is None:
        causes.append(("spec.resourceAttributes",
                       "Invalid value: null: exactly one of nonResourceAttributes or resourceAttributes must be specified"))
    for key, val in (("resourceAttributes", ra), ("nonResourceAttributes", nra)):
        if val is not None and not isinstance(val, Mapping):
            causes.append((f"spec.{key}", "Invalid value: expected an object"))
    return causes


def _decision_status(allowed: bool, reason: str) -> dict[str, Any]:
    out: dict[str, Any] = {"allowed": allowed}
    if not allowed:
        out["denied"] = True
    if reason:
        out["reason"] = reason
    return out


def review_access(authorizer: Authorizer, body: dict[str, Any]) -> dict[str, Any]:
    """SubjectAccessReview create: ``status {allowed, denied?, reason}`` for the spec's subject."""
    _require_kind(body, "SubjectAccessReview")
    spec = dict(body.get("spec") or {})
    causes = _attribute_causes(spec)
    user_name, groups = spec.get("user", "") or "", spec.get("groups") or []
    if not user_name and not groups:
        causes.append(("spec.user", 'Invalid value: "": at least one of user or group must be specified'))
    if causes:
        raise st.invalid("SubjectAccessReview", "", "authorization.k8s.io", causes)
    extra = spec.get("extra") or {}
    if not isinstance(groups, list) or not isinstance(extra, Mapping):
        raise st.bad_request("SubjectAccessReview: spec.groups must be a list and spec.extra a map of lists")
    user = UserInfo(str(user_name), str(spec.get("uid", "") or ""), tuple(str(g) for g in groups),
                    {str(k): tuple(str(x) for x in v) if isinstance(v, list) else (str(v),) for k, v in extra.items()})
    allowed, reason = authorizer.authorize(attributes_from_spec(user, spec))
    out = _review_envelope("SubjectAccessReview", "authorization.k8s.io/v1", body, spec)
    out["status"] = _decision_status(allowed, reason)
    return out


def review_self_access(authorizer: Authorizer, user: UserInfo, body: dict[str, Any]) -> dict[str, Any]:
    """SelfSubjectAccessReview create (``kubectl auth can-i``): the caller asks about itself."""
    _require_kind(body, "SelfSubjectAccessReview")
    spec = dict(body.get("spec") or {})
    causes = _attribute_causes(spec)
    if causes:
        raise st.invalid("SelfSubjectAccessReview", "", "authorization.k8s.io", causes)
    allowed, reason = authorizer.authorize(attributes_from_spec(user, spec))
    out = _review_envelope("SelfSubjectAccessReview", "authorization.k8s.io/v1", body, spec)
    out["status"] = _decision_status(allowed, reason)
    return out


def review_self(user: UserInfo, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """SelfSubjectReview create (``kubectl auth whoami``)."""
    body = _require_kind(body or {}, "SelfSubjectReview")
    meta = dict(body.get("metadata") or {})
    meta["creationTimestamp"] = format_time(time.time())  # kube-apiserver stamps the review
    return {"kind": "SelfSubjectReview", "apiVersion": "authentication.k8s.io/v1", "metadata": meta,
            "status": {"userInfo": user.to_api()}}


def _go_json(items: list[str]) -> str:
    return json.dumps(items, separators=(",", ":"))  # Go's json.Marshal: no spaces


def publish_authentication_configmap(store: Any, pki: Any) -> None:
    """Writes kube-system/extension-apiserver-authentication as kube-apiserver publishes it."""
    ns, name = AUTH_CONFIGMAP
    rh = REQUESTHEADER
    data = {
        "client-ca-file": pki.ca.cert_pem.decode(),
        "requestheader-allowed-names": _go_json(list(ALLOWED_NAMES)),
        "requestheader-client-ca-file": pki.front_proxy_ca.cert_pem.decode(),
        "requestheader-extra-headers-prefix": _go_json(list(rh.extra_prefixes)),
        "requestheader-group-headers": _go_json(list(rh.group_headers)),
        "requestheader-uid-headers": _go_json(list(rh.uid_headers)),
        "requestheader-username-headers": _go_json(list(rh.username_headers)),
    }
    existing = store.try_get("configmaps", ns, name)
    if existing is None:
        obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}, "data": data}
        try:
            store.create("configmaps", obj)
            return
        except st.ApiError as exc:
            if exc.code != 409:
                raise
            existing = store.try_get("configmaps", ns, name)
    if existing is not None and existing.get("data") != data:
        updated = copy.deepcopy(existing)
        updated["data"] = data
        store.update("configmaps", updated)
