"""In-memory object storage with etcd's resourceVersion semantics and the watch cache's fan-out.

Stored objects are never changed in place: every write replaces the dict, so readers (lists,
watch events, in-process callers) can hold references without copies. One global counter gives
every write its resourceVersion, as etcd's revision does. Each resource keeps a bounded event ring;
a watch from a version older than the ring gets ``410 Gone`` (reason Expired).
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import copy
import logging
import random
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import orjson

from autoscaler.k8s import status as st
from autoscaler.k8s.selectors import EVERYTHING, FieldSelector, LabelSelector, selector_from_object
from autoscaler.k8s.timefmt import format_time

from . import convert, crd, gojson, strategy
from .fields import object_fields
from .resources import CRDS, Catalogue, Resource

log = logging.getLogger(__name__)

ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"
_SA_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
_PROTECTED = {"persistentvolumeclaims": "kubernetes.io/pvc-protection", "persistentvolumes": "kubernetes.io/pv-protection"}
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"
Key = tuple[str, str]  # (namespace or "", name)
#: kube-apiserver's --event-ttl default: an Event lives this long after its last write
EVENT_TTL = 3600.0
Callback = Callable[[str, dict, "dict | None"], None]


def deep_copy(obj: Any) -> Any:
    """A fast deep copy of a JSON-shaped value."""
    try:
        return orjson.loads(orjson.dumps(obj))
    except TypeError:
        return copy.deepcopy(obj)


def _body(obj: dict[str, Any]) -> dict[str, Any]:
    """Everything but metadata and status: a change here bumps metadata.generation."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def _without_rv(obj: dict[str, Any]) -> dict[str, Any]:
    md = dict(obj.get("metadata") or {})
    md.pop("resourceVersion", None)
    md.pop("managedFields", None)
    out = dict(obj)
    out["metadata"] = md
    return out


def encode_continue(rv: int, key: Key) -> str:
    raw = orjson.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": f"{key[0]}/{key[1]}\x00"})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_continue(token: str) -> tuple[int, Key]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = orjson.loads(raw)
        ns, _, name = data["start"].rstrip("\x00").partition("/")
        return int(data["rv"]), (ns, name)
    except Exception:
        raise st.bad_request("continue key is not valid: illegal base64 data at input byte 0") from None


