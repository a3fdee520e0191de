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
  autoscaler sim up -f examples/scenarios/web-diurnal.yaml --with-autoscaler
  autoscaler sim up -f examples/scenarios/web-diurnal.yaml --control-plane=real --with-autoscaler

With --control-plane=real the API server is not our emulator but the upstream programs: etcd,
kube-apiserver, kube-controller-manager (with the built-in HPA controller) and kube-scheduler on
127.0.0.1, built by `python3 scripts/build_control_plane.py` (or the release binaries named with
--binaries DIR). The nodes are our kubelets joined as hollow nodes: they register with their own
certificates, run the pods the real scheduler binds to them and serve kubelet stats. Their logs go
to STATE_DIR/logs/. --speed is for the emulated control plane only.

With --with-autoscaler the real `autoscaler run` (metrics pipeline and HPA controller) starts as a
separate process against the cluster, registered as the APIServices
v1.metrics.k8s.io and v1beta1.metrics.k8s.io behind the emulator's aggregation layer, so `kubectl top`, `kubectl get hpa`
and `autoscaler recommend` work at once. Its log goes to STATE_DIR/autoscaler/autoscaler.log.

--emulated-version (1.37 by default, or 1.36) and --feature-gates select the Kubernetes version
whose HPA behaviour the cluster has: they go to the emulated API server's HPA strategy and to the
autoscaler it starts; with --control-plane=real a non-default version or gates go to
kube-apiserver, kube-controller-manager and kube-scheduler as their own --emulated-version and
--feature-gates. On the real control plane our controller (dry-run) gets kcm's sync period and
logs every sync, and kcm logs its HPA decisions (--vmodule=horizontal=4), so `autoscaler sim
agree` can compare the two.
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
                        help="where the PKI (private keys included), kubeconfigs and logs are written, and kept "
                             "after the stop (default: a new temporary directory, deleted at the stop)")
    parser.add_argument("--keep-state-dir", action="store_true",
                        help="keep the temporary state directory after the stop (to read its logs)")
    parser.add_argument("--speed", type=float, default=1.0, metavar="FACTOR",
                        help="virtual time runs FACTOR times faster than real time (default 1); objects then "
                             "carry timestamps ahead of the wall clock, which kubectl shows as <invalid> ages")
    parser.add_argument("--kubelet-faults", default="", metavar="NODE=FAULT[,...]",
                        help="inject kubelet faults: slow[:SECONDS], http500, garbage, truncated, stopped, wrong_ca")
    parser.add_argument("--with-autoscaler", action="store_true",
                        help="also run `autoscaler run` against the cluster, registered as metrics.k8s.io")
    parser.add_argument("--controller-mode", choices=["active", "dry-run", "off"], default=None,
                        help="with --with-autoscaler: our HPA controller's mode (default: active on the emulated "
                             "control plane, which has no built-in HPA controller; dry-run on the real one, where "
                             "kube-controller-manager's HPA controller scales)")
    parser.add_argument("--control-plane", choices=["emulated", "real"], default="emulated",
                        help="emulated: our own API server (default, starts in a second); real: the upstream "
                             "etcd, kube-apiserver, kube-controller-manager and kube-scheduler with hollow nodes")
    parser.add_argument("--binaries", metavar="DIR",
                        help="with --control-plane=real: take etcd, kube-apiserver, kube-controller-manager and "
                             "kube-scheduler from DIR (default: the build cache of "
                             "scripts/build_control_plane.py, then PATH)")
    from autoscaler.controller.options import add_version_arguments

    add_version_arguments(parser)  # --emulated-version, --feature-gates
    parser.add_argument("--hpa-sync-period", default=None, metavar="DURATION",
                        help="with --control-plane=real: kube-controller-manager's "
                             "--horizontal-pod-autoscaler-sync-period (default 15s)")


