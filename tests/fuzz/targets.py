"""Fuzz targets: every parser that reads input from outside the process, with the errors it may raise.

Each target takes the raw bytes an outsider controls (a kubelet response, a query string, a file, a
request body) and runs them through the same calls the program makes. A target passes an input
when the parser returns or raises one of its documented clear-error types *with a message*;
anything else (TypeError, KeyError, RecursionError, an error without a message, ...) is a crash.

Used by ``bench/fuzz.py`` (coverage-guided with atheris, one subprocess per target) and by
``tests/test_fuzz.py`` (a short run, plus every committed crasher replayed). Parser modules are
imported lazily in :meth:`Target.load` so atheris can instrument them as they load.
"""

from __future__ import annotations

import atexit
import copy
import json
import os
import random
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SEEDS = HERE / "seeds"
CRASHERS = HERE / "crashers"


class Crash(AssertionError):
    """The parser failed in a way a caller cannot turn into a clear error."""


class InvalidHPA(ValueError):
    """validate_hpa's field errors, as the API server's 422 would list them."""


@dataclass(frozen=True)
class Target:
    name: str
    doc: str
    #: returns (fn(data: bytes) -> None, the exception types that count as a clear error)
    build: Callable[[], tuple[Callable[[bytes], Any], tuple[type[BaseException], ...]]]
    max_len: int
    #: structure-aware mutation: inputs are JSON (after an optional first line, see ``header``)
    json_aware: bool = False
    header: bool = False
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    def outcome(self, data: bytes) -> BaseException | None:
        """The clear error ``data`` ends in (None when it parses); anything else propagates as a crash."""
        if "fn" not in self._cache:
            self._cache["fn"], self._cache["accepted"] = self.build()
        try:
            self._cache["fn"](data)
        except self._cache["accepted"] as exc:
            if not str(exc).strip():
                raise Crash(f"{type(exc).__name__} without a message") from exc
            return exc
        return None

    def load(self) -> Callable[[bytes], None]:
        """The checked entry point for libFuzzer: returns on success or a clear error, raises on a crash."""
        self.outcome(b"")  # import (and let atheris instrument) the parser modules now
        return self.outcome

    def seeds(self) -> list[Path]:
        d = SEEDS / self.name
        return sorted(p for p in d.iterdir() if p.is_file()) if d.is_dir() else []

    def crashers(self) -> list[Path]:
        d = CRASHERS / self.name
        return sorted(p for p in d.iterdir() if p.is_file()) if d.is_dir() else []


def _text(data: bytes) -> str:
    # Outside text reaches these parsers already decoded (HTTP query, JSON/YAML strings).
    return data.decode("utf-8", "replace")


_SCRATCH: dict[str, str] = {}


def _scratch_file(suffix: str, data: bytes) -> str:
    """A per-process file the path-taking readers (trace, CSV, kubeconfig) are pointed at."""
    path = _SCRATCH.get(suffix)
    if path is None:
        fd, path = tempfile.mkstemp(prefix="fuzz-", suffix=suffix)
        os.close(fd)
        atexit.register(os.unlink, path)  # libFuzzer's exit skips this; bench/fuzz.py removes its TMPDIR
        _SCRATCH[suffix] = path
    with open(path, "wb") as f:
        f.write(data)
    return path


def _split_header(data: bytes) -> tuple[str, bytes]:
    head, _, body = data.partition(b"\n")
    return _text(head), body


# -- targets ---------------------------------------------------------------------------------------
def _kubelet_summary():
    from autoscaler.scraper.decode_resource import DecodeError
    from autoscaler.scraper.decode_summary import decode_summary

    return (lambda data: decode_summary(data, "node-1", 1.78e9)), (DecodeError,)


def _kubelet_resource():
    from autoscaler.scraper.decode_resource import DecodeError, decode_resource

    return (lambda data: decode_resource(data, "node-1", 1.78e9)), (DecodeError,)


def _quantity():
    from autoscaler.k8s.quantity import QuantityError, format_like, milli_value, parse_quantity, value

    def run(data: bytes) -> None:
        text = _text(data)
        q = parse_quantity(text)
        milli_value(q)
        value(q)
        format_like(q, text)

    return run, (QuantityError,)


def _label_selector():
    from autoscaler.k8s.selectors import SelectorError, parse_label_selector

    def run(data: bytes) -> None:
        sel = parse_label_selector(_text(data))
        again = parse_label_selector(str(sel))  # String() output must parse back to the same selector
        if again != sel:
            raise Crash(f"selector does not round-trip: {sel} -> {again}")
        sel.matches({"app": "web", "tier": "db"})

    return run, (SelectorError,)


