"""Shared helpers for the metrics API and security tests (no tests here).

Builds the real server stack (WindowStore, ObjectIndex, Authenticator, Authorizer, TLS, aiohttp)
on 127.0.0.1:0 with freshly minted front-proxy and client CAs, and real aiohttp clients that
present the certificates a kube-apiserver aggregator or a user would.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autoscaler.api.objects import ObjectIndex
from autoscaler.api.resources import MetricsResources
from autoscaler.k8s.certs import CertPair, generate_ca, issue_cert
from autoscaler.server.app import MetricsServerApp
from autoscaler.server.authn import Authenticator, RequestHeaderConfig
from autoscaler.server.authz import Authorizer
from autoscaler.server.health import HealthChecks
from autoscaler.server.selfmetrics import FRESHNESS
from autoscaler.server.serve import HTTPSServer
from autoscaler.server.tls import ServerTLS, serving_cert
from autoscaler.storage.types import NodeBatch
from autoscaler.storage.window import WindowStore

T0 = 1_784_540_100.0  # 2026-07-20T10:15:00Z


def pod_batch(node: str, t: float, pods: list[tuple[str, str, dict[str, tuple[float, float]]]],
              node_cpu: float, node_mem: float, start: float = T0 - 3600) -> NodeBatch:
    """One scrape: ``pods`` = [(namespace, pod, {container: (cpu core-seconds, memory bytes)})]."""
    ns, pn, cn, cpu, mem = [], [], [], [], []
    for namespace, pod, containers in pods:
        for c, (cs, mb) in sorted(containers.items()):
            ns.append(namespace)
            pn.append(pod)
            cn.append(c)
            cpu.append(cs)
            mem.append(mb)
    n = len(cn)
    return NodeBatch(node=node, scrape_time=t, node_start_time=start, node_timestamp=t, node_cpu=node_cpu,
                     node_memory=node_mem, namespaces=ns, pods=pn, containers=cn,
                     start_time=np.full(n, start), timestamp=np.full(n, t), cpu=np.array(cpu, dtype=np.float64),
                     memory=np.array(mem, dtype=np.float64))


def synthetic_store(n_nodes: int, pods_per_node: int, resolution: float = 15.0) -> tuple[WindowStore, ObjectIndex]:
    """A store with two scrapes of every node (so every pod has a rate) and the matching index."""
    store = WindowStore(resolution=resolution, history=4 * resolution)
    index = ObjectIndex()
    nodes, pods = [], []
    for i in range(n_nodes):
        node = f"node-{i:04d}"
        nodes.append({"metadata": {"name": node, "labels": {"kubernetes.io/hostname": node, "zone": f"z{i % 3}"}}})
        for j in range(pods_per_node):
            pods.append({"metadata": {"namespace": f"ns-{j % 10}", "name": f"p-{i:04d}-{j:03d}",
                                      "labels": {"app": f"a{j % 5}", "tier": "web"}}})
    index.replace_nodes(nodes)
    index.replace_pods(pods)
    for k, t in enumerate((T0, T0 + resolution)):
        batches = []
        for i in range(n_nodes):
            node = f"node-{i:04d}"
            plist = [(f"ns-{j % 10}", f"p-{i:04d}-{j:03d}", {"app": (0.05 * (k + 1) * (j + 1), 20e6 + j)})
                     for j in range(pods_per_node)]
            batches.append(pod_batch(node, t, plist, 10.0 + 2.0 * k, 2e9))
        store.store_many(batches)
    return store, index


@dataclass
class Trust:
    """The CAs and credentials of one test: front proxy, users, serving."""

    tmp: Path
    front_proxy_ca: CertPair = field(default_factory=lambda: generate_ca("front-proxy-ca"))
    client_ca: CertPair = field(default_factory=lambda: generate_ca("kubernetes-ca"))

    def cert_files(self, pair: CertPair, name: str) -> tuple[str, str]:
        crt, key = self.tmp / f"{name}.crt", self.tmp / f"{name}.key"
        pair.write(crt, key)
        return str(crt), str(key)

    def proxy_cert(self, cn: str = "front-proxy-client") -> CertPair:
        return issue_cert(self.front_proxy_ca, cn, client=True)

    def user_cert(self, user: str, groups: tuple[str, ...] = ()) -> CertPair:
        return issue_cert(self.client_ca, user, organizations=groups, client=True)

    def requestheader(self, allowed: tuple[str, ...] = ("front-proxy-client",)) -> RequestHeaderConfig:
        return RequestHeaderConfig(ca_pem=self.front_proxy_ca.cert_pem, allowed_names=allowed,
                                   username_headers=("X-Remote-User",), group_headers=("X-Remote-Group",),
                                   extra_prefixes=("X-Remote-Extra-",), uid_headers=("X-Remote-Uid",))


@dataclass
class RunningServer:
    server: HTTPSServer
    url: str
    serving_ca_pem: bytes
    trust: Trust
    authenticator: Authenticator
    authorizer: Authorizer
    tls: ServerTLS
    resources: MetricsResources

    def client_ssl(self, cert: CertPair | None = None, name: str = "client") -> ssl.SSLContext:
        ctx = ssl.create_default_context(cadata=self.serving_ca_pem.decode())
        if cert is not None:
            ctx.load_cert_chain(*self.trust.cert_files(cert, name))
        return ctx


def proxy_headers(user: str, groups: tuple[str, ...] = (), extra: dict[str, list[str]] | None = None,
                  uid: str = "") -> list[tuple[str, str]]:
    """What kube-apiserver's aggregation proxy sets: repeated groups, percent-encoded extra keys."""
    h = [("X-Remote-User", user)]
    h += [("X-Remote-Group", g) for g in groups]
    for k, vs in (extra or {}).items():
        h += [(f"X-Remote-Extra-{k}", v) for v in vs]
    if uid:
        h.append(("X-Remote-Uid", uid))
    return h


