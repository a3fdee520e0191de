"""Discovery documents: legacy (/api, /apis, /api/v1, /apis/<g>/<v>) and aggregated
(apidiscovery.k8s.io v2 and v2beta1 ``APIGroupDiscoveryList``), built from the resource catalogue."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from . import resources
from .resources import Catalogue, Resource

AGGREGATED_AS = "APIGroupDiscoveryList"


def storage_version_hash(r: Resource) -> str:
    """An 8-byte base64 hash per group/version/kind, the shape kube-apiserver publishes."""
    digest = hashlib.sha256(f"{r.group}/{r.storage_version or r.versions[0]}/{r.kind}".encode()).digest()
    return base64.b64encode(digest[:8]).decode()


def _sub_kind(r: Resource, sub: str) -> tuple[str, str, str]:
    """(group, version, kind) a subresource answers with."""
    if sub == "scale":
        return "autoscaling", "v1", "Scale"
    if sub == "token":
        return "authentication.k8s.io", "v1", "TokenRequest"
    if sub == "eviction":
        return "policy", "v1", "Eviction"
    if sub == "binding":
        return "", "v1", "Binding"
    if sub in ("exec", "attach", "portforward"):
        return "", "v1", {"exec": "PodExecOptions", "attach": "PodAttachOptions",
                          "portforward": "PodPortForwardOptions"}[sub]
    if sub == "log":
        return "", "v1", "Pod"
    if sub == "proxy":
        return "", "", f"{r.kind}ProxyOptions"
    return r.group, "", r.kind


def api_resource_list(catalogue: Catalogue, group: str, version: str) -> dict[str, Any]:
    gv = f"{group}/{version}" if group else version
    out: list[dict[str, Any]] = []
    for r in catalogue.resources_in(group, version):
        entry: dict[str, Any] = {"name": r.plural, "singularName": r.singular, "namespaced": r.namespaced,
                                 "kind": r.kind, "verbs": list(r.verbs)}
        if r.short_names:
            entry["shortNames"] = list(r.short_names)
        if r.categories:
            entry["categories"] = list(r.categories)
        if r.key not in resources.VIRTUAL:
            entry["storageVersionHash"] = storage_version_hash(r)
        out.append(entry)
        for sub, verbs in r.subresources.items():
            g, v, kind = _sub_kind(r, sub)
            se: dict[str, Any] = {"name": f"{r.plural}/{sub}", "singularName": "" if r.custom else r.singular,
                                  "namespaced": r.namespaced, "kind": kind, "verbs": list(verbs)}
            if g != group or v:
                se["group"], se["version"] = g, v or version
            out.append(se)
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": out}


def api_versions(server_address: str) -> dict[str, Any]:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


def api_group(catalogue: Catalogue, group: str) -> dict[str, Any] | None:
    for g, versions in catalogue.groups():
        if g == group:
            vs = [{"groupVersion": f"{g}/{v}", "version": v} for v in versions]
            return {"kind": "APIGroup", "apiVersion": "v1", "name": g, "versions": vs, "preferredVersion": vs[0]}
    return None


def api_group_list(catalogue: Catalogue, extra_groups: list[dict[str, Any]] = ()  # type: ignore[assignment]
                   ) -> dict[str, Any]:
    groups = []
    for g, _ in catalogue.groups():
        doc = api_group(catalogue, g)
        assert doc is not None
        groups.append({k: doc[k] for k in ("name", "versions", "preferredVersion")})
    groups.extend(extra_groups)
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def _version_discovery(catalogue: Catalogue, group: str, version: str) -> dict[str, Any]:
    items = []
    for r in catalogue.resources_in(group, version):
        entry: dict[str, Any] = {
            "resource": r.plural,
            "responseKind": {"group": r.group, "version": version, "kind": r.kind},
            "scope": "Namespaced" if r.namespaced else "Cluster",
            "singularResource": r.singular,
            "verbs": list(r.verbs),
        }
        if r.short_names:
            entry["shortNames"] = list(r.short_names)
        if r.categories:
            entry["categories"] = list(r.categories)
        subs = []
        for sub, verbs in r.subresources.items():
            g, v, kind = _sub_kind(r, sub)
            subs.append({"subresource": sub, "responseKind": {"group": g, "version": v or version, "kind": kind},
                         "verbs": list(verbs)})
        if subs:
            entry["subresources"] = subs
        items.append(entry)
    return {"version": version, "resources": items, "freshness": "Current"}


def aggregated(catalogue: Catalogue, core: bool, version: str = "v2",
               extra_items: list[dict[str, Any]] = ()) -> dict[str, Any]:  # type: ignore[assignment]
    """The APIGroupDiscoveryList for /api (``core``) or /apis, in apidiscovery.k8s.io/``version``."""
    if core:
        items = [{"metadata": {"name": "", "creationTimestamp": None},
                  "versions": [_version_discovery(catalogue, "", "v1")]}]
    else:
        items = [{"metadata": {"name": g, "creationTimestamp": None},
                  "versions": [_version_discovery(catalogue, g, v) for v in versions]}
                 for g, versions in catalogue.groups()]
        items.extend(extra_items)
    return {"kind": "APIGroupDiscoveryList", "apiVersion": f"apidiscovery.k8s.io/{version}",
            "metadata": {}, "items": items}


def aggregated_content_type(version: str) -> str:
    return f"application/json;g=apidiscovery.k8s.io;v={version};as={AGGREGATED_AS}"
