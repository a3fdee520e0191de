"""Explain what the HPA controller would decide for one HPA, offline, from a snapshot.

Runs the same decision core as the live controller on a snapshot file (YAML or JSON: a List or
several documents with the HPA, its target's Scale, Pods, PodMetrics, and custom/external
metric value lists) and prints the status it would write, the scale change, the events, the
controller state afterwards and a step-by-step explanation.

Exit status: 0 when a decision was made (whatever the HPA status says), 2 when the input cannot
be read as Kubernetes objects.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

HELP = __doc__ or ""
#: writes no structured logs, so the CLI starts it without loading structlog
LOGS = False



def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--filename", required=True, metavar="SNAPSHOT",
                        help="snapshot file (YAML or JSON; '-' reads stdin)")
    parser.add_argument("--hpa", metavar="[NAMESPACE/]NAME", help="the HPA to explain when the snapshot has several")
    parser.add_argument("--state", metavar="STATE", help="controller state JSON file (recommendations, scale events); "
                        "without it the controller has never seen the HPA")
    parser.add_argument("--now", metavar="RFC3339", help="the decision time (default: the current time)")
    parser.add_argument("-o", "--output", choices=("json", "yaml", "text"), default="text")
    parser.add_argument("--horizontal-pod-autoscaler-tolerance", type=float, default=0.1, dest="tolerance",
                        help="minimum change (from 1.0) in the desired-to-actual metrics ratio to scale (default 0.1)")
    parser.add_argument("--horizontal-pod-autoscaler-cpu-initialization-period", default="5m0s", dest="cpu_init",
                        help="period after pod start when CPU samples might be skipped (default 5m0s)")
    parser.add_argument("--horizontal-pod-autoscaler-initial-readiness-delay", default="30s", dest="readiness_delay",
                        help="period after pod start during which readiness changes are treated as initial (default 30s)")
    parser.add_argument("--horizontal-pod-autoscaler-downscale-stabilization", default="5m0s", dest="downscale",
                        help="period for which all past recommendations are considered when scaling down (default 5m0s)")
    from autoscaler.controller.options import add_version_arguments

    add_version_arguments(parser)


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def main(args: argparse.Namespace) -> int:
    import json
    import time

    from autoscaler.hpa.decide import decide
    from autoscaler.hpa.gates import config_for
    from autoscaler.hpa.inputs import InputError
    from autoscaler.hpa.normalize import HPAState
    from autoscaler.hpa.snapshot import build_inputs, parse_documents
    from autoscaler.k8s.fields import unknown_fields
    from autoscaler.k8s.timefmt import parse_duration, parse_time

    try:
        settings = {"tolerance": args.tolerance, "cpu_initialization_period": parse_duration(args.cpu_init),
                    "initial_readiness_delay": parse_duration(args.readiness_delay),
                    "downscale_stabilization": parse_duration(args.downscale)}
        try:
            config = config_for(args.emulated_version, args.feature_gates, **settings)
        except ValueError as e:
            raise ValueError(f"--feature-gates: {e}") from None
        now = parse_time(args.now) if args.now else time.time()
    except ValueError as e:
        return _fail(str(e))
    try:
        if args.filename == "-":
            text = sys.stdin.read()
        else:
            with open(args.filename, encoding="utf-8") as fh:
                text = fh.read()
    except (OSError, UnicodeDecodeError) as e:
        return _fail(f"{args.filename}: {getattr(e, 'strerror', None) or e}")
    state = None
    if args.state:
        try:
            with open(args.state, encoding="utf-8") as fh:
                state = HPAState.from_json(json.load(fh))
        except OSError as e:
            return _fail(f"--state {args.state}: {e.strerror}")
        except ValueError as e:
            return _fail(f"--state {args.state}: {e}")
    try:
        inputs = build_inputs(parse_documents(text), args.hpa)
        if unknown := unknown_fields(inputs.hpa):
            # kube-apiserver would have dropped these (or refused them under fieldValidation=Strict)
            print(f"warning: {args.filename}: the HPA has fields autoscaling/v2 does not define, ignored: "
                  + ", ".join(unknown), file=sys.stderr)
        decision = decide(inputs.hpa, inputs.scale, inputs.pods, inputs.metrics, now=now, state=state,
                          config=config, other_hpa_selectors=inputs.others, scale_error=inputs.scale_error)
    except InputError as e:
        return _fail(f"{args.filename}: {e}")
    doc = decision.to_json()
    if args.output == "json":
        print(json.dumps(doc, indent=2))
    elif args.output == "yaml":
        import yaml

        print(yaml.safe_dump(doc, sort_keys=False), end="")
    else:
        print(render_text(doc))
    return 0


def _pct(x: Any) -> str:
    return f"{x:.3f}" if isinstance(x, float) else str(x)


def render_text(doc: dict[str, Any]) -> str:
    """A few lines telling a person why the HPA decided what it did."""
    ex = doc["explanation"]
    scale = doc["scale"]
    lines = []
    if scale["from"] is None:
        lines.append(f"HPA {ex.get('hpa')}: cannot read the target's scale: {ex.get('scale', {}).get('error')}")
    elif scale["updated"]:
        lines.append(f"HPA {ex.get('hpa')}: would scale {scale['from']} -> {scale['to']} replicas "
                     f"({ex.get('reason', '')})")
    else:
        lines.append(f"HPA {ex.get('hpa')}: would keep {scale['to']} replicas")
    if ex.get("branch") and ex["branch"] != "compute from metrics":
        lines.append(f"  why: {ex['branch']}")
    if ex.get("selector", {}).get("error"):
        lines.append(f"  selector: {ex['selector']['error']}")
    for m in ex.get("metrics", []):
        head = f"  metric {m['index']} {m['type']} {m.get('description') or m.get('metricName') or ''}".rstrip()
        if not m.get("ok"):
            lines.append(f"{head}: FAILED: {m.get('error')}")
            continue
        t = m.get("target", {})
        if "utilization" in m:
            cur = f"{m['utilization']}% of request (target {t.get('averageUtilization')}%)"
        elif "averageValueMilli" in m:
            cur = f"{m['averageValueMilli']}m per pod (target {t.get('averageValueMilli', t.get('valueMilli'))}m)"
        else:
            cur = f"{m.get('valueMilli')}m (target {t.get('valueMilli')}m)"
        band = m["tolerance"]["band"]
        lines.append(f"{head}: {cur}, ratio {_pct(m.get('ratio'))}, no-op band [{band[0]:.3f}, {band[1]:.3f}] "
                     f"-> {m['proposal']} replicas ({m.get('step', '')})")
        if "readyPods" in m and "unreadyPods" in m:
            lines.append(f"    pods: {m['readyPods']} ready, {m['unreadyPods']} unready, {m['missingPods']} missing, "
                         f"{m['ignoredPods']} ignored")
    st = ex.get("stabilization")
    if st:
        lines.append(f"  stabilization ({st['mode']}): {st['stabilizedReplicas']}"
                     + (" (a recent recommendation won)" if st.get("applied") else ""))
    lim = ex.get("limits", {})
    if "result" in lim:
        lines.append(f"  limits: min {lim['minReplicas']}, max {lim['maxReplicas']} -> {lim['result']} ({lim['reason']})")
    # the controller's own texts, which assume its write succeeded; offline nothing is written
    lines.append("  what the controller would write, had its scale update succeeded (nothing is written here):")
    for c in doc["status"].get("conditions", []):
        lines.append(f"    condition {c['type']}={c['status']} {c.get('reason', '')}: {c.get('message', '')}")
    for e in doc["events"]:
        lines.append(f"    event {e['type']} {e['reason']}: {e['message']}")
    return "\n".join(lines)
