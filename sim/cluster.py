"""The emulated cluster: API server, nodes, kubelets and controllers in one event loop.

:class:`EmulatedCluster` wires A1's :class:`~sim.apiserver.server.APIServer` (and its
authenticator/authorizer, which the kubelets use for TokenReview/SubjectAccessReview semantics)
to emulated nodes (Node + Lease objects, heartbeats), one HTTPS kubelet endpoint per node, the
pod lifecycle, the scheduler and the workload controllers, then creates the scenario's workloads
and HPAs. :func:`run_in_thread` runs one on a background loop so blocking clients and
subprocesses (``kubectl``) can use it from tests.

Nodes can fail and recover (:meth:`EmulatedCluster.fail_node` / :meth:`~EmulatedCluster.recover_node`,
or a scenario's ``nodeEvents``): a failed node's kubelet stops — no Lease renewals, its HTTPS port
refuses connections, its pods' status frozen — and the node lifecycle and taint eviction controllers
(:mod:`sim.nodelifecycle`) react as kube-controller-manager does.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from autoscaler.hpa.defaults import APIFeatures
from autoscaler.hpa.versions import DEFAULT_VERSION
from autoscaler.k8s.quantity import value
from sim.clock import Clock, ManualClock
from sim.kubelet.pods import PodLifecycle, PodTiming
from sim.kubelet.server import EmulatedKubelet, Fault, KubeletAuth, KubeletFleet, compact_tls_buffers
from sim.kubelet.stats import NodeStats
from sim.loadmodel import Constant, LoadModel, WorkloadLoad
from sim.loopthread import LoopThread
from sim.nodelifecycle import NodeLifecycleController, TaintEvictionController
from sim.nodes import NodeHeartbeats, lease_object, node_object
from sim.pki import write_token_kubeconfig
from sim.scenario import NodeEvent, Scenario
from sim.scheduler import Scheduler
from sim.workloads import EventRecorder, WorkloadControllers

log = logging.getLogger(__name__)

METRICS_PATH_ANNOTATION = "metrics.k8s.io/resource-metrics-path"
#: demand of workloads the scenario does not describe (e.g. created with kubectl)
DEFAULT_LOAD = Constant(cores=0.1)
EVENT_SWEEP_SECONDS = 60.0


class EmulatedCluster:
    """API server + nodes + kubelets + controllers in one event loop."""

    def __init__(self, scenario: Scenario, state_dir: Path, *, clock: Clock | None = None,
                 authz_policy: Any = None, emulated_version: str = DEFAULT_VERSION,
                 feature_gates: Mapping[str, bool] | None = None) -> None:
        self.scenario = scenario
        #: the HPA strategy of the emulated API server at ``emulated_version`` (ValueError: bad gates)
        self.hpa_features = APIFeatures.for_version(emulated_version, feature_gates)
        self._previous_hpa_features: APIFeatures | None = None
        self.state_dir = Path(state_dir)
        self.clock = clock or Clock()
        self.authz_policy = authz_policy
        self.loads: dict[tuple[str, str], WorkloadLoad] = {}
        self.stats: dict[str, NodeStats] = {}
        self.started_at = 0.0
        self.admin_kubeconfig = self.state_dir / "kubeconfig"
        self.metrics_kubeconfig = self.state_dir / "metrics-server.kubeconfig"
        self.metrics_token = ""
        self.store: Any = None
        self.apiserver: Any = None
        self.pki: Any = None
        self.fleet: KubeletFleet | None = None
        self._parts: list[Any] = []
        self._unsub: list[Callable[[], None]] = []
        #: failed node → the kubelet fault to restore when it recovers
        self.failed: dict[str, Fault] = {}
        self._timers: list[Any] = []
        self._event_sweep: Any = None
        self._tasks: set[asyncio.Task] = set()

    @property
    def url(self) -> str:
        """The API server's URL."""
        return self.apiserver.url

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        from sim.apiserver.auth import AuthzPolicy, RequestAttributes, UserInfo
        from sim.apiserver.server import APIServer
        from sim.apiserver.store import ObjectStore
        from sim.apiserver.strategy import configure_hpa
        from sim.pki import ClusterPKI

        sc = self.scenario
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.started_at = now = self.clock.now()
        self.pki = ClusterPKI.create(self.state_dir / "pki")
        self.store = ObjectStore(clock=self.clock.now)
        self._previous_hpa_features = configure_hpa(self.hpa_features)
        policy = self.authz_policy
        if policy is None and sc.authorization is not None:
            policy = AuthzPolicy.from_config(sc.authorization)
        self.apiserver = APIServer(self.store, self.pki, authorizer_policy=policy)
        await self.apiserver.start()
        self.apiserver.write_kubeconfig(self.admin_kubeconfig, user="kubernetes-admin")
        self._write_metrics_kubeconfig()

        serving = self.pki.issue_serving("kubelet", dns_names=("localhost",), ip_addresses=("127.0.0.1",))
        crt, key = self.pki.path("kubelet.crt"), self.pki.path("kubelet.key")
        serving.write(crt, key)
        authenticator, authorizer = self.apiserver.authenticator, self.apiserver.authorizer

        def authorize(user: Any, verb: str, sub: str, node: str) -> tuple[bool, str]:
            return authorizer.authorize(RequestAttributes(user=user, verb=verb, resource="nodes", subresource=sub,
                                                          api_version="v1", name=node, resource_request=True))

        auth = KubeletAuth(
            authenticator.authenticate_token, authorize,
            lambda cn, groups: UserInfo(cn, groups=groups).with_authenticated(), self.clock)
        if len(sc.nodes) >= 500:
            compact_tls_buffers()
        self.fleet = KubeletFleet(crt, key, self.pki.ca.cert_pem, auth, self.clock,
                                  housekeeping_interval=sc.housekeeping_interval)
        events = EventRecorder(self.store, self.clock,
                               enabled=sc.events if sc.events is not None else len(sc.nodes) <= 100)
        self.events = events
        for w in sc.workloads:
            model = w.load
            if model.origin is None:
                model.origin = now
            self.loads[(w.namespace, w.name)] = WorkloadLoad(w.namespace, w.name, model, now)

        self.lifecycle = PodLifecycle(self.store, self.clock, events, self.stats.get, self._workload_of,
                                      self._timing_of, seed=sc.seed)
        self.heartbeats = NodeHeartbeats(self.store, self.clock)
        rng = random.Random(sc.seed)
        for i, spec in enumerate(sc.nodes):
            boot = now - 600 - rng.uniform(0, 3000)
            stats = NodeStats(spec.name, boot, memory_capacity=float(value(spec.memory)),
                              swap_capacity=float(value(spec.swap)) if spec.swap else 0.0)
            self.stats[spec.name] = stats
            kubelet = await self.fleet.add(spec.name, stats, phase=now + rng.uniform(0, max(sc.housekeeping_interval, 1)))
            node = self.store.create("nodes", node_object(spec, i, kubelet.port, now))
            kubelet.metrics_path = spec.annotations.get(METRICS_PATH_ANNOTATION)
            self.store.create("leases.coordination.k8s.io", lease_object(node, now))
            self.lifecycle.register_node(spec.name)
            self.heartbeats.add(spec.name)
            fault = sc.faults.get(spec.name)
            if fault:
                await kubelet.set_fault(fault)
        self._unsub.append(self.store.subscribe("nodes", self._on_node))

        self.lifecycle.start()
        self.controllers = WorkloadControllers(self.store, self.clock)
        self.controllers.start()
        self.scheduler = Scheduler(self.store, self.clock, events, delay=sc.scheduling_delay)
        self.scheduler.start()
        self.heartbeats.start()
        self.node_lifecycle = NodeLifecycleController(self.store, self.clock, events)
        self.node_lifecycle.start()
        self.taint_eviction = TaintEvictionController(self.store, self.clock, events)
        self.taint_eviction.start()
        self._parts = [self.heartbeats, self.node_lifecycle, self.taint_eviction, self.scheduler, self.controllers,
                       self.lifecycle]
        self._create_scenario_objects()
        self._schedule_node_events()
        self._sweep_events()

    def _sweep_events(self) -> None:
        """Expire Events past kube-apiserver's --event-ttl, once a simulated minute."""
        self.store.expire_events()
        self._event_sweep = self.clock.call_later(EVENT_SWEEP_SECONDS, self._sweep_events)

    def _schedule_node_events(self) -> None:
        for ev in self.scenario.node_events:
            self._timers.append(self.clock.call_later(ev.at, self._node_event, ev))

    def _cancel_timers(self) -> None:
        for t in self._timers:
            t.cancel()
        self._timers.clear()

    async def stop(self) -> None:
        self._cancel_timers()
        if self._event_sweep is not None:
            self._event_sweep.cancel()
            self._event_sweep = None
        for task in list(self._tasks):
            task.cancel()
        for u in self._unsub:
            u()
        self._unsub.clear()
        for part in self._parts:
            try:
                part.stop()
            except Exception:
                log.exception("stopping %s failed", type(part).__name__)
        self._parts.clear()
        if self.fleet is not None:
            await self.fleet.stop()
        if self.apiserver is not None:
            await self.apiserver.stop()
        if self._previous_hpa_features is not None:
            from sim.apiserver.strategy import configure_hpa

            configure_hpa(self._previous_hpa_features)
            self._previous_hpa_features = None

    def _write_metrics_kubeconfig(self) -> None:
        sa = self.store.try_get("serviceaccounts", "kube-system", "metrics-server")
        if sa is None:
            sa = self.store.create("serviceaccounts", {"apiVersion": "v1", "kind": "ServiceAccount",
                                                       "metadata": {"name": "metrics-server", "namespace": "kube-system",
                                                                    "labels": {"k8s-app": "metrics-server"}}})
        self.metrics_token = self.apiserver.issuer.issue("kube-system", "metrics-server", uid=sa["metadata"]["uid"],
                                                         expiration_seconds=10 * 365 * 86400)
        write_token_kubeconfig(self.metrics_kubeconfig, self.apiserver.url, self.pki.ca.cert_pem, "metrics-server",
                               self.metrics_token, namespace="kube-system")

    def _create_scenario_objects(self) -> None:
        for w in self.scenario.workloads:
            self._ensure_namespace(w.namespace)
            resource = "deployments.apps" if w.kind == "Deployment" else "statefulsets.apps"
            if self.store.try_get(resource, w.namespace, w.name) is None:
                self.store.create(resource, w.manifest(), owned=True)
        for hpa in self.scenario.hpas:
            ns = hpa["metadata"]["namespace"]
            self._ensure_namespace(ns)
            if self.store.try_get("horizontalpodautoscalers.autoscaling", ns, hpa["metadata"]["name"]) is None:
                self.store.create("horizontalpodautoscalers.autoscaling", hpa)

    def _ensure_namespace(self, ns: str) -> None:
        if self.store.try_get("namespaces", None, ns) is None:
            self.store.create("namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})

    def _on_node(self, etype: str, node: dict, old: dict | None) -> None:
        if self.fleet is None:
            return
        k = self.fleet.kubelets.get(node["metadata"]["name"])
        if k is not None and etype != "DELETED":
            k.metrics_path = (node["metadata"].get("annotations") or {}).get(METRICS_PATH_ANNOTATION)

    # --- load ----------------------------------------------------------------------------------

    def _workload_key(self, pod: dict) -> tuple[str, str] | None:
        md = pod["metadata"]
        ns = md.get("namespace", "default")
        for ref in md.get("ownerReferences") or ():
            if not ref.get("controller"):
                continue
            if ref.get("kind") == "StatefulSet":
                return ns, ref["name"]
            if ref.get("kind") == "ReplicaSet":
                rs = self.store.try_get("replicasets.apps", ns, ref["name"])
                for r2 in (rs or {}).get("metadata", {}).get("ownerReferences") or ():
                    if r2.get("controller") and r2.get("kind") == "Deployment":
                        return ns, r2["name"]
                return ns, ref["name"]
        return None

    def _workload_of(self, pod: dict) -> WorkloadLoad | None:
        key = self._workload_key(pod)
        if key is None:
            return None
        load = self.loads.get(key)
        if load is None:
            load = self.loads[key] = WorkloadLoad(key[0], key[1], DEFAULT_LOAD, self.clock.now())
        return load

    def _timing_of(self, pod: dict) -> PodTiming:
        key = self._workload_key(pod)
        if key is not None:
            spec = self.scenario.workload(*key)
            if spec is not None and spec.timing is not None:
                return spec.timing
        return self.scenario.timing

    def set_load(self, namespace: str, workload: str, model: LoadModel) -> None:
        """Change a workload's demand from now on (its relative time starts now unless
        ``model.origin`` is set)."""
        now = self.clock.now()
        load = self.loads.get((namespace, workload))
        if load is None:
            self.loads[(namespace, workload)] = WorkloadLoad(namespace, workload, model, now)
        else:
            load.set_model(model, now)

    # --- access --------------------------------------------------------------------------------

    def kubelet(self, node_name: str) -> EmulatedKubelet:
        if self.fleet is None or node_name not in self.fleet.kubelets:
            raise KeyError(f"no emulated kubelet for node {node_name!r}")
        return self.fleet.kubelets[node_name]

    # --- node failures -------------------------------------------------------------------------

    async def fail_node(self, name: str) -> None:
        """The node's kubelet stops: its Lease is no longer renewed, its HTTPS endpoint refuses
        connections and its pods' status is no longer updated (their containers keep running).
        After ``--node-monitor-grace-period`` the node lifecycle controller marks it NotReady.
        No-op when the node has already failed."""
        kubelet = self.kubelet(name)
        if name in self.failed:
            return
        self.failed[name] = kubelet.fault
        self.heartbeats.paused.add(name)
        self.lifecycle.stop_node(name)
        await kubelet.set_fault("stopped")
        log.info("node %s failed: its kubelet stopped", name)

    async def recover_node(self, name: str) -> None:
        """The node's kubelet comes back: it serves again (with the fault it had before, if any),
        renews its Lease, posts Ready=True and syncs its pods; the node lifecycle controller then
        removes the unreachable taints. No-op when the node has not failed."""
        kubelet = self.kubelet(name)
        previous = self.failed.pop(name, None)
        if previous is None:
            return
        await kubelet.set_fault(previous)
        self.heartbeats.paused.discard(name)
        node = self.store.get("nodes", None, name)
        self.events.emit(node, "Normal", "Starting", "Starting kubelet.", component="kubelet", host=name)
        for reason in self.heartbeats.post_status(name):
            self.events.emit(node, "Normal", reason, f"Node {name} status is now: {reason}", component="kubelet",
                             host=name)
        self.lifecycle.start_node(name)
        log.info("node %s recovered: its kubelet is back", name)

    def _node_event(self, ev: NodeEvent) -> None:
        action = self.fail_node if ev.action == "fail" else self.recover_node
        task = asyncio.get_running_loop().create_task(action(ev.node))
        self._tasks.add(task)

        def done(t: asyncio.Task) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("scenario node event %s %s failed: %s", ev.action, ev.node, t.exception())

        task.add_done_callback(done)

    async def register_metrics_api(self, port: int, ca_bundle_pem: bytes | None = None) -> None:
        """Route metrics.k8s.io (v1 and v1beta1) to 127.0.0.1:port (Service, Endpoints, APIServices)."""
        from sim.autoscaler_proc import register_metrics_apiservice

        register_metrics_apiservice(self.store, port, ca_bundle_pem)

    def restart_container(self, namespace: str, pod: str, container: str, **kw: Any) -> None:
        self.lifecycle.restart_container(namespace, pod, container, **kw)

    def scale(self, namespace: str, name: str, replicas: int, kind: str = "deployments.apps") -> None:
        self.store.mutate(kind, namespace, name, lambda o: o["spec"].__setitem__("replicas", replicas))


class ClusterThread(LoopThread):
    """An :class:`EmulatedCluster` (or a subclass: ``cls=RealCluster``) on its own event-loop
    thread, for tests and tools."""

    def __init__(self, scenario: Scenario, state_dir: Path, *, cls: type[EmulatedCluster] | None = None,
                 **kw: Any) -> None:
        super().__init__("sim-cluster")
        self.cluster = (cls or EmulatedCluster)(scenario, state_dir, **kw)

    @property
    def kubeconfig(self) -> Path:
        return self.cluster.admin_kubeconfig

    @property
    def metrics_kubeconfig(self) -> Path:
        return self.cluster.metrics_kubeconfig

    @property
    def store(self) -> Any:
        return self.cluster.store

    @property
    def clock(self) -> Clock:
        return self.cluster.clock

    def start(self) -> ClusterThread:
        self.start_loop()
        try:
            self.run(self.cluster.start(), timeout=300)
        except BaseException:
            self.stop()
            raise
        return self

    def advance(self, seconds: float) -> None:
        """Move a ManualClock forward, letting the cluster react (no-op guard for real clocks)."""
        clock = self.cluster.clock
        if not isinstance(clock, ManualClock):
            raise TypeError("advance() needs the cluster to run on a ManualClock")
        self.run(clock.advance_async(seconds), timeout=120)

    def set_load(self, namespace: str, workload: str, model: LoadModel) -> None:
        self.call(lambda: self.cluster.set_load(namespace, workload, model))

    def fail_node(self, name: str) -> None:
        """Stop the node's kubelet (see :meth:`EmulatedCluster.fail_node`); ``advance`` drives what follows."""
        self.run(self.cluster.fail_node(name))

    def recover_node(self, name: str) -> None:
        """Bring the node's kubelet back (see :meth:`EmulatedCluster.recover_node`)."""
        self.run(self.cluster.recover_node(name))

    def stop(self) -> None:
        if self.loop.is_running():
            try:
                self.run(self.cluster.stop(), timeout=60)
            except Exception:
                log.exception("stopping the emulated cluster failed")
            self.stop_loop()

    def __enter__(self) -> ClusterThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_in_thread(scenario: Scenario, state_dir: Path, **kw: Any) -> ClusterThread:
    """Start an emulated cluster on a background thread; ``.stop()`` (or ``with``) ends it."""
    return ClusterThread(scenario, state_dir, **kw).start()


__all__ = ["ClusterThread", "EmulatedCluster", "run_in_thread"]
