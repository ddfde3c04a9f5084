#!/usr/bin/env bash
# Installs everything Crypto Watcher needs on a fresh Debian/Ubuntu machine, idempotently:
# Java 17 + Maven (for Kafka's jars), InfluxDB 1.x and Prometheus/promtool (apt), the Kafka jars
# (Maven Central), InfluxDB 2.x built from its Go module (first run ~6 min, then cached in
# ~/.cache/crypto-watcher), and a virtualenv .venv with the project and its test tools (PyPI);
# without --no-deploy-tools also the deploy-check tools and the Kubernetes control plane for the
# Helm tests (scripts/k8s.sh build: cached the same way).
# Usage: scripts/setup.sh [--no-deploy-tools]
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"

want_apt=()
command -v java >/dev/null || want_apt+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || want_apt+=(maven)
command -v influxd >/dev/null || want_apt+=(influxdb)
command -v promtool >/dev/null || want_apt+=(prometheus)
command -v curl >/dev/null || want_apt+=(curl)
if ((${#want_apt[@]})); then
  log "installing with apt: ${want_apt[*]}"
  sudo=""; [[ $(id -u) -eq 0 ]] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${want_apt[@]}" >/dev/null || die "apt-get install ${want_apt[*]} failed"
  # Debian starts packaged daemons where it can; the project runs its own on its own ports.
  $sudo service influxdb stop >/dev/null 2>&1 || true
  $sudo service prometheus stop >/dev/null 2>&1 || true
fi

PY="${PYTHON:-python3}"
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "Python 3.11+ is needed ($PY is $("$PY" --version 2>&1))"
if [[ ! -x .venv/bin/python ]]; then
  log "creating .venv"
  "$PY" -m venv .venv || die "python3 -m venv failed (apt-get install python3-venv?)"
fi
stamp=.venv/.installed.sha
want=$(cat pyproject.toml | sha1sum | cut -d' ' -f1)
if [[ ! -f $stamp || "$(cat $stamp)" != "$want" ]]; then
  log "installing the project and its test tools into .venv (pip)"
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e '.[test]' || die "pip install failed"
  echo "$want" >"$stamp"
fi

bash scripts/kafka.sh fetch
bash scripts/influxdb2.sh build
if [[ "${1:-}" != "--no-deploy-tools" && -f scripts/install-deploy-tools.sh ]]; then
  PATH="$REPO_ROOT/.venv/bin:$PATH" bash scripts/install-deploy-tools.sh
  # The Kubernetes control plane the helm install tests run against (first run ~7 min, then cached).
  bash scripts/k8s.sh build
fi
log "ready"
