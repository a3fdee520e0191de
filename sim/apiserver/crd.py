"""CustomResourceDefinitions (apiextensions.k8s.io/v1): defaulting, validation and status as
kube-apiserver's apiextensions registry applies them, the :class:`Resource` a CRD serves, and the
``scale`` subresource of custom resources (Scale built from the CRD's JSONPaths).

Not emulated: OpenAPI schemas (no pruning, defaulting or validation of custom objects), webhook
conversion (versions convert with strategy ``None``: only ``apiVersion`` changes), name conflicts
between CRDs (names are always accepted) and the ``customresourcecleanup`` finalizer (a deleted
CRD's objects go at once).
"""

from __future__ import annotations

import re
from typing import Any

from autoscaler.k8s.timefmt import format_time

from .resources import CUSTOM_VERBS, RO_SUB, PrinterColumn, Resource, ScalePaths, version_priority

Causes = list[tuple[str, str]]

_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS1035_MSG = ("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
                "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', "
                "regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and "
    "must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
_SIMPLE_PATH = re.compile(r"^(\.[A-Za-z0-9_-]+)+$")


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _versions(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [v for v in spec.get("versions") or [] if isinstance(v, dict)]


# ---------------------------------------------------------------------------------------------
# defaulting and status


def default(obj: dict[str, Any]) -> None:
    """apiextensions/v1 SetDefaults: singular and listKind from kind, conversion strategy None."""
    spec = obj.setdefault("spec", {})
    names = spec.setdefault("names", {})
    kind = names.get("kind") or ""
    if not names.get("singular"):
        names["singular"] = kind.lower()
    if not names.get("listKind") and kind:
        names["listKind"] = kind + "List"
    spec.setdefault("conversion", {"strategy": "None"})


def storage_version(obj: dict[str, Any]) -> str:
    return next((str(v.get("name")) for v in _versions(_dict(obj.get("spec"))) if v.get("storage") is True), "")


def _condition(ctype: str, reason: str, message: str, now: float, old: list[dict[str, Any]]) -> dict[str, Any]:
    """A True condition that keeps its lastTransitionTime while it stays True."""
    prev = next((c for c in old if c.get("type") == ctype), None)
    since = prev["lastTransitionTime"] if prev and prev.get("status") == "True" else format_time(now)
    return {"type": ctype, "status": "True", "lastTransitionTime": since, "reason": reason, "message": message}


def establish(obj: dict[str, Any], old: dict[str, Any] | None, now: float) -> None:
    """The status kube-apiserver's naming and establishing controllers converge on: the names
    accepted, ``NamesAccepted`` and ``Established`` True, the storage version recorded."""
    names = _dict(_dict(obj.get("spec")).get("names"))
    accepted = {k: names[k] for k in ("plural", "singular", "shortNames", "kind", "listKind", "categories")
                if names.get(k)}
    old_status = _dict((old or {}).get("status"))
    old_conds = [c for c in old_status.get("conditions") or [] if isinstance(c, dict)]
    stored = list(old_status.get("storedVersions") or [])
    sv = storage_version(obj)
    if sv and sv not in stored:
        stored.append(sv)
    obj["status"] = {
        "conditions": [
            _condition("NamesAccepted", "NoConflicts", "no conflicts found", now, old_conds),
            _condition("Established", "InitialNamesAccepted", "the initial names have been accepted", now, old_conds),
        ],
        "acceptedNames": accepted,
        "storedVersions": stored,
    }


# ---------------------------------------------------------------------------------------------
# validation (apiextensions validation.go, the checks clients hit)


def _label_causes(path: str, value: Any, mixed_case: bool = False) -> Causes:
    text = str(value)
    probe = text.lower() if mixed_case else text
    errs = []
    if len(probe) > 63:
        errs.append("must be no more than 63 characters")
    if not _DNS1035.match(probe):
        errs.append(_DNS1035_MSG)
    if not errs:
        return []
    prefix = "may have mixed case, but should otherwise match: " if mixed_case else ""
    return [(path, f'Invalid value: "{text}": {prefix}{",".join(errs)}')]


def _go_versions(versions: list[dict[str, Any]]) -> str:
    """The Go rendering (%#v) kube-apiserver prints for spec.versions, reduced to the fields it checks."""
    if not versions:
        return "[]apiextensions.CustomResourceDefinitionVersion(nil)"
    items = ", ".join(
        f'apiextensions.CustomResourceDefinitionVersion{{Name:"{v.get("name", "")}", '
        f'Served:{str(v.get("served") is True).lower()}, Storage:{str(v.get("storage") is True).lower()}}}'
        for v in versions)
    return f"[]apiextensions.CustomResourceDefinitionVersion{{{items}}}"


def _group_causes(group: Any) -> Causes:
    if not group:
        return [("spec.group", "Required value")]
    if len(str(group)) > 253 or not _DNS1123_SUBDOMAIN.match(str(group)):
        return [("spec.group", f'Invalid value: "{group}": {_SUBDOMAIN_MSG}')]
    if "." not in str(group):
        return [("spec.group", f'Invalid value: "{group}": should be a domain with at least one dot')]
    return []


def _scope_causes(scope: Any) -> Causes:
    if not scope:
        return [("spec.scope", "Required value")]
    if scope not in ("Cluster", "Namespaced"):
        return [("spec.scope", f'Unsupported value: "{scope}": supported values: "Cluster", "Namespaced"')]
    return []


def _scale_causes(path: str, scale: dict[str, Any]) -> Causes:
    causes: Causes = []
    rules = (("specReplicasPath", (".spec.",), "should be a json path under .spec", True),
             ("statusReplicasPath", (".status.",), "should be a json path under .status", True),
             ("labelSelectorPath", (".spec.", ".status."), "should be a json path under either .spec or .status",
              False))
    for name, prefixes, message, required in rules:
        value = scale.get(name)
        if not value:
            if required:
                causes.append((f"{path}.{name}", "Required value"))
            continue
        if not isinstance(value, str) or not _SIMPLE_PATH.match(value):
            causes.append((f"{path}.{name}", f'Invalid value: "{value}": must be a simple json path starting with .'))
        elif not value.startswith(prefixes):
            causes.append((f"{path}.{name}", f'Invalid value: "{value}": {message}'))
    return causes


def _version_causes(versions: list[dict[str, Any]]) -> Causes:
    causes: Causes = []
    seen: set[str] = set()
    unique = True
    for i, v in enumerate(versions):
        name = str(v.get("name") or "")
        unique = unique and name not in seen
        seen.add(name)
        causes += _label_causes(f"spec.versions[{i}].name", name)
        scale = _dict(_dict(v.get("subresources")).get("scale"))
        if "scale" in _dict(v.get("subresources")):
            causes += _scale_causes(f"spec.versions[{i}].subresources.scale", scale)
    if not unique:
        causes.append(("spec.versions", f"Invalid value: {_go_versions(versions)}: must contain unique version names"))
    if sum(1 for v in versions if v.get("storage") is True) != 1:
        causes.append(("spec.versions", f"Invalid value: {_go_versions(versions)}: must have exactly one version "
                       "marked as storage version"))
    return causes


def _names_causes(names: dict[str, Any]) -> Causes:
    causes: Causes = [(f"spec.names.{k}", "Required value") for k in ("plural", "singular", "kind", "listKind")
                      if not names.get(k)]
    for key in ("plural", "singular"):
        if names.get(key):
            causes += _label_causes(f"spec.names.{key}", names[key])
    for key in ("kind", "listKind"):
        if names.get(key):
            causes += _label_causes(f"spec.names.{key}", names[key], mixed_case=True)
    for key in ("shortNames", "categories"):
        for i, value in enumerate(names.get(key) or []):
            causes += _label_causes(f"spec.names.{key}[{i}]", value)
    if names.get("kind") and names.get("kind") == names.get("listKind"):
        causes.append(("spec.names.listKind", f'Invalid value: "{names["listKind"]}": kind and listKind may not be '
                       "the same"))
    return causes


def _immutable(path: str, new: Any, old: Any) -> Causes:
    return [] if new == old else [(path, f'Invalid value: "{new}": field is immutable')]


def validate(obj: dict[str, Any], old: dict[str, Any] | None) -> Causes:
    """The checks of ValidateCustomResourceDefinition(Update) that matter to clients."""
    spec = _dict(obj.get("spec"))
    names = _dict(spec.get("names"))
    name = _dict(obj.get("metadata")).get("name")
    causes: Causes = []
    if name != f"{names.get('plural', '')}.{spec.get('group', '')}":
        causes.append(("metadata.name", f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group'))
    causes += _group_causes(spec.get("group"))
    causes += _scope_causes(spec.get("scope"))
    causes += _version_causes(_versions(spec))
    causes += _names_causes(names)
    if old is not None:
        ospec = _dict(old.get("spec"))
        onames = _dict(ospec.get("names"))
        causes += _immutable("spec.scope", spec.get("scope"), ospec.get("scope"))
        causes += _immutable("spec.names.kind", names.get("kind"), onames.get("kind"))
        causes += _immutable("spec.group", spec.get("group"), ospec.get("group"))
        causes += _immutable("spec.names.plural", names.get("plural"), onames.get("plural"))
    return causes


# ---------------------------------------------------------------------------------------------
# the served resource


def _columns(version: dict[str, Any]) -> tuple[PrinterColumn, ...]:
    out = []
    for c in version.get("additionalPrinterColumns") or []:
        if isinstance(c, dict) and c.get("name") and c.get("jsonPath"):
            out.append(PrinterColumn(str(c["name"]), str(c.get("type") or "string"), str(c["jsonPath"]),
                                     str(c.get("description") or ""), int(c.get("priority") or 0),
                                     str(c.get("format") or "")))
    return tuple(out)


def _scale(version: dict[str, Any]) -> ScalePaths | None:
    subs = _dict(version.get("subresources"))
    if "scale" not in subs:
        return None
    scale = _dict(subs.get("scale"))
    return ScalePaths(str(scale.get("specReplicasPath") or ""), str(scale.get("statusReplicasPath") or ""),
                      str(scale.get("labelSelectorPath") or ""))


def resource_of(obj: dict[str, Any]) -> Resource | None:
    """What an established CRD serves, or None when none of its versions is served.

    Subresources and printer columns come from the storage version (kube-apiserver has them per
    version; CRDs almost always declare the same ones on every version)."""
    spec = _dict(obj.get("spec"))
    names = _dict(_dict(obj.get("status")).get("acceptedNames")) or _dict(spec.get("names"))
    versions = _versions(spec)
    served = tuple(sorted((str(v["name"]) for v in versions if v.get("served") is True), key=version_priority))
    if not served:
        return None
    stored = storage_version(obj) or served[0]
    main = next((v for v in versions if v.get("name") == stored), versions[0])
    subs = _dict(main.get("subresources"))
    subresources = {k: RO_SUB for k in ("status", "scale") if k in subs}
    return Resource(
        str(spec.get("group")), served, str(names.get("plural")), str(names.get("singular")),
        str(names.get("kind")), spec.get("scope") == "Namespaced", CUSTOM_VERBS,
        tuple(names.get("shortNames") or ()), tuple(names.get("categories") or ()), subresources,
        generation=True, has_status="status" in subs, custom=True, storage_version=stored,
        list_kind=str(names.get("listKind") or ""), scale=_scale(main), columns=_columns(main))


# ---------------------------------------------------------------------------------------------
# JSONPaths and the scale subresource


def path_of(json_path: str) -> list[str]:
    return json_path.lstrip(".").split(".") if json_path else []


def value_at(obj: Any, json_path: str) -> tuple[Any, bool]:
    """(value, found) at a simple JSONPath such as ``.status.replicas``."""
    cur = obj
    for part in path_of(json_path):
        if not isinstance(cur, dict) or part not in cur:
            return None, False
        cur = cur[part]
    return cur, True


def _int_at(obj: dict[str, Any], json_path: str) -> int:
    value, found = value_at(obj, json_path)
    return value if found and isinstance(value, int) and not isinstance(value, bool) else 0


def scale_of(r: Resource, obj: dict[str, Any]) -> dict[str, Any]:
    """The autoscaling/v1 Scale of a custom object (missing values read as 0, no selector when the
    CRD names no labelSelectorPath); zero spec replicas are omitted as Go's omitempty does."""
    assert r.scale is not None
    md = obj["metadata"]
    spec_replicas = _int_at(obj, r.scale.spec_replicas)
    status: dict[str, Any] = {"replicas": _int_at(obj, r.scale.status_replicas)}
    selector, found = value_at(obj, r.scale.label_selector) if r.scale.label_selector else (None, False)
    if found and isinstance(selector, str) and selector:
        status["selector"] = selector
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {k: md[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                     if k in md},
        "spec": {"replicas": spec_replicas} if spec_replicas else {},
        "status": status,
    }


def set_spec_replicas(r: Resource, obj: dict[str, Any], replicas: int) -> None:
    """Write ``replicas`` at the CRD's specReplicasPath, creating missing maps on the way."""
    assert r.scale is not None
    *parents, leaf = path_of(r.scale.spec_replicas)
    cur = obj
    for part in parents:
        if not isinstance(cur.get(part), dict):
            cur[part] = {}
        cur = cur[part]
    cur[leaf] = replicas