async def start_server(tmp: Path, store: Any, index: ObjectIndex, *, trust: Trust | None = None,
                       reviewer: Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]] | None = None,
                       token_reviewer: Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]] | None = None,
                       authorized_ttl: float = 10.0, unauthorized_ttl: float = 10.0,
                       clock: Callable[[], float] | None = None, max_in_flight: int = 400) -> RunningServer:
    trust = trust or Trust(tmp)
    cert = serving_cert("", "", str(tmp / "certs"))
    serving_ca = cert.cert_file.read_bytes().split(b"-----END CERTIFICATE-----\n", 1)[1]
    authn = Authenticator(requestheader=trust.requestheader(), client_ca_pem=trust.client_ca.cert_pem,
                          token_reviewer=token_reviewer)
    authz = Authorizer(reviewer, authorized_ttl=authorized_ttl, unauthorized_ttl=unauthorized_ttl)
    tls = ServerTLS(cert)
    tls.set_client_cas(authn.client_ca_bundle())
    kwargs: dict[str, Any] = {"observe_freshness": FRESHNESS.observe_many}
    if clock is not None:
        kwargs["clock"] = clock
    resources = MetricsResources(index, store, **kwargs)
    health = HealthChecks(
        storage_ready=lambda: None if store.ready() else "no metrics to serve",
        informers_synced=lambda: None,
        metadata_informer_synced=lambda: None,
        collection_timely=lambda: None,
    ).endpoints()
    app = MetricsServerApp(resources, authn, authz, health, max_in_flight=max_in_flight).build()
    server = HTTPSServer(app, tls, "127.0.0.1", 0)
    await server.start()
    return RunningServer(server, f"https://127.0.0.1:{server.port}", serving_ca, trust, authn, authz, tls, resources)


# -- end to end: `autoscaler run` against the emulated cluster ------------------------------------



class MetricsServerThread:
    """`autoscaler run` (parsed by the real CLI parser) on its own event-loop thread."""

    def __init__(self, argv: list[str]):
        import asyncio

        from autoscaler.cli import build_parser

        self.args = build_parser().parse_args(["run", *argv])
        self.loop = asyncio.new_event_loop()
        self.rt: Any = None
        self.exit_code: int | None = None
        self._thread: Any = None

    def start(self, timeout: float = 60.0) -> MetricsServerThread:
        import asyncio
        import threading
        import time

        from autoscaler.server.run_cmd import build, serve

        def main() -> None:
            asyncio.set_event_loop(self.loop)
            self.rt = self.loop.run_until_complete(build(self.args))
            self.exit_code = self.loop.run_until_complete(serve(self.rt))

        self._thread = threading.Thread(target=main, name="autoscaler-run", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.rt is not None and self.rt.server is not None and self.rt.server.port:
                return self
            if not self._thread.is_alive():
                raise RuntimeError(f"autoscaler run exited early with {self.exit_code}")
            time.sleep(0.05)
        raise TimeoutError("autoscaler run did not start serving")

    @property
    def port(self) -> int:
        return int(self.rt.server.port)

    def stop(self) -> int | None:
        if self.rt is not None and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.rt.stop.set)
            self._thread.join(timeout=30)
        return self.exit_code


def metrics_only_flags() -> list[str]:
    """Switch off the HPA controller component: these tests are about the metrics API."""
    return ["--controller-mode=off"]


def run_args(cluster: Any, tmp: Path, *extra: str) -> list[str]:
    """Flags for `autoscaler run` against an emulated cluster (metrics-server's SA token)."""
    return ["--kubeconfig", str(cluster.metrics_kubeconfig), "--secure-port", "0", "--bind-address", "127.0.0.1",
            "--cert-dir", str(tmp / "serving"), "--metric-resolution", "10s", "--kubelet-request-timeout", "5s",
            "--kubelet-use-node-status-port", "--log-format", "json", *metrics_only_flags(), *extra]


def register_apiservice(cluster: Any, port: int) -> None:
    """Service + Endpoints (127.0.0.1:port) + APIServices v1 and v1beta1.metrics.k8s.io, as `sim up --with-autoscaler`
    registers them (insecureSkipTLSVerify, as metrics-server's own manifests do)."""
    from sim.autoscaler_proc import register_metrics_apiservice

    cluster.call(lambda: register_metrics_apiservice(cluster.store, port))


def kubectl(kubeconfig: Path, *argv: str, binary: str = "kubectl", check: bool = True, timeout: float = 60) -> Any:
    """Run ``binary`` (the kubectl on PATH, or a path from tests.kubectls) against ``kubeconfig``."""
    import subprocess

    proc = subprocess.run([binary, "--kubeconfig", str(kubeconfig), *argv], capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{binary} {' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    import time

    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except AssertionError as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}; last: {last}")


def probe(port: int, path: str, timeout: float = 10) -> tuple[int, str]:
    """GET ``https://127.0.0.1:port/path`` as a kubelet probe does (the serving certificate is
    self-signed: not verified): (status, body); status 0 when nothing listens yet."""
    import ssl
    import urllib.error
    import urllib.request

    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    try:
        with urllib.request.urlopen(f"https://127.0.0.1:{port}{path}", context=ctx, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:  # not listening (yet)
        return 0, ""
