"""What a reconcile writes: the HPA's status conditions and its status object (upstream's setCondition
and setStatus), with Kubernetes' rule that a condition's lastTransitionTime moves only when its
status changes."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from autoscaler.k8s.timefmt import format_time


@functools.lru_cache(maxsize=64)
def time_text(now: float) -> str:
    return format_time(now)


class Conditions:
    """Status conditions as a list keyed by type; lastTransitionTime moves only on a status change."""

    __slots__ = ("_now_text", "items", "now")

    def __init__(self, items: list[dict[str, Any]], now: float):
        self.items = [dict(c) for c in items]
        self.now = now
        self._now_text: str | None = None  # formatted on the first transition only

    @property
    def now_text(self) -> str:
        if self._now_text is None:
            self._now_text = time_text(self.now)
        return self._now_text

    def set(self, ctype: str, status: str, reason: str, message: str) -> None:
        for c in self.items:
            if c.get("type") == ctype:
                break
        else:
            c = {"type": ctype}
            self.items.append(c)
        if c.get("status") != status:
            c["lastTransitionTime"] = self.now_text
        c["status"] = status
        c["reason"] = reason
        c["message"] = message

    def remove(self, ctype: str) -> None:
        self.items = [c for c in self.items if c.get("type") != ctype]

    def get(self, ctype: str) -> dict[str, Any] | None:
        for c in self.items:
            if c.get("type") == ctype:
                return c
        return None


def new_status(original: Mapping[str, Any], current: int, desired: int, metric_statuses: list[dict[str, Any]] | None,
            rescale: bool, now: float, build_status: bool, generation: int | None = None) -> dict[str, Any]:
    """setStatus: a fresh status keeping lastScaleTime and conditions; ``observedGeneration`` is the
    HPA's ``metadata.generation`` with the HPAGeneration gate (``generation`` given), else dropped."""
    status: dict[str, Any] = {}
    if generation is not None:
        status["observedGeneration"] = generation
    last = format_time(now) if rescale else original.get("lastScaleTime")
    if last is not None:
        status["lastScaleTime"] = last
    status["currentReplicas"] = current
    status["desiredReplicas"] = desired
    if build_status and metric_statuses:
        status["currentMetrics"] = metric_statuses
    return status
