"""Controller state and normalization: stabilization windows, rate-limit policies, min/max.

:class:`HPAState` is the in-memory per-HPA state upstream keeps (recommendation history,
scale-up and scale-down events). The functions here are the pure pieces of horizontal.go's
normalization; they mutate only the state objects they are handed (the caller passes copies).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from autoscaler.hpa.spec import Rules
from autoscaler.k8s.timefmt import parse_time

MAX_INT32 = 2**31 - 1
MIN_INT32 = -(2**31)


def _format_ts(ts: float) -> str:
    import datetime as dt

    d = dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=ts)
    if d.microsecond:
        return d.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return d.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_ts(value: Any, where: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return parse_time(value)
        except ValueError:
            pass
    raise ValueError(f"{where}: invalid timestamp {value!r} (want RFC 3339 or Unix seconds)")


@dataclass(slots=True)
class Recommendation:
    replicas: int
    timestamp: float


@dataclass(slots=True)
class ScaleEvent:
    replica_change: int
    timestamp: float
    outdated: bool = False


@dataclass(slots=True)
class HPAState:
    """Per-HPA controller memory. ``recommendations=None`` means the controller never saw the HPA
    (the first decision seeds it with the current replica count); an empty list is an empty history."""

    recommendations: list[Recommendation] | None = None
    scale_up_events: list[ScaleEvent] = field(default_factory=list)
    scale_down_events: list[ScaleEvent] = field(default_factory=list)

    def copy(self) -> HPAState:
        return HPAState(
            None if self.recommendations is None else [Recommendation(r.replicas, r.timestamp)
                                                       for r in self.recommendations],
            [ScaleEvent(e.replica_change, e.timestamp, e.outdated) for e in self.scale_up_events],
            [ScaleEvent(e.replica_change, e.timestamp, e.outdated) for e in self.scale_down_events],
        )

    def to_json(self) -> dict[str, Any]:
        """The STATE document: ``{"recommendations": [...], "scaleUpEvents": [...], "scaleDownEvents": [...]}``."""
        return {
            "recommendations": [{"replicas": r.replicas, "timestamp": _format_ts(r.timestamp)}
                                for r in self.recommendations or []],
            "scaleUpEvents": [{"replicaChange": e.replica_change, "timestamp": _format_ts(e.timestamp),
                               "outdated": e.outdated} for e in self.scale_up_events],
            "scaleDownEvents": [{"replicaChange": e.replica_change, "timestamp": _format_ts(e.timestamp),
                                 "outdated": e.outdated} for e in self.scale_down_events],
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any] | None) -> HPAState:
        """Read a STATE document; a missing ``recommendations`` key means "never seen" (seeded)."""
        if doc is None:
            return cls()
        if not isinstance(doc, dict):
            raise ValueError("state: must be a JSON object")

        def events(key: str) -> list[ScaleEvent]:
            out = []
            for i, e in enumerate(doc.get(key) or []):
                if not isinstance(e, dict):
                    raise ValueError(f"state: {key}[{i}]: must be an object")
                try:
                    change = int(e["replicaChange"])
                except (KeyError, TypeError, ValueError):
                    raise ValueError(f"state: {key}[{i}].replicaChange: must be an integer") from None
                out.append(ScaleEvent(change, _parse_ts(e.get("timestamp"), f"state: {key}[{i}].timestamp"),
                                      bool(e.get("outdated", False))))
            return out

        recs = None
        if doc.get("recommendations") is not None:
            recs = []
            for i, r in enumerate(doc["recommendations"]):
                if not isinstance(r, dict):
                    raise ValueError(f"state: recommendations[{i}]: must be an object")
                try:
                    replicas = int(r["replicas"])
                except (KeyError, TypeError, ValueError):
                    raise ValueError(f"state: recommendations[{i}].replicas: must be an integer") from None
                recs.append(Recommendation(replicas, _parse_ts(r.get("timestamp"), f"state: recommendations[{i}].timestamp")))
        return cls(recs, events("scaleUpEvents"), events("scaleDownEvents"))


# --- legacy path (spec.behavior == nil) ----------------------------------------------------


def stabilize_legacy(recs: list[Recommendation], desired: int, now: float, window: float
                     ) -> tuple[int, list[dict[str, Any]]]:
    """Max of ``desired`` and every recommendation not older than the window; record ``desired``.

    Returns (stabilized, considered entries) and updates ``recs`` in place: the new entry
    overwrites the last entry older than the window, else it is appended.
    """
    return _stabilize_legacy(recs, desired, now, window, True)


def _stabilize_legacy(recs: list[Recommendation], desired: int, now: float, window: float, explain: bool
                      ) -> tuple[int, list[dict[str, Any]]]:
    """:func:`stabilize_legacy`; the considered entries are only listed when ``explain``.

    Entries are replaced, never modified, so a history list may share its entries with a copy.
    """
    cutoff = now - window
    best = desired
    old_index = -1
    considered = []
    for i, r in enumerate(recs):
        if r.timestamp < cutoff:
            old_index = i
        else:
            if explain:
                considered.append({"replicas": r.replicas, "ageSeconds": now - r.timestamp})
            if r.replicas > best:
                best = r.replicas
    if old_index >= 0:
        recs[old_index] = Recommendation(desired, now)
    else:
        recs.append(Recommendation(desired, now))
    return best, considered


def legacy_scale_up_limit(current: int, factor: float, minimum: float) -> int:
    return int(max(factor * current, minimum))


def convert_legacy(current: int, desired: int, min_r: int, max_r: int, factor: float, minimum: float
                   ) -> tuple[int, str, str, int]:
    """convertDesiredReplicasWithRules: clamp to min, and to min(max, scale-up limit)."""
    limit = legacy_scale_up_limit(current, factor, minimum)
    if max_r > limit:
        upper, reason, msg = limit, "ScaleUpLimit", "the desired replica count is increasing faster than the maximum scale rate"
    else:
        upper, reason, msg = max_r, "TooManyReplicas", "the desired replica count is more than the maximum replica count"
    if desired < min_r:
        return min_r, "TooFewReplicas", "the desired replica count is less than the minimum replica count", limit
    if desired > upper:
        return upper, reason, msg, limit
    return desired, "DesiredWithinRange", "the desired count is within the acceptable range", limit


# --- behavior path ---------------------------------------------------------------------------


def stabilize_with_behavior(recs: list[Recommendation], current: int, desired: int, now: float,
                            up_window: float, down_window: float) -> tuple[int, str, str, dict[str, Any]]:
    """Clamp ``current`` into [min of recent up-window entries, max of recent down-window entries].

    Records ``desired``: it overwrites the last entry older than both cutoffs, else is appended.
    """
    return _stabilize_with_behavior(recs, current, desired, now, up_window, down_window, True)


def _stabilize_with_behavior(recs: list[Recommendation], current: int, desired: int, now: float,
                             up_window: float, down_window: float, explain: bool
                             ) -> tuple[int, str, str, dict[str, Any]]:
    """:func:`stabilize_with_behavior`; the ``info`` dict is empty unless ``explain``.

    Entries are replaced, never modified, so a history list may share its entries with a copy.
    """
    up_cut, down_cut = now - up_window, now - down_window
    up_rec = down_rec = desired
    old_index = -1
    up_entries: list[int] = []
    down_entries: list[int] = []
    for i, r in enumerate(recs):
        ts, replicas = r.timestamp, r.replicas
        if ts > up_cut:
            if explain:
                up_entries.append(replicas)
            if replicas < up_rec:
                up_rec = replicas
        if ts > down_cut:
            if explain:
                down_entries.append(replicas)
            if replicas > down_rec:
                down_rec = replicas
        if ts < up_cut and ts < down_cut:
            old_index = i
    stabilized = current
    if stabilized < up_rec:
        stabilized = up_rec
    if stabilized > down_rec:
        stabilized = down_rec
    if old_index >= 0:
        recs[old_index] = Recommendation(desired, now)
    else:
        recs.append(Recommendation(desired, now))
    if desired >= current:
        reason, msg = "ScaleUpStabilized", "recent recommendations were lower than current one, applying the lowest recent recommendation"
    else:
        reason, msg = "ScaleDownStabilized", "recent recommendations were higher than current one, applying the highest recent recommendation"
    if not explain:
        return stabilized, reason, msg, {}
    info = {"upWindowSeconds": up_window, "downWindowSeconds": down_window, "upRecommendation": up_rec,
            "downRecommendation": down_rec, "upWindowEntries": up_entries, "downWindowEntries": down_entries}
    return stabilized, reason, msg, info


def replicas_change_in_period(events: list[ScaleEvent], period: float, now: float) -> int:
    """getReplicasChangePerPeriod: sum of changes strictly after now - period."""
    cutoff = now - period
    return sum(e.replica_change for e in events if e.timestamp > cutoff)


def scale_up_limit(current: int, up_events: list[ScaleEvent], down_events: list[ScaleEvent], rules: Rules,
                   now: float, explain: list[dict[str, Any]] | None = None) -> int:
    """calculateScaleUpLimitWithScalingRules."""
    if rules.select == "Disabled":
        return current
    use_min = rules.select == "Min"
    result = MAX_INT32 if use_min else MIN_INT32
    for p in rules.policies:
        added = replicas_change_in_period(up_events, p.period, now)
        removed = replicas_change_in_period(down_events, p.period, now)
        start = current - added + removed
        if p.type == "Pods":
            proposed = start + p.value
        elif p.type == "Percent":
            proposed = math.ceil(start * (1 + p.value / 100))
        else:
            proposed = 0
        result = min(result, proposed) if use_min else max(result, proposed)
        if explain is not None:
            explain.append({"type": p.type, "value": p.value, "periodSeconds": p.period, "addedInPeriod": added,
                            "removedInPeriod": removed, "periodStartReplicas": start, "limit": proposed})
    return result


def scale_down_limit(current: int, up_events: list[ScaleEvent], down_events: list[ScaleEvent], rules: Rules,
                     now: float, explain: list[dict[str, Any]] | None = None) -> int:
    """calculateScaleDownLimitWithBehaviors."""
    if rules.select == "Disabled":
        return current
    use_min_change = rules.select == "Min"
    result = MIN_INT32 if use_min_change else MAX_INT32
    for p in rules.policies:
        added = replicas_change_in_period(up_events, p.period, now)
        removed = replicas_change_in_period(down_events, p.period, now)
        start = current - added + removed
        if p.type == "Pods":
            proposed = start - p.value
        elif p.type == "Percent":
            proposed = int(start * (1 - p.value / 100))
        else:
            proposed = 0
        result = max(result, proposed) if use_min_change else min(result, proposed)
        if explain is not None:
            explain.append({"type": p.type, "value": p.value, "periodSeconds": p.period, "addedInPeriod": added,
                            "removedInPeriod": removed, "periodStartReplicas": start, "limit": proposed})
    return result


def convert_with_behavior(current: int, desired: int, min_r: int, max_r: int, up: Rules, down: Rules,
                          state: HPAState, now: float, explain: dict[str, Any] | None = None
                          ) -> tuple[int, str, str]:
    """convertDesiredReplicasWithBehaviorRate: apply the direction's policy limit, then min/max."""
    if desired > current:
        policies: list[dict[str, Any]] | None = [] if explain is not None else None
        limit = scale_up_limit(current, state.scale_up_events, state.scale_down_events, up, now, policies)
        if limit < current:
            limit = current
        if explain is not None:
            explain.update({"direction": "up", "selectPolicy": up.select, "policies": policies, "limit": limit})
        if max_r > limit:
            upper, reason, msg = limit, "ScaleUpLimit", "the desired replica count is increasing faster than the maximum scale rate"
        else:
            upper, reason, msg = max_r, "TooManyReplicas", "the desired replica count is more than the maximum replica count"
        if desired > upper:
            return upper, reason, msg
    elif desired < current:
        policies = [] if explain is not None else None
        limit = scale_down_limit(current, state.scale_up_events, state.scale_down_events, down, now, policies)
        if limit > current:
            limit = current
        if explain is not None:
            explain.update({"direction": "down", "selectPolicy": down.select, "policies": policies, "limit": limit})
        if min_r < limit:
            lower, reason, msg = limit, "ScaleDownLimit", "the desired replica count is decreasing faster than the maximum scale rate"
        else:
            lower, reason, msg = min_r, "TooFewReplicas", "the desired replica count is less than the minimum replica count"
        if desired < lower:
            return lower, reason, msg
    return desired, "DesiredWithinRange", "the desired count is within the acceptable range"


def store_scale_event(state: HPAState, rules: Rules, prev: int, new: int, now: float) -> None:
    """storeScaleEvent (behavior set): mark old events outdated, reuse the last outdated slot."""
    if new > prev:
        events, change = state.scale_up_events, new - prev
    else:
        events, change = state.scale_down_events, prev - new
    cutoff = now - rules.longest_period
    old_index = -1
    for i, e in enumerate(events):
        if e.timestamp < cutoff:
            e.outdated = True
        if e.outdated:
            old_index = i
    event = ScaleEvent(change, now, False)
    if old_index >= 0:
        events[old_index] = event
    else:
        events.append(event)
