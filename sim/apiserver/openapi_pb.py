"""A protobuf encoding of OpenAPI v2 documents (gnostic's ``openapi.v2.Document``), the form
kubectl ≤ 1.27 insists on for ``/openapi/v2``.

Only what our documents contain is encoded: info, paths, operations with their tags,
operationId, consumes, query parameters, responses and vendor extensions.
"""

from __future__ import annotations

from typing import Any

import yaml

from .protobuf import put_varint


def _varint(n: int) -> bytes:
    out = bytearray()
    put_varint(out, n)
    return bytes(out)


def _bytes(field: int, data: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def _str(field: int, s: str) -> bytes:
    return _bytes(field, s.encode()) if s else b""


def _bool(field: int, v: bool) -> bytes:
    return _varint(field << 3) + b"\x01" if v else b""


def _named_any(name: str, value: Any) -> bytes:
    text = yaml.safe_dump(value, default_flow_style=False) if not isinstance(value, str) else value
    return _str(1, name) + _bytes(2, _str(2, text))


def _query_param(p: dict[str, Any]) -> bytes:
    sub = _str(2, "query") + _str(4, p["name"]) + _str(6, p.get("type", "string")) + _bool(20, bool(p.get("uniqueItems")))
    non_body = _bytes(3, sub)
    parameter = _bytes(2, non_body)
    return _bytes(1, parameter)  # ParametersItem.parameter


def _operation(op: dict[str, Any]) -> bytes:
    out = b"".join(_str(1, t) for t in op.get("tags", []))
    out += _str(5, op.get("operationId", ""))
    out += b"".join(_str(7, c) for c in op.get("consumes", []))
    out += b"".join(_bytes(8, _query_param(p)) for p in op.get("parameters", []) if p.get("in") == "query")
    responses = b""
    for code, resp in (op.get("responses") or {}).items():
        response = _str(1, resp.get("description", ""))
        responses += _bytes(1, _str(1, code) + _bytes(2, _bytes(1, response)))
    out += _bytes(9, responses)
    for k, v in op.items():
        if k.startswith("x-"):
            out += _bytes(13, _named_any(k, v))
    return out


_METHODS = {"get": 2, "put": 3, "post": 4, "delete": 5, "options": 6, "head": 7, "patch": 8}


def encode_document(doc: dict[str, Any]) -> bytes:
    info = doc.get("info") or {}
    out = _str(1, doc.get("swagger", "2.0"))
    out += _bytes(2, _str(1, info.get("title", "")) + _str(2, info.get("version", "")))
    paths = b""
    for name, item in (doc.get("paths") or {}).items():
        body = b"".join(_bytes(_METHODS[m], _operation(op)) for m, op in item.items() if m in _METHODS)
        paths += _bytes(2, _str(1, name) + _bytes(2, body))
    out += _bytes(8, paths)
    out += _bytes(9, b"")  # definitions: none
    return out
