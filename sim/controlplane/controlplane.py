"""A real Kubernetes control plane on loopback: etcd, kube-apiserver, kube-controller-manager and
kube-scheduler, the upstream programs, each with the flags a kubeadm cluster gives it.

Everything binds to 127.0.0.1. The PKI is laid out as kubeadm lays it out: the cluster CA (API
server serving, client certificates, kubelet serving), a front-proxy CA for the aggregation layer
(``--requestheader-*``, ``--proxy-client-cert-file``), a separate etcd CA, and a ServiceAccount
signing key. Authorization is ``Node,RBAC`` with the ``NodeRestriction`` admission plugin, so the
hollow kubelets are held to what a kubelet may do.

kube-apiserver refuses loopback addresses in Endpoints and EndpointSlices, so an aggregated API
served on 127.0.0.1 cannot be routed the normal way. :meth:`ControlPlane.route_service` writes
the Service's EndpointSlice straight into etcd (kube-apiserver reads it from storage as it reads
any object); with ``--enable-aggregator-routing`` the aggregator then proxies to 127.0.0.1:PORT.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import ssl
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from autoscaler.k8s.certs import generate_ca, issue_cert
from autoscaler.k8s.kubeconfig import load_kubeconfig
from autoscaler.k8s.rest import KubeClient, KubeError
from sim.controlplane import binaries
from sim.controlplane.processes import Program, free_port
from sim.pki import ClusterPKI, write_cert_kubeconfig

SERVICE_CIDR = "10.96.0.0/12"
ETCD_PREFIX = "/registry"


@dataclass
class ControlPlaneOptions:
    binaries: str | None = None
    #: kube-controller-manager's --horizontal-pod-autoscaler-sync-period
    hpa_sync_period: str = "15s"
    #: extra flags per program, e.g. {"kube-controller-manager": ["--v=4"]}
    extra_args: dict[str, list[str]] = field(default_factory=dict)
    #: client QPS of the controller manager and scheduler (upstream default 20/50 is slow for
    #: thousands of pods)
    client_qps: int = 200
    start_timeout: float = 120.0
    #: False runs etcd and kube-apiserver only (an API server to compare with, no controllers)
    controllers: bool = True


class ControlPlane:
    """The four upstream programs, their PKI and kubeconfigs, under ``state_dir``."""

    def __init__(self, state_dir: Path, options: ControlPlaneOptions | None = None) -> None:
        self.state_dir = Path(state_dir)
        self.options = options or ControlPlaneOptions()
        self.pki_dir = self.state_dir / "pki"
        self.logs = self.state_dir / "logs"
        self.programs: dict[str, Program] = {}
        self.admin_kubeconfig = self.state_dir / "kubeconfig"
        self.url = ""
        self.etcd_url = ""
        self.pki: ClusterPKI | None = None
        self.admin: KubeClient | None = None
        self._etcd_ssl: ssl.SSLContext | None = None

    # --- PKI -----------------------------------------------------------------------------------

    def _make_pki(self) -> None:
        d = self.pki_dir
        self.pki = ClusterPKI.create(d)
        etcd_ca = generate_ca("etcd-ca")
        etcd_ca.write(d / "etcd" / "ca.crt", d / "etcd" / "ca.key")
        issue_cert(etcd_ca, "kube-etcd", dns_names=("localhost",), ip_addresses=("127.0.0.1",), server=True,
                   client=True).write(d / "etcd" / "server.crt", d / "etcd" / "server.key")
        issue_cert(etcd_ca, "kube-apiserver-etcd-client", client=True).write(
            d / "apiserver-etcd-client.crt", d / "apiserver-etcd-client.key")
        issue_cert(etcd_ca, "autoscaler-sim", client=True).write(d / "etcd" / "sim-client.crt",
                                                                 d / "etcd" / "sim-client.key")
        self._etcd_ssl = ssl.create_default_context(cadata=etcd_ca.cert_pem.decode())
        self._etcd_ssl.load_cert_chain(str(d / "etcd" / "sim-client.crt"), str(d / "etcd" / "sim-client.key"))
        sa_key = ec.generate_private_key(ec.SECP256R1())
        (d / "sa.key").write_bytes(sa_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))
        (d / "sa.key").chmod(0o600)
        (d / "sa.pub").write_bytes(sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))

    def kubeconfig_for(self, name: str, user: str, groups: tuple[str, ...] = ()) -> Path:
        assert self.pki is not None
        return write_cert_kubeconfig(self.state_dir / f"{name}.kubeconfig", self.url, self.pki.ca.cert_pem, user,
                                     self.pki.issue_client(user, groups))

    # --- programs ------------------------------------------------------------------------------

    def _program(self, name: str, args: list[str]) -> Program:
        exe = binaries.find(name, self.options.binaries)
        prog = Program(name, [str(exe), *args, *self.options.extra_args.get(name, [])], self.logs / f"{name}.log")
        self.programs[name] = prog
        return prog

    async def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        programs = binaries.CONTROL_PLANE if self.options.controllers else ("etcd", "kube-apiserver")
        for name in programs:  # fail before starting anything when a program is missing
            binaries.find(name, self.options.binaries)
        self._make_pki()
        assert self.pki is not None
        d, timeout = self.pki_dir, self.options.start_timeout
        ca_ssl = ssl.create_default_context(cadata=self.pki.ca.cert_pem.decode())

        client_port, peer_port = free_port(), free_port()
        self.etcd_url = f"https://127.0.0.1:{client_port}"
        etcd = self._program("etcd", [
            "--name=default", f"--data-dir={self.state_dir / 'etcd'}",
            f"--listen-client-urls={self.etcd_url}", f"--advertise-client-urls={self.etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{peer_port}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}",
            f"--initial-cluster=default=http://127.0.0.1:{peer_port}",
            f"--cert-file={d / 'etcd/server.crt'}", f"--key-file={d / 'etcd/server.key'}",
            f"--trusted-ca-file={d / 'etcd/ca.crt'}", "--client-cert-auth=true",
            # an emulated cluster's data is thrown away with it: no fsync per write
            "--unsafe-no-fsync=true", "--snapshot-count=10000", "--log-level=warn",
        ])
        etcd.start()
        assert self._etcd_ssl is not None
        await etcd.wait_healthy(f"{self.etcd_url}/health", self._etcd_ssl, timeout)

        port = free_port()
        self.url = f"https://127.0.0.1:{port}"
        apiserver = self._program("kube-apiserver", [
            "--advertise-address=127.0.0.1", "--bind-address=127.0.0.1", f"--secure-port={port}",
            f"--etcd-servers={self.etcd_url}", f"--etcd-cafile={d / 'etcd/ca.crt'}",
            f"--etcd-certfile={d / 'apiserver-etcd-client.crt'}", f"--etcd-keyfile={d / 'apiserver-etcd-client.key'}",
            f"--etcd-prefix={ETCD_PREFIX}",
            f"--client-ca-file={d / 'ca.crt'}",
            f"--tls-cert-file={d / 'apiserver.crt'}", f"--tls-private-key-file={d / 'apiserver.key'}",
            f"--kubelet-client-certificate={d / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={d / 'apiserver-kubelet-client.key'}",
            f"--kubelet-certificate-authority={d / 'ca.crt'}", "--kubelet-preferred-address-types=InternalIP",
            f"--requestheader-client-ca-file={d / 'front-proxy-ca.crt'}",
            "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User", "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-uid-headers=X-Remote-Uid",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={d / 'front-proxy-client.crt'}",
            f"--proxy-client-key-file={d / 'front-proxy-client.key'}",
            "--enable-aggregator-routing=true",
            "--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={d / 'sa.pub'}", f"--service-account-signing-key-file={d / 'sa.key'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # the kubernetes Service would get 127.0.0.1 as its endpoint, which validation refuses
            "--endpoint-reconciler-type=none",
            "--allow-privileged=true", "--profiling=false",
        ])
        apiserver.start()
        await apiserver.wait_healthy(f"{self.url}/readyz", ca_ssl, timeout)
        write_cert_kubeconfig(self.admin_kubeconfig, self.url, self.pki.ca.cert_pem, "kubernetes-admin",
                              self.pki.admin)
        self.admin = KubeClient(load_kubeconfig(str(self.admin_kubeconfig)), user_agent="autoscaler-sim",
                                connections=32)
        if not self.options.controllers:
            return

        qps = self.options.client_qps
        kcm_cfg = self.kubeconfig_for("controller-manager", "system:kube-controller-manager")
        kcm_port = free_port()
        kcm = self._program("kube-controller-manager", [
            f"--kubeconfig={kcm_cfg}", f"--authentication-kubeconfig={kcm_cfg}",
            f"--authorization-kubeconfig={kcm_cfg}",
            "--bind-address=127.0.0.1", f"--secure-port={kcm_port}", "--leader-elect=false",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={d / 'sa.key'}", f"--root-ca-file={d / 'ca.crt'}",
            f"--cluster-signing-cert-file={d / 'ca.crt'}", f"--cluster-signing-key-file={d / 'ca.key'}",
            f"--requestheader-client-ca-file={d / 'front-proxy-ca.crt'}", f"--client-ca-file={d / 'ca.crt'}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--horizontal-pod-autoscaler-sync-period={self.options.hpa_sync_period}",
            f"--kube-api-qps={qps}", f"--kube-api-burst={qps * 2}",
            "--controllers=*,bootstrapsigner,tokencleaner",
        ])
        sched_cfg = self.kubeconfig_for("scheduler", "system:kube-scheduler")
        sched_port = free_port()
        sched = self._program("kube-scheduler", [
            f"--kubeconfig={sched_cfg}", f"--authentication-kubeconfig={sched_cfg}",
            f"--authorization-kubeconfig={sched_cfg}",
            "--bind-address=127.0.0.1", f"--secure-port={sched_port}", "--leader-elect=false",
            f"--kube-api-qps={qps}", f"--kube-api-burst={qps * 2}",
        ])
        kcm.start()
        sched.start()
        # their serving certificates are self-signed: health is checked without verification
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE
        await asyncio.gather(kcm.wait_healthy(f"https://127.0.0.1:{kcm_port}/healthz", insecure, timeout),
                             sched.wait_healthy(f"https://127.0.0.1:{sched_port}/healthz", insecure, timeout))
        await self._wait_default_serviceaccount(timeout)

    async def _wait_default_serviceaccount(self, timeout: float) -> None:
        """Pods can be created once the ServiceAccount controller made ``default`` in ``default``."""
        assert self.admin is not None
        deadline = time.monotonic() + timeout
        while True:
            try:
                await self.admin.get("/api/v1/namespaces/default/serviceaccounts/default")
                return
            except KubeError as exc:
                if not exc.not_found or time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.2)

    async def stop(self) -> None:
        if self.admin is not None:
            await self.admin.close()
        # controllers first, etcd last, as a node shuts its static pods down
        for name in ("kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"):
            prog = self.programs.get(name)
            if prog is not None:
                await asyncio.to_thread(prog.stop)

    def check_running(self) -> None:
        """Raise with the log's tail when a program has exited."""
        for prog in self.programs.values():
            if not prog.running:
                raise prog.failure(f"exited with code {prog.proc.returncode if prog.proc else None}")

    # --- etcd ----------------------------------------------------------------------------------

    async def etcd_put(self, key: str, obj: dict) -> None:
        """Write an object (JSON, as kube-apiserver's storage decoder accepts it) under ``key``."""
        body = {"key": base64.b64encode(key.encode()).decode(),
                "value": base64.b64encode(orjson.dumps(obj)).decode()}
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self._etcd_ssl)) as session, \
                session.post(f"{self.etcd_url}/v3/kv/put", json=body, timeout=aiohttp.ClientTimeout(total=10)) as r:
            if r.status != 200:
                raise RuntimeError(f"etcd put {key}: HTTP {r.status}: {(await r.text())[:300]}")

    async def route_service(self, namespace: str, service: str, port_name: str, port: int,
                            address: str = "127.0.0.1") -> None:
        """Point Service ``namespace/service`` at ``address:port`` with an EndpointSlice written to etcd.

        The Service must have no selector, so no controller manages (or deletes) its slices.
        """
        name = f"{service}-loopback"
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        slice_obj: dict[str, Any] = {
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": namespace, "uid": str(uuid.uuid4()), "creationTimestamp": now,
                         "generation": 1, "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [address], "conditions": {"ready": True, "serving": True,
                                                                   "terminating": False}}],
            "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
        }
        await self.etcd_put(f"{ETCD_PREFIX}/endpointslices/{namespace}/{name}", slice_obj)
