"""Scrape options and their command-line flags (metrics-server's names, defaults and help texts).

Defaults follow the shipped metrics-server manifests where they differ from its code defaults
(``--metric-resolution=15s``, ``--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname``),
since those are what clusters actually run. Flags that metrics-server lacks are marked "(ours)".
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from autoscaler.k8s.selectors import SelectorError, parse_label_selector
from autoscaler.k8s.timefmt import duration_flag, format_duration

ADDRESS_TYPES = ("Hostname", "InternalDNS", "InternalIP", "ExternalDNS", "ExternalIP")
SOURCES = ("summary", "resource")
MIN_RESOLUTION = 10.0
MAX_WAVE_INTERVAL = 4.0  # the longest start stagger; a larger interval would put every node in one wave


@dataclass
class ScrapeOptions:
    """Field names are the flag names with underscores."""

    metric_resolution: float = 15.0
    metric_history: float = 900.0
    kubelet_port: int = 10250
    kubelet_use_node_status_port: bool = False
    kubelet_preferred_address_types: list[str] = field(default_factory=lambda: ["InternalIP", "ExternalIP", "Hostname"])
    kubelet_request_timeout: float = 10.0
    kubelet_insecure_tls: bool = False
    kubelet_certificate_authority: str | None = None
    kubelet_client_certificate: str | None = None
    kubelet_client_key: str | None = None
    deprecated_kubelet_completely_insecure: bool = False
    kubelet_source: str = "summary"
    node_selector: str = ""
    max_concurrency: int = 500
    scrape_wave_interval: float = 0.25
    kubelet_via_apiserver: bool = False
    max_response_bytes: int = 10 * 1024 * 1024

    def validate(self) -> None:
        """metrics-server's start-up checks; raises ValueError naming the flag."""
        errors = []
        if self.metric_resolution < MIN_RESOLUTION:
            errors.append(f"metric-resolution should be a time duration at least {format_duration(MIN_RESOLUTION)}")
        if self.kubelet_request_timeout <= 0:
            errors.append("kubelet-request-timeout should be positive")
        elif self.metric_resolution * 0.9 < self.kubelet_request_timeout:
            errors.append(
                f"metric-resolution should be larger than kubelet-request-timeout/0.9 "
                f"({format_duration(self.kubelet_request_timeout / 0.9)})")
        if self.metric_history < self.metric_resolution:
            errors.append("metric-history should be at least metric-resolution")
        if self.kubelet_insecure_tls and self.kubelet_certificate_authority:
            errors.append("cannot use both --kubelet-certificate-authority and --kubelet-insecure-tls")
        if bool(self.kubelet_client_certificate) != bool(self.kubelet_client_key):
            errors.append("need both --kubelet-client-key and --kubelet-client-certificate")
        if self.deprecated_kubelet_completely_insecure and (
            self.kubelet_insecure_tls or self.kubelet_certificate_authority or self.kubelet_client_certificate
        ):
            errors.append("cannot use --deprecated-kubelet-completely-insecure with any other kubelet TLS or certificate flag")
        bad = [t for t in self.kubelet_preferred_address_types if t not in ADDRESS_TYPES]
        if bad or not self.kubelet_preferred_address_types:
            errors.append(f"kubelet-preferred-address-types: unknown address type(s) {bad}; valid: {','.join(ADDRESS_TYPES)}")
        if not 0 < self.kubelet_port < 65536:
            errors.append(f"kubelet-port {self.kubelet_port} is not a valid port")
        if self.kubelet_source not in SOURCES:
            errors.append(f"kubelet-source must be one of {', '.join(SOURCES)}")
        if self.max_concurrency < 1:
            errors.append("kubelet-max-concurrency must be at least 1")
        if self.kubelet_via_apiserver and (
            self.deprecated_kubelet_completely_insecure or self.kubelet_insecure_tls
            or self.kubelet_certificate_authority or self.kubelet_client_certificate
        ):
            errors.append("cannot use --kubelet-via-apiserver with kubelet TLS or certificate flags: the API server "
                          "connects to the kubelets")
        if not 0 <= self.scrape_wave_interval <= MAX_WAVE_INTERVAL:
            errors.append(f"scrape-wave-interval must be between 0 and {format_duration(MAX_WAVE_INTERVAL)}")
        if self.max_response_bytes < 1024:
            errors.append("kubelet-max-response-size must be at least 1024 bytes")
        try:
            parse_label_selector(self.node_selector)
        except SelectorError as exc:
            errors.append(f"node-selector: {exc}")
        if errors:
            raise ValueError("; ".join(errors))


