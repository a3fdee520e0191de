"""The live HPA controller: informers, work queue, workers, writes, coexistence and leader election.

Per HPA and sync period, a worker gathers the inputs (:mod:`autoscaler.controller.evaluate`),
runs the decision core and applies the outcome according to the mode:

* ``active``: UPDATE ``/scale`` (retried on conflicts), write the status only when it changed,
  record the core's events; a status change by another writer (kube-controller-manager's
  built-in controller) is reported in a Warning event and a log line.
* ``dry-run``: write nothing to scale or status; publish the recommendation as gauges, a
  ``DryRunRescale`` event when it would rescale and, on request, an annotation.

HPAs are queued like the emulated kube-controller-manager: from 1.37 at once when added, and at
once when their spec changes (``metadata.generation`` moved, with HPAGeneration); in 1.36, and
for every other update, one sync period later; and one sync period after each reconcile. With
StaleControllerConsistencyHPA a sync waits (is requeued) until the informer has seen our own
last status write. With leader election, workers only run while this replica holds the Lease,
and every write checks that it still does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from autoscaler.controller.consistency import ConsistencyStore, StaleRead
from autoscaler.controller.evaluate import Evaluation, Evaluator, hpa_key
from autoscaler.controller.events import EventRecorder
from autoscaler.controller.leader import LeaderElector
from autoscaler.controller.metrics_source import MetricsFetcher, ResourceMetrics
from autoscaler.controller.options import ControllerOptions
from autoscaler.controller.podindex import PodIndex
from autoscaler.controller.prommetrics import ControllerMetrics
from autoscaler.controller.scales import RESTMapper, ScaleClient, ScaleError
from autoscaler.controller.summary import limiting_rule, one_line
from autoscaler.controller.workqueue import WorkQueue
from autoscaler.hpa import HPAState, PodSet, rescale_failed
from autoscaler.hpa.inputs import InputError
from autoscaler.k8s.informer import Informer, object_key
from autoscaler.k8s.kubeconfig import KubeConfig
from autoscaler.k8s.rest import KubeClient, KubeError, seg
from autoscaler.k8s.selectors import LabelSelector
from autoscaler.k8s.timefmt import format_time

log = structlog.get_logger(__name__)

HPA_PATH = "/apis/autoscaling/v2/horizontalpodautoscalers"
ANNOTATION = "autoscaler/dry-run-recommendation"
#: the shortest silence after which a leading controller with HPAs counts as stuck (``/livez``)
STUCK_AFTER = 60.0
FOREIGN_WRITER_MESSAGE = (
    "the status of this HPA was changed by another writer (probably kube-controller-manager's built-in HPA "
    "controller): two controllers are reconciling it. Disable the built-in one with "
    "--controllers=*,-horizontalpodautoscaling or run autoscaler with --controller-mode=dry-run")


def slim_pod(pod: dict[str, Any]) -> dict[str, Any]:
    """What the decision needs from a pod: labels, phase, Ready, start time, requests."""
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}

    def containers(items: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
        return [{k: c[k] for k in ("name", "resources", "restartPolicy") if k in c} for c in items or []]

    out_spec: dict[str, Any] = {"containers": containers(spec.get("containers"))}
    if spec.get("initContainers"):
        out_spec["initContainers"] = containers(spec["initContainers"])
    if spec.get("resources"):
        out_spec["resources"] = spec["resources"]
    return {
        "metadata": {k: meta[k] for k in ("name", "namespace", "labels", "resourceVersion", "uid", "deletionTimestamp")
                     if k in meta},
        "spec": out_spec,
        "status": {"phase": status.get("phase"), "startTime": status.get("startTime"),
                   "conditions": [c for c in status.get("conditions") or [] if c.get("type") == "Ready"]},
    }


@dataclass
class Outcome:
    """What one reconcile did (or, in dry-run, would do), for tests, `recommend` and logs."""

    key: str
    time: float
    mode: str
    current: int | None
    desired: int | None
    updated: bool
    reason: str
    limited_by: str
    summary: str
    builtin_desired: int | None
    error: str | None = None
    events: list[dict[str, str]] = field(default_factory=list)
    status_written: bool = False


class _InformerPods:
    def __init__(self, index: PodIndex) -> None:
        self.index = index

    async def pods(self, namespace: str, selector: LabelSelector) -> list[dict[str, Any]]:
        return self.index.select(namespace, selector)

    async def pod_set(self, namespace: str, selector: LabelSelector) -> tuple[list[dict[str, Any]], PodSet]:
        return self.index.select_set(namespace, selector)


class HPAController:
    """One controller replica. ``run(stop)`` is the component; tests drive ``start``/``sync_all``."""

    def __init__(self, kube: KubeConfig, options: ControllerOptions, resource_metrics: ResourceMetrics | None = None,
                 *, clock: Callable[[], float] = time.time, sleep: Callable[[float], Any] = asyncio.sleep,
                 metrics: ControllerMetrics | None = None, identity: str | None = None,
                 client: KubeClient | None = None, monotonic: Callable[[], float] = time.monotonic,
                 pod_informer: Informer | None = None) -> None:
        """``pod_informer``: an informer of all pods (slimmed by :func:`slim_pod` or keeping more)
        that someone else runs, e.g. `autoscaler run`'s shared one; without it the controller
        lists and watches pods itself."""
        from autoscaler.controller.metrics_source import ApiResourceMetrics

        options.validate()
        self.options = options
        self.mode = options.mode
        self.clock = clock
        self.sleep = sleep
        # Resync delays run on a monotonic clock, as client-go's delaying queue: an NTP step of the
        # wall clock must neither park every HPA nor fire them all (a simulation passes its clock).
        self.monotonic = monotonic
        self.failure: str | None = None  # why run() ended with an error
        self.last_progress: float | None = None  # monotonic time of the last finished sync while leading
        self.kube = kube
        self.client = client or KubeClient(kube, user_agent="autoscaler-controller", connections=max(8, options.workers * 2))
        self.metrics = metrics or ControllerMetrics()
        mapper = RESTMapper(self.client)
        self.pod_index = PodIndex()
        self.evaluator = Evaluator(ScaleClient(self.client, mapper),
                                   MetricsFetcher(self.client, resource_metrics or ApiResourceMetrics(self.client),
                                                  mapper),
                                   _InformerPods(self.pod_index), options.config)
        self.hpas = Informer(kube, HPA_PATH, name="horizontalpodautoscalers")
        self._own_pods = pod_informer is None
        self.pods = pod_informer or Informer(kube, "/api/v1/pods", name="controller-pods", transform=slim_pod)
        for pod in self.pods.items():  # a shared informer may have listed already
            self.pod_index.upsert(pod)
        self.pods.add_handler(self.pod_index.handler)
        self.hpas.add_handler(self._on_hpa)
        self.elector: LeaderElector | None = None
        if options.leader_elect:
            self.elector = LeaderElector(self.client, options.lease_namespace, options.lease_name, identity,
                                         lease_duration=options.lease_duration, renew_deadline=options.renew_deadline,
                                         retry_period=options.retry_period, clock=clock)
        self.recorder = EventRecorder(self.client, clock)  # source {component: horizontal-pod-autoscaler}
        self.states: dict[str, HPAState] = {}
        self.last: dict[str, Outcome] = {}
        self.history: list[Outcome] = []
        self.keep_history = False
        self.queue: WorkQueue | None = None
        self._tasks: list[asyncio.Task] = []
        self._stop_informers = asyncio.Event()
        self._written: dict[str, dict[str, Any]] = {}  # key -> status we last wrote (or are writing)
        # StaleControllerConsistencyHPA: the informer's last-synced resourceVersion against our writes
        self.consistency = (ConsistencyStore(lambda: self.hpas.resource_version)
                            if options.config.stale_consistency else None)
        self.foreign_writes: set[str] = set()  # HPAs (existing ones) whose status another writer changed

    # -- lifecycle ---------------------------------------------------------------------------------
    async def start(self, timeout: float | None = 60.0) -> None:
        """Start the informers (a shared pod informer runs elsewhere) and wait until both have listed
        (``timeout`` None: as long as it takes)."""
        self._stop_informers.clear()
        for inf in (self.hpas, self.pods) if self._own_pods else (self.hpas,):
            self._tasks.append(asyncio.create_task(inf.run(self._stop_informers), name=f"informer {inf.name}"))
        for inf in (self.hpas, self.pods):
            if not await inf.wait_synced(timeout):
                raise TimeoutError(f"informer {inf.name} did not sync within {timeout}s")

    async def close(self) -> None:
        self._stop_informers.set()
        for t in self._tasks:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(t, 10)
        self._tasks.clear()
        await self.recorder.close()
        await self.client.close()

    async def run(self, stop: asyncio.Event) -> None:
        """The `autoscaler run` component: informers, then (as leader, if electing) the workers."""
        try:
            await self.start(timeout=None)
            log.info("HPA controller started", mode=self.mode, workers=self.options.workers,
                     sync_period=self.options.sync_period, leader_elect=self.elector is not None)
            if self.elector is not None:
                self.metrics.leader.labels(self.elector.name).set(0)
                await self.elector.run(stop, self._lead)
            else:
                await self._lead(stop)
        except Exception as exc:
            self.failure = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self.last_progress = None
            await self.close()

    def liveness(self) -> str | None:
        """The ``/livez`` check: None while healthy. A controller that died, or that leads with HPAs
        to sync but has finished no sync for three sync periods (at least a minute), is stuck; a
        restart is the remedy, as for any wedged component."""
        if self.failure is not None:
            return f"the HPA controller stopped: {self.failure}"
        if self.last_progress is None or not self.hpas.keys():
            return None
        age, limit = self.monotonic() - self.last_progress, max(3 * self.options.sync_period, STUCK_AFTER)
        if age > limit:
            return f"no HPA sync finished for {age:.0f}s (sync period {self.options.sync_period:g}s)"
        return None

    async def _lead(self, lost: asyncio.Event) -> None:
        """Workers over the queue until ``lost`` (leadership lost, or stop)."""
        self.states.clear()  # like a restart: no memory from an earlier term
        self.last_progress = self.monotonic()
        self.queue = self.new_queue()
        for key in sorted(self.hpas.keys()):
            self._enqueue_new(key)
        workers = [asyncio.create_task(self._worker(self.queue), name=f"hpa-worker-{i}")
                   for i in range(self.options.workers)]
        if self.elector is not None:
            self.metrics.leader.labels(self.elector.name).set(1)
        try:
            await lost.wait()
        finally:
            if self.elector is not None:
                self.metrics.leader.labels(self.elector.name).set(0)
            self.last_progress = None  # not leading: nothing to be stuck on
            queue, self.queue = self.queue, None
            await queue.shutdown()
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    def new_queue(self) -> WorkQueue:
        return WorkQueue(self.monotonic, self.sleep)

    async def _worker(self, queue: WorkQueue) -> None:
        while True:
            key = await queue.get()
            try:
                await self.reconcile(key)
                self.last_progress = self.monotonic()
            except Exception:
                log.exception("reconcile failed", hpa=key)
            finally:
                queue.done(key)
                if self.hpas.get(key) is not None:
                    queue.add_after(key, self.options.sync_period)

    def _enqueue_new(self, key: str) -> None:
        """enqueueHPA: 1.37 queues a new HPA at once (k/k#138294); 1.36 one sync period later."""
        if self.queue is None:
            return
        if self.options.config.immediate_reconcile:
            self.queue.add(key)
        else:
            self.queue.add_after(key, self.options.sync_period)

    def may_act(self) -> bool:
        return self.elector is None or self.elector.leading

    # -- informer events ---------------------------------------------------------------------------
    def _on_hpa(self, kind: str, obj: dict, old: dict | None) -> None:
        key = hpa_key(obj)
        if kind == "DELETED":
            self._forget(key)
            if self.consistency is not None:
                self.consistency.clear(key, str((obj.get("metadata") or {}).get("uid") or ""))
            return
        self.metrics.num_hpas.set(self.hpas.count())
        if kind == "MODIFIED" and old is not None:
            self._check_foreign_write(key, obj, old)
        q = self.queue
        if q is None:
            return
        if kind == "ADDED":
            self._enqueue_new(key)
            return
        # updateHPA: with HPAGeneration a generation change is a spec change, reconciled at once;
        # anything else (our own status writes included) waits for the sync period
        spec_changed = (obj.get("metadata") or {}).get("generation") != ((old or {}).get("metadata") or {}).get(
            "generation")
        if self.options.config.observed_generation and spec_changed:
            q.add(key)
        else:
            q.add_after(key, self.options.sync_period)

    def _forget(self, key: str) -> None:
        self.states.pop(key, None)
        self.foreign_writes.discard(key)
        self.last.pop(key, None)
        self._written.pop(key, None)
        self.evaluator.forget(key)
        if self.queue is not None:
            self.queue.forget(key)
        ns, _, name = key.partition("/")
        self.metrics.forget(ns, name)
        self.metrics.num_hpas.set(self.hpas.count())

    def _check_foreign_write(self, key: str, obj: dict, old: dict) -> None:
        """Active mode: a status that neither we wrote nor was there before we wrote is someone else's."""
        if self.mode != "active" or key not in self._written:
            return
        ours = self._written[key]
        new_status, old_status = obj.get("status") or {}, old.get("status") or {}
        if new_status in (old_status, ours) or old_status != ours:
            return
        self.metrics.foreign_status_writes.inc()
        self.foreign_writes.add(key)
        log.warning("HPA status changed by another writer", hpa=key, hint=FOREIGN_WRITER_MESSAGE)
        self.recorder.event(obj, "Warning", "StatusChangedByAnotherWriter", FOREIGN_WRITER_MESSAGE)

    # -- one reconcile -----------------------------------------------------------------------------
    async def sync_all(self) -> dict[str, Outcome]:
        """Reconcile every HPA in the cache once, with the configured number of workers."""
        keys = sorted(self.hpas.keys())
        pending = iter(keys)
        out: dict[str, Outcome] = {}

        async def worker() -> None:
            for key in pending:
                try:
                    res = await self.reconcile(key)
                except Exception:
                    log.exception("reconcile failed", hpa=key)
                    continue
                if res is not None:
                    out[key] = res

        await asyncio.gather(*(worker() for _ in range(min(self.options.workers, max(1, len(keys))))))
        return out

    async def reconcile(self, key: str) -> Outcome | None:
        if self.consistency is not None:
            try:
                self.consistency.ensure_ready(key)
            except StaleRead as exc:  # requeued by the worker, one sync period later, as upstream
                self.metrics.stale_sync_skips.labels("autoscaling", "horizontalpodautoscalers").inc()
                log.info("skipping sync: the informer has not seen our last status write", hpa=key, error=str(exc))
                return None
        obj = self.hpas.get(key)
        if obj is None:
            self._forget(key)
            if self.consistency is not None:
                self.consistency.clear(key)
            return None
        t0 = time.perf_counter()
        now = self.clock()
        try:
            ev = await self.evaluator.evaluate(obj, self.states.get(key), now)
        except InputError as exc:  # one unreadable pod spec: this HPA fails, the others go on
            log.warning("cannot read inputs", hpa=key, error=str(exc))
            self.metrics.reconciliations.labels("none", "internal").inc()
            return None
        decide_seconds = time.perf_counter() - t0
        outcome = await (self._apply_active(ev, now) if self.mode == "active" else self._apply_dry_run(ev, now))
        self._observe(ev, outcome, time.perf_counter() - t0, decide_seconds)
        self.last[key] = outcome
        if self.keep_history:
            self.history.append(outcome)
        return outcome

    def _outcome(self, ev: Evaluation, now: float) -> Outcome:
        d = ev.decision
        builtin = (ev.hpa.get("status") or {}).get("desiredReplicas")
        return Outcome(ev.key, now, self.mode, d.scale_from, d.scale_to, d.updated, d.reason, limiting_rule(d),
                       one_line(d), builtin, d.error, list(d.events))

    async def _apply_active(self, ev: Evaluation, now: float) -> Outcome:
        d = ev.decision
        if not self.may_act():
            return self._outcome(ev, now)
        if d.updated:
            sr = ev.scale
            assert sr.obj is not None and sr.mapping is not None and d.scale_to is not None
            try:
                await self.evaluator.scales.update(ev.compiled.namespace, str(ev.compiled.target_ref.get("name")),
                                                   sr.mapping, sr.obj, d.scale_to)
            except ScaleError as exc:
                d = ev.decision = rescale_failed(d, str(exc))
        self.states[ev.key] = d.state
        for e in d.events:
            self.recorder.event(ev.hpa, e["type"], e["reason"], e["message"])
        out = self._outcome(ev, now)
        if d.status_changed and self.may_act():
            out.status_written = await self._write_status(ev.hpa, d.status)
        return out

    async def _write_status(self, obj: dict[str, Any], status: dict[str, Any]) -> bool:
        """PUT the status subresource over the HPA as this sync read it. A conflict is not retried with
        this sync's status (it was computed from an HPA that has changed since): as upstream, the
        failure is an event and the next sync writes a status from fresh state."""
        meta = obj.get("metadata") or {}
        key = hpa_key(obj)
        path = (f"/apis/autoscaling/v2/namespaces/{seg(meta.get('namespace') or 'default')}"
                f"/horizontalpodautoscalers/{seg(str(meta.get('name')))}/status")
        # currentReplicas/desiredReplicas are plain int32 fields upstream: always serialized, 0 when unset
        status = {"currentReplicas": 0, "desiredReplicas": 0, **status}
        self._written[key] = status
        body = {**obj, "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "status": status}
        try:
            written = await self.client.put(path, body)
        except KubeError as exc:
            self.recorder.event(obj, "Warning", "FailedUpdateStatus", exc.message)
            log.warning("failed to update HPA status", hpa=key, error=exc.message)
            return False
        wmeta = written.get("metadata") or {}
        if self.consistency is not None and wmeta.get("resourceVersion"):
            self.consistency.wrote_at(key, str(wmeta.get("uid") or ""), str(wmeta["resourceVersion"]))
        return True

    async def _apply_dry_run(self, ev: Evaluation, now: float) -> Outcome:
        d = ev.decision
        self.states[ev.key] = d.state  # as if applied: beside the built-in controller the world follows it
        out = self._outcome(ev, now)
        ns, name = ev.compiled.namespace, ev.compiled.name
        if d.scale_to is not None:
            self.metrics.child(self.metrics.recommended, ns, name).set(d.scale_to)
        if d.scale_from is not None:
            self.metrics.child(self.metrics.current, ns, name).set(d.scale_from)
        if out.builtin_desired is not None:
            self.metrics.child(self.metrics.builtin_desired, ns, name).set(out.builtin_desired)
        # one record per sync (kube-controller-manager logs its decisions at V(4)): what a comparison
        # with the built-in controller lines up with its syncs
        log.debug("dry-run sync", hpa=ev.key, current=d.scale_from, desired=d.status.get("desiredReplicas"),
                  recommended=d.scale_to, error=d.error, reason=d.reason,
                  metrics_time=ev.metrics_time,
                  current_metrics=d.status.get("currentMetrics"))
        if not self.may_act():
            return out
        if d.updated:
            self.recorder.event(ev.hpa, "Normal", "DryRunRescale",
                                f"would rescale to {d.scale_to} (current {d.scale_from}); reason: {d.reason}")
        if self.options.dry_run_annotate:
            await self._annotate(ev, out)
        return out

    async def _annotate(self, ev: Evaluation, out: Outcome) -> None:
        value = {"recommendedReplicas": out.desired, "currentReplicas": out.current, "limitedBy": out.limited_by,
                 "reason": out.reason, "error": out.error}
        annotations = (ev.hpa.get("metadata") or {}).get("annotations") or {}
        try:
            previous = json.loads(annotations.get(ANNOTATION) or "{}")
        except ValueError:
            previous = {}
        if {k: previous.get(k) for k in value} == value:
            return
        text = json.dumps({**value, "time": format_time(out.time)}, separators=(",", ":"))
        ns, name = ev.compiled.namespace, ev.compiled.name
        try:
            await self.client.patch(f"/apis/autoscaling/v2/namespaces/{seg(ns)}/horizontalpodautoscalers/{seg(name)}",
                                    {"metadata": {"annotations": {ANNOTATION: text}}})
        except KubeError as exc:
            log.warning("failed to annotate HPA", hpa=ev.key, error=exc.message)

    def _observe(self, ev: Evaluation, out: Outcome, seconds: float, decide_seconds: float) -> None:
        d = ev.decision
        action = "none"
        if out.current is not None and out.desired is not None and d.error is None:
            action = "scale_up" if out.desired > out.current else "scale_down" if out.desired < out.current else "none"
        error = "none"
        if d.error:
            spec_error = d.error.startswith("invalid API version") or any(
                e.get("reason") == "InvalidMetricSourceType" for e in d.events)
            error = "spec" if spec_error else "internal"
        pm = self.metrics
        pm.child(pm.reconciliations, action, error).inc()
        pm.child(pm.reconciliation_duration, action, error).observe(seconds)
        if "desiredReplicas" in d.status:
            pm.child(pm.desired_replicas, ev.compiled.namespace, ev.compiled.name).set(d.status["desiredReplicas"])
        metrics = (d.explanation or {}).get("metrics") or []
        previous = int((ev.hpa.get("status") or {}).get("currentReplicas") or 0)
        for m in metrics:
            if m.get("ok"):
                p = int(m.get("proposal") or 0)
                m_action, m_error = ("scale_up" if p > previous else "scale_down" if p < previous else "none"), "none"
            else:
                m_action, m_error = "none", "spec" if m.get("reason") == "InvalidMetricSourceType" else "internal"
            mtype = str(m.get("type") or "")
            pm.child(pm.metric_computation, m_action, m_error, mtype).inc()
            # the core computes all metrics in one call: each gets an equal share of its time
            pm.child(pm.metric_computation_duration, m_action, m_error, mtype).observe(decide_seconds / len(metrics))

    # -- helpers for tests and tools ---------------------------------------------------------------
    async def catch_up(self, timeout: float = 30.0) -> None:
        """Wait until the informer caches hold what the API server has now (same objects, versions)."""
        deadline = time.monotonic() + timeout
        for inf, path in ((self.hpas, HPA_PATH), (self.pods, "/api/v1/pods")):
            doc = await self.client.get(path)
            want = {f"{(o['metadata'].get('namespace'))}/{o['metadata']['name']}": o["metadata"].get("resourceVersion")
                    for o in doc.get("items") or []}
            while True:
                have = {object_key(o): o["metadata"].get("resourceVersion") for o in inf.items()}
                if all(have.get(k) is not None and int(have[k]) >= int(v) for k, v in want.items()) and \
                        not (set(have) - set(want)):
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"informer {inf.name} did not catch up with the API server")
                await asyncio.sleep(0.01)
