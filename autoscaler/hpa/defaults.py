"""autoscaling/v2 HorizontalPodAutoscaler defaulting and validation, as kube-apiserver does them.

The emulated API server calls :func:`default_hpa` then :func:`validate_hpa` on every HPA write,
and the controller core defaults every HPA it reads, so both sides see the same object shape.
Conversion to and from autoscaling/v1 lives in :mod:`autoscaler.hpa.conversion` and is
re-exported here.
"""

from __future__ import annotations

import decimal
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from autoscaler.hpa.conversion import _copy, hpa_v1_to_v2, hpa_v2_to_v1
from autoscaler.hpa.versions import DEFAULT_VERSION, resolve_gates
from autoscaler.k8s.quantity import QuantityError, format_decimal_si, parse_quantity

__all__ = [
    "DEFAULT_SCALE_DOWN_RULES",
    "DEFAULT_SCALE_UP_RULES",
    "APIFeatures",
    "default_behavior_rules",
    "default_hpa",
    "hpa_v1_to_v2",
    "hpa_v2_to_v1",
    "prepare_for_write",
    "validate_hpa",
]

METRIC_TYPES = ("ContainerResource", "External", "Object", "Pods", "Resource")
SELECT_POLICIES = ("Disabled", "Max", "Min")
POLICY_TYPES = ("Percent", "Pods")
MAX_STABILIZATION_WINDOW_SECONDS = 3600
MAX_PERIOD_SECONDS = 1800

DEFAULT_SCALE_UP_RULES: dict[str, Any] = {
    "stabilizationWindowSeconds": 0,
    "selectPolicy": "Max",
    "policies": [
        {"type": "Pods", "value": 4, "periodSeconds": 15},
        {"type": "Percent", "value": 100, "periodSeconds": 15},
    ],
}
# stabilizationWindowSeconds is deliberately left unset: the controller fills it from
# --horizontal-pod-autoscaler-downscale-stabilization at run time.
DEFAULT_SCALE_DOWN_RULES: dict[str, Any] = {
    "selectPolicy": "Max",
    "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
}


def default_behavior_rules(rules: dict[str, Any] | None, direction: str) -> dict[str, Any]:
    """Fill one HPAScalingRules field by field: user fields win, nil fields take the default.

    A nil ``rules`` gives the whole default for ``direction`` ("scaleUp" or "scaleDown"). A non-nil
    ``policies`` list, even an empty one, replaces the default list. ``tolerance`` has no default.
    """
    base = DEFAULT_SCALE_UP_RULES if direction == "scaleUp" else DEFAULT_SCALE_DOWN_RULES
    if rules is not None and not isinstance(rules, dict):
        return rules  # left for validation to report ("must be an object")
    out = _copy(base)
    if rules is None:
        return out
    for key in ("stabilizationWindowSeconds", "selectPolicy", "policies", "tolerance"):
        if rules.get(key) is not None:
            out[key] = _copy(rules[key])
    for key, val in rules.items():  # keep unknown fields the user sent (pruning is not ours)
        if key not in out and val is not None:
            out[key] = _copy(val)
    return out


def default_hpa(obj: dict[str, Any]) -> dict[str, Any]:
    """autoscaling/v2 defaulting (SetDefaults_HorizontalPodAutoscaler) on a new dict.

    minReplicas nil -> 1; empty metrics -> cpu at 80% utilization; behavior, only when set, is
    completed field by field per direction. Idempotent on an already-defaulted object.
    """
    out = _copy(obj)
    spec = out.get("spec")
    if not isinstance(spec, dict):
        spec = {} if spec is None else spec
        if isinstance(spec, dict):
            out["spec"] = spec
        else:
            return out
    if spec.get("minReplicas") is None:
        spec["minReplicas"] = 1
    if not spec.get("metrics"):
        spec["metrics"] = [
            {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}
        ]
    behavior = spec.get("behavior")
    if isinstance(behavior, dict):
        behavior["scaleUp"] = default_behavior_rules(behavior.get("scaleUp"), "scaleUp")
        behavior["scaleDown"] = default_behavior_rules(behavior.get("scaleDown"), "scaleDown")
    return out


# ---------------------------------------------------------------------------------------------
# Validation: messages are apimachinery field.Error bodies ("Invalid value: 0: must be ...").


def _fmt_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _invalid(value: Any, detail: str) -> str:
    return f"Invalid value: {_fmt_value(value)}: {detail}"


def _required(detail: str = "") -> str:
    return f"Required value: {detail}" if detail else "Required value"


