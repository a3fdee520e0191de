"""A minimal async JSON client for the few kube-apiserver calls the API server itself makes.

TokenReview and SubjectAccessReview creation (delegated authn/authz) and reading the
``extension-apiserver-authentication`` ConfigMap. One keep-alive aiohttp session; credentials
come from a callable so rotated service-account tokens are picked up.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import orjson


class KubeAPIError(Exception):
    """A failed call: ``code`` is the HTTP status (0 for transport errors)."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class KubeAPI:
    def __init__(self, host: str, ssl_context: ssl.SSLContext | bool | None, headers: Callable[[], dict[str, str]] | None = None,
                 timeout: float = 10.0):
        self.host = host.rstrip("/")
        self._ssl = ssl_context
        self._headers = headers or dict
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    def _sess(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl if self._ssl is not None else True, limit=32),
                json_serialize=lambda o: orjson.dumps(o).decode(),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(self, method: str, path: str, body: Any = None, params: dict[str, str] | None = None,
                      timeout: aiohttp.ClientTimeout | None = None) -> dict[str, Any]:
        headers = {"Accept": "application/json", **self._headers()}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = orjson.dumps(body)
        try:
            async with self._sess().request(method, self.host + path, data=data, params=params, headers=headers,
                                            timeout=timeout or self._timeout) as resp:
                raw = await resp.read()
                if resp.status >= 400:
                    raise KubeAPIError(resp.status, _status_message(raw) or f"{method} {path}: HTTP {resp.status}")
                return orjson.loads(raw) if raw else {}
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise KubeAPIError(0, f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        except orjson.JSONDecodeError as exc:
            raise KubeAPIError(0, f"{method} {path}: response is not JSON: {exc}") from exc

    async def post(self, path: str, body: Any) -> dict[str, Any]:
        return await self.request("POST", path, body)

    async def get(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        return await self.request("GET", path, params=params)

    async def watch(self, path: str, params: dict[str, str]) -> AsyncIterator[dict[str, Any]]:
        """Yield watch events (``{"type", "object"}``) until the server ends the stream."""
        headers = {"Accept": "application/json", **self._headers()}
        q = {**params, "watch": "true", "allowWatchBookmarks": "true"}
        try:
            async with self._sess().get(self.host + path, params=q, headers=headers,
                                        timeout=aiohttp.ClientTimeout(total=None, sock_read=None)) as resp:
                if resp.status >= 400:
                    raise KubeAPIError(resp.status, _status_message(await resp.read()) or f"watch {path}: HTTP {resp.status}")
                async for line in resp.content:
                    if line.strip():
                        yield orjson.loads(line)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise KubeAPIError(0, f"watch {path}: {type(exc).__name__}: {exc}") from exc


def _status_message(raw: bytes) -> str:
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw[:200].decode(errors="replace").strip()
    return str(obj.get("message") or "") if isinstance(obj, dict) else ""
