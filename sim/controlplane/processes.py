"""Start, watch and stop the upstream control-plane programs as child processes.

Each program logs to ``<state dir>/logs/<name>.log``. A start waits for the program's own health
endpoint (``/readyz`` or ``/healthz`` over TLS) instead of sleeping, and fails with the log's last
lines when the program exits first or does not become healthy in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ProcessFailed(RuntimeError):
    pass


@dataclass
class Program:
    """One running upstream program."""

    name: str
    argv: list[str]
    log_path: Path
    proc: subprocess.Popen | None = None
    started: float = field(default=0.0)

    def start(self, env: dict[str, str] | None = None) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env={**os.environ, **(env or {})}, start_new_session=True)
        self.started = time.monotonic()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    def failure(self, what: str) -> ProcessFailed:
        return ProcessFailed(f"{self.name} {what}; the end of {self.log_path}:\n{self.tail()}")

    async def wait_healthy(self, url: str, ssl_ctx: ssl.SSLContext, timeout: float = 90.0,
                           headers: dict[str, str] | None = None) -> None:
        """Poll ``url`` until it answers 200 ``ok``; fail when the process exits or time runs out."""
        deadline = time.monotonic() + timeout
        last = ""
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl_ctx)) as session:
            while True:
                if not self.running:
                    code = self.proc.returncode if self.proc else None
                    raise self.failure(f"exited with code {code} before becoming healthy")
                try:
                    async with session.get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=5)) as resp:
                        body = await resp.text()
                        if resp.status == 200:
                            return
                        last = f"HTTP {resp.status}: {body.strip()[-300:]}"
                except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                    last = f"{type(exc).__name__}: {exc}"
                if time.monotonic() > deadline:
                    raise self.failure(f"not healthy after {timeout:.0f} s at {url} ({last})")
                await asyncio.sleep(0.2)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
