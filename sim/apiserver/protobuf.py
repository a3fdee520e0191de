"""Kubernetes protobuf bodies (``application/vnd.kubernetes.protobuf``), both ways.

Typed clients send protobuf: kubectl 1.32+ for its ``create <kind>``/``autoscale``/``auth``
subcommands, client-go in kube-controller-manager and kube-scheduler for everything. A body is
the ``k8s\\x00`` magic and a ``runtime.Unknown`` wrapping the typed message. The field tables
(number, JSON name, type, and whether the Go field is a pointer or omitted when empty) are
generated from the upstream API modules into ``protobuf_schema.json`` by
``scripts/gen_protobuf_schema.py``, for every kind the emulator serves.

Decoding yields the JSON object kube-apiserver would decode the same body to: gogo-protobuf writes
every non-pointer field, so a zero value is dropped when Go's JSON tag would omit it and kept when
it would not. Encoding is the reverse, for clients that accept only protobuf.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import json
from pathlib import Path
from typing import Any

import orjson

from autoscaler.k8s import status as st
from autoscaler.k8s.timefmt import parse_time

MAGIC = b"k8s\x00"
SCHEMA_FILE = Path(__file__).with_name("protobuf_schema.json")
META = "k8s.io.apimachinery.pkg.apis.meta.v1."
UNKNOWN = "k8s.io.apimachinery.pkg.runtime.Unknown"
QUANTITY = "k8s.io.apimachinery.pkg.api.resource.Quantity"
INT_OR_STRING = "k8s.io.apimachinery.pkg.util.intstr.IntOrString"
TIMES = {META + "Time", META + "MicroTime"}
# messages whose JSON is raw embedded JSON (field 1 holds its bytes)
RAW_JSON = {"k8s.io.apimachinery.pkg.runtime.RawExtension", META + "FieldsV1",
            "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1.JSON"}
_AX = "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1."


@functools.cache
def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_FILE.read_text())


# --- wire format ---------------------------------------------------------------------------------


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes):
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        num, wire = key >> 3, key & 7
        if wire == 0:
            val, pos = _varint(buf, pos)
        elif wire == 2:
            ln, pos = _varint(buf, pos)
            if pos + ln > len(buf):
                raise ValueError("truncated field")
            val, pos = buf[pos:pos + ln], pos + ln
        elif wire == 1:
            val, pos = buf[pos:pos + 8], pos + 8
        elif wire == 5:
            val, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if pos > len(buf):
            raise ValueError(f"field {num}: truncated")
        yield num, wire, val


def _want_wire(kind: str, wire: int, repeated: bool, where: str) -> None:
    """Protobuf's "wrong wireType": varints for ints and bools, fixed 64/32 bits for floats,
    length-delimited for everything else (and for packed repeated scalars)."""
    want = {"int": (0,), "bool": (0,), "float": (1, 5)}.get(kind, (2,))
    if wire not in want and not (repeated and wire == 2):
        raise ValueError(f"{where}: wrong wire type {wire}")


def put_varint(out: bytearray, v: int) -> None:
    """Append ``v`` as a protobuf varint (negative ints as their 64-bit two's complement)."""
    v &= (1 << 64) - 1
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return


def _put_bytes(out: bytearray, num: int, data: bytes) -> None:
    put_varint(out, num << 3 | 2)
    put_varint(out, len(data))
    out += data


# --- decoding ------------------------------------------------------------------------------------


def _scalar(kind: str, val: Any) -> Any:
    if kind == "string":
        return val.decode()
    if kind == "int":
        return val - (1 << 64) if val >= 1 << 63 else val
    if kind == "bool":
        return bool(val)
    if kind == "bytes":
        return base64.b64encode(val).decode()
    if kind == "float":
        import struct

        return struct.unpack("<d" if len(val) == 8 else "<f", val)[0]
    raise AssertionError(kind)


def _zero(v: Any) -> bool:
    return v in ("", 0, False) and not isinstance(v, dict)


def _format_time(name: str, fields: dict[str, Any]) -> str | None:
    secs, nanos = fields.get("seconds", 0), fields.get("nanos", 0)
    if not secs and not nanos:
        return None  # Go's zero time marshals as null
    d = dt.datetime.fromtimestamp(secs, dt.UTC).replace(microsecond=nanos // 1000)
    if name.endswith("MicroTime"):
        return d.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return d.strftime("%Y-%m-%dT%H:%M:%SZ")


def _special(name: str, obj: dict[str, Any]) -> Any:
    """Messages whose JSON form is not an object of their fields."""
    if name == QUANTITY:
        return obj.get("string", "0")
    if name == INT_OR_STRING:
        return obj.get("strVal", "") if obj.get("type") == 1 else obj.get("intVal", 0)
    if name in TIMES:
        return _format_time(name, obj)
    if name == META + "Duration":
        return _go_duration(obj.get("duration", 0))
    if name.endswith(".ExtraValue"):
        return obj.get("items", [])
    if name == _AX + "JSONSchemaPropsOrBool":
        return obj["schema"] if "schema" in obj else obj.get("allows", False)
    if name == _AX + "JSONSchemaPropsOrArray":
        return obj["schema"] if "schema" in obj else obj.get("jSONSchemas", [])
    if name == _AX + "JSONSchemaPropsOrStringArray":
        return obj["schema"] if "schema" in obj else obj.get("property", [])
    return obj


def _go_duration(ns: int) -> str:
    if ns == 0:
        return "0s"
    sign, ns = ("-", -ns) if ns < 0 else ("", ns)
    h, rem = divmod(ns, 3_600_000_000_000)
    m, rem = divmod(rem, 60_000_000_000)
    s = rem / 1e9
    out = (f"{h}h" if h else "") + (f"{m}m" if h or m else "") + f"{s:g}s"
    return sign + out


def decode_message(name: str, buf: bytes) -> Any:
    if name in RAW_JSON:
        raw = next((v for n, _w, v in _fields(buf) if n == 1), b"")
        return orjson.loads(raw) if raw else None
    table = schema()["messages"].get(name)
    if table is None:
        raise ValueError(f"no protobuf schema for {name}")
    out: dict[str, Any] = {}
    for num, wire, val in _fields(buf):
        spec = table.get(str(num))
        if spec is None:
            continue  # unknown fields are skipped, as protobuf decoders do
        jname, kind, repeated, pointer, omitempty, _omitzero, inline = spec
        _want_wire(kind, wire, repeated, f"{name}.{jname}")
        if inline:  # an embedded struct: its fields are the parent's
            out.update(decode_message(kind, val))
            continue
        if kind.startswith("map:"):
            vkind = kind[4:]
            k: Any = ""
            v: Any = None
            for n2, w2, v2 in _fields(val):
                if n2 == 1:
                    _want_wire("string", w2, False, f"{name}.{jname} key")
                    k = v2.decode()
                elif n2 == 2:
                    _want_wire(vkind, w2, False, f"{name}.{jname} value")
                    v = _scalar(vkind, v2) if vkind in _SCALARS else decode_message(vkind, v2)
            if v is None:
                v = "" if vkind == "string" else _scalar(vkind, b"") if vkind == "bytes" else v
            out.setdefault(jname, {})[k] = v
            continue
        if kind in _SCALARS:
            if repeated and wire == 2 and kind in ("int", "bool"):  # packed
                pos, items = 0, []
                while pos < len(val):
                    item, pos = _varint(val, pos)
                    items.append(_scalar(kind, item))
                out.setdefault(jname, []).extend(items)
                continue
            value = _scalar(kind, val)
        else:
            value = decode_message(kind, val)
        if repeated:
            out.setdefault(jname, []).append(value)
        elif (_zero(value) and omitempty and not pointer) or (value is None and omitempty and not pointer):
            continue
        else:
            out[jname] = value
    for jname, kind, repeated, _pointer, omitempty, _omitzero, inline in table.values():
        if jname not in out and not omitempty and not inline and (repeated or kind.startswith("map:")):
            out[jname] = None  # a nil slice or map without omitempty marshals as null
    return _special(name, out)


_SCALARS = {"string", "int", "bool", "bytes", "float"}


def message_for(api_version: str, kind: str) -> str | None:
    return schema()["kinds"].get(f"{api_version}/{kind}")


def decode(body: bytes) -> dict[str, Any]:
    """A protobuf request body as the JSON object it stands for (400 when it can't be read)."""
    if not body.startswith(MAGIC):
        raise st.bad_request("the body of the request was not a Kubernetes protobuf message")
    try:
        unknown = decode_message(UNKNOWN, body[len(MAGIC):])
        tm = unknown  # runtime.Unknown embeds TypeMeta
        api_version, kind = tm.get("apiVersion", ""), tm.get("kind", "")
        message = message_for(api_version, kind)
        if message is None:
            raise st.unsupported_media_type("application/vnd.kubernetes.protobuf")
        raw = base64.b64decode(unknown.get("raw", ""))
        obj = decode_message(message, raw)
    except (ValueError, UnicodeDecodeError, orjson.JSONDecodeError) as e:
        raise st.bad_request(f"the body of the request could not be decoded as protobuf: {e}") from None
    return {"apiVersion": api_version, "kind": kind, **obj}


# --- encoding ------------------------------------------------------------------------------------


def _encode_scalar(out: bytearray, num: int, kind: str, v: Any) -> None:
    if kind == "string":
        _put_bytes(out, num, str(v).encode())
    elif kind == "bytes":
        _put_bytes(out, num, base64.b64decode(v or ""))
    elif kind in ("int", "bool"):
        put_varint(out, num << 3)
        put_varint(out, int(v))
    elif kind == "float":
        import struct

        put_varint(out, num << 3 | 1)
        out += struct.pack("<d", float(v))


def _from_special(name: str, v: Any) -> dict[str, Any] | None:
    """The field dict of a message whose JSON form is special (None: not special)."""
    if name == QUANTITY:
        return {"string": str(v)}
    if name == INT_OR_STRING:
        return {"type": 1, "strVal": v} if isinstance(v, str) else {"type": 0, "intVal": v}
    if name in TIMES:
        if v is None:
            return {}
        ts = parse_time(v)
        return {"seconds": int(ts // 1), "nanos": round((ts % 1) * 1e6) * 1000}
    if name.endswith(".ExtraValue"):
        return {"items": v}
    return None


def encode_message(name: str, obj: Any) -> bytes:
    out = bytearray()
    if name in RAW_JSON:
        if obj is not None:
            _put_bytes(out, 1, orjson.dumps(obj))
        return bytes(out)
    special = _from_special(name, obj)
    if special is not None:
        obj = special
    table = schema()["messages"].get(name)
    if table is None:
        raise ValueError(f"no protobuf schema for {name}")
    for num_s, (jname, kind, repeated, _p, _oe, _oz, inline) in sorted(table.items(), key=lambda kv: int(kv[0])):
        if inline:
            _put_bytes(out, int(num_s), encode_message(kind, obj))
            continue
        v = obj.get(jname) if isinstance(obj, dict) else None
        if v is None:
            continue
        num = int(num_s)
        if kind.startswith("map:"):
            vkind = kind[4:]
            for k in sorted(v):
                entry = bytearray()
                _encode_scalar(entry, 1, "string", k)
                if vkind in _SCALARS:
                    _encode_scalar(entry, 2, vkind, v[k])
                else:
                    _put_bytes(entry, 2, encode_message(vkind, v[k]))
                _put_bytes(out, num, bytes(entry))
            continue
        for item in (v if repeated else [v]):
            if kind in _SCALARS:
                _encode_scalar(out, num, kind, item)
            else:
                _put_bytes(out, num, encode_message(kind, item))
    return bytes(out)


def encode(obj: dict[str, Any]) -> bytes | None:
    """``obj`` as a protobuf body, or None when its kind has no protobuf form (lists are sent as JSON)."""
    api_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
    message = message_for(api_version, kind) or _list_message(api_version, kind)
    if message is None:
        return None
    body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind")}
    raw = encode_message(message, body)
    return MAGIC + encode_message(UNKNOWN, {"apiVersion": api_version, "kind": kind,
                                            "raw": base64.b64encode(raw).decode(), "contentEncoding": "",
                                            "contentType": ""})


def _list_message(api_version: str, kind: str) -> str | None:
    if kind.endswith("List"):
        item = message_for(api_version, kind[:-4])
        if item is not None and item + "List" in schema()["messages"]:
            return item + "List"
    if kind == "Status" and api_version == "v1":
        return META + "Status"
    return None
