"""Serving TLS for the aggregated API: certificate choice, TLS floor, and live client-CA updates.

As in k8s.io/apiserver, client certificates are *requested* but not required: the front proxy
presents one, kubectl-style users may present one, bearer-token callers and health probes don't.
The trusted client CAs (requestheader CA + client CA) change when the
``extension-apiserver-authentication`` ConfigMap rotates, so each handshake picks up the
current SSL context through the SNI hook (called for every ClientHello, with or without SNI).
Certificates from unknown CAs are refused during the handshake; which CA signed a verified
certificate (front proxy or user) is decided later by the authenticator.
"""

from __future__ import annotations

import os
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

import structlog

from autoscaler.k8s.certs import self_signed_serving

log = structlog.get_logger(__name__)

TLS_VERSIONS = {
    "VersionTLS12": ssl.TLSVersion.TLSv1_2,
    "VersionTLS13": ssl.TLSVersion.TLSv1_3,
}

# Go's cipher-suite names (as --tls-cipher-suites takes them) -> OpenSSL names. TLS 1.3 suites
# are not configurable, as in Go.
CIPHER_SUITES = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
}


class TLSConfigError(ValueError):
    """Bad serving-TLS flags or files."""


@dataclass(frozen=True)
class ServingCert:
    cert_file: Path
    key_file: Path
    generated: bool = False


def serving_cert(cert_file: str, key_file: str, cert_dir: str, hosts: list[str] | None = None) -> ServingCert:
    """The serving certificate files: the given pair, or a self-signed pair in ``cert_dir``.

    Mirrors metrics-server: with no ``--tls-cert-file`` a CA and a serving certificate for
    ``localhost``/``127.0.0.1`` (plus ``hosts``) are written to ``<cert-dir>/apiserver.crt|key``,
    reused if already there.
    """
    if bool(cert_file) != bool(key_file):
        raise TLSConfigError("--tls-cert-file and --tls-private-key-file must be given together")
    if cert_file:
        for flag, p in (("--tls-cert-file", cert_file), ("--tls-private-key-file", key_file)):
            if not Path(p).is_file():
                raise TLSConfigError(f"{flag}: {p}: no such file")
        return ServingCert(Path(cert_file), Path(key_file))
    if not cert_dir:
        raise TLSConfigError("--cert-dir must be set when --tls-cert-file is not given")
    d = Path(cert_dir)
    crt, key = d / "apiserver.crt", d / "apiserver.key"
    if crt.is_file() and key.is_file():
        return ServingCert(crt, key)
    dns = ["localhost", *[h for h in hosts or [] if not _is_ip(h)]]
    ips = ["127.0.0.1", *[h for h in hosts or [] if _is_ip(h) and h != "127.0.0.1"]]
    ca, srv = self_signed_serving("localhost", dns, ips)
    try:
        d.mkdir(parents=True, exist_ok=True)
        # Leaf first, then its CA, so clients that trust the CA can build the chain.
        crt.write_bytes(srv.cert_pem + ca.cert_pem)
        key.touch(mode=0o600, exist_ok=True)
        key.write_bytes(srv.key_pem)
    except OSError as exc:
        raise TLSConfigError(f"--cert-dir {cert_dir}: cannot write self-signed certificate: {exc}") from exc
    log.info("Generated self-signed cert", cert=str(crt), key=str(key))
    return ServingCert(crt, key, generated=True)


def _is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class ServerTLS:
    """The listening socket's SSL context, with swappable client CAs and serving-cert reload."""

    def __init__(self, cert: ServingCert, min_version: str = "VersionTLS12", cipher_suites: list[str] | None = None):
        if min_version not in TLS_VERSIONS:
            raise TLSConfigError(
                f"--tls-min-version: unsupported version {min_version!r}; allowed: {', '.join(TLS_VERSIONS)}"
            )
        unknown = [c for c in cipher_suites or [] if c not in CIPHER_SUITES]
        if unknown:
            raise TLSConfigError(f"--tls-cipher-suites: unsupported cipher suites {unknown}")
        self._cert = cert
        self._min_version = TLS_VERSIONS[min_version]
        self._ciphers = ":".join(CIPHER_SUITES[c] for c in cipher_suites or [])
        self._client_ca_pem = b""
        self._lock = threading.Lock()
        self._mtimes = self._cert_mtimes()
        self._current = self._build()
        # The context handed to the server; each handshake is switched to ``_current``.
        self.context = self._build()
        self.context.sni_callback = self._on_hello

    def _cert_mtimes(self) -> tuple[float, float]:
        try:
            return (os.stat(self._cert.cert_file).st_mtime, os.stat(self._cert.key_file).st_mtime)
        except OSError:
            return (0.0, 0.0)

    def _build(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = self._min_version
        if self._ciphers:
            ctx.set_ciphers(self._ciphers)
        try:
            ctx.load_cert_chain(str(self._cert.cert_file), str(self._cert.key_file))
        except (OSError, ssl.SSLError) as exc:
            raise TLSConfigError(f"serving certificate {self._cert.cert_file}: {exc}") from exc
        ctx.set_alpn_protocols(["http/1.1"])
        # Request (never require) a client certificate. The mode must already be set on the
        # context the connection starts with: switching contexts in the SNI hook swaps the
        # trust store but keeps the connection's verify mode.
        ctx.verify_mode = ssl.CERT_OPTIONAL
        if self._client_ca_pem.strip():
            try:
                ctx.load_verify_locations(cadata=self._client_ca_pem.decode())
            except (ssl.SSLError, ValueError) as exc:
                raise TLSConfigError(f"client CA bundle: {exc}") from exc
        return ctx

    def _on_hello(self, sslobj: ssl.SSLObject, server_name: str | None, ctx: ssl.SSLContext) -> None:
        if self._cert_mtimes() != self._mtimes:
            self.reload()
        sslobj.context = self._current

    def set_client_cas(self, pem_bundle: bytes) -> None:
        """Trust exactly these CAs for client certificates from now on (empty: request none)."""
        with self._lock:
            if pem_bundle == self._client_ca_pem:
                return
            old = self._client_ca_pem
            self._client_ca_pem = pem_bundle
            try:
                self._current = self._build()
            except TLSConfigError:
                self._client_ca_pem = old
                raise

    def reload(self) -> None:
        """Re-read the serving certificate files (after rotation on disk); keep the old on failure."""
        with self._lock:
            self._mtimes = self._cert_mtimes()
            try:
                self._current = self._build()
            except TLSConfigError as exc:
                log.error("serving certificate reload failed; keeping the previous one", error=str(exc))
                return
        log.info("serving certificate reloaded", cert=str(self._cert.cert_file))
