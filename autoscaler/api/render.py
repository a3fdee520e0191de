"""NodeMetrics / PodMetrics objects exactly as metrics-server renders them, built fast.

Listing 30,000 pods is the hot path, so the quantity formatters here are integer-only versions
of :mod:`autoscaler.k8s.quantity`'s (same output, a fraction of the cost), and timestamp and
window strings are memoised: every pod scraped from one kubelet shares them. For whole listings
:func:`pod_rests` renders straight from the store's columns (:class:`PodUsageColumns`) with the
quantity arithmetic vectorised.

Both served versions (``v1``, GA in Kubernetes 1.37, and ``v1beta1``) have the same schema, so an
object differs between them only in ``apiVersion``: everything after it is rendered (and cached)
once. ``usage`` carries ``swap`` beside ``cpu`` and ``memory`` where the kubelet reported swap
(keys in Go's map order: cpu, memory, swap).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from itertools import pairwise
from typing import Any

import numpy as np
import orjson

from autoscaler.k8s.timefmt import format_duration, format_time
from autoscaler.storage.types import NodeUsage, PodUsage, PodUsageColumns

GROUP = "metrics.k8s.io"
#: served versions, preferred first (k8s.io/metrics install.go: v1 before v1beta1)
VERSIONS = ("v1", "v1beta1")
PREFERRED_VERSION = VERSIONS[0]


def group_version(version: str) -> str:
    return f"{GROUP}/{version}"

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


def usage_dict(cpu_nanocores: int, memory_bytes: int, swap_bytes: int | None) -> dict[str, str]:
    """A ``usage`` ResourceList: cpu and memory, and swap when reported."""
    out = {"cpu": cpu_string(cpu_nanocores), "memory": memory_string(memory_bytes)}
    if swap_bytes is not None:
        out["swap"] = memory_string(swap_bytes)
    return out


def node_item(usage: NodeUsage, labels: Mapping[str, str] | None, created: str, ts: TimeStrings) -> dict[str, Any]:
    """One NodeMetrics as a list item (no kind/apiVersion)."""
    meta: dict[str, Any] = {"name": usage.name, "creationTimestamp": created}
    if labels:
        meta["labels"] = labels
    return {
        "metadata": meta,
        "timestamp": ts.time(usage.timestamp),
        "window": ts.duration(usage.window),
        "usage": usage_dict(usage.cpu_nanocores, usage.memory_bytes, usage.swap_bytes),
    }


def pod_item(usage: PodUsage, labels: Mapping[str, str] | None, created: str, ts: TimeStrings) -> dict[str, Any]:
    """One PodMetrics as a list item (no kind/apiVersion). Containers in the store's order (by name)."""
    meta: dict[str, Any] = {"name": usage.name, "namespace": usage.namespace, "creationTimestamp": created}
    if labels:
        meta["labels"] = labels
    containers = [{"name": c.name, "usage": usage_dict(c.cpu_nanocores, c.memory_bytes, c.swap_bytes)}
                  for c in usage.containers]
    return {
        "metadata": meta,
        "timestamp": ts.time(usage.timestamp),
        "window": ts.duration(usage.window),
        "containers": containers,
    }


def single(kind: str, item: dict[str, Any], version: str = PREFERRED_VERSION) -> dict[str, Any]:
    """A top-level object: kind and apiVersion first, as the Go encoder orders them."""
    out: dict[str, Any] = {"kind": kind, "apiVersion": group_version(version)}
    out.update(item)
    return out


def item_list(kind: str, items: Iterable[dict[str, Any]], version: str = PREFERRED_VERSION) -> dict[str, Any]:
    """``NodeMetricsList`` / ``PodMetricsList`` with empty list metadata."""
    return {"kind": kind, "apiVersion": group_version(version), "metadata": {}, "items": list(items)}


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


def list_json(kind: str, pieces: list[str], version: str = PREFERRED_VERSION) -> bytes:
    head = f'{{"kind":"{kind}","apiVersion":"{group_version(version)}","metadata":{{}},"items":['
    if not pieces:
        return (head + "]}").encode()
    # the envelope goes onto the first and last pieces, so the (megabytes of) text is copied
    # once by the join and once by the encode, not again for each concatenation
    parts = list(pieces)
    parts[0] = head + parts[0]
    parts[-1] = parts[-1] + "]}"
    return ",".join(parts).encode()


def node_pieces(entries: Sequence[Any], usages: Sequence[NodeUsage | None], created: str, ts: TimeStrings) -> list[str]:
    """Encoded NodeMetrics items for ``entries`` (ObjectIndex entries) with data in ``usages``."""
    time_s, dur_s = ts.time, ts.duration
    out = []
    for e, u in zip(entries, usages, strict=True):
        if u is None:
            continue
        out.append(f'{e.head}{created}{e.tail}{time_s(u.timestamp)}","window":"{dur_s(u.window)}",'
                   f'"usage":{_usage_json(u.cpu_nanocores, u.memory_bytes, u.swap_bytes)}}}')
    return out