def _forbidden(detail: str) -> str:
    return f"Forbidden: {detail}"


def _not_supported(value: Any, supported: tuple[str, ...]) -> str:
    return f"Unsupported value: {_fmt_value(value)}: supported values: " + ", ".join(f'"{s}"' for s in supported)


def _path_segment_errors(name: str) -> list[str]:
    """apimachinery IsValidPathSegmentName."""
    if name in (".", ".."):
        return [f"may not be '{name}'"]
    errs = []
    for bad in ("/", "%"):
        if bad in name:
            errs.append(f"may not contain '{bad}'")
    return errs


def _quantity(value: Any) -> decimal.Decimal | None:
    try:
        return parse_quantity(value)
    except (QuantityError, decimal.InvalidOperation, TypeError):
        return None


def _quantity_errors(errs: list[tuple[str, str]], path: str, value: Any, *, positive: bool) -> None:
    q = _quantity(value)
    if q is None:
        errs.append((path, _invalid(value, "quantities must match the regular expression "
                                           "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")))
        return
    if positive and q <= 0:
        errs.append((path, _invalid(format_decimal_si(q), "must be positive")))
    if not positive and q < 0:
        errs.append((path, _invalid(format_decimal_si(q), "must be greater than or equal to 0")))


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _validate_int(errs: list[tuple[str, str]], path: str, value: Any) -> int | None:
    n = _int_or_none(value)
    if value is not None and n is None:
        errs.append((path, _invalid(value, "must be an integer")))
    return n


def _validate_object_ref(errs: list[tuple[str, str]], ref: Any, path: str) -> None:
    ref = ref if isinstance(ref, dict) else {}
    for key in ("kind", "name"):
        val = ref.get(key) or ""
        if not val:
            errs.append((f"{path}.{key}", _required()))
        else:
            for msg in _path_segment_errors(str(val)):
                errs.append((f"{path}.{key}", _invalid(val, msg)))


def _validate_identifier(errs: list[tuple[str, str]], ident: Any, path: str) -> None:
    ident = ident if isinstance(ident, dict) else {}
    name = ident.get("name") or ""
    if not name:
        errs.append((f"{path}.name", _required("must specify a metric name")))
    elif not isinstance(name, str):
        errs.append((f"{path}.name", _invalid(name, "must be a string")))
    else:
        for msg in _path_segment_errors(str(name)):
            errs.append((f"{path}.name", _invalid(name, msg)))
    if (problem := _selector_shape(ident.get("selector"))) is not None:
        errs.append((f"{path}.selector", _invalid(ident.get("selector"), problem)))


def _selector_shape(sel: Any) -> str | None:
    """What Go's typed decoding of a metav1.LabelSelector would refuse (its content is not validated)."""
    if sel is None:
        return None
    if not isinstance(sel, dict):
        return "must be an object"
    labels, exprs = sel.get("matchLabels") or {}, sel.get("matchExpressions") or []
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        return "matchLabels must be a map of strings"
    if not isinstance(exprs, list) or not all(
            isinstance(e, dict) and isinstance(e.get("key", ""), str) and isinstance(e.get("operator", ""), str)
            and isinstance(e.get("values") or [], list) and all(isinstance(v, str) for v in e.get("values") or [])
            for e in exprs):
        return "matchExpressions must be a list of {key, operator, values: [strings]}"
    return None


def _validate_target(errs: list[tuple[str, str]], target: dict[str, Any], path: str) -> None:
    ttype = target.get("type") or ""
    if not ttype:
        errs.append((f"{path}.type", _required("must specify a metric target type")))
    if ttype not in ("Utilization", "Value", "AverageValue"):
        errs.append((f"{path}.type", _invalid(ttype, "must be either Utilization, Value, or AverageValue")))
    for key in ("value", "averageValue"):
        if target.get(key) is not None:
            _quantity_errors(errs, f"{path}.{key}", target[key], positive=True)
    util = target.get("averageUtilization")
    if util is not None:
        n = _validate_int(errs, f"{path}.averageUtilization", util)
        if n is not None and n < 1:
            errs.append((f"{path}.averageUtilization", _invalid(n, "must be greater than 0")))


_STANDARD_CONTAINER_RESOURCES = {"cpu", "memory", "ephemeral-storage"}


def _validate_resource_name(errs: list[tuple[str, str]], name: str, path: str) -> None:
    if name in _STANDARD_CONTAINER_RESOURCES or name.startswith("hugepages-") or "/" in name:
        return
    errs.append((path, _invalid(name, "must be a standard resource for containers")))


