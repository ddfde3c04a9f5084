"""``crypto-processor``: windows, candles, percent changes and alerts from ``crypto.ticks``.

``crypto-processor [run]`` processes the live stream; ``crypto-processor replay --from … --to …``
re-runs a time range under its own consumer group and ends by itself; ``crypto-processor scorecard
--from … --to …`` runs the rules over a time range the same way and scores every hint by where the
price went 1 h, 4 h and 24 h later, against every moment of the coin.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Sequence

from quixstreams.checkpointing.exceptions import CheckpointConsumerCommitError
from quixstreams.exceptions.assignment import PartitionAssignmentError

from crypto_watcher.cli_help import add_bootstrap, add_log_level, add_setting, add_stop_when_idle, service_parser
from crypto_watcher.config import ConfigError, ProcessorSettings, load_settings
from crypto_watcher.durations import format_duration, parse_duration_ms
from crypto_watcher.health import CachedCheck, kafka_reachable, serve
from crypto_watcher.logs import setup_logging
from crypto_watcher.memory import start_trimming
from crypto_watcher.times import TIME_HELP, glue_time_values, time_arg
from processor import metrics
from processor.app import Pipeline, build_pipeline
from processor.metrics import PROGRESS, LagMonitor
from processor.replay import WARMUP_RESIDUAL
from processor.rules import RulesError

log = logging.getLogger("processor")

LIVENESS_DEADLINE_S = 120.0

REPLAY_ALERTS_TOPIC = "crypto.alerts.replay"
"""Where a replay's alerts go unless --alerts-topic says otherwise: no one is notified twice."""

EPILOG = """\
Every option can also be set by its environment variable (shown in brackets); flags win.
Examples:
  crypto-processor                                    # local Kafka + InfluxDB 1.x, defaults
  crypto-processor --rules rules.yaml                 # alert rules with per-coin overrides
  crypto-processor --windows 15m,4h --drop-pct 4 --cooldown 30m
  CW_INFLUX_API=v2 CW_INFLUX_URL=http://influxdb:8086 CW_INFLUX_TOKEN=... CW_INFLUX_ORG=crypto crypto-processor
  crypto-processor replay --from 2026-01-01 --to 2026-01-08 --influx-db crypto_whatif --rules new-rules.yaml
  CW_INFLUX_API=v2 ... crypto-processor replay --from 2026-01-01 --to 2026-01-08 --influx-bucket crypto_whatif
  crypto-processor scorecard --from 2026-01-01 --to 2026-01-31 --influx-db crypto_scorecard   # hint hit rates
Stop with Ctrl-C or SIGTERM: the current checkpoint is committed first.
"""

REPLAY_EPILOG = """\
The replay reads from a warm-up before --from and writes only what falls within [--from, --to],
under its own consumer group and state folder. Prices, windows, candles, drop/spike and
volatility values then equal the live run's exactly; RSI and EMAs never forget, so the warm-up
lasts until at most --warmup-residual (1e-6) of their state before it remains: RSI within 0.01
points, EMAs within 2e-6 relative, crossover gaps within 0.001 percentage points of the live run
(while prices stay within 2x and the average candle move within 100x of the warm-up start). With
the default rules that is 3h24m of ticks before --from (it was 62m); the log line says how long
and why. Alerts are the live run's (same ids) except where an indicator is within that tolerance
of its threshold, or a rule's alert state was set before the warm-up and not reset during it:
a crossover whose averages stayed within min_gap_pct of each other for the whole warm-up, an RSI
that never crossed 50 in it, a drop/spike that never eased below half its threshold in every
window during it, or moves that kept alerting less than a cooldown apart all through it (README
"Replay").
It writes into the database (v1, --influx-db) or bucket (v2, --influx-bucket) you name; the live
one (CW_INFLUX_DB / CW_INFLUX_BUCKET, default crypto) only with --into-live: what-if alerts and
candles cannot be told from real ones once written. A missing v2 bucket is created (the token must
be allowed to; otherwise create it first).
Its alerts go to --alerts-topic (default crypto.alerts.replay, so nobody is notified twice);
pass --alerts-topic crypto.alerts to feed them to the notifier (which deduplicates by alert id).
Examples:
  crypto-processor replay --from 2026-01-01 --to 2026-01-08 --influx-db crypto_whatif --rules new.yaml
  CW_INFLUX_API=v2 ... crypto-processor replay --from 2026-01-01 --to 2026-01-08 --influx-bucket crypto_whatif
  crypto-processor replay --from 2026-01-01 --to 2026-01-08 --into-live     # rebuild the live data
  crypto-processor replay --from -2h --to now --influx-db crypto_whatif     # the last two hours
"""