def _usage_json(cpu: int, mem: int, swap: int | None) -> str:
    if swap is None:
        return f'{{"cpu":"{cpu_string(cpu)}","memory":"{memory_string(mem)}"}}'
    return f'{{"cpu":"{cpu_string(cpu)}","memory":"{memory_string(mem)}","swap":"{memory_string(swap)}"}}'



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
        if len(cs) == 1 and cs[0].swap_bytes is None:  # the common case, without a generator and a join
            c = cs[0]
            containers = (f'{{"name":{names[c.name]},"usage":{{"cpu":"{cpu_s(c.cpu_nanocores)}",'
                          f'"memory":"{mem_s(c.memory_bytes)}"}}}}')
        else:
            containers = ",".join([
                f'{{"name":{names[c.name]},"usage":{_usage_json(c.cpu_nanocores, c.memory_bytes, c.swap_bytes)}}}'
                for c in cs
            ])
        append(f'{e.head}{created}{e.tail}{time_s(u.timestamp)}","window":"{dur_s(u.window)}",'
               f'"containers":[{containers}]}}')
    return out


# -- bulk path: quantities and per-pod JSON from the store's columns ---------------------------
#
# The same strings as cpu_string / memory_string / pod_pieces, computed with numpy for a whole
# listing: the per-value arithmetic (stripping zeros, picking the suffix) is vectorised and only
# the final f-string is per value.

_DEC_BY_E = np.array([_DEC_SUFFIX[e] for e in range(-9, 19, 3)], dtype=object)  # index (e + 9) // 3
_BIN_BY_K = np.array(_BIN_SUFFIX, dtype=object)


def _strip_tens(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``m`` without trailing decimal zeros, and how many were stripped (0 stays 0)."""
    m = m.copy()
    tz = np.zeros(len(m), np.int64)
    for p in (16, 8, 4, 2, 1):  # an int64 has at most 18 trailing zeros
        d = np.int64(10**p)
        hit = (m % d == 0) & (m != 0)
        m[hit] //= d
        tz[hit] += p
    return m, tz


def _decimal_si_many(m: np.ndarray, e0: int) -> list[str]:
    """:func:`_decimal_si` of every ``m[i] * 10**e0`` (``m >= 0``, ``e0`` in -9..0)."""
    m, tz = _strip_tens(m)
    e = tz + e0
    k = e % 3
    m = m * np.power(10, k)  # k <= tz: the result never exceeds the input
    e -= k
    out = [f"{a}{b}" for a, b in zip(m.tolist(), _DEC_BY_E[(e + 9) // 3].tolist(), strict=True)]
    for i in np.flatnonzero(m == 0).tolist():
        out[i] = "0"
    return out


def cpu_strings(nanocores: np.ndarray) -> list[str]:
    """:func:`cpu_string` of each value."""
    a = np.asarray(nanocores, dtype=np.int64)
    if len(a) and a.min() < 0:
        return [cpu_string(x) for x in a.tolist()]
    return _decimal_si_many(a, -9)


def memory_strings(num_bytes: np.ndarray) -> list[str]:
    """:func:`memory_string` of each value."""
    b = np.asarray(num_bytes, dtype=np.int64)
    if len(b) and b.min() < 0:
        return [memory_string(x) for x in b.tolist()]
    small = b < 1024
    k = np.zeros(len(b), np.int64)
    b = b.copy()
    for _ in range(6):
        hit = ~small & (k < 6) & (b & 1023 == 0)
        if not hit.any():
            break
        b[hit] >>= 10
        k[hit] += 1
    out = [f"{a}{s}" for a, s in zip(b.tolist(), _BIN_BY_K[k].tolist(), strict=True)]
    if small.any():
        where = np.flatnonzero(small)
        for i, v in zip(where.tolist(), _decimal_si_many(b[where], 0), strict=True):
            out[i] = v
    return out


def _strings_of(values: np.ndarray, fmt: Any) -> list[str]:
    """``fmt(v)`` of each value, formatting each distinct value once."""
    uniq, inv = np.unique(values, return_inverse=True)
    done = [fmt(v) for v in uniq.tolist()]
    return [done[i] for i in inv.tolist()]


def pod_rests(cols: PodUsageColumns, ts: TimeStrings) -> list[str]:
    """For each pod of ``cols``, its encoded PodMetrics item after the metadata: everything
    :func:`pod_pieces` writes after ``entry.tail`` (timestamp, window, containers)."""
    if not len(cols):
        return []
    times = _strings_of(cols.timestamp_us, lambda us: ts.time(us / 1_000_000))
    windows = _strings_of(cols.window_us, lambda us: ts.duration(us / 1_000_000))
    names = _NAMES
    cpu, mem = cpu_strings(cols.cpu_nanocores), memory_strings(cols.memory_bytes)
    if cols.swap_bytes is None:
        conts = [f'{{"name":{names[n]},"usage":{{"cpu":"{c}","memory":"{m}"}}}}'
                 for n, c, m in zip(cols.names, cpu, mem, strict=True)]
    else:  # only containers with swap get the key
        has = cols.swap_bytes >= 0
        swap: list[str | None] = memory_strings(np.where(has, cols.swap_bytes, 0))
        if not has.all():
            swap = [x if h else None for x, h in zip(swap, has.tolist(), strict=True)]
        conts = [f'{{"name":{names[n]},"usage":{{"cpu":"{c}","memory":"{m}","swap":"{w}"}}}}' if w is not None
                 else f'{{"name":{names[n]},"usage":{{"cpu":"{c}","memory":"{m}"}}}}'
                 for n, c, m, w in zip(cols.names, cpu, mem, swap, strict=True)]
    if len(conts) != len(cols):  # some pods have several containers: join each pod's
        off = cols.offsets.tolist()
        conts = [",".join(conts[a:b]) for a, b in pairwise(off)]
    return [f'{t}","window":"{w}","containers":[{c}]}}' for t, w, c in zip(times, windows, conts, strict=True)]