def _validate_resource_source(errs: list[tuple[str, str]], src: dict[str, Any], path: str, container: bool) -> None:
    name = src.get("name") or ""
    if not name:
        errs.append((f"{path}.name", _required("must specify a resource name")))
    else:
        _validate_resource_name(errs, str(name), f"{path}.name")
    if container:
        cname = src.get("container") or ""
        if not cname:
            errs.append((f"{path}.container", _required("must specify a container")))
        elif not _is_dns1123_label(str(cname)):
            errs.append((f"{path}.container", _invalid(cname, _DNS1123_LABEL_MSG)))
    raw_target = src.get("target")
    target: dict[str, Any] = raw_target if isinstance(raw_target, dict) else {}
    _validate_target(errs, target, f"{path}.target")
    has_util = target.get("averageUtilization") is not None
    has_avg = target.get("averageValue") is not None
    if not has_util and not has_avg:
        errs.append((f"{path}.target.averageUtilization", _required("must set either a target raw value or a target utilization")))
    if has_util and has_avg:
        errs.append((f"{path}.target.averageValue", _forbidden("may not set both a target raw value and a target utilization")))


_DNS1123_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start "
    "and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)


def _is_dns1123_label(value: str) -> bool:
    import re

    return len(value) <= 63 and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", value) is not None


def _validate_metric(errs: list[tuple[str, str]], spec: Any, path: str) -> str:
    if not isinstance(spec, dict):
        errs.append((path, _invalid(spec, "must be an object")))
        return ""
    mtype = spec.get("type") or ""
    if not mtype:
        errs.append((f"{path}.type", _required("must specify a metric source type")))
    if mtype not in METRIC_TYPES:
        errs.append((f"{path}.type", _not_supported(mtype, METRIC_TYPES)))
    present: list[str] = []
    for key in ("object", "external", "pods", "resource", "containerResource"):
        src = spec.get(key)
        if src is None:
            continue
        present.append(key)
        if len(present) != 1:
            continue
        src = src if isinstance(src, dict) else {}
        sub = f"{path}.{key}"
        raw_target = src.get("target")
        target: dict[str, Any] = raw_target if isinstance(raw_target, dict) else {}
        if key == "object":
            _validate_object_ref(errs, src.get("describedObject"), f"{sub}.describedObject")
            _validate_identifier(errs, src.get("metric"), f"{sub}.metric")
            _validate_target(errs, target, f"{sub}.target")
            if target.get("value") is None and target.get("averageValue") is None:
                errs.append((f"{sub}.target.averageValue", _required("must set either a target value or averageValue")))
        elif key == "external":
            _validate_identifier(errs, src.get("metric"), f"{sub}.metric")
            _validate_target(errs, target, f"{sub}.target")
            if target.get("value") is None and target.get("averageValue") is None:
                errs.append((f"{sub}.target.averageValue",
                             _required("must set either a target value for metric or a per-pod target")))
            if target.get("value") is not None and target.get("averageValue") is not None:
                errs.append((f"{sub}.target.value",
                             _forbidden("may not set both a target value for metric and a per-pod target")))
        elif key == "pods":
            _validate_identifier(errs, src.get("metric"), f"{sub}.metric")
            _validate_target(errs, target, f"{sub}.target")
            if target.get("averageValue") is None:
                errs.append((f"{sub}.target.averageValue", _required("must specify a positive target averageValue")))
        else:
            _validate_resource_source(errs, src, sub, container=(key == "containerResource"))
    expected = {"Object": "object", "Pods": "pods", "Resource": "resource", "External": "external",
                "ContainerResource": "containerResource"}.get(mtype) if isinstance(mtype, str) else None
    if expected is not None and spec.get(expected) is None:
        errs.append((f"{path}.{expected}", _required("must populate information for the given metric source")))
    if len(present) != 1 or expected not in present:
        for key in present:
            if key != expected:
                errs.append((f"{path}.{key}", _forbidden("must populate the given metric source only")))
    return mtype


