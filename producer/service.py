"""The producer's poll loop: ask the source, keep what moved, publish it, wait, and back off on trouble.

A *poll* asks CoinGecko for every watched coin in as few calls as the URL allows (all
vs-currencies in each call). If a call fails half-way, the ticks already fetched are published,
the loop backs off (Retry-After when the server sent one, else exponential backoff with jitter)
and then continues with the call that failed, so no part of a poll is lost or asked twice.

Waiting is always on a ``threading.Event`` so SIGTERM/SIGINT end the loop at once; every failure
path sleeps, so the loop can never spin.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol
from urllib.parse import quote

from crypto_watcher.durations import format_duration
from crypto_watcher.messages import Tick
from producer.coingecko import Backoff, CoinGeckoClient, CoinGeckoError, describe_failure
from producer.metrics import ProducerMetrics, default_metrics
from producer.publisher import TickPublisher
from producer.quotes import (
    ParsedQuotes,
    Problem,
    markets_params,
    parse_market_ids,
    parse_simple_price,
    simple_price_params,
)
from producer.ratelimit import Stopped

__all__ = [
    "MAX_IDS_PER_CALL",
    "MAX_URL_IDS_CHARS",
    "Backoff",
    "CoinGeckoSource",
    "LastSeen",
    "Liveness",
    "PollStats",
    "Poller",
    "QuoteSource",
    "SkipTracker",
    "StaleTracker",
    "chunk_ids",
]

log = logging.getLogger(__name__)

MAX_URL_IDS_CHARS = 5000
"""Encoded length of the ``ids`` parameter per call (commas count as ``%2C``): the whole URL stays
near 5 KB, under the 8 KB request-line limit common to web servers and proxies."""
MAX_IDS_PER_CALL = 250
"""Ids per /simple/price call, as many as a /coins/markets page holds."""
MARKETS_PER_PAGE = 250
STALE_LOG_LIMIT = 10
SKIP_SUMMARY_EVERY_S = 600.0
"""How often one line names the pairs still being skipped (the gauge says how many at every poll)."""


class QuoteSource(Protocol):
    def poll(self) -> ParsedQuotes: ...


def chunk_ids(
    ids: Iterable[str], max_chars: int = MAX_URL_IDS_CHARS, max_ids: int = MAX_IDS_PER_CALL
) -> list[list[str]]:
    """Split coin ids into groups of at most ``max_ids`` whose encoded, comma-joined form fits ``max_chars``."""
    chunks: list[list[str]] = [[]]
    size = 0
    for coin in ids:
        cost = len(quote(coin, safe="")) + 3
        if chunks[-1] and (size + cost > max_chars or len(chunks[-1]) >= max_ids):
            chunks.append([])
            size = 0
        chunks[-1].append(coin)
        size += cost
    return [c for c in chunks if c]


class CoinGeckoSource:
    """Quotes from ``/simple/price`` for a fixed list of ids, or for the top N coins by market cap.

    With ``top_n`` the list comes from ``/coins/markets`` (ordered by market cap, 250 per page,
    in the first vs-currency) and is refreshed every ``top_n_refresh_s``; the quotes still come
    from ``/simple/price``, which prices every vs-currency in one call.
    """

    def __init__(
        self,
        client: CoinGeckoClient,
        coins: list[str],
        vs_currencies: list[str],
        *,
        symbols: dict[str, str] | None = None,
        top_n: int = 0,
        top_n_refresh_s: float = 3600.0,
        ids_per_call: int = MAX_IDS_PER_CALL,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.coins = [] if top_n else list(coins)
        self.vs_currencies = list(vs_currencies)
        self.symbols = dict(symbols or {})
        self.top_n = top_n
        self.top_n_refresh_s = top_n_refresh_s
        self.ids_per_call = ids_per_call
        self.clock = clock
        self.monotonic = monotonic
        self.calls = 0
        self._pending: list[list[str]] = []
        self._top_due: float | None = monotonic() if top_n else None

    @property
    def watched(self) -> list[str]:
        return self.coins

    def calls_per_poll(self) -> int:
        """Calls one poll costs (without the top-N refresh)."""
        if self.top_n and not self.coins:
            return math.ceil(self.top_n / self.ids_per_call)
        return len(chunk_ids(self.coins, max_ids=self.ids_per_call))

    def top_n_calls(self) -> int:
        """Calls one refresh of the top-N list costs."""
        return math.ceil(self.top_n / MARKETS_PER_PAGE) if self.top_n else 0

    def _refresh_top(self) -> None:
        per_page = min(MARKETS_PER_PAGE, self.top_n)
        found: list[tuple[str, str | None]] = []
        for page in range(1, self.top_n_calls() + 1):
            self.calls += 1
            rows = parse_market_ids(
                self.client.get("coins/markets", markets_params(self.vs_currencies[0], page, per_page))
            )
            found.extend(rows)
            if len(rows) < per_page:
                break  # fewer coins exist than asked for
        ids = list(dict.fromkeys(coin for coin, _ in found))[: self.top_n]
        if not ids:
            raise CoinGeckoError("malformed", "/coins/markets returned no coins for the top-N list")
        before = set(self.coins)
        self.symbols.update({coin: sym for coin, sym in found if sym})
        self.coins = ids
        added = [c for c in ids if c not in before]
        dropped = [c for c in before if c not in set(ids)]
        if before:
            log.info(
                "top %d by market cap refreshed: %d new (%s), %d dropped (%s)",
                self.top_n,
                len(added),
                ",".join(added[:10]) or "-",
                len(dropped),
                ",".join(dropped[:10]) or "-",
            )
        else:
            log.info("top %d by market cap: %s%s", self.top_n, ",".join(ids[:10]), " ..." if len(ids) > 10 else "")

    def poll(self) -> ParsedQuotes:
        """Every watched quote, or as many as arrived before a call failed (``error`` says which)."""
        result = ParsedQuotes([], [])
        if not self._pending:
            if self._top_due is not None and self.monotonic() >= self._top_due:
                try:
                    self._refresh_top()
                    self._top_due = self.monotonic() + self.top_n_refresh_s
                except Stopped:
                    result.stopped = True
                    return result
                except CoinGeckoError as exc:
                    if not self.coins or exc.retryable:
                        result.error = exc
                        return result
                    log.error("top-%d refresh failed for good (%s); keeping the current list", self.top_n, exc)
                    self._top_due = self.monotonic() + self.top_n_refresh_s
            self._pending = chunk_ids(self.coins, max_ids=self.ids_per_call)
        while self._pending:
            group = self._pending[0]
            self.calls += 1
            try:
                payload = self.client.get("simple/price", simple_price_params(group, self.vs_currencies))
            except Stopped:
                result.stopped = True  # publish what arrived; the rest is not asked for any more
                return result
            except CoinGeckoError as exc:
                if exc.status == 414 and len(group) > 1:
                    # URI too long for this server: halve the groups from now on and ask again at once.
                    half = len(group) // 2
                    self.ids_per_call = max(1, min(self.ids_per_call, half))
                    log.warning("CoinGecko refused a URL with %d ids (414); asking %d ids per call", len(group), half)
                    self._pending[0:1] = chunk_ids(group, max_ids=self.ids_per_call)
                    continue
                result.error = exc
                return result
            fetched = int(self.clock() * 1000)
            parsed = parse_simple_price(payload, group, self.vs_currencies, fetched, symbols=self.symbols)
            result.ticks.extend(parsed.ticks)
            result.problems.extend(parsed.problems)
            self._pending.pop(0)
        return result


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


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _age(ms: int) -> str:
    seconds = max(0, ms // 1000)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds / 3600:.1f}h"


class StaleTracker:
    """Quotes whose update time has not moved for longer than ``stale_after_ms``.

    One WARNING per coin when its quotes become stale, one INFO when they move again; the gauge
    ``cw_producer_stale_quotes`` counts stale (coin, vs) pairs after every poll.
    """

    def __init__(self, stale_after_ms: int, metrics: ProducerMetrics | None = None) -> None:
        self.stale_after_ms = stale_after_ms
        self.metrics = metrics or default_metrics()
        self._last: dict[str, int] = {}
        self.stale: set[str] = set()

    def update(self, ticks: Iterable[Tick], now_ms: int, watched: Collection[str] | None = None) -> None:
        for tick in ticks:
            if tick.event_time > self._last.get(tick.key, 0):
                self._last[tick.key] = tick.event_time
        if watched is not None:
            keep = set(watched)
            for key in [k for k in self._last if k.split(":", 1)[0] not in keep]:
                del self._last[key]
                self.stale.discard(key)
        became: dict[str, list[str]] = {}
        recovered: dict[str, list[str]] = {}
        for key, last in self._last.items():
            coin, vs = key.split(":", 1)
            if now_ms - last > self.stale_after_ms:
                if key not in self.stale:
                    self.stale.add(key)
                    became.setdefault(coin, []).append(vs)
            elif key in self.stale:
                self.stale.discard(key)
                recovered.setdefault(coin, []).append(vs)
        limit = format_duration(self.stale_after_ms)
        for i, (coin, vs_list) in enumerate(became.items()):
            if i == STALE_LOG_LIMIT:
                log.warning("... and %d more coins became stale", len(became) - STALE_LOG_LIMIT)
                break
            last = max(self._last[f"{coin}:{vs}"] for vs in vs_list)
            log.warning(
                "stale quote: %s (%s) last updated %s ago at %s, longer than CW_STALE_AFTER=%s",
                coin,
                ",".join(vs_list),
                _age(now_ms - last),
                _iso(last),
                limit,
            )
        for i, (coin, vs_list) in enumerate(recovered.items()):
            if i == STALE_LOG_LIMIT:
                log.info("... and %d more coins are fresh again", len(recovered) - STALE_LOG_LIMIT)
                break
            last = max(self._last[f"{coin}:{vs}"] for vs in vs_list)
            log.info("quote fresh again: %s (%s) updated at %s", coin, ",".join(vs_list), _iso(last))
        self.metrics.stale_quotes.set(len(self.stale))


class SkipTracker:
    """Quotes CoinGecko keeps answering unusably, said once and then counted.

    A coin answered with null, a bad figure or an unknown id usually stays that way for hours or
    for good, and a WARNING on every poll would bury every other line. So the first poll that skips
    a pair logs one WARNING with the reason; later polls log it at DEBUG and count it
    (``cw_producer_records_skipped_total`` per quote, the gauge ``cw_producer_skipped_pairs`` after
    every complete poll); while any pair stays skipped one INFO line every ``summary_every_s``
    names them; one INFO line says when a pair is usable again (and a relapse is warned about anew).
    """

    def __init__(
        self,
        metrics: ProducerMetrics,
        summary_every_s: float = SKIP_SUMMARY_EVERY_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.metrics = metrics
        self.summary_every_s = summary_every_s
        self._monotonic = monotonic
        self.active: dict[str, Problem] = {}
        """Pair (``coin:vs`` or ``coin``) -> the problem first warned about, while it lasts."""
        self._this_poll: dict[str, Problem] = {}
        self._summary_due: float | None = None

    @staticmethod
    def pair(problem: Problem) -> str:
        return f"{problem.coin}:{problem.vs}" if problem.vs else problem.coin

    def report(self, problems: Iterable[Problem]) -> None:
        """Problems of one attempt (a poll, or the rest of one that failed part-way)."""
        for problem in problems:
            pair = self.pair(problem)
            self._this_poll[pair] = problem
            known = self.active.get(pair)
            if known is not None and known.reason == problem.reason:
                log.debug("%s", problem)
                continue
            self.active[pair] = problem
            log.warning("%s", problem)

    def poll_complete(self, watched: Collection[str] | None = None) -> None:
        """End of a complete poll: every watched pair was asked, so one not skipped is usable again.

        A coin no longer ``watched`` (it left the top N) is forgotten without a word."""
        now = self._monotonic()
        if watched is not None:
            keep = {*watched, "*"}  # "*": the whole answer was unusable
            for pair in [p for p, problem in self.active.items() if problem.coin not in keep]:
                del self.active[pair]
        recovered = [pair for pair in self.active if pair not in self._this_poll]
        for i, pair in enumerate(recovered):
            problem = self.active.pop(pair)
            if i < STALE_LOG_LIMIT:
                log.info("%s is usable again (skipped as %s since the first warning)", pair, problem.reason)
        if len(recovered) > STALE_LOG_LIMIT:
            log.info("... and %d more pairs are usable again", len(recovered) - STALE_LOG_LIMIT)
        self._this_poll = {}
        skipped = {pair: p for pair, p in self.active.items() if p.skipped}
        self.metrics.skipped_pairs.set(len(skipped))
        if not skipped:
            self._summary_due = None
        elif self._summary_due is None:
            self._summary_due = now + self.summary_every_s
        elif now >= self._summary_due:
            self._summary_due = now + self.summary_every_s
            shown = ", ".join(f"{pair} ({p.reason})" for pair, p in list(skipped.items())[:STALE_LOG_LIMIT])
            more = f" and {len(skipped) - STALE_LOG_LIMIT} more" if len(skipped) > STALE_LOG_LIMIT else ""
            log.info(
                "still skipping %d pairs CoinGecko answers unusably: %s%s (cw_producer_skipped_pairs)",
                len(skipped),
                shown,
                more,
            )


class Liveness:
    """``/livez``: the loop turned within what it announced (its interval or backoff) plus slack."""

    def __init__(self, slack_s: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.slack_s = slack_s
        self._clock = clock
        self._last = clock()
        self._expect = 0.0

    def beat(self, next_within_s: float = 0.0) -> None:
        self._last = self._clock()
        self._expect = max(0.0, next_within_s)

    def alive(self) -> bool:
        return self._clock() - self._last <= self._expect + self.slack_s


@dataclass
class PollStats:
    polls: int = 0
    failures: int = 0
    published: int = 0
    unchanged: int = 0
    skipped: int = 0


class Poller:
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
        liveness: Liveness | None = None,
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
        self.liveness = liveness or Liveness()
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
