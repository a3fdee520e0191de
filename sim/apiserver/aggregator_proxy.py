"""The aggregator's proxy: an APIService's requests relayed to its backend Service over TLS.

The request carries the caller's identity in ``X-Remote-*`` headers (Go's canonical names, extra
keys percent-encoded) and the front-proxy client certificate; the client's credentials and
hop-by-hop headers stay behind; responses, watch streams included, are relayed as they arrive.
Only loopback endpoints are dialled unless an address filter says otherwise.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import ssl
import uuid
from collections.abc import Mapping
from typing import Any

import aiohttp
import orjson
import structlog
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from autoscaler.k8s import status as st
from sim.apiserver.apiservices import Backend, EndpointError, is_available, meta_of, url_host
from sim.apiserver.auth import UserInfo

log = structlog.get_logger(__name__)

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


class BackendProxy:
    """The Aggregator's backend lookup and proxy (a part of :class:`sim.apiserver.aggregation.Aggregator`)."""

    def resolve(self, apiservice: Mapping[str, Any]) -> Backend:
        """Where an APIService's traffic goes; raises :class:`EndpointError` like the aggregator."""
        try:
            return self._resolve(apiservice)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:  # malformed objects
            name = meta_of(apiservice).get("name", "")
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
            return Backend(f"https://{url_host(host)}:{p}", server_name)
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
        return Backend(f"https://{url_host(ip)}:{p}", server_name)

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
        name = meta_of(apiservice).get("name", "")
        spec = apiservice.get("spec") or {}
        key = (spec.get("caBundle") or "", bool(spec.get("insecureSkipTLSVerify")))
        entry = self._sessions.get(name)
        if entry is not None:
            if entry[0] == key and not entry[1].closed:
                return entry[1]
            close_later(entry[1])
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
            return status_response(st.not_found("", request.path))
        apiservice = self.apiservice_for(parts[2], parts[3])
        if apiservice is None:
            return status_response(st.ApiError(404, "NotFound", "the server could not find the requested resource",
                                                {}))
        if not is_available(apiservice):
            return status_response(st.service_unavailable())
        try:
            backend = self.resolve(apiservice)
            session = self._session(apiservice)
        except EndpointError as exc:
            log.info("aggregated backend unavailable", apiservice=meta_of(apiservice).get("name"), reason=exc.reason,
                     message=exc.message)
            return status_response(st.service_unavailable())
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
            return status_response(st.service_unavailable())


def loopback_only(host: str, port: int) -> tuple[str, int]:
    try:
        if ipaddress.ip_address(host).is_loopback:
            return host, port
    except ValueError:
        if host == "localhost":
            return host, port
    raise EndpointError("MissingEndpoints", f"endpoint address {host}:{port} is not a loopback address; "
                                            "the emulated cluster only dials loopback addresses")


def status_response(err: st.ApiError) -> web.Response:
    return web.Response(status=err.code, body=orjson.dumps(err.status()), content_type="application/json")


def close_later(session: aiohttp.ClientSession) -> None:
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

