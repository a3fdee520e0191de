"""Self-metrics of the API server on ``/metrics`` (Prometheus text, default registry).

``metrics_server_api_metric_freshness_seconds`` keeps metrics-server's name and buckets
(1·1.364^k, 20 buckets); it is observed once per served item, so it is a numpy-backed
collector (one vectorised ``searchsorted`` per request rather than 30,000 observe() calls).
The request, authentication and authorization families follow k8s.io/apiserver's names; like
kube-apiserver, request labels take only values the server knows (served group/version/resource,
canonical verbs), anything else becomes ``other``, so made-up paths cannot add series.
The scraper and storage families (``metrics_server_kubelet_*``, ``metrics_server_storage_points``,
``metrics_server_manager_tick_duration_seconds``) are registered by the scraper/storage modules.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterator

import numpy as np
from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

FRESHNESS_BUCKETS = np.array([1.364**k for k in range(20)])
#: label value for a verb, group, version or resource the server does not serve (apiserver's "other")
OTHER = "other"
#: request verbs as k8s.io/apiserver reports them (its validRequestMethods, upper-cased)
VERBS = frozenset({"APPLY", "CONNECT", "CREATE", "DELETE", "DELETECOLLECTION", "GET", "LIST", "PATCH", "POST",
                   "PROXY", "PUT", "UPDATE", "WATCH", "WATCHLIST", "HEAD", "OPTIONS"})


def request_labels(verb: str, group: str, version: str, resource: str,
                   served: Collection[tuple[str, str, str]]) -> tuple[str, str, str, str]:
    """(verb, group, version, resource) labels for one request; values outside ``served`` (group,
    version, resource triples) and unknown verbs become :data:`OTHER`. Non-resource requests
    (empty group/version/resource) keep their empty values."""
    verb = verb.upper()
    if verb not in VERBS:
        verb = OTHER
    if (group or version or resource) and (group, version, resource) not in served:
        group = version = resource = OTHER
    return verb, group, version, resource


class FreshnessHistogram(Collector):
    """Histogram of ``now - item.timestamp`` over every item the API returns."""

    name = "metrics_server_api_metric_freshness_seconds"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = np.zeros(len(FRESHNESS_BUCKETS) + 1, dtype=np.int64)  # last = +Inf overflow
        self._sum = 0.0

    def observe_many(self, ages: np.ndarray) -> None:
        if not len(ages):
            return
        idx = np.searchsorted(FRESHNESS_BUCKETS, ages, side="left")
        counts = np.bincount(idx, minlength=len(self._counts))
        with self._lock:
            self._counts += counts
            self._sum += float(ages.sum())

    def collect(self) -> Iterator[HistogramMetricFamily]:
        with self._lock:
            cum = np.cumsum(self._counts).tolist()
            total = self._sum
        buckets = [(repr(float(b)), c) for b, c in zip(FRESHNESS_BUCKETS.tolist(), cum[:-1], strict=True)]
        buckets.append(("+Inf", cum[-1]))
        fam = HistogramMetricFamily(self.name, "Freshness of metrics exported", labels=[])
        fam.add_metric([], buckets, total)
        yield fam

    def describe(self) -> Iterator[HistogramMetricFamily]:
        yield HistogramMetricFamily(self.name, "Freshness of metrics exported", labels=[])


def _once() -> tuple[FreshnessHistogram, Counter, Histogram, Counter, Counter]:
    fresh = FreshnessHistogram()
    REGISTRY.register(fresh)
    requests = Counter("apiserver_request_total",
                       "Counter of apiserver requests broken out for each verb, API resource, and HTTP response code.",
                       ["verb", "group", "version", "resource", "code"])
    duration = Histogram("apiserver_request_duration_seconds",
                         "Response latency distribution in seconds for each verb and resource.",
                         ["verb", "group", "version", "resource"],
                         buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2, 3, 4, 5, 10, 30, 60))
    authn = Counter("authentication_attempts", "Counter of authenticated attempts.", ["result", "method"])
    authz = Counter("autoscaler_authorization_decisions_total",
                    "Authorization decisions by outcome and by what decided (group, path, cache, review).",
                    ["decision", "source"])
    return fresh, requests, duration, authn, authz


FRESHNESS, REQUESTS, REQUEST_DURATION, AUTHN_ATTEMPTS, AUTHZ_DECISIONS = _once()
