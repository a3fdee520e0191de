"""The informer and kubeconfig loading against the emulated kube-apiserver (sim.apiserver)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from autoscaler.k8s.informer import Informer
from autoscaler.k8s.kubeconfig import KubeConfigError, in_cluster_config, load_kubeconfig
from sim.apiserver.testing import ServerThread


@pytest.fixture(scope="module")
def apiserver(tmp_path_factory):
    with ServerThread(tmp_path_factory.mktemp("apiserver"), bookmark_interval=0.5) as srv:
        yield srv


def node(name: str, **labels: str) -> dict:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels},
            "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}]}}


def pod(ns: str, name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": {"app": "x"}},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]}}


async def eventually(cond, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        if loop.time() > end:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running(inf: Informer):
    stop = asyncio.Event()
    task = asyncio.create_task(inf.run(stop))
    try:
        assert await inf.wait_synced(20)
        yield inf
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_list_then_watch_delivers_events_and_keeps_cache(apiserver):
    apiserver.call(lambda: apiserver.store.create("nodes", node("w-1", pool="a")))
    apiserver.call(lambda: apiserver.store.create("nodes", node("w-2", pool="b")))
    kube = load_kubeconfig(str(apiserver.kubeconfig))
    events = []
    inf = Informer(kube, "/api/v1/nodes", label_selector="pool=a", name="nodes")
    inf.add_handler(lambda kind, obj, old: events.append((kind, obj["metadata"]["name"], old is not None)))
    async with running(inf):
        assert inf.keys() == ["w-1"] and inf.get("w-1")["status"]["addresses"][0]["address"] == "127.0.0.1"
        apiserver.call(lambda: apiserver.store.create("nodes", node("w-3", pool="a")))
        await eventually(lambda: inf.get("w-3") is not None)
        apiserver.call(lambda: apiserver.store.mutate(
            "nodes", None, "w-3", lambda o: o["metadata"]["labels"].__setitem__("zone", "z1")))
        await eventually(lambda: inf.get("w-3")["metadata"]["labels"].get("zone") == "z1")
        apiserver.call(lambda: apiserver.store.delete("nodes", None, "w-1"))
        await eventually(lambda: inf.get("w-1") is None)
        # idle: bookmarks advance the resourceVersion without events
        rv = inf.resource_version
        apiserver.call(lambda: apiserver.store.create("nodes", node("w-4", pool="b")))
        await eventually(lambda: int(inf.resource_version) > int(rv))
    assert events == [("ADDED", "w-1", False), ("ADDED", "w-3", False), ("MODIFIED", "w-3", True),
                      ("DELETED", "w-1", True)]  # old = the last cached state
    assert sorted(inf.keys()) == ["w-3"]


async def test_metadata_only_pods_with_field_selector(apiserver):
    apiserver.call(lambda: apiserver.store.create("pods", pod("default", "p1")))
    apiserver.call(lambda: apiserver.store.create("pods", pod("kube-system", "p2")))
    kube = load_kubeconfig(str(apiserver.kubeconfig))
    inf = Informer(kube, "/api/v1/pods", metadata_only=True, field_selector="metadata.namespace=default")
    async with running(inf):
        obj = inf.get("default/p1")
        assert obj["kind"] == "PartialObjectMetadata" and obj["apiVersion"] == "meta.k8s.io/v1"
        assert "spec" not in obj and obj["metadata"]["labels"] == {"app": "x"}
        assert inf.get("kube-system/p2") is None
        apiserver.call(lambda: apiserver.store.create("pods", pod("default", "p3")))
        await eventually(lambda: inf.get("default/p3") is not None)
        assert inf.get("default/p3")["kind"] == "PartialObjectMetadata"


async def test_compacted_resource_version_relists_and_reconciles(apiserver):
    apiserver.call(lambda: apiserver.store.create("nodes", node("r-1", pool="r")))
    kube = load_kubeconfig(str(apiserver.kubeconfig))
    inf = Informer(kube, "/api/v1/nodes", label_selector="pool=r")
    events = []
    inf.add_handler(lambda kind, obj, old: events.append((kind, obj["metadata"]["name"])))
    # pretend we were watching long ago and the history has since been compacted
    inf._rv = "1"
    inf._cache = {"ghost": {"metadata": {"name": "ghost", "resourceVersion": "1"}}}
    apiserver.call(lambda: apiserver.store.compact("nodes"))
    async with running(inf):
        assert inf.relists == 1
        assert inf.keys() == ["r-1"]
    assert ("DELETED", "ghost") in events and ("ADDED", "r-1") in events


async def test_unauthorized_client_backs_off_and_never_syncs(apiserver, tmp_path: Path):
    kube = load_kubeconfig(str(apiserver.kubeconfig))
    kube.client_cert_data = kube.client_key_data = None
    kube.token = "not-a-valid-token"
    inf = Informer(kube, "/api/v1/nodes")
    inf.backoff_initial = 0.05
    stop = asyncio.Event()
    task = asyncio.create_task(inf.run(stop))
    assert not await inf.wait_synced(0.5)
    stop.set()
    await asyncio.wait_for(task, 10)


def test_kubeconfig_file_and_in_cluster_loading(apiserver, tmp_path: Path, monkeypatch):
    kube = load_kubeconfig(str(apiserver.kubeconfig))
    assert kube.host == apiserver.server.url and kube.ca_data and kube.client_cert_data
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text("abc\n")
    (sa / "ca.crt").write_bytes(b"")
    cfg = in_cluster_config(str(sa), {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"})
    assert cfg.host == "https://[fd00::1]:443" and cfg.bearer_token() == "abc"
    with pytest.raises(KubeConfigError, match="KUBERNETES_SERVICE_HOST"):
        in_cluster_config(str(sa), {})
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\ncontexts: []\ncurrent-context: nope\n")
    with pytest.raises(KubeConfigError, match="context 'nope' not found"):
        load_kubeconfig(str(bad))


def test_reflector_backoff_doubles_to_its_cap_and_resets_after_two_quiet_minutes():
    from autoscaler.k8s.informer import Backoff

    b = Backoff(0.8, 30.0)
    delays = [b.next(t) for t in (0.0, 1.0, 3.0, 7.0, 15.0, 31.0, 62.0, 93.0)]
    bases = [0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0, 30.0]
    assert all(base <= d <= base * 1.5 for d, base in zip(delays, bases, strict=True)), delays
    # an outage long after the last failure starts again from the initial delay
    assert 0.8 <= b.next(93.0 + 121.0) <= 1.2
    b.next(300.0)
    b.reset()  # a clean watch
    assert 0.8 <= b.next(301.0) <= 1.2
