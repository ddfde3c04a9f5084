"""The one backoff and Retry-After reader every service retries with (crypto_watcher.retry)."""

from __future__ import annotations

import random
from datetime import UTC, datetime

from crypto_watcher.retry import MAX_RETRY_AFTER_S, Backoff, parse_retry_after


def test_retry_after_in_seconds_or_as_an_http_date() -> None:
    now = datetime(2026, 1, 31, 12, 0, tzinfo=UTC)
    assert parse_retry_after("30", now) == 30.0
    assert parse_retry_after("Sat, 31 Jan 2026 12:01:00 GMT", now) == 60.0
    assert parse_retry_after("Sat, 31 Jan 2026 11:00:00 GMT", now) == 0.0  # past: now
    assert parse_retry_after("nan") is None and parse_retry_after("later") is None and parse_retry_after(None) is None
    assert parse_retry_after("1e9") == MAX_RETRY_AFTER_S


def test_delay_for_an_attempt_does_not_count_a_failure() -> None:
    backoff = Backoff(base_s=2.0, max_s=10.0, rng=random.Random(5))
    ceilings = {1: 2.0, 2: 4.0, 3: 8.0, 9: 10.0}
    assert all(c / 2 <= backoff.delay(n) <= c for n, c in ceilings.items())
    assert backoff.failures == 0
    assert backoff.next_delay(retry_after=0.1) == 2.0  # never sooner than the base
    assert backoff.failures == 1
