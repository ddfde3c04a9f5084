"""Helpers shared by the producer tests, and tests of the producer's small building blocks.

``MemoryPublisher`` stands in for Kafka where a test is about CoinGecko; the tests about Kafka use
the real broker (tests/test_producer_kafka.py).
"""

from __future__ import annotations

import itertools
import logging
import random
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from crypto_watcher.kafka import ensure_topic
from crypto_watcher.messages import Tick
from crypto_watcher.retry import Backoff, parse_retry_after
from producer.coingecko import endpoint_label
from producer.metrics import ProducerMetrics
from producer.sources import MAX_URL_IDS_CHARS, chunk_ids

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z, seconds


class MemoryPublisher:
    """What the poll loop needs of TickPublisher, keeping the ticks in a list."""

    def __init__(self) -> None:
        self.ticks: list[Tick] = []
        self.delivered = 0
        self.dropped = 0
        self.in_flight = 0

    def publish(self, tick: Tick) -> bool:
        self.ticks.append(tick)
        self.delivered += 1
        return True

    def poll(self, timeout: float = 0.0) -> None:
        if timeout > 0:
            time.sleep(timeout)

    def report_backlog(self) -> None:
        pass

    def flush(self, timeout: float = 30.0) -> int:
        return 0

    def drain(self, what: str, stop: Any = None) -> int:
        return 0


def keep_forever(bootstrap: str, topic: str) -> str:
    """Create ``topic`` with no retention limit before a test writes ticks of 2026-01-01 to it.

    Kafka's time retention goes by record timestamp, which is the publish time: the ticks of
    2026-01-01 the tests publish now are kept anyway. Tests keep this explicit so a topic left
    behind by a run is never half-deleted while a later test reads it.
    """
    ensure_topic(bootstrap, topic, 3, retention_ms=-1)
    return topic


@pytest.fixture
def restore_root_logging() -> Iterator[None]:
    """``main()`` sets logging up for a process (a handler on this test's captured stderr); undo it."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def fresh_metrics() -> ProducerMetrics:
    return ProducerMetrics(CollectorRegistry())


def sample(metrics: ProducerMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def max_in_window(times: Sequence[float], width: float) -> int:
    """The most events inside any half-open window of ``width`` seconds."""
    ordered = sorted(times)
    best = 0
    j = 0
    for i, t in enumerate(ordered):
        while ordered[j] <= t - width:
            j += 1
        best = max(best, i - j + 1)
    return best


def gaps(times: Sequence[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


def lines(caplog: pytest.LogCaptureFixture, logger: str, level: int | None = None) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger and (level is None or r.levelno == level)]


# ---------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------


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
