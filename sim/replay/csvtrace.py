"""Long-format CSV traces: the interchange format for load recorded elsewhere.

One row per container sample under a header row::

    timestamp,namespace,workload,pod,container,cpu_cores,memory_bytes
        [,cpu_request_cores,cpu_limit_cores,memory_request_bytes,memory_limit_bytes]

Columns may come in any order; ``timestamp`` is RFC 3339 or Unix seconds; empty optional cells
mean "not set". A pod's first and last rows bound its lifetime. A bad row raises
:class:`CsvTraceError` naming its line, or is skipped and counted with ``skip_invalid`` —
nothing is guessed: a container whose resources change between rows is an error too.

A well-formed file (no quotes, every line with the header's number of fields) is read column by
column in numpy: the separators' positions give every cell's bytes, equal cells are found by a
checked hash of their bytes, and each distinct cell is converted once, by the row reader's own
``float()``; several times faster than row by row. Anything else — a bad row, quoting, blank lines, ``skip_invalid``
— takes the row-by-row reader, which accepts exactly the same files and names the line of an error.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from autoscaler.k8s.timefmt import parse_time
from sim.replay.tracemodel import ContainerTrace, PodTrace, Trace, TraceError, WorkloadTrace

REQUIRED = ("timestamp", "namespace", "workload", "pod", "container", "cpu_cores", "memory_bytes")
OPTIONAL = ("cpu_request_cores", "cpu_limit_cores", "memory_request_bytes", "memory_limit_bytes")


class CsvTraceError(TraceError):
    """A CSV trace error; ``line`` is the 1-based line number (0 for whole-file errors)."""

    def __init__(self, path: str, line: int, message: str):
        super().__init__(f"{path}:{line}: {message}" if line else f"{path}: {message}")
        self.line = line


def _open_text(path: Path) -> io.TextIOBase:
    if path.name.lower().endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def _number(text: str, column: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise ValueError(f"{column}: not a number: {text!r}") from None
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{column}: want a finite number >= 0, got {text!r}")
    return v


def _timestamp(text: str) -> float:
    t = text.strip()
    try:
        v = float(t)
    except ValueError:
        try:
            return parse_time(t)
        except ValueError:
            raise ValueError(f"timestamp: want RFC 3339 or Unix seconds, got {text!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"timestamp: want RFC 3339 or Unix seconds, got {text!r}")
    return v


class _Container:
    """One container's samples (lists from the row reader, arrays from the column reader)."""

    __slots__ = ("cpu", "lines", "mem", "res", "t")

    def __init__(self, res: tuple[float | None, ...]):
        self.res = res
        self.t: list[float] | np.ndarray = []
        self.cpu: list[float] | np.ndarray = []
        self.mem: list[float] | np.ndarray = []
        self.lines: list[int] | np.ndarray = []


