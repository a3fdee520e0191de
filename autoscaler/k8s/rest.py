"""The one async JSON client for kube-apiserver, shared by the metrics API server and the HPA controller.

The API server posts TokenReviews and SubjectAccessReviews with it; the controller reads and
writes HPAs, scales, leases and events. Both want one keep-alive aiohttp session, the
:class:`~autoscaler.k8s.kubeconfig.KubeConfig`'s TLS settings and identity (the bearer token is
asked for on every call, so a rotated ServiceAccount token applies at once), a content type per
request (PATCH flavours), and a failure as a Kubernetes ``Status`` (code and reason kept, so a
conflict can be told from a not-found). List+watch lives in :mod:`autoscaler.k8s.informer`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from autoscaler.k8s.kubeconfig import KubeConfig, KubeConfigError
from autoscaler.k8s.status import ApiError

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"


class KubeError(ApiError):
    """A failed call, as the ``Status`` kube-apiserver answered; ``code`` is 0 (no reason) for transport errors."""

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
    """JSON requests against kube-apiserver with the kubeconfig's TLS settings and identity.

    The TLS context is built here, so a bad CA or client certificate fails at construction
    (start-up), not on the first request. ``user_agent=None`` sends aiohttp's default.
    """

    def __init__(self, kube: KubeConfig, *, timeout: float = 15.0, user_agent: str | None = None,
                 connections: int = 16) -> None:
        self.kube = kube
        self.host = kube.host.rstrip("/")
        self.user_agent = user_agent
        self._ssl = kube.ssl_context()
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None
        self.requests = 0

    def _sess(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit=self._connections))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(self, method: str, path: str, body: Any = None, *, params: dict[str, str] | None = None,
                      content_type: str = JSON) -> dict[str, Any]:
        """Send ``body`` (if any) as ``content_type``; the decoded JSON answer, or :class:`KubeError`."""
        try:
            headers = {"Accept": JSON, **await self.kube.auth_headers_async()}
        except KubeConfigError as exc:  # an exec credential plugin failed
            raise KubeError(0, "", f"{method} {path}: {exc}") from None
        if self.user_agent:
            headers["User-Agent"] = self.user_agent
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
                    if resp.status == 401:
                        self.kube.unauthorized(headers)  # renew an exec-plugin credential before the next request
                    raise status_error(resp.status, raw, f"{method} {path}")
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


def status_error(code: int, raw: bytes, what: str) -> KubeError:
    """The error for an HTTP failure: the ``Status`` body's reason and message, else the text (``what`` names the call)."""
    try:
        doc = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        text = raw[:200].decode(errors="replace").strip()
        return KubeError(code, "", f"{what}: HTTP {code}: {text}" if text else f"{what}: HTTP {code}")
    if not isinstance(doc, dict):
        return KubeError(code, "", f"{what}: HTTP {code}")
    is_status = doc.get("kind") == "Status"
    details = doc.get("details") if is_status and isinstance(doc.get("details"), dict) else None
    return KubeError(code, str(doc.get("reason") or "") if is_status else "",
                     str(doc.get("message") or f"{what}: HTTP {code}"), details)
