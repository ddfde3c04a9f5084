#!/usr/bin/env bash
# Apache Kafka as a single KRaft node (broker + controller) on 127.0.0.1, from Maven Central jars.
# Usage: scripts/kafka.sh fetch|start|stop|kill|status|reset
#   fetch   resolve the jars with mvn into $CW_CACHE_DIR/kafka/libs (once; idempotent)
#   start   fetch if needed, format storage if new, start, wait until the broker answers
#   stop    stop the broker (SIGTERM, then SIGKILL after 30 s)
#   kill    SIGKILL the broker at once (fault tests: a crash, no clean shutdown)
#   reset   stop and delete the broker's data (topics, offsets)
# Settings: KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (9093), KAFKA_HEAP (512m), CW_CACHE_DIR.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
KAFKA_HEAP="${KAFKA_HEAP:-512m}"
HOME_DIR="$CW_CACHE_DIR/kafka"
LIBS="$HOME_DIR/libs"
DATA="$HOME_DIR/data"
LOGS="$HOME_DIR/logs"
PIDFILE="$HOME_DIR/kafka.pid"
PROPS="$HOME_DIR/server.properties"
POM="$REPO_ROOT/scripts/kafka/pom.xml"

fetch() {
  local stamp="$LIBS/.pom.sha"
  local want; want=$(sha1sum "$POM" | cut -d' ' -f1)
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then return 0; fi
  command -v mvn >/dev/null || die "mvn not found: install Maven (apt-get install maven)"
  command -v java >/dev/null || die "java not found: Kafka 4 needs Java 17+ (apt-get install openjdk-17-jre-headless)"
  log "resolving Apache Kafka from Maven Central (scripts/kafka/pom.xml) into $LIBS"
  rm -rf "$LIBS"; mkdir -p "$LIBS"
  if ! mvn -q -B -f "$POM" dependency:copy-dependencies -DoutputDirectory="$LIBS" >"$HOME_DIR/mvn.log" 2>&1; then
    tail -n 30 "$HOME_DIR/mvn.log" >&2; die "mvn could not resolve Kafka from Maven Central (log: $HOME_DIR/mvn.log)"
  fi
  echo "$want" >"$stamp"
  log "fetched $(ls "$LIBS" | wc -l) jars"
}

write_props() {
  mkdir -p "$DATA" "$LOGS"
  cat >"$PROPS" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:${KAFKA_CONTROLLER_PORT}
listeners=PLAINTEXT://127.0.0.1:${KAFKA_PORT},CONTROLLER://127.0.0.1:${KAFKA_CONTROLLER_PORT}
advertised.listeners=PLAINTEXT://127.0.0.1:${KAFKA_PORT}
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=${DATA}
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
min.insync.replicas=1
default.replication.factor=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=true
log.retention.hours=168
PROPS
}

JAVA_ARGS=("-Xmx${KAFKA_HEAP}" "-Xms${KAFKA_HEAP}" -XX:+UseG1GC
  "-Dlog4j2.configurationFile=$REPO_ROOT/scripts/kafka/log4j2.properties"
  "-Dkafka.logs.dir=$LOGS" -cp "$LIBS/*")
java_cmd() { java "${JAVA_ARGS[@]}" "$@"; }

broker_ready() { port_open "$KAFKA_PORT" && grep -q "Kafka Server started" "$LOGS/server.log" 2>/dev/null; }

start() {
  if pid_alive "$PIDFILE" && port_open "$KAFKA_PORT"; then log "already running (pid $(cat "$PIDFILE")) on 127.0.0.1:$KAFKA_PORT"; return 0; fi
  if port_open "$KAFKA_PORT"; then die "127.0.0.1:$KAFKA_PORT is taken by another process; set KAFKA_PORT"; fi
  fetch
  write_props
  if [[ ! -f "$DATA/meta.properties" ]]; then
    local cluster_id; cluster_id=$(java_cmd kafka.tools.StorageTool random-uuid 2>>"$LOGS/format.log")
    java_cmd kafka.tools.StorageTool format -t "$cluster_id" -c "$PROPS" >>"$LOGS/format.log" 2>&1 \
      || { tail -n 20 "$LOGS/format.log" >&2; die "formatting Kafka storage failed"; }
    log "formatted storage (cluster $cluster_id)"
  fi
  : >"$LOGS/server.log"
  nohup java "${JAVA_ARGS[@]}" kafka.Kafka "$PROPS" >"$LOGS/stdout.log" 2>&1 &
  echo $! >"$PIDFILE"
  local t0=$SECONDS
  wait_for kafka 90 "$PIDFILE" "$LOGS/server.log" broker_ready || die "Kafka did not start"
  log "Kafka $(basename "$LIBS"/kafka_2.13-*.jar .jar | sed 's/kafka_2.13-//') ready on 127.0.0.1:$KAFKA_PORT in $((SECONDS - t0))s (pid $(cat "$PIDFILE"))"
}

case "${1:-}" in
  fetch) fetch ;;
  start) start ;;
  stop) stop_pid kafka "$PIDFILE" ;;
  kill) if pid_alive "$PIDFILE"; then pid=$(cat "$PIDFILE"); kill -KILL "$pid"
          while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done; log "killed (pid $pid)"; fi; rm -f "$PIDFILE" ;;
  status) if pid_alive "$PIDFILE" && port_open "$KAFKA_PORT"; then echo "running on 127.0.0.1:$KAFKA_PORT"; else echo "stopped"; exit 1; fi ;;
  reset) stop_pid kafka "$PIDFILE"; rm -rf "$DATA"; log "data removed" ;;
  *) sed -n '2,10p' "$0"; exit 2 ;;
esac
