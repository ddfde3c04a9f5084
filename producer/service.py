"""The producer's poll loop: ask the source, keep what moved, publish it, wait, and back off on trouble.

A poll that failed half-way has its ticks published at once; the loop backs off (Retry-After when
the server sent one, else exponential backoff with jitter) and the source continues with the call
that failed. Waiting is always on a ``threading.Event`` so SIGTERM/SIGINT end the loop at once;
every failure path sleeps, so the loop can never spin.

``run_producer`` is the ``run`` command from settings on: health endpoint, source, topic,
publisher, the loop, and the final flush.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from crypto_watcher.config import ProducerSettings
from crypto_watcher.health import CachedCheck, Heartbeat, kafka_reachable, serve
from crypto_watcher.messages import Tick
from crypto_watcher.retry import Backoff
from crypto_watcher.times import ms_to_s
from producer.coingecko import CoinGeckoError, describe_failure
from producer.metrics import ProducerMetrics, default_metrics
from producer.publisher import TickPublisher
from producer.quotes import ParsedQuotes
from producer.ratelimit import Stopped
from producer.sources import QuoteSource, make_source
from producer.staleness import SKIP_SUMMARY_EVERY_S, SkipTracker, StaleTracker
from producer.topics import ensure_ticks_topic_eventually

log = logging.getLogger(__name__)


class LastSeen:
    """Event time last published per key: a quote whose update time did not move is not sent again."""

    def __init__(self) -> None:
        self._times: dict[str, int] = {}

    def fresh(self, ticks: Iterable[Tick]) -> list[Tick]:
        out = []
        for tick in ticks:
            if tick.event_time > self._times.get(tick.key, 0):
                self._times[tick.key] = tick.event_time
                out.append(tick)
        return out


@dataclass
class PollStats:
    """What a run of the loop did, for the summary line at the end (the metrics count the same live)."""

    polls: int = 0
    """Complete polls: every watched quote was asked."""
    failures: int = 0
    """Attempts a failed call cut short; the next attempt asks for the rest."""
    published: int = 0
    unchanged: int = 0
    """Quotes not sent again because their update time had not moved."""
    skipped: int = 0
    """Quotes CoinGecko answered unusably."""


class Poller:
    """The loop: one poll per interval (never faster than the call budget), backing off on failures."""

    def __init__(
        self,
        source: QuoteSource,
        publisher: TickPublisher,
        interval_s: float,
        min_call_gap_s: float = 0.0,
        backoff: Backoff | None = None,
        stop: threading.Event | None = None,
        on_poll: Callable[[list[Tick]], None] | None = None,
        *,
        stale_after_s: float | None = None,
        metrics: ProducerMetrics | None = None,
        clock: Callable[[], float] = time.time,
        liveness: Heartbeat | None = None,
        skip_summary_every_s: float = SKIP_SUMMARY_EVERY_S,
    ) -> None:
        self.source = source
        self.publisher = publisher
        # The call budget is a floor on the gap between polls, whatever interval the user asked.
        self.interval_s = max(interval_s, min_call_gap_s)
        if min_call_gap_s > interval_s:
            log.warning(
                "poll interval %.1fs is faster than the plan's call budget allows; polling every %.1fs",
                interval_s,
                min_call_gap_s,
            )
        self.backoff = backoff or Backoff()
        self.stop = stop or threading.Event()
        self.metrics = metrics or default_metrics()
        self.clock = clock
        self.liveness = liveness or Heartbeat()
        self.last_seen = LastSeen()
        self.stale = StaleTracker(int(stale_after_s * 1000), self.metrics) if stale_after_s else None
        self.stats = PollStats()
        self.skips = SkipTracker(self.metrics, skip_summary_every_s)
        self._on_poll = on_poll

    def _report_problems(self, quotes: ParsedQuotes) -> None:
        self.skips.report(quotes.problems)
        for problem in quotes.problems:
            if problem.skipped:
                self.stats.skipped += 1
                self.metrics.records_skipped.labels(reason=problem.reason).inc()

    def poll_once(self) -> float:
        """One poll (or the rest of one that failed part-way); returns how long to wait next."""
        started = time.monotonic()
        self.liveness.beat(self.interval_s)
        try:
            quotes = self.source.poll()
        except CoinGeckoError as exc:  # sources that raise instead of returning a partial poll
            quotes = ParsedQuotes([], [], exc)
        self._report_problems(quotes)
        fresh = self.last_seen.fresh(quotes.ticks)
        unchanged = len(quotes.ticks) - len(fresh)
        self.stats.unchanged += unchanged
        if unchanged:
            self.metrics.records_skipped.labels(reason="unchanged").inc(unchanged)
        for tick in fresh:
            self.publisher.publish(tick)
        self.publisher.poll(0)
        self.stats.published += len(fresh)
        if self.stale is not None:
            self.stale.update(quotes.ticks, int(self.clock() * 1000), getattr(self.source, "watched", None))
        if fresh:
            shown = ", ".join(f"{t.key}={t.price:,.6g}" for t in fresh[:6])
            more = f" (+{len(fresh) - 6} more)" if len(fresh) > 6 else ""
            log.info("published %d ticks: %s%s", len(fresh), shown, more)
        elif quotes.error is None:
            log.info("no quote moved since the last poll (%d unchanged)", len(quotes.ticks))
        if self._on_poll is not None:
            self._on_poll(fresh)
        if quotes.stopped:
            return 0.0
        if quotes.error is not None:
            error = quotes.error
            self.stats.failures += 1
            delay = self.backoff.next_delay(error.retry_after, error.retryable)
            log.warning("%s", describe_failure(error, delay, self.backoff.failures))
            return delay
        self.backoff.reset()
        self.skips.poll_complete(getattr(self.source, "watched", None))
        self.stats.polls += 1
        self.metrics.last_poll.set(self.clock())
        # Measured from this attempt, not from the start of a poll that failed part-way: after a
        # wait longer than the interval (Retry-After, a 403's backoff) the quotes just fetched are
        # CoinGecko's latest, and asking again at once would spend a call on the same cached answer.
        return max(0.0, self.interval_s - (time.monotonic() - started))

    def run(self, max_polls: int | None = None) -> PollStats:
        attempts = 0
        while not self.stop.is_set():
            try:
                delay = self.poll_once()
            except Stopped:
                break
            attempts += 1
            if max_polls is not None and attempts >= max_polls:
                break
            self.liveness.beat(max(self.interval_s, delay))
            self.publisher.report_backlog()
            self._wait(delay)
        return self.stats

    def _wait(self, seconds: float) -> None:
        # Serve delivery reports while waiting, and wake at once on stop.
        deadline = time.monotonic() + seconds
        while not self.stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self.publisher.poll(min(remaining, 0.2))


def run_producer(settings: ProducerSettings, stop: threading.Event, iterations: int | None = None) -> int:
    """Poll and publish until ``stop`` (or ``iterations`` polls); 0 when every tick was delivered.

    ConfigError (a refused key, an unknown coin, a replication Kafka cannot meet) propagates: the
    caller says why and exits 2."""
    liveness = Heartbeat()
    kafka_ok = CachedCheck(kafka_reachable(settings.kafka_bootstrap))
    server = serve(settings.http_host, settings.http_port, liveness.alive, kafka_ok)
    try:
        try:
            source, min_gap = make_source(settings, stop, liveness)
        except Stopped:
            log.info("stopped before the first poll")
            return 0
        ensure_ticks_topic_eventually(settings, stop)
        publisher = TickPublisher(
            settings.kafka_bootstrap, settings.ticks_topic, stop=stop, on_blocked=lambda: liveness.beat(0)
        )
        poller = Poller(
            source,
            publisher,
            ms_to_s(settings.poll_interval),
            min_gap,
            Backoff(max_s=ms_to_s(settings.max_backoff)),
            stop,
            stale_after_s=ms_to_s(settings.stale_after),
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
        stats = poller.run(iterations)
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