class _Watcher:
    __slots__ = (
        "closed",
        "error",
        "field",
        "kind",
        "label",
        "limit",
        "namespace",
        "node",
        "pending",
        "queue",
        "ready",
        "resource",
    )

    def __init__(self, kind: _Kind, resource: str, namespace: str | None, label: LabelSelector,
                 field: FieldSelector, limit: int):
        self.kind = kind
        self.resource = resource
        self.namespace = namespace
        self.label = label
        self.field = field
        self.node: str | None = None
        self.queue: deque[tuple[str, dict]] = deque()
        self.pending: deque[tuple[str, dict]] = deque()  # initial events, not bounded
        self.ready = asyncio.Event()
        self.closed = False
        self.error: st.ApiError | None = None
        self.limit = limit

    def matches(self, obj: dict[str, Any]) -> bool:
        md = obj["metadata"]
        if self.namespace and md.get("namespace") != self.namespace:
            return False
        if not self.label.empty and not self.label.matches(md.get("labels")):
            return False
        return self.field.empty or self.field.matches(object_fields(self.resource, obj))

    def offer(self, etype: str, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        """Queue the event as this watcher sees it (selector moves become ADDED/DELETED)."""
        if self.closed:
            return
        new_ok = self.matches(obj)
        old_ok = old is not None and etype == MODIFIED and self.matches(old)
        if etype == MODIFIED:
            if new_ok and old_ok:
                ev = (MODIFIED, obj)
            elif new_ok:
                ev = (ADDED, obj)
            elif old_ok:
                gone = dict(old)  # type: ignore[arg-type]
                gone["metadata"] = dict(gone["metadata"], resourceVersion=obj["metadata"]["resourceVersion"])
                ev = (DELETED, gone)
            else:
                return
        elif new_ok:
            ev = (etype, obj)
        else:
            return
        if len(self.queue) >= self.limit:
            # A consumer this far behind is dropped, as kube-apiserver's watch cache does; the
            # client re-lists or re-watches from its last resourceVersion.
            self.close()
            return
        self.queue.append(ev)
        self.ready.set()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.kind.watchers.discard(self)
            if self.node is not None:
                ws = self.kind.node_watchers.get(self.node)
                if ws is not None:
                    ws.discard(self)
                    if not ws:
                        del self.kind.node_watchers[self.node]
            self.ready.set()


class Watch:
    """An open watch: async-iterate for (type, object); ``close()`` ends it.

    ``next_event(timeout)`` returns None on timeout (the HTTP layer sends bookmarks then).
    """

    def __init__(self, store: ObjectStore, watcher: _Watcher):
        self._store = store
        self._w = watcher

    @property
    def closed(self) -> bool:
        return self._w.closed and not self._w.pending and not self._w.queue

    def has_pending(self) -> bool:
        return bool(self._w.pending or self._w.queue)

    async def next_event(self, timeout: float | None = None) -> tuple[str, dict] | None:
        w = self._w
        while True:
            if w.pending:
                return w.pending.popleft()
            if w.queue:
                return w.queue.popleft()
            if w.closed:
                raise StopAsyncIteration
            w.ready.clear()
            if timeout is None:
                await w.ready.wait()
            else:
                try:
                    async with asyncio.timeout(timeout):  # not wait_for: it can swallow a cancellation (3.11)
                        await w.ready.wait()
                except TimeoutError:
                    return None

    def __aiter__(self) -> Watch:
        return self

    async def __anext__(self) -> tuple[str, dict]:
        ev = await self.next_event(None)
        assert ev is not None
        return ev

    def close(self) -> None:
        self._w.close()

    async def aclose(self) -> None:
        self.close()


class _Kind:
    """Storage of one resource: objects, indexes, event ring, watchers and subscribers."""

    def __init__(self, resource: Resource, ring: int):
        self.info = resource
        self.objects: dict[Key, dict] = {}
        # every key in (namespace, name) order, which lists are served in: a page is a bisect and
        # a walk instead of a sort of the whole kind (quadratic over a paged list of 300,000 pods)
        self.keys: list[Key] = []
        self.by_ns: dict[str, dict[str, dict]] = {}
        self.by_node: dict[str, dict[Key, dict]] | None = {} if resource.key == "pods" else None
        self.log: deque[tuple[int, str, dict, dict | None]] = deque(maxlen=ring)
        self.compacted = 0  # events at or below this version are no longer in the ring
        self.watchers: set[_Watcher] = set()
        self.node_watchers: dict[str, set[_Watcher]] = {}
        self.subscribers: list[Callback] = []

    def put(self, key: Key, obj: dict, old: dict | None) -> None:
        if key not in self.objects:
            bisect.insort(self.keys, key)
        self.objects[key] = obj
        self.by_ns.setdefault(key[0], {})[key[1]] = obj
        if self.by_node is not None:
            old_node = ((old or {}).get("spec") or {}).get("nodeName") or ""
            new_node = (obj.get("spec") or {}).get("nodeName") or ""
            if old is not None and old_node != new_node:
                bucket = self.by_node.get(old_node)
                if bucket is not None:
                    bucket.pop(key, None)
            self.by_node.setdefault(new_node, {})[key] = obj

    def drop(self, key: Key) -> dict | None:
        obj = self.objects.pop(key, None)
        if obj is None:
            return None
        del self.keys[bisect.bisect_left(self.keys, key)]
        ns = self.by_ns.get(key[0])
        if ns is not None:
            ns.pop(key[1], None)
            if not ns:
                del self.by_ns[key[0]]
        if self.by_node is not None:
            node = (obj.get("spec") or {}).get("nodeName") or ""
            bucket = self.by_node.get(node)
            if bucket is not None:
                bucket.pop(key, None)
                if not bucket:
                    del self.by_node[node]
        return obj


class ObjectStore:
    """In-memory object store for one event loop (see module docstring).

    Resource keys are ``<plural>`` for core and ``<plural>.<group>`` otherwise. Objects are plain
    dicts in their storage version (HPAs as autoscaling/v2). Returned objects are READ-ONLY for
    callers; change objects only through the methods here.

    ``catalogue`` is what this store (and the server in front of it) serves: storing a
    CustomResourceDefinition registers its resource there, deleting it unregisters the resource
    and drops its objects.
    """

    def __init__(self, *, ring_size: int = 10_000, watch_queue_limit: int = 100_000,
                 clock: Callable[[], float] = time.time, bootstrap: bool = True,
                 catalogue: Catalogue | None = None, event_ttl: float | None = EVENT_TTL):
        self.resource_version = 0
        self.clock = clock
        self.event_ttl = event_ttl
        self._event_expiry: dict[Key, float] = {}  # event -> when its TTL runs out (see expire_events)
        self.watch_queue_limit = watch_queue_limit
        self.catalogue = catalogue or Catalogue()
        self._ring_size = ring_size
        self._kinds: dict[str, _Kind] = {k: _Kind(self.catalogue.by_key[k], ring_size)
                                         for k in self.catalogue.stored()}
        self._ip_next = 2  # 10.96.0.1 is the kubernetes service
        if bootstrap:
            for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
                self.create("namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
            self.create("services", {
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "kubernetes", "namespace": "default",
                             "labels": {"component": "apiserver", "provider": "kubernetes"}},
                "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443, "targetPort": 6443}]},
            })

    # -----------------------------------------------------------------------------------------
    # helpers

    def _kind(self, resource: str) -> _Kind:
        if resource == "events.events.k8s.io":
            resource = "events"
        k = self._kinds.get(resource)
        if k is None:
            raise st.ApiError(404, "NotFound", f"the server could not find the requested resource ({resource})")
        return k

    def _key(self, kind: _Kind, namespace: str | None, name: str) -> Key:
        return (namespace or "", name) if kind.info.namespaced else ("", name)

    def _next_rv(self) -> int:
        self.resource_version += 1
        return self.resource_version

    def _emit(self, kind: _Kind, etype: str, obj: dict, old: dict | None) -> None:
        if kind.info.key == CRDS:
            self._on_crd(etype, obj)  # served before anyone hears of the CRD
        if kind.info.key == "events" and self.event_ttl is not None:
            key = self._key(kind, obj["metadata"].get("namespace"), obj["metadata"]["name"])
            if etype == DELETED:
                self._event_expiry.pop(key, None)
            else:  # as etcd's lease: every write (create or update) starts the TTL again
                self._event_expiry[key] = self.clock() + self.event_ttl
        rv = int(obj["metadata"]["resourceVersion"])
        if kind.log.maxlen and len(kind.log) == kind.log.maxlen:
            kind.compacted = kind.log[0][0]
        kind.log.append((rv, etype, obj, old))
        for cb in list(kind.subscribers):
            try:
                cb(etype, obj, old)
            except Exception:  # one bad subscriber never breaks the write or the others
                log.exception("store subscriber failed for %s %s", kind.info.key, etype)
        if kind.node_watchers:
            nodes = {((obj.get("spec") or {}).get("nodeName") or "")}
            if old is not None:
                nodes.add((old.get("spec") or {}).get("nodeName") or "")
            for n in nodes:
                for w in list(kind.node_watchers.get(n, ())):
                    w.offer(etype, obj, old)
        for w in list(kind.watchers):
            w.offer(etype, obj, old)

    def expire_events(self) -> int:
        """Delete the Events whose TTL has run out (kube-apiserver stores them with an etcd lease of
        ``--event-ttl``); returns how many. Without this, every Event ever recorded stays forever."""
        now = self.clock()
        due = [key for key, at in self._event_expiry.items() if at <= now]
        for ns, name in due:
            self.delete("events", ns, name)
        return len(due)

    def _gr(self, kind: _Kind) -> tuple[str, str]:
        return kind.info.plural, kind.info.group

    def _not_found(self, kind: _Kind, name: str) -> st.ApiError:
        plural, group = self._gr(kind)
        return st.not_found(plural, name, group)

    def _invalid(self, kind: _Kind, name: str, causes: list[tuple[str, str]]) -> st.ApiError:
        return st.invalid(kind.info.kind, name, kind.info.group, causes)

    # -----------------------------------------------------------------------------------------
    # reads

    def get(self, resource: str, namespace: str | None, name: str) -> dict:
        kind = self._kind(resource)
        obj = kind.objects.get(self._key(kind, namespace, name))
        if obj is None:
            if resource == "events.events.k8s.io":
                raise st.not_found("events", name, "events.k8s.io")
            raise self._not_found(kind, name)
        if resource == "events.events.k8s.io":
            return convert.event_to_events_v1(obj)
        return obj

    def try_get(self, resource: str, namespace: str | None, name: str) -> dict | None:
        kind = self._kind(resource)
        return kind.objects.get(self._key(kind, namespace, name))

    def list(self, resource: str, namespace: str | None = None, label_selector: LabelSelector | None = None,
             field_selector: FieldSelector | None = None) -> tuple[list[dict], str]:
        """(items sorted by namespace/name, resourceVersion of the list)."""
        items, rv, _, _ = self.list_page(resource, namespace, label_selector, field_selector)
        return items, rv

    def list_page(self, resource: str, namespace: str | None = None, label_selector: LabelSelector | None = None,
                  field_selector: FieldSelector | None = None, limit: int = 0, continue_token: str | None = None
                  ) -> tuple[list[dict], str, str | None, int | None]:
        """One page of a list: (items, resourceVersion, continue token, remainingItemCount)."""
        kind = self._kind(resource)
        label = label_selector or EVERYTHING
        field = field_selector or FieldSelector()
        rv = self.resource_version
        start: Key | None = None
        if continue_token:
            rv, start = decode_continue(continue_token)
        if not kind.info.namespaced:
            namespace = None
        if label.empty and field.empty:
            out, token, remaining = self._page_of_all(kind, namespace, rv, start, limit)
        else:
            out, token = self._page_filtered(kind, resource, namespace, label, field, rv, start, limit)
            remaining = None
        if resource == "events.events.k8s.io":
            out = [convert.event_to_events_v1(o) for o in out]
        return out, str(rv), token, remaining

    @staticmethod
    def _page_of_all(kind: _Kind, namespace: str | None, rv: int, start: Key | None, limit: int
                     ) -> tuple[list[dict], str | None, int | None]:
        """A page of the whole kind or namespace, straight from the sorted keys (with the exact
        remainingItemCount, as kube-apiserver gives when no selector filters)."""
        keys = kind.keys
        lo, hi = 0, len(keys)
        if namespace:
            lo, hi = bisect.bisect_left(keys, (namespace, "")), bisect.bisect_left(keys, (namespace + "\0", ""))
        i = lo if start is None else max(lo, bisect.bisect_right(keys, start))
        end = hi if not limit or limit <= 0 else min(hi, i + limit)
        out = [kind.objects[k] for k in keys[i:end]]
        if end < hi and out:
            return out, encode_continue(rv, keys[end - 1]), hi - end
        return out, None, None

    def _page_filtered(self, kind: _Kind, resource: str, namespace: str | None, label: LabelSelector,
                       field: FieldSelector, rv: int, start: Key | None, limit: int
                       ) -> tuple[list[dict], str | None]:
        """A page of the objects that match: walks the sorted keys (within the namespace, whether
        named by the path or by a ``metadata.namespace=`` field selector), or a node's pods, from
        the continue point, and stops one match after the page is full."""
        if kind.info.namespaced and not namespace:
            namespace = next((r.value for r in field.requirements if r.field == "metadata.namespace" and r.op == "="),
                             None)
        bucket = self._node_bucket(kind, field)
        if bucket is None:
            keys = kind.keys
            lo = bisect.bisect_left(keys, (namespace, "")) if namespace else 0
            if start is not None:
                lo = max(lo, bisect.bisect_right(keys, start))
            candidates: Iterable[Key] = (keys[i] for i in range(lo, len(keys)))
        else:
            candidates = sorted(k for k in bucket if start is None or k > start)
        field_kind = kind.info.key if resource != "events.events.k8s.io" else "events"
        want = limit if limit and limit > 0 else -1
        out: list[dict] = []
        for key in candidates:
            if namespace and key[0] != namespace:
                if bucket is None and key[0] > namespace:
                    break
                continue
            obj = kind.objects[key]
            if not label.empty and not label.matches(obj["metadata"].get("labels")):
                continue
            if not field.empty and not field.matches(object_fields(field_kind, obj)):
                continue
            if len(out) == want:
                return out, encode_continue(rv, self._obj_key(out[-1]))
            out.append(obj)
        return out, None

    @staticmethod
    def _node_bucket(kind: _Kind, field: FieldSelector) -> dict[Key, dict] | None:
        """The pods of the node a ``spec.nodeName=`` field selector names (None: no such selector)."""
        if kind.by_node is not None:
            for r in field.requirements:
                if r.field == "spec.nodeName" and r.op == "=":
                    return kind.by_node.get(r.value, {})
        return None

    @staticmethod
    def _obj_key(obj: dict) -> Key:
        md = obj["metadata"]
        return (md.get("namespace") or "", md["name"])

    def count(self, resource: str) -> int:
        return len(self._kind(resource).objects)

    # -----------------------------------------------------------------------------------------
    # writes

    def _check_namespace(self, namespace: str) -> None:
        ns = self._kinds["namespaces"].objects.get(("", namespace))
        if ns is None:
            raise st.not_found("namespaces", namespace)
        if ns["metadata"].get("deletionTimestamp"):
            raise st.ApiError(403, "Forbidden",
                              f"unable to create new content in namespace {namespace} because it is being terminated",
                              {"name": namespace, "kind": "namespaces"})

    def create(self, resource: str, obj: dict, *, dry_run: bool = False, owned: bool = False) -> dict:
        """Store a new object (generateName, uid, creationTimestamp, resourceVersion, generation,
        defaults, validation). ``owned=True`` means the caller hands over ``obj`` (no copy)."""
        if resource == "events.events.k8s.io":
            try:
                return convert.event_to_events_v1(self.create("events", convert.event_from_events_v1(obj),
                                                              dry_run=dry_run, owned=True))
            except st.ApiError as err:
                if err.reason == "AlreadyExists":  # named by the group it was created in
                    raise st.already_exists("events", (obj.get("metadata") or {}).get("name", ""),
                                            "events.k8s.io") from None
                raise
        kind = self._kind(resource)
        info = kind.info
        obj = obj if owned else deep_copy(obj)
        if not isinstance(obj.get("metadata"), dict):
            obj["metadata"] = {}
        md = obj["metadata"]
        obj.setdefault("apiVersion", info.api_version())
        obj.setdefault("kind", info.kind)
        if info.namespaced:
            ns = md.get("namespace") or "default"
            md["namespace"] = ns
        else:
            md.pop("namespace", None)
        if not md.get("name") and md.get("generateName"):
            for _ in range(8):
                candidate = md["generateName"] + "".join(random.choice(_NAME_CHARS) for _ in range(5))
                if self._key(kind, md.get("namespace"), candidate) not in kind.objects:
                    md["name"] = candidate
                    break
        name = md.get("name") or ""
        name_causes = strategy.validate_name(resource, name)
        if name_causes and not name:
            raise self._invalid(kind, name, name_causes)
        if info.namespaced:
            self._check_namespace(md["namespace"])
        key = self._key(kind, md.get("namespace"), name)
        if key in kind.objects:
            plural, group = self._gr(kind)
            raise st.already_exists(plural, name, group)
        for f in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"):
            md.pop(f, None)
        md["uid"] = str(uuid.uuid4())
        md["creationTimestamp"] = format_time(self.clock())
        if info.generation:
            md["generation"] = 1
        if info.custom and info.has_status:
            obj.pop("status", None)  # with a status subresource, status is written through it only
        if resource == "services":
            self._allocate_cluster_ip(obj)
        strategy.apply_defaults(resource, obj)
        if resource == "pods":
            self._mount_service_account_token(obj)
        elif resource in _PROTECTED:  # the StorageObjectInUseProtection admission plugin
            finalizers = obj["metadata"].setdefault("finalizers", [])
            if _PROTECTED[resource] not in finalizers:
                finalizers.append(_PROTECTED[resource])
            if resource == "persistentvolumes":
                obj.setdefault("status", {})["lastPhaseTransitionTime"] = obj["metadata"]["creationTimestamp"]
        md = obj["metadata"]  # defaulting may hand back a new dict
        causes = name_causes + strategy.validate(resource, obj, None)  # all of them, as kube-apiserver reports
        if causes:
            raise self._invalid(kind, name, causes)
        # Encoding as Go would, after validation: validation sees the decoded struct, where an explicit
        # empty list (``policies: []``) is still there; omitempty drops it only on the way out.
        gojson.normalise(obj)
        if resource == CRDS:
            crd.establish(obj, None, self.clock())
        if dry_run:
            return obj  # never stored, so no resourceVersion (as kube-apiserver answers)
        md["resourceVersion"] = str(self._next_rv())
        kind.put(key, obj, None)
        self._emit(kind, ADDED, obj, None)
        if resource == "namespaces":
            self._on_namespace_created(name)
        return obj

    def _mount_service_account_token(self, pod: dict) -> None:
        """The ServiceAccount admission plugin: a projected token volume, mounted in every container,
        unless the pod or its ServiceAccount opts out (or a volume is mounted there already)."""
        spec = pod["spec"]
        sa = self.try_get("serviceaccounts", pod["metadata"]["namespace"], spec.get("serviceAccountName", "default"))
        if spec.get("automountServiceAccountToken") is False or (
                spec.get("automountServiceAccountToken") is None and sa is not None
                and sa.get("automountServiceAccountToken") is False):
            return
        containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
        if any(m.get("mountPath") == _SA_MOUNT for c in containers for m in c.get("volumeMounts") or []):
            return
        name = "kube-api-access-" + "".join(random.choice(_NAME_CHARS) for _ in range(5))
        spec.setdefault("volumes", []).append({"name": name, "projected": {"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"items": [{"key": "ca.crt", "path": "ca.crt"}], "name": "kube-root-ca.crt"}},
            {"downwardAPI": {"items": [{"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                                        "path": "namespace"}]}}]}})
        for c in containers:
            c.setdefault("volumeMounts", []).append({"mountPath": _SA_MOUNT, "name": name, "readOnly": True})

    def _allocate_cluster_ip(self, obj: dict) -> None:
        spec = obj.setdefault("spec", {})
        if spec.get("type") == "ExternalName":
            return
        ip = spec.get("clusterIP")
        if not ip:
            n = self._ip_next
            self._ip_next += 1
            ip = f"10.96.{n // 256 % 256}.{n % 256}"
            spec["clusterIP"] = ip
        spec.setdefault("clusterIPs", [ip])

    def _on_namespace_created(self, name: str) -> None:
        # kube-controller-manager's serviceaccounts controller gives every namespace "default".
        if (name, "default") not in self._kinds["serviceaccounts"].objects:
            self.create("serviceaccounts", {"apiVersion": "v1", "kind": "ServiceAccount",
                                            "metadata": {"name": "default", "namespace": name}}, owned=True)

    def update(self, resource: str, obj: dict, *, subresource: str | None = None, dry_run: bool = False,
               owned: bool = False) -> dict:
        """Replace an object; 409 Conflict when ``metadata.resourceVersion`` is set and stale.

        ``subresource="status"`` takes only the status; ``"scale"`` takes an autoscaling/v1 Scale.
        """
        if resource == "events.events.k8s.io":
            return convert.event_to_events_v1(self.update("events", convert.event_from_events_v1(obj),
                                                          subresource=subresource, dry_run=dry_run, owned=True))
        kind = self._kind(resource)
        md_in = obj.get("metadata") or {}
        name = md_in.get("name") or ""
        ns = md_in.get("namespace") if kind.info.namespaced else None
        if kind.info.namespaced and not ns:
            ns = "default"
        key = self._key(kind, ns, name)
        old = kind.objects.get(key)
        if old is None:
            raise self._not_found(kind, name)
        want_rv = md_in.get("resourceVersion")
        if want_rv and want_rv != old["metadata"]["resourceVersion"]:
            plural, group = self._gr(kind)
            raise st.conflict(plural, name, group)
        if subresource == "scale":
            return self._update_scale(kind, old, obj, dry_run)
        new = obj if owned else deep_copy(obj)
        return self._commit_update(kind, key, old, new, subresource, dry_run)

    def _commit_update(self, kind: _Kind, key: Key, old: dict, new: dict, subresource: str | None,
                       dry_run: bool) -> dict:
        info = kind.info
        resource = info.key
        if subresource == "status":
            status = new.get("status")
            new = dict(old)
            if status is None:
                new.pop("status", None)
            else:
                new["status"] = status
            new["metadata"] = dict(old["metadata"])
        else:
            new.setdefault("apiVersion", old.get("apiVersion"))
            new.setdefault("kind", old.get("kind"))
            if not isinstance(new.get("metadata"), dict):
                new["metadata"] = {}
            md, omd = new["metadata"], old["metadata"]
            for f in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"):
                if f in omd:
                    md[f] = omd[f]
                else:
                    md.pop(f, None)
            md["name"] = omd["name"]
            if info.namespaced:
                md["namespace"] = omd["namespace"]
            else:
                md.pop("namespace", None)
            if info.has_status and resource != "nodes" and resource != "namespaces":
                if "status" in old:
                    new["status"] = old["status"]
                else:
                    new.pop("status", None)
            elif resource == "namespaces":
                new["status"] = old.get("status", {})
            if resource == "services":  # an update without the allocated IPs keeps them
                ospec, nspec = old.get("spec") or {}, new.setdefault("spec", {})
                for f in ("clusterIP", "clusterIPs"):
                    if not nspec.get(f) and ospec.get(f):
                        nspec[f] = ospec[f]
            strategy.apply_defaults(resource, new)
            md = new["metadata"]
            if info.generation and self._spec_changed(info, new, old):
                md["generation"] = int(omd.get("generation", 1)) + 1
            causes = strategy.validate(resource, new, old)
            if causes:
                raise self._invalid(kind, omd["name"], causes)
            if resource == CRDS:
                crd.establish(new, old, self.clock())
        gojson.normalise(new)
        if _without_rv(new) == _without_rv(old):
            return old  # a no-op write changes nothing and notifies nobody, as in kube-apiserver
        if dry_run:
            new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
            return new
        new["metadata"]["resourceVersion"] = str(self._next_rv())
        kind.put(key, new, old)
        md = new["metadata"]
        if md.get("deletionTimestamp") and not md.get("finalizers") and not (
            resource == "pods" and int(md.get("deletionGracePeriodSeconds") or 0) > 0
        ):
            return self._remove(kind, key, new)
        self._emit(kind, MODIFIED, new, old)
        return new

    @staticmethod
    def _spec_changed(info: Resource, new: dict, old: dict) -> bool:
        """Whether a write bumps metadata.generation: custom objects without a status subresource
        count status changes too, as kube-apiserver does."""
        if info.custom and not info.has_status:
            return {k: v for k, v in new.items() if k != "metadata"} != {k: v for k, v in old.items()
                                                                        if k != "metadata"}
        if info.key == "deployments.apps" and (new["metadata"].get("annotations") or {}) != (
                old["metadata"].get("annotations") or {}):
            return True  # the deployment strategy counts annotation changes too (rollback's legacy)
        return _body(new) != _body(old)

    def mutate(self, resource: str, namespace: str | None, name: str, fn: Callable[[dict], None], *,
               subresource: str | None = None) -> dict:
        """In-process read-modify-write on a copy of the current object; never conflicts."""
        kind = self._kind(resource)
        key = self._key(kind, namespace, name)
        old = kind.objects.get(key)
        if old is None:
            raise self._not_found(kind, name)
        new = deep_copy(old)
        fn(new)
        if subresource == "scale":
            raise ValueError("mutate() works on objects; change spec.replicas directly")
        new.setdefault("metadata", {})["resourceVersion"] = old["metadata"]["resourceVersion"]
        return self._commit_update(kind, key, old, new, subresource, False)

    # -----------------------------------------------------------------------------------------
    # scale subresource

    def get_scale(self, resource: str, namespace: str | None, name: str) -> dict:
        return self.scale_of(resource, self.get(resource, namespace, name))

    def scale_of(self, resource: str, obj: dict) -> dict:
        info = self._kind(resource).info
        if info.scale is not None:
            return crd.scale_of(info, obj)
        md = obj["metadata"]
        spec, status = obj.get("spec") or {}, obj.get("status") or {}
        try:
            selector = str(selector_from_object(spec.get("selector")))
        except Exception:
            selector = ""
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {k: md[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                         if k in md},
            "spec": {"replicas": spec.get("replicas", 0)},
            "status": {"replicas": status.get("replicas", 0), "selector": selector},
        }

    def _update_scale(self, kind: _Kind, old: dict, scale: dict, dry_run: bool) -> dict:
        replicas = (scale.get("spec") or {}).get("replicas", 0)
        name = old["metadata"]["name"]
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            raise st.invalid("Scale", name, "autoscaling",
                             [("spec.replicas", f"Invalid value: {replicas}: must be greater than or equal to 0")])
        new = deep_copy(old)
        if kind.info.scale is not None:
            crd.set_spec_replicas(kind.info, new, replicas)
        else:
            new["spec"]["replicas"] = replicas
        key = self._obj_key(old) if kind.info.namespaced else ("", name)
        out = self._commit_update(kind, key, old, new, None, dry_run)
        return self.scale_of(kind.info.key, out)

    # -----------------------------------------------------------------------------------------
    # deletes

    def delete(self, resource: str, namespace: str | None, name: str, *, grace_period_seconds: int | None = None,
               propagation: str = "Background", preconditions: dict | None = None, dry_run: bool = False) -> dict:
        """Delete; bound pods go gracefully (deletionTimestamp), objects with finalizers wait for them.

        Returns the object as last stored (with deletionTimestamp when the deletion is pending).
        """
        if resource == "events.events.k8s.io":
            return convert.event_to_events_v1(self.delete("events", namespace, name, dry_run=dry_run))
        kind = self._kind(resource)
        key = self._key(kind, namespace, name)
        old = kind.objects.get(key)
        if old is None:
            raise self._not_found(kind, name)
        md = old["metadata"]
        if preconditions:
            if preconditions.get("uid") and preconditions["uid"] != md.get("uid"):
                raise st.ApiError(409, "Conflict", f"Precondition failed: UID in precondition: {preconditions['uid']}, "
                                  f"UID in object meta: {md.get('uid')}", {"name": name, "kind": kind.info.plural})
            if preconditions.get("resourceVersion") and preconditions["resourceVersion"] != md.get("resourceVersion"):
                plural, group = self._gr(kind)
                raise st.conflict(plural, name, group)
        if dry_run:
            return old
        now = self.clock()
        if resource == "pods":
            grace = self._pod_grace(old, grace_period_seconds)
            if grace > 0:
                cur = md.get("deletionGracePeriodSeconds")
                if md.get("deletionTimestamp") and cur is not None and int(cur) <= grace:
                    return old
                new = deep_copy(old)
                new["metadata"]["deletionTimestamp"] = format_time(now + grace)
                new["metadata"]["deletionGracePeriodSeconds"] = grace
                return self._write_terminating(kind, key, old, new)
        if resource == "namespaces":
            return self._delete_namespace(kind, key, old)
        if md.get("finalizers"):
            if md.get("deletionTimestamp"):
                return old
            new = deep_copy(old)
            new["metadata"]["deletionTimestamp"] = format_time(now)
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            return self._write_terminating(kind, key, old, new)
        if resource == CRDS:
            self._drop_custom_objects(old)
        out = self._remove(kind, key, old)
        self._collect_dependents(md, propagation)
        return out

    def _pod_grace(self, pod: dict, requested: int | None) -> int:
        spec, status = pod.get("spec") or {}, pod.get("status") or {}
        if not spec.get("nodeName") or status.get("phase") in ("Succeeded", "Failed"):
            return 0
        if requested is not None:
            return max(0, int(requested))
        g = spec.get("terminationGracePeriodSeconds")
        return 30 if g is None else max(1, int(g)) if int(g) > 0 else 1

    def _write_terminating(self, kind: _Kind, key: Key, old: dict, new: dict) -> dict:
        new["metadata"]["resourceVersion"] = str(self._next_rv())
        kind.put(key, new, old)
        self._emit(kind, MODIFIED, new, old)
        return new

    def _remove(self, kind: _Kind, key: Key, last: dict) -> dict:
        kind.drop(key)
        gone = dict(last)
        gone["metadata"] = dict(last["metadata"], resourceVersion=str(self._next_rv()))
        self._emit(kind, DELETED, gone, None)
        ns = key[0]
        if ns and kind.info.namespaced:
            nsobj = self._kinds["namespaces"].objects.get(("", ns))
            if nsobj is not None and nsobj["metadata"].get("deletionTimestamp"):
                self._maybe_finish_namespace(ns)
        return gone

    def _collect_dependents(self, owner_md: dict, propagation: str) -> None:
        """Garbage collection of objects whose ownerReferences name the deleted owner."""
        uid = owner_md.get("uid")
        ns = owner_md.get("namespace")
        if not uid:
            return
        for kind in list(self._kinds.values()):
            if not kind.info.namespaced and ns:
                continue
            pool = list(kind.by_ns.get(ns or "", {}).values()) if ns else list(kind.objects.values())
            for obj in pool:
                refs = obj["metadata"].get("ownerReferences") or []
                if not any(r.get("uid") == uid for r in refs):
                    continue
                omd = obj["metadata"]
                try:
                    if propagation == "Orphan":
                        self.mutate(kind.info.key, omd.get("namespace"), omd["name"],
                                    lambda o, u=uid: o["metadata"].__setitem__(
                                        "ownerReferences", [r for r in o["metadata"].get("ownerReferences", [])
                                                            if r.get("uid") != u]))
                    else:
                        self.delete(kind.info.key, omd.get("namespace"), omd["name"], propagation=propagation)
                except st.ApiError:
                    continue

    def _delete_namespace(self, kind: _Kind, key: Key, old: dict) -> dict:
        name = key[1]
        if old["metadata"].get("deletionTimestamp"):
            return old
        new = deep_copy(old)
        new["metadata"]["deletionTimestamp"] = format_time(self.clock())
        new["metadata"]["deletionGracePeriodSeconds"] = 0
        new.setdefault("status", {})["phase"] = "Terminating"
        out = self._write_terminating(kind, key, old, new)
        for k in list(self._kinds.values()):
            if not k.info.namespaced:
                continue
            for obj in list(k.by_ns.get(name, {}).values()):
                try:
                    self.delete(k.info.key, name, obj["metadata"]["name"])
                except st.ApiError:
                    continue
        self._maybe_finish_namespace(name)
        return self._kinds["namespaces"].objects.get(key, out)

    def _maybe_finish_namespace(self, name: str) -> None:
        for k in self._kinds.values():
            if k.info.namespaced and k.by_ns.get(name):
                return
        nskind = self._kinds["namespaces"]
        obj = nskind.objects.get(("", name))
        if obj is not None:
            self._remove(nskind, ("", name), obj)

    def delete_collection(self, resource: str, namespace: str | None, label_selector: LabelSelector | None = None,
                          field_selector: FieldSelector | None = None, *, grace_period_seconds: int | None = None,
                          dry_run: bool = False) -> list[dict]:
        items, _ = self.list(resource, namespace, label_selector, field_selector)
        out = []
        for obj in items:
            md = obj["metadata"]
            try:
                out.append(self.delete(resource, md.get("namespace"), md["name"],
                                       grace_period_seconds=grace_period_seconds, dry_run=dry_run))
            except st.ApiError:
                continue
        return out

    # -----------------------------------------------------------------------------------------
    # custom resources

    def _on_crd(self, etype: str, obj: dict) -> None:
        """Serve what an added or changed CRD defines; stop serving it when the CRD is gone."""
        key = obj["metadata"]["name"]  # validated to be <plural>.<group>
        if etype == DELETED:
            self._unserve(key)
            return
        served = crd.resource_of(obj)
        if served is None:
            self.catalogue.unregister(key)  # no version served: objects stay, unreachable
            return
        if not self.catalogue.register(served):
            return
        kind = self._kinds.get(key)
        if kind is None:
            self._kinds[key] = _Kind(served, self._ring_size)
        else:
            kind.info = served

    def _unserve(self, key: str) -> None:
        self.catalogue.unregister(key)
        kind = self._kinds.get(key)
        if kind is None or not kind.info.custom:
            return
        del self._kinds[key]
        for w in [*kind.watchers, *(w for ws in kind.node_watchers.values() for w in ws)]:
            w.close()  # open watches end, as kube-apiserver ends them when a CRD goes away

    def _drop_custom_objects(self, crd_obj: dict) -> None:
        """Delete every object of a CRD being deleted (kube-apiserver's CRD finalizer does this)."""
        spec = crd_obj.get("spec") or {}
        kind = self._kinds.get(f"{(spec.get('names') or {}).get('plural')}.{spec.get('group')}")
        if kind is None or not kind.info.custom:
            return
        for key, obj in sorted(kind.objects.items()):
            self._remove(kind, key, obj)

    # -----------------------------------------------------------------------------------------
    # change notification

    def subscribe(self, resource: str, callback: Callback) -> Callable[[], None]:
        """Call ``callback(type, obj, old)`` synchronously after every change; returns unsubscribe."""
        kind = self._kind(resource)
        kind.subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in kind.subscribers:
                kind.subscribers.remove(callback)
        return unsubscribe

    def watch(self, resource: str, namespace: str | None, resource_version: str | None, *,
              label_selector: LabelSelector | None = None, field_selector: FieldSelector | None = None,
              send_initial_events: bool | None = None) -> Watch:
        """Open a watch. ``resource_version`` None/""/"0" starts with ADDED events for the current
        state; a version N replays the changes after N from the ring, or raises 410 Expired when N
        is older than the ring."""
        kind = self._kind(resource)
        w = _Watcher(kind, kind.info.key, namespace if kind.info.namespaced else None, label_selector or EVERYTHING,
                     field_selector or FieldSelector(), self.watch_queue_limit)
        rv_text = resource_version or ""
        initial = send_initial_events if send_initial_events is not None else rv_text in ("", "0")
        if initial:
            items, _ = self.list(kind.info.key, namespace, label_selector, field_selector)
            w.pending.extend((ADDED, o) for o in items)
        else:
            try:
                since = int(rv_text)
            except ValueError:
                raise st.bad_request(f'invalid resource version "{rv_text}"') from None
            if since < kind.compacted:
                raise st.gone(f"too old resource version: {since} ({kind.compacted + 1})")
            for rv, etype, obj, old in kind.log:
                if rv > since:
                    w.offer(etype, obj, old)
            w.pending.extend(w.queue)
            w.queue.clear()
        for r in w.field.requirements:
            if r.field == "spec.nodeName" and r.op == "=" and kind.by_node is not None:
                w.node = r.value
        if w.node is not None:
            kind.node_watchers.setdefault(w.node, set()).add(w)
        else:
            kind.watchers.add(w)
        if w.pending:
            w.ready.set()
        return Watch(self, w)

    def watch_iter(self, resource: str, namespace: str | None, resource_version: str | None, **kw: Any
                   ) -> AsyncIterator[tuple[str, dict]]:
        return self.watch(resource, namespace, resource_version, **kw)

    def compact(self, resource: str) -> None:
        """Forget the event ring of ``resource`` (older watches now get 410), as etcd compaction does."""
        kind = self._kind(resource)
        kind.log.clear()
        kind.compacted = self.resource_version
