#!/usr/bin/env bash
# Runs the whole pipeline on this machine: Kafka + InfluxDB, the processor, the notifier, the producer.
# Usage: scripts/run-local.sh [--live] [--keep-services] [--no-setup] [producer flags...]
#   default          the simulated market (offline): bitcoin, ethereum, solana every 2 s, a drop or spike every 90 s
#   --live           CoinGecko's keyless public API (set CW_COINGECKO_PLAN / CW_COINGECKO_API_KEY for a key)
#   --keep-services  leave Kafka and InfluxDB running after Ctrl-C
#   --no-setup       skip scripts/setup.sh (everything is installed already)
# Prices print as they are published; alerts print as the notifier delivers them (console target).
# One Ctrl-C stops, in this order and within seconds: the producer (flushing queued ticks), the
# processor (committing its checkpoint), the notifier, then the services it started.
# Ports and folders: KAFKA_PORT, KAFKA_CONTROLLER_PORT, INFLUX_PORT, INFLUX_RPC_PORT, INFLUX2_PORT
# and CW_CACHE_DIR (see scripts/kafka.sh, influxdb.sh, influxdb2.sh); the services are pointed at them.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
live=0; keep=0; setup=1; extra=()
for arg in "$@"; do
  case "$arg" in
    --live) live=1 ;; --keep-services) keep=1 ;; --no-setup) setup=0 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) extra+=("$arg") ;;
  esac
done
((setup)) && bash scripts/setup.sh --no-deploy-tools
export PATH="$REPO_ROOT/.venv/bin:$PATH"

# Every part runs in a session of its own (setsid): a Ctrl-C in this terminal then reaches this
# script alone, and the script stops the parts one after the other. Sharing the terminal's signal,
# InfluxDB (a Go program, which takes SIGINT even from a background job) stopped while the
# processor was still writing its last batch, and the log-following pipeline below (background jobs
# ignore SIGINT) kept the script waiting for ever.
producer_pid="" processor_pid="" notifier_pid="" follow_pid="" services_started=0

# stop_part NAME PID SECONDS: SIGTERM to the part's process group, wait for it to exit (it flushes,
# commits), SIGKILL after SECONDS.
stop_part() {
  local name=$1 pid=$2 seconds=$3
  [[ -n "$pid" ]] || return 0
  if kill -0 "$pid" 2>/dev/null; then
    log "stopping the $name"
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + seconds))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
      log "the $name did not stop within ${seconds}s; killing it"
      kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  # A second Ctrl-C must not cut the ordered stop short: that left Kafka and InfluxDB running.
  trap '' INT TERM
  trap - EXIT
  stop_part producer "$producer_pid" 45       # flushes queued ticks (up to 30 s)
  stop_part processor "$processor_pid" 60     # commits its checkpoint after the last InfluxDB write
  stop_part notifier "$notifier_pid" 30
  # The log follower ends with the processor (tail --pid); never leave it behind.
  if [[ -n "$follow_pid" ]]; then
    local deadline=$((SECONDS + 5))
    while kill -0 "$follow_pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
    kill -KILL -- "-$follow_pid" 2>/dev/null || true
    wait "$follow_pid" 2>/dev/null || true
  fi
  if ((services_started && !keep)); then setsid bash scripts/services.sh down; fi
  if [[ -n "${plog:-}" ]]; then log "processor log: $plog"; fi
}
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM
trap cleanup EXIT

services_started=1
setsid bash scripts/services.sh up

# Point the services at the ports and folders the service scripts used.
export CW_KAFKA_BOOTSTRAP="${CW_KAFKA_BOOTSTRAP:-127.0.0.1:${KAFKA_PORT:-9092}}"
# InfluxDB 2, as compose and the Helm chart deploy it (scripts/influxdb2.sh names its org, bucket
# and token); CW_INFLUX_API=v1 uses the InfluxDB 1.x started beside it instead.
if [[ "${CW_INFLUX_API:-v2}" == "v2" ]]; then
  while IFS='=' read -r name value; do export "$name=${!name:-$value}"; done < <(bash scripts/influxdb2.sh env)
else
  export CW_INFLUX_URL="${CW_INFLUX_URL:-http://127.0.0.1:${INFLUX_PORT:-8086}}"
fi
export CW_STATE_DIR="${CW_STATE_DIR:-$CW_CACHE_DIR/state}"
export CW_NOTIFY_STATE="${CW_NOTIFY_STATE:-$CW_CACHE_DIR/notifier/delivered.sqlite}"
export CW_COINGECKO_CACHE_DIR="${CW_COINGECKO_CACHE_DIR:-$CW_CACHE_DIR/coingecko}"
export CW_COINS="${CW_COINS:-bitcoin,ethereum,solana}"
export CW_LOG_FORMAT="${CW_LOG_FORMAT:-console}"   # a person is watching: prose, not JSON

mkdir -p "$CW_CACHE_DIR/logs"
plog="$CW_CACHE_DIR/logs/processor.log"
nlog="$CW_CACHE_DIR/logs/notifier.log"
: >"$plog"

setsid crypto-processor --windows "${CW_WINDOWS:-5m,15m}" >"$plog" 2>&1 &
processor_pid=$!
# Processor errors appear in this terminal; its full log is in $plog. The follower ends by itself
# once the processor has exited (tail --pid) and ignores SIGTERM meant for its group.
setsid bash -c 'trap "" TERM; tail -n0 -s 0.2 -F --pid="$2" "$1" 2>/dev/null \
  | grep --line-buffered -E "\"level\": \"error\"|ERROR|Traceback" | sed -u "s/^/[processor] /"' \
  _ "$plog" "$processor_pid" &
follow_pid=$!
# Alerts: the notifier prints each one (and sends it to CW_NOTIFY_URLS when set). Its group's SIGTERM
# reaches the notifier only: the prefixing sed ignores it and ends when the notifier's output does.
CW_LOG_LEVEL=WARNING setsid bash -c 'trap "" TERM; crypto-notifier 2>>"$1" | sed -u "s/^/[alert] /"' _ "$nlog" &
notifier_pid=$!

if ((live)); then
  log "producer: CoinGecko (${CW_COINGECKO_PLAN:-public} plan); Ctrl-C to stop"
  setsid crypto-producer --source coingecko "${extra[@]}" &
else
  log "producer: simulated market (offline); Ctrl-C to stop"
  CW_SIMULATE_EVENT_EVERY="${CW_SIMULATE_EVENT_EVERY:-90s}" \
    setsid crypto-producer --source simulate --interval "${CW_POLL_INTERVAL:-2s}" "${extra[@]}" &
fi
producer_pid=$!
status=0
wait "$producer_pid" || status=$?
producer_pid=""   # it has exited (the EXIT trap stops the rest)
exit "$status"
