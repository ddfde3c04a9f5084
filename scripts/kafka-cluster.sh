#!/usr/bin/env bash
# A 3-node Apache Kafka KRaft cluster on 127.0.0.1: the production topology (RF 3, min ISR 2) for
# tests of replication and broker failures. Each node is broker + controller; the 3 form the quorum.
# Usage: scripts/kafka-cluster.sh start|stop|status|reset|bootstrap|kill-broker N|stop-broker N|start-broker N
#   start           fetch the jars if needed (scripts/kafka.sh fetch), format new nodes, start the
#                   stopped ones, wait until the cluster can create a topic with 3 replicas
#   stop            stop every node (SIGTERM together, SIGKILL after 30 s)
#   status          each node's state; exit 0 only when all 3 run
#   reset           stop and delete the cluster's data
#   bootstrap       print the bootstrap servers (host:port,host:port,host:port)
#   kill-broker N   SIGKILL node N at once (fault tests: a crash, no controlled shutdown)
#   stop-broker N   stop node N as an orderly restart does (SIGTERM: controlled shutdown, its
#                   partitions' leadership and group coordination move to the others first)
#   start-broker N  start node N again; wait until it is back in the ISR of every partition it holds
# Settings: KAFKA_CLUSTER_PORT (29092: node N listens on PORT+2(N-1), its controller on the next
# port), KAFKA_CLUSTER_HEAP (384m per node), CW_CACHE_DIR (data in $CW_CACHE_DIR/kafka-cluster/nodeN).
# Readiness is checked with confluent-kafka from the project's venv (scripts/setup.sh), or CW_PYTHON.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KAFKA_CLUSTER_PORT="${KAFKA_CLUSTER_PORT:-29092}"
KAFKA_CLUSTER_HEAP="${KAFKA_CLUSTER_HEAP:-384m}"
NODES=(1 2 3)
HOME_DIR="$CW_CACHE_DIR/kafka-cluster"
LIBS="$CW_CACHE_DIR/kafka/libs" # the jars scripts/kafka.sh fetches: one pom, one download
CLUSTER_ID_FILE="$HOME_DIR/cluster.id"
PY="${CW_PYTHON:-$REPO_ROOT/.venv/bin/python}"

port() { echo $((KAFKA_CLUSTER_PORT + 2 * ($1 - 1))); }
controller_port() { echo $(($(port "$1") + 1)); }
node_dir() { echo "$HOME_DIR/node$1"; }
pidfile() { echo "$(node_dir "$1")/kafka.pid"; }
bootstrap() { local n out=(); for n in "${NODES[@]}"; do out+=("127.0.0.1:$(port "$n")"); done; (IFS=,; echo "${out[*]}"); }
voters() { local n out=(); for n in "${NODES[@]}"; do out+=("$n@127.0.0.1:$(controller_port "$n")"); done; (IFS=,; echo "${out[*]}"); }

valid_node() { [[ "${1:-}" =~ ^[123]$ ]] || die "name a node: 1, 2 or 3 (got '${1:-}')"; }

write_props() {
  local n=$1 dir; dir=$(node_dir "$1")
  mkdir -p "$dir/data" "$dir/logs"
  # min.insync.replicas=2 with RF 3, as managed offerings run it: acks=all writes (idempotent
  # producers) succeed with one broker down and fail rather than land on a single copy.
  # auto.create.topics.enable=false, as on managed offerings: every topic comes from the services.
  cat >"$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=${n}
controller.quorum.voters=$(voters)
listeners=PLAINTEXT://127.0.0.1:$(port "$n"),CONTROLLER://127.0.0.1:$(controller_port "$n")
advertised.listeners=PLAINTEXT://127.0.0.1:$(port "$n")
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=${dir}/data
num.partitions=1
default.replication.factor=3
min.insync.replicas=2
offsets.topic.replication.factor=3
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
log.retention.hours=168
PROPS
}

