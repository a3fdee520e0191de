"""A scenario on the real control plane: upstream kube-apiserver, kube-controller-manager and
kube-scheduler, with our kubelets joined as hollow nodes (as kubemark and KWOK do; no container
runtime runs here).

Each hollow node registers its Node with its own ``system:node:<name>`` certificate, keeps its
Lease and Ready status fresh, brings the pods the real scheduler binds to it to Running and Ready
with the scenario's delays, finishes their graceful deletion, and serves ``/stats/summary`` and
``/metrics/resource`` over HTTPS driven by the workload's load model. Its secure port
authenticates callers with TokenReview and authorizes them with SubjectAccessReview against the
real API server, as a kubelet with webhook authentication and authorization does. The real
deployment controller, ReplicaSet controller, scheduler and HPA controller act on those pods.

Node labels in the ``kubernetes.io``/``k8s.io`` namespaces that NodeRestriction forbids a kubelet to
set on itself (``node-role.kubernetes.io/...``) are added afterwards with the admin's credentials,
as kubeadm adds the control-plane role.
"""

from __future__ import annotations

import asyncio
import logging
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from autoscaler.k8s.kubeconfig import KubeConfig
from autoscaler.k8s.quantity import value
from autoscaler.k8s.rest import STRATEGIC_MERGE_PATCH, KubeClient, KubeError, seg
from sim.apiserver.auth import UserInfo
from sim.clock import Clock
from sim.cluster import EmulatedCluster
from sim.controlplane.controlplane import ControlPlane, ControlPlaneOptions
from sim.controlplane.mirror import ApiMirror, object_path
from sim.kubelet.pods import PodLifecycle
from sim.kubelet.server import KubeletAuth, KubeletFleet, compact_tls_buffers
from sim.kubelet.stats import NodeStats
from sim.loadmodel import WorkloadLoad
from sim.nodes import NodeHeartbeats, lease_object, node_object
from sim.pki import write_token_kubeconfig
from sim.scenario import Scenario
from sim.workloads import EventRecorder

if TYPE_CHECKING:
    from sim.external_metrics import ExternalMetricsServer

log = logging.getLogger(__name__)

MANIFESTS = Path(__file__).resolve().parent.parent.parent / "manifests" / "base"
#: the kubelet may set these labels in the kubernetes.io / k8s.io namespaces on its own Node
_KUBELET_LABELS = {
    "kubernetes.io/hostname", "kubernetes.io/arch", "kubernetes.io/os", "beta.kubernetes.io/arch",
    "beta.kubernetes.io/os", "beta.kubernetes.io/instance-type", "node.kubernetes.io/instance-type",
    "topology.kubernetes.io/region", "topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
}
_KUBELET_LABEL_DOMAINS = ("kubelet.kubernetes.io", "node.kubernetes.io")
#: apiVersion/kind of the objects a scenario or our manifests create → API collection
_COLLECTIONS = {
    ("v1", "Namespace"): ("/api/v1", "namespaces", False),
    ("v1", "ServiceAccount"): ("/api/v1", "serviceaccounts", True),
    ("v1", "Service"): ("/api/v1", "services", True),
    ("apps/v1", "Deployment"): ("/apis/apps/v1", "deployments", True),
    ("apps/v1", "StatefulSet"): ("/apis/apps/v1", "statefulsets", True),
    ("autoscaling/v2", "HorizontalPodAutoscaler"): ("/apis/autoscaling/v2", "horizontalpodautoscalers", True),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): ("/apis/rbac.authorization.k8s.io/v1", "clusterroles", False),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"):
        ("/apis/rbac.authorization.k8s.io/v1", "clusterrolebindings", False),
    ("rbac.authorization.k8s.io/v1", "Role"): ("/apis/rbac.authorization.k8s.io/v1", "roles", True),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): ("/apis/rbac.authorization.k8s.io/v1", "rolebindings", True),
    ("apiregistration.k8s.io/v1", "APIService"): ("/apis/apiregistration.k8s.io/v1", "apiservices", False),
}


def collection_path(obj: dict) -> str:
    key = (obj.get("apiVersion"), obj.get("kind"))
    if key not in _COLLECTIONS:
        raise ValueError(f"cannot create {key[1]} ({key[0]}) on the real control plane")
    prefix, plural, namespaced = _COLLECTIONS[key]
    ns = (obj.get("metadata") or {}).get("namespace") or "default"
    return f"{prefix}/namespaces/{seg(ns)}/{plural}" if namespaced else f"{prefix}/{plural}"


def kubelet_may_set(label: str) -> bool:
    """NodeRestriction's rule for labels a kubelet sets on its own Node."""
    domain = label.split("/", 1)[0] if "/" in label else ""
    if label in _KUBELET_LABELS or domain.endswith(_KUBELET_LABEL_DOMAINS):
        return True
    return not (domain.endswith(("kubernetes.io", "k8s.io")))


