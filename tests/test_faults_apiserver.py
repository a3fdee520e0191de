"""A misbehaving API server, end to end: `autoscaler run` talks to the emulated kube-apiserver
through a fault-injecting proxy (:mod:`sim.faults`; its kubeconfig's server is the proxy), users
talk to the API server directly.

- 5xx bursts, hanging requests (timeouts), watches dropped mid-way and 410 Gone on watches: the
  process stays up, /livez and /readyz stay 200 (the metrics it serves come from kubelets and
  its caches, both fine), and its informers resume: a pod created during the outage is in their
  cache within a few seconds of the end, and served by the metrics API after its first scrapes.
  The HPA, at its target all along, never scales.

409 Conflicts are in test_faults_conflict.py.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from test_faults_kubelets import health, raw, replicas
from test_metrics_api_support import MetricsServerThread, kubectl, register_apiservice, run_args, wait_for

from sim.cluster import run_in_thread
from sim.faults import proxy_apiserver
from sim.scenario import parse_scenario

BASE = {
    "kubelet": {"housekeepingInterval": "1s"},
    "timing": {"startupDelay": "0s", "readinessDelay": "0s"},
    "nodes": [{"namePrefix": "worker", "count": 2, "cpu": "16", "memory": "64Gi"}],
}


class Env:
    def __init__(self, tmp: Path, scenario: dict, *flags: str) -> None:
        self.cluster = run_in_thread(parse_scenario({"name": tmp.name, **BASE, **scenario}), tmp / "cluster")
        self.server = None
        try:
            c = self.cluster.cluster
            self.kubeconfig = tmp / "via-proxy.kubeconfig"
            self.proxy = self.cluster.run(proxy_apiserver(c.pki.ca, c.url, c.metrics_kubeconfig, self.kubeconfig,
                                                          tmp / "proxy"))
            args = run_args(self.cluster, tmp, "--controller-mode=active", "--horizontal-pod-autoscaler-sync-period=1s",
                            "--leader-elect=false", "--kubelet-request-timeout=3s",
                            *flags)
            args[args.index("--kubeconfig") + 1] = str(self.kubeconfig)
            self.server = MetricsServerThread(args).start()
            register_apiservice(self.cluster, self.server.port)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if hasattr(self, "proxy"):
            self.proxy.clear()
        if self.server is not None:
            self.server.stop()
        if hasattr(self, "proxy"):
            self.cluster.run(self.proxy.stop())
        self.cluster.stop()


def pod_names(kc: Path, app: str) -> set[str]:
    pods = json.loads(kubectl(kc, "get", "pods", "-l", f"app={app}", "-o", "json").stdout)["items"]
    return {p["metadata"]["name"] for p in pods}


def events(kc: Path, name: str) -> list[dict]:
    return json.loads(kubectl(kc, "get", "events", "--field-selector", f"involvedObject.name={name}",
                              "-o", "json").stdout)["items"]


#: back to back, in an order that keeps the informers' exponential backoff (0.8 s doubling, reset only
#: by a watch that ends cleanly) within the test's time: faults that make requests fail come last
OUTAGES = [
    # 410 Gone on the next two watches resuming from a resourceVersion (a count, not a window: a
    # reconnect after a dropped stream waits for its backoff and could miss a short window): relist
    ("gone", {"count": 2}),
    ("hang", {"duration": 4.0}),  # requests stall (client timeouts), then go through
    ("watch_drop", {"delay": 0.3, "duration": 3.0}),  # every watch cut 0.3 s in
    ("status", {"status": 503, "duration": 4.0}),  # a 5xx burst on every request
]
#: the informers back off 0.8 s, 1.6 s, ... (× up to 1.5 jitter) while requests fail
RECOVERY_WITHIN = 12.0


def test_apiserver_outages_keep_the_process_up_and_informers_recover(tmp_path):
    env = Env(tmp_path, {
        "workloads": [
            # 2 pods × 125m = 50% of 250m: at the HPA's target
            {"name": "web", "replicas": 2, "requests": {"cpu": "250m", "memory": "64Mi"},
             "load": {"kind": "constant", "cores": 0.25}},
            {"name": "probe", "replicas": 1, "requests": {"cpu": "100m", "memory": "32Mi"},
             "load": {"kind": "constant", "cores": 0.05}},
        ],
        "hpas": [{"target": "web", "minReplicas": 1, "maxReplicas": 10, "cpuUtilization": 50}],
    })
    try:
        kc, server, proxy = env.cluster.kubeconfig, env.server, env.proxy
        pods = server.rt.pod_informer
        wait_for(lambda: len(raw(kc, "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods")["items"]) == 3,
                 40, "every pod served")
        recovery: dict[str, float] = {}
        for n, (kind, params) in enumerate(OUTAGES, start=2):
            before = pod_names(kc, "probe")
            proxy.set(kind, **params)
            proxy.drop_streams()  # watches established before the outage break too
            env.cluster.call(lambda n=n: env.cluster.cluster.scale("default", "probe", n))
            new = wait_for(lambda b=before: pod_names(kc, "probe") - b, 10, "the new probe pod")
            assert health(server.port, "/livez") == 200 and health(server.port, "/readyz") == 200
            wait_for(lambda: not proxy.rules[0].active(), 20, "the outage end")
            ended = time.monotonic()
            wait_for(lambda new=new: all(pods.get(f"default/{p}") for p in new), RECOVERY_WITHIN + 10,
                     f"the pod informer to see the pod created during {kind}", interval=0.1)
            recovery[f"{kind}:{params.get('status', '')}"] = round(time.monotonic() - ended, 2)
            assert proxy.counts.get(kind, 0) > 0, f"{kind} was never injected"
        assert server._thread.is_alive() and server.exit_code is None
        assert all(t <= RECOVERY_WITHIN for t in recovery.values()), recovery
        # every pod, including those created during the outages, gets served
        wait_for(lambda: {i["metadata"]["name"] for i in raw(kc, "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods")
                          ["items"]} >= pod_names(kc, "probe"), 40, "the probe pods' metrics")
        top = kubectl(kc, "top", "pod", "-l", "app=probe", "--no-headers").stdout.splitlines()
        assert len(top) == len(OUTAGES) + 1
        assert replicas(kc, "web") == 2
        assert not any(e["reason"] == "SuccessfulRescale" for e in events(kc, "web"))
    finally:
        env.close()
