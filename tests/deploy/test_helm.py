"""The Helm chart: lint, render, validate every object against Kubernetes' schemas, and assert what
the chart promises (locked-down pods, probes, no inlined secrets, HPA within the partition count,
existingSecret, dashboards, rules) on the rendered manifests."""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.tools import (
    CHART,
    KUBE_VERSIONS,
    REPO,
    SKIP_KINDS,
    by_kind,
    helm_template,
    helm_template_text,
    image_args,
    load_yaml,
    pod_specs,
    run,
)

CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
VALUE_SETS = [None, *CI_VALUES]
VALUE_IDS = ["default", *[p.name for p in CI_VALUES]]
CONTRACT_PORTS = {"producer": 9101, "processor": 9102, "notifier": 9103}
SECRETS = {
    "secrets.coingeckoApiKey": "supersecret-coingecko-key-123",
    "secrets.influxToken": "supersecret-token-123",
    "secrets.influxPassword": "supersecret-password-123",
    "secrets.notifyUrls": "tgram://supersecret-bot-123/456",
}


def values_args(values: Path | None) -> list[str]:
    return [] if values is None else ["-f", str(values)]


def component_of(obj: dict[str, Any]) -> str:
    return str(obj["metadata"]["labels"]["app.kubernetes.io/component"])


