"""The Helm chart against a real Kubernetes API server: install, upgrade, rollback.

scripts/k8s.sh runs etcd, kube-apiserver, kube-controller-manager and kube-scheduler built from
their Go modules, and kwok, which fakes a Ready node and reports its pods Running (no container
ever runs). That is enough for what linting cannot prove: the API server accepts every object
(admission, defaulting, validation of the real CRDs of prometheus-operator), ``helm install
--wait`` sees Deployments roll out, an upgrade rolls exactly the Deployments whose pod template
changed, a rollback restores the previous revision, and ``kubeVersion`` is checked against the
server's real version. ``helm test`` would need a running container: it is not run here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.tools import CHART, EXAMPLE_IMAGE, K8S, REPO, k8s_script, run

CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
SECRETS = [
    "--set",
    "secrets.coingeckoApiKey=ci-placeholder",
    "--set",
    "secrets.influxToken=ci-placeholder",
    "--set",
    "secrets.notifyUrls=json://notify.example.invalid/hook",
]
KINDS = {
    "deployments": "Deployment",
    "services": "Service",
    "configmaps": "ConfigMap",
    "secrets": "Secret",
    "poddisruptionbudgets": "PodDisruptionBudget",
    "horizontalpodautoscalers": "HorizontalPodAutoscaler",
    "networkpolicies": "NetworkPolicy",
    "serviceaccounts": "ServiceAccount",
    "servicemonitors": "ServiceMonitor",
    "prometheusrules": "PrometheusRule",
}


@pytest.fixture(scope="module")
def kubeconfig() -> Iterator[str]:
    """The API server of scripts/k8s.sh: started here (and stopped after) unless it is running."""
    running = subprocess.run(["bash", str(K8S), "status"], capture_output=True, cwd=REPO).returncode == 0
    if not running:
        k8s_script("start")
    try:
        yield k8s_script("kubeconfig")
    finally:
        if not running:
            k8s_script("stop")


class Cluster:
    def __init__(self, kubeconfig: str) -> None:
        self.kubeconfig = kubeconfig
        self.kubectl_bin = k8s_script("kubectl")

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(["helm", "--kubeconfig", self.kubeconfig, *args], check=check)

    def kubectl(self, *args: str) -> Any:
        done = subprocess.run(
            [self.kubectl_bin, "--kubeconfig", self.kubeconfig, *args, "-o", "json"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            pytest.fail(f"kubectl {' '.join(args)} failed: {done.stderr}", pytrace=False)
        return json.loads(done.stdout)

    def kubectl_apply(self, *objects: dict[str, Any]) -> None:
        done = subprocess.run(
            [self.kubectl_bin, "--kubeconfig", self.kubeconfig, "apply", "-f", "-"],
            input=yaml.safe_dump_all(objects),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            pytest.fail(f"kubectl apply failed: {done.stderr}", pytrace=False)

    def objects(self, namespace: str, release: str) -> dict[tuple[str, str], dict[str, Any]]:
        """(kind, name) -> object, for everything of the release the server holds."""
        found: dict[tuple[str, str], dict[str, Any]] = {}
        for resource, kind in KINDS.items():
            items = self.kubectl("get", resource, "-n", namespace, "-l", f"app.kubernetes.io/instance={release}")
            for item in items["items"]:
                found[(kind, item["metadata"]["name"])] = item
        return found


@pytest.fixture(scope="module")
def cluster(kubeconfig: str) -> Cluster:
    return Cluster(kubeconfig)


def rendered(*args: str) -> list[dict[str, Any]]:
    text = run(["helm", "template", "cw", str(CHART), *args])
    return [d for d in yaml.safe_load_all(text.stdout) if d]


@pytest.mark.parametrize("values", [None, *CI_VALUES], ids=["default", *[p.name for p in CI_VALUES]])
def test_install_is_accepted_server_side_and_rolls_out(cluster: Cluster, values: Path | None) -> None:
    name = "default" if values is None else values.name.removesuffix("-values.yaml")
    namespace, release = f"cw-{name}", "cw"
    # The ci/ value files carry their own placeholder secrets (or an existing Secret's name).
    args = ["--set", f"image.repository={EXAMPLE_IMAGE}", *(SECRETS if values is None else ["-f", str(values)])]
    account = (yaml.safe_load(values.read_text()) if values else {}).get("serviceAccount", {})
    if account.get("create") is False:
        # The chart then uses an existing ServiceAccount, and the API server refuses every pod that
        # names a missing one ("error looking up service account"): create it first, as a user must.
        cluster.kubectl_apply(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": account["name"], "namespace": namespace},
            },
        )
    try:
        cluster.helm(
            "install", release, str(CHART), "-n", namespace, "--create-namespace", "--wait", "--timeout", "4m", *args
        )
        server = cluster.objects(namespace, release)
        expected = {
            (d["kind"], d["metadata"]["name"]) for d in rendered("-n", namespace, *args) if d["kind"] in KINDS.values()
        }
        assert expected, "the chart rendered nothing"
        assert expected <= set(server), f"not on the server: {expected - set(server)}"
        for (kind, dname), obj in server.items():
            if kind == "Deployment":
                status = obj["status"]
                assert status.get("readyReplicas") == obj["spec"]["replicas"], (dname, status)
    finally:
        cluster.helm("uninstall", release, "-n", namespace, "--wait", check=False)


def _deployments(cluster: Cluster, namespace: str) -> dict[str, dict[str, Any]]:
    items = cluster.kubectl("get", "deployments", "-n", namespace)["items"]
    return {d["metadata"]["labels"]["app.kubernetes.io/component"]: d for d in items}


def test_upgrade_rolls_only_what_changed_and_rollback_restores(cluster: Cluster, tmp_path: Path) -> None:
    namespace, release = "cw-upgrade", "cw"
    base = ["--set", f"image.repository={EXAMPLE_IMAGE}", *SECRETS]
    try:
        cluster.helm("install", release, str(CHART), "-n", namespace, "--create-namespace", "--wait", *base)
        before = _deployments(cluster, namespace)
        assert set(before) == {"producer", "processor", "notifier"}

        # More processor replicas: only the processor's spec changes; its pod template does not.
        cluster.helm(
            "upgrade", release, str(CHART), "-n", namespace, "--wait", *base, "--set", "processor.replicaCount=2"
        )
        scaled = _deployments(cluster, namespace)
        assert scaled["processor"]["spec"]["replicas"] == 2 and scaled["processor"]["status"]["readyReplicas"] == 2
        for component in ("producer", "notifier"):
            assert scaled[component]["metadata"]["generation"] == before[component]["metadata"]["generation"]

        # A new rules file: the processor's pods roll (checksum annotation); the others stay.
        rules = tmp_path / "rules.yaml"
        rules.write_text("defaults:\n  rules:\n    drop: {threshold_pct: 3}\n")
        cluster.helm(
            "upgrade", release, str(CHART), "-n", namespace, "--wait", *base,
            "--set", "processor.replicaCount=2", "--set-file", f"alertRules.rules={rules}",
        )  # fmt: skip
        ruled = _deployments(cluster, namespace)
        template = "spec", "template", "metadata"
        assert _nested(ruled["processor"], *template) != _nested(scaled["processor"], *template)
        for component in ("producer", "notifier"):
            assert ruled[component]["metadata"]["generation"] == before[component]["metadata"]["generation"]

        # A new image tag rolls every Deployment.
        cluster.helm(
            "upgrade", release, str(CHART), "-n", namespace, "--wait", *base,
            "--set", "processor.replicaCount=2", "--set-file", f"alertRules.rules={rules}", "--set", "image.tag=9.9.9",
        )  # fmt: skip
        tagged = _deployments(cluster, namespace)
        for component, deployment in tagged.items():
            image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
            assert image == f"{EXAMPLE_IMAGE}:9.9.9", (component, image)
            assert deployment["metadata"]["generation"] > ruled[component]["metadata"]["generation"]

        # Rollback to the revision before the tag: images and rules as they were.
        history = json.loads(cluster.helm("history", release, "-n", namespace, "-o", "json").stdout)
        assert [h["revision"] for h in history] == [1, 2, 3, 4]
        cluster.helm("rollback", release, "3", "-n", namespace, "--wait")
        back = _deployments(cluster, namespace)
        for component, deployment in back.items():
            image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
            assert image == ruled[component]["spec"]["template"]["spec"]["containers"][0]["image"], component
        assert _nested(back["processor"], *template) == _nested(ruled["processor"], *template)
        status = json.loads(cluster.helm("status", release, "-n", namespace, "-o", "json").stdout)
        assert status["version"] == 5 and status["info"]["status"] == "deployed"
    finally:
        cluster.helm("uninstall", release, "-n", namespace, "--wait", check=False)


def _nested(obj: dict[str, Any], *path: str) -> Any:
    for key in path:
        obj = obj.get(key, {})
    return obj


def test_kube_version_constraint_is_checked_against_the_server(cluster: Cluster, tmp_path: Path) -> None:
    version = cluster.kubectl("version")["serverVersion"]
    assert version["gitVersion"].startswith("v1."), version  # a real version, not v0.0.0
    chart = tmp_path / "crypto-watcher"
    shutil.copytree(CHART, chart)
    meta = chart / "Chart.yaml"
    meta.write_text(meta.read_text().replace('kubeVersion: ">=1.29.0-0"', 'kubeVersion: ">=1.99.0-0"'))
    refused = cluster.helm(
        "install", "cw", str(chart), "-n", "cw-kubeversion", "--create-namespace",
        "--set", f"image.repository={EXAMPLE_IMAGE}", *SECRETS, check=False,
    )  # fmt: skip
    assert refused.returncode != 0
    assert "kubeVersion" in refused.stderr and version["gitVersion"].lstrip("v") in refused.stderr, refused.stderr
