#!/usr/bin/env bash
# InfluxDB 2.x (the version compose and the Helm chart deploy) on 127.0.0.1, built from its Go module.
# Usage: scripts/influxdb2.sh build|start|stop|status|reset|env
#   build   build influxd once and cache it by version under $CW_TOOLS_CACHE (default
#           ~/.cache/crypto-watcher); a cold build took 6 min on 2 cores (2026-12-02; mostly compiling, of which
#           Flux's Rust library is most) and ~3 GB of Go build cache; later runs reuse the binary
#   start   build if needed, start influxd, wait for /health, set up org, bucket and token
#   stop    stop influxd;  reset: stop and delete its data (a fresh setup on the next start)
#   env     print the CW_INFLUX_* settings that point the services at this server
# Settings: INFLUX2_PORT (8087), INFLUX2_VERSION (2.7.12), INFLUX2_ORG (crypto-watcher),
#   INFLUX2_BUCKET (crypto), INFLUX2_TOKEN (cw-test-token), CW_CACHE_DIR, CW_TOOLS_CACHE.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

INFLUX2_VERSION="${INFLUX2_VERSION:-2.7.12}"
INFLUX2_PORT="${INFLUX2_PORT:-8087}"
INFLUX2_ORG="${INFLUX2_ORG:-crypto-watcher}"
INFLUX2_BUCKET="${INFLUX2_BUCKET:-crypto}"
INFLUX2_TOKEN="${INFLUX2_TOKEN:-cw-test-token}"
# The version's go.mod replaces nats-streaming-server; `go install pkg@version` refuses modules with
# replaces, so a small build module repeats it (read from the module's own go.mod at build time).
BIN_DIR="$CW_TOOLS_CACHE/influxdb-$INFLUX2_VERSION"
BIN="$BIN_DIR/influxd"
HOME_DIR="$CW_CACHE_DIR/influxdb2"
PIDFILE="$HOME_DIR/influxd.pid"
LOG="$HOME_DIR/influxd.log"

build() {
  if [[ -x "$BIN" ]]; then return 0; fi
  command -v go >/dev/null || die "go not found: InfluxDB $INFLUX2_VERSION is built from its Go module (apt-get install golang, or https://go.dev/dl)"
  command -v cargo >/dev/null || die "cargo not found: InfluxDB's Flux engine is a Rust library (install rustup)"
  local work="$CW_TOOLS_CACHE/build/influxdb-$INFLUX2_VERSION"
  mkdir -p "$work" "$BIN_DIR"
  log "building InfluxDB $INFLUX2_VERSION from its Go module (first run only: ~6 min on 2 cores; log $work/build.log)"
  local t0=$SECONDS
  (
    set -euo pipefail
    cd "$work"
    export GOFLAGS=-mod=mod GOTOOLCHAIN=local
    # Tools that Flux's build needs: pkg-config in Go (Flux asks it to build its Rust library).
    GOBIN="$work/bin" go install github.com/influxdata/pkg-config@v0.2.14
    cat >go.mod <<MOD
module cwbuild/influxdb

go 1.23
MOD
    go mod download -json "github.com/influxdata/influxdb/v2@v$INFLUX2_VERSION" >mod.json
    local gomod; gomod=$(python3 -c 'import json,sys; print(json.load(open("mod.json"))["GoMod"])')
    grep -E '^replace ' "$gomod" >>go.mod || true
    go get "github.com/influxdata/influxdb/v2@v$INFLUX2_VERSION"
    go get "github.com/influxdata/influxdb/v2/cmd/influxd@v$INFLUX2_VERSION"
    # Flux pins an old Rust in rust-toolchain.toml and builds with #![deny(warnings)]: use the stable
    # toolchain and cap lints so new compiler warnings stay warnings.
    cat >"$work/rustc-wrapper" <<'WRAP'
#!/usr/bin/env bash
rustc=$1; shift
for a in "$@"; do [[ "$a" == --cap-lints* ]] && exec "$rustc" "$@"; done
exec "$rustc" "$@" --cap-lints=warn
WRAP
    chmod +x "$work/rustc-wrapper"
    RUSTUP_TOOLCHAIN=stable RUSTC_WRAPPER="$work/rustc-wrapper" PKG_CONFIG="$work/bin/pkg-config" \
      go build -trimpath -o "$BIN.tmp" \
      -ldflags "-X main.version=$INFLUX2_VERSION -X main.commit=gomod -X main.date=unknown" \
      github.com/influxdata/influxdb/v2/cmd/influxd
    mv "$BIN.tmp" "$BIN"
  ) >"$work/build.log" 2>&1 || { tail -n 40 "$work/build.log" >&2; die "building InfluxDB $INFLUX2_VERSION failed (log: $work/build.log)"; }
  log "built $BIN in $((SECONDS - t0))s"
}

