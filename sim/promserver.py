"""A real Prometheus on loopback, for the import tests and benchmark: TSDB backfill with promtool
and a ``prometheus`` process serving it (and scraping whatever the config says).

The binaries come from PATH (``scripts/install_prometheus.py`` installs Debian's package); a
missing one is an error that names that command.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

INSTALL = "python3 scripts/install_prometheus.py"


class PrometheusMissing(RuntimeError):
    pass


def binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise PrometheusMissing(f"{name} not found on PATH; install it with: {INSTALL}")
    return path


def backfill(files: list[Path], tsdb: Path, *, jobs: int = 2) -> None:
    """``promtool tsdb create-blocks-from openmetrics`` for each file (one block each) into ``tsdb``."""
    promtool = binary("promtool")
    tsdb.mkdir(parents=True, exist_ok=True)

    def one(f: Path) -> None:
        proc = subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", "-q", str(f), str(tsdb)],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"promtool failed on {f}: {proc.stderr[-2000:]}")

    with ThreadPoolExecutor(jobs) as pool:
        list(pool.map(one, files))


class PrometheusServer:
    """``prometheus`` with ``config`` (YAML text) over ``tsdb`` on 127.0.0.1:``port``."""

    def __init__(self, tsdb: Path, port: int, config: str = "global:\n  scrape_interval: 15s\n") -> None:
        self.tsdb, self.port, self.config = tsdb, port, config
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> PrometheusServer:
        exe = binary("prometheus")
        self.tsdb.mkdir(parents=True, exist_ok=True)
        cfg = self.tsdb.parent / f"prometheus-{self.port}.yml"
        cfg.write_text(self.config)
        self.log = self.tsdb.parent / f"prometheus-{self.port}.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [exe, f"--config.file={cfg}", f"--storage.tsdb.path={self.tsdb}",
                 "--storage.tsdb.retention.time=100y", f"--web.listen-address=127.0.0.1:{self.port}",
                 "--web.enable-lifecycle"], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"prometheus not ready after {timeout}s: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> PrometheusServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
