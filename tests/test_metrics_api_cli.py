"""`autoscaler run` as a real process: bad configuration fails fast with a message naming the flag;
a good one serves, logs JSON, and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import signal
import ssl
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml
from test_metrics_api_support import metrics_only_flags

from sim.cluster import run_in_thread
from sim.scenario import parse_scenario


def _kubeconfig(tmp: Path) -> Path:
    path = tmp / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
    }))
    return path


def _run(*argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "autoscaler", "run", "--log-format", "json", *argv],
                          capture_output=True, text=True, timeout=timeout)


def _errors(stderr: str) -> list[str]:
    out = []
    for line in stderr.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("level") == "error":
            out.append(rec.get("error", ""))
    return out


@pytest.mark.parametrize(("flags", "expected"), [
    (["--metric-resolution", "5s"], "metric-resolution should be a time duration at least 10s"),
    (["--tls-cert-file", "/etc/hostname"], "--tls-cert-file and --tls-private-key-file must be given together"),
    (["--requestheader-client-ca-file", "/nonexistent/front-proxy-ca.crt"],
     "--requestheader-client-ca-file: cannot read /nonexistent/front-proxy-ca.crt"),
    (["--client-ca-file", "/etc/hostname"], "--client-ca-file: /etc/hostname contains no PEM certificate"),
    (["--secure-port", "70000"], "--secure-port 70000 is not a valid port"),
])
def test_bad_configuration_fails_fast_naming_the_flag(tmp_path, flags, expected):
    proc = _run("--kubeconfig", str(_kubeconfig(tmp_path)), "--cert-dir", str(tmp_path / "c"), *flags)
    assert proc.returncode == 1
    errors = _errors(proc.stderr)
    assert errors and expected in errors[0], proc.stderr


def test_missing_kubeconfig_is_reported(tmp_path):
    proc = _run("--kubeconfig", str(tmp_path / "nope"), "--cert-dir", str(tmp_path / "c"))
    assert proc.returncode == 1
    assert "cannot read kubeconfig" in _errors(proc.stderr)[0]


def test_process_serves_and_stops_on_sigterm(tmp_path):
    cluster = run_in_thread(parse_scenario({"name": "cli", "nodes": [{"name": "worker-1"}]}), tmp_path / "cluster")
    proc = None
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "autoscaler", "run", "--log-format", "json", "--kubeconfig",
             str(cluster.metrics_kubeconfig), "--secure-port", "0", "--bind-address", "127.0.0.1",
             "--cert-dir", str(tmp_path / "serving"), "--kubelet-use-node-status-port", *metrics_only_flags()],
            stderr=subprocess.PIPE, text=True)
        port = None
        events = []
        assert proc.stderr is not None
        for line in proc.stderr:
            rec = json.loads(line)
            events.append(rec["event"])
            if rec["event"] == "Serving securely":
                port = rec["port"]
                break
        assert port, events
        assert "Generated self-signed cert" in events
        ctx = ssl.create_default_context(cafile=str(tmp_path / "serving" / "apiserver.crt"))
        with urllib.request.urlopen(f"https://127.0.0.1:{port}/livez", context=ctx, timeout=10) as r:
            assert (r.status, r.read()) == (200, b"ok")
        proc.send_signal(signal.SIGTERM)
        rest = proc.stderr.read()
        assert proc.wait(timeout=30) == 0
        assert '"event": "stopped"' in rest
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        cluster.stop()