SCORECARD_EPILOG = """\
How good is each hint? The scorecard runs the current rules (the same flags, environment and
rules file as the processor) over [--from, --to] of the ticks topic exactly as a replay does
(own consumer group and state folder, warm-up before --from), but keeps the alerts instead of
publishing them (nobody is notified) and stores no prices, candles or alerts. For each hint kind,
rule, window and coin it reports how many hints there were and the forward return of the price
after them (1h, 4h, 24h: median, quartiles, and the share that went the hinted way: a buy hint
or a spike is right if the price rose, a sell hint or a drop if it fell), beside the same share
over every tick of the coin (the baseline a coin flip gets). Hints whose horizon is not covered
by the ticks yet are counted as pending, never as right or wrong.
It writes one row per hint and horizon (measurement scorecard) and per tick and horizon
(scorecard_baseline) into the database (v1, --influx-db) or bucket (v2, --influx-bucket) you
name, for the "Signal scorecard" Grafana dashboard; the live one only with --into-live.
Past hit rates are no promise: they describe that stretch of history only.
Examples:
  crypto-processor scorecard --from 2026-01-01 --to 2026-01-31 --influx-db crypto_scorecard
  crypto-processor scorecard --from 2026-01-01 --to 2026-01-31 --influx-db crypto_scorecard --json > card.json
  CW_INFLUX_API=v2 ... crypto-processor scorecard --from 2026-01-01 --to 2026-01-31 --influx-bucket crypto_scorecard
"""


def _common(p: argparse.ArgumentParser, replay: bool = False, alerts: bool = True) -> None:
    settings = ProcessorSettings
    add_bootstrap(p)
    add_setting(p, settings, "consumer_group", "--group")
    add_setting(p, settings, "ticks_topic")
    if alerts and replay:
        add_setting(
            p, settings, "alerts_topic", help=f"alerts topic (default {REPLAY_ALERTS_TOPIC}, not CW_ALERTS_TOPIC)"
        )
    elif alerts:  # the scorecard publishes no alert
        add_setting(p, settings, "alerts_topic")
    add_setting(
        p, settings, "rules_file", "--rules", text="Alert rules YAML (defaults + per-coin overrides; see README)."
    )
    add_setting(p, settings, "windows")
    add_setting(p, settings, "candle_interval")
    add_setting(p, settings, "drop_pct", type=float)
    add_setting(p, settings, "spike_pct", type=float)
    for name in ("cooldown", "grace", "influx_api", "influx_url"):
        add_setting(p, settings, name)
    if replay:
        add_setting(p, settings, "influx_db", help="v1: database to write, not the live CW_INFLUX_DB (see --into-live)")
        add_setting(
            p,
            settings,
            "influx_bucket",
            help="v2: bucket to write (created if missing), not the live CW_INFLUX_BUCKET (see --into-live)",
        )
        p.add_argument(
            "--into-live",
            dest="into_live",
            action="store_true",
            help="allow writing into the live database/bucket (CW_INFLUX_DB / CW_INFLUX_BUCKET)",
        )
    else:
        add_setting(p, settings, "influx_db")
        add_setting(p, settings, "influx_bucket")
    add_setting(p, settings, "state_dir")
    add_log_level(p)


def _time_flags(p: argparse.ArgumentParser) -> None:
    """``--from``/``--to`` of replay and scorecard, parsed to epoch ms by argparse (bad ones exit 2)."""
    for flag, dest, text in (
        ("--from", "from_time", f"start: {TIME_HELP}"),
        ("--to", "to_time", "end (inclusive), same forms"),
    ):
        p.add_argument(flag, dest=dest, required=True, type=time_arg(), metavar="TIME", help=text)


