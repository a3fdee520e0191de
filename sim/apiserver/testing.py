"""Run an emulated API server on a background event-loop thread (tests, notebooks, tools).

Subprocesses such as the real ``kubectl`` and blocking clients such as the ``kubernetes`` Python
client can then talk to it while the caller's thread stays free::

    with ServerThread(tmp_path) as srv:
        subprocess.run(["kubectl", "--kubeconfig", srv.kubeconfig, "get", "ns"])
        srv.call(lambda: srv.store.create("pods", pod))   # run on the server's loop
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sim.pki import ClusterPKI

from .server import APIServer
from .store import ObjectStore

T = TypeVar("T")


class ServerThread:
    """An :class:`APIServer` with a fresh store and PKI under ``directory``, on its own loop thread."""

    def __init__(self, directory: Path, **server_kwargs: Any):
        self.directory = Path(directory)
        self.server_kwargs = server_kwargs
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="apiserver-loop", daemon=True)
        self.store: ObjectStore
        self.server: APIServer
        self.kubeconfig: Path

    def start(self) -> ServerThread:
        self._thread.start()
        pki = ClusterPKI.create(self.directory / "pki")

        async def boot() -> APIServer:
            self.store = ObjectStore()
            server = APIServer(self.store, pki, **self.server_kwargs)
            await server.start()
            return server

        self.server = self.run(boot())
        self.kubeconfig = self.server.write_kubeconfig(self.directory / "kubeconfig")
        return self

    def run(self, coro: Any, timeout: float = 60) -> Any:
        """Run a coroutine on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[], T], timeout: float = 60) -> T:
        """Run a plain function on the server's loop (the store is single-threaded)."""
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()

        def runner() -> None:
            try:
                fut.set_result(fn())
            except BaseException as exc:
                fut.set_exception(exc)
        self.loop.call_soon_threadsafe(runner)
        return fut.result(timeout)

    def stop(self) -> None:
        try:
            self.run(self.server.stop(), timeout=30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
