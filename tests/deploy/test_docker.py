"""The Dockerfile, .dockerignore and requirements.lock: hadolint, and what the image promises
(multi-stage, slim Python 3.11, locked hash-checked dependencies, non-root, HEALTHCHECK on /livez,
OCI labels, any service by command, nothing secret or build-only in the final stage).

No Docker engine is needed: the image itself is built by CI (.github/workflows/ci.yml)."""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.deploy.tools import REPO, run

DOCKERFILE = REPO / "Dockerfile"
LOCK = REPO / "requirements.lock"


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [arg for kw, arg in self.instructions if kw == keyword]


def parse_dockerfile() -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, with continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = rest.split()
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(parts[0], name))
        elif not stages and keyword == "ARG" and "=" in rest:
            k, v = rest.split("=", 1)
            args[k.strip()] = v.strip()
        elif stages:
            stages[-1].instructions.append((keyword, rest.strip()))
    return args, stages


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse_dockerfile()[1]


@pytest.fixture(scope="module")
def final(stages: list[Stage]) -> Stage:
    return stages[-1]


def test_hadolint_clean() -> None:
    proc = run(["hadolint", "--failure-threshold", "info", str(DOCKERFILE)], check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_multi_stage_on_slim_python_311(stages: list[Stage]) -> None:
    args, _ = parse_dockerfile()
    assert len(stages) >= 2
    for stage in stages:
        base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], stage.base)
        assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?(@sha256:[0-9a-f]{64})?", base), base


def test_dependencies_come_from_the_lock_with_hashes(stages: list[Stage]) -> None:
    runs = " ".join(r for s in stages[:-1] for r in s.all("RUN"))
    assert "-r requirements.lock" in runs
    assert "--require-hashes" in runs
    assert "--only-binary=:all:" in runs, "wheels only: no compiler needed in any stage"
    assert "--no-deps ." in runs, "the project itself adds no unlocked dependency"


def test_final_stage_is_non_root_with_no_build_tools_or_secrets(final: Stage) -> None:
    users = final.all("USER")
    assert users, "no USER in the final stage"
    user = users[-1].split(":")[0]
    assert user.isdigit() and int(user) != 0, "a numeric non-root uid (Kubernetes runAsNonRoot)"
    runs = " ".join(final.all("RUN"))
    assert not re.search(r"\b(apt-get|apk|pip|gcc|make|build-essential)\b", runs), runs
    copies = final.all("COPY")
    assert copies and all(c.startswith("--from=") for c in copies), (
        "the final stage copies only from the build stage: no sources, no .env"
    )
    for kw in ("ENV", "ARG"):
        for arg in final.all(kw):
            assert not re.search(r"(PASSWORD|TOKEN|SECRET|API_KEY)", arg.upper()), arg


def test_healthcheck_probes_livez_with_python(final: Stage) -> None:
    (check,) = final.all("HEALTHCHECK")
    assert "CMD" in check and "/livez" in check
    exec_form = json.loads(check[check.index("[") :])
    assert exec_form[0] == "python" and exec_form[1] == "-c"
    compile(exec_form[2], "<healthcheck>", "exec")  # the probe is valid Python
    for port in ("9101", "9102", "9103"):
        assert port in exec_form[2]


def test_container_defaults_serve_on_all_interfaces_and_keep_state_on_a_volume(
    final: Stage,
) -> None:
    env = " ".join(final.all("ENV"))
    assert "CW_HTTP_HOST=0.0.0.0" in env
    assert "CW_STATE_DIR=/var/lib/crypto-watcher/state" in env
    assert "CW_NOTIFY_STATE=/var/lib/crypto-watcher/state/" in env
    runs = " ".join(final.all("RUN"))
    assert "chown -R 10001:10001 /var/lib/crypto-watcher" in runs


def test_oci_labels(final: Stage) -> None:
    labels = " ".join(final.all("LABEL"))
    for key in ("title", "description", "version", "revision", "created", "licenses", "source"):
        assert f"org.opencontainers.image.{key}=" in labels, key


def test_one_image_runs_any_service_by_command(final: Stage) -> None:
    assert not final.all("ENTRYPOINT"), "an ENTRYPOINT would pin one service"
    (cmd,) = final.all("CMD")
    assert json.loads(cmd) == ["crypto-producer"]
    assert "/opt/venv/bin" in " ".join(final.all("ENV"))
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    scripts = pyproject["project"]["scripts"]
    assert {"crypto-producer", "crypto-processor"} <= set(scripts)


def test_dockerignore_is_an_allow_list() -> None:
    lines = [
        ln.strip() for ln in (REPO / ".dockerignore").read_text().splitlines() if ln.strip() and not ln.startswith("#")
    ]
    assert lines[0] == "*", "start by ignoring everything, then allow what the image needs"
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    assert {"pyproject.toml", "requirements.lock", "crypto_watcher", "producer", "processor", "notifier"} <= allowed
    assert not {a for a in allowed if a.startswith((".env", ".git", ".cache", "tests", "helm"))}


def locked() -> dict[str, tuple[str, list[str]]]:
    """name -> (version, hashes) from requirements.lock."""
    text = LOCK.read_text()
    out: dict[str, tuple[str, list[str]]] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        m = re.match(r"([A-Za-z0-9_.\-]+)==([^\s;\\]+)", block)
        if m:
            out[canonicalize_name(m.group(1))] = (m.group(2), re.findall(r"--hash=sha256:(\w+)", block))
    return out


def test_lock_pins_every_package_with_hashes() -> None:
    pins = locked()
    assert pins
    for name, (_version, hashes) in pins.items():
        assert hashes, f"{name} has no --hash in requirements.lock"
        assert all(len(h) == 64 for h in hashes), name


def test_lock_satisfies_pyproject_dependencies() -> None:
    """The lock is generated from pyproject.toml; regenerate it (command at its top) when they drift."""
    pins = locked()
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    problems = []
    for spec in pyproject["project"]["dependencies"]:
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        if name not in pins:
            problems.append(f"{req.name} is not in requirements.lock")
        elif not req.specifier.contains(pins[name][0], prereleases=True):
            problems.append(
                f"requirements.lock pins {req.name}=={pins[name][0]}, outside pyproject.toml's {req.specifier}"
            )
    assert not problems, "\n".join(problems)
