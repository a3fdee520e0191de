"""core/v1 Events from component ``horizontal-pod-autoscaler``, recorded like client-go's recorder.

client-go's EventCorrelator runs three steps before writing, and so does this recorder:
a spam filter (token bucket per source and object: burst 25, one more every 5 minutes), an
aggregator (more than 10 different messages with the same reason within 10 minutes become one
event "(combined from similar events): ..."), and a de-duplicator (a repeat of an event already
written PATCHes that Event: ``count`` + 1, new ``lastTimestamp``). Writing happens on a background
task so a slow API server never holds up a reconcile.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from autoscaler.k8s.rest import STRATEGIC_MERGE_PATCH, KubeClient, KubeError, seg
from autoscaler.k8s.timefmt import format_time

log = structlog.get_logger(__name__)

COMPONENT = "horizontal-pod-autoscaler"
CACHE_SIZE = 4096
SPAM_BURST = 25
SPAM_REFILL_SECONDS = 300.0
AGGREGATE_MAX_EVENTS = 10
AGGREGATE_INTERVAL = 600.0
QUEUE_LIMIT = 1000


@dataclass
class _Seen:
    name: str
    count: int
    first: str


def involved_object(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    ref = {"kind": obj.get("kind") or "HorizontalPodAutoscaler", "namespace": meta.get("namespace"),
           "name": meta.get("name"), "uid": meta.get("uid"), "apiVersion": obj.get("apiVersion") or "autoscaling/v2",
           "resourceVersion": meta.get("resourceVersion")}
    return {k: v for k, v in ref.items() if v is not None}


class EventRecorder:
    """Records events for objects; ``flush()`` waits until everything queued has been written."""

    def __init__(self, client: KubeClient, clock: Callable[[], float], component: str = COMPONENT,
                 host: str = "") -> None:
        self.client = client
        self.clock = clock
        self.component = component
        self.host = host
        self._queue: asyncio.Queue[dict[str, Any]] | None = None
        self._task: asyncio.Task | None = None
        self._seen: OrderedDict[tuple, _Seen] = OrderedDict()
        self._buckets: OrderedDict[tuple, tuple[float, float]] = OrderedDict()
        self._similar: OrderedDict[tuple, tuple[float, set[str]]] = OrderedDict()
        self._names = 0
        self.written = 0
        self.dropped = 0

    def _source(self) -> dict[str, str]:
        return {"component": self.component, **({"host": self.host} if self.host else {})}

    def event(self, obj: dict[str, Any], etype: str, reason: str, message: str) -> None:
        """Queue one event about ``obj`` (an HPA); never blocks, never raises."""
        if self._queue is None:
            self._queue = asyncio.Queue()
        if self._queue.qsize() >= QUEUE_LIMIT:
            self.dropped += 1
            return
        self._queue.put_nowait({"obj": involved_object(obj), "type": etype, "reason": reason, "message": message,
                                "now": self.clock()})
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._drain(), name="event-recorder")

    async def flush(self) -> None:
        if self._queue is not None:
            await self._queue.join()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.flush(), 5)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _drain(self) -> None:
        assert self._queue is not None
        while True:
            item = await self._queue.get()
            try:
                await self._record(item)
            except Exception as exc:  # an event is never worth a crash
                log.warning("event not recorded", reason=item["reason"], error=str(exc))
            finally:
                self._queue.task_done()

    # -- client-go's correlator --------------------------------------------------------------------
    def _allow(self, obj_key: tuple, now: float) -> bool:
        tokens, last = self._buckets.get(obj_key, (float(SPAM_BURST), now))
        tokens = min(float(SPAM_BURST), tokens + (now - last) / SPAM_REFILL_SECONDS)
        allowed = tokens >= 1
        self._buckets[obj_key] = (tokens - 1 if allowed else tokens, now)
        self._buckets.move_to_end(obj_key)
        if len(self._buckets) > CACHE_SIZE:  # an LRU of CACHE_SIZE objects, as client-go's spam filter
            self._buckets.popitem(last=False)
        return allowed

    def _aggregate(self, agg_key: tuple, message: str, now: float) -> str:
        first, messages = self._similar.get(agg_key, (now, set()))
        if now - first > AGGREGATE_INTERVAL:
            first, messages = now, set()
        messages.add(message)
        self._similar[agg_key] = (first, messages)
        self._similar.move_to_end(agg_key)
        if len(self._similar) > CACHE_SIZE:
            self._similar.popitem(last=False)
        if len(messages) > AGGREGATE_MAX_EVENTS:
            return f"(combined from similar events): {message}"
        return message

    async def _record(self, item: dict[str, Any]) -> None:
        ref, now = item["obj"], item["now"]
        obj_key = (self.component, self.host, ref.get("kind"), ref.get("namespace"), ref.get("name"), ref.get("uid"),
                   ref.get("apiVersion"))
        if not self._allow(obj_key, now):
            self.dropped += 1
            return
        agg_key = (*obj_key, item["type"], item["reason"])
        message = self._aggregate(agg_key, item["message"], now)
        key = (*agg_key, message)
        stamp = format_time(now)
        ns = ref.get("namespace") or "default"
        seen = self._seen.get(key)
        if seen is not None:
            try:
                await self.client.patch(f"/api/v1/namespaces/{seg(ns)}/events/{seg(seen.name)}",
                                        {"count": seen.count + 1, "lastTimestamp": stamp, "message": message},
                                        STRATEGIC_MERGE_PATCH)
                seen.count += 1
                self._seen.move_to_end(key)
                self.written += 1
                return
            except KubeError as exc:
                if not exc.not_found:
                    raise
                # the event expired on the server: write it again as a new one
        self._names += 1
        name = f"{ref.get('name')}.{int(now * 1e9) + self._names:x}"
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": name, "namespace": ns},
            "involvedObject": ref, "reason": item["reason"], "message": message,
            "source": self._source(), "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
            "type": item["type"], "eventTime": None,
            "reportingComponent": self.component, "reportingInstance": self.host,
        }
        await self.client.post(f"/api/v1/namespaces/{seg(ns)}/events", body)
        self.written += 1
        self._seen[key] = _Seen(name, 1, stamp)
        if len(self._seen) > CACHE_SIZE:
            self._seen.popitem(last=False)
