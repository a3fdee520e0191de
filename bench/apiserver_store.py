#!/usr/bin/env python3
"""Emulated API server store at cluster scale: create rate, indexed lists and watch fan-out.

Prints JSON figures. Usage: python bench/apiserver_store.py [--nodes 5000] [--pods 150000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from autoscaler.k8s.selectors import parse_field_selector
from sim.apiserver.store import ObjectStore


def _pod(i: int, node: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"p-{i}", "namespace": "default", "labels": {"app": f"a{i % 100}"}},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "img:1",
                                                       "resources": {"requests": {"cpu": "100m"}}}]}}


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=5000)
    ap.add_argument("--pods", type=int, default=150_000)
    args = ap.parse_args()
    store = ObjectStore(ring_size=10_000)
    t0 = time.perf_counter()
    for n in range(args.nodes):
        store.create("nodes", {"metadata": {"name": f"n-{n}"}}, owned=True)
    watches = [store.watch("pods", None, str(store.resource_version),
                           field_selector=parse_field_selector(f"spec.nodeName=n-{n}")) for n in range(args.nodes)]
    t1 = time.perf_counter()
    for i in range(args.pods):
        store.create("pods", _pod(i, f"n-{i % args.nodes}"), owned=True)
    t2 = time.perf_counter()
    for _ in range(100):
        store.list("pods", None, field_selector=parse_field_selector("spec.nodeName=n-7"))
    t3 = time.perf_counter()
    store.list("pods")
    t4 = time.perf_counter()
    queued = sum(len(w._w.pending) + len(w._w.queue) for w in watches)
    print(json.dumps({
        "nodes": args.nodes, "pods": args.pods, "node_watchers": len(watches),
        "node_create_s": round(t1 - t0, 3),
        "pod_creates_per_s": round(args.pods / (t2 - t1)),
        "list_by_node_ms": round((t3 - t2) * 1000 / 100, 3),
        "list_all_pods_s": round(t4 - t3, 3),
        "events_delivered": queued,
    }))


if __name__ == "__main__":
    asyncio.run(main())