def version_flags(version: str, gates: dict[str, bool]) -> list[str]:
    """``--emulated-version``/``--feature-gates`` for another program, only where they differ from
    the defaults (the upstream binaries are 1.37)."""
    from autoscaler.hpa.versions import DEFAULT_VERSION

    out = [] if version == DEFAULT_VERSION else [f"--emulated-version={version}"]
    if gates:
        out.append("--feature-gates=" + ",".join(f"{k}={str(v).lower()}" for k, v in gates.items()))
    return out


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

    from autoscaler.extras import require
    from autoscaler.hpa.gates import config_for

    require("sim up", "sim")
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
        if args.with_autoscaler and args.speed != 1:
            return fail("--with-autoscaler runs the autoscaler on the wall clock: use it with --speed 1")
        real = args.control_plane == "real"
        if real and args.speed != 1:
            return fail("--speed applies to the emulated control plane; the real one runs on the wall clock")
        if scenario.external_metrics and not real:
            return fail("the scenario's externalMetrics are served on --control-plane=real only")
        if (args.binaries or args.hpa_sync_period) and not real:
            return fail(f"{'--binaries' if args.binaries else '--hpa-sync-period'} is for --control-plane=real")
        try:
            config_for(args.emulated_version, args.feature_gates)
        except ValueError as exc:
            return fail(f"--feature-gates: {exc}")
    except (ScenarioError, ValueError) as exc:
        return fail(str(exc))
    version_args = version_flags(args.emulated_version, args.feature_gates)

    temporary = not args.state_dir
    state_dir = Path(args.state_dir) if args.state_dir else Path(tempfile.mkdtemp(prefix="autoscaler-sim-"))
    controller_mode = args.controller_mode or ("dry-run" if real else "active")
    if real:
        from sim.controlplane.cluster import RealCluster
        from sim.controlplane.controlplane import ControlPlaneOptions
        from sim.controlplane.hpa_flags import KCM_HPA_VMODULE

        upstream = {prog: list(version_args)
                    for prog in ("kube-apiserver", "kube-controller-manager", "kube-scheduler")}
        upstream["kube-controller-manager"].append(KCM_HPA_VMODULE)  # each HPA decision, for `sim agree`
        cluster: EmulatedCluster = RealCluster(
            scenario, state_dir, options=ControlPlaneOptions(binaries=args.binaries,
                                                             hpa_sync_period=args.hpa_sync_period or "15s",
                                                             extra_args=upstream))
    else:
        cluster = EmulatedCluster(scenario, state_dir, clock=Clock(args.speed), emulated_version=args.emulated_version,
                                  feature_gates=args.feature_gates)
    kind = "Kubernetes control plane (upstream programs, hollow nodes)" if real else "Emulated cluster"

    async def run() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await cluster.start()
        except Exception as exc:
            await cluster.stop()
            print(f"error: cannot start the {'real control plane' if real else 'emulated cluster'}: {exc}",
                  file=sys.stderr)
            return 1
        kubeconfig = cluster.admin_kubeconfig
        if args.kubeconfig:
            Path(args.kubeconfig).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(cluster.admin_kubeconfig, args.kubeconfig)
            kubeconfig = Path(args.kubeconfig)
        speed = f", virtual time x{args.speed:g}" if args.speed != 1 else ""
        print(f'{kind} "{scenario.name}" is running: {len(scenario.nodes)} nodes, '
              f"{len(scenario.workloads)} workloads, {len(scenario.hpas)} HPAs{speed}")
        print(f"API server:  {cluster.url}")
        if real:
            print(f"Logs:        {state_dir / 'logs'}")
        print(f"State dir:   {state_dir}")
        print("Point kubectl at it:")
        print(f"  export KUBECONFIG={kubeconfig}")
        print("  kubectl get nodes,pods,deploy,hpa -A")
        print(f"Metrics pipeline credentials (ServiceAccount kube-system/metrics-server): {cluster.metrics_kubeconfig}")
        proc = None
        if args.with_autoscaler:
            from sim.autoscaler_proc import start_autoscaler

            extra = list(version_args)
            if real:  # kcm's sync period and a record of every dry-run sync for `sim agree`
                from sim.controlplane.hpa_flags import ours_flags

                extra += ours_flags(args.hpa_sync_period or "15s")
            proc, port = await start_autoscaler(cluster, state_dir / "autoscaler", controller_mode=controller_mode,
                                                extra_args=extra)
            print(f"Autoscaler:  `autoscaler run --controller-mode={controller_mode}` on https://127.0.0.1:{port}"
                  f" (pid {proc.pid}), registered as APIServices v1.metrics.k8s.io and v1beta1.metrics.k8s.io")
            print(f"             log: {state_dir / 'autoscaler' / 'autoscaler.log'}")
            print("Metrics appear after two scrapes (about 30 s):")
            print("  kubectl top nodes; kubectl top pods -A --containers; kubectl get hpa -w")
            print(f"  autoscaler recommend --kubeconfig {kubeconfig}")
        for line in first_scale_ups(scenario, args.speed):
            print(line)
        print("Press Ctrl-C to stop.", flush=True)
        rc = 0
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=1.0)
            except TimeoutError:
                if real:
                    try:
                        cluster.control_plane.check_running()  # type: ignore[attr-defined]
                    except RuntimeError as exc:
                        print(f"error: {exc}", file=sys.stderr)
                        rc = 1
                        break
                if proc is not None and proc.poll() is not None:
                    print(f"error: the autoscaler exited with code {proc.returncode}; see its log", file=sys.stderr)
                    await cluster.stop()
                    return 1
        if proc is not None:
            proc.terminate()
            try:
                await asyncio.to_thread(proc.wait, 15)
            except Exception:
                proc.kill()
        print(f"Stopping the {'control plane' if real else 'emulated cluster'} ...", flush=True)
        await cluster.stop()
        return rc

    try:
        return asyncio.run(run())
    finally:
        if temporary and not args.keep_state_dir:
            shutil.rmtree(state_dir, ignore_errors=True)
            print(f"Deleted the state directory {state_dir} (its private keys and logs); "
                  "--keep-state-dir keeps it", file=sys.stderr)
        else:
            print(f"The state directory {state_dir} is kept; it holds private keys: delete it when done",
                  file=sys.stderr)


