"""docker-compose.yml and .env.example: the compose spec, the way `docker compose config` loads it
(compose-go, via compose-check), and what the stack promises: healthchecks, restart policies,
dependency conditions, no default secrets, every variable documented, host ports on 127.0.0.1."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.deploy.tools import REPO, load_yaml, run

COMPOSE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
APP_SERVICES = {"producer": 9101, "processor": 9102, "notifier": 9103}
# Secrets compose must demand (${VAR:?...}) and .env.example must leave empty.
REQUIRED_SECRETS = {"INFLUXDB_ADMIN_PASSWORD", "INFLUXDB_ADMIN_TOKEN", "GRAFANA_ADMIN_PASSWORD"}
PLACEHOLDER_SECRETS = {name: f"placeholder-{name.lower()}" for name in REQUIRED_SECRETS}
VAR = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)")
ASSIGNMENT = re.compile(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = load_yaml(COMPOSE)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return dict(compose["services"])


def strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in strings(k) + strings(v)]
    if isinstance(node, list):
        return [s for item in node for s in strings(item)]
    return []


def env_example() -> dict[str, str]:
    out = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        m = ASSIGNMENT.match(line.strip())
        if m:
            out[m.group(1)] = m.group(2)
    return out


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


# --- the tools ------------------------------------------------------------------------------------


def test_compose_file_matches_the_compose_spec() -> None:
    proc = run(["check-jsonschema", "--builtin-schema", "vendor.compose-spec", str(COMPOSE)])
    assert "ok" in proc.stdout


def test_compose_loads_like_docker_compose_config_with_env_example() -> None:
    proc = run(["compose-check", "-env-file", str(ENV_EXAMPLE), str(COMPOSE)], env=PLACEHOLDER_SECRETS)
    project = yaml.safe_load(proc.stdout)
    assert set(APP_SERVICES) <= set(project["services"])
    env = project["services"]["producer"]["environment"]
    assert env["CW_SOURCE"] == "simulate"
    assert (
        project["services"]["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"]
        == (PLACEHOLDER_SECRETS["GRAFANA_ADMIN_PASSWORD"])
    )
    # Grafana falls back to the admin token when no read-only token is given (nested default).
    assert (
        project["services"]["grafana"]["environment"]["INFLUX_TOKEN"] == (PLACEHOLDER_SECRETS["INFLUXDB_ADMIN_TOKEN"])
    )


@pytest.mark.parametrize("missing", sorted(REQUIRED_SECRETS))
def test_compose_refuses_to_start_without_each_secret(missing: str) -> None:
    env = {k: v for k, v in PLACEHOLDER_SECRETS.items() if k != missing}
    env[missing] = ""
    proc = run(["compose-check", "-env-file", str(ENV_EXAMPLE), str(COMPOSE)], env=env, check=False)
    assert proc.returncode != 0
    assert f"required variable {missing} is missing a value" in proc.stderr


# --- the stack ------------------------------------------------------------------------------------


def test_the_whole_stack_is_there(services: dict[str, dict[str, Any]]) -> None:
    assert {"kafka", "influxdb", "grafana", "prometheus", *APP_SERVICES} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["influxdb"]["image"].startswith("influxdb:2")
    for name, svc in services.items():
        image = svc.get("image", "")
        assert ":latest" not in image and (":" in image or "build" in svc), name


def test_every_service_has_a_healthcheck_and_restart_policy(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, svc in services.items():
        check = svc.get("healthcheck")
        assert check and check.get("test") and not check.get("disable"), f"{name}: no healthcheck"
        assert svc.get("restart") in ("unless-stopped", "always", "on-failure"), name


def test_app_healthchecks_probe_livez_on_their_port(services: dict[str, dict[str, Any]]) -> None:
    for name, port in APP_SERVICES.items():
        svc = services[name]
        assert environment(svc)["CW_HTTP_PORT"] == str(port)
        assert environment(svc)["CW_HTTP_HOST"] == "0.0.0.0", "Prometheus scrapes from outside"
        assert "/livez" in " ".join(svc["healthcheck"]["test"])
        assert svc["command"] == [f"crypto-{name}"]


def test_depends_on_uses_conditions(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        deps = svc.get("depends_on", {})
        assert isinstance(deps, dict), f"{name}: depends_on must use the long form with conditions"
        for dep, spec in deps.items():
            assert dep in services, f"{name} depends on unknown {dep}"
            assert spec.get("condition") in ("service_started", "service_healthy", "service_completed_successfully"), (
                name
            )
    healthy = {
        "producer": {"kafka"},
        "processor": {"kafka", "influxdb"},
        "notifier": {"kafka"},
        "grafana": {"influxdb", "prometheus"},
    }
    for name, needed in healthy.items():
        deps = services[name]["depends_on"]
        for dep in needed:
            assert deps[dep]["condition"] == "service_healthy", f"{name} -> {dep}"


def test_app_services_share_the_image_built_here(services: dict[str, dict[str, Any]]) -> None:
    images = {services[n]["image"] for n in APP_SERVICES}
    assert len(images) == 1
    for name in APP_SERVICES:
        svc = services[name]
        assert svc["build"]["context"] == "."
        assert svc.get("read_only") is True, name
        assert svc.get("cap_drop") == ["ALL"], name
        assert "no-new-privileges:true" in svc.get("security_opt", []), name


def test_no_plaintext_or_default_secrets(services: dict[str, dict[str, Any]]) -> None:
    secret_vars = {
        ("grafana", "GF_SECURITY_ADMIN_PASSWORD"),
        ("influxdb", "DOCKER_INFLUXDB_INIT_PASSWORD"),
        ("influxdb", "DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"),
        ("processor", "CW_INFLUX_TOKEN"),
    }
    for service, var in secret_vars:
        value = environment(services[service])[var]
        assert re.fullmatch(r"\$\{[A-Z_]+:\?[^}]+\}", value), (
            f"{service}.{var} must be ${{VAR:?message}} (required, no default), not {value!r}"
        )
    # Optional secrets pass through without a default value.
    for value in strings(services):
        for m in re.finditer(r"\$\{([A-Z_]*(?:PASSWORD|TOKEN|API_KEY|NOTIFY_URLS))(:?-)([^}]*)\}", value):
            assert m.group(3) == "" or m.group(3).startswith("${"), (
                f"{m.group(1)} has a default value in docker-compose.yml"
            )
    example = env_example()
    for name in REQUIRED_SECRETS:
        assert example.get(name) == "", f".env.example must leave {name} empty"
    for name, value in example.items():
        if re.search(r"PASSWORD|TOKEN|API_KEY|NOTIFY_URLS", name):
            assert value == "", f".env.example gives {name} a value"


def test_every_compose_variable_is_documented_in_env_example(compose: dict[str, Any]) -> None:
    used = {m.group(1) for s in strings(compose) for m in VAR.finditer(s)}
    assert used, "no ${VAR} found: the test lost its way"
    documented = env_example()
    missing = sorted(used - set(documented))
    assert not missing, f"used in docker-compose.yml but not in .env.example: {missing}"


def test_every_env_example_variable_has_a_comment_and_is_used(compose: dict[str, Any]) -> None:
    lines = ENV_EXAMPLE.read_text().splitlines()
    used = {m.group(1) for s in strings(compose) for m in VAR.finditer(s)}
    for i, line in enumerate(lines):
        m = ASSIGNMENT.match(line)
        if not m or line.startswith("#"):
            continue
        j = i - 1
        while j >= 0 and ASSIGNMENT.match(lines[j]) and not lines[j].startswith("#"):
            j -= 1  # a run of related settings shares the comment above it
        assert j >= 0 and lines[j].startswith("#"), f".env.example: {m.group(1)} has no comment"
        assert m.group(1) in used, f".env.example: {m.group(1)} is not used by docker-compose.yml"


def test_producer_runs_offline_by_default() -> None:
    example = env_example()
    assert example["CW_SOURCE"] == "simulate"
    text = ENV_EXAMPLE.read_text()
    assert "CW_SOURCE=coingecko" in text, "say how to switch to CoinGecko"


def test_host_ports_bind_loopback_only(services: dict[str, dict[str, Any]]) -> None:
    for name, svc in services.items():
        for port in svc.get("ports", []):
            text = port if isinstance(port, str) else f"{port.get('host_ip')}:{port['published']}"
            assert text.startswith("127.0.0.1:"), f"{name} publishes {port} beyond 127.0.0.1"


def test_grafana_and_prometheus_mount_the_repo_config(
    services: dict[str, dict[str, Any]],
) -> None:
    grafana = services["grafana"]["volumes"]
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in grafana
    assert "./grafana/dashboards:/var/lib/grafana/dashboards:ro" in grafana
    prometheus = services["prometheus"]["volumes"]
    assert "./prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prometheus
    assert "./prometheus/rules:/etc/prometheus/rules:ro" in prometheus
    env = environment(services["grafana"])
    assert env["GF_SECURITY_ADMIN_PASSWORD"].startswith("${GRAFANA_ADMIN_PASSWORD:?")
    # What grafana/provisioning expands.
    assert {"INFLUX_URL", "INFLUX_TOKEN", "PROMETHEUS_URL"} <= set(env)


def test_prometheus_targets_are_compose_services(services: dict[str, dict[str, Any]]) -> None:
    config = load_yaml(REPO / "prometheus" / "prometheus.yml")
    targets = {t for job in config["scrape_configs"] for sc in job.get("static_configs", []) for t in sc["targets"]}
    for name, port in APP_SERVICES.items():
        assert f"{name}:{port}" in targets


def test_named_volumes_keep_state(compose: dict[str, Any], services: dict[str, Any]) -> None:
    volumes = set(compose["volumes"])
    mounts = {
        "kafka": "/var/lib/kafka/data",
        "influxdb": "/var/lib/influxdb2",
        "grafana": "/var/lib/grafana",
        "prometheus": "/prometheus",
        "processor": environment(services["processor"])["CW_STATE_DIR"],
    }
    for name, path in mounts.items():
        named = [v.split(":")[0] for v in services[name]["volumes"] if v.split(":")[1] == path]
        assert named and named[0] in volumes, f"{name}: {path} is not on a named volume"


def test_kafka_is_a_single_kraft_node(services: dict[str, dict[str, Any]]) -> None:
    env = environment(services["kafka"])
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093"
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    for app in APP_SERVICES:
        assert environment(services[app])["CW_KAFKA_BOOTSTRAP"] == "kafka:9092"


def test_influxdb_is_initialised_with_an_influxql_mapping(compose: dict[str, Any], services: dict[str, Any]) -> None:
    env = environment(services["influxdb"])
    assert env["DOCKER_INFLUXDB_INIT_MODE"] == "setup"
    for var in ("USERNAME", "PASSWORD", "ORG", "BUCKET", "ADMIN_TOKEN"):
        assert f"DOCKER_INFLUXDB_INIT_{var}" in env
    (config,) = services["influxdb"]["configs"]
    assert config["target"].startswith("/docker-entrypoint-initdb.d/")
    assert config["target"].endswith(".sh") and config["mode"] & 0o111
    script = compose["configs"][config["source"]]["content"]
    assert "influx v1 dbrp create --db crypto --rp autogen" in script
    processor = environment(services["processor"])
    assert processor["CW_INFLUX_API"] == "v2"
    assert processor["CW_INFLUX_URL"] == "http://influxdb:8086"


def test_rules_file_is_optional_and_mounted_read_only(services: dict[str, Any]) -> None:
    processor = environment(services["processor"])
    assert "./config:/etc/crypto-watcher:ro" in services["processor"]["volumes"]
    assert processor["CW_RULES_FILE"] == "${CW_RULES_FILE:-}"  # empty: the CW_* thresholds
    assert (REPO / "config" / "rules.example.yaml").is_file()
    assert "CW_RULES_FILE=/etc/crypto-watcher/rules.example.yaml" in ENV_EXAMPLE.read_text()


def test_compose_deploys_the_influxdb_version_the_tests_run(services: dict[str, dict[str, Any]]) -> None:
    """The tests prove the v2 path on InfluxDB built by scripts/influxdb2.sh: compose must pin that one."""
    script = (REPO / "scripts/influxdb2.sh").read_text()
    match = re.search(r'INFLUX2_VERSION="\$\{INFLUX2_VERSION:-([0-9.]+)\}"', script)
    assert match, "scripts/influxdb2.sh no longer names its default version"
    assert services["influxdb"]["image"] == f"influxdb:{match.group(1)}"
