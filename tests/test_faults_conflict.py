"""409 Conflict from the API server, end to end (through the fault proxy, as in
test_faults_apiserver.py).

- A storm on every PUT leaves the replicas alone and records FailedRescale and FailedUpdateStatus;
  once it ends the controller scales with fresh state.
- A single 409 caused by a user's concurrent `kubectl scale` + lowered maxReplicas must not be
  answered by re-sending the decision computed before it: upstream's controller does not retry the
  scale update, it records FailedRescale and decides again at the next sync from fresh state.
"""

from __future__ import annotations

import time

from test_faults_apiserver import Env, events
from test_faults_kubelets import replicas
from test_metrics_api_support import wait_for

from sim.loadmodel import Constant

HIGH = {"workloads": [{"name": "web", "replicas": 2, "requests": {"cpu": "250m", "memory": "64Mi"},
                       "load": {"kind": "constant", "cores": 1.5}}],  # wants 12 pods, capped at 6
        "hpas": [{"target": "web", "minReplicas": 1, "maxReplicas": 6, "cpuUtilization": 50}]}


def test_conflict_storm_then_a_users_concurrent_scale_is_never_overwritten(tmp_path):
    env = Env(tmp_path, HIGH, "--horizontal-pod-autoscaler-downscale-stabilization=0s")
    try:
        kc, proxy, cluster = env.cluster.kubeconfig, env.proxy, env.cluster
        written: list[int] = []
        unsub = cluster.call(lambda: cluster.store.subscribe(
            "deployments.apps", lambda t, o, old: written.append(o["spec"]["replicas"])
            if o["metadata"]["name"] == "web" else None))
        # a storm: every PUT answered 409 from the start
        proxy.set("conflict", methods={"PUT"})
        controller = env.server.rt.controller

        def failed_rescale() -> bool:
            out = controller.last.get("default/web")
            return out is not None and any(e["reason"] == "FailedRescale" for e in out.events)
        wait_for(failed_rescale, 40, "the controller to want more pods and fail to rescale")
        assert "the object has been modified" in controller.last["default/web"].error
        assert replicas(kc, "web") == 2 and not written
        # the Events the controller records (FailedUpdateStatus first, FailedRescale later) pass
        # client-go's spam filter only up to 25 per HPA; the first ones are there
        assert "FailedUpdateStatus" in {e["reason"] for e in events(kc, "web")}

        proxy.clear()
        wait_for(lambda: replicas(kc, "web") == 6, 20, "the controller to scale with fresh state after the storm")

        # one 409, caused by a user who, at that moment, caps web at 3 (kubectl scale + maxReplicas 3)
        # and lowers its load to fit: the decision computed before (more pods) must not be re-sent
        def user(_req) -> None:
            c = cluster.cluster
            c.set_load("default", "web", Constant(cores=0.375))  # 3 × 125m: at target with 3 pods
            c.store.mutate("horizontalpodautoscalers.autoscaling", "default", "web",
                           lambda o: o["spec"].__setitem__("maxReplicas", 3))
            c.scale("default", "web", 3)

        # 6 pods at 100% want 12: raising maxReplicas to 10 makes the controller scale up at its next sync
        cluster.call(lambda: cluster.cluster.store.mutate(
            "horizontalpodautoscalers.autoscaling", "default", "web",
            lambda o: o["spec"].__setitem__("maxReplicas", 10)))
        del written[:]
        rule = proxy.set("conflict", methods={"PUT"}, path=r"/deployments/web/scale$", count=1, on_hit=user)
        wait_for(lambda: rule.hits == 1, 30, "the controller's scale-up to meet the user's concurrent change")
        # the 409 is answered; watch several syncs
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            after_user = written[written.index(3):] if 3 in written else []
            assert max(after_user, default=0) <= 3, (
                f"spec.replicas went {written}: a decision computed before the user's scale to 3 was re-sent after "
                "the 409 (autoscaler/controller/scales.py retries the update with the old replica count)")
            time.sleep(0.2)
        assert replicas(kc, "web") == 3, written
        cluster.call(unsub)
    finally:
        env.close()
