"""``crypto-producer``: poll CoinGecko (or the simulated market) and publish ticks to Kafka."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from crypto_watcher.config import ConfigError, ProducerSettings, SourceKind, load_settings
from crypto_watcher.kafka import ensure_topic
from crypto_watcher.logs import setup_logging
from producer.coingecko import PLANS, CoinGeckoClient
from producer.publisher import TickPublisher
from producer.service import Backoff, CoinGeckoSource, Poller, QuoteSource
from producer.simulate import SimulatedMarket

log = logging.getLogger("producer")

EPILOG = """\
Every option can also be set by its environment variable (shown in brackets); flags win.
Examples:
  crypto-producer --source simulate --interval 2s         # offline market, new quotes every 2 s
  CW_COINGECKO_PLAN=demo CW_COINGECKO_API_KEY=... crypto-producer --coins bitcoin,solana --vs usd,eur
Stop with Ctrl-C or SIGTERM: polling stops, queued ticks are flushed, the exit status is 0.
"""


def build_parser() -> argparse.ArgumentParser:
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
    p.add_argument("--coins", help="CoinGecko ids, comma separated [CW_COINS, default bitcoin,ethereum]")
    p.add_argument("--vs", dest="vs_currencies", help="vs-currencies, comma separated [CW_VS_CURRENCIES, default usd]")
    p.add_argument(
        "--interval", dest="poll_interval", help="time between polls, e.g. 60s [CW_POLL_INTERVAL, default 60s]"
    )
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
        "--bootstrap",
        dest="kafka_bootstrap",
        help="Kafka bootstrap servers [CW_KAFKA_BOOTSTRAP, default 127.0.0.1:9092]",
    )
    p.add_argument("--topic", dest="ticks_topic", help="ticks topic [CW_TICKS_TOPIC, default crypto.ticks]")
    p.add_argument(
        "--seed", dest="simulate_seed", type=int, help="simulated market seed [CW_SIMULATE_SEED, default 42]"
    )
    p.add_argument(
        "--iterations", type=int, default=None, help="stop after this many polls (default: run until stopped)"
    )
    p.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR [CW_LOG_LEVEL, default INFO]")
    return p


def make_source(settings: ProducerSettings) -> tuple[QuoteSource, float]:
    """The configured source and the minimum gap between its calls (its rate budget)."""
    if settings.source is SourceKind.SIMULATE:
        return SimulatedMarket(
            settings.coins,
            settings.vs_currencies,
            seed=settings.simulate_seed,
            event_every_ms=settings.simulate_event_every,
            event_size_pct=settings.simulate_event_size_pct,
            event_over_ms=settings.simulate_event_over,
        ), 0.0
    plan = PLANS[settings.coingecko_plan]
    try:
        client = CoinGeckoClient(
            settings.coingecko_plan,
            settings.coingecko_api_key,
            settings.coingecko_base_url,
            timeout_s=settings.coingecko_timeout / 1000,
        )
    except ValueError as exc:
        raise ConfigError(f"invalid configuration: {exc}") from None
    budget = settings.coingecko_calls_per_minute or plan.calls_per_minute
    source = CoinGeckoSource(client, settings.coins, settings.vs_currencies)
    log.info("CoinGecko %s plan at %s, budget %.0f calls/min", settings.coingecko_plan.value, client.base_url, budget)
    return source, 60.0 / budget


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level, "producer")
    flags = {k: v for k, v in vars(args).items() if k not in ("iterations", "log_level")}
    try:
        settings = load_settings(ProducerSettings, flags)
        source, min_gap = make_source(settings)
    except ConfigError as exc:
        print(f"crypto-producer: {exc}", file=sys.stderr)
        return 2
    ensure_topic(settings.kafka_bootstrap, settings.ticks_topic, settings.ticks_partitions)
    publisher = TickPublisher(settings.kafka_bootstrap, settings.ticks_topic)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("%s received: stopping after this poll", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    poller = Poller(
        source,
        publisher,
        settings.poll_interval / 1000,
        min_gap,
        Backoff(max_s=settings.max_backoff / 1000),
        stop,
    )
    log.info(
        "watching %s in %s from %s, every %.1fs -> %s",
        ",".join(settings.coins),
        ",".join(settings.vs_currencies),
        settings.source.value,
        poller.interval_s,
        settings.ticks_topic,
    )
    stats = poller.run(args.iterations)
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
    return 0 if remaining == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
