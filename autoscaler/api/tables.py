"""Server-side ``Table`` conversion for ``kubectl get nodemetrics|podmetrics``.

Columns as metrics-server's table.go: Name, then one column per usage key (sorted), then Window;
derived from the first item (an empty list has no columns). Pod cells are sums over containers.
Each row's ``object`` follows ``includeObject`` (None, Metadata = PartialObjectMetadata, Object).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from autoscaler.api.render import PREFERRED_VERSION, group_version
from autoscaler.k8s.quantity import format_binary_si, format_decimal_si, parse_quantity
from autoscaler.k8s.status import bad_request

INCLUDE_OBJECT = ("None", "Metadata", "Object")


def _usage_of(item: dict[str, Any]) -> dict[str, str]:
    if "usage" in item:
        return item["usage"]
    total: dict[str, Decimal] = {}
    for c in item.get("containers") or []:
        for k, v in c["usage"].items():
            total[k] = total.get(k, Decimal(0)) + parse_quantity(v)
    # a sum keeps its addends' format: BinarySI for byte quantities (memory, swap), DecimalSI for cpu
    return {k: (format_binary_si(v) if k in ("memory", "swap") else format_decimal_si(v)) for k, v in total.items()}


def to_table(items: list[dict[str, Any]], kind: str, version: str = "v1", include_object: str = "Metadata",
             api_version: str = PREFERRED_VERSION) -> dict[str, Any]:
    """A ``meta.k8s.io/<version>`` Table of NodeMetrics or PodMetrics list items (served at
    metrics.k8s.io/``api_version``, which full row objects carry)."""
    if include_object not in INCLUDE_OBJECT:
        raise bad_request(f'includeObject: Unsupported value: "{include_object}": supported values: '
                          '"None", "Metadata", "Object"')
    columns: list[dict[str, Any]] = []
    names: list[str] | None = None
    rows: list[dict[str, Any]] = []
    for item in items:
        usage = _usage_of(item)
        if names is None:
            names = sorted(usage)
            columns = [{"name": "Name", "type": "string", "format": "name", "description": "Name of the resource",
                        "priority": 0}]
            columns += [{"name": n, "type": "string", "format": "quantity", "description": "", "priority": 0}
                        for n in names]
            columns.append({"name": "Window", "type": "string", "format": "duration", "description": "", "priority": 0})
        row: dict[str, Any] = {"cells": [item["metadata"]["name"], *(usage.get(n, "0") for n in names),
                                         item["window"]]}
        if include_object == "Metadata":
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": f"meta.k8s.io/{version}",
                             "metadata": item["metadata"]}
        elif include_object == "Object":
            row["object"] = {"kind": kind, "apiVersion": group_version(api_version), **item}
        rows.append(row)
    return {"kind": "Table", "apiVersion": f"meta.k8s.io/{version}", "metadata": {}, "columnDefinitions": columns,
            "rows": rows}


def to_partial_metadata(items: list[dict[str, Any]], version: str, single: bool) -> dict[str, Any]:
    """``PartialObjectMetadata[List]`` for metadata-only clients."""
    objs = [{"kind": "PartialObjectMetadata", "apiVersion": f"meta.k8s.io/{version}", "metadata": i["metadata"]}
            for i in items]
    if single:
        return objs[0]
    return {"kind": "PartialObjectMetadataList", "apiVersion": f"meta.k8s.io/{version}", "metadata": {},
            "items": [{"metadata": o["metadata"]} for o in objs]}
