"""HTTPS client for kubelets: one keep-alive aiohttp session for every node.

TLS follows metrics-server: verify the kubelet's serving certificate against the cluster CA (or
``--kubelet-certificate-authority``) and the host in the URL; present the ServiceAccount token
(re-read when it rotates) and/or a client certificate. ``--kubelet-insecure-tls`` skips
verification (one warning at start-up); ``--deprecated-kubelet-completely-insecure`` uses plain
HTTP and sends no credentials.
"""

from __future__ import annotations

import ssl
from typing import Any

import aiohttp
import structlog
from yarl import URL

from autoscaler.k8s.kubeconfig import KubeConfig
from autoscaler.scraper.options import ScrapeOptions

log = structlog.get_logger(__name__)


#: asyncio allocates (and zero-fills) a read buffer of ``SSLProtocol.max_size`` (256 KiB) for every
#: TLS connection. Kept-alive connections to thousands of kubelets would then cost 256 KiB each,
#: more than everything else per node together. TLS records carry at most 16 KiB, so a 16 KiB
#: buffer costs only a few more (cheap) reads per response.
SSL_READ_BUFFER = 16 * 1024


class _KubeletConnector(aiohttp.TCPConnector):
    """Shrinks the TLS read buffer of its own connections only (never asyncio's process-wide default).

    asyncio exposes no setting for it, so this reaches into the connection's SSLProtocol once the
    handshake is done; should those internals change, connections keep the default buffer (memory
    only, behaviour unchanged)."""

    async def _wrap_create_connection(self, *args: Any, **kwargs: Any) -> Any:
        transport, proto = await super()._wrap_create_connection(*args, **kwargs)
        ssl_proto = getattr(transport, "_ssl_protocol", None)
        if ssl_proto is not None and len(getattr(ssl_proto, "_ssl_buffer", b"")) > SSL_READ_BUFFER:
            ssl_proto.max_size = SSL_READ_BUFFER  # instance attribute: get_buffer() never grows past it
            ssl_proto._ssl_buffer = bytearray(SSL_READ_BUFFER)
            ssl_proto._ssl_buffer_view = memoryview(ssl_proto._ssl_buffer)
        return transport, proto


#: the Accept header per response format: Summary API JSON, or the Prometheus text of /metrics/resource
ACCEPT = {"summary": "application/json", "resource": "text/plain;version=0.0.4;q=1,*/*;q=0.1"}


class ScrapeError(Exception):
    """One node's request failed; the message is what the logs and CycleStats show."""


#: with --kubelet-via-apiserver every request goes to kube-apiserver: at most this many connections to it
APISERVER_CONNECTIONS = 64


def kubelet_ssl_context(opts: ScrapeOptions, kube: KubeConfig | None) -> ssl.SSLContext | bool:
    if opts.kubelet_via_apiserver and kube is not None:
        return kube.ssl_context()  # through the node proxy we talk TLS to kube-apiserver, as the kubeconfig says
    if opts.deprecated_kubelet_completely_insecure:
        return False
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if opts.kubelet_insecure_tls:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif opts.kubelet_certificate_authority:
        ctx.load_verify_locations(cafile=opts.kubelet_certificate_authority)
    elif kube is not None and (ca := kube.ca_pem()):
        ctx.load_verify_locations(cadata=ca.decode())
    if opts.kubelet_client_certificate:
        ctx.load_cert_chain(opts.kubelet_client_certificate, opts.kubelet_client_key)
    elif kube is not None:
        kube.load_client_cert(ctx)
    return ctx


class KubeletClient:
    """Fetches kubelet endpoints with bounded time and size; reuses connections across cycles."""

    def __init__(self, opts: ScrapeOptions, kube: KubeConfig | None, max_connections: int) -> None:
        self.opts = opts
        self.kube = kube
        self._ssl = kubelet_ssl_context(opts, kube)
        if opts.kubelet_insecure_tls:
            log.warning("kubelet serving certificates are NOT verified (--kubelet-insecure-tls); for testing only")
        if opts.deprecated_kubelet_completely_insecure:
            log.warning("kubelets are scraped over plain HTTP without credentials (--deprecated-kubelet-completely-insecure)")
        self._max_connections = min(max_connections, APISERVER_CONNECTIONS) if opts.kubelet_via_apiserver \
            else max_connections
        self._session: aiohttp.ClientSession | None = None
        self._timeout = aiohttp.ClientTimeout(total=opts.kubelet_request_timeout)
        self._base_headers = {"User-Agent": "autoscaler-metrics-scraper"}

    def _new_session(self) -> aiohttp.ClientSession:
        connector = _KubeletConnector(
            ssl=self._ssl,
            limit=self._max_connections,
            limit_per_host=0,
            # Idle connections must survive until the next cycle, or every scrape pays a handshake.
            keepalive_timeout=3 * self.opts.metric_resolution,
            enable_cleanup_closed=False,
            ttl_dns_cache=300,
        )
        # No cookie jar (kubelets set none) and no compression negotiation: less work per request.
        return aiohttp.ClientSession(connector=connector, timeout=self._timeout, auto_decompress=False,
                                     skip_auto_headers=("Accept-Encoding",), cookie_jar=aiohttp.DummyCookieJar())

    async def headers(self) -> dict[str, dict[str, str]]:
        """Per-cycle headers for each response format (``ACCEPT``'s keys): the token file is checked
        once per cycle, not per node."""
        common = dict(self._base_headers)
        if self.kube is not None and not self.opts.deprecated_kubelet_completely_insecure:
            common.update(await self.kube.auth_headers_async())
        return {source: {**common, "Accept": accept} for source, accept in ACCEPT.items()}

    async def fetch(self, url: str | URL, headers: dict[str, str]) -> bytes:
        if self._session is None or self._session.closed:
            self._session = self._new_session()
        limit = self.opts.max_response_bytes
        try:
            async with self._session.get(url, headers=headers, allow_redirects=False) as resp:
                if resp.status != 200:
                    if resp.status == 401 and self.kube is not None:
                        self.kube.unauthorized(headers)  # renew an exec-plugin credential for the next cycle
                    raise ScrapeError(f'request failed, status: "{resp.status} {resp.reason}"')
                length = resp.content_length
                if length is not None:
                    if length > limit:
                        raise ScrapeError(f"response too large: {length} bytes (limit {limit})")
                    return await resp.read()
                chunks, total = [], 0
                async for chunk in resp.content.iter_chunked(1 << 16):
                    total += len(chunk)
                    if total > limit:
                        raise ScrapeError(f"response too large: more than {limit} bytes")
                    chunks.append(chunk)
                return b"".join(chunks)
        except ScrapeError:
            raise
        except TimeoutError:
            raise ScrapeError(f"request timed out after {self.opts.kubelet_request_timeout:g}s") from None
        except aiohttp.ClientConnectorCertificateError as exc:
            raise ScrapeError(f"TLS verification failed: {exc.certificate_error}") from None
        except aiohttp.ClientError as exc:
            raise ScrapeError(f"{type(exc).__name__}: {exc}") from None
        except ssl.SSLError as exc:
            raise ScrapeError(f"TLS error: {exc}") from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
