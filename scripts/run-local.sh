#!/usr/bin/env bash
# Runs the whole pipeline on this machine: Kafka + InfluxDB, the processor, the notifier, the producer.
# Usage: scripts/run-local.sh [--live] [--keep-services] [producer flags...]
#   default   the simulated market (offline): bitcoin, ethereum, solana every 2 s, a drop or spike every 90 s
#   --live    CoinGecko's keyless public API (set CW_COINGECKO_PLAN / CW_COINGECKO_API_KEY for a key)
# Prices print as they are published; alerts print as the notifier delivers them (console target).
# Ctrl-C stops the producer (flushing), the processor (committing) and the services it started.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
live=0; keep=0; extra=()
for arg in "$@"; do
  case "$arg" in --live) live=1 ;; --keep-services) keep=1 ;; -h|--help) sed -n '2,8p' "$0"; exit 0 ;; *) extra+=("$arg") ;; esac
done
bash scripts/setup.sh --no-deploy-tools
export PATH="$REPO_ROOT/.venv/bin:$PATH"
bash scripts/services.sh up

mkdir -p "$CW_CACHE_DIR/logs"
plog="$CW_CACHE_DIR/logs/processor.log"
: >"$plog"
pids=()
cleanup() {
  trap - INT TERM EXIT
  log "stopping producer and processor"
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  wait "${pids[@]}" 2>/dev/null || true
  ((keep)) || bash scripts/services.sh down
  log "processor log: $plog"
}
trap cleanup INT TERM EXIT

export CW_COINS="${CW_COINS:-bitcoin,ethereum,solana}"
export CW_LOG_FORMAT="${CW_LOG_FORMAT:-console}"   # a person is watching: prose, not JSON
crypto-processor --windows "${CW_WINDOWS:-5m,15m}" >"$plog" 2>&1 &
pids+=($!)
# Processor errors appear in this terminal; its full log is in $plog.
tail -n0 -F "$plog" 2>/dev/null | grep --line-buffered -E '"level": "error"|ERROR|Traceback' | sed -u 's/^/[processor] /' &
pids+=($!)
# Alerts: the notifier prints each one (and sends it to CW_NOTIFY_URLS when set).
CW_LOG_LEVEL=WARNING crypto-notifier 2>>"$CW_CACHE_DIR/logs/notifier.log" | sed -u 's/^/[alert] /' &
pids+=($!)

if ((live)); then
  log "producer: CoinGecko (${CW_COINGECKO_PLAN:-public} plan); Ctrl-C to stop"
  crypto-producer --source coingecko "${extra[@]}" &
else
  log "producer: simulated market (offline); Ctrl-C to stop"
  CW_SIMULATE_EVENT_EVERY="${CW_SIMULATE_EVENT_EVERY:-90s}" \
    crypto-producer --source simulate --interval "${CW_POLL_INTERVAL:-2s}" "${extra[@]}" &
fi
pids+=($!)
wait "${pids[-1]}"
