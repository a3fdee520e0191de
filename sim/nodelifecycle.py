"""Node failure handling as kube-controller-manager does it: the node lifecycle controller and
the taint eviction controller (the "taint manager").

:class:`NodeLifecycleController` (``pkg/controller/nodelifecycle``) watches every node's Lease in
``kube-node-lease``. When a Lease has not been renewed for ``--node-monitor-grace-period``, it sets
the node's Ready, MemoryPressure, DiskPressure and PIDPressure conditions to ``Unknown``
(``NodeStatusUnknown``, "Kubelet stopped posting node status."), records a ``NodeNotReady`` Event,
marks every pod on the node not ready (``MarkPodsNotReady``: Ready and ContainersReady False, a
``NodeNotReady`` Warning per pod) and taints the node ``node.kubernetes.io/unreachable`` with
effects NoSchedule and NoExecute (``timeAdded`` set). When the kubelet posts Ready=True again,
the controller removes those taints.

:class:`TaintEvictionController` (``pkg/controller/tainteviction``) deletes a pod on a node with
NoExecute taints once the pod's tolerations expire: at once if a taint is not tolerated, after the
smallest ``tolerationSeconds`` of the matching tolerations otherwise (300 s for the defaults the
DefaultTolerationSeconds admission plugin adds), never if they have none. Before deleting it adds
the ``DisruptionTarget`` condition (``DeletionByTaintManager``). Deletion is graceful: a pod on a
dead node stays ``Terminating`` until its kubelet comes back, while its ReplicaSet already
replaces it. A scheduled eviction is cancelled when the taints go away.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from autoscaler.k8s import status as st
from autoscaler.k8s.timefmt import format_time, parse_time
from sim.clock import Clock, TimerHandle
from sim.scheduler import tolerates
from sim.workloads import EventRecorder, WorkQueue

log = logging.getLogger(__name__)

#: kube-controller-manager --node-monitor-period
NODE_MONITOR_PERIOD = 5.0
#: kube-controller-manager --node-monitor-grace-period (50s since v1.32; the emulated kubelets report v1.36)
NODE_MONITOR_GRACE_PERIOD = 50.0
#: kube-controller-manager --node-startup-grace-period (for nodes whose kubelet never posted status)
NODE_STARTUP_GRACE_PERIOD = 60.0

NODE_CONTROLLER = "node-controller"
TAINT_EVICTION_CONTROLLER = "taint-eviction-controller"
TAINT_NOT_READY = "node.kubernetes.io/not-ready"
TAINT_UNREACHABLE = "node.kubernetes.io/unreachable"
#: Ready status → the taint key the controller keeps on the node (none when Ready is True)
READY_TAINT = {"False": TAINT_NOT_READY, "Unknown": TAINT_UNREACHABLE}
#: the conditions the controller sets to Unknown (NetworkUnavailable is left to the network plugin)
MONITORED_CONDITIONS = ("Ready", "MemoryPressure", "DiskPressure", "PIDPressure")
_MANAGED = {(k, e) for k in (TAINT_NOT_READY, TAINT_UNREACHABLE) for e in ("NoSchedule", "NoExecute")}


def _condition(obj: dict, ctype: str) -> dict | None:
    return next((c for c in (obj.get("status") or {}).get("conditions") or () if c.get("type") == ctype), None)


def _ready_status(node: dict) -> str:
    c = _condition(node, "Ready")
    return c.get("status", "Unknown") if c else "Unknown"


def _key(pod: dict) -> tuple[str, str]:
    return pod["metadata"].get("namespace", ""), pod["metadata"]["name"]


class _PodsByNode:
    """Keys of the pods bound to each node, kept current from store callbacks."""

    def __init__(self) -> None:
        self.by_node: dict[str, set[tuple[str, str]]] = {}
        self.node_of: dict[tuple[str, str], str] = {}

    def update(self, etype: str, pod: dict) -> str | None:
        key = _key(pod)
        node = None if etype == "DELETED" else (pod.get("spec") or {}).get("nodeName")
        old = self.node_of.get(key)
        if old is not None and old != node:
            self.by_node.get(old, set()).discard(key)
            del self.node_of[key]
        if node:
            self.node_of[key] = node
            self.by_node.setdefault(node, set()).add(key)
        return node

    def on(self, node: str) -> list[tuple[str, str]]:
        return sorted(self.by_node.get(node, ()))


class NodeLifecycleController:
    """Marks nodes whose kubelet stopped heartbeating Unknown, taints them and their pods not ready."""

    def __init__(self, store: Any, clock: Clock, events: EventRecorder, *,
                 monitor_period: float = NODE_MONITOR_PERIOD,
                 grace_period: float = NODE_MONITOR_GRACE_PERIOD) -> None:
        self.store = store
        self.clock = clock
        self.events = events
        self.monitor_period = monitor_period
        self.grace_period = grace_period
        self.pods = _PodsByNode()
        self.nodes = WorkQueue(self._sync_taints, clock, "node-lifecycle")
        self.pod_queue = WorkQueue(self._process_pod, clock, "node-lifecycle-pods")
        #: node → the Ready status this controller last observed (upstream's nodeHealth)
        self._observed: dict[str, str] = {}
        self._renewed: dict[str, float] = {}
        self._timer: TimerHandle | None = None
        self._unsub: list[Callable[[], None]] = []

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.nodes.bind(loop)
        self.pod_queue.bind(loop)
        for lease in self.store.list("leases.coordination.k8s.io", "kube-node-lease")[0]:
            self._on_lease("ADDED", lease, None)
        for node in self.store.list("nodes")[0]:
            self._observed[node["metadata"]["name"]] = _ready_status(node)
        for pod in self.store.list("pods")[0]:
            self.pods.update("ADDED", pod)
        self._unsub += [self.store.subscribe("leases.coordination.k8s.io", self._on_lease),
                        self.store.subscribe("nodes", self._on_node),
                        self.store.subscribe("pods", self._on_pod)]
        self._timer = self.clock.call_later(self.monitor_period, self._monitor)

    def stop(self) -> None:
        for u in self._unsub:
            u()
        self._unsub.clear()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.nodes.stop()
        self.pod_queue.stop()

    # --- events --------------------------------------------------------------------------------

    def _on_lease(self, etype: str, lease: dict, old: dict | None) -> None:
        md = lease["metadata"]
        if md.get("namespace") != "kube-node-lease":
            return
        if etype == "DELETED":
            self._renewed.pop(md["name"], None)
            return
        renew = (lease.get("spec") or {}).get("renewTime")
        if renew:
            try:
                self._renewed[md["name"]] = parse_time(renew)
            except ValueError:
                pass

    def _on_node(self, etype: str, node: dict, old: dict | None) -> None:
        name = node["metadata"]["name"]
        if etype == "DELETED":
            self._observed.pop(name, None)
            self._renewed.pop(name, None)
            return
        self._observed.setdefault(name, _ready_status(node))
        if old is None or _ready_status(old) != _ready_status(node) or \
                (old.get("spec") or {}).get("taints") != (node.get("spec") or {}).get("taints"):
            self.nodes.add(name)

    def _on_pod(self, etype: str, pod: dict, old: dict | None) -> None:
        node = self.pods.update(etype, pod)
        if node and etype != "DELETED":
            self.pod_queue.add(_key(pod))

    # --- node health ---------------------------------------------------------------------------

    def _monitor(self) -> None:
        self._timer = self.clock.call_later(self.monitor_period, self._monitor)
        now = self.clock.now()
        for name in list(self._observed):
            try:
                self._check(name, now)
            except st.ApiError as exc:
                if exc.code != 404:
                    log.warning("node lifecycle: node %s: %s", name, exc.message)
            except Exception:
                log.exception("node lifecycle: node %s", name)

    def _check(self, name: str, now: float) -> None:
        node = self.store.try_get("nodes", None, name)
        if node is None:
            return
        probe = self._renewed.get(name)
        grace = self.grace_period
        if probe is None or now > probe + grace:
            # the Lease is stale (or missing): the Ready heartbeat or the registration may be newer
            ready = _condition(node, "Ready")
            if ready is None:
                grace = NODE_STARTUP_GRACE_PERIOD
            stamp = (ready or {}).get("lastHeartbeatTime") or node["metadata"]["creationTimestamp"]
            probe = max(probe or 0.0, parse_time(stamp))
        if now > probe + grace and any(
                (_condition(node, t) or {}).get("status") != "Unknown" for t in MONITORED_CONDITIONS):
            node = self.store.mutate("nodes", None, name, self._mark_unknown, subresource="status")
        current = _ready_status(node)
        observed = self._observed.get(name, current)
        self._observed[name] = current
        if current != "True" and observed == "True":
            self.events.emit(node, "Normal", "NodeNotReady", f"Node {name} status is now: NodeNotReady",
                             component=NODE_CONTROLLER)
            self._mark_pods_not_ready(name, self.pods.on(name))
        if current != "True" or (node.get("spec") or {}).get("taints"):
            self._sync_taints(name)

    def _mark_unknown(self, node: dict) -> None:
        stamp = format_time(self.clock.now())
        conds = node.setdefault("status", {}).setdefault("conditions", [])
        for ctype in MONITORED_CONDITIONS:
            c = next((c for c in conds if c.get("type") == ctype), None)
            if c is None:
                conds.append({"type": ctype, "status": "Unknown",
                              "lastHeartbeatTime": node["metadata"].get("creationTimestamp"),
                              "lastTransitionTime": stamp, "reason": "NodeStatusNeverUpdated",
                              "message": "Kubelet never posted node status."})
            elif c.get("status") != "Unknown":
                c.update(status="Unknown", reason="NodeStatusUnknown", message="Kubelet stopped posting node status.",
                         lastTransitionTime=stamp)

    def _mark_pods_not_ready(self, node: str, keys: list[tuple[str, str]]) -> None:
        """``MarkPodsNotReady``: Ready and ContainersReady False (lastTransitionTime now), one
        ``NodeNotReady`` Warning per pod that changed."""
        stamp = format_time(self.clock.now())

        def unready(o: dict) -> None:
            for c in (o.get("status") or {}).get("conditions") or ():
                if c.get("type") in ("Ready", "ContainersReady") and c.get("status") != "False":
                    c["status"] = "False"
                    c["lastTransitionTime"] = stamp

        for ns, name in keys:
            pod = self.store.try_get("pods", ns, name)
            if pod is None or (pod.get("spec") or {}).get("nodeName") != node:
                continue
            if not any(c.get("type") in ("Ready", "ContainersReady") and c.get("status") != "False"
                       for c in (pod.get("status") or {}).get("conditions") or ()):
                continue
            try:
                pod = self.store.mutate("pods", ns, name, unready, subresource="status")
            except st.ApiError as exc:
                if exc.code != 404:
                    log.warning("node lifecycle: marking pod %s/%s not ready: %s", ns, name, exc.message)
                continue
            self.events.emit(pod, "Warning", "NodeNotReady", "Node is not ready", component=NODE_CONTROLLER)

    def _process_pod(self, key: tuple[str, str]) -> None:
        """A pod added to or changed on a node that is not Ready is marked not ready too."""
        node_name = self.pods.node_of.get(key)
        if not node_name or self._observed.get(node_name, "True") == "True":
            return
        node = self.store.try_get("nodes", None, node_name)
        if node is not None and _ready_status(node) != "True":
            self._mark_pods_not_ready(node_name, [key])

    # --- taints --------------------------------------------------------------------------------

    def _sync_taints(self, name: str) -> None:
        """Keep ``node.kubernetes.io/{not-ready,unreachable}`` NoSchedule and NoExecute in line with
        the Ready condition (``doNoScheduleTaintingPass`` / ``doNoExecuteTaintingPass``)."""
        node = self.store.try_get("nodes", None, name)
        if node is None:
            return
        key = READY_TAINT.get(_ready_status(node))
        want = {(key, "NoSchedule"), (key, "NoExecute")} if key else set()
        taints = (node.get("spec") or {}).get("taints") or []
        have = {(t.get("key"), t.get("effect")) for t in taints if (t.get("key"), t.get("effect")) in _MANAGED}
        if have == want:
            return
        stamp = format_time(self.clock.now())

        def retaint(o: dict) -> None:
            cur = (o.get("spec") or {}).get("taints") or []
            kept = [t for t in cur if (t.get("key"), t.get("effect")) not in _MANAGED - want]
            present = {(t.get("key"), t.get("effect")) for t in kept}
            for k, effect in sorted(want, key=lambda ke: ke[1] != "NoSchedule"):
                if (k, effect) not in present:
                    kept.append({"key": k, "effect": effect, "timeAdded": stamp})
            if kept:
                o.setdefault("spec", {})["taints"] = kept
            else:
                o.get("spec", {}).pop("taints", None)

        self.store.mutate("nodes", None, name, retaint)


class TaintEvictionController:
    """Deletes pods whose tolerations of their node's NoExecute taints have run out."""

    def __init__(self, store: Any, clock: Clock, events: EventRecorder) -> None:
        self.store = store
        self.clock = clock
        self.events = events
        self.pods = _PodsByNode()
        self.queue = WorkQueue(self._process, clock, "taint-eviction")
        self._taints: dict[str, list[dict]] = {}
        #: pod → (created at, trigger time, timer) of its scheduled eviction
        self._scheduled: dict[tuple[str, str], tuple[float, float, TimerHandle]] = {}
        self._unsub: list[Callable[[], None]] = []

    def start(self) -> None:
        self.queue.bind(asyncio.get_running_loop())
        for node in self.store.list("nodes")[0]:
            self._on_node("ADDED", node, None)
        for pod in self.store.list("pods")[0]:
            self._on_pod("ADDED", pod, None)
        self._unsub += [self.store.subscribe("nodes", self._on_node), self.store.subscribe("pods", self._on_pod)]

    def stop(self) -> None:
        for u in self._unsub:
            u()
        self._unsub.clear()
        for _, _, timer in self._scheduled.values():
            timer.cancel()
        self._scheduled.clear()
        self.queue.stop()

    @staticmethod
    def _no_execute(node: dict) -> list[dict]:
        return [t for t in (node.get("spec") or {}).get("taints") or () if t.get("effect") == "NoExecute"]

    def _on_node(self, etype: str, node: dict, old: dict | None) -> None:
        name = node["metadata"]["name"]
        taints = [] if etype == "DELETED" else self._no_execute(node)
        if taints == self._taints.get(name, []):
            return
        if taints:
            self._taints[name] = taints
        else:
            self._taints.pop(name, None)
        for key in self.pods.on(name):
            self.queue.add(key)

    def _on_pod(self, etype: str, pod: dict, old: dict | None) -> None:
        key = _key(pod)
        node = self.pods.update(etype, pod)
        if etype == "DELETED" or not node:
            self._cancel(key, event=False)
            return
        if old is None or (old.get("spec") or {}).get("nodeName") != node or \
                (old.get("spec") or {}).get("tolerations") != (pod.get("spec") or {}).get("tolerations"):
            self.queue.add(key)

    def _cancel(self, key: tuple[str, str], *, event: bool = True) -> None:
        hit = self._scheduled.pop(key, None)
        if hit is None:
            return
        hit[2].cancel()
        if event:
            pod = self.store.try_get("pods", *key)
            if pod is not None:
                self.events.emit(pod, "Normal", "TaintManagerEviction", f"Cancelling deletion of Pod {key[0]}/{key[1]}",
                                 component=TAINT_EVICTION_CONTROLLER)

    def _process(self, key: tuple[str, str]) -> None:
        """``processPodOnNode``: evict now, later, or never."""
        node = self.pods.node_of.get(key)
        taints = self._taints.get(node or "", [])
        if not taints:
            self._cancel(key)
            return
        pod = self.store.try_get("pods", *key)
        if pod is None:
            self._cancel(key, event=False)
            return
        tolerations = [t for t in (pod.get("spec") or {}).get("tolerations") or ()
                       if t.get("effect") in ("", None, "NoExecute")]
        if not all(tolerates(tolerations, t) for t in taints):
            self._cancel(key, event=False)
            self._evict(key)
            return
        used = [tol for tol in tolerations if any(tolerates([tol], t) for t in taints)]
        seconds = [tol["tolerationSeconds"] for tol in used if tol.get("tolerationSeconds") is not None]
        if not seconds:
            self._cancel(key)  # tolerated forever
            return
        wait = max(0.0, float(min(seconds)))
        now = self.clock.now()
        hit = self._scheduled.get(key)
        start = now
        if hit is not None:
            start = hit[0]
            if start + wait >= hit[1]:
                return  # the scheduled eviction comes first
            hit[2].cancel()
        trigger = start + wait
        timer = self.clock.call_later(max(0.0, trigger - now), self._fire, key)
        self._scheduled[key] = (start, trigger, timer)

    def _fire(self, key: tuple[str, str]) -> None:
        self._scheduled.pop(key, None)
        try:
            self._evict(key)
        except st.ApiError as exc:
            if exc.code != 404:
                log.warning("taint eviction of pod %s/%s failed: %s", key[0], key[1], exc.message)

    def _evict(self, key: tuple[str, str]) -> None:
        pod = self.store.try_get("pods", *key)
        if pod is None or pod["metadata"].get("deletionTimestamp"):
            return
        self.events.emit(pod, "Normal", "TaintManagerEviction", f"Marking for deletion Pod {key[0]}/{key[1]}",
                         component=TAINT_EVICTION_CONTROLLER)
        stamp = format_time(self.clock.now())

        def disruption(o: dict) -> None:
            conds = o.setdefault("status", {}).setdefault("conditions", [])
            if any(c.get("type") == "DisruptionTarget" and c.get("status") == "True" for c in conds):
                return
            conds[:] = [c for c in conds if c.get("type") != "DisruptionTarget"]
            conds.append({"type": "DisruptionTarget", "status": "True", "lastProbeTime": None,
                          "lastTransitionTime": stamp, "reason": "DeletionByTaintManager",
                          "message": "Taint manager: deleting due to NoExecute taint"})

        self.store.mutate("pods", key[0], key[1], disruption, subresource="status")
        self.store.delete("pods", key[0], key[1])


__all__ = ["NODE_MONITOR_GRACE_PERIOD", "NODE_MONITOR_PERIOD", "NODE_STARTUP_GRACE_PERIOD", "NodeLifecycleController", "TaintEvictionController"]
