"""A fault-injecting HTTPS proxy, put in front of a kubelet or the API server.

Tests (and later ``autoscaler sim up``) switch faults at run time to see what users see when a
kubelet or kube-apiserver misbehaves. The proxy terminates TLS (so it can present a wrong
certificate or rewrite a response), forwards each request to the upstream over a fresh TLS
connection with ``Connection: close`` and relays the answer, unless a fault says otherwise.

Faults (:data:`KINDS`), each a :class:`Rule` that can be limited to some methods, a path pattern,
a number of requests (``count``) or a time (``duration``); ``on_hit`` runs on the proxy's loop just
before a fault answers (a test makes a concurrent change exactly then):

==============  ===================================================================================
``hang``        accept and read the request, answer nothing until the rule ends (then serve it)
``reset``       relay the response head and half the body, then reset the connection (RST); like
                ``truncated`` it reads the whole upstream answer first (not for watches)
``slow``        drip the response, ``size`` bytes every ``delay`` seconds
``garbage``     ``200 OK`` with a body no parser understands
``huge``        ``200 OK`` streaming ``size`` bytes without a Content-Length
``truncated``   relay the head (Content-Length intact) and half the body, then close
``wrong_ca``    serve a certificate from a CA nobody trusts (connection-level)
``wrong_san``   serve a cluster-CA certificate for another host (connection-level)
``flap``        stop listening (connection refused) in the down half of each 2 × ``delay`` period
``status``      answer ``status`` (default 503) with a Kubernetes Status body: 5xx bursts
``conflict``    answer 409 Conflict, as an update with a stale resourceVersion gets
``gone``        410 Gone for requests with a resourceVersion: a watch gets an ERROR event, a list a 410
``watch_drop``  relay a watch for ``delay`` seconds, then cut the connection
==============  ===================================================================================

:meth:`FaultProxy.drop_streams` also cuts every stream relayed right now (watches established before).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import ssl
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

KINDS = ("hang", "reset", "slow", "garbage", "huge", "truncated", "wrong_ca", "wrong_san", "flap", "status",
         "conflict", "gone", "watch_drop")
CONNECTION_KINDS = ("wrong_ca", "wrong_san", "flap")
_REASONS = {500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout", 409: "Conflict", 410: "Expired",
            429: "TooManyRequests"}
_PHRASES = {200: "OK", 409: "Conflict", 410: "Gone", 429: "Too Many Requests", 500: "Internal Server Error",
            502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}
_HOP = {"connection", "keep-alive", "proxy-connection"}


@dataclass
class Rule:
    """One fault: ``kind`` for requests matching ``methods`` and ``path`` (a regex searched in the
    path and query), for the first ``count`` of them and/or ``duration`` seconds from now."""

    kind: str
    methods: frozenset[str] | None = None
    path: str | None = None
    status: int = 503
    delay: float = 1.0
    size: int = 64
    count: int | None = None
    duration: float | None = None
    on_hit: Callable[[Request], None] | None = None
    started: float = field(default_factory=time.monotonic)
    hits: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown fault {self.kind!r}; expected one of {', '.join(KINDS)}")
        if self.methods is not None:
            self.methods = frozenset(m.upper() for m in self.methods)

    def active(self) -> bool:
        if self.count is not None and self.hits >= self.count:
            return False
        return self.duration is None or time.monotonic() - self.started < self.duration

    def matches(self, method: str, target: str) -> bool:
        if self.kind in CONNECTION_KINDS:
            return False
        if self.methods is not None and method not in self.methods:
            return False
        return self.path is None or re.search(self.path, target) is not None

    def flap_down(self) -> bool:
        """Down during the second half of each 2 × ``delay`` period."""
        return (time.monotonic() - self.started) % (2 * self.delay) >= self.delay


@dataclass
class Request:
    method: str
    target: str
    head: bytes
    body: bytes

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.target).query)

    @property
    def is_watch(self) -> bool:
        q = self.query
        return q.get("watch", [""])[0] in ("true", "1") or "/watch/" in urlsplit(self.target).path


class FaultProxy:
    """An asyncio HTTPS proxy to ``upstream`` (host, port) with switchable faults.

    ``server_ssl`` is what it normally serves with; ``alternate_ssl`` maps ``wrong_ca`` /
    ``wrong_san`` to the contexts those faults serve with; ``upstream_ssl`` verifies the upstream.
    ``set`` / ``clear`` may be called from any thread (rules are replaced, never mutated in place
    by the caller); :attr:`counts` tells how many requests each fault answered.
    """

    def __init__(self, upstream: tuple[str, int], *, server_ssl: ssl.SSLContext, upstream_ssl: ssl.SSLContext,
                 alternate_ssl: dict[str, ssl.SSLContext] | None = None, host: str = "127.0.0.1") -> None:
        self.upstream = upstream
        self.server_ssl = server_ssl
        self.upstream_ssl = upstream_ssl
        self.alternate_ssl = dict(alternate_ssl or {})
        self.host = host
        self.port = 0
        self.rules: tuple[Rule, ...] = ()
        self.counts: dict[str, int] = {}
        self.forwarded = 0
        self._server: asyncio.AbstractServer | None = None
        self._flapper: asyncio.Task | None = None
        self._streams: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task] = set()

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    # --- control -------------------------------------------------------------------------------

    def set(self, kind: str, **params: Any) -> Rule:
        """Replace every fault by one (``set("status", status=500, count=5)``)."""
        rule = Rule(kind, **params)
        self.rules = (rule,)
        return rule

    def add(self, kind: str, **params: Any) -> Rule:
        """Add a fault; the first active matching rule applies."""
        rule = Rule(kind, **params)
        self.rules = (*self.rules, rule)
        return rule

    def clear(self) -> None:
        self.rules = ()

    def drop_streams(self) -> int:
        """Cut every response being relayed right now (watches); returns how many."""
        streams = list(self._streams)
        for w in streams:
            _reset(w)
        return len(streams)

    def _rule(self, pred: Any) -> Rule | None:
        for rule in self.rules:
            if rule.active() and pred(rule):
                return rule
        return None

    def _count(self, rule: Rule) -> None:
        rule.hits += 1
        self.counts[rule.kind] = self.counts.get(rule.kind, 0) + 1

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self, port: int = 0) -> FaultProxy:
        self.server_ssl.sni_callback = self._pick_certificate
        await self._listen(port)
        self._flapper = asyncio.create_task(self._flap(), name="fault-proxy-flap")
        return self

    async def _listen(self, port: int) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, port, reuse_address=True,
                                                  ssl=self.server_ssl, ssl_handshake_timeout=10)
        self.port = self._server.sockets[0].getsockname()[1]

    def _pick_certificate(self, sslobj: Any, _server_name: str | None, _ctx: ssl.SSLContext) -> None:
        """Called during each handshake (with or without SNI): serve a wrong certificate if asked."""
        rule = self._rule(lambda r: r.kind in ("wrong_ca", "wrong_san") and r.kind in self.alternate_ssl)
        if rule is not None:
            self._count(rule)
            sslobj.context = self.alternate_ssl[rule.kind]

    async def _flap(self) -> None:
        """Listen or not, as an active ``flap`` rule says (a restarting kubelet refuses connections)."""
        while True:
            rule = self._rule(lambda r: r.kind == "flap")
            down = rule is not None and rule.flap_down()
            if down and self._server is not None:
                self._count(rule)
                self._server.close()
                self._server = None
            elif not down and self._server is None:
                await self._listen(self.port)
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        if self._flapper is not None:
            self._flapper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flapper
        if self._server is not None:
            self._server.close()
            self._server = None
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # --- one connection ------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError, asyncio.LimitOverrunError, ValueError):
            pass  # the client went away or failed the handshake: nothing to report
        except asyncio.CancelledError:
            pass  # the proxy stops: a connection task ends quietly
        finally:
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        req = await _read_request(reader)
        if req is None:
            return
        rule = self._rule(lambda r: r.matches(req.method, req.target))
        if rule is None:
            await self._forward(req, writer)
            return
        if rule.kind == "gone" and req.query.get("resourceVersion", [""])[0] in ("", "0"):
            await self._forward(req, writer)  # nothing to expire
            return
        self._count(rule)
        if rule.on_hit is not None:
            rule.on_hit(req)
        await self._fault(rule, req, writer)

    async def _fault(self, rule: Rule, req: Request, writer: asyncio.StreamWriter) -> None:
        kind = rule.kind
        if kind == "hang":
            while rule in self.rules and rule.active():
                await asyncio.sleep(0.05)
            await self._forward(req, writer)
        elif kind == "status":
            _status(writer, rule.status, f"the server is currently unable to handle the request (injected {rule.status})")
        elif kind == "conflict":
            what = _object_of(req.target)
            _status(writer, 409, f"Operation cannot be fulfilled on {what}: the object has been modified; "
                                 "please apply your changes to the latest version and try again")
        elif kind == "gone":
            msg = f"too old resource version: {req.query['resourceVersion'][0]} (injected)"
            if req.is_watch:
                event = {"type": "ERROR", "object": _status_obj(410, msg)}
                _head(writer, 200, "application/json", None)
                writer.write(_chunk(json.dumps(event).encode() + b"\n") + b"0\r\n\r\n")
            else:
                _status(writer, 410, msg)
        elif kind == "garbage":
            body = b"\x00\x17\xff garbage{{{ not a metric \xfe\n" * 8
            _head(writer, 200, "text/plain; version=0.0.4", len(body))
            writer.write(body)
        elif kind == "huge":
            _head(writer, 200, "text/plain; version=0.0.4", None)
            line = b"# " + b"x" * 1021 + b"\n"
            block = _chunk(line * 64)
            for _ in range(max(1, rule.size // len(block))):
                if writer.transport.is_closing():
                    return
                writer.write(block)
                await writer.drain()
            writer.write(b"0\r\n\r\n")
        else:
            await self._forward(req, writer, rule)
            return
        await writer.drain()

    async def _forward(self, req: Request, writer: asyncio.StreamWriter, rule: Rule | None = None) -> None:
        host, port = self.upstream
        try:
            up_r, up_w = await asyncio.wait_for(
                asyncio.open_connection(host, port, ssl=self.upstream_ssl, server_hostname=host), 10)
        except (OSError, TimeoutError, ssl.SSLError):
            _status(writer, 502, "the fault proxy could not reach its upstream")
            await writer.drain()
            return
        self.forwarded += 1
        try:
            up_w.write(_rewrite_head(req.head) + req.body)
            await up_w.drain()
            head = await up_r.readuntil(b"\r\n\r\n")
            kind = rule.kind if rule is not None else None
            if kind in ("reset", "truncated"):
                body = await _read_body(up_r, head)
                writer.write(_rewrite_head(head) + body[: len(body) // 2])
                await writer.drain()
                if kind == "reset":
                    _reset(writer)
                return
            writer.write(_rewrite_head(head))
            await self._relay(up_r, writer, rule, req)
        finally:
            up_w.close()

    async def _relay(self, up: asyncio.StreamReader, writer: asyncio.StreamWriter, rule: Rule | None,
                     req: Request) -> None:
        drop_at = time.monotonic() + rule.delay if rule is not None and rule.kind == "watch_drop" else None
        slow = rule is not None and rule.kind == "slow"
        self._streams.add(writer)
        try:
            while True:
                timeout = None if drop_at is None else max(0.0, drop_at - time.monotonic())
                try:
                    data = await asyncio.wait_for(up.read(rule.size if slow else 65536), timeout)
                except TimeoutError:
                    _reset(writer)
                    return
                if not data:
                    return
                writer.write(data)
                await writer.drain()
                if slow:
                    await asyncio.sleep(rule.delay)
        finally:
            self._streams.discard(writer)


# --- HTTP/1.1 bits --------------------------------------------------------------------------------

async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    line, _, _ = head.partition(b"\r\n")
    method, target, _ = line.decode("latin-1").split(" ", 2)
    length = int(_header(head, "content-length") or 0)
    body = await reader.readexactly(length) if length else b""
    return Request(method.upper(), target, head, body)


async def _read_body(reader: asyncio.StreamReader, head: bytes) -> bytes:
    length = _header(head, "content-length")
    if length is not None:
        return await reader.readexactly(int(length))
    return await reader.read()


def _header(head: bytes, name: str) -> str | None:
    for line in head.split(b"\r\n")[1:]:
        k, sep, v = line.partition(b":")
        if sep and k.strip().lower() == name.encode():
            return v.strip().decode("latin-1")
    return None


def _rewrite_head(head: bytes) -> bytes:
    """Drop hop-by-hop connection headers and ask for ``Connection: close``: one request per connection."""
    lines = head.rstrip(b"\r\n").split(b"\r\n")
    kept = [lines[0]] + [ln for ln in lines[1:] if ln.partition(b":")[0].strip().lower().decode() not in _HOP]
    return b"\r\n".join([*kept, b"Connection: close", b"", b""])


def _head(writer: asyncio.StreamWriter, code: int, content_type: str, length: int | None) -> None:
    size = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    writer.write(f"HTTP/1.1 {code} {_PHRASES.get(code, 'Error')}\r\nContent-Type: {content_type}\r\n"
                 f"{size}\r\nConnection: close\r\n\r\n".encode())


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _status_obj(code: int, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": _REASONS.get(code, "InternalError"), "code": code}


def _status(writer: asyncio.StreamWriter, code: int, message: str) -> None:
    body = json.dumps(_status_obj(code, message)).encode()
    _head(writer, code, "application/json", len(body))
    writer.write(body)


def _object_of(target: str) -> str:
    """``/apis/apps/v1/namespaces/default/deployments/web/scale`` → ``deployments.apps "web"``."""
    parts = urlsplit(target).path.strip("/").split("/")
    group = parts[1] if parts[0] == "apis" and len(parts) > 1 else ""
    i = parts.index("namespaces") + 2 if "namespaces" in parts else 3 if parts[0] == "apis" else 2
    resource = parts[i] if len(parts) > i else "objects"
    name = parts[i + 1] if len(parts) > i + 1 else ""
    return f'{resource}{"." + group if group else ""} "{name}"'


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP RST (SO_LINGER 0), as a crashed peer or a middlebox does."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


# --- wiring to a cluster ------------------------------------------------------------------------

def _server_context(cert_pem: bytes, key_pem: bytes, workdir: Path, stem: str) -> ssl.SSLContext:
    crt, key = workdir / f"{stem}.crt", workdir / f"{stem}.key"
    workdir.mkdir(parents=True, exist_ok=True)
    crt.write_bytes(cert_pem)
    key.touch(mode=0o600, exist_ok=True)
    key.write_bytes(key_pem)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(crt), str(key))
    return ctx


def cluster_proxy(ca: Any, upstream: tuple[str, int], workdir: Path) -> FaultProxy:
    """A proxy that normally serves a certificate from the cluster CA (``ca``: a CertPair) for
    127.0.0.1/localhost, and verifies the upstream against the same CA. ``wrong_ca`` serves a
    certificate for the same names from a fresh CA; ``wrong_san`` one from the cluster CA for
    another host."""
    from autoscaler.k8s.certs import generate_ca, issue_cert

    names = {"dns_names": ("localhost",), "ip_addresses": ("127.0.0.1",), "server": True}
    good = issue_cert(ca, "fault-proxy", **names)
    other = issue_cert(generate_ca("not-the-cluster-ca"), "fault-proxy", **names)
    elsewhere = issue_cert(ca, "fault-proxy", dns_names=("elsewhere.invalid",), ip_addresses=("192.0.2.1",),
                           server=True)
    upstream_ssl = ssl.create_default_context(cadata=ca.cert_pem.decode())
    return FaultProxy(upstream, server_ssl=_server_context(good.cert_pem, good.key_pem, workdir, "proxy"),
                      upstream_ssl=upstream_ssl,
                      alternate_ssl={"wrong_ca": _server_context(other.cert_pem, other.key_pem, workdir, "wrong-ca"),
                                     "wrong_san": _server_context(elsewhere.cert_pem, elsewhere.key_pem, workdir,
                                                                  "wrong-san")})


async def proxy_kubelet(cluster: Any, node: str, workdir: Path) -> FaultProxy:
    """Put a proxy in front of an emulated node's kubelet: the Node's status now advertises the
    proxy's port (``daemonEndpoints.kubeletEndpoint.Port``), which a collector using
    ``--kubelet-use-node-status-port`` scrapes."""
    kubelet = cluster.kubelet(node)
    proxy = await cluster_proxy(cluster.pki.ca, ("127.0.0.1", kubelet.port), Path(workdir) / node).start()

    def advertise(o: dict) -> None:
        o["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] = proxy.port

    cluster.store.mutate("nodes", None, node, advertise, subresource="status")
    return proxy


async def proxy_apiserver(ca: Any, server_url: str, kubeconfig: Path, out: Path, workdir: Path) -> FaultProxy:
    """Put a proxy in front of an API server and write ``out``: ``kubeconfig`` with its server
    replaced by the proxy's URL (same CA and credentials; client certificates do not pass a
    TLS-terminating proxy, so use a token kubeconfig)."""
    split = urlsplit(server_url)
    proxy = await cluster_proxy(ca, (split.hostname or "127.0.0.1", split.port or 443), Path(workdir)).start()
    doc = yaml.safe_load(Path(kubeconfig).read_text())
    for c in doc["clusters"]:
        c["cluster"]["server"] = proxy.url
    out.touch(mode=0o600, exist_ok=True)
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return proxy


__all__ = ["CONNECTION_KINDS", "KINDS", "FaultProxy", "Rule", "cluster_proxy", "proxy_apiserver", "proxy_kubelet"]
