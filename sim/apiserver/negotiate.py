"""Content negotiation: which representation an ``Accept`` header asks for, and body decoding.

JSON, YAML, and protobuf for built-in kinds (kube-controller-manager, kube-scheduler and kubectl's
typed clients prefer it; watches are answered in JSON, which those clients also accept); ``as=Table`` / ``as=PartialObjectMetadata[List]`` /
``as=APIGroupDiscoveryList`` representations with their ``g``/``v`` parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import yaml

from autoscaler.k8s import status as st

PROTOBUF = "application/vnd.kubernetes.protobuf"
ACCEPTED = f"application/json, application/yaml, {PROTOBUF}"


@dataclass(frozen=True)
class MediaType:
    type: str
    params: dict[str, str]

    @property
    def as_(self) -> str:
        return self.params.get("as", "")


@dataclass(frozen=True)
class Target:
    """What to send: ``fmt`` json|yaml|protobuf; ``as_`` ''|Table|PartialObjectMetadata|APIGroupDiscoveryList."""

    fmt: str = "json"
    as_: str = ""
    version: str = ""

    @property
    def content_type(self) -> str:
        if self.fmt == "protobuf":
            return PROTOBUF
        base = "application/yaml" if self.fmt == "yaml" else "application/json"
        if self.as_ == "Table":
            return f"{base};as=Table;v={self.version or 'v1'};g=meta.k8s.io"
        if self.as_.startswith("PartialObjectMetadata"):
            return f"{base};as={self.as_};v={self.version or 'v1'};g=meta.k8s.io"
        if self.as_ == "APIGroupDiscoveryList":
            return f"{base};g=apidiscovery.k8s.io;v={self.version or 'v2'};as=APIGroupDiscoveryList"
        return base


def parse_accept(header: str | None) -> list[MediaType]:
    out: list[tuple[float, int, MediaType]] = []
    if not header:
        return [MediaType("*/*", {})]
    for i, part in enumerate(header.split(",")):
        bits = [b.strip() for b in part.split(";")]
        if not bits[0]:
            continue
        params = {}
        for b in bits[1:]:
            k, _, v = b.partition("=")
            params[k.strip()] = v.strip().strip('"')
        try:
            q = float(params.pop("q", "1"))
        except ValueError:
            q = 1.0
        if q <= 0:
            continue
        out.append((-q, i, MediaType(bits[0].lower(), params)))
    out.sort(key=lambda t: (t[0], t[1]))
    return [m for _, _, m in out]


_JSONISH = {"application/json", "*/*", "application/*"}


def choose(header: str | None, *, allowed_as: tuple[str, ...] = (), protobuf: bool = False) -> Target:
    """The first media type in ``header`` we can produce; 406 NotAcceptable when none.

    ``protobuf``: the response is a built-in kind (or a list of one), which has a protobuf form."""
    for m in parse_accept(header):
        if m.type == PROTOBUF and protobuf and not m.as_ and m.params.get("stream") != "watch":
            return Target("protobuf")
        if m.type == PROTOBUF or m.type == "application/cbor":
            continue
        fmt = "yaml" if m.type == "application/yaml" else "json" if m.type in _JSONISH else ""
        if not fmt:
            continue
        as_ = m.as_
        if not as_:
            return Target(fmt)
        g, v = m.params.get("g", ""), m.params.get("v", "")
        if as_ in ("Table", "PartialObjectMetadata", "PartialObjectMetadataList"):
            if g == "meta.k8s.io" and v in ("v1", "v1beta1") and as_ in allowed_as:
                return Target(fmt, as_, v)
            continue
        if as_ == "APIGroupDiscoveryList":
            if g == "apidiscovery.k8s.io" and v in ("v2", "v2beta1") and as_ in allowed_as:
                return Target(fmt, as_, v)
            continue
    raise st.not_acceptable(f"only the following media types are accepted: {ACCEPTED}")


def encode(obj: Any, target: Target) -> bytes:
    if target.fmt == "protobuf":
        from .protobuf import encode as encode_protobuf

        body = encode_protobuf(obj)
        if body is None:
            raise st.not_acceptable(f"only the following media types are accepted: {ACCEPTED}")
        return body
    if target.fmt == "yaml":
        return yaml.safe_dump(obj, sort_keys=False, default_flow_style=False).encode()
    return orjson.dumps(obj)


#: nesting the emulator accepts: deeper bodies would exhaust Python's recursion in copies and patches
MAX_DEPTH = 100


def _check_structure(doc: Any, size: int) -> Any:
    """400 for a body nested deeper than MAX_DEPTH, or a YAML one whose aliases expand it past its size.

    A document of ``size`` bytes has at most ``size`` values unless YAML aliases repeat subtrees; the
    walk stops there, so expanding a "billion laughs" document costs no more than reading it.
    """
    budget = size + 1
    stack = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        budget -= 1
        if budget < 0:
            raise st.bad_request("error converting YAML to JSON: yaml: document contains excessive aliasing")
        if isinstance(node, dict | list):
            if depth > MAX_DEPTH:
                raise st.bad_request(f"the object provided is nested more than {MAX_DEPTH} levels deep")
            if isinstance(node, dict) and not all(isinstance(k, str) for k in node):
                bad = next(k for k in node if not isinstance(k, str))
                raise st.bad_request(f"error converting YAML to JSON: map key {bad!r} is not a string")
            stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))
        elif not isinstance(node, str | int | float | None):  # YAML dates, !!binary, !!set
            raise st.bad_request(f"error converting YAML to JSON: {type(node).__name__} values are not supported "
                                 f"(quote the value)")
    return doc


def decode_body(raw: bytes, content_type: str) -> Any:
    """A request body (JSON or YAML) as Python data; 400/415 with kube-apiserver's wording."""
    ct = (content_type or "application/json").split(";")[0].strip().lower()
    if not raw.strip():
        raise st.bad_request("the body of the request was empty")
    if ct in ("application/json", "application/merge-patch+json", "application/strategic-merge-patch+json",
              "application/json-patch+json", "*/*", ""):
        try:
            return _check_structure(orjson.loads(raw), len(raw))
        except orjson.JSONDecodeError as e:
            raise st.bad_request(f"the object provided is unrecognized (must be of type JSON): {e}") from None
    if ct in ("application/yaml", "application/apply-patch+yaml", "text/yaml", "application/x-yaml"):
        try:
            return _check_structure(yaml.safe_load(raw), len(raw))
        except yaml.YAMLError as e:
            raise st.bad_request(f"error converting YAML to JSON: {e}") from None
        except RecursionError:
            raise st.bad_request("error converting YAML to JSON: nested too deeply") from None
    if ct == "application/vnd.kubernetes.protobuf":
        from .protobuf import decode

        return decode(raw)
    raise st.unsupported_media_type(ct)
