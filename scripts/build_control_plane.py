#!/usr/bin/env python3
"""Build the pinned upstream programs the real-cluster tests run, from their published Go modules.

Each program has a small Go module under ``tools/control-plane/`` (go.mod + go.sum, committed)
that pins it as a Go tool. The binaries go to a cache directory keyed by the hash of those files,
so a rerun with unchanged pins reuses them and a changed pin builds afresh:

    ~/.cache/autoscaler/control-plane/<hash>/bin/{kube-apiserver,kube-controller-manager,
        kube-scheduler,kubectl,etcd,metrics-server,kwok}

Helm (the chart tests: ``helm lint``, ``helm template``) is a client tool, pinned by its own module
``tools/helm/`` and cached by that module's hash alone, so it never forces a control-plane rebuild:

    ~/.cache/autoscaler/control-plane/helm-<hash>/bin/helm

The version variables are set with ``-ldflags -X`` as the upstream release builds set them, so
``/version`` and ``kubectl version`` tell which release this is. KWOK is built only if it builds;
the rest must. Prints progress and the time each program took, and finally the bin directory.

Usage: python scripts/build_control_plane.py [--cache-dir DIR] [--only NAME ...] [--print-dir]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sim.controlplane.binaries import MODULES, TOOLS, cache_root, pins_hash, tool_cache_dir  # noqa: E402

DEFAULT_CACHE = cache_root()


@dataclass(frozen=True)
class Program:
    name: str
    module_dir: Path  # its pinning module
    package: str  # the Go package of its main
    #: -X flags that stamp the release into the binary's version variables
    ldflags: tuple[str, ...] = field(default_factory=tuple)
    optional: bool = False
    #: pinned by tools/<name>/ and cached on its own (not part of the control plane)
    separate: bool = False

    def bin_dir(self, cache: Path) -> Path:
        return tool_cache_dir(self.name, cache) if self.separate else cache / pins_hash() / "bin"


def _kube_ldflags(version: str, date: str) -> tuple[str, ...]:
    major, minor = version.lstrip("v").split(".")[:2]
    out = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        out += [f"-X {pkg}.gitVersion={version}", f"-X {pkg}.gitMajor={major}", f"-X {pkg}.gitMinor={minor}",
                f"-X {pkg}.gitTreeState=archive", f"-X {pkg}.buildDate={date}"]
    return tuple(out)


def programs(versions: dict[str, dict]) -> list[Program]:
    """The programs, with ldflags from the pinned module versions (``go list -m -json`` records)."""
    kube, ms, kwok, helm = (versions[m] for m in ("k8s.io/kubernetes", "sigs.k8s.io/metrics-server", "sigs.k8s.io/kwok",
                                                    "helm.sh/helm/v4"))
    kube_flags = _kube_ldflags(kube["Version"], kube["Time"])
    # metrics-server's Makefile stamps its own tag into client-go's version package
    ms_flags = (f"-X k8s.io/client-go/pkg/version.gitVersion={ms['Version']}",
                f"-X k8s.io/client-go/pkg/version.gitCommit={ms.get('Origin', {}).get('Hash', '')}",
                f"-X k8s.io/client-go/pkg/version.buildDate={ms['Time']}")
    # helm's Makefile stamps the tag and commit into its internal version package
    helm_flags = (f"-X helm.sh/helm/v4/internal/version.version={helm['Version']}",
                  f"-X helm.sh/helm/v4/internal/version.gitCommit={helm.get('Origin', {}).get('Hash', '')}",
                  "-X helm.sh/helm/v4/internal/version.gitTreeState=clean")
    return [
        Program("kube-apiserver", MODULES / "kubernetes", "k8s.io/kubernetes/cmd/kube-apiserver", kube_flags),
        Program("kube-controller-manager", MODULES / "kubernetes", "k8s.io/kubernetes/cmd/kube-controller-manager",
                kube_flags),
        Program("kube-scheduler", MODULES / "kubernetes", "k8s.io/kubernetes/cmd/kube-scheduler", kube_flags),
        Program("kubectl", MODULES / "kubernetes", "k8s.io/kubernetes/cmd/kubectl", kube_flags),
        # etcd's version is a constant of the release; only the commit would be stamped, and the
        # module proxy does not record it
        Program("etcd", MODULES / "etcd", "go.etcd.io/etcd/server/v3"),
        Program("metrics-server", MODULES / "metrics-server", "sigs.k8s.io/metrics-server/cmd/metrics-server",
                ms_flags),
        Program("kwok", MODULES / "kwok", "sigs.k8s.io/kwok/cmd/kwok",
                (f"-X sigs.k8s.io/kwok/pkg/consts.Version={kwok['Version']}",), optional=True),
        Program("helm", TOOLS / "helm", "helm.sh/helm/v4/cmd/helm", helm_flags, separate=True),
    ]


def pinned_versions() -> dict[str, dict]:
    """``go list -m -json`` of each pinned program module (Version, Time, and Origin when recorded)."""
    out: dict[str, dict] = {}
    for where, module in ((MODULES / "kubernetes", "k8s.io/kubernetes"),
                          (MODULES / "metrics-server", "sigs.k8s.io/metrics-server"),
                          (MODULES / "kwok", "sigs.k8s.io/kwok"), (TOOLS / "helm", "helm.sh/helm/v4")):
        proc = subprocess.run(["go", "list", "-m", "-json", module], cwd=where,
                              capture_output=True, text=True, check=True)
        out[module] = json.loads(proc.stdout)
    return out


def build(prog: Program, bin_dir: Path, env: dict[str, str]) -> tuple[bool, float, str]:
    start = time.monotonic()
    tmp = bin_dir / f".{prog.name}.tmp"
    cmd = ["go", "build", "-p", "2", "-trimpath", "-o", str(tmp),
           "-ldflags", " ".join(("-s", "-w", *prog.ldflags)), prog.package]
    proc = subprocess.run(cmd, cwd=prog.module_dir, env=env, capture_output=True, text=True)
    took = time.monotonic() - start
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        return False, took, proc.stderr.strip()[-4000:]
    tmp.replace(bin_dir / prog.name)
    return True, took, ""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, help=f"cache root (default {DEFAULT_CACHE})")
    ap.add_argument("--only", nargs="*", metavar="NAME", help="build only these programs")
    ap.add_argument("--print-dir", action="store_true", help="print the bin directory of the current pins and exit")
    args = ap.parse_args()

    bin_dir = args.cache_dir / pins_hash() / "bin"
    if args.print_dir:
        print(bin_dir)
        return 0
    if shutil.which("go") is None:
        print("error: the Go toolchain (go) is not on PATH; it builds the upstream programs", file=sys.stderr)
        return 1
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-buildvcs=false", "GOTOOLCHAIN": "local"}
    progs = programs(pinned_versions())
    if args.only:
        unknown = set(args.only) - {p.name for p in progs}
        if unknown:
            print(f"error: unknown program(s): {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
        progs = [p for p in progs if p.name in args.only]
    failed = []
    timings: dict[str, float] = {}
    total = time.monotonic()
    for i, prog in enumerate(progs, 1):
        prog_dir = prog.bin_dir(args.cache_dir)
        prog_dir.mkdir(parents=True, exist_ok=True)
        marker = prog_dir / f".{prog.name}.failed"
        if (prog_dir / prog.name).exists():
            print(f"[{i}/{len(progs)}] {prog.name}: cached", flush=True)
            continue
        if prog.optional and marker.exists():
            print(f"[{i}/{len(progs)}] {prog.name}: skipped (optional; did not build with these pins)", flush=True)
            continue
        print(f"[{i}/{len(progs)}] {prog.name}: building {prog.package} ...", flush=True)
        ok, took, err = build(prog, prog_dir, env)
        timings[prog.name] = round(took, 1)
        if ok:
            print(f"[{i}/{len(progs)}] {prog.name}: built in {took:.0f} s", flush=True)
        elif prog.optional:
            marker.write_text(err)
            print(f"[{i}/{len(progs)}] {prog.name}: optional, did not build ({took:.0f} s):\n{err}", flush=True)
        else:
            failed.append(prog.name)
            print(f"[{i}/{len(progs)}] {prog.name}: FAILED after {took:.0f} s:\n{err}", file=sys.stderr, flush=True)
    if timings:
        print(json.dumps({"build_seconds": timings, "total_seconds": round(time.monotonic() - total, 1)}))
    if failed:
        print(f"error: could not build {', '.join(failed)}", file=sys.stderr)
        return 1
    print(bin_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
