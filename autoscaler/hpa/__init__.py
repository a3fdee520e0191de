"""The HPA core: API defaulting/validation/conversion and the pure decision function.

Everything the live controller, the replay simulator and ``autoscaler explain`` need is exported
here; see :func:`decide` for the exact call.
"""

from autoscaler.hpa.decide import ControllerConfig, Decision, decide, rescale_failed
from autoscaler.hpa.defaults import default_hpa, hpa_v1_to_v2, hpa_v2_to_v1, validate_hpa
from autoscaler.hpa.inputs import (
    MetricsError,
    MetricsSource,
    PodMetricsSet,
    PodSet,
    PodValues,
    Scale,
    StaticMetrics,
    pod_metrics_from_v1beta1,
    pods_from_v1,
)
from autoscaler.hpa.normalize import HPAState, Recommendation, ScaleEvent
from autoscaler.hpa.spec import CompiledHPA, compile_hpa

__all__ = [
    "CompiledHPA",
    "ControllerConfig",
    "Decision",
    "HPAState",
    "MetricsError",
    "MetricsSource",
    "PodMetricsSet",
    "PodSet",
    "PodValues",
    "Recommendation",
    "Scale",
    "ScaleEvent",
    "StaticMetrics",
    "compile_hpa",
    "decide",
    "default_hpa",
    "hpa_v1_to_v2",
    "hpa_v2_to_v1",
    "pod_metrics_from_v1beta1",
    "pods_from_v1",
    "rescale_failed",
    "validate_hpa",
]