def _selectors():
    from autoscaler.api.resources import parse_selectors
    from autoscaler.k8s.status import ApiError

    def run(data: bytes) -> None:
        label, _, fields = _text(data).partition("\0")
        labels, fsel = parse_selectors(label or None, fields or None)
        labels.matches({"app": "web"})
        fsel.matches({"metadata.name": "web-0", "metadata.namespace": "default"})

    return run, (ApiError,)


def _hpa():
    import orjson

    from autoscaler.hpa.defaults import validate_hpa
    from autoscaler.hpa.spec import compile_hpa

    def run(data: bytes) -> None:
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            return  # the API server refuses it before validation
        if not isinstance(obj, dict):
            return
        validate_hpa(obj, scale_to_zero=True, configurable_tolerance=False, old=obj)
        # The API server (and replay, sweep) validate; only valid specs reach compile_hpa.
        if problems := validate_hpa(copy.deepcopy(obj)):
            raise InvalidHPA("; ".join(f"{path}: {msg}" for path, msg in problems))
        compile_hpa(obj)

    return run, (InvalidHPA,)


def _explain_snapshot():
    from autoscaler.hpa.decide import ControllerConfig, decide
    from autoscaler.hpa.inputs import InputError
    from autoscaler.hpa.snapshot import build_inputs, parse_documents

    def run(data: bytes) -> None:
        inputs = build_inputs(parse_documents(_text(data)), None)
        decision = decide(inputs.hpa, inputs.scale, inputs.pods, inputs.metrics, now=1.78e9, state=None,
                          config=ControllerConfig(), other_hpa_selectors=inputs.others,
                          scale_error=inputs.scale_error)
        json.dumps(decision.to_json())

    return run, (InputError,)


def _trace_json():
    from sim.replay.trace import TraceError, read_trace

    return (lambda data: read_trace(_scratch_file(".json", data))), (TraceError,)


def _trace_csv():
    from sim.replay.csvtrace import read_csv
    from sim.replay.trace import TraceError

    return (lambda data: read_csv(_scratch_file(".csv", data))), (TraceError,)


def _kubeconfig():
    from autoscaler.k8s.kubeconfig import KubeConfigError, kubeconfig_file_config

    return (lambda data: kubeconfig_file_config(_scratch_file(".kubeconfig", data))), (KubeConfigError,)


def _exec_credential():
    from autoscaler.k8s.execcred import ExecCredentialError, ExecPlugin

    plugins = [ExecPlugin({"command": "plugin", "apiVersion": v, "interactiveMode": "Never"}, where="fuzz")
               for v in ("client.authentication.k8s.io/v1beta1", "client.authentication.k8s.io/v1")]

    def run(data: bytes) -> None:
        errors = []
        for p in plugins:
            try:
                p._parse(data)
            except ExecCredentialError as exc:
                errors.append(exc)
        if any(not str(e).strip() for e in errors):
            raise Crash("ExecCredentialError without a message")
        if len(errors) == len(plugins):  # each plugin version refused it
            raise errors[0]

    return run, (ExecCredentialError,)


