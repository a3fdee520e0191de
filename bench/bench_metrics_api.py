"""Latency of listing every pod through the metrics API (metrics-server: ~0.35 s for 30,000 pods).

Fills a WindowStore synthetically (two scrapes of 1,000 nodes × 30 pods, via NodeBatch), starts
the real HTTPS server (TLS, front-proxy authentication, authorization) on 127.0.0.1 and times
``GET /apis/metrics.k8s.io/v1beta1/pods`` end to end with a keep-alive aiohttp client, as the
aggregator would call it. Also times the handler alone (selection, store read, JSON encoding),
both as repeated lists see it (the per-pod JSON cached for the store's version) and as the first
list after a scrape does (``*_after_scrape``: every pod read from the store and rendered).

Prints one JSON object. Usage: python bench/bench_metrics_api.py [--nodes 1000] [--pods-per-node 30] [--requests 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np
import orjson

from autoscaler.api.objects import ObjectIndex
from autoscaler.api.resources import MetricsResources
from autoscaler.k8s.certs import generate_ca, issue_cert
from autoscaler.logs import configure_logging
from autoscaler.server.app import MetricsServerApp
from autoscaler.server.authn import Authenticator, RequestHeaderConfig
from autoscaler.server.authz import Authorizer
from autoscaler.server.health import HealthChecks
from autoscaler.server.selfmetrics import FRESHNESS
from autoscaler.server.serve import HTTPSServer
from autoscaler.server.tls import ServerTLS, serving_cert
from autoscaler.storage.types import NodeBatch
from autoscaler.storage.window import WindowStore

RESOLUTION = 15.0


def fill(n_nodes: int, per_node: int) -> tuple[WindowStore, ObjectIndex, float]:
    """The store after two scrapes, the matching index, and the time of the last scrape."""
    store = WindowStore(resolution=RESOLUTION, history=4 * RESOLUTION)
    index = ObjectIndex()
    index.replace_nodes([{"metadata": {"name": f"node-{i:05d}", "labels": {"kubernetes.io/hostname": f"node-{i:05d}"}}}
                         for i in range(n_nodes)])
    index.replace_pods([{"metadata": {"namespace": f"ns-{j % 20}", "name": f"pod-{i:05d}-{j:03d}",
                                      "labels": {"app": f"app-{j}", "pod-template-hash": "5d9f7c8b6"}}}
                        for i in range(n_nodes) for j in range(per_node)])
    t0 = time.time() - 2 * RESOLUTION
    rng = np.random.default_rng(1)
    for k in range(2):
        t = t0 + k * RESOLUTION
        batches = []
        for i in range(n_nodes):
            n = per_node
            batches.append(NodeBatch(
                node=f"node-{i:05d}", scrape_time=t, node_start_time=t0 - 3600, node_timestamp=t,
                node_cpu=100.0 + k * 20, node_memory=4e9,
                namespaces=[f"ns-{j % 20}" for j in range(n)], pods=[f"pod-{i:05d}-{j:03d}" for j in range(n)],
                containers=["app"] * n, start_time=np.full(n, t0 - 3600), timestamp=np.full(n, t),
                cpu=10.0 + k * rng.uniform(0.1, 2.0, n), memory=rng.uniform(1e7, 5e8, n).round()))
        store.store_many(batches)
    return store, index, t


async def main() -> int:
    configure_logging("json", "warning")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--pods-per-node", type=int, default=30)
    ap.add_argument("--requests", type=int, default=30)
    a = ap.parse_args()

    t = time.perf_counter()
    store, index, clock = fill(a.nodes, a.pods_per_node)
    fill_s = time.perf_counter() - t

    tmp = Path(tempfile.mkdtemp(prefix="bench-metrics-api-"))
    proxy_ca = generate_ca("front-proxy-ca")
    proxy = issue_cert(proxy_ca, "front-proxy-client", client=True)
    proxy.write(tmp / "proxy.crt", tmp / "proxy.key")
    cert = serving_cert("", "", str(tmp / "certs"))
    authn = Authenticator(requestheader=RequestHeaderConfig(ca_pem=proxy_ca.cert_pem,
                                                            allowed_names=("front-proxy-client",)))
    tls = ServerTLS(cert)
    tls.set_client_cas(authn.client_ca_bundle())
    resources = MetricsResources(index, store, observe_freshness=FRESHNESS.observe_many)
    health = HealthChecks(lambda: None, lambda: None, lambda: None, lambda: None).endpoints()
    server = HTTPSServer(MetricsServerApp(resources, authn, Authorizer(None), health).build(), tls, "127.0.0.1", 0)
    await server.start()

    # Handler alone: select, read the store, render, encode; and the store read on its own.
    handler, after_scrape, store_read, store_cols = [], [], [], []
    keys = index.pod_keys()
    for _ in range(max(5, a.requests // 3)):
        t = time.perf_counter()
        body = resources.list_pods().json()
        handler.append(time.perf_counter() - t)
        clock += 0.001
        store.expire(clock)  # new store version, same data: as if a scrape had just landed
        t = time.perf_counter()
        resources.list_pods().json()
        after_scrape.append(time.perf_counter() - t)
        t = time.perf_counter()
        store.pod_metrics(keys)
        store_read.append(time.perf_counter() - t)
        t = time.perf_counter()
        store.pod_usage_columns(keys)
        store_cols.append(time.perf_counter() - t)

    ctx = ssl.create_default_context(cafile=None)
    ctx.load_verify_locations(cadata=cert.cert_file.read_bytes().decode())
    ctx.load_cert_chain(tmp / "proxy.crt", tmp / "proxy.key")
    headers = {"X-Remote-User": "system:serviceaccount:kube-system:horizontal-pod-autoscaler",
               "X-Remote-Group": "system:masters", "Accept": "application/vnd.kubernetes.protobuf, */*"}
    url = f"https://127.0.0.1:{server.port}/apis/metrics.k8s.io/v1beta1/pods"
    lat, lat_scrape = [], []
    items = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s:
        async with s.get(url, headers=headers) as r:  # warm-up (TLS handshake, caches)
            items = len(orjson.loads(await r.read())["items"])
        for _ in range(a.requests):
            t = time.perf_counter()
            async with s.get(url, headers=headers) as r:
                raw = await r.read()
                assert r.status == 200, r.status
            lat.append(time.perf_counter() - t)
        for _ in range(max(5, a.requests // 3)):  # the first list after each scrape
            clock += 0.001
            store.expire(clock)
            t = time.perf_counter()
            async with s.get(url, headers=headers) as r:
                assert r.status == 200 and len(await r.read()) == len(raw), r.status
            lat_scrape.append(time.perf_counter() - t)
    await server.stop()

    def pct(xs: list[float], q: float) -> float:
        return round(float(np.percentile(np.array(xs), q)), 4)

    print(json.dumps({
        "benchmark": "list all pods through metrics.k8s.io",
        "nodes": a.nodes, "pods": a.nodes * a.pods_per_node, "items_returned": items,
        "response_bytes": len(raw), "requests": a.requests,
        "http_p50_s": pct(lat, 50), "http_p99_s": pct(lat, 99),
        "http_after_scrape_p50_s": pct(lat_scrape, 50),
        "handler_p50_s": pct(handler, 50), "handler_p99_s": pct(handler, 99),
        "handler_after_scrape_p50_s": pct(after_scrape, 50),
        "store_read_p50_s": pct(store_read, 50), "store_read_columns_p50_s": pct(store_cols, 50),
        "store_fill_s": round(fill_s, 3),
        "reference_metrics_server_s": 0.35,
    }, indent=2))
    return 0 if body else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
