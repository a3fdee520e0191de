"""Kubelet payload decoding: both formats, the reference examples and malformed input."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import orjson
import pytest

from autoscaler.k8s.timefmt import parse_time
from autoscaler.scraper.decode_resource import DecodeError, decode_resource
from autoscaler.scraper.decode_summary import decode_summary
from autoscaler.storage.window import WindowStore

DATA = Path(__file__).parent / "data" / "kubelet"
RESOURCE = (DATA / "resource_example.txt").read_bytes()
SUMMARY = (DATA / "summary_example.json").read_bytes()
NOW = 1633253815.0


def containers(b):
    return {(ns, p, c): i for i, (ns, p, c) in enumerate(zip(b.namespaces, b.pods, b.containers, strict=True))}


def test_resource_reference_example():
    b = decode_resource(RESOURCE, "worker-1", NOW)
    idx = containers(b)
    assert set(idx) == {("kube-system", "coredns-558bd4d5db-4dpjz", "coredns"), ("default", "web-7f9c-abcde", "web")}
    i = idx[("kube-system", "coredns-558bd4d5db-4dpjz", "coredns")]
    assert b.cpu_ns[i] == 4_710_169_000
    assert b.memory[i] == 12_533_760
    assert b.start_time[i] == 1_633_252_712.0
    assert b.timestamp[i] == 1633253812.125
    j = idx[("default", "web-7f9c-abcde", "web")]
    assert b.cpu_ns[j] == int(183.0417 * 1e9)  # truncated like Go's uint64(value * 1e9)
    assert b.memory[j] == 52_527_104 and b.timestamp[j] == 1633253811.020
    assert b.node_cpu_ns == 357_354_910_000 and b.node_memory == 1_616_273_408
    assert b.node_timestamp == 1633253809.720


def test_summary_reference_example():
    b = decode_summary(SUMMARY, "worker-1", NOW)
    assert list(zip(b.namespaces, b.pods, b.containers, strict=True)) == [
        ("kube-system", "coredns-558bd4d5db-4dpjz", "coredns")]
    assert b.cpu_ns[0] == 4_710_169_000 and b.memory[0] == 12_533_760
    assert b.start_time[0] == parse_time("2026-07-01T08:00:32Z")
    assert b.timestamp[0] == parse_time("2026-07-20T10:15:03Z")
    assert b.node_cpu_ns == 357_354_910_000 and b.node_memory == 1_616_273_408
    assert b.node_timestamp == parse_time("2026-07-20T10:15:04Z")
    assert b.node_start_time == parse_time("2026-07-01T07:59:40Z")


def _resource_text(points, *, with_ts=True, label_order=("container", "namespace", "pod"), comments=True):
    """points: list of (ns, pod, container, cpu, mem, start, ts_ms)."""
    lines = []
    for family, col in (("container_cpu_usage_seconds_total", 3), ("container_memory_working_set_bytes", 4),
                        ("container_start_time_seconds", 5)):
        if comments:
            lines += [f"# HELP {family} [STABLE] x", f"# TYPE {family} gauge"]
        for p in points:
            if p[col] is None:
                continue
            vals = {"namespace": p[0], "pod": p[1], "container": p[2]}
            labels = ",".join(f'{k}="{vals[k]}"' for k in label_order)
            ts = f" {p[6]}" if with_ts and col != 5 else ""
            lines.append(f"{family}{{{labels}}} {p[col]!r}{ts}")
    lines += ["# TYPE node_cpu_usage_seconds_total counter", "node_cpu_usage_seconds_total 10.5 1700000000000",
              "# TYPE node_memory_working_set_bytes gauge", "node_memory_working_set_bytes 1e9 1700000000000"]
    return ("\n".join(lines) + "\n").encode()


def _summary_json(points):
    pods: dict = {}
    for ns, pod, c, cpu, mem, start, ts_ms in points:
        t = "2023-11-14T22:13:20Z" if ts_ms == 1700000000000 else None
        entry = {"name": c}
        if start is not None:
            entry["startTime"] = "2023-11-14T21:13:20Z"
        if cpu is not None:
            entry["cpu"] = {"time": t, "usageCoreNanoSeconds": round(cpu * 1e9)}
        if mem is not None:
            entry["memory"] = {"time": t, "workingSetBytes": int(mem)}
        pods.setdefault((ns, pod), []).append(entry)
    return orjson.dumps({"node": {"nodeName": "n", "cpu": {"time": "2023-11-14T22:13:20Z", "usageCoreNanoSeconds": 10_500_000_000},
                                  "memory": {"time": "2023-11-14T22:13:20Z", "workingSetBytes": 1_000_000_000}},
                         "pods": [{"podRef": {"namespace": k[0], "name": k[1]}, "containers": v} for k, v in pods.items()]})


POINTS = [("default", f"web-{i}", f"c{j}", 10.0 + i + j / 4, 1e6 * (i + 1), 1699996400.0, 1700000000000)
          for i in range(5) for j in range(2)]


@pytest.mark.parametrize("decode, body", [
    (decode_resource, _resource_text(POINTS)),
    (decode_resource, _resource_text(POINTS, label_order=("namespace", "pod", "container"))),
    (decode_resource, _resource_text(POINTS, comments=False)),
    (decode_summary, _summary_json(POINTS)),
], ids=["resource", "resource-other-label-order", "resource-no-comments", "summary"])
def test_both_formats_decode_to_the_same_batch(decode, body):
    b = decode(body, "n", NOW)
    idx = containers(b)
    assert len(idx) == len(POINTS)
    for ns, pod, c, cpu, mem, _start, _ in POINTS:
        i = idx[(ns, pod, c)]
        assert b.cpu_ns[i] == int(cpu * 1e9) or b.cpu_ns[i] == round(cpu * 1e9)
        assert b.memory[i] == mem and b.timestamp[i] == 1_700_000_000.0
    assert b.node_cpu_ns == 10_500_000_000 and b.node_memory == 1e9 and b.node_timestamp == 1_700_000_000.0


def test_escaped_label_values_are_unescaped():
    body = (b'container_cpu_usage_seconds_total{container="a",namespace="we\\"ird",pod="p\\\\1\\n"} 2.5 1700000000000\n'
            b'container_memory_working_set_bytes{container="a",namespace="we\\"ird",pod="p\\\\1\\n"} 100 1700000000000\n')
    b = decode_resource(body, "n", NOW)
    assert (b.namespaces, b.pods, b.containers) == (['we"ird'], ["p\\1\n"], ["a"])
    assert b.cpu_ns[0] == 2_500_000_000 and b.memory[0] == 100


def test_hash_inside_a_label_value_does_not_end_the_family():
    pts = [("default", "web-0", "c#1", 1.5, 2e6, 1699996400.0, 1700000000000),
           ("default", "web-0", "c2", 2.5, 3e6, 1699996400.0, 1700000000000)]
    b = decode_resource(_resource_text(pts), "n", NOW)
    assert b.containers == ["c#1", "c2"]
    assert b.cpu_ns.tolist() == [1_500_000_000, 2_500_000_000] and b.memory.tolist() == [2e6, 3e6]


def test_missing_timestamps_use_the_request_time_and_missing_start_is_nan():
    pts = [("ns", "p", "c", 1.5, 2e6, None, None)]
    b = decode_resource(_resource_text(pts, with_ts=False), "n", NOW)
    assert b.timestamp[0] == NOW and math.isnan(b.start_time[0])
    s = decode_summary(_summary_json(pts), "n", NOW)
    assert math.isnan(s.start_time[0]) and math.isnan(s.timestamp[0])  # Summary without cpu.time: unusable


def test_zero_values_decode_but_the_store_drops_the_pod_and_node():
    pts = [("ns", "zero", "c", 0.0, 1e6, 1699996400.0, 1700000000000),
           ("ns", "ok", "c", 1.0, 1e6, 1699996400.0, 1700000000000)]
    body = _resource_text(pts).replace(b"node_memory_working_set_bytes 1e9", b"node_memory_working_set_bytes 0")
    b = decode_resource(body, "n", NOW)
    assert len(b) == 2
    store = WindowStore()
    store.store(b)
    later = decode_resource(body.replace(b"1700000000000", b"1700000015000").replace(b" 1.0 ", b" 2.0 "), "n", NOW + 15)
    store.store(later)
    assert store.pod_metrics([("ns", "zero"), ("ns", "ok")])[0] is None
    assert store.pod_metrics([("ns", "ok")])[0] is not None
    assert store.node_metrics(["n"]) == [None]


def test_container_with_only_a_start_time_hides_its_pod():
    body = _resource_text([("ns", "p", "a", 1.0, 1e6, 1699996400.0, 1700000000000),
                           ("ns", "p", "init", None, None, 1699996400.0, 1700000000000)])
    b = decode_resource(body, "n", NOW)
    i = containers(b)[("ns", "p", "init")]
    assert math.isnan(b.cpu[i]) and b.cpu_ns[i] == 0
    store = WindowStore()
    store.store(b)
    store.store(decode_resource(body.replace(b"1700000000000", b"1700000015000"), "n", NOW + 15))
    assert store.pod_metrics([("ns", "p")]) == [None]


def test_name_must_be_followed_by_brace_or_space():
    body = b"node_cpu_usage_seconds_total_foo 5 1700000000000\nnode_memory_working_set_bytes 7 1700000000000\n"
    b = decode_resource(body, "n", NOW)
    assert math.isnan(b.node_cpu) and b.node_memory == 7


def test_scrape_error_only_response_is_empty_not_an_error():
    b = decode_resource(b"# HELP resource_scrape_error x\n# TYPE resource_scrape_error gauge\nresource_scrape_error 1\n",
                        "n", NOW)
    assert len(b) == 0 and math.isnan(b.node_cpu)


@pytest.mark.parametrize("body, message", [
    (RESOURCE.replace(b"4.710169 1633253812125", b"4.710169 -62135596800000"), "negative timestamp"),
    (b"<html>502 Bad Gateway</html>\n", "not a valid sample line"),
    (RESOURCE[: RESOURCE.index(b'namespace="default"') + 15], "not a valid sample line"),  # cut mid-line
    (RESOURCE.replace(b"183.0417", b"18x3"), "invalid value"),
    (RESOURCE.replace(b'pod="web-7f9c-abcde"}', b'pod="web-7f9c-abcde}'), "label set"),
    (b"\xff\xfe garbage", "UTF-8"),
], ids=["negative-ts", "html", "truncated", "bad-value", "unterminated-label", "binary"])
def test_malformed_resource_bodies_reject_the_node(body, message):
    with pytest.raises(DecodeError, match=message):
        decode_resource(body, "n", NOW)


@pytest.mark.parametrize("body", [SUMMARY[:-40], b"[1,2]", b'{"pods": {"a": 1}}', b'{"pods": [{"podRef": {}}]}',
                                  b'{"pods": [{"podRef": {"name": "p", "namespace": "n"}, "containers": [{"x": 1}]}]}'])
def test_malformed_summary_bodies_reject_the_node(body):
    with pytest.raises(DecodeError):
        decode_summary(body, "n", NOW)


def test_summary_missing_counters_make_nan_not_errors():
    body = orjson.dumps({"node": {"cpu": {"time": "2023-11-14T22:13:20Z"}}, "pods": [
        {"podRef": {"name": "p", "namespace": "ns"}, "containers": [
            {"name": "a", "cpu": {"time": "2023-11-14T22:13:20.5Z", "usageCoreNanoSeconds": 5}},
        ]}]})
    b = decode_summary(body, "n", NOW)
    assert math.isnan(b.memory[0]) and b.cpu_ns[0] == 5 and b.timestamp[0] == 1_700_000_000.5
    assert math.isnan(b.node_timestamp)  # node point incomplete


def test_large_generated_payloads_agree_between_formats():
    rng = np.random.default_rng(7)
    pts = [(f"ns{i % 3}", f"pod-{i}", f"c{j}", float(np.round(rng.uniform(1, 1e4), 6)), float(rng.integers(1e6, 1e9)),
            1699996400.0, 1700000000000) for i in range(110) for j in range(3)]
    r = decode_resource(_resource_text(pts), "n", NOW)
    s = decode_summary(_summary_json(pts), "n", NOW)
    ri, si = containers(r), containers(s)
    assert set(ri) == set(si)
    order_r = [ri[k] for k in si]
    assert np.array_equal(r.memory[order_r], s.memory)
    assert np.all(np.abs(r.cpu_ns[order_r] - s.cpu_ns) <= 1)
