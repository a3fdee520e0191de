"""kube-controller-manager's HPA settings as the decision core reads them."""

from __future__ import annotations

from dataclasses import dataclass

from autoscaler.hpa.versions import DEFAULT_VERSION, at_least


@dataclass(slots=True)
class ControllerConfig:
    """kube-controller-manager's HPA settings (upstream flag defaults), the Kubernetes version it
    emulates and its HPA feature gates. The defaults are 1.37's; :func:`autoscaler.hpa.gates.config_for`
    builds a configuration for another version from :mod:`autoscaler.hpa.versions`."""

    tolerance: float = 0.1
    cpu_initialization_period: float = 300.0
    initial_readiness_delay: float = 30.0
    downscale_stabilization: float = 300.0
    version: str = DEFAULT_VERSION  # --emulated-version
    scale_to_zero: bool = True  # HPAScaleToZero: beta, on in 1.37 (alpha, off in 1.36)
    configurable_tolerance: bool = True  # HPAConfigurableTolerance: GA in 1.37 (beta, on in 1.36)
    observed_generation: bool = True  # HPAGeneration: beta, on in 1.37; status.observedGeneration
    optimized_selector_store: bool = True  # HPAOptimizedSelectorStore (1.37): AmbiguousSelector lists two HPAs
    stale_consistency: bool = True  # StaleControllerConsistencyHPA (1.37): read our own status writes
    scale_up_limit_factor: float = 2.0
    scale_up_limit_minimum: float = 4.0

    @property
    def immediate_reconcile(self) -> bool:
        """New HPAs are reconciled when added, not one sync period later (1.37, k/k#138294)."""
        return at_least(self.version, "1.37")
