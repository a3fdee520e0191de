"""Record a load trace from a cluster (real or emulated) for `autoscaler sim replay`.

`autoscaler record -f TRACE` watches Pods, Deployments, StatefulSets and HorizontalPodAutoscalers
and records per-container CPU and memory samples, pod lifecycle, requests and limits, replica
counts and HPA specs; it writes the trace when --duration has passed or on Ctrl-C. The samples
come from its own metrics collector (the same scraper and window store as `autoscaler run`, with
metrics-server's kubelet flags), or with --metrics-source=metrics-api from the cluster's
metrics.k8s.io (metrics-server or `autoscaler run`): the very values the cluster's HPAs read,
and no kubelet access needed. The output format follows the file name: native
(.json / .json.gz, docs/trace-format.md) or long CSV (.csv / .csv.gz).

`autoscaler record --convert IN -f OUT` converts between the two formats instead.

`autoscaler record --prometheus URL --start TIME [--end TIME] -f TRACE` imports the history a
Prometheus (or Thanos, Mimir, VictoriaMetrics) already holds: cAdvisor's container CPU and memory
and kube-state-metrics' pods, owners, requests, readiness, replicas and HPAs, into the same native
trace (docs/prometheus-import.md).
"""

from __future__ import annotations

import argparse
import sys

from autoscaler.k8s.timefmt import duration_flag

HELP = __doc__ or ""
SOURCES = ("kubelets", "metrics-api")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from autoscaler.scraper.options import add_arguments as add_scrape_flags

    p.add_argument("-f", "--filename", required=True, metavar="TRACE", help="trace file to write (.json[.gz] or .csv[.gz])")
    p.add_argument("--convert", metavar="IN", help="convert the trace IN to --filename instead of recording")
    p.add_argument("--skip-invalid", action="store_true", help="with --convert: skip and count invalid CSV rows")
    p.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, $KUBECONFIG or ~/.kube/config)")
    p.add_argument("--context", help="kubeconfig context")
    p.add_argument("-n", "--namespace", help="record only this namespace (default: all)")
    p.add_argument("--duration", type=duration_flag, default=3600.0,
                   help="how long to record (default 1h0m0s); Ctrl-C or SIGTERM ends early and still writes the trace")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on a terminal")
    p.add_argument("--metrics-source", choices=SOURCES, default="kubelets",
                   help="where samples come from: 'kubelets' (default) scrapes every kubelet as metrics-server "
                        "does (the --kubelet-* flags apply); 'metrics-api' polls metrics.k8s.io PodMetrics, "
                        "the values the cluster's HPAs read, every quarter --metric-resolution")
    add_scrape_flags(p)
    add_prometheus_arguments(p)