def _validate_rules(errs: list[tuple[str, str]], rules: Any, path: str, allow_tolerance: bool) -> None:
    if rules is None:
        return
    if not isinstance(rules, dict):
        errs.append((path, _invalid(rules, "must be an object")))
        return
    window = _validate_int(errs, f"{path}.stabilizationWindowSeconds", rules.get("stabilizationWindowSeconds"))
    if window is not None and window < 0:
        errs.append((f"{path}.stabilizationWindowSeconds", _invalid(window, "must be greater than or equal to zero")))
    if window is not None and window > MAX_STABILIZATION_WINDOW_SECONDS:
        errs.append((f"{path}.stabilizationWindowSeconds",
                     _invalid(window, f"must be less than or equal to {MAX_STABILIZATION_WINDOW_SECONDS}")))
    select = rules.get("selectPolicy")
    if select is not None and select not in SELECT_POLICIES:
        errs.append((f"{path}.selectPolicy", _not_supported(select, SELECT_POLICIES)))
    policies = rules.get("policies")
    if not policies:
        errs.append((f"{path}.policies", _required("must specify at least one Policy")))
    elif not isinstance(policies, list):
        errs.append((f"{path}.policies", _invalid(policies, "must be a list")))
        policies = []
    for i, policy in enumerate(policies or []):
        ppath = f"{path}.policies[{i}]"
        policy = policy if isinstance(policy, dict) else {}
        ptype = policy.get("type")
        if ptype not in POLICY_TYPES:
            errs.append((f"{ppath}.type", _not_supported(ptype or "", POLICY_TYPES)))
        value = _validate_int(errs, f"{ppath}.value", policy.get("value"))
        if value is None or value <= 0:
            errs.append((f"{ppath}.value", _invalid(value if value is not None else 0, "must be greater than zero")))
        period = _validate_int(errs, f"{ppath}.periodSeconds", policy.get("periodSeconds"))
        if period is None or period <= 0:
            errs.append((f"{ppath}.periodSeconds",
                         _invalid(period if period is not None else 0, "must be greater than zero")))
        elif period > MAX_PERIOD_SECONDS:
            errs.append((f"{ppath}.periodSeconds", _invalid(period, f"must be less than or equal to {MAX_PERIOD_SECONDS}")))
    if rules.get("tolerance") is not None:
        _quantity_errors(errs, f"{path}.tolerance", rules["tolerance"], positive=False)
        if not allow_tolerance:
            errs.append((f"{path}.tolerance",
                         _forbidden("tolerance is not supported when the HPAConfigurableTolerance feature gate is disabled")))


def validate_hpa(
    obj: dict[str, Any],
    *,
    scale_to_zero: bool = False,
    configurable_tolerance: bool = True,
    old: dict[str, Any] | None = None,
) -> list[tuple[str, str]]:
    """Validate an autoscaling/v2 HPA spec; return (field path, message) pairs, empty when valid.

    The object is defaulted first (validation runs after defaulting upstream, so an omitted
    policies list is fine and an explicit empty one is not). ``scale_to_zero`` is the
    HPAScaleToZero gate, ``configurable_tolerance`` the HPAConfigurableTolerance gate; ``old``
    (on update) relaxes both the way kube-apiserver does when the stored object already used them.

    Every check runs (no early return), in ``validateHorizontalPodAutoscalerSpec``'s order; the
    replica bounds, which 1.37's declarative validation enforces instead of the handwritten code,
    come last with its texts (as the v1.37.2 kube-apiserver answers).
    """
    obj = default_hpa(obj)
    errs: list[tuple[str, str]] = []
    declarative: list[tuple[str, str]] = []
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [("spec", _required())]
    if obj.get("metadata") is not None and not isinstance(obj["metadata"], dict):
        errs.append(("metadata", _invalid(obj["metadata"], "must be an object")))
    old_spec = (old or {}).get("spec") or {}
    old_min = old_spec.get("minReplicas") if isinstance(old_spec, dict) else None
    lower = 0 if (scale_to_zero or old_min == 0) else 1
    min_r = _validate_int(errs, "spec.minReplicas", spec.get("minReplicas"))
    if min_r is not None and min_r < lower:
        declarative.append(("spec.minReplicas", _invalid(min_r, f"must be greater than or equal to {lower}")))
    max_r = _validate_int(errs, "spec.maxReplicas", spec.get("maxReplicas"))
    max_val = max_r if max_r is not None else 0
    if max_val == 0:
        declarative.append(("spec.maxReplicas", _required()))
    elif max_val < 0:
        declarative.append(("spec.maxReplicas", _invalid(max_val, "must be greater than or equal to 1")))
    if min_r is not None and max_val < min_r:
        errs.append(("spec.maxReplicas", _invalid(max_val, "must be greater than or equal to `minReplicas`")))
    _validate_object_ref(errs, spec.get("scaleTargetRef"), "spec.scaleTargetRef")
    metrics = spec.get("metrics") or []
    if not isinstance(metrics, list):
        errs.append(("spec.metrics", _invalid(metrics, "must be a list")))
        metrics = []
    types = [_validate_metric(errs, m, f"spec.metrics[{i}]") for i, m in enumerate(metrics)]
    if min_r == 0 and "Object" not in types and "External" not in types:
        errs.append(("spec.metrics", _forbidden(
            "must specify at least one Object or External metric to support scaling to zero replicas")))
    behavior = spec.get("behavior")
    if behavior is not None:
        old_behavior = old_spec.get("behavior") if isinstance(old_spec, dict) else None
        old_has_tol = isinstance(old_behavior, dict) and any(
            isinstance(old_behavior.get(d), dict) and old_behavior[d].get("tolerance") is not None
            for d in ("scaleUp", "scaleDown"))
        allow_tol = configurable_tolerance or old_has_tol
        if not isinstance(behavior, dict):
            errs.append(("spec.behavior", _invalid(behavior, "must be an object")))
        else:
            _validate_rules(errs, behavior.get("scaleUp"), "spec.behavior.scaleUp", allow_tol)
            _validate_rules(errs, behavior.get("scaleDown"), "spec.behavior.scaleDown", allow_tol)
    return _dedupe(errs + declarative)