def read_csv(path: str | Path, *, skip_invalid: bool = False) -> tuple[Trace, int]:
    """Read a long-format CSV trace; returns ``(trace, skipped_rows)``."""
    p = Path(path)
    name = str(p)
    if not skip_invalid:
        containers = _read_columns(p)
        if containers:
            return _build(containers, name), 0
    try:
        fh = _open_text(p)
    except OSError as e:
        raise CsvTraceError(name, 0, str(e)) from None
    with fh:
        rows: Iterator[list[str]] = csv.reader(fh)
        try:
            header = next(rows)
        except StopIteration:
            raise CsvTraceError(name, 0, "empty file (want a header row)") from None
        except (csv.Error, UnicodeDecodeError, OSError, EOFError, zlib.error) as e:
            raise CsvTraceError(name, 1, f"unreadable: {e}") from None
        cols = [h.strip() for h in header]
        unknown = [c for c in cols if c not in REQUIRED and c not in OPTIONAL]
        missing = [c for c in REQUIRED if c not in cols]
        if unknown or missing or len(set(cols)) != len(cols):
            parts = []
            if missing:
                parts.append(f"missing column(s) {', '.join(missing)}")
            if unknown:
                parts.append(f"unknown column(s) {', '.join(unknown)}")
            if len(set(cols)) != len(cols):
                parts.append("duplicate column names")
            raise CsvTraceError(name, 1, "bad header: " + "; ".join(parts)
                                + f" (want {','.join(REQUIRED)} and optionally {','.join(OPTIONAL)})")
        ix = {c: i for i, c in enumerate(cols)}
        opt = [ix.get(c) for c in OPTIONAL]
        width = len(cols)
        containers: dict[tuple[str, str, str, str], _Container] = {}
        skipped = 0
        line = 1
        while True:
            try:
                row = next(rows)
            except StopIteration:
                break
            except (csv.Error, UnicodeDecodeError, OSError, EOFError, zlib.error) as e:
                raise CsvTraceError(name, line + 1, f"unreadable: {e}") from None
            line = rows.line_num  # type: ignore[attr-defined]
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            try:
                if len(row) != width:
                    raise ValueError(f"want {width} fields, got {len(row)}")
                t = _timestamp(row[ix["timestamp"]])
                ns, wl, pod, cont = (row[ix[c]].strip() for c in ("namespace", "workload", "pod", "container"))
                for col, v in (("namespace", ns), ("workload", wl), ("pod", pod), ("container", cont)):
                    if not v:
                        raise ValueError(f"{col}: empty")
                cpu = _number(row[ix["cpu_cores"]], "cpu_cores")
                mem = _number(row[ix["memory_bytes"]], "memory_bytes")
                res = tuple(None if j is None or not row[j].strip() else _number(row[j], OPTIONAL[k])
                            for k, j in enumerate(opt))
                key = (ns, wl, pod, cont)
                c = containers.get(key)
                if c is None:
                    c = containers[key] = _Container(res)
                elif res != c.res:
                    raise ValueError(f"resources of container {cont} in pod {ns}/{pod} changed from "
                                     f"{_fmt_res(c.res)} (line {c.lines[0]}) to {_fmt_res(res)}")
            except ValueError as e:
                if skip_invalid:
                    skipped += 1
                    continue
                raise CsvTraceError(name, line, str(e)) from None
            c.t.append(t)
            c.cpu.append(cpu)
            c.mem.append(mem)
            c.lines.append(line)
    if not containers:
        raise CsvTraceError(name, 0, "no valid rows")
    return _build(containers, name), skipped


class _Irregular(Exception):
    """The file is not one the column reader takes: the row reader reads it (or names its error)."""


def _read_columns(p: Path) -> dict[tuple[str, str, str, str], _Container] | None:
    """The containers of a well-formed file read column-wise, or None for the row reader."""
    try:
        raw = p.read_bytes()
        if p.name.lower().endswith(".gz"):
            raw = gzip.decompress(raw)
        return _columns(raw)
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, _Irregular, ValueError):
        return None


#: cells longer than this are left to the row reader (names and numbers are far shorter)
_MAX_CELL = 256


