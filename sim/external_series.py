"""An external metric's series in a scenario (``externalMetrics``): values over time, served by
:mod:`sim.external_metrics` as ``external.metrics.k8s.io``."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class ExternalSeries:
    """One external metric series: ``values_milli[i]`` from ``times[i]`` seconds after the cluster started."""

    name: str
    namespace: str = "default"
    labels: dict[str, str] = field(default_factory=dict)
    times: np.ndarray = field(default_factory=lambda: np.zeros(1))
    values_milli: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))
    interpolation: str = "step"

    def __post_init__(self) -> None:
        self.times = np.asarray(self.times, np.float64)
        self.values_milli = np.asarray(self.values_milli, np.int64)
        if self.times.size == 0 or self.times.shape != self.values_milli.shape:
            raise ValueError(f"external metric {self.name}: needs as many times as values (at least one)")
        if np.any(np.diff(self.times) < 0):
            raise ValueError(f"external metric {self.name}: times must not decrease")

    def value_at(self, t: float) -> int:
        """The value (milli-units) at ``t`` seconds after the start; held flat outside the points."""
        if self.interpolation == "linear":
            return round(float(np.interp(t, self.times, self.values_milli)))
        i = int(np.searchsorted(self.times, t, side="right")) - 1
        return int(self.values_milli[max(i, 0)])
