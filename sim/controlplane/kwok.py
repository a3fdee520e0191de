"""Run KWOK (the upstream "Kubernetes WithOut Kubelet" controller) against a RealCluster.

KWOK is a kubelet emulation neither we nor metrics-server wrote: both metrics pipelines scraping
its nodes must agree with each other and with the usage KWOK is told to report.

What runs here:

* the ``kwok`` binary as a child process (:class:`Program`, log in ``<workdir>/kwok.log``),
  managing only the Nodes annotated ``kwok.x-k8s.io/node: fake``, which the caller creates with
  :meth:`Kwok.add_node` (KWOK does not create nodes itself);
* its HTTPS server on ``127.0.0.1:<port>`` only, with a serving certificate from the cluster CA,
  so metrics-server and ``autoscaler run`` verify it with ``--kubelet-certificate-authority``
  as they verify any kubelet. (KWOK's server does no authentication: the bearer tokens the
  scrapers send are ignored.)
* flags for the node IP (127.0.0.1) and port KWOK puts in the Node status and listens on (a
  ``KwokConfiguration`` document in ``--config`` would replace KWOK's defaults wholesale, without
  defaulting the fields it leaves out);
* a configuration file (``<workdir>/kwok.yaml``) written from Python dicts, holding:

  - node stages: initialise a Node to Ready (keeping the addresses and capacity we gave it,
    ``daemonEndpoints.kubeletEndpoint.Port`` = KWOK's port); KWOK renews the node Leases
    (``--node-lease-duration-seconds``), which keeps the nodes Ready;
  - pod stages: bind → Running and Ready (container statuses, pod IP from KWOK's CIDR), and
    deletion (graceful deletion is finished at once);
  - a ``Metric`` serving the kubelet's ``/metrics/resource`` families per node at
    ``/metrics/nodes/<node>/metrics/resource`` (the path the Node's
    ``metrics.k8s.io/resource-metrics-path`` annotation names), the container start time in Unix
    seconds (a kubelet's meaning), CPU as a cumulative counter and memory as the working set;
  - a ``ClusterResourceUsage`` giving every container a fixed CPU and memory usage by container
    name (:class:`Usage`), so the values both servers must report are known in advance. Node
    usage is the sum over the node's pods.

Credentials: KWOK talks to kube-apiserver with a client certificate of its own (user
``kwok-controller``) in group ``system:masters``, i.e. with the admin's privileges; it patches
status of Nodes and Pods, deletes Pods and writes Leases, and this is a test cluster on
loopback, so no narrower RBAC is set up.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from autoscaler.k8s.rest import seg
from sim.controlplane import binaries
from sim.controlplane.processes import Program, free_port

#: KWOK manages the Nodes carrying this annotation (its conventional selector)
MANAGED_ANNOTATION = "kwok.x-k8s.io/node"
MANAGED_VALUE = "fake"
#: where metrics-server (and our scraper) read /metrics/resource from, instead of the default path
METRICS_PATH_ANNOTATION = "metrics.k8s.io/resource-metrics-path"
#: KWOK nodes run no real containers: ordinary pods must tolerate this taint to land there
TAINT = {"key": MANAGED_ANNOTATION, "value": MANAGED_VALUE, "effect": "NoSchedule"}
TOLERATION = {"key": MANAGED_ANNOTATION, "operator": "Exists", "effect": "NoSchedule"}
LABEL = "type"
LABEL_VALUE = "kwok"

_STAGE_API = "kwok.x-k8s.io/v1alpha1"
LEASE_SECONDS = 40  # a kubelet's default nodeLeaseDurationSeconds


@dataclass(frozen=True)
class Usage:
    """Fixed usage of the containers named ``containers`` (empty: every other container)."""

    cpu: str
    memory: str
    containers: tuple[str, ...] = ()


def metrics_path(node: str) -> str:
    return f"/metrics/nodes/{node}/metrics/resource"


# --- the configuration file ----------------------------------------------------------------------

def _stage(name: str, kind: str, selector: list[dict], nxt: dict) -> dict:
    return {"apiVersion": _STAGE_API, "kind": "Stage", "metadata": {"name": name},
            "spec": {"resourceRef": {"apiGroup": "v1", "kind": kind},
                     "selector": {"matchExpressions": selector}, "next": nxt}}


_READY = '.status.conditions.[] | select( .type == "Ready" ) | .status'

# Go templates, rendered by KWOK against the object (our own minimal versions of its stages)
_NODE_STATUS = """\
{{ $now := Now }}
conditions:
{{ range NodeConditions }}
- lastHeartbeatTime: {{ $now | Quote }}
  lastTransitionTime: {{ $now | Quote }}
  message: {{ .message | Quote }}
  reason: {{ .reason | Quote }}
  status: {{ .status | Quote }}
  type: {{ .type | Quote }}
{{ end }}
addresses:
{{ with .status.addresses }}
{{ YAML . 1 }}
{{ else }}
- address: {{ NodeIP | Quote }}
  type: InternalIP
{{ end }}
daemonEndpoints:
  kubeletEndpoint:
    Port: {{ NodePort }}
