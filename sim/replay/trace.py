"""The trace: recorded load of one or more workloads, and its native, versioned file format.

A trace holds, per workload (namespace, kind, name): its pods with their lifecycle (created,
started, ready, deleted), per container the CPU usage (cores) and memory working set (bytes)
samples with requests and limits, the replica count over time and the HPA manifests in force
over time. docs/trace-format.md is the specification; :data:`FORMAT` and :data:`VERSION` identify
a file, and readers refuse versions they do not know rather than guess.

The types are in :mod:`sim.replay.tracemodel` (re-exported here); the CSV form is
:mod:`sim.replay.csvtrace`, which :func:`read_trace` and :func:`write_trace` pick by file name.

The native file is one JSON document (gzip-compressed when the name ends in ``.gz``). Every time
in it is seconds relative to ``start`` (RFC 3339), which keeps sample arrays short and exact.
"""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from autoscaler.k8s.timefmt import parse_time
from sim.replay.tracemodel import ContainerTrace, HPARecord, PodTrace, Trace, TraceError, WorkloadTrace

__all__ = ["FORMAT", "VERSION", "ContainerTrace", "HPARecord", "PodTrace", "Trace", "TraceError", "WorkloadTrace",
           "from_document", "is_csv", "read_trace", "to_document", "write_trace"]

FORMAT = "autoscaler-trace"
VERSION = 1


def _rel(x: float | None, start: float) -> float | None:
    return None if x is None else round(x - start, 3)


def _abs(x: Any, start: float, where: str) -> float | None:
    if x is None:
        return None
    if isinstance(x, bool) or not isinstance(x, int | float) or not abs(x) < 1e15:
        raise TraceError(f"{where}: want seconds since start (a number), got {x!r}")
    return start + float(x)


def to_document(trace: Trace) -> dict[str, Any]:
    """The native JSON document of ``trace`` (see docs/trace-format.md)."""
    from autoscaler.k8s.timefmt import format_micro_time

    s = trace.start
    workloads = []
    for w in trace.workloads:
        pods = []
        for p in w.pods:
            containers = []
            for c in p.containers:
                cd: dict[str, Any] = {
                    "name": c.name,
                    "t": np.round(c.t - s, 3).tolist(),
                    "cpu": np.round(c.cpu, 6).tolist(),
                    "memory": np.rint(c.memory).astype(np.int64).tolist(),
                }
                res = {k: v for k, v in (("cpuRequest", c.cpu_request), ("cpuLimit", c.cpu_limit),
                                         ("memoryRequest", c.memory_request), ("memoryLimit", c.memory_limit))
                       if v is not None}
                if res:
                    cd["resources"] = res
                containers.append(cd)
            pd: dict[str, Any] = {"name": p.name}
            for key in ("created", "started", "ready", "deleted"):
                v = _rel(getattr(p, key), s)
                if v is not None:
                    pd[key] = v
            pd["containers"] = containers
            pods.append(pd)
        wd: dict[str, Any] = {"namespace": w.namespace, "kind": w.kind, "name": w.name,
                              "replicas": [[round(float(t) - s, 3), int(v)] for t, v in zip(w.replicas_t, w.replicas,
                                                                                           strict=True)],
                              "hpa": [{"since": round(h.since - s, 3), "manifest": h.manifest} for h in w.hpas],
                              "pods": pods}
        workloads.append(wd)
    return {"format": FORMAT, "version": VERSION, "start": format_micro_time(s), "duration": round(trace.end - s, 3),
            "resolution": trace.resolution, "source": trace.source, "workloads": workloads}


def _array(value: Any, where: str, dtype: type = np.float64) -> np.ndarray:
    if not isinstance(value, list):
        raise TraceError(f"{where}: want a list of numbers")
    try:
        arr = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError):
        raise TraceError(f"{where}: want a list of numbers") from None
    if arr.ndim != 1 or not np.isfinite(arr).all():
        raise TraceError(f"{where}: want a flat list of finite numbers")
    return arr


