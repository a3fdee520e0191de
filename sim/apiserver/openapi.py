"""OpenAPI documents: enough of /openapi/v3 (and a JSON /openapi/v2) for kubectl.

kubectl reads OpenAPI to learn whether the server validates fields itself (the ``fieldValidation``
query parameter on PATCH operations, found by ``x-kubernetes-group-version-kind``) and whether
to build apply patches from schemas. The documents carry paths and operations for every served
resource; schemas are left out, so kubectl computes strategic merge patches from its compiled-in
types, as it does for any server without schemas.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from aiohttp import web

from autoscaler.k8s import status as st

from . import negotiate, openapi_pb, resources
from .resources import Catalogue, Resource

TITLE = "Kubernetes"
VERSION = "v1.37.2"
_WRITE_PARAMS = ("dryRun", "fieldManager", "fieldValidation")


def _param(name: str, where: str = "query") -> dict[str, Any]:
    return {"name": name, "in": where, "schema": {"type": "string", "uniqueItems": True}}


def _op(r: Resource, version: str, action: str, op_id: str, v3: bool, *, write: bool = False,
        patch: bool = False, sub: str = "") -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": op_id,
        "tags": [f"{r.group.replace('.', '') or 'core'}_{version}"],
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": "autoscaling", "version": "v1", "kind": "Scale"} if sub == "scale"
        else {"group": r.group, "version": version, "kind": r.kind},
    }
    params = [_param(p) for p in _WRITE_PARAMS] if write else []
    if patch:
        params.append(_param("force"))
    if v3:
        if params:
            op["parameters"] = params
        op["responses"] = {"200": {"description": "OK"}}
        if write:
            types = ["application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml"] \
                if patch else ["*/*"]
            op["requestBody"] = {"content": {t: {"schema": {"type": "object"}} for t in types}, "required": True}
    else:
        if params:
            op["parameters"] = [{"uniqueItems": True, "type": "string", "name": p["name"], "in": "query"}
                                for p in params]
        op["responses"] = {"200": {"description": "OK"}}
        if patch:
            op["consumes"] = ["application/json-patch+json", "application/merge-patch+json",
                              "application/strategic-merge-patch+json", "application/apply-patch+yaml"]
    return op


def _paths_for(r: Resource, version: str, v3: bool) -> dict[str, dict[str, Any]]:
    base = f"/apis/{r.group}/{version}" if r.group else f"/api/{version}"
    coll = f"{base}/namespaces/{{namespace}}/{r.plural}" if r.namespaced else f"{base}/{r.plural}"
    one = f"{coll}/{{name}}"
    kind = r.kind
    paths: dict[str, dict[str, Any]] = {}
    verbs = set(r.verbs)
    if r.key in resources.VIRTUAL:
        paths[coll] = {"post": _op(r, version, "post", f"create{kind}", v3, write=True)}
        return paths
    c: dict[str, Any] = {}
    if "list" in verbs:
        c["get"] = _op(r, version, "list", f"list{'Namespaced' if r.namespaced else ''}{kind}", v3)
    if "create" in verbs:
        c["post"] = _op(r, version, "post", f"create{'Namespaced' if r.namespaced else ''}{kind}", v3, write=True)
    if "deletecollection" in verbs:
        c["delete"] = _op(r, version, "deletecollection", f"deleteCollection{kind}", v3)
    paths[coll] = c
    o: dict[str, Any] = {"get": _op(r, version, "get", f"read{kind}", v3),
                         "put": _op(r, version, "put", f"replace{kind}", v3, write=True),
                         "patch": _op(r, version, "patch", f"patch{kind}", v3, write=True, patch=True),
                         "delete": _op(r, version, "delete", f"delete{kind}", v3)}
    paths[one] = o
    if r.namespaced:
        paths[f"{base}/{r.plural}"] = {"get": _op(r, version, "list", f"list{kind}ForAllNamespaces", v3)}
    for sub, sverbs in r.subresources.items():
        if sub == "proxy":
            paths.update(_proxy_paths(r, version, f"{one}/proxy", v3))
            continue
        p: dict[str, Any] = {}
        if "get" in sverbs:
            p["get"] = _op(r, version, "get", f"read{kind}{sub.title()}", v3, sub=sub)
        if "update" in sverbs:
            p["put"] = _op(r, version, "put", f"replace{kind}{sub.title()}", v3, write=True, sub=sub)
        if "patch" in sverbs:
            p["patch"] = _op(r, version, "patch", f"patch{kind}{sub.title()}", v3, write=True, patch=True, sub=sub)
        if "create" in sverbs:
            p["post"] = _op(r, version, "post", f"create{kind}{sub.title()}", v3, write=True, sub=sub)
        paths[f"{one}/{sub}"] = p
    return paths


def _proxy_paths(r: Resource, version: str, base: str, v3: bool) -> dict[str, dict[str, Any]]:
    """kube-apiserver's ``connect`` operations of a proxy subresource, with and without ``{path}``."""
    out: dict[str, dict[str, Any]] = {}
    for suffix, tail in (("", ""), ("/{path}", "WithPath")):
        ops = {}
        for method in ("get", "post", "put", "patch", "delete", "head", "options"):
            op = _op(r, version, "connect", f"connect{method.title()}{r.kind}Proxy{tail}", v3)
            op["x-kubernetes-group-version-kind"] = {"group": r.group, "version": version,
                                                     "kind": f"{r.kind}ProxyOptions"}
            ops[method] = op
        out[base + suffix] = ops
    return out


