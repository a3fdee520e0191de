"""The aggregation layer (kube-aggregator) of the emulated kube-apiserver.

An APIService with ``spec.service`` owns ``/apis/<group>/<version>/...``: requests there are
proxied to the Service's backend the way kube-apiserver does it with
``--enable-aggregator-routing=true``:

* Service → its port ``spec.service.port`` (default 443) → the Endpoints of the same name → the
  first ready address with the port named like the Service port (or, failing that, numbered like
  its ``targetPort``) → ``https://<ip>:<port>``. Only loopback addresses are dialled.
* TLS: the backend's serving certificate is verified against ``spec.caBundle`` for the name
  ``<service>.<namespace>.svc`` (also sent as SNI) unless ``spec.insecureSkipTLSVerify``; the
  front-proxy client certificate is presented.
* Identity goes in ``X-Remote-User``, one ``X-Remote-Group`` per group, ``X-Remote-Uid`` and
  ``X-Remote-Extra-<key>`` with the key percent-encoded and the header name in Go's canonical
  form (``X-Remote-Extra-Authentication.kubernetes.io%2fcredential-Id``). The client's
  ``Authorization``, ``Impersonate-*``, ``X-Remote-*`` and hop-by-hop headers are not forwarded;
  ``X-Forwarded-For/Host/Proto/Uri`` and ``Audit-Id`` are added. Responses, including watch
  streams, are relayed as they arrive.
* While the APIService is not ``Available`` or its backend cannot be reached the client gets
  503 ``the server is currently unable to handle the request``.

Availability checks (kube-aggregator's remote availability controller) run every
``check_interval`` seconds and whenever an APIService, Service or Endpoints changes. They set the
``Available`` condition with kube-aggregator's reasons and messages: ``Passed`` ("all checks
passed"), ``ServiceNotFound``, ``ServicePortError``, ``EndpointsNotFound``, ``MissingEndpoints``,
``FailedDiscoveryCheck`` (5 parallel ``GET /apis/<group>/<version>`` as ``system:kube-aggregator``
in ``system:masters``, 5 s timeout, any 2xx/3xx passes), and ``Local`` for groups the emulator
serves itself (their APIServices, ``v1.``, ``v1.apps`` ..., are created at start).

Discovery for aggregated groups is answered here from the APIService objects (``/apis`` entries,
``/apis/<group>``) and from the backends (aggregated discovery v2, falling back to the legacy
``APIResourceList``); OpenAPI documents are fetched from the backends as ``system:aggregator``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import hashlib
import ipaddress
import re
import ssl
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import structlog
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from autoscaler.k8s import status as st
from autoscaler.k8s.timefmt import format_time
from sim.apiserver.auth import UserInfo
from sim.apiserver.resources import CRDS

log = structlog.get_logger(__name__)

APISERVICES = "apiservices.apiregistration.k8s.io"
AUTH_CONFIGMAP = ("kube-system", "extension-apiserver-authentication")
AGGREGATOR_USER = UserInfo("system:kube-aggregator", groups=("system:masters",))
OPENAPI_USER = UserInfo("system:aggregator", groups=("system:masters",))
DISCOVERY_V2_ACCEPT = (
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
)
HOP_BY_HOP = frozenset(h.lower() for h in (
    "Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization", "TE",
    "Trailer", "Transfer-Encoding", "Upgrade",
))
NOT_FORWARDED = frozenset(("authorization", "host", "content-length"))
_TOKEN_CHARS = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def relay_head(resp: aiohttp.ClientResponse) -> web.StreamResponse:
    """A response carrying the upstream status and its end-to-end headers (hop-by-hop headers, and
    those the upstream's ``Connection`` header lists, stay behind, as Go's reverse proxy drops them)."""
    out = web.StreamResponse(status=resp.status, reason=resp.reason)
    listed = {t.strip().lower() for v in resp.headers.getall("Connection", []) for t in v.split(",")}
    for k, v in resp.headers.items():
        if k.lower() not in HOP_BY_HOP and k.lower() not in listed:
            out.headers.add(k, v)
    return out


# kube-apiserver's priorities for its built-in group versions (pkg/controlplane/apiserver/aggregator.go).
LOCAL_PRIORITIES: dict[tuple[str, str], tuple[int, int]] = {
    ("", "v1"): (18000, 1),
    ("apiregistration.k8s.io", "v1"): (18000, 15),
    ("apps", "v1"): (17800, 15),
    ("events.k8s.io", "v1"): (17750, 15),
    ("authentication.k8s.io", "v1"): (17700, 15),
    ("authorization.k8s.io", "v1"): (17600, 15),
    ("autoscaling", "v2"): (17500, 30),
    ("autoscaling", "v1"): (17500, 15),
    ("batch", "v1"): (17400, 15),
    ("certificates.k8s.io", "v1"): (17300, 15),
    ("networking.k8s.io", "v1"): (17200, 15),
    ("policy", "v1"): (17100, 15),
    ("rbac.authorization.k8s.io", "v1"): (17000, 15),
    ("storage.k8s.io", "v1"): (16800, 15),
    ("admissionregistration.k8s.io", "v1"): (16700, 15),
    ("apiextensions.k8s.io", "v1"): (16700, 15),
    ("scheduling.k8s.io", "v1"): (16600, 15),
    ("coordination.k8s.io", "v1"): (16500, 15),
    ("node.k8s.io", "v1"): (16300, 15),
    ("discovery.k8s.io", "v1"): (16200, 15),
    ("flowcontrol.apiserver.k8s.io", "v1"): (16100, 21),
}


# ---------------------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------------------


def go_canonical_header(name: str) -> str:
    """Go's ``textproto.CanonicalMIMEHeaderKey``: ``x-remote-extra-foo`` → ``X-Remote-Extra-Foo``."""
    if any(c not in _TOKEN_CHARS for c in name.encode()):
        return name
    out, upper = [], True
    for ch in name:
        out.append(ch.upper() if upper else ch.lower())
        upper = ch == "-"
    return "".join(out)


