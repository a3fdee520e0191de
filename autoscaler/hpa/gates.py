"""kube-controller-manager's ``--feature-gates`` for the HPA controller, onto :class:`ControllerConfig`."""

from __future__ import annotations

from collections.abc import Mapping

from autoscaler.hpa.decide import ControllerConfig

#: kube-controller-manager feature gates the HPA controller reads -> the ControllerConfig field.
FEATURE_GATES = {"HPAScaleToZero": "scale_to_zero", "HPAConfigurableTolerance": "configurable_tolerance",
                 "HPAGeneration": "observed_generation"}


def parse_feature_gates(text: str) -> dict[str, bool]:
    """``--feature-gates=Name=true,Other=false`` (Go's boolean spellings), only the gates above."""
    out: dict[str, bool] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, eq, val = (x.strip() for x in part.partition("="))
        if not eq:
            raise ValueError(f"missing bool value for {name}")
        if name not in FEATURE_GATES:
            raise ValueError(f"unrecognized feature gate: {name} (known: {', '.join(sorted(FEATURE_GATES))})")
        if val not in _GO_BOOLS:
            raise ValueError(f"invalid value of {name}={val}, err: invalid boolean")
        out[name] = _GO_BOOLS[val]
    return out


def with_feature_gates(cfg: ControllerConfig, gates: Mapping[str, bool]) -> ControllerConfig:
    for name, on in gates.items():
        setattr(cfg, FEATURE_GATES[name], on)
    return cfg


# strconv.ParseBool
_GO_BOOLS = {**dict.fromkeys(("1", "t", "T", "TRUE", "true", "True"), True),
             **dict.fromkeys(("0", "f", "F", "FALSE", "false", "False"), False)}
