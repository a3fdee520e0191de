"""Certificates for the aggregation layer, kubelets and the emulated cluster.

ECDSA P-256 keys: TLS handshakes with them cost a fraction of RSA-2048's, which matters when one
process serves or scrapes thousands of kubelets.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class CertPair:
    cert_pem: bytes
    key_pem: bytes

    def write(self, cert_path: Path, key_path: Path) -> None:
        cert_path.parent.mkdir(parents=True, exist_ok=True)
        cert_path.write_bytes(self.cert_pem)
        key_path.touch(mode=0o600, exist_ok=True)
        key_path.write_bytes(self.key_pem)


def _name(common_name: str, organizations: Iterable[str] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def generate_ca(common_name: str, days: int = 3650) -> CertPair:
    """A self-signed CA certificate and key."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    name = _name(common_name)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def issue_cert(
    ca: CertPair,
    common_name: str,
    *,
    organizations: Iterable[str] = (),
    dns_names: Iterable[str] = (),
    ip_addresses: Iterable[str] = (),
    server: bool = False,
    client: bool = False,
    days: int = 365,
) -> CertPair:
    """A leaf certificate signed by ``ca``. Client certificates carry the user in CN and groups in O,
    as Kubernetes' x509 authenticator reads them."""
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    usages = []
    if server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    if client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, organizations))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_encipherment=False, key_cert_sign=False, crl_sign=False,
                content_commitment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    )
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    return CertPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def self_signed_serving(common_name: str, dns_names: Iterable[str], ip_addresses: Iterable[str] = ()) -> tuple[CertPair, CertPair]:
    """A throwaway CA and a serving certificate from it (metrics-server's ``--cert-dir`` behaviour).

    Returns (ca, serving); the CA's certificate is what an APIService's caBundle would carry.
    """
    ca = generate_ca(f"{common_name}-ca@{int(dt.datetime.now(dt.UTC).timestamp())}")
    serving = issue_cert(ca, common_name, dns_names=dns_names, ip_addresses=ip_addresses, server=True)
    return ca, serving


def common_name(cert: x509.Certificate) -> str:
    """The CN: the user name Kubernetes takes from a client certificate."""
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else ""


def organizations(cert: x509.Certificate) -> tuple[str, ...]:
    """The O attributes: the groups Kubernetes takes from a client certificate."""
    return tuple(str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME))


class ClientCertError(Exception):
    """A presented client certificate was refused (Go x509's wording)."""


def verify_client_cert(leaf: x509.Certificate, cas: Iterable[x509.Certificate], now: dt.datetime | None = None) -> None:
    """Check that ``leaf`` was issued directly by one of ``cas``, is valid now and allows client auth.

    The TLS layer has already verified the chain against every CA its context trusts; this says
    *which* CA issued the certificate, so a front-proxy certificate is never taken for a user's and
    the other way round.
    """
    now = now or dt.datetime.now(dt.UTC)
    if not (leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc):
        raise ClientCertError("x509: certificate has expired or is not yet valid")
    try:
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        eku = None
    if eku is not None and ExtendedKeyUsageOID.CLIENT_AUTH not in eku and ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in eku:
        raise ClientCertError("x509: certificate specifies an incompatible key usage")
    for ca in cas:
        if not (ca.not_valid_before_utc <= now <= ca.not_valid_after_utc):
            continue
        try:
            leaf.verify_directly_issued_by(ca)
        except (InvalidSignature, ValueError, TypeError):  # wrong issuer name, signature or key type
            continue
        return
    raise ClientCertError("x509: certificate signed by unknown authority")
