"""The resource catalogue: what the emulated API server serves, with kube-apiserver's names,
scopes, verbs, short names and categories (so discovery, kubectl and RBAC see the same thing).

``RESOURCES`` are the built-ins (data); a :class:`Catalogue` is one server's view: the built-ins
plus the custom resources its CustomResourceDefinitions define."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

RW = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
RO_SUB = ("get", "patch", "update")
CONNECT = ("create", "delete", "get", "patch", "update")  # proxy subresources: every method, relayed


@dataclass(frozen=True)
class Resource:
    """One resource of one group (all served versions).

    ``key`` is the store key: ``<plural>`` for the core group, ``<plural>.<group>`` otherwise.
    ``storage`` names the store key the objects really live in (events.k8s.io events are core
    events seen through a conversion).
    """

    group: str
    versions: tuple[str, ...]  # served; the first one is preferred and the storage version
    plural: str
    singular: str
    kind: str
    namespaced: bool
    verbs: tuple[str, ...] = RW
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: dict[str, tuple[str, ...]] = field(default_factory=dict)  # name -> verbs
    storage: str = ""
    generation: bool = False  # metadata.generation tracks spec changes
    has_status: bool = False
    custom: bool = False  # served from a CustomResourceDefinition
    storage_version: str = ""  # when not versions[0] (custom resources)
    list_kind: str = ""
    scale: ScalePaths | None = None  # custom resources: where the scale subresource reads and writes
    columns: tuple[PrinterColumn, ...] = ()  # custom resources: additionalPrinterColumns

    @property
    def key(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def storage_key(self) -> str:
        return self.storage or self.key

    def api_version(self, version: str | None = None) -> str:
        v = version or self.storage_version or self.versions[0]
        return f"{self.group}/{v}" if self.group else v


@dataclass(frozen=True)
class ScalePaths:
    """A CRD's ``subresources.scale``: simple JSONPaths such as ``.spec.replicas``."""

    spec_replicas: str
    status_replicas: str
    label_selector: str = ""


@dataclass(frozen=True)
class PrinterColumn:
    """One of a CRD's ``additionalPrinterColumns``."""

    name: str
    type: str
    json_path: str
    description: str = ""
    priority: int = 0
    format: str = ""


_STATUS = {"status": RO_SUB}
_STATUS_SCALE = {"status": RO_SUB, "scale": RO_SUB}

