"""Pod lists served from the per-pod JSON cache stay exactly what the store says, scrape after scrape.

The server caches each pod's encoded usage for the store's current version. These tests read
lists over HTTPS with an aiohttp client (as the aggregator does) and compare them byte for byte
with the object-by-object rendering of the store's answer, across the events that must change
the answer: a new scrape, a pod leaving its node's scrape, an incomplete pod, a node going
stale, a forgotten node, and label changes in the informer.
"""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import numpy as np
import orjson
import pytest
from test_metrics_api_support import T0, pod_batch, proxy_headers, start_server

from autoscaler.api.objects import ObjectIndex
from autoscaler.api.render import (
    TimeStrings,
    cpu_string,
    cpu_strings,
    item_list,
    memory_string,
    memory_strings,
    pod_item,
)
from autoscaler.api.resources import parse_selectors
from autoscaler.k8s.timefmt import format_time
from autoscaler.storage.types import NodeBatch
from autoscaler.storage.window import WindowStore

API = "/apis/metrics.k8s.io/v1beta1"
ADMIN = proxy_headers("kubernetes-admin", ("system:masters", "system:authenticated"))
REF = json.loads((Path(__file__).parent / "data" / "metrics_api" / "reference.json").read_text())
NOW = T0 + 40.0


def scrape(k: int, *, drop: tuple[str, ...] = (), bad_memory: tuple[str, ...] = (), cpu_boost: float = 0.0
           ) -> list[NodeBatch]:
    """Scrape ``k`` of two nodes: n1 runs web pods with an app and a sidecar, n2 single-container jobs."""
    t = T0 + 15.0 * k
    web = [("default", f"web-{i}", {"app": (1.0 + k * (0.3 + i / 10) + cpu_boost, 2**20 * (i + 1)),
                                    "sidecar": (0.5 + k * 0.01, 0.0 if f"web-{i}" in bad_memory else 3e6)})
           for i in range(3) if f"web-{i}" not in drop]
    jobs = [("batch" if i % 2 else "default", f"job-{i}", {"main": (2.0 + k * 1.5 * (i + 1), 1000.0 * (i + 1))})
            for i in range(4) if f"job-{i}" not in drop]
    return [pod_batch("n1", t, web, 10.0 + k, 2e9), pod_batch("n2", t, jobs, 20.0 + 2 * k, 4e9)]


def cluster() -> tuple[WindowStore, ObjectIndex]:
    store = WindowStore(resolution=15.0, history=60.0)
    index = ObjectIndex()
    index.replace_pods([{"metadata": {"namespace": ns, "name": n, "labels": {"app": n.split("-")[0]}}}
                        for ns, n in [("default", "web-0"), ("default", "web-1"), ("default", "web-2"),
                                      ("default", "job-0"), ("batch", "job-1"), ("default", "job-2"),
                                      ("batch", "job-3"), ("default", "idle")]])
    store.store_many(scrape(0))
    store.store_many(scrape(1))
    return store, index


def expected(store: WindowStore, index: ObjectIndex, namespace: str = "", label_selector: str | None = None) -> bytes:
    """The list as the object-by-object path renders the store's current answer."""
    listing = index.list_pods(namespace, parse_selectors(label_selector, None)[0])
    usages = store.pod_metrics([(ns, n) for ns, n, _ in listing])
    ts, created = TimeStrings(), format_time(NOW)
    return orjson.dumps(item_list("PodMetricsList", [pod_item(u, e.labels, created, ts)
                                                     for (_, _, e), u in zip(listing, usages, strict=True) if u],
                                  "v1beta1"))


@pytest.fixture
async def served(tmp_path):
    store, index = cluster()
    srv = await start_server(tmp_path, store, index, clock=lambda: NOW)
    ctx = srv.client_ssl(srv.trust.proxy_cert(), "proxy")
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as session:

        async def get(path: str, accept: str = "application/json") -> bytes:
            async with session.get(srv.url + path, headers=[*ADMIN, ("Accept", accept)]) as r:
                body = await r.read()
                assert r.status == 200, body
                return body

        yield store, index, get
    await srv.server.stop()


def names(body: bytes) -> list[str]:
    return [i["metadata"]["name"] for i in orjson.loads(body)["items"]]


async def test_repeated_lists_are_identical_to_the_object_rendering(served):
    store, index, get = served
    # a narrow list first fills part of the cache; the full list then mixes cached and fresh pods
    assert await get(f"{API}/namespaces/batch/pods") == expected(store, index, "batch")
    assert await get(f"{API}/pods?labelSelector=app%3Dweb") == expected(store, index, "", "app=web")
    first = await get(f"{API}/pods")
    assert first == expected(store, index)
    assert await get(f"{API}/pods") == first
    assert names(first) == ["job-1", "job-3", "job-0", "job-2", "web-0", "web-1", "web-2"]  # idle has no data
    web0 = orjson.loads(first)["items"][4]
    assert [c["name"] for c in web0["containers"]] == ["app", "sidecar"]


