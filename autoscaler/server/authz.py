"""Delegated authorization: system:masters and always-allowed paths first, then SubjectAccessReview.

Decisions are cached separately for allowed and denied answers with metrics-server's TTL flags
(``--authorization-webhook-cache-authorized-ttl`` / ``-unauthorized-ttl``, 10 s each). A failed
review call is an error (500), never an implicit allow.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson
import structlog

from autoscaler.k8s.status import ApiError, forbidden, forbidden_path, internal
from autoscaler.server.authn import _PathMatcher
from autoscaler.server.identity import MASTERS, UserInfo
from autoscaler.server.ttlcache import TTLCache

log = structlog.get_logger(__name__)

Poster = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Attributes:
    """What a request does, as k8s' RequestInfo describes it."""

    verb: str
    path: str
    resource_request: bool = False
    api_group: str = ""
    api_version: str = ""
    namespace: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""


def request_attributes(method: str, path: str, query: dict[str, str] | Any) -> Attributes:
    """RequestInfo for ``/apis/<group>/<version>/[namespaces/<ns>/]<resource>[/<name>[/<sub>]]``.

    Everything else (discovery documents, /metrics, /openapi, health) is a non-resource request
    whose verb is the lower-cased HTTP method.
    """
    verb = method.lower()
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 4 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
        ns = ""
        if rest[0] == "namespaces" and len(rest) >= 3:
            ns, rest = rest[1], rest[2:]
        elif rest[0] == "namespaces":
            # /apis/g/v/namespaces[/name] addresses namespace objects themselves.
            pass
        resource = rest[0]
        name = rest[1] if len(rest) > 1 else ""
        sub = rest[2] if len(rest) > 2 else ""
        if method in ("GET", "HEAD"):
            if name:
                verb = "get"
            elif str(query.get("watch", "")).lower() in ("true", "1"):
                verb = "watch"
            else:
                verb = "list"
        else:
            verb = {"POST": "create", "PUT": "update", "PATCH": "patch",
                    "DELETE": "delete" if name else "deletecollection"}.get(method, verb)
        return Attributes(verb, path, True, group, version, ns, resource, sub, name)
    if method == "HEAD":
        verb = "get"
    return Attributes(verb, path)


class Authorizer:
    def __init__(self, reviewer: Poster | None, *, always_allow_paths: Iterable[str] = ("/healthz", "/readyz", "/livez"),
                 always_allow_groups: Iterable[str] = (MASTERS,), authorized_ttl: float = 10.0,
                 unauthorized_ttl: float = 10.0):
        self._review = reviewer
        self._paths = _PathMatcher(list(always_allow_paths))
        self._groups = frozenset(always_allow_groups)
        self._ttl_ok = authorized_ttl
        self._ttl_denied = unauthorized_ttl
        self.cache: TTLCache[tuple[bool, str]] = TTLCache()

    def always_allowed(self, path: str) -> bool:
        return self._paths.match(path)

    async def authorize(self, user: UserInfo, attrs: Attributes) -> tuple[bool, str, str]:
        """(allowed, reason, source) where source is ``group``, ``path``, ``cache`` or ``review``."""
        if self._groups.intersection(user.groups):
            return True, "", "group"
        if not attrs.resource_request and self._paths.match(attrs.path):
            return True, "", "path"
        if self._review is None:
            return False, "no authorizer configured", "none"
        body = sar_body(user, attrs)
        key = orjson.dumps(body["spec"], option=orjson.OPT_SORT_KEYS)
        cached = self.cache.get(key)
        if cached is not None:
            return cached[0], cached[1], "cache"
        try:
            resp = await self._review("/apis/authorization.k8s.io/v1/subjectaccessreviews", body)
        except Exception as exc:
            log.warning("SubjectAccessReview failed", error=str(exc), user=user.name, path=attrs.path)
            raise internal(f"authorization webhook: {exc}") from exc
        status = resp.get("status") or {}
        allowed = bool(status.get("allowed")) and not status.get("denied")
        reason = str(status.get("reason") or "")
        if status.get("evaluationError") and not allowed:
            log.warning("SubjectAccessReview evaluation error", error=status.get("evaluationError"))
        self.cache.put(key, (allowed, reason), self._ttl_ok if allowed else self._ttl_denied)
        return allowed, reason, "review"


def sar_body(user: UserInfo, attrs: Attributes) -> dict[str, Any]:
    spec: dict[str, Any] = {"user": user.name, "groups": list(user.groups)}
    if user.extra:
        spec["extra"] = {k: list(v) for k, v in user.extra.items()}
    if user.uid:
        spec["uid"] = user.uid
    if attrs.resource_request:
        ra = {"verb": attrs.verb, "group": attrs.api_group, "version": attrs.api_version, "resource": attrs.resource}
        if attrs.namespace:
            ra["namespace"] = attrs.namespace
        if attrs.subresource:
            ra["subresource"] = attrs.subresource
        if attrs.name:
            ra["name"] = attrs.name
        spec["resourceAttributes"] = ra
    else:
        spec["nonResourceAttributes"] = {"path": attrs.path, "verb": attrs.verb}
    return {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}


def denial(user: UserInfo, attrs: Attributes, reason: str) -> ApiError:
    """The 403 Status kube-apiserver writes for a denied request."""
    if attrs.resource_request:
        err = forbidden(user.name, attrs.verb, attrs.resource, attrs.api_group, attrs.name, attrs.namespace,
                        attrs.subresource)
    else:
        err = forbidden_path(user.name, attrs.verb, attrs.path)
    if reason:
        err.message = f"{err.message}: {reason}"
    return err
