"""``crypto-producer``: poll CoinGecko (or the simulated market) and publish ticks to Kafka.

Commands (``run`` is the default when none is given):
  run           poll live quotes and publish each changed one
  backfill      publish history from /coins/{id}/market_chart/range (resumable)
  replay-file   publish ticks from a CSV or JSON Lines file at a chosen speed
"""

from __future__ import annotations

import argparse
import logging
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from crypto_watcher.config import ConfigError, Plan, ProducerSettings, SourceKind, load_settings
from crypto_watcher.durations import format_duration
from crypto_watcher.health import CachedCheck, kafka_reachable, serve
from crypto_watcher.kafka import KAFKA_LOG, ensure_topic
from crypto_watcher.logs import setup_logging
from crypto_watcher.times import TIME_HELP, format_time, glue_time_values, time_arg
from producer.backfill import DAY, GRANULARITIES, Checkpoint, run_backfill
from producer.coingecko import PLANS, Backoff, CoinGeckoClient, CoinGeckoError
from producer.publisher import TickPublisher
from producer.ratelimit import RateLimiter, Stopped, UsageLog
from producer.replay import replay_file
from producer.resolve import CoinsList, ResolveError, market_caps_via, resolve
from producer.service import CoinGeckoSource, Liveness, Poller, QuoteSource
from producer.simulate import SimulatedMarket

log = logging.getLogger("producer")

COMMANDS = ("run", "backfill", "replay-file")
MONTH_S = 30 * 86_400

EPILOG = """\
Every option can also be set by its environment variable (shown in brackets); flags win.
Other commands: crypto-producer backfill --help, crypto-producer replay-file --help.
Examples:
  crypto-producer --source simulate --interval 2s         # offline market, new quotes every 2 s
  CW_COINGECKO_PLAN=demo CW_COINGECKO_API_KEY=... crypto-producer --coins btc,solana --vs usd,eur
  crypto-producer --top-n 250 --vs usd,eur --interval 2m   # the 250 largest coins, 1 call per poll
Stop with Ctrl-C or SIGTERM: polling stops, queued ticks are flushed, the exit status is 0.
"""


# ---------------------------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------------------------


def _coingecko_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--plan",
        dest="coingecko_plan",
        choices=["public", "demo", "pro"],
        help="CoinGecko access plan [CW_COINGECKO_PLAN, default public]",
    )
    p.add_argument(
        "--base-url", dest="coingecko_base_url", help="CoinGecko base URL [CW_COINGECKO_BASE_URL, default: the plan's]"
    )
    p.add_argument(
        "--calls-per-minute",
        dest="coingecko_calls_per_minute",
        type=float,
        help="call budget [CW_COINGECKO_CALLS_PER_MINUTE, default: the plan's]",
    )
    p.add_argument(
        "--cache-dir",
        dest="coingecko_cache_dir",
        help="coin list cache and checkpoints [CW_COINGECKO_CACHE_DIR, default .cache/coingecko]",
    )


def _kafka_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--bootstrap",
        dest="kafka_bootstrap",
        help="Kafka bootstrap servers [CW_KAFKA_BOOTSTRAP, default 127.0.0.1:9092]",
    )
    p.add_argument("--topic", dest="ticks_topic", help="ticks topic [CW_TICKS_TOPIC, default crypto.ticks]")
    p.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR [CW_LOG_LEVEL, default INFO]")


