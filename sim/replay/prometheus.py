"""Import a trace from Prometheus (or Thanos, Mimir, VictoriaMetrics: the same HTTP API).

The cluster's own history becomes a native trace (the format `autoscaler record` writes):

- CPU from cAdvisor's ``container_cpu_usage_seconds_total``, read as the **raw samples** (a range
  selector ``metric[span]`` evaluated at the end of each chunk), so every scrape keeps its own
  timestamp and the usage of each sample is the counter's increase since the previous scrape over
  the time between them: what metrics-server hands the HPA, not a rate smoothed over several
  scrapes. A counter that went down (a container restart) counts from zero, as Prometheus does.
- Working set from ``container_memory_working_set_bytes`` (the sample at the CPU sample's time).
- Requests and limits from kube-state-metrics' ``kube_pod_container_resource_requests`` /
  ``_limits`` (``resource``, ``unit``); pod to workload through ``kube_pod_owner`` and, for
  ReplicaSets, ``kube_replicaset_owner``; creation and start from ``kube_pod_created`` /
  ``kube_pod_start_time``; readiness and lifetime from ``kube_pod_status_ready`` (a range query at
  the scrape interval; ``kube_pod_status_ready_time`` when present gives the exact time).
- Replicas (``kube_deployment_spec_replicas``, ``kube_statefulset_replicas``) as the recorded
  spec.replicas, and the HPA spec rebuilt from ``kube_horizontalpodautoscaler_*`` (min, max and
  Resource / ContainerResource targets; see docs/prometheus-import.md for what cannot be).

Every query is split so a series never has more than ``max_points`` (11,000, Prometheus's own
limit for range queries) points per request; failed requests are retried with backoff.
"""

from __future__ import annotations

import asyncio
import math
import re
import ssl
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from sim.replay.trace import ContainerTrace, HPARecord, PodTrace, Trace, WorkloadTrace

MAX_POINTS = 11_000
#: how far before --start the counters are read: the sample before the first gives its usage
LOOKBACK = 300.0
DEFAULT_STEP = 15.0
WORKLOAD_KINDS = ("Deployment", "StatefulSet")

#: metric names, overridable with --prometheus-metric KEY=NAME
METRICS = {
    "cpu": "container_cpu_usage_seconds_total",
    "memory": "container_memory_working_set_bytes",
    "requests": "kube_pod_container_resource_requests",
    "limits": "kube_pod_container_resource_limits",
    "pod_owner": "kube_pod_owner",
    "replicaset_owner": "kube_replicaset_owner",
    "pod_created": "kube_pod_created",
    "pod_start": "kube_pod_start_time",
    "pod_ready": "kube_pod_status_ready",
    "pod_ready_time": "kube_pod_status_ready_time",
    "deployment_replicas": "kube_deployment_spec_replicas",
    "statefulset_replicas": "kube_statefulset_replicas",
    "hpa_info": "kube_horizontalpodautoscaler_info",
    "hpa_min": "kube_horizontalpodautoscaler_spec_min_replicas",
    "hpa_max": "kube_horizontalpodautoscaler_spec_max_replicas",
    "hpa_target": "kube_horizontalpodautoscaler_spec_target_metric",
    "hpa_desired": "kube_horizontalpodautoscaler_status_desired_replicas",
}
#: label names of the container series (cAdvisor) and kube-state-metrics' pod series
LABELS = {"namespace": "namespace", "pod": "pod", "container": "container"}


class PrometheusError(RuntimeError):
    """A query that failed for good, or history that cannot make a trace; the message says which."""


@dataclass
class Connection:
    """How to reach the server: the options Prometheus's own HTTP clients take."""

    url: str
    bearer_token: str | None = None
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure_skip_verify: bool = False
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float = 120.0
    retries: int = 4
    backoff: float = 0.5

    def ssl_context(self) -> ssl.SSLContext | bool:
        return self._context() if self.url.startswith("https:") else False

    def _context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca_file)
        if self.cert_file:
            ctx.load_cert_chain(self.cert_file, self.key_file)
        if self.insecure_skip_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def request_headers(self) -> dict[str, str]:
        import base64

        h = {"Accept": "application/json", "User-Agent": "autoscaler-record"}
        if self.bearer_token and self.username:
            raise PrometheusError("give a bearer token or basic auth, not both")
        if self.bearer_token:
            h["Authorization"] = f"Bearer {self.bearer_token}"
        elif self.username is not None:
            cred = base64.b64encode(f"{self.username}:{self.password or ''}".encode()).decode()
            h["Authorization"] = f"Basic {cred}"
        h.update(self.headers)
        return h


