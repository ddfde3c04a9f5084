# Shared helpers for the service scripts. Sourced, not run.
# Everything the scripts create lives under CW_CACHE_DIR (default: <repo>/.cache), never in system paths.
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CW_CACHE_DIR="${CW_CACHE_DIR:-$REPO_ROOT/.cache}"
mkdir -p "$CW_CACHE_DIR"

log() { printf '[%s] %s\n' "$(basename "$0" .sh)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# port_open PORT: true when something accepts TCP connections on 127.0.0.1:PORT.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# pid_alive PIDFILE: true when the pid recorded in PIDFILE is a live process.
pid_alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# wait_for NAME SECONDS PIDFILE LOGFILE CHECK...: poll CHECK until it succeeds; fail loudly with the
# service's log tail if the process dies or the time runs out.
wait_for() {
  local name=$1 seconds=$2 pidfile=$3 logfile=$4; shift 4
  local deadline=$((SECONDS + seconds))
  until "$@"; do
    if ! pid_alive "$pidfile"; then
      log "$name exited during start-up; last lines of $logfile:"; tail -n 40 "$logfile" >&2 || true
      return 1
    fi
    if ((SECONDS >= deadline)); then
      log "$name not ready after ${seconds}s; last lines of $logfile:"; tail -n 40 "$logfile" >&2 || true
      return 1
    fi
    sleep 0.5
  done
}

# stop_pid NAME PIDFILE: SIGTERM, wait up to 30 s, then SIGKILL.
stop_pid() {
  local name=$1 pidfile=$2
  if ! pid_alive "$pidfile"; then log "$name is not running"; rm -f "$pidfile"; return 0; fi
  local pid; pid=$(cat "$pidfile")
  kill -TERM "$pid"
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  if kill -0 "$pid" 2>/dev/null; then log "$name did not stop in 30s; killing"; kill -KILL "$pid" || true; fi
  rm -f "$pidfile"; log "$name stopped"
}

# Server binaries built from source (InfluxDB 2, Kubernetes) are cached by version outside the work
# tree, so a fresh clone on the same machine starts them in seconds.
CW_TOOLS_CACHE="${CW_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/crypto-watcher}"
mkdir -p "$CW_TOOLS_CACHE"
