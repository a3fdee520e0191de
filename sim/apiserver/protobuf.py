"""Decoding of Kubernetes protobuf request bodies (``application/vnd.kubernetes.protobuf``).

kubectl's typed clients (``kubectl create namespace|deployment|configmap|secret|serviceaccount|
token``, ``kubectl auth can-i|whoami``) send protobuf; the server answers JSON, which every client
accepts. A body is the ``k8s\\x00`` magic and a ``runtime.Unknown`` wrapping the typed message;
the types below carry the field numbers of Kubernetes' generated.proto files for the fields those
commands send. Unknown fields are skipped, as protobuf decoders do.
"""

from __future__ import annotations

import base64
from typing import Any

from autoscaler.k8s import status as st
from autoscaler.k8s.timefmt import format_time

MAGIC = b"k8s\x00"

# message -> {field number: (json name, type, repeated)}; type is a scalar kind or a message name;
# "map:<kind>" is a map<string, kind>.
S, N, B, BY = "string", "int", "bool", "bytes"
SCHEMAS: dict[str, dict[int, tuple[str, str, bool]]] = {
    "Unknown": {1: ("typeMeta", "TypeMeta", False), 2: ("raw", "rawbytes", False),
                3: ("contentEncoding", S, False), 4: ("contentType", S, False)},
    "TypeMeta": {1: ("apiVersion", S, False), 2: ("kind", S, False)},
    "ObjectMeta": {1: ("name", S, False), 2: ("generateName", S, False), 3: ("namespace", S, False),
                   5: ("uid", S, False), 6: ("resourceVersion", S, False), 7: ("generation", N, False),
                   11: ("labels", "map:string", False), 12: ("annotations", "map:string", False),
                   13: ("ownerReferences", "OwnerReference", True), 14: ("finalizers", S, True)},
    "OwnerReference": {1: ("kind", S, False), 3: ("name", S, False), 4: ("uid", S, False),
                       5: ("apiVersion", S, False), 6: ("controller", B, False),
                       7: ("blockOwnerDeletion", B, False)},
    "Namespace": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "NamespaceSpec", False)},
    "NamespaceSpec": {1: ("finalizers", S, True)},
    "ConfigMap": {1: ("metadata", "ObjectMeta", False), 2: ("data", "map:string", False),
                  3: ("binaryData", "map:bytes", False), 4: ("immutable", B, False)},
    "Secret": {1: ("metadata", "ObjectMeta", False), 2: ("data", "map:bytes", False), 3: ("type", S, False),
               4: ("stringData", "map:string", False), 5: ("immutable", B, False)},
    "ServiceAccount": {1: ("metadata", "ObjectMeta", False), 4: ("automountServiceAccountToken", B, False)},
    "TokenRequest": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "TokenRequestSpec", False)},
    "TokenRequestSpec": {1: ("audiences", S, True), 3: ("boundObjectRef", "BoundObjectReference", False),
                         4: ("expirationSeconds", N, False)},
    "BoundObjectReference": {1: ("kind", S, False), 2: ("apiVersion", S, False), 3: ("name", S, False),
                             4: ("uid", S, False)},
    "SelfSubjectAccessReview": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "SelfSubjectAccessReviewSpec",
                                                                          False)},
    "SelfSubjectAccessReviewSpec": {1: ("resourceAttributes", "ResourceAttributes", False),
                                    2: ("nonResourceAttributes", "NonResourceAttributes", False)},
    "ResourceAttributes": {1: ("namespace", S, False), 2: ("verb", S, False), 3: ("group", S, False),
                           4: ("version", S, False), 5: ("resource", S, False), 6: ("subresource", S, False),
                           7: ("name", S, False)},
    "NonResourceAttributes": {1: ("path", S, False), 2: ("verb", S, False)},
    "SelfSubjectReview": {1: ("metadata", "ObjectMeta", False)},
    "Deployment": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "DeploymentSpec", False)},
    "DeploymentSpec": {1: ("replicas", N, False), 2: ("selector", "LabelSelector", False),
                       3: ("template", "PodTemplateSpec", False), 4: ("strategy", "DeploymentStrategy", False),
                       5: ("minReadySeconds", N, False), 6: ("revisionHistoryLimit", N, False),
                       7: ("paused", B, False), 9: ("progressDeadlineSeconds", N, False)},
    "DeploymentStrategy": {1: ("type", S, False)},
    "LabelSelector": {1: ("matchLabels", "map:string", False),
                      2: ("matchExpressions", "LabelSelectorRequirement", True)},
    "LabelSelectorRequirement": {1: ("key", S, False), 2: ("operator", S, False), 3: ("values", S, True)},
    "PodTemplateSpec": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "PodSpec", False)},
    "PodSpec": {2: ("containers", "Container", True), 3: ("restartPolicy", S, False),
                4: ("terminationGracePeriodSeconds", N, False), 7: ("nodeSelector", "map:string", False),
                8: ("serviceAccountName", S, False), 10: ("nodeName", S, False), 20: ("initContainers", "Container",
                                                                                       True)},
    "Container": {1: ("name", S, False), 2: ("image", S, False), 3: ("command", S, True), 4: ("args", S, True),
                  5: ("workingDir", S, False), 6: ("ports", "ContainerPort", True), 7: ("env", "EnvVar", True),
                  8: ("resources", "ResourceRequirements", False), 14: ("imagePullPolicy", S, False)},
    "ContainerPort": {1: ("name", S, False), 2: ("hostPort", N, False), 3: ("containerPort", N, False),
                      4: ("protocol", S, False)},
    "EnvVar": {1: ("name", S, False), 2: ("value", S, False)},
    "ResourceRequirements": {1: ("limits", "map:Quantity", False), 2: ("requests", "map:Quantity", False)},
    "Quantity": {1: ("string", S, False)},
    "Service": {1: ("metadata", "ObjectMeta", False), 2: ("spec", "ServiceSpec", False)},
    "ServiceSpec": {1: ("ports", "ServicePort", True), 2: ("selector", "map:string", False),
                    3: ("clusterIP", S, False), 4: ("type", S, False)},
    "ServicePort": {1: ("name", S, False), 2: ("protocol", S, False), 3: ("port", N, False),
                    4: ("targetPort", "IntOrString", False), 5: ("nodePort", N, False)},
    "IntOrString": {1: ("type", N, False), 2: ("intVal", N, False), 3: ("strVal", S, False)},
}
# Pointer fields: present means set, even at zero. Other zero values are Go's omitted defaults
# (gogo-protobuf writes every non-pointer field), so they are dropped.
POINTERS = {"replicas", "expirationSeconds", "terminationGracePeriodSeconds", "automountServiceAccountToken",
            "immutable", "revisionHistoryLimit", "progressDeadlineSeconds"}