def add_prometheus_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("import from Prometheus (docs/prometheus-import.md)")
    g.add_argument("--prometheus", metavar="URL",
                   help="import the history of this Prometheus-compatible server (Prometheus, Thanos, Mimir, "
                        "VictoriaMetrics; the URL the /api/v1/ paths hang off) instead of recording live")
    g.add_argument("--start", metavar="TIME", help="with --prometheus: RFC 3339, Unix seconds or now-DURATION (now-7d)")
    g.add_argument("--end", metavar="TIME", help="with --prometheus: as --start (default: now)")
    g.add_argument("--selector", metavar="MATCHERS",
                   help='with --prometheus: PromQL label matchers added to every query, e.g. \'cluster="eu-1"\'')
    g.add_argument("--workload", metavar="KIND/NAME", help="with --prometheus: import only this workload (deployment/web)")
    g.add_argument("--step", type=duration_flag, metavar="DURATION",
                   help="with --prometheus: the scrape interval (default: the median spacing of the CPU samples)")
    g.add_argument("--max-gap", type=duration_flag, default=300.0, metavar="DURATION",
                   help="with --prometheus: a longer stretch without CPU samples is an error (default 5m0s)")
    g.add_argument("--allow-gaps", action="store_true", help="with --prometheus: import across gaps (warn only)")
    g.add_argument("--prometheus-token-file", metavar="FILE",
                   help="bearer token file (default: $PROMETHEUS_TOKEN when set)")
    g.add_argument("--prometheus-user", metavar="NAME", help="basic auth user (password from "
                   "--prometheus-password-file or $PROMETHEUS_PASSWORD)")
    g.add_argument("--prometheus-password-file", metavar="FILE", help="basic auth password file")
    g.add_argument("--prometheus-ca-file", metavar="FILE", help="CA bundle to verify the server with")
    g.add_argument("--prometheus-cert-file", metavar="FILE", help="client certificate (TLS client auth)")
    g.add_argument("--prometheus-key-file", metavar="FILE", help="client certificate's key")
    g.add_argument("--prometheus-insecure-skip-verify", action="store_true",
                   help="do not verify the server's certificate (insecure)")
    g.add_argument("--prometheus-header", action="append", metavar="'NAME: VALUE'",
                   help="extra request header, repeatable (e.g. 'X-Scope-OrgID: team-a' for Mimir)")
    g.add_argument("--prometheus-metric", action="append", metavar="KEY=NAME",
                   help="a metric's name where it differs from the default (e.g. requests=kube_pod_container_"
                        "resource_requests_cpu_cores); keys in docs/prometheus-import.md")
    g.add_argument("--prometheus-label", action="append", metavar="KEY=NAME",
                   help="cAdvisor's label names where they differ: namespace, pod, container (e.g. pod=pod_name)")


