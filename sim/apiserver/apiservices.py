"""APIService objects as the emulated aggregator reads them, and where their traffic goes.

Shared by the aggregator's routing, proxy, availability checks and discovery
(:mod:`sim.apiserver.aggregation`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from sim.apiserver.auth import UserInfo

log = structlog.get_logger(__name__)

APISERVICES = "apiservices.apiregistration.k8s.io"
AGGREGATOR_USER = UserInfo("system:kube-aggregator", groups=("system:masters",))
OPENAPI_USER = UserInfo("system:aggregator", groups=("system:masters",))


def meta_of(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def available_condition(obj: Mapping[str, Any]) -> dict[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Available":
            return c
    return None


def is_available(obj: Mapping[str, Any]) -> bool:
    cond = available_condition(obj)
    return bool(cond and cond.get("status") == "True")


def is_local(obj: Mapping[str, Any]) -> bool:
    return not (obj.get("spec") or {}).get("service")

class EndpointError(Exception):
    """Why an APIService's backend cannot be located (reason, message as kube-aggregator words them)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class Backend:
    url: str  # https://ip:port, no trailing slash
    server_name: str  # <service>.<namespace>.svc, for SNI and certificate verification


def url_host(host: str) -> str:
    """``host`` as the host part of a URL (an IPv6 address in brackets)."""
    return f"[{host}]" if ":" in host else host
