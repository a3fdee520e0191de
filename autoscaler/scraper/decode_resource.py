"""Decode the kubelet's ``/metrics/resource`` (Prometheus text 0.0.4) into a :class:`NodeBatch`.

Rules (metrics-pipeline.md §1.6.1): the five series metrics-server reads, plus the swap gauges of
1.37 kubelets (``container_swap_usage_bytes``, ``node_swap_usage_bytes``: a series that is absent
means no swap, never zero); timestamps in ms or,
when absent, the request time; CPU seconds truncated to integer nanoseconds; a malformed line in
a family we read (or a negative timestamp) rejects the whole response.

Speed: a kubelet's output is regular (one block per family, the same three labels on every
line), so the common case is handled with a handful of C-level string operations per family
(``split`` on quotes and whitespace, list slicing, one numpy conversion) instead of a regex or
a Python loop per line. Anything irregular (escapes, other label sets or orders, missing
comments between families) falls back to a careful line-by-line parser with full validation.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from autoscaler.storage.types import NodeBatch

CPU = "container_cpu_usage_seconds_total"
MEMORY = "container_memory_working_set_bytes"
START = "container_start_time_seconds"
NODE_CPU = "node_cpu_usage_seconds_total"
NODE_MEMORY = "node_memory_working_set_bytes"
SWAP = "container_swap_usage_bytes"
NODE_SWAP = "node_swap_usage_bytes"
_CONTAINER_FAMILIES = (CPU, MEMORY, START, SWAP)  # in the kubelet's (alphabetical) order
_NODE_FAMILIES = (NODE_CPU, NODE_MEMORY, NODE_SWAP)
_LABELS = ("container", "namespace", "pod")


class DecodeError(ValueError):
    """The kubelet response cannot be decoded; the node contributes nothing this cycle."""


class _Slow(Exception):
    """The fast path met something irregular; use the careful parser."""


@dataclass(slots=True)
class _Family:
    namespaces: list[str]
    pods: list[str]
    containers: list[str]
    values: np.ndarray
    ts_ms: np.ndarray | None  # int64 milliseconds, -1 where a line had none


# -- fast path -------------------------------------------------------------------------------------
def _parse_values(tokens: list[str], what: str) -> np.ndarray:
    if "_" in "".join(tokens):  # numpy (like Python) accepts 1_000; Go's ParseFloat does not
        raise DecodeError(f"{what}: invalid value {next(t for t in tokens if '_' in t)!r}")
    try:
        return np.array(tokens, dtype=np.float64)
    except ValueError as exc:
        raise DecodeError(f"{what}: invalid value: {exc}") from None


def _parse_timestamps(tokens: list[str], what: str) -> np.ndarray:
    joined = "".join(tokens)
    if not (joined.isascii() and joined.isdigit()):
        bad = next(t for t in tokens if not (t.isascii() and t.isdigit()))
        if bad.startswith("-") and bad[1:].isdigit():
            raise DecodeError(f"{what}: negative timestamp {bad}")
        raise DecodeError(f"{what}: invalid timestamp {bad!r}")
    try:
        return np.array(tokens, dtype=np.int64)
    except OverflowError:
        raise DecodeError(f"{what}: timestamp out of range {max(tokens, key=len)}") from None


def _next_comment(text: str, start: int) -> int:
    """Index of the newline before the next ``#`` line at or after ``start``, or -1.

    Searching for the one character ``#`` (memchr) and checking the character before it is
    several times faster than searching for ``"\n#"``, which stops at every line break.
    """
    k = text.find("#", start)
    while k > 0 and text[k - 1] != "\n":
        k = text.find("#", k + 1)
    return k - 1 if k > 0 else -1


def _fast_family(text: str, name: str, hint: int = 0) -> tuple[_Family | None, int]:
    """The family's block, searched from ``hint`` first (kubelets sort families by name)."""
    key = "\n" + name + "{"
    i = text.find(key, hint)
    if i < 0 and hint:
        i = text.find(key)
    if i < 0:
        if ("\n" + name + " ") in text or ("\n" + name + "\t") in text:
            raise _Slow
        return None, hint
    j = _next_comment(text, i + 1)
    block = text[i + 1 : j if j >= 0 else len(text)].strip()
    if "\\" in block:
        raise _Slow
    pieces = block.split('"')
    n = (len(pieces) - 1) // 6
    if n < 1 or len(pieces) != 6 * n + 1:
        raise _Slow
    p0, p2, p4 = pieces[0], pieces[2], pieces[4]
    if not (p0.startswith(name + "{") and p0.endswith("=") and p2[:1] == "," and p2.endswith("=")
            and p4[:1] == "," and p4.endswith("=")):
        raise _Slow
    names = (p0[len(name) + 1 : -1], p2[1:-1], p4[1:-1])
    if set(names) != set(_LABELS) or pieces[2::6].count(p2) != n or pieces[4::6].count(p4) != n:
        raise _Slow
    toks = " ".join(pieces[6::6]).split()
    per, rem = divmod(len(toks) + 1, n)
    if rem or per not in (3, 4) or toks[0::per].count("}") != n or toks[per - 1 :: per].count(p0) != n - 1:
        raise _Slow
    by = dict(zip(names, (pieces[1::6], pieces[3::6], pieces[5::6]), strict=True))
    values = _parse_values(toks[1::per], name)
    ts = _parse_timestamps(toks[2::per], name) if per == 4 else None
    return _Family(by["namespace"], by["pod"], by["container"], values, ts), (j if j >= 0 else 0)


