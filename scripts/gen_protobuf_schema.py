#!/usr/bin/env python3
"""Regenerate ``sim/apiserver/protobuf_schema.json``: the protobuf field tables of the kinds the
emulated API server decodes, read from the Kubernetes API modules in the Go module cache.

For every message of the listed packages it records, per field number, the JSON name, the type
(a scalar, a message's full name, or ``map:<type>``), whether the field repeats, and from the Go
struct tags of ``types.go`` whether the Go field is a pointer and whether its JSON tag omits it
when empty: a protobuf body carries every non-pointer field, so the decoder needs both to produce
the JSON object kube-apiserver would have decoded. (``omitzero`` is recorded too: Go omits such a
field, a struct included, when it is zero; an ``inline`` field's members are the parent's own.)

Usage: python3 scripts/gen_protobuf_schema.py [--modcache DIR]   (default: $(go env GOMODCACHE))
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
from pathlib import Path

VERSION = "v0.37.2"
OUT = Path(__file__).resolve().parent.parent / "sim" / "apiserver" / "protobuf_schema.json"

# (module, package dir, apiVersion or "" for shared types)
PACKAGES = [
    ("apimachinery", "pkg/apis/meta/v1", ""),
    ("apimachinery", "pkg/runtime", ""),
    ("apimachinery", "pkg/util/intstr", ""),
    ("apimachinery", "pkg/api/resource", ""),
    ("api", "core/v1", "v1"),
    ("api", "apps/v1", "apps/v1"),
    ("api", "autoscaling/v1", "autoscaling/v1"),
    ("api", "autoscaling/v2", "autoscaling/v2"),
    ("api", "coordination/v1", "coordination.k8s.io/v1"),
    ("api", "events/v1", "events.k8s.io/v1"),
    ("api", "rbac/v1", "rbac.authorization.k8s.io/v1"),
    ("api", "policy/v1", "policy/v1"),
    ("api", "authentication/v1", "authentication.k8s.io/v1"),
    ("api", "authorization/v1", "authorization.k8s.io/v1"),
    ("api", "storage/v1", "storage.k8s.io/v1"),
    ("api", "resource/v1", "resource.k8s.io/v1"),
    ("apiextensions-apiserver", "pkg/apis/apiextensions/v1", "apiextensions.k8s.io/v1"),
    ("kube-aggregator", "pkg/apis/apiregistration/v1", "apiregistration.k8s.io/v1"),
]

_MESSAGE = re.compile(r"^message (\w+) \{")
_FIELD = re.compile(r"^\s*(optional|repeated)?\s*(map<\s*\w+\s*,\s*([\w.]+)\s*>|[\w.]+) (\w+) = (\d+);")
_STRUCT = re.compile(r"^type (\w+) struct \{")
_TAGGED = re.compile(r'^\s*\w+\s+(\S+)\s+`json:"([^"]*)".*protobuf:"[^"]*?,(\d+),')
_EMBEDDED = re.compile(r'^\s*(\*?[\w.]+)\s+`json:"([^"]*)".*protobuf:"[^"]*?,(\d+),')
SCALARS = {"string": "string", "int32": "int", "int64": "int", "bool": "bool", "bytes": "bytes",
           "double": "float", "float": "float"}


def _full(t: str, package: str) -> str:
    t = t.lstrip(".")
    return SCALARS.get(t) or (t if "." in t else f"{package}.{t}")


def parse_proto(path: Path) -> tuple[str, dict[str, dict[str, list]]]:
    package = ""
    messages: dict[str, dict[str, list]] = {}
    current: dict[str, list] | None = None
    for line in path.read_text().splitlines():
        line = line.split("//", 1)[0].rstrip()
        if line.startswith("package "):
            package = line.split()[1].rstrip(";")
        m = _MESSAGE.match(line)
        if m:
            current = messages.setdefault(f"{package}.{m.group(1)}", {})
            continue
        if line == "}":
            current = None
            continue
        f = _FIELD.match(line)
        if f and current is not None:
            label, typ, map_value, name, num = f.groups()
            kind = f"map:{_full(map_value, package)}" if map_value else _full(typ, package)
            current[num] = [name, kind, label == "repeated", False, True, False, False]
    return package, messages


def go_tags(directory: Path) -> dict[str, dict[str, tuple[bool, bool, bool, bool]]]:
    """struct -> field number -> (pointer, omitempty, omitzero, inline) from the Go struct tags."""
    out: dict[str, dict[str, tuple[bool, bool, bool, bool]]] = {}
    for path in sorted(directory.glob("*.go")):
        if path.name.endswith("_test.go") or path.name.startswith("zz_"):
            continue
        struct = None
        for line in path.read_text().splitlines():
            m = _STRUCT.match(line)
            if m:
                struct = m.group(1)
                continue
            if line.startswith("}"):
                struct = None
            t = _TAGGED.match(line) or _EMBEDDED.match(line)
            if t and struct:
                gotype, jtag, num = t.groups()
                name, *opts = jtag.split(",")
                # an embedded struct without a JSON name has its fields promoted into the parent
                out.setdefault(struct, {})[num] = (gotype.startswith("*"), "omitempty" in opts, "omitzero" in opts,
                                                   not name and not _TAGGED.match(line))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modcache", default=None)
    args = parser.parse_args()
    modcache = Path(args.modcache or subprocess.run(["go", "env", "GOMODCACHE"], capture_output=True, text=True,
                                                      check=True).stdout.strip())
    schema: dict[str, dict[str, list]] = {}
    kinds: dict[str, str] = {}
    for module, pkg_dir, api_version in PACKAGES:
        directory = modcache / "k8s.io" / f"{module}@{VERSION}" / pkg_dir
        _package, messages = parse_proto(directory / "generated.proto")
        tags = go_tags(directory)
        for name, fields in messages.items():
            short = name.rsplit(".", 1)[1]
            for num, field in fields.items():
                field[3:7] = tags.get(short, {}).get(num, (False, True, False, False))
            schema[name] = fields
            if api_version and "metadata" in {f[0] for f in fields.values()} and not short.endswith("List"):
                kinds[f"{api_version}/{short}"] = name
    OUT.write_text(json.dumps({"generatedFrom": f"k8s.io modules {VERSION}", "kinds": kinds, "messages": schema},
                              sort_keys=True, separators=(",", ":")) + "\n")
    print(f"{OUT}: {len(schema)} messages, {len(kinds)} kinds")


if __name__ == "__main__":
    main()
