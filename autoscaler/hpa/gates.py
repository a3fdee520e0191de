"""``--emulated-version`` and ``--feature-gates`` onto :class:`ControllerConfig`.

The version table is :mod:`autoscaler.hpa.versions`; this module maps its gates to the
decision core's fields and builds the configuration every entry point (controller, dry-run,
``recommend``, ``explain``, replay) shares.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from autoscaler.hpa.config import ControllerConfig
from autoscaler.hpa.versions import DEFAULT_VERSION, check_gate_names, resolve_gates

#: feature gate -> the ControllerConfig field it sets (a gate a version lacks is off there)
FEATURE_GATES = {"HPAScaleToZero": "scale_to_zero", "HPAConfigurableTolerance": "configurable_tolerance",
                 "HPAGeneration": "observed_generation", "HPAOptimizedSelectorStore": "optimized_selector_store",
                 "StaleControllerConsistencyHPA": "stale_consistency"}


def parse_feature_gates(text: str) -> dict[str, bool]:
    """``Name=true,Other=false`` (Go's boolean spellings) for gates the HPA knows; whether a gate
    may be set is checked against the emulated version by :func:`with_feature_gates`."""
    out: dict[str, bool] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, eq, val = (x.strip() for x in part.partition("="))
        if not eq:
            raise ValueError(f"missing bool value for {name}")
        check_gate_names({name: True})
        if val not in _GO_BOOLS:
            raise ValueError(f"invalid value of {name}={val}, err: invalid boolean")
        out[name] = _GO_BOOLS[val]
    return out


def with_feature_gates(cfg: ControllerConfig, gates: Mapping[str, bool]) -> ControllerConfig:
    """``cfg`` with every gate at ``cfg.version``'s default, then ``gates``; ValueError (upstream's
    text) for a gate that version does not have or locks."""
    resolved = resolve_gates(cfg.version, gates)
    for name, field_name in FEATURE_GATES.items():
        setattr(cfg, field_name, resolved.get(name, False))
    return cfg


def config_for(version: str = DEFAULT_VERSION, gates: Mapping[str, bool] | None = None,
               **settings: Any) -> ControllerConfig:
    """The configuration of kube-controller-manager at ``version`` (``--emulated-version``) with
    ``gates`` (``--feature-gates``) and the other settings (ControllerConfig fields)."""
    return with_feature_gates(replace(ControllerConfig(), version=version, **settings), gates or {})


# strconv.ParseBool
_GO_BOOLS = {**dict.fromkeys(("1", "t", "T", "TRUE", "true", "True"), True),
             **dict.fromkeys(("0", "f", "F", "FALSE", "false", "False"), False)}
