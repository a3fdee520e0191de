"""The NodeMetrics and PodMetrics REST storage: get and list, as metrics-server answers them.

Lists start from the object index (nodes, Running pods) filtered by the label selector (ANDed
with ``--node-selector`` for nodes) and the field selector, ask the metrics store for those
objects in one call, drop objects without data and keep the index's order (nodes by name, pods
by namespace then name). A single get distinguishes "no such object" (lister 404) from "no
metrics for it yet" (metrics 404), with metrics-server's messages.

Pod lists are served from a cache of each pod's encoded usage (the JSON after its metadata),
valid while the store's ``version`` is unchanged: the data changes once per metric resolution
but is listed far more often, and rendering 30,000 pods costs more than looking them up.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from autoscaler.api.objects import ObjectIndex
from autoscaler.api.render import (
    GROUP,
    PREFERRED_VERSION,
    TimeStrings,
    list_json,
    node_item,
    node_pieces,
    pod_item,
    pod_pieces,
    pod_rests,
)
from autoscaler.k8s.selectors import (
    FieldSelector,
    LabelSelector,
    SelectorError,
    parse_field_selector,
    parse_label_selector,
)
from autoscaler.k8s.status import ApiError, bad_request
from autoscaler.k8s.timefmt import format_time
from autoscaler.storage.types import BulkMetricsStorage, MetricsStorage

FIELD_LABELS = ("metadata.name", "metadata.namespace")


def parse_selectors(label_selector: str | None, field_selector: str | None) -> tuple[LabelSelector, FieldSelector]:
    """Parse the query's selectors; bad syntax or an unsupported field is a 400 BadRequest."""
    try:
        labels = parse_label_selector(label_selector)
    except SelectorError as exc:
        raise bad_request(f"unable to parse labelSelector {label_selector!r}: {exc}") from None
    try:
        fields = parse_field_selector(field_selector)
    except SelectorError as exc:
        raise bad_request(str(exc)) from None
    for f in sorted(fields.fields()):
        if f not in FIELD_LABELS:
            raise bad_request(f'"{f}" is not a known field selector: only "metadata.name", "metadata.namespace"')
    return labels, fields


def _and(a: LabelSelector, b: LabelSelector | None) -> LabelSelector:
    if b is None or b.empty:
        return a
    return LabelSelector(tuple(sorted((*a.requirements, *b.requirements), key=lambda r: r.key)), a.nothing or b.nothing)


def node_lister_not_found(name: str) -> ApiError:
    return ApiError(404, "NotFound", f'node "{name}" not found', {"name": name, "kind": "node"})


def pod_lister_not_found(name: str) -> ApiError:
    return ApiError(404, "NotFound", f'pods "{name}" not found', {"name": name, "kind": "pods"})


def node_metrics_not_found(name: str) -> ApiError:
    return ApiError(404, "NotFound", f'nodemetrics.{GROUP} "{name}" not found',
                    {"name": name, "group": GROUP, "kind": "nodemetrics"})


def pod_metrics_not_found(namespace: str, name: str) -> ApiError:
    key = f"{namespace}/{name}"
    return ApiError(404, "NotFound", f'podmetrics.{GROUP} "{key}" not found',
                    {"name": key, "group": GROUP, "kind": "podmetrics"})


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Hold the cyclic GC while a big list is assembled: tens of thousands of short-lived
    containers would otherwise trigger repeated collections over the whole (large) heap."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@dataclass
class Listing:
    """The answer to a list (or get): matching index entries and their usage, renderable two ways.

    Either ``usages`` (aligned with ``entries``, ``None`` = no data) or, from the pod cache,
    ``rests`` (the encoded usage of each entry, all served) plus ``load``, which reads the
    entries' usages from the store when dicts are wanted (Table and metadata conversions).
    """

    kind: str
    list_kind: str
    entries: list[Any]
    usages: list[Any] | None
    created: str
    ts: TimeStrings
    rests: list[str] | None = None
    load: Callable[[], list[Any]] | None = None

    def items(self) -> list[dict[str, Any]]:
        """Items as dicts (for Table / metadata conversions and single objects)."""
        if self.usages is None:
            self.usages = self.load() if self.load is not None else [None] * len(self.entries)
        build = pod_item if self.kind == "PodMetrics" else node_item
        return [build(u, e.labels, self.created, self.ts) for e, u in zip(self.entries, self.usages, strict=True)
                if u is not None]

    def json(self, version: str = PREFERRED_VERSION) -> bytes:
        """The ``*MetricsList`` document of metrics.k8s.io/``version``, encoded on the fast path."""
        with _gc_paused():
            if self.rests is not None:
                c = self.created
                return list_json(self.list_kind, [f"{e.head}{c}{e.tail}{r}"
                                                  for e, r in zip(self.entries, self.rests, strict=True)], version)
            assert self.usages is not None
            pieces = pod_pieces if self.kind == "PodMetrics" else node_pieces
            return list_json(self.list_kind, pieces(self.entries, self.usages, self.created, self.ts), version)


_MISSING = object()


class _PodCache:
    """Each pod's encoded usage and timestamp (``None``: not served) at one store version.

    Keyed by the index entry's ``head`` string: it encodes exactly (namespace, name), and being
    the same string object request after request, it is found by identity without building a
    key tuple or comparing names.
    """

    __slots__ = ("by_head", "version")

    def __init__(self, version: int) -> None:
        self.version = version
        self.by_head: dict[str, tuple[str, float] | None] = {}


