"""Version conversions between what is stored and what a request's group/version sees.

HPAs are stored as autoscaling/v2 and served as v1 too (hpa-core's converters); events.k8s.io/v1
Events are core/v1 Events seen through a field renaming, as kube-apiserver stores both in one place.
"""

from __future__ import annotations

from typing import Any

from autoscaler.hpa.defaults import hpa_v1_to_v2, hpa_v2_to_v1

from . import gojson

_EVENT_RENAMES = (  # (core/v1 field, events.k8s.io/v1 field)
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
    ("reportingComponent", "reportingController"),
)
_EVENT_SAME = ("metadata", "reason", "type", "action", "related", "reportingInstance", "eventTime", "series")


def event_to_events_v1(core: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": "Event", "apiVersion": "events.k8s.io/v1"}
    for k in _EVENT_SAME:
        if k in core:
            out[k] = core[k]
    for old, new in _EVENT_RENAMES:
        if old in core:
            out[new] = core[old]
    if "series" in core and isinstance(core["series"], dict):
        s = core["series"]
        out["series"] = {"count": s.get("count", 0), "lastObservedTime": s.get("lastObservedTime")}
    return gojson.normalise(out)


def event_from_events_v1(ev: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": "Event", "apiVersion": "v1"}
    for k in _EVENT_SAME:
        if k in ev:
            out[k] = ev[k]
    for old, new in _EVENT_RENAMES:
        if new in ev:
            out[old] = ev[new]
    return out


def hpa_to_v1(obj: dict[str, Any]) -> dict[str, Any]:
    out = hpa_v2_to_v1(obj)
    out["apiVersion"], out["kind"] = "autoscaling/v1", "HorizontalPodAutoscaler"
    return out


def hpa_from_v1(obj: dict[str, Any]) -> dict[str, Any]:
    out = hpa_v1_to_v2(obj)
    out["apiVersion"], out["kind"] = "autoscaling/v2", "HorizontalPodAutoscaler"
    return out


def to_external(key: str, version: str, obj: dict[str, Any]) -> dict[str, Any]:
    """The stored object ``obj`` as the client of ``key``/``version`` sees it."""
    if key == "horizontalpodautoscalers.autoscaling" and version == "v1":
        return hpa_to_v1(obj)
    if key == "events.events.k8s.io":
        return event_to_events_v1(obj)
    return obj


def to_internal(key: str, version: str, obj: dict[str, Any]) -> dict[str, Any]:
    """A client's ``obj`` of ``key``/``version`` in the storage version."""
    if key == "horizontalpodautoscalers.autoscaling" and version == "v1":
        return hpa_from_v1(obj)
    if key == "events.events.k8s.io":
        return event_from_events_v1(obj)
    return obj


def custom_version(api_version: str, obj: dict[str, Any]) -> dict[str, Any]:
    """A custom object in another version of its CRD: conversion strategy None changes only apiVersion."""
    if obj.get("apiVersion") == api_version:
        return obj
    return {**obj, "apiVersion": api_version}


def needs_conversion(key: str, version: str) -> bool:
    return (key == "horizontalpodautoscalers.autoscaling" and version == "v1") or key == "events.events.k8s.io"
