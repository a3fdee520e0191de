"""Pod lifecycle as the kubelets of the emulated nodes drive it.

For every pod bound to an emulated node: accept it (Pending, ``ContainerCreating``, hostIP,
startTime), start its containers after the startup delay (Running, podIP, ``state.running``),
mark them ready after the readiness delay (``Ready``/``ContainersReady`` True with their
lastTransitionTime), and on graceful deletion stop them after the termination delay (bounded by
the grace period), report them terminated and finish the deletion with grace 0 — the kubelet's
part of a graceful delete. Container restarts can be injected. Status is written as the kubelet
writes it (conditions PodReadyToStartContainers, Initialized, Ready, ContainersReady,
PodScheduled; containerStatuses with containerID, image, imageID, started, ready, restartCount).

A node's kubelet can be stopped (:meth:`PodLifecycle.stop_node`): its pods keep their last status
(and running containers) until it is started again and syncs them.

Load follows the pod: its containers become rows of the node's :class:`NodeStats`, and the
workload's ready-pod count moves with readiness, so demand is always spread over ready pods.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from autoscaler.k8s import status as st
from autoscaler.k8s.quantity import QuantityError, parse_quantity
from autoscaler.k8s.timefmt import format_time, parse_duration
from sim.clock import Clock, TimerHandle
from sim.kubelet.stats import INF, ContainerRow, NodeStats
from sim.loadmodel import WorkloadLoad, container_fractions
from sim.workloads import EventRecorder

log = logging.getLogger(__name__)

ANNOTATION_PREFIX = "sim.autoscaler.io/"


@dataclass(frozen=True)
class PodTiming:
    """Delays of a pod's lifecycle, in (virtual) seconds; ``jitter`` is a relative spread."""

    startup: float = 1.0
    readiness: float = 2.0
    termination: float = 1.0
    jitter: float = 0.0

    def with_annotations(self, annotations: dict[str, str]) -> PodTiming:
        """Per-pod overrides: ``sim.autoscaler.io/startup-delay: 5s`` etc."""
        vals = {}
        for key, attr in (("startup-delay", "startup"), ("readiness-delay", "readiness"),
                          ("termination-delay", "termination")):
            raw = annotations.get(ANNOTATION_PREFIX + key)
            if raw:
                try:
                    vals[attr] = parse_duration(raw)
                except ValueError:
                    log.warning("ignoring bad %s%s annotation %r", ANNOTATION_PREFIX, key, raw)
        if not vals:
            return self
        return PodTiming(**{**self.__dict__, **vals})


@dataclass
class _Tracked:
    namespace: str
    name: str
    uid: str
    node: str
    timing: PodTiming
    workload: WorkloadLoad | None
    stage: str = "accepted"  # accepted → running → ready; terminating
    counted_ready: bool = False
    timers: list[TimerHandle] = field(default_factory=list)
    restarts: dict[str, int] = field(default_factory=dict)

    def cancel(self) -> None:
        for t in self.timers:
            t.cancel()
        self.timers.clear()


def _is_ready(pod: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or ())


def _cores(q: Any) -> float:
    try:
        return float(parse_quantity(q))
    except (QuantityError, TypeError):
        return 0.0