def deployments(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {component_of(d): d for d in by_kind(objects, "Deployment")}


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


@pytest.fixture(scope="module")
def default_objects() -> list[dict[str, Any]]:
    return helm_template()


@pytest.fixture(scope="module")
def full_objects() -> list[dict[str, Any]]:
    return helm_template("-f", str(CHART / "ci" / "full-values.yaml"))


# --- the tools ------------------------------------------------------------------------------------


def test_there_are_at_least_two_ci_value_sets() -> None:
    names = {p.name for p in CI_VALUES}
    assert {"full-values.yaml", "existing-secret-values.yaml"} <= names


@pytest.mark.parametrize("values", VALUE_SETS, ids=VALUE_IDS)
def test_helm_lint_strict(values: Path | None) -> None:
    proc = run(["helm", "lint", "--strict", str(CHART), *image_args(), *values_args(values)])
    assert "0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize("values", VALUE_SETS, ids=VALUE_IDS)
def test_rendered_objects_validate_against_kubernetes_schemas(values: Path | None, tmp_path: Path) -> None:
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(helm_template_text(*values_args(values)))
    kube_args = [arg for v in KUBE_VERSIONS for arg in ("-k", v)]
    proc = run(["kubernetes-validate", "--strict", "--quiet", *kube_args, str(rendered)], check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # kubernetes-validate only warns on a kind it has no schema for: that must be a listed CRD.
    for line in proc.stdout.splitlines():
        m = re.search(r"find schema for kind (\S+) with api version (\S+)", line)
        if m:
            assert (m.group(2), m.group(1)) in SKIP_KINDS, line
    objects = [d for d in yaml.safe_load_all(rendered.read_text()) if d]
    assert objects, "the chart rendered nothing"


def test_only_the_listed_crds_escape_schema_validation() -> None:
    """Every kind the chart can render is a built-in Kubernetes kind or a CRD in SKIP_KINDS."""
    kinds = set()
    for values in VALUE_SETS:
        kinds |= {(o["apiVersion"], o["kind"]) for o in helm_template(*values_args(values))}
    groups = {k: k[0].split("/")[0] if "/" in k[0] else "" for k in kinds}
    crds = {k for k, g in groups.items() if "." in g and not g.endswith(".k8s.io")}
    assert crds <= SKIP_KINDS, crds
    assert crds == SKIP_KINDS, "ci/full-values.yaml should render every CRD kind"


# --- pod hardening and probes ---------------------------------------------------------------------


@pytest.mark.parametrize("values", VALUE_SETS, ids=VALUE_IDS)
def test_every_container_runs_non_root_read_only_without_capabilities(values: Path | None) -> None:
    specs = pod_specs(helm_template(*values_args(values)))
    assert specs
    for name, spec in specs:
        pod_sc = spec.get("securityContext", {})
        assert pod_sc.get("runAsNonRoot") is True, name
        assert pod_sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", name
        assert spec.get("automountServiceAccountToken") is False, name
        for c in spec.get("initContainers", []) + spec["containers"]:
            sc = c.get("securityContext", {})
            where = f"{name}/{c['name']}"
            assert sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot")) is True, where
            assert sc.get("runAsUser", pod_sc.get("runAsUser")) not in (None, 0), where
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("privileged", False) is False, where
            assert "ALL" in sc.get("capabilities", {}).get("drop", []), where
            assert not sc.get("capabilities", {}).get("add"), where
            assert sc.get("seccompProfile", pod_sc.get("seccompProfile")) == {"type": "RuntimeDefault"}, where
            mounts = {m["mountPath"] for m in c.get("volumeMounts", [])}
            assert "/tmp" in mounts, f"{where}: no writable /tmp on a read-only root"
            assert c.get("resources", {}).get("requests"), f"{where}: no resource requests"
            assert c.get("resources", {}).get("limits", {}).get("memory"), f"{where}: no memory limit"


def test_processor_state_dir_is_a_writable_volume(default_objects: list[dict[str, Any]]) -> None:
    spec = deployments(default_objects)["processor"]["spec"]["template"]["spec"]
    container = spec["containers"][0]
    state_dir = env_of(container)["CW_STATE_DIR"]["value"]
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == state_dir)
    assert not mount.get("readOnly", False)
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    assert "emptyDir" in volume


@pytest.mark.parametrize("values", VALUE_SETS, ids=VALUE_IDS)
def test_probes_hit_livez_and_readyz_on_the_service_port(values: Path | None) -> None:
    objects = helm_template(*values_args(values))
    deps = deployments(objects)
    assert deps
    for component, dep in deps.items():
        c = dep["spec"]["template"]["spec"]["containers"][0]
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert ports["http"] == CONTRACT_PORTS[component]
        assert env_of(c)["CW_HTTP_PORT"]["value"] == str(CONTRACT_PORTS[component])
        # The services bind 127.0.0.1 unless told otherwise: the kubelet probes the pod IP.
        assert env_of(c)["CW_HTTP_HOST"]["value"] == "0.0.0.0"
        assert c["command"] == [f"crypto-{component}"]
        for probe, path in (("livenessProbe", "/livez"), ("readinessProbe", "/readyz"), ("startupProbe", "/livez")):
            get = c[probe]["httpGet"]
            assert get["path"] == path, f"{component} {probe}"
            assert get["port"] in ("http", CONTRACT_PORTS[component]), f"{component} {probe}"


# --- secrets --------------------------------------------------------------------------------------


def test_secret_values_appear_only_inside_the_secret() -> None:
    sets = [arg for key, value in SECRETS.items() for arg in ("--set-string", f"{key}={value}")]
    objects = helm_template(*sets)
    forms = {v: (v, base64.b64encode(v.encode()).decode()) for v in SECRETS.values()}
    secrets = by_kind(objects, "Secret")
    assert len(secrets) == 1
    for obj in objects:
        if obj["kind"] == "Secret":
            outside = {k: v for k, v in obj.items() if k not in ("data", "stringData")}
            stored = {
                **obj.get("data", {}),
                **{k: base64.b64encode(v.encode()).decode() for k, v in obj.get("stringData", {}).items()},
            }
            for raw, b64 in forms.values():
                assert raw not in json.dumps(outside) and b64 not in json.dumps(outside)
                assert b64 in stored.values(), f"{raw} is not stored in the Secret"
        else:
            text = json.dumps(obj)
            for raw, b64 in forms.values():
                assert raw not in text, f"{raw} inlined in {obj['kind']} {obj['metadata']['name']}"
                assert b64 not in text, f"{raw} (base64) in {obj['kind']} {obj['metadata']['name']}"


@pytest.mark.parametrize("values", VALUE_SETS, ids=VALUE_IDS)
def test_secret_env_vars_come_from_secret_key_refs(values: Path | None) -> None:
    secret_like = re.compile(r"(TOKEN|PASSWORD|API_KEY|NOTIFY_URLS|SECRET)")
    for component, dep in deployments(helm_template(*values_args(values))).items():
        for c in dep["spec"]["template"]["spec"]["containers"]:
            for name, entry in env_of(c).items():
                if secret_like.search(name):
                    assert "value" not in entry, f"{component}: {name} has an inline value"
                    assert "secretKeyRef" in entry["valueFrom"], f"{component}: {name}"


def test_each_service_reads_its_own_secrets(default_objects: list[dict[str, Any]]) -> None:
    deps = deployments(default_objects)
    wanted = {"producer": "CW_COINGECKO_API_KEY", "processor": "CW_INFLUX_TOKEN", "notifier": "CW_NOTIFY_URLS"}
    for component, var in wanted.items():
        env = env_of(deps[component]["spec"]["template"]["spec"]["containers"][0])
        ref = env[var]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == "cw-crypto-watcher"


def test_existing_secret_replaces_the_charts_secret() -> None:
    values = load_yaml(CHART / "ci" / "existing-secret-values.yaml")
    name = values["secrets"]["existingSecret"]
    objects = helm_template("-f", str(CHART / "ci" / "existing-secret-values.yaml"))
    assert by_kind(objects, "Secret") == []
    refs = [
        e["valueFrom"]["secretKeyRef"]["name"]
        for dep in by_kind(objects, "Deployment")
        for c in dep["spec"]["template"]["spec"]["containers"]
        for e in c.get("env", [])
        if "valueFrom" in e and "secretKeyRef" in e["valueFrom"]
    ]
    assert refs and set(refs) == {name}


def test_existing_secret_plus_an_inline_secret_is_refused() -> None:
    out = helm_template_text(
        "--set", "secrets.existingSecret=mine", "--set-string", "secrets.influxToken=x", check=False
    )
    assert "secrets.influxToken is set together with secrets.existingSecret" in out


def test_paid_coingecko_plan_without_a_key_is_refused() -> None:
    out = helm_template_text("--set", "producer.coingeckoPlan=pro", check=False)
    assert "needs an API key" in out


# --- scaling --------------------------------------------------------------------------------------


def test_hpa_max_replicas_within_ticks_partitions(full_objects: list[dict[str, Any]]) -> None:
    values = load_yaml(CHART / "ci" / "full-values.yaml")
    partitions = values["kafka"]["ticksPartitions"]
    (hpa,) = by_kind(full_objects, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployments(full_objects)["processor"]["metadata"]["name"]
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"] <= partitions
    # With an HPA the Deployment leaves replicas to it.
    assert "replicas" not in deployments(full_objects)["processor"]["spec"]
    env = env_of(deployments(full_objects)["processor"]["spec"]["template"]["spec"]["containers"][0])
    assert env["CW_TICKS_PARTITIONS"]["value"] == str(partitions)


def test_no_hpa_by_default(default_objects: list[dict[str, Any]]) -> None:
    assert by_kind(default_objects, "HorizontalPodAutoscaler") == []


@pytest.mark.parametrize("partitions", [1, 3, 12])
def test_more_hpa_replicas_than_partitions_fails_to_render(partitions: int) -> None:
    base = ["--set", "processor.autoscaling.enabled=true", "--set", f"kafka.ticksPartitions={partitions}"]
    ok = helm_template(
        *base,
        "--set",
        f"processor.autoscaling.maxReplicas={partitions}",
        "--set",
        "processor.autoscaling.minReplicas=1",
    )
    (hpa,) = by_kind(ok, "HorizontalPodAutoscaler")
    assert hpa["spec"]["maxReplicas"] == partitions
    out = helm_template_text(*base, "--set", f"processor.autoscaling.maxReplicas={partitions + 1}", check=False)
    assert f"exceeds kafka.ticksPartitions ({partitions})" in out


def test_more_fixed_replicas_than_partitions_fails_to_render() -> None:
    out = helm_template_text("--set", "kafka.ticksPartitions=2", "--set", "processor.replicaCount=3", check=False)
    assert "processor.replicaCount (3) exceeds kafka.ticksPartitions (2)" in out


def test_schema_refuses_unsafe_or_wrong_values() -> None:
    for args, message in [
        (["--set", "securityContext.readOnlyRootFilesystem=false"], "readOnlyRootFilesystem"),
        (["--set", "podSecurityContext.runAsNonRoot=false"], "runAsNonRoot"),
        (["--set", "producer.replicaCount=2"], "replicaCount"),
        (["--set", "influxdb.api=v3"], "api"),
        (["--set", "kafka.ticksPartitions=0"], "ticksPartitions"),
        (["--set", "producer.unknownSetting=1"], "unknownSetting"),
    ]:
        out = helm_template_text(*args, check=False)
        assert "Error" in out and message in out, (args, out)


@pytest.mark.parametrize("values", VALUE_SETS, ids=VALUE_IDS)
def test_pdb_for_every_service(values: Path | None) -> None:
    objects = helm_template(*values_args(values))
    pdbs = {component_of(p): p for p in by_kind(objects, "PodDisruptionBudget")}
    for component, dep in deployments(objects).items():
        pdb = pdbs[component]
        assert pdb["spec"]["selector"]["matchLabels"] == dep["spec"]["selector"]["matchLabels"]
        assert "maxUnavailable" in pdb["spec"] or "minAvailable" in pdb["spec"]


# --- network, services, monitoring, tests ---------------------------------------------------------


def test_network_policy_per_service(default_objects: list[dict[str, Any]]) -> None:
    policies = {component_of(p): p for p in by_kind(default_objects, "NetworkPolicy")}
    deps = deployments(default_objects)
    assert set(policies) == set(deps)
    for component, policy in policies.items():
        spec = policy["spec"]
        assert spec["podSelector"]["matchLabels"] == deps[component]["spec"]["selector"]["matchLabels"]
        assert set(spec["policyTypes"]) == {"Ingress", "Egress"}
        for rule in spec["ingress"]:
            assert rule["ports"] == [{"port": "http", "protocol": "TCP"}]
        egress_ports = {p["port"] for rule in spec["egress"] for p in rule.get("ports", [])}
        assert {53, 9092} <= egress_ports
        assert (8086 in egress_ports) == (component == "processor")
        assert (443 in egress_ports) == (component == "producer")  # the notifier: its targets' ports


def policy_ports(objects: list[dict[str, Any]], component: str) -> set[int]:
    (policy,) = [p for p in by_kind(objects, "NetworkPolicy") if component_of(p) == component]
    return {int(p["port"]) for rule in policy["spec"]["egress"] for p in rule.get("ports", [])}


def apprise_port(url: str) -> int:
    """The port apprise itself connects to for ``url`` (the notifier sends through apprise)."""
    import apprise

    targets = apprise.Apprise()
    assert targets.add(url), url
    plugin = targets[0]
    if plugin.port:
        return int(plugin.port)
    # Services on a fixed host (Telegram, Slack, Discord...) and the s-variants speak HTTPS.
    return 80 if plugin.url().split("://")[0] in ("json", "xml", "form") else 443


NOTIFY_TARGETS = [
    # The README's and the notifier's --help examples, and one of each kind of port.
    "mailtos://user:app-password@smtp.example.org",
    "mailto://user:app-password@gmail.com",
    "mailto://user:pw@mail.example.org?mode=ssl",
    "mailtos://user:pw@mail.example.org:2525",
    "tgram://123456789:ABCdefGHIjkl_mnoPQRstu-vwxYZ012345/12345",
    "slack://TokenA/TokenB/TokenC/#alerts",
    "discord://1234/abcd",
    "json://hooks.example.org/cw",
    "jsons://hooks.example.org/cw",
    "json://hooks.example.org:8080/cw",
]


@pytest.mark.parametrize("url", NOTIFY_TARGETS)
def test_notifier_egress_allows_the_port_of_each_configured_target(url: str) -> None:
    """The README's e-mail target (`mailtos://`) needs SMTP submission, not 443: the notifier's
    egress follows the URLs in secrets.notifyUrls, and the producer keeps HTTPS only."""
    objects = helm_template("--set-string", f"secrets.notifyUrls={url}")
    ports = policy_ports(objects, "notifier")
    assert apprise_port(url) in ports, (url, ports)
    assert ports - {53, 9092} <= {443, 465, 587, 80, 2525, 8080}
    assert policy_ports(objects, "producer") == {53, 9092, 443}


def test_notifier_egress_of_several_targets_and_of_none(tmp_path: Path) -> None:
    values = tmp_path / "targets.yaml"
    values.write_text(yaml.safe_dump({"secrets": {"notifyUrls": ", ".join(NOTIFY_TARGETS)}}))
    ports = policy_ports(helm_template("-f", str(values)), "notifier")
    assert {apprise_port(u) for u in NOTIFY_TARGETS} <= ports
    # No target: alerts go to the console only, the notifier reaches nothing but DNS and Kafka.
    assert policy_ports(helm_template(), "notifier") == {53, 9092}


def test_notifier_egress_with_urls_in_an_existing_secret() -> None:
    """The chart cannot read an existing Secret: HTTPS and both SMTP submission ports, unless
    networkPolicy.notifierPorts says which."""
    existing = ["-f", str(CHART / "ci" / "existing-secret-values.yaml")]
    assert policy_ports(helm_template(*existing), "notifier") == {53, 9092, 443, 465, 587}
    chosen = helm_template(*existing, "--set", "networkPolicy.notifierPorts={8443}")
    assert policy_ports(chosen, "notifier") == {53, 9092, 8443}
    # With inline URLs the listed ports come on top of theirs.
    both = helm_template(
        "--set-string", "secrets.notifyUrls=json://h.example.org/x", "--set", "networkPolicy.notifierPorts={25}"
    )
    assert policy_ports(both, "notifier") == {53, 9092, 80, 25}


def test_services_and_service_monitor(full_objects: list[dict[str, Any]]) -> None:
    services = {component_of(s): s for s in by_kind(full_objects, "Service")}
    assert set(services) == set(CONTRACT_PORTS)
    for component, svc in services.items():
        (port,) = svc["spec"]["ports"]
        assert (port["name"], port["port"], port["targetPort"]) == ("http", CONTRACT_PORTS[component], "http")
    (sm,) = by_kind(full_objects, "ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    selector = sm["spec"]["selector"]["matchLabels"]
    for svc in services.values():
        assert selector.items() <= svc["metadata"]["labels"].items()
    # Jobs are named as in prometheus/prometheus.yml (dashboards and rules select job=~"cw-.*").
    jobs = {s["metadata"]["labels"][sm["spec"]["jobLabel"]] for s in services.values()}
    prometheus = load_yaml(REPO / "prometheus" / "prometheus.yml")
    assert jobs == {j["job_name"] for j in prometheus["scrape_configs"]} - {"prometheus"}
    (endpoint,) = sm["spec"]["endpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("http", "/metrics")


def test_prometheus_rules_are_the_repositorys_rules(full_objects: list[dict[str, Any]]) -> None:
    sources = sorted(p for p in (REPO / "prometheus" / "rules").glob("*.yml") if not p.name.endswith(".test.yml"))
    rules = by_kind(full_objects, "PrometheusRule")
    assert len(rules) == len(sources) >= 1
    groups = [g for r in rules for g in r["spec"]["groups"]]
    assert groups == [g for p in sources for g in load_yaml(p)["groups"]]
    assert all(r["metadata"]["labels"]["release"] == "kube-prometheus-stack" for r in rules)
    # The rules' own templates reach Prometheus untouched.
    assert "{{ $labels.job }}" in json.dumps(groups)


def test_no_service_monitor_by_default(default_objects: list[dict[str, Any]]) -> None:
    assert by_kind(default_objects, "ServiceMonitor") == []


def test_helm_test_pod_checks_readyz_of_every_service(
    default_objects: list[dict[str, Any]],
) -> None:
    (pod,) = by_kind(default_objects, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    args = pod["spec"]["containers"][0]["command"]
    services = {s["metadata"]["name"]: component_of(s) for s in by_kind(default_objects, "Service")}
    urls = [a for a in args if a.startswith("http://")]
    expected = {f"http://{name}:{CONTRACT_PORTS[c]}/readyz" for name, c in services.items()}
    assert set(urls) == expected


def test_disabled_notifier_disappears_everywhere() -> None:
    objects = helm_template("-f", str(CHART / "ci" / "influxdb-v1-simulate-values.yaml"))
    assert all(
        component_of(o) != "notifier"
        for o in objects
        if "app.kubernetes.io/component" in o["metadata"].get("labels", {})
    )


def test_influx_v1_uses_database_user_and_secret_password() -> None:
    objects = helm_template("-f", str(CHART / "ci" / "influxdb-v1-simulate-values.yaml"))
    env = env_of(deployments(objects)["processor"]["spec"]["template"]["spec"]["containers"][0])
    assert env["CW_INFLUX_API"]["value"] == "v1"
    assert env["CW_INFLUX_DB"]["value"] == "crypto"
    assert env["CW_INFLUX_USERNAME"]["value"] == "crypto_writer"
    assert "secretKeyRef" in env["CW_INFLUX_PASSWORD"]["valueFrom"]
    assert "CW_INFLUX_TOKEN" not in env


# --- alert rules ----------------------------------------------------------------------------------


@pytest.mark.parametrize("values", [None, CHART / "ci" / "full-values.yaml"], ids=["default", "full-values.yaml"])
def test_rules_configmap_is_mounted_and_valid_for_the_processor(values: Path | None, tmp_path: Path) -> None:
    from processor.rules import load_rules

    objects = helm_template(*values_args(values))
    (cm,) = [c for c in by_kind(objects, "ConfigMap") if "rules.yaml" in c.get("data", {})]
    spec = deployments(objects)["processor"]["spec"]["template"]["spec"]
    container = spec["containers"][0]
    assert env_of(container)["CW_RULES_FILE"]["value"] == "/etc/crypto-watcher/rules.yaml"
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == "/etc/crypto-watcher")
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    assert volume["configMap"]["name"] == cm["metadata"]["name"]
    assert {"key": "rules.yaml", "path": "rules.yaml"} in volume["configMap"]["items"]
    path = tmp_path / "rules.yaml"
    path.write_text(cm["data"]["rules.yaml"])
    rules = load_rules(path)  # the processor's own validator
    assert rules.windows


def test_rules_can_be_turned_off() -> None:
    objects = helm_template("--set", "alertRules.enabled=false")
    assert not [c for c in by_kind(objects, "ConfigMap") if "rules.yaml" in c.get("data", {})]
    env = env_of(deployments(objects)["processor"]["spec"]["template"]["spec"]["containers"][0])
    assert "CW_RULES_FILE" not in env and env["CW_WINDOWS"]["value"]


# --- dashboards -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "copy", "pattern"),
    [
        ("grafana/dashboards", "dashboards", "*.json"),
        ("prometheus/rules", "prometheus-rules", "*.yml"),
    ],
)
def test_chart_copies_equal_the_originals(source: str, copy: str, pattern: str) -> None:
    originals = {p.name: p.read_bytes() for p in (REPO / source).glob(pattern) if not p.name.endswith(".test.yml")}
    copies = {p.name: p.read_bytes() for p in (CHART / copy).glob(pattern)}
    assert copies.keys() == originals.keys(), "run scripts/sync-chart-dashboards.sh"
    for name, content in originals.items():
        assert copies[name] == content, f"{name} differs: run scripts/sync-chart-dashboards.sh"
    proc = run(["bash", "scripts/sync-chart-dashboards.sh", "--check"], check=False)
    assert proc.returncode == 0, proc.stderr


def dashboard_configmaps(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c for c in by_kind(objects, "ConfigMap") if c["metadata"].get("labels", {}).get("grafana_dashboard") == "1"]


def test_dashboard_configmaps_for_the_grafana_sidecar(default_objects: list[dict[str, Any]]) -> None:
    files = sorted((CHART / "dashboards").glob("*.json"))
    cms = dashboard_configmaps(default_objects)
    assert len(cms) == len(files)
    data = {k: v for cm in cms for k, v in cm["data"].items()}
    for f in files:
        assert json.loads(data[f.name]) == json.loads(f.read_text())


@pytest.fixture
def chart_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "crypto-watcher"
    shutil.copytree(CHART, copy)
    return copy


def test_dashboards_template_handles_any_file_set(chart_copy: Path) -> None:
    dash = chart_copy / "dashboards"
    for f in dash.glob("*.json"):
        f.unlink()
    # No dashboards at all: renders, and renders no dashboard ConfigMap.
    assert dashboard_configmaps(helm_template(chart=chart_copy)) == []
    # Odd file names still give valid object names and keys.
    board = {"title": "Test board", "panels": [{"type": "text", "options": {"content": "a: b"}}]}
    (dash / "My Board_v2.json").write_text(json.dumps(board, indent=2) + "\n")
    (dash / "second.json").write_text(json.dumps({"title": "Second"}))
    cms = dashboard_configmaps(helm_template(chart=chart_copy))
    assert len(cms) == 2
    for cm in cms:
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", cm["metadata"]["name"])
        assert len(cm["metadata"]["name"]) <= 63
        ((key, text),) = cm["data"].items()
        assert re.fullmatch(r"[-._a-zA-Z0-9]+", key)
        assert json.loads(text) in (board, {"title": "Second"})
    assert dashboard_configmaps(helm_template("--set", "dashboards.enabled=false", chart=chart_copy)) == []


# --- docs: values.yaml, NOTES.txt -----------------------------------------------------------------

KEY = re.compile(r"^(\s*)([A-Za-z_][\w.-]*):(.*)$")


def test_values_yaml_is_documented_line_by_line() -> None:
    """Every key has a comment right above it, or sits in a block whose "# --" comment covers it,
    or is a mapping whose children are all documented."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    keys: list[tuple[int, int, bool]] = []  # (line index, indent, commented above)
    block_indent: int | None = None
    for i, line in enumerate(lines):
        if block_indent is not None:
            if line.strip() and len(line) - len(line.lstrip()) <= block_indent:
                block_indent = None
            else:
                continue
        m = KEY.match(line)
        if not m or line.lstrip().startswith("#"):
            continue
        prev = next((p for p in reversed(lines[:i]) if p.strip()), "")
        keys.append((i, len(m.group(1)), prev.lstrip().startswith("#")))
        if m.group(3).strip() in ("|", "|-", ">", ">-"):
            block_indent = len(m.group(1))

    def parent(idx: int) -> int | None:
        _, indent, _ = keys[idx]
        for j in range(idx - 1, -1, -1):
            if keys[j][1] < indent:
                return j
        return None

    def children(idx: int) -> list[int]:
        _, indent, _ = keys[idx]
        out = []
        for j in range(idx + 1, len(keys)):
            if keys[j][1] <= indent:
                break
            if parent(j) == idx:
                out.append(j)
        return out

    def comment_above(line_no: int) -> str:
        """First line of the comment block right above a line ("" when there is none)."""
        first = ""
        for q in reversed(lines[:line_no]):
            if not q.lstrip().startswith("#"):
                break
            first = q.strip()
        return first

    def covered_by_block(idx: int) -> bool:
        p = parent(idx)
        while p is not None:
            if comment_above(keys[p][0]).startswith("# --"):
                return True
            p = parent(p)
        return False

    def documented(idx: int) -> bool:
        if keys[idx][2] or covered_by_block(idx):
            return True
        kids = children(idx)
        return bool(kids) and all(documented(k) for k in kids)

    bad = [lines[keys[i][0]].strip() for i in range(len(keys)) if not documented(i)]
    assert not bad, f"undocumented keys in values.yaml: {bad}"


def test_values_schema_is_valid_json_schema() -> None:
    run(["check-jsonschema", "--check-metaschema", str(CHART / "values.schema.json")])
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = load_yaml(CHART / "values.yaml")
    assert set(values) <= set(schema["properties"])


def test_notes_render(chart_copy: Path) -> None:
    """NOTES.txt only renders on install; render it through a ConfigMap in a copy of the chart."""
    notes = (chart_copy / "templates" / "NOTES.txt").read_text()
    (chart_copy / "templates" / "_notes_probe.tpl").write_text(
        '{{- define "notes-probe" -}}\n' + notes + "\n{{- end }}\n"
    )
    (chart_copy / "templates" / "notes-probe.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes-probe\n"
        'data:\n  notes: {{ include "notes-probe" . | quote }}\n'
    )
    for args in (
        [],
        ["-f", str(CHART / "ci" / "full-values.yaml")],
        ["-f", str(CHART / "ci" / "existing-secret-values.yaml")],
    ):
        objects = helm_template(*args, chart=chart_copy)
        (cm,) = [c for c in by_kind(objects, "ConfigMap") if c["metadata"]["name"] == "notes-probe"]
        text = cm["data"]["notes"]
        assert "helm test cw" in text
        assert "cw-crypto-watcher-processor:9102" in text


# --- the image ------------------------------------------------------------------------------------


def test_chart_from_a_checkout_refuses_to_guess_the_image() -> None:
    """The image is ghcr.io/<owner>/crypto-watcher and only a release knows <owner>: a checkout's
    chart must not default to a guess that does not exist (ImagePullBackOff), but say what to set."""
    out = helm_template_text(check=False, image=None)
    assert "image.repository" in out and "ghcr.io/<owner>/crypto-watcher" in out, out
    assert "kind: Deployment" not in out
    assert load_yaml(CHART / "values.yaml")["image"]["repository"] == ""


def release_image_and_stamp(release: dict[str, Any]) -> tuple[str, str]:
    """(image the release pushes, repository the release writes into the chart), with the owner
    written as OWNER in both, from .github/workflows/release.yml."""
    jobs = release["jobs"]
    meta = next(s for s in jobs["image"]["steps"] if s.get("uses", "").startswith("docker/metadata-action@"))
    pushed = meta["with"]["images"].strip().replace("${{ github.repository_owner }}", "OWNER")
    package = "\n".join(s.get("run", "") for s in jobs["chart"]["steps"])
    match = re.search(r'set-chart-image\.sh helm/crypto-watcher "([^"]+)"', package)
    assert match, "the release does not set the chart's image before packaging"
    assert 'owner="${GITHUB_REPOSITORY_OWNER,,}"' in package  # GHCR names are lower case, as metadata-action's
    stamp = match.group(1).replace("${owner}", "OWNER")
    assert package.index("set-chart-image.sh") < package.index("helm package helm/crypto-watcher")
    return pushed, stamp


def test_released_chart_defaults_to_the_image_the_same_release_pushes(tmp_path: Path) -> None:
    release = load_yaml(REPO / ".github" / "workflows" / "release.yml")
    pushed, stamp = release_image_and_stamp(release)
    assert pushed == stamp == "ghcr.io/OWNER/crypto-watcher"
    # Do what the release does, on a copy, for an owner with capitals, and install the package.
    chart = tmp_path / "crypto-watcher"
    shutil.copytree(CHART, chart)
    owner = "Example-Org".lower()
    run(["bash", str(REPO / "scripts" / "set-chart-image.sh"), str(chart), stamp.replace("OWNER", owner)])
    run(["helm", "lint", "--strict", str(chart)])
    run(["helm", "package", str(chart), "--version", "1.2.3", "--app-version", "1.2.3", "--destination", str(tmp_path)])
    objects = helm_template(chart=tmp_path / "crypto-watcher-1.2.3.tgz", image=None)
    images = {c["image"] for _name, spec in pod_specs(objects) for c in spec["containers"]}
    assert images == {f"ghcr.io/{owner}/crypto-watcher:1.2.3"}
    # The stamp is checked: a capital letter (GHCR refuses it) or a second run is refused.
    stamp_script = str(REPO / "scripts" / "set-chart-image.sh")
    bad = run(["bash", stamp_script, str(chart), "ghcr.io/Example/x"], check=False)
    assert bad.returncode != 0 and "lower case" in bad.stderr
    again = run(["bash", stamp_script, str(chart), "ghcr.io/other/crypto-watcher"], check=False)
    assert again.returncode != 0 and "already set" in again.stderr


def test_chart_packages_with_its_dashboards(tmp_path: Path) -> None:
    import tarfile

    run(["helm", "package", str(CHART), "--destination", str(tmp_path)])
    (package,) = tmp_path.glob("crypto-watcher-*.tgz")
    with tarfile.open(package) as tar:
        names = set(tar.getnames())
    for f in (CHART / "dashboards").glob("*.json"):
        assert f"crypto-watcher/dashboards/{f.name}" in names
        assert f.stat().st_size < 900_000, f"{f.name} is too big for one ConfigMap"
    assert "crypto-watcher/values.schema.json" in names
    assert not [n for n in names if n.startswith("crypto-watcher/ci/")]
