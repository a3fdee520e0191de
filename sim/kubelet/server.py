"""Emulated kubelet HTTPS endpoints: one listening socket per node on 127.0.0.1, one shared TLS
context, aiohttp's low-level server (no router) so thousands of nodes stay cheap.

Authentication and authorization follow the kubelet's secure port (``pkg/kubelet/server/auth.go``):
a client certificate from the cluster CA or a bearer token checked with TokenReview semantics
(cached 2 minutes, like ``--authentication-token-webhook-cache-ttl``); then a SubjectAccessReview
``get nodes/<subresource>`` where the subresource is ``metrics`` for ``/metrics/*``, ``stats`` for
``/stats/*`` and ``proxy`` otherwise (cached 5 minutes when allowed, 30 seconds when denied).
No credentials → ``401 Unauthorized``; denied → ``403 Forbidden (user=..., verb=..., resource=nodes,
subresource=...)``, both plain text as the kubelet writes them.

Faults (per node, for testing the metrics pipeline): ``slow`` (delay before answering), ``http500``,
``garbage`` (200 with an unparseable body), ``truncated`` (body cut off mid-way), ``stopped``
(listener closed → connection refused) and ``wrong_ca`` (served with a certificate from a CA the
cluster does not know).
"""

from __future__ import annotations

import asyncio
import inspect
import math
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.web_server import Server

from autoscaler.k8s.certs import generate_ca, issue_cert
from sim.clock import Clock
from sim.kubelet.payload import PROM_CONTENT_TYPE, render_cadvisor, render_resource_metrics, render_summary
from sim.kubelet.stats import NodeStats

