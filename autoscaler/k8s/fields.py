"""Unknown fields of built-in kinds: what kube-apiserver's strict decoding reports.

kube-apiserver decodes a built-in object into its Go type, so a field the type lacks is dropped;
with ``fieldValidation=Strict`` (kubectl's default since 1.27) it is an error
``strict decoding error: unknown field "spec.foo"``, with ``Warn`` a warning. The field lists
come from the ``kubernetes`` client's generated models (the same OpenAPI the server publishes),
copied into ``api_fields.json`` by ``scripts/gen_api_fields.py`` (the client version the project
pins): reading that table takes a millisecond, importing the client a third of a second.

Paths are written the way the API server writes them: ``spec.metrics[0].resource.target.x``.
The table is read on first use.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

TABLE = Path(__file__).resolve().parent / "api_fields.json"

#: Kinds whose model name is not simply the version followed by the kind.
_MODEL_NAMES = {("v1", "Event"): "CoreV1Event", ("events.k8s.io/v1", "Event"): "EventsV1Event"}


def model_for(api_version: str, kind: str) -> str | None:
    """The client model of a built-in ``apiVersion``/``kind``, or None (custom or unknown kinds)."""
    name = _MODEL_NAMES.get((api_version, kind))
    if name is None:
        version = api_version.rsplit("/", 1)[-1]
        if not version or not kind:
            return None
        name = version[0].upper() + version[1:] + kind
    return name if name in _models() else None


@cache
def _models() -> dict[str, dict[str, str]]:
    """model name -> {JSON field name -> type string}."""
    return json.loads(TABLE.read_text(encoding="utf-8"))["models"]


def _inner(typ: str) -> str | None:
    """The element type of a list or map type string, else None."""
    for prefix in ("List[", "list["):
        if typ.startswith(prefix):
            return typ[len(prefix):-1]
    for prefix in ("Dict[", "dict("):
        if typ.startswith(prefix):
            return typ[len(prefix):-1].split(",", 1)[1].strip()
    return None


def _walk(value: Any, typ: str, steps: tuple[str | int, ...], out: list[tuple[str | int, ...]]) -> None:
    if value is None:
        return
    inner = _inner(typ)
    if inner is not None:
        if isinstance(value, list):
            for i, item in enumerate(value):
                _walk(item, inner, (*steps, i), out)
        elif isinstance(value, dict):
            for key, item in value.items():
                _walk(item, inner, (*steps, f"[{key}]"), out)
        return
    fields = _models().get(typ)
    if not isinstance(value, dict) or fields is None:
        return  # a scalar, a free-form object (IntOrString, RawExtension, fieldsV1) or a type mismatch
    for key, item in value.items():
        if key in fields:
            _walk(item, fields[key], (*steps, key), out)
        else:
            out.append((*steps, key))


def _unknown(obj: dict[str, Any], model: str | None) -> list[tuple[str | int, ...]]:
    model = model or model_for(str(obj.get("apiVersion") or ""), str(obj.get("kind") or ""))
    out: list[tuple[str | int, ...]] = []
    if model is not None:
        _walk(obj, model, (), out)
    return out


def _format(steps: tuple[str | int, ...]) -> str:
    text = ""
    for step in steps:
        if isinstance(step, int):
            text += f"[{step}]"
        elif step.startswith("["):  # a map key
            text += step
        else:
            text += f".{step}" if text else step
    return text


def unknown_fields(obj: dict[str, Any], model: str | None = None) -> list[str]:
    """Paths of the fields in ``obj`` its kind does not have (``model`` defaults to the object's own kind)."""
    return [_format(s) for s in _unknown(obj, model)]


def strict_decoding_error(paths: list[str]) -> str:
    """The API server's message for unknown fields under ``fieldValidation=Strict``."""
    return "strict decoding error: " + ", ".join(f'unknown field "{p}"' for p in paths)


def prune_unknown(obj: dict[str, Any], model: str | None = None) -> list[str]:
    """Drop the fields of ``obj`` its kind lacks, in place, and return their paths.

    kube-apiserver keeps no field its Go type lacks, whatever the validation mode."""
    found = _unknown(obj, model)
    for steps in found:
        parent: Any = obj
        for step in steps[:-1]:
            parent = parent[step[1:-1] if isinstance(step, str) and step.startswith("[") else step]
        parent.pop(steps[-1], None)
    return [_format(s) for s in found]
