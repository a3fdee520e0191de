"""The scenarios of the real-HPA agreement tier, run at once in one cluster as separate workloads
and HPAs. Times are seconds after the scenario objects are created; pods get metrics two scrapes
(20 s) after they start, so every load change comes after 40 s."""

from __future__ import annotations

#: how long the tier watches both controllers after the objects are created
OBSERVE = 190.0
SYNC_PERIOD = "5s"

_CPU = {"requests": {"cpu": "200m", "memory": "64Mi"}, "limits": {"cpu": "2"}}


def _cpu_hpa(target: str, max_r: int, util: int = 50, behavior: dict | None = None, min_r: int = 1) -> dict:
    h = {"target": target, "minReplicas": min_r, "maxReplicas": max_r, "cpuUtilization": util}
    if behavior is not None:
        h["behavior"] = behavior
    return h


SCENARIO = {
    "name": "real-hpa-agreement",
    "seed": 11,
    # stats every 10 s, the metric resolution: `autoscaler run` (whose metrics kcm reads) and
    # `autoscaler record` then read the same CPU counter instants, so the trace holds kcm's samples
    "kubelet": {"housekeepingInterval": "10s"},
    "timing": {"startupDelay": "1s", "readinessDelay": "2s"},
    "nodes": [{"namePrefix": "worker", "count": 3, "cpu": "16", "memory": "32Gi"}],
    "workloads": [
        # step: a load step up and back down (also the workload replayed in part 5)
        {"name": "step", "replicas": 1, **_CPU,
         "load": {"kind": "step", "base": "100m", "steps": [{"at": "45s", "cores": "700m"},
                                                            {"at": "120s", "cores": "150m"}]}},
        # spike: a 30 s burst
        {"name": "spike", "replicas": 2, **_CPU,
         "load": {"kind": "spike", "base": "150m", "peak": "1", "at": "50s", "duration": "30s"}},
        # memory AverageValue: the working set grows with the load
        {"name": "memory", "replicas": 1, "requests": {"cpu": "100m", "memory": "64Mi"},
         "limits": {"cpu": "2", "memory": "1Gi"},
         "load": {"kind": "step", "base": "50m", "steps": [{"at": "45s", "cores": "600m"}, {"at": "120s", "cores": "50m"}],
                  "memory": {"base": "64Mi", "perCore": "400Mi"}}},
        # behavior: scale-up one pod per 15 s, scale-down 50 % per 15 s after a 30 s window
        {"name": "policies", "replicas": 1, **_CPU,
         "load": {"kind": "step", "base": "100m", "steps": [{"at": "45s", "cores": "1200m"},
                                                            {"at": "130s", "cores": "100m"}]}},
        # start-up: new pods are Ready only 20 s after they start and have no metrics for 20 s
        {"name": "startup", "replicas": 1, **_CPU, "timing": {"startupDelay": "1s", "readinessDelay": "20s"},
         "load": {"kind": "step", "base": "100m", "startupCores": "300m",
                  "steps": [{"at": "40s", "cores": "900m"}]}},
        # scale to zero and back on an External queue length
        {"name": "queue", "replicas": 1, "requests": {"cpu": "50m", "memory": "32Mi"},
         "load": {"kind": "constant", "cores": "10m"}},
    ],
    "hpas": [
        _cpu_hpa("step", 6, behavior={"scaleDown": {"stabilizationWindowSeconds": 15}}),
        _cpu_hpa("spike", 8, util=60, behavior={"scaleDown": {"stabilizationWindowSeconds": 20}}),
        {"target": "memory", "minReplicas": 1, "maxReplicas": 5,
         "metrics": [{"type": "Resource", "resource": {"name": "memory",
                                                       "target": {"type": "AverageValue", "averageValue": "150Mi"}}}],
         "behavior": {"scaleDown": {"stabilizationWindowSeconds": 15}}},
        _cpu_hpa("policies", 10, behavior={
            "scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max",
                        "policies": [{"type": "Pods", "value": 1, "periodSeconds": 15}]},
            "scaleDown": {"stabilizationWindowSeconds": 30,
                          "policies": [{"type": "Percent", "value": 50, "periodSeconds": 15}]}}),
        _cpu_hpa("startup", 8),
        {"target": "queue", "minReplicas": 0, "maxReplicas": 5,
         "metrics": [{"type": "External", "external": {
             "metric": {"name": "queue_length", "selector": {"matchLabels": {"queue": "orders"}}},
             "target": {"type": "AverageValue", "averageValue": "10"}}}],
         "behavior": {"scaleDown": {"stabilizationWindowSeconds": 0}}},
    ],
    "externalMetrics": [
        {"name": "queue_length", "labels": {"queue": "orders"}, "points": [[0, 30], ["60s", 0], ["120s", 40]]},
        # another queue the HPA's selector must not pick
        {"name": "queue_length", "labels": {"queue": "audit"}, "points": [[0, 500]]},
    ],
}
