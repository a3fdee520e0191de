"""Which URL to scrape for a Node: address by preferred type, port, and path (metrics-server rules)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from autoscaler.scraper.options import ScrapeOptions

RESOURCE_PATH = "/metrics/resource"
SUMMARY_PATH = "/stats/summary?only_cpu_and_memory=true"
RESOURCE_PATH_ANNOTATION = "metrics.k8s.io/resource-metrics-path"


class TargetError(ValueError):
    """The node cannot be scraped (no usable address); the message says why."""


@dataclass(frozen=True, slots=True)
class Target:
    node: str
    url: str
    #: the format the URL serves: "summary" (Summary API JSON) or "resource" (Prometheus text)
    source: str


def node_address(node: dict, preferred: list[str]) -> str:
    """The first address of the first preferred type present in ``status.addresses``."""
    addresses = ((node.get("status") or {}).get("addresses")) or []
    for kind in preferred:
        for addr in addresses:
            if addr.get("type") == kind and addr.get("address"):
                return addr["address"]
    raise TargetError(f"no address matched types [{' '.join(preferred)}]")


def node_port(node: dict, opts: ScrapeOptions) -> int:
    if opts.kubelet_use_node_status_port:
        endpoint = (((node.get("status") or {}).get("daemonEndpoints") or {}).get("kubeletEndpoint") or {})
        port = endpoint.get("Port") or endpoint.get("port") or 0  # the API spells it "Port"
        if isinstance(port, int) and port > 0:
            return port
    return opts.kubelet_port


def node_target(node: dict, opts: ScrapeOptions, apiserver: str | None = None) -> Target:
    """The kubelet URL of ``node``; with ``apiserver`` (``--kubelet-via-apiserver``) the same path
    through that API server's node proxy, which finds the kubelet's address and port itself.

    A node whose ``metrics.k8s.io/resource-metrics-path`` annotation names a path is read there in
    the resource format whatever ``--kubelet-source`` says, as metrics-server reads it: the nodes
    that carry it (KWOK's, virtual kubelets) serve no Summary API."""
    meta = node.get("metadata") or {}
    name = meta.get("name") or ""
    annotated = (meta.get("annotations") or {}).get(RESOURCE_PATH_ANNOTATION)
    if opts.kubelet_source == "summary" and not annotated:
        path, source = SUMMARY_PATH, "summary"
    else:
        path, source = annotated or RESOURCE_PATH, "resource"
        if not path.startswith("/"):
            path = "/" + path
    if apiserver is not None:
        if not name:
            raise TargetError("node has no name")
        return Target(name, f"{apiserver.rstrip('/')}/api/v1/nodes/{quote(name, safe='')}/proxy{path}", source)
    host = node_address(node, opts.kubelet_preferred_address_types)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # IPv6 literal
    scheme = "http" if opts.deprecated_kubelet_completely_insecure else "https"
    return Target(name, f"{scheme}://{host}:{node_port(node, opts)}{path}", source)


def slim_node(node: dict) -> dict:
    """Only what scraping needs (name, labels, the path annotation, addresses, kubelet port):
    the collector's node cache then costs a few hundred bytes per node instead of several KB."""
    meta = node.get("metadata") or {}
    status = node.get("status") or {}
    annotations = meta.get("annotations") or {}
    slim_meta = {k: meta[k] for k in ("name", "resourceVersion", "labels", "uid") if k in meta}
    if RESOURCE_PATH_ANNOTATION in annotations:
        slim_meta["annotations"] = {RESOURCE_PATH_ANNOTATION: annotations[RESOURCE_PATH_ANNOTATION]}
    return {
        "metadata": slim_meta,
        "status": {k: status[k] for k in ("addresses", "daemonEndpoints") if k in status},
    }
