"""Packaging: `pip install autoscaler` is the in-cluster server alone; the rest comes with extras.

The server must run without any optional package: `autoscaler run` (metrics pipeline and the
HPA controller in dry-run with leader election, as the chart deploys it) starts in a process
where the optional packages and the emulator (``sim``) cannot be imported, scrapes an emulated
cluster until /readyz passes and serves its controller's metrics. The other commands name the
extra they need when it is missing; pyproject.toml, autoscaler/extras.py and the Dockerfile
agree on which packages are optional.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest
from test_metrics_api_support import probe, run_args, wait_for

from autoscaler import extras
from sim.cluster import run_in_thread
from sim.scenario import parse_scenario

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
#: import name of each distribution an extra lists
IMPORT_NAMES = {"kubernetes": "kubernetes", "rich": "rich", "matplotlib": "matplotlib",
                "dask": "distributed"}  # dask[distributed] is imported as distributed
OPTIONAL_DISTRIBUTIONS = {"rich", "matplotlib", "kubernetes", "dask"}
OPTIONAL = sorted({m for mods in extras.EXTRA_MODULES.values() for m in mods})
#: a process in which the optional packages and the emulator cannot be imported (as if not installed)
BLOCK = f"import sys\nfor _m in {[*OPTIONAL, 'sim']!r}:\n    sys.modules[_m] = None\n"


def requirement_name(req: str) -> str:
    return re.split(r"[<>=\[ ;]", req, maxsplit=1)[0]


def test_core_dependencies_are_what_run_needs_and_extras_hold_the_rest():
    core = {requirement_name(r) for r in PYPROJECT["dependencies"]}
    assert not core & OPTIONAL_DISTRIBUTIONS, "an optional package crept back into the server's dependencies"
    optional = PYPROJECT["optional-dependencies"]
    for extra, modules in extras.EXTRA_MODULES.items():
        listed = {IMPORT_NAMES[requirement_name(r)] for r in optional[extra] if not r.startswith("autoscaler[")}
        assert listed == set(modules), extra
    assert "autoscaler[sim]" in optional["report"]  # plots of replays need the replay
    assert optional["all"] == ["autoscaler[cli,sim,report,distributed]"]
    assert "autoscaler[all]" in optional["dev"]
    assert set(extras.COMMAND_EXTRAS.values()) <= set(extras.EXTRA_MODULES)


def test_the_image_installs_the_server_alone():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"AUTOSCALER_MYPYC=1 pip wheel --wheel-dir /wheels \.\s*$", text, re.M)  # no extras; compiled core
    assert re.search(r"pip install --no-index --find-links /wheels autoscaler\s", text)  # none installed


def test_a_missing_extra_is_one_line_naming_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "rich", None)
    with pytest.raises(extras.MissingExtra) as err:
        extras.require("recommend", "cli")
    assert str(err.value) == ("error: autoscaler recommend needs the 'cli' extra (missing: rich): "
                              "pip install 'autoscaler[cli]'")
    extras.require("sim replay --report", "report")  # installed here: no error
    exc = ModuleNotFoundError("No module named 'matplotlib.pyplot'", name="matplotlib.pyplot")
    assert extras.hint(exc, "sim replay") == ("error: autoscaler sim replay needs the 'report' extra "
                                              "(missing: matplotlib): pip install 'autoscaler[report]'")
    assert "'sim' extra" in extras.hint(ModuleNotFoundError(name="rich"), "sim up")
    assert extras.hint(ModuleNotFoundError(name="not_ours"), "explain") is None


@pytest.mark.parametrize(("module", "argv", "extra"), [
    ("autoscaler.controller.recommend_cmd", [], "cli"),
])
def test_commands_without_their_extra_say_which_to_install(module, argv, extra):
    code = BLOCK + textwrap.dedent(f"""
        import argparse
        import {module} as cmd
        parser = argparse.ArgumentParser()
        cmd.add_arguments(parser)
        sys.exit(cmd.main(parser.parse_args({argv!r})))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 1
    assert f"needs the '{extra}' extra" in proc.stderr and f"pip install 'autoscaler[{extra}]'" in proc.stderr
    assert "Traceback" not in proc.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_run_serves_without_any_optional_package_or_the_emulator(tmp_path):
    scenario = {"name": "core-only", "timing": {"startupDelay": "0s", "readinessDelay": "0s"},
                "kubelet": {"housekeepingInterval": "2s"}, "nodes": [{"name": "worker-1"}],
                "workloads": [{"name": "web", "replicas": 1, "requests": {"cpu": "100m", "memory": "64Mi"},
                               "load": {"kind": "constant", "cores": 0.05}}],
                "hpas": [{"target": "web", "minReplicas": 1, "maxReplicas": 3, "cpuUtilization": 50}]}
    cluster = run_in_thread(parse_scenario(scenario), tmp_path / "cluster")
    port = _free_port()
    argv = [a for a in run_args(cluster, tmp_path) if a != "--controller-mode=off"]
    argv[argv.index("--secure-port") + 1] = str(port)
    argv += ["--controller-mode=dry-run", "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics"]
    # the run command's own module, as the CLI dispatches to it
    code = BLOCK + textwrap.dedent(f"""
        import argparse
        from autoscaler.logs import add_logging_flags, configure_logging
        from autoscaler.server import run_cmd
        parser = argparse.ArgumentParser()
        run_cmd.add_arguments(parser)
        if not any(a.dest == "log_format" for a in parser._actions):
            add_logging_flags(parser)
        args = parser.parse_args({argv!r})
        configure_logging(args.log_format, args.log_level)
        sys.exit(run_cmd.main(args))
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=open(tmp_path / "run.log", "w"))  # noqa: SIM115 (closed with the process)
    try:
        def ready() -> bool:
            assert proc.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
            try:
                return probe(port, "/readyz")[0] == 200
            except OSError:
                return False

        wait_for(ready, 60, "autoscaler run (core packages only) to become ready")
        code_, text = probe(port, "/metrics")
        assert code_ == 200
        assert 'metrics_server_kubelet_request_total{success="true"}' in text
        assert "horizontal_pod_autoscaler_controller_num_horizontal_pod_autoscalers" in text
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        cluster.stop()
    log = (tmp_path / "run.log").read_text()
    assert "ModuleNotFoundError" not in log and "Traceback" not in log, log[-3000:]


def test_the_cli_names_the_extra_when_a_command_lacks_a_package(tmp_path):
    """`autoscaler sim replay` where rich is not installed: one line naming the extra, exit 1."""
    import numpy as np

    from sim.replay.synth import hpa_manifest, synthesize
    from sim.replay.trace import write_trace

    trace = tmp_path / "web.json.gz"
    write_trace(synthesize("web", 1_767_225_600.0, 15.0, np.full(40, 0.5), hpa_manifest("web", "default")), trace)
    code = "import sys\nsys.modules['rich'] = None\nfrom autoscaler.cli import main\nsys.exit(main(sys.argv[1:]))"
    proc = subprocess.run([sys.executable, "-c", code, "sim", "replay", str(trace)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        "error: autoscaler sim replay needs the 'sim' extra (missing: rich): pip install 'autoscaler[sim]'")
