"""Discovery documents for metrics.k8s.io: legacy (APIGroupList, APIGroup, APIResourceList) and
aggregated (apidiscovery.k8s.io APIGroupDiscoveryList), as the aggregator and kubectl read them.

Every served version is listed, preferred (v1) first: kube-aggregator takes each APIService's
version from here, and kubectl 1.37 picks the first version it supports in this order."""

from __future__ import annotations

from typing import Any

from autoscaler.api.render import GROUP, PREFERRED_VERSION, VERSIONS, group_version

RESOURCES = (
    # (resource, kind, namespaced)
    ("nodes", "NodeMetrics", False),
    ("pods", "PodMetrics", True),
)
VERBS = ["get", "list"]


def _gv(version: str) -> dict[str, str]:
    return {"groupVersion": group_version(version), "version": version}


def api_group() -> dict[str, Any]:
    return {"kind": "APIGroup", "apiVersion": "v1", "name": GROUP, "versions": [_gv(v) for v in VERSIONS],
            "preferredVersion": _gv(PREFERRED_VERSION)}


def api_group_list() -> dict[str, Any]:
    group = api_group()
    del group["kind"], group["apiVersion"]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [group]}


def api_resource_list(version: str) -> dict[str, Any]:
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version(version),
        "resources": [
            {"name": r, "singularName": "", "namespaced": ns, "kind": kind, "verbs": list(VERBS)}
            for r, kind, ns in RESOURCES
        ],
    }


def aggregated_discovery(version: str = "v2") -> dict[str, Any]:
    """``APIGroupDiscoveryList`` (apidiscovery.k8s.io/v2 or v2beta1) describing the one group,
    its versions in preference order."""
    return {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": f"apidiscovery.k8s.io/{version}",
        "metadata": {},
        "items": [
            {
                "metadata": {"name": GROUP, "creationTimestamp": None},
                "versions": [
                    {
                        "version": v,
                        "resources": [
                            {
                                "resource": r,
                                "responseKind": {"group": "", "version": "", "kind": kind},
                                "scope": "Namespaced" if ns else "Cluster",
                                "singularResource": "",
                                "verbs": list(VERBS),
                            }
                            for r, kind, ns in RESOURCES
                        ],
                        "freshness": "Current",
                    }
                    for v in VERSIONS
                ],
            }
        ],
    }


def aggregated_content_type(version: str) -> str:
    return f"application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList"
