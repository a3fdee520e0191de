"""One-line summaries of a decision for people: which rule limited it and why, in one line."""

from __future__ import annotations

from typing import Any

from autoscaler.hpa import Decision

STABILIZED = ("ScaleDownStabilized", "ScaleUpStabilized")


def _cond(decision: Decision, ctype: str) -> dict[str, Any]:
    for c in decision.status.get("conditions") or []:
        if c.get("type") == ctype:
            return c
    return {}


def limiting_rule(decision: Decision) -> str:
    """The condition reason that held the recommendation back, or ``-`` when nothing did."""
    able, active, limited = (_cond(decision, t) for t in ("AbleToScale", "ScalingActive", "ScalingLimited"))
    if able.get("status") == "False":
        return str(able.get("reason") or "-")
    if active.get("status") == "False":
        return str(active.get("reason") or "-")
    if limited.get("status") == "True":
        return str(limited.get("reason") or "-")
    if able.get("reason") in STABILIZED:
        return str(able["reason"])
    return "-"


def _metric_text(m: dict[str, Any]) -> str:
    name = m.get("resource") or m.get("metricName") or m.get("type", "")
    if not m.get("ok"):
        return f"{name}: {m.get('error') or m.get('reason')}"
    target = m.get("target") or {}
    if m.get("utilization") is not None and "averageUtilization" in target:
        return f"{name} {m['utilization']}% of request (target {target['averageUtilization']}%) -> {m.get('proposal')}"
    return f"{name} -> {m.get('proposal')}"


def one_line(decision: Decision) -> str:
    """Metric proposals, the rescale reason and the limiting condition's message, joined."""
    ex = decision.explanation or {}
    parts = [_metric_text(m) for m in ex.get("metrics") or []]
    if not parts and ex.get("branch") and ex.get("branch") != "compute from metrics":
        parts.append(str(ex["branch"]))
    if decision.reason:
        parts.append(decision.reason)
    rule = limiting_rule(decision)
    if rule != "-":
        for ctype in ("AbleToScale", "ScalingActive", "ScalingLimited"):
            c = _cond(decision, ctype)
            if c.get("reason") == rule:
                parts.append(f"{rule}: {c.get('message', '')}")
                break
    if decision.error and not any(decision.error in p for p in parts):
        parts.append(decision.error)
    return "; ".join(p for p in parts if p)
