"""A default-scheduler for the emulated cluster.

Filters nodes in kube-scheduler's plugin order (NodeUnschedulable, TaintToleration, NodeAffinity
for ``nodeSelector``, NodeResourcesFit against allocatable cpu/memory/pods), scores the rest by
least allocation, and binds (``spec.nodeName`` + ``PodScheduled`` condition). Pods that fit
nowhere stay Pending with ``PodScheduled=False/Unschedulable`` and kube-scheduler's message, and
are retried when capacity changes. Node capacity is kept in numpy arrays so a pod is placed among
thousands of nodes in a few vector operations.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Any

import numpy as np

from autoscaler.k8s import status as st
from autoscaler.k8s.quantity import QuantityError, milli_value, value
from autoscaler.k8s.timefmt import format_time
from sim.clock import Clock
from sim.workloads import EventRecorder

log = logging.getLogger(__name__)

SCHEDULER_NAME = "default-scheduler"


def pod_requests(pod: dict) -> tuple[int, int]:
    """(cpu millicores, memory bytes) a pod requests: sum over containers, or the largest init
    container if bigger (the pod's effective request)."""
    def total(containers: list[dict]) -> tuple[int, int]:
        cpu = mem = 0
        for c in containers:
            req = (c.get("resources") or {}).get("requests") or {}
            try:
                cpu += milli_value(req["cpu"]) if "cpu" in req else 0
                mem += value(req["memory"]) if "memory" in req else 0
            except QuantityError:
                continue
        return cpu, mem

    spec = pod.get("spec") or {}
    cpu, mem = total(spec.get("containers") or [])
    for c in spec.get("initContainers") or []:
        icpu, imem = total([c])
        cpu, mem = max(cpu, icpu), max(mem, imem)
    return cpu, mem


def tolerates(tolerations: list[dict], taint: dict) -> bool:
    """Whether any toleration tolerates ``taint`` (``v1.Toleration.ToleratesTaint``)."""
    for t in tolerations:
        if t.get("effect") and t.get("effect") != taint.get("effect"):
            continue
        if t.get("operator") == "Exists":
            if not t.get("key") or t.get("key") == taint.get("key"):
                return True
        elif t.get("key") == taint.get("key") and (t.get("value") or "") == (taint.get("value") or ""):
            return True
    return False


class Scheduler:
    """Places Pending pods on emulated nodes (see module docstring)."""

    def __init__(self, store: Any, clock: Clock, events: EventRecorder, *, delay: float = 0.0,
                 retry_interval: float = 30.0) -> None:
        self.store = store
        self.clock = clock
        self.events = events
        self.delay = delay
        self.retry_interval = retry_interval
        self.names: list[str] = []
        self._index: dict[str, int] = {}
        self._nodes: list[dict] = []
        self._cap = np.zeros((0, 3))  # allocatable cpu milli, memory bytes, pods (grown by doubling)
        self._used_all = np.zeros((0, 3))
        self._usage: dict[tuple[str, str], tuple[int, np.ndarray]] = {}  # pod → (node idx, request)
        self._queue: dict[tuple[str, str], None] = {}
        self._unschedulable: set[tuple[str, str]] = set()
        self._scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._unsub: list[Callable[[], None]] = []
        self._retry = None
        self.rng = random.Random(0)

    @property
    def alloc(self) -> np.ndarray:
        return self._cap[: len(self.names)]

    @property
    def used(self) -> np.ndarray:
        return self._used_all[: len(self.names)]

    # --- state ---------------------------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for node in self.store.list("nodes")[0]:
            self._on_node("ADDED", node, None)
        for pod in self.store.list("pods")[0]:
            self._on_pod("ADDED", pod, None)
        self._unsub += [self.store.subscribe("nodes", self._on_node), self.store.subscribe("pods", self._on_pod)]
        self._retry = self.clock.call_later(self.retry_interval, self._periodic_retry)

    def stop(self) -> None:
        for u in self._unsub:
            u()
        self._unsub.clear()
        if self._retry is not None:
            self._retry.cancel()
        self._loop = None

    def _periodic_retry(self) -> None:
        self._requeue_unschedulable()
        if self._loop is not None:
            self._retry = self.clock.call_later(self.retry_interval, self._periodic_retry)

    def _on_node(self, etype: str, node: dict, old: dict | None) -> None:
        name = node["metadata"]["name"]
        alloc = (node.get("status") or {}).get("allocatable") or {}
        try:
            row = np.array([milli_value(alloc.get("cpu", "0")), value(alloc.get("memory", "0")),
                            value(alloc.get("pods", "110"))], dtype=np.float64)
        except QuantityError:
            row = np.zeros(3)
        i = self._index.get(name)
        if etype == "DELETED":
            if i is not None:
                self._cap[i] = 0  # keep the slot; node is gone
                self._nodes[i] = {}
            return
        if i is None:
            i = self._index[name] = len(self.names)
            self.names.append(name)
            self._nodes.append(node)
            if i >= self._cap.shape[0]:
                grown = np.zeros((max(16, 2 * i), 3))
                grown[:i] = self._cap[:i]
                used = np.zeros_like(grown)
                used[:i] = self._used_all[:i]
                self._cap, self._used_all = grown, used
            self._cap[i] = row
        else:
            self._nodes[i] = node
            self._cap[i] = row
        self._masks_cache: dict[str, np.ndarray] = {}
        if old is None or old.get("spec") != node.get("spec") or \
                (old.get("metadata") or {}).get("labels") != node["metadata"].get("labels") or \
                (old.get("status") or {}).get("allocatable") != alloc:
            self._requeue_unschedulable()  # anything a filter looks at changed

    def _on_pod(self, etype: str, pod: dict, old: dict | None) -> None:
        md, spec = pod["metadata"], pod.get("spec") or {}
        key = (md.get("namespace", ""), md["name"])
        node = spec.get("nodeName")
        terminal = (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")
        if etype == "DELETED" or terminal:
            self._release(key)
            self._queue.pop(key, None)
            self._unschedulable.discard(key)
            return
        if node:
            if key not in self._usage and node in self._index:
                cpu, mem = pod_requests(pod)
                req = np.array([cpu, mem, 1.0])
                i = self._index[node]
                self.used[i] += req
                self._usage[key] = (i, req)
            self._unschedulable.discard(key)
            return
        if spec.get("schedulerName", SCHEDULER_NAME) != SCHEDULER_NAME or md.get("deletionTimestamp"):
            return
        if etype == "ADDED":
            self._enqueue(key, self.delay)

    def _release(self, key: tuple[str, str]) -> None:
        hit = self._usage.pop(key, None)
        if hit is not None:
            i, req = hit
            self.used[i] -= req
            self._requeue_unschedulable()

    def _requeue_unschedulable(self) -> None:
        if self._unschedulable:
            pending, self._unschedulable = self._unschedulable, set()
            for key in pending:
                self._enqueue(key, 0.0)

    def _enqueue(self, key: tuple[str, str], delay: float) -> None:
        if delay > 0:
            self.clock.call_later(delay, self._enqueue, key, 0.0)
            return
        self._queue[key] = None
        if not self._scheduled and self._loop is not None:
            self._scheduled = True
            self._loop.call_soon(self._run)

    # --- scheduling ----------------------------------------------------------------------------

    def _run(self) -> None:
        self._scheduled = False
        batch, self._queue = self._queue, {}
        for key in batch:
            try:
                self.schedule_one(key)
            except st.ApiError as exc:
                if exc.code != 404:
                    log.warning("scheduling %s/%s failed: %s", key[0], key[1], exc.message)
            except Exception:
                log.exception("scheduling %s/%s failed", *key)

    def _static_mask(self, pod: dict) -> tuple[np.ndarray, dict[str, int]]:
        """Nodes passing the non-resource filters, and how many failed each reason."""
        n = len(self.names)
        ok = np.ones(n, dtype=bool)
        reasons: dict[str, int] = {}
        spec = pod.get("spec") or {}
        selector = spec.get("nodeSelector") or {}
        tolerations = spec.get("tolerations") or []
        for i, node in enumerate(self._nodes):
            if not node:
                ok[i] = False
                continue
            nspec = node.get("spec") or {}
            if nspec.get("unschedulable"):
                ok[i] = False
                reasons["node(s) were unschedulable"] = reasons.get("node(s) were unschedulable", 0) + 1
                continue
            bad = [t for t in nspec.get("taints") or () if t.get("effect") in ("NoSchedule", "NoExecute")
                   and not tolerates(tolerations, t)]
            if bad:
                ok[i] = False
                t = bad[0]
                msg = f"node(s) had untolerated taint {{{t.get('key')}: {t.get('value', '')}}}"
                reasons[msg] = reasons.get(msg, 0) + 1
                continue
            labels = node["metadata"].get("labels") or {}
            if any(labels.get(k) != v for k, v in selector.items()):
                ok[i] = False
                msg = "node(s) didn't match Pod's node affinity/selector"
                reasons[msg] = reasons.get(msg, 0) + 1
        return ok, reasons

    def _cached_mask(self, pod: dict) -> tuple[np.ndarray, dict[str, int]]:
        spec = pod.get("spec") or {}
        key = repr((sorted((spec.get("nodeSelector") or {}).items()), spec.get("tolerations") or []))
        cache = getattr(self, "_masks_cache", None)
        if cache is None:
            cache = self._masks_cache = {}
        hit = cache.get(key)
        if hit is None:
            hit = cache[key] = self._static_mask(pod)
        return hit

    def schedule_one(self, key: tuple[str, str]) -> None:
        pod = self.store.try_get("pods", *key)
        if pod is None or pod["spec"].get("nodeName") or pod["metadata"].get("deletionTimestamp"):
            return
        cpu, mem = pod_requests(pod)
        req = np.array([cpu, mem, 1.0])
        static_ok, reasons = self._cached_mask(pod)
        reasons = dict(reasons)
        free = self.alloc - self.used
        short = free < req  # (N, 3)
        fits = static_ok & ~short.any(axis=1)
        n = len(self.names)
        if not fits.any():
            for col, text in ((0, "Insufficient cpu"), (1, "Insufficient memory"), (2, "Too many pods")):
                c = int((static_ok & short[:, col]).sum())
                if c:
                    reasons[text] = c
            self._unschedulable_pod(pod, n, reasons, static_ok)
            return
        alloc = np.where(self.alloc > 0, self.alloc, 1.0)
        after = (free - req) / alloc
        score = np.where(fits, (after[:, 0] + after[:, 1]) / 2.0, -np.inf)
        best = np.flatnonzero(score == score.max())
        i = int(best[self.rng.randrange(len(best))]) if len(best) > 1 else int(best[0])
        node = self.names[i]
        now = format_time(self.clock.now())

        def bind(o: dict) -> None:
            o["spec"]["nodeName"] = node
            conds = [c for c in (o.get("status") or {}).get("conditions") or () if c.get("type") != "PodScheduled"]
            conds.append({"type": "PodScheduled", "status": "True", "lastProbeTime": None, "lastTransitionTime": now})
            o.setdefault("status", {})["conditions"] = conds

        self.store.mutate("pods", key[0], key[1], bind)
        self.events.emit(pod, "Normal", "Scheduled", f"Successfully assigned {key[0]}/{key[1]} to {node}",
                         component=SCHEDULER_NAME, action="Binding")

    def _unschedulable_pod(self, pod: dict, n: int, reasons: dict[str, int], static_ok: np.ndarray) -> None:
        md = pod["metadata"]
        key = (md["namespace"], md["name"])
        parts = ", ".join(f"{c} {r}" for r, c in sorted(reasons.items()))
        unhelpful = n - int(static_ok.sum())
        pre = []
        if int(static_ok.sum()):
            pre.append(f"{int(static_ok.sum())} No preemption victims found for incoming pod")
        if unhelpful:
            pre.append(f"{unhelpful} Preemption is not helpful for scheduling")
        msg = f"0/{n} nodes are available: {parts}. preemption: 0/{n} nodes are available: {', '.join(sorted(pre))}."
        if n == 0:
            msg = "no nodes available to schedule pods"
        self._unschedulable.add(key)
        cur = next((c for c in (pod.get("status") or {}).get("conditions") or () if c.get("type") == "PodScheduled"),
                   None)
        if cur and cur.get("status") == "False" and cur.get("message") == msg:
            return
        now = format_time(self.clock.now())

        def mark(o: dict) -> None:
            conds = [c for c in (o.get("status") or {}).get("conditions") or () if c.get("type") != "PodScheduled"]
            conds.append({"type": "PodScheduled", "status": "False", "lastProbeTime": None,
                          "lastTransitionTime": (cur or {}).get("lastTransitionTime") or now,
                          "reason": "Unschedulable", "message": msg})
            o.setdefault("status", {})["conditions"] = conds

        self.store.mutate("pods", key[0], key[1], mark, subresource="status")
        self.events.emit(pod, "Warning", "FailedScheduling", msg, component=SCHEDULER_NAME, action="Scheduling")
