"""The scrape's HTTP/1.1 client against raw servers: framing, limits, keep-alive and stale connections.

Real kubelets (Go's net/http) answer large bodies with chunked encoding, small ones with a
Content-Length, and close idle connections on their own schedule; the client must read every
framing byte-exact however the bytes are split, refuse bodies over the limit, and survive a
kept-alive connection that the server closed meanwhile.
"""

from __future__ import annotations

import asyncio

import pytest

from autoscaler.scraper.http1 import FetchError, Pool, StatusError, request_head

BODY = b'{"node":{"nodeName":"n"},"pods":[' + b",".join(b'{"x":%d}' % i for i in range(500)) + b"]}"


def chunked(body: bytes, size: int) -> bytes:
    out = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(body[i:i + size]), body[i:i + size]) for i in range(0, len(body), size))
    return out + b"0\r\nX-Trailer: yes\r\n\r\n"


class RawServer:
    """Answers each request on a connection with the next canned response, written in pieces."""

    def __init__(self, responses: list[bytes], piece: int = 7, close_after: int | None = None) -> None:
        self.responses = responses
        self.piece = piece
        self.close_after = close_after  # close the connection after this many responses
        self.requests: list[bytes] = []
        self.connections = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        served = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.requests.append(head)
                resp = self.responses[min(len(self.requests) - 1, len(self.responses) - 1)]
                for i in range(0, len(resp), self.piece):
                    writer.write(resp[i:i + self.piece])
                    await writer.drain()
                served += 1
                if self.close_after is not None and served >= self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    async def __aenter__(self) -> int:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()


def ok(headers: bytes, body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\n" + headers + b"\r\n" + body


async def fetch(pool: Pool, port: int, limit: int = 1 << 20) -> bytes:
    head = request_head("127.0.0.1", port, 80, "/stats/summary?only_cpu_and_memory=true", {"Accept": "application/json"})
    return bytes(await pool.get("127.0.0.1", port, head, limit))


@pytest.mark.parametrize("piece", [1, 5, 4096])
async def test_every_framing_reads_the_exact_body_and_keeps_the_connection(piece):
    responses = [ok(b"Content-Length: %d\r\n" % len(BODY), BODY),
                 ok(b"Transfer-Encoding: chunked\r\n", chunked(BODY, 999)),
                 ok(b"Content-Length: 0\r\n", b""),
                 ok(b"Transfer-Encoding: chunked\r\n", chunked(BODY, 4096))]
    srv = RawServer(responses, piece=piece)
    async with srv as port:
        pool = Pool(False, 4, keepalive=60)
        assert await fetch(pool, port) == BODY
        assert await fetch(pool, port) == BODY
        assert await fetch(pool, port) == b""
        assert await fetch(pool, port) == BODY
        await pool.close()
    assert srv.connections == 1 and len(srv.requests) == 4
    assert srv.requests[0].startswith(b"GET /stats/summary?only_cpu_and_memory=true HTTP/1.1\r\nHost: 127.0.0.1:")
    assert b"\r\nAccept: application/json\r\n" in srv.requests[0]


async def test_a_body_delimited_by_the_close_and_http_1_0_end_the_connection():
    srv = RawServer([b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nabc", b"HTTP/1.1 200 OK\r\n\r\n" + BODY], close_after=1)
    async with srv as port:
        pool = Pool(False, 4, keepalive=60)
        assert await fetch(pool, port) == b"abc"
        assert await fetch(pool, port) == BODY  # a new connection: the first one was HTTP/1.0
        assert pool.idle_connections() == 0  # close-delimited: nothing to keep
        await pool.close()
    assert srv.connections == 2


async def test_limits_and_errors():
    big = b"x" * 5000
    srv = RawServer([ok(b"Content-Length: 5000\r\n", big)])
    async with srv as port:
        with pytest.raises(FetchError, match=r"response too large: 5000 bytes \(limit 4096\)"):
            await fetch(Pool(False, 4, 60), port, limit=4096)
    srv = RawServer([ok(b"Transfer-Encoding: chunked\r\n", chunked(big, 1000))])
    async with srv as port:
        with pytest.raises(FetchError, match=r"response too large: more than 4096 bytes"):
            await fetch(Pool(False, 4, 60), port, limit=4096)
    srv = RawServer([b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 12\r\n\r\nUnauthorized"])
    async with srv as port:
        with pytest.raises(StatusError, match='request failed, status: "401 Unauthorized"') as exc:
            await fetch(Pool(False, 4, 60), port)
        assert exc.value.status == 401
    srv = RawServer([ok(b"Transfer-Encoding: chunked\r\n", b"zz\r\nabc")])
    async with srv as port:
        with pytest.raises(FetchError, match="malformed chunk size line"):
            await fetch(Pool(False, 4, 60), port)
    srv = RawServer([ok(b"Content-Length: 100\r\n", b"short")], close_after=1)
    async with srv as port:
        with pytest.raises(FetchError, match="connection closed before the response was complete"):
            await fetch(Pool(False, 4, 60), port)
    with pytest.raises(FetchError, match=r"Cannot connect to host 127\.0\.0\.1:1"):
        await fetch(Pool(False, 4, 60), 1)


async def test_a_kept_connection_the_server_closed_is_replaced_once():
    """The kubelet may close an idle connection just as the next cycle reuses it."""
    srv = RawServer([ok(b"Content-Length: %d\r\n" % len(BODY), BODY)], close_after=1)
    async with srv as port:
        pool = Pool(False, 4, keepalive=60)
        assert await fetch(pool, port) == BODY
        await asyncio.sleep(0.05)  # the server's close reaches us (or not yet: both paths must work)
        assert await fetch(pool, port) == BODY
        await pool.close()
    assert srv.connections == 2


async def test_idle_connections_past_the_keepalive_are_closed():
    srv = RawServer([ok(b"Content-Length: 2\r\n", b"ok")])
    async with srv as port:
        pool = Pool(False, 4, keepalive=60)
        assert await fetch(pool, port) == b"ok"
        assert pool.idle_connections() == 1
        pool.prune(now=asyncio.get_running_loop().time() + 10**9)
        assert pool.idle_connections() == 0
        assert await fetch(pool, port) == b"ok"
        await pool.close()
    assert srv.connections == 2


def test_kubelet_tls_trusts_only_the_cluster_ca_and_asks_for_no_tickets(tmp_path):
    """metrics-server's client trusts the cluster CA alone, not every public root of the host."""
    import ssl

    from autoscaler.k8s.certs import generate_ca
    from autoscaler.k8s.kubeconfig import KubeConfig
    from autoscaler.scraper.kubelet_client import kubelet_ssl_context
    from autoscaler.scraper.options import ScrapeOptions

    ca = generate_ca("cluster-ca")
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem)
    kube = KubeConfig(host="https://127.0.0.1:1", ca_file=str(tmp_path / "ca.crt"), token="t")
    ctx = kubelet_ssl_context(ScrapeOptions(), kube)
    assert isinstance(ctx, ssl.SSLContext)
    assert [c["subject"] for c in ctx.get_ca_certs()] == [((("commonName", "cluster-ca"),),)]
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2 and ctx.options & ssl.OP_NO_TICKET
    by_flag = kubelet_ssl_context(ScrapeOptions(kubelet_certificate_authority=str(tmp_path / "ca.crt")), None)
    assert len(by_flag.get_ca_certs()) == 1
