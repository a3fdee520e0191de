"""Flags that make our HPA controller and kube-controller-manager's decide under the same settings.

kube-controller-manager 1.37 has HPAScaleToZero and HPAGeneration on by default (beta) and
HPAConfigurableTolerance locked on (GA). Our controller takes the same ``--feature-gates``; only
gates whose default in :class:`~autoscaler.hpa.ControllerConfig` differs from kcm 1.37's are passed,
so once our defaults follow 1.37 no flag is needed and none is given.
"""

from __future__ import annotations

from autoscaler.hpa import ControllerConfig
from autoscaler.hpa.gates import FEATURE_GATES

#: kube-controller-manager v1.37 defaults of the gates the HPA controller reads (pkg/features)
KCM_137_GATES = {"HPAScaleToZero": True, "HPAGeneration": True, "HPAConfigurableTolerance": True}
#: kcm logs each HPA sync's decision ("Proposing desired replicas", "Decided not to scale") at V(4)
KCM_HPA_VMODULE = "--vmodule=horizontal=4"


def gate_flags() -> list[str]:
    """``--feature-gates=...`` for `autoscaler run`, naming only the gates whose defaults differ."""
    ours = ControllerConfig()
    differ = {name: on for name, on in KCM_137_GATES.items() if getattr(ours, FEATURE_GATES[name]) != on}
    if not differ:
        return []
    return ["--feature-gates=" + ",".join(f"{k}={str(v).lower()}" for k, v in sorted(differ.items()))]


def ours_flags(sync_period: str) -> list[str]:
    """`autoscaler run` flags for kcm's HPA sync period, its 1.37 gates and a JSON record of every
    dry-run sync (pair with :data:`KCM_HPA_VMODULE` on kube-controller-manager)."""
    return ["--horizontal-pod-autoscaler-sync-period", sync_period, "--log-level", "debug", "--log-format", "json",
            *gate_flags()]
