"""Waiting before trying again: one backoff and one Retry-After reader for every service.

The producer (CoinGecko calls), the notifier (deliveries) and the sink (InfluxDB writes) all retry
failed calls to servers that may be struggling; they back off the same way, and all honour a
server's ``Retry-After`` in both of its forms.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

MAX_RETRY_AFTER_S = 3600.0
"""A Retry-After is honoured up to an hour; a larger one is more likely garbage than a plan."""


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date; None if absent/garbled.

    Never negative (a date in the past means: now) and at most ``MAX_RETRY_AFTER_S``."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER_S)


@dataclass
class Backoff:
    """Exponential backoff with full jitter; a server's Retry-After always wins.

    Delays after consecutive failures are drawn from [c/2, c] with c = base * 2^(n-1) capped at
    ``max_s``: spaced enough never to hammer a struggling server, jittered so that many clients
    do not retry in lockstep. A Retry-After (429, 503) is honoured as given (up to an hour).
    """

    base_s: float = 1.0
    max_s: float = 300.0
    rng: random.Random = field(default_factory=random.Random)
    failures: int = 0

    def delay(self, attempt: int) -> float:
        """The jittered wait after the ``attempt``-th failure in a row (1 = the first), without counting it."""
        ceiling = min(self.max_s, self.base_s * 2 ** min(attempt - 1, 60))
        return max(self.base_s / 2, self.rng.uniform(ceiling / 2, ceiling))

    def next_delay(self, retry_after: float | None = None, retryable: bool = True) -> float:
        """Count one more failure and say how long to wait before the next try."""
        self.failures += 1
        if retry_after is not None:
            return min(max(retry_after, self.base_s), MAX_RETRY_AFTER_S)
        if not retryable:
            return self.max_s
        return self.delay(self.failures)

    def reset(self) -> None:
        """A success: the next failure starts from ``base_s`` again."""
        self.failures = 0
