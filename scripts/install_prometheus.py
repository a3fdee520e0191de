#!/usr/bin/env python3
"""Install Prometheus and promtool for the Prometheus-import tests (Debian's package).

The tests backfill a TSDB with ``promtool tsdb create-blocks-from openmetrics`` and run
``prometheus`` on loopback; both come from Debian's ``prometheus`` package (2.42 on bookworm,
new enough for every API the import uses). The package's maintainer scripts would start a
service: ``policy-rc.d`` forbids that for the install, so nothing is left running. Already
installed: nothing to do.

Usage: python scripts/install_prometheus.py [--check]   (--check: exit 1 if missing, install nothing)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

INSTALL = "python3 scripts/install_prometheus.py"


def found() -> bool:
    return all(shutil.which(b) for b in ("prometheus", "promtool"))


def install() -> None:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    policy = Path("/usr/sbin/policy-rc.d")
    had_policy = policy.exists()
    if not had_policy:  # invoke-rc.d asks this before starting a service: 101 = "not allowed"
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "prometheus"],
                       check=True, env=env)
    finally:
        if not had_policy:
            policy.unlink(missing_ok=True)


def main() -> int:
    if found():
        return 0
    if "--check" in sys.argv[1:]:
        print(f"prometheus/promtool not on PATH; install with: {INSTALL}", file=sys.stderr)
        return 1
    install()
    if not found():
        print("apt-get installed prometheus, but prometheus/promtool are not on PATH", file=sys.stderr)
        return 1
    out = subprocess.run(["prometheus", "--version"], capture_output=True, text=True).stdout.splitlines()
    print(out[0] if out else "prometheus installed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
