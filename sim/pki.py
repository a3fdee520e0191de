"""The emulated cluster's certificates, laid out as kubeadm does under /etc/kubernetes/pki.

One cluster CA signs the API server's serving certificate and every client certificate (users and
groups in CN and O, as Kubernetes' x509 authenticator reads them). A separate front-proxy CA signs
the certificate the aggregation layer presents to extension API servers (CN ``front-proxy-client``),
so a backend can tell proxied requests from direct ones. The API server reaches kubelets (node
proxy) with ``apiserver-kubelet-client`` (kube-apiserver's ``--kubelet-client-certificate``).
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from autoscaler.k8s.certs import CertPair, generate_ca, issue_cert

APISERVER_DNS_NAMES = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
APISERVER_IPS = ("127.0.0.1",)
KUBELET_CLIENT_CN = "kube-apiserver-kubelet-client"
KUBELET_CLIENT_GROUPS = ("system:masters",)


def _load(directory: Path, stem: str) -> CertPair | None:
    crt, key = directory / f"{stem}.crt", directory / f"{stem}.key"
    if crt.is_file() and key.is_file():
        return CertPair(crt.read_bytes(), key.read_bytes())
    return None


@dataclass
class ClusterPKI:
    """Certificates of one emulated cluster, all written under ``directory``."""

    directory: Path
    ca: CertPair
    front_proxy_ca: CertPair
    front_proxy_client: CertPair
    apiserver: CertPair
    admin: CertPair
    apiserver_kubelet_client: CertPair

    @classmethod
    def create(cls, directory: Path) -> ClusterPKI:
        """Create (or reuse, when already present) the CA set and the standard leaf certificates."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)

        def ensure(stem: str, make) -> CertPair:
            pair = _load(directory, stem)
            if pair is None:
                pair = make()
                pair.write(directory / f"{stem}.crt", directory / f"{stem}.key")
            return pair

        ca = ensure("ca", lambda: generate_ca("kubernetes"))
        fp_ca = ensure("front-proxy-ca", lambda: generate_ca("front-proxy-ca"))
        fp_client = ensure(
            "front-proxy-client", lambda: issue_cert(fp_ca, "front-proxy-client", client=True)
        )
        apiserver = ensure(
            "apiserver",
            lambda: issue_cert(
                ca, "kube-apiserver", dns_names=APISERVER_DNS_NAMES, ip_addresses=APISERVER_IPS, server=True
            ),
        )
        admin = ensure(
            "admin", lambda: issue_cert(ca, "kubernetes-admin", organizations=("system:masters",), client=True)
        )
        kubelet_client = ensure(
            "apiserver-kubelet-client",
            lambda: issue_cert(ca, KUBELET_CLIENT_CN, organizations=KUBELET_CLIENT_GROUPS, client=True),
        )
        return cls(directory, ca, fp_ca, fp_client, apiserver, admin, kubelet_client)

    def issue_client(self, user: str, groups: Sequence[str] = ()) -> CertPair:
        """A client certificate for ``user`` (CN) in ``groups`` (O), signed by the cluster CA."""
        return issue_cert(self.ca, user, organizations=tuple(groups), client=True)

    def issue_serving(
        self, cn: str, dns_names: Sequence[str] = (), ip_addresses: Sequence[str] = ("127.0.0.1",)
    ) -> CertPair:
        """A serving certificate signed by the cluster CA (kubelets, in-cluster servers)."""
        return issue_cert(self.ca, cn, dns_names=tuple(dns_names), ip_addresses=tuple(ip_addresses), server=True)

    def path(self, name: str) -> Path:
        """Path of a file in the PKI directory, e.g. ``path("ca.crt")``."""
        return self.directory / name


def write_cert_kubeconfig(path: Path, server: str, ca_pem: bytes, user: str, pair: CertPair,
                          namespace: str = "default") -> Path:
    """A kubeconfig (mode 0600) whose user authenticates with the client certificate ``pair``."""
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return _write_kubeconfig(path, server, ca_pem, user, {"client-certificate-data": b64(pair.cert_pem),
                                                          "client-key-data": b64(pair.key_pem)}, namespace)


def write_token_kubeconfig(path: Path, server: str, ca_pem: bytes, user: str, token: str,
                           namespace: str = "default") -> Path:
    """A kubeconfig (mode 0600) whose user authenticates with a bearer token."""
    return _write_kubeconfig(path, server, ca_pem, user, {"token": token}, namespace)


def _write_kubeconfig(path: Path, server: str, ca_pem: bytes, user: str, credentials: dict[str, str],
                      namespace: str) -> Path:
    path = Path(path)
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "sim", "cluster": {"server": server,
                                                 "certificate-authority-data": base64.b64encode(ca_pem).decode()}}],
        "users": [{"name": user, "user": credentials}],
        "contexts": [{"name": "sim", "context": {"cluster": "sim", "user": user, "namespace": namespace}}],
        "current-context": "sim",
        "preferences": {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path