def first_scale_ups(scenario, speed: float, horizon: float = 6 * 3600.0) -> list[str]:  # type: ignore[no-untyped-def]
    """For each HPA on CPU utilization, when its workload's load first asks for more pods than it
    starts with, so a user knows how long to wait before the first scale-up (the HPA acts one sync
    period and about two scrapes after that). Noise and CPU limits are left out: it is a forecast."""
    import numpy as np

    from autoscaler.k8s.quantity import parse_quantity
    from autoscaler.k8s.timefmt import format_duration

    out = []
    t = np.arange(0.0, horizon, 5.0)
    for hpa in scenario.hpas:
        spec, name = hpa["spec"], hpa["metadata"]["name"]
        util = next((m["resource"]["target"].get("averageUtilization") for m in spec.get("metrics") or []
                     if m.get("type") == "Resource" and m["resource"]["name"] == "cpu"
                     and m["resource"]["target"].get("type") == "Utilization"), None)
        wl = next((w for w in scenario.workloads if w.name == spec["scaleTargetRef"]["name"]
                   and w.namespace == hpa["metadata"]["namespace"]), None)
        if util is None or wl is None:
            continue
        request = sum(float(parse_quantity(str(((c.get("resources") or {}).get("requests") or {}).get("cpu", 0))))
                      for c in wl.containers)
        pods = min(max(wl.replicas, spec.get("minReplicas", 1)), spec["maxReplicas"])
        if not request or not pods:
            continue
        over = np.flatnonzero(wl.load.demand(t) / (pods * request) > util / 100 * 1.1)  # beyond the tolerance
        if not len(over):
            out.append(f"HPA {name}: the load stays within {pods} pods for the first {format_duration(horizon)}")
            continue
        at = float(t[over[0]])
        when = format_duration(at) + (f" of virtual time ({format_duration(at / speed)} wall)" if speed != 1 else "")
        out.append(f"HPA {name}: the load first asks for more than {pods} pods at {when}; the HPA follows "
                   "one sync period and about two scrapes later")
    return out
