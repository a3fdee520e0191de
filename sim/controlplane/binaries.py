"""Where the upstream programs of the real control plane are found.

In order: the directory a user names (``--binaries DIR``, e.g. the official release binaries), the
directory in ``$AUTOSCALER_CONTROL_PLANE_BIN``, the build cache of this checkout's pins
(``scripts/build_control_plane.py`` builds into ``~/.cache/autoscaler/control-plane/<hash>/bin``,
the hash taken over ``tools/control-plane/*/go.{mod,sum}``), then ``PATH``.

Client tools that are not part of the control plane (helm, under ``tools/helm/``) are pinned and
cached on their own, in ``~/.cache/autoscaler/control-plane/<name>-<hash>/bin`` keyed by their
own go.mod/go.sum, so adding or bumping one rebuilds that tool alone.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
TOOLS = ROOT / "tools"
MODULES = TOOLS / "control-plane"
#: programs pinned by their own module ``tools/<name>/`` and cached apart from the control plane
SEPARATE_TOOLS = ("helm",)
#: bump when the way binaries are built changes (flags, ldflags), so cached builds are not reused
RECIPE = 1
ENV_DIR = "AUTOSCALER_CONTROL_PLANE_BIN"

CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")


def cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "autoscaler" / "control-plane"


def _hash_modules(base: Path) -> str | None:
    files = sorted(base.rglob("go.*")) if base.is_dir() else []
    if not files:
        return None
    h = hashlib.sha256(f"recipe {RECIPE}".encode())
    for path in files:
        h.update(str(path.relative_to(base)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def pins_hash() -> str | None:
    """Hash of the pinned control-plane modules (None outside a source checkout)."""
    return _hash_modules(MODULES)


def tool_cache_dir(name: str, root: Path | None = None) -> Path | None:
    """The bin directory of a separately pinned tool (``tools/<name>/``), None outside a checkout."""
    h = _hash_modules(TOOLS / name)
    return (root or cache_root()) / f"{name}-{h}" / "bin" if h else None


def cache_dir() -> Path | None:
    """The bin directory the build script fills for this checkout's pins."""
    h = pins_hash()
    return cache_root() / h / "bin" if h else None


class BinaryNotFound(FileNotFoundError):
    pass


def find(name: str, directory: str | Path | None = None) -> Path:
    """The path of program ``name``; :class:`BinaryNotFound` says where it looked and how to build it."""
    looked: list[str] = []
    candidates = [Path(directory)] if directory else []
    if os.environ.get(ENV_DIR):
        candidates.append(Path(os.environ[ENV_DIR]))
    cached = tool_cache_dir(name) if name in SEPARATE_TOOLS else cache_dir()
    if cached is not None:
        candidates.append(cached)
    for d in candidates:
        p = d / name
        if p.is_file() and os.access(p, os.X_OK):
            return p
        looked.append(str(d))
        if directory:  # a directory the user named is the only place to look
            break
    if not directory:
        found = shutil.which(name)
        if found:
            return Path(found)
        looked.append("PATH")
    raise BinaryNotFound(
        f"{name} not found (looked in {', '.join(looked)}); build the pinned upstream programs with "
        f"`python3 scripts/build_control_plane.py`, or pass --binaries DIR with the release binaries")