_NODE_LINE = {
    name: re.compile(r"\n" + name + r"(?:\{\})?[ \t]+([^ \t\n]+)(?:[ \t]+([^ \t\n]+))?[ \t]*(?=\n|$)")
    for name in _NODE_FAMILIES
}


def _fast_node(text: str, name: str, hint: int = 0) -> tuple[float, int] | None:
    at = text.find("\n" + name, hint)
    if at < 0 and hint:
        at = text.find("\n" + name)
    if at < 0:
        return None
    m = _NODE_LINE[name].search(text, at)
    if m is None:
        raise _Slow
    raw, stamp = m.group(1), m.group(2)
    try:
        if "_" in raw:
            raise ValueError
        value = float(raw)
    except ValueError:
        raise DecodeError(f"{name}: invalid value {raw!r}") from None
    ts = int(_parse_timestamps([stamp], name)[0]) if stamp else -1
    return value, ts


# -- careful path ----------------------------------------------------------------------------------
_METRIC_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(rf"({_METRIC_NAME})[ \t]*(\{{.*\}})?[ \t]+([^ \t]+)(?:[ \t]+([^ \t]+))?")
_PAIR = re.compile(r'[ \t]*([a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*"((?:[^"\\\n]|\\.)*)"[ \t]*')
_ESCAPES = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}
_ESCAPE_RE = re.compile(r"\\.")


def _unescape(value: str) -> str:
    return _ESCAPE_RE.sub(lambda m: _ESCAPES.get(m.group(0), m.group(0)), value) if "\\" in value else value


def _parse_labels(text: str, where: str) -> dict[str, str]:
    inner = text[1:-1]
    labels: dict[str, str] = {}
    pos = 0
    while pos < len(inner):
        if not inner[pos:].strip():
            break
        m = _PAIR.match(inner, pos)
        if m is None:
            raise DecodeError(f"{where}: invalid label set {text!r}")
        labels[m.group(1)] = _unescape(m.group(2))
        pos = m.end()
        if pos < len(inner):
            if inner[pos] != ",":
                raise DecodeError(f"{where}: expected ',' in label set {text!r}")
            pos += 1
    return labels


def _slow_parse(text: str) -> tuple[dict[str, _Family], dict[str, tuple[float, int]]]:
    rows: dict[str, tuple[list[str], list[str], list[str], list[str], list[str]]] = {
        f: ([], [], [], [], []) for f in _CONTAINER_FAMILIES
    }
    nodes: dict[str, tuple[float, int]] = {}
    for lineno, raw in enumerate(text.split("\n")):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"line {lineno}"
        m = _SAMPLE.fullmatch(line)
        if m is None:
            raise DecodeError(f"{where}: not a valid sample line: {line[:120]!r}")
        name, label_text, value, ts = m.groups()
        labels = _parse_labels(label_text, where) if label_text else {}
        vals = _parse_values([value], where)
        if ts is not None:
            _parse_timestamps([ts], where)
        if name in rows:
            if not all(k in labels for k in _LABELS):
                continue  # cannot be attributed to a container
            ns, pods, conts, values, tss = rows[name]
            ns.append(labels["namespace"])
            pods.append(labels["pod"])
            conts.append(labels["container"])
            values.append(value)
            tss.append(ts if ts is not None else "-1")
        elif name in _NODE_FAMILIES and name not in nodes:
            nodes[name] = (float(vals[0]), int(ts) if ts is not None else -1)
    fams = {}
    for name, (ns, pods, conts, values, tss) in rows.items():
        if conts:
            fams[name] = _Family(ns, pods, conts, np.array(values, dtype=np.float64), np.array(tss, dtype=np.int64))
    return fams, nodes


# -- assembly --------------------------------------------------------------------------------------
def _seconds(ts_ms: np.ndarray | None, n: int, default: float) -> np.ndarray:
    if ts_ms is None:
        return np.full(n, default)
    return np.where(ts_ms >= 0, ts_ms / 1000.0, default)


