"""Which nodes and pods exist, with their labels: the API's view of the cluster.

metrics-server answers from a Node informer and a metadata-only informer of Running pods; this
index is what those informers feed. Per object it keeps the label dict (copied into
NodeMetrics/PodMetrics verbatim) and the object's pre-encoded JSON metadata fragments, plus a
lazily rebuilt sorted listing, so a 30,000-pod list costs no per-request sorting or label
encoding.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Mapping
from typing import Any, NamedTuple

import orjson

from autoscaler.k8s.selectors import LabelSelector


class Entry(NamedTuple):
    """One object: its labels and the JSON around the response-time ``creationTimestamp``.

    ``head`` is ``{"metadata":{"name":…,"namespace":…,"creationTimestamp":"`` and ``tail``
    closes the timestamp, adds ``labels`` when there are any and opens ``"timestamp":"``.
    """

    labels: dict[str, str]
    head: str
    tail: str


def _entry(name: str, namespace: str | None, labels: dict[str, str]) -> Entry:
    head = '{"metadata":{"name":' + orjson.dumps(name).decode()
    if namespace is not None:
        head += ',"namespace":' + orjson.dumps(namespace).decode()
    head += ',"creationTimestamp":"'
    tail = '"'
    if labels:
        tail += ',"labels":' + orjson.dumps(labels).decode()
    tail += '},"timestamp":"'
    return Entry(labels, head, tail)


def _labels_of(obj: Mapping[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in ((obj.get("metadata") or {}).get("labels") or {}).items()}


class ObjectIndex:
    """Nodes and Running pods by name, fed by informer events; safe to read from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._nodes: dict[str, Entry] = {}
        self._pods: dict[tuple[str, str], Entry] = {}
        self._node_list: list[tuple[str, Entry]] | None = None
        self._pod_list: list[tuple[str, str, Entry]] | None = None
        self._pod_keys: list[tuple[str, str]] | None = None

    # -- feeding -------------------------------------------------------------------------------

    def upsert_node(self, obj: Mapping[str, Any]) -> None:
        name = (obj.get("metadata") or {}).get("name")
        if not name:
            return
        labels = _labels_of(obj)
        with self._lock:
            old = self._nodes.get(name)
            if old is not None and old.labels == labels:
                return
            self._nodes[name] = _entry(name, None, labels)
            self._node_list = None

    def delete_node(self, name: str) -> None:
        with self._lock:
            if self._nodes.pop(name, None) is not None:
                self._node_list = None

    def upsert_pod(self, obj: Mapping[str, Any]) -> None:
        """Add or update a pod; a pod whose (full object) phase is not Running is removed instead."""
        meta = obj.get("metadata") or {}
        ns, name = meta.get("namespace") or "", meta.get("name")
        if not name:
            return
        phase = (obj.get("status") or {}).get("phase")
        if phase is not None and phase != "Running":
            self.delete_pod(ns, name)
            return
        labels = _labels_of(obj)
        key = (ns, name)
        with self._lock:
            old = self._pods.get(key)
            if old is not None and old.labels == labels:
                return
            self._pods[key] = _entry(name, ns, labels)
            self._pod_list = None

    def delete_pod(self, namespace: str, name: str) -> None:
        with self._lock:
            if self._pods.pop((namespace, name), None) is not None:
                self._pod_list = None

    def replace_nodes(self, objs: list[Mapping[str, Any]]) -> None:
        """Replace every node (an informer's initial list or relist)."""
        fresh = {}
        for o in objs:
            name = (o.get("metadata") or {}).get("name")
            if name:
                fresh[name] = _entry(name, None, _labels_of(o))
        with self._lock:
            self._nodes, self._node_list = fresh, None

    def replace_pods(self, objs: list[Mapping[str, Any]]) -> None:
        """Replace every pod (an informer's initial list or relist); non-Running pods are skipped."""
        fresh = {}
        for o in objs:
            meta = o.get("metadata") or {}
            if meta.get("name") and (o.get("status") or {}).get("phase", "Running") == "Running":
                ns = meta.get("namespace") or ""
                fresh[(ns, meta["name"])] = _entry(meta["name"], ns, _labels_of(o))
        with self._lock:
            self._pods, self._pod_list = fresh, None

    # -- reading -------------------------------------------------------------------------------

    def node(self, name: str) -> Entry | None:
        return self._nodes.get(name)

    def pod(self, namespace: str, name: str) -> Entry | None:
        return self._pods.get((namespace, name))

    def node_labels(self, name: str) -> dict[str, str] | None:
        e = self._nodes.get(name)
        return e.labels if e is not None else None

    def pod_labels(self, namespace: str, name: str) -> dict[str, str] | None:
        e = self._pods.get((namespace, name))
        return e.labels if e is not None else None

    def list_nodes(self, selector: LabelSelector | None = None) -> list[tuple[str, Entry]]:
        """(name, entry) of matching nodes, sorted by name. Do not mutate the result."""
        with self._lock:
            if self._node_list is None:
                self._node_list = sorted(self._nodes.items())
            listing = self._node_list
        if selector is None or selector.empty:
            return listing
        return [(n, e) for n, e in listing if selector.matches(e.labels)]

    def list_pods(self, namespace: str = "", selector: LabelSelector | None = None
                  ) -> list[tuple[str, str, Entry]]:
        """(namespace, name, entry) of matching Running pods, sorted by namespace then name.

        Do not mutate the result: without a namespace or selector it is the cached listing.
        """
        with self._lock:
            if self._pod_list is None:
                self._pod_list = [(ns, n, e) for (ns, n), e in sorted(self._pods.items())]
                self._pod_keys = [(ns, n) for ns, n, _ in self._pod_list]
            listing, keys = self._pod_list, self._pod_keys
        if namespace:
            assert keys is not None
            lo = bisect.bisect_left(keys, (namespace, ""))
            hi = bisect.bisect_left(keys, (namespace + "\x00", ""), lo)
            listing = listing[lo:hi]
        if selector is None or selector.empty:
            return listing
        return [p for p in listing if selector.matches(p[2].labels)]

    def pod_keys(self) -> list[tuple[str, str]]:
        """All pod keys in listing order (cached alongside the listing)."""
        self.list_pods()
        assert self._pod_keys is not None
        return self._pod_keys

    def counts(self) -> tuple[int, int]:
        return len(self._nodes), len(self._pods)
