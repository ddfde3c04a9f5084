"""``crypto-processor``: windows, percent changes and drop/spike alerts from ``crypto.ticks``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from crypto_watcher.config import ConfigError, ProcessorSettings, load_settings
from crypto_watcher.durations import format_duration
from crypto_watcher.health import CachedCheck, kafka_reachable, serve
from crypto_watcher.logs import setup_logging
from processor.app import build_pipeline
from processor.metrics import LagMonitor, seconds_since_progress
from processor.rules import RulesError

log = logging.getLogger("processor")

LIVENESS_DEADLINE_S = 120.0

EPILOG = """\
Every option can also be set by its environment variable (shown in brackets); flags win.
Examples:
  crypto-processor                                    # local Kafka + InfluxDB 1.x, defaults
  crypto-processor --windows 5m,15m,1h --drop-pct 4 --cooldown 30m
  CW_INFLUX_API=v2 CW_INFLUX_URL=http://influxdb:8086 CW_INFLUX_TOKEN=... CW_INFLUX_ORG=crypto crypto-processor
Stop with Ctrl-C or SIGTERM: the current checkpoint is committed first.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="crypto-processor",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--bootstrap",
        dest="kafka_bootstrap",
        help="Kafka bootstrap servers [CW_KAFKA_BOOTSTRAP, default 127.0.0.1:9092]",
    )
    p.add_argument(
        "--group", dest="consumer_group", help="consumer group [CW_CONSUMER_GROUP, default crypto-processor]"
    )
    p.add_argument("--ticks-topic", dest="ticks_topic", help="input topic [CW_TICKS_TOPIC, default crypto.ticks]")
    p.add_argument("--alerts-topic", dest="alerts_topic", help="alerts topic [CW_ALERTS_TOPIC, default crypto.alerts]")
    p.add_argument("--rules", dest="rules_file", help="alert rules YAML file [CW_RULES_FILE, default: none]")
    p.add_argument("--windows", help="windows for percent change [CW_WINDOWS, default 5m,15m,1h]")
    p.add_argument("--candle-interval", dest="candle_interval", help="candle length [CW_CANDLE_INTERVAL, default 1m]")
    p.add_argument("--drop-pct", dest="drop_pct", type=float, help="drop threshold in %% [CW_DROP_PCT, default 5]")
    p.add_argument("--spike-pct", dest="spike_pct", type=float, help="spike threshold in %% [CW_SPIKE_PCT, default 5]")
    p.add_argument("--cooldown", help="quiet time after an alert, e.g. 15m [CW_COOLDOWN, default 15m]")
    p.add_argument("--grace", help="how late a tick may arrive, e.g. 60s [CW_GRACE, default 60s]")
    p.add_argument(
        "--influx-api", dest="influx_api", choices=["v1", "v2"], help="InfluxDB API [CW_INFLUX_API, default v1]"
    )
    p.add_argument(
        "--influx-url", dest="influx_url", help="InfluxDB URL [CW_INFLUX_URL, default http://127.0.0.1:8086]"
    )
    p.add_argument("--influx-db", dest="influx_db", help="v1 database [CW_INFLUX_DB, default crypto]")
    p.add_argument("--influx-bucket", dest="influx_bucket", help="v2 bucket [CW_INFLUX_BUCKET, default crypto]")
    p.add_argument(
        "--http-port", dest="http_port", type=int, help="metrics/health port, -1 off [CW_HTTP_PORT, default 9102]"
    )
    p.add_argument("--state-dir", dest="state_dir", help="local state folder [CW_STATE_DIR, default .cache/state]")
    p.add_argument(
        "--stop-when-idle",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="exit once no tick arrived for this long (for batch runs; default: run until stopped)",
    )
    p.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR [CW_LOG_LEVEL, default INFO]")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level, "processor")
    flags = {k: v for k, v in vars(args).items() if k not in ("stop_when_idle", "log_level")}
    try:
        settings = load_settings(ProcessorSettings, flags)
        pipeline = build_pipeline(settings)
    except ConfigError as exc:
        print(f"crypto-processor: {exc}", file=sys.stderr)
        return 2
    except RulesError as exc:
        print(f"crypto-processor: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"crypto-processor: invalid configuration: {exc}", file=sys.stderr)
        return 2
    rules = pipeline.ruleset
    log.info(
        "rules from %s: windows %s, candles %s -> %s",
        rules.source,
        ",".join(rules.windows),
        format_duration(rules.candle_interval),
        pipeline.sink.writer.description,
    )
    lag = LagMonitor(settings.kafka_bootstrap, settings.consumer_group, settings.ticks_topic).start()
    kafka_ok = CachedCheck(kafka_reachable(settings.kafka_bootstrap))
    influx_ok = CachedCheck(pipeline.sink.writer.ping)

    def live() -> bool:
        # Stuck = work is waiting (lag), nothing was processed for two minutes, and not because
        # InfluxDB is away (then backpressure pauses consumption on purpose; readiness says so).
        waiting = lag.total is not None and lag.total > 0
        return not waiting or seconds_since_progress() < LIVENESS_DEADLINE_S or not influx_ok()

    server = serve(settings.http_host, settings.http_port, live, lambda: kafka_ok() and influx_ok())
    try:
        pipeline.app.run(timeout=args.stop_when_idle, collect=False)
    finally:
        lag.stop()
        if server is not None:
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
