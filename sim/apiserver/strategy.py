"""Per-resource defaulting and validation, as kube-apiserver's registry strategies apply them.

Only the defaults that clients visibly rely on are filled (kubectl describe/get columns, the HPA's
v2 defaults, pod QoS class, service cluster IPs); validation covers names, labels and the
cross-field rules that clients hit in practice (deployment selectors, HPA rules via hpa-core).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from autoscaler.hpa.defaults import APIFeatures, default_hpa, prepare_for_write
from autoscaler.k8s.quantity import QuantityError, parse_quantity
from autoscaler.k8s.selectors import SelectorError, selector_from_object, validate_label_key, validate_label_value

from . import crd
from .resources import CRDS

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
    "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
    "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and "
    "must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
# Resources whose names must be DNS-1123 labels rather than subdomains.
_LABEL_NAMED = {"namespaces", "services"}
# Resources whose names need only be valid path segments (RBAC: "system:kube-scheduler").
_PATH_SEGMENT_NAMED = {"apiservices.apiregistration.k8s.io"} | {
    f"{r}.rbac.authorization.k8s.io" for r in ("roles", "rolebindings", "clusterroles", "clusterrolebindings")}

Causes = list[tuple[str, str]]


def validate_name(resource: str, name: str) -> Causes:
    if not name:
        return [("metadata.name", "Required value: name or generateName is required")]
    if resource in _LABEL_NAMED:
        if len(name) > 63 or not _DNS1123_LABEL.match(name):
            return [("metadata.name", f'Invalid value: "{name}": {_LABEL_MSG}')]
    elif resource in _PATH_SEGMENT_NAMED:
        if name in (".", ".."):
            return [("metadata.name", f'Invalid value: "{name}": may not be \'{name}\'')]
        for bad in ("/", "%"):
            if bad in name:
                return [("metadata.name", f'Invalid value: "{name}": may not contain \'{bad}\'')]
    elif len(name) > 253 or not _DNS1123_SUBDOMAIN.match(name):
        return [("metadata.name", f'Invalid value: "{name}": {_SUBDOMAIN_MSG}')]
    return []


def validate_metadata(obj: dict[str, Any]) -> Causes:
    md = obj.get("metadata") or {}
    causes: Causes = []
    for key, val in (md.get("labels") or {}).items():
        try:
            validate_label_key(key)
        except SelectorError as e:
            causes.append(("metadata.labels", f'Invalid value: "{key}": {e}'))
            continue
        if not isinstance(val, str):
            causes.append((f"metadata.labels.{key}", f"Invalid value: {val!r}: must be a string"))
            continue
        try:
            validate_label_value(val)
        except SelectorError as e:
            causes.append(("metadata.labels", f'Invalid value: "{val}": {e}'))
    for key in md.get("annotations") or {}:
        try:
            validate_label_key(key)
        except SelectorError as e:
            causes.append(("metadata.annotations", f'Invalid value: "{key}": {e}'))
    return causes


# ---------------------------------------------------------------------------------------------
# Defaulting


def _default_container(c: dict[str, Any]) -> None:
    image = c.get("image", "")
    if "imagePullPolicy" not in c:
        last = image.rsplit("/", 1)[-1]
        tagged = ":" in last and not last.endswith(":latest")
        c["imagePullPolicy"] = "IfNotPresent" if tagged or "@" in image else "Always"
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    res = c.setdefault("resources", {})
    limits = res.get("limits") or {}
    if limits:
        req = res.setdefault("requests", {})
        for k, v in limits.items():
            req.setdefault(k, v)
    for p in c.get("ports") or []:
        p.setdefault("protocol", "TCP")


def default_pod_spec(spec: dict[str, Any]) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for c in spec.get("initContainers") or []:
        _default_container(c)
    for c in spec.get("containers") or []:
        _default_container(c)


def _default_template(obj: dict[str, Any]) -> None:
    tmpl = (obj.get("spec") or {}).get("template")
    if isinstance(tmpl, dict):
        tmpl.setdefault("metadata", {})
        default_pod_spec(tmpl.setdefault("spec", {}))


def qos_class(spec: dict[str, Any]) -> str:
    """Pod QoS class from its containers' requests and limits (BestEffort, Guaranteed, Burstable)."""
    containers = list(spec.get("containers") or []) + list(spec.get("initContainers") or [])
    any_set = False
    guaranteed = True
    for c in containers:
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        if req or lim:
            any_set = True
        for r in ("cpu", "memory"):
            if r not in lim:
                guaranteed = False
                continue
            try:
                if parse_quantity(req.get(r, lim[r])) != parse_quantity(lim[r]):
                    guaranteed = False
            except QuantityError:
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def _pod(obj: dict[str, Any]) -> None:
    spec = obj.setdefault("spec", {})
    default_pod_spec(spec)
    spec.setdefault("enableServiceLinks", True)  # SetDefaults_Pod, not templates
    sa = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    spec["serviceAccountName"] = spec["serviceAccount"] = sa
    spec.setdefault("priority", 0)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    tols = spec.setdefault("tolerations", [])
    keys = {t.get("key") for t in tols}
    for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
        if key not in keys:
            tols.append({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300})
    status = obj.setdefault("status", {})
    status.setdefault("phase", "Pending")
    status.setdefault("qosClass", qos_class(spec))


