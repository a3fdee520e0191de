"""A stand-in for prometheus-adapter / KEDA: an aggregated HTTPS API server for the custom and
external metrics APIs, for end-to-end tests of the HPA controller on the emulated cluster.

It serves ``custom.metrics.k8s.io/v1beta2`` (``MetricValueList`` for pods by label selector and
for one named object) and ``external.metrics.k8s.io/v1beta1`` (``ExternalMetricValueList`` by
metric label selector) in the wire format of kubernetes-sigs/custom-metrics-apiserver, answers an
unknown metric with that library's ``NotFound`` Status, requires the aggregator's front-proxy
client certificate, and records every request. :func:`manifests` are its Service, Endpoints and
the two APIServices (verified with ``caBundle``), to apply with kubectl.

Values are milli-units. A Pods metric is a total shared evenly by the running pods the request's
label selector picks (a queue drained by its workers), so the per-pod value falls as the workload
scales out; Object values may be callables for the same reason.
"""

from __future__ import annotations

import base64
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from autoscaler.k8s.certs import self_signed_serving
from autoscaler.k8s.quantity import format_milli
from autoscaler.k8s.selectors import LabelSelector, SelectorError, parse_label_selector
from autoscaler.k8s.timefmt import format_time

CUSTOM, CUSTOM_VERSION = "custom.metrics.k8s.io", "v1beta2"
EXTERNAL, EXTERNAL_VERSION = "external.metrics.k8s.io", "v1beta1"
NAMESPACE, SERVICE = "monitoring", "custom-metrics-apiserver"
APISERVICES = (f"{CUSTOM_VERSION}.{CUSTOM}", f"{EXTERNAL_VERSION}.{EXTERNAL}")

#: resource -> (kind, apiVersion) of a described object, as the adapter's REST mapper names them
KINDS = {"services": ("Service", "/v1"), "namespaces": ("Namespace", "/v1"), "deployments.apps": ("Deployment", "apps/v1")}
#: (namespace, label selector) -> names of the running pods it selects
PodLister = Callable[[str, LabelSelector], list[str]]


@dataclass
class Request:
    path: str
    query: dict[str, str]
    user: str | None
    client_cn: str | None


@dataclass
class MetricsData:
    """What the backend serves; the test changes it between syncs."""

    pods_total: dict[tuple[str, str], int] = field(default_factory=dict)  # (ns, metric) -> milli shared by pods
    objects: dict[tuple[str, str, str, str], int | Callable[[], int]] = field(default_factory=dict)
    # (ns, metric) -> [(metric labels, milli)]
    external: dict[tuple[str, str], list[tuple[dict[str, str], int]]] = field(default_factory=dict)


def _status(code: int, reason: str, message: str) -> web.Response:
    return web.json_response({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                              "message": message, "reason": reason, "code": code}, status=code)


def _not_found_metric(metric: str, resource: str, name: str = "") -> web.Response:
    """custom-metrics-apiserver's provider.NewMetricNotFoundError / NewMetricNotFoundForError."""
    return _status(404, "NotFound", f"the server could not find the metric {metric} for {resource}"
                                    + (f" {name}" if name else ""))