def build_parser() -> argparse.ArgumentParser:
    p = service_parser("crypto-processor", __doc__, EPILOG)
    sub = p.add_subparsers(dest="command", metavar="{run,replay,scorecard}")
    run = sub.add_parser(
        "run",
        help="process the live stream (the default)",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(run)
    add_setting(run, ProcessorSettings, "http_port", type=int)
    add_stop_when_idle(run, "tick")
    replay = sub.add_parser(
        "replay",
        help="re-run a time range of the ticks topic, then exit",
        epilog=REPLAY_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(replay, replay=True)
    _time_flags(replay)
    replay.add_argument(
        "--warmup-residual",
        dest="warmup_residual",
        type=_residual,
        default=WARMUP_RESIDUAL,
        metavar="FRACTION",
        help="share of RSI/EMA state from before the warm-up allowed to remain at --from; smaller reads "
        "more ticks first (default 1e-6: RSI within 0.01 points of the live run; 1e-3 reads about half)",
    )
    replay.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    scorecard = sub.add_parser(
        "scorecard",
        help="score every hint of the rules over a time range by where the price went next, then exit",
        epilog=SCORECARD_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(scorecard, replay=True, alerts=False)
    _time_flags(scorecard)  # the replay's
    scorecard.add_argument(
        "--horizons",
        default="1h,4h,24h",
        help="how long after each hint to look at the price, comma separated (default 1h,4h,24h)",
    )
    scorecard.add_argument("--json", action="store_true", help="print the scorecard as JSON instead of a table")
    scorecard.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    return p


CLI_ONLY = {
    "command",
    "stop_when_idle",
    "log_level",
    "from_time",
    "to_time",
    "no_progress",
    "into_live",
    "warmup_residual",
}


def _residual(text: str) -> float:
    """``--warmup-residual``: a fraction strictly between 0 and 1 (argparse reports anything else)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number between 0 and 1, e.g. 1e-6 (got {text!r})") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive), e.g. 1e-6 (got {text!r})")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list or args_list[0] not in ("run", "replay", "scorecard", "-h", "--help"):
        args_list.insert(0, "run")
    args = build_parser().parse_args(glue_time_values(args_list))
    setup_logging(args.log_level, "processor")
    flags = {k: v for k, v in vars(args).items() if k not in CLI_ONLY}
    if args.command == "replay":
        return _replay(args, flags)
    if args.command == "scorecard":
        return _scorecard(args, {k: v for k, v in flags.items() if k not in ("horizons", "json")})
    try:
        settings = load_settings(ProcessorSettings, flags)
        pipeline = build_pipeline(settings)
    except (ConfigError, RulesError) as exc:
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
    start_trimming(settings.malloc_trim_interval)
    kafka_ok = CachedCheck(kafka_reachable(settings.kafka_bootstrap))
    current = [pipeline]  # the pipeline now running: a rejoin builds a new one
    influx_ok = CachedCheck(lambda: current[0].sink.writer.ping())

    def live() -> bool:
        # Stuck = work is waiting (lag), nothing was processed for two minutes, and not because
        # InfluxDB is away (then backpressure pauses consumption on purpose; readiness says so).
        waiting = lag.total is not None and lag.total > 0
        return not waiting or PROGRESS.silent_for() < LIVENESS_DEADLINE_S or not influx_ok()

    server = serve(settings.http_host, settings.http_port, live, lambda: kafka_ok() and influx_ok())
    try:
        _run_rejoining(settings, current, args.stop_when_idle)
    finally:
        lag.stop()
        if server is not None:
            server.stop()
    return 0


REJOIN_BACKOFF_MAX_S = 30.0


def _run_rejoining(settings: ProcessorSettings, current: list[Pipeline], stop_when_idle: float) -> None:
    """Run the pipeline; when the consumer group drops this member, rejoin with a fresh one.

    A broker that dies can take the group coordinator with it: a member whose session times out
    during the coordinator's fail-over is removed, and its next commit fails ("Unknown member"), or
    an assignment during the fail-over fails. Quix stops the application then (its exit stack has
    closed the consumer and the state stores). Nothing is lost: the uncommitted batch is read
    again, and every write is idempotent. So rather than exit and wait for a supervisor (there may
    be none, or it backs off for minutes), the processor builds a new application on the same
    state folder and rejoins. Seen on a 3-broker cluster when the coordinator's broker was SIGKILLed.
    """
    delay = 1.0
    while True:
        started = time.monotonic()
        try:
            current[0].app.run(timeout=stop_when_idle, collect=False)
            return
        except (CheckpointConsumerCommitError, PartitionAssignmentError) as exc:
            metrics.GROUP_REJOINS.inc()
            if time.monotonic() - started > 60:
                delay = 1.0  # it ran fine for a while: this is a new incident
            log.warning(
                "lost the consumer group's membership (%s: %s); rejoining in %.0fs with a new consumer "
                "(the uncommitted batch is read again; writes are idempotent)",
                type(exc).__name__,
                exc,
                delay,
            )
            time.sleep(delay)
            delay = min(REJOIN_BACKOFF_MAX_S, delay * 2)
            current[0] = build_pipeline(settings)


def _batch_settings(
    args: argparse.Namespace,
    flags: dict[str, object],
    command: str,
    doing: str,
    extra: Callable[[ProcessorSettings], dict[str, object]],
) -> ProcessorSettings:
    """A replay's or scorecard's settings: the live ones with its own target, group and state folder.

    The live settings are the environment and the other flags without the run's own target; the
    target may be the live database only with --into-live (``choose_target``)."""
    from processor.replay_target import choose_target

    live = {k: v for k, v in flags.items() if k not in ("influx_db", "influx_bucket")}
    base = load_settings(ProcessorSettings, live)
    target = choose_target(base, args.influx_db, args.influx_bucket, args.into_live)
    if target.live:
        log.warning("%s into the live %s %r (--into-live)", doing, target.kind, target.name)
    group = args.consumer_group or f"{base.consumer_group}-{command}-{args.from_time}-{args.to_time}-{int(time.time())}"
    own = {"consumer_group": group, "state_dir": args.state_dir or f".cache/{command}/{group}", "commit_interval": 1000}
    return load_settings(ProcessorSettings, {**live, **target.settings, **own, **extra(base)})


def _refused(command: str, exc: BaseException) -> int:
    print(f"crypto-processor {command}: {exc}", file=sys.stderr)
    return 2


def _replay(args: argparse.Namespace, flags: dict[str, object]) -> int:
    from processor.replay import replay

    try:
        settings = _batch_settings(
            args, flags, "replay", "replaying", lambda _: {"alerts_topic": args.alerts_topic or REPLAY_ALERTS_TOPIC}
        )
        pipeline, span = replay(
            settings, args.from_time, args.to_time, show_progress=not args.no_progress, residual=args.warmup_residual
        )
    except (ConfigError, ValueError) as exc:  # RulesError is a ValueError
        return _refused("replay", exc)
    print(
        f"replayed {span.total} ticks: {pipeline.sink.points_written} points written via "
        f"{pipeline.sink.writer.description}; alerts on {settings.alerts_topic}"
    )
    return 0


def _scorecard(args: argparse.Namespace, flags: dict[str, object]) -> int:
    """``crypto-processor scorecard``: the replay's time flags, target rule and own group; see SCORECARD_EPILOG."""
    import json

    from processor.scorecard import format_table, horizons_from
    from processor.scorecard_run import run_scorecard

    try:
        try:
            horizons = horizons_from([parse_duration_ms(h) for h in args.horizons.split(",") if h.strip()])
        except ValueError as exc:
            raise ValueError(f"--horizons {args.horizons!r}: {exc}") from None
        # bad ticks are in the live dead-letter topic already: the scorecard's copies go apart
        settings = _batch_settings(
            args, flags, "scorecard", "writing the scorecard", lambda base: {"dlq_topic": f"{base.dlq_topic}.scorecard"}
        )
        run = run_scorecard(settings, args.from_time, args.to_time, horizons, show_progress=not args.no_progress)
    except (ConfigError, ValueError) as exc:
        return _refused("scorecard", exc)
    if args.json:
        document = {**run.card.as_dict(), "points_written": run.points_written, "target": run.target}
        print(json.dumps(document, indent=2, allow_nan=False))
    else:
        print(format_table(run.card))
        print(f"\n{len(run.card.hints)} hints; {run.points_written} points written via {run.target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
