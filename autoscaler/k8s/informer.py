"""A small asyncio informer: list + watch of one resource path, kept in a local cache.

Behaves like client-go's reflector: paginated list, then a watch from the list's
resourceVersion with bookmarks; a ``410 Gone`` (on the watch request or as an ERROR event)
triggers a fresh list, whose differences from the cache are delivered as ADDED / MODIFIED /
DELETED; any other failure backs off exponentially (with jitter) and resumes. It talks to
kube-apiserver directly with aiohttp (one keep-alive session, watch lines decoded with orjson)
using the :class:`~autoscaler.k8s.kubeconfig.KubeConfig`'s TLS settings and credentials.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson
import structlog

from autoscaler.k8s.kubeconfig import KubeConfig

log = structlog.get_logger(__name__)

Handler = Callable[[str, dict, dict | None], None]
Transform = Callable[[dict], dict]

ACCEPT_JSON = "application/json"
ACCEPT_METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
ACCEPT_METADATA = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"


class _Gone(Exception):
    """The resourceVersion we hold is too old: list again."""


class ApiRequestError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


def object_key(obj: dict) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{ns}/{meta.get('name')}" if ns else str(meta.get("name"))


def _to_metadata(obj: dict) -> dict:
    """Full object to PartialObjectMetadata, for servers that ignore the ``as=`` Accept parameter."""
    if obj.get("kind") == "PartialObjectMetadata":
        return obj
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata") or {}}


class Backoff:
    """The reflector's backoff: from ``initial`` doubling up to ``cap`` (plus up to 50% jitter), back to
    ``initial`` after a clean watch or after ``reset_after`` seconds without a failure (client-go's
    2 minutes), so outages hours apart don't inherit each other's delay."""

    def __init__(self, initial: float, cap: float, reset_after: float = 120.0) -> None:
        self.initial, self.cap, self.reset_after = initial, cap, reset_after
        self.current = initial
        self._last_failure = -float("inf")

    def reset(self) -> None:
        self.current = self.initial

    def next(self, now: float) -> float:
        """The delay before retrying after a failure at ``now`` (monotonic seconds)."""
        if now - self._last_failure > self.reset_after:
            self.current = self.initial
        self._last_failure = now
        delay = self.current * (1 + random.random() * 0.5)
        self.current = min(self.current * 2, self.cap)
        return delay


class Informer:
    """list+watch of one resource path with relist on 410 Gone, bookmarks, backoff on errors."""

    def __init__(self, kube: KubeConfig, path: str, *, label_selector: str = "", field_selector: str = "",
                 metadata_only: bool = False, name: str = "", page_size: int = 500,
                 transform: Transform | None = None) -> None:
        self.kube = kube
        self.path = path.rstrip("/")
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.metadata_only = metadata_only
        self.name = name or self.path
        self.page_size = page_size
        self.transform = transform
        self._cache: dict[str, dict] = {}
        self._handlers: list[Handler] = []
        self._synced = asyncio.Event()
        self._rv: str | None = None
        self.relists = 0
        self.watch_restarts = 0
        self.backoff_initial = 0.8
        self.backoff_max = 30.0

    # -- cache -----------------------------------------------------------------------------------
    def get(self, key: str) -> dict | None:
        return self._cache.get(key)

    def items(self) -> list[dict]:
        return list(self._cache.values())

    def keys(self) -> list[str]:
        return list(self._cache)

    def count(self) -> int:
        """How many objects the cache holds (without copying its keys)."""
        return len(self._cache)

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    @property
    def resource_version(self) -> str | None:
        return self._rv

    def add_handler(self, fn: Handler) -> None:
        """``fn(type, obj, old)`` for ADDED / MODIFIED / DELETED, called in the event loop."""
        self._handlers.append(fn)

    async def wait_synced(self, timeout: float | None = None) -> bool:
        try:
            await asyncio.wait_for(self._synced.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def _notify(self, kind: str, obj: dict, old: dict | None) -> None:
        for fn in self._handlers:
            try:
                fn(kind, obj, old)
            except Exception:
                log.exception("informer handler failed", informer=self.name, event=kind, key=object_key(obj))

    def _prepare(self, obj: dict) -> dict:
        if self.metadata_only:
            obj = _to_metadata(obj)
        return self.transform(obj) if self.transform else obj

    # -- protocol --------------------------------------------------------------------------------
    def _query(self, **extra: Any) -> str:
        params: dict[str, Any] = {}
        if self.label_selector:
            params["labelSelector"] = self.label_selector
        if self.field_selector:
            params["fieldSelector"] = self.field_selector
        params.update({k: v for k, v in extra.items() if v not in (None, "")})
        return f"{self.kube.host}{self.path}?{urlencode(params)}"

    async def _headers(self, accept: str) -> dict[str, str]:
        return {"Accept": accept, "User-Agent": "autoscaler-informer", **await self.kube.auth_headers_async()}

    async def _error(self, resp: aiohttp.ClientResponse, headers: dict[str, str]) -> ApiRequestError:
        if resp.status == 401:
            self.kube.unauthorized(headers)  # an expired exec-plugin credential is renewed before the retry
        text = await resp.text(errors="replace")
        try:
            message = orjson.loads(text).get("message") or text
        except (orjson.JSONDecodeError, AttributeError):
            message = text[:300]
        return ApiRequestError(resp.status, message)

    async def _list(self, session: aiohttp.ClientSession) -> None:
        fresh: dict[str, dict] = {}
        cont: str | None = None
        rv = ""
        accept = ACCEPT_METADATA_LIST if self.metadata_only else ACCEPT_JSON
        while True:
            url = self._query(limit=self.page_size, **{"continue": cont})
            headers = await self._headers(accept)
            async with session.get(url, headers=headers) as resp:
                if resp.status == 410:
                    raise _Gone  # continue token expired: start over
                if resp.status != 200:
                    raise await self._error(resp, headers)
                doc = orjson.loads(await resp.read())
            for obj in doc.get("items") or []:
                obj = self._prepare(obj)
                fresh[object_key(obj)] = obj
            meta = doc.get("metadata") or {}
            rv = meta.get("resourceVersion") or rv
            cont = meta.get("continue")
            if not cont:
                break
        old_cache, self._cache = self._cache, fresh
        self._rv = rv
        self.relists += 1
        for key, obj in fresh.items():
            prev = old_cache.get(key)
            if prev is None:
                self._notify("ADDED", obj, None)
            elif (prev.get("metadata") or {}).get("resourceVersion") != (obj.get("metadata") or {}).get("resourceVersion"):
                self._notify("MODIFIED", obj, prev)
        for key, prev in old_cache.items():
            if key not in fresh:
                self._notify("DELETED", prev, None)
        self._synced.set()
        log.debug("informer listed", informer=self.name, items=len(fresh), resource_version=rv)

    async def _watch(self, session: aiohttp.ClientSession) -> None:
        timeout = random.randint(300, 600)
        url = self._query(watch="true", resourceVersion=self._rv, allowWatchBookmarks="true", timeoutSeconds=timeout)
        accept = ACCEPT_METADATA if self.metadata_only else ACCEPT_JSON
        client_timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=timeout + 30)
        headers = await self._headers(accept)
        async with session.get(url, headers=headers, timeout=client_timeout) as resp:
            if resp.status == 410:
                raise _Gone
            if resp.status != 200:
                raise await self._error(resp, headers)
            buf = b""
            async for chunk in resp.content.iter_any():
                buf += chunk
                if b"\n" not in chunk:
                    continue
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    if line.strip():
                        self._event(orjson.loads(line))
            if buf.strip():
                self._event(orjson.loads(buf))

    def _event(self, ev: dict) -> None:
        kind = ev.get("type")
        obj = ev.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise _Gone
            raise ApiRequestError(int(obj.get("code") or 500), str(obj.get("message")))
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if kind == "BOOKMARK":
            if rv:
                self._rv = rv
            return
        if kind not in ("ADDED", "MODIFIED", "DELETED"):
            log.warning("unknown watch event type", informer=self.name, type=kind)
            return
        obj = self._prepare(obj)
        key = object_key(obj)
        if kind == "DELETED":
            old = self._cache.pop(key, None)
            self._notify("DELETED", obj, old)
        else:
            old = self._cache.get(key)
            self._cache[key] = obj
            self._notify("ADDED" if old is None else "MODIFIED", obj, old)
        if rv:
            self._rv = rv

    async def _loop(self) -> None:
        backoff = Backoff(self.backoff_initial, self.backoff_max)
        ssl_ctx = self.kube.ssl_context()
        connector = aiohttp.TCPConnector(ssl=ssl_ctx, limit=4)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
            while True:
                try:
                    if self._rv is None:
                        await self._list(session)
                    await self._watch(session)
                    self.watch_restarts += 1
                    backoff.reset()
                except _Gone:
                    log.info("watch resourceVersion too old; relisting", informer=self.name)
                    self._rv = None
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # network, TLS, HTTP status, bad JSON: back off and retry
                    delay = backoff.next(time.monotonic())
                    log.warning("list/watch failed; retrying", informer=self.name, error=str(exc) or type(exc).__name__,
                                retry_in=round(delay, 2))
                    await asyncio.sleep(delay)

    async def run(self, stop: asyncio.Event) -> None:
        """List and watch until ``stop`` is set."""
        task = asyncio.create_task(self._loop(), name=f"informer {self.name}")
        stopper = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (task, stopper):
                t.cancel()
            for t in (task, stopper):
                with contextlib.suppress(asyncio.CancelledError):
                    await t
        if task.done() and not task.cancelled() and task.exception():
            raise task.exception()  # type: ignore[misc]