def _cells(b: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """One column's cells as a zero-padded byte matrix (whole 8-byte words), one row per line."""
    lengths = end - start
    width = int(lengths.max(initial=0))
    if width > _MAX_CELL:
        raise _Irregular
    width = max(8, -(-width // 8) * 8)
    offsets = np.arange(width, dtype=np.int32)
    m = b.take(start.astype(np.int32)[:, None] + offsets, mode="clip")
    m *= offsets < lengths[:, None]
    return m


def _distinct(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first row of each distinct cell, each row's index among them) of a cell matrix: a 64-bit
    hash of the bytes, checked cell for cell so a collision can never merge two texts."""
    words = m.view(np.uint64)
    h = words[:, 0].copy()
    with np.errstate(over="ignore"):
        for k in range(1, words.shape[1]):
            h *= np.uint64(1_099_511_628_211)
            h += words[:, k]
    _, first, inverse = np.unique(h, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    if not (m == m[first[inverse]]).all():
        raise _Irregular
    return first, inverse


def _columns(raw: bytes) -> dict[tuple[str, str, str, str], _Container]:
    if b'"' in raw or b"\r" in raw or b"\0" in raw:
        raise _Irregular
    head, _, body = raw.partition(b"\n")
    cols = [h.strip() for h in head.decode().split(",")]
    if (any(c not in REQUIRED and c not in OPTIONAL for c in cols) or any(c not in cols for c in REQUIRED)
            or len(set(cols)) != len(cols)):
        raise _Irregular
    width = len(cols)
    body = body.removesuffix(b"\n")
    if not body:
        raise _Irregular
    b = np.frombuffer(body, np.uint8)
    # Every line must have exactly width - 1 commas (a blank line or a short row has fewer).
    is_sep = (b == 44) | (b == 10)
    sep = np.flatnonzero(is_sep)
    newline = b[sep] == 10
    per_line = np.diff(np.flatnonzero(np.append(newline, True)), prepend=-1)
    if (per_line != width).any():
        raise _Irregular
    n = len(per_line)
    ends = np.append(sep, len(b)).reshape(n, width)
    starts = np.empty_like(ends)
    starts.reshape(-1)[0] = 0
    starts.reshape(-1)[1:] = sep + 1
    ix = {c: j for j, c in enumerate(cols)}

    def texts(c: str) -> tuple[np.ndarray, list[bytes]]:
        """Each row's index among the column's distinct cells, and those cells (raw bytes)."""
        s, e = starts[:, ix[c]], ends[:, ix[c]]
        first, inverse = _distinct(_cells(b, s, e))
        return inverse, [body[i:j] for i, j in zip(s[first].tolist(), e[first].tolist(), strict=True)]

    def numbers(c: str) -> np.ndarray:
        """``float()`` of each distinct cell (the row reader's conversion), ValueError on a bad one."""
        inverse, cells = texts(c)
        return np.array([float(v.decode()) for v in cells], np.float64)[inverse]

    try:
        t = numbers("timestamp")
    except ValueError:  # RFC 3339: each distinct text parsed once
        inverse, cells = texts("timestamp")
        t = np.array([_timestamp(v.decode()) for v in cells], np.float64)[inverse]
    cpu, mem = numbers("cpu_cores"), numbers("memory_bytes")
    if not (np.isfinite(t).all() and np.isfinite(cpu).all() and np.isfinite(mem).all()
            and (cpu >= 0).all() and (mem >= 0).all()):
        raise _Irregular
    # Containers numbered in order of first appearance (the row reader's order), by stripped names.
    codes, names = [], []
    for c in ("namespace", "workload", "pod", "container"):
        inverse, cells = texts(c)
        stripped = [v.decode().strip() for v in cells]
        if "" in stripped:
            raise _Irregular
        distinct = sorted(set(stripped))
        codes.append(np.array([distinct.index(v) for v in stripped], np.int64)[inverse])
        names.append(distinct)
    key = np.ravel_multi_index(codes, [len(v) for v in names])
    uniq, first_row, inverse = np.unique(key, return_index=True, return_inverse=True)
    appearance = np.argsort(first_row, kind="stable")
    ids = np.argsort(appearance)[inverse.reshape(-1)]
    firsts = first_row[appearance]
    order = np.argsort(ids, kind="stable")
    bounds = np.searchsorted(ids[order], np.arange(len(uniq) + 1))
    # Optional resources: the distinct cells of a column (usually one) parsed like the row reader's;
    # a container's must not change between rows.
    res_cols: list[float | np.ndarray | None] = []
    for c in OPTIONAL:
        if c not in ix:
            res_cols.append(None)
            continue
        inverse, cells = texts(c)
        values = [None if not v.strip() else _number(v.decode(), c) for v in cells]
        if len(values) == 1:
            res_cols.append(values[0])
            continue
        arr = np.array([math.nan if v is None else v for v in values], np.float64)[inverse]
        first = arr[firsts][ids]
        if not ((arr == first) | (np.isnan(arr) & np.isnan(first))).all():
            raise _Irregular
        res_cols.append(arr)
    lines = np.arange(2, n + 2)
    out: dict[tuple[str, str, str, str], _Container] = {}
    for i, f in enumerate(firsts.tolist()):
        rows = order[bounds[i]:bounds[i + 1]]
        res = tuple(v if not isinstance(v, np.ndarray) else (None if math.isnan(v[f]) else float(v[f]))
                    for v in res_cols)
        c = out[tuple(v[k[f]] for v, k in zip(names, codes, strict=True))] = _Container(res)  # type: ignore[index]
        c.t, c.cpu, c.mem, c.lines = t[rows], cpu[rows], mem[rows], lines[rows]
    return out


def _fmt_res(res: tuple[float | None, ...]) -> str:
    return ",".join("" if v is None else f"{v:g}" for v in res)


def _build(containers: dict[tuple[str, str, str, str], _Container], name: str) -> Trace:
    workloads: dict[tuple[str, str], WorkloadTrace] = {}
    pods: dict[tuple[str, str, str], PodTrace] = {}
    all_t: list[np.ndarray] = []
    for (ns, wl, pod, cont), c in containers.items():
        t = np.asarray(c.t)
        order = np.argsort(t, kind="stable")
        t = t[order]
        dup = np.flatnonzero(np.diff(t) == 0)
        if len(dup):
            lines = np.asarray(c.lines)[order]
            a, b = sorted((int(lines[dup[0]]), int(lines[dup[0] + 1])))
            raise CsvTraceError(name, b, f"duplicate sample for container {cont} of pod {ns}/{pod} at the same "
                                         f"timestamp as line {a}")
        all_t.append(t)
        w = workloads.setdefault((ns, wl), WorkloadTrace(ns, wl))
        pt = pods.get((ns, wl, pod))
        if pt is None:
            pt = pods[(ns, wl, pod)] = PodTrace(pod, [])
            w.pods.append(pt)
        pt.containers.append(ContainerTrace(cont, t, np.asarray(c.cpu)[order], np.asarray(c.mem)[order], *c.res))
    ts = np.concatenate(all_t)
    start, end = float(ts.min()), float(ts.max())
    uniq = np.unique(ts)
    steps = np.diff(uniq)
    resolution = float(np.median(steps)) if len(steps) else 60.0
    for pt in pods.values():
        first, last = pt.first_sample(), pt.last_sample()
        pt.created = first
        pt.deleted = last if last is not None and last < end else None
    return Trace(list(workloads.values()), start, end, resolution, source=f"csv:{Path(name).name}")


def _fmt_t(t: float) -> str:
    return str(int(t)) if float(t).is_integer() else f"{t:.3f}"


def _fmt_opt(v: float | None) -> str:
    if v is None:
        return ""
    return str(int(v)) if float(v).is_integer() else f"{v:.9g}"


def write_csv(trace: Trace, path: str | Path) -> None:
    """Export ``trace`` as long CSV (lifecycle beyond first/last sample, replicas and HPAs are not kept)."""
    p = Path(path)
    with_res = any(c.cpu_request is not None or c.cpu_limit is not None or c.memory_request is not None
                   or c.memory_limit is not None for w in trace.workloads for pt in w.pods for c in pt.containers)
    buf = io.StringIO()
    wr = csv.writer(buf, lineterminator="\n")
    wr.writerow(REQUIRED + (OPTIONAL if with_res else ()))
    chunks = []
    for w in trace.workloads:
        for pt in w.pods:
            for c in pt.containers:
                extra = [_fmt_opt(c.cpu_request), _fmt_opt(c.cpu_limit), _fmt_opt(c.memory_request),
                         _fmt_opt(c.memory_limit)] if with_res else []
                for t, cpu, mem in zip(c.t.tolist(), c.cpu.tolist(), c.memory.tolist(), strict=True):
                    chunks.append((t, [_fmt_t(t), w.namespace, w.name, pt.name, c.name, f"{cpu:.6g}",
                                       str(round(mem)), *extra]))
    chunks.sort(key=lambda x: x[0])
    wr.writerows(row for _, row in chunks)
    data = buf.getvalue().encode()
    if p.name.lower().endswith(".gz"):
        data = gzip.compress(data, compresslevel=9, mtime=0)
    p.write_bytes(data)
