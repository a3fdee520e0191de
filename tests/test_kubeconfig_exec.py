"""Exec credential plugins in kubeconfigs (client-go's protocol), unit and against the emulated API server.

The plugin here is a real executable script: it logs the KUBERNETES_EXEC_INFO, arguments and
environment it was started with, and prints the next ExecCredential from a queue file.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from autoscaler.k8s.execcred import ExecCredentialError, ExecPlugin
from autoscaler.k8s.kubeconfig import KubeConfigError, load_kubeconfig
from autoscaler.k8s.rest import KubeClient, KubeError
from sim.apiserver.testing import ServerThread
from tests.sim_fixtures import KUBECTL

V1 = "client.authentication.k8s.io/v1"
V1BETA1 = "client.authentication.k8s.io/v1beta1"

PLUGIN = """#!{python}
import json, os, sys
queue, log = sys.argv[1], sys.argv[2]
with open(log, "a") as f:
    f.write(json.dumps({{"info": json.loads(os.environ["KUBERNETES_EXEC_INFO"]), "args": sys.argv[3:],
                         "env": os.environ.get("PLUGIN_REGION")}}) + "\\n")
items = json.load(open(queue))
item = items.pop(0) if len(items) > 1 else items[0]
json.dump(items, open(queue, "w"))
if "exit" in item:
    sys.stderr.write(item.get("stderr", ""))
    sys.exit(item["exit"])