def build_parser() -> argparse.ArgumentParser:
    """The ``run`` command's parser (also what ``crypto-producer`` without a command uses)."""
    p = argparse.ArgumentParser(
        prog="crypto-producer",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--source", choices=[s.value for s in SourceKind], help="where quotes come from [CW_SOURCE, default coingecko]"
    )
    p.add_argument(
        "--live", action="store_const", const="coingecko", dest="source", help="shorthand for --source coingecko"
    )
    p.add_argument(
        "--coins", help="CoinGecko ids, symbols or names, comma separated [CW_COINS, default bitcoin,ethereum]"
    )
    p.add_argument(
        "--top-n", dest="top_n", type=int, help="watch the top N coins by market cap instead [CW_TOP_N, default 0]"
    )
    p.add_argument("--vs", dest="vs_currencies", help="vs-currencies, comma separated [CW_VS_CURRENCIES, default usd]")
    p.add_argument(
        "--interval", dest="poll_interval", help="time between polls, e.g. 60s [CW_POLL_INTERVAL, default 60s]"
    )
    p.add_argument(
        "--stale-after",
        dest="stale_after",
        help="report quotes not updated for this long [CW_STALE_AFTER, default 10m]",
    )
    _coingecko_args(p)
    p.add_argument(
        "--monthly-calls",
        dest="coingecko_monthly_calls",
        type=int,
        help="monthly call credits to warn about [CW_COINGECKO_MONTHLY_CALLS, default: none]",
    )
    p.add_argument(
        "--http-port", dest="http_port", type=int, help="metrics/health port, -1 off [CW_HTTP_PORT, default 9101]"
    )
    _kafka_args(p)
    p.add_argument(
        "--seed", dest="simulate_seed", type=int, help="simulated market seed [CW_SIMULATE_SEED, default 42]"
    )
    p.add_argument(
        "--iterations", type=int, default=None, help="stop after this many polls (default: run until stopped)"
    )
    return p


def build_backfill_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="crypto-producer backfill",
        description="Publish CoinGecko history (/coins/{id}/market_chart/range) into the ticks topic, "
        "source `backfill`. Resumable: an interrupted run continues where it stopped when run again.",
        epilog="Examples: crypto-producer backfill --coins btc,eth --vs usd --from 2025-06-01 --to 2025-09-01\n"
        "          crypto-producer backfill --coins bitcoin --from -30d --granularity daily   # the last 30 days\n"
        "Chunks: 5m = 1 day (last 24 h only), hourly = 90 days, daily = 365 days; see README.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--coins", help="CoinGecko ids, symbols or names [CW_COINS, default bitcoin,ethereum]")
    p.add_argument("--vs", dest="vs_currencies", help="vs-currencies, comma separated [CW_VS_CURRENCIES, default usd]")
    p.add_argument("--from", dest="start", required=True, type=time_arg(), metavar="TIME", help=f"start: {TIME_HELP}")
    p.add_argument(
        "--to",
        dest="end",
        default="now",
        type=time_arg(),
        metavar="TIME",
        help="end (exclusive), same forms (default now)",
    )
    p.add_argument(
        "--granularity", choices=list(GRANULARITIES), default="hourly", help="points wanted (default hourly)"
    )
    p.add_argument("--restart", action="store_true", help="forget the checkpoint and start from the beginning")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    _coingecko_args(p)
    _kafka_args(p)
    return p


def build_replay_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="crypto-producer replay-file",
        description="Publish ticks from a CSV or JSON Lines file (Tick fields; event_time in ms or ISO 8601). "
        "Bad lines are reported as FILE:LINE and skipped; the exit status is 1 if there were any.",
        epilog="Example: crypto-producer replay-file ticks.jsonl --speed 60   # an hour of ticks in a minute",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", type=Path, help="CSV (with a header row) or JSON Lines file of ticks")
    p.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="multiple of real time between event times; 0 = as fast as possible (default 1)",
    )
    p.add_argument("--check", action="store_true", help="only validate the file; publish nothing")
    _kafka_args(p)
    return p


def _settings(args: argparse.Namespace, skip: Sequence[str]) -> ProducerSettings:
    flags = {k: v for k, v in vars(args).items() if k not in (*skip, "log_level")}
    return load_settings(ProducerSettings, flags)


@contextmanager
def _signals_stop(stop: threading.Event, what: str) -> Iterator[None]:
    """SIGTERM and SIGINT set ``stop`` (the command winds down cleanly) while the block runs."""

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            log.warning("%s received again: still stopping", signal.Signals(signum).name)
            return
        log.info("%s received: %s", signal.Signals(signum).name, what)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def ensure_ticks_topic(settings: ProducerSettings) -> None:
    """Create the ticks topic as the settings say (partitions, retention, replication) unless it exists."""
    ensure_topic(
        settings.kafka_bootstrap,
        settings.ticks_topic,
        settings.ticks_partitions,
        settings.topic_retention,
        settings.topic_replication,
    )


