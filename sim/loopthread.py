"""An asyncio event loop on a background thread, driven from blocking code.

The emulated API server and cluster are single-threaded asyncio programs; tests and tools run
them on such a thread so that subprocesses (the real ``kubectl``) and blocking clients (the
``kubernetes`` package) can talk to them while the caller's thread stays free.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class LoopThread:
    """Owns a loop running forever on a daemon thread; ``run``/``call`` execute work on it."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)

    def start_loop(self) -> None:
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        """Run a coroutine on the loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[], T], timeout: float = 60) -> T:
        """Run a plain function on the loop (the emulated store is single-threaded) and return its result."""
        fut: concurrent.futures.Future[T] = concurrent.futures.Future()

        def runner() -> None:
            try:
                fut.set_result(fn())
            except BaseException as exc:
                fut.set_exception(exc)

        self.loop.call_soon_threadsafe(runner)
        return fut.result(timeout)

    def stop_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
