"""GitHub workflows and dependabot: GitHub's schemas, actionlint (with shellcheck on run: scripts),
and what they promise: CI runs the README's test command and the deploy checks, releases push a
multi-arch image and the chart to GHCR, every action is pinned, permissions are least-privilege."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.tools import REPO, load_yaml, run

WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
DEPENDABOT = REPO / ".github" / "dependabot.yml"


def steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for job in workflow["jobs"].values() for s in job.get("steps", [])]


def uses(workflow: dict[str, Any]) -> list[str]:
    return [s["uses"] for s in steps(workflow) if "uses" in s]


def runs(workflow: dict[str, Any]) -> str:
    return "\n".join(s.get("run", "") for s in steps(workflow))


def on(workflow: dict[str, Any]) -> Any:
    # PyYAML (YAML 1.1) reads the key `on` as True.
    return workflow.get("on", workflow.get(True))


@pytest.fixture(scope="module")
def ci() -> dict[str, Any]:
    data: dict[str, Any] = load_yaml(REPO / ".github" / "workflows" / "ci.yml")
    return data


@pytest.fixture(scope="module")
def release() -> dict[str, Any]:
    data: dict[str, Any] = load_yaml(REPO / ".github" / "workflows" / "release.yml")
    return data


def test_workflows_match_githubs_schema() -> None:
    assert {p.name for p in WORKFLOWS} >= {"ci.yml", "release.yml"}
    run(["check-jsonschema", "--builtin-schema", "vendor.github-workflows", *[str(p) for p in WORKFLOWS]])


def test_dependabot_matches_its_schema_and_covers_every_ecosystem() -> None:
    run(["check-jsonschema", "--builtin-schema", "vendor.dependabot", str(DEPENDABOT)])
    ecosystems = {u["package-ecosystem"] for u in load_yaml(DEPENDABOT)["updates"]}
    assert {"pip", "github-actions", "docker"} <= ecosystems


def test_actionlint_clean() -> None:
    run(["shellcheck", "--version"])  # actionlint checks run: scripts only when shellcheck exists
    proc = run(["actionlint", "-no-color"], check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.name for p in WORKFLOWS])
def test_actions_are_pinned_and_permissions_least_privilege(path: Path) -> None:
    workflow = load_yaml(path)
    for ref in uses(workflow):
        assert re.fullmatch(r"[\w.-]+/[\w./-]+@(v\d+(\.\d+){0,2}|[0-9a-f]{40})", ref), (
            f"{path.name}: {ref} is not pinned to a version tag or commit"
        )
    assert workflow["permissions"] == {"contents": "read"}, (
        f"{path.name}: the workflow default must be read-only; jobs widen it when they must"
    )
    for name, job in workflow["jobs"].items():
        for scope, level in job.get("permissions", {}).items():
            assert level in ("read", "write", "none"), (name, scope)
            if level == "write":
                assert scope in ("packages", "contents", "id-token", "attestations"), (name, scope)
        assert "timeout-minutes" in job, f"{path.name}: job {name} has no timeout"


def test_ci_runs_the_readme_test_command_and_the_deploy_checks(ci: dict[str, Any]) -> None:
    triggers = on(ci)
    assert "push" in triggers and "pull_request" in triggers
    commands = runs(ci)
    assert "bash scripts/test.sh" in commands
    assert "bash scripts/install-deploy-tools.sh" in commands
    assert "bash scripts/check-deploy.sh" in commands
    assert "pytest tests/deploy" in commands
    assert "docker build" in commands and "docker compose config" in commands
    actions = " ".join(uses(ci))
    for needed in ("actions/setup-python", "actions/setup-java", "actions/setup-go"):
        assert needed in actions
    assert all(job.get("permissions", {}).get("packages") != "write" for job in ci["jobs"].values()), (
        "CI never publishes"
    )


def test_release_pushes_a_multi_arch_image_and_the_chart(release: dict[str, Any]) -> None:
    assert on(release) == {"push": {"tags": ["v*"]}}
    actions = uses(release)
    for needed in (
        "docker/setup-qemu-action",
        "docker/setup-buildx-action",
        "docker/login-action",
        "docker/metadata-action",
        "docker/build-push-action",
    ):
        assert any(a.startswith(needed + "@") for a in actions), needed
    build = next(s for s in steps(release) if s.get("uses", "").startswith("docker/build-push"))
    platforms = set(build["with"]["platforms"].split(","))
    assert platforms == {"linux/amd64", "linux/arm64"}
    assert build["with"]["push"] is True
    login = next(s for s in steps(release) if s.get("uses", "").startswith("docker/login-action"))
    assert login["with"]["registry"] == "ghcr.io"
    commands = runs(release)
    assert "helm package helm/crypto-watcher" in commands
    assert re.search(r"helm push .*oci://ghcr\.io/", commands)
    assert "sync-chart-dashboards.sh --check" in commands
    image_job = next(
        j
        for j in release["jobs"].values()
        if any(s.get("uses", "").startswith("docker/build-push") for s in j["steps"])
    )
    assert image_job["permissions"] == {"contents": "read", "packages": "write"}


def test_checkout_does_not_persist_credentials() -> None:
    for path in WORKFLOWS:
        for step in steps(load_yaml(path)):
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step.get("with", {}).get("persist-credentials") is False, path.name
