"""Run an emulated API server on a background event-loop thread (tests, notebooks, tools).

Subprocesses such as the real ``kubectl`` and blocking clients such as the ``kubernetes`` Python
client can then talk to it while the caller's thread stays free::

    with ServerThread(tmp_path) as srv:
        subprocess.run(["kubectl", "--kubeconfig", srv.kubeconfig, "get", "ns"])
        srv.call(lambda: srv.store.create("pods", pod))   # run on the server's loop
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sim.loopthread import LoopThread
from sim.pki import ClusterPKI

from .server import APIServer
from .store import ObjectStore


class ServerThread(LoopThread):
    """An :class:`APIServer` with a fresh store and PKI under ``directory``, on its own loop thread."""

    def __init__(self, directory: Path, **server_kwargs: Any):
        self.directory = Path(directory)
        self.server_kwargs = server_kwargs
        super().__init__("apiserver-loop")
        self.store: ObjectStore
        self.server: APIServer
        self.kubeconfig: Path

    def start(self) -> ServerThread:
        self.start_loop()
        pki = ClusterPKI.create(self.directory / "pki")

        async def boot() -> APIServer:
            self.store = ObjectStore()
            server = APIServer(self.store, pki, **self.server_kwargs)
            await server.start()
            return server

        self.server = self.run(boot())
        self.kubeconfig = self.server.write_kubeconfig(self.directory / "kubeconfig")
        return self

    def stop(self) -> None:
        try:
            self.run(self.server.stop(), timeout=30)
        finally:
            self.stop_loop()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
