"""``crypto-producer``: poll CoinGecko (or the simulated market) and publish ticks to Kafka.

Commands (``run`` is the default when none is given):
  run           poll live quotes and publish each changed one
  backfill      publish history from /coins/{id}/market_chart/range (resumable)
  replay-file   publish ticks from a CSV or JSON Lines file at a chosen speed
"""

# The doorway only: flags -> settings -> the stage that runs the command (producer.service for
# run, producer.backfill, producer.tickfile). Each command ends on a settings error the same way:
# one line naming the setting, exit status 2.

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
from pathlib import Path
from types import FrameType

from crypto_watcher.cli_help import add_bootstrap, add_log_level, add_setting, service_parser
from crypto_watcher.config import ConfigError, ProducerSettings, load_settings
from crypto_watcher.logs import setup_logging
from crypto_watcher.times import TIME_HELP, format_time, glue_time_values, time_arg
from producer.backfill import DAY, GRANULARITIES, backfill
from producer.service import run_producer
from producer.tickfile import publish_tick_file

log = logging.getLogger("producer")

SETTINGS = ProducerSettings
"""Every settings flag's help (text, variable, default) comes from this model's fields."""

COMMANDS = ("run", "backfill", "replay-file")
Command = Callable[[argparse.Namespace, threading.Event], int]

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
    add_setting(p, SETTINGS, "coingecko_plan", "--plan")
    add_setting(p, SETTINGS, "coingecko_base_url", "--base-url", text="CoinGecko base URL.")
    add_setting(
        p,
        SETTINGS,
        "coingecko_calls_per_minute",
        "--calls-per-minute",
        type=float,
        text="Call budget shared by every CoinGecko call.",
    )
    add_setting(p, SETTINGS, "coingecko_cache_dir", "--cache-dir")


def _kafka_args(p: argparse.ArgumentParser) -> None:
    add_bootstrap(p)
    add_setting(p, SETTINGS, "ticks_topic", "--topic")
    add_log_level(p)


def build_parser() -> argparse.ArgumentParser:
    """The ``run`` command's parser (also what ``crypto-producer`` without a command uses)."""
    p = service_parser("crypto-producer", __doc__, EPILOG)
    add_setting(p, SETTINGS, "source")
    p.add_argument(
        "--live", action="store_const", const="coingecko", dest="source", help="shorthand for --source coingecko"
    )
    add_setting(p, SETTINGS, "coins")
    add_setting(p, SETTINGS, "top_n", type=int)
    add_setting(p, SETTINGS, "vs_currencies", "--vs")
    add_setting(p, SETTINGS, "poll_interval", "--interval")
    add_setting(p, SETTINGS, "stale_after")
    _coingecko_args(p)
    add_setting(p, SETTINGS, "coingecko_monthly_calls", "--monthly-calls", type=int)
    add_setting(p, SETTINGS, "http_port", type=int)
    _kafka_args(p)
    add_setting(p, SETTINGS, "simulate_seed", "--seed", type=int)
    p.add_argument(
        "--iterations", type=int, default=None, help="stop after this many polls (default: run until stopped)"
    )
    return p


def build_backfill_parser() -> argparse.ArgumentParser:
    p = service_parser(
        "crypto-producer backfill",
        "Publish CoinGecko history (/coins/{id}/market_chart/range) into the ticks topic, "
        "source `backfill`. Resumable: an interrupted run continues where it stopped when run again.",
        "Examples: crypto-producer backfill --coins btc,eth --vs usd --from 2025-06-01 --to 2025-09-01\n"
        "          crypto-producer backfill --coins bitcoin --from -30d --granularity daily   # the last 30 days\n"
        "Chunks: 5m = 1 day (last 24 h only), hourly = 90 days, daily = 365 days; see README.",
    )
    add_setting(p, SETTINGS, "coins")
    add_setting(p, SETTINGS, "vs_currencies", "--vs")
    p.add_argument("--from", dest="start", required=True, type=time_arg(), metavar="TIME", help=f"start: {TIME_HELP}")
    p.add_argument(
        "--to",
        dest="end",
        default="now",
        type=time_arg(),
        metavar="TIME",
        help="end (exclusive), same forms (default %(default)s)",
    )
    p.add_argument(
        "--granularity",
        choices=list(GRANULARITIES),
        default="hourly",
        help="points wanted (default %(default)s)",
    )
    p.add_argument("--restart", action="store_true", help="forget the checkpoint and start from the beginning")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    _coingecko_args(p)
    _kafka_args(p)
    return p