class RealCluster(EmulatedCluster):
    """The upstream control plane plus our hollow nodes, driven by a scenario."""

    def __init__(self, scenario: Scenario, state_dir: Path, *, clock: Clock | None = None,
                 options: ControlPlaneOptions | None = None) -> None:
        super().__init__(scenario, state_dir, clock=clock)
        self.control_plane = ControlPlane(self.state_dir, options)
        self.admin_kubeconfig = self.control_plane.admin_kubeconfig
        self.node_clients: dict[str, KubeClient] = {}
        self.mirror: ApiMirror | None = None
        self.external_metrics: ExternalMetricsServer | None = None

    @property
    def url(self) -> str:
        return self.control_plane.url

    @property
    def admin(self) -> KubeClient:
        assert self.control_plane.admin is not None
        return self.control_plane.admin

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        sc = self.scenario
        if sc.authorization is not None:
            raise ValueError("scenario authorization policies are for the emulated API server; "
                             "the real control plane authorizes with RBAC")
        cp = self.control_plane
        await cp.start()
        self.pki = cp.pki
        assert self.pki is not None
        self.started_at = now = self.clock.now()
        await self._apply_manifest_rbac()
        await self._write_metrics_kubeconfig_real()

        serving = self.pki.issue_serving("kubelet", dns_names=("localhost",), ip_addresses=("127.0.0.1",))
        crt, key = self.pki.path("kubelet.crt"), self.pki.path("kubelet.key")
        serving.write(crt, key)
        for spec in sc.nodes:
            self.node_clients[spec.name] = self._node_client(spec.name)
        reviewer = self.node_clients[sc.nodes[0].name] if sc.nodes else self.admin
        auth = KubeletAuth(
            lambda token: self._token_review(reviewer, token), lambda *a: self._access_review(reviewer, *a),
            lambda cn, groups: UserInfo(cn, groups=groups).with_authenticated(), self.clock)
        if len(sc.nodes) >= 500:
            compact_tls_buffers()
        self.fleet = KubeletFleet(crt, key, self.pki.ca.cert_pem, auth, self.clock,
                                  housekeeping_interval=sc.housekeeping_interval)
        self.mirror = self.store = ApiMirror(KubeConfig(host=self.url, ca_data=self.pki.ca.cert_pem,
                                                        client_cert_file=str(self.pki.path("admin.crt")),
                                                        client_key_file=str(self.pki.path("admin.key"))),
                                             self.node_clients.__getitem__)
        self.events = EventRecorder(self.mirror, self.clock,
                                    enabled=sc.events if sc.events is not None else len(sc.nodes) <= 100)
        for w in sc.workloads:
            if w.load.origin is None:
                w.load.origin = now
            self.loads[(w.namespace, w.name)] = WorkloadLoad(w.namespace, w.name, w.load, now)
        await self.mirror.start()
        self.lifecycle = PodLifecycle(self.mirror, self.clock, self.events, self.stats.get, self._workload_of,
                                      self._timing_of, seed=sc.seed)
        self.heartbeats = NodeHeartbeats(self.mirror, self.clock)
        rng = random.Random(sc.seed)
        sem = asyncio.Semaphore(32)

        async def register(i: int) -> None:
            spec = sc.nodes[i]
            stats = NodeStats(spec.name, now - 600 - rng.uniform(0, 3000), memory_capacity=float(value(spec.memory)),
                              swap_capacity=float(value(spec.swap)) if spec.swap else 0.0)
            self.stats[spec.name] = stats
            kubelet = await self.fleet.add(spec.name, stats,  # type: ignore[union-attr]
                                           phase=now + rng.uniform(0, max(sc.housekeeping_interval, 1)))
            kubelet.metrics_path = spec.annotations.get("metrics.k8s.io/resource-metrics-path")
            async with sem:
                await self._register_node(spec, i, kubelet.port, now)
            self.lifecycle.register_node(spec.name)
            self.heartbeats.add(spec.name)
            fault = sc.faults.get(spec.name)
            if fault:
                await kubelet.set_fault(fault)

        await asyncio.gather(*(register(i) for i in range(len(sc.nodes))))
        self.lifecycle.start()
        self.heartbeats.start()
        self._parts = [self.heartbeats, self.lifecycle]
        if sc.external_metrics:  # before the HPAs, so their first sync finds the API
            await self._serve_external_metrics(now)
        await self._create_scenario_objects_real()
        self._schedule_node_events()

    async def stop(self) -> None:
        self._cancel_timers()
        for part in self._parts:
            part.stop()
        self._parts.clear()
        if self.external_metrics is not None:
            await self.external_metrics.stop()
        if self.mirror is not None:
            await self.mirror.stop()
        if self.fleet is not None:
            await self.fleet.stop()
        for client in self.node_clients.values():
            await client.close()
        await self.control_plane.stop()

    # --- credentials ---------------------------------------------------------------------------

    def _node_client(self, name: str) -> KubeClient:
        assert self.pki is not None
        user = f"system:node:{name}"
        crt, key = self.pki.directory / "nodes" / f"{name}.crt", self.pki.directory / "nodes" / f"{name}.key"
        self.pki.issue_client(user, ("system:nodes",)).write(crt, key)
        kube = KubeConfig(host=self.url, ca_data=self.pki.ca.cert_pem, client_cert_file=str(crt),
                          client_key_file=str(key))
        return KubeClient(kube, user_agent=f"kubelet/hollow ({name})", connections=4)

    async def _write_metrics_kubeconfig_real(self) -> None:
        """A token of ServiceAccount kube-system/metrics-server (TokenRequest, one year)."""
        assert self.pki is not None
        path = "/api/v1/namespaces/kube-system/serviceaccounts/metrics-server"
        try:
            await self.admin.get(path)
        except KubeError as exc:
            if not exc.not_found:
                raise
            await self.admin.post("/api/v1/namespaces/kube-system/serviceaccounts", {
                "apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": "metrics-server", "namespace": "kube-system"}})
        review = await self.admin.post(f"{path}/token", {
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"expirationSeconds": 365 * 86400}})
        self.metrics_token = review["status"]["token"]
        write_token_kubeconfig(self.metrics_kubeconfig, self.url, self.pki.ca.cert_pem, "metrics-server",
                               self.metrics_token, namespace="kube-system")

    async def _apply_manifest_rbac(self) -> None:
        """Our manifests' ServiceAccount and RBAC (what ``kubectl apply -k manifests/`` grants)."""
        for name in ("rbac.yaml", "controller-rbac.yaml"):
            path = MANIFESTS / name
            if not path.is_file():
                raise FileNotFoundError(f"{path} is missing: the real control plane grants the metrics pipeline "
                                        f"what our manifests grant, so it needs a source checkout")
            for doc in yaml.safe_load_all(path.read_text()):
                if doc:
                    await self.create(doc)

    async def create(self, obj: dict) -> dict | None:
        """Create ``obj`` with the admin's credentials; None when it exists already."""
        try:
            return await self.admin.post(collection_path(obj), obj)
        except KubeError as exc:
            if exc.code == 409 and exc.reason == "AlreadyExists":
                return None
            raise

    # --- kubelet secure port: webhook authentication and authorization --------------------------

    @staticmethod
    async def _token_review(client: KubeClient, token: str) -> UserInfo | None:
        try:
            review = await client.post("/apis/authentication.k8s.io/v1/tokenreviews", {
                "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}})
        except KubeError as exc:
            log.warning("kubelet TokenReview failed: %s", exc.message)
            return None
        status = review.get("status") or {}
        if not status.get("authenticated"):
            return None
        u = status.get("user") or {}
        return UserInfo(u.get("username", ""), u.get("uid", ""), tuple(u.get("groups") or ()),
                        {k: tuple(v) for k, v in (u.get("extra") or {}).items()})

    @staticmethod
    async def _access_review(client: KubeClient, user: UserInfo, verb: str, sub: str, node: str) -> tuple[bool, str]:
        spec: dict[str, Any] = {"user": user.username, "groups": list(user.groups),
                                "resourceAttributes": {"verb": verb, "resource": "nodes", "subresource": sub,
                                                       "name": node, "version": "v1"}}
        if user.uid:
            spec["uid"] = user.uid
        if user.extra:
            spec["extra"] = {k: list(v) for k, v in user.extra.items()}
        try:
            review = await client.post("/apis/authorization.k8s.io/v1/subjectaccessreviews", {
                "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec})
        except KubeError as exc:
            return False, exc.message
        status = review.get("status") or {}
        return bool(status.get("allowed")), str(status.get("reason") or "")

    # --- objects -------------------------------------------------------------------------------

    async def _register_node(self, spec: Any, index: int, port: int, now: float) -> None:
        node = node_object(spec, index, port, now)
        labels = node["metadata"]["labels"]
        later = {k: labels.pop(k) for k in list(labels) if not kubelet_may_set(k)}
        client = self.node_clients[spec.name]
        created = await client.post("/api/v1/nodes", node)
        if later:
            created = await self.admin.patch(f"/api/v1/nodes/{seg(spec.name)}", {"metadata": {"labels": later}},
                                             content_type=STRATEGIC_MERGE_PATCH)
        lease = await client.post(object_path("leases.coordination.k8s.io", "kube-node-lease"),
                                  lease_object(created, now))
        assert self.mirror is not None
        self.mirror.remember("nodes", created)
        self.mirror.remember("leases.coordination.k8s.io", lease)

    async def _create_scenario_objects_real(self) -> None:
        for w in self.scenario.workloads:
            await self.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": w.namespace}})
            await self.create(w.manifest())
        for hpa in self.scenario.hpas:
            await self.create({"apiVersion": "v1", "kind": "Namespace",
                               "metadata": {"name": hpa["metadata"]["namespace"]}})
            await self.create(hpa)

    def _workload_key(self, pod: dict) -> tuple[str, str] | None:
        """The Deployment of a ReplicaSet is read off the names: the deployment controller names
        its ReplicaSets ``<deployment>-<pod-template-hash>`` and stamps that hash on the pods."""
        md = pod["metadata"]
        ns = md.get("namespace", "default")
        for ref in md.get("ownerReferences") or ():
            if not ref.get("controller"):
                continue
            if ref.get("kind") == "ReplicaSet":
                suffix = "-" + (md.get("labels") or {}).get("pod-template-hash", "\0")
                name = ref["name"]
                return ns, name[: -len(suffix)] if name.endswith(suffix) else name
            if ref.get("kind") == "StatefulSet":
                return ns, ref["name"]
        return None

    # --- aggregated APIs -----------------------------------------------------------------------

    async def _serve_external_metrics(self, origin: float) -> None:
        """Serve the scenario's external metrics and register them as APIService
        v1beta1.external.metrics.k8s.io, trusting the front proxy kube-apiserver publishes in
        kube-system/extension-apiserver-authentication (as an extension API server reads it)."""
        import base64
        import ssl

        from autoscaler.server.authn import Authenticator, requestheader_from_configmap
        from autoscaler.server.authz import Authorizer
        from sim.external_metrics import SERVICE_NAME, SERVICE_NAMESPACE, ExternalMetricsServer, registration

        assert self.pki is not None
        cm = await self.admin.get("/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication")
        data = cm.get("data") or {}
        authn = Authenticator(requestheader=requestheader_from_configmap(data),
                              client_ca_pem=(data.get("client-ca-file") or "").encode(), token_reviewer=self.admin.post)
        crt, key = self.pki.directory / "external-metrics.crt", self.pki.directory / "external-metrics.key"
        self.pki.issue_serving(SERVICE_NAME, dns_names=(f"{SERVICE_NAME}.{SERVICE_NAMESPACE}.svc", "localhost"),
                               ip_addresses=("127.0.0.1",)).write(crt, key)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(crt), str(key))
        ctx.load_verify_locations(cadata=authn.client_ca_bundle().decode())
        ctx.verify_mode = ssl.CERT_OPTIONAL
        server = ExternalMetricsServer(self.scenario.external_metrics, ctx, authn, Authorizer(self.admin.post),
                                       self.clock.now, origin)
        await server.start()
        self.external_metrics = server
        for obj in registration(server.port, base64.b64encode(self.pki.ca.cert_pem).decode()):
            await self.create(obj)
        await self.control_plane.route_service(SERVICE_NAMESPACE, SERVICE_NAME, "https", server.port)
        await self._wait_apiservice_available(registration(0, "")[1]["metadata"]["name"])

    async def _wait_apiservice_available(self, name: str, timeout: float = 60.0) -> None:
        deadline = self.clock.now() + timeout
        while True:
            svc = await self.admin.get(f"/apis/apiregistration.k8s.io/v1/apiservices/{seg(name)}")
            conds = (svc.get("status") or {}).get("conditions") or []
            available = next((c for c in conds if c.get("type") == "Available"), {})
            if available.get("status") == "True":
                return
            if self.clock.now() > deadline:
                raise TimeoutError(f"APIService {name} not Available after {timeout:g} s: "
                                   f"{available.get('reason')}: {available.get('message')}")
            await asyncio.sleep(0.2)

    async def register_metrics_api(self, port: int, ca_bundle_pem: bytes) -> None:
        """The Service (no selector), its EndpointSlice to 127.0.0.1:port (written to etcd) and the
        APIServices v1.metrics.k8s.io and v1beta1.metrics.k8s.io, as `autoscaler sim up
        --with-autoscaler` registers them."""
        from sim.autoscaler_proc import SERVICE_NAME, SERVICE_NAMESPACE, metrics_registration

        for resource, obj in metrics_registration(port, ca_bundle_pem):
            if resource == "endpoints":
                continue
            if resource == "services":
                obj["spec"].pop("selector", None)
                obj["spec"]["ports"][0]["targetPort"] = port
            await self.create(obj)
        await self.control_plane.route_service(SERVICE_NAMESPACE, SERVICE_NAME, "https", port)
