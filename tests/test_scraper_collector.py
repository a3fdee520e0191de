"""The collector against real HTTPS kubelet endpoints (aiohttp servers on 127.0.0.1)."""

from __future__ import annotations

import argparse
import asyncio
import ssl
from pathlib import Path

import orjson
import pytest
from aiohttp import web
from prometheus_client import generate_latest

from autoscaler.k8s.certs import generate_ca, issue_cert
from autoscaler.k8s.kubeconfig import KubeConfig
from autoscaler.k8s.timefmt import format_time
from autoscaler.scraper.collector import Collector, ScrapeOptions, add_arguments, options_from_args, start_waves
from autoscaler.storage.window import WindowStore

T0 = 1_700_000_000.0
STEP = 15.0


class FakeKubelet:
    """Serves both kubelet formats; every request advances the stats by ``STEP`` seconds."""

    def __init__(self, name: str, pods: int = 3, *, token: str | None = None) -> None:
        self.name = name
        self.pods = [(f"ns{i % 2}", f"{name}-pod{i}") for i in range(pods)]
        self.rates = {(ns, p, c): 0.1 * (i + 1) + (0.05 if c == "side" else 0)
                      for i, (ns, p) in enumerate(self.pods) for c in ("app", "side")}
        self.n = 0
        self.token = token
        self.fault = "none"
        self.paths: list[str] = []
        self.accepts: list[str | None] = []
        self.peers: set[tuple] = set()
        self.port = 0
        self._runner: web.AppRunner | None = None

    def now(self) -> float:
        return T0 + STEP * self.n

    def cpu(self, key) -> float:
        return 100.0 + self.rates[key] * STEP * self.n

    def resource(self) -> bytes:
        ts = int(self.now() * 1000)
        out = []
        for fam, val in (("container_cpu_usage_seconds_total", lambda k: f"{self.cpu(k):.9f} {ts}"),
                         ("container_memory_working_set_bytes", lambda k: f"{(len(k[1]) + 1) * 1048576:.7e} {ts}"),
                         ("container_start_time_seconds", lambda k: "1.6999e+09")):
            out.append(f"# TYPE {fam} gauge")
            for k in self.rates:
                out.append(f'{fam}{{container="{k[2]}",namespace="{k[0]}",pod="{k[1]}"}} {val(k)}')
        out += ["# TYPE node_cpu_usage_seconds_total counter",
                f"node_cpu_usage_seconds_total {1000 + 2.0 * STEP * self.n:.6f} {ts}",
                "# TYPE node_memory_working_set_bytes gauge", f"node_memory_working_set_bytes 4e+09 {ts}"]
        return ("\n".join(out) + "\n").encode()

    def summary(self) -> bytes:
        t = format_time(self.now())
        pods = {}
        for k in self.rates:
            pods.setdefault(k[:2], []).append({
                "name": k[2], "startTime": "2023-11-14T19:00:00Z",
                "cpu": {"time": t, "usageCoreNanoSeconds": round(self.cpu(k) * 1e9)},
                "memory": {"time": t, "workingSetBytes": (len(k[1]) + 1) * 1048576}})
        return orjson.dumps({
            "node": {"nodeName": self.name, "cpu": {"time": t, "usageCoreNanoSeconds": round((1000 + 2.0 * STEP * self.n) * 1e9)},
                     "memory": {"time": t, "workingSetBytes": 4_000_000_000}},
            "pods": [{"podRef": {"namespace": ns, "name": p}, "containers": cs} for (ns, p), cs in pods.items()]})

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.paths.append(request.path_qs)
        self.accepts.append(request.headers.get("Accept"))
        self.peers.add(request.transport.get_extra_info("peername"))
        if self.token is not None and request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.Response(status=401, text="Unauthorized")
        if self.fault == "http500":
            return web.Response(status=500, text="boom")
        if self.fault == "slow":
            await asyncio.sleep(2.5)  # longer than the 1 s request timeout used with it
        if self.fault == "garbage":
            return web.Response(body=b"\x00\x01 this is not a kubelet {{{", content_type="text/plain")
        if self.fault == "huge":
            return web.Response(body=b"#" * (2 * 1024 * 1024), content_type="text/plain")
        self.n += 1
        if request.path.startswith("/stats/summary"):
            return web.Response(body=self.summary(), content_type="application/json")
        return web.Response(body=self.resource(), content_type="text/plain")

    async def start(self, ctx: ssl.SSLContext) -> None:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=ctx)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    def node(self, **overrides) -> dict:
        node = {"metadata": {"name": self.name, "labels": {"pool": "a"}},
                "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"},
                                         {"type": "Hostname", "address": "localhost"}],
                           "daemonEndpoints": {"kubeletEndpoint": {"Port": self.port}}}}
        node["metadata"].update(overrides)
        return node


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca = generate_ca("cluster-ca")
    serving = issue_cert(ca, "kubelet", dns_names=["localhost"], ip_addresses=["127.0.0.1"], server=True)
    client = issue_cert(ca, "system:metrics-server", client=True)
    other_ca = generate_ca("someone-else")
    rogue = issue_cert(other_ca, "kubelet", ip_addresses=["127.0.0.1"], server=True)
    files = {}
    dnsonly = issue_cert(ca, "kubelet", dns_names=["localhost"], server=True)
    for name, pair in (("serving", serving), ("client", client), ("rogue", rogue), ("dnsonly", dnsonly)):
        pair.write(d / f"{name}.crt", d / f"{name}.key")
        files[name] = (str(d / f"{name}.crt"), str(d / f"{name}.key"))
    (d / "ca.crt").write_bytes(ca.cert_pem)
    files["ca"] = str(d / "ca.crt")
    return files