def main(args: argparse.Namespace) -> int:
    from sim.replay.trace import TraceError, read_trace, write_trace

    if args.convert:
        try:
            trace, skipped = read_trace(args.convert, skip_invalid=args.skip_invalid)
            write_trace(trace, args.filename)
        except (TraceError, OSError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        if skipped:
            print(f"warning: skipped {skipped} invalid CSV row(s)", file=sys.stderr)
        return 0
    if args.prometheus:
        return _import_prometheus(args)
    import asyncio

    from autoscaler.k8s.kubeconfig import KubeConfigError, load_kubeconfig
    from autoscaler.k8s.timefmt import format_duration
    from autoscaler.scraper.options import MIN_RESOLUTION, ScrapeOptions, options_from_args

    try:
        if args.metrics_source == "kubelets":
            options = options_from_args(args)
        elif args.metric_resolution < MIN_RESOLUTION:
            raise ValueError(f"metric-resolution should be a time duration at least {format_duration(MIN_RESOLUTION)}")
        else:  # the kubelet flags do not apply: the resolution is the trace's step and sets the poll period
            options = ScrapeOptions(metric_resolution=args.metric_resolution,
                                    metric_history=max(args.metric_history, args.metric_resolution))
        kube = load_kubeconfig(args.kubeconfig, args.context)
    except (ValueError, KubeConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    trace = asyncio.run(_record_until_signal(kube, options, args))
    write_trace(trace, args.filename)
    print(f"wrote {args.filename}: {sum(len(w.pods) for w in trace.workloads)} pods in "
          f"{len(trace.workloads)} workloads", file=sys.stderr)
    return 0


def _import_prometheus(args: argparse.Namespace) -> int:
    import time

    from sim.replay.prometheus import PrometheusError, connection_from_args, import_trace, options_from_args
    from sim.replay.trace import write_trace

    try:
        conn = connection_from_args(args)
        opts = options_from_args(args, time.time())
    except (ValueError, OSError, PrometheusError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    bar = None if args.no_progress or not sys.stderr.isatty() else _QueryBar()
    t0 = time.monotonic()
    try:
        trace, requests = import_trace(conn, opts, progress=bar.update if bar else None)
    except PrometheusError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        if bar is not None:
            bar.close()
    write_trace(trace, args.filename)
    samples = sum(len(c.t) for w in trace.workloads for p in w.pods for c in p.containers)
    print(f"wrote {args.filename}: {sum(len(w.pods) for w in trace.workloads)} pods in {len(trace.workloads)} "
          f"workloads, {samples:,} samples at {trace.resolution:g}s from {requests} queries in "
          f"{time.monotonic() - t0:.1f}s", file=sys.stderr)
    return 0


class _QueryBar:
    """Queries done against queries planned."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        self._bar = Progress("importing", BarColumn(), MofNCompleteColumn(), "queries", TimeElapsedColumn(),
                             transient=True)
        self._task = self._bar.add_task("import", total=None)
        self._bar.start()

    def update(self, done: int, total: int) -> None:
        self._bar.update(self._task, completed=done, total=total)

    def close(self) -> None:
        self._bar.stop()


async def _record_until_signal(kube, options, args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """``record`` for the command line: SIGINT/SIGTERM end the recording early (the trace so far is
    still written, instead of a Ctrl-C losing hours of samples), with a progress bar on a terminal."""
    import asyncio
    import signal

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def interrupted() -> None:
        if not stop.is_set():
            print("stopping: writing what was recorded so far", file=sys.stderr)
            stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, interrupted)
    progress = None if args.no_progress or not sys.stderr.isatty() else _ProgressBar(args.duration)
    try:
        return await record(kube, options, args.duration, args.namespace, stop=stop,
                            on_observe=progress.update if progress else None, source=args.metrics_source)
    finally:
        if progress is not None:
            progress.close()


class _ProgressBar:
    """Recording time against --duration, with what the trace holds so far."""

    def __init__(self, duration: float) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self._bar = Progress("recording", BarColumn(), TimeElapsedColumn(), "of", TextColumn(_hms(duration)),
                             TimeRemainingColumn(), TextColumn("{task.fields[what]}"), transient=True)
        self._task = self._bar.add_task("record", total=duration, what="")
        self._bar.start()

    def update(self, elapsed: float, pods: int, samples: int, failing: str) -> None:
        what = f"{pods} pods, {samples:,} samples" + (f", {failing}" if failing else "")
        self._bar.update(self._task, completed=elapsed, what=what)

    def close(self) -> None:
        self._bar.stop()


def _hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


async def record(kube, options, duration: float, namespace: str | None = None, *,  # type: ignore[no-untyped-def]
                 clock=None, stop=None, on_observe=None, source: str = "kubelets"):  # type: ignore[no-untyped-def]
    """Collect for ``duration`` seconds of ``clock`` (Unix seconds; default wall time) and return the trace.

    ``source`` is ``kubelets`` (our own collector and window store) or ``metrics-api`` (PodMetrics
    polled from metrics.k8s.io). ``stop`` (an asyncio.Event) ends the recording early;
    ``on_observe(elapsed, pods, samples, what is failing)`` is called after every poll (the progress bar).
    """
    import asyncio
    import contextlib
    import time

    from autoscaler.k8s.informer import Informer
    from sim.replay.recorder import TraceRecorder

    now = clock or time.time
    stop = stop or asyncio.Event()
    prefix = f"/namespaces/{namespace}" if namespace else ""
    informers = {
        "pods": Informer(kube, f"/api/v1{prefix}/pods", name="pods"),
        "deployments": Informer(kube, f"/apis/apps/v1{prefix}/deployments", name="deployments"),
        "statefulsets": Informer(kube, f"/apis/apps/v1{prefix}/statefulsets", name="statefulsets"),
        "hpas": Informer(kube, f"/apis/autoscaling/v2{prefix}/horizontalpodautoscalers", name="hpas"),
    }
    rec = TraceRecorder(options.metric_resolution, namespace)
    usage = (_MetricsAPISource(kube, f"/apis/metrics.k8s.io/v1beta1{prefix}/pods", rec) if source == "metrics-api"
             else _KubeletSource(kube, options, rec, now))

    def workload_changed(kind: str):  # type: ignore[no-untyped-def]
        # spec.replicas is recorded when it changes, not at the next poll (the replay takes the
        # recorded controller's sync phase from these times)
        def on(event: str, obj: dict, old: dict | None) -> None:
            if event != "DELETED":
                rec.observe_workloads([dict(obj, kind=kind)], [], now())
        return on

    informers["deployments"].add_handler(workload_changed("Deployment"))
    informers["statefulsets"].add_handler(workload_changed("StatefulSet"))
    tasks = [asyncio.create_task(inf.run(stop)) for inf in informers.values()]
    tasks += usage.start(stop)
    t_start = now()
    t_end = t_start + duration

    async def observe() -> None:
        t = now()
        rec.observe_pods(informers["pods"].items(), t)
        wls = [dict(o, kind="Deployment") for o in informers["deployments"].items()]
        wls += [dict(o, kind="StatefulSet") for o in informers["statefulsets"].items()]
        rec.observe_workloads(wls, informers["hpas"].items(), t)
        await usage.observe()
        if on_observe is not None:
            on_observe(min(t - t_start, duration), len(rec.pods), rec.samples, usage.failing())

    try:
        for what, inf in informers.items():
            if not await inf.wait_synced(30.0):
                # e.g. RBAC: without Deployments the trace has no spec.replicas, without HPAs no HPA
                print(f"warning: cannot list {what} (see the log); the trace will lack them", file=sys.stderr)
        period = usage.period(options)
        while not stop.is_set() and now() < t_end:
            await observe()
            wall = max(0.05, min(period, t_end - now()) / getattr(clock, "speed", 1.0))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=wall)
        await observe()
    finally:
        stop.set()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, timeout=10)
        await usage.close()
    return rec.trace(source="autoscaler record")


class _KubeletSource:
    """Samples from our own collector: every kubelet scraped into a window store, copied each poll."""

    def __init__(self, kube, options, rec, now) -> None:  # type: ignore[no-untyped-def]
        from autoscaler.scraper.collector import Collector
        from autoscaler.storage.window import WindowStore

        self.storage = WindowStore(options.metric_resolution, options.metric_history)
        self.collector = Collector(options, self.storage, kube, clock=now)
        self.rec = rec

    def start(self, stop):  # type: ignore[no-untyped-def]
        import asyncio

        return [asyncio.create_task(self.collector.run(stop))]

    @staticmethod
    def period(options) -> float:  # type: ignore[no-untyped-def]
        """Poll well inside the store's history so no sample is lost."""
        return max(1.0, min(options.metric_resolution, options.metric_history / 4))

    async def observe(self) -> None:
        self.rec.observe_usage(self.storage)

    def failing(self) -> str:
        cycle = self.collector.last_cycle
        return f"{cycle.failed} nodes failing" if cycle and cycle.failed else ""

    async def close(self) -> None:
        return None


class _MetricsAPISource:
    """Samples polled from metrics.k8s.io: each PodMetrics lasts one scrape, so polling four times
    per resolution sees every one; a failed read is reported and retried at the next poll."""

    def __init__(self, kube, path: str, rec) -> None:  # type: ignore[no-untyped-def]
        from autoscaler.k8s.rest import KubeClient

        self.client = KubeClient(kube, user_agent="autoscaler-record")
        self.path = path
        self.rec = rec
        self.error: str | None = None

    def start(self, stop) -> list:  # type: ignore[no-untyped-def]
        return []

    @staticmethod
    def period(options) -> float:  # type: ignore[no-untyped-def]
        return max(0.25, options.metric_resolution / 4)

    async def observe(self) -> None:
        from autoscaler.k8s.rest import KubeError

        try:
            body = await self.client.get(self.path)
        except KubeError as e:
            if self.error is None:
                print(f"warning: cannot read pod metrics: {e}; retrying", file=sys.stderr)
            self.error = str(e)
            return
        if self.error is not None:
            print("pod metrics readable again", file=sys.stderr)
            self.error = None
        self.rec.observe_pod_metrics(body.get("items") or [])

    def failing(self) -> str:
        return "metrics API failing" if self.error else ""

    async def close(self) -> None:
        await self.client.close()