@dataclass
class Series:
    labels: dict[str, str]
    t: np.ndarray
    v: np.ndarray


def parse_matrix(data: dict[str, Any]) -> list[Series]:
    """The series of a ``matrix`` (or ``vector``) result, times and values as float arrays."""
    kind, result = data.get("resultType"), data.get("result") or []
    out = []
    for r in result:
        values = [r["value"]] if kind == "vector" else r.get("values") or []
        if not values:
            continue
        arr = np.array(values, dtype=object)
        t = arr[:, 0].astype(np.float64)
        v = arr[:, 1].astype(str).astype(np.float64)  # "NaN", "+Inf" parse too
        out.append(Series(r.get("metric") or {}, t, v))
    return out


def join_series(parts: Iterable[Series]) -> list[Series]:
    """One series per label set: the pieces a chunked query returns, in time order, each time once."""
    groups: dict[tuple[tuple[str, str], ...], list[Series]] = {}
    for s in parts:
        groups.setdefault(tuple(sorted(s.labels.items())), []).append(s)
    out = []
    for pieces in groups.values():
        if len(pieces) == 1:
            out.append(pieces[0])
            continue
        t = np.concatenate([p.t for p in pieces])
        v = np.concatenate([p.v for p in pieces])
        order = np.argsort(t, kind="stable")
        t, v = t[order], v[order]
        keep = np.concatenate([np.diff(t) > 0.0005, [True]])  # a repeated time keeps its later piece
        out.append(Series(pieces[0].labels, t[keep], v[keep]))
    return out


def split_range(start: float, end: float, step: float, max_points: int = MAX_POINTS) -> list[tuple[float, float]]:
    """Consecutive ``[s, e]`` chunks covering ``start..end`` with at most ``max_points`` steps each
    (a range query over ``[s, e]`` at ``step`` returns ``floor((e - s) / step) + 1`` points)."""
    if not end > start:
        raise PrometheusError(f"--end ({end}) must be after --start ({start})")
    if not step > 0:
        raise PrometheusError(f"step must be positive, got {step}")
    span = step * (max_points - 1)
    chunks = []
    s = start
    while s < end:
        e = min(end, s + span)
        chunks.append((s, e))
        s = e + step if e < end else end
    return chunks


def raw_chunks(start: float, end: float, step: float, max_points: int = MAX_POINTS) -> list[tuple[float, float]]:
    """Chunks ``(s, e]`` for raw range selectors: ``metric[e - s]`` at ``e`` holds the samples in
    ``(s, e]``, so back-to-back chunks see each sample once. ``start`` itself is included."""
    span = step * (max_points - 1)
    n = max(1, math.ceil((end - start) / span))
    edges = np.linspace(start, end, n + 1)
    edges[0] -= 0.001
    return [(float(edges[i]), float(edges[i + 1])) for i in range(n)]


