"""ObjectStore semantics used in-process by the cluster emulation (no HTTP)."""

from __future__ import annotations

import pytest

from autoscaler.k8s.selectors import parse_field_selector, parse_label_selector
from autoscaler.k8s.status import ApiError
from sim.apiserver.store import ObjectStore


def pod(name: str, node: str = "", ns: str = "default", labels: dict | None = None, owner: str = "") -> dict:
    md: dict = {"name": name, "namespace": ns, "labels": labels or {}}
    if owner:
        md["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": owner,
                                  "controller": True}]
    spec: dict = {"containers": [{"name": "c", "image": "i"}]}
    if node:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": md, "spec": spec}


def test_bootstrap_and_global_resource_version():
    s = ObjectStore()
    names = [n["metadata"]["name"] for n in s.list("namespaces")[0]]
    assert names == ["default", "kube-node-lease", "kube-public", "kube-system"]
    rv = s.resource_version
    a = s.create("pods", pod("a"))
    b = s.create("configmaps", {"metadata": {"name": "b", "namespace": "default"}})
    assert int(a["metadata"]["resourceVersion"]) == rv + 1 and int(b["metadata"]["resourceVersion"]) == rv + 2
    assert s.get("serviceaccounts", "kube-system", "default")["metadata"]["uid"]


def test_node_index_and_field_selectors():
    s = ObjectStore()
    for i in range(50):
        s.create("pods", pod(f"p{i}", node=f"n{i % 5}", labels={"i": str(i)}))
    items, _ = s.list("pods", None, field_selector=parse_field_selector("spec.nodeName=n3"))
    assert sorted(p["metadata"]["name"] for p in items) == sorted(f"p{i}" for i in range(3, 50, 5))
    # binding an unbound pod moves it in the index; a bound pod's node is immutable
    s.create("pods", pod("late"))
    assert [p["metadata"]["name"] for p in s.list("pods", None, None, parse_field_selector("spec.nodeName="))[0]] \
        == ["late"]
    s.mutate("pods", "default", "late", lambda p: p["spec"].__setitem__("nodeName", "n3"))
    items, _ = s.list("pods", None, field_selector=parse_field_selector("spec.nodeName=n3"))
    assert "late" in {p["metadata"]["name"] for p in items}
    assert s.list("pods", None, None, parse_field_selector("spec.nodeName="))[0] == []
    with pytest.raises(ApiError) as err:
        s.mutate("pods", "default", "late", lambda p: p["spec"].__setitem__("nodeName", "n4"))
    assert err.value.code == 422
    items, _ = s.list("pods", "default", parse_label_selector("i in (1,2,3)"),
                      parse_field_selector("spec.nodeName!=n1"))
    assert sorted(p["metadata"]["name"] for p in items) == ["p2", "p3"]


async def test_watch_ring_overflow_gives_410_and_node_watch():
    s = ObjectStore(ring_size=4)
    start = s.resource_version
    w = s.watch("pods", None, str(start), field_selector=parse_field_selector("spec.nodeName=n1"))
    for i in range(6):
        s.create("pods", pod(f"p{i}", node="n1" if i % 2 else "n2"))
    got = [await w.next_event(0) for _ in range(3)]
    assert [(t, o["metadata"]["name"]) for t, o in got] == [("ADDED", "p1"), ("ADDED", "p3"), ("ADDED", "p5")]
    assert await w.next_event(0) is None
    w.close()
    with pytest.raises(ApiError) as err:
        s.watch("pods", None, str(start))
    assert err.value.code == 410 and err.value.reason == "Expired"


