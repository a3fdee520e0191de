"""Run the metrics pipeline (a drop-in metrics-server serving metrics.k8s.io) and the HPA controller.

`autoscaler run` is a drop-in metrics-server: the same flags (names and defaults where they
overlap), the same APIService, RBAC and probes. It watches Nodes and Running pods (metadata
only), scrapes every kubelet each --metric-resolution, and serves NodeMetrics/PodMetrics over
HTTPS with delegated authentication (front-proxy request headers, client certificates,
TokenReview) and authorization (SubjectAccessReview). Outside a cluster it falls back to
--kubeconfig, then $KUBECONFIG / ~/.kube/config.

In the same process runs the HPA controller, which decides every HorizontalPodAutoscaler's
replicas exactly like kube-controller-manager's (same flags and defaults), reading resource
metrics straight from the window store. --controller-mode picks what it does: dry-run (the
default) writes nothing and publishes its recommendations as metrics and events; active
reconciles HPAs in place of kube-controller-manager's controller (disable that one with
--controllers=*,-horizontalpodautoscaling); off runs the metrics pipeline alone. With
--leader-elect (default true) only the Lease holder of several replicas reconciles.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from autoscaler.k8s.timefmt import duration_flag

HELP = __doc__ or ""

# Modules that add components to `autoscaler run` (the HPA controller). Each may define
# ``add_arguments(parser)`` and ``build(runtime, args) -> list[Component]``.
PLUGINS: list[str] = ["autoscaler.controller.component"]


def _csv(text: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.split(",") if s.strip())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from autoscaler.scraper.options import add_arguments as add_scrape_arguments

    g = parser.add_argument_group("serving")
    g.add_argument("--secure-port", type=int, default=443,
                   help="The port on which to serve HTTPS with authentication and authorization. (default 443)")
    g.add_argument("--bind-address", default="0.0.0.0",
                   help="The IP address on which to listen for the --secure-port port. (default 0.0.0.0)")
    g.add_argument("--cert-dir", default="apiserver.local.config/certificates",
                   help="The directory where the TLS certs are located. If --tls-cert-file and "
                        "--tls-private-key-file are provided, this flag will be ignored. "
                        "(default \"apiserver.local.config/certificates\")")
    g.add_argument("--tls-cert-file", default="",
                   help="File containing the default x509 Certificate for HTTPS. If not provided, a self-signed "
                        "certificate is generated into --cert-dir.")
    g.add_argument("--tls-private-key-file", default="", help="File containing the default x509 private key matching --tls-cert-file.")
    g.add_argument("--tls-min-version", default="VersionTLS12", choices=["VersionTLS12", "VersionTLS13"],
                   help="Minimum TLS version supported. (default VersionTLS12)")
    g.add_argument("--tls-cipher-suites", type=_csv, default=(),
                   help="Comma-separated list of cipher suites for the server (TLS 1.2; Go names). Default: OpenSSL's secure defaults.")
    g.add_argument("--max-requests-inflight", type=int, default=400,
                   help="The maximum number of requests in flight at a given time; more are refused with 429 "
                        "before authentication (health probes are exempt). Zero means no limit. (default 400)")
    g.add_argument("--kubeconfig", default="",
                   help="The path to the kubeconfig used to connect to the Kubernetes API server and the Kubelets "
                        "(defaults to in-cluster config)")

    g = parser.add_argument_group("authentication")
    g.add_argument("--authentication-kubeconfig", default="",
                   help="kubeconfig file pointing at the 'core' kubernetes server with enough rights to create "
                        "tokenreviews.authentication.k8s.io and read the extension-apiserver-authentication ConfigMap "
                        "(default: --kubeconfig, else in-cluster).")
    g.add_argument("--authentication-skip-lookup", action="store_true",
                   help="If false, the authentication-kubeconfig will be used to lookup missing authentication "
                        "configuration from the cluster.")
    g.add_argument("--authentication-tolerate-lookup-failure", action="store_true",
                   help="If true, failures to look up missing authentication configuration from the cluster are not "
                        "considered fatal.")
    g.add_argument("--authentication-token-webhook-cache-ttl", type=duration_flag, default=10.0,
                   help="The duration to cache responses from the webhook token authenticator. (default 10s)")
    g.add_argument("--client-ca-file", default="",
                   help="If set, any request presenting a client certificate signed by one of the authorities in the "
                        "client-ca-file is authenticated with an identity corresponding to the CommonName of the client certificate.")
    g.add_argument("--requestheader-client-ca-file", default="",
                   help="Root certificate bundle to use to verify client certificates on incoming requests before "
                        "trusting usernames in headers specified by --requestheader-username-headers.")
    g.add_argument("--requestheader-allowed-names", type=_csv, default=(),
                   help="List of client certificate common names to allow to provide usernames in headers specified by "
                        "--requestheader-username-headers. If empty, any client certificate validated by the "
                        "authorities in --requestheader-client-ca-file is allowed.")
    g.add_argument("--requestheader-username-headers", type=_csv, default=("X-Remote-User",),
                   help="List of request headers to inspect for usernames. X-Remote-User is common. (default [x-remote-user])")
    g.add_argument("--requestheader-group-headers", type=_csv, default=("X-Remote-Group",),
                   help="List of request headers to inspect for groups. X-Remote-Group is suggested. (default [x-remote-group])")
    g.add_argument("--requestheader-extra-headers-prefix", type=_csv, default=("X-Remote-Extra-",),
                   help="List of request header prefixes to inspect. X-Remote-Extra- is suggested. (default [x-remote-extra-])")
    g.add_argument("--requestheader-uid-headers", type=_csv, default=("X-Remote-Uid",),
                   help="List of request headers to inspect for UIDs. X-Remote-Uid is suggested. (default [x-remote-uid])")

    g = parser.add_argument_group("authorization")
    g.add_argument("--authorization-kubeconfig", default="",
                   help="kubeconfig file pointing at the 'core' kubernetes server with enough rights to create "
                        "subjectaccessreviews.authorization.k8s.io (default: --kubeconfig, else in-cluster).")
    g.add_argument("--authorization-always-allow-paths", type=_csv, default=("/healthz", "/readyz", "/livez"),
                   help="A list of HTTP paths to skip during authorization, i.e. these are authorized without "
                        "contacting the 'core' kubernetes server. (default [/healthz,/readyz,/livez])")
    g.add_argument("--authorization-webhook-cache-authorized-ttl", type=duration_flag, default=10.0,
                   help="The duration to cache 'authorized' responses from the webhook authorizer. (default 10s)")
    g.add_argument("--authorization-webhook-cache-unauthorized-ttl", type=duration_flag, default=10.0,
                   help="The duration to cache 'unauthorized' responses from the webhook authorizer. (default 10s)")

    add_scrape_arguments(parser)
    for module in _plugins():
        if hasattr(module, "add_arguments"):
            module.add_arguments(parser)


def _plugins() -> list[Any]:
    return [importlib.import_module(name) for name in PLUGINS]


@dataclass
class Component:
    """Something `autoscaler run` starts: ``run(stop)`` works until ``stop`` is set.

    ``critical`` components end the process when they fail; others are logged and left stopped.
    """

    name: str
    run: Callable[[asyncio.Event], Awaitable[None]]
    critical: bool = True


@dataclass
class Runtime:
    """Everything `run` built, handed to plugins so they can share it (store, informers, kube)."""

    args: argparse.Namespace
    kube: Any
    storage: Any
    objects: Any
    node_informer: Any
    pod_informer: Any
    collector: Any
    server: Any = None
    components: list[Component] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    shutting_down: bool = False
    auth_informer: Any = None
    auth_config: Any = None
    health: dict[str, Any] = field(default_factory=dict)  # endpoint name -> HealthEndpoint (plugins add checks)
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)


#: The cyclic garbage collector's thresholds for the long-running process. CPython's default (700
#: net container allocations per young collection) runs a collection every few kubelet responses,
#: each one also walking the informers' tens of thousands of long-lived objects now and then;
#: every scrape's garbage is freed by reference counting anyway. Measured (bench/bench_scrape.py,
#: 1,000 nodes): about 8% less collector CPU per node-cycle.
GC_THRESHOLDS = (20_000, 20, 100)
#: how long components get to stop by themselves after SIGTERM, well inside a Pod's default
#: 30 s terminationGracePeriodSeconds
SHUTDOWN_GRACE = 15.0


def tune_gc() -> None:
    gc.set_threshold(*GC_THRESHOLDS)


def main(args: argparse.Namespace) -> int:
    import structlog

    log = structlog.get_logger("autoscaler.run")
    tune_gc()
    try:
        return asyncio.run(run(args))
    except StartupError as exc:
        log.error("cannot start", error=str(exc))
        return 1


class StartupError(Exception):
    """A configuration problem found at start-up; the message names the flag or file."""


def _slim_pod(obj: dict[str, Any]) -> dict[str, Any]:
    """What the API needs from a pod (and informer bookkeeping needs): name, namespace, labels, RV."""
    meta = obj.get("metadata") or {}
    return {"metadata": {k: meta[k] for k in ("name", "namespace", "labels", "resourceVersion", "uid") if k in meta}}


def _index_handler(upsert: Callable[[dict], None], delete: Callable[[dict], None]) -> Callable[[str, dict, dict | None], None]:
    def handle(kind: str, obj: dict, old: dict | None) -> None:
        if kind == "DELETED":
            delete(obj)
        else:
            upsert(obj)

    return handle


def _pod_informer(kube: Any, args: argparse.Namespace) -> Any:
    """The one pod informer of the process. Alone, the metrics API needs only Running pods' metadata
    (metrics-server's informer); a plugin that needs whole pods of every phase (the HPA controller)
    names its transform with ``pod_transform(args)``, and then a single informer of all pods feeds
    both: the object index keeps the Running ones. One list and one watch instead of two."""
    from autoscaler.k8s.informer import Informer

    transforms = [t for m in _plugins() if hasattr(m, "pod_transform") and (t := m.pod_transform(args)) is not None]
    if not transforms:
        return Informer(kube, "/api/v1/pods", field_selector="status.phase=Running", metadata_only=True,
                        name="pods", transform=_slim_pod)
    if len(transforms) > 1:
        raise StartupError("more than one component asks for its own pod transform")
    return Informer(kube, "/api/v1/pods", name="pods", transform=transforms[0])


async def build(args: argparse.Namespace) -> Runtime:
    """Build every part from flags (no network I/O except the optional ConfigMap lookup)."""
    from autoscaler.api.objects import ObjectIndex
    from autoscaler.api.resources import MetricsResources
    from autoscaler.k8s.informer import Informer
    from autoscaler.k8s.kubeconfig import KubeConfigError, load_kubeconfig
    from autoscaler.k8s.rest import KubeClient
    from autoscaler.k8s.selectors import parse_label_selector
    from autoscaler.scraper.collector import Collector, options_from_args
    from autoscaler.scraper.targets import slim_node
    from autoscaler.server import authconfig
    from autoscaler.server.app import MetricsServerApp
    from autoscaler.server.authn import Authenticator
    from autoscaler.server.authz import Authorizer
    from autoscaler.server.health import HealthChecks
    from autoscaler.server.selfmetrics import FRESHNESS
    from autoscaler.server.serve import HTTPSServer
    from autoscaler.server.tls import ServerTLS, TLSConfigError, serving_cert
    from autoscaler.storage.window import WindowStore

    try:
        options = options_from_args(args)
    except ValueError as exc:
        raise StartupError(str(exc)) from exc
    try:
        kube = load_kubeconfig(args.kubeconfig or None)
        authn_kube = load_kubeconfig(args.authentication_kubeconfig) if args.authentication_kubeconfig else kube
        authz_kube = load_kubeconfig(args.authorization_kubeconfig) if args.authorization_kubeconfig else kube
    except KubeConfigError as exc:
        raise StartupError(str(exc)) from exc
    if not 0 <= args.secure_port < 65536:
        raise StartupError(f"--secure-port {args.secure_port} is not a valid port")
    if args.max_requests_inflight < 0:
        raise StartupError(f"--max-requests-inflight {args.max_requests_inflight} must not be negative")

    try:
        tls = ServerTLS(serving_cert(args.tls_cert_file, args.tls_private_key_file, args.cert_dir),
                        args.tls_min_version, list(args.tls_cipher_suites))
    except TLSConfigError as exc:
        raise StartupError(str(exc)) from exc

    authn_api = KubeClient(authn_kube, timeout=10.0, connections=32)
    authz_api = authn_api if authz_kube is authn_kube else KubeClient(authz_kube, timeout=10.0, connections=32)
    authenticator = Authenticator(token_reviewer=authn_api.post, token_cache_ttl=args.authentication_token_webhook_cache_ttl,
                                  anonymous_paths=args.authorization_always_allow_paths)
    authorizer = Authorizer(authz_api.post, always_allow_paths=args.authorization_always_allow_paths,
                            authorized_ttl=args.authorization_webhook_cache_authorized_ttl,
                            unauthorized_ttl=args.authorization_webhook_cache_unauthorized_ttl)
    flags = authconfig.AuthFlags(args.client_ca_file, args.requestheader_client_ca_file,
                                 tuple(args.requestheader_allowed_names), tuple(args.requestheader_username_headers),
                                 tuple(args.requestheader_group_headers), tuple(args.requestheader_extra_headers_prefix),
                                 tuple(args.requestheader_uid_headers))
    try:
        auth = authconfig.AuthConfig(flags, authenticator, tls)
    except (authconfig.AuthConfigError, TLSConfigError) as exc:
        raise StartupError(str(exc)) from exc

    storage = WindowStore(options.metric_resolution, options.metric_history)
    objects = ObjectIndex()
    node_informer = Informer(kube, "/api/v1/nodes", name="nodes", transform=slim_node)
    pod_informer = _pod_informer(kube, args)
    node_informer.add_handler(_index_handler(objects.upsert_node,
                                             lambda o: objects.delete_node(o["metadata"]["name"])))
    pod_informer.add_handler(_index_handler(
        objects.upsert_pod, lambda o: objects.delete_pod(o["metadata"].get("namespace", ""), o["metadata"]["name"])))
    collector = Collector(options, storage, kube, node_informer=node_informer)

    rt = Runtime(args, kube, storage, objects, node_informer, pod_informer, collector)
    rt.auth_config = auth

    def informers_synced() -> str | None:
        missing = [i.name for i in (node_informer, pod_informer) if not i.synced]
        return f"{len(missing)} informers not started yet: {missing}" if missing else None

    health = HealthChecks(
        storage_ready=lambda: None if storage.ready() else "no metrics to serve",
        informers_synced=informers_synced,
        metadata_informer_synced=lambda: None if pod_informer.synced else "1 informers not started yet",
        collection_timely=lambda: None if collector.timely() else "metric collection didn't finish on time",
        shutting_down=lambda: rt.shutting_down,
    ).endpoints()
    rt.health = health
    resources = MetricsResources(objects, storage, node_selector=parse_label_selector(options.node_selector),
                                 observe_freshness=FRESHNESS.observe_many)
    app = MetricsServerApp(resources, authenticator, authorizer, health, registries=[collector.registry],
                           max_in_flight=args.max_requests_inflight).build()
    rt.server = HTTPSServer(app, tls, args.bind_address, args.secure_port)

    # The ConfigMap is needed unless both trust roots came from flags (k8s' lookup rule).
    if not args.authentication_skip_lookup and not flags.complete:
        cm_informer = Informer(authn_kube, authconfig.PATH, field_selector=authconfig.FIELD_SELECTOR,
                               name="extension-apiserver-authentication")
        cm_informer.add_handler(auth.on_event)
        rt.components.append(Component("authentication-config", cm_informer.run,
                                       critical=not args.authentication_tolerate_lookup_failure))
        rt.auth_informer = cm_informer
    rt.components += [
        Component("node-informer", node_informer.run),
        Component("pod-informer", pod_informer.run),
        Component("collector", collector.run),
    ]
    rt.closers = [authn_api.close, authz_api.close]
    for module in _plugins():
        if hasattr(module, "build"):
            rt.components += list(module.build(rt, args) or [])
    return rt


async def run(args: argparse.Namespace) -> int:
    return await serve(await build(args))


async def serve(rt: Runtime) -> int:
    """Start every component, serve once informers are synced, stop cleanly on SIGTERM/SIGINT or ``rt.stop``."""
    import structlog

    log = structlog.get_logger("autoscaler.run")
    args = rt.args
    stop = rt.stop
    loop = asyncio.get_running_loop()

    def request_stop() -> None:
        if not stop.is_set():
            log.info("shutting down")
            rt.shutting_down = True
            stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, request_stop)
        except (NotImplementedError, RuntimeError):  # not the main thread (tests) or no signals
            pass

    failed = asyncio.Event()
    tasks: dict[asyncio.Task, Component] = {}

    async def supervise(c: Component) -> None:
        try:
            await c.run(stop)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("component failed", component=c.name, error=str(exc) or type(exc).__name__, critical=c.critical)
            if c.critical:
                failed.set()
                stop.set()

    for c in rt.components:
        tasks[asyncio.create_task(supervise(c), name=c.name)] = c

    # metrics-server serves only once its informers have synced (and the trust ConfigMap is read).
    waiters = [rt.node_informer.wait_synced(), rt.pod_informer.wait_synced()]
    auth_informer = rt.auth_informer
    if auth_informer is not None and not args.authentication_tolerate_lookup_failure:
        waiters.append(auth_informer.wait_synced())
    sync = asyncio.gather(*waiters)
    stopper = asyncio.ensure_future(stop.wait())
    await asyncio.wait({sync, stopper}, return_when=asyncio.FIRST_COMPLETED)
    code = 0
    if not stop.is_set():
        if auth_informer is not None and auth_informer.synced and not rt.auth_config.configmap_seen:
            log.warning("kube-system/extension-apiserver-authentication not found: front-proxy (request-header) and "
                        "client-certificate authentication are off until it appears")
        log.info("informers synced; starting the secure server")
        try:
            await rt.server.start()
        except OSError as exc:
            log.error("cannot serve", error=str(exc))
            failed.set()
            stop.set()
    await stop.wait()
    rt.shutting_down = True
    sync.cancel()
    stopper.cancel()
    await rt.server.stop()  # stop accepting; in-flight requests drain
    # Components see `stop` and wind down on their own (the controller releases its Lease, so a
    # standby leads at once); only those still running after the grace period are cancelled.
    if tasks:
        _, late = await asyncio.wait(tasks, timeout=SHUTDOWN_GRACE)
        for t in late:
            log.warning("component did not stop in time; cancelling it", component=tasks[t].name)
            t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for close in rt.closers:
        await close()
    if failed.is_set():
        code = 1
    log.info("stopped", code=code)
    return code