def _duration(seconds: float) -> str:
    """A PromQL duration in milliseconds (every server takes ``ms``)."""
    return f"{max(1, round(seconds * 1000))}ms"


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Client:
    """Queries over one keep-alive session, retried on connection errors, 429 and 5xx."""

    def __init__(self, conn: Connection, *, on_request: Callable[[], None] | None = None) -> None:
        self.conn = conn
        self.base = conn.url.rstrip("/")
        self.on_request = on_request
        self.requests = 0
        self._session: Any = None

    async def __aenter__(self) -> Client:
        import aiohttp

        headers = self.conn.request_headers()
        connector = aiohttp.TCPConnector(ssl=self.conn.ssl_context(), limit=8)
        self._session = aiohttp.ClientSession(connector=connector, headers=headers,
                                              timeout=aiohttp.ClientTimeout(total=self.conn.timeout))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def _get(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        import aiohttp
        import orjson

        last = ""
        for attempt in range(self.conn.retries + 1):
            if attempt:
                await asyncio.sleep(self.conn.backoff * 2 ** (attempt - 1))
            try:
                # POST with a form body, as Prometheus clients do: long selectors fit
                async with self._session.post(self.base + path, data=params) as resp:
                    body = await resp.read()
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError, OSError) as e:
                last = f"{type(e).__name__}: {e}"
                continue
            self.requests += 1
            try:
                doc = orjson.loads(body)
            except orjson.JSONDecodeError:
                doc = None
            if status == 200 and isinstance(doc, dict) and doc.get("status") == "success":
                if self.on_request is not None:
                    self.on_request()
                return doc.get("data") or {}
            detail = (f"{doc.get('errorType')}: {doc.get('error')}" if isinstance(doc, dict) and doc.get("error")
                      else body[:300].decode(errors="replace").strip())
            last = f"HTTP {status}: {detail}"
            if status == 429 or status >= 500:
                continue
            raise PrometheusError(f"{self.base}{path}: {last} (query {params.get('query')!r})")
        raise PrometheusError(f"{self.base}{path}: giving up after {self.conn.retries + 1} attempts: {last}")

    async def instant(self, query: str, time: float) -> list[Series]:
        return parse_matrix(await self._get("/api/v1/query", {"query": query, "time": f"{time:.3f}"}))

    async def range(self, query: str, start: float, end: float, step: float) -> list[Series]:
        return parse_matrix(await self._get("/api/v1/query_range", {
            "query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}))


@dataclass
class ImportOptions:
    start: float
    end: float
    namespace: str | None = None
    #: extra PromQL label matchers added to every selector, e.g. ``cluster="eu-1"``
    selector: str = ""
    #: "Kind/name" (or "name") to import only that workload
    workload: str | None = None
    #: the scrape interval; None = the median spacing of the CPU samples
    step: float | None = None
    max_points: int = MAX_POINTS
    #: a longer stretch without any CPU sample is an error
    max_gap: float = 300.0
    allow_gaps: bool = False
    metrics: dict[str, str] = field(default_factory=lambda: dict(METRICS))
    labels: dict[str, str] = field(default_factory=lambda: dict(LABELS))
    concurrency: int = 4


@dataclass
class _Pod:
    namespace: str
    name: str
    workload: tuple[str, str, str]
    created: float | None = None
    started: float | None = None
    ready: float | None = None
    first_seen: float | None = None
    last_seen: float | None = None
    resources: dict[str, list[float | None]] = field(default_factory=dict)


class Importer:
    def __init__(self, client: Client, opts: ImportOptions, *, progress: Callable[[int, int], None] | None = None,
                 warn: Callable[[str], None] | None = None) -> None:
        self.c = client
        self.o = opts
        self.m = opts.metrics
        self.lb = opts.labels
        self.progress = progress
        self.warn = warn or (lambda msg: print(f"warning: {msg}", file=sys.stderr))
        self.done = self.total = 0
        self.ksm_interval = DEFAULT_STEP
        self._sem = asyncio.Semaphore(opts.concurrency)
        kind, _, name = (opts.workload or "").rpartition("/")
        self.want_kind, self.want_name = (_canonical_kind(kind) if kind else None), (name or None)

    # --- selectors -------------------------------------------------------------------------

    def _sel(self, *matchers: str, pods: bool = False, cadvisor: bool = False) -> str:
        """``{...}`` with ``matchers``, the namespace, the --selector matchers and, with ``pods``, a
        pre-filter on the pod names of --workload. cAdvisor's label names are configurable,
        kube-state-metrics' are fixed."""
        ns_label, pod_label = (self.lb["namespace"], self.lb["pod"]) if cadvisor else ("namespace", "pod")
        ms = [m for m in matchers if m]
        if self.o.namespace:
            ms.append(f"{ns_label}={_quote(self.o.namespace)}")
        if self.want_name and pods:
            ms.append(f"{pod_label}=~{_quote(_pod_pattern(self.want_kind, self.want_name))}")
        if self.o.selector.strip():
            ms.append(self.o.selector.strip().strip("{}"))
        return "{" + ",".join(ms) + "}"

    # --- fetching ----------------------------------------------------------------------------

    async def _tick(self, coro: Any) -> Any:
        async with self._sem:
            result = await coro
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total)
        return result

    async def _raw(self, metric: str, sel: str, lookback: float = 0.0) -> list[Series]:
        """All raw samples of ``metric{sel}`` in the window (from ``lookback`` before it), chunk by chunk."""
        step = self.o.step or DEFAULT_STEP
        chunks = raw_chunks(self.o.start - lookback, self.o.end, step, self.o.max_points)
        parts = await asyncio.gather(*(self._tick(self.c.instant(f"{metric}{sel}[{_duration(e - s)}]", e))
                                       for s, e in chunks))
        return join_series(s for part in parts for s in part)

    async def _last(self, selector: str) -> list[Series]:
        """The last value of each series in the window (``last_over_time`` per chunk; later chunks win)."""
        step = self.o.step or DEFAULT_STEP
        chunks = raw_chunks(self.o.start, self.o.end, step, self.o.max_points)
        parts = await asyncio.gather(*(self._tick(self.c.instant(f"last_over_time({selector}[{_duration(e - s)}])", e))
                                       for s, e in chunks))
        return join_series(s for part in parts for s in part)

    async def _range(self, expr: str, step: float) -> list[Series]:
        chunks = split_range(self.o.start, self.o.end, step, self.o.max_points)
        parts = await asyncio.gather(*(self._tick(self.c.range(expr, s, e, step)) for s, e in chunks))
        return join_series(s for part in parts for s in part)

    # --- the import --------------------------------------------------------------------------

    async def run(self) -> Trace:
        o, m, lb = self.o, self.m, self.lb
        if not o.end > o.start:
            raise PrometheusError("--end must be after --start")
        n_raw = len(raw_chunks(o.start, o.end, o.step or DEFAULT_STEP, o.max_points))
        n_lb = len(raw_chunks(o.start - LOOKBACK, o.end, o.step or DEFAULT_STEP, o.max_points))
        self.total = 2 * n_lb + 12 * n_raw + 3 * len(split_range(o.start, o.end, o.step or DEFAULT_STEP, o.max_points))
        pod_sel = self._sel(pods=True)
        c = lb["container"]
        c_sel = self._sel(f'{c}!=""', f'{c}!="POD"', pods=True, cadvisor=True)
        cpu, mem, owners, rs_owners = await asyncio.gather(
            self._raw(m["cpu"], c_sel, LOOKBACK), self._raw(m["memory"], c_sel, LOOKBACK),
            self._last(m["pod_owner"] + self._sel('owner_is_controller="true"', pods=True)),
            self._last(m["replicaset_owner"] + self._sel()))
        if not cpu:
            raise PrometheusError(
                f"no {m['cpu']}{c_sel} samples between {_iso(o.start)} and {_iso(o.end)}: is cAdvisor "
                "(the kubelets' /metrics/cadvisor) scraped, and are the namespace, selector and time range right?")
        step = o.step or _median_spacing(cpu)
        self.total = 2 * n_lb + 12 * n_raw + 3 * len(split_range(o.start, o.end, step, o.max_points))
        pods = self._map_owners(owners, rs_owners)
        if not pods:
            raise PrometheusError(
                f"no {m['pod_owner']} series name an owner for the pods{' of ' + o.workload if o.workload else ''}: "
                "is kube-state-metrics scraped?")
        res_sel = self._sel('resource=~"cpu|memory"', pods=True)
        (requests, limits, created, started, ready_times, ready, deploy_reps, sts_reps, hpa_desired, hpa_info, hpa_min,
         hpa_max, hpa_target) = await asyncio.gather(
            self._last(m["requests"] + res_sel), self._last(m["limits"] + res_sel),
            self._last(m["pod_created"] + pod_sel), self._last(m["pod_start"] + pod_sel),
            self._last(m["pod_ready_time"] + pod_sel),
            self._raw(m["pod_ready"], self._sel('condition="true"', pods=True)),
            self._range(m["deployment_replicas"] + self._sel(), step),
            self._range(m["statefulset_replicas"] + self._sel(), step),
            self._range(m["hpa_desired"] + self._sel(), step),
            self._last(m["hpa_info"] + self._sel()), self._last(m["hpa_min"] + self._sel()),
            self._last(m["hpa_max"] + self._sel()), self._last(m["hpa_target"] + self._sel()))
        self._lifecycle(pods, created, started, ready_times, ready, step)
        self._resources(pods, requests, 0, 2)
        self._resources(pods, limits, 1, 3)
        containers = self._containers(pods, cpu, mem, step)
        # without the workload's own replicas series, the replicas its HPA asked for
        targets = {(x.labels.get("namespace", ""), x.labels.get("horizontalpodautoscaler", "")):
                   (x.labels.get("scaletargetref_kind", ""), x.labels.get("scaletargetref_name", "")) for x in hpa_info}
        desired = {(k[0], *targets[k]): x for x in hpa_desired
                   if (k := (x.labels.get("namespace", ""), x.labels.get("horizontalpodautoscaler", ""))) in targets}
        return self._assemble(pods, containers, step, deploy_reps, sts_reps, desired,
                              self._hpas(hpa_info, hpa_min, hpa_max, hpa_target))

    def _map_owners(self, owners: list[Series], rs_owners: list[Series]) -> dict[tuple[str, str], _Pod]:
        rs = {(s.labels.get("namespace", ""), s.labels.get("replicaset", "")):
              (s.labels.get("owner_kind", ""), s.labels.get("owner_name", "")) for s in rs_owners}
        pods: dict[tuple[str, str], _Pod] = {}
        for s in owners:
            ns, pod = s.labels.get("namespace", ""), s.labels.get("pod", "")
            kind, name = s.labels.get("owner_kind", ""), s.labels.get("owner_name", "")
            if not kind or kind == "<none>" or not name:
                continue
            if kind == "ReplicaSet":
                up = rs.get((ns, name))
                if up and up[0] and up[0] != "<none>" and up[1]:
                    kind, name = up
            if self.want_name and (name != self.want_name or (self.want_kind and kind != self.want_kind)):
                continue
            pods[(ns, pod)] = _Pod(ns, pod, (ns, kind, name))
        return pods

    def _lifecycle(self, pods: dict[tuple[str, str], _Pod], created: list[Series], started: list[Series],
                   ready_times: list[Series], ready: list[Series], step: float) -> None:
        def by_pod(series: list[Series]) -> Iterable[tuple[_Pod, Series]]:
            for s in series:
                p = pods.get((s.labels.get("namespace", ""), s.labels.get("pod", "")))
                if p is not None:
                    yield p, s

        for p, s in by_pod(created):
            p.created = float(s.v[-1])
        for p, s in by_pod(started):
            p.started = float(s.v[-1])
        exact: dict[tuple[str, str], float] = {}
        for p, s in by_pod(ready_times):
            exact[(p.namespace, p.name)] = float(s.v[-1])
        for p, s in by_pod(ready):  # raw samples: the pod existed at each, Ready where 1
            p.first_seen = float(s.t[0]) if p.first_seen is None else min(p.first_seen, float(s.t[0]))
            p.last_seen = float(s.t[-1]) if p.last_seen is None else max(p.last_seen, float(s.t[-1]))
            on = np.flatnonzero(s.v >= 1)
            if len(on):  # first scraped Ready (exact when kube_pod_status_ready_time says)
                t_ready = float(s.t[on[0]])
                p.ready = t_ready if p.ready is None else min(p.ready, t_ready)
        self.ksm_interval = _median_spacing(ready)
        for p in pods.values():
            if (p.namespace, p.name) in exact:
                p.ready = exact[(p.namespace, p.name)]

    def _resources(self, pods: dict[tuple[str, str], _Pod], series: list[Series], cpu_i: int, mem_i: int) -> None:
        for s in series:
            p = pods.get((s.labels.get("namespace", ""), s.labels.get("pod", "")))
            if p is None:
                continue
            res = p.resources.setdefault(s.labels.get("container", ""), [None, None, None, None])
            what = s.labels.get("resource")
            if what == "cpu":
                res[cpu_i] = float(s.v[-1])
            elif what == "memory":
                res[mem_i] = float(s.v[-1])

    def _containers(self, pods: dict[tuple[str, str], _Pod], cpu: list[Series], mem: list[Series],
                    step: float) -> dict[tuple[str, str], list[ContainerTrace]]:
        lb = self.lb
        groups: dict[tuple[str, str, str], list[Series]] = {}
        for s in cpu:
            key = (s.labels.get(lb["namespace"], ""), s.labels.get(lb["pod"], ""), s.labels.get(lb["container"], ""))
            if key[:2] in pods:
                groups.setdefault(key, []).append(s)
        mgroups: dict[tuple[str, str, str], list[Series]] = {}
        for s in mem:
            key = (s.labels.get(lb["namespace"], ""), s.labels.get(lb["pod"], ""), s.labels.get(lb["container"], ""))
            if key in groups:
                mgroups.setdefault(key, []).append(s)
        _check_gaps(groups, self.o, step, self.m["cpu"], self.warn)
        out: dict[tuple[str, str], list[ContainerTrace]] = {}
        missing = []
        for key, parts in sorted(groups.items()):
            t, cores = counter_rates(*_merge(parts))
            inside = t >= self.o.start
            t, cores = t[inside], cores[inside]
            if not len(t):
                continue
            mt, mv = _merge(mgroups.get(key, []))
            memory = sample_at(mt, mv, t)
            res = pods[key[:2]].resources.get(key[2])
            if res is None or res[0] is None:
                missing.append(f"{key[0]}/{key[1]}/{key[2]}")
                res = [None, None, None, None]
            out.setdefault(key[:2], []).append(ContainerTrace(key[2], t, cores, memory, *res))
        if missing:
            raise PrometheusError(
                f"no {self.m['requests']}{{resource=\"cpu\"}} for {len(missing)} container(s) "
                f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}): the HPA's utilization needs the "
                "CPU request; is kube-state-metrics scraped for the whole range (--prometheus-metric requests=NAME "
                "if it is named differently)?")
        return out

    def _hpas(self, info: list[Series], mins: list[Series], maxs: list[Series],
              targets: list[Series]) -> dict[tuple[str, str, str], dict[str, Any]]:
        """HPA manifests rebuilt from kube-state-metrics' spec series, keyed by their target."""
        def key(s: Series) -> tuple[str, str]:
            return s.labels.get("namespace", ""), s.labels.get("horizontalpodautoscaler", "")

        lo = {key(s): int(s.v[-1]) for s in mins}
        hi = {key(s): int(s.v[-1]) for s in maxs}
        metrics: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for s in targets:
            name, typ, container = (s.labels.get("metric_name", ""), s.labels.get("metric_target_type", ""),
                                    s.labels.get("container", ""))
            if name not in ("cpu", "memory"):
                self.warn(f"HPA {'/'.join(key(s))}: metric {name!r} is not a resource metric; kube-state-metrics "
                          "does not say its type (Pods, Object or External): left out, give the HPA with --hpa")
                continue
            v = float(s.v[-1])
            target: dict[str, Any] = ({"type": "Utilization", "averageUtilization": int(v)} if typ == "utilization"
                                      else {"type": "AverageValue", "averageValue": _quantity(name, v)})
            if container:
                spec = {"type": "ContainerResource", "containerResource": {"name": name, "container": container,
                                                                          "target": target}}
            else:
                spec = {"type": "Resource", "resource": {"name": name, "target": target}}
            metrics.setdefault(key(s), []).append(spec)
        out = {}
        for s in info:
            ns, name = key(s)
            kind, target = s.labels.get("scaletargetref_kind", ""), s.labels.get("scaletargetref_name", "")
            if (ns, name) not in hi or not metrics.get((ns, name)):
                continue
            api = s.labels.get("scaletargetref_api_version") or ("apps/v1" if kind in WORKLOAD_KINDS else "")
            spec: dict[str, Any] = {"scaleTargetRef": {"apiVersion": api, "kind": kind, "name": target},
                                    "minReplicas": lo.get((ns, name), 1), "maxReplicas": hi[(ns, name)],
                                    "metrics": sorted(metrics[(ns, name)], key=lambda d: str(d))}
            out[(ns, kind, target)] = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                                       "metadata": {"name": name, "namespace": ns}, "spec": spec}
        return out

    def _assemble(self, pods: dict[tuple[str, str], _Pod], containers: dict[tuple[str, str], list[ContainerTrace]],
                  step: float, deploy: list[Series], sts: list[Series], desired: dict[tuple[str, str, str], Series],
                  hpas: dict[tuple[str, str, str], dict[str, Any]]) -> Trace:
        o = self.o
        wl: dict[tuple[str, str, str], WorkloadTrace] = {}
        for key, p in sorted(pods.items()):
            cs = containers.get(key)
            if not cs:
                continue
            w = wl.get(p.workload)
            if w is None:
                w = wl[p.workload] = WorkloadTrace(p.workload[0], p.workload[2], p.workload[1])
            # a pod whose series stop well before the end was deleted: after its last
            # kube-state-metrics sample and a scrape interval after its last CPU sample
            last_cpu = max(float(c.t[-1]) for c in cs)
            gone = p.last_seen is not None and p.last_seen < o.end - 1.5 * self.ksm_interval
            deleted = max(p.last_seen, min(last_cpu + step, o.end)) if gone and p.last_seen is not None else None
            w.pods.append(PodTrace(p.name, sorted(cs, key=lambda c: c.name), p.created, p.started, p.ready, deleted))
        if not wl:
            raise PrometheusError("no workload has both container samples and an owner in the range")
        reps = {("Deployment", s.labels.get("namespace", ""), s.labels.get("deployment", "")): s for s in deploy}
        reps.update({("StatefulSet", s.labels.get("namespace", ""), s.labels.get("statefulset", "")): s for s in sts})
        for (ns, kind, name), w in wl.items():
            s = reps.get((kind, ns, name)) or desired.get((ns, kind, name))
            if s is not None:
                change = np.concatenate([[0], np.flatnonzero(np.diff(s.v)) + 1])
                w.replicas_t, w.replicas = s.t[change], s.v[change].astype(np.int64)
            if (ns, kind, name) in hpas:
                w.hpas = [HPARecord(o.start, hpas[(ns, kind, name)])]
        return Trace(sorted(wl.values(), key=lambda w: (w.namespace, w.name)), o.start, o.end, step,
                     f"prometheus {self.c.base}")


