"""Run the real `autoscaler run` against a sim cluster, wired in as a real cluster wires it.

`autoscaler sim up --with-autoscaler` uses this: the metrics pipeline gets a serving certificate
from the cluster CA, is registered through a Service, its endpoints (127.0.0.1:PORT) and the
APIServices v1.metrics.k8s.io and v1beta1.metrics.k8s.io (caBundle = cluster CA, so the aggregator
verifies it), and runs
as a separate process with the metrics-server ServiceAccount's kubeconfig, exactly the binary
and flags a cluster deployment would use. Each cluster registers the objects its own way
(``register_metrics_api``): the emulated one in its store, the real control plane through its API
and etcd.
"""

from __future__ import annotations

import base64
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

SERVICE_NAME = "metrics-server"
SERVICE_NAMESPACE = "kube-system"
#: (version, versionPriority) of each APIService: v1 (GA in 1.37) preferred, v1beta1 as metrics-server registers it
METRICS_VERSIONS = (("v1", 200), ("v1beta1", 100))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def metrics_registration(port: int, ca_bundle_pem: bytes | None) -> list[tuple[str, dict[str, Any]]]:
    """The Service, Endpoints and APIService that route metrics.k8s.io to 127.0.0.1:port.

    Without a CA bundle the APIService skips TLS verification, as metrics-server's own manifests do.
    """
    labels = {"k8s-app": "metrics-server"}
    tls: dict[str, Any] = (
        {"caBundle": base64.b64encode(ca_bundle_pem).decode()} if ca_bundle_pem else {"insecureSkipTLSVerify": True}
    )
    return [
        ("services", {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": SERVICE_NAME, "namespace": SERVICE_NAMESPACE, "labels": labels},
            "spec": {"ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": "https"}],
                     "selector": labels},
        }),
        ("endpoints", {
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": SERVICE_NAME, "namespace": SERVICE_NAMESPACE, "labels": labels},
            "subsets": [{"addresses": [{"ip": "127.0.0.1"}],
                         "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}],
        }),
        *(("apiservices.apiregistration.k8s.io", {
            "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
            "metadata": {"name": f"{version}.metrics.k8s.io", "labels": labels},
            "spec": {"service": {"name": SERVICE_NAME, "namespace": SERVICE_NAMESPACE, "port": 443},
                     "group": "metrics.k8s.io", "version": version,
                     "groupPriorityMinimum": 100, "versionPriority": priority, **tls},
        }) for version, priority in METRICS_VERSIONS),
    ]


def register_metrics_apiservice(store: Any, port: int, ca_bundle_pem: bytes | None = None) -> None:
    """Create (or replace) the registration objects in the emulated API server's store."""
    for resource, obj in metrics_registration(port, ca_bundle_pem):
        meta = obj["metadata"]
        existing = store.try_get(resource, meta.get("namespace"), meta["name"])
        if existing is not None:
            store.delete(resource, meta.get("namespace"), meta["name"])
        store.create(resource, obj)


async def start_autoscaler(cluster: Any, workdir: Path, *, controller_mode: str = "dry-run",
                           extra_args: list[str] | None = None) -> tuple[subprocess.Popen[bytes], int]:
    """Issue a serving certificate, register the APIService and start `autoscaler run`.

    Returns the process and its port. The caller stops the process.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    serving = cluster.pki.issue_serving(
        "metrics-server",
        dns_names=(f"{SERVICE_NAME}.{SERVICE_NAMESPACE}.svc", f"{SERVICE_NAME}.{SERVICE_NAMESPACE}", "localhost"),
        ip_addresses=("127.0.0.1",),
    )
    cert, key = workdir / "tls.crt", workdir / "tls.key"
    serving.write(cert, key)
    ca_file = workdir / "cluster-ca.crt"
    ca_file.write_bytes(cluster.pki.ca.cert_pem)
    port = free_port()
    await cluster.register_metrics_api(port, cluster.pki.ca.cert_pem)
    argv = [
        sys.executable, "-m", "autoscaler", "run",
        "--kubeconfig", str(cluster.metrics_kubeconfig),
        "--secure-port", str(port), "--bind-address", "127.0.0.1",
        "--tls-cert-file", str(cert), "--tls-private-key-file", str(key),
        "--kubelet-use-node-status-port", "--kubelet-certificate-authority", str(ca_file),
        "--controller-mode", controller_mode,
        *(extra_args or []),
    ]
    log = (workdir / "autoscaler.log").open("ab")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    return proc, port