def _deployment(obj: dict[str, Any]) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    strat = spec.setdefault("strategy", {})
    strat.setdefault("type", "RollingUpdate")
    if strat["type"] == "RollingUpdate":
        ru = strat.setdefault("rollingUpdate", {})
        ru.setdefault("maxUnavailable", "25%")
        ru.setdefault("maxSurge", "25%")
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    _default_template(obj)


def _replicaset(obj: dict[str, Any]) -> None:
    obj.setdefault("spec", {}).setdefault("replicas", 1)
    _default_template(obj)


def _statefulset(obj: dict[str, Any]) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("podManagementPolicy", "OrderedReady")
    us = spec.setdefault("updateStrategy", {"type": "RollingUpdate"})
    if us.get("type") == "RollingUpdate":
        ru = us.setdefault("rollingUpdate", {})
        ru.setdefault("partition", 0)
        ru.setdefault("maxUnavailable", 1)  # MaxUnavailableStatefulSet, on by default in 1.37
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("persistentVolumeClaimRetentionPolicy", {"whenDeleted": "Retain", "whenScaled": "Retain"})
    _default_template(obj)


def _namespace(obj: dict[str, Any]) -> None:
    md = obj.setdefault("metadata", {})
    md.setdefault("labels", {})["kubernetes.io/metadata.name"] = md.get("name", "")
    obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
    obj.setdefault("status", {}).setdefault("phase", "Active")


def _service(obj: dict[str, Any]) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    for p in spec.get("ports") or []:
        p.setdefault("protocol", "TCP")
        p.setdefault("targetPort", p.get("port"))
    if spec["type"] != "ExternalName":
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")
    obj.setdefault("status", {}).setdefault("loadBalancer", {})


def _secret(obj: dict[str, Any]) -> None:
    obj.setdefault("type", "Opaque")
    # stringData is write-only: merged into data (base64), never stored
    string_data = obj.pop("stringData", None) or {}
    if string_data:
        data = obj.get("data") or {}
        data.update({k: base64.b64encode(str(v).encode()).decode() for k, v in string_data.items()})
        obj["data"] = data


def _pvc(obj: dict[str, Any]) -> None:
    obj.setdefault("spec", {}).setdefault("volumeMode", "Filesystem")
    obj.setdefault("status", {}).setdefault("phase", "Pending")


def _pv(obj: dict[str, Any]) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("persistentVolumeReclaimPolicy", "Retain")
    spec.setdefault("volumeMode", "Filesystem")
    if isinstance(spec.get("hostPath"), dict):
        spec["hostPath"].setdefault("type", "")
    obj.setdefault("status", {}).setdefault("phase", "Pending")


def _replicationcontroller(obj: dict[str, Any]) -> None:
    spec = obj.setdefault("spec", {})
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    if labels:
        if not spec.get("selector"):
            spec["selector"] = dict(labels)
        md = obj.setdefault("metadata", {})
        if not md.get("labels"):
            md["labels"] = dict(labels)
    spec.setdefault("replicas", 1)
    _default_template(obj)


def _storageclass(obj: dict[str, Any]) -> None:
    obj.setdefault("reclaimPolicy", "Delete")
    obj.setdefault("volumeBindingMode", "Immediate")


def _endpoints(obj: dict[str, Any]) -> None:
    for subset in obj.get("subsets") or []:
        for p in subset.get("ports") or []:
            p.setdefault("protocol", "TCP")


def _hpa(obj: dict[str, Any]) -> None:
    defaulted = default_hpa(obj)
    obj.clear()
    obj.update(defaulted)


DEFAULTERS: dict[str, Callable[[dict[str, Any]], None]] = {
    "pods": _pod,
    "deployments.apps": _deployment,
    "replicasets.apps": _replicaset,
    "statefulsets.apps": _statefulset,
    "namespaces": _namespace,
    "services": _service,
    "secrets": _secret,
    "endpoints": _endpoints,
    "persistentvolumeclaims": _pvc,
    "persistentvolumes": _pv,
    "replicationcontrollers": _replicationcontroller,
    "storageclasses.storage.k8s.io": _storageclass,
    "horizontalpodautoscalers.autoscaling": _hpa,
    CRDS: crd.default,
}


def apply_defaults(resource: str, obj: dict[str, Any]) -> None:
    fn = DEFAULTERS.get(resource)
    if fn is not None:
        fn(obj)


# ---------------------------------------------------------------------------------------------
# Validation