RESOURCES: tuple[Resource, ...] = (
    Resource("", ("v1",), "namespaces", "namespace", "Namespace", False,
             ("create", "delete", "get", "list", "patch", "update", "watch"), ("ns",),
             subresources={"status": RO_SUB, "finalize": ("update",)}, has_status=True),
    Resource("", ("v1",), "nodes", "node", "Node", False, RW, ("no",),
             subresources={"proxy": CONNECT, "status": RO_SUB}, has_status=True),
    Resource("", ("v1",), "pods", "pod", "Pod", True, RW, ("po",), ("all",),
             subresources={"status": RO_SUB, "binding": ("create",), "eviction": ("create",), "log": ("get",),
                           "exec": ("create", "get"), "attach": ("create", "get"), "portforward": ("create", "get"),
                           "proxy": CONNECT},
             generation=True, has_status=True),
    Resource("", ("v1",), "services", "service", "Service", True,
             ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"), ("svc",), ("all",),
             subresources={"status": RO_SUB, "proxy": CONNECT}, has_status=True),
    Resource("", ("v1",), "endpoints", "endpoints", "Endpoints", True, RW, ("ep",)),
    Resource("", ("v1",), "persistentvolumeclaims", "persistentvolumeclaim", "PersistentVolumeClaim", True, RW,
             ("pvc",), subresources=_STATUS, has_status=True),
    Resource("", ("v1",), "persistentvolumes", "persistentvolume", "PersistentVolume", False, RW, ("pv",),
             subresources=_STATUS, has_status=True),
    Resource("", ("v1",), "replicationcontrollers", "replicationcontroller", "ReplicationController", True, RW,
             ("rc",), ("all",), _STATUS_SCALE, generation=True, has_status=True),
    Resource("", ("v1",), "configmaps", "configmap", "ConfigMap", True, RW, ("cm",)),
    Resource("", ("v1",), "secrets", "secret", "Secret", True, RW),
    Resource("", ("v1",), "serviceaccounts", "serviceaccount", "ServiceAccount", True, RW, ("sa",),
             subresources={"token": ("create",)}),
    Resource("", ("v1",), "events", "event", "Event", True, RW, ("ev",)),
    Resource("apps", ("v1",), "deployments", "deployment", "Deployment", True, RW, ("deploy",), ("all",),
             _STATUS_SCALE, generation=True, has_status=True),
    Resource("apps", ("v1",), "replicasets", "replicaset", "ReplicaSet", True, RW, ("rs",), ("all",),
             _STATUS_SCALE, generation=True, has_status=True),
    Resource("apps", ("v1",), "statefulsets", "statefulset", "StatefulSet", True, RW, ("sts",), ("all",),
             _STATUS_SCALE, generation=True, has_status=True),
    Resource("autoscaling", ("v2", "v1"), "horizontalpodautoscalers", "horizontalpodautoscaler",
             "HorizontalPodAutoscaler", True, RW, ("hpa",), ("all",), _STATUS, generation=True, has_status=True),
    Resource("coordination.k8s.io", ("v1",), "leases", "lease", "Lease", True, RW),
    Resource("events.k8s.io", ("v1",), "events", "event", "Event", True, RW, ("ev",), storage="events"),
    Resource("apiregistration.k8s.io", ("v1",), "apiservices", "apiservice", "APIService", False, RW,
             categories=("api-extensions",), subresources=_STATUS, has_status=True),
    Resource("rbac.authorization.k8s.io", ("v1",), "clusterroles", "clusterrole", "ClusterRole", False, RW),
    Resource("rbac.authorization.k8s.io", ("v1",), "clusterrolebindings", "clusterrolebinding",
             "ClusterRoleBinding", False, RW),
    Resource("rbac.authorization.k8s.io", ("v1",), "roles", "role", "Role", True, RW),
    Resource("rbac.authorization.k8s.io", ("v1",), "rolebindings", "rolebinding", "RoleBinding", True, RW),
    Resource("policy", ("v1",), "poddisruptionbudgets", "poddisruptionbudget", "PodDisruptionBudget", True, RW,
             ("pdb",), subresources=_STATUS, generation=True, has_status=True),
    Resource("authentication.k8s.io", ("v1",), "tokenreviews", "tokenreview", "TokenReview", False, ("create",)),
    Resource("authorization.k8s.io", ("v1",), "subjectaccessreviews", "subjectaccessreview",
             "SubjectAccessReview", False, ("create",)),
    Resource("authorization.k8s.io", ("v1",), "selfsubjectaccessreviews", "selfsubjectaccessreview",
             "SelfSubjectAccessReview", False, ("create",)),
    Resource("authentication.k8s.io", ("v1",), "selfsubjectreviews", "selfsubjectreview",
             "SelfSubjectReview", False, ("create",)),
    # Stored only (no controllers act on them): kube-scheduler lists and watches these kinds and
    # waits for every informer before it schedules.
    Resource("storage.k8s.io", ("v1",), "storageclasses", "storageclass", "StorageClass", False, RW, ("sc",)),
    Resource("storage.k8s.io", ("v1",), "csidrivers", "csidriver", "CSIDriver", False, RW),
    Resource("storage.k8s.io", ("v1",), "csinodes", "csinode", "CSINode", False, RW),
    Resource("storage.k8s.io", ("v1",), "csistoragecapacities", "csistoragecapacity", "CSIStorageCapacity", True, RW),
    Resource("storage.k8s.io", ("v1",), "volumeattachments", "volumeattachment", "VolumeAttachment", False, RW,
             subresources=_STATUS, has_status=True),
    Resource("storage.k8s.io", ("v1",), "volumeattributesclasses", "volumeattributesclass", "VolumeAttributesClass",
             False, RW, ("vac",), generation=True),
    Resource("resource.k8s.io", ("v1",), "deviceclasses", "deviceclass", "DeviceClass", False, RW, generation=True),
    Resource("resource.k8s.io", ("v1",), "devicetaintrules", "devicetaintrule", "DeviceTaintRule", False, RW,
             subresources=_STATUS, generation=True, has_status=True),
    Resource("resource.k8s.io", ("v1",), "resourceclaims", "resourceclaim", "ResourceClaim", True, RW,
             subresources=_STATUS, has_status=True),
    Resource("resource.k8s.io", ("v1",), "resourceclaimtemplates", "resourceclaimtemplate", "ResourceClaimTemplate",
             True, RW),
    Resource("resource.k8s.io", ("v1",), "resourceslices", "resourceslice", "ResourceSlice", False, RW,
             generation=True),
    Resource("apiextensions.k8s.io", ("v1",), "customresourcedefinitions", "customresourcedefinition",
             "CustomResourceDefinition", False, RW, ("crd", "crds"), ("api-extensions",), _STATUS,
             generation=True, has_status=True),
)
CRDS = "customresourcedefinitions.apiextensions.k8s.io"

