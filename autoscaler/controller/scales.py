"""The ``/scale`` subresource of any kind discovery knows: Deployments, StatefulSets, ReplicaSets,
custom resources.

Like the upstream controller, the scale target's group/kind is resolved to REST mappings through
discovery (cached, refreshed when a kind is not found so new CRDs are picked up), each mapping's
``/scale`` is tried in order, and updates retry on conflicts (client-go's RetryOnConflict: five
attempts, re-reading the scale in between).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from autoscaler.k8s.rest import KubeClient, KubeError, seg

REFRESH_MIN_INTERVAL = 30.0


class ScaleError(Exception):
    """The scale could not be read or written; the message is what the HPA's event and condition say."""


@dataclass(frozen=True, slots=True)
class Mapping:
    group: str
    version: str
    resource: str
    namespaced: bool

    def path(self, namespace: str, name: str) -> str:
        base = f"/api/{self.version}" if not self.group else f"/apis/{self.group}/{self.version}"
        ns = f"/namespaces/{seg(namespace)}" if self.namespaced else ""
        return f"{base}{ns}/{self.resource}/{seg(name)}/scale"


def split_api_version(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


class RESTMapper:
    """group/kind -> resources, from discovery documents (cached per group version)."""

    def __init__(self, client: KubeClient) -> None:
        self.client = client
        self._resources: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._versions: dict[str, list[str]] = {}
        self._refreshed = -REFRESH_MIN_INTERVAL

    async def _group_versions(self, group: str) -> list[str]:
        if group not in self._versions:
            if not group:
                self._versions[group] = ["v1"]
            else:
                try:
                    doc = await self.client.get(f"/apis/{seg(group)}")
                except KubeError as exc:
                    if exc.not_found:
                        self._versions[group] = []
                        return []
                    raise
                preferred = (doc.get("preferredVersion") or {}).get("version")
                versions = [v.get("version") for v in doc.get("versions") or [] if v.get("version")]
                self._versions[group] = ([preferred] if preferred else []) + [v for v in versions if v != preferred]
        return self._versions[group]

    async def _resource_list(self, group: str, version: str) -> list[dict[str, Any]]:
        key = (group, version)
        if key not in self._resources:
            path = f"/api/{version}" if not group else f"/apis/{seg(group)}/{seg(version)}"
            try:
                doc = await self.client.get(path)
            except KubeError as exc:
                if exc.not_found:
                    self._resources[key] = []
                    return []
                raise
            self._resources[key] = list(doc.get("resources") or [])
        return self._resources[key]

    async def mappings(self, group: str, version: str, kind: str) -> list[Mapping]:
        """Every mapping of (group, kind): the given version first, then the group's others."""
        found = await self._find(group, version, kind)
        if not found and time.monotonic() - self._refreshed >= REFRESH_MIN_INTERVAL:
            self._refreshed = time.monotonic()
            self._resources.clear()
            self._versions.clear()
            found = await self._find(group, version, kind)
        if not found:
            raise ScaleError(f'unable to determine resource for scale target reference: no matches for kind "{kind}" '
                             f'in group "{group}"')
        return found

    async def _find(self, group: str, version: str, kind: str) -> list[Mapping]:
        versions = [version] if version else []
        versions += [v for v in await self._group_versions(group) if v not in versions]
        out = []
        for v in versions:
            for r in await self._resource_list(group, v):
                name = str(r.get("name") or "")
                if "/" not in name and r.get("kind") == kind:
                    out.append(Mapping(group, v, name, bool(r.get("namespaced"))))
        return out

    async def resource_for(self, group: str, version: str, kind: str) -> Mapping:
        return (await self.mappings(group, version, kind))[0]


class ScaleClient:
    """GET and UPDATE ``/scale`` of a scale target reference."""

    def __init__(self, client: KubeClient, mapper: RESTMapper | None = None) -> None:
        self.client = client
        self.mapper = mapper or RESTMapper(client)

    async def get(self, namespace: str, ref: dict[str, Any]) -> tuple[dict[str, Any], Mapping]:
        group, version = split_api_version(str(ref.get("apiVersion") or ""))
        kind, name = str(ref.get("kind") or ""), str(ref.get("name") or "")
        try:
            maps = await self.mapper.mappings(group, version, kind)
        except KubeError as exc:
            raise ScaleError(f"unable to determine resource for scale target reference: {exc.message}") from exc
        first: KubeError | None = None
        for m in maps:
            try:
                return await self.client.get(m.path(namespace, name)), m
            except KubeError as exc:
                first = first or exc
        assert first is not None
        raise ScaleError(first.message)

    async def update(self, namespace: str, name: str, mapping: Mapping, scale: dict[str, Any], replicas: int
                     ) -> dict[str, Any]:
        """Set ``spec.replicas`` on the Scale as read (its resourceVersion included). A conflict is not
        retried: the count was decided from that Scale, and someone changed it since (a `kubectl
        scale`, another controller). Upstream records FailedRescale and decides afresh next sync."""
        body = {**scale, "spec": {**(scale.get("spec") or {}), "replicas": replicas}}
        try:
            return await self.client.put(mapping.path(namespace, name), body)
        except KubeError as exc:
            raise ScaleError(exc.message) from exc
