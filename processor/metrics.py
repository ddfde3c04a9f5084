"""The processor's Prometheus metrics (names and meanings: docs/contracts.md) and its lag monitor."""

from __future__ import annotations

import logging
import threading
import time
from typing import Self

from prometheus_client import Counter, Gauge, Histogram

from crypto_watcher.health import Heartbeat
from crypto_watcher.kafka import CommittedOffsets
from crypto_watcher.times import ms_to_s

log = logging.getLogger(__name__)

TICKS = Counter("cw_processor_ticks_total", "Ticks processed")
ALERTS = Counter("cw_processor_alerts_total", "Alerts emitted", ["kind"])
DLQ = Counter("cw_processor_dlq_total", "Records sent to the dead-letter topic", ["reason"])
SINK_POINTS = Counter("cw_processor_sink_points_total", "Points written to InfluxDB")
SINK_ERRORS = Counter("cw_processor_sink_errors_total", "Failed InfluxDB writes", ["kind"])
SINK_REJECTED = Counter(
    "cw_processor_sink_rejected_points_total", "Points InfluxDB refused, sent to the dead-letter topic"
)
SINK_SECONDS = Histogram(
    "cw_processor_sink_write_seconds",
    "Duration of one InfluxDB write request",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
GROUP_REJOINS = Counter(
    "cw_processor_group_rejoins_total",
    "Times the processor lost its consumer-group membership (commit or assignment failed) and rejoined",
)
CONSUMER_LAG = Gauge("cw_processor_consumer_lag", "Messages behind the partition's end", ["topic", "partition"])
EVENT_LAG = Gauge("cw_processor_event_lag_seconds", "Wall time minus the newest processed event time")


class OffsetsWatcher:
    """A daemon thread following a consumer group's committed offsets from outside the group.

    The offsets are read through ``CommittedOffsets`` (a non-member consumer, not the Admin API:
    see there), so watching needs no hook into Quix's consumer. Subclasses poll in ``_loop``."""

    def __init__(self, bootstrap: str, group: str, topic: str, thread_name: str) -> None:
        self.group = group
        self.topic = topic
        self._offsets = CommittedOffsets(bootstrap, group)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=thread_name, daemon=True)

    def start(self) -> Self:
        self._thread.start()
        return self

    def _loop(self) -> None:
        raise NotImplementedError


class LagMonitor(OffsetsWatcher):
    """Measures consumer lag from outside Quix: the group's committed offsets vs the high watermarks.

    Reading the committed offsets (what a restart would resume from) rather than in-memory positions
    makes the figure honest about what is really done.
    """

    def __init__(self, bootstrap: str, group: str, topic: str, interval_s: float = 15.0) -> None:
        super().__init__(bootstrap, group, topic, "lag-monitor")
        self.interval_s = interval_s
        self.total: int | None = None

    def stop(self) -> None:
        self._stop.set()

    def measure(self) -> int:
        partitions = self._offsets.partitions(self.topic)
        offsets = self._offsets.read(self.topic, partitions)
        total = 0
        for partition in partitions:
            low, high = self._offsets.watermarks(self.topic, partition)
            done = offsets.get(partition, -1)
            lag = high - (done if done >= 0 else low)
            CONSUMER_LAG.labels(self.topic, str(partition)).set(lag)
            total += lag
        self.total = total
        return total

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.measure()
            except Exception as exc:  # a monitor must never take the processor down
                log.debug("lag measurement failed: %s", exc)
            self._stop.wait(self.interval_s)
        self._offsets.close()


PROGRESS = Heartbeat()
"""Beats at every tick processed; the processor's liveness reads how long it has been silent."""


def observe_tick(event_time_ms: int) -> None:
    PROGRESS.beat()
    TICKS.inc()
    EVENT_LAG.set(max(0.0, time.time() - ms_to_s(event_time_ms)))
