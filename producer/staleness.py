"""What stopped moving: quotes whose update time stands still, pairs CoinGecko answers unusably, the loop.

A stale quote, a coin answered with null for hours and a poll loop that no longer turns all look
the same from a dashboard (nothing new arrives), and each needs a different fix. These trackers
tell them apart: one line when a state starts and one when it ends (a warning on every poll would
bury every other line), gauges in between, and ``/livez`` for the loop itself.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterable

from crypto_watcher.durations import format_duration
from crypto_watcher.messages import Tick
from crypto_watcher.times import format_time
from producer.metrics import ProducerMetrics, default_metrics
from producer.quotes import Problem

# These lines report on the poll loop's quotes: operators (and README's examples) find them under
# the poll loop's logger, whichever module keeps the books.
log = logging.getLogger("producer.service")

STALE_LOG_LIMIT = 10
"""Coins (or pairs) named one per line when several change state at once; the rest are counted."""
SKIP_SUMMARY_EVERY_S = 600.0
"""How often one line names the pairs still being skipped (the gauge says how many at every poll)."""


def _age(ms: int) -> str:
    seconds = max(0, ms // 1000)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds / 3600:.1f}h"


def _log_some(items: Iterable[str], say: Callable[[str], None], rest: Callable[[int], None]) -> None:
    """``say`` the first ``STALE_LOG_LIMIT`` items, then ``rest`` once with how many were left: a
    whole exchange going quiet must not print a thousand lines."""
    shown = list(items)
    for item in shown[:STALE_LOG_LIMIT]:
        say(item)
    if len(shown) > STALE_LOG_LIMIT:
        rest(len(shown) - STALE_LOG_LIMIT)


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
            self._forget_unwatched(set(watched))
        became, recovered = self._changes(now_ms)
        limit = format_duration(self.stale_after_ms)

        def warn_stale(coin: str) -> None:
            last = self._newest(coin, became[coin])
            log.warning(
                "stale quote: %s (%s) last updated %s ago at %s, longer than CW_STALE_AFTER=%s",
                coin,
                ",".join(became[coin]),
                _age(now_ms - last),
                format_time(last),
                limit,
            )

        def say_fresh(coin: str) -> None:
            last = self._newest(coin, recovered[coin])
            log.info("quote fresh again: %s (%s) updated at %s", coin, ",".join(recovered[coin]), format_time(last))

        _log_some(became, warn_stale, lambda n: log.warning("... and %d more coins became stale", n))
        _log_some(recovered, say_fresh, lambda n: log.info("... and %d more coins are fresh again", n))
        self.metrics.stale_quotes.set(len(self.stale))

    def _forget_unwatched(self, keep: set[str]) -> None:
        """A coin that left the watch list (the top N moved) is neither stale nor fresh: gone."""
        for key in [k for k in self._last if k.split(":", 1)[0] not in keep]:
            del self._last[key]
            self.stale.discard(key)

    def _changes(self, now_ms: int) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
        """Move pairs in and out of ``stale``; returns the vs-currencies per coin that became stale and
        those that recovered at this poll."""
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
        return became, recovered

    def _newest(self, coin: str, vs_list: list[str]) -> int:
        return max(self._last[f"{coin}:{vs}"] for vs in vs_list)


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
        recovered = {pair: self.active.pop(pair) for pair in list(self.active) if pair not in self._this_poll}
        _log_some(
            recovered,
            lambda pair: log.info(
                "%s is usable again (skipped as %s since the first warning)", pair, recovered[pair].reason
            ),
            lambda n: log.info("... and %d more pairs are usable again", n),
        )
        self._this_poll = {}
        skipped = {pair: p for pair, p in self.active.items() if p.skipped}
        self.metrics.skipped_pairs.set(len(skipped))
        self._summarise(skipped, now)

    def _summarise(self, skipped: dict[str, Problem], now: float) -> None:
        """Every ``summary_every_s`` while pairs stay skipped, one line naming them (the first comes
        a whole period after the warnings, which said the same)."""
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
