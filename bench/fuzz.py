"""Coverage-guided fuzzing of the parsers that take outside input (atheris + libFuzzer).

    python3 bench/fuzz.py                          # every target, 100,000 inputs each
    python3 bench/fuzz.py --runs 2000 quantity hpa # some targets, fewer inputs
    python3 bench/fuzz.py --list

Each target runs in its own subprocess (libFuzzer owns the process and exits when done), seeded
from tests/fuzz/seeds/<target>/ and the working corpus it grew last time under --out. JSON
targets also get a structure-aware mutator (edit one node of a parsed document) half the time.
A hang over --timeout seconds is a crash too. Prints one JSON line per target, then a summary;
crashing inputs are written to <out>/<target>/crash-* (replay one with --replay FILE TARGET).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fuzz.targets import TARGETS, Target, mutate  # noqa: E402

ATHERIS_MISSING = "atheris is not installed: python3 -m pip install -e '.[fuzz]'  (or: pip install 'atheris>=3')"


def child(name: str, argv: list[str]) -> None:
    """Inside the subprocess: instrument the parser modules, then hand the process to libFuzzer."""
    try:
        import atheris
    except ImportError:
        sys.exit(ATHERIS_MISSING)
    target = TARGETS[name]
    with atheris.instrument_imports(include=["autoscaler", "sim"]):
        checked = target.load()
    seen: set[tuple[str, str]] = set()

    def fn(data: bytes) -> None:
        """Record each distinct crash (exception type and innermost project line) and keep going."""
        try:
            checked(data)
        except Exception as exc:
            frames = traceback.extract_tb(exc.__traceback__)
            ours = [f for f in frames if str(ROOT) in f.filename and "/tests/fuzz/" not in f.filename] or frames
            where = f"{Path(ours[-1].filename).relative_to(ROOT)}:{ours[-1].lineno}" if ours else "?"
            sig = (type(exc).__name__, where)
            if sig in seen:
                return
            seen.add(sig)
            path = Path(f"crash-{hashlib.sha1(data).hexdigest()}")
            path.write_bytes(data)
            print(f"CRASH {sig[0]} at {sig[1]} -> {path.resolve()}", flush=True)
            traceback.print_exc(file=sys.stdout)
            sys.stdout.flush()

    def custom_mutator(data: bytes, max_size: int, seed: int) -> bytes:
        rng = random.Random(seed)
        if rng.random() < 0.5:
            out = mutate(target, data, rng)
            if out is not None and len(out) <= max_size:
                return out
        return atheris.Mutate(data, max_size)

    atheris.Setup([sys.argv[0], *argv], fn, custom_mutator=custom_mutator if target.json_aware else None)
    atheris.Fuzz()


_STATS = re.compile(r"^#(\d+)\s+\S+\s+cov: (\d+) ft: (\d+) corp: (\d+)", re.M)
_DONE = re.compile(r"^Done (\d+) runs in (\d+) second", re.M)
_CRASH = re.compile(r"^CRASH (\S+) at (\S+) -> (\S+)$", re.M)


def run_target(target: Target, runs: int, out: Path, timeout: int, quiet: bool, seed: int = 0) -> dict:
    """Fuzz one target in a subprocess; its stats parsed from libFuzzer's log."""
    work = out / target.name
    corpus, scratch = work / "corpus", work / "tmp"
    corpus.mkdir(parents=True, exist_ok=True)
    scratch.mkdir(parents=True, exist_ok=True)
    for old in work.glob("*-*"):  # the last run's crashing inputs: this run reports its own
        if old.name.startswith(("crash-", "timeout-", "oom-", "leak-", "slow-unit-")):
            old.unlink()
    args = [sys.executable, __file__, "--child", target.name, f"-runs={runs}", f"-timeout={timeout}",
            f"-max_len={target.max_len}", f"-artifact_prefix={work}/", "-print_final_stats=1",
            "-rss_limit_mb=3072", f"-seed={seed}", str(corpus), str(ROOT / "tests" / "fuzz" / "seeds" / target.name)]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               TMPDIR=str(scratch))  # the readers' temp files (kubeconfig cert data, scratch inputs)
    t0 = time.monotonic()
    with open(work / "log.txt", "w") as log:
        proc = subprocess.run(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=work, check=False)
    seconds = time.monotonic() - t0
    shutil.rmtree(scratch, ignore_errors=True)
    text = (work / "log.txt").read_text(errors="replace")
    if ATHERIS_MISSING in text:
        raise SystemExit(ATHERIS_MISSING)
    stats = _STATS.findall(text)
    done = _DONE.search(text)
    # distinct crashes the child recorded, plus what libFuzzer itself saved (hangs, memory, exits)
    crashes = [{"error": e, "at": at, "input": f} for e, at, f in _CRASH.findall(text)]
    crashes += [{"error": p.name.split("-")[0], "at": "", "input": str(p)} for p in sorted(work.iterdir())
                if p.name.startswith(("timeout-", "oom-", "leak-", "slow-unit-"))
                or (p.name.startswith("crash-") and str(p) not in {c["input"] for c in crashes})]
    last = stats[-1] if stats else ("0", "0", "0", "0")
    result = {
        "target": target.name,
        "inputs_tried": int(done.group(1)) if done else int(last[0]),
        "crashes": len(crashes) or (0 if proc.returncode == 0 else 1),
        "crash_sites": crashes,
        "seconds": round(seconds, 1),
        "coverage": int(last[1]),
        "features": int(last[2]),
        "corpus": int(last[3]),
        "exit_code": proc.returncode,
    }
    if (crashes or proc.returncode != 0) and not quiet:
        print(f"{target.name}: see {work / 'log.txt'}", file=sys.stderr)
    return result


