"""The pieces of the real control plane that need no running cluster: finding the upstream
programs, NodeRestriction's label rule for hollow nodes, and `sim up`'s flag checks."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from autoscaler.cli import build_parser
from sim.controlplane import binaries
from sim.controlplane.cluster import kubelet_may_set


def _exe(directory: Path, name: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    p = directory / name
    p.write_text("#!/bin/sh\nexit 0\n")
    p.chmod(p.stat().st_mode | stat.S_IXUSR)
    return p


@pytest.fixture
def no_cache(tmp_path, monkeypatch):
    """An empty build cache, no $AUTOSCALER_CONTROL_PLANE_BIN, and PATH with only ``tmp/path``."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(binaries.ENV_DIR, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path / "path"))
    return tmp_path


def test_a_named_directory_is_the_only_place_looked(no_cache):
    _exe(no_cache / "path", "kube-apiserver")
    with pytest.raises(binaries.BinaryNotFound) as err:
        binaries.find("kube-apiserver", no_cache / "release")
    assert str(no_cache / "release") in str(err.value) and "PATH" not in str(err.value)
    assert "scripts/build_control_plane.py" in str(err.value)
    assert binaries.find("kube-apiserver", _exe(no_cache / "release", "kube-apiserver").parent) == \
        no_cache / "release" / "kube-apiserver"


def test_search_order_env_then_build_cache_then_path(no_cache, monkeypatch):
    on_path = _exe(no_cache / "path", "etcd")
    assert binaries.find("etcd") == on_path
    cached = binaries.cache_dir()
    assert cached is not None and str(cached).startswith(str(no_cache / "cache" / "autoscaler" / "control-plane"))
    in_cache = _exe(cached, "etcd")
    assert binaries.find("etcd") == in_cache
    monkeypatch.setenv(binaries.ENV_DIR, str(no_cache / "env"))
    assert binaries.find("etcd") == in_cache  # the env directory lacks it: the cache is next
    in_env = _exe(no_cache / "env", "etcd")
    assert binaries.find("etcd") == in_env


def test_missing_everywhere_names_each_place(no_cache):
    with pytest.raises(binaries.BinaryNotFound) as err:
        binaries.find("kube-scheduler")
    msg = str(err.value)
    assert "kube-scheduler not found" in msg and "PATH" in msg and str(binaries.cache_dir()) in msg


def test_the_cache_key_follows_the_pins(tmp_path, monkeypatch):
    mods = tmp_path / "tools"
    (mods / "kubernetes").mkdir(parents=True)
    (mods / "kubernetes" / "go.mod").write_text("module x\n")
    monkeypatch.setattr(binaries, "MODULES", mods)
    first = binaries.pins_hash()
    (mods / "kubernetes" / "go.sum").write_text("k8s.io/kubernetes v1.37.2 h1:abc\n")
    second = binaries.pins_hash()
    assert first and second and first != second
    monkeypatch.setattr(binaries, "RECIPE", binaries.RECIPE + 1)
    assert binaries.pins_hash() != second


@pytest.mark.parametrize(("label", "allowed"), [
    ("kubernetes.io/hostname", True),
    ("kubernetes.io/os", True),
    ("node.kubernetes.io/instance-type", True),
    ("topology.kubernetes.io/zone", True),
    ("kubelet.kubernetes.io/custom", True),
    ("pool", True),
    ("example.com/team", True),
    ("node-role.kubernetes.io/worker", False),
    ("node-restriction.kubernetes.io/pool", False),
    ("example.k8s.io/x", False),
])
def test_labels_a_kubelet_may_set_on_its_own_node(label, allowed):
    assert kubelet_may_set(label) is allowed


def sim_up(argv: list[str]) -> int:
    """`autoscaler ARGV` without configuring logging (structlog would keep pytest's captured stderr)."""
    args = build_parser().parse_args(argv)
    return args._main(args)


@pytest.mark.parametrize(("argv", "message"), [
    (["sim", "up", "--binaries", "/nowhere"], "--binaries is for --control-plane=real"),
    (["sim", "up", "--hpa-sync-period", "5s"], "--hpa-sync-period is for --control-plane=real"),
    (["sim", "up", "--control-plane=real", "--speed", "2"], "--speed applies to the emulated control plane"),
])
def test_sim_up_refuses_flags_of_the_other_control_plane(argv, message, capsys):
    assert sim_up(argv) == 1
    assert message in capsys.readouterr().err


def test_sim_up_real_without_the_programs_says_how_to_build_them(no_cache, capsys):
    state = no_cache / "state"
    rc = sim_up(["sim", "up", "--control-plane=real", "--nodes", "1", "--state-dir", str(state),
                   "--binaries", str(no_cache / "empty")])
    assert rc == 1
    err = capsys.readouterr().err
    assert "cannot start the real control plane" in err and "etcd not found" in err
    assert "scripts/build_control_plane.py" in err
    assert not (state / "logs").exists()  # checked before anything was started