# java_for N: set JAVA to the command running a Kafka class with node N's heap and log folder.
java_for() {
  JAVA=(java "-Xmx${KAFKA_CLUSTER_HEAP}" "-Xms${KAFKA_CLUSTER_HEAP}" -XX:+UseG1GC
    "-Dlog4j2.configurationFile=$REPO_ROOT/scripts/kafka/log4j2.properties"
    "-Dkafka.logs.dir=$(node_dir "$1")/logs" -cp "$LIBS/*")
}

running() { pid_alive "$(pidfile "$1")" && port_open "$(port "$1")"; }
started() { port_open "$(port "$1")" && grep -q "Kafka Server started" "$(node_dir "$1")/logs/server.log" 2>/dev/null; }

cluster_id() {
  if [[ ! -s "$CLUSTER_ID_FILE" ]]; then
    mkdir -p "$HOME_DIR" "$(node_dir 1)/logs"
    java_for 1; "${JAVA[@]}" kafka.tools.StorageTool random-uuid >"$CLUSTER_ID_FILE" 2>>"$HOME_DIR/format.log" \
      || die "could not generate a cluster id (log: $HOME_DIR/format.log)"
  fi
  cat "$CLUSTER_ID_FILE"
}

# format_nodes N...: format the storage of the given nodes (in parallel: one JVM each).
format_nodes() {
  local id n i pids=() nodes=("$@") rc=0; id=$(cluster_id)
  for n in "${nodes[@]}"; do
    java_for "$n"; "${JAVA[@]}" kafka.tools.StorageTool format -t "$id" \
      -c "$(node_dir "$n")/server.properties" >>"$(node_dir "$n")/logs/format.log" 2>&1 &
    pids+=($!)
  done
  for i in "${!pids[@]}"; do
    if ! wait "${pids[$i]}"; then
      n=${nodes[$i]}; tail -n 20 "$(node_dir "$n")/logs/format.log" >&2; rc=1
    fi
  done
  ((rc == 0)) || die "formatting the cluster's storage failed"
  log "formatted node(s) $* (cluster $id)"
}

ports_free() {
  if port_open "$(port "$1")" || port_open "$(controller_port "$1")"; then
    die "127.0.0.1:$(port "$1") or :$(controller_port "$1") is taken by another process; set KAFKA_CLUSTER_PORT"
  fi
}

launch() {
  local n=$1 dir; dir=$(node_dir "$1")
  if running "$n"; then return 0; fi
  ports_free "$n"
  : >"$dir/logs/server.log"
  java_for "$n"
  nohup "${JAVA[@]}" kafka.Kafka "$dir/server.properties" >"$dir/logs/stdout.log" 2>&1 &
  echo $! >"$(pidfile "$n")"
}

wait_started() {
  local n=$1
  wait_for "kafka node $n" 180 "$(pidfile "$n")" "$(node_dir "$n")/logs/server.log" started "$n" \
    || die "kafka node $n did not start"
}

need_python() {
  "$PY" -c "import confluent_kafka" 2>/dev/null || die "no confluent-kafka in $PY to check the cluster: run scripts/setup.sh (or set CW_PYTHON)"
}

# The cluster is usable when it can create (and delete) a topic with 3 replicas: all brokers are
# registered and unfenced, and the quorum has a leader.
wait_replicated() {
  need_python
  "$PY" - "$(bootstrap)" 180 <<'PY' || die "the cluster did not accept a topic with 3 replicas in time"
import sys, time
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

bootstrap, seconds = sys.argv[1], float(sys.argv[2])
admin = AdminClient({"bootstrap.servers": bootstrap})
deadline, last = time.monotonic() + seconds, "no answer"
name = f"cw-cluster-probe-{int(time.time() * 1000)}"
while time.monotonic() < deadline:
    try:
        admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=3)])[name].result(timeout=15)
    except KafkaException as exc:
        last = str(exc)
        time.sleep(0.5)
        continue
    admin.delete_topics([name])[name].result(timeout=15)
    sys.exit(0)
