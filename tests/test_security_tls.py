"""Serving TLS: version floor, certificate files rotated on disk, self-signed certificate reuse."""

from __future__ import annotations

import asyncio
import os
import ssl

import pytest
from aiohttp import web
from cryptography import x509

from autoscaler.k8s.certs import generate_ca, issue_cert
from autoscaler.server.serve import HTTPSServer
from autoscaler.server.tls import ServerTLS, TLSConfigError, serving_cert


async def _hello(request: web.Request) -> web.Response:
    return web.Response(text="hello")


async def _serve(tls: ServerTLS) -> HTTPSServer:
    app = web.Application()
    app.router.add_get("/", _hello)
    server = HTTPSServer(app, tls, "127.0.0.1", 0)
    await server.start()
    return server


async def _handshake(port: int, ca_pem: bytes, max_version: ssl.TLSVersion | None = None) -> tuple[str, int]:
    """(negotiated TLS version, serial of the server certificate): a TLS client, then one HTTP request."""
    ctx = ssl.create_default_context(cadata=ca_pem.decode())
    if max_version is not None:
        ctx.maximum_version = max_version
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    try:
        sslobj = writer.get_extra_info("ssl_object")
        version, der = sslobj.version(), sslobj.getpeercert(binary_form=True)
        writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        assert (await reader.read()).endswith(b"hello")
    finally:
        writer.close()
    return version, x509.load_der_x509_certificate(der).serial_number


def _pair(tmp_path, ca, name: str):
    leaf = issue_cert(ca, "metrics-server", dns_names=["localhost"], ip_addresses=["127.0.0.1"], server=True)
    crt, key = tmp_path / f"{name}.crt", tmp_path / f"{name}.key"
    leaf.write(crt, key)
    return leaf, crt, key


async def test_tls12_and_tls13_accepted_by_default_and_floor_is_configurable(tmp_path):
    ca = generate_ca("serving-ca")
    _, crt, key = _pair(tmp_path, ca, "tls")
    server = await _serve(ServerTLS(serving_cert(str(crt), str(key), "")))
    try:
        assert (await _handshake(server.port, ca.cert_pem))[0] == "TLSv1.3"
        assert (await _handshake(server.port, ca.cert_pem, ssl.TLSVersion.TLSv1_2))[0] == "TLSv1.2"
    finally:
        await server.stop()
    server = await _serve(ServerTLS(serving_cert(str(crt), str(key), ""), min_version="VersionTLS13"))
    try:
        with pytest.raises((ssl.SSLError, ConnectionError)):  # protocol alert or reset
            await _handshake(server.port, ca.cert_pem, ssl.TLSVersion.TLSv1_2)
        assert (await _handshake(server.port, ca.cert_pem))[0] == "TLSv1.3"
    finally:
        await server.stop()
    with pytest.raises(TLSConfigError, match="--tls-min-version"):
        ServerTLS(serving_cert(str(crt), str(key), ""), min_version="VersionTLS10")


async def test_serving_certificate_rotated_on_disk_is_used_for_new_connections(tmp_path):
    ca = generate_ca("serving-ca")
    first, crt, key = _pair(tmp_path, ca, "tls")
    server = await _serve(ServerTLS(serving_cert(str(crt), str(key), "")))
    try:
        serial1 = (await _handshake(server.port, ca.cert_pem))[1]
        assert serial1 == x509.load_pem_x509_certificate(first.cert_pem).serial_number
        second, _, _ = _pair(tmp_path, ca, "next")
        second.write(crt, key)
        st = os.stat(crt)
        os.utime(crt, (st.st_atime, st.st_mtime + 5))  # a distinct mtime, as a real rotation has
        serial2 = (await _handshake(server.port, ca.cert_pem))[1]
        assert serial2 == x509.load_pem_x509_certificate(second.cert_pem).serial_number != serial1
    finally:
        await server.stop()


def test_self_signed_certificate_is_generated_once_into_cert_dir(tmp_path):
    first = serving_cert("", "", str(tmp_path / "certs"))
    assert first.generated and first.cert_file.name == "apiserver.crt" and first.key_file.name == "apiserver.key"
    assert oct(first.key_file.stat().st_mode & 0o777) == "0o600"
    leaf = x509.load_pem_x509_certificate(first.cert_file.read_bytes())
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    again = serving_cert("", "", str(tmp_path / "certs"))
    assert not again.generated and again.cert_file.read_bytes() == first.cert_file.read_bytes()
    with pytest.raises(TLSConfigError, match="must be given together"):
        serving_cert(str(first.cert_file), "", "")
