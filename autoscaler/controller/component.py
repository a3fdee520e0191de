"""The HPA controller as a component of `autoscaler run` (its flags and its builder).

`autoscaler run` imports this module as a plugin: :func:`add_arguments` adds the controller
flags and :func:`build` returns the component, which reads resource metrics in-process from the
run's window store and exposes its Prometheus families on the server's ``/metrics``.
"""

from __future__ import annotations

import argparse
from typing import Any

from autoscaler.controller.options import add_arguments as _add_arguments
from autoscaler.controller.options import options_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _add_arguments(parser)


def pod_transform(args: argparse.Namespace) -> Any:
    """The controller reads whole pods (every phase) from the run's shared pod informer, slimmed."""
    if getattr(args, "controller_mode", "off") == "off":
        return None
    from autoscaler.controller.controller import slim_pod

    return slim_pod


def build(rt: Any, args: argparse.Namespace) -> list[Any]:
    """The controller component, or nothing with ``--controller-mode=off``."""
    from autoscaler.controller.controller import HPAController
    from autoscaler.controller.metrics_source import StoreResourceMetrics
    from autoscaler.server.run_cmd import Component, StartupError

    try:
        options = options_from_args(args)
    except ValueError as exc:
        raise StartupError(str(exc)) from exc
    if options.mode == "off":
        return []
    # the run's pod informer (see pod_transform) is the controller's too: one pod watch per process
    controller = HPAController(rt.kube, options, StoreResourceMetrics(rt.storage), pod_informer=rt.pod_informer)
    registry = getattr(rt.collector, "registry", None)
    if registry is not None:  # served by the metrics server's /metrics
        registry.register(controller.metrics.registry)
    rt.controller = controller
    # a dead or wedged controller fails /livez, so the kubelet restarts the Pod
    rt.health["livez"].checks.append(("hpa-controller", controller.liveness))
    # not critical: a failing controller must not take the metrics API down with it
    return [Component("hpa-controller", controller.run, critical=False)]