class MetricsResources:
    """get/list for ``nodes`` and ``pods`` in metrics.k8s.io (one storage behind every served version)."""

    def __init__(self, objects: ObjectIndex, storage: MetricsStorage, *, node_selector: LabelSelector | None = None,
                 clock: Callable[[], float] = time.time,
                 observe_freshness: Callable[[np.ndarray], None] | None = None):
        self.objects = objects
        self.storage = storage
        self._bulk = storage if isinstance(storage, BulkMetricsStorage) else None
        self.node_selector = node_selector
        self._clock = clock
        self._observe = observe_freshness
        self._ts = TimeStrings()
        self._pod_cache = _PodCache(-1)

    def _listing(self, kind: str, entries: list[Any], usages: list[Any]) -> Listing:
        now = self._clock()
        if self._observe is not None:
            stamps = [u.timestamp for u in usages if u is not None]
            if stamps:
                self._observe(now - np.asarray(stamps, dtype=np.float64))
        return Listing(kind, kind + "List", entries, usages, format_time(now), self._ts)

    def _cached_pod_listing(self, candidates: list[tuple[str, str, Any]]) -> Listing | None:
        """The pod listing from the per-pod cache, reading only missing pods from the store;
        ``None`` when the storage has no versioned bulk read."""
        if self._bulk is None:
            return None
        version = self._bulk.version
        bulk = self._bulk.pod_usage_columns
        cache = self._pod_cache
        if cache.version != version:
            cache = self._pod_cache = _PodCache(version)
        if cache.by_head:
            get = cache.by_head.get
            found = [get(c[2].head, _MISSING) for c in candidates]
            miss = [i for i, f in enumerate(found) if f is _MISSING]
        else:  # first list since the store changed
            found, miss = [], list(range(len(candidates)))
        if miss:
            todo = candidates if len(miss) == len(candidates) else [candidates[i] for i in miss]
            cols = bulk([(ns, n) for ns, n, _ in todo])
            if cols.version != cache.version:  # the store moved on meanwhile: read everything at its version
                miss, todo = list(range(len(candidates))), candidates
                cols = bulk([(ns, n) for ns, n, _ in todo])
                cache = self._pod_cache = _PodCache(cols.version)
            values: list[tuple[str, float] | None] = [None] * len(todo)
            for j, r, t in zip(cols.index.tolist(), pod_rests(cols, self._ts),
                               (cols.timestamp_us / 1_000_000).tolist(), strict=True):
                values[j] = (r, t)
            cache.by_head.update(zip([c[2].head for c in todo], values, strict=True))
            if len(todo) == len(candidates):
                found = values
            else:
                for i, v in zip(miss, values, strict=True):
                    found[i] = v
        entries = [c[2] for c, f in zip(candidates, found, strict=True) if f is not None]
        rests = [f[0] for f in found if f is not None]  # type: ignore[index]
        now = self._clock()
        if self._observe is not None and entries:
            self._observe(now - np.array([f[1] for f in found if f is not None], dtype=np.float64))  # type: ignore[index]

        def load() -> list[Any]:
            return list(self.storage.pod_metrics([(ns, n) for (ns, n, _), f in zip(candidates, found, strict=True)
                                                  if f is not None]))

        return Listing("PodMetrics", "PodMetricsList", entries, None, format_time(now), self._ts, rests, load)

    # -- nodes ---------------------------------------------------------------------------------

    def list_nodes(self, label_selector: str | None = None, field_selector: str | None = None) -> Listing:
        labels, fields = parse_selectors(label_selector, field_selector)
        candidates = self.objects.list_nodes(_and(labels, self.node_selector))
        if not fields.empty:
            candidates = [c for c in candidates if fields.matches({"metadata.name": c[0], "metadata.namespace": ""})]
        usages = self.storage.node_metrics([n for n, _ in candidates]) if candidates else []
        return self._listing("NodeMetrics", [e for _, e in candidates], list(usages))

    def get_node(self, name: str) -> dict[str, Any]:
        entry = self.objects.node(name)
        if entry is None:
            raise node_lister_not_found(name)
        usage = self.storage.node_metrics([name])[0]
        if usage is None:
            raise node_metrics_not_found(name)
        return self._listing("NodeMetrics", [entry], [usage]).items()[0]

    # -- pods ----------------------------------------------------------------------------------

    def list_pods(self, namespace: str = "", label_selector: str | None = None,
                  field_selector: str | None = None) -> Listing:
        labels, fields = parse_selectors(label_selector, field_selector)
        candidates = self.objects.list_pods(namespace, labels)
        if not fields.empty:
            candidates = [c for c in candidates
                          if fields.matches({"metadata.name": c[1], "metadata.namespace": c[0]})]
        if not candidates:
            return self._listing("PodMetrics", [], [])
        with _gc_paused():
            cached = self._cached_pod_listing(candidates)
            if cached is not None:
                return cached
            usages = self.storage.pod_metrics([(ns, n) for ns, n, _ in candidates])
            return self._listing("PodMetrics", [c[2] for c in candidates], list(usages))

    def get_pod(self, namespace: str, name: str) -> dict[str, Any]:
        entry = self.objects.pod(namespace, name)
        if entry is None:
            raise pod_lister_not_found(name)
        usage = self.storage.pod_metrics([(namespace, name)])[0]
        if usage is None:
            raise pod_metrics_not_found(namespace, name)
        return self._listing("PodMetrics", [entry], [usage]).items()[0]
