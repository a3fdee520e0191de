"""Controller flags with kube-controller-manager's names and defaults, parsed into settings.

The HPA settings (``--horizontal-pod-autoscaler-*``, ``--concurrent-horizontal-pod-autoscaler-syncs``,
``--emulated-version``, ``--feature-gates``) and leader election (``--leader-elect*``) keep upstream's names, so a
kube-controller-manager command line can be carried over.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from autoscaler.hpa import ControllerConfig
from autoscaler.hpa.gates import config_for, parse_feature_gates
from autoscaler.hpa.versions import DEFAULT_VERSION, VERSIONS, gate_table, parse_version
from autoscaler.k8s.timefmt import duration_flag, format_duration

MODES = ("active", "dry-run", "off")


def go_bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "t", "true"):
        return True
    if low in ("0", "f", "false"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean {text!r} (true or false)")


def feature_gates(text: str) -> dict[str, bool]:
    """``Name=true,Other=false`` for the gates the HPA controller reads (an argparse type)."""
    try:
        return parse_feature_gates(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def emulated_version(text: str) -> str:
    """``--emulated-version`` (an argparse type)."""
    try:
        return parse_version(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """The decision settings, shared by `autoscaler run` and `autoscaler recommend`."""
    d = ControllerConfig()
    g = parser.add_argument_group("HPA controller settings (kube-controller-manager names)")
    g.add_argument("--horizontal-pod-autoscaler-tolerance", type=float, default=d.tolerance, metavar="FLOAT",
                   help="The minimum change (from 1.0) in the desired-to-actual metrics ratio for the horizontal pod "
                        f"autoscaler to consider scaling. (default {d.tolerance})")
    g.add_argument("--horizontal-pod-autoscaler-cpu-initialization-period", type=duration_flag,
                   default=d.cpu_initialization_period, metavar="DURATION",
                   help="The period after pod start when CPU samples might be skipped. "
                        f"(default {format_duration(d.cpu_initialization_period)})")
    g.add_argument("--horizontal-pod-autoscaler-initial-readiness-delay", type=duration_flag,
                   default=d.initial_readiness_delay, metavar="DURATION",
                   help="The period after pod start during which readiness changes will be treated as initial "
                        f"readiness. (default {format_duration(d.initial_readiness_delay)})")
    g.add_argument("--horizontal-pod-autoscaler-downscale-stabilization", type=duration_flag,
                   default=d.downscale_stabilization, metavar="DURATION",
                   help="The period for which autoscaler will look backwards and not scale down below any "
                        f"recommendation it made during that period. (default {format_duration(d.downscale_stabilization)})")
    add_version_arguments(g)


def add_version_arguments(g: argparse._ActionsContainer) -> None:
    """``--emulated-version`` and ``--feature-gates``, shared by every command that decides."""
    g.add_argument("--emulated-version", type=emulated_version, default=DEFAULT_VERSION, metavar="VERSION",
                   help=f"The Kubernetes version whose HPA behaviour to emulate: {' or '.join(VERSIONS)} "
                        f"(upstream's kube=VERSION form is accepted). (default {DEFAULT_VERSION})")
    g.add_argument("--feature-gates", type=feature_gates, default={}, metavar="GATES",
                   help="Comma-separated Name=bool pairs, within what the emulated version allows. 1.37: "
                        f"{gate_table('1.37')}. 1.36: {gate_table('1.36')}.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags `autoscaler run` gets for the controller component."""
    g = parser.add_argument_group("HPA controller")
    g.add_argument("--controller-mode", choices=MODES, default="dry-run",
                   help="active: reconcile HPAs (only where kube-controller-manager's HPA controller is disabled with "
                        "--controllers=*,-horizontalpodautoscaling); dry-run: never write scale or HPA status, "
                        "publish recommendations as metrics and events; off: metrics pipeline only. (default dry-run)")
    g.add_argument("--dry-run-annotate", action="store_true",
                   help="In dry-run mode also write the recommendation into the HPA annotation "
                        "autoscaler/dry-run-recommendation.")
    g.add_argument("--horizontal-pod-autoscaler-sync-period", type=duration_flag, default=15.0, metavar="DURATION",
                   help="The period for syncing the number of pods in horizontal pod autoscaler. (default 15s)")
    g.add_argument("--concurrent-horizontal-pod-autoscaler-syncs", type=int, default=5, metavar="INT",
                   help="The number of horizontal pod autoscaler objects that are allowed to sync concurrently. "
                        "Larger number = more responsive horizontal pod autoscaler objects processing, but more CPU "
                        "(and network) load. (default 5)")
    add_settings_arguments(parser)
    g = parser.add_argument_group("leader election (client-go leaderelection)")
    g.add_argument("--leader-elect", type=go_bool, nargs="?", const=True, default=True, metavar="BOOL",
                   help="Start a leader election client and gain leadership before executing the main loop. Enable "
                        "this when running replicated components for high availability. (default true)")
    g.add_argument("--leader-elect-lease-duration", type=duration_flag, default=15.0, metavar="DURATION",
                   help="The duration that non-leader candidates will wait after observing a leadership renewal "
                        "until attempting to acquire leadership of a led but unrenewed leader slot. (default 15s)")
    g.add_argument("--leader-elect-renew-deadline", type=duration_flag, default=10.0, metavar="DURATION",
                   help="The interval between attempts by the acting master to renew a leadership slot before it "
                        "stops leading. This must be less than the lease duration. (default 10s)")
    g.add_argument("--leader-elect-retry-period", type=duration_flag, default=2.0, metavar="DURATION",
                   help="The duration the clients should wait between attempting acquisition and renewal of a "
                        "leadership. (default 2s)")
    g.add_argument("--leader-elect-resource-lock", choices=["leases"], default="leases",
                   help="The type of resource object that is used for locking during leader election. (default leases)")
    g.add_argument("--leader-elect-resource-name", default="autoscaler-hpa-controller",
                   help="The name of resource object that is used for locking during leader election. "
                        "(default autoscaler-hpa-controller)")
    g.add_argument("--leader-elect-resource-namespace", default="kube-system",
                   help="The namespace of resource object that is used for locking during leader election. "
                        "(default kube-system)")


