"""A small HTTP/1.1 client for the scrape: GET one URL per node over kept-alive connections.

aiohttp's general machinery (request and response objects, header multidicts, stream readers,
timers) costs more per request than decoding the kubelet's answer. A scrape needs much less: one
GET with fixed headers, a 200 with a body of bounded size (``Content-Length``, chunked, or up to
the close), the connection kept for the next cycle. This protocol does just that on asyncio's
transports (TLS included): the response is parsed as it arrives into one buffer handed to the
decoder without a copy. Anything unexpected closes the connection; errors are :class:`FetchError`.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import ssl
import threading
import time
from typing import Any

#: asyncio allocates (and zero-fills) a read buffer of ``SSLProtocol.max_size`` (256 KiB) for every
#: TLS connection. Kept-alive connections to thousands of kubelets would then cost 256 KiB each,
#: more than everything else per node together. The buffer only ever holds bytes between one
#: socket read and their copy into the connection's TLS input (both synchronous, in the loop's
#: thread), so the scrape's connections share one per thread; decrypted reads are 16 KiB at most
#: (a TLS record).
SSL_READ_BUFFER = 16 * 1024
SHARED_SOCKET_BUFFER = 256 * 1024
_shared = threading.local()
_MAX_HEAD = 64 * 1024  # status line and headers


class FetchError(Exception):
    """One request failed; the message is what the logs and CycleStats show."""


class StatusError(FetchError):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f'request failed, status: "{status} {reason}"')
        self.status = status


class _SharedBufferSSLProtocol(asyncio.sslproto.SSLProtocol):
    """asyncio's TLS protocol reading the socket into the thread's shared buffer.

    asyncio has no setting for it: this replaces the protocol's own buffer after construction
    (16 KiB, the class attribute's size). Should those internals change, each connection keeps
    its own buffer: memory only, behaviour unchanged."""

    max_size = SSL_READ_BUFFER

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        view = getattr(_shared, "view", None)
        if view is None:
            _shared.buffer = bytearray(SHARED_SOCKET_BUFFER)
            view = _shared.view = memoryview(_shared.buffer)
        self._ssl_buffer = _shared.buffer
        self._ssl_buffer_view = view


class _Conn(asyncio.Protocol):
    """One connection: at most one request in flight; parses the response as bytes arrive."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._done: asyncio.Future[bytearray] | None = None
        self._limit = 0
        self._reset()

    def _reset(self) -> None:
        self._buf = bytearray()
        self._head = True  # still reading the status line and headers
        self._status = 0
        self._reason = ""
        self._length: int | None = None  # Content-Length
        self._chunked = False
        self._chunk_left = -1  # chunked: bytes left in the current chunk (-1: reading a size line)
        self._body = bytearray()
        self._keep = True
        self._got_any = False

    # -- asyncio.Protocol ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        done = self._done
        if done is not None and not done.done():
            if not self._head and self._length is None and not self._chunked:
                self._finish()  # body delimited by the close
            else:
                done.set_exception(_Disconnected(self._got_any, exc))

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost finishes or fails the request

    def data_received(self, data: bytes) -> None:
        self._got_any = True
        done = self._done
        if done is None or done.done():  # unsolicited bytes: the connection is unusable
            self.close()
            return
        try:
            self._feed(data)
        except FetchError as exc:
            self.close()
            if not done.done():
                done.set_exception(exc)

    # -- request ---------------------------------------------------------------------------------
    def request(self, head: bytes, limit: int) -> asyncio.Future[bytearray]:
        assert self.transport is not None
        self._reset()
        self._limit = limit
        self._done = asyncio.get_running_loop().create_future()
        self.transport.write(head)
        return self._done

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    # -- parsing ---------------------------------------------------------------------------------
    def _feed(self, data: bytes) -> None:
        if self._head:
            self._buf += data
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > _MAX_HEAD:
                    raise FetchError("response headers too large")
                return
            self._parse_head(bytes(self._buf[:end]))
            data = bytes(self._buf[end + 4:])
            self._buf = bytearray()
            self._head = False
            if self._status != 200:
                self._keep = False
                raise StatusError(self._status, self._reason)
            if self._length is not None and self._length > self._limit:
                raise FetchError(f"response too large: {self._length} bytes (limit {self._limit})")
            if self._length == 0:
                self._finish()
                return
        if self._chunked:
            self._feed_chunked(data)
            return
        self._body += data
        if len(self._body) > self._limit:
            raise FetchError(f"response too large: more than {self._limit} bytes")
        if self._length is not None and len(self._body) >= self._length:
            if len(self._body) > self._length:
                raise FetchError("response longer than its Content-Length")
            self._finish()

    def _parse_head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise FetchError(f"malformed HTTP status line {lines[0][:100]!r}")
        self._status = int(parts[1])
        self._reason = parts[2].decode("latin-1") if len(parts) > 2 else ""
        if parts[0] == b"HTTP/1.0":
            self._keep = False
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                raise FetchError("malformed HTTP header line")
            name = name.strip().lower()
            if name == b"content-length":
                try:
                    self._length = int(value.strip())
                except ValueError:
                    raise FetchError("malformed Content-Length") from None
                if self._length < 0:
                    raise FetchError("malformed Content-Length")
            elif name == b"transfer-encoding":
                if value.strip().lower() == b"chunked":
                    self._chunked = True
                elif value.strip().lower() != b"identity":
                    raise FetchError(f"unsupported Transfer-Encoding {value.strip()[:40]!r}")
            elif name == b"connection":
                tokens = {t.strip() for t in value.lower().split(b",")}
                if b"close" in tokens:
                    self._keep = False
                elif b"keep-alive" in tokens and parts[0] == b"HTTP/1.0":
                    self._keep = True
        if self._chunked:
            self._length = None  # chunked framing wins over a Content-Length (RFC 9112 §6.3)
        elif self._length is None:
            self._keep = False  # delimited by the close

    def _feed_chunked(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        pos = 0
        while True:
            if self._chunk_left < 0:  # a size line, or the CRLF / trailers after the last chunk
                end = buf.find(b"\r\n", pos)
                if end < 0:
                    if len(buf) - pos > 1024:
                        raise FetchError("malformed chunk size line")
                    break
                line = bytes(buf[pos:end]).split(b";", 1)[0].strip()
                pos = end + 2
                if self._chunk_left == -2:  # trailer section: ends with an empty line
                    if not line:
                        del buf[:pos]
                        self._finish()
                        return
                    continue
                try:
                    size = int(line, 16)
                except ValueError:
                    raise FetchError("malformed chunk size line") from None
                if size == 0:
                    self._chunk_left = -2
                    continue
                if len(self._body) + size > self._limit:
                    raise FetchError(f"response too large: more than {self._limit} bytes")
                self._chunk_left = size + 2  # the chunk and its CRLF
            take = min(self._chunk_left, len(buf) - pos)
            if take <= 0:
                break
            self._chunk_left -= take
            if self._chunk_left >= 2:
                self._body += buf[pos:pos + take]
            else:  # part of the chunk's CRLF is in this piece
                self._body += buf[pos:pos + take - (2 - self._chunk_left)]
            pos += take
            if self._chunk_left == 0:
                self._chunk_left = -1
        del buf[:pos]

    def _finish(self) -> None:
        done = self._done
        body = self._body
        self._body = bytearray()
        if not self._keep:
            self.close()
        if done is not None and not done.done():
            done.set_result(body)


class _Disconnected(FetchError):
    def __init__(self, got_any: bool, exc: Exception | None) -> None:
        super().__init__("connection closed before the response was complete"
                         + (f": {exc}" if exc is not None else ""))
        self.got_any = got_any


class Pool:
    """Kept-alive connections per (host, port); at most ``limit`` requests in flight in total."""

    def __init__(self, ssl_context: ssl.SSLContext | bool, limit: int, keepalive: float) -> None:
        self.ssl = ssl_context if isinstance(ssl_context, ssl.SSLContext) else None
        self.keepalive = keepalive
        self._idle: dict[tuple[str, int], list[_Conn]] = {}
        self._sem = asyncio.Semaphore(limit)
        self._last_prune = time.monotonic()

    def _take_idle(self, key: tuple[str, int], now: float) -> _Conn | None:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if not conn.closed and now - conn.idle_since < self.keepalive:
                return conn
            conn.close()
        return None

    async def _connect(self, host: str, port: int) -> _Conn:
        loop = asyncio.get_running_loop()
        conn = _Conn()
        raw: asyncio.BaseTransport | None = None
        try:
            if self.ssl is None:
                await loop.create_connection(lambda: conn, host, port)
            else:  # what create_connection(ssl=...) does, with the shared-buffer TLS protocol
                handshake: asyncio.Future[None] = loop.create_future()
                tls = _SharedBufferSSLProtocol(loop, conn, self.ssl, handshake, server_hostname=host)
                raw, _ = await loop.create_connection(lambda: tls, host, port)
                await handshake
        except BaseException as exc:
            if raw is not None:
                raw.close()
            if isinstance(exc, ssl.SSLCertVerificationError):
                raise FetchError(f"TLS verification failed: {exc}") from None
            if isinstance(exc, ssl.SSLError):
                raise FetchError(f"TLS error: {exc}") from None
            if isinstance(exc, OSError):
                raise FetchError(f"Cannot connect to host {host}:{port}: {exc.strerror or exc}") from None
            raise
        return conn

    async def get(self, host: str, port: int, head: bytes, limit: int) -> bytearray:
        """Send ``head`` (a complete GET request) and return the 200 response's body."""
        key = (host, port)
        async with self._sem:
            now = time.monotonic()
            if now - self._last_prune > self.keepalive:
                self.prune(now)
            conn = self._take_idle(key, now)
            reused = conn is not None
            if conn is None:
                conn = await self._connect(host, port)
            try:
                try:
                    body = await conn.request(head, limit)
                except _Disconnected as exc:
                    if not (reused and not exc.got_any):
                        raise
                    # the kubelet closed the idle connection as we reused it: once more on a new one
                    conn = await self._connect(host, port)
                    body = await conn.request(head, limit)
            except BaseException:
                conn.close()
                raise
            if not conn.closed:
                conn.idle_since = time.monotonic()
                self._idle.setdefault(key, []).append(conn)
            return body

    def prune(self, now: float | None = None) -> None:
        """Close connections idle for longer than ``keepalive`` (nodes that went away)."""
        now = time.monotonic() if now is None else now
        self._last_prune = now
        for key in list(self._idle):
            keep = [c for c in self._idle[key] if not c.closed and now - c.idle_since < self.keepalive]
            for c in self._idle[key]:
                if c not in keep:
                    c.close()
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]

    def idle_connections(self) -> int:
        return sum(len(v) for v in self._idle.values())

    async def close(self) -> None:
        for conns in self._idle.values():
            for c in conns:
                c.close()
        self._idle.clear()
        await asyncio.sleep(0)  # let the transports finish closing


def request_head(host: str, port: int, default_port: int, path_qs: str, headers: dict[str, Any]) -> bytes:
    """The bytes of a GET request for ``path_qs`` on ``host:port`` with ``headers``."""
    h = f"[{host}]" if ":" in host else host
    if port != default_port:
        h = f"{h}:{port}"
    lines = [f"GET {path_qs} HTTP/1.1", f"Host: {h}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