# Resources without storage: a create is answered, never stored.
VIRTUAL = frozenset({
    "tokenreviews.authentication.k8s.io", "subjectaccessreviews.authorization.k8s.io",
    "selfsubjectaccessreviews.authorization.k8s.io", "selfsubjectreviews.authentication.k8s.io",
})

# Warnings kube-apiserver attaches to every request for a deprecated (resource, version).
DEPRECATED = {
    ("endpoints", "v1"): "v1 Endpoints is deprecated in v1.33+; use discovery.k8s.io/v1 EndpointSlice",
}

# Group order as kube-apiserver lists them in /apis (the order kubectl's RESTMapper prefers).
GROUP_ORDER = (
    "apiregistration.k8s.io", "apps", "events.k8s.io", "authentication.k8s.io", "authorization.k8s.io",
    "autoscaling", "policy", "rbac.authorization.k8s.io", "storage.k8s.io", "apiextensions.k8s.io",
    "coordination.k8s.io", "resource.k8s.io",
)


# Verbs of custom resources, in apiextensions-apiserver's order.
CUSTOM_VERBS = ("delete", "deletecollection", "get", "list", "patch", "create", "update", "watch")
_KUBE_VERSION = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


def version_priority(version: str) -> tuple:
    """Sort key for kube-aware version order (v2 > v1 > v1beta2 > v1beta1 > v1alpha1 > other, by name)."""
    m = _KUBE_VERSION.match(version)
    if m is None:
        return (3, 0, 0, version)
    major, stage, minor = int(m.group(1)), m.group(2), int(m.group(3) or 0)
    return ({None: 0, "beta": 1, "alpha": 2}[stage], -major, -minor, "")


class Catalogue:
    """What one API server serves: the built-in resources plus the custom resources its CRDs define.

    Each ``APIServer``/``ObjectStore`` pair owns one, so custom resources never leak between servers
    running in one process. ``generation`` changes with every registration (caches key on it).
    """

    def __init__(self, builtins: tuple[Resource, ...] = RESOURCES):
        self._builtins = builtins
        self._custom: dict[str, Resource] = {}
        self.generation = 0
        self._index()

    def _index(self) -> None:
        self.all: tuple[Resource, ...] = self._builtins + tuple(self._custom.values())
        self.by_key: dict[str, Resource] = {r.key: r for r in self.all}
        self._by_group_plural = {(r.group, r.plural): r for r in self.all}
        self.generation += 1

    def register(self, r: Resource) -> bool:
        """Serve (or re-describe) a custom resource; False when a built-in already owns its name."""
        if any(b.key == r.key for b in self._builtins):
            return False
        self._custom[r.key] = r
        self._index()
        return True

    def unregister(self, key: str) -> Resource | None:
        r = self._custom.pop(key, None)
        if r is not None:
            self._index()
        return r

    def stored(self) -> tuple[str, ...]:
        """Store keys that hold objects (not review-only resources, not views of another key)."""
        return tuple(r.key for r in self.all if r.key not in VIRTUAL and not r.storage)

    def groups(self) -> list[tuple[str, tuple[str, ...]]]:
        """(group, versions) for every named group: built-ins in discovery order, then custom groups."""
        out: dict[str, list[str]] = {}
        for r in self.all:
            if r.group:
                vs = out.setdefault(r.group, [])
                vs.extend(v for v in r.versions if v not in vs)
        custom = sorted(g for g in out if g not in GROUP_ORDER)
        return [(g, tuple(sorted(out[g], key=version_priority) if g in custom else out[g]))
                for g in (*GROUP_ORDER, *custom) if g in out]

    def resources_in(self, group: str, version: str) -> list[Resource]:
        return [r for r in self.all if r.group == group and version in r.versions]

    def lookup(self, group: str, version: str, plural: str) -> Resource | None:
        r = self._by_group_plural.get((group, plural))
        if r is None or version not in r.versions:
            return None
        return r

    def resolve(self, key: str) -> Resource:
        """The Resource for a store key; KeyError with a clear message otherwise."""
        try:
            return self.by_key[key]
        except KeyError:
            raise KeyError(f"unknown resource {key!r}; known: {', '.join(sorted(self.by_key))}") from None

