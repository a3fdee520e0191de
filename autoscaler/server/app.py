"""The HTTPS application: authentication, authorization, then the metrics.k8s.io handlers.

Routing is one dispatcher over path segments (the API surface is small and fixed) so that
unknown paths, wrong methods and watch requests get kube-apiserver's Status answers (404, 405)
rather than a framework's default pages.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson
import structlog
from aiohttp import web
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from autoscaler import __version__
from autoscaler.api import discovery, openapi
from autoscaler.api.negotiation import DISCOVERY_V2, METADATA, TABLE, negotiate
from autoscaler.api.render import GROUP, VERSIONS, single
from autoscaler.api.resources import MetricsResources
from autoscaler.api.tables import to_partial_metadata, to_table
from autoscaler.k8s.status import ApiError, internal, method_not_allowed, too_many_requests
from autoscaler.server.authn import Authenticator, Headers, peer_certificate
from autoscaler.server.authz import Attributes, Authorizer, denial, request_attributes
from autoscaler.server.health import HealthEndpoint
from autoscaler.server.identity import UserInfo
from autoscaler.server.selfmetrics import AUTHN_ATTEMPTS, AUTHZ_DECISIONS, REQUEST_DURATION, REQUESTS, request_labels

log = structlog.get_logger(__name__)

JSON = "application/json"
PREFIXES = tuple(f"/apis/{GROUP}/{v}" for v in VERSIONS)
KINDS = {"nodes": ("NodeMetrics", "NodeMetricsList"), "pods": ("PodMetrics", "PodMetricsList")}
#: (group, version, resource) this server serves: the only values request metrics are labelled with
SERVED_RESOURCES = frozenset((GROUP, v, r) for v in VERSIONS for r in KINDS)


def json_response(obj: Any, status: int = 200, content_type: str = JSON, headers: dict[str, str] | None = None
                  ) -> web.Response:
    if ";" in content_type:
        # aiohttp's content_type argument cannot carry parameters; set the whole header instead.
        return web.Response(body=orjson.dumps(obj), status=status, headers={**(headers or {}), "Content-Type": content_type})
    return web.Response(body=orjson.dumps(obj), status=status, content_type=content_type, headers=headers)


def status_response(err: ApiError) -> web.Response:
    body = orjson.dumps(err.status())
    return web.Response(body=body, status=err.code, content_type=JSON)


def _not_found_path() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


class MetricsServerApp:
    """Builds the aiohttp application around the metrics resources and the security chain."""

    def __init__(self, resources: MetricsResources, authenticator: Authenticator, authorizer: Authorizer,
                 health: dict[str, HealthEndpoint], *, registries: Sequence[CollectorRegistry] = (),
                 max_in_flight: int = 400):
        self.resources = resources
        self.authn = authenticator
        self.authz = authorizer
        self.health = health
        # Registries besides the default one whose families /metrics also exposes (the collector's).
        self.registries = list(registries)
        # --max-requests-inflight: requests past it get 429 before any work (authentication
        # included: a flood of made-up tokens would otherwise become a flood of TokenReviews)
        self.max_in_flight = max_in_flight
        self.in_flight = 0

    def build(self) -> web.Application:
        app = web.Application(middlewares=[self._security], client_max_size=1 << 20)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        return app

    # -- security chain ------------------------------------------------------------------------

    @web.middleware
    async def _security(self, request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
        start = time.perf_counter()
        path = request.path
        attrs = request_attributes(request.method, path, request.query)
        # probes are exempt, as kube-apiserver's priority and fairness exempts them
        limited = self.max_in_flight > 0 and path.strip("/").split("/", 1)[0] not in self.health
        if limited and self.in_flight >= self.max_in_flight:
            resp = status_response(too_many_requests())
            resp.headers["Retry-After"] = "1"
            self._count(attrs, resp.status, start)
            return resp
        self.in_flight += limited
        try:
            return await self._secured(request, handler, attrs, start)
        finally:
            self.in_flight -= limited

    async def _secured(self, request: web.Request, handler: Callable[..., Any], attrs: Attributes,
                       start: float) -> web.StreamResponse:
        path = request.path
        user: UserInfo | None = None
        try:
            try:
                user = await self.authn.authenticate(peer_certificate(request), Headers(request.headers.items()), path)
            except ApiError:
                AUTHN_ATTEMPTS.labels("failure", "").inc()
                log.info("Unable to authenticate the request", path=path, remote=request.remote)
                raise
            AUTHN_ATTEMPTS.labels("success", user.method).inc()
            allowed, reason, source = await self.authz.authorize(user, attrs)
            AUTHZ_DECISIONS.labels("allow" if allowed else "deny", source).inc()
            if not allowed:
                log.info("Forbidden", user=user.name, verb=attrs.verb, path=path, reason=reason)
                raise denial(user, attrs, reason)
            resp = await handler(request)
        except ApiError as err:
            resp = status_response(err)
        except web.HTTPException:
            raise
        except Exception as exc:  # one broken request never takes the server down
            log.exception("request failed", path=path)
            resp = status_response(internal(str(exc)))
        elapsed = self._count(attrs, resp.status, start)
        log.debug("request", verb=attrs.verb, path=path, code=resp.status, user=user.name if user else None,
                  seconds=round(elapsed, 4))
        return resp

    @staticmethod
    def _count(attrs: Attributes, code: int, start: float) -> float:
        elapsed = time.perf_counter() - start
        labels = request_labels(attrs.verb, attrs.api_group, attrs.api_version,
                                attrs.resource if attrs.resource_request else "", SERVED_RESOURCES)
        REQUESTS.labels(*labels, str(code)).inc()
        REQUEST_DURATION.labels(*labels).observe(elapsed)
        return elapsed

    # -- routing -------------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        parts = [p for p in path.split("/") if p]
        if len(parts) >= 3 and parts[:2] == ["apis", GROUP] and parts[2] in VERSIONS:
            return self._metrics(request, parts[2], parts[3:])
        if request.method not in ("GET", "HEAD"):
            if self._known_path(parts):
                raise method_not_allowed()
            raise _not_found_path()
        if parts and parts[0] in self.health and len(parts) <= 2:
            return self._health(request, parts)
        if parts == ["apis"]:
            choice = negotiate(request.headers.get("Accept"), discovery_v2=True)
            if choice.form == DISCOVERY_V2:
                return json_response(discovery.aggregated_discovery(choice.version),
                                     content_type=discovery.aggregated_content_type(choice.version))
            return json_response(discovery.api_group_list())
        if parts == ["apis", GROUP]:
            negotiate(request.headers.get("Accept"))
            return json_response(discovery.api_group())
        if parts == ["metrics"]:
            body = b"".join(generate_latest(r) for r in [REGISTRY, *self.registries])
            return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
        if parts and parts[0] == "openapi":
            return self._openapi(request, parts)
        if parts == ["version"]:
            return json_response({"major": "", "minor": "", "gitVersion": f"v{__version__}", "gitCommit": "",
                                  "gitTreeState": "", "buildDate": "", "goVersion": "", "compiler": "",
                                  "platform": ""})
        if not parts:
            return json_response({"paths": sorted([
                "/apis", f"/apis/{GROUP}", *PREFIXES, "/healthz", "/livez", "/readyz", "/metrics",
                "/openapi/v2", "/openapi/v3", "/version",
            ])})
        raise _not_found_path()

    def _known_path(self, parts: list[str]) -> bool:
        return parts in (["apis"], ["apis", GROUP], ["metrics"], ["version"]) or bool(parts and parts[0] in self.health)

    def _health(self, request: web.Request, parts: list[str]) -> web.Response:
        endpoint = self.health[parts[0]]
        if len(parts) == 2:
            res = endpoint.run_one(parts[1])
            if res is None:
                raise _not_found_path()
        else:
            exclude = set(request.query.getall("exclude", []))
            res = endpoint.run("verbose" in request.query, exclude)
        code, text = res
        return web.Response(text=text, status=code, content_type="text/plain",
                            headers={"X-Content-Type-Options": "nosniff"})

    def _openapi(self, request: web.Request, parts: list[str]) -> web.Response:
        if parts == ["openapi", "v2"]:
            data = openapi.openapi_v2()
        elif parts == ["openapi", "v3"]:
            data = openapi.openapi_v3_index()
        elif len(parts) == 5 and parts[:4] == ["openapi", "v3", "apis", GROUP] and parts[4] in VERSIONS:
            data = openapi.openapi_v3_group(parts[4])
        else:
            raise _not_found_path()
        tag = openapi.etag(data)
        if request.headers.get("If-None-Match") == tag:
            return web.Response(status=304, headers={"ETag": tag})
        return web.Response(body=data, content_type=JSON, headers={"ETag": tag})

    def _metrics(self, request: web.Request, version: str, rest: list[str]) -> web.Response:
        """``/apis/metrics.k8s.io/<version>/...``: every version answers from the same storage."""
        accept = request.headers.get("Accept")
        if not rest:
            if request.method not in ("GET", "HEAD"):
                raise method_not_allowed()
            negotiate(accept)
            return json_response(discovery.api_resource_list(version))
        namespace = ""
        if rest[0] == "namespaces":
            if len(rest) < 3:
                raise _not_found_path()
            namespace, rest = rest[1], rest[2:]
        resource = rest[0]
        if resource not in KINDS or len(rest) > 2 or (resource == "nodes" and namespace):
            raise _not_found_path()
        name = rest[1] if len(rest) == 2 else ""
        if request.method not in ("GET", "HEAD"):
            raise method_not_allowed()
        q = request.query
        if not name and q.get("watch", "").lower() in ("true", "1"):
            raise ApiError(405, "MethodNotAllowed",
                           f'watch is not supported on resources of kind "{resource}.{GROUP}"',
                           {"group": GROUP, "kind": resource})
        choice = negotiate(accept, table=True, metadata=True)
        kind, _ = KINDS[resource]
        r = self.resources
        if name:
            item = r.get_node(name) if resource == "nodes" else r.get_pod(namespace, name)
            if choice.form == TABLE:
                return json_response(to_table([item], kind, choice.version, q.get("includeObject") or "Metadata",
                                              version))
            if choice.form == METADATA:
                return json_response(to_partial_metadata([item], choice.version, single=True))
            return json_response(single(kind, item, version))
        if resource == "nodes":
            listing = r.list_nodes(q.get("labelSelector"), q.get("fieldSelector"))
        else:
            listing = r.list_pods(namespace, q.get("labelSelector"), q.get("fieldSelector"))
        if choice.form == TABLE:
            return json_response(to_table(listing.items(), kind, choice.version, q.get("includeObject") or "Metadata",
                                          version))
        if choice.form == METADATA:
            return json_response(to_partial_metadata(listing.items(), choice.version, single=False))
        return web.Response(body=listing.json(version), content_type=JSON)
