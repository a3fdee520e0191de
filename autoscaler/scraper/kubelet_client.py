"""HTTPS client for kubelets: kept-alive connections to every node (:mod:`autoscaler.scraper.http1`).

TLS follows metrics-server: verify the kubelet's serving certificate against the cluster CA (or
``--kubelet-certificate-authority``) and the host in the URL; present the ServiceAccount token
(re-read when it rotates) and/or a client certificate. ``--kubelet-insecure-tls`` skips
verification (one warning at start-up); ``--deprecated-kubelet-completely-insecure`` uses plain
HTTP and sends no credentials.
"""

from __future__ import annotations

import asyncio
import ssl

import structlog
from yarl import URL

from autoscaler.k8s.kubeconfig import KubeConfig
from autoscaler.scraper.http1 import FetchError, Pool, StatusError, request_head
from autoscaler.scraper.options import ScrapeOptions

log = structlog.get_logger(__name__)


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
    # The secure client defaults (TLS 1.2+, hostname and chain checked), trusting only the cluster CA
    # (or the flag's), as metrics-server's client does: the system's public roots are loaded only
    # when neither is known.
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # No session resumption here (asyncio cannot offer a saved session), so TLS 1.3 session tickets
    # are pure cost: a server sends them only to clients that say they can use them (RFC 8446
    # §4.2.9), and this option says we cannot. Verification is unaffected.
    ctx.options |= ssl.OP_NO_TICKET
    if opts.kubelet_insecure_tls:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif opts.kubelet_certificate_authority:
        ctx.load_verify_locations(cafile=opts.kubelet_certificate_authority)
    elif kube is not None and (ca := kube.ca_pem()):
        ctx.load_verify_locations(cadata=ca.decode())
    else:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
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
        self._pool: Pool | None = None
        # Idle connections must survive until the next cycle, or every scrape pays a handshake.
        self._keepalive = 3 * self.opts.metric_resolution
        self._base_headers = {"User-Agent": "autoscaler-metrics-scraper"}

    async def headers(self) -> dict[str, dict[str, str]]:
        """Per-cycle headers for each response format (``ACCEPT``'s keys): the token file is checked
        once per cycle, not per node."""
        common = dict(self._base_headers)
        if self.kube is not None and not self.opts.deprecated_kubelet_completely_insecure:
            common.update(await self.kube.auth_headers_async())
        return {source: {**common, "Accept": accept} for source, accept in ACCEPT.items()}

    async def fetch(self, url: str | URL, headers: dict[str, str]) -> bytearray:
        """GET ``url``: the 200 response's body, or ScrapeError."""
        if self._pool is None:
            self._pool = Pool(self._ssl, self._max_connections, self._keepalive)
        if not isinstance(url, URL):
            url = URL(url)
        host, port = url.raw_host or "", url.port or 0
        head = request_head(host, port, 443 if url.scheme == "https" else 80, url.raw_path_qs, headers)
        try:
            async with asyncio.timeout(self.opts.kubelet_request_timeout):
                return await self._pool.get(host, port, head, self.opts.max_response_bytes)
        except StatusError as exc:
            if exc.status == 401 and self.kube is not None:
                self.kube.unauthorized(headers)  # renew an exec-plugin credential for the next cycle
            raise ScrapeError(str(exc)) from None
        except FetchError as exc:
            raise ScrapeError(str(exc)) from None
        except TimeoutError:
            raise ScrapeError(f"request timed out after {self.opts.kubelet_request_timeout:g}s") from None

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