def _canonical_kind(kind: str) -> str:
    k = kind.lower().rstrip("s")
    return {"deployment": "Deployment", "deploy": "Deployment", "statefulset": "StatefulSet", "sts": "StatefulSet",
            "daemonset": "DaemonSet", "ds": "DaemonSet", "replicaset": "ReplicaSet", "rs": "ReplicaSet",
            "job": "Job"}.get(k, kind)


def _pod_pattern(kind: str | None, name: str) -> str:
    """A regex matching the pod names a workload's controller gives (a pre-filter; owners decide)."""
    n = re.escape(name).replace("\\-", "-")
    if kind == "Deployment":
        return f"{n}-[a-z0-9]+-[a-z0-9]+"
    if kind == "StatefulSet":
        return f"{n}-[0-9]+"
    return f"{n}-.+"


def _iso(t: float) -> str:
    from autoscaler.k8s.timefmt import format_time

    return format_time(t)


def _quantity(resource: str, v: float) -> str:
    return f"{round(v * 1000)}m" if resource == "cpu" else str(round(v))


def _median_spacing(series: list[Series]) -> float:
    diffs = [np.diff(s.t) for s in series if len(s.t) > 1]
    if not diffs:
        return DEFAULT_STEP
    return float(np.round(np.median(np.concatenate(diffs)), 3))