allocatable:
{{ YAML .status.allocatable 1 }}
capacity:
{{ YAML .status.capacity 1 }}
nodeInfo:
  architecture: amd64
  operatingSystem: linux
  kubeletVersion: {{ printf "kwok-%s" Version | Quote }}
  containerRuntimeVersion: {{ printf "kwok-%s" Version | Quote }}
  kernelVersion: ""
  kubeProxyVersion: ""
  osImage: ""
  machineID: ""
  systemUUID: ""
  bootID: ""
phase: Running
"""

_POD_RUNNING = """\
{{ $now := Now }}
conditions:
{{ range list "PodScheduled" "Initialized" "ContainersReady" "Ready" }}
- lastTransitionTime: {{ $now | Quote }}
  status: "True"
  type: {{ . }}
{{ end }}
containerStatuses:
{{ range .spec.containers }}
- image: {{ .image | Quote }}
  imageID: ""
  name: {{ .name | Quote }}
  ready: true
  started: true
  restartCount: 0
  state:
    running:
      startedAt: {{ $now | Quote }}
{{ end }}
{{ with NodeIPsWith .spec.nodeName }}
hostIP: {{ index . 0 | Quote }}
hostIPs:
{{ range . }}
- ip: {{ . | Quote }}
{{ end }}
{{ end }}
{{ with PodIPsWith .spec.nodeName false .metadata.uid .metadata.name .metadata.namespace }}
podIP: {{ index . 0 | Quote }}
podIPs:
{{ range . }}
- ip: {{ . | Quote }}
{{ end }}
{{ end }}
phase: Running
startTime: {{ $now | Quote }}
"""


def _container_metric(name: str, kind: str, value: str, help_: str) -> dict:
    return {"name": name, "dimension": "container", "kind": kind, "help": help_, "value": value,
            "labels": [{"name": "container", "value": "container.name"},
                       {"name": "namespace", "value": "pod.metadata.namespace"},
                       {"name": "pod", "value": "pod.metadata.name"}]}


def resource_metric() -> dict:
    """The kubelet's ``/metrics/resource`` families metrics-server reads, per node."""
    return {"apiVersion": _STAGE_API, "kind": "Metric", "metadata": {"name": "resource"},
            "spec": {"path": metrics_path("{nodeName}"), "metrics": [
                {"name": "scrape_error", "dimension": "node", "kind": "gauge", "value": "0",
                 "help": "1 if there was an error while getting container metrics, 0 otherwise"},
                {"name": "node_cpu_usage_seconds_total", "dimension": "node", "kind": "counter",
                 "value": 'node.CumulativeUsage("cpu")',
                 "help": "Cumulative cpu time consumed by the node in core-seconds"},
                {"name": "node_memory_working_set_bytes", "dimension": "node", "kind": "gauge",
                 "value": 'node.Usage("memory")', "help": "Current working set of the node in bytes"},
                _container_metric("container_start_time_seconds", "gauge",
                                  "UnixSecond(pod.metadata.creationTimestamp)",
                                  "Start time of the container since unix epoch in seconds"),
                _container_metric("container_cpu_usage_seconds_total", "counter",
                                  'pod.CumulativeUsage("cpu", container.name)',
                                  "Cumulative cpu time consumed by the container in core-seconds"),
                _container_metric("container_memory_working_set_bytes", "gauge",
                                  'pod.Usage("memory", container.name)',
                                  "Current working set of the container in bytes"),
            ]}}


def config_documents(usages: list[Usage]) -> list[dict]:
    node_selector = [{"key": _READY, "operator": "NotIn", "values": ["True"]}]
    pending = [{"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"},
               {"key": ".status.phase", "operator": "In", "values": ["Pending"]}]
    deleting = [{"key": ".metadata.deletionTimestamp", "operator": "Exists"}]
    usage_list = []
    for u in usages:
        entry: dict[str, Any] = {"usage": {"cpu": {"value": u.cpu}, "memory": {"value": u.memory}}}
        if u.containers:
            entry["containers"] = list(u.containers)
        usage_list.append(entry)
    return [
        _stage("node-initialize", "Node", node_selector, {"statusTemplate": _NODE_STATUS}),
        _stage("pod-running", "Pod", pending, {"statusTemplate": _POD_RUNNING}),
        _stage("pod-delete", "Pod", deleting, {"delete": True}),
        resource_metric(),
        {"apiVersion": _STAGE_API, "kind": "ClusterResourceUsage", "metadata": {"name": "fixed"},
         "spec": {"usages": usage_list}},
    ]