def v3_document(catalogue: Catalogue, group: str, version: str) -> dict[str, Any] | None:
    rs = catalogue.resources_in(group, version)
    if not rs:
        return None
    paths: dict[str, Any] = {}
    for r in rs:
        paths.update(_paths_for(r, version, True))
    return {"openapi": "3.0.0", "info": {"title": TITLE, "version": VERSION}, "paths": paths,
            "components": {"schemas": {}}}


def _gv_paths(catalogue: Catalogue) -> list[tuple[str, str, str]]:
    out = [("api/v1", "", "v1")]
    for g, versions in catalogue.groups():
        out.extend((f"apis/{g}/{v}", g, v) for v in versions)
    return out


def v2_document(catalogue: Catalogue) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for r in catalogue.all:
        for v in r.versions:
            paths.update(_paths_for(r, v, False))
    return {"swagger": "2.0", "info": {"title": TITLE, "version": VERSION}, "paths": paths, "definitions": {}}


class Documents:
    """One server's OpenAPI documents, cached until its catalogue changes (a CRD comes or goes)."""

    def __init__(self, catalogue: Catalogue):
        self.catalogue = catalogue
        self._generation = -1
        self._v3: dict[str, tuple[bytes, str]] = {}
        self._v2_pb: bytes | None = None

    def _fresh(self) -> None:
        if self._generation != self.catalogue.generation:
            self._generation = self.catalogue.generation
            self._v3.clear()
            self._v2_pb = None

    def v3_bytes(self, key: str, group: str, version: str) -> tuple[bytes, str] | None:
        """(document, hash) of one group version, or None when it is not served here."""
        self._fresh()
        hit = self._v3.get(key)
        if hit is None:
            doc = v3_document(self.catalogue, group, version)
            if doc is None:
                return None
            raw = orjson.dumps(doc)
            hit = (raw, hashlib.sha512(raw).hexdigest().upper()[:128])
            self._v3[key] = hit
        return hit

    def v2_protobuf(self) -> bytes:
        self._fresh()
        if self._v2_pb is None:
            self._v2_pb = openapi_pb.encode_document(v2_document(self.catalogue))
        return self._v2_pb


PB_TYPES = ("application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
            "application/com.github.proto-openapi.spec.v2.v1.0+protobuf")


async def serve_v2(request: web.Request, aggregator: Any, docs: Documents) -> web.Response:
    """JSON, or gnostic protobuf when asked for it (kubectl does)."""
    for m in negotiate.parse_accept(request.headers.get("Accept")):
        if m.type in PB_TYPES:
            resp = web.Response(body=docs.v2_protobuf())
            resp.headers["Content-Type"] = PB_TYPES[1]  # Go's mime parser rejects the '@' form
            return resp
        if m.type in ("application/json", "*/*", "application/*"):
            break
    else:
        raise st.not_acceptable("only the following media types are accepted: application/json, " + PB_TYPES[0])
    doc = v2_document(docs.catalogue)
    try:
        for extra in await aggregator.openapi_v2_documents():
            doc["paths"].update(extra.get("paths") or {})
            doc["definitions"].update(extra.get("definitions") or {})
    except Exception:  # a backend's document never breaks ours
        pass
    return web.Response(body=orjson.dumps(doc), content_type="application/json")


async def serve_v3(request: web.Request, path: str, aggregator: Any, docs: Documents) -> web.Response:
    rest = path[len("/openapi/v3"):].strip("/")
    if not rest:
        index: dict[str, Any] = {}
        for key, g, v in _gv_paths(docs.catalogue):
            hit = docs.v3_bytes(key, g, v)
            if hit is not None:
                index[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={hit[1]}"}
        try:
            index.update(await aggregator.openapi_v3_paths())
        except Exception:
            pass
        return web.Response(body=orjson.dumps({"paths": index}), content_type="application/json")
    parts = rest.split("/")
    if parts[0] == "api" and len(parts) == 2:
        group, version = "", parts[1]
    elif parts[0] == "apis" and len(parts) == 3:
        group, version = parts[1], parts[2]
    else:
        raise st.ApiError(404, "NotFound", "the server could not find the requested resource", {})
    hit = docs.v3_bytes(rest, group, version)
    if hit is None:
        doc = await aggregator.openapi_v3(group, version)
        if doc is None:
            raise st.ApiError(404, "NotFound", "the server could not find the requested resource", {})
        return web.Response(body=orjson.dumps(doc), content_type="application/json")
    resp = web.Response(body=hit[0], content_type="application/json")
    if request.query.get("hash") == hit[1]:
        resp.headers["Cache-Control"] = "public, immutable"
    resp.headers["Etag"] = f'"{hit[1]}"'
    return resp