def _merge(parts: list[Series]) -> tuple[np.ndarray, np.ndarray]:
    """One container's samples from all its series (new series after a restart, chunk pieces,
    the same scrape stored twice), in time order, each timestamp once."""
    if not parts:
        return np.empty(0), np.empty(0)
    t = np.concatenate([s.t for s in parts])
    v = np.concatenate([s.v for s in parts])
    order = np.argsort(t, kind="stable")
    t, v = t[order], v[order]
    keep = np.concatenate([[True], np.diff(t) > 0.0005])
    ok = keep & np.isfinite(v)
    return t[ok], v[ok]


def counter_rates(t: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample usage (cores) from a cumulative CPU counter: the increase since the previous
    sample over the time between them. A decrease is a reset: the counter counted from zero, so
    the increase is the new value (Prometheus's ``increase`` does the same). The first sample has
    no predecessor and gives no usage."""
    if len(t) < 2:
        return np.empty(0), np.empty(0)
    dt = np.diff(t)
    dv = np.diff(v)
    inc = np.where(dv < 0, v[1:], dv)
    return t[1:], inc / dt


def sample_at(t: np.ndarray, v: np.ndarray, at: np.ndarray) -> np.ndarray:
    """The gauge's sample at each time in ``at`` (the latest at or before it; else the next one)."""
    if not len(t):
        return np.zeros(len(at))
    i = np.searchsorted(t, at + 0.0005, side="right") - 1
    return v[np.clip(i, 0, len(t) - 1)]


def _check_gaps(groups: dict[tuple[str, str, str], list[Series]], o: ImportOptions, step: float, metric: str,
                warn: Callable[[str], None]) -> None:
    """A stretch longer than ``max_gap`` in which no container has a sample is missing history
    (Prometheus or the scrapes were down), not a quiet cluster: an error unless ``allow_gaps``."""
    if not groups:
        return
    t = np.unique(np.concatenate([s.t for parts in groups.values() for s in parts]))
    t = t[(t >= o.start) & (t <= o.end)]
    bounds = np.concatenate([[o.start], t, [o.end]])
    d = np.diff(bounds)
    limit = max(o.max_gap, 2.5 * step)
    big = np.flatnonzero(d > limit)
    if not len(big):
        return
    spans = ", ".join(f"{_iso(bounds[i])} to {_iso(bounds[i + 1])}" for i in big[:3])
    msg = (f"{metric} has no samples for {len(big)} stretch(es) longer than {limit:g}s ({spans}"
           f"{', ...' if len(big) > 3 else ''}): the history has a gap")
    if o.allow_gaps:
        warn(msg + "; importing anyway (--allow-gaps)")
        return
    raise PrometheusError(msg + "; narrow --start/--end, or pass --allow-gaps to import around it")


def import_trace(conn: Connection, opts: ImportOptions, *, progress: Callable[[int, int], None] | None = None,
                 warn: Callable[[str], None] | None = None) -> tuple[Trace, int]:
    """Run the import; returns the trace and the number of HTTP requests made."""
    async def go() -> tuple[Trace, int]:
        async with Client(conn) as client:
            trace = await Importer(client, opts, progress=progress, warn=warn).run()
            return trace, client.requests

    return asyncio.run(go())


def parse_when(text: str, now: float) -> float:
    """``--start``/``--end``: RFC 3339, Unix seconds, ``now`` or ``now-DURATION`` (``now-7d``, ``now-36h``)."""
    from autoscaler.k8s.timefmt import parse_duration, parse_time

    s = text.strip()
    if s == "now":
        return now
    if s.startswith("now-"):
        d = s[4:]
        try:
            if d.endswith("d") and d[:-1].replace(".", "", 1).isdigit():
                return now - float(d[:-1]) * 86400
            return now - parse_duration(d)
        except ValueError:
            raise ValueError(f"invalid time {text!r}: want now-DURATION like now-7d or now-36h") from None
    if s.replace(".", "", 1).isdigit():
        return float(s)
    try:
        return parse_time(s)
    except ValueError:
        raise ValueError(f"invalid time {text!r}: want RFC 3339, Unix seconds, now or now-7d") from None


def connection_from_args(args: Any) -> Connection:
    """The --prometheus-* flags; secrets come from files or the environment, never argv."""
    import os

    headers = {}
    for h in args.prometheus_header or []:
        name, sep, value = h.partition(":")
        if not sep or not name.strip():
            raise ValueError(f"--prometheus-header {h!r}: want 'Name: value'")
        headers[name.strip()] = value.strip()
    token = None
    if args.prometheus_token_file:
        token = Path(args.prometheus_token_file).read_text().strip()
    elif os.environ.get("PROMETHEUS_TOKEN"):
        token = os.environ["PROMETHEUS_TOKEN"]
    password = None
    if args.prometheus_password_file:
        password = Path(args.prometheus_password_file).read_text().rstrip("\n")
    elif args.prometheus_user is not None:
        password = os.environ.get("PROMETHEUS_PASSWORD", "")
    if bool(args.prometheus_cert_file) != bool(args.prometheus_key_file):
        raise ValueError("--prometheus-cert-file and --prometheus-key-file go together")
    url = args.prometheus
    if not re.match(r"^https?://[^/]", url or ""):
        raise ValueError(f"--prometheus {url!r}: want an http:// or https:// URL")
    conn = Connection(url, token, args.prometheus_user, password, args.prometheus_ca_file,
                      args.prometheus_cert_file, args.prometheus_key_file, args.prometheus_insecure_skip_verify,
                      headers)
    conn.request_headers()  # token and basic auth together is an error now, not after the first query
    return conn


def options_from_args(args: Any, now: float) -> ImportOptions:
    metrics, labels = dict(METRICS), dict(LABELS)
    for flag, table, what in ((args.prometheus_metric, metrics, "--prometheus-metric"),
                              (args.prometheus_label, labels, "--prometheus-label")):
        for item in flag or []:
            k, sep, v = item.partition("=")
            if not sep or k not in table or not re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", v):
                raise ValueError(f"{what} {item!r}: want KEY=NAME with KEY one of {', '.join(table)}")
            table[k] = v
    if args.start is None:
        raise ValueError("--prometheus needs --start (e.g. --start now-7d)")
    start = parse_when(args.start, now)
    end = parse_when(args.end or "now", now)
    if not end > start:
        raise ValueError(f"--end ({args.end or 'now'}) must be after --start ({args.start})")
    if args.workload and (args.workload.count("/") > 1 or not args.workload.rpartition("/")[2]):
        raise ValueError(f"--workload {args.workload!r}: want KIND/NAME, e.g. deployment/web")
    return replace(ImportOptions(start, end), namespace=args.namespace, selector=args.selector or "",
                   workload=args.workload, step=args.step, max_gap=args.max_gap, allow_gaps=args.allow_gaps,
                   metrics=metrics, labels=labels)
