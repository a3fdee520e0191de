"""The aggregation layer (kube-aggregator) of the emulated kube-apiserver.

An APIService with ``spec.service`` owns ``/apis/<group>/<version>/...``: requests there are
proxied to the Service's backend the way kube-apiserver does it with
``--enable-aggregator-routing=true``:

* Service → its port ``spec.service.port`` (default 443) → the Endpoints of the same name → the
  first ready address with the port named like the Service port (or, failing that, numbered like
  its ``targetPort``) → ``https://<ip>:<port>``. Only loopback addresses are dialled.
* TLS: the backend's serving certificate is verified against ``spec.caBundle`` for the name
  ``<service>.<namespace>.svc`` (also sent as SNI) unless ``spec.insecureSkipTLSVerify``; the
  front-proxy client certificate is presented.
* Identity goes in ``X-Remote-User``, one ``X-Remote-Group`` per group, ``X-Remote-Uid`` and
  ``X-Remote-Extra-<key>`` with the key percent-encoded and the header name in Go's canonical
  form (``X-Remote-Extra-Authentication.kubernetes.io%2fcredential-Id``). The client's
  ``Authorization``, ``Impersonate-*``, ``X-Remote-*`` and hop-by-hop headers are not forwarded;
  ``X-Forwarded-For/Host/Proto/Uri`` and ``Audit-Id`` are added. Responses, including watch
  streams, are relayed as they arrive.
* While the APIService is not ``Available`` or its backend cannot be reached the client gets
  503 ``the server is currently unable to handle the request``.

Availability checks (kube-aggregator's remote availability controller) run every
``check_interval`` seconds and whenever an APIService, Service or Endpoints changes. They set the
``Available`` condition with kube-aggregator's reasons and messages: ``Passed`` ("all checks
passed"), ``ServiceNotFound``, ``ServicePortError``, ``EndpointsNotFound``, ``MissingEndpoints``,
``FailedDiscoveryCheck`` (5 parallel ``GET /apis/<group>/<version>`` as ``system:kube-aggregator``
in ``system:masters``, 5 s timeout, any 2xx/3xx passes), and ``Local`` for groups the emulator
serves itself (their APIServices, ``v1.``, ``v1.apps`` ..., are created at start).

Discovery for aggregated groups is answered from the APIService objects (``/apis`` entries,
``/apis/<group>``) and from the backends (aggregated discovery v2, falling back to the legacy
``APIResourceList``); OpenAPI documents are fetched from the backends as ``system:aggregator``.

This module keeps the APIService registry, routing and the built-in APIServices; the proxy, the
availability checks and discovery are parts of :class:`Aggregator` defined in
:mod:`~sim.apiserver.aggregator_proxy`, :mod:`~sim.apiserver.aggregator_availability` and
:mod:`~sim.apiserver.aggregator_discovery`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import aiohttp
import structlog

from autoscaler.k8s import status as st
from sim.apiserver.aggregator_availability import AvailabilityChecks
from sim.apiserver.aggregator_discovery import AggregatedDiscovery
from sim.apiserver.aggregator_proxy import BackendProxy, close_later, loopback_only
from sim.apiserver.apiservices import APISERVICES, is_local, meta_of
from sim.apiserver.auth import publish_authentication_configmap
from sim.apiserver.resources import CRDS

log = structlog.get_logger(__name__)

# kube-apiserver's priorities for its built-in group versions (pkg/controlplane/apiserver/aggregator.go).
LOCAL_PRIORITIES: dict[tuple[str, str], tuple[int, int]] = {
    ("", "v1"): (18000, 1),
    ("apiregistration.k8s.io", "v1"): (18000, 15),
    ("apps", "v1"): (17800, 15),
    ("events.k8s.io", "v1"): (17750, 15),
    ("authentication.k8s.io", "v1"): (17700, 15),
    ("authorization.k8s.io", "v1"): (17600, 15),
    ("autoscaling", "v2"): (17500, 30),
    ("autoscaling", "v1"): (17500, 15),
    ("batch", "v1"): (17400, 15),
    ("certificates.k8s.io", "v1"): (17300, 15),
    ("networking.k8s.io", "v1"): (17200, 15),
    ("policy", "v1"): (17100, 15),
    ("rbac.authorization.k8s.io", "v1"): (17000, 15),
    ("storage.k8s.io", "v1"): (16800, 15),
    ("admissionregistration.k8s.io", "v1"): (16700, 15),
    ("apiextensions.k8s.io", "v1"): (16700, 15),
    ("scheduling.k8s.io", "v1"): (16600, 15),
    ("coordination.k8s.io", "v1"): (16500, 15),
    ("node.k8s.io", "v1"): (16300, 15),
    ("discovery.k8s.io", "v1"): (16200, 15),
    ("flowcontrol.apiserver.k8s.io", "v1"): (16100, 21),
}


class Aggregator(BackendProxy, AvailabilityChecks, AggregatedDiscovery):
    """Routes aggregated group-versions to their backends and keeps APIService status current.

    ``local_group_versions`` are the (group, version) pairs the emulator serves itself (default:
    everything in :mod:`sim.apiserver.resources` plus core ``v1``); ``address_filter`` may map or
    refuse an endpoint ``(ip, port)`` (default: loopback only, anything else is refused).
    """

    def __init__(self, store: Any, pki: Any, *, check_interval: float = 5.0, check_timeout: float = 5.0,
                 parallel_checks: int = 5, local_group_versions: Iterable[tuple[str, str]] | None = None,
                 address_filter: Callable[[str, int], tuple[str, int]] | None = None,
                 clock: Callable[[], float] = time.time):
        self.store = store
        self.pki = pki
        self.check_interval = check_interval
        self.check_timeout = check_timeout
        self.parallel_checks = max(1, parallel_checks)
        self.clock = clock
        self._local_gvs = list(local_group_versions) if local_group_versions is not None else None
        self._address_filter = address_filter or loopback_only
        self._apiservices: dict[str, dict[str, Any]] = {}
        self._by_gv: dict[tuple[str, str], str] = {}
        self._loaded = False
        self._sessions: dict[str, tuple[tuple[Any, ...], aiohttp.ClientSession]] = {}
        self._discovery: dict[str, dict[str, Any]] = {}  # APIService name -> version discovery entry
        self._openapi: dict[tuple[str, str], tuple[float, Any]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: list[Callable[[], None]] = []
        self._check_lock = asyncio.Lock()

    # -- APIService cache -------------------------------------------------------------------------

    def _load(self) -> None:
        if self._loaded:
            return
        items, _ = self.store.list(APISERVICES)
        for obj in items:
            self._remember(obj)
        self._loaded = True

    def _remember(self, obj: dict[str, Any]) -> None:
        name = meta_of(obj).get("name", "")
        old = self._apiservices.get(name)
        if old is not None:
            spec = old.get("spec") or {}
            if self._by_gv.get((spec.get("group", ""), spec.get("version", ""))) == name:
                del self._by_gv[(spec.get("group", ""), spec.get("version", ""))]
        self._apiservices[name] = obj
        spec = obj.get("spec") or {}
        if not is_local(obj):
            self._by_gv[(spec.get("group", ""), spec.get("version", ""))] = name

    def _forget(self, obj: dict[str, Any]) -> None:
        name = meta_of(obj).get("name", "")
        old = self._apiservices.pop(name, None)
        if old is not None:
            spec = old.get("spec") or {}
            key = (spec.get("group", ""), spec.get("version", ""))
            if self._by_gv.get(key) == name:
                del self._by_gv[key]
        self._discovery.pop(name, None)
        entry = self._sessions.pop(name, None)
        if entry is not None:
            close_later(entry[1])

    def _on_apiservice(self, event: str, obj: dict[str, Any], old: dict[str, Any] | None = None) -> None:
        if event == "DELETED":
            self._forget(obj)
            self._poke()
            return
        self._remember(obj)
        if old is None or _watched_part(old) != _watched_part(obj):
            self._poke()  # our own status writes change nothing here, so they don't loop

    def _on_backend_object(self, event: str, obj: dict[str, Any], old: dict[str, Any] | None = None) -> None:
        meta = meta_of(obj)
        key = (meta.get("namespace", ""), meta.get("name", ""))
        for svc in list(self._apiservices.values()):
            ref = (svc.get("spec") or {}).get("service") or {}
            if (ref.get("namespace", ""), ref.get("name", "")) == key:
                self._poke()
                return

    def _poke(self) -> None:
        with contextlib.suppress(RuntimeError):
            self._wake.set()

    def apiservice_for(self, group: str, version: str) -> dict[str, Any] | None:
        """The non-local APIService owning group/version, if any."""
        self._load()
        name = self._by_gv.get((group, version))
        return self._apiservices.get(name) if name else None

    def route(self, group: str, version: str) -> bool:
        """True when a non-local APIService owns ``/apis/<group>/<version>``."""
        return self.apiservice_for(group, version) is not None

    def owns_group(self, group: str) -> bool:
        """True when some version of ``group`` is served through an APIService with a service."""
        self._load()
        return any(g == group for g, _ in self._by_gv)

    # -- lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Creates the local APIServices, publishes the authentication ConfigMap and starts checking."""
        self._wake = asyncio.Event()
        self._unsubscribe.append(self.store.subscribe(APISERVICES, self._on_apiservice))
        self._unsubscribe.append(self.store.subscribe("services", self._on_backend_object))
        self._unsubscribe.append(self.store.subscribe("endpoints", self._on_backend_object))
        self._unsubscribe.append(self.store.subscribe(CRDS, self.sync_crd_apiservices))
        self._loaded = False
        self._load()
        self.ensure_local_apiservices()
        publish_authentication_configmap(self.store, self.pki)
        await self.check_all()
        self._task = asyncio.create_task(self._loop(), name="apiservice-availability")

    async def stop(self) -> None:
        for unsub in self._unsubscribe:
            with contextlib.suppress(Exception):
                unsub()
        self._unsubscribe.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        sessions, self._sessions = self._sessions, {}
        for _, session in sessions.values():
            await session.close()

    async def _loop(self) -> None:
        while True:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation that
            # races its timeout, and stop() would then wait for this loop forever
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.check_interval):
                    await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(0.02)  # coalesce bursts of changes
            self._wake.clear()
            try:
                await self.check_all()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("apiservice availability pass failed")

    # -- local APIServices and the authentication ConfigMap ------------------------------------------

    def _default_local_gvs(self) -> list[tuple[str, str]]:
        gvs = [("", "v1")]
        for group, versions in self.store.catalogue.groups():
            if any(r.custom for r in self.store.catalogue.all if r.group == group):
                continue  # CRD groups get theirs from the CRD registration (see sync_crd_apiservices)
            gvs.extend((group, v) for v in versions)
        return gvs

    def ensure_local_apiservices(self) -> None:
        """Creates ``v1.``, ``v1.apps``, ... (``service`` unset, ``Available=True/Local``) if missing."""
        gvs = self._local_gvs if self._local_gvs is not None else self._default_local_gvs()
        for group, version in gvs:
            self._ensure_local(group, version, LOCAL_PRIORITIES.get((group, version), (15000, 15)), "onstart")
        self.sync_crd_apiservices()

    def _ensure_local(self, group: str, version: str, priorities: tuple[int, int], managed: str) -> None:
        name = f"{version}.{group}"
        obj = self.store.try_get(APISERVICES, "", name)
        if obj is None:
            gp, vp = priorities
            obj = {
                "apiVersion": "apiregistration.k8s.io/v1",
                "kind": "APIService",
                "metadata": {"name": name, "labels": {"kube-aggregator.kubernetes.io/automanaged": managed}},
                "spec": {"group": group, "version": version, "groupPriorityMinimum": gp, "versionPriority": vp},
            }
            try:
                obj = self.store.create(APISERVICES, obj)
            except st.ApiError as exc:
                if exc.code != 409:
                    raise
                obj = self.store.try_get(APISERVICES, "", name) or obj
        self._remember(obj)
        if is_local(obj):
            self._set_condition(name, "True", "Local", "Local APIServices are always available")

    def sync_crd_apiservices(self, *_: Any) -> None:
        """kube-apiserver's CRD registration controller: a local APIService (``automanaged: "true"``,
        priorities 1000/100) per group version some CRD serves, deleted when none serves it any more."""
        catalogue = self.store.catalogue
        wanted = {(r.group, v) for r in catalogue.all if r.custom for v in r.versions}
        for group, version in sorted(wanted):
            self._ensure_local(group, version, (1000, 100), "true")
        for obj in list(self._apiservices.values()):
            spec = obj.get("spec") or {}
            managed = (meta_of(obj).get("labels") or {}).get("kube-aggregator.kubernetes.io/automanaged")
            if managed == "true" and is_local(obj) and (spec.get("group"), spec.get("version")) not in wanted:
                with contextlib.suppress(st.ApiError):
                    self.store.delete(APISERVICES, "", meta_of(obj).get("name", ""))



def _watched_part(obj: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    meta = meta_of(obj)
    return obj.get("spec"), meta.get("labels"), meta.get("annotations")
