"""The controller's event recorder: client-go's correlator (spam filter, de-duplication) with
bounded memory however many HPAs come and go."""

from __future__ import annotations

from typing import Any

from autoscaler.controller import events
from autoscaler.controller.events import SPAM_BURST, EventRecorder


class FakeClient:
    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        self.patches: list[tuple[str, dict[str, Any]]] = []

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.posts.append(body)
        return body

    async def patch(self, path: str, body: dict[str, Any], content_type: str) -> dict[str, Any]:
        self.patches.append((path, body))
        return body


def hpa(name: str) -> dict[str, Any]:
    return {"kind": "HorizontalPodAutoscaler", "apiVersion": "autoscaling/v2",
            "metadata": {"name": name, "namespace": "default", "uid": f"uid-{name}"}}


async def test_repeats_patch_the_event_and_the_spam_filter_stops_a_flood():
    client = FakeClient()
    rec = EventRecorder(client, clock=lambda: 1_800_000_000.0)  # type: ignore[arg-type]
    for _ in range(SPAM_BURST + 10):
        rec.event(hpa("web"), "Normal", "SuccessfulRescale", "New size: 3; reason: cpu above target")
    await rec.flush()
    assert len(client.posts) == 1 and len(client.patches) == SPAM_BURST - 1
    assert client.patches[-1][1]["count"] == SPAM_BURST
    assert rec.dropped == 10
    await rec.close()


async def test_memory_stays_bounded_as_hpas_come_and_go(monkeypatch):
    monkeypatch.setattr(events, "CACHE_SIZE", 50)
    client = FakeClient()
    rec = EventRecorder(client, clock=lambda: 1_800_000_000.0)  # type: ignore[arg-type]
    for i in range(400):
        rec.event(hpa(f"hpa-{i}"), "Warning", "FailedGetResourceMetric", f"no metrics for hpa-{i}")
    await rec.flush()
    assert len(client.posts) == 400
    assert len(rec._buckets) <= 50 and len(rec._seen) <= 50 and len(rec._similar) <= 50
    await rec.close()

