"""The `autoscaler` command: each command loads only what it uses, and the help a user reads.

Start-up time is what `autoscaler --help`, `explain` and a replay feel like; the lasting guarantee
is which modules a command imports (timings are for bench/bench_replay_cli.py), checked in a fresh
interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from autoscaler import __version__
from autoscaler.cli import COMMANDS, GROUPS, build_parser
from sim.replay.synth import hpa_manifest, synthesize
from sim.replay.trace import write_trace

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT = ROOT / "tests" / "data" / "snapshots" / "web-multidoc.yaml"
#: heavy libraries and the emulator: none of them is needed to print help
HEAVY = ("sim", "kubernetes", "matplotlib", "structlog", "rich", "aiohttp", "cryptography", "numpy", "yaml")

PROBE = """
import json, sys
from autoscaler.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as e:
    code = e.code
sys.stdout.flush()
print("\\nMODULES " + json.dumps(sorted({m.split('.')[0] for m in sys.modules})), file=sys.stderr)
sys.exit(code or 0)
"""


def loaded(*argv: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run the CLI in a fresh interpreter; the top-level packages it imported."""
    p = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=120, cwd=ROOT)
    line = next(x for x in p.stderr.splitlines() if x.startswith("MODULES "))
    return p, set(json.loads(line[len("MODULES "):]))


def test_help_loads_no_command_and_no_heavy_library() -> None:
    p, mods = loaded("--help")
    assert p.returncode == 0, p.stderr
    assert not mods & set(HEAVY), sorted(mods & set(HEAVY))


def test_explain_loads_the_decision_core_only() -> None:
    p, mods = loaded("explain", "-f", str(SNAPSHOT), "-o", "text")
    assert p.returncode == 0, p.stderr
    assert "autoscaler" in mods and "numpy" in mods
    unexpected = mods & {"sim", "kubernetes", "matplotlib", "structlog", "rich", "aiohttp", "cryptography"}
    assert not unexpected, sorted(unexpected)


def test_replay_loads_no_client_plotting_or_server_library(tmp_path: Path) -> None:
    t = np.arange(0, 3600 + 1, 15.0)
    hpa = hpa_manifest("web", min_replicas=1, max_replicas=8)
    trace, hpa_file = tmp_path / "web.csv", tmp_path / "hpa.json"
    write_trace(synthesize("web", 1_767_225_600.0, 15.0, 1.0 + 0.5 * np.sin(t / 600), hpa, seed=1), trace)
    hpa_file.write_text(json.dumps(hpa))
    p, mods = loaded("sim", "replay", str(trace), "--hpa", str(hpa_file), "-o", "json", "--jobs", "1")
    assert p.returncode == 0, p.stderr
    assert "sim" in mods
    unexpected = mods & {"kubernetes", "matplotlib", "structlog", "rich", "aiohttp", "cryptography"}
    assert not unexpected, sorted(unexpected)


def test_product_commands_never_load_the_emulator() -> None:
    for c in COMMANDS:
        if c.path[0] in ("sim", "record"):
            continue
        p, mods = loaded(*c.path, "--help")
        assert p.returncode == 0, p.stderr
        assert "sim" not in mods, f"autoscaler {' '.join(c.path)} imports sim"


def test_top_level_help_lists_every_command_once() -> None:
    p = subprocess.run([sys.executable, "-m", "autoscaler", "--help"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0
    assert p.stdout.startswith("usage: autoscaler [-h] [--version] COMMAND ...")
    listed = [line.split(None, 1)[1] for line in p.stdout.splitlines() if line.startswith("  autoscaler ")]
    assert len(listed) == len(COMMANDS), p.stdout
    for c in COMMANDS:
        name = " ".join(c.path) + " "
        assert sum(entry.startswith(name) for entry in listed) == 1, (name, p.stdout)
        assert c.summary in p.stdout


def test_group_help_describes_the_group_and_its_commands() -> None:
    for group, (summary, _) in GROUPS.items():
        for argv in ([group, "--help"], [group]):
            p = subprocess.run([sys.executable, "-m", "autoscaler", *argv], capture_output=True, text=True, timeout=60)
            assert p.returncode == (0 if "--help" in argv else 2)
            assert p.stdout.startswith(f"usage: autoscaler {group} [-h] COMMAND ...")
            assert summary[1:] in p.stdout
            for c in COMMANDS:
                if c.path[0] == group:
                    assert f"autoscaler {' '.join(c.path)} " in p.stdout


@pytest.mark.parametrize("argv", [["sim", "up", "--bogus"], ["explain", "-f", "x", "--bogus"], ["sim", "--bogus"]])
def test_an_unknown_flag_is_reported_with_its_commands_usage(argv: list[str]) -> None:
    p = subprocess.run([sys.executable, "-m", "autoscaler", *argv], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
    prog = "autoscaler " + " ".join(a for a in argv if not a.startswith("-") and a != "x")
    assert p.stderr.startswith(f"usage: {prog} "), p.stderr
    assert f"{prog}: error: unrecognized arguments: --bogus" in p.stderr


def test_run_help_names_the_hpa_controller() -> None:
    p = subprocess.run([sys.executable, "-m", "autoscaler", "run", "--help"], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0
    head = p.stdout.split("options:")[0]
    assert "HPA controller" in head and "--controller-mode" in head


def test_every_listed_command_has_its_module_and_flags() -> None:
    """Without argv the parser loads every command, so a summary never outlives its module."""
    import argparse

    def leaves(parser: argparse.ArgumentParser, path: tuple[str, ...]) -> dict[tuple[str, ...], argparse.ArgumentParser]:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            return {path: parser}
        out = {}
        for name, sub in subs[0].choices.items():
            out.update(leaves(sub, (*path, name)))
        return out

    found = leaves(build_parser(), ())
    assert set(found) == {c.path for c in COMMANDS}
    for path, parser in found.items():
        assert callable(parser.get_default("_main")), path
        assert parser.description and parser.description.strip(), path


def test_version_says_how_the_decision_core_runs() -> None:
    """A checkout (or a wheel built without AUTOSCALER_MYPYC=1) runs the interpreted core; the
    compiled wheel's answer is checked in tests/test_compiled_core.py."""
    p = subprocess.run([sys.executable, "-m", "autoscaler", "--version"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout == f"autoscaler {__version__} (decision core: interpreted)\n"
