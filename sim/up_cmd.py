"""Run an emulated Kubernetes cluster (API server, nodes, kubelets) in the foreground.

The cluster comes from a scenario file (-f: nodes, workloads with requests/limits and load
models, HPAs) or from --nodes/--pods-per-node. Every node gets an HTTPS kubelet on 127.0.0.1
serving /metrics/resource and /stats/summary, so a metrics pipeline can scrape it like a real
cluster. The state directory receives the PKI, an admin kubeconfig (client certificate) and
metrics-server.kubeconfig (a token of ServiceAccount kube-system/metrics-server).

Examples:
  autoscaler sim up -f examples/scenarios/web-diurnal.yaml
  autoscaler sim up --nodes 50 --pods-per-node 30 --speed 10 --state-dir /tmp/sim
  autoscaler sim up --kubelet-faults worker-2=http500,worker-3=slow:3
"""

from __future__ import annotations

import argparse

HELP = __doc__ or ""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--filename", dest="scenario", metavar="SCENARIO.yaml",
                        help="scenario file (nodes, workloads, load models, HPAs)")
    parser.add_argument("--nodes", type=int, default=None, help="number of worker nodes (without -f; default 3)")
    parser.add_argument("--pods-per-node", type=int, default=None,
                        help="pods per node of the default workload (without -f; default 2)")
    parser.add_argument("--kubeconfig", metavar="PATH", help="also write the admin kubeconfig here")
    parser.add_argument("--state-dir", metavar="DIR",
                        help="where the PKI and kubeconfigs are written (default: a new temporary directory)")
    parser.add_argument("--speed", type=float, default=1.0, metavar="FACTOR",
                        help="virtual time runs FACTOR times faster than real time (default 1)")
    parser.add_argument("--kubelet-faults", default="", metavar="NODE=FAULT[,...]",
                        help="inject kubelet faults: slow[:SECONDS], http500, garbage, truncated, stopped, wrong_ca")


def _parse_faults(text: str) -> dict[str, str]:
    from sim.kubelet.server import FAULT_KINDS, Fault

    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        node, sep, fault = part.partition("=")
        if not sep or not node or not fault:
            raise ValueError(f"--kubelet-faults: expected NODE=FAULT, got {part!r}")
        try:
            Fault.parse(fault)
        except ValueError:
            raise ValueError(f"--kubelet-faults: {node}: unsupported fault {fault!r}; expected one of "
                             f"{', '.join(FAULT_KINDS)}") from None
        out[node] = fault
    return out


def main(args: argparse.Namespace) -> int:
    import asyncio
    import shutil
    import signal
    import sys
    import tempfile
    from pathlib import Path

    from sim.clock import Clock
    from sim.cluster import EmulatedCluster
    from sim.scenario import Scenario, ScenarioError, load_scenario

    def fail(message: str) -> int:
        print(f"error: {message}", file=sys.stderr)
        return 1

    try:
        if args.scenario:
            if args.nodes is not None or args.pods_per_node is not None:
                return fail("use either -f SCENARIO or --nodes/--pods-per-node, not both")
            scenario = load_scenario(args.scenario)
        else:
            scenario = Scenario.default(nodes=args.nodes if args.nodes is not None else 3,
                                        pods_per_node=args.pods_per_node if args.pods_per_node is not None else 2)
        faults = _parse_faults(args.kubelet_faults)
        unknown = set(faults) - {n.name for n in scenario.nodes}
        if unknown:
            return fail(f"--kubelet-faults: no such node: {', '.join(sorted(unknown))}")
        scenario.faults.update(faults)
        if args.speed <= 0:
            return fail(f"--speed must be positive, got {args.speed}")
    except (ScenarioError, ValueError) as exc:
        return fail(str(exc))

    state_dir = Path(args.state_dir) if args.state_dir else Path(tempfile.mkdtemp(prefix="autoscaler-sim-"))
    cluster = EmulatedCluster(scenario, state_dir, clock=Clock(args.speed))

    async def run() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await cluster.start()
        except Exception as exc:
            await cluster.stop()
            print(f"error: cannot start the emulated cluster: {exc}", file=sys.stderr)
            return 1
        kubeconfig = cluster.admin_kubeconfig
        if args.kubeconfig:
            Path(args.kubeconfig).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(cluster.admin_kubeconfig, args.kubeconfig)
            kubeconfig = Path(args.kubeconfig)
        speed = f", virtual time x{args.speed:g}" if args.speed != 1 else ""
        print(f'Emulated cluster "{scenario.name}" is running: {len(scenario.nodes)} nodes, '
              f"{len(scenario.workloads)} workloads, {len(scenario.hpas)} HPAs{speed}")
        print(f"API server:  {cluster.apiserver.url}")
        print(f"State dir:   {state_dir}")
        print("Point kubectl at it:")
        print(f"  export KUBECONFIG={kubeconfig}")
        print("  kubectl get nodes,pods,deploy,hpa -A")
        print(f"Metrics pipeline credentials (ServiceAccount kube-system/metrics-server): {cluster.metrics_kubeconfig}")
        print("Press Ctrl-C to stop.", flush=True)
        await stop.wait()
        print("Stopping the emulated cluster ...", flush=True)
        await cluster.stop()
        return 0

    return asyncio.run(run())
