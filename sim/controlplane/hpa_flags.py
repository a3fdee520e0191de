"""Flags that make our HPA controller and kube-controller-manager's decide under the same settings
and log each sync, so `autoscaler sim agree` can line the two up.

Both follow Kubernetes 1.37 by default (our ``--emulated-version`` and gates match kcm's), so only
the sync period and the logging are set here.
"""

from __future__ import annotations

#: kcm logs each HPA sync's decision ("Proposing desired replicas", "Decided not to scale") at V(4)
KCM_HPA_VMODULE = "--vmodule=horizontal=4"


def ours_flags(sync_period: str) -> list[str]:
    """`autoscaler run` flags for kcm's HPA sync period and a JSON record of every dry-run sync
    (pair with :data:`KCM_HPA_VMODULE` on kube-controller-manager)."""
    return ["--horizontal-pod-autoscaler-sync-period", sync_period, "--log-level", "debug", "--log-format", "json"]