def _workload(kind: str) -> Callable[[dict[str, Any], dict[str, Any] | None], Causes]:
    def check(obj: dict[str, Any], old: dict[str, Any] | None) -> Causes:
        spec = obj.get("spec") or {}
        causes: Causes = []
        sel = spec.get("selector")
        if sel is None:
            return [("spec.selector", "Required value")]
        try:
            selector = selector_from_object(sel)
        except SelectorError as e:
            return [("spec.selector", f"Invalid value: {e}")]
        if selector.empty:
            causes.append(("spec.selector", "Invalid value: \"\": empty selector is invalid for deployment"
                           if kind == "Deployment" else "Required value"))
        reps = spec.get("replicas")
        if isinstance(reps, int) and reps < 0:
            causes.append(("spec.replicas", f"Invalid value: {reps}: must be greater than or equal to 0"))
        labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        if not selector.empty and not selector.matches(labels):
            shown = json.dumps(labels, separators=(",", ":"), sort_keys=True)  # 1.37 prints values as JSON
            causes.append(("spec.template.metadata.labels",
                           f"Invalid value: {shown}: `selector` does not match template `labels`"))
        containers = ((spec.get("template") or {}).get("spec") or {}).get("containers")
        if not containers:
            causes.append(("spec.template.spec.containers", "Required value"))
        if old is not None and (old.get("spec") or {}).get("selector") != sel:
            causes.append(("spec.selector", f"Invalid value: {_go_selector(sel)}: field is immutable"))
        return causes
    return check


def _go_map(labels: dict[str, str]) -> str:
    return "map[string]string{" + ", ".join(f'"{k}":"{v}"' for k, v in sorted(labels.items())) + "}"


def _go_selector(sel: dict[str, Any]) -> str:
    ml = sel.get("matchLabels") or {}
    return "v1.LabelSelector{MatchLabels:" + _go_map(ml) + ", MatchExpressions:[]v1.LabelSelectorRequirement(nil)}"


def _pod_check(obj: dict[str, Any], old: dict[str, Any] | None) -> Causes:
    spec = obj.get("spec") or {}
    causes: Causes = []
    containers = spec.get("containers")
    if not containers:
        return [("spec.containers", "Required value")]
    seen: set[str] = set()
    for i, c in enumerate(containers):
        name = c.get("name", "")
        if not name:
            causes.append((f"spec.containers[{i}].name", "Required value"))
        elif name in seen:
            causes.append((f"spec.containers[{i}].name", f'Duplicate value: "{name}"'))
        seen.add(name)
        if not c.get("image") and old is None:
            causes.append((f"spec.containers[{i}].image", "Required value"))
        for kind in ("requests", "limits"):
            for r, q in ((c.get("resources") or {}).get(kind) or {}).items():
                try:
                    if parse_quantity(q) < Decimal(0):
                        causes.append((f"spec.containers[{i}].resources.{kind}[{r}]",
                                       f'Invalid value: "{q}": must be greater than or equal to 0'))
                except QuantityError:
                    causes.append((f"spec.containers[{i}].resources.{kind}[{r}]",
                                   f'Invalid value: "{q}": quantities must match the regular expression '
                                   "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"))
    if old is not None:
        old_node = (old.get("spec") or {}).get("nodeName")
        if old_node and spec.get("nodeName") != old_node:
            causes.append(("spec", "Forbidden: pod updates may not change fields other than "
                           "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,"
                           "`spec.tolerations` (only additions to existing tolerations),"
                           "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously "
                           "negative)"))
    return causes


#: kube-apiserver's HPA gates at the emulated version; like upstream's feature gate, one per process
_hpa_features = APIFeatures()


def configure_hpa(features: APIFeatures) -> APIFeatures:
    """Set the HPA gates the emulated API server applies (``--emulated-version``, ``--feature-gates``);
    returns the previous setting so a caller can restore it."""
    global _hpa_features
    previous, _hpa_features = _hpa_features, features
    return previous


def hpa_features() -> APIFeatures:
    return _hpa_features


def _hpa_check(obj: dict[str, Any], old: dict[str, Any] | None) -> Causes:
    """The HPA strategy's Prepare* (metadata.generation, dropped tolerances) and validation. The
    store calls this last before committing a create or update, so the generation set here is final."""
    return list(prepare_for_write(obj, old, _hpa_features))


VALIDATORS: dict[str, Callable[[dict[str, Any], dict[str, Any] | None], Causes]] = {
    "pods": _pod_check,
    "deployments.apps": _workload("Deployment"),
    "replicasets.apps": _workload("ReplicaSet"),
    "statefulsets.apps": _workload("StatefulSet"),
    "horizontalpodautoscalers.autoscaling": _hpa_check,
    CRDS: crd.validate,
}


def validate(resource: str, obj: dict[str, Any], old: dict[str, Any] | None) -> Causes:
    causes = validate_metadata(obj)
    fn = VALIDATORS.get(resource)
    if fn is not None:
        causes.extend(fn(obj, old))
    return causes
