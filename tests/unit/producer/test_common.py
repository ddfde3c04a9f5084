"""Helpers shared by the producer tests, and tests of the producer's small building blocks.

``MemoryPublisher`` stands in for Kafka where a test is about CoinGecko; the tests about Kafka use
the real broker (tests/services/test_producer_kafka.py).
"""

from __future__ import annotations

import random
import time
from typing import Any

import pytest

from crypto_watcher.messages import Tick
from crypto_watcher.retry import Backoff, parse_retry_after
from producer.coingecko import endpoint_label
from producer.sources import MAX_URL_IDS_CHARS, chunk_ids
from tests.support.producer import (  # noqa: F401 (restore_root_logging is a fixture)
    T0,
    MemoryPublisher,
    fresh_metrics,
    gaps,
    keep_forever,
    lines,
    max_in_window,
    restore_root_logging,
    sample,
)


def test_max_in_window_helper() -> None:
    assert max_in_window([0, 0.5, 0.99, 1.0, 1.5], 1.0) == 3
    assert max_in_window([], 1.0) == 0


def test_chunk_ids_respects_id_count_and_encoded_url_length() -> None:
    short = [f"coin-{i:04d}" for i in range(1000)]
    assert [len(c) for c in chunk_ids(short)] == [250, 250, 250, 250]
    assert [len(c) for c in chunk_ids(short, max_ids=100)] == [100] * 10
    long = [f"bridged-usdc-polygon-pos-bridge-{i:04d}" for i in range(300)]  # 36 chars, 39 encoded
    chunks = chunk_ids(long)
    assert sum(len(c) for c in chunks) == 300 and [i for c in chunks for i in c] == long
    for chunk in chunks:
        assert sum(len(i) + 3 for i in chunk) <= MAX_URL_IDS_CHARS
    assert len(chunks) == 3  # 128 ids fit in 5,000 characters
    assert chunk_ids([]) == []


def test_backoff_is_exponential_with_jitter_and_retry_after_wins() -> None:
    b = Backoff(base_s=1.0, max_s=60.0, rng=random.Random(7))
    delays = [b.next_delay() for _ in range(8)]
    for n, d in enumerate(delays, start=1):
        ceiling = min(60.0, 2 ** (n - 1))
        assert ceiling / 2 <= d <= ceiling
    assert b.next_delay(retry_after=119) == 119
    assert b.next_delay(retry_after=10_000) == 3600  # honoured up to an hour
    assert b.next_delay(retryable=False) == 60.0
    b.reset()
    assert b.failures == 0 and 0.5 <= b.next_delay() <= 1.0


def test_retry_after_header_forms() -> None:
    assert parse_retry_after("119") == 119.0
    assert parse_retry_after("") is None and parse_retry_after(None) is None and parse_retry_after("soon") is None
    future = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    value = parse_retry_after(future)
    assert value is not None and 25 <= value <= 31
    assert parse_retry_after("-5") == 0.0


@pytest.mark.parametrize(
    ("path", "label"),
    [
        ("simple/price", "/simple/price"),
        ("/coins/markets", "/coins/markets"),
        ("coins/list", "/coins/list"),
        ("coins/bitcoin/market_chart/range", "/coins/{id}/market_chart/range"),
        ("/key", "/key"),
    ],
)
def test_endpoint_label_templates_coin_ids(path: str, label: str) -> None:
    assert endpoint_label(path) == label


def tick(coin: str = "bitcoin", vs: str = "usd", price: float = 1.0, event_time: int = T0 * 1000, **kw: Any) -> Tick:
    return Tick(coin=coin, vs=vs, price=price, source="test", event_time=event_time, **kw)