#: a Deployment as the emulated API server returns it, the object patches are applied to
_DEPLOYMENT = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "api", "namespace": "fz", "labels": {"app": "api"}, "resourceVersion": "12",
                 "finalizers": ["a/b"], "annotations": {"note": "hello"}},
    "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "api"}},
             "template": {"metadata": {"labels": {"app": "api"}}, "spec": {"containers": [
                 {"name": "api", "image": "nginx:1.27", "ports": [{"containerPort": 80, "protocol": "TCP"}],
                  "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                  "resources": {"requests": {"cpu": "100m"}}}]}}},
    "status": {"replicas": 1, "conditions": [{"type": "Available", "status": "True"}]},
}


def _apiserver_patch():
    from autoscaler.k8s.status import ApiError
    from sim.apiserver.negotiate import decode_body
    from sim.apiserver.patch import PATCH_TYPES, apply_patch

    def run(data: bytes) -> None:
        ct, body = _split_header(data)
        kind = PATCH_TYPES.get(ct.split(";")[0].strip().lower())
        if kind is None:
            return  # the server answers 415 before reading the body
        patch = decode_body(body, ct)
        apply_patch(kind, copy.deepcopy(_DEPLOYMENT), patch)

    return run, (ApiError,)


def _apiserver_body():
    import sim.apiserver.protobuf  # noqa: F401  decode_body imports it lazily; now, so atheris instruments it
    from autoscaler.k8s.status import ApiError
    from sim.apiserver.negotiate import decode_body

    def run(data: bytes) -> None:
        ct, body = _split_header(data)
        decode_body(body, ct)

    return run, (ApiError,)


def _protobuf():
    from autoscaler.k8s.status import ApiError
    from sim.apiserver.protobuf import decode

    return decode, (ApiError,)


TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("kubelet_summary", "kubelet /stats/summary JSON -> decode_summary", _kubelet_summary, 8192,
           json_aware=True),
    Target("kubelet_resource", "kubelet /metrics/resource Prometheus text -> decode_resource", _kubelet_resource, 8192),
    Target("quantity", "resource quantities -> parse_quantity, milli_value, value, format_like", _quantity, 64),
    Target("label_selector", "labelSelector strings -> parse_label_selector (and its String() round trip)",
           _label_selector, 512),
    Target("selectors", "metrics API labelSelector NUL fieldSelector -> parse_selectors", _selectors, 512),
    Target("hpa", "HPA objects (JSON) -> validate_hpa, then compile_hpa when valid", _hpa, 4096, json_aware=True),
    Target("explain_snapshot", "explain snapshot files (JSON/YAML) -> parse_documents, build_inputs, decide",
           _explain_snapshot, 8192, json_aware=True),
    Target("trace_json", "replay trace files (JSON) -> read_trace", _trace_json, 8192, json_aware=True),
    Target("trace_csv", "replay trace files (CSV) -> read_csv", _trace_csv, 4096),
    Target("kubeconfig", "kubeconfig files (YAML) -> kubeconfig_file_config", _kubeconfig, 4096),
    Target("exec_credential", "exec credential plugin output (JSON) -> ExecPlugin._parse", _exec_credential, 2048,
           json_aware=True),
    Target("apiserver_patch", "emulated API server PATCH: content type line + body -> decode_body, apply_patch",
           _apiserver_patch, 4096, json_aware=True, header=True),
    Target("apiserver_body", "emulated API server request bodies: content type line + body -> decode_body",
           _apiserver_body, 4096, json_aware=True, header=True),
    Target("protobuf", "emulated API server protobuf request bodies -> protobuf.decode", _protobuf, 2048),
)}


# -- structure-aware mutation ----------------------------------------------------------------------
_INTERESTING: list[Any] = [
    None, True, False, 0, -1, 1, 2**31, 2**63, -(2**63), 2**64, 10**30, 0.5, -0.0, 1e308, 1e-308,
    "", "0", "-1", "1e309", "NaN", "Infinity", "100m", "1Gi", "2026-01-01T00:00:00Z", "9999-12-31T23:59:59Z",
    "0000-00-00T00:00:00Z", "x" * 64, "\x00", "\u2028", "a/b", "$patch", "delete", "replace", "-", "~1",
    [], {}, [None], {"": None},
]


def _nodes(doc: Any, path: tuple = ()) -> list[tuple]:
    out = [path]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.extend(_nodes(v, (*path, k)))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out.extend(_nodes(v, (*path, i)))
    return out


def _get(doc: Any, path: tuple) -> Any:
    for p in path:
        doc = doc[p]
    return doc


def _set(doc: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    _get(doc, path[:-1])[path[-1]] = value
    return doc


def mutate_json(doc: Any, rng: random.Random) -> Any:
    """One structural edit of a JSON document: replace, delete, duplicate, deepen or retype a node."""
    nodes = _nodes(doc)
    path = rng.choice(nodes)
    node = _get(doc, path)
    op = rng.randrange(7)
    if op == 0:
        return _set(doc, path, copy.deepcopy(rng.choice(_INTERESTING)))
    if op == 1 and path:
        parent = _get(doc, path[:-1])
        del parent[path[-1]]
        return doc
    if op == 2:  # graft another subtree here
        return _set(doc, path, copy.deepcopy(_get(doc, rng.choice(nodes))))
    if op == 3:
        return _set(doc, path, [node] if rng.random() < 0.5 else {"x": node})
    if op == 4 and isinstance(node, int | float) and not isinstance(node, bool):
        return _set(doc, path, rng.choice([-node, node * 1000, node + 1, float(node) + 0.5, str(node)]))
    if op == 5 and isinstance(node, str):
        cut = rng.randrange(len(node) + 1)
        return _set(doc, path, rng.choice([node[:cut], node + node[:cut], node[:cut] + "\\" + node[cut:],
                                           node.upper(), int(node) if node.isdigit() else node + "0"]))
    if op == 6 and isinstance(node, dict) and node:
        key = rng.choice(list(node))
        node[rng.choice(["", key + "x", key.upper(), "$patch", "metadata", "spec", "items"])] = node.pop(key)
        return doc
    return _set(doc, path, copy.deepcopy(rng.choice(_INTERESTING)))


def mutate(target: Target, data: bytes, rng: random.Random) -> bytes | None:
    """A structure-aware mutant of ``data``, or None when it is not JSON (use a byte mutator)."""
    head = b""
    body = data
    if target.header:
        h, nl, body = data.partition(b"\n")
        head = h + nl
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return None
    for _ in range(rng.randint(1, 3)):
        doc = mutate_json(doc, rng)
    return head + json.dumps(doc, separators=(",", ":"), ensure_ascii=rng.random() < 0.5).encode()

