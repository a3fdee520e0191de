"""client-go's rate-limited work queue, as the HPA controller uses it.

A key is never processed by two workers at once; a key added while it is being processed is
processed again afterwards; ``add_after`` keeps only the earliest pending time per key, and an
immediate ``add`` leaves that pending time in place (client-go's delaying queue). The HPA
controller's rate limiter is a fixed delay of one sync period, so every HPA is re-added that long
after each reconcile. Delays run on an injectable clock (``now()`` plus ``async sleep()``), monotonic
by default so that a step of the wall clock changes no delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import time
from collections import deque
from collections.abc import Awaitable, Callable


class WorkQueue:
    def __init__(self, now: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self._now = now
        self._sleep = sleep
        self._queue: deque[str] = deque()
        self._dirty: set[str] = set()
        self._processing: set[str] = set()
        self._waiting: list[tuple[float, int, str]] = []
        self._when: dict[str, float] = {}
        self._seq = 0
        self._ready = asyncio.Event()
        self._wake = asyncio.Event()
        self._delay_task: asyncio.Task | None = None
        self._shutdown = False

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, key: str) -> None:
        if self._shutdown or key in self._dirty:
            return
        self._dirty.add(key)
        if key not in self._processing:
            self._queue.append(key)
            self._ready.set()

    def add_after(self, key: str, delay: float) -> None:
        if self._shutdown:
            return
        if delay <= 0:
            self.add(key)
            return
        when = self._now() + delay
        if key in self._when and self._when[key] <= when:
            return
        self._when[key] = when
        self._seq += 1
        heapq.heappush(self._waiting, (when, self._seq, key))
        self._wake.set()
        if self._delay_task is None or self._delay_task.done():
            self._delay_task = asyncio.create_task(self._delay_loop(), name="workqueue-delays")

    def forget(self, key: str) -> None:
        """Drop a pending delayed add (the object is gone)."""
        self._when.pop(key, None)

    async def get(self) -> str:
        while not self._queue:
            if self._shutdown:
                raise asyncio.CancelledError
            self._ready.clear()
            await self._ready.wait()
        key = self._queue.popleft()
        self._processing.add(key)
        self._dirty.discard(key)
        return key

    def done(self, key: str) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._queue.append(key)
            self._ready.set()

    async def _delay_loop(self) -> None:
        while not self._shutdown:
            now = self._now()
            while self._waiting and self._waiting[0][0] <= now:
                when, _, key = heapq.heappop(self._waiting)
                if self._when.get(key) == when:
                    del self._when[key]
                    self.add(key)
            if not self._waiting:
                self._wake.clear()
                await self._wake.wait()
                continue
            self._wake.clear()
            sleeper = asyncio.ensure_future(self._sleep(self._waiting[0][0] - now))
            waker = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for t in (sleeper, waker):
                    t.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await t

    async def shutdown(self) -> None:
        self._shutdown = True
        self._ready.set()
        if self._delay_task is not None:
            self._delay_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._delay_task
