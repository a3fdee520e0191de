"""The resource catalogue: what the emulated API server serves, with kube-apiserver's names,
scopes, verbs, short names and categories (so discovery, kubectl and RBAC see the same thing)."""

from __future__ import annotations

from dataclasses import dataclass, field

RW = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
RO_SUB = ("get", "patch", "update")


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

    @property
    def key(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def storage_key(self) -> str:
        return self.storage or self.key

    def api_version(self, version: str | None = None) -> str:
        v = version or self.versions[0]
        return f"{self.group}/{v}" if self.group else v


_STATUS = {"status": RO_SUB}
_STATUS_SCALE = {"status": RO_SUB, "scale": RO_SUB}

RESOURCES: tuple[Resource, ...] = (
    Resource("", ("v1",), "namespaces", "namespace", "Namespace", False,
             ("create", "delete", "get", "list", "patch", "update", "watch"), ("ns",),
             subresources={"status": RO_SUB, "finalize": ("update",)}, has_status=True),
    Resource("", ("v1",), "nodes", "node", "Node", False, RW, ("no",), subresources=_STATUS, has_status=True),
    Resource("", ("v1",), "pods", "pod", "Pod", True, RW, ("po",), ("all",),
             subresources={"status": RO_SUB, "binding": ("create",), "eviction": ("create",)}, has_status=True),
    Resource("", ("v1",), "services", "service", "Service", True,
             ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"), ("svc",), ("all",),
             subresources=_STATUS, has_status=True),
    Resource("", ("v1",), "endpoints", "endpoints", "Endpoints", True, RW, ("ep",)),
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
)

# Resources without storage: a create is answered, never stored.
VIRTUAL = frozenset({
    "tokenreviews.authentication.k8s.io", "subjectaccessreviews.authorization.k8s.io",
    "selfsubjectaccessreviews.authorization.k8s.io", "selfsubjectreviews.authentication.k8s.io",
})

BY_KEY: dict[str, Resource] = {r.key: r for r in RESOURCES}
BY_GROUP_PLURAL: dict[tuple[str, str], Resource] = {(r.group, r.plural): r for r in RESOURCES}
STORED: tuple[str, ...] = tuple(r.key for r in RESOURCES if r.key not in VIRTUAL and not r.storage)

# Group order as kube-apiserver lists them in /apis (the order kubectl's RESTMapper prefers).
GROUP_ORDER = (
    "apiregistration.k8s.io", "apps", "events.k8s.io", "authentication.k8s.io", "authorization.k8s.io",
    "autoscaling", "policy", "rbac.authorization.k8s.io", "coordination.k8s.io",
)


def groups() -> list[tuple[str, tuple[str, ...]]]:
    """(group, versions) for every named group, in discovery order."""
    out: dict[str, list[str]] = {}
    for r in RESOURCES:
        if r.group:
            vs = out.setdefault(r.group, [])
            vs.extend(v for v in r.versions if v not in vs)
    return [(g, tuple(out[g])) for g in GROUP_ORDER if g in out]


def resources_in(group: str, version: str) -> list[Resource]:
    return [r for r in RESOURCES if r.group == group and version in r.versions]


def lookup(group: str, version: str, plural: str) -> Resource | None:
    r = BY_GROUP_PLURAL.get((group, plural))
    if r is None or version not in r.versions:
        return None
    return r


def resolve(key: str) -> Resource:
    """The Resource for a store key; KeyError with a clear message otherwise."""
    try:
        return BY_KEY[key]
    except KeyError:
        raise KeyError(f"unknown resource {key!r}; known: {', '.join(sorted(BY_KEY))}") from None
