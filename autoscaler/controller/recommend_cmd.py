"""Show what the HPA controller recommends for each HPA, next to what the built-in controller wants.

Runs the same decision core as `autoscaler run` against the cluster, with resource metrics read
through metrics.k8s.io (custom and external metrics through their APIs), and nothing written.
Columns: the HPA, the target's current replicas, the built-in controller's desiredReplicas (from
the HPA status), our recommendation, the rule that limited it and a one-line explanation.
A single snapshot has no recommendation history, so scale-down stabilization is not applied;
with --watch the history builds up across refreshes as in the controller.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

HELP = __doc__ or ""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from autoscaler.controller.options import add_settings_arguments
    from autoscaler.k8s.timefmt import duration_flag

    parser.add_argument("names", nargs="*", help="HPA names (default: all in the namespace)")
    parser.add_argument("--kubeconfig", default="", help="kubeconfig file (default: in-cluster, $KUBECONFIG, ~/.kube/config)")
    parser.add_argument("--context", default=None, help="kubeconfig context to use")
    parser.add_argument("-n", "--namespace", default="default", help="namespace of the HPAs (default default)")
    parser.add_argument("-A", "--all-namespaces", action="store_true", help="HPAs of every namespace")
    parser.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table",
                        help="table for people, json or yaml for scripts (default table)")
    parser.add_argument("-w", "--watch", action="store_true", help="refresh a live table until interrupted")
    parser.add_argument("--interval", type=duration_flag, default=15.0, help="refresh period with --watch (default 15s)")
    add_settings_arguments(parser)


@dataclass
class Row:
    namespace: str
    name: str
    reference: str
    currentReplicas: int | None  # JSON field names from here on
    builtinDesiredReplicas: int | None
    recommendedReplicas: int | None
    limitedBy: str
    explanation: str
    error: str | None = None


class _ApiPods:
    def __init__(self, client: Any) -> None:
        self.client = client

    async def pods(self, namespace: str, selector: Any) -> list[dict[str, Any]]:
        from autoscaler.k8s.rest import seg

        doc = await self.client.get(f"/api/v1/namespaces/{seg(namespace)}/pods", {"labelSelector": str(selector)})
        return sorted(doc.get("items") or [], key=lambda p: p["metadata"]["name"])


class Recommender:
    """Snapshots of recommendations; keeps each HPA's history between snapshots (for --watch)."""

    def __init__(self, kube: Any, config: Any, namespace: str | None, names: list[str]) -> None:
        from autoscaler.controller.evaluate import Evaluator
        from autoscaler.controller.metrics_source import ApiResourceMetrics, MetricsFetcher
        from autoscaler.controller.scales import RESTMapper, ScaleClient
        from autoscaler.k8s.rest import KubeClient

        self.client = KubeClient(kube, user_agent="autoscaler-recommend")
        mapper = RESTMapper(self.client)
        self.evaluator = Evaluator(ScaleClient(self.client, mapper),
                                   MetricsFetcher(self.client, ApiResourceMetrics(self.client), mapper),
                                   _ApiPods(self.client), config)
        self.namespace = namespace
        self.names = set(names)
        self.states: dict[str, Any] = {}

    async def close(self) -> None:
        await self.client.close()

    async def snapshot(self, now: float | None = None) -> list[Row]:
        from autoscaler.controller.evaluate import hpa_key
        from autoscaler.controller.summary import limiting_rule, one_line
        from autoscaler.hpa import HPAState
        from autoscaler.hpa.inputs import InputError
        from autoscaler.k8s.rest import seg

        now = time.time() if now is None else now
        ns_path = f"/namespaces/{seg(self.namespace)}" if self.namespace else ""
        doc = await self.client.get(f"/apis/autoscaling/v2{ns_path}/horizontalpodautoscalers")
        hpas = [h for h in doc.get("items") or [] if not self.names or h["metadata"]["name"] in self.names]
        hpas.sort(key=hpa_key)
        scales = [await self.evaluator.get_scale(h) for h in hpas]  # all selectors known before any decision
        rows = []
        for h, sr in zip(hpas, scales, strict=True):
            key = hpa_key(h)
            ref = (h.get("spec") or {}).get("scaleTargetRef") or {}
            status = h.get("status") or {}
            state = self.states.get(key) or HPAState(recommendations=[])
            try:
                ev = await self.evaluator.evaluate(h, state, now, scale=sr)
            except InputError as exc:
                rows.append(Row(h["metadata"].get("namespace", ""), h["metadata"]["name"],
                                f"{ref.get('kind')}/{ref.get('name')}", None, status.get("desiredReplicas"), None,
                                "-", str(exc), str(exc)))
                continue
            d = ev.decision
            self.states[key] = d.state
            rows.append(Row(ev.compiled.namespace, ev.compiled.name, f"{ref.get('kind')}/{ref.get('name')}",
                            d.scale_from, status.get("desiredReplicas"), d.scale_to, limiting_rule(d), one_line(d),
                            d.error))
        return rows