def build_replay_parser() -> argparse.ArgumentParser:
    p = service_parser(
        "crypto-producer replay-file",
        "Publish ticks from a CSV or JSON Lines file (Tick fields; event_time in ms or ISO 8601). "
        "Bad lines are reported as FILE:LINE and skipped; the exit status is 1 if there were any.",
        "Example: crypto-producer replay-file ticks.jsonl --speed 60   # an hour of ticks in a minute",
    )
    p.add_argument("file", type=Path, help="CSV (with a header row) or JSON Lines file of ticks")
    p.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="multiple of real time between event times; 0 = as fast as possible (default %(default)g)",
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


def _command(prog: str, parser: argparse.ArgumentParser, argv: Sequence[str], stopping: str, body: Command) -> int:
    """Parse, set up logging, and run ``body`` with SIGTERM/SIGINT setting its stop event (the log
    line says what stopping means for this command); a ConfigError from anywhere in the set-up
    becomes one line on stderr and exit status 2."""
    args = parser.parse_args(argv)
    setup_logging(args.log_level, "producer")
    stop = threading.Event()
    with _signals_stop(stop, stopping):
        try:
            return body(args, stop)
        except ConfigError as exc:
            print(f"{prog}: {exc}", file=sys.stderr)
            return 2


def run_main(argv: Sequence[str]) -> int:
    return _command("crypto-producer", build_parser(), argv, "stopping after this poll", _run)


def _run(args: argparse.Namespace, stop: threading.Event) -> int:
    return run_producer(_settings(args, ("iterations",)), stop, args.iterations)


def backfill_main(argv: Sequence[str]) -> int:
    return _command(
        "crypto-producer backfill",
        build_backfill_parser(),
        glue_time_values(argv),
        "stopping after this chunk (run the same command again to resume)",
        _backfill,
    )


def _backfill(args: argparse.Namespace, stop: threading.Event) -> int:
    settings = _settings(args, ("start", "end", "granularity", "restart", "no_progress"))
    start, end = _backfill_window(args.start, args.end, args.granularity)
    return backfill(settings, start, end, args.granularity, stop, restart=args.restart, progress=not args.no_progress)


def _backfill_window(start_ms: int, end_ms: int, granularity: str) -> tuple[int, int]:
    """--from and --to (epoch ms) as the Unix seconds to backfill, the end no later than now.

    An empty range would publish nothing and still exit 0, and 5-minute points older than a day do
    not exist: both are refused before any call is spent."""
    now = time.time()
    start, end = start_ms // 1000, min(end_ms // 1000, int(now))
    if start >= end:
        raise ConfigError(f"--from ({format_time(start_ms)}) must be before --to ({format_time(end_ms)})")
    if granularity == "5m" and start < now - DAY:
        raise ConfigError("5-minute history exists only for the last 24 hours; use --granularity hourly")
    return start, end


def replay_main(argv: Sequence[str]) -> int:
    return _command("crypto-producer replay-file", build_replay_parser(), argv, "stopping the replay", _replay)


def _replay(args: argparse.Namespace, stop: threading.Event) -> int:
    settings = _settings(args, ("file", "speed", "check"))
    if not args.file.is_file():
        raise ConfigError(f"no such file: {args.file}")
    if args.speed < 0 or not math.isfinite(args.speed):
        raise ConfigError(f"--speed must be 0 (as fast as possible) or positive, got {args.speed}")
    try:
        return publish_tick_file(settings, args.file, args.speed, stop, args.check)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {args.file}: {exc}") from None


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