def config_from_args(args: argparse.Namespace) -> ControllerConfig:
    """The decision core's settings from the flags; ValueError names a bad flag."""
    if args.horizontal_pod_autoscaler_tolerance < 0:
        raise ValueError(f"--horizontal-pod-autoscaler-tolerance must be >= 0, got "
                         f"{args.horizontal_pod_autoscaler_tolerance}")
    try:
        return config_for(
            args.emulated_version, args.feature_gates or {},
            tolerance=args.horizontal_pod_autoscaler_tolerance,
            cpu_initialization_period=args.horizontal_pod_autoscaler_cpu_initialization_period,
            initial_readiness_delay=args.horizontal_pod_autoscaler_initial_readiness_delay,
            downscale_stabilization=args.horizontal_pod_autoscaler_downscale_stabilization,
        )
    except ValueError as exc:
        raise ValueError(f"--feature-gates: {exc}") from None


@dataclass
class ControllerOptions:
    """How the live controller runs (besides the decision settings)."""

    mode: str = "dry-run"
    sync_period: float = 15.0
    workers: int = 5
    dry_run_annotate: bool = False
    config: ControllerConfig = field(default_factory=ControllerConfig)
    leader_elect: bool = True
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    lease_name: str = "autoscaler-hpa-controller"
    lease_namespace: str = "kube-system"

    def validate(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"--controller-mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.sync_period <= 0:
            raise ValueError("--horizontal-pod-autoscaler-sync-period must be positive")
        if self.workers < 1:
            raise ValueError("--concurrent-horizontal-pod-autoscaler-syncs must be at least 1")
        if self.leader_elect:
            if self.renew_deadline >= self.lease_duration:
                raise ValueError("--leader-elect-renew-deadline must be less than --leader-elect-lease-duration")
            if self.retry_period <= 0 or self.retry_period * 1.2 >= self.renew_deadline:
                raise ValueError("--leader-elect-retry-period must be positive and well below "
                                 "--leader-elect-renew-deadline (client-go: renewDeadline > 1.2 × retryPeriod)")


def options_from_args(args: argparse.Namespace) -> ControllerOptions:
    opts = ControllerOptions(
        mode=args.controller_mode,
        sync_period=args.horizontal_pod_autoscaler_sync_period,
        workers=args.concurrent_horizontal_pod_autoscaler_syncs,
        dry_run_annotate=args.dry_run_annotate,
        config=config_from_args(args),
        leader_elect=args.leader_elect,
        lease_duration=args.leader_elect_lease_duration,
        renew_deadline=args.leader_elect_renew_deadline,
        retry_period=args.leader_elect_retry_period,
        lease_name=args.leader_elect_resource_name,
        lease_namespace=args.leader_elect_resource_namespace,
    )
    opts.validate()
    return opts