health() { curl -fsS "http://127.0.0.1:${INFLUX2_PORT}/health" 2>/dev/null | grep -q '"status": *"pass"'; }

setup() {
  # /api/v2/setup answers 422 once the instance is set up: then the token must already work.
  local body code
  body=$(printf '{"username":"admin","password":"cw-admin-password","org":"%s","bucket":"%s","token":"%s","retentionPeriodSeconds":0}' \
    "$INFLUX2_ORG" "$INFLUX2_BUCKET" "$INFLUX2_TOKEN")
  code=$(curl -sS -o "$HOME_DIR/setup.json" -w '%{http_code}' -XPOST "http://127.0.0.1:${INFLUX2_PORT}/api/v2/setup" \
    -H 'Content-Type: application/json' -d "$body")
  case "$code" in
    201) log "set up org '$INFLUX2_ORG', bucket '$INFLUX2_BUCKET'" ;;
    422) curl -fsS -o /dev/null -H "Authorization: Token $INFLUX2_TOKEN" "http://127.0.0.1:${INFLUX2_PORT}/api/v2/buckets?name=$INFLUX2_BUCKET" \
           || die "InfluxDB on :$INFLUX2_PORT was set up earlier with another token (INFLUX2_TOKEN); 'scripts/influxdb2.sh reset' starts afresh" ;;
    *) die "POST /api/v2/setup answered $code: $(cat "$HOME_DIR/setup.json")" ;;
  esac
}

start() {
  if pid_alive "$PIDFILE" && health; then log "already running (pid $(cat "$PIDFILE")) on 127.0.0.1:$INFLUX2_PORT"; setup; return 0; fi
  if port_open "$INFLUX2_PORT"; then die "127.0.0.1:$INFLUX2_PORT is taken by another process; set INFLUX2_PORT"; fi
  build
  mkdir -p "$HOME_DIR"
  # No telemetry, no UI assets (this build has none), and the 2.x default of 10 s for a write is
  # kept; everything lives in the project's cache folder.
  nohup "$BIN" --http-bind-address "127.0.0.1:${INFLUX2_PORT}" \
    --bolt-path "$HOME_DIR/influxd.bolt" --engine-path "$HOME_DIR/engine" \
    --sqlite-path "$HOME_DIR/influxd.sqlite" --reporting-disabled --log-level warn \
    --storage-wal-fsync-delay 0s >"$LOG" 2>&1 &
  echo $! >"$PIDFILE"
  local t0=$SECONDS
  wait_for influxd2 60 "$PIDFILE" "$LOG" health || die "InfluxDB $INFLUX2_VERSION did not start"
  setup
  log "InfluxDB $INFLUX2_VERSION ready on 127.0.0.1:$INFLUX2_PORT in $((SECONDS - t0))s, org '$INFLUX2_ORG', bucket '$INFLUX2_BUCKET'"
}

case "${1:-}" in
  build) build ;;
  start) start ;;
  stop) stop_pid influxd2 "$PIDFILE" ;;
  status) if pid_alive "$PIDFILE" && health; then echo "running on 127.0.0.1:$INFLUX2_PORT"; else echo "stopped"; exit 1; fi ;;
  reset) stop_pid influxd2 "$PIDFILE"; rm -rf "$HOME_DIR"; log "data removed" ;;
  env) printf 'CW_INFLUX_URL=http://127.0.0.1:%s\nCW_INFLUX_API=v2\nCW_INFLUX_ORG=%s\nCW_INFLUX_BUCKET=%s\nCW_INFLUX_TOKEN=%s\n' \
         "$INFLUX2_PORT" "$INFLUX2_ORG" "$INFLUX2_BUCKET" "$INFLUX2_TOKEN" ;;
  *) sed -n '2,11p' "$0"; exit 2 ;;
esac