def _join(fams: dict[str, _Family], scrape_time: float) -> tuple:
    cpu, mem, start, swap = fams.get(CPU), fams.get(MEMORY), fams.get(START), fams.get(SWAP)
    present = [f for f in (cpu, mem, start, swap) if f is not None]
    if not present:
        e = np.empty(0)
        return [], [], [], e, e, e, e, None
    base = present[0]
    aligned = all(f is base or (f.containers == base.containers and f.pods == base.pods
                                and f.namespaces == base.namespaces) for f in present)
    if aligned:
        n = len(base.containers)
        ns, pods, conts = base.namespaces, base.pods, base.containers

        def column(f: _Family | None) -> np.ndarray:
            return f.values if f is not None else np.full(n, np.nan)

        def times(f: _Family | None) -> np.ndarray | None:
            return None if f is None or f.ts_ms is None else f.ts_ms

        cpu_v, mem_v, start_v = column(cpu), column(mem), column(start)
        swap_v = swap.values if swap is not None else None
        cpu_t, mem_t = times(cpu), times(mem)
    else:
        index: dict[tuple[str, str, str], int] = {}
        for f in present:
            for key in zip(f.namespaces, f.pods, f.containers, strict=True):
                index.setdefault(key, len(index))
        n = len(index)
        ns = [k[0] for k in index]
        pods = [k[1] for k in index]
        conts = [k[2] for k in index]

        def scatter(f: _Family | None, values: np.ndarray | None, fill: float | int) -> np.ndarray | None:
            if f is None or values is None:
                return None
            out = np.full(n, fill, dtype=values.dtype)
            out[[index[k] for k in zip(f.namespaces, f.pods, f.containers, strict=True)]] = values
            return out

        nan = np.full(n, np.nan)
        cpu_v = scatter(cpu, cpu and cpu.values, np.nan)
        mem_v = scatter(mem, mem and mem.values, np.nan)
        start_v = scatter(start, start and start.values, np.nan)
        swap_v = scatter(swap, swap and swap.values, np.nan)
        cpu_v, mem_v, start_v = (nan if v is None else v for v in (cpu_v, mem_v, start_v))
        cpu_t = scatter(cpu, cpu and cpu.ts_ms, -1)
        mem_t = scatter(mem, mem and mem.ts_ms, -1)
    # metrics-server lets the last-parsed line (memory) set the time; we prefer the CPU sample's
    # time, the one the rate is about, and fall back to memory's, then to the request time.
    ts = _seconds(mem_t, n, scrape_time)
    if cpu_t is not None:
        ts = np.where(cpu_t >= 0, cpu_t / 1000.0, ts)
    return ns, pods, conts, ts, cpu_v, mem_v, start_v, swap_v


def decode_resource(body: bytes | str, node: str, scrape_time: float) -> NodeBatch:
    """Decode one ``/metrics/resource`` response; ``scrape_time`` = request start (Unix seconds)."""
    try:
        text = "\n" + (body.decode("utf-8") if isinstance(body, bytes | bytearray) else body)
    except UnicodeDecodeError as exc:
        raise DecodeError(f"response is not UTF-8: {exc}") from None
    try:
        fams = {}
        hint = 0
        swap = "_swap_usage_bytes" in text  # one scan instead of two failed searches when absent
        for name in _CONTAINER_FAMILIES:
            if name == SWAP and not swap:
                continue
            fam, hint = _fast_family(text, name, hint)
            if fam is not None:
                fams[name] = fam
        nodes = {}
        for name in _NODE_FAMILIES:
            if name == NODE_SWAP and not swap:
                continue
            point = _fast_node(text, name, hint)
            if point is not None:
                nodes[name] = point
        if not fams and not nodes and text.strip():
            raise _Slow  # nothing recognised: validate the whole body (garbage is an error)
    except _Slow:
        fams, nodes = _slow_parse(text)
    ns, pods, conts, ts, cpu_v, mem_v, start_v, swap_v = _join(fams, scrape_time)
    finite = np.isfinite(cpu_v)
    cpu_ns = np.where(finite, np.trunc(np.where(finite, cpu_v, 0.0) * 1e9), 0).astype(np.int64)
    batch = NodeBatch(node=node, scrape_time=scrape_time, namespaces=ns, pods=pods, containers=conts,
                      start_time=start_v, timestamp=ts, cpu=cpu_v, memory=mem_v, cpu_ns=cpu_ns, swap=swap_v)
    ncpu, nmem = nodes.get(NODE_CPU), nodes.get(NODE_MEMORY)
    if ncpu is not None:
        batch.node_cpu = ncpu[0]
        batch.node_cpu_ns = int(ncpu[0] * 1e9) if math.isfinite(ncpu[0]) else 0
    if nmem is not None:
        batch.node_memory = nmem[0]
    nswap = nodes.get(NODE_SWAP)
    if nswap is not None and nswap[0] >= 0:
        batch.node_swap = nswap[0]
    if ncpu is not None or nmem is not None:
        stamp = next((p[1] for p in (ncpu, nmem) if p is not None and p[1] >= 0), -1)
        batch.node_timestamp = stamp / 1000.0 if stamp >= 0 else scrape_time
    return batch
