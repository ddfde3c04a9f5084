"""scripts/k8s.sh itself: a start that fails half way leaves nothing running.

A failed start once left etcd, the API server, controller-manager, scheduler and kwok holding
their ports, and the next run's Helm tests failed on "127.0.0.1:16443 is taken". Here the start
fails at its last step (the CRDs it applies are not valid objects), after every component is up,
in a tools cache of its own (the real binaries, linked) and on ports of its own.
"""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

from tests.deploy.tools import K8S, REPO, k8s_script
from tests.support.net import free_ports

COMPONENTS = ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _running_with(text: str) -> list[str]:
    """Command lines of live processes that mention ``text`` (every component is given a path
    inside the test's own cache folder: data dir, certificates or kubeconfig)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # gone, or not a process
        if text in cmdline:
            found.append(cmdline)
    return found


def test_a_start_that_fails_after_launching_stops_every_component(tmp_path: Path) -> None:
    k8s_script("build")  # cached: the binaries the Helm tests use
    bin_dir = Path(k8s_script("kubectl")).parent
    tools, cache = tmp_path / "tools", tmp_path / "cache"
    tools.mkdir()
    (tools / bin_dir.name).symlink_to(bin_dir)
    crds = next(bin_dir.parent.glob("prometheus-operator-*-crds"))
    bad = tools / crds.name
    bad.mkdir()
    for crd in crds.iterdir():
        (bad / crd.name).write_text("kind: NotAnObject\n")
    api, etcd, peer, cm, sched = free_ports(5)
    env = {
        **os.environ,
        "CW_TOOLS_CACHE": str(tools),
        "CW_CACHE_DIR": str(cache),
        "K8S_API_PORT": str(api),
        "K8S_ETCD_PORT": str(etcd),
        "K8S_ETCD_PEER_PORT": str(peer),
        "K8S_CM_PORT": str(cm),
        "K8S_SCHED_PORT": str(sched),
    }
    done = subprocess.run(["bash", str(K8S), "start"], capture_output=True, text=True, timeout=600, cwd=REPO, env=env)
    try:
        assert done.returncode != 0, done.stderr[-2000:]
        assert "applying prometheus-operator's CRDs failed" in done.stderr, done.stderr[-2000:]
        assert "start failed; stopping what it started" in done.stderr
        for name in COMPONENTS:  # each had started (stop_pid says "stopped" only for a live one)
            assert f"{name} stopped" in done.stderr, (name, done.stderr[-2000:])
        assert not _running_with(str(cache)), "a component outlived the failed start"
        assert not [port for port in (api, etcd, cm, sched) if _listening(port)]
    finally:
        subprocess.run(["bash", str(K8S), "stop"], capture_output=True, timeout=120, cwd=REPO, env=env)
