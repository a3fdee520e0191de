"""Reading an ``autoscaler explain`` snapshot into :func:`decide` inputs.

A snapshot is YAML or JSON: one ``kind: List`` document or several documents, holding HPAs, their
targets' Scales, Pods, PodMetrics, custom-metrics MetricValueLists and external-metrics
ExternalMetricValueLists. Objects are matched the way the controller's clients would see them:
pods and PodMetrics by the Scale's selector, custom values by metric name and described object,
external values by metric name and the metric's selector against ``metricLabels``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from autoscaler.hpa.defaults import hpa_v1_to_v2
from autoscaler.hpa.inputs import (
    ZERO_TS,
    InputError,
    MetricsError,
    PodMetricsSet,
    PodSet,
    PodValues,
    Scale,
    _quantity_milli,
    _time_field,
    pod_metrics_from_v1beta1,
    pods_from_v1,
)
from autoscaler.k8s.selectors import (
    EVERYTHING,
    NOTHING,
    LabelSelector,
    SelectorError,
    parse_label_selector,
    selector_from_object,
)


def _describe(doc_no: int, item_no: int | None, obj: Any) -> str:
    where = f"document {doc_no}" + (f", item {item_no}" if item_no is not None else "")
    if isinstance(obj, dict):
        kind = obj.get("kind")
        meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
        name = meta.get("name")
        if kind:
            ns = meta.get("namespace")
            where += f" ({kind} {f'{ns}/' if ns else ''}{name or '<unnamed>'})"
    return where


#: the JSON types of the fields explain reads, per kind (``*`` = every list element); the API server
#: would have refused anything else, but a snapshot file may say anything
_SHAPES: dict[str, tuple[tuple[str, type | tuple[type, ...]], ...]] = {
    "": (("metadata.name", str), ("metadata.namespace", str), ("metadata.labels", dict)),
    "HorizontalPodAutoscaler": (
        ("spec", dict), ("spec.scaleTargetRef", dict), ("spec.minReplicas", int), ("spec.maxReplicas", int),
        ("spec.metrics", list), ("spec.metrics.*", dict), ("spec.metrics.*.type", str),
        *((f"spec.metrics.*.{src}{path}", want)
          for src in ("resource", "containerResource", "pods", "object", "external")
          for path, want in (("", dict), (".name", str), (".container", str), (".target", dict),
                             (".target.type", str), (".target.averageUtilization", int), (".metric", dict),
                             (".metric.name", str), (".metric.selector", dict),
                             (".metric.selector.matchLabels", dict), (".metric.selector.matchExpressions", list),
                             (".metric.selector.matchExpressions.*", dict), (".describedObject", dict))),
        ("spec.behavior", dict),
        *((f"spec.behavior.{d}{path}", want) for d in ("scaleUp", "scaleDown")
          for path, want in (("", dict), (".stabilizationWindowSeconds", int), (".selectPolicy", str),
                             (".policies", list), (".policies.*", dict), (".policies.*.type", str),
                             (".policies.*.value", int), (".policies.*.periodSeconds", int))),
        ("status", dict), ("status.conditions", list), ("status.conditions.*", dict)),
    "Scale": (("spec", dict), ("spec.replicas", int), ("status", dict), ("status.replicas", int),
              ("status.selector", str)),
    "Pod": (("spec", dict), ("status", dict), ("status.phase", str), ("status.conditions", list),
            ("status.conditions.*", dict), ("status.conditions.*.type", str), ("status.conditions.*.status", str),
            ("spec.resources", dict), ("spec.resources.requests", dict),
            *((f"spec.{key}{path}", want) for key in ("containers", "initContainers") for path, want in (
                ("", list), (".*", dict), (".*.name", str), (".*.restartPolicy", str), (".*.resources", dict),
                (".*.resources.requests", dict)))),
    "PodMetrics": (("containers", list), ("containers.*", dict), ("containers.*.name", str),
                   ("containers.*.usage", dict)),
    "MetricValueList": (("items.*", dict), ("items.*.describedObject", dict), ("items.*.metric", dict),
                        ("items.*.windowSeconds", (int, float))),
    "ExternalMetricValueList": (("items.*", dict), ("items.*.metricLabels", dict)),
}


def _walk(node: Any, parts: list[str], at: str):
    if not parts:
        yield at, node
    elif parts[0] == "*":
        for i, item in enumerate(node if isinstance(node, list) else ()):
            yield from _walk(item, parts[1:], f"{at}[{i}]")
    elif isinstance(node, dict) and node.get(parts[0]) is not None:
        yield from _walk(node[parts[0]], parts[1:], f"{at}.{parts[0]}" if at else parts[0])


def _check_shape(obj: dict[str, Any], where: str) -> None:
    """InputError naming the first field (parents first) whose JSON type explain cannot read."""
    for path, want in (*_SHAPES[""], *_SHAPES.get(obj["kind"], ())):
        for at, value in _walk(obj, path.split("."), ""):
            if not isinstance(value, want):
                kind = {str: "a string", dict: "an object", list: "a list", int: "an integer"}.get(want, "a number")
                raise InputError(f"{where}: {at}: must be {kind}, got {value!r}"[:300])


#: metric lists the snapshot keeps whole (their items are values, not objects)
_VALUE_LISTS = ("MetricValueList", "ExternalMetricValueList")


def parse_documents(text: str) -> list[dict[str, Any]]:
    """Split snapshot text into Kubernetes objects; raise InputError naming the bad object/field."""
    docs: list[Any]
    try:
        docs = [json.loads(text)]
    except ValueError:
        import yaml

        try:
            docs = [d for d in yaml.safe_load_all(text) if d is not None]
        except yaml.YAMLError as e:
            raise InputError(f"snapshot is neither JSON nor YAML: {str(e).splitlines()[0]}") from None
        except RecursionError:
            raise InputError("snapshot is not valid YAML: nested too deeply") from None
    except RecursionError:
        raise InputError("snapshot is not valid JSON: nested too deeply") from None
    objects: list[dict[str, Any]] = []
    for i, doc in enumerate(docs, 1):
        if not isinstance(doc, dict):
            raise InputError(f"document {i}: not a Kubernetes object (a mapping with apiVersion and kind)")
        items: list[tuple[int | None, Any]]
        kind = doc.get("kind")
        if kind == "List":
            if not isinstance(doc.get("items"), list):
                raise InputError(f"document {i} (List): items: must be a list of objects")
            items = list(enumerate(doc["items"]))
        elif isinstance(kind, str) and kind.endswith("List") and kind not in _VALUE_LISTS:
            # a typed list as the API returns it (`kubectl get --raw`): its items carry no kind/apiVersion
            if not isinstance(doc.get("items"), list):
                raise InputError(f"document {i} ({kind}): items: must be a list of objects")
            items = [(j, {"apiVersion": doc.get("apiVersion"), "kind": kind[: -len("List")], **it}
                      if isinstance(it, dict) else it) for j, it in enumerate(doc["items"])]
        else:
            items = [(None, doc)]
        for j, obj in items:
            where = _describe(i, j, obj)
            if not isinstance(obj, dict):
                raise InputError(f"{where}: not a Kubernetes object (a mapping with apiVersion and kind)")
            for key in ("apiVersion", "kind"):
                if not obj.get(key) or not isinstance(obj.get(key), str):
                    raise InputError(f"{where}: {key}: required field is missing")
            if obj.get("metadata") is not None and not isinstance(obj["metadata"], dict):
                raise InputError(f"{where}: metadata: must be an object")
            _check_shape(obj, where)
            objects.append(obj)
    return objects


def _ns(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("namespace") or "default")


def _name(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name") or "")


def _matches(sel: LabelSelector, obj: Mapping[str, Any]) -> bool:
    return sel.matches((obj.get("metadata") or {}).get("labels") or {})


@dataclass
class SnapshotMetrics:
    """A :class:`~autoscaler.hpa.inputs.MetricsSource` answering from the snapshot's objects."""

    namespace: str
    pod_metrics: PodMetricsSet
    custom_items: list[dict[str, Any]] = field(default_factory=list)
    external_items: list[dict[str, Any]] = field(default_factory=list)

    def resource_metrics(self) -> PodMetricsSet:
        if len(self.pod_metrics) == 0:
            raise MetricsError("no metrics returned from resource metrics API")
        return self.pod_metrics

    def _custom_for(self, name: str) -> list[dict[str, Any]]:
        return [it for it in self.custom_items if (it.get("metric") or {}).get("name") == name]

    def pods_metric(self, name: str, selector: Mapping[str, Any] | None) -> PodValues:
        out = PodValues({})
        for it in self._custom_for(name):
            d = it.get("describedObject") or {}
            if d.get("kind") != "Pod" or (d.get("namespace") or self.namespace) != self.namespace:
                continue
            pod = str(d.get("name") or "")
            out.values[pod] = _quantity_milli(it.get("value"), f"MetricValueList item for Pod {pod}: value")
            t = it.get("timestamp")
            out.timestamp[pod] = ZERO_TS if t is None else _time_field(t, f"MetricValueList item for Pod {pod}: timestamp")
            ws = it.get("windowSeconds")
            out.window[pod] = 60.0 if ws is None else float(ws)
        if not out.values:
            raise MetricsError("no metrics returned from custom metrics API")
        return out

    def object_metric(self, name: str, described: Mapping[str, Any], selector: Mapping[str, Any] | None
                      ) -> tuple[int, float]:
        for it in self._custom_for(name):
            d = it.get("describedObject") or {}
            if d.get("kind") == described.get("kind") and d.get("name") == described.get("name"):
                where = f"MetricValueList item for {d.get('kind')} {d.get('name')}"
                t = it.get("timestamp")
                return (_quantity_milli(it.get("value"), f"{where}: value"),
                        ZERO_TS if t is None else _time_field(t, f"{where}: timestamp"))
        raise MetricsError("unable to fetch metrics from custom metrics API: the custom metrics API server "
                           "returned 0 results when we asked for exactly one")

    def external_metric(self, name: str, selector: Mapping[str, Any] | None) -> list[int]:
        sel = EVERYTHING if selector is None else selector_from_object(selector)
        values = [
            _quantity_milli(it.get("value"), f"ExternalMetricValueList item {name}: value")
            for it in self.external_items
            if it.get("metricName") == name and sel.matches(it.get("metricLabels") or {})
        ]
        if not values:
            raise MetricsError("no metrics returned from external metrics API")
        return values


