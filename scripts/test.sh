#!/usr/bin/env bash
# The one test command (README, CI): set up, start the real services, lint, type-check, run every test.
# Extra arguments go to pytest, e.g. scripts/test.sh -k producer -x
# Services this script starts are stopped at the end; ones already running are left running.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
t0=$SECONDS
# The deploy-check tools (helm, actionlint, ...) are built with Go: keep them beside the other
# built binaries, outside the work tree, so a fresh clone does not build them again.
export CW_TOOLS_DIR="${CW_TOOLS_DIR:-$CW_TOOLS_CACHE/deploy-tools}"
bash scripts/setup.sh
export PATH="$REPO_ROOT/.venv/bin:$CW_TOOLS_DIR/bin:$PATH"

started=()
bash scripts/kafka.sh status >/dev/null 2>&1 || started+=(kafka)
bash scripts/influxdb.sh status >/dev/null 2>&1 || started+=(influxdb)
bash scripts/influxdb2.sh status >/dev/null 2>&1 || started+=(influxdb2)
bash scripts/kafka-cluster.sh status >/dev/null 2>&1 || started+=(kafka-cluster)
cleanup() { for s in "${started[@]}"; do bash "scripts/$s.sh" stop || true; done; }
trap cleanup EXIT
ts=$SECONDS
bash scripts/services.sh up || die "the services did not start; tests cannot run without them"
# The production topology (3 brokers, RF 3, min ISR 2) for tests/services/test_kafka_cluster.py.
bash scripts/kafka-cluster.sh start || die "the 3-broker Kafka cluster did not start; tests cannot run without it"
log "services up in $((SECONDS - ts))s"

log "ruff"; ruff check . || die "ruff found problems"
log "mypy"; mypy || die "mypy found problems"
log "pytest"
ptest=$SECONDS
set +e
python -m pytest "$@"
rc=$?
set -e
log "pytest finished in $((SECONDS - ptest))s (exit $rc); whole run $((SECONDS - t0))s"
exit $rc