def _ensure_topic(settings: ProducerSettings, stop: threading.Event) -> None:
    """Create the ticks topic; if Kafka is away, keep trying in the background (ticks buffer meanwhile)."""
    try:
        ensure_ticks_topic(settings)
        return
    except Exception as exc:
        log.error(
            "Kafka unreachable at start-up (%s); going on, ticks are buffered and topic %s is created when it answers",
            exc,
            settings.ticks_topic,
        )

    def retry() -> None:
        while not stop.wait(10.0):
            try:
                ensure_ticks_topic(settings)
                log.info("Kafka answers again; topic %s is there", settings.ticks_topic)
                return
            except ConfigError as exc:  # e.g. too few brokers for CW_TOPIC_REPLICATION: may come back
                log.error("cannot create topic %s: %s", settings.ticks_topic, exc)
            except Exception as exc:
                log.debug("topic creation still failing: %s", exc)

    threading.Thread(target=retry, name="ensure-topic", daemon=True).start()


# ---------------------------------------------------------------------------------------------
# CoinGecko set-up shared by run and backfill
# ---------------------------------------------------------------------------------------------


@dataclass
class CoinGeckoSetup:
    client: CoinGeckoClient
    limiter: RateLimiter
    budget: float
    monthly_left: int | None = None


def make_client(
    settings: ProducerSettings, stop: threading.Event, on_wait: Callable[[float], None] | None = None
) -> CoinGeckoSetup:
    """The client with its shared limiter; on Pro, ``/key`` supplies the real per-minute limit."""
    plan = PLANS[settings.coingecko_plan]
    budget = settings.coingecko_calls_per_minute or plan.calls_per_minute
    limiter = RateLimiter(budget, stop=stop, on_wait=on_wait)
    try:
        client = CoinGeckoClient(
            settings.coingecko_plan,
            settings.coingecko_api_key,
            settings.coingecko_base_url,
            timeout_s=settings.coingecko_timeout / 1000,
            limiter=limiter,
            usage=UsageLog(limiter),
        )
    except ValueError as exc:
        raise ConfigError(f"invalid configuration: {exc}") from None
    setup = CoinGeckoSetup(client, limiter, budget)
    if settings.coingecko_plan is Plan.PRO:
        try:
            info = client.get("key")
        except CoinGeckoError as exc:
            if not exc.retryable:
                raise ConfigError(f"CoinGecko refused the Pro key: {exc}") from None
            log.warning("could not read the Pro key's limits (%s); budget stays %g/min", exc, budget)
            return setup
        info = info if isinstance(info, dict) else {}
        left = info.get("current_remaining_monthly_calls")
        if isinstance(left, int) and not isinstance(left, bool):
            setup.monthly_left = left
        rate = pro_key_rate(info)
        if rate is not None:
            log.info(
                "Pro key: %g calls/min (this key %s, the plan %s), %s monthly credits left",
                rate,
                info.get("api_key_rate_limit_request_per_minute", "-"),
                info.get("rate_limit_request_per_minute", "-"),
                left,
            )
            if settings.coingecko_calls_per_minute is None:
                limiter.set_budget(rate)
                setup.budget = rate
    return setup


def pro_key_rate(info: dict[str, Any]) -> float | None:
    """The per-minute budget ``GET /key`` allows this key, or None when it reports none.

    ``rate_limit_request_per_minute`` is the plan's, shared by every key of the account;
    ``api_key_rate_limit_request_per_minute`` is this key's own and the one CoinGecko enforces on
    its calls, so it is the budget. Both count, so the smaller wins when both are there."""
    rates = [
        float(value)
        for value in (info.get("api_key_rate_limit_request_per_minute"), info.get("rate_limit_request_per_minute"))
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0
    ]
    return min(rates) if rates else None