def server_ctx(pair, client_ca: str | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(*pair)
    if client_ca:
        ctx.load_verify_locations(client_ca)
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


@pytest.fixture
async def fleet(pki):
    kubelets = [FakeKubelet(f"node-{i}") for i in range(4)]
    for k in kubelets:
        await k.start(server_ctx(pki["serving"]))
    yield kubelets
    for k in kubelets:
        await k.stop()


_CREATED: list[Collector] = []


@pytest.fixture(autouse=True)
async def _close_collectors():
    yield
    while _CREATED:
        await _CREATED.pop().client.close()


def make(opts: ScrapeOptions, nodes, kube: KubeConfig | None, store: WindowStore | None = None):
    store = store or WindowStore(opts.metric_resolution, opts.metric_history)
    col = Collector(opts, store, kube, nodes=lambda: nodes)
    _CREATED.append(col)
    return col, store


def kube_for(pki, token: str | None = "t0k3n", token_file: str | None = None) -> KubeConfig:
    return KubeConfig(host="https://127.0.0.1:1", ca_file=pki["ca"], token=token, token_file=token_file)


@pytest.mark.parametrize("source", ["summary", "resource"])
async def test_two_cycles_give_exact_rates_for_every_node_and_pod(fleet, pki, source):
    opts = ScrapeOptions(kubelet_source=source, kubelet_use_node_status_port=True)
    nodes = [k.node() for k in fleet]
    col, store = make(opts, nodes, kube_for(pki))
    first = await col.scrape_cycle()
    assert (first.nodes, first.succeeded, first.failed) == (4, 4, 0)
    assert not store.ready()
    await col.scrape_cycle()
    assert store.ready()
    for k in fleet:
        [node] = store.node_metrics([k.name])
        assert node.window == STEP and node.cpu_nanocores == 2_000_000_000 and node.memory_bytes == 4_000_000_000
        usages = store.pod_metrics(k.pods)
        for (ns, pod), usage in zip(k.pods, usages, strict=True):
            assert usage is not None and usage.window == STEP and usage.timestamp == k.now()
            for c in usage.containers:
                assert c.cpu_nanocores == pytest.approx(k.rates[(ns, pod, c.name)] * 1e9, abs=2)
                assert c.memory_bytes == (len(pod) + 1) * 1048576
    expected = "/stats/summary?only_cpu_and_memory=true" if source == "summary" else "/metrics/resource"
    assert {p for k in fleet for p in k.paths} == {expected}


async def test_connections_are_kept_alive_across_cycles(fleet, pki):
    opts = ScrapeOptions(kubelet_use_node_status_port=True)
    col, _ = make(opts, [k.node() for k in fleet], kube_for(pki))
    for _ in range(3):
        await col.scrape_cycle()
    await col.client.close()
    assert all(len(k.peers) == 1 and len(k.paths) == 3 for k in fleet)


async def test_failing_slow_and_garbage_nodes_only_affect_themselves(fleet, pki):
    opts = ScrapeOptions(kubelet_use_node_status_port=True, kubelet_request_timeout=1.0,
                         kubelet_source="resource", max_response_bytes=1024 * 1024)
    fleet[0].fault, fleet[1].fault, fleet[2].fault = "http500", "slow", "garbage"
    extra = FakeKubelet("node-huge")
    await extra.start(server_ctx(pki["serving"]))
    extra.fault = "huge"
    try:
        nodes = [k.node() for k in [*fleet, extra]]
        col, store = make(opts, nodes, kube_for(pki))
        await col.scrape_cycle()
        stats = await col.scrape_cycle()
    finally:
        await extra.stop()
    assert stats.succeeded == 1 and stats.failed == 4
    assert stats.errors["node-0"] == 'request failed, status: "500 Internal Server Error"'
    assert "timed out" in stats.errors["node-1"]
    assert "not a valid sample line" in stats.errors["node-2"]
    assert "too large" in stats.errors["node-huge"]
    assert store.node_metrics(["node-3"])[0] is not None
    assert all(store.pod_metrics(fleet[3].pods))
    assert store.node_metrics(["node-0", "node-1", "node-2", "node-huge"]) == [None] * 4
    text = generate_latest(col.registry).decode()
    assert 'metrics_server_kubelet_request_total{success="false"} 8.0' in text
    assert 'metrics_server_kubelet_request_total{success="true"} 2.0' in text
    assert 'metrics_server_storage_points{type="node"} 1.0' in text
    assert 'metrics_server_kubelet_request_duration_seconds_count{node="node-1"} 2.0' in text
    assert "metrics_server_manager_tick_duration_seconds_count 2.0" in text
    # per node, the failures name the kubelets that fail (the dashboard's errors-per-node panel)
    for node in ("node-0", "node-1", "node-2", "node-huge"):
        assert f'autoscaler_kubelet_request_failures_total{{node="{node}"}} 2.0' in text
    assert 'autoscaler_kubelet_request_failures_total{node="node-3"}' not in text


async def test_kubelet_certificate_is_verified_against_the_cluster_ca(pki):
    rogue = FakeKubelet("rogue")
    await rogue.start(server_ctx(pki["rogue"]))
    try:
        col, _ = make(ScrapeOptions(kubelet_use_node_status_port=True), [rogue.node()], kube_for(pki))
        stats = await col.scrape_cycle()
        assert stats.failed == 1 and "certificate verify failed" in stats.errors["rogue"]
        assert rogue.paths == []  # no request (and no token) reached the impostor
        insecure, _ = make(ScrapeOptions(kubelet_use_node_status_port=True, kubelet_insecure_tls=True),
                           [rogue.node()], kube_for(pki))
        assert (await insecure.scrape_cycle()).succeeded == 1
        # --kubelet-certificate-authority replaces the cluster CA; the impostor still fails
        by_flag, _ = make(ScrapeOptions(kubelet_use_node_status_port=True, kubelet_certificate_authority=pki["ca"]),
                          [rogue.node()], None)
        assert (await by_flag.scrape_cycle()).failed == 1
    finally:
        await rogue.stop()


async def test_address_must_match_the_certificate_sans(pki):
    k = FakeKubelet("n")
    await k.start(server_ctx(pki["dnsonly"]))  # SAN localhost only, no IP SAN: the classic kubelet cert
    try:
        col, _ = make(ScrapeOptions(kubelet_use_node_status_port=True), [k.node()], kube_for(pki))
        stats = await col.scrape_cycle()  # InternalIP 127.0.0.1 preferred
        assert stats.failed == 1 and "127.0.0.1" in stats.errors["n"] and k.paths == []
        by_name, _ = make(ScrapeOptions(kubelet_use_node_status_port=True, kubelet_preferred_address_types=["Hostname"]),
                          [k.node()], kube_for(pki))
        assert (await by_name.scrape_cycle()).succeeded == 1
    finally:
        await k.stop()


async def test_token_is_reread_when_the_file_rotates(pki, tmp_path: Path):
    k = FakeKubelet("n", token="first")
    await k.start(server_ctx(pki["serving"]))
    try:
        token_file = tmp_path / "token"
        token_file.write_text("first\n")
        col, _ = make(ScrapeOptions(kubelet_use_node_status_port=True), [k.node()],
                      kube_for(pki, token=None, token_file=str(token_file)))
        assert (await col.scrape_cycle()).succeeded == 1
        k.token = "second"
        token_file.write_text("second\n")
        import os
        os.utime(token_file, (1, 1))  # a different mtime, as a projected-volume swap gives
        assert (await col.scrape_cycle()).succeeded == 1
        col2, _ = make(ScrapeOptions(kubelet_use_node_status_port=True), [k.node()], kube_for(pki, token="stale"))
        stats = await col2.scrape_cycle()
        assert stats.errors["n"] == 'request failed, status: "401 Unauthorized"'
    finally:
        await k.stop()


async def test_client_certificate_flags(pki):
    k = FakeKubelet("n")
    await k.start(server_ctx(pki["serving"], client_ca=pki["ca"]))
    try:
        without, _ = make(ScrapeOptions(kubelet_use_node_status_port=True), [k.node()], kube_for(pki))
        assert (await without.scrape_cycle()).failed == 1
        opts = ScrapeOptions(kubelet_use_node_status_port=True, kubelet_client_certificate=pki["client"][0],
                             kubelet_client_key=pki["client"][1])
        with_cert, _ = make(opts, [k.node()], kube_for(pki, token=None))
        assert (await with_cert.scrape_cycle()).succeeded == 1
    finally:
        await k.stop()


async def test_node_selection_addresses_ports_and_path_annotation(fleet, pki):
    a, b, c, d = fleet
    nodes = [a.node(), b.node(labels={"pool": "b"}), c.node(annotations={"metrics.k8s.io/resource-metrics-path": "/custom/res"}),
             d.node()]
    nodes[3]["status"]["addresses"] = [{"type": "ExternalDNS", "address": "nowhere.invalid"}]
    opts = ScrapeOptions(kubelet_use_node_status_port=True, kubelet_source="resource", node_selector="pool=a")
    col, _ = make(opts, nodes, kube_for(pki))
    stats = await col.scrape_cycle()
    assert stats.nodes == 3 and b.paths == []
    assert c.paths == ["/custom/res"] and a.paths == ["/metrics/resource"]
    assert stats.errors == {"node-3": "no address matched types [InternalIP ExternalIP Hostname]"}
    # without the node-status port the configured port is used (nothing listens there)
    col2, _ = make(ScrapeOptions(kubelet_port=1), [a.node()], kube_for(pki))
    assert (await col2.scrape_cycle()).failed == 1


async def test_annotated_nodes_are_read_as_resource_metrics_with_the_summary_source(fleet, pki):
    """Virtual kubelets (KWOK) serve no Summary API; metrics-server reads the annotated path."""
    a, b = fleet[:2]
    nodes = [a.node(), b.node(annotations={"metrics.k8s.io/resource-metrics-path": "/custom/res"})]
    col, store = make(ScrapeOptions(kubelet_use_node_status_port=True), nodes, kube_for(pki))
    await col.scrape_cycle()
    stats = await col.scrape_cycle()
    assert (stats.succeeded, stats.failed) == (2, 0)
    assert set(a.paths) == {"/stats/summary?only_cpu_and_memory=true"} and set(b.paths) == {"/custom/res"}
    # each asks for the format it reads (KWOK answers 406 to a JSON Accept on its metrics path)
    assert set(a.accepts) == {"application/json"} and {x.split(";")[0] for x in b.accepts} == {"text/plain"}
    [node] = store.node_metrics([b.name])
    assert node.cpu_nanocores == 2_000_000_000
    assert all(u is not None for u in store.pod_metrics(b.pods))


async def test_deleted_nodes_are_forgotten(fleet, pki):
    nodes = [k.node() for k in fleet]
    col, store = make(ScrapeOptions(kubelet_use_node_status_port=True), nodes, kube_for(pki))
    await col.scrape_cycle()
    await col.scrape_cycle()
    assert fleet[0].pods[0] in store.all_pod_keys()
    del nodes[0]
    await col.scrape_cycle()
    assert "node-0" not in store.all_node_names() and fleet[0].pods[0] not in store.all_pod_keys()


def test_flags_have_metrics_server_names_and_defaults():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    opts = options_from_args(parser.parse_args([]))
    assert opts == ScrapeOptions()
    assert opts.metric_resolution == 15 and opts.kubelet_port == 10250
    assert opts.kubelet_preferred_address_types == ["InternalIP", "ExternalIP", "Hostname"]
    args = parser.parse_args(["--metric-resolution=30s", "--kubelet-request-timeout", "5s", "--kubelet-insecure-tls",
                              "--kubelet-preferred-address-types=Hostname,InternalIP", "-l", "pool=a",
                              "--kubelet-use-node-status-port", "--kubelet-source=resource", "--metric-history=1h"])
    opts = options_from_args(args)
    assert (opts.metric_resolution, opts.kubelet_request_timeout, opts.metric_history) == (30, 5, 3600)
    assert opts.kubelet_insecure_tls and opts.kubelet_use_node_status_port and opts.node_selector == "pool=a"
    assert opts.kubelet_preferred_address_types == ["Hostname", "InternalIP"]


@pytest.mark.parametrize("argv, message", [
    (["--metric-resolution=5s"], "at least 10s"),
    (["--metric-resolution=10s", "--kubelet-request-timeout=10s"], "kubelet-request-timeout/0.9"),
    (["--kubelet-insecure-tls", "--kubelet-certificate-authority=/x"], "cannot use both"),
    (["--kubelet-client-certificate=/x"], "need both"),
    (["--kubelet-preferred-address-types=InternalIP,Bogus"], "Bogus"),
    (["-l", "a in (b"], "node-selector"),
    (["--scrape-wave-interval=5s"], "scrape-wave-interval"),
    (["--kubelet-via-apiserver", "--kubelet-insecure-tls"], "the API server connects to the kubelets"),
])
def test_invalid_flag_combinations_are_rejected(argv, message):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    with pytest.raises(ValueError, match=message):
        options_from_args(parser.parse_args(argv))


def test_nodes_start_in_waves_within_metrics_server_stagger():
    import random

    rng = random.Random(7).random
    waves = start_waves(1000, 0.25, rng)
    # metrics-server's stagger for 1,000 nodes is min(8 ms x 1,000, 4 s) = 4 s: 16 waves of 250 ms
    assert sorted(waves) == [0.25 * k for k in range(16)]
    assert sorted(i for members in waves.values() for i in members) == list(range(1000))
    assert min(len(m) for m in waves.values()) > 30  # every wave serves many kubelets at once
    # few nodes: the stagger (8 ms per node) is shorter than one interval, so one wave starts at once
    assert list(start_waves(20, 0.25, rng)) == [0.0]
    # interval 0: metrics-server's own per-node delays, all distinct and below the stagger
    own = start_waves(100, 0.0, random.Random(7).random)
    assert len(own) == 100 and max(own) < 0.8


def test_wave_interval_flag():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert options_from_args(parser.parse_args([])).scrape_wave_interval == 0.25
    assert options_from_args(parser.parse_args(["--scrape-wave-interval=0"])).scrape_wave_interval == 0
    assert options_from_args(parser.parse_args(["--scrape-wave-interval=1s"])).scrape_wave_interval == 1


def test_kubelet_urls_through_the_api_server_node_proxy():
    from autoscaler.scraper.targets import node_target

    node = {"metadata": {"name": "ip-10-0-1-7.ec2.internal",
                         "annotations": {"metrics.k8s.io/resource-metrics-path": "/metrics/resource/v2"}},
            "status": {"addresses": [{"type": "InternalIP", "address": "10.0.1.7"}]}}
    api = "https://ABC.gr7.eu-west-1.eks.amazonaws.com/"
    summary = node_target(node, ScrapeOptions(kubelet_via_apiserver=True), api)
    resource = node_target(node, ScrapeOptions(kubelet_source="resource", kubelet_via_apiserver=True), api)
    assert resource.url.endswith("/api/v1/nodes/ip-10-0-1-7.ec2.internal/proxy/metrics/resource/v2")
    # the annotation names the node's resource metrics: read there even with the summary source
    assert summary.url.endswith("/api/v1/nodes/ip-10-0-1-7.ec2.internal/proxy/metrics/resource/v2")
    assert summary.source == resource.source == "resource"
    del node["metadata"]["annotations"]
    plain = node_target(node, ScrapeOptions())
    assert plain.url == "https://10.0.1.7:10250/stats/summary?only_cpu_and_memory=true"
    assert plain.source == "summary"
    with pytest.raises(ValueError, match="needs a client configuration"):
        Collector(ScrapeOptions(kubelet_via_apiserver=True), WindowStore(15, 900), None, nodes=list)


async def test_kept_alive_kubelet_connections_use_small_tls_buffers_without_a_process_wide_patch(pki):
    """256 KiB of asyncio read buffer per kept-alive kubelet connection would dominate memory at
    thousands of nodes; the scraper's connections share one, nobody else's change."""
    import asyncio.sslproto

    from autoscaler.scraper.http1 import SSL_READ_BUFFER

    default = asyncio.sslproto.SSLProtocol.max_size
    ks = [FakeKubelet("n1"), FakeKubelet("n2")]
    for k in ks:
        await k.start(server_ctx(pki["serving"]))
    try:
        col, _ = make(ScrapeOptions(kubelet_use_node_status_port=True), [k.node() for k in ks], kube_for(pki))
        assert (await col.scrape_cycle()).succeeded == 2
        conns = [c for idle in col.client._pool._idle.values() for c in idle]
        assert conns, "the connection is kept alive for the next cycle"
        buffers = {id(p.transport._ssl_protocol._ssl_buffer) for p in conns}
        assert len(conns) == 2 and len(buffers) == 1  # one buffer for both connections
        assert conns[0].transport._ssl_protocol.max_size == SSL_READ_BUFFER
        assert (await col.scrape_cycle()).succeeded == 2  # reads through the shared buffer work
    finally:
        for k in ks:
            await k.stop()
    assert asyncio.sslproto.SSLProtocol.max_size == default > SSL_READ_BUFFER


async def test_the_start_throttle_never_holds_back_the_stagger_pace():
    """From about 8,000 nodes the stagger starts more nodes per second than the throttle's base
    rate; held requests poll every 5 ms, so the throttle must follow the fleet's pace."""
    nodes = [{"metadata": {"name": f"n{i}"}, "status": {}} for i in range(12_000)]  # no address: fail fast
    col, _ = make(ScrapeOptions(), nodes, None)
    base = col._throttle.rate_limit
    stats = await col.scrape_cycle()
    assert stats.failed == 12_000 and all("no address" in e for e in stats.errors.values())
    assert col._throttle.rate_limit >= 12_000 / 4.0 > base  # every start of a 4 s stagger fits
    col2, _ = make(ScrapeOptions(), nodes[:100], None)
    await col2.scrape_cycle()
    assert col2._throttle.rate_limit == base  # small fleets keep the base cap
