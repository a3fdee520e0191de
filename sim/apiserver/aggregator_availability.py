"""The aggregator's availability checks: each APIService's ``Available`` condition, with kube-aggregator's
reasons (``Passed``, ``ServiceNotFound``, ``ServicePortError``, ``EndpointsNotFound``,
``MissingEndpoints``, ``FailedDiscoveryCheck``, ``Local``)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import aiohttp
import structlog
from multidict import CIMultiDict

from autoscaler.k8s import status as st
from autoscaler.k8s.timefmt import format_time
from sim.apiserver.aggregator_proxy import identity_headers
from sim.apiserver.apiservices import (
    AGGREGATOR_USER,
    APISERVICES,
    EndpointError,
    available_condition,
    is_local,
)

log = structlog.get_logger(__name__)


def describe_error(url: str, exc: BaseException, host: str = "", port: int = 0) -> str:
    """A Go-flavoured description of a failed request (what kube-aggregator's messages contain)."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        cert_err = exc.certificate_error
        text = getattr(cert_err, "verify_message", "") or str(cert_err)
        if "unable to get local issuer" in text or "self-signed" in text or "self signed" in text:
            text = "x509: certificate signed by unknown authority"
        elif "hostname mismatch" in text or "doesn't match" in text or "IP address mismatch" in text:
            text = f"x509: certificate is not valid for the requested name ({text})"
        return f'Get "{url}": tls: failed to verify certificate: {text}'
    if isinstance(exc, aiohttp.ClientConnectorError):
        os_err = exc.os_error
        if isinstance(os_err, ConnectionRefusedError):
            return f'Get "{url}": dial tcp {host}:{port}: connect: connection refused'
        return f'Get "{url}": dial tcp {host}:{port}: {os_err.strerror or os_err}'
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return f'Get "{url}": context deadline exceeded (Client.Timeout exceeded while awaiting headers)'
    if isinstance(exc, aiohttp.ClientSSLError):
        return f'Get "{url}": remote error: tls: {exc}'
    return f'Get "{url}": {exc}'


# ---------------------------------------------------------------------------------------------------
# the aggregator
# ---------------------------------------------------------------------------------------------------


class AvailabilityChecks:
    """The remote availability controller (a part of :class:`sim.apiserver.aggregation.Aggregator`)."""

    async def check_all(self) -> None:
        """One pass of the availability controller over every APIService."""
        async with self._check_lock:
            self._load()
            names = list(self._apiservices)
            remote = [n for n in names if not is_local(self._apiservices[n])]
            for n in names:
                if is_local(self._apiservices[n]):
                    self._set_condition(n, "True", "Local", "Local APIServices are always available")
            results = await asyncio.gather(*(self.check(self._apiservices[n]) for n in remote),
                                           return_exceptions=True)
            for n, res in zip(remote, results, strict=True):
                if isinstance(res, BaseException):
                    log.warning("availability check crashed", apiservice=n, error=repr(res))
                    continue
                status, reason, message = res
                self._set_condition(n, status, reason, message)
                if status == "True" and n in self._apiservices:
                    await self._refresh_discovery(self._apiservices[n])

    async def check(self, apiservice: Mapping[str, Any]) -> tuple[str, str, str]:
        """(status, reason, message) of the Available condition for one non-local APIService."""
        spec = apiservice.get("spec") or {}
        try:
            backend = self.resolve(apiservice)
            session = self._session(apiservice)
        except EndpointError as exc:
            return "False", exc.reason, exc.message
        path = f"/apis/{spec.get('group', '')}/{spec.get('version', '')}"
        url = backend.url + path
        host, _, port = backend.url.removeprefix("https://").rpartition(":")
        headers = CIMultiDict(identity_headers(AGGREGATOR_USER))
        timeout = aiohttp.ClientTimeout(total=self.check_timeout)

        async def one() -> str | None:
            try:
                async with session.get(url, headers=headers, timeout=timeout, allow_redirects=False,
                                       server_hostname=backend.server_name) as resp:
                    await resp.read()
                    if 200 <= resp.status < 400:
                        return None
                    return f"bad status from {url}: {resp.status}"
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                return describe_error(url, exc, host.strip("[]"), int(port or 0))

        errors = await asyncio.gather(*(one() for _ in range(self.parallel_checks)))
        if any(e is None for e in errors):
            return "True", "Passed", "all checks passed"
        return "False", "FailedDiscoveryCheck", f"failing or missing response from {url}: {errors[-1]}"

    def _set_condition(self, name: str, status: str, reason: str, message: str) -> None:
        obj = self._apiservices.get(name) or self.store.try_get(APISERVICES, "", name)
        if obj is None:
            return
        cur = available_condition(obj)
        if cur and (cur.get("status"), cur.get("reason"), cur.get("message")) == (status, reason, message):
            return
        now = format_time(self.clock())

        def apply(o: dict[str, Any]) -> None:  # runs on the store's private copy
            stat = o.get("status")
            if not isinstance(stat, dict):
                stat = o["status"] = {}
            prev = available_condition(o)
            ltt = prev.get("lastTransitionTime") if prev and prev.get("status") == status else now
            conds = [c for c in stat.get("conditions") or [] if c.get("type") != "Available"]
            conds.insert(0, {"type": "Available", "status": status, "lastTransitionTime": ltt,
                             "reason": reason, "message": message})
            stat["conditions"] = conds

        try:
            updated = self.store.mutate(APISERVICES, "", name, apply, subresource="status")
        except st.ApiError as exc:
            if exc.code == 404:
                self._forget(obj)
                return
            raise
        if isinstance(updated, dict):
            self._remember(updated)
        if reason != "Local" and (cur is None or cur.get("status") != status):
            log.info("apiservice availability", apiservice=name, available=status, reason=reason, message=message)