@dataclass
class ExplainInputs:
    hpa: dict[str, Any]
    scale: Scale | None
    scale_error: str | None
    pods: PodSet
    metrics: SnapshotMetrics
    others: dict[str, LabelSelector | None]


def _resource_for(ref: Mapping[str, Any]) -> str:
    kind = str(ref.get("kind") or "")
    api = str(ref.get("apiVersion") or "")
    group = api.split("/")[0] if "/" in api else ""
    plural = kind.lower() + ("es" if kind.lower().endswith("s") else "s")
    return f"{plural}.{group}" if group else plural


def _is_hpa(obj: Mapping[str, Any]) -> bool:
    return obj.get("kind") == "HorizontalPodAutoscaler" and str(obj.get("apiVersion", "")).startswith("autoscaling/")


def _scale_selector(scale_obj: Mapping[str, Any] | None) -> LabelSelector | None:
    if scale_obj is None:
        return None
    text = str((scale_obj.get("status") or {}).get("selector") or "")
    if not text:
        return None
    try:
        return parse_label_selector(text)
    except SelectorError:
        return None


def build_inputs(objects: list[dict[str, Any]], hpa_ref: str | None) -> ExplainInputs:
    """Pick the subject HPA and assemble everything :func:`decide` needs from the snapshot."""
    hpas = []
    for obj in objects:
        if _is_hpa(obj) and obj.get("apiVersion") == "autoscaling/v1":
            v2 = hpa_v1_to_v2(obj)  # fields restored from annotations get the same type checks
            _check_shape(v2, f"HorizontalPodAutoscaler {_ns(v2)}/{_name(v2)}")
            hpas.append(v2)
        elif _is_hpa(obj):
            hpas.append(obj)
    if not hpas:
        raise InputError("snapshot holds no HorizontalPodAutoscaler (apiVersion autoscaling/v2)")
    if hpa_ref:
        ns, _, name = hpa_ref.rpartition("/")
        chosen = [h for h in hpas if _name(h) == name and (not ns or _ns(h) == ns)]
        if not chosen:
            raise InputError(f"--hpa {hpa_ref}: no HorizontalPodAutoscaler of that name in the snapshot "
                             f"(found: {', '.join(_ns(h) + '/' + _name(h) for h in hpas)})")
        if len(chosen) > 1:
            raise InputError(f"--hpa {hpa_ref}: several namespaces have an HPA of that name; use NAMESPACE/NAME")
        subject = chosen[0]
    elif len(hpas) > 1:
        raise InputError("snapshot holds several HorizontalPodAutoscalers ("
                         + ", ".join(_ns(h) + "/" + _name(h) for h in hpas) + "); choose one with --hpa")
    else:
        subject = hpas[0]
    for key in ("spec",):
        if not isinstance(subject.get(key), dict):
            raise InputError(f"HorizontalPodAutoscaler {_ns(subject)}/{_name(subject)}: {key}: required field is missing")
    ns = _ns(subject)
    subject = dict(subject, metadata=dict(subject.get("metadata") or {}, namespace=ns))
    scales = [o for o in objects if o.get("kind") == "Scale"]

    def scale_for(h: Mapping[str, Any]) -> dict[str, Any] | None:
        ref = (h.get("spec") or {}).get("scaleTargetRef") or {}
        for s in scales:
            if _ns(s) == _ns(h) and _name(s) == ref.get("name"):
                return s
        return None

    scale_obj = scale_for(subject)
    scale = Scale.from_v1(scale_obj) if scale_obj is not None else None
    ref = (subject.get("spec") or {}).get("scaleTargetRef") or {}
    scale_error = None if scale_obj is not None else f'{_resource_for(ref)} "{ref.get("name", "")}" not found'
    sel = NOTHING
    if scale is not None:
        try:
            sel = parse_label_selector(scale.selector) if scale.selector else NOTHING
        except SelectorError:
            sel = NOTHING
    pods = pods_from_v1([o for o in objects if o.get("kind") == "Pod" and _ns(o) == ns], sel)
    pod_metrics = pod_metrics_from_v1beta1(
        [o for o in objects if o.get("kind") == "PodMetrics" and _ns(o) == ns and _matches(sel, o)])
    custom: list[dict[str, Any]] = []
    external: list[dict[str, Any]] = []
    for o in objects:
        if o.get("kind") == "MetricValueList":
            custom.extend(it for it in o.get("items") or [] if isinstance(it, dict)
                          and ((it.get("describedObject") or {}).get("namespace") or ns) == ns)
        elif o.get("kind") == "ExternalMetricValueList":
            external.extend(it for it in o.get("items") or [] if isinstance(it, dict))
    others = {f"{_ns(h)}/{_name(h)}": _scale_selector(scale_for(h)) for h in hpas
              if _ns(h) == ns and _name(h) != _name(subject)}
    return ExplainInputs(subject, scale, scale_error, pods, SnapshotMetrics(ns, pod_metrics, custom, external), others)
