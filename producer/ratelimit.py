"""Staying inside CoinGecko's call budget: a sliding-window limiter and a per-minute spending log.

One ``RateLimiter`` is shared by every call the producer makes (quotes, the top-N list,
/coins/list, backfill), so no combination of them can exceed the plan's budget. It allows at most
``N`` calls in *any* window of ``period_s`` seconds. A call counts from the moment it is sent until
``period_s`` after its answer arrived: measured that way, the server (which sees the request a
little after we send it) can never count ``N + 1`` calls in one of its windows either.

When CoinGecko answers 429 with ``Retry-After``, ``hold`` keeps every caller away until then.
Waiting happens on the stop event, so SIGTERM ends a wait at once (``Stopped``).
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)


class Stopped(Exception):
    """The producer is stopping; the call that was waiting for its turn was not made."""


class RateLimiter:
    def __init__(
        self,
        calls_per_period: float,
        period_s: float = 60.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
        stop: threading.Event | None = None,
        on_wait: Callable[[float], None] | None = None,
    ) -> None:
        if not (calls_per_period > 0 and math.isfinite(calls_per_period)):
            raise ValueError(f"call budget must be a positive number, got {calls_per_period!r}")
        self.period_s = period_s
        self._lock = threading.Lock()
        # Whole calls only (10.5/min allows 10, never 11); under one call per period, one call
        # per (period / budget).
        self.budget = calls_per_period
        self.max_calls, self.window_s = 1, period_s
        self.set_budget(calls_per_period)
        self._clock = clock
        self._sleep = sleep
        self._stop = stop
        self._on_wait = on_wait
        self._calls: dict[int, float] = {}
        self._ids = itertools.count()
        self._hold_until = -math.inf
        self.waited_s = 0.0
        """Total time callers spent waiting for their turn (for logs and tests)."""

    def set_budget(self, calls_per_period: float) -> None:
        """A better-sourced budget (Pro's /key) replaces the configured default."""
        if not (calls_per_period > 0 and math.isfinite(calls_per_period)):
            raise ValueError(f"call budget must be a positive number, got {calls_per_period!r}")
        with self._lock:
            self.budget = calls_per_period
            if calls_per_period >= 1:
                self.max_calls, self.window_s = int(calls_per_period), self.period_s
            else:
                self.max_calls, self.window_s = 1, self.period_s / calls_per_period

    def describe(self) -> str:
        per = "min" if self.period_s == 60.0 else f"{self.period_s:g}s"
        return f"{self.budget:g}/{per}"

    def _expire(self, now: float) -> None:
        old = [k for k, t in self._calls.items() if now - t >= self.window_s]
        for k in old:
            del self._calls[k]

    def _wait_needed(self, now: float) -> float:
        if now < self._hold_until:
            return self._hold_until - now
        if len(self._calls) >= self.max_calls:
            return min(self._calls.values()) + self.window_s - now
        return 0.0

    def acquire(self) -> int:
        """Block until one more call fits in the window; returns a token for ``release``."""
        while True:
            with self._lock:
                now = self._clock()
                self._expire(now)
                wait = self._wait_needed(now)
                if wait <= 0:
                    token = next(self._ids)
                    self._calls[token] = now
                    return token
            self._pause(wait)

    def release(self, token: int) -> None:
        """The call's answer arrived (or it failed): its window starts now."""
        with self._lock:
            if token in self._calls:
                self._calls[token] = self._clock()

    @contextmanager
    def call(self) -> Iterator[None]:
        token = self.acquire()
        try:
            yield
        finally:
            self.release(token)

    def hold(self, seconds: float) -> None:
        """No call for ``seconds`` (the server's Retry-After), whoever asks."""
        with self._lock:
            self._hold_until = max(self._hold_until, self._clock() + max(0.0, seconds))

    def _pause(self, seconds: float) -> None:
        seconds = max(seconds, 0.001)
        self.waited_s += seconds
        if self._on_wait is not None:
            self._on_wait(seconds)
        if seconds >= 1.0:
            log.debug("call budget %s spent; next CoinGecko call in %.1fs", self.describe(), seconds)
        if self._sleep is not None:
            self._sleep(seconds)
            if self._stop is not None and self._stop.is_set():
                raise Stopped
        elif self._stop is not None:
            if self._stop.wait(seconds):
                raise Stopped
        else:
            time.sleep(seconds)


class UsageLog:
    """What the producer spends, one INFO line per minute: calls, budget, 429s, other failures."""

    def __init__(
        self,
        limiter: RateLimiter | None = None,
        every_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limiter = limiter
        self.every_s = every_s
        self._clock = clock
        self._since = clock()
        self._lock = threading.Lock()
        self.calls = 0
        self.rate_limited = 0
        self.failed = 0

    def record(self, ok: bool, rate_limited: bool = False) -> None:
        with self._lock:
            self.calls += 1
            if rate_limited:
                self.rate_limited += 1
            elif not ok:
                self.failed += 1
        self.maybe_report()

    def maybe_report(self) -> None:
        with self._lock:
            now = self._clock()
            elapsed = now - self._since
            if elapsed < self.every_s or self.calls == 0:
                if self.calls == 0 and elapsed >= self.every_s:
                    self._since = now  # quiet minutes are not reported, and not carried over
                return
            calls, limited, failed = self.calls, self.rate_limited, self.failed
            self.calls = self.rate_limited = self.failed = 0
            self._since = now
        budget = f" (budget {self.limiter.describe()})" if self.limiter is not None else ""
        log.info(
            "CoinGecko usage: %d call%s in the last %.0fs%s, %d rate-limited (429), %d other failures",
            calls,
            "" if calls == 1 else "s",
            elapsed,
            budget,
            limited,
            failed,
        )