sys.stdout.write(item["raw"] if "raw" in item else json.dumps(item))
"""


class Plugin:
    """A plugin script under ``tmp``; ``outputs`` are printed one per run (the last one repeats)."""

    def __init__(self, tmp: Path, outputs: list) -> None:
        self.path = tmp / "bin" / "cred-plugin"
        self.path.parent.mkdir(exist_ok=True)
        self.path.write_text(PLUGIN.format(python=sys.executable))
        self.path.chmod(self.path.stat().st_mode | stat.S_IXUSR)
        self.queue, self.log = tmp / "queue.json", tmp / "runs.jsonl"
        self.queue.write_text(json.dumps(outputs))

    def spec(self, api_version: str = V1, **extra) -> dict:
        return {"apiVersion": api_version, "command": str(self.path), "args": [str(self.queue), str(self.log), "--x"],
                "interactiveMode": "Never", **extra}

    @property
    def runs(self) -> list[dict]:
        return [json.loads(line) for line in self.log.read_text().splitlines()] if self.log.exists() else []


def cred(api_version: str = V1, **status) -> dict:
    return {"apiVersion": api_version, "kind": "ExecCredential", "status": status}


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


# -- the protocol ----------------------------------------------------------------------------------
def test_token_is_reused_until_it_expires(tmp_path):
    clock = Clock(1_800_000_000.0 - 3600)  # 07:00, an hour before the first expiry
    plugin = Plugin(tmp_path, [cred(token="t1", expirationTimestamp="2027-01-15T08:00:00Z"),
                               cred(token="t2", expirationTimestamp="2027-01-15T09:00:00Z")])
    p = ExecPlugin(plugin.spec(), where="kc", clock=clock)
    assert p.credential().token == "t1" and p.credential().token == "t1"
    assert len(plugin.runs) == 1
    clock.t = 1_800_000_000.0  # 2027-01-15T08:00:00Z: expired
    assert p.credential().token == "t2" and len(plugin.runs) == 2


def test_a_rejected_credential_is_renewed_but_a_stale_rejection_is_ignored(tmp_path):
    plugin = Plugin(tmp_path, [cred(token="t1"), cred(token="t2"), cred(token="t3")])
    p = ExecPlugin(plugin.spec(), where="kc")
    assert p.credential().token == "t1"
    p.rejected("t1")
    assert p.credential().token == "t2"
    p.rejected("t1")  # a late 401 for the old token keeps the new one
    assert p.credential().token == "t2" and len(plugin.runs) == 2


def test_plugin_gets_exec_info_args_env_and_cluster(tmp_path):
    plugin = Plugin(tmp_path, [cred(V1BETA1, token="t")])
    spec = plugin.spec(V1BETA1, env=[{"name": "PLUGIN_REGION", "value": "eu-west-1"}], provideClusterInfo=True)
    del spec["interactiveMode"]  # optional in v1beta1 (IfAvailable)
    cluster = {"server": "https://k:6443", "certificate-authority-data": "Q0E=", "config": {"audience": "x"}}
    ExecPlugin(spec, where="kc", cluster=cluster, stdin_is_terminal=lambda: False).credential()
    run = plugin.runs[0]
    assert run["info"] == {"kind": "ExecCredential", "apiVersion": V1BETA1,
                           "spec": {"interactive": False, "cluster": cluster}}
    assert run["args"] == ["--x"] and run["env"] == "eu-west-1"


@pytest.mark.parametrize("outputs, spec_extra, message", [
    ([{"exit": 3, "stderr": "token expired, run 'login'"}], {}, "failed with exit code 3: token expired, run 'login'"),
    ([{"raw": "not json"}], {}, "invalid JSON"),
    ([cred(V1BETA1, token="t")], {}, "configured to use API version client.authentication.k8s.io/v1, "
                                     "plugin returned version client.authentication.k8s.io/v1beta1"),
    ([cred(clientCertificateData="PEM")], {}, "returned only certificate or key, not both"),
    ([cred()], {}, "didn't return a token or cert/key pair"),
    ([cred(token="t", expirationTimestamp="tomorrow")], {}, "invalid expirationTimestamp"),
    ([cred(token="t")], {"interactiveMode": "Always"}, "standard input is not a terminal"),
    ([cred(token="t")], {"interactiveMode": "Sometimes"}, "exec.interactiveMode: invalid value 'Sometimes'"),
    ([cred(token="t")], {"interactiveMode": None}, "interactiveMode must be specified for client.authentication.k8s.io/v1"),
    ([cred(token="t")], {"apiVersion": "client.authentication.k8s.io/v1alpha1"}, "is not supported"),
], ids=["exit", "json", "version", "half-pair", "empty", "expiry", "always", "mode", "no-mode", "v1alpha1"])
def test_plugin_failures_say_what_went_wrong(tmp_path, outputs, spec_extra, message):
    plugin = Plugin(tmp_path, outputs)
    spec = {k: v for k, v in {**plugin.spec(), **spec_extra}.items() if v is not None}
    with pytest.raises(ExecCredentialError) as err:
        ExecPlugin(spec, where="users/me", stdin_is_terminal=lambda: False).credential()
    assert str(err.value).startswith("users/me: ") and message in str(err.value)


def test_missing_plugin_shows_the_install_hint(tmp_path):
    spec = {"apiVersion": V1, "command": "aws-iam-authenticator-not-here", "interactiveMode": "Never",
            "installHint": "Install it with: brew install aws-iam-authenticator"}
    with pytest.raises(ExecCredentialError) as err:
        ExecPlugin(spec, where="kc").credential()
    text = str(err.value)
    assert "executable aws-iam-authenticator-not-here not found" in text
    assert text.endswith("Install it with: brew install aws-iam-authenticator")


# -- in a kubeconfig, against the emulated API server ----------------------------------------------
@pytest.fixture(scope="module")
def apiserver(tmp_path_factory):
    with ServerThread(tmp_path_factory.mktemp("apiserver")) as srv:
        yield srv


def exec_kubeconfig(srv: ServerThread, path: Path, exec_spec: dict) -> Path:
    doc = yaml.safe_load(srv.kubeconfig.read_text())
    doc["users"] = [{"name": "plugin-user", "user": {"exec": exec_spec}}]
    doc["contexts"][0]["context"]["user"] = "plugin-user"
    path.write_text(yaml.safe_dump(doc))
    return path


def kubectl(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([KUBECTL, "--kubeconfig", str(kubeconfig), *args], capture_output=True, text=True, timeout=60)


async def test_client_certificate_from_a_plugin_works_for_us_and_for_kubectl(apiserver, tmp_path):
    admin = yaml.safe_load(apiserver.kubeconfig.read_text())["users"][0]["user"]
    pem = {k: base64.b64decode(admin[f"client-{k}-data"]).decode() for k in ("certificate", "key")}
    plugin = Plugin(tmp_path, [cred(clientCertificateData=pem["certificate"], clientKeyData=pem["key"])])
    # a command with a path separator is resolved against the kubeconfig's directory, as clientcmd does
    spec = {**plugin.spec(), "command": "bin/cred-plugin"}
    kc = exec_kubeconfig(apiserver, tmp_path / "kubeconfig", spec)
    kube = load_kubeconfig(str(kc))
    async with KubeClient(kube) as client:
        ns = await client.get("/api/v1/namespaces/default")
    assert ns["metadata"]["name"] == "default"
    assert kube.auth_headers() == {}  # identity by certificate only
    out = kubectl(kc, "get", "namespace", "default", "-o", "name")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "namespace/default"


async def test_token_from_a_plugin_is_renewed_after_a_401(apiserver, tmp_path):
    assert kubectl(apiserver.kubeconfig, "create", "serviceaccount", "ci-bot").returncode in (0, 1)
    token = kubectl(apiserver.kubeconfig, "create", "token", "ci-bot").stdout.strip()
    assert token.count(".") == 2
    plugin = Plugin(tmp_path, [cred(token="revoked-token"), cred(token=token)])
    kc = exec_kubeconfig(apiserver, tmp_path / "kubeconfig", plugin.spec())
    kube = load_kubeconfig(str(kc))
    async with KubeClient(kube) as client:
        with pytest.raises(KubeError) as err:
            await client.get("/api/v1/namespaces/default")
        assert err.value.code == 401
        ns = await client.get("/api/v1/namespaces/default")  # the plugin ran again after the 401
    assert ns["metadata"]["name"] == "default" and len(plugin.runs) == 2
    out = kubectl(kc, "auth", "whoami", "-o", "json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["status"]["userInfo"]["username"] == "system:serviceaccount:default:ci-bot"


def test_plugin_errors_surface_as_kubeconfig_errors(apiserver, tmp_path):
    kc = exec_kubeconfig(apiserver, tmp_path / "kubeconfig", {"apiVersion": V1, "command": "no-such-plugin"})
    with pytest.raises(KubeConfigError, match="interactiveMode must be specified"):
        load_kubeconfig(str(kc))
    kc = exec_kubeconfig(apiserver, tmp_path / "kubeconfig",
                         {"apiVersion": V1, "command": "no-such-plugin", "interactiveMode": "Never"})
    kube = load_kubeconfig(str(kc))  # loading does not run the plugin; the first request does
    with pytest.raises(KubeConfigError, match="no-such-plugin not found"):
        kube.auth_headers()
    assert os.environ.get("KUBERNETES_EXEC_INFO") is None


async def test_a_slow_plugin_does_not_stop_the_event_loop(apiserver, tmp_path):
    """While `aws eks get-token` & co. run, scraping, serving and lease renewal go on."""
    token = kubectl(apiserver.kubeconfig, "create", "token", "default").stdout.strip()
    plugin = Plugin(tmp_path, [cred(token=token)])
    slow = tmp_path / "bin" / "slow-plugin"
    slow.write_text(f"#!/bin/sh\nsleep 1\nexec {plugin.path} \"$@\"\n")
    slow.chmod(0o755)
    kube = load_kubeconfig(str(exec_kubeconfig(apiserver, tmp_path / "kubeconfig",
                                               {**plugin.spec(), "command": str(slow)})))
    loop = asyncio.get_running_loop()
    gaps: list[float] = []

    async def ticker(stop: asyncio.Event) -> None:
        last = loop.time()
        while not stop.is_set():
            await asyncio.sleep(0.01)
            gaps.append(loop.time() - last)
            last = loop.time()

    stop = asyncio.Event()
    tick = asyncio.create_task(ticker(stop))
    await asyncio.sleep(0)
    async with KubeClient(kube) as client:
        ns = await client.get("/api/v1/namespaces/default")
    stop.set()
    await tick
    assert ns["metadata"]["name"] == "default" and len(plugin.runs) == 1
    assert max(gaps) < 0.5, f"the event loop stalled for {max(gaps):.2f}s while the plugin ran"


def test_inline_client_keys_leave_no_files_behind(apiserver, tmp_path, monkeypatch):
    """client-key-data and plugin-issued keys are loaded without a key file left on disk."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    kube = load_kubeconfig(str(apiserver.kubeconfig))
    assert kube.client_cert_data and kube.client_key_data and not kube.client_cert_file
    for _ in range(3):
        ctx = kube.ssl_context()
        assert ctx.cert_store_stats()["x509_ca"] >= 1
    admin = yaml.safe_load(apiserver.kubeconfig.read_text())["users"][0]["user"]
    pem = {k: base64.b64decode(admin[f"client-{k}-data"]).decode() for k in ("certificate", "key")}
    plugin = Plugin(tmp_path, [cred(clientCertificateData=pem["certificate"], clientKeyData=pem["key"])])
    kube = load_kubeconfig(str(exec_kubeconfig(apiserver, tmp_path / "kc", plugin.spec())))
    kube.ssl_context()
    kube.auth_headers()  # runs the plugin, which loads its certificate into the context
    assert list((tmp_path / "tmp").iterdir()) == []
