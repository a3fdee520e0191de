"""Decision cost per HPA, in CPU microseconds, with no I/O: prints JSON figures.

Pods and metrics are built once from arrays (as the replay simulator does) and the HPA is
compiled once; each decision then runs the full reconcile. Measured for 10 and 100 pods, with
the detailed explanation ("full") and without it ("none", no currentMetrics either). Each figure is
the best of several rounds (the machine is shared: the minimum is the least disturbed estimate).
The "replay" rows call decide() exactly as sim/replay/engine.py does: explain="none",
build_status=False and the previous decision's status passed back as ``hpa_status``.
"""

from __future__ import annotations

import json
import time

import numpy as np

from autoscaler.hpa import ControllerConfig, HPAState, PodMetricsSet, PodSet, Scale, StaticMetrics, compile_hpa, decide

NOW = 1_700_000_000.0


def _hpa(behavior: bool) -> dict:
    spec = {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 1, "maxReplicas": 1000,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization",
                                                                                    "averageUtilization": 50}}}]}
    if behavior:
        spec["behavior"] = {"scaleDown": {"stabilizationWindowSeconds": 60}}
    return {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "default"}, "spec": spec}


def measure(n_pods: int, explain: str, behavior: bool, iterations: int, rounds: int = 5, replay: bool = False
            ) -> float:
    names = [f"web-{i}" for i in range(n_pods)]
    rng = np.random.default_rng(1)
    pods = PodSet.from_arrays(names, cpu_request_milli=np.full(n_pods, 200))
    metrics = StaticMetrics(resource=PodMetricsSet.from_arrays(names, rng.integers(80, 120, n_pods), None, NOW, 60.0))
    hpa = compile_hpa(_hpa(behavior))
    scale = Scale(n_pods, n_pods, "app=web")
    config = ControllerConfig()
    state = HPAState([])
    build_status = explain != "none"
    for _ in range(50):
        decide(hpa, scale, pods, metrics, now=NOW, state=state, config=config, explain=explain,
               build_status=build_status)
    status = None
    best = float("inf")
    for r in range(rounds):
        base = NOW + 15 * iterations * r
        start = time.process_time()
        for i in range(iterations):
            d = decide(hpa, scale, pods, metrics, now=base + 15 * i, state=state, config=config, explain=explain,
                       build_status=build_status, hpa_status=status)
            state = d.state
            if replay:
                status = d.status
        best = min(best, time.process_time() - start)
    return best / iterations * 1e6


def main() -> None:
    results = []
    for n in (10, 100):
        for explain in ("none", "summary", "full"):
            for behavior in (False, True):
                us = measure(n, explain, behavior, 2000)
                results.append({"pods": n, "explain": explain, "behavior": behavior,
                                "cpu_us_per_decision": round(us, 1)})
    for n in (10, 100):
        for behavior in (False, True):
            us = measure(n, "none", behavior, 2000, replay=True)
            results.append({"pods": n, "explain": "none", "behavior": behavior, "replay": True,
                            "cpu_us_per_decision": round(us, 1)})
    fastest = min(r["cpu_us_per_decision"] for r in results if r["pods"] == 10 and r["explain"] == "none")
    print(json.dumps({"benchmark": "hpa_decision", "results": results,
                      "replay_7d_15s_seconds_estimate_10_pods": round(40320 * fastest / 1e6, 2)}, indent=2))


if __name__ == "__main__":
    main()