print(f"last error: {last}", file=sys.stderr)
sys.exit(1)
PY
}

# Node N is back when it is in the ISR of every partition it is a replica of.
wait_in_isr() {
  need_python
  "$PY" - "$(bootstrap)" "$1" 180 <<'PY' || die "kafka node $1 did not rejoin the ISR of its partitions in time"
import sys, time
from confluent_kafka.admin import AdminClient

bootstrap, node, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
admin = AdminClient({"bootstrap.servers": bootstrap})
deadline, behind = time.monotonic() + seconds, ["(no metadata)"]
while time.monotonic() < deadline:
    try:
        topics = admin.list_topics(timeout=10).topics
    except Exception as exc:
        behind = [str(exc)]
        time.sleep(0.5)
        continue
    behind = [
        f"{t}[{p.id}]" for t, meta in topics.items() for p in meta.partitions.values()
        if node in p.replicas and node not in p.isrs
    ]
    if not behind:
        sys.exit(0)
    time.sleep(0.5)
print(f"still out of the ISR: {', '.join(behind[:20])}", file=sys.stderr)
sys.exit(1)
PY
}

start() {
  local t0=$SECONDS n todo=() new=()
  for n in "${NODES[@]}"; do running "$n" || todo+=("$n"); done
  if ((${#todo[@]} == 0)); then log "already running on $(bootstrap)"; return 0; fi
  need_python
  for n in "${todo[@]}"; do ports_free "$n"; done # before formatting anything
  bash "$REPO_ROOT/scripts/kafka.sh" fetch
  for n in "${todo[@]}"; do
    write_props "$n"
    [[ -f "$(node_dir "$n")/data/meta.properties" ]] || new+=("$n")
  done
  ((${#new[@]} == 0)) || format_nodes "${new[@]}"
  for n in "${todo[@]}"; do launch "$n"; done
  for n in "${todo[@]}"; do wait_started "$n"; done
  wait_replicated
  log "Kafka cluster (3 nodes, RF 3, min ISR 2) ready on $(bootstrap) in $((SECONDS - t0))s"
}

stop_all() {
  local n pids=()
  for n in "${NODES[@]}"; do stop_pid "kafka node $n" "$(pidfile "$n")" & pids+=($!); done
  wait "${pids[@]}"
}

kill_broker() {
  local n=$1 pid; valid_node "$n"
  if pid_alive "$(pidfile "$n")"; then
    pid=$(cat "$(pidfile "$n")"); kill -KILL "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    log "killed node $n (pid $pid)"
  else
    log "node $n is not running"
  fi
  rm -f "$(pidfile "$n")"
}

start_broker() {
  local n=$1 t0=$SECONDS; valid_node "$n"
  [[ -f "$(node_dir "$n")/data/meta.properties" ]] || die "node $n has no data: start the whole cluster first"
  write_props "$n"
  launch "$n"
  wait_started "$n"
  wait_in_isr "$n"
  log "node $n back in the ISR of all its partitions in $((SECONDS - t0))s"
}

status() {
  local n rc=0
  for n in "${NODES[@]}"; do
    if running "$n"; then echo "node $n: running on 127.0.0.1:$(port "$n") (pid $(cat "$(pidfile "$n")"))"
    else echo "node $n: stopped"; rc=1; fi
  done
  return $rc
}

case "${1:-}" in
  start) start ;;
  stop) stop_all ;;
  status) status ;;
  reset) stop_all; rm -rf "$HOME_DIR"; log "data removed" ;;
  bootstrap) bootstrap ;;
  kill-broker) kill_broker "${2:-}" ;;
  stop-broker) valid_node "${2:-}"; stop_pid "kafka node $2" "$(pidfile "$2")" ;;
  start-broker) start_broker "${2:-}" ;;
  *) sed -n '2,17p' "$0"; exit 2 ;;
esac
