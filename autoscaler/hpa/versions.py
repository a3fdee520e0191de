"""The Kubernetes versions we emulate and their HPA feature gates: the one table everything reads.

Kubernetes 1.37 is the default; ``--emulated-version=1.36`` (upstream components' flag) selects
the 1.36 gate defaults. The specs are those of ``pkg/features/kube_features.go`` in v1.37.2, and
the errors for a bad ``--feature-gates`` or ``--emulated-version`` are component-base's
(``featuregate.unsafeSetFromMap``): a gate the binary does not know is "unrecognized", a gate
introduced after the emulated version is "PreAlpha", a GA gate locked to its default cannot be
set to the other value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

VERSIONS = ("1.36", "1.37")
DEFAULT_VERSION = "1.37"


@dataclass(frozen=True, slots=True)
class GateSpec:
    default: bool
    stage: str  # Alpha, Beta, GA
    locked: bool = False  # LockToDefault


#: version -> gate -> spec; a gate missing from a version did not exist yet (PreAlpha there).
GATES: dict[str, dict[str, GateSpec]] = {
    "1.36": {
        "HPAScaleToZero": GateSpec(False, "Alpha"),
        "HPAConfigurableTolerance": GateSpec(True, "Beta"),
    },
    "1.37": {
        "HPAScaleToZero": GateSpec(True, "Beta"),
        "HPAConfigurableTolerance": GateSpec(True, "GA", locked=True),
        "HPAGeneration": GateSpec(True, "Beta"),
        "HPAOptimizedSelectorStore": GateSpec(True, "Beta"),
        "StaleControllerConsistencyHPA": GateSpec(True, "Beta"),
    },
}
#: every gate name the 1.37.2 binaries know (at any emulated version)
KNOWN_GATES = tuple(sorted({name for gates in GATES.values() for name in gates}))


def _minor(version: str) -> int:
    return int(version.split(".")[1])


def at_least(version: str, other: str) -> bool:
    """``version >= other`` for two of :data:`VERSIONS`."""
    return _minor(version) >= _minor(other)


def parse_version(text: str) -> str:
    """``--emulated-version``: ``1.36``, ``1.37`` or upstream's ``kube=1.36`` form; ValueError otherwise."""
    value = text.strip()
    component, eq, rest = value.partition("=")
    if eq:
        if component.strip() != "kube":
            raise ValueError(f"component not registered: {component.strip()}")
        value = rest.strip()
    parts = value.split(".")
    if len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise ValueError(f"illegal version string {value!r}: version format could only be major.minor, "
                         f"for example: --emulated-version={DEFAULT_VERSION}")
    value = f"{int(parts[0])}.{int(parts[1])}"
    if value not in VERSIONS:
        raise ValueError(f"emulation version {value} is not between [{VERSIONS[0]}, {VERSIONS[-1]}]")
    return value


def check_gate_names(gates: Mapping[str, bool]) -> None:
    """The first gate no version knows: "unrecognized feature gate" (upstream stops at the first)."""
    for name in gates:
        if name not in KNOWN_GATES:
            raise ValueError(f"unrecognized feature gate: {name} (known: {', '.join(KNOWN_GATES)})")


def resolve_gates(version: str, overrides: Mapping[str, bool] | None = None) -> dict[str, bool]:
    """Every gate of ``version`` at its default, with ``overrides`` applied; ValueError with
    upstream's messages (several are listed like a Go error aggregate, ``[a, b]``)."""
    specs = GATES[version]
    overrides = dict(overrides or {})
    check_gate_names(overrides)
    errors = []
    for name, value in overrides.items():
        spec = specs.get(name)
        if spec is None:
            prev = f"1.{_minor(version) - 1}"
            errors.append(f"cannot set feature gate {name} to {str(value).lower()}, feature is PreAlpha at emulated "
                          f"version {version}, min compatibility version {prev}")
        elif spec.locked and value != spec.default:
            errors.append(f"cannot set feature gate {name} to {str(value).lower()}, feature is locked to "
                          f"{str(spec.default).lower()}")
    if len(errors) == 1:
        raise ValueError(errors[0])
    if errors:
        raise ValueError("[" + ", ".join(errors) + "]")
    out = {name: spec.default for name, spec in specs.items()}
    out.update(overrides)
    return out


def gate_table(version: str) -> str:
    """``Name (default on, Beta), ...`` for flag help."""
    return ", ".join(f"{n} ({'on' if s.default else 'off'}, {s.stage}{', locked' if s.locked else ''})"
                     for n, s in GATES[version].items())