def resolve_coins(
    settings: ProducerSettings, client: CoinGeckoClient, stop: threading.Event, inputs: Sequence[str] | None = None
) -> tuple[list[str], dict[str, str]]:
    """CW_COINS (ids, symbols, names) as ids; ConfigError (exit 2) for unknown or ambiguous ones."""

    def get(path: str, params: dict[str, str] | None = None, attempts: int | None = None) -> Any:
        try:
            return client.get_with_retries(
                path, params, backoff=Backoff(max_s=settings.max_backoff / 1000), stop=stop, max_attempts=attempts
            )
        except CoinGeckoError as exc:
            if exc.retryable:
                raise  # only after ``attempts``: the caller has a fallback
            raise ConfigError(f"CoinGecko refused the request: {exc}") from None

    listing = CoinsList(client, settings.coingecko_cache_dir, settings.coins_list_ttl / 1000)
    try:
        # A few tries, then an expired cached copy if there is one; with none, keep trying.
        coins = listing.load(lambda: get("coins/list", attempts=3))
    except CoinGeckoError:
        coins = listing.load(lambda: get("coins/list"))
    try:
        found = resolve(
            inputs if inputs is not None else settings.coins,
            coins,
            market_caps_via(settings.vs_currencies[0], get),
            settings.vs_currencies[0],
        )
    except ResolveError as exc:
        raise ConfigError(f"cannot use CW_COINS / --coins:\n{exc}") from None
    for note in found.notes:
        log.info("coin %s", note)
    return found.ids, found.symbols


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


def monthly_calls(calls_per_poll: int, interval_s: float, top_n_calls: int = 0, top_n_refresh_s: float = 3600.0) -> int:
    """Calls a 30-day month of polling costs, with the top-N refreshes and one /coins/list a day."""
    polls = math.ceil(MONTH_S / interval_s) * calls_per_poll
    refreshes = math.ceil(MONTH_S / top_n_refresh_s) * top_n_calls if top_n_calls else 0
    return polls + refreshes + 30


def make_source(
    settings: ProducerSettings, stop: threading.Event, liveness: Liveness | None = None
) -> tuple[QuoteSource, float]:
    """The configured source and the shortest poll interval its call budget allows."""
    if settings.source is SourceKind.SIMULATE:
        return SimulatedMarket(
            settings.coins,
            settings.vs_currencies,
            seed=settings.simulate_seed,
            event_every_ms=settings.simulate_event_every,
            event_size_pct=settings.simulate_event_size_pct,
            event_over_ms=settings.simulate_event_over,
        ), 0.0
    setup = make_client(settings, stop, liveness.beat if liveness is not None else None)
    client = setup.client
    log.info(
        "CoinGecko %s plan at %s, budget %g calls/min", settings.coingecko_plan.value, client.base_url, setup.budget
    )
    coins: list[str] = []
    symbols: dict[str, str] = {}
    if settings.top_n:
        log.info("following the top %d coins by market cap (CW_COINS is not used)", settings.top_n)
    else:
        coins, symbols = resolve_coins(settings, client, stop)
    source = CoinGeckoSource(
        client,
        coins,
        settings.vs_currencies,
        symbols=symbols,
        top_n=settings.top_n,
        top_n_refresh_s=settings.top_n_refresh / 1000,
        ids_per_call=settings.coingecko_ids_per_call,
    )
    per_poll = source.calls_per_poll()
    min_gap = 60.0 * per_poll / setup.budget
    interval = max(settings.poll_interval / 1000, min_gap)
    per_month = monthly_calls(per_poll, interval, source.top_n_calls(), settings.top_n_refresh / 1000)
    log.info(
        "one poll costs %s (%s, %s); every %s that is %.1f calls/min of %g, ~%s calls/month",
        _plural(per_poll, "call"),
        _plural(settings.top_n or len(coins), "coin"),
        _plural(len(settings.vs_currencies), "currency", "currencies"),
        format_duration(int(interval * 1000)),
        per_poll * 60 / interval,
        setup.budget,
        f"{per_month:,}",
    )
    _warn_monthly(settings, setup, per_month, per_poll, source.top_n_calls())
    return source, min_gap


def _warn_monthly(
    settings: ProducerSettings, setup: CoinGeckoSetup, per_month: int, per_poll: int, top_calls: int
) -> None:
    credits = settings.coingecko_monthly_calls
    what = "CW_COINGECKO_MONTHLY_CALLS"
    if credits is None and setup.monthly_left is not None:
        credits, what = setup.monthly_left, "the Pro key's remaining monthly credits"
    if credits is None:
        plan_monthly = PLANS[settings.coingecko_plan].monthly_calls
        if plan_monthly is not None and per_month > plan_monthly:
            log.warning(
                "%s plan keys have had %s calls/month; this set-up spends ~%s. Set CW_COINGECKO_MONTHLY_CALLS to "
                "your plan's credits to check",
                settings.coingecko_plan.value,
                f"{plan_monthly:,}",
                f"{per_month:,}",
            )
        return
    if per_month <= credits:
        return
    spare = max(credits - (per_month - math.ceil(MONTH_S / (settings.poll_interval / 1000)) * per_poll), 1)
    needed = MONTH_S * per_poll / spare
    days = 30 * credits / per_month
    log.warning(
        "polling spends ~%s calls a month, more than %s (%s): the credits run out after ~%.0f days; "
        "poll every %s or more, or watch fewer coins",
        f"{per_month:,}",
        what,
        f"{credits:,}",
        days,
        format_duration(math.ceil(needed) * 1000),
    )


# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------


def run_main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level, "producer")
    stop = threading.Event()
    with _signals_stop(stop, "stopping after this poll"):
        return _run(args, stop)


def _run(args: argparse.Namespace, stop: threading.Event) -> int:
    try:
        settings = _settings(args, ("iterations",))
    except ConfigError as exc:
        print(f"crypto-producer: {exc}", file=sys.stderr)
        return 2
    liveness = Liveness()
    kafka_ok = CachedCheck(kafka_reachable(settings.kafka_bootstrap))
    server = serve(settings.http_host, settings.http_port, liveness.alive, kafka_ok)
    try:
        try:
            source, min_gap = make_source(settings, stop, liveness)
        except ConfigError as exc:
            print(f"crypto-producer: {exc}", file=sys.stderr)
            return 2
        except Stopped:
            log.info("stopped before the first poll")
            return 0
        try:
            _ensure_topic(settings, stop)
        except ConfigError as exc:  # the replication setting cannot be met: fail now, saying why
            print(f"crypto-producer: {exc}", file=sys.stderr)
            return 2
        publisher = TickPublisher(
            settings.kafka_bootstrap, settings.ticks_topic, stop=stop, on_blocked=lambda: liveness.beat(0)
        )
        poller = Poller(
            source,
            publisher,
            settings.poll_interval / 1000,
            min_gap,
            Backoff(max_s=settings.max_backoff / 1000),
            stop,
            stale_after_s=settings.stale_after / 1000,
            liveness=liveness,
        )
        log.info(
            "watching %s in %s from %s, every %.1fs -> %s",
            f"the top {settings.top_n}" if settings.top_n else ",".join(getattr(source, "coins", settings.coins)),
            ",".join(settings.vs_currencies),
            settings.source.value,
            poller.interval_s,
            settings.ticks_topic,
        )
        stats = poller.run(args.iterations)
        log.info("flushing %d queued ticks", publisher.in_flight)
        remaining = publisher.flush(30.0)
        log.info(
            "stopped: %d polls, %d failed, %d ticks published (%d delivered), %d unchanged, %d skipped",
            stats.polls,
            stats.failures,
            stats.published,
            publisher.delivered,
            stats.unchanged,
            stats.skipped,
        )
        return 0 if remaining == 0 and publisher.dropped == 0 else 1
    finally:
        if server is not None:
            server.stop()


def topic_retention_ms(bootstrap: str, topic: str) -> int | None:
    """The topic's ``retention.ms`` (-1: forever), or None when it cannot be read."""
    from confluent_kafka.admin import AdminClient, ConfigResource

    try:
        admin = AdminClient({"bootstrap.servers": bootstrap, "logger": KAFKA_LOG})  # must outlive the future
        resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
        entries = admin.describe_configs([resource], request_timeout=10)[resource].result(timeout=10)
        return int(entries["retention.ms"].value)
    except Exception as exc:
        log.debug("cannot read the retention of %s: %s", topic, exc)
        return None


def backfill_main(argv: Sequence[str]) -> int:
    args = build_backfill_parser().parse_args(glue_time_values(argv))
    setup_logging(args.log_level, "producer")
    stop = threading.Event()
    with _signals_stop(stop, "stopping after this chunk (run the same command again to resume)"):
        return _backfill(args, stop)


