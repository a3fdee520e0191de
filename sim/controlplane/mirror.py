"""The hollow kubelets' window onto a real kube-apiserver.

The kubelet parts of the emulator (:class:`~sim.kubelet.pods.PodLifecycle`,
:class:`~sim.nodes.NodeHeartbeats`, :class:`~sim.workloads.EventRecorder`) call a small
synchronous object-store interface: ``list``/``subscribe``/``try_get`` for pods and
``mutate``/``create``/``delete``. :class:`ApiMirror` answers those calls from a real API server, so
the same code drives pods on both control planes:

- reads come from one pod informer (bound pods only, ``spec.nodeName!=``), as kubemark's hollow
  nodes share one process;
- writes are queued per object and sent with the client of the node they belong to (its
  ``system:node:<name>`` certificate), so the Node authorizer and the NodeRestriction admission
  plugin judge them exactly as they judge a kubelet's;
- a queued mutation is applied to the newest copy we know of (a pod: our own last write or the
  informer's; a Node: read afresh, as the kubelet does) and PUT with its ``resourceVersion``; on a
  conflict the object is read again and the mutations applied again, as client-go's
  ``RetryOnConflict`` does. Writes of one object keep their order.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from autoscaler.k8s.informer import Informer
from autoscaler.k8s.kubeconfig import KubeConfig
from autoscaler.k8s.rest import KubeClient, KubeError, seg

log = logging.getLogger(__name__)

Mutation = Callable[[dict], None]
Listener = Callable[[str, dict, dict | None], None]

#: emulator resource name → (API path prefix, plural)
_PATHS = {
    "pods": ("/api/v1", "pods"),
    "nodes": ("/api/v1", "nodes"),
    "events": ("/api/v1", "events"),
    "leases.coordination.k8s.io": ("/apis/coordination.k8s.io/v1", "leases"),
}
_CONFLICT_RETRIES = 5


def object_path(resource: str, namespace: str | None, name: str | None = None) -> str:
    if resource not in _PATHS:
        raise KeyError(f"the hollow kubelets do not write {resource}")
    prefix, plural = _PATHS[resource]
    path = f"{prefix}/namespaces/{seg(namespace)}/{plural}" if namespace else f"{prefix}/{plural}"
    return f"{path}/{seg(name)}" if name else path


def _rv(obj: dict | None) -> int:
    try:
        return int(((obj or {}).get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:  # opaque resourceVersions: trust the informer's copy
        return 0


@dataclass
class _Queue:
    """Pending writes of one object: ("mutate", subresource, fn) or ("delete", None, body)."""

    ops: list[tuple[str, str | None, Any]] = field(default_factory=list)
    task: asyncio.Task | None = None


class ApiMirror:
    """Object-store calls of the emulated kubelets, answered by a real kube-apiserver."""

    def __init__(self, reader: KubeConfig, client_of: Callable[[str], KubeClient]) -> None:
        self.pods = Informer(reader, "/api/v1/pods", field_selector="spec.nodeName!=", name="hollow-node pods")
        self.pods.add_handler(self._dispatch)
        self._client_of = client_of
        self._listeners: list[Listener] = []
        self._written: dict[tuple[str, str | None, str], dict] = {}
        self._queues: dict[tuple[str, str | None, str], _Queue] = {}
        self._creates: set[asyncio.Task] = set()
        self._stop = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.failed_writes = 0

    async def start(self, timeout: float = 60.0) -> None:
        self._task = asyncio.get_running_loop().create_task(self.pods.run(self._stop), name="hollow-node pods")
        if not await self.pods.wait_synced(timeout):
            raise RuntimeError("the hollow nodes could not list pods from kube-apiserver")

    def _pending(self) -> list[asyncio.Task]:
        return [q.task for q in self._queues.values() if q.task is not None and not q.task.done()] + [
            t for t in self._creates if not t.done()]

    async def stop(self) -> None:
        self._stop.set()
        pending = self._pending()
        for t in pending:
            t.cancel()
        if self._task is not None:
            await asyncio.gather(self._task, *pending, return_exceptions=True)

    # --- reads ---------------------------------------------------------------------------------

    def _dispatch(self, etype: str, obj: dict, old: dict | None) -> None:
        md = obj["metadata"]
        key = ("pods", md.get("namespace"), md["name"])
        written = self._written.get(key)
        if etype == "DELETED" or (written is not None and _rv(obj) >= _rv(written)):
            self._written.pop(key, None)
        for fn in list(self._listeners):
            fn(etype, obj, old)

    def list(self, resource: str) -> tuple[list[dict], str]:
        self._only_pods(resource)
        return self.pods.items(), self.pods.resource_version or ""

    def subscribe(self, resource: str, fn: Listener) -> Callable[[], None]:
        self._only_pods(resource)
        self._listeners.append(fn)
        return lambda: self._listeners.remove(fn) if fn in self._listeners else None

    def try_get(self, resource: str, namespace: str | None, name: str) -> dict | None:
        """The newest copy we know: our own last write or the informer's, whichever is newer
        (Nodes and Leases, which only the hollow nodes write, are known from our writes)."""
        if resource != "pods":
            return self._written.get((resource, namespace, name))
        cached = self.pods.get(f"{namespace}/{name}")
        written = self._written.get((resource, namespace, name))
        if written is not None and (cached is None or _rv(written) > _rv(cached)):
            return written
        return cached

    get = try_get

    def remember(self, resource: str, obj: dict) -> None:
        """Keep an object we created (a Node, a Lease) as the newest copy known."""
        md = obj["metadata"]
        self._written[(resource, md.get("namespace"), md["name"])] = obj

    @staticmethod
    def _only_pods(resource: str) -> None:
        if resource != "pods":
            raise KeyError(f"the hollow nodes read only pods, not {resource}")

    # --- writes --------------------------------------------------------------------------------

    def _node_of(self, resource: str, namespace: str | None, name: str, obj: dict | None = None) -> str:
        if resource in ("nodes", "leases.coordination.k8s.io"):
            return name
        if resource == "events":
            return ((obj or {}).get("source") or {}).get("host", "")
        pod = self.try_get("pods", namespace, name)
        return ((pod or {}).get("spec") or {}).get("nodeName", "")

    def mutate(self, resource: str, namespace: str | None, name: str, fn: Mutation, *,
               subresource: str | None = None) -> None:
        self._enqueue((resource, namespace, name), ("mutate", subresource, fn))

    def delete(self, resource: str, namespace: str | None, name: str, *, grace_period_seconds: int | None = None,
               **_: Any) -> None:
        body: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if grace_period_seconds is not None:
            body["gracePeriodSeconds"] = grace_period_seconds
        pod = self.try_get("pods", namespace, name) if resource == "pods" else None
        if pod is not None:
            body["preconditions"] = {"uid": pod["metadata"]["uid"]}
        self._enqueue((resource, namespace, name), ("delete", None, body))

    def create(self, resource: str, obj: dict, **_: Any) -> None:
        """Fire and forget (events): the write is sent in the background."""
        md = obj["metadata"]
        node = self._node_of(resource, md.get("namespace"), md.get("name", ""), obj)
        path = object_path(resource, md.get("namespace"))

        async def send() -> None:
            try:
                await self._client_of(node).post(path, obj)
            except KubeError as exc:
                log.debug("hollow node %s: create %s failed: %s", node, resource, exc.message)

        task = asyncio.get_running_loop().create_task(send())
        self._creates.add(task)
        task.add_done_callback(self._creates.discard)

    def _enqueue(self, key: tuple[str, str | None, str], op: tuple[str, str | None, Any]) -> None:
        q = self._queues.setdefault(key, _Queue())
        q.ops.append(op)
        if q.task is None or q.task.done():
            q.task = asyncio.get_running_loop().create_task(self._flush(key, q))

    async def _flush(self, key: tuple[str, str | None, str], q: _Queue) -> None:
        resource, namespace, name = key
        try:
            while q.ops:
                kind, sub, arg = q.ops[0]
                if kind == "delete":
                    q.ops.pop(0)
                    await self._send_delete(resource, namespace, name, arg)
                    continue
                # every consecutive mutation of the same subresource goes out in one write
                n = 1
                while n < len(q.ops) and q.ops[n][0] == "mutate" and q.ops[n][1] == sub:
                    n += 1
                fns = [op[2] for op in q.ops[:n]]
                del q.ops[:n]
                await self._send_mutations(resource, namespace, name, sub, fns)
        finally:
            if not q.ops and self._queues.get(key) is q:
                del self._queues[key]

    async def _send_mutations(self, resource: str, namespace: str | None, name: str, sub: str | None,
                              fns: list[Mutation]) -> None:
        node = self._node_of(resource, namespace, name)
        client = self._client_of(node)
        path = object_path(resource, namespace, name)
        key = (resource, namespace, name)
        # Pods: the informer's copy or our last write. Nodes: read afresh, as the kubelet reads its
        # Node before each status update (the node lifecycle controller taints and conditions it,
        # and NodeRestriction refuses a status write that carries stale taints). Leases: our last
        # write, re-read on a conflict, as the kubelet's lease controller does.
        if resource == "pods":
            base = self.try_get(resource, namespace, name)
        else:
            base = None if resource == "nodes" else self._written.get(key)
        for _attempt in range(_CONFLICT_RETRIES):
            try:
                if base is None:
                    base = await client.get(path)
                obj = copy.deepcopy(base)
                for fn in fns:
                    fn(obj)
                self._written[key] = await client.put(f"{path}/{sub}" if sub else path, obj)
                return
            except KubeError as exc:
                if exc.conflict:
                    base = None  # read the current object and apply the mutations again
                    continue
                if not exc.not_found:
                    self.failed_writes += 1
                    log.warning("hollow node %s: update %s %s: %s", node, resource, name, exc.message)
                return
        self.failed_writes += 1
        log.warning("hollow node %s: update %s %s: still conflicting after %d tries", node, resource, name,
                    _CONFLICT_RETRIES)

    async def _send_delete(self, resource: str, namespace: str | None, name: str, body: dict) -> None:
        node = self._node_of(resource, namespace, name)
        try:
            await self._client_of(node).request("DELETE", object_path(resource, namespace, name), body)
        except KubeError as exc:
            if not exc.not_found and exc.code != 409:  # gone already, or a newer pod took the name
                self.failed_writes += 1
                log.warning("hollow node %s: delete %s %s: %s", node, resource, name, exc.message)
        self._written.pop((resource, namespace, name), None)
