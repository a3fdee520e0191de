"""WindowStore semantics: metrics-server's rates and drop rules, plus history, windows and eviction."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autoscaler.storage.types import NodeBatch
from autoscaler.storage.window import WindowStore

T0 = 1_700_000_000.0


def batch(t: float, containers: dict[tuple[str, str, str], tuple[float, float, float]], *, node: str = "n1",
          node_cpu: float = 100.0, node_mem: float = 2e9, ts: float | None = None) -> NodeBatch:
    """containers: (ns, pod, container) -> (cumulative cpu seconds, memory bytes, start time)."""
    keys = list(containers)
    vals = np.array([containers[k] for k in keys], dtype=np.float64).reshape(-1, 3)
    stamp = t if ts is None else ts
    return NodeBatch(
        node=node, scrape_time=t, node_start_time=T0 - 86400, node_timestamp=stamp, node_cpu=node_cpu,
        node_memory=node_mem, namespaces=[k[0] for k in keys], pods=[k[1] for k in keys],
        containers=[k[2] for k in keys], start_time=vals[:, 2], timestamp=np.full(len(keys), stamp),
        cpu=vals[:, 0], memory=vals[:, 1],
    )


START = T0 - 3600


def test_latest_pair_rate_window_and_memory_like_metrics_server():
    s = WindowStore(resolution=15, history=900)
    s.store(batch(T0, {("ns", "p", "a"): (10.0, 1e8, START), ("ns", "p", "b"): (4.0, 5e7, START)}, node_cpu=100))
    assert s.pod_metrics([("ns", "p")]) == [None]  # one sample: no rate yet
    assert s.node_metrics(["n1"]) == [None]
    s.store(batch(T0 + 15.953, {("ns", "p", "a"): (13.0, 1.2e8, START), ("ns", "p", "b"): (4.5, 6e7, START)},
                  node_cpu=104))
    [pod] = s.pod_metrics([("ns", "p")])
    assert pod is not None
    assert (pod.namespace, pod.name) == ("ns", "p")
    assert pod.window == pytest.approx(15.953)
    assert round(pod.window * 1e9) == 15_953_000_000  # exact, no float noise in the window
    assert pod.timestamp == T0 + 15.953
    by_name = {c.name: c for c in pod.containers}
    assert [c.name for c in pod.containers] == ["a", "b"]
    assert by_name["a"].cpu_nanocores == math.trunc(3e9 / 15.953)
    assert by_name["b"].cpu_nanocores == math.trunc(0.5e9 / 15.953)
    assert by_name["a"].memory_bytes == 120_000_000  # latest working set, not an average
    [node] = s.node_metrics(["n1"])
    assert node.cpu_nanocores == math.trunc(4e9 / 15.953) and node.memory_bytes == 2_000_000_000


def test_repeated_timestamp_keeps_previous_pair():
    s = WindowStore()
    s.store(batch(T0, {("ns", "p", "a"): (10.0, 1e8, START)}))
    s.store(batch(T0 + 15, {("ns", "p", "a"): (13.0, 1e8, START)}))
    # the kubelet has not refreshed: same stat time, scraped again
    s.store(batch(T0 + 30, {("ns", "p", "a"): (13.0, 1e8, START)}, ts=T0 + 15))
    [pod] = s.pod_metrics([("ns", "p")])
    assert pod.window == 15 and pod.containers[0].cpu_nanocores == 200_000_000


def test_restart_hides_pod_for_one_cycle_then_rate_restarts_from_new_counter():
    s = WindowStore()
    s.store(batch(T0, {("ns", "p", "a"): (50.0, 1e8, START)}))
    s.store(batch(T0 + 15, {("ns", "p", "a"): (53.0, 1e8, START)}))
    assert s.pod_metrics([("ns", "p")])[0] is not None
    restarted = T0 + 25  # started after the previous sample, 5 s before this one (too young for the fresh rule)
    s.store(batch(T0 + 30, {("ns", "p", "a"): (0.5, 1e8, restarted)}))
    assert s.pod_metrics([("ns", "p")]) == [None]
    s.store(batch(T0 + 45, {("ns", "p", "a"): (2.0, 1e8, restarted)}))
    [pod] = s.pod_metrics([("ns", "p")])
    assert pod.containers[0].cpu_nanocores == 100_000_000  # (2.0 - 0.5) / 15 s, never negative


def test_counter_reset_without_start_time_is_not_a_negative_rate():
    s = WindowStore()
    nan = float("nan")
    s.store(batch(T0, {("ns", "p", "a"): (50.0, 1e8, nan)}))
    s.store(batch(T0 + 15, {("ns", "p", "a"): (53.0, 1e8, nan)}))
    s.store(batch(T0 + 30, {("ns", "p", "a"): (1.0, 1e8, nan)}))  # counter went down
    assert s.pod_metrics([("ns", "p")]) == [None]
    s.store(batch(T0 + 45, {("ns", "p", "a"): (4.0, 1e8, nan)}))
    assert s.pod_metrics([("ns", "p")])[0].containers[0].cpu_nanocores == 200_000_000


@pytest.mark.parametrize(("age", "served"), [(12.0, True), (10.0, True), (9.0, False), (15.0, False), (40.0, False)])
def test_fresh_container_rule(age, served):
    s = WindowStore(resolution=15)
    s.store(batch(T0, {("ns", "p", "a"): (0.6, 1e8, T0 - age)}))
    [pod] = s.pod_metrics([("ns", "p")])
    assert (pod is not None) == served
    if served:
        assert pod.window == age  # measured from the container's start
        assert pod.containers[0].cpu_nanocores == math.trunc(0.6e9 / age)


def test_pod_with_any_zero_or_missing_container_value_is_dropped_others_stay():
    s = WindowStore()
    for i, t in enumerate((T0, T0 + 15)):
        s.store(batch(t, {
            ("ns", "good", "a"): (10.0 + i, 1e8, START),
            ("ns", "bad", "a"): (10.0 + i, 1e8, START),
            ("ns", "bad", "b"): (0.0, 1e8, START),  # CPU exactly 0: incomplete
            ("ns", "nomem", "a"): (10.0 + i, float("nan"), START),  # only CPU reported
        }))
    good, bad, nomem = s.pod_metrics([("ns", "good"), ("ns", "bad"), ("ns", "nomem")])
    assert good is not None and bad is None and nomem is None
    # once the container reports properly the pod comes back after it has a pair
    s.store(batch(T0 + 30, {("ns", "bad", "a"): (12.0, 1e8, START), ("ns", "bad", "b"): (1.0, 1e8, START)}))
    assert s.pod_metrics([("ns", "bad")]) == [None]
    s.store(batch(T0 + 45, {("ns", "bad", "a"): (13.0, 1e8, START), ("ns", "bad", "b"): (1.5, 1e8, START)}))
    assert s.pod_metrics([("ns", "bad")])[0] is not None


def test_new_sidecar_hides_pod_until_it_has_a_rate_and_removed_container_is_forgotten():
    s = WindowStore()
    s.store(batch(T0, {("ns", "p", "a"): (10.0, 1e8, START)}))
    s.store(batch(T0 + 15, {("ns", "p", "a"): (11.0, 1e8, START)}))
    s.store(batch(T0 + 30, {("ns", "p", "a"): (12.0, 1e8, START), ("ns", "p", "side"): (0.1, 1e7, T0 + 1)}))
    assert s.pod_metrics([("ns", "p")]) == [None]
    s.store(batch(T0 + 45, {("ns", "p", "a"): (13.0, 1e8, START), ("ns", "p", "side"): (0.4, 1e7, T0 + 1)}))
    assert [c.name for c in s.pod_metrics([("ns", "p")])[0].containers] == ["a", "side"]
    s.store(batch(T0 + 60, {("ns", "p", "a"): (14.0, 1e8, START)}))
    assert [c.name for c in s.pod_metrics([("ns", "p")])[0].containers] == ["a"]
    assert s.stats["container_series"] == 1


def test_vanished_pods_and_forgotten_nodes_are_evicted_and_rows_reused():
    s = WindowStore()
    pods = {("ns", f"p{i}", "c"): (1.0, 1e8, START) for i in range(50)}
    s.store(batch(T0, pods))
    s.store(batch(T0, {("ns", "other", "c"): (1.0, 1e8, START)}, node="n2"))
    cap = s.stats["capacity_series"]
    s.store(batch(T0 + 15, {("ns", "p0", "c"): (2.0, 1e8, START)}))
    assert sorted(s.all_pod_keys()) == [("ns", "other"), ("ns", "p0")]
    assert s.stats["container_series"] == 2
    s.store(batch(T0 + 30, {("ns", f"q{i}", "c"): (1.0, 1e8, START) for i in range(49)}))
    assert s.stats["capacity_series"] == cap  # released rows are reused, memory stays bounded
    s.forget_node("n2")
    assert ("ns", "other") not in s.all_pod_keys() and "n2" not in s.all_node_names()


def test_ring_wraps_and_keeps_only_the_last_k_samples():
    s = WindowStore(resolution=15, history=60)  # K = 5
    for i in range(12):
        s.store(batch(T0 + 15 * i, {("ns", "p", "a"): (1.0 + i, 1e8 + i, START)}))
    hist = s.series("ns", "p")["containers"]["a"]
    assert s.k == 5 and len(hist["timestamp"]) == 5
    assert list(hist["timestamp"]) == [T0 + 15 * i for i in range(7, 12)]
    assert list(hist["cpu"]) == [1.0 + i for i in range(7, 12)]
    assert hist["start_time"] == START
    # a window longer than the history uses the oldest sample kept
    [pod] = s.pod_cpu_window([("ns", "p")], 3600)
    assert pod.window == 60 and pod.containers[0].cpu_nanocores == 66_666_666


def test_window_rate_averages_over_the_window_while_latest_pair_does_not():
    s = WindowStore(resolution=15, history=900)
    cpu = 0.0
    for i, rate in enumerate([1.0, 1.0, 1.0, 1.0, 3.0]):  # last interval spikes
        cpu += rate * 15
        s.store(batch(T0 + 15 * i + (0.2 if i == 2 else 0), {("ns", "p", "a"): (cpu, 1e8, START)}))
    latest = s.pod_metrics([("ns", "p")])[0]
    win = s.pod_cpu_window([("ns", "p")], 60)[0]
    assert latest.containers[0].cpu_nanocores == 3_000_000_000
    assert win.window == 60  # the 4 intervals, despite jitter in the middle
    assert win.containers[0].cpu_nanocores == 1_500_000_000
    short = s.pod_cpu_window([("ns", "p")], 5)[0]  # never shorter than the latest pair
    assert short.window == 15


def test_stale_node_not_served_then_evicted_after_history():
    s = WindowStore(resolution=15, history=60)
    s.store(batch(T0, {("ns", "p", "a"): (1.0, 1e8, START)}))
    s.store(batch(T0 + 15, {("ns", "p", "a"): (2.0, 1e8, START)}))
    s.store(batch(T0 + 15, {("ns", "q", "a"): (1.0, 1e8, START)}, node="n2"))
    s.expire(T0 + 30)  # one missed scrape: still served
    assert s.node_metrics(["n1"])[0] is not None and s.pod_metrics([("ns", "p")])[0] is not None
    s.expire(T0 + 60)  # two missed scrapes: hidden
    assert s.node_metrics(["n1"]) == [None] and s.pod_metrics([("ns", "p")]) == [None]
    assert "n1" in s.all_node_names()
    assert s.expire(T0 + 76) == ["n1", "n2"]
    assert s.all_node_names() == [] and s.all_pod_keys() == []


def test_ready_needs_a_node_and_a_pod_with_rates():
    s = WindowStore()
    assert not s.ready()
    s.store(batch(T0, {("ns", "p", "a"): (1.0, 1e8, START)}))
    assert not s.ready()
    s.store(batch(T0 + 15, {("ns", "p", "a"): (2.0, 1e8, START)}, node_cpu=0))  # node point invalid (CPU 0)
    assert not s.ready()
    s.store(batch(T0 + 30, {("ns", "p", "a"): (3.0, 1e8, START)}, node_cpu=101))
    s.store(batch(T0 + 45, {("ns", "p", "a"): (4.0, 1e8, START)}, node_cpu=102))
    assert s.ready()


def test_pod_reported_by_two_nodes_first_wins():
    s = WindowStore()
    for i in range(2):
        t = T0 + 15 * i
        s.store_many([batch(t, {("ns", "p", "a"): (1.0 + i, 1e8, START)}, node="n1"),
                      batch(t, {("ns", "p", "a"): (50.0 + 5 * i, 9e8, START)}, node="n2")])
    [pod] = s.pod_metrics([("ns", "p")])
    assert pod.containers[0].memory_bytes == 100_000_000
    # n1 stops reporting it (pod gone there): ownership moves, and a fresh pair is needed
    for i in range(2, 4):
        t = T0 + 15 * i
        s.store_many([batch(t, {}, node="n1"), batch(t, {("ns", "p", "a"): (50.0 + 5 * i, 9e8, START)}, node="n2")])
    assert s.pod_metrics([("ns", "p")])[0].containers[0].memory_bytes == 900_000_000


def test_store_many_equals_store_one_by_one_and_reports_memory():
    rng = np.random.default_rng(1)
    a, b = WindowStore(), WindowStore()
    cpu = {n: rng.uniform(1, 100, 60) for n in range(20)}
    for cyc in range(3):
        batches = []
        for n in range(20):
            cpu[n] = cpu[n] + rng.uniform(0, 5, 60)
            batches.append(batch(T0 + 15 * cyc, {("ns", f"n{n}p{i // 2}", f"c{i % 2}"): (cpu[n][i], 1e6 * (i + 1), START)
                                                for i in range(60)}, node=f"n{n}"))
        a.store_many(batches)
        for x in batches:
            b.store(x)
    keys = a.all_pod_keys()
    assert len(keys) == 600 and a.pod_metrics(keys) == b.pod_metrics(keys)
    st = a.stats
    assert st["container_series"] == 1200 and st["container_points"] == 1200
    assert st["bytes_per_series"] == 3 * 8 * a.k + 24
    assert st["bytes"] >= st["bytes_per_series"] * 1200
