"""PATCH bodies: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and strategic merge patch.

Strategic merge knows the list merge keys of the built-in types that kubectl patches (containers
by name, ports by containerPort/port, conditions by type, ...) and the directives kubectl's
client-side apply emits (``$patch``, ``$setElementOrder/``, ``$deleteFromPrimitiveList/``,
``$retainKeys``).
"""

from __future__ import annotations

import copy
from typing import Any

from autoscaler.k8s import status as st

# Field name -> merge key for lists merged by key ("" = merged as a set of primitives).
MERGE_KEYS: dict[str, str] = {
    "containers": "name", "initContainers": "name", "ephemeralContainers": "name", "volumes": "name",
    "env": "name", "imagePullSecrets": "name", "resourceClaims": "name", "schedulingGates": "name",
    "volumeMounts": "mountPath", "volumeDevices": "devicePath", "conditions": "type", "addresses": "type",
    "ownerReferences": "uid", "taints": "key", "hostAliases": "ip", "topologySpreadConstraints": "topologyKey",
    "finalizers": "", "secrets": "name", "contexts": "name",
}
_CONTAINERS = {"containers", "initContainers", "ephemeralContainers"}


def _merge_key(field: str, parent: str) -> str | None:
    if field == "ports":
        return "containerPort" if parent in _CONTAINERS else "port"
    return MERGE_KEYS.get(field)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, ``null`` deletes, everything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    return _smp_map(target if isinstance(target, dict) else {}, patch, "")


def _smp_map(target: dict, patch: dict, parent: str) -> dict:
    if not isinstance(patch, dict):
        raise st.bad_request(f"unable to apply strategic merge patch: expected a map, got {type(patch).__name__}")
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if patch.get("$patch") == "delete":
        return {}
    out = dict(target)
    retain = patch.get("$retainKeys")
    if retain is not None and not (isinstance(retain, list) and all(isinstance(r, str) for r in retain)):
        raise st.bad_request("invalid patch format of retainKeys")  # mergepatch.ErrBadPatchFormatForRetainKeys
    orders: dict[str, list] = {}
    for k, v in patch.items():
        if k in ("$patch", "$retainKeys"):
            continue
        if k.startswith("$setElementOrder/"):
            if not isinstance(v, list):
                raise st.bad_request("invalid patch format of setElementOrder list")
            orders[k.split("/", 1)[1]] = v
            continue
        if k.startswith("$deleteFromPrimitiveList/"):
            if not isinstance(v, list | None):
                raise st.bad_request("invalid patch format of primitive list")
            field = k.split("/", 1)[1]
            drop = set(map(_hashable, v or []))
            out[field] = [x for x in out.get(field) or [] if _hashable(x) not in drop]
            continue
        if v is None:
            out.pop(k, None)
            continue
        cur = out.get(k)
        if isinstance(v, dict):
            out[k] = _smp_map(cur if isinstance(cur, dict) else {}, v, k)
        elif isinstance(v, list):
            out[k] = _smp_list(cur if isinstance(cur, list) else [], v, k, parent)
        else:
            out[k] = v
    for field, order in orders.items():
        if isinstance(out.get(field), list):
            out[field] = _apply_order(out[field], order, _merge_key(field, parent))
    if isinstance(retain, list):
        keep = set(retain)
        out = {k: v for k, v in out.items() if k in keep}
    return out


def _hashable(x: Any) -> Any:
    return repr(x) if isinstance(x, (dict, list)) else x


