"""Gather one HPA's inputs (Scale, pods, metrics) and run the decision core on them.

Shared by the live controller and ``autoscaler recommend``: only where pods and resource metrics
come from differs (informer cache and in-process store, or API lists and metrics.k8s.io).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from autoscaler.controller.metrics_source import MetricsFetcher, Prefetched
from autoscaler.controller.podindex import SelectorRegistry
from autoscaler.controller.scales import Mapping, ScaleClient, ScaleError
from autoscaler.hpa import (
    CompiledHPA,
    ControllerConfig,
    Decision,
    HPAState,
    PodSet,
    Scale,
    compile_hpa,
    decide,
    pods_from_v1,
)
from autoscaler.hpa.decide import uses_metrics
from autoscaler.hpa.inputs import InputError
from autoscaler.k8s.selectors import LabelSelector, SelectorError, parse_label_selector


class PodSource(Protocol):
    async def pods(self, namespace: str, selector: LabelSelector) -> list[dict[str, Any]]: ...


@runtime_checkable
class PodSetSource(Protocol):
    """A pod source that also hands out the pods' :class:`PodSet` (e.g. from rows it keeps)."""

    async def pod_set(self, namespace: str, selector: LabelSelector) -> tuple[list[dict[str, Any]], PodSet]: ...


@dataclass
class ScaleResult:
    obj: dict[str, Any] | None = None
    mapping: Mapping | None = None
    error: str | None = None
    scale: Scale | None = None
    selector: LabelSelector | None = None


@dataclass
class Evaluation:
    """What one reconcile saw and decided."""

    key: str
    hpa: dict[str, Any]
    compiled: CompiledHPA
    scale: ScaleResult
    decision: Decision
    pods: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    #: the newest resource-metrics sample timestamp the decision read (None: no resource metrics)
    metrics_time: float | None = None


def hpa_key(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace') or 'default'}/{meta.get('name')}"


class Evaluator:
    def __init__(self, scales: ScaleClient, fetcher: MetricsFetcher, pods: PodSource, config: ControllerConfig,
                 selectors: SelectorRegistry | None = None) -> None:
        self.scales = scales
        self.fetcher = fetcher
        self.pod_source = pods
        self.config = config
        self.selectors = selectors or SelectorRegistry()
        self._compiled: dict[str, tuple[tuple, CompiledHPA]] = {}

    def compiled(self, obj: dict[str, Any]) -> CompiledHPA:
        """compile_hpa, cached per object generation (status writes do not recompile)."""
        meta = obj.get("metadata") or {}
        key = hpa_key(obj)
        # metadata.generation moves with every spec change; without it, fall back to the resourceVersion
        stamp = (meta.get("uid"), meta.get("generation") or meta.get("resourceVersion"))
        hit = self._compiled.get(key)
        if hit is None or hit[0] != stamp:
            hit = self._compiled[key] = (stamp, compile_hpa(obj))
        return hit[1]

    def forget(self, key: str) -> None:
        self._compiled.pop(key, None)
        ns = key.split("/", 1)[0]
        self.selectors.remove(ns, key)

    async def get_scale(self, obj: dict[str, Any]) -> ScaleResult:
        c = self.compiled(obj)
        out = ScaleResult()
        try:
            out.obj, out.mapping = await self.scales.get(c.namespace, c.target_ref)
        except ScaleError as exc:
            out.error = str(exc)
            return out
        out.scale = Scale.from_v1(out.obj)
        if out.scale.selector:
            try:
                out.selector = parse_label_selector(out.scale.selector)
            except SelectorError:
                out.selector = None
        if out.selector is not None:
            self.selectors.put(c.namespace, hpa_key(obj), out.selector)
        return out

    async def evaluate(self, obj: dict[str, Any], state: HPAState | None, now: float,
                       scale: ScaleResult | None = None, explain: str = "summary") -> Evaluation:
        """Run one reconcile's decision (no writes). Raises InputError for an unreadable pod."""
        c = self.compiled(obj)
        key = hpa_key(obj)
        sr = scale if scale is not None else await self.get_scale(obj)
        pods: list[dict[str, Any]] = []
        podset: PodSet | None = None
        if sr.selector is not None:
            if isinstance(self.pod_source, PodSetSource):  # rows kept per pod: no re-reading
                pods, podset = await self.pod_source.pod_set(c.namespace, sr.selector)
            else:
                pods = await self.pod_source.pods(c.namespace, sr.selector)
        if podset is None:
            podset = pods_from_v1(pods)
        others = self.selectors.selecting(c.namespace, podset.labels or [], key) if pods else {}
        # metrics are fetched only when the decision will read them (not for a target at zero replicas
        # or outside the limits): no needless load on the metrics adapters
        source = (await self.fetcher.fetch(c, sr.scale.selector, pods)
                  if sr.scale is not None and sr.selector
                  and uses_metrics(c, sr.scale, config=self.config, hpa_status=obj.get("status") or {})
                  else Prefetched())
        decision = decide(c, sr.scale, podset, source, now=now, state=state, config=self.config,
                          other_hpa_selectors=others, hpa_status=obj.get("status") or {}, scale_error=sr.error,
                          explain=explain)
        res = source.resource
        metrics_time = float(res.timestamp.max()) if res is not None and not isinstance(res, str) and len(res) \
            else None
        return Evaluation(key, obj, c, sr, decision, pods, metrics_time=metrics_time)


__all__ = ["Evaluation", "Evaluator", "InputError", "PodSource", "ScaleResult", "hpa_key"]
