"""Decode the kubelet Summary API (``/stats/summary?only_cpu_and_memory=true``) into a :class:`NodeBatch`.

The Summary API carries integer nanosecond CPU counters (exact, no float truncation) and a start
time for every container. Decoding is one ``orjson.loads`` plus one pass over the containers;
RFC 3339 times in the kubelet's usual shape are parsed without ``datetime.strptime``.

Rules (metrics-server v0.5, metrics-pipeline.md §1.7): the node point needs ``cpu.time``,
``usageCoreNanoSeconds`` and ``workingSetBytes``; a container lacking its CPU time, counter or
working set is kept with NaN so the store drops its whole pod for the cycle. Unlike v0.5 a
missing container ``startTime`` does not drop the pod (the resource endpoint may omit it too);
restart detection then relies on the counter-decrease check.

Swap (1.37 kubelets, nodes and containers): ``swap.swapUsageBytes`` where present. A container or
node without it has no swap (NaN), never zero, so the API omits the key rather than invent one.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import orjson

from autoscaler.k8s.timefmt import parse_time
from autoscaler.scraper.decode_resource import DecodeError
from autoscaler.storage.types import NodeBatch

_NAN = float("nan")
_EPOCH_ORDINAL = dt.date(1970, 1, 1).toordinal()


def rfc3339(text: Any, cache: dict[str, float]) -> float:
    """Unix seconds of an RFC 3339 string (NaN if absent); ``cache`` memoizes within one response."""
    if text is None or text == "":
        return _NAN
    if not isinstance(text, str):  # Go's decoder fails the whole response on a mistyped time too
        raise DecodeError(f"invalid time {text!r}: want an RFC 3339 string")
    hit = cache.get(text)
    if hit is not None:
        return hit
    if len(text) == 20 and text[19] == "Z" and text[4] == "-" and text[10] == "T" and text[13] == ":":
        try:
            days = dt.date(int(text[0:4]), int(text[5:7]), int(text[8:10])).toordinal() - _EPOCH_ORDINAL
            value = float(days * 86400 + int(text[11:13]) * 3600 + int(text[14:16]) * 60 + int(text[17:19]))
        except ValueError:
            raise DecodeError(f"invalid time {text!r}") from None
    else:
        try:
            value = parse_time(text)
        except ValueError as exc:
            raise DecodeError(str(exc)) from None
    cache[text] = value
    return value


def _counter(stats: Any, key: str) -> int:
    if isinstance(stats, dict):
        v = stats.get(key)
        if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
            return v
    return -1


def decode_summary(body: bytes | str, node: str, scrape_time: float) -> NodeBatch:
    """Decode one Summary API response; ``scrape_time`` = request start (Unix seconds)."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"invalid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise DecodeError("summary is not a JSON object")
    node_doc = doc.get("node")
    pods = doc.get("pods") or []
    if not isinstance(pods, list) or (node_doc is not None and not isinstance(node_doc, dict)):
        raise DecodeError("summary: 'node' must be an object and 'pods' a list")
    cache: dict[str, float] = {}
    namespaces: list[str] = []
    pod_names: list[str] = []
    containers: list[str] = []
    starts: list[float] = []
    times: list[float] = []
    cpus: list[int] = []
    mems: list[int] = []
    swaps: list[int] = []  # filled only once a container reports swap (then padded with -1)
    for i, pod in enumerate(pods):
        if not isinstance(pod, dict):
            raise DecodeError(f"summary: pods[{i}] is not an object")
        ref = pod.get("podRef") or {}
        name, ns = (ref.get("name"), ref.get("namespace")) if isinstance(ref, dict) else (None, None)
        if not isinstance(name, str) or not isinstance(ns, str) or not name:
            raise DecodeError(f"summary: pods[{i}].podRef lacks name/namespace")
        pod_containers = pod.get("containers") or ()
        if not isinstance(pod_containers, list | tuple):
            raise DecodeError(f"summary: pods[{i}].containers is not a list")
        for j, c in enumerate(pod_containers):
            cname = c.get("name") if isinstance(c, dict) else None
            if not isinstance(cname, str):
                raise DecodeError(f"summary: pods[{i}].containers[{j}] has no name")
            namespaces.append(ns)
            pod_names.append(name)
            containers.append(cname)
            st = c.get("startTime")
            starts.append(cache[st] if type(st) is str and st in cache else rfc3339(st, cache))
            cpu = c.get("cpu")
            if type(cpu) is dict:
                t = cpu.get("time")
                times.append(cache[t] if type(t) is str and t in cache else rfc3339(t, cache))
                v = cpu.get("usageCoreNanoSeconds")
                cpus.append(v if type(v) is int and v >= 0 else -1)
            else:
                times.append(_NAN)
                cpus.append(-1)
            mem = c.get("memory")
            v = mem.get("workingSetBytes") if type(mem) is dict else None
            mems.append(v if type(v) is int and v >= 0 else -1)
            sw = c.get("swap")
            if sw is not None:
                if len(swaps) < len(mems) - 1:
                    swaps.extend([-1] * (len(mems) - 1 - len(swaps)))
                swaps.append(_counter(sw, "swapUsageBytes"))
    try:
        cpu_ns = np.array(cpus, dtype=np.int64)
        mem_a = np.array(mems, dtype=np.float64)
    except OverflowError:
        raise DecodeError("summary: a container's usageCoreNanoSeconds or workingSetBytes is out of range") from None
    missing_cpu = cpu_ns < 0
    batch = NodeBatch(
        node=node,
        scrape_time=scrape_time,
        namespaces=namespaces,
        pods=pod_names,
        containers=containers,
        start_time=np.array(starts, dtype=np.float64),
        timestamp=np.array(times, dtype=np.float64),
        cpu=np.where(missing_cpu, np.nan, cpu_ns / 1e9),
        memory=np.where(mem_a < 0, np.nan, mem_a),
        cpu_ns=np.where(missing_cpu, 0, cpu_ns),
    )
    if swaps:
        swaps.extend([-1] * (len(mems) - len(swaps)))
        sw_a = np.array(swaps, dtype=np.float64)
        batch.swap = np.where(sw_a < 0, np.nan, sw_a)
    if node_doc:
        cpu, mem = node_doc.get("cpu"), node_doc.get("memory")
        ncpu, nmem = _counter(cpu, "usageCoreNanoSeconds"), _counter(mem, "workingSetBytes")
        if ncpu >= 1 << 63 or nmem >= 1 << 63:
            raise DecodeError("summary: the node's usageCoreNanoSeconds or workingSetBytes is out of range")
        ts = rfc3339(cpu.get("time"), cache) if isinstance(cpu, dict) else _NAN
        if ncpu >= 0 and nmem >= 0 and ts == ts:
            batch.node_cpu, batch.node_cpu_ns = ncpu / 1e9, ncpu
            batch.node_memory, batch.node_timestamp = float(nmem), ts
            batch.node_start_time = rfc3339(node_doc.get("startTime"), cache)
            nswap = _counter(node_doc.get("swap"), "swapUsageBytes")
            if nswap >= 0:
                batch.node_swap = float(nswap)
    return batch