def test_graceful_pod_delete_and_garbage_collection():
    s = ObjectStore()
    owner = s.create("replicasets.apps", {
        "metadata": {"name": "rs", "namespace": "default"},
        "spec": {"selector": {"matchLabels": {"a": "b"}},
                 "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}})
    uid = owner["metadata"]["uid"]
    s.create("pods", pod("bound", node="n1", owner=uid))
    s.create("pods", pod("loose", owner=uid))
    s.delete("replicasets.apps", "default", "rs")
    assert s.try_get("pods", "default", "loose") is None  # unbound: gone at once
    p = s.get("pods", "default", "bound")
    assert p["metadata"]["deletionGracePeriodSeconds"] == 30 and p["metadata"]["deletionTimestamp"]
    s.delete("pods", "default", "bound", grace_period_seconds=0)  # what the kubelet does
    assert s.try_get("pods", "default", "bound") is None


def test_namespace_deletion_cascades_and_blocks_creates():
    s = ObjectStore()
    s.create("namespaces", {"metadata": {"name": "x"}})
    s.create("configmaps", {"metadata": {"name": "c", "namespace": "x"}})
    s.create("pods", pod("p", node="n1", ns="x"))
    s.delete("namespaces", None, "x")
    ns = s.get("namespaces", None, "x")
    assert ns["status"]["phase"] == "Terminating"
    with pytest.raises(ApiError) as err:
        s.create("configmaps", {"metadata": {"name": "d", "namespace": "x"}})
    assert err.value.code == 403
    s.delete("pods", "x", "p", grace_period_seconds=0)
    assert s.try_get("namespaces", None, "x") is None


def test_noop_update_does_not_bump_version_and_validation():
    s = ObjectStore()
    d = s.create("deployments.apps", {
        "metadata": {"name": "d", "namespace": "default"},
        "spec": {"selector": {"matchLabels": {"a": "b"}},
                 "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}})
    same = s.update("deployments.apps", d)
    assert same["metadata"]["resourceVersion"] == d["metadata"]["resourceVersion"]
    with pytest.raises(ApiError) as err:
        s.create("deployments.apps", {
            "metadata": {"name": "bad", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"a": "b"}},
                     "template": {"metadata": {"labels": {"a": "c"}}, "spec": {"containers": [{"name": "c"}]}}}})
    assert err.value.code == 422 and "`selector` does not match template `labels`" in err.value.message


def test_objects_are_shaped_as_kube_apiserver_answers_them():
    """Fields Go always writes appear as zero values, empty structs as {}, write-only fields go."""
    s = ObjectStore()
    dep = s.create("deployments.apps", {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {"selector": {"matchLabels": {"a": "b"}},
                 "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}})
    assert dep["status"] == {}
    assert dep["spec"]["template"]["spec"]["containers"][0]["resources"] == {}
    rs = s.create("replicasets.apps", {**dep, "kind": "ReplicaSet", "metadata": {"name": "r"}, "status": None})
    assert rs["status"] == {"replicas": 0}
    node = s.create("nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n"}})
    assert node["status"]["daemonEndpoints"] == {"kubeletEndpoint": {"Port": 0}}
    assert node["status"]["nodeInfo"]["kubeletVersion"] == ""
    ev = s.create("events", {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e", "namespace": "default"},
                             "involvedObject": {"kind": "Pod", "name": "p"}, "reason": "R"})
    assert ev["firstTimestamp"] is None and ev["source"] == {} and ev["reportingComponent"] == ""
    sec = s.create("secrets", {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "default"},
                               "stringData": {"password": "hunter2"}})
    assert "stringData" not in sec and sec["data"] == {"password": "aHVudGVyMg=="}
    p = s.create("pods", pod("p"))
    mounts = p["spec"]["containers"][0]["volumeMounts"]
    assert mounts[0]["mountPath"] == "/var/run/secrets/kubernetes.io/serviceaccount" and mounts[0]["readOnly"]
    assert p["spec"]["volumes"][0]["name"] == mounts[0]["name"] and p["metadata"]["generation"] == 1


def test_events_expire_an_event_ttl_after_their_last_write():
    """kube-apiserver keeps an Event for --event-ttl (1h) after its last write; a soak with an HPA
    controller recording events for hours must not accumulate them in the emulated API server."""
    now = [1_000_000.0]
    s = ObjectStore(clock=lambda: now[0])
    seen = []
    s.subscribe("events", lambda etype, obj, old: seen.append((etype, obj["metadata"]["name"])))

    def event(name: str) -> dict:
        return {"apiVersion": "v1", "kind": "Event", "metadata": {"name": name, "namespace": "default"},
                "involvedObject": {"kind": "HorizontalPodAutoscaler", "namespace": "default", "name": "web"},
                "reason": "SuccessfulRescale", "message": "New size: 2", "type": "Normal", "count": 1}

    s.create("events", event("a"))
    s.create("events", event("b"))
    now[0] += 1800
    s.mutate("events", "default", "b", lambda o: o.__setitem__("count", 2))  # b's TTL starts again
    now[0] += 1799
    assert s.expire_events() == 0
    now[0] += 1
    assert s.expire_events() == 1
    assert s.try_get("events", "default", "a") is None
    assert s.try_get("events", "default", "b")["count"] == 2
    assert ("DELETED", "a") in seen  # watchers hear of the expiry
    now[0] += 1800
    assert s.expire_events() == 1
    assert s.list("events")[0] == []
    assert s._event_expiry == {}


def test_emulated_cluster_sweeps_expired_events(tmp_path):
    from sim.clock import ManualClock
    from sim.cluster import run_in_thread
    from sim.nodes import NodeSpec
    from sim.scenario import Scenario

    cluster = run_in_thread(Scenario(nodes=[NodeSpec("worker-1")], events=False), tmp_path,
                            clock=ManualClock(start=1_000_000.0))
    try:
        cluster.call(lambda: cluster.store.create("events", {
            "apiVersion": "v1", "kind": "Event", "metadata": {"name": "e", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "namespace": "default", "name": "p"}, "reason": "R", "message": "m"}))
        cluster.advance(3500)
        assert cluster.call(lambda: cluster.store.try_get("events", "default", "e")) is not None
        cluster.advance(200)
        assert cluster.call(lambda: cluster.store.try_get("events", "default", "e")) is None
    finally:
        cluster.stop()


def _pages(s: ObjectStore, limit: int, **kw) -> tuple[list[str], list[int | None]]:
    names, remaining, token = [], [], None
    while True:
        items, _, token, left = s.list_page("pods", limit=limit, continue_token=token, **kw)
        names += [f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in items]
        remaining.append(left)
        if token is None:
            return names, remaining


@pytest.mark.parametrize("limit", [1, 7, 500])
def test_paged_lists_walk_namespace_name_order_with_and_without_selectors(limit):
    s = ObjectStore()
    for i in range(3):
        s.create("namespaces", {"metadata": {"name": f"ns{i}"}})
    for i in range(60):  # created out of order, across namespaces, some deleted again
        s.create("pods", pod(f"p{(i * 37) % 60:02d}", ns=f"ns{i % 3}", node=f"n{i % 4}", labels={"odd": str(i % 2)}))
    for i in range(0, 60, 9):
        s.delete("pods", f"ns{i % 3}", f"p{(i * 37) % 60:02d}", grace_period_seconds=0)
    everything = [f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in s.list("pods")[0]]
    assert everything == sorted(everything) and len(everything) == 60 - 7

    names, remaining = _pages(s, limit)
    assert names == everything
    # no selector: remainingItemCount counts what the later pages hold, as kube-apiserver's does
    assert remaining == [len(everything) - limit * (i + 1) for i in range(len(remaining) - 1)] + [None]

    names, remaining = _pages(s, limit, namespace="ns1")
    assert names == [n for n in everything if n.startswith("ns1/")]
    assert remaining[-1] is None and all(r is not None for r in remaining[:-1])
    # the namespace named by a field selector instead of the path
    names, _ = _pages(s, limit, field_selector=parse_field_selector("metadata.namespace=ns1"))
    assert names == [n for n in everything if n.startswith("ns1/")]

    odd = parse_label_selector("odd=1")
    names, remaining = _pages(s, limit, label_selector=odd)
    assert names == [f"{p['metadata']['namespace']}/{p['metadata']['name']}" for p in s.list("pods", None, odd)[0]]
    assert len(names) == sum(1 for p in s.list("pods")[0] if p["metadata"]["labels"]["odd"] == "1")
    assert set(remaining) == {None}  # a selector: the count is unknown

    on_node = parse_field_selector("spec.nodeName=n2")
    names, _ = _pages(s, limit, namespace="ns0", field_selector=on_node)
    assert names == sorted(f"ns0/{p['metadata']['name']}" for p in s.list("pods")[0]
                           if p["spec"]["nodeName"] == "n2" and p["metadata"]["namespace"] == "ns0")
