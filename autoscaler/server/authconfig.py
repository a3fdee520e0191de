"""Where trust comes from: flags, or the ``kube-system/extension-apiserver-authentication`` ConfigMap.

kube-apiserver publishes its client CA and front-proxy (requestheader) settings in that
ConfigMap; aggregated servers read it (RBAC: the ``extension-apiserver-authentication-reader``
Role) and keep watching it so a rotated CA takes effect without a restart. Explicit
``--client-ca-file`` / ``--requestheader-client-ca-file`` flags take precedence over the
ConfigMap, as in k8s.io/apiserver.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from autoscaler.server.authn import Authenticator, RequestHeaderConfig, parse_string_list
from autoscaler.server.tls import ServerTLS

log = structlog.get_logger(__name__)

NAMESPACE = "kube-system"
NAME = "extension-apiserver-authentication"
PATH = f"/api/v1/namespaces/{NAMESPACE}/configmaps"
FIELD_SELECTOR = f"metadata.name={NAME}"


class AuthConfigError(ValueError):
    """Unusable authentication configuration (unreadable CA file, bad PEM)."""


@dataclass(frozen=True)
class AuthFlags:
    """The ``--requestheader-*`` and ``--client-ca-file`` flags as given."""

    client_ca_file: str = ""
    requestheader_client_ca_file: str = ""
    requestheader_allowed_names: tuple[str, ...] = ()
    requestheader_username_headers: tuple[str, ...] = ("X-Remote-User",)
    requestheader_group_headers: tuple[str, ...] = ("X-Remote-Group",)
    requestheader_extra_headers_prefix: tuple[str, ...] = ("X-Remote-Extra-",)
    requestheader_uid_headers: tuple[str, ...] = ("X-Remote-Uid",)

    @property
    def complete(self) -> bool:
        """Both trust roots given by flags: the ConfigMap is not needed."""
        return bool(self.client_ca_file and self.requestheader_client_ca_file)


def _read(path: str, flag: str) -> bytes:
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise AuthConfigError(f"{flag}: cannot read {path}: {exc.strerror}") from exc
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise AuthConfigError(f"{flag}: {path} contains no PEM certificate")
    return data


class AuthConfig:
    """Combines flags and the ConfigMap and pushes the result into the authenticator and TLS."""

    def __init__(self, flags: AuthFlags, authenticator: Authenticator, tls: ServerTLS | None):
        self.flags = flags
        self.authenticator = authenticator
        self.tls = tls
        self.configmap_seen = False
        self._client_ca_flag = _read(flags.client_ca_file, "--client-ca-file") if flags.client_ca_file else b""
        self._rh_ca_flag = (_read(flags.requestheader_client_ca_file, "--requestheader-client-ca-file")
                            if flags.requestheader_client_ca_file else b"")
        self.apply({})

    def apply(self, data: dict[str, str]) -> None:
        """Recompute trust from the flags plus the ConfigMap ``data`` (``{}`` when there is none)."""
        f = self.flags
        if self._rh_ca_flag:
            rh = RequestHeaderConfig(self._rh_ca_flag, f.requestheader_allowed_names, f.requestheader_username_headers,
                                     f.requestheader_group_headers, f.requestheader_extra_headers_prefix,
                                     f.requestheader_uid_headers)
        else:
            def pick(key: str, default: tuple[str, ...]) -> tuple[str, ...]:
                return parse_string_list(data[key]) if key in data else default

            rh = RequestHeaderConfig(
                (data.get("requestheader-client-ca-file") or "").encode(),
                pick("requestheader-allowed-names", f.requestheader_allowed_names),
                pick("requestheader-username-headers", f.requestheader_username_headers),
                pick("requestheader-group-headers", f.requestheader_group_headers),
                pick("requestheader-extra-headers-prefix", f.requestheader_extra_headers_prefix),
                pick("requestheader-uid-headers", f.requestheader_uid_headers),
            )
        client_ca = self._client_ca_flag or (data.get("client-ca-file") or "").encode()
        try:
            self.authenticator.update(rh, client_ca)
        except ValueError as exc:
            raise AuthConfigError(f"{NAMESPACE}/{NAME}: {exc}") from exc
        if self.tls is not None:
            self.tls.set_client_cas(self.authenticator.client_ca_bundle())
        log.info("authentication configuration loaded", requestheader=rh.enabled, allowed_names=list(rh.allowed_names),
                 client_ca=bool(client_ca.strip()), source="flags" if self.flags.complete or not data else "configmap")

    def on_event(self, kind: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        """Informer handler for the ConfigMap: a bad update is logged and the previous trust kept."""
        if (obj.get("metadata") or {}).get("name") != NAME:
            return
        data = {} if kind == "DELETED" else dict(obj.get("data") or {})
        try:
            self.apply(data)
            self.configmap_seen = kind != "DELETED"
        except (AuthConfigError, ValueError) as exc:
            log.error("ignoring unusable authentication ConfigMap update", error=str(exc))
