"""Request attributes from a URL and method, computed the way kube-apiserver's RequestInfoFactory
does (verb, group, version, namespace, resource, name, subresource)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

_NAMESPACE_SUBRESOURCES = {"status", "finalize"}
_TRUE = {"1", "true", "True"}


@dataclass
class RequestInfo:
    path: str
    verb: str
    resource_request: bool = False
    api_prefix: str = ""  # "api" or "apis"
    group: str = ""
    version: str = ""
    namespace: str = ""
    resource: str = ""
    name: str = ""
    subresource: str = ""
    parts: tuple[str, ...] = ()
    legacy_watch: bool = False


def request_info(method: str, path: str, query: dict[str, str] | object) -> RequestInfo:
    """``query`` is a mapping of query parameters (``watch`` makes a GET a watch)."""
    get = getattr(query, "get", lambda _k, _d=None: None)
    method = method.upper()
    parts = tuple(unquote(p) for p in path.strip("/").split("/")) if path.strip("/") else ()
    nonresource_verb = method.lower()
    info = RequestInfo(path=path, verb=nonresource_verb, parts=parts)
    if len(parts) < 2 or parts[0] not in ("api", "apis"):
        return info
    info.api_prefix = parts[0]
    rest = list(parts[1:])
    if parts[0] == "apis":
        if len(rest) < 2:
            return info  # /apis/<group>: discovery
        info.group, info.version = rest[0], rest[1]
        rest = rest[2:]
    else:
        info.version = rest[0]
        rest = rest[1:]
    if not rest:
        return info  # group-version discovery
    info.resource_request = True
    if rest[0] == "watch":
        info.legacy_watch = True
        rest = rest[1:]
    if rest and rest[0] == "namespaces" and len(rest) > 1:
        info.namespace = rest[1]
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    if not rest:
        info.resource_request = False
        return info
    info.resource = rest[0]
    if len(rest) > 1:
        info.name = rest[1]
    if len(rest) > 2:
        info.subresource = rest[2]  # what follows (a proxy's path) is no part of the attributes
    watch = info.legacy_watch or (get("watch") in _TRUE)
    if method in ("GET", "HEAD"):
        if watch:
            info.verb = "watch"
        else:
            info.verb = "get" if info.name else "list"
    elif method == "POST":
        info.verb = "create"
    elif method == "PUT":
        info.verb = "update"
    elif method == "PATCH":
        info.verb = "patch"
    elif method == "DELETE":
        info.verb = "delete" if info.name else "deletecollection"
    else:
        info.verb = method.lower()
    if info.verb == "watch" and info.name:
        # A watch on one object is a watch with fieldSelector metadata.name=<name> (authorized as watch).
        pass
    return info
