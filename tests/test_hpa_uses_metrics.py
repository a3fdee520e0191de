"""``uses_metrics``: the controller fetches metrics only when ``decide`` will read them.

The predicate must agree with ``decide`` itself: for every branch, a metrics source that records
each read shows whether the decision touched metrics.
"""

from __future__ import annotations

import pytest

from autoscaler.hpa import ControllerConfig, Scale, decide, pods_from_v1
from autoscaler.hpa.decide import uses_metrics
from autoscaler.hpa.inputs import MetricsError

NOW = 1_700_000_000.0


class Recording:
    """A MetricsSource with no data that remembers being asked."""

    def __init__(self) -> None:
        self.reads: list[str] = []

    def _read(self, what: str):
        self.reads.append(what)
        raise MetricsError("no metrics returned")

    def resource_metrics(self):
        return self._read("resource")

    def pods_metric(self, name, selector):
        return self._read("pods")

    def object_metric(self, name, described, selector):
        return self._read("object")

    def external_metric(self, name, selector):
        return self._read("external")


def hpa(min_replicas: int, max_replicas: int, *, external: bool = False, scaled_to_zero: bool = False) -> dict:
    metric = ({"type": "External", "external": {"metric": {"name": "queue"}, "target": {"type": "Value", "value": "5"}}}
              if external else
              {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}})
    status = {"conditions": [{"type": "ScaledToZero", "status": "True", "reason": "ScaledToZero", "message": "",
                              "lastTransitionTime": "2023-11-14T22:00:00Z"}]} if scaled_to_zero else {}
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                     "minReplicas": min_replicas, "maxReplicas": max_replicas, "metrics": [metric]},
            "status": status}


@pytest.mark.parametrize("obj, replicas, gate, expected", [
    (hpa(2, 10), 4, False, True),                                    # within the limits: compute
    (hpa(2, 10), 12, False, False),                                  # above maxReplicas
    (hpa(2, 10), 1, False, False),                                   # below minReplicas
    (hpa(2, 10), 0, False, False),                                   # target scaled to zero by someone else
    (hpa(0, 10, external=True, scaled_to_zero=True), 0, True, True),  # scaled to zero by the HPA: may wake up
    (hpa(0, 10, external=True, scaled_to_zero=True), 0, False, False),  # ... only with HPAScaleToZero
], ids=["in-range", "above-max", "below-min", "zero", "zero-by-hpa", "zero-gate-off"])
def test_uses_metrics_agrees_with_decide(obj, replicas, gate, expected):
    cfg = ControllerConfig(scale_to_zero=gate)
    scale = Scale(replicas, replicas, "app=web")
    source = Recording()
    decide(obj, scale, pods_from_v1([]), source, now=NOW, config=cfg)
    assert uses_metrics(obj, scale, config=cfg) is expected
    assert bool(source.reads) is expected
    assert not uses_metrics(obj, None, config=cfg)  # no scale: decide stops before metrics
