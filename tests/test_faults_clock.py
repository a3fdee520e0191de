"""Clock steps: the HPA controller's work queue must keep its cadence when the wall clock jumps.

The controller re-adds every HPA one sync period after each reconcile (``WorkQueue.add_after``).
If those delays are measured on the wall clock, an NTP step back of an hour parks every HPA for an
hour; a step forward fires them all at once. client-go's delaying queue measures on the monotonic
clock. The controller here stamps its decisions with a wall clock that steps while HPAs wait in its work
queue.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from autoscaler.controller.controller import HPAController
from autoscaler.controller.options import ControllerOptions
from autoscaler.controller.workqueue import WorkQueue
from autoscaler.k8s.kubeconfig import KubeConfig


class SteppingWallClock:
    """``time.time()`` plus an offset a test changes, as ``date -s`` or an NTP step does."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


async def _next(queue: WorkQueue, timeout: float) -> tuple[str, float]:
    t0 = time.monotonic()
    key = await asyncio.wait_for(queue.get(), timeout)
    queue.done(key)
    return key, time.monotonic() - t0


@pytest.mark.parametrize("step", [-3600.0, 3600.0], ids=["back-1h", "forward-1h"])
async def test_work_queue_keeps_its_cadence_across_a_wall_clock_step(step: float) -> None:
    wall = SteppingWallClock()
    controller = HPAController(KubeConfig(host="https://127.0.0.1:1"), ControllerOptions(leader_elect=False),
                               clock=wall)  # the wall clock it stamps decisions with steps
    queue = controller.new_queue()
    try:
        queue.add_after("default/web", 0.5)
        queue.add_after("default/api", 0.8)
        await asyncio.sleep(0.1)
        wall.offset += step  # the wall clock jumps while both are waiting
        key, waited = await _next(queue, 3.0)
        assert key == "default/web" and 0.3 <= waited <= 1.2, (key, waited)
        key, waited = await _next(queue, 3.0)
        assert key == "default/api" and 0.1 <= waited <= 1.0, (key, waited)
        # the next period after the step is a period too
        queue.add_after("default/web", 0.5)
        key, waited = await _next(queue, 3.0)
        assert key == "default/web" and 0.4 <= waited <= 1.3, (key, waited)
    finally:
        await queue.shutdown()
