"""The kubectl releases the tests drive: today's (1.37, built from this checkout's pins), the newest
the machine has (the ``kubectl`` on PATH) and the oldest still in use here (1.27).

1.37 comes from :func:`sim.controlplane.binaries.find` (the build cache of
``scripts/build_control_plane.py``); the older releases sit where ``scripts/install_kubectl.py``
puts them, beside the kubectl on PATH, or anywhere on PATH. Nothing here names a system directory.
A missing kubectl is not skipped: :meth:`Kubectl.exe` raises with the command that installs it.
"""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from sim.controlplane import binaries

BUILD = "python3 scripts/build_control_plane.py"
INSTALL = "python3 scripts/install_kubectl.py"
TODAY = "1.37"
OLDEST = "1.27"


@dataclass(frozen=True)
class Kubectl:
    """One kubectl release: ``name`` labels it in test ids, ``exe()`` is its path."""

    name: str
    path: Path | None
    missing: str = ""  # why path is None and how to install it

    def exe(self) -> str:
        if self.path is None:
            raise FileNotFoundError(self.missing)
        return str(self.path)

    def __str__(self) -> str:
        return f"kubectl-{self.name}"


def client_version(path: Path) -> str:
    """``major.minor`` that the binary reports, e.g. ``1.32``."""
    out = subprocess.run([str(path), "version", "--client", "-o", "json"], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    info = json.loads(out)["clientVersion"]
    return f"{info['major']}.{info['minor'].rstrip('+')}"


def _beside_path(version: str) -> Path | None:
    name = f"kubectl.{version}"
    found = shutil.which(name)
    if found:
        return Path(found)
    on_path = shutil.which("kubectl")
    if on_path:
        candidate = Path(on_path).resolve().parent / name
        if candidate.is_file():
            return candidate
    return None


@functools.cache
def today() -> Kubectl:
    """kubectl 1.37 from the control-plane build (the kubectl on PATH is not accepted in its place)."""
    try:
        path = binaries.find("kubectl")
    except binaries.BinaryNotFound as exc:
        return Kubectl(TODAY, None, str(exc))
    version = client_version(path)
    if version != TODAY:
        return Kubectl(TODAY, None, f"kubectl {TODAY} not built (found {version} at {path}): run `{BUILD}`")
    return Kubectl(TODAY, path)


@functools.cache
def on_path() -> Kubectl:
    found = shutil.which("kubectl")
    if not found:
        return Kubectl("path", None, f"no kubectl on PATH: install one (e.g. the kubectl package), then `{INSTALL}`")
    return Kubectl("path", Path(found))


@functools.cache
def oldest() -> Kubectl:
    path = _beside_path(OLDEST)
    if path is None:
        return Kubectl(OLDEST, None, f"kubectl.{OLDEST} is not installed: run `{INSTALL}`")
    return Kubectl(OLDEST, path)


def kubectl_set() -> list[Kubectl]:
    """1.37, the kubectl on PATH, 1.27: the releases every kubectl-facing test runs."""
    return [today(), on_path(), oldest()]
