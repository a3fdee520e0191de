"""The node proxy subresource: ``/api/v1/nodes/{name}[:port]/proxy/{path}`` relayed to the kubelet,
as kube-apiserver does it (``pkg/registry/core/node/rest/proxy.go`` and ``node.ResourceLocation``).

* The id is ``name``, ``name:port`` or ``scheme:name:port`` (scheme ``http``/``https``); anything
  else is ``400 invalid node request "<id>"``. An unknown node is ``404 nodes "<name>" not found``.
* Without a port, or with the node's kubelet port, the request goes to the kubelet: the node's
  preferred address (kubeadm's ``--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname``)
  and ``status.daemonEndpoints.kubeletEndpoint.Port`` (10250 when unset), over HTTPS, verifying
  the kubelet's serving certificate against the cluster CA (``--kubelet-certificate-authority``)
  and presenting ``apiserver-kubelet-client`` (``--kubelet-client-certificate``). Any other port is
  dialled with the requested scheme (``http`` by default) and no client certificate, without
  verifying a serving certificate, as kube-apiserver's proxy transport does.
* The path after ``proxy`` and the raw query string are forwarded; ``.../proxy`` with nothing
  after it is redirected (301) to ``.../proxy/``. The caller's ``Authorization`` and
  ``Impersonate-*`` headers are not forwarded: the kubelet sees the API server's identity.
* The kubelet's status, headers and body come back as they are; when it cannot be reached the
  caller gets ``503 ServiceUnavailable`` ``error trying to reach service: <Go-style dial error>``.

Deliberate difference: kube-apiserver refuses loopback node addresses (``address not allowed``);
the emulated kubelets all listen on 127.0.0.1, so here it is the other way round: only loopback
addresses are dialled, as in the aggregation layer.
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

import aiohttp
import structlog
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from autoscaler.k8s import status as st

from .aggregator_proxy import HOP_BY_HOP, NOT_FORWARDED, load_client_cert, relay_head
from .requestinfo import RequestInfo

log = structlog.get_logger(__name__)

#: kubeadm's --kubelet-preferred-address-types (kube-apiserver's own default puts Hostname first)
PREFERRED_ADDRESS_TYPES = ("InternalIP", "ExternalIP", "Hostname")
DEFAULT_KUBELET_PORT = 10250
KUBELET_TIMEOUT = 5.0  # --kubelet-timeout: here the dial timeout (responses may stream, e.g. logs)
_SCHEMES = ("", "http", "https")
_IDEMPOTENT = frozenset(("GET", "HEAD", "OPTIONS", "PUT", "DELETE"))
_UNKNOWN_AUTHORITY = (2, 18, 19, 20, 21)  # OpenSSL's "no trusted issuer" verify codes
_PATH_SAFE = "/:@!$&'()*+,;=-._~"  # Go's url.URL.EscapedPath leaves these as they are


@dataclass(frozen=True)
class Target:
    """Where one proxied request goes; ``kubelet`` means the kubelet transport (client cert, CA)."""

    scheme: str
    host: str
    port: int
    kubelet: bool

    def url(self, path: str, query: str) -> URL:
        return URL.build(scheme=self.scheme, host=self.host, port=self.port, path=quote(path, safe=_PATH_SAFE),
                         query_string=query, encoded=True)


def is_node_proxy(info: RequestInfo) -> bool:
    """``/api/v1/nodes/{id}/proxy[/...]``: served here rather than by the REST handlers."""
    return (info.resource_request and info.api_prefix == "api" and info.version == "v1" and not info.namespace
            and info.resource == "nodes" and bool(info.name) and info.subresource == "proxy")


def split_scheme_name_port(node_id: str) -> tuple[str, str, str]:
    """(scheme, name, port) of a node id, as apimachinery's ``SplitSchemeNamePort``."""
    parts = node_id.split(":")
    if len(parts) == 1:
        scheme, name, port = "", parts[0], ""
    elif len(parts) == 2:
        scheme, (name, port) = "", parts
    elif len(parts) == 3:
        scheme, name, port = parts
    else:
        raise st.bad_request(f'invalid node request "{node_id}"')
    if not name or scheme not in _SCHEMES:
        raise st.bad_request(f'invalid node request "{node_id}"')
    return scheme, name, port


