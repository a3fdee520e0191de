"""The decision core compiled by mypyc decides exactly as the interpreted one.

``AUTOSCALER_MYPYC=1 pip wheel .`` (what the image's build stage runs) goes through
``tools/packaging/backend.py`` and ``setup.py`` and yields a wheel whose HPA decision modules are C
extensions. The wheel is unpacked beside a copy of the tests, and the test files that drive the
decision core (the upstream conformance cases, explain, fast paths, versions, defaulting, the
controller's parts, replay) run against it in a fresh interpreter, which must import the compiled
modules. mypyc checks the annotations at run time, so a value of the wrong type reaching the core
fails there even where the interpreted core would let it through.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMPILED = ("decide", "metrics_eval", "calculator", "normalize", "status")
CORE_TESTS = ["test_hpa_conformance.py", "test_hpa_explain.py", "test_hpa_fast_paths.py", "test_hpa_uses_metrics.py",
              "test_hpa_versions.py", "test_hpa_defaults.py", "test_controller_parts.py", "test_replay_model.py",
              "test_replay_fidelity.py"]

PROBE = """
import sys
import autoscaler.hpa
for name in sys.argv[1:]:
    print(sys.modules["autoscaler.hpa." + name].__file__)
"""


def test_the_mypyc_wheel_passes_the_decision_core_tests(tmp_path):
    env = {**os.environ, "AUTOSCALER_MYPYC": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(tmp_path / "dist"), str(ROOT)],
                           env=env, capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, "AUTOSCALER_MYPYC=1 pip wheel failed (mypyc needs a C compiler):\n" + \
        (build.stdout + build.stderr)[-4000:]
    (wheel,) = (tmp_path / "dist").glob("autoscaler-*.whl")
    assert "none-any" not in wheel.name, f"{wheel.name} is a pure-Python wheel: nothing was compiled"
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    shutil.copytree(ROOT / "tests", site / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", site / "pyproject.toml")  # the pytest settings

    # -P: the unpacked wheel on PYTHONPATH is imported, not this checkout (nor its editable install)
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "PYTHONPATH": str(site)}
    probe = subprocess.run([sys.executable, "-P", "-c", PROBE, *COMPILED], cwd=site, env=env,
                           capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0, probe.stderr
    files = probe.stdout.split()
    assert all(f.startswith(str(site)) and f.endswith(".so") for f in files), files
    version = subprocess.run([sys.executable, "-P", "-m", "autoscaler", "--version"], cwd=site, env=env,
                             capture_output=True, text=True, timeout=60)
    assert version.stdout == "autoscaler 0.1.0 (decision core: compiled (mypyc))\n", version

    run = subprocess.run([sys.executable, "-P", "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
                          *(f"tests/{t}" for t in CORE_TESTS)], cwd=site, env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "failed" not in run.stdout