# --- the process ---------------------------------------------------------------------------------

@dataclass
class Kwok:
    program: Program
    port: int
    workdir: Path
    cluster: Any
    nodes: list[str] = field(default_factory=list)

    def node_object(self, name: str, *, cpu: str = "8", memory: str = "32Gi", pods: str = "110") -> dict:
        """A Node KWOK manages, scraped at 127.0.0.1:<KWOK's port><metrics_path(name)>."""
        resources = {"cpu": cpu, "memory": memory, "pods": pods}
        return {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name,
                         "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                    "kubernetes.io/arch": "amd64", LABEL: LABEL_VALUE},
                         "annotations": {MANAGED_ANNOTATION: MANAGED_VALUE, "node.alpha.kubernetes.io/ttl": "0",
                                         METRICS_PATH_ANNOTATION: metrics_path(name)}},
            "spec": {"taints": [dict(TAINT)]},
            "status": {"capacity": resources, "allocatable": dict(resources),
                       "addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                                     {"type": "Hostname", "address": name}],
                       "daemonEndpoints": {"kubeletEndpoint": {"Port": self.port}}},
        }

    async def add_node(self, name: str, **resources: str) -> dict:
        """Create a Node for KWOK to manage (it turns Ready once KWOK has seen it)."""
        created = await self.cluster.admin.post("/api/v1/nodes", self.node_object(name, **resources))
        self.nodes.append(name)
        return created

    async def node_ready(self, name: str) -> bool:
        node = await self.cluster.admin.get(f"/api/v1/nodes/{seg(name)}")
        return any(c.get("type") == "Ready" and c.get("status") == "True"
                   for c in (node.get("status") or {}).get("conditions") or ())

    def ssl_context(self) -> ssl.SSLContext:
        """Verifies KWOK's serving certificate with the cluster CA (no client certificate)."""
        return ssl.create_default_context(cadata=self.cluster.pki.ca.cert_pem.decode())

    def stop(self) -> None:
        self.program.stop()


async def start_kwok(cluster: Any, workdir: Path, usages: list[Usage], *, extra_args: list[str] | None = None,
                     binaries_dir: str | None = None, timeout: float = 60.0) -> Kwok:
    """Start KWOK against ``cluster`` (a started RealCluster); returns once its server is healthy."""
    workdir.mkdir(parents=True, exist_ok=True)
    pki = cluster.pki
    serving = pki.issue_serving("kwok", dns_names=("localhost",), ip_addresses=("127.0.0.1",))
    cert, key = workdir / "tls.crt", workdir / "tls.key"
    serving.write(cert, key)
    kubeconfig = cluster.control_plane.kubeconfig_for("kwok", "kwok-controller", ("system:masters",))
    port = free_port()
    config = workdir / "kwok.yaml"
    config.write_text(yaml.safe_dump_all(config_documents(usages), sort_keys=False))
    prog = Program("kwok", [
        str(binaries.find("kwok", binaries_dir)),
        f"--kubeconfig={kubeconfig}", f"--config={config}",
        f"--manage-nodes-with-annotation-selector={MANAGED_ANNOTATION}={MANAGED_VALUE}",
        "--node-ip=127.0.0.1", f"--node-port={port}", f"--server-address=127.0.0.1:{port}",
        # renew the node Leases as a kubelet does (KWOK's own default is 0: no Leases, and the
        # node lifecycle controller then marks the nodes unreachable after its grace period)
        f"--node-lease-duration-seconds={LEASE_SECONDS}",
        f"--tls-cert-file={cert}", f"--tls-private-key-file={key}",
        *(extra_args or []),
    ], workdir / "kwok.log")
    # HOME: KWOK reads ~/.kwok/kwok.yaml by default; keep it (and anything it writes) in workdir
    prog.start(env={"HOME": str(workdir)})
    kwok = Kwok(prog, port, workdir, cluster)
    try:
        await prog.wait_healthy(f"https://127.0.0.1:{port}/healthz", kwok.ssl_context(), timeout)
    except BaseException:
        prog.stop()
        raise
    return kwok


def expected_usage(usages: list[Usage], container: str) -> Usage | None:
    """The usage KWOK reports for ``container`` (first named match, else the first default)."""
    named = next((u for u in usages if container in u.containers), None)
    return named or next((u for u in usages if not u.containers), None)