def preferred_address(node: dict, types: tuple[str, ...]) -> str:
    """The first address of the first preferred type (``nodeutil.GetPreferredNodeAddress``)."""
    addresses = (node.get("status") or {}).get("addresses") or []
    for kind in types:
        for a in addresses:
            if a.get("type") == kind and a.get("address"):
                return a["address"]
    known = " ".join(f"{{{a.get('type', '')} {a.get('address', '')}}}" for a in addresses)
    raise st.ApiError(500, "", f"no preferred addresses found; known addresses: [{known}]")


def kubelet_port(node: dict) -> int:
    port = (((node.get("status") or {}).get("daemonEndpoints") or {}).get("kubeletEndpoint") or {}).get("Port")
    return port if isinstance(port, int) and port > 0 else DEFAULT_KUBELET_PORT


def check_dialable(host: str) -> None:
    """Only loopback addresses are dialled (see the module docstring)."""
    try:
        ok = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = False
    if not ok:
        raise st.bad_request("address not allowed")


def upstream_path(request: web.Request) -> str:
    """The path after ``.../proxy``, decoded then split like Go's ``URL.Path`` (``%2F`` separates),
    with a leading slash when not empty and the request's trailing slash kept."""
    parts = unquote(request.rel_url.raw_path).strip("/").split("/")
    path = "/".join(parts[5:])  # api, v1, nodes, {id}, proxy
    if path:
        path = "/" + path
    if request.rel_url.raw_path.endswith("/") and not path.endswith("/"):
        path += "/"
    return path


def dial_error(exc: BaseException, target: Target) -> str:
    """The Go net/http error kube-apiserver would report for a failed round trip to ``target``."""
    addr = f"{target.host}:{target.port}"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        cert_error = exc.certificate_error
        code = getattr(cert_error, "verify_code", 0)
        reason = "certificate signed by unknown authority" if code in _UNKNOWN_AUTHORITY else \
            getattr(cert_error, "verify_message", "") or str(cert_error)
        return f"tls: failed to verify certificate: x509: {reason}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        os_error = exc.os_error
        if isinstance(os_error, ConnectionRefusedError):
            return f"dial tcp {addr}: connect: connection refused"
        if isinstance(os_error, ssl.SSLError):
            return f"remote error: tls: {os_error.reason or os_error}".lower()
        return f"dial tcp {addr}: connect: {os_error.strerror or os_error}"
    if isinstance(exc, (TimeoutError, aiohttp.ConnectionTimeoutError)):
        return f"dial tcp {addr}: i/o timeout"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "EOF"
    return str(exc) or type(exc).__name__