def escape_extra_key(key: str) -> str:
    """kube's ``headerKeyEscape``: bytes that are not header token characters, and ``%``, as ``%XX``."""
    buf = []
    for b in key.encode():
        if b not in _TOKEN_CHARS or b == ord("%"):
            buf.append(f"%{b:02X}")
        else:
            buf.append(chr(b))
    return "".join(buf)


def identity_headers(user: UserInfo) -> list[tuple[str, str]]:
    """The X-Remote-* headers for ``user``, in the order client-go's auth proxy round tripper sets them."""
    out = [("X-Remote-User", user.username)]
    if user.uid:
        out.append(("X-Remote-Uid", user.uid))
    out.extend(("X-Remote-Group", g) for g in user.groups)
    for key, values in user.extra.items():
        name = go_canonical_header("X-Remote-Extra-" + escape_extra_key(key))
        out.extend((name, v) for v in values)
    return out


def _version_key(v: str) -> tuple[int, int, int, str]:
    """Kubernetes version ordering: GA > beta > alpha, higher numbers first, then others by name."""
    m = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", v)
    if not m:
        return (3, 0, 0, v)
    major = int(m.group(1))
    stage = {None: 0, "beta": 1, "alpha": 2}[m.group(2)]
    minor = int(m.group(3) or 0)
    return (stage, -major, -minor, v)


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def _available_condition(obj: Mapping[str, Any]) -> dict[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Available":
            return c
    return None


def is_available(obj: Mapping[str, Any]) -> bool:
    cond = _available_condition(obj)
    return bool(cond and cond.get("status") == "True")


def _is_local(obj: Mapping[str, Any]) -> bool:
    return not (obj.get("spec") or {}).get("service")


class EndpointError(Exception):
    """Why an APIService's backend cannot be located (reason, message as kube-aggregator words them)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Backend:
    url: str  # https://ip:port, no trailing slash
    server_name: str  # <service>.<namespace>.svc, for SNI and certificate verification


def _describe_error(url: str, exc: BaseException, host: str = "", port: int = 0) -> str:
    """A Go-flavoured description of a failed request (what kube-aggregator's messages contain)."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        cert_err = exc.certificate_error
        text = getattr(cert_err, "verify_message", "") or str(cert_err)
        if "unable to get local issuer" in text or "self-signed" in text or "self signed" in text:
            text = "x509: certificate signed by unknown authority"
        elif "hostname mismatch" in text or "doesn't match" in text or "IP address mismatch" in text:
            text = f"x509: certificate is not valid for the requested name ({text})"
        return f'Get "{url}": tls: failed to verify certificate: {text}'
    if isinstance(exc, aiohttp.ClientConnectorError):
        os_err = exc.os_error
        if isinstance(os_err, ConnectionRefusedError):
            return f'Get "{url}": dial tcp {host}:{port}: connect: connection refused'
        return f'Get "{url}": dial tcp {host}:{port}: {os_err.strerror or os_err}'
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return f'Get "{url}": context deadline exceeded (Client.Timeout exceeded while awaiting headers)'
    if isinstance(exc, aiohttp.ClientSSLError):
        return f'Get "{url}": remote error: tls: {exc}'
    return f'Get "{url}": {exc}'


# ---------------------------------------------------------------------------------------------------
# the aggregator
# ---------------------------------------------------------------------------------------------------


class Aggregator:
    """Routes aggregated group-versions to their backends and keeps APIService status current.

    ``local_group_versions`` are the (group, version) pairs the emulator serves itself (default:
    everything in :mod:`sim.apiserver.resources` plus core ``v1``); ``address_filter`` may map or
    refuse an endpoint ``(ip, port)`` (default: loopback only, anything else is refused).
    """

    def __init__(self, store: Any, pki: Any, *, check_interval: float = 5.0, check_timeout: float = 5.0,
                 parallel_checks: int = 5, local_group_versions: Iterable[tuple[str, str]] | None = None,
                 address_filter: Callable[[str, int], tuple[str, int]] | None = None,
                 clock: Callable[[], float] = time.time):
        self.store = store
        self.pki = pki
        self.check_interval = check_interval
        self.check_timeout = check_timeout
        self.parallel_checks = max(1, parallel_checks)
        self.clock = clock
        self._local_gvs = list(local_group_versions) if local_group_versions is not None else None
        self._address_filter = address_filter or _loopback_only
        self._apiservices: dict[str, dict[str, Any]] = {}
        self._by_gv: dict[tuple[str, str], str] = {}
        self._loaded = False
        self._sessions: dict[str, tuple[tuple[Any, ...], aiohttp.ClientSession]] = {}
        self._discovery: dict[str, dict[str, Any]] = {}  # APIService name -> version discovery entry
        self._openapi: dict[tuple[str, str], tuple[float, Any]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: list[Callable[[], None]] = []
        self._check_lock = asyncio.Lock()

    # -- APIService cache -------------------------------------------------------------------------

    def _load(self) -> None:
        if self._loaded:
            return
        items, _ = self.store.list(APISERVICES)
        for obj in items:
            self._remember(obj)
        self._loaded = True

    def _remember(self, obj: dict[str, Any]) -> None:
        name = _meta(obj).get("name", "")
        old = self._apiservices.get(name)
        if old is not None:
            spec = old.get("spec") or {}
            if self._by_gv.get((spec.get("group", ""), spec.get("version", ""))) == name:
                del self._by_gv[(spec.get("group", ""), spec.get("version", ""))]
        self._apiservices[name] = obj
        spec = obj.get("spec") or {}
        if not _is_local(obj):
            self._by_gv[(spec.get("group", ""), spec.get("version", ""))] = name

    def _forget(self, obj: dict[str, Any]) -> None:
        name = _meta(obj).get("name", "")
        old = self._apiservices.pop(name, None)
        if old is not None:
            spec = old.get("spec") or {}
            key = (spec.get("group", ""), spec.get("version", ""))
            if self._by_gv.get(key) == name:
                del self._by_gv[key]
        self._discovery.pop(name, None)
        entry = self._sessions.pop(name, None)
        if entry is not None:
            _close_later(entry[1])

    def _on_apiservice(self, event: str, obj: dict[str, Any], old: dict[str, Any] | None = None) -> None:
        if event == "DELETED":
            self._forget(obj)
            self._poke()
            return
        self._remember(obj)
        if old is None or _watched_part(old) != _watched_part(obj):
            self._poke()  # our own status writes change nothing here, so they don't loop

    def _on_backend_object(self, event: str, obj: dict[str, Any], old: dict[str, Any] | None = None) -> None:
        meta = _meta(obj)
        key = (meta.get("namespace", ""), meta.get("name", ""))
        for svc in list(self._apiservices.values()):
            ref = (svc.get("spec") or {}).get("service") or {}
            if (ref.get("namespace", ""), ref.get("name", "")) == key:
                self._poke()
                return

    def _poke(self) -> None:
        with contextlib.suppress(RuntimeError):
            self._wake.set()

    def apiservice_for(self, group: str, version: str) -> dict[str, Any] | None:
        """The non-local APIService owning group/version, if any."""
        self._load()
        name = self._by_gv.get((group, version))
        return self._apiservices.get(name) if name else None

    def route(self, group: str, version: str) -> bool:
        """True when a non-local APIService owns ``/apis/<group>/<version>``."""
        return self.apiservice_for(group, version) is not None

    def owns_group(self, group: str) -> bool:
        """True when some version of ``group`` is served through an APIService with a service."""
        self._load()
        return any(g == group for g, _ in self._by_gv)

    # -- lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Creates the local APIServices, publishes the authentication ConfigMap and starts checking."""
        self._wake = asyncio.Event()
        self._unsubscribe.append(self.store.subscribe(APISERVICES, self._on_apiservice))
        self._unsubscribe.append(self.store.subscribe("services", self._on_backend_object))
        self._unsubscribe.append(self.store.subscribe("endpoints", self._on_backend_object))
        self._unsubscribe.append(self.store.subscribe(CRDS, self.sync_crd_apiservices))
        self._loaded = False
        self._load()
        self.ensure_local_apiservices()
        self.publish_authentication_configmap()
        await self.check_all()
        self._task = asyncio.create_task(self._loop(), name="apiservice-availability")

    async def stop(self) -> None:
        for unsub in self._unsubscribe:
            with contextlib.suppress(Exception):
                unsub()
        self._unsubscribe.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        sessions, self._sessions = self._sessions, {}
        for _, session in sessions.values():
            await session.close()

    async def _loop(self) -> None:
        while True:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation that
            # races its timeout, and stop() would then wait for this loop forever
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.check_interval):
                    await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(0.02)  # coalesce bursts of changes
            self._wake.clear()
            try:
                await self.check_all()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("apiservice availability pass failed")

    # -- local APIServices and the authentication ConfigMap ------------------------------------------

    def _default_local_gvs(self) -> list[tuple[str, str]]:
        gvs = [("", "v1")]
        for group, versions in self.store.catalogue.groups():
            if any(r.custom for r in self.store.catalogue.all if r.group == group):
                continue  # CRD groups get theirs from the CRD registration (see sync_crd_apiservices)
            gvs.extend((group, v) for v in versions)
        return gvs

    def ensure_local_apiservices(self) -> None:
        """Creates ``v1.``, ``v1.apps``, ... (``service`` unset, ``Available=True/Local``) if missing."""
        gvs = self._local_gvs if self._local_gvs is not None else self._default_local_gvs()
        for group, version in gvs:
            self._ensure_local(group, version, LOCAL_PRIORITIES.get((group, version), (15000, 15)), "onstart")
        self.sync_crd_apiservices()

    def _ensure_local(self, group: str, version: str, priorities: tuple[int, int], managed: str) -> None:
        name = f"{version}.{group}"
        obj = self.store.try_get(APISERVICES, "", name)
        if obj is None:
            gp, vp = priorities
            obj = {
                "apiVersion": "apiregistration.k8s.io/v1",
                "kind": "APIService",
                "metadata": {"name": name, "labels": {"kube-aggregator.kubernetes.io/automanaged": managed}},
                "spec": {"group": group, "version": version, "groupPriorityMinimum": gp, "versionPriority": vp},
            }
            try:
                obj = self.store.create(APISERVICES, obj)
            except st.ApiError as exc:
                if exc.code != 409:
                    raise
                obj = self.store.try_get(APISERVICES, "", name) or obj
        self._remember(obj)
        if _is_local(obj):
            self._set_condition(name, "True", "Local", "Local APIServices are always available")

    def sync_crd_apiservices(self, *_: Any) -> None:
        """kube-apiserver's CRD registration controller: a local APIService (``automanaged: "true"``,
        priorities 1000/100) per group version some CRD serves, deleted when none serves it any more."""
        catalogue = self.store.catalogue
        wanted = {(r.group, v) for r in catalogue.all if r.custom for v in r.versions}
        for group, version in sorted(wanted):
            self._ensure_local(group, version, (1000, 100), "true")
        for obj in list(self._apiservices.values()):
            spec = obj.get("spec") or {}
            managed = (_meta(obj).get("labels") or {}).get("kube-aggregator.kubernetes.io/automanaged")
            if managed == "true" and _is_local(obj) and (spec.get("group"), spec.get("version")) not in wanted:
                with contextlib.suppress(st.ApiError):
                    self.store.delete(APISERVICES, "", _meta(obj).get("name", ""))

    def publish_authentication_configmap(self) -> None:
        """Writes kube-system/extension-apiserver-authentication as kube-apiserver publishes it."""
        ns, name = AUTH_CONFIGMAP
        data = {
            "client-ca-file": self.pki.ca.cert_pem.decode(),
            "requestheader-allowed-names": '["front-proxy-client"]',
            "requestheader-client-ca-file": self.pki.front_proxy_ca.cert_pem.decode(),
            "requestheader-extra-headers-prefix": '["X-Remote-Extra-"]',
            "requestheader-group-headers": '["X-Remote-Group"]',
            "requestheader-uid-headers": '["X-Remote-Uid"]',
            "requestheader-username-headers": '["X-Remote-User"]',
        }
        existing = self.store.try_get("configmaps", ns, name)
        if existing is None:
            obj = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}, "data": data}
            try:
                self.store.create("configmaps", obj)
                return
            except st.ApiError as exc:
                if exc.code != 409:
                    raise
                existing = self.store.try_get("configmaps", ns, name)
        if existing is not None and existing.get("data") != data:
            updated = copy.deepcopy(existing)
            updated["data"] = data
            self.store.update("configmaps", updated)

    # -- locating backends -----------------------------------------------------------------------------

    def resolve(self, apiservice: Mapping[str, Any]) -> Backend:
        """Where an APIService's traffic goes; raises :class:`EndpointError` like the aggregator."""
        try:
            return self._resolve(apiservice)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:  # malformed objects
            name = _meta(apiservice).get("name", "")
            raise EndpointError("ServicePortError", f"cannot resolve the service of APIService {name}: {exc!r}") from exc

    def _resolve(self, apiservice: Mapping[str, Any]) -> Backend:
        ref = (apiservice.get("spec") or {}).get("service") or {}
        ns, name = ref.get("namespace", ""), ref.get("name", "")
        port = int(ref.get("port") or 443)
        svc = self.store.try_get("services", ns, name)
        if svc is None:
            raise EndpointError("ServiceNotFound", f'service/{name} in "{ns}" is not present')
        svc_spec = svc.get("spec") or {}
        server_name = f"{name}.{ns}.svc"
        if svc_spec.get("type") == "ExternalName":
            host, p = self._address_filter(svc_spec.get("externalName", ""), port)
            return Backend(f"https://{_host(host)}:{p}", server_name)
        svc_port = next((p for p in svc_spec.get("ports") or [] if int(p.get("port", 0)) == port), None)
        if svc_port is None:
            raise EndpointError("ServicePortError", f'service/{name} in "{ns}" is not listening on port {port}')
        ep = self.store.try_get("endpoints", ns, name)
        if ep is None:
            raise EndpointError("EndpointsNotFound", f'cannot find endpoints for service/{name} in "{ns}"')
        port_name = svc_port.get("name", "") or ""
        target = svc_port.get("targetPort", port)
        found = self._pick_endpoint(ep, port_name, target)
        if found is None:
            raise EndpointError("MissingEndpoints",
                                f'endpoints for service/{name} in "{ns}" have no addresses with port name "{port_name}"')
        ip, p = self._address_filter(*found)
        return Backend(f"https://{_host(ip)}:{p}", server_name)

    @staticmethod
    def _pick_endpoint(ep: Mapping[str, Any], port_name: str, target: Any) -> tuple[str, int] | None:
        by_number: tuple[str, int] | None = None
        for subset in ep.get("subsets") or []:
            addresses = subset.get("addresses") or []
            if not addresses:
                continue
            ip = addresses[0].get("ip", "")
            for p in subset.get("ports") or []:
                if (p.get("name", "") or "") == port_name:
                    return ip, int(p["port"])
                if by_number is None and isinstance(target, int) and int(p.get("port", 0)) == target:
                    by_number = (ip, int(p["port"]))
        return by_number

    # -- TLS sessions ------------------------------------------------------------------------------------

    def _ssl_context(self, spec: Mapping[str, Any]) -> ssl.SSLContext:
        ca_bundle = spec.get("caBundle") or ""
        if spec.get("insecureSkipTLSVerify"):
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif ca_bundle:
            try:
                pem = base64.b64decode(ca_bundle).decode()
            except (ValueError, UnicodeDecodeError) as exc:
                raise EndpointError("FailedDiscoveryCheck", f"spec.caBundle is not valid base64 PEM: {exc}") from exc
            try:
                ctx = ssl.create_default_context(cadata=pem)
            except (ssl.SSLError, ValueError) as exc:
                raise EndpointError("FailedDiscoveryCheck", f"spec.caBundle holds no usable certificate: {exc}") from exc
        else:
            ctx = ssl.create_default_context()
        client = self.pki.front_proxy_client
        load_client_cert(ctx, client.cert_pem, client.key_pem, getattr(self.pki, "directory", None))
        return ctx

    def _session(self, apiservice: Mapping[str, Any]) -> aiohttp.ClientSession:
        name = _meta(apiservice).get("name", "")
        spec = apiservice.get("spec") or {}
        key = (spec.get("caBundle") or "", bool(spec.get("insecureSkipTLSVerify")))
        entry = self._sessions.get(name)
        if entry is not None:
            if entry[0] == key and not entry[1].closed:
                return entry[1]
            _close_later(entry[1])
        connector = aiohttp.TCPConnector(ssl=self._ssl_context(spec), limit=0, keepalive_timeout=60)
        session = aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                        timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.check_timeout))
        self._sessions[name] = (key, session)
        return session

    # -- proxying -----------------------------------------------------------------------------------------

    def forward_headers(self, request: web.Request, user: UserInfo) -> CIMultiDict[str]:
        """The headers sent to the backend for a client request made by ``user``."""
        connection_listed = {t.strip().lower() for v in request.headers.getall("Connection", []) for t in v.split(",")}
        out: CIMultiDict[str] = CIMultiDict()
        for k, v in request.headers.items():
            lk = k.lower()
            if (lk in HOP_BY_HOP or lk in connection_listed or lk in NOT_FORWARDED
                    or lk.startswith("impersonate-") or lk.startswith("x-remote-")):
                continue
            out.add(k, v)
        for k, v in identity_headers(user):
            out.add(k, v)
        remote = request.remote or ""
        prior = request.headers.get("X-Forwarded-For")
        if remote:
            out["X-Forwarded-For"] = f"{prior}, {remote}" if prior else remote
        out["X-Forwarded-Host"] = request.host
        out["X-Forwarded-Proto"] = request.scheme
        out["X-Forwarded-Uri"] = request.raw_path
        if "Audit-Id" not in out:
            out["Audit-Id"] = str(uuid.uuid4())
        return out

    async def proxy(self, request: web.Request, user: UserInfo) -> web.StreamResponse:
        """Relays an ``/apis/<group>/<version>/...`` request to its backend (503 when it can't)."""
        parts = request.path.split("/")
        if len(parts) < 4 or parts[1] != "apis":
            return _status_response(st.not_found("", request.path))
        apiservice = self.apiservice_for(parts[2], parts[3])
        if apiservice is None:
            return _status_response(st.ApiError(404, "NotFound", "the server could not find the requested resource",
                                                {}))
        if not is_available(apiservice):
            return _status_response(st.service_unavailable())
        try:
            backend = self.resolve(apiservice)
            session = self._session(apiservice)
        except EndpointError as exc:
            log.info("aggregated backend unavailable", apiservice=_meta(apiservice).get("name"), reason=exc.reason,
                     message=exc.message)
            return _status_response(st.service_unavailable())
        headers = self.forward_headers(request, user)
        body = await request.read() if request.body_exists else None
        url = URL(backend.url + request.raw_path, encoded=True)
        skip = () if "Accept-Encoding" in request.headers else ("Accept-Encoding",)
        out: web.StreamResponse | None = None
        try:
            async with session.request(request.method, url, headers=headers, data=body, allow_redirects=False,
                                       server_hostname=backend.server_name, skip_auto_headers=skip) as resp:
                out = relay_head(resp)
                await out.prepare(request)
                async for chunk in resp.content.iter_any():
                    await out.write(chunk)
                await out.write_eof()
                return out
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            if out is not None and out.prepared:
                log.info("aggregated response interrupted", url=str(url), error=str(exc))
                return out  # headers are gone; the client sees a truncated stream, as with Go's proxy
            log.info("aggregated backend unreachable", url=str(url), error=str(exc))
            self._poke()  # re-check availability now rather than at the next interval
            return _status_response(st.service_unavailable())

    # -- availability -------------------------------------------------------------------------------------

    async def check_all(self) -> None:
        """One pass of the availability controller over every APIService."""
        async with self._check_lock:
            self._load()
            names = list(self._apiservices)
            remote = [n for n in names if not _is_local(self._apiservices[n])]
            for n in names:
                if _is_local(self._apiservices[n]):
                    self._set_condition(n, "True", "Local", "Local APIServices are always available")
            results = await asyncio.gather(*(self.check(self._apiservices[n]) for n in remote),
                                           return_exceptions=True)
            for n, res in zip(remote, results, strict=True):
                if isinstance(res, BaseException):
                    log.warning("availability check crashed", apiservice=n, error=repr(res))
                    continue
                status, reason, message = res
                self._set_condition(n, status, reason, message)
                if status == "True" and n in self._apiservices:
                    await self._refresh_discovery(self._apiservices[n])

    async def check(self, apiservice: Mapping[str, Any]) -> tuple[str, str, str]:
        """(status, reason, message) of the Available condition for one non-local APIService."""
        spec = apiservice.get("spec") or {}
        try:
            backend = self.resolve(apiservice)
            session = self._session(apiservice)
        except EndpointError as exc:
            return "False", exc.reason, exc.message
        path = f"/apis/{spec.get('group', '')}/{spec.get('version', '')}"
        url = backend.url + path
        host, _, port = backend.url.removeprefix("https://").rpartition(":")
        headers = CIMultiDict(identity_headers(AGGREGATOR_USER))
        timeout = aiohttp.ClientTimeout(total=self.check_timeout)

        async def one() -> str | None:
            try:
                async with session.get(url, headers=headers, timeout=timeout, allow_redirects=False,
                                       server_hostname=backend.server_name) as resp:
                    await resp.read()
                    if 200 <= resp.status < 400:
                        return None
                    return f"bad status from {url}: {resp.status}"
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                return _describe_error(url, exc, host.strip("[]"), int(port or 0))

        errors = await asyncio.gather(*(one() for _ in range(self.parallel_checks)))
        if any(e is None for e in errors):
            return "True", "Passed", "all checks passed"
        return "False", "FailedDiscoveryCheck", f"failing or missing response from {url}: {errors[-1]}"

    def _set_condition(self, name: str, status: str, reason: str, message: str) -> None:
        obj = self._apiservices.get(name) or self.store.try_get(APISERVICES, "", name)
        if obj is None:
            return
        cur = _available_condition(obj)
        if cur and (cur.get("status"), cur.get("reason"), cur.get("message")) == (status, reason, message):
            return
        now = format_time(self.clock())

        def apply(o: dict[str, Any]) -> None:  # runs on the store's private copy
            stat = o.get("status")
            if not isinstance(stat, dict):
                stat = o["status"] = {}
            prev = _available_condition(o)
            ltt = prev.get("lastTransitionTime") if prev and prev.get("status") == status else now
            conds = [c for c in stat.get("conditions") or [] if c.get("type") != "Available"]
            conds.insert(0, {"type": "Available", "status": status, "lastTransitionTime": ltt,
                             "reason": reason, "message": message})
            stat["conditions"] = conds

        try:
            updated = self.store.mutate(APISERVICES, "", name, apply, subresource="status")
        except st.ApiError as exc:
            if exc.code == 404:
                self._forget(obj)
                return
            raise
        if isinstance(updated, dict):
            self._remember(updated)
        if reason != "Local" and (cur is None or cur.get("status") != status):
            log.info("apiservice availability", apiservice=name, available=status, reason=reason, message=message)

    # -- discovery ------------------------------------------------------------------------------------------

    def _sorted_remote(self) -> list[dict[str, Any]]:
        self._load()
        items = [o for o in self._apiservices.values() if not _is_local(o)]

        def key(o: Mapping[str, Any]) -> tuple[int, str, tuple[int, int, int, str]]:
            spec = o.get("spec") or {}
            return (-int(spec.get("groupPriorityMinimum") or 0), spec.get("group", ""),
                    (-int(spec.get("versionPriority") or 0), *_version_key(spec.get("version", ""))[:3]))

        return sorted(items, key=key)

    def _group_versions(self) -> dict[str, list[Mapping[str, Any]]]:
        out: dict[str, list[Mapping[str, Any]]] = {}
        for obj in self._sorted_remote():
            out.setdefault((obj.get("spec") or {}).get("group", ""), []).append(obj)
        return out

    async def discovery_groups(self) -> list[dict[str, Any]]:
        """APIGroup entries (for ``/apis``) of the groups served through APIServices with a service."""
        return [self._api_group(g, objs) for g, objs in self._group_versions().items()]

    def api_group(self, group: str) -> dict[str, Any] | None:
        """The ``/apis/<group>`` APIGroup document for an aggregated group, or None."""
        objs = self._group_versions().get(group)
        if not objs:
            return None
        return {"kind": "APIGroup", "apiVersion": "v1", **self._api_group(group, objs)}

    @staticmethod
    def _api_group(group: str, objs: list[Mapping[str, Any]]) -> dict[str, Any]:
        versions = [{"groupVersion": f"{group}/{(o.get('spec') or {}).get('version', '')}",
                     "version": (o.get("spec") or {}).get("version", "")} for o in objs]
        return {"name": group, "versions": versions, "preferredVersion": versions[0]}

    async def aggregated_discovery(self) -> list[dict[str, Any]]:
        """APIGroupDiscovery entries (apidiscovery.k8s.io/v2) for aggregated groups, as fetched from
        their backends; a version whose backend is unavailable is listed as ``Stale`` (with the
        resources last fetched, if any), as kube-aggregator's discovery manager does."""
        out = []
        for group, objs in self._group_versions().items():
            versions = []
            for o in objs:
                name = _meta(o).get("name", "")
                version = (o.get("spec") or {}).get("version", "")
                entry = dict(self._discovery.get(name) or {"version": version, "resources": []})
                fresh = is_available(o) and name in self._discovery
                entry["freshness"] = "Current" if fresh else "Stale"  # kubectl: "stale GroupVersion discovery"
                versions.append(entry)
            if versions:
                out.append({"metadata": {"name": group, "creationTimestamp": None}, "versions": versions})
        return out

    async def _fetch(self, apiservice: Mapping[str, Any], path: str, accept: str, user: UserInfo,
                     ) -> tuple[int, str, bytes]:
        backend = self.resolve(apiservice)
        session = self._session(apiservice)
        headers = CIMultiDict(identity_headers(user))
        headers["Accept"] = accept
        async with session.get(backend.url + path, headers=headers, allow_redirects=False,
                               timeout=aiohttp.ClientTimeout(total=self.check_timeout),
                               server_hostname=backend.server_name) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), await resp.read()

    async def _refresh_discovery(self, apiservice: Mapping[str, Any]) -> None:
        """Fetches one group-version's resources: aggregated v2 ``/apis`` first, legacy as fallback."""
        spec = apiservice.get("spec") or {}
        group, version = spec.get("group", ""), spec.get("version", "")
        name = _meta(apiservice).get("name", "")
        try:
            code, ctype, body = await self._fetch(apiservice, "/apis", DISCOVERY_V2_ACCEPT, AGGREGATOR_USER)
            if code == 200 and "apidiscovery.k8s.io" in ctype:
                for item in orjson.loads(body).get("items") or []:
                    if _meta(item).get("name") != group:
                        continue
                    for v in item.get("versions") or []:
                        if v.get("version") == version:
                            self._discovery[name] = {k: val for k, val in v.items() if k != "freshness"}
                            return
            code, _, body = await self._fetch(apiservice, f"/apis/{group}/{version}", "application/json",
                                              AGGREGATOR_USER)
            if code == 200:
                self._discovery[name] = legacy_to_discovery(version, orjson.loads(body))
        except (TimeoutError, EndpointError, aiohttp.ClientError, OSError, ValueError) as exc:
            log.info("aggregated discovery fetch failed", apiservice=name, error=str(exc))

    # -- OpenAPI ----------------------------------------------------------------------------------------------

    async def _openapi_fetch(self, apiservice: Mapping[str, Any], path: str, ttl: float = 30.0) -> Any:
        key = (_meta(apiservice).get("name", ""), path)
        hit = self._openapi.get(key)
        now = time.monotonic()
        if hit is not None and now - hit[0] < ttl:
            return hit[1]
        try:
            code, _, body = await self._fetch(apiservice, path, "application/json", OPENAPI_USER)
            doc = orjson.loads(body) if code == 200 else None  # 404 and friends: spec absent
        except (TimeoutError, EndpointError, aiohttp.ClientError, OSError, ValueError) as exc:
            log.info("aggregated openapi fetch failed", path=path, error=str(exc))
            doc = hit[1] if hit else None
        self._openapi[key] = (now, doc)
        return doc

    async def openapi_v2_documents(self) -> list[dict[str, Any]]:
        """The backends' ``/openapi/v2`` documents (to merge into the emulator's own)."""
        out, seen = [], set()
        for obj in self._sorted_remote():
            ref = orjson.dumps((obj.get("spec") or {}).get("service"))
            if ref in seen or not is_available(obj):
                continue
            seen.add(ref)
            doc = await self._openapi_fetch(obj, "/openapi/v2")
            if isinstance(doc, dict):
                out.append(doc)
        return out

    async def openapi_v3_paths(self) -> dict[str, dict[str, str]]:
        """``/openapi/v3`` index entries (``apis/<group>/<version>`` → serverRelativeURL) of
        aggregated group-versions whose backends publish them."""
        out: dict[str, dict[str, str]] = {}
        for obj in self._sorted_remote():
            if not is_available(obj):
                continue
            spec = obj.get("spec") or {}
            key = f"apis/{spec.get('group', '')}/{spec.get('version', '')}"
            index = await self._openapi_fetch(obj, "/openapi/v3")
            if isinstance(index, dict) and key in (index.get("paths") or {}):
                doc = await self._openapi_fetch(obj, "/" + "openapi/v3/" + key)
                if doc is not None:
                    digest = hashlib.sha512(orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)).hexdigest().upper()
                    out[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={digest[:128]}"}
        return out

    async def openapi_v3(self, group: str, version: str) -> dict[str, Any] | None:
        """The backend's ``/openapi/v3/apis/<group>/<version>`` document, or None."""
        obj = self.apiservice_for(group, version)
        if obj is None or not is_available(obj):
            return None
        doc = await self._openapi_fetch(obj, f"/openapi/v3/apis/{group}/{version}")
        return doc if isinstance(doc, dict) else None


# ---------------------------------------------------------------------------------------------------


def legacy_to_discovery(version: str, resource_list: Mapping[str, Any]) -> dict[str, Any]:
    """An APIVersionDiscovery entry built from a legacy ``APIResourceList`` (kube-aggregator's fallback)."""
    top: dict[str, dict[str, Any]] = {}
    subs: list[tuple[str, str, Mapping[str, Any]]] = []
    for r in resource_list.get("resources") or []:
        name = r.get("name", "")
        if "/" in name:
            parent, sub = name.split("/", 1)
            subs.append((parent, sub, r))
            continue
        entry: dict[str, Any] = {
            "resource": name,
            "responseKind": {"group": r.get("group", ""), "version": r.get("version", ""), "kind": r.get("kind", "")},
            "scope": "Namespaced" if r.get("namespaced") else "Cluster",
            "singularResource": r.get("singularName", ""),
            "verbs": list(r.get("verbs") or []),
        }
        if r.get("shortNames"):
            entry["shortNames"] = list(r["shortNames"])
        if r.get("categories"):
            entry["categories"] = list(r["categories"])
        top[name] = entry
    for parent, sub, r in subs:
        if parent in top:
            top[parent].setdefault("subresources", []).append({
                "subresource": sub,
                "responseKind": {"group": r.get("group", ""), "version": r.get("version", ""), "kind": r.get("kind", "")},
                "verbs": list(r.get("verbs") or []),
            })
    return {"version": version, "resources": list(top.values())}


def _watched_part(obj: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    meta = _meta(obj)
    return obj.get("spec"), meta.get("labels"), meta.get("annotations")


def _loopback_only(host: str, port: int) -> tuple[str, int]:
    try:
        if ipaddress.ip_address(host).is_loopback:
            return host, port
    except ValueError:
        if host == "localhost":
            return host, port
    raise EndpointError("MissingEndpoints", f"endpoint address {host}:{port} is not a loopback address; "
                                            "the emulated cluster only dials loopback addresses")


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _status_response(err: st.ApiError) -> web.Response:
    return web.Response(status=err.code, body=orjson.dumps(err.status()), content_type="application/json")


def _close_later(session: aiohttp.ClientSession) -> None:
    with contextlib.suppress(RuntimeError):
        asyncio.get_running_loop().create_task(session.close())


def load_client_cert(ctx: ssl.SSLContext, cert_pem: bytes, key_pem: bytes, directory: Any) -> None:
    """``load_cert_chain`` wants files: use the PKI's own files when they hold this pair, else a
    private temporary directory."""
    import os
    import tempfile
    from pathlib import Path

    if directory is not None:
        crt, key = Path(directory) / "front-proxy-client.crt", Path(directory) / "front-proxy-client.key"
        if crt.is_file() and key.is_file() and crt.read_bytes() == cert_pem:
            ctx.load_cert_chain(crt, key)
            return
    with tempfile.TemporaryDirectory(prefix="front-proxy-") as tmp:
        crt, key = os.path.join(tmp, "c.crt"), os.path.join(tmp, "c.key")
        with open(crt, "wb") as f:
            f.write(cert_pem)
        fd = os.open(key, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key_pem)
        ctx.load_cert_chain(crt, key)