def _backfill(args: argparse.Namespace, stop: threading.Event) -> int:
    try:
        settings = _settings(args, ("start", "end", "granularity", "restart", "no_progress"))
        now = time.time()
        start, end = args.start // 1000, min(args.end // 1000, int(now))  # the flags are epoch ms
        if start >= end:
            raise ConfigError(f"--from ({format_time(args.start)}) must be before --to ({format_time(args.end)})")
        if args.granularity == "5m" and start < now - DAY:
            raise ConfigError("5-minute history exists only for the last 24 hours; use --granularity hourly")
        setup = make_client(settings, stop)
        coins, symbols = resolve_coins(settings, setup.client, stop)
        checkpoint = Checkpoint(
            Checkpoint.for_run(settings.coingecko_cache_dir, settings.ticks_topic, setup.client.base_url)
        )
    except ConfigError as exc:
        print(f"crypto-producer backfill: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"crypto-producer backfill: {exc}", file=sys.stderr)
        return 2
    except Stopped:
        return 1
    if args.restart:
        checkpoint.clear()
    try:
        ensure_ticks_topic(settings)
    except ConfigError as exc:
        print(f"crypto-producer backfill: {exc}", file=sys.stderr)
        return 2
    retention = topic_retention_ms(settings.kafka_bootstrap, settings.ticks_topic)
    if retention is not None and retention >= 0:
        until = datetime.fromtimestamp(time.time() + retention / 1000, UTC).strftime("%Y-%m-%d")
        log.info(
            "topic %s keeps records %s after they are published: this history can be replayed until %s "
            "(CW_TOPIC_RETENTION=forever keeps it)",
            settings.ticks_topic,
            format_duration(retention),
            until,
        )
    publisher = TickPublisher(settings.kafka_bootstrap, settings.ticks_topic, stop=stop)
    report = run_backfill(
        setup.client,
        publisher,
        coins,
        settings.vs_currencies,
        start,
        end,
        args.granularity,
        checkpoint,
        stop=stop,
        symbols=symbols,
        backoff=Backoff(max_s=settings.max_backoff / 1000),
        progress=not args.no_progress,
    )
    remaining = publisher.flush(30.0)
    log.info(
        "backfill %s: %d ticks in %d chunks, %d chunks done before, %d failed, %d bad points skipped; checkpoint %s",
        "complete" if report.complete and not remaining else "incomplete",
        report.ticks,
        report.done,
        report.done_before,
        len(report.failed),
        report.skipped_points,
        checkpoint.path,
    )
    if not report.complete or remaining:
        log.warning("run the same command again to continue with the chunks not done")
        return 1
    return 0


def replay_main(argv: Sequence[str]) -> int:
    args = build_replay_parser().parse_args(argv)
    setup_logging(args.log_level, "producer")
    stop = threading.Event()
    with _signals_stop(stop, "stopping the replay"):
        return _replay(args, stop)


def _replay(args: argparse.Namespace, stop: threading.Event) -> int:
    try:
        settings = _settings(args, ("file", "speed", "check"))
        if not args.file.is_file():
            raise ConfigError(f"no such file: {args.file}")
        if args.speed < 0 or not math.isfinite(args.speed):
            raise ConfigError(f"--speed must be 0 (as fast as possible) or positive, got {args.speed}")
    except ConfigError as exc:
        print(f"crypto-producer replay-file: {exc}", file=sys.stderr)
        return 2
    publisher: TickPublisher | None = None
    if not args.check:
        try:
            ensure_ticks_topic(settings)
        except ConfigError as exc:
            print(f"crypto-producer replay-file: {exc}", file=sys.stderr)
            return 2
        publisher = TickPublisher(settings.kafka_bootstrap, settings.ticks_topic, stop=stop)
    try:
        report = replay_file(args.file, publisher, args.speed, stop=stop)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"crypto-producer replay-file: cannot read {args.file}: {exc}", file=sys.stderr)
        return 2
    remaining = publisher.drain(str(args.file), stop) if publisher is not None else 0
    verb = "valid" if publisher is None else "published"
    log.info(
        "%s: %d ticks %s, %d bad lines%s",
        args.file,
        report.published,
        verb,
        report.bad_lines,
        " (stopped early)" if report.stopped else "",
    )
    return 0 if report.bad_lines == 0 and remaining == 0 and not report.stopped else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command = args.pop(0) if args and args[0] in COMMANDS else "run"
    if command == "backfill":
        return backfill_main(args)
    if command == "replay-file":
        return replay_main(args)
    return run_main(args)


if __name__ == "__main__":
    raise SystemExit(main())
