"""Pods by namespace and label, and the HPA selectors seen so far, for fast per-HPA lookups.

A full sync of 1,000 HPAs must not scan every pod for every HPA. Pods are indexed by namespace and
by each ``key=value`` label, so a selector with an equality requirement only looks at the pods
carrying that label. Each pod's decision row (:class:`~autoscaler.hpa.inputs.PodRow`: phase,
readiness, times, requests) is read from its object once and kept until the pod changes, so a sync
only assembles columns. The selector registry answers upstream's overlap question ("which other HPAs
select any of these pods?") the same way, from the last selector each HPA's scale reported.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from autoscaler.hpa.inputs import PodRow, PodSet, pod_row, pod_set_from_rows
from autoscaler.k8s.selectors import LabelSelector, Requirement


def _anchor(sel: LabelSelector) -> tuple[str, tuple[str, ...]] | None:
    """A requirement every match must satisfy with one of a few known values (=, in)."""
    best: Requirement | None = None
    for r in sel.requirements:
        if r.op in ("=", "in") and (best is None or len(r.values) < len(best.values)):
            best = r
    return None if best is None else (best.key, best.values)


class PodIndex:
    """Pod objects keyed by namespace/name, with a (namespace, label, value) inverted index."""

    def __init__(self) -> None:
        self._pods: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        self._by_label: dict[tuple[str, str, str], set[str]] = defaultdict(set)
        self._rows: dict[tuple[str, str], PodRow] = {}  # read lazily; dropped when the pod changes

    def __len__(self) -> int:
        return sum(len(v) for v in self._pods.values())

    def upsert(self, pod: dict[str, Any]) -> None:
        meta = pod.get("metadata") or {}
        ns, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
        old = self._pods[ns].get(name)
        if old is not None:
            self._unindex(ns, name, old)
            self._rows.pop((ns, name), None)
        self._pods[ns][name] = pod
        for k, v in (meta.get("labels") or {}).items():
            self._by_label[(ns, k, v)].add(name)

    def delete(self, pod: dict[str, Any]) -> None:
        meta = pod.get("metadata") or {}
        ns, name = str(meta.get("namespace") or ""), str(meta.get("name") or "")
        old = self._pods.get(ns, {}).pop(name, None)
        if old is not None:
            self._unindex(ns, name, old)
            self._rows.pop((ns, name), None)

    def _unindex(self, ns: str, name: str, pod: dict[str, Any]) -> None:
        for k, v in ((pod.get("metadata") or {}).get("labels") or {}).items():
            s = self._by_label.get((ns, k, v))
            if s is not None:
                s.discard(name)
                if not s:
                    del self._by_label[(ns, k, v)]

    def handler(self, kind: str, obj: dict, old: dict | None) -> None:
        """An :class:`~autoscaler.k8s.informer.Informer` handler keeping the index current."""
        if kind == "DELETED":
            self.delete(obj)
        else:
            self.upsert(obj)

    def select(self, namespace: str, sel: LabelSelector) -> list[dict[str, Any]]:
        """Pods of ``namespace`` that ``sel`` matches, in name order (the lister's order)."""
        if sel.nothing:
            return []
        pods = self._pods.get(namespace, {})
        anchor = _anchor(sel)
        if anchor is None:
            names: Iterable[str] = pods
        else:
            key, values = anchor
            cand: set[str] = set()
            for v in values:
                cand |= self._by_label.get((namespace, key, v), set())
            names = cand
        out = [pods[n] for n in sorted(names)]
        return [p for p in out if sel.matches((p.get("metadata") or {}).get("labels") or {})]

    def select_set(self, namespace: str, sel: LabelSelector) -> tuple[list[dict[str, Any]], PodSet]:
        """:meth:`select` and the :class:`PodSet` of those pods (as ``pods_from_v1`` builds it) from
        the kept rows; raises InputError for an unreadable pod, as reading it would."""
        pods = self.select(namespace, sel)
        rows = self._rows
        out: list[PodRow] = []
        for i, p in enumerate(pods):
            key = (namespace, p["metadata"]["name"])
            row = rows.get(key)
            if row is None:
                row = rows[key] = pod_row(p, i)
            out.append(row)
        return pods, pod_set_from_rows(out)


class SelectorRegistry:
    """The selector each HPA's target reported at its last reconcile (upstream's hpaSelectors)."""

    def __init__(self) -> None:
        self._sel: dict[str, dict[str, LabelSelector]] = defaultdict(dict)  # ns -> hpa key -> selector
        self._anchored: dict[tuple[str, str, str], set[str]] = defaultdict(set)  # (ns, key, value) -> hpa keys
        self._free: dict[str, set[str]] = defaultdict(set)  # ns -> hpa keys without an anchor

    def put(self, namespace: str, hpa_key: str, sel: LabelSelector) -> None:
        self.remove(namespace, hpa_key)
        self._sel[namespace][hpa_key] = sel
        anchor = _anchor(sel)
        if anchor is None:
            self._free[namespace].add(hpa_key)
        else:
            for v in anchor[1]:
                self._anchored[(namespace, anchor[0], v)].add(hpa_key)

    def remove(self, namespace: str, hpa_key: str) -> None:
        sel = self._sel.get(namespace, {}).pop(hpa_key, None)
        if sel is None:
            return
        anchor = _anchor(sel)
        if anchor is None:
            self._free[namespace].discard(hpa_key)
        else:
            for v in anchor[1]:
                s = self._anchored.get((namespace, anchor[0], v))
                if s is not None:
                    s.discard(hpa_key)
                    if not s:
                        del self._anchored[(namespace, anchor[0], v)]

    def selecting(self, namespace: str, pod_labels: Iterable[Mapping[str, str]], exclude: str
                  ) -> dict[str, LabelSelector]:
        """Other HPAs of ``namespace`` whose selector may match one of these pods (the core re-checks)."""
        sels = self._sel.get(namespace)
        if not sels:
            return {}
        found: set[str] = set(self._free.get(namespace, ()))
        for labels in pod_labels:
            for k, v in labels.items():
                hit = self._anchored.get((namespace, k, v))
                if hit:
                    found |= hit
        found.discard(exclude)
        return {k: sels[k] for k in found}