class PodLifecycle:
    """Drives the status of pods on emulated nodes (one instance for all nodes)."""

    def __init__(
        self,
        store: Any,
        clock: Clock,
        events: EventRecorder,
        stats_of: Callable[[str], NodeStats | None],
        workload_of: Callable[[dict], WorkloadLoad | None],
        timing_of: Callable[[dict], PodTiming],
        *,
        host_ip: str = "127.0.0.1",
        seed: int = 0,
    ) -> None:
        self.store = store
        self.clock = clock
        self.events = events
        self.stats_of = stats_of
        self.workload_of = workload_of
        self.timing_of = timing_of
        self.host_ip = host_ip
        self.rng = random.Random(seed)
        self.pods: dict[tuple[str, str], _Tracked] = {}
        self._node_index: dict[str, int] = {}
        self._ip_seq: dict[str, int] = {}
        self._unsub: Callable[[], None] | None = None
        #: nodes whose kubelet is stopped: their pods' status is left alone until it comes back
        self.stopped: set[str] = set()

    def start(self) -> None:
        for pod in self.store.list("pods")[0]:
            self._on_pod("ADDED", pod, None)
        self._unsub = self.store.subscribe("pods", self._on_pod)

    def stop(self) -> None:
        if self._unsub:
            self._unsub()
        for t in self.pods.values():
            t.cancel()

    def register_node(self, name: str) -> None:
        self._node_index.setdefault(name, len(self._node_index))

    def stop_node(self, name: str) -> None:
        """The node's kubelet stops: no status writes for its pods, whose containers keep running."""
        self.stopped.add(name)
        for t in self.pods.values():
            if t.node == name:
                t.cancel()

    def start_node(self, name: str) -> None:
        """The node's kubelet is back: it syncs every pod bound to it — finishes pending
        terminations, resumes starting pods, and reports running pods ready again."""
        self.stopped.discard(name)
        for pod in self.store.list("pods")[0]:
            if (pod.get("spec") or {}).get("nodeName") != name:
                continue
            md = pod["metadata"]
            key = (md.get("namespace", ""), md["name"])
            t = self.pods.get(key)
            if t is None or t.uid != md.get("uid"):
                self._on_pod("ADDED", pod, None)
            elif md.get("deletionTimestamp") or t.stage == "terminating":
                if t.stage == "terminating":
                    self._after(t, 0.0, self._finish_termination)
                else:
                    self._begin_termination(t, pod)
            elif t.stage == "accepted":
                self._after(t, 0.0, self._accept)
            elif t.stage == "running":
                self._after(t, t.timing.readiness, self._ready)
            elif not (t.counted_ready and _is_ready(pod)):
                self._ready(t)

    # --- events --------------------------------------------------------------------------------

    def _on_pod(self, etype: str, pod: dict, old: dict | None) -> None:
        md = pod["metadata"]
        key = (md.get("namespace", ""), md["name"])
        tracked = self.pods.get(key)
        if etype == "DELETED":
            if tracked is not None and tracked.uid == md.get("uid"):
                self._forget(tracked)
            return
        node = (pod.get("spec") or {}).get("nodeName")
        if not node or node not in self._node_index:
            return
        if node in self.stopped:
            if tracked is not None and tracked.counted_ready and not _is_ready(pod):
                # marked not ready by the node lifecycle controller: endpoints drop it, its
                # traffic moves to the workload's other ready pods
                self._unready(tracked, self.clock.now())
            return
        if tracked is None:
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                return
            tracked = _Tracked(key[0], key[1], md.get("uid", ""), node, self._timing(pod), self.workload_of(pod))
            self.pods[key] = tracked
            self._after(tracked, 0.0, self._accept)
        if md.get("deletionTimestamp") and tracked.stage != "terminating":
            self._begin_termination(tracked, pod)

    def _timing(self, pod: dict) -> PodTiming:
        t = self.timing_of(pod).with_annotations(pod["metadata"].get("annotations") or {})
        if t.jitter > 0:
            j = t.jitter
            t = PodTiming(t.startup * (1 + self.rng.uniform(-j, j)), t.readiness * (1 + self.rng.uniform(-j, j)),
                          t.termination, t.jitter)
        return t

    def _after(self, tracked: _Tracked, delay: float, fn: Callable[[_Tracked], None]) -> None:
        def run() -> None:
            if self.pods.get((tracked.namespace, tracked.name)) is not tracked:
                return
            try:
                fn(tracked)
            except st.ApiError as exc:
                if exc.code != 404:
                    log.warning("kubelet %s: pod %s/%s: %s", tracked.node, tracked.namespace, tracked.name, exc.message)
            except Exception:
                log.exception("kubelet %s: pod %s/%s", tracked.node, tracked.namespace, tracked.name)

        tracked.timers.append(self.clock.call_later(delay, run))

    def _get(self, t: _Tracked) -> dict | None:
        pod = self.store.try_get("pods", t.namespace, t.name)
        if pod is None or pod["metadata"].get("uid") != t.uid:
            return None
        return pod

    def _write(self, t: _Tracked, fn: Callable[[dict], None]) -> None:
        self.store.mutate("pods", t.namespace, t.name, fn, subresource="status")

    # --- status builders -----------------------------------------------------------------------

    @staticmethod
    def _set_conditions(status: dict, now: str, **states: tuple[str, str, str]) -> None:
        """states: type → (status, reason, message); lastTransitionTime moves only on flips."""
        conds = {c["type"]: c for c in status.get("conditions") or ()}
        for ctype, (value, reason, message) in states.items():
            cur = conds.get(ctype)
            new = {"type": ctype, "status": value, "lastProbeTime": None,
                   "lastTransitionTime": cur["lastTransitionTime"] if cur and cur.get("status") == value
                   and cur.get("lastTransitionTime") else now}
            if reason:
                new["reason"] = reason
            if message:
                new["message"] = message
            conds[ctype] = new
        order = ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"]
        status["conditions"] = [conds[k] for k in order if k in conds] + [
            c for k, c in conds.items() if k not in order]

    def _pod_ip(self, node: str) -> str:
        i = self._node_index.get(node, 0)
        seq = self._ip_seq.get(node, 0)
        self._ip_seq[node] = seq + 1
        return f"10.{64 + i // 256}.{i % 256}.{2 + seq % 252}"

    @staticmethod
    def _image_id(image: str) -> str:
        digest = hashlib.sha256(image.encode()).hexdigest()
        repo = image.split("@")[0].rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image.split("@")[0]
        if "/" not in repo:
            repo = f"docker.io/library/{repo}"
        elif "." not in repo.split("/")[0]:
            repo = f"docker.io/{repo}"
        return f"{repo}@sha256:{digest}"

    @staticmethod
    def _container_id(uid: str, name: str, restarts: int) -> str:
        return "containerd://" + hashlib.sha256(f"{uid}/{name}/{restarts}".encode()).hexdigest()

    def _unready_names(self, pod: dict) -> str:
        return "[" + " ".join(c["name"] for c in pod["spec"].get("containers") or ()) + "]"

    # --- lifecycle steps -----------------------------------------------------------------------

    def _accept(self, t: _Tracked) -> None:
        pod = self._get(t)
        if pod is None or pod["metadata"].get("deletionTimestamp"):
            return
        now = format_time(self.clock.now())
        names = self._unready_names(pod)

        def fn(o: dict) -> None:
            s = o.setdefault("status", {})
            s["phase"] = "Pending"
            s["hostIP"] = self.host_ip
            s["hostIPs"] = [{"ip": self.host_ip}]
            s.setdefault("startTime", now)
            self._set_conditions(
                s, now,
                PodReadyToStartContainers=("False", "", ""),
                Initialized=("True", "", ""),
                Ready=("False", "ContainersNotReady", f"containers with unready status: {names}"),
                ContainersReady=("False", "ContainersNotReady", f"containers with unready status: {names}"),
                PodScheduled=("True", "", ""),
            )
            s["containerStatuses"] = [
                {"name": c["name"], "state": {"waiting": {"reason": "ContainerCreating"}}, "lastState": {},
                 "ready": False, "restartCount": 0, "image": c.get("image", ""), "imageID": "", "started": False}
                for c in o["spec"].get("containers") or ()
            ]

        self._write(t, fn)
        self._after(t, t.timing.startup, self._start)

    def _start(self, t: _Tracked) -> None:
        pod = self._get(t)
        if pod is None or pod["metadata"].get("deletionTimestamp"):
            return
        now_f = self.clock.now()
        now = format_time(now_f)
        ip = self._pod_ip(t.node)
        names = self._unready_names(pod)
        containers = pod["spec"].get("containers") or []

        def fn(o: dict) -> None:
            s = o.setdefault("status", {})
            s["phase"] = "Running"
            s["podIP"] = ip
            s["podIPs"] = [{"ip": ip}]
            self._set_conditions(
                s, now,
                PodReadyToStartContainers=("True", "", ""),
                Ready=("False", "ContainersNotReady", f"containers with unready status: {names}"),
                ContainersReady=("False", "ContainersNotReady", f"containers with unready status: {names}"),
            )
            s["containerStatuses"] = [
                {"name": c["name"], "state": {"running": {"startedAt": now}}, "lastState": {}, "ready": False,
                 "restartCount": 0, "image": c.get("image", ""), "imageID": self._image_id(c.get("image", "")),
                 "containerID": self._container_id(t.uid, c["name"], 0), "started": True}
                for c in containers
            ]

        self._write(t, fn)
        t.stage = "running"
        stats = self.stats_of(t.node)
        if stats is not None:
            fracs = container_fractions([_cores(((c.get("resources") or {}).get("requests") or {}).get("cpu", 0))
                                         for c in containers])
            for c, frac in zip(containers, fracs, strict=True):
                limits = (c.get("resources") or {}).get("limits") or {}
                mem_limit = 0.0
                if "memory" in limits:
                    mem_limit = _cores(limits["memory"])
                stats.add(ContainerRow(
                    t.namespace, t.name, t.uid, c["name"], now_f, now_f, workload=t.workload, frac=float(frac),
                    cpu_limit=_cores(limits.get("cpu", 0)), memory_limit=mem_limit,
                ), now_f)
        for c in containers:
            self.events.emit(pod, "Normal", "Started", f"Started container {c['name']}", component="kubelet",
                             host=t.node)
        self._after(t, t.timing.readiness, self._ready)

    def _ready(self, t: _Tracked) -> None:
        pod = self._get(t)
        if pod is None or pod["metadata"].get("deletionTimestamp"):
            return
        now_f = self.clock.now()
        now = format_time(now_f)

        def fn(o: dict) -> None:
            s = o.setdefault("status", {})
            self._set_conditions(s, now, Ready=("True", "", ""), ContainersReady=("True", "", ""))
            for cs in s.get("containerStatuses") or ():
                cs["ready"] = True

        self._write(t, fn)
        t.stage = "ready"
        stats = self.stats_of(t.node)
        if stats is not None:
            stats.advance(now_f)
            for row in stats.pod_rows(t.namespace, t.name):
                row.ready_since = now_f
                row.ready_until = INF
            stats.changed()
        if t.workload is not None and not t.counted_ready:
            t.workload.ready_changed(now_f, +1)
            t.counted_ready = True

    def _unready(self, t: _Tracked, now_f: float) -> None:
        stats = self.stats_of(t.node)
        if stats is not None:
            stats.advance(now_f)
            for row in stats.pod_rows(t.namespace, t.name):
                row.ready_until = now_f
            stats.changed()
        if t.workload is not None and t.counted_ready:
            t.workload.ready_changed(now_f, -1)
            t.counted_ready = False

    def _begin_termination(self, t: _Tracked, pod: dict) -> None:
        was_running = t.stage in ("running", "ready")
        t.cancel()
        t.stage = "terminating"
        now_f = self.clock.now()
        self._unready(t, now_f)
        grace = pod["metadata"].get("deletionGracePeriodSeconds")
        grace = 30.0 if grace is None else float(grace)
        delay = min(grace, t.timing.termination) if was_running else 0.0
        if was_running:
            for c in pod["spec"].get("containers") or ():
                self.events.emit(pod, "Normal", "Killing", f"Stopping container {c['name']}", component="kubelet",
                                 host=t.node)
        self._after(t, delay, self._finish_termination)

    def _finish_termination(self, t: _Tracked) -> None:
        pod = self._get(t)
        if pod is None:
            self._forget(t)
            return
        now = format_time(self.clock.now())
        started = (pod.get("status") or {}).get("phase") == "Running"

        def fn(o: dict) -> None:
            s = o.setdefault("status", {})
            names = self._unready_names(o)
            s["phase"] = "Succeeded" if started else "Failed"
            self._set_conditions(
                s, now,
                PodReadyToStartContainers=("False", "", ""),
                Ready=("False", "PodCompleted", ""),
                ContainersReady=("False", "PodCompleted", ""),
            )
            if not started:
                self._set_conditions(s, now, Ready=("False", "ContainersNotReady",
                                                    f"containers with unready status: {names}"))
            for cs in s.get("containerStatuses") or ():
                running = (cs.get("state") or {}).get("running") or {}
                cs["state"] = {"terminated": {"exitCode": 0 if started else 137,
                                              "reason": "Completed" if started else "ContainerStatusUnknown",
                                              "startedAt": running.get("startedAt", now), "finishedAt": now,
                                              **({"containerID": cs["containerID"]} if cs.get("containerID") else {})}}
                cs["ready"] = False
                cs["started"] = False

        if pod["spec"].get("nodeName"):
            self._write(t, fn)
        self.store.delete("pods", t.namespace, t.name, grace_period_seconds=0)
        self._forget(t)

    def _forget(self, t: _Tracked) -> None:
        t.cancel()
        if self.pods.get((t.namespace, t.name)) is t:
            del self.pods[(t.namespace, t.name)]
        now_f = self.clock.now()
        if t.counted_ready:
            self._unready(t, now_f)
        stats = self.stats_of(t.node)
        if stats is not None:
            stats.remove_pod(t.namespace, t.name, now_f)

    # --- fault injection -----------------------------------------------------------------------

    def restart_container(self, namespace: str, pod_name: str, container: str, *, reason: str = "Error",
                          exit_code: int = 1) -> None:
        """A container crash: counter reset, restartCount+1, lastState.terminated, not ready until
        the readiness delay has passed again."""
        t = self.pods.get((namespace, pod_name))
        if t is None or t.stage not in ("running", "ready"):
            raise ValueError(f"pod {namespace}/{pod_name} is not running on an emulated node")
        if t.node in self.stopped:
            raise ValueError(f"pod {namespace}/{pod_name}: the kubelet of node {t.node} is stopped")
        now_f = self.clock.now()
        now = format_time(now_f)
        self._unready(t, now_f)
        stats = self.stats_of(t.node)
        if stats is not None:
            stats.restart(namespace, pod_name, container, now_f)
        t.restarts[container] = t.restarts.get(container, 0) + 1
        count = t.restarts[container]

        def fn(o: dict) -> None:
            s = o.setdefault("status", {})
            self._set_conditions(
                s, now,
                Ready=("False", "ContainersNotReady", f"containers with unready status: [{container}]"),
                ContainersReady=("False", "ContainersNotReady", f"containers with unready status: [{container}]"),
            )
            for cs in s.get("containerStatuses") or ():
                if cs["name"] != container:
                    continue
                prev = (cs.get("state") or {}).get("running") or {}
                cs["lastState"] = {"terminated": {"exitCode": exit_code, "reason": reason,
                                                  "startedAt": prev.get("startedAt", now), "finishedAt": now,
                                                  "containerID": cs.get("containerID", "")}}
                cs["state"] = {"running": {"startedAt": now}}
                cs["restartCount"] = count
                cs["containerID"] = self._container_id(t.uid, container, count)
                cs["ready"] = False

        self._write(t, fn)
        t.stage = "running"
        t.cancel()
        self._after(t, t.timing.readiness, self._ready)
