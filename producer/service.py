"""The producer's poll loop: ask the source, keep what moved, publish it, wait, and back off on trouble.

Waiting is always on a ``threading.Event`` so SIGTERM/SIGINT end the loop at once; every failure
path sleeps (Retry-After, else exponential backoff with jitter), so the loop can never spin.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from crypto_watcher.messages import Tick
from producer.coingecko import CoinGeckoClient, CoinGeckoError
from producer.publisher import TickPublisher
from producer.quotes import ParsedQuotes, parse_simple_price, simple_price_params

log = logging.getLogger(__name__)

MAX_URL_IDS_CHARS = 1800  # keep GET URLs well under common 2-8 KB proxy limits


class QuoteSource(Protocol):
    def poll(self) -> ParsedQuotes: ...


def chunk_ids(ids: Iterable[str], max_chars: int = MAX_URL_IDS_CHARS) -> list[list[str]]:
    """Split coin ids into comma-joined groups that each fit in one URL."""
    chunks: list[list[str]] = [[]]
    size = 0
    for coin in ids:
        if chunks[-1] and size + len(coin) + 1 > max_chars:
            chunks.append([])
            size = 0
        chunks[-1].append(coin)
        size += len(coin) + 1
    return [c for c in chunks if c]


class CoinGeckoSource:
    """Quotes from ``/simple/price``: one call per URL-sized group of ids, all vs-currencies at once."""

    def __init__(self, client: CoinGeckoClient, coins: list[str], vs_currencies: list[str]) -> None:
        self.client = client
        self.coins = coins
        self.vs_currencies = vs_currencies
        self.calls = 0

    def poll(self) -> ParsedQuotes:
        result = ParsedQuotes([], [])
        for group in chunk_ids(self.coins):
            self.calls += 1
            payload = self.client.get("simple/price", simple_price_params(group, self.vs_currencies))
            parsed = parse_simple_price(payload, group, self.vs_currencies, int(time.time() * 1000))
            result.ticks.extend(parsed.ticks)
            result.problems.extend(parsed.problems)
        return result


@dataclass
class Backoff:
    """Exponential backoff with full jitter; a server's Retry-After always wins."""

    base_s: float = 1.0
    max_s: float = 300.0
    failures: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def next_delay(self, retry_after: float | None = None, retryable: bool = True) -> float:
        self.failures += 1
        if retry_after is not None:
            return min(max(retry_after, self.base_s), self.max_s * 2)
        if not retryable:
            return self.max_s
        ceiling = min(self.max_s, self.base_s * 2 ** (self.failures - 1))
        return max(self.base_s / 2, self.rng.uniform(ceiling / 2, ceiling))

    def reset(self) -> None:
        self.failures = 0


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
        self.last_seen = LastSeen()
        self.stats = PollStats()
        self._on_poll = on_poll

    def poll_once(self) -> float:
        """One poll; returns how long to wait before the next one."""
        started = time.monotonic()
        try:
            quotes = self.source.poll()
        except CoinGeckoError as exc:
            self.stats.failures += 1
            delay = self.backoff.next_delay(exc.retry_after, exc.retryable)
            log.warning("poll failed (%s): %s; next try in %.1fs", exc.kind, exc, delay)
            return delay
        self.backoff.reset()
        self.stats.polls += 1
        for problem in quotes.problems:
            log.warning("%s", problem)
        self.stats.skipped += sum(1 for p in quotes.problems if p.skipped)
        fresh = self.last_seen.fresh(quotes.ticks)
        self.stats.unchanged += len(quotes.ticks) - len(fresh)
        for tick in fresh:
            self.publisher.publish(tick)
        self.publisher.poll(0)
        self.stats.published += len(fresh)
        if fresh:
            shown = ", ".join(f"{t.key}={t.price:,.6g}" for t in fresh[:6])
            more = f" (+{len(fresh) - 6} more)" if len(fresh) > 6 else ""
            log.info("published %d ticks: %s%s", len(fresh), shown, more)
        else:
            log.info("no quote moved since the last poll (%d unchanged)", len(quotes.ticks))
        if self._on_poll is not None:
            self._on_poll(fresh)
        return max(0.0, self.interval_s - (time.monotonic() - started))

    def run(self, max_polls: int | None = None) -> PollStats:
        attempts = 0
        while not self.stop.is_set():
            delay = self.poll_once()
            attempts += 1
            if max_polls is not None and attempts >= max_polls:
                break
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
