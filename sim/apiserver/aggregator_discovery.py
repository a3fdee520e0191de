"""Discovery and OpenAPI for aggregated groups: ``/apis`` entries and ``/apis/<group>`` from the
APIService objects, aggregated discovery v2 from the backends (falling back to the legacy
``APIResourceList``), OpenAPI documents fetched from the backends as ``system:aggregator``."""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Mapping
from typing import Any

import aiohttp
import orjson
import structlog
from multidict import CIMultiDict

from sim.apiserver.aggregator_proxy import identity_headers
from sim.apiserver.apiservices import AGGREGATOR_USER, OPENAPI_USER, EndpointError, is_available, is_local, meta_of
from sim.apiserver.auth import UserInfo

log = structlog.get_logger(__name__)

DISCOVERY_V2_ACCEPT = (
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
)


def version_key(v: str) -> tuple[int, int, int, str]:
    """Kubernetes version ordering: GA > beta > alpha, higher numbers first, then others by name."""
    m = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", v)
    if not m:
        return (3, 0, 0, v)
    major = int(m.group(1))
    stage = {None: 0, "beta": 1, "alpha": 2}[m.group(2)]
    minor = int(m.group(3) or 0)
    return (stage, -major, -minor, v)


class AggregatedDiscovery:
    """Discovery and OpenAPI of the aggregated groups (a part of :class:`sim.apiserver.aggregation.Aggregator`)."""

    def _sorted_remote(self) -> list[dict[str, Any]]:
        self._load()
        items = [o for o in self._apiservices.values() if not is_local(o)]

        def key(o: Mapping[str, Any]) -> tuple[int, str, tuple[int, int, int, str]]:
            spec = o.get("spec") or {}
            return (-int(spec.get("groupPriorityMinimum") or 0), spec.get("group", ""),
                    (-int(spec.get("versionPriority") or 0), *version_key(spec.get("version", ""))[:3]))

        return sorted(items, key=key)

    def _group_versions(self) -> dict[str, list[Mapping[str, Any]]]:
        out: dict[str, list[Mapping[str, Any]]] = {}
        for obj in self._sorted_remote():
            out.setdefault((obj.get("spec") or {}).get("group", ""), []).append(obj)
        return out

    async def discovery_groups(self) -> list[dict[str, Any]]:
        """APIGroup entries (for ``/apis``) of the groups served through APIServices with a service."""
        return [self._api_group(g, objs) for g, objs in self._group_versions().items()]

    def api_group(self, group: str) -> dict[str, Any] | None:
        """The ``/apis/<group>`` APIGroup document for an aggregated group, or None."""
        objs = self._group_versions().get(group)
        if not objs:
            return None
        return {"kind": "APIGroup", "apiVersion": "v1", **self._api_group(group, objs)}

    @staticmethod
    def _api_group(group: str, objs: list[Mapping[str, Any]]) -> dict[str, Any]:
        versions = [{"groupVersion": f"{group}/{(o.get('spec') or {}).get('version', '')}",
                     "version": (o.get("spec") or {}).get("version", "")} for o in objs]
        return {"name": group, "versions": versions, "preferredVersion": versions[0]}

    async def aggregated_discovery(self) -> list[dict[str, Any]]:
        """APIGroupDiscovery entries (apidiscovery.k8s.io/v2) for aggregated groups, as fetched from
        their backends; a version whose backend is unavailable is listed as ``Stale`` (with the
        resources last fetched, if any), as kube-aggregator's discovery manager does."""
        out = []
        for group, objs in self._group_versions().items():
            versions = []
            for o in objs:
                name = meta_of(o).get("name", "")
                version = (o.get("spec") or {}).get("version", "")
                entry = dict(self._discovery.get(name) or {"version": version, "resources": []})
                fresh = is_available(o) and name in self._discovery
                entry["freshness"] = "Current" if fresh else "Stale"  # kubectl: "stale GroupVersion discovery"
                versions.append(entry)
            if versions:
                out.append({"metadata": {"name": group, "creationTimestamp": None}, "versions": versions})
        return out

    async def _fetch(self, apiservice: Mapping[str, Any], path: str, accept: str, user: UserInfo,
                     ) -> tuple[int, str, bytes]:
        backend = self.resolve(apiservice)
        session = self._session(apiservice)
        headers = CIMultiDict(identity_headers(user))
        headers["Accept"] = accept
        async with session.get(backend.url + path, headers=headers, allow_redirects=False,
                               timeout=aiohttp.ClientTimeout(total=self.check_timeout),
                               server_hostname=backend.server_name) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), await resp.read()

    async def _refresh_discovery(self, apiservice: Mapping[str, Any]) -> None:
        """Fetches one group-version's resources: aggregated v2 ``/apis`` first, legacy as fallback."""
        spec = apiservice.get("spec") or {}
        group, version = spec.get("group", ""), spec.get("version", "")
        name = meta_of(apiservice).get("name", "")
        try:
            code, ctype, body = await self._fetch(apiservice, "/apis", DISCOVERY_V2_ACCEPT, AGGREGATOR_USER)
            if code == 200 and "apidiscovery.k8s.io" in ctype:
                for item in orjson.loads(body).get("items") or []:
                    if meta_of(item).get("name") != group:
                        continue
                    for v in item.get("versions") or []:
                        if v.get("version") == version:
                            self._discovery[name] = {k: val for k, val in v.items() if k != "freshness"}
                            return
            code, _, body = await self._fetch(apiservice, f"/apis/{group}/{version}", "application/json",
                                              AGGREGATOR_USER)
            if code == 200:
                self._discovery[name] = legacy_to_discovery(version, orjson.loads(body))
        except (TimeoutError, EndpointError, aiohttp.ClientError, OSError, ValueError) as exc:
            log.info("aggregated discovery fetch failed", apiservice=name, error=str(exc))

    # -- OpenAPI ----------------------------------------------------------------------------------------------

    async def _openapi_fetch(self, apiservice: Mapping[str, Any], path: str, ttl: float = 30.0) -> Any:
        key = (meta_of(apiservice).get("name", ""), path)
        hit = self._openapi.get(key)
        now = time.monotonic()
        if hit is not None and now - hit[0] < ttl:
            return hit[1]
        try:
            code, _, body = await self._fetch(apiservice, path, "application/json", OPENAPI_USER)
            doc = orjson.loads(body) if code == 200 else None  # 404 and friends: spec absent
        except (TimeoutError, EndpointError, aiohttp.ClientError, OSError, ValueError) as exc:
            log.info("aggregated openapi fetch failed", path=path, error=str(exc))
            doc = hit[1] if hit else None
        self._openapi[key] = (now, doc)
        return doc

    async def openapi_v2_documents(self) -> list[dict[str, Any]]:
        """The backends' ``/openapi/v2`` documents (to merge into the emulator's own)."""
        out, seen = [], set()
        for obj in self._sorted_remote():
            ref = orjson.dumps((obj.get("spec") or {}).get("service"))
            if ref in seen or not is_available(obj):
                continue
            seen.add(ref)
            doc = await self._openapi_fetch(obj, "/openapi/v2")
            if isinstance(doc, dict):
                out.append(doc)
        return out

    async def openapi_v3_paths(self) -> dict[str, dict[str, str]]:
        """``/openapi/v3`` index entries (``apis/<group>/<version>`` → serverRelativeURL) of
        aggregated group-versions whose backends publish them."""
        out: dict[str, dict[str, str]] = {}
        for obj in self._sorted_remote():
            if not is_available(obj):
                continue
            spec = obj.get("spec") or {}
            key = f"apis/{spec.get('group', '')}/{spec.get('version', '')}"
            index = await self._openapi_fetch(obj, "/openapi/v3")
            if isinstance(index, dict) and key in (index.get("paths") or {}):
                doc = await self._openapi_fetch(obj, "/" + "openapi/v3/" + key)
                if doc is not None:
                    digest = hashlib.sha512(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest().upper()
                    out[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={digest[:128]}"}
        return out

    async def openapi_v3(self, group: str, version: str) -> dict[str, Any] | None:
        """The backend's ``/openapi/v3/apis/<group>/<version>`` document, or None."""
        obj = self.apiservice_for(group, version)
        if obj is None or not is_available(obj):
            return None
        doc = await self._openapi_fetch(obj, f"/openapi/v3/apis/{group}/{version}")
        return doc if isinstance(doc, dict) else None


def legacy_to_discovery(version: str, resource_list: Mapping[str, Any]) -> dict[str, Any]:
    """An APIVersionDiscovery entry built from a legacy ``APIResourceList`` (kube-aggregator's fallback)."""
    top: dict[str, dict[str, Any]] = {}
    subs: list[tuple[str, str, Mapping[str, Any]]] = []
    for r in resource_list.get("resources") or []:
        name = r.get("name", "")
        if "/" in name:
            parent, sub = name.split("/", 1)
            subs.append((parent, sub, r))
            continue
        entry: dict[str, Any] = {
            "resource": name,
            "responseKind": {"group": r.get("group", ""), "version": r.get("version", ""), "kind": r.get("kind", "")},
            "scope": "Namespaced" if r.get("namespaced") else "Cluster",
            "singularResource": r.get("singularName", ""),
            "verbs": list(r.get("verbs") or []),
        }
        if r.get("shortNames"):
            entry["shortNames"] = list(r["shortNames"])
        if r.get("categories"):
            entry["categories"] = list(r["categories"])
        top[name] = entry
    for parent, sub, r in subs:
        if parent in top:
            top[parent].setdefault("subresources", []).append({
                "subresource": sub,
                "responseKind": {"group": r.get("group", ""), "version": r.get("version", ""), "kind": r.get("kind", "")},
                "verbs": list(r.get("verbs") or []),
            })
    return {"version": version, "resources": list(top.values())}
