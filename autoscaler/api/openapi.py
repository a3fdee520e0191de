"""OpenAPI v2 and v3 documents for metrics.k8s.io/v1 and v1beta1.

The aggregator downloads ``/openapi/v2`` (one document, both versions) and ``/openapi/v3`` (an
index, then one document per group version) to merge into the cluster's spec (what ``kubectl
explain podmetrics`` reads). Model names follow the Go packages
(``io.k8s.metrics.pkg.apis.metrics.v1.*``, ``...v1beta1.*``). Documents are built once and served
as bytes with an ETag.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Any

import orjson

from autoscaler import __version__
from autoscaler.api.render import GROUP, VERSIONS

META = "io.k8s.apimachinery.pkg.apis.meta.v1"
QTY = "io.k8s.apimachinery.pkg.api.resource.Quantity"


def model_prefix(version: str) -> str:
    return f"io.k8s.metrics.pkg.apis.metrics.{version}"


def _tag(version: str) -> str:
    return "metrics" + version[0].upper() + version[1:]  # metricsV1, metricsV1beta1


def _schemas(ref: str, version: str) -> dict[str, Any]:
    def r(name: str) -> dict[str, Any]:
        return {"$ref": f"{ref}{name}"}

    M = model_prefix(version)
    usage = {"type": "object", "additionalProperties": r(QTY),
             "description": "The resource usage (cpu, memory working set and, where reported, swap), as quantities."}
    gvk = [{"group": GROUP, "version": version}]
    return {
        f"{M}.NodeMetrics": {
            "description": "NodeMetrics sets resource usage metrics of a node.",
            "type": "object",
            "required": ["timestamp", "window", "usage"],
            "properties": {
                "apiVersion": {"type": "string", "description": "APIVersion defines the versioned schema of this object."},
                "kind": {"type": "string", "description": "Kind is a string value representing the REST resource."},
                "metadata": {**r(f"{META}.ObjectMeta"), "description": "Standard object's metadata."},
                "timestamp": {**r(f"{META}.Time"), "description": "The following fields define time interval from which metrics were collected from the interval [Timestamp-Window, Timestamp]."},
                "window": {**r(f"{META}.Duration")},
                "usage": usage,
            },
            "x-kubernetes-group-version-kind": [{**gvk[0], "kind": "NodeMetrics"}],
        },
        f"{M}.NodeMetricsList": {
            "description": "NodeMetricsList is a list of NodeMetrics.",
            "type": "object",
            "required": ["items"],
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": {**r(f"{META}.ListMeta"), "description": "Standard list metadata."},
                "items": {"type": "array", "items": r(f"{M}.NodeMetrics"), "description": "List of node metrics."},
            },
            "x-kubernetes-group-version-kind": [{**gvk[0], "kind": "NodeMetricsList"}],
        },
        f"{M}.PodMetrics": {
            "description": "PodMetrics sets resource usage metrics of a pod.",
            "type": "object",
            "required": ["timestamp", "window", "containers"],
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": {**r(f"{META}.ObjectMeta"), "description": "Standard object's metadata."},
                "timestamp": {**r(f"{META}.Time"), "description": "The following fields define time interval from which metrics were collected from the interval [Timestamp-Window, Timestamp]."},
                "window": {**r(f"{META}.Duration")},
                "containers": {"type": "array", "items": r(f"{M}.ContainerMetrics"),
                               "description": "Metrics for all containers are collected within the same time window."},
            },
            "x-kubernetes-group-version-kind": [{**gvk[0], "kind": "PodMetrics"}],
        },
        f"{M}.PodMetricsList": {
            "description": "PodMetricsList is a list of PodMetrics.",
            "type": "object",
            "required": ["items"],
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": {**r(f"{META}.ListMeta"), "description": "Standard list metadata."},
                "items": {"type": "array", "items": r(f"{M}.PodMetrics"), "description": "List of pod metrics."},
            },
            "x-kubernetes-group-version-kind": [{**gvk[0], "kind": "PodMetricsList"}],
        },
        f"{M}.ContainerMetrics": {
            "description": "ContainerMetrics sets resource usage metrics of a container.",
            "type": "object",
            "required": ["name", "usage"],
            "properties": {"name": {"type": "string", "description": "Container name corresponding to the one from pod.spec.containers."},
                           "usage": usage},
        },
        f"{META}.ObjectMeta": {
            "description": "ObjectMeta is metadata that all persisted resources must have.",
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "namespace": {"type": "string"},
                "creationTimestamp": r(f"{META}.Time"),
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        f"{META}.ListMeta": {
            "description": "ListMeta describes metadata that synthetic resources must have.",
            "type": "object",
            "properties": {"resourceVersion": {"type": "string"}, "continue": {"type": "string"}},
        },
        f"{META}.Time": {"type": "string", "format": "date-time",
                         "description": "Time is a wrapper around time.Time which supports correct marshaling to YAML and JSON."},
        f"{META}.Duration": {"type": "string", "description": "Duration is a wrapper around time.Duration."},
        QTY: {"type": "string", "description": "Quantity is a fixed-point representation of a number."},
    }


def _paths(version: str) -> tuple[tuple[str, str, str, bool], ...]:
    """(path, kind, action, namespaced) of every operation of one version."""
    prefix = f"/apis/{GROUP}/{version}"
    return (
        (f"{prefix}/nodes", "NodeMetricsList", "list", False),
        (f"{prefix}/nodes/{{name}}", "NodeMetrics", "get", False),
        (f"{prefix}/pods", "PodMetricsList", "list", False),
        (f"{prefix}/namespaces/{{namespace}}/pods", "PodMetricsList", "list", True),
        (f"{prefix}/namespaces/{{namespace}}/pods/{{name}}", "PodMetrics", "get", True),
    )


def _op_id(version: str, action: str, kind: str, namespaced: bool, all_ns: bool) -> str:
    base = kind.removesuffix("List")
    tag = _tag(version)
    tag = tag[0].upper() + tag[1:]
    if action == "list" and all_ns and base == "PodMetrics":
        return f"list{tag}PodMetricsForAllNamespaces"
    scope = "Namespaced" if namespaced else ""
    return f"{'read' if action == 'get' else 'list'}{tag}{scope}{base}"


def _params(path: str, action: str, v3: bool) -> list[dict[str, Any]]:
    out = []
    for p in ("name", "namespace"):
        if "{" + p + "}" in path:
            d = {"name": p, "in": "path", "required": True, "description": f"{p} of the object"}
            out.append({**d, "schema": {"type": "string"}} if v3 else {**d, "type": "string"})
    if action == "list":
        for p, desc in (("labelSelector", "A selector to restrict the list of returned objects by their labels."),
                        ("fieldSelector", "A selector to restrict the list of returned objects by their fields.")):
            d = {"name": p, "in": "query", "description": desc}
            out.append({**d, "schema": {"type": "string"}} if v3 else {**d, "type": "string", "uniqueItems": True})
    return out


def _operation(version: str, path: str, kind: str, action: str, namespaced: bool, v3: bool) -> dict[str, Any]:
    M = model_prefix(version)
    op: dict[str, Any] = {"description": f"{action} {kind}"}
    if not v3:
        op.update(consumes=["*/*"], produces=["application/json"], schemes=["https"])
    op["tags"] = [_tag(version)]
    op["operationId"] = _op_id(version, action, kind, namespaced, path.endswith("/pods") and not namespaced)
    op["parameters"] = _params(path, action, v3=v3)
    if v3:
        ok = {"description": "OK",
              "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{M}.{kind}"}}}}
    else:
        ok = {"description": "OK", "schema": {"$ref": f"#/definitions/{M}.{kind}"}}
    op["responses"] = {"200": ok, "401": {"description": "Unauthorized"}}
    op["x-kubernetes-action"] = action
    op["x-kubernetes-group-version-kind"] = {"group": GROUP, "version": version, "kind": kind.removesuffix("List")}
    return op


@lru_cache(maxsize=1)
def openapi_v2() -> bytes:
    paths: dict[str, Any] = {}
    definitions: dict[str, Any] = {}
    for version in VERSIONS:
        for path, kind, action, namespaced in _paths(version):
            paths[path] = {"get": _operation(version, path, kind, action, namespaced, v3=False)}
        definitions.update(_schemas("#/definitions/", version))
    doc = {
        "swagger": "2.0",
        "info": {"title": "Kubernetes metrics-server", "version": __version__},
        "paths": paths,
        "definitions": definitions,
    }
    return orjson.dumps(doc)


@lru_cache(maxsize=len(VERSIONS))
def openapi_v3_group(version: str) -> bytes:
    """The ``/openapi/v3/apis/metrics.k8s.io/<version>`` document."""
    paths = {path: {"get": _operation(version, path, kind, action, namespaced, v3=True)}
             for path, kind, action, namespaced in _paths(version)}
    doc = {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes metrics-server", "version": __version__},
        "paths": paths,
        "components": {"schemas": _schemas("#/components/schemas/", version)},
    }
    return orjson.dumps(doc)


def etag(data: bytes) -> str:
    return '"' + hashlib.sha512(data).hexdigest()[:32].upper() + '"'


@lru_cache(maxsize=1)
def openapi_v3_index() -> bytes:
    paths = {}
    for version in VERSIONS:
        h = hashlib.sha512(openapi_v3_group(version)).hexdigest()[:32].upper()
        paths[f"apis/{GROUP}/{version}"] = {"serverRelativeURL": f"/openapi/v3/apis/{GROUP}/{version}?hash={h}"}
    return orjson.dumps({"paths": paths})
