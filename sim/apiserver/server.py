"""The emulated kube-apiserver: HTTPS on 127.0.0.1, authenticated and authorized per request, with
kube-apiserver's REST semantics over :class:`ObjectStore`, discovery, OpenAPI, tables, the node
proxy to kubelets and the aggregation layer in front of extension API servers."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ssl
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import structlog
from aiohttp import web

from autoscaler.k8s import status as st
from autoscaler.k8s.fields import model_for, prune_unknown, strict_decoding_error
from autoscaler.k8s.selectors import SelectorError, parse_label_selector

from . import convert, discovery, fields, negotiate, openapi, protobuf, resources, tables
from .aggregation import Aggregator
from .auth import (
    ANONYMOUS_USER,
    Authenticator,
    Authorizer,
    AuthzPolicy,
    RequestAttributes,
    UserInfo,
    forbidden_error,
    review_access,
    review_self,
    review_self_access,
    review_token,
)
from .nodeproxy import PREFERRED_ADDRESS_TYPES, NodeProxy, is_node_proxy
from .patch import PATCH_TYPES, apply_patch
from .requestinfo import RequestInfo, request_info
from .store import ObjectStore, deep_copy
from .tokens import LegacyTokenController, TokenIssuer, request_token

log = structlog.get_logger(__name__)

# The release the emulator is compared with (docs/emulator-fidelity.md); built from source, so no
# commit or build date is claimed.
SERVER_VERSION = {
    "major": "1",
    "minor": "37",
    "emulationMajor": "1",
    "emulationMinor": "37",
    "minCompatibilityMajor": "1",
    "minCompatibilityMinor": "36",
    "gitVersion": "v1.37.2",
    "gitCommit": "",
    "gitTreeState": "",
    "buildDate": "1970-01-01T00:00:00Z",
    "goVersion": "go1.26.8",
    "compiler": "gc",
    "platform": "linux/amd64",
}
_OPEN_PATHS = ("/version", "/healthz", "/livez", "/readyz")
_TRUE = ("1", "true", "True")
CONNECT_SUBRESOURCES = ("log", "exec", "attach", "portforward", "proxy")
_TABLE_AS = ("Table", "PartialObjectMetadata", "PartialObjectMetadataList")


def _status_response(err: st.ApiError, fmt: negotiate.Target | None = None) -> web.Response:
    body = err.status()
    return web.Response(status=err.code, body=orjson.dumps(body), content_type="application/json")


def _json(obj: Any, status: int = 200, target: negotiate.Target | None = None) -> web.Response:
    target = target or negotiate.Target()
    resp = web.Response(status=status, body=negotiate.encode(obj, target))
    resp.headers["Content-Type"] = target.content_type
    return resp


def _warn(resp: web.Response, warnings: list[str]) -> web.Response:
    """Attach API warnings (``Warning: 299 - "text"``, RFC 7234) that kubectl prints as ``Warning: text``."""
    for text in warnings:
        resp.headers.add("Warning", '299 - "' + text.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return resp


def _int_param(q: Any, name: str) -> int | None:
    v = q.get(name)
    if v in (None, ""):
        return None
    try:
        return int(v)
    except ValueError:
        raise st.bad_request(f'invalid value for {name}: "{v}"') from None


class APIServer:
    """Serves ``store`` over HTTPS with the cluster ``pki``; see the module docstring.

    ``bookmark_interval`` is how often idle watches that allow bookmarks get one (kube-apiserver:
    about a minute); ``anonymous`` enables system:anonymous for requests without credentials;
    ``kubelet_preferred_address_types`` is kube-apiserver's flag of that name, for the node proxy
    (``/api/v1/nodes/{name}/proxy/...``, see nodeproxy.py).
    """

    def __init__(self, store: ObjectStore, pki: Any, *, host: str = "127.0.0.1", port: int = 0,
                 authorizer_policy: AuthzPolicy | None = None, bookmark_interval: float = 60.0,
                 anonymous: bool = False, aggregator_check_interval: float = 5.0,
                 min_request_timeout: float = 1800.0,
                 kubelet_preferred_address_types: Sequence[str] = PREFERRED_ADDRESS_TYPES):
        self.store = store
        self.catalogue = store.catalogue  # built-ins plus this server's custom resources
        self.openapi_docs = openapi.Documents(self.catalogue)
        self.pki = pki
        self.host = host
        self.port = port
        self.url = ""
        self.bookmark_interval = bookmark_interval
        self.min_request_timeout = min_request_timeout
        self.issuer = TokenIssuer(self._service_account_key())
        self.authenticator = Authenticator(store, pki, issuer=self.issuer, anonymous=anonymous)
        self.authorizer = Authorizer(authorizer_policy)
        self.aggregator = Aggregator(store, pki, check_interval=aggregator_check_interval)
        self.node_proxy = NodeProxy(store, pki, preferred_address_types=tuple(kubelet_preferred_address_types))
        self.token_controller = LegacyTokenController(store, self.issuer, pki.ca.cert_pem)
        self._runner: web.AppRunner | None = None
        self._watches: set[asyncio.Task] = set()
        #: watch requests opened over HTTP, by (store key, User-Agent): what tests count
        self.watch_requests: collections.Counter[tuple[str, str]] = collections.Counter()

    # -----------------------------------------------------------------------------------------
    # lifecycle

    def _service_account_key(self) -> bytes | None:
        """kubeadm keeps the token signing key in pki/sa.key; reuse it so tokens survive restarts."""
        directory = getattr(self.pki, "directory", None)
        if directory is None:
            return None
        path = Path(directory) / "sa.key"
        if path.is_file():
            return path.read_bytes()
        key = TokenIssuer().key_pem()
        path.touch(mode=0o600, exist_ok=True)
        path.write_bytes(key)
        return key

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        with tempfile.TemporaryDirectory() as tmp:
            crt, key = Path(tmp) / "tls.crt", Path(tmp) / "tls.key"
            crt.write_bytes(self.pki.apiserver.cert_pem)
            key.write_bytes(self.pki.apiserver.key_pem)
            ctx.load_cert_chain(crt, key)
        cadata = self.pki.ca.cert_pem.decode() + self.pki.front_proxy_ca.cert_pem.decode()
        ctx.load_verify_locations(cadata=cadata)
        ctx.verify_mode = ssl.CERT_OPTIONAL  # client certs authenticate when presented; tokens otherwise
        ctx.set_alpn_protocols(["http/1.1"])
        return ctx

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.ssl_context(), backlog=1024)
        await site.start()
        server = getattr(site, "_server", None)
        sock = server.sockets[0] if server and server.sockets else None
        if sock is not None:
            self.port = sock.getsockname()[1]
        self.url = f"https://{self.host}:{self.port}"
        self._ensure_kubernetes_endpoints()
        await self.token_controller.start()
        await self.aggregator.start()
        await self.node_proxy.start()
        log.info("apiserver started", url=self.url)

    async def stop(self) -> None:
        for t in list(self._watches):
            t.cancel()
        with contextlib.suppress(Exception):
            await self.aggregator.stop()
        with contextlib.suppress(Exception):
            await self.node_proxy.stop()
        with contextlib.suppress(Exception):
            await self.token_controller.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _ensure_kubernetes_endpoints(self) -> None:
        ep = {"apiVersion": "v1", "kind": "Endpoints",
              "metadata": {"name": "kubernetes", "namespace": "default"},
              "subsets": [{"addresses": [{"ip": self.host}], "ports": [{"name": "https", "port": self.port,
                                                                        "protocol": "TCP"}]}]}
        def target_port(svc: dict) -> None:  # kube-apiserver's service points at its secure port
            for p in svc["spec"].get("ports") or []:
                if p.get("name") == "https":
                    p["targetPort"] = self.port

        if self.store.try_get("services", "default", "kubernetes") is not None:
            self.store.mutate("services", "default", "kubernetes", target_port)
        cur = self.store.try_get("endpoints", "default", "kubernetes")
        if cur is None:
            self.store.create("endpoints", ep)
        else:
            self.store.mutate("endpoints", "default", "kubernetes", lambda o: o.__setitem__("subsets", ep["subsets"]))

    def write_kubeconfig(self, path: Path, user: str = "admin", groups: Sequence[str] = ("system:masters",)) -> Path:
        """A kubeconfig whose user authenticates with a client certificate (CN=user, O=groups)."""
        from sim.pki import write_cert_kubeconfig

        return write_cert_kubeconfig(path, self.url, self.pki.ca.cert_pem, user, self.pki.issue_client(user, groups))

    # -----------------------------------------------------------------------------------------
    # dispatch: authenticate, authorize, serve

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        try:
            info = request_info(request.method, request.path, request.query)
            user = self.authenticator.authenticate(request)
            if user is None:
                if request.path in _OPEN_PATHS or request.path.startswith(("/healthz/", "/livez/", "/readyz/")):
                    user = ANONYMOUS_USER
                else:
                    raise st.unauthorized()
            attrs = RequestAttributes(
                user=user, verb=info.verb, resource=info.resource,
                subresource=info.subresource, api_group=info.group, api_version=info.version,
                namespace=info.namespace, name=info.name, path=request.path,
                resource_request=info.resource_request)
            if user is not ANONYMOUS_USER or self.authenticator.anonymous:
                allowed, reason = self.authorizer.authorize(attrs)
                if not allowed:
                    raise forbidden_error(attrs, reason)
            if info.api_prefix == "apis" and info.group and self.aggregator.route(info.group, info.version):
                return await self.aggregator.proxy(request, user)
            if is_node_proxy(info):
                return await self.node_proxy.proxy(request, info)
            if info.resource_request:
                return await self._resource(request, info, user)
            return await self._nonresource(request, info)
        except st.ApiError as err:
            return _status_response(err)
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as exc:  # one bad request never takes the server down
            log.exception("request failed", path=request.path, method=request.method)
            return _status_response(st.internal(str(exc)))

    # -----------------------------------------------------------------------------------------
    # non-resource paths

    async def _nonresource(self, request: web.Request, info: RequestInfo) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        if request.method not in ("GET", "HEAD"):
            raise st.method_not_allowed()
        if path == "/version":
            return _json(SERVER_VERSION)
        if path in ("/healthz", "/livez", "/readyz") or path.startswith(("/healthz/", "/livez/", "/readyz/")):
            if "verbose" in request.query:
                name = path.strip("/").split("/")[0]
                text = "[+]ping ok\n[+]log ok\n[+]etcd ok\n" + f"{name} check passed\n"
                return web.Response(text=text, content_type="text/plain")
            return web.Response(text="ok", content_type="text/plain")
        if path == "/api":
            if self._wants_aggregated(request):
                return self._aggregated(request, core=True)
            return _json(discovery.api_versions(f"{self.host}:{self.port}"))
        if path == "/apis":
            if self._wants_aggregated(request):
                return self._aggregated(request, core=False, extra=await self.aggregator.aggregated_discovery())
            return _json(discovery.api_group_list(self.catalogue, await self.aggregator.discovery_groups()))
        if path == "/api/v1":
            return _json(discovery.api_resource_list(self.catalogue, "", "v1"))
        parts = path.strip("/").split("/")
        if parts[0] == "apis" and len(parts) == 2:
            doc = discovery.api_group(self.catalogue, parts[1]) or self.aggregator.api_group(parts[1])
            if doc is None:
                raise st.ApiError(404, "NotFound", "the server could not find the requested resource", {})
            return _json(doc)
        if parts[0] == "apis" and len(parts) == 3:
            if not self.catalogue.resources_in(parts[1], parts[2]):
                raise st.ApiError(404, "NotFound", "the server could not find the requested resource", {})
            return _json(discovery.api_resource_list(self.catalogue, parts[1], parts[2]))
        if path == "/openapi/v2":
            return await openapi.serve_v2(request, self.aggregator, self.openapi_docs)
        if path == "/openapi/v3" or path.startswith("/openapi/v3/"):
            return await openapi.serve_v3(request, path, self.aggregator, self.openapi_docs)
        if path == "/.well-known/openid-configuration":
            return _json(self.issuer.openid_configuration())
        if path == "/openid/v1/jwks":
            return _json(self.issuer.jwks())
        if path == "/":
            paths = ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/openapi/v2", "/openapi/v3", "/readyz",
                     "/version"] + [f"/apis/{g}" for g, _ in self.catalogue.groups()]
            return _json({"paths": sorted(paths)})
        raise st.ApiError(404, "NotFound", "the server could not find the requested resource", {})

    @staticmethod
    def _wants_aggregated(request: web.Request) -> bool:
        for m in negotiate.parse_accept(request.headers.get("Accept")):
            if m.as_ == "APIGroupDiscoveryList" and m.params.get("v") in ("v2", "v2beta1"):
                return True
            if m.type in ("application/json", "*/*") and not m.as_:
                return False
        return False

    def _aggregated(self, request: web.Request, *, core: bool, extra: list | None = None) -> web.Response:
        target = negotiate.choose(request.headers.get("Accept"), allowed_as=("APIGroupDiscoveryList",))
        version = target.version or "v2"
        doc = discovery.aggregated(self.catalogue, core, version, extra or [])
        return _json(doc, target=target)

    # -----------------------------------------------------------------------------------------
    # resources

    def _resolve(self, info: RequestInfo) -> resources.Resource:
        r = self.catalogue.lookup(info.group, info.version, info.resource)
        if r is None:
            raise st.ApiError(404, "NotFound", "the server could not find the requested resource", {})
        if info.subresource and info.subresource not in r.subresources:
            if r.custom and info.name:  # apiextensions-apiserver names the object it has no such subresource of
                raise st.not_found(r.plural, info.name, r.group)
            raise st.ApiError(404, "NotFound", "the server could not find the requested resource", {})
        if (r.namespaced and not info.namespace and info.verb not in ("list", "watch", "deletecollection")
                and r.key != "namespaces"):
            raise st.ApiError(404, "NotFound", "the server could not find the requested resource", {})
        return r

    async def _resource(self, request: web.Request, info: RequestInfo, user: UserInfo) -> web.StreamResponse:
        r = self._resolve(info)
        ns = info.namespace if r.namespaced else None
        if r.key == "namespaces":
            ns = None
        verb = info.verb
        if info.subresource in CONNECT_SUBRESOURCES and r.key in ("pods", "services"):
            return self._connect(request, r, info, ns)
        if info.subresource and verb not in r.subresources[info.subresource] and verb != "watch":
            raise st.method_not_allowed()
        if verb not in r.verbs and not info.subresource:
            raise st.method_not_allowed()
        deprecation = resources.DEPRECATED.get((r.key, info.version))
        if deprecation and verb != "watch":  # errors carry the warning too
            try:
                resp = await self._serve_verb(request, r, info, ns, user)
            except st.ApiError as err:
                resp = _status_response(err)
            return _warn(resp, [deprecation])  # type: ignore[arg-type]
        return await self._serve_verb(request, r, info, ns, user)

    async def _serve_verb(self, request: web.Request, r: resources.Resource, info: RequestInfo, ns: str | None,
                          user: UserInfo) -> web.StreamResponse:
        verb = info.verb
        if verb == "get":
            return self._get(request, r, info, ns)
        if verb == "list":
            return self._list(request, r, info, ns)
        if verb == "watch":
            return await self._watch(request, r, info, ns)
        if verb == "create":
            return await self._create(request, r, info, ns, user)
        if verb == "update":
            return await self._update(request, r, info, ns)
        if verb == "patch":
            return await self._patch(request, r, info, ns)
        if verb == "delete":
            return await self._delete(request, r, info, ns)
        if verb == "deletecollection":
            return await self._delete_collection(request, r, info, ns)
        raise st.method_not_allowed()

    # -- helpers ------------------------------------------------------------------------------

    def _connect(self, request: web.Request, r: resources.Resource, info: RequestInfo,
                 ns: str | None) -> web.Response:
        """Logs, exec, attach, port-forward and proxy need running containers, which the emulated
        cluster does not have. What kube-apiserver decides before it would reach a kubelet or an
        endpoint is answered the same way; past that, 405 MethodNotAllowed says what is missing."""
        sub = info.subresource
        name = info.name.split(":")[-2] if r.key == "services" and info.name.count(":") == 2 else \
            info.name.split(":")[0] if r.key == "services" else info.name
        obj = self.store.get(r.key, ns, name)
        if r.key == "services":
            eps = self.store.try_get("endpoints", ns, name) or {}
            if not any(s.get("addresses") for s in eps.get("subsets") or []):
                raise st.service_unavailable(f'no endpoints available for service "{name}"')
        else:
            spec = obj.get("spec") or {}
            if sub == "log":
                containers = [c.get("name") for c in spec.get("containers") or []]
                wanted = request.query.get("container")
                if not wanted and len(containers) > 1:
                    raise st.bad_request(f"a container name must be specified for pod {name}, choose one of: "
                                         f"[{' '.join(containers)}]")
                if wanted and wanted not in containers + [c.get("name") for c in spec.get("initContainers") or []]:
                    raise st.bad_request(f"container {wanted} is not valid for pod {name}")
                if not spec.get("nodeName"):
                    return web.Response(body=b"", content_type="text/plain")  # not scheduled: no log yet
            elif sub == "proxy":
                if not (obj.get("status") or {}).get("podIP"):
                    raise st.bad_request("address not allowed")
            elif not spec.get("nodeName"):
                raise st.bad_request(f"pod {name} does not have a host assigned")
        raise st.method_not_allowed(
            f"{r.plural}/{sub} is not available in the emulated cluster: it runs no containers")

    def _external(self, r: resources.Resource, version: str, obj: dict) -> dict:
        if r.key == "events.events.k8s.io":
            return obj  # the store already answers events.k8s.io in its own shape
        if r.custom:
            return convert.custom_version(r.api_version(version), obj)
        return convert.to_external(r.key, version, obj)

    @staticmethod
    def _internal(r: resources.Resource, version: str, obj: dict) -> dict:
        """A client's object in the storage version."""
        if r.key == "events.events.k8s.io":
            return obj
        if r.custom:
            return convert.custom_version(r.api_version(), obj)
        return convert.to_internal(r.key, version, obj)

    @staticmethod
    def _printer(r: resources.Resource) -> tables.Printer | None:
        return tables.custom_printer(r.columns) if r.custom else None

    def _target(self, request: web.Request, r: resources.Resource | None = None) -> negotiate.Target:
        """The representation asked for; protobuf for built-in kinds (custom resources have none)."""
        return negotiate.choose(request.headers.get("Accept"), allowed_as=_TABLE_AS,
                                protobuf=r is not None and not r.custom
                                and protobuf.message_for(r.api_version(), r.kind) is not None)

    def _render_one(self, request: web.Request, r: resources.Resource, version: str, obj: dict,
                    status: int = 200) -> web.Response:
        target = self._target(request, r)
        if target.as_ == "Table":
            include = request.query.get("includeObject", "Metadata")
            return _json(tables.table(r.storage_key if r.storage else r.key, [self._core(r, obj)],
                                      include_object=include,
                                      list_meta={"resourceVersion": obj["metadata"].get("resourceVersion", "")},
                                      external=lambda o: self._external(r, version, o), printer=self._printer(r)),
                         status, target)
        if target.as_.startswith("PartialObjectMetadata"):
            return _json(tables.partial_metadata(obj), status, target)
        return _json(self._external(r, version, obj), status, target)

    @staticmethod
    def _core(r: resources.Resource, obj: dict) -> dict:
        """events.k8s.io events print with the core printer."""
        return convert.event_from_events_v1(obj) if r.key == "events.events.k8s.io" else obj

    def _selectors(self, request: web.Request, r: resources.Resource, info: RequestInfo):
        q = request.query
        try:
            label = parse_label_selector(q.get("labelSelector"))
        except SelectorError as e:
            raise st.bad_request(str(e)) from None
        fs = q.get("fieldSelector")
        if info.name and info.verb == "watch":
            fs = f"metadata.name={info.name}" + (f",{fs}" if fs else "")
        try:
            field = fields.parse_for(r.key, fs)
        except SelectorError as e:
            raise st.bad_request(str(e)) from None
        return label, field

    async def _body(self, request: web.Request) -> Any:
        raw = await request.read()
        return negotiate.decode_body(raw, request.headers.get("Content-Type", "application/json"))

    @staticmethod
    def _dry_run(request: web.Request, body: Any = None) -> bool:
        vals = request.query.getall("dryRun", [])
        for v in vals:
            if v != "All":
                raise st.bad_request(f'Invalid value: "{v}": supported values: "All"')
        if isinstance(body, dict) and body.get("kind") == "DeleteOptions" and body.get("dryRun"):
            return True
        return bool(vals)

    @staticmethod
    def _check_field_validation(request: web.Request) -> None:
        v = request.query.get("fieldValidation")
        if v not in (None, "", "Ignore", "Warn", "Strict"):
            raise st.bad_request(f'fieldValidation parameter unsupported: "{v}". Valid values: Ignore, Warn, Strict')

    @staticmethod
    def _drop_unknown_fields(request: web.Request, r: resources.Resource, version: str, body: dict,
                             kind: str | None = None, api_version: str | None = None) -> list[str]:
        """Decode ``body`` as kube-apiserver decodes a built-in type: fields the kind lacks are dropped,
        and ``fieldValidation`` (default Warn) makes them an error (Strict) or warnings (Warn).
        Custom objects keep every field (no schema pruning here)."""
        if r.custom and kind is None:
            return []
        kind = kind or r.kind
        api_version = api_version or (f"{r.group}/{version}" if r.group else version)
        model = model_for(api_version, kind)
        unknown = prune_unknown(body, model) if model else []
        mode = request.query.get("fieldValidation") or "Warn"
        if unknown and mode == "Strict":
            raise st.bad_request(f'{kind} in version "{version}" cannot be handled as a {kind}: '
                                 + strict_decoding_error(unknown))
        return [f'unknown field "{p}"' for p in unknown] if mode == "Warn" else []

    def _check_identity(self, r: resources.Resource, info: RequestInfo, ns: str | None, body: Any,
                        version: str, *, subresource_kind: str | None = None) -> dict:
        if not isinstance(body, dict):
            raise st.bad_request("the object provided is unrecognized (must be of type object)")
        want_kind = subresource_kind or r.kind
        kind = body.get("kind")
        if kind and kind != want_kind and not (subresource_kind is None and info.subresource == "status"):
            raise st.bad_request(f"the object provided is unrecognized (must be of type {want_kind}): "
                                 f"couldn't get version/kind; json parse error: kind {kind}")
        if subresource_kind is None:
            av = body.get("apiVersion")
            expected = r.api_version(version)
            if av and av != expected:
                raise st.bad_request(f"the API version in the data ({av}) does not match the expected API version "
                                     f"({expected})")
        md = body.get("metadata")
        if md is None or not isinstance(md, dict):
            md = body["metadata"] = {}
        if r.namespaced and ns is not None:
            if md.get("namespace") and md["namespace"] != ns:
                raise st.bad_request("the namespace of the provided object does not match the namespace sent on "
                                     "the request")
            md["namespace"] = ns
        if info.name:
            if md.get("name") and md["name"] != info.name:
                raise st.bad_request(f"the name of the object ({md['name']}) does not match the name on the URL "
                                     f"({info.name})")
            md["name"] = info.name
        return body

    # -- verbs ------------------------------------------------------------------------------

    def _get(self, request: web.Request, r: resources.Resource, info: RequestInfo, ns: str | None) -> web.Response:
        if info.subresource == "scale":
            return _json(self.store.get_scale(r.key, ns, info.name))
        if info.subresource and info.subresource != "status":
            raise st.method_not_allowed()
        obj = self.store.get(r.key, ns, info.name)
        return self._render_one(request, r, info.version, obj)

    def _list(self, request: web.Request, r: resources.Resource, info: RequestInfo, ns: str | None) -> web.Response:
        label, field = self._selectors(request, r, info)
        limit = _int_param(request.query, "limit") or 0
        items, rv, token, remaining = self.store.list_page(r.key, ns, label, field, limit,
                                                           request.query.get("continue") or None)
        meta: dict[str, Any] = {"resourceVersion": rv}
        if token:
            meta["continue"] = token
        if remaining is not None:
            meta["remainingItemCount"] = remaining
        target = self._target(request, r)
        if target.as_ == "Table":
            include = request.query.get("includeObject", "Metadata")
            core_items = [self._core(r, o) for o in items]
            return _json(tables.table(r.storage_key if r.storage else r.key, core_items, include_object=include,
                                      list_meta=meta, external=lambda o: self._external(r, info.version, o),
                                      printer=self._printer(r)),
                         target=target)
        if target.as_.startswith("PartialObjectMetadata"):
            doc = {"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": meta,
                   "items": [tables.partial_metadata(o) for o in items]}
            return _json(doc, target=target)
        if r.key != "events.events.k8s.io" and (convert.needs_conversion(r.key, info.version)
                                                 or r.api_version(info.version) != r.api_version()):
            items = [self._external(r, info.version, o) for o in items]
        doc = {"kind": r.list_kind or f"{r.kind}List", "apiVersion": r.api_version(info.version), "metadata": meta, "items": items}
        return _json(doc, target=target)

    async def _watch(self, request: web.Request, r: resources.Resource, info: RequestInfo,
                     ns: str | None) -> web.StreamResponse:
        q = request.query
        self.watch_requests[(r.key, request.headers.get("User-Agent", ""))] += 1
        target = self._target(request)
        label, field = self._selectors(request, r, info)
        timeout = _int_param(q, "timeoutSeconds")
        if timeout is None:
            import random
            timeout = int(self.min_request_timeout * (1 + random.random()))
        bookmarks = q.get("allowWatchBookmarks") in _TRUE
        send_initial = q.get("sendInitialEvents")
        initial = None if send_initial is None else send_initial in _TRUE
        resp = web.StreamResponse(status=200)
        resp.headers["Content-Type"] = target.content_type
        resp.headers["Cache-Control"] = "no-cache, private"
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        try:
            watch = self.store.watch(r.key, ns, q.get("resourceVersion"), label_selector=label, field_selector=field,
                                     send_initial_events=initial)
        except st.ApiError as err:
            await resp.write(orjson.dumps({"type": "ERROR", "object": err.status()}) + b"\n")
            await resp.write_eof()
            return resp
        task = asyncio.current_task()
        if task is not None:
            self._watches.add(task)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        headers_sent = [False]
        initial_pending = watch.has_pending()
        initial_end_sent = not (initial is True and bookmarks)
        last_write = loop.time()
        try:
            while True:
                now = loop.time()
                if now >= deadline:
                    break
                wait = min(deadline - now, 5.0)
                if bookmarks:
                    wait = min(wait, max(0.0, last_write + self.bookmark_interval - now))
                if not initial_end_sent and not watch.has_pending():
                    await self._send(resp, [self._bookmark(r, info, initial_end=True)])
                    initial_end_sent = True
                    initial_pending = False
                    last_write = loop.time()
                    continue
                try:
                    ev = await watch.next_event(wait)
                except StopAsyncIteration:
                    break
                if ev is None:
                    if request.transport is None or request.transport.is_closing():
                        break
                    if bookmarks and loop.time() - last_write >= self.bookmark_interval and not initial_pending:
                        await self._send(resp, [self._bookmark(r, info)])
                        last_write = loop.time()
                    continue
                batch = [ev]
                while watch.has_pending() and len(batch) < 500:
                    nxt = await watch.next_event(0)
                    if nxt is None:
                        break
                    batch.append(nxt)
                if not watch.has_pending():
                    initial_pending = False
                lines = [self._watch_line(r, info, target, request, etype, obj, headers_sent) for etype, obj in batch]
                await self._send(resp, lines)
                last_write = loop.time()
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            watch.close()
            if task is not None:
                self._watches.discard(task)
        with contextlib.suppress(Exception):
            await resp.write_eof()
        return resp

    @staticmethod
    async def _send(resp: web.StreamResponse, lines: list[bytes]) -> None:
        await resp.write(b"".join(lines))

    def _bookmark(self, r: resources.Resource, info: RequestInfo, *, initial_end: bool = False) -> bytes:
        md: dict[str, Any] = {"resourceVersion": str(self.store.resource_version), "creationTimestamp": None}
        if initial_end:
            md["annotations"] = {"k8s.io/initial-events-end": "true"}
        obj = {"kind": r.kind, "apiVersion": r.api_version(info.version), "metadata": md}
        return orjson.dumps({"type": "BOOKMARK", "object": obj}) + b"\n"

    def _watch_line(self, r: resources.Resource, info: RequestInfo, target: negotiate.Target, request: web.Request,
                    etype: str, obj: dict, headers_sent: list[bool]) -> bytes:
        out = convert.event_to_events_v1(obj) if r.key == "events.events.k8s.io" else obj
        if target.as_ == "Table":
            include = request.query.get("includeObject", "Metadata")
            out = tables.table(r.storage_key if r.storage else r.key, [obj], include_object=include,
                               headers=not headers_sent[0],
                               list_meta={"resourceVersion": obj["metadata"].get("resourceVersion", "")},
                               external=lambda o: self._external(r, info.version, o) if r.key != "events.events.k8s.io"
                               else convert.event_to_events_v1(o), printer=self._printer(r))
            headers_sent[0] = True
        elif target.as_.startswith("PartialObjectMetadata"):
            out = tables.partial_metadata(obj)
        elif r.key != "events.events.k8s.io":
            out = self._external(r, info.version, obj)
        return orjson.dumps({"type": etype, "object": out}) + b"\n"

    async def _create(self, request: web.Request, r: resources.Resource, info: RequestInfo, ns: str | None,
                      user: UserInfo) -> web.Response:
        self._check_field_validation(request)
        body = await self._body(request)
        dry = self._dry_run(request)
        if r.key in resources.VIRTUAL:
            if not isinstance(body, dict):
                raise st.bad_request("the object provided is unrecognized (must be of type object)")
            if r.key == "tokenreviews.authentication.k8s.io":
                out = review_token(self.authenticator, body)
            elif r.key == "subjectaccessreviews.authorization.k8s.io":
                out = review_access(self.authorizer, body)
            elif r.key == "selfsubjectaccessreviews.authorization.k8s.io":
                out = review_self_access(self.authorizer, user, body)
            else:
                out = review_self(user, body)
            return _json(out, 201)
        if info.subresource == "token":
            return _json(request_token(self.store, self.issuer, info.namespace, info.name, body), 201)
        if info.subresource == "binding":
            return self._bind(info, body)
        if info.subresource == "eviction":
            self.store.delete("pods", ns, info.name)
            return _json({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}, 201)
        if info.subresource:
            raise st.method_not_allowed()
        body = self._check_identity(r, info, ns if r.namespaced else None, body, info.version)
        warnings = self._drop_unknown_fields(request, r, info.version, body)
        internal = self._internal(r, info.version, body)
        out = self.store.create(r.key, internal, dry_run=dry, owned=True)
        return _warn(self._render_one(request, r, info.version, out, 201), warnings)

    def _bind(self, info: RequestInfo, body: Any) -> web.Response:
        if not isinstance(body, dict):
            raise st.bad_request("the object provided is unrecognized (must be of type Binding)")
        node = (body.get("target") or {}).get("name", "")
        if not node:
            raise st.invalid("Binding", info.name, "", [("target.name", "Required value")])
        pod = self.store.get("pods", info.namespace, info.name)
        if (pod.get("spec") or {}).get("nodeName"):
            raise st.ApiError(409, "Conflict", f'Operation cannot be fulfilled on pods/binding "{info.name}": pod '
                              f"{info.name} is already assigned to node \"{pod['spec']['nodeName']}\"",
                              {"name": info.name, "kind": "pods/binding"})

        def bind(p: dict) -> None:
            p["spec"]["nodeName"] = node
            conds = p.setdefault("status", {}).setdefault("conditions", [])
            conds[:] = [c for c in conds if c.get("type") != "PodScheduled"]
            conds.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None,
                          "lastTransitionTime": pod["metadata"]["creationTimestamp"]})
        self.store.mutate("pods", info.namespace, info.name, bind)
        return _json({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}, 201)

    async def _update(self, request: web.Request, r: resources.Resource, info: RequestInfo,
                      ns: str | None) -> web.Response:
        self._check_field_validation(request)
        body = await self._body(request)
        dry = self._dry_run(request)
        if info.subresource == "scale":
            body = self._check_identity(r, info, ns, body, info.version, subresource_kind="Scale")
            warnings = self._drop_unknown_fields(request, r, info.version, body, "Scale", "autoscaling/v1")
            return _warn(_json(self.store.update(r.key, body, subresource="scale", dry_run=dry)), warnings)
        body = self._check_identity(r, info, ns, body, info.version)
        warnings = self._drop_unknown_fields(request, r, info.version, body)
        internal = self._internal(r, info.version, body)
        out = self.store.update(r.key, internal, subresource=info.subresource or None, dry_run=dry, owned=True)
        return _warn(self._render_one(request, r, info.version, out), warnings)

    async def _patch(self, request: web.Request, r: resources.Resource, info: RequestInfo,
                     ns: str | None) -> web.Response:
        self._check_field_validation(request)
        ct = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
        kind = PATCH_TYPES.get(ct)
        if kind is None:
            raise st.ApiError(415, "UnsupportedMediaType", f"the body of the request was in an unknown format - "
                              f"accepted media types include: {', '.join(PATCH_TYPES)}")
        raw = await request.read()
        if kind in ("merge", "strategic", "json"):
            try:
                orjson.loads(raw)
            except orjson.JSONDecodeError:
                raise st.bad_request("invalid JSON patch") from None  # every JSON patch type is checked first
        patch = negotiate.decode_body(raw, ct)
        dry = self._dry_run(request)
        if info.subresource == "scale":
            current = self.store.get_scale(r.key, ns, info.name)
            patched = apply_patch(kind, current, patch)
            if not isinstance(patched, dict):
                raise st.bad_request("the patch did not produce an object")
            patched.setdefault("metadata", {})["name"] = info.name
            if r.namespaced:
                patched["metadata"]["namespace"] = ns
            warnings = self._drop_unknown_fields(request, r, info.version, patched, "Scale", "autoscaling/v1")
            return _warn(_json(self.store.update(r.key, patched, subresource="scale", dry_run=dry)), warnings)
        try:
            stored = self.store.get(r.key, ns, info.name)
        except st.ApiError as err:
            if err.code == 404 and kind == "apply" and not info.subresource:
                if not request.query.get("fieldManager"):
                    raise st.bad_request("PATCH /apply requests require fieldManager to be set") from None
                body = self._check_identity(r, info, ns, patch, info.version)
                warnings = self._drop_unknown_fields(request, r, info.version, body)
                internal = self._internal(r, info.version, body)
                return _warn(self._render_one(request, r, info.version,
                                              self.store.create(r.key, internal, dry_run=dry, owned=True), 201),
                             warnings)
            raise
        current = self._external(r, info.version, stored)
        patched = apply_patch(kind, deep_copy(current), patch)
        if not isinstance(patched, dict):
            raise st.bad_request("the patch did not produce an object")
        md = patched.setdefault("metadata", {})
        if md.get("name") != info.name:
            raise st.bad_request(f"the name of the object ({md.get('name')}) does not match the name on the URL "
                                 f"({info.name})")
        warnings = self._drop_unknown_fields(request, r, info.version, patched)
        internal = self._internal(r, info.version, patched)
        out = self.store.update(r.key, internal, subresource=info.subresource or None, dry_run=dry, owned=True)
        return _warn(self._render_one(request, r, info.version, out), warnings)

    async def _delete_options(self, request: web.Request) -> dict:
        opts: dict[str, Any] = {}
        if request.body_exists:
            raw = await request.read()
            if raw.strip():
                body = negotiate.decode_body(raw, request.headers.get("Content-Type", "application/json"))
                if isinstance(body, dict):
                    opts = body
        q = request.query
        if q.get("gracePeriodSeconds") not in (None, ""):
            opts["gracePeriodSeconds"] = _int_param(q, "gracePeriodSeconds")
        if q.get("propagationPolicy"):
            opts["propagationPolicy"] = q["propagationPolicy"]
        if q.get("orphanDependents") in _TRUE:
            opts["propagationPolicy"] = "Orphan"
        if opts.get("orphanDependents") is True:
            opts["propagationPolicy"] = "Orphan"
        pp = opts.get("propagationPolicy")
        if pp not in (None, "Orphan", "Background", "Foreground"):
            raise st.invalid("DeleteOptions", "", "", [("propagationPolicy", f'Unsupported value: "{pp}": supported '
                                                        'values: "Foreground", "Background", "Orphan", "nil"')])
        return opts

    async def _delete(self, request: web.Request, r: resources.Resource, info: RequestInfo,
                      ns: str | None) -> web.Response:
        opts = await self._delete_options(request)
        dry = self._dry_run(request, opts) or bool(opts.get("dryRun"))
        out = self.store.delete(r.key, ns, info.name, grace_period_seconds=opts.get("gracePeriodSeconds"),
                                propagation=opts.get("propagationPolicy") or "Background",
                                preconditions=opts.get("preconditions"), dry_run=dry)
        if r.key in ("pods", "namespaces") or out["metadata"].get("deletionTimestamp"):
            return self._render_one(request, r, info.version, out)
        md = out["metadata"]
        details = {"name": md["name"], "kind": r.plural, "uid": md.get("uid", "")}
        if r.group:
            details["group"] = r.group
        return _json({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})

    async def _delete_collection(self, request: web.Request, r: resources.Resource, info: RequestInfo,
                                 ns: str | None) -> web.Response:
        opts = await self._delete_options(request)
        label, field = self._selectors(request, r, info)
        dry = self._dry_run(request, opts) or bool(opts.get("dryRun"))
        deleted = self.store.delete_collection(r.key, ns, label, field,
                                               grace_period_seconds=opts.get("gracePeriodSeconds"), dry_run=dry)
        items = [self._external(r, info.version, o) for o in deleted]
        return _json({"kind": r.list_kind or f"{r.kind}List", "apiVersion": r.api_version(info.version),
                      "metadata": {"resourceVersion": str(self.store.resource_version)}, "items": items})
