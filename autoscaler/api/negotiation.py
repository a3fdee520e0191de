"""Accept-header negotiation the way kube-apiserver does it, for a JSON-only server.

Clients ask for protobuf first (kubectl top, the HPA controller) with JSON or ``*/*`` as a
fallback, for ``as=Table`` (kubectl get), ``as=PartialObjectMetadata[List]`` (metadata clients)
or for aggregated discovery (``as=APIGroupDiscoveryList``). We pick the first acceptable form in
preference order and answer 406 when nothing we can produce is acceptable.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from autoscaler.k8s.status import ApiError, not_acceptable

JSON = "application/json"

# What a response can be rendered as.
PLAIN = "plain"
TABLE = "table"
METADATA = "metadata"
DISCOVERY_V2 = "discovery-v2"


@dataclass(frozen=True)
class MediaRange:
    type: str
    subtype: str
    params: dict[str, str] = field(default_factory=dict)
    q: float = 1.0


@dataclass(frozen=True)
class Choice:
    """The negotiated rendering: ``form`` and, for Table/metadata/discovery, the group version asked for."""

    form: str
    version: str = ""


def parse_accept(header: str | None) -> list[MediaRange]:
    """Media ranges of an Accept header, highest q first (stable for equal q)."""
    if not header or not header.strip():
        return [MediaRange("*", "*")]
    out: list[MediaRange] = []
    for part in header.split(","):
        part = part.strip()
        if not part:
            continue
        pieces = [p.strip() for p in part.split(";")]
        mtype, _, sub = pieces[0].lower().partition("/")
        params: dict[str, str] = {}
        q = 1.0
        for p in pieces[1:]:
            k, _, v = p.partition("=")
            k, v = k.strip().lower(), v.strip().strip('"')
            if k == "q":
                try:
                    q = float(v)
                except ValueError:
                    q = 0.0
            elif k:
                params[k] = v
        if q > 0:
            out.append(MediaRange(mtype or "*", sub or "*", params, q))
    out.sort(key=lambda m: -m.q)
    return out


def _json_ok(m: MediaRange) -> bool:
    return (m.type, m.subtype) in (("application", "json"), ("application", "*"), ("*", "*"))


def negotiate(header: str | None, *, table: bool = False, metadata: bool = False, discovery_v2: bool = False) -> Choice:
    """Pick how to render a response given the request's Accept header.

    ``table``/``metadata``/``discovery_v2`` say which transformed forms the endpoint can produce.
    Raises a 406 :class:`ApiError` when no acceptable form exists.
    """
    for m in parse_accept(header):
        if not _json_ok(m):
            continue
        as_ = m.params.get("as")
        if not as_:
            return Choice(PLAIN)
        g, v = m.params.get("g", ""), m.params.get("v", "")
        if table and as_ == "Table" and g == "meta.k8s.io" and v in ("v1", "v1beta1"):
            return Choice(TABLE, v)
        if metadata and as_ in ("PartialObjectMetadata", "PartialObjectMetadataList") and g == "meta.k8s.io" \
                and v in ("v1", "v1beta1"):
            return Choice(METADATA, v)
        if discovery_v2 and as_ == "APIGroupDiscoveryList" and g == "apidiscovery.k8s.io" and v in ("v2", "v2beta1"):
            return Choice(DISCOVERY_V2, v)
    raise _not_acceptable(header)


def _not_acceptable(header: str | None) -> ApiError:
    return not_acceptable(
        f"only the following media types are accepted: {JSON} (Accept: {header!r})"
    )
