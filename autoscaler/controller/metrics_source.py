"""Where the controller's metrics come from: one abstraction, two resource-metrics backends.

The decision core asks a synchronous :class:`~autoscaler.hpa.MetricsSource`; this module fetches
everything an HPA's metrics need up front (asynchronously) and hands the core a
:class:`Prefetched` source. Resource metrics come from the in-process window store
(:class:`StoreResourceMetrics`, used by ``autoscaler run``) or from ``metrics.k8s.io``
(:class:`ApiResourceMetrics`, used by ``autoscaler recommend``); custom
(``custom.metrics.k8s.io/v1beta2``) and external (``external.metrics.k8s.io/v1beta1``) metrics
always go through the API server, when those APIs are registered. Error texts follow the
upstream metrics client's wording, since they end up in events and conditions.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from autoscaler.controller.scales import RESTMapper, ScaleError, split_api_version
from autoscaler.hpa import CompiledHPA, MetricsError, PodMetricsSet, PodValues, pod_metrics_from_v1beta1
from autoscaler.hpa.inputs import ABSENT, InputError
from autoscaler.k8s.quantity import milli_value
from autoscaler.k8s.rest import KubeClient, KubeError, seg
from autoscaler.k8s.selectors import SelectorError, selector_from_object
from autoscaler.k8s.timefmt import format_duration, parse_duration, parse_time
from autoscaler.storage.types import BulkMetricsStorage, MetricsStorage

CUSTOM = "custom.metrics.k8s.io"
EXTERNAL = "external.metrics.k8s.io"
CUSTOM_VERSION = "v1beta2"
EXTERNAL_VERSION = "v1beta1"


def selector_key(sel: Mapping[str, Any] | None) -> str:
    """A metric selector as the query string form (also the cache key of a prefetched value)."""
    if sel is None:
        return ""
    return str(selector_from_object(dict(sel)))


@dataclass
class Prefetched:
    """A MetricsSource over values fetched before the decision; a string value is the error text."""

    resource: PodMetricsSet | str | None = None
    pods: dict[tuple[str, str], PodValues | str] = field(default_factory=dict)
    objects: dict[tuple[str, str, str, str], tuple[int, float] | str] = field(default_factory=dict)
    external: dict[tuple[str, str], list[int] | str] = field(default_factory=dict)

    def resource_metrics(self) -> PodMetricsSet:
        r = self.resource
        if isinstance(r, str):
            raise MetricsError(r)
        if r is None or len(r) == 0:
            raise MetricsError("no metrics returned from resource metrics API")
        return r

    def pods_metric(self, name: str, selector: Mapping[str, Any] | None) -> PodValues:
        v = self.pods.get((name, selector_key(selector)))
        if isinstance(v, str):
            raise MetricsError(v)
        if v is None or not v.values:
            raise MetricsError("no metrics returned from custom metrics API")
        return v

    def object_metric(self, name: str, described: Mapping[str, Any], selector: Mapping[str, Any] | None
                      ) -> tuple[int, float]:
        key = (str(described.get("kind", "")), str(described.get("name", "")), name, selector_key(selector))
        v = self.objects.get(key)
        if isinstance(v, str):
            raise MetricsError(v)
        if v is None:
            raise MetricsError("unable to fetch metrics from custom metrics API: the custom metrics API server "
                               "returned 0 results when we asked for exactly one")
        return v

    def external_metric(self, name: str, selector: Mapping[str, Any] | None) -> list[int]:
        v = self.external.get((name, selector_key(selector)))
        if isinstance(v, str):
            raise MetricsError(v)
        if not v:
            raise MetricsError("no metrics returned from external metrics API")
        return list(v)


class ResourceMetrics(Protocol):
    """Pod resource usage (metrics.k8s.io PodMetrics semantics) for the pods an HPA targets."""

    async def pod_metrics(self, namespace: str, selector: str, pods: list[dict[str, Any]]) -> PodMetricsSet: ...


def _cpu_milli(nanocores: int) -> int:
    """``Quantity.MilliValue()`` of a nanocores quantity rounds up, as the HPA sees metrics-server's values."""
    return -(-int(nanocores) // 1_000_000)


class _UsageSnapshot:
    """Every servable pod's usage as the controller reads it, at one store version, column by column.

    A full sync asks the store about every HPA's pods within one scrape interval; one vectorised
    pass over all pods per store version, then per HPA a dict look-up per pod and a gather, costs a
    fraction of a store query per HPA (each numpy call on ten pods is mostly overhead)."""

    __slots__ = ("c_cpu", "c_memory", "cpu", "memory", "names", "offsets", "pos", "timestamp", "version", "window")

    def __init__(self, version: int, keys: list[tuple[str, str]], cols: Any) -> None:
        self.version = version
        index = cols.index.tolist()
        self.pos = {keys[i]: j for j, i in enumerate(index)}
        # as :meth:`StoreResourceMetrics._direct` computes them, one pod at a time
        self.c_cpu = -(-cols.cpu_nanocores // 1_000_000)  # MilliValue() rounds up
        self.c_memory = np.rint(cols.memory_bytes.astype(np.float64) * 1000).astype(np.int64)
        starts = cols.offsets[:-1]
        self.cpu = np.add.reduceat(self.c_cpu, starts) if len(starts) else np.empty(0, np.int64)
        self.memory = np.add.reduceat(self.c_memory, starts) if len(starts) else np.empty(0, np.int64)
        self.timestamp = np.floor(cols.timestamp_us / 1_000_000)
        uniq, inverse = np.unique(cols.window_us, return_inverse=True)
        self.window = np.array([parse_duration(format_duration(w / 1_000_000)) for w in uniq.tolist()],
                               np.float64)[inverse] if len(uniq) else np.empty(0, np.float64)
        self.names = cols.names
        self.offsets = cols.offsets.tolist()

    def pod_metrics(self, namespace: str, pods: list[dict[str, Any]]) -> PodMetricsSet:
        pos = self.pos
        names: list[str] = []
        js: list[int] = []
        for p in pods:
            name = str(p["metadata"]["name"])
            j = pos.get((namespace, name))
            if j is not None:
                names.append(name)
                js.append(j)
        n = len(js)
        sel = np.fromiter(js, np.intp, n)
        containers: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        off, cnames, c_cpu, c_mem = self.offsets, self.names, self.c_cpu, self.c_memory
        for i, j in enumerate(js):
            for k in range(off[j], off[j + 1]):
                pair = containers.get(cnames[k])
                if pair is None:
                    pair = containers[cnames[k]] = (np.full(n, ABSENT, np.int64), np.full(n, ABSENT, np.int64))
                pair[0][i], pair[1][i] = c_cpu[k], c_mem[k]
        return PodMetricsSet(names, self.cpu[sel], self.memory[sel], self.timestamp[sel], self.window[sel],
                             containers)


#: the largest memory (bytes) for which a pod's milli-bytes surely fit int64 (else: the checked path)
_SAFE_BYTES = (2**63 - 1) // 1000 // 1024


class StoreResourceMetrics:
    """Resource metrics read in-process from the window store (what our metrics API would serve).

    While HPAs ask about a good share of the store's pods per store version (a full sync does), the
    answers come from one :class:`_UsageSnapshot` per version; otherwise straight from the store."""

    def __init__(self, store: MetricsStorage) -> None:
        self.store = store
        self._bulk = store if isinstance(store, BulkMetricsStorage) else None
        self._snapshot: _UsageSnapshot | None = None
        self._version: int | None = None
        self._asked = 0  # pods asked about at self._version
        self._asked_before = 0  # ... at the version before

    async def pod_metrics(self, namespace: str, selector: str, pods: list[dict[str, Any]]) -> PodMetricsSet:
        snap = self._snapshot_for(len(pods))
        if snap is not None:
            return snap.pod_metrics(namespace, pods)
        return self._direct(namespace, pods)

    def _snapshot_for(self, asking: int) -> _UsageSnapshot | None:
        bulk = self._bulk
        if bulk is None:
            return None
        version = bulk.version
        if version != self._version:
            self._version, self._asked_before, self._asked = version, self._asked, 0
        self._asked += asking
        snap = self._snapshot
        if snap is not None and snap.version == version:
            return snap
        keys = bulk.all_pod_keys()
        # worth it once this version's (or the last one's) questions cover an eighth of the pods
        if max(self._asked, self._asked_before) * 8 < len(keys):
            return None
        cols = bulk.pod_usage_columns(keys)
        if cols.version != version or (len(cols.memory_bytes) and int(cols.memory_bytes.max()) > _SAFE_BYTES):
            return None  # changed meanwhile, or values for the checked path
        self._snapshot = snap = _UsageSnapshot(version, keys, cols)
        return snap

    def _direct(self, namespace: str, pods: list[dict[str, Any]]) -> PodMetricsSet:
        keys = [(namespace, str(p["metadata"]["name"])) for p in pods]
        usage: dict[str, dict[str, tuple[int | None, float | None]]] = {}
        ts: dict[str, float] = {}
        win: dict[str, float] = {}
        for u in self.store.pod_metrics(keys) if keys else []:
            if u is None:
                continue
            usage[u.name] = {c.name: (_cpu_milli(c.cpu_nanocores), float(c.memory_bytes)) for c in u.containers}
            # as metrics.k8s.io serves them: whole-second timestamps, Go-duration windows
            ts[u.name] = float(math.floor(u.timestamp))
            win[u.name] = parse_duration(format_duration(u.window))
        return PodMetricsSet.from_mapping(usage, ts, win)


class ApiResourceMetrics:
    """Resource metrics from ``metrics.k8s.io/v1beta1`` PodMetrics, as the upstream controller reads them."""

    def __init__(self, client: KubeClient) -> None:
        self.client = client

    async def pod_metrics(self, namespace: str, selector: str, pods: list[dict[str, Any]]) -> PodMetricsSet:
        try:
            doc = await self.client.get(f"/apis/metrics.k8s.io/v1beta1/namespaces/{seg(namespace)}/pods",
                                        {"labelSelector": selector})
        except KubeError as exc:
            raise MetricsError(f"unable to fetch metrics from resource metrics API: {exc.message}") from exc
        try:
            return pod_metrics_from_v1beta1(doc.get("items") or [])
        except InputError as exc:
            raise MetricsError(f"unable to fetch metrics from resource metrics API: {exc}") from exc


class MetricsFetcher:
    """Fetches what one HPA's metrics need, per metric, so one failing metric fails only itself."""

    def __init__(self, client: KubeClient, resource: ResourceMetrics, mapper: RESTMapper | None = None) -> None:
        self.client = client
        self.resource = resource
        self.mapper = mapper or RESTMapper(client)

    async def fetch(self, hpa: CompiledHPA, selector: str, pods: list[dict[str, Any]]) -> Prefetched:
        out = Prefetched()
        ns = hpa.namespace
        for ms in hpa.metrics:
            if ms.error:
                continue
            try:
                msel = selector_key(ms.selector)
            except SelectorError:
                continue  # the core reports the bad selector
            if ms.type in ("Resource", "ContainerResource"):
                if out.resource is None:
                    try:
                        out.resource = await self.resource.pod_metrics(ns, selector, pods)
                    except MetricsError as exc:
                        out.resource = str(exc)
            elif ms.type == "Pods":
                key = (ms.metric_name, msel)
                if key not in out.pods:
                    out.pods[key] = await self._pods_metric(ns, ms.metric_name, selector, msel)
            elif ms.type == "Object":
                d = ms.described
                key4 = (str(d.get("kind", "")), str(d.get("name", "")), ms.metric_name, msel)
                if key4 not in out.objects:
                    out.objects[key4] = await self._object_metric(ns, d, ms.metric_name, msel)
            elif ms.type == "External":
                key = (ms.metric_name, msel)
                if key not in out.external:
                    out.external[key] = await self._external_metric(ns, ms.metric_name, msel)
        return out

    async def _custom_get(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        # Asked directly every time, as upstream's metrics client does: an API that is not (yet)
        # registered answers 404, and one registered later is used at the next sync.
        return await self.client.get(f"/apis/{CUSTOM}/{CUSTOM_VERSION}{path}", {k: v for k, v in params.items() if v})

    async def _pods_metric(self, ns: str, name: str, selector: str, msel: str) -> PodValues | str:
        try:
            doc = await self._custom_get(f"/namespaces/{seg(ns)}/pods/*/{seg(name)}",
                                         {"labelSelector": selector, "metricLabelSelector": msel})
            values: dict[str, int] = {}
            ts: dict[str, float] = {}
            win: dict[str, float] = {}
            for item in doc.get("items") or []:
                pod = str((item.get("describedObject") or {}).get("name") or "")
                values[pod] = milli_value(item.get("value"))
                ts[pod] = parse_time(item["timestamp"]) if item.get("timestamp") else 0.0
                window = item.get("windowSeconds")  # a pointer upstream: only absent means one minute
                win[pod] = 60.0 if window is None else float(window)
        except KubeError as exc:
            return f"unable to fetch metrics from custom metrics API: {exc.message}"
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            return f"unable to fetch metrics from custom metrics API: bad MetricValueList: {exc}"
        if not values:
            return "no metrics returned from custom metrics API"
        return PodValues(values, ts, win)

    async def _object_metric(self, ns: str, described: Mapping[str, Any], name: str, msel: str
                             ) -> tuple[int, float] | str:
        kind, obj_name = str(described.get("kind", "")), str(described.get("name", ""))
        group, version = split_api_version(str(described.get("apiVersion") or ""))
        try:
            if kind == "Namespace" and not group:
                path = f"/namespaces/{seg(ns)}/metrics/{seg(name)}"
            else:
                try:
                    m = await self.mapper.resource_for(group, version, kind)
                except ScaleError as exc:
                    return f"unable to fetch metrics from custom metrics API: {exc}"
                resource = f"{m.resource}.{group}" if group else m.resource
                path = f"/namespaces/{seg(ns)}/{seg(resource)}/{seg(obj_name)}/{seg(name)}"
            doc = await self._custom_get(path, {"metricLabelSelector": msel})
            items = doc.get("items") if doc.get("kind") == "MetricValueList" else [doc]
            if not items or len(items) != 1:
                return (f"unable to fetch metrics from custom metrics API: the custom metrics API server returned "
                        f"{len(items or [])} results when we asked for exactly one")
            item = items[0]
            return milli_value(item.get("value")), parse_time(item["timestamp"]) if item.get("timestamp") else 0.0
        except KubeError as exc:
            return f"unable to fetch metrics from custom metrics API: {exc.message}"
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            return f"unable to fetch metrics from custom metrics API: bad MetricValue: {exc}"

    async def _external_metric(self, ns: str, name: str, msel: str) -> list[int] | str:
        try:
            doc = await self.client.get(f"/apis/{EXTERNAL}/{EXTERNAL_VERSION}/namespaces/{seg(ns)}/{seg(name)}",
                                        {"labelSelector": msel} if msel else None)
            values = [milli_value(item.get("value")) for item in doc.get("items") or []]
        except KubeError as exc:
            return f"unable to fetch metrics from external metrics API: {exc.message}"
        except (ValueError, TypeError, AttributeError) as exc:
            return f"unable to fetch metrics from external metrics API: bad ExternalMetricValueList: {exc}"
        if not values:
            return "no metrics returned from external metrics API"
        return values
