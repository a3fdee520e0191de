"""The parsers of outside input under fuzzing: a short coverage-guided run and every crasher replayed.

The long run (100,000 inputs per target) is ``python3 bench/fuzz.py``; see docs/fuzzing.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fuzz.targets import TARGETS

ROOT = Path(__file__).resolve().parents[1]
SHORT_RUNS = 300
SHORT_SEED = 1  # fixed: the test run is the same inputs every time; new crashes are found by bench/fuzz.py

CRASHERS = [(t.name, p) for t in TARGETS.values() for p in t.crashers()]


@pytest.mark.parametrize(("name", "path"), CRASHERS, ids=[f"{n}/{p.name}" for n, p in CRASHERS])
def test_crasher_now_gets_a_clear_error(name: str, path: Path) -> None:
    """An input that once crashed a parser ends in its documented error with a message (or parses)."""
    t0 = time.monotonic()
    error = TARGETS[name].outcome(path.read_bytes())  # a crash (any other exception) fails the test
    # a hang guard, not a speed figure: the slowest crasher takes ~2 s on a busy 2-core machine
    assert time.monotonic() - t0 < 30, f"{path} took over 30 s"
    assert error is None or str(error).strip()


def test_every_target_has_real_seeds() -> None:
    """Seeds are payloads the parsers accept (a few are deliberate errors, e.g. ``in ()``)."""
    for t in TARGETS.values():
        outcomes = [t.outcome(p.read_bytes()) for p in t.seeds()]
        assert outcomes, f"tests/fuzz/seeds/{t.name}/ is empty"
        assert outcomes.count(None) > len(outcomes) / 2, (t.name, outcomes)
    total = sum(p.stat().st_size for t in TARGETS.values() for p in t.seeds())
    assert total < 1_000_000


@pytest.mark.parametrize("name", list(TARGETS))
def test_short_fuzz_run_finds_no_crash(name: str, tmp_path: Path) -> None:
    """A few hundred coverage-guided inputs per target through bench/fuzz.py (atheris + libFuzzer)."""
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "fuzz.py"), "--runs", str(SHORT_RUNS),
                           "--seed", str(SHORT_SEED), "--out", str(tmp_path), "--quiet", name],
                          capture_output=True, text=True, timeout=120, check=False)
    assert "atheris is not installed" not in proc.stderr, proc.stderr  # install: pip install -e '.[dev]'
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"no result from bench/fuzz.py:\n{proc.stdout}\n{proc.stderr}"
    result = lines[0]
    log = (tmp_path / name / "log.txt").read_text(errors="replace")
    assert result["crashes"] == 0, f"{result['crash_sites']}\n{log[-4000:]}"
    assert result["inputs_tried"] == SHORT_RUNS, log[-2000:]
    assert result["coverage"] > 0, "atheris saw no coverage: the parser modules were not instrumented"
    assert proc.returncode == 0
