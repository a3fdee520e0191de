"""Clocks for the emulated cluster.

Everything time-dependent in ``sim`` (delays, heartbeats, CPU counters, timestamps) reads one
injectable clock, so tests and replays can run faster than real time:

* :class:`Clock` is wall-clock time, optionally scaled by a speed factor (``--speed``).
* :class:`ManualClock` only moves when told to (``advance``), firing due timers in order.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from typing import Any


class TimerHandle:
    """A cancellable scheduled callback (both clocks)."""

    __slots__ = ("_cancelled", "_inner", "args", "callback", "when")

    def __init__(self, when: float, callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.when = when
        self.callback = callback
        self.args = args
        self._cancelled = False
        self._inner: asyncio.TimerHandle | None = None

    def cancel(self) -> None:
        self._cancelled = True
        if self._inner is not None:
            self._inner.cancel()

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def _run(self) -> None:
        if not self._cancelled:
            self._cancelled = True
            self.callback(*self.args)


class Clock:
    """Real time, scaled by ``speed`` (2.0 = virtual time runs twice as fast as the wall clock).

    Virtual time starts at the wall-clock time of construction, so timestamps look current.
    """

    def __init__(self, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError(f"clock speed must be positive, got {speed}")
        self.speed = float(speed)
        self._origin_wall = time.time()
        self._origin_mono = time.monotonic()

    def now(self) -> float:
        """Unix seconds (float) of the virtual clock."""
        return self._origin_wall + (time.monotonic() - self._origin_mono) * self.speed

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.speed)

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        """Run ``callback(*args)`` after ``delay`` virtual seconds on the running loop."""
        handle = TimerHandle(self.now() + delay, callback, args)
        loop = asyncio.get_running_loop()
        handle._inner = loop.call_later(max(0.0, delay) / self.speed, handle._run)
        return handle

    def real_seconds(self, virtual: float) -> float:
        """Wall-clock seconds that ``virtual`` seconds take."""
        return virtual / self.speed


class ManualClock(Clock):
    """A clock that moves only through :meth:`advance` / :meth:`advance_async`.

    Timers and sleepers fire in deadline order, with ``now()`` equal to their deadline while they
    run, so a chain of delays (schedule → start → ready) lands at the right virtual instants.
    """

    def __init__(self, start: float | None = None) -> None:
        super().__init__(1.0)
        self._now = time.time() if start is None else float(start)
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        handle = TimerHandle(self._now + max(0.0, delay), callback, args)
        heapq.heappush(self._heap, (handle.when, next(self._seq), handle))
        return handle

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not fut.done():
                fut.set_result(None)

        handle = self.call_later(seconds, wake)
        try:
            await fut
        finally:
            handle.cancel()

    def next_deadline(self) -> float | None:
        while self._heap and self._heap[0][2].cancelled:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def advance(self, seconds: float) -> None:
        """Move time forward, running every timer that falls due (synchronously, in order)."""
        if seconds < 0:
            raise ValueError("time cannot go backwards")
        target = self._now + seconds
        while True:
            when = self.next_deadline()
            if when is None or when > target:
                break
            _, _, handle = heapq.heappop(self._heap)
            self._now = max(self._now, when)
            handle._run()
        self._now = target

    async def advance_async(self, seconds: float, *, settle: int = 20) -> None:
        """Advance deadline by deadline, letting the event loop process the work each timer
        triggers (store callbacks, woken sleepers) before moving on."""
        target = self._now + seconds
        while True:
            when = self.next_deadline()
            if when is None or when > target:
                break
            self.advance(max(0.0, when - self._now))
            for _ in range(settle):
                await asyncio.sleep(0)
        self._now = target
        for _ in range(settle):
            await asyncio.sleep(0)