FAULT_KINDS = ("none", "slow", "http500", "garbage", "truncated", "stopped", "wrong_ca")
TEXT = "text/plain; charset=utf-8"
_METHOD_VERB = {"GET": "get", "HEAD": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


@dataclass(frozen=True)
class Fault:
    """A fault injected into one emulated kubelet. ``delay`` (real seconds) is for ``slow``."""

    kind: str = "none"
    delay: float = 5.0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unsupported kubelet fault {self.kind!r}; expected one of {', '.join(FAULT_KINDS)}")

    @classmethod
    def parse(cls, value: Fault | str | None) -> Fault:
        """``Fault``, ``None``, ``"slow"``, ``"slow:2.5"`` → Fault."""
        if value is None:
            return cls()
        if isinstance(value, Fault):
            return value
        kind, _, arg = str(value).partition(":")
        return cls(kind.strip(), float(arg)) if arg else cls(kind.strip())


NO_FAULT = Fault()


class KubeletAuth:
    """The kubelet's delegated authn/authz with its caches, on top of callables:

    ``authenticate_token(token) -> user | None`` (TokenReview), ``user_from_cert(cn, groups) -> user``
    and ``authorize(user, verb, subresource, node) -> (allowed, reason)`` (SubjectAccessReview).
    The first and last may be coroutine functions (a real API server is asked over the network);
    in-process checks answer directly. Users need a ``username`` attribute and must be hashable.
    """

    def __init__(
        self,
        authenticate_token: Callable[[str], Any],
        authorize: Callable[[Any, str, str, str], tuple[bool, str]],
        user_from_cert: Callable[[str, tuple[str, ...]], Any],
        clock: Clock,
        *,
        token_ttl: float = 120.0,
        allowed_ttl: float = 300.0,
        denied_ttl: float = 30.0,
    ) -> None:
        self._authenticate_token = authenticate_token
        self._authorize = authorize
        self._user_from_cert = user_from_cert
        self.clock = clock
        self.token_ttl, self.allowed_ttl, self.denied_ttl = token_ttl, allowed_ttl, denied_ttl
        self._tokens: dict[str, tuple[float, Any]] = {}
        self._decisions: dict[tuple[Any, str, str, str], tuple[float, bool, str]] = {}

    def clear_caches(self) -> None:
        self._tokens.clear()
        self._decisions.clear()

    async def authenticate(self, request: web.BaseRequest) -> Any:
        peer = request.transport.get_extra_info("peercert") if request.transport else None
        if peer:
            cn, orgs = "", []
            for rdn in peer.get("subject", ()):
                for key, val in rdn:
                    if key == "commonName":
                        cn = val
                    elif key == "organizationName":
                        orgs.append(val)
            if cn:
                return self._user_from_cert(cn, tuple(orgs))
        header = request.headers.get("Authorization", "")
        if header[:7].lower() != "bearer ":
            return None
        token = header[7:].strip()
        if not token:
            return None
        now = self.clock.now()
        hit = self._tokens.get(token)
        if hit is not None and hit[0] > now:
            return hit[1]
        user = self._authenticate_token(token)
        if inspect.isawaitable(user):
            user = await user
        if len(self._tokens) > 10000:
            self._tokens.clear()
        self._tokens[token] = (now + self.token_ttl, user)
        return user

    async def authorize(self, user: Any, verb: str, subresource: str, node: str) -> tuple[bool, str]:
        key = (user, verb, subresource, node)
        now = self.clock.now()
        hit = self._decisions.get(key)
        if hit is not None and hit[0] > now:
            return hit[1], hit[2]
        answer = self._authorize(user, verb, subresource, node)
        allowed, reason = (await answer) if inspect.isawaitable(answer) else answer
        if len(self._decisions) > 50000:
            self._decisions.clear()
        self._decisions[key] = (now + (self.allowed_ttl if allowed else self.denied_ttl), allowed, reason)
        return allowed, reason


def compact_tls_buffers(size: int = 32 * 1024) -> None:
    """Shrink asyncio's per-connection TLS read buffer (256 KiB by default) for this process.

    Every keep-alive TLS connection allocates that buffer; with one scraper connection per node,
    5,000 nodes would spend 1.25 GiB on it alone. TLS records are at most 16 KiB, so a smaller
    read chunk changes nothing but memory. Process-wide (asyncio.sslproto.SSLProtocol.max_size),
    hence opt-in: the cluster does it for large node counts.
    """
    import asyncio.sslproto

    asyncio.sslproto.SSLProtocol.max_size = max(size, 17 * 1024)


def raise_nofile_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (one socket per emulated node)."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY:
            hard = 1 << 20
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return hard
    except (ImportError, ValueError, OSError):
        return -1


class KubeletFleet:
    """Shared state of every emulated kubelet in this process: TLS contexts, auth, clock."""

    def __init__(
        self,
        serving_cert: Path,
        serving_key: Path,
        client_ca_pem: bytes,
        auth: KubeletAuth,
        clock: Clock,
        *,
        housekeeping_interval: float = 10.0,
        host: str = "127.0.0.1",
    ) -> None:
        self.auth = auth
        self.clock = clock
        self.host = host
        self.housekeeping_interval = housekeeping_interval
        self.client_ca_pem = client_ca_pem
        self.ssl = self._context(serving_cert, serving_key)
        self._serving_dir = serving_cert.parent
        self._wrong_ssl: ssl.SSLContext | None = None
        self.kubelets: dict[str, EmulatedKubelet] = {}
        raise_nofile_limit()

    def _context(self, cert: Path, key: Path) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(cert), str(key))
        ctx.load_verify_locations(cadata=self.client_ca_pem.decode())
        ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        return ctx

    def wrong_ca_context(self) -> ssl.SSLContext:
        """A serving context whose certificate chains to a CA nobody trusts (fault ``wrong_ca``)."""
        if self._wrong_ssl is None:
            ca = generate_ca("not-the-cluster-ca")
            pair = issue_cert(ca, "kubelet", ip_addresses=[self.host], dns_names=["localhost"], server=True)
            crt, key = self._serving_dir / "kubelet-wrong-ca.crt", self._serving_dir / "kubelet-wrong-ca.key"
            pair.write(crt, key)
            self._wrong_ssl = self._context(crt, key)
        return self._wrong_ssl

    async def add(self, node_name: str, stats: NodeStats, *, port: int = 0, phase: float = 0.0) -> EmulatedKubelet:
        kubelet = EmulatedKubelet(self, node_name, stats, phase=phase)
        await kubelet.start(port)
        self.kubelets[node_name] = kubelet
        return kubelet

    async def remove(self, node_name: str) -> None:
        kubelet = self.kubelets.pop(node_name, None)
        if kubelet is not None:
            await kubelet.stop()

    async def stop(self) -> None:
        kubelets = list(self.kubelets.values())
        self.kubelets.clear()
        for i in range(0, len(kubelets), 500):
            await asyncio.gather(*(k.stop() for k in kubelets[i : i + 500]), return_exceptions=True)


