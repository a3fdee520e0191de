"""The collector: scrape every selected node's kubelet each resolution and feed the window store.

One tick (metrics-server's scrape loop, metrics-pipeline.md §1.3): all nodes concurrently on
asyncio, each start delayed by a random ``[0, min(8 ms × nodes, 4 s))`` so kubelets are not hit
at once. Unlike metrics-server the delays are rounded down to multiples of ``scrape_wave_interval``
(250 ms): nodes start in waves, so one event-loop wake-up serves several kubelets instead of one;
that cuts the collector's CPU per node by about 40% (docs/metrics-pipeline.md). In-flight requests are
bounded by ``max_concurrency`` and the start rate by asyncio-throttle,
each request bounded by ``--kubelet-request-timeout`` and ``max_response_bytes``, the whole tick
by the resolution. A node that fails, hangs or answers garbage only loses its own sample (logged,
counted in ``metrics_server_kubelet_request_total{success="false"}`` and in :class:`CycleStats`).
The cycle's batches are stored in one vectorized pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from asyncio_throttle import Throttler
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from yarl import URL

from autoscaler.k8s.kubeconfig import KubeConfig
from autoscaler.k8s.selectors import parse_label_selector
from autoscaler.scraper.decode_resource import DecodeError, decode_resource
from autoscaler.scraper.decode_summary import decode_summary
from autoscaler.scraper.kubelet_client import KubeletClient, ScrapeError
from autoscaler.scraper.options import ScrapeOptions, add_arguments, options_from_args
from autoscaler.scraper.targets import TargetError, node_target, slim_node
from autoscaler.storage.types import MetricsSink, NodeBatch

__all__ = ["Collector", "CycleStats", "ScrapeOptions", "add_arguments", "options_from_args"]

log = structlog.get_logger(__name__)

#: decoder per response format (a target's ``source``)
DECODERS = {"summary": decode_summary, "resource": decode_resource}
MAX_STAGGER = 4.0  # seconds; metrics-server's cap on the start delay
STAGGER_PER_NODE = 0.008

#: One node's scrape: (node name, its batch or None, the error or None).
Outcome = tuple[str, NodeBatch | None, str | None]


def stagger_window(nodes: int) -> float:
    """metrics-server's start-delay window: ``min(8 ms × nodes, 4 s)``."""
    return min(STAGGER_PER_NODE * nodes, MAX_STAGGER)


