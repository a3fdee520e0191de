"""The controller's in-process resource metrics: the per-version snapshot answers like the store.

A full sync reads every HPA's pods from one vectorised snapshot of the window store; each answer
must be exactly what asking the store about those pods gives (PodMetrics semantics: MilliValue
rounding up, whole-second timestamps, Go-duration windows, unservable pods left out)."""

from __future__ import annotations

import asyncio

import numpy as np

from autoscaler.controller.metrics_source import StoreResourceMetrics
from autoscaler.storage.types import NodeBatch
from autoscaler.storage.window import WindowStore

T0 = 1_700_000_000.0
START = T0 - 3600


def _batch(node: str, t: float, containers: dict[tuple[str, str, str], tuple[float, float, float]]) -> NodeBatch:
    keys = list(containers)
    vals = np.array([containers[k] for k in keys], dtype=np.float64).reshape(-1, 3)
    return NodeBatch(node=node, scrape_time=t, node_start_time=T0 - 86400, node_timestamp=t, node_cpu=100.0 + t - T0,
                     node_memory=2e9, namespaces=[k[0] for k in keys], pods=[k[1] for k in keys],
                     containers=[k[2] for k in keys], start_time=vals[:, 2], timestamp=np.full(len(keys), t),
                     cpu=vals[:, 0], memory=vals[:, 1])


def _store() -> WindowStore:
    """Two nodes: one- and two-container pods, a pod with a zero-CPU container (not served), a pod
    seen once (no rate yet) and a fresh container (its own window), at odd-millisecond times."""
    s = WindowStore(resolution=15, history=900)
    for step, t in enumerate((T0 + 0.123, T0 + 15.953)):
        a = {("web", f"web-{i}", "app"): (10.0 + i + step * (0.3 + i * 0.01), 1e8 + i * 4096, START) for i in range(6)}
        a |= {("web", f"web-{i}", "proxy"): (5.0 + step * 0.05 * i, 3e7, START) for i in range(3)}
        a[("web", "zero", "app")] = (0.0, 1e8, START)
        b = {("db", f"db-{i}", "db"): (100.0 + step * 1.7 * (i + 1), 5e9 + i, START) for i in range(4)}
        b[("web", "web-x", "app")] = (1.0 + step, 7e7, START)
        if step:
            b[("db", "new", "db")] = (0.6, 1e8, t - 12.5)  # fresh container: served with a 12.5 s window
            b[("db", "late", "db")] = (2.0, 1e8, START)  # first sample only
        s.store_many([_batch("n1", t, a), _batch("n2", t, b)])
        s.expire(t)
    return s


def _pods(ns: str, names: list[str]) -> list[dict]:
    return [{"metadata": {"name": n, "namespace": ns}} for n in names]


def _same(a, b) -> None:
    assert a.names == b.names
    for col in ("cpu", "memory", "timestamp", "window"):
        np.testing.assert_array_equal(getattr(a, col), getattr(b, col), err_msg=col)
    assert a.containers.keys() == b.containers.keys()
    for c, (cpu, mem) in a.containers.items():
        np.testing.assert_array_equal(cpu, b.containers[c][0], err_msg=c)
        np.testing.assert_array_equal(mem, b.containers[c][1], err_msg=c)


def test_snapshot_answers_exactly_like_the_store():
    store = _store()
    metrics = StoreResourceMetrics(store)
    asks = [("web", [f"web-{i}" for i in range(6)] + ["zero", "web-x", "missing"]), ("db", ["db-0", "db-3", "new", "late"]),
            ("web", []), ("db", ["db-1"])]
    want = [metrics._direct(ns, _pods(ns, names)) for ns, names in asks]
    # a full sync: the first questions go to the store, and once they cover enough pods a snapshot answers
    got = [asyncio.run(metrics.pod_metrics(ns, "", _pods(ns, names))) for ns, names in asks * 2]
    assert metrics._snapshot is not None and metrics._snapshot.version == store.version
    for g, w in zip(got, want * 2, strict=True):
        _same(g, w)
    assert want[1].names == ["db-0", "db-3", "new"] and want[0].names[-1] == "web-x"
    assert set(want[0].containers) == {"app", "proxy"}

    # the store moves on: the old snapshot is not used
    t = T0 + 30.5
    store.store_many([_batch("n2", t, {("db", "db-0", "db"): (200.0, 1e9, START)})])
    store.expire(t)
    for ns, names in asks:
        _same(asyncio.run(metrics.pod_metrics(ns, "", _pods(ns, names))), metrics._direct(ns, _pods(ns, names)))