def _list(value: Any, where: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise TraceError(f"{where}: want a list, got {type(value).__name__}")
    return value


def _opt_number(d: dict[str, Any], key: str, where: str) -> float | None:
    v = d.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v < 1e300:
        raise TraceError(f"{where}.{key}: want a non-negative number, got {v!r}")
    return float(v)


def from_document(doc: Any, name: str = "trace") -> Trace:
    """Read a native trace document; every error names the file and the JSON path."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise TraceError(f"{name}: not an {FORMAT} document (missing \"format\": \"{FORMAT}\")")
    if doc.get("version") != VERSION:
        raise TraceError(f"{name}: unsupported trace version {doc.get('version')!r} (this build reads version {VERSION})")
    try:
        start = parse_time(str(doc.get("start")))
    except ValueError:
        raise TraceError(f"{name}: start: want an RFC 3339 time, got {doc.get('start')!r}") from None
    duration = doc.get("duration")
    resolution = doc.get("resolution")
    for key, v in (("duration", duration), ("resolution", resolution)):
        if (isinstance(v, bool) or not isinstance(v, int | float) or v < 0 or (key == "resolution" and v <= 0)
                or not v < 1e15):  # also keeps float() of a huge integer from overflowing
            raise TraceError(f"{name}: {key}: want a positive number of seconds, got {v!r}")
    workloads = []
    for i, wd in enumerate(_list(doc.get("workloads"), f"{name}: workloads")):
        wp = f"{name}: workloads[{i}]"
        if not isinstance(wd, dict) or not wd.get("name") or not wd.get("namespace"):
            raise TraceError(f"{wp}: want an object with namespace and name")
        w = WorkloadTrace(str(wd["namespace"]), str(wd["name"]), str(wd.get("kind") or ""))
        reps = _list(wd.get("replicas"), f"{wp}.replicas")
        try:
            w.replicas_t = np.asarray([start + float(t) for t, _ in reps], np.float64)
            w.replicas = np.asarray([int(v) for _, v in reps], np.int64)
        except (TypeError, ValueError, OverflowError):
            raise TraceError(f"{wp}.replicas: want a list of [seconds, replicas] pairs") from None
        for j, hd in enumerate(_list(wd.get("hpa"), f"{wp}.hpa")):
            if not isinstance(hd, dict) or not isinstance(hd.get("manifest"), dict):
                raise TraceError(f"{wp}.hpa[{j}]: want an object with since and manifest")
            since = _abs(hd.get("since", 0), start, f"{wp}.hpa[{j}].since")
            w.hpas.append(HPARecord(float(since or start), hd["manifest"]))
        for j, pd in enumerate(_list(wd.get("pods"), f"{wp}.pods")):
            pp = f"{wp}.pods[{j}]"
            if not isinstance(pd, dict) or not pd.get("name"):
                raise TraceError(f"{pp}: want an object with a name")
            containers = []
            for k, cd in enumerate(_list(pd.get("containers"), f"{pp}.containers")):
                cp = f"{pp}.containers[{k}]"
                if not isinstance(cd, dict) or not cd.get("name"):
                    raise TraceError(f"{cp}: want an object with a name")
                t = _array(cd.get("t"), f"{cp}.t") + start
                cpu = _array(cd.get("cpu"), f"{cp}.cpu")
                mem = _array(cd.get("memory"), f"{cp}.memory")
                if not (len(t) == len(cpu) == len(mem)):
                    raise TraceError(f"{cp}: t, cpu and memory have different lengths ({len(t)}, {len(cpu)}, {len(mem)})")
                if len(t) > 1 and (np.diff(t) <= 0).any():
                    raise TraceError(f"{cp}.t: times must increase")
                res = cd.get("resources") or {}
                if not isinstance(res, dict):
                    raise TraceError(f"{cp}.resources: want an object")
                containers.append(ContainerTrace(
                    str(cd["name"]), t, cpu, mem,
                    _opt_number(res, "cpuRequest", f"{cp}.resources"), _opt_number(res, "cpuLimit", f"{cp}.resources"),
                    _opt_number(res, "memoryRequest", f"{cp}.resources"),
                    _opt_number(res, "memoryLimit", f"{cp}.resources")))
            w.pods.append(PodTrace(str(pd["name"]), containers,
                                   *(_abs(pd.get(key), start, f"{pp}.{key}")
                                     for key in ("created", "started", "ready", "deleted"))))
        workloads.append(w)
    return Trace(workloads, start, start + float(duration), float(resolution), str(doc.get("source") or ""))


def is_csv(path: str | Path) -> bool:
    name = str(path).lower()
    return name.endswith(".csv") or name.endswith(".csv.gz")


def read_trace(path: str | Path, *, skip_invalid: bool = False) -> tuple[Trace, int]:
    """Read a native or CSV trace (by name); returns the trace and the number of skipped CSV rows."""
    p = Path(path)
    if not p.exists():
        raise TraceError(f"{p}: no such file")
    if is_csv(p):
        from sim.replay.csvtrace import read_csv

        return read_csv(p, skip_invalid=skip_invalid)
    raw = p.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise TraceError(f"{p}: corrupt gzip data: {e}") from None
    try:
        doc = json.loads(raw)
    except ValueError as e:
        raise TraceError(f"{p}: not valid JSON: {e}") from None
    except RecursionError:
        raise TraceError(f"{p}: not valid JSON: nested too deeply") from None
    return from_document(doc, str(p)), 0


def write_trace(trace: Trace, path: str | Path) -> None:
    """Write ``trace`` natively, or as long CSV when the name ends in .csv / .csv.gz."""
    p = Path(path)
    if p.parent and not p.parent.exists():
        p.parent.mkdir(parents=True, exist_ok=True)
    if is_csv(p):
        from sim.replay.csvtrace import write_csv

        write_csv(trace, p)
        return
    data = json.dumps(to_document(trace), separators=(",", ":")).encode()
    if p.name.endswith(".gz"):
        data = gzip.compress(data, compresslevel=9, mtime=0)
    p.write_bytes(data)
