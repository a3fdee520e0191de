"""Run the upstream metrics-server beside ours, scraping the same hollow kubelets.

It runs as a real deployment runs it: the metrics-server ServiceAccount's kubeconfig for the API,
delegated authentication and authorization against kube-apiserver, the kubelets' serving CA, and
the node status port. It is not registered as an APIService (ours is): callers reach it directly
on its own port, e.g. with the admin's client certificate.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from sim.controlplane import binaries
from sim.controlplane.processes import Program, free_port


async def start_metrics_server(cluster: Any, workdir: Path, *, resolution: str = "15s",
                               extra_args: list[str] | None = None, binaries_dir: str | None = None,
                               timeout: float = 60.0) -> tuple[Program, int]:
    """Start metrics-server against ``cluster`` (a RealCluster); returns it and its port once healthy."""
    workdir.mkdir(parents=True, exist_ok=True)
    pki = cluster.pki
    serving = pki.issue_serving("metrics-server-upstream", dns_names=("localhost",), ip_addresses=("127.0.0.1",))
    cert, key = workdir / "tls.crt", workdir / "tls.key"
    serving.write(cert, key)
    port = free_port()
    cfg = str(cluster.metrics_kubeconfig)
    prog = Program("metrics-server", [
        str(binaries.find("metrics-server", binaries_dir)),
        f"--kubeconfig={cfg}", f"--authentication-kubeconfig={cfg}", f"--authorization-kubeconfig={cfg}",
        "--bind-address=127.0.0.1", f"--secure-port={port}",
        f"--tls-cert-file={cert}", f"--tls-private-key-file={key}",
        "--kubelet-use-node-status-port", "--kubelet-preferred-address-types=InternalIP",
        f"--kubelet-certificate-authority={pki.path('ca.crt')}",
        f"--metric-resolution={resolution}",
        *(extra_args or []),
    ], workdir / "metrics-server.log")
    prog.start()
    ctx = ssl.create_default_context(cadata=pki.ca.cert_pem.decode())
    ctx.load_cert_chain(str(pki.path("admin.crt")), str(pki.path("admin.key")))
    await prog.wait_healthy(f"https://127.0.0.1:{port}/livez", ctx, timeout)
    return prog, port
