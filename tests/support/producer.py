"""Helpers every producer test shares: a publisher in memory, fresh metrics, log lines, timing gaps."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from crypto_watcher.kafka import ensure_topic
from crypto_watcher.messages import Tick
from producer.metrics import ProducerMetrics
from tests.support.root_logging import restored_root_logging

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
    with restored_root_logging():
        yield


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