KIND_MESSAGE = {k: k for k in ("Namespace", "ConfigMap", "Secret", "ServiceAccount", "TokenRequest",
                               "SelfSubjectAccessReview", "SelfSubjectReview", "Deployment", "Service")}


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


def _want_wire(kind: str, wire: int, where: str) -> None:
    """Varints for ints and bools, length-delimited for everything else (protobuf's "wrong wireType")."""
    want = 0 if kind in (N, B) else 2
    if wire != want:
        raise ValueError(f"{where}: wrong wire type {wire} (want {want})")


def _scalar(kind: str, val: Any) -> Any:
    if kind == S:
        return val.decode()
    if kind == N:
        return val - (1 << 64) if val >= 1 << 63 else val
    if kind == B:
        return bool(val)
    if kind == BY:
        return base64.b64encode(val).decode()
    if kind == "rawbytes":
        return val
    raise AssertionError(kind)


def _special(name: str, obj: dict[str, Any]) -> Any:
    if name == "Quantity":
        return obj.get("string", "0")
    if name == "IntOrString":
        return obj.get("strVal", "") if obj.get("type") == 1 else obj.get("intVal", 0)
    if name == "Time":
        return format_time(obj.get("seconds", 0))
    return obj


def decode_message(name: str, buf: bytes) -> Any:
    schema = SCHEMAS[name]
    out: dict[str, Any] = {}
    for num, wire, val in _fields(buf):
        spec = schema.get(num)
        if spec is None:
            continue
        jname, kind, repeated = spec
        _want_wire(kind, wire, f"{name}.{jname}")
        if kind.startswith("map:"):
            vkind = kind[4:]
            k = v = None
            for n2, w2, v2 in _fields(val):
                if n2 == 1:
                    _want_wire(S, w2, f"{name}.{jname} key")
                    k = v2.decode()
                elif n2 == 2:
                    _want_wire(vkind, w2, f"{name}.{jname} value")
                    v = decode_message(vkind, v2) if vkind in SCHEMAS else _scalar(vkind, v2)
            if vkind == "string" and v is None:
                v = ""
            out.setdefault(jname, {})[k or ""] = v
            continue
        value = decode_message(kind, val) if kind in SCHEMAS else _scalar(kind, val)
        if not repeated and value in ("", 0, False) and value is not None and jname not in POINTERS \
                and not isinstance(value, dict):
            continue
        if repeated:
            out.setdefault(jname, []).append(value)
        else:
            out[jname] = value
    return _special(name, out)


def decode(body: bytes) -> dict[str, Any]:
    """A protobuf request body as the JSON object it stands for (400 when it can't be read)."""
    if not body.startswith(MAGIC):
        raise st.bad_request("the body of the request was not a Kubernetes protobuf message")
    try:
        unknown = decode_message("Unknown", body[len(MAGIC):])
        tm = unknown.get("typeMeta") or {}
        kind = tm.get("kind", "")
        message = KIND_MESSAGE.get(kind)
        if message is None:
            raise st.unsupported_media_type("application/vnd.kubernetes.protobuf")
        obj = decode_message(message, unknown.get("raw", b""))
    except (ValueError, UnicodeDecodeError) as e:
        raise st.bad_request(f"the body of the request could not be decoded as protobuf: {e}") from None
    obj["apiVersion"], obj["kind"] = tm.get("apiVersion", ""), kind
    return obj
