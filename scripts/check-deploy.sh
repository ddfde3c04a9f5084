#!/usr/bin/env bash
# Checks every deployment artefact with the real tools, offline:
#   hadolint (Dockerfile) · check-jsonschema (docker-compose.yml against the compose spec,
#   and compose-check loading it as `docker compose config` would,
#   .github/workflows against GitHub's workflow schema, dependabot.yml) · actionlint (workflows,
#   with shellcheck on their scripts) · shellcheck (deploy scripts) · chart dashboards in sync ·
#   helm lint --strict and helm template for the default values (plus an image repository, which
#   only a release fills in) and each ci/*-values.yaml · the checkout's chart refusing to render
#   without an image repository ·
#   kubernetes-validate --strict on every rendered object for each Kubernetes version below ·
#   helm template must refuse more processor replicas than ticks partitions.
# The tools come from scripts/install-deploy-tools.sh; found on PATH, in .cache/tools/bin
# ($CW_TOOLS_DIR/bin) or the scripts folder of $PYTHON (default python3). Ends with "check-deploy: N passed, N failed"; exit 1 on failure.
# Usage: scripts/check-deploy.sh
set -uo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT" || exit 1
CHART=helm/crypto-watcher
PYTHON="${PYTHON:-python3}"

# Kubernetes versions the rendered manifests must validate against: the oldest the chart supports
# (Chart.yaml kubeVersion) and a current one. kubernetes-validate 1.37.0 carries 1.25 to 1.37.
KUBE_VERSIONS=(1.29.0 1.35.0)
# Kinds kubernetes-validate has no schema for (CRDs), skipped explicitly and only these.
SKIP_KINDS=("monitoring.coreos.com/v1 ServiceMonitor" "monitoring.coreos.com/v1 PrometheusRule")

PY_SCRIPTS="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null || true)"
export PATH="$PATH:${CW_TOOLS_DIR:-$REPO_ROOT/.cache/tools}/bin${PY_SCRIPTS:+:$PY_SCRIPTS}"

passed=0; failed=0; failures=()
pass() { passed=$((passed + 1)); printf 'PASS  %s\n' "$1"; }
fail() { failed=$((failed + 1)); failures+=("$1"); printf 'FAIL  %s\n' "$1"; }
# run NAME CMD...: run a check, show its output only when it fails.
run() {
  local name=$1; shift
  local out
  if out=$("$@" 2>&1); then pass "$name"; else fail "$name"; printf '%s\n' "$out" | sed 's/^/      /'; fi
}

missing=()
for tool in hadolint check-jsonschema actionlint shellcheck helm kubernetes-validate compose-check; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if ((${#missing[@]})); then
  echo "check-deploy: missing tools: ${missing[*]}. Run scripts/install-deploy-tools.sh first." >&2
  echo "check-deploy: 0 passed, 1 failed"
  exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

run "hadolint Dockerfile" hadolint Dockerfile
run "docker-compose.yml matches the compose spec" \
  check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml
# compose-check = `docker compose config` without Docker: interpolation with .env.example and
# placeholder secrets must load; without the secrets compose must refuse.
run "docker-compose.yml loads like \`docker compose config\` (.env.example + secrets)" \
  env INFLUXDB_ADMIN_PASSWORD=check-placeholder INFLUXDB_ADMIN_TOKEN=check-placeholder \
  GRAFANA_ADMIN_PASSWORD=check-placeholder compose-check -env-file .env.example docker-compose.yml
if env -u INFLUXDB_ADMIN_PASSWORD -u INFLUXDB_ADMIN_TOKEN -u GRAFANA_ADMIN_PASSWORD \
    compose-check -env-file .env.example docker-compose.yml >/dev/null 2>&1; then
  fail "docker-compose.yml refuses to load without its required secrets"
else
  pass "docker-compose.yml refuses to load without its required secrets"
fi
run ".github/workflows match GitHub's workflow schema" \
  check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
run ".github/dependabot.yml matches the dependabot schema" \
  check-jsonschema --builtin-schema vendor.dependabot .github/dependabot.yml
run "actionlint" actionlint
run "shellcheck deploy scripts" shellcheck scripts/install-deploy-tools.sh scripts/check-deploy.sh \
  scripts/sync-chart-dashboards.sh scripts/set-chart-image.sh
run "chart dashboards equal grafana/dashboards" bash scripts/sync-chart-dashboards.sh --check

# validate_rendered NAME FILE: kubernetes-validate --strict for every version; a missing schema
# fails unless the kind is in SKIP_KINDS.
validate_rendered() {
  local name=$1 file=$2 out rc unknown
  out=$(kubernetes-validate --strict --quiet "${KUBE_VERSIONS[@]/#/-k}" "$file" 2>&1); rc=$?
  unknown=$(printf '%s\n' "$out" | grep "Couldn't find schema" || true)
  for skip in "${SKIP_KINDS[@]}"; do
    unknown=$(printf '%s\n' "$unknown" | grep -v "kind ${skip#* } with api version ${skip%% *} " || true)
  done
  unknown=$(printf '%s\n' "$unknown" | sed '/^$/d')
  if ((rc == 0)) && [[ -z "$unknown" ]]; then
    pass "$name"
  else
    fail "$name"
    printf '%s\n' "$out" | grep -v '^INFO' | sed 's/^/      /'
  fi
}

value_sets=("")
for f in "$CHART"/ci/*-values.yaml; do value_sets+=("$f"); done
for values in "${value_sets[@]}"; do
  label=${values:-default values}; label=${label#"$CHART/"}
  # The default values have no image repository (the release writes its own into the chart).
  args=(--set image.repository=ghcr.io/example/crypto-watcher); [[ -n "$values" ]] && args=(-f "$values")
  run "helm lint --strict ($label)" helm lint --strict "$CHART" "${args[@]}"
  out="$tmp/$(basename "${values:-default}").rendered.yaml"
  if helm template cw "$CHART" --namespace crypto --kube-version "${KUBE_VERSIONS[-1]}" \
      "${args[@]}" >"$out" 2>"$out.err"; then
    pass "helm template ($label)"
    validate_rendered "kubernetes-validate ${KUBE_VERSIONS[*]} ($label)" "$out"
  else
    fail "helm template ($label)"; sed 's/^/      /' "$out.err"
  fi
  run "helm template, oldest supported Kubernetes ${KUBE_VERSIONS[0]} ($label)" \
    helm template cw "$CHART" --namespace crypto --kube-version "${KUBE_VERSIONS[0]}" "${args[@]}"
done

if helm template cw "$CHART" >/dev/null 2>"$tmp/image.err" || ! grep -q "image.repository is not set" "$tmp/image.err"; then
  fail "helm template refuses to guess the image (no image.repository in a checkout)"
else
  pass "helm template refuses to guess the image (no image.repository in a checkout)"
fi

if helm template cw "$CHART" --set image.repository=ghcr.io/example/crypto-watcher --set processor.autoscaling.enabled=true \
    --set kafka.ticksPartitions=3 --set processor.autoscaling.maxReplicas=4 >/dev/null 2>"$tmp/hpa.err" \
    || ! grep -q "exceeds kafka.ticksPartitions" "$tmp/hpa.err"; then
  fail "helm template refuses processor.autoscaling.maxReplicas > kafka.ticksPartitions"
else
  pass "helm template refuses processor.autoscaling.maxReplicas > kafka.ticksPartitions"
fi

if ((failed)); then
  printf '\nfailed checks:\n'; printf '  %s\n' "${failures[@]}"
fi
echo "check-deploy: $passed passed, $failed failed"
((failed == 0))
