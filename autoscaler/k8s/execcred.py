"""client-go credential plugins: a kubeconfig user's ``exec`` section (EKS, GKE, AKS, kubelogin, ...).

The plugin is a command that prints an ``ExecCredential`` (``client.authentication.k8s.io/v1`` or
``v1beta1``) holding a bearer token and/or a client certificate and key, optionally with an
expiry. As client-go does: the command runs with the kubeconfig's ``args`` and extra ``env``, and
``KUBERNETES_EXEC_INFO`` describing the request (and the cluster, with ``provideClusterInfo``);
its credential is reused until ``expirationTimestamp`` or until the API server answers 401, and a
missing command is reported with the kubeconfig's ``installHint``.

Running the plugin blocks the caller (the protocol is a synchronous process call), so async code
asks :meth:`ExecPlugin.fresh` first and runs :meth:`ExecPlugin.credential` in a worker thread when
a run is due (``KubeConfig.auth_headers_async``): the event loop keeps scraping, serving and
renewing leases meanwhile. A run happens on the first request and again only when the credential
expires or is rejected: typically every 15 minutes to an hour.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from autoscaler.k8s.timefmt import parse_time

API_VERSIONS = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1")
INTERACTIVE_MODES = ("Never", "IfAvailable", "Always")
PLUGIN_DOCS = "https://kubernetes.io/docs/reference/access-authn-authz/authentication/#client-go-credential-plugins"
#: How long one plugin run may take before it counts as failed (client-go has none; a server must not hang).
EXEC_TIMEOUT = 120.0


class ExecCredentialError(ValueError):
    """The plugin is misconfigured, missing, failed or printed an unusable credential."""


@dataclass(frozen=True)
class ExecCredential:
    """What one plugin run gave: a token and/or a PEM certificate and key; ``expires`` in Unix seconds."""

    token: str | None = None
    cert_pem: bytes | None = None
    key_pem: bytes | None = None
    expires: float | None = None


class ExecPlugin:
    """One kubeconfig user's ``exec`` section; :meth:`credential` runs the command when needed."""

    def __init__(self, spec: Mapping[str, Any], *, where: str, cluster: Mapping[str, Any] | None = None,
                 base_dir: str | None = None, clock: Callable[[], float] = time.time,
                 stdin_is_terminal: Callable[[], bool] | None = None) -> None:
        self.where = where
        if not isinstance(spec, Mapping):
            raise ExecCredentialError(f"{where}: exec must be a mapping")
        command = spec.get("command")
        if not isinstance(command, str) or not command:
            raise ExecCredentialError(f"{where}: exec.command is required")
        self.api_version = spec.get("apiVersion")
        if self.api_version not in API_VERSIONS:
            raise ExecCredentialError(f"{where}: exec.apiVersion {self.api_version!r} is not supported; "
                                      f"use one of {', '.join(API_VERSIONS)}")
        mode = spec.get("interactiveMode")
        if mode is None:
            if self.api_version.endswith("/v1"):
                raise ExecCredentialError(f"{where}: exec.interactiveMode must be specified for "
                                          f"{self.api_version} to use exec authentication plugin")
            mode = "IfAvailable"
        if mode not in INTERACTIVE_MODES:
            raise ExecCredentialError(f"{where}: exec.interactiveMode: invalid value {mode!r}; "
                                      f"expected one of {', '.join(INTERACTIVE_MODES)}")
        self.interactive_mode = mode
        args = spec.get("args") or []
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise ExecCredentialError(f"{where}: exec.args must be a list of strings")
        env: dict[str, str] = {}
        for i, item in enumerate(spec.get("env") or []):
            if not isinstance(item, Mapping) or not isinstance(item.get("name"), str) or not isinstance(item.get("value"), str):
                raise ExecCredentialError(f"{where}: exec.env[{i}] needs a string name and value")
            env[item["name"]] = item["value"]
        # As clientcmd resolves it: a command with a path separator is relative to the kubeconfig.
        if os.sep in command and not os.path.isabs(command) and base_dir:
            command = os.path.join(base_dir, command)
        self.argv = [command, *args]
        self.env = env
        self.install_hint = str(spec.get("installHint") or "")
        self.cluster = dict(cluster) if spec.get("provideClusterInfo") and cluster is not None else None
        self.clock = clock
        self._is_terminal = stdin_is_terminal or (lambda: sys.stdin is not None and sys.stdin.isatty())
        self._cached: ExecCredential | None = None
        self._lock = threading.Lock()
        self.runs = 0

    def fresh(self) -> bool:
        """Whether :meth:`credential` would answer from the cache, without running the command."""
        cached = self._cached
        return cached is not None and (cached.expires is None or self.clock() < cached.expires)

    def credential(self) -> ExecCredential:
        """The current credential: the cached one until it expires or is rejected, else a fresh run."""
        with self._lock:
            if not self.fresh():
                self._cached = self._run()
            assert self._cached is not None
            return self._cached

    def rejected(self, token: str | None = None) -> None:
        """The API server answered 401: run the plugin again on the next request (client-go's refresh).

        ``token`` (the one that was sent) keeps a late 401 from discarding a credential that has
        already been replaced."""
        with self._lock:
            if self._cached is not None and (token is None or self._cached.token == token):
                self._cached = None

    # -- one run -----------------------------------------------------------------------------------
    def _run(self) -> ExecCredential:
        interactive = self.interactive_mode != "Never" and self._is_terminal()
        if self.interactive_mode == "Always" and not interactive:
            raise ExecCredentialError(f"{self.where}: exec plugin cannot support interactive mode: "
                                      "standard input is not a terminal")
        info: dict[str, Any] = {"kind": "ExecCredential", "apiVersion": self.api_version,
                                "spec": {"interactive": interactive}}
        if self.cluster is not None:
            info["spec"]["cluster"] = self.cluster
        env = {**os.environ, **self.env, "KUBERNETES_EXEC_INFO": json.dumps(info)}
        self.runs += 1
        try:
            proc = subprocess.run(self.argv, env=env, stdout=subprocess.PIPE,
                                  stdin=None if interactive else subprocess.DEVNULL,
                                  stderr=None if interactive else subprocess.PIPE,
                                  timeout=EXEC_TIMEOUT, check=False)
        except FileNotFoundError:
            hint = f"\n\n{self.install_hint}" if self.install_hint else ""
            raise ExecCredentialError(
                f"{self.where}: exec: executable {self.argv[0]} not found\n\nIt looks like you are trying to use "
                f"a client-go credential plugin that is not installed.\n\nTo learn more about this feature, "
                f"consult the documentation available at:\n      {PLUGIN_DOCS}{hint}") from None
        except PermissionError as exc:
            raise ExecCredentialError(f"{self.where}: exec: cannot run {self.argv[0]}: {exc}") from None
        except subprocess.TimeoutExpired:
            raise ExecCredentialError(f"{self.where}: exec: {self.argv[0]} did not finish within "
                                      f"{EXEC_TIMEOUT:g}s") from None
        if proc.returncode != 0:
            err = (proc.stderr or b"").decode(errors="replace").strip()
            raise ExecCredentialError(f"{self.where}: exec: executable {self.argv[0]} failed with exit code "
                                      f"{proc.returncode}" + (f": {err}" if err else ""))
        return self._parse(proc.stdout)

    def _parse(self, out: bytes) -> ExecCredential:
        bad = f"{self.where}: exec plugin {self.argv[0]}"
        try:
            doc = json.loads(out)
        except ValueError as exc:
            raise ExecCredentialError(f"{bad}: output is not an ExecCredential (invalid JSON: {exc})") from None
        except RecursionError:
            raise ExecCredentialError(f"{bad}: output is not an ExecCredential (JSON nested too deeply)") from None
        if not isinstance(doc, dict) or doc.get("kind") != "ExecCredential":
            raise ExecCredentialError(f"{bad}: output is not an ExecCredential")
        if doc.get("apiVersion") != self.api_version:
            raise ExecCredentialError(f"{bad}: exec plugin is configured to use API version {self.api_version}, "
                                      f"plugin returned version {doc.get('apiVersion')}")
        status = doc.get("status")
        if not isinstance(status, dict):
            raise ExecCredentialError(f"{bad}: exec plugin didn't return a status field")
        token = status.get("token") or None
        cert, key = status.get("clientCertificateData") or None, status.get("clientKeyData") or None
        if bool(cert) != bool(key):
            raise ExecCredentialError(f"{bad}: exec plugin returned only certificate or key, not both")
        if not token and not cert:
            raise ExecCredentialError(f"{bad}: exec plugin didn't return a token or cert/key pair")
        expires = None
        if status.get("expirationTimestamp"):
            try:
                expires = parse_time(str(status["expirationTimestamp"]))
            except ValueError as exc:
                raise ExecCredentialError(f"{bad}: invalid expirationTimestamp: {exc}") from None
        return ExecCredential(token=str(token) if token else None,
                              cert_pem=str(cert).encode() if cert else None,
                              key_pem=str(key).encode() if key else None, expires=expires)