def _cell(v: Any) -> str:
    return "<none>" if v is None else str(v)


def render_table(rows: list[Row], all_namespaces: bool) -> Any:
    from rich.table import Table

    t = Table(box=None, pad_edge=False, expand=False)
    cols = (["NAMESPACE"] if all_namespaces else []) + ["HPA", "REFERENCE", "CURRENT", "BUILT-IN", "RECOMMENDED",
                                                         "LIMITED BY", "EXPLANATION"]
    for c in cols:
        t.add_column(c, overflow="fold" if c == "EXPLANATION" else "ellipsis", no_wrap=c != "EXPLANATION")
    for r in rows:
        cells = [r.name, r.reference, _cell(r.currentReplicas), _cell(r.builtinDesiredReplicas),
                 _cell(r.recommendedReplicas), r.limitedBy, r.explanation]
        t.add_row(*([r.namespace] if all_namespaces else []), *cells)
    return t


def render_doc(rows: list[Row], fmt: str) -> str:
    doc = {"apiVersion": "v1", "kind": "List", "items": [asdict(r) for r in rows]}
    if fmt == "json":
        return json.dumps(doc, indent=2)
    import yaml

    return yaml.safe_dump(doc, sort_keys=False)


def _stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM, so --watch ends between refreshes with its output complete
    (a piped table flushed, the live table left on screen) instead of dying mid-write."""
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def _wait(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` unless ``stop`` is set first; True if it was."""
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        return False
    return True


async def _run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from autoscaler.controller.options import config_from_args
    from autoscaler.k8s.kubeconfig import load_kubeconfig

    kube = load_kubeconfig(args.kubeconfig or None, args.context)
    rec = Recommender(kube, config_from_args(args), None if args.all_namespaces else args.namespace, args.names)
    console = Console()
    # a file or a pipe gets whole lines: explanations are not folded into an 80-column width
    wide = console if console.is_terminal else Console(width=max(console.width, 200))
    try:
        if not args.watch:
            rows = await rec.snapshot()
            if args.output == "table":
                if not rows:
                    print("No resources found", file=sys.stderr)
                else:
                    wide.print(render_table(rows, args.all_namespaces))
            else:
                sys.stdout.write(render_doc(rows, args.output) + "\n")
            return 0
        stop = _stop_on_signals()
        if args.output != "table" or not console.is_terminal:
            # one whole snapshot per refresh, flushed, as `kubectl get -w` appends to a pipe
            first = True
            while not stop.is_set():
                rows = await rec.snapshot()
                if args.output != "table":
                    sys.stdout.write(render_doc(rows, args.output) + "\n---\n")
                else:
                    if not first:
                        wide.print()
                    wide.print(render_table(rows, args.all_namespaces))
                sys.stdout.flush()
                first = False
                await _wait(stop, args.interval)
            return 0
        from rich.live import Live

        with Live(render_table(await rec.snapshot(), args.all_namespaces), console=console,
                  auto_refresh=False) as live:
            while not await _wait(stop, args.interval):
                live.update(render_table(await rec.snapshot(), args.all_namespaces), refresh=True)
        return 0
    finally:
        await rec.close()


def main(args: argparse.Namespace) -> int:
    from autoscaler.extras import require
    from autoscaler.k8s.kubeconfig import KubeConfigError

    require("recommend", "cli")
    from autoscaler.k8s.rest import KubeError

    try:
        return asyncio.run(_run(args))
    except KeyboardInterrupt:
        return 0
    except (KubeConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KubeError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
