"""Node objects and node heartbeats of the emulated cluster.

A Node looks like a kubeadm node's: labels (``kubernetes.io/hostname``, ``kubernetes.io/os``,
``kubernetes.io/arch``, ``node-role.kubernetes.io/<role>``), capacity and allocatable, addresses
(``InternalIP`` 127.0.0.1 and ``Hostname``), ``daemonEndpoints.kubeletEndpoint.port`` = the
emulated kubelet's port, ``nodeInfo`` (kubelet v1.36), and the pressure and Ready conditions.
Heartbeats as the kubelet sends them: the Lease in ``kube-node-lease`` renewed every 10 s, and the
Ready condition's ``lastHeartbeatTime`` refreshed every 5 minutes (nodeStatusReportFrequency).
Renewals are staggered over the interval so thousands of nodes don't write at once. A stopped
kubelet (``paused``) renews nothing; when it comes back it posts a full status (:meth:`post_status`).
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from autoscaler.k8s import status as st
from autoscaler.k8s.quantity import parse_quantity, value
from autoscaler.k8s.timefmt import format_micro_time, format_time
from sim.clock import Clock, TimerHandle

log = logging.getLogger(__name__)

KUBELET_VERSION = "v1.36.2"
LEASE_DURATION = 40
LEASE_RENEW = 10.0
STATUS_REPORT = 300.0


#: the conditions a healthy kubelet posts: (type, status, reason, message)
HEALTHY_CONDITIONS = (
    ("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
    ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
    ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
)

#: the Event reason the kubelet records when a condition becomes healthy
NODE_STATUS_EVENTS = {"MemoryPressure": "NodeHasSufficientMemory", "DiskPressure": "NodeHasNoDiskPressure",
                      "PIDPressure": "NodeHasSufficientPID", "Ready": "NodeReady"}


@dataclass
class NodeSpec:
    """One emulated node as a scenario declares it."""

    name: str
    cpu: str = "4"
    memory: str = "16Gi"
    pods: int = 110
    role: str = "worker"
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    taints: list[dict] = field(default_factory=list)
    #: CPU and memory the node reserves for system daemons (capacity − allocatable)
    reserved_cpu: str = "100m"
    reserved_memory: str = "256Mi"
    fault: str = "none"
    #: swap capacity ("" = no swap): published as status.nodeInfo.swap.capacity, and the node's
    #: kubelet then reports swap usage
    swap: str = ""


def _sub(total: str, reserved: str, *, binary: bool) -> str:
    amount = parse_quantity(total) - parse_quantity(reserved)
    amount = max(amount, Decimal(0))
    if binary:
        return f"{int(amount / 1024)}Ki"
    milli = int(amount * 1000)
    return f"{milli}m" if milli % 1000 else str(milli // 1000)


def node_object(spec: NodeSpec, index: int, port: int, now: float) -> dict:
    """The Node object a kubelet would register for ``spec`` (status included)."""
    stamp = format_time(now)
    labels = {
        "beta.kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": spec.name,
        "kubernetes.io/os": "linux",
    }
    labels[f"node-role.kubernetes.io/{spec.role}"] = ""
    labels.update(spec.labels)
    capacity = {
        "cpu": spec.cpu,
        "ephemeral-storage": "102626232Ki",
        "hugepages-1Gi": "0",
        "hugepages-2Mi": "0",
        "memory": f"{value(spec.memory) // 1024}Ki",
        "pods": str(spec.pods),
    }
    allocatable = dict(capacity)
    allocatable["cpu"] = _sub(spec.cpu, spec.reserved_cpu, binary=False)
    allocatable["memory"] = _sub(spec.memory, spec.reserved_memory, binary=True)
    allocatable["ephemeral-storage"] = "94580335255"
    machine = hashlib.md5(spec.name.encode()).hexdigest()
    conditions = [
        {"type": t, "status": status, "lastHeartbeatTime": stamp, "lastTransitionTime": stamp,
         "reason": reason, "message": message}
        for t, status, reason, message in HEALTHY_CONDITIONS
    ]
    annotations = {
        "node.alpha.kubernetes.io/ttl": "0",
        "volumes.kubernetes.io/controller-managed-attach-detach": "true",
        **spec.annotations,
    }
    node: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": spec.name, "labels": labels, "annotations": annotations},
        "spec": {"podCIDR": f"10.{64 + index // 256}.{index % 256}.0/24",
                 "podCIDRs": [f"10.{64 + index // 256}.{index % 256}.0/24"],
                 "providerID": f"emulated://{spec.name}"},
        "status": {
            "capacity": capacity,
            "allocatable": allocatable,
            "conditions": conditions,
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": spec.name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
            "nodeInfo": {
                "machineID": machine,
                "systemUUID": str(uuid.UUID(machine)),
                "bootID": str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{spec.name}-{now}")),
                "kernelVersion": "6.8.0-60-generic",
                "osImage": "Ubuntu 24.04.2 LTS",
                "containerRuntimeVersion": "containerd://2.1.3",
                "kubeletVersion": KUBELET_VERSION,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        },
    }
    if spec.swap:
        node["status"]["nodeInfo"]["swap"] = {"capacity": value(spec.swap)}
    if spec.taints:
        node["spec"]["taints"] = [dict(t) for t in spec.taints]
    return node


def lease_object(node: dict, now: float) -> dict:
    md = node["metadata"]
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": md["name"], "namespace": "kube-node-lease",
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": md["name"], "uid": md["uid"]}],
        },
        "spec": {"holderIdentity": md["name"], "leaseDurationSeconds": LEASE_DURATION,
                 "renewTime": format_micro_time(now)},
    }


class NodeHeartbeats:
    """Renews every node's Lease every 10 s and its Ready heartbeat every 5 min, staggered."""

    def __init__(self, store: Any, clock: Clock, *, slots: int = 10) -> None:
        self.store = store
        self.clock = clock
        self.slots = slots
        self.nodes: list[str] = []
        self._tick = 0
        self._timer: TimerHandle | None = None
        self._status_due: dict[str, float] = {}
        self.paused: set[str] = set()
        self.on_tick: list[Callable[[], None]] = []

    def add(self, name: str) -> None:
        self.nodes.append(name)
        self._status_due[name] = self.clock.now() + STATUS_REPORT

    def start(self) -> None:
        self._timer = self.clock.call_later(LEASE_RENEW / self.slots, self._run)

    def post_status(self, name: str) -> list[str]:
        """What a (re)started kubelet does first: renew its Lease and post a full node status
        (every condition healthy, lastHeartbeatTime now, lastTransitionTime moved where the status
        flips). Returns the Event reasons the kubelet records for the conditions that flipped
        (``NodeHasSufficientMemory``, ..., ``NodeReady``)."""
        now = self.clock.now()
        stamp = format_time(now)
        self.store.mutate("leases.coordination.k8s.io", "kube-node-lease", name,
                          lambda o: o["spec"].__setitem__("renewTime", format_micro_time(now)))
        changed: list[str] = []

        def post(o: dict) -> None:
            conds = {c.get("type"): c for c in o.setdefault("status", {}).get("conditions") or ()}
            out = [c for c in o["status"].get("conditions") or () if c.get("type") not in
                   {t for t, *_ in HEALTHY_CONDITIONS}]
            for ctype, status, reason, message in HEALTHY_CONDITIONS:
                cur = conds.get(ctype) or {}
                if cur.get("status") != status:
                    changed.append(NODE_STATUS_EVENTS[ctype])
                out.append({"type": ctype, "status": status, "lastHeartbeatTime": stamp,
                            "lastTransitionTime": cur["lastTransitionTime"] if cur.get("status") == status
                            and cur.get("lastTransitionTime") else stamp,
                            "reason": reason, "message": message})
            o["status"]["conditions"] = out

        self.store.mutate("nodes", None, name, post, subresource="status")
        self._status_due[name] = now + STATUS_REPORT
        return changed

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _run(self) -> None:
        now = self.clock.now()
        slot = self._tick % self.slots
        self._tick += 1
        renew = format_micro_time(now)
        stamp = format_time(now)
        for name in self.nodes[slot :: self.slots]:
            if name in self.paused:
                continue
            try:
                self.store.mutate("leases.coordination.k8s.io", "kube-node-lease", name,
                                  lambda o: o["spec"].__setitem__("renewTime", renew))
                if now >= self._status_due.get(name, 0):
                    self._status_due[name] = now + STATUS_REPORT

                    def beat(o: dict) -> None:
                        for c in o.get("status", {}).get("conditions") or ():
                            c["lastHeartbeatTime"] = stamp

                    self.store.mutate("nodes", None, name, beat, subresource="status")
            except st.ApiError as exc:
                if exc.code != 404:
                    log.warning("heartbeat of node %s failed: %s", name, exc.message)
        for fn in self.on_tick:
            fn()
        self._timer = self.clock.call_later(LEASE_RENEW / self.slots, self._run)
