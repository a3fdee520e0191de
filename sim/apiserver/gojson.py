"""Objects shaped as kube-apiserver stores them: decoded into Go structs and encoded back.

kube-apiserver never keeps a client's JSON; it keeps its Go struct, and the JSON it answers follows
the struct tags: a field without ``omitempty`` is always written (``""``, ``0``, ``null`` for an
empty slice, map or time), a non-pointer struct is written even when empty (``status: {}``), an
empty field with ``omitempty`` is dropped, and ``omitzero`` drops a zero struct. :func:`normalise`
applies those rules to a built-in object in place, with the field tables of
``protobuf_schema.json`` (which carry each Go field's pointer-ness and tags).
"""

from __future__ import annotations

from typing import Any

from .protobuf import INT_OR_STRING, META, QUANTITY, RAW_JSON, TIMES, message_for, schema

_SCALAR_ZERO: dict[str, Any] = {"string": "", "int": 0, "bool": False, "bytes": "", "float": 0}
# messages whose JSON is not an object of their fields: left as they are
_OPAQUE = {QUANTITY, INT_OR_STRING, META + "Duration", *TIMES, *RAW_JSON}


def normalise(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` (a built-in kind) as kube-apiserver would answer it; other objects are left alone."""
    message = message_for(obj.get("apiVersion", ""), obj.get("kind", ""))
    if message is not None:
        _walk(message, obj, schema()["messages"])
    return obj


def _opaque(name: str) -> bool:
    return name in _OPAQUE or name.endswith(".ExtraValue") or name.startswith(
        "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1.JSONSchemaPropsOr")


def _walk(name: str, obj: dict[str, Any], messages: dict[str, Any]) -> None:
    table = messages.get(name)
    if table is None:
        return
    for jname, kind, repeated, pointer, omitempty, omitzero, inline in table.values():
        if inline:  # an embedded struct: its fields are the parent's
            _walk(kind, obj, messages)
            continue
        present = jname in obj
        v = obj.get(jname)
        if repeated or kind.startswith("map:"):
            empty = v is None or (isinstance(v, list | dict) and not v)
            if present and empty and (omitempty or omitzero):
                del obj[jname]
            elif not present and not (omitempty or omitzero):
                obj[jname] = None
            elif v and not _opaque(kind[4:] if kind.startswith("map:") else kind):
                item_kind = kind[4:] if kind.startswith("map:") else kind
                items = v.values() if isinstance(v, dict) else v if isinstance(v, list) else ()
                if item_kind in messages:
                    for item in items:
                        if isinstance(item, dict):
                            _walk(item_kind, item, messages)
            continue
        if kind in _SCALAR_ZERO:
            if pointer:
                if present and v is None:
                    del obj[jname]
            elif v is None or v == _SCALAR_ZERO[kind]:
                if omitempty or omitzero:
                    obj.pop(jname, None)
                else:
                    obj[jname] = _SCALAR_ZERO[kind]
            continue
        if kind in TIMES:
            if v is None and (pointer or omitzero):
                obj.pop(jname, None)
            elif not present:
                obj[jname] = None  # Go's zero time is written as null
            continue
        if _opaque(kind):
            if present and v is None and (pointer or omitempty):
                del obj[jname]
            continue
        if pointer:
            if present and v is None:
                del obj[jname]
            elif isinstance(v, dict):
                _walk(kind, v, messages)
            continue
        if not isinstance(v, dict):
            if present and v is not None:
                continue  # not an object: validation answers for it
            v = {}
        _walk(kind, v, messages)
        if omitzero and not v:
            obj.pop(jname, None)
        else:
            obj[jname] = v
