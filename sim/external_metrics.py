"""The external metrics API of the emulated cluster: ``external.metrics.k8s.io/v1beta1`` served from
the scenario's series (a queue length over time, say), as KEDA or prometheus-adapter serve it.

A scenario declares them under ``externalMetrics``::

    externalMetrics:
      - name: queue_length                # the metric name an HPA's External metric asks for
        namespace: default                # the HPA's namespace (default "default")
        labels: {queue: orders}           # matched by the HPA's metric.selector
        interpolation: step               # or linear (default step)
        points: [[0, 30], [40s, 0], [110s, 50]]   # [time since the cluster started, value]

``GET /apis/external.metrics.k8s.io/v1beta1/namespaces/NS/METRIC?labelSelector=...`` answers an
``ExternalMetricValueList`` with one item per series of that name in NS whose labels the selector
matches, valued at the current time; a name no series has is custom-metrics-apiserver's 404.

The server sits behind kube-apiserver's aggregation layer like our metrics API: TLS with a serving
certificate from the cluster CA (the APIService's ``caBundle``), callers authenticated by the
front-proxy client certificate and its ``X-Remote-*`` headers (or a cluster client certificate),
authorized with SubjectAccessReview: :mod:`autoscaler.server.authn` and :mod:`autoscaler.server.authz`,
the chain `autoscaler run` uses.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from autoscaler.k8s.quantity import format_milli
from autoscaler.k8s.selectors import SelectorError, parse_label_selector
from autoscaler.k8s.status import ApiError, bad_request, internal
from autoscaler.k8s.timefmt import format_time
from autoscaler.server.authn import Authenticator, Headers, peer_certificate
from autoscaler.server.authz import Authorizer, denial, request_attributes
from sim.external_series import ExternalSeries

GROUP, VERSION = "external.metrics.k8s.io", "v1beta1"
PREFIX = f"/apis/{GROUP}/{VERSION}"
SERVICE_NAME, SERVICE_NAMESPACE = "external-metrics", "kube-system"
_USER = web.RequestKey("user", str)


def _status(err: ApiError) -> web.Response:
    return web.json_response(err.status(), status=err.code)


def _metric_not_found(metric: str) -> ApiError:
    """custom-metrics-apiserver's NewMetricNotFoundError for an external metric."""
    return ApiError(404, "NotFound", f"the server could not find the metric {metric} for "
                                     f"externalmetrics.{GROUP}", {"group": GROUP, "kind": "externalmetrics"})


class ExternalMetricsServer:
    """HTTPS server of the external metrics API; ``now`` is the cluster's clock, ``origin`` its start."""

    def __init__(self, series: list[ExternalSeries], ssl_context: ssl.SSLContext, authenticator: Authenticator,
                 authorizer: Authorizer, now: Callable[[], float], origin: float) -> None:
        self.series = series
        self.ssl_context = ssl_context
        self.authn = authenticator
        self.authz = authorizer
        self.now = now
        self.origin = origin
        self.port = 0
        #: (path, user) of every metric request served: who asked, for tests and reports
        self.requests: list[tuple[str, str]] = []
        self._runner: web.AppRunner | None = None

    async def start(self, host: str = "127.0.0.1") -> None:
        app = web.Application(middlewares=[self._security])
        app.router.add_route("GET", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, 0, ssl_context=self.ssl_context)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @web.middleware
    async def _security(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                        ) -> web.StreamResponse:
        attrs = request_attributes(request.method, request.path, request.query)
        try:
            user = await self.authn.authenticate(peer_certificate(request), Headers(request.headers.items()), request.path)
            allowed, reason, _ = await self.authz.authorize(user, attrs)
            if not allowed:
                raise denial(user, attrs, reason)
            request[_USER] = user.name
            return await handler(request)
        except ApiError as err:
            return _status(err)
        except web.HTTPException:
            raise
        except Exception as exc:  # one bad request never takes the server down
            return _status(internal(str(exc)))

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/")
        if path in ("/healthz", "/readyz", "/livez"):
            return web.Response(text="ok")
        if path == "/apis":
            gv = {"groupVersion": f"{GROUP}/{VERSION}", "version": VERSION}
            return web.json_response({"kind": "APIGroupList", "apiVersion": "v1",
                                      "groups": [{"name": GROUP, "versions": [gv], "preferredVersion": gv}]})
        if path == PREFIX:
            return web.json_response({
                "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{GROUP}/{VERSION}",
                "resources": [{"name": n, "singularName": "", "namespaced": True, "kind": "ExternalMetricValueList",
                               "verbs": ["get"]} for n in sorted({s.name for s in self.series})]})
        parts = path[len(PREFIX):].strip("/").split("/") if path.startswith(PREFIX + "/") else []
        if len(parts) != 3 or parts[0] != "namespaces":
            return _status(ApiError(404, "NotFound", "the server could not find the requested resource", {}))
        ns, metric = parts[1], parts[2]
        try:
            selector = parse_label_selector(request.query.get("labelSelector", ""))
        except SelectorError as exc:
            return _status(bad_request(str(exc)))
        named = [s for s in self.series if s.namespace == ns and s.name == metric]
        if not named:
            return _status(_metric_not_found(metric))
        now = self.now()
        stamp = format_time(now)
        items = [{"metricName": metric, "metricLabels": dict(s.labels), "timestamp": stamp,
                  "value": format_milli(s.value_at(now - self.origin))}
                 for s in named if selector.matches(s.labels)]
        self.requests.append((request.path_qs, request.get(_USER, "")))
        return web.json_response({"kind": "ExternalMetricValueList", "apiVersion": f"{GROUP}/{VERSION}",
                                  "metadata": {}, "items": items})


def registration(port: int, ca_bundle_b64: str) -> list[dict[str, Any]]:
    """The Service (no selector: its EndpointSlice is written by the cluster) and the APIService."""
    return [
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": SERVICE_NAME, "namespace": SERVICE_NAMESPACE},
         "spec": {"ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]}},
        {"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
         "metadata": {"name": f"{VERSION}.{GROUP}"},
         "spec": {"service": {"name": SERVICE_NAME, "namespace": SERVICE_NAMESPACE, "port": 443},
                  "group": GROUP, "version": VERSION, "caBundle": ca_bundle_b64,
                  "groupPriorityMinimum": 100, "versionPriority": 100}},
    ]
