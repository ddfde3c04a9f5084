"""Finding and running the deploy tools (scripts/install-deploy-tools.sh installs them).

A missing tool fails the test, never skips it: a check that silently does not run is no check.
Tools are looked up on PATH, in ``.cache/tools/bin`` and in the running Python's scripts folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sysconfig
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "crypto-watcher"
TOOLS_BIN = Path(os.environ.get("CW_TOOLS_DIR", REPO / ".cache" / "tools")) / "bin"
INSTALL_HINT = "run scripts/install-deploy-tools.sh (it installs the pinned deploy tools)"

# Kubernetes versions the rendered manifests are validated against (as scripts/check-deploy.sh).
KUBE_VERSIONS = ("1.29.0", "1.35.0")
# Kinds kubernetes-validate carries no schema for (CRDs), skipped explicitly and only these.
SKIP_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}


def tool(name: str) -> str:
    """Absolute path of a deploy tool, or fail the test saying how to install it."""
    search = os.pathsep.join([os.environ.get("PATH", ""), str(TOOLS_BIN), sysconfig.get_path("scripts")])
    found = shutil.which(name, path=search)
    if found is None:
        pytest.fail(
            f"{name} not found on PATH, in {TOOLS_BIN} or the Python scripts folder: {INSTALL_HINT}", pytrace=False
        )
    return found


def run(
    args: Sequence[str], *, check: bool = True, env: dict[str, str] | None = None, cwd: Path = REPO
) -> subprocess.CompletedProcess[str]:
    """Run a tool (args[0] is looked up with tool()); with check, fail showing its output."""
    cmd = [tool(args[0]), *args[1:]]
    full_env = None if env is None else {**os.environ, **env}
    proc = subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=300)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}", pytrace=False)
    return proc


EXAMPLE_IMAGE = "ghcr.io/example/crypto-watcher"
"""The image repository renders of a checkout's chart pass: only a release knows the real one
(``ghcr.io/<owner>/crypto-watcher``), so the chart in the repository has none and refuses to guess."""


def image_args(image: str | None = EXAMPLE_IMAGE) -> list[str]:
    return [] if image is None else ["--set", f"image.repository={image}"]


def helm_template_text(*args: str, chart: Path = CHART, check: bool = True, image: str | None = EXAMPLE_IMAGE) -> str:
    """``helm template`` of ``chart``; ``image=None`` renders without setting image.repository."""
    proc = run(
        [
            "helm",
            "template",
            "cw",
            str(chart),
            "--namespace",
            "crypto",
            "--kube-version",
            KUBE_VERSIONS[-1],
            *image_args(image),
            *args,
        ],
        check=check,
    )
    return proc.stdout if proc.returncode == 0 else proc.stderr


def helm_template(*args: str, chart: Path = CHART, image: str | None = EXAMPLE_IMAGE) -> list[dict[str, Any]]:
    """Render the chart and return its objects (the helm test pod included)."""
    return [doc for doc in yaml.safe_load_all(helm_template_text(*args, chart=chart, image=image)) if doc]


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o.get("kind") == kind]


def pod_specs(objects: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(name, pod spec) of every Deployment and bare Pod (the helm test)."""
    specs = []
    for o in objects:
        if o["kind"] == "Deployment":
            specs.append((o["metadata"]["name"], o["spec"]["template"]["spec"]))
        elif o["kind"] == "Pod":
            specs.append((o["metadata"]["name"], o["spec"]))
    return specs


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


K8S = REPO / "scripts" / "k8s.sh"


def k8s_script(action: str, timeout: float = 3600) -> str:
    """``scripts/k8s.sh <action>``'s output; the test fails with its stderr if it fails."""
    done = subprocess.run(["bash", str(K8S), action], capture_output=True, text=True, timeout=timeout, cwd=REPO)
    if done.returncode != 0:
        pytest.fail(f"scripts/k8s.sh {action} failed ({done.returncode}):\n{done.stderr[-3000:]}", pytrace=False)
    return done.stdout.strip()