class NodeProxy:
    """Relays node proxy requests over one keep-alive client session (opened by :meth:`start`)."""

    def __init__(self, store: Any, pki: Any, *, preferred_address_types: tuple[str, ...] = PREFERRED_ADDRESS_TYPES,
                 connect_timeout: float = KUBELET_TIMEOUT):
        self.store = store
        self.pki = pki
        self.preferred_address_types = tuple(preferred_address_types)
        self.connect_timeout = connect_timeout
        self.session: aiohttp.ClientSession | None = None
        self._kubelet_ssl = self._kubelet_context()
        self._insecure_ssl = ssl.create_default_context()
        self._insecure_ssl.check_hostname = False
        self._insecure_ssl.verify_mode = ssl.CERT_NONE

    def _kubelet_context(self) -> ssl.SSLContext:
        """Verifies kubelets against the cluster CA and presents the kubelet-client certificate."""
        ctx = ssl.create_default_context(cadata=self.pki.ca.cert_pem.decode())
        pair = getattr(self.pki, "apiserver_kubelet_client", None)
        if pair is None:  # a PKI from elsewhere: issue the conventional identity now
            pair = self.pki.issue_client("kube-apiserver-kubelet-client", ("system:masters",))
        load_client_cert(ctx, pair.cert_pem, pair.key_pem, None)
        return ctx

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(ssl=self._kubelet_ssl, limit=0, keepalive_timeout=90)
        self.session = aiohttp.ClientSession(
            connector=connector, auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout))

    async def stop(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None

    # -- where to -------------------------------------------------------------------------------

    def target(self, node_id: str) -> Target:
        """``node.ResourceLocation``: the kubelet, or another port of the node's address."""
        scheme, name, port = split_scheme_name_port(node_id)
        node = self.store.get("nodes", None, name)
        host = preferred_address(node, self.preferred_address_types)
        check_dialable(host)
        kport = kubelet_port(node)
        if port in ("", str(kport)):
            return Target("https", host, kport, kubelet=True)
        if not port.isdigit() or not 0 < int(port) < 65536:
            raise st.bad_request(f'invalid node request "{node_id}"')
        return Target(scheme or "http", host, int(port), kubelet=False)

    # -- relaying -------------------------------------------------------------------------------

    async def proxy(self, request: web.Request, info: RequestInfo) -> web.StreamResponse:
        """Relays one request (see the module docstring); errors come back as Status objects."""
        target = self.target(info.name)
        path = upstream_path(request)
        if not path:
            return _redirect_to_slash(request)
        if self.session is None:
            raise st.service_unavailable()
        url = target.url(path, request.rel_url.raw_query_string)
        body = await request.read() if request.body_exists else None
        try:
            return await self._relay(request, target, url, body)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            log.info("node proxy: kubelet unreachable", url=str(url), error=repr(exc))
            raise st.service_unavailable(f"error trying to reach service: {dial_error(exc, target)}") from None

    async def _relay(self, request: web.Request, target: Target, url: URL, body: bytes | None) -> web.StreamResponse:
        assert self.session is not None
        headers = forward_headers(request)
        skip = () if "Accept-Encoding" in request.headers else ("Accept-Encoding",)
        ssl_ctx = self._kubelet_ssl if target.kubelet else self._insecure_ssl if target.scheme == "https" else False
        for attempt in (1, 2):
            try:
                resp = await self.session.request(request.method, url, headers=headers, data=body, ssl=ssl_ctx,
                                                  allow_redirects=False, skip_auto_headers=skip)
                break
            except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
                # a pooled connection the kubelet closed: Go's transport retries idempotent requests once
                if attempt == 2 or request.method not in _IDEMPOTENT or isinstance(exc, aiohttp.ClientConnectorError):
                    raise
        async with resp:
            return await _stream_back(request, resp)


def forward_headers(request: web.Request) -> CIMultiDict[str]:
    """The caller's headers minus hop-by-hop and credentials, plus ``X-Forwarded-For``."""
    listed = {t.strip().lower() for v in request.headers.getall("Connection", []) for t in v.split(",")}
    out: CIMultiDict[str] = CIMultiDict()
    for k, v in request.headers.items():
        lk = k.lower()
        if lk in HOP_BY_HOP or lk in listed or lk in NOT_FORWARDED or lk.startswith("impersonate-"):
            continue
        out.add(k, v)
    if request.remote:
        prior = request.headers.get("X-Forwarded-For")
        out["X-Forwarded-For"] = f"{prior}, {request.remote}" if prior else request.remote
    return out


async def _stream_back(request: web.Request, resp: aiohttp.ClientResponse) -> web.StreamResponse:
    """Status, headers and body as the kubelet sent them; a body cut off upstream is cut off here."""
    out = relay_head(resp)
    await out.prepare(request)
    try:
        async for chunk in resp.content.iter_any():
            await out.write(chunk)
        await out.write_eof()
    except (aiohttp.ClientError, OSError, asyncio.IncompleteReadError) as exc:
        log.info("node proxy: response interrupted", error=repr(exc))
        if request.transport is not None:
            request.transport.abort()
    return out


def _redirect_to_slash(request: web.Request) -> web.Response:
    """``.../proxy`` → 301 ``.../proxy/`` (the upgrade-aware proxy's redirect for an empty path)."""
    query = request.rel_url.raw_query_string
    location = request.rel_url.raw_path + "/" + (f"?{query}" if query else "")
    return web.Response(status=301, headers={"Location": location})
