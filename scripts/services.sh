#!/usr/bin/env bash
# Starts or stops the local services (Kafka KRaft node, InfluxDB 1.x, InfluxDB 2.x) on 127.0.0.1.
# Usage: scripts/services.sh up|down|status|reset
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
case "${1:-}" in
  up) bash "$REPO_ROOT/scripts/kafka.sh" start && bash "$REPO_ROOT/scripts/influxdb.sh" start \
        && bash "$REPO_ROOT/scripts/influxdb2.sh" start ;;
  down) bash "$REPO_ROOT/scripts/kafka.sh" stop; bash "$REPO_ROOT/scripts/influxdb.sh" stop; bash "$REPO_ROOT/scripts/influxdb2.sh" stop ;;
  status) rc=0; printf 'kafka:     '; bash "$REPO_ROOT/scripts/kafka.sh" status || rc=1
          printf 'influxdb:  '; bash "$REPO_ROOT/scripts/influxdb.sh" status || rc=1
          printf 'influxdb2: '; bash "$REPO_ROOT/scripts/influxdb2.sh" status || rc=1; exit $rc ;;
  reset) bash "$REPO_ROOT/scripts/kafka.sh" reset; bash "$REPO_ROOT/scripts/influxdb.sh" reset; bash "$REPO_ROOT/scripts/influxdb2.sh" reset ;;
  *) sed -n '2,3p' "$0"; exit 2 ;;
esac