class CustomMetricsBackend:
    """HTTPS server for both metrics APIs, trusting only the front-proxy CA for client certificates."""

    def __init__(self, directory: Path, front_proxy_ca_pem: bytes, pods: PodLister,
                 clock: Callable[[], float] = time.time) -> None:
        self.ca, serving = self_signed_serving("custom-metrics-apiserver", [f"{SERVICE}.{NAMESPACE}.svc"])
        crt, key = directory / "custom-metrics.crt", directory / "custom-metrics.key"
        serving.write(crt, key)
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ctx.load_cert_chain(crt, key)
        self.ctx.load_verify_locations(cadata=front_proxy_ca_pem.decode())
        self.ctx.verify_mode = ssl.CERT_REQUIRED
        self.pods = pods
        self.clock = clock
        self.data = MetricsData()
        self.requests: list[Request] = []
        self.port = 0
        self._runner: web.AppRunner | None = None

    # -- what the HPA controller asked -----------------------------------------------------------
    def metric_requests(self) -> list[Request]:
        """Requests for metric values (not the aggregator's discovery and availability checks)."""
        return [r for r in self.requests if r.path.count("/") > 4]

    # -- serving ---------------------------------------------------------------------------------
    def _resource_list(self, group: str, version: str) -> dict[str, Any]:
        if group == CUSTOM:
            names = sorted({f"pods/{m}" for _, m in self.data.pods_total} |
                           {f"{r}/{m}" for _, r, _, m in self.data.objects})
            kind = "MetricValueList"
        else:
            names = sorted({m for _, m in self.data.external})
            kind = "ExternalMetricValueList"
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{group}/{version}",
                "resources": [{"name": n, "singularName": "", "namespaced": True, "kind": kind, "verbs": ["get"]}
                              for n in names]}

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        subject = dict(x[0] for x in (peer or {}).get("subject", ()))
        self.requests.append(Request(request.path, dict(request.query), request.headers.get("X-Remote-User"),
                                     subject.get("commonName")))
        parts = request.path.strip("/").split("/")
        if request.path == "/apis":
            return web.json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v}],
                 "preferredVersion": {"groupVersion": f"{g}/{v}", "version": v}}
                for g, v in ((CUSTOM, CUSTOM_VERSION), (EXTERNAL, EXTERNAL_VERSION))]})
        if len(parts) == 3 and parts[0] == "apis" and (parts[1], parts[2]) in (
                (CUSTOM, CUSTOM_VERSION), (EXTERNAL, EXTERNAL_VERSION)):
            return web.json_response(self._resource_list(parts[1], parts[2]))
        try:
            label = parse_label_selector(request.query.get("labelSelector", ""))
            metric_label = parse_label_selector(request.query.get("metricLabelSelector", ""))
        except SelectorError as exc:
            return _status(400, "BadRequest", str(exc))
        if parts[:3] == ["apis", CUSTOM, CUSTOM_VERSION] and len(parts) == 8 and parts[3] == "namespaces":
            return self._custom(parts[4], parts[5], parts[6], parts[7], label, metric_label)
        if parts[:3] == ["apis", EXTERNAL, EXTERNAL_VERSION] and len(parts) == 6 and parts[3] == "namespaces":
            return self._external(parts[4], parts[5], label)
        return _status(404, "NotFound", "the server could not find the requested resource")

    def _custom(self, ns: str, resource: str, name: str, metric: str, label: LabelSelector,
                metric_label: LabelSelector) -> web.Response:
        now = format_time(self.clock())
        if resource == "pods" and name == "*":
            total = self.data.pods_total.get((ns, metric))
            if total is None:
                return _not_found_metric(metric, "pods")
            pods = self.pods(ns, label)
            items = [{"describedObject": {"kind": "Pod", "namespace": ns, "name": p, "apiVersion": "/v1"},
                      "metric": {"name": metric, "selector": None}, "timestamp": now, "windowSeconds": 60,
                      "value": format_milli(total // len(pods))} for p in pods]
        else:
            value = self.data.objects.get((ns, resource, name, metric))
            if value is None:
                return _not_found_metric(metric, resource, name)
            milli = value() if callable(value) else value
            kind, api_version = KINDS.get(resource, (resource, "/v1"))
            items = [{"describedObject": {"kind": kind, "namespace": ns, "name": name, "apiVersion": api_version},
                      "metric": {"name": metric, "selector": None}, "timestamp": now, "value": format_milli(milli)}]
        return web.json_response({"kind": "MetricValueList", "apiVersion": f"{CUSTOM}/{CUSTOM_VERSION}",
                                  "metadata": {}, "items": items})

    def _external(self, ns: str, metric: str, label: LabelSelector) -> web.Response:
        series = self.data.external.get((ns, metric))
        if series is None:
            return _not_found_metric(metric, f"{metric}.{EXTERNAL}")
        now = format_time(self.clock())
        items = [{"metricName": metric, "metricLabels": labels, "timestamp": now, "value": format_milli(milli)}
                 for labels, milli in series if label.matches(labels)]
        return web.json_response({"kind": "ExternalMetricValueList", "apiVersion": f"{EXTERNAL}/{EXTERNAL_VERSION}",
                                  "metadata": {}, "items": items})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self.ctx)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


def manifests(backend: CustomMetricsBackend) -> list[dict[str, Any]]:
    """The Namespace, Service, Endpoints and both APIServices, as a metrics adapter's manifests create
    them (the Endpoints stand in for the adapter's pod; ``caBundle`` verifies its serving cert)."""
    ca = base64.b64encode(backend.ca.cert_pem).decode()
    meta = {"name": SERVICE, "namespace": NAMESPACE}
    docs: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {"apiVersion": "v1", "kind": "Service", "metadata": meta,
         "spec": {"ports": [{"name": "https", "port": 443, "targetPort": 6443}]}},
        {"apiVersion": "v1", "kind": "Endpoints", "metadata": meta,
         "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "https", "port": backend.port}]}]},
    ]
    for group, version in ((CUSTOM, CUSTOM_VERSION), (EXTERNAL, EXTERNAL_VERSION)):
        docs.append({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
                     "metadata": {"name": f"{version}.{group}"},
                     "spec": {"service": {"name": SERVICE, "namespace": NAMESPACE, "port": 443}, "group": group,
                              "version": version, "caBundle": ca, "groupPriorityMinimum": 100,
                              "versionPriority": 100}})
    return docs