def replay(path: Path, name: str) -> int:
    """Run one saved input through a target without libFuzzer; prints the traceback of a crash."""
    error = TARGETS[name].outcome(path.read_bytes())
    print(f"{path}: {name}: " + (f"clear error {type(error).__name__}: {error}" if error else "parsed"))
    return 0


def main() -> int:
    if sys.argv[1:2] == ["--child"]:  # libFuzzer's own arguments follow; argparse must not see them
        child(sys.argv[2], sys.argv[3:])
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("targets", nargs="*", metavar="TARGET", help="default: all")
    ap.add_argument("--runs", type=int, default=100_000, help="inputs per target (default 100000)")
    ap.add_argument("--timeout", type=int, default=5, help="seconds one input may take before it counts as a hang")
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "autoscaler-fuzz",
                    help="working corpora, logs and crashing inputs")
    ap.add_argument("--seed", type=int, default=0,
                    help="libFuzzer's random seed: a fixed one repeats a run input for input (default 0: random)")
    ap.add_argument("--list", action="store_true", help="list the targets and exit")
    ap.add_argument("--quiet", action="store_true", help="no crash tracebacks on stderr")
    ap.add_argument("--replay", type=Path, metavar="FILE", help="run FILE through the one TARGET given")
    args = ap.parse_args()
    if args.list:
        for t in TARGETS.values():
            print(f"{t.name:18} max_len={t.max_len:<5} {t.doc}")
        return 0
    unknown = [n for n in args.targets if n not in TARGETS]
    if unknown:
        ap.error(f"unknown target(s) {', '.join(unknown)}; choose from {', '.join(TARGETS)}")
    if args.replay:
        if len(args.targets) != 1:
            ap.error("--replay needs exactly one TARGET")
        return replay(args.replay, args.targets[0])
    results = []
    for name in args.targets or list(TARGETS):
        r = run_target(TARGETS[name], args.runs, args.out, args.timeout, args.quiet, args.seed)
        print(json.dumps(r), flush=True)
        results.append(r)
    summary = {"targets": len(results), "inputs_tried": sum(r["inputs_tried"] for r in results),
               "crashes": sum(r["crashes"] for r in results),
               "crashed_targets": [r["target"] for r in results if r["crashes"]],
               "seconds": round(sum(r["seconds"] for r in results), 1), "out": str(args.out)}
    print(json.dumps({"summary": summary}), flush=True)
    return 1 if summary["crashes"] else 0


if __name__ == "__main__":
    sys.exit(main())
