"""A small async JSON client for the kube-apiserver calls the controller makes.

GET/PUT/POST/PATCH with one keep-alive aiohttp session, the Kubernetes ``Status`` of a failure
kept (code and reason, so callers can tell a conflict from a not-found), and credentials taken
from the :class:`~autoscaler.k8s.kubeconfig.KubeConfig` on every call (rotated tokens apply).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from autoscaler.k8s.kubeconfig import KubeConfig

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"


class KubeError(Exception):
    """A failed call: ``code`` is the HTTP status (0 for transport errors), ``reason`` the Status reason."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message

    @property
    def conflict(self) -> bool:
        return self.code == 409 and self.reason == "Conflict"

    @property
    def not_found(self) -> bool:
        return self.code == 404


def seg(name: str) -> str:
    """One path segment, escaped."""
    return quote(name, safe="")


class KubeClient:
    """JSON requests against kube-apiserver with the kubeconfig's TLS settings and identity."""

    def __init__(self, kube: KubeConfig, *, timeout: float = 15.0, user_agent: str = "autoscaler-controller",
                 connections: int = 16) -> None:
        self.kube = kube
        self.host = kube.host.rstrip("/")
        self.user_agent = user_agent
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None
        self.requests = 0

    def _sess(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self.kube.ssl_context(), limit=self._connections))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(self, method: str, path: str, body: Any = None, *, params: dict[str, str] | None = None,
                      content_type: str = "application/json") -> dict[str, Any]:
        headers = {"Accept": "application/json", "User-Agent": self.user_agent, **self.kube.auth_headers()}
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = orjson.dumps(body)
        self.requests += 1
        try:
            async with self._sess().request(method, self.host + path, data=data, params=params, headers=headers,
                                            timeout=self._timeout) as resp:
                raw = await resp.read()
                if resp.status >= 400:
                    raise _status_error(resp.status, raw, f"{method} {path}")
                return orjson.loads(raw) if raw else {}
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise KubeError(0, "", f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        except orjson.JSONDecodeError as exc:
            raise KubeError(0, "", f"{method} {path}: response is not JSON: {exc}") from exc

    async def get(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        return await self.request("GET", path, params=params)

    async def put(self, path: str, body: Any) -> dict[str, Any]:
        return await self.request("PUT", path, body)

    async def post(self, path: str, body: Any) -> dict[str, Any]:
        return await self.request("POST", path, body)

    async def patch(self, path: str, body: Any, content_type: str = MERGE_PATCH) -> dict[str, Any]:
        return await self.request("PATCH", path, body, content_type=content_type)

    async def __aenter__(self) -> KubeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _status_error(code: int, raw: bytes, what: str) -> KubeError:
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return KubeError(code, "", f"{what}: HTTP {code}: {raw[:200].decode(errors='replace').strip()}")
    if isinstance(doc, dict) and doc.get("kind") == "Status":
        return KubeError(code, str(doc.get("reason") or ""), str(doc.get("message") or f"{what}: HTTP {code}"))
    return KubeError(code, "", f"{what}: HTTP {code}")
