"""Client configuration for talking to kube-apiserver (and, from the same identity, to kubelets).

metrics-server builds one REST config: ``--kubeconfig`` when given, otherwise the in-cluster
ServiceAccount. We do the same, and for convenience outside a cluster fall back to ``$KUBECONFIG``
/ ``~/.kube/config`` the way client-go's ``BuildConfigFromFlags("", "")`` does.

The token of a projected ServiceAccount volume rotates, so :meth:`KubeConfig.bearer_token`
re-reads the file (at most once a minute, like client-go's cached token source, or at once when
the file's mtime changes). A user with an ``exec`` credential plugin (cloud providers' kubeconfigs)
gets its token or client certificate from the plugin (:mod:`autoscaler.k8s.execcred`), renewed
when it expires or the API server answers 401; TLS contexts built earlier pick up a renewed
certificate for their next connections.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import ssl
import tempfile
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from autoscaler.k8s.execcred import ExecCredential, ExecCredentialError, ExecPlugin

SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
TOKEN_REREAD_SECONDS = 60.0


class KubeConfigError(ValueError):
    """The client configuration cannot be loaded; the message names the file and the field."""


@dataclass
class KubeConfig:
    """Where kube-apiserver is and how to authenticate to it (and to kubelets)."""

    host: str
    ca_file: str | None = None
    ca_data: bytes | None = None
    token: str | None = None
    token_file: str | None = None
    client_cert_file: str | None = None
    client_key_file: str | None = None
    client_cert_data: bytes | None = None
    client_key_data: bytes | None = None
    insecure: bool = False
    tls_server_name: str | None = None
    in_cluster: bool = False
    source: str = ""
    exec_plugin: ExecPlugin | None = None
    _token_cache: tuple[str, float, float] | None = field(default=None, repr=False)  # (token, mtime, read at)
    # TLS contexts that carry the plugin's client certificate, and the certificate they carry
    _exec_contexts: weakref.WeakSet = field(default_factory=weakref.WeakSet, repr=False)
    _exec_cert: ExecCredential | None = field(default=None, repr=False)  # the one loaded into them

    # -- credentials ---------------------------------------------------------------------------
    def bearer_token(self) -> str | None:
        """The current bearer token; a token file is re-read when it changes (projected tokens rotate)."""
        if self.exec_plugin is not None:
            return self._exec_credential().token or self.token
        if self.token_file:
            now = time.monotonic()
            try:
                mtime = os.stat(self.token_file).st_mtime
            except OSError:
                mtime = -1.0
            cached = self._token_cache
            if cached and cached[1] == mtime and now - cached[2] < TOKEN_REREAD_SECONDS:
                return cached[0]
            try:
                token = Path(self.token_file).read_text().strip()
            except OSError as exc:
                if cached:  # keep the last good token while the volume is being swapped
                    return cached[0]
                raise KubeConfigError(f"cannot read token file {self.token_file}: {exc}") from exc
            self._token_cache = (token, mtime, now)
            return token
        return self.token

    def auth_headers(self) -> dict[str, str]:
        token = self.bearer_token()
        return {"Authorization": f"Bearer {token}"} if token else {}

    async def auth_headers_async(self) -> dict[str, str]:
        """:meth:`auth_headers` for the event loop: a due exec-plugin run happens in a worker thread
        (a renewed certificate is then loaded into the TLS contexts here, on the loop's thread)."""
        if self.exec_plugin is not None and not self.exec_plugin.fresh():
            try:
                await asyncio.to_thread(self.exec_plugin.credential)
            except ExecCredentialError as exc:
                raise KubeConfigError(str(exc)) from None
        return self.auth_headers()

    def unauthorized(self, headers: dict[str, str] | None = None) -> None:
        """A request with ``headers`` was answered 401: an exec credential is renewed before the next one."""
        if self.exec_plugin is not None:
            auth = (headers or {}).get("Authorization", "")
            self.exec_plugin.rejected(auth[7:] if auth.startswith("Bearer ") else None)

    def _exec_credential(self) -> ExecCredential:
        """The plugin's credential; a renewed client certificate is loaded into every context built so far."""
        assert self.exec_plugin is not None
        try:
            cred = self.exec_plugin.credential()
        except ExecCredentialError as exc:
            raise KubeConfigError(str(exc)) from None
        if cred.cert_pem and (self._exec_cert is None or cred.cert_pem != self._exec_cert.cert_pem):
            self._exec_cert = cred
            for ctx in list(self._exec_contexts):
                self._load_exec_cert(ctx, cred)
        return cred

    @staticmethod
    def _load_exec_cert(ctx: ssl.SSLContext, cred: ExecCredential) -> None:
        assert cred.cert_pem and cred.key_pem
        load_cert_chain_data(ctx, cred.cert_pem, cred.key_pem)

    def load_client_cert(self, ctx: ssl.SSLContext) -> bool:
        """Put the kubeconfig's client certificate (file or inline data) into ``ctx``; False if it has none."""
        if self.client_cert_file and self.client_key_file:
            ctx.load_cert_chain(self.client_cert_file, self.client_key_file)
        elif (self.client_cert_file or self.client_cert_data) and (self.client_key_file or self.client_key_data):
            try:
                cert = self.client_cert_data or Path(self.client_cert_file or "").read_bytes()
                key = self.client_key_data or Path(self.client_key_file or "").read_bytes()
            except OSError as exc:
                raise KubeConfigError(f"cannot read client certificate or key: {exc}") from exc
            load_cert_chain_data(ctx, cert, key)
        else:
            return False
        return True

    def ca_pem(self) -> bytes | None:
        if self.ca_data:
            return self.ca_data
        if self.ca_file:
            try:
                return Path(self.ca_file).read_bytes()
            except OSError as exc:
                raise KubeConfigError(f"cannot read certificate authority {self.ca_file}: {exc}") from exc
        return None

    # -- transports ----------------------------------------------------------------------------
    def ssl_context(self) -> ssl.SSLContext | bool:
        """TLS settings for kube-apiserver: verify against the cluster CA unless ``insecure``.

        Returns ``False`` for plain-http hosts (aiohttp's "no TLS" value).
        """
        if self.host.startswith("http://"):
            return False
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        if self.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        else:
            ca = self.ca_pem()
            if ca:
                ctx.load_verify_locations(cadata=ca.decode())
        self.load_client_cert(ctx)
        if self.exec_plugin is not None:
            # The plugin runs on the first request's headers (off the event loop), which loads its
            # certificate into every registered context; one already issued is loaded now.
            self._exec_contexts.add(ctx)
            if self._exec_cert is not None:
                self._load_exec_cert(ctx, self._exec_cert)
        return ctx


def load_cert_chain_data(ctx: ssl.SSLContext, cert_pem: bytes, key_pem: bytes) -> None:
    """``ctx.load_cert_chain`` for in-memory PEM: ssl only reads paths, so the key goes to a private
    directory for the duration of the call and is removed at once (nothing is left on disk)."""
    with tempfile.TemporaryDirectory(prefix="autoscaler-") as tmp:
        cert, key = os.path.join(tmp, "tls.crt"), os.path.join(tmp, "tls.key")
        for path, data in ((cert, cert_pem), (key, key_pem)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        ctx.load_cert_chain(cert, key)


def in_cluster_config(sa_dir: str = SERVICE_ACCOUNT_DIR, env: dict[str, str] | None = None) -> KubeConfig:
    """The Pod's ServiceAccount identity, as ``rest.InClusterConfig`` builds it."""
    env = os.environ if env is None else env
    host, port = env.get("KUBERNETES_SERVICE_HOST", ""), env.get("KUBERNETES_SERVICE_PORT", "")
    if not host or not port:
        raise KubeConfigError(
            "unable to load in-cluster configuration, KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be defined"
        )
    token_file = os.path.join(sa_dir, "token")
    if not os.path.exists(token_file):
        raise KubeConfigError(f"unable to load in-cluster configuration: {token_file} does not exist")
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    ca_file = os.path.join(sa_dir, "ca.crt")
    return KubeConfig(
        host=f"https://{host}:{port}",
        ca_file=ca_file if os.path.exists(ca_file) else None,
        token_file=token_file,
        in_cluster=True,
        source="in-cluster",
    )


def _data(entry: dict[str, Any], key: str, where: str) -> bytes | None:
    raw = entry.get(key)
    if not raw:
        return None
    try:
        return base64.b64decode(raw, validate=True)
    except (ValueError, TypeError) as exc:
        raise KubeConfigError(f"{where}: {key} is not valid base64") from exc


def _named(doc: dict[str, Any], section: str, name: str, path: str) -> dict[str, Any]:
    for item in doc.get(section) or []:
        if isinstance(item, dict) and item.get("name") == name:
            inner = item.get(section[:-1])
            return inner if isinstance(inner, dict) else {}
    raise KubeConfigError(f"{path}: {section[:-1]} {name!r} not found")


def kubeconfig_file_config(path: str, context: str | None = None) -> KubeConfig:
    """One context of a kubeconfig file (default: ``current-context``)."""
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise KubeConfigError(f"cannot read kubeconfig {path}: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise KubeConfigError(f"kubeconfig {path} is not UTF-8 text: {exc}") from None
    except yaml.YAMLError as exc:
        raise KubeConfigError(f"kubeconfig {path} is not valid YAML: {exc}") from exc
    except RecursionError:
        raise KubeConfigError(f"kubeconfig {path} is not valid YAML: nested too deeply") from None
    if not isinstance(doc, dict):
        raise KubeConfigError(f"kubeconfig {path} is not a mapping")
    ctx_name = context or doc.get("current-context")
    if not ctx_name:
        raise KubeConfigError(f"{path}: no context given and current-context is not set")
    ctx = _named(doc, "contexts", ctx_name, path)
    cluster = _named(doc, "clusters", ctx.get("cluster", ""), path)
    user = _named(doc, "users", ctx["user"], path) if ctx.get("user") else {}
    base = os.path.dirname(os.path.abspath(path))

    def rel(p: str | None) -> str | None:
        return os.path.join(base, p) if p and not os.path.isabs(p) else p

    host = cluster.get("server")
    if not host:
        raise KubeConfigError(f"{path}: cluster {ctx.get('cluster')!r} has no server")
    where = f"{path}: user {ctx.get('user')!r}"
    if "auth-provider" in user:
        raise KubeConfigError(f"{where}: auth-provider plugins are not supported (client-go removed the gcp and "
                              f"azure ones in 1.26); use an exec credential plugin such as gke-gcloud-auth-plugin, "
                              f"kubelogin or 'aws eks get-token'")
    plugin = None
    if user.get("exec") is not None:
        try:
            plugin = ExecPlugin(user["exec"], where=where, cluster=_exec_cluster_info(cluster, rel),
                                base_dir=base)
        except ExecCredentialError as exc:
            raise KubeConfigError(str(exc)) from None
    cert_data, key_data = _data(user, "client-certificate-data", where), _data(user, "client-key-data", where)
    cert_file, key_file = rel(user.get("client-certificate")), rel(user.get("client-key"))
    if bool(cert_file or cert_data) != bool(key_file or key_data):
        raise KubeConfigError(f"{where}: client certificate and key must be given together")
    return KubeConfig(
        host=host.rstrip("/"),
        ca_file=rel(cluster.get("certificate-authority")),
        ca_data=_data(cluster, "certificate-authority-data", f"{path}: cluster {ctx.get('cluster')!r}"),
        token=user.get("token"),
        token_file=rel(user.get("tokenFile")),
        client_cert_file=cert_file,
        client_key_file=key_file,
        client_cert_data=cert_data,
        client_key_data=key_data,
        insecure=bool(cluster.get("insecure-skip-tls-verify", False)),
        tls_server_name=cluster.get("tls-server-name"),
        source=f"{path} (context {ctx_name})",
        exec_plugin=plugin,
    )


def _exec_cluster_info(cluster: dict[str, Any], rel: Callable[[str | None], str | None]) -> dict[str, Any]:
    """The cluster as client-go describes it to a plugin with ``provideClusterInfo`` (CA inlined)."""
    info: dict[str, Any] = {"server": cluster.get("server", "")}
    for key in ("tls-server-name", "insecure-skip-tls-verify", "proxy-url", "disable-compression"):
        if cluster.get(key):
            info[key] = cluster[key]
    ca = cluster.get("certificate-authority-data")
    if not ca and (ca_file := rel(cluster.get("certificate-authority"))):
        with contextlib.suppress(OSError):
            ca = base64.b64encode(Path(ca_file).read_bytes()).decode()
    if ca:
        info["certificate-authority-data"] = ca
    for ext in cluster.get("extensions") or []:
        if isinstance(ext, dict) and ext.get("name") == "client.authentication.k8s.io/exec":
            info["config"] = ext.get("extension")
    return info


def load_kubeconfig(path: str | None, context: str | None = None) -> KubeConfig:
    """``--kubeconfig`` if given; else in-cluster; else ``$KUBECONFIG`` or ``~/.kube/config``."""
    if path:
        return kubeconfig_file_config(path, context)
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return in_cluster_config()
    env_path = (os.environ.get("KUBECONFIG") or "").split(os.pathsep)[0]
    fallback = env_path or os.path.expanduser("~/.kube/config")
    if os.path.exists(fallback):
        return kubeconfig_file_config(fallback, context)
    raise KubeConfigError(
        "no client configuration: pass --kubeconfig, run in a cluster, or set $KUBECONFIG"
    )