async def test_a_new_scrape_is_served_at_once(served):
    store, index, get = served
    before = await get(f"{API}/pods")
    store.store_many(scrape(2, cpu_boost=3.0))
    after = await get(f"{API}/pods")
    assert after == expected(store, index)
    assert after != before
    old = {i["metadata"]["name"]: i for i in orjson.loads(before)["items"]}
    new = {i["metadata"]["name"]: i for i in orjson.loads(after)["items"]}
    assert new["web-1"]["timestamp"] == format_time(T0 + 30) != old["web-1"]["timestamp"]
    assert new["web-1"]["containers"][0]["usage"]["cpu"] != old["web-1"]["containers"][0]["usage"]["cpu"]


async def test_pods_that_stop_being_servable_leave_the_list(served):
    store, index, get = served
    await get(f"{API}/pods")
    # web-2 gone from its node's scrape (evicted); web-0's sidecar reports no memory (whole pod dropped)
    store.store_many(scrape(2, drop=("web-2",), bad_memory=("web-0",)))
    body = await get(f"{API}/pods")
    assert body == expected(store, index)
    assert names(body) == ["job-1", "job-3", "job-0", "job-2", "web-1"]
    # n2 keeps being scraped, n1 does not: once n1 is stale its pods are no longer served
    for k in (3, 4, 5):
        store.store_many(scrape(k)[1:])
    body = await get(f"{API}/pods")
    assert body == expected(store, index)
    assert names(body) == ["job-1", "job-3", "job-0", "job-2"]
    store.forget_node("n2")
    assert names(await get(f"{API}/pods")) == []


async def test_label_changes_show_without_a_new_scrape(served):
    store, index, get = served
    await get(f"{API}/namespaces/default/pods")
    index.upsert_pod({"metadata": {"namespace": "default", "name": "web-1", "labels": {"app": "web", "v": "2"}}})
    index.delete_pod("default", "job-0")
    body = await get(f"{API}/namespaces/default/pods")
    assert body == expected(store, index, "default")
    items = {i["metadata"]["name"]: i for i in orjson.loads(body)["items"]}
    assert items["web-1"]["metadata"]["labels"] == {"app": "web", "v": "2"}
    assert "job-0" not in items


async def test_table_output_from_a_cached_listing(served):
    store, index, get = served
    await get(f"{API}/pods")  # cache filled
    table = orjson.loads(await get(f"{API}/namespaces/default/pods",
                                   "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"))
    assert table["kind"] == "Table"
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "cpu", "memory", "Window"]
    rows = {r["cells"][0]: r["cells"] for r in table["rows"]}
    assert sorted(rows) == ["job-0", "job-2", "web-0", "web-1", "web-2"]
    listing = orjson.loads(expected(store, index, "default"))["items"]
    web0 = next(i for i in listing if i["metadata"]["name"] == "web-0")
    assert rows["web-0"][3] == web0["window"] == "15s"


def test_column_read_matches_objects_and_version_tracks_changes():
    store, index = cluster()
    keys = [(ns, n) for ns, n, _ in index.list_pods()] + [("default", "unknown")]
    cols = store.pod_usage_columns(keys)
    assert cols.usages(keys) == store.pod_metrics(keys)
    assert [keys[i][1] for i in cols.index.tolist()] == ["job-1", "job-3", "job-0", "job-2", "web-0", "web-1", "web-2"]
    assert cols.offsets.tolist() == [0, 1, 2, 3, 4, 6, 8, 10]
    v = store.version
    assert cols.version == v
    store.pod_metrics(keys)
    store.node_metrics(["n1"])
    store.ready()
    assert store.version == v  # reads change nothing
    store.expire(T0)  # a clock that does not move on: same answers
    assert store.version == v
    for change in (lambda: store.store_many(scrape(2)), lambda: store.expire(T0 + 60), lambda: store.forget_node("n1")):
        change()
        assert store.version != v
        v = store.version


def test_bulk_quantity_strings_equal_the_single_value_ones():
    ref_cpu = [n for n, _ in REF["cpu_vectors"]]
    ref_mem = [b for b, _ in REF["memory_vectors"]]
    assert cpu_strings(np.array(ref_cpu, np.int64)) == [s for _, s in REF["cpu_vectors"]]
    assert memory_strings(np.array(ref_mem, np.int64)) == [s for _, s in REF["memory_vectors"]]
    rng = np.random.default_rng(5)
    edges = [0, 1, 9, 10, 999, 1000, 1023, 1024, 1025, 10**9, 10**18, 2**63 - 1, 7 * 1024**6, 3 * 1024**5]
    values = np.concatenate([
        np.array(edges, np.int64),
        rng.integers(0, 10**12, 2000),
        rng.integers(0, 1000, 2000) * 10 ** rng.integers(0, 16, 2000),
        rng.integers(0, 1000, 2000) * 1024 ** rng.integers(0, 6, 2000),
    ])
    assert cpu_strings(values) == [cpu_string(v) for v in values.tolist()]
    assert memory_strings(values) == [memory_string(v) for v in values.tolist()]