class EmulatedKubelet:
    """The secure port of one emulated node's kubelet."""

    def __init__(self, fleet: KubeletFleet, node_name: str, stats: NodeStats, *, phase: float = 0.0) -> None:
        self.fleet = fleet
        self.node_name = node_name
        self.stats = stats
        self.phase = phase
        self.port = 0
        #: extra path serving the resource metrics (node annotation metrics.k8s.io/resource-metrics-path)
        self.metrics_path: str | None = None
        self.requests = 0
        self._fault = NO_FAULT
        self._server: asyncio.AbstractServer | None = None
        self._http: Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = asyncio.Lock()

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self, port: int = 0) -> None:
        await self._listen(port, self.fleet.ssl)

    async def _listen(self, port: int, ctx: ssl.SSLContext) -> None:
        self._loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.fleet.host, port))
            sock.listen(256)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self.port = sock.getsockname()[1]
        self._http = Server(self._handle, handler_cancellation=True, access_log=None)  # kubelets log no requests
        self._server = await self._loop.create_server(self._http, sock=sock, ssl=ctx)

    async def stop(self) -> None:
        server, http = self._server, self._http
        self._server = self._http = None
        if server is not None:
            server.close()
        if http is not None:
            await http.shutdown(0.05)
        if server is not None:
            await server.wait_closed()

    @property
    def running(self) -> bool:
        return self._server is not None

    # --- faults ------------------------------------------------------------------------------

    @property
    def fault(self) -> Fault:
        return self._fault

    @fault.setter
    def fault(self, value: Fault | str | None) -> None:
        """Set a fault. From the cluster's loop thread listener changes complete asynchronously
        (use ``await set_fault`` to wait); from another thread this blocks until applied."""
        fault = Fault.parse(value)
        loop = self._loop
        if loop is None or not loop.is_running():
            self._fault = fault
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._fault = fault if fault.kind in ("none", "slow", "http500", "garbage", "truncated") and \
                self._fault.kind not in ("stopped", "wrong_ca") else self._fault
            self._pending = loop.create_task(self.set_fault(fault))
        else:
            asyncio.run_coroutine_threadsafe(self.set_fault(fault), loop).result(30)

    async def set_fault(self, value: Fault | str | None) -> None:
        fault = Fault.parse(value)
        async with self._lock:
            old = self._fault
            self._fault = fault
            listener_changed = {old.kind, fault.kind} & {"stopped", "wrong_ca"}
            if not listener_changed:
                return
            port = self.port
            await self.stop()
            if fault.kind == "stopped":
                return
            ctx = self.fleet.wrong_ca_context() if fault.kind == "wrong_ca" else self.fleet.ssl
            await self._listen(port, ctx)

    # --- serving -----------------------------------------------------------------------------

    def stat_time(self) -> float:
        """The time of the latest stats housekeeping (cAdvisor refreshes every ~10 s), in ms."""
        now = self.fleet.clock.now()
        h = self.fleet.housekeeping_interval
        if h > 0:
            now = self.phase + math.floor((now - self.phase) / h) * h
        return math.floor(now * 1000) / 1000

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        self.requests += 1
        fault = self._fault
        if fault.kind == "slow":
            await asyncio.sleep(fault.delay)
        auth = self.fleet.auth
        user = await auth.authenticate(request)
        if user is None:
            return web.Response(status=401, text="Unauthorized", content_type="text/plain", charset="utf-8")
        path = request.path
        sub = "metrics" if path.startswith("/metrics") else "stats" if path.startswith("/stats") else "proxy"
        verb = _METHOD_VERB.get(request.method, "get")
        allowed, _ = await auth.authorize(user, verb, sub, self.node_name)
        if not allowed:
            msg = f"Forbidden (user={user.username}, verb={verb}, resource=nodes, subresource={sub})"
            return web.Response(status=403, text=msg, content_type="text/plain", charset="utf-8")
        if fault.kind == "http500":
            return web.Response(status=500, text="Internal Server Error: \"failed to get stats\"\n",
                                content_type="text/plain", charset="utf-8")
        if fault.kind == "garbage":
            return web.Response(status=200, body=b"\x00\x17garbage{{{ not prometheus \xff\n",
                                headers={"Content-Type": PROM_CONTENT_TYPE})
        if path == "/metrics/resource" or (self.metrics_path and path == self.metrics_path):
            if request.method not in ("GET", "HEAD"):
                return web.Response(status=405, text="Method Not Allowed", content_type="text/plain")
            body = render_resource_metrics(self.stats.snapshot(self.stat_time()))
            return await self._reply(request, body, PROM_CONTENT_TYPE)
        if path == "/metrics/cadvisor":
            if request.method not in ("GET", "HEAD"):
                return web.Response(status=405, text="Method Not Allowed", content_type="text/plain")
            body = render_cadvisor(self.stats.snapshot(self.stat_time()))
            return await self._reply(request, body, PROM_CONTENT_TYPE)
        if path == "/stats/summary":
            only = request.query.get("only_cpu_and_memory", "").lower() == "true"
            body = render_summary(self.stats.snapshot(self.stat_time()), only_cpu_and_memory=only)
            return await self._reply(request, body, "application/json")
        if path == "/healthz":
            return web.Response(text="ok", content_type="text/plain", charset="utf-8")
        return web.Response(status=404, text="404 page not found\n", content_type="text/plain", charset="utf-8")

    async def _reply(self, request: web.BaseRequest, body: bytes, content_type: str) -> web.StreamResponse:
        if self._fault.kind != "truncated":
            return web.Response(body=body, headers={"Content-Type": content_type})
        resp = web.StreamResponse(headers={"Content-Type": content_type})
        resp.content_length = len(body)
        await resp.prepare(request)
        await resp.write(body[: max(1, len(body) // 2)])
        if request.transport is not None:
            request.transport.abort()
        return resp
