"""The real kube-controller-manager (deployment and replicaset controllers) and kube-scheduler
1.37 do their work against the emulated API server: a Deployment gets its ReplicaSet, the
ReplicaSet its pods, and the scheduler binds them to a node.

Both are client-go programs that speak protobuf, watch with bookmarks and wait for every informer
to sync before they act, so this checks the emulator from the clients' side rather than kubectl's.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from sim.apiserver.testing import ServerThread
from sim.controlplane import binaries
from tests.kubectls import today

pytestmark = pytest.mark.real_cluster

NODE = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "n1"}},
        "status": {"conditions": [{"type": "Ready", "status": "True"}],
                   "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                   "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}}
DEPLOYMENT = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "default"},
              "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                       "template": {"metadata": {"labels": {"app": "web"}},
                                    "spec": {"containers": [{"name": "c", "image": "nginx",
                                                             "resources": {"requests": {"cpu": "100m"}}}]}}}}


def test_controller_manager_and_scheduler_work_against_the_emulator(tmp_path: Path):
    kcm, scheduler = binaries.find("kube-controller-manager"), binaries.find("kube-scheduler")
    with ServerThread(tmp_path) as srv:
        kcm_cfg = srv.server.write_kubeconfig(tmp_path / "kcm.kubeconfig", user="system:kube-controller-manager",
                                              groups=())
        sched_cfg = srv.server.write_kubeconfig(tmp_path / "sched.kubeconfig", user="system:kube-scheduler", groups=())
        common = ["--leader-elect=false", "--bind-address=127.0.0.1", "--secure-port=0"]
        logs = {name: (tmp_path / f"{name}.log").open("w") for name in ("kcm", "scheduler")}
        procs = {
            "kcm": subprocess.Popen([str(kcm), f"--kubeconfig={kcm_cfg}", "--controllers=deployment,replicaset",
                                     *common], stdout=logs["kcm"], stderr=subprocess.STDOUT),
            "scheduler": subprocess.Popen([str(scheduler), f"--kubeconfig={sched_cfg}", *common],
                                          stdout=logs["scheduler"], stderr=subprocess.STDOUT),
        }
        try:
            srv.call(lambda: srv.store.create("nodes", NODE))
            srv.call(lambda: srv.store.create("deployments.apps", DEPLOYMENT))
            kubectl = [today().exe(), "--kubeconfig", str(srv.kubeconfig)]
            deadline, pods = time.monotonic() + 90, []
            while time.monotonic() < deadline:
                for name, p in procs.items():
                    assert p.poll() is None, f"{name} exited: {(tmp_path / f'{name}.log').read_text()[-3000:]}"
                out = subprocess.run([*kubectl, "get", "pods", "-l", "app=web", "-o", "json"], capture_output=True,
                                     text=True, timeout=30, check=True).stdout
                pods = json.loads(out)["items"]
                if len(pods) == 2 and all(p["spec"].get("nodeName") == "n1" for p in pods):
                    break
                time.sleep(1)
            else:
                pytest.fail(f"pods not created and bound within 90 s: {[(p['metadata']['name'], p['spec'].get('nodeName')) for p in pods]}\n"
                            f"kcm: {(tmp_path / 'kcm.log').read_text()[-2000:]}\n"
                            f"scheduler: {(tmp_path / 'scheduler.log').read_text()[-2000:]}")
            (rs,) = json.loads(subprocess.run([*kubectl, "get", "rs", "-o", "json"], capture_output=True, text=True,
                                              timeout=30, check=True).stdout)["items"]
            assert rs["metadata"]["ownerReferences"][0]["name"] == "web" and rs["spec"]["replicas"] == 2
            assert all(p["metadata"]["ownerReferences"][0]["name"] == rs["metadata"]["name"] for p in pods)
        finally:
            for p in procs.values():
                p.terminate()
            for p in procs.values():
                p.wait(30)
            for f in logs.values():
                f.close()