def _dedupe(errs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """field.ErrorList.ToAggregate drops exact duplicates; keep first occurrences in order."""
    seen: set[tuple[str, str]] = set()
    out = []
    for e in errs:
        if e not in seen:
            seen.add(e)
            out.append(e)
    return out


# ---------------------------------------------------------------------------------------------
# The registry strategy (pkg/registry/autoscaling/horizontalpodautoscaler/strategy.go).


@dataclass(frozen=True, slots=True)
class APIFeatures:
    """The HPA feature gates kube-apiserver's HPA strategy reads, at one emulated version."""

    version: str = DEFAULT_VERSION
    scale_to_zero: bool = True  # HPAScaleToZero: minReplicas 0 allowed
    configurable_tolerance: bool = True  # HPAConfigurableTolerance: off drops behavior.*.tolerance
    generation: bool = True  # HPAGeneration: metadata.generation starts at 1, +1 per spec change

    @classmethod
    def for_version(cls, version: str = DEFAULT_VERSION, gates: Mapping[str, bool] | None = None) -> APIFeatures:
        """ValueError (upstream's text) for a gate ``version`` does not have or locks."""
        on = resolve_gates(version, gates)
        return cls(version, on.get("HPAScaleToZero", False), on.get("HPAConfigurableTolerance", False),
                   on.get("HPAGeneration", False))


def _uses_tolerance(spec: Any) -> bool:
    behavior = spec.get("behavior") if isinstance(spec, dict) else None
    return isinstance(behavior, dict) and any(
        isinstance(behavior.get(d), dict) and behavior[d].get("tolerance") is not None
        for d in ("scaleUp", "scaleDown"))


def prepare_for_write(obj: dict[str, Any], old: dict[str, Any] | None, features: APIFeatures) -> list[tuple[str, str]]:
    """PrepareForCreate/PrepareForUpdate, then Validate/ValidateUpdate, on a defaulted HPA (in place).

    Generation: with HPAGeneration a new HPA gets 1 and an update whose spec differs gets the
    old generation + 1; without it the old generation is kept (a create keeps none). Tolerances are
    dropped when HPAConfigurableTolerance is off, unless the stored object already used them.
    minReplicas 0 is allowed with HPAScaleToZero or when the stored object already had it.
    Returns the validation errors.
    """
    md = obj.setdefault("metadata", {})
    old_md = (old or {}).get("metadata") or {}
    if old is None:
        if features.generation:
            md["generation"] = 1
        else:
            md.pop("generation", None)
    else:
        gen = old_md.get("generation")
        if features.generation and obj.get("spec") != old.get("spec"):
            gen = int(gen or 0) + 1
        if gen is None:
            md.pop("generation", None)
        else:
            md["generation"] = gen
    spec = obj.get("spec")
    if not features.configurable_tolerance and not _uses_tolerance((old or {}).get("spec")) and isinstance(spec, dict):
        behavior = spec.get("behavior")
        if isinstance(behavior, dict):
            for d in ("scaleUp", "scaleDown"):
                if isinstance(behavior.get(d), dict):
                    behavior[d].pop("tolerance", None)
    old_zero = (((old or {}).get("spec") or {}).get("minReplicas") == 0)
    return validate_hpa(obj, scale_to_zero=features.scale_to_zero or old_zero, old=old)