def _types(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the kubelet-scraping flags (metrics-server's names and help texts)."""
    d = ScrapeOptions()
    g = parser.add_argument_group("kubelet scraping")
    g.add_argument("--metric-resolution", type=duration_flag, default=d.metric_resolution,
                   help="The resolution at which metrics-server will retain metrics, must set value at least 10s. (default 15s)")
    g.add_argument("--metric-history", type=duration_flag, default=d.metric_history,
                   help="(ours) How much sample history to keep per series for windowed rates and recording. (default 15m0s)")
    g.add_argument("--kubelet-port", type=int, default=d.kubelet_port,
                   help="The port to use to connect to Kubelets. (default 10250)")
    g.add_argument("--kubelet-use-node-status-port", action="store_true",
                   help="Use the port in the node status. Takes precedence over --kubelet-port flag.")
    g.add_argument("--kubelet-preferred-address-types", type=_types, default=d.kubelet_preferred_address_types,
                   help="The priority of node address types to use when determining which address to use to "
                        "connect to a particular node (default [InternalIP,ExternalIP,Hostname])")
    g.add_argument("--kubelet-request-timeout", type=duration_flag, default=d.kubelet_request_timeout,
                   help="The length of time to wait before giving up on a single request to Kubelet. Non-zero "
                        "values should contain a corresponding time unit (e.g. 1s, 2m, 3h). (default 10s)")
    g.add_argument("--kubelet-insecure-tls", action="store_true",
                   help="Do not verify CA of serving certificates presented by Kubelets.  For testing purposes only.")
    g.add_argument("--kubelet-certificate-authority", default=None,
                   help="Path to a cert file for the certificate authority.")
    g.add_argument("--kubelet-client-certificate", default=None, help="Path to a client cert file for TLS.")
    g.add_argument("--kubelet-client-key", default=None, help="Path to a client key file for TLS.")
    g.add_argument("--deprecated-kubelet-completely-insecure", action="store_true",
                   help="DEPRECATED: Do not use any encryption, authorization, or authentication when communicating "
                        "with the Kubelet. This is rarely the right option, since it leaves kubelet communication "
                        "completely insecure.")
    g.add_argument("-l", "--node-selector", default=d.node_selector,
                   help="Selector (label query) to filter on, not including uninitialized ones, supports '=', '==', "
                        "and '!='.(e.g. -l key1=value1,key2=value2).")
    g.add_argument("--kubelet-source", choices=SOURCES, default=d.kubelet_source,
                   help="(ours) Kubelet endpoint to read: 'summary' (/stats/summary?only_cpu_and_memory=true, "
                        "integer counters) or 'resource' (/metrics/resource, what metrics-server >= 0.6 reads). "
                        "(default summary)")
    g.add_argument("--kubelet-max-concurrency", type=int, default=d.max_concurrency, dest="max_concurrency",
                   help="(ours) Maximum kubelet requests in flight at once. (default 500)")
    g.add_argument("--kubelet-via-apiserver", action="store_true",
                   help="(ours) Reach each kubelet through the API server's node proxy "
                        "(/api/v1/nodes/NAME/proxy/...) with the kubeconfig's identity, which needs get on "
                        "nodes/proxy. For recording from outside a cluster, where kubelets are not reachable; "
                        "every scrape then passes through kube-apiserver (at most 64 connections to it).")
    g.add_argument("--scrape-wave-interval", type=duration_flag, default=d.scrape_wave_interval,
                   help="(ours) Each node's random start delay within a tick is rounded down to a multiple of "
                        "this, so kubelets are scraped in waves and one event-loop wake-up serves several of "
                        "them (about half the CPU per node). 0 gives every node its own start, as "
                        "metrics-server does. (default 250ms)")
    g.add_argument("--kubelet-max-response-size", type=int, default=d.max_response_bytes, dest="max_response_bytes",
                   help="(ours) Largest kubelet response accepted, in bytes; larger ones fail that node. (default 10485760)")


def options_from_args(args: argparse.Namespace) -> ScrapeOptions:
    """Build and validate :class:`ScrapeOptions` from parsed flags."""
    opts = ScrapeOptions(**{name: getattr(args, name) for name in ScrapeOptions.__dataclass_fields__ if hasattr(args, name)})
    opts.validate()
    return opts