def _smp_list(target: list, patch: list, field: str, parent: str) -> list:
    key = _merge_key(field, parent)
    if key is None:
        return [_strip(copy.deepcopy(x)) for x in patch if not (isinstance(x, dict) and x.get("$patch"))]
    if key == "":
        out = list(target)
        for x in patch:
            if x not in out:
                out.append(x)
        return out
    if any(isinstance(x, dict) and x.get("$patch") == "replace" for x in patch):
        return [_strip(copy.deepcopy(x)) for x in patch if not (isinstance(x, dict) and "$patch" in x)]
    out = [copy.deepcopy(x) for x in target]
    for item in patch:
        if not isinstance(item, dict):
            continue
        kv = item.get(key)
        idx = next((i for i, x in enumerate(out) if isinstance(x, dict) and x.get(key) == kv), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                out.pop(idx)
            continue
        if idx is None:
            out.append(_strip(copy.deepcopy(item)))
        else:
            out[idx] = _smp_map(out[idx], item, field)
    return out


def _strip(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _strip(v) for k, v in x.items() if not k.startswith("$")}
    if isinstance(x, list):
        return [_strip(v) for v in x]
    return x


def _apply_order(items: list, order: list, key: str | None) -> list:
    if not key:
        pos = {_hashable(v): i for i, v in enumerate(order)}
        return sorted(items, key=lambda x: pos.get(_hashable(x), len(pos)))
    pos = {_hashable(o.get(key)): i for i, o in enumerate(order) if isinstance(o, dict)}
    return sorted(items, key=lambda x: pos.get(_hashable(x.get(key)) if isinstance(x, dict) else None, len(pos)))


# ---------------------------------------------------------------------------------------------
# RFC 6902


def _pointer(path: str) -> list[str]:
    if not isinstance(path, str):
        raise _jp_error(f"JSON pointer must be a string, got {path!r}")
    if path == "":
        return []
    if not path.startswith("/"):
        raise st.ApiError(422, "Invalid", f"the server rejected our request due to an error in our request: "
                          f'JSON pointer must start with "/": {path!r}')
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _index(part: str) -> bool:
    """An array index as RFC 6901 writes one (ASCII digits; str.isdigit also takes "²")."""
    return part.isascii() and part.isdigit()


def _parent(doc: Any, parts: list[str], path: str) -> tuple[Any, str]:
    cur = doc
    for p in parts[:-1]:
        if isinstance(cur, dict) and p in cur:
            cur = cur[p]
        elif isinstance(cur, list) and _index(p) and int(p) < len(cur):
            cur = cur[int(p)]
        else:
            raise _jp_error(f"doc is missing path: \"{path}\": missing value")
    return cur, parts[-1]


def _jp_error(msg: str) -> st.ApiError:
    return st.ApiError(422, "Invalid", f"the server rejected our request due to an error in our request: {msg}")


def _get(doc: Any, path: str) -> Any:
    cur = doc
    for p in _pointer(path):
        if isinstance(cur, dict) and p in cur:
            cur = cur[p]
        elif isinstance(cur, list) and _index(p) and int(p) < len(cur):
            cur = cur[int(p)]
        else:
            raise _jp_error(f'doc is missing path: "{path}": missing value')
    return cur


def _add(doc: Any, path: str, value: Any) -> Any:
    parts = _pointer(path)
    if not parts:
        return value
    parent, last = _parent(doc, parts, path)
    if isinstance(parent, list):
        if last == "-":
            parent.append(value)
        elif _index(last) and int(last) <= len(parent):
            parent.insert(int(last), value)
        else:
            raise _jp_error(f'add operation does not apply: doc is missing path: "{path}": missing value')
    elif isinstance(parent, dict):
        parent[last] = value
    else:
        raise _jp_error(f'add operation does not apply: doc is missing path: "{path}": missing value')
    return doc


def _remove(doc: Any, path: str) -> Any:
    parts = _pointer(path)
    if not parts:
        raise _jp_error(f'remove operation does not apply: doc is missing path: "{path}": missing value')
    parent, last = _parent(doc, parts, path)
    if isinstance(parent, list) and _index(last) and int(last) < len(parent):
        parent.pop(int(last))
    elif isinstance(parent, dict) and last in parent:
        del parent[last]
    else:
        raise _jp_error(f'remove operation does not apply: doc is missing path: "{path}": missing value')
    return doc


def json_patch(doc: Any, ops: Any) -> Any:
    if not isinstance(ops, list):
        raise st.bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    doc = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op:
            raise _jp_error("Unexpected kind: <nil>")
        kind, path = op["op"], op.get("path", "")
        if kind == "add":
            doc = _add(doc, path, copy.deepcopy(op.get("value")))
        elif kind == "remove":
            doc = _remove(doc, path)
        elif kind == "replace":
            parts = _pointer(path)
            if parts:
                parent, last = _parent(doc, parts, path)
                if isinstance(parent, dict):  # an object's missing key is set, as upstream's json-patch does
                    parent.pop(last, None)
                else:
                    _get(doc, path)
                    doc = _remove(doc, path)
            doc = _add(doc, path, copy.deepcopy(op.get("value")))
        elif kind == "move":
            val = _get(doc, op.get("from", ""))
            doc = _remove(doc, op.get("from", ""))
            doc = _add(doc, path, val)
        elif kind == "copy":
            doc = _add(doc, path, copy.deepcopy(_get(doc, op.get("from", ""))))
        elif kind == "test":
            if _get(doc, path) != op.get("value"):
                raise _jp_error(f"testing value {path} failed: test failed")
        else:
            raise _jp_error(f"Unexpected kind: {kind}")
    return doc


PATCH_TYPES = {
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/json-patch+json": "json",
    "application/apply-patch+yaml": "apply",
    "application/apply-patch+cbor": "apply",
}


def apply_patch(kind: str, current: dict, patch: Any) -> dict:
    if kind == "merge":
        return merge_patch(current, patch)
    if kind in ("strategic", "apply"):
        return strategic_merge_patch(current, patch)
    if kind == "json":
        return json_patch(current, patch)
    raise AssertionError(kind)
