"""Field labels each resource supports in ``fieldSelector`` (kube-apiserver's per-type field sets).

A selector on any other field is answered ``400 BadRequest: field label not supported: <f>``,
as kube-apiserver does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from autoscaler.k8s.selectors import FieldSelector, SelectorError, parse_field_selector


def _get(obj: dict[str, Any], *path: str) -> Any:
    cur: Any = obj
    for p in path:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(p)
    return cur


def _s(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _meta(obj: dict[str, Any]) -> dict[str, str]:
    md = obj.get("metadata") or {}
    out = {"metadata.name": _s(md.get("name"))}
    if "namespace" in md:
        out["metadata.namespace"] = _s(md.get("namespace"))
    return out


def _pod(obj: dict[str, Any]) -> dict[str, str]:
    out = _meta(obj)
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    out.update({
        "spec.nodeName": _s(spec.get("nodeName")),
        "spec.restartPolicy": _s(spec.get("restartPolicy")),
        "spec.schedulerName": _s(spec.get("schedulerName")),
        "spec.serviceAccountName": _s(spec.get("serviceAccountName")),
        "spec.hostNetwork": _s(bool(spec.get("hostNetwork"))),
        "status.phase": _s(status.get("phase")),
        "status.podIP": _s(status.get("podIP")),
        "status.nominatedNodeName": _s(status.get("nominatedNodeName")),
    })
    return out


def _event(obj: dict[str, Any]) -> dict[str, str]:
    out = _meta(obj)
    io = obj.get("involvedObject") or {}
    for k in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath"):
        out[f"involvedObject.{k}"] = _s(io.get(k))
    out["reason"] = _s(obj.get("reason"))
    out["reportingComponent"] = _s(obj.get("reportingComponent"))
    out["source"] = _s(_get(obj, "source", "component"))
    out["type"] = _s(obj.get("type"))
    return out


def _events_k8s_io(obj: dict[str, Any]) -> dict[str, str]:
    out = _meta(obj)
    r = obj.get("regarding") or {}
    for k in ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath"):
        out[f"regarding.{k}"] = _s(r.get(k))
    out["reason"] = _s(obj.get("reason"))
    out["reportingController"] = _s(obj.get("reportingController"))
    out["type"] = _s(obj.get("type"))
    return out


def _with(extra: Callable[[dict[str, Any]], dict[str, str]]) -> Callable[[dict[str, Any]], dict[str, str]]:
    def fn(obj: dict[str, Any]) -> dict[str, str]:
        out = _meta(obj)
        out.update(extra(obj))
        return out
    return fn


EXTRACTORS: dict[str, Callable[[dict[str, Any]], dict[str, str]]] = {
    "pods": _pod,
    "events": _event,
    "events.events.k8s.io": _events_k8s_io,
    "nodes": _with(lambda o: {"spec.unschedulable": _s(bool(_get(o, "spec", "unschedulable")))}),
    "namespaces": _with(lambda o: {"status.phase": _s(_get(o, "status", "phase"))}),
    "secrets": _with(lambda o: {"type": _s(o.get("type"))}),
    "replicasets.apps": _with(lambda o: {"status.replicas": _s(_get(o, "status", "replicas") or 0)}),
}

_META_FIELDS = {"metadata.name", "metadata.namespace"}
_SUPPORTED: dict[str, set[str]] = {
    "pods": {"spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
             "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName"},
    "events": {"involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
               "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath",
               "reason", "reportingComponent", "source", "type"},
    "events.events.k8s.io": {"regarding.kind", "regarding.namespace", "regarding.name", "regarding.uid",
                             "regarding.apiVersion", "regarding.resourceVersion", "regarding.fieldPath",
                             "reason", "reportingController", "type"},
    "nodes": {"spec.unschedulable"},
    "namespaces": {"status.phase"},
    "secrets": {"type"},
    "replicasets.apps": {"status.replicas"},
}


def object_fields(resource: str, obj: dict[str, Any]) -> dict[str, str]:
    """The field-label values of ``obj`` that a field selector on ``resource`` can test."""
    fn = EXTRACTORS.get(resource, _meta)
    return fn(obj)


def parse_for(resource: str, text: str | None) -> FieldSelector:
    """Parse and check a ``fieldSelector`` for ``resource``; SelectorError names the bad field."""
    sel = parse_field_selector(text)
    allowed = _META_FIELDS | _SUPPORTED.get(resource, set())
    for f in sel.fields():
        if f not in allowed:
            raise SelectorError(f"field label not supported: {f}")
    return sel
