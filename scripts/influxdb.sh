#!/usr/bin/env bash
# InfluxDB 1.x (Debian's `influxdb` package) on 127.0.0.1 with the project's own config and data folder.
# Usage: scripts/influxdb.sh install|start|stop|status|reset
#   install  apt-get install influxdb when influxd is missing (needs root, as CI is)
#   start    install if needed, start influxd, wait for /ping, create the database
#   stop     stop influxd;  reset: stop and delete its data
# Settings: INFLUX_PORT (8086), INFLUX_RPC_PORT (8088), INFLUX_DB (crypto), CW_CACHE_DIR.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

INFLUX_PORT="${INFLUX_PORT:-8086}"
INFLUX_RPC_PORT="${INFLUX_RPC_PORT:-8088}"
INFLUX_DB="${INFLUX_DB:-crypto}"
HOME_DIR="$CW_CACHE_DIR/influxdb"
PIDFILE="$HOME_DIR/influxd.pid"
CONF="$HOME_DIR/influxdb.conf"
LOG="$HOME_DIR/influxd.log"

install() {
  command -v influxd >/dev/null && return 0
  log "influxd not found; installing Debian's influxdb package"
  local sudo=""; [[ $(id -u) -eq 0 ]] || sudo="sudo"
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq influxdb >/dev/null \
    || die "apt-get install influxdb failed"
  # The package may start the system service on the default port; the project runs its own.
  $sudo service influxdb stop >/dev/null 2>&1 || true
}

write_conf() {
  mkdir -p "$HOME_DIR"
  cat >"$CONF" <<CONF
reporting-disabled = true
bind-address = "127.0.0.1:${INFLUX_RPC_PORT}"
[meta]
  dir = "${HOME_DIR}/meta"
[data]
  dir = "${HOME_DIR}/data"
  wal-dir = "${HOME_DIR}/wal"
  query-log-enabled = false
  max-values-per-tag = 100000
[monitor]
  store-enabled = false
[http]
  bind-address = "127.0.0.1:${INFLUX_PORT}"
  log-enabled = false
  suppress-write-log = true
  max-body-size = 0
[continuous_queries]
  enabled = false
CONF
}

ping() { curl -fsS -o /dev/null "http://127.0.0.1:${INFLUX_PORT}/ping" 2>/dev/null; }

start() {
  if pid_alive "$PIDFILE" && ping; then log "already running (pid $(cat "$PIDFILE")) on 127.0.0.1:$INFLUX_PORT"; create_db; return 0; fi
  if port_open "$INFLUX_PORT"; then die "127.0.0.1:$INFLUX_PORT is taken by another process (a system influxd?); set INFLUX_PORT"; fi
  install
  write_conf
  nohup influxd -config "$CONF" >"$LOG" 2>&1 &
  echo $! >"$PIDFILE"
  local t0=$SECONDS
  wait_for influxd 60 "$PIDFILE" "$LOG" ping || die "InfluxDB did not start"
  create_db
  log "InfluxDB $(influxd version | awk '{print $2}') ready on 127.0.0.1:$INFLUX_PORT in $((SECONDS - t0))s, database '$INFLUX_DB'"
}

create_db() {
  curl -fsS -o /dev/null -XPOST "http://127.0.0.1:${INFLUX_PORT}/query" --data-urlencode "q=CREATE DATABASE \"${INFLUX_DB}\"" \
    || die "could not create database $INFLUX_DB"
}

case "${1:-}" in
  install) install ;;
  start) start ;;
  stop) stop_pid influxd "$PIDFILE" ;;
  status) if pid_alive "$PIDFILE" && ping; then echo "running on 127.0.0.1:$INFLUX_PORT"; else echo "stopped"; exit 1; fi ;;
  reset) stop_pid influxd "$PIDFILE"; rm -rf "$HOME_DIR/meta" "$HOME_DIR/data" "$HOME_DIR/wal"; log "data removed" ;;
  *) sed -n '2,8p' "$0"; exit 2 ;;
esac