def start_waves(nodes: int, interval: float, rng: Callable[[], float] = random.random) -> dict[float, list[int]]:
    """Node indices grouped by start delay: metrics-server's random ``[0, min(8 ms × nodes, 4 s))``
    rounded down to a multiple of ``interval`` (0 keeps every node's own delay)."""
    stagger = stagger_window(nodes)
    waves: dict[float, list[int]] = {}
    for i in range(nodes):
        delay = stagger * rng()
        if interval > 0:
            delay = (delay // interval) * interval
        waves.setdefault(delay, []).append(i)
    return waves


@dataclass
class CycleStats:
    """What one tick did; ``errors`` maps node name to the reason it yielded nothing."""

    started: float
    duration: float = 0.0
    nodes: int = 0
    succeeded: int = 0
    failed: int = 0
    containers: int = 0
    errors: dict[str, str] = field(default_factory=dict)


class _StorageCollector:
    """``metrics_server_storage_points{type}`` read from the store at scrape time."""

    def __init__(self, storage: MetricsSink) -> None:
        self.storage = storage

    def collect(self):  # type: ignore[no-untyped-def]
        stats = self.storage.stats
        g = GaugeMetricFamily("metrics_server_storage_points", "Number of metrics points stored.", labels=["type"])
        g.add_metric(["node"], stats["node_points"])
        g.add_metric(["container"], stats["container_points"])
        yield g


class Collector:
    def __init__(self, options: ScrapeOptions, storage: MetricsSink, kube: KubeConfig | None, *,
                 registry: CollectorRegistry | None = None,
                 nodes: Callable[[], list[dict]] | None = None,
                 node_informer: object | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        """``nodes`` (a callable returning Node dicts) or ``node_informer`` (an
        :class:`~autoscaler.k8s.informer.Informer` of ``/api/v1/nodes`` shared with the API server)
        replace the collector's own node informer; ``registry`` receives the self-metrics;
        ``clock`` (Unix seconds) stamps scrapes, e.g. an emulated cluster's virtual clock."""
        options.validate()
        if options.kubelet_via_apiserver and kube is None:
            raise ValueError("--kubelet-via-apiserver needs a client configuration for the API server")
        self.options = options
        self.clock = clock
        self.storage = storage
        self.kube = kube
        self._selector = parse_label_selector(options.node_selector)
        self._nodes_fn = nodes
        self.node_informer = node_informer
        self.client = KubeletClient(options, kube, options.max_concurrency)
        # --kubelet-via-apiserver: every node's URL goes through this API server's node proxy
        self._apiserver = kube.host if options.kubelet_via_apiserver and kube is not None else None
        self._sem: asyncio.Semaphore | None = None
        # Caps how many requests may *start* per second; with the stagger it rarely waits.
        self._base_rate = max(1000, options.max_concurrency * 4)
        self._throttle = Throttler(rate_limit=self._base_rate, period=1.0, retry_interval=0.005)
        self.last_tick_start: float | None = None
        self.last_cycle: CycleStats | None = None
        self.registry = registry if registry is not None else CollectorRegistry()
        self._m_requests = Counter("metrics_server_kubelet_request_total",
                                   "Number of requests sent to Kubelet API", ["success"], registry=self.registry)
        self._m_duration = Histogram("metrics_server_kubelet_request_duration_seconds",
                                     "Duration of requests to Kubelet API in seconds", ["node"], registry=self.registry)
        # metrics-server counts failures only in total; per node they tell which kubelet is failing
        self._m_node_failures = Counter("autoscaler_kubelet_request_failures",
                                        "Number of failed scrapes (request, decode, target or deadline) per node",
                                        ["node"], registry=self.registry)
        self._m_last = Gauge("metrics_server_kubelet_last_request_time_seconds",
                             "Time of last request performed to Kubelet API since unix epoch in seconds", ["node"],
                             registry=self.registry)
        res = options.metric_resolution
        buckets = sorted({0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, res * 0.5, res * 0.9, res, res * 1.1,
                          res * 1.5, float("inf")})
        self._m_tick = Histogram("metrics_server_manager_tick_duration_seconds",
                                 "The total time spent collecting and storing metrics in seconds", buckets=buckets,
                                 registry=self.registry)
        self.registry.register(_StorageCollector(storage))
        self._m_success = self._m_requests.labels(success="true")
        self._m_failure = self._m_requests.labels(success="false")
        self._known_nodes: set[str] = set()
        # per node: (node object it was computed from, URL, response format, its metric children);
        # rebuilt when the informer hands us a new object, so the hot path does no URL parsing or
        # label lookups.
        self._targets: dict[str, tuple[dict, URL, str, Any, Any]] = {}

    # -- node list ---------------------------------------------------------------------------------
    def _node_objects(self) -> list[dict]:
        if self._nodes_fn is not None:
            nodes = self._nodes_fn()
        elif self.node_informer is not None:
            nodes = self.node_informer.items()  # type: ignore[attr-defined]
        else:
            raise RuntimeError("collector has no node source: call run() or pass nodes=/node_informer=")
        if self._selector.empty:
            return nodes
        return [n for n in nodes if self._selector.matches((n.get("metadata") or {}).get("labels") or {})]

    def _forget(self, name: str) -> None:
        self.storage.forget_node(name)
        self._known_nodes.discard(name)
        self._targets.pop(name, None)
        for metric in (self._m_duration, self._m_last, self._m_node_failures):
            with contextlib.suppress(KeyError):
                metric.remove(name)

    # -- one tick ----------------------------------------------------------------------------------
    async def scrape_cycle(self) -> CycleStats:
        """Scrape all selected nodes once, store what came back, return what happened."""
        loop = asyncio.get_running_loop()
        wall0, t0 = self.clock(), loop.time()
        self.last_tick_start = wall0
        stats = CycleStats(started=wall0)
        if self._sem is None:
            self._sem = asyncio.Semaphore(self.options.max_concurrency)
        nodes = self._node_objects()
        stats.nodes = len(nodes)
        names = {(n.get("metadata") or {}).get("name") for n in nodes}
        for gone in self._known_nodes - names:
            self._forget(gone)
        self._known_nodes = {n for n in names if n}
        # The throttle caps bursts beyond the stagger's own pace, never that pace: from about 8,000
        # nodes the stagger starts more than the base rate per second, and a held request waits by
        # polling (a wake-up every 5 ms each), which cost more CPU than the scrapes themselves.
        pace = math.ceil(1.5 * len(nodes) / stagger_window(len(nodes))) if nodes else 0
        self._throttle.rate_limit = max(self._base_rate, pace)
        headers = await self.client.headers()
        outcomes: list[Outcome | None] = [None] * len(nodes)
        waves = [asyncio.ensure_future(self._scrape_wave(delay, [(i, nodes[i]) for i in members], headers, outcomes))
                 for delay, members in start_waves(len(nodes), self.options.scrape_wave_interval).items()]
        results: list[NodeBatch] = []
        if waves:
            _, pending = await asyncio.wait(waves, timeout=self.options.metric_resolution)
            for t in pending:
                t.cancel()
            for node, outcome in zip(nodes, outcomes, strict=True):
                if outcome is None:
                    name = (node.get("metadata") or {}).get("name", "")
                    stats.errors[name] = "scrape did not finish within the metric resolution"
                    self._failed(name)
                    continue
                name, batch, error = outcome
                if error is not None:
                    stats.errors[name] = error
                elif batch is not None:
                    results.append(batch)
                    stats.containers += len(batch)
        stats.succeeded = len(results)
        stats.failed = len(stats.errors)
        self.storage.store_many(results)
        self.storage.expire(wall0)
        stats.duration = loop.time() - t0
        self._m_tick.observe(stats.duration)
        self.last_cycle = stats
        log.debug("scrape cycle", nodes=stats.nodes, succeeded=stats.succeeded, failed=stats.failed,
                  duration=round(stats.duration, 3))
        return stats

    def _target(self, node: dict) -> tuple[dict, URL, str, Any, Any]:
        name = (node.get("metadata") or {}).get("name") or ""
        cached = self._targets.get(name)
        if cached is None or cached[0] is not node:
            target = node_target(node, self.options, self._apiserver)  # raises TargetError
            cached = (node, URL(target.url, encoded=True), target.source, self._m_duration.labels(node=name),
                      self._m_last.labels(node=name))
            self._targets[name] = cached
        return cached

    async def _scrape_wave(self, delay: float, members: list[tuple[int, dict]], headers: dict[str, dict[str, str]],
                           outcomes: list[Outcome | None]) -> None:
        """Sleep ``delay``, then scrape the wave's nodes concurrently. Each outcome lands in
        ``outcomes[i]`` as soon as it is known, so a wave cut off at the deadline keeps what it finished."""
        if delay > 0:
            await asyncio.sleep(delay)

        async def one(i: int, node: dict) -> None:
            outcomes[i] = await self._scrape_node(node, headers)

        await asyncio.gather(*(one(i, node) for i, node in members))

    async def _scrape_node(self, node: dict, headers: dict[str, dict[str, str]]) -> Outcome:
        name = (node.get("metadata") or {}).get("name") or ""
        try:
            _, url, source, m_duration, m_last = self._target(node)
        except TargetError as exc:
            self._m_node_failures.labels(node=name).inc()
            log.error("Failed to scrape node", node=name, err=str(exc))
            return name, None, str(exc)
        assert self._sem is not None
        async with self._sem:
            await self._throttle.acquire()
            scrape_time = self.clock()
            t0 = time.perf_counter()
            try:
                body = await self.client.fetch(url, headers[source])
                batch = DECODERS[source](body, name, scrape_time)
            except (ScrapeError, DecodeError) as exc:
                self._failed(name)
                m_last.set(scrape_time)
                log.error("Failed to scrape node", node=name, url=str(url), err=str(exc))
                return name, None, str(exc)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never let one node's surprise break the cycle
                self._failed(name)
                log.exception("Failed to scrape node", node=name, url=str(url))
                return name, None, f"{type(exc).__name__}: {exc}"
            finally:
                m_duration.observe(time.perf_counter() - t0)
        self._m_success.inc()
        m_last.set(scrape_time)
        return name, batch, None

    def _failed(self, node: str) -> None:
        self._m_failure.inc()
        self._m_node_failures.labels(node=node).inc()

    # -- the loop ----------------------------------------------------------------------------------
    def timely(self, now: float | None = None) -> bool:
        """metrics-server's ``metric-collection-timely`` liveness check."""
        if self.last_tick_start is None:
            return True
        return (now if now is not None else self.clock()) - self.last_tick_start <= 1.5 * self.options.metric_resolution

    def _on_node_event(self, kind: str, obj: dict, old: dict | None) -> None:
        if kind == "DELETED":
            name = (obj.get("metadata") or {}).get("name")
            if name:
                self._forget(name)

    async def run(self, stop: asyncio.Event) -> None:
        """Start the node informer (unless one was given), then scrape every resolution until ``stop``."""
        informer_task = None
        if self._nodes_fn is None and self.node_informer is None:
            from autoscaler.k8s.informer import Informer

            if self.kube is None:
                raise RuntimeError("collector needs a KubeConfig to watch nodes")
            self.node_informer = Informer(self.kube, "/api/v1/nodes", label_selector=self.options.node_selector,
                                          name="nodes", transform=slim_node)
            informer_task = asyncio.create_task(self.node_informer.run(stop))  # type: ignore[attr-defined]
        if self.node_informer is not None:
            self.node_informer.add_handler(self._on_node_event)  # type: ignore[attr-defined]
            while not await self.node_informer.wait_synced(1.0):  # type: ignore[attr-defined]
                if stop.is_set():
                    break
        loop = asyncio.get_running_loop()
        res = self.options.metric_resolution
        start = loop.time()
        tick = 0
        try:
            while not stop.is_set():
                try:
                    await self.scrape_cycle()
                except Exception:
                    log.exception("scrape cycle failed")
                # Fixed ticker: overrun ticks are skipped, not queued.
                tick = max(tick + 1, int((loop.time() - start) / res) + 1)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=max(0.0, start + tick * res - loop.time()))
        finally:
            await self.client.close()
            if informer_task is not None:
                informer_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await informer_task
