"""Listening: the aiohttp site on ``--bind-address:--secure-port`` over the serving TLS context."""

from __future__ import annotations

import asyncio

import structlog
from aiohttp import web

from autoscaler.server.tls import ServerTLS

log = structlog.get_logger(__name__)


class HTTPSServer:
    """Serves an aiohttp application over TLS; ``port`` is the bound port (useful with port 0)."""

    def __init__(self, app: web.Application, tls: ServerTLS, bind_address: str = "0.0.0.0", port: int = 443,
                 shutdown_timeout: float = 5.0):
        self.app = app
        self.tls = tls
        self.bind_address = bind_address
        self.requested_port = port
        self.port = 0
        self._shutdown_timeout = shutdown_timeout
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False,
                                     shutdown_timeout=self._shutdown_timeout)
        await self._runner.setup()
        host = self.bind_address or None
        site = web.TCPSite(self._runner, host, self.requested_port, ssl_context=self.tls.context,
                           backlog=1024, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            raise OSError(exc.errno, f"cannot listen on {self.bind_address}:{self.requested_port}: {exc.strerror}") from exc
        addrs = self._runner.addresses
        self.port = int(addrs[0][1]) if addrs else self.requested_port
        log.info("Serving securely", address=self.bind_address, port=self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def run(self, stop: asyncio.Event) -> None:
        """Component entry point: serve until ``stop`` is set."""
        if self._runner is None:
            await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()
