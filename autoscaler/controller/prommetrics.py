"""The upstream HPA controller's Prometheus metrics, plus the dry-run recommendation gauges.

Names, labels and buckets follow ``pkg/controller/podautoscaler/monitor`` (subsystem
``horizontal_pod_autoscaler_controller``); leadership is client-go leaderelection's
``leader_election_master_status``. Each controller has its own registry, exposed on the
server's ``/metrics`` beside the metrics pipeline's families.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

SUBSYSTEM = "horizontal_pod_autoscaler_controller"
BUCKETS = tuple(0.001 * 2**k for k in range(15))  # ExponentialBuckets(0.001, 2, 15)


class ControllerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.reconciliations = Counter(
            f"{SUBSYSTEM}_reconciliations", "Number of reconciliations of HPA controller. The label 'action' should "
            "be either 'scale_down', 'scale_up', or 'none'. Also, the label 'error' should be either 'spec', "
            "'internal', or 'none'. Note that if both spec and internal errors happen during a reconciliation, the "
            "first one to occur is reported in `error` label.", ["action", "error"], registry=r)
        self.reconciliation_duration = Histogram(
            f"{SUBSYSTEM}_reconciliation_duration_seconds", "The time(seconds) that the HPA controller takes to "
            "reconcile once. The label 'action' should be either 'scale_down', 'scale_up', or 'none'. Also, the "
            "label 'error' should be either 'spec', 'internal', or 'none'.", ["action", "error"], buckets=BUCKETS,
            registry=r)
        self.metric_computation = Counter(
            f"{SUBSYSTEM}_metric_computation", "Number of metric computations. The label 'action' should be either "
            "'scale_down', 'scale_up', or 'none'. Also, the label 'error' should be either 'spec', 'internal', or "
            "'none'. The label 'metric_type' corresponds to HPA.spec.metrics[*].type",
            ["action", "error", "metric_type"], registry=r)
        self.metric_computation_duration = Histogram(
            f"{SUBSYSTEM}_metric_computation_duration_seconds", "The time(seconds) that the HPA controller takes to "
            "calculate one metric. The label 'action' should be either 'scale_down', 'scale_up', or 'none'. The "
            "label 'error' should be either 'spec', 'internal', or 'none'. The label 'metric_type' corresponds to "
            "HPA.spec.metrics[*].type", ["action", "error", "metric_type"], buckets=BUCKETS, registry=r)
        self.num_hpas = Gauge(f"{SUBSYSTEM}_num_horizontal_pod_autoscalers",
                              "Current number of controlled HPA objects.", registry=r)
        self.desired_replicas = Gauge(f"{SUBSYSTEM}_desired_replicas",
                                      "Current desired replica count for HPA objects.", ["namespace", "hpa_name"],
                                      registry=r)
        self.stale_sync_skips = Counter(f"{SUBSYSTEM}_stale_sync_skips",  # exposed with _total, as upstream
                                        "Total number of HPA syncs skipped due to a stale watch cache.",
                                        ["group", "resource"], registry=r)
        self.recommended = Gauge("autoscaler_dry_run_recommended_replicas",
                                 "Replica count this controller recommends in dry-run mode.",
                                 ["namespace", "hpa_name"], registry=r)
        self.current = Gauge("autoscaler_dry_run_current_replicas",
                             "Target's current replica count (scale spec.replicas) seen by the dry-run controller.",
                             ["namespace", "hpa_name"], registry=r)
        self.builtin_desired = Gauge("autoscaler_dry_run_builtin_desired_replicas",
                                     "status.desiredReplicas the HPA's current writer (the built-in controller) set.",
                                     ["namespace", "hpa_name"], registry=r)
        self.leader = Gauge("leader_election_master_status",
                            "Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 "
                            "indicates master. 'name' is the string used to identify the lease.", ["name"],
                            registry=r)
        self.foreign_status_writes = Counter("autoscaler_controller_foreign_status_writes",
                                             "HPA status changes made by another writer while this controller was "
                                             "active.", registry=r)

        # labelled children by (family, label values): prometheus_client's labels() validates,
        # locks and builds a tuple on every call, about 12 µs, five times per reconcile
        self._children: dict[tuple[object, tuple[str, ...]], Any] = {}

    def child(self, family: Counter | Gauge | Histogram, *values: str) -> Any:
        """``family.labels(*values)``, looked up in a dict after the first time."""
        key = (family, values)
        c = self._children.get(key)
        if c is None:
            c = self._children[key] = family.labels(*values)
        return c

    def forget(self, namespace: str, name: str) -> None:
        for g in (self.desired_replicas, self.recommended, self.current, self.builtin_desired):
            self._children.pop((g, (namespace, name)), None)
            try:
                g.remove(namespace, name)
            except KeyError:
                pass
