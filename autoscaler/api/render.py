"""NodeMetrics / PodMetrics objects exactly as metrics-server renders them, built fast.

Listing 30,000 pods is the hot path, so the quantity formatters here are integer-only versions
of :mod:`autoscaler.k8s.quantity`'s (same output, a fraction of the cost), and timestamp and
window strings are memoised: every pod scraped from one kubelet shares them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

from autoscaler.k8s.timefmt import format_duration, format_time
from autoscaler.storage.types import NodeUsage, PodUsage

GROUP = "metrics.k8s.io"
VERSION = "v1beta1"
GROUP_VERSION = f"{GROUP}/{VERSION}"

_DEC_SUFFIX = {-9: "n", -6: "u", -3: "m", 0: "", 3: "k", 6: "M", 9: "G", 12: "T", 15: "P", 18: "E"}
_BIN_SUFFIX = ("", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei")


def _decimal_si(m: int, e: int) -> str:
    """Canonical DecimalSI string of the non-negative integer ``m * 10**e``."""
    if m == 0:
        return "0"
    while m % 10 == 0:
        m //= 10
        e += 1
    k = e % 3
    if k:
        m *= 10**k
        e -= k
    if e > 18:
        m *= 10 ** (e - 18)
        e = 18
    return f"{m}{_DEC_SUFFIX[e]}"


def cpu_string(nanocores: int) -> str:
    """``3142466n``, ``20m``, ``2``: the CPU usage string (integer nanocores, DecimalSI)."""
    return _decimal_si(int(nanocores), -9)


def memory_string(num_bytes: int) -> str:
    """``12240Ki``, ``1Mi``, ``512``: the memory usage string (integer bytes, BinarySI)."""
    b = int(num_bytes)
    if b < 1024:
        return _decimal_si(b, 0)
    k = 0
    while k < 6 and b & 1023 == 0:
        b >>= 10
        k += 1
    return f"{b}{_BIN_SUFFIX[k]}"


class TimeStrings:
    """Memoised ``timestamp`` / ``window`` strings (bounded: cleared when it grows large)."""

    __slots__ = ("_durations", "_times")

    def __init__(self) -> None:
        self._times: dict[float, str] = {}
        self._durations: dict[float, str] = {}

    def time(self, ts: float) -> str:
        s = self._times.get(ts)
        if s is None:
            if len(self._times) > 50_000:
                self._times.clear()
            s = self._times[ts] = format_time(ts)
        return s

    def duration(self, seconds: float) -> str:
        s = self._durations.get(seconds)
        if s is None:
            if len(self._durations) > 50_000:
                self._durations.clear()
            s = self._durations[seconds] = format_duration(seconds)
        return s


def node_item(usage: NodeUsage, labels: Mapping[str, str] | None, created: str, ts: TimeStrings) -> dict[str, Any]:
    """One NodeMetrics as a list item (no kind/apiVersion)."""
    meta: dict[str, Any] = {"name": usage.name, "creationTimestamp": created}
    if labels:
        meta["labels"] = labels
    return {
        "metadata": meta,
        "timestamp": ts.time(usage.timestamp),
        "window": ts.duration(usage.window),
        "usage": {"cpu": cpu_string(usage.cpu_nanocores), "memory": memory_string(usage.memory_bytes)},
    }


def pod_item(usage: PodUsage, labels: Mapping[str, str] | None, created: str, ts: TimeStrings) -> dict[str, Any]:
    """One PodMetrics as a list item (no kind/apiVersion). Containers in the store's order (by name)."""
    meta: dict[str, Any] = {"name": usage.name, "namespace": usage.namespace, "creationTimestamp": created}
    if labels:
        meta["labels"] = labels
    containers = [
        {"name": c.name, "usage": {"cpu": cpu_string(c.cpu_nanocores), "memory": memory_string(c.memory_bytes)}}
        for c in usage.containers
    ]
    return {
        "metadata": meta,
        "timestamp": ts.time(usage.timestamp),
        "window": ts.duration(usage.window),
        "containers": containers,
    }


def single(kind: str, item: dict[str, Any]) -> dict[str, Any]:
    """A top-level object: kind and apiVersion first, as the Go encoder orders them."""
    out: dict[str, Any] = {"kind": kind, "apiVersion": GROUP_VERSION}
    out.update(item)
    return out


def item_list(kind: str, items: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """``NodeMetricsList`` / ``PodMetricsList`` with empty list metadata."""
    return {"kind": kind, "apiVersion": GROUP_VERSION, "metadata": {}, "items": list(items)}


# -- fast path: a whole list encoded straight to JSON text -------------------------------------
#
# Byte-for-byte the same document as ``orjson.dumps(item_list(...))`` of the dict form (the tests
# check this), built by joining pre-encoded fragments: object metadata is encoded once per object
# by the index (ObjectIndex.Entry.head/tail), names through orjson, and every other string here is
# a quantity, an RFC 3339 time or a Go duration, which never need escaping.


class _JSONNames(dict):
    """Memoised JSON encoding of container names."""

    def __missing__(self, key: str) -> str:
        if len(self) > 100_000:
            self.clear()
        v = self[key] = orjson.dumps(key).decode()
        return v


_NAMES = _JSONNames()


def list_json(kind: str, pieces: list[str]) -> bytes:
    return (f'{{"kind":"{kind}","apiVersion":"{GROUP_VERSION}","metadata":{{}},"items":['
            + ",".join(pieces) + "]}").encode()


def node_pieces(entries: Sequence[Any], usages: Sequence[NodeUsage | None], created: str, ts: TimeStrings) -> list[str]:
    """Encoded NodeMetrics items for ``entries`` (ObjectIndex entries) with data in ``usages``."""
    time_s, dur_s = ts.time, ts.duration
    out = []
    for e, u in zip(entries, usages, strict=True):
        if u is None:
            continue
        out.append(f'{e.head}{created}{e.tail}{time_s(u.timestamp)}","window":"{dur_s(u.window)}",'
                   f'"usage":{{"cpu":"{cpu_string(u.cpu_nanocores)}","memory":"{memory_string(u.memory_bytes)}"}}}}')
    return out


def pod_pieces(entries: Sequence[Any], usages: Sequence[PodUsage | None], created: str, ts: TimeStrings) -> list[str]:
    """Encoded PodMetrics items for ``entries`` (ObjectIndex entries) with data in ``usages``."""
    time_s, dur_s, names = ts.time, ts.duration, _NAMES
    cpu_s, mem_s = cpu_string, memory_string
    out: list[str] = []
    append = out.append
    for e, u in zip(entries, usages, strict=True):
        if u is None:
            continue
        cs = u.containers
        if len(cs) == 1:  # the common case, without a generator and a join
            c = cs[0]
            containers = (f'{{"name":{names[c.name]},"usage":{{"cpu":"{cpu_s(c.cpu_nanocores)}",'
                          f'"memory":"{mem_s(c.memory_bytes)}"}}}}')
        else:
            containers = ",".join([
                f'{{"name":{names[c.name]},"usage":{{"cpu":"{cpu_s(c.cpu_nanocores)}","memory":"{mem_s(c.memory_bytes)}"}}}}'
                for c in cs
            ])
        append(f'{e.head}{created}{e.tail}{time_s(u.timestamp)}","window":"{dur_s(u.window)}",'
               f'"containers":[{containers}]}}')
    return out
